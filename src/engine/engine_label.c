/*
 * Provenance labels of a run's values (docs/policy.md, "Provenance"). The
 * engine is a fold, so every label comes from recorded facts: the input's
 * from run.started's requester, a tool's output from its contract, a code
 * step's from what its script read (recorded on its step.completed), an llm
 * or agent step's from its context (the prompt's reads, recorded on each
 * model.intent, and each tool result it received) plus the model's own
 * text. A replay applies the same events and so rebuilds the same labels.
 */
#include "engine_int.h"

void engine_label_free(rein_run *r)
{
	if (r->labels)
		for (size_t i = 0; i < r->spec->nsteps; i++)
			json_decref(r->labels[i]);
	rein_free(r->labels);
	for (size_t i = 0; i < r->nth; i++) {
		json_decref(r->th[i].last_label);
		json_decref(r->th[i].ctx_label);
		json_decref(r->th[i].ctx_vals);
	}
	json_decref(r->in_label);
	json_decref(r->const_label);
	json_decref(r->lab_acc);
	json_decref(r->lab_reads);
}

/* The readers of the run's own values: its tenant, or everyone without one. */
static json_t *tenant_readers(const rein_run *r)
{
	const char *tn = json_string_value(json_object_get(r->requester, "tenant"));
	char buf[300];
	if (tn == NULL)
		return json_pack("[s]", "public");
	snprintf(buf, sizeof buf, "tenant:%s", tn);
	return json_pack("[s]", buf);
}

int engine_label_start(rein_run *r, rein_err *err)
{
	assert(r != NULL);
	if (r->labels == NULL && r->spec->nsteps)
		r->labels = rein_calloc(r->spec->nsteps, sizeof *r->labels);
	if (r->spec->nsteps && r->labels == NULL)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	return REIN_OK;
}

/* The input's label (borrowed; NULL: out of memory), made when first needed:
 * most runs of code steps never read it, and the requester it comes from is
 * fixed by run.started. */
static const json_t *input_label(rein_run *r)
{
	if (r->in_label == NULL) {
		json_t *rd = tenant_readers(r);
		r->in_label = rd ? rein_label_new("requester", rd, true) : NULL;
		json_decref(rd);
	}
	return r->in_label;
}

/* The label of a constant of the spec (borrowed; NULL: out of memory): the
 * spec's, shared by its runs (labels are never changed). */
static json_t *const_of(rein_run *r)
{
	if (r->spec->const_label)
		return r->spec->const_label;
	if (r->const_label == NULL)
		r->const_label = rein_label_new(NULL, NULL, true);
	return r->const_label;
}

/* The label of tool's output: its contract's trust, readers and provenance. */
static json_t *tool_label(const rein_run *r, int tool)
{
	if (tool < 0 || (size_t)tool >= r->spec->ntools)
		return rein_label_new("tool:?", NULL, false);
	const rein_tool *tl = &r->spec->tools[tool];
	char src[300];
	snprintf(src, sizeof src, "tool:%s", tl->name);
	json_t *rd = tl->readers ? json_incref(tl->readers) : tenant_readers(r);
	json_t *l = rd ? rein_label_new(src, rd, tl->trusted) : NULL;
	json_t *rl = l && tl->retrieval ? rein_label_new("retrieval", rd, tl->trusted) : NULL;
	if (l && tl->retrieval && (rl == NULL || rein_label_join(&l, rl) != REIN_OK)) {
		json_decref(l);
		l = NULL;
	}
	json_decref(rl);
	json_decref(rd);
	return l;
}

/* ---- what an evaluation read ----------------------------------------------- */

static void note_read(rein_run *r, const json_t *l, const char *name)
{
	if (rein_label_join(&r->lab_acc, l) != REIN_OK)
		r->lab_oom = true;
	if (name && r->lab_reads && json_array_append_new(r->lab_reads, json_string(name)) != 0)
		r->lab_oom = true;
}

void engine_label_read(void *ud, int what, const char *name)
{
	rein_run *r = ud;
	if (!r->lab_on)
		return;
	if (what == REIN_READ_INPUT) {
		const json_t *in = input_label(r);
		if (in == NULL)
			r->lab_oom = true;
		note_read(r, in, "input");
	} else if (what == REIN_READ_OUT) {
		note_read(r, r->lab_out, NULL);
	} else if (what == REIN_READ_STEP) {
		int s = engine_step_find(r, name);
		char buf[300];
		if (r->lab_reads) /* the names only when asked for */
			snprintf(buf, sizeof buf, "steps.%s", name);
		if (s >= 0)
			note_read(r, r->labels ? r->labels[s] : NULL, r->lab_reads ? buf : NULL);
	}
}

void engine_label_track(rein_run *r, const json_t *out_label, bool names)
{
	assert(r != NULL && !r->lab_on);
	json_decref(r->lab_acc);
	json_decref(r->lab_reads);
	r->lab_acc = NULL;
	r->lab_reads = names ? json_array() : NULL;
	r->lab_oom = names && r->lab_reads == NULL;
	r->lab_out = out_label;
	r->lab_on = true;
	r->lab_code = NULL;
}

/* Whether everything code step c may read on thread t (the steps its text
 * names, every step, the input; and `out`, the thread's last label) is
 * labelled with the spec's constant or holds nothing yet: then whatever one
 * evaluation reads, its label is that constant, the label its text allows, and
 * nothing needs tracking (engine_label_code records nothing either way). */
static bool reads_only_const(rein_run *r, int t, const rein_step_code *c)
{
	const json_t *k = const_of(r);
	const json_t *lo = r->th[t].last_label;
	if (k == NULL || r->labels == NULL || c->reads_input || (lo && lo != k))
		return false;
	size_t n = c->reads_all ? r->spec->nsteps : c->nreads;
	for (size_t i = 0; i < n; i++) {
		const json_t *l = r->labels[c->reads_all ? (int)i : c->reads[i]];
		if (l && l != k)
			return false;
	}
	return true;
}

void engine_label_track_code(rein_run *r, int t, int step)
{
	assert(r != NULL && t >= 0 && (size_t)t < r->nth);
	assert(step >= 0 && (size_t)step < r->spec->nsteps && r->spec->steps[step].kind == REIN_STEP_CODE);
	assert(!r->lab_on && !r->lab_const);
	const rein_step_code *c = &r->spec->steps[step].u.code;
	if (reads_only_const(r, t, c)) {
		r->lab_const = true;
		return;
	}
	engine_label_track(r, r->th[t].last_label, false);
	r->lab_code = c;
}

void engine_label_end_code(rein_run *r)
{
	assert(r != NULL);
	if (r->lab_on)
		json_decref(engine_label_untrack(r, NULL));
	r->lab_const = false;
}

/* Whether step i is called name. */
static bool step_is(const rein_run *r, int i, const char *name)
{
	const char *n = r->spec->steps[i].name;
	return n && strcmp(n, name) == 0;
}

int engine_step_find(rein_run *r, const char *name)
{
	assert(r != NULL && name != NULL);
	int found = -1;
	for (size_t i = 0; r->lab_code && found < 0 && i < r->lab_code->nreads; i++)
		if (step_is(r, r->lab_code->reads[i], name))
			found = r->lab_code->reads[i];
	if (found < 0 && r->find_last >= 0 && (size_t)r->find_last < r->spec->nsteps &&
	    step_is(r, r->find_last, name))
		found = r->find_last;
	if (found < 0)
		found = rein_spec_step(r->spec, name);
	if (found >= 0)
		r->find_last = found;
	return found;
}

json_t *engine_label_untrack(rein_run *r, json_t **reads)
{
	assert(r != NULL && r->lab_on);
	r->lab_on = false;
	r->lab_code = NULL;
	json_t *l = r->lab_acc;
	r->lab_acc = NULL;
	if (l == NULL) /* a constant of the spec */
		l = json_incref(const_of(r));
	if (reads)
		*reads = r->lab_reads;
	else
		json_decref(r->lab_reads);
	r->lab_reads = NULL;
	if (r->lab_oom || l == NULL || (reads && *reads == NULL)) {
		json_decref(l);
		if (reads) {
			json_decref(*reads);
			*reads = NULL;
		}
		return NULL;
	}
	return l;
}

/* ---- a code step's reads, from its text ------------------------------------- */

/* The label of what code step c can read (its text, analysed when the spec
 * was loaded: spec_code_reads): a superset of what one evaluation reads, the
 * label a step.completed without `labels` takes, so the exact labels are
 * recorded only when they are narrower. NULL: OOM. */
static json_t *code_label(rein_run *r, const rein_step_code *c)
{
	json_t *l = NULL;
	int rc = REIN_OK;
	if (c->reads_input) {
		const json_t *in = input_label(r);
		rc = in ? rein_label_join(&l, in) : REIN_ENOMEM;
	}
	if (c->reads_all)
		for (size_t i = 0; rc == REIN_OK && i < r->spec->nsteps; i++)
			rc = rein_label_join(&l, r->labels[i]);
	else
		for (size_t i = 0; rc == REIN_OK && i < c->nreads; i++)
			rc = rein_label_join(&l, r->labels[c->reads[i]]);
	if (rc == REIN_OK && l == NULL) /* a constant of the spec */
		rc = (l = json_incref(const_of(r))) ? REIN_OK : REIN_ENOMEM;
	if (rc != REIN_OK) {
		json_decref(l);
		return NULL;
	}
	return l;
}

int engine_label_code(rein_run *r, int step, json_t *data)
{
	assert(r != NULL && (r->lab_on || r->lab_const) && data != NULL);
	if (r->lab_const) { /* its label is the constant its text allows */
		r->lab_const = false;
		return REIN_OK;
	}
	json_t *got = engine_label_untrack(r, NULL), *can = NULL;
	int rc = got ? REIN_OK : REIN_ENOMEM;
	if (rc == REIN_OK && r->labels) {
		can = code_label(r, &r->spec->steps[step].u.code);
		if (can == NULL)
			rc = REIN_ENOMEM;
		else if (got != can && !json_equal(got, can) && json_object_set(data, "labels", got) != 0)
			rc = REIN_ENOMEM;
	}
	json_decref(got);
	json_decref(can);
	return rc;
}

/* ---- folding ----------------------------------------------------------------- */

/* Thread t's context, cleared when it belongs to an earlier visit. */
static void ctx_fresh(rein_run *r, thread *t)
{
	int v = r->visits[t->step];
	if (t->ctx_visit == v && t->ctx_step == t->step)
		return;
	json_decref(t->ctx_label);
	json_decref(t->ctx_vals);
	t->ctx_label = NULL;
	t->ctx_vals = NULL;
	t->ctx_visit = v;
	t->ctx_step = t->step;
}

/* Adds value v with label l to t's context (trusted values kept for the
 * refinement of an agent's arguments). */
static int ctx_add(thread *t, const json_t *v, const json_t *l)
{
	if (rein_label_join(&t->ctx_label, l) != REIN_OK)
		return REIN_ENOMEM;
	if (v == NULL || !rein_label_trusted(l))
		return REIN_OK;
	if (t->ctx_vals == NULL && (t->ctx_vals = json_array()) == NULL)
		return REIN_ENOMEM;
	return json_array_append_new(t->ctx_vals, json_pack("[O,O]", v, l)) == 0 ? REIN_OK : REIN_ENOMEM;
}

int engine_label_note(rein_run *r, int ti, rein_event_type evt, const json_t *data, rein_err *err)
{
	thread *t = &r->th[ti];
	int rc = REIN_OK;
	if (r->labels == NULL || t->step < 0)
		return REIN_OK;
	if (evt == REIN_EV_MODEL_INTENT) {
		ctx_fresh(r, t);
		const json_t *l = json_object_get(data, "labels");
		rc = json_is_object(l) ? rein_label_join(&t->ctx_label, l) : REIN_OK;
		size_t i;
		json_t *x;
		json_array_foreach(json_object_get(data, "reads"), i, x) {
			const char *n = json_string_value(x);
			if (rc != REIN_OK || n == NULL)
				continue;
			if (strcmp(n, "input") == 0) {
				const json_t *in = input_label(r);
				rc = in ? ctx_add(t, r->input, in) : REIN_ENOMEM;
			} else if (strncmp(n, "steps.", 6) == 0) {
				int s = rein_spec_step(r->spec, n + 6);
				if (s >= 0 && r->outs[s])
					rc = ctx_add(t, r->outs[s], r->labels[s]);
			}
		}
	} else if (evt == REIN_EV_TOOL_RESULT) {
		ctx_fresh(r, t);
		const char *tn = json_string_value(json_object_get(data, "tool"));
		const rein_tool *cur = engine_cur_tool(r, t); /* the runner's result names none */
		int tool = tn ? rein_spec_tool(r->spec, tn) : cur ? (int)(cur - r->spec->tools) : -1;
		json_t *l = tool_label(r, tool);
		const json_t *out = json_object_get(data, "out");
		rc = l ? ctx_add(t, out, l) : REIN_ENOMEM;
		json_decref(l);
	}
	return rc == REIN_OK ? REIN_OK : rein_err_set(err, rc, "out of memory");
}

/* The join of the input's and every step output's label (a conservative
 * label when what was read is not known). */
static json_t *everything(rein_run *r)
{
	json_t *l = NULL;
	const json_t *in = input_label(r);
	if (in == NULL || rein_label_join(&l, in) != REIN_OK)
		return NULL;
	for (size_t i = 0; i < r->spec->nsteps; i++)
		if (rein_label_join(&l, r->labels[i]) != REIN_OK) {
			json_decref(l);
			return NULL;
		}
	return l;
}

int engine_label_completed(rein_run *r, int ti, const json_t *data, rein_err *err)
{
	thread *t = &r->th[ti];
	if (r->labels == NULL)
		return REIN_OK;
	const rein_step *st = &r->spec->steps[t->step];
	/* most completions are {out} alone: no lookup by hash for those */
	void *it = json_object_size(data) == 1 ? json_object_iter((json_t *)data) : NULL;
	const json_t *rec = it ? (strcmp(json_object_iter_key(it), "labels") == 0 ? json_object_iter_value(it) : NULL)
			       : json_object_get(data, "labels");
	json_t *l = NULL;
	int rc = REIN_OK;
	if (json_is_object(rec)) {
		l = json_incref((json_t *)rec); /* labels are never changed */
	} else if (st->kind == REIN_STEP_TOOL) {
		l = tool_label(r, t->tool);
	} else if (st->kind == REIN_STEP_LLM || st->kind == REIN_STEP_AGENT) {
		ctx_fresh(r, t);
		json_t *m = rein_label_new("model", NULL, false);
		rc = m ? rein_label_join(&l, t->ctx_label) : REIN_ENOMEM;
		if (rc == REIN_OK)
			rc = rein_label_join(&l, m);
		json_decref(m);
	} else if (st->kind == REIN_STEP_WAIT && st->u.wait.signal) {
		json_t *rd = tenant_readers(r);
		l = rd ? rein_label_new("signal", rd, false) : NULL;
		json_decref(rd);
	} else if (st->kind == REIN_STEP_VERIFY || st->kind == REIN_STEP_WAIT) {
		l = t->last_label ? json_incref(t->last_label) : json_incref(const_of(r));
	} else if (st->kind == REIN_STEP_CODE) {
		l = code_label(r, &st->u.code); /* what it read was all it could */
	} else {
		l = everything(r); /* a parallel join */
	}
	if (rc != REIN_OK || l == NULL) {
		json_decref(l);
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	}
	json_decref(r->labels[t->step]);
	r->labels[t->step] = json_incref(l);
	json_decref(t->last_label);
	t->last_label = l;
	return REIN_OK;
}

/* ---- the labels of a proposed call ---------------------------------------- */

/* Whether v (a string or a number) occurs, exactly, somewhere in in. */
static bool occurs(const json_t *v, const json_t *in)
{
	if (json_equal((json_t *)v, (json_t *)in))
		return true;
	size_t i;
	const char *k;
	json_t *x;
	if (json_is_object(in))
		json_object_foreach((json_t *)in, k, x) if (occurs(v, x)) return true;
	if (json_is_array(in))
		json_array_foreach(in, i, x) if (occurs(v, x)) return true;
	return false;
}

/* An agent's argument v: the label of a trusted context value it equals
 * exactly (the refinement), else its context's and the model's. */
static json_t *agent_arg_label(const thread *t, const json_t *v, const json_t *whole)
{
	bool atom = (json_is_string(v) && json_string_length(v) > 0) || json_is_number(v);
	size_t i;
	json_t *cv;
	if (atom)
		json_array_foreach(t->ctx_vals, i, cv) if (occurs(v, json_array_get(cv, 0)))
			return json_incref(json_array_get(cv, 1));
	return json_incref((json_t *)whole);
}

json_t *engine_label_call(rein_run *r, int ti, const json_t *args, bool agent, rein_err *err)
{
	assert(r != NULL && ti >= 0 && (size_t)ti < r->nth && args != NULL);
	thread *t = &r->th[ti];
	const rein_step *st = &r->spec->steps[t->step];
	json_t *p = json_object(), *al = json_object(), *whole = NULL, *m = NULL;
	bool ok = p && al && r->labels;
	const char *k;
	json_t *v;
	if (ok && agent) {
		ctx_fresh(r, t);
		m = rein_label_new("model", NULL, false);
		ok = m && rein_label_join(&whole, t->ctx_label) == REIN_OK && rein_label_join(&whole, m) == REIN_OK;
		json_object_foreach((json_t *)args, k, v) {
			json_t *l = ok ? agent_arg_label(t, v, whole) : NULL;
			ok = l && json_object_set_new(al, k, l) == 0;
		}
	} else if (ok && json_is_object(st->u.tool.args)) {
		/* a tool step: each argument takes the labels of what its template read */
		json_object_foreach(st->u.tool.args, k, v) {
			json_t *res = NULL, *l;
			rein_err e = {0};
			engine_label_track(r, t->last_label, false);
			int rc = engine_eval_template(r, v, t->last, &res, &e);
			json_decref(res);
			l = engine_label_untrack(r, NULL);
			ok = ok && rc != REIN_ENOMEM && l && json_object_set_new(al, k, l) == 0;
			if (!ok)
				break;
		}
	}
	/* equal arguments share their labels, so trusted(v) finds one answer */
	json_object_foreach((json_t *)args, k, v) {
		const char *k2;
		json_t *v2, *joined = NULL;
		if (!ok || json_object_get(al, k) == NULL)
			continue;
		json_object_foreach((json_t *)args, k2, v2) if (ok && json_equal(v, v2)) ok =
			rein_label_join(&joined, json_object_get(al, k2)) == REIN_OK;
		ok = ok && joined && json_object_set_new(al, k, joined) == 0;
	}
	ok = ok && json_object_set_new(p, "agent", json_boolean(agent)) == 0 &&
	     json_object_set_new(p, "context", agent && t->ctx_label ? json_incref(t->ctx_label)
								     : json_null()) == 0 &&
	     json_object_set(p, "args", al) == 0;
	json_decref(al);
	json_decref(whole);
	json_decref(m);
	if (!ok) {
		json_decref(p);
		rein_err_set(err, REIN_ENOMEM, "out of memory");
		return NULL;
	}
	return p;
}
