/*
 * bench_policy: what the policy gate costs per proposed call (issue 11).
 *
 * 100 rules are compiled with the public API (rein_policy_compile, the same
 * sandbox as the engine: rein_script_new) and one proposed call is decided
 * against them again and again with rein_policy_eval, as the engine's gate
 * calls it (engine_propose.c: sets {org, workflow}, enforce on, the run's
 * recorded clock, a history of earlier calls). Each evaluation is timed
 * alone (CLOCK_MONOTONIC); the figures are the mean (wall and process CPU),
 * p50 and p99 in microseconds per call.
 *
 * The rule sets (100 rules each; the call: tool `refund`, write, risk high,
 * args {amount, tenant, account, currency}, requester {alice, [support], acme},
 * a history of 5 earlier calls):
 *
 *   all-when     every rule targets the call (tool `refund`, `ref*`, `*`, a
 *                list, access: write, risk: medium) and has a `when` over
 *                args / requester / run that is false, except one allow; 20 of
 *                them also have a limit that is not reached. The worst case:
 *                every rule is evaluated, every condition runs in Lua.
 *   all-nowhen   the same targets and limits, no `when`; the rules are deny
 *                rules whose limit is not reached (so they do not match) and
 *                allow rules: no Lua at all.
 *   mixed        100 rules spread over 50 tools (tool_0 .. tool_49), 2 of
 *                them target `refund` (with a `when`), plus a few globs that
 *                miss: the usual case, most rules are skipped by their target.
 *   none         100 rules (with `when`) for other tools only: no rule
 *                matches the call, so the default applies (governance on,
 *                no rule matching).
 *
 * Every decision is checked (the expected decision and rule ids); exits 1 on
 * a wrong decision, 2 on a usage error.
 *
 * usage: bench_policy [--iters N] [--only all-when|all-nowhen|mixed|none]
 */
#include "base.h"
#include "policy.h"
#include "script.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

enum { NRULES = 100 };

static double mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static double cpu_s(void)
{
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return 0;
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* `when` conditions that are false for the call (amount 20, tenant acme, alice). */
static const char *const false_whens[] = {
	"args.amount > 500",
	"args.tenant ~= requester.tenant",
	"args.currency == 'BTC'",
	"requester.user == 'mallory'",
	"run.hour < 9 or run.hour >= 17",
	"run.writes > 50",
	"args.amount < 0",
	"string.sub(args.account, 1, 3) == 'ext'",
	"requester.roles[1] == 'intern'",
	"run.tool_calls.refund ~= nil and run.tool_calls.refund > 20",
};
enum { NWHENS = sizeof false_whens / sizeof *false_whens };

static json_t *rule(int i, const char *effect, json_t *tool)
{
	char id[32];
	snprintf(id, sizeof id, "r%03d", i);
	json_t *r = json_pack("{s:s, s:s, s:s}", "id", id, "effect", effect, "reason", "benchmark rule");
	if (r && tool)
		json_object_set_new(r, "tool", tool);
	else
		json_decref(tool);
	return r;
}

/* A target that matches `refund` (write, risk high), chosen by i. */
static json_t *refund_target(int i, json_t *r)
{
	switch (i % 5) {
	case 0: json_object_set_new(r, "tool", json_string("refund")); break;
	case 1: json_object_set_new(r, "tool", json_string("ref*")); break;
	case 2: json_object_set_new(r, "tool", json_pack("[s,s]", "payout", "refund")); break;
	case 3: json_object_set_new(r, "access", json_string("write")); break;
	default: json_object_set_new(r, "risk", json_string("medium")); break;
	}
	return r;
}

/* The rule list of a set; *want_rule the id of the rule that decides (or ""). */
static json_t *rules_for(const char *set, const char **want_decision, char *want_rule)
{
	json_t *a = json_array();
	bool with_when = strcmp(set, "all-nowhen") != 0;
	for (int i = 0; a && i < NRULES; i++) {
		json_t *r = NULL;
		if (strcmp(set, "all-when") == 0 || strcmp(set, "all-nowhen") == 0) {
			bool allow = i == NRULES / 2 || (!with_when && i % 2 == 1);
			r = refund_target(i, rule(i, allow ? "allow" : "deny", NULL));
			if (r && with_when && !allow)
				json_object_set_new(r, "when", json_string(false_whens[i % NWHENS]));
			else if (r && with_when)
				json_object_set_new(r, "when",
						    json_string("requester.roles[1] == 'support'"));
			if (r && !allow && (i % 5 == 0 || !with_when))
				json_object_set_new(r, "limit", json_pack("{s:i, s:i}", "max", 100,
									   "window_s", 3600));
		} else {
			bool mixed = strcmp(set, "mixed") == 0;
			char tn[32];
			snprintf(tn, sizeof tn, "tool_%d", i % 50);
			if (mixed && (i == 10 || i == 60)) {
				r = rule(i, i == 10 ? "allow" : "deny", json_string("refund"));
				if (r)
					json_object_set_new(r, "when",
							    json_string(i == 10 ? "requester.roles[1] == 'support'"
										: "args.amount > 500"));
			} else if (i % 10 == 5) {
				r = rule(i, "deny", json_string(i % 20 == 5 ? "db_*" : "mail?"));
			} else {
				r = rule(i, i % 3 ? "deny" : "allow", json_string(tn));
			}
			if (r && json_object_get(r, "when") == NULL)
				json_object_set_new(r, "when", json_string(false_whens[i % NWHENS]));
		}
		if (r == NULL || json_array_append_new(a, r) != 0) {
			json_decref(a);
			return NULL;
		}
	}
	bool none = strcmp(set, "none") == 0;
	/* none: no rule matches a write tool under enforce: the default denies it */
	*want_decision = none ? "deny" : "allow";
	snprintf(want_rule, 32, "%s", none ? "" : strcmp(set, "mixed") == 0 ? "r010" : "r050");
	return a;
}

static const json_t *no_step(void *ud, const char *name)
{
	(void)ud;
	(void)name;
	return NULL;
}

static bool decision_ok(const json_t *dec, const char *want, const char *want_rule)
{
	const char *d = json_string_value(json_object_get(dec, "decision"));
	const json_t *ids = json_object_get(dec, "rules");
	if (d == NULL || strcmp(d, want) != 0)
		return false;
	if (*want_rule == '\0')
		return json_array_size(ids) == 0;
	size_t i;
	json_t *v;
	json_array_foreach(ids, i, v) if (strcmp(json_string_value(v), want_rule) == 0) return true;
	return false;
}

static int bench_set(const char *set, rein_script *sb, long iters)
{
	int rc = 1, bad = -1;
	rein_err e = {0};
	rein_policy *p = NULL;
	const char *want = NULL;
	char want_rule[32];
	double *t = calloc((size_t)iters, sizeof *t);
	json_t *rules = rules_for(set, &want, want_rule);
	json_t *args = json_pack("{s:i, s:s, s:s, s:s}", "amount", 20, "tenant", "acme", "account",
				 "acct-1", "currency", "EUR");
	json_t *req = json_pack("{s:s, s:[s], s:s}", "user", "alice", "roles", "support", "tenant",
				"acme");
	json_t *input = json_pack("{s:s}", "ticket", "T-1");
	json_t *run = json_pack("{s:s, s:s, s:s}", "id", "run-1", "workflow", "refund", "version",
				"v1");
	int64_t now = 1767607200000LL; /* Monday 5 January 2026, 10:00 UTC */
	json_t *hist = json_array();
	for (int i = 0; hist && i < 5; i++)
		json_array_append_new(hist, json_pack("{s:s, s:b, s:I}", "tool",
						      i % 2 ? "lookup" : "refund", "write", i % 2 == 0,
						      "at", (json_int_t)(now - 60000 * (i + 1))));
	if (t == NULL || rules == NULL || args == NULL || req == NULL || input == NULL ||
	    run == NULL || hist == NULL) {
		fprintf(stderr, "bench: out of memory\n");
		goto out;
	}
	double c0 = mono_us();
	if (rein_policy_compile(rules, "workflow", sb, &p, &bad, &e) != REIN_OK) {
		fprintf(stderr, "bench: %s: compile (rule %d): %s\n", set, bad, e.msg);
		goto out;
	}
	double compile_us = mono_us() - c0;
	rein_policy_tool tool = {.name = "refund", .write = true, .risk = 2, .input_doc = NULL};
	if (rein_policy_check_tools(p, &tool, 1, &bad, &e) != REIN_OK) {
		fprintf(stderr, "bench: %s: check_tools (rule %d): %s\n", set, bad, e.msg);
		goto out;
	}
	const rein_policy *sets[2] = {NULL, p}; /* no org set, the workflow's */
	rein_policy_call call = {.tool = tool,
				 .args = args,
				 .requester = req,
				 .input = input,
				 .run = run,
				 .step_out = no_step,
				 .now_ms = now,
				 .history = hist,
				 .enforce = true};
	/* warm-up, and the decision checked once in full */
	long wrong = 0;
	for (long i = 0; i < iters / 10 + 1; i++) {
		json_t *dec = NULL;
		if (rein_policy_eval(sb, sets, 2, &call, &dec, &e) != REIN_OK) {
			fprintf(stderr, "bench: %s: eval: %s\n", set, e.msg);
			goto out;
		}
		if (!decision_ok(dec, want, want_rule) && wrong++ == 0) {
			char *s = json_dumps(dec, JSON_COMPACT);
			fprintf(stderr, "bench: %s: decision %s, expected %s by [%s]\n", set,
				s ? s : "?", want, want_rule);
			free(s);
		}
		json_decref(dec);
	}
	double cpu0 = cpu_s(), w0 = mono_us();
	for (long i = 0; i < iters; i++) {
		json_t *dec = NULL;
		double t0 = mono_us();
		int r = rein_policy_eval(sb, sets, 2, &call, &dec, &e);
		t[i] = mono_us() - t0;
		if (r != REIN_OK) {
			fprintf(stderr, "bench: %s: eval: %s\n", set, e.msg);
			goto out;
		}
		wrong += !decision_ok(dec, want, want_rule);
		json_decref(dec);
	}
	double wall = mono_us() - w0, cpu = (cpu_s() - cpu0) * 1e6;
	qsort(t, (size_t)iters, sizeof *t, cmp_double);
	printf("%-10s %zu rules  compile %.0f us  eval: mean %.2f us (cpu %.2f us)  p50 %.2f us  "
	       "p99 %.2f us  decision %s\n",
	       set, rein_policy_count(p), compile_us, wall / (double)iters, cpu / (double)iters,
	       t[iters / 2], t[(size_t)((double)iters * 0.99)], want);
	fflush(stdout);
	if (wrong) {
		fprintf(stderr, "bench: %s: %ld wrong decisions\n", set, wrong);
		goto out;
	}
	rc = 0;
out:
	rein_err_clear(&e);
	rein_policy_free(p);
	json_decref(rules);
	json_decref(args);
	json_decref(req);
	json_decref(input);
	json_decref(run);
	json_decref(hist);
	free(t);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {{"iters", required_argument, 0, 'i'},
					   {"only", required_argument, 0, 'o'},
					   {"help", no_argument, 0, 'h'},
					   {0, 0, 0, 0}};
	static const char *const sets[] = {"all-when", "all-nowhen", "mixed", "none"};
	long iters = 20000;
	const char *only = NULL;
	for (int c; (c = getopt_long(argc, argv, "", lo, NULL)) != -1;) {
		switch (c) {
		case 'i': {
			char *end;
			errno = 0;
			iters = strtol(optarg, &end, 10);
			if (*optarg == '\0' || *end != '\0' || errno || iters <= 0 || iters > 10000000) {
				fprintf(stderr, "bench: --iters needs a positive count, not '%s'\n", optarg);
				return 2;
			}
			break;
		}
		case 'o': only = optarg; break;
		case 'h':
			puts("usage: bench_policy [--iters N] [--only all-when|all-nowhen|mixed|none]");
			return 0;
		default: return 2;
		}
	}
	bool known = only == NULL;
	for (size_t i = 0; only && i < sizeof sets / sizeof *sets; i++)
		known |= strcmp(only, sets[i]) == 0;
	if (!known || optind != argc) {
		fprintf(stderr, "bench: usage: bench_policy [--iters N] [--only SET]\n");
		return 2;
	}
	rein_init();
	rein_script *sb = NULL;
	if (rein_script_new(&sb) != REIN_OK) {
		fprintf(stderr, "bench: cannot create the Lua sandbox\n");
		return 1;
	}
	printf("rein bench_policy: one proposed call (refund, write, risk high) against %d rules, "
	       "%ld timed evaluations per set\n",
	       NRULES, iters);
	int problems = 0;
	for (size_t i = 0; i < sizeof sets / sizeof *sets; i++)
		if (only == NULL || strcmp(only, sets[i]) == 0)
			problems += bench_set(sets[i], sb, iters);
	rein_script_free(sb);
	return problems ? 1 : 0;
}
