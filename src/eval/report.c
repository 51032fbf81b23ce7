/* The measures of a result, the gate against a baseline, JUnit XML. */
#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval_int.h"

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted v[0..n). */
static int64_t pct(const int64_t *v, size_t n, double p)
{
	size_t r = (size_t)ceil(p * (double)n);
	return v[r ? r - 1 : 0];
}

static json_t *rate(double num, double den)
{
	return den > 0 ? json_real(num / den) : json_null();
}

/* The ks reported: 1, 2, 3, 5, 10 and n, those <= n. */
static json_t *ks_of(int n, double (*f)(int, int, int), int c)
{
	static const int ks[] = {1, 2, 3, 5, 10};
	json_t *o = json_object();
	char key[16];
	for (size_t i = 0; o && i < sizeof ks / sizeof *ks; i++)
		if (ks[i] <= n) {
			snprintf(key, sizeof key, "%d", ks[i]);
			json_object_set_new(o, key, json_real(f(n, c, ks[i])));
		}
	if (o && n > 0) {
		snprintf(key, sizeof key, "%d", n);
		json_object_set_new(o, key, json_real(f(n, c, n)));
	}
	return o;
}

typedef struct {
	int pass, fail, error, escalated, completed, schema_ok, schema_n;
	int64_t tool_attempts, tool_failures, tokens;
	double cost;
	int64_t *lat;
	size_t nlat, cap;
	json_t *reasons;
	int judged, judge_passed, judge_errors;
	double judge_sum;
	bool nomem;
} acc;

static void acc_trial(acc *a, const json_t *t)
{
	const char *o = json_string_value(json_object_get(t, "outcome"));
	if (o == NULL || strcmp(o, "error") == 0) {
		a->error++;
		return;
	}
	if (strcmp(o, "pass") == 0)
		a->pass++;
	else
		a->fail++;
	const char *st = json_string_value(json_object_get(t, "status"));
	if (st && strcmp(st, "succeeded") == 0)
		a->completed++;
	if (json_is_true(json_object_get(t, "escalated"))) {
		a->escalated++;
		const char *r = json_string_value(json_object_get(t, "reason"));
		r = r ? r : "(no reason)";
		json_object_set_new(a->reasons, r,
				    json_integer(json_integer_value(json_object_get(a->reasons, r)) + 1));
	}
	const json_t *s = json_object_get(t, "schema_ok");
	if (json_is_boolean(s)) {
		a->schema_n++;
		a->schema_ok += json_is_true(s);
	}
	a->tool_attempts += json_integer_value(json_object_get(t, "tool_attempts"));
	a->tool_failures += json_integer_value(json_object_get(t, "tool_failures"));
	a->tokens += json_integer_value(json_object_get(t, "tokens"));
	a->cost += json_number_value(json_object_get(t, "cost_usd"));
	if (a->nlat == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 16;
		int64_t *v = rein_realloc(a->lat, cap * sizeof *v);
		if (v == NULL) {
			a->nomem = true;
			return;
		}
		a->lat = v;
		a->cap = cap;
	}
	a->lat[a->nlat++] = json_integer_value(json_object_get(t, "latency_ms"));
	const json_t *j = json_object_get(t, "judge");
	if (j) {
		if (json_object_get(j, "error")) {
			a->judge_errors++;
		} else {
			a->judged++;
			a->judge_passed += json_is_true(json_object_get(j, "passed"));
			a->judge_sum += json_number_value(json_object_get(j, "score"));
		}
	}
}

/* The measures of a into obj. */
static void acc_put(acc *a, json_t *obj, bool judge)
{
	int n = a->pass + a->fail;
	json_object_set_new(obj, "total", json_integer(n + a->error));
	json_object_set_new(obj, "passed", json_integer(a->pass));
	json_object_set_new(obj, "failed", json_integer(a->fail));
	json_object_set_new(obj, "errors", json_integer(a->error));
	json_object_set_new(obj, "success_rate", rate(a->pass, n));
	json_object_set_new(obj, "escalation_rate", rate(a->escalated, n));
	json_object_set(obj, "escalation_reasons", a->reasons);
	json_object_set_new(obj, "tool_error_rate", rate((double)a->tool_failures, (double)a->tool_attempts));
	json_object_set_new(obj, "schema_adherence", rate(a->schema_ok, a->schema_n));
	json_object_set_new(obj, "cost_usd", json_real(a->cost));
	json_object_set_new(obj, "tokens", json_integer(a->tokens));
	json_object_set_new(obj, "cost_per_completed", rate(a->cost, a->completed));
	if (a->nlat) {
		qsort(a->lat, a->nlat, sizeof *a->lat, cmp_i64);
		json_object_set_new(obj, "latency_p50_ms", json_integer(pct(a->lat, a->nlat, 0.5)));
		json_object_set_new(obj, "latency_p95_ms", json_integer(pct(a->lat, a->nlat, 0.95)));
	} else {
		json_object_set_new(obj, "latency_p50_ms", json_null());
		json_object_set_new(obj, "latency_p95_ms", json_null());
	}
	if (judge)
		json_object_set_new(obj, "judge",
				    json_pack("{s:i, s:i, s:i, s:o, s:o}", "judged", a->judged, "passed",
					      a->judge_passed, "errors", a->judge_errors, "pass_rate",
					      rate(a->judge_passed, a->judged), "mean_score",
					      rate(a->judge_sum, a->judged)));
}

int rein_eval_summarize(json_t *result, const rein_eval_suite *s)
{
	json_t *cases = json_object_get(result, "cases");
	acc all = {.reasons = json_object()};
	json_t *overall = json_object(), *hat = json_object(), *at = json_object();
	int rc = REIN_OK;
	bool any_judge = false;
	size_t i;
	json_t *c;
	if (all.reasons == NULL || overall == NULL || hat == NULL || at == NULL) {
		rc = REIN_ENOMEM;
		goto out;
	}
	json_array_foreach(cases, i, c) {
		acc a = {.reasons = json_object()};
		size_t j;
		json_t *t;
		if (a.reasons == NULL) {
			rc = REIN_ENOMEM;
			goto out;
		}
		json_array_foreach(json_object_get(c, "trials"), j, t) {
			acc_trial(&a, t);
			acc_trial(&all, t);
		}
		bool judge = i < s->ncases && s->cases[i].judge_rubric != NULL;
		any_judge |= judge;
		acc_put(&a, c, judge);
		int n = a.pass + a.fail;
		json_object_set_new(c, "pass_hat_k", ks_of(n, rein_eval_pass_hat_k, a.pass));
		json_object_set_new(c, "pass_at_k", ks_of(n, rein_eval_pass_at_k, a.pass));
		/* the overall pass^k and pass@k: the mean over the cases measured k times */
		const char *k;
		json_t *v;
		json_object_foreach(json_object_get(c, "pass_hat_k"), k, v) {
			json_t *sum = json_object_get(hat, k);
			json_object_set_new(hat, k, json_pack("[f, i]", json_number_value(json_array_get(sum, 0)) + json_number_value(v),
							      json_integer_value(json_array_get(sum, 1)) + 1));
		}
		json_object_foreach(json_object_get(c, "pass_at_k"), k, v) {
			json_t *sum = json_object_get(at, k);
			json_object_set_new(at, k, json_pack("[f, i]", json_number_value(json_array_get(sum, 0)) + json_number_value(v),
							     json_integer_value(json_array_get(sum, 1)) + 1));
		}
		json_decref(a.reasons);
		rein_free(a.lat);
		if (a.nomem)
			all.nomem = true;
	}
	acc_put(&all, overall, any_judge);
	json_object_set_new(overall, "cases", json_integer((json_int_t)json_array_size(cases)));
	json_t *mh = json_object(), *ma = json_object();
	const char *k;
	json_t *v;
	json_object_foreach(hat, k, v)
		json_object_set_new(mh, k, json_real(json_number_value(json_array_get(v, 0)) /
						     (double)json_integer_value(json_array_get(v, 1))));
	json_object_foreach(at, k, v)
		json_object_set_new(ma, k, json_real(json_number_value(json_array_get(v, 0)) /
						     (double)json_integer_value(json_array_get(v, 1))));
	json_object_set_new(overall, "pass_hat_k", mh);
	json_object_set_new(overall, "pass_at_k", ma);
	json_object_set(result, "overall", overall);
	if (all.nomem)
		rc = REIN_ENOMEM;
out:
	json_decref(all.reasons);
	rein_free(all.lat);
	json_decref(overall);
	json_decref(hat);
	json_decref(at);
	return rc;
}

/* ---- the gate -------------------------------------------------------------- */

static void crossed(json_t *list, const char *name, json_t *value, double limit,
		    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void crossed(json_t *list, const char *name, json_t *value, double limit,
		    const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	json_array_append_new(list, json_pack("{s:s, s:o, s:f, s:s}", "threshold", name, "value",
					      value ? value : json_null(), "limit", limit, "message", msg));
}

int rein_eval_gate_check(const json_t *result, const json_t *baseline, const rein_eval_gate *g,
			 json_t **out, rein_err *err)
{
	assert(result != NULL && g != NULL && out != NULL);
	const json_t *o = json_object_get(result, "overall");
	const json_t *bo = baseline ? json_object_get(baseline, "overall") : NULL;
	if (baseline && !json_is_object(bo))
		return rein_err_set(err, REIN_EINVAL, "the baseline is not an eval result (no 'overall')");
	json_t *list = json_array(), *res = NULL, *worse = json_array();
	if (list == NULL || worse == NULL) {
		json_decref(list);
		json_decref(worse);
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	}
	const json_t *sr = json_object_get(o, "success_rate");
	double s = json_number_value(sr);
	if (!json_is_number(sr)) {
		crossed(list, "measured", json_integer(json_integer_value(json_object_get(o, "errors"))), 0,
			"no trial was measured (%lld harness errors)",
			(long long)json_integer_value(json_object_get(o, "errors")));
	} else if (g->min_success >= 0 && s < g->min_success) {
		crossed(list, "min_success", json_real(s), g->min_success,
			"success rate %.3f is below min_success %.3f", s, g->min_success);
	}
	if (bo && json_is_number(sr)) {
		const json_t *bsr = json_object_get(bo, "success_rate");
		if (g->max_success_drop >= 0 && json_is_number(bsr) &&
		    json_number_value(bsr) - s > g->max_success_drop + 1e-12)
			crossed(list, "max_success_drop", json_real(json_number_value(bsr) - s),
				g->max_success_drop,
				"success rate dropped by %.3f (more than max_success_drop %.3f)",
				json_number_value(bsr) - s, g->max_success_drop);
		const json_t *c = json_object_get(o, "cost_per_completed");
		const json_t *bc = json_object_get(bo, "cost_per_completed");
		if (g->max_cost_increase_pct >= 0 && json_is_number(c) && json_is_number(bc) &&
		    json_number_value(bc) > 0) {
			double inc = (json_number_value(c) - json_number_value(bc)) / json_number_value(bc) * 100;
			if (inc > g->max_cost_increase_pct + 1e-9)
				crossed(list, "max_cost_increase_pct", json_real(inc), g->max_cost_increase_pct,
					"cost per completed task rose by %.1f%% (more than "
					"max_cost_increase_pct %.1f)", inc, g->max_cost_increase_pct);
		}
		const json_t *e = json_object_get(o, "escalation_rate");
		const json_t *be = json_object_get(bo, "escalation_rate");
		if (g->max_escalation_increase >= 0 && json_is_number(e) && json_is_number(be) &&
		    json_number_value(e) - json_number_value(be) > g->max_escalation_increase + 1e-12)
			crossed(list, "max_escalation_increase",
				json_real(json_number_value(e) - json_number_value(be)),
				g->max_escalation_increase,
				"escalation rate rose by %.3f (more than max_escalation_increase %.3f)",
				json_number_value(e) - json_number_value(be), g->max_escalation_increase);
		/* which cases got worse, by name */
		size_t i, j;
		json_t *c1, *c0;
		json_array_foreach(json_object_get(result, "cases"), i, c1) {
			json_array_foreach(json_object_get(baseline, "cases"), j, c0) {
				if (!json_equal(json_object_get(c0, "name"), json_object_get(c1, "name")))
					continue;
				const json_t *a = json_object_get(c1, "success_rate");
				const json_t *b = json_object_get(c0, "success_rate");
				if (json_is_number(a) && json_is_number(b) &&
				    json_number_value(a) < json_number_value(b))
					json_array_append_new(worse, json_pack("{s:O, s:O, s:O}", "name",
									       json_object_get(c1, "name"),
									       "success_rate", a, "baseline", b));
			}
		}
	}
	res = json_pack("{s:b, s:O, s:O, s:o}", "passed", json_array_size(list) == 0, "crossed", list,
			"worse_cases", worse, "baseline",
			bo ? json_pack("{s:O?, s:O?, s:O?}", "success_rate", json_object_get(bo, "success_rate"),
				       "cost_per_completed", json_object_get(bo, "cost_per_completed"),
				       "escalation_rate", json_object_get(bo, "escalation_rate"))
			   : json_null());
	json_decref(list);
	json_decref(worse);
	if (res == NULL)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	*out = res;
	return REIN_OK;
}

/* ---- JUnit XML ------------------------------------------------------------- */

static int xml_put(rein_buf *b, const char *s)
{
	int rc = REIN_OK;
	for (; s && *s && rc == REIN_OK; s++) {
		unsigned char ch = (unsigned char)*s;
		rc = ch == '&'	 ? rein_buf_puts(b, "&amp;")
		     : ch == '<' ? rein_buf_puts(b, "&lt;")
		     : ch == '>' ? rein_buf_puts(b, "&gt;")
		     : ch == '"' ? rein_buf_puts(b, "&quot;")
		     : ch < 0x20 && ch != '\n' && ch != '\t' ? rein_buf_puts(b, "?")
							      : rein_buf_append(b, s, 1);
	}
	return rc;
}

static double num(const json_t *o, const char *k)
{
	return json_number_value(json_object_get(o, k));
}

int rein_eval_junit(const json_t *result, rein_buf *b)
{
	const json_t *cases = json_object_get(result, "cases");
	const char *suite = json_string_value(json_object_get(result, "suite"));
	int nfail = 0, nerr = 0, rc = REIN_OK;
	double total_ms = 0;
	size_t i;
	json_t *c;
	json_array_foreach(cases, i, c) {
		if (json_integer_value(json_object_get(c, "failed")) > 0)
			nfail++;
		else if (json_integer_value(json_object_get(c, "errors")) > 0)
			nerr++;
		size_t j;
		json_t *t;
		json_array_foreach(json_object_get(c, "trials"), j, t)
			total_ms += num(t, "latency_ms");
	}
	rc |= rein_buf_printf(b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites tests=\"%zu\" "
				 "failures=\"%d\" errors=\"%d\">\n  <testsuite name=\"",
			      json_array_size(cases), nfail, nerr);
	rc |= xml_put(b, suite);
	rc |= rein_buf_printf(b, "\" tests=\"%zu\" failures=\"%d\" errors=\"%d\" time=\"%.3f\">\n",
			      json_array_size(cases), nfail, nerr, total_ms / 1000);
	json_array_foreach(cases, i, c) {
		double ms = 0;
		size_t j;
		json_t *t;
		json_array_foreach(json_object_get(c, "trials"), j, t)
			ms += num(t, "latency_ms");
		rc |= rein_buf_puts(b, "    <testcase classname=\"");
		rc |= xml_put(b, suite);
		rc |= rein_buf_puts(b, "\" name=\"");
		rc |= xml_put(b, json_string_value(json_object_get(c, "name")));
		rc |= rein_buf_printf(b, "\" time=\"%.3f\">\n", ms / 1000);
		bool failed = json_integer_value(json_object_get(c, "failed")) > 0;
		bool errored = !failed && json_integer_value(json_object_get(c, "errors")) > 0;
		if (failed || errored) {
			/* the first trial of that kind gives the message; every one the text */
			const char *msg = NULL;
			rein_buf body = {0};
			json_array_foreach(json_object_get(c, "trials"), j, t) {
				const char *o = json_string_value(json_object_get(t, "outcome"));
				if (o == NULL || strcmp(o, failed ? "fail" : "error") != 0)
					continue;
				if (failed) {
					size_t m;
					json_t *f;
					json_array_foreach(json_object_get(t, "failures"), m, f) {
						if (msg == NULL)
							msg = json_string_value(f);
						rc |= rein_buf_printf(&body, "trial %lld (run %s): %s\n",
								      (long long)json_integer_value(json_object_get(t, "trial")),
								      json_string_value(json_object_get(t, "run")),
								      json_string_value(f));
					}
				} else {
					if (msg == NULL)
						msg = json_string_value(json_object_get(t, "error"));
					rc |= rein_buf_printf(&body, "trial %lld: %s\n",
							      (long long)json_integer_value(json_object_get(t, "trial")),
							      json_string_value(json_object_get(t, "error")));
				}
			}
			rc |= rein_buf_printf(b, "      <%s type=\"%s\" message=\"", failed ? "failure" : "error",
					      failed ? "assertion" : "harness");
			rc |= xml_put(b, msg ? msg : "");
			rc |= rein_buf_puts(b, "\">");
			rc |= xml_put(b, body.p);
			rc |= rein_buf_printf(b, "</%s>\n", failed ? "failure" : "error");
			rein_buf_free(&body);
		}
		rc |= rein_buf_printf(b, "      <system-out>trials=%lld passed=%lld failed=%lld errors=%lld "
					 "cost_usd=%.6f tokens=%lld",
				      (long long)json_integer_value(json_object_get(c, "total")),
				      (long long)json_integer_value(json_object_get(c, "passed")),
				      (long long)json_integer_value(json_object_get(c, "failed")),
				      (long long)json_integer_value(json_object_get(c, "errors")),
				      num(c, "cost_usd"), (long long)json_integer_value(json_object_get(c, "tokens")));
		const json_t *jd = json_object_get(c, "judge");
		if (jd)
			rc |= rein_buf_printf(b, " judge_passed=%lld/%lld",
					      (long long)json_integer_value(json_object_get(jd, "passed")),
					      (long long)json_integer_value(json_object_get(jd, "judged")));
		rc |= rein_buf_puts(b, "</system-out>\n    </testcase>\n");
	}
	rc |= rein_buf_puts(b, "  </testsuite>\n</testsuites>\n");
	return rc ? REIN_ENOMEM : REIN_OK;
}
