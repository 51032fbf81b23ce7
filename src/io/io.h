/*
 * io: the event loop that executes effects. One libuv loop per process (or
 * per worker); HTTP through libcurl's multi interface driven by that loop, so
 * many calls are in flight at once; timers. Results come back through
 * callbacks on the loop thread; the io layer decides nothing (no retries, no
 * parsing of bodies): it reports exactly what happened.
 */
#ifndef REIN_IO_H
#define REIN_IO_H

#include <uv.h>

#include "base.h"

typedef struct rein_io rein_io;

/* Creates the loop and the curl multi handle. Caller frees with rein_io_free
 * (which cancels every call still in flight, their callbacks reporting
 * REIN_HTTP_CANCELLED). */
int rein_io_new(rein_io **out, rein_err *err);
void rein_io_free(rein_io *io);
uv_loop_t *rein_io_loop(rein_io *io);

/* Runs the loop: mode is UV_RUN_DEFAULT, UV_RUN_ONCE or UV_RUN_NOWAIT. */
int rein_io_run(rein_io *io, uv_run_mode mode);

/* Runs the loop until something happened (a callback ran) or timeout_ms passed
 * (0: do not block; -1: no limit). Returns the number of callbacks run. */
int rein_io_wait(rein_io *io, int64_t timeout_ms);

/* Makes the current or next rein_io_wait return as if a callback had run: for
 * other users of the loop (timers, child processes) that complete work. */
void rein_io_wake(rein_io *io);

/* Number of HTTP calls in flight. */
size_t rein_io_inflight(const rein_io *io);

typedef struct rein_http_header {
	const char *name;
	const char *value;
} rein_http_header;

typedef struct rein_http_req {
	const char *method; /* "GET", "POST", ... */
	const char *url;    /* http:// or https:// */
	const rein_http_header *headers;
	size_t nheaders;
	const char *body; /* may be NULL */
	size_t body_len;
	int64_t timeout_ms;         /* whole call; 0: 30 s */
	int64_t connect_timeout_ms; /* 0: min(timeout, 10 s) */
	size_t max_response_bytes;  /* 0: 10 MiB; a larger body ends the call */
} rein_http_req;

/* How a call ended. REIN_HTTP_OK has a status and a body; REIN_HTTP_PROTOCOL
 * (the connection cut mid-response) has what arrived before the cut, if any. */
enum {
	REIN_HTTP_OK = 0,      /* a complete response (any status) */
	REIN_HTTP_CONNECT,     /* could not connect / resolve / refused */
	REIN_HTTP_TIMEOUT,     /* timeout_ms passed (includes a dripping server) */
	REIN_HTTP_TOO_LARGE,   /* the body passed max_response_bytes */
	REIN_HTTP_PROTOCOL,    /* malformed HTTP, connection cut mid-response */
	REIN_HTTP_CANCELLED,   /* rein_http_cancel or rein_io_free */
	REIN_HTTP_OTHER,
};

const char *rein_http_error_name(int error);

typedef struct rein_http_resp {
	int error;          /* REIN_HTTP_* */
	char errmsg[256];   /* curl's words when error != OK */
	long status;        /* HTTP status when error == OK */
	const char *body;   /* NUL-terminated; valid during the callback only */
	size_t body_len;
	const rein_http_header *headers; /* names lowercased; valid during the callback */
	size_t nheaders;
	int64_t retry_after_ms; /* from Retry-After (seconds or HTTP date), -1: absent */
	int64_t elapsed_ms;
	int64_t first_byte_ms;  /* until the first byte of the response arrived, -1: none */
} rein_http_resp;

typedef void (*rein_http_cb)(void *ud, const rein_http_resp *resp);

typedef struct rein_http_call rein_http_call;

/*
 * Starts a call. Everything in req is copied; cb runs exactly once, on the
 * loop thread, from inside rein_io_run/rein_io_wait (never from inside this
 * function). *call (may be NULL) can cancel it until cb runs.
 */
int rein_http_start(rein_io *io, const rein_http_req *req, rein_http_cb cb, void *ud,
		    rein_http_call **call, rein_err *err);
void rein_http_cancel(rein_http_call *call);

#endif
