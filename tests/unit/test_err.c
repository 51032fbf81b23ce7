/*
 * The one error type: rein_err with its attachments (located diagnostics,
 * schema errors). First error wins, also for the lists; rein_err_clear frees
 * them (ASan's leak check runs over every case); the spec loader and
 * rein_schema_check hand their lists over on the error; msg is never cut in
 * the middle of a UTF-8 sequence; allocation faults give a clean error.
 */
#include "testlib.h"

/* What rein_err_print writes, as a new string. */
static char *printed(const rein_err *e, const char *prefix)
{
	FILE *f = tmpfile();
	assert_non_null(f);
	rein_err_print(e, prefix, f);
	long n = ftell(f);
	rewind(f);
	char *s = rein_calloc(1, (size_t)n + 1);
	assert_non_null(s);
	assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	return s;
}

static void test_plain(void **state)
{
	(void)state;
	rein_err e = {0};
	assert_int_equal(rein_err_set(&e, REIN_EIO, "disk %d", 1), REIN_EIO);
	assert_int_equal(rein_err_set(&e, REIN_EINVAL, "second"), REIN_EINVAL);
	assert_int_equal(e.code, REIN_EIO);
	assert_string_equal(e.msg, "disk 1");
	char *s = printed(&e, "wf");
	assert_string_equal(s, "wf: disk 1\n");
	rein_free(s);
	s = printed(&e, NULL);
	assert_string_equal(s, "disk 1\n");
	rein_free(s);
	rein_err_clear(&e);
	assert_int_equal(e.code, 0);
	assert_string_equal(e.msg, "");
	rein_err_clear(NULL);
	assert_int_equal(rein_err_set(NULL, REIN_EIO, "x"), REIN_EIO);
}

static void test_diags_attach(void **state)
{
	(void)state;
	rein_err e = {0};
	rein_diags d = {0};
	assert_int_equal(rein_diags_add(&d, "wf/workflow.yaml", 3, 5, "bad %s", "key"), REIN_OK);
	assert_int_equal(rein_diags_add(&d, "wf/x.lua", 1, 1, "syntax"), REIN_OK);
	assert_int_equal(rein_err_set_diags(&e, &d, REIN_ESPEC, "%zu problem(s)", d.n), REIN_ESPEC);
	assert_int_equal(d.n, 0); /* moved */
	assert_null(d.v);
	assert_int_equal(e.diags.n, 2);
	assert_string_equal(e.msg, "2 problem(s)");
	char *s = printed(&e, "wf");
	assert_string_equal(s, "wf/workflow.yaml:3:5: bad key\nwf/x.lua:1:1: syntax\n");
	rein_free(s);

	/* first error wins: a second list is freed, not attached */
	assert_int_equal(rein_diags_add(&d, "other", 1, 1, "later"), REIN_OK);
	rein_err_set_diags(&e, &d, REIN_ESPEC, "later");
	assert_int_equal(d.n, 0);
	assert_int_equal(e.diags.n, 2);
	assert_string_equal(e.diags.v[0].file, "wf/workflow.yaml");
	/* and with no error object at all */
	assert_int_equal(rein_diags_add(&d, "other", 1, 1, "dropped"), REIN_OK);
	assert_int_equal(rein_err_set_diags(NULL, &d, REIN_ESPEC, "x"), REIN_ESPEC);
	assert_int_equal(d.n, 0);

	rein_err_clear(&e);
	assert_int_equal(e.diags.n, 0);
	assert_null(e.diags.v);
	/* cleared, it takes a new error and list */
	assert_int_equal(rein_diags_add(&d, "again", 2, 2, "m"), REIN_OK);
	rein_err_set_diags(&e, &d, REIN_ESPEC, "again");
	assert_int_equal(e.diags.n, 1);
	rein_err_clear(&e);
}

static void test_schema_attach(void **state)
{
	(void)state;
	rein_schema *s = NULL;
	rein_err e = {0};
	json_t *doc = json_pack("{s:[s,s], s:{s:{s:s}}}", "required", "a", "b", "properties", "a",
				"type", "integer");
	assert_int_equal(rein_schema_compile(doc, NULL, &s, &e), REIN_OK);
	json_t *good = json_pack("{s:i, s:i}", "a", 1, "b", 2);
	json_t *bad = json_pack("{s:s}", "a", "x");

	assert_int_equal(rein_schema_check(s, good, &e, "input of '%s'", "w"), REIN_OK);
	assert_int_equal(e.code, 0);
	assert_int_equal(rein_schema_check(NULL, bad, &e, "anything"), REIN_OK);
	assert_int_equal(rein_schema_check(s, bad, NULL, "no error object"), REIN_ESCHEMA);

	assert_int_equal(rein_schema_check(s, bad, &e, "input of '%s'", "w"), REIN_ESCHEMA);
	assert_int_equal(e.code, REIN_ESCHEMA);
	assert_string_equal(e.msg, "input of 'w': missing required property \"b\" (required)\n"
				   "/a: expected integer, got string (type)");
	assert_int_equal(e.schema.n, 2);
	assert_string_equal(e.schema.v[1].pointer, "/a");
	assert_string_equal(e.schema.v[1].keyword, "type");
	assert_int_equal(e.diags.n, 0);
	/* first error wins: nothing more attached */
	assert_int_equal(rein_schema_check(s, bad, &e, "second"), REIN_ESCHEMA);
	assert_int_equal(e.schema.n, 2);
	assert_string_equal(e.msg + strlen(e.msg) - 6, "(type)");
	rein_err_clear(&e);
	assert_int_equal(e.schema.n, 0);

	/* out of memory at any point: a clean ESCHEMA or ENOMEM, never a leak */
	int nomem = 0;
	for (long n = 1; n < 100; n++) {
		rein_err f = {0};
		rein_fault_arm(REIN_FAULT_ALLOC, n);
		int rc = rein_schema_check(s, bad, &f, "input");
		rein_fault_arm(REIN_FAULT_ALLOC, 0);
		assert_true(rc == REIN_ESCHEMA || rc == REIN_ENOMEM);
		assert_int_equal(f.code, rc);
		nomem += rc == REIN_ENOMEM;
		rein_err_clear(&f);
	}
	assert_true(nomem > 0);
	json_decref(good);
	json_decref(bad);
	json_decref(doc);
	rein_schema_free(s);
}

/* The loader's diagnostics arrive on the error, in order, with locations. */
static void test_spec_diags(void **state)
{
	(void)state;
	rein_script *sb = NULL;
	assert_int_equal(rein_script_new(&sb), REIN_OK);
	json_t *bundle = json_pack("{s:{s:s}}", "files", "workflow.yaml",
				   "name: t\nbogus: 1\nsteps:\n  - name: a\n    code: \"return (\"\n");
	rein_spec *spec = NULL;
	rein_err e = {0};
	assert_int_equal(rein_spec_load_bundle(bundle, "wf", sb, &spec, &e), REIN_ESPEC);
	assert_null(spec);
	assert_true(e.diags.n >= 2);
	for (size_t i = 0; i < e.diags.n; i++)
		assert_string_equal(e.diags.v[i].file, "wf/workflow.yaml");
	assert_int_equal(e.diags.v[0].line, 2);
	/* the message alone names the first problem (issue 10 item 25) */
	char want[512];
	snprintf(want, sizeof want, "wf/workflow.yaml:%d:%d: %s (and %zu more problem%s)",
		 e.diags.v[0].line, e.diags.v[0].col, e.diags.v[0].msg, e.diags.n - 1,
		 e.diags.n > 2 ? "s" : "");
	assert_string_equal(e.msg, want);
	assert_non_null(strstr(e.msg, "bogus"));
	rein_err_clear(&e);

	/* allocation faults: ESPEC with its list, or ENOMEM without one */
	int nomem = 0;
	for (long n = 1; n < 400; n++) {
		rein_err f = {0};
		rein_fault_arm(REIN_FAULT_ALLOC, n);
		int rc = rein_spec_load_bundle(bundle, "wf", sb, &spec, &f);
		rein_fault_arm(REIN_FAULT_ALLOC, 0);
		assert_true(rc == REIN_ESPEC || rc == REIN_ENOMEM);
		assert_int_equal(f.code, rc);
		if (rc == REIN_ESPEC)
			assert_true(f.diags.n > 0);
		else
			assert_int_equal(f.diags.n, 0);
		nomem += rc == REIN_ENOMEM;
		rein_err_clear(&f);
	}
	assert_true(nomem > 0);
	json_decref(bundle);
	rein_script_free(sb);
}

/* A message cut to fit msg never ends in half a UTF-8 sequence. */
static void test_utf8_cut(void **state)
{
	(void)state;
	char big[1100];
	for (size_t off = 0; off < 4; off++) {
		memset(big, 'a', off);
		size_t i = off;
		while (i + 3 < sizeof big - 1) { /* "é" is 2 bytes, "€" 3 */
			memcpy(big + i, i % 2 ? "\xc3\xa9" : "\xe2\x82\xac", i % 2 ? 2 : 3);
			i += i % 2 ? 2 : 3;
		}
		big[i] = '\0';
		rein_err e = {0};
		rein_err_set(&e, REIN_EINVAL, "%s", big);
		json_t *j = json_string(e.msg);
		assert_non_null(j); /* valid UTF-8 */
		assert_true(strlen(e.msg) >= sizeof e.msg - 4);
		json_decref(j);
	}
}

int main(void)
{
	rein_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain),
		cmocka_unit_test(test_diags_attach),
		cmocka_unit_test(test_schema_attach),
		cmocka_unit_test(test_spec_diags),
		cmocka_unit_test(test_utf8_cut),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
