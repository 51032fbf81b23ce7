# README, "When a run goes wrong": runs every command of that section as it
# is written (examples/triage, offline: the replay provider, shadow mode) and
# checks that every output line the README shows is in what the command
# printed (ids, times and durations aside; "..." stands for what the README
# leaves out), so the README cannot drift; then checks each step's outcome:
# the failed run and its reason, the failing node of the trace, replay exit 0,
# the what-if's differences (classify's category, the run now succeeds, the
# policy denial gone, one changed model request, no tool called), the eval
# case shown is the suite's, its gate fails on the original and passes on the
# fix. Nothing the what-if or the evals did touched the recorded runs.
. "$ROOT/tests/cli/lib.sh"
unset REIN_PROVIDER OPENAI_BASE_URL OPENAI_API_KEY ANTHROPIC_API_KEY BILLING_URL REIN_RECORD
ln -s "$ROOT/examples" examples
rein() { "$REIN" "$@"; }

# the section's commands (lines "$ CMD" in its sh blocks) with the output
# shown under each, and its yaml block
python3 - "$ROOT/README.md" <<'PY' || fail "cannot read the README's section"
import sys
text = open(sys.argv[1]).read()
start = text.index("\n## When a run goes wrong\n")
end = text.index("\n## ", start + 1)
sec = text[start:end]
n, yaml, pos = 0, 0, 0
while True:
    i = sec.find("\n```", pos)
    if i < 0:
        break
    lang = sec[i + 4:sec.index("\n", i + 1)]
    body_start = sec.index("\n", i + 1) + 1
    body_end = sec.index("\n```", body_start - 1)
    body = sec[body_start:body_end + 1]
    pos = body_end + 4
    if lang == "yaml":
        yaml += 1
        open("yaml.%d" % yaml, "w").write(body)
        continue
    cur = None
    for line in body.splitlines():
        if line.startswith("$ "):
            n += 1
            open("cmd.%d" % n, "w").write(line[2:] + "\n")
            cur = open("want.%d" % n, "w")
        elif cur:
            cur.write(line + "\n")
open("ncmd", "w").write(str(n))
PY
n=$(cat ncmd)
[ "$n" -ge 9 ] || fail "the README's section has $n commands"
i=1
while [ $i -le "$n" ]; do
	eval "$(cat cmd.$i)" >got.$i 2>&1
	i=$((i + 1))
done

# every line the README shows is in the command's output
python3 - "$n" <<'PY' || exit 1
import re, sys
def norm(s):
    s = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", "TIME", s)
    s = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? [+-]\d{4}", "TIME", s)
    s = re.sub(r"\b\d+ms\b", "Nms", s)
    s = re.sub(r"\b[0-9a-f]{12,64}\b", "HEX", s)
    return " ".join(s.split())
bad = 0
for i in range(1, int(sys.argv[1]) + 1):
    cmd = open("cmd.%d" % i).read().strip()
    got = [norm(l) for l in open("got.%d" % i).read().splitlines()]
    for w in open("want.%d" % i).read().splitlines():
        w = norm(w)
        if w in ("", "..."):
            continue
        rx = re.compile(".*".join(re.escape(p) for p in w.split("...")))
        if not any(rx.fullmatch(g) for g in got):
            print("FAIL: README: `%s` shows a line it does not print:\n  %s\nit printed:\n%s"
                  % (cmd, w, open("got.%d" % i).read()), file=sys.stderr)
            bad += 1
sys.exit(1 if bad else 0)
PY
ok "every output line the README shows ($n commands)"

# got PATTERN: the output file of the first command matching PATTERN
got() { for f in cmd.*; do grep -q -- "$1" "$f" && { echo "got.${f#cmd.}"; return; }; done; fail "no README command matches $1"; }

# the failed run
f=$(got "id ticket-4712")
[ "$(json_get "$(head -1 "$f")" 'j["status"]')" = failed ] || fail "ticket-4712: $(cat "$f")"
grep -qx "exit 1" "$f" || fail "ticket-4712 exit: $(cat "$f")"
[ "$(json_get "$("$REIN" show ticket-4712 --json)" 'j["status"]')" = failed ] || fail "show --json"
grep -q '^ticket-4712 *failed' "$(got "runs --status failed")" || fail "runs: not listed"
grep -q 'ticket-4711' "$(got "runs --status failed")" && fail "runs: the succeeded run is listed as failed"
ok "the failed run: status failed, exit 1, listed by rein runs --status failed"

# the failing node of the trace: pay, not classify
f=$(got "trace ticket-4712")
grep -q '^└─ step pay .*✗ FAILED.*refund-cap' "$f" || fail "trace: pay is not the failing node: $(cat "$f")"
grep 'step classify' "$f" | grep -q FAILED && fail "trace: classify marked failed"
ok "the trace marks step pay as the failing node"

f=$(got "replay ticket-4712;")
grep -q 'every decision reproduced' "$f" && grep -qx "exit 0" "$f" || fail "replay: $(cat "$f")"
ok "the replay reproduces every decision, exit 0"

# the what-if: exactly the classification, the status and the denial change
f=$(got "with examples/triage-fixed")
grep -qx "exit 0" "$f" || fail "what-if exit: $(cat "$f")"
expect_exit 0 "$REIN" replay ticket-4712 --with examples/triage-fixed --json
echo "$OUT" >whatif.json
python3 - whatif.json <<'PY' || fail "what-if: $(cat whatif.json)"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["same"] is False
k = {d["kind"]: d for d in r["differences"]}
assert k["status"]["recorded"] == "failed" and k["status"]["what_if"] == "succeeded", k["status"]
assert k["output"]["what_if"] == {"order": "B-2002", "queue": "security"}, k["output"]
so = k["step_output"]
assert so["step"] == "classify" and so["recorded"]["out"]["category"] == "refund" and so["what_if"]["out"]["category"] == "security", so
assert k["policy"]["step"] == "pay" and k["policy"]["recorded"]["decision"] == "deny" and k["policy"]["what_if"] is None, k["policy"]
assert not [d for d in r["differences"] if d["kind"].startswith("tool_call")], "a tool call differs"
assert r["recorded"]["tool_calls"] == [] and r["what_if"]["tool_calls"] == []
assert r["what_if"]["not_recorded"] == []
assert r["what_if"]["model_requests"] == {"from_recording": 0, "sent": 1}, r["what_if"]["model_requests"]
assert r["what_if"]["path"] == ["classify"], r["what_if"]["path"]
PY
ok "the what-if: classify says security, the run succeeds, the denial is gone, one changed request, no tool"

# the eval case the README shows is the suite's; the gate fails on the
# original and passes on the fix
python3 - "$ROOT/examples/triage/evals/suite.yaml" <<'PY' || fail "the README's eval case is not in the suite"
import sys
assert open("yaml.1").read() in open(sys.argv[1]).read()
PY
grep -qx "exit 1" "$(got "suite.yaml --gate")" || fail "gate on the original: $(cat "$(got "suite.yaml --gate")")"
grep -q "rein eval: gate: min_success" "$(got "suite.yaml --gate")" || fail "gate message"
grep -qx "exit 0" "$(got "workflow examples/triage-fixed --gate")" || fail "gate on the fix: $(cat "$(got "workflow examples/triage-fixed")")"
case_ok() { json_get "$1" "[(c['passed'], c['failed'], c['errors']) for c in j['cases'] if c['name'] == '$2'][0]"; }
expect_exit 1 "$REIN" eval examples/triage/evals/suite.yaml --gate --json
[ "$(case_ok "$OUT" 'account takeover goes to security')" = "(0, 1, 0)" ] || fail "original: takeover case $(case_ok "$OUT" 'account takeover goes to security')"
[ "$(case_ok "$OUT" 'broken item is refunded')" = "(1, 0, 0)" ] || fail "original: refund case"
expect_exit 0 "$REIN" eval examples/triage/evals/suite.yaml --workflow examples/triage-fixed --gate --json
[ "$(case_ok "$OUT" 'account takeover goes to security')" = "(1, 0, 0)" ] || fail "fix: takeover case"
[ "$(case_ok "$OUT" 'broken item is refunded')" = "(1, 0, 0)" ] || fail "fix: refund case"
ok "the new eval case fails the gate on the original and passes it on the fix"

# the recorded runs are as they were
expect_exit 0 "$REIN" audit verify
[ "$(json_get "$("$REIN" runs --json)" 'sorted((r["run"], r["status"]) for r in j)')" = "[('ticket-4711', 'succeeded'), ('ticket-4712', 'failed')]" ] || fail "runs: $("$REIN" runs --json)"
ok "walkthrough"
