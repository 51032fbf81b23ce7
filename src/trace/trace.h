/*
 * trace: what a run's durable log means to the outside. Events become spans
 * (the OpenTelemetry GenAI semantic conventions) drawn in a terminal or
 * exported over OTLP/HTTP, and the store's runs and events become
 * Prometheus metrics. It reads the log (store) and the event table (engine);
 * it never changes a run and never stores a secret.
 */
#ifndef REIN_TRACE_H
#define REIN_TRACE_H

#include "base.h"
#include "engine.h"
#include "store.h"

/* ---- metrics (metrics.c) ---------------------------------------------- */

/*
 * Prometheus metrics computed from a store: runs by workflow, version and
 * outcome, escalations, tool and model calls, retries, breaker state, tokens
 * and cost, step latency and the GenAI client histograms (docs/observability.md
 * names every family). A handle remembers the runs that had ended when it last
 * collected, whose events can no longer change: each collect reads the event
 * logs of runs that ended since and of runs still active, and only lists the
 * others. One thread at a time uses a handle.
 */
typedef struct rein_metrics rein_metrics;

/* The Content-Type of what rein_metrics_collect writes. */
extern const char rein_metrics_content_type[];

/* A new handle that has seen nothing. REIN_ENOMEM only. Free with rein_metrics_free. */
int rein_metrics_new(rein_metrics **out, rein_err *err);
/* Frees m; accepts NULL. */
void rein_metrics_free(rein_metrics *m);
/*
 * The rate human review time is priced at, in USD per hour (>= 0, finite;
 * default 0): rein_approval_review_cost_usd_total and
 * rein_completed_run_cost_with_review_usd use it. Set it before the first
 * collect: a run that had ended is folded once, at the rate then in force.
 */
void rein_metrics_set_review_rate(rein_metrics *m, double usd_per_hour);
/*
 * Reads the store's runs (rein_store_run_each) and the events of the runs it
 * has not folded in yet (rein_store_events_load), and appends the text
 * exposition (format 0.0.4) to out. On failure out may hold a partial text the
 * caller discards, and m must be freed (its totals may hold part of a run).
 * Errors: those of the store, REIN_ECORRUPT for a payload that is not JSON,
 * REIN_ENOMEM.
 */
int rein_metrics_collect(rein_metrics *m, rein_store *s, rein_buf *out, rein_err *err);

/* ---- spans (span.c) ------------------------------------------------------
 *
 * A run is a trace. Its spans are a pure function of its events: the run
 * (invoke_workflow {workflow}), each visit of a step (invoke_agent {step} for
 * an agent, step {step} otherwise), and below a step each logical model call
 * (chat {model}, CLIENT, from model.intent to its model.call, model.route or
 * the step's end: its attempts and backoffs are span events), each tool call
 * (execute_tool {tool}, from tool.intent to its result) and each wait
 * (wait {step}, timer.scheduled..timer.fired). Fallbacks, breaker transitions,
 * refusals, route changes and inbox events are span events. Ids are derived:
 *
 *   trace_id = SHA-256("rein.trace\0" || run_id)[0..16)
 *   span_id  = SHA-256("rein.span\0" || run_id || '\0' || role || '\0' ||
 *                       be64(seq))[0..8)
 *
 * with role "run", "step", "chat", "tool" or "wait" and seq the sequence
 * number of the event that opens the span, so the same events always give
 * the same spans (an export repeated after a crash duplicates nothing).
 * No message content (prompts, answers, tool arguments or results) is put in
 * a span, except the GenAI message attributes of a chat whose model.intent
 * recorded its request (trace.store_prompts), and those always pass the
 * detectors of REIN_TRACE_REDACT first, whatever trace.redact says.
 *
 * Governance: a policy.decision is a span event (rein.policy.decision) on
 * the tool span it gated, which also gets rein.policy.decision and
 * rein.policy.rule, or on the step span for a denied or never-sent call. A
 * wait for an approval (the approval.* events, matched by name) is a child
 * span `approval {tool}` (role "approval", INTERNAL) from approval.requested
 * to the deciding event, with rein.approval.id, rein.approval.approver (an
 * array), rein.approval.outcome (granted, denied, expired, unfinished) and
 * its votes, alerts and refused tokens as span events.
 */

/* The redaction classes message content is exported under. */
#define REIN_TRACE_REDACT \
	(REIN_REDACT_EMAIL | REIN_REDACT_PHONE | REIN_REDACT_CARD | REIN_REDACT_IBAN | REIN_REDACT_TOKEN)

/* OTLP's SpanKind values. */
typedef enum rein_span_kind {
	REIN_SPAN_INTERNAL = 1,
	REIN_SPAN_CLIENT = 3,
} rein_span_kind;

/* OTLP's StatusCode values. */
typedef enum rein_span_status {
	REIN_STATUS_UNSET = 0,
	REIN_STATUS_OK = 1,
	REIN_STATUS_ERROR = 2,
} rein_span_status;

typedef struct rein_span {
	uint8_t id[8];
	int parent;          /* index into the trace's spans, -1 for the run */
	char *name;          /* owned */
	char *role;          /* "run", "step", "chat", "tool", "wait", "approval" (static) */
	rein_span_kind kind;
	int64_t start_ms, end_ms;
	bool open;           /* never ended in the log (end_ms: the last event) */
	rein_span_status status;
	char *status_msg;    /* owned, NULL unless an error */
	json_t *attrs;       /* owned object: string, integer, real, bool or array of strings */
	json_t *events;      /* owned array of {name, at (ms), attrs (object)} */
	/* totals of the span and its descendants, for the terminal view */
	int64_t in_tokens, out_tokens;
	double cost_usd;
	int retries;         /* failed attempts that were retried or routed on */
} rein_span;

typedef struct rein_trace rein_trace;

/* A trace for run_id with no events yet; NULL on OOM. Free with rein_trace_free. */
rein_trace *rein_trace_new(const char *run_id);
void rein_trace_free(rein_trace *t);
/*
 * Folds one event (seq order, as events_load gives them) into the trace.
 * REIN_ENOMEM, or REIN_ECORRUPT for an event out of order or of an unknown
 * type. ev is borrowed for the call only.
 */
int rein_trace_add(rein_trace *t, const rein_event_row *ev, rein_err *err);
/* Loads the run's events from the store into a new trace (*out: caller frees).
 * REIN_ENOTFOUND for a run without events. */
int rein_trace_load(rein_store *st, const char *run_id, rein_trace **out, rein_err *err);
/* The trace's spans, the run's span first and parents before children
 * (borrowed until the next add or free). */
const rein_span *rein_trace_spans(const rein_trace *t, size_t *n);
/* The 16-byte trace id; whether the run has ended (run.ended seen). */
const uint8_t *rein_trace_id(const rein_trace *t);
bool rein_trace_ended(const rein_trace *t);
const char *rein_trace_run_id(const rein_trace *t);

/*
 * Draws the span tree as text for a terminal into out: one line per span
 * (name, duration, tokens, cost, retries), its span events indented below,
 * and the failing span marked "FAILED". REIN_ENOMEM only.
 */
int rein_trace_render(const rein_trace *t, rein_buf *out);

/* ---- OTLP/HTTP JSON (otlp.c) ---------------------------------------------- */

/* The GenAI semantic conventions this implements (also the scope's schemaUrl). */
#define REIN_TRACE_SCHEMA_URL "https://opentelemetry.io/schemas/gen-ai/1.42.0"

/*
 * An ExportTraceServiceRequest in OTLP's JSON encoding for n traces (one
 * resourceSpans per trace): hex ids, integer enums, 64-bit integers as
 * strings, lowerCamelCase names. *out: caller frees with json_decref.
 */
int rein_otlp_encode(const rein_trace *const *traces, size_t n, json_t **out, rein_err *err);

/* Where and how to export: from OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (used
 * as is), else OTEL_EXPORTER_OTLP_ENDPOINT + "/v1/traces", else
 * http://localhost:4318/v1/traces; headers from OTEL_EXPORTER_OTLP_HEADERS
 * (k=v,k2=v2, values percent-decoded). */
typedef struct rein_otlp_cfg {
	char *url;          /* owned */
	char **headers;     /* owned "Name: value" lines */
	size_t nheaders;
	int max_attempts;   /* per request, >= 1 (default 5) */
	int64_t max_backoff_ms; /* cap on one wait (default 30000) */
	long timeout_ms;    /* per request (default 10000) */
} rein_otlp_cfg;

/* Fills cfg from the environment. REIN_EINVAL for a malformed header list. */
int rein_otlp_cfg_env(rein_otlp_cfg *cfg, rein_err *err);
void rein_otlp_cfg_clear(rein_otlp_cfg *cfg);

typedef struct rein_otlp_stats {
	long requests;      /* POSTs made, retries included */
	long retries;       /* after 429/502/503/504 */
	long spans_sent;    /* spans in batches the collector accepted */
	long spans_rejected;/* partialSuccess.rejectedSpans */
} rein_otlp_stats;

/* The longest Retry-After honoured, in seconds (a longer one is cut to it). */
#define REIN_OTLP_RETRY_AFTER_MAX_S 86400

/*
 * The two parsers of a collector's answer, apart for the fuzz target
 * (fuzz/fuzz_otlp.c). rein_otlp_retry_after reads one raw response header
 * line (len bytes, no NUL needed, CRLF allowed): the delay in ms of a
 * "Retry-After: SECONDS" line (case-insensitive name, capped at
 * REIN_OTLP_RETRY_AFTER_MAX_S), or -1 for any other line, an HTTP-date or a
 * malformed value. rein_otlp_partial_parse reads a 2xx answer's body (len 0:
 * full success; not JSON or no partialSuccess: full success too) for a
 * request of nspans spans: *rejected is partialSuccess.rejectedSpans (a
 * decimal string or an integer) clamped to [0, nspans], *msg its
 * errorMessage (caller frees with rein_free; NULL when absent or empty).
 * REIN_OK, or REIN_ENOMEM (outputs untouched).
 */
int64_t rein_otlp_retry_after(const char *line, size_t len);
int rein_otlp_partial_parse(const char *body, size_t len, long nspans, long *rejected,
			    char **msg);

/*
 * POSTs one request body (an encoded ExportTraceServiceRequest) to cfg->url
 * with Content-Type application/json, retrying only on 429, 502, 503 and
 * 504 (after Retry-After when given, else an exponential backoff), up to
 * cfg->max_attempts. A partialSuccess in the answer is counted in stats and
 * its message written to stderr. REIN_EIO for a refusal, an unreachable
 * collector or attempts spent. stats may be NULL.
 */
int rein_otlp_post(const rein_otlp_cfg *cfg, const json_t *body, long nspans,
		   rein_otlp_stats *stats, rein_err *err);

/* ---- the online exporter (export.c) ----------------------------------------
 *
 * A handle fed from rein_runner_opts.on_commit: it folds each run's durable
 * events into a trace on the caller's thread (no I/O) and, when a run ends,
 * queues the finished trace for its own thread, which POSTs batches with
 * rein_otlp_post. The queue holds at most queue_max traces: a trace that
 * finds it full is dropped and counted (`rein trace export` sends it later),
 * so an unreachable or slow collector never slows a run. A run whose
 * run.started this handle did not see (resumed by this process) is skipped,
 * and counted, for the same backfill.
 */
typedef struct rein_otlp_exporter rein_otlp_exporter;

typedef struct rein_otlp_exporter_stats {
	long queued;        /* traces queued */
	long exported;      /* traces the collector accepted */
	long dropped;       /* traces that found the queue full, or were left at free */
	long skipped;       /* runs not seen from their start */
	long failed;        /* traces whose request failed (after its retries) */
	rein_otlp_stats http;
} rein_otlp_exporter_stats;

/*
 * A new exporter posting to cfg (copied). threaded: a thread of its own
 * posts as traces are queued; else only rein_otlp_exporter_flush posts (for
 * tests). REIN_ENOMEM, or REIN_EIO when the thread cannot start.
 */
int rein_otlp_exporter_new(const rein_otlp_cfg *cfg, size_t queue_max, bool threaded,
			   rein_otlp_exporter **out, rein_err *err);
/* The on_commit listener (ud: the exporter). Never blocks on the network. */
void rein_otlp_exporter_commit(void *ud, const rein_event_row *rows, size_t n);
/* Posts what is queued now, on the caller's thread (blocking). */
void rein_otlp_exporter_flush(rein_otlp_exporter *x);
void rein_otlp_exporter_stats_get(rein_otlp_exporter *x, rein_otlp_exporter_stats *out);
/*
 * Stops the exporter: its thread posts what is queued for at most drain_ms
 * more (what is left is counted dropped), then the handle is freed. *stats
 * (may be NULL) gets the final counts. Accepts NULL.
 */
void rein_otlp_exporter_free(rein_otlp_exporter *x, int64_t drain_ms,
			     rein_otlp_exporter_stats *stats);

#endif
