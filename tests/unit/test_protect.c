/*
 * Protected payloads through the runner's API, over the in-memory backend
 * (tests/unit/memstore.h): a run of a spec with trace.redact stores no
 * protected value in any event or in its row, yet the engine and the result
 * see the real ones; killed after a step and resumed by a fresh runner, it
 * ends with the same (real) output; without a keyring it is refused; after
 * its tenant's key is shredded the chain still verifies and a resume fails
 * with a clear error.
 */
#include "testlib.h"
#include "memstore.h"

static const char *wf =
	"rein: 1\nname: prot\n"
	"trace: { redact: [email, card] }\n"
	"steps:\n"
	"  a: { code: 'return { mail = input.email, note = \"card \" .. input.card }', next: b }\n"
	"  b: { code: 'return { n = 1 }', next: done }\n"
	"  done: { end: succeeded, output: \"${ { mail = steps.a.out.mail, note = steps.a.out.note } }\" }\n";

static const char *EMAIL = "ann.lee@example.com", *CARD = "4111111111111111";

typedef struct crash {
	const char *after; /* the step whose step.completed is the last event */
} crash;

static int crash_after(void *ud, const rein_event_row *ev)
{
	crash *c = ud;
	return c->after && ev->step && strcmp(ev->step, c->after) == 0 &&
	       strcmp(ev->type, EV(STEP_COMPLETED)) == 0;
}

/* Fails the test when a stored event shows a protected value. */
static int no_values(void *ud, const rein_event_row *ev)
{
	int *n = ud;
	assert_non_null(ev->payload);
	assert_null(strstr(ev->payload, EMAIL));
	assert_null(strstr(ev->payload, CARD));
	if (strstr(ev->payload, "[email:1]"))
		(*n)++;
	return 0;
}

static rein_runner *runner_on(rein_store *st, rein_script *sb, rein_keyring *k, crash *c)
{
	rein_runner_opts o = {.keys = k, .crash_point = crash_after, .ud = c};
	rein_runner *rn = NULL;
	rein_err err = {0};
	assert_int_equal(rein_runner_new(st, sb, &o, &rn, &err), REIN_OK);
	return rn;
}

static void test_protected_run(void **state)
{
	(void)state;
	char *dir = temp_dir(), keys[256];
	snprintf(keys, sizeof keys, "%s/keys", dir);
	memdb db = {0};
	rein_script *sb = NULL;
	rein_store *st = NULL;
	rein_keyring *k = NULL;
	rein_err err = {0};
	assert_int_equal(rein_script_new(&sb), REIN_OK);
	assert_int_equal(memstore_open(&db, &st, &err), REIN_OK);
	assert_int_equal(rein_keyring_open(keys, &k, &err), REIN_OK);
	rein_spec *spec = spec_from_yaml(sb, wf);
	assert_int_equal(spec->redact, REIN_REDACT_EMAIL | REIN_REDACT_CARD);
	json_t *input = json_pack("{s:s, s:s}", "email", EMAIL, "card", CARD);
	char id[64];

	/* no keyring: refused, nothing started */
	rein_runner *rn = runner_on(st, sb, NULL, &(crash){0});
	assert_int_equal(rein_runner_start(rn, spec, input, NULL, id, &err), REIN_EINVAL);
	assert_non_null(strstr(err.msg, "trace.redact"));
	rein_runner_free(rn);
	memset(&err, 0, sizeof err);

	/* killed after step a, its result durable only in part */
	crash c = {.after = "a"};
	rn = runner_on(st, sb, k, &c);
	assert_int_equal(rein_runner_start(rn, spec, input, "run_p", id, &err), REIN_OK);
	assert_int_equal(rein_runner_flush(rn, &err), REIN_OK);
	assert_int_equal(rein_runner_drive(rn, &err), REIN_EFAULT);
	rein_runner_free(rn);
	memset(&err, 0, sizeof err);
	int seen = 0;
	assert_int_equal(rein_store_events_load(st, "run_p", no_values, &seen, &err), REIN_OK);
	assert_true(seen >= 1); /* run.started, with its placeholder */

	/* resumed by a fresh runner: the same real output */
	c.after = NULL;
	rn = runner_on(st, sb, k, &c);
	assert_int_equal(rein_runner_resume(rn, "run_p", &err), REIN_OK);
	assert_int_equal(rein_runner_drive(rn, &err), REIN_OK);
	rein_run_result r = {0};
	assert_true(rein_runner_result(rn, &r));
	assert_int_equal(r.status, REIN_RUN_SUCCEEDED);
	assert_string_equal(json_string_value(json_object_get(r.output, "mail")), EMAIL);
	assert_string_equal(json_string_value(json_object_get(r.output, "note")),
			    "card 4111111111111111");
	rein_run_result_clear(&r);
	rein_runner_free(rn);
	seen = 0;
	assert_int_equal(rein_store_events_load(st, "run_p", no_values, &seen, &err), REIN_OK);
	assert_true(seen >= 3); /* started, a's output, the end */
	rein_run_row row = {0};
	assert_int_equal(rein_store_run_get(st, "run_p", &row, &err), REIN_OK);
	assert_string_equal(row.output, "{\"mail\":\"[email:1]\",\"note\":\"card [card:1]\"}");
	rein_run_row_clear(&row);

	/* shredded: the chain verifies, a resume is refused and says why */
	bool existed = false;
	assert_int_equal(rein_keyring_shred(k, "default", &existed, &err), REIN_OK);
	assert_true(existed);
	int64_t bad = -1;
	assert_int_equal(rein_store_verify_run(st, "run_p", &bad, &err), REIN_OK);
	rn = runner_on(st, sb, k, &c);
	assert_int_equal(rein_runner_resume(rn, "run_p", &err), REIN_EINVAL);
	assert_non_null(strstr(err.msg, "shredded"));
	rein_runner_free(rn);

	json_decref(input);
	rein_spec_free(spec);
	rein_keyring_close(k);
	rein_store_close(st);
	memdb_clear(&db);
	rein_script_free(sb);
	rm_rf(dir);
	free(dir);
}

int main(void)
{
	rein_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_protected_run),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
