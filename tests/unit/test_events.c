/*
 * The table of event types (src/engine/events.c): names round-trip, every
 * row is well formed, rein_event_check accepts the payloads the code writes
 * and refuses, in words, a missing field, a wrong type and a misplaced step;
 * the engine's dispatch families match the names;
 * an unknown type applied to a run is REIN_ECORRUPT in every build.
 */
#include "testlib.h"

#include "engine_int.h"

/* Checks data (JSON text) as an event of type; the code, err.msg in msg. */
static int check(const char *type, bool step, const char *data, char msg[1024])
{
	rein_err err = {0};
	json_t *d = J(data);
	int rc = rein_event_check(type, step, d, &err);
	snprintf(msg, 1024, "%s", err.msg);
	rein_err_clear(&err);
	json_decref(d);
	return rc;
}

static void test_round_trip(void **state)
{
	(void)state;
	for (int i = 0; i < REIN_EV__COUNT; i++) {
		const char *name = rein_event_name(i);
		assert_non_null(name);
		assert_int_equal(rein_event_type_find(name), i);
		assert_ptr_equal(rein_event_def_of(i)->type, name);
		/* a copy (not the table's pointer) finds the same row */
		char copy[64];
		snprintf(copy, sizeof copy, "%s", name);
		assert_int_equal(rein_event_type_find(copy), i);
		assert_string_equal(rein_event_name(rein_event_type_find(copy)), name);
	}
	/* the families the apply dispatches on are exactly the prefixes */
	for (int i = 0; i < REIN_EV__COUNT; i++) {
		const char *n = rein_event_name(i);
		bool tool = strncmp(n, "tool.", 5) == 0 || strncmp(n, "breaker.", 8) == 0;
		assert_int_equal(ENGINE_EV_TOOL(i), tool);
		assert_int_equal(ENGINE_EV_MODEL(i), strncmp(n, "model.", 6) == 0);
	}
	assert_int_equal(rein_event_type_find("no.such"), -1);
	assert_int_equal(rein_event_type_find("tool."), -1);
	assert_int_equal(rein_event_type_find(""), -1);
	assert_int_equal(rein_event_type_find(NULL), -1);
}

/* Every row: a layer, a doc line, fields "name:T" or "name:T?" with T known. */
static void test_rows_well_formed(void **state)
{
	(void)state;
	for (int i = 0; i < REIN_EV__COUNT; i++) {
		const rein_event_def *d = rein_event_def_of(i);
		assert_true(d->layer && *d->layer && d->doc && *d->doc && d->fields);
		char buf[256];
		snprintf(buf, sizeof buf, "%s", d->fields);
		for (char *save = NULL, *tok = strtok_r(buf, " ", &save); tok;
		     tok = strtok_r(NULL, " ", &save)) {
			char *colon = strchr(tok, ':');
			if (colon == NULL || colon == tok || !strchr("sinboaj", colon[1]) || colon[1] == 0 ||
			    (colon[2] != 0 && strcmp(colon + 2, "?") != 0))
				fail_msg("%s: bad field '%s'", d->type, tok);
		}
	}
	/* the Markdown has a header and one row per type */
	rein_buf b = {0};
	assert_int_equal(rein_event_types_markdown(&b), REIN_OK);
	int rows = 0;
	for (const char *p = b.p; (p = strstr(p, "\n| `")) != NULL; p++)
		rows++;
	assert_int_equal(rows, REIN_EV__COUNT);
	assert_non_null(strstr(b.p, "| `model.breaker` | model | yes |"));
	rein_buf_free(&b);
}

/* Payloads as the engine, the runner, the tools and the router write them. */
static void test_check_accepts_real_payloads(void **state)
{
	(void)state;
	static const struct {
		rein_event_type type;
		bool step;
		const char *data;
	} real[] = {
		{REIN_EV_RUN_STARTED, false, "{\"workflow\": \"w\", \"version\": \"v1\", \"input\": {\"q\": 1}}"},
		{REIN_EV_RUN_STARTED, false, "{\"workflow\": \"w\", \"version\": \"v1\", \"input\": null}"},
		{REIN_EV_RUN_RESUMED, false, "{\"owner\": \"w2\", \"previous_owner\": \"w1\"}"},
		{REIN_EV_RUN_ENDED, false, "{\"status\": \"failed\", \"reason\": \"timeout\", \"output\": null}"},
		{REIN_EV_RUN_ENDED, false, "{\"status\": \"succeeded\", \"reason\": null, \"output\": {\"a\": 1}}"},
		{REIN_EV_STEP_COMPLETED, true, "{\"out\": {\"waited_ms\": 5}}"},
		{REIN_EV_STEP_COMPLETED, true, "{\"out\": 3, \"attempt\": 1, \"latency_ms\": 4, \"status\": 200}"},
		{REIN_EV_STEP_FAILED, true, "{\"error\": \"budget spent\", \"budget\": true}"},
		{REIN_EV_TIMER_SCHEDULED, true, "{\"due_at\": 1700000000000}"},
		{REIN_EV_TIMER_FIRED, true, "{}"},
		{REIN_EV_INBOX_RECEIVED, false,
		 "{\"id\": \"m1\", \"type\": \"cancel\", \"data\": {}, \"sender\": \"cli\", \"at\": 5}"},
		{REIN_EV_TOOL_INTENT, true, "{\"tool\": \"pay\", \"key\": \"rein-ab\", \"args\": {\"amount\": 3}}"},
		{REIN_EV_TOOL_ATTEMPT, true,
		 "{\"attempt\": 1, \"outcome\": \"http_503\", \"error\": \"HTTP 503\", \"transient\": true, "
		 "\"ambiguous\": false, \"latency_ms\": 7, \"status\": 503}"},
		{REIN_EV_TOOL_BACKOFF, true, "{\"attempt\": 1, \"delay_ms\": 80, \"due_at\": 1080}"},
		{REIN_EV_TOOL_FALLBACK, true, "{\"kind\": \"tool\", \"from\": \"pay\", \"to\": \"pay2\", \"error\": \"x\"}"},
		{REIN_EV_TOOL_FALLBACK, true, "{\"kind\": \"cached\", \"from\": \"pay\"}"},
		{REIN_EV_TOOL_REFUSED, true, "{\"call_id\": \"c1\", \"tool\": \"rm\", \"error\": \"unknown tool\"}"},
		{REIN_EV_TOOL_RESULT, true, "{\"out\": {\"ok\": 1}, \"attempt\": 1, \"latency_ms\": 3}"},
		{REIN_EV_TOOL_RESULT, true, "{\"call_id\": \"c1\", \"tool\": \"look\", \"error\": \"gave up\"}"},
		{REIN_EV_BREAKER_OPENED, true, "{\"tool\": \"pay\", \"failures\": 5, \"window_ms\": 30000}"},
		{REIN_EV_BREAKER_HALF_OPEN, true, "{\"tool\": \"pay\"}"},
		{REIN_EV_BREAKER_CLOSED, true, "{\"tool\": \"pay\", \"reason\": \"probe succeeded\"}"},
		{REIN_EV_MODEL_INTENT, true,
		 "{\"tier\": \"fast\", \"provider\": \"replay\", \"model\": \"m\", \"request_hash\": \"ab\", "
		 "\"estimate\": {\"tokens\": 10, \"cost_usd\": 0.0}, \"params\": {}}"},
		{REIN_EV_MODEL_CALL, true,
		 "{\"tier\": \"fast\", \"provider\": \"replay\", \"request_hash\": \"ab\", \"response\": "
		 "{\"text\": \"hi\"}, \"cached\": false, \"usage\": {\"input\": 1, \"output\": 2}}"},
		{REIN_EV_MODEL_ATTEMPT, true,
		 "{\"attempt\": 1, \"outcome\": \"breaker_open\", \"error\": \"open\", \"transient\": false}"},
		{REIN_EV_MODEL_BACKOFF, true, "{\"attempt\": 2, \"delay_ms\": 10, \"due_at\": 20}"},
		{REIN_EV_MODEL_ROUTE, true, "{\"from\": \"fast\", \"to\": \"big\", \"reason\": \"budget\"}"},
		{REIN_EV_MODEL_BREAKER, true, "{\"state\": \"open\", \"provider\": \"openai\"}"},
	};
	char msg[1024];
	for (size_t i = 0; i < sizeof real / sizeof *real; i++)
		if (check(rein_event_name(real[i].type), real[i].step, real[i].data, msg) != REIN_OK)
			fail_msg("%s %s refused: %s", rein_event_name(real[i].type), real[i].data, msg);
	/* a field the table does not list is allowed (a newer writer) */
	assert_int_equal(check("timer.fired", true, "{\"new\": 1}", msg), REIN_OK);
}

static void test_check_refuses_in_words(void **state)
{
	(void)state;
	char msg[1024];
	assert_int_equal(check("tool.intent", true, "{\"tool\": \"pay\", \"args\": {}}", msg),
			 REIN_ECORRUPT);
	assert_string_equal(msg, "a tool.intent event lacks its field 'key'");
	/* null is no value for a required string */
	assert_int_equal(check("step.failed", true, "{\"error\": null}", msg), REIN_ECORRUPT);
	assert_string_equal(msg, "a step.failed event lacks its field 'error'");
	assert_int_equal(check("timer.scheduled", true, "{\"due_at\": \"soon\"}", msg), REIN_ECORRUPT);
	assert_string_equal(msg, "field 'due_at' of a timer.scheduled event must be an integer");
	assert_int_equal(check("tool.intent", true, "{\"tool\": \"pay\", \"key\": \"k\", \"args\": []}",
			       msg),
			 REIN_ECORRUPT);
	assert_string_equal(msg, "field 'args' of a tool.intent event must be an object");
	/* an optional field, when present, has its type */
	assert_int_equal(check("run.ended", false, "{\"status\": \"failed\", \"reason\": 3}", msg),
			 REIN_ECORRUPT);
	assert_string_equal(msg, "field 'reason' of a run.ended event must be a string");
	assert_int_equal(check("run.ended", true, "{\"status\": \"failed\"}", msg), REIN_ECORRUPT);
	assert_string_equal(msg, "a run.ended event must not name a step");
	assert_int_equal(check("step.completed", false, "{\"out\": 1}", msg), REIN_ECORRUPT);
	assert_string_equal(msg, "a step.completed event must name a step");
	assert_int_equal(check("step.completed", true, "[1]", msg), REIN_ECORRUPT);
	assert_string_equal(msg, "the data of a step.completed event must be an object");
	assert_int_equal(check("no.such", false, "{}", msg), REIN_ECORRUPT);
	assert_string_equal(msg, "unknown event type 'no.such'");
}

/* In every build (not only with the debug checks): a type the table does not
 * know, read back from a log, is a corrupt log, before or after run.started. */
static void test_apply_unknown_type(void **state)
{
	(void)state;
	rein_script *sb;
	assert_int_equal(rein_script_new(&sb), REIN_OK);
	rein_spec *spec = spec_from_yaml(sb, "rein: 1\nname: t\nsteps:\n"
					     "  a: { code: 'return 1', next: done }\n"
					     "  done: { end: succeeded }\n");
	rein_run *r;
	assert_int_equal(rein_run_new(spec, sb, "run_u", &r), REIN_OK);
	rein_err err = {0};
	json_t *d = J("{}");
	assert_int_equal(rein_run_apply(r, "run.begun", NULL, 1, d, &err), REIN_ECORRUPT);
	assert_string_equal(err.msg, "run run_u: unknown event type 'run.begun'");
	rein_err_clear(&err);
	json_t *s = J("{\"input\": {}, \"workflow\": \"t\", \"version\": \"1\"}");
	assert_int_equal(rein_run_apply(r, rein_event_name(REIN_EV_RUN_STARTED), NULL, 1, s, &err),
			 REIN_OK);
	assert_int_equal(rein_run_apply(r, "tool.intent2", "a", 2, d, &err), REIN_ECORRUPT);
	assert_string_equal(err.msg, "run run_u: unknown event type 'tool.intent2'");
	rein_err_clear(&err);
	/* the run is still usable: the known events go on */
	json_t *out = J("{\"out\": 1}");
	assert_int_equal(rein_run_apply(r, rein_event_name(REIN_EV_STEP_COMPLETED), "a", 3, out, &err),
			 REIN_OK);
	json_decref(out);
	json_decref(s);
	json_decref(d);
	rein_run_free(r);
	rein_spec_free(spec);
	rein_script_free(sb);
}

int main(void)
{
	rein_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_rows_well_formed),
		cmocka_unit_test(test_check_accepts_real_payloads),
		cmocka_unit_test(test_check_refuses_in_words),
		cmocka_unit_test(test_apply_unknown_type),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
