# llm steps against the loopback model server (OpenAI and Anthropic wire
# protocols): structured output, the repair turn, escalation, retries with
# Retry-After, fallback to the next tier, budgets, and record then replay.
. "$ROOT/tests/cli/lib.sh"
. "$ROOT/tests/cli/modellib.sh"
# ans JSON: a structured answer as this provider gives one (OpenAI: the text;
# Anthropic: the input of the forced final_answer tool)
ans() {
	if [ "$REIN_PROVIDER" = anthropic ]; then
		printf '{"tool_calls": [{"name": "final_answer", "arguments": %s}]' "$1"
	else
		printf '{"text": %s' "$(printf '%s' "$1" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')"
	fi
}
types() { "$REIN" events "$1" | python3 -c '
import json, sys
print(" ".join(json.loads(l)["type"] for l in sys.stdin))'; }

for provider in openai anthropic; do
	export REIN_PROVIDER=$provider
	# a valid structured answer
	script "{\"turns\": [$(ans '{"category": "refund"}'), \"model\": \"small-1-2026-01-01\", \"usage\": {\"input\": 100, \"output\": 10, \"cached\": 40}}]}"
	expect_exit 0 "$REIN" run "$WF/llm" --input '{"text": "I want my money back"}'
	run=$(json_get "$OUT" 'j["run"]')
	[ "$(json_get "$OUT" 'j["output"]["category"]')" = refund ] || fail "$provider: $OUT"
	[ "$(types "$run")" = "run.started model.intent model.call step.completed run.ended" ] || fail "$provider events: $(types "$run")"
	call=$("$REIN" events "$run" | grep '"model.call"')
	d=$(json_get "$call" 'json.dumps(j["data"], sort_keys=True)')
	[ "$(json_get "$d" 'j["model"]')" = small-1-2026-01-01 ] || fail "exact model not recorded: $d"
	[ "$(json_get "$d" 'j["usage"]["input"]')" = 100 ] || fail "usage: $d"
	[ "$(json_get "$d" 'j["provider"]')" = "\${env.REIN_PROVIDER:-replay}" ] || true
	json_get "$d" 'j["cost_usd"] > 0' | grep -q True || fail "no cost: $d"
	json_get "$d" 'j["ttft_ms"] >= 0' | grep -q True || fail "no time to first token: $d"
	"$REIN" events "$run" | grep -q "$MODEL_KEY" && fail "the API key is in the events"

	# a wrong answer, then a right one after the repair turn
	script "{\"turns\": [$(ans '{"category": "maybe"}')}, $(ans '{"category": "other"}')}]}"
	expect_exit 0 "$REIN" run "$WF/llm" --input '{"text": "hello"}'
	[ "$(json_get "$OUT" 'j["output"]["category"]')" = other ] || fail "$OUT"
	run=$(json_get "$OUT" 'j["run"]')
	[ "$("$REIN" events "$run" | grep -c '"model.call"')" = 2 ] || fail "no repair turn"
	curl -s "$MODEL_URL/control/requests" | grep -q "does not match the required JSON Schema" || fail "the repair turn did not carry the validator's errors"

	# wrong twice: escalated, never silently wrong data
	script "{\"turns\": [$(ans '{"category": "maybe"}')}, {\"text\": \"not json at all\"}]}"
	expect_exit 3 "$REIN" run "$WF/llm" --input '{"text": "hello"}'
	json_get "$OUT" 'j["reason"]' | grep -q "after a repair turn" || fail "$OUT"

	# 429 with Retry-After, then an answer
	script "{\"turns\": [{\"error\": {\"status\": 429, \"retry_after\": 1}}, $(ans '{"category": "other"}')}]}"
	expect_exit 0 "$REIN" run "$WF/llm" --input '{"text": "hello"}'
	run=$(json_get "$OUT" 'j["run"]')
	"$REIN" events "$run" | grep '"model.backoff"' | grep -q '"delay_ms":1000' || fail "Retry-After not honoured"

	# the small tier keeps failing: the large one answers
	script "{\"turns\": [{\"error\": {\"status\": 500}}, {\"error\": {\"status\": 500}}, $(ans '{"category": "refund"}'), \"model\": \"large-1\"}]}"
	expect_exit 0 "$REIN" run "$WF/llm" --input '{"text": "hello"}'
	run=$(json_get "$OUT" 'j["run"]')
	"$REIN" events "$run" | grep '"model.route"' | grep -q '"to":"large"' || fail "no fallback to large"
	[ "$("$REIN" events "$run" | grep -c '"model.attempt"')" = 2 ] || fail "attempts"
done

# budgets: one model call allowed; the repair turn would be a second
cp -r "$WF/llm" llm_budget
sed -i 's/max_model_calls: 8/max_model_calls: 1/' llm_budget/workflow.yaml
export REIN_PROVIDER=openai
script '{"turns": [{"text": "{\"category\": \"maybe\"}"}, {"text": "{\"category\": \"other\"}"}]}'
expect_exit 3 "$REIN" run llm_budget --input '{"text": "hello"}'
json_get "$OUT" 'j["reason"]' | grep -q "budget: max_model_calls 1" || fail "$OUT"

# the opt-in response cache: an identical request is served without a call
mkdir -p cached && cat > cached/workflow.yaml <<'YAML'
rein: 1
name: cached
models:
  m: { provider: openai, model: c-1, base_url: "${env.MODEL_URL}", api_key_env: MODEL_KEY, cache: true }
steps:
  first: { llm: { model: m, prompt: "same question", temperature: 0 }, next: second }
  second: { llm: { model: m, prompt: "same question", temperature: 0 }, next: done }
  done: { end: succeeded, output: "${ { a = steps.first.out, b = steps.second.out } }" }
YAML
curl -s -X POST "$MODEL_URL/control/reset" >/dev/null
script '{"turns": [{"text": "forty-two"}, {"text": "something else"}]}'
expect_exit 0 "$REIN" run cached
[ "$(json_get "$OUT" 'j["output"]["b"]')" = forty-two ] || fail "cache: $OUT"
run=$(json_get "$OUT" 'j["run"]')
"$REIN" events "$run" | grep '"model.call"' | grep -q '"cached":true' || fail "no cached call recorded"
[ "$(curl -s "$MODEL_URL/control/requests" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" = 1 ] || fail "the cached request reached the server"

# record against the server, replay with no server: the same decisions
rm -f rec.json
script '{"turns": [{"text": "{\"category\": \"maybe\"}"}, {"text": "{\"category\": \"refund\"}"}]}'
REIN_RECORD="$PWD/rec.json" expect_exit 0 "$REIN" run "$WF/llm" --input '{"text": "replay me"}' --db rec.db
rec_run=$(json_get "$OUT" 'j["run"]')
rec_out=$(json_get "$OUT" 'json.dumps(j["output"], sort_keys=True)')
kill $MS_PID
REIN_PROVIDER=replay REIN_REPLAY_FILE="$PWD/rec.json" expect_exit 0 "$REIN" run "$WF/llm" --input '{"text": "replay me"}' --db rep.db
rep_run=$(json_get "$OUT" 'j["run"]')
[ "$(json_get "$OUT" 'json.dumps(j["output"], sort_keys=True)')" = "$rec_out" ] || fail "replay output: $OUT"
[ "$(REIN_DB=rec.db types "$rec_run")" = "$(REIN_DB=rep.db types "$rep_run")" ] || fail "replayed events differ"
# ... and from the events of the recorded run itself, no file, no server
REIN_PROVIDER=replay REIN_REPLAY_RUN="$rec_run" expect_exit 0 "$REIN" run "$WF/llm" --input '{"text": "replay me"}' --db rec.db
[ "$(json_get "$OUT" 'json.dumps(j["output"], sort_keys=True)')" = "$rec_out" ] || fail "replay from events: $OUT"
[ "$(REIN_DB=rec.db types "$rec_run")" = "$(REIN_DB=rec.db types "$(json_get "$OUT" 'j["run"]')")" ] || fail "events replayed from a run differ"
ok "models"
