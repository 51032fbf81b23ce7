/*
 * mcp: a Model Context Protocol client. Transports: stdio (a child process,
 * newline-delimited JSON-RPC) and streamable HTTP (POST with JSON or SSE
 * answers, Mcp-Session-Id). Speaks protocol revision 2025-11-25 and offers
 * 2026-07-28 first, taking whichever the server answers. Everything is
 * asynchronous on the rein_io loop; callbacks run on the loop thread.
 * Server-side tool annotations are passed through as hints only.
 */
#ifndef REIN_MCP_H
#define REIN_MCP_H

#include "base.h"
#include "io.h"

typedef struct rein_mcp rein_mcp;       /* a handle: one server connection */
typedef struct rein_mcp_call rein_mcp_call; /* one request in flight */

typedef struct rein_mcp_config {
	const char *name; /* for messages */
	/* stdio: argv[0] is looked up in PATH; env entries "K=V" are added to
	 * the child's environment (which is otherwise inherited) */
	const char *const *argv;
	const char *const *env;
	const char *cwd;
	/* streamable HTTP */
	const char *url;
	const rein_http_header *headers;
	size_t nheaders;
	int64_t request_timeout_ms; /* default per request; 0: 30 s */
	int max_restarts;           /* stdio: restarts after a crash; 0: 5 */
	int64_t restart_backoff_ms; /* first delay, doubled each time; 0: 200 ms */
} rein_mcp_config;

/* Opens a connection (starts the child / nothing for HTTP) and the initialize
 * handshake, asynchronously; requests made before it completes wait for it.
 * cfg is copied. Caller closes. */
int rein_mcp_open(rein_io *io, const rein_mcp_config *cfg, rein_mcp **out, rein_err *err);
/* Closes: cancels pending requests (their callbacks report REIN_ECONFLICT/
 * cancelled), terminates a child, DELETEs an HTTP session. */
void rein_mcp_close(rein_mcp *m);
/* Same, then calls done(ud) (may be NULL) once every resource is released
 * (child reaped, handles closed, HTTP calls finished); the loop must keep
 * running until then, and rein_io_free must come after. */
void rein_mcp_close_then(rein_mcp *m, void (*done)(void *ud), void *ud);

/* The negotiated protocol revision, or NULL before initialize completed. */
const char *rein_mcp_protocol(const rein_mcp *m);
/* The serverInfo and capabilities objects of the last initialize answer
 * (borrowed, NULL before). */
const json_t *rein_mcp_server_info(const rein_mcp *m);
const json_t *rein_mcp_server_capabilities(const rein_mcp *m);
/* stdio: the pid of the running server process, 0 when none (or HTTP). */
int rein_mcp_pid(const rein_mcp *m);

enum {
	REIN_MCP_OK = 0,
	REIN_MCP_TRANSPORT, /* could not reach the server / it died */
	REIN_MCP_TIMEOUT,
	REIN_MCP_PROTOCOL,  /* malformed message, JSON-RPC error */
	REIN_MCP_TOOL_ERROR,/* the tool answered isError: true */
	REIN_MCP_CANCELLED,
};

typedef struct rein_mcp_result {
	int status;            /* REIN_MCP_* */
	char errmsg[512];
	const json_t *result;  /* the JSON-RPC result object (tools/call, tools/list) */
	const json_t *structured; /* tools/call structuredContent, or NULL */
	const json_t *content;    /* tools/call content array, or NULL */
	bool is_error;            /* tools/call isError */
} rein_mcp_result;

typedef void (*rein_mcp_cb)(void *ud, const rein_mcp_result *res);

/* tools/list, following nextCursor until done; res->result is {"tools": [...]}. */
int rein_mcp_list_tools(rein_mcp *m, rein_mcp_cb cb, void *ud, rein_err *err);

/* tools/call name(args). timeout_ms 0: the config's. On timeout or cancel a
 * notifications/cancelled is sent. */
int rein_mcp_call_tool(rein_mcp *m, const char *name, const json_t *args, int64_t timeout_ms,
		       rein_mcp_cb cb, void *ud, rein_mcp_call **call, rein_err *err);
void rein_mcp_cancel(rein_mcp_call *c);

/* Blocking helper for commands (runs the loop until done): tools/list. */
int rein_mcp_list_tools_sync(rein_io *io, const rein_mcp_config *cfg, json_t **tools,
			     char **protocol, rein_err *err);

#endif
