/* rein eval SUITE.yaml (docs/evals.md): flags and printing over src/eval. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base.h"
#include "cli.h"
#include "eval.h"
#include "script.h"

static const char usage_eval[] =
	"usage: rein eval SUITE.yaml [--db PATH] [--workflow DIR] [--json] [--save FILE]\n"
	"                 [--baseline FILE] [--gate] [--junit FILE]\n"
	"\n"
	"Runs each case of the suite (docs/evals.md) repeat times through the runner,\n"
	"into a scratch store (a temporary SQLite file) unless --db, and reports per\n"
	"case and overall: task success, pass^k and pass@k, escalation rate and\n"
	"reasons, tool error rate, schema adherence, cost per completed task, p50/p95\n"
	"latency, and the LLM judge apart. Harness errors (a provider unreachable)\n"
	"are counted apart, never as a failure or a success.\n"
	"  --workflow DIR   evaluate this workflow instead of the suite's (a candidate)\n"
	"  --json           print the result document instead of the table\n"
	"  --save FILE      write the result document to FILE (a later --baseline)\n"
	"  --baseline FILE  compare with a saved result\n"
	"  --gate           exit 1 when a threshold of the suite's gate: is crossed\n"
	"  --junit FILE     write JUnit XML: a testcase per case, <failure> for a wrong\n"
	"                   result, <error> for a harness error\n"
	"Exit 0, 1 when the gate fails (or the store cannot be used), 2 for a bad\n"
	"suite, workflow or baseline (FILE:LINE:COL: message).\n";

static void progress(void *ud, const char *name, int trial, const char *outcome)
{
	(void)ud;
	fprintf(stderr, "eval: %s #%d %s\n", name, trial, outcome);
}

static void fmt_rate(char *buf, size_t n, const json_t *v)
{
	if (json_is_number(v))
		snprintf(buf, n, "%.3f", json_number_value(v));
	else
		snprintf(buf, n, "-");
}

static void print_row(const char *name, const json_t *c)
{
	char sr[16], ph[16], pa[16], esc[16], cpc[24];
	const json_t *hat = json_object_get(c, "pass_hat_k"), *at = json_object_get(c, "pass_at_k");
	char k[16];
	snprintf(k, sizeof k, "%lld", (long long)(json_integer_value(json_object_get(c, "passed")) +
						  json_integer_value(json_object_get(c, "failed"))));
	fmt_rate(sr, sizeof sr, json_object_get(c, "success_rate"));
	fmt_rate(ph, sizeof ph, json_object_get(hat, k));
	fmt_rate(pa, sizeof pa, json_object_get(at, k));
	fmt_rate(esc, sizeof esc, json_object_get(c, "escalation_rate"));
	fmt_rate(cpc, sizeof cpc, json_object_get(c, "cost_per_completed"));
	printf("%-28.28s %4lld %4lld %4lld %4lld  %7s %7s %7s %6s %10s %7lld %7lld\n", name,
	       (long long)json_integer_value(json_object_get(c, "total")),
	       (long long)json_integer_value(json_object_get(c, "passed")),
	       (long long)json_integer_value(json_object_get(c, "failed")),
	       (long long)json_integer_value(json_object_get(c, "errors")), sr, ph, pa, esc, cpc,
	       (long long)json_integer_value(json_object_get(c, "latency_p50_ms")),
	       (long long)json_integer_value(json_object_get(c, "latency_p95_ms")));
}

static void print_table(const json_t *res)
{
	printf("%-28s %4s %4s %4s %4s  %7s %7s %7s %6s %10s %7s %7s\n", "case", "n", "pass", "fail",
	       "err", "success", "pass^n", "pass@n", "escal", "cost/done", "p50ms", "p95ms");
	size_t i;
	json_t *c;
	json_array_foreach(json_object_get(res, "cases"), i, c) {
		print_row(json_string_value(json_object_get(c, "name")), c);
		size_t j;
		json_t *t;
		json_array_foreach(json_object_get(c, "trials"), j, t) {
			const char *o = json_string_value(json_object_get(t, "outcome"));
			if (o && strcmp(o, "error") == 0)
				printf("    #%lld error: %s\n", (long long)json_integer_value(json_object_get(t, "trial")),
				       json_string_value(json_object_get(t, "error")));
			else if (o && strcmp(o, "fail") == 0)
				printf("    #%lld fail: %s\n", (long long)json_integer_value(json_object_get(t, "trial")),
				       json_string_value(json_array_get(json_object_get(t, "failures"), 0)));
			const json_t *jd = json_object_get(t, "judge");
			if (jd)
				printf("    #%lld judge: %s\n", (long long)json_integer_value(json_object_get(t, "trial")),
				       json_object_get(jd, "error") ? json_string_value(json_object_get(jd, "error"))
				       : json_is_true(json_object_get(jd, "passed")) ? "passed" : "below threshold");
		}
	}
	print_row("(overall)", json_object_get(res, "overall"));
}

static int read_json_file(const char *path, json_t **out)
{
	char *text = NULL;
	size_t len = 0;
	rein_err e = {0};
	json_t *j = NULL;
	if (rein_file_read(path, &text, &len, &e) == REIN_OK)
		j = rein_json_parse(text, len, &e);
	rein_free(text);
	if (j == NULL)
		fprintf(stderr, "rein eval: %s: %s\n", path, e.msg);
	*out = j;
	return j ? 0 : 2;
}

static int write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	int ok = f && fputs(text, f) >= 0;
	if (f && fclose(f) != 0)
		ok = 0;
	if (!ok)
		fprintf(stderr, "rein eval: cannot write %s\n", path);
	return ok ? 0 : 1;
}

int rein_cmd_eval(int argc, char **argv, const char *db)
{
	static const struct option lo[] = {{"db", required_argument, 0, 'd'},
					   {"workflow", required_argument, 0, 'w'},
					   {"json", no_argument, 0, 'j'},
					   {"save", required_argument, 0, 's'},
					   {"baseline", required_argument, 0, 'b'},
					   {"gate", no_argument, 0, 'g'},
					   {"junit", required_argument, 0, 'u'},
					   {"help", no_argument, 0, 'h'},
					   {0, 0, 0, 0}};
	const char *save = NULL, *base = NULL, *junit = NULL, *wf = NULL;
	bool json = false, gate = false;
	int c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":", lo, NULL)) != -1) {
		switch (c) {
		case 'd': db = optarg; break;
		case 'w': wf = optarg; break;
		case 'j': json = true; break;
		case 's': save = optarg; break;
		case 'b': base = optarg; break;
		case 'g': gate = true; break;
		case 'u': junit = optarg; break;
		case 'h': fputs(usage_eval, stdout); return 0;
		default:
			fprintf(stderr, "rein eval: unknown or incomplete option '%s'\n(see 'rein eval --help')\n",
				argv[optind - 1]);
			return 2;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "rein eval: needs exactly one suite file\n(see 'rein eval --help')\n");
		return 2;
	}
	rein_script *sb = NULL;
	rein_eval_suite *s = NULL;
	json_t *res = NULL, *baseline = NULL, *g = NULL;
	rein_err e = {0};
	rein_buf xml = {0};
	char *text = NULL;
	int ex = 1;
	if (rein_script_new(&sb) != REIN_OK) {
		fprintf(stderr, "rein eval: out of memory\n");
		goto out;
	}
	if (rein_eval_suite_load(argv[optind], sb, &s, &e) != REIN_OK) {
		rein_err_print(&e, "rein eval", stderr);
		ex = e.code == REIN_ENOMEM ? 1 : 2;
		goto out;
	}
	if (base && (ex = read_json_file(base, &baseline)) != 0)
		goto out;
	if (baseline && !json_is_object(json_object_get(baseline, "overall"))) {
		fprintf(stderr, "rein eval: %s: not an eval result (no 'overall'; see --save)\n", base);
		ex = 2;
		goto out;
	}
	rein_eval_opts o = {.db = db, .workflow = wf, .progress = isatty(2) ? progress : NULL};
	if (rein_eval_run(s, sb, &o, &res, &e) != REIN_OK) {
		rein_err_print(&e, "rein eval", stderr);
		ex = e.code == REIN_ESPEC || e.code == REIN_ENOTFOUND ? 2 : 1;
		goto out;
	}
	ex = 1;
	if ((gate || baseline) && rein_eval_gate_check(res, baseline, &s->gate, &g, &e) != REIN_OK) {
		fprintf(stderr, "rein eval: %s\n", e.msg);
		ex = 2;
		goto out;
	}
	if (g)
		json_object_set(res, "gate", g);
	if ((text = rein_json_dump_flags(res, JSON_INDENT(2) | JSON_SORT_KEYS)) == NULL) {
		fprintf(stderr, "rein eval: out of memory\n");
		goto out;
	}
	if (save && write_file(save, text) != 0)
		goto out;
	if (junit && (rein_eval_junit(res, &xml) != REIN_OK || write_file(junit, xml.p) != 0))
		goto out;
	if (json)
		printf("%s\n", text);
	else
		print_table(res);
	ex = 0;
	size_t i;
	json_t *x;
	json_array_foreach(json_object_get(g, "crossed"), i, x)
		fprintf(stderr, "rein eval: gate: %s: %s\n", json_string_value(json_object_get(x, "threshold")),
			json_string_value(json_object_get(x, "message")));
	json_array_foreach(json_object_get(g, "worse_cases"), i, x)
		fprintf(stderr, "rein eval: worse than the baseline: %s (%.3f, was %.3f)\n",
			json_string_value(json_object_get(x, "name")),
			json_number_value(json_object_get(x, "success_rate")),
			json_number_value(json_object_get(x, "baseline")));
	if (gate && !json_is_true(json_object_get(g, "passed")))
		ex = 1;
out:
	rein_free(text);
	rein_buf_free(&xml);
	json_decref(g);
	json_decref(res);
	json_decref(baseline);
	rein_eval_suite_free(s);
	rein_script_free(sb);
	rein_err_clear(&e);
	return ex;
}
