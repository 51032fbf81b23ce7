/*
 * Internal header of the io layer: the loop object shared by io.c (libuv and
 * curl multi glue, waiting, teardown) and http.c (one HTTP call from start to
 * its single completion).
 */
#ifndef REIN_IO_INT_H
#define REIN_IO_INT_H

#include <curl/curl.h>

#include "io.h"

/* One socket curl asked us to watch; freed in the poll handle's close callback. */
typedef struct io_sock {
	uv_poll_t poll;
	rein_io *io;
	curl_socket_t fd;
	struct io_sock *prev, *next;
} io_sock;

struct rein_io {
	uv_loop_t loop;
	CURLM *multi;
	uv_timer_t curl_timer;  /* curl's single timeout (CURLMOPT_TIMERFUNCTION) */
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

/* http.c: a transfer ended inside the multi handle (from curl_multi_info_read). */
void io_http_done(rein_io *io, CURL *easy, CURLcode rc);
/* http.c: runs the callbacks of cancelled calls. */
void io_http_run_deferred(rein_io *io);
/* http.c: cancels every call and runs every pending callback (rein_io_free). */
void io_http_cancel_all(rein_io *io);
/* io.c: a completion callback is about to run (counted) or a wake happened. */
void io_note_callback(rein_io *io, bool counted);
/* io.c: makes the loop run io_http_run_deferred soon (never synchronously). */
void io_defer_kick(rein_io *io);

#endif
