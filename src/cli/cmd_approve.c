/*
 * rein approvals / approve / deny (docs/approvals.md): the review queue.
 * approvals lists the calls waiting for a decision; approve mints a signed
 * token bound to the exact action and puts it in the run's inbox (or submits
 * a token minted elsewhere); deny puts a denial there. The worker holding
 * the run (or the next `rein resume`) checks the token and the engine
 * decides; these commands only deliver.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "runner.h"

static const char usage_approve[] =
	"usage: rein approvals [--json] [--run RUN]\n"
	"       rein approve ID --as USER [--role R]... [--reason TEXT] [--args JSON] [--ttl S]\n"
	"                        [--print]\n"
	"       rein approve --token TOKEN\n"
	"       rein deny ID --as USER --reason TEXT\n"
	"       (each takes --db PATH)\n"
	"\n"
	"approvals lists the pending approvals: id, run, step, tool, the proposed\n"
	"arguments, the evidence the run had gathered, the rules and risk that ask\n"
	"for it, the approvers needed and given, and the SLA left (a table; one JSON\n"
	"array with every field, the evidence included, with --json).\n"
	"\n"
	"approve mints a token (HMAC-SHA256 under the first key of REIN_APPROVAL_KEYS\n"
	"or REIN_APPROVAL_KEYS_FILE) bound to the run, step, idempotency key, the\n"
	"exact action and the policy version, valid --ttl seconds (default 3600),\n"
	"single-use, and puts it in the run's inbox; --args approves edited\n"
	"arguments (re-validated and re-run through the policies); --print prints\n"
	"the token instead of submitting it. --token submits a token minted\n"
	"elsewhere. deny denies the call with a reason. Each prints {inbox, run?}.\n"
	"\n"
	"exit: 0 delivered, 1 an error (no key, no such pending approval), 2 bad usage.\n";

static int usage_err(const char *cmd, const char *what)
{
	fprintf(stderr, "rein %s: %s\n(see 'rein %s --help')\n", cmd, what, cmd);
	return 2;
}

/* The pending items for a human: a header, then per item its id, run, step,
 * the proposed action, who asked, what it needs and its SLA; 0, or 1 when
 * out of memory. --json gives every field (evidence included). */
static int print_pending(const json_t *all)
{
	size_t i;
	json_t *x;
	if (json_array_size(all) == 0) {
		printf("no approvals pending\n");
		return 0;
	}
	printf("%-28s %-32s %-12s %-6s %-14s %s\n", "ID", "RUN", "STEP", "RISK", "NEED", "SLA LEFT");
	json_array_foreach(all, i, x) {
		const json_t *need = json_object_get(x, "need");
		char needs[64];
		char *roles = json_dumps(json_object_get(need, "roles"), JSON_COMPACT);
		snprintf(needs, sizeof needs, "%lld/%lld%s%s", (long long)json_integer_value(json_object_get(x, "have")),
			 (long long)json_integer_value(json_object_get(need, "count")),
			 json_array_size(json_object_get(need, "roles")) ? " " : "",
			 json_array_size(json_object_get(need, "roles")) && roles ? roles : "");
		rein_free(roles);
		const json_t *sla = json_object_get(x, "sla_left_s");
		char slas[32];
		if (json_is_integer(sla))
			snprintf(slas, sizeof slas, "%llds", (long long)json_integer_value(sla));
		else
			snprintf(slas, sizeof slas, "none (halted)");
		const char *str_id = json_string_value(json_object_get(x, "id"));
		const char *str_run = json_string_value(json_object_get(x, "run"));
		const char *str_step = json_string_value(json_object_get(x, "step"));
		const char *str_risk = json_string_value(json_object_get(x, "risk"));
		printf("%-28s %-32s %-12s %-6s %-14s %s\n", str_id ? str_id : "?", str_run ? str_run : "?",
		       str_step ? str_step : "?", str_risk ? str_risk : "?", needs, slas);
		char *args = json_dumps(json_object_get(x, "args"), JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(15));
		char *rules = json_dumps(json_object_get(x, "rules"), JSON_COMPACT);
		const json_t *rq = json_object_get(x, "requester");
		const char *who = json_string_value(json_object_get(rq, "user"));
		const char *tenant = json_string_value(json_object_get(rq, "tenant"));
		const char *tool = json_string_value(json_object_get(x, "tool"));
		if (args == NULL || rules == NULL) {
			rein_free(args);
			rein_free(rules);
			fprintf(stderr, "rein: out of memory\n");
			return 1;
		}
		printf("    %s %s\n    requested by %s%s%s, rules %s (rein approvals --json: the evidence)\n",
		       tool ? tool : "?", args, who ? who : "(nobody)", tenant ? " of " : "", tenant ? tenant : "",
		       json_array_size(json_object_get(x, "rules")) ? rules : "none (the tool's risk)");
		rein_free(args);
		rein_free(rules);
	}
	return 0;
}

int rein_cmd_approve(const char *cmd, int argc, char **argv, const char *db)
{
	static const struct option lo[] = {{"as", required_argument, 0, 'u'},
					   {"role", required_argument, 0, 'R'},
					   {"reason", required_argument, 0, 'r'},
					   {"args", required_argument, 0, 'a'},
					   {"ttl", required_argument, 0, 't'},
					   {"token", required_argument, 0, 'T'},
					   {"run", required_argument, 0, 'n'},
					   {"print", no_argument, 0, 'p'},
					   {"json", no_argument, 0, 'j'},
					   {"db", required_argument, 0, 'd'},
					   {"help", no_argument, 0, 'h'},
					   {0, 0, 0, 0}};
	bool list = strcmp(cmd, "approvals") == 0, deny = strcmp(cmd, "deny") == 0;
	bool as_json = false, print_only = false;
	const char *by = NULL, *reason = NULL, *args_text = NULL, *token = NULL, *run = NULL;
	long long ttl = 0;
	json_t *roles = json_array(), *args = NULL;
	rein_store *st = NULL;
	int ex = 2, c;
	char *end = NULL;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":", lo, NULL)) != -1) {
		switch (c) {
		case 'u': by = optarg; break;
		case 'R': json_array_append_new(roles, json_string(optarg)); break;
		case 'r': reason = optarg; break;
		case 'a': args_text = optarg; break;
		case 't':
			ttl = strtoll(optarg, &end, 10);
			if (*optarg == '\0' || *end || ttl <= 0 || ttl > 365LL * 86400) {
				ex = usage_err(cmd, "--ttl takes seconds, from 1 to a year");
				goto out;
			}
			break;
		case 'T': token = optarg; break;
		case 'n': run = optarg; break;
		case 'p': print_only = true; break;
		case 'j': as_json = true; break;
		case 'd': db = optarg; break;
		case 'h': fputs(usage_approve, stdout); ex = 0; goto out;
		default: ex = usage_err(cmd, "unknown or incomplete option"); goto out;
		}
	}
	const char *id = optind < argc ? argv[optind] : NULL;
	if (optind + (id ? 1 : 0) != argc) {
		ex = usage_err(cmd, "takes at most one ID");
		goto out;
	}
	if (list && id) {
		ex = usage_err(cmd, "takes no ID (use --run RUN)");
		goto out;
	}
	if (!list && token == NULL && (id == NULL || by == NULL || *by == '\0')) {
		ex = usage_err(cmd, "needs ID and --as USER");
		goto out;
	}
	if (token && (id || by || deny)) {
		ex = usage_err(cmd, "--token takes nothing else");
		goto out;
	}
	if (deny && (reason == NULL || *reason == '\0')) {
		ex = usage_err(cmd, "needs --reason TEXT");
		goto out;
	}
	if (args_text) {
		rein_err je = {0};
		args = rein_json_parse(args_text, strlen(args_text), &je);
		if (!json_is_object(args)) {
			fprintf(stderr, "rein %s: --args must be a JSON object%s%s\n", cmd,
				args ? "" : ": ", args ? "" : je.msg);
			goto out;
		}
	}
	const char *env = getenv("REIN_DB");
	const char *path = db ? db : env && *env ? env : "rein.db";
	rein_store_opts o = {.must_exist = true};
	rein_err e = {0};
	ex = 1;
	if (rein_store_open(path, &o, &st, &e) != REIN_OK) {
		fprintf(stderr, "rein %s: %s\n", cmd, e.msg);
		ex = e.code == REIN_ENOTFOUND ? 2 : 1;
		goto out;
	}
	char inbox[64] = "";
	if (list) {
		json_t *all = NULL;
		if (rein_approvals_pending(st, run, rein_clock_now(&rein_clock_system), &all, &e) != REIN_OK) {
			fprintf(stderr, "rein approvals: %s\n", e.msg);
			goto out;
		}
		if (as_json) {
			ex = rein_cli_print_json(all);
		} else {
			ex = print_pending(all);
			json_decref(all);
		}
	} else if (token) {
		if (rein_approve_token(st, token, inbox, &e) != REIN_OK)
			fprintf(stderr, "rein approve: %s\n", e.msg);
		else
			ex = rein_cli_print_json(json_pack("{s:s}", "inbox", inbox));
	} else if (deny) {
		if (rein_deny(st, id, by, reason, inbox, &e) != REIN_OK)
			fprintf(stderr, "rein deny: %s\n", e.msg);
		else
			ex = rein_cli_print_json(json_pack("{s:s, s:s}", "inbox", inbox, "id", id));
	} else {
		rein_approve_req q = {.id = id, .by = by, .roles = roles, .reason = reason,
				      .args = args, .ttl_ms = ttl * 1000, .submit = !print_only};
		char *tok = NULL;
		if (rein_approve(st, &q, &tok, inbox, &e) != REIN_OK) {
			fprintf(stderr, "rein approve: %s\n", e.msg);
		} else if (print_only) {
			printf("%s\n", tok);
			ex = 0;
		} else {
			ex = rein_cli_print_json(json_pack("{s:s, s:s}", "inbox", inbox, "id", id));
		}
		rein_free(tok);
	}
out:
	if (st)
		rein_store_close(st);
	json_decref(roles);
	json_decref(args);
	return ex;
}
