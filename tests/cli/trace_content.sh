# Message content in traces (docs/observability.md "Message content"): off by
# default; with trace.store_prompts the chat span carries the GenAI
# conventions' gen_ai.system_instructions, gen_ai.input.messages and
# gen_ai.output.messages, after trace.redact (a card number in the input is
# a placeholder in the spans; without trace.redact the content is still
# redacted at export, by every class). Against the loopback model server (OpenAI
# wire), so the spans also carry server.address/server.port and
# gen_ai.response.id. Expected: tests/trace/expected/content{,_off}.spans;
# REIN_UPDATE_EXPECTED=1 rewrites them.
. "$ROOT/tests/cli/lib.sh"
. "$ROOT/tests/cli/modellib.sh"
EXP="$ROOT/tests/trace/expected"
export REIN_PROVIDER=openai
card="4111 1111 1111 1111"
check() { # NAME RUN
	"$REIN" trace --json "$2" >"$1.json" || fail "rein trace --json $1"
	python3 "$ROOT/tests/trace/spans.py" <"$1.json" >"$1.spans" || fail "spans of $1"
	if [ "${REIN_UPDATE_EXPECTED:-}" = 1 ]; then
		cp "$1.spans" "$EXP/"
		return
	fi
	diff -u "$EXP/$1.spans" "$1.spans" || fail "$1: the spans differ"
}

# store_prompts off (the llm workflow): no content, but the server and the response id
script '{"turns": [{"text": "{\"category\": \"refund\"}"}]}'
expect_exit 0 "$REIN" run "$WF/llm" --input "{\"text\": \"card $card please refund\"}"
run=$(json_get "$OUT" 'j["run"]')
check content_off "$run"
! grep -q "gen_ai.input.messages\|gen_ai.output.messages\|Classify this" content_off.json || fail "content exported without store_prompts"
grep -q '"server.address"' content_off.json || fail "no server.address"

# store_prompts on, trace.redact [card]: the messages, the card a placeholder
script '{"turns": [{"text": "{\"category\": \"refund\"}"}]}'
expect_exit 0 "$REIN" run "$WF/llm_content" --input "{\"text\": \"card $card please refund\"}"
run=$(json_get "$OUT" 'j["run"]')
check content "$run"
grep -q 'Classify this ticket: card \[card:1\] please refund' content.spans || fail "no redacted input message"
! grep -q "$card" content.json || fail "the card number left the process"
grep -q "gen_ai.output.messages" content.spans || fail "no output messages"

# store_prompts on and no trace.redact: stored as sent, exported redacted by every class
mkdir -p raw && sed 's/store_prompts: true, redact: \[card\]/store_prompts: true/' "$WF/llm_content/workflow.yaml" >raw/workflow.yaml
! grep -q redact raw/workflow.yaml || fail "raw still redacts"
mail="jo.doe@example.org"
script '{"turns": [{"text": "{\"category\": \"refund\"}"}]}'
expect_exit 0 "$REIN" run raw --input "{\"text\": \"card $card, mail $mail\"}"
run=$(json_get "$OUT" 'j["run"]')
"$REIN" events "$run" | grep -q "$mail" || fail "without trace.redact the request is not stored as sent"
"$REIN" trace --json "$run" >raw.json || fail "rein trace --json raw"
grep -q "gen_ai.input.messages" raw.json || fail "no input messages"
! grep -q "$card\|$mail\|4111" raw.json || fail "raw content exported: $(grep -o 'Classify[^]]*' raw.json | head -1)"
grep -q 'card \[card:1\], mail \[email:1\]' raw.json || fail "no placeholders in the export"
"$REIN" trace "$run" >raw.tree && ! grep -q "$mail" raw.tree || fail "the terminal view shows the content"

# the key is checked where it is written
mkdir -p bad && sed 's/store_prompts: true/store_prompts: yes please/' "$WF/llm_content/workflow.yaml" >bad/workflow.yaml
expect_exit 2 "$REIN" validate bad
grep -q "workflow.yaml:[0-9]*:[0-9]*: trace.store_prompts must be true or false" stderr.txt || fail "$(cat stderr.txt)"
ok "trace_content"
