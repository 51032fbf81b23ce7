/*
 * rein_metrics_collect on hand-written logs in the in-memory store: what each
 * family counts (step latency, tool outcomes and retries, model usage and the
 * GenAI buckets, breaker state, reasons), label escaping, and that a handle
 * reads the log of an ended run once while it reads active runs every time.
 */
#include <math.h>

#include "memstore.h"
#include "testlib.h"
#include "trace.h"

typedef struct ev {
	const char *type, *step;
	int64_t at;
	const char *payload;
} ev;

/* Inserts run id (workflow wf) with these events, then gives it status and reason. */
static void put_run(rein_store *st, const char *id, const char *wf, int status, const char *reason,
		    int64_t created, const ev *evs)
{
	rein_err err = {0};
	rein_run_row row = {.workflow = (char *)wf, .status = REIN_RUN_RUNNING, .created_at = created,
			    .updated_at = created};
	snprintf(row.id, sizeof row.id, "%s", id);
	snprintf(row.version, sizeof row.version, "v1");
	assert_int_equal(rein_store_run_insert(st, &row, &err), REIN_OK);
	uint8_t prev[REIN_HASH_LEN];
	rein_event_genesis(id, prev);
	int64_t seq = 0, last = created;
	for (const ev *e = evs; e->type; e++) {
		rein_event_row r = {.run_id = id, .seq = ++seq, .type = e->type, .step = e->step, .at = e->at,
				    .payload = e->payload ? e->payload : "{}"};
		memcpy(r.prev_hash, prev, REIN_HASH_LEN);
		rein_event_hash(&r);
		assert_int_equal(rein_store_event_append(st, &r, &err), REIN_OK);
		memcpy(prev, r.hash, REIN_HASH_LEN);
		memcpy(row.last_hash, r.hash, REIN_HASH_LEN);
		last = e->at;
	}
	row.last_seq = seq;
	row.status = status;
	row.reason = (char *)reason;
	row.updated_at = last;
	assert_int_equal(rein_store_run_update(st, &row, NULL, NULL, &err), REIN_OK);
}

static char *collect(rein_metrics *m, rein_store *st)
{
	rein_buf b = {0};
	rein_err err = {0};
	int rc = rein_metrics_collect(m, st, &b, &err);
	if (rc != REIN_OK)
		fprintf(stderr, "collect: %s\n", err.msg);
	assert_int_equal(rc, REIN_OK);
	return b.p;
}

/* The value of the exact series text in the exposition, or NAN. */
static double value(const char *text, const char *series)
{
	size_t n = strlen(series);
	for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (strncmp(p, series, n) == 0 && p[n] == ' ')
			return strtod(p + n + 1, NULL);
	return NAN;
}

#define HAS(text, series, v) assert_float_equal(value(text, series), v, 1e-12)

static const ev good[] = {
	{"run.started", NULL, 1000, "{\"input\":{},\"workflow\":\"w\",\"version\":\"v1\"}"},
	{"model.intent", "a", 1100, "{\"tier\":\"t\",\"provider\":\"openai\",\"model\":\"m-req\"}"},
	{"model.call", "a", 1600,
	 "{\"tier\":\"t\",\"provider\":\"openai\",\"model\":\"m-resp\",\"latency_ms\":500,"
	 "\"usage\":{\"input\":10,\"output\":5,\"cached\":4},\"cost_usd\":0.25,\"cached\":false}"},
	{"model.breaker", "a", 1600, "{\"state\":\"opened\",\"provider\":\"openai\"}"},
	{"step.completed", "a", 1700, "{\"out\":{}}"},
	{"tool.intent", "b", 1800, "{\"tool\":\"t1\",\"key\":\"k\",\"args\":{}}"},
	{"tool.attempt", "b", 1900, "{\"attempt\":1,\"outcome\":\"http_5xx\"}"},
	{"tool.backoff", "b", 1900, "{\"attempt\":1,\"delay_ms\":10,\"due_at\":1910}"},
	{"breaker.opened", "b", 1950, "{\"tool\":\"t1\"}"},
	{"breaker.closed", "b", 2000, "{\"tool\":\"t1\"}"},
	{"step.completed", "b", 2300, "{\"out\":{}}"},
	{"run.ended", NULL, 2400, "{\"status\":\"succeeded\"}"},
	{0},
};

static const ev bad[] = {
	{"run.started", NULL, 5000, NULL},
	{"tool.intent", "c", 5100, "{\"tool\":\"t1\",\"key\":\"k2\",\"args\":{},\"call_id\":\"c1\"}"},
	{"tool.intent", "c", 5100, "{\"tool\":\"t2\",\"key\":\"k3\",\"args\":{},\"call_id\":\"c2\"}"},
	{"tool.result", "c", 5200, "{\"call_id\":\"c2\",\"error\":\"boom\"}"},
	{"tool.refused", "c", 5250, "{\"tool\":\"nosuch\",\"error\":\"no such tool\"}"},
	{"breaker.opened", "c", 5300, "{\"tool\":\"t1\"}"},
	{"step.failed", "c", 5400, "{\"error\":\"x\"}"},
	{"run.ended", NULL, 5500, "{\"status\":\"escalated\"}"},
	{0},
};

static void test_families(void **state)
{
	memdb db = {0};
	rein_store *st = NULL;
	rein_metrics *m = NULL;
	rein_err err = {0};
	assert_int_equal(memstore_open(&db, &st, &err), REIN_OK);
	put_run(st, "r1", "w", REIN_RUN_SUCCEEDED, NULL, 1000, good);
	put_run(st, "r2", "w\"x\\y", REIN_RUN_ESCALATED, "needs \"a\" human: order 42\nmore", 5000, bad);
	assert_int_equal(rein_metrics_new(&m, &err), REIN_OK);
	char *t = collect(m, st);
	HAS(t, "rein_runs_total{workflow=\"w\",version=\"v1\",outcome=\"succeeded\"}", 1);
	HAS(t, "rein_runs_total{workflow=\"w\\\"x\\\\y\",version=\"v1\",outcome=\"escalated\"}", 1);
	/* the reason up to its first colon, escaped */
	HAS(t, "rein_escalations_total{workflow=\"w\\\"x\\\\y\",reason=\"needs \\\"a\\\" human\"}", 1);
	/* step a: from run.started (1000) to its end (1700); b: 1700 to 2300 */
	HAS(t, "rein_step_duration_seconds_sum{workflow=\"w\",step=\"a\",outcome=\"completed\"}", 0.7);
	HAS(t, "rein_step_duration_seconds_sum{workflow=\"w\",step=\"b\",outcome=\"completed\"}", 0.6);
	HAS(t, "rein_step_duration_seconds_bucket{workflow=\"w\",step=\"b\",outcome=\"completed\",le=\"0.5\"}", 0);
	HAS(t, "rein_step_duration_seconds_bucket{workflow=\"w\",step=\"b\",outcome=\"completed\",le=\"1\"}", 1);
	HAS(t, "rein_step_duration_seconds_count{workflow=\"w\\\"x\\\\y\",step=\"c\",outcome=\"failed\"}", 1);
	/* tool calls: ok by its step, error by its result, the other closed by the failed step */
	HAS(t, "rein_tool_calls_total{workflow=\"w\",tool=\"t1\",outcome=\"ok\"}", 1);
	HAS(t, "rein_tool_call_duration_seconds_sum{workflow=\"w\",tool=\"t1\",outcome=\"ok\"}", 0.5);
	HAS(t, "rein_tool_calls_total{workflow=\"w\\\"x\\\\y\",tool=\"t2\",outcome=\"error\"}", 1);
	HAS(t, "rein_tool_calls_total{workflow=\"w\\\"x\\\\y\",tool=\"t1\",outcome=\"error\"}", 1);
	HAS(t, "rein_tool_refusals_total{workflow=\"w\\\"x\\\\y\"}", 1);
	HAS(t, "rein_tool_retries_total{workflow=\"w\",tool=\"t1\"}", 1);
	HAS(t, "rein_run_retries_sum{workflow=\"w\"}", 1);
	HAS(t, "rein_run_tool_calls_sum{workflow=\"w\"}", 1);
	HAS(t, "rein_run_tool_calls_count{workflow=\"w\"}", 1);
	assert_true(isnan(value(t, "rein_run_tool_calls_count{workflow=\"w\\\"x\\\\y\"}"))); /* not completed */
	/* model usage and cost; the GenAI buckets (0.5 s: above 0.32, within 0.64) */
	HAS(t, "rein_model_tokens_total{workflow=\"w\",type=\"input\"}", 10);
	HAS(t, "rein_model_tokens_total{workflow=\"w\",type=\"cache_read\"}", 4);
	HAS(t, "rein_model_cost_usd_total{workflow=\"w\"}", 0.25);
	HAS(t, "rein_completed_run_cost_usd_sum{workflow=\"w\"}", 0.25);
	HAS(t, "rein_completed_run_tokens_sum{workflow=\"w\"}", 15);
	const char *g = "gen_ai_client_operation_duration_seconds_bucket{workflow=\"w\",gen_ai_operation_name=\"chat\","
			"gen_ai_provider_name=\"openai\",gen_ai_request_model=\"m-req\",gen_ai_response_model=\"m-resp\",";
	char s[512];
	snprintf(s, sizeof s, "%sle=\"0.32\"}", g);
	HAS(t, s, 0);
	snprintf(s, sizeof s, "%sle=\"0.64\"}", g);
	HAS(t, s, 1);
	snprintf(s, sizeof s, "%sle=\"+Inf\"}", g);
	HAS(t, s, 1);
	HAS(t, "gen_ai_client_token_usage_bucket{workflow=\"w\",gen_ai_operation_name=\"chat\",gen_ai_provider_name="
	       "\"openai\",gen_ai_request_model=\"m-req\",gen_ai_response_model=\"m-resp\",gen_ai_token_type=\"output\","
	       "le=\"4\"}",
	    0);
	HAS(t, "gen_ai_client_token_usage_bucket{workflow=\"w\",gen_ai_operation_name=\"chat\",gen_ai_provider_name="
	       "\"openai\",gen_ai_request_model=\"m-req\",gen_ai_response_model=\"m-resp\",gen_ai_token_type=\"output\","
	       "le=\"16\"}",
	    1);
	/* the breaker: the latest transition across runs (r2 opened it at 5300) */
	HAS(t, "rein_breaker_state{kind=\"tool\",name=\"t1\",state=\"open\"}", 1);
	HAS(t, "rein_breaker_state{kind=\"tool\",name=\"t1\",state=\"closed\"}", 0);
	HAS(t, "rein_breaker_transitions_total{kind=\"tool\",name=\"t1\",state=\"open\"}", 2);
	HAS(t, "rein_breaker_state{kind=\"provider\",name=\"openai\",state=\"open\"}", 1);
	/* no governance events: the families, without series */
	assert_non_null(strstr(t, "# TYPE rein_policy_denials_total counter\n"));
	assert_null(strstr(t, "rein_policy_denials_total{"));
	assert_null(strstr(t, "rein_approvals_pending{"));
	HAS(t, "rein_review_cost_per_hour_usd", 0);
	assert_non_null(strstr(t, "# TYPE rein_runs_total counter\n"));
	rein_free(t);
	rein_metrics_free(m);
	rein_store_close(st);
	memdb_clear(&db);
}

static const ev active[] = {
	{"run.started", NULL, 9000, NULL},
	{"tool.intent", "d", 9100, "{\"tool\":\"t3\",\"key\":\"k9\",\"args\":{}}"},
	{0},
};

/* Governance: policy decisions (a denial counted once per deciding rule, the
 * write default as rule "default") and approvals (the approval.* events by
 * name): a two-person grant decided at the second vote, a denial; review
 * time, its cost at the configured rate, and the cost per completed run
 * with it. */
static const ev governed[] = {
	{"run.started", NULL, 10000, "{\"input\":{},\"workflow\":\"g\",\"version\":\"v1\"}"},
	{"model.call", "a", 10100, "{\"tier\":\"t\",\"usage\":{\"input\":1,\"output\":1},\"cost_usd\":0.5}"},
	{"policy.decision", "a", 10200, "{\"tool\":\"pay\",\"decision\":\"deny\",\"rules\":[\"cap\",\"hours\"]}"},
	{"policy.decision", "a", 10300, "{\"tool\":\"pay\",\"decision\":\"deny\",\"rules\":[]}"},
	{"policy.decision", "a", 10400, "{\"tool\":\"pay\",\"decision\":\"allow\",\"rules\":[\"ok\"]}"},
	{"policy.decision", "a", 10500, "{\"tool\":\"pay\",\"decision\":\"approve\",\"rules\":[\"big\"]}"},
	{"approval.requested", "a", 11000, "{\"id\":\"ap1\",\"tool\":\"pay\",\"need\":{\"count\":2}}"},
	{"approval.refused", NULL, 11500, "{\"id\":\"ap1\",\"reason\":\"forged\"}"},
	{"approval.granted", "a", 12000, "{\"id\":\"ap1\",\"by\":\"ann\",\"roles\":[]}"},
	{"approval.granted", "a", 14000, "{\"id\":\"ap1\",\"by\":\"bob\",\"roles\":[]}"},
	{"tool.intent", "a", 14000, "{\"tool\":\"pay\",\"key\":\"k\",\"args\":{}}"},
	{"tool.result", "a", 14100, "{}"},
	{"approval.requested", "a", 15000, "{\"id\":\"ap2\",\"tool\":\"pay\",\"need\":{\"count\":1}}"},
	{"approval.denied", "a", 21000, "{\"id\":\"ap2\",\"by\":\"ann\",\"reason\":\"no\"}"},
	{"step.completed", "a", 21100, "{\"out\":{}}"},
	{"run.ended", NULL, 21200, "{\"status\":\"succeeded\"}"},
	{0},
};

/* A run still waiting: ap3 pending, ap4 decided, ap5 expired but halted (still
 * pending), ap6 expired and escalated (not pending, no review time). */
static const ev waiting[] = {
	{"run.started", NULL, 1000, NULL},
	{"approval.requested", "b", 1000, "{\"id\":\"ap3\",\"tool\":\"pay\"}"},
	{"approval.requested", "c", 2000, "{\"id\":\"ap4\",\"tool\":\"pay\"}"},
	{"approval.granted", "c", 2500, "{\"id\":\"ap4\",\"by\":\"ann\"}"},
	{"approval.requested", "d", 3000, "{\"id\":\"ap5\",\"tool\":\"pay\"}"},
	{"approval.expired", "d", 4000, "{\"id\":\"ap5\",\"on_timeout\":\"halt\"}"},
	{"approval.requested", "e", 3000, "{\"id\":\"ap6\",\"tool\":\"pay\"}"},
	{"approval.expired", "e", 4000, "{\"id\":\"ap6\",\"on_timeout\":\"escalate\"}"},
	{0},
};

static void test_governance(void **state)
{
	memdb db = {0};
	rein_store *st = NULL;
	rein_metrics *m = NULL;
	rein_err err = {0};
	assert_int_equal(memstore_open(&db, &st, &err), REIN_OK);
	put_run(st, "r1", "g", REIN_RUN_SUCCEEDED, NULL, 10000, governed);
	put_run(st, "r2", "h", REIN_RUN_WAITING, NULL, 1000, waiting);
	assert_int_equal(rein_metrics_new(&m, &err), REIN_OK);
	rein_metrics_set_review_rate(m, 36); /* USD per hour: 0.01 per second */
	int64_t before = rein_clock_now(&rein_clock_system);
	char *t = collect(m, st);
	HAS(t, "rein_policy_denials_total{workflow=\"g\",rule=\"cap\"}", 1);
	HAS(t, "rein_policy_denials_total{workflow=\"g\",rule=\"hours\"}", 1);
	HAS(t, "rein_policy_denials_total{workflow=\"g\",rule=\"default\"}", 1);
	assert_true(isnan(value(t, "rein_policy_denials_total{workflow=\"g\",rule=\"ok\"}")));
	HAS(t, "rein_policy_decisions_total{workflow=\"g\",decision=\"deny\"}", 2);
	HAS(t, "rein_policy_decisions_total{workflow=\"g\",decision=\"allow\"}", 1);
	HAS(t, "rein_policy_decisions_total{workflow=\"g\",decision=\"approve\"}", 1);
	/* ap1: 11000 -> the second grant at 14000 (3 s); ap2: 15000 -> denied at 21000 (6 s) */
	HAS(t, "rein_approval_review_seconds_sum{workflow=\"g\",outcome=\"granted\"}", 3);
	HAS(t, "rein_approval_review_seconds_bucket{workflow=\"g\",outcome=\"granted\",le=\"10\"}", 1);
	HAS(t, "rein_approval_review_seconds_sum{workflow=\"g\",outcome=\"denied\"}", 6);
	HAS(t, "rein_approval_review_seconds_count{workflow=\"g\",outcome=\"denied\"}", 1);
	HAS(t, "rein_approval_review_cost_usd_total{workflow=\"g\"}", 0.09);
	HAS(t, "rein_completed_run_cost_with_review_usd_sum{workflow=\"g\"}", 0.59);
	HAS(t, "rein_completed_run_cost_with_review_usd_count{workflow=\"g\"}", 1);
	HAS(t, "rein_completed_run_cost_usd_sum{workflow=\"g\"}", 0.5);
	HAS(t, "rein_review_cost_per_hour_usd", 36);
	/* an ended run has nothing pending; the waiting one ap3 and ap5 */
	assert_true(isnan(value(t, "rein_approvals_pending{workflow=\"g\"}")));
	HAS(t, "rein_approvals_pending{workflow=\"h\"}", 2);
	double age = value(t, "rein_approval_oldest_pending_seconds{workflow=\"h\"}");
	assert_true(age >= (before - 1000) / 1000.0 && age < (before - 1000) / 1000.0 + 60);
	/* the expiry decided nothing: no review time for the waiting run */
	assert_true(isnan(value(t, "rein_approval_review_seconds_count{workflow=\"h\",outcome=\"expired\"}")));
	HAS(t, "rein_approval_review_seconds_count{workflow=\"h\",outcome=\"granted\"}", 1);
	rein_free(t);
	rein_metrics_free(m);
	rein_store_close(st);
	memdb_clear(&db);
}

static void test_reads_ended_runs_once(void **state)
{
	memdb db = {0};
	rein_store *st = NULL;
	rein_metrics *m = NULL;
	rein_err err = {0};
	assert_int_equal(memstore_open(&db, &st, &err), REIN_OK);
	put_run(st, "r1", "w", REIN_RUN_SUCCEEDED, NULL, 1000, good);
	put_run(st, "r3", "w", REIN_RUN_RUNNING, NULL, 9000, active);
	assert_int_equal(rein_metrics_new(&m, &err), REIN_OK);
	char *t = collect(m, st);
	HAS(t, "rein_metrics_scan_runs{kind=\"listed\"}", 2);
	HAS(t, "rein_metrics_scan_runs{kind=\"read\"}", 2);
	HAS(t, "rein_metrics_scan_events", 14);
	HAS(t, "rein_runs_active{workflow=\"w\",version=\"v1\",status=\"running\"}", 1);
	HAS(t, "rein_tool_calls_total{workflow=\"w\",tool=\"t3\",outcome=\"pending\"}", 1);
	rein_free(t);
	/* the second collect reads the active run again, and the new ended one */
	put_run(st, "r2", "w\"x\\y", REIN_RUN_ESCALATED, "why", 5000, bad);
	t = collect(m, st);
	HAS(t, "rein_metrics_scan_runs{kind=\"listed\"}", 3);
	HAS(t, "rein_metrics_scan_runs{kind=\"read\"}", 2);
	HAS(t, "rein_metrics_scan_events", 2 + 8);
	HAS(t, "rein_runs_total{workflow=\"w\",version=\"v1\",outcome=\"succeeded\"}", 1);
	HAS(t, "rein_runs_total{workflow=\"w\\\"x\\\\y\",version=\"v1\",outcome=\"escalated\"}", 1);
	HAS(t, "rein_tool_calls_total{workflow=\"w\",tool=\"t3\",outcome=\"pending\"}", 1); /* not twice */
	HAS(t, "rein_model_cost_usd_total{workflow=\"w\"}", 0.25);
	rein_free(t);
	/* a third: only the active run is read; a fresh handle reads all and agrees */
	t = collect(m, st);
	HAS(t, "rein_metrics_scan_runs{kind=\"read\"}", 1);
	rein_metrics *m2 = NULL;
	assert_int_equal(rein_metrics_new(&m2, &err), REIN_OK);
	char *t2 = collect(m2, st);
	HAS(t2, "rein_metrics_scan_runs{kind=\"read\"}", 3);
	/* the same text but for the scan gauges */
	char *a = strstr(t, "# HELP rein_metrics_scan_runs"), *b = strstr(t2, "# HELP rein_metrics_scan_runs");
	assert_non_null(a);
	assert_non_null(b);
	assert_int_equal(a - t, b - t2);
	assert_memory_equal(t, t2, (size_t)(a - t));
	rein_free(t);
	rein_free(t2);
	rein_metrics_free(m);
	rein_metrics_free(m2);
	rein_store_close(st);
	memdb_clear(&db);
}

/* Every allocation failing in turn: a clean error, no leak, no crash. */
static void test_out_of_memory(void **state)
{
	memdb db = {0};
	rein_store *st = NULL;
	rein_err err = {0};
	assert_int_equal(memstore_open(&db, &st, &err), REIN_OK);
	put_run(st, "r1", "w", REIN_RUN_SUCCEEDED, NULL, 1000, good);
	put_run(st, "r2", "w", REIN_RUN_ESCALATED, "why", 5000, bad);
	put_run(st, "r3", "w", REIN_RUN_RUNNING, NULL, 9000, active);
	put_run(st, "r4", "g", REIN_RUN_SUCCEEDED, NULL, 10000, governed);
	put_run(st, "r5", "h", REIN_RUN_WAITING, NULL, 1000, waiting);
	for (long n = 1;; n++) {
		rein_metrics *m = NULL;
		rein_buf b = {0};
		rein_err e = {0};
		rein_fault_arm(REIN_FAULT_ALLOC, n);
		int rc = rein_metrics_new(&m, &e);
		if (rc == REIN_OK)
			rc = rein_metrics_collect(m, st, &b, &e);
		bool hit = rein_fault_count(REIN_FAULT_ALLOC) >= n;
		rein_fault_arm(REIN_FAULT_ALLOC, 0);
		rein_metrics_free(m);
		rein_buf_free(&b);
		rein_err_clear(&e);
		if (!hit) {
			assert_int_equal(rc, REIN_OK);
			break;
		}
		assert_int_not_equal(rc, REIN_OK);
	}
	rein_store_close(st);
	memdb_clear(&db);
}

int main(void)
{
	rein_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_families),
		cmocka_unit_test(test_governance),
		cmocka_unit_test(test_reads_ended_runs_once),
		cmocka_unit_test(test_out_of_memory),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
