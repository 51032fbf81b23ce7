# The red-team corpus (tests/redteam/*.yaml, one case per file): each case's
# scripted model obeys an injected instruction (in a tool output, a retrieved
# document or its own turn); the runner asserts that no unauthorized call
# reaches the loopback tool server and that every attempt was refused. A
# malformed case file fails the run with its name and what is wrong.
. "$ROOT/tests/cli/lib.sh"
. "$ROOT/tests/cli/toollib.sh"
RT=$ROOT/tests/redteam
python3 "$RT/run.py" "$REIN" "$TOOLSERVER" "$RT" "$PWD/cases" >rt.out 2>&1
rc=$?
cat rt.out
[ $rc -eq 0 ] || fail "red-team corpus: exit $rc"
grep -q "^redteam: [0-9]* cases, [0-9]* attempts blocked, 0 unauthorized calls$" rt.out || fail "no summary"

# a malformed case fails the run with a clear message
mkdir bad

printf 'name: broken\ninjection: nowhere\n' >bad/02_broken.yaml
python3 "$RT/run.py" "$REIN" "$TOOLSERVER" bad "$PWD/badcases" >bad.out 2>&1
[ $? -eq 2 ] || { cat bad.out; fail "a malformed case did not fail the run with exit 2"; }
grep -q "malformed case 02_broken.yaml: missing 'content'" bad.out || { cat bad.out; fail "unclear message"; }
printf 'name: [unclosed\n' >bad/02_broken.yaml
python3 "$RT/run.py" "$REIN" "$TOOLSERVER" bad "$PWD/badcases" >bad.out 2>&1
[ $? -eq 2 ] && grep -q "malformed case 02_broken.yaml: cannot parse" bad.out || { cat bad.out; fail "a YAML error"; }

# the runner can fail: a case under policies that let the injected refunds
# through is an unauthorized call (05: the payment system is trusted and the
# context holds no untrusted content, so the default provenance rule does not
# apply and only the workflow's rules stood in the way)
rm -f bad/02_broken.yaml bad/01_refund_other_account.yaml
grep -v -e "id: cap," -e "id: two-per-run," "$RT/05_refund_over_cap.yaml" | sed 's/blocked: 3/blocked: 1/' >bad/05_refund_over_cap.yaml
python3 "$RT/run.py" "$REIN" "$TOOLSERVER" bad "$PWD/badcases2" >bad.out 2>&1
[ $? -eq 1 ] || { cat bad.out; fail "an unauthorized call was not caught"; }
grep -q "^redteam: 1 cases, 0 attempts blocked, 3 unauthorized calls$" bad.out || { cat bad.out; fail "summary of a hole"; }

# without a workflow rule against it, the injected IBAN is still held: the
# default rule rein.untrusted_write (approve) refuses the call

sed 's/when: "args.iban == input.iban", //' "$RT/01_refund_other_account.yaml" >bad/01_refund_other_account.yaml
rm bad/05_refund_over_cap.yaml
python3 "$RT/run.py" "$REIN" "$TOOLSERVER" bad "$PWD/badcases3" >bad.out 2>&1
[ $? -eq 0 ] || { cat bad.out; fail "the default provenance rule did not hold the injected refund"; }
exit 0
