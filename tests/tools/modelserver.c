/*
 * modelserver: a loopback model server that speaks the OpenAI Chat Completions
 * and the Anthropic Messages wire protocols, streaming included, and answers
 * from a script, so provider code can be tested byte for byte without a
 * network. One libuv loop, one thread, the small HTTP/1.1 parser of
 * loopback.c (Content-Length and chunked bodies, keep-alive, pipelining,
 * Expect: 100-continue); delays are timers, never sleeps.
 *
 * Usage: modelserver [--port N] [--port-file PATH] [--script FILE] [--max-seconds S]
 * Binds 127.0.0.1 only (port 0: an ephemeral port, written to --port-file).
 * Exits by itself after --max-seconds (default 600).
 *
 * Endpoints
 *   POST /v1/chat/completions, /chat/completions   OpenAI Chat Completions
 *   POST /v1/messages                               Anthropic Messages
 *   GET  /control/requests   JSON array of every model request received so far:
 *                            {method, path, headers, body}; header names are
 *                            lowercased, authorization and x-api-key values are
 *                            "***"; body is the parsed JSON (a string if it is
 *                            not JSON). Control requests are not recorded.
 *   POST /control/script     body = a script; replaces it and resets the turn
 *                            index and the id counters (the log is kept)
 *   POST /control/reset      clears the request log
 *   POST /control/shutdown   exits
 *
 * Script: {"turns": [TURN, ...], "check_auth": true}
 * Each model request that passes the checks below consumes the next TURN, in
 * one global order across both protocols; when they are exhausted the answer
 * is 500 with a protocol error body whose message is "script exhausted".
 * Checks that answer without consuming a turn (protocol-correct 4xx bodies):
 * the body must be a JSON object with "model" (string) and "messages" (array),
 * Anthropic also "max_tokens"; with check_auth (the default) OpenAI needs
 * "Authorization: Bearer <key>", Anthropic "x-api-key" and "anthropic-version".
 *
 * A TURN is neutral; it is rendered for the protocol of the request, as one
 * JSON body or as server-sent events according to the request's "stream":
 *   "text": "..."            the assistant's text (may be omitted or empty
 *                            when there are tool calls)
 *   "tool_calls": [{"name": "lookup", "arguments": {...}}, ...]
 *                            tool calls; ids are call_N (OpenAI) and toolu_N
 *                            (Anthropic), N counting from 1 per script.
 *                            "arguments_raw": "{not json" instead of
 *                            "arguments" sends those bytes verbatim: as the
 *                            arguments string (OpenAI), as the partial_json
 *                            fragments (Anthropic stream), as a string
 *                            "input" (Anthropic, not streaming)
 *   "finish": "length"       stop for length: finish_reason "length" /
 *                            stop_reason "max_tokens" (default: stop /
 *                            end_turn, or tool_calls / tool_use)
 *   "error": {"status": 429, "retry_after": 2, "message": "...", "type": "..."}
 *                            that status with the protocol's error body
 *                            (OpenAI {"error":{message,type,param,code}},
 *                            Anthropic {"type":"error","error":{type,message}});
 *                            retry_after adds a Retry-After header. With
 *                            "mid_stream": true a streaming request gets 200,
 *                            the first events, then the error as an event
 *                            (Anthropic "event: error", OpenAI a data line
 *                            {"error":...}) and the body ends there.
 *   "cut_after": N           streaming: close the connection after N events
 *                            (no [DONE] / message_stop, no last chunk of the
 *                            chunked body); not streaming: Content-Length of
 *                            the whole body, half of it, then close
 *   "malformed": true        200 with the JSON body cut in half (Content-Length
 *                            matching what is sent); streaming: the second
 *                            event's JSON is cut in half, the rest is normal
 *   "usage": {"input": 120, "output": 30, "cached": 100, "cache_write": 0,
 *             "reasoning": 7}
 *                            token counts. input is the whole prompt
 *                            (OpenAI prompt_tokens; Anthropic input_tokens =
 *                            input - cached - cache_write, as Anthropic counts
 *                            cache reads and writes apart); output includes
 *                            reasoning (OpenAI completion_tokens). Defaults:
 *                            input = request body bytes / 4, output = answer
 *                            bytes / 4, at least 1; the others 0.
 *   "model": "name"          the model name returned (default: the request's)
 *   "delay_ms": N            answer after N ms
 *   "event_delay_ms": N      streaming: N ms between events (default 0: all
 *                            events in one write, each its own HTTP chunk)
 *   "chunk_chars": N         streaming: characters per text / arguments
 *                            fragment (default 5, UTF-8 safe)
 * Streaming renderings. OpenAI: "data: {chat.completion.chunk}" lines: a role
 * chunk, the text in fragments, each tool call's header (index, id, type,
 * name, arguments "") then the arguments fragments of all calls interleaved
 * by index, a chunk with finish_reason, a usage chunk (choices []) only when
 * stream_options.include_usage is true (then every chunk carries "usage":
 * null), and "data: [DONE]". Anthropic: message_start, ping,
 * content_block_start/delta/stop for the text (text_delta) and for each tool
 * call (input_json_delta with partial_json), message_delta (stop_reason,
 * usage.output_tokens), message_stop.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "loopback.h"

enum { P_OPENAI, P_ANTHROPIC };

typedef struct conn conn;

/* One answer being delivered: waits delay_ms, then writes the head and the
 * body, or the events one batch or one tick at a time. */
typedef struct reply {
	uv_timer_t timer;
	conn *c;       /* NULL once the client went away */
	int status;
	bool stream;
	bool started;
	rein_buf head;  /* header lines, each ending in \r\n */
	rein_buf body;  /* not streaming: the body to send */
	size_t send_len; /* not streaming: how much of body to send */
	bool cut;       /* close the connection after what is sent */
	json_t *events; /* streaming: array of SSE texts */
	size_t next, limit;
	uint64_t delay, event_delay;
} reply;

struct conn {
	lb_conn lc; /* first: loopback.c allocates a conn and passes &lc */
	reply *pend;
};

static uv_loop_t *loop;
static json_t *script;   /* the script object */
static json_t *req_log;  /* array of recorded requests */
static size_t turn_idx;  /* next turn */
static long seq_ids;     /* response ids */
static long seq_tools;   /* tool call ids */

/* ---- small helpers ----------------------------------------------------- */

/* A compact dump that keeps the key order of construction; caller frees with free(). */
static char *dump(const json_t *j)
{
	return json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
}

static long jint(const json_t *obj, const char *key, long dflt)
{
	json_t *v = json_object_get(obj, key);
	return json_is_integer(v) ? (long)json_integer_value(v) : dflt;
}

/* ---- connections and writes -------------------------------------------- */

static void on_reply_closed(uv_handle_t *h)
{
	reply *r = h->data;
	rein_buf_free(&r->head);
	rein_buf_free(&r->body);
	json_decref(r->events);
	rein_free(r);
}

static void reply_drop(reply *r)
{
	uv_timer_stop(&r->timer);
	uv_close((uv_handle_t *)&r->timer, on_reply_closed);
}

static void on_closing(lb_conn *lc)
{
	conn *c = (conn *)lc;
	if (c->pend != NULL) {
		c->pend->c = NULL;
		reply_drop(c->pend);
		c->pend = NULL;
	}
}

static void respond_plain_error(lb_conn *lc, int status, const char *msg)
{
	lb_respond_json(lc, status, NULL,
			json_pack("{s:{s:s,s:s}}", "error", "message", msg, "type",
				  "invalid_request_error"));
}

/* ---- replies ----------------------------------------------------------- */

static void reply_done(reply *r, conn *c)
{
	c->pend = NULL;
	r->c = NULL;
	reply_drop(r);
	if (!r->cut) {
		c->lc.busy = false;
		lb_next(&c->lc);
	}
	/* a cut leaves the connection busy until the close */
}

/* Appends one SSE event as an HTTP chunk. */
static void chunk_append(rein_buf *b, const char *ev)
{
	size_t n = strlen(ev);
	rein_buf_printf(b, "%zx\r\n", n);
	rein_buf_append(b, ev, n);
	rein_buf_puts(b, "\r\n");
}

/* Appends events [next, upto) and, if that is the last of them, the end. */
static bool events_append(reply *r, rein_buf *b, size_t upto)
{
	for (; r->next < upto; r->next++)
		chunk_append(b, json_string_value(json_array_get(r->events, r->next)));
	if (r->next < r->limit)
		return false;
	if (!r->cut)
		rein_buf_puts(b, "0\r\n\r\n");
	return true;
}

static void on_reply_timer(uv_timer_t *t)
{
	reply *r = t->data;
	conn *c = r->c;
	if (c == NULL || c->lc.closing)
		return;
	rein_buf b = {0};
	bool last = true;
	if (!r->started) {
		r->started = true;
		rein_buf_printf(&b, "HTTP/1.1 %d %s\r\n", r->status, lb_reason(r->status));
		if (r->head.len)
			rein_buf_append(&b, r->head.p, r->head.len);
		if (r->stream) {
			rein_buf_puts(&b, "Transfer-Encoding: chunked\r\n");
		} else {
			size_t full = r->cut ? r->body.len : r->send_len;
			rein_buf_printf(&b, "Content-Length: %zu\r\n", full);
		}
		rein_buf_printf(&b, "Connection: %s\r\n\r\n",
				c->lc.close_after || r->cut ? "close" : "keep-alive");
		if (!r->stream)
			rein_buf_append(&b, r->body.p ? r->body.p : "", r->send_len);
		else if (r->event_delay == 0)
			last = events_append(r, &b, r->limit);
		else
			last = r->limit == 0 ? events_append(r, &b, 0) : false;
	} else {
		last = events_append(r, &b, r->next + 1);
	}
	if (b.p == NULL) {
		lb_close(&c->lc);
		return;
	}
	lb_send(&c->lc, b.p, b.len, last && (r->cut || c->lc.close_after) ? LB_CLOSE : 0);
	if (last) {
		reply_done(r, c);
	} else if (!uv_is_active((uv_handle_t *)t)) {
		uv_timer_start(t, on_reply_timer, r->event_delay, r->event_delay);
	}
}

/* Starts delivering r on c; r is owned by the connection from here. */
static void reply_start(conn *c, reply *r)
{
	r->c = c;
	c->pend = r;
	r->timer.data = r;
	uv_timer_init(loop, &r->timer);
	uv_timer_start(&r->timer, on_reply_timer, r->delay, 0);
}

static reply *reply_new(int status)
{
	reply *r = rein_calloc(1, sizeof *r);
	if (r != NULL)
		r->status = status;
	return r;
}

/* Sets a non-streaming JSON body (stolen). */
static void reply_body(reply *r, json_t *j)
{
	char *s = dump(j);
	json_decref(j);
	if (s != NULL) {
		rein_buf_puts(&r->body, s);
		free(s);
	}
	r->send_len = r->body.len;
	rein_buf_puts(&r->head, "Content-Type: application/json\r\n");
}

/* ---- protocol rendering ------------------------------------------------ */

typedef struct tool {
	char id[32];
	const char *name;
	char *args;   /* owned: OpenAI arguments string / Anthropic partial_json */
	json_t *input; /* owned: Anthropic input (object, or the raw string) */
} tool;

typedef struct render {
	int proto;
	json_t *turn;
	const char *model;
	bool stream, include_usage;
	long seq, created;
	const char *text;
	size_t text_len;
	tool *tools;
	size_t ntools;
	long input, output, cached, cache_write, reasoning;
	size_t frag;
	bool length;
	reply *r;
} render;

/* Splits s[0..len) into pieces of n code points; returns a new array of strings. */
static json_t *fragments(const char *s, size_t len, size_t n)
{
	json_t *a = json_array();
	size_t i = 0;
	while (i < len) {
		size_t j = i, k = 0;
		while (j < len && k < n) {
			j++;
			while (j < len && ((unsigned char)s[j] & 0xC0) == 0x80)
				j++;
			k++;
		}
		json_array_append_new(a, json_stringn(s + i, j - i));
		i = j;
	}
	return a;
}

/* Adds one SSE event; name NULL for OpenAI's bare data lines. Steals data. */
static void add_event(render *x, const char *name, json_t *data)
{
	char *s = dump(data);
	json_decref(data);
	if (s == NULL)
		return;
	char *ev = name ? rein_sprintf("event: %s\ndata: %s\n\n", name, s)
			: rein_sprintf("data: %s\n\n", s);
	free(s);
	if (ev != NULL)
		json_array_append_new(x->r->events, json_string(ev));
	rein_free(ev);
}

static json_t *oa_usage(const render *x)
{
	return json_pack("{s:I,s:I,s:I,s:{s:I,s:i},s:{s:I,s:i,s:i,s:i}}", "prompt_tokens",
			 (json_int_t)x->input, "completion_tokens", (json_int_t)x->output,
			 "total_tokens", (json_int_t)(x->input + x->output),
			 "prompt_tokens_details", "cached_tokens", (json_int_t)x->cached,
			 "audio_tokens", 0, "completion_tokens_details", "reasoning_tokens",
			 (json_int_t)x->reasoning, "audio_tokens", 0,
			 "accepted_prediction_tokens", 0, "rejected_prediction_tokens", 0);
}

static long an_input(const render *x)
{
	long n = x->input - x->cached - x->cache_write;
	return n < 0 ? 0 : n;
}

static json_t *an_usage(const render *x, long output)
{
	return json_pack("{s:I,s:I,s:I,s:I}", "input_tokens", (json_int_t)an_input(x),
			 "cache_creation_input_tokens", (json_int_t)x->cache_write,
			 "cache_read_input_tokens", (json_int_t)x->cached, "output_tokens",
			 (json_int_t)output);
}

static const char *oa_finish(const render *x)
{
	return x->length ? "length" : x->ntools ? "tool_calls" : "stop";
}

static const char *an_stop(const render *x)
{
	return x->length ? "max_tokens" : x->ntools ? "tool_use" : "end_turn";
}

static json_t *oa_envelope(const render *x, const char *object)
{
	char id[48];
	snprintf(id, sizeof id, "chatcmpl-rein%ld", x->seq);
	return json_pack("{s:s,s:s,s:I,s:s}", "id", id, "object", object, "created",
			 (json_int_t)x->created, "model", x->model);
}

static void oa_complete(render *x)
{
	json_t *msg = json_pack("{s:s}", "role", "assistant");
	json_object_set_new(msg, "content",
			    x->text_len || !x->ntools ? json_stringn(x->text, x->text_len)
						      : json_null());
	json_object_set_new(msg, "refusal", json_null());
	if (x->ntools) {
		json_t *calls = json_array();
		for (size_t i = 0; i < x->ntools; i++)
			json_array_append_new(
			    calls, json_pack("{s:s,s:s,s:{s:s,s:s}}", "id", x->tools[i].id,
					     "type", "function", "function", "name",
					     x->tools[i].name, "arguments", x->tools[i].args));
		json_object_set_new(msg, "tool_calls", calls);
	}
	json_object_set_new(msg, "annotations", json_array());
	json_t *j = oa_envelope(x, "chat.completion");
	json_object_set_new(j, "choices",
			    json_pack("[{s:i,s:o,s:n,s:s}]", "index", 0, "message", msg,
				      "logprobs", "finish_reason", oa_finish(x)));
	json_object_set_new(j, "usage", oa_usage(x));
	json_object_set_new(j, "service_tier", json_string("default"));
	json_object_set_new(j, "system_fingerprint", json_string("fp_rein"));
	reply_body(x->r, j);
}

/* A chunk around one delta (stolen); finish NULL: not the last. */
static void oa_chunk(render *x, json_t *delta, const char *finish)
{
	json_t *j = oa_envelope(x, "chat.completion.chunk");
	json_object_set_new(j, "service_tier", json_string("default"));
	json_object_set_new(j, "system_fingerprint", json_string("fp_rein"));
	json_object_set_new(j, "choices",
			    json_pack("[{s:i,s:o,s:n,s:o}]", "index", 0, "delta", delta,
				      "logprobs", "finish_reason",
				      finish ? json_string(finish) : json_null()));
	if (x->include_usage)
		json_object_set_new(j, "usage", json_null());
	add_event(x, NULL, j);
}

static void oa_stream(render *x)
{
	json_t *d = json_pack("{s:s,s:s,s:n}", "role", "assistant", "content", "", "refusal");
	oa_chunk(x, d, NULL);
	json_t *fr = fragments(x->text, x->text_len, x->frag);
	size_t i;
	json_t *v;
	json_array_foreach(fr, i, v) oa_chunk(x, json_pack("{s:O}", "content", v), NULL);
	json_decref(fr);
	for (i = 0; i < x->ntools; i++)
		oa_chunk(x,
			 json_pack("{s:[{s:I,s:s,s:s,s:{s:s,s:s}}]}", "tool_calls", "index",
				   (json_int_t)i, "id", x->tools[i].id, "type", "function",
				   "function", "name", x->tools[i].name, "arguments", ""),
			 NULL);
	/* the arguments of all calls interleaved by index */
	json_t **frs = rein_calloc(x->ntools + 1, sizeof *frs);
	size_t most = 0;
	for (i = 0; frs && i < x->ntools; i++) {
		frs[i] = fragments(x->tools[i].args, strlen(x->tools[i].args), x->frag);
		if (json_array_size(frs[i]) > most)
			most = json_array_size(frs[i]);
	}
	for (size_t k = 0; frs && k < most; k++)
		for (i = 0; i < x->ntools; i++)
			if (k < json_array_size(frs[i]))
				oa_chunk(x,
					 json_pack("{s:[{s:I,s:{s:O}}]}", "tool_calls", "index",
						   (json_int_t)i, "function", "arguments",
						   json_array_get(frs[i], k)),
					 NULL);
	for (i = 0; frs && i < x->ntools; i++)
		json_decref(frs[i]);
	rein_free(frs);
	oa_chunk(x, json_object(), oa_finish(x));
	if (x->include_usage) {
		json_t *j = oa_envelope(x, "chat.completion.chunk");
		json_object_set_new(j, "service_tier", json_string("default"));
		json_object_set_new(j, "system_fingerprint", json_string("fp_rein"));
		json_object_set_new(j, "choices", json_array());
		json_object_set_new(j, "usage", oa_usage(x));
		add_event(x, NULL, j);
	}
	json_array_append_new(x->r->events, json_string("data: [DONE]\n\n"));
}

static void an_id(const render *x, char out[48])
{
	snprintf(out, 48, "msg_rein%ld", x->seq);
}

static void an_complete(render *x)
{
	char id[48];
	an_id(x, id);
	json_t *content = json_array();
	if (x->text_len)
		json_array_append_new(content,
				      json_pack("{s:s,s:s%}", "type", "text", "text", x->text,
						x->text_len));
	for (size_t i = 0; i < x->ntools; i++)
		json_array_append_new(content,
				      json_pack("{s:s,s:s,s:s,s:O}", "type", "tool_use", "id",
						x->tools[i].id, "name", x->tools[i].name, "input",
						x->tools[i].input));
	json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:o,s:s,s:n,s:o}", "id", id, "type", "message",
			      "role", "assistant", "model", x->model, "content", content,
			      "stop_reason", an_stop(x), "stop_sequence", "usage",
			      an_usage(x, x->output));
	reply_body(x->r, j);
}

static void an_stream(render *x)
{
	char id[48];
	an_id(x, id);
	add_event(x, "message_start",
		  json_pack("{s:s,s:{s:s,s:s,s:s,s:s,s:[],s:n,s:n,s:o}}", "type",
			    "message_start", "message", "id", id, "type", "message", "role",
			    "assistant", "model", x->model, "content", "stop_reason",
			    "stop_sequence", "usage", an_usage(x, 1)));
	add_event(x, "ping", json_pack("{s:s}", "type", "ping"));
	int index = 0;
	size_t i;
	json_t *v;
	if (x->text_len) {
		add_event(x, "content_block_start",
			  json_pack("{s:s,s:i,s:{s:s,s:s}}", "type", "content_block_start",
				    "index", index, "content_block", "type", "text", "text", ""));
		json_t *fr = fragments(x->text, x->text_len, x->frag);
		json_array_foreach(fr, i, v)
			add_event(x, "content_block_delta",
				  json_pack("{s:s,s:i,s:{s:s,s:O}}", "type", "content_block_delta",
					    "index", index, "delta", "type", "text_delta", "text",
					    v));
		json_decref(fr);
		add_event(x, "content_block_stop",
			  json_pack("{s:s,s:i}", "type", "content_block_stop", "index", index));
		index++;
	}
	for (size_t t = 0; t < x->ntools; t++, index++) {
		add_event(x, "content_block_start",
			  json_pack("{s:s,s:i,s:{s:s,s:s,s:s,s:{}}}", "type",
				    "content_block_start", "index", index, "content_block", "type",
				    "tool_use", "id", x->tools[t].id, "name", x->tools[t].name,
				    "input"));
		json_t *fr = fragments(x->tools[t].args, strlen(x->tools[t].args), x->frag);
		json_array_foreach(fr, i, v)
			add_event(x, "content_block_delta",
				  json_pack("{s:s,s:i,s:{s:s,s:O}}", "type", "content_block_delta",
					    "index", index, "delta", "type", "input_json_delta",
					    "partial_json", v));
		json_decref(fr);
		add_event(x, "content_block_stop",
			  json_pack("{s:s,s:i}", "type", "content_block_stop", "index", index));
	}
	add_event(x, "message_delta",
		  json_pack("{s:s,s:{s:s,s:n},s:{s:I}}", "type", "message_delta", "delta",
			    "stop_reason", an_stop(x), "stop_sequence", "usage", "output_tokens",
			    (json_int_t)x->output));
	add_event(x, "message_stop", json_pack("{s:s}", "type", "message_stop"));
}

/* The protocol's error body for a status. */
static json_t *error_body(int proto, int status, const char *type, const char *msg)
{
	if (proto == P_ANTHROPIC) {
		if (type == NULL)
			type = status == 400   ? "invalid_request_error"
			       : status == 401 ? "authentication_error"
			       : status == 403 ? "permission_error"
			       : status == 404 ? "not_found_error"
			       : status == 413 ? "request_too_large"
			       : status == 429 ? "rate_limit_error"
			       : status == 529 ? "overloaded_error"
			       : status >= 500 ? "api_error"
					       : "invalid_request_error";
		if (msg == NULL)
			msg = status == 429   ? "Number of request tokens has exceeded your per-minute rate limit"
			      : status == 529 ? "Overloaded"
			      : status >= 500 ? "Internal server error"
					      : "Invalid request";
		return json_pack("{s:s,s:{s:s,s:s}}", "type", "error", "error", "type", type,
				 "message", msg);
	}
	const char *code = NULL;
	if (type == NULL) {
		type = status == 429 ? "requests" : status >= 500 ? "server_error"
								  : "invalid_request_error";
		if (status == 429)
			code = "rate_limit_exceeded";
		else if (status == 401)
			code = "invalid_api_key";
	}
	if (msg == NULL)
		msg = status == 429 ? "Rate limit reached for requests. Please try again later."
		      : status >= 500
			  ? "The server had an error while processing your request. Sorry about that!"
			  : "Invalid request";
	return json_pack("{s:{s:s,s:s,s:n,s:o}}", "error", "message", msg, "type", type,
			 "param", "code", code ? json_string(code) : json_null());
}

static void proto_headers(int proto, reply *r, long seq)
{
	if (proto == P_ANTHROPIC)
		rein_buf_printf(&r->head, "request-id: req_rein%ld\r\n", seq);
	else
		rein_buf_printf(&r->head, "x-request-id: req_rein%ld\r\nopenai-processing-ms: 1\r\n",
				seq);
}

/* A reply carrying only an error; msg may be NULL (the default text). */
static reply *error_reply(int proto, int status, const char *type, const char *msg, long seq)
{
	reply *r = reply_new(status);
	if (r == NULL)
		return NULL;
	proto_headers(proto, r, seq);
	reply_body(r, error_body(proto, status, type, msg));
	return r;
}

/* Streams a 200 whose events stop early with an error event (the HTTP body
 * still ends properly, as the real APIs do). */
static void mid_stream_error(render *x, json_t *err)
{
	int status = (int)jint(err, "status", 500);
	json_t *body = error_body(x->proto, status, json_string_value(json_object_get(err, "type")),
				  json_string_value(json_object_get(err, "message")));
	json_t *keep = json_array();
	size_t n = x->proto == P_ANTHROPIC ? 2 : 1; /* message_start and ping / the role chunk */
	for (size_t i = 0; i < n && i < json_array_size(x->r->events); i++)
		json_array_append(keep, json_array_get(x->r->events, i));
	json_decref(x->r->events);
	x->r->events = keep;
	add_event(x, x->proto == P_ANTHROPIC ? "error" : NULL, body);
}

static void tools_free(tool *t, size_t n)
{
	for (size_t i = 0; t && i < n; i++) {
		rein_free(t[i].args);
		json_decref(t[i].input);
	}
	rein_free(t);
}

/* Renders one turn for the request; returns the reply, NULL when out of memory. */
static reply *render_turn(int proto, json_t *turn, json_t *body, size_t body_len, long seq)
{
	json_t *err = json_object_get(turn, "error");
	bool stream = json_is_true(json_object_get(body, "stream"));
	if (json_is_object(err) && !(stream && json_is_true(json_object_get(err, "mid_stream")))) {
		int status = (int)jint(err, "status", 500);
		reply *r = error_reply(proto, status, json_string_value(json_object_get(err, "type")),
				       json_string_value(json_object_get(err, "message")), seq);
		if (r != NULL) {
			json_t *ra = json_object_get(err, "retry_after");
			if (json_is_integer(ra))
				rein_buf_printf(&r->head, "Retry-After: %lld\r\n",
						(long long)json_integer_value(ra));
			else if (json_is_string(ra))
				rein_buf_printf(&r->head, "Retry-After: %s\r\n",
						json_string_value(ra));
			r->delay = (uint64_t)jint(turn, "delay_ms", 0);
		}
		return r;
	}
	render x = {.proto = proto, .turn = turn, .stream = stream, .seq = seq};
	x.r = reply_new(200);
	if (x.r == NULL)
		return NULL;
	proto_headers(proto, x.r, seq);
	x.created = (long)time(NULL);
	x.model = json_string_value(json_object_get(turn, "model"));
	if (x.model == NULL)
		x.model = json_string_value(json_object_get(body, "model"));
	if (x.model == NULL)
		x.model = "unknown";
	x.include_usage = json_is_true(
	    json_object_get(json_object_get(body, "stream_options"), "include_usage"));
	json_t *text = json_object_get(turn, "text");
	x.text = json_is_string(text) ? json_string_value(text) : "";
	x.text_len = json_is_string(text) ? json_string_length(text) : 0;
	x.frag = (size_t)jint(turn, "chunk_chars", 5);
	if (x.frag == 0)
		x.frag = 5;
	const char *finish = json_string_value(json_object_get(turn, "finish"));
	x.length = finish && (strcmp(finish, "length") == 0 || strcmp(finish, "max_tokens") == 0);

	json_t *calls = json_object_get(turn, "tool_calls");
	size_t out_bytes = x.text_len;
	x.ntools = json_array_size(calls);
	x.tools = rein_calloc(x.ntools + 1, sizeof *x.tools);
	if (x.tools == NULL) {
		x.ntools = 0;
	}
	for (size_t i = 0; i < x.ntools; i++) {
		json_t *tc = json_array_get(calls, i);
		tool *t = &x.tools[i];
		seq_tools++;
		snprintf(t->id, sizeof t->id, "%s%ld", proto == P_OPENAI ? "call_" : "toolu_",
			 seq_tools);
		t->name = json_string_value(json_object_get(tc, "name"));
		if (t->name == NULL)
			t->name = "tool";
		json_t *raw = json_object_get(tc, "arguments_raw");
		if (json_is_string(raw)) {
			t->args = rein_strdup(json_string_value(raw));
			t->input = json_string(json_string_value(raw));
		} else {
			json_t *a = json_object_get(tc, "arguments");
			t->input = a ? json_incref(a) : json_object();
			char *s = dump(t->input);
			t->args = rein_strdup(s ? s : "{}");
			free(s);
		}
		if (t->args == NULL)
			t->args = rein_strdup("");
		out_bytes += t->args ? strlen(t->args) : 0;
	}

	json_t *u = json_object_get(turn, "usage");
	x.input = jint(u, "input", (long)(body_len / 4) > 0 ? (long)(body_len / 4) : 1);
	x.output = jint(u, "output", (long)(out_bytes / 4) > 0 ? (long)(out_bytes / 4) : 1);
	x.cached = jint(u, "cached", 0);
	x.cache_write = jint(u, "cache_write", 0);
	x.reasoning = jint(u, "reasoning", 0);

	reply *r = x.r;
	r->delay = (uint64_t)jint(turn, "delay_ms", 0);
	if (stream) {
		r->stream = true;
		r->events = json_array();
		rein_buf_puts(&r->head, "Content-Type: text/event-stream; charset=utf-8\r\n"
					"Cache-Control: no-cache\r\n");
		if (proto == P_OPENAI)
			oa_stream(&x);
		else
			an_stream(&x);
		if (json_is_object(err))
			mid_stream_error(&x, err);
		if (json_is_true(json_object_get(turn, "malformed")) &&
		    json_array_size(r->events) > 2) {
			/* cut the second event's JSON in half */
			const char *ev = json_string_value(json_array_get(r->events, 1));
			size_t n = strlen(ev);
			char *half = rein_sprintf("%.*s\n\n", (int)(n / 2), ev);
			if (half)
				json_array_set_new(r->events, 1, json_string(half));
			rein_free(half);
		}
		r->limit = json_array_size(r->events);
		long cut = jint(turn, "cut_after", -1);
		if (cut >= 0) {
			r->cut = true;
			if ((size_t)cut < r->limit)
				r->limit = (size_t)cut;
		}
		r->event_delay = (uint64_t)jint(turn, "event_delay_ms", 0);
	} else {
		if (proto == P_OPENAI)
			oa_complete(&x);
		else
			an_complete(&x);
		if (json_is_true(json_object_get(turn, "malformed")))
			r->send_len = r->body.len / 2;
		if (jint(turn, "cut_after", -1) >= 0) {
			r->cut = true;
			r->send_len = r->body.len / 2;
		}
	}
	tools_free(x.tools, x.ntools);
	return r;
}

/* ---- requests ---------------------------------------------------------- */

static void log_request(const lb_request *rq, json_t *body)
{
	json_t *h = json_deep_copy(rq->headers);
	static const char *const secret[] = {"authorization", "x-api-key"};
	for (size_t i = 0; i < 2; i++)
		if (json_object_get(h, secret[i]) != NULL)
			json_object_set_new(h, secret[i], json_string("***"));
	json_t *b = body ? json_incref(body) : json_stringn(rq->body, rq->body_len);
	if (b == NULL)
		b = json_string("");
	json_array_append_new(req_log, json_pack("{s:s,s:s,s:o,s:o}", "method", rq->method, "path",
						 rq->path, "headers", h, "body", b));
}

/* A 4xx when the request would be refused by the real API; NULL if it is fine. */
static const char *check_request(int proto, const lb_request *rq, json_t *body, int *status)
{
	*status = 400;
	if (!json_is_object(body))
		return "We could not parse the JSON body of your request.";
	bool auth = !json_is_false(json_object_get(script, "check_auth"));
	if (auth && proto == P_OPENAI) {
		const char *a = lb_header(rq, "authorization");
		if (a == NULL || strncmp(a, "Bearer ", 7) != 0 || a[7] == '\0') {
			*status = 401;
			return "You didn't provide an API key. You need to provide your API key "
			       "in an Authorization header using Bearer auth.";
		}
	}
	if (auth && proto == P_ANTHROPIC) {
		if (lb_header(rq, "x-api-key") == NULL) {
			*status = 401;
			return "x-api-key header is required";
		}
		if (lb_header(rq, "anthropic-version") == NULL)
			return "anthropic-version: header is required";
	}
	if (!json_is_string(json_object_get(body, "model")))
		return "model: Field required";
	if (!json_is_array(json_object_get(body, "messages")))
		return "messages: Field required";
	if (proto == P_ANTHROPIC && !json_is_integer(json_object_get(body, "max_tokens")))
		return "max_tokens: Field required";
	return NULL;
}

/* Answers one model request; request ownership passes here. */
static void handle_model(conn *c, lb_request *rq, int proto)
{
	json_t *body = json_loadb(rq->body, rq->body_len, 0, NULL);
	log_request(rq, body);
	long seq = ++seq_ids;
	reply *r = NULL;
	int status;
	const char *bad = check_request(proto, rq, body, &status);
	json_t *turns = json_object_get(script, "turns");
	if (bad != NULL) {
		r = error_reply(proto, status, NULL, bad, seq);
	} else if (turn_idx >= json_array_size(turns)) {
		r = error_reply(proto, 500, proto == P_OPENAI ? "server_error" : "api_error",
				"script exhausted", seq);
	} else {
		json_t *turn = json_array_get(turns, turn_idx++);
		r = render_turn(proto, turn, body, rq->body_len, seq);
	}
	json_decref(body);
	lb_request_free(rq);
	if (r == NULL) {
		lb_close(&c->lc);
		return;
	}
	reply_start(c, r);
}

static bool script_valid(const json_t *s)
{
	json_t *turns = json_object_get(s, "turns");
	if (!json_is_object(s) || !json_is_array(turns))
		return false;
	size_t i;
	json_t *t;
	json_array_foreach(turns, i, t) if (!json_is_object(t)) return false;
	return true;
}

static void handle_control(lb_conn *lc, lb_request *rq)
{
	const char *path = rq->path;
	bool post = strcmp(rq->method, "POST") == 0;
	if (strcmp(path, "/control/requests") == 0) {
		lb_respond_json(lc, 200, NULL, json_incref(req_log));
	} else if (strcmp(path, "/control/script") == 0 && post) {
		json_error_t je;
		json_t *s = json_loadb(rq->body, rq->body_len, 0, &je);
		if (!script_valid(s)) {
			json_decref(s);
			respond_plain_error(lc, 400, "a script is {\"turns\": [{...}, ...]}");
		} else {
			json_decref(script);
			script = s;
			turn_idx = 0;
			seq_tools = 0;
			seq_ids = 0;
			lb_respond_json(lc, 200, NULL,
					json_pack("{s:b,s:I}", "ok", 1, "turns",
						  (json_int_t)json_array_size(json_object_get(s, "turns"))));
		}
	} else if (strcmp(path, "/control/reset") == 0 && post) {
		json_array_clear(req_log);
		lb_respond(lc, 200, NULL, "{\"ok\":true}", 11);
	} else if (strcmp(path, "/control/shutdown") == 0 && post) {
		lb_shutdown(lc);
	} else {
		respond_plain_error(lc, 404, "no such control");
	}
	lb_request_free(rq);
}

/* One parsed request: a control, or a model call by the endpoint's protocol. */
static void dispatch(lb_conn *lc, lb_request *rq)
{
	const char *p = rq->path;
	if (strncmp(p, "/control/", 9) == 0) {
		handle_control(lc, rq);
		return;
	}
	int proto = -1;
	if (strcmp(p, "/v1/chat/completions") == 0 || strcmp(p, "/chat/completions") == 0)
		proto = P_OPENAI;
	else if (strcmp(p, "/v1/messages") == 0)
		proto = P_ANTHROPIC;
	if (proto < 0) {
		respond_plain_error(lc, 404, "no such endpoint");
		lb_request_free(rq);
	} else if (strcmp(rq->method, "POST") != 0) {
		lb_respond_json(lc, 405, NULL,
				error_body(proto, 405, "invalid_request_error", "use POST"));
		lb_request_free(rq);
	} else {
		handle_model((conn *)lc, rq, proto);
	}
}

/* ---- main -------------------------------------------------------------- */

static int usage(void)
{
	fprintf(stderr, "usage: modelserver [--port N] [--port-file PATH] [--script FILE] "
			"[--max-seconds S]\n");
	return 2;
}

int main(int argc, char **argv)
{
	lb_opts o = LB_OPTS_DEFAULT;
	const char *script_file = NULL;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--script") == 0 && i + 1 < argc)
			script_file = argv[++i];
		else if (!lb_option(&o, argc, argv, &i))
			return usage();
	}
	loop = uv_default_loop();
	req_log = json_array();
	if (script_file != NULL) {
		json_error_t je;
		script = json_load_file(script_file, 0, &je);
		if (!script_valid(script)) {
			fprintf(stderr, "modelserver: %s: %s\n", script_file,
				script ? "a script is {\"turns\": [{...}, ...]}" : je.text);
			return 1;
		}
	} else {
		script = json_pack("{s:[]}", "turns");
	}

	static const lb_server server = {
		.name = "modelserver",
		.backlog = 1024,
		.conn_size = sizeof(conn),
		.request = dispatch,
		.refuse = respond_plain_error,
		.closing = on_closing,
	};
	return lb_serve(&server, &o);
}
