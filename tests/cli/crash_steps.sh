# The adaptive barrier: six code steps that each cost more than a commit.
# Each is durable before the next starts, so after kill -9 during the fourth
# a resume does not redo the three before it: their step.completed events are
# the ones recorded before the kill (same seq and hash), each step completes
# once, and the output is that of an uninterrupted run.
. "$ROOT/tests/cli/lib.sh"

# done RUN STEP: the step's completion is in the store (durable)
done_() { "$REIN" events "$1" | grep -q "\"type\":\"step.completed\",\"step\":\"$2\""; }

"$REIN" run "$WF/steps6" >run.out 2>run.err &
pid=$!
wait_until 30 "the run to be started" has_run running
run=$(first_run running)
wait_until 60 "step s3 to be durable" done_ "$run" s3
kill -0 $pid 2>/dev/null || fail "rein run ended before the kill: the steps were not durable one by one"
kill -9 $pid
wait $pid 2>/dev/null
before=$("$REIN" events "$run" | python3 -c '
import json, sys
for l in sys.stdin:
    e = json.loads(l)
    if e["type"] == "step.completed" and e["step"] in ("s1", "s2", "s3"):
        print(e["step"], e["seq"], e["hash"])')
[ "$(echo "$before" | wc -l)" -eq 3 ] || fail "before the kill: $before"

expect_exit 0 "$REIN" resume --all
[ "$(json_get "$OUT" 'j["status"]')" = succeeded ] || fail "status: $OUT"
[ "$(json_get "$OUT" 'j["output"]["n"]')" = 6 ] || fail "output: $OUT"
after=$("$REIN" events "$run" | python3 -c '
import json, sys
for l in sys.stdin:
    e = json.loads(l)
    if e["type"] == "step.completed" and e["step"] in ("s1", "s2", "s3"):
        print(e["step"], e["seq"], e["hash"])')
[ "$before" = "$after" ] || fail "steps redone: before $before, after $after"
c=$(completions "$run")
[ "$c" = "$(printf 's1 1\ns2 1\ns3 1\ns4 1\ns5 1\ns6 1')" ] || fail "completions: $c"
expect_exit 0 "$REIN" audit verify "$run"
ok "killed in s4, resumed without redoing s1-s3"
