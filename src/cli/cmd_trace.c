/*
 * rein trace RUN: a run's span tree in the terminal (or as OTLP JSON);
 * rein trace export [--since TIME] [RUN...]: the backfill, every ended run's
 * spans POSTed to the OTLP/HTTP collector of OTEL_EXPORTER_OTLP_*. See
 * src/trace/ and docs/observability.md.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base.h"
#include "cli.h"
#include "engine.h"
#include "runner.h"
#include "store.h"
#include "trace.h"

static const char usage[] =
	"usage: rein trace RUN [--json] [--db PATH]\n"
	"       rein trace export [--since TIME] [--batch N] [RUN...] [--db PATH]\n"
	"\n"
	"trace RUN      draws the run's spans as a tree: duration, tokens, cost and\n"
	"               retries per span, decisions (attempts, backoffs, fallbacks,\n"
	"               route changes, breakers, inbox events) below it, the failing\n"
	"               span marked FAILED. --json prints the OTLP/JSON request instead.\n"
	"trace export   sends the spans of the given runs (default: every ended run;\n"
	"               --since TIME: those updated at or after TIME, 2026-01-31T12:00:00Z\n"
	"               or an age: 90s, 30m, 2h, 7d) to $OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,\n"
	"               else $OTEL_EXPORTER_OTLP_ENDPOINT/v1/traces, else\n"
	"               http://localhost:4318/v1/traces, with $OTEL_EXPORTER_OTLP_HEADERS;\n"
	"               --batch N runs per request (default 8). Span ids derive from the\n"
	"               run, so exporting twice sends the same spans again, never new ones.\n"
	"\n"
	"With OTEL_EXPORTER_OTLP_ENDPOINT (or _TRACES_ENDPOINT) set, 'rein run' and\n"
	"'rein resume' also export each run's spans as it ends (REIN_TRACE_EXPORT=0:\n"
	"not), through a queue of REIN_TRACE_QUEUE traces (256) that drops, and says\n"
	"so, rather than slow a run. See docs/observability.md.\n"
	"\n"
	"exit: 0 ok, 1 an error (the collector refused or is unreachable), 2 bad usage.\n";

static int bad_usage(const char *what, const char *arg)
{
	fprintf(stderr, "rein trace: ");
	fprintf(stderr, what, arg);
	fprintf(stderr, "\n(see 'rein trace --help')\n");
	return 2;
}

/* Opens the store at db (or $REIN_DB, or ./rein.db), never creating it. */
static int open_db(const char *db, rein_store **st)
{
	if (db == NULL) {
		const char *env = getenv("REIN_DB");
		db = env && *env ? env : "rein.db";
	}
	rein_err e = {0};
	rein_store_opts o = {.must_exist = true};
	int rc = rein_store_open(db, &o, st, &e);
	int ex = rc == REIN_OK ? 0 : rc == REIN_ENOTFOUND ? 2 : 1;
	if (rc != REIN_OK)
		fprintf(stderr, "rein trace: %s%s\n", rc == REIN_ENOTFOUND ? "" : "cannot open store: ",
			e.msg);
	rein_err_clear(&e);
	return ex;
}

static int show(rein_store *st, const char *run, bool as_json)
{
	rein_trace *t = NULL;
	rein_err e = {0};
	rein_buf b = {0};
	json_t *req = NULL;
	char *text = NULL;
	int ex = 1;
	int rc = rein_trace_load(st, run, &t, &e);
	if (rc != REIN_OK) {
		fprintf(stderr, "rein trace: %s\n", e.msg);
		ex = rc == REIN_ENOTFOUND ? 2 : 1;
		goto out;
	}
	if (as_json) {
		const rein_trace *one = t;
		if (rein_otlp_encode(&one, 1, &req, &e) != REIN_OK ||
		    (text = rein_json_dump_flags(req, JSON_INDENT(2))) == NULL)
			goto out;
		printf("%s\n", text);
	} else {
		if (rein_trace_render(t, &b) != REIN_OK)
			goto out;
		fputs(b.p, stdout);
	}
	ex = 0;
out:
	if (ex == 1 && rc == REIN_OK)
		fprintf(stderr, "rein trace: out of memory\n");
	rein_free(text);
	json_decref(req);
	rein_buf_free(&b);
	rein_trace_free(t);
	rein_err_clear(&e);
	return ex;
}

typedef struct exporter {
	rein_otlp_cfg cfg;
	rein_otlp_stats stats;
	rein_trace **batch;
	size_t n, max;
	long runs, spans;
	int64_t since;
	char **ids; /* the ended runs to export, collected first (no store use in run_each's cb needed) */
	size_t nids;
	bool failed;
} exporter;

static int flush(exporter *x)
{
	json_t *req = NULL;
	rein_err e = {0};
	long ns = 0;
	int rc = REIN_OK;
	if (x->n == 0)
		goto out;
	for (size_t i = 0; i < x->n; i++) {
		size_t k;
		rein_trace_spans(x->batch[i], &k);
		ns += (long)k;
	}
	rc = rein_otlp_encode((const rein_trace *const *)x->batch, x->n, &req, &e);
	if (rc == REIN_OK)
		rc = rein_otlp_post(&x->cfg, req, ns, &x->stats, &e);
	if (rc != REIN_OK) {
		fprintf(stderr, "rein trace export: %s\n", e.msg);
		x->failed = true;
	} else {
		x->runs += (long)x->n;
		x->spans += ns;
	}
out:
	for (size_t i = 0; i < x->n; i++)
		rein_trace_free(x->batch[i]);
	x->n = 0;
	json_decref(req);
	rein_err_clear(&e);
	return rc;
}

static int collect(void *ud, const rein_run_row *row)
{
	exporter *x = ud;
	if (row->status == REIN_RUN_RUNNING || row->status == REIN_RUN_WAITING)
		return 0; /* exported once it has ended */
	if (x->since && row->updated_at < x->since)
		return 0;
	char **p = rein_realloc(x->ids, (x->nids + 1) * sizeof *p);
	if (p == NULL)
		return REIN_ENOMEM;
	x->ids = p;
	if ((x->ids[x->nids] = rein_strdup(row->id)) == NULL)
		return REIN_ENOMEM;
	x->nids++;
	return 0;
}

static int export_runs(rein_store *st, int argc, char **argv, int64_t since, long batch)
{
	exporter x = {.since = since, .max = (size_t)batch};
	rein_err e = {0};
	int ex = 1;
	if (rein_otlp_cfg_env(&x.cfg, &e) != REIN_OK) {
		fprintf(stderr, "rein trace export: %s\n", e.msg);
		ex = 2;
		goto out;
	}
	x.batch = rein_calloc(x.max, sizeof *x.batch);
	if (x.batch == NULL)
		goto out;
	if (argc == 0 && rein_store_run_each(st, -1, collect, &x, &e) != REIN_OK) {
		fprintf(stderr, "rein trace export: %s\n", e.msg);
		goto out;
	}
	for (int i = 0; i < argc; i++) {
		char **p = rein_realloc(x.ids, (x.nids + 1) * sizeof *p);
		if (p == NULL || (p[x.nids] = rein_strdup(argv[i])) == NULL) {
			x.ids = p ? p : x.ids;
			goto out;
		}
		x.ids = p;
		x.nids++;
	}
	/* oldest first, so an interrupted backfill has sent the oldest */
	for (size_t i = x.nids; i-- > 0 && !x.failed;) {
		rein_trace *t = NULL;
		rein_err_clear(&e);
		if (rein_trace_load(st, x.ids[i], &t, &e) != REIN_OK) {
			fprintf(stderr, "rein trace export: %s\n", e.msg);
			x.failed = true;
			break;
		}
		x.batch[x.n++] = t;
		if (x.n == x.max)
			flush(&x);
	}
	if (!x.failed)
		flush(&x);
	printf("exported %ld run(s), %ld span(s) in %ld request(s), %ld retried, %ld rejected\n",
	       x.runs, x.spans, x.stats.requests, x.stats.retries, x.stats.spans_rejected);
	ex = x.failed || x.stats.spans_rejected > 0 ? 1 : 0;
out:
	for (size_t i = 0; i < x.n; i++)
		rein_trace_free(x.batch[i]);
	for (size_t i = 0; i < x.nids; i++)
		rein_free(x.ids[i]);
	rein_free(x.ids);
	rein_free(x.batch);
	rein_otlp_cfg_clear(&x.cfg);
	rein_err_clear(&e);
	return ex;
}

int rein_cmd_trace(int argc, char **argv, const char *db)
{
	static const struct option lo[] = {{"json", no_argument, 0, 'j'},
					   {"since", required_argument, 0, 'S'},
					   {"batch", required_argument, 0, 'B'},
					   {"db", required_argument, 0, 'D'},
					   {"help", no_argument, 0, 'h'},
					   {0, 0, 0, 0}};
	bool as_json = false;
	int64_t since = 0;
	long batch = 8;
	char *end;
	opterr = 0;
	for (int c; (c = getopt_long(argc, argv, ":", lo, NULL)) != -1;) {
		switch (c) {
		case 'j': as_json = true; break;
		case 'D': db = optarg; break;
		case 'S':
			if (!rein_cli_parse_time(optarg, rein_clock_now(&rein_clock_system), &since))
				return bad_usage("--since needs a time (2026-01-31T12:00:00Z) or an age "
						 "(90s, 30m, 2h, 7d), not '%s'", optarg);
			break;
		case 'B':
			batch = strtol(optarg, &end, 10);
			if (*optarg == '\0' || *end != '\0' || batch < 1 || batch > 1000)
				return bad_usage("--batch needs a count from 1 to 1000, not '%s'", optarg);
			break;
		case 'h': fputs(usage, stdout); return 0;
		case ':': return bad_usage("option '%s' needs a value", argv[optind - 1]);
		default: return bad_usage("unknown option '%s'", argv[optind - 1]);
		}
	}
	bool export = optind < argc && strcmp(argv[optind], "export") == 0;
	if (!export && argc - optind != 1)
		return bad_usage("%s", "needs one RUN, or 'export [RUN...]'");
	if (!export && since)
		return bad_usage("%s", "--since is an option of 'export'");
	rein_store *st = NULL;
	int ex = open_db(db, &st);
	if (ex == 0)
		ex = export ? export_runs(st, argc - optind - 1, argv + optind + 1, since, batch)
			    : show(st, argv[optind], as_json);
	rein_store_close(st);
	return ex;
}

/* ---- the online exporter of run and resume ------------------------------------ */

/* The one exporter of this process (run and resume drive one runner), and
 * the listener it was chained in front of. */
static struct {
	rein_otlp_exporter *x;
	void (*next)(void *ud, const rein_event_row *rows, size_t n);
	void *next_ud;
} online;

static void online_commit(void *ud, const rein_event_row *rows, size_t n)
{
	(void)ud;
	rein_otlp_exporter_commit(online.x, rows, n);
	if (online.next)
		online.next(online.next_ud, rows, n);
}

void rein_cli_trace_attach(rein_runner_opts *o)
{
	const char *off = getenv("REIN_TRACE_EXPORT");
	const char *a = getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
	const char *b = getenv("OTEL_EXPORTER_OTLP_ENDPOINT");
	if (online.x != NULL || (off && strcmp(off, "0") == 0) || !((a && *a) || (b && *b)))
		return;
	rein_otlp_cfg cfg = {0};
	rein_err e = {0};
	const char *qs = getenv("REIN_TRACE_QUEUE");
	long q = qs && *qs ? strtol(qs, NULL, 10) : 256;
	if (rein_otlp_cfg_env(&cfg, &e) == REIN_OK) {
		/* short, so that a dead collector delays the exit little */
		cfg.max_attempts = 3;
		cfg.max_backoff_ms = 1000;
		cfg.timeout_ms = 2000;
		if (rein_otlp_exporter_new(&cfg, q >= 1 ? (size_t)q : 1, true, &online.x, &e) == REIN_OK) {
			online.next = o->on_commit;
			online.next_ud = o->ud;
			o->on_commit = online_commit;
			o->ud = NULL;
		}
	}
	if (e.code != REIN_OK)
		fprintf(stderr, "rein: traces are not exported: %s\n", e.msg);
	rein_otlp_cfg_clear(&cfg);
	rein_err_clear(&e);
}

void rein_cli_trace_detach(void)
{
	if (online.x == NULL)
		return;
	rein_otlp_exporter_stats s;
	rein_otlp_exporter_free(online.x, 2000, &s);
	online.x = NULL;
	if (s.dropped || s.failed || s.skipped || s.http.spans_rejected)
		fprintf(stderr,
			"rein: traces: %ld exported, %ld failed, %ld dropped, %ld skipped, %ld span(s) "
			"rejected (send them with 'rein trace export')\n",
			s.exported, s.failed, s.dropped, s.skipped, s.http.spans_rejected);
}
