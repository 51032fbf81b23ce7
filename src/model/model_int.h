/*
 * model internal header, shared by the files of the model layer, its unit
 * test and its fuzz target. sse.c holds the Server-Sent Events parser;
 * acc.c the accumulator that turns what a server said (whole or in deltas)
 * into a normalized response; openai.c and anthropic.c render requests and
 * parse bodies of their protocols; model.c holds providers, calls, hashing,
 * cost and replay.
 */
#ifndef REIN_MODEL_INT_H
#define REIN_MODEL_INT_H

#include "model.h"

/* ---- Server-Sent Events (sse.c) --------------------------------------- */

/* Called for each complete event: its type ("" when none) and its data
 * lines joined with '\n'. Returns 0 to go on, non-zero to stop the feed. */
typedef int (*model_sse_cb)(void *ud, const char *event, const char *data, size_t len);

/*
 * An incremental SSE parser: feed it any chunks; an event is dispatched at
 * its blank line. Lines end in LF, CRLF or CR; comment lines (":") and
 * unknown fields are ignored; a line or event longer than max (0: 16 MiB)
 * fails the feed with REIN_ELIMIT.
 */
typedef struct model_sse {
	rein_buf line, data, event;
	bool has_data;
	bool skip_lf; /* last chunk ended in CR */
	bool any;     /* some field since the last dispatch: an event is pending */
	size_t max;
} model_sse;

int model_sse_feed(model_sse *s, const char *p, size_t n, model_sse_cb cb, void *ud);
/* True when the input ended inside an event (no blank line after it). */
bool model_sse_pending(const model_sse *s);
void model_sse_free(model_sse *s);

/* ---- accumulating an answer (acc.c) ----------------------------------- */

#define MODEL_MAX_CALLS 256

typedef struct model_call_acc {
	char *id, *name;
	rein_buf args;  /* the arguments text as it arrived */
	json_t *input;  /* arguments already parsed (Anthropic non-stream) */
	bool used;
} model_call_acc;

/* What a request asked that changes how the answer reads. */
typedef struct model_shape {
	bool output_text;        /* structured output in the text (OpenAI) */
	const char *output_tool; /* structured output as this tool's input (Anthropic) */
	bool output_wrapped;     /* the schema was wrapped as {value: ...} */
} model_shape;

typedef struct model_acc {
	rein_buf text;
	model_call_acc calls[MODEL_MAX_CALLS];
	size_t ncalls; /* 1 + the highest index used */
	char *model, *id;
	char finish[64]; /* the server's finish/stop reason, "" if none */
	rein_model_usage usage;
	bool got_usage;
} model_acc;

model_call_acc *model_acc_call(model_acc *a, size_t index);
void model_acc_set(char **slot, const char *s);
/* Builds the normalized response; norm maps finish_raw to the normalized word. */
json_t *model_acc_finish(model_acc *a, const model_shape *shape, const char *finish_norm);
void model_acc_free(model_acc *a);

/* What parsing a body found. */
enum {
	MODEL_PARSE_OK = 0,
	MODEL_PARSE_MALFORMED, /* not the protocol: permanent */
	MODEL_PARSE_TRUNCATED, /* a stream cut before its end: transient */
	MODEL_PARSE_ERROR,     /* the server reported an error in the body */
};

typedef struct model_parsed {
	int kind;
	json_t *response; /* OK: the response; TRUNCATED: what arrived (may be NULL) */
	char why[512];
	bool transient;   /* ERROR: the server's error type is worth retrying */
	char err_type[64];
} model_parsed;

void model_parsed_free(model_parsed *p);

/* Reads an error body ({"error": {"type", "message"}}, both protocols):
 * writes "type: message" into why; false when the body is not one. */
bool model_error_body(const char *body, size_t len, char *why, size_t wlen, char *type,
		      size_t tlen);

/* True for the error types servers use for overload and their own faults
 * (server_error, api_error, overloaded_error, rate_limit_*...). */
bool model_error_type_transient(const char *type);

/* A whole (not streamed) response body: its JSON (caller decrefs), or NULL
 * with *out set: MALFORMED when it is not JSON, ERROR when it is the
 * provider's error object (transient as its type says). */
json_t *model_whole_json(const char *body, size_t len, model_parsed *out);
/* Ends a whole-body parse: out gets a's response (MODEL_PARSE_OK), or
 * MALFORMED when memory runs out. */
void model_whole_done(model_acc *a, const model_shape *shape, const char *finish_norm,
		      model_parsed *out);
/* out is MALFORMED: memory ran out while reading the body. */
void model_whole_nomem(model_parsed *out);

/* True when the body's first non-blank byte is '{' (a server that answered a
 * streaming request with one JSON document). */
bool model_looks_json(const char *body, size_t len);

/* Fills *u from an OpenAI usage object (prompt_tokens, ...details). */
void model_openai_usage(const json_t *usage, rein_model_usage *u);
/* Fills *u from an Anthropic usage object; members absent keep their value
 * (message_delta carries cumulative counts for some of them only). */
void model_anthropic_usage(const json_t *usage, rein_model_usage *u);

/* ---- protocols (openai.c, anthropic.c) -------------------------------- */

/* Per-provider settings the renderers read. */
typedef struct model_wire {
	int64_t max_tokens;          /* 0: none by default */
	const char *max_tokens_field; /* openai */
} model_wire;

/* Renders a checked request as the protocol's body; *shape tells the parser
 * what to expect (its strings borrow from req). Caller decrefs *body. */
int model_openai_render(const json_t *req, const model_wire *w, json_t **body,
			model_shape *shape, rein_err *err);
int model_anthropic_render(const json_t *req, const model_wire *w, json_t **body,
			   model_shape *shape, rein_err *err);

/* Parses a 2xx body (stream: as SSE). Never fails: the verdict is in out. */
void model_openai_parse(const char *body, size_t len, bool stream, const model_shape *shape,
			model_parsed *out);
void model_anthropic_parse(const char *body, size_t len, bool stream,
			   const model_shape *shape, model_parsed *out);

/* ---- a streamed body, whatever the protocol (acc.c) --------------------- */

/* What a protocol's SSE event handler works on (its model_sse_cb ud). */
typedef struct model_stream {
	model_acc acc;
	model_parsed *out;
	bool started, done, failed;
} model_stream;

/*
 * Reads a whole SSE body with the protocol's event handler, then finishes the
 * answer: finish maps the server's finish word to the normalized one, and
 * end names the protocol's last event for the message when it is missing.
 */
void model_parse_stream(const char *body, size_t len, const model_shape *shape,
			model_parsed *out, model_sse_cb on_event,
			const char *(*finish)(const char *), const char *end);

#endif
