# kill -9 a `rein run` during a long code step; `rein resume --all` re-runs the
# unfinished step and finishes with the same output; each step completed once.
. "$ROOT/tests/cli/lib.sh"

"$REIN" run "$WF/slow" >run.out 2>run.err &
pid=$!
# the run is started (durable) and into its long step: crunch runs for seconds
wait_until 30 "the run to be started" has_run running
kill -0 $pid 2>/dev/null || fail "rein run ended before the kill (step too short?)"
kill -9 $pid
wait $pid 2>/dev/null

expect_exit 0 "$REIN" runs --status running --json
run=$(json_get "$OUT" 'j[0]["run"]')

expect_exit 0 "$REIN" resume --all
[ "$(json_get "$OUT" 'j["status"]')" = succeeded ] || fail "status: $OUT"
got=$(json_get "$OUT" 'json.dumps(j["output"], sort_keys=True)')

expect_exit 0 "$REIN" run "$WF/slow" --db ref.db
want=$(json_get "$OUT" 'json.dumps(j["output"], sort_keys=True)')
[ "$got" = "$want" ] || fail "output $got, want $want"

c=$(completions "$run")
[ "$c" = "$(printf 'crunch 1\nquick 1')" ] || fail "completions: $c"
expect_exit 0 "$REIN" audit verify "$run"
ok "crash during code step recovered: $got"
