/*
 * rein replay RUN: feeds the run's recorded events back through a fresh
 * engine (its pinned workflow version) and checks that every decision is
 * reproduced (src/runner/replay.c). Nothing is sent anywhere.
 */
#include <getopt.h>
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
	"\n"
	"Feeds RUN's recorded events back through the engine, with the recorded\n"
	"model and tool answers, and checks that the engine makes every recorded\n"
	"decision again (same event, step and payload at the same time); code\n"
	"steps are run again. Nothing is sent anywhere. See docs/observability.md.\n"
	"\n"
	"exit: 0 every decision reproduced, 1 a divergence (the first is printed:\n"
	"seq, type, expected, got), 2 bad usage, an unknown run or a log that\n"
	"cannot be replayed.\n";

static int bad_usage(const char *what, const char *arg)
{
	fprintf(stderr, "rein replay: ");
	fprintf(stderr, what, arg);
	fprintf(stderr, "\n(see 'rein replay --help')\n");
	return 2;
}

int rein_cmd_replay(int argc, char **argv, const char *db)
{
	static const struct option lo[] = {{"db", required_argument, 0, 'D'},
					   {"help", no_argument, 0, 'h'},
					   {0, 0, 0, 0}};
	opterr = 0;
	for (int c; (c = getopt_long(argc, argv, ":", lo, NULL)) != -1;) {
		switch (c) {
		case 'D': db = optarg; break;
		case 'h': fputs(usage, stdout); return 0;
		case ':': return bad_usage("option '%s' needs a value", argv[optind - 1]);
		default: return bad_usage("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (argc - optind != 1)
		return bad_usage("%s", "needs one RUN");
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
