/*
 * libFuzzer target for the Lua sandbox and the JSON<->Lua bridge. The input
 * bytes are (1) evaluated as an expression, then as a chunk, in a sandbox with
 * small limits, against a fixed context; (2) expanded as a template string;
 * (3) when they parse as JSON, passed through Lua and back, which must give
 * the same value whenever nesting stays within the bridge's limit. Nothing
 * may crash or leak, and the sandbox must keep working after every input.
 */
#include <stdlib.h>
#include <string.h>

#include "script.h"

static rein_script *S;
static json_t *input, *steps;

static const json_t *step_out(void *ud, const char *name)
{
	(void)ud;
	return json_object_get(steps, name);
}

static int depth_of(const json_t *j)
{
	int d = 0;
	if (json_is_object(j)) {
		const char *k;
		json_t *v;
		json_object_foreach((json_t *)j, k, v) {
			int x = depth_of(v);
			d = x > d ? x : d;
		}
		return d + 1;
	}
	if (json_is_array(j)) {
		for (size_t i = 0; i < json_array_size(j); i++) {
			int x = depth_of(json_array_get(j, i));
			d = x > d ? x : d;
		}
		return d + 1;
	}
	return 0;
}

static void init(void)
{
	rein_init();
	if (rein_script_new(&S) != REIN_OK)
		abort();
	input = json_loads("{\"a\": 1, \"b\": [1, 2.5, \"x\", null, true, {}], \"c\": {\"d\": []},"
			   " \"s\": \"caf\\u00e9\"}",
			   0, NULL);
	steps = json_loads("{\"s1\": {\"n\": 1}, \"s2\": [null]}", 0, NULL);
	if (input == NULL || steps == NULL)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (S == NULL)
		init();
	if (size > 4096)
		return 0;
	char *src = malloc(size + 1);
	if (src == NULL)
		return 0;
	memcpy(src, data, size);
	src[size] = '\0';

	rein_script_ctx c = {.input = input, .step_out = step_out,
			     .limits = {.instructions = 20000, .memory_bytes = 1 << 20}};
	rein_err err = {0};
	json_t *r = NULL;
	if (rein_script_eval(S, src, REIN_SCRIPT_EXPR, &c, &r, &err) == REIN_OK)
		json_decref(r);
	rein_err_clear(&err);
	if (rein_script_eval(S, src, REIN_SCRIPT_CHUNK, &c, &r, &err) == REIN_OK)
		json_decref(r);
	rein_err_clear(&err);
	rein_script_check(S, src, REIN_SCRIPT_CHUNK, &err);

	/* Templates. */
	rein_err_clear(&err);
	rein_script_template_check(S, src, &err);
	json_t *t = json_stringn(src, size);
	if (t) {
		rein_err_clear(&err);
		if (rein_script_template(S, t, &c, &r, &err) == REIN_OK)
			json_decref(r);
		json_decref(t);
	}

	/* The bridge: JSON -> Lua -> JSON must be the identity. */
	json_t *doc = json_loadb(src, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	if (doc) {
		rein_script_ctx rc = {.out = doc, .limits = {.memory_bytes = 8 << 20}};
		rein_err_clear(&err);
		if (rein_script_eval(S, "out", REIN_SCRIPT_EXPR, &rc, &r, &err) == REIN_OK) {
			if (!json_equal(doc, r))
				abort();
			json_decref(r);
		} else if (depth_of(doc) <= 64 && err.code != REIN_ELIMIT) {
			abort(); /* a shallow document must always convert */
		}
		json_decref(doc);
	}

	/* The sandbox must still work. */
	rein_err_clear(&err);
	if (rein_script_eval(S, "input.a + #input.b", REIN_SCRIPT_EXPR, &c, &r, &err) != REIN_OK ||
	    json_integer_value(r) != 7)
		abort();
	json_decref(r);
	free(src);
	return 0;
}
