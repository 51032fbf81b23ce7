# The kill switch: set from another process while three processes drive runs
# that make write calls to the loopback tool server. No covered write reaches
# the server once the switch is recorded; the held runs wait with reason
# killed; a read call is not held; `rein unkill` and every run finishes with
# exactly one call per payment (the same idempotency key). Then the --tool and
# --workflow selectors. docs/operations.md.
. "$ROOT/tests/cli/lib.sh"
. "$ROOT/tests/cli/toollib.sh"
now_ms() { python3 -c 'import time; print(int(time.time() * 1000))'; }
log() { curl -s "$TOOLSERVER/control/log"; }
# writes_after MS: the write requests (mode delay:*) that arrived after MS
writes_after() { log | python3 -c "
import json, sys
print(sum(1 for r in json.load(sys.stdin) if r['mode'].startswith('delay') and r['at'] > $1))"; }
writes() { writes_after 0; }
# held_all N: N runs are waiting with a kill.held in their log
held_all() { [ "$("$REIN" runs --status waiting --json | python3 -c '
import json, sys; print(len(json.load(sys.stdin)))')" -ge "$1" ]; }
key_count() { log | python3 -c "
import json, sys; print(sum(1 for r in json.load(sys.stdin) if r['key'] == '$1'))"; }

expect_exit 0 "$REIN" run "$WF/killpay" --input '{"mode": "ok"}' # the store exists
reset_stats
expect_exit 0 "$REIN" kills
[ -z "$OUT" ] || fail "switches in a new store: $OUT"

# 1. three processes drive runs; the switch comes from a fourth
pids=""
for i in 1 2 3; do
	"$REIN" run "$WF/killpay" --input '{"mode": "delay:300"}' --max-wait 600 >run$i.out 2>run$i.err &
	pids="$pids $!"
done
wait_until 60 "two payments to reach the server" sh -c "[ \$(curl -s $TOOLSERVER/control/stats | python3 -c 'import json,sys; print(len([k for k in json.load(sys.stdin)[\"by_key\"]]))') -ge 5 ]"
expect_exit 0 "$REIN" kill --workflow killpay --reason "incident 42" --as ann
recorded=$(now_ms) # the switch is in the store: its commit preceded this
sw=$(json_get "$OUT" 'j["switch"]')
[ "$(json_get "$OUT" 'j["by"]')" = ann ] || fail "kill: $OUT"
wait_until 60 "the three runs to be held" held_all 3
before=$(writes)
# A call a process checked just before the commit may still be on its way and
# arrive after $recorded; a run pays one call at a time, so that is at most one
# call per run, and its next call is checked after that call answered (after
# the commit): held. A process that missed the switch would send a second call
# after $recorded. No time window is assumed, so a loaded machine cannot fail
# this (a late arrival is told apart by counting, not by how late it is).
for r in $("$REIN" runs --status waiting --json | python3 -c 'import json,sys; print(" ".join(r["run"] for r in json.load(sys.stdin)))'); do
	keys=$(events_of "$r" tool.intent | python3 -c 'import json,sys; print(" ".join(json.loads(l)["key"] for l in sys.stdin))')
	n=$(log | python3 -c "
import json, sys
keys = set('$keys'.split())
print(sum(1 for x in json.load(sys.stdin) if x['mode'].startswith('delay') and x['key'] in keys and x['at'] > $recorded))")
	[ "$n" -le 1 ] || fail "run $r sent $n write calls after the switch was recorded (at most the one in flight)"
done
for i in 1 2 3; do kill -0 $(echo $pids | cut -d' ' -f$i) || fail "run $i exited while held"; done
runs=$("$REIN" runs --status waiting --json | python3 -c 'import json,sys; print(" ".join(r["run"] for r in json.load(sys.stdin)))')
for r in $runs; do
	expect_exit 0 "$REIN" show "$r" --json
	[ "$(json_get "$OUT" 'j["status"]')" = waiting ] || fail "held run $r: $OUT"
	json_get "$OUT" 'j.get("reason") or ""' | grep -q "^killed: incident 42 (switch $sw)" ||
		fail "held run $r does not say killed: $OUT"
	held=$(events_of "$r" kill.held | head -n 1)
	key=$(json_get "$held" 'j["key"]')
	[ "$(json_get "$held" 'j["switch"]')" = "$sw" ] || fail "kill.held: $held"
	[ "$(key_count "$key")" -eq 0 ] || fail "the held call $key reached the server"
done
# a read is not held: a new run reads, then is held at its first payment
"$REIN" run "$WF/killpay" --input '{"mode": "delay:300"}' --max-wait 600 >run4.out 2>run4.err &
pids="$pids $!"
wait_until 60 "the fourth run to be held" held_all 4
[ "$(writes)" -eq "$before" ] || fail "a write call went out while the switch was set"
r4=$(first_run waiting)
has_event "$r4" kill.held || fail "the fourth run was not held"
[ "$(events_of "$r4" step.completed | wc -l)" -eq 1 ] || fail "the read step did not complete in run 4"
ok "switch $sw: 4 runs held, $before payments before it, none after, a read went through"

expect_exit 0 "$REIN" kills
[ "$(json_get "$OUT" 'j["reason"]')" = "incident 42" ] || fail "kills: $OUT"
expect_exit 1 "$REIN" unkill --tool pay # not the selector that was set
expect_exit 2 "$REIN" kill --workflow killpay # no reason
lifted=$(now_ms) # taken before: the runs see the unkill within a second
expect_exit 0 "$REIN" unkill --workflow killpay
n=0
for p in $pids; do
	n=$((n + 1))
	wait $p || fail "run $n exited $? after the unkill: $(cat run$n.out run$n.err)"
	[ "$(json_get "$(cat run$n.out)" 'j["status"]')" = succeeded ] || fail "run $n: $(cat run$n.out)"
done
# every payment exactly once, each held one after the unkill
[ "$(writes)" -eq 12 ] || fail "$(writes) payments reached the server, want 12"
log | python3 -c '
import json, sys, collections
c = collections.Counter(r["key"] for r in json.load(sys.stdin) if r["mode"].startswith("delay"))
assert all(v == 1 for v in c.values()), c' || fail "a payment was sent twice"
for r in $runs $r4; do
	lift=$(events_of "$r" kill.lifted | head -n 1)
	[ -n "$lift" ] || fail "run $r has no kill.lifted"
	[ "$(key_count "$(json_get "$lift" 'j["key"]')")" -eq 1 ] || fail "the held call of $r was not sent once"
done
late=$(writes_after "$lifted")
[ "$late" -eq $((12 - before)) ] || fail "$late payments after the unkill, want $((12 - before))"
expect_exit 0 "$REIN" kills
[ -z "$OUT" ] || fail "a switch left: $OUT"
expect_exit 0 "$REIN" audit verify
ok "unkill: the 4 runs finished, 12 payments each sent once"

# 2. selectors: --tool holds that tool in any workflow, not another tool;
# --workflow holds nothing of other workflows
expect_exit 0 "$REIN" kill --tool pay --reason "pay is broken"
expect_exit 0 "$REIN" kill --workflow nosuch --reason "another workflow"
expect_exit 0 "$REIN" run "$WF/http" --input '{"mode": "ok"}' # echo: another tool
"$REIN" run "$WF/killpay" --input '{"mode": "ok"}' --max-wait 600 >run5.out 2>run5.err &
p5=$!
wait_until 60 "the pay run to be held by the tool switch" held_all 1
r5=$(first_run waiting)
has_event "$r5" kill.held || fail "--tool pay did not hold run $r5"
expect_exit 0 "$REIN" unkill --tool pay
wait $p5 || fail "run 5 exited $?: $(cat run5.out run5.err)"
[ "$(json_get "$(cat run5.out)" 'j["status"]')" = succeeded ] || fail "run 5: $(cat run5.out)"
expect_exit 0 "$REIN" unkill --workflow nosuch
ok "selectors --tool and --workflow"
