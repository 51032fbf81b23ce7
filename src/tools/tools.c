/*
 * One attempt of a tool call under its contract, breakers and the last-good
 * cache. See tools.h.
 */
#include "tools.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "schema.h"

enum { BR_CLOSED = 0, BR_OPEN, BR_HALF_OPEN };

typedef struct breaker {
	char *key; /* workflow name / tool name */
	int state;
	int64_t *fails; /* timestamps of recent transient failures */
	size_t nfails, cap;
	int64_t opened_at;
	bool probing;
	json_t *cached;
} breaker;

struct rein_tools {
	rein_io *io;
	const rein_clock *clock;
	breaker *br;
	size_t nbr, brcap;
	size_t inflight;
};

typedef struct attempt {
	rein_tools *tx;
	const rein_tool *tool;
	size_t br; /* index into tx->br */
	rein_tool_cb cb;
	void *ud;
	char *secrets[16]; /* resolved values, for redaction; freed after */
	size_t nsecrets;
	bool probe;
	json_t *breaker; /* transitions decided before the call went out */
} attempt;

int rein_tools_new(rein_io *io, const rein_clock *clock, rein_tools **out, rein_err *err)
{
	rein_tools *tx = rein_calloc(1, sizeof *tx);
	if (tx == NULL)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	tx->io = io;
	tx->clock = clock ? clock : &rein_clock_system;
	*out = tx;
	return REIN_OK;
}

void rein_tools_free(rein_tools *tx)
{
	if (tx == NULL)
		return;
	for (size_t i = 0; i < tx->nbr; i++) {
		rein_free(tx->br[i].key);
		rein_free(tx->br[i].fails);
		json_decref(tx->br[i].cached);
	}
	rein_free(tx->br);
	rein_free(tx);
}

size_t rein_tools_inflight(const rein_tools *tx) { return tx->inflight; }

static int breaker_for(rein_tools *tx, const rein_spec *spec, const rein_tool *tool, size_t *out)
{
	char key[512];
	snprintf(key, sizeof key, "%s/%s", spec->name ? spec->name : "", tool->name);
	for (size_t i = 0; i < tx->nbr; i++)
		if (strcmp(tx->br[i].key, key) == 0) {
			*out = i;
			return REIN_OK;
		}
	if (tx->nbr == tx->brcap) {
		size_t cap = tx->brcap ? tx->brcap * 2 : 8;
		breaker *v = rein_realloc(tx->br, cap * sizeof *v);
		if (v == NULL)
			return REIN_ENOMEM;
		tx->br = v;
		tx->brcap = cap;
	}
	breaker *b = &tx->br[tx->nbr];
	memset(b, 0, sizeof *b);
	if ((b->key = rein_strdup(key)) == NULL)
		return REIN_ENOMEM;
	*out = tx->nbr++;
	return REIN_OK;
}

const json_t *rein_tools_cached(rein_tools *tx, const rein_spec *spec, int tool)
{
	size_t i;
	if (breaker_for(tx, spec, &spec->tools[tool], &i) != REIN_OK)
		return NULL;
	return tx->br[i].cached;
}

static void breaker_event(rein_tool_outcome *o, const char *type, json_t *data)
{
	if (o->breaker == NULL)
		o->breaker = json_array();
	if (o->breaker && data)
		json_array_append_new(o->breaker, json_pack("{s:s, s:o}", "type", type, "data", data));
	else
		json_decref(data);
}

/* After an attempt: count it in the tool's breaker. */
static void breaker_record(rein_tools *tx, breaker *b, const rein_tool *tool, bool probe,
			   rein_tool_outcome *o)
{
	int64_t now = rein_clock_now(tx->clock);
	const rein_breaker_policy *p = &tool->breaker;
	if (probe)
		b->probing = false;
	if (o->ok) {
		b->nfails = 0;
		if (b->state != BR_CLOSED) {
			b->state = BR_CLOSED;
			breaker_event(o, "breaker.closed",
				      json_pack("{s:s, s:s}", "tool", tool->name, "reason", "probe succeeded"));
		}
		return;
	}
	if (!o->transient)
		return; /* the caller's mistake, not the tool's health */
	if (b->state == BR_HALF_OPEN || (probe && b->state != BR_OPEN)) {
		b->state = BR_OPEN;
		b->opened_at = now;
		breaker_event(o, "breaker.opened",
			      json_pack("{s:s, s:s}", "tool", tool->name, "reason", "probe failed"));
		return;
	}
	size_t keep = 0;
	for (size_t i = 0; i < b->nfails; i++)
		if (now - b->fails[i] < p->window_ms)
			b->fails[keep++] = b->fails[i];
	b->nfails = keep;
	if (b->nfails == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 8;
		int64_t *v = rein_realloc(b->fails, cap * sizeof *v);
		if (v == NULL)
			return;
		b->fails = v;
		b->cap = cap;
	}
	b->fails[b->nfails++] = now;
	if (b->state == BR_CLOSED && (int)b->nfails >= p->failures) {
		b->state = BR_OPEN;
		b->opened_at = now;
		breaker_event(o, "breaker.opened",
			      json_pack("{s:s, s:i, s:I}", "tool", tool->name, "failures",
					(int)b->nfails, "window_ms", (json_int_t)p->window_ms));
	}
}

/* Replaces each resolved secret value in text by [secret]. */
static void redact(const attempt *at, char *text)
{
	for (size_t i = 0; i < at->nsecrets; i++) {
		const char *v = at->secrets[i];
		size_t n = strlen(v);
		if (n < 4)
			continue;
		for (char *p = strstr(text, v); p; p = strstr(p, v)) {
			static const char mask[] = "[secret]";
			size_t m = sizeof mask - 1;
			memmove(p + m, p + n, strlen(p + n) + 1);
			memcpy(p, mask, m);
			p += m;
		}
	}
}

static void finish(attempt *at, rein_tool_outcome *o)
{
	rein_tools *tx = at->tx;
	breaker *b = &tx->br[at->br];
	if (!o->ok)
		redact(at, o->error);
	else {
		json_decref(b->cached);
		b->cached = json_incref(o->result);
	}
	breaker_record(tx, b, at->tool, at->probe, o);
	at->cb(at->ud, o);
	json_decref(o->result);
	json_decref(o->breaker);
	for (size_t i = 0; i < at->nsecrets; i++)
		rein_free(at->secrets[i]);
	rein_free(at);
}

static void fail(rein_tool_outcome *o, const char *code, bool transient, bool ambiguous,
		 const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void fail(rein_tool_outcome *o, const char *code, bool transient, bool ambiguous,
		 const char *fmt, ...)
{
	o->ok = false;
	o->outcome = code;
	o->transient = transient;
	o->ambiguous = ambiguous;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(o->error, sizeof o->error, fmt, ap);
	va_end(ap);
}

/* A printable excerpt of raw bytes, kept as evidence. */
static void excerpt(const char *p, size_t n, char *out, size_t outlen)
{
	size_t j = 0;
	for (size_t i = 0; i < n && j + 5 < outlen; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c >= 32 && c < 127 && c != '\\')
			out[j++] = (char)c;
		else
			j += (size_t)snprintf(out + j, outlen - j, "\\x%02x", c);
	}
	if (n > 0 && j + 5 >= outlen)
		snprintf(out + (outlen > 4 ? outlen - 4 : 0), 4, "...");
	out[j < outlen ? j : outlen - 1] = '\0';
}

static void http_done(void *ud, const rein_http_resp *resp)
{
	attempt *at = ud;
	const rein_tool *tool = at->tool;
	rein_tool_outcome o = {.retry_after_ms = -1, .latency_ms = resp->elapsed_ms,
			       .breaker = at->breaker};
	at->tx->inflight--;
	char ex[300];
	switch (resp->error) {
	case REIN_HTTP_OK:
		break;
	case REIN_HTTP_CONNECT:
		fail(&o, "connect", true, false, "cannot connect: %s", resp->errmsg);
		goto out;
	case REIN_HTTP_TIMEOUT:
		fail(&o, "timeout", true, true, "no complete answer within %lld ms: %s",
		     (long long)tool->timeout_ms, resp->errmsg);
		goto out;
	case REIN_HTTP_TOO_LARGE:
		fail(&o, "too_large", false, false, "response larger than the cap of %zu KiB",
		     tool->max_response_bytes / 1024);
		goto out;
	case REIN_HTTP_CANCELLED:
		fail(&o, "cancelled", true, true, "the call was cancelled");
		goto out;
	default:
		fail(&o, "protocol", true, true, "broken HTTP exchange: %s", resp->errmsg);
		goto out;
	}
	o.status = resp->status;
	o.retry_after_ms = resp->retry_after_ms;
	if (resp->status < 200 || resp->status > 299) {
		excerpt(resp->body, resp->body_len < 200 ? resp->body_len : 200, ex, sizeof ex);
		bool transient = resp->status == 429 || resp->status == 500 || resp->status == 502 ||
				 resp->status == 503 || resp->status == 504;
		/* 429 and 503 say the request was not processed; 500/502/504 do not */
		bool ambiguous = transient && resp->status != 429 && resp->status != 503;
		const char *code = resp->status == 429   ? "http_429"
				   : resp->status >= 500 ? "http_5xx"
							 : "http_4xx";
		fail(&o, code, transient, ambiguous, "HTTP %ld: %s", resp->status, ex);
		goto out;
	}
	json_error_t je;
	json_t *body = resp->body_len == 0
			       ? json_null()
			       : json_loadb(resp->body, resp->body_len, JSON_DECODE_ANY, &je);
	if (body == NULL) {
		excerpt(resp->body, resp->body_len < 200 ? resp->body_len : 200, ex, sizeof ex);
		fail(&o, "malformed", false, false, "response is not JSON (%s at line %d col %d); it began: %s",
		     je.text, je.line, je.column, ex);
		goto out;
	}
	if (tool->output) {
		rein_schema_errors errs = {0};
		if (!rein_schema_validate(tool->output, body, &errs)) {
			char *detail = rein_schema_errors_format(&errs);
			fail(&o, "schema", false, false, "response does not match the output schema: %s",
			     detail ? detail : "?");
			rein_free(detail);
			rein_schema_errors_free(&errs);
			json_decref(body);
			goto out;
		}
	}
	o.ok = true;
	o.result = body;
out:
	finish(at, &o);
}

/* Looks a secret up; returns a new string or NULL with why. */
static char *secret_value(const rein_secret_ref *s, char *why, size_t wlen)
{
	if (s->env) {
		const char *v = getenv(s->env);
		if (v == NULL || *v == '\0') {
			snprintf(why, wlen, "secret '%s' is not set (environment variable %s)", s->name,
				 s->env);
			return NULL;
		}
		return rein_strdup(v);
	}
	char *text = NULL;
	size_t len = 0;
	rein_err e = {0};
	if (rein_file_read(s->file, &text, &len, &e) != REIN_OK) {
		snprintf(why, wlen, "secret '%s' cannot be read from %s", s->name, s->file);
		return NULL;
	}
	while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
		text[--len] = '\0';
	return text;
}

/*
 * Expands ${env.X}, ${secret.X} and ${args.X} in tmpl. url_encode escapes
 * argument values (for URLs). Returns a new string or NULL with why.
 */
static char *expand(attempt *at, const rein_tool *tool, const char *tmpl, const json_t *args,
		    bool url_encode, char *why, size_t wlen)
{
	rein_buf b = {0};
	const char *p = tmpl;
	while (*p) {
		const char *open = strstr(p, "${");
		if (open == NULL) {
			rein_buf_puts(&b, p);
			break;
		}
		rein_buf_append(&b, p, (size_t)(open - p));
		const char *close = strchr(open, '}');
		if (close == NULL) {
			rein_buf_puts(&b, open);
			break;
		}
		char name[128];
		snprintf(name, sizeof name, "%.*s", (int)(close - open - 2), open + 2);
		char *val = NULL;
		if (strncmp(name, "env.", 4) == 0) {
			const char *v = getenv(name + 4);
			if (v == NULL) {
				snprintf(why, wlen, "environment variable %s is not set", name + 4);
				goto fail;
			}
			val = rein_strdup(v);
		} else if (strncmp(name, "secret.", 7) == 0) {
			for (size_t i = 0; i < tool->nsecrets; i++)
				if (strcmp(tool->secrets[i].name, name + 7) == 0)
					val = secret_value(&tool->secrets[i], why, wlen);
			if (val == NULL)
				goto fail;
			if (at->nsecrets < 16)
				at->secrets[at->nsecrets++] = rein_strdup(val);
		} else if (strncmp(name, "args.", 5) == 0) {
			const json_t *a = json_object_get(args, name + 5);
			val = a == NULL ? rein_strdup("")
			      : json_is_string(a) ? rein_strdup(json_string_value(a))
						  : rein_json_dump(a);
		} else {
			snprintf(why, wlen, "unknown reference ${%s} (use env., secret. or args.)", name);
			goto fail;
		}
		if (val == NULL) {
			snprintf(why, wlen, "out of memory");
			goto fail;
		}
		if (url_encode && strncmp(name, "args.", 5) == 0) {
			char *esc = curl_easy_escape(NULL, val, 0);
			rein_buf_puts(&b, esc ? esc : "");
			curl_free(esc);
		} else {
			rein_buf_puts(&b, val);
		}
		rein_free(val);
		p = close + 1;
	}
	if (b.p == NULL && rein_buf_puts(&b, "") != REIN_OK)
		goto fail;
	return b.p;
fail:
	rein_buf_free(&b);
	return NULL;
}

int rein_tools_call(rein_tools *tx, const rein_spec *spec, int ti, const char *key,
		    const json_t *args, rein_tool_cb cb, void *ud, rein_err *err)
{
	const rein_tool *tool = &spec->tools[ti];
	attempt *at = rein_calloc(1, sizeof *at);
	rein_tool_outcome o = {.retry_after_ms = -1};
	char *url = NULL, *body = NULL, *hv[32] = {0};
	json_t *sent = NULL;
	rein_http_header hdrs[40];
	size_t nh = 0;
	char why[512] = "";
	int rc = REIN_OK;
	if (at == NULL)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	at->tx = tx;
	at->tool = tool;
	at->cb = cb;
	at->ud = ud;
	if ((rc = breaker_for(tx, spec, tool, &at->br)) != REIN_OK) {
		rein_free(at);
		return rein_err_set(err, rc, "out of memory");
	}
	breaker *b = &tx->br[at->br];
	int64_t now = rein_clock_now(tx->clock);
	if (b->state == BR_OPEN && now - b->opened_at >= tool->breaker.cooldown_ms) {
		b->state = BR_HALF_OPEN;
		breaker_event(&o, "breaker.half_open", json_pack("{s:s}", "tool", tool->name));
		b->probing = false;
	}
	if (b->state == BR_OPEN || (b->state == BR_HALF_OPEN && b->probing)) {
		fail(&o, "breaker_open", false, false, "circuit breaker for '%s' is open", tool->name);
		goto now_done;
	}
	if (b->state == BR_HALF_OPEN) {
		b->probing = true;
		at->probe = true;
	}
	if (tool->kind != REIN_TOOL_HTTP) {
		fail(&o, "unsupported", false, false, "tool kind not executable here");
		goto now_done;
	}
	sent = json_deep_copy(args);
	if (sent == NULL) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto now_done;
	}
	if (tool->idem == REIN_IDEM_ARG)
		json_object_set_new(sent, tool->idem_name, json_string(key));
	if ((url = expand(at, tool, tool->url, sent, true, why, sizeof why)) == NULL) {
		fail(&o, "config", false, false, "url: %s", why);
		goto now_done;
	}
	hdrs[nh++] = (rein_http_header){"Content-Type", "application/json"};
	hdrs[nh++] = (rein_http_header){"Accept", "application/json"};
	if (tool->idem == REIN_IDEM_HEADER)
		hdrs[nh++] = (rein_http_header){tool->idem_name, key};
	for (size_t i = 0; i < tool->nheaders && i < 32; i++) {
		if ((hv[i] = expand(at, tool, tool->headers[i].value, sent, false, why, sizeof why)) ==
		    NULL) {
			fail(&o, "config", false, false, "header %s: %s", tool->headers[i].key, why);
			goto now_done;
		}
		hdrs[nh++] = (rein_http_header){tool->headers[i].key, hv[i]};
	}
	bool has_body = strcmp(tool->method, "GET") != 0 && strcmp(tool->method, "DELETE") != 0;
	if (has_body && (body = rein_json_dump(sent)) == NULL) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto now_done;
	}
	rein_http_req req = {
		.method = tool->method,
		.url = url,
		.headers = hdrs,
		.nheaders = nh,
		.body = body,
		.body_len = body ? strlen(body) : 0,
		.timeout_ms = tool->timeout_ms,
		.max_response_bytes = tool->max_response_bytes,
	};
	if ((rc = rein_http_start(tx->io, &req, http_done, at, NULL, err)) != REIN_OK)
		goto now_done;
	tx->inflight++;
	at->breaker = o.breaker; /* reported with the outcome */
	at = NULL;               /* http_done owns it now */
	goto out;
now_done:
	/* no call went out: report now (or fail without calling back on ENOMEM) */
	if (rc == REIN_OK && at) {
		finish(at, &o);
		at = NULL;
	} else {
		json_decref(o.breaker);
		if (at && at->probe)
			b->probing = false;
	}
out:
	if (at) {
		for (size_t i = 0; i < at->nsecrets; i++)
			rein_free(at->secrets[i]);
		rein_free(at);
	}
	rein_free(url);
	rein_free(body);
	for (size_t i = 0; i < 32; i++)
		rein_free(hv[i]);
	json_decref(sent);
	return rc;
}
