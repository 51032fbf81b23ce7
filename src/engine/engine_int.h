/*
 * Internal to engine: the run state (threads, spend) and the pieces the
 * engine's files share. engine.c holds the core (routing, parallel joins,
 * timers, the inbox, apply/poll); engine_propose.c the one path of a
 * proposed tool call (parse, validate, policy, risk, budget -> tool.intent)
 * and the one retry machine of tool and model calls; engine_tool.c tool
 * calls after the intent (attempts, ambiguity, fallbacks); engine_model.c
 * llm and agent steps (requests, repair turns, budgets, the tool-calling
 * loop).
 */
#ifndef REIN_ENGINE_INT_H
#define REIN_ENGINE_INT_H

#include <assert.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "engine.h"

enum {
	T_READY = 1, /* must execute its step */
	T_TIMER,     /* waiting for due */
	T_FIRED,     /* timer fired; step.completed to emit */
	T_JOIN,      /* parallel: waiting for branches */
	T_JOINED,    /* parallel: all branches done; step.completed to emit */
	T_DONE,
	T_CALL,      /* tool: intent recorded, an attempt to make or in flight */
	T_BACKOFF,   /* tool: a failed attempt; tool.backoff to emit (delay decided) */
	T_SLEEPING,  /* tool: waiting for due before the next attempt */
	T_GIVEUP,    /* tool: no more attempts; fallback or failure to emit */
	T_FALLEN,    /* tool: fallback result ready; step.completed to emit */
	T_TOOLS,     /* agent: the model's tool calls to go through, one by one */
	T_SIGNAL,    /* wait: for a signal (due: its timeout, 0 until scheduled) */
	T_APPROVAL,  /* tool/agent: a proposed call waits for a human decision */
};

/* thread.appr: where the approval of the call keyed appr_key stands */
enum { ENGINE_APPR_NONE = 0, ENGINE_APPR_WAIT, ENGINE_APPR_GRANTED, ENGINE_APPR_DENIED };

typedef struct thread {
	int step;
	int state;
	bool issued;    /* EXEC handed out, result not yet applied */
	int parent;     /* -1: main flow */
	int pgen;       /* the parent's join generation this thread belongs to */
	int gen;        /* this thread's join generation (parallel visits) */
	int pending;    /* JOIN: branches still running */
	int branch;     /* index within the parent's branches */
	int64_t due;    /* TIMER */
	int64_t wait_ms;
	/* tool calls */
	int tool;         /* the tool being called (the step's, or a fallback) */
	int fb_depth;     /* fallbacks taken */
	char key[80];     /* idempotency key of the current call */
	json_t *args;     /* arguments of the current call */
	int attempts;     /* attempts that ended (failed) */
	int64_t intent_at;
	int64_t delay_ms; /* T_BACKOFF: the decided delay */
	bool in_doubt;    /* rebuilt after a crash with an attempt unresolved */
	bool killed;      /* T_CALL: held by a kill switch (kill.held), not sent */
	int64_t kill_at;  /* ... since (the kill.held's time) */
	char *error;      /* the last attempt's error */
	/* llm */
	int tier;         /* the tier being called */
	int repairs;      /* repair turns taken */
	json_t *msgs;     /* extra messages (repair turns) after the prompt */
	/* agent */
	int phase;        /* 0: talking to the model, 1: running its tool calls */
	int turns;        /* model calls answered in this visit */
	int refused;      /* proposed calls refused (unknown tool, bad arguments) */
	json_t *calls;    /* the tool calls of the last answer */
	size_t idx;       /* the one being handled */
	/* what this visit of an llm/agent step has spent (its own budget) */
	int64_t s_tokens, s_calls, s_tools;
	double s_cost;
	int64_t s_started; /* the first model intent of this visit (ms) */
	/* the policy decision of the call keyed pol_key (policy.decision applied):
	   REIN_POLICY_* and, when not allowed, why (the tool step's error) */
	char pol_key[80];
	int pol_decision;
	char *pol_why;
	json_t *pol_data; /* that policy.decision's data */
	/* approvals (engine_approval.c): the call keyed appr_key asked for one */
	char appr_key[80];
	int appr;           /* ENGINE_APPR_* */
	int appr_back;      /* T_READY or T_TOOLS: the state a decision returns to */
	json_t *appr_req;   /* the approval.requested data */
	json_t *appr_votes; /* the accepted approvers' ids */
	json_t *appr_args;  /* the approved arguments (an approver's edit), or NULL */
	char *appr_why;     /* a denial, as a tool step's error */
	int64_t appr_due;   /* the SLA's timer (0: none) */
	bool appr_alerted;  /* high risk: approval.alert recorded */
	json_t *result; /* DONE branch result, or JOINED output */
	json_t *last;   /* output of the last completed step on this thread */
	/* provenance (engine_label.c): the label of last; an llm/agent visit's
	   context label (without the model) and its trusted values [[v, label]] */
	json_t *last_label, *ctx_label, *ctx_vals;
	int ctx_visit, ctx_step;
} thread;

struct rein_run {
	const rein_spec *spec;
	rein_script *sb;
	char *id;
	json_t *input;
	json_t *runinfo;
	json_t **outs; /* per step: the latest output */
	int *visits;
	thread *th;
	size_t nth, cap;
	bool started, ended;
	rein_status status;
	json_t *output;
	char *reason;
	bool ending; /* decided, run.ended to emit */
	rein_status end_status;
	json_t *end_output;
	char *end_reason;
	json_t *review; /* needs_review: an accepted resolution, run.reviewed to emit */
	int64_t started_at, deadline, steps_taken;
	/* what the run has spent, charged from recorded events */
	int64_t spent_tokens, model_calls, tool_calls;
	double spent_cost;
	char *last_error;
	json_t *vars; /* make_vars's {why, requester}, kept until either changes */
	/* "step 'S' failed: <error>" of the last step failure: the reason of an
	 * end step that gives none and does not succeed (enter_end) */
	char *fail_reason;
	/* signals (engine_apply_inbox): received and not yet consumed by a wait,
	 * by name: {NAME: [{id, data}, ...]} in arrival order; the ids seen;
	 * the refusals still to record ([{id, name, error}]) */
	json_t *signals, *sig_seen, *sig_refused;
	/* the kill switch and shadow mode (engine_tool.c) */
	char *kill_reason; /* "killed: ..." of the last kill.held, while one is held */
	char *tenant;      /* run.started's requester.tenant, or NULL */
	bool shadow;       /* run.started shadow, or the spec's shadow: true */
	/* governance (engine_propose.c): who asked (run.started requester), the
	   organisation policies pinned by run.started (compiled; org_error when
	   they do not compile: every call is then denied), the calls recorded so
	   far ([{tool, write, at}], for limits) and the recorded clock (the time
	   of the latest event applied) */
	json_t *requester;
	rein_policy *org_pol;
	char org_version[65];
	char *org_error;
	json_t *pol_hist;
	json_t *tenant_counts; /* per-tenant limits: the counts the runner gave last
				  (rein_run_set_tenant_counts), or NULL */
	int64_t clock_ms;
	/* provenance (engine_label.c): the input's label, each step output's,
	   and what the evaluation being tracked read (lab_on) */
	json_t *in_label, **labels, *const_label;
	json_t *lab_acc, *lab_reads;
	const json_t *lab_out;
	bool lab_on, lab_oom;
	bool lab_const; /* the code step being evaluated reads only constants:
			   untracked (engine_label_track_code) */
	/* engine_step_find: the step it found last, and the code step being
	   evaluated (its reads are tried first), or NULL */
	int find_last;
	const rein_step_code *lab_code;
	/* approvals (engine_approval.c): approval and denial inbox entries still
	   to judge, in arrival order ([{inbox, type, data}]); the nonces of the
	   tokens accepted ({nonce: true}); "approval: ..." while one waits */
	json_t *appr_queue, *appr_nonces;
	char *appr_reason;
};

/*
 * Conventions of the engine_* functions below: those that return int return
 * REIN_OK or an error code (REIN_ENOMEM, REIN_ECORRUPT, REIN_EINVAL) with the
 * detail in err. The poll functions (engine_poll_*, engine_*_gate,
 * engine_propose, engine_retry_poll) fill cmd only when they have something
 * for the caller: on REIN_OK, cmd->kind != REIN_CMD_NONE says they did (cmd
 * arrives cleared). ti is always a valid thread index of r.
 */

/* Evaluates a template against the run (input, steps, run, why) with out as
 * `out`; *res is a new reference. REIN_ENOMEM, or a script error in err. */
int engine_eval_template(rein_run *r, const json_t *tmpl, const json_t *out, json_t **res,
			 rein_err *err);
/* A string's text, or the JSON of anything else; NULL when out of memory. */
char *engine_json_text(const json_t *j);
/* Replaces *dst with a copy of s (NULL clears it). REIN_ENOMEM leaves *dst NULL. */
int engine_set_str(char **dst, const char *s);
/* Decides the run ends with st (the first decision wins); steals output.
 * REIN_ENOMEM when the reason cannot be copied. */
int engine_decide_end(rein_run *r, rein_status st, const char *reason, json_t *output);
/* The step on thread t completed with out (borrowed): remember it, follow `next`. */
int engine_route(rein_run *r, int t, json_t *out, rein_err *err);
/* The step on thread t failed with msg: its on_fail path, or the run's end. */
int engine_step_error(rein_run *r, int t, const char *msg, rein_err *err);

/* Evaluates the Lua expression expr with out as `out` (and input, steps, run,
 * requester, why as for `when`); *res (caller decrefs) on REIN_OK. */
int engine_eval_expr(rein_run *r, const char *expr, const json_t *out, json_t **res,
		     rein_err *err);

/* A verify step on thread ti: when ready, checks its rules over the previous
 * output and emits step.failed naming every rule that failed, or with no
 * model check step.completed (the output passed through); the model check
 * then goes as engine_poll_llm (engine_verify.c). */
int engine_poll_verify(rein_run *r, int ti, int64_t now, rein_cmd *cmd, int64_t *due, bool *busy,
		       rein_err *err);
/* The model's answer o ({confidence, rationale}, valid) for the verify step on
 * thread ti: under min_confidence the step fails, else the thread holds the
 * previous output as its result (T_FALLEN). */
int engine_verify_answer(rein_run *r, int ti, const json_t *o, rein_err *err);
/* The live thread at step s, or -1. */
int engine_thread_at(const rein_run *r, int s);
/* Fills c with an EMIT of type (its name from the table) for step, stealing
 * data; a NULL data is out of memory (REIN_ENOMEM, c untouched). */
int engine_emit(rein_cmd *c, rein_event_type type, int step, json_t *data, rein_err *err);
/* The tool thread t is calling (its step's, or a fallback), or NULL. */
const rein_tool *engine_cur_tool(const rein_run *r, const thread *t);
/* The idempotency key of t's current call, derived from run, step, visit (and
 * the agent's turn and call index): the same across retries and resumes. */
void engine_make_key(const rein_run *r, const thread *t, char out[80]);
/* The full-jitter delay before t's next attempt under policy p (deterministic). */
int64_t engine_backoff_ms(const rein_run *r, const thread *t, const rein_retry_policy *p);
/* {tool, key, args, attempts, last_error} of t's call, for a human; NULL if OOM. */
json_t *engine_evidence(const rein_run *r, const thread *t);
/* A needs_review run's resolution (engine_tool.c): inbox.received of an
 * ended run, run.reviewed, and the poll of an ended run. */
int engine_apply_ended(rein_run *r, rein_event_type evt, int64_t at, const json_t *data,
		       rein_err *err);
int engine_poll_review(rein_run *r, rein_cmd *cmd, rein_err *err);
/* The families of the table (event_types.h) the apply dispatches on. */
#define ENGINE_EV_TOOL(evt) ((evt) >= REIN_EV_TOOL_INTENT && (evt) <= REIN_EV_BREAKER_CLOSED)
#define ENGINE_EV_MODEL(evt) ((evt) >= REIN_EV_MODEL_INTENT && (evt) <= REIN_EV_MODEL_BREAKER)
/* Folds a tool.* or breaker.* event into thread ti (a tool or agent step). */
int engine_apply_tool(rein_run *r, int ti, rein_event_type evt, int64_t at, const json_t *data,
		      rein_err *err);
/* What thread ti on a tool step (or an agent's accepted call) needs at now;
 * lowers *due to a pending wake-up, sets *busy when an EXEC is outstanding. */
int engine_poll_tool(rein_run *r, int ti, int64_t now, rein_cmd *cmd, int64_t *due, bool *busy,
		     rein_err *err);
/* The step's own wall-time budget: past it, cmd is the step.failed {budget}. */
int engine_step_time_gate(rein_run *r, int ti, int64_t now, rein_cmd *cmd, rein_err *err);
/* What thread ti on an llm step (or an agent talking to its model) needs at now. */
int engine_poll_llm(rein_run *r, int ti, int64_t now, rein_cmd *cmd, int64_t *due, bool *busy,
		    rein_err *err);
/* Folds a model.* event into thread ti (an llm or agent step). */
int engine_apply_llm(rein_run *r, int ti, rein_event_type evt, int64_t at, const json_t *data,
		     rein_err *err);
/* An agent's call was handled (tool.result or tool.refused): the model is told. */
int engine_agent_tool_done(rein_run *r, int ti, rein_event_type evt, const json_t *data,
			   rein_err *err);
/* The model answered an agent turn (resp borrowed): its calls or its final answer. */
int engine_agent_answer(rein_run *r, int ti, const json_t *resp, rein_err *err);
/* The next proposed call of the agent's last answer, through engine_propose. */
int engine_poll_agent_tools(rein_run *r, int ti, rein_cmd *cmd, rein_err *err);
/* Checks out against the step's output schema: REIN_OK, REIN_ESCHEMA with
 * *why (caller frees) saying where, or REIN_ENOMEM. */
int engine_check_output(const rein_step *st, const json_t *out, char **why);
/* cmd: the decided backoff of t as an event of type (tool.backoff or model.backoff). */
int engine_emit_backoff(rein_cmd *cmd, rein_event_type type, const thread *t, int64_t now,
			rein_err *err);

/* kill.held / kill.lifted / tool.shadowed on thread ti's call (T_CALL). */
int engine_apply_kill(rein_run *r, int ti, rein_event_type evt, int64_t at, const json_t *data,
		      rein_err *err);
/* How often a call held by a kill switch is looked at again (ms): the run
 * sleeps this long between two looks, and a released run's timer says so. */
#define ENGINE_KILL_RECHECK_MS 1000

/* ---- the path of a proposed tool call (engine_propose.c) ------------------ */

/* Where a proposed call comes from, and so where a refusal goes. */
enum {
	ENGINE_FROM_STEP = 1, /* a tool step: refused -> step.failed (its on_fail path) */
	ENGINE_FROM_AGENT,    /* an agent's call: refused -> tool.refused, told to the model */
};

/*
 * Takes the proposed call of thread ti through DESIGN section 4, steps 1-5,
 * in order: (1) parse it and resolve the tool, (2) validate the arguments
 * against the contract's input schema, (3) policy (engine_policy_gate),
 * (4) risk tier (engine_risk_gate), (5) budgets (max_tool_calls of the step
 * and of the run). cmd is then the tool.intent {tool, key, args, call_id?},
 * or the refusal: for ENGINE_FROM_STEP a step.failed {error[, budget]}, for
 * ENGINE_FROM_AGENT a tool.refused {call_id, tool, error} (a spent budget
 * fails the step either way). Always fills cmd on REIN_OK.
 */
int engine_propose(rein_run *r, int ti, int origin, rein_cmd *cmd, rein_err *err);

/* Step 3, policy (docs/policy.md): with no policy in force (the workflow
 * declares no `policies:` and no organisation policies are pinned) every call
 * is allowed and nothing recorded. Otherwise the first poll of the call keyed
 * key evaluates the policies and fills cmd with the policy.decision; once
 * that is applied, REIN_OK with *deny NULL to allow the call, or *deny
 * (caller frees) the refusal: for an agent (agent true) a text without the
 * rules' reasons. */
int engine_policy_gate(rein_run *r, int ti, int tool, const json_t *args, const char *key,
		       bool agent, rein_cmd *cmd, char **deny, rein_err *err);
/* run.started: the requester and the organisation policies it pins. */
int engine_policy_start(rein_run *r, const json_t *data, rein_err *err);
/* policy.decision for thread ti, and every event's time (the recorded clock),
 * and tool.intent (a call recorded, for limits). */
int engine_policy_apply(rein_run *r, int ti, const json_t *data, rein_err *err);
int engine_policy_note(rein_run *r, rein_event_type evt, int64_t at, const json_t *data,
		       rein_err *err);
void engine_policy_free(rein_run *r);
/*
 * Step 4, risk tier (engine_approval.c): a call needs an approval when its
 * policy decision is approve or its tool's risk is medium or high. The first
 * poll of such a call keyed key fills cmd with approval.requested (the thread
 * then waits, T_APPROVAL); once decided, REIN_OK with *deny NULL to proceed
 * (granted), or *deny (caller frees) after a denial: for an agent a text
 * without the approver's reason. Calls needing none: REIN_OK, *deny NULL.
 */
int engine_risk_gate(rein_run *r, int ti, int tool, const json_t *args, const char *key,
		     bool agent, rein_cmd *cmd, char **deny, rein_err *err);
/* An approved call: *args (owned) becomes the approved arguments when thread
 * ti's current call was granted with an edit. REIN_ENOMEM. */
int engine_approval_args(rein_run *r, int ti, json_t **args, rein_err *err);
/* Folds approval.requested/alert/granted/denied/expired into thread ti. */
int engine_apply_approval(rein_run *r, int ti, rein_event_type evt, int64_t at, const json_t *data,
			  rein_err *err);
/* approval.refused (run-level): the judged inbox entry leaves the queue. */
int engine_apply_approval_refused(rein_run *r, const json_t *data, rein_err *err);
/* inbox.received of type approval or denial: queued to be judged. */
int engine_approval_inbox(rein_run *r, const json_t *msg, rein_err *err);
/* The oldest queued approval or denial, judged: approval.refused, .granted or
 * .denied in cmd (cmd untouched when the queue is empty). */
int engine_poll_approvals(rein_run *r, rein_cmd *cmd, rein_err *err);
/* Thread ti in T_APPROVAL: the alert of a high-risk call, the SLA's expiry;
 * else lowers *due to the SLA timer. */
int engine_poll_approval(rein_run *r, int ti, int64_t now, rein_cmd *cmd, int64_t *due,
			 rein_err *err);
/* What the run holds for approvals (the thread's and the run's). */
void engine_approval_free_thread(thread *t);
void engine_approval_free(rein_run *r);

/* ---- provenance labels (engine_label.c, docs/policy.md "Provenance") ------ */
/* run.started: the input's label (requester, read by its tenant). */
int engine_label_start(rein_run *r, rein_err *err);
void engine_label_free(rein_run *r);
/* The sandbox's on_read (ud: the run): joins what a tracked evaluation reads. */
void engine_label_read(void *ud, int what, const char *name);
/* Starts tracking reads (`out` labelled out_label, borrowed; names: keep the
 * names read too); untrack ends it: the join of what was read (a constant's
 * label when nothing; caller decrefs; never changed: labels are shared) and,
 * if reads, the names read ("input", "steps.S"); NULL: OOM. */
void engine_label_track(rein_run *r, const json_t *out_label, bool names);
json_t *engine_label_untrack(rein_run *r, json_t **reads);
/* engine_label_track for the evaluation of code step `step` on thread t,
 * unless everything it may read is labelled with the spec's constant (then
 * its label is known: lab_const, nothing is tracked); engine_label_end_code
 * ends either, whether or not engine_label_code ran. */
void engine_label_track_code(rein_run *r, int t, int step);
void engine_label_end_code(rein_run *r);
/* rein_spec_step(r->spec, name), trying first the step found last and the
 * steps the code step being evaluated names: a script's `steps.x` is looked
 * up by the read tracking and then by the sandbox, for each read. */
int engine_step_find(rein_run *r, const char *name);
/* Ends the tracking of code step `step`'s script (tracked since its start)
 * and adds `labels` (what it read) to data, its step.completed, unless they
 * are what the step's text can read (then its apply derives the same).
 * REIN_ENOMEM. */
int engine_label_code(rein_run *r, int step, json_t *data);
/* Folds model.intent (the prompt's labels and reads) and tool.result (the
 * tool's label) into thread ti's context. */
int engine_label_note(rein_run *r, int ti, rein_event_type evt, const json_t *data,
		      rein_err *err);
/* step.completed of thread ti: the output's label (recorded, or derived). */
int engine_label_completed(rein_run *r, int ti, const json_t *data, rein_err *err);
/* {agent, context, args: {NAME: label}} of thread ti's proposed call (caller
 * decrefs); NULL with err when out of memory. */
json_t *engine_label_call(rein_run *r, int ti, const json_t *args, bool agent, rein_err *err);

/* ---- the retry machine (engine_propose.c), shared by tools and models ----- */

/* One effect's retry parameters: which events, which policy. */
typedef struct engine_retry {
	rein_event_type backoff_type;    /* REIN_EV_TOOL_BACKOFF or REIN_EV_MODEL_BACKOFF */
	const rein_retry_policy *policy; /* attempts, backoff, total time */
	bool explain;                    /* the error says why no retry followed */
	/* optional: checked before an attempt after a backoff (fills cmd to stop it) */
	int (*gate)(rein_run *r, int ti, rein_cmd *cmd, rein_err *err);
} engine_retry;

/* An attempt of thread t failed (X.attempt, data borrowed, at its time):
 * decides a backoff (T_BACKOFF with the delay) or giving up (T_GIVEUP, with
 * t->error the reason). REIN_ENOMEM when the error cannot be kept. */
int engine_retry_failed(rein_run *r, thread *t, const engine_retry *rp, int64_t at,
			const json_t *data, rein_err *err);
/* X.backoff was applied: t sleeps until its due_at (T_SLEEPING). */
void engine_retry_sleep(thread *t, const json_t *data);
/* Polls a thread in T_BACKOFF (emit the backoff) or T_SLEEPING (when due,
 * the gate, then the next attempt as an EXEC; else lowers *due). */
int engine_retry_poll(rein_run *r, int ti, const engine_retry *rp, int64_t now, rein_cmd *cmd,
		      int64_t *due, rein_err *err);

/* ---- inbox ------------------------------------------------------------------ */

/* Folds an inbox.received {id, type, data, sender, at}: a cancel decides the
 * run ends cancelled; a signal {name, data} is kept by name until a wait step
 * consumes it (once per id; data that does not match the schema of its wait
 * step is queued for a signal.refused instead); other types are recorded and
 * ignored for now. */
int engine_apply_inbox(rein_run *r, const json_t *data, rein_err *err);
/* What thread ti, waiting for a signal (T_SIGNAL), needs at now: the buffered
 * signal as step.completed, the timeout's timer.scheduled or timer.fired. */
int engine_poll_signal(rein_run *r, int ti, int64_t now, rein_cmd *cmd, int64_t *due,
		       rein_err *err);
/* The inbox.received of a signal (msg borrowed): kept, ignored or refused. */
int engine_apply_signal(rein_run *r, const json_t *msg, rein_err *err);
/* The oldest refusal not yet recorded, as a signal.refused (cmd untouched: none). */
int engine_poll_refused(rein_run *r, rein_cmd *cmd, rein_err *err);
/* A signal.refused was applied: the refusal it records is done. */
int engine_apply_refused(rein_run *r, const json_t *data, rein_err *err);
/* step.completed {out, signal} of thread ti in T_SIGNAL: the oldest signal of
 * its name is consumed; *out a new reference to its data. */
int engine_signal_taken(rein_run *r, int ti, const json_t *data, const json_t **out,
			rein_err *err);
/* timer.fired of thread ti in T_SIGNAL: the step fails, no signal came. */
int engine_signal_timeout(rein_run *r, int ti, rein_err *err);

/*
 * Debug builds check the run's invariants (rein_run_check) after every apply.
 * The asan build is the debug build: the release build defines no NDEBUG
 * today, and the check must not cost the benchmarks.
 */
#if !defined(NDEBUG) && (defined(__SANITIZE_ADDRESS__) || defined(REIN_DEBUG))
#define ENGINE_CHECKS 1
#else
#define ENGINE_CHECKS 0
#endif

/*
 * rein_schema_check for the engine's messages, which become event text: on a
 * mismatch REIN_ESCHEMA and *why (caller frees) "<what>: POINTER: message
 * (keyword)" lines; REIN_OK on a match (or s NULL); REIN_ENOMEM.
 */
int engine_schema_check(const rein_schema *s, const json_t *inst, char **why, const char *what, ...)
	__attribute__((format(printf, 4, 5)));

#endif
