/*
 * What a code step's text can read, found once when the spec is loaded (the
 * engine joins the labels of these for the step's provenance label on every
 * step.completed, docs/policy.md "Provenance"; scanning the text there cost
 * a strstr pass and a name lookup per reference, per step, per run): every
 * `input`, every `steps.NAME` and `steps["NAME"]`; any other use of `steps`
 * (an index that is not a literal, steps passed around) reads every step. A
 * superset of what one evaluation reads (a name in a comment or a branch not
 * taken counts).
 */
#include "spec_int.h"

#include <assert.h>
#include <string.h>

static bool ident_char(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* Whether the word w of length n starts at p, as a whole name (not a field). */
static bool word_at(const char *src, const char *p, const char *w, size_t n)
{
	return strncmp(p, w, n) == 0 && !ident_char(p[n]) &&
	       (p == src || (!ident_char(p[-1]) && p[-1] != '.'));
}

/* Adds the step NAME (name[0..n)) to c's reads, once; names of no step (or
 * too long to be one) are none. false: out of memory. */
static bool add_step(const rein_spec *s, rein_step_code *c, const char *name, size_t n)
{
	char buf[256];
	if (n >= sizeof buf)
		return true;
	memcpy(buf, name, n);
	buf[n] = '\0';
	int i = rein_spec_step(s, buf);
	if (i < 0)
		return true;
	for (size_t j = 0; j < c->nreads; j++)
		if (c->reads[j] == i)
			return true;
	int *v = rein_realloc(c->reads, (c->nreads + 1) * sizeof *v);
	if (v == NULL)
		return false;
	v[c->nreads++] = i;
	c->reads = v;
	return true;
}

static bool scan(const rein_spec *s, rein_step_code *c)
{
	const char *src = c->src;
	for (const char *p = strstr(src, "input"); p; p = strstr(p + 5, "input"))
		if (word_at(src, p, "input", 5)) {
			c->reads_input = true;
			break; /* once is all */
		}
	for (const char *p = strstr(src, "steps"); p && !c->reads_all; p = strstr(p + 5, "steps")) {
		if (!word_at(src, p, "steps", 5))
			continue;
		const char *q = p + 5;
		while (*q == ' ' || *q == '\t')
			q++;
		const char *name = NULL, *end = NULL;
		if (*q == '.') {
			name = q + 1;
			for (end = name; ident_char(*end); end++)
				;
		} else if (q[0] == '[' && (q[1] == '"' || q[1] == '\'')) {
			name = q + 2;
			end = strchr(name, q[1]);
			if (end == NULL || end[1] != ']')
				end = NULL;
		}
		if (name && end && end > name) {
			if (!add_step(s, c, name, (size_t)(end - name)))
				return false;
		} else {
			c->reads_all = true;
		}
	}
	return true;
}

int spec_code_reads(rein_spec *s)
{
	assert(s != NULL);
	if (s->const_label == NULL && (s->const_label = rein_label_new(NULL, NULL, true)) == NULL)
		return REIN_ENOMEM;
	if (s->no_requester == NULL &&
	    (s->no_requester = json_pack("{s:n, s:[], s:n}", "user", "roles", "tenant")) == NULL)
		return REIN_ENOMEM;
	for (size_t i = 0; i < s->nsteps; i++) {
		rein_step *st = &s->steps[i];
		if (st->kind != REIN_STEP_CODE || st->u.code.src == NULL)
			continue;
		rein_free(st->u.code.reads);
		st->u.code.reads = NULL;
		st->u.code.nreads = 0;
		st->u.code.reads_input = st->u.code.reads_all = false;
		if (!scan(s, &st->u.code))
			return REIN_ENOMEM;
	}
	return REIN_OK;
}
