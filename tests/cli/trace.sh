# rein trace: the span tree and the OTLP spans of recorded runs (an llm step
# with a retried call, an agent with a tool call and a refusal, a failure
# after retries and a route to the next tier, an approval, a wait) against
# tests/trace/expected/NAME.tree and NAME.spans (times and ids masked).
# REIN_UPDATE_EXPECTED=1 rewrites the expected files instead.
. "$ROOT/tests/cli/lib.sh"
. "$ROOT/tests/cli/toollib.sh"
EXP="$ROOT/tests/trace/expected"
REC="$ROOT/tests/trace/replay"
export REIN_PROVIDER=replay
mask() { sed -E 's/^trace [0-9a-f]{32}  run run_[0-9a-z]+$/trace TRACE  run RUN/; s/\+?[0-9]+ms/&/g; s/(^|[ +])[0-9]+ms/\1Nms/g; s/delay_ms=[0-9]+/delay_ms=N/g; s/id=(apv_|apr-)[0-9a-z]+/id=ID/g'; }
check() { # NAME RUN
	"$REIN" trace "$2" >tree.raw || fail "rein trace $1"
	mask <tree.raw >"$1.tree"
	"$REIN" trace --json "$2" >"$1.json" || fail "rein trace --json $1"
	python3 "$ROOT/tests/trace/spans.py" <"$1.json" >"$1.spans" || fail "spans of $1"
	if [ "${REIN_UPDATE_EXPECTED:-}" = 1 ]; then
		cp "$1.tree" "$1.spans" "$EXP/"
		return
	fi
	diff -u "$EXP/$1.tree" "$1.tree" || fail "$1: the tree differs"
	diff -u "$EXP/$1.spans" "$1.spans" || fail "$1: the spans differ"
}

REIN_REPLAY_FILE="$REC/llm.json" expect_exit 0 "$REIN" run "$WF/llm" --input '{"text": "money back"}'
check llm "$(json_get "$OUT" 'j["run"]')"

REIN_REPLAY_FILE="$REC/agent.json" expect_exit 0 "$REIN" run "$WF/agent" --input '{"ticket": "refund A1"}'
check agent "$(json_get "$OUT" 'j["run"]')"

REIN_REPLAY_FILE="$REC/failed.json" expect_exit 3 "$REIN" run "$WF/llm" --input '{"text": "anything"}'
run=$(json_get "$OUT" 'j["run"]')
check failed "$run"
grep -q "FAILED" failed.tree || fail "the failing span is not marked"

# an approval: the wait is a child span of the step, with the approver and
# the policy decision that gated the call (rein.policy.rule)
export REIN_APPROVAL_KEYS=k1=00112233445566778899aabbccddeeff
expect_exit 4 "$REIN" run "$WF/apprpay" --input '{"amount": 80}' --as alice --tenant t1
arun=$(json_get "$OUT" 'j["run"]')
aid=$("$REIN" approvals --json --run "$arun" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
expect_exit 0 "$REIN" approve "$aid" --as bob --reason "checked"
expect_exit 0 "$REIN" resume "$arun"
check approval "$arun"
grep -q 'rein.approval.approver = \["bob"\]' approval.spans || fail "no approver on the approval span"
grep -q 'rein.policy.rule = "allow-pay"' approval.spans || fail "no rein.policy.rule on the tool span"

# a run's spans are a function of its events: drawn twice, the same ids
"$REIN" trace --json "$run" >again.json
cmp -s failed.json again.json || fail "two exports of one run differ"

# a wait: the timer's span, left open while the run waits
expect_exit 4 "$REIN" run "$WF/timer" --max-wait 0
run=$(json_get "$OUT" 'j["run"]')
"$REIN" trace "$run" | mask >wait.tree
grep -q '^   └─ wait pause  Nms  (open)$' wait.tree || { cat wait.tree; fail "no open wait span"; }

# usage errors
expect_exit 2 "$REIN" trace
expect_exit 2 "$REIN" trace run_nosuch
expect_exit 2 "$REIN" trace "$run" --since 1h
expect_exit 0 "$REIN" trace --help
ok "trace"
