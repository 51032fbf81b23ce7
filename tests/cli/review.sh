# Resolving needs_review: a run killed during a call to a tool that does not
# honour keys stops in needs_review with the evidence (the attempt that was
# out, what is known of it); `rein review` resolves it, recorded with who did
# it: --done JSON (the step completes with that result), --retry (sent again,
# same key), --fail REASON (the step fails, the run follows on_fail or fails).
. "$ROOT/tests/cli/lib.sh"
. "$ROOT/tests/cli/toollib.sh"

# in_review: kills a run mid-call, resumes it into needs_review; sets $run
in_review() {
	reset_stats
	"$REIN" run "$WF/slowtool_nokey" --input '{"mode": "delay:2000"}' >run.out 2>run.err &
	pid=$!
	wait_until 30 "the run to be started" has_run running
	run=$(first_run running)
	wait_until 30 "the tool call to be out" has_event "$run" tool.intent
	kill -9 $pid
	wait $pid 2>/dev/null
	expect_exit 6 "$REIN" resume "$run"
	[ "$(json_get "$OUT" 'j["status"]')" = needs_review ] || fail "$OUT"
	[ "$(json_get "$OUT" 'j["output"]["attempts"]')" = 1 ] || fail "evidence attempts: $OUT"
	json_get "$OUT" 'j["output"]["last_error"]' | grep -q "process stopped" || fail "evidence error: $OUT"
	key=$(json_get "$OUT" 'j["output"]["key"]')
	# the request that was out has come to the server
	first_effect() { [ "$(json_get "$(stats)" 'j["effects_total"]')" -ge 1 ]; }
	wait_until 30 "the first request to complete at the tool server" first_effect
}
reviewed() { events_of "$run" run.reviewed; }

# --done: refused when the result does not match the output schema, or the
# run is not in review; then accepted, recorded with the operator
in_review
expect_exit 2 "$REIN" review "$run" --done '{"ok": false}'
grep -q "result" stderr.txt || fail "$(cat stderr.txt)"
[ -z "$(reviewed)" ] || fail "a refused review was recorded"
expect_exit 2 "$REIN" review "$run"
expect_exit 0 "$REIN" review "$run" --as alice --done '{"ok": true, "key": "checked-by-hand"}'
[ "$(json_get "$OUT" 'j["status"]')" = succeeded ] || fail "$OUT"
[ "$(json_get "$OUT" 'j["output"]["key"]')" = checked-by-hand ] || fail "$OUT"
r=$(reviewed)
[ "$(json_get "$r" 'j["action"]')" = done ] || fail "run.reviewed: $r"
[ "$(json_get "$r" 'j["by"]')" = alice ] || fail "run.reviewed: $r"
[ "$(json_get "$r" 'j["key"]')" = "$key" ] || fail "run.reviewed: $r"
events_of "$run" inbox.received | grep -q '"sender": "alice"' || fail "no inbox entry from alice"
[ "$(json_get "$(stats)" 'j["requests"]')" = 1 ] || fail "sent again: $(stats)"
expect_exit 2 "$REIN" review "$run" --retry
grep -q "not needs_review" stderr.txt || fail "$(cat stderr.txt)"

# --retry: the call goes out again (same intent, same key)
in_review
expect_exit 0 "$REIN" review "$run" --as bob --retry
[ "$(json_get "$OUT" 'j["status"]')" = succeeded ] || fail "$OUT"
[ "$(json_get "$(stats)" 'j["requests"]')" = 2 ] || fail "not sent again: $(stats)"
[ "$(events_of "$run" tool.intent | wc -l)" = 1 ] || fail "a second intent"
[ "$(json_get "$(reviewed)" 'j["by"]')" = bob ] || fail "$(reviewed)"

# --fail: the step fails with the reason (no on_fail here: the run fails)
in_review
USER=carol expect_exit 1 "$REIN" review "$run" --fail "the refund was not made"
[ "$(json_get "$OUT" 'j["status"]')" = failed ] || fail "$OUT"
json_get "$OUT" 'j["reason"]' | grep -q "failed on review by carol: the refund was not made" || fail "$OUT"
[ "$(json_get "$(stats)" 'j["requests"]')" = 1 ] || fail "sent again: $(stats)"
expect_exit 0 "$REIN" audit verify
ok "needs_review resolved by done, retry and fail"
