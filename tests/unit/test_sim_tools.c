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
#include "simlib.h"

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

/* What the runs must show: needs_review only with a key-less tool (nokey[i]),
 * no other end than succeeded, no step completed twice. */
static void check_run(sim *s, int i, rein_store *st, const rein_run_row *row, void *ud)
{
	const bool *nokey = ud;
	rein_err err = {0};
	if (row->status == REIN_RUN_NEEDS_REVIEW && !nokey[i])
		fail_msg("seed %" PRIu64 ": %s needs review without a key-less tool: %s", s->seed,
			 s->ids[i], row->reason);
	if (row->status != REIN_RUN_SUCCEEDED && row->status != REIN_RUN_NEEDS_REVIEW)
		fail_msg("seed %" PRIu64 ": %s ended %s: %s", s->seed, s->ids[i],
			 rein_status_name(row->status), row->reason);
	json_t *c = json_object();
	assert_int_equal(rein_store_events_load(st, s->ids[i], count_completions, c, &err), REIN_OK);
	const char *k;
	json_t *v;
	json_object_foreach(c, k, v)
	{
		if (json_integer_value(v) != 1)
			fail_msg("seed %" PRIu64 ": %s: step %s completed %d times", s->seed, s->ids[i], k,
				 (int)json_integer_value(v));
	}
	json_decref(c);
}

static void test_tool_simulation(void **state)
{
	(void)state;
	sim s;
	sim_init(&s, 40, 0xfa17);
	test_server srv;
	assert_int_equal(test_server_up(&srv, "toolserver"), 0);
	char url[128];
	snprintf(url, sizeof url, "http://127.0.0.1:%d", srv.port);
	setenv("TOOLSERVER", url, 1);

	rein_rng rng;
	rein_rng_seed(&rng, s.seed);
	bool *nokey = calloc((size_t)s.n, sizeof *nokey);
	for (int i = 0; i < s.n; i++) {
		char *yaml = generate(&rng, i, &nokey[i]);
		s.specs[i] = spec_from_yaml(s.sb, yaml);
		rein_free(yaml);
	}
	sim_run_all(&s, "run_sim");
	sim_check(&s, check_run, nokey);
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
			fail_msg("seed %" PRIu64 ": key %s had %d side effects", s.seed, k,
				 (int)json_integer_value(v));
		keys++;
	}
	json_object_foreach(json_object_get(stats, "by_key"), k, v)
		redelivered += json_integer_value(v) > 1;
	printf("sim-tools: %d workflows, %d crashes, %d succeeded, %d needs_review; %d keys with an "
	       "effect, %d keys delivered more than once, none done twice\n",
	       s.n, s.crashes, s.statuses[REIN_RUN_SUCCEEDED], s.statuses[REIN_RUN_NEEDS_REVIEW], keys,
	       redelivered);
	json_decref(stats);
	test_server_down(&srv);
	free(nokey);
	sim_free(&s);
}

int main(void)
{
	rein_init();
	const struct CMUnitTest tests[] = {cmocka_unit_test(test_tool_simulation)};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
