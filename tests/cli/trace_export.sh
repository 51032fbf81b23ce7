# rein trace export: the spans of recorded runs POSTed as OTLP/HTTP JSON to
# the loopback collector (tests/trace/collector.js), which decodes every
# request against opentelemetry-proto v1.11.0 under the OTLP/JSON rules.
# Covers batching, retry after 503 with Retry-After, the standard
# environment variables, no duplicates when a run is exported again (the
# same ids: the collector sees the same spans), no retry on other answers,
# an unreachable collector, and a partial success.
. "$ROOT/tests/cli/lib.sh"
. "$ROOT/tests/cli/toollib.sh"
sh "$ROOT/tests/trace/setup.sh" >setup.log 2>&1 || skip "node/npm or protobufjs unavailable: $(tail -n 1 setup.log)"
REC="$ROOT/tests/trace/replay"
export REIN_PROVIDER=replay
trap 'kill $TS_PID ${PIDS:-} 2>/dev/null' EXIT
PROTO="$ROOT/tests/conformance/opentelemetry-proto" # v1.11.0, see its SOURCE
[ -d "$PROTO" ] || skip "no opentelemetry-proto definitions"
collector() { # PORTFILE ARGS...: starts a collector, its URL in $CURL_BASE
	_pf=$1
	shift
	node "$ROOT/tests/trace/collector.js" --port-file "$_pf" --proto "$PROTO" --max-seconds 300 "$@" >>collector.log 2>&1 &
	PIDS="${PIDS:-} $!"
	wait_until 20 "the collector" test -s "$_pf"
	CURL_BASE="http://127.0.0.1:$(cat "$_pf")"
}
stat_of() { curl -s "$1/control/stats" | python3 -c "import json,sys; print(json.load(sys.stdin)[\"$2\"])"; }

REIN_REPLAY_FILE="$REC/llm.json" expect_exit 0 "$REIN" run "$WF/llm" --input '{"text": "money back"}'
r1=$(json_get "$OUT" 'j["run"]')
REIN_REPLAY_FILE="$REC/agent.json" expect_exit 0 "$REIN" run "$WF/agent" --input '{"ticket": "refund A1"}'
r2=$(json_get "$OUT" 'j["run"]')
REIN_REPLAY_FILE="$REC/failed.json" expect_exit 3 "$REIN" run "$WF/llm" --input '{"text": "x"}'
r3=$(json_get "$OUT" 'j["run"]')
expect_exit 4 "$REIN" run "$WF/timer" --max-wait 0 # waiting: not exported until it ends

# the first two requests answered 503 (Retry-After: 1): retried, nothing lost
collector c1.port --fail 2
C1=$CURL_BASE
export OTEL_EXPORTER_OTLP_ENDPOINT="$C1" OTEL_EXPORTER_OTLP_HEADERS="x-api-key=abc%20def, x-tenant=t1"
expect_exit 0 "$REIN" trace export --batch 2
echo "$OUT" | grep -q "^exported 3 run(s), 12 span(s) in 4 request(s), 2 retried, 0 rejected$" || fail "export: $OUT"
[ "$(stat_of "$C1" failed503)" = 2 ] && [ "$(stat_of "$C1" accepted)" = 2 ] || fail "collector: $(curl -s "$C1/control/stats")"
[ "$(stat_of "$C1" invalid)" = 0 ] || fail "invalid OTLP: $(curl -s "$C1/control/stats")"
[ "$(stat_of "$C1" unique)" = 12 ] && [ "$(stat_of "$C1" duplicates)" = 0 ] || fail "spans: $(curl -s "$C1/control/stats")"
curl -s "$C1/control/headers" | python3 -c '
import json, sys
h = json.load(sys.stdin)
assert h["x-api-key"] == "abc def" and h["x-tenant"] == "t1", h
assert h["content-type"] == "application/json", h' || fail "headers"

# the spans as the collector decoded them: names, kinds, parents, attributes
curl -s "$C1/control/spans" | python3 -c '
import json, sys
spans = json.load(sys.stdin)
byid = {(s["traceId"], s["spanId"]): s for s in spans}
roots = [s for s in spans if s["parentSpanId"] is None]
assert len(roots) == 3 and all(r["name"].startswith("invoke_workflow ") for r in roots), roots
assert len({s["traceId"] for s in spans}) == 3
for s in spans:
    assert s["schemaUrl"] == "https://opentelemetry.io/schemas/gen-ai/1.42.0", s
    p = byid.get((s["traceId"], s["parentSpanId"]))
    if s["name"].startswith("chat "):
        assert s["kind"] == 3 and s["attrs"]["gen_ai.operation.name"] == "chat", s
        assert p["name"].startswith(("step ", "invoke_agent ")), (s, p)
        assert s["name"] == "chat " + s["attrs"]["gen_ai.request.model"], s
    elif s["name"].startswith("execute_tool "):
        assert s["kind"] == 1 and s["attrs"]["gen_ai.tool.name"] == "lookup", s
        assert s["attrs"]["gen_ai.tool.call.id"] == "call_1", s
        assert p["name"] == "invoke_agent investigate" and p["attrs"]["gen_ai.agent.name"] == "investigate", p
    elif s["parentSpanId"] is not None:
        assert p["parentSpanId"] is None, s
ok = [s for s in spans if s["name"] == "chat small-1" and s["attrs"].get("gen_ai.usage.input_tokens") == 100]
assert ok and ok[0]["attrs"]["gen_ai.usage.cache_read.input_tokens"] == 40, ok
assert ok[0]["attrs"]["gen_ai.response.model"] == "small-1-2026-01-01"
assert ok[0]["attrs"]["gen_ai.response.finish_reasons"] == ["stop"]
assert ok[0]["events"] == ["rein.model.attempt", "rein.model.backoff"], ok[0]
bad = [s for s in spans if s["status"].get("code") == 2]
assert {s["name"] for s in bad} == {"invoke_workflow llm", "step classify", "chat small-1", "chat large-1"}, bad
assert all(s["attrs"]["error.type"] for s in bad)
' || fail "the decoded spans"

# exported again (a backfill after a crash): the same spans, no new ones
expect_exit 0 "$REIN" trace export "$r1" "$r2" "$r3"
[ "$(stat_of "$C1" unique)" = 12 ] && [ "$(stat_of "$C1" duplicates)" = 12 ] && [ "$(stat_of "$C1" conflicts)" = 0 ] ||
	fail "a second export made new spans: $(curl -s "$C1/control/stats")"

# --since: a time after every run exports nothing
expect_exit 0 "$REIN" trace export --since 2099-01-01T00:00:00Z
echo "$OUT" | grep -q "^exported 0 run(s)" || fail "--since: $OUT"
expect_exit 2 "$REIN" trace export --since yesterday

# an answer other than 429/502/503/504 is not retried
n=$(stat_of "$C1" requests)
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="$C1/nope" expect_exit 1 "$REIN" trace export "$r1"
grep -q "HTTP 404" stderr.txt || fail "404: $(cat stderr.txt)"
# an unreachable collector fails at once
OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9" expect_exit 1 "$REIN" trace export "$r1"
grep -q "OTLP export to http://127.0.0.1:9/v1/traces" stderr.txt || fail "unreachable: $(cat stderr.txt)"
# a bad header list is a usage error
OTEL_EXPORTER_OTLP_HEADERS="novalue" expect_exit 2 "$REIN" trace export "$r1"

# a partial success: counted, told, exit 1
collector c2.port --reject 2
OTEL_EXPORTER_OTLP_ENDPOINT="$CURL_BASE" expect_exit 1 "$REIN" trace export "$r2"
echo "$OUT" | grep -q "2 rejected$" || fail "partial: $OUT"
grep -q "the collector rejected 2 of 5 span(s): test rejection" stderr.txt || fail "partial: $(cat stderr.txt)"
ok "trace_export"
