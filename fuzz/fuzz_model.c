/*
 * libFuzzer target for the model layer's body parsers: the input is a
 * response body, read by both protocols (OpenAI chat completions, Anthropic
 * messages), whole and as an event stream, with and without a structured
 * output shape; and fed to the SSE parser whole and in chunks whose sizes
 * come from the input, which must yield the same events. Verdicts must be
 * consistent (an OK or truncated answer is a normalized response, every
 * failure says why). Must neither crash nor leak.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "model_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int collect(void *ud, const char *event, const char *p, size_t n)
{
	rein_buf *b = ud;
	rein_buf_printf(b, "%zu:%s:", n, event);
	rein_buf_append(b, p, n);
	return 0;
}

static void check_response(const json_t *r)
{
	if (!json_is_object(r) || !json_is_string(json_object_get(r, "text")) ||
	    !json_is_array(json_object_get(r, "tool_calls")))
		__builtin_trap();
	const char *f = json_string_value(json_object_get(r, "finish_reason"));
	if (f == NULL || (strcmp(f, "stop") != 0 && strcmp(f, "tool_calls") != 0 &&
			  strcmp(f, "length") != 0 && strcmp(f, "other") != 0))
		__builtin_trap();
	size_t i;
	const json_t *c;
	json_array_foreach(json_object_get(r, "tool_calls"), i, c) {
		bool args = json_is_object(json_object_get(c, "arguments"));
		bool err = json_is_string(json_object_get(c, "arguments_error")) &&
			   json_is_string(json_object_get(c, "arguments_raw"));
		if (args == err)
			__builtin_trap();
	}
	/* usage must read back */
	rein_model_usage u;
	rein_model_usage_from_json(json_object_get(r, "usage"), &u);
	if (!json_is_object(json_object_get(r, "usage")))
		__builtin_trap();
}

static void parse_all(const char *body, size_t len)
{
	static const model_shape shapes[] = {
		{0},
		{.output_text = true},
		{.output_tool = "final_answer"},
		{.output_tool = "final_answer", .output_wrapped = true},
	};
	for (int proto = 0; proto < 2; proto++)
		for (int stream = 0; stream < 2; stream++)
			for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
				model_parsed p;
				if (proto == 0)
					model_openai_parse(body, len, stream, &shapes[s], &p);
				else
					model_anthropic_parse(body, len, stream, &shapes[s], &p);
				if (p.kind == MODEL_PARSE_OK)
					check_response(p.response);
				else if (p.why[0] == '\0')
					__builtin_trap();
				if (p.kind == MODEL_PARSE_TRUNCATED && p.response != NULL)
					check_response(p.response);
				if (p.kind != MODEL_PARSE_OK && p.kind != MODEL_PARSE_TRUNCATED &&
				    p.response != NULL)
					__builtin_trap();
				model_parsed_free(&p);
			}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool inited;
	if (!inited) {
		rein_init();
		inited = true;
	}
	if (size > (1u << 20))
		return 0;
	/* the first byte picks chunk sizes for the SSE feed */
	unsigned step = size > 0 ? (unsigned)data[0] % 17 + 1 : 1;
	const char *body = (const char *)data;

	parse_all(body, size);

	model_sse whole = {.max = 4096}, chunked = {.max = 4096};
	rein_buf a = {0}, b = {0};
	int ra = model_sse_feed(&whole, body, size, collect, &a);
	int rb = 0;
	for (size_t i = 0; i < size && rb == 0; i += step) {
		size_t n = size - i < step ? size - i : step;
		rb = model_sse_feed(&chunked, body + i, n, collect, &b);
	}
	if (ra == 0 && rb == 0) {
		if (a.len != b.len || (a.len > 0 && memcmp(a.p, b.p, a.len) != 0))
			__builtin_trap();
		if (model_sse_pending(&whole) != model_sse_pending(&chunked))
			__builtin_trap();
	}
	model_sse_free(&whole);
	model_sse_free(&chunked);
	rein_buf_free(&a);
	rein_buf_free(&b);
	return 0;
}
