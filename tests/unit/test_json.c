/*
 * rein_json_dump against jansson's json_dumps(JSON_COMPACT | JSON_SORT_KEYS |
 * JSON_ENCODE_ANY), byte for byte: event hashes cover this text, so the two
 * must never differ. Hand-picked documents (escapes, UTF-8, key order, numbers
 * at their limits), many seeded random ones, the cases rein_json_dump leaves
 * to jansson (bad UTF-8, cycles, deep nesting), and failing allocations.
 */
#include "testlib.h"

#include <float.h>
#include <limits.h>
#include <math.h>

static char *reference(const json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
	char *r = s ? rein_strdup(s) : NULL;
	rein_free(s);
	return r;
}

/* Both NULL, or the same bytes. */
static void check_same(const json_t *j)
{
	char *want = reference(j);
	char *got = rein_json_dump(j);
	if ((want == NULL) != (got == NULL) || (want && strcmp(want, got) != 0)) {
		fprintf(stderr, "want %s\ngot  %s\n", want ? want : "(null)", got ? got : "(null)");
		fail();
	}
	rein_free(want);
	rein_free(got);
}

static void check_text(const char *text)
{
	json_error_t je;
	json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
	if (j == NULL)
		fprintf(stderr, "bad test document %s: %s\n", text, je.text);
	assert_non_null(j);
	check_same(j);
	json_decref(j);
}

static void test_fixed(void **state)
{
	static const char *docs[] = {
		"null", "true", "false", "0", "-0", "1", "-1", "42",
		"9223372036854775807", "-9223372036854775808",
		"0.0", "-0.0", "1.0", "0.1", "1.5", "-2.25", "3.141592653589793",
		"1e300", "-1e-300", "1e-7", "123456789012345678901234567890.0", "2.5e-310",
		"1e22", "1e21", "5e-324", "1.7976931348623157e308", "100.0", "1e16", "1e17",
		"\"\"", "\"a\"", "\"\\\"\\\\/\\b\\f\\n\\r\\t\"",
		"\"\\u0000\\u0001\\u001f\\u007f\\u0020\"",
		"\"caf\\u00e9 \\u20ac \\ud83d\\ude00 \\uffff \\u0800\"",
		"\"mixed \\u00e9\\n\\\"x\\\" \\ud83d\\ude00\\t\"",
		"[]", "{}", "[[]]", "[{}]", "{\"a\":{}}", "[1,2,3]", "[null,true,false,1,1.5,\"s\"]",
		"{\"b\":1,\"a\":2}", "{\"n\":1}", "{\"out\":{\"n\":3}}",
		"{\"ab\":1,\"a\":2,\"abc\":3,\"\":4,\"b\":5,\"B\":6,\"_\":7,\"~\":8,\"0\":9}",
		"{\"k10\":10,\"k9\":9,\"k8\":8,\"k7\":7,\"k6\":6,\"k5\":5,\"k4\":4,\"k3\":3,"
		"\"k2\":2,\"k1\":1,\"k0\":0,\"k11\":11,\"k12\":12,\"k13\":13,\"k14\":14,"
		"\"k15\":15,\"k16\":16,\"k17\":17,\"k18\":18,\"k19\":19,\"k20\":20}",
		"{\"\\u00e9\":1,\"e\":2,\"\\u20ac\":3,\"z\":4,\"\\ud83d\\ude00\":5,\"\\u007f\":6}",
		"{\"q\\\"\":1,\"b\\\\\":2,\"nl\\n\":3,\"\\u0001\":4}",
		"{\"a\":[1,{\"z\":[],\"y\":{\"x\":null}},\"t\"],\"b\":{\"d\":1.25,\"c\":-7}}",
	};
	for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++)
		check_text(docs[i]);
}

/* Keys that differ only after a NUL, and prefixes of each other. */
static void test_keys_with_nul(void **state)
{
	json_t *o = json_object();
	assert_int_equal(json_object_setn_new(o, "a\0b", 3, json_integer(1)), 0);
	assert_int_equal(json_object_setn_new(o, "a\0a", 3, json_integer(2)), 0);
	assert_int_equal(json_object_setn_new(o, "a", 1, json_integer(3)), 0);
	assert_int_equal(json_object_setn_new(o, "a\0", 2, json_integer(4)), 0);
	assert_int_equal(json_object_setn_new(o, "", 0, json_integer(5)), 0);
	check_same(o);
	json_decref(o);
	json_t *s = json_stringn("x\0y", 3);
	check_same(s);
	json_decref(s);
}

/* ---- random documents -------------------------------------------------- */

static uint64_t rng = 0x9E3779B97F4A7C15ULL;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* Random valid UTF-8 text: ASCII, characters that must be escaped, and
 * 2-, 3- and 4-byte sequences. */
static size_t rand_text(char *buf, size_t cap)
{
	size_t n = 0, want = rnd() % 12;
	static const char *pieces[] = {"a", "Z", "0", " ", "\"", "\\", "/", "\n", "\t", "\x01",
				       "\x1f", "\x7f", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
				       "\xef\xbf\xbf", "\xc2\x80", "\xf4\x8f\xbf\xbf", "n", "~"};
	for (size_t i = 0; i < want; i++) {
		const char *p = pieces[rnd() % (sizeof pieces / sizeof pieces[0])];
		size_t l = strlen(p);
		if (rnd() % 17 == 0) { /* an embedded NUL now and then */
			p = "\0";
			l = 1;
		}
		if (n + l >= cap)
			break;
		memcpy(buf + n, p, l);
		n += l;
	}
	return n;
}

static json_t *rand_doc(int depth)
{
	int kind = (int)(rnd() % (depth > 4 ? 7 : 9));
	char text[64];
	switch (kind) {
	case 0: return json_null();
	case 1: return json_true();
	case 2: return json_false();
	case 3: {
		static const json_int_t edge[] = {0, 1, -1, 9, 10, 99, 100, -10, INT64_MAX, INT64_MIN,
						  INT32_MAX, INT32_MIN, 1000000007};
		if (rnd() % 2)
			return json_integer(edge[rnd() % (sizeof edge / sizeof edge[0])]);
		return json_integer((json_int_t)rnd() >> (rnd() % 64));
	}
	case 4: {
		double d;
		switch (rnd() % 4) {
		case 0: d = (double)(int64_t)(rnd() % 2001) - 1000.0; break;
		case 1: d = (double)(rnd() % 100000) / 1000.0; break;
		case 2: d = ldexp((double)(rnd() % 1000000), (int)(rnd() % 2000) - 1000); break;
		default: {
			uint64_t bits = rnd();
			memcpy(&d, &bits, sizeof d);
			if (!isfinite(d))
				d = DBL_MIN;
		}
		}
		return json_real(d);
	}
	case 5:
	case 6: {
		size_t n = rand_text(text, sizeof text);
		return json_stringn(text, n);
	}
	case 7: {
		json_t *a = json_array();
		size_t n = rnd() % 6;
		for (size_t i = 0; i < n; i++)
			json_array_append_new(a, rand_doc(depth + 1));
		return a;
	}
	default: {
		json_t *o = json_object();
		size_t n = rnd() % (rnd() % 4 == 0 ? 30 : 6);
		for (size_t i = 0; i < n; i++) {
			size_t l = rand_text(text, sizeof text);
			json_object_setn_new(o, text, l, rand_doc(depth + 1));
		}
		return o;
	}
	}
}

static void test_random(void **state)
{
	for (int i = 0; i < 20000; i++) {
		json_t *j = rand_doc(0);
		check_same(j);
		json_decref(j);
	}
}

/* ---- what rein_json_dump leaves to jansson ------------------------------- */

static void test_bad_utf8(void **state)
{
	static const char *bad[] = {"\x80", "a\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
				    "\xe2\x82", "ok\xff", "\xf8\x88\x80\x80\x80"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		json_t *s = json_stringn_nocheck(bad[i], strlen(bad[i]));
		check_same(s); /* jansson refuses: NULL from both */
		json_t *a = json_pack("[i,o]", 1, s);
		check_same(a);
		json_decref(a);
		/* in a key, jansson writes what it can and goes on: same bytes */
		json_t *o = json_object();
		json_object_setn_new_nocheck(o, bad[i], strlen(bad[i]), json_integer(1));
		json_object_set_new(o, "b", json_integer(2));
		check_same(o);
		json_decref(o);
	}
}

static void test_cycle_and_depth(void **state)
{
	json_t *a = json_array(), *b = json_array();
	json_array_append(a, b);
	json_array_append(b, a);
	assert_null(rein_json_dump(a));
	check_same(a);
	json_array_clear(b);
	json_decref(a);
	json_decref(b);

	json_t *deep = json_integer(7);
	for (int i = 0; i < 3000; i++) {
		json_t *w = i % 2 ? json_array() : json_object();
		if (i % 2)
			json_array_append_new(w, deep);
		else
			json_object_set_new(w, "k", deep);
		deep = w;
	}
	check_same(deep);
	json_decref(deep);
	assert_null(rein_json_dump(NULL));
}

/* A failing allocation gives NULL, never a piece of the text. */
static void test_alloc_faults(void **state)
{
	json_t *o = json_object();
	for (int i = 0; i < 40; i++) {
		char k[16];
		snprintf(k, sizeof k, "key%02d", 39 - i);
		json_object_set_new(o, k, json_pack("{s:[i,f,s]}", "v", i, i / 3.0,
						    "some text that makes the output long enough"));
	}
	char *want = reference(o);
	assert_non_null(want);
	int failed = 0;
	for (long n = 1; n < 200; n++) {
		rein_fault_arm(REIN_FAULT_ALLOC, n);
		char *got = rein_json_dump(o);
		rein_fault_arm(REIN_FAULT_ALLOC, 0);
		if (got == NULL)
			failed++;
		else
			assert_string_equal(got, want);
		rein_free(got);
	}
	assert_true(failed > 0);
	rein_free(want);
	json_decref(o);
}

int main(void)
{
	rein_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixed),
		cmocka_unit_test(test_keys_with_nul),
		cmocka_unit_test(test_random),
		cmocka_unit_test(test_bad_utf8),
		cmocka_unit_test(test_cycle_and_depth),
		cmocka_unit_test(test_alloc_faults),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
