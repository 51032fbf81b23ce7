/*
 * libFuzzer target for the spec loader: the input is a workflow.yaml. It is
 * loaded from a one-file bundle (no I/O); whatever it holds must give either a
 * spec or diagnostics, never a crash or a leak. A spec that loads is reloaded
 * from its own bundle and must get the same version.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "script.h"
#include "spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static rein_script *sb;
	if (sb == NULL) {
		rein_init();
		if (rein_script_new(&sb) != REIN_OK)
			abort();
	}
	json_t *text = json_stringn((const char *)data, size);
	if (text == NULL) /* not UTF-8: the loader never sees such a file as text */
		return 0;
	json_t *bundle = json_pack("{s:{s:o}}", "files", "workflow.yaml", text);
	rein_spec *spec = NULL, *again = NULL;
	rein_err e = {0};
	if (rein_spec_load_bundle(bundle, "fuzz", sb, &spec, &e) == REIN_OK) {
		rein_err e2 = {0};
		if (rein_spec_load_bundle(spec->bundle, "fuzz", sb, &again, &e2) != REIN_OK ||
		    strcmp(spec->version, again->version) != 0)
			abort();
		rein_err_clear(&e2);
	} else if (e.code == REIN_ESPEC && e.diags.n == 0) {
		abort(); /* a spec error must come with at least one diagnostic */
	}
	rein_spec_free(again);
	rein_spec_free(spec);
	rein_err_clear(&e);
	json_decref(bundle);
	return 0;
}
