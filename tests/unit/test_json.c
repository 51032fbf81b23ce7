/*
 * rein_json_dump against jansson's json_dumps(JSON_COMPACT | JSON_SORT_KEYS |
 * JSON_ENCODE_ANY), byte for byte for documents without reals: event hashes
 * cover this text. Reals are written in their shortest round-tripping form
 * (jansson writes %.17g), so a document with reals must read back equal and
 * each real is checked to be shortest (test_shortest_reals); reference()
 * substitutes an independently computed shortest text into jansson's output. Hand-picked documents (escapes, UTF-8, key order, numbers
 * at their limits), many seeded random ones, the cases rein_json_dump leaves
 * to jansson (bad UTF-8, cycles, deep nesting), and failing allocations.
 */
#include "testlib.h"

#include <float.h>
#include <limits.h>
#include <math.h>

#define CANON (JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY)
static size_t g_flags = CANON; /* the flags reference() and check_same() use */

static char *jansson_text(const json_t *j)
{
	char *s = json_dumps(j, g_flags);
	char *r = s ? rein_strdup(s) : NULL;
	rein_free(s);
	return r;
}

/*
 * The expected text of a real, computed independently of json.c: the fewest
 * significant digits k (1..17) whose "%.<k>g" reads back as d, written with
 * "%.<max(k,15)>g" (so 100000.0 stays in fixed notation, as jansson writes it;
 * a subnormal keeps its k) plus jansson's touch-ups.
 */
static void expected_real(double d, char *out, size_t n)
{
	char buf[400];
	int k = 1;
	for (; k < 17; k++) {
		snprintf(buf, sizeof buf, "%.*g", k, d);
		if (strtod(buf, NULL) == d)
			break;
	}
	int p = fabs(d) < DBL_MIN || k > 15 ? k : 15;
	snprintf(buf, sizeof buf, "%.*g", p, d);
	if (!strchr(buf, '.') && !strchr(buf, 'e'))
		strcat(buf, ".0");
	char *e = strchr(buf, 'e');
	if (e) {
		char *w = e + 1, *r = e + 1;
		if (*r == '+')
			r++;
		else if (*r == '-')
			*w++ = *r++;
		while (*r == '0' && r[1])
			r++;
		memmove(w, r, strlen(r) + 1);
	}
	snprintf(out, n, "%s", buf);
}

/* Replaces every real in j (in place) by a string placeholder "\x01R<i>", recording it. */
static void mark_reals(json_t *j, double *vals, size_t *nv, size_t max)
{
	char ph[32];
	if (json_is_array(j)) {
		for (size_t i = 0; i < json_array_size(j); i++) {
			json_t *v = json_array_get(j, i);
			if (json_is_real(v) && *nv < max) {
				vals[*nv] = json_real_value(v);
				snprintf(ph, sizeof ph, "\x01R%zu", (*nv)++);
				json_array_set_new(j, i, json_string(ph));
			} else {
				mark_reals(v, vals, nv, max);
			}
		}
	} else if (json_is_object(j)) {
		for (void *it = json_object_iter(j); it; it = json_object_iter_next(j, it)) {
			json_t *v = json_object_iter_value(it);
			if (json_is_real(v) && *nv < max) {
				vals[*nv] = json_real_value(v);
				snprintf(ph, sizeof ph, "\x01R%zu", (*nv)++);
				json_object_iter_set_new(j, it, json_string(ph));
			} else {
				mark_reals(v, vals, nv, max);
			}
		}
	}
}

/* A deep copy that keeps keys with NUL bytes (json_deep_copy cuts them); NULL past depth 5000. */
static json_t *copy_doc(json_t *j, int depth)
{
	if (depth > 5000)
		return NULL;
	json_t *c = NULL;
	if (json_is_array(j)) {
		c = json_array();
		for (size_t i = 0; c && i < json_array_size(j); i++) {
			json_t *v = copy_doc(json_array_get(j, i), depth + 1);
			if (v == NULL) {
				json_decref(c);
				return NULL;
			}
			json_array_append_new(c, v);
		}
	} else if (json_is_object(j)) {
		c = json_object();
		for (void *it = json_object_iter(j); c && it; it = json_object_iter_next(j, it)) {
			json_t *v = copy_doc(json_object_iter_value(it), depth + 1);
			if (v == NULL) {
				json_decref(c);
				return NULL;
			}
			json_object_setn_new_nocheck(c, json_object_iter_key(it),
						     json_object_iter_key_len(it), v);
		}
	} else {
		c = json_incref(j);
	}
	return c;
}

/* jansson's text with each real written in its shortest form. */
static char *reference(const json_t *j)
{
	enum { MAXR = 4096 };
	static double vals[MAXR];
	size_t nv = 0;
	if (json_is_real(j) && !(g_flags & JSON_ENCODE_ANY))
		return NULL;
	if (json_is_real(j)) {
		char buf[64];
		expected_real(json_real_value(j), buf, sizeof buf);
		return rein_strdup(buf);
	}
	json_t *copy = copy_doc((json_t *)j, 0);
	if (copy == NULL) /* a cycle: jansson refuses it */
		return jansson_text(j);
	mark_reals(copy, vals, &nv, MAXR);
	char *text = jansson_text(copy);
	json_decref(copy);
	for (size_t i = 0; text && i < nv; i++) {
		char ph[32], real[64];
		snprintf(ph, sizeof ph, "\"\\u0001R%zu\"", i);
		expected_real(vals[i], real, sizeof real);
		char *at = strstr(text, ph);
		assert_non_null(at);
		char *t = rein_sprintf("%.*s%s%s", (int)(at - text), text, real, at + strlen(ph));
		rein_free(text);
		text = t;
	}
	return text;
}

/* Both NULL, or the same bytes. */
static void check_same(const json_t *j)
{
	char *want = reference(j);
	char *got = g_flags == CANON ? rein_json_dump(j) : rein_json_dump_flags(j, g_flags);
	if ((want == NULL) != (got == NULL) || (want && strcmp(want, got) != 0)) {
		fprintf(stderr, "want %.300s\ngot  %.300s\n", want ? want : "(null)", got ? got : "(null)");
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

/* rein_json_dump_flags against json_dumps with the same flags (display, files). */
static void test_flags(void **state)
{
	static const size_t sets[] = {
		JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY,
		JSON_COMPACT | JSON_ENCODE_ANY,
		JSON_INDENT(2) | JSON_SORT_KEYS | JSON_ENCODE_ANY,
		JSON_ENCODE_ANY,
		JSON_INDENT(4) | JSON_COMPACT | JSON_ENCODE_ANY,
		JSON_COMPACT | JSON_PRESERVE_ORDER, /* no ENCODE_ANY: scalars give NULL */
	};
	for (size_t k = 0; k < sizeof sets / sizeof sets[0]; k++) {
		g_flags = sets[k];
		for (int i = 0; i < 3000; i++) {
			json_t *j = rand_doc(0);
			check_same(j);
			json_decref(j);
		}
		check_text("{\"b\": [1, 2.5, {}], \"a\": {\"z\": [], \"y\": 24.99}}");
		check_text("7");
	}
	g_flags = CANON;
	json_t *j = json_pack("{s:f, s:[f]}", "amount", 24.99, "cost", 0.004621);
	char *s = rein_json_dump_flags(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	assert_string_equal(s, "{\n  \"amount\": 24.99,\n  \"cost\": [\n    0.004621\n  ]\n}");
	rein_free(s);
	json_decref(j);
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

/* The text of each real is the shortest "%.<p>g" (p = 1..17) that reads back. */
static void check_shortest(double d)
{
	json_t *r = json_real(d);
	char *got = rein_json_dump(r);
	assert_non_null(got);
	assert_true(strtod(got, NULL) == d);
	int digits = 0; /* significant digits in got */
	bool lead = true;
	for (const char *c = got; *c && *c != 'e'; c++) {
		if (*c >= '1' && *c <= '9')
			lead = false;
		if (*c >= '0' && *c <= '9' && !lead)
			digits++;
	}
	/* a trailing ".0" jansson-style, or zeros of an integer part, are not digits */
	for (const char *c = got + strlen(got); c > got && (c[-1] == '0' || c[-1] == '.') &&
						  strchr(got, 'e') == NULL && strchr(got, '.');
	     c--)
		if (c[-1] == '0')
			digits--;
	for (int p = 1; p < digits; p++) {
		char buf[400];
		snprintf(buf, sizeof buf, "%.*g", p, d);
		if (strtod(buf, NULL) == d) {
			fprintf(stderr, "%s is not shortest: %s reads back too\n", got, buf);
			fail();
		}
	}
	rein_free(got);
	json_decref(r);
}

static void test_shortest_reals(void **state)
{
	static const struct {
		const char *in, *out;
	} rows[] = {
		{"24.99", "24.99"}, {"24.989999999999998", "24.99"},
		{"0.0046210000000000001", "0.004621"}, {"0.1", "0.1"},
		{"0.30000000000000004", "0.30000000000000004"}, {"1.0", "1.0"}, {"-0.0", "-0.0"},
		{"100.0", "100.0"}, {"1e16", "1e16"}, {"1e22", "1e22"}, {"1e-7", "1e-7"},
		{"5e-324", "5e-324"}, {"1.7976931348623157e308", "1.7976931348623157e308"},
		{"3.141592653589793", "3.141592653589793"}, {"123456.5", "123456.5"},
		{"[0.1, {\"a\": 2.5}]", "[0.1,{\"a\":2.5}]"},
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		rein_err e = {0};
		json_t *j = rein_json_parse(rows[i].in, strlen(rows[i].in), &e);
		assert_non_null(j);
		char *got = rein_json_dump(j);
		assert_non_null(got);
		if (strcmp(got, rows[i].out) != 0)
			fail_msg("%s: got %s, want %s", rows[i].in, got, rows[i].out);
		rein_free(got);
		json_decref(j);
	}
	check_shortest(24.99);
	check_shortest(0.1 + 0.2);
	for (int i = 0; i < 20000; i++) {
		double d;
		uint64_t bits = rnd();
		if (i % 2) {
			memcpy(&d, &bits, sizeof d);
			if (!isfinite(d))
				continue;
		} else {
			d = (double)(bits % 1000000) / 100.0;
		}
		check_shortest(d);
	}
	/* a document left to jansson (deeper than rein's writer goes) still reads back */
	json_t *deep = json_real(24.99);
	for (int i = 0; i < 300; i++)
		deep = json_pack("[o]", deep);
	char *text = rein_json_dump(deep);
	assert_non_null(text);
	assert_non_null(strstr(text, "24.99]"));
	rein_free(text);
	json_decref(deep);
}

/* What rein writes, rein reads: strings with NUL bytes included (issue 10 item 1). */
static void test_parse_nul(void **state)
{
	rein_err e = {0};
	json_t *j = rein_json_parse("{\"s\": \"a\\u0000b\"}", 17, &e);
	if (j == NULL)
		fail_msg("refused: %s", e.msg);
	assert_int_equal(json_string_length(json_object_get(j, "s")), 3);
	char *text = rein_json_dump(j);
	json_t *back = rein_json_parse(text, strlen(text), &e);
	assert_non_null(back);
	assert_true(json_equal(j, back));
	rein_free(text);
	json_decref(back);
	json_decref(j);
	/* duplicate keys are still refused */
	assert_null(rein_json_parse("{\"a\":1,\"a\":2}", 13, &e));
	rein_err_clear(&e);
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
	char *want = rein_json_dump(o);
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
		cmocka_unit_test(test_flags),
		cmocka_unit_test(test_bad_utf8),
		cmocka_unit_test(test_cycle_and_depth),
		cmocka_unit_test(test_alloc_faults),
		cmocka_unit_test(test_shortest_reals),
		cmocka_unit_test(test_parse_nul),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
