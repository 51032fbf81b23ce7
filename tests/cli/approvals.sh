# Risk tiers and approvals (docs/approvals.md). A payment of risk medium
# parks its run (waiting, reason approval); `rein approvals` lists it; tokens
# that are forged, expired, signed by an unknown key, replayed, self-approved,
# or a second vote by the same person on a two-person rule, or an edit that
# breaks the schema or a policy, are refused and recorded (the run keeps
# waiting); a run waiting for approval survives kill -9; `rein approve` from
# another process; `rein resume` then sends the approved call exactly once
# (counted at the loopback tool server) with exactly the approved (edited)
# arguments; a denial fails the step; the SLA's on_timeout escalate, deny
# and halt; a high-risk call halts with approval.alert.
. "$ROOT/tests/cli/lib.sh"
. "$ROOT/tests/cli/toollib.sh"
W="$WF/apprpay"
K1=k1=00112233445566778899aabbccddeeff
K2=k2=ffeeddccbbaa99887766554433221100
unset REIN_APPROVAL_KEYS REIN_APPROVAL_KEYS_FILE
effects() { stats | python3 -c 'import json,sys; print(json.load(sys.stdin)["effects_total"])'; }
# pending RUN: the pending approval of RUN, as JSON (empty when none)
pending() { "$REIN" approvals --json --run "$1" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(json.dumps(j[0]) if j else "")'; }
refusals() { events_of "$1" approval.refused | wc -l; }
last_refusal() { events_of "$1" approval.refused | tail -n 1; }
run_id() { json_get "$1" 'j["run"]'; }
status_of() { "$REIN" show "$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])'; }
# refused RUN TEXT: after a resume, one more approval.refused whose reason holds TEXT
refused() {
	_n=$(refusals "$1")
	expect_exit 4 "$REIN" resume "$1"
	[ "$(refusals "$1")" -eq $((_n + 1)) ] || fail "no refusal recorded for '$2' in $1"
	last_refusal "$1" | grep -q "$2" || fail "refusal is not '$2': $(last_refusal "$1")"
	[ "$(status_of "$1")" = waiting ] || fail "$1 does not wait after a refused token"
}

# 1. the run parks: waiting, reason approval, nothing sent
expect_exit 4 "$REIN" run "$W" --input '{"amount": 80}' --as alice --tenant t1
R1=$(run_id "$OUT")
json_get "$OUT" 'j["reason"]' | grep -q "^approval: apr-" || fail "reason: $OUT"
P=$(pending "$R1")
[ -n "$P" ] || fail "rein approvals does not list $R1"
ID=$(json_get "$P" 'j["id"]')
[ "$(json_get "$P" 'j["tool"]')/$(json_get "$P" 'j["args"]["amount"]')/$(json_get "$P" 'j["risk"]')" = pay/80/medium ] || fail "item: $P"
expect_exit 0 "$REIN" approvals # the table a human reads
echo "$OUT" | grep -q "^$ID  *$R1  *" || fail "the table does not list $ID: $OUT"
echo "$OUT" | grep -q '^    pay {"amount":80,' || fail "the table does not show the action: $OUT"
echo "$OUT" | grep -q "requested by alice of t1" || fail "the table does not say who asked: $OUT"
[ "$(json_get "$P" 'j["need"]["count"]')" = 1 ] && [ "$(json_get "$P" 'j["sla_left_s"] > 3000')" = True ] || fail "need/SLA: $P"
[ "$(json_get "$P" '"route" in j["evidence"]["steps"]')" = True ] || fail "evidence: $P"
expect_exit 0 "$REIN" approvals --json
[ "$(json_get "$OUT" 'len(j)')" = 1 ] || fail "approvals --json: $OUT"
[ "$(effects)" -eq 0 ] || fail "a call went out before any approval"
ok "parked for approval $ID"

# 2. no key configured: a clear message
expect_exit 1 "$REIN" approve "$ID" --as bob
grep -q "no approval key is configured" stderr.txt || fail "no-key message: $(cat stderr.txt)"
expect_exit 2 "$REIN" approve "$ID"
expect_exit 2 "$REIN" deny "$ID" --as bob
export REIN_APPROVAL_KEYS="$K1"

# 3. refused tokens, each recorded, the run waits on
expect_exit 0 "$REIN" approve "$ID" --as alice
refused "$R1" "self-approval"
expect_exit 0 "$REIN" approve "$ID" --as bob --print
TOK=$OUT
FORGED=$(printf '%s' "$TOK" | python3 -c 'import sys; t=sys.stdin.read(); print(t[:-3] + ("A" if t[-3] != "A" else "B") + t[-2:])')
expect_exit 0 "$REIN" approve --token "$FORGED"
refused "$R1" "bad signature"
OTHER=$(REIN_APPROVAL_KEYS="$K2" "$REIN" approve "$ID" --as bob --print)
expect_exit 0 "$REIN" approve --token "$OTHER"
refused "$R1" "unknown key id 'k2'"
SHORT=$("$REIN" approve "$ID" --as bob --ttl 1 --print)
EXP=$(json_get "$(printf '%s' "$SHORT" | cut -d. -f3 | python3 -c 'import sys,base64; s=sys.stdin.read().strip(); print(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)).decode())')" 'j["exp"]')
wait_until 10 "the short token to expire" python3 -c "import time,sys; sys.exit(0 if time.time()*1000 > $EXP + 50 else 1)"
expect_exit 0 "$REIN" approve --token "$SHORT"
refused "$R1" "expired"
expect_exit 0 "$REIN" approve "$ID" --as bob --args '{"mode": "ok"}'
refused "$R1" "edited arguments do not match the input schema"
expect_exit 0 "$REIN" approve "$ID" --as bob --args '{"mode": "ok", "amount": 600}'
refused "$R1" "denied by policy (rule cap)"
[ "$(effects)" -eq 0 ] || fail "a refused token let a call out"
ok "self-approval, forged, unknown key, expired, bad edits: refused and recorded"

# 4. a waiting run survives kill -9; approved from another process, with an
# edit (a smaller payment); the call goes out once, with the edited arguments
"$REIN" run "$W" --input '{"amount": 90}' --as alice --tenant t1 --max-wait 7200 >held.out 2>&1 &
HP=$!
wait_until 30 "the second run to wait for approval" sh -c "[ \$('$REIN' approvals --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))') -ge 2 ]"
R2=$("$REIN" approvals --json | python3 -c "import json,sys; print([x['run'] for x in json.load(sys.stdin) if x['run'] != '$R1'][0])")
kill -0 $HP || fail "the worker holding run 2 is gone before the kill: $(cat held.out)"
kill -9 $HP
wait $HP 2>/dev/null
ID2=$(json_get "$(pending "$R2")" 'j["id"]')
expect_exit 0 "$REIN" approve "$ID2" --as bob --reason "checked the ticket" --args '{"mode": "ok", "amount": 45}'
expect_exit 0 "$REIN" resume "$R2"
[ "$(json_get "$OUT" 'j["status"]')" = succeeded ] || fail "resume after approval: $OUT"
[ "$(json_get "$OUT" 'j["output"]["args"]["amount"]')" = 45 ] || fail "the edited arguments were not sent: $OUT"
[ "$(effects)" -eq 1 ] || fail "$(effects) calls, want 1"
events_of "$R2" approval.granted | grep -q '"by": "bob"' || fail "no approval.granted by bob"
expect_exit 0 "$REIN" resume "$R2"
[ "$(effects)" -eq 1 ] || fail "a second resume sent the call again"
ok "kill -9 while waiting, approved from another process, sent once with the edit"

# 5. a single-use token: the token that approved is refused on replay (same
# run's 2-person rule below); the first run approved by bob
expect_exit 0 "$REIN" approve --token "$TOK"
expect_exit 0 "$REIN" resume "$R1"
[ "$(json_get "$OUT" 'j["status"]')" = succeeded ] && [ "$(effects)" -eq 2 ] || fail "run 1: $OUT"
ok "run 1 approved by bob's first token"

# 6. two finance approvers over 100: a role is needed, the same person twice
# and a replayed token are refused; two distinct ones let it through
expect_exit 4 "$REIN" run "$W" --input '{"amount": 200}' --as alice --tenant t1
R3=$(run_id "$OUT")
P3=$(pending "$R3")
ID3=$(json_get "$P3" 'j["id"]')
[ "$(json_get "$P3" 'j["need"]["count"]')/$(json_get "$P3" 'j["rules"]')" = "2/['two-person']" ] || fail "two-person item: $P3"
expect_exit 0 "$REIN" approve "$ID3" --as bob
refused "$R3" "holds none of the roles"
T3=$("$REIN" approve "$ID3" --as bob --role finance --print)
expect_exit 0 "$REIN" approve --token "$T3"
expect_exit 4 "$REIN" resume "$R3"
[ "$(json_get "$(pending "$R3")" 'j["have"]')" = 1 ] || fail "have after one vote: $(pending "$R3")"
expect_exit 0 "$REIN" approve --token "$T3"
refused "$R3" "used before"
expect_exit 0 "$REIN" approve "$ID3" --as bob --role finance
refused "$R3" "approved this call already"
[ "$(effects)" -eq 2 ] || fail "one vote of two let the call out"
expect_exit 0 "$REIN" approve "$ID3" --as carol --role finance
expect_exit 0 "$REIN" resume "$R3"
[ "$(json_get "$OUT" 'j["status"]')" = succeeded ] && [ "$(effects)" -eq 3 ] || fail "two approvers: $OUT"
ok "two-person rule: role, same person, replay refused; bob + carol approve"

# 7. a denial fails the step (no on_fail: the run fails), nothing sent
expect_exit 4 "$REIN" run "$W" --input '{"amount": 70}' --as alice --tenant t1
R4=$(run_id "$OUT")
ID4=$(json_get "$(pending "$R4")" 'j["id"]')
expect_exit 0 "$REIN" deny "$ID4" --as bob --reason "duplicate refund"
expect_exit 1 "$REIN" resume "$R4"
json_get "$OUT" 'j["reason"]' | grep -q "denied by an approver (bob): duplicate refund" || fail "denial: $OUT"
[ "$(effects)" -eq 3 ] || fail "a denied call went out"
expect_exit 1 "$REIN" deny "$ID4" --as bob --reason again # nothing pending any more
ok "denied"

# 8. the SLA runs out: escalate, deny, halt
expect_exit 3 "$REIN" run "$W" --input '{"amount": 5, "via": "esc"}' --as alice --max-wait 30
json_get "$OUT" 'j["reason"]' | grep -q "expired: no decision within its SLA" || fail "escalate: $OUT"
expect_exit 1 "$REIN" run "$W" --input '{"amount": 5, "via": "deny"}' --as alice --max-wait 30
json_get "$OUT" 'j["reason"]' | grep -q "expired" || fail "deny: $OUT"
expect_exit 4 "$REIN" run "$W" --input '{"amount": 5, "via": "halt"}' --as alice --max-wait 30
R5=$(run_id "$OUT")
has_event "$R5" approval.expired || fail "halt: no approval.expired"
[ "$(json_get "$(pending "$R5")" '"sla_due_at" in j')" = False ] || fail "halted item keeps a timer"
expect_exit 0 "$REIN" approve "$(json_get "$(pending "$R5")" 'j["id"]')" --as bob
expect_exit 0 "$REIN" resume "$R5"
[ "$(effects)" -eq 4 ] || fail "the halted call, approved, was not sent once"
ok "SLA: escalate, deny, halt (then approved)"

# 9. high risk: halts with an alert, no timer; the alert is POSTed to the
# webhook after its commit, retried (the first answer is a 500), and a webhook
# that always fails leaves the run waiting as it should
posts() { curl -s "$TOOLSERVER/control/log" | python3 -c "
import json, sys; print(sum(1 for r in json.load(sys.stdin) if r['mode'] == '$1'))"; }
REIN_ALERT_WEBHOOK="$TOOLSERVER/tool/seq:status:500,ok" expect_exit 4 "$REIN" run "$W" --input '{"amount": 5, "via": "high"}' --as alice
R6=$(run_id "$OUT")
has_event "$R6" approval.alert || fail "no approval.alert"
[ "$(json_get "$(pending "$R6")" 'j["risk"] + str("sla_due_at" in j)')" = highFalse ] || fail "high item"
[ "$(posts seq:status:500,ok)" -eq 2 ] || fail "$(posts seq:status:500,ok) webhook posts, want 2 (one retry)"
REIN_ALERT_WEBHOOK="$TOOLSERVER/tool/status:503" expect_exit 4 "$REIN" run "$W" --input '{"amount": 4, "via": "high"}' --as alice
grep -q "the alert webhook failed 4 times" stderr.txt || fail "no word of the failing webhook: $(cat stderr.txt)"
[ "$(posts status:503)" -eq 4 ] || fail "$(posts status:503) posts to the failing webhook, want 4"
[ "$(status_of "$(run_id "$OUT")")" = waiting ] || fail "a failing webhook changed the run"
# the workflow's alerts.webhook, instead of the environment's
cp -r "$W" wfalert
printf 'alerts: { webhook: "%s/tool/status:202" }\n' "$TOOLSERVER" >>wfalert/workflow.yaml
expect_exit 0 "$REIN" validate wfalert
REIN_ALERT_WEBHOOK="$TOOLSERVER/tool/status:404" expect_exit 4 "$REIN" run wfalert --input '{"amount": 3, "via": "high"}' --as alice
[ "$(posts status:202)/$(posts status:404)" = 1/0 ] || fail "alerts.webhook: $(posts status:202) posts there, $(posts status:404) to the env's"
printf 'alerts: { webhook: ftp://x }\n' >>wfalert/workflow.yaml
expect_exit 2 "$REIN" validate wfalert
ok "high risk halts with an alert, posted to the webhook (retried)"

# 10. approved from another process while a worker holds the run: the worker
# (which looks at the inbox every second) sends the call and finishes
"$REIN" run "$W" --input '{"amount": 6}' --as alice --max-wait 7200 >live.out 2>&1 &
LP=$!
wait_until 30 "the live run to wait for approval" sh -c "[ \$('$REIN' approvals --json | python3 -c 'import json,sys; print(len([x for x in json.load(sys.stdin) if x[\"args\"][\"amount\"] == 6]))') -ge 1 ]"
ID7=$("$REIN" approvals --json | python3 -c 'import json,sys; print([x["id"] for x in json.load(sys.stdin) if x["args"]["amount"] == 6][0])')
kill -0 $LP || fail "the live worker exited: $(cat live.out)"
expect_exit 0 "$REIN" approve "$ID7" --as bob
wait $LP || fail "the live worker exited $?: $(cat live.out)"
[ "$(json_get "$(cat live.out)" 'j["status"]')" = succeeded ] || fail "live: $(cat live.out)"
[ "$(effects)" -eq 6 ] || fail "$(effects) effects after the live approval, want 6 (5 payments, the webhook's ok)"
ok "approved while a worker holds the run: it finished by itself"
exit 0
