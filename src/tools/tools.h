/*
 * tools: executes one attempt of a tool call under its contract: builds the
 * HTTP request (secrets resolved at the last moment, never recorded), sends
 * it through io, classifies what came back (transient or not, ambiguous or
 * not), validates the result against the output schema, and keeps the
 * process-wide state that belongs to a tool rather than a run: its circuit
 * breaker and its last good result. Retry decisions are the engine's.
 */
#ifndef REIN_TOOLS_H
#define REIN_TOOLS_H

#include "base.h"
#include "io.h"
#include "spec.h"

typedef struct rein_tools rein_tools;

/* Borrows io and clock for its life. Caller frees. */
int rein_tools_new(rein_io *io, const rein_clock *clock, rein_tools **out, rein_err *err);
void rein_tools_free(rein_tools *tx);

typedef struct rein_tool_outcome {
	bool ok;
	json_t *result;        /* ok: the validated result (owned by the outcome) */
	const char *outcome;   /* failure: short code, e.g. "http_503", "timeout" */
	char error[768];       /* failure: what happened (secrets redacted) */
	bool transient;        /* worth retrying */
	bool ambiguous;        /* the effect may have happened */
	long status;           /* HTTP status, 0 if none */
	int64_t retry_after_ms;/* -1: none */
	int64_t latency_ms;
	json_t *breaker;       /* array of {type, data}: transitions this attempt caused */
} rein_tool_outcome;

typedef void (*rein_tool_cb)(void *ud, rein_tool_outcome *out);

/*
 * Makes one attempt of tool (spec->tools[tool]) with args and key. cb runs
 * exactly once: later from the io loop, or before this returns when no call
 * goes out (breaker open, a missing secret). spec is borrowed until then.
 */
int rein_tools_call(rein_tools *tx, const rein_spec *spec, int tool, const char *key,
		    const json_t *args, rein_tool_cb cb, void *ud, rein_err *err);

/*
 * The same for a run of tenant (NULL: the run names none; borrowed for the
 * call): each ${secret.X} resolves to tenant's entry of a secret scoped by
 * tenant (docs/tools.md), else its default; a tenant with neither fails the
 * call before anything is sent (outcome "config", not transient), naming the
 * secret and the tenant, never a value. Other tenants' entries are not read.
 */
int rein_tools_call_as(rein_tools *tx, const rein_spec *spec, int tool, const char *tenant,
		       const char *key, const json_t *args, rein_tool_cb cb, void *ud,
		       rein_err *err);

/* Cancels every attempt in flight that was started with this ud; each still
 * reports (outcome "cancelled") through its callback, later. */
void rein_tools_cancel(rein_tools *tx, void *ud);

/* The tool's last good result in this process (borrowed), or NULL. */
const json_t *rein_tools_cached(rein_tools *tx, const rein_spec *spec, int tool);

/*
 * Closes the MCP server connections (children end, HTTP sessions are
 * deleted), running the io loop until they are closed. Must come before
 * rein_io_free; rein_tools_free calls it too.
 */
void rein_tools_shutdown(rein_tools *tx);

/*
 * Builds the lock document of spec's tools: for each, its input and output
 * schemas with their SHA-256 (HTTP: the contract's; MCP: the server's
 * tools/list, unless the contract overrides). Connects to each MCP server
 * (blocking, on io). Caller decrefs *lock.
 */
int rein_tools_lock(rein_io *io, const rein_spec *spec, json_t **lock, rein_err *err);

/*
 * Compares a recorded lock with a fresh one. *report is an array of
 * {tool, breaking, change}; returns the number of breaking changes.
 */
int rein_tools_lock_diff(const json_t *old, const json_t *cur, json_t **report);

/* Calls still in flight. */
size_t rein_tools_inflight(const rein_tools *tx);

#endif
