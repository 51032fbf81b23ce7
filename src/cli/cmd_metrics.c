/*
 * rein metrics: the store as Prometheus metrics (rein_metrics_collect), once
 * on stdout, or served at /metrics for a Prometheus server to scrape
 * (--serve ADDR:PORT, libmicrohttpd, one thread answering one scrape at a
 * time; SIGTERM or SIGINT stops it cleanly).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "store.h"
#include "trace.h"

static const char usage_text[] =
	"usage: rein metrics [--db PATH] [--serve ADDR:PORT] [--review-rate USD_PER_HOUR]\n"
	"\n"
	"Prints the store's runs and events as Prometheus metrics (text format 0.0.4):\n"
	"runs by workflow, version and outcome, escalations, tool and model calls,\n"
	"retries, breaker state, tokens and cost, step latency, and the GenAI client\n"
	"histograms (docs/observability.md). With --serve, answers GET /metrics on\n"
	"ADDR:PORT (e.g. 127.0.0.1:9464) until SIGTERM or SIGINT, reading the store\n"
	"at each scrape; PORT 0 picks a free port (printed on stderr).\n"
	"--review-rate (else REIN_REVIEW_COST_PER_HOUR) prices human review time\n"
	"(approvals) in the cost per completed run.\n";

typedef struct server {
	const char *db;
	rein_store *st;
	rein_metrics *m;
	double rate;
	pthread_mutex_t lock;
} server;

/* Opens the store and the handle when they are not open (a failure leaves
 * them closed: the next scrape tries again). */
static int ensure_open(server *sv, rein_err *e)
{
	rein_store_opts o = {.must_exist = true};
	int rc = REIN_OK;
	if (sv->st == NULL)
		rc = rein_store_open(sv->db, &o, &sv->st, e);
	if (rc == REIN_OK && sv->m == NULL && (rc = rein_metrics_new(&sv->m, e)) == REIN_OK)
		rein_metrics_set_review_rate(sv->m, sv->rate);
	return rc;
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *type,
			     char *body, size_t len)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_COPY);
	if (r == NULL)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	enum MHD_Result ok = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_len, void **state)
{
	server *sv = cls;
	rein_buf b = {0};
	rein_err e = {0};
	enum MHD_Result ok;
	if (*state == NULL) { /* the headers: wait for the (empty) body */
		*state = sv;
		return MHD_YES;
	}
	if (*upload_len) {
		*upload_len = 0;
		return MHD_YES;
	}
	if (strcmp(url, "/metrics") != 0) {
		static char nf[] = "not found: try /metrics\n";
		return reply(conn, MHD_HTTP_NOT_FOUND, "text/plain", nf, sizeof nf - 1);
	}
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		static char na[] = "method not allowed\n";
		return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain", na, sizeof na - 1);
	}
	pthread_mutex_lock(&sv->lock);
	int rc = ensure_open(sv, &e);
	if (rc == REIN_OK)
		rc = rein_metrics_collect(sv->m, sv->st, &b, &e);
	if (rc != REIN_OK) {
		/* its totals may be partial: start afresh at the next scrape */
		rein_metrics_free(sv->m);
		sv->m = NULL;
		fprintf(stderr, "rein metrics: %s\n", e.msg);
	}
	pthread_mutex_unlock(&sv->lock);
	if (rc == REIN_OK) {
		ok = reply(conn, MHD_HTTP_OK, rein_metrics_content_type, b.p ? b.p : "", b.len);
	} else {
		char *msg = rein_sprintf("rein metrics: %s\n", e.msg);
		ok = reply(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "text/plain", msg ? msg : "error\n",
			   msg ? strlen(msg) : 6);
		rein_free(msg);
	}
	rein_buf_free(&b);
	rein_err_clear(&e);
	return ok;
}

/* ADDR:PORT (ADDR an IPv4 address, or empty for all of them) into sa. */
static bool parse_addr(const char *s, struct sockaddr_in *sa)
{
	const char *colon = strrchr(s, ':');
	char host[64];
	char *end;
	if (colon == NULL || (size_t)(colon - s) >= sizeof host)
		return false;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	long port = strtol(colon + 1, &end, 10);
	if (colon[1] == '\0' || *end != '\0' || port < 0 || port > 65535)
		return false;
	memset(sa, 0, sizeof *sa);
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)port);
	sa->sin_addr.s_addr = htonl(INADDR_ANY);
	return host[0] == '\0' || inet_pton(AF_INET, host, &sa->sin_addr) == 1;
}

/* A review rate: a finite decimal number >= 0 (USD per hour). */
static bool parse_rate(const char *s, double *out)
{
	char *end;
	double v = s && *s ? strtod(s, &end) : -1;
	if (v < 0 || !isfinite(v) || *end != '\0')
		return false;
	*out = v;
	return true;
}

static int serve(const char *db, const char *addr, double rate)
{
	struct sockaddr_in sa;
	server sv = {.db = db, .rate = rate};
	struct MHD_Daemon *d = NULL;
	rein_err e = {0};
	sigset_t set;
	int ex = 1, sig = 0;
	if (!parse_addr(addr, &sa)) {
		fprintf(stderr, "rein metrics: --serve needs ADDR:PORT (e.g. 127.0.0.1:9464), not '%s'\n", addr);
		return 2;
	}
	pthread_mutex_init(&sv.lock, NULL);
	/* a mistyped --db is an error now, not at the first scrape */
	if (ensure_open(&sv, &e) != REIN_OK) {
		fprintf(stderr, "rein metrics: %s\n", e.msg);
		ex = e.code == REIN_ENOTFOUND ? 2 : 1;
		goto out;
	}
	/* the signals are taken by sigwait below: blocked here, before the
	 * daemon's thread starts, so that it inherits the mask */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request,
			     &sv, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_CONNECTION_TIMEOUT,
			     (unsigned)30, MHD_OPTION_END);
	if (d == NULL) {
		fprintf(stderr, "rein metrics: cannot listen on %s: %s\n", addr, strerror(errno));
		goto out;
	}
	const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	fprintf(stderr, "rein metrics: serving http://%s:%u/metrics\n",
		sa.sin_addr.s_addr == htonl(INADDR_ANY) ? "0.0.0.0" : inet_ntoa(sa.sin_addr),
		di ? (unsigned)di->port : (unsigned)ntohs(sa.sin_port));
	while (sigwait(&set, &sig) != 0)
		;
	fprintf(stderr, "rein metrics: stopping (%s)\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	ex = 0;
out:
	if (d)
		MHD_stop_daemon(d); /* finishes a scrape in progress */
	rein_metrics_free(sv.m);
	rein_store_close(sv.st);
	pthread_mutex_destroy(&sv.lock);
	rein_err_clear(&e);
	return ex;
}

int rein_cmd_metrics(int argc, char **argv, const char *db)
{
	static const struct option lo[] = {{"db", required_argument, 0, 'd'},
					   {"serve", required_argument, 0, 's'},
					   {"review-rate", required_argument, 0, 'r'},
					   {"help", no_argument, 0, 'h'},
					   {0, 0, 0, 0}};
	const char *addr = NULL, *rate_s = getenv("REIN_REVIEW_COST_PER_HOUR");
	double rate = 0;
	rein_store *st = NULL;
	rein_metrics *m = NULL;
	rein_buf b = {0};
	rein_err e = {0};
	rein_store_opts o = {.must_exist = true};
	int ex = 2, c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":", lo, NULL)) != -1) {
		switch (c) {
		case 'd': db = optarg; break;
		case 's': addr = optarg; break;
		case 'r': rate_s = optarg; break;
		case 'h': fputs(usage_text, stdout); ex = 0; goto out;
		default:
			fprintf(stderr, "rein metrics: bad option '%s'\n%s", argv[optind - 1], usage_text);
			goto out;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "rein metrics: unexpected argument '%s'\n%s", argv[optind], usage_text);
		goto out;
	}
	if (rate_s && *rate_s && !parse_rate(rate_s, &rate)) {
		fprintf(stderr, "rein metrics: the review rate must be a number >= 0 (USD per hour), not '%s'\n",
			rate_s);
		goto out;
	}
	if (db == NULL)
		db = getenv("REIN_DB") && *getenv("REIN_DB") ? getenv("REIN_DB") : "rein.db";
	if (addr) {
		ex = serve(db, addr, rate);
		goto out;
	}
	if (rein_store_open(db, &o, &st, &e) != REIN_OK) {
		fprintf(stderr, "rein metrics: %s\n", e.msg);
		ex = e.code == REIN_ENOTFOUND ? 2 : 1;
		goto out;
	}
	ex = 1;
	if (rein_metrics_new(&m, &e) == REIN_OK)
		rein_metrics_set_review_rate(m, rate);
	if (m == NULL || rein_metrics_collect(m, st, &b, &e) != REIN_OK) {
		fprintf(stderr, "rein metrics: %s\n", e.msg);
		goto out;
	}
	ex = fwrite(b.p, 1, b.len, stdout) == b.len && fflush(stdout) == 0 ? 0 : 1;
out:
	rein_buf_free(&b);
	rein_metrics_free(m);
	rein_store_close(st);
	rein_err_clear(&e);
	return ex;
}
