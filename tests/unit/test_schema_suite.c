/*
 * Runs the official JSON-Schema-Test-Suite (required tests of draft2020-12
 * and draft7, not optional/) against the schema layer. The suite is found at
 * tests/conformance/JSON-Schema-Test-Suite relative to the current directory,
 * or at $REIN_JSTS. Remote references (http://localhost:1234/) resolve to the
 * suite's remotes/ folder through a rein_schema_map. Prints one summary line
 * per draft and fails if any required test fails.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "schema.h"

static const char *suite_dir(void)
{
	const char *d = getenv("REIN_JSTS");
	return d && *d ? d : "tests/conformance/JSON-Schema-Test-Suite";
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

typedef struct tally {
	int passed, failed;
} tally;

static void run_file(const char *path, int draft, const rein_schema_map *map, tally *t)
{
	json_error_t je;
	json_t *doc = json_load_file(path, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
	if (doc == NULL) {
		printf("  %s: cannot parse: %s (line %d)\n", path, je.text, je.line);
		t->failed++;
		return;
	}
	size_t gi;
	json_t *group;
	json_array_foreach(doc, gi, group) {
		const char *gdesc = json_string_value(json_object_get(group, "description"));
		json_t *tests = json_object_get(group, "tests");
		rein_schema_opts opts = {.draft = draft, .maps = map, .nmaps = 1};
		rein_schema *s = NULL;
		rein_err err = {0};
		int rc = rein_schema_compile(json_object_get(group, "schema"), &opts, &s, &err);
		size_t ti;
		json_t *tc;
		json_array_foreach(tests, ti, tc) {
			const char *tdesc = json_string_value(json_object_get(tc, "description"));
			bool want = json_is_true(json_object_get(tc, "valid"));
			if (rc != REIN_OK) {
				printf("  FAIL %s | %s | %s: compile error: %s\n", path, gdesc, tdesc,
				       err.msg);
				t->failed++;
				continue;
			}
			rein_schema_errors errs = {0};
			bool got = rein_schema_validate(s, json_object_get(tc, "data"), &errs);
			bool quick = rein_schema_validate(s, json_object_get(tc, "data"), NULL);
			if (got == want && quick == want && (got || errs.n > 0)) {
				t->passed++;
			} else {
				printf("  FAIL %s | %s | %s: expected %s, got %s%s\n", path, gdesc, tdesc,
				       want ? "valid" : "invalid", got ? "valid" : "invalid",
				       quick != got ? " (quick mode disagrees)" : "");
				t->failed++;
			}
			rein_schema_errors_free(&errs);
		}
		rein_schema_free(s);
	}
	json_decref(doc);
}

static void run_draft(const char *name, int draft)
{
	char dir[1024], remotes[1024];
	snprintf(dir, sizeof dir, "%s/tests/%s", suite_dir(), name);
	snprintf(remotes, sizeof remotes, "%s/remotes", suite_dir());
	rein_schema_map map = {.prefix = "http://localhost:1234/", .dir = remotes};
	DIR *d = opendir(dir);
	if (d == NULL) {
		printf("%s: cannot open %s (set REIN_JSTS)\n", name, dir);
		fail();
	}
	char *files[256];
	size_t nfiles = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL && nfiles < 256) {
		size_t l = strlen(de->d_name);
		if (l > 5 && strcmp(de->d_name + l - 5, ".json") == 0)
			files[nfiles++] = strdup(de->d_name);
	}
	closedir(d);
	qsort(files, nfiles, sizeof files[0], name_cmp);
	tally t = {0};
	for (size_t i = 0; i < nfiles; i++) {
		char path[2048];
		snprintf(path, sizeof path, "%s/%s", dir, files[i]);
		run_file(path, draft, &map, &t);
		free(files[i]);
	}
	printf("%s: %d/%d passed\n", name, t.passed, t.passed + t.failed);
	assert_true(t.passed > 0);
	assert_int_equal(t.failed, 0);
}

static void test_draft2020_12(void **state)
{
	(void)state;
	run_draft("draft2020-12", REIN_DRAFT_AUTO);
}

static void test_draft7(void **state)
{
	(void)state;
	run_draft("draft7", REIN_DRAFT_7);
}

int main(void)
{
	rein_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_draft2020_12),
		cmocka_unit_test(test_draft7),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
