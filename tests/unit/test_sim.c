/*
 * The seeded simulation. Many generated workflows (code chains, branches,
 * loops bounded by max_visits, waits, parallel fan-outs, failing steps with
 * on_fail) are run twice on a virtual clock: once undisturbed, once with the
 * process "dying" at random event boundaries (everything not yet committed is
 * lost, the store is closed and reopened, and the run is resumed). Invariants:
 * the same final status and output; the committed log completes each step
 * exactly as often as the undisturbed run did (never twice for one visit);
 * every chain verifies. For odd seeds the run with crashes commits batches of
 * two events on the commit thread (opts.commit_thread) while it goes on.
 *
 * REIN_SEED=N replays one seed; REIN_SIM_N sets the number of workflows.
 */
#include "testlib.h"

#include <inttypes.h>
#include <time.h>

typedef struct gen {
	rein_rng rng;
	rein_buf y;
	int nsteps;
	int nwaits;
	int uid; /* for unique step names */
} gen;

static int rnd(gen *g, int n) { return (int)rein_rng_below(&g->rng, (uint64_t)n); }

/* A code step named NAME computing v from the value expression PREV. */
static void code_step(gen *g, const char *name, const char *prev, const char *next)
{
	int a = 1 + rnd(g, 9), b = rnd(g, 100);
	rein_buf_printf(&g->y, "  %s: { code: 'return { v = ((%s) * %d + %d + input.seed) %% 1000 }'",
			name, prev, a, b);
	if (next)
		rein_buf_printf(&g->y, ", next: %s", next);
	rein_buf_puts(&g->y, " }\n");
	g->nsteps++;
}

/*
 * Emits segments that start at step `entry`, read the value expression `prev`
 * and end by going to `exit`. Returns the value expression after them.
 */
static void segment(gen *g, int depth, const char *entry, const char *prev, const char *exit,
		    char *val_out, size_t vlen)
{
	char a[160], b[200], c[200];
	int id = g->uid++;
	int kind = depth > 1 ? 0 : rnd(g, 7);
	switch (kind) {
	case 0: /* code */
		code_step(g, entry, prev, exit);
		snprintf(val_out, vlen, "steps.%s.out.v", entry);
		return;
	case 1: /* branch on parity, both paths converge on exit */
		snprintf(a, sizeof a, "s%d_even", id);
		snprintf(b, sizeof b, "s%d_odd", id);
		rein_buf_printf(&g->y,
				"  %s: { code: 'return { v = (%s) + 1 }', next: [ { when: 'out.v %% 2 == 0', "
				"goto: %s }, { goto: %s } ] }\n",
				entry, prev, a, b);
		g->nsteps++;
		snprintf(c, sizeof c, "steps.%s.out.v", entry);
		code_step(g, a, c, exit);
		code_step(g, b, c, exit);
		snprintf(val_out, vlen, "(steps.%s and steps.%s.out.v or steps.%s.out.v)", a, a, b);
		return;
	case 2: /* a bounded loop on one step */
	{
		int limit = 1 + rnd(g, 4), maxv = limit + rnd(g, 2);
		rein_buf_printf(&g->y,
				"  %s: { code: 'local i = (steps.%s and steps.%s.out.i or 0) + 1\n"
				"      return { i = i, v = ((%s) + i) %% 1000 }', max_visits: %d, on_fail: %s_out,\n"
				"    next: [ { when: 'out.i < %d', goto: %s }, { goto: %s } ] }\n",
				entry, entry, entry, prev, maxv, entry, limit + 1, entry, exit);
		/* hitting max_visits takes on_fail: a recovery step that carries on */
		rein_buf_printf(&g->y, "  %s_out: { code: 'return { v = 999, why = why }', next: %s }\n",
				entry, exit);
		g->nsteps += 2;
		snprintf(val_out, vlen, "(steps.%s_out and 999 or steps.%s.out.v)", entry, entry);
		return;
	}
	case 3: /* wait */
		rein_buf_printf(&g->y, "  %s: { wait: %d, next: %s_after }\n", entry, rnd(g, 5), entry);
		g->nsteps++;
		g->nwaits++;
		snprintf(a, sizeof a, "%s_after", entry);
		code_step(g, a, prev, exit);
		snprintf(val_out, vlen, "steps.%s.out.v", a);
		return;
	case 4: /* parallel fan-out, each branch one or two steps (maybe a wait) */
	{
		int nb = 2 + rnd(g, 2);
		rein_buf_printf(&g->y, "  %s: { parallel: [", entry);
		for (int i = 0; i < nb; i++)
			rein_buf_printf(&g->y, "%s%s_b%d", i ? ", " : "", entry, i);
		rein_buf_printf(&g->y, "], next: %s_join }\n", entry);
		g->nsteps++;
		rein_buf y2 = {0};
		for (int i = 0; i < nb; i++) {
			snprintf(a, sizeof a, "%s_b%d", entry, i);
			if (rnd(g, 2)) {
				rein_buf_printf(&g->y, "  %s: { wait: %d, next: %s_x }\n", a, rnd(g, 4), a);
				g->nsteps++;
				g->nwaits++;
				snprintf(b, sizeof b, "%s_x", a);
				rein_buf_printf(&g->y, "  %s: { code: 'return { v = (%s) + %d }' }\n", b, prev, i);
			} else {
				rein_buf_printf(&g->y, "  %s: { code: 'return { v = (%s) * %d }' }\n", a, prev, i + 2);
			}
			g->nsteps++;
			rein_buf_printf(&y2, "%s(steps.%s.out.%s.v)", i ? " + " : "", entry, a);
		}
		rein_buf_printf(&g->y, "  %s_join: { code: 'return { v = (%s) %% 1000 }', next: %s }\n",
				entry, y2.p, exit);
		g->nsteps++;
		rein_buf_free(&y2);
		snprintf(val_out, vlen, "steps.%s_join.out.v", entry);
		return;
	}
	case 5: /* a step that fails and is recovered through on_fail */
		rein_buf_printf(&g->y,
				"  %s: { code: 'if (%s) %% 3 == 0 then error(\"boom\") end return { v = (%s) + 5 }',"
				" on_fail: %s_fix, next: %s }\n",
				entry, prev, prev, entry, exit);
		rein_buf_printf(&g->y, "  %s_fix: { code: 'return { v = 7, why = why }', next: %s }\n",
				entry, exit);
		g->nsteps += 2;
		snprintf(val_out, vlen, "(steps.%s_fix and 7 or steps.%s.out.v)", entry, entry);
		return;
	default: /* two segments in a row */
	{
		char mid[64], v1[512];
		snprintf(mid, sizeof mid, "s%d_m", id);
		segment(g, depth + 1, entry, prev, mid, v1, sizeof v1);
		segment(g, depth + 1, mid, v1, exit, val_out, vlen);
		return;
	}
	}
}

static char *generate(uint64_t seed)
{
	gen g = {0};
	rein_rng_seed(&g.rng, seed);
	rein_buf_printf(&g.y, "rein: 1\nname: sim%" PRIu64 "\nbudgets: { max_steps: 500 }\nsteps:\n", seed);
	int nseg = 1 + rnd(&g, 5);
	char prev[1024] = "input.seed", next[1024], entry[64], exit[64];
	for (int i = 0; i < nseg; i++) {
		snprintf(entry, sizeof entry, "seg%d", i);
		snprintf(exit, sizeof exit, i + 1 < nseg ? "seg%d" : "finish", i + 1);
		segment(&g, 0, entry, prev, exit, next, sizeof next);
		snprintf(prev, sizeof prev, "%s", next);
	}
	rein_buf_printf(&g.y, "  finish: { code: 'return { v = %s }', next: [ { when: 'out.v %% 5 == 0', goto: esc }, { goto: ok } ] }\n", prev);
	rein_buf_puts(&g.y, "  esc: { end: escalated, reason: 'v is ${steps.finish.out.v}' }\n");
	rein_buf_puts(&g.y, "  ok: { end: succeeded, output: '${ { v = steps.finish.out.v } }' }\n");
	return g.y.p;
}

typedef struct sim {
	rein_manual_clock clock;
	rein_rng crash_rng;
	int crash_one_in;
	int crashes;
} sim;

static void sim_sleep(void *ud, int64_t ms) { ((sim *)ud)->clock.now += ms; }

static int sim_crash(void *ud, const rein_event_row *ev)
{
	(void)ev;
	sim *s = ud;
	if (s->crash_one_in && rein_rng_below(&s->crash_rng, (uint64_t)s->crash_one_in) == 0) {
		s->crashes++;
		return 1;
	}
	return 0;
}

typedef struct outcome {
	rein_status status;
	json_t *output;
	json_t *counts; /* step → completions in the committed log */
} outcome;

/* Runs spec once with input; crash_one_in > 0 injects deaths. */
static void run_once(const char *db, rein_script *sb, const rein_spec *spec, const json_t *input,
		     int crash_one_in, uint64_t seed, outcome *out, int *crashes)
{
	sim s = {.crash_one_in = crash_one_in};
	rein_manual_clock_init(&s.clock, 1700000000000);
	rein_rng_seed(&s.crash_rng, seed ^ 0x5eed);
	/* odd seeds with crashes: tiny batches committed on the commit thread */
	bool threaded = crash_one_in && (seed & 1);
	rein_runner_opts o = {.clock = &s.clock.clock, .max_wait_ms = 3600000, .sleep_ms = sim_sleep,
			      .crash_point = sim_crash, .ud = &s, .commit_thread = threaded,
			      .max_batch = threaded ? 2 : 0};
	rein_err err = {0};
	rein_store *st = NULL;
	rein_runner *rn = NULL;
	char id[64] = "";
	bool started = false, done = false;
	for (int attempt = 0; attempt < 5000 && !done; attempt++) {
		assert_int_equal(rein_store_open(db, &(rein_store_opts){.no_sync = true}, &st, &err), REIN_OK);
		assert_int_equal(rein_runner_new(st, sb, &o, &rn, &err), REIN_OK);
		int rc;
		rein_err_clear(&err);
		if (!started) {
			rc = rein_runner_start(rn, spec, input, "run_sim", id, &err);
			if (rc == REIN_OK)
				rc = rein_runner_flush(rn, &err);
			if (rc == REIN_OK)
				started = true;
		} else {
			rc = rein_runner_resume(rn, "run_sim", &err);
		}
		if (rc == REIN_OK)
			rc = rein_runner_drive(rn, &err);
		if (rc != REIN_OK && rc != REIN_EFAULT)
			fail_msg("seed %" PRIu64 ": %s", seed, err.msg);
		rein_run_result r;
		while (rein_runner_result(rn, &r)) {
			if (r.status != REIN_RUN_WAITING) {
				out->status = r.status;
				out->output = json_incref(r.output);
				done = true;
			}
			rein_run_result_clear(&r);
		}
		rein_runner_free(rn);
		rein_store_close(st);
		s.clock.now += 10; /* time passes while the process restarts */
	}
	assert_true(done);
	assert_int_equal(rein_store_open(db, NULL, &st, &err), REIN_OK);
	int64_t bad = 0;
	if (rein_store_verify_run(st, "run_sim", &bad, &err) != REIN_OK)
		fail_msg("seed %" PRIu64 ": %s", seed, err.msg);
	out->counts = json_object();
	assert_int_equal(rein_store_events_load(st, "run_sim", count_completions, out->counts, &err), REIN_OK);
	rein_store_close(st);
	*crashes = s.crashes;
}

static void test_simulation(void **state)
{
	(void)state;
	const char *env = getenv("REIN_SEED");
	uint64_t base = env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL);
	int n = getenv("REIN_SIM_N") ? atoi(getenv("REIN_SIM_N")) : (env ? 1 : 300);
	printf("SEED=%" PRIu64 " (replay with REIN_SEED=%" PRIu64 " REIN_SIM_N=1)\n", base, base);
	char *dir = temp_dir();
	rein_script *sb;
	assert_int_equal(rein_script_new(&sb), REIN_OK);
	int total_crashes = 0, steps = 0, statuses[8] = {0};
	for (int i = 0; i < n; i++) {
		uint64_t seed = base + (uint64_t)i;
		char *yaml = generate(seed);
		rein_spec *spec = spec_from_yaml(sb, yaml);
		json_t *input = json_pack("{s:I}", "seed", (json_int_t)(seed % 97));
		char db1[600], db2[600];
		snprintf(db1, sizeof db1, "%s/ref-%d.db", dir, i);
		snprintf(db2, sizeof db2, "%s/crash-%d.db", dir, i);
		outcome ref = {0}, got = {0};
		int c0 = 0, c1 = 0;
		run_once(db1, sb, spec, input, 0, seed, &ref, &c0);
		run_once(db2, sb, spec, input, 8, seed, &got, &c1);
		if (ref.status != got.status || !json_equal(ref.output, got.output) ||
		    !json_equal(ref.counts, got.counts)) {
			char *a = json_dumps(ref.counts, JSON_COMPACT | JSON_SORT_KEYS);
			char *b = json_dumps(got.counts, JSON_COMPACT | JSON_SORT_KEYS);
			fprintf(stderr, "workflow:\n%s\nref %s %s\ngot %s %s\n", yaml,
				rein_status_name(ref.status), a, rein_status_name(got.status), b);
			free(a);
			free(b);
			fail_msg("seed %" PRIu64 ": the run with crashes differs", seed);
		}
		total_crashes += c1;
		steps += (int)spec->nsteps;
		statuses[ref.status]++;
		json_decref(ref.output);
		json_decref(ref.counts);
		json_decref(got.output);
		json_decref(got.counts);
		json_decref(input);
		rein_spec_free(spec);
		rein_free(yaml);
	}
	printf("sim: %d workflows (%d steps), %d crashes injected, %d succeeded, %d escalated, %d failed\n",
	       n, steps, total_crashes, statuses[REIN_RUN_SUCCEEDED], statuses[REIN_RUN_ESCALATED],
	       statuses[REIN_RUN_FAILED]);
	assert_true(total_crashes > 0);
	rein_script_free(sb);
	rm_rf(dir);
	free(dir);
}

int main(void)
{
	rein_init();
	const struct CMUnitTest tests[] = {cmocka_unit_test(test_simulation)};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
