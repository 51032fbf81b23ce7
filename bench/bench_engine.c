/*
 * bench_engine: the foundation benchmark. How much does rein itself cost per
 * step when the steps do (almost) nothing, with every final state durable and
 * fsync on (the store's default: WAL, synchronous=FULL)?
 *
 * A 10-step workflow of trivial code steps (s1..s10, each adds one to the
 * previous step's n, then `end: succeeded`) is written to a temporary
 * directory, and three scenarios run against a fresh file-backed SQLite store:
 *
 *   a1  N runs one after another: rein_runner_start + rein_runner_drive. The
 *       run's final state is committed (one fsync'd transaction) before drive
 *       returns.
 *   a2  the same, but the start is made durable first (rein_runner_flush after
 *       start, as `rein run` does before it tells the caller the id): two
 *       commits per run.
 *   b   M runs in flight at once: M starts in one runner, then one
 *       rein_runner_drive, which commits them in groups.
 *
 * After each scenario every result is popped and checked (succeeded, output
 * {"n": 10}, one result per started id), and the store is reopened on a new
 * connection to count the succeeded runs and verify each run's hash chain.
 * Exits 1 if anything is wrong, 2 on a usage error.
 *
 * usage: bench_engine [--runs-a N] [--runs-b N] [--dir PATH] [--only a1|a2|b]
 *                     [--no-verify-chain] [--sync-commits] [--max-batch N]
 *                     [--policies N]
 * --policies N declares `policies:` with N rules (0: an empty list) for tools
 * the workflow never calls, so governance is on and no rule matches (issue 11).
 * --only runs one scenario (for profiling); --no-verify-chain skips the
 * (untimed) hash-chain check of every stored run.
 */
#include "base.h"
#include "engine.h"
#include "runner.h"
#include "script.h"
#include "spec.h"
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { NSTEPS = 10, EVENTS_PER_RUN = NSTEPS + 2 /* run.started, 10 steps, run.ended */ };

typedef struct scenario {
	const char *name;
	const char *what;
	long runs;
	bool flush_start; /* a2 */
	bool in_flight;   /* b */
} scenario;

typedef struct figures {
	double wall_s;
	double cpu_s; /* user + system CPU time of the process over the same span */
	double sys_s; /* of which system (the kernel: writes, fdatasync) */
	double p50_us, p99_us; /* per-run latency, sequential scenarios only */
	long peak_rss_kb;
} figures;

/* ---- small helpers ------------------------------------------------------- */

static double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Peak resident set in KiB: VmHWM (resettable), else ru_maxrss. */
static long peak_rss_kb(void)
{
	long kb = -1;
	char line[256];
	FILE *f = fopen("/proc/self/status", "r");
	if (f) {
		while (fgets(line, sizeof line, f))
			if (strncmp(line, "VmHWM:", 6) == 0) {
				kb = strtol(line + 6, NULL, 10);
				break;
			}
		fclose(f);
	}
	if (kb < 0) {
		struct rusage ru;
		if (getrusage(RUSAGE_SELF, &ru) == 0)
			kb = ru.ru_maxrss;
	}
	return kb;
}

/* Resets VmHWM to the current RSS so each scenario reports its own peak. */
static void peak_rss_reset(void)
{
	FILE *f = fopen("/proc/self/clear_refs", "w");
	if (f) {
		fputs("5", f);
		fclose(f);
	}
}

static double cpu_s(void)
{
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return 0;
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static double sys_s(void)
{
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return 0;
	return (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static int cmp_id(const void *a, const void *b) { return strcmp(a, b); }

static int write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (f == NULL)
		return -1;
	int rc = fputs(text, f) < 0 ? -1 : 0;
	if (fclose(f) != 0)
		rc = -1;
	return rc;
}

static void remove_db(const char *db)
{
	static const char *const sfx[] = {"", "-wal", "-shm", "-journal"};
	char p[4200];
	for (size_t i = 0; i < sizeof sfx / sizeof *sfx; i++) {
		snprintf(p, sizeof p, "%s%s", db, sfx[i]);
		unlink(p);
	}
}

/* --policies N: rules in the workflow (-1: no `policies:` key, governance off). */
static long bench_policies = -1;

/*
 * The workflow: s1..s10 each add one to the previous n, then end. With
 * --policies N (N >= 0) it declares `policies:` (so policies are in force)
 * with N rules for tools the workflow never calls (its steps are code steps:
 * no rule ever matches).
 */
static char *workflow_yaml(void)
{
	rein_buf b = {0};
	int rc = rein_buf_puts(&b, "rein: 1\nname: bench10\n");
	if (rc == REIN_OK && bench_policies == 0)
		rc = rein_buf_puts(&b, "policies: []\n");
	else if (rc == REIN_OK && bench_policies > 0)
		rc = rein_buf_puts(&b, "policies:\n");
	for (long i = 0; i < bench_policies && rc == REIN_OK; i++)
		rc = rein_buf_printf(&b,
				     "  - id: p%ld\n    effect: %s\n    tool: bench_tool_%ld\n"
				     "    when: \"args.amount > %ld\"\n    reason: never matches\n",
				     i, i % 2 ? "allow" : "deny", i, 100 + i);
	if (rc == REIN_OK)
		rc = rein_buf_puts(&b, "steps:\n");
	for (int i = 1; i <= NSTEPS && rc == REIN_OK; i++) {
		if (i == 1)
			rc = rein_buf_printf(&b, "  s1:\n    code: return {n = 1}\n");
		else
			rc = rein_buf_printf(&b, "  s%d:\n    code: return {n = steps.s%d.out.n + 1}\n",
					     i, i - 1);
		if (rc == REIN_OK && i < NSTEPS)
			rc = rein_buf_printf(&b, "    next: s%d\n", i + 1);
		else if (rc == REIN_OK)
			rc = rein_buf_puts(&b, "    next: done\n");
	}
	if (rc == REIN_OK)
		rc = rein_buf_puts(&b, "  done:\n    end: succeeded\n");
	if (rc != REIN_OK) {
		rein_buf_free(&b);
		return NULL;
	}
	return b.p;
}

/*
 * fdatasync cost in dir: n writes of 4 KiB, each followed by fdatasync.
 * over = false: each write appends (the file grows, so its inode is written
 * too), as in a WAL that grows; over = true: each write goes over a block
 * written before, as in a WAL that is written over (rein's steady state).
 * Returns the median in microseconds, or -1.
 */
static double fsync_probe(const char *dir, int n, bool over)
{
	char path[4200], block[4096];
	snprintf(path, sizeof path, "%s/fsync-probe", dir);
	memset(block, 'x', sizeof block);
	double *t = calloc((size_t)n, sizeof *t), med = -1;
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
	if (t == NULL || fd < 0)
		goto out;
	for (int i = 0; over && i < n; i++)
		if (pwrite(fd, block, sizeof block, (off_t)i * (off_t)sizeof block) !=
		    (ssize_t)sizeof block)
			goto out;
	if (over && fsync(fd) != 0)
		goto out;
	for (int i = 0; i < n; i++) {
		double t0 = mono_s();
		if (pwrite(fd, block, sizeof block, (off_t)i * (off_t)sizeof block) !=
			    (ssize_t)sizeof block ||
		    fdatasync(fd) != 0)
			goto out;
		t[i] = (mono_s() - t0) * 1e6;
	}
	qsort(t, (size_t)n, sizeof *t, cmp_double);
	med = t[n / 2];
out:
	if (fd >= 0)
		close(fd);
	unlink(path);
	free(t);
	return med;
}

/* ---- checks -------------------------------------------------------------- */

static bool output_ok(const json_t *out)
{
	json_t *n = json_is_object(out) ? json_object_get(out, "n") : NULL;
	return n && json_is_number(n) && json_number_value(n) == NSTEPS;
}

typedef struct count_ctx {
	rein_store *st;
	long rows, bad_output, bad_seq, bad_chain;
	bool verify_chain;
} count_ctx;

static int count_row(void *ud, const rein_run_row *row)
{
	count_ctx *c = ud;
	c->rows++;
	json_t *out = row->output ? json_loads(row->output, 0, NULL) : NULL;
	if (!output_ok(out))
		c->bad_output++;
	json_decref(out);
	if (row->last_seq != EVENTS_PER_RUN)
		c->bad_seq++;
	if (c->verify_chain) {
		rein_err e = {0};
		int64_t bad = 0;
		if (rein_store_verify_run(c->st, row->id, &bad, &e) != REIN_OK) {
			if (c->bad_chain++ == 0)
				fprintf(stderr, "bench: run %s does not verify: %s\n", row->id, e.msg);
		}
	}
	return 0;
}

/*
 * Pops every result and checks it against the ids started; then reopens the
 * store on a new connection and checks what is durable there. Returns the
 * number of problems found.
 */
static long verify(const scenario *sc, rein_runner *rn, char (*ids)[64], const char *db,
		   bool verify_chain)
{
	long problems = 0, popped = 0, bad_status = 0, bad_out = 0, unknown = 0, dup = 0;
	qsort(ids, (size_t)sc->runs, sizeof *ids, cmp_id);
	unsigned char *seen = calloc((size_t)sc->runs, 1);
	if (seen == NULL) {
		fprintf(stderr, "bench: out of memory\n");
		return 1;
	}
	rein_run_result res;
	while (rein_runner_result(rn, &res)) {
		popped++;
		if (res.status != REIN_RUN_SUCCEEDED) {
			if (bad_status++ == 0)
				fprintf(stderr, "bench: %s: run %s ended %s: %s\n", sc->name, res.id,
					rein_status_name(res.status), res.reason ? res.reason : "");
		} else if (!output_ok(res.output)) {
			bad_out++;
		}
		char(*hit)[64] = bsearch(res.id, ids, (size_t)sc->runs, sizeof *ids, cmp_id);
		if (hit == NULL)
			unknown++;
		else if (seen[hit - ids]++)
			dup++;
		rein_run_result_clear(&res);
	}
	free(seen);
	if (popped != sc->runs || bad_status || bad_out || unknown || dup) {
		fprintf(stderr,
			"bench: %s: %ld results for %ld runs; %ld not succeeded, %ld wrong output, "
			"%ld unknown id, %ld duplicate\n",
			sc->name, popped, sc->runs, bad_status, bad_out, unknown, dup);
		problems++;
	}
	if (rein_runner_active(rn) != 0) {
		fprintf(stderr, "bench: %s: %zu runs still held\n", sc->name, rein_runner_active(rn));
		problems++;
	}

	rein_store *st = NULL;
	rein_err e = {0};
	if (rein_store_open(db, NULL, &st, &e) != REIN_OK) {
		fprintf(stderr, "bench: %s: reopen %s: %s\n", sc->name, db, e.msg);
		return problems + 1;
	}
	count_ctx c = {.st = st, .verify_chain = verify_chain};
	long other = 0;
	if (rein_store_run_each(st, REIN_RUN_SUCCEEDED, count_row, &c, &e) != REIN_OK) {
		fprintf(stderr, "bench: %s: run list: %s\n", sc->name, e.msg);
		problems++;
	}
	count_ctx all = {0};
	if (rein_store_run_each(st, -1, count_row, &all, &e) == REIN_OK)
		other = all.rows - c.rows;
	if (c.rows != sc->runs || c.bad_output || c.bad_seq || c.bad_chain || other) {
		fprintf(stderr,
			"bench: %s: store holds %ld succeeded runs of %ld (%ld in another state); "
			"%ld wrong output, %ld wrong last_seq, %ld broken chains\n",
			sc->name, c.rows, sc->runs, other, c.bad_output, c.bad_seq, c.bad_chain);
		problems++;
	}
	rein_store_close(st);
	return problems;
}

/* ---- one scenario -------------------------------------------------------- */

/* --sync-commits and --max-batch: the runner options (defaults as the CLI). */
static bool bench_sync;
static size_t bench_max_batch;

static long run_scenario(const scenario *sc, const rein_spec *spec, rein_script *sb,
			 const char *dir, bool verify_chain, figures *fig)
{
	char db[4200];
	snprintf(db, sizeof db, "%s/%s.db", dir, sc->name);
	remove_db(db);
	rein_store *st = NULL;
	rein_runner *rn = NULL;
	rein_err e = {0};
	json_t *input = json_object();
	char(*ids)[64] = calloc((size_t)sc->runs, sizeof *ids);
	double *lat = sc->in_flight ? NULL : calloc((size_t)sc->runs, sizeof *lat);
	long problems = 1;
	memset(fig, 0, sizeof *fig);
	if (input == NULL || ids == NULL || (!sc->in_flight && lat == NULL)) {
		fprintf(stderr, "bench: out of memory\n");
		goto out;
	}
	/* default options: WAL, synchronous=FULL; the runner as the CLI sets it up */
	rein_runner_opts ro = {.commit_thread = !bench_sync, .max_batch = bench_max_batch};
	if (rein_store_open(db, NULL, &st, &e) != REIN_OK ||
	    rein_runner_new(st, sb, &ro, &rn, &e) != REIN_OK) {
		fprintf(stderr, "bench: %s: %s\n", sc->name, e.msg);
		goto out;
	}
	peak_rss_reset();
	double t0 = mono_s(), c0 = cpu_s(), s0 = sys_s();
	if (sc->in_flight) {
		for (long i = 0; i < sc->runs; i++)
			if (rein_runner_start(rn, spec, input, NULL, ids[i], &e) != REIN_OK)
				goto fail;
		if (rein_runner_drive(rn, &e) != REIN_OK)
			goto fail;
	} else {
		for (long i = 0; i < sc->runs; i++) {
			double r0 = mono_s();
			if (rein_runner_start(rn, spec, input, NULL, ids[i], &e) != REIN_OK ||
			    (sc->flush_start && rein_runner_flush(rn, &e) != REIN_OK) ||
			    rein_runner_drive(rn, &e) != REIN_OK)
				goto fail;
			lat[i] = (mono_s() - r0) * 1e6;
		}
	}
	fig->wall_s = mono_s() - t0;
	fig->cpu_s = cpu_s() - c0;
	fig->sys_s = sys_s() - s0;
	fig->peak_rss_kb = peak_rss_kb();
	if (lat) {
		qsort(lat, (size_t)sc->runs, sizeof *lat, cmp_double);
		fig->p50_us = lat[sc->runs / 2];
		fig->p99_us = lat[(size_t)((double)sc->runs * 0.99)];
	}
	problems = verify(sc, rn, ids, db, verify_chain);
	goto out;
fail:
	fprintf(stderr, "bench: %s: %s\n", sc->name, e.msg);
out:
	rein_runner_free(rn);
	rein_store_close(st);
	remove_db(db);
	json_decref(input);
	free(ids);
	free(lat);
	return problems;
}

static void print_figures(const scenario *sc, const figures *f)
{
	long steps = sc->runs * NSTEPS;
	printf("%-3s %s\n    runs %ld  steps %ld  wall %.3f s  %.2f us/step  %.0f steps/s  "
	       "peak RSS %.1f MiB\n    cpu %.3f s (%.2f us/step, of which system %.2f)",
	       sc->name, sc->what, sc->runs, steps, f->wall_s, f->wall_s * 1e6 / (double)steps,
	       (double)steps / f->wall_s, (double)f->peak_rss_kb / 1024.0, f->cpu_s,
	       f->cpu_s * 1e6 / (double)steps, f->sys_s * 1e6 / (double)steps);
	if (!sc->in_flight)
		printf("  per run: p50 %.0f us, p99 %.0f us", f->p50_us, f->p99_us);
	putchar('\n');
	fflush(stdout);
}

/* ---- main ---------------------------------------------------------------- */

static long parse_count(const char *s, const char *flag)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (*s == '\0' || *end != '\0' || errno || v <= 0 || v > 10000000) {
		fprintf(stderr, "bench: %s needs a positive count, not '%s'\n", flag, s);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {{"runs-a", required_argument, 0, 'a'},
					   {"runs-b", required_argument, 0, 'b'},
					   {"dir", required_argument, 0, 'd'},
					   {"only", required_argument, 0, 'o'},
					   {"no-verify-chain", no_argument, 0, 'n'},
					   {"sync-commits", no_argument, 0, 's'},
					   {"max-batch", required_argument, 0, 'm'},
					   {"policies", required_argument, 0, 'p'},
					   {"help", no_argument, 0, 'h'},
					   {0, 0, 0, 0}};
	long runs_a = 2000, runs_b = 10000;
	const char *dir_arg = NULL, *only = NULL;
	bool verify_chain = true;
	for (int c; (c = getopt_long(argc, argv, "", lo, NULL)) != -1;) {
		switch (c) {
		case 'a': runs_a = parse_count(optarg, "--runs-a"); break;
		case 'b': runs_b = parse_count(optarg, "--runs-b"); break;
		case 'd': dir_arg = optarg; break;
		case 'o': only = optarg; break;
		case 'n': verify_chain = false; break;
		case 's': bench_sync = true; break;
		case 'm': bench_max_batch = (size_t)parse_count(optarg, "--max-batch"); break;
		case 'p':
			bench_policies = strcmp(optarg, "0") == 0 ? 0 : parse_count(optarg, "--policies");
			break;
		case 'h':
			puts("usage: bench_engine [--runs-a N] [--runs-b N] [--dir PATH] "
			     "[--only a1|a2|b] [--no-verify-chain] [--sync-commits] "
			     "[--max-batch N] [--policies N]");
			return 0;
		default: return 2;
		}
	}
	if (only && strcmp(only, "a1") != 0 && strcmp(only, "a2") != 0 && strcmp(only, "b") != 0) {
		fprintf(stderr, "bench: --only takes a1, a2 or b, not '%s'\n", only);
		return 2;
	}
	if (optind != argc) {
		fprintf(stderr, "bench: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}

	/* The work directory: DIR/bench-XXXXXX holds the workflow and the stores. */
	char dir[4096], wfdir[4200], path[4300];
	snprintf(dir, sizeof dir, "%s/rein-bench-XXXXXX", dir_arg ? dir_arg : "/tmp");
	if (mkdtemp(dir) == NULL) {
		fprintf(stderr, "bench: cannot create a directory in %s: %s\n",
			dir_arg ? dir_arg : "/tmp", strerror(errno));
		return 1;
	}
	snprintf(wfdir, sizeof wfdir, "%s/wf", dir);
	snprintf(path, sizeof path, "%s/workflow.yaml", wfdir);

	long problems = 0;
	rein_script *sb = NULL;
	rein_spec *spec = NULL;
	rein_err e = {0};
	char *yaml = workflow_yaml();
	rein_init();
	if (yaml == NULL || mkdir(wfdir, 0700) != 0 || write_file(path, yaml) != 0) {
		fprintf(stderr, "bench: cannot write %s\n", path);
		problems = 1;
		goto out;
	}
	if (rein_script_new(&sb) != REIN_OK) {
		fprintf(stderr, "bench: cannot create the Lua sandbox\n");
		problems = 1;
		goto out;
	}
	if (rein_spec_load_dir(wfdir, sb, &spec, &e) != REIN_OK) {
		rein_diags_print(&e.diags, stderr);
		fprintf(stderr, "bench: cannot load %s: %s\n", path, e.msg);
		problems = 1;
		goto out;
	}

	printf("rein bench_engine: %d trivial code steps per run, store %s (WAL, "
	       "synchronous=FULL)\n",
	       NSTEPS, dir);
	if (bench_policies >= 0)
		printf("governance on: the workflow declares %zu policies (has_policies %d), "
		       "none for its steps\n",
		       rein_policy_count(spec->policies), spec->has_policies);
	printf("fdatasync after a 4 KiB write in that directory, median of 200: "
	       "append %.0f us, over written blocks %.0f us\n",
	       fsync_probe(dir, 200, false), fsync_probe(dir, 200, true));

	const scenario scs[] = {
		{"a1", "sequential: start + drive", runs_a, false, false},
		{"a2", "sequential: start + flush + drive", runs_a, true, false},
		{"b", "in flight: all starts, one drive", runs_b, false, true},
	};
	for (size_t i = 0; i < sizeof scs / sizeof *scs; i++) {
		if (only && strcmp(only, scs[i].name) != 0)
			continue;
		figures f;
		long p = run_scenario(&scs[i], spec, sb, dir, verify_chain, &f);
		if (f.wall_s > 0)
			print_figures(&scs[i], &f);
		if (p)
			fprintf(stderr, "bench: %s: FAILED verification\n", scs[i].name);
		problems += p;
	}
	if (problems == 0)
		printf("verified: every run succeeded with n = %d, and is in the store, "
		       "succeeded, with a verifying chain\n",
		       NSTEPS);
out:
	rein_err_clear(&e);
	rein_spec_free(spec);
	rein_script_free(sb);
	rein_free(yaml);
	unlink(path);
	rmdir(wfdir);
	rmdir(dir);
	return problems ? 1 : 0;
}
