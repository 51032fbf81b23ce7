/* YAML → positioned node tree (libyaml events), and node → JSON. */
#include "yaml_tree.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#define MAX_DEPTH 200

void ynode_free(ynode *n)
{
	if (n == NULL)
		return;
	for (size_t i = 0; i < n->n; i++)
		ynode_free(n->kids[i]);
	rein_free(n->kids);
	rein_free(n->str);
	rein_free(n);
}

static int kid_add(ynode *p, ynode *k)
{
	if ((p->n & (p->n - 1)) == 0) { /* grow at powers of two */
		size_t cap = p->n ? p->n * 2 : 4;
		ynode **v = rein_realloc(p->kids, cap * sizeof *v);
		if (v == NULL)
			return REIN_ENOMEM;
		p->kids = v;
	}
	p->kids[p->n++] = k;
	return REIN_OK;
}

static ynode *node_new(int type, const yaml_mark_t *m)
{
	ynode *n = rein_calloc(1, sizeof *n);
	if (n) {
		n->type = type;
		n->line = (int)m->line + 1;
		n->col = (int)m->column + 1;
	}
	return n;
}

int ynode_parse(const char *text, size_t len, ynode **out, rein_err *err)
{
	yaml_parser_t p;
	yaml_event_t ev;
	ynode *stack[MAX_DEPTH + 1];
	int depth = 0, rc = REIN_OK;
	ynode *root = NULL;
	bool have_ev = false;

	if (!yaml_parser_initialize(&p))
		return rein_err_set(err, REIN_ENOMEM, "1:1: out of memory");
	yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
	for (;;) {
		if (!yaml_parser_parse(&p, &ev)) {
			const yaml_mark_t *m = p.problem ? &p.problem_mark : &p.context_mark;
			rc = rein_err_set(err, REIN_ESPEC, "%d:%d: YAML syntax error: %s%s%s",
					  (int)m->line + 1, (int)m->column + 1,
					  p.problem ? p.problem : "unknown",
					  p.context ? " " : "", p.context ? p.context : "");
			goto out;
		}
		have_ev = true;
		ynode *n = NULL;
		switch (ev.type) {
		case YAML_STREAM_END_EVENT:
			goto out;
		case YAML_DOCUMENT_START_EVENT:
			if (root != NULL) {
				rc = rein_err_set(err, REIN_ESPEC, "%d:%d: only one YAML document is allowed",
						  (int)ev.start_mark.line + 1, (int)ev.start_mark.column + 1);
				goto out;
			}
			break;
		case YAML_ALIAS_EVENT:
			rc = rein_err_set(err, REIN_ESPEC, "%d:%d: YAML aliases are not supported in specs",
					  (int)ev.start_mark.line + 1, (int)ev.start_mark.column + 1);
			goto out;
		case YAML_SCALAR_EVENT:
			n = node_new(YNODE_SCALAR, &ev.start_mark);
			if (n == NULL || (n->str = rein_strndup((char *)ev.data.scalar.value,
								ev.data.scalar.length)) == NULL) {
				ynode_free(n);
				rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
				goto out;
			}
			n->len = ev.data.scalar.length;
			n->plain = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
			n->block = ev.data.scalar.style == YAML_LITERAL_SCALAR_STYLE ||
				   ev.data.scalar.style == YAML_FOLDED_SCALAR_STYLE;
			if (ev.data.scalar.tag &&
			    strcmp((char *)ev.data.scalar.tag, YAML_STR_TAG) == 0)
				n->plain = false; /* !!str 123 is a string */
			break;
		case YAML_SEQUENCE_START_EVENT:
		case YAML_MAPPING_START_EVENT:
			if (depth >= MAX_DEPTH) {
				rc = rein_err_set(err, REIN_ESPEC, "%d:%d: nesting deeper than %d",
						  (int)ev.start_mark.line + 1, (int)ev.start_mark.column + 1,
						  MAX_DEPTH);
				goto out;
			}
			n = node_new(ev.type == YAML_SEQUENCE_START_EVENT ? YNODE_SEQ : YNODE_MAP,
				     &ev.start_mark);
			if (n == NULL) {
				rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
				goto out;
			}
			break;
		case YAML_SEQUENCE_END_EVENT:
		case YAML_MAPPING_END_EVENT:
			n = stack[--depth];
			if (n->type == YNODE_MAP) {
				/* duplicate keys are a mistake the user wants to hear about */
				for (size_t i = 0; i < n->n; i += 2)
					for (size_t j = i + 2; j < n->n; j += 2)
						if (n->kids[i]->type == YNODE_SCALAR &&
						    n->kids[j]->type == YNODE_SCALAR &&
						    strcmp(n->kids[i]->str, n->kids[j]->str) == 0) {
							rc = rein_err_set(err, REIN_ESPEC,
									  "%d:%d: duplicate key '%s' (first at line %d)",
									  n->kids[j]->line, n->kids[j]->col,
									  n->kids[j]->str, n->kids[i]->line);
							/* n is still owned by its parent or root */
							if (depth == 0 && root == NULL)
								root = n;
							goto out;
						}
			}
			if (depth == 0)
				root = n;
			n = NULL;
			break;
		default:
			break;
		}
		if (n != NULL) {
			if (depth > 0) {
				if (kid_add(stack[depth - 1], n) != REIN_OK) {
					ynode_free(n);
					rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
					goto out;
				}
			} else if (n->type == YNODE_SCALAR) {
				root = n;
			}
			if (n->type != YNODE_SCALAR)
				stack[depth++] = n;
		}
		yaml_event_delete(&ev);
		have_ev = false;
	}
out:
	if (have_ev)
		yaml_event_delete(&ev);
	yaml_parser_delete(&p);
	if (rc != REIN_OK) {
		/* nodes on the stack are owned by stack[0] (or by nothing if the
		 * error struck before the root closed) */
		if (depth > 0 && root != stack[0])
			ynode_free(stack[0]);
		ynode_free(root);
		return rc;
	}
	*out = root;
	return REIN_OK;
}

const ynode *ynode_get(const ynode *map, const char *key)
{
	if (map == NULL || map->type != YNODE_MAP)
		return NULL;
	for (size_t i = 0; i + 1 < map->n; i += 2)
		if (map->kids[i]->type == YNODE_SCALAR && strcmp(map->kids[i]->str, key) == 0)
			return map->kids[i + 1];
	return NULL;
}

static bool parse_int(const char *s, json_int_t *v)
{
	const char *p = s;
	int base = 10;
	if (*p == '+' || *p == '-')
		p++;
	if (p[0] == '0' && p[1] == 'x') {
		base = 16;
		p += 2;
	} else if (p[0] == '0' && p[1] == 'o') {
		base = 8;
		p += 2;
	}
	if (*p == '\0')
		return false;
	for (const char *q = p; *q; q++) {
		bool ok = base == 16 ? strchr("0123456789abcdefABCDEF", *q) != NULL
				     : (*q >= '0' && *q <= (base == 8 ? '7' : '9'));
		if (!ok)
			return false;
	}
	errno = 0;
	long long x = strtoll(p, NULL, base);
	if (errno != 0)
		return false;
	*v = s[0] == '-' ? -x : x;
	return true;
}

static bool parse_float(const char *s, double *v)
{
	/* YAML 1.2 core: [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )? */
	const char *p = s;
	if (*p == '+' || *p == '-')
		p++;
	bool digits = false;
	while (*p >= '0' && *p <= '9')
		p++, digits = true;
	if (*p == '.') {
		p++;
		while (*p >= '0' && *p <= '9')
			p++, digits = true;
	}
	if (!digits)
		return false;
	if (*p == 'e' || *p == 'E') {
		p++;
		if (*p == '+' || *p == '-')
			p++;
		if (!(*p >= '0' && *p <= '9'))
			return false;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (*p != '\0')
		return false;
	*v = strtod(s, NULL);
	return isfinite(*v);
}

json_t *ynode_scalar_json(const ynode *n)
{
	const char *s = n->str;
	if (!n->plain)
		return json_stringn(s, n->len);
	if (*s == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
	    strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0)
		return json_null();
	if (strcmp(s, "true") == 0 || strcmp(s, "True") == 0 || strcmp(s, "TRUE") == 0)
		return json_true();
	if (strcmp(s, "false") == 0 || strcmp(s, "False") == 0 || strcmp(s, "FALSE") == 0)
		return json_false();
	json_int_t i;
	if (parse_int(s, &i))
		return json_integer(i);
	double d;
	if (parse_float(s, &d))
		return json_real(d);
	return json_stringn(s, n->len);
}

json_t *ynode_to_json(const ynode *n, const ynode **bad, rein_err *err)
{
	json_t *j = NULL;
	switch (n->type) {
	case YNODE_SCALAR:
		j = ynode_scalar_json(n);
		if (j == NULL)
			rein_err_set(err, REIN_ENOMEM, "out of memory");
		return j;
	case YNODE_SEQ:
		if ((j = json_array()) == NULL)
			break;
		for (size_t i = 0; i < n->n; i++) {
			json_t *v = ynode_to_json(n->kids[i], bad, err);
			if (v == NULL || json_array_append_new(j, v) != 0) {
				json_decref(j);
				return NULL;
			}
		}
		return j;
	case YNODE_MAP:
		if ((j = json_object()) == NULL)
			break;
		for (size_t i = 0; i + 1 < n->n; i += 2) {
			const ynode *k = n->kids[i];
			if (k->type != YNODE_SCALAR) {
				*bad = k;
				rein_err_set(err, REIN_ESPEC, "a mapping key must be a scalar");
				json_decref(j);
				return NULL;
			}
			json_t *v = ynode_to_json(n->kids[i + 1], bad, err);
			if (v == NULL || json_object_setn_new(j, k->str, k->len, v) != 0) {
				json_decref(j);
				return NULL;
			}
		}
		return j;
	}
	rein_err_set(err, REIN_ENOMEM, "out of memory");
	*bad = n;
	return NULL;
}
