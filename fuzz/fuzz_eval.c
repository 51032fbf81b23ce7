/*
 * libFuzzer target for the eval-suite parser (src/eval/suite.c): the input
 * is a suite file. Whatever it holds must give either a suite or a located
 * error (REIN_ESPEC with at least one diagnostic, or a YAML message that
 * starts with the path), never a crash or a leak. A suite that parses has
 * at least one case, each named and repeated at least once.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "eval.h"
#include "script.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static rein_script *sb;
	if (sb == NULL) {
		rein_init();
		if (rein_script_new(&sb) != REIN_OK)
			abort();
	}
	rein_eval_suite *s = NULL;
	rein_err e = {0};
	int rc = rein_eval_suite_parse((const char *)data, size, "fuzz/suite.yaml", sb, &s, &e);
	if (rc == REIN_OK) {
		if (s == NULL || s->ncases == 0 || s->workflow == NULL)
			abort();
		for (size_t i = 0; i < s->ncases; i++)
			if (s->cases[i].name == NULL || s->cases[i].repeat < 1 || s->cases[i].input == NULL)
				abort();
	} else if (rc == REIN_ESPEC) {
		if (s != NULL || strncmp(e.msg, "fuzz/suite.yaml:", 16) != 0)
			abort(); /* every problem is located */
	} else if (rc != REIN_ENOMEM) {
		abort();
	}
	rein_eval_suite_free(s);
	rein_err_clear(&e);
	return 0;
}
