# Exit codes and outputs for each way a run can end, and bad usage.
. "$ROOT/tests/cli/lib.sh"

expect_exit 0 "$REIN" run "$WF/outcomes" --input '{"want":"ok"}'
[ "$(json_get "$OUT" 'j["output"]["result"]')" = fine ] || fail "ok output: $OUT"
expect_exit 1 "$REIN" run "$WF/outcomes" --input '{"want":"fail"}'
[ "$(json_get "$OUT" 'j["reason"]')" = "asked to fail" ] || fail "fail reason: $OUT"
expect_exit 3 "$REIN" run "$WF/outcomes" --input '{"want":"escalate"}'
[ "$(json_get "$OUT" 'j["reason"]')" = "needs a human: escalate" ] || fail "escalate: $OUT"
expect_exit 1 "$REIN" run "$WF/outcomes" --input '{"want":"crash"}'
json_get "$OUT" 'j["reason"]' | grep -q "asked to crash" || fail "crash reason: $OUT"

# bad input: exit 2, nothing started
expect_exit 2 "$REIN" run "$WF/outcomes" --input '{"want":"maybe"}'
grep -q '^<input>:1:1: input does not match the input schema: /want' stderr.txt || fail "$(cat stderr.txt)"
expect_exit 2 "$REIN" run "$WF/outcomes" --input '{not json'
expect_exit 2 "$REIN" run "$ROOT/tests/specs/invalid/goto_missing"
grep -q "goto 'nowhere': no such step" stderr.txt || fail "spec error not shown"
expect_exit 0 "$REIN" runs --json
[ "$(json_get "$OUT" 'len(j)')" = 4 ] || fail "bad input started a run: $OUT"

# waiting: a timer longer than --max-wait returns; cancel ends it
expect_exit 4 "$REIN" run "$WF/longwait" --max-wait 1
run=$(json_get "$OUT" 'j["run"]')
[ "$(json_get "$OUT" 'j["status"]')" = waiting ] || fail "$OUT"
expect_exit 0 "$REIN" resume --all          # not due: nothing to do
[ -z "$OUT" ] || fail "resume --all advanced a run that is not due: $OUT"
expect_exit 4 "$REIN" resume "$run" --max-wait 1
expect_exit 5 "$REIN" cancel "$run"
[ "$(json_get "$OUT" 'j["status"]')" = cancelled ] || fail "$OUT"
expect_exit 5 "$REIN" cancel "$run"          # already ended: reported as is
expect_exit 0 "$REIN" runs --status cancelled --json
[ "$(json_get "$OUT" 'len(j)')" = 1 ] || fail "$OUT"

# usage errors
expect_exit 2 "$REIN" run
expect_exit 2 "$REIN" run "$WF/ok" --bogus
grep -q "unknown or incomplete option '--bogus'" stderr.txt || fail "$(cat stderr.txt)"
expect_exit 2 "$REIN" frobnicate
expect_exit 2 "$REIN" runs --status sleepy
expect_exit 2 "$REIN" show run_doesnotexist
expect_exit 2 "$REIN" --nope
for c in run resume show events runs cancel validate audit schema; do
	expect_exit 0 "$REIN" $c --help
	printf '%s' "$OUT" | grep -q "usage: rein $c" || fail "$c --help: $OUT"
done
expect_exit 0 "$REIN" --help
ok "outcomes"
