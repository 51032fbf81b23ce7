/*
 * Rule sets and their evaluation (policy.h, docs/policy.md). A rule is
 * compiled once into a struct: its target (tool globs, access, risk tier),
 * its limit (a count of earlier calls within a window), its `when` and the
 * args.FIELD names that condition reads, so a field a tool does not have is
 * found before the rule ever runs.
 */
#include <assert.h>
#include <ctype.h>
#include <fnmatch.h>
#include <string.h>

#include "policy.h"

enum { ACC_ANY = 0, ACC_READ, ACC_WRITE };

typedef struct rule {
	char *id;
	int effect;
	char **tools; /* globs; none: every tool */
	size_t ntools;
	int access;   /* ACC_* */
	int risk;     /* -1: any; else the lowest tier it targets */
	char *when;   /* Lua expression or NULL */
	char *reason; /* or NULL */
	int64_t limit_max;  /* -1: no limit */
	int64_t window_ms;  /* 0: the whole run */
	bool per_tenant;    /* limit.per: tenant: counts the calls of every run of the tenant */
	char **fields;      /* args.FIELD names `when` reads */
	size_t nfields;
	char *chunk;        /* `when` inside a function that defines the provenance
			       functions (an expression still), or NULL */
	json_t *approval;   /* approve: {approvers, roles, sla_s, on_timeout} or NULL */
} rule;

/* The provenance functions a condition may call (docs/policy.md): a value is
 * looked up among the call's arguments (by equality; the labels of equal
 * arguments are joined in C first), so trusted(args.iban) reads the label
 * of argument iban. */
static const char prov_prelude[] =
	"local function __pl(v) local p = provenance and provenance.args; if p == nil or args == nil "
	"then return nil end; for k, x in pairs(args) do if rawequal(x, v) and p[k] then return p[k] "
	"end end; return nil end; "
	"local function trusted(v) local l = __pl(v); return l ~= nil and l.trusted == true end; "
	"local function sources(v) local l = __pl(v); return l and l.sources or {} end; "
	"local function readers(v) local l = __pl(v); return l and l.readers or {} end; "
	"local function readable_by(v, who) local l = __pl(v); if l == nil then return false end; "
	"for _, r in ipairs(l.readers) do if r == 'public' or r == who then return true end end; "
	"return false end; "
	"return (";

/* Whether src calls one of the provenance functions. */
static bool uses_prov(const char *src)
{
	return strstr(src, "trusted(") || strstr(src, "sources(") || strstr(src, "readers(") ||
	       strstr(src, "readable_by(");
}

struct rein_policy {
	char *origin;
	rule *rules;
	size_t n;
};

const char *rein_policy_decision_name(int d)
{
	return d == REIN_POLICY_ALLOW ? "allow" : d == REIN_POLICY_DENY ? "deny" : "approve";
}

static void strv_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		rein_free(v[i]);
	rein_free(v);
}

void rein_policy_free(rein_policy *p)
{
	if (p == NULL)
		return;
	for (size_t i = 0; i < p->n; i++) {
		rule *r = &p->rules[i];
		rein_free(r->id);
		strv_free(r->tools, r->ntools);
		rein_free(r->when);
		rein_free(r->reason);
		strv_free(r->fields, r->nfields);
		rein_free(r->chunk);
		json_decref(r->approval);
	}
	rein_free(p->rules);
	rein_free(p->origin);
	rein_free(p);
}

size_t rein_policy_count(const rein_policy *p) { return p ? p->n : 0; }

static int add_str(char ***v, size_t *n, const char *s, size_t len)
{
	for (size_t i = 0; i < *n; i++)
		if (strlen((*v)[i]) == len && memcmp((*v)[i], s, len) == 0)
			return REIN_OK;
	char **nv = rein_realloc(*v, (*n + 1) * sizeof *nv);
	if (nv == NULL)
		return REIN_ENOMEM;
	*v = nv;
	if ((nv[*n] = rein_malloc(len + 1)) == NULL)
		return REIN_ENOMEM;
	memcpy(nv[*n], s, len);
	nv[*n][len] = '\0';
	(*n)++;
	return REIN_OK;
}

static bool ident(int c) { return isalnum((unsigned char)c) || c == '_'; }

/* The FIELD of every "args.FIELD" in src (not "xargs.F", not "a.args.F"). */
static int scan_fields(rule *r)
{
	const char *s = r->when;
	for (const char *p = strstr(s, "args."); p; p = strstr(p + 5, "args.")) {
		if (p > s && (ident(p[-1]) || p[-1] == '.'))
			continue;
		const char *f = p + 5, *e = f;
		while (ident(*e))
			e++;
		if (e > f && !isdigit((unsigned char)*f) && add_str(&r->fields, &r->nfields, f, (size_t)(e - f)) != REIN_OK)
			return REIN_ENOMEM;
	}
	return REIN_OK;
}

static const char *const rule_keys[] = {"id",     "effect", "tool",  "access",     "risk",
					"when",   "reason", "limit", "description", "approval", NULL};

static int parse_risk(const char *s)
{
	if (s == NULL)
		return -2;
	return strcmp(s, "low") == 0 ? 0 : strcmp(s, "medium") == 0 ? 1 : strcmp(s, "high") == 0 ? 2 : -2;
}

/* Fills r from o; a problem sets *why (static text or err). */
static int compile_rule(const json_t *o, rule *r, rein_script *sb, rein_err *err)
{
	assert(o != NULL);
	if (json_typeof(o) != JSON_OBJECT)
		return rein_err_set(err, REIN_EINVAL, "a rule must be a mapping");
	for (void *it = json_object_iter((json_t *)o); it; it = json_object_iter_next((json_t *)o, it)) {
		const char *k = json_object_iter_key(it);
		bool known = false;
		for (size_t i = 0; rule_keys[i]; i++)
			known = known || strcmp(rule_keys[i], k) == 0;
		if (!known)
			return rein_err_set(err, REIN_EINVAL, "unknown key '%s' (allowed: id, effect, tool, "
					    "access, risk, when, reason, limit, description, approval)", k);
	}
	const char *id = json_string_value(json_object_get(o, "id"));
	if (id == NULL || *id == '\0')
		return rein_err_set(err, REIN_EINVAL, "a rule needs an id (a non-empty string)");
	if ((r->id = rein_strdup(id)) == NULL)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	const char *eff = json_string_value(json_object_get(o, "effect"));
	r->effect = eff == NULL ? 0
		    : strcmp(eff, "allow") == 0 ? REIN_POLICY_ALLOW
		    : strcmp(eff, "deny") == 0	? REIN_POLICY_DENY
		    : strcmp(eff, "approve") == 0 ? REIN_POLICY_APPROVE
						  : 0;
	if (r->effect == 0)
		return rein_err_set(err, REIN_EINVAL, "rule '%s': effect must be allow, deny or approve", id);
	const json_t *t = json_object_get(o, "tool");
	if (json_is_string(t)) {
		if (add_str(&r->tools, &r->ntools, json_string_value(t), strlen(json_string_value(t))))
			return rein_err_set(err, REIN_ENOMEM, "out of memory");
	} else if (json_is_array(t) && json_array_size(t) > 0) {
		for (size_t i = 0; i < json_array_size(t); i++) {
			const json_t *x = json_array_get(t, i);
			if (json_typeof(x) != JSON_STRING)
				return rein_err_set(err, REIN_EINVAL, "rule '%s': tool must be a name or glob, "
						    "or a list of them", id);
			if (add_str(&r->tools, &r->ntools, json_string_value(x), strlen(json_string_value(x))))
				return rein_err_set(err, REIN_ENOMEM, "out of memory");
		}
	} else if (t != NULL) {
		return rein_err_set(err, REIN_EINVAL, "rule '%s': tool must be a name or glob, or a list of them",
				    id);
	}
	const json_t *acc = json_object_get(o, "access");
	const char *as = json_string_value(acc);
	r->access = acc == NULL ? ACC_ANY : as && strcmp(as, "read") == 0 ? ACC_READ
				      : as && strcmp(as, "write") == 0  ? ACC_WRITE
									: -1;
	if (r->access < 0)
		return rein_err_set(err, REIN_EINVAL, "rule '%s': access must be read or write", id);
	const json_t *rk = json_object_get(o, "risk");
	r->risk = rk == NULL ? -1 : parse_risk(json_string_value(rk));
	if (r->risk < -1)
		return rein_err_set(err, REIN_EINVAL, "rule '%s': risk must be low, medium or high", id);
	const json_t *w = json_object_get(o, "when");
	if (w != NULL && json_typeof(w) != JSON_STRING)
		return rein_err_set(err, REIN_EINVAL, "rule '%s': when must be a Lua expression (a string)",
				    id);
	if (w != NULL) {
		rein_err e = {0};
		if ((r->when = rein_strdup(json_string_value(w))) == NULL || scan_fields(r) != REIN_OK)
			return rein_err_set(err, REIN_ENOMEM, "out of memory");
		if (uses_prov(r->when) &&
		    (r->chunk = rein_sprintf("(function() %s%s\n) end)()", prov_prelude, r->when)) == NULL)
			return rein_err_set(err, REIN_ENOMEM, "out of memory");
		/* the author's text first, so a syntax error names its own line */
		int rc = rein_script_check(sb, r->when, REIN_SCRIPT_EXPR, &e);
		if (rc == REIN_OK && r->chunk)
			rc = rein_script_check(sb, r->chunk, REIN_SCRIPT_EXPR, &e);
		if (rc != REIN_OK)
			return rein_err_set(err, rc == REIN_ENOMEM ? rc : REIN_EINVAL, "rule '%s': when: %s",
					    id, e.msg);
	}
	const json_t *rs = json_object_get(o, "reason");
	if (rs != NULL && json_typeof(rs) != JSON_STRING)
		return rein_err_set(err, REIN_EINVAL, "rule '%s': reason must be a string", id);
	if (rs != NULL && (r->reason = rein_strdup(json_string_value(rs))) == NULL)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	const json_t *ap = json_object_get(o, "approval");
	if (ap != NULL && r->effect != REIN_POLICY_APPROVE)
		return rein_err_set(err, REIN_EINVAL, "rule '%s': approval settings need effect: approve", id);
	if (ap != NULL) {
		rein_err ae = {0};
		int arc = rein_policy_approval_norm(ap, &r->approval, &ae);
		if (arc != REIN_OK)
			return rein_err_set(err, arc, "rule '%s': %s", id, ae.msg);
	}
	r->limit_max = -1;
	const json_t *lim = json_object_get(o, "limit");
	if (lim != NULL) {
		const json_t *mx = json_object_get(lim, "max"), *win = json_object_get(lim, "window_s");
		const json_t *per = json_object_get(lim, "per");
		const char *ps = json_string_value(per);
		bool ok = json_typeof(lim) == JSON_OBJECT && json_is_integer(mx) && json_integer_value(mx) >= 0 &&
			  (win == NULL || (json_typeof(win) == JSON_INTEGER && json_integer_value(win) > 0)) &&
			  (per == NULL || (ps && (strcmp(ps, "run") == 0 || strcmp(ps, "tenant") == 0))) &&
			  json_object_size(lim) == (size_t)(1 + (win != NULL) + (per != NULL));
		if (!ok)
			return rein_err_set(err, REIN_EINVAL, "rule '%s': limit must be {max: N, window_s: S, "
					    "per: run|tenant} (N >= 0, S > 0; window_s and per optional)", id);
		r->limit_max = json_integer_value(mx);
		r->window_ms = win ? json_integer_value(win) * 1000 : 0;
		r->per_tenant = ps && strcmp(ps, "tenant") == 0;
		if (r->per_tenant && win == NULL)
			return rein_err_set(err, REIN_EINVAL, "rule '%s': a limit per tenant needs a "
					    "window_s (the calls of the tenant's runs in the last S seconds)", id);
	}
	return REIN_OK;
}

int rein_policy_compile(const json_t *rules, const char *origin, rein_script *sb,
			rein_policy **out, int *bad, rein_err *err)
{
	assert(sb != NULL && out != NULL && bad != NULL);
	int rc = REIN_OK;
	rein_policy *p = NULL;
	*bad = -1;
	if (!json_is_array(rules)) {
		rc = rein_err_set(err, REIN_EINVAL, "policies must be a list of rules");
		goto out;
	}
	if ((p = rein_calloc(1, sizeof *p)) == NULL ||
	    (p->origin = rein_strdup(origin ? origin : "policy")) == NULL ||
	    (json_array_size(rules) &&
	     (p->rules = rein_calloc(json_array_size(rules), sizeof *p->rules)) == NULL)) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < json_array_size(rules); i++) {
		p->n = i + 1;
		if ((rc = compile_rule(json_array_get(rules, i), &p->rules[i], sb, err)) != REIN_OK) {
			*bad = (int)i;
			goto out;
		}
		for (size_t j = 0; j < i; j++)
			if (strcmp(p->rules[j].id, p->rules[i].id) == 0) {
				*bad = (int)i;
				rc = rein_err_set(err, REIN_EINVAL, "rule '%s': a second rule with this id",
						  p->rules[i].id);
				goto out;
			}
	}
	*out = p;
	p = NULL;
out:
	rein_policy_free(p);
	return rc;
}

static bool glob_any(char *const *globs, size_t n, const char *name)
{
	if (n == 0)
		return true;
	for (size_t i = 0; i < n; i++)
		if (fnmatch(globs[i], name, 0) == 0)
			return true;
	return false;
}

static bool targets(const rule *r, const char *name, bool write, int risk)
{
	if (!glob_any(r->tools, r->ntools, name))
		return false;
	if ((r->access == ACC_READ && write) || (r->access == ACC_WRITE && !write))
		return false;
	return r->risk < 0 || risk >= r->risk;
}

/* The first args.FIELD of r that tool's input schema does not list, or NULL
 * (a schema without properties: anything goes). */
static const char *missing_field(const rule *r, const json_t *input_doc)
{
	const json_t *props = json_object_get(input_doc, "properties");
	if (!json_is_object(props))
		return NULL;
	for (size_t i = 0; i < r->nfields; i++)
		if (json_object_get(props, r->fields[i]) == NULL)
			return r->fields[i];
	return NULL;
}

int rein_policy_check_tools(const rein_policy *p, const rein_policy_tool *tools, size_t ntools,
			    int *bad, rein_err *err)
{
	assert(p != NULL && bad != NULL);
	*bad = -1;
	for (size_t i = 0; i < p->n; i++)
		for (size_t t = 0; t < ntools; t++) {
			const rule *r = &p->rules[i];
			if (!targets(r, tools[t].name, tools[t].write, tools[t].risk))
				continue;
			const char *f = missing_field(r, tools[t].input_doc);
			if (f) {
				*bad = (int)i;
				return rein_err_set(err, REIN_EINVAL,
						    "rule '%s': args.%s is not a field of tool '%s' (its input "
						    "schema has no such property)",
						    r->id, f, tools[t].name);
			}
		}
	return REIN_OK;
}

void rein_policy_version(const json_t *rules, char out[65])
{
	uint8_t h[REIN_HASH_LEN];
	char *text = rein_json_dump(rules);
	rein_sha256(text ? text : "", text ? strlen(text) : 0, h);
	rein_free(text);
	rein_hex(h, sizeof h, out);
}

/* ---- evaluation ---------------------------------------------------------- */

/* Sets k to v (stolen) in o; false when either is NULL or it fails. */
static bool put(json_t *o, const char *k, json_t *v)
{
	if (o == NULL || v == NULL) {
		json_decref(v);
		return false;
	}
	return json_object_set_new(o, k, v) == 0; /* steals v even when it fails */
}

/* `run` as a condition sees it: the run's {id, workflow, version} and the
 * recorded clock (now, hour, minute, weekday: UTC, Sunday 0) and counts of
 * the calls recorded so far (calls, writes, tool_calls.NAME). */
static json_t *run_view(const rein_policy_call *c)
{
	json_t *v = json_is_object(c->run) ? json_copy((json_t *)c->run) : json_object();
	json_t *per = json_object();
	int64_t secs = c->now_ms / 1000, day = secs / 86400, sod = secs % 86400;
	int64_t calls = 0, writes = 0;
	for (size_t i = 0; i < json_array_size(c->history); i++) {
		const json_t *h = json_array_get(c->history, i);
		const char *tn = json_string_value(json_object_get(h, "tool"));
		calls++;
		writes += json_is_true(json_object_get(h, "write"));
		if (tn && per) {
			json_int_t n = json_integer_value(json_object_get(per, tn));
			if (!put(per, tn, json_integer(n + 1))) {
				json_decref(per);
				per = NULL;
			}
		}
	}
	bool ok = put(v, "tool_calls", per) && put(v, "now", json_integer(c->now_ms)) && put(v, "hour", json_integer(sod / 3600)) &&
		  put(v, "minute", json_integer(sod % 3600 / 60)) &&
		  put(v, "weekday", json_integer((day + 4) % 7)) && put(v, "calls", json_integer(calls)) &&
		  put(v, "writes", json_integer(writes));
	if (!ok) {
		json_decref(v);
		return NULL;
	}
	return v;
}

/* The recorded calls to tools r targets within its window, before now. */
static int64_t count_calls(const rule *r, const rein_policy_call *c)
{
	int64_t n = 0;
	for (size_t i = 0; i < json_array_size(c->history); i++) {
		const json_t *h = json_array_get(c->history, i);
		const char *tn = json_string_value(json_object_get(h, "tool"));
		bool w = json_is_true(json_object_get(h, "write"));
		int64_t at = json_integer_value(json_object_get(h, "at"));
		if (tn == NULL || !glob_any(r->tools, r->ntools, tn))
			continue;
		if ((r->access == ACC_READ && w) || (r->access == ACC_WRITE && !w))
			continue;
		if (r->window_ms && at <= c->now_ms - r->window_ms)
			continue;
		n++;
	}
	return n;
}

typedef struct verdict {
	json_t *ids[3], *reasons[3]; /* per effect - 1 */
} verdict;

static bool note(verdict *v, int effect, const char *id, const char *reason)
{
	return json_array_append_new(v->ids[effect - 1], json_string(id)) == 0 &&
	       json_array_append_new(v->reasons[effect - 1], json_string(reason)) == 0;
}

/* Whether rule r matches the call: its condition and its limit. *fail (caller
 * frees) when it cannot be evaluated. */
static int rule_matches(rein_script *sb, const rule *r, const rein_policy_call *c, json_t **run,
			bool *match, char **fail, rein_err *err)
{
	*match = false;
	const char *f = missing_field(r, c->tool.input_doc);
	if (f) {
		*fail = rein_sprintf("rule '%s' cannot be evaluated: args.%s is not a field of tool '%s'",
				     r->id, f, c->tool.name);
		return *fail ? REIN_OK : rein_err_set(err, REIN_ENOMEM, "out of memory");
	}
	if (r->limit_max >= 0 && r->per_tenant) {
		const json_t *n = json_object_get(c->tenant_counts, r->id);
		if (!json_is_integer(n)) { /* fails closed: nobody counted */
			*fail = rein_sprintf("rule '%s' cannot be evaluated: the count of the tenant's "
					     "calls is not known", r->id);
			return *fail ? REIN_OK : rein_err_set(err, REIN_ENOMEM, "out of memory");
		}
		if (json_integer_value(n) < r->limit_max)
			return REIN_OK;
	} else if (r->limit_max >= 0 && count_calls(r, c) < r->limit_max) {
		return REIN_OK;
	}
	if (r->when == NULL) {
		*match = true;
		return REIN_OK;
	}
	if (*run == NULL && (*run = run_view(c)) == NULL)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	json_t *vars = json_object();
	if (!put(vars, "args", json_incref((json_t *)c->args)) ||
	    !put(vars, "requester", c->requester ? json_incref((json_t *)c->requester) : json_null()) ||
	    (c->provenance && !put(vars, "provenance", json_incref((json_t *)c->provenance)))) {
		json_decref(vars);
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	}
	rein_script_ctx ctx = {.input = c->input,
			       .run = *run,
			       .step_out = c->step_out,
			       .ud = c->ud,
			       .vars = vars,
			       .limits = c->limits};
	json_t *res = NULL;
	rein_err e = {0};
	int rc = rein_script_eval(sb, r->chunk ? r->chunk : r->when, REIN_SCRIPT_EXPR, &ctx, &res, &e);
	json_decref(vars);
	if (rc == REIN_ENOMEM)
		return rein_err_set(err, rc, "out of memory");
	/* rein_script_eval sets res on REIN_OK, so its type is read directly */
	assert(rc != REIN_OK || res != NULL);
	json_type ty = rc == REIN_OK ? json_typeof(res) : JSON_NULL;
	bool boolish = rc == REIN_OK && (ty == JSON_TRUE || ty == JSON_FALSE || ty == JSON_NULL);
	if (rc != REIN_OK)
		*fail = rein_sprintf("rule '%s' cannot be evaluated: %s", r->id, e.msg);
	else if (boolish)
		*match = ty == JSON_TRUE;
	else
		*fail = rein_sprintf("rule '%s' cannot be evaluated: its condition gave a %s, not a "
				     "boolean",
				     r->id, ty == JSON_STRING ? "string"
					    : ty == JSON_INTEGER || ty == JSON_REAL ? "number"
										   : "table");
	json_decref(res);
	if (!boolish && *fail == NULL)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	return REIN_OK;
}

/* The default rule no workflow removes: a write call an agent proposed while
 * its context held untrusted content, with an argument that is not trusted. */
static bool untrusted_write(const rein_policy_call *c)
{
	const json_t *p = c->provenance;
	if (p == NULL || !c->tool.write || !json_is_true(json_object_get(p, "agent")))
		return false;
	const json_t *ctx = json_object_get(p, "context");
	if (!json_is_object(ctx) || rein_label_trusted(ctx))
		return false;
	json_t *args = json_object_get(p, "args");
	for (void *it = json_object_iter(args); it; it = json_object_iter_next(args, it))
		if (!rein_label_trusted(json_object_iter_value(it)))
			return true;
	return false;
}

int rein_policy_eval(rein_script *sb, const rein_policy *const *sets, size_t nsets,
		     const rein_policy_call *c, json_t **out, rein_err *err)
{
	assert(sb != NULL && c != NULL && c->tool.name != NULL && out != NULL);
	int rc = REIN_OK;
	verdict v;
	memset(&v, 0, sizeof v);
	json_t *run = NULL, *res = NULL;
	char *fail = NULL;
	for (int i = 0; i < 3; i++)
		if ((v.ids[i] = json_array()) == NULL || (v.reasons[i] = json_array()) == NULL)
			goto oom;
	for (size_t s = 0; s < nsets; s++) {
		for (size_t i = 0; sets[s] && i < sets[s]->n; i++) {
			const rule *r = &sets[s]->rules[i];
			if (!targets(r, c->tool.name, c->tool.write, c->tool.risk))
				continue;
			bool match = false;
			if ((rc = rule_matches(sb, r, c, &run, &match, &fail, err)) != REIN_OK)
				goto out;
			if (fail) {
				if (!note(&v, REIN_POLICY_DENY, r->id, fail))
					goto oom;
				rein_free(fail);
				fail = NULL;
				continue;
			}
			if (!match)
				continue;
			char *dflt = r->reason ? NULL : rein_sprintf("rule '%s' (%s)", r->id, rein_policy_decision_name(r->effect));
			if ((r->reason == NULL && dflt == NULL) || !note(&v, r->effect, r->id, r->reason ? r->reason : dflt)) {
				rein_free(dflt);
				goto oom;
			}
			rein_free(dflt);
		}
	}
	/* the default rule tightens an allow into an approval; it never loosens
	 * a denial, the default one included (a write no rule allows stays
	 * denied, approvable by nobody) */
	bool allowed = json_array_size(v.ids[REIN_POLICY_ALLOW - 1]) ||
		       json_array_size(v.ids[REIN_POLICY_APPROVE - 1]) || !c->enforce;
	if (allowed && untrusted_write(c) &&
	    !note(&v, REIN_POLICY_APPROVE, "rein.untrusted_write",
		  "a write proposed by an agent whose context held untrusted content, with an argument "
		  "that is not trusted"))
		goto oom;
	int d = json_array_size(v.ids[REIN_POLICY_DENY - 1])	  ? REIN_POLICY_DENY
		: json_array_size(v.ids[REIN_POLICY_APPROVE - 1]) ? REIN_POLICY_APPROVE
		: json_array_size(v.ids[REIN_POLICY_ALLOW - 1])	  ? REIN_POLICY_ALLOW
								  : 0;
	json_t *ids = NULL, *reasons = NULL;
	if (d) {
		ids = json_incref(v.ids[d - 1]);
		reasons = json_incref(v.reasons[d - 1]);
	} else {
		d = c->tool.write && c->enforce ? REIN_POLICY_DENY : REIN_POLICY_ALLOW;
		const char *why = !c->tool.write ? "read tools are allowed unless a rule denies them"
				  : c->enforce	 ? "write tools are denied unless a rule allows them"
						 : "no policies are in force (the compatibility rule)";
		ids = json_array();
		reasons = json_pack("[s]", why);
	}
	res = json_pack("{s:s, s:o?, s:o?}", "decision", rein_policy_decision_name(d), "rules", ids,
			"reasons", reasons);
	if (res == NULL || ids == NULL || reasons == NULL)
		goto oom;
	*out = res;
	res = NULL;
	goto out;
oom:
	rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
out:
	for (int i = 0; i < 3; i++) {
		json_decref(v.ids[i]);
		json_decref(v.reasons[i]);
	}
	json_decref(run);
	json_decref(res);
	rein_free(fail);
	return rc;
}

size_t rein_policy_rates(const rein_policy *p, rein_policy_rate *out, size_t cap)
{
	size_t n = 0;
	for (size_t i = 0; p && i < p->n; i++) {
		const rule *r = &p->rules[i];
		if (r->limit_max < 0 || !r->per_tenant)
			continue;
		if (n < cap)
			out[n] = (rein_policy_rate){.id = r->id, .max = r->limit_max,
						    .window_ms = r->window_ms, .rule = r};
		n++;
	}
	return n;
}

bool rein_policy_rate_counts(const rein_policy_rate *rt, const char *tool, bool write)
{
	assert(rt != NULL && rt->rule != NULL);
	const rule *r = rt->rule;
	if (tool == NULL || !glob_any(r->tools, r->ntools, tool))
		return false;
	return !((r->access == ACC_READ && write) || (r->access == ACC_WRITE && !write));
}

int rein_policy_approval_norm(const json_t *in, json_t **out, rein_err *err)
{
	assert(out != NULL);
	*out = NULL;
	if (!json_is_object(in))
		return rein_err_set(err, REIN_EINVAL, "approval must be a mapping {approvers, roles, sla_s, "
				    "on_timeout}");
	for (void *it = json_object_iter((json_t *)in); it; it = json_object_iter_next((json_t *)in, it)) {
		const char *k = json_object_iter_key(it);
		if (strcmp(k, "approvers") && strcmp(k, "roles") && strcmp(k, "sla_s") && strcmp(k, "on_timeout"))
			return rein_err_set(err, REIN_EINVAL, "approval: unknown key '%s' (allowed: approvers, "
					    "roles, sla_s, on_timeout)", k);
	}
	const json_t *n = json_object_get(in, "approvers"), *roles = json_object_get(in, "roles");
	const json_t *sla = json_object_get(in, "sla_s"), *ot = json_object_get(in, "on_timeout");
	if (n && (json_typeof(n) != JSON_INTEGER || json_integer_value(n) < 1 || json_integer_value(n) > 10))
		return rein_err_set(err, REIN_EINVAL, "approval: approvers must be an integer from 1 to 10");
	if (roles && json_typeof(roles) != JSON_ARRAY)
		return rein_err_set(err, REIN_EINVAL, "approval: roles must be a list of role names");
	for (size_t i = 0; i < json_array_size(roles); i++) {
		const json_t *v = json_array_get(roles, i);
		if (json_typeof(v) != JSON_STRING || !*json_string_value(v))
			return rein_err_set(err, REIN_EINVAL, "approval: roles must be a list of role names");
	}
	if (sla && (json_typeof(sla) != JSON_INTEGER || json_integer_value(sla) < 1))
		return rein_err_set(err, REIN_EINVAL, "approval: sla_s must be a positive integer (seconds)");
	const char *ots = json_string_value(ot);
	if (ot && !(ots && (strcmp(ots, "escalate") == 0 || strcmp(ots, "deny") == 0 ||
			    strcmp(ots, "halt") == 0)))
		return rein_err_set(err, REIN_EINVAL, "approval: on_timeout must be escalate, deny or halt");
	*out = json_pack("{s:I, s:o, s:I, s:s}", "approvers", (json_int_t)(n ? json_integer_value(n) : 1),
			 "roles", roles ? json_incref((json_t *)roles) : json_array(), "sla_s",
			 (json_int_t)(sla ? json_integer_value(sla) : 86400), "on_timeout", ots ? ots : "escalate");
	return *out ? REIN_OK : rein_err_set(err, REIN_ENOMEM, "out of memory");
}

const json_t *rein_policy_rule_approval(const rein_policy *p, const char *id)
{
	for (size_t i = 0; p && id && i < p->n; i++)
		if (strcmp(p->rules[i].id, id) == 0)
			return p->rules[i].approval;
	return NULL;
}
