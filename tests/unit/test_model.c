/*
 * The model layer: pure tests of the SSE parser, request rendering and body
 * parsing from fixed strings, cost and hashing; then both providers, stream
 * and not, against the loopback model server (build/asan/tools/modelserver
 * or $REIN_MODELSERVER) driven by scripts; then the replay provider
 * answering from what was recorded there, with no server.
 */
#include "testlib.h"

#include <math.h>
#include <signal.h>
#include <sys/wait.h>

#include "io.h"
#include "model_int.h"

#define OPENAI_KEY "sk-test-0123456789abcdef-openai"
#define ANTHROPIC_KEY "sk-ant-test-0123456789abcdef"

/* The member key of j is the string want. */
static void assert_member(const json_t *j, const char *key, const char *want)
{
	assert_string_equal(json_string_value(json_object_get(j, key)), want);
}

/* ---- pure: SSE ------------------------------------------------------------ */

static int collect(void *ud, const char *event, const char *data, size_t len)
{
	rein_buf *b = ud;
	rein_buf_printf(b, "[%s|", event);
	rein_buf_append(b, data, len);
	rein_buf_puts(b, "]");
	return 0;
}

static void test_sse_splits(void **state)
{
	const char *in = ": comment\r\nevent: a\r\ndata: one\r\ndata:two\r\n\r\n"
			 "data: {\"x\":1}\n\nid: 7\nretry: 5\n\ndata\n\r"
			 "event: tail\ndata: cut";
	const char *want = "[a|one\ntwo][|{\"x\":1}][|]";
	size_t n = strlen(in);
	for (size_t cut = 0; cut <= n; cut++) {
		model_sse s = {0};
		rein_buf got = {0};
		assert_int_equal(model_sse_feed(&s, in, cut, collect, &got), 0);
		assert_int_equal(model_sse_feed(&s, in + cut, n - cut, collect, &got), 0);
		assert_string_equal(got.p, want);
		assert_true(model_sse_pending(&s)); /* "event: tail / data: cut" never ended */
		rein_buf_free(&got);
		model_sse_free(&s);
	}
	/* byte by byte */
	model_sse s = {0};
	rein_buf got = {0};
	for (size_t i = 0; i < n; i++)
		assert_int_equal(model_sse_feed(&s, in + i, 1, collect, &got), 0);
	assert_string_equal(got.p, want);
	rein_buf_free(&got);
	model_sse_free(&s);
	/* a line over the limit */
	model_sse small = {.max = 8};
	assert_int_equal(model_sse_feed(&small, "data: 0123456789\n\n", 18, collect, &got),
			 REIN_ELIMIT);
	model_sse_free(&small);
	rein_buf_free(&got);
}

/* ---- pure: requests ------------------------------------------------------- */

static const char *FULL_REQ =
	"{\"model\": \"m-1\", \"system\": \"be brief\", \"max_tokens\": 300,"
	" \"temperature\": 0.5, \"stream\": true,"
	" \"messages\": ["
	"  {\"role\": \"user\", \"content\": \"weather in Oslo and Rome?\"},"
	"  {\"role\": \"assistant\", \"content\": \"checking\", \"tool_calls\": ["
	"    {\"id\": \"c1\", \"name\": \"weather\", \"arguments\": {\"city\": \"Oslo\"}},"
	"    {\"id\": \"c2\", \"name\": \"weather\", \"arguments\": {\"city\": \"Rome\"}}]},"
	"  {\"role\": \"tool\", \"tool_call_id\": \"c1\", \"content\": \"-3C\"},"
	"  {\"role\": \"tool\", \"tool_call_id\": \"c2\", \"content\": \"timeout\", \"is_error\": true},"
	"  {\"role\": \"user\", \"content\": \"and?\"}],"
	" \"tools\": [{\"name\": \"weather\", \"description\": \"current weather\","
	"   \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}},"
	"   \"strict\": true}],"
	" \"output_schema\": {\"type\": \"object\", \"properties\": {\"answer\": {\"type\": \"string\"}}}}";

static void test_render_openai(void **state)
{
	json_t *req = J(FULL_REQ);
	rein_err err = {0};
	assert_int_equal(rein_model_request_check(req, &err), REIN_OK);
	model_wire w = {.max_tokens_field = "max_completion_tokens"};
	json_t *body = NULL;
	model_shape shape;
	assert_int_equal(model_openai_render(req, &w, &body, &shape, &err), REIN_OK);
	assert_true(shape.output_text);
	assert_json_eq(
		body,
		"{\"model\": \"m-1\", \"max_completion_tokens\": 300, \"temperature\": 0.5,"
		" \"stream\": true, \"stream_options\": {\"include_usage\": true},"
		" \"messages\": ["
		"  {\"role\": \"system\", \"content\": \"be brief\"},"
		"  {\"role\": \"user\", \"content\": \"weather in Oslo and Rome?\"},"
		"  {\"role\": \"assistant\", \"content\": \"checking\", \"tool_calls\": ["
		"    {\"id\": \"c1\", \"type\": \"function\", \"function\": {\"name\": \"weather\","
		"      \"arguments\": \"{\\\"city\\\":\\\"Oslo\\\"}\"}},"
		"    {\"id\": \"c2\", \"type\": \"function\", \"function\": {\"name\": \"weather\","
		"      \"arguments\": \"{\\\"city\\\":\\\"Rome\\\"}\"}}]},"
		"  {\"role\": \"tool\", \"tool_call_id\": \"c1\", \"content\": \"-3C\"},"
		"  {\"role\": \"tool\", \"tool_call_id\": \"c2\", \"content\": \"timeout\"},"
		"  {\"role\": \"user\", \"content\": \"and?\"}],"
		" \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"weather\","
		"   \"description\": \"current weather\", \"strict\": true,"
		"   \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}}}}],"
		" \"response_format\": {\"type\": \"json_schema\", \"json_schema\": {\"name\": \"final_answer\","
		"   \"strict\": false,"
		"   \"schema\": {\"type\": \"object\", \"properties\": {\"answer\": {\"type\": \"string\"}}}}}}");
	json_decref(body);
	json_decref(req);
}

/* Issue 10 item 24: strict only for a schema OpenAI's strict mode accepts as
 * it is (additionalProperties: false, every property required, all the way
 * down); any other schema is sent unchanged with strict: false. */
static void test_render_openai_strict(void **state)
{
	(void)state;
	static const struct {
		const char *schema;
		bool strict;
	} cases[] = {
		{"{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"string\"}}}", false},
		{"{\"type\": \"object\", \"additionalProperties\": false, \"required\": [\"a\"],"
		 " \"properties\": {\"a\": {\"type\": \"string\"}}}", true},
		{"{\"type\": \"object\", \"additionalProperties\": false, \"required\": [],"
		 " \"properties\": {\"a\": {\"type\": \"string\"}}}", false},
		{"{\"type\": \"object\", \"additionalProperties\": false, \"required\": [\"a\"],"
		 " \"properties\": {\"a\": {\"type\": \"array\", \"items\": {\"type\": \"object\","
		 " \"properties\": {\"b\": {}}}}}}", false},
		{"{\"type\": \"object\", \"additionalProperties\": false, \"required\": [\"a\"],"
		 " \"properties\": {\"a\": {\"type\": \"array\", \"items\": {\"type\": \"object\","
		 " \"additionalProperties\": false, \"required\": [\"b\"], \"properties\": {\"b\": {}}}}}}",
		 true},
		{"{\"type\": \"string\"}", false},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		json_t *req = json_pack("{s:s, s:[{s:s, s:s}], s:o}", "model", "m", "messages", "role",
					"user", "content", "hi", "output_schema", J(cases[i].schema));
		rein_err err = {0};
		assert_int_equal(rein_model_request_check(req, &err), REIN_OK);
		model_wire w = {.max_tokens_field = "max_completion_tokens"};
		json_t *body = NULL;
		model_shape shape;
		assert_int_equal(model_openai_render(req, &w, &body, &shape, &err), REIN_OK);
		const json_t *js = json_object_get(json_object_get(body, "response_format"), "json_schema");
		if (json_is_true(json_object_get(js, "strict")) != cases[i].strict)
			fail_msg("case %zu: strict should be %d", i, cases[i].strict);
		/* the schema itself is never rewritten */
		assert_true(json_equal(json_object_get(js, "schema"), json_object_get(req, "output_schema")));
		json_decref(body);
		json_decref(req);
	}
}

static void test_render_anthropic(void **state)
{
	json_t *req = J(FULL_REQ);
	json_object_set_new(req, "output_schema", J("{\"type\": \"array\"}"));
	json_object_del(req, "max_tokens");
	rein_err err = {0};
	model_wire w = {.max_tokens = 1000};
	json_t *body = NULL;
	model_shape shape;
	assert_int_equal(model_anthropic_render(req, &w, &body, &shape, &err), REIN_OK);
	assert_string_equal(shape.output_tool, "final_answer");
	assert_true(shape.output_wrapped);
	assert_json_eq(
		body,
		"{\"model\": \"m-1\", \"max_tokens\": 1000, \"temperature\": 0.5, \"stream\": true,"
		" \"system\": \"be brief\","
		" \"messages\": ["
		"  {\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"weather in Oslo and Rome?\"}]},"
		"  {\"role\": \"assistant\", \"content\": [{\"type\": \"text\", \"text\": \"checking\"},"
		"    {\"type\": \"tool_use\", \"id\": \"c1\", \"name\": \"weather\", \"input\": {\"city\": \"Oslo\"}},"
		"    {\"type\": \"tool_use\", \"id\": \"c2\", \"name\": \"weather\", \"input\": {\"city\": \"Rome\"}}]},"
		"  {\"role\": \"user\", \"content\": ["
		"    {\"type\": \"tool_result\", \"tool_use_id\": \"c1\", \"content\": \"-3C\"},"
		"    {\"type\": \"tool_result\", \"tool_use_id\": \"c2\", \"content\": \"timeout\", \"is_error\": true},"
		"    {\"type\": \"text\", \"text\": \"and?\"}]}],"
		" \"tools\": [{\"name\": \"weather\", \"description\": \"current weather\","
		"   \"input_schema\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}}},"
		"  {\"name\": \"final_answer\","
		"   \"description\": \"Give the final answer by calling this tool; its input is the answer.\","
		"   \"input_schema\": {\"type\": \"object\", \"properties\": {\"value\": {\"type\": \"array\"}},"
		"     \"required\": [\"value\"]}}],"
		" \"tool_choice\": {\"type\": \"tool\", \"name\": \"final_answer\"}}");
	json_decref(body);
	json_decref(req);
}

static void test_request_check(void **state)
{
	static const char *const bad[] = {
		"[]",
		"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}",
		"{\"model\": \"m\", \"messages\": []}",
		"{\"model\": \"m\", \"messages\": [{\"role\": \"system\", \"content\": \"x\"}]}",
		"{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": 3}]}",
		"{\"model\": \"m\", \"messages\": [{\"role\": \"tool\", \"content\": \"x\"}]}",
		"{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"topp\": 1}",
		"{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"max_tokens\": 0}",
		"{\"model\": \"m\", \"messages\": [{\"role\": \"assistant\", \"tool_calls\": [{\"id\": \"a\"}]}]}",
		"{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}],"
		" \"tools\": [{\"name\": \"a b\", \"parameters\": {}}]}",
		"{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}],"
		" \"tools\": [{\"name\": \"final_answer\", \"parameters\": {}}], \"output_schema\": {}}",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		json_t *r = J(bad[i]);
		rein_err err = {0};
		assert_int_equal(rein_model_request_check(r, &err), REIN_EINVAL);
		assert_true(err.msg[0] != '\0');
		json_decref(r);
	}
}

static void test_hash_and_cost(void **state)
{
	json_t *a = J("{\"model\": \"m\", \"stream\": true, \"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}");
	json_t *b = J("{\"messages\": [{\"content\": \"x\", \"role\": \"user\"}], \"model\": \"m\"}");
	json_t *c = J("{\"messages\": [{\"content\": \"y\", \"role\": \"user\"}], \"model\": \"m\"}");
	char ha[REIN_MODEL_HASH_HEX], hb[REIN_MODEL_HASH_HEX], hc[REIN_MODEL_HASH_HEX];
	assert_int_equal(rein_model_request_hash(a, ha, NULL), REIN_OK);
	assert_int_equal(rein_model_request_hash(b, hb, NULL), REIN_OK);
	assert_int_equal(rein_model_request_hash(c, hc, NULL), REIN_OK);
	assert_int_equal(strlen(ha), 64);
	assert_string_equal(ha, hb); /* key order and stream do not count */
	assert_string_not_equal(ha, hc);
	json_decref(a);
	json_decref(b);
	json_decref(c);

	rein_model_price p = {.input = 3, .output = 15, .cached = 0.3, .cache_write = 3.75};
	rein_model_usage u = {.input = 1000000, .output = 100000, .cached = 600000,
			      .cache_write = 100000};
	/* 300k plain * 3 + 600k * 0.3 + 100k * 3.75 + 100k * 15 */
	assert_true(fabs(rein_model_cost(&p, &u) - (0.9 + 0.18 + 0.375 + 1.5)) < 1e-9);
	rein_model_usage none = {0};
	assert_true(rein_model_cost(&p, &none) == 0);
}

/* ---- pure: parsing fixed bodies ------------------------------------------- */

static json_t *parse_ok(bool anthropic, const char *body, bool stream, const model_shape *shape)
{
	model_parsed p;
	if (anthropic)
		model_anthropic_parse(body, strlen(body), stream, shape, &p);
	else
		model_openai_parse(body, strlen(body), stream, shape, &p);
	if (p.kind != MODEL_PARSE_OK)
		fprintf(stderr, "parse: kind %d: %s\n", p.kind, p.why);
	assert_int_equal(p.kind, MODEL_PARSE_OK);
	return p.response;
}

static int parse_kind(bool anthropic, const char *body, bool stream, model_parsed *p)
{
	if (anthropic)
		model_anthropic_parse(body, strlen(body), stream, NULL, p);
	else
		model_openai_parse(body, strlen(body), stream, NULL, p);
	return p->kind;
}

static const char *OA_STREAM =
	"data: {\"id\":\"x1\",\"model\":\"gpt-exact\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}],\"usage\":null}\n\n"
	"data: {\"id\":\"x1\",\"model\":\"gpt-exact\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n"
	"data: {\"id\":\"x1\",\"model\":\"gpt-exact\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"}}]}\n\n"
	"data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]}}]}\n\n"
	"data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_b\",\"type\":\"function\",\"function\":{\"name\":\"g\",\"arguments\":\"{\\\"no\"}}]}}]}\n\n"
	"data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"a\\\":\"}}]}}]}\n\n"
	"data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\" [1,2]}\"}}]}}]}\n\n"
	"data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n"
	"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":50,\"completion_tokens\":9,"
	"\"prompt_tokens_details\":{\"cached_tokens\":20},\"completion_tokens_details\":{\"reasoning_tokens\":4}}}\n\n";

/* What rein writes it reads back: a body or tool arguments with \u0000 in a
 * string are JSON (the one parser, rein_json_parse), in both providers. */
static void test_parse_nul(void **state)
{
	(void)state;
	json_t *r = parse_ok(false,
			     "{\"id\":\"c1\",\"model\":\"m\",\"choices\":[{\"index\":0,"
			     "\"message\":{\"role\":\"assistant\",\"content\":\"a\\u0000b\","
			     "\"tool_calls\":[{\"id\":\"t1\",\"type\":\"function\",\"function\":{"
			     "\"name\":\"f\",\"arguments\":\"{\\\"s\\\":\\\"x\\\\u0000y\\\"}\"}}]},"
			     "\"finish_reason\":\"tool_calls\"}]}",
			     false, NULL);
	json_t *call = json_array_get(json_object_get(r, "tool_calls"), 0);
	assert_null(json_object_get(call, "arguments_error"));
	assert_int_equal(json_string_length(json_object_get(json_object_get(call, "arguments"), "s")), 3);
	json_decref(r);
	r = parse_ok(true,
		     "{\"id\":\"m1\",\"model\":\"c\",\"content\":[{\"type\":\"text\",\"text\":\"a\\u0000b\"}],"
		     "\"stop_reason\":\"end_turn\"}",
		     false, NULL);
	json_decref(r);
}

static void test_parse_openai(void **state)
{
	json_t *r = parse_ok(false,
			     "{\"id\":\"c9\",\"model\":\"gpt-x-2024\",\"choices\":[{\"index\":0,"
			     "\"message\":{\"role\":\"assistant\",\"content\":\"hi\"},"
			     "\"finish_reason\":\"length\"}],\"usage\":{\"prompt_tokens\":10,"
			     "\"completion_tokens\":2}}",
			     false, NULL);
	assert_json_eq(r, "{\"text\":\"hi\",\"tool_calls\":[],\"finish_reason\":\"length\","
			  "\"finish_raw\":\"length\",\"model\":\"gpt-x-2024\",\"id\":\"c9\","
			  "\"usage\":{\"input\":10,\"output\":2,\"cached\":0,\"cache_write\":0,"
			  "\"reasoning\":0}}");
	json_decref(r);

	char *full = rein_sprintf("%sdata: [DONE]\n\n", OA_STREAM);
	r = parse_ok(false, full, true, NULL);
	json_t *bad_call = json_array_get(json_object_get(r, "tool_calls"), 1);
	assert_true(strncmp(json_string_value(json_object_get(bad_call, "arguments_error")),
			    "arguments are not JSON: ", 24) == 0);
	json_object_del(bad_call, "arguments_error");
	assert_json_eq(r, "{\"text\":\"Hello\",\"finish_reason\":\"tool_calls\","
			  "\"finish_raw\":\"tool_calls\",\"model\":\"gpt-exact\",\"id\":\"x1\","
			  "\"streamed\":true,"
			  "\"tool_calls\":[{\"id\":\"call_a\",\"name\":\"f\",\"arguments\":{\"a\":[1,2]}},"
			  "{\"id\":\"call_b\",\"name\":\"g\",\"arguments_raw\":\"{\\\"no\"}],"
			  "\"usage\":{\"input\":50,\"output\":9,\"cached\":20,\"cache_write\":0,"
			  "\"reasoning\":4}}");
	json_decref(r);
	rein_free(full);

	/* the same stream without [DONE]: truncated, with what came */
	model_parsed p;
	assert_int_equal(parse_kind(false, OA_STREAM, true, &p), MODEL_PARSE_TRUNCATED);
	assert_member(p.response, "text", "Hello");
	model_parsed_free(&p);
	/* an error chunk mid-stream */
	assert_int_equal(parse_kind(false,
				    "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n"
				    "data: {\"error\":{\"type\":\"server_error\",\"message\":\"boom\"}}\n\n",
				    true, &p),
			 MODEL_PARSE_ERROR);
	assert_true(p.transient);
	assert_non_null(strstr(p.why, "boom"));
	/* not JSON, no choices, a broken chunk */
	assert_int_equal(parse_kind(false, "{\"choices\":[{\"message\":", false, &p),
			 MODEL_PARSE_MALFORMED);
	assert_int_equal(parse_kind(false, "{\"choices\":[]}", false, &p), MODEL_PARSE_MALFORMED);
	assert_int_equal(parse_kind(false, "data: {\"choi\n\ndata: [DONE]\n\n", true, &p),
			 MODEL_PARSE_MALFORMED);
	/* a server that ignored stream: one JSON document */
	r = parse_ok(false, "{\"model\":\"m\",\"choices\":[{\"message\":{\"content\":null},"
			    "\"finish_reason\":\"stop\"}]}", true, NULL);
	assert_member(r, "text", "");
	json_decref(r);
}

static const char *AN_STREAM =
	"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\","
	"\"model\":\"claude-exact\",\"content\":[],\"usage\":{\"input_tokens\":5,"
	"\"cache_read_input_tokens\":100,\"cache_creation_input_tokens\":10,\"output_tokens\":1}}}\n\n"
	"event: ping\ndata: {\"type\":\"ping\"}\n\n"
	"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,"
	"\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"
	"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,"
	"\"delta\":{\"type\":\"text_delta\",\"text\":\"Let me \"}}\n\n"
	"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,"
	"\"delta\":{\"type\":\"text_delta\",\"text\":\"check.\"}}\n\n"
	"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
	"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,"
	"\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"get\",\"input\":{}}}\n\n"
	"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,"
	"\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"k\\\": \"}}\n\n"
	"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,"
	"\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\\\"v\\\"}\"}}\n\n"
	"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n"
	"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":2,"
	"\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_2\",\"name\":\"none\",\"input\":{}}}\n\n"
	"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":2}\n\n"
	"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},"
	"\"usage\":{\"output_tokens\":42}}\n\n";

static void test_parse_anthropic(void **state)
{
	json_t *r = parse_ok(true,
			     "{\"id\":\"msg_9\",\"type\":\"message\",\"role\":\"assistant\","
			     "\"model\":\"claude-x\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
			     "{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"n\",\"input\":{\"q\":1}}],"
			     "\"stop_reason\":\"tool_use\",\"usage\":{\"input_tokens\":7,"
			     "\"output_tokens\":3}}",
			     false, NULL);
	assert_json_eq(r, "{\"text\":\"a\",\"tool_calls\":[{\"id\":\"t1\",\"name\":\"n\","
			  "\"arguments\":{\"q\":1}}],\"finish_reason\":\"tool_calls\","
			  "\"finish_raw\":\"tool_use\",\"model\":\"claude-x\",\"id\":\"msg_9\","
			  "\"usage\":{\"input\":7,\"output\":3,\"cached\":0,\"cache_write\":0,"
			  "\"reasoning\":0}}");
	json_decref(r);

	char *full = rein_sprintf("%sevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
				  AN_STREAM);
	r = parse_ok(true, full, true, NULL);
	assert_json_eq(r, "{\"text\":\"Let me check.\",\"finish_reason\":\"tool_calls\","
			  "\"finish_raw\":\"tool_use\",\"model\":\"claude-exact\",\"id\":\"msg_1\","
			  "\"streamed\":true,"
			  "\"tool_calls\":[{\"id\":\"toolu_1\",\"name\":\"get\",\"arguments\":{\"k\":\"v\"}},"
			  "{\"id\":\"toolu_2\",\"name\":\"none\",\"arguments\":{}}],"
			  "\"usage\":{\"input\":115,\"output\":42,\"cached\":100,\"cache_write\":10,"
			  "\"reasoning\":0}}");
	json_decref(r);
	rein_free(full);

	/* structured output through the forced tool */
	model_shape shape = {.output_tool = "final_answer"};
	r = parse_ok(true,
		     "{\"model\":\"c\",\"content\":[{\"type\":\"tool_use\",\"id\":\"t\","
		     "\"name\":\"final_answer\",\"input\":{\"answer\":42}}],\"stop_reason\":\"tool_use\"}",
		     false, &shape);
	assert_json_eq(json_object_get(r, "output"), "{\"answer\":42}");
	assert_int_equal(json_array_size(json_object_get(r, "tool_calls")), 0);
	assert_member(r, "finish_reason", "stop");
	json_decref(r);

	model_parsed p;
	assert_int_equal(parse_kind(true, AN_STREAM, true, &p), MODEL_PARSE_TRUNCATED);
	assert_member(p.response, "text", "Let me check.");
	model_parsed_free(&p);
	assert_int_equal(parse_kind(true,
				    "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":"
				    "\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
				    true, &p),
			 MODEL_PARSE_ERROR);
	assert_true(p.transient);
	assert_int_equal(parse_kind(true,
				    "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\","
				    "\"message\":\"bad\"}}",
				    false, &p),
			 MODEL_PARSE_ERROR);
	assert_false(p.transient);
	assert_int_equal(parse_kind(true, "{\"model\":\"c\"}", false, &p), MODEL_PARSE_MALFORMED);
	assert_int_equal(parse_kind(true, "event: message_start\ndata: [1]\n\n", true, &p),
			 MODEL_PARSE_MALFORMED);
}

/* ---- loopback server ------------------------------------------------------- */

static test_server srv;

static int server_start(void **state)
{
	setenv("REIN_TEST_OPENAI_KEY", OPENAI_KEY, 1);
	setenv("REIN_TEST_ANTHROPIC_KEY", ANTHROPIC_KEY, 1);
	return test_server_up(&srv, "modelserver");
}

static int server_stop(void **state)
{
	test_server_down(&srv);
	return 0;
}

typedef struct fixture {
	rein_io *io;
	rein_model_provider *prov[2]; /* openai, anthropic */
} fixture;

static rein_model_provider *provider(const char *config_fmt, int port)
{
	char cfg[1024];
	snprintf(cfg, sizeof cfg, config_fmt, port);
	json_t *c = J(cfg);
	rein_model_provider *p = NULL;
	rein_err err = {0};
	if (rein_model_provider_new(c, &p, &err) != REIN_OK)
		fprintf(stderr, "provider: %s\n", err.msg);
	json_decref(c);
	assert_non_null(p);
	return p;
}

#define PRICE "\"price\": {\"input\": 2.5, \"output\": 10, \"cached\": 1.25}"

static int fx_setup(void **state)
{
	fixture *fx = calloc(1, sizeof *fx);
	rein_err err = {0};
	if (rein_io_new(&fx->io, &err) != REIN_OK)
		return -1;
	fx->prov[0] = provider("{\"type\": \"openai\", \"base_url\": \"http://127.0.0.1:%d/v1/\","
			       " \"api_key_env\": \"REIN_TEST_OPENAI_KEY\", \"timeout_ms\": 20000,"
			       " \"headers\": {\"X-Team\": \"rein\"}, " PRICE "}",
			       srv.port);
	fx->prov[1] = provider("{\"type\": \"anthropic\", \"base_url\": \"http://127.0.0.1:%d\","
			       " \"api_key_env\": \"REIN_TEST_ANTHROPIC_KEY\", \"timeout_ms\": 20000,"
			       " " PRICE "}",
			       srv.port);
	*state = fx;
	return 0;
}

static int fx_teardown(void **state)
{
	fixture *fx = *state;
	rein_model_provider_free(fx->prov[0]);
	rein_model_provider_free(fx->prov[1]);
	rein_io_free(fx->io);
	free(fx);
	return 0;
}

/* A plain HTTP exchange with the server's control endpoints. */
typedef struct plain {
	int done;
	long status;
	char *body;
} plain;

static void on_plain(void *ud, const rein_http_resp *r)
{
	plain *p = ud;
	p->done++;
	p->status = r->error == REIN_HTTP_OK ? r->status : -1;
	p->body = rein_strndup(r->body, r->body_len);
}

static void wait_for(rein_io *io, const int *count, int want)
{
	int64_t deadline = rein_clock_now(&rein_clock_system) + 60000;
	while (*count < want && rein_clock_now(&rein_clock_system) < deadline)
		rein_io_wait(io, 1000);
	assert_int_equal(*count, want);
}

static json_t *control(rein_io *io, const char *method, const char *path, const char *body)
{
	char *url = rein_sprintf("http://127.0.0.1:%d%s", srv.port, path);
	rein_http_req req = {.method = method, .url = url, .body = body,
			     .body_len = body ? strlen(body) : 0, .timeout_ms = 20000};
	plain p = {0};
	rein_err err = {0};
	assert_int_equal(rein_http_start(io, &req, on_plain, &p, NULL, &err), REIN_OK);
	wait_for(io, &p.done, 1);
	assert_int_equal(p.status, 200);
	json_t *j = J(p.body);
	rein_free(p.body);
	rein_free(url);
	return j;
}

static void script(rein_io *io, const char *turns)
{
	char *s = rein_sprintf("{\"turns\": %s}", turns);
	json_decref(control(io, "POST", "/control/script", s));
	rein_free(s);
}

/* The last model request the server received. */
static json_t *last_request(rein_io *io)
{
	json_t *all = control(io, "GET", "/control/requests", NULL);
	json_t *last = json_incref(json_array_get(all, json_array_size(all) - 1));
	json_decref(all);
	assert_non_null(last);
	return last;
}

/* What one call reported, copied out of the callback. */
typedef struct got {
	int ncalls;
	bool ok, transient;
	json_t *response;
	char outcome[32];
	char error[768];
	long status;
	int64_t retry_after_ms;
	char *evidence;
	char hash[REIN_MODEL_HASH_HEX];
} got;

static void on_model(void *ud, rein_model_outcome *o)
{
	got *g = ud;
	g->ncalls++;
	g->ok = o->ok;
	g->transient = o->transient;
	g->response = json_incref(o->response);
	snprintf(g->outcome, sizeof g->outcome, "%s", o->ok ? "" : o->outcome);
	snprintf(g->error, sizeof g->error, "%s", o->error);
	g->status = o->status;
	g->retry_after_ms = o->retry_after_ms;
	g->evidence = o->evidence ? rein_strndup(o->evidence, o->evidence_len) : NULL;
	snprintf(g->hash, sizeof g->hash, "%s", o->request_hash);
}

static void got_free(got *g)
{
	json_decref(g->response);
	rein_free(g->evidence);
	memset(g, 0, sizeof *g);
}

static void call(rein_io *io, rein_model_provider *p, const json_t *req, got *g)
{
	memset(g, 0, sizeof *g);
	rein_err err = {0};
	int rc = rein_model_call(io, p, req, on_model, g, &err);
	if (rc != REIN_OK)
		fprintf(stderr, "call: %s\n", err.msg);
	assert_int_equal(rc, REIN_OK);
	assert_int_equal(g->ncalls, 0); /* never from inside the call */
	wait_for(io, &g->ncalls, 1);
	if (!g->ok && g->outcome[0] == '\0')
		fail_msg("a failure without an outcome code");
}

static json_t *simple_req(bool stream)
{
	json_t *r = J("{\"model\": \"test-model\", \"system\": \"you are a test\","
		      " \"messages\": [{\"role\": \"user\", \"content\": \"hello\"}],"
		      " \"tools\": [{\"name\": \"lookup\", \"parameters\": {\"type\": \"object\"}},"
		      "  {\"name\": \"fetch\", \"parameters\": {\"type\": \"object\"}}]}");
	json_object_set_new(r, "stream", json_boolean(stream));
	return r;
}

static const char *const NAMES[2] = {"openai", "anthropic"};

/* One check of a loopback test: provider prov, streaming or not, sending
 * req (simple_req(stream), which the check may change). */
typedef void (*case_fn)(fixture *fx, int prov, int stream, json_t *req);

/* Runs check for each provider, whole and streaming. */
static void each_case(fixture *fx, case_fn check)
{
	for (int prov = 0; prov < 2; prov++)
		for (int stream = 0; stream < 2; stream++) {
			fprintf(stderr, "  case %s %s\n", NAMES[prov], stream ? "stream" : "whole");
			json_t *req = simple_req(stream);
			check(fx, prov, stream, req);
			json_decref(req);
		}
}

/* Scripts the server's turns, then sends req through fx->prov[prov]; the
 * call must succeed. */
static void call_ok(fixture *fx, int prov, const char *turns, const json_t *req, got *g)
{
	script(fx->io, turns);
	call(fx->io, fx->prov[prov], req, g);
	assert_true(g->ok);
}

static void text_usage_cost(fixture *fx, int prov, int stream, json_t *req)
{
	got g;
	int64_t t0 = rein_clock_now(&rein_clock_system);
	call_ok(fx, prov,
		"[{\"text\": \"Hello there, world\", \"model\": \"exact-model-2024-11\","
		" \"usage\": {\"input\": 120, \"output\": 30, \"cached\": 100,"
		" \"reasoning\": 7}}]",
		req, &g);
	int64_t t1 = rein_clock_now(&rein_clock_system);
	json_t *r = g.response;
	assert_member(r, "text", "Hello there, world");
	assert_member(r, "model", "exact-model-2024-11");
	assert_member(r, "finish_reason", "stop");
	assert_int_equal(json_array_size(json_object_get(r, "tool_calls")), 0);
	rein_model_usage u;
	rein_model_usage_from_json(json_object_get(r, "usage"), &u);
	assert_int_equal(u.input, 120);
	assert_int_equal(u.output, 30);
	assert_int_equal(u.cached, 100);
	assert_int_equal(u.reasoning, prov == 0 ? 7 : 0); /* Anthropic does not say */
	/* 20 * 2.5 + 100 * 1.25 + 30 * 10 per million */
	assert_true(fabs(json_real_value(json_object_get(r, "cost_usd")) - 475e-6) < 1e-12);
	/* the latency is of this call: within the time the test waited for it */
	assert_true(json_is_integer(json_object_get(r, "latency_ms")));
	assert_in_range(json_integer_value(json_object_get(r, "latency_ms")), 0, t1 - t0 + 1);
	assert_int_equal(json_is_true(json_object_get(r, "streamed")), stream);
	char want_hash[REIN_MODEL_HASH_HEX];
	assert_int_equal(rein_model_request_hash(req, want_hash, NULL), REIN_OK);
	assert_string_equal(g.hash, want_hash);
	/* what went over the wire */
	json_t *sent = last_request(fx->io);
	json_t *h = json_object_get(sent, "headers");
	assert_member(sent, "path", prov == 0 ? "/v1/chat/completions" : "/v1/messages");
	if (prov == 0) {
		assert_member(h, "authorization", "***");
		assert_member(h, "x-team", "rein");
		if (stream)
			assert_json_eq(json_object_get(json_object_get(sent, "body"),
						       "stream_options"),
				       "{\"include_usage\": true}");
	} else {
		assert_member(h, "x-api-key", "***");
		assert_member(h, "anthropic-version", "2023-06-01");
		assert_member(json_object_get(sent, "body"), "system", "you are a test");
	}
	json_decref(sent);
	got_free(&g);
}

static void test_text_usage_cost(void **state)
{
	each_case(*state, text_usage_cost);
}

static void tool_calls(fixture *fx, int prov, int stream, json_t *req)
{
	got g;
	call_ok(fx, prov,
		"[{\"text\": \"let me look\", \"tool_calls\": ["
		"{\"name\": \"lookup\", \"arguments\": {\"q\": \"a long query, in parts\"}},"
		"{\"name\": \"fetch\", \"arguments\": {\"url\": \"http://x/y\", \"n\": [1, 2, 3]}},"
		"{\"name\": \"lookup\", \"arguments_raw\": \"{not json\"}]}]",
		req, &g);
	json_t *r = g.response;
	assert_member(r, "finish_reason", "tool_calls");
	assert_member(r, "text", "let me look");
	json_t *calls = json_object_get(r, "tool_calls");
	assert_int_equal(json_array_size(calls), 3);
	json_t *c0 = json_array_get(calls, 0), *c1 = json_array_get(calls, 1),
	       *c2 = json_array_get(calls, 2);
	assert_member(c0, "name", "lookup");
	assert_json_eq(json_object_get(c0, "arguments"), "{\"q\": \"a long query, in parts\"}");
	assert_member(c1, "name", "fetch");
	assert_json_eq(json_object_get(c1, "arguments"),
		       "{\"url\": \"http://x/y\", \"n\": [1, 2, 3]}");
	assert_true(strlen(json_string_value(json_object_get(c0, "id"))) > 0);
	assert_string_not_equal(json_string_value(json_object_get(c0, "id")),
				json_string_value(json_object_get(c1, "id")));
	/* the bad one is reported in place */
	assert_null(json_object_get(c2, "arguments"));
	assert_member(c2, "arguments_raw", "{not json");
	assert_non_null(json_string_value(json_object_get(c2, "arguments_error")));
	json_incref(calls);
	got_free(&g);

	/* the answer goes back as history: the server accepts the rendering */
	json_t *req2 = simple_req(stream);
	json_t *msgs = json_object_get(req2, "messages");
	json_t *asst = json_pack("{s:s,s:s,s:O}", "role", "assistant", "content",
				 "let me look", "tool_calls", calls);
	json_array_append_new(msgs, asst);
	json_array_append_new(msgs, json_pack("{s:s,s:s,s:s}", "role", "tool", "tool_call_id",
					      json_string_value(json_object_get(c0, "id")),
					      "content", "found"));
	json_array_append_new(msgs, json_pack("{s:s,s:s,s:s,s:b}", "role", "tool",
					      "tool_call_id",
					      json_string_value(json_object_get(c1, "id")),
					      "content", "fetched", "is_error", 0));
	json_array_append_new(msgs, json_pack("{s:s,s:s,s:s,s:b}", "role", "tool",
					      "tool_call_id",
					      json_string_value(json_object_get(c2, "id")),
					      "content", "bad arguments", "is_error", 1));
	call_ok(fx, prov, "[{\"text\": \"done\"}]", req2, &g);
	assert_member(g.response, "text", "done");
	got_free(&g);
	json_decref(calls);
	json_decref(req2);
}

static void test_tool_calls(void **state)
{
	each_case(*state, tool_calls);
}

/* A scripted failure and how the call must report it. */
typedef struct failure {
	const char *turns;
	bool stream_only;
	const char *outcome;
	bool transient;
	long status;            /* 0: not checked */
	int64_t retry_after_ms; /* 0: not checked */
	const char *error_has;  /* NULL: not checked */
	enum { EVIDENCE_ANY, EVIDENCE_SOME, EVIDENCE_BYTES } evidence;
	bool stream_text; /* streaming: the partial answer has text */
} failure;

static const failure FAILURES[] = {
	{.turns = "[{\"error\": {\"status\": 429, \"retry_after\": 2}}]", .outcome = "http_429",
	 .transient = true, .status = 429, .retry_after_ms = 2000},
	{.turns = "[{\"error\": {\"status\": 500}}]", .outcome = "http_500", .transient = true,
	 .retry_after_ms = -1, .evidence = EVIDENCE_SOME},
	{.turns = "[{\"error\": {\"status\": 529, \"type\": \"overloaded_error\","
		  " \"message\": \"Overloaded\"}}]",
	 .outcome = "http_529", .transient = true, .error_has = "Overloaded"},
	{.turns = "[{\"error\": {\"status\": 400, \"type\": \"invalid_request_error\","
		  " \"message\": \"bad field\"}}]",
	 .outcome = "http_400", .transient = false, .error_has = "bad field"},
	/* a stream cut before its end: transient; io keeps the partial body: a
	 * stream's pieces that arrived are the partial answer; a whole body cut in
	 * half has none, only evidence */
	{.turns = "[{\"text\": \"a rather long answer that will not arrive whole\","
		  " \"cut_after\": 4}]",
	 .outcome = "truncated", .transient = true, .evidence = EVIDENCE_SOME, .stream_text = true},
	/* malformed: permanent, with the raw bytes */
	{.turns = "[{\"text\": \"hello malformed world\", \"malformed\": true}]",
	 .outcome = "malformed", .transient = false, .evidence = EVIDENCE_BYTES},
	/* an error event after the first events */
	{.turns = "[{\"text\": \"partial\", \"error\": {\"status\": 529,"
		  " \"type\": \"overloaded_error\", \"message\": \"Overloaded\","
		  " \"mid_stream\": true}}]",
	 .stream_only = true, .outcome = "stream_error", .transient = true,
	 .evidence = EVIDENCE_SOME},
};

static void errors(fixture *fx, int prov, int stream, json_t *req)
{
	for (size_t i = 0; i < sizeof FAILURES / sizeof *FAILURES; i++) {
		const failure *f = &FAILURES[i];
		if (f->stream_only && !stream)
			continue;
		fprintf(stderr, "    %s\n", f->outcome);
		got g;
		script(fx->io, f->turns);
		call(fx->io, fx->prov[prov], req, &g);
		assert_false(g.ok);
		assert_string_equal(g.outcome, f->outcome);
		assert_int_equal(g.transient, f->transient);
		if (f->status != 0)
			assert_int_equal(g.status, f->status);
		if (f->retry_after_ms != 0)
			assert_int_equal(g.retry_after_ms, f->retry_after_ms);
		if (f->error_has != NULL)
			assert_non_null(strstr(g.error, f->error_has));
		if (f->evidence != EVIDENCE_ANY)
			assert_non_null(g.evidence);
		if (f->evidence == EVIDENCE_BYTES)
			assert_true(strlen(g.evidence) > 0);
		if (f->stream_text && stream)
			assert_non_null(json_object_get(g.response, "text"));
		got_free(&g);
	}
}

static void test_errors(void **state)
{
	each_case(*state, errors);
}

static void structured_output(fixture *fx, int prov, int stream, json_t *req)
{
	json_object_set_new(req, "output_schema",
			    J("{\"type\": \"object\", \"properties\": {\"answer\":"
			      " {\"type\": \"string\"}}, \"required\": [\"answer\"],"
			      " \"additionalProperties\": false}"));
	got g;
	call_ok(fx, prov,
		prov == 0 ? "[{\"text\": \"{\\\"answer\\\": \\\"42\\\"}\"}]"
			  : "[{\"tool_calls\": [{\"name\": \"final_answer\","
			    " \"arguments\": {\"answer\": \"42\"}}]}]",
		req, &g);
	assert_json_eq(json_object_get(g.response, "output"), "{\"answer\": \"42\"}");
	assert_member(g.response, "finish_reason", "stop");
	assert_int_equal(json_array_size(json_object_get(g.response, "tool_calls")), 0);
	json_t *sent = last_request(fx->io);
	json_t *body = json_object_get(sent, "body");
	if (prov == 0) {
		json_t *rf = json_object_get(body, "response_format");
		assert_member(rf, "type", "json_schema");
		json_t *js = json_object_get(rf, "json_schema");
		assert_member(js, "name", "final_answer");
		assert_true(json_is_true(json_object_get(js, "strict")));
		assert_true(json_equal(json_object_get(js, "schema"),
				       json_object_get(req, "output_schema")));
	} else {
		assert_json_eq(json_object_get(body, "tool_choice"),
			       "{\"type\": \"tool\", \"name\": \"final_answer\"}");
		json_t *tools = json_object_get(body, "tools");
		json_t *last = json_array_get(tools, json_array_size(tools) - 1);
		assert_member(last, "name", "final_answer");
		assert_true(json_equal(json_object_get(last, "input_schema"),
				       json_object_get(req, "output_schema")));
	}
	json_decref(sent);
	got_free(&g);
}

static void test_structured_output(void **state)
{
	each_case(*state, structured_output);
}

static void test_api_key(void **state)
{
	fixture *fx = *state;
	for (int prov = 0; prov < 2; prov++) {
		const char *key = prov == 0 ? OPENAI_KEY : ANTHROPIC_KEY;
		char *turn = rein_sprintf("[{\"error\": {\"status\": 401, \"type\":"
					  " \"authentication_error\", \"message\":"
					  " \"Incorrect API key provided: %s\"}}]",
					  key);
		script(fx->io, turn);
		rein_free(turn);
		json_t *req = simple_req(false);
		got g;
		call(fx->io, fx->prov[prov], req, &g);
		assert_false(g.ok);
		assert_false(g.transient);
		assert_string_equal(g.outcome, "http_401");
		assert_null(strstr(g.error, key));
		assert_non_null(strstr(g.error, "[redacted]"));
		assert_non_null(g.evidence);
		assert_null(strstr(g.evidence, key));
		got_free(&g);

		/* no key in the environment: no request goes out */
		json_t *before = control(fx->io, "GET", "/control/requests", NULL);
		const char *var = prov == 0 ? "REIN_TEST_OPENAI_KEY" : "REIN_TEST_ANTHROPIC_KEY";
		unsetenv(var);
		call(fx->io, fx->prov[prov], req, &g);
		setenv(var, key, 1);
		assert_false(g.ok);
		assert_false(g.transient);
		assert_string_equal(g.outcome, "no_api_key");
		assert_non_null(strstr(g.error, var));
		json_t *after = control(fx->io, "GET", "/control/requests", NULL);
		assert_int_equal(json_array_size(after), json_array_size(before));
		json_decref(before);
		json_decref(after);
		got_free(&g);
		json_decref(req);
	}
}

static void test_connect_refused(void **state)
{
	fixture *fx = *state;
	/* port 1 on loopback: nobody listens there */
	rein_model_provider *p = provider("{\"type\": \"openai\", \"base_url\":"
					  " \"http://127.0.0.1:1/v1\", \"timeout_ms\": 5000}",
					  0);
	json_t *req = simple_req(false);
	got g;
	call(fx->io, p, req, &g);
	assert_false(g.ok);
	assert_true(g.transient);
	assert_string_equal(g.outcome, "connect");
	got_free(&g);
	json_decref(req);
	rein_model_provider_free(p);
}

/* Records answers from the server, then replays them with no server. */
static void test_replay_roundtrip(void **state)
{
	fixture *fx = *state;
	json_t *recording = json_object();
	json_t *reqs[4];
	json_t *resps[4];
	for (int i = 0; i < 4; i++) {
		int prov = i / 2;
		reqs[i] = simple_req(i % 2);
		json_t *m = json_array_get(json_object_get(reqs[i], "messages"), 0);
		char text[32];
		snprintf(text, sizeof text, "question %d", i);
		json_object_set_new(m, "content", json_string(text));
		got g;
		call_ok(fx, prov,
			i % 2 ? "[{\"tool_calls\": [{\"name\": \"lookup\", \"arguments\":"
				" {\"q\": 1}}], \"usage\": {\"input\": 10, \"output\": 2}}]"
			      : "[{\"text\": \"recorded\", \"usage\": {\"input\": 10,"
				" \"output\": 2}}]",
			reqs[i], &g);
		rein_err err = {0};
		assert_int_equal(rein_model_record(recording, reqs[i], g.response, &err), REIN_OK);
		resps[i] = json_incref(g.response);
		got_free(&g);
	}
	assert_int_equal(json_array_size(json_object_get(recording, "$sequence")), 4);
	/* through a file, as a run would */
	char *dir = temp_dir();
	char *path = rein_sprintf("%s/replay.json", dir);
	assert_int_equal(json_dump_file(recording, path, JSON_INDENT(1)), 0);
	char *cfg = rein_sprintf("{\"type\": \"replay\", \"file\": \"%s\", " PRICE "}", path);
	json_t *c = J(cfg);
	rein_model_provider *rp = NULL;
	rein_err err = {0};
	assert_int_equal(rein_model_provider_new(c, &rp, &err), REIN_OK);
	assert_string_equal(rein_model_provider_type(rp), "replay");
	json_decref(c);
	/* the server is not needed: point io at nothing by not using it */
	for (int i = 3; i >= 0; i--) {
		got g;
		json_object_set_new(reqs[i], "stream", json_boolean(i % 2 == 0)); /* not in the hash */
		call(fx->io, rp, reqs[i], &g);
		assert_true(g.ok);
		assert_true(json_is_true(json_object_get(g.response, "replayed")));
		json_t *a = json_deep_copy(g.response), *b = json_deep_copy(resps[i]);
		const char *const volatile_keys[] = {"latency_ms", "replayed", "cost_usd", "ttft_ms"};
		for (size_t k = 0; k < 4; k++) {
			json_object_del(a, volatile_keys[k]);
			json_object_del(b, volatile_keys[k]);
		}
		assert_true(json_equal(a, b));
		json_decref(a);
		json_decref(b);
		got_free(&g);
	}
	/* an unknown request: a permanent miss naming its hash */
	json_t *other = simple_req(false);
	json_object_set_new(other, "temperature", json_real(0.1));
	char h[REIN_MODEL_HASH_HEX];
	assert_int_equal(rein_model_request_hash(other, h, NULL), REIN_OK);
	got g;
	call(fx->io, rp, other, &g);
	assert_false(g.ok);
	assert_false(g.transient);
	assert_string_equal(g.outcome, "replay_miss");
	assert_non_null(strstr(g.error, h));
	got_free(&g);
	rein_model_provider_free(rp);

	/* on_miss sequence: unknown requests get the recorded answers in order */
	json_t *c2 = json_pack("{s:s,s:O,s:s}", "type", "replay", "responses", recording,
			       "on_miss", "sequence");
	assert_int_equal(rein_model_provider_new(c2, &rp, &err), REIN_OK);
	json_decref(c2);
	for (int i = 0; i < 4; i++) {
		call(fx->io, rp, other, &g);
		assert_true(g.ok);
		assert_true(json_equal(json_object_get(g.response, "tool_calls"),
				       json_object_get(resps[i], "tool_calls")));
		got_free(&g);
	}
	call(fx->io, rp, other, &g);
	assert_string_equal(g.outcome, "replay_miss");
	got_free(&g);
	rein_model_provider_free(rp);

	/* a bare array is a sequence; a recorded failure replays as one */
	json_t *c3 = J("{\"type\": \"replay\", \"responses\": [{\"$error\": {\"outcome\": \"http_429\","
		       " \"transient\": true, \"status\": 429, \"retry_after_ms\": 1000,"
		       " \"error\": \"slow down\"}}, {\"text\": \"ok\", \"tool_calls\": [],"
		       " \"finish_reason\": \"stop\", \"model\": \"m\", \"usage\": {\"input\": 1}}]}");
	assert_int_equal(rein_model_provider_new(c3, &rp, &err), REIN_OK);
	json_decref(c3);
	call(fx->io, rp, other, &g);
	assert_string_equal(g.outcome, "http_429");
	assert_true(g.transient);
	assert_int_equal(g.retry_after_ms, 1000);
	got_free(&g);
	call(fx->io, rp, other, &g);
	assert_true(g.ok);
	assert_member(g.response, "text", "ok");
	got_free(&g);
	rein_model_provider_free(rp);

	json_decref(other);
	for (int i = 0; i < 4; i++) {
		json_decref(reqs[i]);
		json_decref(resps[i]);
	}
	json_decref(recording);
	rein_free(cfg);
	rein_free(path);
	rm_rf(dir);
	free(dir);
}

static void test_provider_config(void **state)
{
	static const char *const bad[] = {
		"{\"type\": \"gemini\"}",
		"{\"type\": \"openai\", \"base_url\": \"ftp://x\"}",
		"{\"type\": \"openai\", \"api_key\": \"sk-inline\"}",
		"{\"type\": \"openai\", \"price\": {\"input\": -1}}",
		"{\"type\": \"openai\", \"headers\": {\"X-A\": 3}}",
		"{\"type\": \"openai\", \"max_tokens_field\": \"tokens\"}",
		"{\"type\": \"replay\"}",
		"{\"type\": \"replay\", \"responses\": 3}",
		"{\"type\": \"replay\", \"file\": \"/nonexistent/replay.json\"}",
		"{\"type\": \"anthropic\", \"responses\": {}}",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		json_t *c = J(bad[i]);
		rein_model_provider *p = NULL;
		rein_err err = {0};
		assert_int_not_equal(rein_model_provider_new(c, &p, &err), REIN_OK);
		assert_null(p);
		assert_true(err.msg[0] != '\0');
		json_decref(c);
	}
	/* prices: cached and cache_write default to input */
	json_t *c = J("{\"type\": \"anthropic\", \"price\": {\"input\": 3, \"output\": 15}}");
	rein_model_provider *p = NULL;
	assert_int_equal(rein_model_provider_new(c, &p, NULL), REIN_OK);
	const rein_model_price *pr = rein_model_provider_price(p);
	assert_true(pr->cached == 3 && pr->cache_write == 3 && pr->output == 15);
	rein_model_provider_free(p);
	json_decref(c);
}

/* Every allocation failing in turn while parsing: a clean verdict, no leak. */
static void test_parse_alloc_faults(void **state)
{
	char *full = rein_sprintf("%sevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
				  AN_STREAM);
	char *oa = rein_sprintf("%sdata: [DONE]\n\n", OA_STREAM);
	for (long n = 1; n < 400; n++) {
		model_parsed p;
		rein_fault_arm(REIN_FAULT_ALLOC, n);
		model_anthropic_parse(full, strlen(full), true, NULL, &p);
		model_parsed_free(&p);
		rein_fault_arm(REIN_FAULT_ALLOC, n);
		model_openai_parse(oa, strlen(oa), true, NULL, &p);
		model_parsed_free(&p);
	}
	rein_fault_arm(REIN_FAULT_ALLOC, 0);
	rein_free(full);
	rein_free(oa);
}


/* Every allocation of a replayed call failing in turn: either the call is
 * refused (and cb never runs) or cb runs exactly once; nothing leaks. */
static void test_call_alloc_faults(void **state)
{
	rein_io *io = NULL;
	assert_int_equal(rein_io_new(&io, NULL), REIN_OK);
	json_t *req = simple_req(false);
	json_t *rec = json_object();
	json_t *resp = J("{\"text\": \"t\", \"tool_calls\": [], \"finish_reason\": \"stop\","
			 " \"model\": \"m\", \"usage\": {\"input\": 3, \"output\": 1}}");
	assert_int_equal(rein_model_record(rec, req, resp, NULL), REIN_OK);
	json_t *cfg = json_pack("{s:s,s:O}", "type", "replay", "responses", rec);
	rein_model_provider *p = NULL;
	assert_int_equal(rein_model_provider_new(cfg, &p, NULL), REIN_OK);
	int completed = 0, refused = 0;
	for (long n = 1; n < 200; n++) {
		got g = {0};
		rein_fault_arm(REIN_FAULT_ALLOC, n);
		int rc = rein_model_call(io, p, req, on_model, &g, NULL);
		rein_fault_arm(REIN_FAULT_ALLOC, 0);
		if (rc != REIN_OK) {
			refused++;
			rein_io_wait(io, 0);
			assert_int_equal(g.ncalls, 0);
			continue;
		}
		wait_for(io, &g.ncalls, 1);
		completed++;
		got_free(&g);
	}
	assert_true(completed > 0 && refused > 0);
	rein_model_provider_free(p);
	json_decref(cfg);
	json_decref(rec);
	json_decref(resp);
	json_decref(req);
	rein_io_free(io);
}

/* ---- the router: a tier's breaker ---------------------------------------- */

typedef struct routed_seen {
	bool done;
	size_t n;
	char type[2][32];
	char detail[2][64]; /* model.breaker: state; model.attempt: outcome */
} routed_seen;

static void routed_copy(routed_seen *s, const rein_model_routed *rt)
{
	s->n = rt->n;
	for (size_t i = 0; i < rt->n; i++) {
		assert_non_null(rt->ev[i].data);
		snprintf(s->type[i], sizeof s->type[i], "%s", rt->ev[i].type);
		const char *d = json_string_value(json_object_get(rt->ev[i].data, "state"));
		if (d == NULL)
			d = json_string_value(json_object_get(rt->ev[i].data, "outcome"));
		snprintf(s->detail[i], sizeof s->detail[i], "%s", d ? d : "");
	}
}

static bool routed_cb(void *ud, const rein_model_routed *rt)
{
	routed_seen *s = ud;
	routed_copy(s, rt);
	s->done = true;
	return true;
}

/* One call of tier 0; waits for its outcome. *sent: it went to the provider. */
static routed_seen route(rein_model_router *r, rein_io *io, const rein_spec *spec, bool *sent)
{
	routed_seen s = {0};
	rein_model_routed now = {0};
	rein_err err = {0};
	json_t *req = J("{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}");
	assert_int_equal(rein_model_router_call(r, io, spec, 0, req, 1, routed_cb, &s, &now, &err),
			 REIN_OK);
	*sent = now.n == 0;
	if (now.n) {
		routed_copy(&s, &now);
		rein_model_routed_clear(&now);
	}
	while (*sent && !s.done)
		rein_io_wait(io, 1000);
	json_decref(req);
	return s;
}

/* breaker: under a tier sets its provider's breaker: 2 transient failures in
 * a row open it, calls are refused until the cooldown, the probe's failure
 * opens it again; a tier without one keeps the defaults (5 in a row, 30 s). */
static void test_router_breaker(void **state)
{
	(void)state;
	const char *yaml = "rein: 1\nname: br\nmodels:\n"
			   "  a: { provider: replay, model: m, file: rec.json,\n"
			   "       breaker: { failures: 2, cooldown_s: 10 } }\n"
			   "  b: { provider: replay, model: m, file: rec.json }\n"
			   "steps:\n  s: { llm: { model: a, prompt: hi }, next: done }\n"
			   "  done: { end: succeeded }\n";
	const char *fail = "{\"$error\": {\"outcome\": \"http_429\", \"transient\": true, "
			   "\"status\": 429, \"error\": \"slow down\"}}";
	char rec[1024];
	snprintf(rec, sizeof rec, "[%s, %s, %s, %s]", fail, fail, fail, fail);
	json_t *bundle = json_pack("{s:{s:s, s:s}}", "files", "workflow.yaml", yaml, "rec.json", rec);
	rein_script *sb = NULL;
	rein_spec *spec = NULL;
	rein_err err = {0};
	assert_int_equal(rein_script_new(&sb), REIN_OK);
	int rc = rein_spec_load_bundle(bundle, "t", sb, &spec, &err);
	if (rc != REIN_OK)
		rein_diags_print(&err.diags, stderr);
	rein_err_clear(&err);
	assert_int_equal(rc, REIN_OK);
	assert_int_equal(spec->tiers[0].breaker.failures, 2);
	assert_int_equal(spec->tiers[0].breaker.window_ms, 0);
	assert_int_equal(spec->tiers[0].breaker.cooldown_ms, 10000);
	assert_int_equal(spec->tiers[1].breaker.failures, 5);
	assert_int_equal(spec->tiers[1].breaker.window_ms, 0);
	assert_int_equal(spec->tiers[1].breaker.cooldown_ms, 30000);

	rein_manual_clock clock;
	rein_manual_clock_init(&clock, 1700000000000);
	rein_io *io = NULL;
	rein_model_router *r = NULL;
	assert_int_equal(rein_io_new(&io, &err), REIN_OK);
	assert_int_equal(rein_model_router_new(&(rein_model_router_opts){.clock = &clock.clock}, &r,
					       &err), REIN_OK);
	bool sent;
	routed_seen s = route(r, io, spec, &sent);
	assert_true(sent);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.type[0], EV(MODEL_ATTEMPT));
	assert_string_equal(s.detail[0], "http_429");
	s = route(r, io, spec, &sent); /* the second in a row opens it */
	assert_true(sent);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.type[0], EV(MODEL_BREAKER));
	assert_string_equal(s.detail[0], "opened");
	assert_string_equal(s.type[1], EV(MODEL_ATTEMPT));
	clock.now += 9999; /* still cooling down: refused without a call */
	s = route(r, io, spec, &sent);
	assert_false(sent);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.detail[0], "breaker_open");
	clock.now += 1; /* the probe goes out, fails: open again */
	s = route(r, io, spec, &sent);
	assert_true(sent);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.detail[0], "opened");
	s = route(r, io, spec, &sent);
	assert_false(sent);
	assert_string_equal(s.detail[0], "breaker_open");
	assert_int_equal(rein_model_router_inflight(r), 0);
	rein_io_free(io);
	rein_model_router_free(r);
	rein_spec_free(spec);
	json_decref(bundle);

	/* a bad policy is the spec's error, with its place */
	const char *bad = "rein: 1\nname: br\nmodels:\n"
			  "  a: { provider: replay, model: m, breaker: { failures: 0, every: 3 } }\n"
			  "steps:\n  done: { end: succeeded }\n";
	bundle = json_pack("{s:{s:s}}", "files", "workflow.yaml", bad);
	rein_err be = {0};
	assert_int_not_equal(rein_spec_load_bundle(bundle, "t", sb, &spec, &be), REIN_OK);
	assert_true(be.diags.n >= 2); /* failures >= 1, and the unknown key */
	rein_err_clear(&be);
	json_decref(bundle);
	rein_script_free(sb);
}

/* server.address / server.port of a provider, from its base_url. */
static void test_provider_server(void **state)
{
	(void)state;
	static const struct {
		const char *cfg, *addr;
		int port;
	} c[] = {{"{\"type\": \"openai\", \"base_url\": \"http://127.0.0.1:8080/v1\"}", "127.0.0.1", 8080},
		 {"{\"type\": \"openai\"}", "api.openai.com", 443},
		 {"{\"type\": \"anthropic\"}", "api.anthropic.com", 443},
		 {"{\"type\": \"openai\", \"base_url\": \"http://u:secret@[::1]:8080\"}", "::1", 8080},
		 {"{\"type\": \"openai\", \"base_url\": \"http://models.local/\"}", "models.local", 80}};
	for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
		rein_model_provider *p = provider(c[i].cfg, 8080);
		char *addr = NULL;
		int port = 0;
		assert_int_equal(rein_model_provider_server(p, &addr, &port), REIN_OK);
		assert_string_equal(addr, c[i].addr);
		assert_int_equal(port, c[i].port);
		rein_free(addr);
		rein_model_provider_free(p);
	}
	rein_model_provider *r = provider("{\"type\": \"replay\", \"responses\": []}", 0);
	char *addr = NULL;
	int port = 0;
	assert_int_equal(rein_model_provider_server(r, &addr, &port), REIN_ENOTFOUND);
	assert_null(addr);
	rein_model_provider_free(r);
}

int main(void)
{
	rein_init();
	const struct CMUnitTest pure[] = {
		cmocka_unit_test(test_sse_splits),
		cmocka_unit_test(test_provider_server),
		cmocka_unit_test(test_render_openai),
		cmocka_unit_test(test_render_openai_strict),
		cmocka_unit_test(test_render_anthropic),
		cmocka_unit_test(test_request_check),
		cmocka_unit_test(test_hash_and_cost),
		cmocka_unit_test(test_parse_openai), cmocka_unit_test(test_parse_nul),
		cmocka_unit_test(test_parse_anthropic),
		cmocka_unit_test(test_provider_config),
		cmocka_unit_test(test_parse_alloc_faults),
		cmocka_unit_test(test_call_alloc_faults),
		cmocka_unit_test(test_router_breaker),
	};
	const struct CMUnitTest loopback[] = {
		cmocka_unit_test_setup_teardown(test_text_usage_cost, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_tool_calls, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_errors, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_structured_output, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_api_key, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_connect_refused, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_replay_roundtrip, fx_setup, fx_teardown),
	};
	int failed = cmocka_run_group_tests_name("model (pure)", pure, NULL, NULL);
	failed += cmocka_run_group_tests_name("model (loopback)", loopback, server_start,
					      server_stop);
	return failed ? 1 : 0;
}
