/*
 * Tool steps in the engine: the intent (arguments checked, idempotency key
 * derived), attempts and their outcomes, retries with full jitter or
 * Retry-After, ambiguity and in-doubt calls after a crash, fallbacks.
 */
#include "engine_int.h"

const rein_tool *engine_cur_tool(const rein_run *r, const thread *t)
{
	return t->tool >= 0 ? &r->spec->tools[t->tool] : NULL;
}

/* The idempotency key: derived from run, step and visit, so the same call
 * gets the same key across retries and across a crash and resume. */
void engine_make_key(const rein_run *r, const thread *t, char out[80])
{
	assert(r != NULL && t != NULL && t->step >= 0 && out != NULL);
	char buf[600];
	uint8_t h[REIN_HASH_LEN];
	char hex[2 * REIN_HASH_LEN + 1];
	int s = t->step;
	if (r->spec->steps[s].kind == REIN_STEP_AGENT)
		snprintf(buf, sizeof buf, "%s/%s/%d/%d/%zu", r->id, r->spec->steps[s].name, r->visits[s],
			 t->turns, t->idx);
	else
		snprintf(buf, sizeof buf, "%s/%s/%d", r->id, r->spec->steps[s].name, r->visits[s]);
	rein_sha256(buf, strlen(buf), h);
	rein_hex(h, 16, hex);
	if (t->fb_depth)
		snprintf(out, 80, "rein-%s-fb%d", hex, t->fb_depth);
	else
		snprintf(out, 80, "rein-%s", hex);
}

/* Full jitter: uniform in [0, min(max_delay, base * 2^(n-1))], from a PRNG
 * seeded by the call and the attempt, so a replay decides the same. */
int64_t engine_backoff_ms(const rein_run *r, const thread *t, const rein_retry_policy *p)
{
	assert(r != NULL && t != NULL && p != NULL && t->attempts >= 1);
	int64_t cap = p->base_ms;
	for (int i = 1; i < t->attempts && cap < p->max_delay_ms; i++)
		cap *= 2;
	if (cap > p->max_delay_ms)
		cap = p->max_delay_ms;
	char buf[128];
	uint8_t h[REIN_HASH_LEN];
	snprintf(buf, sizeof buf, "%s#%d", t->key, t->attempts);
	rein_sha256(buf, strlen(buf), h);
	uint64_t seed = 0;
	for (int i = 0; i < 8; i++)
		seed = seed << 8 | h[i];
	rein_rng rng;
	rein_rng_seed(&rng, seed);
	return (int64_t)rein_rng_below(&rng, (uint64_t)cap + 1);
}

json_t *engine_evidence(const rein_run *r, const thread *t)
{
	const rein_tool *tool = engine_cur_tool(r, t);
	return json_pack("{s:s, s:s, s:O?, s:i, s:s?}", "tool", tool ? tool->name : "?", "key",
			 t->key, "args", t->args, "attempts", t->attempts, "last_error", t->error);
}

int engine_apply_tool(rein_run *r, int ti, rein_event_type evt, int64_t at, const json_t *data,
		      rein_err *err)
{
	assert(r != NULL && ti >= 0 && (size_t)ti < r->nth && evt >= 0 && evt < REIN_EV__COUNT);
	const char *type = rein_event_name(evt);
	thread *t = &r->th[ti];
	const rein_step *st = &r->spec->steps[t->step];
	if (st->kind != REIN_STEP_TOOL && st->kind != REIN_STEP_AGENT)
		return rein_err_set(err, REIN_ECORRUPT, "run %s: %s for '%s', not a tool step", r->id,
				    type, st->name);
	if (evt >= REIN_EV_BREAKER_OPENED && evt <= REIN_EV_BREAKER_CLOSED)
		return REIN_OK; /* process-wide breaker transitions: a record only */
	if (evt == REIN_EV_TOOL_SHADOWED)
		return engine_apply_kill(r, ti, evt, at, data, err);
	if (st->kind == REIN_STEP_AGENT && (evt == REIN_EV_TOOL_RESULT ||
					    evt == REIN_EV_TOOL_REFUSED))
		return engine_agent_tool_done(r, ti, evt, data, err);
	if (st->kind == REIN_STEP_AGENT && evt == REIN_EV_TOOL_INTENT) {
		const char *name = json_string_value(json_object_get(data, "tool"));
		t->tool = name ? rein_spec_tool(r->spec, name) : -1;
		if (t->state != T_TOOLS || t->tool < 0)
			goto order;
		t->state = T_READY;
	}
	const rein_tool *tool = engine_cur_tool(r, t);
	if (evt == REIN_EV_TOOL_INTENT) {
		if (t->state != T_READY)
			goto order;
		const char *key = json_string_value(json_object_get(data, "key"));
		snprintf(t->key, sizeof t->key, "%s", key ? key : "");
		json_decref(t->args);
		t->args = json_incref(json_object_get(data, "args"));
		t->intent_at = at;
		t->attempts = 0;
		t->issued = false;
		t->in_doubt = false;
		t->state = T_CALL;
		r->tool_calls++;
		t->s_tools++;
		return REIN_OK;
	}
	if (evt == REIN_EV_TOOL_ATTEMPT) {
		/* an attempt after a backoff starts when due, without an event of its own */
		if (t->state != T_CALL && t->state != T_SLEEPING)
			goto order;
		if (json_is_true(json_object_get(data, "ambiguous")) && tool->idem == REIN_IDEM_NONE) {
			/* it may have happened, and the tool cannot dedupe a retry */
			const char *e = json_string_value(json_object_get(data, "error"));
			t->attempts++;
			t->issued = false;
			t->in_doubt = false;
			int rc = engine_set_str(&t->error, e ? e : "failed");
			char *why = rc == REIN_OK ? rein_sprintf(
						"tool '%s': the outcome of call %s is unknown (%s) and "
						"the tool does not honour idempotency keys",
						tool->name, t->key, t->error) : NULL;
			json_t *ev = why ? engine_evidence(r, t) : NULL;
			rc = ev ? engine_decide_end(r, REIN_RUN_NEEDS_REVIEW, why, ev) : REIN_ENOMEM;
			rein_free(why);
			t->state = T_DONE;
			return rc == REIN_OK ? rc : rein_err_set(err, rc, "out of memory");
		}
		return engine_retry_failed(r, t, &(engine_retry){.policy = &tool->retry, .explain = true},
					   at, data, err);
	}
	if (evt == REIN_EV_TOOL_BACKOFF) {
		if (t->state != T_BACKOFF)
			goto order;
		engine_retry_sleep(t, data);
		return REIN_OK;
	}
	if (evt == REIN_EV_TOOL_FALLBACK) {
		if (t->state != T_GIVEUP)
			goto order;
		const char *kind = json_string_value(json_object_get(data, "kind"));
		if (kind && strcmp(kind, "tool") == 0) {
			t->tool = tool->fallback_tool;
			t->fb_depth++;
			t->state = T_READY;
			return REIN_OK;
		}
		json_t *res = json_object_get(data, "result");
		if (kind && strcmp(kind, "cached") == 0 && (res == NULL || json_is_null(res))) {
			char *why = rein_sprintf("%s; no cached result to fall back on", t->error);
			int rc = why ? engine_step_error(r, ti, why, err) : REIN_ENOMEM;
			rein_free(why);
			return rc;
		}
		json_decref(t->result);
		t->result = json_incref(res ? (json_t *)res : json_null());
		t->state = T_FALLEN;
		return REIN_OK;
	}
order:
	return rein_err_set(err, REIN_ECORRUPT, "run %s: %s for '%s' out of order", r->id, type,
			    st->name);
}

int engine_emit_backoff(rein_cmd *cmd, rein_event_type type, const thread *t, int64_t now,
			rein_err *err)
{
	assert(cmd != NULL && (type == REIN_EV_TOOL_BACKOFF || type == REIN_EV_MODEL_BACKOFF) && t != NULL &&
	       t->state == T_BACKOFF);
	return engine_emit(cmd, type, t->step,
			   json_pack("{s:i, s:I, s:I}", "attempt", t->attempts, "delay_ms",
				     (json_int_t)t->delay_ms, "due_at", (json_int_t)(now + t->delay_ms)),
			   err);
}

int engine_poll_tool(rein_run *r, int ti, int64_t now, rein_cmd *cmd, int64_t *due, bool *busy,
		     rein_err *err)
{
	assert(r != NULL && ti >= 0 && (size_t)ti < r->nth && cmd != NULL && due && busy);
	thread *t = &r->th[ti];
	const rein_tool *tool = engine_cur_tool(r, t);
	int s = t->step, rc;
	switch (t->state) {
	case T_READY: /* the step's call, through the one path of a proposed call */
		return engine_propose(r, ti, ENGINE_FROM_STEP, cmd, err);
	case T_APPROVAL: /* waits for a decision: its alert, its SLA */
		return engine_poll_approval(r, ti, now, cmd, due, err);
	case T_CALL:
		if (t->in_doubt) {
			if (tool->idem == REIN_IDEM_NONE) {
				char *why = rein_sprintf(
					"tool '%s': call %s was in flight when the process stopped; the "
					"tool does not honour idempotency keys, so it is not sent again",
					tool->name, t->key);
				json_t *ev = engine_evidence(r, t);
				/* the attempt that was out counts, with what is known of it */
				if (ev && (json_object_set_new(ev, "attempts", json_integer(t->attempts + 1)) ||
					   json_object_set_new(ev, "last_error", json_string(
						t->error ? t->error : "the process stopped during the call; "
						"its outcome is unknown")))) {
					json_decref(ev);
					ev = NULL;
				}
				rc = engine_emit(cmd, REIN_EV_RUN_ENDED, -1,
					  why && ev ? json_pack("{s:s, s:s, s:O}", "status", "needs_review",
							       "reason", why, "output", ev) : NULL,
					  err);
				rein_free(why);
				json_decref(ev);
				return rc;
			}
			rc = engine_emit(cmd, REIN_EV_TOOL_ATTEMPT, s,
				  json_pack("{s:i, s:s, s:s, s:b, s:b}", "attempt", t->attempts + 1,
					    "outcome", "in_doubt", "error",
					    "the process stopped during the call", "transient", 1,
					    "ambiguous", 1),
				  err);
			return rc;
		}
		if (t->killed) { /* held: looked at again in a while (the runner's kill.lifted) */
			int64_t d = now + ENGINE_KILL_RECHECK_MS;
			if (d < *due)
				*due = d;
			return REIN_OK;
		}
		if (t->issued) {
			*busy = true;
			return REIN_OK;
		}
		t->issued = true;
		cmd->kind = REIN_CMD_EXEC;
		cmd->step = s;
		return REIN_OK;
	case T_BACKOFF:
	case T_SLEEPING:
		return engine_retry_poll(r, ti, &(engine_retry){.backoff_type = REIN_EV_TOOL_BACKOFF}, now, cmd,
					 due, err);
	case T_GIVEUP:
		if (r->spec->steps[s].kind == REIN_STEP_AGENT) { /* the model hears of it */
			const char *id = json_string_value(json_object_get(json_array_get(t->calls, t->idx), "id"));
			rc = engine_emit(cmd, REIN_EV_TOOL_RESULT, s,
				  json_pack("{s:s?, s:s, s:s?}", "call_id", id, "tool", tool->name, "error",
					    t->error),
				  err);
			return rc;
		}
		switch (tool->fallback) {
		case REIN_FALLBACK_UNAVAILABLE:
			rc = engine_emit(cmd, REIN_EV_TOOL_FALLBACK, s,
				  json_pack("{s:s, s:s, s:{s:b, s:s, s:s?}}", "kind", "unavailable", "from",
					    tool->name, "result", "unavailable", 1, "tool", tool->name,
					    "error", t->error),
				  err);
			return rc;
		case REIN_FALLBACK_TOOL:
			if (t->fb_depth < (int)r->spec->ntools) {
				rc = engine_emit(cmd, REIN_EV_TOOL_FALLBACK, s,
					  json_pack("{s:s, s:s, s:s, s:s?}", "kind", "tool", "from", tool->name,
						    "to", r->spec->tools[tool->fallback_tool].name, "error",
						    t->error),
					  err);
				return rc;
			}
			break;
		case REIN_FALLBACK_CACHED:
			if (t->issued) {
				*busy = true;
				return REIN_OK;
			}
			t->issued = true; /* the runner answers with tool.fallback {cached} */
			cmd->kind = REIN_CMD_EXEC;
			cmd->step = s;
			return REIN_OK;
		default:
			break;
		}
		{
			char *msg = rein_sprintf("tool '%s': %s", tool->name, t->error ? t->error : "failed");
			rc = engine_emit(cmd, REIN_EV_STEP_FAILED, s, msg ? json_pack("{s:s}", "error", msg) : NULL,
					 err);
			rein_free(msg);
			return rc;
		}
	case T_FALLEN:
		rc = engine_emit(cmd, REIN_EV_STEP_COMPLETED, s,
			  json_pack("{s:O, s:s}", "out", t->result, "fallback",
				    tool->fallback == REIN_FALLBACK_CACHED ? "cached" : "unavailable"),
			  err);
		return rc;
	}
	return REIN_OK;
}

int rein_run_tool_call(const rein_run *r, int step, rein_tool_call *call)
{
	assert(r != NULL && call != NULL);
	int ti = engine_thread_at(r, step);
	if (ti < 0)
		return REIN_EINVAL;
	const thread *t = &r->th[ti];
	memset(call, 0, sizeof *call);
	call->tool = t->tool;
	call->key = t->key;
	call->args = t->args;
	call->attempt = t->attempts + 1;
	call->cached = t->state == T_GIVEUP;
	return REIN_OK;
}

void rein_run_recovered(rein_run *r, int64_t now)
{
	assert(r != NULL);
	for (size_t i = 0; i < r->nth; i++) {
		thread *t = &r->th[i];
		if (t->state == T_CALL && t->killed) {
			/* held by a switch: known not sent, not in doubt */
		} else if (t->state == T_CALL || (t->state == T_SLEEPING && t->due <= now)) {
			t->state = T_CALL;
			t->in_doubt = true;
		}
		t->issued = false;
	}
}

/* ---- the kill switch and shadow mode --------------------------------------- */

int engine_apply_kill(rein_run *r, int ti, rein_event_type evt, int64_t at, const json_t *data,
		      rein_err *err)
{
	assert(r != NULL && ti >= 0 && (size_t)ti < r->nth);
	thread *t = &r->th[ti];
	const rein_step *st = &r->spec->steps[t->step];
	const char *key = json_string_value(json_object_get(data, "key"));
	if ((st->kind != REIN_STEP_TOOL && st->kind != REIN_STEP_AGENT) || t->state != T_CALL ||
	    key == NULL || strcmp(key, t->key) != 0 ||
	    (evt == REIN_EV_KILL_HELD && t->killed) || (evt == REIN_EV_KILL_LIFTED && !t->killed) ||
	    (evt == REIN_EV_TOOL_SHADOWED && t->killed))
		return rein_err_set(err, REIN_ECORRUPT, "run %s: %s for '%s' out of order", r->id,
				    rein_event_name(evt), st->name);
	if (evt == REIN_EV_TOOL_SHADOWED)
		return REIN_OK; /* a record: its answer follows as the call's outcome */
	t->issued = false;
	t->killed = evt == REIN_EV_KILL_HELD;
	t->kill_at = at;
	if (evt == REIN_EV_KILL_LIFTED)
		return REIN_OK;
	char *why = rein_sprintf("killed: %s (switch %lld)",
				 json_string_value(json_object_get(data, "reason")),
				 (long long)json_integer_value(json_object_get(data, "switch")));
	rein_free(r->kill_reason);
	r->kill_reason = why;
	return why ? REIN_OK : rein_err_set(err, REIN_ENOMEM, "out of memory");
}

bool rein_run_killed(const rein_run *r, int step)
{
	assert(r != NULL);
	int ti = engine_thread_at(r, step);
	return ti >= 0 && r->th[ti].state == T_CALL && r->th[ti].killed;
}

bool rein_run_shadow(const rein_run *r)
{
	assert(r != NULL);
	return r->shadow;
}

const char *rein_run_tenant(const rein_run *r)
{
	assert(r != NULL);
	return r->tenant;
}

/* ---- resolving needs_review (rein review) ---------------------------------- */

/* The tool step thread whose call the needs_review evidence names, or -1. */
static int review_thread(const rein_run *r)
{
	const char *key = json_string_value(json_object_get(r->output, "key"));
	for (size_t i = 0; key && i < r->nth; i++) {
		const thread *t = &r->th[i];
		if (t->step >= 0 && r->spec->steps[t->step].kind == REIN_STEP_TOOL &&
		    (t->state == T_CALL || t->state == T_DONE) && strcmp(t->key, key) == 0)
			return (int)i;
	}
	return -1;
}

int rein_run_review_check(const rein_run *r, const json_t *review, rein_err *err)
{
	assert(r != NULL && review != NULL);
	if (!r->ended || r->status != REIN_RUN_NEEDS_REVIEW)
		return rein_err_set(err, REIN_EINVAL, "run %s is %s, not needs_review", r->id,
				    rein_status_name(rein_run_status(r)));
	int ti = review_thread(r);
	if (ti < 0)
		return rein_err_set(err, REIN_EINVAL, "run %s: the call under review is not a tool "
				    "step's (an agent's call cannot be reviewed)", r->id);
	const rein_step *st = &r->spec->steps[r->th[ti].step];
	const char *action = json_string_value(json_object_get(review, "action"));
	if (action && strcmp(action, "done") == 0) {
		const json_t *res = json_object_get(review, "result");
		char *why = NULL;
		const rein_tool *tool = engine_cur_tool(r, &r->th[ti]);
		/* the tool's answer as the tool would have given it, then the step's */
		int rc = res == NULL ? REIN_ESCHEMA
			 : tool ? engine_schema_check(tool->output, res, &why,
						      "does not match tool '%s''s output schema",
						      tool->name)
				: REIN_OK;
		if (rc == REIN_OK && res)
			rc = engine_check_output(st, res, &why);
		if (rc == REIN_ESCHEMA)
			rc = rein_err_set(err, REIN_ESCHEMA, "step '%s': the result %s", st->name,
					  why ? why : "is missing (--done JSON)");
		else if (rc != REIN_OK)
			rc = rein_err_set(err, rc, "out of memory");
		rein_free(why);
		return rc;
	}
	if (action && strcmp(action, "retry") == 0)
		return REIN_OK;
	if (action && strcmp(action, "fail") == 0) {
		const char *why = json_string_value(json_object_get(review, "reason"));
		return why && *why ? REIN_OK
				   : rein_err_set(err, REIN_EINVAL, "a failing review needs a reason");
	}
	return rein_err_set(err, REIN_EINVAL, "review action '%s': done, retry or fail",
			    action ? action : "");
}

int engine_apply_ended(rein_run *r, rein_event_type evt, int64_t at, const json_t *data,
		       rein_err *err)
{
	assert(r != NULL && r->ended);
	if (evt == REIN_EV_INBOX_RECEIVED) {
		const char *type = json_string_value(json_object_get(data, "type"));
		const json_t *d = json_object_get(data, "data");
		rein_err e = {0};
		/* anything else reaching an ended run, or a review it does not
		 * accept, is recorded and changes nothing */
		if (type && strcmp(type, "review") == 0 && d && r->review == NULL &&
		    rein_run_review_check(r, d, &e) == REIN_OK) {
			const char *by = json_string_value(json_object_get(d, "by"));
			if (by == NULL)
				by = json_string_value(json_object_get(data, "sender"));
			r->review = json_pack("{s:O, s:s?}", "review", (json_t *)d, "by", by);
			if (r->review == NULL)
				return rein_err_set(err, REIN_ENOMEM, "out of memory");
		}
		rein_err_clear(&e);
		return REIN_OK;
	}
	assert(evt == REIN_EV_RUN_REVIEWED);
	int ti = r->status == REIN_RUN_NEEDS_REVIEW ? review_thread(r) : -1;
	const char *action = json_string_value(json_object_get(data, "action"));
	if (ti < 0 || action == NULL)
		return rein_err_set(err, REIN_ECORRUPT, "run %s: run.reviewed for no call under review",
				    r->id);
	/* the run is open again, its end undecided */
	json_decref(r->review);
	r->review = NULL;
	r->ended = r->ending = false;
	r->status = REIN_RUN_RUNNING;
	json_decref(r->output);
	json_decref(r->end_output);
	r->output = r->end_output = NULL;
	rein_free(r->reason);
	rein_free(r->end_reason);
	r->reason = r->end_reason = NULL;
	if (r->spec->timeout_ms) /* its time limit starts again with the review */
		r->deadline = at + r->spec->timeout_ms;
	thread *t = &r->th[ti];
	t->state = T_CALL;
	t->in_doubt = false;
	t->issued = false;
	if (strcmp(action, "done") == 0) {
		json_t *res = json_object_get(data, "result");
		return engine_route(r, ti, res ? res : json_null(), err);
	}
	if (strcmp(action, "fail") == 0) {
		const char *why = json_string_value(json_object_get(data, "reason"));
		const char *by = json_string_value(json_object_get(data, "by"));
		char *msg = rein_sprintf("failed on review%s%s: %s", by ? " by " : "", by ? by : "",
					 why ? why : "no reason given");
		int rc = msg ? engine_step_error(r, ti, msg, err)
			     : rein_err_set(err, REIN_ENOMEM, "out of memory");
		rein_free(msg);
		return rc;
	}
	return REIN_OK; /* retry: the next poll sends it again, same key */
}

int engine_poll_review(rein_run *r, rein_cmd *cmd, rein_err *err)
{
	assert(r != NULL && r->ended && r->review != NULL && cmd != NULL);
	int ti = review_thread(r);
	const json_t *rv = json_object_get(r->review, "review");
	if (ti < 0)
		return REIN_OK; /* checked when it was accepted */
	json_t *d = json_pack("{s:O, s:s?, s:s}", "action", json_object_get(rv, "action"), "by",
			      json_string_value(json_object_get(r->review, "by")), "key", r->th[ti].key);
	if (d && json_object_get(rv, "result"))
		json_object_set(d, "result", json_object_get(rv, "result"));
	if (d && json_object_get(rv, "reason"))
		json_object_set(d, "reason", json_object_get(rv, "reason"));
	return engine_emit(cmd, REIN_EV_RUN_REVIEWED, r->th[ti].step, d, err);
}
