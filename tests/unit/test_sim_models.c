/*
 * The simulation with model faults. Generated workflows with llm and agent
 * steps talk to the loopback model server, whose script is a long random mix
 * of good answers, invalid answers, tool calls that never end, 429s with
 * Retry-After, 500s, cut streams and malformed bodies; their budgets are
 * random and small. All runs are in flight in one runner, and the process
 * dies at random event boundaries (the store reopened, unfinished runs
 * resumed). Invariants: every run terminates; no run spends past a hard
 * budget by more than one call's estimate (cost, tokens), nor makes more
 * model or tool calls than allowed; every chain verifies.
 *
 * REIN_SEED=N replays a seed. Needs build/asan/tools/{modelserver,toolserver}
 * (REIN_MODELSERVER, REIN_TOOLSERVER override).
 */
#include "simlib.h"

static const char *turn(rein_rng *r)
{
	static const char *const turns[] = {
		"{\"text\": \"{\\\"answer\\\": \\\"yes\\\"}\", \"usage\": {\"input\": 300, \"output\": 20}}",
		"{\"text\": \"{\\\"answer\\\": \\\"yes\\\"}\"}",
		"{\"text\": \"{\\\"answer\\\": \\\"fine\\\"}\"}",
		"{\"text\": \"{\\\"answer\\\": 42}\"}",
		"{\"text\": \"not json\"}",
		"{\"tool_calls\": [{\"name\": \"look\", \"arguments\": {\"q\": \"x\"}}], \"usage\": {\"input\": 500, \"output\": 40}}",
		"{\"tool_calls\": [{\"name\": \"look\", \"arguments\": {\"q\": \"y\"}}, {\"name\": \"nope\", \"arguments\": {}}]}",
		"{\"error\": {\"status\": 429, \"retry_after\": 0}}",
		"{\"error\": {\"status\": 500}}",
		"{\"malformed\": true}",
		"{\"cut_after\": 2, \"text\": \"{\\\"answer\\\": \\\"no\\\"}\"}",
	};
	return turns[rein_rng_below(r, sizeof turns / sizeof *turns)];
}

static char *generate(rein_rng *r, int idx)
{
	rein_buf y = {0};
	rein_buf_printf(&y,
			"rein: 1\nname: simmodels%d\n"
			"models:\n"
			"  a: { provider: openai, model: m-a, base_url: \"${env.MODEL_URL}\", api_key_env: MODEL_KEY,\n"
			"       price: { input: 2.0, output: 8.0 }, retry: { max_attempts: 2, base_ms: 5 }, fallback: b }\n"
			"  b: { provider: anthropic, model: m-b, base_url: \"${env.MODEL_URL}\", api_key_env: MODEL_KEY,\n"
			"       price: { input: 0.5, output: 1.0 }, retry: { max_attempts: 2, base_ms: 5 } }\n"
			"budgets: { max_cost_usd: %.4f, max_tokens: %d, max_model_calls: %d, max_tool_calls: %d }\n"
			"tools:\n"
			"  look: { http: { url: \"${env.TOOLSERVER}/tool/ok\" }, effect: read, idempotency: header,\n"
			"          input: { type: object } }\n"
			"steps:\n",
			idx, 0.002 + (double)rein_rng_below(r, 20) / 1000.0, 2000 + (int)rein_rng_below(r, 8000),
			2 + (int)rein_rng_below(r, 8), 1 + (int)rein_rng_below(r, 6));
	int n = 1 + (int)rein_rng_below(r, 3);
	for (int i = 0; i < n; i++) {
		const char *next = i + 1 < n ? "" : "done";
		char nx[16];
		snprintf(nx, sizeof nx, "s%d", i + 1);
		if (rein_rng_below(r, 2))
			rein_buf_printf(&y,
					"  s%d: { llm: { model: a, prompt: 'question %d', max_tokens: 50,\n"
					"        output: { type: object, required: [answer], properties: { answer: { type: string } } } },\n"
					"        next: %s }\n",
					i, i, *next ? next : nx);
		else
			rein_buf_printf(&y,
					"  s%d: { agent: { model: a, prompt: 'task %d', tools: [look], max_turns: %d, max_tokens: 50,\n"
					"        output: { type: object, required: [answer] } }, next: %s }\n",
					i, i, 2 + (int)rein_rng_below(r, 6), *next ? next : nx);
	}
	rein_buf_puts(&y, "  done: { end: succeeded }\n");
	return y.p;
}

typedef struct spend {
	double cost, max_est_cost;
	int64_t tokens, max_est_tokens, model_calls, tool_calls;
} spend;

static int add_spend(void *ud, const rein_event_row *ev)
{
	spend *s = ud;
	json_t *d = json_loads(ev->payload, 0, NULL);
	if (rein_event_type_find(ev->type) == REIN_EV_MODEL_CALL) {
		s->cost += json_number_value(json_object_get(d, "cost_usd"));
		json_t *u = json_object_get(d, "usage");
		s->tokens += json_integer_value(json_object_get(u, "input")) +
			     json_integer_value(json_object_get(u, "output"));
		s->model_calls++;
	} else if (rein_event_type_find(ev->type) == REIN_EV_MODEL_ATTEMPT) {
		s->model_calls++;
	} else if (rein_event_type_find(ev->type) == REIN_EV_MODEL_INTENT) {
		json_t *e = json_object_get(d, "estimate");
		double c = json_number_value(json_object_get(e, "cost_usd"));
		int64_t t = json_integer_value(json_object_get(e, "tokens"));
		if (c > s->max_est_cost)
			s->max_est_cost = c;
		if (t > s->max_est_tokens)
			s->max_est_tokens = t;
	} else if (rein_event_type_find(ev->type) == REIN_EV_TOOL_INTENT) {
		s->tool_calls++;
	}
	json_decref(d);
	return 0;
}

/* No run spends past a hard budget by more than one call's estimate (cost,
 * tokens), nor makes more model or tool calls than allowed. */
static void check_run(sim *s, int i, rein_store *st, const rein_run_row *row, void *ud)
{
	spend sp = {0};
	rein_err err = {0};
	assert_int_equal(rein_store_events_load(st, s->ids[i], add_spend, &sp, &err), REIN_OK);
	const rein_spec *spec = s->specs[i];
	if (sp.cost > spec->max_cost_usd + sp.max_est_cost + 1e-9)
		fail_msg("seed %" PRIu64 ": %s spent %.6f past %.6f (+%.6f)", s->seed, s->ids[i], sp.cost,
			 spec->max_cost_usd, sp.max_est_cost);
	if (sp.tokens > spec->max_tokens + sp.max_est_tokens)
		fail_msg("seed %" PRIu64 ": %s used %lld tokens past %lld", s->seed, s->ids[i],
			 (long long)sp.tokens, (long long)spec->max_tokens);
	if (sp.model_calls > spec->max_model_calls)
		fail_msg("seed %" PRIu64 ": %s made %lld model calls, max %lld", s->seed, s->ids[i],
			 (long long)sp.model_calls, (long long)spec->max_model_calls);
	if (sp.tool_calls > spec->max_tool_calls)
		fail_msg("seed %" PRIu64 ": %s made %lld tool calls, max %lld", s->seed, s->ids[i],
			 (long long)sp.tool_calls, (long long)spec->max_tool_calls);
}

static void test_model_simulation(void **state)
{
	(void)state;
	sim s;
	sim_init(&s, 30, 0x30de1);
	test_server ms, ts;
	assert_int_equal(test_server_up(&ms, "modelserver"), 0);
	assert_int_equal(test_server_up(&ts, "toolserver"), 0);
	char url[128];
	snprintf(url, sizeof url, "http://127.0.0.1:%d", ms.port);
	setenv("MODEL_URL", url, 1);
	setenv("MODEL_KEY", "sim-key-123456", 1);
	snprintf(url, sizeof url, "http://127.0.0.1:%d", ts.port);
	setenv("TOOLSERVER", url, 1);

	rein_rng rng;
	rein_rng_seed(&rng, s.seed);
	/* the model's script: a long random mix */
	rein_buf script = {0};
	rein_buf_puts(&script, "{\"turns\": [");
	for (int i = 0; i < 600; i++)
		rein_buf_printf(&script, "%s%s", i ? "," : "", turn(&rng));
	rein_buf_puts(&script, "]}");
	char sf[600], cmd[1400];
	snprintf(sf, sizeof sf, "%s/script.json", s.dir);
	FILE *f = fopen(sf, "w");
	assert_non_null(f);
	fputs(script.p, f);
	fclose(f);
	rein_buf_free(&script);
	snprintf(cmd, sizeof cmd, "curl -s -X POST --data-binary @%s http://127.0.0.1:%d/control/script >/dev/null", sf, ms.port);
	assert_int_equal(system(cmd), 0);

	for (int i = 0; i < s.n; i++) {
		char *yaml = generate(&rng, i);
		s.specs[i] = spec_from_yaml(s.sb, yaml);
		rein_free(yaml);
	}
	sim_run_all(&s, "run_simm");
	sim_check(&s, check_run, NULL);
	printf("sim-models: %d workflows, %d crashes, %d succeeded, %d escalated, %d failed, %d needs_review; "
	       "no budget overrun\n",
	       s.n, s.crashes, s.statuses[REIN_RUN_SUCCEEDED], s.statuses[REIN_RUN_ESCALATED],
	       s.statuses[REIN_RUN_FAILED], s.statuses[REIN_RUN_NEEDS_REVIEW]);
	test_server_down(&ms);
	test_server_down(&ts);
	sim_free(&s);
}

int main(void)
{
	rein_init();
	const struct CMUnitTest tests[] = {cmocka_unit_test(test_model_simulation)};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
