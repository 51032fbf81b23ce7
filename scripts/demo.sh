#!/bin/sh
# The demo: the refund workflow of examples/refund, end to end and offline.
# The model answers come from the recorded conversation (replay provider); the
# order records and the refund policy are read through a real MCP server
# (@modelcontextprotocol/server-filesystem, from the npm registry); the refund
# is paid through an HTTP tool on a loopback billing server.
# Usage: scripts/demo.sh [BUILD_DIR]   (default build)
set -eu
B=${1:-build}
REIN="$PWD/$B/rein"
DIR=$(mktemp -d /tmp/rein-demo.XXXXXX)
export REIN_DB="$DIR/rein.db"
sh tests/mcp/setup.sh >"$DIR/npm.log" 2>&1 || { cat "$DIR/npm.log"; exit 1; }
export REIN_MCP_BIN="$PWD/tests/mcp/node_modules/.bin" REIN_DATA_DIR="$PWD/examples/refund/data"
"$B/tools/toolserver" --port 0 --port-file "$DIR/billing.port" --max-seconds 600 >"$DIR/billing.log" 2>&1 &
BILLING=$!
trap 'kill $BILLING 2>/dev/null' EXIT
for i in $(seq 1 100); do [ -s "$DIR/billing.port" ] && break; sleep 0.05; done
export BILLING_URL="http://127.0.0.1:$(cat "$DIR/billing.port")" BILLING_TOKEN=demo-billing-token

echo "== rein validate examples/refund"
"$REIN" validate examples/refund
echo
export REIN_APPROVAL_KEYS=${REIN_APPROVAL_KEYS:-demo=000102030405060708090a0b0c0d0e0f}
echo "== rein run examples/refund --input @examples/refund/ticket.json --as sam --role support --tenant acme"
echo "   (provider: ${REIN_PROVIDER:-replay})"
out=$("$REIN" run examples/refund --input @examples/refund/ticket.json --as sam --role support --tenant acme) || true
echo "$out"
run=$(printf '%s' "$out" | sed 's/^{"run":"\([^"]*\)".*/\1/')
if printf '%s' "$out" | grep -q '"status":"waiting"'; then
	# the refund tool is risk: high: the run halted for a human decision
	echo
	echo "== rein approvals   (the refund waits for a human from finance: risk high)"
	"$REIN" approvals
	id=$("$REIN" approvals --json | sed -n 's/.*"id": *"\(apr-[^"]*\)".*/\1/p' | head -n 1)
	echo
	echo "== rein approve $id --as rita --role finance; rein resume $run"
	"$REIN" approve "$id" --as rita --role finance --reason "order A-1001 checked: broken mug"
	out=$("$REIN" resume "$run") || true
	echo "$out"
fi
echo
echo "== what happened (rein events $run, abridged)"
"$REIN" events "$run" | python3 -c '
import json, sys
for l in sys.stdin:
    e = json.loads(l); d = e["data"]; t = e["type"]
    if t == "model.call":
        extra = "%s %s: %d in / %d out tokens, $%.6f" % (d["provider"], d.get("model"), d["usage"]["input"], d["usage"]["output"], d.get("cost_usd") or 0)
    elif t == "tool.intent":
        extra = "%s %s key=%s" % (d["tool"], json.dumps(d["args"]), d["key"])
    elif t in ("step.completed", "tool.result"):
        extra = json.dumps(d.get("out"))[:90]
    elif t == "run.ended":
        extra = d["status"] + " " + json.dumps(d.get("output"))
    else:
        extra = ""
    print("%3d %-15s %-12s %s" % (e["seq"], t, e["step"] or "", extra))'
echo
echo "== the same ticket for another tenant: rein run ... --as sam --tenant globex"
out2=$("$REIN" run examples/refund --input @examples/refund/ticket.json --as sam --role support --tenant globex) || true
echo "$out2"
run2=$(printf '%s' "$out2" | sed 's/^{"run":"\([^"]*\)".*/\1/')
"$REIN" events "$run2" | python3 -c '
import json, sys
for l in sys.stdin:
    e = json.loads(l)
    if e["type"] == "policy.decision":
        d = e["data"]
        print("policy.decision %s: %s by %s: %s" % (d["tool"], d["decision"], ", ".join(d["rules"]) or "the default", "; ".join(d["reasons"])))'
echo
echo "== rein audit export $run --format md   (what a reviewer reads)"
"$REIN" audit export "$run" --format md
echo
echo "== rein audit verify"
"$REIN" audit verify
echo
echo "== the hello example"
"$REIN" run examples/hello --input '{"name": "ada", "amount": 7}'
echo
echo "demo store: $REIN_DB"
