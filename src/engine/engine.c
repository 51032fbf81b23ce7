/*
 * The pure run state machine. A run has threads: thread 0 is the main flow,
 * a parallel step gives each branch a thread of its own and waits for all of
 * them (the join) before it completes. Every step completes through exactly
 * one step.completed event; decisions that need no outside input (routing,
 * parallel fan-out, the end) are made while folding events.
 */
#include "engine_int.h"

#include <stdarg.h>
#include "schema.h"

void rein_cmd_clear(rein_cmd *c)
{
	assert(c != NULL);
	json_decref(c->data);
	memset(c, 0, sizeof *c);
}

int rein_run_new(const rein_spec *spec, rein_script *sandbox, const char *id, rein_run **out)
{
	assert(spec != NULL && sandbox != NULL && id != NULL && out != NULL);
	rein_run *r = rein_calloc(1, sizeof *r);
	if (r == NULL)
		return REIN_ENOMEM;
	r->spec = spec;
	r->sb = sandbox;
	r->id = rein_strdup(id);
	r->outs = rein_calloc(spec->nsteps, sizeof *r->outs);
	r->visits = rein_calloc(spec->nsteps, sizeof *r->visits);
	if (r->id == NULL || r->outs == NULL || r->visits == NULL) {
		rein_run_free(r);
		return REIN_ENOMEM;
	}
	r->status = REIN_RUN_RUNNING;
	*out = r;
	return REIN_OK;
}

void rein_run_free(rein_run *r)
{
	if (r == NULL)
		return;
	engine_label_free(r);
	if (r->outs)
		for (size_t i = 0; i < r->spec->nsteps; i++)
			json_decref(r->outs[i]);
	for (size_t i = 0; i < r->nth; i++) {
		json_decref(r->th[i].result);
		json_decref(r->th[i].last);
		json_decref(r->th[i].args);
		json_decref(r->th[i].msgs);
		json_decref(r->th[i].calls);
		rein_free(r->th[i].error);
		rein_free(r->th[i].pol_why);
		engine_approval_free_thread(&r->th[i]);
	}
	rein_free(r->th);
	rein_free(r->outs);
	rein_free(r->visits);
	rein_free(r->id);
	json_decref(r->input);
	json_decref(r->runinfo);
	json_decref(r->output);
	json_decref(r->end_output);
	json_decref(r->review);
	rein_free(r->reason);
	rein_free(r->kill_reason);
	rein_free(r->tenant);
	rein_free(r->end_reason);
	rein_free(r->last_error);
	json_decref(r->vars);
	rein_free(r->fail_reason);
	json_decref(r->signals);
	json_decref(r->sig_seen);
	json_decref(r->sig_refused);
	engine_policy_free(r);
	engine_approval_free(r);
	rein_free(r);
}

/* ---- helpers ------------------------------------------------------------ */

static const json_t *step_out_cb(void *ud, const char *name)
{
	rein_run *r = ud;
	int i = engine_step_find(r, name);
	return i >= 0 ? r->outs[i] : NULL;
}

static void make_ctx(rein_run *r, const json_t *out, json_t *vars, rein_script_ctx *ctx)
{
	memset(ctx, 0, sizeof *ctx);
	ctx->input = r->input;
	ctx->run = r->runinfo;
	ctx->out = out;
	ctx->step_out = step_out_cb;
	ctx->ud = r;
	ctx->vars = vars;
	ctx->limits = r->spec->limits;
	ctx->on_read = engine_label_read;
}

/* {k: v}, stealing v; NULL when v is NULL or memory runs out. (json_pack
 * parses its format on every call: too slow for the per-step path.) */
static json_t *obj1(const char *k, json_t *v)
{
	json_t *o = v ? json_object() : NULL;
	if (o == NULL) {
		json_decref(v);
		return NULL;
	}
	if (json_object_set_new_nocheck(o, k, v) != 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* Adds k: v to o (stealing v); false and o freed when that fails. */
static bool put(json_t **o, const char *k, json_t *v)
{
	if (*o == NULL || v == NULL || json_object_set_new_nocheck(*o, k, v) != 0) {
		if (*o == NULL || v == NULL)
			json_decref(v);
		json_decref(*o);
		*o = NULL;
		return false;
	}
	return true;
}

static json_t *str_or_null(const char *s) { return s ? json_string(s) : json_null(); }

/* Globals a step sees beyond input/steps/run/out: `why` (the last step error)
 * and `requester`. Built once and shared (the sandbox only reads it) until
 * engine_step_error or engine_policy_start drops it. */
static json_t *make_vars(rein_run *r)
{
	if (r->vars == NULL) {
		json_t *v = obj1("why", str_or_null(r->last_error));
		if (v && r->requester)
			put(&v, "requester", json_incref(r->requester));
		r->vars = v;
	}
	return json_incref(r->vars);
}

int engine_eval_template(rein_run *r, const json_t *tmpl, const json_t *out, json_t **res,
			 rein_err *err)
{
	assert(r != NULL && res != NULL);
	rein_script_ctx ctx;
	json_t *vars = make_vars(r);
	if (vars == NULL)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	make_ctx(r, out, vars, &ctx);
	int rc = rein_script_template(r->sb, tmpl, &ctx, res, err);
	json_decref(vars);
	return rc;
}

int engine_eval_expr(rein_run *r, const char *expr, const json_t *out, json_t **res,
		     rein_err *err)
{
	assert(r != NULL && expr != NULL && res != NULL);
	rein_script_ctx ctx;
	json_t *vars = make_vars(r);
	if (vars == NULL)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	make_ctx(r, out, vars, &ctx);
	int rc = rein_script_eval(r->sb, expr, REIN_SCRIPT_EXPR, &ctx, res, err);
	json_decref(vars);
	return rc;
}

char *engine_json_text(const json_t *j)
{
	if (json_is_string(j))
		return rein_strdup(json_string_value(j));
	return rein_json_dump(j);
}

int engine_set_str(char **dst, const char *s)
{
	assert(dst != NULL);
	rein_free(*dst);
	*dst = s ? rein_strdup(s) : NULL;
	return s && *dst == NULL ? REIN_ENOMEM : REIN_OK;
}

int engine_decide_end(rein_run *r, rein_status st, const char *reason, json_t *output)
{
	assert(r != NULL && st >= REIN_RUN_SUCCEEDED);
	if (r->ending || r->ended) {
		json_decref(output);
		return REIN_OK;
	}
	if (engine_set_str(&r->end_reason, reason) != REIN_OK) {
		json_decref(output);
		return REIN_ENOMEM;
	}
	r->ending = true;
	r->end_status = st;
	r->end_output = output;
	return REIN_OK;
}

static int new_thread(rein_run *r, int parent, int branch)
{
	if (r->nth == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 1; /* most runs never fork */
		thread *th = rein_realloc(r->th, cap * sizeof *th);
		if (th == NULL)
			return -1;
		r->th = th;
		r->cap = cap;
	}
	thread *t = &r->th[r->nth];
	memset(t, 0, sizeof *t);
	t->parent = parent;
	t->branch = branch;
	t->step = -1;
	if (parent >= 0)
		t->pgen = r->th[parent].gen;
	return (int)r->nth++;
}

static int enter(rein_run *r, int t, int target, rein_err *err);

/* A branch thread finished: count it off its parent's join. */
static int branch_done(rein_run *r, int t, rein_err *err)
{
	int p = r->th[t].parent;
	if (p < 0)
		return REIN_OK;
	thread *pt = &r->th[p];
	if (--pt->pending > 0)
		return REIN_OK;
	const rein_step *ps = &r->spec->steps[pt->step];
	json_t *out = json_object();
	if (out == NULL)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	for (size_t i = 0; i < r->nth; i++) {
		thread *c = &r->th[i];
		if (c->parent == p && c->pgen == pt->gen && c->state == T_DONE) {
			const char *bname = r->spec->steps[ps->u.parallel.branches[c->branch]].name;
			if (json_object_set(out, bname, c->result ? c->result : json_null()) != 0) {
				json_decref(out);
				return rein_err_set(err, REIN_ENOMEM, "out of memory");
			}
		}
	}
	json_decref(pt->result);
	pt->result = out;
	pt->state = T_JOINED;
	return REIN_OK;
}

/* The step on thread t completed with out: remember it and follow `next`. */
int engine_route(rein_run *r, int t, json_t *out, rein_err *err)
{
	assert(r != NULL && t >= 0 && (size_t)t < r->nth && r->th[t].step >= 0);
	int s = r->th[t].step;
	const rein_step *st = &r->spec->steps[s];
	json_decref(r->outs[s]);
	r->outs[s] = json_incref(out);
	json_decref(r->th[t].last);
	r->th[t].last = json_incref(out);
	if (st->nnext == 0) { /* the end of a parallel branch */
		r->th[t].state = T_DONE;
		json_decref(r->th[t].result);
		r->th[t].result = json_incref(out);
		return branch_done(r, t, err);
	}
	for (size_t i = 0; i < st->nnext; i++) {
		const rein_next *n = &st->next[i];
		if (n->when) {
			rein_script_ctx ctx;
			json_t *vars = make_vars(r), *v = NULL;
			rein_err e = {0};
			if (vars == NULL)
				return rein_err_set(err, REIN_ENOMEM, "out of memory");
			make_ctx(r, out, vars, &ctx);
			int rc = rein_script_eval(r->sb, n->when, REIN_SCRIPT_EXPR, &ctx, &v, &e);
			json_decref(vars);
			if (rc == REIN_ENOMEM)
				return rein_err_set(err, rc, "out of memory");
			if (rc != REIN_OK) {
				char *msg = rein_sprintf("when '%s': %s", n->when, e.msg);
				rc = msg ? engine_step_error(r, t, msg, err) : REIN_ENOMEM;
				rein_free(msg);
				return rc;
			}
			bool truthy = !(json_is_null(v) || json_is_false(v));
			json_decref(v);
			if (!truthy)
				continue;
		}
		return enter(r, t, n->target, err);
	}
	return engine_step_error(r, t, "no next entry matched", err);
}

/* The step on thread t failed: take its on_fail path, or fail the run. */
int engine_step_error(rein_run *r, int t, const char *msg, rein_err *err)
{
	assert(r != NULL && t >= 0 && (size_t)t < r->nth && msg != NULL);
	const rein_step *st = &r->spec->steps[r->th[t].step];
	char *failed = rein_sprintf("step '%s' failed: %s", st->name, msg);
	rein_free(r->fail_reason);
	r->fail_reason = failed;
	json_decref(r->vars); /* its why changes */
	r->vars = NULL;
	if (failed == NULL || engine_set_str(&r->last_error, msg) != REIN_OK)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	const rein_step_model *m = rein_step_model_of(st);
	if (m && m->optional && strncmp(msg, "budget:", 7) == 0)
		return engine_route(r, t, json_null(), err); /* the degrade path: skip it */
	if (strncmp(msg, "timeout:", 8) == 0 && st->kind == REIN_STEP_CODE) {
		/* the run's deadline passed inside a script: the run's time is up,
		 * no on_fail path runs (rein_run_exec) */
		r->th[t].state = T_DONE;
		return engine_decide_end(r, REIN_RUN_FAILED, msg, json_null()) == REIN_OK
			       ? REIN_OK
			       : rein_err_set(err, REIN_ENOMEM, "out of memory");
	}
	if (st->on_fail >= 0)
		return enter(r, t, st->on_fail, err);
	char *reason = rein_sprintf("step '%s' failed: %s", st->name, msg);
	/* a model that cannot give a valid answer, or a spent budget, is a case
	 * for a human, not a broken run */
	bool escalate = st->kind == REIN_STEP_LLM || st->kind == REIN_STEP_AGENT ||
			st->kind == REIN_STEP_VERIFY ||
			strncmp(msg, "budget:", 7) == 0;
	int rc = reason ? engine_decide_end(r, escalate ? REIN_RUN_ESCALATED : REIN_RUN_FAILED,
					    reason, json_null())
			: REIN_ENOMEM;
	rein_free(reason);
	r->th[t].state = T_DONE;
	return rc == REIN_OK ? rc : rein_err_set(err, rc, "out of memory");
}

static int enter_end(rein_run *r, int t, const rein_step *st, rein_err *err)
{
	json_t *out = NULL, *reason = NULL;
	rein_err e = {0};
	int rc = REIN_OK;
	r->th[t].state = T_DONE;
	if (st->u.end.output) {
		if ((rc = engine_eval_template(r, st->u.end.output, r->th[t].last, &out, &e)) != REIN_OK)
			goto bad;
	} else {
		out = json_incref(r->th[t].last ? r->th[t].last : json_null());
	}
	if (st->u.end.reason && (rc = engine_eval_template(r, st->u.end.reason, r->th[t].last, &reason, &e)) != REIN_OK)
		goto bad;
	if (st->u.end.status == REIN_RUN_SUCCEEDED && r->spec->output_schema) {
		char *msg = NULL;
		rc = engine_schema_check(r->spec->output_schema, out, &msg,
				       "output does not match the output schema");
		if (rc == REIN_ESCHEMA) {
			rc = engine_decide_end(r, REIN_RUN_FAILED, msg, out);
			rein_free(msg);
			json_decref(reason);
			return rc == REIN_OK ? rc : rein_err_set(err, rc, "out of memory");
		}
		if (rc != REIN_OK)
			goto bad;
	}
	char *rtext = reason ? engine_json_text(reason) : NULL;
	/* an end that is not a success and gives no reason: the step failure
	 * that led here, if one did (else the run would say nothing of why) */
	const char *why = rtext ? rtext
		   : st->u.end.status != REIN_RUN_SUCCEEDED && !st->u.end.reason ? r->fail_reason
										 : NULL;
	rc = reason && rtext == NULL ? REIN_ENOMEM : engine_decide_end(r, st->u.end.status, why, out);
	if (reason && rtext == NULL)
		json_decref(out);
	rein_free(rtext);
	json_decref(reason);
	return rc == REIN_OK ? rc : rein_err_set(err, rc, "out of memory");
bad:
	json_decref(out);
	json_decref(reason);
	if (rc == REIN_ENOMEM)
		return rein_err_set(err, rc, "out of memory");
	char *msg = rein_sprintf("end step '%s': %s", st->name, e.msg);
	rc = msg ? engine_decide_end(r, REIN_RUN_FAILED, msg, json_null()) : REIN_ENOMEM;
	rein_free(msg);
	return rc == REIN_OK ? rc : rein_err_set(err, rc, "out of memory");
}

/* Thread t enters step target. */
static int enter(rein_run *r, int t, int target, rein_err *err)
{
	assert(r != NULL && t >= 0 && (size_t)t < r->nth);
	assert(target >= 0 && (size_t)target < r->spec->nsteps);
	const rein_step *st = &r->spec->steps[target];
	r->steps_taken++;
	if (r->steps_taken > r->spec->max_steps) {
		char *msg = rein_sprintf("budget: max_steps %lld exceeded entering '%s'",
					 (long long)r->spec->max_steps, st->name);
		int rc = msg ? engine_decide_end(r, REIN_RUN_FAILED, msg, json_null()) : REIN_ENOMEM;
		rein_free(msg);
		r->th[t].state = T_DONE;
		return rc == REIN_OK ? rc : rein_err_set(err, rc, "out of memory");
	}
	r->visits[target]++;
	r->th[t].step = target;
	r->th[t].issued = false;
	if (st->max_visits > 0 && r->visits[target] > st->max_visits) {
		char *msg = rein_sprintf("step '%s' exceeded max_visits %d", st->name,
					 st->max_visits);
		int rc = msg ? engine_step_error(r, t, msg, err) : REIN_ENOMEM;
		rein_free(msg);
		return rc;
	}
	switch (st->kind) {
	case REIN_STEP_CODE:
	case REIN_STEP_WAIT:
		r->th[t].state = st->kind == REIN_STEP_WAIT && st->u.wait.signal ? T_SIGNAL : T_READY;
		r->th[t].due = 0;
		return REIN_OK;
	case REIN_STEP_TOOL: {
		thread *th = &r->th[t];
		th->state = T_READY;
		th->tool = st->u.tool.tool;
		th->fb_depth = 0;
		th->attempts = 0;
		th->in_doubt = false;
		json_decref(th->args);
		th->args = NULL;
		rein_free(th->error);
		th->error = NULL;
		return REIN_OK;
	}
	case REIN_STEP_LLM:
	case REIN_STEP_AGENT:
	case REIN_STEP_VERIFY: {
		thread *th = &r->th[t];
		const rein_step_model *sm = rein_step_model_of(st); /* verify: NULL without a model */
		th->s_tokens = th->s_calls = th->s_tools = th->s_started = 0;
		th->s_cost = 0;
		th->phase = 0;
		th->turns = 0;
		th->refused = 0;
		th->idx = 0;
		json_decref(th->calls);
		th->calls = NULL;
		th->state = T_READY;
		th->tier = sm ? sm->tier : -1;
		th->repairs = 0;
		th->attempts = 0;
		th->in_doubt = false;
		json_decref(th->msgs);
		th->msgs = NULL;
		json_decref(th->args);
		th->args = NULL;
		rein_free(th->error);
		th->error = NULL;
		return REIN_OK;
	}
	case REIN_STEP_END:
		return enter_end(r, t, st, err);
	case REIN_STEP_PARALLEL:
		r->th[t].state = T_JOIN;
		r->th[t].gen++;
		r->th[t].pending = (int)st->u.parallel.nbranches;
		for (size_t i = 0; i < st->u.parallel.nbranches; i++) {
			int c = new_thread(r, t, (int)i);
			if (c < 0)
				return rein_err_set(err, REIN_ENOMEM, "out of memory");
			int rc = enter(r, c, st->u.parallel.branches[i], err);
			if (rc != REIN_OK)
				return rc;
		}
		return REIN_OK;
	}
	return rein_err_set(err, REIN_EINVAL, "step '%s' has no kind", st->name);
}

/* The live thread currently at step s, or -1. */
int engine_thread_at(const rein_run *r, int s)
{
	assert(r != NULL);
	for (size_t i = r->nth; i-- > 0;)
		if (r->th[i].step == s && r->th[i].state != T_DONE && r->th[i].state != T_JOIN)
			return (int)i;
	return -1;
}

int engine_emit(rein_cmd *c, rein_event_type type, int step, json_t *data, rein_err *err)
{
	assert(c != NULL && type >= 0 && type < REIN_EV__COUNT && c->kind == REIN_CMD_NONE);
	if (data == NULL)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	c->kind = REIN_CMD_EMIT;
	c->type = rein_event_name(type);
	c->step = step;
	c->data = data;
	return REIN_OK;
}

/* ---- apply -------------------------------------------------------------- */

static int apply_event(rein_run *r, rein_event_type evt, const char *step, int64_t at,
		       const json_t *data, rein_err *err)
{
	const char *type = rein_event_name(evt);
	if (evt == REIN_EV_RUN_RESUMED)
		return REIN_OK;
	if (evt == REIN_EV_RUN_STARTED) {
		if (r->started)
			return rein_err_set(err, REIN_ECORRUPT, "run %s: second run.started", r->id);
		r->started = true;
		r->input = json_incref(json_object_get(data, "input"));
		if (r->input == NULL)
			r->input = json_null();
		json_t *ri = json_object();
		if (put(&ri, "id", json_string(r->id)) &&
		    put(&ri, "workflow", json_string(r->spec->name ? r->spec->name : "")))
			put(&ri, "version", json_string(r->spec->version));
		r->runinfo = ri;
		if (r->runinfo == NULL)
			return rein_err_set(err, REIN_ENOMEM, "out of memory");
		r->started_at = at;
		r->clock_ms = at;
		int prc = engine_policy_start(r, data, err);
		if (prc != REIN_OK)
			return prc;
		r->deadline = r->spec->timeout_ms ? at + r->spec->timeout_ms : 0;
		r->shadow = r->spec->shadow || json_is_true(json_object_get(data, "shadow"));
		const char *tenant = json_string_value(
			json_object_get(json_object_get(data, "requester"), "tenant"));
		if (tenant && engine_set_str(&r->tenant, tenant) != REIN_OK)
			return rein_err_set(err, REIN_ENOMEM, "out of memory");
		int t = new_thread(r, -1, 0);
		if (t < 0)
			return rein_err_set(err, REIN_ENOMEM, "out of memory");
		return enter(r, t, r->spec->start, err);
	}
	if (!r->started)
		return rein_err_set(err, REIN_ECORRUPT, "run %s: %s before run.started", r->id, type);
	if (r->ended && (evt == REIN_EV_INBOX_RECEIVED || evt == REIN_EV_RUN_REVIEWED))
		return engine_apply_ended(r, evt, at, data, err); /* a needs_review resolution */
	if (r->ended)
		return rein_err_set(err, REIN_ECORRUPT, "run %s: %s after run.ended", r->id, type);
	if (evt == REIN_EV_RUN_ENDED) {
		const char *st = json_string_value(json_object_get(data, "status"));
		int s = st ? rein_status_parse(st) : -1;
		if (s < REIN_RUN_SUCCEEDED)
			return rein_err_set(err, REIN_ECORRUPT, "run %s: run.ended with bad status",
					    r->id);
		r->ended = true;
		r->status = (rein_status)s;
		json_t *o = json_object_get(data, "output");
		r->output = json_incref(o ? o : json_null());
		if (engine_set_str(&r->reason, json_string_value(json_object_get(data, "reason"))) != REIN_OK)
			return rein_err_set(err, REIN_ENOMEM, "out of memory");
		return REIN_OK;
	}
	if (evt == REIN_EV_INBOX_RECEIVED)
		return engine_apply_inbox(r, data, err);
	if (evt == REIN_EV_SIGNAL_REFUSED)
		return engine_apply_refused(r, data, err);
	if (evt == REIN_EV_APPROVAL_REFUSED)
		return engine_apply_approval_refused(r, data, err);
	int s = step ? rein_spec_step(r->spec, step) : -1;
	int t = s >= 0 ? engine_thread_at(r, s) : -1;
	if (t < 0)
		return rein_err_set(err, REIN_ECORRUPT, "run %s: %s for step '%s' which is not active",
				    r->id, type, step ? step : "");
	thread *th = &r->th[t];
	const rein_step *st = &r->spec->steps[s];
	int nrc = engine_policy_note(r, evt, at, data, err);
	if (nrc == REIN_OK)
		nrc = engine_label_note(r, t, evt, data, err);
	if (nrc != REIN_OK)
		return nrc;
	if (evt == REIN_EV_POLICY_DECISION)
		return engine_policy_apply(r, t, data, err);
	if (evt >= REIN_EV_APPROVAL_REQUESTED && evt <= REIN_EV_APPROVAL_EXPIRED)
		return engine_apply_approval(r, t, evt, at, data, err);
	if (ENGINE_EV_MODEL(evt))
		return engine_apply_llm(r, t, evt, at, data, err);
	if (ENGINE_EV_TOOL(evt))
		return engine_apply_tool(r, t, evt, at, data, err);
	if (evt == REIN_EV_KILL_HELD || evt == REIN_EV_KILL_LIFTED)
		return engine_apply_kill(r, t, evt, at, data, err);
	if (evt == REIN_EV_STEP_COMPLETED) {
		if (th->state == T_SIGNAL) {
			const json_t *sout = NULL;
			int rc = engine_label_completed(r, t, data, err);
			if (rc == REIN_OK)
				rc = engine_signal_taken(r, t, data, &sout, err);
			if (rc == REIN_OK) {
				rc = engine_route(r, t, (json_t *)sout, err);
				json_decref((json_t *)sout);
			}
			return rc;
		}
		bool ok = (th->state == T_READY &&
			   (st->kind == REIN_STEP_CODE || st->kind == REIN_STEP_VERIFY)) ||
			  th->state == T_FIRED || th->state == T_JOINED ||
			  ((st->kind == REIN_STEP_TOOL || st->kind == REIN_STEP_LLM ||
			    st->kind == REIN_STEP_AGENT || st->kind == REIN_STEP_VERIFY) &&
			   (th->state == T_CALL || th->state == T_SLEEPING || th->state == T_FALLEN));
		if (!ok)
			return rein_err_set(err, REIN_ECORRUPT, "run %s: step.completed for '%s' out of order",
					    r->id, step);
		json_t *out = json_object_get(data, "out");
		if (out == NULL)
			out = json_null();
		char *why = NULL;
		int rc = st->kind == REIN_STEP_TOOL ? engine_check_output(st, out, &why) : REIN_OK;
		if (rc == REIN_ESCHEMA) {
			rc = engine_step_error(r, t, why, err);
			rein_free(why);
			return rc;
		}
		if (rc != REIN_OK)
			return rein_err_set(err, rc, "out of memory");
		if ((rc = engine_label_completed(r, t, data, err)) != REIN_OK)
			return rc;
		return engine_route(r, t, out, err);
	}
	if (evt == REIN_EV_STEP_FAILED) {
		const char *msg = json_string_value(json_object_get(data, "error"));
		return engine_step_error(r, t, msg ? msg : "failed", err);
	}
	if (evt == REIN_EV_TIMER_SCHEDULED && th->state == T_SIGNAL && th->due == 0) {
		th->due = json_integer_value(json_object_get(data, "due_at"));
		return REIN_OK;
	}
	if (evt == REIN_EV_TIMER_FIRED && th->state == T_SIGNAL && th->due > 0)
		return engine_signal_timeout(r, t, err);
	if (evt == REIN_EV_TIMER_SCHEDULED) {
		if (th->state != T_READY || st->kind != REIN_STEP_WAIT)
			return rein_err_set(err, REIN_ECORRUPT, "run %s: timer for '%s' out of order",
					    r->id, step);
		th->state = T_TIMER;
		th->due = json_integer_value(json_object_get(data, "due_at"));
		th->wait_ms = th->due - at;
		return REIN_OK;
	}
	if (evt == REIN_EV_TIMER_FIRED) {
		if (th->state != T_TIMER)
			return rein_err_set(err, REIN_ECORRUPT, "run %s: timer.fired for '%s' out of order",
					    r->id, step);
		th->state = T_FIRED;
		return REIN_OK;
	}
	return rein_err_set(err, REIN_ECORRUPT, "run %s: unknown event type '%s'", r->id, type);
}

int engine_apply_inbox(rein_run *r, const json_t *data, rein_err *err)
{
	assert(r != NULL && r->started && !r->ended);
	const char *type = json_string_value(json_object_get(data, "type"));
	if (type == NULL)
		return rein_err_set(err, REIN_ECORRUPT, "run %s: inbox.received without a type", r->id);
	if (strcmp(type, "cancel") == 0) {
		/* honoured at once: the next poll ends the run, whatever is pending */
		const json_t *d = json_object_get(data, "data");
		const char *reason = json_string_value(json_object_get(d, "reason"));
		if (engine_decide_end(r, REIN_RUN_CANCELLED, reason ? reason : "cancelled on request",
				      json_null()) != REIN_OK)
			return rein_err_set(err, REIN_ENOMEM, "out of memory");
	}
	if (strcmp(type, "signal") == 0)
		return engine_apply_signal(r, data, err);
	if (strcmp(type, "approval") == 0 || strcmp(type, "denial") == 0)
		return engine_approval_inbox(r, data, err);
	/* other types (approvals) are recorded in the log and ignored for now */
	return REIN_OK;
}

int rein_run_apply(rein_run *r, const char *type, const char *step, int64_t at,
		   const json_t *data, rein_err *err)
{
	assert(r != NULL && type != NULL);
	/* one look-up in the table, then the apply dispatches on the enum */
	int evt = rein_event_type_find(type);
	if (evt < 0)
		return rein_err_set(err, REIN_ECORRUPT, "run %s: unknown event type '%s'", r->id, type);
#if ENGINE_CHECKS
	rein_err ce = {0};
	/* the table's reader: every payload applied in a debug build fits its row */
	if (rein_event_check(type, step != NULL, data, &ce) != REIN_OK)
		return rein_err_set(err, REIN_ECORRUPT, "run %s: %s", r->id, ce.msg);
#endif
	int rc = apply_event(r, (rein_event_type)evt, step, at, data, err);
#if ENGINE_CHECKS
	/* the contract executes: after every event the state is consistent */
	if (rc == REIN_OK && !rein_run_check(r, &ce))
		rc = rein_err_set(err, REIN_ECORRUPT, "run %s: after %s: %s", r->id, type, ce.msg);
#endif
	return rc;
}

/* ---- poll --------------------------------------------------------------- */


int rein_run_poll(rein_run *r, int64_t now, rein_cmd *cmd, rein_err *err)
{
	assert(r != NULL && cmd != NULL);
	memset(cmd, 0, sizeof *cmd);
	cmd->step = -1;
	if (r->ended && r->review)
		return engine_poll_review(r, cmd, err);
	if (r->ended || !r->started)
		return REIN_OK;
	if (r->ending) {
		json_t *d = json_object();
		if (put(&d, "status", json_string(rein_status_name(r->end_status))) &&
		    put(&d, "reason", str_or_null(r->end_reason)))
			put(&d, "output", r->end_output ? json_incref(r->end_output) : json_null());
		return engine_emit(cmd, REIN_EV_RUN_ENDED, -1, d, err);
	}
	if (r->deadline && now >= r->deadline) {
		char *msg = rein_sprintf("timeout: the run exceeded timeout_s %lld",
					 (long long)(r->spec->timeout_ms / 1000));
		int rc = engine_emit(cmd, REIN_EV_RUN_ENDED, -1,
				     msg ? json_pack("{s:s, s:s, s:n}", "status", "failed", "reason", msg,
						     "output")
					 : NULL,
				     err);
		rein_free(msg);
		return rc;
	}
	int rc0 = engine_poll_refused(r, cmd, err);
	if (rc0 != REIN_OK || cmd->kind != REIN_CMD_NONE)
		return rc0;
	rc0 = engine_poll_approvals(r, cmd, err);
	if (rc0 != REIN_OK || cmd->kind != REIN_CMD_NONE)
		return rc0;
	int64_t due = r->deadline ? r->deadline : INT64_MAX;
	bool busy = false;
	for (size_t i = 0; i < r->nth; i++) {
		thread *t = &r->th[i];
		int s = t->step;
		const rein_step *st = s >= 0 ? &r->spec->steps[s] : NULL;
		int rc = REIN_OK;
		if (st && st->kind == REIN_STEP_AGENT && t->phase == 1) {
			if (t->state == T_TOOLS)
				rc = engine_step_time_gate(r, (int)i, now, cmd, err);
			if (rc == REIN_OK && cmd->kind == REIN_CMD_NONE)
				rc = t->state == T_TOOLS
					     ? engine_poll_agent_tools(r, (int)i, cmd, err)
					     : engine_poll_tool(r, (int)i, now, cmd, &due, &busy, err);
		} else if (st && (st->kind == REIN_STEP_LLM || st->kind == REIN_STEP_AGENT)) {
			rc = engine_poll_llm(r, (int)i, now, cmd, &due, &busy, err);
		} else if (st && st->kind == REIN_STEP_TOOL) {
			rc = engine_poll_tool(r, (int)i, now, cmd, &due, &busy, err);
		} else if (st && st->kind == REIN_STEP_VERIFY && t->state != T_DONE) {
			rc = engine_poll_verify(r, (int)i, now, cmd, &due, &busy, err);
		} else if (t->state == T_SIGNAL) {
			rc = engine_poll_signal(r, (int)i, now, cmd, &due, err);
		} else {
			goto other;
		}
		if (rc != REIN_OK || cmd->kind != REIN_CMD_NONE)
			return rc;
		continue;
	other:
		switch (t->state) {
		case T_READY:
			if (st->kind == REIN_STEP_CODE) {
				if (t->issued) {
					busy = true;
					break;
				}
				t->issued = true;
				cmd->kind = REIN_CMD_EXEC;
				cmd->step = s;
				return REIN_OK;
			} else { /* wait: work out when */
				json_t *secs = NULL;
				rein_err e = {0};
				rc = engine_eval_template(r, st->u.wait.seconds, t->last, &secs, &e);
				if (rc == REIN_ENOMEM)
					return rein_err_set(err, rc, "out of memory");
				if (rc != REIN_OK || !json_is_number(secs) ||
				    json_number_value(secs) < 0 || json_number_value(secs) > 1e9) {
					char *msg = rein_sprintf(
						"wait seconds: %s",
						rc != REIN_OK ? e.msg : "not a number between 0 and 1e9");
					json_decref(secs);
					rc = engine_emit(cmd, REIN_EV_STEP_FAILED, s,
							 msg ? json_pack("{s:s}", "error", msg) : NULL, err);
					rein_free(msg);
					return rc;
				}
				int64_t ms = (int64_t)(json_number_value(secs) * 1000.0);
				json_decref(secs);
				return engine_emit(cmd, REIN_EV_TIMER_SCHEDULED, s,
					    json_pack("{s:I}", "due_at", (json_int_t)(now + ms)), err);
			}
		case T_TIMER:
			if (now >= t->due)
				return engine_emit(cmd, REIN_EV_TIMER_FIRED, s, json_object(), err);
			if (t->due < due)
				due = t->due;
			break;
		case T_FIRED:
			return engine_emit(cmd, REIN_EV_STEP_COMPLETED, s,
				    json_pack("{s:{s:I}}", "out", "waited_ms", (json_int_t)t->wait_ms),
				    err);
		case T_JOINED:
			return engine_emit(cmd, REIN_EV_STEP_COMPLETED, s, obj1("out", json_incref(t->result)),
					   err);
		default:
			break;
		}
	}
	if (busy) {
		cmd->kind = REIN_CMD_BUSY;
		return REIN_OK;
	}
	cmd->kind = REIN_CMD_SLEEP;
	cmd->due = due;
	return REIN_OK;
}

int engine_schema_check(const rein_schema *s, const json_t *inst, char **why, const char *what, ...)
{
	assert(why != NULL && what != NULL);
	if (s == NULL)
		return REIN_OK;
	char head[512];
	va_list ap;
	va_start(ap, what);
	vsnprintf(head, sizeof head, what, ap);
	va_end(ap);
	rein_err e = {0};
	int rc = rein_schema_check(s, inst, &e, "%s", head);
	if (rc == REIN_ESCHEMA && (*why = rein_strdup(e.msg)) == NULL)
		rc = REIN_ENOMEM;
	rein_err_clear(&e);
	return rc;
}

int engine_check_output(const rein_step *st, const json_t *out, char **why)
{
	assert(st != NULL && why != NULL);
	const rein_schema *s = st->kind == REIN_STEP_CODE   ? st->u.code.out_schema
			       : st->kind == REIN_STEP_TOOL ? st->u.tool.out_schema
							    : NULL;
	return engine_schema_check(s, out, why,
				 "output does not match the step's output schema");
}

int rein_run_exec(rein_run *r, int step, const rein_clock *clock, const char **type,
		  json_t **data, rein_err *err)
{
	assert(r != NULL && type != NULL && data != NULL);
	assert(step >= 0 && (size_t)step < r->spec->nsteps);
	char *msgbuf = NULL;
	const rein_step *st = &r->spec->steps[step];
	int t = engine_thread_at(r, step);
	rein_script_ctx ctx;
	json_t *vars = make_vars(r), *out = NULL;
	rein_err e = {0};
	if (vars == NULL || t < 0) {
		json_decref(vars);
		return rein_err_set(err, t < 0 ? REIN_EINVAL : REIN_ENOMEM,
				    "exec of step '%s' which is not active", st->name);
	}
	make_ctx(r, NULL, vars, &ctx);
	ctx.limits = st->u.code.limits;
	if (clock && r->deadline) { /* the run's time limit holds inside the script too */
		ctx.limits.deadline_ms = r->deadline;
		ctx.limits.clock = clock;
	}
	engine_label_track_code(r, t, step);
	int rc = rein_script_eval(r->sb, st->u.code.src, REIN_SCRIPT_CHUNK, &ctx, &out, &e);
	json_decref(vars);
	if (rc == REIN_ENOMEM) {
		engine_label_end_code(r);
		return rein_err_set(err, rc, "out of memory");
	} else if (rc == REIN_ELIMIT && ctx.limits.deadline_ms && strstr(e.msg, "time limit reached")) {
		char *msg = rein_sprintf("timeout: the run exceeded timeout_s %lld while step '%s' ran",
					 (long long)(r->spec->timeout_ms / 1000), st->name);
		*type = rein_event_name(REIN_EV_STEP_FAILED);
		*data = msg ? json_pack("{s:s}", "error", msg) : NULL;
		rein_free(msg);
	} else if (rc != REIN_OK) {
		/* "line N: ..." from Lua becomes FILE:LINE of the spec or script */
		int lual = 0;
		const char *rest = strstr(e.msg, ": ");
		char *msg;
		if (sscanf(e.msg, "line %d: ", &lual) == 1 && rest)
			msg = rein_sprintf("%s:%d: %s", st->u.code.origin, st->u.code.line_offset + lual,
					   rest + 2);
		else
			msg = rein_sprintf("%s: %s", st->u.code.origin, e.msg);
		*type = rein_event_name(REIN_EV_STEP_FAILED);
		*data = msg ? json_pack("{s:s}", "error", msg) : NULL;
		rein_free(msg);
	} else if ((rc = engine_check_output(st, out, &msgbuf)) != REIN_OK) {
		json_decref(out);
		*type = rein_event_name(REIN_EV_STEP_FAILED);
		*data = rc == REIN_ESCHEMA ? json_pack("{s:s}", "error", msgbuf) : NULL;
		rein_free(msgbuf);
	} else {
		*type = rein_event_name(REIN_EV_STEP_COMPLETED);
		*data = obj1("out", out);
		if (*data && engine_label_code(r, step, *data) != REIN_OK) { /* what it read */
			json_decref(*data);
			*data = NULL;
		}
	}
	engine_label_end_code(r);
	if (*data == NULL)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	return REIN_OK;
}

bool rein_run_ending(const rein_run *r)
{
	assert(r != NULL);
	return r->ending && !r->ended;
}

rein_status rein_run_status(const rein_run *r)
{
	assert(r != NULL);
	if (r->ended)
		return r->status;
	if (r->ending)
		return REIN_RUN_RUNNING;
	for (size_t i = 0; i < r->nth; i++) {
		int st = r->th[i].state;
		if (st != T_TIMER && st != T_SLEEPING && st != T_DONE && st != T_JOIN &&
		    st != T_SIGNAL && st != T_APPROVAL && !(st == T_CALL && r->th[i].killed))
			return REIN_RUN_RUNNING;
	}
	for (size_t i = 0; i < r->nth; i++)
		if (r->th[i].state == T_TIMER || r->th[i].state == T_SLEEPING ||
		    r->th[i].state == T_SIGNAL || r->th[i].state == T_APPROVAL ||
		    (r->th[i].state == T_CALL && r->th[i].killed))
			return REIN_RUN_WAITING;
	return REIN_RUN_RUNNING;
}

const json_t *rein_run_output(const rein_run *r)
{
	assert(r != NULL);
	return r->ended ? r->output : NULL;
}

const char *rein_run_reason(const rein_run *r)
{
	assert(r != NULL);
	if (!r->ended && r->kill_reason && rein_run_status(r) == REIN_RUN_WAITING)
		return r->kill_reason;
	for (size_t i = 0; !r->ended && r->appr_reason && i < r->nth; i++)
		if (r->th[i].state == T_APPROVAL && rein_run_status(r) == REIN_RUN_WAITING)
			return r->appr_reason;
	return r->reason;
}

const char *rein_run_id(const rein_run *r)
{
	assert(r != NULL);
	return r->id;
}

const rein_spec *rein_run_spec(const rein_run *r)
{
	assert(r != NULL);
	return r->spec;
}

int64_t rein_run_steps_taken(const rein_run *r)
{
	assert(r != NULL);
	return r->steps_taken;
}

int64_t rein_run_wake_at(const rein_run *r)
{
	assert(r != NULL);
	int64_t due = 0;
	if (r->ended)
		return 0;
	for (size_t i = 0; i < r->nth; i++)
		if ((r->th[i].state == T_TIMER || r->th[i].state == T_SLEEPING ||
		     (r->th[i].state == T_SIGNAL && r->th[i].due > 0)) &&
		    (due == 0 || r->th[i].due < due))
			due = r->th[i].due;
		else if (r->th[i].state == T_APPROVAL && r->th[i].appr_due > 0 &&
			 (due == 0 || r->th[i].appr_due < due))
			due = r->th[i].appr_due; /* the SLA's timer */
		else if (r->th[i].state == T_CALL && r->th[i].killed &&
			 (due == 0 || r->th[i].kill_at + ENGINE_KILL_RECHECK_MS < due))
			due = r->th[i].kill_at + ENGINE_KILL_RECHECK_MS; /* looked at again */
	if (r->deadline && due && r->deadline < due)
		due = r->deadline;
	if (r->deadline && due == 0 && rein_run_awaits_signal(r))
		due = r->deadline; /* a signal without a timeout: the run's own limit */
	return due;
}

bool rein_run_check(const rein_run *r, rein_err *err)
{
	assert(r != NULL);
	if (r->ending || r->ended)
		return true; /* a failed branch leaves its join open on purpose */
	for (size_t i = 0; i < r->nth; i++) {
		const thread *t = &r->th[i];
		if (t->state == T_JOIN) {
			int live = 0;
			for (size_t j = 0; j < r->nth; j++)
				if (r->th[j].parent == (int)i && r->th[j].pgen == t->gen &&
				    r->th[j].state != T_DONE)
					live++;
			if (live != t->pending) {
				rein_err_set(err, REIN_ECORRUPT, "thread %zu: join counts %d, live %d", i,
					     t->pending, live);
				return false;
			}
		}
		if (t->step >= (int)r->spec->nsteps) {
			rein_err_set(err, REIN_ECORRUPT, "thread %zu: bad step", i);
			return false;
		}
	}
	if (r->steps_taken > r->spec->max_steps + (int64_t)r->nth) {
		rein_err_set(err, REIN_ECORRUPT, "steps taken beyond max_steps");
		return false;
	}
	return true;
}
