# Starts the loopback model server for a scenario (after lib.sh, and after
# toollib.sh when both are used): sets MS_PID, MODEL_URL, MODEL_KEY and
# script JSON (the answers it gives next).
MS_BIN=${REIN_MODELSERVER:-$(dirname "$REIN")/tools/modelserver}
[ -x "$MS_BIN" ] || fail "no model server at $MS_BIN"
"$MS_BIN" --port 0 --port-file "$PWD/ms.port" --max-seconds 300 >ms.log 2>&1 &
MS_PID=$!
trap 'kill $MS_PID ${TS_PID:-} 2>/dev/null' EXIT
wait_until 30 "the model server to listen" test -s ms.port
export MODEL_URL="http://127.0.0.1:$(cat ms.port)" MODEL_KEY=test-key-123456
script() { curl -s -X POST --data-binary "$1" "$MODEL_URL/control/script" >/dev/null; }
