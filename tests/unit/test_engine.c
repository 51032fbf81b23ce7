/*
 * The pure engine: events in, commands out, on a manual clock. Each test
 * drives a run to its end by obeying the commands, then replays the recorded
 * events into a fresh run and checks it reaches the same state. Most cases
 * are data (run_case: workflow, input, scripted answers, the end expected);
 * a test checks by hand only what a table cannot say.
 */
#include "testlib.h"

#include <sys/stat.h>

typedef struct ev {
	const char *type;
	char *step;
	int64_t at;
	json_t *data;
} ev;

typedef struct drive {
	rein_script *sb;
	rein_spec *spec;
	rein_run *run;
	ev evs[512];
	size_t n;
	int64_t now;
} drive;

static void record_apply(drive *d, const char *type, int step, json_t *data)
{
	assert_true(d->n < 512);
	ev *e = &d->evs[d->n++];
	e->type = type;
	e->step = step >= 0 ? strdup(d->spec->steps[step].name) : NULL;
	e->at = d->now;
	e->data = json_incref(data);
	rein_err err = {0};
	int rc = rein_run_apply(d->run, type, e->step, e->at, data, &err);
	if (rc)
		fprintf(stderr, "apply %s: %s\n", type, err.msg);
	assert_int_equal(rc, REIN_OK);
	assert_true(rein_run_check(d->run, &err));
}

/* Scripted tool outcomes, consumed in order by EXECs of tool steps: "ok",
 * "503", "timeout", "429:1500" (Retry-After ms), "400", "crash" (stop driving
 * here, as if the process died with the call in flight). */
static const char *const *script;
static int script_pos;
static bool crashed;

static void answer_tool(drive *d, int step)
{
	rein_tool_call call;
	assert_int_equal(rein_run_tool_call(d->run, step, &call), REIN_OK);
	if (call.cached) {
		json_t *data = json_pack("{s:s, s:s, s:{s:b}}", "kind", "cached", "from",
					 d->spec->tools[call.tool].name, "result", "cached", 1);
		record_apply(d, EV(TOOL_FALLBACK), step, data);
		json_decref(data);
		return;
	}
	const char *what = script && script[script_pos] ? script[script_pos++] : "ok";
	if (strcmp(what, "crash") == 0) {
		crashed = true;
		return;
	}
	json_t *data;
	const char *type = EV(TOOL_ATTEMPT);
	if (strcmp(what, "ok") == 0) {
		type = EV(STEP_COMPLETED);
		data = json_pack("{s:{s:s, s:i}, s:i}", "out", "key", call.key, "attempt", call.attempt,
				 "attempt", call.attempt);
	} else if (strcmp(what, "timeout") == 0) {
		data = json_pack("{s:i, s:s, s:s, s:b, s:b}", "attempt", call.attempt, "outcome", "timeout",
				 "error", "timed out", "transient", 1, "ambiguous", 1);
	} else if (strncmp(what, "429:", 4) == 0) {
		data = json_pack("{s:i, s:s, s:s, s:b, s:b, s:I}", "attempt", call.attempt, "outcome",
				 "http_429", "error", "HTTP 429", "transient", 1, "ambiguous", 0,
				 "retry_after_ms", (json_int_t)atoi(what + 4));
	} else {
		int code = atoi(what);
		bool transient = code == 503 || code == 500;
		data = json_pack("{s:i, s:s, s:s, s:b, s:b}", "attempt", call.attempt, "outcome", what,
				 "error", what, "transient", transient, "ambiguous", code == 500);
	}
	d->now += 5;
	record_apply(d, type, step, data);
	json_decref(data);
}

/* Scripted model answers for llm steps: a JSON output ("{...}"), or
 * "fail:MS" (a transient failure with Retry-After MS). */
static const char *const *mscript;
static int mscript_pos;
/* The clock code steps' time limits are read against (NULL: none). */
static const rein_clock *exec_clock;

static void answer_model(drive *d, int step)
{
	rein_model_request call;
	assert_int_equal(rein_run_model_call(d->run, step, &call), REIN_OK);
	const char *what = mscript && mscript[mscript_pos] ? mscript[mscript_pos++] : "{}";
	json_t *data;
	const char *type = EV(MODEL_CALL);
	if (strncmp(what, "fail:", 5) == 0) {
		type = EV(MODEL_ATTEMPT);
		data = json_pack("{s:i, s:s, s:s, s:b, s:I}", "attempt", call.attempt, "outcome", "http_429",
				 "error", "HTTP 429", "transient", 1, "retry_after_ms", (json_int_t)atoi(what + 5));
	} else {
		data = json_pack("{s:s, s:s, s:{s:i, s:i}, s:f, s:{s:s, s:o}}", "tier",
				 d->spec->tiers[call.tier].name, "request_hash", "h", "usage", "input", 10,
				 "output", 5, "cost_usd", 0.001, "response", "text", what, "output", J(what));
	}
	d->now += 5;
	record_apply(d, type, step, data);
	json_decref(data);
}

/* Obeys the run's commands, answering EXECs (tool and llm steps from the
 * scripts), until it has nothing left to do or a scripted crash; false if
 * it is still going after max commands. */
static bool obey(drive *d, int max)
{
	rein_err err = {0};
	for (int guard = 0; guard < max; guard++) {
		rein_cmd c;
		assert_int_equal(rein_run_poll(d->run, d->now, &c, &err), REIN_OK);
		if (c.kind == REIN_CMD_NONE)
			return true;
		if (c.kind == REIN_CMD_SLEEP) {
			assert_true(c.due > d->now);
			d->now = c.due;
			continue;
		}
		if (c.kind == REIN_CMD_EMIT) {
			record_apply(d, c.type, c.step, c.data);
			rein_cmd_clear(&c);
			continue;
		}
		assert_int_equal(c.kind, REIN_CMD_EXEC);
		if (d->spec->steps[c.step].kind == REIN_STEP_LLM ||
		    d->spec->steps[c.step].kind == REIN_STEP_VERIFY) {
			answer_model(d, c.step);
			continue;
		}
		if (d->spec->steps[c.step].kind == REIN_STEP_TOOL) {
			answer_tool(d, c.step);
			if (crashed)
				return true;
			continue;
		}
		const char *type;
		json_t *data;
		assert_int_equal(rein_run_exec(d->run, c.step, exec_clock, &type, &data, &err), REIN_OK);
		d->now += 1;
		record_apply(d, type, c.step, data);
		json_decref(data);
	}
	return false;
}

/* Starts and drives a run to its end (or to max events). */
static void run_to_end(drive *d, const char *yaml, const char *input)
{
	assert_int_equal(rein_script_new(&d->sb), REIN_OK);
	d->spec = spec_from_yaml(d->sb, yaml);
	d->now = 1000000;
	assert_int_equal(rein_run_new(d->spec, d->sb, "run_test", &d->run), REIN_OK);
	json_t *start = json_pack("{s:o, s:s, s:s}", "input", J(input), "workflow", "t", "version", "1");
	record_apply(d, EV(RUN_STARTED), -1, start);
	json_decref(start);
	if (!obey(d, 400))
		fail_msg("run did not end");
}

/* A fresh run with the recorded events folded in. */
static rein_run *replay(drive *d)
{
	rein_run *r = NULL;
	rein_err err = {0};
	assert_int_equal(rein_run_new(d->spec, d->sb, "run_test", &r), REIN_OK);
	for (size_t i = 0; i < d->n; i++)
		assert_int_equal(
			rein_run_apply(r, d->evs[i].type, d->evs[i].step, d->evs[i].at, d->evs[i].data, &err),
			REIN_OK);
	return r;
}

/* Folds the recorded events into a fresh run: same status and output. */
static void check_replay(drive *d)
{
	rein_run *r = replay(d);
	rein_err err = {0};
	assert_int_equal(rein_run_status(r), rein_run_status(d->run));
	assert_true(json_equal(rein_run_output(r), rein_run_output(d->run)));
	const char *r1 = rein_run_reason(r), *r2 = rein_run_reason(d->run);
	assert_true((r1 == NULL && r2 == NULL) || (r1 && r2 && strcmp(r1, r2) == 0));
	assert_int_equal(rein_run_steps_taken(r), rein_run_steps_taken(d->run));
	rein_cmd c;
	assert_int_equal(rein_run_poll(r, d->now, &c, &err), REIN_OK);
	assert_int_equal(c.kind, REIN_CMD_NONE);
	rein_run_free(r);
}

static void drive_free(drive *d)
{
	for (size_t i = 0; i < d->n; i++) {
		free(d->evs[i].step);
		json_decref(d->evs[i].data);
	}
	rein_run_free(d->run);
	rein_spec_free(d->spec);
	rein_script_free(d->sb);
}

static int count(drive *d, const char *type, const char *step)
{
	int n = 0;
	for (size_t i = 0; i < d->n; i++)
		if (strcmp(d->evs[i].type, type) == 0 &&
		    (step == NULL || (d->evs[i].step && strcmp(d->evs[i].step, step) == 0)))
			n++;
	return n;
}

/* The data of the nth event of type; NULL if there are fewer. */
static const json_t *event_data(drive *d, const char *type, int nth)
{
	for (size_t i = 0; i < d->n; i++)
		if (strcmp(d->evs[i].type, type) == 0 && nth-- == 0)
			return d->evs[i].data;
	return NULL;
}

/* One run of a workflow and what it must come to. */
typedef struct run_case {
	const char *what; /* for the log */
	const char *yaml;
	const char *input;
	const char *const *tools;  /* scripted tool outcomes; NULL: every call ok */
	const char *const *models; /* scripted model answers; NULL: every answer {} */
	rein_status status;
	const char *output;        /* the output as JSON; NULL: not checked */
	const char *reason;        /* the whole reason; NULL: not checked */
	const char *reason_has[2]; /* parts the reason must hold */
	struct {
		const char *type, *step; /* events of type at step (NULL: at any step) */
		int n;
	} counts[3];
	/* Every case replays by default: its events fold into a fresh run that
	 * reaches the same state and decides nothing more. A case that cannot
	 * says why here. */
	const char *no_replay;
} run_case;

/* Drives c's run to its end and checks it; d is left for more checks, the
 * caller frees it with drive_free. */
static void run_case_check(drive *d, const run_case *c)
{
	fprintf(stderr, "  case: %s\n", c->what);
	script = c->tools;
	script_pos = 0;
	mscript = c->models;
	mscript_pos = 0;
	*d = (drive){0};
	run_to_end(d, c->yaml, c->input);
	assert_int_equal(rein_run_status(d->run), c->status);
	if (c->output != NULL)
		assert_json_eq(rein_run_output(d->run), c->output);
	if (c->reason != NULL)
		assert_string_equal(rein_run_reason(d->run), c->reason);
	if (c->reason_has[0] != NULL)
		assert_non_null(rein_run_reason(d->run));
	for (size_t i = 0; i < 2 && c->reason_has[i] != NULL; i++)
		assert_non_null(strstr(rein_run_reason(d->run), c->reason_has[i]));
	for (size_t i = 0; i < 3 && c->counts[i].type != NULL; i++)
		assert_int_equal(count(d, c->counts[i].type, c->counts[i].step), c->counts[i].n);
	if (c->no_replay == NULL)
		check_replay(d);
}

/* Runs cases that need no check beyond their own. */
static void run_cases(const run_case *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		drive d;
		run_case_check(&d, &cases[i]);
		drive_free(&d);
	}
}

#define NCASES(a) (sizeof(a) / sizeof *(a))

static void test_routing(void **state)
{
	(void)state;
	static const char *y = "rein: 1\nname: r\nsteps:\n"
			       "  a: { code: 'return { v = input.v }', next: [ { when: 'out.v > 10', goto: big }, { goto: small } ] }\n"
			       "  big: { end: succeeded, output: '${ { size = \"big\", v = steps.a.out.v } }' }\n"
			       "  small: { end: escalated, reason: 'small: ${steps.a.out.v}' }\n";
	const run_case cases[] = {
		{.what = "big", .yaml = y, .input = "{\"v\": 11}", .status = REIN_RUN_SUCCEEDED,
		 .output = "{\"size\":\"big\",\"v\":11}"},
		{.what = "small: the default output is the previous one", .yaml = y,
		 .input = "{\"v\": 3}", .status = REIN_RUN_ESCALATED, .reason = "small: 3",
		 .output = "{\"v\":3}"},
	};
	run_cases(cases, NCASES(cases));
}

static void test_parallel_join(void **state)
{
	(void)state;
	static const char *y =
		"rein: 1\nname: p\nsteps:\n"
		"  fan: { parallel: { branches: [l1, r1] }, next: sum }\n"
		"  l1: { code: 'return 1', next: l2 }\n"
		"  l2: { wait: 5, next: l3 }\n"
		"  l3: { code: 'return steps.l1.out + 10' }\n"
		"  r1: { parallel: [x, y], next: r2 }\n"
		"  x: { wait: 2 }\n"
		"  y: { code: 'return 7' }\n"
		"  r2: { code: 'return steps.r1.out.y * 2' }\n"
		"  sum: { code: 'return steps.fan.out.l1 + steps.fan.out.r1', next: done }\n"
		"  done: { end: succeeded }\n";
	drive d;
	run_case_check(&d, &(const run_case){
		.what = "11 + 14", .yaml = y, .input = "{}", .status = REIN_RUN_SUCCEEDED,
		.output = "25",
		.counts = {{EV(STEP_COMPLETED), "fan", 1}, {EV(STEP_COMPLETED), "r1", 1},
			   {EV(TIMER_FIRED), NULL, 2}}});
	/* the branches' timers ran side by side: 5 s, not 7 s, of virtual time */
	assert_true(d.now - 1000000 < 6000);
	drive_free(&d);
}

/* A clock far past any deadline: a script that reads it is out of time. */
static int64_t late_ms(void *ctx)
{
	(void)ctx;
	return INT64_C(1) << 50;
}

static void test_code_timeout(void **state)
{
	(void)state;
	static const rein_clock late = {late_ms, NULL};
	/* a busy loop under a large instruction budget: the run's timeout_s
	 * stops it, not the budget, and on_fail is not taken (the time is up) */
	static const char *y =
		"rein: 1\nname: t\nbudgets: { timeout_s: 1 }\nsteps:\n"
		"  spin:\n"
		"    code: { instructions: 50000000, source: 'local x = 0 while true do x = x + 1 end' }\n"
		"    on_fail: caught\n"
		"    next: done\n"
		"  done: { end: succeeded }\n"
		"  caught: { end: escalated, reason: 'caught: ${why}' }\n";
	exec_clock = &late;
	const run_case cases[] = {
		{.what = "the run's deadline inside a code step", .yaml = y, .input = "{}",
		 .status = REIN_RUN_FAILED,
		 .reason = "timeout: the run exceeded timeout_s 1 while step 'spin' ran",
		 .counts = {{EV(STEP_FAILED), "spin", 1}}},
	};
	run_cases(cases, NCASES(cases));
	exec_clock = NULL;
	/* without a clock (a pure caller) only the instruction budget holds */
	const run_case pure[] = {
		{.what = "no clock: the budget", .yaml = y, .input = "{}",
		 .status = REIN_RUN_ESCALATED, .reason_has = {"caught: ", "instruction budget"}},
	};
	run_cases(pure, NCASES(pure));
}

static void test_wait_timer(void **state)
{
	(void)state;
	static const char *y = "rein: 1\nname: w\nsteps:\n"
			       "  w: { wait: { seconds: '${input.s}' }, next: done }\n"
			       "  done: { end: succeeded }\n";
	drive d;
	run_case_check(&d, &(const run_case){
		.what = "1.5 s", .yaml = y, .input = "{\"s\": 1.5}", .status = REIN_RUN_SUCCEEDED,
		.output = "{\"waited_ms\": 1500}", .counts = {{EV(TIMER_SCHEDULED), "w", 1}}});
	/* due_at = schedule time + 1500 ms */
	for (size_t i = 0; i < d.n; i++)
		if (rein_event_type_find(d.evs[i].type) == REIN_EV_TIMER_SCHEDULED)
			assert_int_equal(json_integer_value(json_object_get(d.evs[i].data, "due_at")),
					 d.evs[i].at + 1500);
	drive_free(&d);

	run_cases(&(const run_case){.what = "not a number", .yaml = y, .input = "{\"s\": \"soon\"}",
				    .status = REIN_RUN_FAILED, .reason_has = {"wait seconds"}},
		  1);
}

static void test_loop_bounds(void **state)
{
	(void)state;
	const run_case cases[] = {
		{.what = "a loop bounded by max_visits, escalating through on_fail",
		 .yaml = "rein: 1\nname: l\nsteps:\n"
			 "  poll: { code: 'return { ready = false }', max_visits: 3, on_fail: giveup,\n"
			 "          next: [ { when: 'out.ready', goto: done }, { goto: poll } ] }\n"
			 "  done: { end: succeeded }\n"
			 "  giveup: { end: escalated, reason: '${why}' }\n",
		 .input = "{}", .status = REIN_RUN_ESCALATED,
		 .reason = "step 'poll' exceeded max_visits 3",
		 .counts = {{EV(STEP_COMPLETED), "poll", 3}}},
		{.what = "without on_fail: the run fails; max_steps stops a bounded but long loop",
		 .yaml = "rein: 1\nname: l2\nbudgets: { max_steps: 10 }\nsteps:\n"
			 "  poll: { code: 'return 1', max_visits: 100, next: poll }\n",
		 .input = "{}", .status = REIN_RUN_FAILED,
		 .reason = "budget: max_steps 10 exceeded entering 'poll'",
		 .counts = {{EV(STEP_COMPLETED), "poll", 10}}},
	};
	run_cases(cases, NCASES(cases));
}

static void test_timeout(void **state)
{
	(void)state;
	drive d;
	run_case_check(&d, &(const run_case){
		.what = "timeout_s", .yaml = "rein: 1\nname: t\nbudgets: { timeout_s: 10 }\nsteps:\n"
					      "  w: { wait: 60, next: done }\n"
					      "  done: { end: succeeded }\n",
		.input = "{}", .status = REIN_RUN_FAILED,
		.reason = "timeout: the run exceeded timeout_s 10"});
	assert_int_equal(d.now, 1000000 + 10000);
	drive_free(&d);
}

static void test_step_errors(void **state)
{
	(void)state;
	drive d;
	run_case_check(&d, &(const run_case){
		.what = "on_fail recovers",
		.yaml = "rein: 1\nname: e\nsteps:\n"
			"  a: { code: 'return input.x.y', on_fail: recover, next: done }\n"
			"  recover: { code: 'return { recovered = why }', next: done }\n"
			"  done: { end: succeeded }\n",
		.input = "{}", .status = REIN_RUN_SUCCEEDED, .counts = {{EV(STEP_FAILED), "a", 1}}});
	const char *why = json_string_value(json_object_get(rein_run_output(d.run), "recovered"));
	assert_non_null(why);
	assert_non_null(strstr(why, "workflow.yaml:4:")); /* the spec file and line */
	assert_null(strstr(why, "t/workflow.yaml")); /* inside the workflow, not its load path */
	drive_free(&d);

	run_cases(&(const run_case){
			  .what = "a `when` that fails at run time, no on_fail: the run fails, saying where",
			  .yaml = "rein: 1\nname: e2\nsteps:\n"
				  "  a: { code: 'return 1', next: [ { when: 'out.nope.deeper', goto: done }, { goto: done } ] }\n"
				  "  done: { end: succeeded }\n",
			  .input = "{}", .status = REIN_RUN_FAILED,
			  .reason_has = {"step 'a' failed: when 'out.nope.deeper'"}},
		  1);

	/* an end without a reason reached through on_fail says which step failed
	 * and why, through any steps between; a success says nothing */
	const run_case ends[] = {
		{.what = "on_fail to an end without a reason: the failure is the reason",
		 .yaml = "rein: 1\nname: e3\nsteps:\n"
			 "  a: { code: 'return 1', next: b }\n"
			 "  b: { code: 'return input.x.y', on_fail: note, next: done }\n"
			 "  note: { code: 'return 2', next: human }\n"
			 "  human: { end: escalated }\n"
			 "  done: { end: succeeded }\n",
		 .input = "{}", .status = REIN_RUN_ESCALATED,
		 .reason_has = {"step 'b' failed: ", "attempt to index"}},
		{.what = "... but a success after a recovered failure has no reason",
		 .yaml = "rein: 1\nname: e4\nsteps:\n"
			 "  b: { code: 'return input.x.y', on_fail: done, next: done }\n"
			 "  done: { end: succeeded }\n",
		 .input = "{}", .status = REIN_RUN_SUCCEEDED},
	};
	run_cases(ends, NCASES(ends));
	drive d2;
	run_case_check(&d2, &ends[1]);
	assert_null(rein_run_reason(d2.run));
	drive_free(&d2);
}

static void test_step_output_schema(void **state)
{
	(void)state;
	static const char *y = "rein: 1\nname: so\nsteps:\n"
			       "  a: { code: 'return { n = input.n }', output: { type: object, properties: { n: { type: integer } } },\n"
			       "       on_fail: bad, next: done }\n"
			       "  done: { end: succeeded }\n"
			       "  bad: { end: escalated, reason: '${why}' }\n";
	const run_case cases[] = {
		{.what = "matches", .yaml = y, .input = "{\"n\": 3}", .status = REIN_RUN_SUCCEEDED},
		{.what = "does not match", .yaml = y, .input = "{\"n\": \"three\"}",
		 .status = REIN_RUN_ESCALATED,
		 .reason_has = {"output does not match the step's output schema: /n"},
		 .counts = {{EV(STEP_COMPLETED), "a", 0}}},
	};
	run_cases(cases, NCASES(cases));
}

static void test_output_schema(void **state)
{
	(void)state;
	run_cases(&(const run_case){
			  .what = "the run's output breaks its schema",
			  .yaml = "rein: 1\nname: o\n"
				  "output: { type: object, required: [total], properties: { total: { type: integer } } }\n"
				  "steps:\n"
				  "  a: { code: 'return { total = input.t }', next: done }\n"
				  "  done: { end: succeeded }\n",
			  .input = "{\"t\": \"many\"}", .status = REIN_RUN_FAILED,
			  .reason_has = {"output does not match the output schema", "/total"}},
		  1);
}

static void test_corrupt_log(void **state)
{
	(void)state;
	rein_script *sb;
	rein_run *r;
	rein_err err = {0};
	assert_int_equal(rein_script_new(&sb), REIN_OK);
	rein_spec *spec = spec_from_yaml(sb, "rein: 1\nname: c\nsteps:\n"
					     "  a: { code: 'return 1', next: b }\n"
					     "  b: { code: 'return 2', next: done }\n"
					     "  done: { end: succeeded }\n");
	assert_int_equal(rein_run_new(spec, sb, "run_c", &r), REIN_OK);
	json_t *d = J("{\"out\": 1}");
	/* before run.started */
	assert_int_equal(rein_run_apply(r, EV(STEP_COMPLETED), "a", 1, d, &err), REIN_ECORRUPT);
	json_t *s = J("{\"input\": {}, \"workflow\": \"t\", \"version\": \"1\"}");
	rein_err_clear(&err);
	assert_int_equal(rein_run_apply(r, EV(RUN_STARTED), NULL, 1, s, &err), REIN_OK);
	/* b is not the active step */
	assert_int_equal(rein_run_apply(r, EV(STEP_COMPLETED), "b", 2, d, &err), REIN_ECORRUPT);
	assert_non_null(strstr(err.msg, "not active"));
	rein_err_clear(&err);
	assert_int_equal(rein_run_apply(r, "no.such.event", NULL, 2, d, &err), REIN_ECORRUPT);
	json_decref(d);
	json_decref(s);
	rein_run_free(r);
	rein_spec_free(spec);
	rein_script_free(sb);
}

/* The workflow of the tool tests: one call of pay (with idempotency idem and
 * the fallback line), backup a tool to fall back on. Literals only. */
#define TOOL_WF(idem, fallback) \
	"rein: 1\nname: tw\n" \
	"tools:\n" \
	"  pay:\n" \
	"    http: { url: 'http://127.0.0.1:9/pay' }\n" \
	"    effect: write\n" \
	"    idempotency: " idem "\n" \
	"    input: { type: object, required: [amount], properties: { amount: { type: number, maximum: 500 } } }\n" \
	"    retry: { max_attempts: 3, base_ms: 100, max_delay_ms: 1000, max_total_s: 60 }\n" \
	"    " fallback "\n" \
	"  backup:\n" \
	"    http: { url: 'http://127.0.0.1:9/backup' }\n" \
	"    effect: write\n" \
	"    idempotency: header\n" \
	"    input: { type: object }\n" \
	"steps:\n" \
	"  pay: { tool: pay, args: { amount: '${input.amount}' }, next: done }\n" \
	"  done: { end: succeeded }\n"

#define AMOUNT_10 "{\"amount\": 10}"

static void test_tool_retries(void **state)
{
	(void)state;
	drive d;
	run_case_check(&d, &(const run_case){
		.what = "retried to success", .yaml = TOOL_WF("header", ""), .input = AMOUNT_10,
		.tools = (const char *const[]){"503", "timeout", "ok", NULL},
		.status = REIN_RUN_SUCCEEDED,
		.counts = {{EV(TOOL_INTENT), "pay", 1}, {EV(TOOL_ATTEMPT), "pay", 2},
			   {EV(TOOL_BACKOFF), "pay", 2}}});
	/* the same key for every attempt, and the result is the third attempt's */
	const char *key = json_string_value(json_object_get(event_data(&d, EV(TOOL_INTENT), 0), "key"));
	assert_non_null(key);
	assert_string_equal(json_string_value(json_object_get(rein_run_output(d.run), "key")), key);
	assert_int_equal(json_integer_value(json_object_get(rein_run_output(d.run), "attempt")), 3);
	/* full jitter: each delay within [0, base * 2^(n-1)] */
	assert_true(json_integer_value(json_object_get(event_data(&d, EV(TOOL_BACKOFF), 0), "delay_ms")) <= 100);
	assert_true(json_integer_value(json_object_get(event_data(&d, EV(TOOL_BACKOFF), 1), "delay_ms")) <= 200);
	drive_free(&d);

	run_case_check(&d, &(const run_case){
		.what = "Retry-After is honoured", .yaml = TOOL_WF("header", ""), .input = AMOUNT_10,
		.tools = (const char *const[]){"429:1500", "ok", NULL}, .status = REIN_RUN_SUCCEEDED});
	assert_int_equal(json_integer_value(json_object_get(event_data(&d, EV(TOOL_BACKOFF), 0), "delay_ms")), 1500);
	drive_free(&d);

	const run_case cases[] = {
		{.what = "a 4xx is never retried", .yaml = TOOL_WF("header", ""), .input = AMOUNT_10,
		 .tools = (const char *const[]){"400", NULL}, .status = REIN_RUN_FAILED,
		 .counts = {{EV(TOOL_ATTEMPT), "pay", 1}, {EV(TOOL_BACKOFF), "pay", 0}}},
		{.what = "attempts are capped", .yaml = TOOL_WF("header", ""), .input = AMOUNT_10,
		 .tools = (const char *const[]){"503", "503", "503", "ok", NULL},
		 .status = REIN_RUN_FAILED, .reason_has = {"after 3 attempts"},
		 .counts = {{EV(TOOL_ATTEMPT), "pay", 3}}},
		{.what = "arguments that break the contract never leave",
		 .yaml = TOOL_WF("header", ""), .input = "{\"amount\": 900}", .status = REIN_RUN_FAILED,
		 .reason_has = {"/amount"}, .counts = {{EV(TOOL_INTENT), NULL, 0}}},
	};
	run_cases(cases, NCASES(cases));
}

static void test_tool_ambiguity(void **state)
{
	(void)state;
	drive d;
	run_case_check(&d, &(const run_case){
		.what = "a timeout on a tool without keys: it may have happened: needs_review",
		.yaml = TOOL_WF("none", ""), .input = AMOUNT_10,
		.tools = (const char *const[]){"timeout", NULL}, .status = REIN_RUN_NEEDS_REVIEW});
	assert_non_null(json_object_get(rein_run_output(d.run), "key"));
	drive_free(&d);

	run_cases(&(const run_case){
			  .what = "... but a 503 (not processed) is retried even without keys",
			  .yaml = TOOL_WF("none", ""), .input = AMOUNT_10,
			  .tools = (const char *const[]){"503", "ok", NULL},
			  .status = REIN_RUN_SUCCEEDED},
		  1);
}

/* The process dies with a call in flight; the log is replayed into a new run. */
static void crash_and_recover(const char *yaml, rein_status want, int want_attempts)
{
	static const char *const s1[] = {"crash", NULL};
	script = s1;
	script_pos = 0;
	crashed = false;
	drive d = {0};
	run_to_end(&d, yaml, AMOUNT_10);
	assert_true(crashed);
	crashed = false;
	script = NULL;
	/* recover: a fresh run from the same events */
	rein_run *r = replay(&d);
	rein_run_free(d.run);
	d.run = r;
	rein_run_recovered(r, d.now);
	obey(&d, 50);
	assert_int_equal(rein_run_status(d.run), want);
	assert_int_equal(count(&d, EV(TOOL_INTENT), NULL), 1);
	assert_int_equal(count(&d, EV(TOOL_ATTEMPT), NULL), want_attempts);
	drive_free(&d);
}

static void test_tool_crash_in_flight(void **state)
{
	(void)state;
	/* honours keys: sent again with the same key, recorded as an in-doubt attempt */
	crash_and_recover(TOOL_WF("header", ""), REIN_RUN_SUCCEEDED, 1);
	/* does not: stops for a human with the evidence */
	crash_and_recover(TOOL_WF("none", ""), REIN_RUN_NEEDS_REVIEW, 0);
}

/* The kill switch in the engine: a held call (kill.held) makes the run wait
 * with reason killed and sleep ENGINE_KILL_RECHECK_MS at a time; a resume does
 * not take it as in doubt (it was not sent, even for a tool without keys);
 * kill.lifted asks for the same call again; held twice or lifted when not
 * held is a corrupt log. */
static void test_kill_held(void **state)
{
	(void)state;
	static const char *const s1[] = {"crash", NULL}; /* stop at the EXEC */
	script = s1;
	script_pos = 0;
	crashed = false;
	drive d = {0};
	rein_err err = {0};
	run_to_end(&d, TOOL_WF("none", ""), AMOUNT_10);
	assert_true(crashed);
	crashed = false;
	script = NULL;
	int pay = rein_spec_step(d.spec, "pay");
	rein_tool_call call;
	assert_int_equal(rein_run_tool_call(d.run, pay, &call), REIN_OK);
	char key[80]; /* the run's own is gone with it at the replay */
	snprintf(key, sizeof key, "%s", call.key);
	json_t *held = json_pack("{s:s, s:s, s:i, s:s}", "tool", "pay", "key", key, "switch", 7,
				 "reason", "incident");
	record_apply(&d, EV(KILL_HELD), pay, held);
	assert_int_equal(rein_run_status(d.run), REIN_RUN_WAITING);
	assert_true(rein_run_killed(d.run, pay));
	assert_string_equal(rein_run_reason(d.run), "killed: incident (switch 7)");
	assert_int_equal(rein_run_wake_at(d.run), d.now + 1000);
	rein_cmd c;
	assert_int_equal(rein_run_poll(d.run, d.now + 5000, &c, &err), REIN_OK);
	assert_int_equal(c.kind, REIN_CMD_SLEEP);
	assert_int_equal(c.due, d.now + 5000 + 1000);
	/* held again while held: the log is corrupt */
	assert_int_equal(rein_run_apply(d.run, EV(KILL_HELD), "pay", d.now, held, &err), REIN_ECORRUPT);
	rein_err_clear(&err);
	json_decref(held);
	/* a resume: not in doubt, still held */
	rein_run *r = replay(&d);
	rein_run_free(d.run);
	d.run = r;
	rein_run_recovered(r, d.now);
	assert_int_equal(rein_run_status(r), REIN_RUN_WAITING);
	assert_true(rein_run_killed(r, pay));
	json_t *lifted = json_pack("{s:s, s:s}", "tool", "pay", "key", key);
	d.now += 3000;
	record_apply(&d, EV(KILL_LIFTED), pay, lifted);
	assert_false(rein_run_killed(d.run, pay));
	assert_int_equal(rein_run_status(d.run), REIN_RUN_RUNNING);
	assert_int_equal(rein_run_apply(d.run, EV(KILL_LIFTED), "pay", d.now, lifted, &err),
			 REIN_ECORRUPT);
	rein_err_clear(&err);
	json_decref(lifted);
	assert_true(obey(&d, 50)); /* sent again: the same key, once */
	assert_int_equal(rein_run_status(d.run), REIN_RUN_SUCCEEDED);
	assert_string_equal(json_string_value(json_object_get(rein_run_output(d.run), "key")), key);
	assert_int_equal(count(&d, EV(TOOL_INTENT), NULL), 1);
	assert_int_equal(count(&d, EV(TOOL_ATTEMPT), NULL), 0);
	check_replay(&d);
	drive_free(&d);
}

/* The kill switch's --tenant reads run.started's requester.tenant; a shadow
 * run is one whose run.started says so, or whose spec does. */
static void test_run_tenant_shadow(void **state)
{
	(void)state;
	rein_script *sb = NULL;
	assert_int_equal(rein_script_new(&sb), REIN_OK);
	rein_spec *spec = spec_from_yaml(sb, TOOL_WF("header", ""));
	const char *starts[] = {
		"{\"input\": {}, \"workflow\": \"t\", \"version\": \"1\", \"shadow\": true, "
		"\"requester\": {\"user\": \"ann\", \"tenant\": \"acme\"}}",
		"{\"input\": {}, \"workflow\": \"t\", \"version\": \"1\"}"};
	for (int i = 0; i < 2; i++) {
		rein_run *r = NULL;
		rein_err err = {0};
		json_t *d = J(starts[i]);
		assert_int_equal(rein_run_new(spec, sb, "run_t", &r), REIN_OK);
		assert_int_equal(rein_run_apply(r, EV(RUN_STARTED), NULL, 1, d, &err), REIN_OK);
		if (i == 0) {
			assert_string_equal(rein_run_tenant(r), "acme");
			assert_true(rein_run_shadow(r));
		} else {
			assert_null(rein_run_tenant(r));
			assert_false(rein_run_shadow(r));
		}
		json_decref(d);
		rein_run_free(r);
	}
	rein_spec_free(spec);
	rein_script_free(sb);
}

static void test_tool_fallbacks(void **state)
{
	(void)state;
	drive d;
	run_case_check(&d, &(const run_case){
		.what = "fallback: unavailable", .yaml = TOOL_WF("header", "fallback: unavailable"),
		.input = AMOUNT_10, .tools = (const char *const[]){"400", NULL},
		.status = REIN_RUN_SUCCEEDED, .counts = {{EV(TOOL_FALLBACK), "pay", 1}}});
	assert_json_eq(json_object_get(rein_run_output(d.run), "unavailable"), "true");
	drive_free(&d);

	run_case_check(&d, &(const run_case){
		.what = "fallback: another tool, under a key of its own",
		.yaml = TOOL_WF("header", "fallback: { tool: backup }"), .input = AMOUNT_10,
		.tools = (const char *const[]){"400", "ok", NULL}, .status = REIN_RUN_SUCCEEDED,
		.counts = {{EV(TOOL_INTENT), NULL, 2}}});
	const char *k1 = json_string_value(json_object_get(event_data(&d, EV(TOOL_INTENT), 0), "key"));
	const char *k2 = json_string_value(json_object_get(event_data(&d, EV(TOOL_INTENT), 1), "key"));
	assert_string_equal(json_string_value(json_object_get(event_data(&d, EV(TOOL_INTENT), 1), "tool")), "backup");
	assert_true(strncmp(k1, k2, strlen(k1)) == 0 && strcmp(k2 + strlen(k1), "-fb1") == 0);
	drive_free(&d);

	run_cases(&(const run_case){
			  .what = "fallback: cached", .yaml = TOOL_WF("header", "fallback: cached"),
			  .input = AMOUNT_10, .tools = (const char *const[]){"400", NULL},
			  .status = REIN_RUN_SUCCEEDED, .output = "{\"cached\": true}"},
		  1);
	script = NULL;
}

static void test_llm_budgets(void **state)
{
	(void)state;
	const run_case cases[] = {
		{.what = "the answer misses \"a\"; the repair turn would be a second call: over the "
			 "step's budget, and the step is optional: skipped",
		 .yaml = "rein: 1\nname: lb\n"
			 "models: { m: { provider: replay, model: x, price: { input: 1, output: 1 } } }\n"
			 "steps:\n"
			 "  ask: { llm: { model: m, prompt: hi, output: { type: object, required: [a] } },\n"
			 "         optional: true, budget: { max_model_calls: 1 }, next: after }\n"
			 "  after: { code: 'return { skipped = steps.ask.out == null }', next: done }\n"
			 "  done: { end: succeeded }\n",
		 .input = "{}", .models = (const char *const[]){"{\"b\": 1}", "{\"a\": 1}", NULL},
		 .status = REIN_RUN_SUCCEEDED, .output = "{\"skipped\": true}",
		 .counts = {{EV(MODEL_CALL), "ask", 1}}},
		{.what = "a step wall-time budget: a Retry-After past it ends the step escalated",
		 .yaml = "rein: 1\nname: lt\n"
			 "models: { m: { provider: replay, model: x, retry: { max_attempts: 5, max_total_s: 600 } } }\n"
			 "steps:\n"
			 "  ask: { llm: { model: m, prompt: hi }, budget: { timeout_s: 5 }, next: done }\n"
			 "  done: { end: succeeded }\n",
		 .input = "{}", .models = (const char *const[]){"fail:10000", "{\"a\": 1}", NULL},
		 .status = REIN_RUN_ESCALATED,
		 .reason_has = {"budget: the step's timeout_s 5 passed"},
		 .counts = {{EV(MODEL_CALL), "ask", 0}}},
	};
	run_cases(cases, NCASES(cases));
	mscript = NULL;
}

/* verify: the rules over the previous output; every failed one named; no
 * on_fail escalates, an on_fail is taken with the reason in `why`. */
static void test_verify_rules(void **state)
{
	(void)state;
	static const char *y =
		"rein: 1\nname: v\nsteps:\n"
		"  a: { code: 'return { amount = input.amount, currency = input.cur }', next: check }\n"
		"  check:\n"
		"    verify:\n"
		"      rules:\n"
		"        - { id: positive, check: 'out.amount > 0', message: 'the amount must be positive' }\n"
		"        - 'out.currency == \"EUR\"'\n"
		"        - { id: cap, check: 'out.amount <= input.cap', message: 'over the cap' }\n"
		"    next: done\n"
		"  done: { end: succeeded }\n";
	static const char *yf =
		"rein: 1\nname: vf\nsteps:\n"
		"  a: { code: 'return { amount = input.amount }', next: check }\n"
		"  check: { verify: { rules: [ { id: small, check: 'out.amount < 10', message: 'too big' },\n"
		"                              'out.nope.deeper' ] },\n"
		"           next: done, on_fail: human }\n"
		"  human: { code: 'return { why = why, seen = steps.a.out.amount }', next: held }\n"
		"  held: { end: failed, reason: '${out.why}' }\n"
		"  done: { end: succeeded }\n";
	const run_case cases[] = {
		{.what = "every rule holds: the output passes through", .yaml = y,
		 .input = "{\"amount\": 5, \"cur\": \"EUR\", \"cap\": 100}",
		 .status = REIN_RUN_SUCCEEDED, .output = "{\"amount\": 5, \"currency\": \"EUR\"}",
		 .counts = {{EV(STEP_COMPLETED), "check", 1}, {EV(STEP_FAILED), "check", 0}}},
		{.what = "one rule fails: escalated with its message", .yaml = y,
		 .input = "{\"amount\": 500, \"cur\": \"EUR\", \"cap\": 100}",
		 .status = REIN_RUN_ESCALATED,
		 .reason = "step 'check' failed: verify: rule 'cap' failed: over the cap"},
		{.what = "two fail: both named, a bare rule by its place and text", .yaml = y,
		 .input = "{\"amount\": -1, \"cur\": \"USD\", \"cap\": 100}",
		 .status = REIN_RUN_ESCALATED,
		 .reason = "step 'check' failed: verify: rule 'positive' failed: the amount must be "
			   "positive; rule 2 failed: `out.currency == \"EUR\"` is not true",
		 .counts = {{EV(STEP_FAILED), "check", 1}}},
		{.what = "on_fail is taken; a rule that errors counts as failed", .yaml = yf,
		 .input = "{\"amount\": 50}", .status = REIN_RUN_FAILED,
		 .reason_has = {"verify: rule 'small' failed: too big; rule 2 could not be evaluated: ",
				"nope"},
		 .counts = {{EV(STEP_COMPLETED), "human", 1}}},
		{.what = "one rule holds, the other cannot be evaluated: on_fail", .yaml = yf,
		 .input = "{\"amount\": 5}", .status = REIN_RUN_FAILED,
		 .reason_has = {"rule 2 could not be evaluated"},
		 .counts = {{EV(STEP_COMPLETED), "check", 0}}},
	};
	run_cases(cases, NCASES(cases));
}

/* verify with a model check: after the rules, a model call whose structured
 * answer {confidence, rationale} must reach min_confidence. */
static void test_verify_model(void **state)
{
	(void)state;
	static const char *y =
		"rein: 1\nname: vm\n"
		"models: { m: { provider: replay, model: x } }\n"
		"steps:\n"
		"  a: { code: 'return { amount = input.amount }', next: check }\n"
		"  check:\n"
		"    verify:\n"
		"      rules: [ { id: positive, check: 'out.amount > 0', message: 'not positive' } ]\n"
		"      model: m\n"
		"      prompt: 'Is a refund of ${out.amount} right?'\n"
		"      min_confidence: 0.85\n"
		"    next: done\n"
		"  done: { end: succeeded }\n";
	static const char *yo =
		"rein: 1\nname: vo\n"
		"models: { m: { provider: replay, model: x } }\n"
		"steps:\n"
		"  a: { code: 'return 7', next: check }\n"
		"  check: { verify: { model: m, prompt: 'ok? ${out}' }, next: done, on_fail: low }\n"
		"  low: { end: escalated }\n"
		"  done: { end: succeeded }\n";
	const run_case cases[] = {
		{.what = "confident: the output passes through", .yaml = y, .input = "{\"amount\": 5}",
		 .models = (const char *const[]){"{\"confidence\": 0.9, \"rationale\": \"fine\"}", NULL},
		 .status = REIN_RUN_SUCCEEDED, .output = "{\"amount\": 5}",
		 .counts = {{EV(MODEL_CALL), "check", 1}, {EV(MODEL_INTENT), "check", 1}}},
		{.what = "under min_confidence: escalated with the rationale", .yaml = y,
		 .input = "{\"amount\": 5}",
		 .models = (const char *const[]){"{\"confidence\": 0.6, \"rationale\": \"odd amount\"}", NULL},
		 .status = REIN_RUN_ESCALATED,
		 .reason = "step 'check' failed: verify: the model's confidence 0.60 is under "
			   "min_confidence 0.85: odd amount"},
		{.what = "a failed rule: no model call", .yaml = y, .input = "{\"amount\": 0}",
		 .status = REIN_RUN_ESCALATED, .reason_has = {"rule 'positive' failed: not positive"},
		 .counts = {{EV(MODEL_INTENT), "check", 0}}},
		{.what = "an answer out of the schema gets one repair turn", .yaml = y,
		 .input = "{\"amount\": 5}",
		 .models = (const char *const[]){"{\"confidence\": 3}",
						 "{\"confidence\": 1, \"rationale\": \"ok\"}", NULL},
		 .status = REIN_RUN_SUCCEEDED, .output = "{\"amount\": 5}",
		 .counts = {{EV(MODEL_CALL), "check", 2}}},
		{.what = "model only, default min_confidence 0.5: on_fail taken", .yaml = yo,
		 .input = "{}",
		 .models = (const char *const[]){"{\"confidence\": 0.4, \"rationale\": \"unsure\"}", NULL},
		 .status = REIN_RUN_ESCALATED,
		 .reason = "step 'check' failed: verify: the model's confidence 0.40 is under "
			   "min_confidence 0.50: unsure"},
		{.what = "model only, confident", .yaml = yo, .input = "{}",
		 .models = (const char *const[]){"{\"confidence\": 0.5, \"rationale\": \"ok\"}", NULL},
		 .status = REIN_RUN_SUCCEEDED, .output = "7"},
	};
	run_cases(cases, NCASES(cases));
	mscript = NULL;
	/* the prompt is rendered over the previous output */
	static const char *yp =
		"rein: 1\nname: vp\ntrace: { store_prompts: true }\n"
		"models: { m: { provider: replay, model: x } }\n"
		"steps:\n"
		"  a: { code: 'return { amount = input.amount }', next: check }\n"
		"  check: { verify: { model: m, prompt: 'Is a refund of ${out.amount} right?' }, next: done }\n"
		"  done: { end: succeeded }\n";
	drive d;
	run_case_check(&d, &(const run_case){
		.what = "the prompt", .yaml = yp, .input = "{\"amount\": 5}",
		.models = (const char *const[]){"{\"confidence\": 0.9, \"rationale\": \"fine\"}", NULL},
		.status = REIN_RUN_SUCCEEDED, .output = "{\"amount\": 5}"});
	const json_t *req = json_object_get(event_data(&d, EV(MODEL_INTENT), 0), "request");
	assert_string_equal(json_string_value(json_object_get(
				    json_array_get(json_object_get(req, "messages"), 0), "content")),
			    "Is a refund of 5 right?");
	assert_non_null(json_object_get(req, "output_schema"));
	drive_free(&d);
	mscript = NULL;
}

/* model.intent records the model and provider the call uses, resolved from
 * the environment when the workflow is loaded; a run rebuilt from its log
 * calls the recorded model, whatever the environment says now. */
static void test_llm_intent_model(void **state)
{
	(void)state;
	setenv("REIN_TEST_MODEL_A", "model-a-2026-01-01", 1);
	unsetenv("REIN_TEST_PROVIDER_A");
	drive d;
	run_case_check(&d, &(const run_case){
		.what = "the intent names the resolved model",
		.yaml = "rein: 1\nname: li\n"
			"models: { m: { provider: '${env.REIN_TEST_PROVIDER_A:-replay}', model: '${env.REIN_TEST_MODEL_A:-}' } }\n"
			"steps:\n"
			"  ask: { llm: { model: m, prompt: hi }, next: done }\n"
			"  done: { end: succeeded }\n",
		.input = "{}", .status = REIN_RUN_SUCCEEDED,
		.counts = {{EV(MODEL_INTENT), "ask", 1}}});
	const json_t *intent = event_data(&d, EV(MODEL_INTENT), 0);
	assert_string_equal(json_string_value(json_object_get(intent, "model")), "model-a-2026-01-01");
	assert_string_equal(json_string_value(json_object_get(intent, "provider")), "replay");
	/* rebuilt up to the intent, with another model recorded: that one is called */
	rein_run *r = NULL;
	rein_err err = {0};
	assert_int_equal(rein_run_new(d.spec, d.sb, "run_test", &r), REIN_OK);
	for (size_t i = 0; i < d.n; i++) {
		json_t *data = json_deep_copy(d.evs[i].data);
		bool is_intent = strcmp(d.evs[i].type, EV(MODEL_INTENT)) == 0;
		if (is_intent)
			json_object_set_new(data, "model", json_string("model-recorded"));
		assert_int_equal(rein_run_apply(r, d.evs[i].type, d.evs[i].step, d.evs[i].at, data, &err),
				 REIN_OK);
		json_decref(data);
		if (is_intent)
			break;
	}
	rein_model_request call;
	assert_int_equal(rein_run_model_call(r, rein_spec_step(d.spec, "ask"), &call), REIN_OK);
	assert_string_equal(json_string_value(json_object_get(call.request, "model")), "model-recorded");
	rein_run_free(r);
	drive_free(&d);
	unsetenv("REIN_TEST_MODEL_A");
}

/* Provenance (docs/policy.md): a code step's output takes the labels of what
 * its script read (recorded on its step.completed), a tool's output those of
 * its contract, an llm output those of its prompt's reads and the model, a
 * tool step's argument those of what its template read; the labels are
 * recorded with the decision, and a run rebuilt from its log decides the same. */
static const char *const PROV_WF =
	"rein: 1\nname: pv\n"
	"models: { m: { provider: replay, model: x } }\n"
	"tools:\n"
	"  fetch: { http: { url: 'http://127.0.0.1:9/f' }, effect: read, input: { type: object } }\n"
	"  crm: { http: { url: 'http://127.0.0.1:9/c' }, effect: read, trust: trusted,\n"
	"         readers: ['tenant:acme', 'role:support'], input: { type: object } }\n"
	"  kb: { http: { url: 'http://127.0.0.1:9/k' }, effect: read, provenance: retrieval,\n"
	"        readers: [public], input: { type: object } }\n"
	"  pay: { http: { url: 'http://127.0.0.1:9/p' }, effect: write, input: { type: object } }\n"
	"policies:\n"
	"  - { id: pays, effect: allow, tool: pay }\n"
	"  - { id: trusted-iban, effect: deny, tool: pay, when: 'not trusted(args.iban)' }\n"
	"steps:\n"
	"  k0: { code: 'return { n = 1 }', next: k1 }\n"
	"  k1: { code: 'return { n = steps.k0.out.n + (out or 1) }', next: f }\n"
	"  f: { tool: fetch, args: { q: '${input.q}' }, next: c }\n"
	"  c: { tool: crm, args: {}, next: k }\n"
	"  k: { tool: kb, args: {}, next: x }\n"
	"  x: { code: 'if input.q == \"zz\" then return { a = steps.f.out.key } end return { a = steps.c.out.key }', next: y }\n"
	"  y: { code: 'return { n = input.q }', next: z }\n"
	"  z: { code: 'local k = \"c\" return { v = steps[k].out.key }', next: l }\n"
	"  l: { llm: { model: m, prompt: 'sum up ${steps.k.out.key}' }, next: p }\n"
	"  p: { tool: pay, args: { iban: '${input.iban}', note: '${steps.f.out.key}', fixed: 'x',\n"
	"       mixed: '${steps.x.out.a} ${input.q}', summary: '${steps.l.out.s}',\n"
	"       konst: '${steps.k1.out.n}' }, next: done }\n"
	"  done: { end: succeeded }\n";

static void assert_label(const json_t *l, const char *sources, const char *readers, bool trusted)
{
	char *s = json_dumps(json_object_get(l, "sources"), JSON_COMPACT);
	char *r = json_dumps(json_object_get(l, "readers"), JSON_COMPACT);
	if (strcmp(s, sources) || strcmp(r, readers) || json_is_true(json_object_get(l, "trusted")) != trusted)
		fprintf(stderr, "label %s %s %d\n", s, r, json_is_true(json_object_get(l, "trusted")));
	assert_string_equal(s, sources);
	assert_string_equal(r, readers);
	assert_true(json_is_true(json_object_get(l, "trusted")) == trusted);
	free(s);
	free(r);
}

static void test_provenance(void **state)
{
	(void)state;
	static const char *const answers[] = {"{\"s\": \"short\"}", NULL};
	mscript = answers;
	mscript_pos = 0;
	script = NULL;
	drive d = {0};
	assert_int_equal(rein_script_new(&d.sb), REIN_OK);
	d.spec = spec_from_yaml(d.sb, PROV_WF);
	d.now = 1000000;
	assert_int_equal(rein_run_new(d.spec, d.sb, "run_test", &d.run), REIN_OK);
	json_t *start = J("{\"input\": {\"q\": \"A1\", \"iban\": \"DE11\"}, \"workflow\": \"t\", "
			  "\"version\": \"1\", \"requester\": {\"user\": \"ann\", \"roles\": [], "
			  "\"tenant\": \"acme\"}}");
	record_apply(&d, EV(RUN_STARTED), -1, start);
	json_decref(start);
	assert_true(obey(&d, 200));
	assert_int_equal(rein_run_status(d.run), REIN_RUN_SUCCEEDED);
	/* code steps: what each script read, recorded */
	int xi = -1, yi = -1, zi = -1, k1 = -1;
	for (size_t i = 0; i < d.n; i++)
		if (strcmp(d.evs[i].type, EV(STEP_COMPLETED)) == 0 && d.evs[i].step) {
			if (strcmp(d.evs[i].step, "k1") == 0)
				k1 = (int)i;
			if (strcmp(d.evs[i].step, "z") == 0)
				zi = (int)i;
			if (strcmp(d.evs[i].step, "x") == 0)
				xi = (int)i;
			if (strcmp(d.evs[i].step, "y") == 0)
				yi = (int)i;
		}
	assert_true(xi >= 0 && yi >= 0);
	/* x read input and steps.c, not steps.f its text names: recorded */
	assert_label(json_object_get(d.evs[xi].data, "labels"), "[\"requester\",\"tool:crm\"]",
		     "[\"tenant:acme\"]", true);
	/* k1 read only constants (k0's output and `out`, nil in a code step): its
	 * label is the constant (untracked, nothing recorded) */
	assert_true(k1 >= 0);
	assert_null(json_object_get(d.evs[k1].data, "labels"));
	/* y read all its text names: nothing to record, its apply derives the same */
	assert_null(json_object_get(d.evs[yi].data, "labels"));
	/* z's text indexes steps by a variable (every step, by its text); it read c */
	assert_true(zi >= 0);
	assert_label(json_object_get(d.evs[zi].data, "labels"), "[\"tool:crm\"]",
		     "[\"role:support\",\"tenant:acme\"]", true);
	/* the llm's prompt read steps.k (a retrieval tool, public) */
	const json_t *mi = event_data(&d, EV(MODEL_INTENT), 0);
	assert_label(json_object_get(mi, "labels"), "[\"retrieval\",\"tool:kb\"]", "[\"public\"]", false);
	assert_string_equal(json_string_value(json_array_get(json_object_get(mi, "reads"), 0)), "steps.k");
	/* the pay step's arguments */
	const json_t *dec = NULL;
	for (int i = 0; (dec = event_data(&d, EV(POLICY_DECISION), i)) != NULL; i++)
		if (strcmp(json_string_value(json_object_get(dec, "tool")), "pay") == 0)
			break;
	assert_non_null(dec);
	assert_string_equal(json_string_value(json_object_get(dec, "decision")), "allow");
	const json_t *pa = json_object_get(json_object_get(dec, "provenance"), "args");
	assert_false(json_is_true(json_object_get(json_object_get(dec, "provenance"), "agent")));
	assert_label(json_object_get(pa, "iban"), "[\"requester\"]", "[\"tenant:acme\"]", true);
	assert_label(json_object_get(pa, "note"), "[\"tool:fetch\"]", "[\"tenant:acme\"]", false);
	assert_label(json_object_get(pa, "fixed"), "[]", "[\"public\"]", true);
	assert_label(json_object_get(pa, "konst"), "[]", "[\"public\"]", true);
	assert_label(json_object_get(pa, "mixed"), "[\"requester\",\"tool:crm\"]", "[\"tenant:acme\"]", true);
	assert_label(json_object_get(pa, "summary"), "[\"model\",\"retrieval\",\"tool:kb\"]", "[\"public\"]", false);
	/* rebuilt from the log up to the decision, the run decides the same labels */
	rein_run *r = NULL;
	rein_err err = {0};
	assert_int_equal(rein_run_new(d.spec, d.sb, "run_test", &r), REIN_OK);
	for (size_t i = 0; i < d.n && d.evs[i].data != dec; i++)
		assert_int_equal(rein_run_apply(r, d.evs[i].type, d.evs[i].step, d.evs[i].at, d.evs[i].data, &err),
				 REIN_OK);
	rein_cmd c;
	assert_int_equal(rein_run_poll(r, d.now, &c, &err), REIN_OK);
	assert_int_equal(c.kind, REIN_CMD_EMIT);
	assert_string_equal(c.type, EV(POLICY_DECISION));
	assert_true(json_equal(json_object_get(c.data, "provenance"), json_object_get(dec, "provenance")));
	rein_cmd_clear(&c);
	rein_run_free(r);
	check_replay(&d);
	drive_free(&d);
	mscript = NULL;
}

/* Polls and obeys (EMITs applied, EXECs answered from the scripts) until the
 * run asks to sleep; the clock does not move. */
static void obey_until_sleep(drive *d)
{
	rein_err err = {0};
	for (int guard = 0; guard < 100; guard++) {
		rein_cmd c;
		assert_int_equal(rein_run_poll(d->run, d->now, &c, &err), REIN_OK);
		if (c.kind == REIN_CMD_SLEEP)
			return;
		assert_true(c.kind == REIN_CMD_EMIT || c.kind == REIN_CMD_EXEC);
		if (c.kind == REIN_CMD_EMIT) {
			record_apply(d, c.type, c.step, c.data);
			rein_cmd_clear(&c);
		} else {
			answer_tool(d, c.step);
		}
	}
	fail_msg("the run never slept");
}

/* An inbox entry as the runner will drain it into the log. */
static void deliver(drive *d, const char *type, const char *data)
{
	json_t *iev = json_pack("{s:s, s:s, s:o, s:s, s:I}", "id", "inbox-1", "type", type, "data",
			       J(data), "sender", "test", "at", (json_int_t)d->now);
	record_apply(d, EV(INBOX_RECEIVED), -1, iev);
	json_decref(iev);
}

/* A cancel from the inbox ends the run at the next poll, whatever is pending:
 * nothing more is executed. Unknown types are recorded and ignored. */
static void test_inbox_cancel(void **state)
{
	(void)state;
	static const char *wait_wf = "rein: 1\nname: ic\nsteps:\n"
				     "  w: { wait: 60, next: done }\n"
				     "  done: { end: succeeded }\n";
	struct {
		const char *what, *yaml, *input;
		const char *const *tools;
		const char *data, *reason;
	} cases[] = {
		{"a timer pending", wait_wf, "{}", NULL, "{\"reason\": \"the customer withdrew\"}",
		 "the customer withdrew"},
		{"a tool call between attempts", TOOL_WF("header", ""), AMOUNT_10,
		 (const char *const[]){"503", "ok", NULL}, "{}", "cancelled on request"},
	};
	for (size_t i = 0; i < NCASES(cases); i++) {
		fprintf(stderr, "  case: cancel with %s\n", cases[i].what);
		script = cases[i].tools;
		script_pos = 0;
		drive d = {0};
		assert_int_equal(rein_script_new(&d.sb), REIN_OK);
		d.spec = spec_from_yaml(d.sb, cases[i].yaml);
		d.now = 1000000;
		assert_int_equal(rein_run_new(d.spec, d.sb, "run_test", &d.run), REIN_OK);
		json_t *start = json_pack("{s:o, s:s, s:s}", "input", J(cases[i].input), "workflow", "t",
					   "version", "1");
		record_apply(&d, EV(RUN_STARTED), -1, start);
		json_decref(start);
		obey_until_sleep(&d);
		assert_int_equal(rein_run_status(d.run), REIN_RUN_WAITING);
		deliver(&d, "signal", "{\"n\": 1}"); /* recorded, ignored */
		assert_int_equal(rein_run_status(d.run), REIN_RUN_WAITING);
		deliver(&d, "cancel", cases[i].data);
		int attempts = count(&d, EV(TOOL_ATTEMPT), NULL);
		rein_cmd c;
		rein_err err = {0};
		assert_int_equal(rein_run_poll(d.run, d.now, &c, &err), REIN_OK);
		assert_int_equal(c.kind, REIN_CMD_EMIT);
		assert_string_equal(c.type, EV(RUN_ENDED));
		assert_string_equal(json_string_value(json_object_get(c.data, "status")), "cancelled");
		record_apply(&d, c.type, c.step, c.data);
		rein_cmd_clear(&c);
		assert_int_equal(rein_run_status(d.run), REIN_RUN_CANCELLED);
		assert_string_equal(rein_run_reason(d.run), cases[i].reason);
		assert_int_equal(rein_run_poll(d.run, d.now + 100000, &c, &err), REIN_OK);
		assert_int_equal(c.kind, REIN_CMD_NONE);
		assert_int_equal(count(&d, EV(TOOL_ATTEMPT), NULL), attempts); /* nothing more ran */
		check_replay(&d);
		drive_free(&d);
	}
	script = NULL;
}

/* A signal as the runner drains it: inbox.received {id, type signal, data {name, data}}. */
static void send_signal(drive *d, const char *id, const char *name, const char *data)
{
	json_t *iev = json_pack("{s:s, s:s, s:{s:s, s:o}, s:s, s:I}", "id", id, "type", "signal",
				"data", "name", name, "data", J(data), "sender", "test", "at",
				(json_int_t)d->now);
	record_apply(d, EV(INBOX_RECEIVED), -1, iev);
	json_decref(iev);
}

static void start_run(drive *d, const char *yaml)
{
	*d = (drive){0};
	assert_int_equal(rein_script_new(&d->sb), REIN_OK);
	d->spec = spec_from_yaml(d->sb, yaml);
	d->now = 1000000;
	assert_int_equal(rein_run_new(d->spec, d->sb, "run_test", &d->run), REIN_OK);
	json_t *start = json_pack("{s:o, s:s, s:s}", "input", J("{}"), "workflow", "t", "version", "1");
	record_apply(d, EV(RUN_STARTED), -1, start);
	json_decref(start);
}

/* wait: {signal}: the step's output is the signal's data, whether it came
 * before or during the wait; each id is taken once; a timeout fails the step;
 * data that does not match the schema is refused and the wait goes on. */
static void test_signal_wait(void **state)
{
	(void)state;
	static const char *y =
		"rein: 1\nname: sig\nsteps:\n"
		"  a: { code: 'return 1', next: w1 }\n"
		"  w1: { wait: { signal: go, timeout_s: 60, schema: { type: object, required: [ok] } }, next: w2, on_fail: late }\n"
		"  w2: { wait: { signal: go, timeout_s: 60 }, next: done, on_fail: late }\n"
		"  done: { end: succeeded, output: '${ { a = steps.w1.out, b = steps.w2.out } }' }\n"
		"  late: { end: escalated, reason: '${why}' }\n";
	drive d;
	rein_err err = {0};
	rein_cmd c;

	fprintf(stderr, "  case: during the wait, a refused payload, a duplicate id\n");
	start_run(&d, y);
	obey_until_sleep(&d);
	assert_int_equal(rein_run_status(d.run), REIN_RUN_WAITING);
	assert_true(rein_run_awaits_signal(d.run));
	assert_int_equal(rein_run_wake_at(d.run), d.now + 60000);
	send_signal(&d, "bad", "go", "{\"x\": 1}");
	assert_int_equal(rein_run_poll(d.run, d.now, &c, &err), REIN_OK);
	assert_int_equal(c.kind, REIN_CMD_EMIT);
	assert_string_equal(c.type, EV(SIGNAL_REFUSED));
	assert_non_null(strstr(json_string_value(json_object_get(c.data, "error")),
			       "does not match the schema of step 'w1'"));
	assert_non_null(strstr(json_string_value(json_object_get(c.data, "error")), "ok"));
	record_apply(&d, c.type, c.step, c.data);
	rein_cmd_clear(&c);
	obey_until_sleep(&d);
	assert_int_equal(rein_run_status(d.run), REIN_RUN_WAITING); /* still waiting */
	d.now += 1000;
	send_signal(&d, "s1", "go", "{\"ok\": 1}");
	send_signal(&d, "s1", "go", "{\"ok\": 2}"); /* the same id again: taken once */
	obey_until_sleep(&d);
	assert_int_equal(rein_run_status(d.run), REIN_RUN_WAITING); /* w2 waits */
	send_signal(&d, "s2", "go", "\"second\"");
	assert_true(obey(&d, 50));
	assert_int_equal(rein_run_status(d.run), REIN_RUN_SUCCEEDED);
	assert_json_eq(rein_run_output(d.run), "{\"a\": {\"ok\": 1}, \"b\": \"second\"}");
	assert_int_equal(count(&d, EV(SIGNAL_REFUSED), NULL), 1);
	check_replay(&d);
	drive_free(&d);

	fprintf(stderr, "  case: signals before the wait are kept\n");
	start_run(&d, y);
	send_signal(&d, "e1", "go", "{\"ok\": \"early\"}");
	send_signal(&d, "e2", "go", "[2]"); /* for w2, which has no schema */
	send_signal(&d, "o1", "other", "3"); /* no wait for it: kept, unused */
	assert_true(obey(&d, 50));
	assert_int_equal(rein_run_status(d.run), REIN_RUN_SUCCEEDED);
	assert_json_eq(rein_run_output(d.run), "{\"a\": {\"ok\": \"early\"}, \"b\": [2]}");
	assert_int_equal(count(&d, EV(TIMER_SCHEDULED), NULL), 0);
	check_replay(&d);
	drive_free(&d);

	fprintf(stderr, "  case: no signal within the timeout\n");
	start_run(&d, y);
	assert_true(obey(&d, 50));
	assert_int_equal(rein_run_status(d.run), REIN_RUN_ESCALATED);
	assert_string_equal(rein_run_reason(d.run), "no signal go within 60 s");
	assert_int_equal(count(&d, EV(TIMER_FIRED), "w1"), 1);
	check_replay(&d);
	drive_free(&d);

	fprintf(stderr, "  case: a log whose wait completes without a signal is corrupt\n");
	start_run(&d, y);
	obey_until_sleep(&d);
	json_t *bad = json_pack("{s:i}", "out", 1);
	assert_int_equal(rein_run_apply(d.run, EV(STEP_COMPLETED), "w1", d.now, bad, &err),
			 REIN_ECORRUPT);
	assert_non_null(strstr(err.msg, "without the signal"));
	json_decref(bad);
	drive_free(&d);
}

/* ---- allocation faults -------------------------------------------------- */

/* An llm step, an agent that calls a tool, a tool step retried once. */
static const char *const SWEEP_WF =
	"rein: 1\nname: sw\n"
	"models: { m: { provider: replay, model: x, retry: { max_attempts: 2 } } }\n"
	"tools:\n"
	"  look:\n"
	"    http: { url: 'http://127.0.0.1:9/look' }\n"
	"    effect: read\n"
	"    idempotency: header\n"
	"    retry: { max_attempts: 2, base_ms: 10 }\n"
	"    input: { type: object, required: [q], properties: { q: { type: string } } }\n"
	"steps:\n"
	"  ask: { llm: { model: m, system: 'be brief', prompt: 'q: ${input.q}', output: { type: object, required: [a] } }, next: hunt }\n"
	"  hunt: { agent: { model: m, prompt: 'find ${steps.ask.out.a}', tools: [look], max_turns: 3 }, next: pay }\n"
	"  pay: { tool: look, args: { q: '${input.q}' }, next: check }\n"
	"  check: { verify: { rules: [ { id: got, check: 'out.q ~= nil', message: 'no q' }, 'steps.ask.out.a ~= nil' ] }, next: done }\n"
	"  done: { end: succeeded, output: '${ { got = steps.pay.out.q, said = steps.hunt.out } }' }\n";

typedef struct sweep {
	long left;  /* engine allocations before the one that fails; 0: none fails */
	bool fired; /* it failed */
} sweep;

/* Faults count only inside the engine: the driver's own allocations never fail. */
static void sw_arm(sweep *sw)
{
	if (sw->left > 0)
		rein_fault_arm(REIN_FAULT_ALLOC, sw->left);
}

static void sw_disarm(sweep *sw)
{
	if (sw->left <= 0)
		return;
	long seen = rein_fault_count(REIN_FAULT_ALLOC);
	rein_fault_arm(REIN_FAULT_ALLOC, 0);
	if (seen >= sw->left) {
		sw->fired = true;
		sw->left = 0;
	} else {
		sw->left -= seen;
	}
}

/* The answer to an EXEC of step, the nth model or tool EXEC of the run. */
static void sweep_answer(const rein_spec *spec, rein_run *run, int step, int nmodel, int ntool,
			 const char **type, json_t **data)
{
	const rein_step *st = &spec->steps[step];
	if (rein_run_effect(run, step) == REIN_STEP_LLM) {
		*type = EV(MODEL_CALL);
		json_t *resp = st->kind == REIN_STEP_LLM ? J("{\"text\": \"{}\", \"output\": {\"a\": \"x\"}}")
			       : nmodel == 2 ? J("{\"tool_calls\": [{\"id\": \"c1\", \"name\": \"look\", "
						"\"arguments\": {\"q\": \"k\"}}]}")
					     : J("{\"text\": \"found it\"}");
		rein_model_request mc;
		assert_int_equal(rein_run_model_call(run, step, &mc), REIN_OK);
		*data = json_pack("{s:s, s:s, s:{s:i, s:i}, s:f, s:o}", "tier", spec->tiers[mc.tier].name,
				  "request_hash", "h", "usage", "input", 10, "output", 5, "cost_usd", 0.001,
				  "response", resp);
		return;
	}
	rein_tool_call call;
	assert_int_equal(rein_run_tool_call(run, step, &call), REIN_OK);
	if (st->kind == REIN_STEP_AGENT) {
		*type = EV(TOOL_RESULT);
		*data = json_pack("{s:s, s:s, s:{s:b}}", "call_id", "c1", "tool", "look", "out", "found", 1);
	} else if (ntool == 1) { /* the tool step's first attempt: a 503, retried */
		*type = EV(TOOL_ATTEMPT);
		*data = json_pack("{s:i, s:s, s:s, s:b, s:b}", "attempt", call.attempt, "outcome",
				  "http_503", "error", "HTTP 503", "transient", 1, "ambiguous", 0);
	} else {
		*type = EV(STEP_COMPLETED);
		*data = json_pack("{s:O}", "out", call.args);
	}
}

/*
 * Drives SWEEP_WF with sw's fault armed around every engine call. events
 * gets [type, step, data] of each event applied, requests the canonical text
 * of each model request handed out. Returns REIN_OK when the run ended, else
 * the engine's error (err says what).
 */
static int sweep_drive(rein_script *sb, const rein_spec *spec, sweep *sw, json_t *events,
		       json_t *requests, rein_status *status, rein_err *err)
{
	rein_run *run = NULL;
	int64_t now = 1000000;
	int nmodel = 0, ntool = 0;
	const char *type = EV(RUN_STARTED);
	json_t *data = J("{\"input\": {\"q\": \"k\"}, \"workflow\": \"t\", \"version\": \"1\"}");
	int step = -1, rc;
	sw_arm(sw);
	rc = rein_run_new(spec, sb, "run_sw", &run);
	sw_disarm(sw);
	if (rc != REIN_OK)
		rein_err_set(err, rc, "rein_run_new");
	for (int guard = 0; rc == REIN_OK && guard < 200; guard++) {
		if (data) { /* apply the event, then record it */
			const char *sname = step >= 0 ? spec->steps[step].name : NULL;
			sw_arm(sw);
			rc = rein_run_apply(run, type, sname, now, data, err);
			sw_disarm(sw);
			if (rc == REIN_OK)
				json_array_append_new(events, json_pack("[s, s?, O]", type, sname, data));
			json_decref(data);
			data = NULL;
			continue;
		}
		rein_cmd c;
		sw_arm(sw);
		rc = rein_run_poll(run, now, &c, err);
		sw_disarm(sw);
		if (rc != REIN_OK || c.kind == REIN_CMD_NONE)
			break;
		if (c.kind == REIN_CMD_SLEEP) {
			now = c.due;
			continue;
		}
		if (c.kind == REIN_CMD_EMIT) {
			type = c.type;
			step = c.step;
			data = json_incref(c.data);
			rein_cmd_clear(&c);
			continue;
		}
		assert_int_equal(c.kind, REIN_CMD_EXEC);
		step = c.step;
		now += 5;
		if (rein_run_effect(run, step) == REIN_STEP_LLM) {
			rein_model_request mr;
			assert_int_equal(rein_run_model_call(run, step, &mr), REIN_OK);
			char *text = rein_json_dump(mr.request);
			assert_non_null(text);
			json_array_append_new(requests, json_string(text));
			rein_free(text);
			nmodel++;
		} else if (spec->steps[step].kind == REIN_STEP_TOOL) {
			ntool++;
		}
		sweep_answer(spec, run, step, nmodel, ntool, &type, &data);
		assert_non_null(data);
	}
	json_decref(data);
	if (rc == REIN_OK)
		*status = rein_run_status(run);
	rein_run_free(run);
	return rc;
}

/* Every allocation of the engine fails in turn: each gives a clean
 * REIN_ENOMEM that says so (ASan: and leaks nothing), and a run that does
 * not stop makes exactly the requests and events of a run with no fault:
 * never a different request, never a fence left out. */
static void test_alloc_faults(void **state)
{
	(void)state;
	rein_script *sb;
	assert_int_equal(rein_script_new(&sb), REIN_OK);
	rein_spec *spec = spec_from_yaml(sb, SWEEP_WF);
	json_t *ref_ev = json_array(), *ref_req = json_array();
	rein_err err = {0};
	rein_status st = REIN_RUN_RUNNING;
	sweep none = {0};
	assert_int_equal(sweep_drive(sb, spec, &none, ref_ev, ref_req, &st, &err), REIN_OK);
	assert_int_equal(st, REIN_RUN_SUCCEEDED);
	assert_int_equal(json_array_size(ref_req), 3); /* ask, and the agent's two turns */
	assert_non_null(strstr(json_string_value(json_array_get(ref_req, 1)), "never instructions"));
	assert_non_null(strstr(json_string_value(json_array_get(ref_req, 2)), "<data source=\\\"tool:look\\\">"));
	long n;
	int clean = 0;
	for (n = 1; n < 100000; n++) {
		sweep sw = {.left = n};
		json_t *evs = json_array(), *req = json_array();
		rein_err_clear(&err);
		st = REIN_RUN_RUNNING;
		int rc = sweep_drive(sb, spec, &sw, evs, req, &st, &err);
		/* what was asked of the model is what the faultless run asked */
		for (size_t i = 0; i < json_array_size(req); i++)
			assert_string_equal(json_string_value(json_array_get(req, i)),
					    json_string_value(json_array_get(ref_req, i)));
		if (rc != REIN_OK) {
			if (rc != REIN_ENOMEM)
				fail_msg("fault %ld: %d %s", n, rc, err.msg);
			assert_true(sw.fired);
			assert_true(strlen(err.msg) > 0);
			clean++;
			/* what was applied before the fault is the faultless run's beginning */
			for (size_t i = 0; i < json_array_size(evs); i++)
				assert_true(json_equal(json_array_get(evs, i), json_array_get(ref_ev, i)));
		} else {
			if (st != REIN_RUN_SUCCEEDED || !json_equal(evs, ref_ev)) {
				char *a = rein_json_dump(evs), *b = rein_json_dump(ref_ev);
				fail_msg("fault %ld: a different run:\n%s\n%s", n, a, b);
			}
		}
		json_decref(evs);
		json_decref(req);
		if (!sw.fired)
			break; /* the whole run went by without reaching fault n */
	}
	printf("engine fault sweep (alloc): %ld fault points, %d clean errors\n", n - 1, clean);
	assert_true(n > 50);
	assert_true(clean > 0);
	json_decref(ref_ev);
	json_decref(ref_req);
	rein_spec_free(spec);
	rein_script_free(sb);
}

/* Drives a run of spec (loaded by the caller into d->sb) to its end. */
static void run_spec_to_end(drive *d, rein_spec *spec)
{
	d->spec = spec;
	d->now = 1000000;
	assert_int_equal(rein_run_new(d->spec, d->sb, "run_test", &d->run), REIN_OK);
	json_t *start = json_pack("{s:o, s:s, s:s}", "input", J("{}"), "workflow", "t", "version", "1");
	record_apply(d, EV(RUN_STARTED), -1, start);
	json_decref(start);
	if (!obey(d, 400))
		fail_msg("run did not end");
}

/* A code step's error names its file by its path inside the workflow: the
 * same step.failed text from the directory and from the store's bundle (a
 * run resumed in another process records what the first would have). */
static void test_code_error_origin(void **state)
{
	(void)state;
	char *dir = temp_dir(), path[512];
	snprintf(path, sizeof path, "%s/scripts", dir);
	assert_int_equal(mkdir(path, 0755), 0);
	snprintf(path, sizeof path, "%s/scripts/x.lua", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("local a = 1\nreturn input.x.y\n", f);
	fclose(f);
	snprintf(path, sizeof path, "%s/workflow.yaml", dir);
	assert_non_null(f = fopen(path, "w"));
	fputs("rein: 1\nname: o\nsteps:\n"
	      "  a: { code: 'return input.x.y', on_fail: b, next: done }\n"
	      "  b: { code: { file: scripts/x.lua }, next: done }\n"
	      "  done: { end: succeeded }\n",
	      f);
	fclose(f);
	drive d1 = {0}, d2 = {0};
	rein_spec *s1 = NULL, *s2 = NULL;
	rein_err e = {0};
	assert_int_equal(rein_script_new(&d1.sb), REIN_OK);
	assert_int_equal(rein_spec_load_dir(dir, d1.sb, &s1, &e), REIN_OK);
	run_spec_to_end(&d1, s1);
	assert_int_equal(rein_script_new(&d2.sb), REIN_OK);
	assert_int_equal(rein_spec_load_bundle(s1->bundle, "version:0123456789ab", d2.sb, &s2, &e),
			 REIN_OK);
	run_spec_to_end(&d2, s2);
	assert_int_equal(rein_run_status(d1.run), REIN_RUN_FAILED);
	assert_int_equal(count(&d1, EV(STEP_FAILED), NULL), 2);
	assert_int_equal(count(&d2, EV(STEP_FAILED), NULL), 2);
	const char *want[] = {"workflow.yaml:4: ", "scripts/x.lua:2: "};
	for (int i = 0; i < 2; i++) {
		const char *x = json_string_value(json_object_get(event_data(&d1, EV(STEP_FAILED), i), "error"));
		const char *y = json_string_value(json_object_get(event_data(&d2, EV(STEP_FAILED), i), "error"));
		assert_non_null(x);
		assert_non_null(y);
		assert_string_equal(x, y);
		assert_true(strncmp(x, want[i], strlen(want[i])) == 0);
	}
	drive_free(&d1);
	drive_free(&d2);
	rm_rf(dir);
	free(dir);
}


/* ---- approvals (engine_approval.c) ------------------------------------------ */

#define APPR_WF \
	"rein: 1\nname: ap\n" \
	"tools:\n" \
	"  pay:\n" \
	"    http: { url: 'http://127.0.0.1:9/pay' }\n" \
	"    effect: write\n" \
	"    risk: medium\n" \
	"    approval: { approvers: 2, roles: [finance], sla_s: 60, on_timeout: deny }\n" \
	"    idempotency: header\n" \
	"    input: { type: object, required: [amount], properties: { amount: { type: number, maximum: 500 } } }\n" \
	"steps:\n" \
	"  pay: { tool: pay, args: { amount: '${input.amount}' }, next: done, on_fail: failed }\n" \
	"  done: { end: succeeded }\n" \
	"  failed: { end: escalated, reason: '${why}' }\n"

/* An approval entry as the runner records it: the token's verdict inside. */
static void deliver_token(drive *d, int n, const json_t *claims, const char *token_error)
{
	char id[32];
	snprintf(id, sizeof id, "apv-%d", n);
	json_t *data = token_error ? json_pack("{s:s, s:b, s:s}", "token", "t", "token_ok", 0,
					       "token_error", token_error)
				   : json_pack("{s:s, s:b, s:O}", "token", "t", "token_ok", 1, "claims",
					       claims);
	json_t *iev = json_pack("{s:s, s:s, s:o, s:s, s:I}", "id", id, "type", "approval", "data", data,
				"sender", "test", "at", (json_int_t)d->now);
	record_apply(d, EV(INBOX_RECEIVED), -1, iev);
	json_decref(iev);
}

/* The claims a good token for the pending request req carries. */
static json_t *good_claims(const json_t *req, const char *by, const char *nonce)
{
	return json_pack("{s:s, s:s, s:O, s:O, s:O, s:s, s:s, s:[s], s:I, s:s}", "run", "run_test",
			 "step", "pay", "key", json_object_get(req, "key"), "action_hash",
			 json_object_get(req, "action_hash"), "policy_version",
			 json_object_get(req, "policy_version"), "tenant", "acme", "by", by, "roles",
			 "finance", "exp", (json_int_t)9e12, "nonce", nonce);
}

static void start_appr(drive *d, const char *input)
{
	*d = (drive){0};
	assert_int_equal(rein_script_new(&d->sb), REIN_OK);
	d->spec = spec_from_yaml(d->sb, APPR_WF);
	d->now = 1000000;
	assert_int_equal(rein_run_new(d->spec, d->sb, "run_test", &d->run), REIN_OK);
	json_t *start = json_pack("{s:o, s:s, s:s, s:{s:s, s:[], s:s}}", "input", J(input), "workflow",
				  "t", "version", "1", "requester", "user", "alice", "roles", "tenant",
				  "acme");
	record_apply(d, EV(RUN_STARTED), -1, start);
	json_decref(start);
	obey_until_sleep(d);
	assert_int_equal(rein_run_status(d->run), REIN_RUN_WAITING);
	assert_int_equal(count(d, EV(APPROVAL_REQUESTED), "pay"), 1);
	assert_int_equal(count(d, EV(TOOL_INTENT), NULL), 0);
}

/* Every binding check refuses (recorded, the run waits on); two distinct
 * finance approvers let the call go with the edited arguments, once; the
 * replay gives the same run; the SLA's deny fails the step. */
static void test_approval_bindings(void **state)
{
	(void)state;
	static const char *const ok1[] = {"ok", NULL};
	drive d;
	start_appr(&d, "{\"amount\": 80}");
	const json_t *req = event_data(&d, EV(APPROVAL_REQUESTED), 0);
	assert_string_equal(json_string_value(json_object_get(req, "risk")), "medium");
	assert_int_equal(json_integer_value(json_object_get(req, "sla_due_at")), 1000000 + 60000);
	assert_int_equal(rein_run_wake_at(d.run), 1000000 + 60000);
	assert_true(strncmp(rein_run_reason(d.run), "approval: apr-", 14) == 0);
	struct {
		const char *field, *value, *error, *why;
	} bad[] = {
		{NULL, NULL, "bad signature", "the token was refused: bad signature"},
		{NULL, NULL, "expired", "the token was refused: expired"},
		{"run", "run_other", NULL, "another run"},
		{"tenant", "globex", NULL, "another tenant"},
		{"action_hash", "00ff", NULL, "another action"},
		{"step", "elsewhere", NULL, "another step"},
		{"policy_version", "abc", NULL, "another policy version"},
		{"by", "alice", NULL, "self-approval"},
		{"key", "rein-other", NULL, "no approval is pending"},
	};
	int n = 0;
	for (size_t i = 0; i < NCASES(bad); i++) {
		json_t *c = good_claims(req, "bob", "n-bad");
		if (bad[i].field)
			json_object_set_new(c, bad[i].field, json_string(bad[i].value));
		deliver_token(&d, n++, c, bad[i].error);
		json_decref(c);
		obey_until_sleep(&d);
		const json_t *r = event_data(&d, EV(APPROVAL_REFUSED), (int)i);
		assert_non_null(r);
		if (strstr(json_string_value(json_object_get(r, "reason")), bad[i].why) == NULL)
			fail_msg("case %zu: refused with '%s', want '%s'", i,
				 json_string_value(json_object_get(r, "reason")), bad[i].why);
		assert_int_equal(rein_run_status(d.run), REIN_RUN_WAITING);
	}
	/* no role */
	json_t *c = good_claims(req, "bob", "n-1");
	json_object_set_new(c, "roles", json_array());
	deliver_token(&d, n++, c, NULL);
	json_decref(c);
	/* an edit beyond the schema's maximum */
	c = good_claims(req, "bob", "n-2");
	json_object_set_new(c, "args", json_pack("{s:i}", "amount", 900));
	deliver_token(&d, n++, c, NULL);
	json_decref(c);
	obey_until_sleep(&d);
	assert_int_equal(count(&d, EV(APPROVAL_REFUSED), NULL), (int)NCASES(bad) + 2);
	assert_int_equal(count(&d, EV(APPROVAL_GRANTED), NULL), 0);
	/* bob's good vote with an edit; the same token again; bob again */
	c = good_claims(req, "bob", "n-3");
	json_object_set_new(c, "args", json_pack("{s:i}", "amount", 40));
	deliver_token(&d, n++, c, NULL);
	deliver_token(&d, n++, c, NULL);
	json_decref(c);
	c = good_claims(req, "bob", "n-4");
	deliver_token(&d, n++, c, NULL);
	json_decref(c);
	obey_until_sleep(&d);
	assert_int_equal(count(&d, EV(APPROVAL_GRANTED), NULL), 1);
	const json_t *r = event_data(&d, EV(APPROVAL_REFUSED), (int)NCASES(bad) + 2);
	assert_non_null(strstr(json_string_value(json_object_get(r, "reason")), "used before"));
	r = event_data(&d, EV(APPROVAL_REFUSED), (int)NCASES(bad) + 3);
	assert_non_null(strstr(json_string_value(json_object_get(r, "reason")), "already"));
	assert_int_equal(rein_run_status(d.run), REIN_RUN_WAITING);
	/* carol: the second approver; the call goes once, edited */
	c = good_claims(req, "carol", "n-5");
	deliver_token(&d, n++, c, NULL);
	json_decref(c);
	script = ok1;
	script_pos = 0;
	assert_true(obey(&d, 100));
	script = NULL;
	assert_int_equal(rein_run_status(d.run), REIN_RUN_SUCCEEDED);
	assert_int_equal(count(&d, EV(TOOL_INTENT), NULL), 1);
	const json_t *intent = event_data(&d, EV(TOOL_INTENT), 0);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(intent, "args"), "amount")), 40);
	assert_string_equal(json_string_value(json_object_get(intent, "key")),
			    json_string_value(json_object_get(req, "key")));
	check_replay(&d);
	drive_free(&d);

	/* the SLA passes: on_timeout deny fails the step (its on_fail) */
	start_appr(&d, "{\"amount\": 80}");
	assert_true(obey(&d, 100));
	assert_int_equal(count(&d, EV(APPROVAL_EXPIRED), NULL), 1);
	assert_int_equal(rein_run_status(d.run), REIN_RUN_ESCALATED);
	assert_non_null(strstr(rein_run_reason(d.run), "expired"));
	assert_int_equal(count(&d, EV(TOOL_INTENT), NULL), 0);
	check_replay(&d);
	drive_free(&d);

	/* a denial: the step fails with who and why */
	start_appr(&d, "{\"amount\": 80}");
	const json_t *req2 = event_data(&d, EV(APPROVAL_REQUESTED), 0);
	json_t *iev = json_pack("{s:s, s:s, s:{s:O, s:s, s:s}, s:s, s:I}", "id", "dny-1", "type",
				"denial", "data", "id", json_object_get(req2, "id"), "by", "bob", "reason",
				"duplicate", "sender", "bob", "at", (json_int_t)d.now);
	record_apply(&d, EV(INBOX_RECEIVED), -1, iev);
	json_decref(iev);
	assert_true(obey(&d, 100));
	assert_int_equal(rein_run_status(d.run), REIN_RUN_ESCALATED);
	assert_non_null(strstr(rein_run_reason(d.run), "denied by an approver (bob): duplicate"));
	check_replay(&d);
	drive_free(&d);
}

int main(void)
{
	rein_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kill_held), cmocka_unit_test(test_run_tenant_shadow),
		cmocka_unit_test(test_routing),      cmocka_unit_test(test_parallel_join),
		cmocka_unit_test(test_wait_timer),   cmocka_unit_test(test_loop_bounds),
		cmocka_unit_test(test_timeout),      cmocka_unit_test(test_step_errors),
		cmocka_unit_test(test_output_schema), cmocka_unit_test(test_corrupt_log),
		cmocka_unit_test(test_step_output_schema), cmocka_unit_test(test_llm_budgets), cmocka_unit_test(test_llm_intent_model),
		cmocka_unit_test(test_tool_retries),  cmocka_unit_test(test_tool_ambiguity),
		cmocka_unit_test(test_tool_crash_in_flight), cmocka_unit_test(test_tool_fallbacks),
		cmocka_unit_test(test_inbox_cancel), cmocka_unit_test(test_code_timeout),
		cmocka_unit_test(test_signal_wait), cmocka_unit_test(test_alloc_faults),
		cmocka_unit_test(test_verify_rules), cmocka_unit_test(test_verify_model),
		cmocka_unit_test(test_code_error_origin), cmocka_unit_test(test_provenance),
		cmocka_unit_test(test_approval_bindings),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
