/*
 * io: the libuv loop and its marriage with curl's multi interface, done the
 * standard way. Curl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION,
 * one uv_poll_t per socket) and when it next needs a tick
 * (CURLMOPT_TIMERFUNCTION, one uv_timer_t); we hand events back through
 * curl_multi_socket_action and collect finished transfers with
 * curl_multi_info_read. Completion callbacks therefore only ever run from a
 * libuv callback, inside rein_io_run or rein_io_wait. Calls are spread over
 * several multi handles (lanes, see io_int.h) so that curl's per-call walks
 * of its connection cache stay short when thousands are in flight.
 */
#include "io_int.h"

#include <assert.h>
#include <pthread.h>
#include <string.h>
#include <sys/resource.h>

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init_once(void) { curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

/* Many calls in flight means many sockets: take every descriptor we may. */
static rlim_t raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return 1024;
	if (rl.rlim_cur < rl.rlim_max) {
		rlim_t want = rl.rlim_max;
		rl.rlim_cur = want;
		if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
			return want;
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	return rl.rlim_cur;
}

/* ---- sockets ----------------------------------------------------------- */

static void check_done(io_lane *lane)
{
	CURLMsg *m;
	int left;
	while ((m = curl_multi_info_read(lane->multi, &left)) != NULL) {
		if (m->msg != CURLMSG_DONE)
			continue;
		/* io_http_done removes the handle, which invalidates m: copy first. */
		CURL *easy = m->easy_handle;
		CURLcode rc = m->data.result;
		io_http_done(lane, easy, rc);
	}
}

static void on_sock_closed(uv_handle_t *h) { rein_free(h->data); }

static void sock_close(io_sock *sk)
{
	rein_io *io = sk->lane->io;
	if (sk->prev)
		sk->prev->next = sk->next;
	else
		io->socks = sk->next;
	if (sk->next)
		sk->next->prev = sk->prev;
	uv_poll_stop(&sk->poll);
	uv_close((uv_handle_t *)&sk->poll, on_sock_closed);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
	io_sock *sk = h->data;
	io_lane *lane = sk->lane;
	int flags = 0;
	if (status < 0)
		flags = CURL_CSELECT_ERR | CURL_CSELECT_IN | CURL_CSELECT_OUT;
	if (events & UV_READABLE)
		flags |= CURL_CSELECT_IN;
	if (events & UV_WRITABLE)
		flags |= CURL_CSELECT_OUT;
	int running;
	/* sk may be closed during this call (CURL_POLL_REMOVE); do not touch it after. */
	curl_multi_socket_action(lane->multi, sk->fd, flags, &running);
	check_done(lane);
}

static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	io_lane *lane = userp;
	rein_io *io = lane->io;
	io_sock *sk = socketp;
	if (what == CURL_POLL_REMOVE) {
		if (sk != NULL) {
			sock_close(sk);
			curl_multi_assign(lane->multi, s, NULL);
		}
		return 0;
	}
	if (sk == NULL) {
		sk = rein_calloc(1, sizeof *sk);
		if (sk == NULL)
			return -1;
		if (uv_poll_init_socket(&io->loop, &sk->poll, s) != 0) {
			rein_free(sk);
			return -1;
		}
		sk->poll.data = sk;
		sk->lane = lane;
		sk->fd = s;
		sk->next = io->socks;
		if (io->socks)
			io->socks->prev = sk;
		io->socks = sk;
		curl_multi_assign(lane->multi, s, sk);
	}
	int ev = 0;
	if (what & CURL_POLL_IN)
		ev |= UV_READABLE;
	if (what & CURL_POLL_OUT)
		ev |= UV_WRITABLE;
	uv_poll_start(&sk->poll, ev, on_poll);
	return 0;
}

/* ---- timers ------------------------------------------------------------ */

static void on_curl_timeout(uv_timer_t *t)
{
	io_lane *lane = t->data;
	int running;
	curl_multi_socket_action(lane->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done(lane);
}

/* Curl asks for one tick after timeout_ms (-1: none). Never act from here:
 * curl forbids re-entering the multi handle from its own callbacks. */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
	io_lane *lane = userp;
	if (timeout_ms < 0)
		uv_timer_stop(&lane->timer);
	else
		uv_timer_start(&lane->timer, on_curl_timeout, (uint64_t)timeout_ms, 0);
	return 0;
}

static void on_defer(uv_timer_t *t) { io_http_run_deferred(t->data); }

void io_defer_kick(rein_io *io)
{
	if (!uv_is_active((uv_handle_t *)&io->defer_timer))
		uv_timer_start(&io->defer_timer, on_defer, 0, 0);
}

static void on_wait_timer(uv_timer_t *t)
{
	rein_io *io = t->data;
	io->wait_expired = true;
}

/* ---- lanes ------------------------------------------------------------- */

static void on_lane_closed(uv_handle_t *h) { rein_free(h->data); }

/* Frees a lane whose calls are all gone; its timer is freed with the loop run. */
static void lane_free(io_lane *lane)
{
	if (lane == NULL)
		return;
	assert(lane->inflight == 0);
	/* Closing the connection cache may still report sockets to remove. */
	if (lane->multi)
		curl_multi_cleanup(lane->multi);
	lane->multi = NULL;
	uv_close((uv_handle_t *)&lane->timer, on_lane_closed);
}

static io_lane *lane_new(rein_io *io, long maxconn)
{
	io_lane *lane = rein_calloc(1, sizeof *lane);
	if (lane == NULL)
		return NULL;
	lane->io = io;
	uv_timer_init(&io->loop, &lane->timer);
	lane->timer.data = lane;
	lane->multi = curl_multi_init();
	if (lane->multi == NULL ||
	    curl_multi_setopt(lane->multi, CURLMOPT_SOCKETFUNCTION, on_socket) != CURLM_OK ||
	    curl_multi_setopt(lane->multi, CURLMOPT_SOCKETDATA, lane) != CURLM_OK ||
	    curl_multi_setopt(lane->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer) != CURLM_OK ||
	    curl_multi_setopt(lane->multi, CURLMOPT_TIMERDATA, lane) != CURLM_OK ||
	    curl_multi_setopt(lane->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 0L) != CURLM_OK ||
	    curl_multi_setopt(lane->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, 0L) != CURLM_OK ||
	    curl_multi_setopt(lane->multi, CURLMOPT_MAXCONNECTS, maxconn) != CURLM_OK) {
		lane_free(lane);
		return NULL;
	}
	return lane;
}

io_lane *io_lane_pick(rein_io *io)
{
	for (size_t i = 0; i < io->nlanes; i++)
		if (io->lanes[i]->inflight < IO_LANE_CALLS)
			return io->lanes[i];
	if (io->nlanes == io->lanes_cap) {
		size_t cap = io->lanes_cap ? 2 * io->lanes_cap : 8;
		io_lane **l = rein_realloc(io->lanes, cap * sizeof *l);
		if (l == NULL)
			return NULL;
		io->lanes = l;
		io->lanes_cap = cap;
	}
	io_lane *lane = lane_new(io, io->nlanes == 0 ? io->maxconn : io->lane_maxconn);
	if (lane != NULL)
		io->lanes[io->nlanes++] = lane;
	return lane;
}

/* ---- the loop object --------------------------------------------------- */

int rein_io_new(rein_io **out, rein_err *err)
{
	assert(out != NULL);
	int rc = REIN_OK;
	rein_io *io = NULL;
	bool loop_ok = false;

	pthread_once(&curl_once, curl_init_once);
	if (curl_init_rc != CURLE_OK) {
		rc = rein_err_set(err, REIN_EIO, "curl_global_init: %s",
				  curl_easy_strerror(curl_init_rc));
		goto out;
	}
	rlim_t nofile = raise_nofile();

	io = rein_calloc(1, sizeof *io);
	if (io == NULL) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	int uvrc = uv_loop_init(&io->loop);
	if (uvrc != 0) {
		rc = rein_err_set(err, REIN_EIO, "uv_loop_init: %s", uv_strerror(uvrc));
		goto out;
	}
	loop_ok = true;
	uv_timer_init(&io->loop, &io->defer_timer);
	uv_timer_init(&io->loop, &io->wait_timer);
	io->defer_timer.data = io;
	io->wait_timer.data = io;

	/* Idle connections kept for reuse: half the descriptors, at least 1024,
	 * in lane 0; as many as a lane takes calls in each further lane (the
	 * idle connections left over after a burst are then at most the burst). */
	io->maxconn = nofile / 2 > 1024 ? (long)(nofile / 2) : 1024;
	io->lane_maxconn = IO_LANE_CALLS;
	if (io_lane_pick(io) == NULL) {
		rc = rein_err_set(err, REIN_ENOMEM, "curl_multi_init failed");
		goto out;
	}
	*out = io;
	io = NULL;
out:
	if (io != NULL) {
		if (loop_ok) {
			for (size_t i = 0; i < io->nlanes; i++)
				lane_free(io->lanes[i]);
			uv_close((uv_handle_t *)&io->defer_timer, NULL);
			uv_close((uv_handle_t *)&io->wait_timer, NULL);
			uv_run(&io->loop, UV_RUN_DEFAULT);
			uv_loop_close(&io->loop);
		}
		rein_free(io->lanes);
		rein_free(io);
	}
	return rc;
}

static void close_stray(uv_handle_t *h, void *arg)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

void rein_io_free(rein_io *io)
{
	if (io == NULL)
		return;
	io->closing = true;
	io_http_cancel_all(io);
	assert(io->inflight == 0);
	for (size_t i = 0; i < io->nlanes; i++)
		lane_free(io->lanes[i]);
	while (io->socks != NULL)
		sock_close(io->socks);
	uv_close((uv_handle_t *)&io->defer_timer, NULL);
	uv_close((uv_handle_t *)&io->wait_timer, NULL);
	/* Handles a user left on the loop: close them rather than leak the loop. */
	uv_walk(&io->loop, close_stray, NULL);
	uv_run(&io->loop, UV_RUN_DEFAULT);
	uv_loop_close(&io->loop);
	rein_free(io->lanes);
	rein_free(io);
}

uv_loop_t *rein_io_loop(rein_io *io) { return &io->loop; }

int rein_io_run(rein_io *io, uv_run_mode mode) { return uv_run(&io->loop, mode); }

size_t rein_io_inflight(const rein_io *io) { return io->inflight; }

void rein_io_wake(rein_io *io)
{
	io->woken = true;
	io_note_callback(io, false);
}

/* A completion can run from any phase of a loop turn (timers included), after
 * which UV_RUN_ONCE would still block in poll: inside rein_io_wait, stop the
 * loop so that this turn polls without blocking and returns. */
void io_note_callback(rein_io *io, bool counted)
{
	if (counted)
		io->ncallbacks++;
	if (io->waiting)
		uv_stop(&io->loop);
}

int rein_io_wait(rein_io *io, int64_t timeout_ms)
{
	assert(io != NULL && !io->closing);
	uint64_t before = io->ncallbacks;
	if (timeout_ms == 0 || io->woken) {
		io->woken = false;
		uv_run(&io->loop, UV_RUN_NOWAIT);
		return (int)(io->ncallbacks - before);
	}
	io->wait_expired = false;
	io->waiting = true;
	if (timeout_ms > 0)
		uv_timer_start(&io->wait_timer, on_wait_timer, (uint64_t)timeout_ms, 0);
	while (io->ncallbacks == before && !io->wait_expired && !io->woken) {
		int alive = uv_run(&io->loop, UV_RUN_ONCE);
		if (!alive && timeout_ms < 0)
			break; /* nothing left that could ever call back */
	}
	uv_timer_stop(&io->wait_timer);
	io->waiting = false;
	io->woken = false;
	return (int)(io->ncallbacks - before);
}
