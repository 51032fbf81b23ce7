# MCP tools against real servers from the npm registry: server-filesystem
# (write a file, read it back, in a temporary directory) and server-everything
# over stdio and over streamable HTTP.
. "$ROOT/tests/cli/lib.sh"
sh "$ROOT/tests/mcp/setup.sh" || fail "cannot install the MCP servers (tests/mcp/setup.sh)"
export MCP_BIN="$ROOT/tests/mcp/node_modules/.bin"

export FS_ROOT="$PWD/fsroot"
mkdir -p "$FS_ROOT"
expect_exit 0 "$REIN" run "$WF/mcp_fs" --input "{\"dir\": \"$FS_ROOT\", \"text\": \"rein was here\"}"
[ "$(cat "$FS_ROOT/note.txt")" = "rein was here" ] || fail "file not written"
[ "$(json_get "$OUT" 'j["output"]["text"]')" = "rein was here" ] || fail "read back: $OUT"
run=$(json_get "$OUT" 'j["run"]')
"$REIN" events "$run" | grep -q '"type":"tool.intent"' || fail "no intents"
# outside the allowed root: the server refuses (isError), the step fails, nothing retried
expect_exit 1 "$REIN" run "$WF/mcp_fs" --input '{"dir": "/etc", "text": "no"}'
json_get "$OUT" 'j["reason"]' | grep -q "the tool reported an error" || fail "$OUT"

# server-everything: stdio and streamable HTTP in one run
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
PORT=$port "$MCP_BIN/mcp-server-everything" streamableHttp >http.log 2>&1 &
hpid=$!
trap 'kill $hpid 2>/dev/null' EXIT
for i in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$port/mcp" && break; sleep 0.1; done
export EVERYTHING_URL="http://127.0.0.1:$port/mcp"
expect_exit 0 "$REIN" run "$WF/mcp_everything"
out=$(json_get "$OUT" 'json.dumps(j["output"], sort_keys=True)')
echo "$out" | grep -q 'hello from rein' || fail "echo: $out"
echo "$out" | grep -q '42' || fail "sum: $out"
echo "$out" | grep -q 'over http' || fail "remote echo: $out"
[ "$(json_get "$OUT" 'j["output"]["gone"]')" = True ] || fail "unknown tool fallback: $out"
json_get "$OUT" 'j["output"]["bad"]' | grep -q "input schema" || fail "bad arguments not refused: $out"
[ "$(json_get "$OUT" 'type(j["output"]["weather"]).__name__')" = dict ] || fail "structuredContent: $out"
ok "mcp tools"
