/*
 * Internal header of the io layer: the loop object shared by io.c (libuv and
 * curl multi glue, waiting, teardown) and http.c (one HTTP call from start to
 * its single completion).
 */
#ifndef REIN_IO_INT_H
#define REIN_IO_INT_H

#include <curl/curl.h>

#include "io.h"

/*
 * Calls are spread over several curl multi handles ("lanes"), each with its
 * own connection cache. curl 7.88 walks every connection to a host when a
 * transfer looks for one to reuse (ConnectionExists), and walks the whole
 * cache again when a finished transfer is removed (close_connect_only): both
 * are O(connections) per call, O(n^2) for n calls in flight. A lane takes at
 * most IO_LANE_CALLS calls at a time, so each walk is bounded; a new call goes
 * to the first lane with room, so under light load everything stays in lane 0
 * and keep-alive reuse works exactly as with one handle.
 */
#define IO_LANE_CALLS 256

typedef struct io_lane {
	rein_io *io;
	CURLM *multi;
	uv_timer_t timer; /* curl's single timeout for this handle */
	size_t inflight;  /* calls added to this handle and not yet removed */
} io_lane;

/* One socket curl asked us to watch; freed in the poll handle's close callback. */
typedef struct io_sock {
	uv_poll_t poll;
	io_lane *lane;
	curl_socket_t fd;
	struct io_sock *prev, *next;
} io_sock;

struct rein_io {
	uv_loop_t loop;
	io_lane **lanes;        /* lanes[0] always exists; more are added on demand */
	size_t nlanes, lanes_cap;
	long lane_maxconn;      /* CURLMOPT_MAXCONNECTS of each lane after the first */
	long maxconn;           /* CURLMOPT_MAXCONNECTS of lane 0 */
	uv_timer_t defer_timer; /* runs deferred completions (cancelled calls) */
	uv_timer_t wait_timer;  /* bounds rein_io_wait */
	bool wait_expired;
	bool woken;              /* rein_io_wake: end the current or next wait */
	bool waiting;            /* inside rein_io_wait */
	bool closing;            /* inside rein_io_free: no new calls */
	uint64_t ncallbacks;     /* completions run so far (for rein_io_wait) */
	size_t inflight;         /* calls whose callback has not run yet */
	rein_http_call *calls;   /* calls still owned by the multi handle */
	rein_http_call *deferred, *deferred_tail; /* cancelled, callback pending */
	io_sock *socks;          /* sockets being watched */
};

/* io.c: the lane a new call joins (the first with room; a new one if all are
 * full). NULL when out of memory. */
io_lane *io_lane_pick(rein_io *io);
/* http.c: a transfer ended inside a lane (from curl_multi_info_read). */
void io_http_done(io_lane *lane, CURL *easy, CURLcode rc);
/* http.c: runs the callbacks of cancelled calls. */
void io_http_run_deferred(rein_io *io);
/* http.c: cancels every call and runs every pending callback (rein_io_free). */
void io_http_cancel_all(rein_io *io);
/* io.c: a completion callback is about to run (counted) or a wake happened. */
void io_note_callback(rein_io *io, bool counted);
/* io.c: makes the loop run io_http_run_deferred soon (never synchronously). */
void io_defer_kick(rein_io *io);

#endif
