/*
 * Providers and calls. A provider is built once from its configuration and
 * holds no secret: the API key is read from its environment variable at each
 * call, kept only for the call (so it can be redacted from what comes back)
 * and never written anywhere. One call is one attempt: it renders the
 * request for the provider's protocol, sends it through io, and classes what
 * came back: an answer, or a failure that is transient (connect, timeout,
 * 408/425/429, 5xx, 529, a cut stream, a server's overload error) or
 * permanent (other 4xx, a body that is not the protocol). The replay
 * provider answers from recorded responses keyed by the request hash.
 */
#include <assert.h>
#include <math.h>
#include <string.h>

#include "model_int.h"

#define DEFAULT_TIMEOUT_MS 120000
#define DEFAULT_MAX_BODY (16u << 20)

typedef struct model_job model_job;

typedef struct model_ops {
	const char *type;
	/* Starts the call; on REIN_OK the job is owned by the call (it delivers and
	 * frees it), otherwise the caller frees it. */
	int (*call)(rein_model_provider *p, rein_io *io, const json_t *req, model_job *job,
		    rein_err *err);
	void (*parse)(const char *body, size_t len, bool stream, const model_shape *shape,
		      model_parsed *out);
} model_ops;

struct rein_model_provider {
	const model_ops *ops;
	char *base_url;
	char *api_key_env;
	char *anthropic_version;
	char *max_tokens_field;
	rein_http_header *headers; /* names and values owned */
	size_t nheaders;
	int64_t timeout_ms, connect_timeout_ms;
	size_t max_response_bytes;
	rein_model_price price;
	bool priced;
	model_wire wire;
	/* replay */
	json_t *recorded; /* object: hash -> response */
	json_t *sequence; /* array of responses, answered in order on a miss */
	size_t next;
	bool on_miss_sequence;
};

/* One call in flight. */
struct model_job {
	rein_model_cb cb;
	void *ud;
	rein_io *io;
	const model_ops *ops;
	rein_model_outcome out;
	char code[32];
	char *key; /* the API key for this call, to redact; freed with the job */
	char *evidence;
	bool stream;
	int64_t first_byte_ms; /* from io, -1: unknown */
	model_shape shape;
	char output_tool[128];
	rein_model_price price;
	uv_timer_t timer; /* deferred delivery (replay, no key) */
};

/* ---- usage and cost ------------------------------------------------------ */

double rein_model_cost(const rein_model_price *price, const rein_model_usage *u)
{
	assert(price != NULL && u != NULL);
	int64_t cached = u->cached > 0 ? u->cached : 0;
	int64_t written = u->cache_write > 0 ? u->cache_write : 0;
	int64_t plain = u->input - cached - written;
	if (plain < 0)
		plain = 0;
	double usd = (double)plain * price->input + (double)cached * price->cached +
		     (double)written * price->cache_write + (double)u->output * price->output;
	return usd / 1e6;
}

void rein_model_usage_from_json(const json_t *usage, rein_model_usage *out)
{
	assert(out != NULL);
	out->input = json_integer_value(json_object_get(usage, "input"));
	out->output = json_integer_value(json_object_get(usage, "output"));
	out->cached = json_integer_value(json_object_get(usage, "cached"));
	out->cache_write = json_integer_value(json_object_get(usage, "cache_write"));
	out->reasoning = json_integer_value(json_object_get(usage, "reasoning"));
}

/* ---- requests ------------------------------------------------------------ */

static bool only_keys(const json_t *o, const char *const *keys, const char **bad)
{
	const char *k;
	const json_t *v;
	json_object_foreach((json_t *)o, k, v) {
		bool known = false;
		for (size_t i = 0; keys[i] != NULL && !known; i++)
			known = strcmp(k, keys[i]) == 0;
		if (!known) {
			*bad = k;
			return false;
		}
	}
	return true;
}

static bool is_str(const json_t *o, const char *key, bool required)
{
	const json_t *v = json_object_get(o, key);
	return v == NULL ? !required : json_is_string(v);
}

static bool good_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-'))
			return false;
	}
	return true;
}

static int check_message(const json_t *m, size_t i, rein_err *err)
{
	static const char *const user_keys[] = {"role", "content", NULL};
	static const char *const asst_keys[] = {"role", "content", "tool_calls", NULL};
	static const char *const tool_keys[] = {"role", "tool_call_id", "content", "is_error",
						NULL};
	static const char *const call_keys[] = {"id", "name", "arguments", "arguments_raw",
						"arguments_error", NULL};
	const char *bad = NULL;
	if (!json_is_object(m))
		return rein_err_set(err, REIN_EINVAL, "messages[%zu] is not an object", i);
	const char *role = json_string_value(json_object_get(m, "role"));
	if (role == NULL)
		return rein_err_set(err, REIN_EINVAL, "messages[%zu] has no role", i);
	if (strcmp(role, "user") == 0) {
		if (!only_keys(m, user_keys, &bad))
			goto unknown;
		if (!is_str(m, "content", true))
			return rein_err_set(err, REIN_EINVAL,
					    "messages[%zu].content must be a string", i);
	} else if (strcmp(role, "assistant") == 0) {
		if (!only_keys(m, asst_keys, &bad))
			goto unknown;
		const json_t *c = json_object_get(m, "content");
		if (c != NULL && !json_is_string(c) && !json_is_null(c))
			return rein_err_set(err, REIN_EINVAL,
					    "messages[%zu].content must be a string or null", i);
		const json_t *calls = json_object_get(m, "tool_calls");
		if (calls != NULL && !json_is_array(calls))
			return rein_err_set(err, REIN_EINVAL,
					    "messages[%zu].tool_calls must be an array", i);
		size_t k;
		const json_t *call;
		json_array_foreach(calls, k, call) {
			if (!json_is_object(call) || !only_keys(call, call_keys, &bad) ||
			    !is_str(call, "id", true) || !is_str(call, "name", true) ||
			    !is_str(call, "arguments_raw", false) ||
			    (json_object_get(call, "arguments") == NULL) ==
				    (json_object_get(call, "arguments_raw") == NULL))
				return rein_err_set(err, REIN_EINVAL,
						    "messages[%zu].tool_calls[%zu] must be {id, name, "
						    "arguments | arguments_raw}",
						    i, k);
		}
	} else if (strcmp(role, "tool") == 0) {
		if (!only_keys(m, tool_keys, &bad))
			goto unknown;
		if (!is_str(m, "tool_call_id", true) || !is_str(m, "content", true))
			return rein_err_set(err, REIN_EINVAL,
					    "messages[%zu] (tool) needs tool_call_id and content "
					    "strings",
					    i);
		const json_t *e = json_object_get(m, "is_error");
		if (e != NULL && !json_is_boolean(e))
			return rein_err_set(err, REIN_EINVAL,
					    "messages[%zu].is_error must be a boolean", i);
	} else {
		return rein_err_set(err, REIN_EINVAL,
				    "messages[%zu].role is '%s' (user, assistant or tool)", i, role);
	}
	return REIN_OK;
unknown:
	return rein_err_set(err, REIN_EINVAL, "messages[%zu] has an unknown member '%s'", i, bad);
}

int rein_model_request_check(const json_t *req, rein_err *err)
{
	static const char *const keys[] = {"model", "system", "messages", "tools",
					   "output_schema", "output_name", "max_tokens",
					   "temperature", "stream", NULL};
	static const char *const tool_keys[] = {"name", "description", "parameters", "strict",
						NULL};
	const char *bad = NULL;
	if (!json_is_object(req))
		return rein_err_set(err, REIN_EINVAL, "the request is not an object");
	if (!only_keys(req, keys, &bad))
		return rein_err_set(err, REIN_EINVAL, "the request has an unknown member '%s'", bad);
	const char *model = json_string_value(json_object_get(req, "model"));
	if (model == NULL || model[0] == '\0')
		return rein_err_set(err, REIN_EINVAL, "the request needs a model name");
	if (!is_str(req, "system", false))
		return rein_err_set(err, REIN_EINVAL, "system must be a string");
	const json_t *msgs = json_object_get(req, "messages");
	if (!json_is_array(msgs) || json_array_size(msgs) == 0)
		return rein_err_set(err, REIN_EINVAL, "messages must be a non-empty array");
	size_t i;
	const json_t *m;
	json_array_foreach(msgs, i, m) {
		int rc = check_message(m, i, err);
		if (rc != REIN_OK)
			return rc;
	}
	const char *oname = json_string_value(json_object_get(req, "output_name"));
	if (!is_str(req, "output_name", false) || (oname != NULL && !good_name(oname)))
		return rein_err_set(err, REIN_EINVAL,
				    "output_name must be 1-64 letters, digits, '_' or '-'");
	const json_t *schema = json_object_get(req, "output_schema");
	if (schema != NULL && !json_is_object(schema))
		return rein_err_set(err, REIN_EINVAL, "output_schema must be an object");
	const json_t *tools = json_object_get(req, "tools");
	if (tools != NULL && !json_is_array(tools))
		return rein_err_set(err, REIN_EINVAL, "tools must be an array");
	const json_t *t;
	json_array_foreach(tools, i, t) {
		const char *name = json_string_value(json_object_get(t, "name"));
		if (!json_is_object(t) || !only_keys(t, tool_keys, &bad) || name == NULL ||
		    !good_name(name) || !is_str(t, "description", false) ||
		    !json_is_object(json_object_get(t, "parameters")) ||
		    (json_object_get(t, "strict") != NULL &&
		     !json_is_boolean(json_object_get(t, "strict"))))
			return rein_err_set(err, REIN_EINVAL,
					    "tools[%zu] must be {name, description?, parameters "
					    "(object), strict?}",
					    i);
		for (size_t k = 0; k < i; k++)
			if (strcmp(name, json_string_value(json_object_get(
						 json_array_get(tools, k), "name"))) == 0)
				return rein_err_set(err, REIN_EINVAL, "tools[%zu]: '%s' twice", i,
						    name);
		if (schema != NULL && strcmp(name, oname ? oname : "final_answer") == 0)
			return rein_err_set(err, REIN_EINVAL,
					    "tools[%zu] is named like the output tool '%s'", i, name);
	}
	const json_t *max = json_object_get(req, "max_tokens");
	if (max != NULL && (!json_is_integer(max) || json_integer_value(max) <= 0))
		return rein_err_set(err, REIN_EINVAL, "max_tokens must be a positive integer");
	const json_t *temp = json_object_get(req, "temperature");
	if (temp != NULL && !json_is_number(temp))
		return rein_err_set(err, REIN_EINVAL, "temperature must be a number");
	const json_t *stream = json_object_get(req, "stream");
	if (stream != NULL && !json_is_boolean(stream))
		return rein_err_set(err, REIN_EINVAL, "stream must be a boolean");
	return REIN_OK;
}

int rein_model_request_hash(const json_t *req, char out[REIN_MODEL_HASH_HEX], rein_err *err)
{
	assert(req != NULL && out != NULL);
	json_t *copy = json_copy((json_t *)req);
	char *text = NULL;
	int rc = REIN_OK;
	if (copy == NULL) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory hashing the request");
		goto out;
	}
	json_object_del(copy, "stream");
	text = rein_json_dump(copy);
	if (text == NULL) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory hashing the request");
		goto out;
	}
	uint8_t h[REIN_HASH_LEN];
	rein_sha256(text, strlen(text), h);
	rein_hex(h, REIN_HASH_LEN, out);
out:
	rein_free(text);
	json_decref(copy);
	return rc;
}

/* ---- jobs ---------------------------------------------------------------- */

static void job_free(model_job *job)
{
	if (job == NULL)
		return;
	json_decref(job->out.response);
	if (job->key != NULL) {
		memset(job->key, 0, strlen(job->key));
		rein_free(job->key);
	}
	rein_free(job->evidence);
	rein_free(job);
}

/* Replaces every occurrence of the key in p[0..n) by [redacted] (in place:
 * the mask is never longer than a key worth keeping secret, else stars). */
static void redact(const char *key, char *p, size_t n)
{
	if (key == NULL || p == NULL)
		return;
	size_t k = strlen(key);
	if (k < 4)
		return;
	static const char mask[] = "[redacted]";
	for (size_t i = 0; i + k <= n;) {
		if (memcmp(p + i, key, k) == 0) {
			for (size_t j = 0; j < k; j++)
				p[i + j] = j < sizeof mask - 1 ? mask[j] : '*';
			i += k;
		} else {
			i++;
		}
	}
}

static void fail(model_job *job, const char *code, bool transient, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void fail(model_job *job, const char *code, bool transient, const char *fmt, ...)
{
	job->out.ok = false;
	snprintf(job->code, sizeof job->code, "%s", code);
	job->out.outcome = job->code;
	job->out.transient = transient;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(job->out.error, sizeof job->out.error, fmt, ap);
	va_end(ap);
}

static void keep_evidence(model_job *job, const char *body, size_t len)
{
	if (body == NULL || len == 0)
		return;
	job->evidence = rein_strndup(body, len);
	if (job->evidence == NULL)
		return;
	redact(job->key, job->evidence, len);
	job->out.evidence = job->evidence;
	job->out.evidence_len = len;
}

/* Finishes an answer: latency and cost. */
static void succeed(model_job *job, json_t *response)
{
	job->out.ok = true;
	job->out.response = response;
	json_object_set_new(response, "latency_ms", json_integer(job->out.latency_ms));
	/* streamed: the first byte is the first event, as near to the first
	 * token as the wire tells */
	if (job->stream && job->first_byte_ms >= 0)
		json_object_set_new(response, "ttft_ms", json_integer(job->first_byte_ms));
	rein_model_usage u;
	rein_model_usage_from_json(json_object_get(response, "usage"), &u);
	json_object_set_new(response, "cost_usd", json_real(rein_model_cost(&job->price, &u)));
}

static void deliver(model_job *job)
{
	redact(job->key, job->out.error, strlen(job->out.error));
	job->cb(job->ud, &job->out);
}

static void on_timer_closed(uv_handle_t *h) { job_free(h->data); }

static void on_timer(uv_timer_t *t)
{
	model_job *job = t->data;
	deliver(job);
	rein_io_wake(job->io);
	uv_close((uv_handle_t *)t, on_timer_closed);
}

/* Delivers the job's outcome from the loop, as soon as it runs. */
static int defer(model_job *job, rein_err *err)
{
	job->timer.data = job;
	int rc = uv_timer_init(rein_io_loop(job->io), &job->timer);
	if (rc == 0)
		rc = uv_timer_start(&job->timer, on_timer, 0, 0);
	if (rc != 0)
		return rein_err_set(err, REIN_EIO, "cannot start a timer: %s", uv_strerror(rc));
	return REIN_OK;
}

/* ---- HTTP providers ------------------------------------------------------- */

static bool transient_status(long status)
{
	return status == 408 || status == 425 || status == 429 || status == 529 ||
	       (status >= 500 && status != 501 && status != 505);
}

static void on_http(void *ud, const rein_http_resp *r)
{
	model_job *job = ud;
	job->out.latency_ms = r->elapsed_ms;
	job->first_byte_ms = r->first_byte_ms;
	job->out.retry_after_ms = r->retry_after_ms;
	job->out.status = r->status;
	if (r->error == REIN_HTTP_PROTOCOL && r->body_len > 0) {
		/* the connection broke mid-body and io kept what came: read it as
		 * a cut answer (a stream short of its end is truncated) */
		model_parsed p;
		job->ops->parse(r->body, r->body_len, job->stream, &job->shape, &p);
		fail(job, "truncated", true, "the connection broke mid-answer: %s (%s)",
		     r->errmsg, p.kind == MODEL_PARSE_TRUNCATED ? p.why : "an incomplete body");
		job->out.response = p.response;
		p.response = NULL;
		model_parsed_free(&p);
		keep_evidence(job, r->body, r->body_len);
		goto out;
	}
	if (r->error != REIN_HTTP_OK) {
		const char *name = rein_http_error_name(r->error);
		switch (r->error) {
		case REIN_HTTP_CONNECT:
			fail(job, "connect", true, "cannot connect: %s", r->errmsg);
			break;
		case REIN_HTTP_TIMEOUT:
			fail(job, "timeout", true, "no complete answer in time: %s", r->errmsg);
			break;
		case REIN_HTTP_PROTOCOL:
			fail(job, "truncated", true,
			     "the connection broke mid-answer (%s): %s",
			     job->stream ? "the stream was cut before its end" : "a cut body",
			     r->errmsg);
			break;
		case REIN_HTTP_TOO_LARGE:
			fail(job, "too_large", false, "the answer is larger than the limit: %s",
			     r->errmsg);
			break;
		case REIN_HTTP_CANCELLED:
			fail(job, "cancelled", false, "the call was cancelled");
			break;
		default:
			fail(job, "other", false, "%s: %s", name, r->errmsg);
			break;
		}
		goto out;
	}
	if (r->status < 200 || r->status > 299) {
		char why[512] = "", type[64] = "", code[32];
		if (!model_error_body(r->body, r->body_len, why, sizeof why, type, sizeof type))
			snprintf(why, sizeof why, "%.200s", r->body_len ? r->body : "(empty body)");
		snprintf(code, sizeof code, "http_%ld", r->status);
		fail(job, code, transient_status(r->status), "HTTP %ld: %s", r->status, why);
		keep_evidence(job, r->body, r->body_len);
		goto out;
	}
	model_parsed p;
	job->ops->parse(r->body, r->body_len, job->stream, &job->shape, &p);
	switch (p.kind) {
	case MODEL_PARSE_OK:
		succeed(job, p.response);
		p.response = NULL;
		break;
	case MODEL_PARSE_TRUNCATED:
		fail(job, "truncated", true, "truncated answer: %s", p.why);
		job->out.response = p.response; /* what arrived before the cut */
		p.response = NULL;
		keep_evidence(job, r->body, r->body_len);
		break;
	case MODEL_PARSE_ERROR:
		fail(job, "stream_error", p.transient, "the server reported an error: %s", p.why);
		keep_evidence(job, r->body, r->body_len);
		break;
	default:
		fail(job, "malformed", false, "malformed answer: %s", p.why);
		keep_evidence(job, r->body, r->body_len);
		break;
	}
	model_parsed_free(&p);
out:
	if (job->out.response != NULL && !job->out.ok)
		json_object_set_new(job->out.response, "latency_ms",
				    json_integer(job->out.latency_ms));
	deliver(job);
	job_free(job);
}

static int http_call(rein_model_provider *p, rein_io *io, const json_t *req, model_job *job,
		     rein_err *err)
{
	bool anthropic = strcmp(p->ops->type, "anthropic") == 0;
	json_t *body = NULL;
	char *text = NULL, *url = NULL, *auth = NULL;
	rein_http_header *h = NULL;
	int rc;
	if (p->api_key_env != NULL) {
		const char *v = getenv(p->api_key_env);
		if (v == NULL || v[0] == '\0') {
			fail(job, "no_api_key", false,
			     "the API key is missing: environment variable %s is not set",
			     p->api_key_env);
			rc = defer(job, err);
			goto out;
		}
		job->key = rein_strdup(v);
		if (job->key == NULL) {
			rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
			goto out;
		}
	}
	rc = anthropic ? model_anthropic_render(req, &p->wire, &body, &job->shape, err)
		       : model_openai_render(req, &p->wire, &body, &job->shape, err);
	if (rc != REIN_OK)
		goto out;
	/* the shape borrows from req, which the job outlives */
	if (job->shape.output_tool != NULL) {
		snprintf(job->output_tool, sizeof job->output_tool, "%s", job->shape.output_tool);
		job->shape.output_tool = job->output_tool;
	}
	text = rein_json_dump(body);
	url = rein_sprintf("%s%s", p->base_url, anthropic ? "/v1/messages" : "/chat/completions");
	h = rein_calloc(p->nheaders + 4, sizeof *h);
	if (text == NULL || url == NULL || h == NULL) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	size_t n = 0;
	h[n++] = (rein_http_header){"Content-Type", "application/json"};
	h[n++] = (rein_http_header){"Accept", job->stream ? "text/event-stream" : "application/json"};
	if (anthropic) {
		h[n++] = (rein_http_header){"anthropic-version", p->anthropic_version};
		if (job->key != NULL)
			h[n++] = (rein_http_header){"x-api-key", job->key};
	} else if (job->key != NULL) {
		auth = rein_sprintf("Bearer %s", job->key);
		if (auth == NULL) {
			rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
			goto out;
		}
		h[n++] = (rein_http_header){"Authorization", auth};
	}
	for (size_t i = 0; i < p->nheaders; i++)
		h[n++] = p->headers[i];
	rein_http_req hr = {.method = "POST",
			    .url = url,
			    .headers = h,
			    .nheaders = n,
			    .body = text,
			    .body_len = strlen(text),
			    .timeout_ms = p->timeout_ms,
			    .connect_timeout_ms = p->connect_timeout_ms,
			    .max_response_bytes = p->max_response_bytes};
	rein_err herr = {0};
	rc = rein_http_start(io, &hr, on_http, job, NULL, &herr);
	if (rc != REIN_OK) {
		redact(job->key, herr.msg, strlen(herr.msg));
		rein_err_set(err, rc, "%s", herr.msg);
	}
out:
	if (auth != NULL) {
		memset(auth, 0, strlen(auth));
		rein_free(auth);
	}
	rein_free(h);
	rein_free(url);
	rein_free(text);
	json_decref(body);
	return rc;
}

/* ---- replay --------------------------------------------------------------- */

static bool all_zero(const rein_model_price *p)
{
	return p->input == 0 && p->output == 0 && p->cached == 0 && p->cache_write == 0;
}

static int replay_call(rein_model_provider *p, rein_io *io, const json_t *req, model_job *job,
		       rein_err *err)
{
	const json_t *rec = json_object_get(p->recorded, job->out.request_hash);
	if (rec == NULL && p->on_miss_sequence && p->next < json_array_size(p->sequence))
		rec = json_array_get(p->sequence, p->next++);
	if (rec == NULL) {
		fail(job, "replay_miss", false, "no recorded response for request %s",
		     job->out.request_hash);
		return defer(job, err);
	}
	const json_t *e = json_object_get(rec, "$error");
	if (json_is_object(e)) { /* a recorded failure, replayed as one */
		const char *code = json_string_value(json_object_get(e, "outcome"));
		const char *msg = json_string_value(json_object_get(e, "error"));
		fail(job, code ? code : "other", json_is_true(json_object_get(e, "transient")),
		     "%s", msg ? msg : "a recorded failure");
		json_t *ra = json_object_get(e, "retry_after_ms");
		if (json_is_integer(ra))
			job->out.retry_after_ms = json_integer_value(ra);
		job->out.status = (long)json_integer_value(json_object_get(e, "status"));
		return defer(job, err);
	}
	json_t *resp = json_deep_copy(rec);
	if (resp == NULL)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	json_t *cost = json_incref(json_object_get(resp, "cost_usd"));
	succeed(job, resp);
	if (all_zero(&p->price) && cost != NULL)
		json_object_set(resp, "cost_usd", cost); /* keep the recorded price */
	json_decref(cost);
	json_object_set_new(resp, "replayed", json_true());
	return defer(job, err);
}

/* ---- calls ---------------------------------------------------------------- */

int rein_model_call(rein_io *io, rein_model_provider *p, const json_t *req, rein_model_cb cb,
		    void *ud, rein_err *err)
{
	assert(io != NULL && p != NULL && cb != NULL);
	int rc = rein_model_request_check(req, err);
	if (rc != REIN_OK)
		return rc;
	model_job *job = rein_calloc(1, sizeof *job);
	if (job == NULL)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	job->cb = cb;
	job->ud = ud;
	job->io = io;
	job->ops = p->ops;
	job->price = p->price;
	job->stream = json_is_true(json_object_get(req, "stream"));
	job->out.retry_after_ms = -1;
	rc = rein_model_request_hash(req, job->out.request_hash, err);
	if (rc == REIN_OK)
		rc = p->ops->call(p, io, req, job, err);
	if (rc != REIN_OK)
		job_free(job);
	return rc;
}

static const model_ops openai_ops = {"openai", http_call, model_openai_parse};
static const model_ops anthropic_ops = {"anthropic", http_call, model_anthropic_parse};
static const model_ops replay_ops = {"replay", replay_call, NULL};

/* ---- providers ------------------------------------------------------------ */

void rein_model_provider_free(rein_model_provider *p)
{
	if (p == NULL)
		return;
	rein_free(p->base_url);
	rein_free(p->api_key_env);
	rein_free(p->anthropic_version);
	rein_free(p->max_tokens_field);
	for (size_t i = 0; i < p->nheaders; i++) {
		rein_free((char *)p->headers[i].name);
		rein_free((char *)p->headers[i].value);
	}
	rein_free(p->headers);
	json_decref(p->recorded);
	json_decref(p->sequence);
	rein_free(p);
}

const char *rein_model_provider_type(const rein_model_provider *p) { return p->ops->type; }

const rein_model_price *rein_model_provider_price(const rein_model_provider *p)
{
	return &p->price;
}

int rein_model_provider_server(const rein_model_provider *p, char **address, int *port)
{
	assert(p != NULL && address != NULL && port != NULL);
	if (p->base_url == NULL || strcmp(p->ops->type, "replay") == 0)
		return REIN_ENOTFOUND;
	const char *u = p->base_url; /* checked at load: http:// or https:// */
	bool tls = strncmp(u, "https://", 8) == 0;
	const char *h = u + (tls ? 8 : 7);
	const char *at = h + strcspn(h, "/?#");
	const char *cred = memchr(h, '@', (size_t)(at - h)); /* user:pass@ is never exported */
	if (cred)
		h = cred + 1;
	const char *hend, *pstart = NULL;
	if (*h == '[') {
		h++;
		hend = memchr(h, ']', (size_t)(at - h));
		if (hend == NULL)
			return REIN_ENOTFOUND;
		if (hend + 1 < at && hend[1] == ':')
			pstart = hend + 2;
	} else {
		hend = memchr(h, ':', (size_t)(at - h));
		if (hend)
			pstart = hend + 1;
		else
			hend = at;
	}
	int pt = tls ? 443 : 80;
	if (pstart && pstart < at) {
		long v = 0;
		for (const char *c = pstart; c < at; c++)
			v = *c >= '0' && *c <= '9' && v < 65536 ? v * 10 + (*c - '0') : 65536;
		if (v >= 1 && v <= 65535)
			pt = (int)v;
	}
	if (hend == h)
		return REIN_ENOTFOUND;
	char *a = rein_strndup(h, (size_t)(hend - h));
	if (a == NULL)
		return REIN_ENOMEM;
	*address = a;
	*port = pt;
	return REIN_OK;
}

static int read_price(rein_model_provider *p, const json_t *price, rein_err *err)
{
	static const char *const keys[] = {"input", "output", "cached", "cache_write", NULL};
	const char *bad = NULL;
	if (price == NULL)
		return REIN_OK;
	if (!json_is_object(price) || !only_keys(price, keys, &bad))
		return rein_err_set(err, REIN_EINVAL,
				    "price must be {input, output, cached, cache_write}%s%s",
				    bad ? ": unknown " : "", bad ? bad : "");
	double *slots[] = {&p->price.input, &p->price.output, &p->price.cached,
			   &p->price.cache_write};
	for (size_t i = 0; i < 4; i++) {
		const json_t *v = json_object_get(price, keys[i]);
		if (v == NULL)
			continue;
		if (!json_is_number(v) || json_number_value(v) < 0 ||
		    !isfinite(json_number_value(v)))
			return rein_err_set(err, REIN_EINVAL,
					    "price.%s must be a number >= 0 (USD per million tokens)",
					    keys[i]);
		*slots[i] = json_number_value(v);
	}
	if (json_object_get(price, "cached") == NULL)
		p->price.cached = p->price.input;
	if (json_object_get(price, "cache_write") == NULL)
		p->price.cache_write = p->price.input;
	return REIN_OK;
}

static int read_headers(rein_model_provider *p, const json_t *hs, rein_err *err)
{
	if (hs == NULL)
		return REIN_OK;
	if (!json_is_object(hs))
		return rein_err_set(err, REIN_EINVAL, "headers must be an object of strings");
	p->headers = rein_calloc(json_object_size(hs) + 1, sizeof *p->headers);
	if (p->headers == NULL)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	const char *k;
	const json_t *v;
	json_object_foreach((json_t *)hs, k, v) {
		if (!json_is_string(v) || strpbrk(k, ":\r\n ") != NULL || k[0] == '\0' ||
		    strpbrk(json_string_value(v), "\r\n") != NULL)
			return rein_err_set(err, REIN_EINVAL, "headers.%s must be a one-line string",
					    k);
		rein_http_header *h = &p->headers[p->nheaders++];
		h->name = rein_strdup(k);
		h->value = rein_strdup(json_string_value(v));
		if (h->name == NULL || h->value == NULL)
			return rein_err_set(err, REIN_ENOMEM, "out of memory");
	}
	return REIN_OK;
}

static int read_recording(rein_model_provider *p, const json_t *config, rein_err *err)
{
	const char *file = json_string_value(json_object_get(config, "file"));
	const json_t *inline_rec = json_object_get(config, "responses");
	json_t *rec = NULL;
	int rc = REIN_OK;
	if ((file == NULL) == (inline_rec == NULL))
		return rein_err_set(err, REIN_EINVAL, "a replay provider needs file or responses");
	if (file != NULL) {
		char *text = NULL;
		size_t len = 0;
		rc = rein_file_read(file, &text, &len, err);
		if (rc != REIN_OK)
			return rc;
		rein_err perr = {0};
		rec = rein_json_parse(text, len, &perr);
		rein_free(text);
		if (rec == NULL)
			return rein_err_set(err, REIN_EINVAL, "%s: %s", file, perr.msg);
	} else {
		rec = json_incref((json_t *)inline_rec);
	}
	if (json_is_array(rec)) {
		p->sequence = json_incref(rec);
		p->recorded = json_object();
		p->on_miss_sequence = true;
	} else if (json_is_object(rec)) {
		p->recorded = json_incref(rec);
		p->sequence = json_incref(json_object_get(rec, "$sequence"));
		if (p->sequence == NULL)
			p->sequence = json_array();
	} else {
		rc = rein_err_set(err, REIN_EINVAL,
				  "a replay recording is an object {hash: response} or an array");
		goto out;
	}
	if (p->recorded == NULL || p->sequence == NULL || !json_is_array(p->sequence)) {
		rc = rein_err_set(err, REIN_EINVAL, "$sequence must be an array");
		goto out;
	}
	const char *miss = json_string_value(json_object_get(config, "on_miss"));
	if (miss != NULL && strcmp(miss, "sequence") == 0)
		p->on_miss_sequence = true;
	else if (miss != NULL && strcmp(miss, "error") == 0)
		p->on_miss_sequence = false;
	else if (json_object_get(config, "on_miss") != NULL)
		rc = rein_err_set(err, REIN_EINVAL, "on_miss must be \"error\" or \"sequence\"");
out:
	json_decref(rec);
	return rc;
}

static char *str_or(const json_t *config, const char *key, const char *dflt, rein_err *err,
		    int *rc)
{
	const json_t *v = json_object_get(config, key);
	if (v != NULL && !json_is_string(v)) {
		*rc = rein_err_set(err, REIN_EINVAL, "%s must be a string", key);
		return NULL;
	}
	const char *s = v ? json_string_value(v) : dflt;
	if (s == NULL)
		return NULL;
	char *out = rein_strdup(s);
	if (out == NULL)
		*rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
	return out;
}

static int64_t int_or(const json_t *config, const char *key, int64_t dflt, rein_err *err,
		      int *rc)
{
	const json_t *v = json_object_get(config, key);
	if (v == NULL)
		return dflt;
	if (!json_is_integer(v) || json_integer_value(v) < 0) {
		*rc = rein_err_set(err, REIN_EINVAL, "%s must be an integer >= 0", key);
		return dflt;
	}
	return json_integer_value(v);
}

int rein_model_provider_new(const json_t *config, rein_model_provider **out, rein_err *err)
{
	static const char *const keys[] = {
		"type",	 "base_url", "api_key_env", "headers", "timeout_ms", "connect_timeout_ms",
		"max_response_bytes", "price", "max_tokens", "max_tokens_field",
		"anthropic_version", "file", "responses", "on_miss", NULL};
	assert(out != NULL);
	rein_model_provider *p = NULL;
	const char *bad = NULL;
	int rc = REIN_OK;
	if (!json_is_object(config))
		return rein_err_set(err, REIN_EINVAL, "a provider configuration is an object");
	if (!only_keys(config, keys, &bad))
		return rein_err_set(err, REIN_EINVAL, "unknown provider setting '%s'", bad);
	const char *type = json_string_value(json_object_get(config, "type"));
	const model_ops *ops = NULL;
	if (type != NULL && strcmp(type, "openai") == 0)
		ops = &openai_ops;
	else if (type != NULL && strcmp(type, "anthropic") == 0)
		ops = &anthropic_ops;
	else if (type != NULL && strcmp(type, "replay") == 0)
		ops = &replay_ops;
	else
		return rein_err_set(err, REIN_EINVAL,
				    "provider type must be openai, anthropic or replay");
	p = rein_calloc(1, sizeof *p);
	if (p == NULL)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	p->ops = ops;
	bool anthropic = ops == &anthropic_ops;
	p->base_url = str_or(config, "base_url",
			     anthropic ? "https://api.anthropic.com" : "https://api.openai.com/v1",
			     err, &rc);
	p->api_key_env = str_or(config, "api_key_env", anthropic ? "ANTHROPIC_API_KEY" : NULL,
				err, &rc);
	p->anthropic_version = str_or(config, "anthropic_version", "2023-06-01", err, &rc);
	p->max_tokens_field = str_or(config, "max_tokens_field", "max_completion_tokens", err, &rc);
	p->timeout_ms = int_or(config, "timeout_ms", DEFAULT_TIMEOUT_MS, err, &rc);
	p->connect_timeout_ms = int_or(config, "connect_timeout_ms", 0, err, &rc);
	p->max_response_bytes =
		(size_t)int_or(config, "max_response_bytes", DEFAULT_MAX_BODY, err, &rc);
	p->wire.max_tokens = int_or(config, "max_tokens", 0, err, &rc);
	if (rc != REIN_OK)
		goto out;
	if (p->api_key_env != NULL && p->api_key_env[0] == '\0') {
		rein_free(p->api_key_env);
		p->api_key_env = NULL;
	}
	p->wire.max_tokens_field = p->max_tokens_field;
	if (strcmp(p->max_tokens_field, "max_tokens") != 0 &&
	    strcmp(p->max_tokens_field, "max_completion_tokens") != 0) {
		rc = rein_err_set(err, REIN_EINVAL,
				  "max_tokens_field must be max_tokens or max_completion_tokens");
		goto out;
	}
	/* a trailing slash would make "//chat/completions" */
	size_t bl = strlen(p->base_url);
	while (bl > 0 && p->base_url[bl - 1] == '/')
		p->base_url[--bl] = '\0';
	if (strncmp(p->base_url, "http://", 7) != 0 && strncmp(p->base_url, "https://", 8) != 0) {
		rc = rein_err_set(err, REIN_EINVAL, "base_url must be http:// or https://");
		goto out;
	}
	rc = read_price(p, json_object_get(config, "price"), err);
	if (rc == REIN_OK)
		rc = read_headers(p, json_object_get(config, "headers"), err);
	if (rc == REIN_OK && ops == &replay_ops)
		rc = read_recording(p, config, err);
	else if (rc == REIN_OK && (json_object_get(config, "file") != NULL ||
				   json_object_get(config, "responses") != NULL))
		rc = rein_err_set(err, REIN_EINVAL, "file and responses are replay settings");
out:
	if (rc != REIN_OK) {
		rein_model_provider_free(p);
		return rc;
	}
	*out = p;
	return REIN_OK;
}

/* ---- recording ------------------------------------------------------------ */

int rein_model_record(json_t *recording, const json_t *req, const json_t *response,
		      rein_err *err)
{
	assert(recording != NULL && req != NULL && response != NULL);
	char hash[REIN_MODEL_HASH_HEX];
	if (!json_is_object(recording) || !json_is_object(response))
		return rein_err_set(err, REIN_EINVAL, "a recording and a response are objects");
	int rc = rein_model_request_hash(req, hash, err);
	if (rc != REIN_OK)
		return rc;
	json_t *seq = json_object_get(recording, "$sequence");
	if (seq == NULL) {
		seq = json_array();
		if (seq == NULL || json_object_set_new(recording, "$sequence", seq) != 0)
			return rein_err_set(err, REIN_ENOMEM, "out of memory");
	} else if (!json_is_array(seq)) {
		return rein_err_set(err, REIN_EINVAL, "the recording's $sequence is not an array");
	}
	json_t *copy = json_deep_copy(response);
	if (copy == NULL)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	json_object_del(copy, "latency_ms");
	json_object_del(copy, "ttft_ms");
	json_object_del(copy, "replayed");
	if (json_object_set(recording, hash, copy) != 0 || json_array_append(seq, copy) != 0) {
		json_decref(copy);
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	}
	json_decref(copy);
	return REIN_OK;
}
