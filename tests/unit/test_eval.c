/*
 * The eval layer (src/eval, docs/evals.md): pass^k and pass@k on a table of
 * known trial outcomes (checked against the average over every k-subset of
 * the trials, which is what the unbiased estimators estimate), the suite
 * parser's located errors (and every allocation failing in turn), a suite
 * run end to end through the runner on an in-process scripted model, the
 * gate against a baseline, and the JUnit writer.
 */
#include <ftw.h>
#include <math.h>

#include "testlib.h"
#include "eval.h"

/* The share of the k-subsets of outcomes (a string of P and F) in which all
 * (all_of) or at least one (!all_of) trial passed. */
static double by_subsets(const char *outcomes, int k, bool all_of)
{
	int n = (int)strlen(outcomes), hits = 0, total = 0;
	for (unsigned m = 0; m < (1u << n); m++) {
		if (__builtin_popcount(m) != k)
			continue;
		int p = 0;
		for (int i = 0; i < n; i++)
			p += (m >> i & 1) && outcomes[i] == 'P';
		total++;
		hits += all_of ? p == k : p > 0;
	}
	return (double)hits / total;
}

static void test_pass_k_table(void **state)
{
	(void)state;
	static const char *const table[] = {"P", "F", "PP", "PF", "FF", "PPF", "PFPF", "PPPFF",
					    "PPPPPPPF", "PFFFFFFF", "PPPPPPPPPP", "FPPPPPPPPP",
					    "PFPFPFPFPFPF"};
	for (size_t t = 0; t < sizeof table / sizeof *table; t++) {
		const char *o = table[t];
		int n = (int)strlen(o), c = 0;
		for (int i = 0; i < n; i++)
			c += o[i] == 'P';
		for (int k = 1; k <= n; k++) {
			double hat = rein_eval_pass_hat_k(n, c, k), at = rein_eval_pass_at_k(n, c, k);
			if (fabs(hat - by_subsets(o, k, true)) > 1e-12 ||
			    fabs(at - by_subsets(o, k, false)) > 1e-12) {
				fprintf(stderr, "%s k=%d: pass^k %g (want %g), pass@k %g (want %g)\n", o, k,
					hat, by_subsets(o, k, true), at, by_subsets(o, k, false));
				fail();
			}
		}
	}
	/* by hand: 5 trials, 3 passed */
	assert_true(fabs(rein_eval_pass_hat_k(5, 3, 1) - 0.6) < 1e-12);
	assert_true(fabs(rein_eval_pass_hat_k(5, 3, 2) - 0.3) < 1e-12);  /* C(3,2)/C(5,2) */
	assert_true(fabs(rein_eval_pass_hat_k(5, 3, 3) - 0.1) < 1e-12);  /* 1/10 */
	assert_true(rein_eval_pass_hat_k(5, 3, 4) == 0);
	assert_true(fabs(rein_eval_pass_at_k(5, 3, 2) - 0.9) < 1e-12);   /* 1 - C(2,2)/C(5,2) */
	assert_true(rein_eval_pass_at_k(5, 3, 3) == 1);
	/* large n stays in range */
	assert_true(fabs(rein_eval_pass_hat_k(1000, 999, 1000)) < 1e-12);
	assert_true(fabs(rein_eval_pass_hat_k(1000, 1000, 1000) - 1) < 1e-12);
	assert_true(fabs(rein_eval_pass_at_k(1000, 1, 1000) - 1) < 1e-12);
	/* out of range */
	assert_true(rein_eval_pass_hat_k(0, 0, 1) == -1);
	assert_true(rein_eval_pass_hat_k(3, 4, 1) == -1);
	assert_true(rein_eval_pass_hat_k(3, 2, 4) == -1);
	assert_true(rein_eval_pass_at_k(3, -1, 1) == -1);
	assert_true(rein_eval_pass_at_k(3, 2, 0) == -1);
}

static const char good[] =
	"name: s\n"
	"workflow: wf\n"
	"defaults: { repeat: 3, model: { answers: [hello] } }\n"
	"gate: { min_success: 0.9, max_success_drop: 0.05 }\n"
	"cases:\n"
	"  - name: one\n"
	"    input: { a: 1 }\n"
	"    expect:\n"
	"      status: escalated\n"
	"      output: \"out.x == 1\"\n"
	"      output_schema: { type: object }\n"
	"      called: lookup\n"
	"      not_called: [refund]\n"
	"      policy: [{ decision: deny, rule: cap }]\n"
	"      max_cost_usd: 0.5\n"
	"      max_tokens: 100\n"
	"  - name: two\n"
	"    repeat: 1\n"
	"    requester: { user: bob, roles: [support], tenant: acme }\n"
	"    redteam: { forbidden: [refund] }\n"
	"    judge: { rubric: be nice, model: main, threshold: 0.8 }\n";

static void test_parse_good(void **state)
{
	(void)state;
	rein_script *sb;
	assert_int_equal(rein_script_new(&sb), REIN_OK);
	rein_eval_suite *s = NULL;
	rein_err e = {0};
	assert_int_equal(rein_eval_suite_parse(good, strlen(good), "dir/s.yaml", sb, &s, &e), REIN_OK);
	assert_string_equal(s->workflow, "dir/wf");
	assert_int_equal(s->ncases, 2);
	assert_true(s->gate.min_success == 0.9 && s->gate.max_success_drop == 0.05);
	assert_true(s->gate.max_cost_increase_pct < 0);
	const rein_eval_case *a = &s->cases[0], *b = &s->cases[1];
	assert_int_equal(a->repeat, 3);
	assert_int_equal(a->line, 6);
	assert_string_equal(a->status, "escalated");
	assert_int_equal(json_array_size(a->checks), 1);
	assert_non_null(a->schema);
	assert_int_equal(json_array_size(a->called), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(a->model, "answers"), 0), "text")), "hello");
	assert_true(a->max_cost_usd == 0.5 && a->max_tokens == 100 && a->max_latency_ms == -1);
	assert_int_equal(b->repeat, 1);
	assert_true(b->redteam);
	assert_string_equal(json_string_value(json_object_get(b->requester, "tenant")), "acme");
	assert_int_equal(json_array_size(json_object_get(b->requester, "roles")), 1);
	assert_null(a->requester);
	assert_null(b->status);
	assert_string_equal(b->judge_rubric, "be nice");
	assert_string_equal(json_string_value(b->judge_model), "main");
	rein_eval_suite_free(s);
	rein_script_free(sb);
}

/* Each bad suite gives its first diagnostic at this place with this text. */
static void test_parse_errors(void **state)
{
	(void)state;
	static const struct {
		const char *yaml, *where, *text;
	} bad[] = {
		{"cases: [", "s.yaml:2:1: ", "YAML"},
		{"- a\n- b\n", "s.yaml:1:1: ", "a suite is a mapping"},
		{"cases: [{name: a}]\n", "s.yaml:1:1: ", "a suite needs workflow"},
		{"workflow: w\n", "s.yaml:1:1: ", "a suite needs cases"},
		{"workflow: w\ncases: []\n", "s.yaml:2:8: ", "a suite needs cases"},
		{"workflow: w\nwhat: 1\ncases: [{name: a}]\n", "s.yaml:2:7: ", "unknown key 'what' in a suite"},
		{"workflow: w\ncases:\n  - { input: 1 }\n", "s.yaml:3:5: ", "a case needs a name"},
		{"workflow: w\ncases:\n  - name: a\n    repeat: -2\n", "s.yaml:4:13: ", "repeat must be an integer"},
		{"workflow: w\ncases:\n  - name: a\n  - name: a\n", "s.yaml:4:11: ", "a second case named 'a'"},
		{"workflow: w\ncases:\n  - name: a\n    expect: { status: ok }\n", "s.yaml:4:23: ", "status must be one of"},
		{"workflow: w\ncases:\n  - name: a\n    expect: { output: [\"x ==\"] }\n", "s.yaml:4:24: ", "output check does not compile"},
		{"workflow: w\ncases:\n  - name: a\n    expect: { output_schema: { type: 7 } }\n", "s.yaml:4:30: ", "output_schema:"},
		{"workflow: w\ncases:\n  - name: a\n    expect: { called: [1] }\n", "s.yaml:4:24: ", "called: each item"},
		{"workflow: w\ncases:\n  - name: a\n    expect: { policy: [{ decision: maybe }] }\n", "s.yaml:4:24: ", "decision: allow, deny or approve"},
		{"workflow: w\ncases:\n  - name: a\n    expect: { max_cost_usd: -1 }\n", "s.yaml:4:29: ", "max_cost_usd must be a number"},
		{"workflow: w\ncases:\n  - name: a\n    model: { answers: [] }\n", "s.yaml:4:23: ", "answers must be a non-empty list"},
		{"workflow: w\ncases:\n  - name: a\n    model: { provider: bard }\n", "s.yaml:4:24: ", "provider must be openai"},
		{"workflow: w\ncases:\n  - name: a\n    redteam: { forbidden: [] , also: 1}\n", "s.yaml:4:38: ", "unknown key 'also' in redteam"},
		{"workflow: w\ncases:\n  - name: a\n    judge: { model: main }\n", "s.yaml:4:12: ", "judge needs rubric"},
		{"workflow: w\ngate: { min_success: 2 }\ncases: [{name: a}]\n", "s.yaml:2:22: ", "min_success is a rate"},
		{"workflow: w\ncases:\n  - name: a\n    requester: { roles: [x] }\n", "s.yaml:4:16: ", "requester must be a mapping"},
		{"workflow: w\ncases:\n  - name: a\n    requester: { user: u, roles: 7 }\n", "s.yaml:4:34: ", "roles must be a string or a list"},
	};
	rein_script *sb;
	assert_int_equal(rein_script_new(&sb), REIN_OK);
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		rein_eval_suite *s = NULL;
		rein_err e = {0};
		int rc = rein_eval_suite_parse(bad[i].yaml, strlen(bad[i].yaml), "s.yaml", sb, &s, &e);
		if (rc != REIN_ESPEC || strncmp(e.msg, bad[i].where, strlen(bad[i].where)) != 0 ||
		    strstr(e.msg, bad[i].text) == NULL) {
			fprintf(stderr, "case %zu: rc %d, msg '%s'; want '%s...%s'\n", i, rc, e.msg,
				bad[i].where, bad[i].text);
			fail();
		}
		assert_null(s);
		/* the YAML errors are a message; the suite's are diagnostics too */
		if (i > 0)
			assert_true(e.diags.n >= 1);
		rein_err_clear(&e);
	}
	/* every problem is reported, not only the first */
	const char *many = "workflow: w\ncases:\n  - name: a\n    repeat: 0\n  - { name: b, expect: { status: x } }\n";
	rein_eval_suite *s = NULL;
	rein_err e = {0};
	assert_int_equal(rein_eval_suite_parse(many, strlen(many), "s.yaml", sb, &s, &e), REIN_ESPEC);
	assert_int_equal(e.diags.n, 2);
	assert_non_null(strstr(e.msg, "(and 1 more problems)"));
	rein_err_clear(&e);
	rein_script_free(sb);
}

static void test_parse_nomem(void **state)
{
	(void)state;
	rein_script *sb;
	assert_int_equal(rein_script_new(&sb), REIN_OK);
	for (long n = 1;; n++) {
		rein_eval_suite *s = NULL;
		rein_err e = {0};
		rein_fault_arm(REIN_FAULT_ALLOC, n);
		int rc = rein_eval_suite_parse(good, strlen(good), "s.yaml", sb, &s, &e);
		bool hit = rein_fault_count(REIN_FAULT_ALLOC) >= n;
		rein_fault_arm(REIN_FAULT_ALLOC, 0);
		rein_err_clear(&e);
		rein_eval_suite_free(s);
		if (!hit) {
			assert_int_equal(rc, REIN_OK);
			break;
		}
		/* a failed allocation is an error, or absorbed: never a crash or a leak */
		assert_true(rc == REIN_OK || rc == REIN_ENOMEM || rc == REIN_ESPEC);
	}
	rein_script_free(sb);
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	return remove(p);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* A suite end to end: an llm step answered in process by the case's script. */
static void test_run_in_process(void **state)
{
	(void)state;
	char dir[] = "/tmp/rein-test-eval-XXXXXX", path[256];
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/wf", dir);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof path, "%s/wf/workflow.yaml", dir);
	write_file(path,
		   "rein: 1\nname: t\n"
		   "models:\n"
		   "  m: { provider: replay, model: m-1 }\n"
		   "  j: { provider: openai, model: j-1, base_url: \"http://127.0.0.1:1/v1\", api_key_env: \"\", retry: { max_attempts: 1 } }\n"
		   "steps:\n"
		   "  ask:\n"
		   "    llm: { model: m, prompt: \"${input.q}\" }\n"
		   "    next: [{ when: \"out == 'yes'\", goto: ok }, { goto: no }]\n"
		   "  ok: { end: succeeded }\n"
		   "  no: { end: escalated, reason: said no }\n");
	const char *suite =
		"workflow: wf\n"
		"gate: { min_success: 0.9 }\n"
		"cases:\n"
		"  - name: yes\n"
		"    input: { q: a }\n"
		"    repeat: 2\n"
		"    model: { answers: [yes] }\n"
		"    expect: { output: \"out == 'yes'\", max_escalations: 0 }\n"
		"    judge: { rubric: says yes, model: j }\n"
		"  - name: no\n"
		"    input: { q: b }\n"
		"    repeat: 2\n"
		"    model: { answers: [no] }\n"
		"  - name: missing\n"
		"    input: { q: c }\n"
		"    model: { replay: nowhere.json }\n";
	snprintf(path, sizeof path, "%s/suite.yaml", dir);
	write_file(path, suite);
	rein_script *sb;
	assert_int_equal(rein_script_new(&sb), REIN_OK);
	rein_eval_suite *s = NULL;
	rein_err e = {0};
	assert_int_equal(rein_eval_suite_load(path, sb, &s, &e), REIN_OK);
	json_t *res = NULL, *g = NULL;
	snprintf(path, sizeof path, "%s/eval.db", dir);
	rein_eval_opts o = {.db = path};
	if (rein_eval_run(s, sb, &o, &res, &e) != REIN_OK)
		fprintf(stderr, "%s\n", e.msg);
	assert_non_null(res);
	json_t *cs = json_object_get(res, "cases");
	json_t *yes = json_array_get(cs, 0), *no = json_array_get(cs, 1), *miss = json_array_get(cs, 2);
	assert_int_equal(json_integer_value(json_object_get(yes, "passed")), 2);
	assert_int_equal(json_integer_value(json_object_get(no, "failed")), 2);
	/* the judge's tier is the workflow's own (not the case's script); its
	 * failure is a judge error, apart from the trial's outcome */
	assert_int_equal(json_integer_value(json_object_get(json_object_get(yes, "judge"), "errors")), 2);
	assert_non_null(strstr(json_string_value(json_object_get(json_object_get(json_array_get(json_object_get(yes, "trials"), 0), "judge"), "error")), "connect"));
	assert_true(json_number_value(json_object_get(no, "escalation_rate")) == 1);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(no, "escalation_reasons"), "said no")), 2);
	/* a recording that cannot be read is a harness error, not a failure */
	assert_int_equal(json_integer_value(json_object_get(miss, "errors")), 1);
	assert_int_equal(json_integer_value(json_object_get(miss, "failed")), 0);
	json_t *all = json_object_get(res, "overall");
	assert_int_equal(json_integer_value(json_object_get(all, "total")), 5);
	assert_true(json_number_value(json_object_get(all, "success_rate")) == 0.5);
	assert_true(json_number_value(json_object_get(json_object_get(yes, "pass_hat_k"), "2")) == 1);
	assert_true(json_number_value(json_object_get(json_object_get(no, "pass_at_k"), "2")) == 0);
	/* the gate: below min_success; against itself no drop */
	assert_int_equal(rein_eval_gate_check(res, res, &s->gate, &g, &e), REIN_OK);
	assert_false(json_is_true(json_object_get(g, "passed")));
	assert_int_equal(json_array_size(json_object_get(g, "crossed")), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(g, "crossed"), 0), "threshold")), "min_success");
	json_decref(g);
	rein_buf xml = {0};
	assert_int_equal(rein_eval_junit(res, &xml), REIN_OK);
	assert_non_null(strstr(xml.p, "<testcase classname=\"suite.yaml\" name=\"missing\""));
	assert_non_null(strstr(xml.p, "<failure type=\"assertion\" message=\"status: expected succeeded, got escalated: said no\">"));
	assert_non_null(strstr(xml.p, "<error type=\"harness\""));
	rein_buf_free(&xml);
	json_decref(res);
	rein_eval_suite_free(s);
	rein_script_free(sb);
	rein_err_clear(&e);
	nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

/* The gate's relative thresholds, on made-up results. */
static void test_gate(void **state)
{
	(void)state;
	json_t *base = json_pack("{s:{s:f, s:f, s:f}, s:[{s:s, s:f}]}", "overall", "success_rate", 0.9,
				 "cost_per_completed", 0.010, "escalation_rate", 0.1, "cases", "name", "a",
				 "success_rate", 1.0);
	json_t *now = json_pack("{s:{s:f, s:f, s:f}, s:[{s:s, s:f}]}", "overall", "success_rate", 0.8,
				"cost_per_completed", 0.013, "escalation_rate", 0.25, "cases", "name", "a",
				"success_rate", 0.5);
	rein_eval_gate g = {.min_success = 0.5, .max_success_drop = 0.05, .max_cost_increase_pct = 20,
			    .max_escalation_increase = 0.1};
	json_t *out = NULL;
	rein_err e = {0};
	assert_int_equal(rein_eval_gate_check(now, base, &g, &out, &e), REIN_OK);
	char *s = rein_json_dump(out);
	assert_non_null(strstr(s, "\"threshold\":\"max_success_drop\""));
	assert_non_null(strstr(s, "\"threshold\":\"max_cost_increase_pct\""));
	assert_non_null(strstr(s, "\"threshold\":\"max_escalation_increase\""));
	assert_null(strstr(s, "\"threshold\":\"min_success\""));
	assert_non_null(strstr(s, "\"worse_cases\":[{\"baseline\":1"));
	rein_free(s);
	json_decref(out);
	/* within the thresholds: passed */
	g = (rein_eval_gate){.min_success = 0.5, .max_success_drop = 0.2, .max_cost_increase_pct = 40,
			     .max_escalation_increase = 0.2};
	assert_int_equal(rein_eval_gate_check(now, base, &g, &out, &e), REIN_OK);
	assert_true(json_is_true(json_object_get(out, "passed")));
	json_decref(out);
	/* not a result */
	json_t *junk = json_pack("{s:i}", "x", 1);
	assert_int_equal(rein_eval_gate_check(now, junk, &g, &out, &e), REIN_EINVAL);
	rein_err_clear(&e);
	json_decref(junk);
	json_decref(base);
	json_decref(now);
}

int main(void)
{
	rein_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pass_k_table),  cmocka_unit_test(test_parse_good),
		cmocka_unit_test(test_parse_errors),  cmocka_unit_test(test_parse_nomem),
		cmocka_unit_test(test_run_in_process), cmocka_unit_test(test_gate),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
