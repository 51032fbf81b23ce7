# Policies on an agent's proposed calls: a denied write never reaches the
# loopback tool server (counted), the agent is told it was denied without the
# rule's text, the denial counts as a refusal; an allowed write and a read go
# through. Every decision is a policy.decision with the call's id.
. "$ROOT/tests/cli/lib.sh"
. "$ROOT/tests/cli/toollib.sh"
. "$ROOT/tests/cli/modellib.sh"
export REIN_PROVIDER=openai
count() { "$REIN" events "$1" | grep -c "\"type\":\"$2\""; }
PA=$ROOT/tests/cli/workflows/policy_agent

reset_stats
script '{"turns": [{"tool_calls": [{"name": "refund", "arguments": {"amount": 500}}, {"name": "lookup", "arguments": {"order": "A1"}}, {"name": "refund", "arguments": {"amount": 20}}]}, {"text": "{\"decision\": \"refund\", \"amount\": 20}"}]}'
expect_exit 0 "$REIN" run "$PA" --as agent-user --input '{"ticket": "refund order A1"}'
run=$(json_get "$OUT" 'j["run"]')
[ "$(count "$run" policy.decision)" = 3 ] || fail "decisions: $(count "$run" policy.decision)"
[ "$(count "$run" tool.refused)" = 1 ] || fail "refusals: $(count "$run" tool.refused)"
[ "$(count "$run" tool.intent)" = 2 ] || fail "intents: $(count "$run" tool.intent)"
[ "$(json_get "$(stats)" 'j["requests"]')" = 2 ] || fail "tool server: $(stats)"
events_of "$run" policy.decision | grep '"decision": "deny"' | grep -q '"rules": \["agent-cap"\]' || fail "deny rule"
events_of "$run" policy.decision | grep '"decision": "deny"' | grep -q '"call_id"' || fail "call_id"
reqs=$(curl -s "$MODEL_URL/control/requests")
echo "$reqs" | grep -q "this call was denied by policy" || fail "the agent was not told"
echo "$reqs" | grep -q "SECRET-RULE-TEXT" && fail "the rule's text reached the model"
"$REIN" events "$run" | grep -q "SECRET-RULE-TEXT" || fail "the reason was not recorded"
exit 0
