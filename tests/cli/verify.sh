# verify steps: the deterministic rules (every failed one named in the
# reason, the run escalated), then the model check against min_confidence,
# through the runner and the replay provider; the log's chains verify.
. "$ROOT/tests/cli/lib.sh"
export VERIFY_REC="$PWD/rec.json"
rec() { printf '[{"text": "", "output": {"confidence": %s, "rationale": "%s"}}]' "$1" "$2" >rec.json; }

rec 0.9 "plausible"
expect_exit 0 "$REIN" run "$WF/verify" --input '{"amount": 5, "currency": "EUR"}'
[ "$(json_get "$OUT" 'j["output"]["amount"]')" = 5 ] || fail "pass-through: $OUT"
run=$(json_get "$OUT" 'j["run"]')
"$REIN" events "$run" | grep -q '"model.call"' || fail "no model.call in the log"
ok "rules hold, the model is confident: the output passes through"

rec 0.3 "the amount looks odd"
expect_exit 3 "$REIN" run "$WF/verify" --input '{"amount": 5, "currency": "EUR"}'
[ "$(json_get "$OUT" 'j["status"]')" = escalated ] || fail "$OUT"
json_get "$OUT" 'j["reason"]' | grep -q "confidence 0.30 is under min_confidence 0.85: the amount looks odd" ||
	fail "reason: $OUT"
ok "under min_confidence: escalated with the rationale"

expect_exit 3 "$REIN" run "$WF/verify" --input '{"amount": -1, "currency": "USD"}'
reason=$(json_get "$OUT" 'j["reason"]')
[ "$reason" = "step 'check' failed: verify: rule 'positive' failed: the amount must be positive; rule 2 failed: \`out.currency == \"EUR\"\` is not true" ] ||
	fail "reason: $reason"
run=$(json_get "$OUT" 'j["run"]')
"$REIN" events "$run" | grep -q '"model.intent"' && fail "a model call after a failed rule"
expect_exit 0 "$REIN" audit verify "$run"
ok "two rules fail: both named, no model call"
