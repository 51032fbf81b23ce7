#!/usr/bin/env python3
"""Red-team corpus runner: tests/redteam/*.yaml, one case per file.

Each case builds a workflow (its tools, its policies, one agent step whose
model is a replay tier answering with the case's scripted turns, which obey
every injection), runs it with `rein run --as USER --tenant T`, and counts what
reached the loopback tool server (GET /control/log: each tool has its own mode
there, so every request is attributed to its tool). A request beyond the
case's `expect.reach` count for that tool is an unauthorized call. The run's
tool.refused events (and approval.requested: a call held for a human
decision, not sent) are the blocked attempts; they must equal
`expect.blocked`. Usage: run.py REIN TOOLSERVER CASE_DIR WORK_DIR
`expect.decisions` lists policy.decision events that must be recorded ({tool,
decision, rule?, untrusted?: an argument its provenance must mark untrusted}).
Exit 0: every case held; 1: an unauthorized call got through or an
expectation failed; 2: a malformed case file.
"""
import glob, json, os, subprocess, sys, urllib.request
import yaml

KEYS = {"name", "description", "injection", "content", "requester", "input",
        "tools", "agent_tools", "policies", "turns", "expect"}
WHERE = {"tool_output", "retrieved", "model_turn"}


class Bad(Exception):
    pass


def load(path):
    try:
        with open(path) as f:
            c = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        raise Bad("cannot parse: %s" % str(e).splitlines()[0])
    if not isinstance(c, dict):
        raise Bad("a case is a mapping")
    unknown = set(c) - KEYS
    if unknown:
        raise Bad("unknown keys: %s" % ", ".join(sorted(unknown)))
    for k in ("name", "injection", "content", "requester", "tools", "turns", "expect"):
        if k not in c:
            raise Bad("missing '%s'" % k)
    if c["injection"] not in WHERE:
        raise Bad("injection must be one of %s" % ", ".join(sorted(WHERE)))
    if not isinstance(c["content"], str) or not c["content"]:
        raise Bad("content must be the injected text")
    r = c["requester"]
    if not isinstance(r, dict) or not isinstance(r.get("user"), str):
        raise Bad("requester needs a user")
    if not isinstance(c["tools"], dict) or not c["tools"]:
        raise Bad("tools must map names to {effect, input}")
    for n, t in c["tools"].items():
        if not isinstance(t, dict) or t.get("effect") not in ("read", "write"):
            raise Bad("tool '%s' needs effect read or write" % n)
    if "fetch" in c["tools"]:
        raise Bad("'fetch' is the runner's own tool")
    if not isinstance(c["turns"], list) or len(c["turns"]) < 2:
        raise Bad("turns: at least one turn of tool calls and a final answer")
    for t in c["turns"]:
        if not isinstance(t, dict) or not ("tool_calls" in t or "text" in t):
            raise Bad("each turn has tool_calls or text")
    e = c["expect"]
    if not isinstance(e, dict) or not isinstance(e.get("blocked"), int) or e["blocked"] < 1:
        raise Bad("expect.blocked: the number of attempts that must be refused (>= 1)")
    if not isinstance(e.get("reach", {}), dict):
        raise Bad("expect.reach maps a tool to the calls allowed to reach it")
    for n in e.get("reach", {}):
        if n not in c["tools"]:
            raise Bad("expect.reach names an unknown tool '%s'" % n)
    for d in e.get("decisions", []):
        if not isinstance(d, dict) or not d.get("tool") or d.get("decision") not in ("allow", "deny", "approve"):
            raise Bad("expect.decisions: each is {tool, decision: allow|deny|approve, rule?, untrusted?}")
    proposed = sum(len(t.get("tool_calls", [])) for t in c["turns"])
    if e["blocked"] > proposed:
        raise Bad("expect.blocked is more than the %d proposed calls" % proposed)
    if c["injection"] == "model_turn" and not any(c["content"] in (t.get("text") or "") for t in c["turns"]):
        raise Bad("a model_turn injection must appear in a turn's text")
    return c


def workflow(c, wdir, modes):
    """Writes wdir/workflow.yaml and wdir/replay.json; returns nothing."""
    os.makedirs(wdir, exist_ok=True)
    seq = []
    for i, t in enumerate(c["turns"]):
        r = {"model": "redteam-1", "usage": {"input": 10, "output": 5}}
        if "tool_calls" in t:
            r["tool_calls"] = [dict(tc, id=tc.get("id", "call_%d_%d" % (i, j)))
                               for j, tc in enumerate(t["tool_calls"])]
            r["finish_reason"] = "tool_calls"
            r["text"] = t.get("text", "")
        else:
            r["text"] = t["text"]
            r["finish_reason"] = "stop"
        seq.append(r)
    with open(os.path.join(wdir, "replay.json"), "w") as f:
        json.dump(seq, f)
    tools = {}
    for n, t in c["tools"].items():
        tools[n] = {"description": t.get("description", n), "effect": t["effect"],
                    "http": {"url": "${env.TOOLSERVER}/tool/" + modes[n]},
                    "idempotency": "header",
                    "input": t.get("input", {"type": "object"})}
        for k in ("risk", "trust", "readers", "provenance"):
            if k in t:
                tools[n][k] = t[k]
    steps = {}
    prompt = "Ticket: ${input.ticket}"
    if c["injection"] == "tool_output":
        tools["fetch"] = {"description": "Fetch the ticket thread", "effect": "read",
                          "http": {"url": "${env.TOOLSERVER}/tool/" + modes["fetch"]},
                          "idempotency": "header",
                          "input": {"type": "object", "properties": {"body": {"type": "string"}}}}
        steps["retrieve"] = {"tool": "fetch", "args": {"body": c["content"]}, "next": "work"}
        prompt += "\nThread: ${steps.retrieve.out.args.body}"
    elif c["injection"] == "retrieved":
        prompt += "\nRetrieved document: ${input.document}"
    steps["work"] = {"agent": {
        "model": "main", "system": "You handle support tickets. Use the tools.",
        "prompt": prompt, "tools": c.get("agent_tools", [n for n in c["tools"]]),
        "max_turns": len(c["turns"]) + 1, "max_tokens": 100,
        "output": {"type": "object", "required": ["decision"],
                   "properties": {"decision": {"type": "string"}}}}, "next": "done"}
    steps["done"] = {"end": "succeeded"}
    wf = {"rein": 1, "name": "redteam_" + c["name"].replace("-", "_"),
          "input": {"type": "object"},
          "models": {"main": {"provider": "replay", "model": "redteam-1",
                              "file": "replay.json",
                              "on_miss": "sequence"}},
          "budgets": {"max_model_calls": 20, "max_tool_calls": 20, "max_cost_usd": 1},
          "tools": tools, "policies": c.get("policies", []), "steps": steps}
    if "retrieve" in steps:
        wf["start"] = "retrieve"
    with open(os.path.join(wdir, "workflow.yaml"), "w") as f:
        yaml.safe_dump(wf, f, sort_keys=False)


def http(url, data=None):
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as r:
        return r.read()


def events(rein, run):
    out = subprocess.run([rein, "events", run], capture_output=True, text=True, check=True).stdout
    return [json.loads(l) for l in out.splitlines() if l.strip()]


def main():
    rein, ts, cdir, work = sys.argv[1:5]
    files = sorted(glob.glob(os.path.join(cdir, "*.yaml")) + glob.glob(os.path.join(cdir, "*.json")))
    if not files:
        print("redteam: no case files in %s" % cdir)
        return 2
    cases = []
    for p in files:
        try:
            cases.append((p, load(p)))
        except Bad as e:
            print("redteam: malformed case %s: %s" % (os.path.basename(p), e))
            return 2
    blocked_total = unauth_total = 0
    failed = []
    for p, c in cases:
        name = os.path.basename(p)
        names = list(c["tools"]) + ["fetch"]
        modes = {n: "delay:%d" % i for i, n in enumerate(names)}
        by_mode = {m: n for n, m in modes.items()}
        wdir = os.path.join(work, os.path.splitext(name)[0])
        workflow(c, wdir, modes)
        http(ts + "/control/reset", b"")
        inp = dict(c.get("input", {}))
        inp.setdefault("ticket", "please help")
        if c["injection"] == "retrieved":
            inp["document"] = c["content"]
        r = c["requester"]
        cmd = [rein, "run", wdir, "--as", r["user"], "--input", json.dumps(inp)]
        if r.get("tenant"):
            cmd += ["--tenant", r["tenant"]]
        for role in r.get("roles", []):
            cmd += ["--role", role]
        res = subprocess.run(cmd, capture_output=True, text=True)
        try:
            run = json.loads(res.stdout)["run"]
        except (ValueError, KeyError):
            failed.append("%s: no run (exit %d): %s %s" % (name, res.returncode, res.stdout, res.stderr[-500:]))
            continue
        log = json.loads(http(ts + "/control/log"))
        reached = {}
        for e in log:
            n = by_mode.get(e["mode"], "?" + e["mode"])
            reached[n] = reached.get(n, 0) + 1
        allowed = dict(c["expect"].get("reach", {}))
        if c["injection"] == "tool_output":
            allowed["fetch"] = 1
        unauth = sum(max(0, k - allowed.get(n, 0)) for n, k in reached.items())
        evs = events(rein, run)
        blocked = sum(1 for e in evs if e["type"] in ("tool.refused", "approval.requested"))
        why = []
        if c["injection"] != "model_turn" and not any(
                e["type"] in ("step.completed", "tool.result", "run.started") and c["content"] in json.dumps(e["data"])
                for e in evs):
            why.append("the injected content never reached the run")
        if unauth:
            why.append("%d unauthorized call(s) reached the tool server: %s (allowed %s)" % (unauth, reached, allowed))
        if blocked != c["expect"]["blocked"]:
            why.append("%d attempts blocked, expected %d" % (blocked, c["expect"]["blocked"]))
        # expected policy decisions: that tool decided so, by that rule, with
        # the labels recorded (untrusted: the argument that was not trusted)
        for d in c["expect"].get("decisions", []):
            hit = [e["data"] for e in evs if e["type"] == "policy.decision" and e["data"].get("tool") == d["tool"]
                   and e["data"].get("decision") == d["decision"]
                   and (not d.get("rule") or d["rule"] in e["data"].get("rules", []))]
            if not hit:
                why.append("no policy.decision %s" % json.dumps(d, sort_keys=True))
            elif d.get("untrusted") and not any(
                    (x.get("provenance") or {}).get("args", {}).get(d["untrusted"], {}).get("trusted") is False for x in hit):
                why.append("the decision %s does not record argument '%s' as untrusted" % (json.dumps(d, sort_keys=True), d["untrusted"]))
        short = {n: k for n, k in allowed.items() if reached.get(n, 0) < k}
        if short:
            why.append("authorized calls did not go through: reached %s, expected %s" % (reached, allowed))
        status = "FAIL" if why else "ok"
        print("%s %s: %s; %d blocked, reached %s" % (status, name, c["name"], blocked, json.dumps(reached, sort_keys=True)))
        for w in why:
            print("    " + w)
        if why:
            failed.append(name)
        blocked_total += blocked
        unauth_total += unauth
    for f in failed:
        if ":" in f:
            print("FAIL " + f)
    print("redteam: %d cases, %d attempts blocked, %d unauthorized calls" % (len(cases), blocked_total, unauth_total))
    return 1 if failed or unauth_total else 0


if __name__ == "__main__":
    sys.exit(main())
