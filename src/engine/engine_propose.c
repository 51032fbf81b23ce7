/*
 * The one path of a proposed tool call (DESIGN section 4, steps 1-5) and the
 * one retry machine. A tool step and an agent's call both become a
 * tool.intent here, or are refused here; the policy gate, approvals and the
 * kill switch each land as one call in engine_propose. Tool calls and model
 * calls share the machine that turns a failed attempt into a backoff, a
 * sleep and the next attempt, or a give-up.
 */
#include "engine_int.h"
#include "schema.h"

/* ---- step 3: policy (docs/policy.md) --------------------------------------- */

void engine_policy_free(rein_run *r)
{
	json_decref(r->requester);
	rein_policy_free(r->org_pol);
	rein_free(r->org_error);
	json_decref(r->pol_hist);
	json_decref(r->tenant_counts);
}

int engine_policy_start(rein_run *r, const json_t *data, rein_err *err)
{
	assert(r != NULL);
	const json_t *rq = json_object_get(data, "requester");
	json_decref(r->vars); /* make_vars's copy names the requester */
	r->vars = NULL;
	/* nobody named: the spec's shared {user: null, roles: [], tenant: null} */
	r->requester = json_incref(json_is_object(rq) ? (json_t *)rq : r->spec->no_requester);
	snprintf(r->org_version, sizeof r->org_version, "none");
	if (r->requester == NULL)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	if (engine_label_start(r, err) != REIN_OK)
		return REIN_ENOMEM;
	const json_t *org = json_object_get(data, "org_policies");
	if (!json_is_object(org))
		return REIN_OK;
	const char *v = json_string_value(json_object_get(org, "version"));
	snprintf(r->org_version, sizeof r->org_version, "%s", v ? v : "?");
	rein_err e = {0};
	int bad = -1;
	int rc = rein_policy_compile(json_object_get(org, "rules"), "org", r->sb, &r->org_pol, &bad, &e);
	if (rc == REIN_ENOMEM)
		return rein_err_set(err, rc, "out of memory");
	if (rc != REIN_OK) {
		/* fail closed: a pinned set that does not compile denies every call */
		r->org_error = rein_sprintf("the organisation policies (version %s) cannot be used: %s",
					    r->org_version, e.msg);
		if (r->org_error == NULL)
			return rein_err_set(err, REIN_ENOMEM, "out of memory");
	}
	return REIN_OK;
}

int engine_policy_note(rein_run *r, rein_event_type evt, int64_t at, const json_t *data,
		       rein_err *err)
{
	if (at > r->clock_ms)
		r->clock_ms = at;
	if (evt != REIN_EV_TOOL_INTENT || r->requester == NULL)
		return REIN_OK; /* before run.started */
	if (r->pol_hist == NULL && (r->pol_hist = json_array()) == NULL)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	const char *eff = json_string_value(json_object_get(data, "effect"));
	const json_t *tool = json_object_get(data, "tool");
	json_t *h = json_object();
	if (h == NULL || json_object_set_new(h, "tool", tool ? json_incref((json_t *)tool) : json_null()) ||
	    json_object_set_new(h, "write", json_boolean(eff && strcmp(eff, "write") == 0)) ||
	    json_object_set_new(h, "at", json_integer(at))) {
		json_decref(h);
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	}
	if (json_array_append_new(r->pol_hist, h) != 0)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	return REIN_OK;
}

/* "a, b" of the strings of arr; NULL when out of memory. */
static char *join(const json_t *arr, const char *sep)
{
	rein_buf b = {0};
	size_t i;
	json_t *x;
	int rc = rein_buf_printf(&b, "%s", "");
	json_array_foreach(arr, i, x) if (rc == REIN_OK) rc =
		rein_buf_printf(&b, "%s%s", i ? sep : "", json_string_value(x) ? json_string_value(x) : "?");
	if (rc != REIN_OK) {
		rein_buf_free(&b);
		return NULL;
	}
	return b.p;
}

int engine_policy_apply(rein_run *r, int ti, const json_t *data, rein_err *err)
{
	assert(r != NULL && ti >= 0 && (size_t)ti < r->nth);
	thread *t = &r->th[ti];
	const char *d = json_string_value(json_object_get(data, "decision"));
	const char *key = json_string_value(json_object_get(data, "key"));
	int dec = d == NULL ? 0 : strcmp(d, "allow") == 0 ? REIN_POLICY_ALLOW
			      : strcmp(d, "deny") == 0	  ? REIN_POLICY_DENY
			      : strcmp(d, "approve") == 0 ? REIN_POLICY_APPROVE
							  : 0;
	if (dec == 0 || key == NULL || strlen(key) >= sizeof t->pol_key)
		return rein_err_set(err, REIN_ECORRUPT, "run %s: policy.decision with a bad decision or key",
				    r->id);
	snprintf(t->pol_key, sizeof t->pol_key, "%s", key);
	t->pol_decision = dec;
	json_decref(t->pol_data);
	t->pol_data = json_incref((json_t *)data);
	rein_free(t->pol_why);
	t->pol_why = NULL;
	if (dec != REIN_POLICY_DENY)
		return REIN_OK; /* approve: the risk gate asks for it (engine_approval.c) */
	char *ids = join(json_object_get(data, "rules"), ", ");
	char *why = join(json_object_get(data, "reasons"), "; ");
	if (ids && why)
		t->pol_why = rein_sprintf("denied by policy (rules: %s): %s", *ids ? ids : "none", why);
	rein_free(ids);
	rein_free(why);
	return t->pol_why ? REIN_OK : rein_err_set(err, REIN_ENOMEM, "out of memory");
}

static const json_t *policy_step_out(void *ud, const char *name)
{
	rein_run *r = ud;
	int i = rein_spec_step(r->spec, name);
	return i >= 0 ? r->outs[i] : NULL;
}

int engine_policy_gate(rein_run *r, int ti, int tool, const json_t *args, const char *key,
		       bool agent, rein_cmd *cmd, char **deny, rein_err *err)
{
	assert(r != NULL && ti >= 0 && (size_t)ti < r->nth && deny != NULL && key != NULL);
	assert(tool >= 0 && (size_t)tool < r->spec->ntools && args != NULL && cmd != NULL);
	thread *t = &r->th[ti];
	*deny = NULL;
	bool in_force = r->spec->has_policies || r->org_pol != NULL || r->org_error != NULL;
	if (!in_force)
		return REIN_OK; /* the compatibility rule: no policies, no decisions */
	if (strcmp(t->pol_key, key) == 0) { /* decided and recorded */
		if (t->pol_decision != REIN_POLICY_DENY)
			return REIN_OK; /* allow, or approve: engine_risk_gate waits for it */
		*deny = agent ? rein_sprintf("this call was denied by policy; do not retry it")
			      : rein_strdup(t->pol_why ? t->pol_why : "denied by policy");
		return *deny ? REIN_OK : rein_err_set(err, REIN_ENOMEM, "out of memory");
	}
	const rein_tool *tl = &r->spec->tools[tool];
	json_t *dec = NULL, *prov = engine_label_call(r, ti, args, agent, err);
	int rc = REIN_OK;
	if (prov == NULL)
		return REIN_ENOMEM;
	if (r->org_error) {
		dec = json_pack("{s:s, s:[], s:[s]}", "decision", "deny", "rules", "reasons", r->org_error);
	} else {
		const rein_policy *sets[2] = {r->org_pol, r->spec->policies};
		rein_policy_call c = {.tool = {.name = tl->name,
					       .write = tl->write,
					       .risk = (int)tl->risk,
					       .input_doc = tl->input_doc},
				      .args = args,
				      .requester = r->requester,
				      .input = r->input,
				      .run = r->runinfo,
				      .step_out = policy_step_out,
				      .ud = r,
				      .now_ms = r->clock_ms,
				      .history = r->pol_hist,
				      .tenant_counts = r->tenant_counts,
				      .enforce = true,
				      .provenance = prov,
				      .limits = r->spec->limits};
		if ((rc = rein_policy_eval(r->sb, sets, 2, &c, &dec, err)) != REIN_OK) {
			json_decref(prov);
			return rc;
		}
	}
	const char *call_id = agent ? json_string_value(json_object_get(
					      json_array_get(t->calls, t->idx), "id"))
				    : NULL;
	if (dec && (json_object_set_new(dec, "tool", json_string(tl->name)) ||
		    json_object_set_new(dec, "policy_version", json_string(r->org_version)) ||
		    json_object_set_new(dec, "workflow_version", json_string(r->spec->version)) ||
		    json_object_set_new(dec, "key", json_string(key)) ||
		    json_object_set(dec, "provenance", prov) ||
		    (call_id && json_object_set_new(dec, "call_id", json_string(call_id))) ||
		    (r->tenant_counts && json_object_size(r->tenant_counts) > 0 &&
		     json_object_set_new(dec, "tenant_counts", json_deep_copy(r->tenant_counts))))) {
		json_decref(dec);
		dec = NULL;
	}
	json_decref(prov);
	return engine_emit(cmd, REIN_EV_POLICY_DECISION, t->step, dec, err);
}

/* Step 1 for an agent's call: the tool it names, among those the step allows.
 * *why (caller frees) when there is none; REIN_ENOMEM. */
static int resolve_agent_tool(const rein_run *r, const rein_step *st, const char *name, int *tool,
			      char **why)
{
	*tool = -1;
	for (size_t i = 0; name && i < st->u.agent.nallow; i++)
		if (strcmp(r->spec->tools[st->u.agent.allow[i]].name, name) == 0)
			*tool = st->u.agent.allow[i];
	if (*tool >= 0)
		return REIN_OK;
	rein_buf names = {0};
	int rc = REIN_OK;
	for (size_t i = 0; i < st->u.agent.nallow && rc == REIN_OK; i++)
		rc = rein_buf_printf(&names, "%s%s", i ? ", " : "", r->spec->tools[st->u.agent.allow[i]].name);
	if (rc == REIN_OK) {
		*why = rein_sprintf("there is no tool '%s' here; the tools you may call are: %s",
				    name ? name : "?", names.p ? names.p : "(none)");
		rc = *why ? REIN_OK : REIN_ENOMEM;
	}
	rein_buf_free(&names);
	return rc;
}

/* Step 5: the step's and the run's max_tool_calls; *why when spent. */
static int tool_budget(const rein_run *r, const thread *t, char **why)
{
	const rein_step *st = &r->spec->steps[t->step];
	const rein_step_model *m = rein_step_model_of(st); /* a tool step has no budget of its own */
	int64_t cap = m ? m->b_tool_calls : 0;
	if (cap && t->s_tools >= cap)
		*why = rein_sprintf("budget: the step's max_tool_calls %lld reached",
				    (long long)cap);
	else if (r->spec->max_tool_calls && r->tool_calls >= r->spec->max_tool_calls)
		*why = rein_sprintf("budget: max_tool_calls %lld reached",
				    (long long)r->spec->max_tool_calls);
	else
		return REIN_OK;
	return *why ? REIN_OK : REIN_ENOMEM;
}

int engine_propose(rein_run *r, int ti, int origin, rein_cmd *cmd, rein_err *err)
{
	assert(r != NULL && ti >= 0 && (size_t)ti < r->nth && cmd != NULL);
	assert(origin == ENGINE_FROM_STEP || origin == ENGINE_FROM_AGENT);
	thread *t = &r->th[ti];
	const rein_step *st = &r->spec->steps[t->step];
	int s = t->step, tool = -1, rc = REIN_OK;
	json_t *args = NULL; /* owned */
	const char *call_id = NULL;
	char *why = NULL;
	bool agent = origin == ENGINE_FROM_AGENT;
	/* 1. parse the proposal and resolve the tool */
	if (agent) {
		const json_t *call = json_array_get(t->calls, t->idx);
		const char *name = json_string_value(json_object_get(call, "name"));
		call_id = json_string_value(json_object_get(call, "id"));
		if ((rc = resolve_agent_tool(r, st, name, &tool, &why)) != REIN_OK || why)
			goto refuse;
		args = json_incref(json_object_get(call, "arguments"));
		if (args == NULL) {
			const char *pe = json_string_value(json_object_get(call, "arguments_error"));
			why = rein_sprintf("the arguments are not valid JSON: %s", pe ? pe : "?");
			goto refuse;
		}
	} else {
		rein_err e = {0};
		tool = t->tool;
		assert(tool >= 0);
		rc = engine_eval_template(r, st->u.tool.args, t->last, &args, &e);
		if (rc == REIN_ENOMEM)
			goto out;
		if (rc != REIN_OK) {
			rc = REIN_OK;
			why = rein_sprintf("arguments: %s", e.msg);
			goto refuse;
		}
		if (!json_is_object(args)) {
			why = rein_sprintf("arguments must be an object");
			goto refuse;
		}
	}
	const rein_tool *tl = &r->spec->tools[tool];
	/* an approved call goes with the approved arguments (an approver's edit) */
	if ((rc = engine_approval_args(r, ti, &args, err)) != REIN_OK)
		goto out;
	/* 2. the arguments against the contract's input schema */
	rc = engine_schema_check(tl->input, args, &why,
			       agent ? "the arguments do not match the input schema of '%s'"
				     : "arguments do not match the input schema of '%s'",
			       tl->name);
	if (rc != REIN_ESCHEMA && rc != REIN_OK)
		goto out;
	rc = REIN_OK;
	if (why)
		goto refuse;
	/* 3. policy (a first pass records the decision), 4. risk tier */
	char key[80];
	engine_make_key(r, t, key);
	if ((rc = engine_policy_gate(r, ti, tool, args, key, agent, cmd, &why, err)) != REIN_OK || why)
		goto refuse;
	if (cmd->kind != REIN_CMD_NONE)
		goto out; /* the policy.decision, to record first */
	if ((rc = engine_risk_gate(r, ti, tool, args, key, agent, cmd, &why, err)) != REIN_OK || why)
		goto refuse;
	if (cmd->kind != REIN_CMD_NONE)
		goto out; /* the approval.requested: the call waits for a decision */
	/* 5. budgets: a spent one ends the step, whoever proposed */
	if ((rc = tool_budget(r, t, &why)) != REIN_OK)
		goto out;
	if (why) {
		rc = engine_emit(cmd, REIN_EV_STEP_FAILED, s, json_pack("{s:s, s:b}", "error", why, "budget", 1),
				 err);
		goto out;
	}
	bool oom = false;
	char *cred = rein_tool_credential(tl, r->tenant, &oom); /* names, never values */
	rc = oom ? REIN_ENOMEM
		 : engine_emit(cmd, REIN_EV_TOOL_INTENT, s,
			       json_pack("{s:s, s:s, s:O, s:s?, s:s, s:s?}", "tool", tl->name, "key",
					 key, "args", args, "call_id", call_id, "effect",
					 tl->write ? "write" : "read", "credential", cred),
			       err);
	rein_free(cred);
	goto out;
refuse:
	if (rc != REIN_OK)
		goto out;
	if (why == NULL) {
		rc = REIN_ENOMEM;
		goto out;
	}
	if (agent) {
		const json_t *call = json_array_get(t->calls, t->idx);
		rc = engine_emit(cmd, REIN_EV_TOOL_REFUSED, s,
				 json_pack("{s:s?, s:s?, s:s}", "call_id", call_id, "tool",
					   json_string_value(json_object_get(call, "name")), "error", why),
				 err);
	} else {
		rc = engine_emit(cmd, REIN_EV_STEP_FAILED, s, json_pack("{s:s}", "error", why), err);
	}
out:
	if (rc == REIN_ENOMEM)
		rein_err_set(err, rc, "out of memory"); /* the first error wins */
	json_decref(args);
	rein_free(why);
	return rc;
}

/* ---- the retry machine ---------------------------------------------------- */

int engine_retry_failed(rein_run *r, thread *t, const engine_retry *rp, int64_t at,
			const json_t *data, rein_err *err)
{
	assert(r != NULL && t != NULL && rp != NULL && rp->policy != NULL);
	assert(t->state == T_CALL || t->state == T_SLEEPING);
	const rein_retry_policy *p = rp->policy;
	char *why = NULL;
	t->attempts++;
	t->issued = false;
	t->in_doubt = false;
	const char *e = json_string_value(json_object_get(data, "error"));
	if (engine_set_str(&t->error, e ? e : "failed") != REIN_OK)
		goto oom;
	bool transient = json_is_true(json_object_get(data, "transient"));
	const json_t *ra = json_object_get(data, "retry_after_ms");
	if (transient && t->attempts < p->max_attempts) {
		int64_t delay = json_is_integer(ra) && json_integer_value(ra) >= 0
					? json_integer_value(ra)
					: engine_backoff_ms(r, t, p);
		if (at + delay - t->intent_at <= p->max_total_ms) {
			t->delay_ms = delay;
			t->state = T_BACKOFF;
			return REIN_OK;
		}
		if (rp->explain)
			why = rein_sprintf("%s; no retry: the next attempt would start after max_total_s",
					   t->error);
	} else if (transient && rp->explain) {
		why = rein_sprintf("%s (after %d attempts)", t->error, t->attempts);
	}
	if (rp->explain && transient && (why == NULL || engine_set_str(&t->error, why) != REIN_OK))
		goto oom;
	rein_free(why);
	t->state = T_GIVEUP;
	return REIN_OK;
oom:
	rein_free(why);
	return rein_err_set(err, REIN_ENOMEM, "out of memory");
}

void engine_retry_sleep(thread *t, const json_t *data)
{
	assert(t != NULL && t->state == T_BACKOFF);
	t->due = json_integer_value(json_object_get(data, "due_at"));
	t->state = T_SLEEPING;
}

int engine_retry_poll(rein_run *r, int ti, const engine_retry *rp, int64_t now, rein_cmd *cmd,
		      int64_t *due, rein_err *err)
{
	assert(r != NULL && ti >= 0 && (size_t)ti < r->nth && rp != NULL && cmd != NULL);
	thread *t = &r->th[ti];
	assert(t->state == T_BACKOFF || t->state == T_SLEEPING);
	if (t->state == T_BACKOFF)
		return engine_emit_backoff(cmd, rp->backoff_type, t, now, err);
	if (now < t->due) {
		if (t->due < *due)
			*due = t->due;
		return REIN_OK;
	}
	if (rp->gate) {
		int rc = rp->gate(r, ti, cmd, err);
		if (rc != REIN_OK || cmd->kind != REIN_CMD_NONE)
			return rc;
	}
	t->state = T_CALL;
	t->issued = true;
	cmd->kind = REIN_CMD_EXEC;
	cmd->step = t->step;
	return REIN_OK;
}
