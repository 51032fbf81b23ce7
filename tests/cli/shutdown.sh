# Graceful shutdown: SIGTERM (or SIGINT) during a tool call. The call out is
# given --grace to finish; rein exits 7 with the run released (no lease),
# and `rein resume RUN` finishes it. A call still out after the grace
# period is cut short and stays in doubt: the resume sends it again with the
# same idempotency key (the server sees the key twice, does it once).
. "$ROOT/tests/cli/lib.sh"
. "$ROOT/tests/cli/toollib.sh"

gone() { ! kill -0 "$1" 2>/dev/null; }
not_leased() {
	expect_exit 0 "$REIN" show "$1" --json
	[ "$(json_get "$OUT" '"lease_owner" in j')" = False ] || fail "still leased: $OUT"
}
key_of() { events_of "$1" tool.intent | python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["key"])'; }

# 1. the call finishes within the grace period: its result is kept
"$REIN" run "$WF/slowtool" --grace 20 --input '{"mode": "delay:1500"}' >run.out 2>run.err &
pid=$!
wait_until 30 "the run to be started" has_run running
run=$(first_run running)
wait_until 30 "the tool call to be out" has_event "$run" tool.intent
kill -TERM $pid
wait_until 15 "rein run to stop" gone $pid
wait $pid
st=$?
[ $st -eq 7 ] || fail "rein run exited $st, want 7: $(cat run.out run.err)"
grep -q "stopped by a signal" run.err || fail "no word of the stop: $(cat run.err)"
[ "$(json_get "$(cat run.out)" 'j["status"]')" = running ] || fail "$(cat run.out)"
has_event "$run" step.completed || fail "the finished call's result was not recorded"
not_leased "$run"
key=$(key_of "$run")
expect_exit 0 "$REIN" resume "$run"
[ "$(json_get "$OUT" 'j["status"]')" = succeeded ] || fail "$OUT"
[ "$(json_get "$(stats)" "j['by_key']['$key']")" = 1 ] || fail "the call was sent again: $(stats)"
[ "$(events_of "$run" tool.intent | wc -l)" = 1 ] || fail "a second intent"

# 2. the call outlives the grace period: cut short, in doubt, sent again
reset_stats
"$REIN" run "$WF/slowtool" --grace 0.5 --input '{"mode": "delay:8000"}' >run.out 2>run.err &
pid=$!
wait_until 30 "the run to be started" has_run running
run=$(first_run running)
wait_until 30 "the tool call to be out" has_event "$run" tool.intent
kill -INT $pid
# well before the call's 8 s
wait_until 5 "rein run to stop within its grace period" gone $pid
wait $pid
st=$?
[ $st -eq 7 ] || fail "rein run exited $st, want 7: $(cat run.out run.err)"
has_event "$run" step.completed && fail "a result although the call was cut short"
not_leased "$run"
key=$(key_of "$run")
expect_exit 0 "$REIN" resume "$run"
[ "$(json_get "$OUT" 'j["status"]')" = succeeded ] || fail "$OUT"
[ "$(json_get "$OUT" 'j["output"]["key"]')" = "$key" ] || fail "another key: $OUT"
events_of "$run" tool.attempt | grep -q '"outcome": "in_doubt"' || fail "no in-doubt attempt"
s=$(stats)
[ "$(json_get "$s" "j['by_key']['$key']")" = 2 ] || fail "server saw: $s"
[ "$(json_get "$s" "j['effects']['$key']")" = 1 ] || fail "two effects for one key: $s"

# 3. a stop during a timer: released as waiting, resumed when due
"$REIN" run "$WF/timer" --max-wait 60 >run.out 2>run.err &
pid=$!
wait_until 30 "the run to wait on its timer" has_run waiting
run=$(first_run waiting)
kill -TERM $pid
wait_until 5 "rein run to stop" gone $pid
wait $pid
st=$?
[ $st -eq 7 ] || fail "rein run exited $st, want 7: $(cat run.out run.err)"
not_leased "$run"
expect_exit 0 "$REIN" resume --all
[ "$(json_get "$OUT" 'j["status"]')" = succeeded ] || fail "$OUT"
expect_exit 0 "$REIN" audit verify
ok "graceful shutdown: calls finish or stay in doubt, runs released, exit 7"
