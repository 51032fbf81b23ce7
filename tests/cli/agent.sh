# The agent step against the loopback model server: tool calls go through the
# tool contract path (intent, key, result fenced as data), the allowlist and
# argument schemas are enforced and the refusals told to the model, and the
# loop ends on a final answer, on max_turns, or on the budget.
. "$ROOT/tests/cli/lib.sh"
. "$ROOT/tests/cli/toollib.sh"
. "$ROOT/tests/cli/modellib.sh"
export REIN_PROVIDER=openai
count() { "$REIN" events "$1" | grep -c "\"type\":\"$2\""; }
final() { printf '{"text": %s}' "$(printf '%s' "$1" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')"; }

# look up, then decide
script "{\"turns\": [{\"tool_calls\": [{\"name\": \"lookup\", \"arguments\": {\"order\": \"A1\"}}]}, $(final '{"decision": "refund", "amount": 20}')]}"
expect_exit 0 "$REIN" run "$WF/agent" --input '{"ticket": "refund order A1"}'
run=$(json_get "$OUT" 'j["run"]')
[ "$(json_get "$OUT" 'j["output"]["decision"]')" = refund ] || fail "$OUT"
[ "$(count "$run" tool.intent)" = 1 ] && [ "$(count "$run" tool.result)" = 1 ] || fail "tool path"
[ "$(count "$run" model.call)" = 2 ] || fail "turns"
curl -s "$MODEL_URL/control/requests" | grep -q 'data source=\\"tool:lookup\\"' || fail "the result was not fenced as data"
[ "$(json_get "$(stats)" 'j["requests"]')" = 1 ] || fail "tool server: $(stats)"

# a tool outside the allowlist, bad arguments, an unknown tool: refused and told
reset_stats
script "{\"turns\": [{\"tool_calls\": [{\"name\": \"refund\", \"arguments\": {\"amount\": 5}}, {\"name\": \"lookup\", \"arguments\": {\"order\": 7}}, {\"name\": \"lookup\", \"arguments_raw\": \"{not json\"}, {\"name\": \"nosuch\", \"arguments\": {}}]}, $(final '{"decision": "deny"}')]}"
expect_exit 0 "$REIN" run "$WF/agent" --input '{"ticket": "pay me"}'
run=$(json_get "$OUT" 'j["run"]')
[ "$(count "$run" tool.refused)" = 4 ] || fail "refusals: $(count "$run" tool.refused)"
[ "$(count "$run" tool.intent)" = 0 ] || fail "a refused call was recorded as an intent"
[ "$(json_get "$(stats)" 'j["requests"]')" = 0 ] || fail "a refused call reached the tool"
reqs=$(curl -s "$MODEL_URL/control/requests")
echo "$reqs" | grep -q "there is no tool 'refund' here" || fail "allowlist refusal not told"
echo "$reqs" | grep -q "do not match the input schema of 'lookup'" || fail "schema refusal not told"
echo "$reqs" | grep -q "not valid JSON" || fail "JSON refusal not told"

# a model that never stops calling tools: max_turns
script '{"turns": [{"tool_calls": [{"name": "lookup", "arguments": {"order": "A"}}]}, {"tool_calls": [{"name": "lookup", "arguments": {"order": "B"}}]}, {"tool_calls": [{"name": "lookup", "arguments": {"order": "C"}}]}, {"tool_calls": [{"name": "lookup", "arguments": {"order": "D"}}]}]}'
expect_exit 3 "$REIN" run "$WF/agent" --input '{"ticket": "loop"}'
json_get "$OUT" 'j["reason"]' | grep -q "max_turns" || fail "$OUT"
run=$(json_get "$OUT" 'j["run"]')
[ "$(count "$run" model.call)" = 3 ] || fail "turns past max_turns"

# an invalid final answer is told to the model (it costs a turn); still
# invalid at max_turns: escalated, never silently wrong data
script "{\"turns\": [$(final '{"decision": "maybe"}'), $(final '{"decision": "perhaps"}'), $(final '{"decision": "later"}')]}"
expect_exit 3 "$REIN" run "$WF/agent" --input '{"ticket": "vague"}'
json_get "$OUT" 'j["reason"]' | grep -q "no valid final answer in 3 turns" || fail "$OUT"
curl -s "$MODEL_URL/control/requests" | grep -q "does not match the required JSON Schema" || fail "the model was not told"

# the first tier fails: the agent goes on with the next one
cp -r "$WF/agent" af
python3 - <<'PY'
import re
p = "af/workflow.yaml"
s = open(p).read()
s = s.replace("    retry: { max_attempts: 1 }\n", "    retry: { max_attempts: 1 }\n    fallback: backup\n  backup:\n    provider: openai\n    model: backup-1\n    base_url: \"${env.MODEL_URL}\"\n    api_key_env: MODEL_KEY\n", 1)
open(p, "w").write(s)
PY
script "{\"turns\": [{\"error\": {\"status\": 500}}, {\"tool_calls\": [{\"name\": \"lookup\", \"arguments\": {\"order\": \"A1\"}}]}, $(final '{"decision": "deny"}')]}"
expect_exit 0 "$REIN" run af --input '{"ticket": "x"}'
run=$(json_get "$OUT" 'j["run"]')
"$REIN" events "$run" | grep '"model.route"' | grep -q '"to":"backup"' || fail "no fallback"
[ "$(json_get "$OUT" 'j["output"]["decision"]')" = deny ] || fail "$OUT"

# ... and with many turns allowed, the budget stops it, within one call's estimate
cp -r "$WF/agent" ab
sed -i 's/max_turns: 3/max_turns: 50/; s/max_cost_usd: 1/max_cost_usd: 0.004/' ab/workflow.yaml
turns=""
for i in $(seq 1 40); do turns="$turns{\"tool_calls\": [{\"name\": \"lookup\", \"arguments\": {\"order\": \"X$i\"}}], \"usage\": {\"input\": 400, \"output\": 50}},"; done
script "{\"turns\": [${turns%,}]}"
expect_exit 3 "$REIN" run ab --input '{"ticket": "spend"}'
json_get "$OUT" 'j["reason"]' | grep -q "budget: max_cost_usd" || fail "$OUT"
run=$(json_get "$OUT" 'j["run"]')
"$REIN" events "$run" | python3 -c '
import json, sys
spent, est = 0.0, 0.0
for l in sys.stdin:
    e = json.loads(l)
    if e["type"] == "model.call": spent += e["data"]["cost_usd"]
    if e["type"] == "model.intent": est = max(est, e["data"]["estimate"]["cost_usd"])
assert spent <= 0.004 + est, (spent, est)
assert spent >= 0.0015, spent
' || fail "spent past the budget"
ok "agent"
