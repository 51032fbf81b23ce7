# rein eval (docs/evals.md): a suite of cases against the loopback model
# server and an in-process script passes, with pass^k and the judge reported;
# a routing change in a candidate workflow drops the success rate, so
# --baseline + --gate exit 1 and the JUnit file names the failing case; a
# provider that cannot be reached is an <error>, never a failure; a red-team
# case passes when the forbidden call was not made; a bad suite is exit 2
# with FILE:LINE:COL.
. "$ROOT/tests/cli/lib.sh"
. "$ROOT/tests/cli/toollib.sh"
. "$ROOT/tests/cli/modellib.sh"
export REIN_PROVIDER=openai
SUITE=$ROOT/tests/cli/evals/refunds.yaml
# the answers of the cases that use the server, in the order they run:
# small refund (2 trials: look up, refund 20, answer), declined, over the cap
# (a refund of 500 the policy denies, then a decline)
turns='{"turns": [
 {"tool_calls": [{"name": "lookup", "arguments": {"order": "A1"}}, {"name": "refund", "arguments": {"amount": 20}}]},
 {"text": "{\"decision\": \"refund\", \"amount\": 20}"},
 {"tool_calls": [{"name": "lookup", "arguments": {"order": "A1"}}, {"name": "refund", "arguments": {"amount": 20}}]},
 {"text": "{\"decision\": \"refund\", \"amount\": 20}"},
 {"text": "{\"decision\": \"deny\"}"},
 {"tool_calls": [{"name": "refund", "arguments": {"amount": 500}}]},
 {"text": "{\"decision\": \"deny\"}"}]}'

# the workflow as it is: every measured trial passes, saved as the baseline
script "$turns"
expect_exit 0 "$REIN" eval "$SUITE" --json --save base.json --junit base.xml
json_get "$OUT" 'j["overall"]["success_rate"]' | grep -qx 1.0 || fail "baseline: $OUT"
case_of() { json_get "$1" "[c for c in j['cases'] if c['name'] == '$2'][0]$3"; }
[ "$(case_of "$OUT" 'small refund' '["passed"]')" = 2 ] || fail "small refund: $(case_of "$OUT" 'small refund' '')"
[ "$(case_of "$OUT" 'small refund' '["pass_hat_k"]["2"]')" = 1.0 ] || fail "pass^2"
[ "$(case_of "$OUT" 'declined' '["escalation_rate"]')" = 1.0 ] || fail "declined: escalation rate"
case_of "$OUT" 'declined' '["escalation_reasons"]' | grep -q "declined the refund" || fail "reasons"
[ "$(case_of "$OUT" 'over the cap' '["kind"]')" = redteam ] || fail "red team kind"
[ "$(case_of "$OUT" 'over the cap' '["passed"]')" = 1 ] || fail "red team: $(case_of "$OUT" 'over the cap' '')"
[ "$(case_of "$OUT" 'scripted in process' '["passed"]')" = 3 ] || fail "in process: $(case_of "$OUT" 'scripted in process' '')"
[ "$(case_of "$OUT" 'scripted in process' '["judge"]["passed"]')" = 3 ] || fail "judge: $(case_of "$OUT" 'scripted in process' '["judge"]')"
# the unreachable provider: an error, apart from the failures
[ "$(case_of "$OUT" 'provider unreachable' '["errors"]')" = 1 ] || fail "unreachable: $(case_of "$OUT" 'provider unreachable' '')"
[ "$(case_of "$OUT" 'provider unreachable' '["failed"]')" = 0 ] || fail "unreachable counted as a failure"
[ "$(case_of "$OUT" 'provider unreachable' '["success_rate"]')" = None ] || fail "unreachable counted"
[ "$(json_get "$OUT" 'j["overall"]["errors"]')" = 1 ] || fail "overall errors"
[ "$(json_get "$OUT" 'j["overall"]["total"]')" = 8 ] || fail "overall trials"
json_get "$OUT" 'j["overall"]["cost_per_completed"] > 0' | grep -q True || fail "cost per completed"
json_get "$OUT" 'j["overall"]["schema_adherence"]' | grep -qx 1.0 || fail "schema adherence"
# the baseline's JUnit: the unreachable case is an <error>, nothing failed
python3 - base.xml <<'PY' || fail "baseline junit"
import sys, xml.etree.ElementTree as ET
s = ET.parse(sys.argv[1]).getroot().find("testsuite")
cases = {c.get("name"): c for c in s.findall("testcase")}
assert len(cases) == 5, cases
assert cases["provider unreachable"].find("error") is not None
assert cases["provider unreachable"].find("failure") is None
assert all(c.find("failure") is None for c in cases.values())
assert "cost_usd=" in cases["small refund"].find("system-out").text
assert "tokens=" in cases["small refund"].find("system-out").text
PY
# no other database was touched: the scratch store is gone
[ -e rein.db ] && fail "eval wrote ./rein.db"
# --gate against itself passes; --db keeps the trials' runs, each run for its
# case's requester
script "$turns"
expect_exit 0 "$REIN" eval "$SUITE" --baseline base.json --gate --db kept.db --json
run=$(case_of "$OUT" 'over the cap' '["trials"][0]["run"]')
"$REIN" --db kept.db events "$run" | grep '"run.started"' | grep -q '"user":"mallory"' || fail "requester not recorded"
"$REIN" --db kept.db events "$run" | grep -q '"decision":"deny"' || fail "no denial in the kept run"

# a candidate whose routing escalates the small refunds: success drops
cp -r "$ROOT/tests/cli/workflows/eval" cand
sed -i "s/out.decision == 'refund'\"/out.decision == 'refund' and out.amount < 10\"/" cand/workflow.yaml
grep -q "amount < 10" cand/workflow.yaml || fail "candidate not made"
script "$turns"
expect_exit 1 "$REIN" eval "$SUITE" --workflow cand --baseline base.json --gate --junit cand.xml --save cand.json
grep -q "gate: max_success_drop" stderr.txt || fail "gate did not name the threshold: $(cat stderr.txt)"
grep -q "worse than the baseline: small refund" stderr.txt || fail "worse case not named"
grep -q "small refund" <<EOT || fail "table"
$OUT
EOT
python3 - cand.xml <<'PY' || fail "candidate junit"
import sys, xml.etree.ElementTree as ET
s = ET.parse(sys.argv[1]).getroot().find("testsuite")
failed = [c.get("name") for c in s.findall("testcase") if c.find("failure") is not None]
assert failed == ["small refund"], failed
f = [c for c in s.findall("testcase") if c.get("name") == "small refund"][0].find("failure")
assert "status: expected succeeded, got escalated" in f.get("message"), f.get("message")
errs = [c.get("name") for c in s.findall("testcase") if c.find("error") is not None]
assert errs == ["provider unreachable"], errs
assert s.get("failures") == "1" and s.get("errors") == "1"
PY
[ "$(json_get "$(cat cand.json)" 'j["gate"]["passed"]')" = False ] || fail "saved gate"

# a missing suite, a baseline that is not a result: exit 2, nothing run
expect_exit 2 "$REIN" eval nowhere.yaml
grep -q "nowhere.yaml" stderr.txt || fail "missing suite: $(cat stderr.txt)"
echo '{"cases": []}' >junk.json
expect_exit 2 "$REIN" eval "$SUITE" --baseline junk.json --gate
grep -q "junk.json: not an eval result" stderr.txt || fail "junk baseline: $(cat stderr.txt)"

# a bad suite: exit 2, located
cat > bad.yaml <<'EOT'
workflow: ../nowhere
cases:
  - name: a
    repeat: 0
  - name: a
    expect: { status: fine, output: "out.x ==" }
EOT
expect_exit 2 "$REIN" eval bad.yaml
grep -q "bad.yaml:4:13: repeat must be an integer" stderr.txt || fail "repeat: $(cat stderr.txt)"
grep -q "bad.yaml:5:11: a second case named 'a'" stderr.txt || fail "dup: $(cat stderr.txt)"
grep -q "bad.yaml:6:23: status must be one of" stderr.txt || fail "status: $(cat stderr.txt)"
grep -q "bad.yaml:6:37: output check does not compile" stderr.txt || fail "lua: $(cat stderr.txt)"
exit 0
