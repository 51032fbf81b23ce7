/*
 * Model tiers, trace settings and `llm` steps in a spec.
 *
 *   models:
 *     small: { provider: openai, model: gpt-4o-mini-2024-07-18, fallback: large,
 *              price: { input: 0.15, output: 0.6, cached: 0.075 } }
 *     large: { provider: anthropic, model: claude-sonnet-4-20250514 }
 *     recorded: { provider: replay, file: recordings/run.json,
 *                 breaker: { failures: 5, window_s: 60, cooldown_s: 30 } }
 *   trace: { store_prompts: false }
 *
 * A tier's provider configuration is kept as JSON for the model layer (see
 * docs/models.md); strings may hold ${env.NAME:-default}, so the same
 * workflow can be pointed at a real endpoint with environment variables. The
 * provider and model are resolved when the workflow is loaded (model.intent
 * records them; a recorded one is what a resumed run calls), the rest when
 * the call is made.
 */
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "spec_int.h"

static const char *const tier_keys[] = {
	"provider", "model",      "base_url",  "api_key_env", "headers",  "timeout_s",
	"price",    "max_tokens", "retry",     "fallback",    "file",     "on_miss",
	"cache",    "max_tokens_field", "anthropic_version", "stream", "from_run", "breaker", NULL};

static bool number(loader *L, const ynode *n, const char *what, double min, double *out)
{
	json_t *j = n->type == YNODE_SCALAR ? ynode_scalar_json(n) : NULL;
	bool ok = json_is_number(j) && json_number_value(j) >= min;
	if (ok)
		*out = json_number_value(j);
	else
		DIAG(L, n, "%s must be a number >= %g", what, min);
	json_decref(j);
	return ok;
}

/* s with ${env.X:-default} resolved, as a JSON string; NULL (L->nomem) when
 * memory runs out. */
static json_t *env_string(loader *L, const char *s)
{
	char *x = rein_expand_env(s);
	json_t *j = x ? json_string(x) : NULL;
	rein_free(x);
	if (j == NULL)
		L->nomem = true;
	return j;
}

static void load_tier(loader *L, rein_model_tier *t, const ynode *n, const ynode **fallback)
{
	const ynode *v;
	int64_t x;
	t->fallback = -1;
	t->max_tokens = 1024;
	t->retry = (rein_retry_policy){3, 500, 20000, 120000};
	t->breaker = (rein_breaker_policy){5, 0, 30000};
	if (!spec_want_type(L, n, YNODE_MAP, "a model tier"))
		return;
	spec_check_keys(L, n, "a model tier", tier_keys);
	json_t *cfg = json_object();
	if (cfg == NULL) {
		L->nomem = true;
		return;
	}
	t->config = cfg;
	v = ynode_get(n, "provider");
	if (v == NULL || v->type != YNODE_SCALAR) {
		DIAG(L, v ? v : n, "model tier '%s' needs 'provider' (openai, anthropic or replay)", t->name);
	} else {
		if (!strstr(v->str, "${") && strcmp(v->str, "openai") != 0 &&
		    strcmp(v->str, "anthropic") != 0 && strcmp(v->str, "replay") != 0)
			DIAG(L, v, "provider must be openai, anthropic or replay (or ${env.X:-default})");
		json_object_set_new(cfg, "type", env_string(L, v->str));
	}
	if ((v = ynode_get(n, "model")) == NULL || v->type != YNODE_SCALAR)
		DIAG(L, v ? v : n, "model tier '%s' needs 'model' (the exact model name)", t->name);
	else /* the provider and model are resolved here, once: model.intent
	      * records the names the calls use */
		json_object_set_new(cfg, "model", env_string(L, v->str));
	static const char *const strs[] = {"base_url", "api_key_env", "on_miss", "max_tokens_field",
					   "anthropic_version", "from_run", NULL};
	for (const char *const *k = strs; *k; k++)
		if ((v = ynode_get(n, *k)) && v->type == YNODE_SCALAR)
			json_object_set_new(cfg, *k, json_string(v->str));
	if ((v = ynode_get(n, "headers")) && spec_want_type(L, v, YNODE_MAP, "headers"))
		json_object_set_new(cfg, "headers", spec_to_json(L, v));
	if ((v = ynode_get(n, "timeout_s")) && spec_want_int(L, v, "timeout_s", 1, &x))
		json_object_set_new(cfg, "timeout_ms", json_integer(x * 1000));
	if ((v = ynode_get(n, "max_tokens")) && spec_want_int(L, v, "max_tokens", 1, &x))
		t->max_tokens = x;
	if ((v = ynode_get(n, "price")) && spec_want_type(L, v, YNODE_MAP, "price")) {
		static const char *const pk[] = {"input", "output", "cached", NULL};
		spec_check_keys(L, v, "price", pk);
		const ynode *p;
		double d;
		t->price_cached = -1;
		if ((p = ynode_get(v, "input")) && number(L, p, "price.input", 0, &d))
			t->price_in = d;
		if ((p = ynode_get(v, "output")) && number(L, p, "price.output", 0, &d))
			t->price_out = d;
		if ((p = ynode_get(v, "cached")) && number(L, p, "price.cached", 0, &d))
			t->price_cached = d;
		if (t->price_cached < 0)
			t->price_cached = t->price_in;
		json_object_set_new(cfg, "price",
				    json_pack("{s:f, s:f, s:f}", "input", t->price_in, "output",
					      t->price_out, "cached", t->price_cached));
	}
	if ((v = ynode_get(n, "retry")) && spec_want_type(L, v, YNODE_MAP, "retry")) {
		static const char *const rk[] = {"max_attempts", "base_ms", "max_delay_ms", "max_total_s",
						 NULL};
		spec_check_keys(L, v, "retry", rk);
		const ynode *p;
		if ((p = ynode_get(v, "max_attempts")) && spec_want_int(L, p, "max_attempts", 1, &x))
			t->retry.max_attempts = (int)(x > 20 ? 20 : x);
		if ((p = ynode_get(v, "base_ms")) && spec_want_int(L, p, "base_ms", 1, &x))
			t->retry.base_ms = x;
		if ((p = ynode_get(v, "max_delay_ms")) && spec_want_int(L, p, "max_delay_ms", 1, &x))
			t->retry.max_delay_ms = x;
		if ((p = ynode_get(v, "max_total_s")) && spec_want_int(L, p, "max_total_s", 1, &x))
			t->retry.max_total_ms = x * 1000;
	}
	if ((v = ynode_get(n, "breaker")))
		spec_load_breaker(L, &t->breaker, v);
	if ((v = ynode_get(n, "cache")) && v->type == YNODE_SCALAR)
		t->cache = strcmp(v->str, "true") == 0;
	if ((v = ynode_get(n, "stream")) && v->type == YNODE_SCALAR)
		json_object_set_new(cfg, "stream", json_boolean(strcmp(v->str, "false") != 0));
	if ((v = ynode_get(n, "file")) && v->type == YNODE_SCALAR) {
		if (strstr(v->str, "${")) {
			json_object_set_new(cfg, "file", json_string(v->str)); /* resolved at run time */
		} else {
			/* recorded responses travel in the bundle: a replay is the same anywhere */
			const char *text = spec_read_rel(L, v, v->str);
			rein_err e = {0};
			json_t *j = text ? rein_json_parse(text, strlen(text), &e) : NULL;
			if (text && j == NULL)
				DIAG(L, v, "replay file '%s' is not JSON: %s", v->str, e.msg);
			if (j)
				json_object_set_new(cfg, "responses", j);
		}
	}
	*fallback = ynode_get(n, "fallback");
}

void spec_load_models(loader *L, const ynode *n)
{
	rein_spec *s = L->spec;
	if (!spec_want_type(L, n, YNODE_MAP, "models"))
		return;
	size_t count = n->n / 2;
	if ((s->tiers = rein_calloc(count + 1, sizeof *s->tiers)) == NULL) {
		L->nomem = true;
		return;
	}
	const ynode **fb = rein_calloc(count + 1, sizeof *fb);
	if (fb == NULL) {
		L->nomem = true;
		return;
	}
	s->ntiers = count;
	for (size_t i = 0; i < count; i++)
		if ((s->tiers[i].name = rein_strdup(n->kids[2 * i]->str)) == NULL)
			L->nomem = true;
	for (size_t i = 0; i < count; i++)
		load_tier(L, &s->tiers[i], n->kids[2 * i + 1], &fb[i]);
	for (size_t i = 0; i < count; i++) {
		if (fb[i] == NULL)
			continue;
		for (size_t j = 0; j < count; j++)
			if (fb[i]->type == YNODE_SCALAR && strcmp(s->tiers[j].name, fb[i]->str) == 0)
				s->tiers[i].fallback = (int)j;
		if (s->tiers[i].fallback < 0)
			DIAG(L, fb[i], "fallback tier '%s' is not declared under models",
			     fb[i]->type == YNODE_SCALAR ? fb[i]->str : "?");
		else if (s->tiers[i].fallback == (int)i)
			DIAG(L, fb[i], "a tier cannot be its own fallback");
	}
	/* a fallback chain must end */
	for (size_t i = 0; i < count; i++) {
		int t = (int)i, hops = 0;
		while (t >= 0 && hops <= (int)count) {
			t = s->tiers[t].fallback;
			hops++;
		}
		if (hops > (int)count && fb[i]) {
			DIAG(L, fb[i], "the fallback chain from tier '%s' loops", s->tiers[i].name);
			s->tiers[i].fallback = -1;
		}
	}
	rein_free(fb);
}

void spec_load_trace(loader *L, const ynode *n)
{
	static const char *const keys[] = {"store_prompts", "redact", NULL};
	if (!spec_want_type(L, n, YNODE_MAP, "trace"))
		return;
	spec_check_keys(L, n, "trace", keys);
	const ynode *v = ynode_get(n, "store_prompts");
	if (v && (v->type != YNODE_SCALAR ||
		  (strcmp(v->str, "true") != 0 && strcmp(v->str, "false") != 0)))
		DIAG(L, v, "trace.store_prompts must be true or false (true: prompts and answers "
			   "are kept in the log and exported in traces, after trace.redact)");
	else if (v)
		L->spec->store_prompts = strcmp(v->str, "true") == 0;
	/* trace.redact: the classes of values stored as placeholders */
	if ((v = ynode_get(n, "redact")) == NULL || !spec_want_type(L, v, YNODE_SEQ, "trace.redact"))
		return;
	for (size_t i = 0; i < v->n; i++) {
		const ynode *c = v->kids[i];
		unsigned bit = c->type == YNODE_SCALAR ? rein_redact_class(c->str) : 0;
		if (bit == 0)
			DIAG(L, c, "unknown redaction class (use email, phone, card, iban, token "
				   "or secret)");
		L->spec->redact |= bit;
	}
}

/* A prompt: inline text, or {file: path} read from the workflow directory. */
static json_t *load_text(loader *L, const ynode *n, const char *what)
{
	const char *text = NULL;
	if (n->type == YNODE_SCALAR) {
		text = n->str;
	} else if (n->type == YNODE_MAP && n->n == 2 && ynode_get(n, "file") &&
		   ynode_get(n, "file")->type == YNODE_SCALAR) {
		const ynode *f = ynode_get(n, "file");
		text = spec_read_rel(L, f, f->str);
	} else {
		DIAG(L, n, "%s must be text or {file: path}", what);
	}
	if (text == NULL)
		return NULL;
	rein_err e = {0};
	if (rein_script_has_template(text) && rein_script_template_check(L->sb, text, &e) != REIN_OK)
		DIAG(L, n, "%s template does not compile: %s", what, e.msg);
	json_t *j = json_string(text);
	if (j == NULL)
		DIAG(L, n, "%s is not valid UTF-8", what);
	return j;
}

void spec_load_llm_step(loader *L, rein_step *st, const ynode *n)
{
	static const char *const keys[] = {"model", "system", "prompt", "output", "max_tokens",
					   "temperature", NULL};
	rein_step_model *m = st->kind == REIN_STEP_AGENT    ? &st->u.agent.model
			     : st->kind == REIN_STEP_VERIFY ? &st->u.verify.model
							    : &st->u.llm;
	m->tier = -1;
	m->temperature = -1;
	if (!spec_want_type(L, n, YNODE_MAP, "llm"))
		return;
	spec_check_keys(L, n, "llm", keys);
	const ynode *v = ynode_get(n, "model");
	if (v == NULL || v->type != YNODE_SCALAR) {
		DIAG(L, v ? v : n, "llm needs 'model' (a tier under models)");
	} else {
		for (size_t i = 0; i < L->spec->ntiers; i++)
			if (strcmp(L->spec->tiers[i].name, v->str) == 0)
				m->tier = (int)i;
		if (m->tier < 0)
			DIAG(L, v, "model tier '%s' is not declared under models", v->str);
	}
	if ((v = ynode_get(n, "prompt")) == NULL)
		DIAG(L, n, "llm needs 'prompt'");
	else
		m->prompt = load_text(L, v, "prompt");
	if ((v = ynode_get(n, "system")))
		m->system = load_text(L, v, "system");
	if ((v = ynode_get(n, "output")))
		m->schema = spec_load_schema(L, v, "llm output", &m->schema_doc);
	int64_t x;
	m->max_tokens = m->tier >= 0 ? L->spec->tiers[m->tier].max_tokens : 1024;
	if ((v = ynode_get(n, "max_tokens")) && spec_want_int(L, v, "max_tokens", 1, &x))
		m->max_tokens = x;
	double d;
	if ((v = ynode_get(n, "temperature")) && number(L, v, "temperature", 0, &d))
		m->temperature = d;
}

void spec_load_agent_step(loader *L, rein_step *st, const ynode *n)
{
	static const char *const keys[] = {"model",      "system",      "prompt", "output",
					   "max_tokens", "temperature", "tools",  "max_turns", NULL};
	st->u.agent.max_turns = 8;
	if (!spec_want_type(L, n, YNODE_MAP, "agent"))
		return;
	spec_check_keys(L, n, "agent", keys);
	/* the llm part: the same keys mean the same */
	static const char *const llm_keys[] = {"model", "system", "prompt", "output", "max_tokens",
					       "temperature", NULL};
	ynode sub = *n;
	ynode **kids = rein_calloc(n->n + 1, sizeof *kids);
	if (kids == NULL) {
		L->nomem = true;
		return;
	}
	sub.kids = kids;
	sub.n = 0;
	for (size_t i = 0; i + 1 < n->n; i += 2)
		for (const char *const *k = llm_keys; *k; k++)
			if (strcmp(n->kids[i]->str, *k) == 0) {
				kids[sub.n++] = n->kids[i];
				kids[sub.n++] = n->kids[i + 1];
			}
	spec_load_llm_step(L, st, &sub);
	rein_free(kids);
	const ynode *v;
	int64_t x;
	if ((v = ynode_get(n, "max_turns")) && spec_want_int(L, v, "max_turns", 1, &x))
		st->u.agent.max_turns = (int)(x > 100 ? 100 : x);
	if ((st->u.agent.tool_defs = json_array()) == NULL) {
		L->nomem = true;
		return;
	}
	if ((v = ynode_get(n, "tools")) == NULL)
		return; /* an agent with no tools just answers */
	if (v->type != YNODE_SEQ) {
		DIAG(L, v, "agent tools must be a list of tool names");
		return;
	}
	if ((st->u.agent.allow = rein_calloc(v->n + 1, sizeof *st->u.agent.allow)) == NULL) {
		L->nomem = true;
		return;
	}
	for (size_t i = 0; i < v->n; i++) {
		const ynode *k = v->kids[i];
		int ti = k->type == YNODE_SCALAR ? rein_spec_tool(L->spec, k->str) : -1;
		if (ti < 0) {
			DIAG(L, k, "tool '%s' is not declared under tools",
			     k->type == YNODE_SCALAR ? k->str : "?");
			continue;
		}
		st->u.agent.allow[st->u.agent.nallow++] = ti;
		const rein_tool *t = &L->spec->tools[ti];
		json_t *params = t->input_doc ? json_incref(t->input_doc) : json_pack("{s:s}", "type", "object");
		json_array_append_new(st->u.agent.tool_defs, json_pack("{s:s, s:s*, s:o}", "name", t->name,
							       "description", t->description,
							       "parameters", params));
	}
}

/* The answer a verify step's model check must give. */
static const char verify_schema[] =
	"{\"type\": \"object\", \"required\": [\"confidence\", \"rationale\"], "
	"\"properties\": {\"confidence\": {\"type\": \"number\", \"minimum\": 0, \"maximum\": 1}, "
	"\"rationale\": {\"type\": \"string\"}}}";

void spec_load_verify_model(loader *L, rein_step *st, const ynode *n)
{
	assert(st->kind == REIN_STEP_VERIFY && n->type == YNODE_MAP);
	static const char *const llm_keys[] = {"model", "system", "prompt", "max_tokens",
					       "temperature", NULL};
	rein_step_verify *v = &st->u.verify;
	v->min_confidence = 0.5;
	const ynode *mc = ynode_get(n, "min_confidence");
	if (ynode_get(n, "model") == NULL) {
		for (const char *const *k = llm_keys + 1; *k; k++)
			if (ynode_get(n, *k))
				DIAG(L, ynode_get(n, *k), "verify: '%s' goes with 'model' (the model check)", *k);
		if (mc)
			DIAG(L, mc, "verify: 'min_confidence' goes with 'model' (the model check)");
		return;
	}
	v->has_model = true;
	ynode sub = *n;
	ynode **kids = rein_calloc(n->n + 1, sizeof *kids);
	if (kids == NULL) {
		L->nomem = true;
		return;
	}
	sub.kids = kids;
	sub.n = 0;
	for (size_t i = 0; i + 1 < n->n; i += 2)
		for (const char *const *k = llm_keys; *k; k++)
			if (n->kids[i]->type == YNODE_SCALAR && strcmp(n->kids[i]->str, *k) == 0) {
				kids[sub.n++] = n->kids[i];
				kids[sub.n++] = n->kids[i + 1];
			}
	spec_load_llm_step(L, st, &sub);
	rein_free(kids);
	rein_step_model *m = &v->model;
	if (m->system == NULL &&
	    (m->system = json_string("You check the work of an automated step. Answer with your "
				     "confidence, from 0 to 1, that the work is correct, and a "
				     "short rationale.")) == NULL)
		L->nomem = true;
	rein_err e = {0};
	m->schema_doc = rein_json_parse(verify_schema, strlen(verify_schema), &e);
	if (m->schema_doc == NULL ||
	    rein_schema_compile(m->schema_doc, &(rein_schema_opts){0}, &m->schema, &e) != REIN_OK)
		L->nomem = true; /* a constant schema: only memory can fail it */
	rein_err_clear(&e);
	double d;
	if (mc && number(L, mc, "min_confidence", 0, &d)) {
		if (d > 1)
			DIAG(L, mc, "min_confidence must be a number between 0 and 1");
		else
			v->min_confidence = d;
	}
}

void spec_models_free(rein_spec *s)
{
	for (size_t i = 0; i < s->nsteps; i++) {
		rein_step *st = &s->steps[i];
		if (st->kind == REIN_STEP_AGENT) {
			rein_free(st->u.agent.allow);
			json_decref(st->u.agent.tool_defs);
		}
		rein_step_model *m = NULL;
		if (st->kind == REIN_STEP_LLM)
			m = &st->u.llm;
		else if (st->kind == REIN_STEP_AGENT)
			m = &st->u.agent.model;
		else if (st->kind == REIN_STEP_VERIFY)
			m = &st->u.verify.model;
		if (m) {
			json_decref(m->system);
			json_decref(m->prompt);
			json_decref(m->schema_doc);
			rein_schema_free(m->schema);
		}
	}
	for (size_t i = 0; i < s->ntiers; i++) {
		rein_free(s->tiers[i].name);
		json_decref(s->tiers[i].config);
	}
	rein_free(s->tiers);
}

const rein_step_model *rein_step_model_of(const rein_step *st)
{
	assert(st != NULL);
	if (st->kind == REIN_STEP_LLM)
		return &st->u.llm;
	if (st->kind == REIN_STEP_AGENT)
		return &st->u.agent.model;
	if (st->kind == REIN_STEP_VERIFY && st->u.verify.has_model)
		return &st->u.verify.model;
	return NULL;
}
