# Starts the loopback tool server for a scenario; sets TOOLSERVER (its URL).
TS_BIN=${REIN_TOOLSERVER:-$(dirname "$REIN")/tools/toolserver}
[ -x "$TS_BIN" ] || fail "no tool server at $TS_BIN"
"$TS_BIN" --port 0 --port-file "$PWD/ts.port" --max-seconds 300 >ts.log 2>&1 &
TS_PID=$!
trap 'kill $TS_PID 2>/dev/null' EXIT
wait_until 30 "the tool server to listen" test -s ts.port
export TOOLSERVER="http://127.0.0.1:$(cat ts.port)"
export ECHO_TOKEN="s3cr3t-token-value"
stats() { curl -s "$TOOLSERVER/control/stats"; }
reset_stats() { curl -s -X POST "$TOOLSERVER/control/reset" >/dev/null; }
# events_of RUN TYPE: the data of each event of that type, one JSON per line
events_of() { "$REIN" events "$1" | python3 -c "
import json, sys
for l in sys.stdin:
    e = json.loads(l)
    if e['type'] == '$2': print(json.dumps(e['data'], sort_keys=True))"; }
