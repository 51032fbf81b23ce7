/*
 * One HTTP call: a curl easy handle configured from a rein_http_req, its
 * response captured (body up to a cap, headers with lowercased names), and
 * exactly one completion that says how the call ended. The io layer reports
 * and decides nothing: no retries, no redirects, no body parsing.
 */
#include "io_int.h"

#include <assert.h>
#include <ctype.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_CONNECT_TIMEOUT_MS 10000
#define DEFAULT_MAX_RESPONSE (10u * 1024 * 1024)

struct rein_http_call {
	rein_io *io;
	io_lane *lane; /* the multi handle it was added to */
	CURL *easy;    /* NULL once cancelled */
	struct curl_slist *req_headers;
	rein_http_cb cb;
	void *ud;
	uint64_t start_ns;
	size_t max_bytes;
	rein_buf body;
	rein_http_header *headers; /* each name points at "name\0value\0" */
	size_t nheaders, headers_cap;
	size_t header_bytes;
	bool too_large, oom, cancelled;
	bool finishing; /* its callback is running: cancel is a no-op */
	char errbuf[CURL_ERROR_SIZE];
	rein_http_call *prev, *next; /* io->calls, or io->deferred (next only) */
};

const char *rein_http_error_name(int error)
{
	switch (error) {
	case REIN_HTTP_OK: return "ok";
	case REIN_HTTP_CONNECT: return "connect";
	case REIN_HTTP_TIMEOUT: return "timeout";
	case REIN_HTTP_TOO_LARGE: return "too_large";
	case REIN_HTTP_PROTOCOL: return "protocol";
	case REIN_HTTP_CANCELLED: return "cancelled";
	case REIN_HTTP_OTHER: return "other";
	}
	return "unknown";
}

/* ---- response capture -------------------------------------------------- */

static void headers_clear(rein_http_call *c)
{
	for (size_t i = 0; i < c->nheaders; i++)
		rein_free((char *)c->headers[i].name);
	c->nheaders = 0;
}

static size_t on_body(char *data, size_t size, size_t n, void *ud)
{
	rein_http_call *c = ud;
	size_t len = size * n;
	if (c->body.len + len > c->max_bytes) {
		c->too_large = true;
		return 0; /* CURLE_WRITE_ERROR */
	}
	if (rein_buf_append(&c->body, data, len) != REIN_OK) {
		c->oom = true;
		return 0;
	}
	return len;
}

static bool is_lws(char ch) { return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n'; }

/* Curl hands over one header line at a time, status lines included. */
static size_t on_header(char *line, size_t size, size_t n, void *ud)
{
	rein_http_call *c = ud;
	size_t len = size * n;
	c->header_bytes += len;
	if (c->header_bytes > c->max_bytes) {
		c->too_large = true;
		return 0;
	}
	if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) {
		headers_clear(c); /* a new response (after 1xx): forget the last one */
		return len;
	}
	const char *colon = memchr(line, ':', len);
	if (colon == NULL)
		return len; /* the blank line that ends the headers, or junk */
	size_t nlen = (size_t)(colon - line);
	while (nlen > 0 && is_lws(line[nlen - 1]))
		nlen--;
	const char *v = colon + 1, *end = line + len;
	while (v < end && is_lws(*v))
		v++;
	while (end > v && is_lws(end[-1]))
		end--;
	size_t vlen = (size_t)(end - v);
	if (c->nheaders == c->headers_cap) {
		size_t cap = c->headers_cap ? 2 * c->headers_cap : 16;
		rein_http_header *h = rein_realloc(c->headers, cap * sizeof *h);
		if (h == NULL) {
			c->oom = true;
			return 0;
		}
		c->headers = h;
		c->headers_cap = cap;
	}
	char *s = rein_malloc(nlen + vlen + 2);
	if (s == NULL) {
		c->oom = true;
		return 0;
	}
	for (size_t i = 0; i < nlen; i++)
		s[i] = (char)tolower((unsigned char)line[i]);
	s[nlen] = '\0';
	memcpy(s + nlen + 1, v, vlen);
	s[nlen + 1 + vlen] = '\0';
	c->headers[c->nheaders].name = s;
	c->headers[c->nheaders].value = s + nlen + 1;
	c->nheaders++;
	return len;
}

/* Retry-After is delta-seconds or an HTTP-date; returns ms from now, -1 if unusable. */
static int64_t retry_after_ms(const char *v, int64_t now_ms)
{
	while (*v == ' ' || *v == '\t')
		v++;
	if (*v == '\0')
		return -1;
	if (isdigit((unsigned char)*v)) {
		int64_t secs = 0;
		const char *p = v;
		for (; isdigit((unsigned char)*p); p++) {
			if (secs < 1000000000)
				secs = secs * 10 + (*p - '0');
		}
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '\0')
			return secs * 1000;
	}
	time_t t = curl_getdate(v, NULL);
	if (t == (time_t)-1)
		return -1;
	int64_t ms = (int64_t)t * 1000 - now_ms;
	return ms > 0 ? ms : 0;
}

/* ---- completion -------------------------------------------------------- */

static int classify(const rein_http_call *c, CURLcode rc)
{
	switch (rc) {
	case CURLE_OK:
		return REIN_HTTP_OK;
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
		return REIN_HTTP_CONNECT;
	case CURLE_OPERATION_TIMEDOUT:
		return REIN_HTTP_TIMEOUT;
	case CURLE_WRITE_ERROR:
		return c->too_large ? REIN_HTTP_TOO_LARGE : REIN_HTTP_OTHER;
	case CURLE_FILESIZE_EXCEEDED:
		return REIN_HTTP_TOO_LARGE;
	case CURLE_PARTIAL_FILE:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_WEIRD_SERVER_REPLY:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_HTTP3:
	case CURLE_BAD_CONTENT_ENCODING:
	/* the scheme was checked at start: at run time this means an HTTP/0.9
	 * reply, i.e. the server did not answer with a status line */
	case CURLE_UNSUPPORTED_PROTOCOL:
		return REIN_HTTP_PROTOCOL;
	default:
		return REIN_HTTP_OTHER;
	}
}

static void call_free(rein_http_call *c)
{
	if (c == NULL)
		return;
	if (c->easy)
		curl_easy_cleanup(c->easy);
	curl_slist_free_all(c->req_headers);
	headers_clear(c);
	rein_free(c->headers);
	rein_buf_free(&c->body);
	rein_free(c);
}

static void calls_unlink(rein_io *io, rein_http_call *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		io->calls = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
}

/* Runs the callback once and frees the call. */
static void call_finish(rein_http_call *c, int error, const char *msg)
{
	rein_io *io = c->io;
	rein_http_resp r = {
		.error = error,
		.status = 0,
		.body = "",
		.retry_after_ms = -1,
		.elapsed_ms = (int64_t)((uv_hrtime() - c->start_ns) / 1000000),
	};
	if (error != REIN_HTTP_OK && msg != NULL)
		snprintf(r.errmsg, sizeof r.errmsg, "%s", msg);
	curl_off_t fb = 0;
	r.first_byte_ms = curl_easy_getinfo(c->easy, CURLINFO_STARTTRANSFER_TIME_T, &fb) == CURLE_OK && fb > 0
				  ? (int64_t)(fb / 1000)
				  : -1;
	/* a connection cut mid-body keeps what arrived: the caller's evidence */
	if (error == REIN_HTTP_OK || error == REIN_HTTP_PROTOCOL) {
		curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &r.status);
		if (c->body.p != NULL) {
			r.body = c->body.p;
			r.body_len = c->body.len;
		}
	}
	if (!c->cancelled) {
		r.headers = c->headers;
		r.nheaders = c->nheaders;
		int64_t now = rein_clock_now(&rein_clock_system);
		for (size_t i = 0; i < c->nheaders; i++)
			if (strcmp(c->headers[i].name, "retry-after") == 0)
				r.retry_after_ms = retry_after_ms(c->headers[i].value, now);
	}
	assert(io->inflight > 0);
	io->inflight--;
	io_note_callback(io, true);
	c->finishing = true;
	rein_http_cb cb = c->cb;
	void *ud = c->ud;
	cb(ud, &r);
	call_free(c);
}

void io_http_done(io_lane *lane, CURL *easy, CURLcode rc)
{
	rein_io *io = lane->io;
	rein_http_call *c = NULL;
	curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&c);
	assert(c != NULL && c->easy == easy && c->lane == lane);
	curl_multi_remove_handle(lane->multi, easy);
	assert(lane->inflight > 0);
	lane->inflight--;
	calls_unlink(io, c);
	int error = classify(c, rc);
	char msg[sizeof c->errbuf + 64];
	if (c->oom)
		snprintf(msg, sizeof msg, "out of memory");
	else if (error == REIN_HTTP_TOO_LARGE)
		snprintf(msg, sizeof msg, "response larger than %zu bytes", c->max_bytes);
	else
		snprintf(msg, sizeof msg, "%s", c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc));
	if (c->oom)
		error = REIN_HTTP_OTHER;
	call_finish(c, error, msg);
}

void io_http_run_deferred(rein_io *io)
{
	while (io->deferred != NULL) {
		rein_http_call *c = io->deferred;
		io->deferred = c->next;
		if (io->deferred == NULL)
			io->deferred_tail = NULL;
		c->next = NULL;
		call_finish(c, REIN_HTTP_CANCELLED, "cancelled");
	}
}

void rein_http_cancel(rein_http_call *c)
{
	if (c == NULL || c->cancelled || c->finishing)
		return;
	rein_io *io = c->io;
	/* Stop the network side now; the callback runs later from the loop. */
	curl_multi_remove_handle(c->lane->multi, c->easy);
	assert(c->lane->inflight > 0);
	c->lane->inflight--;
	curl_easy_cleanup(c->easy);
	c->easy = NULL;
	c->cancelled = true;
	calls_unlink(io, c);
	if (io->deferred_tail)
		io->deferred_tail->next = c;
	else
		io->deferred = c;
	io->deferred_tail = c;
	io_defer_kick(io);
}

void io_http_cancel_all(rein_io *io)
{
	while (io->calls != NULL)
		rein_http_cancel(io->calls);
	io_http_run_deferred(io);
}

/* ---- start ------------------------------------------------------------- */

static int add_header(rein_http_call *c, const char *name, const char *value)
{
	/* "Name;" is curl's way of sending a header with an empty value. */
	char *line = value[0] ? rein_sprintf("%s: %s", name, value) : rein_sprintf("%s;", name);
	if (line == NULL)
		return REIN_ENOMEM;
	struct curl_slist *l = curl_slist_append(c->req_headers, line);
	rein_free(line);
	if (l == NULL)
		return REIN_ENOMEM;
	c->req_headers = l;
	return REIN_OK;
}

static bool valid_header_text(const char *s)
{
	for (; *s; s++)
		if (*s == '\r' || *s == '\n')
			return false;
	return true;
}

#define SETOPT(opt, val)                                                     \
	do {                                                                 \
		if (curl_easy_setopt(c->easy, opt, val) != CURLE_OK) {       \
			rc = rein_err_set(err, REIN_ENOMEM, "curl option " #opt); \
			goto out;                                            \
		}                                                            \
	} while (0)

int rein_http_start(rein_io *io, const rein_http_req *req, rein_http_cb cb, void *ud,
		    rein_http_call **call, rein_err *err)
{
	assert(io != NULL && req != NULL && cb != NULL);
	int rc = REIN_OK;
	rein_http_call *c = NULL;
	if (io->closing) {
		rc = rein_err_set(err, REIN_EINVAL, "io is being freed");
		goto out;
	}
	if (req->url == NULL ||
	    (strncmp(req->url, "http://", 7) != 0 && strncmp(req->url, "https://", 8) != 0)) {
		rc = rein_err_set(err, REIN_EINVAL, "url must be http:// or https://");
		goto out;
	}
	const char *method = req->method ? req->method : "GET";
	if (method[0] == '\0' || !valid_header_text(method) || strchr(method, ' ')) {
		rc = rein_err_set(err, REIN_EINVAL, "bad method");
		goto out;
	}
	c = rein_calloc(1, sizeof *c);
	if (c == NULL) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	c->io = io;
	c->cb = cb;
	c->ud = ud;
	c->max_bytes = req->max_response_bytes ? req->max_response_bytes : DEFAULT_MAX_RESPONSE;
	c->easy = curl_easy_init();
	if (c->easy == NULL) {
		rc = rein_err_set(err, REIN_ENOMEM, "curl_easy_init failed");
		goto out;
	}
	bool has_expect = false;
	for (size_t i = 0; i < req->nheaders; i++) {
		const rein_http_header *h = &req->headers[i];
		if (h->name == NULL || h->value == NULL || h->name[0] == '\0' ||
		    strchr(h->name, ':') || !valid_header_text(h->name) ||
		    !valid_header_text(h->value)) {
			rc = h->name && h->name[0] && !strchr(h->name, ':') && valid_header_text(h->name) &&
					     h->value
				     ? rein_err_set(err, REIN_EINVAL,
						    "request header %.100s's value contains a CR or LF character",
						    h->name)
				     : rein_err_set(err, REIN_EINVAL, "request header %zu has a bad name", i);
			goto out;
		}
		if (strcasecmp(h->name, "expect") == 0)
			has_expect = true;
		if (add_header(c, h->name, h->value) != REIN_OK) {
			rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
			goto out;
		}
	}
	/* No "Expect: 100-continue" round trip before large bodies. */
	if (!has_expect) {
		struct curl_slist *l = curl_slist_append(c->req_headers, "Expect:");
		if (l == NULL) {
			rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
			goto out;
		}
		c->req_headers = l;
	}
	int64_t timeout = req->timeout_ms > 0 ? req->timeout_ms : DEFAULT_TIMEOUT_MS;
	int64_t ctimeout = req->connect_timeout_ms > 0 ? req->connect_timeout_ms
			   : timeout < DEFAULT_CONNECT_TIMEOUT_MS ? timeout
								  : DEFAULT_CONNECT_TIMEOUT_MS;

	SETOPT(CURLOPT_URL, req->url);
	SETOPT(CURLOPT_PRIVATE, (void *)c);
	SETOPT(CURLOPT_ERRORBUFFER, c->errbuf);
	SETOPT(CURLOPT_NOSIGNAL, 1L);
	SETOPT(CURLOPT_PROXY, "");
	SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
	SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
	SETOPT(CURLOPT_TIMEOUT_MS, (long)timeout);
	SETOPT(CURLOPT_CONNECTTIMEOUT_MS, (long)ctimeout);
	SETOPT(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->max_bytes);
	SETOPT(CURLOPT_WRITEFUNCTION, on_body);
	SETOPT(CURLOPT_WRITEDATA, (void *)c);
	SETOPT(CURLOPT_HEADERFUNCTION, on_header);
	SETOPT(CURLOPT_HEADERDATA, (void *)c);
	SETOPT(CURLOPT_HTTPHEADER, c->req_headers);
	if (req->body != NULL) {
		SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
		SETOPT(CURLOPT_COPYPOSTFIELDS, req->body);
		if (strcmp(method, "POST") != 0)
			SETOPT(CURLOPT_CUSTOMREQUEST, method);
	} else if (strcmp(method, "GET") == 0) {
		SETOPT(CURLOPT_HTTPGET, 1L);
	} else if (strcmp(method, "HEAD") == 0) {
		SETOPT(CURLOPT_NOBODY, 1L);
	} else if (strcmp(method, "POST") == 0) {
		SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
		SETOPT(CURLOPT_COPYPOSTFIELDS, "");
	} else {
		SETOPT(CURLOPT_CUSTOMREQUEST, method);
	}

	/* Adding only arms curl's timer: the transfer starts, and can only end,
	 * from a later turn of the loop. */
	c->lane = io_lane_pick(io);
	if (c->lane == NULL) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	c->start_ns = uv_hrtime();
	CURLMcode mrc = curl_multi_add_handle(c->lane->multi, c->easy);
	if (mrc != CURLM_OK) {
		rc = rein_err_set(err, mrc == CURLM_OUT_OF_MEMORY ? REIN_ENOMEM : REIN_EIO,
				  "curl_multi_add_handle: %s", curl_multi_strerror(mrc));
		goto out;
	}
	c->next = io->calls;
	if (io->calls)
		io->calls->prev = c;
	io->calls = c;
	io->inflight++;
	c->lane->inflight++;
	if (call)
		*call = c;
	c = NULL;
out:
	call_free(c);
	return rc;
}
