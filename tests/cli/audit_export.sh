# rein audit export: the audit record of a recorded run (an agent that reads
# with a tool and calls models, writes with a tool, then a tool step that
# writes), against the loopback model and tool servers: requester, policy
# decisions, approvals, what was read (by step, with its source), every write
# with its result, the cost, the outcome and the audit status, compared with
# the run's own events; --format md says the same facts; a tampered run
# exports with its problems and exit 1.
. "$ROOT/tests/cli/lib.sh"
. "$ROOT/tests/cli/toollib.sh"
MS_BIN=${REIN_MODELSERVER:-$(dirname "$REIN")/tools/modelserver}
"$MS_BIN" --port 0 --port-file ms.port --max-seconds 300 >ms.log 2>&1 &
MS_PID=$!
trap 'kill $MS_PID $TS_PID 2>/dev/null' EXIT
wait_until 10 "the model server" test -s ms.port
export MODEL_URL="http://127.0.0.1:$(cat ms.port)" MODEL_KEY=test-key-123456
script() { curl -s -X POST --data-binary "$1" "$MODEL_URL/control/script" >/dev/null; }

mkdir -p wf
cat >wf/workflow.yaml <<'EOF'
rein: 1
name: refund_audit
input: { type: object, required: [ticket] }
models:
  main:
    provider: openai
    model: agent-1
    base_url: "${env.MODEL_URL}"
    api_key_env: MODEL_KEY
    price: { input: 1.0, output: 2.0 }
    retry: { max_attempts: 1 }
budgets: { max_model_calls: 20, max_tool_calls: 10, max_cost_usd: 1 }
tools:
  lookup:
    description: Look an order up
    http: { url: "${env.TOOLSERVER}/tool/ok" }
    effect: read
    idempotency: header
    input: { type: object, required: [order], properties: { order: { type: string } } }
  refund:
    description: Pay a refund
    http: { url: "${env.TOOLSERVER}/tool/ok" }
    effect: write
    risk: low
    idempotency: header
    input: { type: object, required: [amount], properties: { amount: { type: number } } }
steps:
  investigate:
    agent:
      model: main
      prompt: "Ticket: ${input.ticket}"
      tools: [lookup, refund]
      max_turns: 4
      max_tokens: 100
      output: { type: object, required: [decision], properties: { decision: { type: string }, amount: { type: number } } }
    next: pay
  pay:
    tool: refund
    args: { amount: "${steps.investigate.out.amount}" }
    next: done
  done: { end: succeeded }
EOF
script '{"turns": [{"tool_calls": [{"name": "lookup", "arguments": {"order": "A1"}}]}, {"tool_calls": [{"name": "refund", "arguments": {"amount": 20}}]}, {"text": "{\"decision\": \"refund\", \"amount\": 20}"}]}'
expect_exit 0 "$REIN" run wf --input '{"ticket": "refund order A1"}'
run=$(json_get "$OUT" 'j["run"]')
"$REIN" events "$run" >events.jsonl
anchor=$(sqlite3 rein.db "SELECT seq FROM anchors WHERE run_id = '$run'" 2>/dev/null || echo "")

expect_exit 0 "$REIN" audit export "$run"
printf '%s\n' "$OUT" >export.json
python3 - "$run" "$anchor" <<'PY' || fail "export: $(cat export.json)"
import json, sys
run, anchor = sys.argv[1], sys.argv[2]
x = json.load(open("export.json"))
ev = [json.loads(l) for l in open("events.jsonl")]
def of(t): return [e for e in ev if e["type"] == t]
started = of("run.started")[0]["data"]
assert x["run"] == run and x["workflow"] == "refund_audit" and x["status"] == "succeeded", x
assert x["requester"] == started.get("requester", "unknown"), x["requester"]
assert x["input"] == {"ticket": "refund order A1"}
assert len(x["policy_decisions"]) == len(of("policy.decision")), x["policy_decisions"]
assert x["approvals"] == [], x["approvals"]
# reads: every model call and the read tool, by step, with their source
calls = of("model.call")
assert len(calls) == 3
models = [r for r in x["reads"] if r["kind"] == "model"]
assert [m["seq"] for m in models] == [c["seq"] for c in calls], models
assert all(m["step"] == "investigate" and m["source"] == "model:main" for m in models)
assert [m["cost_usd"] for m in models] == [c["data"]["cost_usd"] for c in calls]
# the provenance of each call's prompt: its model.intent's labels and reads
intents = {e["seq"]: e["data"] for e in of("model.intent")}
for m in models:
    i = intents[m["intent_seq"]]
    assert m["intent_seq"] < m["seq"] and m["labels"] == i["labels"] and m["reads"] == i["reads"], m
assert models[0]["labels"]["sources"] == ["requester"] and models[0]["reads"] == ["input"], models[0]
tools = [r for r in x["reads"] if r["kind"] == "tool"]
assert len(tools) == 1, tools
t = tools[0]
assert t["tool"] == "lookup" and t["source"] == "tool:lookup" and t["step"] == "investigate", t
assert t["args"] == {"order": "A1"} and t["outcome"] == "ok", t
# the result is the step's next tool.result (one call of a step is out at a time)
res = [e for e in of("tool.result") if e["step"] == t["step"] and e["seq"] > t["seq"]][0]
assert t["result"]["seq"] == res["seq"] and t["result"]["out"] == res["data"]["out"], t
# writes: the agent's refund and the pay step, each with its result
intents = [e for e in of("tool.intent") if e["data"].get("effect") == "write"]
assert [w["seq"] for w in x["writes"]] == [i["seq"] for i in intents] and len(intents) == 2, x["writes"]
w1, w2 = x["writes"]
assert w1["step"] == "investigate" and w1["tool"] == "refund" and w1["args"] == {"amount": 20}, w1
assert w1["outcome"] == "ok" and w1["result"]["out"]["ok"] is True and w1["result"]["out"]["key"] == w1["key"], w1
assert w2["step"] == "pay" and w2["tool"] == "refund" and w2["args"] == {"amount": 20}, w2
done = [e for e in of("step.completed") if e["step"] == "pay"][0]
assert w2["outcome"] == "ok" and w2["result"]["seq"] == done["seq"] and w2["result"]["out"] == done["data"]["out"], w2
# cost: the model calls' cost summed
assert abs(x["cost"]["usd"] - sum(c["data"]["cost_usd"] for c in calls)) < 1e-9, x["cost"]
assert x["cost"]["usd"] > 0 and x["cost"]["model_calls"] == 3
assert x["cost"]["input_tokens"] == sum(c["data"]["usage"]["input"] for c in calls)
# the outcome and the audit status
end = of("run.ended")[0]
assert x["outcome"]["status"] == "succeeded" and x["outcome"]["seq"] == end["seq"], x["outcome"]
assert x["outcome"]["output"] == end["data"]["output"] and x["outcome"]["output"]["ok"] is True, x["outcome"]
a = x["audit"]
assert a["verified"] is True and a["problems"] == [], a
assert a["events"] == ev[-1]["seq"] and a["head"] == ev[-1]["hash"], a
assert a["anchored"]["covers_head"] is True and a["anchored"]["run_seq"] == ev[-1]["seq"], a
if anchor:
    assert a["anchored"]["anchor"] == int(anchor), (a, anchor)
assert a["anchor_chain"]["anchors"] >= 1
open("facts.txt", "w").write("\n".join([
    "requester: %s" % (x["requester"] if isinstance(x["requester"], str) else "`%s`" % json.dumps(x["requester"], separators=(",", ":"), sort_keys=True)),
    "source tool:`lookup`", "source model:main", "write `refund` (write), key `%s`" % w1["key"],
    "write `refund` (write), key `%s`" % w2["key"],
    "%.6f USD over 3 model call(s)" % x["cost"]["usd"], "status: **succeeded**",
    "chain: **verifies**, %d event(s), head `%s`" % (a["events"], a["head"]),
    "anchored at anchor %d (run seq %d, its head)" % (a["anchored"]["anchor"], a["anchored"]["run_seq"]),
]) + "\n")
PY

# md: the same facts, for people
expect_exit 0 "$REIN" audit export "$run" --format md
printf '%s\n' "$OUT" >export.md
while IFS= read -r fact; do
	grep -qF -- "$fact" export.md || fail "md lacks '$fact': $(cat export.md)"
done <facts.txt
grep -A2 '^## Approvals' export.md | grep -q '^none recorded$' || fail "approvals: $(cat export.md)"
grep -A2 '^## Policy decisions' export.md | grep -q '^none recorded$\|^- seq' || fail "decisions: $(cat export.md)"
grep -q '^### step `investigate`' export.md && grep -q '^### step `pay`' export.md || fail "by step: $(cat export.md)"
[ "$(grep -c '^- seq .*model call' export.md)" = 3 ] || fail "model calls: $(cat export.md)"

grep -q '^  - its prompt read `\["input"\]`: sources `\["requester"\]`, readers `\["public"\]`, \*\*trusted\*\*$' export.md ||
	fail "no provenance of the prompt: $(cat export.md)"

# a policy decision's provenance: per argument its sources, readers and trust
mkdir -p wf2
sed -e 's/^name: refund_audit$/name: refund_policy/' -e 's/^steps:$/policies:\n  - { id: refunds-ok, effect: allow, tool: refund }\nsteps:/' \
	-e 's/args: { amount: "${steps.investigate.out.amount}" }/args: { amount: "${input.amount}" }/' wf/workflow.yaml |
	python3 -c 'import sys; t = sys.stdin.read(); i = t.index("  investigate:"); j = t.index("  pay:"); print(t[:i] + t[j:], end="")' >wf2/workflow.yaml
expect_exit 0 "$REIN" run wf2 --input '{"ticket": "t", "amount": 7}'
run2=$(json_get "$OUT" 'j["run"]')
"$REIN" events "$run2" >events2.jsonl
expect_exit 0 "$REIN" audit export "$run2"
printf '%s\n' "$OUT" >export2.json
python3 - <<'PY' || fail "policy provenance: $(cat export2.json)"
import json
x = json.load(open("export2.json"))
ev = [json.loads(l) for l in open("events2.jsonl")]
dec = [e for e in ev if e["type"] == "policy.decision"]
assert len(dec) == 1 and len(x["policy_decisions"]) == 1, x["policy_decisions"]
d = x["policy_decisions"][0]
assert d["tool"] == "refund" and d["decision"]["decision"] == "allow" and d["decision"]["rules"] == ["refunds-ok"], d
assert d["provenance"] == dec[0]["data"]["provenance"] and d["provenance"] is not None, d
a = d["provenance"]["args"]["amount"]
assert a["sources"] == ["requester"] and a["trusted"] is True, a
PY
expect_exit 0 "$REIN" audit export "$run2" --format md
printf '%s\n' "$OUT" >export2.md
grep -q '^- seq [0-9]*, step `pay`, at .*: \*\*allow\*\* `refund` by rules `\["refunds-ok"\]`' export2.md || fail "$(cat export2.md)"
grep -q '^  - argument `amount`: sources `\["requester"\]`, readers `\[.*\]`, \*\*trusted\*\*$' export2.md || fail "$(cat export2.md)"

# approvals (the approval.* events, docs/approvals.md): a run whose log holds a
# two-person approval with an alert, a refused token and an edit, written into
# the store with its chain and anchor, as the engine writes them
python3 - rein.db "$run2" <<'PY' || fail "could not write the approval run"
import hashlib, json, sqlite3, struct, sys
db = sqlite3.connect(sys.argv[1])
wf, version = db.execute("SELECT workflow, version FROM runs WHERE id = ?", (sys.argv[2],)).fetchone()
rid = db.execute("SELECT v FROM meta WHERE k = 'next_rid'").fetchone()[0]
db.execute("UPDATE meta SET v = ? WHERE k = 'next_rid'", (rid + 1,))
run = "run_approvals0000000000000001"
req = {"user": "rita", "roles": [], "tenant": "t1"}
T = 1764590400000
evs = [
    ("run.started", None, {"workflow": wf, "version": version, "input": {"amount": 50}, "requester": req}),
    ("policy.decision", "pay", {"tool": "refund", "decision": "approve", "rules": ["big"], "reasons": ["over 20"],
                                "policy_version": "none", "workflow_version": version, "key": "k-1",
                                "provenance": {"args": {"amount": {"sources": ["requester"], "readers": ["t1"], "trusted": True}}}}),
    ("approval.requested", "pay", {"id": "ap-1", "key": "k-1", "tool": "refund", "args": {"amount": 50},
                                   "action_hash": "ab" * 32, "policy_version": "none", "risk": "high", "rules": ["big"],
                                   "need": {"count": 2, "roles": ["finance"]}, "requester": req}),
    ("approval.alert", "pay", {"id": "ap-1"}),
    ("approval.refused", None, {"id": "ap-1", "by": "eve", "reason": "forged token"}),
    ("approval.granted", "pay", {"id": "ap-1", "by": "ann", "roles": ["finance"]}),
    ("approval.granted", "pay", {"id": "ap-1", "by": "bob", "roles": ["finance"], "reason": "smaller", "args": {"amount": 20}}),
    ("tool.intent", "pay", {"tool": "refund", "key": "k-1", "args": {"amount": 20}, "effect": "write"}),
    ("step.completed", "pay", {"out": {"ok": True}}),
]
prev = hashlib.sha256(b"rein.run\0" + run.encode()).digest()
for seq, (t, step, data) in enumerate(evs, 1):
    body = json.dumps(data, separators=(",", ":"), sort_keys=True)
    ph = hashlib.sha256(body.encode()).digest()
    at = T + 1000 * seq
    h = hashlib.sha256(prev + struct.pack(">q", seq) + t.encode() + b"\0" + (step or "").encode() + b"\0" +
                       struct.pack(">q", at) + ph).digest()
    db.execute("INSERT OR IGNORE INTO payloads(hash, body) VALUES (?, ?)", (ph, body))
    db.execute("INSERT INTO events(k, type, step, at, payload_hash, prev_hash, hash) VALUES (?,?,?,?,?,?,?)",
               (rid * 16777216 + seq, t, step, at, ph, prev, h))
    prev = h
db.execute("INSERT INTO runs(id, rid, workflow, version, status, created_at, updated_at, last_seq, last_hash) "
           "VALUES (?, ?, ?, ?, 'waiting', ?, ?, ?, ?)", (run, rid, wf, version, T, T + 1000 * len(evs), len(evs), prev))
aseq, aprev = db.execute("SELECT seq, hash FROM anchors ORDER BY seq DESC LIMIT 1").fetchone()
aseq += 1
ah = hashlib.sha256(b"rein.anchor\0" + aprev + struct.pack(">q", aseq) + run.encode() + b"\0" +
                    struct.pack(">q", len(evs)) + prev).digest()
db.execute("INSERT INTO anchors(seq, run_id, run_last_seq, run_head_hash, prev_hash, hash) VALUES (?,?,?,?,?,?)",
           (aseq, run, len(evs), prev, aprev, ah))
db.commit()

PY
run3=run_approvals0000000000000001
expect_exit 0 "$REIN" audit verify "$run3"
expect_exit 0 "$REIN" audit export "$run3"
printf '%s\n' "$OUT" >export3.json
python3 - <<'PY' || fail "approvals: $(cat export3.json)"
import json
x = json.load(open("export3.json"))
assert x["audit"]["verified"] is True, x["audit"]
assert len(x["approvals"]) == 5, x["approvals"]  # every approval.* event, as recorded
(a,) = x["approval_summary"]
assert a["id"] == "ap-1" and a["step"] == "pay" and a["tool"] == "refund" and a["args"] == {"amount": 50}, a
assert a["action_hash"] == "ab" * 32 and a["policy_version"] == "none" and a["risk"] == "high", a
assert a["need"] == {"count": 2, "roles": ["finance"]} and a["requester"]["user"] == "rita", a
assert a["outcome"] == "granted" and a["decided_by"] == ["ann", "bob"], a
assert [v["by"] for v in a["votes"]] == ["ann", "bob"] and a["votes"][1]["edited_args"] == {"amount": 20}, a
assert "edited_args" not in a["votes"][0] and a["edited_args"] == {"amount": 20}, a
assert a["decided_at"] == a["votes"][1]["at"] and a["requested_at"] < a["decided_at"], a
assert a["refused"] == [{"seq": 5, "at": a["refused"][0]["at"], "by": "eve", "reason": "forged token"}], a
assert len(a["alerts"]) == 1 and a["alerts"][0]["seq"] == 4, a
assert a["sent"]["seq"] == 8 and a["sent"]["args"] == {"amount": 20} and a["sent"]["outcome"] == "ok", a
PY
expect_exit 0 "$REIN" audit export "$run3" --format md
printf '%s\n' "$OUT" >export3.md
for fact in '- `ap-1`, step `pay`: **granted**; action `refund` args `{"amount":50}`' \
	'  - granted by ann (roles `["finance"]`) at ' '  - granted by bob (roles `["finance"]`) at ' \
	': smaller, **edited** args to `{"amount":20}`' '  - refused a token of eve at ' \
	'  - sent (seq 8) with args `{"amount":20}`: ok'; do
	grep -qF -- "$fact" export3.md || fail "md lacks '$fact': $(cat export3.md)"
done

# usage errors and an unknown run
expect_exit 2 "$REIN" audit export
expect_exit 2 "$REIN" audit export "$run" --format html
expect_exit 2 "$REIN" audit export run_nosuch
grep -q "no run run_nosuch" stderr.txt || fail "$(cat stderr.txt)"

# a tampered run still exports, with its problem, and exits 1
sqlite3 rein.db "DROP TRIGGER events_append_only_u; UPDATE events SET at = at + 1 WHERE k = (SELECT k FROM event_log WHERE run_id = '$run' AND seq = 2)"
expect_exit 1 "$REIN" audit export "$run"
json_get "$OUT" 'j["audit"]["verified"] is False and "seq 2" in j["audit"]["problems"][0]' | grep -q True || fail "$OUT"
expect_exit 1 "$REIN" audit export "$run" --format md
printf '%s\n' "$OUT" | grep -q 'chain: \*\*DOES NOT VERIFY\*\*' || fail "$OUT"
printf '%s\n' "$OUT" | grep -q '^- problem: .*seq 2' || fail "$OUT"
ok "audit_export"
