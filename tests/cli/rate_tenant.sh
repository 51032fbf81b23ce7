# Rate limits per tool and tenant across runs (docs/policy.md, limit.per:
# tenant): tenant acme's third run over a limit of 2 calls an hour is denied
# (never sent, counted at the loopback server) while tenant globex's run goes
# through; the decision records the count it used and `rein replay`
# reproduces it from the record; rein policy test decides table cases with a
# tenant_history; a per-tenant limit without a window is a located error.
. "$ROOT/tests/cli/lib.sh"
. "$ROOT/tests/cli/toollib.sh"
RW=$WF/rate_tenant
requests() { json_get "$(stats)" 'j["requests"]'; }

reset_stats
for i in 1 2; do
	expect_exit 0 "$REIN" run "$RW" --as alice --tenant acme --input '{}'
done
[ "$(requests)" = 2 ] || fail "acme's first two runs: $(stats)"
a2=$(json_get "$OUT" 'j["run"]')
events_of "$a2" policy.decision | grep -q '"tenant_counts": {"echo-rate": 1}' ||
	fail "acme's second decision: $(events_of "$a2" policy.decision)"

# the third run of acme: denied, nothing sent
expect_exit 3 "$REIN" run "$RW" --as bob --tenant acme --input '{}'
a3=$(json_get "$OUT" 'j["run"]')
[ "$(requests)" = 2 ] || fail "acme's third run reached the server: $(stats)"
json_get "$OUT" 'j["reason"]' | grep -q "2 echo calls an hour per tenant" || fail "reason: $OUT"
events_of "$a3" policy.decision | grep -q '"decision": "deny"' || fail "no deny: $(events_of "$a3" policy.decision)"
events_of "$a3" policy.decision | grep -q '"tenant_counts": {"echo-rate": 2}' ||
	fail "the count is not recorded: $(events_of "$a3" policy.decision)"

# globex is not limited by acme's calls
expect_exit 0 "$REIN" run "$RW" --as carol --tenant globex --input '{}'
g1=$(json_get "$OUT" 'j["run"]')
[ "$(requests)" = 3 ] || fail "globex's run: $(stats)"
events_of "$g1" policy.decision | grep -q '"tenant_counts": {"echo-rate": 0}' ||
	fail "globex's decision: $(events_of "$g1" policy.decision)"

# replay decides the same from the record (the counts were recorded)
expect_exit 0 "$REIN" replay "$a3"
expect_exit 0 "$REIN" replay "$a2"
# the audit export shows the decision with its counts
expect_exit 0 "$REIN" audit export "$a3" --format json
printf '%s' "$OUT" | grep -q '"tenant_counts":{"echo-rate":2}' || fail "export: $OUT"

# decision tables
expect_exit 0 "$REIN" policy test "$ROOT/tests/cli/policy/rate.yaml"
printf '%s' "$OUT" | grep -q "6 cases, 0 failed" || fail "policy test: $OUT"

# a per-tenant limit needs a window: reported where it is
mkdir -p bad/tools && cp "$RW/tools/echo.yaml" bad/tools/
sed 's/limit: { max: 2, window_s: 3600, per: tenant }/limit: { max: 2, per: tenant }/' "$RW/workflow.yaml" > bad/workflow.yaml
expect_exit 2 "$REIN" validate bad
grep -q "a limit per tenant needs a window_s" stderr.txt || fail "validate: $(cat stderr.txt)"
grep -q "workflow.yaml:7:" stderr.txt || fail "not located: $(cat stderr.txt)"
ok "rate limits per tenant: acme's third run denied, globex's allowed, replayed from the record"
