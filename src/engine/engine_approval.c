/*
 * Step 4 of a proposed call: risk tiers and approvals (docs/approvals.md).
 * A call that needs an approval is recorded as approval.requested and its
 * thread waits (T_APPROVAL). Approvals and denials arrive through the inbox;
 * the runner has checked each token's signature and expiry and recorded the
 * verdict inside the inbox.received, so everything here is a pure function
 * of the log: the binding checks (run, step, key, action, policy version,
 * tenant, who approves, roles, single use) and the edit's re-validation run
 * when the entry is judged, and their outcome is an event.
 */
#include "engine_int.h"
#include "schema.h"

/* The approval's id: derived from the run and the call's key (stable). */
static void approval_id(const rein_run *r, const char *key, char out[40])
{
	char buf[200];
	uint8_t h[REIN_HASH_LEN];
	char hex[2 * REIN_HASH_LEN + 1];
	snprintf(buf, sizeof buf, "%s/%s", r->id, key);
	rein_sha256(buf, strlen(buf), h);
	rein_hex(h, 12, hex);
	snprintf(out, 40, "apr-%.24s", hex);
}

void engine_approval_free_thread(thread *t)
{
	json_decref(t->pol_data);
	json_decref(t->appr_req);
	json_decref(t->appr_votes);
	json_decref(t->appr_args);
	rein_free(t->appr_why);
}

void engine_approval_free(rein_run *r)
{
	json_decref(r->appr_queue);
	json_decref(r->appr_nonces);
	rein_free(r->appr_reason);
}

static const json_t *step_out(void *ud, const char *name)
{
	rein_run *r = ud;
	int i = rein_spec_step(r->spec, name);
	return i >= 0 ? r->outs[i] : NULL;
}

/* Does thread t's call keyed key need an approval (tool tl)? */
static bool needs_approval(const thread *t, const rein_tool *tl, const char *key)
{
	return (strcmp(t->pol_key, key) == 0 && t->pol_decision == REIN_POLICY_APPROVE) ||
	       tl->risk >= REIN_RISK_MEDIUM;
}

/* The approval settings that hold for t's call: the tool's, overridden by the
 * first deciding approve rule that has its own. Borrowed, or NULL (defaults). */
static const json_t *settings_of(const rein_run *r, const thread *t, const rein_tool *tl)
{
	const json_t *rules = t->pol_decision == REIN_POLICY_APPROVE
				      ? json_object_get(t->pol_data, "rules")
				      : NULL;
	size_t i;
	const json_t *id;
	json_array_foreach(rules, i, id) {
		const json_t *a = rein_policy_rule_approval(r->org_pol, json_string_value(id));
		if (a == NULL)
			a = rein_policy_rule_approval(r->spec->policies, json_string_value(id));
		if (a)
			return a;
	}
	return tl->approval;
}

/* What the agent (or the steps before) had in context: the outputs of the
 * steps done so far and, for an agent, the tool results it was shown. */
static json_t *evidence_of(const rein_run *r, const thread *t)
{
	json_t *ev = json_object(), *steps = json_object(), *ctx = json_array();
	if (ev == NULL || steps == NULL || ctx == NULL)
		goto oom;
	for (size_t i = 0; i < r->spec->nsteps; i++)
		if (r->outs[i] && (int)i != t->step &&
		    json_object_set_nocheck(steps, r->spec->steps[i].name, r->outs[i]) != 0)
			goto oom;
	size_t i;
	const json_t *m;
	json_array_foreach(t->msgs, i, m) {
		const char *role = json_string_value(json_object_get(m, "role"));
		if (role && strcmp(role, "tool") == 0 &&
		    json_array_append(ctx, json_object_get(m, "content")) != 0)
			goto oom;
	}
	if (json_object_set_new(ev, "steps", steps) != 0) {
		steps = NULL;
		goto oom;
	}
	steps = NULL;
	if (json_array_size(ctx) && json_object_set_new(ev, "tool_results", ctx) != 0) {
		ctx = NULL;
		goto oom;
	}
	if (json_array_size(ctx) == 0)
		json_decref(ctx);
	return ev;
oom:
	json_decref(ev);
	json_decref(steps);
	json_decref(ctx);
	return NULL;
}

static const char *risk_name(int risk)
{
	return risk >= REIN_RISK_HIGH ? "high" : risk == REIN_RISK_MEDIUM ? "medium" : "low";
}

/* The tier the approval runs at: the tool's, at least medium. */
static int tier_of(const rein_tool *tl)
{
	return tl->risk >= REIN_RISK_HIGH ? REIN_RISK_HIGH : REIN_RISK_MEDIUM;
}

int engine_risk_gate(rein_run *r, int ti, int tool, const json_t *args, const char *key,
		     bool agent, rein_cmd *cmd, char **deny, rein_err *err)
{
	assert(r != NULL && ti >= 0 && (size_t)ti < r->nth && deny != NULL && key != NULL);
	assert(tool >= 0 && (size_t)tool < r->spec->ntools && args != NULL && cmd != NULL);
	thread *t = &r->th[ti];
	const rein_tool *tl = &r->spec->tools[tool];
	*deny = NULL;
	if (!needs_approval(t, tl, key))
		return REIN_OK;
	if (strcmp(t->appr_key, key) == 0 && t->appr == ENGINE_APPR_GRANTED)
		return REIN_OK;
	if (strcmp(t->appr_key, key) == 0 && t->appr == ENGINE_APPR_DENIED) {
		*deny = agent ? rein_strdup("this call was denied by an approver; do not retry it")
			      : rein_strdup(t->appr_why ? t->appr_why : "denied by an approver");
		return *deny ? REIN_OK : rein_err_set(err, REIN_ENOMEM, "out of memory");
	}
	char id[40], hash[65];
	approval_id(r, key, id);
	if (rein_action_hash(tl->name, args, hash) != REIN_OK)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	const json_t *set = settings_of(r, t, tl);
	const json_t *cnt = json_object_get(set, "approvers"), *roles = json_object_get(set, "roles");
	const json_t *sla = json_object_get(set, "sla_s");
	const char *ot = json_string_value(json_object_get(set, "on_timeout"));
	int tier = tier_of(tl);
	bool pol = strcmp(t->pol_key, key) == 0 && t->pol_decision == REIN_POLICY_APPROVE;
	const json_t *rules = pol ? json_object_get(t->pol_data, "rules") : NULL;
	json_t *d = json_pack("{s:s, s:s, s:s, s:O, s:s, s:s, s:s, s:o, s:{s:I, s:o}, s:o}", "id", id,
			      "key", key, "tool", tl->name, "args", args, "action_hash", hash,
			      "policy_version", r->org_version, "risk", risk_name(tier), "rules",
			      rules ? json_incref((json_t *)rules) : json_array(), "need", "count",
			      (json_int_t)(cnt ? json_integer_value(cnt) : 1), "roles",
			      roles ? json_incref((json_t *)roles) : json_array(), "requester",
			      r->requester ? json_incref(r->requester) : json_null());
	json_t *ev = d ? evidence_of(r, t) : NULL;
	if (ev == NULL || json_object_set_new(d, "evidence", ev) != 0 ||
	    (tier < REIN_RISK_HIGH &&
	     (json_object_set_new(d, "sla_due_at",
				  json_integer(r->clock_ms +
					       (sla ? json_integer_value(sla) : 86400) * 1000)) != 0 ||
	      json_object_set_new(d, "on_timeout", json_string(ot ? ot : "escalate")) != 0))) {
		json_decref(d);
		d = NULL;
	}
	return engine_emit(cmd, REIN_EV_APPROVAL_REQUESTED, t->step, d, err);
}

int engine_approval_args(rein_run *r, int ti, json_t **args, rein_err *err)
{
	assert(r != NULL && ti >= 0 && (size_t)ti < r->nth && args != NULL);
	thread *t = &r->th[ti];
	if (t->appr != ENGINE_APPR_GRANTED || t->appr_args == NULL)
		return REIN_OK;
	char key[80];
	engine_make_key(r, t, key);
	if (strcmp(key, t->appr_key) != 0)
		return REIN_OK;
	json_decref(*args);
	*args = json_incref(t->appr_args);
	(void)err;
	return REIN_OK;
}

/* The queued entry with inbox id leaves the queue (the first one, whatever
 * its id, when id is NULL). */
static void unqueue(rein_run *r, const char *id)
{
	size_t i;
	json_t *e;
	json_array_foreach(r->appr_queue, i, e) {
		const char *x = json_string_value(json_object_get(e, "inbox"));
		if (id == NULL || (x && strcmp(x, id) == 0)) {
			json_array_remove(r->appr_queue, i);
			return;
		}
	}
}

static int set_reason(rein_run *r, const thread *t)
{
	const char *id = json_string_value(json_object_get(t->appr_req, "id"));
	const char *tool = json_string_value(json_object_get(t->appr_req, "tool"));
	const char *risk = json_string_value(json_object_get(t->appr_req, "risk"));
	rein_free(r->appr_reason);
	r->appr_reason = rein_sprintf("approval: %s waits for a decision (tool %s, risk %s)",
				      id ? id : "?", tool ? tool : "?", risk ? risk : "?");
	return r->appr_reason ? REIN_OK : REIN_ENOMEM;
}

int engine_apply_approval(rein_run *r, int ti, rein_event_type evt, int64_t at, const json_t *data,
			  rein_err *err)
{
	assert(r != NULL && ti >= 0 && (size_t)ti < r->nth);
	thread *t = &r->th[ti];
	const rein_step *st = &r->spec->steps[t->step];
	const char *id = json_string_value(json_object_get(data, "id"));
	const char *mine = json_string_value(json_object_get(t->appr_req, "id"));
	(void)at;
	if (evt == REIN_EV_APPROVAL_REQUESTED) {
		const char *key = json_string_value(json_object_get(data, "key"));
		bool ok = (st->kind == REIN_STEP_TOOL && t->state == T_READY) ||
			  (st->kind == REIN_STEP_AGENT && t->state == T_TOOLS);
		if (!ok || key == NULL || strlen(key) >= sizeof t->appr_key)
			goto order;
		snprintf(t->appr_key, sizeof t->appr_key, "%s", key);
		t->appr = ENGINE_APPR_WAIT;
		t->appr_back = t->state;
		json_decref(t->appr_req);
		json_decref(t->appr_votes);
		json_decref(t->appr_args);
		t->appr_args = NULL;
		rein_free(t->appr_why);
		t->appr_why = NULL;
		t->appr_req = json_incref((json_t *)data);
		t->appr_votes = json_array();
		t->appr_due = json_integer_value(json_object_get(data, "sla_due_at"));
		t->appr_alerted = false;
		t->state = T_APPROVAL;
		if (t->appr_votes == NULL || set_reason(r, t) != REIN_OK)
			return rein_err_set(err, REIN_ENOMEM, "out of memory");
		return REIN_OK;
	}
	if (t->state != T_APPROVAL || id == NULL || mine == NULL || strcmp(id, mine) != 0)
		goto order;
	if (evt == REIN_EV_APPROVAL_ALERT) {
		t->appr_alerted = true;
		return REIN_OK;
	}
	if (evt == REIN_EV_APPROVAL_GRANTED) {
		const char *by = json_string_value(json_object_get(data, "by"));
		const char *nonce = json_string_value(json_object_get(data, "nonce"));
		const json_t *a = json_object_get(data, "args");
		unqueue(r, json_string_value(json_object_get(data, "inbox")));
		if ((r->appr_nonces == NULL && (r->appr_nonces = json_object()) == NULL) ||
		    json_array_append_new(t->appr_votes, json_string(by)) != 0 ||
		    (nonce && json_object_set_new(r->appr_nonces, nonce, json_true()) != 0))
			return rein_err_set(err, REIN_ENOMEM, "out of memory");
		if (json_is_object(a)) {
			json_decref(t->appr_args);
			t->appr_args = json_incref((json_t *)a);
		}
		json_int_t need = json_integer_value(json_object_get(json_object_get(t->appr_req, "need"),
								     "count"));
		if ((json_int_t)json_array_size(t->appr_votes) >= (need > 0 ? need : 1)) {
			t->appr = ENGINE_APPR_GRANTED;
			t->state = t->appr_back;
		}
		return REIN_OK;
	}
	if (evt == REIN_EV_APPROVAL_DENIED) {
		const char *by = json_string_value(json_object_get(data, "by"));
		const char *why = json_string_value(json_object_get(data, "reason"));
		unqueue(r, json_string_value(json_object_get(data, "inbox")));
		rein_free(t->appr_why);
		t->appr_why = rein_sprintf("denied by an approver (%s): %s", by ? by : "?", why ? why : "");
		t->appr = ENGINE_APPR_DENIED;
		t->state = t->appr_back;
		return t->appr_why ? REIN_OK : rein_err_set(err, REIN_ENOMEM, "out of memory");
	}
	if (evt == REIN_EV_APPROVAL_EXPIRED) {
		const char *ot = json_string_value(json_object_get(data, "on_timeout"));
		const char *tool = json_string_value(json_object_get(t->appr_req, "tool"));
		t->appr_due = 0;
		if (ot && strcmp(ot, "halt") == 0)
			return REIN_OK; /* waits on, with no timer, like a high-risk call */
		char *why = rein_sprintf("approval %s (tool %s) expired: no decision within its SLA", id,
					 tool ? tool : "?");
		int rc = why ? REIN_OK : REIN_ENOMEM;
		if (rc == REIN_OK && ot && strcmp(ot, "deny") == 0) {
			rein_free(t->appr_why);
			t->appr_why = why;
			why = NULL;
			t->appr = ENGINE_APPR_DENIED;
			t->state = t->appr_back;
		} else if (rc == REIN_OK) {
			rc = engine_decide_end(r, REIN_RUN_ESCALATED, why, json_null());
		}
		rein_free(why);
		return rc == REIN_OK ? rc : rein_err_set(err, rc, "out of memory");
	}
order:
	return rein_err_set(err, REIN_ECORRUPT, "run %s: %s for '%s' out of order", r->id,
			    rein_event_name(evt), st->name);
}

int engine_apply_approval_refused(rein_run *r, const json_t *data, rein_err *err)
{
	assert(r != NULL);
	(void)err;
	unqueue(r, json_string_value(json_object_get(data, "inbox")));
	return REIN_OK;
}

int engine_approval_inbox(rein_run *r, const json_t *msg, rein_err *err)
{
	assert(r != NULL && msg != NULL);
	if ((r->appr_queue == NULL && (r->appr_queue = json_array()) == NULL) ||
	    (r->appr_nonces == NULL && (r->appr_nonces = json_object()) == NULL))
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	const json_t *d = json_object_get(msg, "data");
	json_t *e = json_pack("{s:O?, s:O?, s:O?}", "inbox", json_object_get(msg, "id"), "type",
			      json_object_get(msg, "type"), "data", d);
	if (e == NULL || json_array_append_new(r->appr_queue, e) != 0)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	return REIN_OK;
}

/* The thread waiting for approval id (or for the call keyed key), or -1. */
static int waiting_thread(const rein_run *r, const char *id, const char *key)
{
	for (size_t i = 0; i < r->nth; i++) {
		const thread *t = &r->th[i];
		if (t->state != T_APPROVAL)
			continue;
		const char *x = json_string_value(json_object_get(t->appr_req, "id"));
		if ((id && x && strcmp(id, x) == 0) || (key && strcmp(key, t->appr_key) == 0))
			return (int)i;
	}
	return -1;
}

static bool same_str(const json_t *a, const char *b)
{
	const char *s = json_string_value(a);
	return (s == NULL && b == NULL) || (s && b && strcmp(s, b) == 0);
}

/* The edited arguments a against the tool's input schema and the policies:
 * *why (caller frees) when they fail. */
static int check_edit(rein_run *r, thread *t, const rein_tool *tl, const json_t *a, char **why,
		      rein_err *err)
{
	int rc = engine_schema_check(tl->input, a, why,
				     "the edited arguments do not match the input schema of '%s'",
				     tl->name);
	if (rc == REIN_ESCHEMA || rc != REIN_OK)
		return rc == REIN_ESCHEMA ? REIN_OK : rein_err_set(err, rc, "out of memory");
	bool in_force = r->spec->has_policies || r->org_pol != NULL || r->org_error != NULL;
	if (!in_force)
		return REIN_OK;
	if (r->org_error) {
		*why = rein_strdup(r->org_error);
		return *why ? REIN_OK : rein_err_set(err, REIN_ENOMEM, "out of memory");
	}
	const rein_policy *sets[2] = {r->org_pol, r->spec->policies};
	rein_policy_call c = {.tool = {.name = tl->name,
				       .write = tl->write,
				       .risk = (int)tl->risk,
				       .input_doc = tl->input_doc},
			      .args = a,
			      .requester = r->requester,
			      .input = r->input,
			      .run = r->runinfo,
			      .step_out = step_out,
			      .ud = r,
			      .now_ms = r->clock_ms,
			      .history = r->pol_hist,
			      .enforce = true,
			      .limits = r->spec->limits};
	json_t *dec = NULL;
	if ((rc = rein_policy_eval(r->sb, sets, 2, &c, &dec, err)) != REIN_OK)
		return rc;
	const char *d = json_string_value(json_object_get(dec, "decision"));
	if (d && strcmp(d, "deny") == 0) {
		json_t *ids = json_object_get(dec, "rules"), *first = json_array_get(ids, 0);
		*why = rein_sprintf("the edited arguments are denied by policy (rule %s): %s",
				    json_string_value(first) ? json_string_value(first) : "default",
				    json_string_value(json_array_get(json_object_get(dec, "reasons"), 0))
					    ? json_string_value(json_array_get(json_object_get(dec, "reasons"), 0))
					    : "");
		rc = *why ? REIN_OK : rein_err_set(err, REIN_ENOMEM, "out of memory");
	}
	(void)t;
	json_decref(dec);
	return rc;
}

/* Judges an approval entry (its data d, the runner's verdict inside):
 * *why (caller frees) a refusal, else *ti the thread it approves. */
static int judge_token(rein_run *r, const json_t *d, int *ti, const char **id, char **why,
		       rein_err *err)
{
	const json_t *c = json_object_get(d, "claims");
	const char *key = json_string_value(json_object_get(c, "key"));
	const char *by = json_string_value(json_object_get(c, "by"));
	*ti = -1;
	if (!json_is_true(json_object_get(d, "token_ok"))) {
		const char *te = json_string_value(json_object_get(d, "token_error"));
		*why = rein_sprintf("the token was refused: %s", te ? te : "not verified");
		goto out;
	}
	if (!same_str(json_object_get(c, "run"), r->id)) {
		*why = rein_sprintf("the token is for another run");
		goto out;
	}
	int k = key ? waiting_thread(r, NULL, key) : -1;
	if (k < 0) {
		*why = rein_sprintf("no approval is pending for this call (it was decided, or the token "
				    "is for another call)");
		goto out;
	}
	thread *t = &r->th[k];
	const json_t *req = t->appr_req;
	*id = json_string_value(json_object_get(req, "id"));
	const rein_tool *tl = &r->spec->tools[rein_spec_tool(r->spec, json_string_value(
								     json_object_get(req, "tool")))];
	const json_t *a = json_object_get(c, "args");
	if (json_is_null(a))
		a = NULL;
	char ah[65] = "";
	if (json_is_object(a) && rein_action_hash(tl->name, a, ah) != REIN_OK)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	const json_t *need = json_object_get(req, "need"), *roles = json_object_get(need, "roles");
	const json_t *held = json_object_get(c, "roles");
	bool has_role = json_array_size(roles) == 0;
	size_t i, j;
	const json_t *x, *y;
	json_array_foreach(roles, i, x) json_array_foreach(held, j, y) has_role =
		has_role || json_equal((json_t *)x, (json_t *)y);
	bool again = false;
	json_array_foreach(t->appr_votes, i, x) again = again || same_str(x, by);
	const char *nonce = json_string_value(json_object_get(c, "nonce"));
	const char *user = json_string_value(json_object_get(r->requester, "user"));
	if (!same_str(json_object_get(c, "step"), r->spec->steps[t->step].name))
		*why = rein_sprintf("the token is for another step");
	else if (!same_str(json_object_get(c, "action_hash"),
			   json_string_value(json_object_get(req, "action_hash"))) &&
		 !(ah[0] && same_str(json_object_get(c, "action_hash"), ah)))
		*why = rein_sprintf("the token is for another action (its action_hash differs)");
	else if (!same_str(json_object_get(c, "policy_version"),
			   json_string_value(json_object_get(req, "policy_version"))))
		*why = rein_sprintf("the token is for another policy version");
	else if (!same_str(json_object_get(c, "tenant"), r->tenant))
		*why = rein_sprintf("the token is for another tenant");
	else if (by == NULL || *by == '\0')
		*why = rein_sprintf("the token names no approver");
	else if (user && strcmp(user, by) == 0)
		*why = rein_sprintf("self-approval: %s requested this run and cannot approve it", by);
	else if (!has_role)
		*why = rein_sprintf("%s holds none of the roles this approval needs", by);
	else if (nonce == NULL || json_object_get(r->appr_nonces, nonce) != NULL)
		*why = rein_sprintf("the token was used before (a token is single-use)");
	else if (again)
		*why = rein_sprintf("%s approved this call already: another approver is needed", by);
	else if (json_is_object(a)) {
		int rc = check_edit(r, t, tl, a, why, err);
		if (rc != REIN_OK)
			return rc;
		if (*why == NULL)
			*ti = k;
		return REIN_OK;
	} else if (a != NULL)
		*why = rein_sprintf("the edited arguments must be an object");
	else {
		*ti = k;
		return REIN_OK;
	}
out:
	return *why ? REIN_OK : rein_err_set(err, REIN_ENOMEM, "out of memory");
}

int engine_poll_approvals(rein_run *r, rein_cmd *cmd, rein_err *err)
{
	assert(r != NULL && cmd != NULL);
	const json_t *e = json_array_get(r->appr_queue, 0);
	if (e == NULL)
		return REIN_OK;
	const char *inbox = json_string_value(json_object_get(e, "inbox"));
	const char *type = json_string_value(json_object_get(e, "type"));
	const json_t *d = json_object_get(e, "data");
	const char *id = json_string_value(json_object_get(d, "id"));
	char *why = NULL;
	int ti = -1, rc = REIN_OK;
	json_t *out = NULL;
	if (type && strcmp(type, "denial") == 0) {
		const char *by = json_string_value(json_object_get(d, "by"));
		const char *reason = json_string_value(json_object_get(d, "reason"));
		ti = id ? waiting_thread(r, id, NULL) : -1;
		if (ti < 0)
			why = rein_sprintf("no approval %s is pending", id ? id : "?");
		else if (by == NULL || *by == '\0' || reason == NULL || *reason == '\0')
			why = rein_sprintf("a denial needs an approver and a reason");
		if (why == NULL && ti >= 0) {
			rc = engine_emit(cmd, REIN_EV_APPROVAL_DENIED, r->th[ti].step,
					 json_pack("{s:s, s:s, s:s, s:s?}", "id", id, "by", by, "reason",
						   reason, "inbox", inbox),
					 err);
			goto out;
		}
		if (why == NULL)
			rc = REIN_ENOMEM;
	} else {
		if ((rc = judge_token(r, d, &ti, &id, &why, err)) != REIN_OK)
			goto out;
		if (why == NULL) {
			const json_t *c = json_object_get(d, "claims");
			const json_t *cr = json_object_get(c, "roles");
			out = json_pack("{s:s, s:O, s:o, s:O?, s:O?, s:O?, s:s?}", "id", id, "by",
					json_object_get(c, "by"), "roles",
					json_is_array(cr) ? json_incref((json_t *)cr) : json_array(),
					"reason", json_object_get(c, "reason"), "args",
					json_object_get(c, "args"), "nonce", json_object_get(c, "nonce"),
					"inbox", inbox);
			rc = engine_emit(cmd, REIN_EV_APPROVAL_GRANTED, r->th[ti].step, out, err);
			goto out;
		}
	}
	if (rc == REIN_OK) {
		const char *by = json_string_value(json_object_get(json_object_get(d, "claims"), "by"));
		if (by == NULL)
			by = json_string_value(json_object_get(d, "by"));
		rc = engine_emit(cmd, REIN_EV_APPROVAL_REFUSED, -1,
				 json_pack("{s:s, s:s?, s:s, s:s?}", "id", id ? id : "?", "by", by,
					   "reason", why, "inbox", inbox),
				 err);
	}
out:
	if (rc == REIN_ENOMEM)
		rein_err_set(err, rc, "out of memory");
	rein_free(why);
	return rc;
}

int engine_poll_approval(rein_run *r, int ti, int64_t now, rein_cmd *cmd, int64_t *due,
			 rein_err *err)
{
	assert(r != NULL && ti >= 0 && (size_t)ti < r->nth && cmd != NULL && due != NULL);
	thread *t = &r->th[ti];
	assert(t->state == T_APPROVAL);
	const char *id = json_string_value(json_object_get(t->appr_req, "id"));
	const char *risk = json_string_value(json_object_get(t->appr_req, "risk"));
	if (!t->appr_alerted && risk && strcmp(risk, "high") == 0)
		return engine_emit(cmd, REIN_EV_APPROVAL_ALERT, t->step, json_pack("{s:s}", "id", id), err);
	if (t->appr_due > 0 && now >= t->appr_due) {
		const char *ot = json_string_value(json_object_get(t->appr_req, "on_timeout"));
		return engine_emit(cmd, REIN_EV_APPROVAL_EXPIRED, t->step,
				   json_pack("{s:s, s:s}", "id", id, "on_timeout", ot ? ot : "escalate"),
				   err);
	}
	if (t->appr_due > 0 && t->appr_due < *due)
		*due = t->appr_due;
	return REIN_OK;
}
