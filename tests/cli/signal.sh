# wait: {signal}: a run parks until `rein signal` (another process) delivers
# data checked against the wait's schema; killed during the wait, signalled,
# `rein resume --all` finishes it; a signal id is recorded once.
. "$ROOT/tests/cli/lib.sh"

# 1. the run waits in its process; the signal comes from another one
"$REIN" run "$WF/signal" --max-wait 600 >run.out 2>run.err &
pid=$!
wait_until 30 "the run to wait for its signal" has_run waiting
run=$(first_run waiting)
expect_exit 2 "$REIN" signal "$run" approve '{"who": "ann"}'
grep -q 'by' stderr.txt || fail "a payload without 'by' was not refused with the schema errors: $(cat stderr.txt)"
expect_exit 2 "$REIN" signal "$run" nope
grep -q "no wait step for signal 'nope'" stderr.txt || fail "unknown signal: $(cat stderr.txt)"
expect_exit 2 "$REIN" signal "$run" approve 'not json'
has_event "$run" inbox.received && fail "a refused signal reached the log"
expect_exit 0 "$REIN" signal "$run" approve '{"by": "ann"}' --id s1
[ "$(json_get "$OUT" 'j["duplicate"]')" = False ] || fail "signal: $OUT"
[ "$(json_get "$OUT" 'j["id"]')" = s1 ] || fail "signal id: $OUT"
wait_until 30 "the run to finish" sh -c "! kill -0 $pid"
wait $pid
rc=$?
[ $rc -eq 0 ] || { cat run.err >&2; fail "rein run exited $rc: $(cat run.out)"; }
out=$(cat run.out)
[ "$(json_get "$out" 'j["output"]["by"]')" = ann ] || fail "output: $out"
[ "$(json_get "$out" 'j["output"]["order"]')" = 7 ] || fail "output: $out"
expect_exit 2 "$REIN" signal "$run" approve '{"by": "late"}'
grep -q "has ended" stderr.txt || fail "a signal to an ended run: $(cat stderr.txt)"
ok "signal from another process: $out"

# 2. killed during the wait; the signal (twice with one id) then resume --all
"$REIN" run "$WF/signal" --max-wait 600 >run2.out 2>run2.err &
pid=$!
wait_until 30 "the second run to wait" has_run waiting
run=$(first_run waiting)
kill -9 $pid
wait $pid 2>/dev/null
[ -s run2.out ] && fail "the killed run printed a result"
expect_exit 0 "$REIN" signal "$run" approve '{"by": "bob"}' --id s2
expect_exit 0 "$REIN" signal "$run" approve '{"by": "eve"}' --id s2
[ "$(json_get "$OUT" 'j["duplicate"]')" = True ] || fail "the same id again: $OUT"
expect_exit 0 "$REIN" resume --all
res=$OUT
[ "$(printf '%s\n' "$OUT" | wc -l)" -eq 1 ] || fail "resume --all printed: $OUT"
[ "$(json_get "$OUT" 'j["run"]')" = "$run" ] || fail "resumed another run: $OUT"
[ "$(json_get "$OUT" 'j["status"]')" = succeeded ] || fail "status: $OUT"
[ "$(json_get "$OUT" 'j["output"]["by"]')" = bob ] || fail "output: $OUT"
n=$("$REIN" events "$run" | grep -c '"type":"inbox.received"')
[ "$n" -eq 1 ] || fail "the signal was recorded $n times"
c=$(completions "$run")
[ "$c" = "$(printf 'ask 1\nprep 1')" ] || fail "completions: $c"
expect_exit 0 "$REIN" audit verify
ok "killed during the wait, signalled, resumed: $res"
