/*
 * Unit tests for the schema layer: the exact pointer, keyword and message of
 * errors, compile errors for bad schemas and unresolvable references, file
 * references through base_dir, the no-allocation promise for valid
 * instances, and a fault-injection sweep over compile and validate.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "schema.h"

static json_t *parse(const char *text)
{
	json_error_t je;
	json_t *j = json_loads(text, JSON_DECODE_ANY, &je);
	if (j == NULL)
		fail_msg("bad test JSON: %s: %s", text, je.text);
	return j;
}

static rein_schema *compile_ok(const char *text)
{
	json_t *j = parse(text);
	rein_schema *s = NULL;
	rein_err err = {0};
	int rc = rein_schema_compile(j, NULL, &s, &err);
	json_decref(j);
	if (rc != REIN_OK)
		fail_msg("compile failed: %s", err.msg);
	return s;
}

/* Validates instance text and checks there is exactly one error, as given. */
static void expect_one(const char *schema, const char *instance, const char *pointer,
		       const char *keyword, const char *message)
{
	rein_schema *s = compile_ok(schema);
	json_t *inst = parse(instance);
	rein_schema_errors errs = {0};
	assert_false(rein_schema_validate(s, inst, &errs));
	assert_int_equal(errs.n, 1);
	assert_string_equal(errs.v[0].pointer, pointer);
	assert_string_equal(errs.v[0].keyword, keyword);
	assert_string_equal(errs.v[0].message, message);
	assert_false(rein_schema_validate(s, inst, NULL));
	rein_schema_errors_free(&errs);
	json_decref(inst);
	rein_schema_free(s);
}

static void test_missing_required(void **state)
{
	(void)state;
	expect_one("{\"type\":\"object\",\"required\":[\"id\"],"
		   "\"properties\":{\"id\":{\"type\":\"string\"}}}",
		   "{\"name\":\"x\"}", "", "required", "missing required property \"id\"");
}

static void test_nested_array_item_type(void **state)
{
	(void)state;
	expect_one("{\"properties\":{\"steps\":{\"type\":\"array\",\"items\":"
		   "{\"properties\":{\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}}}}}}}",
		   "{\"steps\":[{\"tags\":[\"a\"]},{\"tags\":[\"b\",3]}]}", "/steps/1/tags/1", "type",
		   "expected string, got integer");
	expect_one("{\"type\":[\"string\",\"null\"]}", "1.5", "", "type",
		   "expected one of [null, string], got number");
}

static void test_additional_properties_false(void **state)
{
	(void)state;
	expect_one("{\"properties\":{\"a\":true},\"additionalProperties\":false}",
		   "{\"a\":1,\"b/c\":2}", "/b~1c", "additionalProperties",
		   "property \"b/c\" is not allowed");
}

static void test_other_messages(void **state)
{
	(void)state;
	expect_one("{\"minLength\":3}", "\"h\xc3\xa9\"", "", "minLength",
		   "string is shorter than 3 characters");
	expect_one("{\"maximum\":10}", "11", "", "maximum", "11 is greater than the maximum 10");
	expect_one("{\"pattern\":\"^\\\\d+$\"}", "\"12a\"", "", "pattern",
		   "string does not match the pattern \"^\\d+$\"");
	expect_one("{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"null\"}]}", "1", "", "anyOf",
		   "value does not match any of the 2 schemas in anyOf");
	expect_one("{\"$defs\":{\"p\":{\"type\":\"integer\"}},\"items\":{\"$ref\":\"#/$defs/p\"}}",
		   "[1,\"x\"]", "/1", "type", "expected integer, got string");
	expect_one("{\"unevaluatedProperties\":false,\"allOf\":[{\"properties\":{\"a\":true}}]}",
		   "{\"a\":1,\"z\":2}", "/z", "unevaluatedProperties",
		   "property \"z\" is not allowed");
}

static void test_errors_format(void **state)
{
	(void)state;
	rein_schema *s = compile_ok("{\"required\":[\"a\",\"b\"]}");
	json_t *inst = parse("{}");
	rein_schema_errors errs = {0};
	assert_false(rein_schema_validate(s, inst, &errs));
	char *text = rein_schema_errors_format(&errs);
	assert_string_equal(text, ": missing required property \"a\" (required)\n"
				  ": missing required property \"b\" (required)\n");
	rein_free(text);
	rein_schema_errors_free(&errs);
	json_decref(inst);
	rein_schema_free(s);
}

static void expect_compile_error(const char *schema, const char *needle)
{
	json_t *j = parse(schema);
	rein_schema *s = NULL;
	rein_err err = {0};
	rein_schema_opts opts = {.name = "test.json"};
	assert_int_equal(rein_schema_compile(j, &opts, &s, &err), REIN_ESCHEMA);
	assert_null(s);
	assert_int_equal(err.code, REIN_ESCHEMA);
	if (strstr(err.msg, needle) == NULL)
		fail_msg("message \"%s\" lacks \"%s\"", err.msg, needle);
	json_decref(j);
}

static void test_compile_errors(void **state)
{
	(void)state;
	expect_compile_error("{\"properties\":{\"a\":{\"type\":\"strin\"}}}",
			     "test.json: at \"/properties/a/type\": \"type\" must be a type name");
	expect_compile_error("{\"minLength\":-1}", "\"minLength\" must be a non-negative integer");
	expect_compile_error("{\"pattern\":\"(?=a)\"}", "lookaround");
	expect_compile_error("{\"allOf\":[]}", "\"allOf\" must be a non-empty array");
	expect_compile_error("{\"properties\":{\"a\":3}}", "a schema must be an object or a boolean");
	expect_compile_error("{\"$ref\":\"#/$defs/missing\"}",
			     "cannot resolve \"#/$defs/missing\"");
	expect_compile_error("{\"$ref\":\"http://example.com/nowhere.json\"}",
			     "no schema is known for \"http://example.com/nowhere.json\"");
	expect_compile_error("{\"$ref\":\"other.json\"}", "cannot resolve \"other.json\"");
}

static void test_base_dir_and_maps(void **state)
{
	(void)state;
	const char *dir = "tests/conformance/JSON-Schema-Test-Suite/remotes";
	json_t *j = parse("{\"properties\":{\"n\":{\"$ref\":\"integer.json\"},"
			  "\"m\":{\"$ref\":\"http://x.test/nested/string.json\"}}}");
	rein_schema_map map = {.prefix = "http://x.test/", .dir = dir};
	rein_schema_opts opts = {.base_dir = dir, .maps = &map, .nmaps = 1};
	rein_schema *s = NULL;
	rein_err err = {0};
	if (rein_schema_compile(j, &opts, &s, &err) != REIN_OK)
		fail_msg("%s", err.msg);
	json_t *good = parse("{\"n\":1,\"m\":\"x\"}"), *bad = parse("{\"n\":\"1\",\"m\":2}");
	assert_true(rein_schema_validate(s, good, NULL));
	rein_schema_errors errs = {0};
	assert_false(rein_schema_validate(s, bad, &errs));
	assert_int_equal(errs.n, 2);
	assert_string_equal(errs.v[0].pointer, "/n");
	assert_string_equal(errs.v[1].pointer, "/m");
	rein_schema_errors_free(&errs);
	json_decref(good);
	json_decref(bad);
	rein_schema_free(s);
	/* escaping the base directory is refused */
	json_decref(j);
	expect_compile_error("{\"$ref\":\"../../README.md\"}", "cannot resolve");
}

static void test_metaschema_builtin(void **state)
{
	(void)state;
	rein_schema *s = compile_ok("{\"$ref\":\"https://json-schema.org/draft/2020-12/schema\"}");
	json_t *good = parse("{\"type\":\"object\",\"properties\":{\"a\":{\"minLength\":1}}}");
	json_t *bad = parse("{\"properties\":{\"a\":{\"minLength\":-1}}}");
	assert_true(rein_schema_validate(s, good, NULL));
	assert_false(rein_schema_validate(s, bad, NULL));
	json_decref(good);
	json_decref(bad);
	rein_schema_free(s);
	s = compile_ok("{\"$ref\":\"http://json-schema.org/draft-07/schema#\"}");
	bad = parse("{\"type\":5}");
	assert_false(rein_schema_validate(s, bad, NULL));
	json_decref(bad);
	rein_schema_free(s);
}

static void test_infinite_recursion(void **state)
{
	(void)state;
	rein_schema *s = compile_ok("{\"$ref\":\"#\"}");
	json_t *inst = parse("{}");
	rein_schema_errors errs = {0};
	assert_false(rein_schema_validate(s, inst, &errs));
	assert_int_equal(errs.n, 1);
	assert_string_equal(errs.v[0].keyword, "$ref");
	rein_schema_errors_free(&errs);
	json_decref(inst);
	rein_schema_free(s);
}

static const char *complex_schema =
	"{\"$id\":\"https://rein.test/s\",\"type\":\"object\",\"required\":[\"id\"],"
	"\"properties\":{\"id\":{\"type\":\"string\",\"pattern\":\"^[a-z]\\\\w*$\"},"
	"\"n\":{\"type\":\"integer\",\"minimum\":0,\"multipleOf\":2},"
	"\"tags\":{\"type\":\"array\",\"items\":{\"$ref\":\"#tag\"},\"uniqueItems\":true},"
	"\"kids\":{\"type\":\"array\",\"items\":{\"$dynamicRef\":\"#node\"}}},"
	"\"$dynamicAnchor\":\"node\",\"unevaluatedProperties\":false,"
	"\"anyOf\":[{\"properties\":{\"x\":true}},{\"properties\":{\"y\":true}}],"
	"\"$defs\":{\"tag\":{\"$anchor\":\"tag\",\"enum\":[\"a\",\"b\",\"c\"]}}}";

/* A valid instance costs no allocation, even with unevaluated* in play. */
static void test_no_alloc_when_valid(void **state)
{
	(void)state;
	rein_schema *s = compile_ok(complex_schema);
	json_t *inst = parse("{\"id\":\"abc\",\"n\":4,\"tags\":[\"a\",\"b\"],\"x\":1,"
			     "\"kids\":[{\"id\":\"k\",\"y\":2}]}");
	rein_fault_arm(REIN_FAULT_ALLOC, 0);
	assert_true(rein_schema_validate(s, inst, NULL));
	rein_schema_errors errs = {0};
	assert_true(rein_schema_validate(s, inst, &errs));
	assert_int_equal(rein_fault_count(REIN_FAULT_ALLOC), 0);
	json_decref(inst);
	rein_schema_free(s);
}

/* Every allocation failure in compile and validate is a clean error, no leak. */
static void test_fault_sweep(void **state)
{
	(void)state;
	json_t *j = parse(complex_schema);
	json_t *inst = parse("{\"n\":3,\"tags\":[\"a\",\"a\",\"z\"],\"q\":1,\"kids\":[{\"w\":1}]}");
	bool compiled = false;
	for (long n = 1; n < 5000 && !compiled; n++) {
		rein_schema *s = NULL;
		rein_err err = {0};
		rein_fault_arm(REIN_FAULT_ALLOC, n);
		int rc = rein_schema_compile(j, NULL, &s, &err);
		rein_fault_arm(REIN_FAULT_ALLOC, 0);
		if (rc == REIN_OK) {
			compiled = true;
			for (long m = 1; m < 5000; m++) {
				rein_schema_errors errs = {0};
				rein_fault_arm(REIN_FAULT_ALLOC, m);
				bool ok = rein_schema_validate(s, inst, &errs);
				long used = rein_fault_count(REIN_FAULT_ALLOC);
				rein_fault_arm(REIN_FAULT_ALLOC, 0);
				assert_false(ok);
				rein_schema_errors_free(&errs);
				if (used < m)
					break;
			}
			rein_schema_free(s);
		} else {
			assert_int_equal(rc, REIN_ENOMEM);
			assert_null(s);
		}
	}
	assert_true(compiled);
	json_decref(inst);
	json_decref(j);
}

int main(void)
{
	rein_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_missing_required),
		cmocka_unit_test(test_nested_array_item_type),
		cmocka_unit_test(test_additional_properties_false),
		cmocka_unit_test(test_other_messages),
		cmocka_unit_test(test_errors_format),
		cmocka_unit_test(test_compile_errors),
		cmocka_unit_test(test_base_dir_and_maps),
		cmocka_unit_test(test_metaschema_builtin),
		cmocka_unit_test(test_infinite_recursion),
		cmocka_unit_test(test_no_alloc_when_valid),
		cmocka_unit_test(test_fault_sweep),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
