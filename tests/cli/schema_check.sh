# `rein schema check`: one line per document, exit 1 when any is invalid.
. "$ROOT/tests/cli/lib.sh"
cat > s.json <<'J'
{"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}}}}
J
printf '{"id": 1}\n{"tags": ["a", 2]}\n' > docs.jsonl
expect_exit 1 "$REIN" schema check s.json docs.jsonl
[ "$(printf '%s\n' "$OUT" | head -1)" = ok ] || fail "$OUT"
printf '%s' "$OUT" | grep -q '/tags/1' || fail "no pointer for the bad item: $OUT"
printf '%s' "$OUT" | grep -q 'required' || fail "no required error: $OUT"
printf '{"id": 2}\n' | { expect_exit 0 "$REIN" schema check s.json -; [ "$OUT" = ok ] || fail "$OUT"; }
printf '{"type": "objekt"}' > bad.json
expect_exit 2 "$REIN" schema check bad.json docs.jsonl
expect_exit 2 "$REIN" schema check --draft 9 s.json docs.jsonl
# draft-07 from $schema, and a remote ref through --map-uri
mkdir -p remote
printf '{"type": "integer"}' > remote/int.json
printf '{"$schema": "http://json-schema.org/draft-07/schema#", "items": {"$ref": "http://example.test/int.json"}}' > r.json
printf '[1, 2]\n[1, "x"]\n' > arr.jsonl
expect_exit 1 "$REIN" schema check --map-uri http://example.test/=remote r.json arr.jsonl
[ "$(printf '%s\n' "$OUT" | head -1)" = ok ] || fail "$OUT"
printf '%s' "$OUT" | grep -q '/1' || fail "$OUT"
ok "schema check"
