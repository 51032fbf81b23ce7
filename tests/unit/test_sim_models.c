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
#include "testlib.h"

#include <inttypes.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

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

typedef struct sim {
	rein_rng rng;
	int one_in, crashes;
} sim;

static int crash_cb(void *ud, const rein_event_row *ev)
{
	(void)ev;
	sim *s = ud;
	if (rein_rng_below(&s->rng, (uint64_t)s->one_in) == 0) {
		s->crashes++;
		return 1;
	}
	return 0;
}

typedef struct spend {
	double cost, max_est_cost;
	int64_t tokens, max_est_tokens, model_calls, tool_calls;
} spend;

static int add_spend(void *ud, const rein_event_row *ev)
{
	spend *s = ud;
	json_t *d = json_loads(ev->payload, 0, NULL);
	if (strcmp(ev->type, "model.call") == 0) {
		s->cost += json_number_value(json_object_get(d, "cost_usd"));
		json_t *u = json_object_get(d, "usage");
		s->tokens += json_integer_value(json_object_get(u, "input")) +
			     json_integer_value(json_object_get(u, "output"));
		s->model_calls++;
	} else if (strcmp(ev->type, "model.attempt") == 0) {
		s->model_calls++;
	} else if (strcmp(ev->type, "model.intent") == 0) {
		json_t *e = json_object_get(d, "estimate");
		double c = json_number_value(json_object_get(e, "cost_usd"));
		int64_t t = json_integer_value(json_object_get(e, "tokens"));
		if (c > s->max_est_cost)
			s->max_est_cost = c;
		if (t > s->max_est_tokens)
			s->max_est_tokens = t;
	} else if (strcmp(ev->type, "tool.intent") == 0) {
		s->tool_calls++;
	}
	json_decref(d);
	return 0;
}

static void test_model_simulation(void **state)
{
	(void)state;
	const char *env = getenv("REIN_SEED");
	uint64_t seed = env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL);
	int nwf = getenv("REIN_SIM_N") ? atoi(getenv("REIN_SIM_N")) : 30;
	printf("SEED=%" PRIu64 " (replay with REIN_SEED=%" PRIu64 ")\n", seed, seed);
	char *dir = temp_dir();
	char mpf[600], tpf[600], db[600], url[128];
	snprintf(mpf, sizeof mpf, "%s/mport", dir);
	snprintf(tpf, sizeof tpf, "%s/tport", dir);
	snprintf(db, sizeof db, "%s/rein.db", dir);
	const char *mbin = getenv("REIN_MODELSERVER") ? getenv("REIN_MODELSERVER") : "build/asan/tools/modelserver";
	const char *tbin = getenv("REIN_TOOLSERVER") ? getenv("REIN_TOOLSERVER") : "build/asan/tools/toolserver";
	int mport, tport;
	pid_t ms = test_server_start(mbin, mpf, &mport), ts = test_server_start(tbin, tpf, &tport);
	assert_true(mport > 0 && tport > 0);
	snprintf(url, sizeof url, "http://127.0.0.1:%d", mport);
	setenv("MODEL_URL", url, 1);
	setenv("MODEL_KEY", "sim-key-123456", 1);
	snprintf(url, sizeof url, "http://127.0.0.1:%d", tport);
	setenv("TOOLSERVER", url, 1);

	rein_rng rng;
	rein_rng_seed(&rng, seed);
	/* the model's script: a long random mix */
	rein_buf script = {0};
	rein_buf_puts(&script, "{\"turns\": [");
	for (int i = 0; i < 600; i++)
		rein_buf_printf(&script, "%s%s", i ? "," : "", turn(&rng));
	rein_buf_puts(&script, "]}");
	char sf[600], cmd[1400];
	snprintf(sf, sizeof sf, "%s/script.json", dir);
	FILE *f = fopen(sf, "w");
	assert_non_null(f);
	fputs(script.p, f);
	fclose(f);
	rein_buf_free(&script);
	snprintf(cmd, sizeof cmd, "curl -s -X POST --data-binary @%s http://127.0.0.1:%d/control/script >/dev/null", sf, mport);
	assert_int_equal(system(cmd), 0);

	rein_script *sb;
	assert_int_equal(rein_script_new(&sb), REIN_OK);
	rein_spec **specs = calloc((size_t)nwf, sizeof *specs);
	char (*ids)[64] = calloc((size_t)nwf, 64);
	for (int i = 0; i < nwf; i++) {
		char *yaml = generate(&rng, i);
		specs[i] = spec_from_yaml(sb, yaml);
		rein_free(yaml);
	}
	sim s = {.one_in = 40};
	rein_rng_seed(&s.rng, seed ^ 0x30de1);
	rein_runner_opts o = {.crash_point = crash_cb, .ud = &s};
	rein_err err = {0};
	int finished = 0;
	for (int round = 0; round < 2000 && finished < nwf; round++) {
		rein_store *st;
		rein_runner *rn;
		assert_int_equal(rein_store_open_sqlite(db, &(rein_store_opts){.no_sync = true}, &st, &err), REIN_OK);
		assert_int_equal(rein_runner_new(st, sb, &o, &rn, &err), REIN_OK);
		int rc = REIN_OK;
		if (round == 0) {
			int saved = s.one_in;
			s.one_in = 1 << 30;
			for (int i = 0; i < nwf && rc == REIN_OK; i++) {
				char want[64];
				snprintf(want, sizeof want, "run_simm_%03d", i);
				json_t *in = json_object();
				rc = rein_runner_start(rn, specs[i], in, want, ids[i], &err);
				json_decref(in);
			}
			if (rc == REIN_OK)
				rc = rein_runner_flush(rn, &err);
			s.one_in = saved;
			assert_int_equal(rc, REIN_OK);
		} else {
			for (int i = 0; i < nwf && rc == REIN_OK; i++) {
				rein_run_row row = {0};
				assert_int_equal(rein_store_run_get(st, ids[i], &row, &err), REIN_OK);
				if (row.status < REIN_RUN_SUCCEEDED) {
					int r2 = rein_runner_resume(rn, ids[i], &err);
					if (r2 != REIN_OK && r2 != REIN_EFAULT)
						fail_msg("seed %" PRIu64 ": resume %s: %s", seed, ids[i], err.msg);
					rc = r2;
				}
				rein_run_row_clear(&row);
			}
		}
		if (rc == REIN_OK)
			rc = rein_runner_drive(rn, &err);
		if (rc != REIN_OK && rc != REIN_EFAULT)
			fail_msg("seed %" PRIu64 ": %s", seed, err.msg);
		rein_run_result r;
		while (rein_runner_result(rn, &r))
			rein_run_result_clear(&r);
		rein_runner_free(rn);
		finished = 0;
		for (int i = 0; i < nwf; i++) {
			rein_run_row row = {0};
			assert_int_equal(rein_store_run_get(st, ids[i], &row, &err), REIN_OK);
			finished += row.status >= REIN_RUN_SUCCEEDED;
			rein_run_row_clear(&row);
		}
		rein_store_close(st);
	}
	assert_int_equal(finished, nwf); /* every run terminated */

	rein_store *st;
	int statuses[8] = {0};
	assert_int_equal(rein_store_open_sqlite(db, NULL, &st, &err), REIN_OK);
	for (int i = 0; i < nwf; i++) {
		rein_run_row row = {0};
		int64_t bad = 0;
		spend sp = {0};
		assert_int_equal(rein_store_run_get(st, ids[i], &row, &err), REIN_OK);
		statuses[row.status]++;
		if (rein_store_verify_run(st, ids[i], &bad, &err) != REIN_OK)
			fail_msg("seed %" PRIu64 ": %s", seed, err.msg);
		assert_int_equal(rein_store_events_load(st, ids[i], add_spend, &sp, &err), REIN_OK);
		const rein_spec *sp_spec = specs[i];
		if (sp.cost > sp_spec->max_cost_usd + sp.max_est_cost + 1e-9)
			fail_msg("seed %" PRIu64 ": %s spent %.6f past %.6f (+%.6f)", seed, ids[i], sp.cost,
				 sp_spec->max_cost_usd, sp.max_est_cost);
		if (sp.tokens > sp_spec->max_tokens + sp.max_est_tokens)
			fail_msg("seed %" PRIu64 ": %s used %lld tokens past %lld", seed, ids[i],
				 (long long)sp.tokens, (long long)sp_spec->max_tokens);
		if (sp.model_calls > sp_spec->max_model_calls)
			fail_msg("seed %" PRIu64 ": %s made %lld model calls, max %lld", seed, ids[i],
				 (long long)sp.model_calls, (long long)sp_spec->max_model_calls);
		if (sp.tool_calls > sp_spec->max_tool_calls)
			fail_msg("seed %" PRIu64 ": %s made %lld tool calls, max %lld", seed, ids[i],
				 (long long)sp.tool_calls, (long long)sp_spec->max_tool_calls);
		rein_run_row_clear(&row);
	}
	rein_store_close(st);
	printf("sim-models: %d workflows, %d crashes, %d succeeded, %d escalated, %d failed, %d needs_review; "
	       "no budget overrun\n",
	       nwf, s.crashes, statuses[REIN_RUN_SUCCEEDED], statuses[REIN_RUN_ESCALATED],
	       statuses[REIN_RUN_FAILED], statuses[REIN_RUN_NEEDS_REVIEW]);
	kill(ms, SIGTERM);
	kill(ts, SIGTERM);
	waitpid(ms, NULL, 0);
	waitpid(ts, NULL, 0);
	for (int i = 0; i < nwf; i++)
		rein_spec_free(specs[i]);
	free(specs);
	free(ids);
	rein_script_free(sb);
	rm_rf(dir);
	free(dir);
}

int main(void)
{
	rein_init();
	const struct CMUnitTest tests[] = {cmocka_unit_test(test_model_simulation)};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
