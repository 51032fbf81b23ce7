/*
 * libFuzzer target for the schema layer: the input is parsed as JSON,
 * compiled as a schema (no base_dir, no maps: only in-document and built-in
 * references), and the document is validated against itself, with and
 * without error collection. Must neither crash nor leak.
 */
#include <stddef.h>
#include <stdint.h>

#include "schema.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	rein_init();
	json_error_t je;
	json_t *doc = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
	if (doc == NULL)
		return 0;
	rein_schema *s = NULL;
	rein_err err = {0};
	if (rein_schema_compile(doc, NULL, &s, &err) == REIN_OK) {
		rein_schema_errors errs = {0};
		bool a = rein_schema_validate(s, doc, &errs);
		bool b = rein_schema_validate(s, doc, NULL);
		char *text = rein_schema_errors_format(&errs);
		if (a != b || (!a && errs.n == 0))
			__builtin_trap();
		rein_free(text);
		rein_schema_errors_free(&errs);
		rein_schema_free(s);
	}
	json_decref(doc);
	return 0;
}
