# Cancelling a run while its tool call is out: `rein cancel` from another
# process records the request; the worker notices it, cuts the call short
# and ends the run cancelled.
. "$ROOT/tests/cli/lib.sh"
. "$ROOT/tests/cli/toollib.sh"
"$REIN" run "$WF/slowtool" --input '{"mode": "delay:8000"}' >run.out 2>run.err &
pid=$!
wait_until 30 "the run to be started" has_run
run=$(first_run)
wait_until 30 "the tool call to be out" has_event "$run" tool.intent
expect_exit 0 "$REIN" cancel "$run"
[ "$(json_get "$OUT" 'j["cancel_requested"]')" = True ] || fail "$OUT"
wait $pid
st=$?
[ $st -eq 5 ] || fail "rein run exited $st: $(cat run.out run.err)"
[ "$(json_get "$(cat run.out)" 'j["status"]')" = cancelled ] || fail "$(cat run.out)"
"$REIN" events "$run" | grep -q '"outcome":"cancelled"' || fail "the call was not cut short"
expect_exit 0 "$REIN" audit verify
ok "cancel during a call"
