/*
 * metrics: the store's runs and events as Prometheus metrics (text format
 * 0.0.4). Nothing is counted while runs happen: every number is a fold of the
 * durable log, so `rein metrics` and a server's /metrics agree with `rein
 * show`, across crashes and processes.
 *
 * A table of series (family, labels) -> counter, gauge or histogram holds the
 * totals. The handle keeps one table for the runs that had ended (whose logs
 * are final) and the set of their ids; a collect folds newly ended runs into
 * it once, copies it, folds the active runs into the copy and renders that.
 * So a scrape reads the event logs of new and active runs only, and lists the
 * rest (docs/observability.md says what that costs).
 */
#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "trace.h"

const char rein_metrics_content_type[] = "text/plain; version=0.0.4; charset=utf-8";

/* ---- families ------------------------------------------------------------- */

enum kind { COUNTER, GAUGE, HISTOGRAM, BREAKER };

static const double b_seconds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
				   2.5,   5,    10,    30,   60,  120,  300, 600};
static const double b_run_seconds[] = {0.1, 0.5, 1, 5, 10, 30, 60, 300, 600, 1800, 3600, 21600, 86400};
static const double b_count[] = {0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 100};
static const double b_cost[] = {0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10};
/* a human's review: minutes to days; a task's cost with it: cents to hundreds */
static const double b_review_seconds[] = {10, 30, 60, 300, 600, 1800, 3600, 14400, 28800, 86400, 259200};
static const double b_task_cost[] = {0.001, 0.01, 0.1, 0.5, 1, 2, 5, 10, 25, 50, 100, 250};
/* the GenAI semantic conventions' ExplicitBucketBoundaries (gen-ai-metrics.md) */
static const double b_genai_seconds[] = {0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64,
					 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92};
static const double b_genai_tokens[] = {1,      4,       16,      64,       256,      1024,    4096,
					16384,  65536,   262144,  1048576,  4194304,  16777216, 67108864};

typedef struct family {
	const char *name;
	enum kind kind;
	const char *help;
	const double *bounds;
	size_t nb;
} family;

enum {
	F_RUNS,
	F_RUNS_ACTIVE,
	F_RUN_DURATION,
	F_ESCALATIONS,
	F_STEP_DURATION,
	F_TOOL_CALLS,
	F_TOOL_DURATION,
	F_TOOL_RETRIES,
	F_TOOL_REFUSALS,
	F_RUN_RETRIES,
	F_RUN_TOOL_CALLS,
	F_MODEL_CALLS,
	F_MODEL_RETRIES,
	F_TOKENS,
	F_COST,
	F_RUN_COST,
	F_RUN_TOKENS,
	F_BREAKER_STATE,
	F_BREAKER_TRANSITIONS,
	F_GENAI_DURATION,
	F_GENAI_TOKENS,
	F_POLICY_DENIALS,
	F_POLICY_DECISIONS,
	F_APPROVALS_PENDING,
	F_APPROVAL_AGE,
	F_APPROVAL_REVIEW,
	F_REVIEW_COST,
	F_RUN_COST_REVIEW,
	F_REVIEW_RATE,
	F_SCAN_RUNS,
	F_SCAN_EVENTS,
	F_SCAN_SECONDS,
	F__COUNT
};

#define FAM(n, k, h) {.name = n, .kind = k, .help = h}
#define HIST(n, h, a) {.name = n, .kind = HISTOGRAM, .help = h, .bounds = a, .nb = sizeof a / sizeof *a}

static const family families[F__COUNT] = {
	[F_RUNS] = FAM("rein_runs_total", COUNTER, "Runs that ended, by workflow, version and outcome."),
	[F_RUNS_ACTIVE] = FAM("rein_runs_active",
		GAUGE, "Runs not ended yet, by workflow, version and status."),
	[F_RUN_DURATION] = HIST("rein_run_duration_seconds",
		"Time from a run's creation to its end, by workflow and outcome.", b_run_seconds),
	[F_ESCALATIONS] = FAM("rein_escalations_total",
		COUNTER, "Escalated runs by workflow and reason (the reason up to its first colon)."),
	[F_STEP_DURATION] = HIST("rein_step_duration_seconds",
		"Time a step was current, from the event before its first to its end.", b_seconds),
	[F_TOOL_CALLS] = FAM("rein_tool_calls_total",
		COUNTER, "Logical tool calls (retries included in one) by workflow, tool and outcome."),
	[F_TOOL_DURATION] = HIST("rein_tool_call_duration_seconds",
		"Time from a tool call's intent to its result, retries and backoffs included.", b_seconds),
	[F_TOOL_RETRIES] = FAM("rein_tool_retries_total",
		COUNTER, "Tool call retries (backoffs) by workflow and tool."),
	[F_TOOL_REFUSALS] = FAM("rein_tool_refusals_total",
		COUNTER, "Proposed agent tool calls refused before the wire, by workflow."),
	[F_RUN_RETRIES] = HIST("rein_run_retries",
		"Retries (tool and model backoffs) per ended run, by workflow.", b_count),
	[F_RUN_TOOL_CALLS] = HIST("rein_run_tool_calls",
		"Tool calls per completed (succeeded) run: tool-call intensity.", b_count),
	[F_MODEL_CALLS] = FAM("rein_model_calls_total",
		COUNTER, "Model calls that answered, by workflow, tier and whether the cache answered."),
	[F_MODEL_RETRIES] = FAM("rein_model_retries_total",
		COUNTER, "Model call retries (backoffs) by workflow and tier."),
	[F_TOKENS] = FAM("rein_model_tokens_total",
		COUNTER, "Model tokens by workflow and type (input, output; cache_read and reasoning are "
		"parts of them)."),
	[F_COST] = FAM("rein_model_cost_usd_total", COUNTER, "Model cost in USD by workflow."),
	[F_RUN_COST] = HIST("rein_completed_run_cost_usd",
		"Model cost in USD per completed (succeeded) run.", b_cost),
	[F_RUN_TOKENS] = HIST("rein_completed_run_tokens",
		"Model tokens (input + output) per completed (succeeded) run.", b_genai_tokens),
	[F_BREAKER_STATE] = FAM("rein_breaker_state",
		BREAKER, "Circuit breakers as last recorded (1 for the state it is in), by kind and name."),
	[F_BREAKER_TRANSITIONS] = FAM("rein_breaker_transitions_total",
		COUNTER, "Recorded circuit breaker transitions by kind, name and new state."),
	[F_GENAI_DURATION] = HIST("gen_ai_client_operation_duration_seconds",
		"GenAI operation duration (gen_ai.client.operation.duration).", b_genai_seconds),
	[F_GENAI_TOKENS] = HIST("gen_ai_client_token_usage",
		"Number of input and output tokens used (gen_ai.client.token.usage).", b_genai_tokens),
	[F_POLICY_DENIALS] = FAM("rein_policy_denials_total",
		COUNTER, "Proposed calls the policies denied, by workflow and deciding rule (one count per "
		"rule id; rule=\"default\": the write-tool default)."),
	[F_POLICY_DECISIONS] = FAM("rein_policy_decisions_total",
		COUNTER, "Policy decisions (policy.decision) by workflow and decision."),
	[F_APPROVALS_PENDING] = FAM("rein_approvals_pending",
		GAUGE, "Approvals waiting for a decision in runs not ended, by workflow."),
	[F_APPROVAL_AGE] = FAM("rein_approval_oldest_pending_seconds",
		GAUGE, "Age of the oldest approval waiting for a decision, by workflow."),
	[F_APPROVAL_REVIEW] = HIST("rein_approval_review_seconds",
		"Human review time per approval, from approval.requested to the decision (the last "
		"grant needed, or a denial), by workflow and outcome.", b_review_seconds),
	[F_REVIEW_COST] = FAM("rein_approval_review_cost_usd_total",
		COUNTER, "Review time priced at the configured rate (REIN_REVIEW_COST_PER_HOUR, "
		"--review-rate), by workflow."),
	[F_RUN_COST_REVIEW] = HIST("rein_completed_run_cost_with_review_usd",
		"Cost per completed (succeeded) run: model cost plus its review time at the configured "
		"rate.", b_task_cost),
	[F_REVIEW_RATE] = FAM("rein_review_cost_per_hour_usd",
		GAUGE, "The rate review time is priced at (USD per hour; 0: not configured)."),
	[F_SCAN_RUNS] = FAM("rein_metrics_scan_runs",
		GAUGE, "Runs this collect listed (kind=\"listed\") and whose event logs it read (kind=\"read\")."),
	[F_SCAN_EVENTS] = FAM("rein_metrics_scan_events", GAUGE, "Events this collect read from the store."),
	[F_SCAN_SECONDS] = FAM("rein_metrics_scan_duration_seconds", GAUGE, "Time this collect took."),
};

static const char *const breaker_states[] = {"closed", "open", "half_open"};

/* ---- the table of series --------------------------------------------------- */

typedef struct series {
	int fam;
	char *labels; /* `a="x",b="y"` (escaped), owned */
	double v;     /* counter, gauge; BREAKER: the state's index */
	int64_t at;   /* BREAKER: when v was recorded */
	double sum;   /* HISTOGRAM */
	uint64_t count;
	uint64_t *buckets; /* HISTOGRAM: per bound, not cumulative; owned */
} series;

typedef struct tab {
	series *s;
	size_t n, cap;
	size_t *slot; /* open addressing: index + 1, 0 empty */
	size_t nslot;
} tab;

static void tab_clear(tab *t)
{
	for (size_t i = 0; t && i < t->n; i++) {
		rein_free(t->s[i].labels);
		rein_free(t->s[i].buckets);
	}
	if (t) {
		rein_free(t->s);
		rein_free(t->slot);
		memset(t, 0, sizeof *t);
	}
}

static uint64_t hash_of(int fam, const char *labels)
{
	uint64_t h = 1469598103934665603ull ^ (uint64_t)fam;
	for (const char *p = labels; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ull;
	return h;
}

static int tab_rehash(tab *t, size_t nslot)
{
	size_t *slot = rein_calloc(nslot, sizeof *slot);
	if (slot == NULL)
		return REIN_ENOMEM;
	for (size_t i = 0; i < t->n; i++) {
		size_t k = hash_of(t->s[i].fam, t->s[i].labels) & (nslot - 1);
		while (slot[k])
			k = (k + 1) & (nslot - 1);
		slot[k] = i + 1;
	}
	rein_free(t->slot);
	t->slot = slot;
	t->nslot = nslot;
	return REIN_OK;
}

/* The series (fam, labels), made when missing; NULL when out of memory. */
static series *tab_get(tab *t, int fam, const char *labels)
{
	assert(fam >= 0 && fam < F__COUNT && labels != NULL);
	if ((t->n + 1) * 2 > t->nslot && tab_rehash(t, t->nslot ? t->nslot * 2 : 64) != REIN_OK)
		return NULL;
	size_t k = hash_of(fam, labels) & (t->nslot - 1);
	for (; t->slot[k]; k = (k + 1) & (t->nslot - 1)) {
		series *s = &t->s[t->slot[k] - 1];
		if (s->fam == fam && strcmp(s->labels, labels) == 0)
			return s;
	}
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		series *ns = rein_realloc(t->s, cap * sizeof *ns);
		if (ns == NULL)
			return NULL;
		t->s = ns;
		t->cap = cap;
	}
	series *s = &t->s[t->n];
	memset(s, 0, sizeof *s);
	s->fam = fam;
	s->labels = rein_strdup(labels);
	if (families[fam].kind == HISTOGRAM)
		s->buckets = rein_calloc(families[fam].nb, sizeof *s->buckets);
	if (s->labels == NULL || (families[fam].kind == HISTOGRAM && s->buckets == NULL)) {
		rein_free(s->labels);
		rein_free(s->buckets);
		return NULL;
	}
	t->slot[k] = ++t->n;
	return s;
}

/* dst += src, series by series (a breaker keeps the later state). */
static int tab_merge(tab *dst, const tab *src)
{
	for (size_t i = 0; i < src->n; i++) {
		const series *a = &src->s[i];
		series *b = tab_get(dst, a->fam, a->labels);
		if (b == NULL)
			return REIN_ENOMEM;
		if (families[a->fam].kind == BREAKER) {
			if (b->at == 0 || a->at >= b->at) {
				b->at = a->at;
				b->v = a->v;
			}
			continue;
		}
		b->v += a->v;
		b->sum += a->sum;
		b->count += a->count;
		for (size_t k = 0; b->buckets && k < families[a->fam].nb; k++)
			b->buckets[k] += a->buckets[k];
	}
	return REIN_OK;
}

/* ---- labels ----------------------------------------------------------------- */

/* Appends name="value" (escaped per the text format) to b, comma first unless
 * b is empty; a NULL value is the empty string. */
static int label(rein_buf *b, const char *name, const char *value)
{
	int rc = rein_buf_printf(b, "%s%s=\"", b->len ? "," : "", name);
	for (const char *p = value ? value : ""; rc == REIN_OK && *p; p++) {
		if (*p == '\\')
			rc = rein_buf_puts(b, "\\\\");
		else if (*p == '"')
			rc = rein_buf_puts(b, "\\\"");
		else if (*p == '\n')
			rc = rein_buf_puts(b, "\\n");
		else
			rc = rein_buf_append(b, p, 1);
	}
	return rc == REIN_OK ? rein_buf_puts(b, "\"") : rc;
}

/* A reason as a label: up to its first colon (the rest names ids, hashes and
 * inputs: unbounded), at most 80 bytes cut at a UTF-8 boundary. */
static char *reason_class(const char *reason)
{
	if (reason == NULL || *reason == '\0')
		return rein_strdup("none");
	size_t n = strcspn(reason, ":\n");
	if (n > 80) {
		n = 80;
		while (n > 0 && ((unsigned char)reason[n] & 0xC0) == 0x80)
			n--;
	}
	return rein_strndup(reason, n);
}

/* ---- folding one run -------------------------------------------------------- */

typedef struct open_step {
	char *step;
	int64_t start;
} open_step;

typedef struct open_call {
	char *step, *call_id, *tool;
	int64_t start;
} open_call;

typedef struct intent {
	char *step, *tier, *model, *provider;
} intent;

/* One approval.requested of the run, until it is decided. */
typedef struct approval {
	char *id;
	int64_t at, need, votes;
	bool done;
} approval;

typedef struct fold {
	tab *t;
	const rein_run_row *row;
	bool ended;
	int rc;
	rein_err *err;
	int64_t prev_at;
	int64_t events;
	open_step *steps;
	size_t nsteps;
	open_call *calls;
	size_t ncalls;
	intent *intents;
	size_t nintents;
	int64_t tool_calls, retries, tokens;
	double cost;
	/* governance */
	approval *apprs;
	size_t napprs;
	double review_s, rate; /* review seconds of the run; USD per hour */
} fold;

/* Adds v to the series fam{labels...}: name/value pairs ending with NULL. */
static int add(fold *f, int fam, double v, ...)
{
	rein_buf b = {0};
	va_list ap;
	int rc = label(&b, "workflow", f->row->workflow);
	va_start(ap, v);
	for (const char *k; rc == REIN_OK && (k = va_arg(ap, const char *)) != NULL;)
		rc = label(&b, k, va_arg(ap, const char *));
	va_end(ap);
	series *s = rc == REIN_OK ? tab_get(f->t, fam, b.p) : NULL;
	if (s == NULL) {
		rc = REIN_ENOMEM;
	} else if (families[fam].kind == HISTOGRAM) {
		s->sum += v;
		s->count++;
		for (size_t k = 0; k < families[fam].nb; k++)
			if (v <= families[fam].bounds[k]) {
				s->buckets[k]++;
				break;
			}
	} else {
		s->v += v;
	}
	rein_buf_free(&b);
	return rc;
}

static const char *jstr(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

static bool same(const char *a, const char *b) { return a && b && strcmp(a, b) == 0; }

static int open_step_at(fold *f, const char *step, int64_t at)
{
	for (size_t i = 0; i < f->nsteps; i++)
		if (strcmp(f->steps[i].step, step) == 0)
			return REIN_OK;
	open_step *ns = rein_realloc(f->steps, (f->nsteps + 1) * sizeof *ns);
	if (ns == NULL)
		return REIN_ENOMEM;
	f->steps = ns;
	if ((ns[f->nsteps].step = rein_strdup(step)) == NULL)
		return REIN_ENOMEM;
	ns[f->nsteps++].start = f->prev_at ? f->prev_at : at;
	return REIN_OK;
}

static int close_step(fold *f, const char *step, int64_t at, const char *outcome)
{
	int rc = REIN_OK;
	for (size_t i = 0; i < f->nsteps; i++) {
		if (strcmp(f->steps[i].step, step) != 0)
			continue;
		int64_t d = at - f->steps[i].start;
		rc = add(f, F_STEP_DURATION, d > 0 ? d / 1000.0 : 0, "step", step, "outcome", outcome, NULL);
		rein_free(f->steps[i].step);
		f->steps[i] = f->steps[--f->nsteps];
		break;
	}
	return rc;
}

static int close_call(fold *f, size_t i, int64_t at, const char *outcome)
{
	open_call *c = &f->calls[i];
	int64_t d = at - c->start;
	int rc = add(f, F_TOOL_CALLS, 1, "tool", c->tool, "outcome", outcome, NULL);
	/* a call in flight has no duration yet */
	if (rc == REIN_OK && strcmp(outcome, "pending") != 0)
		rc = add(f, F_TOOL_DURATION, d > 0 ? d / 1000.0 : 0, "tool", c->tool, "outcome", outcome, NULL);
	rein_free(c->step);
	rein_free(c->call_id);
	rein_free(c->tool);
	memmove(c, c + 1, (f->ncalls - i - 1) * sizeof *c);
	f->ncalls--;
	return rc;
}

/* The oldest open call of step (with that call id when one is given). */
static int find_call(const fold *f, const char *step, const char *call_id)
{
	for (size_t i = 0; i < f->ncalls; i++)
		if (same(f->calls[i].step, step) && (call_id == NULL || same(f->calls[i].call_id, call_id)))
			return (int)i;
	for (size_t i = 0; call_id && i < f->ncalls; i++)
		if (same(f->calls[i].step, step))
			return (int)i;
	return -1;
}

static intent *intent_of(fold *f, const char *step)
{
	for (size_t i = 0; i < f->nintents; i++)
		if (same(f->intents[i].step, step))
			return &f->intents[i];
	return NULL;
}

static int set_intent(fold *f, const char *step, const json_t *d)
{
	intent *it = intent_of(f, step);
	if (it == NULL) {
		intent *ni = rein_realloc(f->intents, (f->nintents + 1) * sizeof *ni);
		if (ni == NULL)
			return REIN_ENOMEM;
		f->intents = ni;
		it = &ni[f->nintents++];
		memset(it, 0, sizeof *it);
		if ((it->step = rein_strdup(step)) == NULL)
			return REIN_ENOMEM;
	}
	rein_free(it->tier);
	rein_free(it->model);
	rein_free(it->provider);
	const char *model = jstr(d, "model"), *prov = jstr(d, "provider");
	it->tier = rein_strdup(jstr(d, "tier") ? jstr(d, "tier") : "");
	it->model = rein_strdup(model ? model : "");
	it->provider = rein_strdup(prov ? prov : "");
	return it->tier && it->model && it->provider ? REIN_OK : REIN_ENOMEM;
}

static int on_model_call(fold *f, const char *step, const json_t *d)
{
	intent *it = intent_of(f, step);
	const char *tier = jstr(d, "tier") ? jstr(d, "tier") : it ? it->tier : "";
	bool cached = json_is_true(json_object_get(d, "cached"));
	const json_t *u = json_object_get(d, "usage");
	json_int_t in = json_integer_value(json_object_get(u, "input"));
	json_int_t out = json_integer_value(json_object_get(u, "output"));
	json_int_t cr = json_integer_value(json_object_get(u, "cached"));
	json_int_t rs = json_integer_value(json_object_get(u, "reasoning"));
	double cost = json_number_value(json_object_get(d, "cost_usd"));
	int rc = add(f, F_MODEL_CALLS, 1, "tier", tier, "cached", cached ? "true" : "false", NULL);
	if (rc == REIN_OK)
		rc = add(f, F_TOKENS, (double)in, "type", "input", NULL);
	if (rc == REIN_OK)
		rc = add(f, F_TOKENS, (double)out, "type", "output", NULL);
	if (rc == REIN_OK)
		rc = add(f, F_TOKENS, (double)cr, "type", "cache_read", NULL);
	if (rc == REIN_OK)
		rc = add(f, F_TOKENS, (double)rs, "type", "reasoning", NULL);
	if (rc == REIN_OK)
		rc = add(f, F_COST, cost, NULL);
	f->tokens += in + out;
	f->cost += cost;
	/* a cached answer sent nothing: no GenAI client operation took place */
	const json_t *lat = json_object_get(d, "latency_ms");
	if (rc != REIN_OK || cached || !json_is_number(lat))
		return rc;
	const char *prov = jstr(d, "provider") ? jstr(d, "provider") : it ? it->provider : "";
	const char *req = it ? it->model : "", *resp = jstr(d, "model") ? jstr(d, "model") : "";
	rc = add(f, F_GENAI_DURATION, json_number_value(lat) / 1000.0, "gen_ai_operation_name", "chat",
		 "gen_ai_provider_name", prov, "gen_ai_request_model", req, "gen_ai_response_model", resp,
		 NULL);
	if (rc == REIN_OK && u)
		rc = add(f, F_GENAI_TOKENS, (double)in, "gen_ai_operation_name", "chat", "gen_ai_provider_name",
			 prov, "gen_ai_request_model", req, "gen_ai_response_model", resp, "gen_ai_token_type",
			 "input", NULL);
	if (rc == REIN_OK && u)
		rc = add(f, F_GENAI_TOKENS, (double)out, "gen_ai_operation_name", "chat", "gen_ai_provider_name",
			 prov, "gen_ai_request_model", req, "gen_ai_response_model", resp, "gen_ai_token_type",
			 "output", NULL);
	return rc;
}

static int on_breaker(fold *f, const char *kind, const char *name, int state, int64_t at)
{
	rein_buf b = {0};
	int rc = label(&b, "kind", kind);
	if (rc == REIN_OK)
		rc = label(&b, "name", name);
	series *s = rc == REIN_OK ? tab_get(f->t, F_BREAKER_STATE, b.p) : NULL;
	if (s == NULL) {
		rc = REIN_ENOMEM;
	} else if (s->at == 0 || at >= s->at) {
		s->at = at;
		s->v = state;
	}
	rein_buf_free(&b);
	if (rc == REIN_OK) {
		/* transitions are counted without the workflow: a breaker is process-wide */
		rein_buf l = {0};
		rc = label(&l, "kind", kind);
		if (rc == REIN_OK)
			rc = label(&l, "name", name);
		if (rc == REIN_OK)
			rc = label(&l, "state", breaker_states[state]);
		series *t = rc == REIN_OK ? tab_get(f->t, F_BREAKER_TRANSITIONS, l.p) : NULL;
		if (t == NULL)
			rc = REIN_ENOMEM;
		else
			t->v += 1;
		rein_buf_free(&l);
	}
	return rc;
}

/* A decision by decision; a denial once per deciding rule id. */
static int on_policy(fold *f, const json_t *d)
{
	const char *dec = jstr(d, "decision");
	int rc = add(f, F_POLICY_DECISIONS, 1, "decision", dec ? dec : "", NULL);
	if (rc != REIN_OK || !same(dec, "deny"))
		return rc;
	const json_t *rules = json_object_get(d, "rules");
	size_t k;
	const json_t *r;
	if (json_array_size(rules) == 0)
		return add(f, F_POLICY_DENIALS, 1, "rule", "default", NULL);
	json_array_foreach(rules, k, r) {
		if (rc == REIN_OK && json_is_string(r))
			rc = add(f, F_POLICY_DENIALS, 1, "rule", json_string_value(r), NULL);
	}
	return rc;
}

static int review_done(fold *f, approval *a, int64_t at, const char *outcome)
{
	double sec = at > a->at ? (at - a->at) / 1000.0 : 0;
	a->done = true;
	f->review_s += sec;
	int rc = add(f, F_APPROVAL_REVIEW, sec, "outcome", outcome, NULL);
	if (rc == REIN_OK && f->rate > 0)
		rc = add(f, F_REVIEW_COST, sec / 3600.0 * f->rate, NULL);
	return rc;
}

/* The approval.* events (docs/approvals.md), by name: pending from requested
 * until need.count grants (approval.granted, one per distinct approver), a
 * denial, or an expiry whose on_timeout is not halt. */
static int on_approval(fold *f, const char *what, int64_t at, const json_t *d)
{
	const char *id = jstr(d, "id");
	approval *a = NULL;
	for (size_t i = 0; id && i < f->napprs; i++)
		if (same(f->apprs[i].id, id))
			a = &f->apprs[i];
	if (strcmp(what, "requested") == 0) {
		if (a == NULL) {
			approval *na = rein_realloc(f->apprs, (f->napprs + 1) * sizeof *na);
			if (na == NULL)
				return REIN_ENOMEM;
			f->apprs = na;
			a = &na[f->napprs];
			memset(a, 0, sizeof *a);
			if ((a->id = rein_strdup(id ? id : "")) == NULL)
				return REIN_ENOMEM;
			f->napprs++;
		}
		const json_t *need = json_object_get(json_object_get(d, "need"), "count");
		a->at = at;
		a->need = json_is_integer(need) && json_integer_value(need) > 0 ? json_integer_value(need) : 1;
		a->votes = 0;
		a->done = false;
		return REIN_OK;
	}
	if (a == NULL || a->done)
		return REIN_OK;
	if (strcmp(what, "granted") == 0 && ++a->votes >= a->need)
		return review_done(f, a, at, "granted");
	if (strcmp(what, "denied") == 0)
		return review_done(f, a, at, "denied");
	if (strcmp(what, "expired") == 0 && !same(jstr(d, "on_timeout"), "halt"))
		a->done = true; /* nobody decided: no review time */
	return REIN_OK;
}

static int fold_event(fold *f, const char *type, const char *step, int64_t at, const json_t *d)
{
	int rc = REIN_OK;
	if (step)
		rc = open_step_at(f, step, at);
	if (rc != REIN_OK)
		return rc;
	if (strcmp(type, "step.completed") == 0 || strcmp(type, "step.failed") == 0) {
		bool ok = type[5] == 'c';
		while (rc == REIN_OK && step && find_call(f, step, NULL) >= 0)
			rc = close_call(f, (size_t)find_call(f, step, NULL), at, ok ? "ok" : "error");
		if (rc == REIN_OK && step)
			rc = close_step(f, step, at, ok ? "completed" : "failed");
	} else if (strcmp(type, "tool.intent") == 0) {
		open_call *nc = rein_realloc(f->calls, (f->ncalls + 1) * sizeof *nc);
		if (nc == NULL)
			return REIN_ENOMEM;
		f->calls = nc;
		open_call *c = &nc[f->ncalls];
		const char *tool = jstr(d, "tool"), *id = jstr(d, "call_id");
		c->step = rein_strdup(step ? step : "");
		c->call_id = id ? rein_strdup(id) : NULL;
		c->tool = rein_strdup(tool ? tool : "");
		c->start = at;
		f->ncalls++;
		f->tool_calls++;
		if (c->step == NULL || c->tool == NULL || (id && c->call_id == NULL))
			rc = REIN_ENOMEM;
	} else if (strcmp(type, "tool.result") == 0 || strcmp(type, "tool.fallback") == 0) {
		int i = find_call(f, step, jstr(d, "call_id"));
		const json_t *e = json_object_get(d, "error");
		const char *outcome = type[5] == 'f' ? "fallback" : json_is_string(e) ? "error" : "ok";
		if (i >= 0)
			rc = close_call(f, (size_t)i, at, outcome);
	} else if (strcmp(type, "tool.backoff") == 0) {
		int i = find_call(f, step, NULL);
		f->retries++;
		rc = add(f, F_TOOL_RETRIES, 1, "tool", i >= 0 ? f->calls[i].tool : "", NULL);
	} else if (strcmp(type, "tool.refused") == 0) {
		rc = add(f, F_TOOL_REFUSALS, 1, NULL);
	} else if (strcmp(type, "model.intent") == 0) {
		rc = set_intent(f, step, d);
	} else if (strcmp(type, "model.call") == 0) {
		rc = on_model_call(f, step, d);
	} else if (strcmp(type, "model.attempt") == 0) {
		/* a failed operation: GenAI duration with error.type */
		intent *it = intent_of(f, step);
		const json_t *lat = json_object_get(d, "latency_ms");
		if (json_is_number(lat))
			rc = add(f, F_GENAI_DURATION, json_number_value(lat) / 1000.0, "gen_ai_operation_name",
				 "chat", "gen_ai_provider_name", it ? it->provider : "", "gen_ai_request_model",
				 it ? it->model : "", "error_type", jstr(d, "outcome"), NULL);
	} else if (strcmp(type, "model.backoff") == 0) {
		intent *it = intent_of(f, step);
		f->retries++;
		rc = add(f, F_MODEL_RETRIES, 1, "tier", it ? it->tier : "", NULL);
	} else if (strncmp(type, "breaker.", 8) == 0) {
		int st = strcmp(type, "breaker.opened") == 0 ? 1 : strcmp(type, "breaker.half_open") == 0 ? 2 : 0;
		rc = on_breaker(f, "tool", jstr(d, "tool"), st, at);
	} else if (strcmp(type, "model.breaker") == 0) {
		const char *s = jstr(d, "state");
		/* the router records "opened" and "closed" (src/model/router.c) */
		int st = same(s, "opened") || same(s, "open") ? 1 : s && strncmp(s, "half", 4) == 0 ? 2 : 0;
		const char *p = jstr(d, "provider");
		rc = on_breaker(f, "provider", p ? p : "", st, at);
	} else if (strcmp(type, "policy.decision") == 0) {
		rc = on_policy(f, d);
	} else if (strncmp(type, "approval.", 9) == 0) {
		rc = on_approval(f, type + 9, at, d);
	}
	return rc;
}

static int on_event(void *ud, const rein_event_row *ev)
{
	fold *f = ud;
	json_t *d = NULL;
	int rc = REIN_OK;
	f->events++;
	/* the types whose payload a metric reads */
	static const char *const need[] = {"tool.", "model.", "breaker.", "policy.", "approval.", NULL};
	bool parse = false;
	for (size_t i = 0; need[i] && !parse; i++)
		parse = strncmp(ev->type, need[i], strlen(need[i])) == 0;
	if (parse && ev->payload && (d = rein_json_parse(ev->payload, strlen(ev->payload), f->err)) == NULL) {
		rc = rein_err_set(f->err, REIN_ECORRUPT, "run %s seq %lld: payload is not JSON", ev->run_id,
				  (long long)ev->seq);
		goto out;
	}
	rc = fold_event(f, ev->type, ev->step, ev->at, d);
	if (rc == REIN_ENOMEM)
		rein_err_set(f->err, REIN_ENOMEM, "out of memory");
	f->prev_at = ev->at;
out:
	json_decref(d);
	f->rc = rc;
	return rc == REIN_OK ? 0 : rc;
}

static void fold_clear(fold *f)
{
	for (size_t i = 0; i < f->nsteps; i++)
		rein_free(f->steps[i].step);
	for (size_t i = 0; i < f->ncalls; i++) {
		rein_free(f->calls[i].step);
		rein_free(f->calls[i].call_id);
		rein_free(f->calls[i].tool);
	}
	for (size_t i = 0; i < f->nintents; i++) {
		rein_free(f->intents[i].step);
		rein_free(f->intents[i].tier);
		rein_free(f->intents[i].model);
		rein_free(f->intents[i].provider);
	}
	for (size_t i = 0; i < f->napprs; i++)
		rein_free(f->apprs[i].id);
	rein_free(f->steps);
	rein_free(f->calls);
	rein_free(f->intents);
	rein_free(f->apprs);
}

static bool status_ended(int st) { return st != REIN_RUN_RUNNING && st != REIN_RUN_WAITING; }

/* Folds the run's log and row into t; *events gets the events read. */
static int fold_run(tab *t, rein_store *s, const rein_run_row *row, int64_t now, double rate,
		    int64_t *events, rein_err *err)
{
	fold f = {.t = t, .row = row, .ended = status_ended(row->status), .err = err, .rate = rate};
	const char *st = rein_status_name(row->status);
	char *why = NULL;
	int rc = rein_store_events_load(s, row->id, on_event, &f, err);
	if (rc == REIN_OK && f.rc != REIN_OK)
		rc = f.rc;
	if (rc != REIN_OK)
		goto out;
	/* calls still open: in flight while the run is active, never answered once it ended */
	while (rc == REIN_OK && f.ncalls > 0)
		rc = close_call(&f, 0, f.ended ? f.prev_at : now, f.ended ? "unfinished" : "pending");
	if (rc == REIN_OK && !f.ended)
		rc = add(&f, F_RUNS_ACTIVE, 1, "version", row->version, "status", st, NULL);
	if (rc == REIN_OK && f.ended) {
		int64_t d = row->updated_at - row->created_at;
		rc = add(&f, F_RUNS, 1, "version", row->version, "outcome", st, NULL);
		if (rc == REIN_OK)
			rc = add(&f, F_RUN_DURATION, d > 0 ? d / 1000.0 : 0, "outcome", st, NULL);
		if (rc == REIN_OK)
			rc = add(&f, F_RUN_RETRIES, (double)f.retries, NULL);
	}
	if (rc == REIN_OK && row->status == REIN_RUN_ESCALATED) {
		rc = (why = reason_class(row->reason)) ? add(&f, F_ESCALATIONS, 1, "reason", why, NULL) : REIN_ENOMEM;
	}
	if (rc == REIN_OK && row->status == REIN_RUN_SUCCEEDED) {
		rc = add(&f, F_RUN_TOOL_CALLS, (double)f.tool_calls, NULL);
		if (rc == REIN_OK)
			rc = add(&f, F_RUN_COST, f.cost, NULL);
		if (rc == REIN_OK)
			rc = add(&f, F_RUN_TOKENS, (double)f.tokens, NULL);
		if (rc == REIN_OK)
			rc = add(&f, F_RUN_COST_REVIEW, f.cost + f.review_s / 3600.0 * f.rate, NULL);
	}
	int64_t pending = 0, oldest = now;
	for (size_t i = 0; i < f.napprs; i++)
		if (!f.apprs[i].done) {
			pending++;
			oldest = f.apprs[i].at < oldest ? f.apprs[i].at : oldest;
		}
	if (rc == REIN_OK && pending > 0 && !f.ended) {
		int64_t age = now - oldest;
		rc = add(&f, F_APPROVALS_PENDING, (double)pending, NULL);
		series *a = NULL;
		rein_buf b = {0};
		if (rc == REIN_OK && label(&b, "workflow", row->workflow) == REIN_OK)
			a = tab_get(t, F_APPROVAL_AGE, b.p);
		if (rc == REIN_OK && a == NULL)
			rc = REIN_ENOMEM;
		if (a && age / 1000.0 > a->v)
			a->v = age / 1000.0;
		rein_buf_free(&b);
	}
	if (rc == REIN_ENOMEM)
		rein_err_set(err, REIN_ENOMEM, "out of memory");
	*events += f.events;
out:
	rein_free(why);
	fold_clear(&f);
	return rc;
}

/* ---- the handle ----------------------------------------------------------- */

struct rein_metrics {
	double rate;  /* review time, USD per hour */
	tab done;     /* the runs that had ended */
	char **seen;  /* their ids, a sorted array (bsearch) */
	size_t nseen, capseen;
};

int rein_metrics_new(rein_metrics **out, rein_err *err)
{
	assert(out != NULL);
	rein_metrics *m = rein_calloc(1, sizeof *m);
	if (m == NULL)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	*out = m;
	return REIN_OK;
}

void rein_metrics_set_review_rate(rein_metrics *m, double usd_per_hour)
{
	assert(m != NULL && usd_per_hour >= 0 && isfinite(usd_per_hour));
	m->rate = usd_per_hour;
}

void rein_metrics_free(rein_metrics *m)
{
	if (m == NULL)
		return;
	tab_clear(&m->done);
	for (size_t i = 0; i < m->nseen; i++)
		rein_free(m->seen[i]);
	rein_free(m->seen);
	rein_free(m);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static bool seen(const rein_metrics *m, const char *id)
{
	return m->nseen && bsearch(&id, m->seen, m->nseen, sizeof *m->seen, cmp_str) != NULL;
}

typedef struct collect {
	rein_metrics *m;
	rein_store *s;
	rein_err *err;
	int64_t now, runs, read, events;
	char **fresh; /* ids of runs that ended and were folded now */
	size_t nfresh;
	rein_run_row *active; /* copies (id, workflow, version, status...) */
	size_t nactive;
} collect;

static int on_run(void *ud, const rein_run_row *row)
{
	collect *c = ud;
	int rc = REIN_OK;
	c->runs++;
	if (status_ended(row->status)) {
		if (seen(c->m, row->id))
			return 0;
		char **nf = rein_realloc(c->fresh, (c->nfresh + 1) * sizeof *nf);
		if (nf == NULL || (nf[c->nfresh] = rein_strdup(row->id)) == NULL) {
			if (nf)
				c->fresh = nf;
			return rein_err_set(c->err, REIN_ENOMEM, "out of memory");
		}
		c->fresh = nf;
		c->nfresh++;
		c->read++;
		rc = fold_run(&c->m->done, c->s, row, c->now, c->m->rate, &c->events, c->err);
		return rc == REIN_OK ? 0 : rc;
	}
	/* an active run is folded into this collect's copy, after the walk */
	rein_run_row *na = rein_realloc(c->active, (c->nactive + 1) * sizeof *na);
	if (na == NULL)
		return rein_err_set(c->err, REIN_ENOMEM, "out of memory");
	c->active = na;
	rein_run_row *a = &na[c->nactive];
	memset(a, 0, sizeof *a);
	memcpy(a->id, row->id, sizeof a->id);
	memcpy(a->version, row->version, sizeof a->version);
	a->status = row->status;
	a->created_at = row->created_at;
	a->updated_at = row->updated_at;
	a->workflow = rein_strdup(row->workflow ? row->workflow : "");
	a->reason = row->reason ? rein_strdup(row->reason) : NULL;
	c->nactive++;
	if (a->workflow == NULL || (row->reason && a->reason == NULL))
		return rein_err_set(c->err, REIN_ENOMEM, "out of memory");
	return 0;
}

static int gauge(tab *t, int fam, const char *labels, double v)
{
	series *s = tab_get(t, fam, labels);
	if (s == NULL)
		return REIN_ENOMEM;
	s->v = v;
	return REIN_OK;
}

static int fmt_num(rein_buf *b, double v)
{
	if (isinf(v))
		return rein_buf_puts(b, v > 0 ? "+Inf" : "-Inf");
	if (isnan(v))
		return rein_buf_puts(b, "NaN");
	if (v == floor(v) && fabs(v) < 1e15)
		return rein_buf_printf(b, "%.0f", v);
	/* the shortest text that reads back as v (81.92, not 81.920000000000002) */
	char t[40];
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(t, sizeof t, "%.*g", prec, v);
		if (strtod(t, NULL) == v)
			break;
	}
	return rein_buf_puts(b, t);
}

static int cmp_series(const void *a, const void *b)
{
	const series *x = *(series *const *)a, *y = *(series *const *)b;
	return x->fam != y->fam ? x->fam - y->fam : strcmp(x->labels, y->labels);
}

static int sample(rein_buf *out, const char *name, const char *suffix, const char *labels,
		  const char *extra, double v)
{
	int rc = rein_buf_printf(out, "%s%s", name, suffix);
	if (rc == REIN_OK && (*labels || extra))
		rc = rein_buf_printf(out, "{%s%s%s}", labels, *labels && extra ? "," : "", extra ? extra : "");
	if (rc == REIN_OK)
		rc = rein_buf_puts(out, " ");
	if (rc == REIN_OK)
		rc = fmt_num(out, v);
	return rc == REIN_OK ? rein_buf_puts(out, "\n") : rc;
}

static int render(const tab *t, rein_buf *out)
{
	int rc = REIN_OK;
	series **v = t->n ? rein_malloc(t->n * sizeof *v) : NULL;
	if (t->n && v == NULL)
		return REIN_ENOMEM;
	for (size_t i = 0; i < t->n; i++)
		v[i] = &t->s[i];
	if (t->n)
		qsort(v, t->n, sizeof *v, cmp_series);
	size_t i = 0;
	for (int fam = 0; fam < F__COUNT && rc == REIN_OK; fam++) {
		const family *F = &families[fam];
		const char *type = F->kind == COUNTER ? "counter" : F->kind == HISTOGRAM ? "histogram" : "gauge";
		rc = rein_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", F->name, F->help, F->name, type);
		for (; rc == REIN_OK && i < t->n && v[i]->fam == fam; i++) {
			const series *s = v[i];
			if (F->kind == COUNTER || F->kind == GAUGE) {
				rc = sample(out, F->name, "", s->labels, NULL, s->v);
			} else if (F->kind == BREAKER) {
				for (int k = 0; rc == REIN_OK && k < 3; k++) {
					char st[32];
					snprintf(st, sizeof st, "state=\"%s\"", breaker_states[k]);
					rc = sample(out, F->name, "", s->labels, st, (int)s->v == k ? 1 : 0);
				}
			} else {
				uint64_t cum = 0;
				for (size_t k = 0; rc == REIN_OK && k < F->nb; k++) {
					char le[64] = "le=\"";
					rein_buf lb = {0};
					cum += s->buckets[k];
					rc = fmt_num(&lb, F->bounds[k]);
					if (rc == REIN_OK) {
						snprintf(le + 4, sizeof le - 4, "%s\"", lb.p);
						rc = sample(out, F->name, "_bucket", s->labels, le, (double)cum);
					}
					rein_buf_free(&lb);
				}
				if (rc == REIN_OK)
					rc = sample(out, F->name, "_bucket", s->labels, "le=\"+Inf\"", (double)s->count);
				if (rc == REIN_OK)
					rc = sample(out, F->name, "_sum", s->labels, NULL, s->sum);
				if (rc == REIN_OK)
					rc = sample(out, F->name, "_count", s->labels, NULL, (double)s->count);
			}
		}
	}
	rein_free(v);
	return rc;
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int rein_metrics_collect(rein_metrics *m, rein_store *s, rein_buf *out, rein_err *err)
{
	assert(m != NULL && s != NULL && out != NULL);
	int64_t t0 = mono_ms();
	collect c = {.m = m, .s = s, .err = err, .now = rein_clock_now(&rein_clock_system)};
	tab cur = {0};
	int rc = rein_store_run_each(s, -1, on_run, &c, err);
	/* the runs folded now are seen from now on, also when the walk failed
	 * later (the contract: the caller frees m after a failure) */
	if (c.nfresh) {
		char **ns = rein_realloc(m->seen, (m->nseen + c.nfresh) * sizeof *ns);
		if (ns == NULL) {
			rc = rc ? rc : rein_err_set(err, REIN_ENOMEM, "out of memory");
		} else {
			m->seen = ns;
			memcpy(ns + m->nseen, c.fresh, c.nfresh * sizeof *ns);
			m->nseen += c.nfresh;
			c.nfresh = 0;
			qsort(m->seen, m->nseen, sizeof *m->seen, cmp_str);
		}
	}
	if (rc != REIN_OK)
		goto out;
	if ((rc = tab_merge(&cur, &m->done)) != REIN_OK)
		goto oom;
	for (size_t i = 0; i < c.nactive; i++) {
		c.read++;
		if ((rc = fold_run(&cur, s, &c.active[i], c.now, m->rate, &c.events, err)) != REIN_OK)
			goto out;
	}
	if ((rc = gauge(&cur, F_SCAN_RUNS, "kind=\"listed\"", (double)c.runs)) != REIN_OK ||
	    (rc = gauge(&cur, F_SCAN_RUNS, "kind=\"read\"", (double)c.read)) != REIN_OK ||
	    (rc = gauge(&cur, F_SCAN_EVENTS, "", (double)c.events)) != REIN_OK ||
	    (rc = gauge(&cur, F_REVIEW_RATE, "", m->rate)) != REIN_OK ||
	    (rc = gauge(&cur, F_SCAN_SECONDS, "", (mono_ms() - t0) / 1000.0)) != REIN_OK)
		goto oom;
	if ((rc = render(&cur, out)) != REIN_OK)
		goto oom;
	goto out;
oom:
	rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
out:
	for (size_t i = 0; i < c.nfresh; i++)
		rein_free(c.fresh[i]);
	rein_free(c.fresh);
	for (size_t i = 0; i < c.nactive; i++) {
		rein_free(c.active[i].workflow);
		rein_free(c.active[i].reason);
	}
	rein_free(c.active);
	tab_clear(&cur);
	return rc;
}
