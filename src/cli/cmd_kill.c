/*
 * rein kill / unkill / kills: the kill switch (docs/operations.md). A switch
 * is a row in the store; every process driving runs on that store reads it
 * before each write call leaves, so a switch recorded here holds every
 * covered call from then on, in every process.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "store.h"

static const char usage_kill[] =
	"usage: rein kill [--workflow W] [--tool T] [--tenant T] --reason TEXT [--as USER]\n"
	"       rein unkill [--workflow W] [--tool T] [--tenant T]\n"
	"       rein kills [--json]\n"
	"       (each takes --db PATH)\n"
	"\n"
	"kill sets a kill switch: from the moment it returns, no write call it covers\n"
	"leaves any process using this database (read calls are never held). The\n"
	"selectors narrow it: --workflow (runs of that workflow), --tool (that write\n"
	"tool), --tenant (runs whose requester has that tenant); none: every write\n"
	"call. A run that reaches a covered call records kill.held, does not send it\n"
	"and waits (status waiting, reason \"killed: ...\"); within about a second of\n"
	"the switch being lifted it sends the call, with the same idempotency key.\n"
	"Setting the same selectors again replaces the reason. Prints {switch, ...}.\n"
	"\n"
	"unkill lifts the switch with exactly these selectors (exit 1 when there is\n"
	"none). kills lists the switches set (one per line, or a JSON array with\n"
	"--json).\n"
	"\n"
	"exit: 0 done, 1 an error (or nothing to lift), 2 bad usage.\n";

static int usage_err(const char *cmd, const char *what)
{
	fprintf(stderr, "rein %s: %s\n(see 'rein %s --help')\n", cmd, what, cmd);
	return 2;
}

static json_t *kill_json(const rein_kill_row *k)
{
	return json_pack("{s:I, s:s?, s:s?, s:s?, s:s, s:s?, s:I}", "switch", (json_int_t)k->id,
			 "workflow", k->workflow, "tool", k->tool, "tenant", k->tenant, "reason",
			 k->reason, "by", k->by, "at", (json_int_t)k->at);
}

static int list(rein_store *st, bool as_json)
{
	rein_kill_row *rows = NULL;
	size_t n = 0;
	int64_t v = 0;
	rein_err e = {0};
	if (rein_store_kill_list(st, &v, &rows, &n, &e) != REIN_OK) {
		fprintf(stderr, "rein kills: %s\n", e.msg);
		return 1;
	}
	int ex = 0;
	json_t *arr = as_json ? json_array() : NULL;
	for (size_t i = 0; i < n && ex == 0; i++) {
		json_t *k = kill_json(&rows[i]);
		if (as_json) {
			if (k == NULL || json_array_append_new(arr, k) != 0)
				ex = 1;
		} else {
			ex = rein_cli_print_json(k);
		}
	}
	if (as_json && ex == 0)
		ex = rein_cli_print_json(arr);
	else
		json_decref(arr);
	rein_kill_rows_free(rows, n);
	return ex;
}

int rein_cmd_kill(const char *cmd, int argc, char **argv, const char *db)
{
	static const struct option lo[] = {{"workflow", required_argument, 0, 'w'},
					   {"tool", required_argument, 0, 't'},
					   {"tenant", required_argument, 0, 'T'},
					   {"reason", required_argument, 0, 'r'},
					   {"as", required_argument, 0, 'u'},
					   {"json", no_argument, 0, 'j'},
					   {"db", required_argument, 0, 'd'},
					   {"help", no_argument, 0, 'h'},
					   {0, 0, 0, 0}};
	bool set = strcmp(cmd, "kill") == 0, lift = strcmp(cmd, "unkill") == 0, as_json = false;
	rein_kill_row k = {0};
	const char *env = getenv("REIN_DB");
	int c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":", lo, NULL)) != -1) {
		switch (c) {
		case 'w': k.workflow = optarg; break;
		case 't': k.tool = optarg; break;
		case 'T': k.tenant = optarg; break;
		case 'r': k.reason = optarg; break;
		case 'u': k.by = optarg; break;
		case 'j': as_json = true; break;
		case 'd': db = optarg; break;
		case 'h': fputs(usage_kill, stdout); return 0;
		default: return usage_err(cmd, "unknown or incomplete option");
		}
	}
	if (optind != argc)
		return usage_err(cmd, "takes no arguments besides its flags");
	if (set && (k.reason == NULL || *k.reason == '\0'))
		return usage_err(cmd, "needs --reason TEXT (it is recorded with every held call)");
	if (!set && (k.reason || k.by))
		return usage_err(cmd, "--reason and --as belong to 'rein kill'");
	if (!set && !lift && (k.workflow || k.tool || k.tenant))
		return usage_err(cmd, "lists every switch: no selectors");
	if (set && k.by == NULL)
		k.by = getenv("USER");
	const char *path = db ? db : env && *env ? env : "rein.db";
	rein_store *st = NULL;
	rein_store_opts o = {.must_exist = true};
	rein_err e = {0};
	int ex = 1;
	if (rein_store_open(path, &o, &st, &e) != REIN_OK) {
		fprintf(stderr, "rein %s: %s\n", cmd, e.msg);
		return e.code == REIN_ENOTFOUND ? 2 : 1;
	}
	k.at = rein_clock_now(&rein_clock_system);
	if (set) {
		int64_t id = 0;
		if (rein_store_kill_set(st, &k, &id, &e) != REIN_OK) {
			fprintf(stderr, "rein kill: %s\n", e.msg);
		} else {
			k.id = id;
			ex = rein_cli_print_json(kill_json(&k));
		}
	} else if (lift) {
		int n = 0;
		if (rein_store_kill_lift(st, &k, &n, &e) != REIN_OK)
			fprintf(stderr, "rein unkill: %s\n", e.msg);
		else if (n == 0)
			fprintf(stderr, "rein unkill: no switch is set with exactly these selectors "
					"(see 'rein kills')\n");
		else
			ex = rein_cli_print_json(json_pack("{s:b, s:s?, s:s?, s:s?, s:I}", "lifted", 1, "workflow",
						  k.workflow, "tool", k.tool, "tenant", k.tenant, "at",
						  (json_int_t)k.at));
	} else {
		ex = list(st, as_json);
	}
	rein_store_close(st);
	return ex;
}
