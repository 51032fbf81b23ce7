/*
 * The runner's on_commit hook: it reports exactly the events that are in the
 * store, in commit order, also for the commits of the commit thread; when a
 * commit fails (an injected write fault) it never reports the lost events,
 * and after a resume it reports what the resume made durable, so what it
 * reported in all is the store's log, event for event.
 */
#include "testlib.h"
#include "faultstore.h"

static const char *wf = "rein: 1\nname: four\nsteps:\n"
			"  a: { code: 'return { n = input.n + 1 }', next: fan }\n"
			"  fan: { parallel: [b, c], next: w }\n"
			"  b: { code: 'return steps.a.out.n * 2' }\n"
			"  c: { code: 'return steps.a.out.n * 3' }\n"
			"  w: { wait: 2, next: d }\n"
			"  d: { code: 'return { total = steps.fan.out.b + steps.fan.out.c }', next: done }\n"
			"  done: { end: succeeded }\n";

typedef struct seen_row {
	char run[64];
	int64_t seq;
	char type[48];
	uint8_t hash[REIN_HASH_LEN];
} seen_row;

/* What the hooks heard. */
typedef struct heard {
	seen_row v[2048];
	size_t n;
	size_t appended; /* on_event calls */
	size_t calls;    /* on_commit calls */
	bool bad;        /* an on_commit call with n == 0 */
} heard;

static void on_event(void *ud, const rein_event_row *ev)
{
	(void)ev;
	((heard *)ud)->appended++;
}

static void on_commit(void *ud, const rein_event_row *rows, size_t n)
{
	heard *h = ud;
	h->calls++;
	h->bad |= n == 0;
	for (size_t i = 0; i < n; i++) {
		assert_true(h->n < sizeof h->v / sizeof h->v[0]);
		seen_row *s = &h->v[h->n++];
		snprintf(s->run, sizeof s->run, "%s", rows[i].run_id);
		snprintf(s->type, sizeof s->type, "%s", rows[i].type);
		s->seq = rows[i].seq;
		memcpy(s->hash, rows[i].hash, REIN_HASH_LEN);
	}
}

/* The clock and what sleeps on it (the ud of the runner's hooks is the env). */
typedef struct env {
	rein_manual_clock clock;
	heard h;
} env;

static void advance_clock(void *ud, int64_t ms) { ((env *)ud)->clock.now += ms; }
static void env_on_event(void *ud, const rein_event_row *ev) { on_event(&((env *)ud)->h, ev); }
static void env_on_commit(void *ud, const rein_event_row *rows, size_t n)
{
	on_commit(&((env *)ud)->h, rows, n);
}

static rein_runner *open_runner_on(env *e, rein_store *st, rein_script *sb, bool thread)
{
	rein_runner_opts o = {.clock = &e->clock.clock, .max_wait_ms = 3600000,
			      .sleep_ms = advance_clock, .on_event = env_on_event,
			      .on_commit = env_on_commit, .ud = e, .commit_thread = thread,
			      .max_batch = thread ? 3 : 0};
	rein_runner *rn = NULL;
	rein_err err = {0};
	assert_int_equal(rein_runner_new(st, sb, &o, &rn, &err), REIN_OK);
	return rn;
}

typedef struct cmp {
	const heard *h;
	const char *run;
	size_t at;    /* the next of h's rows to look at */
	size_t found; /* events of the run in the store */
} cmp;

/* The store's next event of the run is the next one on_commit reported for it. */
static int compare_one(void *ud, const rein_event_row *ev)
{
	cmp *c = ud;
	while (c->at < c->h->n && strcmp(c->h->v[c->at].run, c->run) != 0)
		c->at++;
	assert_true(c->at < c->h->n);
	const seen_row *s = &c->h->v[c->at++];
	assert_int_equal(s->seq, ev->seq);
	assert_string_equal(s->type, ev->type);
	assert_memory_equal(s->hash, ev->hash, REIN_HASH_LEN);
	c->found++;
	return 0;
}

typedef struct ids {
	char v[16][64];
	int n;
} ids;

static int collect(void *ud, const rein_run_row *row)
{
	ids *x = ud;
	if (x->n < 16)
		snprintf(x->v[x->n++], 64, "%s", row->id);
	return 0;
}

/* on_commit heard exactly the store's events: each run's in order, no others. */
static void assert_heard_is_store(const heard *h, rein_store *st)
{
	rein_err err = {0};
	ids x = {0};
	assert_false(h->bad);
	assert_int_equal(rein_store_run_each(st, -1, collect, &x, &err), REIN_OK);
	size_t total = 0;
	for (int i = 0; i < x.n; i++) {
		cmp c = {.h = h, .run = x.v[i]};
		assert_int_equal(rein_store_events_load(st, x.v[i], compare_one, &c, &err), REIN_OK);
		for (; c.at < h->n; c.at++) /* nothing more heard for this run */
			assert_string_not_equal(h->v[c.at].run, x.v[i]);
		total += c.found;
	}
	assert_int_equal(total, h->n);
}

/* A store in a fresh directory, a sandbox, the workflow, hooks that listen. */
typedef struct fixture {
	char *dir;
	env *e;
	rein_script *sb;
	rein_store *st;
	rein_spec *spec;
	fault_plan plan; /* the store is wrapped by faultstore.h */
} fixture;

static void fx_open(fixture *f)
{
	char db[512];
	rein_err err = {0};
	memset(f, 0, sizeof *f);
	f->dir = temp_dir();
	snprintf(db, sizeof db, "%s/rein.db", f->dir);
	f->e = calloc(1, sizeof *f->e);
	assert_non_null(f->e);
	rein_manual_clock_init(&f->e->clock, 1700000000000);
	assert_int_equal(rein_script_new(&f->sb), REIN_OK);
	f->spec = spec_from_yaml(f->sb, wf);
	rein_store *inner = NULL;
	assert_int_equal(rein_store_open(db, &(rein_store_opts){.no_sync = true}, &inner, &err),
			 REIN_OK);
	assert_int_equal(faultstore_wrap(inner, &f->plan, &f->st, &err), REIN_OK);
}

static void fx_close(fixture *f)
{
	rein_store_close(f->st);
	rein_spec_free(f->spec);
	rein_script_free(f->sb);
	free(f->e);
	rm_rf(f->dir);
	free(f->dir);
}

static rein_runner *open_runner(fixture *f, bool thread)
{
	return open_runner_on(f->e, f->st, f->sb, thread);
}

/* Starts two runs and drives them; returns drive's code. */
static int start_two(rein_runner *rn, const rein_spec *spec)
{
	rein_err err = {0};
	char id[64];
	json_t *in = J("{\"n\": 2}");
	int rc = rein_runner_start(rn, spec, in, "run_a", id, &err);
	if (rc == REIN_OK)
		rc = rein_runner_start(rn, spec, in, "run_b", id, &err);
	if (rc == REIN_OK)
		rc = rein_runner_flush(rn, &err);
	if (rc == REIN_OK)
		rc = rein_runner_drive(rn, &err);
	json_decref(in);
	return rc;
}

static int drain_succeeded(rein_runner *rn)
{
	int n = 0;
	rein_run_result r;
	while (rein_runner_result(rn, &r)) {
		assert_int_equal(r.status, REIN_RUN_SUCCEEDED);
		assert_json_eq(r.output, "{\"total\": 15}");
		rein_run_result_clear(&r);
		n++;
	}
	return n;
}

/* Without faults, with and without the commit thread: what was committed is heard. */
static void test_on_commit_matches_store(void **state)
{
	(void)state;
	for (int thread = 0; thread < 2; thread++) {
		fixture f;
		fx_open(&f);
		rein_runner *rn = open_runner(&f, thread);
		assert_int_equal(start_two(rn, f.spec), REIN_OK);
		assert_int_equal(drain_succeeded(rn), 2);
		rein_runner_free(rn);
		assert_true(f.e->h.n > 0);
		assert_int_equal(f.e->h.n, f.e->h.appended); /* nothing lost: all heard */
		if (thread)
			assert_true(f.e->h.calls > 1); /* several commits, the thread's among them */
		assert_heard_is_store(&f.e->h, f.st);
		fx_close(&f);
	}
}

/*
 * The nth write fails, for every n the scenario reaches: the events that
 * commit lost are never heard (on_event saw them), and after a resume
 * finishes the runs, what was heard in all is the store's log.
 */
static void test_on_commit_after_write_fault(void **state)
{
	(void)state;
	int n, lost = 0;
	for (n = 1; n < 2000; n++) {
		fixture f;
		fx_open(&f);
		rein_err err = {0};
		rein_runner *rn = open_runner(&f, false);
		fault_plan_arm(&f.plan, FS_WRITES, n);
		int rc = start_two(rn, f.spec);
		bool fired = f.plan.fired > 0;
		fault_plan_arm(&f.plan, 0, 0);
		drain_succeeded(rn);
		rein_runner_free(rn);
		assert_heard_is_store(&f.e->h, f.st); /* before the resume: nothing lost heard */
		if (rc != REIN_OK && f.e->h.appended > f.e->h.n)
			lost++;
		/* resume what the store has; the runs end, and all heard is the store */
		rn = open_runner(&f, false);
		ids x = {0};
		assert_int_equal(rein_store_run_each(f.st, -1, collect, &x, &err), REIN_OK);
		for (int i = 0; i < x.n; i++)
			assert_int_equal(rein_runner_resume(rn, x.v[i], &err), REIN_OK);
		assert_int_equal(rein_runner_drive(rn, &err), REIN_OK);
		drain_succeeded(rn);
		rein_runner_free(rn);
		assert_heard_is_store(&f.e->h, f.st);
		fx_close(&f);
		if (!fired)
			break; /* the whole scenario ran without reaching fault n */
	}
	printf("on_commit under write faults: %d fault points, %d lost events unheard\n", n - 1,
	       lost);
	assert_true(n > 5);
	assert_true(lost > 0); /* the sweep did lose events that on_event had shown */
}

int main(void)
{
	rein_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_on_commit_matches_store),
		cmocka_unit_test(test_on_commit_after_write_fault),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
