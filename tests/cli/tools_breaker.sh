# The circuit breaker opens after N transient failures, refuses calls while
# open (the fallback answers), lets one probe through after the cooldown and
# closes when it succeeds; each transition is an event.
. "$ROOT/tests/cli/lib.sh"
. "$ROOT/tests/cli/toollib.sh"
expect_exit 0 "$REIN" run "$WF/breaker"
run=$(json_get "$OUT" 'j["run"]')
[ "$(json_get "$OUT" 'json.dumps(j["output"], sort_keys=True)')" = '{"a": true, "c": true, "d": true, "e": true}' ] || fail "$OUT"
types=$("$REIN" events "$run" | python3 -c '
import json, sys
for l in sys.stdin:
    e = json.loads(l)
    if e["type"].startswith("breaker.") or e["type"] == "tool.attempt":
        print(e["step"], e["type"], e["data"].get("outcome", ""))')
want="a tool.attempt http_5xx
b breaker.opened 
b tool.attempt http_5xx
c tool.attempt breaker_open
d breaker.half_open 
d breaker.closed "
[ "$types" = "$want" ] || fail "transitions:
$types"
# c was refused without a request: the server saw a, b, d, e only
[ "$(json_get "$(stats)" 'j["requests"]')" = 4 ] || fail "requests: $(stats)"
ok "breaker"
