/*
 * mcp internal header: shared by the files of the mcp layer (and the fuzz
 * target for the parsers). msg.c holds the pure parsers (line framing, SSE,
 * JSON-RPC classification); client.c the connection, its requests and the
 * lifecycle; stdio.c and http.c the two transports behind mcp_transport.
 */
#ifndef REIN_MCP_INT_H
#define REIN_MCP_INT_H

#include "mcp.h"

/* ---- parsers (msg.c) ------------------------------------------------- */

/* A callback that receives one framed unit (a line, an SSE event's data);
 * returns 0 to go on, non-zero to stop the feed (which returns that value). */
typedef int (*mcp_unit_cb)(void *ud, const char *p, size_t n);

/* Newline-delimited framing (stdio). A line longer than max (0: 16 MiB) makes
 * the feed fail with REIN_ELIMIT; the stream is unusable after that. Lines
 * have a trailing CR removed; blank lines are skipped. */
typedef struct mcp_lines {
	rein_buf buf;
	size_t max;
} mcp_lines;

int mcp_lines_feed(mcp_lines *l, const char *p, size_t n, mcp_unit_cb cb, void *ud);
void mcp_lines_free(mcp_lines *l);

/* Server-Sent Events (text/event-stream) parser, fed in chunks. Calls cb with
 * the data of each event whose type is empty or "message" (data lines joined
 * with '\n'); events with no data field are skipped. mcp_sse_finish flushes a
 * last event without its terminating blank line. A line longer than max
 * (0: 16 MiB) fails with REIN_ELIMIT. */
typedef struct mcp_sse {
	rein_buf line;  /* the current partial line */
	rein_buf data;  /* the current event's data */
	rein_buf event; /* the current event's type */
	bool has_data;
	bool skip_lf; /* the previous chunk ended in CR: a leading LF belongs to it */
	size_t max;
} mcp_sse;

int mcp_sse_feed(mcp_sse *s, const char *p, size_t n, mcp_unit_cb cb, void *ud);
int mcp_sse_finish(mcp_sse *s, mcp_unit_cb cb, void *ud);
void mcp_sse_free(mcp_sse *s);

/* One JSON-RPC 2.0 message, classified. Pointers borrow from root. */
typedef enum mcp_msg_kind {
	MCP_MSG_INVALID = 0, /* an object, but no valid JSON-RPC message */
	MCP_MSG_REQUEST,     /* method and id: the server asks us */
	MCP_MSG_NOTIFICATION,/* method, no id */
	MCP_MSG_RESULT,      /* id and result */
	MCP_MSG_ERROR,       /* id and error */
} mcp_msg_kind;

typedef struct mcp_msg {
	mcp_msg_kind kind;
	const json_t *obj;  /* the message object */
	const json_t *id;   /* NULL when absent */
	bool id_int;        /* id is an integer (our ids are) */
	int64_t id_val;
	const char *method; /* requests and notifications */
	const json_t *params;
	const json_t *result;
	int64_t err_code;       /* MCP_MSG_ERROR */
	const char *err_message;/* MCP_MSG_ERROR, "" when absent */
	const char *why;        /* MCP_MSG_INVALID: what is wrong */
} mcp_msg;

/* Classifies one message object (never fails: bad shapes are MCP_MSG_INVALID). */
void mcp_msg_classify(const json_t *obj, mcp_msg *out);

/* Parses text holding one message or a batch (array) of messages and calls cb
 * for each element, in order. Returns REIN_EINVAL with err filled when the
 * text is not JSON or not an object/array of objects (a malformed message);
 * the value cb returned when it stopped the walk; else REIN_OK. */
typedef int (*mcp_msg_cb)(void *ud, const mcp_msg *msg);
int mcp_msg_parse(const char *text, size_t len, mcp_msg_cb cb, void *ud, rein_err *err);

/* Fills res from a tools/call result object: content, structured, is_error,
 * status (REIN_MCP_OK or REIN_MCP_TOOL_ERROR) and, for a tool error, errmsg
 * from the first text content. Returns false when result is not an object. */
bool mcp_tool_result(const json_t *result, rein_mcp_result *res);

/* Is v a protocol revision this client speaks? */
bool mcp_version_supported(const char *v);
extern const char mcp_version_offered[];

/* ---- connection (client.c) ------------------------------------------- */

typedef struct mcp_op mcp_op;
typedef struct mcp_child mcp_child;
typedef struct mcp_post mcp_post;

enum { MCP_KIND_STDIO = 1, MCP_KIND_HTTP = 2 };
enum { OP_INIT = 1, OP_LIST, OP_CALL };

/* Connection states. */
enum {
	ST_IDLE = 0,     /* HTTP: no session yet; the next request starts one */
	ST_CONNECTING,   /* the transport is up, initialize in flight */
	ST_READY,
	ST_RESTART_WAIT, /* stdio: the child died, waiting out the backoff */
	ST_BROKEN,       /* permanent failure: m->fatal says why */
	ST_CLOSING,
};

/* One user-visible request (rein_mcp_call) or the internal initialize. A
 * tools/list walk reuses one op for all its pages, each page a new wire id. */
struct mcp_op {
	rein_mcp *m;
	mcp_op *next, *prev;
	int kind;
	const char *method;
	json_t *params;     /* for (re)sending */
	int64_t id;         /* wire id of the request in flight, 0: not sent */
	int64_t deadline;   /* loop time (ms) */
	rein_mcp_cb cb;
	void *ud;
	json_t *tools;      /* OP_LIST: accumulated pages */
	int pages;
	bool reinit_done;   /* HTTP: retried once after a session expiry */
	mcp_post *post;     /* HTTP: the POST carrying it */
};

typedef struct mcp_transport {
	/* Brings the transport up and sends initialize (stdio: spawn the child). */
	int (*start)(rein_mcp *m, rein_err *err);
	/* Sends one serialized message; op is the request it carries or NULL
	 * (notifications, responses). An error leaves the op to the caller. */
	int (*send)(rein_mcp *m, mcp_op *op, const char *text, size_t len, rein_err *err);
	/* The op finished early (cancel, timeout, close): forget its carrier. */
	void (*abandon)(rein_mcp *m, mcp_op *op);
	/* Ends the peer session (stdio: stops the child) without closing. */
	void (*stop)(rein_mcp *m);
	/* Orderly shutdown at close; every resource it holds is released
	 * through mcp_release. */
	void (*shutdown)(rein_mcp *m);
} mcp_transport;

extern const mcp_transport mcp_stdio_transport;
extern const mcp_transport mcp_http_transport;

#define MCP_ERRRING 2048

struct rein_mcp {
	rein_io *io;
	uv_loop_t *loop;
	const mcp_transport *tr;
	int kind;
	int state;
	/* configuration, copied */
	char *name;
	char **argv, **env;
	char *cwd;
	char *url;
	rein_http_header *headers;
	size_t nheaders;
	int64_t request_timeout_ms;
	int max_restarts;
	int64_t restart_backoff_ms;
	/* negotiated */
	char *protocol;
	json_t *server_info, *server_caps;
	/* requests */
	int64_t next_id;
	mcp_op *ops; /* every live op, in creation order (init too) */
	mcp_op *init;
	uv_timer_t deadline_timer;
	uv_timer_t restart_timer;
	int holds; /* things whose completion we must wait for before freeing */
	char fatal[512];
	/* stdio */
	mcp_child *child;
	int restarts;      /* consecutive restarts */
	int64_t ready_at;  /* loop time the current child finished initialize */
	char errring[MCP_ERRRING];
	size_t errpos;
	bool errwrapped;
	/* http */
	char *session;
	/* close */
	void (*on_closed)(void *ud);
	void *on_closed_ud;
	bool freeing;
};

/* A transport delivers received text (one line / one SSE event / one JSON
 * body) here. Returns REIN_EINVAL with err when the text is malformed; the
 * caller decides what breaks (stdio: the connection, HTTP: the POST). */
int mcp_receive(rein_mcp *m, const char *text, size_t len, rein_err *err);
/* Sends a message object (serialized here) through the transport. */
int mcp_send_json(rein_mcp *m, mcp_op *op, const json_t *msg, rein_err *err);

/* Completes an op with a failure: unlinks it, abandons its carrier, runs its
 * callback (the internal initialize goes through the init-failure policy
 * instead), frees it. */
void mcp_op_fail(mcp_op *op, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Fails every op that was sent (all = false: a stdio crash) or every op. */
void mcp_fail_ops(rein_mcp *m, bool all, int status, const char *msg);
/* The live op whose request has wire id id, or NULL. */
mcp_op *mcp_find_op(rein_mcp *m, int64_t id);
/* The stdio child is gone (exit or broken stream); why is for messages. */
void mcp_child_gone(rein_mcp *m, const char *why);
/* HTTP: op's POST got 404 for our session: re-initialize once, then resend. */
void mcp_session_expired(rein_mcp *m, mcp_op *op);
/* Resources (timers, children, HTTP calls) the connection waits for before it
 * can be freed. mcp_release frees m when closing and nothing is left. */
void mcp_hold(rein_mcp *m);
void mcp_release(rein_mcp *m);
/* Appends child stderr to the ring; copies the ring's tail (last line or so)
 * into out. */
void mcp_errring_add(rein_mcp *m, const char *p, size_t n);
void mcp_errring_tail(const rein_mcp *m, char *out, size_t outlen);

#endif
