/*
 * The simulation with tool faults. Generated workflows call HTTP tools on the
 * loopback tool server with scripted faults (5xx then success, 429 with
 * Retry-After, hangs past the timeout, 4xx, malformed bodies, slow answers);
 * all runs are in flight in one runner, and the process "dies" at random
 * event boundaries (uncommitted events lost, calls in flight abandoned, the
 * store reopened, every unfinished run resumed). Invariants: every run
 * terminates; a run ends needs_review only when it called a tool without
 * idempotency keys; the server performed at most one side effect per key;
 * no step completed twice; every chain verifies.
 *
 * REIN_SEED=N replays a seed. Needs the tool server (REIN_TOOLSERVER, default
 * build/asan/tools/toolserver).
 */
#include "testlib.h"

#include <inttypes.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

static const char *const modes[] = {
	"ok", "delay:30", "seq:status:503,ok", "seq:status:500,status:502,ok", "seq:retry-after:1,ok",
	"status:400", "malformed", "hang", "seq:close,ok", "badschema",
};

static char *generate(rein_rng *rng, int idx, bool *has_nokey)
{
	rein_buf y = {0};
	int ntools = 1 + (int)rein_rng_below(rng, 3);
	rein_buf_printf(&y, "rein: 1\nname: simtools%d\ntools:\n", idx);
	for (int t = 0; t < 2; t++)
		rein_buf_printf(&y,
				"  t%d:\n"
				"    http: { url: \"${env.TOOLSERVER}/tool/ok\", headers: { X-Mode: \"${args.mode}\" } }\n"
				"    effect: write\n"
				"    idempotency: %s\n"
				"    timeout_s: 1\n"
				"    input: { type: object }\n"
				"    output: { type: object, required: [ok] }\n"
				"    retry: { max_attempts: 3, base_ms: 10, max_delay_ms: 50 }\n"
				"%s",
				t, t == 0 ? "header" : "none",
				rein_rng_below(rng, 3) == 0 ? "    fallback: unavailable\n" : "");
	rein_buf_puts(&y, "steps:\n");
	for (int i = 0; i < ntools; i++) {
		int tool = rein_rng_below(rng, 4) == 0 ? 1 : 0;
		const char *mode = modes[rein_rng_below(rng, sizeof modes / sizeof *modes)];
		if (tool == 1)
			*has_nokey = true;
		rein_buf_printf(&y,
				"  call%d: { tool: t%d, args: { mode: \"%s\", i: %d }, on_fail: fix%d, next: %s%d }\n"
				"  fix%d: { code: 'return { failed = true }', next: %s%d }\n",
				i, tool, mode, i, i, i + 1 < ntools ? "call" : "end", i + 1 < ntools ? i + 1 : 0,
				i, i + 1 < ntools ? "call" : "end", i + 1 < ntools ? i + 1 : 0);
	}
	rein_buf_puts(&y, "  end0: { end: succeeded }\n");
	return y.p;
}

typedef struct sim {
	rein_rng rng;
	int one_in;
	int crashes;
} sim;

static int crash_cb(void *ud, const rein_event_row *ev)
{
	(void)ev;
	sim *s = ud;
	if (rein_rng_below(&s->rng, (uint64_t)s->one_in) == 0) {
		s->crashes++;
		return 1;
	}
	return 0;
}

static int count_completions(void *ud, const rein_event_row *ev)
{
	json_t *c = ud;
	if (strcmp(ev->type, "step.completed") == 0) {
		json_int_t n = json_integer_value(json_object_get(c, ev->step));
		json_object_set_new(c, ev->step, json_integer(n + 1));
	}
	return 0;
}

static json_t *http_get_json(const char *url)
{
	char cmd[300];
	snprintf(cmd, sizeof cmd, "curl -s '%s'", url);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	json_t *j = json_loadf(p, 0, NULL);
	pclose(p);
	return j;
}

static void test_tool_simulation(void **state)
{
	(void)state;
	const char *env = getenv("REIN_SEED");
	uint64_t seed = env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL);
	int nwf = getenv("REIN_SIM_N") ? atoi(getenv("REIN_SIM_N")) : 40;
	printf("SEED=%" PRIu64 " (replay with REIN_SEED=%" PRIu64 ")\n", seed, seed);
	const char *bin = getenv("REIN_TOOLSERVER") ? getenv("REIN_TOOLSERVER") : "build/asan/tools/toolserver";
	char *dir = temp_dir();
	char pf[600], db[600], url[128];
	snprintf(pf, sizeof pf, "%s/port", dir);
	snprintf(db, sizeof db, "%s/rein.db", dir);
	int port = 0;
	pid_t srv = test_server_start(bin, pf, &port);
	assert_true(port > 0);
	snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
	setenv("TOOLSERVER", url, 1);

	rein_script *sb;
	assert_int_equal(rein_script_new(&sb), REIN_OK);
	rein_rng rng;
	rein_rng_seed(&rng, seed);
	rein_spec **specs = calloc((size_t)nwf, sizeof *specs);
	bool *nokey = calloc((size_t)nwf, sizeof *nokey);
	char (*ids)[64] = calloc((size_t)nwf, 64);
	for (int i = 0; i < nwf; i++) {
		char *yaml = generate(&rng, i, &nokey[i]);
		specs[i] = spec_from_yaml(sb, yaml);
		rein_free(yaml);
	}
	sim s = {.one_in = 40};
	rein_rng_seed(&s.rng, seed ^ 0xfa17);
	rein_runner_opts o = {.crash_point = crash_cb, .ud = &s};
	rein_err err = {0};
	bool started = false;
	int finished = 0, statuses[8] = {0};
	for (int round = 0; round < 2000 && finished < nwf; round++) {
		rein_store *st;
		rein_runner *rn;
		assert_int_equal(rein_store_open_sqlite(db, &(rein_store_opts){.no_sync = true}, &st, &err), REIN_OK);
		assert_int_equal(rein_runner_new(st, sb, &o, &rn, &err), REIN_OK);
		int rc = REIN_OK;
		if (!started) {
			/* one crash-free durable start for all of them */
			int saved = s.one_in;
			s.one_in = 1 << 30;
			for (int i = 0; i < nwf && rc == REIN_OK; i++) {
				char want[64];
				snprintf(want, sizeof want, "run_sim_%03d", i);
				json_t *in = json_object();
				rc = rein_runner_start(rn, specs[i], in, want, ids[i], &err);
				json_decref(in);
			}
			if (rc == REIN_OK)
				rc = rein_runner_flush(rn, &err);
			s.one_in = saved;
			assert_int_equal(rc, REIN_OK);
			started = true;
		} else {
			for (int i = 0; i < nwf; i++) {
				rein_run_row row = {0};
				assert_int_equal(rein_store_run_get(st, ids[i], &row, &err), REIN_OK);
				if (row.status < REIN_RUN_SUCCEEDED) {
					rein_err_clear(&err);
					int r2 = rein_runner_resume(rn, ids[i], &err);
					if (r2 != REIN_OK && r2 != REIN_EFAULT)
						fail_msg("seed %" PRIu64 ": resume %s: %s", seed, ids[i], err.msg);
					if (r2 == REIN_EFAULT)
						rc = r2;
				}
				rein_run_row_clear(&row);
				if (rc != REIN_OK)
					break;
			}
		}
		if (rc == REIN_OK)
			rc = rein_runner_drive(rn, &err);
		if (rc != REIN_OK && rc != REIN_EFAULT)
			fail_msg("seed %" PRIu64 ": %s", seed, err.msg);
		rein_run_result r;
		while (rein_runner_result(rn, &r))
			rein_run_result_clear(&r);
		rein_runner_free(rn); /* calls still in flight are abandoned */
		finished = 0;
		for (int i = 0; i < nwf; i++) {
			rein_run_row row = {0};
			assert_int_equal(rein_store_run_get(st, ids[i], &row, &err), REIN_OK);
			finished += row.status >= REIN_RUN_SUCCEEDED;
			rein_run_row_clear(&row);
		}
		rein_store_close(st);
	}
	assert_int_equal(finished, nwf); /* every run terminated */

	rein_store *st;
	assert_int_equal(rein_store_open_sqlite(db, NULL, &st, &err), REIN_OK);
	for (int i = 0; i < nwf; i++) {
		rein_run_row row = {0};
		int64_t bad = 0;
		assert_int_equal(rein_store_run_get(st, ids[i], &row, &err), REIN_OK);
		statuses[row.status]++;
		if (row.status == REIN_RUN_NEEDS_REVIEW && !nokey[i])
			fail_msg("seed %" PRIu64 ": %s needs review without a key-less tool: %s", seed, ids[i],
				 row.reason);
		if (row.status != REIN_RUN_SUCCEEDED && row.status != REIN_RUN_NEEDS_REVIEW)
			fail_msg("seed %" PRIu64 ": %s ended %s: %s", seed, ids[i],
				 rein_status_name(row.status), row.reason);
		if (rein_store_verify_run(st, ids[i], &bad, &err) != REIN_OK)
			fail_msg("seed %" PRIu64 ": %s", seed, err.msg);
		json_t *c = json_object();
		assert_int_equal(rein_store_events_load(st, ids[i], count_completions, c, &err), REIN_OK);
		const char *k;
		json_t *v;
		json_object_foreach(c, k, v)
		{
			if (json_integer_value(v) != 1)
				fail_msg("seed %" PRIu64 ": %s: step %s completed %d times", seed, ids[i], k,
					 (int)json_integer_value(v));
		}
		json_decref(c);
		rein_run_row_clear(&row);
	}
	rein_store_close(st);
	/* at most one side effect per idempotency key, however many deliveries */
	char surl[200];
	snprintf(surl, sizeof surl, "%s/control/stats", url);
	json_t *stats = http_get_json(surl);
	assert_non_null(stats);
	const char *k;
	json_t *v;
	int keys = 0, redelivered = 0;
	json_object_foreach(json_object_get(stats, "effects"), k, v)
	{
		if (json_integer_value(v) > 1)
			fail_msg("seed %" PRIu64 ": key %s had %d side effects", seed, k,
				 (int)json_integer_value(v));
		keys++;
	}
	json_object_foreach(json_object_get(stats, "by_key"), k, v)
		redelivered += json_integer_value(v) > 1;
	printf("sim-tools: %d workflows, %d crashes, %d succeeded, %d needs_review; %d keys with an "
	       "effect, %d keys delivered more than once, none done twice\n",
	       nwf, s.crashes, statuses[REIN_RUN_SUCCEEDED], statuses[REIN_RUN_NEEDS_REVIEW], keys,
	       redelivered);
	json_decref(stats);
	kill(srv, SIGTERM);
	waitpid(srv, NULL, 0);
	for (int i = 0; i < nwf; i++)
		rein_spec_free(specs[i]);
	free(specs);
	free(nokey);
	free(ids);
	rein_script_free(sb);
	rm_rf(dir);
	free(dir);
}

int main(void)
{
	rein_init();
	const struct CMUnitTest tests[] = {cmocka_unit_test(test_tool_simulation)};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
