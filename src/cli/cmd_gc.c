/*
 * rein gc --finished-before TIME [--keep-skeleton] [--dry-run]: retention.
 * Purges the payloads of the runs that ended before TIME (rein_store_purge):
 * the event skeletons and every hash stay, so `rein audit verify` passes,
 * `rein trace RUN` draws the tree and `rein show RUN` marks the purged
 * payloads. Events are never deleted (the global anchor chain names every
 * run's head: docs/operations.md, Retention), so --keep-skeleton is the only
 * mode; the flag is accepted to say so.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "store.h"

static const char usage_text[] =
	"usage: rein gc --finished-before TIME [--keep-skeleton] [--dry-run] [--db PATH]\n"
	"\n"
	"Purges the payloads of the runs that ended (succeeded, failed, escalated,\n"
	"cancelled) before TIME (2026-01-31T12:00:00Z, or an age: 30d, 12h, 0s): their\n"
	"events' data (with any sealed protected values in it), their output and reason\n"
	"and their inbox data. A payload another run still uses is kept. The events,\n"
	"their hashes and the anchors stay (--keep-skeleton is the only mode): 'rein\n"
	"audit verify' passes, 'rein trace' draws the skeleton, 'rein show' marks the\n"
	"purged payloads. --dry-run counts without purging. Prints one JSON object:\n"
	"{\"runs\", \"payloads\", \"bytes\", \"shared\", \"rows\", \"inbox\", \"dry_run\"}.\n";

int rein_cmd_gc(int argc, char **argv, const char *db)
{
	static const struct option longopts[] = {{"finished-before", required_argument, NULL, 'f'},
						 {"keep-skeleton", no_argument, NULL, 'k'},
						 {"dry-run", no_argument, NULL, 'n'},
						 {"db", required_argument, NULL, 'd'},
						 {"help", no_argument, NULL, 'h'},
						 {NULL, 0, NULL, 0}};
	const char *before = NULL;
	bool dry = false;
	int64_t cutoff = 0;
	rein_store *st = NULL;
	rein_err e = {0};
	int ex = 2, c;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		if (c == 'f') {
			before = optarg;
		} else if (c == 'k') {
			/* the only mode */
		} else if (c == 'n') {
			dry = true;
		} else if (c == 'd') {
			db = optarg;
		} else if (c == 'h') {
			fputs(usage_text, stdout);
			ex = 0;
			goto out;
		} else {
			fputs(usage_text, stderr);
			goto out;
		}
	}
	if (before == NULL || optind != argc) {
		fprintf(stderr, "rein gc: %s\n%s",
			before ? "unexpected argument" : "--finished-before is required", usage_text);
		goto out;
	}
	if (!rein_cli_parse_time(before, rein_clock_now(&rein_clock_system), &cutoff)) {
		fprintf(stderr, "rein gc: --finished-before needs a time (2026-01-31T12:00:00Z) or "
			"an age (30d, 12h, 0s), not '%s'\n", before);
		goto out;
	}
	const char *env = getenv("REIN_DB");
	const char *path = db ? db : env && *env ? env : "rein.db";
	if (rein_store_open(path, &(rein_store_opts){.must_exist = true}, &st, &e) != REIN_OK) {
		fprintf(stderr, "rein gc: %s\n", e.msg);
		ex = e.code == REIN_ENOTFOUND ? 2 : 1;
		goto out;
	}
	rein_purge_stats ps = {0};
	if (rein_store_purge(st, cutoff, dry, &ps, &e) != REIN_OK) {
		fprintf(stderr, "rein gc: %s\n", e.msg);
		ex = 1;
		goto out;
	}
	printf("{\"runs\": %lld, \"payloads\": %lld, \"bytes\": %lld, \"shared\": %lld, "
	       "\"rows\": %lld, \"inbox\": %lld, \"dry_run\": %s}\n",
	       (long long)ps.runs, (long long)ps.payloads, (long long)ps.bytes,
	       (long long)ps.shared, (long long)ps.rows, (long long)ps.inbox,
	       dry ? "true" : "false");
	ex = 0;
out:
	rein_store_close(st);
	return ex;
}
