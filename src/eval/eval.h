/*
 * eval: runs a suite of cases (docs/evals.md) through the real runner into a
 * scratch store, several trials each, and measures them: task success,
 * pass^k and pass@k, escalations, tool errors, schema adherence, cost,
 * tokens, latency, an optional LLM judge apart from the deterministic
 * assertions. Compares a result with a baseline, decides the gate, writes
 * JUnit XML. A layer above runner and below cli: the CLI only parses flags
 * and prints.
 *
 * Harness errors (a provider that cannot be reached, a missing recording)
 * are counted apart: a trial is a success, a failure or an error, never two.
 */
#ifndef REIN_EVAL_H
#define REIN_EVAL_H

#include "base.h"
#include "schema.h"
#include "script.h"

/* One case of a suite. Every field is owned by the suite. */
typedef struct rein_eval_case {
	char *name;
	int line, col;         /* where the case was written */
	json_t *input;         /* the run's input */
	json_t *requester;     /* who the runs are for, {user, roles, tenant} (NULL: none) */
	json_t *model;         /* the model for every tier (NULL: the workflow's);
				  normalized: {answers: [...]} | {replay: PATH} |
				  {tier keys: provider, base_url, ...} */
	int repeat;            /* trials, >= 1 */
	bool redteam;          /* pass condition: no forbidden call was made */
	json_t *forbidden;     /* red-team: tool names (array) */
	const char *status;    /* expected final status (static), NULL: any */
	json_t *checks;        /* Lua expressions over out, input, run (array) */
	rein_schema *schema;   /* the output must match; NULL: no check */
	json_t *called;        /* tools that must be called (array) */
	json_t *not_called;    /* tools that must not be called (array) */
	json_t *policy;        /* [{decision, rule?, tool?}] that must occur */
	double max_cost_usd;   /* < 0: no limit (the same for the four below) */
	int64_t max_tokens, max_latency_ms, max_escalations;
	/* the LLM judge (judge_rubric NULL: none) */
	char *judge_rubric;
	json_t *judge_model;   /* a tier name (string) or a model as above */
	double judge_threshold;
} rein_eval_case;

typedef struct rein_eval_gate {
	double min_success;          /* overall success rate; < 0: not gated */
	double max_success_drop;     /* vs the baseline, absolute (0.05 = 5 points); < 0: not gated */
	double max_cost_increase_pct; /* cost per completed task vs the baseline; < 0: not gated */
	double max_escalation_increase; /* escalation rate vs the baseline, absolute; < 0: not gated */
} rein_eval_gate;

typedef struct rein_eval_suite {
	char *path;      /* the suite file, for messages */
	char *name;
	char *workflow;  /* the workflow directory, resolved against the suite's */
	rein_eval_gate gate;
	rein_eval_case *cases;
	size_t ncases;
} rein_eval_suite;

/*
 * pass^k over n trials of which c succeeded: the unbiased estimator of the
 * chance that k independent trials all succeed, C(c,k)/C(n,k); pass@k, that
 * at least one of k succeeds, 1 - C(n-c,k)/C(n,k). Require 0 <= c <= n and
 * 1 <= k <= n; otherwise -1.
 */
double rein_eval_pass_hat_k(int n, int c, int k);
double rein_eval_pass_at_k(int n, int c, int k);

/*
 * Parses a suite from text (len bytes) written at path (its directory
 * resolves `workflow:`); nothing is read from disk. sb (borrowed) checks
 * that the Lua expressions compile. REIN_ESPEC with every problem attached
 * as diagnostics (PATH:LINE:COL: message; err->msg the first), REIN_ENOMEM.
 * Caller frees *out with rein_eval_suite_free and clears err.
 */
int rein_eval_suite_parse(const char *text, size_t len, const char *path, rein_script *sb,
			  rein_eval_suite **out, rein_err *err);
/* The same from the file at path (REIN_ENOTFOUND / REIN_EIO when unreadable). */
int rein_eval_suite_load(const char *path, rein_script *sb, rein_eval_suite **out,
			 rein_err *err);
void rein_eval_suite_free(rein_eval_suite *s);

typedef struct rein_eval_opts {
	const char *db;       /* the store (a path); NULL: a scratch file, removed after */
	const char *workflow; /* the workflow directory instead of the suite's; NULL: the suite's */
	int64_t max_wait_ms;  /* timers within this are slept through (0: 10 s) */
	/* Hears each trial as it ends (may be NULL): case name, trial (1-based),
	 * outcome "pass" | "fail" | "error". */
	void (*progress)(void *ud, const char *name, int trial, const char *outcome);
	void *ud;
} rein_eval_opts;

/*
 * Runs every case of s: repeat trials each, through the runner, into the
 * store. *result (caller decrefs) is the result document (docs/evals.md):
 * {suite, workflow, version, cases: [...], overall: {...}}. A workflow that
 * does not load is REIN_ESPEC (diagnostics attached), a store that does not
 * open REIN_EIO; a trial that meets a harness error is recorded in the
 * result as an error, never returned as one.
 */
int rein_eval_run(const rein_eval_suite *s, rein_script *sb, const rein_eval_opts *o,
		  json_t **result, rein_err *err);

/*
 * The gate: checks result (borrowed) against the thresholds of gate, and
 * against baseline (borrowed, may be NULL: the relative thresholds are then
 * not checked). *out (caller decrefs): {passed, crossed: [{threshold, value,
 * limit, message}], baseline: {success_rate, cost_per_completed,
 * escalation_rate} | null}. REIN_EINVAL when baseline is not a result
 * document, REIN_ENOMEM.
 */
int rein_eval_gate_check(const json_t *result, const json_t *baseline, const rein_eval_gate *gate,
			 json_t **out, rein_err *err);

/* JUnit XML of result into *out (appended): a testsuite, a testcase per case,
 * <failure> for a wrong result, <error> for a harness error, cost and tokens
 * in <system-out>. REIN_ENOMEM only. */
int rein_eval_junit(const json_t *result, rein_buf *out);

#endif
