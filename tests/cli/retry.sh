# rein retry RUN --from STEP: a new run linked to the old one (retry_of), which
# reuses the recorded outputs of the steps before STEP: no tool call is made
# again for them; STEP and what follows run anew, on the old run's version.
. "$ROOT/tests/cli/lib.sh"
. "$ROOT/tests/cli/toollib.sh"

expect_exit 1 "$REIN" run "$WF/retry" --input '{"mode": "ok"}'
old=$(json_get "$OUT" 'j["run"]')
json_get "$OUT" 'j["reason"]' | grep -q "the check failed" || fail "first run: $OUT"
[ "$(json_get "$(stats)" 'j["requests"]')" = 1 ] || fail "server saw: $(stats)"
key=$(events_of "$old" tool.intent | python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["key"])')

# from the code step: the tool's recorded answer is reused, nothing is sent
reset_stats
expect_exit 1 "$REIN" retry "$old" --from check
new=$(json_get "$OUT" 'j["run"]')
[ "$new" != "$old" ] || fail "the retry is the old run"
json_get "$OUT" 'j["reason"]' | grep -q "with key $key" || fail "the retry did not see the old call's answer: $OUT"
[ "$(json_get "$(stats)" 'j["requests"]')" = 0 ] || fail "the retry sent tool requests: $(stats)"
[ "$(events_of "$new" tool.intent | wc -l)" = 1 ] || fail "intents in the retry: $(events_of "$new" tool.intent)"
c=$(completions "$new")
[ "$c" = "call 1" ] || fail "completions: $c"
expect_exit 0 "$REIN" show "$new" --json
[ "$(json_get "$OUT" 'j["retry_of"]["run"]')" = "$old" ] || fail "show --json: no retry_of"
[ "$(json_get "$OUT" 'j["retry_of"]["from"]')" = check ] || fail "show --json: retry_of.from"
ver=$(json_get "$OUT" 'j["version"]')
expect_exit 0 "$REIN" show "$old" --json
[ "$(json_get "$OUT" 'j["version"]')" = "$ver" ] || fail "the retry runs another version"
expect_exit 0 "$REIN" show "$new"
printf '%s\n' "$OUT" | grep -q "^retry_of  $old from step 'check'" || fail "show: $OUT"
ok "retry from check: no tool request, retry_of recorded"

# from the tool step: the call is made again (a new run, a new key)
expect_exit 1 "$REIN" retry "$old" --from call
[ "$(json_get "$(stats)" 'j["requests"]')" = 1 ] || fail "retry from call: $(stats)"
json_get "$OUT" 'j["reason"]' | grep -q "with key $key" && fail "the call was not made again: $OUT"

# refused: an unknown step, a step that never ran, an unknown run
expect_exit 2 "$REIN" retry "$old" --from nosuch
grep -q "has no step 'nosuch'" stderr.txt || fail "unknown step: $(cat stderr.txt)"
expect_exit 2 "$REIN" retry "$old" --from done
grep -q "step 'done' never ran in run $old" stderr.txt || fail "never ran: $(cat stderr.txt)"
expect_exit 2 "$REIN" retry run_nosuch --from check
expect_exit 2 "$REIN" retry "$old"
expect_exit 4 "$REIN" run "$WF/signal"
waiting=$(json_get "$OUT" 'j["run"]')
expect_exit 2 "$REIN" retry "$waiting" --from ask
grep -q "has not ended (waiting)" stderr.txt || fail "a run that has not ended: $(cat stderr.txt)"
expect_exit 0 "$REIN" audit verify
ok "retry refusals"
