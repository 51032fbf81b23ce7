#!/bin/sh
# Rewrites examples/triage{,-fixed}/recordings/model.json: what the model
# answers to each prompt of the README's walkthrough ("When a run goes
# wrong"), keyed by request hash. Run it when the request a prompt makes
# changes (a prompt, the schema, the model layer's canonical request), then
# tests/cli/walkthrough.sh. Usage: scripts/triage-recording.sh [BUILD_DIR]
set -eu
B=${1:-build}
REIN="$PWD/$B/rein"
TMP=$(mktemp -d /tmp/rein-triage.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
export REIN_DB="$TMP/rein.db"
unset REIN_PROVIDER
E=examples
for d in triage triage-fixed; do
	cp -r "$E/$d" "$TMP/$d"
	echo '{}' >"$TMP/$d/recordings/model.json"   # every request a miss: its hash is in model.intent
	for t in takeover broken; do
		out=$("$REIN" run "$TMP/$d" --input @"$E/triage/evals/$t.json") || true
		run=$(printf '%s' "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["run"])')
		"$REIN" events "$run" | python3 -c '
import json, sys
for l in sys.stdin:
    e = json.loads(l)
    if e["type"] == "model.intent": print(e["data"]["request_hash"])' >"$TMP/$d.$t.hash"
	done
done
python3 - "$TMP" <<'PY'
import json, sys
tmp = sys.argv[1]
def h(d, t): return open("%s/%s.%s.hash" % (tmp, d, t)).read().strip()
def resp(n, out, inp):
    return {"id": "chatcmpl-triage%d" % n, "model": "gpt-4o-mini-2024-07-18", "text": json.dumps(out), "output": out,
            "tool_calls": [], "finish_reason": "stop", "finish_raw": "stop",
            "usage": {"input": inp, "output": 22, "cached": 0, "cache_write": 0, "reasoning": 0}}
rec = {
    # the original prompt: the account takeover looks like a refund
    h("triage", "takeover"): resp(1, {"category": "refund", "order_id": "B-2002", "amount": 899}, 164),
    h("triage", "broken"): resp(2, {"category": "refund", "order_id": "A-1001", "amount": 20}, 149),
    # the fixed prompt has a security category
    h("triage-fixed", "takeover"): resp(3, {"category": "security", "order_id": "B-2002", "amount": 899}, 191),
    h("triage-fixed", "broken"): resp(4, {"category": "refund", "order_id": "A-1001", "amount": 20}, 176),
}
for d in ("triage", "triage-fixed"):
    with open("examples/%s/recordings/model.json" % d, "w") as f:
        json.dump(rec, f, indent=1, sort_keys=True)
        f.write("\n")
PY
echo "wrote examples/triage/recordings/model.json examples/triage-fixed/recordings/model.json"
