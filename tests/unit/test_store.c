/*
 * The store and the runner together: durable runs, leases, the hash chain,
 * and fault injection (the Nth write or allocation fails: a clean error, a
 * store that still verifies, and runs that `resume` finishes correctly); then
 * the store's own contract (claim_due, run_list, the inbox, URLs). Every test
 * runs twice, over SQLite and over the in-memory backend of memstore.h, each
 * behind the fault-injecting wrapper of faultstore.h (disarmed unless a test
 * arms it).
 */
#include "testlib.h"

#include "faultstore.h"
#include "memstore.h"

enum { BE_SQLITE, BE_MEMORY };
static int be_sqlite = BE_SQLITE, be_memory = BE_MEMORY;

static const char *wf = "rein: 1\nname: four\nsteps:\n"
			"  a: { code: 'return { n = input.n + 1 }', next: fan }\n"
			"  fan: { parallel: [b, c], next: w }\n"
			"  b: { code: 'return steps.a.out.n * 2' }\n"
			"  c: { code: 'return steps.a.out.n * 3' }\n"
			"  w: { wait: 2, next: d }\n"
			"  d: { code: 'return { total = steps.fan.out.b + steps.fan.out.c }', next: done }\n"
			"  done: { end: succeeded }\n";

typedef struct env {
	int backend;
	memdb mem;        /* BE_MEMORY: the data, kept across reopens */
	fault_plan plan;  /* the wrapper's; disarmed */
	char *dir;
	char db[512];
	rein_manual_clock clock;
	rein_script *sb;
	rein_spec *spec;
	rein_store *st;
	rein_runner *rn;
} env;

static void advance_clock(void *ud, int64_t ms) { ((rein_manual_clock *)ud)->now += ms; }

/* Opens the test's backend behind the fault wrapper. */
static int open_store(env *e, rein_store **out, rein_err *err)
{
	rein_store *inner = NULL;
	int rc = e->backend == BE_MEMORY
			 ? memstore_open(&e->mem, &inner, err)
			 : rein_store_open(e->db, &(rein_store_opts){.no_sync = true}, &inner, err);
	if (rc == REIN_OK)
		rc = faultstore_wrap(inner, &e->plan, out, err);
	return rc;
}

static int open_runner(env *e, rein_err *err)
{
	rein_runner_opts o = {.clock = &e->clock.clock, .max_wait_ms = 3600000,
			      .sleep_ms = advance_clock, .ud = &e->clock};
	int rc = open_store(e, &e->st, err);
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

static void env_init(env *e, void **state)
{
	memset(e, 0, sizeof *e);
	e->backend = state && *state ? *(int *)*state : BE_SQLITE;
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
	memdb_clear(&e->mem);
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
	env e;
	env_init(&e, state);
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
	assert_int_equal(rein_store_run_each(e.st, REIN_RUN_SUCCEEDED, collect, &x, &err), REIN_OK);
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
	if (rein_event_type_find(ev->type) == REIN_EV_STEP_COMPLETED && ev->step && ev->step[0] >= 'a' &&
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
	env e;
	env_init(&e, state);
	close_runner(&e);
	rein_err err = {0};
	rein_runner_opts o = {.clock = &e.clock.clock, .max_wait_ms = 3600000,
			      .sleep_ms = advance_clock, .ud = &e.clock, .commit_thread = true,
			      .max_batch = 5};
	assert_int_equal(open_store(&e, &e.st, &err),
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
	env e;
	env_init(&e, state);
	close_runner(&e);
	rein_err err = {0};
	nap_env n = {.e = &e, .least_left = INT64_MAX};
	rein_runner_opts o = {.clock = &e.clock.clock, .max_wait_ms = 3600000, .sleep_ms = nap,
			      .ud = &n, .lease_ms = 10000};
	assert_int_equal(open_store(&e, &e.st, &err),
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
	env e;
	env_init(&e, state);
	close_runner(&e);
	rein_err err = {0};
	rein_runner_opts o = {.clock = &e.clock.clock, .max_wait_ms = 60000,
			      .sleep_ms = advance_clock, .ud = &e.clock};
	assert_int_equal(open_store(&e, &e.st, &err),
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
	env e;
	env_init(&e, state);
	close_runner(&e);
	rein_err err = {0};
	int64_t clock_ms = 1700000000000;
	rein_clock ticking = {ticking_now, &clock_ms};
	rein_runner_opts o = {.clock = &ticking, .max_wait_ms = 3600000, .sleep_ms = ticking_sleep,
			      .ud = &clock_ms};
	assert_int_equal(open_store(&e, &e.st, &err),
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
	env e;
	env_init(&e, state);
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
	env e;
	env_init(&e, state);
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
	assert_int_equal(rein_store_run_each(e->st, -1, collect, &x, &err), REIN_OK);
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

/* kind: REIN_FAULT_ALLOC (the Nth allocation fails) or -1 (the Nth write
 * operation of the store fails, through the fault wrapper). */
static void fault_sweep(void **state, int kind)
{
	int clean_errors = 0, n;
	for (n = 1; n < 5000; n++) {
		env e;
		env_init(&e, state);
		rein_err err = {0};
		char id[64];
		json_t *in = J("{\"n\": 2}");
		if (kind == REIN_FAULT_ALLOC)
			rein_fault_arm(kind, n);
		else
			fault_plan_arm(&e.plan, FS_WRITES, n);
		int rc = rein_runner_start(e.rn, e.spec, in, "run_f", id, &err);
		if (rc == REIN_OK)
			rc = rein_runner_flush(e.rn, &err);
		if (rc == REIN_OK)
			rc = rein_runner_drive(e.rn, &err);
		bool fired = kind == REIN_FAULT_ALLOC ? rein_fault_count(kind) >= n : e.plan.fired > 0;
		if (kind == REIN_FAULT_ALLOC)
			rein_fault_arm(kind, 0);
		else
			fault_plan_arm(&e.plan, 0, 0);
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
	printf("fault sweep (%s, %s): %d fault points, %d clean errors\n",
	       kind == REIN_FAULT_ALLOC ? "alloc" : "write",
	       *(int *)*state == BE_MEMORY ? "memory" : "sqlite", n - 1, clean_errors);
	assert_true(n > 5);
	assert_true(clean_errors > 0);
}

static void test_write_faults(void **state) { fault_sweep(state, -1); }

static void test_alloc_faults(void **state) { fault_sweep(state, REIN_FAULT_ALLOC); }

/* ---- the store's contract, without a runner ---- */

static bool alive_unless_dead(void *ud, const char *owner)
{
	(*(int *)ud)++;
	return strncmp(owner, "dead", 4) != 0;
}

/* The version of the bundle "{}" (its SHA-256 in hex: what spec_get checks). */
static const char *v1(void)
{
	static char hex[2 * REIN_HASH_LEN + 1];
	uint8_t h[REIN_HASH_LEN];
	rein_sha256("{}", 2, h);
	rein_hex(h, REIN_HASH_LEN, hex);
	return hex;
}

/* Inserts a run row (autocommitted), of version v1() with its bundle. */
static void put_run(rein_store *st, const char *id, int status, int64_t created, int64_t wake,
		    const char *owner, int64_t expires)
{
	rein_run_row row = {.status = status, .created_at = created, .updated_at = created,
			    .wake_at = wake, .lease_owner = (char *)owner, .lease_expires = expires,
			    .workflow = "w"};
	snprintf(row.id, sizeof row.id, "%s", id);
	snprintf(row.version, sizeof row.version, "%s", v1());
	rein_event_genesis(id, row.last_hash);
	rein_err err = {0};
	assert_int_equal(rein_store_begin(st, &err), REIN_OK);
	assert_int_equal(rein_store_spec_put(st, v1(), "w", "{}", &err), REIN_OK);
	assert_int_equal(rein_store_run_insert(st, &row, &err), REIN_OK);
	assert_int_equal(rein_store_commit(st, &err), REIN_OK);
}

static env *store_env(void **state)
{
	env *e = calloc(1, sizeof *e);
	assert_non_null(e);
	e->backend = *(int *)*state;
	e->dir = temp_dir();
	snprintf(e->db, sizeof e->db, "%s/rein.db", e->dir);
	rein_err err = {0};
	assert_int_equal(open_store(e, &e->st, &err), REIN_OK);
	return e;
}

static void store_env_free(env *e)
{
	rein_store_close(e->st);
	rm_rf(e->dir);
	free(e->dir);
	memdb_clear(&e->mem);
	free(e);
}

static void lease_is(rein_store *st, const char *id, const char *owner, int64_t expires)
{
	rein_run_row row = {0};
	rein_err err = {0};
	assert_int_equal(rein_store_run_get(st, id, &row, &err), REIN_OK);
	if (owner)
		assert_string_equal(row.lease_owner, owner);
	else
		assert_null(row.lease_owner);
	assert_int_equal(row.lease_expires, expires);
	rein_run_row_clear(&row);
}

static void test_claim_due(void **state)
{
	env *e = store_env(state);
	rein_store *st = e->st;
	rein_err err = {0};
	put_run(st, "r1", REIN_RUN_RUNNING, 1, 0, NULL, 0);            /* free */
	put_run(st, "r2", REIN_RUN_WAITING, 2, 900, NULL, 0);          /* due by horizon */
	put_run(st, "r3", REIN_RUN_WAITING, 3, 5000, NULL, 0);         /* not due */
	put_run(st, "r4", REIN_RUN_RUNNING, 4, 0, "live/1/1", 20000);  /* held, alive */
	put_run(st, "r5", REIN_RUN_RUNNING, 5, 0, "dead/1/1", 20000);  /* held, owner dead */
	put_run(st, "r6", REIN_RUN_RUNNING, 6, 0, "old/1/1", 999);     /* expired */
	put_run(st, "r7", REIN_RUN_SUCCEEDED, 7, 0, NULL, 0);          /* ended */
	put_run(st, "r8", REIN_RUN_RUNNING, 8, 0, "me", 20000);        /* ours already */
	int asked = 0;
	rein_claim_req q = {.owner = "me", .now = 1000, .horizon = 1000, .lease_until = 9999,
			    .limit = 2, .alive = alive_unless_dead, .alive_ud = &asked};
	rein_run_row *rows = NULL;
	size_t n = 0;
	/* the limit; running first, by id */
	assert_int_equal(rein_store_claim_due(st, &q, &rows, &n, &err), REIN_OK);
	assert_int_equal(n, 2);
	assert_string_equal(rows[0].id, "r1");
	assert_null(rows[0].lease_owner); /* as before the claim */
	assert_string_equal(rows[1].id, "r5");
	assert_string_equal(rows[1].lease_owner, "dead/1/1");
	assert_true(asked >= 2); /* r4 and r5 asked about */
	rein_run_rows_free(rows, n);
	lease_is(st, "r1", "me", 9999);
	lease_is(st, "r5", "me", 9999);
	/* the rest: the expired one, then the waiting one due by the horizon */
	q.limit = 10;
	assert_int_equal(rein_store_claim_due(st, &q, &rows, &n, &err), REIN_OK);
	assert_int_equal(n, 2);
	assert_string_equal(rows[0].id, "r6");
	assert_string_equal(rows[0].lease_owner, "old/1/1");
	assert_int_equal(rows[0].lease_expires, 999);
	assert_string_equal(rows[1].id, "r2");
	assert_int_equal(rows[1].status, REIN_RUN_WAITING);
	rein_run_rows_free(rows, n);
	/* nothing left: r3 not due, r4 alive, r7 ended, r1/r2/r5/r6/r8 ours */
	assert_int_equal(rein_store_claim_due(st, &q, &rows, &n, &err), REIN_OK);
	assert_int_equal(n, 0);
	rein_run_rows_free(rows, n);
	lease_is(st, "r4", "live/1/1", 20000);
	lease_is(st, "r3", NULL, 0);
	/* another worker sees them all taken; later, expired, they are its */
	q.owner = "other";
	q.now = 10000;
	q.horizon = 10000;
	q.lease_until = 30000;
	assert_int_equal(rein_store_claim_due(st, &q, &rows, &n, &err), REIN_OK);
	assert_int_equal(n, 5); /* r1 r5 r6 (running), r2 r3 (waiting); r4, r8 live */
	assert_string_equal(rows[0].lease_owner, "me");
	assert_string_equal(rows[4].id, "r3");
	rein_run_rows_free(rows, n);
	/* without a predicate every unexpired lease is live */
	q.owner = "third";
	q.alive = NULL;
	assert_int_equal(rein_store_claim_due(st, &q, &rows, &n, &err), REIN_OK);
	assert_int_equal(n, 0);
	rein_run_rows_free(rows, n);
	/* it autocommits: not inside a transaction */
	assert_int_equal(rein_store_begin(st, &err), REIN_OK);
	assert_int_equal(rein_store_claim_due(st, &q, &rows, &n, &err), REIN_EINVAL);
	rein_store_rollback(st);
	assert_int_equal(e->plan.reentered, 0);
	store_env_free(e);
}

/* A waiting run with mail is due whatever its timer (a signal arrived); a
 * waiting run without a timer (wake_at 0) only when it has mail. */
static void test_claim_due_mail(void **state)
{
	env *e = store_env(state);
	rein_store *st = e->st;
	rein_err err = {0};
	put_run(st, "w1", REIN_RUN_WAITING, 1, 500000, NULL, 0); /* a timer far away */
	put_run(st, "w2", REIN_RUN_WAITING, 2, 0, NULL, 0);      /* no timer at all */
	rein_claim_req q = {.owner = "me", .now = 1000, .horizon = 2000, .lease_until = 9999,
			    .limit = 10};
	rein_run_row *rows = NULL;
	size_t n = 0;
	assert_int_equal(rein_store_claim_due(st, &q, &rows, &n, &err), REIN_OK);
	assert_int_equal(n, 0);
	rein_run_rows_free(rows, n);
	const char *runs[] = {"w1", "w2"};
	for (int i = 0; i < 2; i++) {
		rein_inbox_row m = {.run_id = runs[i], .id = "sig-1", .type = "signal",
				    .data = "{\"name\":\"go\"}", .at = 1000};
		assert_int_equal(rein_store_inbox_put(st, &m, NULL, &err), REIN_OK);
	}
	assert_int_equal(rein_store_claim_due(st, &q, &rows, &n, &err), REIN_OK);
	assert_int_equal(n, 2);
	assert_true(rows[0].mail && rows[1].mail);
	rein_run_rows_free(rows, n);
	lease_is(st, "w1", "me", 9999);
	lease_is(st, "w2", "me", 9999);
	store_env_free(e);
}

typedef struct each_ctx {
	rein_store *st;
	char ids[16][64];
	int n;
} each_ctx;

/* Uses the store from inside the iteration: reads and writes. */
static int each_uses_store(void *ud, const rein_run_row *row)
{
	each_ctx *c = ud;
	rein_err err = {0};
	rein_run_row r = {0};
	assert_int_equal(rein_store_run_get(c->st, row->id, &r, &err), REIN_OK);
	assert_int_equal(rein_store_lease_claim(c->st, row->id, r.lease_owner, "lister", 1, &err),
			 REIN_OK);
	rein_run_row_clear(&r);
	snprintf(c->ids[c->n++], 64, "%s", row->id);
	return 0;
}

static void test_run_list(void **state)
{
	env *e = store_env(state);
	rein_store *st = e->st;
	rein_err err = {0};
	/* newest first, equal times by id */
	static const char *order[] = {"g", "e", "f", "d", "a", "b", "c"};
	put_run(st, "a", REIN_RUN_RUNNING, 10, 0, NULL, 0);
	put_run(st, "b", REIN_RUN_SUCCEEDED, 10, 0, NULL, 0);
	put_run(st, "c", REIN_RUN_RUNNING, 10, 0, NULL, 0);
	put_run(st, "d", REIN_RUN_WAITING, 20, 0, NULL, 0);
	put_run(st, "e", REIN_RUN_RUNNING, 30, 0, NULL, 0);
	put_run(st, "f", REIN_RUN_SUCCEEDED, 30, 0, NULL, 0);
	put_run(st, "g", REIN_RUN_RUNNING, 40, 0, NULL, 0);
	rein_run_query q = {.status = -1, .limit = 3};
	int k = 0;
	char last[64];
	for (int page = 0;; page++) {
		rein_run_row *rows = NULL;
		size_t n = 0;
		assert_int_equal(rein_store_run_list(st, &q, &rows, &n, &err), REIN_OK);
		assert_true(n <= 3);
		for (size_t i = 0; i < n; i++)
			assert_string_equal(rows[i].id, order[k++]);
		bool more = n == q.limit;
		if (n) {
			snprintf(last, sizeof last, "%s", rows[n - 1].id);
			q.after_id = last;
			q.after_created = rows[n - 1].created_at;
		}
		rein_run_rows_free(rows, n);
		if (!more)
			break;
		assert_true(page < 5);
	}
	assert_int_equal(k, 7);
	/* a status filter */
	rein_run_query q2 = {.status = REIN_RUN_SUCCEEDED, .limit = 10};
	rein_run_row *rows = NULL;
	size_t n = 0;
	assert_int_equal(rein_store_run_list(st, &q2, &rows, &n, &err), REIN_OK);
	assert_int_equal(n, 2);
	assert_string_equal(rows[0].id, "f");
	assert_string_equal(rows[1].id, "b");
	rein_run_rows_free(rows, n);
	/* run_each: the callback may use the store; no operation is entered
	 * while another is still running */
	e->plan.reentered = 0;
	each_ctx c = {.st = st};
	assert_int_equal(rein_store_run_each(st, -1, each_uses_store, &c, &err), REIN_OK);
	assert_int_equal(c.n, 7);
	for (int i = 0; i < 7; i++)
		assert_string_equal(c.ids[i], order[i]);
	assert_int_equal(e->plan.reentered, 0);
	lease_is(st, "a", "lister", 1);
	store_env_free(e);
}

/* Appends one event (seq) to run id in the open transaction and records it. */
static void append_event(rein_store *st, const char *id, int64_t seq, uint8_t prev[REIN_HASH_LEN],
			 const char *type, const char *payload)
{
	rein_event_row ev = {.run_id = id, .seq = seq, .type = type, .at = 100 + seq,
			     .payload = payload};
	memcpy(ev.prev_hash, prev, REIN_HASH_LEN);
	rein_event_hash(&ev);
	rein_err err = {0};
	assert_int_equal(rein_store_event_append(st, &ev, &err), REIN_OK);
	memcpy(prev, ev.hash, REIN_HASH_LEN);
	rein_run_row row = {.status = REIN_RUN_RUNNING, .last_seq = seq, .lease_owner = "me",
			    .lease_expires = 5000};
	snprintf(row.id, sizeof row.id, "%s", id);
	memcpy(row.last_hash, ev.hash, REIN_HASH_LEN);
	assert_int_equal(rein_store_run_update(st, &row, "me", NULL, &err), REIN_OK);
}

static int count_events(void *ud, const rein_event_row *ev)
{
	(*(int *)ud)++;
	return 0;
}

static void inbox_expect(rein_store *st, const char *id, int n, const char *first_id)
{
	rein_inbox_row *m = NULL;
	size_t k = 0;
	rein_err err = {0};
	assert_int_equal(rein_store_inbox_list(st, id, &m, &k, &err), REIN_OK);
	assert_int_equal(k, n);
	if (n)
		assert_string_equal(m[0].id, first_id);
	rein_inbox_rows_free(m, k);
}

static bool mail_of(rein_store *st, const char *id)
{
	rein_run_row row = {0};
	rein_err err = {0};
	assert_int_equal(rein_store_run_get(st, id, &row, &err), REIN_OK);
	bool m = row.mail;
	rein_run_row_clear(&row);
	return m;
}

static void test_inbox(void **state)
{
	env *e = store_env(state);
	rein_store *st = e->st;
	rein_err err = {0};
	put_run(st, "r", REIN_RUN_RUNNING, 1, 0, "me", 5000);
	assert_false(mail_of(st, "r"));
	bool dup = true;
	rein_inbox_row m1 = {.run_id = "r", .id = "m1", .type = "signal", .data = "{\"x\": 1}",
			     .sender = "alice", .at = 7};
	assert_int_equal(rein_store_inbox_put(st, &m1, &dup, &err), REIN_OK);
	assert_false(dup);
	assert_true(mail_of(st, "r"));
	assert_int_equal(rein_store_inbox_put(st, &m1, &dup, &err), REIN_OK); /* same id */
	assert_true(dup);
	assert_int_equal(rein_store_cancel_request(st, "r", &err), REIN_OK);
	assert_int_equal(rein_store_cancel_request(st, "r", &err), REIN_OK); /* repeated */
	rein_inbox_row ghost = {.run_id = "nobody", .id = "x", .type = "cancel"};
	assert_int_equal(rein_store_inbox_put(st, &ghost, &dup, &err), REIN_ENOTFOUND);
	rein_inbox_row *m = NULL;
	size_t k = 0;
	assert_int_equal(rein_store_inbox_list(st, "r", &m, &k, &err), REIN_OK);
	assert_int_equal(k, 2); /* arrival order */
	assert_int_equal(m[0].seq, 1);
	assert_string_equal(m[0].run_id, "r");
	assert_string_equal(m[0].id, "m1");
	assert_string_equal(m[0].type, "signal");
	assert_string_equal(m[0].data, "{\"x\": 1}");
	assert_string_equal(m[0].sender, "alice");
	assert_int_equal(m[0].at, 7);
	assert_int_equal(m[1].seq, 2);
	assert_string_equal(m[1].id, "cancel");
	assert_string_equal(m[1].type, "cancel");
	assert_null(m[1].data);
	rein_inbox_rows_free(m, k);
	inbox_expect(st, "nobody", 0, NULL);
	/* run_update tells the holder about the mail */
	uint8_t prev[REIN_HASH_LEN];
	rein_event_genesis("r", prev);
	uint8_t start[REIN_HASH_LEN];
	memcpy(start, prev, sizeof prev);
	/* drained in a transaction that rolls back: nothing happened */
	assert_int_equal(rein_store_begin(st, &err), REIN_OK);
	append_event(st, "r", 1, prev, "inbox.signal", "{\"id\": \"m1\"}");
	assert_int_equal(rein_store_inbox_drained(st, "r", 1, &err), REIN_OK);
	inbox_expect(st, "r", 1, "cancel"); /* read-your-writes */
	rein_store_rollback(st);
	inbox_expect(st, "r", 2, "m1");
	assert_true(mail_of(st, "r"));
	int nev = 0;
	assert_int_equal(rein_store_events_load(st, "r", count_events, &nev, &err), REIN_OK);
	assert_int_equal(nev, 0);
	/* drained with the events that record it, committed together */
	memcpy(prev, start, sizeof prev);
	assert_int_equal(rein_store_begin(st, &err), REIN_OK);
	append_event(st, "r", 1, prev, "inbox.signal", "{\"id\": \"m1\"}");
	assert_int_equal(rein_store_inbox_drained(st, "r", 1, &err), REIN_OK);
	assert_int_equal(rein_store_commit(st, &err), REIN_OK);
	inbox_expect(st, "r", 1, "cancel");
	assert_true(mail_of(st, "r")); /* the cancel is still undrained */
	assert_int_equal(rein_store_begin(st, &err), REIN_OK);
	append_event(st, "r", 2, prev, "inbox.cancel", "{\"id\": \"cancel\"}");
	assert_int_equal(rein_store_inbox_drained(st, "r", 2, &err), REIN_OK);
	rein_run_row row = {.status = REIN_RUN_RUNNING, .last_seq = 2, .lease_owner = "me",
			    .lease_expires = 5000};
	snprintf(row.id, sizeof row.id, "r");
	memcpy(row.last_hash, prev, REIN_HASH_LEN);
	bool mail = true;
	assert_int_equal(rein_store_run_update(st, &row, "me", &mail, &err), REIN_OK);
	assert_false(mail);
	assert_int_equal(rein_store_commit(st, &err), REIN_OK);
	inbox_expect(st, "r", 0, NULL);
	assert_false(mail_of(st, "r"));
	int64_t bad = 0;
	assert_int_equal(rein_store_verify_run(st, "r", &bad, &err), REIN_OK);
	/* a drained id stays a duplicate */
	assert_int_equal(rein_store_inbox_put(st, &m1, &dup, &err), REIN_OK);
	assert_true(dup);
	assert_false(mail_of(st, "r"));
	/* new mail reaches the holder through its next update */
	rein_inbox_row m3 = {.run_id = "r", .id = "m3", .type = "signal", .at = 9};
	assert_int_equal(rein_store_inbox_put(st, &m3, &dup, &err), REIN_OK);
	assert_int_equal(rein_store_begin(st, &err), REIN_OK);
	assert_int_equal(rein_store_run_update(st, &row, "me", &mail, &err), REIN_OK);
	assert_true(mail);
	/* transaction rules: put autocommits, drained needs a transaction */
	assert_int_equal(rein_store_inbox_put(st, &m3, &dup, &err), REIN_EINVAL);
	assert_int_equal(rein_store_commit(st, &err), REIN_OK);
	assert_int_equal(rein_store_inbox_drained(st, "r", 3, &err), REIN_EINVAL);
	store_env_free(e);
}

/*
 * The fault wrapper over the store alone: a scenario of every write
 * operation, with the Nth one failing: a clean REIN_EFAULT, and a store that
 * stays consistent (the chain verifies, the run row matches its log, the
 * mail flag matches the inbox).
 */
static int scenario(rein_store *st, rein_err *err)
{
	rein_run_row row = {.status = REIN_RUN_RUNNING, .created_at = 1, .workflow = "w",
			    .lease_owner = "me", .lease_expires = 5000};
	snprintf(row.id, sizeof row.id, "f");
	snprintf(row.version, sizeof row.version, "%s", v1());
	rein_event_genesis("f", row.last_hash);
	int rc;
	if ((rc = rein_store_begin(st, err)) != REIN_OK)
		return rc;
	rc = rein_store_spec_put(st, v1(), "w", "{}", err);
	if (rc == REIN_OK)
		rc = rein_store_run_insert(st, &row, err);
	rein_event_row ev = {.run_id = "f", .seq = 1, .type = EV(RUN_STARTED), .at = 1,
			     .payload = "{}"};
	memcpy(ev.prev_hash, row.last_hash, REIN_HASH_LEN);
	rein_event_hash(&ev);
	if (rc == REIN_OK)
		rc = rein_store_event_append(st, &ev, err);
	row.last_seq = 1;
	memcpy(row.last_hash, ev.hash, REIN_HASH_LEN);
	if (rc == REIN_OK)
		rc = rein_store_run_update(st, &row, "me", NULL, err);
	if (rc != REIN_OK) {
		rein_store_rollback(st);
		return rc;
	}
	if ((rc = rein_store_commit(st, err)) != REIN_OK)
		return rc;
	rein_inbox_row msg = {.run_id = "f", .id = "s1", .type = "signal", .at = 2};
	if ((rc = rein_store_inbox_put(st, &msg, NULL, err)) != REIN_OK)
		return rc;
	if ((rc = rein_store_lease_claim(st, "f", "me", NULL, 0, err)) != REIN_OK)
		return rc;
	rein_claim_req q = {.owner = "me", .now = 10, .horizon = 10, .lease_until = 99, .limit = 5};
	rein_run_row *rows = NULL;
	size_t n = 0;
	if ((rc = rein_store_claim_due(st, &q, &rows, &n, err)) != REIN_OK)
		return rc;
	rein_run_rows_free(rows, n);
	if ((rc = rein_store_begin(st, err)) != REIN_OK)
		return rc;
	ev = (rein_event_row){.run_id = "f", .seq = 2, .type = "inbox.signal", .at = 3,
			      .payload = "{\"id\":\"s1\"}"};
	memcpy(ev.prev_hash, row.last_hash, REIN_HASH_LEN);
	rein_event_hash(&ev);
	rc = rein_store_event_append(st, &ev, err);
	if (rc == REIN_OK)
		rc = rein_store_inbox_drained(st, "f", 1, err);
	row.last_seq = 2;
	row.lease_expires = 99;
	memcpy(row.last_hash, ev.hash, REIN_HASH_LEN);
	if (rc == REIN_OK)
		rc = rein_store_run_update(st, &row, "me", NULL, err);
	if (rc != REIN_OK) {
		rein_store_rollback(st);
		return rc;
	}
	return rein_store_commit(st, err);
}

static void test_store_write_faults(void **state)
{
	int n, errors = 0;
	for (n = 1; n < 100; n++) {
		env *e = store_env(state);
		rein_err err = {0};
		fault_plan_arm(&e->plan, FS_WRITES, n);
		int rc = scenario(e->st, &err);
		bool fired = e->plan.fired > 0;
		fault_plan_arm(&e->plan, 0, 0);
		if (fired) {
			assert_int_equal(rc, REIN_EFAULT);
			assert_non_null(strstr(err.msg, "injected fault"));
			errors++;
		} else {
			assert_int_equal(rc, REIN_OK);
		}
		/* consistent whatever failed: reopen and check */
		rein_store_close(e->st);
		assert_int_equal(open_store(e, &e->st, &err), REIN_OK);
		rein_run_row row = {0};
		rc = rein_store_run_get(e->st, "f", &row, &err);
		if (rc == REIN_OK) {
			int64_t bad = 0;
			assert_int_equal(rein_store_verify_run(e->st, "f", &bad, &err), REIN_OK);
			rein_inbox_row *m = NULL;
			size_t k = 0;
			assert_int_equal(rein_store_inbox_list(e->st, "f", &m, &k, &err), REIN_OK);
			assert_int_equal(row.mail, k > 0);
			assert_true(k == 0 || row.last_seq == 1); /* drained iff logged */
			rein_inbox_rows_free(m, k);
			rein_run_row_clear(&row);
		} else {
			assert_int_equal(rc, REIN_ENOTFOUND); /* the first transaction failed */
			rein_err_clear(&err);
		}
		store_env_free(e);
		if (!fired)
			break;
	}
	printf("store write faults (%s): %d fault points\n",
	       *(int *)*state == BE_MEMORY ? "memory" : "sqlite", n - 1);
	assert_true(n > 8);
	assert_int_equal(errors, n - 1);
}

/* ---- audit and views, called directly ---- */

/* Ends run id at seq with run.ended {status, reason, output}; the row gets
 * row_status/row_output/row_reason (a tampered row when they differ). */
static void end_run(rein_store *st, const char *id, int64_t seq, uint8_t prev[REIN_HASH_LEN],
		    const char *status, const char *output, const char *reason, int row_status,
		    const char *row_output, const char *row_reason)
{
	char payload[512];
	snprintf(payload, sizeof payload, "{\"status\":\"%s\",\"reason\":%s%s%s,\"output\":%s}",
		 status, reason ? "\"" : "", reason ? reason : "null", reason ? "\"" : "", output);
	rein_err err = {0};
	assert_int_equal(rein_store_begin(st, &err), REIN_OK);
	append_event(st, id, seq, prev, "run.ended", payload);
	rein_run_row row = {.status = row_status, .last_seq = seq, .output = (char *)row_output,
			    .reason = (char *)row_reason};
	snprintf(row.id, sizeof row.id, "%s", id);
	memcpy(row.last_hash, prev, REIN_HASH_LEN);
	assert_int_equal(rein_store_run_update(st, &row, "me", NULL, &err), REIN_OK);
	/* the row gives the lease up: the head is anchored, as the runner does */
	assert_int_equal(rein_store_anchor(st, id, seq, prev, NULL, &err), REIN_OK);
	assert_int_equal(rein_store_commit(st, &err), REIN_OK);
}

typedef struct bad_list {
	int n, store;
	char run[8][64];
	int64_t seq[8];
	char why[8][300];
} bad_list;

static void note_bad(void *ud, const char *run, int64_t seq, const char *why)
{
	bad_list *b = ud;
	if (run == NULL) {
		b->store++;
		return;
	}
	assert_true(b->n < 8);
	snprintf(b->run[b->n], 64, "%s", run);
	b->seq[b->n] = seq;
	snprintf(b->why[b->n], 300, "%s", why);
	b->n++;
}

static int find_bad(const bad_list *b, const char *run)
{
	for (int i = 0; i < b->n; i++)
		if (strcmp(b->run[i], run) == 0)
			return i;
	return -1;
}

/*
 * rein_store_verify_all over runs that verify and runs whose row was rewritten
 * behind the log's back (item 13): the status, the output, the reason, an
 * ended row with no run.ended, a running row whose log ended; then a bundle
 * that does not hash to its version (item 12), named for each run using it.
 */
static void test_verify_all(void **state)
{
	env *e = store_env(state);
	rein_store *st = e->st;
	rein_err err = {0};
	rein_verify_stats stats = {0};
	bad_list b = {0};
	assert_int_equal(rein_store_verify_all(st, note_bad, &b, &stats, &err), REIN_OK);
	assert_int_equal(stats.runs, 0);
	const char *names[] = {"good", "status", "output", "reason", "noend", "notended", "scalar"};
	uint8_t prev[7][REIN_HASH_LEN];
	for (int i = 0; i < 7; i++) {
		put_run(st, names[i], REIN_RUN_RUNNING, 10 + i, 0, "me", 5000);
		rein_event_genesis(names[i], prev[i]);
		assert_int_equal(rein_store_begin(st, &err), REIN_OK);
		append_event(st, names[i], 1, prev[i], "run.started", "{}");
		assert_int_equal(rein_store_commit(st, &err), REIN_OK);
	}
	end_run(st, "good", 2, prev[0], "escalated", "{\"a\":[1,2.5]}", "why", REIN_RUN_ESCALATED,
		"{\"a\": [1, 2.5]}", "why"); /* the same JSON, spaced differently */
	end_run(st, "status", 2, prev[1], "escalated", "null", "why", REIN_RUN_SUCCEEDED, NULL, "why");
	end_run(st, "output", 2, prev[2], "succeeded", "{\"x\":1}", NULL, REIN_RUN_SUCCEEDED,
		"{\"x\":2}", NULL);
	end_run(st, "reason", 2, prev[3], "failed", "null", "boom", REIN_RUN_FAILED, NULL, "fine");
	/* no run.ended, but the row says succeeded */
	rein_run_row row = {.status = REIN_RUN_SUCCEEDED, .last_seq = 1, .output = "{}"};
	snprintf(row.id, sizeof row.id, "noend");
	memcpy(row.last_hash, prev[4], REIN_HASH_LEN);
	assert_int_equal(rein_store_run_update(st, &row, NULL, NULL, &err), REIN_OK);
	end_run(st, "notended", 2, prev[5], "cancelled", "null", NULL, REIN_RUN_RUNNING, NULL, NULL);
	end_run(st, "scalar", 2, prev[6], "succeeded", "1", NULL, REIN_RUN_SUCCEEDED, "1", NULL);

	assert_int_equal(rein_store_verify_all(st, note_bad, &b, &stats, &err), REIN_OK);
	assert_int_equal(stats.runs, 7);
	assert_int_equal(stats.events, 14 - 1);
	assert_int_equal(stats.store_problems, 0);
	assert_int_equal(b.store, 0);
	assert_int_equal(stats.bad, 5);
	assert_int_equal(b.n, 5);
	assert_int_equal(find_bad(&b, "good"), -1);
	assert_int_equal(find_bad(&b, "scalar"), -1);
	const char *want[][2] = {{"status", "row's status does not match run.ended"},
				 {"output", "row's output does not match run.ended"},
				 {"reason", "row's reason does not match run.ended"},
				 {"noend", "says succeeded but the log has no run.ended"},
				 {"notended", "status does not match run.ended (row: running, log: cancelled)"}};
	for (int i = 0; i < 5; i++) {
		int k = find_bad(&b, want[i][0]);
		assert_true(k >= 0);
		if (strstr(b.why[k], want[i][1]) == NULL)
			fail_msg("%s: %s", want[i][0], b.why[k]);
		assert_int_equal(b.seq[k], strcmp(want[i][0], "noend") == 0 ? 1 : 2);
	}
	/* verify_run says the same, with the seq */
	int64_t bad = 0;
	assert_int_equal(rein_store_verify_run(st, "status", &bad, &err), REIN_ECORRUPT);
	assert_int_equal(bad, 2);
	rein_err_clear(&err);
	assert_int_equal(rein_store_verify_run(st, "good", &bad, &err), REIN_OK);
	store_env_free(e);

	/* a bundle that does not hash to its version: spec_get refuses it, and
	 * every run of that version is named */
	e = store_env(state);
	st = e->st;
	memset(&b, 0, sizeof b);
	assert_int_equal(rein_store_spec_put(st, v1(), "w", "{\"files\":{\"x\":\"os.exit()\"}}", &err),
			 REIN_OK);
	put_run(st, "one", REIN_RUN_RUNNING, 1, 0, "me", 5000); /* its spec_put keeps the first */
	put_run(st, "two", REIN_RUN_RUNNING, 2, 0, "me", 5000);
	char *text = NULL;
	assert_int_equal(rein_store_spec_get(st, v1(), &text, &err), REIN_ECORRUPT);
	assert_null(text);
	assert_non_null(strstr(err.msg, "does not match its hash"));
	rein_err_clear(&err);
	assert_int_equal(rein_store_verify_all(st, note_bad, &b, &stats, &err), REIN_OK);
	assert_int_equal(stats.bad, 2);
	assert_true(find_bad(&b, "one") >= 0 && find_bad(&b, "two") >= 0);
	char shortv[16];
	snprintf(shortv, sizeof shortv, "%.12s", v1());
	assert_non_null(strstr(b.why[0], shortv));
	assert_int_equal(b.seq[0], 0);
	store_env_free(e);
}

/* ---- the global anchor chain ---- */

/* The anchor hash by store.h's formula, written out byte for byte. */
static void anchor_formula(const rein_anchor_row *a, uint8_t out[REIN_HASH_LEN])
{
	uint8_t buf[512];
	size_t n = 0;
	memcpy(buf, "rein.anchor", 12); /* with its NUL */
	n = 12;
	memcpy(buf + n, a->prev_hash, REIN_HASH_LEN);
	n += REIN_HASH_LEN;
	for (int i = 0; i < 8; i++)
		buf[n++] = (uint8_t)((uint64_t)a->seq >> (56 - 8 * i));
	memcpy(buf + n, a->run_id, strlen(a->run_id) + 1);
	n += strlen(a->run_id) + 1;
	for (int i = 0; i < 8; i++)
		buf[n++] = (uint8_t)((uint64_t)a->run_last_seq >> (56 - 8 * i));
	memcpy(buf + n, a->run_head_hash, REIN_HASH_LEN);
	n += REIN_HASH_LEN;
	rein_sha256(buf, n, out);
}

typedef struct anchor_list {
	rein_anchor_row v[16];
	int n;
} anchor_list;

static int take_anchors(void *ud, const rein_anchor_row *a)
{
	anchor_list *l = ud;
	if (l->n < 16)
		l->v[l->n++] = *a;
	return 0;
}

/* The anchors in l are seqs 1..n, each linked to the one before and hashed
 * by the formula; head: the last one's hash (zeros when none). */
static void assert_chain(const anchor_list *l, uint8_t head[REIN_HASH_LEN])
{
	memset(head, 0, REIN_HASH_LEN);
	for (int i = 0; i < l->n; i++) {
		uint8_t h[REIN_HASH_LEN];
		assert_int_equal(l->v[i].seq, i + 1);
		assert_memory_equal(l->v[i].prev_hash, head, REIN_HASH_LEN);
		anchor_formula(&l->v[i], h);
		assert_memory_equal(h, l->v[i].hash, REIN_HASH_LEN);
		memcpy(head, h, REIN_HASH_LEN);
	}
}

/* Verifies a copy of db changed by tamper; returns the problems seen. */
static bad_list verify_copy(const memdb *db, void (*tamper)(memdb *, const char *), const char *id,
			    rein_verify_stats *stats)
{
	memdb *c = memdb_copy(db);
	assert_non_null(c);
	tamper(c, id);
	rein_store *st = NULL;
	rein_err err = {0};
	assert_int_equal(memstore_open(c, &st, &err), REIN_OK);
	bad_list b = {0};
	assert_int_equal(rein_store_verify_all(st, note_bad, &b, stats, &err), REIN_OK);
	rein_store_close(st);
	memdb_free(c);
	return b;
}

static mem_run *mem_find(memdb *db, const char *id)
{
	mem_run *r = ms_find(db, id);
	assert_non_null(r);
	return r;
}

/* Rehashes the run's events from index k on, and its row (a consistent
 * rewrite that the run's chain alone cannot tell). */
static void rechain(mem_run *r, size_t k)
{
	for (size_t j = k; j < r->nev; j++) {
		mem_ev *e = &r->ev[j];
		if (j > 0)
			memcpy(e->prev_hash, r->ev[j - 1].hash, REIN_HASH_LEN);
		rein_sha256(e->payload, strlen(e->payload), e->payload_hash);
		rein_event_row ev = {.run_id = r->row.id, .seq = e->seq, .type = e->type,
				     .step = e->step, .at = e->at};
		memcpy(ev.payload_hash, e->payload_hash, REIN_HASH_LEN);
		memcpy(ev.prev_hash, e->prev_hash, REIN_HASH_LEN);
		rein_event_chain_hash(&ev, e->hash);
	}
	r->row.last_seq = r->nev ? r->ev[r->nev - 1].seq : 0;
	if (r->nev)
		memcpy(r->row.last_hash, r->ev[r->nev - 1].hash, REIN_HASH_LEN);
}

/* Rehashes the anchors from index k on (a consistent rewrite of the chain). */
static void reanchor(memdb *db, size_t k)
{
	for (size_t j = k; j < db->nanchors; j++) {
		if (j > 0)
			memcpy(db->anchors[j].prev_hash, db->anchors[j - 1].hash, REIN_HASH_LEN);
		rein_anchor_hash(&db->anchors[j], db->anchors[j].hash);
	}
}

static void t_delete_run(memdb *db, const char *id)
{
	mem_run *r = mem_find(db, id);
	size_t i = (size_t)(r - db->runs);
	ms_run_free(r);
	memmove(&db->runs[i], &db->runs[i + 1], (db->nruns - i - 1) * sizeof *r);
	db->nruns--;
}

static void t_rewrite_run(memdb *db, const char *id)
{
	mem_run *r = mem_find(db, id);
	char *p = r->ev[2].payload;
	assert_true(strlen(p) > 2);
	p[1] = p[1] == 'x' ? 'y' : 'x'; /* one byte of a payload, and every hash after it */
	rechain(r, 2);
}

static void t_truncate_run(memdb *db, const char *id)
{
	mem_run *r = mem_find(db, id);
	rein_free(r->ev[r->nev - 1].type);
	rein_free(r->ev[r->nev - 1].step);
	rein_free(r->ev[r->nev - 1].payload);
	r->nev--;
	rechain(r, r->nev);
}

static void t_anchor_byte(memdb *db, const char *id)
{
	(void)id;
	db->anchors[1].run_head_hash[7] ^= 0x10;
}

static void t_anchor_rehashed(memdb *db, const char *id)
{
	(void)id;
	db->anchors[1].run_head_hash[7] ^= 0x10;
	reanchor(db, 1);
}

static void t_anchor_deleted(memdb *db, const char *id)
{
	(void)id;
	memmove(&db->anchors[1], &db->anchors[2], (db->nanchors - 2) * sizeof *db->anchors);
	db->nanchors--;
}

static void t_last_anchor_dropped(memdb *db, const char *id)
{
	(void)id;
	db->nanchors--;
}

static bool why_has(const bad_list *b, const char *run, const char *text)
{
	for (int i = 0; i < b->n; i++)
		if ((run == NULL || strcmp(b->run[i], run) == 0) && strstr(b->why[i], text))
			return true;
	return false;
}

/*
 * The runner anchors each run's head when the run ends, in the global chain
 * whose hashes follow store.h's formula byte for byte; verify_all checks the
 * chain and every anchored head. Over the memory backend, tampering behind
 * the store's back: a whole run deleted, a run's chain rewritten
 * consistently (its own chain verifies), its last event cut off, one byte of
 * an anchor, an anchor rewritten with the chain rehashed, an anchor deleted,
 * the last anchor dropped: each is found and named.
 */
static void test_anchors(void **state)
{
	env e;
	env_init(&e, state);
	rein_err err = {0};
	char id[3][64];
	for (int i = 0; i < 3; i++) {
		json_t *in = json_pack("{s:i}", "n", i);
		assert_int_equal(rein_runner_start(e.rn, e.spec, in, NULL, id[i], &err), REIN_OK);
		json_decref(in);
	}
	assert_int_equal(rein_runner_drive(e.rn, &err), REIN_OK);
	rein_run_result r;
	while (rein_runner_result(e.rn, &r))
		rein_run_result_clear(&r);
	anchor_list l = {0};
	assert_int_equal(rein_store_anchors_load(e.st, take_anchors, &l, &err), REIN_OK);
	assert_int_equal(l.n, 3); /* one per run that ended */
	uint8_t prev[REIN_HASH_LEN];
	assert_chain(&l, prev);
	for (int i = 0; i < l.n; i++) {
		rein_run_row row = {0};
		assert_int_equal(rein_store_run_get(e.st, l.v[i].run_id, &row, &err), REIN_OK);
		assert_int_equal(l.v[i].run_last_seq, row.last_seq);
		assert_memory_equal(l.v[i].run_head_hash, row.last_hash, REIN_HASH_LEN);
		rein_run_row_clear(&row);
	}
	rein_verify_stats stats = {0};
	bad_list b = {0};
	assert_int_equal(rein_store_verify_all(e.st, note_bad, &b, &stats, &err), REIN_OK);
	assert_int_equal(stats.bad, 0);
	assert_int_equal(stats.anchor_problems, 0);
	assert_int_equal(b.n + b.store, 0);
	assert_int_equal(stats.anchors, 3);
	assert_memory_equal(stats.anchor_head, prev, REIN_HASH_LEN);
	assert_int_equal(rein_store_verify_one(e.st, l.v[1].run_id, note_bad, &b, &stats, &err),
			 REIN_OK);
	assert_int_equal(stats.bad + stats.anchor_problems, 0);
	assert_int_equal(stats.run_anchor, 2);
	assert_int_equal(stats.run_anchor_seq, 10);
	/* an anchor outside a transaction is refused */
	assert_int_equal(rein_store_anchor(e.st, id[0], 10, prev, NULL, &err), REIN_EINVAL);
	rein_err_clear(&err);
	if (e.backend == BE_MEMORY) {
		const char *a1 = l.v[1].run_id; /* the run of anchor 2 */
		b = verify_copy(&e.mem, t_delete_run, a1, &stats);
		assert_int_equal(stats.anchor_problems, 1);
		assert_int_equal(stats.runs, 2);
		assert_true(b.store == 1);
		/* the rewritten run: its own chain verifies, its anchor does not */
		int64_t bad = 0;
		{
			memdb *c = memdb_copy(&e.mem);
			rein_store *st = NULL;
			t_rewrite_run(c, a1);
			assert_int_equal(memstore_open(c, &st, &err), REIN_OK);
			assert_int_equal(rein_store_verify_run(st, a1, &bad, &err), REIN_OK);
			rein_store_close(st);
			memdb_free(c);
		}
		b = verify_copy(&e.mem, t_rewrite_run, a1, &stats);
		assert_int_equal(stats.bad, 1);
		assert_true(why_has(&b, a1, "anchor 2: the anchored head of seq 10 is not the run's"));
		assert_int_equal(b.seq[0], 10);
		b = verify_copy(&e.mem, t_truncate_run, a1, &stats);
		assert_int_equal(stats.bad, 1);
		assert_true(why_has(&b, a1, "anchor 2: anchors seq 10 but the log ends at seq 9"));
		b = verify_copy(&e.mem, t_anchor_byte, a1, &stats);
		assert_int_equal(stats.anchor_problems, 1);
		assert_int_equal(b.store, 1);
		b = verify_copy(&e.mem, t_anchor_rehashed, a1, &stats);
		assert_int_equal(stats.anchor_problems, 0);
		assert_int_equal(stats.bad, 1);
		assert_true(why_has(&b, a1, "anchor 2: the anchored head of seq 10"));
		b = verify_copy(&e.mem, t_anchor_deleted, a1, &stats);
		assert_int_equal(stats.anchor_problems, 1); /* anchor 3: anchors are missing */
		assert_int_equal(stats.bad, 1);            /* and a1's head is not anchored */
		assert_true(why_has(&b, a1, "is not anchored"));
		b = verify_copy(&e.mem, t_last_anchor_dropped, NULL, &stats);
		assert_int_equal(stats.anchor_problems, 0);
		assert_int_equal(stats.bad, 1);
		assert_true(why_has(&b, l.v[2].run_id, "is not anchored (the run has no anchor)"));
	}
	env_free(&e);
}

/* Anchors one head on st in its own transaction (commit, or rollback when
 * !commit); returns the anchor's seq. */
static int64_t anchor_on(rein_store *st, const char *id, bool commit)
{
	rein_err err = {0};
	uint8_t head[REIN_HASH_LEN] = {0x42};
	rein_anchor_row a = {0};
	assert_int_equal(rein_store_begin(st, &err), REIN_OK);
	assert_int_equal(rein_store_anchor(st, id, 3, head, &a, &err), REIN_OK);
	if (commit)
		assert_int_equal(rein_store_commit(st, &err), REIN_OK);
	else
		rein_store_rollback(st);
	return a.seq;
}

/*
 * Two handles on one file take turns at the chain (as two processes do). Each
 * handle remembers the last anchor between its transactions while nobody else
 * wrote; a write by the other handle, or a rolled-back anchor, must make it
 * read the chain again: every anchor takes the next seq and links to the one
 * before it (a stale head would reuse a seq, refused by the table's key).
 */
static void test_anchor_handles(void **state)
{
	(void)state;
	char *dir = temp_dir();
	char path[600];
	snprintf(path, sizeof path, "%s/two.db", dir);
	rein_store *a = NULL, *b = NULL;
	rein_err err = {0};
	assert_int_equal(rein_store_open(path, NULL, &a, &err), REIN_OK);
	assert_int_equal(rein_store_open(path, NULL, &b, &err), REIN_OK);
	assert_int_equal(anchor_on(a, "run-a", true), 1);
	assert_int_equal(anchor_on(a, "run-a", true), 2); /* a's own head, remembered */
	assert_int_equal(anchor_on(b, "run-b", true), 3);
	assert_int_equal(anchor_on(b, "run-b", true), 4);
	assert_int_equal(anchor_on(a, "run-a", true), 5); /* b wrote: a reads again */
	assert_int_equal(anchor_on(a, "run-a", false), 6); /* rolled back */
	assert_int_equal(anchor_on(a, "run-a", true), 6);
	assert_int_equal(anchor_on(b, "run-b", false), 7);
	assert_int_equal(anchor_on(a, "run-a", true), 7);
	assert_int_equal(anchor_on(b, "run-b", true), 8);
	anchor_list l = {0};
	assert_int_equal(rein_store_anchors_load(a, take_anchors, &l, &err), REIN_OK);
	assert_int_equal(l.n, 8);
	uint8_t prev[REIN_HASH_LEN];
	assert_chain(&l, prev);
	const char *who = "aabbaaab";
	for (int i = 0; i < l.n; i++)
		assert_int_equal(l.v[i].run_id[4], who[i]);
	rein_store_close(a);
	rein_store_close(b);
	rm_rf(dir);
	free(dir);
}

/* The JSON views: a run row's keys (event_count, not events), and an event
 * whose payload was purged (marked) beside one whose payload is JSON null. */
static void test_views(void **state)
{
	(void)state;
	rein_run_row r = {.status = REIN_RUN_WAITING, .created_at = 1000, .updated_at = 2000,
			  .wake_at = 3000, .last_seq = 4, .workflow = "w", .reason = NULL,
			  .output = NULL, .lease_owner = "me", .mail = true};
	snprintf(r.id, sizeof r.id, "run_v");
	snprintf(r.version, sizeof r.version, "abc");
	json_t *o = rein_run_row_json(&r);
	assert_non_null(o);
	assert_int_equal(json_integer_value(json_object_get(o, "event_count")), 4);
	assert_null(json_object_get(o, "events"));
	assert_string_equal(json_string_value(json_object_get(o, "status")), "waiting");
	assert_string_equal(json_string_value(json_object_get(o, "wake_at")), "1970-01-01T00:00:03.000Z");
	assert_true(json_is_true(json_object_get(o, "cancel_requested")));
	assert_null(json_object_get(o, "output"));
	json_decref(o);
	r.status = REIN_RUN_SUCCEEDED;
	r.output = "{\"n\": 1}";
	r.mail = false;
	o = rein_run_row_json(&r);
	assert_null(json_object_get(o, "wake_at")); /* only while waiting */
	assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "output"), "n")), 1);
	json_decref(o);

	rein_event_row ev = {.run_id = "run_v", .seq = 2, .type = "step.completed", .step = "a",
			     .at = 5, .payload = "null"};
	o = rein_event_row_json(&ev);
	assert_true(json_is_null(json_object_get(o, "data")));
	assert_null(json_object_get(o, "purged"));
	assert_int_equal(strlen(json_string_value(json_object_get(o, "hash"))), 64);
	json_decref(o);
	ev.payload = NULL; /* purged */
	ev.step = NULL;
	o = rein_event_row_json(&ev);
	assert_true(json_is_true(json_object_get(json_object_get(o, "data"), "purged")));
	assert_true(json_is_true(json_object_get(o, "purged")));
	assert_true(json_is_null(json_object_get(o, "step")));
	json_decref(o);
}

/* must_exist: a store that does not exist (or an empty file) is not created. */
static void test_open_must_exist(void **state)
{
	(void)state;
	char *dir = temp_dir();
	char path[600], wal[620];
	snprintf(path, sizeof path, "%s/typo.db", dir);
	rein_store *st = NULL;
	rein_err err = {0};
	rein_store_opts o = {.must_exist = true};
	assert_int_equal(rein_store_open(path, &o, &st, &err), REIN_ENOTFOUND);
	assert_null(st);
	assert_non_null(strstr(err.msg, "no database at"));
	rein_err_clear(&err);
	assert_int_equal(access(path, F_OK), -1);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fclose(f);
	assert_int_equal(rein_store_open(path, &o, &st, &err), REIN_ENOTFOUND);
	rein_err_clear(&err);
	unlink(path);
	assert_int_equal(rein_store_open(path, NULL, &st, &err), REIN_OK); /* creates it */
	rein_store_close(st);
	assert_int_equal(rein_store_open(path, &o, &st, &err), REIN_OK);
	int n = -1;
	assert_int_equal(rein_store_check(st, NULL, NULL, &n, &err), REIN_OK);
	assert_int_equal(n, 0);
	rein_store_close(st);
	snprintf(wal, sizeof wal, "%s-wal", path);
	rm_rf(dir);
	free(dir);
}

static void test_open_url(void **state)
{
	(void)state;
	char *dir = temp_dir();
	char path[600], url[620];
	snprintf(path, sizeof path, "%s/a.db", dir);
	snprintf(url, sizeof url, "sqlite:%s", path);
	rein_store *st = NULL;
	rein_err err = {0};
	assert_int_equal(rein_store_open(url, NULL, &st, &err), REIN_OK);
	put_run(st, "x", REIN_RUN_RUNNING, 1, 0, NULL, 0);
	rein_store_close(st);
	assert_int_equal(rein_store_open(path, NULL, &st, &err), REIN_OK); /* the same file */
	lease_is(st, "x", NULL, 0);
	rein_store_close(st);
	st = NULL;
	assert_int_equal(rein_store_open("postgres://db.example/rein", NULL, &st, &err), REIN_EINVAL);
	assert_non_null(strstr(err.msg, "PostgreSQL"));
	assert_null(st);
	rein_err_clear(&err);
	assert_int_equal(rein_store_open("mysql://x", NULL, &st, &err), REIN_EINVAL);
	assert_non_null(strstr(err.msg, "unknown store URL"));
	rein_err_clear(&err);
	/* a store of the previous schema version is refused, saying so */
	char old[600], cmd[1300];
	snprintf(old, sizeof old, "%s/old.db", dir);
	snprintf(cmd, sizeof cmd,
		 "sqlite3 '%s' 'CREATE TABLE runs(id TEXT); PRAGMA user_version=2;' 2>/dev/null", old);
	if (system(cmd) == 0) {
		assert_int_equal(rein_store_open(old, NULL, &st, &err), REIN_EINVAL);
		assert_non_null(strstr(err.msg, "store schema version 2, this rein reads version 4"));
	}
	rm_rf(dir);
	free(dir);
}

/* The kill switch: set, re-set (same id), lift by exact selector, the
 * version raised by every change, not inside a transaction. */
static void test_kill_switch(void **state)
{
	env *e = store_env(state);
	rein_store *st = e->st;
	rein_err err = {0};
	int64_t v0 = -1, v = -1, id1 = 0, id2 = 0, id3 = 0;
	rein_kill_row *rows = NULL;
	size_t n = 9;
	assert_int_equal(rein_store_kill_version(st, &v0, &err), REIN_OK);
	assert_int_equal(v0, 0);
	assert_int_equal(rein_store_kill_list(st, &v, &rows, &n, &err), REIN_OK);
	assert_int_equal(n, 0);
	assert_null(rows);
	rein_kill_row k = {.workflow = "pay", .reason = "incident 7", .by = "ann", .at = 5};
	assert_int_equal(rein_store_kill_set(st, &k, &id1, &err), REIN_OK);
	rein_kill_row t = {.tool = "refund", .reason = "bad refunds", .at = 6};
	assert_int_equal(rein_store_kill_set(st, &t, &id2, &err), REIN_OK);
	assert_true(id1 > 0 && id2 > id1);
	k.reason = "incident 8";
	assert_int_equal(rein_store_kill_set(st, &k, &id3, &err), REIN_OK);
	assert_int_equal(id3, id1); /* the same selector: the same switch */
	assert_int_equal(rein_store_kill_version(st, &v, &err), REIN_OK);
	assert_int_equal(v, 3);
	assert_int_equal(rein_store_kill_list(st, &v, &rows, &n, &err), REIN_OK);
	assert_int_equal(v, 3);
	assert_int_equal(n, 2);
	assert_string_equal(rows[0].workflow, "pay");
	assert_null(rows[0].tool);
	assert_null(rows[0].tenant);
	assert_string_equal(rows[0].reason, "incident 8");
	assert_string_equal(rows[0].by, "ann");
	assert_string_equal(rows[1].tool, "refund");
	assert_null(rows[1].by);
	assert_int_equal(rows[1].at, 6);
	rein_kill_rows_free(rows, n);
	/* a lift names the exact selector: a wider or narrower one lifts nothing */
	int lifted = 9;
	rein_kill_row other = {.workflow = "pay", .tool = "refund"};
	assert_int_equal(rein_store_kill_lift(st, &other, &lifted, &err), REIN_OK);
	assert_int_equal(lifted, 0);
	assert_int_equal(rein_store_kill_version(st, &v, &err), REIN_OK);
	assert_int_equal(v, 3);
	rein_kill_row sel = {.workflow = "pay"};
	assert_int_equal(rein_store_kill_lift(st, &sel, &lifted, &err), REIN_OK);
	assert_int_equal(lifted, 1);
	assert_int_equal(rein_store_kill_list(st, &v, &rows, &n, &err), REIN_OK);
	assert_int_equal(v, 4);
	assert_int_equal(n, 1);
	assert_string_equal(rows[0].tool, "refund");
	rein_kill_rows_free(rows, n);
	/* set and lift autocommit; list and version read inside a transaction */
	assert_int_equal(rein_store_begin(st, &err), REIN_OK);
	assert_int_equal(rein_store_kill_set(st, &k, NULL, &err), REIN_EINVAL);
	rein_err_clear(&err);
	assert_int_equal(rein_store_kill_lift(st, &t, NULL, &err), REIN_EINVAL);
	rein_err_clear(&err);
	assert_int_equal(rein_store_kill_list(st, &v, &rows, &n, &err), REIN_OK);
	assert_int_equal(n, 1);
	rein_kill_rows_free(rows, n);
	rein_store_rollback(st);
	assert_int_equal(rein_store_kill_version(st, &v, &err), REIN_OK);
	assert_int_equal(v, 4);
	store_env_free(e);
}

/* Collects a run's payloads (NULL: purged) by seq, for test_purge. */
typedef struct pl_list {
	int n;
	bool gone[8];
} pl_list;

static int note_payload(void *ud, const rein_event_row *ev)
{
	pl_list *p = ud;
	if (p->n < 8)
		p->gone[p->n++] = ev->payload == NULL;
	return 0;
}

static pl_list payloads_of(rein_store *st, const char *id)
{
	pl_list p = {0};
	rein_err err = {0};
	assert_int_equal(rein_store_events_load(st, id, note_payload, &p, &err), REIN_OK);
	return p;
}

/*
 * Retention (rein_store_purge): the ended runs before the cutoff lose the
 * payloads no other run uses (a shared one survives), their row's output and
 * reason and their inbox data; a running run is untouched; a dry run counts
 * the same and changes nothing; every chain still verifies; a second purge
 * finds nothing more.
 */
static void test_purge(void **state)
{
	env *e = store_env(state);
	rein_store *st = e->st;
	rein_err err = {0};
	const char *names[] = {"old1", "old2", "live"};
	const char *step[] = {"{\"secret\":1}", "{\"shared\":2}", "{\"shared\":2}"};
	uint8_t prev[3][REIN_HASH_LEN];
	for (int i = 0; i < 3; i++) {
		put_run(st, names[i], REIN_RUN_RUNNING, 0, 0, "me", 5000);
		rein_event_genesis(names[i], prev[i]);
		assert_int_equal(rein_store_begin(st, &err), REIN_OK);
		append_event(st, names[i], 1, prev[i], "run.started", "{}");
		append_event(st, names[i], 2, prev[i], "step.completed", step[i]);
		assert_int_equal(rein_store_commit(st, &err), REIN_OK);
	}
	end_run(st, "old1", 3, prev[0], "succeeded", "{\"x\":1}", NULL, REIN_RUN_SUCCEEDED,
		"{\"x\":1}", NULL);
	end_run(st, "old2", 3, prev[1], "failed", "null", "boom", REIN_RUN_FAILED, NULL, "boom");
	rein_inbox_row msg = {.run_id = "old1", .id = "s1", .type = "signal", .data = "{\"pii\":1}",
			      .at = 1};
	assert_int_equal(rein_store_inbox_put(st, &msg, NULL, &err), REIN_OK);

	rein_purge_stats ps = {0};
	assert_int_equal(rein_store_purge(st, 0, false, &ps, &err), REIN_OK); /* none before 0 */
	assert_int_equal(ps.runs, 0);
	assert_int_equal(ps.payloads, 0);
	for (int dry = 1; dry >= 0; dry--) {
		memset(&ps, 0, sizeof ps);
		assert_int_equal(rein_store_purge(st, 1000, dry, &ps, &err), REIN_OK);
		assert_int_equal(ps.runs, 2);
		assert_int_equal(ps.payloads, 3); /* old1's step and both run.ended */
		assert_int_equal(ps.shared, 2);   /* "{}" and {"shared":2}, used by live */
		assert_int_equal(ps.bytes, (int64_t)(strlen(step[0]) +
			strlen("{\"status\":\"succeeded\",\"reason\":null,\"output\":{\"x\":1}}") +
			strlen("{\"status\":\"failed\",\"reason\":\"boom\",\"output\":null}")));
		assert_int_equal(ps.rows, 2);
		assert_int_equal(ps.inbox, 1);
		pl_list p = payloads_of(st, "old1");
		assert_int_equal(p.n, 3);
		assert_false(p.gone[0]); /* shared with live */
		assert_int_equal(p.gone[1], !dry);
		assert_int_equal(p.gone[2], !dry);
		p = payloads_of(st, "old2");
		assert_false(p.gone[1]); /* live still uses it */
		assert_int_equal(p.gone[2], !dry);
		p = payloads_of(st, "live");
		assert_int_equal(p.n, 2);
		assert_false(p.gone[0] || p.gone[1]);
		rein_run_row row = {0};
		assert_int_equal(rein_store_run_get(st, "old1", &row, &err), REIN_OK);
		assert_int_equal(row.output == NULL, !dry);
		assert_int_equal(row.status, REIN_RUN_SUCCEEDED);
		rein_run_row_clear(&row);
		assert_int_equal(rein_store_run_get(st, "old2", &row, &err), REIN_OK);
		assert_int_equal(row.reason == NULL, !dry);
		rein_run_row_clear(&row);
	}
	rein_verify_stats stats = {0};
	bad_list b = {0};
	assert_int_equal(rein_store_verify_all(st, note_bad, &b, &stats, &err), REIN_OK);
	assert_int_equal(stats.runs, 3);
	assert_int_equal(stats.bad, 0);
	assert_int_equal(stats.anchor_problems, 0);
	memset(&ps, 0, sizeof ps);
	assert_int_equal(rein_store_purge(st, 1000, false, &ps, &err), REIN_OK);
	assert_int_equal(ps.runs, 2);
	assert_int_equal(ps.payloads + ps.rows + ps.inbox, 0);
	/* inside a transaction: refused */
	assert_int_equal(rein_store_begin(st, &err), REIN_OK);
	assert_int_equal(rein_store_purge(st, 1000, false, &ps, &err), REIN_EINVAL);
	rein_store_rollback(st);
	store_env_free(e);
}

/* The count of one (tool, write) in rows, 0 when absent. */
static int64_t count_of(const rein_call_count *rows, size_t n, const char *tool, bool write)
{
	for (size_t i = 0; i < n; i++)
		if (rows[i].write == write && strcmp(rows[i].tool, tool) == 0)
			return rows[i].n;
	return 0;
}

/* Calls per tenant: noted inside a transaction only (rolled back with it),
 * once per (run, seq), counted per tenant by (tool, write) after `since`,
 * kept across a reopen. */
static void test_call_counts(void **state)
{
	env *e = store_env(state);
	rein_store *st = e->st;
	rein_err err = {0};
	rein_call_count *rows = NULL;
	size_t n = 9;
	assert_int_equal(rein_store_call_counts(st, "acme", 0, &rows, &n, &err), REIN_OK);
	assert_int_equal(n, 0);
	assert_null(rows);
	rein_call_row c = {.tenant = "acme", .run_id = "r1", .seq = 3, .tool = "pay", .write = true,
			   .at = 1000};
	assert_int_equal(rein_store_call_note(st, &c, &err), REIN_EINVAL); /* no transaction */
	rein_err_clear(&err);
	assert_int_equal(rein_store_begin(st, &err), REIN_OK);
	assert_int_equal(rein_store_call_note(st, &c, &err), REIN_OK);
	rein_store_rollback(st);
	assert_int_equal(rein_store_call_counts(st, "acme", 0, &rows, &n, &err), REIN_OK);
	assert_int_equal(n, 0); /* rolled back */
	assert_int_equal(rein_store_begin(st, &err), REIN_OK);
	assert_int_equal(rein_store_call_note(st, &c, &err), REIN_OK);
	assert_int_equal(rein_store_call_note(st, &c, &err), REIN_OK); /* the same: once */
	c.seq = 5, c.at = 2000;
	assert_int_equal(rein_store_call_note(st, &c, &err), REIN_OK);
	c.run_id = "r2", c.seq = 3, c.at = 3000;
	assert_int_equal(rein_store_call_note(st, &c, &err), REIN_OK);
	c.tool = "look", c.write = false;
	assert_int_equal(rein_store_call_note(st, &c, &err), REIN_OK);
	c.seq = 4;
	assert_int_equal(rein_store_call_note(st, &c, &err), REIN_OK);
	c.tenant = "globex", c.run_id = "r3", c.tool = "pay", c.write = true, c.seq = 3;
	assert_int_equal(rein_store_call_note(st, &c, &err), REIN_OK);
	assert_int_equal(rein_store_commit(st, &err), REIN_OK);
	assert_int_equal(rein_store_call_counts(st, "acme", 0, &rows, &n, &err), REIN_OK);
	/* r2 seq 3 was noted as pay and then again as look: the first stays */
	assert_int_equal(count_of(rows, n, "pay", true), 3);
	assert_int_equal(count_of(rows, n, "look", false), 1);
	assert_int_equal(count_of(rows, n, "pay", false), 0);
	rein_call_counts_free(rows, n);
	/* the window: at > since */
	assert_int_equal(rein_store_call_counts(st, "acme", 2000, &rows, &n, &err), REIN_OK);
	assert_int_equal(count_of(rows, n, "pay", true), 1);
	assert_int_equal(count_of(rows, n, "look", false), 1);
	rein_call_counts_free(rows, n);
	assert_int_equal(rein_store_call_counts(st, "globex", 0, &rows, &n, &err), REIN_OK);
	assert_int_equal(n, 1);
	assert_int_equal(count_of(rows, n, "pay", true), 1);
	rein_call_counts_free(rows, n);
	assert_int_equal(rein_store_call_counts(st, "initech", 0, &rows, &n, &err), REIN_OK);
	assert_int_equal(n, 0);
	/* kept across a reopen */
	rein_store_close(st);
	assert_int_equal(open_store(e, &e->st, &err), REIN_OK);
	st = e->st;
	assert_int_equal(rein_store_call_counts(st, "acme", 0, &rows, &n, &err), REIN_OK);
	assert_int_equal(count_of(rows, n, "pay", true), 3);
	rein_call_counts_free(rows, n);
	store_env_free(e);
}

/* Deployments (store.h contract, runner.h rules): rows kept with their end,
 * one active per role, the split by start key, and the rollback rule over the
 * runs each deployment started. */
static void test_deployments(void **state)
{
	env *e = store_env(state);
	rein_store *st = e->st;
	rein_err err = {0};
	rein_deploy_row *rows = NULL;
	size_t n = 9;
	int64_t id = 0, id2 = 0;
	assert_int_equal(rein_store_deploy_list(st, NULL, &rows, &n, &err), REIN_OK);
	assert_int_equal(n, 0);
	rein_deploy_rows_free(rows, n);
	/* the store's own contract */
	rein_deploy_row d = {.name = "w", .role = "stable", .by = "ann", .at = 10};
	memset(d.version, 'a', 64);
	assert_int_equal(rein_store_deploy_add(st, &d, &id, &err), REIN_OK);
	assert_int_equal(rein_store_begin(st, &err), REIN_OK); /* joins a transaction */
	d.name = "other";
	assert_int_equal(rein_store_deploy_add(st, &d, &id2, &err), REIN_OK);
	rein_store_rollback(st);
	assert_int_equal(rein_store_deploy_end(st, id, "superseded", "why", 20, &err), REIN_OK);
	assert_int_equal(rein_store_deploy_end(st, id, "rolled_back", "again", 30, &err),
			 REIN_ENOTFOUND); /* the first end wins */
	rein_err_clear(&err);
	assert_int_equal(rein_store_deploy_list(st, NULL, &rows, &n, &err), REIN_OK);
	assert_int_equal(n, 1); /* the rolled-back add is gone */
	assert_string_equal(rows[0].name, "w");
	assert_string_equal(rows[0].state, "superseded");
	assert_string_equal(rows[0].reason, "why");
	assert_string_equal(rows[0].by, "ann");
	assert_int_equal(rows[0].ended_at, 20);
	assert_int_equal(rows[0].at, 10);
	assert_null(rows[0].rule);
	rein_deploy_rows_free(rows, n);

	/* the rules, over runs of two versions of the test's workflow */
	rein_manual_clock_init(&e->clock, 1700000000000);
	assert_int_equal(rein_script_new(&e->sb), REIN_OK);
	e->spec = spec_from_yaml(e->sb, wf);
	rein_spec *cand = spec_from_yaml(e->sb, "rein: 1\nname: four\nsteps:\n"
					 "  a: { code: 'return 1', next: h }\n"
					 "  h: { end: escalated, reason: unsure }\n");
	const rein_spec *stable = e->spec;
	assert_string_equal(cand->name, stable->name);
	int64_t t0 = rein_clock_now(&e->clock.clock);
	assert_int_equal(rein_deploy(st, cand, 20, NULL, NULL, t0, NULL, &err), REIN_EINVAL);
	assert_non_null(strstr(err.msg, "no stable version"));
	rein_err_clear(&err);
	assert_int_equal(rein_deploy(st, stable, 0, NULL, "ann", t0, &id, &err), REIN_OK);
	assert_int_equal(rein_deploy(st, stable, 0, NULL, "ann", t0, &id2, &err), REIN_OK);
	assert_int_equal(id2, id); /* already so */
	rein_rollback_rule rule;
	assert_int_equal(rein_rollback_parse("min_runs=3,success_drop=0.5", &rule, &err), REIN_OK);
	assert_int_equal(rule.min_runs, 3);
	assert_true(rule.escalation_rise == 0.1 && rule.success_drop == 0.5);
	assert_int_equal(rein_rollback_parse("min_runs=3,nope=1", &rule, &err), REIN_EINVAL);
	rein_err_clear(&err);
	assert_int_equal(rein_rollback_parse("success_drop=2", &rule, &err), REIN_EINVAL);
	rein_err_clear(&err);
	rule = (rein_rollback_rule){.success_drop = 0.5, .escalation_rise = 0.5, .min_runs = 3};
	assert_int_equal(rein_deploy(st, cand, 50, &rule, NULL, t0, &id2, &err), REIN_OK);
	assert_true(id2 > id);
	/* the split: by bucket, the same key the same version */
	char v[65];
	bool c = false;
	int sent = 0;
	for (int i = 0; i < 40; i++) {
		char key[32];
		snprintf(key, sizeof key, "k%d", i);
		assert_int_equal(rein_deploy_route(st, "four", key, v, &c, &err), REIN_OK);
		assert_int_equal(c, rein_deploy_bucket(key) < 50);
		assert_string_equal(v, c ? cand->version : stable->version);
		sent += c;
	}
	assert_true(sent > 5 && sent < 35);
	assert_int_equal(rein_deploy_route(st, "nope", "k1", v, &c, &err), REIN_ENOTFOUND);
	rein_err_clear(&err);
	/* runs: the stable one succeeds, the candidate's escalate */
	bool rolled = true;
	char *why = NULL;
	rein_runner_opts o = {.clock = &e->clock.clock, .max_wait_ms = 3600000,
			      .sleep_ms = advance_clock, .ud = &e->clock};
	assert_int_equal(rein_runner_new(st, e->sb, &o, &e->rn, &err), REIN_OK);
	for (int i = 0; i < 3; i++) {
		char id_out[64];
		json_t *in = json_pack("{s:i}", "n", 1);
		assert_int_equal(rein_runner_start(e->rn, stable, in, NULL, id_out, &err), REIN_OK);
		assert_int_equal(rein_runner_start(e->rn, cand, in, NULL, id_out, &err), REIN_OK);
		json_decref(in);
		assert_int_equal(rein_runner_drive(e->rn, &err), REIN_OK);
		rein_run_result r;
		while (rein_runner_result(e->rn, &r))
			rein_run_result_clear(&r);
		assert_int_equal(rein_deploy_check(st, "four", rein_clock_now(&e->clock.clock), &rolled, &why, &err),
				 REIN_OK);
		assert_int_equal(rolled, i == 2); /* after min_runs candidate runs, not before */
		if (i < 2)
			assert_null(why);
	}
	assert_non_null(why);
	assert_non_null(strstr(why, "success rate 0.00 vs stable 1.00"));
	rein_free(why);
	assert_int_equal(rein_deploy_route(st, "four", "k1", v, &c, &err), REIN_OK);
	assert_false(c); /* rolled back: every key goes to stable */
	assert_int_equal(rein_deploy_check(st, "four", rein_clock_now(&e->clock.clock), &rolled, NULL, &err), REIN_OK);
	assert_false(rolled);
	assert_int_equal(rein_store_deploy_list(st, "four", &rows, &n, &err), REIN_OK);
	assert_int_equal(n, 2);
	assert_string_equal(rows[1].state, "rolled_back");
	rein_deploy_stats s;
	assert_int_equal(rein_deploy_stats_get(st, &rows[1], &s, &err), REIN_OK);
	assert_true(s.runs == 3 && s.escalated == 3 && s.escalation_rate == 1.0);
	rein_deploy_rows_free(rows, n);
	/* deployed again: from no runs; as stable: promoted */
	assert_int_equal(rein_deploy(st, cand, 50, &rule, NULL, rein_clock_now(&e->clock.clock), NULL, &err), REIN_OK);
	assert_int_equal(rein_deploy_check(st, "four", rein_clock_now(&e->clock.clock), &rolled, NULL, &err), REIN_OK);
	assert_false(rolled);
	assert_int_equal(rein_deploy(st, cand, 0, NULL, NULL, rein_clock_now(&e->clock.clock), NULL, &err), REIN_OK);
	assert_int_equal(rein_store_deploy_list(st, "four", &rows, &n, &err), REIN_OK);
	assert_int_equal(n, 4);
	assert_string_equal(rows[0].state, "superseded");
	assert_string_equal(rows[2].state, "promoted");
	assert_string_equal(rows[3].state, "active");
	assert_string_equal(rows[3].role, "stable");
	rein_deploy_rows_free(rows, n);
	rein_runner_free(e->rn);
	e->rn = NULL;
	rein_spec_free(cand);
	rein_spec_free(e->spec);
	rein_script_free(e->sb);
	store_env_free(e);
}

#define BOTH(t) cmocka_unit_test_prestate(t, &be_sqlite), cmocka_unit_test_prestate(t, &be_memory)

int main(void)
{
	rein_init();
	const struct CMUnitTest tests[] = {
		BOTH(test_durable_runs),
		BOTH(test_commit_thread),
		BOTH(test_lease_renewed_while_sleeping),
		BOTH(test_cancel_while_parking),
		BOTH(test_decision_time_stamped),
		BOTH(test_leases),
		BOTH(test_sandbox_isolation),
		BOTH(test_write_faults),
		BOTH(test_alloc_faults),
		BOTH(test_claim_due),
		BOTH(test_claim_due_mail),
		BOTH(test_run_list),
		BOTH(test_inbox),
		BOTH(test_kill_switch),
		BOTH(test_call_counts),
		BOTH(test_deployments),
		BOTH(test_store_write_faults),
		BOTH(test_verify_all),
		BOTH(test_anchors),
		BOTH(test_purge),
		cmocka_unit_test(test_anchor_handles),
		cmocka_unit_test(test_views),
		cmocka_unit_test(test_open_must_exist),
		cmocka_unit_test(test_open_url),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
