/*
 * OTLP/HTTP with the JSON encoding (opentelemetry-proto's
 * docs/specification.md): traces encoded as an ExportTraceServiceRequest
 * and POSTed with libcurl, blocking (the backfill of `rein trace export`).
 * Only 429, 502, 503 and 504 are retried, after the collector's Retry-After
 * when it sends one; a partialSuccess is counted, not retried.
 */
#include <assert.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "trace.h"

/* ---- encoding ---------------------------------------------------------------- */

static json_t *any_value(const json_t *v)
{
	char num[32];
	if (json_is_string(v))
		return json_pack("{s:s}", "stringValue", json_string_value(v));
	if (json_is_integer(v)) { /* int64 is a decimal string in OTLP JSON */
		snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v));
		return json_pack("{s:s}", "intValue", num);
	}
	if (json_is_real(v))
		return json_pack("{s:f}", "doubleValue", json_real_value(v));
	if (json_is_boolean(v))
		return json_pack("{s:b}", "boolValue", json_is_true(v));
	if (json_is_array(v)) {
		json_t *vals = json_array();
		size_t i;
		const json_t *x;
		json_array_foreach(v, i, x) {
			json_t *y = vals ? any_value(x) : NULL;
			if (vals != NULL && json_array_append_new(vals, y) != 0) {
				json_decref(vals);
				vals = NULL;
			}
		}
		return vals ? json_pack("{s:{s:o}}", "arrayValue", "values", vals) : NULL;
	}
	/* objects and null: their JSON text */
	char *s = rein_json_dump(v);
	json_t *r = s ? json_pack("{s:s}", "stringValue", s) : NULL;
	rein_free(s);
	return r;
}

static json_t *key_values(const json_t *attrs)
{
	json_t *a = json_array();
	const char *k;
	const json_t *v;
	json_object_foreach((json_t *)attrs, k, v) {
		json_t *kv = a ? json_pack("{s:s, s:o}", "key", k, "value", any_value(v)) : NULL;
		if (a != NULL && json_array_append_new(a, kv) != 0) {
			json_decref(a);
			a = NULL;
		}
	}
	return a;
}

static json_t *nanos(int64_t ms)
{
	char s[32];
	snprintf(s, sizeof s, "%llu", (unsigned long long)ms * 1000000ull);
	return json_string(s);
}

static json_t *encode_span(const rein_trace *t, const rein_span *spans, size_t i)
{
	const rein_span *s = &spans[i];
	char tid[33], sid[17], pid[17];
	rein_hex(rein_trace_id(t), 16, tid);
	rein_hex(s->id, 8, sid);
	json_t *events = json_array();
	size_t k;
	const json_t *e;
	json_array_foreach(s->events, k, e) {
		json_t *x = events == NULL ? NULL : json_pack("{s:o, s:s, s:o}", "timeUnixNano",
				      nanos(json_integer_value(json_object_get(e, "at"))), "name",
				      json_string_value(json_object_get(e, "name")), "attributes",
				      key_values(json_object_get(e, "attrs")));
		if (events != NULL && json_array_append_new(events, x) != 0) {
			json_decref(events);
			events = NULL;
		}
	}
	json_t *status = json_pack("{s:i}", "code", (int)s->status);
	if (status != NULL && s->status_msg != NULL &&
	    json_object_set_new(status, "message", json_string(s->status_msg)) != 0) {
		json_decref(status);
		status = NULL;
	}
	json_t *o = json_pack("{s:s, s:s, s:s, s:i, s:o, s:o, s:o, s:o, s:o}", "traceId", tid,
			      "spanId", sid, "name", s->name, "kind", (int)s->kind,
			      "startTimeUnixNano", nanos(s->start_ms), "endTimeUnixNano",
			      nanos(s->end_ms), "attributes", key_values(s->attrs), "events", events,
			      "status", status);
	if (o != NULL && s->parent >= 0) {
		rein_hex(spans[s->parent].id, 8, pid);
		if (json_object_set_new(o, "parentSpanId", json_string(pid)) != 0) {
			json_decref(o);
			o = NULL;
		}
	}
	return o;
}

int rein_otlp_encode(const rein_trace *const *traces, size_t n, json_t **out, rein_err *err)
{
	assert(traces != NULL || n == 0);
	assert(out != NULL);
	json_t *rs = json_array();
	bool oom = rs == NULL;
	for (size_t i = 0; i < n && !oom; i++) {
		size_t ns;
		const rein_span *spans = rein_trace_spans(traces[i], &ns);
		json_t *arr = json_array();
		for (size_t k = 0; k < ns && arr != NULL; k++)
			if (json_array_append_new(arr, encode_span(traces[i], spans, k)) != 0) {
				json_decref(arr);
				arr = NULL;
			}
		json_t *r = json_pack(
			"{s:{s:[{s:s, s:{s:s}}]}, s:[{s:{s:s}, s:s, s:o}], s:s}", "resource",
			"attributes", "key", "service.name", "value", "stringValue", "rein",
			"scopeSpans", "scope", "name", "rein", "schemaUrl",
			REIN_TRACE_SCHEMA_URL, "spans", arr, "schemaUrl", REIN_TRACE_SCHEMA_URL);
		oom = json_array_append_new(rs, r) != 0;
	}
	json_t *req = oom ? NULL : json_pack("{s:o}", "resourceSpans", rs);
	if (req == NULL) {
		if (!oom) /* json_pack stole rs on failure */
			rs = NULL;
		json_decref(rs);
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	}
	*out = req;
	return REIN_OK;
}

/* ---- configuration ------------------------------------------------------------ */

void rein_otlp_cfg_clear(rein_otlp_cfg *cfg)
{
	if (cfg == NULL)
		return;
	rein_free(cfg->url);
	for (size_t i = 0; i < cfg->nheaders; i++)
		rein_free(cfg->headers[i]);
	rein_free(cfg->headers);
	memset(cfg, 0, sizeof *cfg);
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
		: c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Trims and percent-decodes s[0..n) into b. */
static int decode(rein_buf *b, const char *s, size_t n)
{
	while (n > 0 && (*s == ' ' || *s == '\t'))
		s++, n--;
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	int rc = REIN_OK;
	for (size_t i = 0; i < n && rc == REIN_OK; i++) {
		char c = s[i];
		if (c == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
			c = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
			i += 2;
		}
		if (c == '\r' || c == '\n')
			return REIN_EINVAL; /* no header injection */
		rc = rein_buf_append(b, &c, 1);
	}
	return rc;
}

int rein_otlp_cfg_env(rein_otlp_cfg *cfg, rein_err *err)
{
	assert(cfg != NULL);
	rein_otlp_cfg c = {.max_attempts = 5, .max_backoff_ms = 30000, .timeout_ms = 10000};
	int rc = REIN_OK;
	rein_buf b = {0};
	const char *te = getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
	const char *be = getenv("OTEL_EXPORTER_OTLP_ENDPOINT");
	if (te && *te) {
		c.url = rein_strdup(te);
	} else {
		const char *base = be && *be ? be : "http://localhost:4318";
		size_t n = strlen(base);
		c.url = rein_sprintf("%.*s/v1/traces", (int)(n > 0 && base[n - 1] == '/' ? n - 1 : n),
				     base);
	}
	if (c.url == NULL) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	const char *h = getenv("OTEL_EXPORTER_OTLP_HEADERS");
	while (h && *h) {
		const char *end = strchr(h, ',');
		size_t len = end ? (size_t)(end - h) : strlen(h);
		const char *eq = memchr(h, '=', len);
		if (eq == NULL || eq == h) {
			rc = rein_err_set(err, REIN_EINVAL,
					  "OTEL_EXPORTER_OTLP_HEADERS: '%.*s' is not key=value",
					  (int)len, h);
			goto out;
		}
		b.len = 0;
		int r = decode(&b, h, (size_t)(eq - h));
		r = r == REIN_OK ? rein_buf_puts(&b, ": ") : r;
		r = r == REIN_OK ? decode(&b, eq + 1, len - (size_t)(eq - h) - 1) : r;
		char **hs = r == REIN_OK ? rein_realloc(c.headers, (c.nheaders + 1) * sizeof *hs) : NULL;
		if (hs != NULL)
			c.headers = hs;
		char *line = hs ? rein_strdup(b.p) : NULL;
		if (line == NULL) {
			rc = rein_err_set(err, r == REIN_EINVAL ? REIN_EINVAL : REIN_ENOMEM, "%s",
					  r == REIN_EINVAL ? "OTEL_EXPORTER_OTLP_HEADERS: a line break in a header"
							   : "out of memory");
			goto out;
		}
		c.headers[c.nheaders++] = line;
		h = end ? end + 1 : NULL;
	}
	*cfg = c;
	c = (rein_otlp_cfg){0};
out:
	rein_buf_free(&b);
	rein_otlp_cfg_clear(&c);
	return rc;
}

/* ---- posting ------------------------------------------------------------------ */

typedef struct reply {
	rein_buf body;
	int64_t retry_after_ms; /* -1: none */
	bool oom;
} reply;

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
	reply *r = ud;
	if (r->body.len + sz * n > (1u << 20)) /* an answer this long is not OTLP's */
		return 0;
	if (rein_buf_append(&r->body, p, sz * n) != REIN_OK) {
		r->oom = true;
		return 0;
	}
	return sz * n;
}

int64_t rein_otlp_retry_after(const char *line, size_t len)
{
	assert(line != NULL || len == 0);
	static const char name[] = "retry-after:";
	const size_t nl = sizeof name - 1;
	int64_t ms = -1;
	if (len <= nl || strncasecmp(line, name, nl) != 0)
		goto out;
	size_t i = nl;
	while (i < len && (line[i] == ' ' || line[i] == '\t'))
		i++;
	if (i >= len || line[i] < '0' || line[i] > '9')
		goto out; /* delay-seconds only; an HTTP-date is not honoured */
	int64_t s = 0;
	for (; i < len && line[i] >= '0' && line[i] <= '9'; i++)
		if ((s = s * 10 + (line[i] - '0')) > REIN_OTLP_RETRY_AFTER_MAX_S)
			s = REIN_OTLP_RETRY_AFTER_MAX_S; /* saturates: no overflow */
	while (i < len && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r' || line[i] == '\n'))
		i++;
	if (i == len) /* "120abc" is not a delay */
		ms = s * 1000;
out:
	return ms;
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud)
{
	reply *r = ud;
	int64_t ms = rein_otlp_retry_after(p, sz * n);
	if (ms >= 0)
		r->retry_after_ms = ms;
	return sz * n;
}

static void sleep_ms(int64_t ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
	while (nanosleep(&ts, &ts) != 0)
		;
}

int rein_otlp_partial_parse(const char *body, size_t len, long nspans, long *rejected,
			    char **msg)
{
	assert((body != NULL || len == 0) && nspans >= 0 && rejected != NULL && msg != NULL);
	long rej = 0;
	char *m = NULL;
	int rc = REIN_OK;
	json_t *j = len ? rein_json_parse(body, len, NULL) : NULL;
	const json_t *ps = json_object_get(j, "partialSuccess");
	const json_t *rv = json_object_get(ps, "rejectedSpans");
	if (json_is_string(rv)) { /* int64 as a decimal string, the OTLP JSON rule */
		const char *t = json_string_value(rv);
		char *end;
		long long v = strtoll(t, &end, 10);
		if (end != t && *end == '\0' && v > 0)
			rej = v > nspans ? nspans : (long)v;
	} else if (json_is_integer(rv) && json_integer_value(rv) > 0) {
		json_int_t v = json_integer_value(rv);
		rej = v > nspans ? nspans : (long)v;
	}
	const char *t = json_string_value(json_object_get(ps, "errorMessage"));
	if (t != NULL && *t != '\0' && (m = rein_strdup(t)) == NULL)
		rc = REIN_ENOMEM;
	json_decref(j);
	if (rc == REIN_OK) {
		*rejected = rej;
		*msg = m;
	}
	return rc;
}

/* Counts the partialSuccess of a 2xx answer (an empty body is full success). */
static void partial(const reply *r, long nspans, rein_otlp_stats *stats)
{
	long rejected = 0;
	char *msg = NULL;
	if (rein_otlp_partial_parse(r->body.p, r->body.len, nspans, &rejected, &msg) != REIN_OK)
		return; /* out of memory: counted as accepted, nothing to say */
	if (rejected > 0 || msg)
		fprintf(stderr, "rein: the collector rejected %ld of %ld span(s)%s%s\n", rejected,
			nspans, msg ? ": " : "", msg ? msg : "");
	if (stats) {
		stats->spans_rejected += rejected;
		stats->spans_sent += nspans - rejected;
	}
	rein_free(msg);
}

int rein_otlp_post(const rein_otlp_cfg *cfg, const json_t *body, long nspans,
		   rein_otlp_stats *stats, rein_err *err)
{
	assert(cfg != NULL && cfg->url != NULL && body != NULL && cfg->max_attempts >= 1);
	char *text = rein_json_dump(body);
	struct curl_slist *hl = NULL, *tmp;
	CURL *c = NULL;
	reply r = {.retry_after_ms = -1};
	int rc = REIN_OK;
	if (text == NULL) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	hl = curl_slist_append(NULL, "Content-Type: application/json");
	for (size_t i = 0; hl != NULL && i < cfg->nheaders; i++) {
		if ((tmp = curl_slist_append(hl, cfg->headers[i])) == NULL) {
			curl_slist_free_all(hl);
			hl = NULL;
		} else {
			hl = tmp;
		}
	}
	c = hl ? curl_easy_init() : NULL;
	if (c == NULL) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	curl_easy_setopt(c, CURLOPT_URL, cfg->url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, text);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(text));
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, cfg->timeout_ms);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	int64_t backoff = 200;
	for (int attempt = 1;; attempt++) {
		r.body.len = 0;
		r.retry_after_ms = -1;
		long status = 0;
		CURLcode cc = curl_easy_perform(c);
		if (stats)
			stats->requests++;
		if (r.oom) {
			rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
			goto out;
		}
		if (cc != CURLE_OK) { /* unreachable: not one of the retryable answers */
			rc = rein_err_set(err, REIN_EIO, "OTLP export to %s: %s", cfg->url,
					  curl_easy_strerror(cc));
			goto out;
		}
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
		if (status >= 200 && status < 300) {
			partial(&r, nspans, stats);
			goto out;
		}
		bool retryable = status == 429 || status == 502 || status == 503 || status == 504;
		if (!retryable || attempt >= cfg->max_attempts) {
			rc = rein_err_set(err, REIN_EIO, "OTLP export to %s: HTTP %ld%s", cfg->url,
					  status, retryable ? " (attempts spent)" : "");
			goto out;
		}
		int64_t wait = r.retry_after_ms >= 0 ? r.retry_after_ms : backoff;
		sleep_ms(wait < cfg->max_backoff_ms ? wait : cfg->max_backoff_ms);
		backoff *= 2;
		if (stats)
			stats->retries++;
	}
out:
	curl_easy_cleanup(c);
	curl_slist_free_all(hl);
	rein_buf_free(&r.body);
	rein_free(text);
	return rc;
}
