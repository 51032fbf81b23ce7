/*
 * model: one call to a language model, whatever speaks behind it. A request
 * and a response have one normalized JSON shape; providers (OpenAI-style chat
 * completions, Anthropic messages, and a replay of recorded responses) sit
 * behind a table of operations and translate to and from their wire
 * protocols. A call is one attempt with one completion that says what
 * happened (an answer, or an error classed transient or permanent with the
 * raw bytes as evidence); retrying is the engine's decision, never this
 * layer's.
 *
 * Normalized request (JSON object; unknown members are refused):
 *   model         string, required: the model name sent to the server
 *   system        string: the system prompt
 *   messages      array, required, non-empty, each one of
 *                   {role: "user", content: string}
 *                   {role: "assistant", content?: string|null,
 *                    tool_calls?: [{id, name, arguments: JSON value
 *                                   | arguments_raw: string}]}
 *                   (a response's tool_calls go back as they are; an
 *                   arguments_error member is ignored)
 *                   {role: "tool", tool_call_id: string, content: string,
 *                    is_error?: bool}
 *   tools         array of {name, description?, parameters: JSON Schema
 *                 (an object schema), strict?: bool}
 *   output_schema JSON Schema: ask for structured output (OpenAI:
 *                 response_format json_schema with strict true; Anthropic:
 *                 a forced tool named output_name, the answer being its input)
 *   output_name   string: the name for that schema/tool ("final_answer")
 *   max_tokens    integer > 0 (Anthropic needs one: the provider's default)
 *   temperature   number
 *   stream        bool: ask the server to stream (SSE). Not part of the hash.
 *
 * Normalized response (JSON object):
 *   text          string: the assistant's text ("" when none)
 *   tool_calls    array of {id, name, arguments: JSON value} or, when the
 *                 server's arguments are not JSON, {id, name,
 *                 arguments_error: why, arguments_raw: the bytes}
 *   output        structured output (when output_schema was asked), or
 *   output_error  why there is none (not JSON, no final_answer call)
 *   finish_reason "stop" | "tool_calls" | "length" | "other"
 *   finish_raw    the server's own word (e.g. "end_turn"), when it sent one
 *   model         the exact model name the server answered with
 *   id            the server's response id, when it sent one
 *   usage         {input, output, cached, cache_write, reasoning} tokens;
 *                 input counts every input token, cached and written ones
 *                 included
 *   cost_usd      usage priced with the provider's prices
 *   latency_ms    the whole call, as the io layer measured it
 *   streamed      true when the answer came as a stream
 *   replayed      true when the replay provider answered
 */
#ifndef REIN_MODEL_H
#define REIN_MODEL_H

#include "base.h"
#include "io.h"
#include "spec.h"

/* ---- usage and cost -------------------------------------------------- */

typedef struct rein_model_usage {
	int64_t input;       /* all input tokens, cached and cache-written included */
	int64_t output;      /* all output tokens, reasoning included */
	int64_t cached;      /* input tokens read from the prompt cache */
	int64_t cache_write; /* input tokens written to the prompt cache (Anthropic) */
	int64_t reasoning;   /* output tokens spent on reasoning (OpenAI) */
} rein_model_usage;

/* USD per million tokens. */
typedef struct rein_model_price {
	double input, output, cached, cache_write;
} rein_model_price;

/* The cost in USD: cached tokens at the cached rate, cache-written ones at
 * the cache_write rate, the other input tokens at the input rate. */
double rein_model_cost(const rein_model_price *price, const rein_model_usage *usage);

/* Reads a normalized usage object ({input, output, ...}; absent members 0). */
void rein_model_usage_from_json(const json_t *usage, rein_model_usage *out);

/* ---- requests -------------------------------------------------------- */

/* Checks a normalized request; on failure says which member is wrong. */
int rein_model_request_check(const json_t *request, rein_err *err);

/* The request's identity: SHA-256 (hex, 64 chars and a NUL) of the canonical
 * encoding (rein_json_dump) of the request without its "stream" member. The
 * key of replay files and of response caches. */
#define REIN_MODEL_HASH_HEX (2 * REIN_HASH_LEN + 1)
int rein_model_request_hash(const json_t *request, char out[REIN_MODEL_HASH_HEX],
			    rein_err *err);

/* ---- providers ------------------------------------------------------- */

typedef struct rein_model_provider rein_model_provider;

/*
 * Builds a provider from its configuration (a JSON object; see
 * docs/models.md):
 *   type          "openai" | "anthropic" | "replay", required
 *   base_url      openai: "https://api.openai.com/v1" (POST base_url +
 *                 "/chat/completions"); anthropic: "https://api.anthropic.com"
 *                 (POST base_url + "/v1/messages")
 *   api_key_env   the environment variable holding the key, read at each
 *                 call and never logged (openai: none by default, for local
 *                 servers; anthropic: "ANTHROPIC_API_KEY")
 *   headers       object of extra headers (strings)
 *   timeout_ms    whole call (default 120000); connect_timeout_ms
 *   max_response_bytes  (default 16 MiB)
 *   price         {input, output, cached, cache_write} USD per million
 *                 tokens (cached and cache_write default to input)
 *   max_tokens    default max_tokens (anthropic: 4096)
 *   max_tokens_field    openai: "max_completion_tokens" (default) or "max_tokens"
 *   anthropic_version   default "2023-06-01"
 *   replay: file (a path) or responses (inline): either an object
 *                 {request_hash: response, ..., "$sequence": [response...]}
 *                 or an array of responses; on_miss "error" (default for an
 *                 object) or "sequence" (answer unknown hashes with the
 *                 sequence's responses in order; default for an array)
 * Caller frees with rein_model_provider_free.
 */
int rein_model_provider_new(const json_t *config, rein_model_provider **out, rein_err *err);
void rein_model_provider_free(rein_model_provider *p);
/* "openai", "anthropic" or "replay". */
const char *rein_model_provider_type(const rein_model_provider *p);
const rein_model_price *rein_model_provider_price(const rein_model_provider *p);
/* The server a provider sends to, from its base_url: *address the host
 * (without brackets for an IPv6 literal; a copy the caller frees with
 * rein_free) and *port (the URL's, else 443 for https, 80 for http).
 * REIN_ENOTFOUND for a replay provider (it sends nothing), REIN_ENOMEM. */
int rein_model_provider_server(const rein_model_provider *p, char **address, int *port);

/* ---- one call -------------------------------------------------------- */

typedef struct rein_model_outcome {
	bool ok;
	json_t *response;      /* ok: the normalized response; a truncated stream:
				  what arrived before the cut; else NULL. Owned by
				  the outcome (json_incref to keep it) */
	const char *outcome;   /* failure: short code: "connect", "timeout",
				  "http_429", "http_500", ..., "malformed",
				  "truncated", "stream_error", "too_large",
				  "cancelled", "no_api_key", "replay_miss", "other" */
	char error[768];       /* failure: what happened (the API key redacted) */
	bool transient;        /* failure: worth retrying */
	long status;           /* HTTP status, 0 if none */
	int64_t retry_after_ms;/* from Retry-After, -1: none */
	int64_t latency_ms;
	const char *evidence;  /* failure: the raw body (API key redacted), or NULL;
				  valid during the callback only */
	size_t evidence_len;
	char request_hash[REIN_MODEL_HASH_HEX];
} rein_model_outcome;

typedef void (*rein_model_cb)(void *ud, rein_model_outcome *out);

/*
 * Makes one attempt of request with provider. An invalid request returns
 * REIN_EINVAL and cb never runs; otherwise cb runs exactly once, on the loop
 * thread from inside rein_io_run/rein_io_wait, never from inside this
 * function. provider and request are borrowed only during this call. Run the
 * loop until every call completed before freeing io or the provider.
 */
int rein_model_call(rein_io *io, rein_model_provider *provider, const json_t *request,
		    rein_model_cb cb, void *ud, rein_err *err);

/* ---- recording ------------------------------------------------------- */

/*
 * Adds one exchange to a recording object (a replay file's content):
 * recording[hash(request)] = response, and response appended to its
 * "$sequence" array. The response is copied without latency_ms.
 */
int rein_model_record(json_t *recording, const json_t *request, const json_t *response,
		      rein_err *err);

/* ---- the router: tiers to providers ---------------------------------- */

/*
 * Model policy for the runner, one per runner: a spec's tier (`models:`)
 * resolves to a provider built once per (workflow version, tier) from the
 * tier's configuration, ${env.X} resolved and the environment's defaults
 * filled (OPENAI_BASE_URL, OPENAI_API_KEY, ANTHROPIC_BASE_URL; a replay
 * tier's file or from_run); a tier that names no model takes its provider's
 * usual one. A tier with cache: true answers a request it has answered before
 * from the router's cache; with REIN_RECORD set in the environment when the
 * router is made, every answered exchange is recorded and the file written
 * (merged with what it holds) when the router is freed. Each provider has a
 * circuit breaker with its tier's policy (spec: `breaker:`; docs/models.md):
 * `failures` transient failures in a row (within `window_ms` when set) open
 * it, after `cooldown_ms` one call goes through as the probe, a success closes
 * it; its transitions come back as model.breaker events.
 *
 * The router never appends anything: a call's outcome comes back as the
 * events to record (rein_model_routed), and the caller records them on the
 * run that asked.
 */
typedef struct rein_model_router rein_model_router;

typedef struct rein_model_router_opts {
	const rein_clock *clock; /* the breakers' clock; NULL: the system clock */
	/* For a replay tier's from_run: calls each(each_ud, type, payload) for
	 * every event of run, in order. NULL: from_run is refused. */
	int (*history)(void *ud, const char *run,
		       void (*each)(void *each_ud, const char *type, const char *payload),
		       void *each_ud, rein_err *err);
	void *ud;
} rein_model_router_opts;

/* The events one call's outcome asks to record, in order: a model.breaker
 * {state, provider} when the breaker changed, then model.call or
 * model.attempt. Types are static strings; data is owned by the value (NULL
 * data: out of memory building it). */
typedef struct rein_model_routed {
	size_t n;
	struct {
		const char *type;
		json_t *data;
	} ev[2];
} rein_model_routed;

void rein_model_routed_clear(rein_model_routed *rt);

/* A call's completion: rt is valid during the callback only. Return true
 * when the outcome is recorded (the run still wants it): only then is the
 * answer cached and recorded for REIN_RECORD. */
typedef bool (*rein_model_routed_cb)(void *ud, const rein_model_routed *rt);

/* opts may be NULL. Caller frees with rein_model_router_free, after the io
 * loop has completed every call (rein_io_free does). */
int rein_model_router_new(const rein_model_router_opts *opts, rein_model_router **out,
			  rein_err *err);
void rein_model_router_free(rein_model_router *r);

/*
 * One attempt of request (normalized, borrowed for this call) for tier of
 * spec (borrowed until the call completes). On REIN_OK either *now holds the
 * events of an answer given without waiting (a cache hit; a configuration
 * or a request the provider refuses; an open breaker) and cb never runs, or
 * now->n is 0 and cb runs exactly once from the io loop. Caller clears *now.
 * An error return (out of memory) sends nothing.
 */
int rein_model_router_call(rein_model_router *r, rein_io *io, const rein_spec *spec, int tier,
			   const json_t *request, int attempt, rein_model_routed_cb cb, void *ud,
			   rein_model_routed *now, rein_err *err);

/* Calls out (cb not yet run). */
size_t rein_model_router_inflight(const rein_model_router *r);

#endif
