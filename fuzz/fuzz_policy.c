/*
 * libFuzzer target for the two policy parsers a security engineer feeds:
 * the organisation policy file (rein_spec_policy_file, what `rein policy
 * load` reads) and the `rein policy test` case table (cmd_test of
 * src/cli/cmd_policy.c, included here so the very code the CLI runs is
 * fuzzed). The first byte picks which file the rest of the input is:
 *   'o'  the organisation policy file, run under a fixed case table that
 *        calls read and write tools with several requesters, hours and
 *        histories (so every rule the file holds is compiled and evaluated);
 *   else the case table, over a fixed organisation policy file.
 * Whatever the file holds must give a decision table or a clear error,
 * never a crash, a leak or a hang. Files live in a private temporary
 * directory; the table's own prints go to /dev/null.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "../src/cli/cmd_policy.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char org_fixed[] =
	"policies:\n"
	"  - { id: cap, effect: deny, tool: pay, when: \"args.amount > 100\", reason: over }\n"
	"  - { id: ok-pay, effect: allow, tool: \"pa*\", when: \"requester.roles[1] == 'ops'\" }\n"
	"  - { id: review, effect: approve, access: write, risk: high, tier: medium }\n"
	"  - { id: tenant, effect: deny, access: write, when: \"requester.tenant ~= input.tenant\" }\n"
	"  - { id: rate, effect: deny, tool: pay, limit: { max: 2, window_s: 60, per: tenant } }\n";

static const char cases_fixed[] =
	"policies: [org.yaml]\n"
	"tools:\n"
	"  pay: { access: write, risk: high, input: { type: object } }\n"
	"  look: { access: read }\n"
	"cases:\n"
	"  - { tool: pay, args: { amount: 5 }, requester: { user: a, roles: [ops], tenant: t },"
	" input: { tenant: t }, expect: allow }\n"
	"  - { tool: pay, args: { amount: 500 }, requester: { user: b, roles: [] }, input: {},"
	" expect: deny, time: \"23:30\", history: [{ tool: pay, ago_s: 10 }, { tool: look }],"
	" tenant_history: [{ tool: pay, ago_s: 5 }, { tool: look, ago_s: 1 }] }\n"
	"  - { tool: look, args: {}, requester: { user: c }, run: { id: r }, expect: allow,"
	" steps: { s: { out: { x: 1 } } } }\n";

static char dir[64];

static int put(const char *name, const void *p, size_t n)
{
	char path[128];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	if (f == NULL)
		return -1;
	size_t w = fwrite(p, 1, n, f);
	return fclose(f) == 0 && w == n ? 0 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static rein_script *sb;
	if (sb == NULL) {
		rein_init();
		snprintf(dir, sizeof dir, "/tmp/rein-fuzz-policy.XXXXXX");
		if (rein_script_new(&sb) != REIN_OK || mkdtemp(dir) == NULL ||
		    freopen("/dev/null", "w", stdout) == NULL)
			abort();
	}
	if (size == 0)
		return 0;
	bool org = data[0] == 'o';
	if (put("org.yaml", org ? (const void *)(data + 1) : org_fixed,
		org ? size - 1 : sizeof org_fixed - 1) != 0 ||
	    put("cases.yaml", org ? (const void *)cases_fixed : (const void *)(data + 1),
		org ? sizeof cases_fixed - 1 : size - 1) != 0)
		abort();
	char path[128];
	snprintf(path, sizeof path, "%s/org.yaml", dir);
	json_t *rules = NULL;
	rein_err e = {0};
	if (org && rein_spec_policy_file(path, sb, &rules, &e) != REIN_OK && e.msg[0] == '\0')
		abort(); /* a refused file must say why */
	json_decref(rules);
	rein_err_clear(&e);
	snprintf(path, sizeof path, "%s/cases.yaml", dir);
	int ex = cmd_test(path, sb);
	if (ex < 0 || ex > 2)
		abort();
	return 0;
}
