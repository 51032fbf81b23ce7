# Issue 10 item 3: one bad run never stops the others. A CR/LF in an argument
# used in a header template fails that attempt permanently with a clear
# reason (its on_fail runs), while `rein resume --all` finishes the other run
# and exits 0; nothing was sent for the bad one.
. "$ROOT/tests/cli/lib.sh"
. "$ROOT/tests/cli/toollib.sh"

mkdir -p wf/tools
cp "$WF/http/tools/echo.yaml" wf/tools/echo.yaml
cat >wf/workflow.yaml <<'Y'
rein: 1
name: crlf
input: { type: object, required: [mode] }
tools:
  echo: tools/echo.yaml
steps:
  pause: { wait: 1, next: call }
  call:
    tool: echo
    args: { mode: "${input.mode}", amount: 5 }
    on_fail: refused
    next: done
  done: { end: succeeded }
  refused: { end: escalated, reason: "${why}" }
Y
expect_exit 4 "$REIN" run wf --input '{"mode": "ok\r\nX-Injected: 1"}' --max-wait 0
bad=$(json_get "$OUT" 'j["run"]')
expect_exit 4 "$REIN" run wf --input '{"mode": "ok"}' --max-wait 0
good=$(json_get "$OUT" 'j["run"]')
reset_stats
# poll until both timers are due and both runs have ended
done_both() {
	"$REIN" resume --all >resume.out 2>resume.err || { cat resume.err >&2; fail "resume --all exited $?"; }
	"$REIN" show "$bad" --json | grep -q '"escalated"' && "$REIN" show "$good" --json | grep -q '"succeeded"'
}
wait_until 20 "both runs ended" done_both
reason=$(json_get "$("$REIN" show "$bad" --json)" 'j["reason"]')
echo "$reason" | grep -q "header X-Mode" && echo "$reason" | grep -qi "CR" ||
	fail "reason does not say why: $reason"
events_of "$bad" tool.attempt | grep -q '"transient": false' || fail "attempt not permanent"
[ "$(events_of "$bad" tool.attempt | wc -l)" = 1 ] || fail "the bad attempt was retried"
[ "$(json_get "$(stats)" 'j["requests"]')" = 1 ] || fail "server saw: $(stats)"
expect_exit 0 "$REIN" resume --all
expect_exit 0 "$REIN" audit verify
# the intent records the tool's effect (docs/tools.md)
events_of "$good" tool.intent | grep -q '"effect": "write"' || fail "no effect: $(events_of "$good" tool.intent)"
ok "a CR/LF in a header fails its own run only"
