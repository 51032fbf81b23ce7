/*
 * rein replay RUN: feeds the run's recorded events back through a fresh
 * engine (its pinned workflow version) and checks that every decision is
 * reproduced (src/runner/replay.c). Nothing is sent anywhere.
 * rein replay RUN --with DIR: the what-if (src/runner/whatif.c), printed as
 * one line per difference or as the report's JSON.
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "cli.h"
#include "runner.h"
#include "script.h"
#include "store.h"

static const char usage[] =
	"usage: rein replay RUN [--db PATH]\n"
	"       rein replay RUN --with DIR [--json] [--fail-on-diff] [--db PATH]\n"
	"\n"
	"Feeds RUN's recorded events back through the engine, with the recorded\n"
	"model and tool answers, and checks that the engine makes every recorded\n"
	"decision again (same event, step and payload at the same time); code\n"
	"steps are run again. Nothing is sent anywhere. See docs/observability.md.\n"
	"\n"
	"exit: 0 every decision reproduced, 1 a divergence (the first is printed:\n"
	"seq, type, expected, got), 2 bad usage, an unknown run or a log that\n"
	"cannot be replayed.\n"
	"\n"
	"--with DIR runs RUN's input (requester, pinned organisation policies)\n"
	"again against the workflow in DIR, writing nothing: model requests the\n"
	"recording answered are answered from it, changed ones go to DIR's\n"
	"provider; tool calls are answered from the recording, and a call it\n"
	"lacks is never sent (reported; its step fails). Prints what differs\n"
	"(decisions, tool calls, outputs, costs, policy decisions), one line per\n"
	"difference or \"same\"; --json prints the report object.\n"
	"exit: 0 it ran (differences or not; with --fail-on-diff: 1 when\n"
	"something differs), 2 bad usage, an unknown run, a workflow that does not\n"
	"load, or a changed model request with no provider to answer it.\n";

static int bad_usage(const char *what, const char *arg)
{
	fprintf(stderr, "rein replay: ");
	fprintf(stderr, what, arg);
	fprintf(stderr, "\n(see 'rein replay --help')\n");
	return 2;
}

/* One value for a line of text: compact canonical JSON (caller frees). */
static char *show(const json_t *v)
{
	return rein_json_dump_flags(v ? v : json_null(),
				    JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY | JSON_REAL_PRECISION(12));
}

/* The report as text: one line per difference, or "same". */
static void print_report(const json_t *rep)
{
	const json_t *diffs = json_object_get(rep, "differences");
	const json_t *w = json_object_get(rep, "what_if");
	size_t i;
	json_t *d;
	if (json_array_size(diffs) == 0)
		printf("same: the what-if run makes the recorded decisions\n");
	json_array_foreach((json_t *)diffs, i, d)
	{
		const char *step = json_string_value(json_object_get(d, "step"));
		char *a = show(json_object_get(d, "recorded")), *b = show(json_object_get(d, "what_if"));
		printf("%s%s%s: recorded %s, what-if %s\n", json_string_value(json_object_get(d, "kind")),
		       step ? " " : "", step ? step : "", a ? a : "?", b ? b : "?");
		rein_free(a);
		rein_free(b);
	}
	json_array_foreach(json_object_get(w, "not_recorded"), i, d)
	{
		char *a = show(json_object_get(d, "args"));
		printf("not in the recording (not sent): step %s tool %s args %s\n",
		       json_string_value(json_object_get(d, "step")),
		       json_string_value(json_object_get(d, "tool")), a ? a : "?");
		rein_free(a);
	}
	const json_t *mr = json_object_get(w, "model_requests");
	printf("model requests: %lld from the recording, %lld sent\n",
	       (long long)json_integer_value(json_object_get(mr, "from_recording")),
	       (long long)json_integer_value(json_object_get(mr, "sent")));
}

static int whatif(rein_store *st, rein_script *sb, const char *id, const char *dir, bool json,
		  bool fail_on_diff)
{
	rein_spec *spec = NULL;
	json_t *rep = NULL;
	rein_err e = {0};
	int ex = 2;
	if (rein_spec_load_dir(dir, sb, &spec, &e) != REIN_OK) {
		rein_err_print(&e, dir, stderr);
		goto out;
	}
	if (rein_whatif_run(st, sb, id, spec, NULL, &rep, &e) != REIN_OK) {
		fprintf(stderr, "rein replay: run %s --with %s: %s\n", id, dir, e.msg);
		goto out;
	}
	if (json) {
		char *t = rein_json_dump_flags(rep, JSON_INDENT(2) | JSON_SORT_KEYS);
		if (t == NULL) {
			fprintf(stderr, "rein replay: out of memory\n");
			goto out;
		}
		printf("%s\n", t);
		rein_free(t);
	} else {
		print_report(rep);
	}
	ex = fail_on_diff && !json_is_true(json_object_get(rep, "same")) ? 1 : 0;
out:
	json_decref(rep);
	rein_err_clear(&e);
	rein_spec_free(spec);
	return ex;
}

int rein_cmd_replay(int argc, char **argv, const char *db)
{
	static const struct option lo[] = {{"db", required_argument, 0, 'D'},
					   {"with", required_argument, 0, 'w'},
					   {"json", no_argument, 0, 'j'},
					   {"fail-on-diff", no_argument, 0, 'f'},
					   {"help", no_argument, 0, 'h'},
					   {0, 0, 0, 0}};
	const char *with = NULL;
	bool json = false, fail_on_diff = false;
	opterr = 0;
	for (int c; (c = getopt_long(argc, argv, ":", lo, NULL)) != -1;) {
		switch (c) {
		case 'D': db = optarg; break;
		case 'w': with = optarg; break;
		case 'j': json = true; break;
		case 'f': fail_on_diff = true; break;
		case 'h': fputs(usage, stdout); return 0;
		case ':': return bad_usage("option '%s' needs a value", argv[optind - 1]);
		default: return bad_usage("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (argc - optind != 1)
		return bad_usage("%s", "needs one RUN");
	if (with == NULL && (json || fail_on_diff))
		return bad_usage("%s", "--json and --fail-on-diff go with --with DIR");
	if (db == NULL) {
		const char *env = getenv("REIN_DB");
		db = env && *env ? env : "rein.db";
	}
	const char *id = argv[optind];
	rein_store *st = NULL;
	rein_script *sb = NULL;
	rein_replay_result res = {0};
	rein_err e = {0};
	int ex = 2;
	rein_store_opts o = {.must_exist = true};
	if (rein_store_open(db, &o, &st, &e) != REIN_OK) {
		fprintf(stderr, "rein replay: %s%s\n", e.code == REIN_ENOTFOUND ? "" : "cannot open store: ",
			e.msg);
		goto out;
	}
	if (rein_script_new(&sb) != REIN_OK) {
		fprintf(stderr, "rein replay: out of memory\n");
		goto out;
	}
	if (with) {
		ex = whatif(st, sb, id, with, json, fail_on_diff);
		goto out;
	}
	if (rein_replay_run(st, sb, id, &res, &e) != REIN_OK) {
		fprintf(stderr, "rein replay: run %s: %s\n", id, e.msg);
		goto out;
	}
	if (res.diverged_seq == 0) {
		printf("replayed %lld events, every decision reproduced (%lld engine decisions "
		       "checked)\n",
		       (long long)res.events, (long long)res.decisions);
		ex = 0;
		goto out;
	}
	printf("divergence at seq %lld (%s), after %lld events replayed\n"
	       "  expected: %s\n"
	       "  got:      %s\n",
	       (long long)res.diverged_seq, res.type, (long long)res.events, res.expected, res.got);
	ex = 1;
out:
	rein_replay_result_clear(&res);
	rein_err_clear(&e);
	rein_script_free(sb);
	rein_store_close(st);
	return ex;
}
