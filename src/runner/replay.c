/*
 * replay: feeds a run's recorded events back through a fresh engine and
 * checks that the engine decides, from the same state at the same time,
 * exactly what the log says it decided (`rein replay RUN`).
 *
 * Each recorded event is one of three kinds:
 *  - an answer from outside the engine (run.started, run.resumed, inbox,
 *    model calls and attempts, breakers, a tool's answer): applied as
 *    recorded, nothing is sent anywhere;
 *  - an engine decision (the table's layer "engine"): the engine is polled
 *    at the event's own timestamp (the runner stamps what the engine emits
 *    with the `now` it polled at) and must emit that event, type, step and
 *    payload (canonical JSON);
 *  - a mixed type (engine/runner: step.completed, tool.result, tool.fallback,
 *    and tool.attempt, which the engine emits for a call in doubt): when the
 *    engine would emit that type for that step now, it must be this one;
 *    otherwise the event is an outside answer.
 * Whenever the engine asks for a code step's execution, the step is run
 * again (rein_run_exec, deterministic, no clock) and must give the recorded
 * result; a code step the clock stopped ("timeout: ...") is taken as
 * recorded, as the engine's contract says. EXECs of effects (tool and model
 * calls) are passed over: their answers are in the log.
 *
 * A policy.decision's tenant_counts (the per-tenant limits' counts, which
 * the runner took from the store) are given to the engine before it is polled
 * for that decision, so it decides from the record.
 *
 * Before a run.resumed the run is told it was recovered at the event's time
 * (rein_run_recovered), as the runner does when it takes a run over; a retry
 * run's copied prefix (the events before the first one of step `from`) is
 * the old run's history and is applied as recorded.
 */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "runner.h"

enum { K_OUTSIDE, K_ENGINE, K_MIXED };

void rein_replay_result_clear(rein_replay_result *r)
{
	if (r == NULL)
		return;
	rein_free(r->type);
	rein_free(r->expected);
	rein_free(r->got);
	memset(r, 0, sizeof *r);
}

static int kind_of(int k)
{
	const char *layer = rein_event_defs[k].layer;
	if (strcmp(layer, "engine") == 0)
		return K_ENGINE;
	if (strstr(layer, "engine") || k == REIN_EV_TOOL_ATTEMPT)
		return K_MIXED;
	return K_OUTSIDE;
}

/* "type step payload" of an event, for the report (caller frees). */
static char *describe(const char *type, const char *step, const json_t *data)
{
	char *p = data ? rein_json_dump(data) : NULL;
	char *s = rein_sprintf("%s%s%s %s", type, step ? " " : "", step ? step : "",
			       p ? p : "");
	rein_free(p);
	return s;
}

typedef struct walk {
	rein_run *run;
	const rein_spec *spec;
	rein_replay_result *res;
	int64_t prev_at;
	const char *retry_from; /* a retry run's prefix lasts until this step */
	json_t *started;        /* the run.started payload (owns retry_from) */
} walk;

/* Records the first divergence at ev (got: caller's text, taken). */
static int diverge(walk *w, const rein_event_row *ev, const json_t *data, char *got)
{
	rein_replay_result *r = w->res;
	if (r->diverged_seq == 0) {
		r->diverged_seq = ev->seq;
		r->type = rein_strdup(ev->type);
		r->expected = describe(ev->type, ev->step, data);
		r->got = got;
		if (r->type == NULL || r->expected == NULL || r->got == NULL)
			return REIN_ENOMEM;
	} else {
		rein_free(got);
	}
	return REIN_OK;
}

/* Whether the recorded event (type_a, step_a, a) is what the engine decided
 * (type_b, step_b, b). A model.intent's provider and model are not the
 * engine's: they are resolved from the environment when the workflow is
 * loaded (${env.X}), and the recorded ones are what the run called. */
static bool same(const char *type_a, int step_a, const json_t *a, const char *type_b, int step_b,
		 const json_t *b, bool *oom)
{
	*oom = false;
	if (strcmp(type_a, type_b) != 0 || step_a != step_b)
		return false;
	json_t *bb = NULL;
	if (rein_event_type_find(type_a) == REIN_EV_MODEL_INTENT) {
		if ((bb = json_copy((json_t *)b)) == NULL) {
			*oom = true;
			return false;
		}
		static const char *const env[] = {"provider", "model"};
		for (size_t i = 0; i < 2; i++) {
			json_t *v = json_object_get(a, env[i]);
			if (v ? json_object_set(bb, env[i], v) != 0 : (json_object_del(bb, env[i]), false)) {
				json_decref(bb);
				*oom = true;
				return false;
			}
		}
		b = bb;
	}
	/* provenance fields a log written before them does not hold: not a
	 * difference of decision (docs/policy.md, Provenance) */
	static const char *const later[] = {"labels", "reads", "provenance"};
	for (size_t i = 0; i < 3; i++) {
		if (json_object_get(a, later[i]) != NULL || json_object_get(b, later[i]) == NULL)
			continue;
		if (bb == NULL && (bb = json_copy((json_t *)b)) == NULL) {
			*oom = true;
			return false;
		}
		json_object_del(bb, later[i]);
		b = bb;
	}
	char *x = rein_json_dump(a), *y = rein_json_dump(b);
	bool eq = x && y && strcmp(x, y) == 0;
	*oom = x == NULL || y == NULL;
	rein_free(x);
	rein_free(y);
	json_decref(bb);
	return eq;
}

/*
 * Checks one recorded engine decision (or mixed event) against what the
 * engine decides now. *answer set when the event is to be applied as an
 * outside answer after all (a mixed type the engine would not emit now).
 */
static int check_decision(walk *w, const rein_event_row *ev, int k, int s, const json_t *data,
			  bool *answer, rein_err *err)
{
	const rein_spec *sp = w->spec;
	bool code = s >= 0 && sp->steps[s].kind == REIN_STEP_CODE &&
		    (k == REIN_EV_STEP_COMPLETED || k == REIN_EV_STEP_FAILED);
	/* a code step's result is appended after it ran: the engine was polled
	 * for it no later than the event before */
	int64_t now = code ? w->prev_at : ev->at;
	int rc = REIN_OK;
	bool oom = false;
	*answer = false;
	/* the tenant's counts came from the store: decide with the recorded ones */
	if (k == REIN_EV_POLICY_DECISION)
		rein_run_set_tenant_counts(w->run, json_object_get(data, "tenant_counts"));
	for (int guard = 0; guard < 10000; guard++) {
		rein_cmd cmd;
		if ((rc = rein_run_poll(w->run, now, &cmd, err)) != REIN_OK)
			return rc;
		if (cmd.kind == REIN_CMD_EXEC && rein_run_effect(w->run, cmd.step) != REIN_STEP_CODE)
			continue; /* a call goes out: its answer is in the log */
		if (cmd.kind == REIN_CMD_EXEC) {
			const char *type = NULL;
			json_t *out = NULL;
			if ((rc = rein_run_exec(w->run, cmd.step, NULL, &type, &out, err)) != REIN_OK)
				return rc;
			const char *e = json_string_value(json_object_get(data, "error"));
			bool timed_out = k == REIN_EV_STEP_FAILED && cmd.step == s && e &&
					 strncmp(e, "timeout:", 8) == 0;
			if (!timed_out && !same(ev->type, s, data, type, cmd.step, out, &oom))
				rc = oom ? REIN_ENOMEM
					 : diverge(w, ev, data, describe(type, sp->steps[cmd.step].name, out));
			json_decref(out);
			return rc == REIN_ENOMEM ? rein_err_set(err, rc, "out of memory") : rc;
		}
		if (cmd.kind == REIN_CMD_EMIT) {
			bool eq = same(ev->type, s, data, cmd.type, cmd.step, cmd.data, &oom);
			bool mine = strcmp(cmd.type, ev->type) == 0 && cmd.step == s;
			if (oom)
				rc = REIN_ENOMEM;
			if (rc == REIN_OK && !eq) {
				if (kind_of(k) == K_MIXED && !mine)
					*answer = true;
				else
					rc = diverge(w, ev, data,
						     describe(cmd.type,
							      cmd.step >= 0 ? sp->steps[cmd.step].name : NULL,
							      cmd.data));
			}
			rein_cmd_clear(&cmd);
			return rc == REIN_ENOMEM ? rein_err_set(err, rc, "out of memory") : rc;
		}
		/* nothing to emit now: SLEEP, BUSY or NONE */
		if (kind_of(k) == K_MIXED) {
			*answer = true;
			return REIN_OK;
		}
		char *got = cmd.kind == REIN_CMD_SLEEP
				    ? rein_sprintf("nothing: the run sleeps until %lld", (long long)cmd.due)
			    : cmd.kind == REIN_CMD_BUSY ? rein_sprintf("nothing: the run waits for its calls")
							: rein_sprintf("nothing: the run has ended");
		rc = diverge(w, ev, data, got);
		return rc == REIN_ENOMEM ? rein_err_set(err, rc, "out of memory") : rc;
	}
	return rein_err_set(err, REIN_ECORRUPT, "seq %lld: the engine keeps asking for calls",
			    (long long)ev->seq);
}

static int replay_event(walk *w, const rein_event_row *ev, rein_err *err)
{
	int rc = REIN_OK;
	json_t *data = NULL;
	int k = rein_event_type_find(ev->type);
	int s = ev->step ? rein_spec_step(w->spec, ev->step) : -1;
	if (k < 0 || (ev->step && s < 0)) {
		rc = rein_err_set(err, REIN_ECORRUPT, "seq %lld: %s does not fit the workflow",
				  (long long)ev->seq, ev->type);
		goto out;
	}
	if (ev->payload == NULL) {
		rc = rein_err_set(err, REIN_ECORRUPT, "seq %lld: its payload was purged",
				  (long long)ev->seq);
		goto out;
	}
	if ((data = rein_json_parse(ev->payload, strlen(ev->payload), err)) == NULL) {
		rc = err && err->code ? err->code : REIN_ECORRUPT;
		goto out;
	}
	if (k == REIN_EV_RUN_STARTED && w->started == NULL) {
		w->started = json_incref(data);
		w->retry_from = json_string_value(
			json_object_get(json_object_get(data, "retry_of"), "from"));
	}
	if (w->retry_from && ev->step && strcmp(ev->step, w->retry_from) == 0)
		w->retry_from = NULL; /* the copied prefix ends here */
	bool answer = true;
	int kind = kind_of(k);
	if (w->retry_from == NULL && kind != K_OUTSIDE) {
		if ((rc = check_decision(w, ev, k, s, data, &answer, err)) != REIN_OK)
			goto out;
		if (w->res->diverged_seq) {
			/* a resume that left no run.resumed (the holder released the
			 * run: a graceful stop, a parked run taken up again): told so,
			 * does the engine decide what the log says? The first report
			 * stands when it does not. */
			rein_replay_result first = *w->res;
			memset(w->res, 0, sizeof *w->res);
			w->res->events = first.events;
			w->res->decisions = first.decisions;
			rein_run_recovered(w->run, ev->at);
			rc = check_decision(w, ev, k, s, data, &answer, err);
			if (rc != REIN_OK || w->res->diverged_seq) {
				rein_replay_result_clear(w->res);
				*w->res = first;
				goto out;
			}
			rein_replay_result_clear(&first);
			w->res->recoveries++;
		}
		if (!answer)
			w->res->decisions++;
	}
	if (k == REIN_EV_RUN_RESUMED)
		rein_run_recovered(w->run, ev->at);
	rein_err ae = {0};
	if (rein_run_apply(w->run, ev->type, ev->step, ev->at, data, &ae) != REIN_OK) {
		if (ae.code == REIN_ENOMEM)
			rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		else
			rc = diverge(w, ev, data, rein_sprintf("the engine refuses it: %s", ae.msg));
		rein_err_clear(&ae);
		goto out;
	}
	w->res->events++;
	w->prev_at = ev->at;
out:
	json_decref(data);
	return rc;
}

int rein_replay_events(const rein_spec *spec, rein_script *sandbox, const char *run_id,
		       const rein_event_row *rows, size_t n, rein_replay_result *res, rein_err *err)
{
	assert(spec != NULL && sandbox != NULL && run_id != NULL && res != NULL);
	assert(rows != NULL || n == 0);
	memset(res, 0, sizeof *res);
	walk w = {.spec = spec, .res = res};
	int rc = rein_run_new(spec, sandbox, run_id, &w.run);
	if (rc != REIN_OK) {
		rc = rein_err_set(err, rc, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n && rc == REIN_OK && res->diverged_seq == 0; i++)
		rc = replay_event(&w, &rows[i], err);
out:
	json_decref(w.started);
	rein_run_free(w.run);
	if (rc != REIN_OK)
		rein_replay_result_clear(res);
	return rc;
}

/* ---- from the store ---------------------------------------------------------- */

typedef struct rows_ctx {
	rein_event_row *rows;
	size_t n, cap;
	int rc;
} rows_ctx;

static char *dup_or_null(const char *s, bool *oom)
{
	char *d = s ? rein_strdup(s) : NULL;
	if (s && d == NULL)
		*oom = true;
	return d;
}

static int rows_one(void *ud, const rein_event_row *ev)
{
	rows_ctx *c = ud;
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 64;
		rein_event_row *p = rein_realloc(c->rows, cap * sizeof *p);
		if (p == NULL) {
			c->rc = REIN_ENOMEM;
			return 1;
		}
		c->rows = p;
		c->cap = cap;
	}
	bool oom = false;
	rein_event_row r = *ev;
	r.run_id = NULL;
	r.type = dup_or_null(ev->type, &oom);
	r.step = dup_or_null(ev->step, &oom);
	r.payload = dup_or_null(ev->payload, &oom);
	c->rows[c->n++] = r;
	if (oom)
		c->rc = REIN_ENOMEM;
	return oom;
}

static void rows_free(rows_ctx *c)
{
	for (size_t i = 0; i < c->n; i++) {
		rein_free((char *)c->rows[i].type);
		rein_free((char *)c->rows[i].step);
		rein_free((char *)c->rows[i].payload);
	}
	rein_free(c->rows);
}

/* Run id's row, its pinned version's spec and its events (rows borrow
 * row->id as run_id). The caller frees all three, also on failure. */
static int load_recorded(rein_store *store, rein_script *sandbox, const char *id,
			 rein_run_row *row, rows_ctx *c, rein_spec **spec, rein_err *err)
{
	char *text = NULL;
	json_t *bundle = NULL;
	rein_err le = {0};
	int rc = rein_store_run_get(store, id, row, err);
	if (rc != REIN_OK)
		goto out;
	if ((rc = rein_store_spec_get(store, row->version, &text, err)) != REIN_OK)
		goto out;
	if ((bundle = rein_json_parse(text, strlen(text), err)) == NULL) {
		rc = err && err->code ? err->code : REIN_ECORRUPT;
		goto out;
	}
	char path[80];
	snprintf(path, sizeof path, "version:%.12s", row->version);
	if ((rc = rein_spec_load_bundle(bundle, path, sandbox, spec, &le)) != REIN_OK) {
		rein_err_set(err, le.code, "%s", le.msg);
		goto out;
	}
	if ((rc = rein_store_events_load(store, id, rows_one, c, err)) != REIN_OK)
		goto out;
	if (c->rc != REIN_OK) {
		rc = rein_err_set(err, c->rc, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < c->n; i++)
		c->rows[i].run_id = row->id;
out:
	rein_err_clear(&le);
	json_decref(bundle);
	rein_free(text);
	return rc;
}

int rein_replay_run(rein_store *store, rein_script *sandbox, const char *id,
		    rein_replay_result *res, rein_err *err)
{
	assert(store != NULL && sandbox != NULL && id != NULL && res != NULL);
	memset(res, 0, sizeof *res);
	rein_run_row row = {0};
	rows_ctx c = {0};
	rein_spec *spec = NULL;
	int rc = load_recorded(store, sandbox, id, &row, &c, &spec, err);
	if (rc == REIN_OK)
		rc = rein_replay_events(spec, sandbox, row.id, c.rows, c.n, res, err);
	rows_free(&c);
	rein_spec_free(spec);
	rein_run_row_clear(&row);
	return rc;
}

int rein_whatif_run(rein_store *store, rein_script *sandbox, const char *id, const rein_spec *spec,
		    const rein_whatif_opts *opts, json_t **report, rein_err *err)
{
	assert(store != NULL && sandbox != NULL && id != NULL && spec != NULL && report != NULL);
	*report = NULL;
	rein_run_row row = {0};
	rows_ctx c = {0};
	rein_spec *recorded = NULL;
	int rc = load_recorded(store, sandbox, id, &row, &c, &recorded, err);
	if (rc == REIN_OK)
		rc = rein_whatif_events(recorded, spec, sandbox, row.id, c.rows, c.n, opts, report,
					err);
	rows_free(&c);
	rein_spec_free(recorded);
	rein_run_row_clear(&row);
	return rc;
}
