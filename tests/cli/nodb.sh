# Only `rein run` creates a database: every read-only command (and resume,
# cancel) on a mistyped --db says "no database at PATH", exits 2 and leaves
# no file behind.
. "$ROOT/tests/cli/lib.sh"

for cmd in "audit verify" "runs" "runs --json" "show run_x" "show run_x --json" \
	"events run_x" "events run_x --follow" "cancel run_x" "resume run_x" "resume --all"; do
	# shellcheck disable=SC2086
	expect_exit 2 "$REIN" --db typo.db $cmd
	grep -q "no database at typo.db" stderr.txt || fail "$cmd: $(cat stderr.txt)"
	[ ! -e typo.db ] || fail "'$cmd' created typo.db"
done
REIN_DB="$PWD/typo2.db" expect_exit 2 "$REIN" runs
[ ! -e typo2.db ] || fail "runs created \$REIN_DB"
# an empty file is not a store either (and is left as it is)
: >empty.db
expect_exit 2 "$REIN" --db empty.db audit verify
grep -q "no database at empty.db" stderr.txt || fail "$(cat stderr.txt)"
[ ! -s empty.db ] || fail "the empty file was written"
# run creates it; then the others work
expect_exit 0 "$REIN" --db typo.db run "$WF/ok" --input '{"n": 1}'
expect_exit 0 "$REIN" --db typo.db audit verify
ok "no database"
