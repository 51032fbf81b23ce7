# Online canaries (docs/operations.md "Canaries"): a stable version that
# succeeds and a candidate whose code step escalates, 30% canary. New runs
# split by start key exactly as the documented bucket says; after min_runs
# candidate runs the candidate is rolled back with its reason recorded, and
# every later run goes to stable. Retrying a start key picks what it picked.
. "$ROOT/tests/cli/lib.sh"
# run.started's deployment: NAME/ROLE
started() { "$REIN" events "$1" | python3 -c 'import json,sys; d=[json.loads(l) for l in sys.stdin][0]["data"]["deployment"]; print(d["name"]+"/"+d["role"])'; }
ver() { "$REIN" show "$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])'; }
# the documented bucket: SHA-256("rein-canary:" KEY), first 4 bytes big-endian, mod 100
bucket() { python3 -c 'import hashlib,sys; print(int.from_bytes(hashlib.sha256(b"rein-canary:"+sys.argv[1].encode()).digest()[:4],"big")%100)' "$1"; }

# a candidate needs a stable version first; bad flags are usage errors
expect_exit 2 "$REIN" deploy "$WF/canary_candidate" --canary 30%
grep -q "has no stable version" stderr.txt || fail "$(cat stderr.txt)"
expect_exit 2 "$REIN" deploy "$WF/canary_stable" --canary 100%
expect_exit 2 "$REIN" deploy "$WF/canary_stable" --rollback min_runs=3
expect_exit 2 "$REIN" deploy "$WF/canary_stable" --canary 10% --rollback min_runs=0
grep -q "min_runs=0" stderr.txt || fail "$(cat stderr.txt)"
expect_exit 2 "$REIN" deploy "$WF/canary_stable" --canary 10% --rollback bogus=1

# the by-version index is made with the first deployment, not with the store
idx() { python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from sqlite_master where name = ?", ("runs_by_version",)).fetchone()[0])' "$REIN_DB"; }
if [ -f "$REIN_DB" ]; then [ "$(idx)" = 0 ] || fail "runs_by_version exists before any deployment"; fi
expect_exit 0 "$REIN" deploy "$WF/canary_stable"
[ "$(idx)" = 1 ] || fail "no runs_by_version index after the first deployment"
stable=$(json_get "$OUT" 'j["version"]')
[ "$(json_get "$OUT" 'j["role"]')" = stable ] || fail "$OUT"
expect_exit 2 "$REIN" deploy "$WF/canary_stable" --canary 20%   # its own candidate
expect_exit 0 "$REIN" deploy "$WF/canary_candidate" --canary 30% \
	--rollback 'success_drop=0.2,escalation_rise=0.2,min_runs=6'
cand=$(json_get "$OUT" 'j["version"]')
[ "$(json_get "$OUT" 'j["role"]')/$(json_get "$OUT" 'j["percent"]')" = candidate/30 ] || fail "$OUT"
[ "$(json_get "$OUT" 'j["rollback"]["min_runs"]')" = 6 ] || fail "$OUT"
[ "$stable" != "$cand" ] || fail "one version"

# runs by name: each key goes where its bucket says until the candidate has
# ended 6 runs; the run that reaches 6 rolls it back
n_cand=0
rolled=
i=0
while [ $i -lt 60 ]; do
	i=$((i + 1))
	k=order-$i
	if [ -z "$rolled" ] && [ "$(bucket $k)" -lt 30 ]; then want=$cand; else want=$stable; fi
	if [ "$want" = "$cand" ]; then code=3; else code=0; fi
	expect_exit $code "$REIN" run canary --id $k
	[ "$(ver $k)" = "$want" ] || fail "run $k (bucket $(bucket $k), rolled '$rolled') took $(ver $k)"
	if [ "$want" = "$cand" ]; then role=candidate; else role=stable; fi
	[ "$(started $k)" = "canary/$role" ] || fail "run $k recorded $(started $k), want canary/$role"
	if [ "$want" = "$cand" ]; then
		n_cand=$((n_cand + 1))
		if [ $n_cand -eq 6 ]; then
			grep -q "the candidate of canary was rolled back" stderr.txt || fail "no rollback after 6: $(cat stderr.txt)"
			rolled=$k
		else
			! grep -q "rolled back" stderr.txt || fail "rolled back after $n_cand runs"
		fi
	fi
done
[ -n "$rolled" ] || fail "60 keys gave fewer than 6 candidate runs"
# later keys whose bucket is the candidate's went to stable (checked above); there were some
late=0
j=${rolled#order-}
while [ $j -lt 60 ]; do j=$((j + 1)); [ "$(bucket order-$j)" -lt 30 ] && late=$((late + 1)); done
[ $late -gt 0 ] || fail "no candidate-bucket key after the rollback"

# the reason is recorded in the deployments table and shown
expect_exit 0 "$REIN" deployments --json
[ "$(json_get "$OUT" 'len(j)')" = 2 ] || fail "$OUT"
[ "$(json_get "$OUT" 'j[1]["state"]')" = rolled_back ] || fail "$OUT"
[ "$(json_get "$OUT" 'j[1]["runs"]')/$(json_get "$OUT" 'j[1]["escalated"]')" = 6/6 ] || fail "$OUT"
json_get "$OUT" 'j[1]["reason"]' | grep -q "success rate 0.00 vs stable 1.00" || fail "$OUT"
[ "$(json_get "$OUT" 'j[0]["state"]')/$(json_get "$OUT" 'j[0]["success_rate"]')" = active/1.0 ] || fail "$OUT"
expect_exit 0 "$REIN" deployments
grep -q "rolled_back .*reason: success rate" <<EOT || fail "$OUT"
$OUT
EOT
expect_exit 0 "$REIN" deploy canary --check
[ "$(json_get "$OUT" 'j["rolled_back"]')" = False ] || fail "rolled back twice: $OUT"

# a retried start key picks what it picked: the run is the same run
expect_exit 3 "$REIN" run canary --id order-$(python3 -c '
import hashlib
for i in range(1, 61):
    k = "order-%d" % i
    if int.from_bytes(hashlib.sha256(("rein-canary:" + k).encode()).digest()[:4], "big") % 100 < 30:
        print(i); break')
expect_exit 0 "$REIN" run canary --id order-1
[ "$(json_get "$OUT" 'j["run"]')" = order-1 ] || fail "$OUT"

# a new candidate starts from no runs; deploying it as stable promotes it
expect_exit 0 "$REIN" deploy "$WF/canary_candidate" --canary 50%
[ "$(json_get "$OUT" 'j["runs"]')" = 0 ] || fail "old runs counted: $OUT"
expect_exit 0 "$REIN" deploy "$WF/canary_candidate"
expect_exit 0 "$REIN" deployments --json
[ "$(json_get "$OUT" '[d["state"] for d in j]')" = "['superseded', 'rolled_back', 'promoted', 'active']" ] || fail "$OUT"
expect_exit 3 "$REIN" run canary
[ "$(ver "$(json_get "$OUT" 'j["run"]')")" = "$cand" ] || fail "not the promoted version"

# a directory is still run as a directory (no deployment recorded); an unknown name is an error
expect_exit 0 "$REIN" run "$WF/canary_stable"
"$REIN" events "$(json_get "$OUT" 'j["run"]')" | head -1 | grep -q '"deployment"' && fail "a directory run recorded a deployment"
expect_exit 2 "$REIN" run no_such_workflow
# metrics split runs by version
expect_exit 0 "$REIN" metrics
printf '%s\n' "$OUT" | grep -q "rein_runs_total{.*version=\"$cand\".*outcome=\"escalated\"" || fail "metrics: $OUT"
ok "canary"
