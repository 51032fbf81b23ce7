/* The suite file (docs/evals.md): YAML read by the spec layer, checked here
 * with every problem located as PATH:LINE:COL. */
#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "eval.h"
#include "spec.h"

typedef struct {
	const char *path;
	const json_t *locs; /* JSON Pointer → [line, col] */
	rein_diags d;
	rein_script *sb;
	bool nomem;
} ctx;

/* The position of ptr, or of its nearest parent that has one. */
static void where(const ctx *c, const char *ptr, int *line, int *col)
{
	char buf[512];
	snprintf(buf, sizeof buf, "%s", ptr);
	*line = *col = 1;
	for (;;) {
		const json_t *at = json_object_get(c->locs, buf);
		if (at) {
			*line = (int)json_integer_value(json_array_get(at, 0));
			*col = (int)json_integer_value(json_array_get(at, 1));
			return;
		}
		char *slash = strrchr(buf, '/');
		if (slash == NULL)
			return;
		*slash = '\0';
	}
}

static void diag(ctx *c, const char *ptr, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void diag(ctx *c, const char *ptr, const char *fmt, ...)
{
	char msg[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	int line, col;
	where(c, ptr, &line, &col);
	if (rein_diags_add(&c->d, c->path, line, col, "%s", msg) != REIN_OK)
		c->nomem = true;
}

/* The key's position is that of its value: "/cases/0" + "/" + key. */
static void keys_only(ctx *c, const json_t *obj, const char *ptr, const char *what,
		      const char *const *allowed)
{
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)obj, k, v) {
		bool ok = false;
		for (const char *const *a = allowed; *a && !ok; a++)
			ok = strcmp(*a, k) == 0;
		if (!ok) {
			char p[512];
			snprintf(p, sizeof p, "%s/%s", ptr, k);
			rein_buf list = {0};
			for (const char *const *a = allowed; *a; a++)
				rein_buf_printf(&list, "%s%s", a == allowed ? "" : ", ", *a);
			diag(c, p, "unknown key '%s' in %s (expected one of: %s)", k, what,
			     list.p ? list.p : "");
			rein_buf_free(&list);
		}
	}
}

static char *dup_str(ctx *c, const char *s)
{
	char *r = rein_strdup(s);
	if (r == NULL)
		c->nomem = true;
	return r;
}

/* A number >= lo at obj[key] into *out (absent: *out untouched). */
static void want_number(ctx *c, const json_t *obj, const char *ptr, const char *key, double lo,
			double *out)
{
	const json_t *v = json_object_get(obj, key);
	if (v == NULL)
		return;
	char p[512];
	snprintf(p, sizeof p, "%s/%s", ptr, key);
	if (!json_is_number(v) || json_number_value(v) < lo || !isfinite(json_number_value(v)))
		diag(c, p, "%s must be a number >= %g", key, lo);
	else
		*out = json_number_value(v);
}

static void want_int(ctx *c, const json_t *obj, const char *ptr, const char *key, int64_t lo,
		     int64_t hi, int64_t *out)
{
	const json_t *v = json_object_get(obj, key);
	if (v == NULL)
		return;
	char p[512];
	snprintf(p, sizeof p, "%s/%s", ptr, key);
	if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
		diag(c, p, "%s must be an integer from %lld to %lld", key, (long long)lo,
		     (long long)hi);
	else
		*out = json_integer_value(v);
}

/* A list of non-empty strings at obj[key] (a lone string counts as one): a new
 * reference, or NULL when absent or bad (diagnosed). */
static json_t *want_strings(ctx *c, const json_t *obj, const char *ptr, const char *key)
{
	const json_t *v = json_object_get(obj, key);
	if (v == NULL)
		return NULL;
	char p[512];
	snprintf(p, sizeof p, "%s/%s", ptr, key);
	json_t *list = json_is_string(v) ? json_pack("[O]", v) : json_is_array(v) ? json_incref((json_t *)v) : NULL;
	if (list == NULL) {
		diag(c, p, "%s must be a string or a list of strings", key);
		return NULL;
	}
	size_t i;
	json_t *x;
	json_array_foreach(list, i, x) {
		if (!json_is_string(x) || json_string_length(x) == 0) {
			char q[540];
			snprintf(q, sizeof q, "%s/%zu", p, i);
			diag(c, q, "%s: each item must be a non-empty string", key);
			json_decref(list);
			return NULL;
		}
	}
	return list;
}

/* The model of a case, a default or a judge, normalized (docs/evals.md). */
static json_t *parse_model(ctx *c, const json_t *v, const char *ptr, bool tier_name_ok)
{
	static const char *const keys[] = {"answers", "replay", "provider", "model", "base_url",
					   "api_key_env", "headers", "timeout_s", "on_miss",
					   "max_tokens_field", "anthropic_version", NULL};
	if (tier_name_ok && json_is_string(v) && json_string_length(v) > 0)
		return json_incref((json_t *)v);
	if (!json_is_object(v)) {
		diag(c, ptr, "model must be a mapping (answers, replay, or provider settings)%s",
		     tier_name_ok ? " or the name of a tier" : "");
		return NULL;
	}
	keys_only(c, v, ptr, "a model", keys);
	char p[512];
	const json_t *answers = json_object_get(v, "answers"), *replay = json_object_get(v, "replay");
	if (answers && replay) {
		diag(c, ptr, "model: answers and replay exclude each other");
		return NULL;
	}
	if (answers) {
		snprintf(p, sizeof p, "%s/answers", ptr);
		if (!json_is_array(answers) || json_array_size(answers) == 0) {
			diag(c, p, "answers must be a non-empty list (text, or response objects)");
			return NULL;
		}
		json_t *seq = json_array();
		size_t i;
		json_t *a;
		json_array_foreach(answers, i, a) {
			json_t *r = json_is_string(a) ? json_pack("{s:O}", "text", a)
				    : json_is_object(a) ? json_deep_copy(a) : NULL;
			if (r == NULL) {
				char q[540];
				snprintf(q, sizeof q, "%s/%zu", p, i);
				diag(c, q, "an answer is a text or a response object {text, tool_calls, output, usage}");
				json_decref(seq);
				return NULL;
			}
			json_array_append_new(seq, r);
		}
		return json_pack("{s:o}", "answers", seq);
	}
	if (replay) {
		snprintf(p, sizeof p, "%s/replay", ptr);
		if (!json_is_string(replay) || json_string_length(replay) == 0) {
			diag(c, p, "replay must be the path of a recording");
			return NULL;
		}
		return json_pack("{s:O}", "replay", replay);
	}
	json_t *m = json_object();
	const char *k;
	json_t *x;
	json_object_foreach((json_t *)v, k, x) {
		snprintf(p, sizeof p, "%s/%s", ptr, k);
		if (strcmp(k, "headers") == 0) {
			if (!json_is_object(x))
				diag(c, p, "headers must be a mapping");
			else
				json_object_set(m, k, x);
		} else if (strcmp(k, "timeout_s") == 0) {
			if (!json_is_integer(x) || json_integer_value(x) < 1)
				diag(c, p, "timeout_s must be a positive integer");
			else
				json_object_set_new(m, "timeout_ms", json_integer(json_integer_value(x) * 1000));
		} else if (!json_is_string(x)) {
			diag(c, p, "%s must be a string", k);
		} else if (strcmp(k, "provider") == 0) {
			const char *s = json_string_value(x);
			if (strcmp(s, "openai") != 0 && strcmp(s, "anthropic") != 0 && strcmp(s, "replay") != 0)
				diag(c, p, "provider must be openai, anthropic or replay");
			json_object_set(m, "type", x);
		} else {
			json_object_set(m, k, x);
		}
	}
	return m;
}

static const char *status_of(const char *s)
{
	static const char *const names[] = {"succeeded", "failed",    "escalated", "cancelled",
					    "needs_review", "waiting", NULL};
	for (const char *const *n = names; *n; n++)
		if (strcmp(*n, s) == 0)
			return *n;
	return NULL;
}

static void parse_expect(ctx *c, rein_eval_case *k, const json_t *e, const char *ptr)
{
	static const char *const keys[] = {"status",   "output",     "output_schema", "called",
					   "not_called", "policy",   "max_cost_usd",  "max_tokens",
					   "max_latency_ms", "max_escalations", NULL};
	char p[512];
	if (!json_is_object(e)) {
		diag(c, ptr, "expect must be a mapping");
		return;
	}
	keys_only(c, e, ptr, "expect", keys);
	const json_t *v;
	if ((v = json_object_get(e, "status"))) {
		snprintf(p, sizeof p, "%s/status", ptr);
		if (!json_is_string(v) || (k->status = status_of(json_string_value(v))) == NULL)
			diag(c, p, "status must be one of succeeded, failed, escalated, cancelled, "
				   "needs_review, waiting");
	}
	if ((k->checks = want_strings(c, e, ptr, "output"))) {
		size_t i;
		json_t *x;
		json_array_foreach(k->checks, i, x) {
			rein_err se = {0};
			if (rein_script_check(c->sb, json_string_value(x), REIN_SCRIPT_EXPR, &se) != REIN_OK) {
				snprintf(p, sizeof p, json_is_array(json_object_get(e, "output")) ? "%s/output/%zu" : "%s/output", ptr, i);
				diag(c, p, "output check does not compile: %s", se.msg);
			}
			rein_err_clear(&se);
		}
	}
	if ((v = json_object_get(e, "output_schema"))) {
		snprintf(p, sizeof p, "%s/output_schema", ptr);
		rein_err se = {0};
		rein_schema_opts so = {.name = "output_schema"};
		if (!json_is_object(v) && !json_is_boolean(v))
			diag(c, p, "output_schema must be a JSON Schema (a mapping or a boolean)");
		else if (rein_schema_compile(v, &so, &k->schema, &se) != REIN_OK)
			diag(c, p, "output_schema: %s", se.msg);
		rein_err_clear(&se);
	}
	k->called = want_strings(c, e, ptr, "called");
	k->not_called = want_strings(c, e, ptr, "not_called");
	if ((v = json_object_get(e, "policy"))) {
		snprintf(p, sizeof p, "%s/policy", ptr);
		if (!json_is_array(v)) {
			diag(c, p, "policy must be a list of {decision, rule, tool}");
		} else {
			k->policy = json_array();
			size_t i;
			json_t *x;
			json_array_foreach(v, i, x) {
				static const char *const pk[] = {"decision", "rule", "tool", NULL};
				char q[540];
				snprintf(q, sizeof q, "%s/%zu", p, i);
				const json_t *d = json_object_get(x, "decision");
				if (!json_is_object(x) || !json_is_string(d) ||
				    (strcmp(json_string_value(d), "allow") != 0 &&
				     strcmp(json_string_value(d), "deny") != 0 &&
				     strcmp(json_string_value(d), "approve") != 0)) {
					diag(c, q, "a policy expectation needs decision: allow, deny or approve");
					continue;
				}
				keys_only(c, x, q, "a policy expectation", pk);
				if ((json_object_get(x, "rule") && !json_is_string(json_object_get(x, "rule"))) ||
				    (json_object_get(x, "tool") && !json_is_string(json_object_get(x, "tool"))))
					diag(c, q, "rule and tool must be strings");
				json_array_append(k->policy, x);
			}
		}
	}
	want_number(c, e, ptr, "max_cost_usd", 0, &k->max_cost_usd);
	want_int(c, e, ptr, "max_tokens", 0, INT64_MAX, &k->max_tokens);
	want_int(c, e, ptr, "max_latency_ms", 0, INT64_MAX, &k->max_latency_ms);
	want_int(c, e, ptr, "max_escalations", 0, INT64_MAX, &k->max_escalations);
}

static void parse_judge(ctx *c, rein_eval_case *k, const json_t *j, const char *ptr)
{
	static const char *const keys[] = {"rubric", "model", "threshold", NULL};
	char p[512];
	if (!json_is_object(j)) {
		diag(c, ptr, "judge must be a mapping {rubric, model, threshold}");
		return;
	}
	keys_only(c, j, ptr, "judge", keys);
	const json_t *r = json_object_get(j, "rubric"), *m = json_object_get(j, "model");
	if (!json_is_string(r) || json_string_length(r) == 0) {
		snprintf(p, sizeof p, "%s/rubric", ptr);
		diag(c, r ? p : ptr, "judge needs rubric: the text the judge scores the answer by");
	} else {
		k->judge_rubric = dup_str(c, json_string_value(r));
	}
	if (m == NULL) {
		diag(c, ptr, "judge needs model: a tier of the workflow or a model mapping");
	} else {
		snprintf(p, sizeof p, "%s/model", ptr);
		k->judge_model = parse_model(c, m, p, true);
	}
	k->judge_threshold = 0.5;
	want_number(c, j, ptr, "threshold", 0, &k->judge_threshold);
	if (k->judge_threshold > 1) {
		snprintf(p, sizeof p, "%s/threshold", ptr);
		diag(c, p, "threshold is a score from 0 to 1");
	}
}

static void parse_case(ctx *c, rein_eval_suite *s, rein_eval_case *k, const json_t *v,
		       size_t i, int64_t repeat, const json_t *model)
{
	static const char *const keys[] = {"name",    "input", "model", "repeat", "expect",
					   "redteam", "judge", "requester", NULL};
	char ptr[64], p[128];
	snprintf(ptr, sizeof ptr, "/cases/%zu", i);
	k->max_cost_usd = -1;
	k->max_tokens = k->max_latency_ms = k->max_escalations = -1;
	k->repeat = (int)repeat;
	where(c, ptr, &k->line, &k->col);
	if (!json_is_object(v)) {
		diag(c, ptr, "a case must be a mapping with name and input");
		return;
	}
	keys_only(c, v, ptr, "a case", keys);
	const json_t *x = json_object_get(v, "name");
	if (!json_is_string(x) || json_string_length(x) == 0) {
		snprintf(p, sizeof p, "%s/name", ptr);
		diag(c, x ? p : ptr, "a case needs a name (a non-empty string)");
	} else {
		k->name = dup_str(c, json_string_value(x));
		for (size_t j = 0; j < i && k->name; j++)
			if (s->cases[j].name && strcmp(s->cases[j].name, k->name) == 0) {
				snprintf(p, sizeof p, "%s/name", ptr);
				diag(c, p, "a second case named '%s' (the first is at line %d)", k->name,
				     s->cases[j].line);
			}
	}
	x = json_object_get(v, "input");
	k->input = x ? json_incref((json_t *)x) : json_object();
	if ((x = json_object_get(v, "requester"))) {
		static const char *const rk[] = {"user", "roles", "tenant", NULL};
		snprintf(p, sizeof p, "%s/requester", ptr);
		if (!json_is_object(x) || !json_is_string(json_object_get(x, "user"))) {
			diag(c, p, "requester must be a mapping {user, roles, tenant} with a user");
		} else {
			keys_only(c, x, p, "requester", rk);
			json_t *rl = want_strings(c, x, p, "roles");
			if (json_object_get(x, "tenant") && !json_is_string(json_object_get(x, "tenant"))) {
				snprintf(p, sizeof p, "%s/requester/tenant", ptr);
				diag(c, p, "requester: tenant must be a string");
			}
			k->requester = json_pack("{s:O, s:o, s:O?}", "user", json_object_get(x, "user"),
						 "roles", rl ? rl : json_array(), "tenant",
						 json_object_get(x, "tenant"));
			if (k->requester == NULL)
				c->nomem = true;
		}
	}
	int64_t r = repeat;
	want_int(c, v, ptr, "repeat", 1, 10000, &r);
	k->repeat = (int)r;
	if ((x = json_object_get(v, "model"))) {
		snprintf(p, sizeof p, "%s/model", ptr);
		k->model = parse_model(c, x, p, false);
	} else if (model) {
		k->model = json_incref((json_t *)model);
	}
	if ((x = json_object_get(v, "expect"))) {
		snprintf(p, sizeof p, "%s/expect", ptr);
		parse_expect(c, k, x, p);
	}
	if ((x = json_object_get(v, "redteam"))) {
		static const char *const rk[] = {"forbidden", NULL};
		snprintf(p, sizeof p, "%s/redteam", ptr);
		if (!json_is_object(x) || json_object_get(x, "forbidden") == NULL) {
			diag(c, p, "redteam must be a mapping {forbidden: [tools]}");
		} else {
			keys_only(c, x, p, "redteam", rk);
			k->redteam = true;
			k->forbidden = want_strings(c, x, p, "forbidden");
		}
	}
	if ((x = json_object_get(v, "judge"))) {
		snprintf(p, sizeof p, "%s/judge", ptr);
		parse_judge(c, k, x, p);
	}
}

static void parse_gate(ctx *c, rein_eval_gate *g, const json_t *v)
{
	static const char *const keys[] = {"min_success", "max_success_drop", "max_cost_increase_pct",
					   "max_escalation_increase", NULL};
	*g = (rein_eval_gate){-1, -1, -1, -1};
	if (v == NULL)
		return;
	if (!json_is_object(v)) {
		diag(c, "/gate", "gate must be a mapping of thresholds");
		return;
	}
	keys_only(c, v, "/gate", "gate", keys);
	want_number(c, v, "/gate", "min_success", 0, &g->min_success);
	want_number(c, v, "/gate", "max_success_drop", 0, &g->max_success_drop);
	want_number(c, v, "/gate", "max_cost_increase_pct", 0, &g->max_cost_increase_pct);
	want_number(c, v, "/gate", "max_escalation_increase", 0, &g->max_escalation_increase);
	if (g->min_success > 1)
		diag(c, "/gate/min_success", "min_success is a rate from 0 to 1");
}

/* dir of path joined with rel (rel absolute: itself). */
static char *join_dir(const char *path, const char *rel)
{
	if (rel[0] == '/')
		return rein_strdup(rel);
	const char *slash = strrchr(path, '/');
	if (slash == NULL)
		return rein_strdup(rel);
	return rein_sprintf("%.*s/%s", (int)(slash - path), path, rel);
}

int rein_eval_suite_parse(const char *text, size_t len, const char *path, rein_script *sb,
			  rein_eval_suite **out, rein_err *err)
{
	assert(path != NULL && sb != NULL && out != NULL);
	static const char *const keys[] = {"name", "workflow", "defaults", "gate", "cases", NULL};
	json_t *doc = NULL, *locs = NULL, *model = NULL;
	ctx c = {.path = path, .sb = sb};
	rein_eval_suite *s = NULL;
	int rc = rein_spec_yaml_text(text, len, path, &doc, &locs, err);
	if (rc != REIN_OK)
		goto out;
	c.locs = locs;
	if ((s = rein_calloc(1, sizeof *s)) == NULL || (s->path = rein_strdup(path)) == NULL) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	parse_gate(&c, &s->gate, NULL);
	if (!json_is_object(doc)) {
		diag(&c, "", "a suite is a mapping with workflow and cases");
		goto check;
	}
	keys_only(&c, doc, "", "a suite", keys);
	const json_t *v = json_object_get(doc, "name");
	if (v && !json_is_string(v))
		diag(&c, "/name", "name must be a string");
	const char *base = strrchr(path, '/');
	s->name = dup_str(&c, json_is_string(v) ? json_string_value(v) : base ? base + 1 : path);
	v = json_object_get(doc, "workflow");
	if (!json_is_string(v) || json_string_length(v) == 0)
		diag(&c, v ? "/workflow" : "", "a suite needs workflow: the workflow directory, "
						"relative to the suite file");
	else if ((s->workflow = join_dir(path, json_string_value(v))) == NULL)
		c.nomem = true;
	int64_t repeat = 1;
	const json_t *d = json_object_get(doc, "defaults");
	if (d) {
		static const char *const dk[] = {"repeat", "model", NULL};
		if (!json_is_object(d)) {
			diag(&c, "/defaults", "defaults must be a mapping {repeat, model}");
		} else {
			keys_only(&c, d, "/defaults", "defaults", dk);
			want_int(&c, d, "/defaults", "repeat", 1, 10000, &repeat);
			if (json_object_get(d, "model"))
				model = parse_model(&c, json_object_get(d, "model"), "/defaults/model", false);
		}
	}
	parse_gate(&c, &s->gate, json_object_get(doc, "gate"));
	v = json_object_get(doc, "cases");
	if (!json_is_array(v) || json_array_size(v) == 0) {
		diag(&c, v ? "/cases" : "", "a suite needs cases: a non-empty list");
		goto check;
	}
	if ((s->cases = rein_calloc(json_array_size(v), sizeof *s->cases)) == NULL) {
		c.nomem = true;
		goto check;
	}
	for (size_t i = 0; i < json_array_size(v); i++) {
		s->ncases = i + 1;
		parse_case(&c, s, &s->cases[i], json_array_get(v, i), i, repeat, model);
	}
check:
	if (c.nomem) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
	} else if (c.d.n > 0) {
		size_t n = c.d.n;
		rein_diag *f = &c.d.v[0];
		char first[900];
		snprintf(first, sizeof first, "%s:%d:%d: %s", f->file, f->line, f->col, f->msg);
		if (n > 1)
			rc = rein_err_set_diags(err, &c.d, REIN_ESPEC, "%s (and %zu more problems)", first, n - 1);
		else
			rc = rein_err_set_diags(err, &c.d, REIN_ESPEC, "%s", first);
	}
	if (rc == REIN_OK) {
		*out = s;
		s = NULL;
	}
out:
	rein_diags_free(&c.d);
	rein_eval_suite_free(s);
	json_decref(model);
	json_decref(locs);
	json_decref(doc);
	return rc;
}

int rein_eval_suite_load(const char *path, rein_script *sb, rein_eval_suite **out, rein_err *err)
{
	char *text = NULL;
	size_t len = 0;
	int rc = rein_file_read(path, &text, &len, err);
	if (rc == REIN_OK)
		rc = rein_eval_suite_parse(text, len, path, sb, out, err);
	rein_free(text);
	return rc;
}

void rein_eval_suite_free(rein_eval_suite *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->ncases; i++) {
		rein_eval_case *k = &s->cases[i];
		rein_free(k->name);
		json_decref(k->input);
		json_decref(k->requester);
		json_decref(k->model);
		json_decref(k->forbidden);
		json_decref(k->checks);
		rein_schema_free(k->schema);
		json_decref(k->called);
		json_decref(k->not_called);
		json_decref(k->policy);
		rein_free(k->judge_rubric);
		json_decref(k->judge_model);
	}
	rein_free(s->cases);
	rein_free(s->name);
	rein_free(s->workflow);
	rein_free(s->path);
	rein_free(s);
}

/* ---- pass^k and pass@k --------------------------------------------------- */

/* C(a,k)/C(b,k) for 0 <= a <= b, 1 <= k <= b, as a product that stays in range. */
static double choose_ratio(int a, int b, int k)
{
	if (a < k)
		return 0;
	double r = 1;
	for (int i = 0; i < k; i++)
		r *= (double)(a - i) / (double)(b - i);
	return r;
}

double rein_eval_pass_hat_k(int n, int c, int k)
{
	if (n < 1 || c < 0 || c > n || k < 1 || k > n)
		return -1;
	return choose_ratio(c, n, k);
}

double rein_eval_pass_at_k(int n, int c, int k)
{
	if (n < 1 || c < 0 || c > n || k < 1 || k > n)
		return -1;
	return 1 - choose_ratio(n - c, n, k);
}
