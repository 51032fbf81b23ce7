/* JSON helpers over jansson: canonical dumps and parse errors with positions. */
#include "base.h"

#include <string.h>

extern _Thread_local bool rein_json_alloc_failed; /* mem.c */

char *rein_json_dump(const json_t *j)
{
	rein_json_alloc_failed = false;
	char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
	if (s && rein_json_alloc_failed) { /* possibly truncated: see mem.c */
		rein_free(s);
		s = NULL;
	}
	return s;
}

json_t *rein_json_parse(const char *text, size_t len, rein_err *err)
{
	json_error_t je;
	json_t *j = json_loadb(text, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
	if (j == NULL)
		rein_err_set(err, REIN_EINVAL, "line %d col %d: %s", je.line, je.column, je.text);
	return j;
}
