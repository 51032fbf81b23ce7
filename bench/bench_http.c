/*
 * bench_http: the raw io layer under load. N calls are started at once
 * against the loopback tool server, each answered after a delay; the loop
 * runs until every callback came. Two rounds: the first opens N connections,
 * the second reuses them from curl's connection cache. Prints wall time,
 * calls per second, latency percentiles, CPU time and peak RSS.
 *
 * Usage: bench_http [--calls N] [--delay MS] [--rounds R] [--server PATH]
 *   --server defaults to build/bench/toolserver (a release build, see
 *   bench/README.md); the server's own CPU time is not counted.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io.h"

typedef struct bench {
	int done, ok, bad;
	int64_t *lat; /* elapsed_ms per call */
} bench;

static void on_done(void *ud, const rein_http_resp *r)
{
	bench *b = ud;
	b->lat[b->done++] = r->elapsed_ms;
	if (r->error == REIN_HTTP_OK && r->status == 200)
		b->ok++;
	else if (b->bad++ < 5)
		fprintf(stderr, "call failed: %s %ld %s\n", rein_http_error_name(r->error),
			r->status, r->errmsg);
}

static int cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static long status_kb(const char *field)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long v = -1;
	size_t n = strlen(field);
	while (f && fgets(line, sizeof line, f))
		if (strncmp(line, field, n) == 0)
			v = atol(line + n + 1);
	if (f)
		fclose(f);
	return v;
}

static void reset_hwm(void)
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
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec / 1e6;
}

static pid_t start_server(const char *bin, const char *port_file, int *port)
{
	unlink(port_file);
	pid_t pid = fork();
	if (pid == 0) {
		execl(bin, bin, "--port-file", port_file, "--max-seconds", "600", (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 200 && pid > 0; i++) {
		FILE *f = fopen(port_file, "r");
		if (f) {
			int ok = fscanf(f, "%d", port) == 1;
			fclose(f);
			if (ok)
				return pid;
		}
		usleep(50000);
	}
	if (pid > 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	return -1;
}

int main(int argc, char **argv)
{
	int calls = 10000, delay = 50, rounds = 2;
	const char *server = "build/bench/toolserver";
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--calls") == 0 && i + 1 < argc)
			calls = atoi(argv[++i]);
		else if (strcmp(argv[i], "--delay") == 0 && i + 1 < argc)
			delay = atoi(argv[++i]);
		else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
			rounds = atoi(argv[++i]);
		else if (strcmp(argv[i], "--server") == 0 && i + 1 < argc)
			server = argv[++i];
		else {
			fprintf(stderr, "usage: bench_http [--calls N] [--delay MS] [--rounds R] "
					"[--server PATH]\n");
			return 2;
		}
	}
	if (calls <= 0 || delay < 0 || rounds <= 0)
		return 2;
	rein_init();
	char port_file[64];
	snprintf(port_file, sizeof port_file, "/tmp/bench-http-%d.port", (int)getpid());
	int port = 0;
	pid_t pid = start_server(server, port_file, &port);
	if (pid < 0) {
		fprintf(stderr, "bench_http: cannot start %s (see bench/README.md)\n", server);
		return 1;
	}
	unlink(port_file);

	rein_io *io = NULL;
	rein_err err = {0};
	int rc = 1;
	if (rein_io_new(&io, &err) != REIN_OK) {
		fprintf(stderr, "bench_http: %s\n", err.msg);
		goto out;
	}
	char url[128], body[] = "{\"q\":\"bench\"}";
	snprintf(url, sizeof url, "http://127.0.0.1:%d/tool/delay:%d", port, delay);
	rein_http_header h[] = {{"Content-Type", "application/json"}};
	rein_http_req req = {.method = "POST", .url = url, .headers = h, .nheaders = 1,
			     .body = body, .body_len = strlen(body), .timeout_ms = 120000,
			     .connect_timeout_ms = 60000};
	printf("bench_http: %d concurrent calls, server delay %d ms, %d rounds\n", calls, delay,
	       rounds);
	printf("%-6s %8s %10s %9s %8s %8s %8s %9s %10s\n", "round", "ok", "wall ms", "calls/s",
	       "p50 ms", "p99 ms", "max ms", "CPU ms", "peak RSS");
	rc = 0;
	for (int round = 1; round <= rounds; round++) {
		bench b = {.lat = calloc((size_t)calls, sizeof(int64_t))};
		reset_hwm();
		double c0 = cpu_s();
		int64_t t0 = rein_clock_now(&rein_clock_system);
		for (int i = 0; i < calls; i++) {
			if (rein_http_start(io, &req, on_done, &b, NULL, &err) != REIN_OK) {
				fprintf(stderr, "start: %s\n", err.msg);
				rc = 1;
				break;
			}
		}
		while (rein_io_inflight(io) > 0)
			rein_io_wait(io, 1000);
		int64_t wall = rein_clock_now(&rein_clock_system) - t0;
		double cpu = cpu_s() - c0;
		qsort(b.lat, (size_t)b.done, sizeof(int64_t), cmp64);
		int64_t p50 = b.done ? b.lat[b.done / 2] : 0;
		int64_t p99 = b.done ? b.lat[(b.done * 99) / 100] : 0;
		int64_t mx = b.done ? b.lat[b.done - 1] : 0;
		printf("%-6d %8d %10lld %9.0f %8lld %8lld %8lld %9.0f %7ld MB\n", round, b.ok,
		       (long long)wall, wall > 0 ? b.ok * 1000.0 / (double)wall : 0.0,
		       (long long)p50, (long long)p99, (long long)mx, cpu * 1000,
		       status_kb("VmHWM:") / 1024);
		if (b.ok != calls)
			rc = 1;
		free(b.lat);
	}
out:
	rein_io_free(io);
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	return rc;
}
