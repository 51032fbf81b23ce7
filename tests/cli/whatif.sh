# rein replay RUN --with DIR (the what-if): a recorded agent run where the
# scripted model picks tool search (A); a changed system prompt changes the
# model request, the model server answers the new request with a call to
# tool notify (B): the report is exactly that difference (search removed,
# notify added), notify is not in the recording, reported and never sent
# (the tool server sees nothing), and the model server gets exactly one new
# request. The unchanged workflow reports "same" and sends nothing; a policy
# that denies search reports the policy decision without any model request;
# a changed request with no provider configured is a clear error (exit 2).
# Nothing is written to the recorded run. And every run other scenarios make,
# what-if'd against its own workflow (written out from the store's bundle),
# is "same" with no provider configured (nothing is asked of a model), but
# for calls recorded without an outcome (in flight at a crash), which say so.
. "$ROOT/tests/cli/lib.sh"
. "$ROOT/tests/cli/toollib.sh"
. "$ROOT/tests/cli/modellib.sh"
export REIN_PROVIDER=openai
final() { printf '{"text": %s}' "$(printf '%s' "$1" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')"; }
requests() { curl -s "$MODEL_URL/control/requests" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }

mkdir -p wf
cat >wf/workflow.yaml <<'EOF'
rein: 1
name: whatif
input: { type: object, required: [ticket] }
models:
  main:
    provider: "${env.REIN_PROVIDER:-replay}"
    model: agent-1
    base_url: "${env.MODEL_URL:-}"
    api_key_env: MODEL_KEY
    price: { input: 1.0, output: 2.0 }
    retry: { max_attempts: 1 }
budgets: { max_model_calls: 20, max_tool_calls: 10, max_cost_usd: 1 }
tools:
  search:
    description: Search the orders
    http: { url: "${env.TOOLSERVER}/tool/ok" }
    effect: read
    idempotency: header
    input: { type: object, required: [q], additionalProperties: false, properties: { q: { type: string } } }
  notify:
    description: Notify a person
    http: { url: "${env.TOOLSERVER}/tool/ok" }
    effect: read
    idempotency: header
    input: { type: object, required: [to], additionalProperties: false, properties: { to: { type: string } } }
steps:
  fetch:
    tool: search
    args: { q: "${input.ticket}" }
    on_fail: escalate
    next: investigate
  investigate:
    agent:
      model: main
      system: You investigate refund requests. Look orders up before deciding.
      prompt: "Ticket: ${input.ticket}"
      tools: [search, notify]
      max_turns: 3
      max_tokens: 100
      output:
        type: object
        required: [decision]
        properties: { decision: { enum: [refund, deny] } }
    on_fail: escalate
    next: done
  done: { end: succeeded }
  escalate: { end: escalated, reason: "${why}" }
EOF

# the recorded run: the model looks the order up with search (A), then decides
script "{\"turns\": [{\"tool_calls\": [{\"name\": \"search\", \"arguments\": {\"q\": \"A1\"}}]}, $(final '{"decision": "refund"}')]}"
expect_exit 0 "$REIN" run wf --input '{"ticket": "refund order A1"}'
run=$(json_get "$OUT" 'j["run"]')
[ "$(json_get "$(stats)" 'j["requests"]')" = 2 ] || fail "recording: tool server $(stats)"
[ "$(requests)" = 2 ] || fail "recording: model server got $(requests) requests"
db_state() { sqlite3 rein.db "SELECT count(*), group_concat(hex(hash)) FROM events; SELECT count(*) FROM payloads; SELECT * FROM runs"; }
before=$(db_state)
reset_stats
curl -s -X POST "$MODEL_URL/control/reset" >/dev/null

# the same workflow: same, nothing sent
expect_exit 0 "$REIN" replay "$run" --with wf --json
[ "$(json_get "$OUT" 'j["same"]')" = True ] || fail "unchanged: $OUT"
[ "$(json_get "$OUT" 'j["what_if"]["model_requests"]["sent"]')" = 0 ] || fail "sent: $OUT"
[ "$(json_get "$OUT" 'j["what_if"]["model_requests"]["from_recording"]')" = 2 ] || fail "answered: $OUT"
[ "$(json_get "$OUT" 'j["what_if"]["status"]')" = succeeded ] || fail "status: $OUT"
expect_exit 0 "$REIN" replay "$run" --with wf
[ "$(printf '%s\n' "$OUT" | head -1)" = "same: the what-if run makes the recorded decisions" ] || fail "text: $OUT"
expect_exit 0 "$REIN" replay "$run" --with wf --fail-on-diff
[ "$(requests)" = 0 ] || fail "the unchanged what-if sent $(requests) model requests"
[ "$(json_get "$(stats)" 'j["requests"]')" = 0 ] || fail "the unchanged what-if called a tool: $(stats)"
ok "the unchanged workflow: same, nothing sent"

# a changed system prompt: the model chooses notify (B) instead of search (A)
cp -r wf wf2
sed -i 's/Look orders up before deciding./Tell the customer before deciding./' wf2/workflow.yaml
script '{"turns": [{"tool_calls": [{"name": "notify", "arguments": {"to": "customer"}}]}]}'
expect_exit 0 "$REIN" replay "$run" --with wf2 --json
echo "$OUT" >w2.json
python3 - w2.json <<'PY' || fail "prompt change: $(cat w2.json)"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["same"] is False, r["same"]
tools = [d for d in r["differences"] if d["kind"].startswith("tool_call")]
assert tools == [
    {"kind": "tool_call_removed", "step": "investigate", "recorded": {"tool": "search", "args": {"q": "A1"}}, "what_if": None},
    {"kind": "tool_call_added", "step": "investigate", "recorded": None, "what_if": {"tool": "notify", "args": {"to": "customer"}}},
], tools
assert r["what_if"]["not_recorded"] == [{"step": "investigate", "tool": "notify", "args": {"to": "customer"}}], r["what_if"]["not_recorded"]
kinds = {d["kind"]: d for d in r["differences"]}
assert kinds["status"]["recorded"] == "succeeded" and kinds["status"]["what_if"] == "escalated", kinds.get("status")
assert "not in the recording: tool notify args {\"to\":\"customer\"}" in r["what_if"]["reason"], r["what_if"]["reason"]
assert r["what_if"]["model_requests"] == {"from_recording": 0, "sent": 1}, r["what_if"]["model_requests"]
assert r["recorded"]["model_calls"] == 2 and r["what_if"]["model_calls"] == 1
assert "policy" not in kinds, kinds.get("policy")
assert "fetch" not in [d.get("step") for d in r["differences"]], "the fetch step did not change"
PY
[ "$(requests)" = 1 ] || fail "the model server got $(requests) requests, not the one changed"
curl -s "$MODEL_URL/control/requests" | grep -q "Tell the customer" || fail "the changed request was not the one sent"
[ "$(json_get "$(stats)" 'j["requests"]')" = 0 ] || fail "a tool call reached the tool server: $(stats)"
script '{"turns": [{"tool_calls": [{"name": "notify", "arguments": {"to": "customer"}}]}]}'
expect_exit 1 "$REIN" replay "$run" --with wf2 --fail-on-diff
echo "$OUT" | grep -q '^tool_call_removed investigate: recorded {"args":{"q":"A1"},"tool":"search"}, what-if null$' || fail "text: $OUT"
echo "$OUT" | grep -q '^tool_call_added investigate: recorded null, what-if {"args":{"to":"customer"},"tool":"notify"}$' || fail "text: $OUT"
echo "$OUT" | grep -q '^not in the recording (not sent): step investigate tool notify args {"to":"customer"}$' || fail "text: $OUT"
ok "a prompt change that makes the model choose notify over search is reported as exactly that"

# a policy that denies search: the fetch step fails at the gate, no model request
curl -s -X POST "$MODEL_URL/control/reset" >/dev/null
cp -r wf wf3
cat >>wf3/workflow.yaml <<'EOF'
policies:
  - { id: no-search, effect: deny, tool: search, reason: "search is off" }
EOF
expect_exit 0 "$REIN" replay "$run" --with wf3 --json
echo "$OUT" >w3.json
python3 - w3.json <<'PY' || fail "policy change: $(cat w3.json)"
import json, sys
r = json.load(open(sys.argv[1]))
pol = [d for d in r["differences"] if d["kind"] == "policy"]
assert len(pol) == 1, pol
p = pol[0]
assert p["step"] == "fetch" and p["recorded"] is None, p
assert p["what_if"]["tool"] == "search" and p["what_if"]["decision"] == "deny" and p["what_if"]["rules"] == ["no-search"], p
assert r["what_if"]["status"] == "escalated" and r["what_if"]["model_calls"] == 0, r["what_if"]
assert r["what_if"]["model_requests"] == {"from_recording": 0, "sent": 0}
PY
[ "$(requests)" = 0 ] || fail "the policy what-if sent $(requests) model requests"
[ "$(json_get "$(stats)" 'j["requests"]')" = 0 ] || fail "the policy what-if called a tool: $(stats)"
ok "a policy that denies search: the policy decision differs, no model request"

# a changed request and no provider configured: the clear error
(unset REIN_PROVIDER; expect_exit 2 "$REIN" replay "$run" --with wf2;
 grep -q "model request changed at step investigate and no provider is configured" stderr.txt || fail "no provider: $(cat stderr.txt)") || exit 1
[ "$(requests)" = 0 ] || fail "no provider: the model server got $(requests) requests"
ok "a changed request with no provider configured is refused clearly"

# the recorded run is untouched; usage errors
[ "$(db_state)" = "$before" ] || fail "the what-if wrote to the store"
expect_exit 0 "$REIN" audit verify
expect_exit 0 "$REIN" replay "$run"
expect_exit 2 "$REIN" replay "$run" --with nosuchdir
expect_exit 2 "$REIN" replay run_nosuch --with wf
expect_exit 2 "$REIN" replay "$run" --json
ok "usage and the untouched store"

# every run of other scenarios against its own workflow: same
SCEN="agent models tools_http outcomes cancel_wait crash_steps signal retry review"
same=0 open=0
for s in $SCEN; do
	mkdir -p "sc/$s"
	( cd "sc/$s" && sh "$ROOT/tests/cli/$s.sh" >log.txt 2>&1 )
	rc=$?
	[ $rc -eq 77 ] && { echo "skip: $s ($(tail -1 "sc/$s/log.txt"))"; continue; }
	[ $rc -eq 0 ] || { tail -5 "sc/$s/log.txt" >&2; fail "scenario $s failed (rc $rc)"; }
	for db in $(find "sc/$s" -name '*.db'); do
		python3 - "$db" "v/$s" <<'PY'
import json, os, sqlite3, sys
db, out = sys.argv[1], sys.argv[2]
for version, bundle in sqlite3.connect(db).execute("SELECT version, bundle FROM specs"):
    for rel, text in json.loads(bundle)["files"].items():
        p = os.path.join(out, version, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        open(p, "w").write(text)
PY
		for line in $(sqlite3 "$db" "SELECT id || ':' || version FROM runs"); do
			r=${line%%:*} v=${line#*:}
			(unset REIN_PROVIDER MODEL_URL OPENAI_BASE_URL ANTHROPIC_BASE_URL
			 "$REIN" replay "$r" --with "v/$s/$v" --db "$db" --json >wi.json 2>wi.err) ||
				fail "$s: run $r: $(cat wi.err)"
			python3 - wi.json <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["recorded_version"] == r["what_if_version"]
assert r["what_if"]["model_requests"]["sent"] == 0
if not r["same"]:
    # only a call the recording holds without an outcome may differ
    assert r["what_if"]["not_recorded"] and "(recorded without an outcome)" in (r["what_if"]["reason"] or ""), r["what_if"]["reason"]
    sys.exit(3)
PY
			case $? in
			0) same=$((same + 1)) ;;
			3) open=$((open + 1)) ;;
			*) fail "$s: run $r ($db) differs: $(cat wi.json)" ;;
			esac
		done
	done
done
[ $same -ge 30 ] || fail "only $same runs are the same"
ok "$same runs of $(echo $SCEN | wc -w) scenarios what-if'd against their own workflow: same ($open with a call recorded without an outcome)"
ok "whatif"
