/* Error codes, their texts, and the first-error-wins error object. */
#include "base.h"

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

void rein_err_clear(rein_err *e)
{
	if (e) {
		e->code = 0;
		e->msg[0] = '\0';
	}
}

int rein_err_set(rein_err *e, int code, const char *fmt, ...)
{
	if (e == NULL || e->code != 0)
		return code;
	e->code = code;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof e->msg, fmt, ap);
	va_end(ap);
	return code;
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
