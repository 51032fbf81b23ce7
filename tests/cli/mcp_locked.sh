# Issue 10 item 15: an MCP tool whose contract declares no input takes the
# schema `rein tools lock` recorded: bad arguments are refused before the
# call (no intent, no attempt), with a JSON Pointer to the culprit.
. "$ROOT/tests/cli/lib.sh"
sh "$ROOT/tests/mcp/setup.sh" || fail "cannot install the MCP servers"
export MCP_BIN="$ROOT/tests/mcp/node_modules/.bin" FS_ROOT="$PWD/fsroot"
mkdir -p "$FS_ROOT" wf
cat >wf/workflow.yaml <<'Y'
rein: 1
name: mcp_locked
input: { type: object }
mcp_servers:
  fs: { command: ["${env.MCP_BIN}/mcp-server-filesystem", "${env.FS_ROOT}"] }
tools:
  write: { mcp: fs, tool: write_file, effect: write, risk: low }
steps:
  save:
    tool: write
    args: { path: "${input.dir .. '/note.txt'}", content: 42 }
    next: done
  done: { end: succeeded }
Y
count_of() { "$REIN" events "$1" | grep -c "\"type\":\"$2\""; }
# without a lock the server's schema is known only at the call
expect_exit 1 "$REIN" run wf --input "{\"dir\": \"$FS_ROOT\"}"
run=$(json_get "$OUT" 'j["run"]')
[ "$(count_of "$run" tool.intent)" = 1 ] || fail "no intent without a lock"
# with one, the arguments are refused before anything is recorded as sent
expect_exit 0 "$REIN" tools lock wf
expect_exit 0 "$REIN" validate wf
expect_exit 1 "$REIN" run wf --input "{\"dir\": \"$FS_ROOT\"}"
run=$(json_get "$OUT" 'j["run"]')
reason=$(json_get "$OUT" 'j["reason"]')
[ "$(count_of "$run" tool.intent)" = 0 ] || fail "an intent for arguments the lock refuses: $reason"
[ "$(count_of "$run" tool.attempt)" = 0 ] || fail "an attempt for arguments the lock refuses"
echo "$reason" | grep -q "input schema of 'write'" || fail "reason: $reason"
echo "$reason" | grep -q "/content" || fail "no pointer to the argument: $reason"
case $reason in *"
"*) fail "a newline in the reason: $reason" ;; esac
[ -e "$FS_ROOT/note.txt" ] && fail "the file was written"
# a missing argument: said at the root, without an empty pointer
sed -i 's/, content: 42 }/ }/' wf/workflow.yaml
expect_exit 1 "$REIN" run wf --input "{\"dir\": \"$FS_ROOT\"}"
reason=$(json_get "$OUT" 'j["reason"]')
echo "$reason" | grep -q "input schema of 'write': missing required property \"content\"" || fail "reason: $reason"
echo "$reason" | grep -q ": : " && fail "an empty pointer: $reason"
sed -i 's/\.txt'"'"'}" }/.txt'"'"'}", content: 42 }/' wf/workflow.yaml
grep -q "content: 42" wf/workflow.yaml || fail "test setup: $(cat wf/workflow.yaml)"
# good arguments still go through, and the lock still compares with the server
sed -i 's/content: 42/content: "hello"/' wf/workflow.yaml
expect_exit 0 "$REIN" run wf --input "{\"dir\": \"$FS_ROOT\"}"
[ "$(cat "$FS_ROOT/note.txt")" = hello ] || fail "not written"
expect_exit 0 "$REIN" tools check wf
ok "MCP tools take their locked input schema"
