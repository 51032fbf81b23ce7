# The online exporter: with OTEL_EXPORTER_OTLP_ENDPOINT set, `rein run` and
# `rein resume` send each run's spans once its events are durable and the
# run has ended, through a bounded queue on a thread of their own: retried
# after a 503, the same spans as the backfill (`rein trace export` sends
# duplicates, never new spans), a dead collector costs the run nothing but
# a line on stderr, and a run killed mid-way is skipped by the process that
# resumes it and sent by the backfill.
. "$ROOT/tests/cli/lib.sh"
sh "$ROOT/tests/trace/setup.sh" >setup.log 2>&1 || skip "node/npm or protobufjs unavailable: $(tail -n 1 setup.log)"
PROTO="$ROOT/tests/conformance/opentelemetry-proto" # v1.11.0, see its SOURCE
[ -d "$PROTO" ] || skip "no opentelemetry-proto definitions at $PROTO"
REC="$ROOT/tests/trace/replay"
export REIN_PROVIDER=replay
node "$ROOT/tests/trace/collector.js" --port-file c.port --proto "$PROTO" --max-seconds 300 --fail 1 >collector.log 2>&1 &
CPID=$!
trap 'kill $CPID 2>/dev/null' EXIT
wait_until 20 "the collector" test -s c.port
C="http://127.0.0.1:$(cat c.port)"
stat_of() { curl -s "$C/control/stats" | python3 -c "import json,sys; print(json.load(sys.stdin)[\"$1\"])"; }
has_stat() { [ "$(stat_of "$1")" = "$2" ]; }

# a run exported as it ends (the first request answered 503, retried)
export OTEL_EXPORTER_OTLP_ENDPOINT="$C"
REIN_REPLAY_FILE="$REC/llm.json" expect_exit 0 "$REIN" run "$WF/llm" --input '{"text": "money back"}'
run=$(json_get "$OUT" 'j["run"]')
wait_until 10 "the run's spans" has_stat unique 3
[ "$(stat_of failed503)" = 1 ] && [ "$(stat_of invalid)" = 0 ] || fail "collector: $(curl -s "$C/control/stats")"
[ -s stderr.txt ] && fail "stderr: $(cat stderr.txt)"
# the backfill sends the very same spans
expect_exit 0 "$REIN" trace export "$run"
[ "$(stat_of unique)" = 3 ] && [ "$(stat_of duplicates)" = 3 ] && [ "$(stat_of conflicts)" = 0 ] ||
	fail "online and backfill differ: $(curl -s "$C/control/stats")"

# switched off: nothing sent
n=$(stat_of requests)
REIN_TRACE_EXPORT=0 REIN_REPLAY_FILE="$REC/llm.json" expect_exit 0 "$REIN" run "$WF/llm" --input '{"text": "x"}'
[ "$(stat_of requests)" = "$n" ] || fail "REIN_TRACE_EXPORT=0 exported"

# a dead collector: the run is not slowed, its end says what was not sent
OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9" REIN_REPLAY_FILE="$REC/llm.json" expect_exit 0 "$REIN" run "$WF/llm" --input '{"text": "x"}'
grep -q "rein: traces: 0 exported, 1 failed, 0 dropped, 0 skipped" stderr.txt || fail "dead collector: $(cat stderr.txt)"
[ "$(json_get "$OUT" 'j["status"]')" = succeeded ] || fail "$OUT"

# killed during its wait: the resuming process did not see the start (skipped),
# the backfill sends the whole run once
"$REIN" run "$WF/timer" >run.out 2>run.err &
pid=$!
wait_until 30 "the run to wait on its timer" has_run waiting
kill -9 $pid
wait $pid 2>/dev/null
wrun=$(first_run waiting)
u=$(stat_of unique)
expect_exit 0 "$REIN" resume --all
grep -q "0 dropped, 1 skipped" stderr.txt || fail "resume: $(cat stderr.txt)"
[ "$(stat_of unique)" = "$u" ] || fail "a partial trace was sent"
expect_exit 0 "$REIN" trace export "$wrun"
d=$(stat_of duplicates)
[ "$(stat_of unique)" -gt "$u" ] || fail "backfill: $(curl -s "$C/control/stats")"
expect_exit 0 "$REIN" trace export "$wrun"
[ "$(stat_of duplicates)" -gt "$d" ] && [ "$(stat_of conflicts)" = 0 ] || fail "re-export: $(curl -s "$C/control/stats")"
ok "trace_online"
