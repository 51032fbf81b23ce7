# HTTP tools against the loopback tool server: retries only on transient
# failures (exact attempts, backoffs and statuses), Retry-After, the same
# Idempotency-Key on every attempt, one side effect per key, and each kind of
# bad answer turned into a clear failure.
. "$ROOT/tests/cli/lib.sh"
. "$ROOT/tests/cli/toollib.sh"

key_of() { events_of "$1" tool.intent | python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["key"])'; }
count_of() { events_of "$1" "$2" | wc -l | tr -d ' '; }

# ok: one attempt, the key travels as Idempotency-Key, the secret never lands in the store
expect_exit 0 "$REIN" run "$WF/http" --input '{"mode": "ok"}'
run=$(json_get "$OUT" 'j["run"]')
key=$(key_of "$run")
[ "$(json_get "$OUT" 'j["output"]["key"]')" = "$key" ] || fail "key not sent: $OUT"
[ "$(count_of "$run" tool.attempt)" = 0 ] || fail "attempts on ok"
strings rein.db | grep -q "$ECHO_TOKEN" && fail "the secret was written to the store"
"$REIN" events "$run" | grep -q "$ECHO_TOKEN" && fail "the secret is in the events"

# 503, 503, ok: two failed attempts, two backoffs, the same key three times, one effect
reset_stats
expect_exit 0 "$REIN" run "$WF/http" --input '{"mode": "seq:status:503,status:503,ok"}'
run=$(json_get "$OUT" 'j["run"]')
key=$(key_of "$run")
[ "$(count_of "$run" tool.attempt)" = 2 ] || fail "attempts: $(events_of "$run" tool.attempt)"
[ "$(count_of "$run" tool.backoff)" = 2 ] || fail "backoffs"
events_of "$run" tool.attempt | grep -q '"outcome": "http_5xx"' || fail "outcome"
s=$(stats)
[ "$(json_get "$s" "j['by_key']['$key']")" = 3 ] || fail "server saw: $s"
[ "$(json_get "$s" "j['effects']['$key']")" = 1 ] || fail "effects: $s"
[ "$(json_get "$OUT" 'j["output"]["count"]')" = 3 ] || fail "$OUT"

# 429 with Retry-After: 1 s is honoured exactly
expect_exit 0 "$REIN" run "$WF/http" --input '{"mode": "seq:retry-after:1,ok"}'
run=$(json_get "$OUT" 'j["run"]')
[ "$(events_of "$run" tool.backoff | python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["delay_ms"])')" = 1000 ] || fail "Retry-After not honoured"
events_of "$run" tool.attempt | grep -q '"retry_after_ms": 1000' || fail "retry_after_ms not recorded"

# never retried: a 4xx, malformed JSON, a body against the schema, a huge body
for mode in status:400 malformed badschema huge:3000000; do
	expect_exit 1 "$REIN" run "$WF/http" --input "{\"mode\": \"$mode\"}"
	run=$(json_get "$OUT" 'j["run"]')
	[ "$(count_of "$run" tool.attempt)" = 1 ] || fail "$mode: attempts $(count_of "$run" tool.attempt)"
	[ "$(count_of "$run" tool.backoff)" = 0 ] || fail "$mode was retried"
	reason=$(json_get "$OUT" 'j["reason"]')
	case $mode in
	status:400) echo "$reason" | grep -q "HTTP 400" || fail "$reason" ;;
	malformed) echo "$reason" | grep -q 'not JSON' && echo "$reason" | grep -q '{"ok": tru' || fail "$reason" ;;
	badschema) echo "$reason" | grep -q "output schema" || fail "$reason" ;;
	huge:*) echo "$reason" | grep -q "larger than the cap of 2048 KiB" || fail "$reason" ;;
	esac
done

# a server that hangs or drips: timeouts, retried (the tool honours keys), then failed
for mode in hang drip; do
	expect_exit 1 "$REIN" run "$WF/http" --input "{\"mode\": \"$mode\"}"
	run=$(json_get "$OUT" 'j["run"]')
	[ "$(count_of "$run" tool.attempt)" = 3 ] || fail "$mode: attempts"
	events_of "$run" tool.attempt | grep -q '"outcome": "timeout"' || fail "$mode: outcome"
	json_get "$OUT" 'j["reason"]' | grep -q "after 3 attempts" || fail "$OUT"
done

# without keys a timeout may have charged twice: stop for a human with the evidence
expect_exit 6 "$REIN" run "$WF/http_nokey" --input '{"mode": "hang"}'
[ "$(json_get "$OUT" 'j["status"]')" = needs_review ] || fail "$OUT"
[ "$(json_get "$OUT" 'j["output"]["tool"]')" = echo ] || fail "no evidence: $OUT"
# ... but a 503 (refused, not processed) is retried even without keys
expect_exit 0 "$REIN" run "$WF/http_nokey" --input '{"mode": "seq:status:503,ok"}'

# a missing secret fails the call before anything is sent
reset_stats
ECHO_TOKEN= expect_exit 1 "$REIN" run "$WF/http" --input '{"mode": "ok"}'
json_get "$OUT" 'j["reason"]' | grep -q "secret 'token' is not set" || fail "$OUT"
[ "$(json_get "$(stats)" 'j["requests"]')" = 0 ] || fail "a request went out without its secret"
expect_exit 0 "$REIN" audit verify
ok "http tools"
