# Crash between intent and result. A tool that honours keys is sent again
# with the same key (the server sees it twice, does it once); one that does
# not leaves the run in needs_review with the evidence.
. "$ROOT/tests/cli/lib.sh"
. "$ROOT/tests/cli/toollib.sh"

crash_run() { # WORKFLOW: starts a run whose call takes 3 s and kills it mid-call
	"$REIN" run "$WF/$1" --input '{"mode": "delay:3000"}' >run.out 2>run.err &
	pid=$!
	# the intent is durable: the call is out (it takes 3 s)
	wait_until 30 "the run to be started" has_run running
	wait_until 30 "the tool call to be out" has_event "$(first_run running)" tool.intent
	kill -0 $pid 2>/dev/null || fail "rein run ended before the kill"
	kill -9 $pid
	wait $pid 2>/dev/null
}

crash_run slowtool
expect_exit 0 "$REIN" runs --status running --json
run=$(json_get "$OUT" 'j[0]["run"]')
key=$(events_of "$run" tool.intent | python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["key"])')
expect_exit 0 "$REIN" resume --all
[ "$(json_get "$OUT" 'j["status"]')" = succeeded ] || fail "$OUT"
[ "$(json_get "$OUT" 'j["output"]["key"]')" = "$key" ] || fail "another key: $OUT"
events_of "$run" tool.attempt | grep -q '"outcome": "in_doubt"' || fail "no in-doubt attempt"
s=$(stats)
[ "$(json_get "$s" "j['by_key']['$key']")" = 2 ] || fail "server saw: $s"
[ "$(json_get "$s" "j['effects']['$key']")" = 1 ] || fail "two effects for one key: $s"
[ "$(events_of "$run" tool.intent | wc -l)" = 1 ] || fail "a second intent"

reset_stats
crash_run slowtool_nokey
expect_exit 0 "$REIN" runs --status running --json
run=$(json_get "$OUT" 'j[0]["run"]')
expect_exit 6 "$REIN" resume "$run"
[ "$(json_get "$OUT" 'j["status"]')" = needs_review ] || fail "$OUT"
json_get "$OUT" 'j["reason"]' | grep -q "not sent again" || fail "$OUT"
[ "$(json_get "$OUT" 'j["output"]["args"]["mode"]')" = "delay:3000" ] || fail "evidence: $OUT"
# the first request completes at the server (a delayed answer counts even
# though its client is gone); then no second one may have come
first_effect() { [ "$(json_get "$(stats)" 'j["effects_total"]')" -ge 1 ]; }
wait_until 30 "the first request to complete at the tool server" first_effect
[ "$(json_get "$(stats)" 'j["requests"]')" = 1 ] || fail "the call was sent again: $(stats)"
expect_exit 0 "$REIN" audit verify
ok "crash between intent and result"
