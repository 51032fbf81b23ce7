/*
 * Tests for the script layer: expression and chunk results, lazy steps,
 * templates, the JSON<->Lua bridge, and the sandbox's escapes and bombs. Most
 * cases are rows in tables; each bomb is followed by a normal evaluation on
 * the same sandbox to show it is still usable.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "script.h"

static rein_script *S;

static const json_t *g_input, *g_steps;
static int step_calls;

static const json_t *step_out(void *ud, const char *name)
{
	(void)ud;
	step_calls++;
	json_t *st = json_object_get(g_steps, name);
	return st;
}

static rein_script_ctx make_ctx(void)
{
	rein_script_ctx c = {.input = g_input, .step_out = step_out};
	return c;
}

static json_t *J(const char *text)
{
	json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	assert_non_null(j);
	return j;
}

static int setup(void **state)
{
	(void)state;
	rein_init();
	assert_int_equal(rein_script_new(&S), REIN_OK);
	g_input = J("{\"amount\": 7, \"a\": 2, \"b\": 3.5, \"items\": [1, 2, 3], \"empty\": [],"
		    " \"obj\": {}, \"nothing\": null, \"name\": \"ada\"}");
	g_steps = J("{\"s1\": {\"n\": 41, \"category\": \"refund\"}, \"s2\": [\"x\", null]}");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	rein_script_free(S);
	json_decref((json_t *)g_input);
	json_decref((json_t *)g_steps);
	return 0;
}

/* Evaluates and compares the canonical JSON of the result (or the error). */
static void expect(const char *src, int kind, int want_rc, const char *want)
{
	rein_script_ctx c = make_ctx();
	rein_err err = {0};
	json_t *r = NULL;
	int rc = rein_script_eval(S, src, kind, &c, &r, &err);
	if (rc != want_rc)
		fail_msg("%s: rc %d (%s), want %d", src, rc, err.msg, want_rc);
	if (rc == REIN_OK) {
		char *d = rein_json_dump(r);
		if (strcmp(d, want) != 0)
			fail_msg("%s: got %s, want %s", src, d, want);
		rein_free(d);
		json_decref(r);
	} else if (strstr(err.msg, want) == NULL) {
		fail_msg("%s: message \"%s\" lacks \"%s\"", src, err.msg, want);
	}
}

struct row {
	const char *src;
	int kind;
	int rc;
	const char *want; /* canonical JSON, or a substring of the error message */
};

#define E REIN_SCRIPT_EXPR
#define C REIN_SCRIPT_CHUNK

static const struct row results[] = {
	{"1 + 2", E, REIN_OK, "3"},
	{"7 / 2", E, REIN_OK, "3.5"},
	{"input.amount > 5 and 'big' or 'small'", E, REIN_OK, "\"big\""},
	{"input.a + input.b", E, REIN_OK, "5.5"},
	{"nil", E, REIN_OK, "null"},
	{"null", E, REIN_OK, "null"},
	{"input.nothing == null", E, REIN_OK, "true"},
	{"#input.items", E, REIN_OK, "3"},
	{"input.items", E, REIN_OK, "[1,2,3]"},
	{"input.empty", E, REIN_OK, "[]"},
	{"input.obj", E, REIN_OK, "{}"},
	{"{}", E, REIN_OK, "{}"},
	{"json.array()", E, REIN_OK, "[]"},
	{"{1, 2, 'x'}", E, REIN_OK, "[1,2,\"x\"]"},
	{"{a = {b = {true, false}}}", E, REIN_OK, "{\"a\":{\"b\":[true,false]}}"},
	{"input", E, REIN_OK,
	 "{\"a\":2,\"amount\":7,\"b\":3.5,\"empty\":[],\"items\":[1,2,3],\"name\":\"ada\","
	 "\"obj\":{}}"}, /* a null member is nil in Lua: absent */
	{"string.upper(input.name) .. ('x'):rep(2)", E, REIN_OK, "\"ADAxx\""},
	{"math.floor(3.7) + math.max(1, 2)", E, REIN_OK, "5"},
	{"2^53", E, REIN_OK, "9007199254740992.0"},
	{"table.concat({'a', 'b'}, '-')", E, REIN_OK, "\"a-b\""},
	{"utf8.char(233)", E, REIN_OK, "\"\xc3\xa9\""},
	{"return {total = input.a + input.b}", C, REIN_OK, "{\"total\":5.5}"},
	{"local t = {} for i = 1, 3 do t[i] = i * i end return t", C, REIN_OK, "[1,4,9]"},
	{"x = 1", C, REIN_OK, "null"},
	{"return type(x)", C, REIN_OK, "\"nil\""},
	{"local ok, e = pcall(error, 'boom') return {ok = ok, e = e}", C, REIN_OK,
	 "{\"e\":\"boom\",\"ok\":false}"},
	{"return select('#', 1, 2)", C, REIN_OK, "2"},
	{"getmetatable(input.items)", E, REIN_OK, "\"array\""},
	/* errors */
	{"1 +", E, REIN_ESCRIPT, "line 1:"},
	{"return = 1", C, REIN_ESCRIPT, "line 1: unexpected symbol"},
	{"local a = 1\nlocal b = 2\nreturn a +", C, REIN_ESCRIPT, "line 3:"},
	{"nosuch.field", E, REIN_ESCRIPT, "line 1: attempt to index a nil value"},
	{"error('custom')", E, REIN_ESCRIPT, "line 1: custom"},
	{"error({})", E, REIN_ESCRIPT, "error object is a table value"},
	{"function() end", E, REIN_ESCRIPT, "cannot convert a function to JSON at $"},
	{"{a = {f = print or function() end}}", E, REIN_ESCRIPT, "function to JSON at $.a.f"},
	{"{[true] = 1}", E, REIN_ESCRIPT, "table key must be a string at $"},
	{"{1, 2, x = 3}", E, REIN_ESCRIPT, "table key must be a string at $"},
	{"0/0", E, REIN_ESCRIPT, "NaN or infinite at $"},
	{"{n = math.huge}", E, REIN_ESCRIPT, "NaN or infinite at $.n"},
	{"'\\xff'", E, REIN_ESCRIPT, "not valid UTF-8"},
	{"local t = {} t.self = t return t", C, REIN_ESCRIPT, "cycle at $.self"},
	{"local t = {} local c = t for i = 1, 70 do c.x = {} c = c.x end return t", C,
	 REIN_ESCRIPT, "deeper than 64"},
};

static void test_results(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof results / sizeof results[0]; i++)
		expect(results[i].src, results[i].kind, results[i].rc, results[i].want);
}

static void test_check(void **state)
{
	(void)state;
	rein_err err = {0};
	assert_int_equal(rein_script_check(S, "out.category == 'refund'", E, &err), REIN_OK);
	assert_int_equal(rein_script_check(S, "a = = 1", C, &err), REIN_ESCRIPT);
	assert_string_equal(err.msg, "line 1: unexpected symbol near '='");
	rein_err_clear(&err);
	assert_int_equal(rein_script_check(S, "x\n\n+ +", E, &err), REIN_ESCRIPT);
	assert_non_null(strstr(err.msg, "line 3:"));
}

static void test_out_and_vars(void **state)
{
	(void)state;
	json_t *out = J("{\"category\": \"refund\"}");
	json_t *vars = J("{\"why\": \"because\", \"limit\": 3}");
	json_t *run = J("{\"id\": \"r1\", \"workflow\": \"w\", \"version\": 2}");
	rein_script_ctx c = {.input = g_input, .out = out, .vars = vars, .run = run};
	rein_err err = {0};
	json_t *r = NULL;
	assert_int_equal(rein_script_eval(S, "out.category == 'refund' and input.amount > 5", E,
					  &c, &r, &err),
			 REIN_OK);
	assert_true(json_is_true(r));
	json_decref(r);
	assert_int_equal(rein_script_eval(S, "why .. limit .. run.id .. run.version", E, &c, &r,
					  &err),
			 REIN_OK);
	assert_string_equal(json_string_value(r), "because3r12");
	json_decref(r);
	/* NULL context: everything nil. */
	assert_int_equal(rein_script_eval(S, "input == nil and steps.x == nil", E, NULL, &r, &err),
			 REIN_OK);
	assert_true(json_is_true(r));
	json_decref(r);
	json_decref(out);
	json_decref(vars);
	json_decref(run);
}

static void test_lazy_steps(void **state)
{
	(void)state;
	step_calls = 0;
	expect("return {n = (steps.s1 and steps.s1.out.n or 0) + 1}", C, REIN_OK, "{\"n\":42}");
	assert_int_equal(step_calls, 1); /* resolved once, cached for the evaluation */
	step_calls = 0;
	expect("1", E, REIN_OK, "1");
	assert_int_equal(step_calls, 0); /* nothing resolved when not accessed */
	expect("steps.nope == nil", E, REIN_OK, "true");
	/* ["x", null]: the null is a hole, and a trailing hole is not counted */
	expect("steps.s2.out[2] == nil and #steps.s2.out", E, REIN_OK, "1");
	expect("steps.s1.out.category", E, REIN_OK, "\"refund\"");
}

/* on_read: told of the first read of each root an evaluation makes (the
 * provenance of a code step's output, of a template's value). */
static char reads[256];

static void note_read(void *ud, int what, const char *name)
{
	(void)ud;
	char one[64];
	snprintf(one, sizeof one, "%s%s ", what == REIN_READ_INPUT ? "input" : what == REIN_READ_OUT ? "out" : "steps.",
		 what == REIN_READ_STEP ? name : "");
	strncat(reads, one, sizeof reads - strlen(reads) - 1);
}

static void test_on_read(void **state)
{
	(void)state;
	static const struct {
		const char *src;
		int kind;
		const char *want;
	} rows[] = {
		{"return {a = steps.s1.out.n, b = input.a, c = input.b, d = steps.s1.out.category}", C, "steps.s1 input "},
		{"1 + 1", E, ""},
		{"out", E, "out "},
		{"steps.nope == nil and steps.s2 ~= nil", E, "steps.nope steps.s2 "},
		{"run == nil", E, ""}, /* run is the engine's own record, not data */
		{"pcall(function() return input.a end)", E, "input "}, /* seen however it is reached */
	};
	for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
		reads[0] = '\0';
		rein_script_ctx c = make_ctx();
		c.on_read = note_read;
		json_t *out = NULL;
		rein_err e = {0};
		assert_int_equal(rein_script_eval(S, rows[i].src, rows[i].kind, &c, &out, &e), REIN_OK);
		json_decref(out);
		assert_string_equal(reads, rows[i].want);
	}
	/* a template: what its expressions read */
	reads[0] = '\0';
	rein_script_ctx c = make_ctx();
	c.on_read = note_read;
	json_t *t = J("{\"x\": \"${input.name} / ${steps.s1.out.n}\", \"y\": \"fixed\"}"), *out = NULL;
	rein_err e = {0};
	assert_int_equal(rein_script_template(S, t, &c, &out, &e), REIN_OK);
	assert_string_equal(reads, "input steps.s1 ");
	json_decref(t);
	json_decref(out);
}

static void test_roundtrip(void **state)
{
	(void)state;
	static const char *const docs[] = {
		"[]", "{}", "null", "[null, 1, 2.5, \"s\", true, false]",
		"{\"a\": [], \"b\": {}, \"c\": [[]], \"d\": {\"e\": 1}}", "[1, null, 3]",
		"[[null, null, {}]]",
		"[{\"x\": [1, {\"y\": []}]}]", "-9007199254740993", "1e300", "\"a\\u0000b\"",
		"{\"\": 1}",
	};
	for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
		json_t *in = J(docs[i]);
		rein_script_ctx c = {.input = in};
		rein_err err = {0};
		json_t *r = NULL;
		int rc = rein_script_eval(S, "input", E, &c, &r, &err);
		if (rc != REIN_OK)
			fail_msg("%s: %s", docs[i], err.msg);
		if (!json_equal(in, r) || json_typeof(in) != json_typeof(r))
			fail_msg("%s did not round-trip", docs[i]);
		json_decref(r);
		json_decref(in);
	}
}

/* Issue 10 item 6: JSON null is nil wherever a script sees it. */
static void test_null_is_nil(void **state)
{
	(void)state;
	json_t *vars = J("{\"why\": null, \"n\": 0}");
	json_t *steps = J("{\"skipped\": null, \"ok\": {\"decision\": \"yes\"}}");
	const json_t *saved = g_steps;
	g_steps = steps;
	json_t *out = J("null");
	static const struct {
		const char *src, *want;
	} rows[] = {
		{"why or 'fallback'", "\"fallback\""},
		{"why == nil", "true"},
		{"why == null", "true"}, /* `null` is an unset global: nil */
		{"type(why)", "\"nil\""},
		{"out == nil and 'none' or 'some'", "\"none\""},
		{"steps.skipped.out == nil", "true"},
		{"(steps.skipped.out or {}).decision or 'default'", "\"default\""},
		{"steps.ok.out.decision", "\"yes\""},
		{"input.nothing or 'absent'", "\"absent\""},
		{"json.null", "null"},            /* the explicit null for output */
		{"{a = json.null}", "{\"a\":null}"},
		{"tostring(json.null)", "\"null\""},
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		rein_script_ctx c = make_ctx();
		c.vars = vars;
		c.out = out;
		rein_err err = {0};
		json_t *r = NULL;
		if (rein_script_eval(S, rows[i].src, E, &c, &r, &err) != REIN_OK)
			fail_msg("%s: %s", rows[i].src, err.msg);
		char *d = rein_json_dump(r);
		if (strcmp(d, rows[i].want) != 0)
			fail_msg("%s: got %s, want %s", rows[i].src, d, rows[i].want);
		rein_free(d);
		json_decref(r);
	}
	/* a template and `when` agree on the same value */
	rein_script_ctx c = make_ctx();
	c.vars = vars;
	json_t *tmpl = J("\"reason: ${why or 'fallback'}\""), *r = NULL;
	rein_err err = {0};
	assert_int_equal(rein_script_template(S, tmpl, &c, &r, &err), REIN_OK);
	assert_string_equal(json_string_value(r), "reason: fallback");
	json_decref(r);
	json_decref(tmpl);
	g_steps = saved;
	json_decref(steps);
	json_decref(vars);
	json_decref(out);
}

/* Issue 10 item 1: strings with NUL bytes cross the bridge both ways. */
static void test_nul_strings(void **state)
{
	(void)state;
	expect("'a\\0b'", E, REIN_OK, "\"a\\u0000b\"");
	json_t *in = J("{\"s\": \"x\\u0000y\"}");
	rein_script_ctx c = {.input = in};
	rein_err err = {0};
	json_t *r = NULL;
	assert_int_equal(rein_script_eval(S, "{n = #input.s, s = input.s .. '\\0'}", E, &c, &r, &err),
			 REIN_OK);
	char *d = rein_json_dump(r);
	assert_string_equal(d, "{\"n\":3,\"s\":\"x\\u0000y\\u0000\"}");
	/* and what was written reads back */
	json_t *back = rein_json_parse(d, strlen(d), &err);
	assert_non_null(back);
	assert_true(json_equal(back, r));
	json_decref(back);
	rein_free(d);
	json_decref(r);
	/* a NUL in a key would be written but never read back: refused */
	assert_int_equal(rein_script_eval(S, "{['a\\0b'] = 1}", E, &c, &r, &err), REIN_ESCRIPT);
	assert_non_null(strstr(err.msg, "NUL"));
	json_decref(in);
}

/* Issue 10 item 17: no process address reaches a script's output. */
static void test_tostring_deterministic(void **state)
{
	(void)state;
	expect("tostring({})", E, REIN_OK, "\"table\"");
	expect("tostring(input.items)", E, REIN_OK, "\"array\"");
	expect("tostring(print or tostring)", E, REIN_OK, "\"function\"");
	expect("tostring(setmetatable({}, {__tostring = function() return 'T' end}))", E, REIN_OK,
	       "\"T\"");
	expect("tostring(setmetatable({}, {__name = 'Point'}))", E, REIN_OK, "\"Point\"");
	expect("tostring(1.5) .. tostring(nil) .. tostring(true)", E, REIN_OK, "\"1.5niltrue\"");
	expect("string.format('%s|%s|%5.1f', {}, 'x', 2)", E, REIN_OK, "\"table|x|  2.0\"");
	expect("('%s'):format(input.obj)", E, REIN_OK, "\"table\"");
	expect("string.format('%p', {})", E, REIN_ESCRIPT, "'%p' is not available");
	expect("string.format('%d%%', 5)", E, REIN_OK, "\"5%\"");
}

/* Issue 10 item 5: pattern functions are bounded before they run in C. */
static void test_pattern_bound(void **state)
{
	(void)state;
	/* ordinary patterns on a large subject are fine */
	expect("local s = ('word '):rep(20000) return select(2, s:gsub('%s+', ' '))", C, REIN_OK,
	       "20000");
	expect("local s = ('a=b '):rep(20000) local n = 0 for k, v in s:gmatch('(%w+)=(%w+)') do "
	       "n = n + 1 end return n",
	       C, REIN_OK, "20000");
	expect("local s = ('x'):rep(100000) .. 'needle' return s:find('needle', 1, true)", C, REIN_OK,
	       "100001");
	expect("(('x'):rep(100000)):match('^(x+)$') ~= nil", E, REIN_OK, "true");
	/* a pathological pattern is refused at once (it would run for minutes) */
	expect("local s = ('a'):rep(100000) return s:find('.-.-.-.-.-b')", C, REIN_ESCRIPT,
	       "pattern too costly");
	expect("local s = ('a'):rep(200000) return s:match('a*a*a*b')", C, REIN_ESCRIPT,
	       "pattern too costly");
	/* quadratic work is charged to the budget: pcall cannot loop it for free */
	expect("local s = ('a'):rep(3000) for i = 1, 100000 do pcall(string.find, s, 'a*b') end",
	       C, REIN_ELIMIT, "instruction budget");
	/* malformed patterns still get Lua's own message */
	expect("('x'):find('[a')", E, REIN_ESCRIPT, "malformed pattern");
	expect("('x'):gsub('%', '')", E, REIN_ESCRIPT, "malformed pattern");
	expect("('(x)'):match('%b()')", E, REIN_OK, "\"(x)\"");
}

/* Issue 10 item 5: a wall-clock deadline and an interrupt end a long script. */
static void test_deadline_and_interrupt(void **state)
{
	(void)state;
	rein_manual_clock mc;
	rein_manual_clock_init(&mc, 1000);
	rein_script_ctx c = {.limits = {.instructions = 1000000000ull, .deadline_ms = 1000,
					.clock = &mc.clock}};
	rein_err err = {0};
	json_t *r = NULL;
	assert_int_equal(rein_script_eval(S, "while true do end", C, &c, &r, &err), REIN_ELIMIT);
	assert_non_null(strstr(err.msg, "time limit reached"));
	c.limits.deadline_ms = 2000; /* not reached: the script finishes */
	assert_int_equal(rein_script_eval(S, "local n = 0 for i = 1, 1e5 do n = n + i end return n",
					  C, &c, &r, &err),
			 REIN_OK);
	json_decref(r);
	rein_err_clear(&err); /* the first error wins: start afresh */
	rein_script_interrupt(S, true);
	c.limits.deadline_ms = 0;
	assert_int_equal(rein_script_eval(S, "while true do pcall(function() while true do end end) end",
					  C, &c, &r, &err),
			 REIN_ELIMIT);
	rein_script_interrupt(S, false);
	if (strstr(err.msg, "interrupted") == NULL)
		fail_msg("message: %s", err.msg);
	expect("1 + 1", E, REIN_OK, "2");
}

static void test_templates(void **state)
{
	(void)state;
	static const struct {
		const char *tmpl, *want;
	} rows[] = {
		{"\"${input.amount}\"", "7"},
		{"\"${input.items}\"", "[1,2,3]"},
		{"\"${input.nothing}\"", "null"},
		{"\"n=${input.amount}, x=${input.b}\"", "\"n=7, x=3.5\""},
		{"\"v: ${input.nothing} ${input.items} ${input.obj} ${1.0}\"",
		 "\"v: null [1,2,3] {} 1.0\""},
		{"\"${ {a = 1} }\"", "{\"a\":1}"},
		{"\"x${ ({a = '}'}).a }y\"", "\"x}y\""},
		{"\"${'{' .. \\\"}\\\"}\"", "\"{}\""},
		{"\"${ [[}]] }\"", "\"}\""},
		{"\"plain\"", "\"plain\""},
		{"{\"a\": [\"${input.amount + 1}\", 5, {\"b\": \"hi ${input.name}\"}]}",
		 "{\"a\":[8,5,{\"b\":\"hi ada\"}]}"},
		{"\"${steps.s1.out.n} and ${steps.s1.out.category}\"", "\"41 and refund\""},
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		json_t *t = J(rows[i].tmpl);
		rein_script_ctx c = make_ctx();
		rein_err err = {0};
		json_t *r = NULL;
		int rc = rein_script_template(S, t, &c, &r, &err);
		if (rc != REIN_OK)
			fail_msg("%s: %s", rows[i].tmpl, err.msg);
		char *d = rein_json_dump(r);
		if (strcmp(d, rows[i].want) != 0)
			fail_msg("%s: got %s want %s", rows[i].tmpl, d, rows[i].want);
		rein_free(d);
		json_decref(r);
		json_decref(t);
	}
	json_t *t = J("\"a ${input.amount\"");
	rein_script_ctx c = make_ctx();
	rein_err err = {0};
	json_t *r = NULL;
	assert_int_equal(rein_script_template(S, t, &c, &r, &err), REIN_ESCRIPT);
	assert_non_null(strstr(err.msg, "unterminated"));
	json_decref(t);

	assert_true(rein_script_has_template("x ${y}"));
	assert_false(rein_script_has_template("x $y {}"));
	rein_err_clear(&err);
	assert_int_equal(rein_script_template_check(S, "a ${input.x} b ${1 +} c", &err),
			 REIN_ESCRIPT);
	assert_non_null(strstr(err.msg, "${1 +}"));
	rein_err_clear(&err);
	assert_int_equal(rein_script_template_check(S, "${}", &err), REIN_ESCRIPT);
	rein_err_clear(&err);
	assert_int_equal(rein_script_template_check(S, "${a.b} and ${ {x=1} }", &err), REIN_OK);
}

/* An escape or a bomb, then a normal evaluation on the same sandbox. */
static const struct row escapes[] = {
	{"io.open('/etc/passwd')", E, REIN_ESCRIPT, "nil value (global 'io')"},
	{"os.execute('true')", E, REIN_ESCRIPT, "nil value (global 'os')"},
	{"require('os')", E, REIN_ESCRIPT, "nil value (global 'require')"},
	{"load('return 1')", E, REIN_ESCRIPT, "nil value (global 'load')"},
	{"loadstring('return 1')", E, REIN_ESCRIPT, "nil value (global 'loadstring')"},
	{"dofile('/etc/passwd')", E, REIN_ESCRIPT, "nil value (global 'dofile')"},
	{"loadfile('/etc/passwd')", E, REIN_ESCRIPT, "nil value (global 'loadfile')"},
	{"string.dump(function() end)", E, REIN_ESCRIPT, "field 'dump'"},
	{"('').dump(function() end)", E, REIN_ESCRIPT, "field 'dump'"},
	{"debug.getinfo(1)", E, REIN_ESCRIPT, "nil value (global 'debug')"},
	{"collectgarbage('count')", E, REIN_ESCRIPT, "global 'collectgarbage'"},
	{"math.random(10)", E, REIN_ESCRIPT, "field 'random'"},
	{"math.randomseed(1)", E, REIN_ESCRIPT, "field 'randomseed'"},
	{"print('x')", E, REIN_ESCRIPT, "global 'print'"},
	{"coroutine.create(print)", E, REIN_ESCRIPT, "global 'coroutine'"},
	{"package.loaded", E, REIN_ESCRIPT, "global 'package'"},
	{"getmetatable('').__index.upper = nil", C, REIN_ESCRIPT, "attempt to index"},
	{"string.upper = nil", C, REIN_ESCRIPT, "read-only library table"},
	{"math.floor = function() return 0 end", C, REIN_ESCRIPT, "read-only library table"},
	{"table.insert(string, 1)", C, REIN_ESCRIPT, "read-only library table"},
	{"rawset(string, 'upper', nil)", C, REIN_ESCRIPT, "global 'rawset'"},
	{"setmetatable(string, {})", C, REIN_ESCRIPT, "protected metatable"},
	{"setmetatable({}, {__gc = function() while true do end end})", C, REIN_ESCRIPT,
	 "__gc metamethods are not allowed"},
	{"_ENV.string.len = nil", C, REIN_ESCRIPT, "read-only"},
	{"while true do end", C, REIN_ELIMIT, "instruction budget of 10000000 exceeded"},
	{"while true do pcall(function() while true do end end) end", C, REIN_ELIMIT,
	 "instruction budget of"},
	{"return pcall(function() while true do end end)", C, REIN_ELIMIT,
	 "instruction budget of"},
	{"local ok = false repeat ok = pcall(function() while true do end end) until ok", C,
	 REIN_ELIMIT, "instruction budget of"},
	{"string.rep('x', 1e10)", E, REIN_ELIMIT, "memory cap of 33554432 bytes exceeded"},
	{"local t = {} local i = 0 while true do i = i + 1 t[i] = {i} end", C, REIN_ELIMIT,
	 "memory cap of"},
	{"local t = {} while true do pcall(function() t[#t + 1] = ('x'):rep(1000) .. #t end) end",
	 C, REIN_ELIMIT, "exceeded"},
	{"local s = 'x' while true do s = s .. s end", C, REIN_ELIMIT, "memory cap of"},
	{"#string.rep('', 1e18) + #('x'):rep(0)", E, REIN_OK, "0"},
	{"table.move({}, 1, 1e15, 2)", E, REIN_ELIMIT, "instruction budget of"},
	{"pcall(table.move, {}, 1, 1e15, 2)", E, REIN_ELIMIT, "instruction budget of"},
	{"table.concat({}, '', 1, 1e15)", E, REIN_ELIMIT, "instruction budget of"},
	{"#table.move({1, 2, 3}, 1, 3, 2)", E, REIN_OK, "4"},
	{"table.concat({'a', 'b', 'c'}, ',', 2, 3)", E, REIN_OK, "\"b,c\""},
	{"local t = {3, 1, 2} table.sort(t) return t", C, REIN_OK, "[1,2,3]"},
};

static void test_escapes(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof escapes / sizeof escapes[0]; i++) {
		expect(escapes[i].src, escapes[i].kind, escapes[i].rc, escapes[i].want);
		expect("return {n = (steps.s1 and steps.s1.out.n or 0) + 1}", C, REIN_OK,
		       "{\"n\":42}");
		expect("string.upper('a') .. math.floor(1.5) .. type(string.rep)", E, REIN_OK,
		       "\"A1function\"");
	}
}

static void test_no_leak_between_evaluations(void **state)
{
	(void)state;
	expect("leak = 42 return leak", C, REIN_OK, "42");
	expect("leak == nil", E, REIN_OK, "true");
	expect("input.items[1] = 99 return input.items[1]", C, REIN_OK, "99");
	expect("input.items[1]", E, REIN_OK, "1");
	expect("string.x = 1", C, REIN_ESCRIPT, "read-only");
	expect("string.x == nil", E, REIN_OK, "true");
}

static void test_recursion(void **state)
{
	(void)state;
	rein_script_ctx c = make_ctx();
	rein_err err = {0};
	json_t *r = NULL;
	int rc = rein_script_eval(S, "local function f(n) return 1 + f(n + 1) end return f(1)", C,
				  &c, &r, &err);
	assert_true(rc == REIN_ELIMIT || rc == REIN_ESCRIPT);
	assert_true(strstr(err.msg, "stack overflow") || strstr(err.msg, "memory cap"));
	rein_err_clear(&err);
	rc = rein_script_eval(S,
			      "local t = setmetatable({}, {__index = function(t, k) return t[k] end})"
			      " return t.x",
			      C, &c, &r, &err);
	assert_int_equal(rc, REIN_ESCRIPT);
	assert_non_null(strstr(err.msg, "stack overflow"));
	expect("return {n = (steps.s1 and steps.s1.out.n or 0) + 1}", C, REIN_OK, "{\"n\":42}");
}

static void test_small_limits(void **state)
{
	(void)state;
	rein_script_ctx c = make_ctx();
	c.limits.instructions = 500;
	c.limits.memory_bytes = 64 * 1024;
	rein_err err = {0};
	json_t *r = NULL;
	assert_int_equal(rein_script_eval(S, "for i = 1, 1000 do end", C, &c, &r, &err),
			 REIN_ELIMIT);
	assert_string_equal(err.msg, "instruction budget of 500 exceeded");
	rein_err_clear(&err);
	assert_int_equal(rein_script_eval(S, "('x'):rep(100000)", E, &c, &r, &err), REIN_ELIMIT);
	assert_string_equal(err.msg, "memory cap of 65536 bytes exceeded");
	rein_err_clear(&err);
	assert_int_equal(rein_script_eval(S, "for i = 1, 10 do end return 1", C, &c, &r, &err),
			 REIN_OK);
	json_decref(r);
}

/* Fail each allocation in turn: a clean error every time, never a crash. */
static void test_alloc_faults(void **state)
{
	(void)state;
	for (long n = 1; n < 400; n++) {
		rein_script *s = NULL;
		rein_fault_arm(REIN_FAULT_ALLOC, n);
		int rc = rein_script_new(&s);
		rein_fault_arm(REIN_FAULT_ALLOC, 0);
		if (rc != REIN_OK) {
			assert_int_equal(rc, REIN_ENOMEM);
			continue;
		}
		rein_script_free(s);
	}
	for (long n = 1; n < 300; n++) {
		rein_script_ctx c = make_ctx();
		rein_err err = {0};
		json_t *r = NULL;
		char src[128];
		snprintf(src, sizeof src, "return {k%ld = steps.s1.out.n, i = input.items}", n);
		rein_fault_arm(REIN_FAULT_ALLOC, n);
		int rc = rein_script_eval(S, src, C, &c, &r, &err);
		rein_fault_arm(REIN_FAULT_ALLOC, 0);
		if (rc == REIN_OK)
			json_decref(r);
		else
			assert_true(rc == REIN_ENOMEM || rc == REIN_ESCRIPT);
		expect("1 + 1", E, REIN_OK, "2");
	}
}

static int reentered_rc;

static const json_t *reentrant_step(void *ud, const char *name)
{
	(void)ud;
	(void)name;
	json_t *r = NULL;
	rein_err err = {0};
	reentered_rc = rein_script_eval(S, "1", E, NULL, &r, &err);
	json_decref(r);
	return NULL;
}

static void test_not_reentrant(void **state)
{
	(void)state;
	rein_script_ctx c = {.step_out = reentrant_step};
	json_t *r = NULL;
	rein_err err = {0};
	assert_int_equal(rein_script_eval(S, "steps.x == nil", E, &c, &r, &err), REIN_OK);
	assert_true(json_is_true(r));
	json_decref(r);
	assert_int_equal(reentered_rc, REIN_EINVAL);
	expect("1 + 1", E, REIN_OK, "2");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_results),
		cmocka_unit_test(test_check),
		cmocka_unit_test(test_out_and_vars),
		cmocka_unit_test(test_lazy_steps),
		cmocka_unit_test(test_on_read),
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_null_is_nil),
		cmocka_unit_test(test_nul_strings),
		cmocka_unit_test(test_tostring_deterministic),
		cmocka_unit_test(test_pattern_bound),
		cmocka_unit_test(test_deadline_and_interrupt),
		cmocka_unit_test(test_templates),
		cmocka_unit_test(test_escapes),
		cmocka_unit_test(test_no_leak_between_evaluations),
		cmocka_unit_test(test_recursion),
		cmocka_unit_test(test_small_limits),
		cmocka_unit_test(test_alloc_faults),
		cmocka_unit_test(test_not_reentrant),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
