# rein metrics: the store as Prometheus metrics. A fixture store (succeeded,
# failed and escalated runs; tool calls with retries, an error and a breaker
# that opens; replayed model calls with usage and cost) is checked by promtool
# and against the store's own events; then `rein metrics --serve` is scraped
# by a real Prometheus server, whose HTTP API must answer the cost per
# completed run the store holds, also after one more run; SIGTERM stops the
# exporter cleanly.
. "$ROOT/tests/cli/lib.sh"
command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 ||
	skip "prometheus and promtool are not installed (Debian's prometheus package: make deps)"
. "$ROOT/tests/cli/toollib.sh"
MX_PID=
PROM_PID=
trap 'kill $TS_PID $MX_PID $PROM_PID 2>/dev/null' EXIT

W="$ROOT/tests/cli/workflows/metrics"
expect_exit 0 "$REIN" run "$W" --input '{"want": "ok"}'
expect_exit 1 "$REIN" run "$W" --input '{"want": "fail", "mode": "status:400"}'
expect_exit 3 "$REIN" run "$W" --input '{"want": "escalate"}'
expect_exit 0 "$REIN" run "$W" --input '{"want": "breaker"}'

# what the store says, from its events: total model cost, the succeeded runs'
# own cost, their count
store_costs() {
	"$REIN" runs --json | python3 -c '
import json, subprocess, sys
rein = sys.argv[1]
total = done_cost = 0.0
done = 0
for r in json.load(sys.stdin):
    ev = subprocess.run([rein, "events", r["run"]], capture_output=True, text=True, check=True).stdout
    cost = sum(json.loads(l)["data"].get("cost_usd") or 0 for l in ev.splitlines() if json.loads(l)["type"] == "model.call")
    total += cost
    if r["status"] == "succeeded":
        done += 1
        done_cost += cost
print(repr(total), repr(done_cost), done)' "$REIN"
}

# ---- rein metrics: promtool, and the numbers against the store ----
expect_exit 0 "$REIN" metrics
printf '%s\n' "$OUT" >m.txt
promtool check metrics <m.txt || fail "promtool check metrics: $(promtool check metrics <m.txt 2>&1)"
# value NAME{LABELS}: the sample's value (exact series text)
value() { grep -F "$1 " m.txt | awk '{print $NF}'; }
v() { [ "$(value "$1")" = "$2" ] || fail "$1 is '$(value "$1")', want $2"; }
ver=$("$REIN" runs --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["version"])')
v "rein_runs_total{workflow=\"metrics\",version=\"$ver\",outcome=\"succeeded\"}" 2
v "rein_runs_total{workflow=\"metrics\",version=\"$ver\",outcome=\"failed\"}" 1
v "rein_runs_total{workflow=\"metrics\",version=\"$ver\",outcome=\"escalated\"}" 1
v 'rein_escalations_total{workflow="metrics",reason="needs a human"}' 1
# 4 agent calls (one 503 each, then ok) + 3 tool steps ok + 1 failed (HTTP 400) + 2 fallbacks
v 'rein_tool_calls_total{workflow="metrics",tool="lookup",outcome="ok"}' 7
v 'rein_tool_calls_total{workflow="metrics",tool="lookup",outcome="error"}' 1
v 'rein_tool_calls_total{workflow="metrics",tool="flaky",outcome="fallback"}' 2
v 'rein_tool_retries_total{workflow="metrics",tool="lookup"}' 4
v 'rein_run_retries_count{workflow="metrics"}' 4
v 'rein_run_retries_sum{workflow="metrics"}' 4
v 'rein_run_retries_bucket{workflow="metrics",le="0"}' 0
v 'rein_run_retries_bucket{workflow="metrics",le="1"}' 4
# tool-call intensity: the ok run made 2 calls, the breaker run 4
v 'rein_run_tool_calls_sum{workflow="metrics"}' 6
v 'rein_run_tool_calls_count{workflow="metrics"}' 2
v 'rein_run_tool_calls_bucket{workflow="metrics",le="2"}' 1
v 'rein_breaker_state{kind="tool",name="flaky",state="open"}' 1
v 'rein_breaker_state{kind="tool",name="flaky",state="closed"}' 0
v 'rein_breaker_transitions_total{kind="tool",name="flaky",state="open"}' 1
v 'rein_model_tokens_total{workflow="metrics",type="input"}' 10000
v 'rein_model_tokens_total{workflow="metrics",type="output"}' 280
v 'rein_model_tokens_total{workflow="metrics",type="cache_read"}' 2000
v 'rein_completed_run_tokens_sum{workflow="metrics"}' 5140
v 'rein_step_duration_seconds_count{workflow="metrics",step="check",outcome="failed"}' 1
v 'rein_step_duration_seconds_count{workflow="metrics",step="investigate",outcome="completed"}' 4
# the GenAI histograms, with the conventions' boundaries
g='gen_ai_operation_name="chat",gen_ai_provider_name="replay",gen_ai_request_model="agent-1",gen_ai_response_model="agent-1-2026-01-01"'
v "gen_ai_client_operation_duration_seconds_count{workflow=\"metrics\",$g}" 8
v "gen_ai_client_operation_duration_seconds_bucket{workflow=\"metrics\",$g,le=\"0.01\"}" 8
v "gen_ai_client_operation_duration_seconds_bucket{workflow=\"metrics\",$g,le=\"81.92\"}" 8
v "gen_ai_client_token_usage_bucket{workflow=\"metrics\",$g,gen_ai_token_type=\"input\",le=\"1024\"}" 4
v "gen_ai_client_token_usage_bucket{workflow=\"metrics\",$g,gen_ai_token_type=\"input\",le=\"4096\"}" 8
v "gen_ai_client_token_usage_sum{workflow=\"metrics\",$g,gen_ai_token_type=\"output\"}" 280
# the governance families are always described, with no series before their events
grep -q '^# TYPE rein_policy_denials_total counter$' m.txt || fail "no policy denials family"
grep -q '^rein_policy_denials_total{\|^rein_approvals_pending{' m.txt && fail "governance series without governance events"
grep -q "^rein_review_cost_per_hour_usd 0$" m.txt || fail "the review rate is not 0 by default"
# the review rate: the flag, else REIN_REVIEW_COST_PER_HOUR; a bad one is a usage error
REIN_REVIEW_COST_PER_HOUR=30 "$REIN" metrics >rate.txt || fail "metrics with REIN_REVIEW_COST_PER_HOUR"
grep -q '^rein_review_cost_per_hour_usd 30$' rate.txt || fail "the env rate is not in force"
REIN_REVIEW_COST_PER_HOUR=30 "$REIN" metrics --review-rate 72.5 >rate.txt || fail "metrics --review-rate"
grep -q '^rein_review_cost_per_hour_usd 72.5$' rate.txt || fail "--review-rate does not win"
expect_exit 2 "$REIN" metrics --review-rate -1
expect_exit 2 env REIN_REVIEW_COST_PER_HOUR=lots "$REIN" metrics
set -- $(store_costs)
python3 -c "import sys; t=float('$(value 'rein_model_cost_usd_total{workflow="metrics"}')'); sys.exit(abs(t - $1) > 1e-12)" ||
	fail "cost total $(value 'rein_model_cost_usd_total{workflow="metrics"}'), the store says $1"
python3 -c "import sys; t=float('$(value 'rein_completed_run_cost_usd_sum{workflow="metrics"}')'); sys.exit(abs(t - $2) > 1e-12)" ||
	fail "completed runs' cost, the store says $2"
expect_exit 2 "$REIN" metrics --db nosuch.db
expect_exit 2 "$REIN" metrics --serve nonsense
ok "rein metrics: promtool and the store agree"

# ---- rein metrics --serve, scraped by a real Prometheus ----
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
"$REIN" metrics --serve 127.0.0.1:0 2>mx.log &
MX_PID=$!
wait_until 10 "the exporter's port" grep -q 'serving http://127.0.0.1:[0-9]*/metrics' mx.log
MX_PORT=$(sed -n 's|.*serving http://127.0.0.1:\([0-9]*\)/metrics.*|\1|p' mx.log)
curl -s -D hdr.txt -o scrape.txt "http://127.0.0.1:$MX_PORT/metrics" || fail "no answer at /metrics"
grep -qi '^content-type: text/plain; version=0.0.4' hdr.txt || fail "Content-Type: $(cat hdr.txt)"
promtool check metrics <scrape.txt || fail "the served metrics do not pass promtool"
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$MX_PORT/nope")" = 404 ] || fail "unknown path"

PROM_PORT=$(free_port)
cat >prom.yml <<EOF
global: { scrape_interval: 1s, evaluation_interval: 1s }
scrape_configs:
  - job_name: rein
    static_configs: [ { targets: [ "127.0.0.1:$MX_PORT" ] } ]
EOF
prometheus --config.file=prom.yml --storage.tsdb.path="$PWD/tsdb" \
	--web.listen-address="127.0.0.1:$PROM_PORT" >prom.log 2>&1 &
PROM_PID=$!
PROM="http://127.0.0.1:$PROM_PORT"
wait_until 20 "prometheus to be ready" curl -sf "$PROM/-/ready"
# prom_is QUERY WANT: Prometheus answers QUERY with one value within 1e-12 of WANT
prom_is() {
	curl -sf --data-urlencode "query=$1" "$PROM/api/v1/query" | python3 -c '
import json, sys
r = json.load(sys.stdin)["data"]["result"]
sys.exit(0 if len(r) == 1 and abs(float(r[0]["value"][1]) - float(sys.argv[1])) <= 1e-12 else 1)' "$2"
}
wait_until 20 "a scrape that succeeded" prom_is 'up{job="rein"}' 1
set -- $(store_costs)
# cost per completed run: all model spend (failed and escalated runs included)
# over the runs that succeeded; and a completed run's own cost
per_run=$(python3 -c "print(repr($1 / $3))")
own=$(python3 -c "print(repr($2 / $3))")
Q1='sum(rein_model_cost_usd_total) / sum(rein_runs_total{outcome="succeeded"})'
Q2='sum(rein_completed_run_cost_usd_sum) / sum(rein_completed_run_cost_usd_count)'
wait_until 20 "Prometheus to answer the cost per completed run ($per_run)" prom_is "$Q1" "$per_run"
prom_is "$Q2" "$own" || fail "a completed run's own cost: want $own"

# one more completed run: the exporter folds it in at the next scrape
expect_exit 0 "$REIN" run "$W" --input '{"want": "ok"}'
set -- $(store_costs)
[ "$3" = 3 ] || fail "succeeded runs: $3"
per_run=$(python3 -c "print(repr($1 / $3))")
wait_until 20 "the cost per completed run after one more run ($per_run)" prom_is "$Q1" "$per_run"
ok "prometheus scraped rein metrics --serve: cost per completed run $per_run"

# SIGTERM: the exporter stops cleanly (exit 0), within a bound
kill -TERM $MX_PID
# gone, or a zombie waiting for the wait below
exited() { ! kill -0 $MX_PID 2>/dev/null || [ "$(awk '{print $3}' /proc/$MX_PID/stat 2>/dev/null)" = Z ]; }
wait_until 10 "the exporter to stop on SIGTERM" exited
wait $MX_PID
rc=$?
MX_PID=
[ $rc -eq 0 ] || fail "the exporter exited $rc on SIGTERM: $(cat mx.log)"
grep -q 'stopping (SIGTERM)' mx.log || fail "$(cat mx.log)"
kill $PROM_PID
wait $PROM_PID 2>/dev/null
PROM_PID=
ok "metrics"
