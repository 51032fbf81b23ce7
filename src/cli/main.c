/*
 * rein: the command line. Thin over the library: each command parses its
 * flags, calls the layer that does the work, and prints the result.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base.h"
#include "cli.h"
#include "engine.h"
#include "runner.h"
#include "schema.h"
#include "script.h"
#include "spec.h"
#include "store.h"

enum {
	EXIT_OK = 0,
	EXIT_FAILED = 1,
	EXIT_USAGE = 2,
	EXIT_ESCALATED = 3,
	EXIT_WAITING = 4,
	EXIT_CANCELLED = 5,
	EXIT_REVIEW = 6,
	EXIT_STOPPED = 7, /* SIGTERM/SIGINT: the runs were released, resumable */
};

static const char *prog = "rein";

#ifndef REIN_VERSION
#define REIN_VERSION "0.1.0-dev"
#endif

static const char usage_main[] =
	"usage: rein [--db PATH] COMMAND [ARGS]   (rein --version: the version)\n"
	"\n"
	"rein runs LLM agent workflows as durable, explicit graphs.\n"
	"\n"
	"commands:\n"
	"  run DIR [--input JSON|@FILE|@-] [--max-wait S]\n"
	"                                                start a run and drive it\n"
	"  resume [RUN | --all] [--max-wait S]           advance runs that are due or abandoned\n"
	"  show RUN [--json]                             a run's state and steps\n"
	"  events RUN [--follow]                         a run's events, one JSON object per line\n"
	"  runs [--status S] [--workflow W] [--since T] [--limit N] [--json]\n"
	"                                                list runs\n"
	"  cancel RUN                                    cancel a run\n"
	"  review RUN --done JSON | --retry | --fail WHY [--as USER]\n"
	"                                                resolve a needs_review run\n"
	"  signal RUN NAME [JSON] [--id ID]              send a signal to a run's wait step\n"
	"  retry RUN --from STEP [--max-wait S]          a new run from STEP, reusing the steps before\n"
	"  kill [--workflow W] [--tool T] [--tenant T] --reason TEXT\n"
	"                                                stop covered write calls in every process\n"
	"  unkill [--workflow W] [--tool T] [--tenant T] lift that switch\n"
	"  kills [--json]                                the switches set\n"
	"  approvals [--json]                            calls waiting for a human decision\n"
	"  approve ID --as USER [--role R]... [--args JSON] | --token T   approve one\n"
	"  deny ID --as USER --reason TEXT               deny one\n"
	"  validate DIR [--input JSON|@FILE]             check a workflow (and an input)\n"
	"  audit verify [RUN]                            check the hash chains, rows, bundles\n"
	"  trace RUN [--json]                            a run's spans as a tree (or OTLP JSON)\n"
	"  trace export [--since T] [RUN...]             send runs' spans to an OTLP collector\n"
	"  replay RUN                                    re-decide a run from its log: exit 1 on a divergence\n"
	"  eval SUITE.yaml [--gate] [--baseline F] [--junit F]\n"
	"                                                run an eval suite (docs/evals.md)\n"
	"  audit export RUN [--format json|md]           the run's audit record, for a reviewer\n"
	"  schema check [...] SCHEMA [FILE|-]            validate JSON lines against a schema\n"
	"  tools lock DIR | tools check DIR              record / check the tools' schemas\n"
	"  event-types                                   the table of event types (docs/events.md)\n"
	"  metrics [--serve ADDR:PORT]                   Prometheus metrics of the store\n"
	"  policy load FILE... | policy test FILE        organisation policies (docs/policy.md)\n"
	"  shred --tenant T                              destroy a tenant's key (crypto-shredding)\n"
	"  gc --finished-before T [--dry-run]            purge old runs' payloads (skeletons stay)\n"
	"  deploy DIR [--canary P%] [--rollback RULE]   make a version stable, or a canary candidate\n"
	"  deployments [NAME] [--json]                   deployments, per-version success/escalation\n"
	"\n"
	"every command takes --db PATH (default $REIN_DB, else ./rein.db) and --help.\n"
	"Only 'rein run' and 'rein deploy' create a database; every other command refuses a PATH that\n"
	"holds none (\"no database at PATH\"), so a mistyped --db is an error.\n"
	"\n"
	"exit codes: 0 succeeded, 1 failed (or an error, message on stderr), 2 bad usage,\n"
	"spec or input (nothing started), 3 escalated, 4 waiting, 5 cancelled, 6 needs_review,\n"
	"7 stopped by SIGTERM/SIGINT (run, resume: the calls out were given --grace to\n"
	"finish, the runs were released unfinished; 'rein resume' goes on with them).\n";

static int usage_error(const char *cmd, const char *fmt, const char *arg)
{
	fprintf(stderr, "%s %s: ", prog, cmd);
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n(see '%s %s --help')\n", prog, cmd);
	return EXIT_USAGE;
}

/* ---- shared helpers ------------------------------------------------------ */

static const char *db_path(const char *flag)
{
	if (flag)
		return flag;
	const char *env = getenv("REIN_DB");
	return env && *env ? env : "rein.db";
}

static int exit_for(rein_status s)
{
	switch (s) {
	case REIN_RUN_SUCCEEDED: return EXIT_OK;
	case REIN_RUN_FAILED: return EXIT_FAILED;
	case REIN_RUN_ESCALATED: return EXIT_ESCALATED;
	case REIN_RUN_WAITING: return EXIT_WAITING;
	case REIN_RUN_CANCELLED: return EXIT_CANCELLED;
	case REIN_RUN_NEEDS_REVIEW: return EXIT_REVIEW;
	case REIN_RUN_RUNNING: return EXIT_WAITING;
	}
	return EXIT_FAILED;
}

/* Opens the store at db; only a command that starts runs may create it
 * (create false: "no database at PATH", exit 2, nothing done). */
static int open_store(const char *db, bool create, rein_store **st)
{
	rein_err e = {0};
	rein_store_opts o = {.must_exist = !create};
	int ex = EXIT_OK;
	int rc = rein_store_open(db, &o, st, &e);
	if (rc == REIN_ENOTFOUND) {
		fprintf(stderr, "%s: %s (--db PATH, else $REIN_DB, else ./rein.db; 'rein run' creates one)\n",
			prog, e.msg);
		ex = EXIT_USAGE;
	} else if (rc != REIN_OK) {
		fprintf(stderr, "%s: cannot open store: %s\n", prog, e.msg);
		ex = EXIT_FAILED;
	}
	rein_err_clear(&e);
	return ex;
}

/* Reads all of stdin into *text (NUL-terminated, caller frees). */
static int read_stdin(char **text, size_t *len, rein_err *err)
{
	rein_buf b = {0};
	char chunk[4096];
	size_t n;
	int rc = REIN_OK;
	while (rc == REIN_OK && (n = fread(chunk, 1, sizeof chunk, stdin)) > 0)
		rc = rein_buf_append(&b, chunk, n);
	if (rc == REIN_OK)
		rc = rein_buf_append(&b, "", 0); /* NUL-terminated even when empty */
	if (rc != REIN_OK) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
	} else if (ferror(stdin)) {
		rc = rein_err_set(err, REIN_EIO, "cannot read the standard input");
	} else {
		*len = b.len;
		*text = b.p;
		b.p = NULL;
	}
	rein_buf_free(&b);
	return rc;
}

/* --input JSON, @FILE or @- (stdin); NULL: {} */
static json_t *read_input(const char *arg, char *where, size_t wlen, rein_err *err)
{
	if (arg == NULL) {
		snprintf(where, wlen, "<input>");
		return json_object();
	}
	if (arg[0] == '@') {
		char *text = NULL;
		size_t len = 0;
		bool in = strcmp(arg, "@-") == 0;
		snprintf(where, wlen, "%s", in ? "<stdin>" : arg + 1);
		if ((in ? read_stdin(&text, &len, err) : rein_file_read(arg + 1, &text, &len, err)) !=
		    REIN_OK)
			return NULL;
		json_t *j = rein_json_parse(text, len, err);
		rein_free(text);
		return j;
	}
	snprintf(where, wlen, "<input>");
	return rein_json_parse(arg, strlen(arg), err);
}

/* Says why read_input failed: "FILE:LINE:COL: input is not JSON: why" for a
 * parse error, else that the input could not be read. */
static void input_error(const char *where, const rein_err *e)
{
	int line = 0, col = 0, n = 0;
	if (e->code == REIN_EINVAL && sscanf(e->msg, "line %d col %d: %n", &line, &col, &n) == 2 &&
	    n > 0)
		fprintf(stderr, "%s:%d:%d: input is not JSON: %s\n", where, line, col > 0 ? col : 1,
			e->msg + n);
	else if (e->code == REIN_EINVAL)
		fprintf(stderr, "%s: input is not JSON: %s\n", where, e->msg);
	else
		fprintf(stderr, "cannot read the input: %s\n", e->msg);
}

/* A copy of v whose objects have their keys in sorted order at every level
 * (jansson keeps insertion order), so the same output prints the same way
 * from one process to the next whatever order a Lua table gave; NULL when
 * out of memory. */
static json_t *sorted_copy(const json_t *v)
{
	if (json_is_array(v)) {
		json_t *a = json_array();
		size_t i;
		json_t *x;
		json_array_foreach(v, i, x) if (a && json_array_append_new(a, sorted_copy(x)) != 0) {
			json_decref(a);
			a = NULL;
		}
		return a;
	}
	if (!json_is_object(v))
		return json_deep_copy(v);
	size_t n = json_object_size(v), k = 0;
	const char **keys = rein_calloc(n + 1, sizeof *keys);
	json_t *o = keys ? json_object() : NULL;
	const char *key;
	json_t *x;
	json_object_foreach((json_t *)v, key, x) if (keys) keys[k++] = key;
	for (size_t i = 1; keys && i < k; i++) /* insertion sort: outputs are small */
		for (size_t j = i; j > 0 && strcmp(keys[j - 1], keys[j]) > 0; j--) {
			const char *t = keys[j];
			keys[j] = keys[j - 1];
			keys[j - 1] = t;
		}
	for (size_t i = 0; o && i < k; i++)
		if (json_object_set_new(o, keys[i], sorted_copy(json_object_get(v, keys[i]))) != 0) {
			json_decref(o);
			o = NULL;
		}
	rein_free(keys);
	return o;
}

static void print_result(const rein_run_result *r)
{
	json_t *out = sorted_copy(r->output ? r->output : json_null());
	json_t *o = out ? json_pack("{s:s, s:s, s:o}", "run", r->id, "status", rein_status_name(r->status),
				    "output", out)
			: NULL;
	if (o == NULL)
		return;
	if (r->reason)
		json_object_set_new(o, "reason", json_string(r->reason));
	if (r->status == REIN_RUN_WAITING && r->wake_at) {
		char t[32];
		rein_time_format(r->wake_at, t);
		json_object_set_new(o, "wake_at", json_string(t));
	}
	char *s = rein_json_dump_flags(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
	if (s)
		puts(s);
	fflush(stdout);
	rein_free(s);
	json_decref(o);
}

/* Progress on stderr when it is a terminal: the events as they become
 * durable (on_commit), so it never shows one the log does not have. */
static void progress(void *ud, const rein_event_row *rows, size_t n)
{
	(void)ud;
	for (size_t i = 0; i < n; i++) {
		char t[32];
		rein_time_format(rows[i].at, t);
		fprintf(stderr, "  %s  %-16s %s\n", t + 11, rows[i].type, rows[i].step ? rows[i].step : "");
	}
}

/* Graceful stop: SIGTERM or SIGINT sets this, and the runner stops (see
 * rein_runner_opts.stop); a second signal kills at once (SA_RESETHAND). */
static volatile sig_atomic_t stop_signal;
static int64_t grace_ms = 10000; /* --grace */
static bool run_shadow;          /* rein run --shadow */
static json_t *run_requester;    /* rein run --as/--role/--tenant */
static json_t *run_roles;
static json_t *run_deployment;   /* rein run NAME of a deployed workflow: {name, role} */

static void requester_free(void)
{
	json_decref(run_requester);
	json_decref(run_roles);
	json_decref(run_deployment);
}

static void on_stop_signal(int sig)
{
	(void)sig;
	stop_signal = 1;
}

static void stop_on_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_stop_signal;
	sa.sa_flags = SA_RESETHAND; /* no SA_RESTART: sleeps end early */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
}

/* What run, resume and cancel drive runs with: a sandbox, the store, a runner. */
typedef struct {
	rein_script *sb;
	rein_store *st;
	rein_runner *rn;
	rein_keyring *keys; /* protected payloads (cmd_shred.c) */
} worker;

/* The sandbox of w, unless it has one (EXIT_OK, else EXIT_FAILED). */
static int worker_script(worker *w, const char *cmd)
{
	if (w->sb == NULL && rein_script_new(&w->sb) != REIN_OK) {
		fprintf(stderr, "%s %s: out of memory\n", prog, cmd);
		return EXIT_FAILED;
	}
	return EXIT_OK;
}

/* Completes w (zeroed, or with its sandbox) on db (created if create):
 * EXIT_OK, else an exit code with the reason on stderr. */
static int worker_open(worker *w, const char *db, bool create, int64_t max_wait_ms,
		       const char *cmd)
{
	rein_err e = {0};
	rein_runner_opts o = {
		.max_wait_ms = max_wait_ms,
		.commit_thread = true, /* large batches commit while the next is computed */
		.on_commit = isatty(2) ? progress : NULL,
		.stop = &stop_signal,
		.stop_grace_ms = grace_ms,
		.shadow = run_shadow,
		.requester = run_requester,
		.deployment = run_deployment,
	};
	stop_on_signals();
	if (worker_script(w, cmd) != EXIT_OK)
		return EXIT_FAILED;
	rein_cli_trace_attach(&o);
	int ex = open_store(db_path(db), create, &w->st);
	if (ex != EXIT_OK)
		return ex;
	if (rein_cli_keyring(db_path(db), &w->keys) != 0)
		return EXIT_FAILED;
	o.keys = w->keys;
	if (rein_runner_new(w->st, w->sb, &o, &w->rn, &e) != REIN_OK) {
		fprintf(stderr, "%s %s: %s\n", prog, cmd, e.msg);
		return EXIT_FAILED;
	}
	return EXIT_OK;
}

static void worker_close(worker *w)
{
	rein_runner_free(w->rn);
	rein_cli_trace_detach();
	rein_store_close(w->st);
	rein_script_free(w->sb);
	rein_keyring_close(w->keys);
}

static bool parse_seconds(const char *s, int64_t *ms)
{
	char *end;
	double v = strtod(s, &end);
	if (*s == '\0' || *end != '\0' || v < 0 || v > 1e9)
		return false;
	*ms = (int64_t)(v * 1000);
	return true;
}

/* getopt_long with our own messages: unknown flags are errors. */
#define GETOPT_LOOP(argc, argv, shortopts, longopts, cmd)                                          \
	for (int c_; opterr = 0, (c_ = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1;) \
		switch (c_)

#define BAD_OPTION(cmd, argv)                                                        \
	case '?':                                                                    \
		return usage_error(cmd, "unknown or incomplete option '%s'", argv[optind - 1]); \
	case ':':                                                                    \
		return usage_error(cmd, "option '%s' needs a value", argv[optind - 1])

/* ---- validate ------------------------------------------------------------ */

static const char usage_validate[] =
	"usage: rein validate DIR [--input JSON|@FILE]\n"
	"\n"
	"Checks DIR/workflow.yaml and every file it names: YAML syntax, unknown or\n"
	"missing keys, goto targets, unreachable steps, Lua that does not compile,\n"
	"loops without max_visits, schemas; with --input also that the input matches\n"
	"the input schema. Prints every problem as FILE:LINE:COL: message.\n"
	"Exit 0 when valid, 2 when not.\n";

/*
 * The workflow directory an argument names: DIR itself, or the directory of
 * DIR/workflow.yaml (or .yml) when given the file. into holds the result.
 */
static const char *workflow_dir(const char *arg, char *into, size_t n)
{
	struct stat st;
	const char *base = strrchr(arg, '/');
	base = base ? base + 1 : arg;
	if (stat(arg, &st) != 0 || !S_ISREG(st.st_mode) ||
	    (strcmp(base, "workflow.yaml") != 0 && strcmp(base, "workflow.yml") != 0))
		return arg;
	int len = (int)(base - arg);
	while (len > 1 && arg[len - 1] == '/')
		len--;
	snprintf(into, n, "%.*s", len, len ? arg : ".");
	return into;
}

static int load_spec(const char *arg, rein_script *sb, rein_spec **spec)
{
	rein_err e = {0};
	char buf[4096];
	const char *dir = workflow_dir(arg, buf, sizeof buf);
	int rc = rein_spec_load_dir(dir, sb, spec, &e);
	if (rc != REIN_OK)
		rein_err_print(&e, dir, stderr);
	rein_err_clear(&e);
	return rc == REIN_OK ? EXIT_OK : EXIT_USAGE;
}

static const char input_head[] = "input does not match the input schema";

/*
 * Prints a schema mismatch of the input, as the library words it ("HEAD:
 * POINTER: message (keyword)", one per line, later lines possibly without the
 * head), one line per error as WHERE:1:1: HEAD: POINTER: message (keyword).
 */
static void print_input_errors(const char *where, const char *msg)
{
	size_t hl = strlen(input_head);
	while (*msg) {
		size_t n = strcspn(msg, "\n");
		const char *l = msg;
		int ln = (int)n;
		if (n >= hl + 2 && strncmp(l, input_head, hl) == 0 && l[hl] == ':' && l[hl + 1] == ' ') {
			l += hl + 2;
			ln -= (int)hl + 2;
		}
		if (ln > 0)
			fprintf(stderr, "%s:1:1: %s: %s%.*s\n", where, input_head, *l == ':' ? "/" : "",
				ln, l);
		msg += n;
		if (*msg == '\n')
			msg++;
	}
}

/* Validates input against the spec; prints problems as WHERE:1:1: POINTER: msg. */
static int check_input(const rein_spec *spec, const json_t *input, const char *where)
{
	rein_err e = {0};
	int ex = EXIT_OK;
	int rc = rein_schema_check(spec->input_schema, input, &e, "%s", input_head);
	if (rc == REIN_ESCHEMA) {
		print_input_errors(where, e.msg);
		ex = EXIT_USAGE;
	} else if (rc != REIN_OK) {
		fprintf(stderr, "%s: out of memory\n", prog);
		ex = EXIT_FAILED;
	}
	rein_err_clear(&e);
	return ex;
}

static int cmd_validate(int argc, char **argv, const char *db)
{
	static const struct option lo[] = {{"input", required_argument, 0, 'i'},
					   {"db", required_argument, 0, 'd'},
					   {"help", no_argument, 0, 'h'},
					   {0, 0, 0, 0}};
	const char *input_arg = NULL;
	(void)db;
	GETOPT_LOOP(argc, argv, ":", lo, "validate")
	{
	case 'i': input_arg = optarg; break;
	case 'd': break;
	case 'h': fputs(usage_validate, stdout); return EXIT_OK;
	BAD_OPTION("validate", argv);
	}
	if (optind != argc - 1)
		return usage_error("validate", "%s", "needs exactly one workflow directory");
	const char *dir = argv[optind];
	rein_script *sb = NULL;
	rein_spec *spec = NULL;
	json_t *input = NULL;
	int ex = EXIT_OK;
	if (rein_script_new(&sb) != REIN_OK) {
		fprintf(stderr, "%s: out of memory\n", prog);
		return EXIT_FAILED;
	}
	if ((ex = load_spec(dir, sb, &spec)) != EXIT_OK)
		goto out;
	if (input_arg) {
		char where[512];
		rein_err e = {0};
		if ((input = read_input(input_arg, where, sizeof where, &e)) == NULL) {
			input_error(where, &e);
			ex = EXIT_USAGE;
			goto out;
		}
		if ((ex = check_input(spec, input, where)) != EXIT_OK)
			goto out;
	}
	printf("%s: ok (%zu steps, version %.12s)\n", dir, spec->nsteps, spec->version);
out:
	json_decref(input);
	rein_spec_free(spec);
	rein_script_free(sb);
	return ex;
}

/* ---- run and resume -------------------------------------------------------- */

static const char usage_run[] =
	"usage: rein run DIR [--input JSON|@FILE|@-] [--id KEY] [--max-wait SECONDS]\n"
	"                    [--grace SECONDS] [--shadow] [--db PATH]\n"
	"                    [--as USER] [--role ROLE]... [--tenant TENANT]\n"
	"\n"
	"Starts a run of the workflow in DIR (or DIR/workflow.yaml) or of the deployed\n"
	"workflow named DIR (see 'rein deploy'), and drives it until\n"
	"it ends or waits on a timer longer than --max-wait (default 60 s; shorter\n"
	"waits are slept through).\n"
	"The input (default {}; @- reads it from stdin) must match the workflow's input\n"
	"schema. The database (--db) is created if it does not exist.\n"
	"--as, --role, --tenant: who requests the run (default: $USER, no roles, no\n"
	"tenant), recorded in run.started and seen by policies (docs/policy.md).\n"
	"Prints {\"run\": ID, \"status\": S, \"output\": ...} on stdout; progress goes to\n"
	"stderr when it is a terminal.\n"
	"\n"
	"--id KEY starts the run idempotently: KEY (1 to 63 of A-Z a-z 0-9 . _ : -,\n"
	"starting with a letter or digit; an order number, a ticket id) is the run's\n"
	"id. When a run with that id exists, none is started: if it has ended, its\n"
	"result is printed (exit by its status); if no live worker holds it, it is\n"
	"driven like a new run; if another live worker holds it, its current status\n"
	"is printed (exit 4). Its input is its own: the --input given is checked, not\n"
	"compared. A KEY that names a run of another workflow is refused (exit 2).\n"
	"\n"
	"--shadow starts a shadow run: write calls go through contracts and checks,\n"
	"are recorded as tool.shadowed (what would have been sent) and are not sent;\n"
	"the step gets the contract's shadow result (docs/operations.md).\n"
	"\n"
	"exit: 0 succeeded, 1 failed, 2 bad usage/spec/input (nothing started),\n"
	"3 escalated, 4 waiting, 5 cancelled, 6 needs_review, 7 stopped by a signal.\n"
	"\n"
	"SIGTERM or SIGINT stops it gracefully: no further step is taken and nothing\n"
	"new is sent; calls already out get --grace seconds (default 10) to finish,\n"
	"calls still out then are cut short and stay in doubt (a resume sends them\n"
	"again with the same idempotency key, or stops in needs_review when the tool\n"
	"does not honour keys); what happened is committed, the run's lease is\n"
	"released, its status (running or waiting) printed, and rein exits 7.\n"
	"'rein resume RUN' (or --all) goes on with it. A second signal kills at once.\n";

/* --grace SECONDS: the graceful stop's grace period (run, resume). */
static bool parse_grace(const char *arg)
{
	return parse_seconds(arg, &grace_ms);
}

static int drain_results(rein_runner *rn, bool all, int *worst)
{
	rein_run_result r;
	int n = 0;
	while (rein_runner_result(rn, &r)) {
		print_result(&r);
		int ex = exit_for(r.status);
		if (all)
			ex = (r.status == REIN_RUN_FAILED || r.status == REIN_RUN_NEEDS_REVIEW) ? 1 : 0;
		if (*worst == EXIT_OK)
			*worst = ex;
		rein_run_result_clear(&r);
		n++;
	}
	return n;
}

/* rein run --id KEY: starts run KEY, or takes the one that exists (see
 * rein_runner_start_once), and drives it; the exit code. */
static int run_keyed(worker *w, const rein_spec *spec, const json_t *input, const char *key,
		     const char *where)
{
	rein_err e = {0};
	rein_run_row row = {0};
	bool existed = false;
	int ex = EXIT_FAILED;
	int rc = rein_runner_start_once(w->rn, spec, input, key, &existed, &e);
	if (rc == REIN_ECONFLICT && existed &&
	    rein_store_run_get(w->st, key, &row, NULL) == REIN_OK) {
		/* another live worker advances it: its status as it is now */
		rein_run_result r = {.status = row.status, .wake_at = row.wake_at};
		snprintf(r.id, sizeof r.id, "%s", row.id);
		print_result(&r);
		fprintf(stderr, "%s run: %s\n", prog, e.msg);
		ex = EXIT_WAITING;
		goto out;
	}
	if (rc != REIN_OK) {
		if (e.code == REIN_ESCHEMA)
			print_input_errors(where, e.msg);
		else
			fprintf(stderr, "%s run: %s\n", prog, e.msg);
		ex = rc == REIN_ESCHEMA || rc == REIN_EINVAL ? EXIT_USAGE : EXIT_FAILED;
		goto out;
	}
	if (isatty(2))
		fprintf(stderr, "run %s %s (%s)\n", key, existed ? "exists" : "started", spec->name);
	if (rein_runner_drive(w->rn, &e) != REIN_OK) {
		fprintf(stderr, "%s run: %s\n", prog, e.msg);
		goto out;
	}
	ex = EXIT_OK;
	drain_results(w->rn, false, &ex);
	if (rein_runner_stopped(w->rn)) {
		fprintf(stderr, "%s run: stopped by a signal; run %s released\n", prog, key);
		ex = EXIT_STOPPED;
	}
out:
	rein_run_row_clear(&row);
	rein_err_clear(&e);
	return ex;
}

static int cmd_run(int argc, char **argv, const char *db)
{
	static const struct option lo[] = {{"input", required_argument, 0, 'i'},
					   {"max-wait", required_argument, 0, 'w'},
					   {"grace", required_argument, 0, 'g'},
					   {"id", required_argument, 0, 'k'},
					   {"shadow", no_argument, 0, 'S'},
					   {"db", required_argument, 0, 'd'},
					   {"as", required_argument, 0, 'A'},
					   {"role", required_argument, 0, 'R'},
					   {"tenant", required_argument, 0, 'T'},
					   {"help", no_argument, 0, 'h'},
					   {0, 0, 0, 0}};
	const char *input_arg = NULL, *key = NULL, *as = NULL, *tenant = NULL;
	int64_t max_wait = 60000;
	run_roles = json_array();
	atexit(requester_free);
	GETOPT_LOOP(argc, argv, ":", lo, "run")
	{
	case 'A': as = optarg; break;
	case 'R': json_array_append_new(run_roles, json_string(optarg)); break;
	case 'T': tenant = optarg; break;
	case 'i': input_arg = optarg; break;
	case 'k': key = optarg; break;
	case 'S': run_shadow = true; break;
	case 'w':
		if (!parse_seconds(optarg, &max_wait))
			return usage_error("run", "--max-wait needs seconds, not '%s'", optarg);
		break;
	case 'g':
		if (!parse_grace(optarg))
			return usage_error("run", "--grace needs seconds, not '%s'", optarg);
		break;
	case 'd': db = optarg; break;
	case 'h': fputs(usage_run, stdout); return EXIT_OK;
	BAD_OPTION("run", argv);
	}
	if (as == NULL)
		as = getenv("USER") && *getenv("USER") ? getenv("USER") : "unknown";
	run_requester = json_pack("{s:s, s:O, s:s?}", "user", as, "roles", run_roles, "tenant", tenant);
	if (optind != argc - 1)
		return usage_error("run", "%s", "needs exactly one workflow directory");
	worker w = {0};
	rein_spec *spec = NULL;
	json_t *input = NULL;
	rein_err e = {0};
	int ex;
	char where[512], id[64], pick[64];
	bool candidate = false;
	int deployed = 0; /* 1: NAME is deployed (cmd_deploy.c), pick its start key */
	if ((ex = worker_script(&w, "run")) != EXIT_OK)
		goto out;
	if ((deployed = rein_cli_deployed_spec(argv[optind], db_path(db), key, w.sb, &spec, pick,
					       &candidate)) < 0) {
		ex = EXIT_USAGE;
		goto out;
	}
	if (!deployed && (ex = load_spec(argv[optind], w.sb, &spec)) != EXIT_OK)
		goto out;
	if (deployed && (run_deployment = json_pack("{s:s, s:s}", "name", spec->name, "role",
						    candidate ? "candidate" : "stable")) == NULL) {
		ex = EXIT_FAILED;
		goto out;
	}
	if ((input = read_input(input_arg, where, sizeof where, &e)) == NULL) {
		input_error(where, &e);
		ex = EXIT_USAGE;
		goto out;
	}
	if ((ex = worker_open(&w, db, true, max_wait, "run")) != EXIT_OK)
		goto out;
	ex = EXIT_FAILED;
	if (key) {
		ex = run_keyed(&w, spec, input, key, where);
		goto out;
	}
	/* rein_runner_start checks the input against the input schema */
	if (rein_runner_start(w.rn, spec, input, deployed ? pick : NULL, id, &e) != REIN_OK ||
	    rein_runner_flush(w.rn, &e) != REIN_OK) { /* the start is acknowledged: durable */
		if (e.code == REIN_ESCHEMA) {
			print_input_errors(where, e.msg);
			ex = EXIT_USAGE; /* nothing started */
		} else {
			fprintf(stderr, "%s run: %s\n", prog, e.msg);
		}
		goto out;
	}
	if (isatty(2))
		fprintf(stderr, "run %s started (%s, version %.12s)\n", id, spec->name, spec->version);
	if (rein_runner_drive(w.rn, &e) != REIN_OK) {
		fprintf(stderr, "%s run: %s\n", prog, e.msg);
		goto out;
	}
	ex = EXIT_OK;
	drain_results(w.rn, false, &ex);
	if (rein_runner_stopped(w.rn)) {
		fprintf(stderr, "%s run: stopped by a signal; run %s released ('rein resume %s' "
				"goes on)\n", prog, id, id);
		ex = EXIT_STOPPED;
	}
out:
	if (deployed > 0 && w.st != NULL) /* the candidate's rollback rule, after its runs */
		rein_cli_deploy_after(w.st, spec->name);
	worker_close(&w); /* the runner before the spec its runs use */
	json_decref(input);
	rein_spec_free(spec);
	rein_err_clear(&e); /* a refused input leaves its schema errors attached */
	return ex;
}

static const char usage_resume[] =
	"usage: rein resume [RUN | --all] [--max-wait SECONDS] [--grace SECONDS] [--db PATH]\n"
	"\n"
	"Advances a run that is due (its timer has come) or abandoned (its worker\n"
	"died, or its lease expired), rebuilding it from its events. With --all, every\n"
	"run that is due within --max-wait (default 60 s) or abandoned; one JSON object\n"
	"per line, exit 0 when none failed. A run held by a live worker is skipped\n"
	"(--all) or an error (RUN). Exit codes for one RUN are those of 'rein run'.\n"
	"The database must exist (a store that does not exist holds nothing to resume).\n"
	"SIGTERM/SIGINT stop it gracefully as 'rein run' (see there; exit 7).\n";

static void resume_error(void *ud, const char *run, const char *why)
{
	(void)ud;
	fprintf(stderr, "%s resume: %s: %s\n", prog, run, why);
}

static int cmd_resume(int argc, char **argv, const char *db)
{
	static const struct option lo[] = {{"all", no_argument, 0, 'a'},
					   {"max-wait", required_argument, 0, 'w'},
					   {"grace", required_argument, 0, 'g'},
					   {"db", required_argument, 0, 'd'},
					   {"help", no_argument, 0, 'h'},
					   {0, 0, 0, 0}};
	bool all = false;
	int64_t max_wait = 60000;
	GETOPT_LOOP(argc, argv, ":", lo, "resume")
	{
	case 'a': all = true; break;
	case 'w':
		if (!parse_seconds(optarg, &max_wait))
			return usage_error("resume", "--max-wait needs seconds, not '%s'", optarg);
		break;
	case 'g':
		if (!parse_grace(optarg))
			return usage_error("resume", "--grace needs seconds, not '%s'", optarg);
		break;
	case 'd': db = optarg; break;
	case 'h': fputs(usage_resume, stdout); return EXIT_OK;
	BAD_OPTION("resume", argv);
	}
	if (all == (optind < argc) || optind < argc - 1)
		return usage_error("resume", "%s", "needs one RUN or --all");
	worker w = {0};
	rein_err e = {0};
	/* resume only advances runs a store holds: it never creates one */
	int ex = worker_open(&w, db, false, max_wait, "resume"), errors = 0;
	if (ex != EXIT_OK)
		goto out;
	rein_runner *rn = w.rn;
	if (all) {
		if (rein_runner_resume_due(rn, rein_clock_now(&rein_clock_system) + max_wait,
					   resume_error, NULL, &errors, &e) != REIN_OK)
			goto err;
	} else if (rein_runner_resume(rn, argv[optind], &e) != REIN_OK) {
		goto err;
	}
	if (rein_runner_drive(rn, &e) != REIN_OK)
		goto err;
	ex = EXIT_OK;
	drain_results(rn, all, &ex);
	if (errors && ex == EXIT_OK)
		ex = EXIT_FAILED;
	if (rein_runner_stopped(rn)) {
		fprintf(stderr, "%s resume: stopped by a signal; the runs were released\n", prog);
		ex = EXIT_STOPPED;
	}
	goto out;
err:
	fprintf(stderr, "%s resume: %s\n", prog, e.msg);
	ex = e.code == REIN_ENOTFOUND ? EXIT_USAGE : EXIT_FAILED;
out:
	worker_close(&w);
	return ex;
}

/*
 * The arguments of a command that takes one RUN and --db: returns -1 when the
 * command should go on (id set), else the exit code (--help, bad usage).
 */
static int one_run_args(int argc, char **argv, const char *cmd, const char *usage,
			const char **db, const char **id)
{
	static const struct option lo[] = {{"db", required_argument, 0, 'd'},
					   {"help", no_argument, 0, 'h'},
					   {0, 0, 0, 0}};
	GETOPT_LOOP(argc, argv, ":", lo, cmd)
	{
	case 'd': *db = optarg; break;
	case 'h': fputs(usage, stdout); return EXIT_OK;
	BAD_OPTION(cmd, argv);
	}
	if (optind != argc - 1)
		return usage_error(cmd, "%s", "needs exactly one RUN");
	*id = argv[optind];
	return -1;
}

/* ---- cancel ---------------------------------------------------------------- */

static const char usage_cancel[] =
	"usage: rein cancel RUN [--db PATH]\n"
	"\n"
	"Cancels a run that has not ended. If no live worker holds it, it is cancelled\n"
	"at once (status cancelled, exit 5); if one does, the request is recorded and\n"
	"that worker ends the run at its next commit (exit 0). A run that has already\n"
	"ended is left as it is (its status is printed, exit by that status).\n";

static int cmd_cancel(int argc, char **argv, const char *db)
{
	const char *id = NULL;
	int ex0 = one_run_args(argc, argv, "cancel", usage_cancel, &db, &id);
	if (ex0 >= 0)
		return ex0;
	rein_script *sb = NULL;
	rein_store *st = NULL;
	rein_run_result r = {0};
	rein_err e = {0};
	bool requested = false;
	rein_keyring *keys = NULL;
	rein_runner_opts o = {.on_commit = isatty(2) ? progress : NULL};
	int ex = EXIT_FAILED;
	if (rein_script_new(&sb) != REIN_OK) {
		fprintf(stderr, "%s cancel: out of memory\n", prog);
		goto out;
	}
	if ((ex = open_store(db_path(db), false, &st)) != EXIT_OK)
		goto out;
	ex = EXIT_FAILED;
	if (rein_cli_keyring(db_path(db), &keys) != 0)
		goto out;
	o.keys = keys;
	if (rein_cancel_request(st, sb, &o, id, &r, &requested, &e) != REIN_OK) {
		fprintf(stderr, "%s cancel: %s\n", prog, e.msg);
		ex = e.code == REIN_ENOTFOUND ? EXIT_USAGE : EXIT_FAILED;
		goto out;
	}
	if (requested) {
		printf("{\"run\":\"%s\",\"status\":\"running\",\"cancel_requested\":true}\n", id);
		ex = EXIT_OK;
	} else {
		print_result(&r);
		ex = exit_for(r.status);
	}
out:
	rein_run_result_clear(&r);
	rein_store_close(st);
	rein_script_free(sb);
	rein_keyring_close(keys);
	return ex;
}

/* ---- signal ---------------------------------------------------------------- */

static const char usage_signal[] =
	"usage: rein signal RUN NAME [JSON|@FILE|@-] [--id ID] [--db PATH]\n"
	"\n"
	"Sends the signal NAME with the JSON data (default null) to RUN, for its\n"
	"wait step { wait: { signal: NAME } } (docs/spec.md). The data is checked\n"
	"first against the run's workflow: a wait step for NAME must exist, and the\n"
	"data must match its schema (errors on stderr, exit 2, nothing sent). The\n"
	"signal is recorded durably in the run's inbox and taken exactly once per\n"
	"--id (default: a new random id): sending the same id again changes nothing\n"
	"(\"duplicate\": true). A signal sent before the run reaches its wait is kept\n"
	"until the wait takes it. The worker holding the run reads it within a\n"
	"second; a run parked outside any process is taken up by 'rein resume --all'.\n"
	"Prints {run, signal, id, duplicate}.\n"
	"\n"
	"exit: 0 sent (or a duplicate), 1 an error, 2 bad usage, an unknown run, a run\n"
	"that has ended, no wait step for NAME, or data that does not match.\n";

static int cmd_signal(int argc, char **argv, const char *db)
{
	static const struct option lo[] = {{"id", required_argument, 0, 'i'},
					   {"db", required_argument, 0, 'd'},
					   {"help", no_argument, 0, 'h'},
					   {0, 0, 0, 0}};
	const char *sig_id = NULL;
	GETOPT_LOOP(argc, argv, ":", lo, "signal")
	{
	case 'i': sig_id = optarg; break;
	case 'd': db = optarg; break;
	case 'h': fputs(usage_signal, stdout); return EXIT_OK;
	BAD_OPTION("signal", argv);
	}
	if (optind + 2 != argc && optind + 3 != argc)
		return usage_error("signal", "%s", "needs RUN NAME [JSON]");
	if (sig_id && (sig_id[0] == '\0' || strlen(sig_id) > 63))
		return usage_error("signal", "--id needs 1 to 63 characters, not '%s'", sig_id);
	const char *id = argv[optind], *name = argv[optind + 1];
	const char *arg = optind + 3 == argc ? argv[optind + 2] : NULL;
	rein_script *sb = NULL;
	rein_store *st = NULL;
	json_t *data = NULL;
	rein_err e = {0};
	char where[512], sid[64];
	bool dup = false;
	int ex = EXIT_FAILED;
	if (arg && (data = read_input(arg, where, sizeof where, &e)) == NULL) {
		fprintf(stderr, "%s: the signal's data is not JSON: %s\n", where, e.msg);
		ex = EXIT_USAGE;
		goto out;
	}
	if (rein_script_new(&sb) != REIN_OK) {
		fprintf(stderr, "%s signal: out of memory\n", prog);
		goto out;
	}
	if ((ex = open_store(db_path(db), false, &st)) != EXIT_OK)
		goto out;
	const char *user = getenv("USER");
	char sender[96];
	snprintf(sender, sizeof sender, "cli:%s", user && *user ? user : "unknown");
	if (rein_signal_send(st, sb, id, name, data, sig_id, sender, sid, &dup, &e) != REIN_OK) {
		fprintf(stderr, "%s signal: %s\n", prog, e.msg);
		ex = e.code == REIN_ENOTFOUND || e.code == REIN_EINVAL || e.code == REIN_ESCHEMA
			     ? EXIT_USAGE
			     : EXIT_FAILED;
		goto out;
	}
	json_t *o = json_pack("{s:s, s:s, s:s, s:b}", "run", id, "signal", name, "id", sid,
			      "duplicate", dup);
	char *txt = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	ex = txt ? EXIT_OK : EXIT_FAILED;
	if (txt)
		puts(txt);
	rein_free(txt);
	json_decref(o);
out:
	rein_err_clear(&e);
	json_decref(data);
	rein_store_close(st);
	rein_script_free(sb);
	return ex;
}

/* ---- retry ----------------------------------------------------------------- */

static const char usage_retry[] =
	"usage: rein retry RUN --from STEP [--max-wait SECONDS] [--db PATH]\n"
	"\n"
	"Starts a new run that retries RUN (which has ended) from its step STEP and\n"
	"drives it like 'rein run'. The new run reuses what RUN recorded before STEP:\n"
	"its log begins with RUN's events up to STEP's first visit (copied), so no\n"
	"model or tool call made before STEP is made again. It runs RUN's workflow\n"
	"VERSION, not the directory as it is now. Its run.started records\n"
	"retry_of {run, from} ('rein show' lists it). Prints the result as 'rein run'.\n"
	"\n"
	"exit: as 'rein run'; 2 also for an unknown RUN, a RUN that has not ended, or\n"
	"a STEP it does not have or that never ran in it (nothing started).\n";

static int cmd_retry(int argc, char **argv, const char *db)
{
	static const struct option lo[] = {{"from", required_argument, 0, 'f'},
					   {"max-wait", required_argument, 0, 'w'},
					   {"db", required_argument, 0, 'd'},
					   {"help", no_argument, 0, 'h'},
					   {0, 0, 0, 0}};
	const char *from = NULL;
	int64_t max_wait = 60000;
	GETOPT_LOOP(argc, argv, ":", lo, "retry")
	{
	case 'f': from = optarg; break;
	case 'w':
		if (!parse_seconds(optarg, &max_wait))
			return usage_error("retry", "--max-wait needs seconds, not '%s'", optarg);
		break;
	case 'd': db = optarg; break;
	case 'h': fputs(usage_retry, stdout); return EXIT_OK;
	BAD_OPTION("retry", argv);
	}
	if (optind != argc - 1)
		return usage_error("retry", "%s", "needs exactly one RUN");
	if (from == NULL)
		return usage_error("retry", "%s", "needs --from STEP");
	worker w = {0};
	rein_err e = {0};
	char id[64];
	int ex = worker_open(&w, db, false, max_wait, "retry");
	if (ex != EXIT_OK)
		goto out;
	ex = EXIT_FAILED;
	if (rein_runner_retry(w.rn, argv[optind], from, id, &e) != REIN_OK ||
	    rein_runner_flush(w.rn, &e) != REIN_OK) { /* the start is durable */
		fprintf(stderr, "%s retry: %s\n", prog, e.msg);
		ex = e.code == REIN_EINVAL || e.code == REIN_ENOTFOUND ? EXIT_USAGE : EXIT_FAILED;
		goto out;
	}
	if (isatty(2))
		fprintf(stderr, "run %s started (a retry of %s from '%s')\n", id, argv[optind], from);
	if (rein_runner_drive(w.rn, &e) != REIN_OK) {
		fprintf(stderr, "%s retry: %s\n", prog, e.msg);
		goto out;
	}
	ex = EXIT_OK;
	drain_results(w.rn, false, &ex);
out:
	worker_close(&w);
	rein_err_clear(&e);
	return ex;
}

/* ---- show, events, runs ------------------------------------------------------ */

static int print_event(void *ud, const rein_event_row *ev)
{
	(void)ud;
	json_t *o = rein_event_row_json(ev);
	char *s = o ? rein_json_dump_flags(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	if (s)
		puts(s);
	rein_free(s);
	json_decref(o);
	return 0;
}

typedef struct show_ctx {
	json_t *steps; /* name → {completed, failed, last_at} */
	json_t *events;
} show_ctx;

static int collect_event(void *ud, const rein_event_row *ev)
{
	show_ctx *c = ud;
	json_array_append_new(c->events, rein_event_row_json(ev));
	return 0;
}

static const char usage_show[] =
	"usage: rein show RUN [--json] [--db PATH]\n"
	"\n"
	"Shows a run: status, output, its timer (wake_at) when waiting, and its\n"
	"events, each payload cut to 100 characters (a cut one ends with \"...\"; a\n"
	"purged one reads {\"purged\":true}). --json prints one JSON object: the run\n"
	"(as in 'rein runs --json', with event_count) and its events as \"events\".\n";

enum { SHOW_WIDTH = 100 };

static int cmd_show(int argc, char **argv, const char *db)
{
	static const struct option lo[] = {{"json", no_argument, 0, 'j'},
					   {"db", required_argument, 0, 'd'},
					   {"help", no_argument, 0, 'h'},
					   {0, 0, 0, 0}};
	bool as_json = false;
	GETOPT_LOOP(argc, argv, ":", lo, "show")
	{
	case 'j': as_json = true; break;
	case 'd': db = optarg; break;
	case 'h': fputs(usage_show, stdout); return EXIT_OK;
	BAD_OPTION("show", argv);
	}
	if (optind != argc - 1)
		return usage_error("show", "%s", "needs exactly one RUN");
	rein_store *st = NULL;
	rein_run_row row = {0};
	rein_err e = {0};
	show_ctx c = {.events = json_array()};
	json_t *o = NULL;
	int ex = EXIT_FAILED;
	if ((ex = open_store(db_path(db), false, &st)) != EXIT_OK)
		goto out;
	ex = EXIT_FAILED;
	if (rein_store_run_get(st, argv[optind], &row, &e) != REIN_OK ||
	    rein_store_events_load(st, row.id, collect_event, &c, &e) != REIN_OK) {
		fprintf(stderr, "%s show: %s\n", prog, e.msg);
		ex = e.code == REIN_ENOTFOUND ? EXIT_USAGE : EXIT_FAILED;
		goto out;
	}
	o = rein_run_row_json(&row);
	/* a retry names the run and step it retries (its run.started) */
	json_t *retry_of = json_object_get(json_object_get(json_array_get(c.events, 0), "data"),
					   "retry_of");
	if (retry_of)
		json_object_set(o, "retry_of", retry_of);
	if (as_json) {
		json_object_set(o, "events", c.events);
		char *s = rein_json_dump_flags(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		if (s)
			puts(s);
		rein_free(s);
	} else {
		printf("run       %s\nworkflow  %s (version %.12s)\nstatus    %s\n", row.id,
		       row.workflow, row.version, rein_status_name(row.status));
		if (row.reason)
			printf("reason    %s\n", row.reason);
		if (retry_of)
			printf("retry_of  %s from step '%s'\n",
			       json_string_value(json_object_get(retry_of, "run")),
			       json_string_value(json_object_get(retry_of, "from")));
		if (row.output)
			printf("output    %s\n", row.output);
		if (row.status == REIN_RUN_WAITING && row.wake_at) {
			char t[32];
			rein_time_format(row.wake_at, t);
			printf("wake_at   %s\n", t);
		}
		printf("events    %lld\n\n", (long long)row.last_seq);
		size_t i;
		json_t *ev;
		json_array_foreach(c.events, i, ev)
		{
			const char *step = json_string_value(json_object_get(ev, "step"));
			char *data = rein_json_dump_flags(json_object_get(ev, "data"), JSON_COMPACT | JSON_ENCODE_ANY);
			bool cut = data && strlen(data) > SHOW_WIDTH;
			printf("%4lld  %s  %-16s %-16s %.*s%s\n",
			       (long long)json_integer_value(json_object_get(ev, "seq")),
			       json_string_value(json_object_get(ev, "at")),
			       json_string_value(json_object_get(ev, "type")), step ? step : "-",
			       cut ? SHOW_WIDTH - 3 : SHOW_WIDTH, data ? data : "", cut ? "..." : "");
			rein_free(data);
		}
	}
	ex = EXIT_OK;
out:
	json_decref(o);
	json_decref(c.events);
	rein_run_row_clear(&row);
	rein_store_close(st);
	return ex;
}

static const char usage_events[] =
	"usage: rein events RUN [--follow] [--db PATH]\n"
	"\n"
	"Prints a run's events in order, one JSON object per line:\n"
	"{\"seq\", \"type\", \"step\", \"at\", \"data\", \"hash\"} (a purged payload:\n"
	"\"data\": {\"purged\": true} and \"purged\": true). --follow keeps printing new\n"
	"events as they are committed (polling the store) and exits when the run ends\n"
	"(exit by its status, as 'rein run'); without it, exit 0.\n";

typedef struct follow_ctx {
	int64_t after; /* the last seq printed */
} follow_ctx;

static int print_new_event(void *ud, const rein_event_row *ev)
{
	follow_ctx *f = ud;
	if (ev->seq <= f->after)
		return 0;
	f->after = ev->seq;
	print_event(NULL, ev);
	fflush(stdout);
	return 0;
}

static bool ended(int status) { return status != REIN_RUN_RUNNING && status != REIN_RUN_WAITING; }

static int cmd_events(int argc, char **argv, const char *db)
{
	static const struct option lo[] = {{"follow", no_argument, 0, 'f'},
					   {"db", required_argument, 0, 'd'},
					   {"help", no_argument, 0, 'h'},
					   {0, 0, 0, 0}};
	bool follow = false;
	GETOPT_LOOP(argc, argv, ":f", lo, "events")
	{
	case 'f': follow = true; break;
	case 'd': db = optarg; break;
	case 'h': fputs(usage_events, stdout); return EXIT_OK;
	BAD_OPTION("events", argv);
	}
	if (optind != argc - 1)
		return usage_error("events", "%s", "needs exactly one RUN");
	const char *id = argv[optind];
	rein_store *st = NULL;
	rein_run_row row = {0};
	rein_err e = {0};
	follow_ctx f = {0};
	int ex = open_store(db_path(db), false, &st);
	if (ex != EXIT_OK)
		goto out;
	for (;;) {
		/* the row first: when it says ended, every event is already committed */
		rein_run_row_clear(&row);
		if (rein_store_run_get(st, id, &row, &e) != REIN_OK ||
		    rein_store_events_load(st, row.id, print_new_event, &f, &e) != REIN_OK) {
			fprintf(stderr, "%s events: %s\n", prog, e.msg);
			ex = e.code == REIN_ENOTFOUND ? EXIT_USAGE : EXIT_FAILED;
			goto out;
		}
		if (!follow || ended(row.status))
			break;
		struct timespec ts = {0, 200 * 1000 * 1000}; /* poll every 0.2 s */
		nanosleep(&ts, NULL);
	}
	ex = follow ? exit_for(row.status) : EXIT_OK;
out:
	rein_run_row_clear(&row);
	rein_store_close(st);
	return ex;
}

static const char usage_runs[] =
	"usage: rein runs [--status S] [--workflow W] [--since TIME] [--limit N] [--json]\n"
	"                 [--db PATH]\n"
	"\n"
	"Lists runs, newest first. --status keeps one status (running, waiting,\n"
	"succeeded, failed, escalated, cancelled, needs_review); --workflow one workflow\n"
	"(by name); --since the runs created at or after TIME (2026-01-31T12:00:00Z, or\n"
	"an age: 90s, 30m, 2h, 7d); --limit at most N runs. --json prints a JSON array of\n"
	"run objects.\n";

typedef struct list_ctx {
	json_t *arr;          /* --json: the array, else NULL */
	const char *workflow; /* NULL: any */
	int64_t since;        /* 0: any */
	long limit, n;        /* 0: no limit */
} list_ctx;

static int list_one(void *ud, const rein_run_row *row)
{
	list_ctx *l = ud;
	if (l->since && row->created_at < l->since)
		return 1; /* newest first: every later row is older */
	if (l->workflow && (row->workflow == NULL || strcmp(row->workflow, l->workflow) != 0))
		return 0;
	if (l->arr) {
		json_array_append_new(l->arr, rein_run_row_json(row));
	} else {
		char t[32];
		rein_time_format(row->updated_at, t);
		printf("%-32s %-12s %-24s %s\n", row->id, rein_status_name(row->status),
		       row->workflow, t);
	}
	return l->limit && ++l->n >= l->limit ? 1 : 0;
}

/* TIME as ms since the epoch: YYYY-MM-DDTHH:MM:SS[.mmm]Z (UTC) or an age
 * (N followed by s, m, h or d) before now. */
static bool parse_since(const char *t, int64_t now, int64_t *ms)
{
	char *end;
	struct tm tm = {0};
	long long v = strtoll(t, &end, 10);
	if (end != t && v >= 0 && end[0] != '\0' && end[1] == '\0' && strchr("smhd", end[0])) {
		int64_t unit = end[0] == 's' ? 1000 : end[0] == 'm' ? 60000
			       : end[0] == 'h' ? 3600000 : 86400000;
		*ms = now - (int64_t)v * unit;
		return true;
	}
	const char *rest = strptime(t, "%Y-%m-%dT%H:%M:%S", &tm);
	if (rest == NULL)
		return false;
	long frac = 0;
	if (rest[0] == '.') {
		frac = strtol(rest + 1, &end, 10);
		if (end - (rest + 1) != 3)
			return false;
		rest = end;
	}
	if (strcmp(rest, "Z") != 0 && strcmp(rest, "") != 0)
		return false;
	*ms = (int64_t)timegm(&tm) * 1000 + frac;
	return true;
}

int rein_cli_print_json(json_t *j)
{
	char *s = j ? rein_json_dump(j) : NULL;
	int ex = s ? 0 : 1;
	if (s)
		printf("%s\n", s);
	else
		fprintf(stderr, "rein: out of memory\n");
	rein_free(s);
	json_decref(j);
	return ex;
}

bool rein_cli_parse_time(const char *t, int64_t now, int64_t *ms)
{
	return parse_since(t, now, ms);
}

static int cmd_runs(int argc, char **argv, const char *db)
{
	static const struct option lo[] = {{"status", required_argument, 0, 's'},
					   {"workflow", required_argument, 0, 'W'},
					   {"since", required_argument, 0, 'S'},
					   {"limit", required_argument, 0, 'n'},
					   {"json", no_argument, 0, 'j'},
					   {"db", required_argument, 0, 'd'},
					   {"help", no_argument, 0, 'h'},
					   {0, 0, 0, 0}};
	int status = -1;
	bool as_json = false;
	list_ctx l = {0};
	char *end;
	GETOPT_LOOP(argc, argv, ":", lo, "runs")
	{
	case 's':
		if ((status = rein_status_parse(optarg)) < 0)
			return usage_error("runs", "unknown status '%s'", optarg);
		break;
	case 'W': l.workflow = optarg; break;
	case 'S':
		if (!parse_since(optarg, rein_clock_now(&rein_clock_system), &l.since))
			return usage_error("runs", "--since needs a time (2026-01-31T12:00:00Z) or "
						   "an age (30m), not '%s'", optarg);
		break;
	case 'n':
		l.limit = strtol(optarg, &end, 10);
		if (*optarg == '\0' || *end != '\0' || l.limit < 1)
			return usage_error("runs", "--limit needs a count >= 1, not '%s'", optarg);
		break;
	case 'j': as_json = true; break;
	case 'd': db = optarg; break;
	case 'h': fputs(usage_runs, stdout); return EXIT_OK;
	BAD_OPTION("runs", argv);
	}
	if (optind != argc)
		return usage_error("runs", "unexpected argument '%s'", argv[optind]);
	rein_store *st = NULL;
	rein_err e = {0};
	l.arr = as_json ? json_array() : NULL;
	int ex = open_store(db_path(db), false, &st);
	if (ex != EXIT_OK)
		goto out;
	ex = EXIT_FAILED;
	if (!as_json)
		printf("%-32s %-12s %-24s %s\n", "RUN", "STATUS", "WORKFLOW", "UPDATED");
	if (rein_store_run_each(st, status, list_one, &l, &e) != REIN_OK) {
		fprintf(stderr, "%s runs: %s\n", prog, e.msg);
		goto out;
	}
	if (l.arr) {
		char *js = rein_json_dump_flags(l.arr, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		if (js)
			puts(js);
		rein_free(js);
	}
	ex = EXIT_OK;
out:
	json_decref(l.arr);
	rein_store_close(st);
	return ex;
}

/* ---- audit ----------------------------------------------------------------- */

static const char usage_audit[] =
	"usage: rein audit verify [RUN] [--db PATH]\n"
	"       rein audit export RUN [--format json|md] [--db PATH]\n"
	"\n"
	"Recomputes the hash chain of one run, or of every run: each event's hash\n"
	"from its fields, each link to the previous event, each payload against its\n"
	"hash, the run's recorded last seq and hash, its status, output and reason\n"
	"against its run.ended event, and its workflow bundle against its version;\n"
	"then the global anchor chain (docs/audit.md): each anchor's hash and link,\n"
	"every anchored head a point of its run's chain, every run that ended or\n"
	"suspended anchored at its head, and (without RUN) every anchored run still\n"
	"in the store. Without RUN also checks the store itself (transactions lost\n"
	"with a deleted WAL file, a damaged database file). Exit 0 when all verify;\n"
	"exit 1 naming the run and the sequence number of the first mismatch\n"
	"(MISMATCH), a bundle that was changed (BUNDLE, once per run using it), an\n"
	"anchor that does not hold (ANCHOR, with the anchor's number) or a store\n"
	"problem (STORE). 'audit export' prints one run's audit record.\n";

static void audit_bad(void *ud, const char *run, int64_t bad, const char *why)
{
	(void)ud;
	/* the message repeats what the line says first: "run ID: [seq N: ]" */
	size_t n = run ? strlen(run) : 0;
	if (run && strncmp(why, "run ", 4) == 0 && strncmp(why + 4, run, n) == 0 &&
	    strncmp(why + 4 + n, ": ", 2) == 0)
		why += 6 + n;
	char seq[32];
	int k = snprintf(seq, sizeof seq, "seq %lld: ", (long long)bad);
	if (bad && strncmp(why, seq, (size_t)k) == 0)
		why += k;
	if (run == NULL && strncmp(why, "anchor ", 7) == 0)
		printf("ANCHOR %s\n", why + 7);
	else if (run == NULL)
		printf("STORE %s\n", why);
	else if (strncmp(why, "anchor", 6) == 0)
		printf("ANCHOR run %s seq %lld: %s\n", run, (long long)bad, why);
	else if (strstr(why, "stored bundle of workflow version"))
		printf("BUNDLE run %s: %s\n", run, why);
	else if (bad)
		printf("MISMATCH run %s seq %lld: %s\n", run, (long long)bad, why);
	else
		printf("ERROR run %s: %s\n", run, why);
}

static int cmd_audit(int argc, char **argv, const char *db)
{
	static const struct option lo[] = {{"db", required_argument, 0, 'd'},
					   {"help", no_argument, 0, 'h'},
					   {0, 0, 0, 0}};
	if (argc > 1 && strcmp(argv[1], "export") == 0)
		return rein_cmd_audit_export(argc - 1, argv + 1, db ? db : db_path(NULL));
	GETOPT_LOOP(argc, argv, ":", lo, "audit")
	{
	case 'd': db = optarg; break;
	case 'h': fputs(usage_audit, stdout); return EXIT_OK;
	BAD_OPTION("audit", argv);
	}
	if (optind >= argc || strcmp(argv[optind], "verify") != 0)
		return usage_error("audit", "%s", "the subcommands are 'verify' and 'export'");
	optind++;
	if (optind < argc - 1)
		return usage_error("audit", "unexpected argument '%s'", argv[optind + 1]);
	rein_store *st = NULL;
	rein_err e = {0};
	rein_verify_stats c = {0};
	int ex = open_store(db_path(db), false, &st);
	if (ex != EXIT_OK)
		goto out;
	ex = EXIT_FAILED;
	if (optind == argc - 1) {
		rein_run_row row = {0};
		int64_t bad = 0;
		if (rein_store_run_get(st, argv[optind], &row, &e) != REIN_OK) {
			fprintf(stderr, "%s audit: %s\n", prog, e.msg);
			ex = EXIT_USAGE;
			goto out;
		}
		(void)bad;
		rein_err_clear(&e);
		rein_run_row_clear(&row);
		if (rein_store_verify_one(st, argv[optind], audit_bad, NULL, &c, &e) != REIN_OK) {
			fprintf(stderr, "%s audit: %s\n", prog, e.msg);
			goto out;
		}
	} else if (rein_store_verify_all(st, audit_bad, NULL, &c, &e) != REIN_OK) {
		fprintf(stderr, "%s audit: %s\n", prog, e.msg);
		goto out;
	}
	if (c.bad == 0 && c.store_problems == 0 && c.anchor_problems == 0) {
		char head[2 * REIN_HASH_LEN + 1];
		rein_hex(c.anchor_head, REIN_HASH_LEN, head);
		printf("ok: %d run(s), %lld event(s) verified, %lld anchor(s); anchor head %s\n",
		       c.runs, (long long)c.events, (long long)c.anchors, head);
		ex = EXIT_OK;
	}
out:
	rein_store_close(st);
	return ex;
}

/* ---- main -------------------------------------------------------------------- */

/* ---- review ---------------------------------------------------------------- */

static const char usage_review[] =
	"usage: rein review RUN (--done JSON|@FILE | --retry | --fail REASON) [--as USER]\n"
	"                   [--max-wait SECONDS] [--db PATH]\n"
	"\n"
	"Resolves a run that stopped in needs_review over a tool call whose outcome is\n"
	"unknown (its output is the evidence: tool, key, args, attempts, last_error):\n"
	"  --done JSON   you checked: the effect happened, with this result (it must\n"
	"                match the tool's output schema); the step completes with it\n"
	"  --retry       send the call again with the same idempotency key\n"
	"  --fail REASON the step fails with REASON and takes its on_fail\n"
	"The resolution is recorded in the run's log with who did it (--as, default\n"
	"$USER), then the run goes on and is driven like 'rein run' (same output and\n"
	"exit codes). A run that is not needs_review, or a result that does not match,\n"
	"is refused (exit 2) and nothing is recorded.\n";

static int cmd_review(int argc, char **argv, const char *db)
{
	static const struct option lo[] = {{"done", required_argument, 0, 'o'},
					   {"retry", no_argument, 0, 'r'},
					   {"fail", required_argument, 0, 'f'},
					   {"as", required_argument, 0, 'u'},
					   {"max-wait", required_argument, 0, 'w'},
					   {"db", required_argument, 0, 'd'},
					   {"help", no_argument, 0, 'h'},
					   {0, 0, 0, 0}};
	const char *done = NULL, *why = NULL, *by = getenv("USER");
	int nact = 0;
	bool retry = false;
	int64_t max_wait = 60000;
	GETOPT_LOOP(argc, argv, ":", lo, "review")
	{
	case 'o': done = optarg; nact++; break;
	case 'r': retry = true; nact++; break;
	case 'f': why = optarg; nact++; break;
	case 'u': by = optarg; break;
	case 'w':
		if (!parse_seconds(optarg, &max_wait))
			return usage_error("review", "--max-wait needs seconds, not '%s'", optarg);
		break;
	case 'd': db = optarg; break;
	case 'h': fputs(usage_review, stdout); return EXIT_OK;
	BAD_OPTION("review", argv);
	}
	if (optind != argc - 1)
		return usage_error("review", "%s", "needs exactly one RUN");
	if (nact != 1)
		return usage_error("review", "%s", "needs one of --done JSON, --retry, --fail REASON");
	if (why && *why == '\0')
		return usage_error("review", "%s", "--fail needs a reason");
	worker w = {0};
	rein_err e = {0};
	json_t *review = NULL, *result = NULL;
	char where[512];
	int ex = EXIT_USAGE;
	if (done && (result = read_input(done, where, sizeof where, &e)) == NULL) {
		fprintf(stderr, "%s: the result is not JSON: %s\n", where, e.msg);
		goto out;
	}
	review = done ? json_pack("{s:s, s:O}", "action", "done", "result", result)
	       : retry ? json_pack("{s:s}", "action", "retry")
		       : json_pack("{s:s, s:s}", "action", "fail", "reason", why);
	if (review == NULL) {
		ex = EXIT_FAILED;
		goto out;
	}
	if ((ex = worker_open(&w, db, false, max_wait, "review")) != EXIT_OK)
		goto out;
	if (rein_runner_review(w.rn, argv[optind], review, by && *by ? by : NULL, &e) != REIN_OK) {
		fprintf(stderr, "%s review: %s\n", prog, e.msg);
		ex = e.code == REIN_EINVAL || e.code == REIN_ESCHEMA || e.code == REIN_ENOTFOUND
			     ? EXIT_USAGE : EXIT_FAILED;
		goto out;
	}
	if (rein_runner_drive(w.rn, &e) != REIN_OK) {
		fprintf(stderr, "%s review: %s\n", prog, e.msg);
		ex = EXIT_FAILED;
		goto out;
	}
	ex = EXIT_OK;
	drain_results(w.rn, false, &ex);
	if (rein_runner_stopped(w.rn))
		ex = EXIT_STOPPED;
out:
	worker_close(&w);
	json_decref(review);
	json_decref(result);
	rein_err_clear(&e);
	return ex;
}

int main(int argc, char **argv)
{
	rein_init();
	const char *db = NULL;
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			fputs(usage_main, stdout);
			return EXIT_OK;
		} else if (strcmp(argv[i], "--version") == 0 || strcmp(argv[i], "-V") == 0) {
			printf("rein %s\n", REIN_VERSION);
			return EXIT_OK;
		} else if (strcmp(argv[i], "--db") == 0 && i + 1 < argc) {
			db = argv[++i];
		} else if (strncmp(argv[i], "--db=", 5) == 0) {
			db = argv[i] + 5;
		} else {
			fprintf(stderr, "%s: unknown option '%s'\n%s", prog, argv[i], usage_main);
			return EXIT_USAGE;
		}
	}
	if (i >= argc) {
		fputs(usage_main, stderr);
		return EXIT_USAGE;
	}
	const char *cmd = argv[i];
	int cargc = argc - i;
	char **cargv = argv + i;
	optind = 1;
	static const struct {
		const char *name;
		int (*fn)(int, char **, const char *);
	} cmds[] = {{"run", cmd_run},       {"resume", cmd_resume}, {"show", cmd_show},
		    {"events", cmd_events}, {"runs", cmd_runs},     {"cancel", cmd_cancel},
		    {"validate", cmd_validate}, {"audit", cmd_audit},
		    {"signal", cmd_signal}, {"retry", cmd_retry}};
	for (size_t k = 0; k < sizeof cmds / sizeof *cmds; k++)
		if (strcmp(cmd, cmds[k].name) == 0)
			return cmds[k].fn(cargc, cargv, db);
	if (strcmp(cmd, "review") == 0)
		return cmd_review(cargc, cargv, db);
	if (strcmp(cmd, "shred") == 0)
		return rein_cmd_shred(cargc, cargv, db);
	if (strcmp(cmd, "gc") == 0)
		return rein_cmd_gc(cargc, cargv, db);
	if (strcmp(cmd, "deploy") == 0)
		return rein_cmd_deploy(cargc, cargv, db);
	if (strcmp(cmd, "deployments") == 0)
		return rein_cmd_deployments(cargc, cargv, db);
	if (strcmp(cmd, "tools") == 0)
		return rein_cmd_tools(cargc, cargv);
	if (strcmp(cmd, "event-types") == 0)
		return rein_cmd_event_types(cargc, cargv);
	if (strcmp(cmd, "metrics") == 0)
		return rein_cmd_metrics(cargc, cargv, db);
	if (strcmp(cmd, "trace") == 0)
		return rein_cmd_trace(cargc, cargv, db);
	if (strcmp(cmd, "kill") == 0 || strcmp(cmd, "unkill") == 0 || strcmp(cmd, "kills") == 0)
		return rein_cmd_kill(cmd, cargc, cargv, db);
	if (strcmp(cmd, "approvals") == 0 || strcmp(cmd, "approve") == 0 || strcmp(cmd, "deny") == 0)
		return rein_cmd_approve(cmd, cargc, cargv, db);
	if (strcmp(cmd, "policy") == 0)
		return rein_cmd_policy(cargc, cargv, db_path(db));
	if (strcmp(cmd, "replay") == 0)
		return rein_cmd_replay(cargc, cargv, db);
	if (strcmp(cmd, "eval") == 0)
		return rein_cmd_eval(cargc, cargv, db);
	if (strcmp(cmd, "schema") == 0) {
		if (db)
			setenv("REIN_DB", db, 1);
		return rein_cmd_schema(cargc, cargv);
	}
	if (strcmp(cmd, "version") == 0) {
		printf("rein %s\n", REIN_VERSION);
		return EXIT_OK;
	}
	if (strcmp(cmd, "help") == 0) {
		fputs(usage_main, stdout);
		return EXIT_OK;
	}
	fprintf(stderr, "%s: unknown command '%s'\n%s", prog, cmd, usage_main);
	return EXIT_USAGE;
}
