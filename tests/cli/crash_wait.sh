# kill -9 a `rein run` during a durable wait; `rein resume --all` finishes it
# with the same output as an uninterrupted run, each step completed once.
. "$ROOT/tests/cli/lib.sh"

expect_exit 0 "$REIN" run "$WF/timer" --db ref.db
want=$(json_get "$OUT" 'json.dumps(j["output"], sort_keys=True)')

"$REIN" run "$WF/timer" >run.out 2>run.err &
pid=$!
# the run has reached its 3 s wait (durable: status waiting)
wait_until 30 "the run to wait on its timer" has_run waiting
kill -0 $pid 2>/dev/null || fail "rein run ended before the kill"
kill -9 $pid
wait $pid 2>/dev/null
[ -s run.out ] && fail "the killed run printed a result"

expect_exit 0 "$REIN" runs --status waiting --json
run=$(json_get "$OUT" 'j[0]["run"]')
[ -n "$run" ] || fail "no waiting run after the kill"

expect_exit 0 "$REIN" resume --all
[ "$(printf '%s\n' "$OUT" | wc -l)" -eq 1 ] || fail "resume --all printed: $OUT"
[ "$(json_get "$OUT" 'j["run"]')" = "$run" ] || fail "resumed another run: $OUT"
[ "$(json_get "$OUT" 'j["status"]')" = succeeded ] || fail "status: $OUT"
got=$(json_get "$OUT" 'json.dumps(j["output"], sort_keys=True)')
[ "$got" = "$want" ] || fail "output $got, want $want"

c=$(completions "$run")
[ "$c" = "$(printf 'after 1\nbefore 1\npause 1')" ] || fail "completions: $c"
"$REIN" events "$run" | grep -q '"type":"run.resumed"' || fail "no run.resumed event"
expect_exit 0 "$REIN" audit verify
ok "crash during wait recovered: $got"
