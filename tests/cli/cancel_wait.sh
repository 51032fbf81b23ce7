# A cancel sent while a run waits on a timer goes through the run's inbox:
# `rein cancel` from another process records it durably; the worker that
# holds the run reads the inbox when the timer wakes, before anything else,
# so the run ends cancelled and the write call after the wait never goes out.
. "$ROOT/tests/cli/lib.sh"
. "$ROOT/tests/cli/toollib.sh"

# 1. a wait, then a code step: the cancel wins over the timer
"$REIN" run "$WF/timer" >run.out 2>run.err &
pid=$!
wait_until 30 "the run to wait" has_run waiting
run=$(first_run)
expect_exit 0 "$REIN" cancel "$run"
wait $pid
st=$?
[ $st -eq 5 ] || fail "rein run exited $st: $(cat run.out run.err)"
[ "$(json_get "$(cat run.out)" 'j["status"]')" = cancelled ] || fail "$(cat run.out)"
[ "$(json_get "$(cat run.out)" 'j["reason"]')" = "cancelled on request" ] || fail "$(cat run.out)"
"$REIN" events "$run" | grep -q '"type":"inbox.received"' || fail "the cancel is not in the log"
"$REIN" events "$run" | grep -q '"step":"after"' && fail "the step after the wait ran"
ok "cancel during a wait"

# 2. a wait, then a write tool: the POST never leaves
rm -f rein.db rein.db-wal rein.db-shm
reset_stats
"$REIN" run "$WF/waitpay" --input '{}' >run.out 2>run.err &
pid=$!
wait_until 30 "the run to wait" has_run waiting
run=$(first_run)
expect_exit 0 "$REIN" cancel "$run"
wait $pid
st=$?
[ $st -eq 5 ] || fail "rein run exited $st: $(cat run.out run.err)"
[ "$(json_get "$(cat run.out)" 'j["status"]')" = cancelled ] || fail "$(cat run.out)"
[ "$(json_get "$(stats)" 'j["requests"]')" = 0 ] || fail "the tool was called: $(stats)"
"$REIN" events "$run" | grep -q '"type":"tool.intent"' && fail "a tool intent was recorded"
# the inbox entry was drained exactly once, and a second cancel changes
# nothing (the run has ended: it is reported as it is, exit 5 = cancelled)
expect_exit 5 "$REIN" cancel "$run"
n=$("$REIN" events "$run" | grep -c '"type":"inbox.received"')
[ "$n" = 1 ] || fail "inbox.received recorded $n times"
expect_exit 0 "$REIN" audit verify
ok "cancel during a wait before a write call"
