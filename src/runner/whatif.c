/*
 * whatif: `rein replay RUN --with DIR`. The recorded run's input, requester
 * and pinned organisation policies are run again through a fresh engine
 * against a changed workflow (its prompt, model tier, policy or routing),
 * with no store: nothing is written anywhere, least of all to the recorded
 * run.
 *
 * The effects are answered without the world where the recording can:
 *  - a model call whose request_hash (model.intent) the recording answered
 *    gets the recorded answers of that request, in the order they came
 *    (failed attempts included; the last answer again when they run out);
 *    a changed request goes to the new spec's provider through the model
 *    router (real HTTP to whatever base_url the tier names), or, through
 *    opts->model, to the caller. When the tier has no provider that can
 *    answer (a configuration the provider refuses, a replay tier without
 *    the answer) the what-if stops with REIN_EINVAL: "model request changed
 *    at step X and no provider is configured: ...";
 *  - a tool call of the same tool with the same canonical arguments gets the
 *    recorded outcomes of that call, in order; a call the recording lacks is
 *    never sent: it is reported (not_recorded) and its step fails with "not
 *    in the recording: tool T args {...}". The idempotency key is no match
 *    on its own: it is derived from (run, step, call index), so it names a
 *    position in the run, and a changed run puts another call there; it
 *    matches only together with the tool and arguments, which are the call.
 * The what-if runs on a virtual clock that starts at the recorded
 * run.started and moves to each recorded answer's time when the recording
 * answers (the run takes the time the recording took), and straight to the
 * due time of a timer or backoff (nobody waits). The recorded inbox entries
 * (cancels, signals, reviews) arrive at their recorded times on that clock,
 * before the next step, while the run has not ended. A recorded run that
 * has not ended (it waits) is followed as far as it went: the what-if
 * stops when it would wait past the recording's last event.
 *
 * Then both logs are summarised (status, reason, output, the step path with
 * each visit's outcome, tool calls, policy decisions, model tiers and
 * routes, model calls, tokens, cost) and compared into differences.
 */
#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "runner.h"

#include "io.h"
#include "model.h"

typedef struct wi {
	const rein_spec *spec; /* the changed one */
	rein_run *run;
	json_t *rec;    /* the recorded events: [{type, step, data, at}] */
	json_t *evs;    /* the what-if's events, the same shape */
	json_t *models; /* request_hash -> [{type, data}] recorded answers */
	json_t *mcur;   /* request_hash -> answers used */
	json_t *tools;  /* "tool args" -> [{type, data}] recorded outcomes */
	json_t *tcur;
	json_t *lastok;      /* tool -> its last recorded good result */
	json_t *not_rec;     /* [{step, tool, args}] calls the recording lacks */
	json_t *hashes;      /* step -> request_hash of its last model.intent */
	json_t *inbox;       /* the recorded inbox.received events, in order */
	size_t next_mail;    /* the first not yet delivered */
	/* the recorded run has not ended: the time of its last event (the
	 * what-if stops there too, rather than wait past what is known) */
	int64_t open_at;
	json_t *intents;     /* "tool args" of every recorded tool.intent */
	int64_t answered;    /* model calls answered from the recording */
	int64_t sent;        /* model calls sent to a provider */
	int64_t now;
	const rein_whatif_opts *o;
	rein_io *io;
	rein_model_router *router;
	rein_model_routed got; /* a router call's outcome */
	bool got_done;
} wi;

/* ---- the recording's answers ------------------------------------------------- */

static char *tool_key(const char *tool, const json_t *args)
{
	char *a = rein_json_dump(args ? args : json_null());
	char *k = a ? rein_sprintf("%s %s", tool, a) : NULL;
	rein_free(a);
	return k;
}

/* Appends {type, data, at} to map[key] (an array, made when missing). */
static int push_answer(json_t *map, const char *key, const char *type, json_t *data, json_t *at)
{
	json_t *arr = json_object_get(map, key);
	if (arr == NULL && (json_object_set_new(map, key, arr = json_array()) != 0 || arr == NULL))
		return REIN_ENOMEM;
	return json_array_append_new(arr, json_pack("{s:s, s:O, s:O}", "type", type, "data", data,
						    "at", at)) == 0
		       ? REIN_OK
		       : REIN_ENOMEM;
}

/*
 * Indexes the recorded answers: the model answers by request hash, the tool
 * outcomes by tool and arguments. An outcome belongs to the last
 * intent of its step (a step has one call out at a time).
 */
static int index_recording(wi *w, const rein_spec *rspec)
{
	json_t *mint = json_object(), *tint = json_object();
	int rc = mint && tint ? REIN_OK : REIN_ENOMEM;
	size_t i;
	json_t *e;
	json_array_foreach(w->rec, i, e)
	{
		if (rc != REIN_OK)
			break;
		const char *type = json_string_value(json_object_get(e, "type"));
		const char *step = json_string_value(json_object_get(e, "step"));
		json_t *d = json_object_get(e, "data");
		json_t *at = json_object_get(e, "at");
		int k = rein_event_type_find(type);
		if (k == REIN_EV_INBOX_RECEIVED) {
			rc = json_array_append(w->inbox, e) == 0 ? REIN_OK : REIN_ENOMEM;
			continue;
		}
		if (step == NULL)
			continue;
		if (k == REIN_EV_MODEL_INTENT) {
			rc = json_object_set(mint, step, json_object_get(d, "request_hash")) ? REIN_ENOMEM
											      : REIN_OK;
			continue;
		}
		if (k == REIN_EV_MODEL_CALL || k == REIN_EV_MODEL_ATTEMPT) {
			const char *h = json_string_value(json_object_get(mint, step));
			if (h)
				rc = push_answer(w->models, h, type, d, at);
			continue;
		}
		if (k == REIN_EV_TOOL_INTENT) {
			char *ik = tool_key(json_string_value(json_object_get(d, "tool")) ?: "",
					    json_object_get(d, "args"));
			rc = ik && json_object_set_new(w->intents, ik, json_true()) == 0 &&
					     json_object_set(tint, step, d) == 0
				     ? REIN_OK
				     : REIN_ENOMEM;
			rein_free(ik);
			continue;
		}
		json_t *in = json_object_get(tint, step);
		if (in == NULL)
			continue;
		int s = rein_spec_step(rspec, step);
		bool tool_step = s >= 0 && rspec->steps[s].kind == REIN_STEP_TOOL;
		bool good = (k == REIN_EV_STEP_COMPLETED && tool_step &&
			     json_object_get(d, "attempt")) ||
			    (k == REIN_EV_TOOL_RESULT && json_object_get(d, "out") &&
			     json_object_get(d, "attempt")) ||
			    k == REIN_EV_TOOL_SHADOWED;
		if (!good && k != REIN_EV_TOOL_ATTEMPT) {
			if (k == REIN_EV_STEP_COMPLETED || k == REIN_EV_STEP_FAILED ||
			    k == REIN_EV_TOOL_RESULT || k == REIN_EV_TOOL_FALLBACK)
				json_object_del(tint, step); /* the call is over */
			continue;
		}
		const char *tool = json_string_value(json_object_get(in, "tool"));
		char *tk = tool_key(tool ? tool : "", json_object_get(in, "args"));
		rc = tk ? push_answer(w->tools, tk, type, d, at) : REIN_ENOMEM;
		if (rc == REIN_OK && good && tool) {
			json_t *out = k == REIN_EV_TOOL_SHADOWED ? json_object_get(d, "result")
								 : json_object_get(d, "out");
			rc = json_object_set(w->lastok, tool, out ? out : json_null()) ? REIN_ENOMEM
										       : REIN_OK;
		}
		if (good)
			json_object_del(tint, step);
		rein_free(tk);
	}
	json_decref(mint);
	json_decref(tint);
	return rc;
}

/* The next recorded answer under key of map (cursor cur), or NULL: the last
 * one again when they ran out and it was a good one (again_ok). */
static json_t *next_answer(json_t *map, json_t *cur, const char *key, bool (*again_ok)(json_t *))
{
	json_t *arr = json_object_get(map, key);
	if (arr == NULL || json_array_size(arr) == 0)
		return NULL;
	size_t n = (size_t)json_integer_value(json_object_get(cur, key));
	if (n < json_array_size(arr)) {
		json_object_set_new(cur, key, json_integer((json_int_t)n + 1));
		return json_array_get(arr, n);
	}
	json_t *last = json_array_get(arr, json_array_size(arr) - 1);
	return again_ok(last) ? last : NULL;
}

static bool model_again(json_t *a)
{
	return rein_event_type_find(json_string_value(json_object_get(a, "type"))) ==
	       REIN_EV_MODEL_CALL;
}

static bool tool_again(json_t *a)
{
	return rein_event_type_find(json_string_value(json_object_get(a, "type"))) !=
	       REIN_EV_TOOL_ATTEMPT;
}

/* ---- driving the what-if run -------------------------------------------------- */

/* Records (type, step, data) in the what-if's log and applies it at w->now. */
static int apply(wi *w, const char *type, int step, const json_t *data, rein_err *err)
{
	const char *name = step >= 0 ? w->spec->steps[step].name : NULL;
	json_t *e = json_pack("{s:s, s:s?, s:O, s:I}", "type", type, "step", name, "data",
			      data ? (json_t *)data : json_null(), "at", (json_int_t)w->now);
	if (e == NULL || json_array_append_new(w->evs, e) != 0)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	if (rein_event_type_find(type) == REIN_EV_MODEL_INTENT && name &&
	    json_object_set(w->hashes, name, json_object_get(data, "request_hash")) != 0)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	rein_err ae = {0};
	int rc = rein_run_apply(w->run, type, name, w->now, data, &ae);
	if (rc != REIN_OK) {
		rc = rein_err_set(err, ae.code == REIN_ENOMEM ? REIN_ENOMEM : REIN_ECORRUPT,
				  "the what-if run refuses %s%s%s: %s", type, name ? " at " : "",
				  name ? name : "", ae.msg);
		rein_err_clear(&ae);
	}
	return rc;
}

/* The virtual clock moves to a recorded answer's time (never back): the
 * what-if takes the time the recording took where it answers the same. */
static void at_least(wi *w, const json_t *at)
{
	int64_t t = (int64_t)json_integer_value(at);
	if (t > w->now)
		w->now = t;
}

/* When an inbox entry reached the inbox (its own at; the event's is when the
 * runner drained it, at the next step boundary after that). */
static int64_t mail_at(const json_t *e)
{
	const json_t *at = json_object_get(json_object_get(e, "data"), "at");
	return (int64_t)json_integer_value(at ? at : json_object_get(e, "at"));
}

/* Delivers the recorded inbox entries whose time has come. */
static int deliver_mail(wi *w, rein_err *err)
{
	int rc = REIN_OK;
	for (; rc == REIN_OK && w->next_mail < json_array_size(w->inbox); w->next_mail++) {
		json_t *e = json_array_get(w->inbox, w->next_mail);
		if (mail_at(e) > w->now ||
		    rein_run_status(w->run) >= REIN_RUN_SUCCEEDED)
			break;
		rc = apply(w, rein_event_name(REIN_EV_INBOX_RECEIVED), -1, json_object_get(e, "data"),
			   err);
	}
	return rc;
}

static bool routed_cb(void *ud, const rein_model_routed *rt)
{
	wi *w = ud;
	w->got.n = rt->n;
	for (size_t i = 0; i < rt->n; i++) {
		w->got.ev[i].type = rt->ev[i].type;
		w->got.ev[i].data = json_incref(rt->ev[i].data);
	}
	w->got_done = true;
	return true;
}

/* Sends a changed request to the tier's provider, through opts->model or
 * the router; *rt gets the events of its outcome. */
static int ask_provider(wi *w, const rein_model_request *call, rein_model_routed *rt,
			rein_err *err)
{
	int rc = REIN_OK;
	memset(rt, 0, sizeof *rt);
	w->sent++;
	if (w->o && w->o->model)
		return w->o->model(w->o->ud, w->spec, call->tier, call->request, call->attempt, rt, err);
	if (w->io == NULL && (rc = rein_io_new(&w->io, err)) != REIN_OK)
		return rc;
	if (w->router == NULL &&
	    (rc = rein_model_router_new(&(rein_model_router_opts){0}, &w->router, err)) != REIN_OK)
		return rc;
	memset(&w->got, 0, sizeof w->got);
	w->got_done = false;
	if ((rc = rein_model_router_call(w->router, w->io, w->spec, call->tier, call->request,
					 call->attempt, routed_cb, w, rt, err)) != REIN_OK)
		return rc;
	if (rt->n > 0)
		return REIN_OK; /* answered at once */
	while (!w->got_done) /* the provider's own timeouts bound the call */
		rein_io_wait(w->io, 1000);
	*rt = w->got;
	memset(&w->got, 0, sizeof w->got);
	return REIN_OK;
}

static int exec_model(wi *w, int step, rein_err *err)
{
	rein_model_request call;
	const char *name = w->spec->steps[step].name;
	if (rein_run_model_call(w->run, step, &call) != REIN_OK)
		return rein_err_set(err, REIN_ECORRUPT, "no model call at step %s", name);
	const char *hash = json_string_value(json_object_get(w->hashes, name));
	json_t *a = hash ? next_answer(w->models, w->mcur, hash, model_again) : NULL;
	if (a) {
		w->answered++;
		at_least(w, json_object_get(a, "at"));
		const char *type = json_string_value(json_object_get(a, "type"));
		json_t *d = json_copy(json_object_get(a, "data"));
		int rc = d ? REIN_OK : rein_err_set(err, REIN_ENOMEM, "out of memory");
		if (rc == REIN_OK && rein_event_type_find(type) == REIN_EV_MODEL_ATTEMPT)
			json_object_set_new(d, "attempt", json_integer(call.attempt));
		if (rc == REIN_OK)
			rc = apply(w, type, step, d, err);
		json_decref(d);
		return rc;
	}
	rein_model_routed rt = {0};
	int rc = ask_provider(w, &call, &rt, err);
	for (size_t i = 0; i < rt.n && rc == REIN_OK; i++) {
		json_t *d = rt.ev[i].data;
		const char *outcome = json_string_value(json_object_get(d, "outcome"));
		if (d == NULL) {
			rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		} else if (rein_event_type_find(rt.ev[i].type) == REIN_EV_MODEL_ATTEMPT && outcome &&
			   (strcmp(outcome, "config") == 0 || strcmp(outcome, "replay_miss") == 0)) {
			rc = rein_err_set(err, REIN_EINVAL,
					  "model request changed at step %s and no provider is "
					  "configured: tier '%s': %s",
					  name, w->spec->tiers[call.tier].name,
					  json_string_value(json_object_get(d, "error")));
		} else {
			rc = apply(w, rt.ev[i].type, step, d, err);
		}
	}
	rein_model_routed_clear(&rt);
	return rc;
}

static int exec_tool(wi *w, int step, rein_err *err)
{
	rein_tool_call call;
	const rein_step *st = &w->spec->steps[step];
	int rc = REIN_OK;
	json_t *d = NULL;
	char *tk = NULL, *why = NULL, *args = NULL;
	if (rein_run_tool_call(w->run, step, &call) != REIN_OK)
		return rein_err_set(err, REIN_ECORRUPT, "no tool call at step %s", st->name);
	const char *tool = w->spec->tools[call.tool].name;
	if (call.cached) {
		d = json_pack("{s:s, s:s, s:O}", "kind", "cached", "from", tool, "result",
			      json_object_get(w->lastok, tool) ?: json_null());
		rc = d ? apply(w, rein_event_name(REIN_EV_TOOL_FALLBACK), step, d, err)
		       : rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	if ((tk = tool_key(tool, call.args)) == NULL) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	json_t *a = next_answer(w->tools, w->tcur, tk, tool_again);
	if (a == NULL) { /* never sent: reported, and the step fails with it */
		args = rein_json_dump(call.args);
		why = args ? rein_sprintf("not in the recording: tool %s args %s%s", tool, args,
					  json_object_get(w->intents, tk)
						  ? " (recorded without an outcome)"
						  : "")
			   : NULL;
		json_t *nr = json_pack("{s:s, s:s, s:O}", "step", st->name, "tool", tool, "args",
				       (json_t *)call.args);
		d = why ? json_pack("{s:s}", "error", why) : NULL;
		if (nr == NULL || d == NULL || json_array_append_new(w->not_rec, nr) != 0) {
			rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
			goto out;
		}
		rc = apply(w, rein_event_name(REIN_EV_STEP_FAILED), step, d, err);
		goto out;
	}
	at_least(w, json_object_get(a, "at"));
	int k = rein_event_type_find(json_string_value(json_object_get(a, "type")));
	json_t *rd = json_object_get(a, "data");
	if (k == REIN_EV_TOOL_ATTEMPT) {
		d = json_copy(rd);
		if (d)
			json_object_set_new(d, "attempt", json_integer(call.attempt));
	} else if (k == REIN_EV_TOOL_SHADOWED) {
		d = json_pack("{s:s, s:s, s:O, s:O}", "tool", tool, "key", call.key, "args",
			      (json_t *)call.args, "result", json_object_get(rd, "result"));
	} else {
		/* as the runner records an answer: a tool step completes, an
		 * agent's result goes back to the model */
		k = st->kind == REIN_STEP_AGENT ? REIN_EV_TOOL_RESULT : REIN_EV_STEP_COMPLETED;
		d = json_pack("{s:O, s:i, s:O?}", "out", json_object_get(rd, "out") ?: json_null(),
			      "attempt", call.attempt, "latency_ms", json_object_get(rd, "latency_ms"));
		if (d && json_object_get(rd, "status"))
			json_object_set(d, "status", json_object_get(rd, "status"));
	}
	rc = d ? apply(w, rein_event_name(k), step, d, err)
	       : rein_err_set(err, REIN_ENOMEM, "out of memory");
out:
	json_decref(d);
	rein_free(tk);
	rein_free(why);
	rein_free(args);
	return rc;
}

static int drive(wi *w, rein_err *err)
{
	int rc = REIN_OK;
	for (int guard = 0; guard < 1000000 && rc == REIN_OK; guard++) {
		rein_cmd cmd;
		if ((rc = deliver_mail(w, err)) != REIN_OK ||
		    (rc = rein_run_poll(w->run, w->now, &cmd, err)) != REIN_OK)
			break;
		switch (cmd.kind) {
		case REIN_CMD_NONE:
			return REIN_OK;
		case REIN_CMD_SLEEP: {
			/* on to the timer, or to the mail that comes before it */
			json_t *m = json_array_get(w->inbox, w->next_mail);
			int64_t t = m ? mail_at(m) : INT64_MAX;
			int64_t to = t < cmd.due ? t : cmd.due;
			if (w->open_at && to > w->open_at)
				return REIN_OK; /* the recording stops waiting here */
			w->now = to > w->now ? to : w->now + 1;
			break;
		}
		case REIN_CMD_BUSY:
			return rein_err_set(err, REIN_ECORRUPT, "the what-if run waits for a call "
								"nobody answers");
		case REIN_CMD_EMIT:
			rc = apply(w, cmd.type, cmd.step, cmd.data, err);
			rein_cmd_clear(&cmd);
			break;
		case REIN_CMD_EXEC: {
			int eff = rein_run_effect(w->run, cmd.step);
			if (eff == REIN_STEP_LLM) {
				rc = exec_model(w, cmd.step, err);
			} else if (eff == REIN_STEP_TOOL) {
				rc = exec_tool(w, cmd.step, err);
			} else {
				const char *type = NULL;
				json_t *out = NULL;
				if ((rc = rein_run_exec(w->run, cmd.step, NULL, &type, &out, err)) == REIN_OK)
					rc = apply(w, type, cmd.step, out, err);
				json_decref(out);
			}
			break;
		}
		}
	}
	return rc == REIN_OK ? rein_err_set(err, REIN_ECORRUPT, "the what-if run does not end") : rc;
}

/* ---- summaries and differences ---------------------------------------------------- */

static int64_t int_of(const json_t *o, const char *k)
{
	return (int64_t)json_number_value(json_object_get(o, k));
}

/* What a log comes to (see the header). */
static json_t *summarise(const json_t *evs)
{
	json_t *s = json_pack("{s:n, s:n, s:n, s:[], s:[], s:[], s:[], s:[], s:[], s:i, s:{s:i, s:i}, s:f}",
			      "status", "reason", "output", "path", "steps", "tool_calls", "policy",
			      "tiers", "routing", "model_calls", 0, "tokens", "input", 0, "output", 0,
			      "cost_usd", 0.0);
	if (s == NULL)
		return NULL;
	int64_t calls = 0, tin = 0, tout = 0;
	double cost = 0;
	bool oom = false;
	size_t i;
	json_t *e;
	json_array_foreach((json_t *)evs, i, e)
	{
		int k = rein_event_type_find(json_string_value(json_object_get(e, "type")));
		json_t *step = json_object_get(e, "step"), *d = json_object_get(e, "data");
		json_t *add = NULL;
		const char *into = NULL;
		switch (k) {
		case REIN_EV_RUN_ENDED:
			oom |= json_object_set(s, "status", json_object_get(d, "status")) != 0;
			if (json_object_get(d, "reason"))
				oom |= json_object_set(s, "reason", json_object_get(d, "reason")) != 0;
			if (json_object_get(d, "output"))
				oom |= json_object_set(s, "output", json_object_get(d, "output")) != 0;
			break;
		case REIN_EV_STEP_COMPLETED:
			oom |= json_array_append(json_object_get(s, "path"), step) != 0;
			add = json_pack("{s:O, s:s, s:O}", "step", step, "status", "completed", "out",
					json_object_get(d, "out") ?: json_null());
			into = "steps";
			break;
		case REIN_EV_STEP_FAILED:
			oom |= json_array_append(json_object_get(s, "path"), step) != 0;
			add = json_pack("{s:O, s:s, s:O}", "step", step, "status", "failed", "error",
					json_object_get(d, "error") ?: json_null());
			into = "steps";
			break;
		case REIN_EV_TOOL_INTENT:
			add = json_pack("{s:O, s:O, s:O}", "step", step, "tool", json_object_get(d, "tool"),
					"args", json_object_get(d, "args") ?: json_null());
			into = "tool_calls";
			break;
		case REIN_EV_POLICY_DECISION:
			add = json_pack("{s:O, s:O, s:O, s:O, s:O}", "step", step, "tool",
					json_object_get(d, "tool"), "decision",
					json_object_get(d, "decision"), "rules",
					json_object_get(d, "rules") ?: json_null(), "reasons",
					json_object_get(d, "reasons") ?: json_null());
			into = "policy";
			break;
		case REIN_EV_MODEL_INTENT:
			add = json_pack("{s:O, s:O}", "step", step, "tier",
					json_object_get(d, "tier") ?: json_null());
			into = "tiers";
			break;
		case REIN_EV_MODEL_ROUTE:
			add = json_pack("{s:O, s:O, s:O}", "step", step, "from", json_object_get(d, "from"),
					"to", json_object_get(d, "to"));
			into = "routing";
			break;
		case REIN_EV_MODEL_CALL: {
			json_t *u = json_object_get(d, "usage");
			calls++;
			tin += int_of(u, "input");
			tout += int_of(u, "output");
			cost += json_number_value(json_object_get(d, "cost_usd"));
			break;
		}
		default:
			break;
		}
		if (into)
			oom |= add == NULL || json_array_append_new(json_object_get(s, into), add) != 0;
	}
	oom |= json_object_set_new(s, "model_calls", json_integer(calls)) != 0;
	oom |= json_object_set_new(s, "tokens", json_pack("{s:I, s:I}", "input", (json_int_t)tin,
							  "output", (json_int_t)tout)) != 0;
	oom |= json_object_set_new(s, "cost_usd", json_real(cost)) != 0;
	if (oom) {
		json_decref(s);
		s = NULL;
	}
	return s;
}

static bool eq(const json_t *a, const json_t *b)
{
	char *x = rein_json_dump(a ? a : json_null()), *y = rein_json_dump(b ? b : json_null());
	bool r = x && y && strcmp(x, y) == 0;
	rein_free(x);
	rein_free(y);
	return r;
}

/* Adds {kind, step?, recorded, what_if} (values borrowed) to diffs. */
static bool diff(json_t *diffs, const char *kind, const json_t *step, const json_t *a,
		 const json_t *b)
{
	json_t *d = json_pack("{s:s, s:O, s:O}", "kind", kind, "recorded", a ? (json_t *)a : json_null(),
			      "what_if", b ? (json_t *)b : json_null());
	if (d && step && !json_is_null(step))
		json_object_set(d, "step", (json_t *)step);
	return d && json_array_append_new(diffs, d) == 0;
}

static json_t *without(const json_t *o, const char *k)
{
	json_t *c = json_copy((json_t *)o);
	if (c)
		json_object_del(c, k);
	return c;
}

/*
 * The tool calls that differ: calls with the same step, tool and arguments
 * pair up first; of the rest, calls of the same step and tool are changed
 * arguments (tool_call_changed), the others removed or added.
 */
static bool diff_calls(json_t *diffs, const json_t *ra, const json_t *wa)
{
	size_t n = json_array_size(ra), m = json_array_size(wa);
	bool ok = true;
	char *ur = rein_calloc(n + 1, 1), *uw = rein_calloc(m + 1, 1);
	if (ur == NULL || uw == NULL)
		ok = false;
	for (size_t i = 0; ok && i < n; i++)
		for (size_t j = 0; j < m; j++)
			if (!uw[j] && eq(json_array_get(ra, i), json_array_get(wa, j))) {
				ur[i] = uw[j] = 1;
				break;
			}
	for (size_t i = 0; ok && i < n; i++) {
		if (ur[i])
			continue;
		json_t *a = json_array_get(ra, i);
		for (size_t j = 0; j < m; j++) {
			json_t *b = json_array_get(wa, j);
			if (uw[j] || !eq(json_object_get(a, "step"), json_object_get(b, "step")) ||
			    !eq(json_object_get(a, "tool"), json_object_get(b, "tool")))
				continue;
			ur[i] = uw[j] = 1;
			json_t *x = without(a, "step"), *y = without(b, "step");
			ok = x && y && diff(diffs, "tool_call_changed", json_object_get(a, "step"), x, y);
			json_decref(x);
			json_decref(y);
			break;
		}
	}
	for (size_t i = 0; ok && i < n; i++)
		if (!ur[i]) {
			json_t *a = json_array_get(ra, i), *x = without(a, "step");
			ok = x && diff(diffs, "tool_call_removed", json_object_get(a, "step"), x, NULL);
			json_decref(x);
		}
	for (size_t j = 0; ok && j < m; j++)
		if (!uw[j]) {
			json_t *b = json_array_get(wa, j), *y = without(b, "step");
			ok = y && diff(diffs, "tool_call_added", json_object_get(b, "step"), NULL, y);
			json_decref(y);
		}
	rein_free(ur);
	rein_free(uw);
	return ok;
}

/* Per-entry differences of two lists by position (kind), each entry's step
 * named; paired: only the positions both lists have. */
static bool diff_list(json_t *diffs, const char *kind, const json_t *ra, const json_t *wa,
		      bool paired)
{
	size_t n = json_array_size(ra), m = json_array_size(wa);
	size_t len = paired ? (n < m ? n : m) : (n > m ? n : m);
	bool ok = true;
	for (size_t i = 0; ok && i < len; i++) {
		json_t *a = json_array_get(ra, i), *b = json_array_get(wa, i);
		if (a && b && eq(a, b))
			continue;
		json_t *step = json_object_get(a ? a : b, "step");
		json_t *x = a ? without(a, "step") : NULL, *y = b ? without(b, "step") : NULL;
		ok = (a == NULL || x) && (b == NULL || y) && diff(diffs, kind, step, x, y);
		json_decref(x);
		json_decref(y);
	}
	return ok;
}

/* The differences between two summaries. */
static json_t *compare(const json_t *r, const json_t *w)
{
	json_t *diffs = json_array();
	bool ok = diffs != NULL;
	static const char *const top[] = {"status", "reason", "output", "path"};
	for (size_t i = 0; ok && i < sizeof top / sizeof *top; i++)
		if (!eq(json_object_get(r, top[i]), json_object_get(w, top[i])))
			ok = diff(diffs, top[i], NULL, json_object_get(r, top[i]),
				  json_object_get(w, top[i]));
	/* each step visit's outcome, when both visited it: the path says the rest */
	json_t *rs = json_object_get(r, "steps"), *ws = json_object_get(w, "steps");
	for (size_t i = 0; ok && i < json_array_size(rs) && i < json_array_size(ws); i++) {
		json_t *a = json_array_get(rs, i), *b = json_array_get(ws, i);
		if (!eq(json_object_get(a, "step"), json_object_get(b, "step")) || eq(a, b))
			continue;
		json_t *x = without(a, "step"), *y = without(b, "step");
		ok = x && y && diff(diffs, "step_output", json_object_get(a, "step"), x, y);
		json_decref(x);
		json_decref(y);
	}
	if (ok)
		ok = diff_calls(diffs, json_object_get(r, "tool_calls"), json_object_get(w, "tool_calls"));
	if (ok)
		ok = diff_list(diffs, "policy", json_object_get(r, "policy"), json_object_get(w, "policy"),
			       false);
	/* the tier of each model call both runs made (model_calls says how many
	 * more one made), then the moves between tiers */
	if (ok)
		ok = diff_list(diffs, "routing", json_object_get(r, "tiers"), json_object_get(w, "tiers"),
			       true);
	if (ok)
		ok = diff_list(diffs, "routing", json_object_get(r, "routing"),
			       json_object_get(w, "routing"), false);
	if (ok && !eq(json_object_get(r, "model_calls"), json_object_get(w, "model_calls")))
		ok = diff(diffs, "model_calls", NULL, json_object_get(r, "model_calls"),
			  json_object_get(w, "model_calls"));
	if (ok && !eq(json_object_get(r, "tokens"), json_object_get(w, "tokens")))
		ok = diff(diffs, "tokens", NULL, json_object_get(r, "tokens"), json_object_get(w, "tokens"));
	double cr = json_real_value(json_object_get(r, "cost_usd")),
	       cw = json_real_value(json_object_get(w, "cost_usd"));
	if (ok && fabs(cr - cw) > 1e-12)
		ok = diff(diffs, "cost", NULL, json_object_get(r, "cost_usd"),
			  json_object_get(w, "cost_usd"));
	if (!ok) {
		json_decref(diffs);
		diffs = NULL;
	}
	return diffs;
}

/* ---- entry points ------------------------------------------------------------- */

int rein_whatif_events(const rein_spec *recorded, const rein_spec *spec, rein_script *sandbox,
		       const char *run_id, const rein_event_row *rows, size_t n,
		       const rein_whatif_opts *opts, json_t **report, rein_err *err)
{
	assert(recorded != NULL && spec != NULL && sandbox != NULL && run_id != NULL);
	assert(report != NULL && (rows != NULL || n == 0));
	*report = NULL;
	wi w = {.spec = spec, .o = opts};
	json_t *started = NULL, *sr = NULL, *sw = NULL, *diffs = NULL;
	int rc = REIN_OK;
	w.rec = json_array();
	w.evs = json_array();
	w.models = json_object();
	w.mcur = json_object();
	w.tools = json_object();
	w.tcur = json_object();
	w.lastok = json_object();
	w.not_rec = json_array();
	w.hashes = json_object();
	w.inbox = json_array();
	w.intents = json_object();
	if (!w.intents || !w.inbox || !w.rec || !w.evs || !w.models || !w.mcur || !w.tools || !w.tcur || !w.lastok ||
	    !w.not_rec || !w.hashes) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		const rein_event_row *ev = &rows[i];
		if (ev->payload == NULL) {
			rc = rein_err_set(err, REIN_EINVAL, "seq %lld: its payload was purged",
					  (long long)ev->seq);
			goto out;
		}
		json_t *d = rein_json_parse(ev->payload, strlen(ev->payload), err);
		if (d == NULL) {
			rc = err && err->code ? err->code : REIN_ECORRUPT;
			goto out;
		}
		json_t *e = json_pack("{s:s, s:s?, s:o, s:I}", "type", ev->type, "step", ev->step,
				      "data", d, "at", (json_int_t)ev->at);
		if (e == NULL || json_array_append_new(w.rec, e) != 0) {
			rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
			goto out;
		}
		if (started == NULL && rein_event_type_find(ev->type) == REIN_EV_RUN_STARTED) {
			started = json_incref(d);
			w.now = ev->at;
		}
	}
	if (started == NULL) {
		rc = rein_err_set(err, REIN_EINVAL, "run %s has no run.started", run_id);
		goto out;
	}
	if (rein_event_type_find(rows[n - 1].type) != REIN_EV_RUN_ENDED)
		w.open_at = rows[n - 1].at;
	if ((rc = index_recording(&w, recorded)) != REIN_OK) {
		rein_err_set(err, rc, "out of memory");
		goto out;
	}
	/* the recorded input, requester and pinned organisation policies; the
	 * changed workflow */
	json_t *sd = json_pack("{s:s, s:s, s:O}", "workflow", spec->name ? spec->name : "", "version",
			       spec->version, "input", json_object_get(started, "input") ?: json_null());
	static const char *const keep[] = {"requester", "org_policies", "shadow"};
	for (size_t i = 0; sd && i < sizeof keep / sizeof *keep; i++)
		if (json_object_get(started, keep[i]))
			json_object_set(sd, keep[i], json_object_get(started, keep[i]));
	if (sd == NULL) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	if ((rc = rein_schema_check(spec->input_schema, json_object_get(started, "input"), err,
				    "the recorded input does not match the changed input schema")) !=
	    REIN_OK) {
		json_decref(sd);
		goto out;
	}
	if ((rc = rein_run_new(spec, sandbox, run_id, &w.run)) != REIN_OK) {
		json_decref(sd);
		rein_err_set(err, rc, "out of memory");
		goto out;
	}
	rc = apply(&w, rein_event_name(REIN_EV_RUN_STARTED), -1, sd, err);
	json_decref(sd);
	if (rc != REIN_OK || (rc = drive(&w, err)) != REIN_OK)
		goto out;
	sr = summarise(w.rec);
	sw = summarise(w.evs);
	diffs = sr && sw ? compare(sr, sw) : NULL;
	if (diffs == NULL || json_object_set_new(sw, "not_recorded", json_incref(w.not_rec)) != 0 ||
	    json_object_set_new(sw, "model_requests",
				json_pack("{s:I, s:I}", "from_recording", (json_int_t)w.answered,
					  "sent", (json_int_t)w.sent)) != 0 ||
	    (*report = json_pack("{s:s, s:s, s:s, s:b, s:O, s:O, s:O}", "run", run_id, "recorded_version",
				 recorded->version, "what_if_version", spec->version, "same",
				 json_array_size(diffs) == 0, "differences", diffs, "recorded", sr,
				 "what_if", sw)) == NULL)
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
out:
	if (w.io) {
		rein_io_free(w.io);
		rein_model_router_free(w.router);
	}
	rein_model_routed_clear(&w.got);
	rein_run_free(w.run);
	json_decref(started);
	json_decref(sr);
	json_decref(sw);
	json_decref(diffs);
	json_decref(w.rec);
	json_decref(w.evs);
	json_decref(w.models);
	json_decref(w.mcur);
	json_decref(w.tools);
	json_decref(w.tcur);
	json_decref(w.lastok);
	json_decref(w.not_rec);
	json_decref(w.hashes);
	json_decref(w.inbox);
	json_decref(w.intents);
	return rc;
}
