# Issue 10 item 25: messages say what is wrong in a user's words, never the
# implementation's (SQL text, jansson flags, a doubled "::").
. "$ROOT/tests/cli/lib.sh"
no_internals() {
	grep -q 'PRAGMA\|JSON_ALLOW_NUL\|maximum parsing depth\|::' stderr.txt && fail "internals in: $(cat stderr.txt)"
	return 0
}
# a file that is not a database
echo "this is not a database, just some text of some length" >notdb.db
expect_exit 1 "$REIN" runs --db notdb.db
grep -q "notdb.db is not a rein database" stderr.txt || fail "$(cat stderr.txt)"
no_internals
expect_exit 1 "$REIN" run "$WF/ok" --db notdb.db
grep -q "notdb.db is not a rein database" stderr.txt || fail "$(cat stderr.txt)"
no_internals
# input that is not JSON: FILE:LINE:COL and the reason, for validate and run alike
python3 -c "print('[' * 3000 + ']' * 3000)" >deep.json
for cmd in validate run; do
	expect_exit 2 "$REIN" $cmd "$WF/ok" --input @deep.json
	grep -q "^deep.json:1:[0-9]*: input is not JSON: nested too deeply" stderr.txt || fail "$cmd: $(cat stderr.txt)"
	no_internals
done
printf '{"a": ' >cut.json
expect_exit 2 "$REIN" validate "$WF/ok" --input @cut.json
grep -q "^cut.json:[0-9]*:[0-9]*: input is not JSON: " stderr.txt || fail "$(cat stderr.txt)"
no_internals
expect_exit 2 "$REIN" run "$WF/ok" --input @missing.json
grep -q "cannot read the input: missing.json" stderr.txt || fail "$(cat stderr.txt)"
grep -q "not JSON" stderr.txt && fail "a missing file is not 'not JSON': $(cat stderr.txt)"
ok "messages in a user's words"
