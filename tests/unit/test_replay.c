/*
 * rein_replay_events: a log made by driving the engine (code steps, timers
 * side by side, a join) replays with every decision reproduced; a changed
 * engine decision (a timer's due_at, a join's output), a changed code step
 * result, and an engine made to decide differently (the same log replayed
 * against a spec whose code step computes something else: the injected
 * non-determinism) are each reported as the first divergence, at that seq.
 *
 * rein_whatif_events: the same spec is "same"; a changed code step is
 * exactly that step's output; an llm step the recording never asked sends
 * its request to the provider (a stub here), and a provider that cannot
 * answer is the clear error.
 */
#include "testlib.h"

static const char *yaml_of(const char *r2)
{
	static char buf[1024];
	snprintf(buf, sizeof buf,
		 "rein: 1\nname: p\nsteps:\n"
		 "  fan: { parallel: { branches: [l1, r1] }, next: sum }\n"
		 "  l1: { code: 'return 1', next: l2 }\n"
		 "  l2: { wait: 5, next: l3 }\n"
		 "  l3: { code: 'return steps.l1.out + 10' }\n"
		 "  r1: { parallel: [x, y], next: r2 }\n"
		 "  x: { wait: 2 }\n"
		 "  y: { code: 'return 7' }\n"
		 "  r2: { code: '%s' }\n"
		 "  sum: { code: 'return steps.fan.out.l1 + steps.fan.out.r1', next: done }\n"
		 "  done: { end: succeeded }\n",
		 r2);
	return buf;
}

typedef struct evlog {
	rein_event_row rows[256];
	size_t n;
} log_t;

static void add(log_t *l, const rein_spec *sp, const char *type, int step, int64_t at,
		const json_t *data)
{
	assert_true(l->n < 256);
	rein_event_row *r = &l->rows[l->n];
	*r = (rein_event_row){.run_id = "run_t", .seq = (int64_t)l->n + 1, .type = type,
			      .step = step >= 0 ? sp->steps[step].name : NULL, .at = at,
			      .payload = rein_json_dump(data)};
	assert_non_null(r->payload);
	l->n++;
}

/* Drives a run of sp to its end the way the runner does, recording its log. */
static void record(rein_script *sb, const rein_spec *sp, log_t *l)
{
	rein_run *run = NULL;
	rein_err err = {0};
	int64_t now = 1000000;
	assert_int_equal(rein_run_new(sp, sb, "run_t", &run), REIN_OK);
	json_t *start = json_pack("{s:{}, s:s, s:s}", "input", "workflow", "p", "version", "1");
	add(l, sp, EV(RUN_STARTED), -1, now, start);
	assert_int_equal(rein_run_apply(run, EV(RUN_STARTED), NULL, now, start, &err), REIN_OK);
	json_decref(start);
	for (int guard = 0; guard < 400; guard++) {
		rein_cmd c;
		assert_int_equal(rein_run_poll(run, now, &c, &err), REIN_OK);
		if (c.kind == REIN_CMD_NONE)
			break;
		if (c.kind == REIN_CMD_SLEEP) {
			now = c.due;
			continue;
		}
		const char *type = c.type;
		json_t *data = c.data;
		int64_t at = now;
		if (c.kind == REIN_CMD_EXEC) {
			assert_int_equal(rein_run_exec(run, c.step, NULL, &type, &data, &err), REIN_OK);
			at = now += 3; /* the step took 3 ms: stamped when it ended */
		} else {
			json_incref(data);
		}
		add(l, sp, type, c.step, at, data);
		assert_int_equal(rein_run_apply(run, type, l->rows[l->n - 1].step, at, data, &err),
				 REIN_OK);
		json_decref(data);
		rein_cmd_clear(&c);
	}
	assert_int_equal(rein_run_status(run), REIN_RUN_SUCCEEDED);
	rein_run_free(run);
}

static void log_free(log_t *l)
{
	for (size_t i = 0; i < l->n; i++)
		rein_free((char *)l->rows[i].payload);
}

/* The seq of the first event of type at step (NULL: any). */
static int64_t seq_of(const log_t *l, const char *type, const char *step)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->rows[i].type, type) == 0 &&
		    (step == NULL || (l->rows[i].step && strcmp(l->rows[i].step, step) == 0)))
			return l->rows[i].seq;
	fail_msg("no %s", type);
	return 0;
}

/* Replaces the payload of seq with text. */
static void tamper(log_t *l, int64_t seq, const char *text)
{
	rein_free((char *)l->rows[seq - 1].payload);
	l->rows[seq - 1].payload = rein_strdup(text);
}

static void replay_expect(rein_script *sb, const rein_spec *sp, const log_t *l, int64_t seq,
			  const char *type)
{
	rein_replay_result res;
	rein_err err = {0};
	assert_int_equal(rein_replay_events(sp, sb, "run_t", l->rows, l->n, &res, &err), REIN_OK);
	if (res.diverged_seq != seq)
		fprintf(stderr, "diverged at %lld (%s)\n  expected %s\n  got %s\n",
			(long long)res.diverged_seq, res.type ? res.type : "", res.expected ? res.expected : "",
			res.got ? res.got : "");
	assert_int_equal(res.diverged_seq, seq);
	if (seq) {
		assert_string_equal(res.type, type);
		assert_int_equal(res.events, seq - 1);
	} else {
		assert_int_equal(res.events, (int64_t)l->n);
		assert_true(res.decisions > 0 && res.decisions < res.events);
	}
	rein_replay_result_clear(&res);
}

static void test_reproduced(void **state)
{
	(void)state;
	rein_script *sb = NULL;
	assert_int_equal(rein_script_new(&sb), REIN_OK);
	rein_spec *sp = spec_from_yaml(sb, yaml_of("return steps.r1.out.y * 2"));
	log_t l = {0};
	record(sb, sp, &l);
	replay_expect(sb, sp, &l, 0, NULL);
	log_free(&l);
	rein_spec_free(sp);
	rein_script_free(sb);
}

static void test_tampered(void **state)
{
	(void)state;
	rein_script *sb = NULL;
	assert_int_equal(rein_script_new(&sb), REIN_OK);
	rein_spec *sp = spec_from_yaml(sb, yaml_of("return steps.r1.out.y * 2"));
	struct {
		const char *type, *step, *payload;
	} cases[] = {
		{"timer.scheduled", "l2", "{\"due_at\":1}"},      /* an engine decision */
		{"step.completed", "fan", "{\"out\":{\"l1\":0}}"}, /* the join's output */
		{"step.completed", "y", "{\"out\":8}"},           /* a code step's result */
		{"run.ended", NULL, "{\"status\":\"failed\"}"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		log_t l = {0};
		record(sb, sp, &l);
		int64_t seq = seq_of(&l, cases[i].type, cases[i].step);
		tamper(&l, seq, cases[i].payload);
		replay_expect(sb, sp, &l, seq, cases[i].type);
		log_free(&l);
	}
	rein_spec_free(sp);
	rein_script_free(sb);
}

/* The injected non-determinism: the engine replaying the log decides r2's
 * output otherwise than the one that wrote it. */
static void test_engine_changed(void **state)
{
	(void)state;
	rein_script *sb = NULL;
	assert_int_equal(rein_script_new(&sb), REIN_OK);
	rein_spec *a = spec_from_yaml(sb, yaml_of("return steps.r1.out.y * 2"));
	rein_spec *b = spec_from_yaml(sb, yaml_of("return steps.r1.out.y * 3"));
	log_t l = {0};
	record(sb, a, &l);
	rein_replay_result res;
	rein_err err = {0};
	assert_int_equal(rein_replay_events(b, sb, "run_t", l.rows, l.n, &res, &err), REIN_OK);
	assert_int_equal(res.diverged_seq, seq_of(&l, "step.completed", "r2"));
	assert_non_null(strstr(res.expected, "\"out\":14"));
	assert_non_null(strstr(res.got, "\"out\":21"));
	rein_replay_result_clear(&res);
	log_free(&l);
	rein_spec_free(a);
	rein_spec_free(b);
	rein_script_free(sb);
}

static json_t *whatif_of(rein_script *sb, const rein_spec *rec, const rein_spec *sp,
			 const log_t *l, const rein_whatif_opts *o, int want_rc, rein_err *err)
{
	json_t *rep = NULL;
	assert_int_equal(rein_whatif_events(rec, sp, sb, "run_t", l->rows, l->n, o, &rep, err),
			 want_rc);
	if (want_rc == REIN_OK)
		assert_non_null(rep);
	return rep;
}

static void test_whatif_code(void **state)
{
	(void)state;
	rein_script *sb = NULL;
	assert_int_equal(rein_script_new(&sb), REIN_OK);
	rein_spec *a = spec_from_yaml(sb, yaml_of("return steps.r1.out.y * 2"));
	rein_spec *b = spec_from_yaml(sb, yaml_of("return steps.r1.out.y * 3"));
	log_t l = {0};
	record(sb, a, &l);
	rein_err err = {0};
	json_t *rep = whatif_of(sb, a, a, &l, NULL, REIN_OK, &err);
	assert_true(json_is_true(json_object_get(rep, "same")));
	assert_int_equal(json_array_size(json_object_get(rep, "differences")), 0);
	assert_string_equal(json_string_value(json_object_get(json_object_get(rep, "what_if"), "status")),
			    "succeeded");
	json_decref(rep);
	/* the changed code step: its output, and what is made of it (the join,
	 * the sum, the run's output), in the order the steps ended */
	rep = whatif_of(sb, a, b, &l, NULL, REIN_OK, &err);
	json_t *d = json_object_get(rep, "differences");
	char *text = rein_json_dump(d);
	assert_string_equal(text,
			    "[{\"kind\":\"output\",\"recorded\":25,\"what_if\":32},"
			    "{\"kind\":\"step_output\",\"recorded\":{\"out\":14,\"status\":\"completed\"},"
			    "\"step\":\"r2\",\"what_if\":{\"out\":21,\"status\":\"completed\"}},"
			    "{\"kind\":\"step_output\",\"recorded\":{\"out\":{\"l1\":11,\"r1\":14},"
			    "\"status\":\"completed\"},\"step\":\"fan\",\"what_if\":{\"out\":{\"l1\":11,"
			    "\"r1\":21},\"status\":\"completed\"}},"
			    "{\"kind\":\"step_output\",\"recorded\":{\"out\":25,\"status\":\"completed\"},"
			    "\"step\":\"sum\",\"what_if\":{\"out\":32,\"status\":\"completed\"}}]");
	rein_free(text);
	json_decref(rep);
	log_free(&l);
	rein_spec_free(a);
	rein_spec_free(b);
	rein_script_free(sb);
}

typedef struct stub {
	int calls;
	bool refuse;
} stub;

static int stub_model(void *ud, const rein_spec *spec, int tier, const json_t *request, int attempt,
		      rein_model_routed *out, rein_err *err)
{
	stub *s = ud;
	s->calls++;
	out->n = 1;
	if (s->refuse) {
		out->ev[0].type = EV(MODEL_ATTEMPT);
		out->ev[0].data = json_pack("{s:i, s:s, s:s, s:b}", "attempt", attempt, "outcome",
					    "config", "error", "no base_url", "transient", 0);
	} else {
		out->ev[0].type = EV(MODEL_CALL);
		out->ev[0].data = json_pack("{s:s, s:s, s:{s:s}, s:{s:i, s:i}, s:f}", "tier",
					    spec->tiers[tier].name, "request_hash", "x", "response",
					    "text", "hello", "usage", "input", 10, "output", 2,
					    "cost_usd", 0.5);
	}
	assert_non_null(request);
	return out->ev[0].data ? REIN_OK : rein_err_set(err, REIN_ENOMEM, "out of memory");
}

static void test_whatif_model(void **state)
{
	(void)state;
	rein_script *sb = NULL;
	assert_int_equal(rein_script_new(&sb), REIN_OK);
	rein_spec *a = spec_from_yaml(sb, "rein: 1\nname: p\nsteps:\n"
					  "  a: { code: 'return 1', next: done }\n"
					  "  done: { end: succeeded }\n");
	rein_spec *b = spec_from_yaml(sb, "rein: 1\nname: p\n"
					  "models: { main: { provider: replay, model: m1 } }\n"
					  "steps:\n"
					  "  a: { code: 'return 1', next: ask }\n"
					  "  ask: { llm: { model: main, prompt: hi }, next: done }\n"
					  "  done: { end: succeeded }\n");
	log_t l = {0};
	record(sb, a, &l);
	rein_err err = {0};
	stub s = {0};
	rein_whatif_opts o = {.model = stub_model, .ud = &s};
	json_t *rep = whatif_of(sb, a, b, &l, &o, REIN_OK, &err);
	assert_int_equal(s.calls, 1);
	json_t *w = json_object_get(rep, "what_if");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(w, "model_requests"), "sent")), 1);
	char *text = rein_json_dump(json_object_get(rep, "differences"));
	assert_non_null(strstr(text, "{\"kind\":\"path\",\"recorded\":[\"a\"],\"what_if\":[\"a\",\"ask\"]}"));
	assert_non_null(strstr(text, "{\"kind\":\"model_calls\",\"recorded\":0,\"what_if\":1}"));
	assert_non_null(strstr(text, "{\"kind\":\"tokens\",\"recorded\":{\"input\":0,\"output\":0},"
				    "\"what_if\":{\"input\":10,\"output\":2}}"));
	assert_non_null(strstr(text, "{\"kind\":\"cost\",\"recorded\":0.0,\"what_if\":0.5}"));
	rein_free(text);
	json_decref(rep);
	/* a provider that cannot answer: the clear error, no report */
	s = (stub){.refuse = true};
	rep = whatif_of(sb, a, b, &l, &o, REIN_EINVAL, &err);
	assert_null(rep);
	assert_non_null(strstr(err.msg, "model request changed at step ask and no provider is "
					"configured: tier 'main': no base_url"));
	rein_err_clear(&err);
	log_free(&l);
	rein_spec_free(a);
	rein_spec_free(b);
	rein_script_free(sb);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reproduced),
		cmocka_unit_test(test_tampered),
		cmocka_unit_test(test_engine_changed),
		cmocka_unit_test(test_whatif_code),
		cmocka_unit_test(test_whatif_model),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
