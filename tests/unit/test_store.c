/*
 * The store and the runner together: durable runs, leases, the hash chain,
 * and fault injection (the Nth write or allocation fails: a clean error, a
 * store that still verifies, and runs that `resume` finishes correctly).
 */
#include "testlib.h"

static const char *wf = "rein: 1\nname: four\nsteps:\n"
			"  a: { code: 'return { n = input.n + 1 }', next: fan }\n"
			"  fan: { parallel: [b, c], next: w }\n"
			"  b: { code: 'return steps.a.out.n * 2' }\n"
			"  c: { code: 'return steps.a.out.n * 3' }\n"
			"  w: { wait: 2, next: d }\n"
			"  d: { code: 'return { total = steps.fan.out.b + steps.fan.out.c }', next: done }\n"
			"  done: { end: succeeded }\n";

typedef struct env {
	char *dir;
	char db[512];
	rein_manual_clock clock;
	rein_script *sb;
	rein_spec *spec;
	rein_store *st;
	rein_runner *rn;
} env;

static void advance_clock(void *ud, int64_t ms) { ((rein_manual_clock *)ud)->now += ms; }

static int open_runner(env *e, rein_err *err)
{
	rein_runner_opts o = {.clock = &e->clock.clock, .max_wait_ms = 3600000,
			      .sleep_ms = advance_clock, .ud = &e->clock};
	int rc = rein_store_open_sqlite(e->db, &(rein_store_opts){.no_sync = true}, &e->st, err);
	if (rc == REIN_OK)
		rc = rein_runner_new(e->st, e->sb, &o, &e->rn, err);
	return rc;
}

static void close_runner(env *e)
{
	rein_runner_free(e->rn);
	rein_store_close(e->st);
	e->rn = NULL;
	e->st = NULL;
}

static void env_init(env *e)
{
	memset(e, 0, sizeof *e);
	e->dir = temp_dir();
	snprintf(e->db, sizeof e->db, "%s/rein.db", e->dir);
	rein_manual_clock_init(&e->clock, 1700000000000);
	assert_int_equal(rein_script_new(&e->sb), REIN_OK);
	e->spec = spec_from_yaml(e->sb, wf);
	rein_err err = {0};
	assert_int_equal(open_runner(e, &err), REIN_OK);
}

static void env_free(env *e)
{
	close_runner(e);
	rein_spec_free(e->spec);
	rein_script_free(e->sb);
	if (!getenv("KEEP")) rm_rf(e->dir);
	free(e->dir);
}

typedef struct ids {
	char v[64][64];
	int n;
} ids;

static int collect(void *ud, const rein_run_row *row)
{
	ids *x = ud;
	if (x->n < 64)
		snprintf(x->v[x->n++], 64, "%s", row->id);
	return 0;
}

static void test_durable_runs(void **state)
{
	(void)state;
	env e;
	env_init(&e);
	rein_err err = {0};
	char id[64];
	for (int i = 0; i < 3; i++) {
		json_t *in = json_pack("{s:i}", "n", i);
		assert_int_equal(rein_runner_start(e.rn, e.spec, in, NULL, id, &err), REIN_OK);
		json_decref(in);
	}
	assert_int_equal(rein_runner_drive(e.rn, &err), REIN_OK);
	rein_run_result r;
	int n = 0;
	while (rein_runner_result(e.rn, &r)) {
		assert_int_equal(r.status, REIN_RUN_SUCCEEDED);
		assert_non_null(json_object_get(r.output, "total"));
		rein_run_result_clear(&r);
		n++;
	}
	assert_int_equal(n, 3);
	/* reopen: everything is there and verifies */
	close_runner(&e);
	assert_int_equal(open_runner(&e, &err), REIN_OK);
	ids x = {0};
	assert_int_equal(rein_store_run_list(e.st, REIN_RUN_SUCCEEDED, collect, &x, &err), REIN_OK);
	assert_int_equal(x.n, 3);
	for (int i = 0; i < x.n; i++) {
		int64_t bad = 0;
		assert_int_equal(rein_store_verify_run(e.st, x.v[i], &bad, &err), REIN_OK);
		rein_run_row row = {0};
		assert_int_equal(rein_store_run_get(e.st, x.v[i], &row, &err), REIN_OK);
		assert_null(row.lease_owner); /* released when it ended */
		assert_int_equal(row.last_seq, 10);
		rein_run_row_clear(&row);
	}
	/* resuming an ended run just reports it */
	assert_int_equal(rein_runner_resume(e.rn, x.v[0], &err), REIN_OK);
	assert_true(rein_runner_result(e.rn, &r));
	assert_int_equal(r.status, REIN_RUN_SUCCEEDED);
	rein_run_result_clear(&r);
	env_free(&e);
}

typedef struct ev_count {
	int completed[26]; /* per one-letter step name */
	int events;
	int64_t last_seq;
	bool in_order;
} ev_count;

static int count_steps(void *ud, const rein_event_row *ev)
{
	ev_count *c = ud;
	c->in_order &= ev->seq == c->last_seq + 1;
	c->last_seq = ev->seq;
	c->events++;
	if (strcmp(ev->type, "step.completed") == 0 && ev->step && ev->step[0] >= 'a' &&
	    ev->step[0] <= 'z' && ev->step[1] == '\0')
		c->completed[ev->step[0] - 'a']++;
	return 0;
}

/*
 * Many runs in flight with tiny batches committed on the commit thread while
 * the runner goes on: every run ends with the right output, durable, each
 * step completed once, its chain verifies, and nothing stays held.
 */
static void test_commit_thread(void **state)
{
	(void)state;
	env e;
	env_init(&e);
	close_runner(&e);
	rein_err err = {0};
	rein_runner_opts o = {.clock = &e.clock.clock, .max_wait_ms = 3600000,
			      .sleep_ms = advance_clock, .ud = &e.clock, .commit_thread = true,
			      .max_batch = 5};
	assert_int_equal(rein_store_open_sqlite(e.db, &(rein_store_opts){.no_sync = true}, &e.st, &err),
			 REIN_OK);
	assert_int_equal(rein_runner_new(e.st, e.sb, &o, &e.rn, &err), REIN_OK);
	enum { N = 60 };
	char id[N][64];
	for (int i = 0; i < N; i++) {
		json_t *in = json_pack("{s:i}", "n", i);
		assert_int_equal(rein_runner_start(e.rn, e.spec, in, NULL, id[i], &err), REIN_OK);
		json_decref(in);
	}
	assert_int_equal(rein_runner_drive(e.rn, &err), REIN_OK);
	assert_int_equal(rein_runner_active(e.rn), 0);
	rein_run_result r;
	int n = 0;
	while (rein_runner_result(e.rn, &r)) {
		assert_int_equal(r.status, REIN_RUN_SUCCEEDED);
		int k = -1;
		for (int i = 0; i < N; i++)
			if (strcmp(id[i], r.id) == 0)
				k = i;
		assert_true(k >= 0);
		/* total = (n+1)*2 + (n+1)*3 */
		assert_int_equal(json_integer_value(json_object_get(r.output, "total")), 5 * (k + 1));
		rein_run_result_clear(&r);
		n++;
	}
	assert_int_equal(n, N);
	close_runner(&e);
	assert_int_equal(open_runner(&e, &err), REIN_OK);
	for (int i = 0; i < N; i++) {
		int64_t bad = 0;
		assert_int_equal(rein_store_verify_run(e.st, id[i], &bad, &err), REIN_OK);
		rein_run_row row = {0};
		assert_int_equal(rein_store_run_get(e.st, id[i], &row, &err), REIN_OK);
		assert_int_equal(row.status, REIN_RUN_SUCCEEDED);
		assert_null(row.lease_owner);
		rein_run_row_clear(&row);
		ev_count c = {.in_order = true};
		assert_int_equal(rein_store_events_load(e.st, id[i], count_steps, &c, &err), REIN_OK);
		assert_true(c.in_order);
		assert_int_equal(c.events, 10);
		for (int s = 0; s < 4; s++) /* a, b, c, d */
			assert_int_equal(c.completed[s], 1);
	}
	env_free(&e);
}

typedef struct nap_env {
	env *e;
	char id[64];
	int naps;
	int64_t least_left; /* smallest lease_expires - now seen on waking */
} nap_env;

static void nap(void *ud, int64_t ms)
{
	nap_env *n = ud;
	n->e->clock.now += ms;
	n->naps++;
	rein_run_row row = {0};
	rein_err err = {0};
	assert_int_equal(rein_store_run_get(n->e->st, n->id, &row, &err), REIN_OK);
	int64_t left = row.lease_expires - n->e->clock.now;
	if (left < n->least_left)
		n->least_left = left;
	rein_run_row_clear(&row);
}

/* A run sleeping through a timer longer than its lease keeps the lease: the
 * runner wakes every half lease and renews it. */
static void test_lease_renewed_while_sleeping(void **state)
{
	(void)state;
	env e;
	env_init(&e);
	close_runner(&e);
	rein_err err = {0};
	nap_env n = {.e = &e, .least_left = INT64_MAX};
	rein_runner_opts o = {.clock = &e.clock.clock, .max_wait_ms = 3600000, .sleep_ms = nap,
			      .ud = &n, .lease_ms = 10000};
	assert_int_equal(rein_store_open_sqlite(e.db, &(rein_store_opts){.no_sync = true}, &e.st, &err),
			 REIN_OK);
	assert_int_equal(rein_runner_new(e.st, e.sb, &o, &e.rn, &err), REIN_OK);
	rein_spec *spec = spec_from_yaml(e.sb, "rein: 1\nname: nap\nsteps:\n"
						"  w: { wait: 100, next: done }\n"
						"  done: { end: succeeded }\n");
	json_t *in = json_object();
	assert_int_equal(rein_runner_start(e.rn, spec, in, NULL, n.id, &err), REIN_OK);
	json_decref(in);
	assert_int_equal(rein_runner_flush(e.rn, &err), REIN_OK);
	assert_int_equal(rein_runner_drive(e.rn, &err), REIN_OK);
	rein_run_result r;
	assert_true(rein_runner_result(e.rn, &r));
	assert_int_equal(r.status, REIN_RUN_SUCCEEDED);
	rein_run_result_clear(&r);
	assert_true(n.naps >= 20);       /* 100 s in naps of at most 5 s */
	assert_true(n.least_left >= 0);  /* never woke to an expired lease */
	close_runner(&e);
	rein_spec_free(spec);
	e.rn = NULL;
	assert_int_equal(open_runner(&e, &err), REIN_OK);
	env_free(&e);
}

/*
 * A cancel asked by another process that comes back with the very commit in
 * which the run parks for a long wait (and so gives up its lease): the runner
 * takes the lease again and ends the run as cancelled, instead of failing its
 * next commit for a lease it no longer holds.
 */
static void test_cancel_while_parking(void **state)
{
	(void)state;
	env e;
	env_init(&e);
	close_runner(&e);
	rein_err err = {0};
	rein_runner_opts o = {.clock = &e.clock.clock, .max_wait_ms = 60000,
			      .sleep_ms = advance_clock, .ud = &e.clock};
	assert_int_equal(rein_store_open_sqlite(e.db, &(rein_store_opts){.no_sync = true}, &e.st, &err),
			 REIN_OK);
	assert_int_equal(rein_runner_new(e.st, e.sb, &o, &e.rn, &err), REIN_OK);
	rein_spec *spec = spec_from_yaml(e.sb, "rein: 1\nname: park\nsteps:\n"
						"  a: { code: 'return 1', next: w }\n"
						"  w: { wait: 1000, next: done }\n"
						"  done: { end: succeeded }\n");
	json_t *in = json_object();
	char id[64];
	assert_int_equal(rein_runner_start(e.rn, spec, in, NULL, id, &err), REIN_OK);
	json_decref(in);
	assert_int_equal(rein_runner_flush(e.rn, &err), REIN_OK);
	/* another process asks for the cancel now */
	assert_int_equal(rein_store_cancel_request(e.st, id, &err), REIN_OK);
	int rc = rein_runner_drive(e.rn, &err);
	if (rc != REIN_OK)
		fail_msg("drive: %s", err.msg);
	rein_run_result r;
	assert_true(rein_runner_result(e.rn, &r));
	assert_int_equal(r.status, REIN_RUN_CANCELLED);
	rein_run_result_clear(&r);
	rein_run_row row = {0};
	assert_int_equal(rein_store_run_get(e.st, id, &row, &err), REIN_OK);
	assert_int_equal(row.status, REIN_RUN_CANCELLED);
	assert_null(row.lease_owner);
	int64_t bad = 0;
	assert_int_equal(rein_store_verify_run(e.st, id, &bad, &err), REIN_OK);
	rein_run_row_clear(&row);
	rein_spec_free(spec);
	env_free(&e);
}

/* A clock that moves 1 ms each time it is read. */
static int64_t ticking_now(void *ctx) { return (*(int64_t *)ctx)++; }
static void ticking_sleep(void *ud, int64_t ms) { *(int64_t *)ud += ms; }

/*
 * What the engine decides at time t is stamped t: with a clock that moves at
 * every reading, a 3 s wait still records waited_ms 3000 (it recorded 2999
 * when the runner read the clock once to decide and again to stamp).
 */
static void test_decision_time_stamped(void **state)
{
	(void)state;
	env e;
	env_init(&e);
	close_runner(&e);
	rein_err err = {0};
	int64_t clock_ms = 1700000000000;
	rein_clock ticking = {ticking_now, &clock_ms};
	rein_runner_opts o = {.clock = &ticking, .max_wait_ms = 3600000, .sleep_ms = ticking_sleep,
			      .ud = &clock_ms};
	assert_int_equal(rein_store_open_sqlite(e.db, &(rein_store_opts){.no_sync = true}, &e.st, &err),
			 REIN_OK);
	assert_int_equal(rein_runner_new(e.st, e.sb, &o, &e.rn, &err), REIN_OK);
	rein_spec *spec = spec_from_yaml(e.sb, "rein: 1\nname: tick\nsteps:\n"
						"  w: { wait: 3, next: done }\n"
						"  done: { end: succeeded, output: '${ steps.w.out }' }\n");
	json_t *in = json_object();
	char id[64];
	assert_int_equal(rein_runner_start(e.rn, spec, in, NULL, id, &err), REIN_OK);
	json_decref(in);
	assert_int_equal(rein_runner_drive(e.rn, &err), REIN_OK);
	rein_run_result r;
	assert_true(rein_runner_result(e.rn, &r));
	assert_int_equal(r.status, REIN_RUN_SUCCEEDED);
	assert_int_equal(json_integer_value(json_object_get(r.output, "waited_ms")), 3000);
	rein_run_result_clear(&r);
	rein_spec_free(spec);
	env_free(&e);
}

static void test_leases(void **state)
{
	(void)state;
	env e;
	env_init(&e);
	rein_err err = {0};
	char id[64];
	json_t *in = J("{\"n\": 1}");
	assert_int_equal(rein_runner_start(e.rn, e.spec, in, "run_lease", id, &err), REIN_OK);
	assert_int_equal(rein_runner_flush(e.rn, &err), REIN_OK);
	close_runner(&e); /* "crash": the lease stays with this process */
	assert_int_equal(open_runner(&e, &err), REIN_OK);

	/* another host's worker takes it over (forcibly, as an expired lease) */
	int64_t now = e.clock.now;
	const char *mine = rein_runner_owner(e.rn);
	assert_int_equal(rein_store_lease_claim(e.st, "run_lease", mine, "elsewhere/1/1", now + 60000, &err),
			 REIN_OK);
	assert_int_equal(rein_store_lease_claim(e.st, "run_lease", mine, "elsewhere/2/2", now + 60000, &err),
			 REIN_ECONFLICT);
	rein_err_clear(&err);
	/* a live lease on another host blocks resume */
	assert_int_equal(rein_runner_resume(e.rn, "run_lease", &err), REIN_ECONFLICT);
	assert_non_null(strstr(err.msg, "elsewhere/1/1"));
	/* once it expires, resume takes it and records the lost worker */
	e.clock.now += 120000;
	rein_err_clear(&err);
	assert_int_equal(rein_runner_resume(e.rn, "run_lease", &err), REIN_OK);
	assert_int_equal(rein_runner_drive(e.rn, &err), REIN_OK);
	rein_run_result r;
	assert_true(rein_runner_result(e.rn, &r));
	assert_int_equal(r.status, REIN_RUN_SUCCEEDED);
	assert_json_eq(r.output, "{\"total\": 10}");
	rein_run_result_clear(&r);
	int64_t bad = 0;
	assert_int_equal(rein_store_verify_run(e.st, "run_lease", &bad, &err), REIN_OK);
	/* the dead owner on this host: detected without waiting for expiry */
	assert_false(rein_owner_alive("nohost-at-all/1/1") == false); /* other host: assumed alive */
	char dead[200];
	char host[128];
	gethostname(host, sizeof host);
	snprintf(dead, sizeof dead, "%s/999999999/1", host);
	assert_false(rein_owner_alive(dead));
	assert_true(rein_owner_alive(rein_runner_owner(e.rn)));
	json_decref(in);
	env_free(&e);
}

static void test_sandbox_isolation(void **state)
{
	(void)state;
	env e;
	env_init(&e);
	rein_err err = {0};
	rein_spec *bomb = spec_from_yaml(
		e.sb, "rein: 1\nname: bomb\nlimits: { instructions: 100000 }\nsteps:\n"
		      "  spin: { code: 'while true do end', next: done }\n"
		      "  done: { end: succeeded }\n");
	char id[64];
	json_t *in = J("{\"n\": 2}");
	assert_int_equal(rein_runner_start(e.rn, bomb, in, "run_bomb", id, &err), REIN_OK);
	assert_int_equal(rein_runner_start(e.rn, e.spec, in, "run_fine", id, &err), REIN_OK);
	assert_int_equal(rein_runner_drive(e.rn, &err), REIN_OK);
	rein_run_result r;
	int seen = 0;
	while (rein_runner_result(e.rn, &r)) {
		if (strcmp(r.id, "run_bomb") == 0) {
			assert_int_equal(r.status, REIN_RUN_FAILED);
			assert_non_null(strstr(r.reason, "instruction budget"));
		} else {
			assert_int_equal(r.status, REIN_RUN_SUCCEEDED);
			assert_json_eq(r.output, "{\"total\": 15}");
		}
		rein_run_result_clear(&r);
		seen++;
	}
	assert_int_equal(seen, 2);
	json_decref(in);
	close_runner(&e);
	rein_spec_free(bomb);
	env_free(&e);
}

/* Finishes every unfinished run in the store; checks each run's output. */
static void recover_and_check(env *e, int *finished)
{
	rein_err err = {0};
	assert_int_equal(open_runner(e, &err), REIN_OK);
	ids x = {0};
	assert_int_equal(rein_store_run_list(e->st, -1, collect, &x, &err), REIN_OK);
	for (int i = 0; i < x.n; i++) {
		int64_t bad = 0;
		int rc = rein_store_verify_run(e->st, x.v[i], &bad, &err);
		if (rc != REIN_OK)
			fprintf(stderr, "verify: %s\n", err.msg);
		assert_int_equal(rc, REIN_OK);
		rc = rein_runner_resume(e->rn, x.v[i], &err);
		if (rc != REIN_OK)
			fprintf(stderr, "resume: %s (db %s)\n", err.msg, e->db);
		assert_int_equal(rc, REIN_OK);
	}
	assert_int_equal(rein_runner_drive(e->rn, &err), REIN_OK);
	rein_run_result r;
	while (rein_runner_result(e->rn, &r)) {
		assert_int_equal(r.status, REIN_RUN_SUCCEEDED);
		assert_json_eq(r.output, "{\"total\": 15}");
		rein_run_result_clear(&r);
		(*finished)++;
	}
	close_runner(e);
}

static void fault_sweep(int kind)
{
	int clean_errors = 0, n;
	for (n = 1; n < 5000; n++) {
		env e;
		env_init(&e);
		rein_err err = {0};
		char id[64];
		json_t *in = J("{\"n\": 2}");
		rein_fault_arm(kind, n);
		int rc = rein_runner_start(e.rn, e.spec, in, "run_f", id, &err);
		if (rc == REIN_OK)
			rc = rein_runner_flush(e.rn, &err);
		if (rc == REIN_OK)
			rc = rein_runner_drive(e.rn, &err);
		bool fired = rein_fault_count(kind) >= n;
		rein_fault_arm(kind, 0);
		if (rc != REIN_OK) {
			/* a clean error: it says what failed */
			assert_true(rc == REIN_EFAULT || rc == REIN_ENOMEM || rc == REIN_EIO);
			assert_true(strlen(err.msg) > 0);
			clean_errors++;
		}
		rein_run_result r;
		while (rein_runner_result(e.rn, &r)) {
			if (r.status != REIN_RUN_SUCCEEDED)
				fprintf(stderr, "fault %d: %s: %s\n", n, rein_status_name(r.status),
					r.reason ? r.reason : "");
			assert_int_equal(r.status, REIN_RUN_SUCCEEDED);
			rein_run_result_clear(&r);
		}
		close_runner(&e);
		/* the store verifies and resume finishes what was started */
		int finished = 0;
		recover_and_check(&e, &finished);
		json_decref(in);
		env_free(&e);
		if (!fired)
			break; /* the whole scenario ran without reaching fault n */
	}
	printf("fault sweep (%s): %d fault points, %d clean errors\n",
	       kind == REIN_FAULT_WRITE ? "write" : "alloc", n - 1, clean_errors);
	assert_true(n > 5);
	assert_true(clean_errors > 0);
}

static void test_write_faults(void **state)
{
	(void)state;
	fault_sweep(REIN_FAULT_WRITE);
}

static void test_alloc_faults(void **state)
{
	(void)state;
	fault_sweep(REIN_FAULT_ALLOC);
}

int main(void)
{
	rein_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_durable_runs),   cmocka_unit_test(test_commit_thread),
		cmocka_unit_test(test_lease_renewed_while_sleeping),
		cmocka_unit_test(test_cancel_while_parking), cmocka_unit_test(test_decision_time_stamped),
		cmocka_unit_test(test_leases),
		cmocka_unit_test(test_sandbox_isolation), cmocka_unit_test(test_write_faults),
		cmocka_unit_test(test_alloc_faults),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
