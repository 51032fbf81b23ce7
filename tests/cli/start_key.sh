# Idempotent start: `rein run DIR --id KEY`. The first start makes run KEY;
# a second with the same key starts nothing and returns the existing run (its
# result when it has ended, driven like a new run when no worker holds it,
# its status when a live worker does); another workflow's KEY is refused.
. "$ROOT/tests/cli/lib.sh"
. "$ROOT/tests/cli/toollib.sh"
starts() { "$REIN" events "$1" | grep -c '"type":"run.started"'; }

expect_exit 0 "$REIN" run "$WF/ok" --id order-1001 --input '{"n": 1}'
[ "$(json_get "$OUT" 'j["run"]')" = order-1001 ] || fail "id: $OUT"
first=$OUT
expect_exit 0 "$REIN" run "$WF/ok" --id order-1001 --input '{"n": 1}'
[ "$OUT" = "$first" ] || fail "second start: $OUT, first: $first"
[ "$(starts order-1001)" = 1 ] || fail "started twice"
expect_exit 0 "$REIN" runs --json
[ "$(json_get "$OUT" 'len(j)')" = 1 ] || fail "runs: $OUT"

# another workflow with the same key: refused, nothing started
expect_exit 2 "$REIN" run "$WF/timer" --id order-1001
grep -q "exists as a run of workflow ok" stderr.txt || fail "$(cat stderr.txt)"
[ "$(starts order-1001)" = 1 ] || fail "started again"
# keys that cannot be run ids
expect_exit 2 "$REIN" run "$WF/ok" --input '{"n": 1}' --id 'a b'
grep -q "run id" stderr.txt || fail "$(cat stderr.txt)"
expect_exit 2 "$REIN" run "$WF/ok" --input '{"n": 1}' --id "$(printf 'k%.0s' $(seq 64))"

# a run that waits: the second start drives it to its end
expect_exit 4 "$REIN" run "$WF/timer" --id wait-7 --max-wait 0
expect_exit 0 "$REIN" run "$WF/timer" --id wait-7
[ "$(json_get "$OUT" 'j["status"]')" = succeeded ] || fail "$OUT"
[ "$(starts wait-7)" = 1 ] || fail "wait-7 started twice"
c=$(completions wait-7)
[ "$c" = "$(printf 'after 1\nbefore 1\npause 1')" ] || fail "completions: $c"

# a run a live worker holds: its status, nothing started, nothing sent
"$REIN" run "$WF/slowtool" --id pay-3 --input '{"mode": "delay:3000"}' >run.out 2>run.err &
pid=$!
wait_until 30 "the tool call to be out" has_event pay-3 tool.intent
expect_exit 4 "$REIN" run "$WF/slowtool" --id pay-3 --input '{"mode": "ok"}'
[ "$(json_get "$OUT" 'j["status"]')" = running ] || fail "$OUT"
wait $pid || fail "the first start exited $?: $(cat run.err)"
[ "$(json_get "$(cat run.out)" 'j["status"]')" = succeeded ] || fail "$(cat run.out)"
[ "$(json_get "$(stats)" 'j["requests"]')" = 1 ] || fail "sent twice: $(stats)"
expect_exit 0 "$REIN" run "$WF/slowtool" --id pay-3 --input '{"mode": "ok"}'
[ "$(json_get "$OUT" 'j["output"]["args"]["mode"]')" = "delay:3000" ] || fail "not the first run's result: $OUT"
[ "$(starts pay-3)" = 1 ] || fail "pay-3 started twice"
expect_exit 0 "$REIN" audit verify
ok "idempotent start by key"
