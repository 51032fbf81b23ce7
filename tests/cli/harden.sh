# Issue 10 items 1, 7, 14 and 16 end to end: what rein writes it reads back
# (NUL bytes in strings), numbers in their shortest form, containment of the
# workflow directory on the real path, and tool contracts without a
# description offered to an agent.
. "$ROOT/tests/cli/lib.sh"

# ---- item 1: a string with a NUL byte survives a store round trip and a resume
mkdir -p nul
cat >nul/workflow.yaml <<'Y'
rein: 1
name: nul
steps:
  make: { code: "return { s = 'a\\0b', amount = 24.99, cost = 0.004621 }", next: pause }
  pause: { wait: 1, next: after }
  after: { code: "return { n = #steps.make.out.s, s = steps.make.out.s .. '\\0' }", next: done }
  done: { end: succeeded }
Y
expect_exit 4 "$REIN" run nul --max-wait 0
run=$(json_get "$OUT" 'j["run"]')
# poll until the timer is due, then resume from the store (reads every payload back)
resumed() { # true once the run succeeded, or once resume --all failed (resume.failed)
	"$REIN" resume --all >resume.out 2>resume.err || { echo $? >resume.failed; return 0; }
	"$REIN" show "$run" --json >show.json 2>/dev/null
	grep -q '"succeeded"' show.json
}
wait_until 30 "the run to finish" resumed
[ -e resume.failed ] && { cat resume.err >&2; fail "resume --all exited $(cat resume.failed) with a NUL in a payload"; }
[ "$(json_get "$(cat show.json)" 'j["status"]')" = succeeded ] || fail "run did not finish: $(cat show.json)"
expect_exit 0 "$REIN" audit verify "$run"
ok "NUL bytes: stored, read back, resumed"

# rein schema check accepts valid JSON with \u0000
printf '{"type": "object", "properties": {"s": {"type": "string", "maxLength": 3}}}' >s.json
printf '{"s": "a\\u0000b"}\n' >doc.json
expect_exit 0 "$REIN" schema check s.json doc.json
ok "schema check reads \\u0000"

# ---- item 7: numbers are stored in their shortest form (the payload text itself)
python3 - "$REIN_DB" "$run" <<'PY' || fail "numbers"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
bodies = [r[0] for r in db.execute("select body from payloads")]
hit = [b for b in bodies if '"amount":24.99' in b]
assert hit, "no payload with amount 24.99: %r" % bodies
assert not any('24.98999' in b or '0.0046210000' in b for b in bodies), bodies
assert any('"cost":0.004621' in b for b in bodies), bodies
PY
ok "numbers written shortest"

# ---- item 14: a symlink out of the workflow directory is refused
mkdir -p esc/prompts outside
printf 'secret outside\n' >outside/p.md
cat >esc/workflow.yaml <<'Y'
rein: 1
name: esc
models:
  m: { provider: openai, model: x, base_url: "http://127.0.0.1:1/v1", api_key_env: NO_KEY }
steps:
  ask: { llm: { model: m, prompt: { file: prompts/p.md } }, next: done }
  done: { end: succeeded }
Y
ln -s /etc/passwd esc/prompts/p.md
expect_exit 2 "$REIN" validate esc
grep -q "'prompts/p.md' resolves to /etc/passwd, outside esc: a workflow reads only files inside its directory" stderr.txt ||
	fail "symlink to /etc/passwd: $(cat stderr.txt)"
rm esc/prompts/p.md
ln -s ../../outside/p.md esc/prompts/p.md     # climbing out through a relative link
expect_exit 2 "$REIN" validate esc
grep -q "resolves to .*/outside/p.md, outside esc" stderr.txt || fail "relative link out: $(cat stderr.txt)"
rm esc/prompts/p.md
rmdir esc/prompts
ln -s ../outside esc/prompts                   # a directory link out
expect_exit 2 "$REIN" validate esc
grep -q "resolves to .*/outside/p.md" stderr.txt || fail "directory link out: $(cat stderr.txt)"
rm esc/prompts
mkdir -p esc/real esc/prompts
printf 'Hello\n' >esc/real/p.md
ln -s ../real/p.md esc/prompts/p.md            # a link that stays inside is fine
expect_exit 0 "$REIN" validate esc
# the same for a schema $ref
mkdir -p sref
cat >sref/workflow.yaml <<'Y'
rein: 1
name: sref
input: { $ref: schemas/in.json }
steps:
  s: { code: "return 1", next: done }
  done: { end: succeeded }
Y
mkdir -p sref/schemas
printf '{"type": "object"}' >outside/in.json
ln -s "$PWD/outside/in.json" sref/schemas/in.json
expect_exit 2 "$REIN" validate sref
grep -q "resolves to .*/outside/in.json, outside sref" stderr.txt || fail "schema link out: $(cat stderr.txt)"
ok "symlinks cannot leave the workflow directory"

# ---- item 16: a tool contract without description, offered to an agent
. "$ROOT/tests/cli/toollib.sh"
. "$ROOT/tests/cli/modellib.sh"
export REIN_PROVIDER=openai
cp -r "$WF/agent" nodesc
sed -i '/description: Look an order up/d' nodesc/workflow.yaml
grep -q "Look an order up" nodesc/workflow.yaml && fail "sed"
expect_exit 0 "$REIN" validate nodesc
curl -s -X POST --data-binary '{"turns": [{"tool_calls": [{"name": "lookup", "arguments": {"order": "A1"}}]}, {"text": "{\"decision\": \"deny\"}"}]}' "$MODEL_URL/control/script" >/dev/null
expect_exit 0 "$REIN" run nodesc --input '{"ticket": "t"}'
[ "$(json_get "$OUT" 'j["output"]["decision"]')" = deny ] || fail "$OUT"
ok "a tool without description passes validate and runs"
