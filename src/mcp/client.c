/*
 * The MCP connection: JSON-RPC ids and the table of requests in flight, one
 * loop timer for every request deadline, the initialize handshake and version
 * negotiation, answers to server requests, tools/list pagination, tools/call
 * results, cancellation, restarts after a crash (stdio) and re-initialization
 * after a session expiry (HTTP), and the orderly close. The transports (stdio.c,
 * http.c) move text; everything that decides happens here.
 */
#include "mcp_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MCP_DEFAULT_TIMEOUT_MS 30000
#define MCP_DEFAULT_RESTARTS 5
#define MCP_DEFAULT_BACKOFF_MS 200
#define MCP_MAX_PAGES 1000
/* A child that stayed up this long after its initialize starts a fresh count
 * of restarts when it dies. */
#define MCP_STABLE_MS 10000

static int64_t now_ms(const rein_mcp *m) { return (int64_t)uv_now(m->loop); }

static const char *mname(const rein_mcp *m) { return m->name ? m->name : "mcp"; }

/* ---- configuration --------------------------------------------------- */

static void strv_free(char **v)
{
	if (v == NULL)
		return;
	for (size_t i = 0; v[i]; i++)
		rein_free(v[i]);
	rein_free(v);
}

/* Copies a NULL-terminated vector (NULL stays NULL); false on OOM. */
static bool strv_copy(const char *const *v, char ***out)
{
	*out = NULL;
	if (v == NULL)
		return true;
	size_t n = 0;
	while (v[n])
		n++;
	char **c = rein_calloc(n + 1, sizeof *c);
	if (c == NULL)
		return false;
	for (size_t i = 0; i < n; i++) {
		c[i] = rein_strdup(v[i]);
		if (c[i] == NULL) {
			strv_free(c);
			return false;
		}
	}
	*out = c;
	return true;
}

static bool str_copy(const char *s, char **out)
{
	*out = NULL;
	if (s == NULL)
		return true;
	*out = rein_strdup(s);
	return *out != NULL;
}

static void config_free(rein_mcp *m)
{
	rein_free(m->name);
	strv_free(m->argv);
	strv_free(m->env);
	rein_free(m->cwd);
	rein_free(m->url);
	for (size_t i = 0; i < m->nheaders; i++) {
		rein_free((char *)m->headers[i].name);
		rein_free((char *)m->headers[i].value);
	}
	rein_free(m->headers);
}

static bool config_copy(rein_mcp *m, const rein_mcp_config *cfg)
{
	if (!str_copy(cfg->name, &m->name) || !strv_copy(cfg->argv, &m->argv) ||
	    !strv_copy(cfg->env, &m->env) || !str_copy(cfg->cwd, &m->cwd) ||
	    !str_copy(cfg->url, &m->url))
		return false;
	if (cfg->nheaders > 0) {
		m->headers = rein_calloc(cfg->nheaders, sizeof *m->headers);
		if (m->headers == NULL)
			return false;
		m->nheaders = cfg->nheaders;
		for (size_t i = 0; i < cfg->nheaders; i++) {
			m->headers[i].name = rein_strdup(cfg->headers[i].name);
			m->headers[i].value = rein_strdup(cfg->headers[i].value);
			if (!m->headers[i].name || !m->headers[i].value)
				return false;
		}
	}
	m->request_timeout_ms =
		cfg->request_timeout_ms > 0 ? cfg->request_timeout_ms : MCP_DEFAULT_TIMEOUT_MS;
	m->max_restarts = cfg->max_restarts > 0 ? cfg->max_restarts : MCP_DEFAULT_RESTARTS;
	m->restart_backoff_ms =
		cfg->restart_backoff_ms > 0 ? cfg->restart_backoff_ms : MCP_DEFAULT_BACKOFF_MS;
	return true;
}

/* ---- stderr ring ----------------------------------------------------- */

void mcp_errring_add(rein_mcp *m, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		m->errring[m->errpos++] = p[i];
		if (m->errpos == MCP_ERRRING) {
			m->errpos = 0;
			m->errwrapped = true;
		}
	}
}

void mcp_errring_tail(const rein_mcp *m, char *out, size_t outlen)
{
	/* linearize the ring, then keep the last outlen-1 bytes of its text
	 * with control characters (newlines) turned into spaces */
	char lin[MCP_ERRRING];
	size_t n = 0;
	if (m->errwrapped)
		for (size_t i = m->errpos; i < MCP_ERRRING; i++)
			lin[n++] = m->errring[i];
	for (size_t i = 0; i < m->errpos; i++)
		lin[n++] = m->errring[i];
	while (n > 0 && (lin[n - 1] == '\n' || lin[n - 1] == '\r' || lin[n - 1] == ' '))
		n--;
	size_t start = n + 1 > outlen ? n + 1 - outlen : 0;
	size_t k = 0;
	for (size_t i = start; i < n && k + 1 < outlen; i++)
		out[k++] = (lin[i] == '\n' || lin[i] == '\r' || lin[i] == '\t') ? ' ' : lin[i];
	if (outlen > 0)
		out[k] = '\0';
}

/* ---- ops ------------------------------------------------------------- */

static void op_link(rein_mcp *m, mcp_op *op)
{
	op->m = m;
	op->next = NULL;
	if (m->ops == NULL) {
		m->ops = op;
		op->prev = NULL;
		return;
	}
	mcp_op *t = m->ops;
	while (t->next)
		t = t->next;
	t->next = op;
	op->prev = t;
}

static void op_unlink(mcp_op *op)
{
	rein_mcp *m = op->m;
	if (op->prev)
		op->prev->next = op->next;
	else if (m->ops == op)
		m->ops = op->next;
	if (op->next)
		op->next->prev = op->prev;
	op->next = op->prev = NULL;
	if (m->init == op)
		m->init = NULL;
}

static void op_free(mcp_op *op)
{
	if (op == NULL)
		return;
	json_decref(op->params);
	json_decref(op->tools);
	rein_free(op);
}

mcp_op *mcp_find_op(rein_mcp *m, int64_t id)
{
	if (id <= 0)
		return NULL;
	for (mcp_op *op = m->ops; op; op = op->next)
		if (op->id == id)
			return op;
	return NULL;
}

static void on_deadline(uv_timer_t *t);

static void rearm(rein_mcp *m)
{
	if (m->state == ST_CLOSING)
		return;
	int64_t min = INT64_MAX;
	for (mcp_op *op = m->ops; op; op = op->next)
		if (op->deadline < min)
			min = op->deadline;
	if (min == INT64_MAX) {
		uv_timer_stop(&m->deadline_timer);
		return;
	}
	int64_t wait = min - now_ms(m);
	uv_timer_start(&m->deadline_timer, on_deadline, wait > 0 ? (uint64_t)wait : 0, 0);
}

/* Completes op (already unlinked or not): runs its callback and frees it. */
static void op_complete(mcp_op *op, rein_mcp_result *res)
{
	rein_mcp *m = op->m;
	op_unlink(op);
	m->tr->abandon(m, op);
	if (op->cb) {
		op->cb(op->ud, res);
		rein_io_wake(m->io);
	}
	op_free(op);
	rearm(m);
}

static int send_notification(rein_mcp *m, const char *method, json_t *params)
{
	json_t *msg = json_pack("{s:s,s:s}", "jsonrpc", "2.0", "method", method);
	if (msg == NULL) {
		json_decref(params);
		return REIN_ENOMEM;
	}
	if (params && json_object_set_new(msg, "params", params)) {
		json_decref(msg);
		return REIN_ENOMEM;
	}
	int rc = mcp_send_json(m, NULL, msg, NULL);
	json_decref(msg);
	return rc;
}

static void send_cancelled(rein_mcp *m, int64_t id, const char *reason)
{
	if (id <= 0 || m->state != ST_READY)
		return;
	json_t *p = json_pack("{s:I,s:s}", "requestId", (json_int_t)id, "reason", reason);
	if (p)
		send_notification(m, "notifications/cancelled", p);
}

static void conn_break(rein_mcp *m, int status, const char *msg);
static void init_failed(rein_mcp *m, int status, const char *msg);

void mcp_op_fail(mcp_op *op, int status, const char *fmt, ...)
{
	rein_mcp_result res = {.status = status};
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(res.errmsg, sizeof res.errmsg, fmt, ap);
	va_end(ap);
	if (op->kind == OP_INIT) {
		rein_mcp *m = op->m;
		op_unlink(op);
		m->tr->abandon(m, op);
		op_free(op);
		rearm(m);
		init_failed(m, status, res.errmsg);
		return;
	}
	op_complete(op, &res);
}

void mcp_fail_ops(rein_mcp *m, bool all, int status, const char *msg)
{
	/* callbacks may add or complete ops: restart the walk after each one */
	for (;;) {
		mcp_op *op = m->ops;
		while (op && (op->kind == OP_INIT || (!all && op->id == 0)))
			op = op->next;
		if (op == NULL)
			break;
		mcp_op_fail(op, status, "%s", msg);
	}
	if (m->init) { /* the internal initialize dies quietly */
		mcp_op *op = m->init;
		op_unlink(op);
		m->tr->abandon(m, op);
		op_free(op);
	}
	rearm(m);
}

/* Sends op's request with a fresh id. */
static int op_send(mcp_op *op, rein_err *err)
{
	rein_mcp *m = op->m;
	int rc = REIN_ENOMEM;
	json_t *msg = json_pack("{s:s,s:I,s:s}", "jsonrpc", "2.0", "id",
				(json_int_t)m->next_id, "method", op->method);
	if (msg == NULL)
		goto out;
	if (op->params && json_object_set(msg, "params", op->params))
		goto out;
	op->id = m->next_id++;
	rc = mcp_send_json(m, op, msg, err);
	if (rc)
		op->id = 0;
out:
	if (rc == REIN_ENOMEM)
		rein_err_set(err, rc, "%s: out of memory", mname(m));
	json_decref(msg);
	return rc;
}

int mcp_send_json(rein_mcp *m, mcp_op *op, const json_t *msg, rein_err *err)
{
	char *text = rein_json_dump(msg);
	if (text == NULL)
		return rein_err_set(err, REIN_ENOMEM, "%s: out of memory", mname(m));
	int rc = m->tr->send(m, op, text, strlen(text), err);
	rein_free(text);
	return rc;
}

/* Sends every queued op, oldest first, while the connection stays ready. */
static void flush_queue(rein_mcp *m)
{
	while (m->state == ST_READY) {
		mcp_op *op = m->ops;
		while (op && (op->id != 0 || op->kind == OP_INIT))
			op = op->next;
		if (op == NULL)
			break;
		rein_err err = {0};
		if (op_send(op, &err))
			mcp_op_fail(op, REIN_MCP_TRANSPORT, "%s: %s", mname(m), err.msg);
	}
}

/* ---- initialize ------------------------------------------------------ */

static int begin_initialize(rein_mcp *m, rein_err *err)
{
	mcp_op *op = rein_calloc(1, sizeof *op);
	if (op == NULL)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	op->kind = OP_INIT;
	op->method = "initialize";
	op->params = json_pack("{s:s,s:{},s:{s:s,s:s}}", "protocolVersion", mcp_version_offered,
			       "capabilities", "clientInfo", "name", "rein", "version", "0.1");
	if (op->params == NULL) {
		op_free(op);
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	}
	op->deadline = now_ms(m) + m->request_timeout_ms;
	op_link(m, op);
	m->init = op;
	m->state = ST_CONNECTING;
	int rc = op_send(op, err);
	if (rc) {
		op_unlink(op);
		op_free(op);
		return rc;
	}
	rearm(m);
	return REIN_OK;
}

static void conn_break(rein_mcp *m, int status, const char *msg)
{
	if (m->state == ST_CLOSING || m->state == ST_BROKEN)
		return;
	m->state = ST_BROKEN;
	snprintf(m->fatal, sizeof m->fatal, "%s", msg);
	m->tr->stop(m);
	mcp_fail_ops(m, true, status, msg);
}

/* The initialize request failed (error answer, timeout, transport). */
static void init_failed(rein_mcp *m, int status, const char *msg)
{
	if (m->state == ST_CLOSING || m->state == ST_BROKEN)
		return;
	if (m->kind == MCP_KIND_STDIO) {
		if (status == REIN_MCP_TIMEOUT || status == REIN_MCP_TRANSPORT) {
			/* a stuck or dying child: stop it, the restart policy
			 * takes over when it is gone */
			m->tr->stop(m);
			return;
		}
		conn_break(m, status, msg);
		return;
	}
	/* HTTP: fail what waited; the next request tries a new session */
	m->state = ST_IDLE;
	mcp_fail_ops(m, true, status, msg);
}

static void init_done(rein_mcp *m, mcp_op *op, const mcp_msg *msg)
{
	char buf[512];
	if (msg->kind == MCP_MSG_ERROR) {
		snprintf(buf, sizeof buf, "%s: initialize failed: JSON-RPC error %lld: %s", mname(m),
			 (long long)msg->err_code, msg->err_message);
		mcp_op_fail(op, REIN_MCP_PROTOCOL, "%s", buf);
		return;
	}
	const json_t *res = msg->result;
	const char *ver = json_string_value(json_object_get(res, "protocolVersion"));
	if (!json_is_object(res) || ver == NULL) {
		snprintf(buf, sizeof buf, "%s: initialize answered without a protocolVersion",
			 mname(m));
		mcp_op_fail(op, REIN_MCP_PROTOCOL, "%s", buf);
		return;
	}
	if (!mcp_version_supported(ver)) {
		snprintf(buf, sizeof buf,
			 "%s: the server speaks MCP protocol revision \"%.40s\", which rein does not "
			 "support (rein speaks 2026-07-28, 2025-11-25, 2025-06-18, 2025-03-26)",
			 mname(m), ver);
		op_unlink(op);
		op_free(op);
		conn_break(m, REIN_MCP_PROTOCOL, buf);
		return;
	}
	char *v = rein_strdup(ver);
	if (v == NULL) {
		mcp_op_fail(op, REIN_MCP_PROTOCOL, "%s: out of memory", mname(m));
		return;
	}
	rein_free(m->protocol);
	m->protocol = v;
	json_decref(m->server_info);
	json_decref(m->server_caps);
	m->server_info = json_incref(json_object_get(res, "serverInfo"));
	m->server_caps = json_incref(json_object_get(res, "capabilities"));
	op_unlink(op);
	op_free(op);
	m->state = ST_READY;
	m->ready_at = now_ms(m);
	send_notification(m, "notifications/initialized", NULL);
	flush_queue(m);
	rearm(m);
}

/* ---- receiving ------------------------------------------------------- */

static void answer_request(rein_mcp *m, const mcp_msg *msg)
{
	json_t *r;
	if (strcmp(msg->method, "ping") == 0)
		r = json_pack("{s:s,s:O,s:{}}", "jsonrpc", "2.0", "id", msg->id, "result");
	else
		r = json_pack("{s:s,s:O,s:{s:i,s:s+}}", "jsonrpc", "2.0", "id", msg->id, "error",
			      "code", -32601, "message", "Method not found: ", msg->method);
	if (r == NULL)
		return;
	mcp_send_json(m, NULL, r, NULL);
	json_decref(r);
}

static void list_page(rein_mcp *m, mcp_op *op, const mcp_msg *msg)
{
	const json_t *tools = json_object_get(msg->result, "tools");
	if (!json_is_array(tools)) {
		mcp_op_fail(op, REIN_MCP_PROTOCOL, "%s: tools/list answered without a tools array",
			    mname(m));
		return;
	}
	if (json_array_extend(op->tools, (json_t *)tools)) {
		mcp_op_fail(op, REIN_MCP_PROTOCOL, "%s: out of memory", mname(m));
		return;
	}
	const char *cursor = json_string_value(json_object_get(msg->result, "nextCursor"));
	if (cursor && cursor[0]) {
		if (++op->pages >= MCP_MAX_PAGES) {
			mcp_op_fail(op, REIN_MCP_PROTOCOL, "%s: tools/list: more than %d pages",
				    mname(m), MCP_MAX_PAGES);
			return;
		}
		json_decref(op->params);
		op->params = json_pack("{s:s}", "cursor", cursor);
		m->tr->abandon(m, op);
		op->id = 0;
		rein_err err = {0};
		if (op->params == NULL)
			mcp_op_fail(op, REIN_MCP_PROTOCOL, "%s: out of memory", mname(m));
		else if (m->state == ST_READY && op_send(op, &err))
			mcp_op_fail(op, REIN_MCP_TRANSPORT, "%s: %s", mname(m), err.msg);
		return;
	}
	rein_mcp_result res = {.status = REIN_MCP_OK};
	json_t *all = json_pack("{s:O}", "tools", op->tools);
	if (all == NULL) {
		mcp_op_fail(op, REIN_MCP_PROTOCOL, "%s: out of memory", mname(m));
		return;
	}
	res.result = all;
	op_complete(op, &res);
	json_decref(all);
}

static void on_response(rein_mcp *m, const mcp_msg *msg)
{
	if (!msg->id_int)
		return; /* not one of ours */
	mcp_op *op = mcp_find_op(m, msg->id_val);
	if (op == NULL)
		return; /* late answer to a cancelled or timed-out request */
	if (op->kind == OP_INIT) {
		init_done(m, op, msg);
		return;
	}
	const char *what = op->kind == OP_LIST ? "tools/list" : "tools/call";
	const char *tool = op->kind == OP_CALL
				   ? json_string_value(json_object_get(op->params, "name"))
				   : NULL;
	if (msg->kind == MCP_MSG_ERROR) {
		mcp_op_fail(op, REIN_MCP_PROTOCOL, "%s: %s%s%s: JSON-RPC error %lld: %s", mname(m),
			    what, tool ? " " : "", tool ? tool : "", (long long)msg->err_code,
			    msg->err_message);
		return;
	}
	if (op->kind == OP_LIST) {
		list_page(m, op, msg);
		return;
	}
	rein_mcp_result res = {0};
	if (!mcp_tool_result(msg->result, &res)) {
		mcp_op_fail(op, REIN_MCP_PROTOCOL, "%s: tools/call %s: result is not an object",
			    mname(m), tool ? tool : "");
		return;
	}
	op_complete(op, &res);
}

static int on_msg(void *ud, const mcp_msg *msg)
{
	rein_mcp *m = ud;
	if (m->state == ST_CLOSING || m->state == ST_BROKEN)
		return 0;
	switch (msg->kind) {
	case MCP_MSG_REQUEST:
		answer_request(m, msg);
		break;
	case MCP_MSG_NOTIFICATION:
		break; /* progress, logging, list_changed: not needed */
	case MCP_MSG_RESULT:
	case MCP_MSG_ERROR:
		on_response(m, msg);
		break;
	case MCP_MSG_INVALID: {
		mcp_op *op = msg->id_int ? mcp_find_op(m, msg->id_val) : NULL;
		if (op)
			mcp_op_fail(op, REIN_MCP_PROTOCOL, "%s: malformed response: %s", mname(m),
				    msg->why);
		break;
	}
	}
	return 0;
}

int mcp_receive(rein_mcp *m, const char *text, size_t len, rein_err *err)
{
	return mcp_msg_parse(text, len, on_msg, m, err);
}

/* ---- deadlines ------------------------------------------------------- */

static void op_timeout(mcp_op *op)
{
	rein_mcp *m = op->m;
	if (op->kind == OP_INIT) {
		mcp_op_fail(op, REIN_MCP_TIMEOUT, "%s: initialize timed out after %lld ms",
			    mname(m), (long long)m->request_timeout_ms);
		return;
	}
	send_cancelled(m, op->id, "timeout");
	const char *tool = op->kind == OP_CALL
				   ? json_string_value(json_object_get(op->params, "name"))
				   : NULL;
	mcp_op_fail(op, REIN_MCP_TIMEOUT, "%s: %s%s%s timed out", mname(m),
		    op->kind == OP_LIST ? "tools/list" : "tools/call", tool ? " " : "",
		    tool ? tool : "");
}

static void on_deadline(uv_timer_t *t)
{
	rein_mcp *m = t->data;
	for (;;) {
		if (m->state == ST_CLOSING)
			return;
		int64_t now = now_ms(m);
		mcp_op *op = m->ops;
		while (op && op->deadline > now)
			op = op->next;
		if (op == NULL)
			break;
		op_timeout(op);
	}
	rearm(m);
}

/* ---- stdio restarts / HTTP sessions ---------------------------------- */

static void on_restart(uv_timer_t *t)
{
	rein_mcp *m = t->data;
	if (m->state != ST_RESTART_WAIT)
		return;
	rein_err err = {0};
	if (m->tr->start(m, &err)) {
		m->state = ST_CONNECTING;
		mcp_child_gone(m, err.msg);
		return;
	}
	if (begin_initialize(m, &err))
		conn_break(m, REIN_MCP_TRANSPORT, err.msg);
}

void mcp_child_gone(rein_mcp *m, const char *why)
{
	if (m->state == ST_CLOSING || m->state == ST_BROKEN)
		return;
	char tail[200], msg[512];
	mcp_errring_tail(m, tail, sizeof tail);
	snprintf(msg, sizeof msg, "%s: server process %s%s%s", mname(m), why,
		 tail[0] ? "; stderr: " : "", tail);
	int64_t now = now_ms(m);
	if (m->ready_at && now - m->ready_at >= MCP_STABLE_MS)
		m->restarts = 0;
	m->ready_at = 0;
	m->state = ST_RESTART_WAIT; /* nothing is sent while failing */
	mcp_fail_ops(m, false, REIN_MCP_TRANSPORT, msg);
	if (m->state != ST_RESTART_WAIT)
		return; /* a callback closed the connection */
	if (m->restarts >= m->max_restarts) {
		char buf[600];
		snprintf(buf, sizeof buf, "%s (gave up after %d restarts)", msg, m->restarts);
		conn_break(m, REIN_MCP_TRANSPORT, buf);
		return;
	}
	int64_t delay = m->restart_backoff_ms;
	for (int i = 0; i < m->restarts && delay < 60000; i++)
		delay *= 2;
	m->restarts++;
	uv_timer_start(&m->restart_timer, on_restart, (uint64_t)delay, 0);
}

void mcp_session_expired(rein_mcp *m, mcp_op *op)
{
	if (op->kind == OP_INIT || op->reinit_done) {
		mcp_op_fail(op, REIN_MCP_TRANSPORT, "%s: session expired (HTTP 404) again",
			    mname(m));
		return;
	}
	op->reinit_done = true;
	op->id = 0; /* queued again */
	if (m->state != ST_READY)
		return; /* a re-initialize is already under way */
	rein_free(m->session);
	m->session = NULL;
	rein_err err = {0};
	if (begin_initialize(m, &err)) {
		m->state = ST_IDLE;
		mcp_fail_ops(m, true, REIN_MCP_TRANSPORT, err.msg);
	}
}

/* ---- handle lifetime ------------------------------------------------- */

void mcp_hold(rein_mcp *m) { m->holds++; }

void mcp_release(rein_mcp *m)
{
	m->holds--;
	if (m->state != ST_CLOSING || m->holds > 0 || m->freeing)
		return;
	m->freeing = true;
	void (*done)(void *) = m->on_closed;
	void *ud = m->on_closed_ud;
	rein_io *io = m->io;
	config_free(m);
	rein_free(m->protocol);
	rein_free(m->session);
	json_decref(m->server_info);
	json_decref(m->server_caps);
	rein_free(m);
	if (done)
		done(ud);
	rein_io_wake(io);
}

static void on_timer_closed(uv_handle_t *h) { mcp_release(h->data); }

/* ---- public API ------------------------------------------------------ */

int rein_mcp_open(rein_io *io, const rein_mcp_config *cfg, rein_mcp **out, rein_err *err)
{
	int rc;
	bool has_argv = cfg->argv && cfg->argv[0];
	bool has_url = cfg->url && cfg->url[0];
	if (has_argv == has_url)
		return rein_err_set(err, REIN_EINVAL,
				    "mcp server %s: give either a command (argv) or a url",
				    cfg->name ? cfg->name : "");
	if (has_url && strncmp(cfg->url, "http://", 7) != 0 &&
	    strncmp(cfg->url, "https://", 8) != 0)
		return rein_err_set(err, REIN_EINVAL, "mcp server %s: url must be http(s)://",
				    cfg->name ? cfg->name : "");
	rein_mcp *m = rein_calloc(1, sizeof *m);
	if (m == NULL)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	m->io = io;
	m->loop = rein_io_loop(io);
	m->kind = has_argv ? MCP_KIND_STDIO : MCP_KIND_HTTP;
	m->tr = has_argv ? &mcp_stdio_transport : &mcp_http_transport;
	m->next_id = 1;
	m->state = ST_IDLE;
	if (!config_copy(m, cfg)) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto fail;
	}
	rc = m->tr->start(m, err);
	if (rc)
		goto fail;
	uv_timer_init(m->loop, &m->deadline_timer);
	uv_timer_init(m->loop, &m->restart_timer);
	m->deadline_timer.data = m;
	m->restart_timer.data = m;
	m->holds += 2;
	rc = begin_initialize(m, err);
	if (rc) {
		/* a child may have been started: close as usual, report the error */
		rein_mcp_close(m);
		return rc;
	}
	*out = m;
	return REIN_OK;
fail:
	config_free(m);
	rein_free(m);
	return rc;
}

void rein_mcp_close_then(rein_mcp *m, void (*done)(void *ud), void *ud)
{
	if (m == NULL) {
		if (done)
			done(ud);
		return;
	}
	if (m->state == ST_CLOSING)
		return;
	/* fail what is pending while the transport can still carry a cancel */
	for (mcp_op *op = m->ops; op; op = op->next)
		if (op->id && op->kind != OP_INIT)
			send_cancelled(m, op->id, "client closed the connection");
	m->state = ST_CLOSING;
	m->on_closed = done;
	m->on_closed_ud = ud;
	mcp_fail_ops(m, true, REIN_MCP_CANCELLED, "connection closed");
	uv_close((uv_handle_t *)&m->deadline_timer, on_timer_closed);
	uv_close((uv_handle_t *)&m->restart_timer, on_timer_closed);
	m->tr->shutdown(m);
}

void rein_mcp_close(rein_mcp *m) { rein_mcp_close_then(m, NULL, NULL); }

const char *rein_mcp_protocol(const rein_mcp *m) { return m ? m->protocol : NULL; }

const json_t *rein_mcp_server_info(const rein_mcp *m) { return m ? m->server_info : NULL; }

const json_t *rein_mcp_server_capabilities(const rein_mcp *m)
{
	return m ? m->server_caps : NULL;
}

/* Queues op (ready: sends it). On error op is freed and cb never runs. */
static int op_submit(rein_mcp *m, mcp_op *op, int64_t timeout_ms, rein_err *err)
{
	int rc = REIN_OK;
	switch (m->state) {
	case ST_BROKEN:
		rc = rein_err_set(err, REIN_EIO, "%s", m->fatal);
		goto fail;
	case ST_CLOSING:
		rc = rein_err_set(err, REIN_EINVAL, "%s: connection is closing", mname(m));
		goto fail;
	default:
		break;
	}
	op->deadline = now_ms(m) + (timeout_ms > 0 ? timeout_ms : m->request_timeout_ms);
	op_link(m, op);
	if (m->state == ST_IDLE) {
		rc = begin_initialize(m, err);
		if (rc) {
			op_unlink(op);
			goto fail;
		}
	} else if (m->state == ST_READY) {
		rc = op_send(op, err);
		if (rc) {
			op_unlink(op);
			goto fail;
		}
	}
	rearm(m);
	return REIN_OK;
fail:
	op_free(op);
	return rc;
}

int rein_mcp_list_tools(rein_mcp *m, rein_mcp_cb cb, void *ud, rein_err *err)
{
	mcp_op *op = rein_calloc(1, sizeof *op);
	if (op == NULL)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	op->kind = OP_LIST;
	op->method = "tools/list";
	op->cb = cb;
	op->ud = ud;
	op->tools = json_array();
	if (op->tools == NULL) {
		op_free(op);
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	}
	return op_submit(m, op, 0, err);
}

int rein_mcp_call_tool(rein_mcp *m, const char *name, const json_t *args, int64_t timeout_ms,
		       rein_mcp_cb cb, void *ud, rein_mcp_call **call, rein_err *err)
{
	if (name == NULL || (args && !json_is_object(args)))
		return rein_err_set(err, REIN_EINVAL, "tools/call: a name and object arguments");
	mcp_op *op = rein_calloc(1, sizeof *op);
	if (op == NULL)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	op->kind = OP_CALL;
	op->method = "tools/call";
	op->cb = cb;
	op->ud = ud;
	op->params = args ? json_pack("{s:s,s:O}", "name", name, "arguments", (json_t *)args)
			  : json_pack("{s:s,s:{}}", "name", name, "arguments");
	if (op->params == NULL) {
		op_free(op);
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	}
	int rc = op_submit(m, op, timeout_ms, err);
	if (rc == REIN_OK && call)
		*call = (rein_mcp_call *)op;
	return rc;
}

void rein_mcp_cancel(rein_mcp_call *c)
{
	if (c == NULL)
		return;
	mcp_op *op = (mcp_op *)c;
	rein_mcp *m = op->m;
	send_cancelled(m, op->id, "cancelled by the client");
	mcp_op_fail(op, REIN_MCP_CANCELLED, "%s: tools/call %s cancelled", mname(m),
		    json_string_value(json_object_get(op->params, "name")));
}

/* ---- blocking helper ------------------------------------------------- */

typedef struct sync_state {
	bool done, closed;
	int status;
	char errmsg[512];
	json_t *tools;
} sync_state;

static void sync_listed(void *ud, const rein_mcp_result *res)
{
	sync_state *s = ud;
	s->done = true;
	s->status = res->status;
	snprintf(s->errmsg, sizeof s->errmsg, "%s", res->errmsg);
	if (res->status == REIN_MCP_OK)
		s->tools = json_incref(json_object_get(res->result, "tools"));
}

static void sync_closed(void *ud) { ((sync_state *)ud)->closed = true; }

static int status_code(int status)
{
	switch (status) {
	case REIN_MCP_OK:
		return REIN_OK;
	case REIN_MCP_TIMEOUT:
		return REIN_ELIMIT;
	case REIN_MCP_PROTOCOL:
	case REIN_MCP_TOOL_ERROR:
		return REIN_EINVAL;
	default:
		return REIN_EIO;
	}
}

int rein_mcp_list_tools_sync(rein_io *io, const rein_mcp_config *cfg, json_t **tools,
			     char **protocol, rein_err *err)
{
	sync_state s = {0};
	rein_mcp *m = NULL;
	char *proto = NULL;
	int rc = rein_mcp_open(io, cfg, &m, err);
	if (rc)
		return rc;
	rc = rein_mcp_list_tools(m, sync_listed, &s, err);
	if (rc == REIN_OK) {
		while (!s.done)
			rein_io_run(io, UV_RUN_ONCE);
		rc = status_code(s.status);
		if (rc)
			rein_err_set(err, rc, "%s", s.errmsg);
		else if (protocol && m->protocol && (proto = rein_strdup(m->protocol)) == NULL)
			rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
	}
	rein_mcp_close_then(m, sync_closed, &s);
	while (!s.closed)
		rein_io_run(io, UV_RUN_ONCE);
	if (rc) {
		json_decref(s.tools);
		rein_free(proto);
		return rc;
	}
	*tools = s.tools;
	if (protocol)
		*protocol = proto;
	return REIN_OK;
}
