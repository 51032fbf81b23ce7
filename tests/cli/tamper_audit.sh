# Tampering with the log and the anchor chain with the sqlite3 CLI, the way
# someone with write access to the file would (dropping the append-only
# triggers first): one byte of every event field and of a payload, at several
# seqs; an event deleted; a whole run deleted (its row and its events); two
# events swapped; an anchor edited or deleted. Every time `rein audit verify`
# exits 1 and names the place (the run and seq, or the anchor); restoring the
# file makes it verify again.
. "$ROOT/tests/cli/lib.sh"
command -v sqlite3 >/dev/null || skip "no sqlite3 CLI (scripts/deps.sh installs it)"

mkdir -p wf
cat >wf/workflow.yaml <<'EOF'
rein: 1
name: chain
input: { type: object, properties: { n: { type: integer } }, required: [n] }
steps:
  a: { code: "return { n = input.n + 1 }", next: b }
  b: { code: "return { n = steps.a.out.n * 2 }", next: c }
  c: { code: "return { n = steps.b.out.n + 3 }", next: d }
  d: { code: "return { n = steps.c.out.n, label = 'done' }", next: done }
  done: { end: succeeded }
EOF
expect_exit 0 "$REIN" run wf --input '{"n": 1}'
run=$(json_get "$OUT" 'j["run"]')
expect_exit 0 "$REIN" run wf --input '{"n": 2}'
run2=$(json_get "$OUT" 'j["run"]')
expect_exit 4 "$REIN" run "$WF/timer" --max-wait 0 # suspended: anchored too
waiting=$(json_get "$OUT" 'j["run"]')
expect_exit 0 "$REIN" audit verify
printf '%s\n' "$OUT" | grep -q "ok: 3 run(s), .* verified, 3 anchor(s); anchor head [0-9a-f]\{64\}" || fail "$OUT"
expect_exit 0 "$REIN" audit verify "$waiting"
[ "$(sqlite3 rein.db 'SELECT count(*) FROM anchors')" = 3 ] || fail "anchors: $(sqlite3 rein.db 'SELECT * FROM anchors')"
# the anchors name each run at its head
for r in "$run" "$run2" "$waiting"; do
	[ "$(sqlite3 rein.db "SELECT count(*) FROM anchors a JOIN runs r ON r.id = a.run_id WHERE a.run_id = '$r' AND a.run_last_seq = r.last_seq AND a.run_head_hash = r.last_hash")" = 1 ] ||
		fail "run $r is not anchored at its head"
done
last=$(sqlite3 rein.db "SELECT last_seq FROM runs WHERE id = '$run'")
[ "$last" = 6 ] || fail "the chain run has $last events"
rid=$(sqlite3 rein.db "SELECT rid FROM runs WHERE id = '$run'")
k() { echo $((rid * 16777216 + $1)); }
anchor_of() { sqlite3 rein.db "SELECT seq FROM anchors WHERE run_id = '$1'"; }

# the clean store, put back before each tamper (no process holds it open)
mkdir clean && cp rein.db rein.db-wal rein.db-shm clean/ 2>/dev/null || cp rein.db clean/
restore() { rm -f rein.db rein.db-wal rein.db-shm && cp clean/* .; }
untrigger() {
	sqlite3 rein.db "DROP TRIGGER events_append_only_u; DROP TRIGGER events_append_only_d;
		DROP TRIGGER anchors_append_only_u; DROP TRIGGER anchors_append_only_d;"
}
# tampered SQL WANT...: applies SQL, then audit verify must fail and print
# every WANT (a grep pattern); then the store is put back and verifies
n_cases=0
tampered() {
	_sql=$1
	shift
	restore
	untrigger
	sqlite3 rein.db "$_sql" || fail "tamper SQL failed: $_sql"
	expect_exit 1 "$REIN" audit verify
	for _w in "$@"; do
		printf '%s\n' "$OUT" | grep -q -- "$_w" || fail "after '$_sql': want '$_w' in: $OUT"
	done
	n_cases=$((n_cases + 1))
}
flip() { echo "(CASE WHEN substr($1, 1, 1) = X'00' THEN X'01' ELSE X'00' END) || substr($1, 2)"; }

# 1. one byte of each field of an event, at the first, a middle and the last seq
for s in 1 3 6; do
	tampered "UPDATE events SET type = 'X' || substr(type, 2) WHERE k = $(k $s)" "MISMATCH run $run seq $s: "
	tampered "UPDATE events SET at = at + 1 WHERE k = $(k $s)" "MISMATCH run $run seq $s: event hash does not match"
	tampered "UPDATE events SET hash = $(flip hash) WHERE k = $(k $s)" "MISMATCH run $run seq $s: event hash does not match"
	tampered "UPDATE events SET prev_hash = $(flip prev_hash) WHERE k = $(k $s)" "MISMATCH run $run seq $s: prev_hash"
	tampered "UPDATE events SET payload_hash = $(flip payload_hash) WHERE k = $(k $s)" "MISMATCH run $run seq $s: "
	# one byte of the payload's text (the second character: inside the JSON)
	tampered "UPDATE payloads SET body = substr(body, 1, 1) || (CASE substr(body, 2, 1) WHEN 'a' THEN 'b' ELSE 'a' END) || substr(body, 3) WHERE hash = (SELECT payload_hash FROM events WHERE k = $(k $s))" \
		"MISMATCH run $run seq $s: payload does not match its hash"
done
for s in 2 4 5; do # the steps' names
	tampered "UPDATE events SET step = 'X' || substr(step, 2) WHERE k = $(k $s)" "MISMATCH run $run seq $s: event hash does not match"
done

# 2. an event deleted: the first, a middle one, the last (and the last with
# the row rewritten to match: the anchor still has it)
for s in 1 4; do
	tampered "DELETE FROM events WHERE k = $(k $s)" "MISMATCH run $run seq $s: sequence $s is missing"
done
tampered "DELETE FROM events WHERE k = $(k 6)" "MISMATCH run $run seq 6: the run records 6 events, the log holds 5"
a=$(anchor_of "$run")
tampered "DELETE FROM events WHERE k = $(k 6); UPDATE runs SET last_seq = 5, status = 'running', output = NULL, last_hash = (SELECT hash FROM events WHERE k = $(k 5)) WHERE id = '$run'" \
	"ANCHOR run $run seq 6: anchor $a: anchors seq 6 but the log ends at seq 5"

# 3. a whole run deleted (its row and its events): its anchor names it
for r in "$run" "$run2" "$waiting"; do
	a=$(anchor_of "$r")
	tampered "DELETE FROM events WHERE k BETWEEN (SELECT rid FROM runs WHERE id = '$r') * 16777216 AND (SELECT rid FROM runs WHERE id = '$r') * 16777216 + 16777215; DELETE FROM runs WHERE id = '$r'" \
		"ANCHOR $a: run $r (anchored at seq [0-9]*) is not in the store (the run was deleted)"
done

# 4. two events swapped (their seqs exchanged)
for p in "1 2" "2 5" "5 6"; do
	set -- $p
	tampered "UPDATE events SET k = -1 WHERE k = $(k $1); UPDATE events SET k = $(k $1) WHERE k = $(k $2); UPDATE events SET k = $(k $2) WHERE k = -1" \
		"MISMATCH run $run seq $1: "
done

# 5. an anchor edited, one byte of each field, for every anchor; a run id
# changed; an anchor deleted
for a in 1 2 3; do
	for f in run_head_hash prev_hash hash; do
		tampered "UPDATE anchors SET $f = $(flip $f) WHERE seq = $a" "ANCHOR $a (run "
	done
	tampered "UPDATE anchors SET run_last_seq = run_last_seq - 1 WHERE seq = $a" "ANCHOR $a (run .*its hash does not match its fields"
	tampered "UPDATE anchors SET run_id = 'X' || substr(run_id, 2) WHERE seq = $a" "ANCHOR $a (run X" "ANCHOR $a: run X"
done
r2=$(sqlite3 rein.db "SELECT run_id FROM anchors WHERE seq = 2")
tampered "DELETE FROM anchors WHERE seq = 2" "ANCHOR 3 (run .*anchors are missing before it" \
	"ANCHOR run $r2 seq [0-9]*: anchor missing: the run gave its lease up at seq [0-9]* (it ended or suspended) but that head is not anchored"
r3=$(sqlite3 rein.db "SELECT run_id FROM anchors WHERE seq = 3")
tampered "DELETE FROM anchors WHERE seq = 3" "ANCHOR run $r3 seq [0-9]*: .*not anchored (the run has no anchor)"

# the single-run form names the same place
tampered "UPDATE events SET at = at + 1 WHERE k = $(k 3)" "MISMATCH run $run seq 3"
expect_exit 1 "$REIN" audit verify "$run"
printf '%s\n' "$OUT" | grep -q "MISMATCH run $run seq 3: event hash does not match" || fail "$OUT"
expect_exit 0 "$REIN" audit verify "$run2"

# put back: everything verifies (the check is the hashes, nothing remembered)
restore
expect_exit 0 "$REIN" audit verify
ok "tamper_audit: $n_cases tampered stores, each named"
