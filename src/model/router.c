/*
 * The router: model policy between a run and the providers. It resolves a
 * spec's tier to a provider (built once per workflow version and tier, with
 * the environment's defaults for real endpoints and the default model of a
 * tier that names none), answers repeated requests of a tier with cache: true
 * from its response cache, records every exchange for REIN_RECORD, and keeps
 * one circuit breaker per provider (the tier's `breaker:` policy). What comes
 * back is the events to record, ready-made; which run and step they go to is
 * the caller's business. See model.h.
 */
#include "model.h"
#include "engine.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* One provider per (workflow version, tier), with its breaker. */
typedef struct slot {
	char key[160];
	rein_model_provider *p;
	rein_breaker_policy policy;
	int64_t *fails; /* times of the transient failures in a row (within the window) */
	size_t nfails, cap;
	bool open, probing;
	int64_t opened_at;
} slot;

struct rein_model_router {
	rein_model_router_opts o;
	slot *slots;
	size_t nslots;
	json_t *cache;     /* request hash → response, for tiers with cache: true */
	json_t *recording; /* REIN_RECORD: every exchange, written as a replay file */
	size_t inflight;
};

/* One call out: owned by the io callback. */
typedef struct call {
	rein_model_router *r;
	size_t slot;
	char *tier;        /* the tier's name */
	json_t *request;   /* the request as the caller gave it */
	int attempt;
	bool unnamed;      /* the tier named no model */
	bool cache;        /* the tier caches its answers */
	const char *provider; /* the provider's type (static) */
	rein_model_routed_cb cb;
	void *ud;
} call;

int rein_model_router_new(const rein_model_router_opts *opts, rein_model_router **out,
			  rein_err *err)
{
	rein_model_router *r = rein_calloc(1, sizeof *r);
	if (r == NULL)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	if (opts)
		r->o = *opts;
	if (r->o.clock == NULL)
		r->o.clock = &rein_clock_system;
	if (getenv("REIN_RECORD") && (r->recording = json_object()) == NULL) {
		rein_free(r);
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	}
	*out = r;
	return REIN_OK;
}

void rein_model_router_free(rein_model_router *r)
{
	if (r == NULL)
		return;
	assert(r->inflight == 0);
	if (r->recording && getenv("REIN_RECORD")) {
		/* merge with what the file already holds: several runs, one replay file */
		const char *path = getenv("REIN_RECORD");
		json_t *old = json_load_file(path, 0, NULL);
		if (json_is_object(old)) {
			json_t *seq = json_object_get(old, "$sequence");
			json_array_extend(seq, json_object_get(r->recording, "$sequence"));
			json_object_update_missing(r->recording, old);
			json_object_set(r->recording, "$sequence", seq);
		}
		json_decref(old);
		json_dump_file(r->recording, path, JSON_INDENT(2) | JSON_SORT_KEYS);
	}
	for (size_t i = 0; i < r->nslots; i++) {
		rein_model_provider_free(r->slots[i].p);
		rein_free(r->slots[i].fails);
	}
	rein_free(r->slots);
	json_decref(r->cache);
	json_decref(r->recording);
	rein_free(r);
}

size_t rein_model_router_inflight(const rein_model_router *r) { return r ? r->inflight : 0; }

void rein_model_routed_clear(rein_model_routed *rt)
{
	for (size_t i = 0; i < rt->n; i++)
		json_decref(rt->ev[i].data);
	memset(rt, 0, sizeof *rt);
}

/* Adds one event to rt; a NULL data is out of memory (the caller says so). */
static void routed_add(rein_model_routed *rt, rein_event_type type, json_t *data)
{
	assert(rt->n < 2);
	rt->ev[rt->n].type = rein_event_name(type);
	rt->ev[rt->n++].data = data;
}

/* A model.attempt that never reached a provider. */
static void routed_refused(rein_model_routed *rt, int attempt, const char *outcome,
			   const char *error)
{
	routed_add(rt, REIN_EV_MODEL_ATTEMPT,
		   json_pack("{s:i, s:s, s:s, s:b}", "attempt", attempt, "outcome", outcome, "error",
			     error, "transient", 0));
}

static json_t *expand_json(const json_t *j)
{
	if (json_is_string(j)) {
		char *s = rein_expand_env(json_string_value(j));
		json_t *r = s ? json_string(s) : NULL;
		rein_free(s);
		return r;
	}
	if (json_is_object(j)) {
		json_t *o = json_object();
		const char *k;
		json_t *v;
		json_object_foreach((json_t *)j, k, v)
			json_object_set_new(o, k, strcmp(k, "responses") == 0 ? json_incref(v) : expand_json(v));
		return o;
	}
	return json_incref((json_t *)j);
}

/* A model.call event of an earlier run, as the normalized response it recorded. */
static void collect_answer(void *ud, const char *type, const char *payload)
{
	json_t *seq = ud;
	if (rein_event_type_find(type) != REIN_EV_MODEL_CALL || payload == NULL)
		return;
	json_t *d = rein_json_parse(payload, strlen(payload), NULL);
	json_t *resp = d ? json_deep_copy(json_object_get(d, "response")) : NULL;
	if (resp) {
		json_object_set(resp, "model", json_object_get(d, "model"));
		json_object_set(resp, "usage", json_object_get(d, "usage"));
		json_array_append_new(seq, resp);
	}
	json_decref(d);
}

/* The provider configuration of a tier: environment resolved, defaults filled. */
static json_t *provider_config(rein_model_router *r, const json_t *tier_config, rein_err *err)
{
	json_t *cfg = expand_json(tier_config);
	if (cfg == NULL) {
		rein_err_set(err, REIN_ENOMEM, "out of memory");
		return NULL;
	}
	const char *type = json_string_value(json_object_get(cfg, "type"));
	/* two environment variables point a workflow at a real endpoint: the
	 * provider and its key; the rest has defaults */
	if (type && strcmp(type, "openai") == 0) {
		if (!json_object_get(cfg, "base_url") || !*json_string_value(json_object_get(cfg, "base_url")))
			json_object_set_new(cfg, "base_url", json_string(getenv("OPENAI_BASE_URL") ? getenv("OPENAI_BASE_URL") : "https://api.openai.com/v1"));
		if (!json_object_get(cfg, "api_key_env"))
			json_object_set_new(cfg, "api_key_env", json_string("OPENAI_API_KEY"));
	} else if (type && strcmp(type, "anthropic") == 0) {
		if (!json_object_get(cfg, "base_url") || !*json_string_value(json_object_get(cfg, "base_url")))
			json_object_set_new(cfg, "base_url", json_string(getenv("ANTHROPIC_BASE_URL") ? getenv("ANTHROPIC_BASE_URL") : "https://api.anthropic.com"));
	} else if (type && strcmp(type, "replay") == 0) {
		json_object_del(cfg, "base_url");
		const char *file = json_string_value(json_object_get(cfg, "file"));
		if (file && *file && !json_object_get(cfg, "responses")) {
			char *text = NULL;
			size_t len = 0;
			json_t *j = NULL;
			if (rein_file_read(file, &text, &len, err) == REIN_OK)
				j = rein_json_parse(text, len, err);
			rein_free(text);
			if (j == NULL) {
				json_decref(cfg);
				return NULL;
			}
			json_object_set_new(cfg, "responses", j);
		}
		json_object_del(cfg, "file");
		/* or the answers an earlier run got, in the order it got them */
		const char *from = json_string_value(json_object_get(cfg, "from_run"));
		if (from && *from) {
			json_t *seq = json_array();
			if (seq == NULL || r->o.history == NULL ||
			    r->o.history(r->o.ud, from, collect_answer, seq, err) != REIN_OK) {
				if (seq && r->o.history == NULL)
					rein_err_set(err, REIN_EINVAL, "from_run: no run history here");
				json_decref(seq);
				json_decref(cfg);
				return NULL;
			}
			json_object_set_new(cfg, "responses", seq);
			json_object_set_new(cfg, "on_miss", json_string("sequence"));
		}
	}
	json_object_del(cfg, "from_run");
	if (!type || strcmp(type, "replay") != 0) {
		json_object_del(cfg, "file");
		json_object_del(cfg, "responses");
		json_object_del(cfg, "on_miss");
	}
	json_object_del(cfg, "model");
	json_object_del(cfg, "stream");
	if (json_object_get(cfg, "base_url") && !*json_string_value(json_object_get(cfg, "base_url")))
		json_object_del(cfg, "base_url");
	return cfg;
}

/* The slot of (spec's version, tier), its provider built on first use; a
 * configuration the provider refuses builds none (and is tried again next time). */
static int slot_for(rein_model_router *r, const rein_spec *spec, int tier, size_t *out,
		    rein_err *err)
{
	char key[160];
	snprintf(key, sizeof key, "%.64s/%.80s", spec->version, spec->tiers[tier].name);
	for (size_t i = 0; i < r->nslots; i++)
		if (strcmp(r->slots[i].key, key) == 0) {
			*out = i;
			return REIN_OK;
		}
	rein_model_provider *p = NULL;
	json_t *cfg = provider_config(r, spec->tiers[tier].config, err);
	if (cfg == NULL)
		return err && err->code ? err->code : REIN_ENOMEM;
	int rc = rein_model_provider_new(cfg, &p, err);
	json_decref(cfg);
	if (rc != REIN_OK)
		return rc;
	slot *v = rein_realloc(r->slots, (r->nslots + 1) * sizeof *v);
	if (v == NULL) {
		rein_model_provider_free(p);
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	}
	r->slots = v;
	memset(&v[r->nslots], 0, sizeof v[r->nslots]);
	snprintf(v[r->nslots].key, sizeof v[r->nslots].key, "%s", key);
	v[r->nslots].p = p;
	v[r->nslots].policy = spec->tiers[tier].breaker;
	*out = r->nslots++;
	return REIN_OK;
}

/* The record of one answered model call. */
static json_t *model_call_event(const char *tier, const char *provider, const json_t *request,
				const json_t *resp, bool cached, const rein_model_provider *p)
{
	char hash[REIN_MODEL_HASH_HEX] = "";
	rein_err e = {0};
	rein_model_request_hash(request, hash, &e);
	json_t *r = json_pack("{s:O?, s:O?, s:O?, s:O?, s:O?, s:O?}", "id", json_object_get(resp, "id"),
			      "text", json_object_get(resp, "text"),
			      "output", json_object_get(resp, "output"), "output_error",
			      json_object_get(resp, "output_error"), "tool_calls",
			      json_object_get(resp, "tool_calls"), "finish_reason",
			      json_object_get(resp, "finish_reason"));
	json_t *d = json_pack("{s:s, s:s?, s:O?, s:s, s:O?, s:O?, s:O?, s:O?, s:o, s:b}", "tier",
			      tier, "provider", provider, "model", json_object_get(resp, "model"),
			      "request_hash", hash, "latency_ms", json_object_get(resp, "latency_ms"),
			      "ttft_ms", json_object_get(resp, "ttft_ms"), "usage",
			      json_object_get(resp, "usage"), "cost_usd", json_object_get(resp, "cost_usd"),
			      "response", r, "cached", cached);
	char *addr = NULL;
	int port = 0;
	if (d && p && rein_model_provider_server(p, &addr, &port) == REIN_OK &&
	    json_object_set_new(d, "server", json_pack("{s:s, s:i}", "address", addr, "port", port)) !=
		    0) {
		json_decref(d);
		d = NULL;
	}
	rein_free(addr);
	return d;
}

/*
 * Counts one outcome in the slot's breaker: `failures` transient failures in
 * a row (within `window_ms` when it is set) open it; a success closes it; a
 * transient failure while it is open (the probe's) opens it again. Returns
 * the transition ("opened", "closed") or NULL.
 */
static const char *breaker_record(rein_model_router *r, slot *s, const rein_model_outcome *o)
{
	int64_t t = rein_clock_now(r->o.clock);
	s->probing = false;
	if (o->ok) {
		s->nfails = 0;
		if (!s->open)
			return NULL;
		s->open = false;
		return "closed";
	}
	if (!o->transient)
		return NULL; /* the request's fault, not the provider's health */
	if (!s->open) {
		size_t keep = 0;
		for (size_t i = 0; i < s->nfails; i++)
			if (s->policy.window_ms <= 0 || t - s->fails[i] < s->policy.window_ms)
				s->fails[keep++] = s->fails[i];
		s->nfails = keep;
		if (s->nfails == s->cap) {
			size_t cap = s->cap ? s->cap * 2 : 8;
			int64_t *v = rein_realloc(s->fails, cap * sizeof *v);
			if (v == NULL)
				return NULL; /* not counted */
			s->fails = v;
			s->cap = cap;
		}
		s->fails[s->nfails++] = t;
		if ((int)s->nfails < s->policy.failures)
			return NULL;
	}
	s->open = true;
	s->opened_at = t;
	return "opened";
}

static void call_done(void *ud, rein_model_outcome *o)
{
	call *c = ud;
	rein_model_router *r = c->r;
	assert(r->inflight > 0);
	r->inflight--;
	rein_model_routed rt = {0};
	const char *transition = breaker_record(r, &r->slots[c->slot], o);
	if (transition)
		routed_add(&rt, REIN_EV_MODEL_BREAKER,
			   json_pack("{s:s, s:s?}", "state", transition, "provider", c->provider));
	if (o->ok) {
		routed_add(&rt, REIN_EV_MODEL_CALL,
			   model_call_event(c->tier, c->provider, c->request, o->response, false,
					    r->slots[c->slot].p));
	} else {
		char ev[1024] = "";
		if (o->evidence)
			snprintf(ev, sizeof ev, "%.*s", (int)(o->evidence_len < 1000 ? o->evidence_len : 1000),
				 o->evidence);
		json_t *d = json_pack("{s:i, s:s, s:s, s:b, s:I}", "attempt", c->attempt, "outcome",
				      o->outcome ? o->outcome : "other", "error", o->error, "transient",
				      o->transient, "latency_ms", (json_int_t)o->latency_ms);
		if (d && o->status)
			json_object_set_new(d, "status", json_integer(o->status));
		if (d && o->retry_after_ms >= 0)
			json_object_set_new(d, "retry_after_ms", json_integer(o->retry_after_ms));
		if (d && o->evidence)
			json_object_set_new(d, "evidence", json_string(ev));
		routed_add(&rt, REIN_EV_MODEL_ATTEMPT, d);
	}
	bool kept = c->cb(c->ud, &rt);
	if (kept && o->ok) {
		if (c->cache && r->cache)
			json_object_set(r->cache, o->request_hash, o->response);
		if (r->recording) {
			/* a tier that named no model is recorded without one, so the
			 * replay of the same workflow finds it by its hash */
			json_t *rq = json_deep_copy(c->request);
			if (rq && !c->unnamed) {
				char *m = rein_expand_env(json_string_value(json_object_get(rq, "model")) ?: "");
				json_object_set_new(rq, "model", json_string(m ? m : ""));
				rein_free(m);
			}
			if (rq && c->unnamed)
				json_object_set_new(rq, "model", json_string("default"));
			rein_err e = {0};
			if (rq)
				rein_model_record(r->recording, rq, o->response, &e);
			json_decref(rq);
		}
	}
	rein_model_routed_clear(&rt);
	json_decref(c->request);
	rein_free(c->tier);
	rein_free(c);
}

int rein_model_router_call(rein_model_router *r, rein_io *io, const rein_spec *spec, int tier,
			   const json_t *request, int attempt, rein_model_routed_cb cb, void *ud,
			   rein_model_routed *now, rein_err *err)
{
	assert(r && io && spec && request && cb && now);
	assert(tier >= 0 && (size_t)tier < spec->ntiers);
	memset(now, 0, sizeof *now);
	const rein_model_tier *t = &spec->tiers[tier];
	int rc = REIN_OK;
	call *c = NULL;
	json_t *req = json_deep_copy(request);
	if (req == NULL) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	char *model = rein_expand_env(json_string_value(json_object_get(req, "model")) ?: "");
	json_object_set_new(req, "model", json_string(model ? model : ""));
	rein_free(model);
	bool unnamed = !*json_string_value(json_object_get(req, "model"));
	/* real providers stream (so the time to the first token is known) unless
	 * the tier says stream: false */
	json_t *sflag = json_object_get(t->config, "stream");
	json_object_set_new(req, "stream", json_boolean(sflag == NULL || json_is_true(sflag)));
	if (t->cache) {
		char hash[REIN_MODEL_HASH_HEX];
		rein_err e = {0};
		if (r->cache == NULL)
			r->cache = json_object();
		const json_t *hit = rein_model_request_hash(request, hash, &e) == REIN_OK
					    ? json_object_get(r->cache, hash)
					    : NULL;
		if (hit) {
			routed_add(now, REIN_EV_MODEL_CALL, model_call_event(t->name, "cache", request, hit, true, NULL));
			goto out;
		}
	}
	size_t si = 0;
	if (slot_for(r, spec, tier, &si, err) != REIN_OK) {
		/* a configuration the provider refuses: a permanent failure of this tier */
		routed_refused(now, attempt, "config", err->msg);
		rein_err_clear(err);
		goto out;
	}
	slot *s = &r->slots[si];
	const char *type = rein_model_provider_type(s->p);
	if (unnamed) /* a tier that names no model takes its provider's usual one */
		json_object_set_new(req, "model",
				    json_string(strcmp(type, "anthropic") == 0 ? "claude-sonnet-4-20250514"
						: strcmp(type, "openai") == 0      ? "gpt-4o-mini-2024-07-18"
										   : "default"));
	if (s->open) {
		if (rein_clock_now(r->o.clock) - s->opened_at >= s->policy.cooldown_ms && !s->probing) {
			s->probing = true; /* half-open: this call is the probe */
		} else {
			routed_refused(now, attempt, "breaker_open", "the provider's circuit breaker is open");
			goto out;
		}
	}
	if ((c = rein_calloc(1, sizeof *c)) == NULL || (c->tier = rein_strdup(t->name)) == NULL ||
	    (c->request = json_deep_copy(request)) == NULL) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	c->r = r;
	c->slot = si;
	c->attempt = attempt;
	c->unnamed = unnamed;
	c->cache = t->cache;
	c->provider = type;
	c->cb = cb;
	c->ud = ud;
	r->inflight++;
	if (rein_model_call(io, s->p, req, call_done, c, err) != REIN_OK) {
		r->inflight--;
		/* a request the provider refuses is the workflow's error */
		routed_refused(now, attempt, "invalid_request", err->msg);
		rein_err_clear(err);
		goto out;
	}
	c = NULL; /* the callback owns it */
out:
	if (c) {
		json_decref(c->request);
		rein_free(c->tier);
		rein_free(c);
	}
	json_decref(req);
	return rc;
}
