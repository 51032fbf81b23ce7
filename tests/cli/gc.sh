# rein gc (retention): the payloads of ended runs are purged while their
# skeletons stay: audit verify passes, trace draws the tree, show marks the
# purged payloads, the payload count drops, and a waiting run (and a payload
# it shares with a purged run) is untouched.
. "$ROOT/tests/cli/lib.sh"

expect_exit 0 "$REIN" run "$WF/ok" --input '{"n": 1}'
okrun=$(json_get "$OUT" 'j["run"]')
expect_exit 4 "$REIN" run "$WF/signal" --max-wait 0
ended=$(json_get "$OUT" 'j["run"]')
expect_exit 0 "$REIN" signal "$ended" approve '{"by": "ann"}'
expect_exit 0 "$REIN" resume "$ended" --max-wait 10
expect_exit 4 "$REIN" run "$WF/signal" --max-wait 0
live=$(json_get "$OUT" 'j["run"]')
shared=$(sqlite3 rein.db "SELECT count(DISTINCT a.payload_hash) FROM event_log a JOIN event_log b
  ON a.payload_hash = b.payload_hash WHERE a.run_id = '$ended' AND b.run_id = '$live'")
[ "$shared" -gt 0 ] || fail "the ended and the waiting run share no payload"
before=$(sqlite3 rein.db "SELECT count(*) FROM payloads")

expect_exit 2 "$REIN" gc
expect_exit 2 "$REIN" gc --finished-before yesterday
# a dry run counts and changes nothing
expect_exit 0 "$REIN" gc --finished-before 0s --dry-run
[ "$(json_get "$OUT" 'j["runs"] == 2 and j["payloads"] > 0 and j["dry_run"] is True')" = True ] || fail "$OUT"
[ "$(sqlite3 rein.db "SELECT count(*) FROM payloads")" = "$before" ] || fail "the dry run purged"

expect_exit 0 "$REIN" gc --finished-before 2099-01-01T00:00:00Z --keep-skeleton
[ "$(json_get "$OUT" 'j["runs"] == 2 and j["payloads"] > 0 and j["shared"] > 0 and j["rows"] == 2')" = True ] || fail "$OUT"
after=$(sqlite3 rein.db "SELECT count(*) FROM payloads")
[ "$after" -lt "$before" ] || fail "payloads: $before before, $after after"
# the skeletons stay: every chain and anchor verifies
expect_exit 0 "$REIN" audit verify
expect_exit 0 "$REIN" audit verify "$okrun"
# show marks the purged payloads; the row's output is gone
expect_exit 0 "$REIN" show "$okrun" --json
[ "$(json_get "$OUT" 'any(e.get("purged") for e in j["events"]) and "output" not in j')" = True ] || fail "$OUT"
# trace still draws the tree
expect_exit 0 "$REIN" trace "$okrun"
printf '%s\n' "$OUT" | grep -q "invoke_workflow" || fail "trace: $OUT"
# the waiting run keeps every payload (the shared ones too) and still finishes
missing=$(sqlite3 rein.db "SELECT count(*) FROM event_log e LEFT JOIN payloads p ON p.hash = e.payload_hash
  WHERE e.run_id = '$live' AND p.hash IS NULL")
[ "$missing" = 0 ] || fail "the waiting run lost $missing payloads"
expect_exit 0 "$REIN" signal "$live" approve '{"by": "bo"}'
expect_exit 0 "$REIN" resume "$live" --max-wait 10
expect_exit 0 "$REIN" audit verify
