# Tampering with the sqlite3 CLI behind rein's back: a workflow bundle edited
# to inject code (resume refuses it, audit names the version and its runs), a
# runs row rewritten to look succeeded (audit compares it with run.ended), and
# a purged payload (shown as purged, the chain still verifies).
. "$ROOT/tests/cli/lib.sh"

# 1. the bundle of a waiting run: inject code, then resume and audit
expect_exit 4 "$REIN" run "$WF/timer" --max-wait 0
run=$(json_get "$OUT" 'j["run"]')
expect_exit 4 "$REIN" run "$WF/timer" --max-wait 0
run_b=$(json_get "$OUT" 'j["run"]')
expect_exit 0 "$REIN" audit verify
version=$(sqlite3 rein.db "SELECT version FROM runs WHERE id = '$run'")
sqlite3 rein.db "UPDATE specs SET bundle = replace(bundle, 'v * 2', 'os and 666 or 666') WHERE version = '$version'"
[ "$(sqlite3 rein.db "SELECT count(*) FROM specs WHERE bundle LIKE '%666%'")" = 1 ] || fail "tamper did not apply"
expect_exit 1 "$REIN" audit verify
short=$(printf '%.12s' "$version")
printf '%s\n' "$OUT" | grep -q "BUNDLE run $run: .*version $short does not match its hash" || fail "$OUT"
printf '%s\n' "$OUT" | grep -q "BUNDLE run $run_b: " || fail "the second run of the version: $OUT"
expect_exit 1 "$REIN" audit verify "$run"
# resume never executes the edited bundle
"$REIN" resume "$run" --max-wait 10 >resume.out 2>resume.err && fail "resume ran a tampered bundle: $(cat resume.out)"
grep -q "does not match its hash" resume.err || fail "resume: $(cat resume.err)"
grep -q 666 resume.out && fail "the injected code ran: $(cat resume.out)"
# restore the bundle: everything verifies again (the check is the hash, not a flag)
sqlite3 rein.db "UPDATE specs SET bundle = replace(bundle, 'os and 666 or 666', 'v * 2') WHERE version = '$version'"
expect_exit 0 "$REIN" audit verify

# 2. an escalated run's row rewritten to succeeded: audit says which field
expect_exit 3 "$REIN" run "$WF/outcomes" --input '{"want": "escalate"}'
esc=$(json_get "$OUT" 'j["run"]')
sqlite3 rein.db "UPDATE runs SET status = 'succeeded', output = '{\"result\":\"fine\"}', reason = NULL WHERE id = '$esc'"
expect_exit 1 "$REIN" audit verify
printf '%s\n' "$OUT" | grep -q "MISMATCH run $esc seq 3: the run row's status does not match run.ended" || fail "$OUT"
# status alone put back: the output still disagrees
sqlite3 rein.db "UPDATE runs SET status = 'escalated' WHERE id = '$esc'"
expect_exit 1 "$REIN" audit verify "$esc"
printf '%s\n' "$OUT" | grep -q "MISMATCH run $esc seq 3: the run row's output" || fail "$OUT"
sqlite3 rein.db "UPDATE runs SET output = '{\"want\":\"escalate\"}', reason = 'needs a human: escalate' WHERE id = '$esc'"
expect_exit 0 "$REIN" audit verify "$esc"
# a running row whose log has ended, and an ended row whose log has not
expect_exit 0 "$REIN" run "$WF/ok" --input '{"n": 1}'
okrun=$(json_get "$OUT" 'j["run"]')
sqlite3 rein.db "UPDATE runs SET status = 'running' WHERE id = '$okrun'"
expect_exit 1 "$REIN" audit verify "$okrun"
sqlite3 rein.db "UPDATE runs SET status = 'succeeded' WHERE id = '$okrun'"
sqlite3 rein.db "UPDATE runs SET status = 'cancelled' WHERE id = '$run_b'"
expect_exit 1 "$REIN" audit verify "$run_b"
printf '%s\n' "$OUT" | grep -q "says cancelled but the log has no run.ended" || fail "$OUT"
sqlite3 rein.db "UPDATE runs SET status = 'waiting' WHERE id = '$run_b'"

# 3. a purged payload: marked in events and show, and the chain still verifies
sqlite3 rein.db "DELETE FROM payloads WHERE hash = (SELECT payload_hash FROM event_log WHERE run_id = '$okrun' AND seq = 2)"
expect_exit 0 "$REIN" events "$okrun"
printf '%s\n' "$OUT" | sed -n 2p | python3 -c '
import json, sys
e = json.loads(sys.stdin.read())
assert e["seq"] == 2 and e["data"] == {"purged": True} and e["purged"] is True, e
' || fail "purged event: $OUT"
expect_exit 0 "$REIN" show "$okrun"
printf '%s\n' "$OUT" | grep -q 'step.completed.*{"purged":true}' || fail "$OUT"
expect_exit 0 "$REIN" audit verify
ok "tamper"
