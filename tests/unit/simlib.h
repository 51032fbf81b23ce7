/*
 * The crash-and-resume loop of the simulations against the loopback servers
 * (test_sim_tools.c, test_sim_models.c): many runs in flight in one runner,
 * the process "dying" at random event boundaries, the store reopened and
 * every unfinished run resumed, until all have ended. Header-only, like
 * testlib.h. The simulators run in the asan build, where the engine checks
 * its invariants (rein_run_check) after every event it applies and turns a
 * broken one into an error: sim_run_all fails on it.
 */
#ifndef REIN_SIMLIB_H
#define REIN_SIMLIB_H

#include <inttypes.h>
#include <time.h>

#include "testlib.h"

typedef struct sim {
	uint64_t seed; /* REIN_SEED, or the time */
	int n;         /* workflows, one run each: REIN_SIM_N, or the default */
	char *dir;     /* temporary, for the store and what the test puts there */
	char db[600];
	rein_script *sb;
	rein_spec **specs; /* n, compiled by the test */
	char (*ids)[64];   /* n run ids */
	rein_rng rng;      /* where the process dies */
	int one_in;        /* at one event boundary in this many */
	int crashes;
	int statuses[8]; /* runs by final status, counted by sim_check */
} sim;

/* Sets up s for default_n workflows (REIN_SIM_N overrides) and prints the
 * seed; salt keeps the crash points apart from what the seed generates. */
static inline void sim_init(sim *s, int default_n, uint64_t salt)
{
	*s = (sim){.one_in = 40};
	const char *env = getenv("REIN_SEED");
	s->seed = env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL);
	s->n = getenv("REIN_SIM_N") ? atoi(getenv("REIN_SIM_N")) : default_n;
	printf("SEED=%" PRIu64 " (replay with REIN_SEED=%" PRIu64 ")\n", s->seed, s->seed);
	s->dir = temp_dir();
	snprintf(s->db, sizeof s->db, "%s/rein.db", s->dir);
	assert_int_equal(rein_script_new(&s->sb), REIN_OK);
	s->specs = calloc((size_t)s->n, sizeof *s->specs);
	s->ids = calloc((size_t)s->n, sizeof *s->ids);
	assert_true(s->specs != NULL && s->ids != NULL);
	rein_rng_seed(&s->rng, s->seed ^ salt);
}

static inline int sim_crash(void *ud, const rein_event_row *ev)
{
	(void)ev;
	sim *s = ud;
	if (rein_rng_below(&s->rng, (uint64_t)s->one_in) == 0) {
		s->crashes++;
		return 1;
	}
	return 0;
}

/*
 * Starts every spec as a run named <prefix>_NNN, all durably and with no
 * crash, then drives them, dying and resuming, until each has ended (at
 * most 2000 process lives). Fails the test on any error but an injected
 * crash, or if a run never ends.
 */
static inline void sim_run_all(sim *s, const char *prefix)
{
	rein_runner_opts o = {.crash_point = sim_crash, .ud = s};
	rein_err err = {0};
	bool started = false;
	int finished = 0;
	for (int round = 0; round < 2000 && finished < s->n; round++) {
		rein_store *st;
		rein_runner *rn;
		assert_int_equal(rein_store_open(s->db, &(rein_store_opts){.no_sync = true}, &st, &err), REIN_OK);
		assert_int_equal(rein_runner_new(st, s->sb, &o, &rn, &err), REIN_OK);
		int rc = REIN_OK;
		if (!started) {
			/* one crash-free durable start for all of them */
			int saved = s->one_in;
			s->one_in = 1 << 30;
			for (int i = 0; i < s->n && rc == REIN_OK; i++) {
				char want[64];
				snprintf(want, sizeof want, "%s_%03d", prefix, i);
				json_t *in = json_object();
				rc = rein_runner_start(rn, s->specs[i], in, want, s->ids[i], &err);
				json_decref(in);
			}
			if (rc == REIN_OK)
				rc = rein_runner_flush(rn, &err);
			s->one_in = saved;
			assert_int_equal(rc, REIN_OK);
			started = true;
		} else {
			for (int i = 0; i < s->n && rc == REIN_OK; i++) {
				rein_run_row row = {0};
				assert_int_equal(rein_store_run_get(st, s->ids[i], &row, &err), REIN_OK);
				if (row.status < REIN_RUN_SUCCEEDED) {
					rein_err_clear(&err);
					rc = rein_runner_resume(rn, s->ids[i], &err);
					if (rc != REIN_OK && rc != REIN_EFAULT)
						fail_msg("seed %" PRIu64 ": resume %s: %s", s->seed, s->ids[i], err.msg);
				}
				rein_run_row_clear(&row);
			}
		}
		if (rc == REIN_OK)
			rc = rein_runner_drive(rn, &err);
		if (rc != REIN_OK && rc != REIN_EFAULT)
			fail_msg("seed %" PRIu64 ": %s", s->seed, err.msg);
		rein_run_result r;
		while (rein_runner_result(rn, &r))
			rein_run_result_clear(&r);
		rein_runner_free(rn); /* calls still in flight are abandoned */
		finished = 0;
		for (int i = 0; i < s->n; i++) {
			rein_run_row row = {0};
			assert_int_equal(rein_store_run_get(st, s->ids[i], &row, &err), REIN_OK);
			finished += row.status >= REIN_RUN_SUCCEEDED;
			rein_run_row_clear(&row);
		}
		rein_store_close(st);
	}
	assert_int_equal(finished, s->n); /* every run terminated */
}

/* What a test checks of one ended run, beyond its chain. */
typedef void (*sim_check_fn)(sim *s, int i, rein_store *st, const rein_run_row *row, void *ud);

static inline void sim_verify_bad(void *ud, const char *run, int64_t seq, const char *why)
{
	sim *s = ud;
	fail_msg("seed %" PRIu64 ": run %s seq %lld: %s", s->seed, run ? run : "-", (long long)seq, why);
}

/* Counts the runs by status, verifies each chain and calls check on each run. */
static inline void sim_check(sim *s, sim_check_fn check, void *ud)
{
	rein_store *st;
	rein_err err = {0};
	assert_int_equal(rein_store_open(s->db, NULL, &st, &err), REIN_OK);
	for (int i = 0; i < s->n; i++) {
		rein_run_row row = {0};
		int64_t bad = 0;
		assert_int_equal(rein_store_run_get(st, s->ids[i], &row, &err), REIN_OK);
		s->statuses[row.status]++;
		if (rein_store_verify_run(st, s->ids[i], &bad, &err) != REIN_OK)
			fail_msg("seed %" PRIu64 ": %s", s->seed, err.msg);
		check(s, i, st, &row, ud);
		rein_run_row_clear(&row);
	}
	/* and the whole store: the anchor chain, every ended run anchored at its head */
	rein_verify_stats vs = {0};
	assert_int_equal(rein_store_verify_all(st, sim_verify_bad, s, &vs, &err), REIN_OK);
	assert_int_equal(vs.bad + vs.anchor_problems + vs.store_problems, 0);
	assert_true(vs.anchors >= s->n); /* every run ended, so each has an anchor */
	rein_store_close(st);
}

static inline void sim_free(sim *s)
{
	for (int i = 0; i < s->n; i++)
		rein_spec_free(s->specs[i]);
	free(s->specs);
	free(s->ids);
	rein_script_free(s->sb);
	rm_rf(s->dir);
	free(s->dir);
}

#endif
