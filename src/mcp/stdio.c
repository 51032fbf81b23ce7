/*
 * The stdio transport: the server is a child process speaking
 * newline-delimited JSON-RPC on its stdin and stdout; its stderr is drained
 * into a small ring kept for error messages. A child is "gone" once it has
 * exited and its stdout reached EOF (or shortly after the exit, if something
 * else holds the pipe open); client.c then decides about restarting. Stopping
 * a child closes its stdin, waits a little, sends SIGTERM, then SIGKILL.
 *
 * Each child is its own allocation: after a crash the old one finishes closing
 * its handles while a new one starts. A child holds its connection (mcp_hold)
 * until all its handles are closed.
 */
#include "mcp_int.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

#define GRACE_MS 500    /* stdin closed -> SIGTERM */
#define TERM_MS 1000    /* SIGTERM -> SIGKILL */
#define DRAIN_MS 200    /* exit seen, stdout still open -> treat as gone */

extern char **environ;

enum { STAGE_NONE = 0, STAGE_GRACE, STAGE_TERM, STAGE_KILLED, STAGE_DRAIN };

struct mcp_child {
	rein_mcp *m; /* NULL: detached (failed to spawn), frees itself */
	uv_process_t proc;
	uv_pipe_t in, out, err;
	uv_timer_t timer;
	int open;   /* handles not closed yet */
	bool exited, eof, gone, stopping, broken;
	int64_t exit_status;
	int term_signal;
	int stage;
	mcp_lines lines;
};

typedef struct wreq {
	uv_write_t req;
	char data[];
} wreq;

static void on_handle_closed(uv_handle_t *h)
{
	mcp_child *c = h->data;
	if (--c->open > 0)
		return;
	rein_mcp *m = c->m;
	mcp_lines_free(&c->lines);
	rein_free(c);
	if (m)
		mcp_release(m);
}

static void close_h(mcp_child *c, void *h)
{
	uv_handle_t *handle = h;
	if (handle->data == c && !uv_is_closing(handle))
		uv_close(handle, on_handle_closed);
}

static void child_close_all(mcp_child *c)
{
	close_h(c, &c->in);
	close_h(c, &c->out);
	close_h(c, &c->err);
	close_h(c, &c->timer);
}

/* Exit seen and stdout done: report once, then release the handles. */
static void check_gone(mcp_child *c)
{
	if (c->gone || !c->exited || !c->eof)
		return;
	c->gone = true;
	rein_mcp *m = c->m;
	child_close_all(c);
	if (m == NULL || m->child != c)
		return;
	m->child = NULL;
	char why[128];
	if (c->term_signal)
		snprintf(why, sizeof why, "was killed by signal %d", c->term_signal);
	else
		snprintf(why, sizeof why, "exited with status %lld", (long long)c->exit_status);
	mcp_child_gone(m, why);
}

static void child_signal(mcp_child *c, int sig)
{
	if (!c->exited)
		uv_process_kill(&c->proc, sig);
}

static void on_timer(uv_timer_t *t)
{
	mcp_child *c = t->data;
	switch (c->stage) {
	case STAGE_GRACE:
		c->stage = STAGE_TERM;
		child_signal(c, SIGTERM);
		uv_timer_start(&c->timer, on_timer, TERM_MS, 0);
		break;
	case STAGE_TERM:
		c->stage = STAGE_KILLED;
		child_signal(c, SIGKILL);
		break;
	case STAGE_DRAIN:
		c->eof = true;
		check_gone(c);
		break;
	default:
		break;
	}
}

/* Orderly stop: EOF on its stdin, then signals if it lingers. */
static void child_stop(mcp_child *c)
{
	if (c->stopping || c->gone)
		return;
	c->stopping = true;
	close_h(c, &c->in);
	if (c->exited)
		return;
	c->stage = STAGE_GRACE;
	uv_timer_start(&c->timer, on_timer, GRACE_MS, 0);
}

static void on_exit_cb(uv_process_t *p, int64_t status, int sig)
{
	mcp_child *c = p->data;
	c->exited = true;
	c->exit_status = status;
	c->term_signal = sig;
	uv_close((uv_handle_t *)p, on_handle_closed);
	if (!c->eof) {
		c->stage = STAGE_DRAIN;
		uv_timer_start(&c->timer, on_timer, DRAIN_MS, 0);
	}
	check_gone(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	size_t n = suggested < 65536 ? suggested : 65536;
	buf->base = rein_malloc(n);
	buf->len = buf->base ? n : 0;
}

typedef struct line_ctx {
	mcp_child *c;
	rein_err err;
} line_ctx;

static int on_line(void *ud, const char *p, size_t n)
{
	line_ctx *lc = ud;
	mcp_child *c = lc->c;
	rein_mcp *m = c->m;
	if (m == NULL || m->child != c || c->broken || m->state == ST_CLOSING)
		return 0;
	return mcp_receive(m, p, n, &lc->err);
}

/* The stream cannot be trusted any more: fail what waits, kill the child;
 * the restart policy runs when it is gone. */
static void child_broken(mcp_child *c, const char *why)
{
	rein_mcp *m = c->m;
	c->broken = true;
	if (m == NULL || m->child != c || m->state == ST_CLOSING)
		return;
	char msg[512];
	snprintf(msg, sizeof msg, "%s: protocol error on stdout: %s", m->name ? m->name : "mcp",
		 why);
	mcp_fail_ops(m, true, REIN_MCP_PROTOCOL, msg);
	c->stopping = true;
	c->stage = STAGE_KILLED;
	child_signal(c, SIGKILL);
}

static void on_read_out(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	mcp_child *c = s->data;
	if (nread > 0 && !c->broken) {
		line_ctx lc = {.c = c};
		int rc = mcp_lines_feed(&c->lines, buf->base, (size_t)nread, on_line, &lc);
		if (rc == REIN_ELIMIT)
			child_broken(c, "a line longer than 16 MiB");
		else if (rc == REIN_ENOMEM)
			child_broken(c, "out of memory");
		else if (rc)
			child_broken(c, lc.err.msg[0] ? lc.err.msg : "malformed message");
	}
	rein_free(buf->base);
	if (nread < 0) {
		uv_read_stop(s);
		c->eof = true;
		if (!c->exited)
			child_stop(c); /* no way to talk to it any more */
		check_gone(c);
	}
}

static void on_read_err(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	mcp_child *c = s->data;
	if (nread > 0 && c->m)
		mcp_errring_add(c->m, buf->base, (size_t)nread);
	rein_free(buf->base);
	if (nread < 0)
		uv_read_stop(s);
}

/* Environment: ours, with cfg entries overriding or adding keys. */
static char **build_env(char **extra)
{
	size_t n = 0, k = 0;
	while (environ && environ[n])
		n++;
	size_t x = 0;
	while (extra && extra[x])
		x++;
	char **env = rein_calloc(n + x + 1, sizeof *env);
	if (env == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		const char *eq = strchr(environ[i], '=');
		size_t klen = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
		bool over = false;
		for (size_t j = 0; j < x && !over; j++)
			over = strncmp(extra[j], environ[i], klen) == 0 && extra[j][klen] == '=';
		if (!over)
			env[k++] = environ[i];
	}
	for (size_t j = 0; j < x; j++)
		env[k++] = extra[j];
	return env;
}

static int stdio_start(rein_mcp *m, rein_err *err)
{
	/* a write to a dead child must be an error, not the end of us */
	struct sigaction sa;
	if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
		signal(SIGPIPE, SIG_IGN);
	mcp_child *c = rein_calloc(1, sizeof *c);
	if (c == NULL)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	m->errpos = 0; /* messages quote this child's stderr only */
	m->errwrapped = false;
	char **env = NULL;
	if (m->env && (env = build_env(m->env)) == NULL) {
		rein_free(c);
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	}
	c->m = m;
	uv_pipe_init(m->loop, &c->in, 0);
	uv_pipe_init(m->loop, &c->out, 0);
	uv_pipe_init(m->loop, &c->err, 0);
	uv_timer_init(m->loop, &c->timer);
	c->in.data = c->out.data = c->err.data = c->timer.data = c->proc.data = c;
	c->open = 5;
	uv_stdio_container_t stdio[3] = {
		{.flags = UV_CREATE_PIPE | UV_READABLE_PIPE, .data.stream = (uv_stream_t *)&c->in},
		{.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&c->out},
		{.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&c->err},
	};
	uv_process_options_t opt = {
		.exit_cb = on_exit_cb,
		.file = m->argv[0],
		.args = m->argv,
		.env = env,
		.cwd = m->cwd,
		.stdio = stdio,
		.stdio_count = 3,
	};
	int rc = uv_spawn(m->loop, &c->proc, &opt);
	rein_free(env);
	c->proc.data = c;
	if (rc < 0) {
		/* the handles were initialized: close them; the child is no
		 * concern of the connection any more */
		c->m = NULL;
		c->gone = true;
		child_close_all(c);
		close_h(c, &c->proc);
		return rein_err_set(err, REIN_EIO, "%s: cannot start %s: %s",
				    m->name ? m->name : "mcp", m->argv[0], uv_strerror(rc));
	}
	mcp_hold(m);
	m->child = c;
	uv_read_start((uv_stream_t *)&c->out, on_alloc, on_read_out);
	uv_read_start((uv_stream_t *)&c->err, on_alloc, on_read_err);
	return REIN_OK;
}

static void on_write(uv_write_t *req, int status)
{
	rein_free(req->data);
}

static int stdio_send(rein_mcp *m, mcp_op *op, const char *text, size_t len, rein_err *err)
{
	mcp_child *c = m->child;
	if (c == NULL || c->stopping || c->gone || c->broken)
		return rein_err_set(err, REIN_EIO, "%s: the server process is not running",
				    m->name ? m->name : "mcp");
	wreq *w = rein_malloc(sizeof *w + len + 1);
	if (w == NULL)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	memcpy(w->data, text, len);
	w->data[len] = '\n';
	w->req.data = w;
	uv_buf_t b = uv_buf_init(w->data, (unsigned)(len + 1));
	int rc = uv_write(&w->req, (uv_stream_t *)&c->in, &b, 1, on_write);
	if (rc < 0) {
		rein_free(w);
		return rein_err_set(err, REIN_EIO, "%s: write to the server: %s",
				    m->name ? m->name : "mcp", uv_strerror(rc));
	}
	return REIN_OK;
}

static void stdio_abandon(rein_mcp *m, mcp_op *op) {}

static void stdio_stop(rein_mcp *m)
{
	if (m->child)
		child_stop(m->child);
}

static void stdio_shutdown(rein_mcp *m)
{
	if (m->child)
		child_stop(m->child);
}

int rein_mcp_pid(const rein_mcp *m)
{
	if (m == NULL || m->child == NULL || m->child->exited)
		return 0;
	return m->child->proc.pid;
}

const mcp_transport mcp_stdio_transport = {
	.start = stdio_start,
	.send = stdio_send,
	.abandon = stdio_abandon,
	.stop = stdio_stop,
	.shutdown = stdio_shutdown,
};
