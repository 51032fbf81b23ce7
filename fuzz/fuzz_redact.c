/*
 * libFuzzer target for the redaction detectors (src/base/redact.c). The input
 * bytes are redacted with every class and a declared secret, twice with the
 * same redactor (the second pass must give the same text: placeholders are
 * stable, and no placeholder is itself redacted), and put back with the values
 * found, which must give the input again whenever it held no '[' (placeholder
 * text of its own). Nothing may crash, read out of bounds or leak.
 */
#include <stdlib.h>
#include <string.h>

#include "base.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	rein_redactor *r = NULL;
	json_t *found = json_object(), *in = NULL, *back = NULL;
	char *out = NULL, *out2 = NULL, *text = NULL;
	unsigned all = REIN_REDACT_EMAIL | REIN_REDACT_PHONE | REIN_REDACT_CARD |
		       REIN_REDACT_IBAN | REIN_REDACT_TOKEN | REIN_REDACT_SECRET;
	if (found == NULL || rein_redactor_new(all, &r) != REIN_OK ||
	    rein_redactor_secret(r, "hunter2-pass") != REIN_OK)
		goto out;
	if ((text = malloc(size + 1)) == NULL)
		goto out;
	memcpy(text, data, size);
	text[size] = '\0';
	size_t n = strlen(text); /* JSON strings here hold no NUL: stop at one */
	if (rein_redact_text(r, text, n, &out, found) != REIN_OK)
		goto out;
	if (out == NULL)
		goto out; /* nothing matched */
	if (rein_redact_text(r, text, n, &out2, NULL) != REIN_OK)
		goto out;
	if (out2 == NULL || strcmp(out, out2) != 0)
		abort(); /* the same text, the same placeholders */
	if (memchr(text, '[', n) == NULL && (in = json_stringn(out, strlen(out))) != NULL &&
	    (back = rein_unredact_json(in, found)) != NULL) {
		if (!json_is_string(back) || json_string_length(back) != n ||
		    memcmp(json_string_value(back), text, n) != 0)
			abort(); /* put back, the input again */
	}
out:
	free(text);
	rein_free(out);
	rein_free(out2);
	json_decref(in);
	json_decref(back);
	json_decref(found);
	rein_redactor_free(r);
	return 0;
}
