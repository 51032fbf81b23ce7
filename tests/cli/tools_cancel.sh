# Cancelling a run while its tool call is out: `rein cancel` from another
# process records the request; the worker notices it, cuts the call short
# and ends the run cancelled.
. "$ROOT/tests/cli/lib.sh"
. "$ROOT/tests/cli/toollib.sh"
"$REIN" run "$WF/slowtool" --input '{"mode": "delay:8000"}' >run.out 2>run.err &
pid=$!
for i in $(seq 1 50); do
	run=$("$REIN" runs --json | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j[0]["run"] if j else "")')
	[ -n "$run" ] && "$REIN" events "$run" | grep -q tool.intent && break
	sleep 0.1
done
[ -n "$run" ] || fail "no run"
expect_exit 0 "$REIN" cancel "$run"
[ "$(json_get "$OUT" 'j["cancel_requested"]')" = True ] || fail "$OUT"
wait $pid
st=$?
[ $st -eq 5 ] || fail "rein run exited $st: $(cat run.out run.err)"
[ "$(json_get "$(cat run.out)" 'j["status"]')" = cancelled ] || fail "$(cat run.out)"
"$REIN" events "$run" | grep -q '"outcome":"cancelled"' || fail "the call was not cut short"
expect_exit 0 "$REIN" audit verify
ok "cancel during a call"
