/*
 * Events → spans: a fold over a run's events (the contract is in trace.h).
 * Each step name keeps the span of its current visit and of the call or wait
 * open under it; a step runs one call at a time, so a tool.result or
 * model.call belongs to the one open under its step. Allocation failures
 * only set a flag while folding (every jansson setter is checked through
 * it) and are reported once, by the add that saw them.
 */
#include <assert.h>
#include <string.h>

#include "trace.h"

typedef struct step_state {
	char *name;
	int span, chat, tool, wait; /* open span indexes, -1: none */
	bool content;              /* the open chat's intent recorded its request
				      (trace.store_prompts): its messages are exported */
	const char *err_type;      /* the last failed attempt's outcome (borrowed from a span's attrs) */
	char *err_buf;
	json_t *policy;            /* the attrs of a policy.decision waiting for its call's span */
	int64_t policy_at;
	int appr;                  /* the open approval wait span, -1: none */
	char *appr_id;             /* its approval.requested id */
	int64_t appr_need, appr_votes;
} step_state;

struct rein_trace {
	char *run_id;
	uint8_t trace_id[16];
	rein_span *spans;
	size_t n, cap;
	step_state *steps;
	size_t nsteps, capsteps;
	int64_t last_seq;
	bool ended;
	bool oom;
	rein_redactor *red;        /* message content at export (all classes), made on first use */
};

rein_trace *rein_trace_new(const char *run_id)
{
	assert(run_id != NULL);
	rein_trace *t = rein_calloc(1, sizeof *t);
	if (t == NULL)
		return NULL;
	t->run_id = rein_strdup(run_id);
	if (t->run_id == NULL) {
		rein_free(t);
		return NULL;
	}
	rein_sha256_ctx c;
	uint8_t h[REIN_HASH_LEN];
	rein_sha256_init(&c);
	rein_sha256_update(&c, "rein.trace", sizeof "rein.trace");
	rein_sha256_update(&c, run_id, strlen(run_id));
	rein_sha256_final(&c, h);
	memcpy(t->trace_id, h, sizeof t->trace_id);
	return t;
}

void rein_trace_free(rein_trace *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->n; i++) {
		rein_free(t->spans[i].name);
		rein_free(t->spans[i].status_msg);
		json_decref(t->spans[i].attrs);
		json_decref(t->spans[i].events);
	}
	for (size_t i = 0; i < t->nsteps; i++) {
		rein_free(t->steps[i].name);
		rein_free(t->steps[i].err_buf);
		rein_free(t->steps[i].appr_id);
		json_decref(t->steps[i].policy);
	}
	rein_redactor_free(t->red);
	rein_free(t->spans);
	rein_free(t->steps);
	rein_free(t->run_id);
	rein_free(t);
}

const rein_span *rein_trace_spans(const rein_trace *t, size_t *n)
{
	assert(t != NULL && n != NULL);
	*n = t->n;
	return t->spans;
}

const uint8_t *rein_trace_id(const rein_trace *t) { return t->trace_id; }
bool rein_trace_ended(const rein_trace *t) { return t->ended; }
const char *rein_trace_run_id(const rein_trace *t) { return t->run_id; }

/* ---- building blocks ---------------------------------------------------------- */

static void span_id(const rein_trace *t, const char *role, int64_t seq, uint8_t out[8])
{
	rein_sha256_ctx c;
	uint8_t h[REIN_HASH_LEN], be[8];
	for (int i = 0; i < 8; i++)
		be[i] = (uint8_t)((uint64_t)seq >> (56 - 8 * i));
	rein_sha256_init(&c);
	rein_sha256_update(&c, "rein.span", sizeof "rein.span");
	rein_sha256_update(&c, t->run_id, strlen(t->run_id) + 1);
	rein_sha256_update(&c, role, strlen(role) + 1);
	rein_sha256_update(&c, be, sizeof be);
	rein_sha256_final(&c, h);
	memcpy(out, h, 8);
}

/* Sets attribute key of span i to v (stolen; i < 0: no span, v dropped). */
static void set(rein_trace *t, int i, const char *key, json_t *v)
{
	if (i < 0)
		json_decref(v);
	else if (v == NULL || json_object_set_new(t->spans[i].attrs, key, v) != 0)
		t->oom = true;
}

static void set_s(rein_trace *t, int i, const char *key, const char *v)
{
	if (v != NULL)
		set(t, i, key, json_string(v));
}

static void set_name(rein_trace *t, int i, const char *prefix, const char *what)
{
	char *name = rein_sprintf("%s %s", prefix, what ? what : "?");
	if (name == NULL) {
		t->oom = true;
		return;
	}
	rein_free(t->spans[i].name);
	t->spans[i].name = name;
}

/* Opens a span under parent (-1: the run); returns its index, -1 on OOM. */
static int span_open(rein_trace *t, int parent, const char *role, rein_span_kind kind,
		     int64_t seq, int64_t at)
{
	if (t->n == t->cap) {
		size_t cap = t->cap ? 2 * t->cap : 16;
		rein_span *p = rein_realloc(t->spans, cap * sizeof *p);
		if (p == NULL) {
			t->oom = true;
			return -1;
		}
		t->spans = p;
		t->cap = cap;
	}
	rein_span *s = &t->spans[t->n];
	memset(s, 0, sizeof *s);
	span_id(t, role, seq, s->id);
	s->parent = parent;
	s->role = (char *)role;
	s->kind = kind;
	s->start_ms = s->end_ms = at;
	s->open = true;
	s->attrs = json_object();
	s->events = json_array();
	s->name = rein_strdup(role);
	if (s->attrs == NULL || s->events == NULL || s->name == NULL) {
		json_decref(s->attrs);
		json_decref(s->events);
		rein_free(s->name);
		t->oom = true;
		return -1;
	}
	return (int)t->n++;
}

static void span_event(rein_trace *t, int i, const char *name, int64_t at, json_t *attrs)
{
	if (i < 0 || attrs == NULL) {
		json_decref(attrs);
		t->oom = t->oom || attrs == NULL;
		return;
	}
	json_t *e = json_pack("{s:s, s:I, s:o}", "name", name, "at", (json_int_t)at, "attrs", attrs);
	if (e == NULL || json_array_append_new(t->spans[i].events, e) != 0)
		t->oom = true;
}

/* Ends span i at `at`; an error sets status, error.type and the message. */
static void span_close(rein_trace *t, int i, int64_t at, bool error, const char *err_type,
		       const char *msg)
{
	if (i < 0 || !t->spans[i].open)
		return;
	rein_span *s = &t->spans[i];
	s->open = false;
	s->end_ms = at;
	if (error) {
		s->status = REIN_STATUS_ERROR;
		set_s(t, i, "error.type", err_type ? err_type : "_OTHER");
		if (msg != NULL && (s->status_msg = rein_strdup(msg)) == NULL)
			t->oom = true;
	}
}

/* Adds to the totals of span i and of every ancestor. */
static void add_totals(rein_trace *t, int i, int64_t in, int64_t out, double cost, int retries)
{
	for (; i >= 0; i = t->spans[i].parent) {
		t->spans[i].in_tokens += in;
		t->spans[i].out_tokens += out;
		t->spans[i].cost_usd += cost;
		t->spans[i].retries += retries;
	}
}

static step_state *step_of(rein_trace *t, const char *name)
{
	for (size_t i = 0; i < t->nsteps; i++)
		if (strcmp(t->steps[i].name, name) == 0)
			return &t->steps[i];
	if (t->nsteps == t->capsteps) {
		size_t cap = t->capsteps ? 2 * t->capsteps : 8;
		step_state *p = rein_realloc(t->steps, cap * sizeof *p);
		if (p == NULL)
			return NULL;
		t->steps = p;
		t->capsteps = cap;
	}
	step_state *s = &t->steps[t->nsteps];
	*s = (step_state){.span = -1, .chat = -1, .tool = -1, .wait = -1, .appr = -1};
	if ((s->name = rein_strdup(name)) == NULL)
		return NULL;
	t->nsteps++;
	return s;
}

static void note_error(rein_trace *t, step_state *ss, const char *outcome)
{
	rein_free(ss->err_buf);
	ss->err_buf = outcome ? rein_strdup(outcome) : NULL;
	if (outcome && ss->err_buf == NULL)
		t->oom = true;
	ss->err_type = ss->err_buf;
}

/* The step is an agent (it proposes tool calls): name and attributes say so. */
static void make_agent(rein_trace *t, step_state *ss)
{
	if (ss->span < 0 || strncmp(t->spans[ss->span].name, "invoke_agent ", 13) == 0)
		return;
	set_name(t, ss->span, "invoke_agent", ss->name);
	set_s(t, ss->span, "gen_ai.operation.name", "invoke_agent");
	set_s(t, ss->span, "gen_ai.agent.name", ss->name);
}

/* A copy of the named fields of data that are present and not null (absent
 * fields skipped); NULL on OOM. */
static json_t *pick(const json_t *data, const char *const *keys)
{
	json_t *o = json_object();
	for (size_t k = 0; o != NULL && keys[k] != NULL; k++) {
		json_t *v = json_object_get(data, keys[k]);
		if (v != NULL && !json_is_null(v) && json_object_set(o, keys[k], v) != 0) {
			json_decref(o);
			o = NULL;
		}
	}
	return o;
}

static const char *str(const json_t *data, const char *key)
{
	return json_string_value(json_object_get(data, key));
}

/* ---- policy decisions ---------------------------------------------------------
 *
 * policy.decision comes before the call it gates: a deny is a span event on
 * the step's span at once (the call is never sent); an allow or approve waits
 * in the step's state for the call's tool.intent, whose span gets the event
 * and rein.policy.decision / rein.policy.rule (one id: a string, several: an
 * array of strings); when anything else ends the call (a refusal, an
 * approver's denial, the step's end) it goes to the step's span.
 */

static void policy_flush(rein_trace *t, step_state *ss)
{
	if (ss->policy != NULL)
		span_event(t, ss->span, "rein.policy.decision", ss->policy_at, ss->policy);
	ss->policy = NULL;
}

static void policy_event(rein_trace *t, step_state *ss, const rein_event_row *ev, const json_t *d)
{
	static const char *const k[] = {"tool", "decision", "rules", "policy_version", NULL};
	policy_flush(t, ss);
	json_t *a = pick(d, k);
	if (a == NULL) {
		t->oom = true;
		return;
	}
	const char *dec = str(d, "decision");
	if (dec != NULL && strcmp(dec, "deny") == 0) {
		span_event(t, ss->span, "rein.policy.decision", ev->at, a);
		return;
	}
	ss->policy = a;
	ss->policy_at = ev->at;
}

/* The pending decision onto the tool span i just opened for tool. */
static void policy_attach(rein_trace *t, step_state *ss, int i, const char *tool)
{
	if (ss->policy == NULL || i < 0)
		return;
	const char *pt = str(ss->policy, "tool");
	if (pt != NULL && tool != NULL && strcmp(pt, tool) != 0) {
		policy_flush(t, ss); /* a decision for another call */
		return;
	}
	set_s(t, i, "rein.policy.decision", str(ss->policy, "decision"));
	const json_t *rules = json_object_get(ss->policy, "rules");
	size_t n = json_array_size(rules);
	if (n == 1 && json_is_string(json_array_get(rules, 0)))
		set_s(t, i, "rein.policy.rule", json_string_value(json_array_get(rules, 0)));
	else if (n > 1)
		set(t, i, "rein.policy.rule", json_copy((json_t *)rules));
	/* decided just before the span opened (or before an approval wait):
	 * the event is put at the span's start, inside it */
	int64_t at = ss->policy_at > t->spans[i].start_ms ? ss->policy_at : t->spans[i].start_ms;
	span_event(t, i, "rein.policy.decision", at, ss->policy);
	ss->policy = NULL;
}

/* ---- the fold -------------------------------------------------------------- */

static void run_event(rein_trace *t, rein_event_type type, const rein_event_row *ev,
		      const json_t *d)
{
	if (type == REIN_EV_RUN_STARTED) {
		int i = span_open(t, -1, "run", REIN_SPAN_INTERNAL, ev->seq, ev->at);
		if (i < 0)
			return;
		set_name(t, i, "invoke_workflow", str(d, "workflow"));
		set_s(t, i, "gen_ai.operation.name", "invoke_workflow");
		set_s(t, i, "gen_ai.workflow.name", str(d, "workflow"));
		set_s(t, i, "rein.run.id", t->run_id);
		set_s(t, i, "rein.workflow.version", str(d, "version"));
	} else if (type == REIN_EV_RUN_RESUMED) {
		static const char *const k[] = {"owner", "previous_owner", NULL};
		span_event(t, 0, "rein.run.resumed", ev->at, pick(d, k));
	} else if (type == REIN_EV_INBOX_RECEIVED) {
		static const char *const k[] = {"id", "type", "sender", NULL};
		span_event(t, 0, "rein.inbox.received", ev->at, pick(d, k));
	} else if (type == REIN_EV_RUN_ENDED) {
		/* what is still open was cut short by the end (a cancel) */
		for (size_t i = 1; i < t->n; i++)
			span_close(t, (int)i, ev->at, false, NULL, NULL);
		for (size_t i = 0; i < t->nsteps; i++) {
			set_s(t, t->steps[i].appr, "rein.approval.outcome", "unfinished");
			policy_flush(t, &t->steps[i]);
			t->steps[i].span = t->steps[i].chat = t->steps[i].tool = t->steps[i].wait = -1;
			t->steps[i].appr = -1;
		}
		const char *status = str(d, "status");
		set_s(t, 0, "rein.run.status", status);
		bool bad = status == NULL || strcmp(status, "succeeded") != 0;
		span_close(t, 0, ev->at, bad, status, str(d, "reason"));
		t->ended = true;
	}
}

/* ---- message content (trace.store_prompts) ----------------------------------
 *
 * The GenAI conventions' gen_ai.system_instructions, gen_ai.input.messages
 * and gen_ai.output.messages (1.42.0), as JSON text: messages of
 * {role, parts: [{type: text, content} | {type: tool_call, id, name,
 * arguments} | {type: tool_call_response, id, response}]}. Only a request
 * the log recorded is exported (model.intent holds it only when the spec's
 * trace.store_prompts is on), and always after redaction: under
 * trace.redact the runner stored it with placeholders (protect.c), the
 * sealed values (the payload's "~sealed") are never read here, and whatever
 * trace.redact says every string of the content passes the detectors of
 * REIN_TRACE_REDACT (one redactor per trace, so a value keeps its
 * placeholder across the spans of a run).
 */

static bool add_part(json_t *parts, json_t *p)
{
	return p != NULL && json_array_append_new(parts, p) == 0;
}

static json_t *text_part(const json_t *v)
{
	if (json_is_string(v))
		return json_pack("{s:s, s:O}", "type", "text", "content", v);
	char *s = rein_json_dump(v); /* a structured output: its JSON text */
	json_t *p = s ? json_pack("{s:s, s:s}", "type", "text", "content", s) : NULL;
	rein_free(s);
	return p;
}

static bool add_calls(json_t *parts, const json_t *calls)
{
	size_t k;
	const json_t *c;
	json_array_foreach(calls, k, c) {
		const json_t *args = json_object_get(c, "arguments");
		if (!add_part(parts, json_pack("{s:s, s:O?, s:O?, s:O?}", "type", "tool_call", "id",
					       json_object_get(c, "id"), "name",
					       json_object_get(c, "name"), "arguments",
					       args ? args : json_object_get(c, "arguments_raw"))))
			return false;
	}
	return true;
}

/* Sets key of span i to the JSON text of v (stolen), redacted. */
static void set_json_text(rein_trace *t, int i, const char *key, json_t *v)
{
	json_t *r = NULL;
	if (v != NULL && t->red == NULL && rein_redactor_new(REIN_TRACE_REDACT, &t->red) != REIN_OK)
		t->red = NULL;
	if (v != NULL && t->red != NULL && rein_redact_json(t->red, v, &r, NULL) != REIN_OK)
		r = NULL;
	json_decref(v);
	char *s = r ? rein_json_dump(r) : NULL;
	json_decref(r);
	if (s == NULL) {
		t->oom = true;
		return;
	}
	set(t, i, key, json_string(s));
	rein_free(s);
}

static void set_input_messages(rein_trace *t, int i, const json_t *req)
{
	const json_t *sys = json_object_get(req, "system");
	if (json_is_string(sys))
		set_json_text(t, i, "gen_ai.system_instructions",
			      json_pack("[{s:s, s:O}]", "type", "text", "content", sys));
	json_t *out = json_array();
	bool ok = out != NULL;
	size_t k;
	const json_t *m;
	json_array_foreach(json_object_get(req, "messages"), k, m) {
		const char *role = str(m, "role");
		json_t *parts = json_array();
		ok = ok && parts != NULL;
		const json_t *content = json_object_get(m, "content");
		if (ok && role && strcmp(role, "tool") == 0)
			/* response is required: a result recorded as missing is null */
			ok = add_part(parts, json_pack("{s:s, s:O?, s:O}", "type", "tool_call_response",
						       "id", json_object_get(m, "tool_call_id"),
						       "response", content ? content : json_null()));
		else if (ok && content && !json_is_null(content))
			ok = add_part(parts, text_part(content));
		ok = ok && add_calls(parts, json_object_get(m, "tool_calls"));
		ok = ok && json_array_append_new(out, json_pack("{s:s, s:O}", "role",
								role ? role : "user", "parts",
								parts)) == 0;
		json_decref(parts);
	}
	if (!ok) {
		json_decref(out);
		t->oom = true;
		return;
	}
	set_json_text(t, i, "gen_ai.input.messages", out);
}

static void set_output_messages(rein_trace *t, int i, const json_t *resp)
{
	json_t *parts = json_array();
	bool ok = parts != NULL;
	const json_t *text = json_object_get(resp, "text");
	const json_t *output = json_object_get(resp, "output");
	if (ok && json_is_string(text) && json_string_length(text) > 0)
		ok = add_part(parts, text_part(text));
	if (ok && output && !json_is_null(output) && json_array_size(parts) == 0)
		ok = add_part(parts, text_part(output)); /* a structured answer given apart from text */
	ok = ok && add_calls(parts, json_object_get(resp, "tool_calls"));
	const char *fr = str(resp, "finish_reason");
	json_t *msg = ok ? json_pack("[{s:s, s:O, s:s}]", "role", "assistant", "parts", parts,
				     "finish_reason", fr ? fr : "stop")
			 : NULL;
	json_decref(parts);
	if (msg == NULL) {
		t->oom = true;
		return;
	}
	set_json_text(t, i, "gen_ai.output.messages", msg);
}

static void model_event(rein_trace *t, step_state *ss, rein_event_type type,
			const rein_event_row *ev, const json_t *d)
{
	int on = ss->chat >= 0 ? ss->chat : ss->span;
	if (type == REIN_EV_MODEL_INTENT) {
		span_close(t, ss->chat, ev->at, false, NULL, NULL);
		int i = ss->chat = span_open(t, ss->span, "chat", REIN_SPAN_CLIENT, ev->seq, ev->at);
		if (i < 0)
			return;
		const char *model = str(d, "model");
		set_name(t, i, "chat", model ? model : str(d, "tier"));
		set_s(t, i, "gen_ai.operation.name", "chat");
		const char *prov = str(d, "provider");
		if (prov != NULL && strstr(prov, "${") == NULL) /* else: resolved in model.call */
			set_s(t, i, "gen_ai.provider.name", prov);
		set_s(t, i, "gen_ai.request.model", model);
		set_s(t, i, "rein.step", ss->name);
		set_s(t, i, "rein.model.tier", str(d, "tier"));
		const json_t *params = json_object_get(d, "params");
		const json_t *mt = json_object_get(params, "max_tokens");
		if (json_is_integer(mt))
			set(t, i, "gen_ai.request.max_tokens", json_integer(json_integer_value(mt)));
		const json_t *temp = json_object_get(params, "temperature");
		if (json_is_number(temp))
			set(t, i, "gen_ai.request.temperature", json_real(json_number_value(temp)));
		if (json_object_get(d, "tools_hash") != NULL)
			make_agent(t, ss);
		const json_t *req = json_object_get(d, "request");
		ss->content = json_is_object(req);
		if (ss->content)
			set_input_messages(t, i, req);
		note_error(t, ss, NULL);
	} else if (type == REIN_EV_MODEL_ATTEMPT) {
		static const char *const k[] = {"attempt", "outcome", "error", "status", "transient",
						"retry_after_ms", NULL};
		span_event(t, on, "rein.model.attempt", ev->at, pick(d, k));
		note_error(t, ss, str(d, "outcome"));
	} else if (type == REIN_EV_MODEL_BACKOFF) {
		static const char *const k[] = {"attempt", "delay_ms", NULL};
		span_event(t, on, "rein.model.backoff", ev->at, pick(d, k));
		add_totals(t, on, 0, 0, 0, 1);
	} else if (type == REIN_EV_MODEL_CALL) {
		int i = ss->chat;
		if (i < 0)
			return;
		const char *prov = str(d, "provider");
		if (prov != NULL && strstr(prov, "${") == NULL)
			set_s(t, i, "gen_ai.provider.name", prov);
		set_s(t, i, "gen_ai.response.model", str(d, "model"));
		const json_t *resp = json_object_get(d, "response");
		const char *rid = str(resp, "id");
		set_s(t, i, "gen_ai.response.id", rid ? rid : str(d, "id"));
		const char *fr = str(resp, "finish_reason");
		if (fr != NULL)
			set(t, i, "gen_ai.response.finish_reasons", json_pack("[s]", fr));
		const json_t *srv = json_object_get(d, "server");
		set_s(t, i, "server.address", str(srv, "address"));
		if (json_is_integer(json_object_get(srv, "port")))
			set(t, i, "server.port",
			    json_integer(json_integer_value(json_object_get(srv, "port"))));
		if (ss->content)
			set_output_messages(t, i, resp);
		const json_t *u = json_object_get(d, "usage");
		static const struct {
			const char *from, *to;
		} um[] = {{"input", "gen_ai.usage.input_tokens"},
			  {"output", "gen_ai.usage.output_tokens"},
			  {"cached", "gen_ai.usage.cache_read.input_tokens"},
			  {"cache_write", "gen_ai.usage.cache_creation.input_tokens"},
			  {"reasoning", "gen_ai.usage.reasoning.output_tokens"}};
		for (size_t k = 0; k < sizeof um / sizeof *um; k++) {
			const json_t *v = json_object_get(u, um[k].from);
			if (json_is_integer(v))
				set(t, i, um[k].to, json_integer(json_integer_value(v)));
		}
		double cost = json_number_value(json_object_get(d, "cost_usd"));
		set(t, i, "rein.cost_usd", json_real(cost));
		if (json_is_true(json_object_get(d, "cached")))
			set(t, i, "rein.model.cached", json_true());
		add_totals(t, i, json_integer_value(json_object_get(u, "input")),
			   json_integer_value(json_object_get(u, "output")), cost, 0);
		span_close(t, i, ev->at, false, NULL, NULL);
		ss->chat = -1;
		note_error(t, ss, NULL);
	} else if (type == REIN_EV_MODEL_ROUTE) {
		span_close(t, ss->chat, ev->at, true, ss->err_type, str(d, "reason"));
		ss->chat = -1;
		static const char *const k[] = {"from", "to", "reason", NULL};
		span_event(t, ss->span, "rein.model.route", ev->at, pick(d, k));
	} else if (type == REIN_EV_MODEL_BREAKER) {
		static const char *const k[] = {"state", "provider", NULL};
		span_event(t, on, "rein.model.breaker", ev->at, pick(d, k));
	}
}

static void tool_event(rein_trace *t, step_state *ss, rein_event_type type,
		       const rein_event_row *ev, const json_t *d)
{
	int on = ss->tool >= 0 ? ss->tool : ss->span;
	if (type == REIN_EV_TOOL_INTENT) {
		span_close(t, ss->tool, ev->at, false, NULL, NULL);
		int i = ss->tool = span_open(t, ss->span, "tool", REIN_SPAN_INTERNAL, ev->seq, ev->at);
		if (i < 0)
			return;
		const char *tool = str(d, "tool");
		set_name(t, i, "execute_tool", tool);
		set_s(t, i, "gen_ai.operation.name", "execute_tool");
		set_s(t, i, "gen_ai.tool.name", tool);
		set_s(t, i, "gen_ai.tool.call.id", str(d, "call_id"));
		set_s(t, i, "rein.step", ss->name);
		set_s(t, i, "rein.tool.idempotency_key", str(d, "key"));
		policy_attach(t, ss, i, tool);
		if (str(d, "call_id") != NULL)
			make_agent(t, ss);
		note_error(t, ss, NULL);
	} else if (type == REIN_EV_TOOL_ATTEMPT) {
		static const char *const k[] = {"attempt", "outcome", "error", "status", "transient",
						"ambiguous", "retry_after_ms", NULL};
		span_event(t, on, "rein.tool.attempt", ev->at, pick(d, k));
		note_error(t, ss, str(d, "outcome"));
	} else if (type == REIN_EV_TOOL_BACKOFF) {
		static const char *const k[] = {"attempt", "delay_ms", NULL};
		span_event(t, on, "rein.tool.backoff", ev->at, pick(d, k));
		add_totals(t, on, 0, 0, 0, 1);
	} else if (type == REIN_EV_TOOL_FALLBACK) {
		static const char *const k[] = {"kind", "from", "to", NULL};
		span_event(t, on, "rein.tool.fallback", ev->at, pick(d, k));
		set_s(t, ss->tool, "rein.tool.fallback", str(d, "kind"));
		span_close(t, ss->tool, ev->at, true, ss->err_type, str(d, "error"));
		ss->tool = -1;
	} else if (type == REIN_EV_TOOL_REFUSED) {
		static const char *const k[] = {"tool", "call_id", "error", NULL};
		policy_flush(t, ss);
		span_event(t, ss->span, "rein.tool.refused", ev->at, pick(d, k));
		make_agent(t, ss);
	} else if (type == REIN_EV_TOOL_RESULT) {
		const json_t *st = json_object_get(d, "status");
		if (json_is_integer(st))
			set(t, ss->tool, "rein.tool.status", json_integer(json_integer_value(st)));
		const char *e = str(d, "error");
		span_close(t, ss->tool, ev->at, e != NULL, ss->err_type, e);
		ss->tool = -1;
	} else { /* breaker.opened / half_open / closed */
		static const char *const k[] = {"tool", "reason", "failures", NULL};
		const char *name = type == REIN_EV_BREAKER_OPENED      ? "rein.breaker.opened"
				   : type == REIN_EV_BREAKER_HALF_OPEN ? "rein.breaker.half_open"
								       : "rein.breaker.closed";
		span_event(t, on, name, ev->at, pick(d, k));
	}
}

/* ---- approvals ------------------------------------------------------------------
 *
 * The approval.* events (docs/approvals.md) are matched by name, not by the
 * event table's enum, so this fold needs no row of its own. A wait for a
 * decision is a child span of the step, `approval {tool}` (INTERNAL), from
 * approval.requested to the deciding event: need.count grants, a denial, or
 * an expiry whose on_timeout is not halt. rein.approval.approver lists who
 * voted; alerts, votes and refused tokens are span events.
 */

static void approval_close(rein_trace *t, step_state *ss, int64_t at, const char *outcome,
			   bool error, const char *err_type, const char *msg)
{
	set_s(t, ss->appr, "rein.approval.outcome", outcome);
	span_close(t, ss->appr, at, error, err_type, msg);
	ss->appr = -1;
	rein_free(ss->appr_id);
	ss->appr_id = NULL;
}

static void approver_add(rein_trace *t, int i, const char *by)
{
	json_t *a = i >= 0 ? json_object_get(t->spans[i].attrs, "rein.approval.approver") : NULL;
	if (a != NULL && by != NULL && json_array_append_new(a, json_string(by)) != 0)
		t->oom = true;
}

static void approval_event(rein_trace *t, step_state *ss, const rein_event_row *ev,
			   const json_t *d)
{
	const char *what = ev->type + strlen("approval.");
	const char *id = str(d, "id");
	if (strcmp(what, "refused") == 0 || ss == NULL) { /* names no step: found by its id */
		static const char *const k[] = {"id", "by", "reason", NULL};
		int on = 0;
		for (size_t s = 0; s < t->nsteps; s++)
			if (t->steps[s].appr >= 0 && id && t->steps[s].appr_id &&
			    strcmp(t->steps[s].appr_id, id) == 0)
				on = t->steps[s].appr;
		span_event(t, on, "rein.approval.refused", ev->at, pick(d, k));
		return;
	}
	int on = ss->appr >= 0 ? ss->appr : ss->span;
	if (strcmp(what, "requested") == 0) {
		if (ss->appr >= 0)
			approval_close(t, ss, ev->at, "superseded", false, NULL, NULL);
		int i = ss->appr = span_open(t, ss->span, "approval", REIN_SPAN_INTERNAL, ev->seq, ev->at);
		if (i < 0)
			return;
		const char *tool = str(d, "tool");
		set_name(t, i, "approval", tool);
		set_s(t, i, "rein.step", ss->name);
		set_s(t, i, "rein.approval.id", id);
		set_s(t, i, "gen_ai.tool.name", tool);
		set_s(t, i, "rein.approval.risk", str(d, "risk"));
		const json_t *need = json_object_get(json_object_get(d, "need"), "count");
		ss->appr_need = json_is_integer(need) && json_integer_value(need) > 0 ? json_integer_value(need) : 1;
		ss->appr_votes = 0;
		set(t, i, "rein.approval.need", json_integer(ss->appr_need));
		set(t, i, "rein.approval.approver", json_array());
		rein_free(ss->appr_id);
		if (id != NULL && (ss->appr_id = rein_strdup(id)) == NULL)
			t->oom = true;
	} else if (strcmp(what, "alert") == 0) {
		static const char *const k[] = {"id", "webhook", NULL};
		span_event(t, on, "rein.approval.alert", ev->at, pick(d, k));
	} else if (strcmp(what, "granted") == 0) {
		static const char *const k[] = {"by", "roles", "reason", NULL};
		json_t *a = pick(d, k);
		bool edited = json_is_object(json_object_get(d, "args"));
		if (a != NULL && edited && json_object_set_new(a, "edited", json_true()) != 0)
			t->oom = true;
		span_event(t, on, "rein.approval.granted", ev->at, a);
		approver_add(t, ss->appr, str(d, "by"));
		if (edited)
			set(t, ss->appr, "rein.approval.edited", json_true());
		if (ss->appr >= 0 && ++ss->appr_votes >= ss->appr_need)
			approval_close(t, ss, ev->at, "granted", false, NULL, NULL);
	} else if (strcmp(what, "denied") == 0) {
		static const char *const k[] = {"by", "reason", NULL};
		span_event(t, on, "rein.approval.denied", ev->at, pick(d, k));
		approver_add(t, ss->appr, str(d, "by"));
		if (ss->appr >= 0)
			approval_close(t, ss, ev->at, "denied", false, NULL, NULL);
		policy_flush(t, ss); /* the call is never sent */
	} else if (strcmp(what, "expired") == 0) {
		static const char *const k[] = {"on_timeout", NULL};
		const char *ot = str(d, "on_timeout");
		span_event(t, on, "rein.approval.expired", ev->at, pick(d, k));
		if (ss->appr >= 0 && (ot == NULL || strcmp(ot, "halt") != 0)) {
			approval_close(t, ss, ev->at, "expired", true, "timeout",
				       "no decision within the SLA");
			policy_flush(t, ss);
		}
	}
}

static void step_event(rein_trace *t, rein_event_type type, const rein_event_row *ev,
		       const json_t *d)
{
	step_state *ss = step_of(t, ev->step);
	if (ss == NULL) {
		t->oom = true;
		return;
	}
	if (ss->span < 0) { /* a new visit of the step */
		int i = ss->span = span_open(t, 0, "step", REIN_SPAN_INTERNAL, ev->seq, ev->at);
		if (i < 0)
			return;
		set_name(t, i, "step", ss->name);
		set_s(t, i, "rein.step", ss->name);
	}
	if (strncmp(ev->type, "approval.", 9) == 0) {
		approval_event(t, ss, ev, d);
		return;
	}
	switch (type) {
	case REIN_EV_POLICY_DECISION:
		policy_event(t, ss, ev, d);
		break;
	case REIN_EV_MODEL_INTENT: case REIN_EV_MODEL_ATTEMPT: case REIN_EV_MODEL_BACKOFF:
	case REIN_EV_MODEL_CALL: case REIN_EV_MODEL_ROUTE: case REIN_EV_MODEL_BREAKER:
		model_event(t, ss, type, ev, d);
		break;
	case REIN_EV_TOOL_INTENT: case REIN_EV_TOOL_ATTEMPT: case REIN_EV_TOOL_BACKOFF:
	case REIN_EV_TOOL_FALLBACK: case REIN_EV_TOOL_REFUSED: case REIN_EV_TOOL_RESULT:
	case REIN_EV_BREAKER_OPENED: case REIN_EV_BREAKER_HALF_OPEN: case REIN_EV_BREAKER_CLOSED:
		tool_event(t, ss, type, ev, d);
		break;
	case REIN_EV_TIMER_SCHEDULED: {
		span_close(t, ss->wait, ev->at, false, NULL, NULL);
		int i = ss->wait = span_open(t, ss->span, "wait", REIN_SPAN_INTERNAL, ev->seq, ev->at);
		if (i >= 0) {
			set_name(t, i, "wait", ss->name);
			set_s(t, i, "rein.step", ss->name);
			const json_t *due = json_object_get(d, "due_at");
			if (json_is_integer(due))
				set(t, i, "rein.wait.due_at", json_integer(json_integer_value(due)));
		}
		break;
	}
	case REIN_EV_TIMER_FIRED:
		span_close(t, ss->wait, ev->at, false, NULL, NULL);
		ss->wait = -1;
		break;
	case REIN_EV_STEP_COMPLETED: {
		/* a tool step's call answers with the step */
		const json_t *st = json_object_get(d, "status");
		if (json_is_integer(st))
			set(t, ss->tool, "rein.tool.status", json_integer(json_integer_value(st)));
		set_s(t, ss->tool, "rein.tool.fallback", str(d, "fallback"));
		policy_flush(t, ss);
		if (ss->appr >= 0)
			approval_close(t, ss, ev->at, "unfinished", false, NULL, NULL);
		span_close(t, ss->tool, ev->at, false, NULL, NULL);
		span_close(t, ss->chat, ev->at, false, NULL, NULL);
		span_close(t, ss->wait, ev->at, false, NULL, NULL);
		span_close(t, ss->span, ev->at, false, NULL, NULL);
		ss->span = ss->chat = ss->tool = ss->wait = -1;
		break;
	}
	case REIN_EV_STEP_FAILED: {
		const char *e = str(d, "error");
		const char *et = json_is_true(json_object_get(d, "budget")) ? "budget" : ss->err_type;
		policy_flush(t, ss);
		if (ss->appr >= 0)
			approval_close(t, ss, ev->at, "unfinished", true, et, e);
		span_close(t, ss->tool, ev->at, true, et, e);
		span_close(t, ss->chat, ev->at, true, et, e);
		span_close(t, ss->wait, ev->at, true, et, e);
		span_close(t, ss->span, ev->at, true, et, e);
		ss->span = ss->chat = ss->tool = ss->wait = -1;
		break;
	}
	default:
		break;
	}
}

int rein_trace_add(rein_trace *t, const rein_event_row *ev, rein_err *err)
{
	assert(t != NULL && ev != NULL && ev->type != NULL);
	json_t *d = NULL;
	int rc = REIN_OK;
	int type = rein_event_type_find(ev->type);
	bool appr = strncmp(ev->type, "approval.", 9) == 0; /* folded by name (approval_event) */
	if (type < 0 && !appr) {
		rc = rein_err_set(err, REIN_ECORRUPT, "run %s: event %lld has unknown type '%s'",
				  t->run_id, (long long)ev->seq, ev->type);
		goto out;
	}
	if (ev->seq <= t->last_seq || (t->n == 0 && type != REIN_EV_RUN_STARTED) ||
	    (t->n > 0 && type == REIN_EV_RUN_STARTED) || t->ended ||
	    (type >= 0 && rein_event_defs[type].step && ev->step == NULL)) {
		rc = rein_err_set(err, REIN_ECORRUPT, "run %s: event %lld (%s) out of order",
				  t->run_id, (long long)ev->seq, ev->type);
		goto out;
	}
	/* a purged payload still gives the skeleton */
	d = ev->payload ? rein_json_parse(ev->payload, strlen(ev->payload), NULL) : NULL;
	if (d == NULL && (d = json_object()) == NULL) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	t->last_seq = ev->seq;
	if (appr && ev->step == NULL)
		approval_event(t, NULL, ev, d);
	else if (appr || rein_event_defs[type].step)
		step_event(t, type < 0 ? REIN_EV__COUNT : (rein_event_type)type, ev, d);
	else
		run_event(t, (rein_event_type)type, ev, d);
	for (size_t i = 0; i < t->n; i++)
		if (t->spans[i].open)
			t->spans[i].end_ms = ev->at;
	if (t->oom)
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
out:
	json_decref(d);
	return rc;
}

static int load_cb(void *ud, const rein_event_row *ev)
{
	void **a = ud;
	return rein_trace_add(a[0], ev, a[1]);
}

int rein_trace_load(rein_store *st, const char *run_id, rein_trace **out, rein_err *err)
{
	assert(st != NULL && run_id != NULL && out != NULL);
	rein_trace *t = rein_trace_new(run_id);
	int rc = t ? REIN_OK : rein_err_set(err, REIN_ENOMEM, "out of memory");
	void *a[2] = {t, err};
	if (rc == REIN_OK)
		rc = rein_store_events_load(st, run_id, load_cb, a, err);
	if (rc == REIN_OK && t->n == 0)
		rc = rein_err_set(err, REIN_ENOTFOUND, "no run %s", run_id);
	if (rc == REIN_OK) {
		*out = t;
		t = NULL;
	}
	rein_trace_free(t);
	return rc;
}

/* ---- the terminal view ------------------------------------------------------- */

static void fmt_value(rein_buf *b, bool *oom, const json_t *v)
{
	char *s = json_is_string(v) ? NULL : rein_json_dump(v);
	if (json_is_string(v))
		*oom |= rein_buf_puts(b, json_string_value(v)) != REIN_OK;
	else
		*oom |= s == NULL || rein_buf_puts(b, s) != REIN_OK;
	rein_free(s);
}

static void render_span(const rein_trace *t, size_t i, rein_buf *b, bool *oom, const char *pre,
			bool last)
{
	const rein_span *s = &t->spans[i];
	bool root = s->parent < 0;
	*oom |= rein_buf_printf(b, "%s%s%s  %lldms", pre, root ? "" : last ? "└─ " : "├─ ", s->name,
				(long long)(s->end_ms - s->start_ms)) != REIN_OK;
	if (s->in_tokens || s->out_tokens)
		*oom |= rein_buf_printf(b, "  tokens %lld in / %lld out", (long long)s->in_tokens,
					(long long)s->out_tokens) != REIN_OK;
	if (s->cost_usd > 0)
		*oom |= rein_buf_printf(b, "  $%.6f", s->cost_usd) != REIN_OK;
	if (s->retries)
		*oom |= rein_buf_printf(b, "  retries %d", s->retries) != REIN_OK;
	const char *rs = json_string_value(json_object_get(s->attrs, "rein.run.status"));
	if (rs)
		*oom |= rein_buf_printf(b, "  [%s]", rs) != REIN_OK;
	const char *pd = json_string_value(json_object_get(s->attrs, "rein.policy.decision"));
	if (pd)
		*oom |= rein_buf_printf(b, "  policy %s", pd) != REIN_OK;
	const char *ao = json_string_value(json_object_get(s->attrs, "rein.approval.outcome"));
	const json_t *by = json_object_get(s->attrs, "rein.approval.approver");
	if (ao || json_array_size(by)) {
		*oom |= rein_buf_printf(b, "  [%s", ao ? ao : "waiting") != REIN_OK;
		for (size_t k = 0; k < json_array_size(by); k++)
			*oom |= rein_buf_printf(b, "%s%s", k ? ", " : " by ",
						json_string_value(json_array_get(by, k))) != REIN_OK;
		*oom |= rein_buf_puts(b, "]") != REIN_OK;
	}
	if (s->open)
		*oom |= rein_buf_puts(b, "  (open)") != REIN_OK;
	if (s->status == REIN_STATUS_ERROR) {
		const char *et = json_string_value(json_object_get(s->attrs, "error.type"));
		*oom |= rein_buf_printf(b, "  ✗ FAILED %s%s%s", et ? et : "", s->status_msg ? ": " : "",
					s->status_msg ? s->status_msg : "") != REIN_OK;
	}
	*oom |= rein_buf_puts(b, "\n") != REIN_OK;
	char *child_pre = rein_sprintf("%s%s", pre, root ? "" : last ? "   " : "│  ");
	if (child_pre == NULL) {
		*oom = true;
		return;
	}
	size_t ne = json_array_size(s->events);
	size_t last_child = 0;
	for (size_t k = i + 1; k < t->n; k++)
		if (t->spans[k].parent == (int)i)
			last_child = k;
	for (size_t k = 0; k < ne; k++) {
		const json_t *e = json_array_get(s->events, k);
		*oom |= rein_buf_printf(b, "%s%s· %s +%lldms", child_pre, last_child ? "│  " : "   ",
					json_string_value(json_object_get(e, "name")),
					(long long)(json_integer_value(json_object_get(e, "at")) -
						    s->start_ms)) != REIN_OK;
		const char *key;
		const json_t *v;
		const json_t *attrs = json_object_get(e, "attrs");
		/* keys in a fixed order: jansson keeps insertion order, which is pick()'s */
		json_object_foreach((json_t *)attrs, key, v) {
			*oom |= rein_buf_printf(b, " %s=", key) != REIN_OK;
			fmt_value(b, oom, v);
		}
		*oom |= rein_buf_puts(b, "\n") != REIN_OK;
	}
	for (size_t k = i + 1; k < t->n; k++)
		if (t->spans[k].parent == (int)i)
			render_span(t, k, b, oom, child_pre, k == last_child);
	rein_free(child_pre);
}

int rein_trace_render(const rein_trace *t, rein_buf *out)
{
	assert(t != NULL && out != NULL);
	bool oom = false;
	char tid[33];
	rein_hex(t->trace_id, sizeof t->trace_id, tid);
	oom |= rein_buf_printf(out, "trace %s  run %s\n", tid, t->run_id) != REIN_OK;
	if (t->n > 0)
		render_span(t, 0, out, &oom, "", true);
	return oom ? REIN_ENOMEM : REIN_OK;
}
