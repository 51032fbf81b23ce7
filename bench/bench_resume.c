/*
 * bench_resume: how much work does a resume repeat after a crash in the
 * middle of a workflow with long steps? (issue 10, item 11: the adaptive
 * barrier.)
 *
 * A 10-step workflow of code steps s1..s10 is written to a temporary
 * directory: s5 and s6 are long (a Lua loop of --loop iterations, a few
 * hundred ms each), the others trivial. Each round, on a fresh file-backed
 * SQLite store (WAL, synchronous=FULL) and a runner set up as `rein run`
 * sets it up (commit thread on, the start flushed):
 *
 *   1. the run is started and driven until the runner's crash hook fires
 *      when s6's step.completed is appended (as if the process died while s6
 *      ran: its own work is lost whatever the barrier does);
 *   2. the store is reopened, a new runner resumes the run (rein_runner_resume
 *      + rein_runner_drive) to its end, and the events appended on the way
 *      are counted.
 *
 * Printed per round: the steps durable at the crash, the steps the resume
 * recomputed (and how many of them long), the resume's wall time, and the
 * commits made before the crash. Exits 1 if a run does not end succeeded
 * with n = 10.
 *
 * usage: bench_resume [--rounds N (5)] [--loop N (20000000)] [--dir PATH (/tmp)]
 */
#include "base.h"
#include "runner.h"
#include "script.h"
#include "spec.h"
#include "store.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { NSTEPS = 10, LONG_A = 5, LONG_B = 6 };

static double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

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
	char p[4400];
	for (size_t i = 0; i < sizeof sfx / sizeof *sfx; i++) {
		snprintf(p, sizeof p, "%s%s", db, sfx[i]);
		unlink(p);
	}
}

/* s1..s10 each add one to the previous n; s5 and s6 loop first. */
static char *workflow_yaml(long loop)
{
	rein_buf b = {0};
	int rc = rein_buf_puts(&b, "rein: 1\nname: bench_resume\nsteps:\n");
	for (int i = 1; i <= NSTEPS && rc == REIN_OK; i++) {
		const char *prev = i == 1 ? "0" : NULL;
		char pv[64];
		if (prev == NULL) {
			snprintf(pv, sizeof pv, "steps.s%d.out.n", i - 1);
			prev = pv;
		}
		if (i == LONG_A || i == LONG_B)
			rc = rein_buf_printf(&b,
					     "  s%d:\n    code:\n      instructions: 100000000000\n"
					     "      source: |\n        local x = 0\n"
					     "        for i = 1, %ld do x = x + (i %% 7) end\n"
					     "        return {n = %s + 1, x = x}\n",
					     i, loop, prev);
		else
			rc = rein_buf_printf(&b, "  s%d:\n    code: return {n = %s + 1}\n", i, prev);
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

typedef struct counts {
	int completed;      /* step.completed appended */
	int long_completed; /* ... of s5 or s6 */
	int commits;        /* on_commit calls */
} counts;

static bool is_long(const char *step)
{
	char a[8], b[8];
	snprintf(a, sizeof a, "s%d", LONG_A);
	snprintf(b, sizeof b, "s%d", LONG_B);
	return step && (strcmp(step, a) == 0 || strcmp(step, b) == 0);
}

static void on_event(void *ud, const rein_event_row *ev)
{
	counts *c = ud;
	if (strcmp(ev->type, "step.completed") == 0) {
		c->completed++;
		c->long_completed += is_long(ev->step);
	}
}

static void on_commit(void *ud, const rein_event_row *rows, size_t n)
{
	(void)rows;
	(void)n;
	((counts *)ud)->commits++;
}

/* The process "dies" while s6 runs: when its completion is appended. */
static int crash_in_s6(void *ud, const rein_event_row *ev)
{
	(void)ud;
	char s[8];
	snprintf(s, sizeof s, "s%d", LONG_B);
	return strcmp(ev->type, "step.completed") == 0 && ev->step && strcmp(ev->step, s) == 0;
}

static int count_durable(void *ud, const rein_event_row *ev)
{
	if (strcmp(ev->type, "step.completed") == 0)
		(*(int *)ud)++;
	return 0;
}

typedef struct round_fig {
	int durable;         /* step.completed in the store after the crash */
	int redone, redone_long;
	int commits;         /* before the crash */
	double first_s, resume_s;
} round_fig;

static int one_round(const rein_spec *spec, rein_script *sb, const char *db, round_fig *f)
{
	rein_store *st = NULL;
	rein_runner *rn = NULL;
	rein_err e = {0};
	json_t *input = json_object();
	int rc = 1;
	char id[64];
	counts c1 = {0}, c2 = {0};
	remove_db(db);
	memset(f, 0, sizeof *f);
	rein_runner_opts o1 = {.commit_thread = true, .on_event = on_event, .on_commit = on_commit,
			       .crash_point = crash_in_s6, .ud = &c1};
	double t0 = mono_s();
	if (rein_store_open(db, NULL, &st, &e) != REIN_OK ||
	    rein_runner_new(st, sb, &o1, &rn, &e) != REIN_OK ||
	    rein_runner_start(rn, spec, input, NULL, id, &e) != REIN_OK ||
	    rein_runner_flush(rn, &e) != REIN_OK)
		goto fail;
	if (rein_runner_drive(rn, &e) == REIN_OK) {
		fprintf(stderr, "bench: the crash hook did not fire\n");
		goto out;
	}
	f->first_s = mono_s() - t0;
	f->commits = c1.commits;
	rein_runner_free(rn);
	rn = NULL;
	rein_store_close(st);
	st = NULL;
	memset(&e, 0, sizeof e);

	/* a new process: reopen, count what is durable, resume to the end */
	rein_runner_opts o2 = {.commit_thread = true, .on_event = on_event, .ud = &c2};
	if (rein_store_open(db, NULL, &st, &e) != REIN_OK ||
	    rein_store_events_load(st, id, count_durable, &f->durable, &e) != REIN_OK)
		goto fail;
	double t1 = mono_s();
	if (rein_runner_new(st, sb, &o2, &rn, &e) != REIN_OK ||
	    rein_runner_resume(rn, id, &e) != REIN_OK || rein_runner_drive(rn, &e) != REIN_OK)
		goto fail;
	f->resume_s = mono_s() - t1;
	rein_run_result res;
	bool got = rein_runner_result(rn, &res);
	bool ok = got && res.status == REIN_RUN_SUCCEEDED &&
		  json_integer_value(json_object_get(res.output, "n")) == NSTEPS;
	if (got)
		rein_run_result_clear(&res);
	if (!ok) {
		fprintf(stderr, "bench: the resumed run did not end succeeded with n = %d\n", NSTEPS);
		goto out;
	}
	/* steps recomputed: those completed in the first life (s6 included, the
	 * one the crash interrupted) that were not durable */
	f->redone = c1.completed - f->durable;
	f->redone_long = c1.long_completed - (f->durable >= LONG_A ? 1 : 0);
	rc = 0;
	goto out;
fail:
	fprintf(stderr, "bench: %s\n", e.msg);
out:
	rein_runner_free(rn);
	rein_store_close(st);
	remove_db(db);
	json_decref(input);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {{"rounds", required_argument, 0, 'r'},
					   {"loop", required_argument, 0, 'l'},
					   {"dir", required_argument, 0, 'd'},
					   {"help", no_argument, 0, 'h'},
					   {0, 0, 0, 0}};
	long rounds = 5, loop = 20000000;
	const char *dir_arg = "/tmp";
	for (int c; (c = getopt_long(argc, argv, "", lo, NULL)) != -1;) {
		switch (c) {
		case 'r': rounds = strtol(optarg, NULL, 10); break;
		case 'l': loop = strtol(optarg, NULL, 10); break;
		case 'd': dir_arg = optarg; break;
		case 'h': puts("usage: bench_resume [--rounds N] [--loop N] [--dir PATH]"); return 0;
		default: return 2;
		}
	}
	if (rounds < 1 || loop < 1) {
		fprintf(stderr, "bench: --rounds and --loop take a positive count\n");
		return 2;
	}
	char dir[4096], wfdir[4200], path[4300], db[4300];
	snprintf(dir, sizeof dir, "%s/rein-bench-resume-XXXXXX", dir_arg);
	if (mkdtemp(dir) == NULL) {
		fprintf(stderr, "bench: cannot create a directory in %s: %s\n", dir_arg,
			strerror(errno));
		return 1;
	}
	snprintf(wfdir, sizeof wfdir, "%s/wf", dir);
	snprintf(path, sizeof path, "%s/workflow.yaml", wfdir);
	snprintf(db, sizeof db, "%s/resume.db", dir);
	int problems = 0;
	rein_script *sb = NULL;
	rein_spec *spec = NULL;
	rein_err e = {0};
	char *yaml = workflow_yaml(loop);
	rein_init();
	if (yaml == NULL || mkdir(wfdir, 0700) != 0 || write_file(path, yaml) != 0 ||
	    rein_script_new(&sb) != REIN_OK || rein_spec_load_dir(wfdir, sb, &spec, &e) != REIN_OK) {
		fprintf(stderr, "bench: cannot set up the workflow: %s\n", e.msg);
		problems = 1;
		goto out;
	}
	printf("rein bench_resume: %d code steps, s%d and s%d loop %ld times; crash while s%d "
	       "runs, then resume\n",
	       NSTEPS, LONG_A, LONG_B, loop, LONG_B);
	printf("%-6s %-10s %-9s %-14s %-12s %s\n", "round", "to crash", "commits", "durable steps",
	       "recomputed", "resume wall");
	for (long i = 0; i < rounds; i++) {
		round_fig f;
		if (one_round(spec, sb, db, &f) != 0) {
			problems++;
			continue;
		}
		printf("%-6ld %7.0f ms %-9d %-14d %d (%d long)   %7.0f ms\n", i + 1, f.first_s * 1e3,
		       f.commits, f.durable, f.redone, f.redone_long, f.resume_s * 1e3);
	}
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
