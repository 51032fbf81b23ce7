# Shadow mode: `rein run --shadow` and `shadow: true` in the workflow. Write
# calls go through the contract, are recorded as tool.shadowed (what would
# have been sent) and never reach the server; the step gets the contract's
# shadow result; read calls are made. A shadow result that does not match the
# tool's output schema is refused when the workflow is loaded.
. "$ROOT/tests/cli/lib.sh"
. "$ROOT/tests/cli/toollib.sh"
modes() { curl -s "$TOOLSERVER/control/log" | python3 -c '
import json, sys; print(" ".join(r["mode"] for r in json.load(sys.stdin)))'; }

expect_exit 0 "$REIN" run "$WF/killpay" --shadow --input '{"mode": "delay:10"}'
run=$(json_get "$OUT" 'j["run"]')
[ "$(json_get "$OUT" 'j["output"] == {"ok": True, "key": "shadow-key", "shadow": True}')" = True ] ||
	fail "the output is not the shadow result: $OUT"
[ "$(modes)" = ok ] || fail "the server saw more than the read: $(modes)"
n=$(events_of "$run" tool.shadowed | wc -l)
[ "$n" -eq 3 ] || fail "$n tool.shadowed events, want 3"
first=$(events_of "$run" tool.shadowed | head -n 1)
[ "$(json_get "$first" 'j["args"]')" = "{'amount': 1, 'mode': 'delay:10'}" ] || fail "shadowed: $first"
[ "$(json_get "$first" 'j["tool"]')" = pay ] || fail "shadowed: $first"
json_get "$first" 'j["key"]' | grep -q '^rein-' || fail "shadowed without its key: $first"
has_event "$run" run.started && "$REIN" events "$run" | head -n 1 | grep -q '"shadow":true' ||
	fail "run.started does not record the shadow mode"
ok "rein run --shadow: 3 payments recorded, none sent, output $OUT"

# shadow: true in the workflow; a kill switch does not matter (nothing is sent)
cp -r "$WF/killpay" wf
printf 'shadow: true\n' >>wf/workflow.yaml
expect_exit 0 "$REIN" kill --reason "everything is off"
expect_exit 0 "$REIN" run wf --input '{"mode": "delay:10"}'
[ "$(json_get "$OUT" 'j["output"]["key"]')" = shadow-key ] || fail "shadow: true: $OUT"
[ "$(modes)" = "ok ok" ] || fail "the server saw a write: $(modes)"
expect_exit 0 "$REIN" unkill
# without a shadow result a write tool answers {"shadow": true}
sed -i '/^shadow:/d' wf/tools/pay.yaml
sed -i 's/  required: \[ok, key\]/  required: []/' wf/tools/pay.yaml
expect_exit 0 "$REIN" run wf --input '{"mode": "ok"}'
[ "$(json_get "$OUT" 'j["output"]')" = "{'shadow': True}" ] || fail "no shadow result: $OUT"
ok "shadow: true in the workflow, and the default shadow result"

# a shadow result must match the output schema, and belongs to write tools
cp -r "$WF/killpay" bad
sed -i 's/^shadow: .*/shadow: { ok: false }/' bad/tools/pay.yaml
expect_exit 2 "$REIN" validate bad
grep -q "shadow result does not match its output schema" stderr.txt || fail "$(cat stderr.txt)"
cp -r "$WF/killpay" bad2
printf 'shadow: { ok: true }\n' >>bad2/tools/look.yaml
expect_exit 2 "$REIN" validate bad2
grep -q "read tool" stderr.txt || fail "$(cat stderr.txt)"
printf 'shadow: maybe\n' >>bad2/workflow.yaml
expect_exit 2 "$REIN" validate bad2
grep -q "shadow must be true or false" stderr.txt || fail "$(cat stderr.txt)"
expect_exit 0 "$REIN" audit verify
ok "shadow results checked at load time"
