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
 * Reads the store's runs (rein_store_run_each) and the events of the runs it
 * has not folded in yet (rein_store_events_load), and appends the text
 * exposition (format 0.0.4) to out. On failure out may hold a partial text the
 * caller discards, and m must be freed (its totals may hold part of a run).
 * Errors: those of the store, REIN_ECORRUPT for a payload that is not JSON,
 * REIN_ENOMEM.
 */
int rein_metrics_collect(rein_metrics *m, rein_store *s, rein_buf *out, rein_err *err);

#endif
