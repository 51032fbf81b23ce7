/*
 * loopback: connections, HTTP/1.1 parsing and writes for the loopback test
 * servers, so that toolserver.c and modelserver.c hold only what their
 * answers mean. One server per process: lb_serve keeps it in a static.
 */
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "loopback.h"

#define MAX_HEAD (64 * 1024)
#define MAX_BODY (64 * 1024 * 1024)

typedef struct wreq {
	uv_write_t w;
	char *data;
	lb_conn *c;
	int flags;
} wreq;

static const lb_server *srv;
static char readbuf[64 * 1024];

/* ---- small helpers ----------------------------------------------------- */

const char *lb_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 413: return "Payload Too Large";
	case 422: return "Unprocessable Entity";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 529: return "Overloaded";
	}
	return "Status";
}

static void url_decode(char *s)
{
	char *o = s;
	for (char *p = s; *p; p++) {
		if (*p == '%' && isxdigit((unsigned char)p[1]) && isxdigit((unsigned char)p[2])) {
			char hex[3] = {p[1], p[2], 0};
			*o++ = (char)strtol(hex, NULL, 16);
			p += 2;
		} else {
			*o++ = *p;
		}
	}
	*o = '\0';
}

/* Decodes a chunked body in place at p[0..n): returns the bytes the encoded
 * form used, 0 if incomplete, -1 if malformed or over MAX_BODY; the decoded
 * size in *out. */
static long dechunk(char *p, size_t n, size_t *out, bool apply)
{
	size_t i = 0, o = 0;
	for (;;) {
		char *eol = memmem(p + i, n - i, "\r\n", 2);
		if (eol == NULL)
			return 0;
		char *end;
		unsigned long sz = strtoul(p + i, &end, 16);
		if (end == p + i)
			return -1;
		i = (size_t)(eol - p) + 2;
		if (sz == 0) {
			/* optional trailers, then an empty line */
			for (;;) {
				char *e2 = memmem(p + i, n - i, "\r\n", 2);
				if (e2 == NULL)
					return 0;
				size_t linelen = (size_t)(e2 - (p + i));
				i += linelen + 2;
				if (linelen == 0) {
					*out = o;
					return (long)i;
				}
			}
		}
		if (sz > MAX_BODY || n - i < sz + 2)
			return sz > MAX_BODY ? -1 : 0;
		if (apply)
			memmove(p + o, p + i, sz);
		o += sz;
		i += sz + 2;
	}
}

const char *lb_header(const lb_request *r, const char *name)
{
	return json_string_value(json_object_get(r->headers, name));
}

void lb_request_free(lb_request *r)
{
	if (r == NULL)
		return;
	rein_free(r->path);
	json_decref(r->headers);
	rein_free(r->body);
	rein_free(r);
}

/* ---- connections and writes -------------------------------------------- */

static void on_conn_closed(uv_handle_t *h)
{
	lb_conn *c = h->data;
	rein_buf_free(&c->in);
	rein_free(c);
}

void lb_close(lb_conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	if (srv->closing != NULL)
		srv->closing(c);
	uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void on_write(uv_write_t *w, int status)
{
	wreq *r = (wreq *)w;
	lb_conn *c = r->c;
	int flags = r->flags;
	rein_free(r->data);
	rein_free(r);
	if (c->closing)
		return;
	if (status < 0 || (flags & LB_CLOSE)) {
		lb_close(c);
		return;
	}
	if ((flags & LB_MORE) && srv->more != NULL)
		srv->more(c);
}

void lb_send(lb_conn *c, char *data, size_t len, int flags)
{
	if (c->closing) {
		rein_free(data);
		return;
	}
	wreq *r = rein_calloc(1, sizeof *r);
	if (r == NULL) {
		rein_free(data);
		lb_close(c);
		return;
	}
	r->data = data;
	r->c = c;
	r->flags = flags;
	uv_buf_t b = uv_buf_init(data, (unsigned)len);
	if (uv_write(&r->w, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
		rein_free(data);
		rein_free(r);
		lb_close(c);
	}
}

void lb_send_text(lb_conn *c, const char *text, int flags)
{
	char *d = rein_strdup(text);
	if (d)
		lb_send(c, d, strlen(d), flags);
}

void lb_respond(lb_conn *c, int status, const char *extra, const char *body, size_t len)
{
	rein_buf b = {0};
	rein_buf_printf(&b,
			"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
			"Content-Length: %zu\r\n%sConnection: %s\r\n\r\n",
			status, lb_reason(status), len, extra ? extra : "",
			c->close_after ? "close" : "keep-alive");
	rein_buf_append(&b, body, len);
	if (b.p == NULL) {
		lb_close(c);
		return;
	}
	lb_send(c, b.p, b.len, c->close_after ? LB_CLOSE : 0);
	c->busy = false;
}

void lb_respond_json(lb_conn *c, int status, const char *extra, json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
	json_decref(j);
	if (s == NULL) {
		lb_close(c);
		return;
	}
	lb_respond(c, status, extra, s, strlen(s));
	free(s);
}

/* ---- parsing ----------------------------------------------------------- */

static void refuse(lb_conn *c, int status, const char *msg)
{
	c->close_after = true;
	srv->refuse(c, status, msg);
}

void lb_next(lb_conn *c)
{
	while (!c->busy && !c->closing && c->in.len > 0) {
		char *p = c->in.p;
		char *hend = memmem(p, c->in.len, "\r\n\r\n", 4);
		if (hend == NULL) {
			if (c->in.len > MAX_HEAD)
				refuse(c, 431, "headers too large");
			return;
		}
		size_t head_len = (size_t)(hend - p) + 4;
		/* request line */
		char *sp1 = memchr(p, ' ', head_len);
		char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(hend - sp1 - 1)) : NULL;
		if (sp1 == NULL || sp2 == NULL || sp1 - p >= 16) {
			refuse(c, 400, "bad request line");
			return;
		}
		json_t *headers = json_object();
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
				char name[256];
				if (nlen < sizeof name) {
					for (size_t i = 0; i < nlen; i++)
						name[i] = (char)tolower((unsigned char)line[i]);
					name[nlen] = '\0';
					json_t *val = json_stringn(v, vlen);
					if (val == NULL) /* not UTF-8: keep it readable */
						val = json_string("?");
					json_object_set_new(headers, name, val);
				}
#define IS(s) (nlen == strlen(s) && strncasecmp(line, s, nlen) == 0)
				if (IS("content-length"))
					clen = strtol(v, NULL, 10);
				else if (IS("transfer-encoding"))
					chunked = vlen >= 7 && strncasecmp(ve - 7, "chunked", 7) == 0;
				else if (IS("expect"))
					expect = vlen == 12 && strncasecmp(v, "100-continue", 12) == 0;
				else if (IS("connection"))
					c->close_after = (vlen == 5 && strncasecmp(v, "close", 5) == 0) ||
							 (http10 && !(vlen == 10 && strncasecmp(v, "keep-alive", 10) == 0));
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
		if (bad) {
			json_decref(headers);
			refuse(c, 413, "bad body");
			return;
		}
		if (!complete) {
			json_decref(headers);
			if (expect && !c->sent_continue) {
				c->sent_continue = true;
				lb_send_text(c, "HTTP/1.1 100 Continue\r\n\r\n", 0);
			}
			return;
		}
		lb_request *r = rein_calloc(1, sizeof *r);
		if (r != NULL) {
			memcpy(r->method, p, (size_t)(sp1 - p));
			r->path = rein_strndup(sp1 + 1, (size_t)(sp2 - sp1 - 1));
			r->body = rein_strndup(p + head_len, body_len);
			r->body_len = body_len;
			r->headers = headers;
		} else {
			json_decref(headers);
		}
		if (r == NULL || r->path == NULL || r->body == NULL) {
			lb_request_free(r);
			lb_close(c);
			return;
		}
		/* consume */
		size_t total = head_len + used;
		memmove(c->in.p, c->in.p + total, c->in.len - total);
		c->in.len -= total;
		c->sent_continue = false;
		c->busy = true;
		char *q = strchr(r->path, '?');
		if (q)
			*q = '\0';
		url_decode(r->path);
		srv->request(c, r);
	}
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	*buf = uv_buf_init(readbuf, sizeof readbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	lb_conn *c = s->data;
	if (nread < 0) {
		lb_close(c);
		return;
	}
	if (nread == 0 || c->closing)
		return;
	if (c->in.len + (size_t)nread > MAX_HEAD + MAX_BODY + 1024 ||
	    rein_buf_append(&c->in, buf->base, (size_t)nread) != REIN_OK) {
		lb_close(c);
		return;
	}
	lb_next(c);
}

static void on_connection(uv_stream_t *server, int status)
{
	if (status < 0)
		return;
	lb_conn *c = rein_calloc(1, srv->conn_size);
	if (c == NULL)
		return;
	uv_tcp_init(server->loop, &c->tcp);
	c->tcp.data = c;
	if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
		uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* ---- the process ------------------------------------------------------- */

static void on_exit_timer(uv_timer_t *t)
{
	fflush(NULL);
	_exit(0);
}

void lb_shutdown(lb_conn *c)
{
	lb_respond(c, 200, NULL, "{\"ok\":true}", 11);
	static uv_timer_t t;
	static bool armed;
	if (!armed) {
		armed = true;
		uv_timer_init(uv_default_loop(), &t);
		uv_timer_start(&t, on_exit_timer, 50, 0);
	}
}

bool lb_option(lb_opts *o, int argc, char **argv, int *i)
{
	const char *a = argv[*i];
	if (*i + 1 >= argc)
		return false;
	if (strcmp(a, "--port") == 0)
		o->port = atoi(argv[++*i]);
	else if (strcmp(a, "--port-file") == 0)
		o->port_file = argv[++*i];
	else if (strcmp(a, "--max-seconds") == 0)
		o->max_seconds = atol(argv[++*i]);
	else
		return false;
	return true;
}

/* Writes the port through a rename, so a reader never sees half of it. */
static int write_port_file(const char *path, int port)
{
	char tmp[4096];
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (f == NULL || fprintf(f, "%d\n", port) < 0 || fclose(f) != 0 ||
	    rename(tmp, path) != 0)
		return -1;
	return 0;
}

int lb_serve(const lb_server *s, const lb_opts *o)
{
	assert(s->conn_size >= sizeof(lb_conn) && s->request && s->refuse);
	srv = s;
	signal(SIGPIPE, SIG_IGN);
	uv_loop_t *loop = uv_default_loop();
	static uv_tcp_t server;
	struct sockaddr_in addr;
	int port = o->port;
	uv_ip4_addr("127.0.0.1", port, &addr);
	uv_tcp_init(loop, &server);
	int rc = uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&server, s->backlog, on_connection);
	if (rc != 0) {
		fprintf(stderr, "%s: listen on port %d: %s\n", s->name, port, uv_strerror(rc));
		return 1;
	}
	struct sockaddr_storage ss;
	int sl = sizeof ss;
	uv_tcp_getsockname(&server, (struct sockaddr *)&ss, &sl);
	port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (o->port_file != NULL && write_port_file(o->port_file, port) != 0) {
		fprintf(stderr, "%s: cannot write %s: %s\n", s->name, o->port_file,
			strerror(errno));
		return 1;
	}
	fprintf(stderr, "%s: listening on 127.0.0.1:%d\n", s->name, port);

	static uv_timer_t stop;
	uv_timer_init(loop, &stop);
	uv_timer_start(&stop, on_exit_timer, (uint64_t)o->max_seconds * 1000, 0);
	uv_unref((uv_handle_t *)&stop);
	uv_run(loop, UV_RUN_DEFAULT);
	return 0;
}
