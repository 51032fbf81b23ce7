/*
 * Internal to engine: the run state (threads, spend) and the pieces the
 * engine's files share. engine.c holds the core (routing, parallel joins,
 * timers, apply/poll); engine_tool.c tool calls (intents, retries,
 * fallbacks); engine_model.c llm and agent steps (requests, repair turns,
 * budgets, the tool-calling loop).
 */
#ifndef REIN_ENGINE_INT_H
#define REIN_ENGINE_INT_H

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
};

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
	json_t *result; /* DONE branch result, or JOINED output */
	json_t *last;   /* output of the last completed step on this thread */
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
	int64_t started_at, deadline, steps_taken;
	/* what the run has spent, charged from recorded events */
	int64_t spent_tokens, model_calls, tool_calls;
	double spent_cost;
	char *last_error;
};

int engine_eval_template(rein_run *r, const json_t *tmpl, const json_t *out, json_t **res,
			 rein_err *err);
char *engine_json_text(const json_t *j);
void engine_set_str(char **dst, const char *s);
void engine_decide_end(rein_run *r, rein_status st, const char *reason, json_t *output);
int engine_route(rein_run *r, int t, json_t *out, rein_err *err);
int engine_step_error(rein_run *r, int t, const char *msg, rein_err *err);
int engine_thread_at(const rein_run *r, int s);
int engine_emit(rein_cmd *c, const char *type, int step, json_t *data, rein_err *err);
const rein_tool *engine_cur_tool(const rein_run *r, const thread *t);
void engine_make_key(const rein_run *r, const thread *t, char out[80]);
int64_t engine_backoff_ms(const rein_run *r, const thread *t, const rein_retry_policy *p);
json_t *engine_evidence(const rein_run *r, const thread *t);
int engine_apply_tool(rein_run *r, int ti, const char *type, int64_t at, const json_t *data,
		      rein_err *err);
int engine_poll_tool(rein_run *r, int ti, int64_t now, rein_cmd *cmd, int64_t *due, bool *busy,
		     rein_err *err);
int engine_step_time_gate(rein_run *r, int ti, int64_t now, rein_cmd *cmd, rein_err *err);
int engine_poll_llm(rein_run *r, int ti, int64_t now, rein_cmd *cmd, int64_t *due, bool *busy,
		    rein_err *err);
int engine_apply_llm(rein_run *r, int ti, const char *type, int64_t at, const json_t *data,
		     rein_err *err);
int engine_agent_tool_done(rein_run *r, int ti, const char *type, const json_t *data,
			   rein_err *err);
int engine_agent_answer(rein_run *r, int ti, const json_t *resp, rein_err *err);
int engine_poll_agent_tools(rein_run *r, int ti, rein_cmd *cmd, rein_err *err);
bool engine_check_output(const rein_step *st, const json_t *out, char **why);
int engine_emit_backoff(rein_cmd *cmd, const char *type, const thread *t, int64_t now,
			rein_err *err);

#endif
