# rein tools lock / check: a CI gate against tools whose schemas drift.
. "$ROOT/tests/cli/lib.sh"
sh "$ROOT/tests/mcp/setup.sh" || fail "cannot install the MCP servers"
export MCP_BIN="$ROOT/tests/mcp/node_modules/.bin" FS_ROOT="$PWD/fsroot" TOOLSERVER=http://127.0.0.1:9
mkdir -p "$FS_ROOT"
cp -r "$WF/mcp_fs" wf
expect_exit 2 "$REIN" tools check wf            # no lock yet
expect_exit 0 "$REIN" tools lock wf
[ -s wf/tools.lock ] || fail "no tools.lock"
expect_exit 0 "$REIN" tools check wf
printf '%s' "$OUT" | grep -q "ok: no breaking change" || fail "$OUT"

# the server "now requires" an argument the lock did not: breaking, named
python3 - <<'PY'
import json
l = json.load(open("wf/tools.lock"))
s = l["tools"]["write"]["input"]
s["schema"]["required"] = [r for r in s["schema"]["required"] if r != "content"]
s["sha256"] = "0" * 64
json.dump(l, open("wf/tools.lock", "w"))
PY
expect_exit 1 "$REIN" tools check wf
printf '%s' "$OUT" | grep -q "write: now requires argument 'content' \[breaking\]" || fail "$OUT"

# an HTTP contract whose output no longer guarantees a field
cp -r "$WF/http" h
expect_exit 0 "$REIN" tools lock h
sed -i 's/  required: \[ok, key\]/  required: [ok]/' h/tools/echo.yaml
expect_exit 1 "$REIN" tools check h
printf '%s' "$OUT" | grep -q "echo: no longer guarantees result field 'key' \[breaking\]" || fail "$OUT"
# a compatible change (a description) passes
cp -r "$WF/http" h2
expect_exit 0 "$REIN" tools lock h2
sed -i 's/^description: .*/description: changed words/' h2/tools/echo.yaml
expect_exit 0 "$REIN" tools check h2
expect_exit 2 "$REIN" tools frob h2
expect_exit 0 "$REIN" tools --help
ok "tools lock"
