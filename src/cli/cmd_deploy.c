/*
 * rein deploy / deployments, and `rein run NAME` for a deployed workflow
 * (docs/operations.md "Canaries"). The rules (one stable, one candidate, the
 * split by start key, the rollback rule) are the runner layer's (deploy.c);
 * this file parses flags and prints.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "runner.h"

static const char usage_deploy[] =
	"usage: rein deploy DIR [--canary P%] [--rollback RULE] [--as USER] [--db PATH]\n"
	"       rein deploy NAME --check [--db PATH]\n"
	"       rein deployments [NAME] [--json] [--db PATH]\n"
	"\n"
	"deploy records the workflow in DIR (its version, the content hash, and its\n"
	"files, in the store) as the stable version of its name: 'rein run NAME'\n"
	"then starts runs of it. With --canary P% (1 to 99) it becomes the candidate\n"
	"instead: P% of new runs take it, chosen by the run's start key (its --id, or\n"
	"the id made for it), so the same key always picks the same version. The\n"
	"candidate is rolled back, and no new run goes to it, when over at least\n"
	"min_runs of its ended runs its success rate is below the stable version's\n"
	"by more than success_drop, or its escalation rate above it by more than\n"
	"escalation_rise. --rollback sets the rule: 'success_drop=0.1,\n"
	"escalation_rise=0.1,min_runs=20' (the default; omitted keys keep theirs).\n"
	"The rule is applied after every run of NAME ends and by --check. Deploying\n"
	"the candidate's version without --canary promotes it. The database is\n"
	"created if it does not exist. Prints the deployment as JSON.\n"
	"\n"
	"deployments lists every deployment (active and ended, with the reason it\n"
	"ended) and each version's ended runs, success and escalation rates.\n"
	"\n"
	"exit: 0 done (--check: also when it rolled back), 1 an error, 2 bad usage.\n";

static int usage_err(const char *cmd, const char *what)
{
	fprintf(stderr, "rein %s: %s\n(see 'rein deploy --help')\n", cmd, what);
	return 2;
}

static const char *store_path(const char *db)
{
	const char *env = getenv("REIN_DB");
	return db ? db : env && *env ? env : "rein.db";
}

static int open_db(const char *cmd, const char *db, bool create, rein_store **st)
{
	rein_store_opts o = {.must_exist = !create};
	rein_err e = {0};
	if (rein_store_open(store_path(db), &o, st, &e) != REIN_OK) {
		fprintf(stderr, "rein %s: %s\n", cmd, e.msg);
		return e.code == REIN_ENOTFOUND ? 2 : 1;
	}
	return 0;
}

static json_t *deploy_json(rein_store *st, const rein_deploy_row *d)
{
	rein_deploy_stats s = {0};
	rein_deploy_stats_get(st, d, &s, NULL); /* zeros on error */
	json_t *j = json_pack("{s:I, s:s, s:s, s:s, s:i, s:s, s:s?, s:s?, s:I, s:o?, s:I, s:I, "
			      "s:I, s:f, s:f}",
			      "deployment", (json_int_t)d->id, "workflow", d->name, "version",
			      d->version, "role", d->role, "percent", d->percent, "state", d->state,
			      "reason", d->reason, "by", d->by, "at", (json_int_t)d->at, "ended_at",
			      d->ended_at ? json_integer(d->ended_at) : NULL, "runs", (json_int_t)s.runs,
			      "succeeded", (json_int_t)s.succeeded, "escalated",
			      (json_int_t)s.escalated, "success_rate", s.success_rate,
			      "escalation_rate", s.escalation_rate);
	json_t *rule = d->rule ? rein_json_parse(d->rule, strlen(d->rule), NULL) : NULL;
	if (j && rule)
		json_object_set_new(j, "rollback", rule);
	else
		json_decref(rule);
	return j;
}

/* Prints deployment id of name as JSON. */
static int print_deployment(rein_store *st, const char *name, int64_t id)
{
	rein_deploy_row *rows = NULL;
	size_t n = 0;
	rein_err e = {0};
	int ex = 1;
	if (rein_store_deploy_list(st, name, &rows, &n, &e) != REIN_OK) {
		fprintf(stderr, "rein deploy: %s\n", e.msg);
		return 1;
	}
	for (size_t i = 0; i < n; i++)
		if (rows[i].id == id)
			ex = rein_cli_print_json(deploy_json(st, &rows[i]));
	rein_deploy_rows_free(rows, n);
	return ex;
}

static int deploy_check(const char *name, const char *db)
{
	rein_store *st = NULL;
	rein_err e = {0};
	char *why = NULL;
	bool rolled = false;
	int ex = open_db("deploy", db, false, &st);
	if (ex != 0)
		return ex;
	ex = 1;
	if (rein_deploy_check(st, name, rein_clock_now(&rein_clock_system), &rolled, &why, &e) !=
	    REIN_OK) {
		fprintf(stderr, "rein deploy: %s\n", e.msg);
		goto out;
	}
	ex = rein_cli_print_json(json_pack("{s:s, s:b, s:s?}", "workflow", name, "rolled_back", rolled,
				  "reason", why));
out:
	rein_free(why);
	rein_store_close(st);
	return ex;
}

int rein_cmd_deploy(int argc, char **argv, const char *db)
{
	static const struct option lo[] = {{"canary", required_argument, 0, 'c'},
					   {"rollback", required_argument, 0, 'r'},
					   {"check", no_argument, 0, 'k'},
					   {"as", required_argument, 0, 'u'},
					   {"db", required_argument, 0, 'd'},
					   {"help", no_argument, 0, 'h'},
					   {0, 0, 0, 0}};
	const char *canary = NULL, *rule_arg = NULL, *by = getenv("USER");
	bool check = false;
	int c, percent = 0;
	rein_rollback_rule rule = rein_rollback_default;
	rein_err e = {0};
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":", lo, NULL)) != -1) {
		switch (c) {
		case 'c': canary = optarg; break;
		case 'r': rule_arg = optarg; break;
		case 'k': check = true; break;
		case 'u': by = optarg; break;
		case 'd': db = optarg; break;
		case 'h': fputs(usage_deploy, stdout); return 0;
		default: return usage_err("deploy", "unknown or incomplete option");
		}
	}
	if (optind != argc - 1)
		return usage_err("deploy", "needs exactly one workflow directory (or NAME with --check)");
	if (check) {
		if (canary || rule_arg)
			return usage_err("deploy", "--check takes no --canary or --rollback");
		return deploy_check(argv[optind], db);
	}
	if (canary) {
		char *end;
		long p = strtol(canary, &end, 10);
		if (end == canary || (*end != '\0' && strcmp(end, "%") != 0) || p < 1 || p > 99)
			return usage_err("deploy", "--canary needs a share of 1% to 99%");
		percent = (int)p;
	}
	if (rule_arg && !canary)
		return usage_err("deploy", "--rollback is the candidate's rule: it needs --canary");
	if (rule_arg && rein_rollback_parse(rule_arg, &rule, &e) != REIN_OK)
		return usage_err("deploy", e.msg);
	rein_script *sb = NULL;
	rein_spec *spec = NULL;
	rein_store *st = NULL;
	int ex = 1;
	int64_t id = 0;
	if (rein_script_new(&sb) != REIN_OK) {
		fprintf(stderr, "rein deploy: out of memory\n");
		goto out;
	}
	if (rein_spec_load_dir(argv[optind], sb, &spec, &e) != REIN_OK) {
		rein_err_print(&e, argv[optind], stderr);
		ex = 2;
		goto out;
	}
	if ((ex = open_db("deploy", db, true, &st)) != 0)
		goto out;
	ex = 1;
	if (rein_deploy(st, spec, percent, &rule, by, rein_clock_now(&rein_clock_system), &id, &e) !=
	    REIN_OK) {
		fprintf(stderr, "rein deploy: %s\n", e.msg);
		ex = e.code == REIN_EINVAL ? 2 : 1;
		goto out;
	}
	ex = print_deployment(st, spec->name, id);
out:
	rein_store_close(st);
	rein_spec_free(spec);
	rein_script_free(sb);
	rein_err_clear(&e);
	return ex;
}

int rein_cmd_deployments(int argc, char **argv, const char *db)
{
	static const struct option lo[] = {{"json", no_argument, 0, 'j'},
					   {"db", required_argument, 0, 'd'},
					   {"help", no_argument, 0, 'h'},
					   {0, 0, 0, 0}};
	bool as_json = false;
	int c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":", lo, NULL)) != -1) {
		switch (c) {
		case 'j': as_json = true; break;
		case 'd': db = optarg; break;
		case 'h': fputs(usage_deploy, stdout); return 0;
		default: return usage_err("deployments", "unknown or incomplete option");
		}
	}
	if (optind < argc - 1)
		return usage_err("deployments", "takes at most one workflow name");
	const char *name = optind < argc ? argv[optind] : NULL;
	rein_store *st = NULL;
	rein_deploy_row *rows = NULL;
	size_t n = 0;
	rein_err e = {0};
	json_t *arr = NULL;
	int ex = open_db("deployments", db, false, &st);
	if (ex != 0)
		return ex;
	ex = 1;
	if (rein_store_deploy_list(st, name, &rows, &n, &e) != REIN_OK) {
		fprintf(stderr, "rein deployments: %s\n", e.msg);
		goto out;
	}
	if (as_json) {
		arr = json_array();
		for (size_t i = 0; arr && i < n; i++)
			if (json_array_append_new(arr, deploy_json(st, &rows[i])) != 0) {
				json_decref(arr);
				arr = NULL;
			}
		ex = rein_cli_print_json(arr);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		const rein_deploy_row *d = &rows[i];
		rein_deploy_stats s = {0};
		rein_deploy_stats_get(st, d, &s, NULL);
		char share[16] = "";
		if (d->percent)
			snprintf(share, sizeof share, " %d%%", d->percent);
		printf("%-4lld %-20s %.12s %s%s %s  runs %lld  success %.2f  escalation %.2f%s%s\n",
		       (long long)d->id, d->name, d->version, d->role, share, d->state,
		       (long long)s.runs, s.success_rate, s.escalation_rate, d->reason ? "  reason: " : "",
		       d->reason ? d->reason : "");
	}
	ex = 0;
out:
	rein_deploy_rows_free(rows, n);
	rein_store_close(st);
	return ex;
}

int rein_cli_deployed_spec(const char *arg, const char *db, const char *key,
			   struct rein_script *sb, struct rein_spec **spec, char id[64],
			   bool *candidate)
{
	struct stat sbuf;
	rein_store *st = NULL;
	rein_store_opts o = {.must_exist = true};
	rein_err e = {0};
	char version[65];
	int rc = 0;
	if (stat(arg, &sbuf) == 0 || strchr(arg, '/') != NULL ||
	    rein_store_open(store_path(db), &o, &st, NULL) != REIN_OK)
		goto out; /* a path, or no store to hold a deployment: a directory */
	if (key)
		snprintf(id, 64, "%s", key);
	else if (rein_random_id("run_", id, 64) != REIN_OK)
		goto out;
	int r = rein_deploy_route(st, arg, id, version, candidate, &e);
	if (r == REIN_ENOTFOUND) /* not deployed: read as a directory (its error) */
		goto out;
	if (r != REIN_OK || rein_spec_of_version(st, sb, version, spec, &e) != REIN_OK) {
		fprintf(stderr, "rein run: %s: %s\n", arg, e.msg);
		rc = -1;
		goto out;
	}
	rc = 1;
out:
	rein_err_clear(&e);
	rein_store_close(st);
	return rc;
}

void rein_cli_deploy_after(struct rein_store *st, const char *name)
{
	rein_err e = {0};
	char *why = NULL;
	bool rolled = false;
	if (rein_deploy_check(st, name, rein_clock_now(&rein_clock_system), &rolled, &why, &e) !=
	    REIN_OK)
		fprintf(stderr, "rein run: the rollback rule of %s: %s\n", name, e.msg);
	else if (rolled)
		fprintf(stderr, "rein run: the candidate of %s was rolled back: %s\n", name, why);
	rein_free(why);
	rein_err_clear(&e);
}
