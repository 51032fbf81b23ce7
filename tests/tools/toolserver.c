/*
 * toolserver: a loopback HTTP server that plays every kind of tool a workflow
 * may call, for tests and benchmarks. One libuv loop, one thread, a small
 * HTTP/1.1 parser (Content-Length and chunked bodies, keep-alive, pipelining,
 * Expect: 100-continue); delayed answers are timers, never sleeps, so tens of
 * thousands of requests can wait at once.
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
 *   POST /control/reset     clears the counters
 *   POST /control/shutdown  exits
 */
#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <uv.h>

#include "base.h"

#define MAX_HEAD (64 * 1024)
#define MAX_BODY (64 * 1024 * 1024)
#include "http_util.h"
#define HUGE_CHUNK (64 * 1024)

typedef struct request {
	char method[16];
	char *mode; /* owned */
	char *key;  /* owned, NULL: no Idempotency-Key */
	char *body; /* owned */
	size_t body_len;
	long count; /* times key was seen, this one included */
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
	uv_tcp_t tcp;
	rein_buf in;
	bool busy;        /* a request is being answered */
	bool closing;
	bool close_after; /* the client asked for Connection: close */
	bool sent_continue;
	pending *pend;
	size_t huge_left; /* bytes of a huge body still to write */
};

typedef struct wreq {
	uv_write_t w;
	char *data;
	conn *c;
	bool last;  /* the last write of a response */
	bool close; /* close the connection once written */
	bool huge;  /* part of a huge body: write the next part */
} wreq;

static uv_loop_t *loop;
static json_t *by_key, *effects, *seq_nokey;
static long n_requests, effects_total;
static char readbuf[64 * 1024];

static void try_parse(conn *c);

/* ---- small helpers ----------------------------------------------------- */

static void request_free(request *r)
{
	if (r == NULL)
		return;
	rein_free(r->mode);
	rein_free(r->key);
	rein_free(r->body);
	rein_free(r);
}

static long counter_incr(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);
	long n = v ? (long)json_integer_value(v) + 1 : 1;
	json_object_set_new(obj, key, json_integer(n));
	return n;
}

/* ---- connections and writes -------------------------------------------- */

static void on_conn_closed(uv_handle_t *h)
{
	conn *c = h->data;
	rein_buf_free(&c->in);
	rein_free(c);
}

static void on_timer_closed(uv_handle_t *h)
{
	pending *p = h->data;
	request_free(p->req);
	rein_free(p);
}

static void conn_close(conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
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
	uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void huge_next(conn *c);

static void on_write(uv_write_t *w, int status)
{
	wreq *r = (wreq *)w;
	conn *c = r->c;
	rein_free(r->data);
	bool close = r->close, huge = r->huge;
	rein_free(r);
	if (c->closing)
		return;
	if (status < 0 || close) {
		conn_close(c);
		return;
	}
	if (huge)
		huge_next(c);
}

/* Takes ownership of data. */
static void send_data(conn *c, char *data, size_t len, bool close, bool huge)
{
	if (c->closing) {
		rein_free(data);
		return;
	}
	wreq *r = rein_calloc(1, sizeof *r);
	if (r == NULL) {
		rein_free(data);
		conn_close(c);
		return;
	}
	r->data = data;
	r->c = c;
	r->close = close;
	r->huge = huge;
	uv_buf_t b = uv_buf_init(data, (unsigned)len);
	if (uv_write(&r->w, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
		rein_free(data);
		rein_free(r);
		conn_close(c);
	}
}

static void send_text(conn *c, const char *text, bool close)
{
	char *d = rein_strdup(text);
	if (d)
		send_data(c, d, strlen(d), close, false);
}

/* A complete response; the connection is free for the next request. */
static void respond(conn *c, int status, const char *extra, const char *body, size_t len)
{
	rein_buf b = {0};
	rein_buf_printf(&b,
			"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
			"Content-Length: %zu\r\n%sConnection: %s\r\n\r\n",
			status, reason(status), len, extra ? extra : "",
			c->close_after ? "close" : "keep-alive");
	rein_buf_append(&b, body, len);
	if (b.p == NULL) {
		conn_close(c);
		return;
	}
	send_data(c, b.p, b.len, c->close_after, false);
	c->busy = false;
}

static void respond_json(conn *c, int status, const char *extra, json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
	json_decref(j);
	if (s == NULL) {
		conn_close(c);
		return;
	}
	respond(c, status, extra, s, strlen(s));
	free(s);
}

static void respond_error(conn *c, int status, const char *msg)
{
	respond_json(c, status, NULL,
		     json_pack("{s:{s:i,s:s}}", "error", "status", status, "message", msg));
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
	json_t *args = json_null();
	if (r->body_len > 0) {
		args = json_loadb(r->body, r->body_len, JSON_DECODE_ANY, NULL);
		if (args == NULL)
			args = json_stringn(r->body, r->body_len);
	}
	json_t *j = json_pack("{s:b,s:o,s:o,s:i}", "ok", 1, "args", args, "key",
			      r->key ? json_string(r->key) : json_null(), "count",
			      (json_int_t)r->count);
	respond_json(c, 200, NULL, j);
}

static void on_pending(uv_timer_t *t)
{
	pending *p = t->data;
	conn *c = p->c;
	if (p->kind == PEND_DRIP) {
		send_text(c, " ", false);
		return;
	}
	answer_ok(c, p->req);
	if (c != NULL) {
		c->pend = NULL;
		try_parse(c);
	}
	uv_close((uv_handle_t *)&p->timer, on_timer_closed);
}

static void start_pending(conn *c, request *r, int kind, uint64_t ms, uint64_t repeat)
{
	pending *p = rein_calloc(1, sizeof *p);
	if (p == NULL) {
		request_free(r);
		conn_close(c);
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

static void huge_next(conn *c)
{
	if (c->huge_left == 0) {
		c->busy = false;
		if (c->close_after)
			conn_close(c);
		else
			try_parse(c);
		return;
	}
	size_t n = c->huge_left < HUGE_CHUNK ? c->huge_left : HUGE_CHUNK;
	char *d = rein_malloc(n);
	if (d == NULL) {
		conn_close(c);
		return;
	}
	/* the tail is x...x"} and may end inside this part or the next */
	for (size_t j = 0; j < n; j++) {
		size_t left_after = c->huge_left - j;
		d[j] = left_after == 1 ? '}' : left_after == 2 ? '"' : 'x';
	}
	c->huge_left -= n;
	send_data(c, d, n, false, true);
}

/* A body of exactly n bytes of JSON: {"d":"xxx...x"} or, below 8 bytes, 1...1.
 * Delimited: no Content-Length, the end of the body is the end of the connection. */
static void answer_huge(conn *c, size_t n, bool delimited)
{
	char head[256], clen[64] = "";
	if (delimited)
		c->close_after = true;
	else
		snprintf(clen, sizeof clen, "Content-Length: %zu\r\n", n);
	snprintf(head, sizeof head,
		 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n%s"
		 "Connection: %s\r\n\r\n%s",
		 clen, c->close_after ? "close" : "keep-alive", n >= 8 ? "{\"d\":\"" : "");
	if (n >= 8) {
		c->huge_left = n - 6; /* the opening {"d":" is in head */
	} else {
		char *d = rein_malloc(sizeof head + 8);
		if (d == NULL) {
			conn_close(c);
			return;
		}
		int hl = snprintf(d, sizeof head, "%s", head);
		memset(d + hl, '1', n);
		send_data(c, d, (size_t)hl + n, c->close_after, false);
		c->busy = false;
		return;
	}
	send_text(c, head, false);
	huge_next(c);
}

/* Runs one mode; request ownership passes here. */
static void dispatch(conn *c, request *r, const char *mode)
{
	long n;
	char *end;
	if (strcmp(mode, "ok") == 0) {
		answer_ok(c, r);
	} else if (strncmp(mode, "delay:", 6) == 0) {
		n = strtol(mode + 6, &end, 10);
		if (n < 0 || *end) {
			respond_error(c, 400, "bad delay");
		} else {
			start_pending(c, r, PEND_DELAY, (uint64_t)n, 0);
			return;
		}
	} else if (strncmp(mode, "status:", 7) == 0) {
		n = strtol(mode + 7, &end, 10);
		if (n < 200 || n > 599 || *end)
			respond_error(c, 400, "bad status");
		else
			respond_error(c, (int)n, "scripted status");
	} else if (strncmp(mode, "retry-after:", 12) == 0) {
		char h[64];
		snprintf(h, sizeof h, "Retry-After: %s\r\n", mode + 12);
		respond_json(c, 429, h,
			     json_pack("{s:{s:i,s:s}}", "error", "status", 429, "message",
				       "slow down"));
	} else if (strncmp(mode, "retry-after-date:", 17) == 0) {
		time_t t = time(NULL) + strtol(mode + 17, NULL, 10);
		struct tm tm;
		char date[64], h[96];
		gmtime_r(&t, &tm);
		strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
		snprintf(h, sizeof h, "Retry-After: %s\r\n", date);
		respond_json(c, 429, h,
			     json_pack("{s:{s:i,s:s}}", "error", "status", 429, "message",
				       "slow down"));
	} else if (strcmp(mode, "hang") == 0) {
		/* stays busy until the client goes away */
	} else if (strcmp(mode, "drip") == 0) {
		send_text(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
			     "Content-Length: 1000000\r\n\r\n ", false);
		start_pending(c, r, PEND_DRIP, 1000, 1000);
		return;
	} else if (strcmp(mode, "malformed") == 0) {
		respond(c, 200, NULL, "{\"ok\": tru", 10);
	} else if (strcmp(mode, "badschema") == 0) {
		respond(c, 200, NULL, "{\"unexpected\": 1}", 17);
	} else if (strncmp(mode, "huge:", 5) == 0 || strncmp(mode, "stream:", 7) == 0) {
		bool delimited = mode[0] == 's';
		unsigned long long sz = strtoull(strchr(mode, ':') + 1, &end, 10);
		if (*end || sz > (1ull << 40))
			respond_error(c, 400, "bad size");
		else
			answer_huge(c, (size_t)sz, delimited);
	} else if (strcmp(mode, "cut") == 0) {
		send_text(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
			     "Content-Length: 100\r\n\r\n{\"ok\": tr", true);
	} else if (strcmp(mode, "close") == 0) {
		conn_close(c);
	} else if (strcmp(mode, "garbage") == 0) {
		send_text(c, "HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n", true);
	} else {
		respond_error(c, 400, "unknown mode");
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
		conn_close(c);
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

static void on_exit_timer(uv_timer_t *t)
{
	fflush(NULL);
	_exit(0);
}

static void handle_control(conn *c, request *r, const char *path)
{
	if (strcmp(path, "/control/stats") == 0) {
		respond_json(c, 200, NULL,
			     json_pack("{s:i,s:O,s:O,s:i}", "requests", (json_int_t)n_requests,
				       "by_key", by_key, "effects", effects, "effects_total",
				       (json_int_t)effects_total));
	} else if (strcmp(path, "/control/reset") == 0) {
		json_object_clear(by_key);
		json_object_clear(effects);
		json_object_clear(seq_nokey);
		n_requests = effects_total = 0;
		respond(c, 200, NULL, "{\"ok\":true}", 11);
	} else if (strcmp(path, "/control/shutdown") == 0) {
		respond(c, 200, NULL, "{\"ok\":true}", 11);
		static uv_timer_t t;
		static bool armed;
		if (!armed) {
			armed = true;
			uv_timer_init(loop, &t);
			uv_timer_start(&t, on_exit_timer, 50, 0);
		}
	} else {
		respond_error(c, 404, "no such control");
	}
	request_free(r);
}

/* ---- parsing ----------------------------------------------------------- */

static void try_parse(conn *c)
{
	while (!c->busy && !c->closing && c->in.len > 0) {
		char *p = c->in.p;
		char *hend = memmem(p, c->in.len, "\r\n\r\n", 4);
		if (hend == NULL) {
			if (c->in.len > MAX_HEAD) {
				c->close_after = true;
				respond_error(c, 431, "headers too large");
			}
			return;
		}
		size_t head_len = (size_t)(hend - p) + 4;
		/* request line */
		char *sp1 = memchr(p, ' ', head_len);
		char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(hend - sp1 - 1)) : NULL;
		if (sp1 == NULL || sp2 == NULL || sp1 - p >= 16) {
			c->close_after = true;
			respond_error(c, 400, "bad request line");
			return;
		}
		char *target = rein_strndup(sp1 + 1, (size_t)(sp2 - sp1 - 1));
		char *xmode = NULL, *key = NULL;
		long clen = 0;
		bool chunked = false, expect = false;
		c->close_after = false;
		bool http10 = memcmp(sp2 + 1, "HTTP/1.0", 8) == 0;
		if (http10)
			c->close_after = true;
		char *line = memmem(p, head_len, "\r\n", 2) + 2;
		while (line < hend) {
			char *eol = memmem(line, (size_t)(hend + 2 - line), "\r\n", 2);
			char *colon = memchr(line, ':', (size_t)(eol - line));
			if (colon != NULL) {
				size_t nlen = (size_t)(colon - line);
				char *v = colon + 1;
				while (v < eol && (*v == ' ' || *v == '\t'))
					v++;
				char *ve = eol;
				while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
					ve--;
				size_t vlen = (size_t)(ve - v);
#define IS(name) (nlen == strlen(name) && strncasecmp(line, name, nlen) == 0)
				if (IS("content-length"))
					clen = strtol(v, NULL, 10);
				else if (IS("transfer-encoding"))
					chunked = vlen >= 7 && strncasecmp(ve - 7, "chunked", 7) == 0;
				else if (IS("expect"))
					expect = vlen == 12 && strncasecmp(v, "100-continue", 12) == 0;
				else if (IS("connection"))
					c->close_after = (vlen == 5 && strncasecmp(v, "close", 5) == 0) ||
							 (http10 && !(vlen == 10 && strncasecmp(v, "keep-alive", 10) == 0));
				else if (IS("x-mode") && xmode == NULL)
					xmode = rein_strndup(v, vlen);
				else if (IS("idempotency-key") && key == NULL)
					key = rein_strndup(v, vlen);
#undef IS
			}
			line = eol + 2;
		}
		/* body */
		size_t body_len = 0, used = 0;
		bool bad = clen < 0 || clen > MAX_BODY;
		if (!bad && chunked) {
			/* check it is all there first: decoding moves bytes */
			long k = dechunk(p + head_len, c->in.len - head_len, &body_len, false);
			if (k > 0)
				dechunk(p + head_len, c->in.len - head_len, &body_len, true);
			bad = k < 0;
			used = k > 0 ? (size_t)k : 0;
		} else if (!bad && c->in.len - head_len >= (size_t)clen) {
			body_len = used = (size_t)clen;
		}
		bool complete = !bad && (chunked ? used > 0 : c->in.len - head_len >= (size_t)clen);
		if (bad || target == NULL) {
			rein_free(target);
			rein_free(xmode);
			rein_free(key);
			c->close_after = true;
			respond_error(c, bad ? 413 : 500, bad ? "bad body" : "out of memory");
			return;
		}
		if (!complete) {
			if (expect && !c->sent_continue) {
				c->sent_continue = true;
				send_text(c, "HTTP/1.1 100 Continue\r\n\r\n", false);
			}
			rein_free(target);
			rein_free(xmode);
			rein_free(key);
			return;
		}
		request *r = rein_calloc(1, sizeof *r);
		if (r == NULL) {
			conn_close(c);
			return;
		}
		memcpy(r->method, p, (size_t)(sp1 - p));
		r->body = rein_strndup(p + head_len, body_len);
		r->body_len = body_len;
		r->key = key;
		/* consume */
		size_t total = head_len + used;
		memmove(c->in.p, c->in.p + total, c->in.len - total);
		c->in.len -= total;
		c->sent_continue = false;
		c->busy = true;

		char *q = strchr(target, '?');
		if (q)
			*q = '\0';
		url_decode(target);
		if (strncmp(target, "/control/", 9) == 0) {
			rein_free(xmode);
			handle_control(c, r, target);
			rein_free(target);
			continue;
		}
		if (xmode == NULL && strncmp(target, "/tool/", 6) == 0)
			xmode = rein_strdup(target + 6);
		rein_free(target);
		if (xmode == NULL) {
			request_free(r);
			respond_error(c, 404, "use /tool/<mode> or X-Mode");
			continue;
		}
		r->mode = xmode;
		n_requests++;
		r->count = r->key ? counter_incr(by_key, r->key) : 1;
		if (strncmp(r->mode, "seq:", 4) == 0)
			handle_seq(c, r);
		else
			dispatch(c, r, r->mode);
	}
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	*buf = uv_buf_init(readbuf, sizeof readbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	conn *c = s->data;
	if (nread < 0) {
		conn_close(c);
		return;
	}
	if (nread == 0 || c->closing)
		return;
	if (c->in.len + (size_t)nread > MAX_HEAD + MAX_BODY + 1024 ||
	    rein_buf_append(&c->in, buf->base, (size_t)nread) != REIN_OK) {
		conn_close(c);
		return;
	}
	try_parse(c);
}

static void on_connection(uv_stream_t *server, int status)
{
	if (status < 0)
		return;
	conn *c = rein_calloc(1, sizeof *c);
	if (c == NULL)
		return;
	uv_tcp_init(loop, &c->tcp);
	c->tcp.data = c;
	if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
		uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* ---- main -------------------------------------------------------------- */

static int usage(void)
{
	fprintf(stderr, "usage: toolserver [--port N] [--port-file PATH] [--max-seconds S]\n");
	return 2;
}

int main(int argc, char **argv)
{
	int port = 0;
	long max_seconds = 600;
	const char *port_file = NULL;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
			port = atoi(argv[++i]);
		else if (strcmp(argv[i], "--port-file") == 0 && i + 1 < argc)
			port_file = argv[++i];
		else if (strcmp(argv[i], "--max-seconds") == 0 && i + 1 < argc)
			max_seconds = atol(argv[++i]);
		else
			return usage();
	}
	signal(SIGPIPE, SIG_IGN);
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	loop = uv_default_loop();
	by_key = json_object();
	effects = json_object();
	seq_nokey = json_object();

	static uv_tcp_t server;
	struct sockaddr_in addr;
	uv_ip4_addr("127.0.0.1", port, &addr);
	uv_tcp_init(loop, &server);
	int rc = uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&server, 65535, on_connection);
	if (rc != 0) {
		fprintf(stderr, "toolserver: listen on port %d: %s\n", port, uv_strerror(rc));
		return 1;
	}
	struct sockaddr_storage ss;
	int sl = sizeof ss;
	uv_tcp_getsockname(&server, (struct sockaddr *)&ss, &sl);
	port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (port_file != NULL) {
		char tmp[4096];
		snprintf(tmp, sizeof tmp, "%s.tmp", port_file);
		FILE *f = fopen(tmp, "w");
		if (f == NULL || fprintf(f, "%d\n", port) < 0 || fclose(f) != 0 ||
		    rename(tmp, port_file) != 0) {
			fprintf(stderr, "toolserver: cannot write %s: %s\n", port_file,
				strerror(errno));
			return 1;
		}
	}
	fprintf(stderr, "toolserver: listening on 127.0.0.1:%d\n", port);

	static uv_timer_t stop;
	uv_timer_init(loop, &stop);
	uv_timer_start(&stop, on_exit_timer, (uint64_t)max_seconds * 1000, 0);
	uv_unref((uv_handle_t *)&stop);
	uv_run(loop, UV_RUN_DEFAULT);
	return 0;
}
