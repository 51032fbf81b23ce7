# Redaction and protected payloads (docs/security.md). A run whose tool echoes
# a card number, an e-mail address and a declared secret back stores only
# placeholders: not one of those values is in the database file or its WAL
# (byte-wise), in `rein events`, `rein show` or `rein runs`, while the tool
# received, and the caller gets, the real values. Killed mid-way and resumed,
# the run ends with the same (real) output: the runner opened the sealed boxes.
# After `rein shred --tenant default` every chain still verifies, the runs are
# still shown (placeholders), and none can be resumed any more.
. "$ROOT/tests/cli/lib.sh"
. "$ROOT/tests/cli/toollib.sh"

CARD="4111 1111 1111 1111"
EMAIL="ann.lee@example.com"
ORDER="1234567812345678" # 16 digits failing Luhn: an order number, kept
input() { printf '{"card":"%s","email":"%s","order":"%s","token":"%s","mode":"%s"}' \
	"$CARD" "$EMAIL" "$ORDER" "$ECHO_TOKEN" "$1"; }
# leaks: how many times the protected values occur in the database files
leaks() { cat rein.db rein.db-wal 2>/dev/null | grep -a -c -e "4111 1111" -e "4111111111111111" \
	-e "$EMAIL" -e "$ECHO_TOKEN"; }
no_values() { # TEXT WHAT: none of the protected values in TEXT
	printf '%s' "$1" | grep -q -e "4111 1111" -e "$EMAIL" -e "$ECHO_TOKEN" && fail "$2 shows a protected value: $1"
	return 0
}

# 1. a run that finishes: the caller gets the real values, the store placeholders
expect_exit 0 "$REIN" run "$WF/redact" --input "$(input ok)"
out1=$(json_get "$OUT" 'json.dumps(j["output"], sort_keys=True)')
printf '%s' "$out1" | grep -q "card $CARD for $EMAIL, order $ORDER" || fail "real output: $OUT"
[ "$(json_get "$OUT" 'j["output"]["token"]')" = "$ECHO_TOKEN" ] || fail "real secret: $OUT"
run1=$(json_get "$OUT" 'j["run"]')
ev=$("$REIN" events "$run1")
no_values "$ev" "rein events"
printf '%s' "$ev" | grep -q '\[card:1\] for \[email:1\], order 1234567812345678' || fail "placeholders: $ev"
printf '%s' "$ev" | grep -q '"token":"\[secret:1\]"' || fail "secret placeholder: $ev"
expect_exit 0 "$REIN" show "$run1"
no_values "$OUT" "rein show"
printf '%s' "$OUT" | grep -q '\[email:1\]' || fail "show: $OUT"
expect_exit 0 "$REIN" runs --json
no_values "$OUT" "rein runs"
[ "$(leaks)" = 0 ] || fail "the database holds a protected value ($(leaks) lines)"
ok "stored and shown redacted, the caller gets the real values"

# a retry from a step copies the old run's events with their values put back
# (then sealed again, for the new run)
expect_exit 0 "$REIN" retry "$run1" --from slow
[ "$(json_get "$OUT" 'json.dumps(j["output"], sort_keys=True)')" = "$out1" ] || fail "retry: $OUT"
no_values "$("$REIN" events "$(json_get "$OUT" 'j["run"]')")" "rein events (retry)"
[ "$(leaks)" = 0 ] || fail "the retry left a protected value in the database"
ok "retry from a step of a redacting run"

# 2. the same run killed after its first tool result, during its second call
"$REIN" run "$WF/redact" --input "$(input delay:3000)" >run.out 2>run.err &
pid=$!
intents() { [ "$(events_of "$(first_run running)" tool.intent | wc -l)" -ge 2 ]; }
wait_until 30 "the run to be started" has_run running
wait_until 30 "the first result and the second call" intents
kill -0 $pid 2>/dev/null || fail "rein run ended before the kill"
kill -9 $pid
wait $pid 2>/dev/null
run2=$(first_run running)
has_event "$run2" step.completed || fail "no first result in the log"
[ "$(leaks)" = 0 ] || fail "the crashed run left a protected value in the database"
expect_exit 0 "$REIN" resume "$run2"
[ "$(json_get "$OUT" 'j["status"]')" = succeeded ] || fail "$OUT"
out2=$(json_get "$OUT" 'json.dumps(j["output"], sort_keys=True)')
[ "$out2" = "$out1" ] || fail "resumed output differs: $out2 vs $out1"
no_values "$("$REIN" events "$run2")" "rein events (resumed)"
[ "$(leaks)" = 0 ] || fail "the resumed run left a protected value in the database"
ok "killed after the tool result and resumed: the same real output"

# 3. crypto-shredding: the chains verify, the values are gone
"$REIN" run "$WF/redact" --input "$(input delay:3000)" >run3.out 2>run3.err &
pid=$!
running_call() { [ -n "$(first_run running)" ] && has_event "$(first_run running)" step.completed; }
wait_until 30 "a third run with its first result" running_call
kill -9 $pid
wait $pid 2>/dev/null
run3=$(first_run running)
[ -f rein.db.keys/default.key ] || fail "no key file for the default tenant"
sum_before=$(cat rein.db rein.db-wal 2>/dev/null | sha256sum)
expect_exit 0 "$REIN" shred --tenant default
[ "$(json_get "$OUT" 'j["shredded"]')" = True ] || fail "$OUT"
[ ! -e rein.db.keys/default.key ] || fail "the key file is still there"
[ "$(cat rein.db rein.db-wal 2>/dev/null | sha256sum)" = "$sum_before" ] || fail "shred changed the database"
expect_exit 0 "$REIN" audit verify
expect_exit 0 "$REIN" show "$run1"
printf '%s' "$OUT" | grep -q '\[card:1\]' || fail "show after shred: $OUT"
expect_exit 1 "$REIN" resume "$run3"
grep -q "cannot be resumed: the protected values of its events were shredded" stderr.txt ||
	fail "resume after shred: $(cat stderr.txt)"
expect_exit 1 "$REIN" resume "$run1"
grep -q "shredded" stderr.txt || fail "finished run opened after shred: $(cat stderr.txt)"
expect_exit 0 "$REIN" shred --tenant default
[ "$(json_get "$OUT" 'j["shredded"]')" = False ] || fail "second shred: $OUT"
expect_exit 2 "$REIN" shred --tenant "../etc"
expect_exit 2 "$REIN" shred
# a new run gets a new key; the old boxes stay closed
expect_exit 0 "$REIN" run "$WF/redact" --input "$(input ok)"
[ "$(json_get "$OUT" 'j["output"]["token"]')" = "$ECHO_TOKEN" ] || fail "new run: $OUT"
expect_exit 1 "$REIN" resume "$run3"
expect_exit 0 "$REIN" audit verify
[ "$(leaks)" = 0 ] || fail "a protected value in the database"
ok "shredded: chains verify, runs shown with placeholders, none resumable"

# 4. the spec: an unknown class, or not a list, is refused where it is written
mkdir -p bad
printf 'rein: 1\nname: bad\ntrace: { redact: [email, cards] }\nsteps:\n  done: { end: succeeded }\n' >bad/workflow.yaml
expect_exit 2 "$REIN" validate bad
grep -q "workflow.yaml:3:26: unknown redaction class" stderr.txt || fail "$(cat stderr.txt)"
printf 'rein: 1\nname: bad\ntrace: { redact: email }\nsteps:\n  done: { end: succeeded }\n' >bad/workflow.yaml
expect_exit 2 "$REIN" validate bad
grep -q "trace.redact must be a list" stderr.txt || fail "$(cat stderr.txt)"
ok "trace.redact is checked by rein validate"
