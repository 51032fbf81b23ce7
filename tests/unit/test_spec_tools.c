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

int main(void)
{
	rein_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_locked_mcp_input),
		cmocka_unit_test(test_tool_approval),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
