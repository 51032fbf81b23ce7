/*
 * Signals: a wait step with `signal: NAME` parks its thread (T_SIGNAL) until
 * a signal of that name has been received (inbox.received of type "signal",
 * data {name, data}). Signals are kept by name in arrival order from the
 * moment they are received, so one sent before the run reaches its wait is
 * not lost; a wait consumes the oldest (step.completed {out: its data,
 * signal: its id}). An id is taken once: a second inbox entry with the same
 * id changes nothing. When the wait takes a signal whose data does not match
 * its schema, it records signal.refused with the reason instead (the signal
 * is dropped) and goes on waiting; a signal without a name is refused as it
 * arrives. A timeout is a timer (timer.scheduled / timer.fired) whose
 * firing fails the step: "no signal NAME within N s".
 */
#include "engine_int.h"

#include "schema.h"

/* *o, created as an object (array: an array) when NULL; NULL when out of memory. */
static json_t *lazy(json_t **o, bool array)
{
	if (*o == NULL)
		*o = array ? json_array() : json_object();
	return *o;
}

int engine_apply_signal(rein_run *r, const json_t *msg, rein_err *err)
{
	assert(r != NULL && msg != NULL);
	int rc = REIN_OK;
	char *why = NULL;
	json_t *item = NULL;
	const char *id = json_string_value(json_object_get(msg, "id"));
	const json_t *d = json_object_get(msg, "data");
	const char *name = json_string_value(json_object_get(d, "name"));
	const json_t *sdata = json_object_get(d, "data");
	if (sdata == NULL)
		sdata = json_null();
	if (id == NULL) {
		rc = rein_err_set(err, REIN_ECORRUPT, "run %s: a signal without an id", r->id);
		goto out;
	}
	if (lazy(&r->sig_seen, false) == NULL || lazy(&r->signals, false) == NULL ||
	    lazy(&r->sig_refused, true) == NULL)
		goto nomem;
	if (json_object_get(r->sig_seen, id))
		goto out; /* the same signal again: it was taken once */
	if (json_object_set_new(r->sig_seen, id, json_true()) != 0)
		goto nomem;
	if (name == NULL) { /* refused: the next poll records it */
		item = json_pack("{s:s, s:s}", "id", id, "error",
				 "a signal needs a name (data {name, data})");
		if (item == NULL || json_array_append_new(r->sig_refused, item) != 0)
			goto nomem;
		goto out;
	}
	json_t *q = json_object_get(r->signals, name);
	if (q == NULL) {
		if ((q = json_array()) == NULL || json_object_set_new(r->signals, name, q) != 0)
			goto nomem;
	}
	item = json_pack("{s:s, s:O}", "id", id, "data", sdata);
	if (item == NULL || json_array_append_new(q, item) != 0)
		goto nomem;
	goto out;
nomem:
	rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
out:
	rein_free(why);
	return rc;
}

int engine_poll_refused(rein_run *r, rein_cmd *cmd, rein_err *err)
{
	assert(r != NULL && cmd != NULL);
	json_t *head = json_array_get(r->sig_refused, 0);
	if (head == NULL)
		return REIN_OK;
	return engine_emit(cmd, REIN_EV_SIGNAL_REFUSED, -1, json_deep_copy(head), err);
}

int engine_apply_refused(rein_run *r, const json_t *data, rein_err *err)
{
	assert(r != NULL);
	const char *id = json_string_value(json_object_get(data, "id"));
	const char *name = json_string_value(json_object_get(data, "name"));
	const char *head = json_string_value(json_object_get(json_array_get(r->sig_refused, 0), "id"));
	json_t *q = name ? json_object_get(r->signals, name) : NULL;
	const char *qhead = json_string_value(json_object_get(json_array_get(q, 0), "id"));
	if (id && head && strcmp(id, head) == 0) {
		json_array_remove(r->sig_refused, 0);
		return REIN_OK;
	}
	if (id && qhead && strcmp(id, qhead) == 0) { /* refused by the wait taking it */
		json_array_remove(q, 0);
		return REIN_OK;
	}
	return rein_err_set(err, REIN_ECORRUPT,
			    "run %s: signal.refused for '%s', which was not refused", r->id,
			    id ? id : "");
}

int engine_poll_signal(rein_run *r, int ti, int64_t now, rein_cmd *cmd, int64_t *due,
		       rein_err *err)
{
	assert(r != NULL && ti >= 0 && (size_t)ti < r->nth && cmd != NULL && due != NULL);
	thread *t = &r->th[ti];
	const rein_step_wait *w = &r->spec->steps[t->step].u.wait;
	json_t *head = json_array_get(json_object_get(r->signals, w->signal), 0);
	char *why = NULL;
	int rc = head ? engine_schema_check(w->schema, json_object_get(head, "data"), &why,
					    "signal %s: data does not match the schema of step '%s'",
					    w->signal, r->spec->steps[t->step].name)
		      : REIN_OK;
	if (rc == REIN_ESCHEMA) { /* refused, not consumed: the wait goes on */
		rc = engine_emit(cmd, REIN_EV_SIGNAL_REFUSED, -1,
				 json_pack("{s:O, s:s, s:s}", "id", json_object_get(head, "id"), "name",
					   w->signal, "error", why),
				 err);
		rein_free(why);
		return rc;
	}
	if (rc != REIN_OK)
		return rein_err_set(err, rc, "out of memory");
	if (head)
		return engine_emit(cmd, REIN_EV_STEP_COMPLETED, t->step,
				   json_pack("{s:O, s:O}", "out", json_object_get(head, "data"),
					     "signal", json_object_get(head, "id")),
				   err);
	if (w->timeout_ms > 0 && t->due == 0)
		return engine_emit(cmd, REIN_EV_TIMER_SCHEDULED, t->step,
				   json_pack("{s:I}", "due_at", (json_int_t)(now + w->timeout_ms)), err);
	if (t->due > 0 && now >= t->due)
		return engine_emit(cmd, REIN_EV_TIMER_FIRED, t->step, json_object(), err);
	if (t->due > 0 && t->due < *due)
		*due = t->due;
	return REIN_OK;
}

int engine_signal_taken(rein_run *r, int ti, const json_t *data, const json_t **out,
			rein_err *err)
{
	assert(r != NULL && ti >= 0 && (size_t)ti < r->nth && out != NULL);
	const rein_step *st = &r->spec->steps[r->th[ti].step];
	json_t *q = json_object_get(r->signals, st->u.wait.signal);
	json_t *head = json_array_get(q, 0);
	const char *id = json_string_value(json_object_get(data, "signal"));
	const char *hid = json_string_value(json_object_get(head, "id"));
	if (head == NULL || (id && strcmp(id, hid) != 0))
		return rein_err_set(err, REIN_ECORRUPT,
				    "run %s: step.completed for '%s' without the signal it waits for",
				    r->id, st->name);
	/* the output is the signal's data; the queue gives its entry up after */
	*out = json_incref(json_object_get(head, "data"));
	json_array_remove(q, 0);
	return REIN_OK;
}

int engine_signal_timeout(rein_run *r, int ti, rein_err *err)
{
	assert(r != NULL && ti >= 0 && (size_t)ti < r->nth);
	const rein_step_wait *w = &r->spec->steps[r->th[ti].step].u.wait;
	char *msg = rein_sprintf("no signal %s within %lld s", w->signal,
				 (long long)(w->timeout_ms / 1000));
	if (msg == NULL)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	int rc = engine_step_error(r, ti, msg, err);
	rein_free(msg);
	return rc;
}

bool rein_run_awaits_signal(const rein_run *r)
{
	assert(r != NULL);
	if (r->ended || r->ending)
		return false;
	for (size_t i = 0; i < r->nth; i++)
		if (r->th[i].state == T_SIGNAL || r->th[i].state == T_APPROVAL)
			return true; /* (an approval also arrives by the inbox) */
	return false;
}
