/*
 * One attempt of a tool call under its contract, breakers and the last-good
 * cache. See tools.h.
 */
#include "tools.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "engine.h"
#include "mcp.h"
#include "schema.h"

enum { BR_CLOSED = 0, BR_OPEN, BR_HALF_OPEN };

typedef struct breaker {
	char *key; /* workflow name / tool name */
	int state;
	int64_t *fails; /* timestamps of recent transient failures */
	size_t nfails, cap;
	int64_t opened_at;
	bool probing;
	json_t *cached;
} breaker;

typedef struct live_tool {
	char *name;
	rein_schema *input, *output; /* from the server's tools/list */
} live_tool;

struct attempt;

/* One MCP server connection, shared by every call to its tools. */
typedef struct mcp_conn {
	char key[160]; /* workflow version + server name */
	rein_mcp *m;
	bool listed, list_failed, closed;
	char list_err[512];
	live_tool *tools;
	size_t ntools;
	struct attempt **queue; /* calls waiting for tools/list */
	size_t nq, qcap;
} mcp_conn;

struct rein_tools {
	rein_io *io;
	const rein_clock *clock;
	breaker *br;
	size_t nbr, brcap;
	size_t inflight;
	mcp_conn **conns;
	size_t nconns;
	struct attempt *flying; /* attempts with a call out */
};

typedef struct attempt {
	rein_tools *tx;
	const rein_tool *tool;
	size_t br; /* index into tx->br */
	rein_tool_cb cb;
	void *ud;
	char *secrets[16]; /* resolved values, for redaction; freed after */
	size_t nsecrets;
	const char *tenant; /* whose secrets (borrowed while the call is built); NULL: none */
	bool probe;
	json_t *breaker; /* transitions decided before the call went out */
	/* mcp */
	mcp_conn *conn;
	json_t *sent;
	int64_t started;
	/* in flight: for rein_tools_cancel */
	rein_http_call *hc;
	rein_mcp_call *mc;
	struct attempt *prev, *next;
	bool listed_inflight;
} attempt;

int rein_tools_new(rein_io *io, const rein_clock *clock, rein_tools **out, rein_err *err)
{
	rein_tools *tx = rein_calloc(1, sizeof *tx);
	if (tx == NULL)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	tx->io = io;
	tx->clock = clock ? clock : &rein_clock_system;
	*out = tx;
	return REIN_OK;
}

void rein_tools_free(rein_tools *tx)
{
	if (tx == NULL)
		return;
	rein_tools_shutdown(tx);
	for (size_t i = 0; i < tx->nbr; i++) {
		rein_free(tx->br[i].key);
		rein_free(tx->br[i].fails);
		json_decref(tx->br[i].cached);
	}
	rein_free(tx->br);
	rein_free(tx);
}

size_t rein_tools_inflight(const rein_tools *tx) { return tx->inflight; }

static int breaker_for(rein_tools *tx, const rein_spec *spec, const rein_tool *tool, size_t *out)
{
	char key[512];
	snprintf(key, sizeof key, "%s/%s", spec->name ? spec->name : "", tool->name);
	for (size_t i = 0; i < tx->nbr; i++)
		if (strcmp(tx->br[i].key, key) == 0) {
			*out = i;
			return REIN_OK;
		}
	if (tx->nbr == tx->brcap) {
		size_t cap = tx->brcap ? tx->brcap * 2 : 8;
		breaker *v = rein_realloc(tx->br, cap * sizeof *v);
		if (v == NULL)
			return REIN_ENOMEM;
		tx->br = v;
		tx->brcap = cap;
	}
	breaker *b = &tx->br[tx->nbr];
	memset(b, 0, sizeof *b);
	if ((b->key = rein_strdup(key)) == NULL)
		return REIN_ENOMEM;
	*out = tx->nbr++;
	return REIN_OK;
}

const json_t *rein_tools_cached(rein_tools *tx, const rein_spec *spec, int tool)
{
	size_t i;
	if (breaker_for(tx, spec, &spec->tools[tool], &i) != REIN_OK)
		return NULL;
	return tx->br[i].cached;
}

static void breaker_event(rein_tool_outcome *o, rein_event_type type, json_t *data)
{
	if (o->breaker == NULL)
		o->breaker = json_array();
	if (o->breaker && data)
		json_array_append_new(o->breaker, json_pack("{s:s, s:o}", "type", rein_event_name(type), "data", data));
	else
		json_decref(data);
}

/* After an attempt: count it in the tool's breaker. */
static void breaker_record(rein_tools *tx, breaker *b, const rein_tool *tool, bool probe,
			   rein_tool_outcome *o)
{
	int64_t now = rein_clock_now(tx->clock);
	const rein_breaker_policy *p = &tool->breaker;
	if (probe)
		b->probing = false;
	if (o->ok) {
		b->nfails = 0;
		if (b->state != BR_CLOSED) {
			b->state = BR_CLOSED;
			breaker_event(o, REIN_EV_BREAKER_CLOSED,
				      json_pack("{s:s, s:s}", "tool", tool->name, "reason", "probe succeeded"));
		}
		return;
	}
	if (!o->transient)
		return; /* the caller's mistake, not the tool's health */
	if (b->state == BR_HALF_OPEN || (probe && b->state != BR_OPEN)) {
		b->state = BR_OPEN;
		b->opened_at = now;
		breaker_event(o, REIN_EV_BREAKER_OPENED,
			      json_pack("{s:s, s:s}", "tool", tool->name, "reason", "probe failed"));
		return;
	}
	size_t keep = 0;
	for (size_t i = 0; i < b->nfails; i++)
		if (now - b->fails[i] < p->window_ms)
			b->fails[keep++] = b->fails[i];
	b->nfails = keep;
	if (b->nfails == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 8;
		int64_t *v = rein_realloc(b->fails, cap * sizeof *v);
		if (v == NULL)
			return;
		b->fails = v;
		b->cap = cap;
	}
	b->fails[b->nfails++] = now;
	if (b->state == BR_CLOSED && (int)b->nfails >= p->failures) {
		b->state = BR_OPEN;
		b->opened_at = now;
		breaker_event(o, REIN_EV_BREAKER_OPENED,
			      json_pack("{s:s, s:i, s:I}", "tool", tool->name, "failures",
					(int)b->nfails, "window_ms", (json_int_t)p->window_ms));
	}
}

/* Replaces each resolved secret value in text by [secret]. */
static void redact(const attempt *at, char *text)
{
	for (size_t i = 0; i < at->nsecrets; i++) {
		const char *v = at->secrets[i];
		size_t n = strlen(v);
		if (n < 4)
			continue;
		for (char *p = strstr(text, v); p; p = strstr(p, v)) {
			static const char mask[] = "[secret]";
			size_t m = sizeof mask - 1;
			memmove(p + m, p + n, strlen(p + n) + 1);
			memcpy(p, mask, m);
			p += m;
		}
	}
}

static void fly_unlink(attempt *at)
{
	if (!at->listed_inflight)
		return;
	if (at->prev)
		at->prev->next = at->next;
	else
		at->tx->flying = at->next;
	if (at->next)
		at->next->prev = at->prev;
	at->listed_inflight = false;
}

static void fly_link(attempt *at)
{
	at->prev = NULL;
	at->next = at->tx->flying;
	if (at->next)
		at->next->prev = at;
	at->tx->flying = at;
	at->listed_inflight = true;
}

void rein_tools_cancel(rein_tools *tx, void *ud)
{
	for (attempt *at = tx->flying; at; at = at->next)
		if (at->ud == ud) {
			if (at->hc)
				rein_http_cancel(at->hc);
			if (at->mc)
				rein_mcp_cancel(at->mc);
		}
}

static void finish(attempt *at, rein_tool_outcome *o)
{
	rein_tools *tx = at->tx;
	fly_unlink(at);
	breaker *b = &tx->br[at->br];
	if (!o->ok)
		redact(at, o->error);
	else {
		json_decref(b->cached);
		b->cached = json_incref(o->result);
	}
	breaker_record(tx, b, at->tool, at->probe, o);
	at->cb(at->ud, o);
	json_decref(o->result);
	json_decref(o->breaker);
	for (size_t i = 0; i < at->nsecrets; i++)
		rein_free(at->secrets[i]);
	json_decref(at->sent);
	rein_free(at);
}

static void fail(rein_tool_outcome *o, const char *code, bool transient, bool ambiguous,
		 const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void fail(rein_tool_outcome *o, const char *code, bool transient, bool ambiguous,
		 const char *fmt, ...)
{
	o->ok = false;
	o->outcome = code;
	o->transient = transient;
	o->ambiguous = ambiguous;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(o->error, sizeof o->error, fmt, ap);
	va_end(ap);
}

/* A printable excerpt of raw bytes, kept as evidence. */
static void excerpt(const char *p, size_t n, char *out, size_t outlen)
{
	size_t j = 0;
	for (size_t i = 0; i < n && j + 5 < outlen; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c >= 32 && c < 127 && c != '\\')
			out[j++] = (char)c;
		else
			j += (size_t)snprintf(out + j, outlen - j, "\\x%02x", c);
	}
	if (n > 0 && j + 5 >= outlen)
		snprintf(out + (outlen > 4 ? outlen - 4 : 0), 4, "...");
	out[j < outlen ? j : outlen - 1] = '\0';
}

static void http_done(void *ud, const rein_http_resp *resp)
{
	attempt *at = ud;
	const rein_tool *tool = at->tool;
	rein_tool_outcome o = {.retry_after_ms = -1, .latency_ms = resp->elapsed_ms,
			       .breaker = at->breaker};
	at->tx->inflight--;
	char ex[300];
	switch (resp->error) {
	case REIN_HTTP_OK:
		break;
	case REIN_HTTP_CONNECT:
		fail(&o, "connect", true, false, "cannot connect: %s", resp->errmsg);
		goto out;
	case REIN_HTTP_TIMEOUT:
		fail(&o, "timeout", true, true, "no complete answer within %lld ms: %s",
		     (long long)tool->timeout_ms, resp->errmsg);
		goto out;
	case REIN_HTTP_TOO_LARGE:
		fail(&o, "too_large", false, false, "response larger than the cap of %zu KiB",
		     tool->max_response_bytes / 1024);
		goto out;
	case REIN_HTTP_CANCELLED:
		fail(&o, "cancelled", true, true, "the call was cancelled");
		goto out;
	default:
		fail(&o, "protocol", true, true, "broken HTTP exchange: %s", resp->errmsg);
		goto out;
	}
	o.status = resp->status;
	o.retry_after_ms = resp->retry_after_ms;
	if (resp->status < 200 || resp->status > 299) {
		excerpt(resp->body, resp->body_len < 200 ? resp->body_len : 200, ex, sizeof ex);
		bool transient = resp->status == 429 || resp->status == 500 || resp->status == 502 ||
				 resp->status == 503 || resp->status == 504;
		/* 429 and 503 say the request was not processed; 500/502/504 do not */
		bool ambiguous = transient && resp->status != 429 && resp->status != 503;
		const char *code = resp->status == 429   ? "http_429"
				   : resp->status >= 500 ? "http_5xx"
							 : "http_4xx";
		fail(&o, code, transient, ambiguous, "HTTP %ld: %s", resp->status, ex);
		goto out;
	}
	rein_err perr = {0};
	json_t *body = resp->body_len == 0 ? json_null()
					   : rein_json_parse(resp->body, resp->body_len, &perr);
	if (body == NULL) {
		excerpt(resp->body, resp->body_len < 200 ? resp->body_len : 200, ex, sizeof ex);
		fail(&o, "malformed", false, false, "response is not JSON (%s); it began: %s",
		     perr.msg, ex);
		rein_err_clear(&perr);
		goto out;
	}
	rein_err se = {0};
	if (rein_schema_check(tool->output, body, &se, "response does not match the output schema") !=
	    REIN_OK) {
		fail(&o, "schema", false, false, "%s", se.msg);
		rein_err_clear(&se);
		json_decref(body);
		goto out;
	}
	o.ok = true;
	o.result = body;
out:
	finish(at, &o);
}


/* ---- MCP tools ------------------------------------------------------------ */

static void live_free(mcp_conn *c)
{
	for (size_t i = 0; i < c->ntools; i++) {
		rein_free(c->tools[i].name);
		rein_schema_free(c->tools[i].input);
		rein_schema_free(c->tools[i].output);
	}
	rein_free(c->tools);
	c->tools = NULL;
	c->ntools = 0;
}

static const live_tool *live_find(const mcp_conn *c, const char *name)
{
	for (size_t i = 0; i < c->ntools; i++)
		if (strcmp(c->tools[i].name, name) == 0)
			return &c->tools[i];
	return NULL;
}

static void mcp_done(void *ud, const rein_mcp_result *res)
{
	attempt *at = ud;
	const rein_tool *tool = at->tool;
	const live_tool *lt = live_find(at->conn, tool->mcp_tool);
	rein_tool_outcome o = {.retry_after_ms = -1, .breaker = at->breaker,
			       .latency_ms = rein_clock_now(at->tx->clock) - at->started};
	at->tx->inflight--;
	switch (res->status) {
	case REIN_MCP_OK:
		break;
	case REIN_MCP_TOOL_ERROR: {
		/* the tool ran and said no: its text is the error */
		char text[400] = "";
		size_t i;
		json_t *item;
		json_array_foreach(res->content, i, item)
		{
			const char *t = json_string_value(json_object_get(item, "text"));
			size_t len = strlen(text);
			if (t && len + strlen(t) + 2 < sizeof text)
				snprintf(text + len, sizeof text - len, "%s ", t);
		}
		fail(&o, "tool_error", false, false, "the tool reported an error: %s", text);
		goto out;
	}
	case REIN_MCP_TIMEOUT:
		fail(&o, "timeout", true, true, "no answer within %lld ms: %s",
		     (long long)tool->timeout_ms, res->errmsg);
		goto out;
	case REIN_MCP_TRANSPORT:
		fail(&o, "transport", true, true, "server connection failed: %s", res->errmsg);
		goto out;
	case REIN_MCP_CANCELLED:
		fail(&o, "cancelled", true, true, "the call was cancelled");
		goto out;
	default:
		fail(&o, "protocol", false, false, "MCP error: %s", res->errmsg);
		goto out;
	}
	json_t *result = res->structured ? json_incref((json_t *)res->structured)
					 : json_pack("{s:O?}", "content", (json_t *)res->content);
	rein_schema *out_schema = tool->output ? tool->output : lt ? lt->output : NULL;
	rein_err se = {0};
	if (result &&
	    rein_schema_check(out_schema, result, &se, "result does not match the output schema") !=
		    REIN_OK) {
		fail(&o, "schema", false, false, "%s", se.msg);
		rein_err_clear(&se);
		json_decref(result);
		goto out;
	}
	if (result == NULL) {
		fail(&o, "nomem", true, false, "out of memory");
		goto out;
	}
	o.ok = true;
	o.result = result;
out:
	finish(at, &o);
}

/* Sends a call whose server has listed its tools. */
static void mcp_send(attempt *at)
{
	mcp_conn *c = at->conn;
	const rein_tool *tool = at->tool;
	rein_tool_outcome o = {.retry_after_ms = -1, .breaker = at->breaker};
	rein_err e = {0};
	if (c->list_failed) {
		/* never sent: safe to retry */
		fail(&o, "unavailable", true, false, "MCP server unavailable: %s", c->list_err);
		goto now;
	}
	const live_tool *lt = live_find(c, tool->mcp_tool);
	if (lt == NULL) {
		fail(&o, "unknown_tool", false, false, "the MCP server has no tool '%s'", tool->mcp_tool);
		goto now;
	}
	if ((tool->input == NULL || tool->input_locked) && lt->input && /* the server's own */
	    rein_schema_check(lt->input, at->sent, &e,
			      "arguments do not match the server's input schema") != REIN_OK) {
		fail(&o, "arguments", false, false, "%s", e.msg);
		rein_err_clear(&e);
		goto now;
	}
	at->started = rein_clock_now(at->tx->clock);
	if (rein_mcp_call_tool(c->m, tool->mcp_tool, at->sent, tool->timeout_ms, mcp_done, at, &at->mc,
			       &e) == REIN_OK) {
		fly_link(at);
		return;
	}
	fail(&o, "transport", true, false, "cannot send: %s", e.msg);
now:
	at->breaker = NULL;
	at->tx->inflight--;
	finish(at, &o);
}

static void mcp_listed(void *ud, const rein_mcp_result *res)
{
	mcp_conn *c = ud;
	c->listed = true;
	if (res->status != REIN_MCP_OK) {
		c->list_failed = true;
		snprintf(c->list_err, sizeof c->list_err, "%s", res->errmsg);
	} else {
		json_t *tools = json_object_get(res->result, "tools");
		size_t n = json_array_size(tools), i;
		json_t *t;
		c->tools = rein_calloc(n + 1, sizeof *c->tools);
		json_array_foreach(tools, i, t)
		{
			const char *name = json_string_value(json_object_get(t, "name"));
			if (c->tools == NULL || name == NULL)
				continue;
			live_tool *lt = &c->tools[c->ntools++];
			lt->name = rein_strdup(name);
			rein_err e = {0};
			json_t *in = json_object_get(t, "inputSchema"), *out = json_object_get(t, "outputSchema");
			if (in && rein_schema_compile(in, NULL, &lt->input, &e) != REIN_OK)
				lt->input = NULL; /* a server schema we cannot compile: not enforced */
			if (out && rein_schema_compile(out, NULL, &lt->output, &e) != REIN_OK)
				lt->output = NULL;
		}
	}
	size_t nq = c->nq;
	attempt **q = c->queue;
	c->queue = NULL;
	c->nq = c->qcap = 0;
	for (size_t i = 0; i < nq; i++)
		mcp_send(q[i]);
	rein_free(q);
}

/* The connection for a server, opened on first use; NULL (out of memory) with err. */
static mcp_conn *conn_for(rein_tools *tx, const rein_spec *spec, int server, rein_err *err)
{
	const rein_mcp_server_spec *sv = &spec->servers[server];
	char key[160];
	snprintf(key, sizeof key, "%.64s/%.80s", spec->version, sv->name);
	for (size_t i = 0; i < tx->nconns; i++)
		if (strcmp(tx->conns[i]->key, key) == 0)
			return tx->conns[i];
	mcp_conn *c = rein_calloc(1, sizeof *c);
	mcp_conn **v = rein_realloc(tx->conns, (tx->nconns + 1) * sizeof *v);
	char *argv[64] = {0}, *env[64] = {0}, *url = NULL;
	if (c == NULL || v == NULL) {
		rein_free(c);
		if (v)
			tx->conns = v;
		rein_err_set(err, REIN_ENOMEM, "out of memory");
		return NULL;
	}
	tx->conns = v;
	snprintf(c->key, sizeof c->key, "%s", key);
	for (size_t i = 0; sv->argv && sv->argv[i] && i < 63; i++)
		argv[i] = rein_expand_env(sv->argv[i]);
	for (size_t i = 0; sv->env && sv->env[i] && i < 63; i++)
		env[i] = rein_expand_env(sv->env[i]);
	if (sv->url)
		url = rein_expand_env(sv->url);
	char *cwd = sv->cwd ? rein_expand_env(sv->cwd) : NULL;
	rein_mcp_config cfg = {
		.name = sv->name,
		.argv = sv->argv ? (const char *const *)argv : NULL,
		.env = (const char *const *)env,
		.url = url,
		.cwd = cwd,
		.request_timeout_ms = sv->timeout_ms,
	};
	rein_err e = {0};
	int rc = rein_mcp_open(tx->io, &cfg, &c->m, &e);
	if (rc == REIN_OK)
		rc = rein_mcp_list_tools(c->m, mcp_listed, c, &e);
	for (size_t i = 0; i < 64; i++) {
		rein_free(argv[i]);
		rein_free(env[i]);
	}
	rein_free(url);
	rein_free(cwd);
	if (rc != REIN_OK) {
		/* remembered as failed: calls get a clear, retryable error */
		c->listed = c->list_failed = true;
		snprintf(c->list_err, sizeof c->list_err, "%.500s", e.msg);
	}
	tx->conns[tx->nconns++] = c;
	return c;
}

static int mcp_call(rein_tools *tx, const rein_spec *spec, attempt *at, const char *key,
		    const json_t *args, rein_tool_outcome *o)
{
	const rein_tool *tool = at->tool;
	rein_err e = {0};
	mcp_conn *c = conn_for(tx, spec, tool->server, &e);
	if (c == NULL) {
		fail(o, "unavailable", true, false, "MCP server %s: %s", spec->servers[tool->server].name,
		     e.msg);
		return -1;
	}
	if ((at->sent = json_deep_copy(args)) == NULL) {
		fail(o, "nomem", true, false, "out of memory");
		return -1;
	}
	if (tool->idem == REIN_IDEM_ARG)
		json_object_set_new(at->sent, tool->idem_name, json_string(key));
	at->conn = c;
	at->breaker = o->breaker;
	o->breaker = NULL;
	tx->inflight++;
	if (!c->listed) {
		attempt **q = c->nq == c->qcap ? rein_realloc(c->queue, (c->qcap ? c->qcap * 2 : 8) *
									      sizeof *q)
					       : c->queue;
		if (q == NULL) {
			tx->inflight--;
			o->breaker = at->breaker;
			at->breaker = NULL;
			fail(o, "nomem", true, false, "out of memory");
			return -1;
		}
		if (c->nq == c->qcap)
			c->qcap = c->qcap ? c->qcap * 2 : 8;
		c->queue = q;
		c->queue[c->nq++] = at;
		return 0;
	}
	mcp_send(at);
	return 0;
}

static void conn_closed(void *ud)
{
	((mcp_conn *)ud)->closed = true;
}

void rein_tools_shutdown(rein_tools *tx)
{
	if (tx == NULL)
		return;
	for (size_t i = 0; i < tx->nconns; i++) {
		mcp_conn *c = tx->conns[i];
		if (c->m)
			rein_mcp_close_then(c->m, conn_closed, c);
		else
			c->closed = true;
	}
	for (int guard = 0; guard < 1000; guard++) {
		bool all = true;
		for (size_t i = 0; i < tx->nconns; i++)
			all &= tx->conns[i]->closed;
		if (all)
			break;
		rein_io_wait(tx->io, 20);
	}
	for (size_t i = 0; i < tx->nconns; i++) {
		live_free(tx->conns[i]);
		rein_free(tx->conns[i]->queue);
		rein_free(tx->conns[i]);
	}
	rein_free(tx->conns);
	tx->conns = NULL;
	tx->nconns = 0;
}

/* Looks a secret up for a run of tenant; returns a new string or NULL with err. */
static char *secret_value(const rein_secret_ref *ref, const char *tenant, rein_err *err)
{
	rein_secret_src src = {0}, *s = &src;
	if (!rein_secret_pick(ref, tenant, &src)) {
		if (tenant)
			rein_err_set(err, REIN_ENOTFOUND, "secret '%s' has no entry for tenant '%s' "
				     "and no default", ref->name, tenant);
		else
			rein_err_set(err, REIN_ENOTFOUND, "secret '%s' is scoped by tenant and has no "
				     "default, but the run names no tenant (rein run --tenant)",
				     ref->name);
		return NULL;
	}
	if (s->env) {
		const char *v = getenv(s->env);
		if (v == NULL || *v == '\0') {
			rein_err_set(err, REIN_ENOTFOUND, "secret '%s' is not set (environment variable %s)",
				     ref->name, s->env);
			return NULL;
		}
		char *copy = rein_strdup(v);
		if (copy == NULL)
			rein_err_set(err, REIN_ENOMEM, "out of memory");
		return copy;
	}
	char *text = NULL;
	size_t len = 0;
	rein_err e = {0};
	if (rein_file_read(s->file, &text, &len, &e) != REIN_OK) {
		rein_err_set(err, e.code, "secret '%s' cannot be read from %s", ref->name, s->file);
		return NULL;
	}
	while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
		text[--len] = '\0';
	return text;
}

/*
 * Expands ${env.X}, ${secret.X} and ${args.X} in tmpl. url_encode escapes
 * argument values (for URLs). Returns a new string or NULL with err.
 */
static char *expand(attempt *at, const rein_tool *tool, const char *tmpl, const json_t *args,
		    bool url_encode, rein_err *err)
{
	rein_buf b = {0};
	const char *p = tmpl;
	while (*p) {
		const char *open = strstr(p, "${");
		if (open == NULL) {
			rein_buf_puts(&b, p);
			break;
		}
		rein_buf_append(&b, p, (size_t)(open - p));
		const char *close = strchr(open, '}');
		if (close == NULL) {
			rein_buf_puts(&b, open);
			break;
		}
		char name[128];
		snprintf(name, sizeof name, "%.*s", (int)(close - open - 2), open + 2);
		char *val = NULL;
		if (strncmp(name, "env.", 4) == 0) {
			const char *v = getenv(name + 4);
			if (v == NULL) {
				rein_err_set(err, REIN_ENOTFOUND, "environment variable %s is not set",
					     name + 4);
				goto fail;
			}
			val = rein_strdup(v);
		} else if (strncmp(name, "secret.", 7) == 0) {
			for (size_t i = 0; i < tool->nsecrets; i++)
				if (strcmp(tool->secrets[i].name, name + 7) == 0)
					val = secret_value(&tool->secrets[i], at->tenant, err);
			if (val == NULL)
				goto fail;
			if (at->nsecrets < 16)
				at->secrets[at->nsecrets++] = rein_strdup(val);
		} else if (strncmp(name, "args.", 5) == 0) {
			const json_t *a = json_object_get(args, name + 5);
			val = a == NULL ? rein_strdup("")
			      : json_is_string(a) ? rein_strdup(json_string_value(a))
						  : rein_json_dump(a);
		} else {
			rein_err_set(err, REIN_EINVAL,
				     "unknown reference ${%s} (use env., secret. or args.)", name);
			goto fail;
		}
		if (val == NULL) {
			rein_err_set(err, REIN_ENOMEM, "out of memory");
			goto fail;
		}
		if (url_encode && strncmp(name, "args.", 5) == 0) {
			char *esc = curl_easy_escape(NULL, val, 0);
			rein_buf_puts(&b, esc ? esc : "");
			curl_free(esc);
		} else {
			rein_buf_puts(&b, val);
		}
		rein_free(val);
		p = close + 1;
	}
	if (b.p == NULL && rein_buf_puts(&b, "") != REIN_OK) {
		rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto fail;
	}
	return b.p;
fail:
	rein_buf_free(&b);
	return NULL;
}

int rein_tools_call(rein_tools *tx, const rein_spec *spec, int ti, const char *key,
		    const json_t *args, rein_tool_cb cb, void *ud, rein_err *err)
{
	return rein_tools_call_as(tx, spec, ti, NULL, key, args, cb, ud, err);
}

int rein_tools_call_as(rein_tools *tx, const rein_spec *spec, int ti, const char *tenant,
		       const char *key, const json_t *args, rein_tool_cb cb, void *ud, rein_err *err)
{
	const rein_tool *tool = &spec->tools[ti];
	attempt *at = rein_calloc(1, sizeof *at);
	rein_tool_outcome o = {.retry_after_ms = -1};
	char *url = NULL, *body = NULL, *hv[32] = {0};
	json_t *sent = NULL;
	rein_http_header hdrs[40];
	size_t nh = 0;
	rein_err xe = {0}; /* why a template did not expand */
	int rc = REIN_OK;
	if (at == NULL)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	at->tx = tx;
	at->tool = tool;
	at->tenant = tenant;
	at->cb = cb;
	at->ud = ud;
	if ((rc = breaker_for(tx, spec, tool, &at->br)) != REIN_OK) {
		rein_free(at);
		return rein_err_set(err, rc, "out of memory");
	}
	breaker *b = &tx->br[at->br];
	int64_t now = rein_clock_now(tx->clock);
	if (b->state == BR_OPEN && now - b->opened_at >= tool->breaker.cooldown_ms) {
		b->state = BR_HALF_OPEN;
		breaker_event(&o, REIN_EV_BREAKER_HALF_OPEN, json_pack("{s:s}", "tool", tool->name));
		b->probing = false;
	}
	if (b->state == BR_OPEN || (b->state == BR_HALF_OPEN && b->probing)) {
		fail(&o, "breaker_open", false, false, "circuit breaker for '%s' is open", tool->name);
		goto now_done;
	}
	if (b->state == BR_HALF_OPEN) {
		b->probing = true;
		at->probe = true;
	}
	if (tool->kind == REIN_TOOL_MCP) {
		if (mcp_call(tx, spec, at, key, args, &o) == 0) {
			at = NULL; /* the MCP path owns it now */
			goto out;
		}
		goto now_done;
	}
	sent = json_deep_copy(args);
	if (sent == NULL) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto now_done;
	}
	if (tool->idem == REIN_IDEM_ARG)
		json_object_set_new(sent, tool->idem_name, json_string(key));
	if ((url = expand(at, tool, tool->url, sent, true, &xe)) == NULL) {
		fail(&o, "config", false, false, "url: %s", xe.msg);
		goto now_done;
	}
	hdrs[nh++] = (rein_http_header){"Content-Type", "application/json"};
	hdrs[nh++] = (rein_http_header){"Accept", "application/json"};
	if (tool->idem == REIN_IDEM_HEADER)
		hdrs[nh++] = (rein_http_header){tool->idem_name, key};
	for (size_t i = 0; i < tool->nheaders && i < 32; i++) {
		if ((hv[i] = expand(at, tool, tool->headers[i].value, sent, false, &xe)) == NULL) {
			fail(&o, "config", false, false, "header %s: %s", tool->headers[i].key, xe.msg);
			goto now_done;
		}
		if (strpbrk(hv[i], "\r\n")) { /* a header injection: never sent, never retried */
			fail(&o, "bad_request", false, false,
			     "header %s's value contains a CR or LF character (from the call's "
			     "arguments); the request was not sent",
			     tool->headers[i].key);
			goto now_done;
		}
		hdrs[nh++] = (rein_http_header){tool->headers[i].key, hv[i]};
	}
	bool has_body = strcmp(tool->method, "GET") != 0 && strcmp(tool->method, "DELETE") != 0;
	if (has_body && (body = rein_json_dump(sent)) == NULL) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto now_done;
	}
	rein_http_req req = {
		.method = tool->method,
		.url = url,
		.headers = hdrs,
		.nheaders = nh,
		.body = body,
		.body_len = body ? strlen(body) : 0,
		.timeout_ms = tool->timeout_ms,
		.max_response_bytes = tool->max_response_bytes,
	};
	rein_err he = {0};
	if (rein_http_start(tx->io, &req, http_done, at, &at->hc, &he) != REIN_OK) {
		/* out of memory stops the process; any other refusal is this call's */
		if (he.code == REIN_ENOMEM)
			rc = rein_err_set(err, he.code, "%s", he.msg);
		else
			fail(&o, "bad_request", false, false, "the request was not sent: %s", he.msg);
		rein_err_clear(&he);
		goto now_done;
	}
	fly_link(at);
	tx->inflight++;
	at->breaker = o.breaker; /* reported with the outcome */
	at = NULL;               /* http_done owns it now */
	goto out;
now_done:
	/* no call went out: report now (or fail without calling back on ENOMEM) */
	if (rc == REIN_OK && at) {
		finish(at, &o);
		at = NULL;
	} else {
		json_decref(o.breaker);
		if (at && at->probe)
			b->probing = false;
	}
out:
	if (at) {
		for (size_t i = 0; i < at->nsecrets; i++)
			rein_free(at->secrets[i]);
		rein_free(at);
	}
	rein_free(url);
	rein_free(body);
	for (size_t i = 0; i < 32; i++)
		rein_free(hv[i]);
	json_decref(sent);
	return rc;
}
