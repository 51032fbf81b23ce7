/*
 * The table of event types (src/engine/events.c): one row per type, used by
 * the engine and the runner to emit, by rein_event_check to read a payload
 * from the log, and to generate docs/events.md. Included by engine.h.
 */
#ifndef REIN_EVENT_TYPES_H
#define REIN_EVENT_TYPES_H

#include "base.h"

typedef enum rein_event_type {
	REIN_EV_RUN_STARTED = 0,
	REIN_EV_RUN_RESUMED,
	REIN_EV_RUN_ENDED,
	REIN_EV_RUN_REVIEWED,
	REIN_EV_STEP_COMPLETED,
	REIN_EV_STEP_FAILED,
	REIN_EV_TIMER_SCHEDULED,
	REIN_EV_TIMER_FIRED,
	REIN_EV_INBOX_RECEIVED,
	REIN_EV_SIGNAL_REFUSED,
	REIN_EV_TOOL_INTENT,
	REIN_EV_TOOL_ATTEMPT,
	REIN_EV_TOOL_BACKOFF,
	REIN_EV_TOOL_FALLBACK,
	REIN_EV_TOOL_REFUSED,
	REIN_EV_TOOL_RESULT,
	REIN_EV_TOOL_SHADOWED,
	REIN_EV_BREAKER_OPENED,
	REIN_EV_BREAKER_HALF_OPEN,
	REIN_EV_BREAKER_CLOSED,
	REIN_EV_MODEL_INTENT,
	REIN_EV_MODEL_CALL,
	REIN_EV_MODEL_ATTEMPT,
	REIN_EV_MODEL_BACKOFF,
	REIN_EV_MODEL_ROUTE,
	REIN_EV_MODEL_BREAKER,
	REIN_EV_KILL_HELD,
	REIN_EV_KILL_LIFTED,
	REIN_EV_POLICY_DECISION,
	REIN_EV_APPROVAL_REQUESTED,
	REIN_EV_APPROVAL_ALERT,
	REIN_EV_APPROVAL_GRANTED,
	REIN_EV_APPROVAL_DENIED,
	REIN_EV_APPROVAL_EXPIRED,
	REIN_EV_APPROVAL_REFUSED,
	REIN_EV__COUNT
} rein_event_type;

typedef struct rein_event_def {
	const char *type;   /* the name stored in the log, e.g. "tool.intent" */
	const char *layer;  /* who decides it: engine, runner, tools, model */
	bool step;          /* the event names a step (else run-level) */
	const char *fields; /* the payload: "name:T name:T?" (see events.c) */
	const char *doc;    /* one line for docs/events.md */
} rein_event_def;

extern const rein_event_def rein_event_defs[REIN_EV__COUNT];

/* The row of a type (static storage). */
const rein_event_def *rein_event_def_of(int type);
/* The name stored in the log for a type (static storage). */
#define rein_event_name(t) (rein_event_defs[(t)].type)
/* The type called name, or -1. */
int rein_event_type_find(const char *name);
/*
 * Reads an event against its row: known type, step present iff the type
 * names one, every listed field present (unless optional) with its type.
 * REIN_ECORRUPT with the reason in words otherwise.
 */
int rein_event_check(const char *type, bool has_step, const json_t *data, rein_err *err);
/* Appends the table as Markdown (docs/events.md is this output). */
int rein_event_types_markdown(rein_buf *b);

#endif
