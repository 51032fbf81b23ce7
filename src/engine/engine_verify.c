/*
 * verify steps: deterministic rules over the previous step's output. The
 * rules are evaluated once, when the step is polled, and the outcome is
 * recorded as step.completed (the output passed through unchanged) or
 * step.failed (every failed rule named): a replay reads the outcome from the
 * log and never evaluates a rule again. A model check, when the rules pass,
 * is an llm call (engine_model.c) whose structured answer is
 * {confidence, rationale}; the step's output is still the one passed through.
 */
#include <assert.h>
#include <string.h>

#include "engine_int.h"

/* Appends "; " (after the first) and text to *buf; false when out of memory. */
static bool append(char **buf, const char *text)
{
	char *s = *buf ? rein_sprintf("%s; %s", *buf, text) : rein_strdup(text);
	if (s == NULL)
		return false;
	rein_free(*buf);
	*buf = s;
	return true;
}

/* The text for rule i that did not hold (why: a Lua error, or NULL). */
static char *rule_failure(const rein_verify_rule *ru, size_t i, const char *why)
{
	char name[160];
	if (ru->id)
		snprintf(name, sizeof name, "rule '%s'", ru->id);
	else
		snprintf(name, sizeof name, "rule %zu", i + 1);
	if (why)
		return rein_sprintf("%s could not be evaluated: %s", name, why);
	if (ru->message)
		return rein_sprintf("%s failed: %s", name, ru->message);
	return rein_sprintf("%s failed: `%s` is not true", name, ru->check);
}

int engine_poll_verify(rein_run *r, int ti, int64_t now, rein_cmd *cmd, int64_t *due, bool *busy,
		       rein_err *err)
{
	assert(r != NULL && ti >= 0 && (size_t)ti < r->nth && cmd != NULL);
	thread *t = &r->th[ti];
	const rein_step *st = &r->spec->steps[t->step];
	assert(st->kind == REIN_STEP_VERIFY);
	const rein_step_verify *v = &st->u.verify;
	if (t->state != T_READY) /* the model check is under way */
		return v->has_model ? engine_poll_llm(r, ti, now, cmd, due, busy, err) : REIN_OK;
	const json_t *out = t->last ? t->last : json_null();
	char *failed = NULL, *line = NULL;
	int rc = REIN_OK;
	for (size_t i = 0; i < v->nrules; i++) {
		const rein_verify_rule *ru = &v->rules[i];
		json_t *res = NULL;
		rein_err e = {0};
		rc = engine_eval_expr(r, ru->check, out, &res, &e);
		if (rc == REIN_ENOMEM) {
			rein_err_clear(&e);
			goto out;
		}
		bool holds = rc == REIN_OK && !(json_is_null(res) || json_is_false(res));
		json_decref(res);
		if (!holds) {
			line = rule_failure(ru, i, rc == REIN_OK ? NULL : e.msg);
			if (line == NULL || !append(&failed, line)) {
				rein_err_clear(&e);
				rc = REIN_ENOMEM;
				goto out;
			}
			rein_free(line);
			line = NULL;
		}
		rein_err_clear(&e);
		rc = REIN_OK;
	}
	if (failed) {
		char *msg = rein_sprintf("verify: %s", failed);
		rc = engine_emit(cmd, REIN_EV_STEP_FAILED, t->step,
				 msg ? json_pack("{s:s}", "error", msg) : NULL, err);
		rein_free(msg);
	} else if (v->has_model) {
		/* the rules hold (they are checked again on each ready poll, as
		 * after a repair turn: the same state gives the same answer) */
		rc = engine_poll_llm(r, ti, now, cmd, due, busy, err);
	} else {
		json_t *d = json_object();
		if (d && json_object_set_nocheck(d, "out", (json_t *)out) != 0) {
			json_decref(d);
			d = NULL;
		}
		rc = engine_emit(cmd, REIN_EV_STEP_COMPLETED, t->step, d, err);
	}
out:
	if (rc == REIN_ENOMEM && cmd->kind == REIN_CMD_NONE)
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
	rein_free(line);
	rein_free(failed);
	return rc;
}

int engine_verify_answer(rein_run *r, int ti, const json_t *o, rein_err *err)
{
	assert(r != NULL && ti >= 0 && (size_t)ti < r->nth && o != NULL);
	thread *t = &r->th[ti];
	const rein_step *st = &r->spec->steps[t->step];
	assert(st->kind == REIN_STEP_VERIFY && st->u.verify.has_model);
	double c = json_number_value(json_object_get(o, "confidence"));
	const char *why = json_string_value(json_object_get(o, "rationale"));
	if (c < st->u.verify.min_confidence) {
		char *msg = rein_sprintf("verify: the model's confidence %.2f is under min_confidence "
					 "%.2f: %s",
					 c, st->u.verify.min_confidence, why ? why : "");
		int rc = msg ? engine_step_error(r, ti, msg, err)
			     : rein_err_set(err, REIN_ENOMEM, "out of memory");
		rein_free(msg);
		return rc;
	}
	json_decref(t->result);
	t->result = json_incref(t->last ? t->last : json_null());
	t->state = T_FALLEN;
	return REIN_OK;
}
