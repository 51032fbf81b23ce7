/*
 * Decision tables for the policy layer (docs/policy.md): every rule form,
 * precedence, the read/write defaults, tenant scoping, rate limits, hours,
 * write counts, fail-closed conditions and compile-time errors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "policy.h"

static rein_script *sb;

static int setup(void **st) { (void)st; return rein_script_new(&sb); }
static int teardown(void **st) { (void)st; rein_script_free(sb); return 0; }

static rein_policy *compile(const char *rules)
{
	rein_err e = {0};
	json_t *j = rein_json_parse(rules, strlen(rules), &e);
	assert_non_null(j);
	rein_policy *p = NULL;
	int bad;
	int rc = rein_policy_compile(j, "test", sb, &p, &bad, &e);
	if (rc != REIN_OK)
		fail_msg("%s", e.msg);
	json_decref(j);
	return p;
}

static int compile_err(const char *rules, char *msg, size_t n)
{
	rein_err e = {0};
	json_t *j = rein_json_parse(rules, strlen(rules), &e);
	rein_policy *p = NULL;
	int bad = -2;
	int rc = rein_policy_compile(j, "test", sb, &p, &bad, &e);
	snprintf(msg, n, "%s", e.msg);
	json_decref(j);
	rein_policy_free(p);
	assert_int_not_equal(rc, REIN_OK);
	return bad;
}

typedef struct kase {
	const char *tool;
	bool write;
	int risk;
	const char *args, *requester, *input, *history;
	int64_t now;
	bool enforce;
	const char *want, *rules; /* decision, ids joined by "," */
	const char *run;	  /* the run as given (default {"id":"run_1"}) */
	bool no_requester;	  /* requester NULL */
	const char *tcounts;	  /* tenant_counts as given, NULL: none */
	const char *prov;	  /* the call's provenance (JSON), or NULL */
	const char *reason;	  /* the first reason, exactly, or NULL: any */
} kase;

static void check(const rein_policy *p, const rein_policy *p2, const kase *k)
{
	rein_err e = {0};
	json_t *args = rein_json_parse(k->args ? k->args : "{}", strlen(k->args ? k->args : "{}"), &e);
	json_t *rq = rein_json_parse(k->requester ? k->requester : "{\"user\":\"u\",\"roles\":[]}",
				     strlen(k->requester ? k->requester : "{\"user\":\"u\",\"roles\":[]}"), &e);
	json_t *in = rein_json_parse(k->input ? k->input : "{}", strlen(k->input ? k->input : "{}"), &e);
	json_t *h = rein_json_parse(k->history ? k->history : "[]", strlen(k->history ? k->history : "[]"), &e);
	json_t *input_doc = json_pack("{s:{s:{}, s:{}, s:{}}}", "properties", "amount", "tenant", "to");
	json_t *run = k->run ? rein_json_parse(k->run, strlen(k->run), &e) : json_pack("{s:s}", "id", "run_1");
	json_t *prov = k->prov ? rein_json_parse(k->prov, strlen(k->prov), &e) : NULL;
	assert_true(k->prov == NULL || prov != NULL);
	const rein_policy *sets[2] = {p, p2};
	json_t *tc = k->tcounts ? rein_json_parse(k->tcounts, strlen(k->tcounts), &e) : NULL;
	rein_policy_call c = {.tool = {k->tool, k->write, k->risk, input_doc},
			      .args = args, .requester = k->no_requester ? NULL : rq, .input = in, .run = run,
			      .now_ms = k->now, .history = h, .enforce = k->enforce, .tenant_counts = tc,
			      .provenance = prov};
	json_t *d = NULL;
	assert_int_equal(rein_policy_eval(sb, sets, 2, &c, &d, &e), REIN_OK);
	assert_string_equal(json_string_value(json_object_get(d, "decision")), k->want);
	char ids[256] = "";
	size_t i;
	json_t *x;
	json_array_foreach(json_object_get(d, "rules"), i, x) {
		strncat(ids, i ? "," : "", sizeof ids - strlen(ids) - 1);
		strncat(ids, json_string_value(x), sizeof ids - strlen(ids) - 1);
	}
	assert_string_equal(ids, k->rules);
	assert_true(json_array_size(json_object_get(d, "reasons")) >= 1);
	if (k->reason)
		assert_string_equal(json_string_value(json_array_get(json_object_get(d, "reasons"), 0)), k->reason);
	json_decref(d);
	json_decref(args);
	json_decref(rq);
	json_decref(in);
	json_decref(h);
	json_decref(input_doc);
	json_decref(run);
	json_decref(tc);
	json_decref(prov);
}

static void test_defaults(void **st)
{
	(void)st;
	rein_policy *p = compile("[]");
	kase ks[] = {
		{"read", false, 0, .enforce = true, .want = "allow", .rules = ""},
		{"pay", true, 0, .enforce = true, .want = "deny", .rules = ""},
		{"pay", true, 0, .enforce = false, .want = "allow", .rules = ""},
	};
	for (size_t i = 0; i < sizeof ks / sizeof *ks; i++)
		check(p, NULL, &ks[i]);
	assert_int_equal(rein_policy_count(p), 0);
	rein_policy_free(p);
}

static void test_precedence_and_targets(void **st)
{
	(void)st;
	rein_policy *org = compile("[{\"id\":\"no-high\",\"effect\":\"deny\",\"risk\":\"high\",\"reason\":\"high risk\"}]");
	rein_policy *wf = compile(
		"[{\"id\":\"ok-pay\",\"effect\":\"allow\",\"tool\":[\"pay\",\"refund*\"]},"
		" {\"id\":\"review\",\"effect\":\"approve\",\"tool\":\"refund*\",\"when\":\"args.amount > 50\"},"
		" {\"id\":\"reads\",\"effect\":\"deny\",\"access\":\"read\",\"tool\":\"secret_*\"},"
		" {\"id\":\"writes\",\"effect\":\"allow\",\"access\":\"write\",\"tool\":\"log\"},"
		" {\"id\":\"med\",\"effect\":\"approve\",\"risk\":\"medium\",\"tool\":\"wire\"}]");
	kase ks[] = {
		{"pay", true, 0, .enforce = true, .want = "allow", .rules = "ok-pay"},
		{"refund_card", true, 0, .args = "{\"amount\":10}", .enforce = true, .want = "allow", .rules = "ok-pay"},
		{"refund_card", true, 0, .args = "{\"amount\":90}", .enforce = true, .want = "approve", .rules = "review"},
		{"refund_card", true, 2, .args = "{\"amount\":90}", .enforce = true, .want = "deny", .rules = "no-high"},
		{"secret_db", false, 0, .enforce = true, .want = "deny", .rules = "reads"},
		{"secret_db", true, 0, .enforce = true, .want = "deny", .rules = ""},
		{"log", true, 0, .enforce = true, .want = "allow", .rules = "writes"},
		{"log", false, 0, .enforce = true, .want = "allow", .rules = ""},
		{"wire", true, 0, .enforce = true, .want = "deny", .rules = ""},
		{"wire", true, 1, .enforce = true, .want = "approve", .rules = "med"},
		{"wire", true, 2, .enforce = true, .want = "deny", .rules = "no-high"},
	};
	for (size_t i = 0; i < sizeof ks / sizeof *ks; i++)
		check(org, wf, &ks[i]);
	rein_policy_free(org);
	rein_policy_free(wf);
}

static void test_limits(void **st)
{
	(void)st;
	rein_policy *p = compile(
		"[{\"id\":\"cap\",\"effect\":\"deny\",\"tool\":\"pay\",\"when\":\"args.amount > 500\"},"
		" {\"id\":\"tenant\",\"effect\":\"deny\",\"when\":\"args.tenant ~= nil and args.tenant ~= requester.tenant\"},"
		" {\"id\":\"rate\",\"effect\":\"deny\",\"tool\":\"pay\",\"limit\":{\"max\":2,\"window_s\":60}},"
		" {\"id\":\"writes\",\"effect\":\"deny\",\"access\":\"write\",\"limit\":{\"max\":3}},"
		" {\"id\":\"hours\",\"effect\":\"deny\",\"tool\":\"pay\",\"when\":\"run.hour < 9 or run.hour >= 17 or run.weekday == 0\"},"
		" {\"id\":\"count\",\"effect\":\"deny\",\"tool\":\"pay\",\"when\":\"run.tool_calls.pay ~= nil and run.tool_calls.pay >= 9\"},"
		" {\"id\":\"pay\",\"effect\":\"allow\",\"tool\":\"pay\"}]");
	/* Monday 5 January 2026 10:00 UTC */
	int64_t ten = 1767571200000LL + 10 * 3600000LL;
	const char *acme = "{\"user\":\"u\",\"roles\":[],\"tenant\":\"acme\"}";
	kase ks[] = {
		{"pay", true, 0, .args = "{\"amount\":10}", .now = ten, .enforce = true, .want = "allow", .rules = "pay"},
		{"pay", true, 0, .args = "{\"amount\":900}", .now = ten, .enforce = true, .want = "deny", .rules = "cap"},
		{"pay", true, 0, .args = "{\"tenant\":\"acme\",\"amount\":1}", .requester = acme, .now = ten, .enforce = true, .want = "allow", .rules = "pay"},
		{"pay", true, 0, .args = "{\"tenant\":\"globex\",\"amount\":1}", .requester = acme, .now = ten, .enforce = true, .want = "deny", .rules = "tenant"},
		{"pay", true, 0, .args = "{\"amount\":1}", .now = ten, .enforce = true, .want = "deny", .rules = "rate",
		 .history = "[{\"tool\":\"pay\",\"write\":true,\"at\":1767607190000},{\"tool\":\"pay\",\"write\":true,\"at\":1767607195000}]"},
		{"pay", true, 0, .args = "{\"amount\":1}", .now = ten, .enforce = true, .want = "allow", .rules = "pay", /* outside the window */
		 .history = "[{\"tool\":\"pay\",\"write\":true,\"at\":1767600000000},{\"tool\":\"pay\",\"write\":true,\"at\":1767607195000}]"},
		{"pay", true, 0, .args = "{\"amount\":1}", .now = ten, .enforce = true, .want = "deny", .rules = "writes",
		 .history = "[{\"tool\":\"a\",\"write\":true,\"at\":1},{\"tool\":\"b\",\"write\":true,\"at\":2},{\"tool\":\"c\",\"write\":true,\"at\":3},{\"tool\":\"r\",\"write\":false,\"at\":4}]"},
		{"pay", true, 0, .args = "{\"amount\":1}", .now = ten - 2 * 3600000LL, .enforce = true, .want = "deny", .rules = "hours"},
		{"pay", true, 0, .args = "{\"amount\":1}", .now = ten + 7 * 3600000LL, .enforce = true, .want = "deny", .rules = "hours"},
		{"pay", true, 0, .args = "{\"amount\":1}", .now = ten - 24 * 3600000LL, .enforce = true, .want = "deny", .rules = "hours"}, /* Sunday */
	};
	for (size_t i = 0; i < sizeof ks / sizeof *ks; i++)
		check(p, NULL, &ks[i]);
	rein_policy_free(p);
}

/* Per-tenant limits: the counts come from outside (the runner, from the
 * store); a rule without one fails closed; the rates are listed with what
 * they count. */
static void test_tenant_limits(void **st)
{
	(void)st;
	rein_policy *p = compile(
		"[{\"id\":\"rate\",\"effect\":\"deny\",\"tool\":\"pa*\",\"access\":\"write\","
		"\"limit\":{\"max\":2,\"window_s\":3600,\"per\":\"tenant\"},\"reason\":\"2 an hour\"},"
		" {\"id\":\"run\",\"effect\":\"deny\",\"tool\":\"pay\",\"limit\":{\"max\":5,\"per\":\"run\"}},"
		" {\"id\":\"pay\",\"effect\":\"allow\",\"tool\":\"pay\"}]");
	kase ks[] = {
		{"pay", true, 0, .now = 1000, .enforce = true, .want = "allow", .rules = "pay",
		 .tcounts = "{\"rate\": 1}"},
		{"pay", true, 0, .now = 1000, .enforce = true, .want = "deny", .rules = "rate",
		 .tcounts = "{\"rate\": 2}"},
		{"pay", true, 0, .now = 1000, .enforce = true, .want = "deny", .rules = "rate",
		 .tcounts = "{\"rate\": 7}"},
		/* no count: fails closed */
		{"pay", true, 0, .now = 1000, .enforce = true, .want = "deny", .rules = "rate"},
		{"pay", true, 0, .now = 1000, .enforce = true, .want = "deny", .rules = "rate",
		 .tcounts = "{\"other\": 0}"},
		{"pay", true, 0, .now = 1000, .enforce = true, .want = "deny", .rules = "rate",
		 .tcounts = "{\"rate\": \"2\"}"},
		/* a read tool is not its target: no count needed */
		{"pay", false, 0, .now = 1000, .enforce = true, .want = "allow", .rules = "pay"},
	};
	for (size_t i = 0; i < sizeof ks / sizeof *ks; i++)
		check(p, NULL, &ks[i]);
	rein_policy_rate r[4];
	assert_int_equal(rein_policy_rates(p, r, 4), 1);
	assert_int_equal(rein_policy_rates(p, NULL, 0), 1);
	assert_int_equal(rein_policy_rates(NULL, r, 4), 0);
	assert_string_equal(r[0].id, "rate");
	assert_int_equal(r[0].max, 2);
	assert_int_equal(r[0].window_ms, 3600000);
	assert_true(rein_policy_rate_counts(&r[0], "pay", true));
	assert_true(rein_policy_rate_counts(&r[0], "park", true));
	assert_false(rein_policy_rate_counts(&r[0], "pay", false));
	assert_false(rein_policy_rate_counts(&r[0], "refund", true));
	assert_false(rein_policy_rate_counts(&r[0], NULL, true));
	rein_policy_free(p);
	/* a read-only rate counts reads only; an untargeted one every tool */
	p = compile("[{\"id\":\"r\",\"effect\":\"deny\",\"access\":\"read\","
		    "\"limit\":{\"max\":1,\"window_s\":1,\"per\":\"tenant\"}}]");
	assert_int_equal(rein_policy_rates(p, r, 4), 1);
	assert_true(rein_policy_rate_counts(&r[0], "anything", false));
	assert_false(rein_policy_rate_counts(&r[0], "anything", true));
	rein_policy_free(p);
}

static void test_fail_closed(void **st)
{
	(void)st;
	rein_policy *p = compile(
		"[{\"id\":\"err\",\"effect\":\"allow\",\"tool\":\"a\",\"when\":\"args.amount.x.y > 1\"},"
		" {\"id\":\"str\",\"effect\":\"allow\",\"tool\":\"b\",\"when\":\"'yes'\"},"
		" {\"id\":\"nofield\",\"effect\":\"allow\",\"tool\":\"c\",\"when\":\"args.nope == 1\"},"
		" {\"id\":\"nil\",\"effect\":\"deny\",\"tool\":\"d\",\"when\":\"args.amount and args.amount > 5\"}]");
	kase ks[] = {
		{"a", false, 0, .args = "{\"amount\":1}", .enforce = true, .want = "deny", .rules = "err"},
		{"b", false, 0, .enforce = true, .want = "deny", .rules = "str",
		 .reason = "rule 'str' cannot be evaluated: its condition gave a string, not a boolean"},
		{"c", false, 0, .enforce = true, .want = "deny", .rules = "nofield"},
		{"d", false, 0, .enforce = true, .want = "allow", .rules = ""},
	};
	for (size_t i = 0; i < sizeof ks / sizeof *ks; i++)
		check(p, NULL, &ks[i]);
	/* the missing field is found before the rule runs */
	json_t *doc = json_pack("{s:{s:{}}}", "properties", "amount");
	rein_policy_tool t = {"c", false, 0, doc};
	rein_err e = {0};
	int bad = -1;
	assert_int_equal(rein_policy_check_tools(p, &t, 1, &bad, &e), REIN_EINVAL);
	assert_int_equal(bad, 2);
	assert_non_null(strstr(e.msg, "args.nope is not a field of tool 'c'"));
	json_decref(doc);
	rein_policy_free(p);
}

/* Rows that take the remaining branches of evaluation: history entries
 * without a tool or a write flag, read-only limits, a run that is not a
 * mapping, no requester, conditions giving nil, a number or a table. */
static void test_eval_edges(void **st)
{
	(void)st;
	rein_policy *p = compile(
		"[{\"id\":\"rl\",\"effect\":\"deny\",\"access\":\"read\",\"tool\":\"q\",\"limit\":{\"max\":2}},"
		" {\"id\":\"nil\",\"effect\":\"deny\",\"tool\":\"n\",\"when\":\"nil\"},"
		" {\"id\":\"num\",\"effect\":\"allow\",\"tool\":\"m\",\"when\":\"1\"},"
		" {\"id\":\"tab\",\"effect\":\"allow\",\"tool\":\"t\",\"when\":\"{}\"},"
		" {\"id\":\"real\",\"effect\":\"allow\",\"tool\":\"f\",\"when\":\"1.5\"},"
		" {\"id\":\"who\",\"effect\":\"deny\",\"tool\":\"w\",\"when\":\"requester.user == nil\"},"
		" {\"id\":\"rv\",\"effect\":\"deny\",\"tool\":\"r\",\"when\":\"run.id == nil and run.calls == 3 and run.writes == 2\"}]");
	const char *hist = "[{\"tool\":\"q\",\"write\":true,\"at\":1},{\"tool\":\"q\",\"at\":2},{\"write\":true,\"at\":3}]";
	kase ks[] = {
		/* one read of q (the write and the tool-less entry do not count) */
		{"q", false, 0, .history = hist, .enforce = true, .want = "allow", .rules = ""},
		{"q", false, 0, .history = "[{\"tool\":\"q\",\"at\":1},{\"tool\":\"q\",\"write\":false,\"at\":2}]",
		 .enforce = true, .want = "deny", .rules = "rl"},
		{"n", false, 0, .enforce = true, .want = "allow", .rules = ""},
		{"m", false, 0, .enforce = true, .want = "deny", .rules = "num",
		 .reason = "rule 'num' cannot be evaluated: its condition gave a number, not a boolean"},
		{"t", false, 0, .enforce = true, .want = "deny", .rules = "tab",
		 .reason = "rule 'tab' cannot be evaluated: its condition gave a table, not a boolean"},
		{"f", false, 0, .enforce = true, .want = "deny", .rules = "real",
		 .reason = "rule 'real' cannot be evaluated: its condition gave a number, not a boolean"},
		{"w", false, 0, .no_requester = true, .enforce = true, .want = "deny", .rules = "who"},
		{"w", false, 0, .enforce = true, .want = "allow", .rules = ""},
		{"r", false, 0, .run = "[1]", .history = hist, .enforce = true, .want = "deny", .rules = "rv"},
		{"r", false, 0, .history = hist, .enforce = true, .want = "allow", .rules = ""},
	};
	for (size_t i = 0; i < sizeof ks / sizeof *ks; i++)
		check(p, NULL, &ks[i]);
	rein_policy_free(p);
}

/* Rule sets that compile: which args.FIELDs a condition names (a decision
 * table: rule, then the fields check_tools must find in a schema). */
static void test_fields(void **st)
{
	(void)st;
	static const struct {
		const char *rules;
		const char *missing; /* the field named in the error, or NULL: passes */
	} rows[] = {
		{"[{\"id\":\"a\",\"effect\":\"allow\",\"when\":\"args.my_field == 1\"}]", "my_field"},
		{"[{\"id\":\"a\",\"effect\":\"allow\",\"when\":\"'xargs.f a.args.g args.1 args.' == args. amount\"}]", NULL},
		{"[{\"id\":\"a\",\"effect\":\"allow\",\"tool\":[\"ab\",\"cd\",\"ab\"],\"when\":\"args.amount == args.amount\"}]", NULL},
		{"[{\"id\":\"a\",\"effect\":\"allow\",\"tool\":\"zz\",\"when\":\"args.nope == 1\"}]", NULL}, /* targets no tool */
	};
	json_t *doc = json_pack("{s:{s:{}}}", "properties", "amount");
	for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
		rein_policy *p = compile(rows[i].rules);
		rein_policy_tool t[] = {{"ab", false, 0, doc}, {"x", false, 0, NULL}};
		rein_err e = {0};
		int bad = -2;
		int rc = rein_policy_check_tools(p, t, 2, &bad, &e);
		if (rows[i].missing) {
			assert_int_equal(rc, REIN_EINVAL);
			assert_int_equal(bad, 0);
			assert_non_null(strstr(e.msg, rows[i].missing));
		} else {
			assert_int_equal(rc, REIN_OK);
			assert_int_equal(bad, -1);
		}
		rein_policy_free(p);
	}
	/* a schema without properties (or with a non-mapping there) takes anything */
	json_t *odd = json_pack("{s:i}", "properties", 5);
	rein_policy *p = compile("[{\"id\":\"a\",\"effect\":\"allow\",\"when\":\"args.any == 1\"}]");
	rein_policy_tool t[] = {{"a", false, 0, NULL}, {"b", true, 2, odd}};
	rein_err e = {0};
	int bad = -2;
	assert_int_equal(rein_policy_check_tools(p, t, 2, &bad, &e), REIN_OK);
	assert_int_equal(bad, -1);
	assert_int_equal(rein_policy_count(p), 1);
	assert_int_equal(rein_policy_count(NULL), 0);
	rein_policy_free(p);
	json_decref(odd);
	json_decref(doc);
	/* no origin: named "policy"; rules that are not JSON at all */
	rein_policy *q = NULL;
	json_t *empty = json_array();
	assert_int_equal(rein_policy_compile(empty, NULL, sb, &q, &bad, &e), REIN_OK);
	assert_int_equal(rein_policy_count(q), 0);
	rein_policy_free(q);
	json_decref(empty);
	q = NULL;
	assert_int_equal(rein_policy_compile(NULL, "t", sb, &q, &bad, &e), REIN_EINVAL);
	assert_null(q);
	assert_int_equal(bad, -1);
}

static void test_compile_errors(void **st)
{
	(void)st;
	char m[512];
	assert_int_equal(compile_err("{}", m, sizeof m), -1);
	assert_int_equal(compile_err("[1]", m, sizeof m), 0);
	assert_int_equal(compile_err("[{\"effect\":\"allow\"}]", m, sizeof m), 0);
	assert_int_equal(compile_err("[{\"id\":\"a\",\"effect\":\"maybe\"}]", m, sizeof m), 0);
	assert_int_equal(compile_err("[{\"id\":\"a\",\"effect\":\"allow\",\"bogus\":1}]", m, sizeof m), 0);
	assert_non_null(strstr(m, "unknown key 'bogus'"));
	assert_int_equal(compile_err("[{\"id\":\"a\",\"effect\":\"allow\",\"tool\":3}]", m, sizeof m), 0);
	assert_int_equal(compile_err("[{\"id\":\"a\",\"effect\":\"allow\",\"tool\":[3]}]", m, sizeof m), 0);
	assert_int_equal(compile_err("[{\"id\":\"a\",\"effect\":\"allow\",\"access\":\"exec\"}]", m, sizeof m), 0);
	assert_int_equal(compile_err("[{\"id\":\"a\",\"effect\":\"allow\",\"risk\":\"huge\"}]", m, sizeof m), 0);
	assert_int_equal(compile_err("[{\"id\":\"a\",\"effect\":\"allow\",\"when\":5}]", m, sizeof m), 0);
	assert_int_equal(compile_err("[{\"id\":\"a\",\"effect\":\"allow\",\"when\":\"args.x >\"}]", m, sizeof m), 0);
	assert_int_equal(compile_err("[{\"id\":\"a\",\"effect\":\"allow\",\"reason\":5}]", m, sizeof m), 0);
	assert_int_equal(compile_err("[{\"id\":\"a\",\"effect\":\"allow\",\"limit\":{\"max\":-1}}]", m, sizeof m), 0);
	assert_int_equal(compile_err("[{\"id\":\"a\",\"effect\":\"allow\",\"limit\":{\"max\":1,\"x\":1}}]", m, sizeof m), 0);
	assert_int_equal(compile_err("[{\"id\":\"a\",\"effect\":\"allow\"},{\"id\":\"a\",\"effect\":\"deny\"}]", m, sizeof m), 1);
	assert_non_null(strstr(m, "a second rule with this id"));
	/* one row per refusal: the rules, the rule at fault, a piece of the message */
	static const struct {
		const char *rules;
		int bad;
		const char *msg;
	} rows[] = {
		{"[{\"id\":\"\",\"effect\":\"allow\"}]", 0, "needs an id"},
		{"[{\"id\":\"a\"}]", 0, "effect must be"},
		{"[{\"id\":\"a\",\"effect\":\"allow\",\"tool\":[]}]", 0, "tool must be"},
		{"[{\"id\":\"a\",\"effect\":\"allow\",\"access\":5}]", 0, "access must be"},
		{"[{\"id\":\"a\",\"effect\":\"allow\",\"risk\":5}]", 0, "risk must be"},
		{"[{\"id\":\"a\",\"effect\":\"allow\",\"limit\":5}]", 0, "limit must be"},
		{"[{\"id\":\"a\",\"effect\":\"allow\",\"limit\":{}}]", 0, "limit must be"},
		{"[{\"id\":\"a\",\"effect\":\"allow\",\"limit\":{\"max\":\"x\"}}]", 0, "limit must be"},
		{"[{\"id\":\"a\",\"effect\":\"allow\",\"limit\":{\"max\":1,\"window_s\":\"x\"}}]", 0, "limit must be"},
		{"[{\"id\":\"a\",\"effect\":\"allow\",\"limit\":{\"max\":1,\"window_s\":0}}]", 0, "limit must be"},
		{"[{\"id\":\"a\",\"effect\":\"allow\",\"limit\":{\"max\":1,\"window_s\":5,\"x\":1}}]", 0, "limit must be"},
		{"[{\"id\":\"a\",\"effect\":\"allow\",\"limit\":{\"max\":1,\"window_s\":5,\"per\":\"user\"}}]", 0, "limit must be"},
		{"[{\"id\":\"a\",\"effect\":\"allow\",\"limit\":{\"max\":1,\"window_s\":5,\"per\":3}}]", 0, "limit must be"},
		{"[{\"id\":\"a\",\"effect\":\"allow\",\"limit\":{\"max\":1,\"per\":\"tenant\"}}]", 0, "a limit per tenant needs a window_s"},
		{"[{\"id\":\"a\",\"effect\":\"allow\"},{\"id\":\"b\",\"effect\":\"deny\",\"tool\":[\"x\",3]}]", 1, "tool must be"},
		{"[{\"id\":\"a\",\"effect\":\"allow\",\"approval\":{}}]", 0, "approval settings need effect: approve"},
		{"[{\"id\":\"a\",\"effect\":\"approve\",\"approval\":5}]", 0, "approval must be a mapping"},
		{"[{\"id\":\"a\",\"effect\":\"approve\",\"approval\":{\"approvers\":11}}]", 0, "approvers must be"},
		{"[{\"id\":\"a\",\"effect\":\"approve\",\"approval\":{\"approvers\":\"2\"}}]", 0, "approvers must be"},
		{"[{\"id\":\"a\",\"effect\":\"approve\",\"approval\":{\"roles\":\"x\"}}]", 0, "roles must be"},
		{"[{\"id\":\"a\",\"effect\":\"approve\",\"approval\":{\"roles\":[3]}}]", 0, "roles must be"},
		{"[{\"id\":\"a\",\"effect\":\"approve\",\"approval\":{\"sla_s\":-1}}]", 0, "sla_s must be"},
		{"[{\"id\":\"a\",\"effect\":\"approve\",\"approval\":{\"on_timeout\":5}}]", 0, "on_timeout must be"},
		{"[{\"id\":\"a\",\"effect\":\"approve\",\"approval\":{\"x\":1}}]", 0, "unknown key 'x'"},
	};
	for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
		assert_int_equal(compile_err(rows[i].rules, m, sizeof m), rows[i].bad);
		if (strstr(m, rows[i].msg) == NULL)
			fail_msg("row %zu: '%s' lacks '%s'", i, m, rows[i].msg);
	}
	char v1[65], v2[65];
	json_t *a = json_pack("[{s:s}]", "id", "x"), *b = json_pack("[{s:s}]", "id", "y");
	rein_policy_version(a, v1);
	rein_policy_version(b, v2);
	assert_string_not_equal(v1, v2);
	assert_int_equal(strlen(v1), 64);
	json_decref(a);
	json_decref(b);
	assert_string_equal(rein_policy_decision_name(REIN_POLICY_APPROVE), "approve");
	/* a rule's approval settings, normalized, found by id */
	json_t *rs = json_loads("[{\"id\":\"two\",\"effect\":\"approve\",\"approval\":{\"approvers\":2,"
				"\"on_timeout\":\"halt\"}}, {\"id\":\"one\",\"effect\":\"approve\"}]", 0, NULL);
	json_t *want = json_loads("{\"approvers\": 2, \"roles\": [], \"sla_s\": 86400, "
				  "\"on_timeout\": \"halt\"}", 0, NULL);
	rein_policy *p = NULL;
	rein_err e = {0};
	int bad = -1;
	assert_int_equal(rein_policy_compile(rs, "t", sb, &p, &bad, &e), REIN_OK);
	assert_true(json_equal(rein_policy_rule_approval(p, "two"), want));
	assert_null(rein_policy_rule_approval(p, "one"));
	assert_null(rein_policy_rule_approval(p, "none"));
	assert_null(rein_policy_rule_approval(NULL, "two"));
	rein_policy_free(p);
	json_decref(want);
	json_decref(rs);
}

/* Approval settings (a rule's, a tool's): one row an input, then the
 * normalized settings or a piece of the refusal; every default, every
 * refusal. */
static void test_approval_norm(void **st)
{
	(void)st;
	static const struct {
		const char *in; /* NULL: no settings at all */
		const char *want, *msg; /* the settings, or a piece of the refusal */
	} rows[] = {
		{"{}", "{\"approvers\":1,\"roles\":[],\"sla_s\":86400,\"on_timeout\":\"escalate\"}", NULL},
		{"{\"approvers\":10,\"roles\":[\"finance\",\"ops\"],\"sla_s\":60,\"on_timeout\":\"deny\"}",
		 "{\"approvers\":10,\"roles\":[\"finance\",\"ops\"],\"sla_s\":60,\"on_timeout\":\"deny\"}", NULL},
		{"{\"sla_s\":1,\"on_timeout\":\"escalate\"}",
		 "{\"approvers\":1,\"roles\":[],\"sla_s\":1,\"on_timeout\":\"escalate\"}", NULL},
		{"{\"roles\":[],\"on_timeout\":\"halt\"}",
		 "{\"approvers\":1,\"roles\":[],\"sla_s\":86400,\"on_timeout\":\"halt\"}", NULL},
		{NULL, NULL, "approval must be a mapping {approvers, roles, sla_s, on_timeout}"},
		{"[]", NULL, "approval must be a mapping"},
		{"{\"approvers\":0}", NULL, "approval: approvers must be an integer from 1 to 10"},
		{"{\"approvers\":1.5}", NULL, "approval: approvers must be an integer from 1 to 10"},
		{"{\"roles\":[\"a\",\"\"]}", NULL, "approval: roles must be a list of role names"},
		{"{\"sla_s\":0}", NULL, "approval: sla_s must be a positive integer (seconds)"},
		{"{\"sla_s\":\"1h\"}", NULL, "approval: sla_s must be a positive integer (seconds)"},
		{"{\"on_timeout\":\"retry\"}", NULL, "approval: on_timeout must be escalate, deny or halt"},
		{"{\"approvers\":2,\"who\":1}", NULL, "approval: unknown key 'who'"},
	};
	for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
		json_t *in = rows[i].in ? json_loads(rows[i].in, 0, NULL) : NULL;
		assert_true(rows[i].in == NULL || in != NULL);
		json_t *out = (json_t *)&out; /* written on every path */
		rein_err e = {0};
		int rc = rein_policy_approval_norm(in, &out, &e);
		if (rows[i].want) {
			json_t *want = json_loads(rows[i].want, 0, NULL);
			assert_int_equal(rc, REIN_OK);
			if (!json_equal(out, want))
				fail_msg("row %zu: not the settings wanted", i);
			json_decref(want);
			json_decref(out);
		} else {
			assert_int_equal(rc, REIN_EINVAL);
			assert_null(out);
			if (strstr(e.msg, rows[i].msg) == NULL)
				fail_msg("row %zu: '%s' lacks '%s'", i, e.msg, rows[i].msg);
		}
		json_decref(in);
	}
	/* under allocation faults: REIN_ENOMEM and no settings, or the settings */
	json_t *in = json_loads("{\"roles\":[\"finance\"],\"on_timeout\":\"deny\"}", 0, NULL);
	bool reached = true;
	int fails = 0;
	for (long n = 1; reached && n < 100; n++) {
		json_t *out = NULL;
		rein_err e = {0};
		rein_fault_arm(REIN_FAULT_ALLOC, n);
		int rc = rein_policy_approval_norm(in, &out, &e);
		reached = rein_fault_count(REIN_FAULT_ALLOC) >= n;
		rein_fault_arm(REIN_FAULT_ALLOC, 0);
		if (rc == REIN_OK) {
			assert_string_equal(json_string_value(json_object_get(out, "on_timeout")), "deny");
		} else {
			assert_int_equal(rc, REIN_ENOMEM);
			assert_null(out);
			assert_string_equal(e.msg, "out of memory");
			fails++;
		}
		json_decref(out);
	}
	assert_true(fails >= 1);
	json_decref(in);
	/* a rule's settings by id: no id, no settings */
	rein_policy *p = compile("[{\"id\":\"a\",\"effect\":\"approve\",\"approval\":{\"approvers\":3}}]");
	assert_int_equal(json_integer_value(json_object_get(rein_policy_rule_approval(p, "a"), "approvers")), 3);
	assert_null(rein_policy_rule_approval(p, NULL));
	rein_policy_free(p);
}

/* Fails the Nth allocation of a compile and an eval over every rule form,
 * for each N until none is reached: a clean REIN_ENOMEM (or a fail-closed
 * deny), never a crash or a leak (ASan). */
static void test_alloc_faults(void **st)
{
	(void)st;
	/* one row per sweep: rules, then the call (tool, write) */
	static const struct {
		const char *rules, *tool;
		bool write;
	} rows[] = {
		{"[{\"id\":\"cap\",\"effect\":\"deny\",\"tool\":[\"pay\",\"p*\"],\"when\":\"args.amount > 500\"},"
		 " {\"id\":\"rate\",\"effect\":\"approve\",\"access\":\"write\",\"risk\":\"low\",\"limit\":{\"max\":1,\"window_s\":60}},"
		 " {\"id\":\"hours\",\"effect\":\"deny\",\"when\":\"run.hour > 30 and args.amount\",\"reason\":\"r\"},"
		 " {\"id\":\"ok\",\"effect\":\"allow\",\"tool\":\"pay\"}]", "pay", true},
		/* no condition before the reason: its copy is the 4th allocation */
		{"[{\"id\":\"r\",\"effect\":\"allow\",\"tool\":[\"a\",\"b\"],\"reason\":\"why\"}]", "x", true},
		{"[]", "x", false},
		/* conditions that cannot be evaluated: the fail-closed notes */
		{"[{\"id\":\"m\",\"effect\":\"allow\",\"when\":\"args.nope == 1\"},"
		 " {\"id\":\"s\",\"effect\":\"allow\",\"when\":\"'str'\"},"
		 " {\"id\":\"e\",\"effect\":\"allow\",\"when\":\"args.amount.x.y\"}]", "pay", true},

		/* the provenance functions, and the default rule's note */
		{"[{\"id\":\"t\",\"effect\":\"deny\",\"when\":\"not trusted(args.amount)\"},"
		 " {\"id\":\"a\",\"effect\":\"allow\"}]", "pay", true},
		/* a per-tenant limit with no count known: the fail-closed note */
		{"[{\"id\":\"pt\",\"effect\":\"deny\",\"limit\":{\"max\":1,\"window_s\":60,\"per\":\"tenant\"}}]",
		 "pay", true},
		/* approval settings: their normalized copy */
		{"[{\"id\":\"ap\",\"effect\":\"approve\",\"approval\":{\"roles\":[\"finance\"],\"sla_s\":60}}]",
		 "pay", true},
	};
	json_t *args = json_pack("{s:i}", "amount", 10), *rq = json_pack("{s:s}", "user", "u");
	json_t *h = json_pack("[{s:s, s:o, s:i}]", "tool", "pay", "write", json_true(), "at", 1000);
	json_t *doc = json_pack("{s:{s:{}}}", "properties", "amount");
	json_t *prov = json_pack("{s:b, s:{s:[s], s:[s], s:b}, s:{s:{s:[s], s:[s], s:b}}}", "agent", 1,
				 "context", "sources", "tool:f", "readers", "public", "trusted", 0, "args",
				 "amount", "sources", "model", "readers", "public", "trusted", 0);
	for (size_t row = 0; row < sizeof rows / sizeof *rows; row++) {
		rein_err pe = {0};
		json_t *j = rein_json_parse(rows[row].rules, strlen(rows[row].rules), &pe);
		assert_non_null(j);
		bool reached = true;
		long n;
		for (n = 1; reached && n < 5000; n++) {
			rein_policy *p = NULL;
			rein_err e = {0};
			int bad;
			json_t *d = NULL;
			rein_fault_arm(REIN_FAULT_ALLOC, n);
			int rc = rein_policy_compile(j, "t", sb, &p, &bad, &e);
			if (rc == REIN_OK) {
				rein_policy_call c = {.tool = {rows[row].tool, rows[row].write, 0, doc},
						      .args = args, .requester = rq,
						      .now_ms = 2000, .history = h, .enforce = true,
						      .provenance = prov};
				const rein_policy *sets[1] = {p};
				rc = rein_policy_eval(sb, sets, 1, &c, &d, &e);
			}
			reached = rein_fault_count(REIN_FAULT_ALLOC) >= n;
			rein_fault_arm(REIN_FAULT_ALLOC, 0);
			assert_true(rc == REIN_OK || rc == REIN_ENOMEM || rc == REIN_EINVAL);
			if (rc == REIN_OK)
				assert_non_null(d);
			json_decref(d);
			rein_policy_free(p);
		}
		assert_true(n > 3); /* the sweep ran (a disabled fault point ends it at once) */
		/* the version of a rule set whose text cannot be made: still a hash */
		char v[65];
		rein_fault_arm(REIN_FAULT_ALLOC, 1);
		rein_policy_version(j, v);
		rein_fault_arm(REIN_FAULT_ALLOC, 0);
		assert_int_equal(strlen(v), 64);
		json_decref(j);
	}
	json_decref(args);
	json_decref(rq);
	json_decref(h);
	json_decref(doc);
	json_decref(prov);
}

/* A condition's compile check that runs out of memory. Lua retries a failed
 * allocation once, after an emergency collection, so a single fault never
 * reaches it: here every allocation from the Nth on fails, in a fresh sandbox
 * each time (its compile cache would otherwise answer without allocating).
 * Each N gives the rule set or a clean REIN_ENOMEM, never a syntax refusal
 * (REIN_EINVAL); some N fail inside the check, and the refusal names the
 * rule and its when. */
static void test_check_enomem(void **st)
{
	(void)st;
	const char *rules = "[{\"id\":\"c\",\"effect\":\"deny\",\"when\":\"args.amount > 500 and "
			    "trusted(args.to) and run.hour < 9\"}]";
	rein_err pe = {0};
	json_t *j = rein_json_parse(rules, strlen(rules), &pe);
	assert_non_null(j);
	bool reached = true;
	int in_check = 0, compiled = 0;
	long n;
	for (n = 1; reached && n < 5000; n++) {
		rein_script *s2 = NULL;
		assert_int_equal(rein_script_new(&s2), REIN_OK);
		rein_policy *p = NULL;
		rein_err e = {0};
		int bad = -2;
		rein_fault_arm_run(REIN_FAULT_ALLOC, n, 1L << 30);
		int rc = rein_policy_compile(j, "t", s2, &p, &bad, &e);
		reached = rein_fault_count(REIN_FAULT_ALLOC) >= n;
		rein_fault_arm(REIN_FAULT_ALLOC, 0);
		if (rc == REIN_OK) {
			assert_int_equal(rein_policy_count(p), 1);
			compiled++;
		} else {
			assert_int_equal(rc, REIN_ENOMEM);
			assert_null(p);
			assert_true(bad == -1 || bad == 0);
			if (strncmp(e.msg, "rule 'c': when: out of memory", 29) == 0) {
				assert_int_equal(bad, 0);
				in_check++;
			} else {
				assert_string_equal(e.msg, "out of memory");
			}
		}
		rein_policy_free(p);
		rein_script_free(s2);
	}
	assert_true(n > 3);
	assert_true(in_check >= 1);
	assert_int_equal(compiled, 1); /* only the N no allocation reached */
	json_decref(j);
}

/* Labels: the union of sources, the intersection of readers ("public" is
 * everyone), trusted only if both are; sorted, so the order of joins does
 * not change the bytes. */
static void test_labels(void **st)
{
	(void)st;
	json_t *acme = json_pack("[s,s]", "tenant:acme", "role:support"), *only = json_pack("[s]", "tenant:acme");
	json_t *a = rein_label_new("tool:crm", acme, true), *b = rein_label_new("requester", only, true);
	json_t *m = rein_label_new("model", NULL, false), *none = json_pack("[]");
	json_t *nobody = rein_label_new("tool:x", none, true);
	json_t *ab = NULL, *ba = NULL, *abm = NULL;
	assert_int_equal(rein_label_join(&ab, a), REIN_OK);
	assert_int_equal(rein_label_join(&ab, b), REIN_OK);
	assert_int_equal(rein_label_join(&ba, b), REIN_OK);
	assert_int_equal(rein_label_join(&ba, a), REIN_OK);
	assert_true(json_equal(ab, ba));
	assert_true(rein_label_trusted(ab));
	char *t = json_dumps(ab, JSON_COMPACT | JSON_SORT_KEYS);
	assert_string_equal(t, "{\"readers\":[\"tenant:acme\"],\"sources\":[\"requester\",\"tool:crm\"],\"trusted\":true}");
	rein_free(t);
	assert_int_equal(rein_label_join(&abm, ab), REIN_OK);
	assert_int_equal(rein_label_join(&abm, m), REIN_OK); /* public: the readers stay */
	assert_false(rein_label_trusted(abm));
	assert_true(rein_label_readable(abm, "tenant:acme"));
	assert_false(rein_label_readable(abm, "tenant:globex"));
	assert_true(rein_label_readable(m, "anyone"));
	assert_int_equal(rein_label_join(&abm, NULL), REIN_OK);
	json_t *mm = NULL; /* public joined with a set: the set */
	assert_int_equal(rein_label_join(&mm, m), REIN_OK);
	assert_int_equal(rein_label_join(&mm, b), REIN_OK);
	assert_true(json_equal(json_object_get(mm, "readers"), only));
	assert_int_equal(rein_label_join(&mm, nobody), REIN_OK); /* nobody may read it */
	assert_int_equal(json_array_size(json_object_get(mm, "readers")), 0);
	assert_false(rein_label_readable(mm, "tenant:acme"));
	assert_false(rein_label_trusted(NULL));
	json_t *c = rein_label_new(NULL, NULL, true);
	assert_int_equal(json_array_size(json_object_get(c, "sources")), 0);
	assert_true(rein_label_trusted(c));
	/* under allocation faults: NULL or an error, never a leak */
	for (long n = 1; n < 200; n++) {
		rein_fault_arm(REIN_FAULT_ALLOC, n);
		json_t *x = rein_label_new("s", acme, true), *y = NULL;
		int rc = x ? rein_label_join(&y, x) : REIN_ENOMEM;
		if (rc == REIN_OK)
			rc = rein_label_join(&y, b);
		bool reached = rein_fault_count(REIN_FAULT_ALLOC) >= n;
		rein_fault_arm(REIN_FAULT_ALLOC, 0);
		assert_true(rc == REIN_OK || rc == REIN_ENOMEM);
		json_decref(x);
		json_decref(y);
		if (!reached)
			break;
	}
	json_t *all[] = {acme, only, a, b, m, none, nobody, ab, ba, abm, mm, c};
	for (size_t i = 0; i < sizeof all / sizeof *all; i++)
		json_decref(all[i]);
}

/* The label edge cases, one assertion each: duplicates and order in
 * rein_label_new, a reader that is not a string, joins that change nothing,
 * labels without the fields, and a label made outside (a recorded event)
 * whose readers hold a non-string. */
static void test_label_edges(void **st)
{
	(void)st;
	json_t *dup = json_pack("[s,s,s,s]", "b", "a", "c", "a"), *bad = json_pack("[s,i]", "a", 3);
	json_t *l = rein_label_new("tool:x", dup, false);
	char *t = json_dumps(l, JSON_COMPACT | JSON_SORT_KEYS);
	assert_string_equal(t, "{\"readers\":[\"a\",\"b\",\"c\"],\"sources\":[\"tool:x\"],\"trusted\":false}");
	rein_free(t);
	assert_null(rein_label_new("tool:x", bad, true)); /* a reader must be a string */
	/* joining a label with itself, or with an equal copy: the same reference */
	json_t *acc = json_incref(l), *copy = json_deep_copy(l);
	assert_int_equal(rein_label_join(&acc, l), REIN_OK);
	assert_ptr_equal(acc, l);
	assert_int_equal(rein_label_join(&acc, copy), REIN_OK);
	assert_ptr_equal(acc, l);
	/* no "trusted" (or not true), no "readers": not trusted, nobody reads */
	json_t *empty = json_object(), *yes = json_pack("{s:s}", "trusted", "yes");
	assert_false(rein_label_trusted(empty));
	assert_false(rein_label_trusted(yes));
	assert_false(rein_label_readable(empty, "a"));
	assert_false(rein_label_readable(NULL, "a"));
	/* no reader named: only a public label is readable */
	assert_false(rein_label_readable(l, NULL));
	json_t *pub = rein_label_new(NULL, NULL, true);
	assert_true(rein_label_readable(pub, NULL));
	/* readers that are not strings (a label made outside rein_label_new):
	 * never match, and a join drops them instead of crashing */
	json_t *odd = json_pack("{s:[s], s:[i,s], s:b}", "sources", "tool:y", "readers", 7, "b", "trusted", 1);
	assert_true(rein_label_readable(odd, "b"));
	assert_false(rein_label_readable(odd, "a"));
	json_t *j = NULL;
	assert_int_equal(rein_label_join(&j, odd), REIN_OK);
	assert_int_equal(rein_label_join(&j, l), REIN_OK);
	t = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	assert_string_equal(t, "{\"readers\":[\"b\"],\"sources\":[\"tool:x\",\"tool:y\"],\"trusted\":false}");
	rein_free(t);
	json_t *all[] = {dup, bad, l, acc, copy, empty, yes, pub, odd, j};
	for (size_t i = 0; i < sizeof all / sizeof *all; i++)
		json_decref(all[i]);
}

/* Joins of labels with many readers in common (more than a new JSON array
 * holds without growing) under allocation faults: the copy of a shared
 * reader can fail too; REIN_ENOMEM leaves *acc as it was. */
static void test_label_faults(void **st)
{
	(void)st;
	json_t *ra = json_array(), *rb = json_array();
	char name[32];
	for (int i = 0; i < 12; i++) {
		snprintf(name, sizeof name, "tenant:%02d", i);
		json_array_append_new(ra, json_string(name));
		json_array_append_new(rb, json_string(name));
	}
	json_array_append_new(ra, json_string("role:a"));
	json_t *a = rein_label_new("tool:a", ra, true), *b = rein_label_new("tool:b", rb, true);
	assert_non_null(a);
	assert_non_null(b);
	long n;
	int fails = 0;
	bool reached = true;
	for (n = 1; reached && n < 500; n++) {
		json_t *acc = json_incref(a);
		rein_fault_arm(REIN_FAULT_ALLOC, n);
		int rc = rein_label_join(&acc, b);
		reached = rein_fault_count(REIN_FAULT_ALLOC) >= n;
		rein_fault_arm(REIN_FAULT_ALLOC, 0);
		if (rc == REIN_OK) {
			assert_int_equal(json_array_size(json_object_get(acc, "readers")), 12);
			assert_int_equal(json_array_size(json_object_get(acc, "sources")), 2);
		} else {
			assert_int_equal(rc, REIN_ENOMEM);
			assert_ptr_equal(acc, a); /* unchanged */
			fails++;
		}
		json_decref(acc);
	}
	assert_true(fails > 10); /* the sweep reached the copies */
	json_t *all[] = {ra, rb, a, b};
	for (size_t i = 0; i < sizeof all / sizeof *all; i++)
		json_decref(all[i]);
}

#define L_TRUSTED "{\"sources\":[\"requester\"],\"readers\":[\"tenant:acme\"],\"trusted\":true}"
#define L_FETCH "{\"sources\":[\"model\",\"tool:fetch\"],\"readers\":[\"tenant:acme\"],\"trusted\":false}"
#define L_PUBLIC "{\"sources\":[\"retrieval\",\"tool:kb\"],\"readers\":[\"public\"],\"trusted\":false}"

/* trusted(), sources(), readers(), readable_by() and `provenance` in a
 * condition; the default rule rein.untrusted_write: approve, below an explicit
 * deny, above any allow; only for an agent's write with untrusted context. */
static void test_provenance(void **st)
{
	(void)st;
	rein_policy *wf = compile(
		"[{\"id\":\"pays\",\"effect\":\"allow\",\"tool\":\"pay\"},"
		" {\"id\":\"cap\",\"effect\":\"deny\",\"tool\":\"pay\",\"when\":\"args.amount > 500\"},"
		" {\"id\":\"to-trusted\",\"effect\":\"deny\",\"tool\":\"mail\",\"when\":\"not trusted(args.to)\"},"
		" {\"id\":\"readers\",\"effect\":\"deny\",\"tool\":\"note\",\"when\":\"not readable_by(args.to, 'tenant:' .. args.tenant)\"},"
		" {\"id\":\"notes\",\"effect\":\"allow\",\"tool\":[\"note\",\"mail\"]},"
		" {\"id\":\"kb\",\"effect\":\"deny\",\"tool\":\"look\",\"when\":\"sources(args.to)[1] == 'retrieval' and readers(args.to)[1] == 'public' and provenance.agent\"},"
		" {\"id\":\"look2\",\"effect\":\"allow\",\"tool\":\"look2\"},"
		" {\"id\":\"rd\",\"effect\":\"deny\",\"tool\":\"log\",\"when\":\"readers(args.to)[1] == 'public'\"},"
		" {\"id\":\"logs\",\"effect\":\"allow\",\"tool\":\"log\"}]");
	kase ks[] = {
		/* an agent, untrusted context, an untrusted argument: approve */
		{"pay", true, 0, .args = "{\"amount\":10,\"to\":\"X\"}", .enforce = true, .want = "approve",
		 .rules = "rein.untrusted_write",
		 .prov = "{\"agent\":true,\"context\":" L_FETCH ",\"args\":{\"amount\":" L_TRUSTED ",\"to\":" L_FETCH "}}"},
		/* deny wins over it */
		{"pay", true, 0, .args = "{\"amount\":900,\"to\":\"X\"}", .enforce = true, .want = "deny", .rules = "cap",
		 .prov = "{\"agent\":true,\"context\":" L_FETCH ",\"args\":{\"amount\":" L_FETCH ",\"to\":" L_FETCH "}}"},
		/* every argument trusted (the refinement): the allow stands */
		{"pay", true, 0, .args = "{\"amount\":10,\"to\":\"X\"}", .enforce = true, .want = "allow", .rules = "pays",
		 .prov = "{\"agent\":true,\"context\":" L_FETCH ",\"args\":{\"amount\":" L_TRUSTED ",\"to\":" L_TRUSTED "}}"},
		/* a trusted context: the model's own argument is not held */
		{"pay", true, 0, .args = "{\"amount\":10}", .enforce = true, .want = "allow", .rules = "pays",
		 .prov = "{\"agent\":true,\"context\":" L_TRUSTED ",\"args\":{\"amount\":" L_FETCH "}}"},
		/* a tool step, or a read: not the default rule's */
		{"pay", true, 0, .args = "{\"amount\":10}", .enforce = true, .want = "allow", .rules = "pays",
		 .prov = "{\"agent\":false,\"context\":null,\"args\":{\"amount\":" L_FETCH "}}"},
		{"look", false, 0, .args = "{\"to\":\"q\"}", .enforce = true, .want = "allow", .rules = "",
		 .prov = "{\"agent\":true,\"context\":" L_FETCH ",\"args\":{\"to\":" L_TRUSTED "}}"},
		/* no default-deny bypass: a write no rule allows stays denied */
		{"wire", true, 0, .args = "{}", .enforce = true, .want = "deny", .rules = "",
		 .prov = "{\"agent\":true,\"context\":" L_TRUSTED ",\"args\":{}}"},
		/* nor does the default rule loosen it: an untrusted write no rule
		 * allows is denied, not sent for an approval */
		{"wire", true, 0, .args = "{\"to\":\"X\"}", .enforce = true, .want = "deny", .rules = "",
		 .prov = "{\"agent\":true,\"context\":" L_FETCH ",\"args\":{\"to\":" L_FETCH "}}"},
		/* trusted(): by the argument's label */
		{"mail", true, 0, .args = "{\"to\":\"x@y\"}", .enforce = true, .want = "deny", .rules = "to-trusted",
		 .prov = "{\"agent\":false,\"context\":null,\"args\":{\"to\":" L_FETCH "}}"},
		{"mail", true, 0, .args = "{\"to\":\"x@y\"}", .enforce = true, .want = "allow", .rules = "notes",
		 .prov = "{\"agent\":false,\"context\":null,\"args\":{\"to\":" L_TRUSTED "}}"},
		/* no provenance: nothing is trusted, nobody reads */
		{"mail", true, 0, .args = "{\"to\":\"x@y\"}", .enforce = true, .want = "deny", .rules = "to-trusted"},
		/* readable_by(): acme's data into a write for globex */
		{"note", true, 0, .args = "{\"to\":\"rec\",\"tenant\":\"globex\"}", .enforce = true, .want = "deny",
		 .rules = "readers",
		 .prov = "{\"agent\":false,\"context\":null,\"args\":{\"to\":" L_TRUSTED ",\"tenant\":" L_TRUSTED "}}"},
		{"note", true, 0, .args = "{\"to\":\"rec\",\"tenant\":\"acme\"}", .enforce = true, .want = "allow",
		 .rules = "notes",
		 .prov = "{\"agent\":false,\"context\":null,\"args\":{\"to\":" L_TRUSTED ",\"tenant\":" L_TRUSTED "}}"},
		{"note", true, 0, .args = "{\"to\":\"faq\",\"tenant\":\"globex\"}", .enforce = true, .want = "allow",
		 .rules = "notes",
		 .prov = "{\"agent\":false,\"context\":null,\"args\":{\"to\":" L_PUBLIC ",\"tenant\":" L_TRUSTED "}}"},
		/* a read an explicit rule allows: not the default rule's either */
		{"look2", false, 0, .args = "{\"to\":\"q\"}", .enforce = true, .want = "allow", .rules = "look2",
		 .prov = "{\"agent\":true,\"context\":" L_FETCH ",\"args\":{\"to\":" L_FETCH "}}"},
		/* provenance without agent, with no context or a null one: no hold */
		{"pay", true, 0, .args = "{\"amount\":10}", .enforce = true, .want = "allow", .rules = "pays",
		 .prov = "{\"context\":" L_FETCH ",\"args\":{\"amount\":" L_FETCH "}}"},
		{"pay", true, 0, .args = "{\"amount\":10}", .enforce = true, .want = "allow", .rules = "pays",
		 .prov = "{\"agent\":true,\"args\":{\"amount\":" L_FETCH "}}"},
		{"pay", true, 0, .args = "{\"amount\":10}", .enforce = true, .want = "allow", .rules = "pays",
		 .prov = "{\"agent\":true,\"context\":null,\"args\":{\"amount\":" L_FETCH "}}"},
		/* untrusted context but no argument labels: nothing untrusted is written */
		{"pay", true, 0, .args = "{\"amount\":10}", .enforce = true, .want = "allow", .rules = "pays",
		 .prov = "{\"agent\":true,\"context\":" L_FETCH "}"},
		/* readers() alone */
		{"log", true, 0, .args = "{\"to\":\"x\"}", .enforce = true, .want = "deny", .rules = "rd",
		 .prov = "{\"agent\":false,\"context\":null,\"args\":{\"to\":" L_PUBLIC "}}"},
		{"log", true, 0, .args = "{\"to\":\"x\"}", .enforce = true, .want = "allow", .rules = "logs",
		 .prov = "{\"agent\":false,\"context\":null,\"args\":{\"to\":" L_TRUSTED "}}"},
		/* sources(), readers(), provenance */
		{"look", false, 0, .args = "{\"to\":\"q\"}", .enforce = true, .want = "deny", .rules = "kb",
		 .prov = "{\"agent\":true,\"context\":" L_FETCH ",\"args\":{\"to\":" L_PUBLIC "}}"},
	};
	for (size_t i = 0; i < sizeof ks / sizeof *ks; i++)
		check(NULL, wf, &ks[i]);
	rein_policy_free(wf);
	/* an error inside a condition using them still says where (line 1) */
	char msg[256];
	compile_err("[{\"id\":\"x\",\"effect\":\"deny\",\"when\":\"trusted(args.to) and\"}]", msg, sizeof msg);
	assert_non_null(strstr(msg, "rule 'x': when: line 1"));
}

int main(void)
{
	rein_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_precedence_and_targets),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_tenant_limits),
		cmocka_unit_test(test_fail_closed),
		cmocka_unit_test(test_eval_edges),
		cmocka_unit_test(test_fields),
		cmocka_unit_test(test_compile_errors),
		cmocka_unit_test(test_approval_norm),
		cmocka_unit_test(test_alloc_faults),
		cmocka_unit_test(test_check_enomem),
		cmocka_unit_test(test_labels),
		cmocka_unit_test(test_label_edges),
		cmocka_unit_test(test_label_faults),
		cmocka_unit_test(test_provenance),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
