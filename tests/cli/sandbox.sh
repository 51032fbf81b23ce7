# Scripts that loop, allocate without bound or try to escape fail their own
# step (here caught by on_fail → escalated with the error), nothing escapes.
. "$ROOT/tests/cli/lib.sh"
rm -f /tmp/rein-escaped
expect_exit 3 "$REIN" run "$WF/bomb" --input '{"kind":"loop"}'
json_get "$OUT" 'j["reason"]' | grep -q "instruction budget" || fail "loop: $OUT"
expect_exit 3 "$REIN" run "$WF/bomb" --input '{"kind":"memory"}'
json_get "$OUT" 'j["reason"]' | grep -q "memory" || fail "memory: $OUT"
expect_exit 3 "$REIN" run "$WF/bomb" --input '{"kind":"escape"}'
[ -e /tmp/rein-escaped ] && fail "os.execute ran"
expect_exit 0 "$REIN" run "$WF/bomb" --input '{"kind":"none"}'
[ "$(json_get "$OUT" 'j["output"]')" = calm ] || fail "$OUT"
ok "sandbox"
