# The command line's flags: --version, --input @- (stdin), run DIR/workflow.yaml,
# runs --limit/--workflow/--since, events --follow (ends by itself with the
# run), and show: wake_at, cut payloads ending in "...", --json with
# event_count and the list as "events".
. "$ROOT/tests/cli/lib.sh"

expect_exit 0 "$REIN" --version
printf '%s' "$OUT" | grep -Eq '^rein [0-9]+\.[0-9]+' || fail "--version: $OUT"

# --input @- and the workflow file given instead of its directory
expect_exit 0 "$REIN" run "$WF/ok/workflow.yaml" --input @- <<IN
{"n": 9}
IN
[ "$(json_get "$OUT" 'j["output"]["n"]')" = 10 ] || fail "$OUT"
first=$(json_get "$OUT" 'j["run"]')
echo 'not json' >bad.json
expect_exit 2 "$REIN" run "$WF/ok" --input @- <bad.json
grep -q "<stdin>" stderr.txt || fail "$(cat stderr.txt)"
expect_exit 0 "$REIN" validate "$WF/ok/workflow.yaml"

# show: cut payloads end with "...", --json names the count and the list
pad=$(python3 -c 'print("x" * 300)')
expect_exit 0 "$REIN" run "$WF/ok" --input "{\"n\": 1, \"pad\": \"$pad\"}"
big=$(json_get "$OUT" 'j["run"]')
expect_exit 0 "$REIN" show "$big"
line=$(printf '%s\n' "$OUT" | grep "run.started")
case $line in *'...') ;; *) fail "cut payload without an ellipsis: $line" ;; esac
printf '%s\n' "$OUT" | grep "step.completed" | grep -q '\.\.\.$' && fail "short payload cut: $OUT"
expect_exit 0 "$REIN" show "$big" --json
[ "$(json_get "$OUT" 'j["event_count"]')" = 3 ] || fail "$OUT"
[ "$(json_get "$OUT" '[e["seq"] for e in j["events"]]')" = "[1, 2, 3]" ] || fail "$OUT"
[ "$(json_get "$OUT" '"event_log" in j')" = False ] || fail "$OUT"
expect_exit 0 "$REIN" runs --json
[ "$(json_get "$OUT" 'j[0]["event_count"]')" = 3 ] || fail "$OUT"

# show of a waiting run: wake_at
expect_exit 4 "$REIN" run "$WF/longwait" --max-wait 0
waiting=$(json_get "$OUT" 'j["run"]')
expect_exit 0 "$REIN" show "$waiting"
printf '%s\n' "$OUT" | grep -Eq '^wake_at   20[0-9]{2}-' || fail "no wake_at: $OUT"

# runs --limit / --workflow / --since
expect_exit 0 "$REIN" runs --json --limit 2
[ "$(json_get "$OUT" 'len(j)')" = 2 ] || fail "$OUT"
[ "$(json_get "$OUT" 'j[0]["run"]')" = "$waiting" ] || fail "newest first: $OUT"
expect_exit 0 "$REIN" runs --json --workflow ok
[ "$(json_get "$OUT" 'sorted(set(r["workflow"] for r in j))')" = "['ok']" ] || fail "$OUT"
[ "$(json_get "$OUT" 'len(j)')" = 2 ] || fail "$OUT"
expect_exit 0 "$REIN" runs --json --since 1h
[ "$(json_get "$OUT" 'len(j)')" = 3 ] || fail "$OUT"
expect_exit 0 "$REIN" runs --json --since 2999-01-01T00:00:00Z
[ "$(json_get "$OUT" 'len(j)')" = 0 ] || fail "$OUT"
expect_exit 0 "$REIN" runs --json --since 2000-01-01T00:00:00Z --workflow ok --limit 1
[ "$(json_get "$OUT" 'j[0]["run"]')" = "$big" ] || fail "$OUT"
expect_exit 2 "$REIN" runs --limit 0
expect_exit 2 "$REIN" runs --since yesterday

# events --follow: prints events as they come and exits when the run ends
"$REIN" run "$WF/timer" >timer.out 2>timer.err &
pid=$!
wait_until 30 "the timer run to start" has_run waiting
run=$(first_run waiting)
timeout 60 "$REIN" events "$run" --follow >follow.out 2>follow.err
rc=$?
[ $rc -eq 0 ] || fail "events --follow exited $rc: $(cat follow.err)"
wait $pid || fail "the timer run failed: $(cat timer.err)"
python3 - follow.out <<'PY' || fail "follow: $(cat follow.out)"
import json, sys
evs = [json.loads(l) for l in open(sys.argv[1])]
assert [e["seq"] for e in evs] == list(range(1, len(evs) + 1)), evs
assert evs[-1]["type"] == "run.ended" and evs[-1]["data"]["status"] == "succeeded", evs[-1]
PY
# on an ended run it prints the log once and exits by the run's status
expect_exit 0 "$REIN" events "$first" --follow
[ "$(printf '%s\n' "$OUT" | wc -l)" = 3 ] || fail "$OUT"
ok "flags"
