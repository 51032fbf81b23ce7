/*
 * bench_trace: does the online trace exporter slow a run? N runs of a
 * 10-step code workflow, one after another (start, drive, final state
 * durable), in three modes on a fresh store each:
 *
 *   none         no exporter
 *   unreachable  the exporter on_commit, posting to 127.0.0.1:9 (refused)
 *   blackhole    posting to a loopback socket that accepts connections in
 *                its backlog and never answers (each request waits for its
 *                timeout: the queue fills and drops)
 *
 * Prints per-run p50/p99 latency and the exporter's counts. Not asserted
 * (the issue: measured, not asserted); exits 1 only if a run fails.
 *
 * usage: bench_trace [--runs N] [--dir PATH] [--queue N]
 */
#include "base.h"
#include "engine.h"
#include "runner.h"
#include "script.h"
#include "spec.h"
#include "store.h"
#include "trace.h"

#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static void remove_db(const char *db)
{
	static const char *const sfx[] = {"", "-wal", "-shm"};
	char p[4200];
	for (size_t i = 0; i < sizeof sfx / sizeof *sfx; i++) {
		snprintf(p, sizeof p, "%s%s", db, sfx[i]);
		unlink(p);
	}
}

/* A listening loopback socket nobody accepts on; its port in *port. */
static int blackhole(int *port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof a;
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 1024) != 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) != 0)
		return -1;
	*port = ntohs(a.sin_port);
	return fd;
}

static int one_mode(const char *name, const char *url, const rein_spec *spec, rein_script *sb,
		    const char *dir, long runs, size_t queue)
{
	char db[4200];
	snprintf(db, sizeof db, "%s/bench-trace.db", dir);
	remove_db(db);
	rein_store *st = NULL;
	rein_runner *rn = NULL;
	rein_otlp_exporter *x = NULL;
	rein_err e = {0};
	double *lat = calloc((size_t)runs, sizeof *lat);
	json_t *input = json_object();
	int bad = 1;
	rein_runner_opts ro = {.commit_thread = true};
	if (url) {
		rein_otlp_cfg cfg = {.url = (char *)url, .max_attempts = 3, .max_backoff_ms = 1000,
				     .timeout_ms = 2000};
		if (rein_otlp_exporter_new(&cfg, queue, true, &x, &e) != REIN_OK)
			goto fail;
		ro.on_commit = rein_otlp_exporter_commit;
		ro.ud = x;
	}
	if (lat == NULL || input == NULL || rein_store_open(db, NULL, &st, &e) != REIN_OK ||
	    rein_runner_new(st, sb, &ro, &rn, &e) != REIN_OK)
		goto fail;
	long ok = 0;
	double t0 = mono_s();
	for (long i = 0; i < runs; i++) {
		char id[64];
		rein_run_result res;
		double r0 = mono_s();
		if (rein_runner_start(rn, spec, input, NULL, id, &e) != REIN_OK ||
		    rein_runner_drive(rn, &e) != REIN_OK)
			goto fail;
		lat[i] = (mono_s() - r0) * 1e6;
		while (rein_runner_result(rn, &res)) {
			ok += res.status == REIN_RUN_SUCCEEDED;
			rein_run_result_clear(&res);
		}
	}
	double wall = mono_s() - t0;
	rein_runner_free(rn);
	rn = NULL;
	qsort(lat, (size_t)runs, sizeof *lat, cmp_double);
	rein_otlp_exporter_stats s = {0};
	double d0 = mono_s();
	rein_otlp_exporter_free(x, 0, &s);
	x = NULL;
	printf("%-12s %ld runs in %.3f s: per run p50 %.0f us, p99 %.0f us; exporter: %ld queued, "
	       "%ld exported, %ld failed, %ld dropped (stopped in %.2f s)\n",
	       name, runs, wall, lat[runs / 2], lat[(size_t)((double)runs * 0.99)], s.queued,
	       s.exported, s.failed, s.dropped, mono_s() - d0);
	bad = ok != runs;
	goto out;
fail:
	fprintf(stderr, "bench_trace: %s: %s\n", name, e.msg);
out:
	rein_runner_free(rn);
	rein_otlp_exporter_free(x, 0, NULL);
	rein_store_close(st);
	remove_db(db);
	json_decref(input);
	free(lat);
	rein_err_clear(&e);
	return bad;
}

int main(int argc, char **argv)
{
	long runs = 1000;
	long queue = 256;
	const char *dir = "/tmp";
	static const struct option lo[] = {{"runs", required_argument, 0, 'n'},
					   {"dir", required_argument, 0, 'd'},
					   {"queue", required_argument, 0, 'q'},
					   {0, 0, 0, 0}};
	for (int c; (c = getopt_long(argc, argv, "", lo, NULL)) != -1;) {
		if (c == 'n')
			runs = strtol(optarg, NULL, 10);
		else if (c == 'd')
			dir = optarg;
		else if (c == 'q')
			queue = strtol(optarg, NULL, 10);
		else
			return 2;
	}
	if (runs < 1 || queue < 1)
		return 2;
	rein_init();
	char wf[4200], path[4300];
	snprintf(wf, sizeof wf, "%s/bench-trace-wf.%ld", dir, (long)getpid());
	snprintf(path, sizeof path, "%s/workflow.yaml", wf);
	FILE *f = mkdir(wf, 0700) == 0 ? fopen(path, "w") : NULL;
	if (f == NULL)
		return 1;
	fputs("rein: 1\nname: bench_trace\nsteps:\n", f);
	for (int i = 1; i <= 10; i++) {
		char next[16];
		snprintf(next, sizeof next, i < 10 ? "s%d" : "done", i + 1);
		fprintf(f, "  s%d:\n    code: return {n = %d}\n    next: %s\n", i, i, next);
	}
	fputs("  done:\n    end: succeeded\n", f);
	fclose(f);
	rein_script *sb = NULL;
	rein_spec *spec = NULL;
	rein_err e = {0};
	int bad = 1, port = 0, hole = blackhole(&port);
	char url[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/traces", port);
	if (hole < 0 || rein_script_new(&sb) != REIN_OK || rein_spec_load_dir(wf, sb, &spec, &e) != REIN_OK) {
		fprintf(stderr, "bench_trace: %s\n", e.msg[0] ? e.msg : "setup failed");
		goto out;
	}
	bad = one_mode("none", NULL, spec, sb, dir, runs, (size_t)queue);
	bad |= one_mode("unreachable", "http://127.0.0.1:9/v1/traces", spec, sb, dir, runs, (size_t)queue);
	bad |= one_mode("blackhole", url, spec, sb, dir, runs, (size_t)queue);
out:
	rein_spec_free(spec);
	rein_script_free(sb);
	rein_err_clear(&e);
	unlink(path);
	rmdir(wf);
	if (hole >= 0)
		close(hole);
	return bad;
}
