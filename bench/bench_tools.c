/*
 * bench_tools: many runs each making one tool call, all in flight at once in
 * one process. N runs (default 10,000) of a workflow whose only step calls an
 * HTTP tool on the loopback tool server, which answers each request after
 * 50 ms. Every intent is committed before its call goes out and every result
 * is durable (fsync on) before the run is reported.
 *
 * Prints wall time, calls per second, peak RSS, and the orchestration
 * overhead per call (process CPU time / calls: what rein spends around each
 * call, the server's 50 ms aside), then checks every run succeeded with the
 * right key, and that the server saw each key exactly once.
 *
 * usage: bench_tools [--runs N] [--delay-ms MS] [--server PATH] [--dir PATH]
 * The server defaults to build/tools/toolserver (built by `make bench`).
 */
#include "base.h"
#include "runner.h"
#include "script.h"
#include "spec.h"
#include "store.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static long peak_rss_kb(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

static int write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (f == NULL)
		return -1;
	fputs(text, f);
	return fclose(f);
}

static pid_t start_server(const char *bin, const char *dir, int *port)
{
	char pf[600];
	snprintf(pf, sizeof pf, "%s/port", dir);
	pid_t pid = fork();
	if (pid == 0) {
		execl(bin, bin, "--port", "0", "--port-file", pf, "--max-seconds", "600", (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 200; i++) {
		FILE *f = fopen(pf, "r");
		if (f) {
			int ok = fscanf(f, "%d", port) == 1;
			fclose(f);
			if (ok)
				return pid;
		}
		usleep(20000);
	}
	kill(pid, SIGKILL);
	return -1;
}

/* Fetches /control/stats with curl(1) into a JSON object. */
static json_t *server_stats(int port)
{
	char cmd[128];
	snprintf(cmd, sizeof cmd, "curl -s http://127.0.0.1:%d/control/stats", port);
	FILE *p = popen(cmd, "r");
	if (p == NULL)
		return NULL;
	json_error_t je;
	json_t *j = json_loadf(p, 0, &je);
	pclose(p);
	return j;
}

int main(int argc, char **argv)
{
	long runs = 10000, delay = 50;
	const char *server = "build/tools/toolserver", *base = "/tmp";
	static const struct option lo[] = {{"runs", required_argument, 0, 'n'},
					   {"delay-ms", required_argument, 0, 'd'},
					   {"server", required_argument, 0, 's'},
					   {"dir", required_argument, 0, 'D'},
					   {0, 0, 0, 0}};
	for (int c; (c = getopt_long(argc, argv, "", lo, NULL)) != -1;) {
		switch (c) {
		case 'n': runs = atol(optarg); break;
		case 'd': delay = atol(optarg); break;
		case 's': server = optarg; break;
		case 'D': base = optarg; break;
		default:
			fprintf(stderr, "usage: bench_tools [--runs N] [--delay-ms MS] [--server PATH] [--dir PATH]\n");
			return 2;
		}
	}
	rein_init();
	char dir[512], wf[600], db[600], path[700];
	snprintf(dir, sizeof dir, "%s/rein-bench-tools-XXXXXX", base);
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(wf, sizeof wf, "%s/wf", dir);
	mkdir(wf, 0755);
	snprintf(path, sizeof path, "%s/workflow.yaml", wf);
	char yaml[1024];
	snprintf(yaml, sizeof yaml,
		 "rein: 1\nname: bench_tools\n"
		 "tools:\n"
		 "  slow:\n"
		 "    http: { url: \"${env.TOOLSERVER}/tool/delay:%ld\" }\n"
		 "    effect: write\n"
		 "    idempotency: header\n"
		 "    timeout_s: 30\n"
		 "    input: { type: object }\n"
		 "    output: { type: object, required: [ok, key] }\n"
		 "steps:\n"
		 "  call: { tool: slow, args: { n: '${input.n}' }, next: done }\n"
		 "  done: { end: succeeded }\n",
		 delay);
	if (write_file(path, yaml) != 0) {
		perror(path);
		return 1;
	}
	int port = 0;
	pid_t srv = start_server(server, dir, &port);
	if (srv < 0) {
		fprintf(stderr, "bench_tools: cannot start %s (run `make bench` first)\n", server);
		return 1;
	}
	char url[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
	setenv("TOOLSERVER", url, 1);

	rein_script *sb = NULL;
	rein_spec *spec = NULL;
	rein_store *st = NULL;
	rein_runner *rn = NULL;
	rein_err e = {0};
	int status = 1;
	snprintf(db, sizeof db, "%s/rein.db", dir);
	if (rein_script_new(&sb) != REIN_OK || rein_spec_load_dir(wf, sb, &spec, &e) != REIN_OK ||
	    rein_store_open(db, NULL, &st, &e) != REIN_OK ||
	    rein_runner_new(st, sb, NULL, &rn, &e) != REIN_OK) {
		rein_diags_print(&e.diags, stderr);
		fprintf(stderr, "bench_tools: %s\n", e.msg);
		goto out;
	}
	printf("rein bench_tools: %ld runs, one call each to a loopback tool answering after %ld ms\n",
	       runs, delay);
	double t0 = mono_s(), c0 = cpu_s();
	for (long i = 0; i < runs; i++) {
		char id[64];
		json_t *in = json_pack("{s:i}", "n", (int)i);
		if (rein_runner_start(rn, spec, in, NULL, id, &e) != REIN_OK) {
			fprintf(stderr, "start: %s\n", e.msg);
			json_decref(in);
			goto out;
		}
		json_decref(in);
	}
	if (rein_runner_drive(rn, &e) != REIN_OK) {
		fprintf(stderr, "drive: %s\n", e.msg);
		goto out;
	}
	double wall = mono_s() - t0, cpu = cpu_s() - c0;
	long ok = 0;
	rein_run_result r;
	json_t *keys = json_object();
	while (rein_runner_result(rn, &r)) {
		const char *key = json_string_value(json_object_get(r.output, "key"));
		if (r.status == REIN_RUN_SUCCEEDED && key) {
			ok++;
			json_object_set_new(keys, key, json_true());
		} else {
			fprintf(stderr, "run %s: %s %s\n", r.id, rein_status_name(r.status),
				r.reason ? r.reason : "");
		}
		rein_run_result_clear(&r);
	}
	printf("  wall %.3f s  %.0f calls/s  peak RSS %.1f MiB\n", wall, (double)runs / wall,
	       (double)peak_rss_kb() / 1024.0);
	printf("  cpu %.3f s: orchestration %.1f us per call (intent, commit, HTTP, result, commit)\n",
	       cpu, cpu / (double)runs * 1e6);
	json_t *stats = server_stats(port);
	long requests = (long)json_integer_value(json_object_get(stats, "requests"));
	long effects = (long)json_integer_value(json_object_get(stats, "effects_total"));
	printf("  server: %ld requests, %ld effects; %ld runs succeeded, %zu distinct keys\n", requests,
	       effects, ok, json_object_size(keys));
	json_decref(stats);
	json_decref(keys);
	status = (ok == runs && requests == runs && effects == runs) ? 0 : 1;
	if (status == 0)
		printf("verified: every run succeeded with its own key; one request and one effect per key\n");
out:
	rein_runner_free(rn);
	rein_store_close(st);
	rein_spec_free(spec);
	rein_err_clear(&e);
	rein_script_free(sb);
	kill(srv, SIGTERM);
	waitpid(srv, NULL, 0);
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
	return status;
}
