# budgets.timeout_s holds inside a code step: a long loop under a large
# instruction budget is stopped at the run's deadline (not when it is done),
# the run fails with the timeout reason (on_fail is not taken), and the
# recorded step.failed is what resume and audit read back.
. "$ROOT/tests/cli/lib.sh"

expect_exit 1 "$REIN" run "$WF/spin"
[ "$(json_get "$OUT" 'j["status"]')" = failed ] || fail "status: $OUT"
reason=$(json_get "$OUT" 'j["reason"]')
[ "$reason" = "timeout: the run exceeded timeout_s 1 while step 'spin' ran" ] || fail "reason: $reason"
run=$(json_get "$OUT" 'j["run"]')
# stopped near the deadline, not after the loop: by the events' own stamps
took=$("$REIN" events "$run" | python3 -c '
import json, sys, datetime
t = {}
for l in sys.stdin:
    e = json.loads(l)
    t.setdefault(e["type"], datetime.datetime.fromisoformat(e["at"].replace("Z", "+00:00")))
print(int((t["step.failed"] - t["run.started"]).total_seconds() * 1000))')
[ "$took" -lt 5000 ] || fail "the step ran ${took} ms past a 1 s limit"
expect_exit 0 "$REIN" audit verify "$run"
ok "a code step stopped at the run's timeout after ${took} ms: $reason"
