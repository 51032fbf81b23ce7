/*
 * engine: the pure core. A run is the fold of its events:
 *
 *     rein_run_apply(run, event)   folds one event into the state
 *     rein_run_poll(run, now)      says what the state needs next
 *
 * Neither makes a syscall; time arrives as the `now` argument and as each
 * event's timestamp. Lua (`when`, templates) is evaluated through the script
 * sandbox, which is deterministic, so replaying the same events against the
 * same spec version rebuilds exactly the same state.
 *
 * The events a log can hold (type, whether it names a step, its payload) are
 * the rows of one table, event_types.h / events.c: emit, compare and check
 * by that table, never by a string literal. docs/events.md is generated from
 * it (`rein event-types`).
 */
#ifndef REIN_ENGINE_H
#define REIN_ENGINE_H

#include "base.h"
#include "event_types.h"
#include "script.h"
#include "spec.h"

typedef struct rein_run rein_run;

enum {
	REIN_CMD_NONE = 0, /* the run has ended: nothing more to do */
	REIN_CMD_EMIT,     /* append this event (then apply it) */
	REIN_CMD_EXEC,     /* execute step's work (rein_run_exec), append the result */
	REIN_CMD_SLEEP,    /* nothing to do before `due` (ms since epoch) */
	REIN_CMD_BUSY,     /* every ready step has an EXEC outstanding */
};

typedef struct rein_cmd {
	int kind;
	const char *type; /* EMIT: the event type, rein_event_name(REIN_EV_*) (static) */
	int step;         /* EMIT/EXEC: the step index, -1 for run-level */
	json_t *data;     /* EMIT: the event data, owned by the command */
	int64_t due;      /* SLEEP */
} rein_cmd;

/* Releases what a command owns. */
void rein_cmd_clear(rein_cmd *c);

/*
 * Creates the state of a new or recovering run. Borrows spec and sandbox for
 * the run's life. The first event applied must be run.started.
 */
int rein_run_new(const rein_spec *spec, rein_script *sandbox, const char *id, rein_run **out);
void rein_run_free(rein_run *r);

/*
 * Folds one event into the state. data is borrowed. Returns REIN_ECORRUPT
 * (detail in err) when the event does not fit the state, e.g. a completion for
 * a step that is not running: the log and the spec disagree. REIN_ENOMEM when
 * memory runs out (the state is then unusable: free it and replay the log).
 * A type that is not in the table (event_types.h) is REIN_ECORRUPT in every
 * build. In the debug (asan) build every payload is read against its row
 * (rein_event_check) and the state's invariants are checked after every
 * event (rein_run_check); a misfit or a broken one is REIN_ECORRUPT.
 */
int rein_run_apply(rein_run *r, const char *type, const char *step, int64_t at,
		   const json_t *data, rein_err *err);

/*
 * The next thing the run needs at time now, written to *cmd. Deterministic:
 * the same state and now give the same command. An EXEC already handed out is
 * not handed out again until its result is applied (rein_run_forget_exec
 * clears that mark, e.g. after a crash of the executor).
 */
int rein_run_poll(rein_run *r, int64_t now, rein_cmd *cmd, rein_err *err);

/*
 * Executes the work of an EXEC command for step (a code step's Lua), giving
 * the event to append: *type is the name of REIN_EV_STEP_COMPLETED or
 * REIN_EV_STEP_FAILED (static) and *data a new reference. Only fails
 * (non-zero) on out-of-memory; a script error is a step.failed event.
 *
 * clock is what the script's time limit is read against (the executor's
 * clock, the one that stamps the events; the engine never reads one
 * itself); NULL: no wall-clock limit, only the instruction budget. With a
 * clock, a script still running when clock reaches the run's deadline
 * (run.started + budgets.timeout_s) is stopped (checked every 16,000
 * instructions) and the step fails with "timeout: the run exceeded
 * timeout_s N while step 'S' ran", which ends the run failed with that
 * reason (on_fail is not taken: the run's time is up). A replay applies the
 * recorded step.failed; it never runs the script against a clock.
 */
int rein_run_exec(rein_run *r, int step, const rein_clock *clock, const char **type,
		  json_t **data, rein_err *err);

/* What an EXEC for a tool step asks for (all borrowed from the run state). */
typedef struct rein_tool_call {
	int tool;           /* index into spec->tools */
	const char *key;    /* idempotency key, the same for every attempt */
	const json_t *args; /* validated arguments */
	int attempt;        /* 1 for the first */
	bool cached;        /* answer with tool.fallback {kind: cached, result} instead */
} rein_tool_call;

int rein_run_tool_call(const rein_run *r, int step, rein_tool_call *call);

/* What an EXEC for an llm step asks for (borrowed from the run state). */
typedef struct rein_model_request {
	int tier;              /* index into spec->tiers */
	const json_t *request; /* the normalized request (docs/models.md) */
	int attempt;
} rein_model_request;

int rein_run_model_call(const rein_run *r, int step, rein_model_request *call);

/* Which effect an EXEC for step wants: REIN_STEP_LLM (a model call),
 * REIN_STEP_TOOL (a tool call) or REIN_STEP_CODE. An agent step alternates;
 * a verify step's only EXEC is its model check (REIN_STEP_LLM). */
int rein_run_effect(const rein_run *r, int step);

/*
 * Tells a run rebuilt from its log that the process that advanced it is gone:
 * a tool call that was in flight (intent recorded, no outcome) is in doubt.
 * It is sent again with the same key if the tool honours keys; otherwise the
 * run ends needs_review with the evidence.
 */
void rein_run_recovered(rein_run *r, int64_t now);

/*
 * Resolving a run that ended needs_review over a tool step's call (the
 * evidence names its key). review is the inbox entry's data: {action, by?}
 * and, by action, "done" {result} (the operator checked: the effect happened
 * with this result, which must match the tool's output schema), "retry"
 * (send the call again with the same idempotency key) or "fail" {reason}
 * (the step fails with it and takes its on_fail). REIN_OK when the run would
 * accept it; REIN_EINVAL (or REIN_ESCHEMA for a result) saying why not.
 * Delivered as an inbox entry of type "review", it is applied as
 * inbox.received; the next poll emits run.reviewed, which reopens the run.
 * A review the run does not accept is recorded and changes nothing.
 */
int rein_run_review_check(const rein_run *r, const json_t *review, rein_err *err);

/*
 * The kill switch and shadow mode (docs/operations.md). The runner checks the
 * store's switches right before a write call goes out; a covered call is
 * recorded as kill.held {tool, key, switch, reason} instead of being sent,
 * and the run waits (status waiting, reason "killed: ...") until the runner
 * records kill.lifted {tool, key}, after which the next poll asks for the
 * same call again (same key). A held call is known not to have been sent: a
 * resume does not take it as in doubt. While held, the poll sleeps
 * ENGINE_KILL_RECHECK_MS at a time and the run's timer (rein_run_wake_at) is
 * the hold's time plus that, so a released run is claimed and looked at again.
 */
/* True while step's call is held by a kill switch. */
bool rein_run_killed(const rein_run *r, int step);
/* A shadow run (run.started shadow: true, or the spec's shadow: true): no
 * write call is sent; the runner records tool.shadowed and answers it with
 * the contract's shadow result. */
bool rein_run_shadow(const rein_run *r);
/* run.started's requester.tenant (borrowed), or NULL: the kill switch's
 * --tenant selector. */
const char *rein_run_tenant(const rein_run *r);

/* The policy sets the run decides with (borrowed): sets[0] the organisation
 * policies it pinned, sets[1] the workflow's; either may be NULL. */
void rein_run_policies(const rein_run *r, const rein_policy *sets[2]);
/*
 * Gives the run the counts of its tenant's calls for the per-tenant limits
 * of its policies ({rule id: n}, docs/policy.md; borrowed, a reference is
 * kept; NULL: none), counted by the runner from the store before it polls.
 * The next decision uses them and records them (policy.decision
 * tenant_counts), so replay gives the run the recorded ones instead. Not
 * part of the fold: the engine stays pure.
 */
void rein_run_set_tenant_counts(rein_run *r, json_t *counts);

rein_status rein_run_status(const rein_run *r);
/* True once the engine has decided the run ends (the next poll emits
 * run.ended): the executor sends nothing more for it. */
bool rein_run_ending(const rein_run *r);
/* The final output (borrowed), NULL until the run has ended. */
const json_t *rein_run_output(const rein_run *r);
/* The reason of the end; while a call is held by a kill switch (and the run
 * waits), "killed: REASON (switch N)". */
const char *rein_run_reason(const rein_run *r);
const char *rein_run_id(const rein_run *r);
const rein_spec *rein_run_spec(const rein_run *r);
/* True while a wait step waits for a signal (the runner then looks at the
 * run's inbox while it sleeps). */
bool rein_run_awaits_signal(const rein_run *r);
/* The earliest timer due (ms) while waiting, else 0. */
int64_t rein_run_wake_at(const rein_run *r);
/* Number of steps entered so far. */
int64_t rein_run_steps_taken(const rein_run *r);

/* Debug invariant check: the state is consistent (threads, joins, counters). */
bool rein_run_check(const rein_run *r, rein_err *err);

#endif
