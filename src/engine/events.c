/*
 * The one table of event types. Every event a run's log can hold is a row
 * here: its name, the layer that decides it, whether it names a step, and its
 * payload's fields. The engine and the runner emit by row (never by a string
 * literal), rein_event_check reads a payload against its row (an event from
 * the log that does not fit is a corrupt log, said in words), and
 * docs/events.md is generated from the table (`rein event-types`), so the
 * docs cannot fall behind the code.
 *
 * Field lists are "name:T" separated by spaces, T one of s (string), i
 * (integer), n (number), b (boolean), o (object), a (array), j (any JSON
 * value, null included); a trailing '?' marks a field that may be absent or
 * null (a j field without it must be present, null or not). Fields not
 * listed are allowed (a newer writer may add one); listed ones must have
 * their type.
 */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "event_types.h"

const rein_event_def rein_event_defs[REIN_EV__COUNT] = {
	[REIN_EV_RUN_STARTED] = {"run.started", "runner", false,
				 "input:j workflow:s version:s retry_of:o? shadow:b? requester:o? "
				 "org_policies:o? deployment:o?",
				 "a run began with this input, pinned to this workflow version (retry_of: "
				 "{run, from}, a retry of that run from that step; shadow: true, no write "
				 "call of the run is sent), for this requester ({user, roles, tenant}), "
				 "under these organisation policies ({version, rules}: the ones loaded "
				 "when it started; deployment: {name, role}, the deployment that "
				 "routed it, role stable or candidate)"},
	[REIN_EV_RUN_RESUMED] = {"run.resumed", "runner", false, "owner:s previous_owner:s?",
				 "a worker took the run over from an owner that is gone (informational)"},
	[REIN_EV_RUN_ENDED] = {"run.ended", "engine", false, "status:s reason:s? output:j?",
			       "the run ended: succeeded, failed, escalated, cancelled or needs_review"},
	[REIN_EV_RUN_REVIEWED] = {"run.reviewed", "engine", true,
				  "action:s by:s? key:s result:j? reason:s?",
				  "an operator resolved a needs_review run's call (done with result, "
				  "retry with the same key, or fail with reason): the run goes on"},
	[REIN_EV_STEP_COMPLETED] = {"step.completed", "engine/runner", true,
				    "out:j attempt:i? status:i? latency_ms:i? fallback:s? signal:s? labels:o?",
				    "a step finished with this output (tool steps: the attempt that answered; "
				    "a signal wait: the id of the signal it consumed; a code step: labels, the "
				    "provenance of what its script read, {sources, readers, trusted})"},
	[REIN_EV_STEP_FAILED] = {"step.failed", "engine", true, "error:s budget:b?",
				 "a step failed; the run follows its on_fail or fails"},
	[REIN_EV_TIMER_SCHEDULED] = {"timer.scheduled", "engine", true, "due_at:i",
				     "a wait step parks the run until due_at (ms since the epoch; a signal "
				     "wait: when it times out)"},
	[REIN_EV_TIMER_FIRED] = {"timer.fired", "engine", true, "", "a wait step's timer is due"},
	[REIN_EV_INBOX_RECEIVED] = {"inbox.received", "runner", false,
				    "id:s type:s data:j? sender:s? at:i",
				    "an external event from the run's inbox (cancel, signal, approval)"},
	[REIN_EV_SIGNAL_REFUSED] = {"signal.refused", "engine", false, "id:s name:s? error:s",
				    "a signal was not taken: its data does not match its wait step's "
				    "schema, or it has no name; the run goes on waiting"},
	[REIN_EV_TOOL_INTENT] = {"tool.intent", "engine", true,
				 "tool:s key:s args:o call_id:s? effect:s? credential:s?",
				 "a proposed call passed every check; recorded before it is sent "
				 "(credential: the names of the secrets it uses, never their values)"},
	[REIN_EV_TOOL_ATTEMPT] = {"tool.attempt", "runner", true,
				  "attempt:i outcome:s error:s transient:b ambiguous:b status:i? "
				  "retry_after_ms:i? latency_ms:i?",
				  "one attempt of a tool call failed"},
	[REIN_EV_TOOL_BACKOFF] = {"tool.backoff", "engine", true, "attempt:i delay_ms:i due_at:i",
				  "the engine decided to retry a tool call after delay_ms"},
	[REIN_EV_TOOL_FALLBACK] = {"tool.fallback", "engine", true,
				   "kind:s from:s to:s? result:j? error:s?",
				   "a tool call gave up and its fallback answers instead"},
	[REIN_EV_TOOL_REFUSED] = {"tool.refused", "engine", true, "call_id:s? tool:s? error:s",
				  "an agent's proposed call was refused and the model told why"},
	[REIN_EV_TOOL_RESULT] = {"tool.result", "runner/engine", true,
				 "call_id:s? tool:s? out:j? error:s? attempt:i? latency_ms:i? status:i?",
				 "an agent's tool call answered (runner) or gave up (engine); goes back to "
				 "the model"},
	[REIN_EV_BREAKER_OPENED] = {"breaker.opened", "tools", true, "tool:s reason:s? failures:i? window_ms:i?",
				    "a tool's circuit breaker opened (informational)"},
	[REIN_EV_BREAKER_HALF_OPEN] = {"breaker.half_open", "tools", true, "tool:s",
				       "a tool's breaker lets one probe through (informational)"},
	[REIN_EV_BREAKER_CLOSED] = {"breaker.closed", "tools", true, "tool:s reason:s?",
				    "a tool's breaker closed again (informational)"},
	[REIN_EV_MODEL_INTENT] = {"model.intent", "engine", true,
				  "tier:s provider:s? model:j? request_hash:s estimate:o params:o tools_hash:s? "
				  "request:o? labels:o? reads:a?",
				  "a model call was decided; recorded before it is sent (labels: the provenance "
				  "of what its prompt read, reads: those values, \"input\" or \"steps.S\")"},
	[REIN_EV_MODEL_CALL] = {"model.call", "model", true,
				"tier:s provider:s? model:j? request_hash:s latency_ms:j? ttft_ms:j? "
				"usage:j? cost_usd:j? response:o cached:b? server:o?",
				"a model call answered"},
	[REIN_EV_MODEL_ATTEMPT] = {"model.attempt", "model", true,
				   "attempt:i outcome:s error:s transient:b status:i? retry_after_ms:i? "
				   "latency_ms:i? evidence:s?",
				   "one attempt of a model call failed"},
	[REIN_EV_MODEL_BACKOFF] = {"model.backoff", "engine", true, "attempt:i delay_ms:i due_at:i",
				   "the engine decided to retry a model call after delay_ms"},
	[REIN_EV_MODEL_ROUTE] = {"model.route", "engine", true, "from:s to:s reason:s?",
				 "the call moves to the next tier (a failure or the budget)"},
	[REIN_EV_MODEL_BREAKER] = {"model.breaker", "model", true, "state:s provider:s?",
				   "a provider's circuit breaker changed state (informational)"},
	[REIN_EV_KILL_HELD] = {"kill.held", "runner", true, "tool:s key:s switch:i reason:s",
			       "a kill switch covers this write call: it was not sent, and the run "
			       "waits (killed) until the switch is lifted"},
	[REIN_EV_KILL_LIFTED] = {"kill.lifted", "runner", true, "tool:s key:s",
				 "no switch covers the held call any more: it goes out, with the same "
				 "idempotency key"},
	[REIN_EV_TOOL_SHADOWED] = {"tool.shadowed", "runner", true, "tool:s key:s args:o result:j",
				   "shadow mode: the write call that would have been sent, not sent; "
				   "result is what the step gets (the contract's shadow result)"},
	[REIN_EV_POLICY_DECISION] = {"policy.decision", "engine", true,
				     "tool:s decision:s rules:a reasons:a policy_version:s "
				     "workflow_version:s key:s call_id:s? tenant_counts:o? provenance:o?",
				     "the policies decided a proposed call (allow, deny or approve) by these "
				     "rules for these reasons; policy_version: the organisation policies' "
				     "content hash (none: none loaded), workflow_version: the workflow's "
				     "(its own policies); tenant_counts: {rule id: n}, the calls of the "
				     "tenant's runs each per-tenant limit counted (from the store); "
				     "provenance: the labels it used ({agent, context, "
				     "args: {NAME: {sources, readers, trusted}}})"},
	[REIN_EV_APPROVAL_REQUESTED] = {"approval.requested", "engine", true,
					"id:s key:s tool:s args:o action_hash:s policy_version:s risk:s "
					"rules:a need:o requester:j sla_due_at:i? on_timeout:s? evidence:j?",
					"a proposed call needs a human approval (its policy decision is "
					"approve, or its tool's risk is medium or high): the run waits "
					"(docs/approvals.md); action_hash: SHA-256 of the tool and its "
					"canonical arguments; need: {count, roles}"},
	[REIN_EV_APPROVAL_ALERT] = {"approval.alert", "engine", true, "id:s webhook:s?",
				    "a high-risk call halted the run: an alert for the operators (the "
				    "runner posts it to the configured webhook)"},
	[REIN_EV_APPROVAL_GRANTED] = {"approval.granted", "engine", true,
				      "id:s by:s roles:a reason:s? args:o? nonce:s? inbox:s?",
				      "an approver's token passed every check (one vote; args: the "
				      "approver's edit); with enough votes the call proceeds"},
	[REIN_EV_APPROVAL_DENIED] = {"approval.denied", "engine", true, "id:s by:s reason:s inbox:s?",
				     "an approver (or the SLA's on_timeout: deny) denied the call: a tool "
				     "step fails, an agent is told"},
	[REIN_EV_APPROVAL_EXPIRED] = {"approval.expired", "engine", true, "id:s on_timeout:s",
				      "no decision within the SLA: on_timeout escalates the run, denies "
				      "the call, or halts (waits with no timer)"},
	[REIN_EV_APPROVAL_REFUSED] = {"approval.refused", "engine", false,
				      "id:s by:s? reason:s inbox:s?",
				      "an approval was refused (forged, expired or replayed token, another "
				      "action, run or tenant, self-approval, a repeated approver, a role "
				      "missing, an edit that breaks the schema or a policy): the run goes "
				      "on waiting"},
};

const rein_event_def *rein_event_def_of(int type)
{
	assert(type >= 0 && type < REIN_EV__COUNT);
	return &rein_event_defs[type];
}

int rein_event_type_find(const char *name)
{
	if (name == NULL)
		return -1;
	/* the engine's commands carry the table's own pointers: the hot path */
	for (int i = 0; i < REIN_EV__COUNT; i++)
		if (rein_event_defs[i].type == name)
			return i;
	for (int i = 0; i < REIN_EV__COUNT; i++)
		if (strcmp(rein_event_defs[i].type, name) == 0)
			return i;
	return -1;
}

static bool type_fits(char t, const json_t *v)
{
	switch (t) {
	case 's': return json_is_string(v);
	case 'i': return json_is_integer(v);
	case 'n': return json_is_number(v);
	case 'b': return json_is_boolean(v);
	case 'o': return json_is_object(v);
	case 'a': return json_is_array(v);
	default: return true;
	}
}

static const char *type_word(char t)
{
	switch (t) {
	case 's': return "a string";
	case 'i': return "an integer";
	case 'n': return "a number";
	case 'b': return "true or false";
	case 'o': return "an object";
	case 'a': return "an array";
	default: return "a JSON value";
	}
}

int rein_event_check(const char *type, bool has_step, const json_t *data, rein_err *err)
{
	int k = rein_event_type_find(type);
	if (k < 0)
		return rein_err_set(err, REIN_ECORRUPT, "unknown event type '%s'", type ? type : "");
	const rein_event_def *d = &rein_event_defs[k];
	if (d->step != has_step)
		return rein_err_set(err, REIN_ECORRUPT, "a %s event must %sname a step", d->type,
				    d->step ? "" : "not ");
	if (!json_is_object(data))
		return rein_err_set(err, REIN_ECORRUPT, "the data of a %s event must be an object",
				    d->type);
	const char *p = d->fields;
	while (*p) {
		while (*p == ' ')
			p++;
		const char *colon = strchr(p, ':');
		if (colon == NULL)
			break;
		char name[48];
		size_t n = (size_t)(colon - p);
		assert(n < sizeof name);
		memcpy(name, p, n);
		name[n] = '\0';
		char t = colon[1];
		bool optional = colon[2] == '?';
		p = colon + (optional ? 3 : 2);
		const json_t *v = json_object_get(data, name);
		if (v == NULL || (json_is_null(v) && t != 'j')) {
			if (!optional)
				return rein_err_set(err, REIN_ECORRUPT, "a %s event lacks its field '%s'",
						    d->type, name);
			continue;
		}
		if (!type_fits(t, v))
			return rein_err_set(err, REIN_ECORRUPT, "field '%s' of a %s event must be %s",
					    name, d->type, type_word(t));
	}
	return REIN_OK;
}

int rein_event_types_markdown(rein_buf *b)
{
	int rc = rein_buf_puts(b, "| type | decided by | step | payload fields | meaning |\n"
				  "|---|---|---|---|---|\n");
	for (int i = 0; i < REIN_EV__COUNT && rc == REIN_OK; i++) {
		const rein_event_def *d = &rein_event_defs[i];
		rc = rein_buf_printf(b, "| `%s` | %s | %s | %s%s%s | %s |\n", d->type, d->layer,
				     d->step ? "yes" : "no", *d->fields ? "`" : "", d->fields,
				     *d->fields ? "`" : "", d->doc);
	}
	return rc;
}
