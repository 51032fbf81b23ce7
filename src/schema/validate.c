/*
 * Validation of an instance against compiled nodes. A valid instance costs no
 * allocation: instance locations are a linked list on the C stack rendered
 * only when an error is recorded, and the evaluated-property/item sets that
 * unevaluated* keywords need live inline on the stack for instances of up to
 * 256 members (heap beyond that), and exist only below a node that has an
 * unevaluated* keyword. Sub-evaluations whose failures are not errors of
 * their own (anyOf branches, not, if, contains) run with error collection off
 * and stop at the first failing keyword.
 */
#include "schema_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 512
#define EV_INLINE 4
#define MAX_STEPS 100000000LL /* a safety valve against exponential schemas */

/* Which members of the current object/array some keyword has evaluated. */
typedef struct evalset {
	size_t n;
	uint64_t *bits;
	uint64_t inl[EV_INLINE];
} evalset;

/* The dynamic scope: the resources evaluation has passed through. */
typedef struct dscope {
	const struct dscope *up;
	const sc_resource *res;
} dscope;

/* A reference being followed: (target, instance) seen again below it is a loop. */
typedef struct rframe {
	const struct rframe *up;
	const sc_node *node;
	const json_t *inst;
} rframe;

typedef struct vctx {
	rein_schema_errors *errs; /* NULL: do not collect */
	int depth;
	long long steps; /* evaluations left before we give up */
	const rframe *frames;
} vctx;

static bool ev_init(evalset *e, size_t n)
{
	e->n = n;
	if (n <= EV_INLINE * 64) {
		e->bits = e->inl;
		memset(e->inl, 0, sizeof e->inl);
		return true;
	}
	e->bits = rein_calloc((n + 63) / 64, sizeof *e->bits);
	if (e->bits == NULL) {
		e->bits = e->inl;
		e->n = 0;
		return false;
	}
	return true;
}

static void ev_free(evalset *e)
{
	if (e->bits != e->inl)
		rein_free(e->bits);
	e->bits = NULL;
}

static void ev_mark(evalset *e, size_t i)
{
	if (e && i < e->n)
		e->bits[i / 64] |= (uint64_t)1 << (i % 64);
}

static bool ev_test(const evalset *e, size_t i)
{
	return i < e->n && (e->bits[i / 64] >> (i % 64)) & 1;
}

static void ev_merge(evalset *dst, const evalset *src)
{
	if (dst == NULL || dst->n != src->n)
		return;
	for (size_t i = 0; i < (dst->n + 63) / 64; i++)
		dst->bits[i] |= src->bits[i];
}

/* ---- errors ----------------------------------------------------------- */

static void report(vctx *c, const sc_path *ip, const char *kw, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void report(vctx *c, const sc_path *ip, const char *kw, const char *fmt, ...)
{
	if (c->errs == NULL)
		return;
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	rein_schema_error e = {
		.pointer = schema_path_render(ip),
		.keyword = rein_strdup(kw),
		.message = rein_strdup(msg),
	};
	rein_schema_error *nv = NULL;
	if (e.pointer && e.keyword && e.message)
		nv = rein_realloc(c->errs->v, (c->errs->n + 1) * sizeof *nv);
	if (nv == NULL) {
		rein_free(e.pointer);
		rein_free(e.keyword);
		rein_free(e.message);
		return; /* the result is still "invalid"; only the detail is lost */
	}
	c->errs->v = nv;
	c->errs->v[c->errs->n++] = e;
}

int rein_schema_check(const rein_schema *s, const json_t *instance, rein_err *err,
		      const char *what, ...)
{
	int rc = REIN_OK;
	rein_schema_errors errs = {0};
	rein_buf b = {0};
	char *head = NULL;
	if (s == NULL || rein_schema_validate(s, instance, err ? &errs : NULL))
		goto out;
	rc = REIN_ESCHEMA;
	if (err == NULL)
		goto out;
	va_list ap;
	va_start(ap, what);
	int n = vsnprintf(NULL, 0, what, ap);
	va_end(ap);
	int brc = REIN_ENOMEM;
	if (n >= 0 && (head = rein_malloc((size_t)n + 1)) != NULL) {
		va_start(ap, what);
		vsnprintf(head, (size_t)n + 1, what, ap);
		va_end(ap);
		brc = rein_buf_puts(&b, head);
	}
	for (size_t i = 0; i < errs.n && brc == REIN_OK; i++)
		/* the root's pointer is "": said as no pointer, not as ": : " */
		brc = rein_buf_printf(&b, "%s%s%s%s (%s)", i ? "\n" : ": ", errs.v[i].pointer,
				      errs.v[i].pointer[0] ? ": " : "", errs.v[i].message,
				      errs.v[i].keyword);
	if (brc == REIN_OK && errs.n == 0)
		brc = rein_buf_puts(&b, ": does not match");
	if (brc != REIN_OK) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	rein_err_set_schema(err, &errs, REIN_ESCHEMA, "%s", b.p);
out:
	rein_free(head);
	rein_buf_free(&b);
	rein_schema_errors_free(&errs);
	return rc;
}

char *rein_schema_errors_format(const rein_schema_errors *errs)
{
	rein_buf b = {0};
	int rc = rein_buf_append(&b, "", 0);
	for (size_t i = 0; errs && i < errs->n && rc == REIN_OK; i++)
		rc = rein_buf_printf(&b, "%s: %s (%s)\n", errs->v[i].pointer, errs->v[i].message,
				     errs->v[i].keyword);
	if (rc != REIN_OK) {
		rein_buf_free(&b);
		return NULL;
	}
	return b.p;
}

/* ---- values ----------------------------------------------------------- */

static bool is_integral(const json_t *v)
{
	if (json_is_integer(v))
		return true;
	if (!json_is_real(v))
		return false;
	double d = json_real_value(v);
	return isfinite(d) && floor(d) == d;
}

static const char *type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "object";
	case JSON_ARRAY: return "array";
	case JSON_STRING: return "string";
	case JSON_INTEGER: return "integer";
	case JSON_REAL: return is_integral(v) ? "integer" : "number";
	case JSON_TRUE:
	case JSON_FALSE: return "boolean";
	case JSON_NULL: return "null";
	}
	return "unknown";
}

static unsigned type_bits(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return SC_T_OBJECT;
	case JSON_ARRAY: return SC_T_ARRAY;
	case JSON_STRING: return SC_T_STRING;
	case JSON_INTEGER: return SC_T_INTEGER | SC_T_NUMBER;
	case JSON_REAL: return SC_T_NUMBER | (is_integral(v) ? SC_T_INTEGER : 0);
	case JSON_TRUE:
	case JSON_FALSE: return SC_T_BOOLEAN;
	case JSON_NULL: return SC_T_NULL;
	}
	return 0;
}

static long double num_ld(const json_t *v)
{
	return json_is_integer(v) ? (long double)json_integer_value(v)
				  : (long double)json_real_value(v);
}

/* Compares two JSON numbers by value: <0, 0, >0. */
static int num_cmp(const json_t *a, const json_t *b)
{
	if (json_is_integer(a) && json_is_integer(b)) {
		json_int_t x = json_integer_value(a), y = json_integer_value(b);
		return x < y ? -1 : x > y;
	}
	long double x = num_ld(a), y = num_ld(b);
	return x < y ? -1 : x > y;
}

static void num_str(const json_t *v, char out[40])
{
	if (json_is_integer(v))
		snprintf(out, 40, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	else
		snprintf(out, 40, "%.17g", json_real_value(v));
}

bool schema_json_equal(const json_t *a, const json_t *b)
{
	if (json_is_number(a) && json_is_number(b))
		return num_cmp(a, b) == 0;
	if (json_typeof(a) != json_typeof(b))
		return false;
	switch (json_typeof(a)) {
	case JSON_STRING:
		return json_string_length(a) == json_string_length(b) &&
		       memcmp(json_string_value(a), json_string_value(b), json_string_length(a)) == 0;
	case JSON_ARRAY: {
		size_t n = json_array_size(a);
		if (n != json_array_size(b))
			return false;
		for (size_t i = 0; i < n; i++)
			if (!schema_json_equal(json_array_get(a, i), json_array_get(b, i)))
				return false;
		return true;
	}
	case JSON_OBJECT: {
		if (json_object_size(a) != json_object_size(b))
			return false;
		const char *k;
		size_t kl;
		json_t *v;
		json_object_keylen_foreach((json_t *)a, k, kl, v) {
			const json_t *w = json_object_getn(b, k, kl);
			if (w == NULL || !schema_json_equal(v, w))
				return false;
		}
		return true;
	}
	default:
		return true;
	}
}

static bool multiple_of(const json_t *x, const json_t *m)
{
	if (json_is_integer(x) && json_is_integer(m))
		return json_integer_value(x) % json_integer_value(m) == 0;
	/* double on purpose: a quotient beyond the double range is "not a multiple" */
	double q = (double)num_ld(x) / (double)num_ld(m);
	if (!isfinite(q))
		return false;
	double r = fabs(q - round(q));
	double tol = 1e-9 * (fabs(q) > 1 ? fabs(q) : 1);
	return r <= tol;
}

/* ---- the evaluator ---------------------------------------------------- */

static bool vnode(vctx *c, const sc_node *n, const json_t *inst, const sc_path *ip,
		  const dscope *dyn, evalset *out, const char *kw);
static bool vref(vctx *c, const sc_node *target, const json_t *inst, const sc_path *ip,
		 const dscope *dyn, evalset *ev, const char *kw);

/* Runs n with error collection off. */
static bool vquiet(vctx *c, const sc_node *n, const json_t *inst, const sc_path *ip,
		   const dscope *dyn, evalset *out)
{
	rein_schema_errors *saved = c->errs;
	c->errs = NULL;
	bool ok = vnode(c, n, inst, ip, dyn, out, NULL);
	c->errs = saved;
	return ok;
}

/* Like vquiet, but collects what n evaluated into dst only when n passes. */
static bool vbranch(vctx *c, const sc_node *n, const json_t *inst, const sc_path *ip,
		    const dscope *dyn, evalset *dst)
{
	if (dst == NULL)
		return vquiet(c, n, inst, ip, dyn, NULL);
	evalset t;
	if (!ev_init(&t, dst->n))
		return false;
	bool ok = vquiet(c, n, inst, ip, dyn, &t);
	if (ok)
		ev_merge(dst, &t);
	ev_free(&t);
	return ok;
}

/*
 * Follows $ref / $dynamicRef. Meeting the same target at the same instance
 * (the same json_t, so no progress was made) means the schema recurses
 * forever; that evaluation fails instead of overflowing the stack.
 */
static bool vref(vctx *c, const sc_node *target, const json_t *inst, const sc_path *ip,
		 const dscope *dyn, evalset *ev, const char *kw)
{
	for (const rframe *f = c->frames; f; f = f->up) {
		if (f->node == target && f->inst == inst) {
			report(c, ip, kw, "infinite recursion: the reference loops without progress");
			return false;
		}
	}
	rframe fr = {c->frames, target, inst};
	c->frames = &fr;
	bool ok = vnode(c, target, inst, ip, dyn, ev, kw);
	c->frames = fr.up;
	return ok;
}

static const sc_node *dyn_target(const sc_node *n, const dscope *dyn)
{
	if (n->dyn_name == NULL)
		return n->dynref;
	const sc_node *best = NULL;
	for (const dscope *d = dyn; d; d = d->up) {
		const sc_resource *r = d->res;
		for (size_t i = 0; r && i < r->nanchors; i++) {
			const sc_anchor *a = &r->anchors[i];
			if (a->dynamic && a->node && strcmp(a->name, n->dyn_name) == 0) {
				best = a->node; /* keep going: the outermost wins */
				break;
			}
		}
	}
	return best ? best : n->dynref;
}

static const sc_prop *prop_find(const sc_node *n, const char *k, size_t kl)
{
	size_t lo = 0, hi = n->nprops;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		const sc_prop *p = &n->props[mid];
		size_t m = p->klen < kl ? p->klen : kl;
		int cmp = memcmp(p->key, k, m);
		if (cmp == 0)
			cmp = p->klen < kl ? -1 : p->klen > kl;
		if (cmp == 0)
			return p;
		if (cmp < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

#define FAIL()                                                                                    \
	do {                                                                                      \
		ok = false;                                                                       \
		if (c->errs == NULL)                                                              \
			goto done;                                                                \
	} while (0)

static bool v_validation(vctx *c, const sc_node *n, const json_t *inst, const sc_path *ip)
{
	bool ok = true;
	char a[40], b[40];
	if (n->types && !(n->types & type_bits(inst))) {
		char want[128] = "";
		static const char *const names[] = {"null", "boolean", "object", "array",
						    "number", "string", "integer"};
		int cnt = 0;
		for (int i = 0; i < 7; i++) {
			if (n->types & (1u << i)) {
				size_t l = strlen(want);
				snprintf(want + l, sizeof want - l, "%s%s", cnt++ ? ", " : "", names[i]);
			}
		}
		if (cnt > 1)
			report(c, ip, "type", "expected one of [%s], got %s", want, type_name(inst));
		else
			report(c, ip, "type", "expected %s, got %s", want, type_name(inst));
		FAIL();
	}
	if (n->konst && !schema_json_equal(n->konst, inst)) {
		report(c, ip, "const", "value does not equal the constant");
		FAIL();
	}
	if (n->enm) {
		bool found = false;
		for (size_t i = 0; i < json_array_size(n->enm) && !found; i++)
			found = schema_json_equal(json_array_get(n->enm, i), inst);
		if (!found) {
			report(c, ip, "enum", "value is not one of the enumerated values");
			FAIL();
		}
	}
	if (json_is_number(inst)) {
		if (n->minimum && num_cmp(inst, n->minimum) < 0) {
			num_str(inst, a), num_str(n->minimum, b);
			report(c, ip, "minimum", "%s is less than the minimum %s", a, b);
			FAIL();
		}
		if (n->maximum && num_cmp(inst, n->maximum) > 0) {
			num_str(inst, a), num_str(n->maximum, b);
			report(c, ip, "maximum", "%s is greater than the maximum %s", a, b);
			FAIL();
		}
		if (n->exmin && num_cmp(inst, n->exmin) <= 0) {
			num_str(inst, a), num_str(n->exmin, b);
			report(c, ip, "exclusiveMinimum", "%s is not greater than %s", a, b);
			FAIL();
		}
		if (n->exmax && num_cmp(inst, n->exmax) >= 0) {
			num_str(inst, a), num_str(n->exmax, b);
			report(c, ip, "exclusiveMaximum", "%s is not less than %s", a, b);
			FAIL();
		}
		if (n->multiple && !multiple_of(inst, n->multiple)) {
			num_str(inst, a), num_str(n->multiple, b);
			report(c, ip, "multipleOf", "%s is not a multiple of %s", a, b);
			FAIL();
		}
	}
	if (json_is_string(inst) && (n->min_len >= 0 || n->max_len >= 0 || n->pattern)) {
		const char *sv = json_string_value(inst);
		size_t sl = json_string_length(inst);
		size_t len = schema_utf8_len(sv, sl);
		if (n->min_len >= 0 && len < (size_t)n->min_len) {
			report(c, ip, "minLength", "string is shorter than %lld characters", n->min_len);
			FAIL();
		}
		if (n->max_len >= 0 && len > (size_t)n->max_len) {
			report(c, ip, "maxLength", "string is longer than %lld characters", n->max_len);
			FAIL();
		}
		if (n->pattern && !schema_regex_match(n->pattern, sv, sl)) {
			report(c, ip, "pattern", "string does not match the pattern \"%s\"",
			       n->pattern->src);
			FAIL();
		}
	}
	if (json_is_array(inst)) {
		size_t sz = json_array_size(inst);
		if (n->min_items >= 0 && sz < (size_t)n->min_items) {
			report(c, ip, "minItems", "array has fewer than %lld items", n->min_items);
			FAIL();
		}
		if (n->max_items >= 0 && sz > (size_t)n->max_items) {
			report(c, ip, "maxItems", "array has more than %lld items", n->max_items);
			FAIL();
		}
		if (n->unique) {
			for (size_t i = 0; i < sz; i++) {
				for (size_t j = i + 1; j < sz; j++) {
					if (schema_json_equal(json_array_get(inst, i),
							      json_array_get(inst, j))) {
						report(c, ip, "uniqueItems",
						       "items %zu and %zu are equal", i, j);
						FAIL();
						goto uniq_done;
					}
				}
			}
uniq_done:;
		}
	}
	if (json_is_object(inst)) {
		size_t sz = json_object_size(inst);
		if (n->min_props >= 0 && sz < (size_t)n->min_props) {
			report(c, ip, "minProperties", "object has fewer than %lld properties",
			       n->min_props);
			FAIL();
		}
		if (n->max_props >= 0 && sz > (size_t)n->max_props) {
			report(c, ip, "maxProperties", "object has more than %lld properties",
			       n->max_props);
			FAIL();
		}
		if (n->required) {
			size_t i;
			json_t *e;
			json_array_foreach(n->required, i, e) {
				if (!json_object_getn(inst, json_string_value(e), json_string_length(e))) {
					report(c, ip, "required", "missing required property \"%s\"",
					       json_string_value(e));
					FAIL();
				}
			}
		}
	}
done:
	return ok;
}

static bool v_object(vctx *c, const sc_node *n, const json_t *inst, const sc_path *ip,
		     const dscope *dyn, evalset *ev)
{
	bool ok = true;
	const char *k;
	size_t kl, idx = 0;
	json_t *v;
	for (size_t d = 0; d < n->ndeps; d++) {
		const sc_dep *dep = &n->deps[d];
		if (!json_object_getn(inst, dep->key, dep->klen))
			continue;
		if (dep->names) {
			size_t i;
			json_t *e;
			json_array_foreach(dep->names, i, e) {
				if (!json_object_getn(inst, json_string_value(e), json_string_length(e))) {
					report(c, ip, n->res->draft == REIN_DRAFT_7 ? "dependencies"
										     : "dependentRequired",
					       "property \"%s\" requires property \"%s\"", dep->key,
					       json_string_value(e));
					FAIL();
				}
			}
		} else if (!vnode(c, dep->node, inst, ip, dyn, ev,
				  n->res->draft == REIN_DRAFT_7 ? "dependencies" : "dependentSchemas")) {
			FAIL();
		}
	}
	if (n->nprops == 0 && n->npatprops == 0 && !n->addprops && !n->propnames)
		goto done;
	json_object_keylen_foreach((json_t *)inst, k, kl, v) {
		sc_path cp = {ip, k, kl, 0};
		bool matched = false;
		const sc_prop *p = n->nprops ? prop_find(n, k, kl) : NULL;
		if (p) {
			matched = true;
			ev_mark(ev, idx);
			if (!vnode(c, p->node, v, &cp, dyn, NULL, "properties"))
				FAIL();
		}
		for (size_t i = 0; i < n->npatprops; i++) {
			if (!schema_regex_match(&n->patprops[i].re, k, kl))
				continue;
			matched = true;
			ev_mark(ev, idx);
			if (!vnode(c, n->patprops[i].node, v, &cp, dyn, NULL, "patternProperties"))
				FAIL();
		}
		if (!matched && n->addprops) {
			ev_mark(ev, idx);
			if (!vnode(c, n->addprops, v, &cp, dyn, NULL, "additionalProperties"))
				FAIL();
		}
		if (n->propnames) {
			json_t *name = json_stringn(k, kl);
			if (name == NULL) {
				report(c, &cp, "propertyNames", "out of memory");
				FAIL();
			} else {
				bool pn = vquiet(c, n->propnames, name, &cp, dyn, NULL);
				json_decref(name);
				if (!pn) {
					report(c, &cp, "propertyNames", "property name \"%.*s\" is invalid",
					       (int)kl, k);
					FAIL();
				}
			}
		}
		idx++;
	}
done:
	return ok;
}

static bool v_array(vctx *c, const sc_node *n, const json_t *inst, const sc_path *ip,
		    const dscope *dyn, evalset *ev)
{
	bool ok = true;
	size_t sz = json_array_size(inst);
	for (size_t i = 0; i < sz && (i < n->nprefix || n->items); i++) {
		sc_path cp = {ip, NULL, 0, i};
		const sc_node *sub = i < n->nprefix ? n->prefix[i] : n->items;
		const char *kw = i < n->nprefix ? (n->res->draft == REIN_DRAFT_7 ? "items" : "prefixItems")
						: n->items_kw;
		ev_mark(ev, i);
		if (!vnode(c, sub, json_array_get(inst, i), &cp, dyn, NULL, kw))
			FAIL();
	}
	if (n->contains) {
		long long min = n->min_contains >= 0 ? n->min_contains : 1;
		long long max = n->max_contains;
		long long cnt = 0;
		for (size_t i = 0; i < sz; i++) {
			sc_path cp = {ip, NULL, 0, i};
			if (vquiet(c, n->contains, json_array_get(inst, i), &cp, dyn, NULL)) {
				cnt++;
				ev_mark(ev, i);
				if (!ev && max < 0 && cnt >= min)
					break;
			}
		}
		if (cnt < min) {
			if (n->min_contains < 0)
				report(c, ip, "contains", "array does not contain a matching item");
			else
				report(c, ip, "minContains",
				       "array contains %lld matching items, expected at least %lld", cnt,
				       min);
			FAIL();
		}
		if (max >= 0 && cnt > max) {
			report(c, ip, "maxContains",
			       "array contains %lld matching items, expected at most %lld", cnt, max);
			FAIL();
		}
	}
done:
	return ok;
}

static bool v_unevaluated(vctx *c, const sc_node *n, const json_t *inst, const sc_path *ip,
			  const dscope *dyn, evalset *ev)
{
	bool ok = true;
	if (n->uneval_props && json_is_object(inst)) {
		const char *k;
		size_t kl, idx = 0;
		json_t *v;
		json_object_keylen_foreach((json_t *)inst, k, kl, v) {
			if (!ev_test(ev, idx)) {
				sc_path cp = {ip, k, kl, 0};
				if (!vnode(c, n->uneval_props, v, &cp, dyn, NULL, "unevaluatedProperties"))
					FAIL();
				ev_mark(ev, idx);
			}
			idx++;
		}
	}
	if (n->uneval_items && json_is_array(inst)) {
		for (size_t i = 0; i < json_array_size(inst); i++) {
			if (ev_test(ev, i))
				continue;
			sc_path cp = {ip, NULL, 0, i};
			if (!vnode(c, n->uneval_items, json_array_get(inst, i), &cp, dyn, NULL,
				   "unevaluatedItems"))
				FAIL();
			ev_mark(ev, i);
		}
	}
done:
	return ok;
}

static bool v_false(vctx *c, const sc_path *ip, const char *kw)
{
	if (kw == NULL)
		report(c, ip, "false", "no value is allowed here (the schema is false)");
	else if (ip && ip->key)
		report(c, ip, kw, "property \"%.*s\" is not allowed", (int)ip->klen, ip->key);
	else if (ip)
		report(c, ip, kw, "item %zu is not allowed", ip->idx);
	else
		report(c, ip, kw, "no value is allowed here (the schema is false)");
	return false;
}

static bool vnode(vctx *c, const sc_node *n, const json_t *inst, const sc_path *ip,
		  const dscope *dyn, evalset *out, const char *kw)
{
	if (n->boolean == 1)
		return true;
	if (n->boolean == 0)
		return v_false(c, ip, kw);
	if (c->depth >= MAX_DEPTH) {
		report(c, ip, kw ? kw : "$ref", "schema evaluation too deep (recursive schema?)");
		return false;
	}
	if (--c->steps < 0) {
		if (c->steps == -1)
			report(c, ip, kw ? kw : "$ref", "evaluation budget exceeded");
		return false;
	}
	bool ok = true;
	dscope here;
	if (dyn == NULL || dyn->res != n->res) {
		here.up = dyn;
		here.res = n->res;
		dyn = &here;
	}
	evalset own, *ev = out;
	bool owned = false;
	if ((n->uneval_props && json_is_object(inst)) || (n->uneval_items && json_is_array(inst))) {
		size_t m = json_is_object(inst) ? json_object_size(inst) : json_array_size(inst);
		if (!ev_init(&own, m)) {
			report(c, ip, n->uneval_props ? "unevaluatedProperties" : "unevaluatedItems",
			       "out of memory");
			return false;
		}
		ev = &own;
		owned = true;
	}
	c->depth++;

	if (!v_validation(c, n, inst, ip))
		FAIL();
	if (n->ref && !vref(c, n->ref, inst, ip, dyn, ev, "$ref"))
		FAIL();
	if (n->dynref && !vref(c, dyn_target(n, dyn), inst, ip, dyn, ev, "$dynamicRef"))
		FAIL();
	for (size_t i = 0; i < n->nallof; i++)
		if (!vnode(c, n->allof[i], inst, ip, dyn, ev, "allOf"))
			FAIL();
	if (n->nanyof) {
		bool any = false;
		for (size_t i = 0; i < n->nanyof && (!any || ev); i++)
			if (vbranch(c, n->anyof[i], inst, ip, dyn, ev))
				any = true;
		if (!any) {
			report(c, ip, "anyOf", "value does not match any of the %zu schemas in anyOf",
			       n->nanyof);
			FAIL();
		}
	}
	if (n->noneof) {
		size_t cnt = 0;
		for (size_t i = 0; i < n->noneof && (cnt < 2 || c->errs); i++)
			if (vbranch(c, n->oneof[i], inst, ip, dyn, ev))
				cnt++;
		if (cnt != 1) {
			if (cnt == 0)
				report(c, ip, "oneOf",
				       "value does not match any of the %zu schemas in oneOf", n->noneof);
			else
				report(c, ip, "oneOf",
				       "value matches %zu schemas in oneOf, expected exactly one", cnt);
			FAIL();
		}
	}
	if (n->not_ && vquiet(c, n->not_, inst, ip, dyn, NULL)) {
		report(c, ip, "not", "value must not match the schema in \"not\"");
		FAIL();
	}
	if (n->if_) {
		if (vbranch(c, n->if_, inst, ip, dyn, ev)) {
			if (n->then_ && !vnode(c, n->then_, inst, ip, dyn, ev, "then"))
				FAIL();
		} else if (n->else_ && !vnode(c, n->else_, inst, ip, dyn, ev, "else")) {
			FAIL();
		}
	}
	if (json_is_object(inst) && !v_object(c, n, inst, ip, dyn, ev))
		FAIL();
	if (json_is_array(inst) && !v_array(c, n, inst, ip, dyn, ev))
		FAIL();
	if (owned && !v_unevaluated(c, n, inst, ip, dyn, ev))
		FAIL();
done:
	c->depth--;
	if (owned) {
		if (ok)
			ev_merge(out, &own);
		ev_free(&own);
	}
	return ok;
}

bool rein_schema_validate(const rein_schema *s, const json_t *instance, rein_schema_errors *errs)
{
	vctx c = {.errs = errs, .steps = MAX_STEPS};
	if (s == NULL || s->root == NULL || instance == NULL)
		return false;
	return vnode(&c, s->root, instance, NULL, NULL, NULL, NULL);
}
