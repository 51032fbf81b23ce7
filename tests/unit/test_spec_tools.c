/*
 * What the spec loader makes of tools and models for the wire: an MCP tool
 * without a contract input takes the schema tools.lock recorded (the model is
 * offered it, the engine checks arguments against it), and a stale or broken
 * lock is handled.
 */
#include "testlib.h"

static const char *const mcp_wf =
	"rein: 1\nname: t\n"
	"mcp_servers:\n  fs: { command: [srv] }\n"
	"models:\n  main: { provider: replay, model: m }\n"
	"tools:\n"
	"  write: { mcp: fs, tool: write_file, effect: write }\n"
	"  other: { mcp: fs, tool: other_tool, effect: read }\n"
	"steps:\n"
	"  a: { agent: { model: main, prompt: hi, tools: [write, other] }, next: done }\n"
	"  done: { end: succeeded }\n";

static const char *const mcp_lock =
	"{\"lock\": 1, \"workflow\": \"t\", \"tools\": {"
	"\"write\": {\"kind\": \"mcp\", \"server\": \"fs\", \"tool\": \"write_file\", \"input\": "
	"{\"schema\": {\"type\": \"object\", \"required\": [\"path\", \"content\"], \"properties\": "
	"{\"path\": {\"type\": \"string\"}, \"content\": {\"type\": \"string\"}}}, \"sha256\": \"x\"}},"
	"\"other\": {\"kind\": \"mcp\", \"server\": \"fs\", \"tool\": \"renamed\", \"input\": "
	"{\"schema\": {\"type\": \"object\", \"required\": [\"q\"]}}}}}";

static int load2(rein_script *sb, const char *wf, const char *lock, rein_spec **spec, rein_err *e)
{
	json_t *b = json_pack("{s:{s:s, s:s?}}", "files", "workflow.yaml", wf, "tools.lock", lock);
	assert_non_null(b);
	int rc = rein_spec_load_bundle(b, "wf", sb, spec, e);
	json_decref(b);
	return rc;
}

static void test_locked_mcp_input(void **state)
{
	(void)state;
	rein_script *sb = NULL;
	assert_int_equal(rein_script_new(&sb), REIN_OK);
	rein_spec *spec = NULL;
	rein_err e = {0};
	assert_int_equal(load2(sb, mcp_wf, mcp_lock, &spec, &e), REIN_OK);
	const rein_tool *w = &spec->tools[rein_spec_tool(spec, "write")];
	const rein_tool *o = &spec->tools[rein_spec_tool(spec, "other")];
	assert_true(w->input_locked);
	assert_non_null(w->input);
	/* locked for another server tool: not taken */
	assert_false(o->input_locked);
	assert_null(o->input);
	/* the model is offered the locked schema, and {"type":"object"} for the other */
	const rein_step *a = &spec->steps[rein_spec_step(spec, "a")];
	const json_t *defs = a->u.agent.tool_defs;
	assert_json_eq(json_object_get(json_array_get(defs, 0), "parameters"),
		       "{\"type\": \"object\", \"required\": [\"path\", \"content\"], \"properties\": "
		       "{\"path\": {\"type\": \"string\"}, \"content\": {\"type\": \"string\"}}}");
	assert_json_eq(json_object_get(json_array_get(defs, 1), "parameters"), "{\"type\": \"object\"}");
	/* and the arguments are checked against it */
	json_t *bad = J("{\"path\": \"x\", \"content\": 42}");
	assert_int_equal(rein_schema_check(w->input, bad, &e, "args"), REIN_ESCHEMA);
	assert_non_null(strstr(e.msg, "/content"));
	rein_err_clear(&e);
	json_decref(bad);
	/* the lock is part of the bundle, hence of the version */
	char v1[sizeof spec->version];
	memcpy(v1, spec->version, sizeof v1);
	rein_spec_free(spec);
	spec = NULL;
	assert_int_equal(load2(sb, mcp_wf, NULL, &spec, &e), REIN_OK);
	assert_string_not_equal(v1, spec->version);
	assert_null(spec->tools[0].input);
	rein_spec_free(spec);
	spec = NULL;

	/* a lock that is not JSON is reported, naming the file */
	assert_int_equal(load2(sb, mcp_wf, "{nope", &spec, &e), REIN_ESPEC);
	assert_string_equal(e.diags.v[0].file, "wf/tools.lock");
	assert_non_null(strstr(e.diags.v[0].msg, "tools.lock is not JSON"));
	rein_err_clear(&e);
	rein_script_free(sb);
}

static const char *const sec_wf = "rein: 1\nname: t\ntools:\n  echo: tools/echo.yaml\n"
				  "steps:\n  a: { tool: echo, args: {}, next: done }\n"
				  "  done: { end: succeeded }\n";

static int load_tool(rein_script *sb, const char *secrets, rein_spec **spec, rein_err *e)
{
	char tool[1024];
	snprintf(tool, sizeof tool,
		 "effect: read\ninput: { type: object }\nhttp:\n  method: GET\n  url: \"http://127.0.0.1:1/x\"\n"
		 "  headers: { Authorization: \"Bearer ${secret.api_key}\" }\n"
		 "secrets:\n%s",
		 secrets);
	json_t *b = json_pack("{s:{s:s, s:s}}", "files", "workflow.yaml", sec_wf, "tools/echo.yaml",
			      tool);
	assert_non_null(b);
	int rc = rein_spec_load_bundle(b, "wf", sb, spec, e);
	json_decref(b);
	return rc;
}

/* A secret scoped by tenant: each tenant's source, the default, none; the
 * credential names what a run of each tenant uses; bad forms are located. */
static void test_tenant_secrets(void **state)
{
	(void)state;
	rein_script *sb = NULL;
	assert_int_equal(rein_script_new(&sb), REIN_OK);
	rein_spec *spec = NULL;
	rein_err e = {0};
	assert_int_equal(load_tool(sb,
				   "  api_key:\n    tenants:\n      acme: { env: ACME_KEY }\n"
				   "      globex: { file: /run/globex }\n",
				   &spec, &e),
			 REIN_OK);
	const rein_tool *t = &spec->tools[0];
	assert_true(t->secrets[0].scoped);
	rein_secret_src src = {0};
	assert_true(rein_secret_pick(&t->secrets[0], "acme", &src));
	assert_string_equal(src.env, "ACME_KEY");
	assert_null(src.file);
	assert_true(rein_secret_pick(&t->secrets[0], "globex", &src));
	assert_string_equal(src.file, "/run/globex");
	assert_false(rein_secret_pick(&t->secrets[0], "initech", &src));
	assert_false(rein_secret_pick(&t->secrets[0], NULL, &src));
	bool oom = true;
	char *c = rein_tool_credential(t, "acme", &oom);
	assert_false(oom);
	assert_string_equal(c, "api_key (tenant acme, env ACME_KEY)");
	rein_free(c);
	c = rein_tool_credential(t, "globex", &oom);
	assert_string_equal(c, "api_key (tenant globex, file /run/globex)");
	rein_free(c);
	c = rein_tool_credential(t, "initech", &oom);
	assert_string_equal(c, "api_key (tenant initech: no entry and no default)");
	rein_free(c);
	rein_spec_free(spec);
	spec = NULL;

	/* with a default; and an unscoped secret beside it */
	assert_int_equal(load_tool(sb,
				   "  api_key:\n    tenants: { acme: { env: ACME_KEY } }\n"
				   "    default: { env: SHARED_KEY }\n  other: { env: OTHER }\n",
				   &spec, &e),
			 REIN_OK);
	t = &spec->tools[0];
	assert_true(rein_secret_pick(&t->secrets[0], "initech", &src));
	assert_string_equal(src.env, "SHARED_KEY");
	assert_true(rein_secret_pick(&t->secrets[0], NULL, &src));
	assert_false(t->secrets[1].scoped);
	assert_true(rein_secret_pick(&t->secrets[1], "acme", &src));
	assert_string_equal(src.env, "OTHER");
	c = rein_tool_credential(t, "initech", &oom);
	assert_string_equal(c, "api_key (tenant initech, default, env SHARED_KEY); other (env OTHER)");
	rein_free(c);
	c = rein_tool_credential(t, "acme", &oom);
	assert_string_equal(c, "api_key (tenant acme, env ACME_KEY); other (env OTHER)");
	rein_free(c);
	rein_spec_free(spec);
	spec = NULL;

	/* a tool without secrets has no credential */
	assert_int_equal(load_tool(sb, "  api_key: { env: K }\n", &spec, &e), REIN_OK);
	rein_tool bare = spec->tools[0];
	bare.nsecrets = 0;
	assert_null(rein_tool_credential(&bare, "acme", &oom));
	assert_false(oom);
	rein_spec_free(spec);
	spec = NULL;

	/* bad forms, located */
	static const char *const bad[][2] = {
		{"  api_key:\n    tenants: { acme: { env: A, file: B } }\n",
		 "secret 'api_key' needs exactly one of 'env' or 'file'"},
		{"  api_key:\n    tenants: { acme: { vault: x } }\n", "vault"},
		{"  api_key:\n    tenants: {}\n", "secret 'api_key' has no tenants"},
		{"  api_key:\n    tenants: [acme]\n", "tenants"},
		{"  api_key:\n    tenants: { acme: { env: A } }\n    default: {}\n",
		 "secret 'api_key' needs exactly one of 'env' or 'file'"},
		{"  api_key:\n    tenants: { acme: { env: A } }\n    fallback: { env: B }\n", "fallback"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_int_equal(load_tool(sb, bad[i][0], &spec, &e), REIN_ESPEC);
		bool found = false;
		for (size_t d = 0; d < e.diags.n; d++)
			found |= strstr(e.diags.v[d].msg, bad[i][1]) != NULL &&
				 strcmp(e.diags.v[d].file, "wf/tools/echo.yaml") == 0 &&
				 e.diags.v[d].line > 0;
		if (!found)
			fail_msg("case %zu: no located '%s' in: %s", i, bad[i][1],
				 e.diags.n ? e.diags.v[0].msg : e.msg);
		rein_err_clear(&e);
	}
	rein_script_free(sb);
}

/* trust, readers and provenance on a tool contract (docs/policy.md,
 * "Provenance"): the defaults, the values, and located errors. */
static void test_provenance_fields(void **state)
{
	(void)state;
	rein_script *sb = NULL;
	assert_int_equal(rein_script_new(&sb), REIN_OK);
	const char *good = "rein: 1\nname: t\n"
			   "tools:\n"
			   "  a: { http: { url: 'http://x/' }, input: { type: object }, effect: read }\n"
			   "  b: { http: { url: 'http://x/' }, input: { type: object }, effect: read, trust: trusted, readers: [public, 'tenant:acme', 'role:r'], provenance: retrieval }\n"
			   "  c: { http: { url: 'http://x/' }, input: { type: object }, effect: read, trust: untrusted, readers: [] }\n"
			   "steps:\n  s: { tool: a, args: {}, next: done }\n  done: { end: succeeded }\n";
	rein_spec *spec = NULL;
	rein_err e = {0};
	int grc = load2(sb, good, NULL, &spec, &e);
	if (grc != REIN_OK)
		rein_diags_print(&e.diags, stderr);
	assert_int_equal(grc, REIN_OK);
	const rein_tool *a = &spec->tools[rein_spec_tool(spec, "a")], *b = &spec->tools[rein_spec_tool(spec, "b")];
	const rein_tool *c = &spec->tools[rein_spec_tool(spec, "c")];
	assert_false(a->trusted);
	assert_null(a->readers); /* the run's tenant */
	assert_false(a->retrieval);
	assert_true(b->trusted && b->retrieval);
	assert_json_eq(b->readers, "[\"public\", \"tenant:acme\", \"role:r\"]");
	assert_false(c->trusted);
	assert_json_eq(c->readers, "[]");
	rein_spec_free(spec);
	spec = NULL;
	const char *bad = "rein: 1\nname: t\n"
			  "tools:\n"
			  "  a: { http: { url: 'http://x/' }, input: { type: object }, effect: read, trust: yes }\n"
			  "  b: { http: { url: 'http://x/' }, input: { type: object }, effect: read, readers: tenant }\n"
			  "  c: { http: { url: 'http://x/' }, input: { type: object }, effect: read, readers: [public, 'tenant:', boss] }\n"
			  "  d: { http: { url: 'http://x/' }, input: { type: object }, effect: read, provenance: web }\n"
			  "steps:\n  s: { tool: a, args: {}, next: done }\n  done: { end: succeeded }\n";
	assert_int_equal(load2(sb, bad, NULL, &spec, &e), REIN_ESPEC);
	static const struct {
		int line;
		const char *msg;
	} want[] = {
		{4, "trust must be trusted or untrusted"},
		{5, "readers must be a list (public, tenant:T, role:R)"},
		{6, "reader 'tenant:' must be public, tenant:T or role:R"},
		{6, "reader 'boss' must be public, tenant:T or role:R"},
		{7, "provenance must be retrieval"},
	};
	for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
		bool found = false;
		for (size_t k = 0; k < e.diags.n; k++)
			found = found || (e.diags.v[k].line == want[i].line && strstr(e.diags.v[k].msg, want[i].msg));
		if (!found)
			rein_diags_print(&e.diags, stderr);
		assert_true(found);
	}
	rein_err_clear(&e);
	rein_script_free(sb);
}

/* A tool's `approval:` (docs/approvals.md): normalized with its defaults;
 * every bad setting located at its line; risk defaults to low, also for a
 * write tool (a write waits only when its risk says so). */
static void test_tool_approval(void **state)
{
	(void)state;
	rein_script *sb = NULL;
	assert_int_equal(rein_script_new(&sb), REIN_OK);
	static const char *good = "rein: 1\nname: a\n"
				  "tools:\n"
				  "  pay:\n"
				  "    http: { url: 'http://127.0.0.1:9/p' }\n"
				  "    effect: write\n"
				  "    input: { type: object }\n"
				  "    approval: { approvers: 2, roles: [finance] }\n"
				  "  w2: { http: { url: 'http://127.0.0.1:9/p' }, effect: write, input: { type: object } }\n"
				  "steps:\n  s: { tool: pay, args: {}, next: d }\n  d: { end: succeeded }\n";
	rein_spec *spec = spec_from_yaml(sb, good);
	const rein_tool *t = &spec->tools[rein_spec_tool(spec, "pay")];
	assert_json_eq(t->approval, "{\"approvers\": 2, \"roles\": [\"finance\"], \"sla_s\": 86400, "
				    "\"on_timeout\": \"escalate\"}");
	assert_int_equal(t->risk, REIN_RISK_LOW);
	assert_int_equal(spec->tools[rein_spec_tool(spec, "w2")].risk, REIN_RISK_LOW);
	assert_null(spec->tools[rein_spec_tool(spec, "w2")].approval);
	rein_spec_free(spec);
	static const struct {
		const char *setting, *msg;
	} bad[] = {
		{"5", "approval must be a mapping"},
		{"{ approvers: 0 }", "approvers must be an integer from 1 to 10"},
		{"{ roles: finance }", "roles must be a list"},
		{"{ roles: [''] }", "roles must be a list"},
		{"{ sla_s: 0 }", "sla_s must be a positive integer"},
		{"{ on_timeout: later }", "on_timeout must be escalate, deny or halt"},
		{"{ who: me }", "unknown key 'who'"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		char yaml[1024];
		snprintf(yaml, sizeof yaml,
			 "rein: 1\nname: a\ntools:\n  pay:\n    http: { url: 'http://127.0.0.1:9/p' }\n"
			 "    effect: write\n    input: { type: object }\n    approval: %s\n"
			 "steps:\n  s: { tool: pay, args: {}, next: d }\n  d: { end: succeeded }\n",
			 bad[i].setting);
		json_t *bundle = json_pack("{s:{s:s}}", "files", "workflow.yaml", yaml);
		rein_spec *sp = NULL;
		rein_err e = {0};
		assert_int_equal(rein_spec_load_bundle(bundle, "t", sb, &sp, &e), REIN_ESPEC);
		assert_true(e.diags.n >= 1);
		assert_int_equal(e.diags.v[0].line, 8);
		if (strstr(e.diags.v[0].msg, bad[i].msg) == NULL)
			fail_msg("'%s': '%s' lacks '%s'", bad[i].setting, e.diags.v[0].msg, bad[i].msg);
		rein_err_clear(&e);
		json_decref(bundle);
	}
	rein_script_free(sb);
}

/* What a code step's text can read, found once at load (spec_code_reads):
 * the engine's label of a code step without recorded labels joins these. */
static void test_code_reads(void **state)
{
	(void)state;
	rein_script *sb = NULL;
	assert_int_equal(rein_script_new(&sb), REIN_OK);
	static const char *const wf =
		"rein: 1\nname: t\n"
		"steps:\n"
		"  a: { code: 'return { n = 1 } -- steps.b in a comment counts', next: b }\n"
		"  b: { code: 'return { x = input.q, y = steps[\"a\"].out.n, z = steps.a.out.n, w = t.steps }',"
		" next: c }\n"
		"  c: { code: 'local k = \"a\"; return { v = steps[k], i = myinput, j = x.input }', next: d }\n"
		"  d: { code: 'return { v = steps.nosuch, w = steps.c, u = steps .b }', next: done }\n"
		"  done: { end: succeeded }\n";
	rein_spec *sp = NULL;
	rein_err e = {0};
	assert_int_equal(load2(sb, wf, NULL, &sp, &e), REIN_OK);
	const rein_step_code *a = &sp->steps[rein_spec_step(sp, "a")].u.code;
	const rein_step_code *b = &sp->steps[rein_spec_step(sp, "b")].u.code;
	const rein_step_code *c = &sp->steps[rein_spec_step(sp, "c")].u.code;
	const rein_step_code *d = &sp->steps[rein_spec_step(sp, "d")].u.code;
	assert_false(a->reads_input || a->reads_all);
	assert_int_equal(a->nreads, 1);
	assert_int_equal(a->reads[0], rein_spec_step(sp, "b"));
	/* input as a whole name; steps["a"] and steps.a are one read; t.steps is a field */
	assert_true(b->reads_input);
	assert_false(b->reads_all);
	assert_int_equal(b->nreads, 1);
	assert_int_equal(b->reads[0], rein_spec_step(sp, "a"));
	/* an index that is not a literal reads every step; myinput, x.input are not input */
	assert_true(c->reads_all);
	assert_false(c->reads_input);
	/* a name of no step reads nothing; spaces before the dot are allowed */
	assert_false(d->reads_all || d->reads_input);
	assert_int_equal(d->nreads, 2);
	assert_int_equal(d->reads[0], rein_spec_step(sp, "c"));
	assert_int_equal(d->reads[1], rein_spec_step(sp, "b"));
	/* the constant label, shared by the spec's runs */
	assert_non_null(sp->const_label);
	assert_true(rein_label_trusted(sp->const_label));
	assert_int_equal(json_array_size(json_object_get(sp->const_label, "sources")), 0);
	assert_true(rein_label_readable(sp->const_label, NULL));
	rein_spec_free(sp);
	rein_script_free(sb);
}

int main(void)
{
	rein_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_locked_mcp_input),
		cmocka_unit_test(test_tenant_secrets), cmocka_unit_test(test_provenance_fields),
		cmocka_unit_test(test_tool_approval), cmocka_unit_test(test_code_reads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
