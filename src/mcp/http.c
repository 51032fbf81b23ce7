/*
 * The streamable HTTP transport: every message is its own POST to the server
 * URL (Accept: application/json, text/event-stream). The answer to a request
 * is either a JSON body or an SSE stream whose events carry the response (and
 * perhaps notifications or server requests first). The Mcp-Session-Id the
 * initialize answer assigned goes on every later POST with
 * MCP-Protocol-Version; a 404 on a request that carried the session means it
 * expired (client.c re-initializes once). Close DELETEs the session.
 *
 * The io layer reads a response whole, so SSE events are parsed when the
 * stream ends; nothing is resumed with Last-Event-ID and no GET stream is
 * opened (servers may not send requests except on a POST's own stream).
 */
#include "mcp_int.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define NOTE_TIMEOUT_MS 10000
#define MAX_HEADERS 32

enum { POST_MSG = 0, POST_DELETE };

struct mcp_post {
	rein_mcp *m;
	mcp_op *op;       /* the request carried, NULL once abandoned/answered */
	int64_t id;       /* its wire id */
	rein_http_call *call;
	int kind;
	bool had_session; /* sent with Mcp-Session-Id */
};

static const char *mname(const rein_mcp *m) { return m->name ? m->name : "mcp"; }

static const char *resp_header(const rein_http_resp *r, const char *name)
{
	for (size_t i = 0; i < r->nheaders; i++)
		if (strcasecmp(r->headers[i].name, name) == 0)
			return r->headers[i].value;
	return NULL;
}

static void on_post_done(void *ud, const rein_http_resp *resp);

/* Starts a POST (or DELETE when body is NULL) carrying op (may be NULL). */
static int post_start(rein_mcp *m, mcp_op *op, int kind, const char *body, size_t len,
		      rein_err *err)
{
	rein_http_header h[MAX_HEADERS];
	size_t n = 0;
	bool init = op && op->kind == OP_INIT;
	if (kind == POST_MSG) {
		h[n++] = (rein_http_header){"Accept", "application/json, text/event-stream"};
		h[n++] = (rein_http_header){"Content-Type", "application/json"};
	}
	bool with_session = m->session && !init;
	if (with_session)
		h[n++] = (rein_http_header){"Mcp-Session-Id", m->session};
	if (m->protocol && !init)
		h[n++] = (rein_http_header){"MCP-Protocol-Version", m->protocol};
	for (size_t i = 0; i < m->nheaders && n < MAX_HEADERS; i++)
		h[n++] = m->headers[i];
	int64_t timeout = NOTE_TIMEOUT_MS;
	if (op) {
		timeout = op->deadline - (int64_t)uv_now(m->loop);
		timeout = (timeout > 0 ? timeout : 1) + 1000;
	}
	rein_http_req req = {
		.method = kind == POST_DELETE ? "DELETE" : "POST",
		.url = m->url,
		.headers = h,
		.nheaders = n,
		.body = body,
		.body_len = len,
		.timeout_ms = timeout,
	};
	mcp_post *p = rein_calloc(1, sizeof *p);
	if (p == NULL)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	p->m = m;
	p->op = op;
	p->id = op ? op->id : 0;
	p->kind = kind;
	p->had_session = with_session;
	rein_err herr = {0};
	int rc = rein_http_start(m->io, &req, on_post_done, p, &p->call, &herr);
	if (rc) {
		rein_free(p);
		return rein_err_set(err, REIN_EIO, "%s: POST %s: %s", mname(m), m->url, herr.msg);
	}
	mcp_hold(m);
	if (op)
		op->post = p;
	return REIN_OK;
}

typedef struct body_ctx {
	rein_mcp *m;
	rein_err err;
} body_ctx;

static int on_event(void *ud, const char *p, size_t n)
{
	body_ctx *bc = ud;
	if (n == 0)
		return 0; /* priming event (an id, no message) */
	rein_err_clear(&bc->err);
	if (mcp_receive(bc->m, p, n, &bc->err))
		return REIN_EINVAL;
	return 0;
}

/* Extracts "message" from a JSON-RPC error body, for HTTP error statuses. */
static void error_text(const rein_http_resp *r, char *out, size_t outlen)
{
	out[0] = '\0';
	if (r->body == NULL || r->body_len == 0)
		return;
	rein_err perr = {0};
	json_t *j = rein_json_parse(r->body, r->body_len, &perr);
	rein_err_clear(&perr);
	const char *msg = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
	if (msg)
		snprintf(out, outlen, ": %s", msg);
	else
		snprintf(out, outlen, ": %.120s", r->body);
	json_decref(j);
}

/* Our session is unknown to the server: 404 per the specification; some
 * servers (server-everything among them) answer 400 "No valid session ID". */
static bool session_gone(const rein_http_resp *r)
{
	if (r->status == 404)
		return true;
	if (r->status != 400 || r->body == NULL)
		return false;
	for (size_t i = 0; i + 7 <= r->body_len; i++)
		if (strncasecmp(r->body + i, "session", 7) == 0)
			return true;
	return false;
}

/* The response to a request: feed its messages to the connection. */
static void request_done(rein_mcp *m, mcp_op *op, int64_t id, bool had_session,
			 const rein_http_resp *resp)
{
	if (resp->error != REIN_HTTP_OK) {
		mcp_op_fail(op, resp->error == REIN_HTTP_TIMEOUT ? REIN_MCP_TIMEOUT : REIN_MCP_TRANSPORT,
			    "%s: POST %s: %s: %s", mname(m), m->url,
			    rein_http_error_name(resp->error), resp->errmsg);
		return;
	}
	if (had_session && session_gone(resp)) {
		mcp_session_expired(m, op);
		return;
	}
	if (resp->status < 200 || resp->status >= 300) {
		char text[200];
		error_text(resp, text, sizeof text);
		mcp_op_fail(op, resp->status >= 500 ? REIN_MCP_TRANSPORT : REIN_MCP_PROTOCOL,
			    "%s: POST %s: HTTP %ld%s", mname(m), m->url, resp->status, text);
		return;
	}
	if (op->kind == OP_INIT) {
		const char *sid = resp_header(resp, "mcp-session-id");
		rein_free(m->session);
		m->session = NULL;
		if (sid && sid[0] && (m->session = rein_strdup(sid)) == NULL) {
			mcp_op_fail(op, REIN_MCP_TRANSPORT, "%s: out of memory", mname(m));
			return;
		}
	}
	const char *ctype = resp_header(resp, "content-type");
	body_ctx bc = {.m = m};
	int rc = REIN_OK;
	if (resp->body_len == 0) {
		rc = rein_err_set(&bc.err, REIN_EINVAL, "HTTP %ld with an empty body",
				  resp->status);
	} else if (ctype && strncasecmp(ctype, "text/event-stream", 17) == 0) {
		mcp_sse sse = {0};
		rc = mcp_sse_feed(&sse, resp->body, resp->body_len, on_event, &bc);
		if (rc == REIN_OK)
			rc = mcp_sse_finish(&sse, on_event, &bc);
		mcp_sse_free(&sse);
		if (rc && !bc.err.msg[0])
			rein_err_set(&bc.err, rc, "unreadable event stream");
	} else {
		rc = mcp_receive(m, resp->body, resp->body_len, &bc.err);
	}
	/* the op may have been answered (and freed) during the walk */
	op = mcp_find_op(m, id);
	if (op == NULL)
		return;
	if (rc)
		mcp_op_fail(op, REIN_MCP_PROTOCOL, "%s: malformed answer: %s", mname(m), bc.err.msg);
	else
		mcp_op_fail(op, REIN_MCP_PROTOCOL, "%s: the answer held no response to request %lld",
			    mname(m), (long long)id);
}

static void on_post_done(void *ud, const rein_http_resp *resp)
{
	mcp_post *p = ud;
	rein_mcp *m = p->m;
	mcp_op *op = p->op;
	p->call = NULL;
	p->op = NULL;
	if (op)
		op->post = NULL;
	if (op && m->state != ST_CLOSING && m->state != ST_BROKEN)
		request_done(m, op, p->id, p->had_session, resp);
	/* answers to notifications and to our responses (202), and the DELETE,
	 * need nothing */
	rein_free(p);
	mcp_release(m);
}

static int http_start(rein_mcp *m, rein_err *err) { return REIN_OK; }

static int http_send(rein_mcp *m, mcp_op *op, const char *text, size_t len, rein_err *err)
{
	return post_start(m, op, POST_MSG, text, len, err);
}

static void http_abandon(rein_mcp *m, mcp_op *op)
{
	mcp_post *p = op->post;
	if (p == NULL)
		return;
	op->post = NULL;
	p->op = NULL;
	if (p->call)
		rein_http_cancel(p->call);
}

static void http_stop(rein_mcp *m) {}

static void http_shutdown(rein_mcp *m)
{
	if (m->session == NULL)
		return;
	post_start(m, NULL, POST_DELETE, NULL, 0, NULL);
	rein_free(m->session);
	m->session = NULL;
}

const mcp_transport mcp_http_transport = {
	.start = http_start,
	.send = http_send,
	.abandon = http_abandon,
	.stop = http_stop,
	.shutdown = http_shutdown,
};
