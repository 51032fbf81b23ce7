/*
 * Templates: strings with ${expr} inside a JSON value. A string that is one
 * whole "${expr}" takes the expression's value as is; otherwise each ${expr}
 * is replaced by its text form. Expressions may contain braces and quoted
 * strings, so the closing brace is found by counting nesting and skipping
 * Lua string literals, not by searching for the first '}'.
 */
#include "script_int.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

bool rein_script_has_template(const char *str) { return str && strstr(str, "${") != NULL; }

/* Given p just past "${", returns the matching '}' or NULL when unterminated. */
static const char *expr_end(const char *p)
{
	int depth = 0;
	for (; *p; p++) {
		switch (*p) {
		case '{':
			depth++;
			break;
		case '}':
			if (depth == 0)
				return p;
			depth--;
			break;
		case '\'':
		case '"': {
			char q = *p;
			for (p++; *p && *p != q; p++)
				if (*p == '\\' && p[1])
					p++;
			if (*p == '\0')
				return NULL;
			break;
		}
		case '[': { /* long string [[...]] or [==[...]==] */
			const char *q = p + 1;
			size_t level = 0;
			while (*q == '=')
				q++, level++;
			if (*q != '[')
				break;
			for (q++; *q; q++) {
				if (*q != ']')
					continue;
				size_t l = 0;
				while (q[1 + l] == '=')
					l++;
				if (l == level && q[1 + l] == ']') {
					q += 1 + l;
					break;
				}
			}
			if (*q == '\0')
				return NULL;
			p = q;
			break;
		}
		}
	}
	return NULL;
}

/* Appends the text form of v: strings raw, null "null", containers compact JSON. */
static int append_text(rein_buf *b, const json_t *v)
{
	char num[64];
	switch (json_typeof(v)) {
	case JSON_STRING:
		return rein_buf_append(b, json_string_value(v), json_string_length(v));
	case JSON_INTEGER:
		snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return rein_buf_puts(b, num);
	case JSON_REAL: {
		/* Like Lua's tostring: %.14g, and a float keeps a ".0". */
		snprintf(num, sizeof num, "%.14g", json_real_value(v));
		size_t len = strlen(num);
		if (strspn(num, "-0123456789") == len && len + 3 <= sizeof num)
			memcpy(num + len, ".0", 3);
		return rein_buf_puts(b, num);
	}
	case JSON_TRUE:
		return rein_buf_puts(b, "true");
	case JSON_FALSE:
		return rein_buf_puts(b, "false");
	case JSON_NULL:
		return rein_buf_puts(b, "null");
	default: {
		char *s = rein_json_dump(v);
		if (s == NULL)
			return REIN_ENOMEM;
		int rc = rein_buf_puts(b, s);
		rein_free(s);
		return rc;
	}
	}
}

/* Evaluates the expression [p, e) and names it in any error. */
static int eval_expr(rein_script *s, const char *p, const char *e, const rein_script_ctx *ctx,
		     bool check_only, json_t **out, rein_err *err)
{
	int rc = REIN_OK;
	size_t n = (size_t)(e - p);
	char *src = rein_strndup(p, n);
	rein_err local = {0};
	if (src == NULL) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	if (strspn(src, " \t\r\n") == n) {
		rc = rein_err_set(err, REIN_ESCRIPT, "empty expression in ${}");
		goto out;
	}
	if (check_only)
		rc = rein_script_check(s, src, REIN_SCRIPT_EXPR, &local);
	else
		rc = rein_script_eval(s, src, REIN_SCRIPT_EXPR, ctx, out, &local);
	if (rc != REIN_OK)
		rein_err_set(err, rc, "${%.*s%s}: %s", n > 60 ? 60 : (int)n, src,
			     n > 60 ? "..." : "", local.msg);
out:
	rein_free(src);
	return rc;
}

/* Expands one string; check_only compiles the expressions without running. */
static int expand_string(rein_script *s, const char *str, const rein_script_ctx *ctx,
			 bool check_only, json_t **out, rein_err *err)
{
	int rc = REIN_OK;
	rein_buf b = {0};
	json_t *v = NULL;
	const char *p = str;
	const char *open = strstr(p, "${");
	if (open == str) {
		const char *e = expr_end(str + 2);
		if (e && e[1] == '\0') {
			rc = eval_expr(s, str + 2, e, ctx, check_only, &v, err);
			goto out;
		}
	}
	while ((open = strstr(p, "${")) != NULL) {
		const char *e = expr_end(open + 2);
		if (e == NULL) {
			rc = rein_err_set(err, REIN_ESCRIPT, "unterminated ${ at offset %zu",
					  (size_t)(open - str));
			goto out;
		}
		if ((rc = rein_buf_append(&b, p, (size_t)(open - p))) != REIN_OK)
			goto oom;
		json_t *x = NULL;
		if ((rc = eval_expr(s, open + 2, e, ctx, check_only, &x, err)) != REIN_OK)
			goto out;
		if (x) {
			rc = append_text(&b, x);
			json_decref(x);
			if (rc != REIN_OK)
				goto oom;
		}
		p = e + 1;
	}
	if (check_only)
		goto out;
	if ((rc = rein_buf_puts(&b, p)) != REIN_OK)
		goto oom;
	/* the pieces are valid UTF-8 cut at ASCII delimiters: a failure is memory */
	v = json_stringn(b.p, b.len);
	if (v == NULL)
		goto oom;
	goto out;
oom:
	rc = rein_err_set(err, REIN_ENOMEM, "out of memory expanding template");
out:
	rein_buf_free(&b);
	if (rc == REIN_OK && !check_only)
		*out = v;
	else
		json_decref(v);
	return rc;
}

static int expand(rein_script *s, const json_t *t, const rein_script_ctx *ctx, json_t **out,
		  rein_err *err)
{
	int rc = REIN_OK;
	json_t *res = NULL;
	json_t *m = (json_t *)t; /* jansson's iteration API takes non-const */
	switch (json_typeof(t)) {
	case JSON_STRING:
		if (!rein_script_has_template(json_string_value(t))) {
			res = json_incref(m);
			break;
		}
		if ((rc = expand_string(s, json_string_value(t), ctx, false, &res, err)) != REIN_OK)
			goto out;
		break;
	case JSON_OBJECT:
		if ((res = json_object()) == NULL)
			goto oom;
		for (void *it = json_object_iter(m); it; it = json_object_iter_next(m, it)) {
			json_t *v = NULL;
			if ((rc = expand(s, json_object_iter_value(it), ctx, &v, err)) != REIN_OK)
				goto out;
			if (json_object_setn_new_nocheck(res, json_object_iter_key(it),
							 json_object_iter_key_len(it), v) != 0)
				goto oom;
		}
		break;
	case JSON_ARRAY:
		if ((res = json_array()) == NULL)
			goto oom;
		for (size_t i = 0; i < json_array_size(t); i++) {
			json_t *v = NULL;
			if ((rc = expand(s, json_array_get(t, i), ctx, &v, err)) != REIN_OK)
				goto out;
			if (json_array_append_new(res, v) != 0)
				goto oom;
		}
		break;
	default:
		res = json_incref(m);
		break;
	}
	goto out;
oom:
	rc = rein_err_set(err, REIN_ENOMEM, "out of memory expanding template");
out:
	if (rc == REIN_OK)
		*out = res;
	else
		json_decref(res);
	return rc;
}

int rein_script_template(rein_script *s, const json_t *tmpl, const rein_script_ctx *ctx,
			 json_t **result, rein_err *err)
{
	assert(s != NULL && tmpl != NULL && result != NULL);
	return expand(s, tmpl, ctx, result, err);
}

int rein_script_template_check(rein_script *s, const char *str, rein_err *err)
{
	assert(s != NULL && str != NULL);
	return expand_string(s, str, NULL, true, NULL, err);
}
