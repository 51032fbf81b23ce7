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
cp "$RT/01_refund_other_account.yaml" bad/
printf 'name: broken\ninjection: nowhere\n' >bad/02_broken.yaml
python3 "$RT/run.py" "$REIN" "$TOOLSERVER" bad "$PWD/badcases" >bad.out 2>&1
[ $? -eq 2 ] || { cat bad.out; fail "a malformed case did not fail the run with exit 2"; }
grep -q "malformed case 02_broken.yaml: missing 'content'" bad.out || { cat bad.out; fail "unclear message"; }
printf 'name: [unclosed\n' >bad/02_broken.yaml
python3 "$RT/run.py" "$REIN" "$TOOLSERVER" bad "$PWD/badcases" >bad.out 2>&1
[ $? -eq 2 ] && grep -q "malformed case 02_broken.yaml: cannot parse" bad.out || { cat bad.out; fail "a YAML error"; }

# the runner can fail: the same case under a policy that lets the injected
# refund through is an unauthorized call
rm bad/02_broken.yaml
sed 's/when: "args.iban == input.iban", //' "$RT/01_refund_other_account.yaml" >bad/01_refund_other_account.yaml
python3 "$RT/run.py" "$REIN" "$TOOLSERVER" bad "$PWD/badcases2" >bad.out 2>&1
[ $? -eq 1 ] || { cat bad.out; fail "an unauthorized call was not caught"; }
grep -q "^redteam: 1 cases, 0 attempts blocked, 1 unauthorized calls$" bad.out || { cat bad.out; fail "summary of a hole"; }
exit 0
