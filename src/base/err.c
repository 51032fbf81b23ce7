/*
 * Error codes, their texts, and the first-error-wins error object with its
 * attachments (located diagnostics, schema errors).
 */
#include "base.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

const char *rein_strerror(int code)
{
	switch (code) {
	case REIN_OK: return "ok";
	case REIN_ENOMEM: return "out of memory";
	case REIN_EINVAL: return "invalid argument";
	case REIN_EIO: return "i/o error";
	case REIN_ENOTFOUND: return "not found";
	case REIN_ESPEC: return "invalid workflow spec";
	case REIN_ESCHEMA: return "schema violation";
	case REIN_ESCRIPT: return "script error";
	case REIN_ECONFLICT: return "conflict";
	case REIN_ECORRUPT: return "data does not verify";
	case REIN_ELIMIT: return "limit exceeded";
	case REIN_EFAULT: return "injected fault";
	}
	return "unknown error";
}

void rein_diags_free(rein_diags *d)
{
	if (d == NULL)
		return;
	for (size_t i = 0; i < d->n; i++) {
		rein_free(d->v[i].file);
		rein_free(d->v[i].msg);
	}
	rein_free(d->v);
	d->v = NULL;
	d->n = 0;
}

int rein_diags_add(rein_diags *d, const char *file, int line, int col, const char *fmt, ...)
{
	assert(d != NULL && file != NULL);
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	rein_diag *v = rein_realloc(d->v, (d->n + 1) * sizeof *v);
	if (v == NULL)
		return REIN_ENOMEM;
	d->v = v;
	rein_diag *x = &d->v[d->n];
	x->file = rein_strdup(file);
	x->msg = rein_strdup(msg);
	x->line = line;
	x->col = col;
	if (x->file == NULL || x->msg == NULL) {
		rein_free(x->file);
		rein_free(x->msg);
		return REIN_ENOMEM;
	}
	d->n++;
	return REIN_OK;
}

void rein_diags_print(const rein_diags *d, void *file)
{
	for (size_t i = 0; d && i < d->n; i++)
		fprintf(file, "%s:%d:%d: %s\n", d->v[i].file, d->v[i].line, d->v[i].col, d->v[i].msg);
}

void rein_schema_errors_free(rein_schema_errors *errs)
{
	if (errs == NULL)
		return;
	for (size_t i = 0; i < errs->n; i++) {
		rein_free(errs->v[i].pointer);
		rein_free(errs->v[i].keyword);
		rein_free(errs->v[i].message);
	}
	rein_free(errs->v);
	errs->v = NULL;
	errs->n = 0;
}

void rein_err_clear(rein_err *e)
{
	if (e) {
		rein_diags_free(&e->diags);
		rein_schema_errors_free(&e->schema);
		e->code = 0;
		e->msg[0] = '\0';
	}
}

/* Records code and message when e holds no error; true when it did. */
static bool err_vset(rein_err *e, int code, const char *fmt, va_list ap)
{
	if (e == NULL || e->code != 0)
		return false;
	e->code = code;
	int n = vsnprintf(e->msg, sizeof e->msg, fmt, ap);
	if (n >= (int)sizeof e->msg) {
		/* truncated: do not leave half a UTF-8 sequence (JSON would refuse it) */
		size_t len = sizeof e->msg - 1;
		size_t cut = len;
		while (cut > 0 && ((unsigned char)e->msg[cut - 1] & 0xC0) == 0x80)
			cut--;
		if (cut > 0 && ((unsigned char)e->msg[cut - 1] & 0x80)) {
			unsigned char lead = (unsigned char)e->msg[cut - 1];
			size_t want = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
			if (len - (cut - 1) < want)
				e->msg[cut - 1] = '\0';
		}
	}
	return true;
}

int rein_err_set(rein_err *e, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	err_vset(e, code, fmt, ap);
	va_end(ap);
	return code;
}

int rein_err_set_diags(rein_err *e, rein_diags *d, int code, const char *fmt, ...)
{
	assert(d != NULL);
	va_list ap;
	va_start(ap, fmt);
	bool set = err_vset(e, code, fmt, ap);
	va_end(ap);
	if (set) {
		rein_diags_free(&e->diags);
		e->diags = *d;
		*d = (rein_diags){0};
	}
	rein_diags_free(d);
	return code;
}

int rein_err_set_schema(rein_err *e, rein_schema_errors *errs, int code, const char *fmt, ...)
{
	assert(errs != NULL);
	va_list ap;
	va_start(ap, fmt);
	bool set = err_vset(e, code, fmt, ap);
	va_end(ap);
	if (set) {
		rein_schema_errors_free(&e->schema);
		e->schema = *errs;
		*errs = (rein_schema_errors){0};
	}
	rein_schema_errors_free(errs);
	return code;
}

void rein_err_print(const rein_err *e, const char *prefix, void *file)
{
	assert(e != NULL && file != NULL);
	if (e->diags.n > 0)
		rein_diags_print(&e->diags, file);
	else if (prefix)
		fprintf(file, "%s: %s\n", prefix, e->msg);
	else
		fprintf(file, "%s\n", e->msg);
}

static const char *const status_names[] = {"running",   "waiting",   "succeeded",   "failed",
					   "escalated", "cancelled", "needs_review"};

const char *rein_status_name(rein_status s)
{
	return (unsigned)s < sizeof status_names / sizeof *status_names ? status_names[s] : "unknown";
}

int rein_status_parse(const char *name)
{
	for (size_t i = 0; i < sizeof status_names / sizeof *status_names; i++)
		if (strcmp(name, status_names[i]) == 0)
			return (int)i;
	return -1;
}
