/*
 * rein policy load FILE... : organisation policies into the store, as one
 * version (the content hash of the rules of every file, in order).
 * rein policy test FILE : a table of decision cases against policies, exit 1
 * on any mismatch (docs/policy.md), so a policy change can be gated in CI.
 */
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "policy.h"
#include "spec.h"
#include "store.h"

static const char usage[] =
	"usage: rein policy load FILE... [--db PATH]\n"
	"       rein policy test FILE\n"
	"\n"
	"load: reads each file's rules (a list of rules, or {policies: [...]}), checks\n"
	"them and stores them together as the organisation policies, versioned by\n"
	"their content hash; runs started from then on are pinned to that version.\n"
	"Prints {\"version\": V, \"rules\": N}.\n"
	"test: runs the decision cases of FILE (docs/policy.md) and prints one line\n"
	"per case; exit 0 when every case decides as expected, 1 on a mismatch,\n"
	"2 on a bad file.\n";

/* The rules of every file, concatenated; NULL with the reason on stderr. */
static json_t *read_rules(char **files, int n, const char *base, rein_script *sb)
{
	json_t *all = json_array();
	for (int i = 0; all && i < n; i++) {
		char path[4096];
		if (base && files[i][0] != '/')
			snprintf(path, sizeof path, "%s/%s", base, files[i]);
		else
			snprintf(path, sizeof path, "%s", files[i]);
		json_t *rules = NULL;
		rein_err e = {0};
		if (rein_spec_policy_file(path, sb, &rules, &e) != REIN_OK) {
			fprintf(stderr, "rein policy: %s\n", e.msg);
			json_decref(all);
			return NULL;
		}
		json_array_extend(all, rules);
		json_decref(rules);
	}
	rein_policy *p = NULL;
	rein_err e = {0};
	int bad = -1;
	if (all && rein_policy_compile(all, "org", sb, &p, &bad, &e) != REIN_OK) {
		fprintf(stderr, "rein policy: %s\n", e.msg); /* a duplicate id across files */
		json_decref(all);
		all = NULL;
	}
	rein_policy_free(p);
	return all;
}

static int cmd_load(int argc, char **argv, const char *db, rein_script *sb)
{
	int ex = 2, nf = 0;
	char **files = rein_calloc((size_t)argc + 1, sizeof *files);
	for (int i = 0; files && i < argc; i++) {
		if (strcmp(argv[i], "--db") == 0 && i + 1 < argc)
			db = argv[++i];
		else
			files[nf++] = argv[i];
	}
	json_t *rules = NULL;
	rein_store *st = NULL;
	char *text = NULL;
	rein_err e = {0};
	if (nf == 0) {
		fprintf(stderr, "rein policy load: needs at least one file\n%s", usage);
		goto out;
	}
	if ((rules = read_rules(files, nf, NULL, sb)) == NULL)
		goto out;
	ex = 1;
	char version[65];
	rein_policy_version(rules, version);
	rein_store_opts o = {0};
	if ((text = rein_json_dump(rules)) == NULL || rein_store_open(db, &o, &st, &e) != REIN_OK ||
	    rein_store_org_policy_put(st, version, text, (int64_t)time(NULL) * 1000, &e) != REIN_OK) {
		fprintf(stderr, "rein policy load: %s\n", e.msg[0] ? e.msg : "out of memory");
		goto out;
	}
	printf("{\"version\": \"%s\", \"rules\": %zu}\n", version, json_array_size(rules));
	ex = 0;
out:
	rein_free(text);
	rein_store_close(st);
	json_decref(rules);
	rein_free(files);
	return ex;
}

/* The tools a test names: from its workflow, then its own `tools:`. */
typedef struct tdef {
	char *name;
	bool write;
	int risk;
	json_t *input;
} tdef;

static int find_tool(const tdef *t, size_t n, const char *name)
{
	for (size_t i = 0; name && i < n; i++)
		if (strcmp(t[i].name, name) == 0)
			return (int)i;
	return -1;
}

static const json_t *no_steps(void *ud, const char *name)
{
	const json_t *steps = ud;
	return json_object_get(json_object_get(steps, name), "out");
}

/* Strings of an array, sorted and joined with ","; caller frees. */
static char *ids_text(const json_t *a)
{
	size_t n = json_array_size(a);
	const char **v = rein_calloc(n + 1, sizeof *v);
	rein_buf b = {0};
	rein_buf_printf(&b, "%s", "");
	for (size_t i = 0; v && i < n; i++)
		v[i] = json_string_value(json_array_get(a, i)) ? json_string_value(json_array_get(a, i)) : "?";
	for (size_t i = 0; v && i < n; i++) /* insertion sort: a handful of ids */
		for (size_t j = i; j > 0 && strcmp(v[j - 1], v[j]) > 0; j--) {
			const char *x = v[j];
			v[j] = v[j - 1];
			v[j - 1] = x;
		}
	for (size_t i = 0; v && i < n; i++)
		rein_buf_printf(&b, "%s%s", i ? "," : "", v[i]);
	rein_free(v);
	return b.p;
}

/* A case's per-tenant counts: for each per-tenant limit of sets, the calls
 * of its tenant_history ([{tool, ago_s}]: the tenant's runs', this one's
 * included) the rule counts within its window. NULL when out of memory. */
static json_t *tenant_counts(const rein_policy *const *sets, size_t nsets, const json_t *th,
			     const tdef *tools, size_t ntools, int64_t now)
{
	json_t *counts = json_object();
	rein_policy_rate rates[64];
	for (size_t s = 0; counts && s < nsets; s++) {
		size_t n = rein_policy_rates(sets[s], rates, 64);
		for (size_t i = 0; i < n && i < 64; i++) {
			json_int_t c = 0;
			size_t k;
			json_t *h;
			json_array_foreach(th, k, h) {
				const char *hn = json_string_value(json_object_get(h, "tool"));
				int hi = find_tool(tools, ntools, hn);
				int64_t at = now - 1000 * json_integer_value(json_object_get(h, "ago_s"));
				c += at > now - rates[i].window_ms &&
				     rein_policy_rate_counts(&rates[i], hn, hi >= 0 && tools[hi].write);
			}
			if (json_object_set_new(counts, rates[i].id, json_integer(c)) != 0) {
				json_decref(counts);
				counts = NULL;
			}
		}
	}
	return counts;
}

static int cmd_test(const char *file, rein_script *sb)
{
	int ex = 2, fails = 0, ncases = 0;
	json_t *doc = NULL, *org = NULL;
	rein_spec *spec = NULL;
	rein_policy *orgp = NULL;
	tdef *tools = NULL;
	size_t ntools = 0;
	rein_err e = {0};
	char dirbuf[4096];
	snprintf(dirbuf, sizeof dirbuf, "%s", file);
	const char *base = dirname(dirbuf);
	if (rein_spec_yaml_file(file, &doc, &e) != REIN_OK || !json_is_object(doc)) {
		fprintf(stderr, "rein policy test: %s\n", e.code ? e.msg : "a test file is a mapping");
		goto out;
	}
	const json_t *pf = json_object_get(doc, "policies");
	if (json_is_string(pf))
		pf = json_pack("[O]", pf), org = (json_t *)pf;
	if (json_is_array(pf)) {
		char *files[64];
		int n = 0;
		for (size_t i = 0; i < json_array_size(pf) && n < 64; i++)
			if (json_string_value(json_array_get(pf, i)))
				files[n++] = (char *)json_string_value(json_array_get(pf, i));
		json_t *rules = read_rules(files, n, base, sb);
		json_decref(org);
		org = NULL;
		int bad;
		if (rules == NULL || rein_policy_compile(rules, "org", sb, &orgp, &bad, &e) != REIN_OK) {
			json_decref(rules);
			goto out;
		}
		json_decref(rules);
	}
	const char *wf = json_string_value(json_object_get(doc, "workflow"));
	if (wf) {
		char path[4096];
		snprintf(path, sizeof path, "%s/%s", base, wf);
		if (rein_spec_load_dir(path, sb, &spec, &e) != REIN_OK) {
			fprintf(stderr, "rein policy test: %s\n", e.msg);
			rein_diags_print(&e.diags, stderr);
			rein_err_clear(&e);
			goto out;
		}
	}
	const json_t *tmap = json_object_get(doc, "tools");
	tools = rein_calloc((spec ? spec->ntools : 0) + json_object_size(tmap) + 1, sizeof *tools);
	for (size_t i = 0; tools && spec && i < spec->ntools; i++)
		tools[ntools++] = (tdef){spec->tools[i].name, spec->tools[i].write, (int)spec->tools[i].risk,
					 spec->tools[i].input_doc};
	const char *tk;
	json_t *tv;
	json_object_foreach((json_t *)tmap, tk, tv) {
		const char *acc = json_string_value(json_object_get(tv, "access"));
		const char *rk = json_string_value(json_object_get(tv, "risk"));
		tools[ntools++] = (tdef){(char *)tk, acc && strcmp(acc, "write") == 0,
					 rk == NULL ? 0 : strcmp(rk, "high") == 0 ? 2 : strcmp(rk, "medium") == 0,
					 json_object_get(tv, "input")};
	}
	const json_t *cases = json_object_get(doc, "cases");
	if (!json_is_array(cases) || json_array_size(cases) == 0) {
		fprintf(stderr, "rein policy test: %s: needs a non-empty list 'cases'\n", file);
		goto out;
	}
	const rein_policy *sets[2] = {orgp, spec ? spec->policies : NULL};
	size_t i;
	json_t *c;
	json_array_foreach(cases, i, c) {
		char name[64];
		snprintf(name, sizeof name, "%s", json_string_value(json_object_get(c, "name"))
						     ? json_string_value(json_object_get(c, "name"))
						     : "");
		if (!name[0])
			snprintf(name, sizeof name, "case %zu", i + 1);
		const char *tn = json_string_value(json_object_get(c, "tool"));
		const char *expect = json_string_value(json_object_get(c, "expect"));
		int ti = find_tool(tools, ntools, tn);
		if (ti < 0 || expect == NULL) {
			fprintf(stderr, "rein policy test: %s: %s: needs 'expect' and a 'tool' the test "
				"knows (from 'workflow' or 'tools')\n", file, name);
			ex = 2;
			goto out;
		}
		int64_t now = json_integer_value(json_object_get(c, "now_ms"));
		const char *hm = json_string_value(json_object_get(c, "time"));
		int hh = 0, mm = 0;
		if (hm && sscanf(hm, "%d:%d", &hh, &mm) == 2) /* Monday 5 January 2026, UTC */
			now = 1767571200000LL + (int64_t)hh * 3600000 + (int64_t)mm * 60000;
		json_t *hist = json_array();
		size_t k;
		json_t *h;
		json_array_foreach(json_object_get(c, "history"), k, h) {
			const char *hn = json_string_value(json_object_get(h, "tool"));
			int hi = find_tool(tools, ntools, hn);
			json_array_append_new(hist, json_pack("{s:s?, s:b, s:I}", "tool", hn, "write",
							      hi >= 0 && tools[hi].write, "at",
							      (json_int_t)(now - 1000 * json_integer_value(json_object_get(h, "ago_s")))));
		}
		json_t *tcounts = tenant_counts(sets, 2, json_object_get(c, "tenant_history"), tools,
						ntools, now);
		const json_t *args = json_object_get(c, "args");
		json_t *empty = json_object();
		const json_t *steps = json_object_get(c, "steps");
		rein_policy_call call = {
			.tool = {tools[ti].name, tools[ti].write, tools[ti].risk, tools[ti].input},
			.args = json_is_object(args) ? args : empty,
			.requester = json_object_get(c, "requester"),
			.input = json_object_get(c, "input"),
			.run = json_object_get(c, "run"),
			.step_out = no_steps,
			.ud = (void *)steps,
			.now_ms = now,
			.history = hist,
			.tenant_counts = tcounts,
			.enforce = true,
			.provenance = json_object_get(c, "provenance"),
		};
		json_t *dec = NULL;
		rein_err pe = {0};
		int rc = rein_policy_eval(sb, sets, 2, &call, &dec, &pe);
		json_decref(hist);
		json_decref(tcounts);
		json_decref(empty);
		if (rc != REIN_OK) {
			fprintf(stderr, "rein policy test: %s\n", pe.msg);
			ex = 1;
			goto out;
		}
		const char *got = json_string_value(json_object_get(dec, "decision"));
		char *got_ids = ids_text(json_object_get(dec, "rules"));
		const json_t *want_rules = json_object_get(c, "rules");
		char *want_ids = want_rules ? ids_text(want_rules) : NULL;
		bool ok = strcmp(got, expect) == 0 && (want_ids == NULL || (got_ids && strcmp(got_ids, want_ids) == 0));
		ncases++;
		fails += !ok;
		printf("%s  %-32s expect %-7s got %-7s rules [%s]%s%s%s\n", ok ? "ok  " : "FAIL", name,
		       expect, got, got_ids ? got_ids : "", want_ids && !ok ? " (expected [" : "",
		       want_ids && !ok ? want_ids : "", want_ids && !ok ? "])" : "");
		if (!ok) {
			json_t *rs = json_object_get(dec, "reasons");
			json_t *r;
			json_array_foreach(rs, k, r) printf("      reason: %s\n", json_string_value(r));
		}
		rein_free(got_ids);
		rein_free(want_ids);
		json_decref(dec);
	}
	printf("%d case%s, %d failed\n", ncases, ncases == 1 ? "" : "s", fails);
	ex = fails ? 1 : 0;
out:
	rein_free(tools);
	rein_policy_free(orgp);
	rein_spec_free(spec);
	json_decref(doc);
	return ex;
}

int rein_cmd_policy(int argc, char **argv, const char *db)
{
	rein_script *sb = NULL;
	int ex = 2;
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		fputs(usage, argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (rein_script_new(&sb) != REIN_OK) {
		fprintf(stderr, "rein policy: out of memory\n");
		return 1;
	}
	if (strcmp(argv[1], "load") == 0)
		ex = cmd_load(argc - 2, argv + 2, db, sb);
	else if (strcmp(argv[1], "test") == 0 && argc == 3)
		ex = cmd_test(argv[2], sb);
	else
		fprintf(stderr, "rein policy: unknown or incomplete subcommand\n%s", usage);
	rein_script_free(sb);
	return ex;
}
