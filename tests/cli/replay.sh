# rein replay RUN: every run that other scenarios make (an llm and an agent
# with tools over the loopback servers, retried and failing tool calls, code
# steps and timers, cancelled runs, crashed-and-resumed runs, signals,
# reviews, retries from a step) replays with every decision reproduced; a
# recorded engine decision changed behind rein's back (a tool.intent's
# arguments, a code step's output, a backoff's delay) is reported as the
# first divergence at its seq, exit 1; nothing is sent anywhere.
. "$ROOT/tests/cli/lib.sh"

SCEN="agent models tools_http tools_crash outcomes cancel_wait crash_steps crash_code crash_wait signal review retry"
total=0
for s in $SCEN; do
	mkdir -p "$s"
	( cd "$s" && sh "$ROOT/tests/cli/$s.sh" >log.txt 2>&1 )
	rc=$?
	[ $rc -eq 77 ] && { echo "skip: $s ($(tail -1 "$s/log.txt"))"; continue; }
	[ $rc -eq 0 ] || { tail -5 "$s/log.txt" >&2; fail "scenario $s failed (rc $rc)"; }
	for db in $(find "$s" -name '*.db'); do
		runs=$("$REIN" runs --json --db "$db" | python3 -c 'import json,sys; [print(x["run"]) for x in json.load(sys.stdin)]')
		for r in $runs; do
			"$REIN" replay "$r" --db "$db" >replay.out 2>&1 ||
				{ cat replay.out >&2; fail "$s: run $r ($db) did not replay"; }
			grep -q "every decision reproduced" replay.out || fail "$s: $(cat replay.out)"
			total=$((total + 1))
		done
	done
done
[ $total -ge 30 ] || fail "only $total runs replayed"
ok "$total runs of $(echo $SCEN | wc -w) scenarios replay with every decision reproduced"

# the state the scenarios' runs reached is what a resume rebuilds: events
# after a run.resumed are checked too
[ "$(sqlite3 crash_steps/rein.db "SELECT count(*) FROM events WHERE type = 'run.resumed'")" -ge 1 ] ||
	fail "no resumed run among the replayed ones"

# tampering: a recorded decision that the engine does not make
tamper() { # DB PAYLOAD-LIKE FROM TO: rewrites the first payload that matches
	sqlite3 "$1" "UPDATE payloads SET body = replace(body, '$3', '$4') WHERE hash =
		(SELECT hash FROM payloads WHERE body LIKE '$2' LIMIT 1)"
}
seq_of() { # DB LIKE: the seq of the event whose payload matches (within its run)
	"$REIN" events "$2" --db "$1" | python3 -c "
import json, sys
for l in sys.stdin:
    e = json.loads(l)
    if e['type'] == '$3' and '$4' in json.dumps(e['data'], separators=(',', ':')):
        print(e['seq']); break"
}
cp agent/rein.db t1.db
run=$("$REIN" runs --json --db t1.db | python3 -c '
import json, sys, subprocess
for x in json.load(sys.stdin):
    if x["status"] == "succeeded":
        ev = subprocess.run([sys.argv[1], "events", x["run"], "--db", "t1.db"], capture_output=True, text=True).stdout
        if "\"order\":\"A1\"" in ev and "tool.intent" in ev:
            print(x["run"]); break' "$REIN")
[ -n "$run" ] || fail "no agent run with a lookup of A1"
want=$(seq_of t1.db "$run" tool.intent '"order":"A1"')
key=$("$REIN" events "$run" --db t1.db | python3 -c "
import json, sys
for l in sys.stdin:
    e = json.loads(l)
    if e['seq'] == $want: print(e['data']['key'])")
tamper t1.db "{\"args\":{\"order\":\"A1\"}%$key%" '"order":"A1"' '"order":"Z9"'
expect_exit 1 "$REIN" replay "$run" --db t1.db
echo "$OUT" | grep -q "divergence at seq $want (tool.intent)" || fail "tool.intent: $OUT"
echo "$OUT" | grep -q 'expected: tool.intent investigate .*"order":"Z9"' || fail "expected: $OUT"
echo "$OUT" | grep -q 'got: .*tool.intent investigate .*"order":"A1"' || fail "got: $OUT"
"$REIN" audit verify --db t1.db >/dev/null 2>&1 && fail "audit verify missed the tamper"
ok "a changed tool.intent is the divergence at its seq ($want)"

# a code step's output (re-executed: the recorded result must come out again)
cp outcomes/rein.db t2.db
run=$("$REIN" runs --json --db t2.db --status succeeded | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["run"])')
want=$(seq_of t2.db "$run" step.completed '"want":"ok"')
[ -n "$want" ] || fail "no code step output in $run"
tamper t2.db '{"out":{"want":"ok"}%' '"want":"ok"' '"want":"ko"'
expect_exit 1 "$REIN" replay "$run" --db t2.db
echo "$OUT" | grep -q "divergence at seq $want (step.completed)" || fail "code step: $OUT"
ok "a changed code step result is the divergence at its seq ($want)"

# a backoff the engine decided (its full-jitter delay from the PRNG)
cp tools_http/rein.db t3.db
line=$(sqlite3 t3.db "SELECT body FROM payloads WHERE body LIKE '{\"attempt\":%\"delay_ms\":%\"due_at\":%' LIMIT 1")
[ -n "$line" ] || fail "no tool.backoff in tools_http's runs"
run=$("$REIN" runs --json --db t3.db | python3 -c '
import json, sys, subprocess
for x in json.load(sys.stdin):
    ev = subprocess.run([sys.argv[1], "events", x["run"], "--db", "t3.db"], capture_output=True, text=True).stdout
    if sys.argv[2] in ev.replace(" ", ""):
        print(x["run"]); break' "$REIN" "$line")
want=$(seq_of t3.db "$run" tool.backoff "$line")
[ -n "$run" ] && [ -n "$want" ] || fail "the backoff's run"
sqlite3 t3.db "UPDATE payloads SET body = replace(body, '\"delay_ms\":', '\"delay_ms\":1') WHERE body = '$line'"
expect_exit 1 "$REIN" replay "$run" --db t3.db
echo "$OUT" | grep -q "divergence at seq $want (tool.backoff)" || fail "backoff: $OUT"
ok "a changed backoff delay is the divergence at its seq ($want)"

# an unknown run, bad usage
expect_exit 2 "$REIN" replay run_nosuch --db t2.db
expect_exit 2 "$REIN" replay --db t2.db
ok "replay"
