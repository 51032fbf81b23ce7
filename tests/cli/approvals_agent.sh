# Approvals of an agent's proposed call (docs/approvals.md): a refund over 30
# that a policy sends to approval parks the run after the model's first turn;
# the run waits across processes; `rein approve` with a smaller amount and
# `rein resume` send the edited call exactly once (counted at the loopback
# tool server) and the model server sees no new request for the finished
# turn (only the next one); a denial is told to the agent as "denied by an
# approver" without the approver's reason, and counts as a refusal.
. "$ROOT/tests/cli/lib.sh"
. "$ROOT/tests/cli/toollib.sh"
. "$ROOT/tests/cli/modellib.sh"
export REIN_PROVIDER=openai REIN_APPROVAL_KEYS=k1=00112233445566778899aabbccddeeff
W=$ROOT/tests/cli/workflows/appr_agent
nreq() { curl -s "$MODEL_URL/control/requests" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }
effects() { stats | python3 -c 'import json,sys; print(json.load(sys.stdin)["effects_total"])'; }

reset_stats
script '{"turns": [{"tool_calls": [{"name": "refund", "arguments": {"amount": 40}}]}, {"text": "{\"decision\": \"refund\", \"amount\": 35}"}]}'
expect_exit 4 "$REIN" run "$W" --as alice --input '{"ticket": "refund order A1"}'
run=$(json_get "$OUT" 'j["run"]')
[ "$(nreq)" = 1 ] && [ "$(effects)" = 0 ] || fail "before approval: $(nreq) model requests, $(effects) calls"
P=$("$REIN" approvals --json --run "$run" | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)[0]))')
[ "$(json_get "$P" 'j["rules"]')" = "['review-refunds']" ] || fail "item: $P"
expect_exit 0 "$REIN" approve "$(json_get "$P" 'j["id"]')" --as bob --args '{"amount": 35}'
expect_exit 0 "$REIN" resume "$run"
[ "$(json_get "$OUT" 'j["status"]')" = succeeded ] || fail "after approval: $OUT"
[ "$(effects)" = 1 ] || fail "$(effects) refund calls, want 1"
events_of "$run" tool.intent | grep -q '"amount": 35' || fail "the edited amount was not sent"
[ "$(nreq)" = 2 ] || fail "$(nreq) model requests, want 2 (the finished turn was asked again)"
expect_exit 0 "$REIN" resume "$run"
[ "$(effects)" = 1 ] && [ "$(nreq)" = 2 ] || fail "a second resume repeated something"
ok "agent call approved with an edit: sent once, the finished turn not asked again"

script '{"turns": [{"tool_calls": [{"name": "refund", "arguments": {"amount": 45}}]}, {"text": "{\"decision\": \"deny\"}"}]}'
expect_exit 4 "$REIN" run "$W" --as alice --input '{"ticket": "refund order A2"}'
run2=$(json_get "$OUT" 'j["run"]')
expect_exit 0 "$REIN" deny "$(json_get "$("$REIN" approvals --json --run "$run2")" 'j[0]["id"]')" --as bob --reason "SECRET-APPROVER-NOTE"
expect_exit 0 "$REIN" resume "$run2"
[ "$(effects)" = 1 ] || fail "a denied call went out"
reqs=$(curl -s "$MODEL_URL/control/requests")
echo "$reqs" | grep -q "denied by an approver" || fail "the agent was not told"
echo "$reqs" | grep -q "SECRET-APPROVER-NOTE" && fail "the approver's reason reached the model"
events_of "$run2" tool.refused | grep -q "denied by an approver" || fail "no tool.refused"
ok "agent told of the denial"
exit 0
