#!/usr/bin/env python3
"""Reads `rein trace --json` (OTLP/JSON) on stdin and prints the spans in a
stable form for comparison with tests/trace/expected/*.spans: one span per
line (its parent's name, kind, status, attributes), its events below. Values
that differ between runs (ids, times, versions, idempotency keys, delays)
are masked; the ids are checked here instead: 32/16 hex digits, parents
resolved within the trace."""
import json, re, sys

req = json.load(sys.stdin)
spans = [s for rs in req["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]]
by_id = {s["spanId"]: s for s in spans}
assert len(by_id) == len(spans), "duplicate span ids"
MASK = {"rein.run.id", "rein.workflow.version", "rein.tool.idempotency_key", "rein.wait.due_at",
        "server.port", "rein.approval.id"}
def val(v):
    (k, x), = v.items()
    if k == "arrayValue":
        return [val(y) for y in x.get("values", [])]
    return x
for s in spans:
    assert re.fullmatch(r"[0-9a-f]{32}", s["traceId"]) and re.fullmatch(r"[0-9a-f]{16}", s["spanId"])
    assert int(s["endTimeUnixNano"]) >= int(s["startTimeUnixNano"])
    parent = by_id[s["parentSpanId"]]["name"] if "parentSpanId" in s else "-"
    attrs = {a["key"]: ("*" if a["key"] in MASK else val(a["value"])) for a in s["attributes"]}
    st = s["status"]
    print(f'{s["name"]} <- {parent} kind={s["kind"]} status={st["code"]}'
          + (f' "{st["message"]}"' if "message" in st else ""))
    for k in sorted(attrs):
        print(f"    {k} = {json.dumps(attrs[k])}")
    for e in s.get("events", []):
        ea = {a["key"]: val(a["value"]) for a in e["attributes"]}
        if "delay_ms" in ea:
            ea["delay_ms"] = "*"
        if isinstance(ea.get("id"), str) and re.match(r"(apv|apr)[-_]", ea["id"]):
            ea["id"] = "*"  # an inbox entry's or an approval's id: made per run
        print(f'  event {e["name"]} {json.dumps(ea, sort_keys=True)}')
