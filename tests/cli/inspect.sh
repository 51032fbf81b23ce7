# show, events, runs and audit verify, including a tampered log.
. "$ROOT/tests/cli/lib.sh"

expect_exit 0 "$REIN" run "$WF/ok" --input '{"n": 41}'
run=$(json_get "$OUT" 'j["run"]')
[ "$(json_get "$OUT" 'j["output"]["n"]')" = 42 ] || fail "$OUT"
expect_exit 0 "$REIN" run "$WF/ok" --input @/dev/stdin <<IN
{"n": 1}
IN
expect_exit 0 "$REIN" events "$run"
printf '%s\n' "$OUT" | python3 -c '
import json, sys
evs = [json.loads(l) for l in sys.stdin]
assert [e["seq"] for e in evs] == [1, 2, 3], evs
assert [e["type"] for e in evs] == ["run.started", "step.completed", "run.ended"], evs
for e in evs:
    assert set(e) == {"seq", "type", "step", "at", "data", "hash"}, e
    assert len(e["hash"]) == 64
assert evs[1]["step"] == "add" and evs[1]["data"] == {"out": {"n": 42}}
assert evs[0]["data"]["input"] == {"n": 41}
' || fail "events format"
expect_exit 0 "$REIN" show "$run"
printf '%s' "$OUT" | grep -q "status    succeeded" || fail "$OUT"
expect_exit 0 "$REIN" show "$run" --json
[ "$(json_get "$OUT" 'len(j["events"])')" = 3 ] || fail "$OUT"
expect_exit 0 "$REIN" runs
[ "$(printf '%s\n' "$OUT" | wc -l)" = 3 ] || fail "$OUT"

expect_exit 0 "$REIN" audit verify
printf '%s' "$OUT" | grep -q "ok: 2 run(s), 6 event(s) verified" || fail "$OUT"

# tamper with the payload of event 2: audit names the run and seq 2
sqlite3 rein.db "UPDATE payloads SET body = '{\"out\":{\"n\":1000}}' WHERE hash = (SELECT payload_hash FROM event_log WHERE run_id = '$run' AND seq = 2)"
expect_exit 1 "$REIN" audit verify
printf '%s' "$OUT" | grep -q "MISMATCH run $run seq 2" || fail "$OUT"
expect_exit 1 "$REIN" audit verify "$run"

# an event removed behind the store's back (triggers dropped first)
expect_exit 0 "$REIN" run "$WF/ok" --input '{"n": 5}'
run2=$(json_get "$OUT" 'j["run"]')
sqlite3 rein.db "DROP TRIGGER events_append_only_d; DELETE FROM events WHERE k = (SELECT k FROM event_log WHERE run_id = '$run2' AND seq = 2)"
expect_exit 1 "$REIN" audit verify "$run2"
printf '%s' "$OUT" | grep -q "MISMATCH run $run2 seq 2" || fail "$OUT"
# the store refuses edits while its triggers are in place
sqlite3 rein.db "UPDATE events SET at = 0 WHERE k & 16777215 = 1" 2>/dev/null && fail "events were editable"
ok "inspect"
