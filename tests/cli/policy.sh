# Policies (docs/policy.md): a denied write never reaches the loopback tool
# server (counted) and fails its step to on_fail; every decision is a
# policy.decision; the requester is recorded and seen by templates; org
# policies loaded into the store are pinned in run.started; rein policy test
# passes and fails.
. "$ROOT/tests/cli/lib.sh"
. "$ROOT/tests/cli/toollib.sh"
PW=$ROOT/tests/cli/workflows/policy
count_of() { events_of "$1" "$2" | wc -l | tr -d ' '; }

# allowed: the support role, a small amount; the requester is recorded and seen
reset_stats
expect_exit 0 "$REIN" run "$PW" --as alice --role support --tenant acme --input '{"mode": "ok", "amount": 5}'
run=$(json_get "$OUT" 'j["run"]')
[ "$(json_get "$OUT" 'j["output"]["who"]')" = alice ] || fail "requester not seen by the template: $OUT"
events_of "$run" run.started | grep -q '"requester": {"roles": \["support"\], "tenant": "acme", "user": "alice"}' || fail "requester: $(events_of "$run" run.started)"
events_of "$run" policy.decision | grep -q '"decision": "allow"' || fail "no allow decision"
events_of "$run" policy.decision | grep -q '"rules": \["echo-support"\]' || fail "rules"
[ "$(json_get "$(stats)" 'j["requests"]')" = 1 ] || fail "server: $(stats)"

# denied by a rule: never sent, the step takes on_fail, the reason is recorded
reset_stats
expect_exit 3 "$REIN" run "$PW" --as alice --role support --input '{"mode": "ok", "amount": 500}'
run=$(json_get "$OUT" 'j["run"]')
[ "$(json_get "$(stats)" 'j["requests"]')" = 0 ] || fail "a denied call reached the server: $(stats)"
[ "$(count_of "$run" tool.intent)" = 0 ] || fail "a denied call got an intent"
events_of "$run" policy.decision | grep -q '"decision": "deny"' || fail "no deny decision"
json_get "$OUT" 'j["reason"]' | grep -q "over the cap of 100" || fail "reason: $OUT"

# denied by default: a write no rule allows (no role)
expect_exit 3 "$REIN" run "$PW" --as bob --input '{"mode": "ok", "amount": 5}'
json_get "$OUT" 'j["reason"]' | grep -q "write tools are denied unless a rule allows them" || fail "$OUT"
[ "$(json_get "$(stats)" 'j["requests"]')" = 0 ] || fail "server: $(stats)"

# the compatibility rule: a workflow without policies still writes
expect_exit 0 "$REIN" run "$WF/http" --input '{"mode": "ok"}'
run=$(json_get "$OUT" 'j["run"]')
[ "$(count_of "$run" policy.decision)" = 0 ] || fail "decisions without policies"

# org policies: loaded into the store, pinned by version, not overridable
expect_exit 0 "$REIN" policy load "$ROOT/tests/cli/policy/org.yaml"
ver=$(json_get "$OUT" 'j["version"]')
reset_stats
expect_exit 3 "$REIN" run "$PW" --as alice --role support --tenant acme --input '{"mode": "ok", "amount": 5, "tenant": "globex"}'
run=$(json_get "$OUT" 'j["run"]')
events_of "$run" run.started | grep -q "\"version\": \"$ver\"" || fail "org version not pinned"
events_of "$run" policy.decision | grep -q "\"policy_version\": \"$ver\"" || fail "decision version"
events_of "$run" policy.decision | grep -q '"rules": \["tenant-scope"\]' || fail "tenant rule"
[ "$(json_get "$(stats)" 'j["requests"]')" = 0 ] || fail "server: $(stats)"
# with org policies loaded, even the workflow without policies is default-deny for writes
expect_exit 1 "$REIN" run "$WF/http" --input '{"mode": "ok"}'
json_get "$OUT" 'j["reason"]' | grep -q "denied by policy" || fail "$OUT"

# a bad policy file is refused at load, naming the rule
printf 'policies:\n  - { id: x, effect: allow, when: "args.amount >" }\n' > bad.yaml
expect_exit 2 "$REIN" policy load bad.yaml
grep -q "rule 1: rule .x.: when" stderr.txt || fail "$(cat stderr.txt)"

# rein policy test: pass, and a mismatch exits 1
expect_exit 0 "$REIN" policy test "$ROOT/tests/cli/policy/cases.yaml"
echo "$OUT" | grep -q "4 cases, 0 failed" || fail "$OUT"
# provenance: the default rule rein.untrusted_write, trusted()/readable_by()/sources()
expect_exit 0 "$REIN" policy test "$ROOT/tests/cli/policy/provenance.yaml"
echo "$OUT" | grep -q "^ok    injected iban (default rule) .*approve.*rein.untrusted_write" || fail "default rule: $OUT"
expect_exit 1 "$REIN" policy test "$ROOT/tests/cli/policy/cases_bad.yaml"
echo "$OUT" | grep -q "FAIL  over the cap" || fail "$OUT"

# a condition over a field the tool's input schema does not have: found at validate
cp -r "$PW" wfbad && sed -i 's/args.amount > 100/args.amout > 100/' wfbad/workflow.yaml
expect_exit 2 "$REIN" validate wfbad
grep -q "rule 'echo-cap': args.amout is not a field of tool 'echo'" stderr.txt || fail "$(cat stderr.txt)"
