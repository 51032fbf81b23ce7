# The WAL is part of the database: kill -9 a `rein run` mid-way, delete
# rein.db-wal, and `rein audit verify` must say that committed transactions
# were lost (they are: the run that was started is gone), on every later
# audit too; deleting the WAL of a store closed cleanly loses nothing and
# audits clean.
. "$ROOT/tests/cli/lib.sh"

expect_exit 0 "$REIN" run "$WF/ok" --input '{"n": 1}'
rm -f rein.db-wal # closed cleanly: everything is in rein.db
expect_exit 0 "$REIN" audit verify
printf '%s' "$OUT" | grep -q "ok: 1 run(s)" || fail "$OUT"

"$REIN" run "$WF/slow" >run.out 2>run.err &
pid=$!
wait_until 30 "the run to be started" has_run running
kill -0 $pid 2>/dev/null || fail "rein run ended before the kill (step too short?)"
kill -9 $pid
wait $pid 2>/dev/null
[ -f rein.db-wal ] || skip "no WAL file after the kill"
rm -f rein.db-wal
expect_exit 1 "$REIN" audit verify
printf '%s\n' "$OUT" | grep -q "^STORE committed transactions were lost: the store's WAL file" || fail "$OUT"
# the finding is recorded: a later audit (the WAL index rebuilt by then) says it again
expect_exit 0 "$REIN" runs
expect_exit 1 "$REIN" audit verify
printf '%s\n' "$OUT" | grep -q "^STORE committed transactions were lost" || fail "second audit: $OUT"
ok "lost WAL detected"
