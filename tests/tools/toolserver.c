/*
 * toolserver: a loopback HTTP server that plays every kind of tool a workflow
 * may call, for tests and benchmarks. One libuv loop, one thread, the small
 * HTTP/1.1 parser of loopback.c (Content-Length and chunked bodies,
 * keep-alive, pipelining, Expect: 100-continue); delayed answers are timers,
 * never sleeps, so tens of thousands of requests can wait at once.
 *
 * Usage: toolserver [--port N] [--port-file PATH] [--max-seconds S]
 *
 * The behaviour is chosen per request by the path /tool/<mode> or an X-Mode
 * header (the header wins):
 *   ok                   200 {"ok":true,"args":<body JSON>,"key":<Idempotency-Key>,"count":n}
 *   delay:<ms>           the same after ms
 *   status:<code>        that status with a JSON error body
 *   retry-after:<secs>   429 with Retry-After: secs
 *   retry-after-date:<secs> 429 with Retry-After as an HTTP-date secs from now
 *   hang                 never answers
 *   drip                 headers, then one byte per second forever
 *   malformed            200 {"ok": tru
 *   badschema            200 {"unexpected": 1}
 *   huge:<bytes>         200 with that many bytes of valid JSON
 *   stream:<bytes>       the same without Content-Length (ends with the connection)
 *   cut                  headers promising 100 bytes, 10 bytes, then close
 *   close                closes the connection without answering
 *   garbage              a response with a broken Content-Length, then close
 *   seq:<m1>,<m2>,...    the Nth request with a given Idempotency-Key (or,
 *                        without one, with this same seq text) gets mode N;
 *                        the last one repeats
 * Side effects: an ok or delay answer is an effect; with an Idempotency-Key
 * only the first one counts (later ones are replays), without a key each one
 * counts. A delayed answer counts even when the client hung up meanwhile, as
 * a real API would have done the work.
 *   GET  /control/stats     {"requests":N,"by_key":{k:n},"effects":{k:n},"effects_total":N}
 *   GET  /control/log       [{"at":ms since the epoch when it arrived,"key":k|null,"mode":m,
 *                            "auth":the Authorization header, when one came}]
 *   POST /control/reset     clears the counters
 *   POST /control/shutdown  exits
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "loopback.h"

#define HUGE_CHUNK (64 * 1024)

typedef struct request {
	lb_request *http; /* owned */
	char *mode;       /* owned */
	const char *key;  /* in http's headers; NULL: no Idempotency-Key */
	long count;       /* times key was seen, this one included */
} request;

typedef struct conn conn;

enum { PEND_DELAY, PEND_DRIP };

/* A delayed answer or a drip, outliving its connection if need be. */
typedef struct pending {
	uv_timer_t timer;
	int kind;
	conn *c; /* NULL once the client went away */
	request *req;
} pending;

struct conn {
	lb_conn lc; /* first: loopback.c allocates a conn and passes &lc */
	pending *pend;
	size_t huge_left; /* bytes of a huge body still to write */
};

static uv_loop_t *loop;
static json_t *by_key, *effects, *seq_nokey;
static json_t *req_log; /* [{at, key, mode}] of every tool request, in arrival order */
static long n_requests, effects_total;

/* ---- small helpers ----------------------------------------------------- */

static void request_free(request *r)
{
	if (r == NULL)
		return;
	lb_request_free(r->http);
	rein_free(r->mode);
	rein_free(r);
}

static long counter_incr(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);
	long n = v ? (long)json_integer_value(v) + 1 : 1;
	json_object_set_new(obj, key, json_integer(n));
	return n;
}

static void respond_error(lb_conn *lc, int status, const char *msg)
{
	lb_respond_json(lc, status, NULL,
			json_pack("{s:{s:i,s:s}}", "error", "status", status, "message", msg));
}

/* ---- connections ------------------------------------------------------- */

static void on_timer_closed(uv_handle_t *h)
{
	pending *p = h->data;
	request_free(p->req);
	rein_free(p);
}

static void on_closing(lb_conn *lc)
{
	conn *c = (conn *)lc;
	if (c->pend != NULL) {
		pending *p = c->pend;
		c->pend = NULL;
		p->c = NULL;
		if (p->kind == PEND_DRIP) {
			uv_timer_stop(&p->timer);
			uv_close((uv_handle_t *)&p->timer, on_timer_closed);
		}
		/* a delayed answer still fires: the work is done even if nobody listens */
	}
}

/* ---- modes ------------------------------------------------------------- */

/* The answer of ok and delay; c is NULL when the client already left. */
static void answer_ok(conn *c, const request *r)
{
	if (r->key == NULL) {
		effects_total++;
	} else if (json_object_get(effects, r->key) == NULL) {
		json_object_set_new(effects, r->key, json_integer(1));
		effects_total++;
	}
	if (c == NULL)
		return;
	const lb_request *h = r->http;
	json_t *args = json_null();
	if (h->body_len > 0) {
		args = json_loadb(h->body, h->body_len, JSON_DECODE_ANY, NULL);
		if (args == NULL)
			args = json_stringn(h->body, h->body_len);
	}
	json_t *j = json_pack("{s:b,s:o,s:o,s:i}", "ok", 1, "args", args, "key",
			      r->key ? json_string(r->key) : json_null(), "count",
			      (json_int_t)r->count);
	lb_respond_json(&c->lc, 200, NULL, j);
}

static void on_pending(uv_timer_t *t)
{
	pending *p = t->data;
	conn *c = p->c;
	if (p->kind == PEND_DRIP) {
		lb_send_text(&c->lc, " ", 0);
		return;
	}
	answer_ok(c, p->req);
	if (c != NULL) {
		c->pend = NULL;
		lb_next(&c->lc);
	}
	uv_close((uv_handle_t *)&p->timer, on_timer_closed);
}

static void start_pending(conn *c, request *r, int kind, uint64_t ms, uint64_t repeat)
{
	pending *p = rein_calloc(1, sizeof *p);
	if (p == NULL) {
		request_free(r);
		lb_close(&c->lc);
		return;
	}
	p->kind = kind;
	p->c = c;
	p->req = r;
	uv_timer_init(loop, &p->timer);
	p->timer.data = p;
	c->pend = p;
	uv_timer_start(&p->timer, on_pending, ms, repeat);
}

static void huge_next(lb_conn *lc)
{
	conn *c = (conn *)lc;
	if (c->huge_left == 0) {
		lc->busy = false;
		if (lc->close_after)
			lb_close(lc);
		else
			lb_next(lc);
		return;
	}
	size_t n = c->huge_left < HUGE_CHUNK ? c->huge_left : HUGE_CHUNK;
	char *d = rein_malloc(n);
	if (d == NULL) {
		lb_close(lc);
		return;
	}
	/* the tail is x...x"} and may end inside this part or the next */
	for (size_t j = 0; j < n; j++) {
		size_t left_after = c->huge_left - j;
		d[j] = left_after == 1 ? '}' : left_after == 2 ? '"' : 'x';
	}
	c->huge_left -= n;
	lb_send(lc, d, n, LB_MORE);
}

/* A body of exactly n bytes of JSON: {"d":"xxx...x"} or, below 8 bytes, 1...1.
 * Delimited: no Content-Length, the end of the body is the end of the connection. */
static void answer_huge(conn *c, size_t n, bool delimited)
{
	lb_conn *lc = &c->lc;
	char head[256], clen[64] = "";
	if (delimited)
		lc->close_after = true;
	else
		snprintf(clen, sizeof clen, "Content-Length: %zu\r\n", n);
	snprintf(head, sizeof head,
		 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n%s"
		 "Connection: %s\r\n\r\n%s",
		 clen, lc->close_after ? "close" : "keep-alive", n >= 8 ? "{\"d\":\"" : "");
	if (n >= 8) {
		c->huge_left = n - 6; /* the opening {"d":" is in head */
	} else {
		char *d = rein_malloc(sizeof head + 8);
		if (d == NULL) {
			lb_close(lc);
			return;
		}
		int hl = snprintf(d, sizeof head, "%s", head);
		memset(d + hl, '1', n);
		lb_send(lc, d, (size_t)hl + n, lc->close_after ? LB_CLOSE : 0);
		lc->busy = false;
		return;
	}
	lb_send_text(lc, head, 0);
	huge_next(lc);
}

/* Runs one mode; request ownership passes here. */
static void dispatch(conn *c, request *r, const char *mode)
{
	lb_conn *lc = &c->lc;
	long n;
	char *end;
	if (strcmp(mode, "ok") == 0) {
		answer_ok(c, r);
	} else if (strncmp(mode, "delay:", 6) == 0) {
		n = strtol(mode + 6, &end, 10);
		if (n < 0 || *end) {
			respond_error(lc, 400, "bad delay");
		} else {
			start_pending(c, r, PEND_DELAY, (uint64_t)n, 0);
			return;
		}
	} else if (strncmp(mode, "status:", 7) == 0) {
		n = strtol(mode + 7, &end, 10);
		if (n < 200 || n > 599 || *end)
			respond_error(lc, 400, "bad status");
		else
			respond_error(lc, (int)n, "scripted status");
	} else if (strncmp(mode, "retry-after:", 12) == 0) {
		char h[64];
		snprintf(h, sizeof h, "Retry-After: %s\r\n", mode + 12);
		lb_respond_json(lc, 429, h,
				json_pack("{s:{s:i,s:s}}", "error", "status", 429, "message",
					  "slow down"));
	} else if (strncmp(mode, "retry-after-date:", 17) == 0) {
		time_t t = time(NULL) + strtol(mode + 17, NULL, 10);
		struct tm tm;
		char date[64], h[96];
		gmtime_r(&t, &tm);
		strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
		snprintf(h, sizeof h, "Retry-After: %s\r\n", date);
		lb_respond_json(lc, 429, h,
				json_pack("{s:{s:i,s:s}}", "error", "status", 429, "message",
					  "slow down"));
	} else if (strcmp(mode, "hang") == 0) {
		/* stays busy until the client goes away */
	} else if (strcmp(mode, "drip") == 0) {
		lb_send_text(lc, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
				 "Content-Length: 1000000\r\n\r\n ", 0);
		start_pending(c, r, PEND_DRIP, 1000, 1000);
		return;
	} else if (strcmp(mode, "malformed") == 0) {
		lb_respond(lc, 200, NULL, "{\"ok\": tru", 10);
	} else if (strcmp(mode, "badschema") == 0) {
		lb_respond(lc, 200, NULL, "{\"unexpected\": 1}", 17);
	} else if (strncmp(mode, "huge:", 5) == 0 || strncmp(mode, "stream:", 7) == 0) {
		bool delimited = mode[0] == 's';
		unsigned long long sz = strtoull(strchr(mode, ':') + 1, &end, 10);
		if (*end || sz > (1ull << 40))
			respond_error(lc, 400, "bad size");
		else
			answer_huge(c, (size_t)sz, delimited);
	} else if (strcmp(mode, "cut") == 0) {
		lb_send_text(lc, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
				 "Content-Length: 100\r\n\r\n{\"ok\": tr", LB_CLOSE);
	} else if (strcmp(mode, "close") == 0) {
		lb_close(lc);
	} else if (strcmp(mode, "garbage") == 0) {
		lb_send_text(lc, "HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n", LB_CLOSE);
	} else {
		respond_error(lc, 400, "unknown mode");
	}
	request_free(r);
}

static void handle_seq(conn *c, request *r)
{
	long idx = r->key ? r->count : counter_incr(seq_nokey, r->mode);
	/* the modes are separated by commas; pick the idx-th, the last repeats */
	char *list = rein_strdup(r->mode + 4);
	if (list == NULL) {
		request_free(r);
		lb_close(&c->lc);
		return;
	}
	char *pick = list, *save = NULL;
	long i = 1;
	for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save), i++) {
		pick = tok;
		if (i == idx)
			break;
	}
	dispatch(c, r, pick);
	rein_free(list);
}

static void handle_control(lb_conn *lc, lb_request *rq)
{
	const char *path = rq->path;
	if (strcmp(path, "/control/stats") == 0) {
		lb_respond_json(lc, 200, NULL,
				json_pack("{s:i,s:O,s:O,s:i}", "requests", (json_int_t)n_requests,
					  "by_key", by_key, "effects", effects, "effects_total",
					  (json_int_t)effects_total));
	} else if (strcmp(path, "/control/log") == 0) {
		lb_respond_json(lc, 200, NULL, json_incref(req_log));
	} else if (strcmp(path, "/control/reset") == 0) {
		json_array_clear(req_log);
		json_object_clear(by_key);
		json_object_clear(effects);
		json_object_clear(seq_nokey);
		n_requests = effects_total = 0;
		lb_respond(lc, 200, NULL, "{\"ok\":true}", 11);
	} else if (strcmp(path, "/control/shutdown") == 0) {
		lb_shutdown(lc);
	} else {
		respond_error(lc, 404, "no such control");
	}
	lb_request_free(rq);
}

/* One parsed request: a control, or a tool call in the mode that X-Mode or
 * the path /tool/<mode> names (the header wins). */
static void on_request(lb_conn *lc, lb_request *rq)
{
	if (strncmp(rq->path, "/control/", 9) == 0) {
		handle_control(lc, rq);
		return;
	}
	const char *xmode = lb_header(rq, "x-mode");
	if (xmode == NULL && strncmp(rq->path, "/tool/", 6) == 0)
		xmode = rq->path + 6;
	if (xmode == NULL) {
		lb_request_free(rq);
		respond_error(lc, 404, "use /tool/<mode> or X-Mode");
		return;
	}
	request *r = rein_calloc(1, sizeof *r);
	if (r == NULL || (r->mode = rein_strdup(xmode)) == NULL) {
		rein_free(r);
		lb_request_free(rq);
		lb_close(lc);
		return;
	}
	r->http = rq;
	r->key = lb_header(rq, "idempotency-key");
	n_requests++;
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	json_array_append_new(req_log, json_pack("{s:I, s:s?, s:s, s:s?}", "at",
						 (json_int_t)now.tv_sec * 1000 + now.tv_nsec / 1000000,
						 "key", r->key, "mode", r->mode, "auth",
						 lb_header(rq, "authorization")));
	r->count = r->key ? counter_incr(by_key, r->key) : 1;
	conn *c = (conn *)lc;
	if (strncmp(r->mode, "seq:", 4) == 0)
		handle_seq(c, r);
	else
		dispatch(c, r, r->mode);
}

/* ---- main -------------------------------------------------------------- */

static int usage(void)
{
	fprintf(stderr, "usage: toolserver [--port N] [--port-file PATH] [--max-seconds S]\n");
	return 2;
}

int main(int argc, char **argv)
{
	lb_opts o = LB_OPTS_DEFAULT;
	for (int i = 1; i < argc; i++)
		if (!lb_option(&o, argc, argv, &i))
			return usage();
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	loop = uv_default_loop();
	by_key = json_object();
	req_log = json_array();
	effects = json_object();
	seq_nokey = json_object();

	static const lb_server server = {
		.name = "toolserver",
		.backlog = 65535,
		.conn_size = sizeof(conn),
		.request = on_request,
		.refuse = respond_error,
		.closing = on_closing,
		.more = huge_next,
	};
	return lb_serve(&server, &o);
}
