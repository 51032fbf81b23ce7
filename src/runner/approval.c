/*
 * Approvals outside the engine (docs/approvals.md): the signing keys from
 * configuration, the pending approvals read from the store, minting a token
 * and putting it (or a denial) in the run's inbox, the verdict on a token a
 * worker records when it drains the entry, and the alert webhook.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runner.h"

int rein_approval_keys(rein_token_keys **out, rein_err *err)
{
	assert(out != NULL);
	*out = NULL;
	const char *env = getenv("REIN_APPROVAL_KEYS");
	const char *file = getenv("REIN_APPROVAL_KEYS_FILE");
	char *text = NULL;
	size_t len = 0;
	int rc = REIN_OK;
	if (env && *env) {
		rc = rein_token_keys_parse(env, out, err);
	} else if (file && *file) {
		if ((rc = rein_file_read(file, &text, &len, err)) == REIN_OK)
			rc = rein_token_keys_parse(text, out, err);
		rein_free(text);
	}
	return rc;
}

json_t *rein_approval_verdict(const json_t *data, int64_t now_ms)
{
	const char *tok = json_string_value(json_object_get(data, "token"));
	rein_token_keys *k = NULL;
	rein_err e = {0};
	json_t *claims = NULL;
	json_t *v = json_is_object(data) ? json_deep_copy(data) : json_object();
	if (v == NULL)
		return NULL;
	int rc = tok ? rein_approval_keys(&k, &e) : rein_err_set(&e, REIN_EINVAL, "no token");
	if (rc == REIN_OK && k == NULL)
		rc = rein_err_set(&e, REIN_EINVAL, "no approval key is configured in the worker "
				  "(REIN_APPROVAL_KEYS or REIN_APPROVAL_KEYS_FILE)");
	if (rc == REIN_OK)
		rc = rein_token_verify(k, tok, now_ms, &claims, &e);
	if (json_object_set_new(v, "token_ok", json_boolean(rc == REIN_OK)) != 0 ||
	    (rc == REIN_OK && json_object_set_new(v, "claims", claims) != 0) ||
	    (rc != REIN_OK && json_object_set_new(v, "token_error", json_string(e.msg)) != 0)) {
		json_decref(v);
		v = NULL;
	}
	rein_token_keys_free(k);
	return v;
}

/* ---- the pending approvals, from the store ---------------------------------- */

typedef struct scan {
	json_t *items;  /* id -> item */
	json_t *tenant; /* run.started requester.tenant */
	int64_t now;
	bool ended;
} scan;

/* Is item x the approval of the call keyed key? */
static bool same(const json_t *x, const char *key)
{
	const char *k = json_string_value(json_object_get(x, "key"));
	return k && strcmp(k, key) == 0;
}

static int scan_event(void *ud, const rein_event_row *ev)
{
	scan *s = ud;
	if (strcmp(ev->type, "run.ended") == 0) {
		s->ended = true;
		return 0;
	}
	bool started = strcmp(ev->type, "run.started") == 0;
	if (!(started || strncmp(ev->type, "approval.", 9) == 0 || strcmp(ev->type, "tool.intent") == 0) ||
	    ev->payload == NULL)
		return 0;
	rein_err e = {0};
	json_t *d = rein_json_parse(ev->payload, strlen(ev->payload), &e);
	if (d == NULL)
		return e.code == REIN_ENOMEM ? REIN_ENOMEM : 0;
	const char *id = json_string_value(json_object_get(d, "id"));
	json_t *it = id ? json_object_get(s->items, id) : NULL;
	int rc = 0;
	if (started) {
		json_decref(s->tenant);
		s->tenant = json_incref(json_object_get(json_object_get(d, "requester"), "tenant"));
	} else if (strcmp(ev->type, "approval.requested") == 0 && id) {
		json_t *item = json_pack("{s:s, s:s, s:s?, s:O?, s:O?, s:O?, s:O?, s:O?, s:O?, s:O?, "
					 "s:O?, s:O?, s:O?, s:O?, s:O?, s:i, s:[], s:I, s:O?}",
					 "id", id, "run", ev->run_id, "step", ev->step, "tool",
					 json_object_get(d, "tool"), "key", json_object_get(d, "key"),
					 "args", json_object_get(d, "args"), "action_hash",
					 json_object_get(d, "action_hash"), "policy_version",
					 json_object_get(d, "policy_version"), "risk",
					 json_object_get(d, "risk"), "rules", json_object_get(d, "rules"),
					 "need", json_object_get(d, "need"), "requester",
					 json_object_get(d, "requester"), "evidence",
					 json_object_get(d, "evidence"), "provenance",
					 json_object_get(d, "provenance"), "sla_due_at",
					 json_object_get(d, "sla_due_at"), "have", 0, "approvers",
					 "requested_at", (json_int_t)ev->at, "tenant", s->tenant);
		if (item && json_is_null(json_object_get(item, "sla_due_at")))
			json_object_del(item, "sla_due_at");
		if (item && json_is_null(json_object_get(item, "provenance")))
			json_object_del(item, "provenance");
		rc = item && json_object_set_new(s->items, id, item) == 0 ? 0 : REIN_ENOMEM;
	} else if (strcmp(ev->type, "approval.granted") == 0 && it) {
		json_t *by = json_object_get(d, "by");
		json_object_set_new(it, "have",
				    json_integer(json_integer_value(json_object_get(it, "have")) + 1));
		if (by)
			json_array_append(json_object_get(it, "approvers"), by);
	} else if ((strcmp(ev->type, "approval.denied") == 0 && it)) {
		json_object_del(s->items, id);
	} else if (strcmp(ev->type, "approval.expired") == 0 && it) {
		const char *ot = json_string_value(json_object_get(d, "on_timeout"));
		if (ot && strcmp(ot, "halt") == 0)
			json_object_del(it, "sla_due_at");
		else
			json_object_del(s->items, id);
	} else if (strcmp(ev->type, "tool.intent") == 0) {
		const char *key = json_string_value(json_object_get(d, "key"));
		const char *k;
		json_t *x;
		void *tmp;
		json_object_foreach_safe(s->items, tmp, k, x) if (key && same(x, key))
			json_object_del(s->items, k);
	}
	json_decref(d);
	return rc;
}

int rein_approvals_pending(rein_store *st, const char *run, int64_t now, json_t **out,
			   rein_err *err)
{
	assert(st != NULL && out != NULL);
	json_t *all = json_array();
	rein_run_row *rows = NULL;
	size_t n = 0;
	int rc = all ? REIN_OK : rein_err_set(err, REIN_ENOMEM, "out of memory");
	rein_run_query q = {.status = REIN_RUN_WAITING, .limit = 500};
	char last[64];
	*out = NULL;
	for (;;) {
		if (rc != REIN_OK || (rc = rein_store_run_list(st, &q, &rows, &n, err)) != REIN_OK)
			break;
		for (size_t i = 0; i < n && rc == REIN_OK; i++) {
			if (run && strcmp(run, rows[i].id) != 0)
				continue;
			scan s = {.items = json_object(), .now = now};
			if (s.items == NULL) {
				rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
				break;
			}
			rc = rein_store_events_load(st, rows[i].id, scan_event, &s, err);
			const char *k;
			json_t *x;
			json_object_foreach(s.items, k, x) {
				const json_t *due = json_object_get(x, "sla_due_at");
				if (rc == REIN_OK && !s.ended && json_is_integer(due))
					json_object_set_new(x, "sla_left_s",
							    json_integer((json_integer_value(due) - now) / 1000));
				if (rc == REIN_OK && !s.ended && json_array_append(all, x) != 0)
					rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
			}
			json_decref(s.items);
			json_decref(s.tenant);
		}
		bool more = n == q.limit;
		if (more) {
			snprintf(last, sizeof last, "%s", rows[n - 1].id);
			q.after_id = last;
			q.after_created = rows[n - 1].created_at;
		}
		rein_run_rows_free(rows, n);
		rows = NULL;
		if (!more)
			break;
	}
	if (rc == REIN_OK)
		*out = all;
	else
		json_decref(all);
	return rc;
}

/* The pending item id (a new reference), or REIN_ENOTFOUND. */
static int find_item(rein_store *st, const char *id, int64_t now, json_t **item, rein_err *err)
{
	json_t *all = NULL;
	int rc = rein_approvals_pending(st, NULL, now, &all, err);
	size_t i;
	json_t *x;
	*item = NULL;
	json_array_foreach(all, i, x) if (*item == NULL &&
					  strcmp(json_string_value(json_object_get(x, "id")), id) == 0)
		*item = json_incref(x);
	json_decref(all);
	if (rc == REIN_OK && *item == NULL)
		rc = rein_err_set(err, REIN_ENOTFOUND, "no approval %s is pending (see rein approvals)", id);
	return rc;
}

static int put(rein_store *st, const char *run, const char *type, const json_t *data,
	       const char *sender, char inbox_id[64], rein_err *err)
{
	char *text = rein_json_dump(data);
	int rc = text ? rein_random_id(strcmp(type, "denial") == 0 ? "dny_" : "apv_", inbox_id, 64)
		      : REIN_ENOMEM;
	if (rc != REIN_OK) {
		rein_free(text);
		return rein_err_set(err, rc, rc == REIN_ENOMEM ? "out of memory" : "cannot make an id");
	}
	rein_inbox_row msg = {.run_id = run, .id = inbox_id, .type = type, .data = text,
			      .sender = sender, .at = rein_clock_now(&rein_clock_system)};
	rc = rein_store_inbox_put(st, &msg, NULL, err);
	rein_free(text);
	return rc;
}

int rein_approve(rein_store *st, const rein_approve_req *q, char **token, char inbox_id[64],
		 rein_err *err)
{
	assert(st != NULL && q != NULL && q->id != NULL && q->by != NULL && inbox_id != NULL);
	rein_token_keys *k = NULL;
	json_t *item = NULL, *claims = NULL, *d = NULL;
	char *tok = NULL;
	char nonce[64];
	int64_t now = rein_clock_now(&rein_clock_system);
	int rc = rein_approval_keys(&k, err);
	if (rc == REIN_OK && k == NULL)
		rc = rein_err_set(err, REIN_EINVAL, "no approval key is configured: set "
				  "REIN_APPROVAL_KEYS=kid=hexsecret (or REIN_APPROVAL_KEYS_FILE)");
	if (rc != REIN_OK || (rc = find_item(st, q->id, now, &item, err)) != REIN_OK)
		goto out;
	if ((rc = rein_random_id("n_", nonce, sizeof nonce)) != REIN_OK) {
		rein_err_set(err, rc, "cannot make a nonce");
		goto out;
	}
	claims = json_pack("{s:O, s:O, s:O, s:O, s:O, s:O, s:s, s:o, s:I, s:s, s:O?, s:s?}", "run",
			   json_object_get(item, "run"), "step", json_object_get(item, "step"), "key",
			   json_object_get(item, "key"), "action_hash",
			   json_object_get(item, "action_hash"), "policy_version",
			   json_object_get(item, "policy_version"), "tenant",
			   json_object_get(item, "tenant") ? json_object_get(item, "tenant")
							   : json_null(),
			   "by", q->by, "roles",
			   q->roles ? json_incref((json_t *)q->roles) : json_array(), "exp",
			   (json_int_t)(now + (q->ttl_ms > 0 ? q->ttl_ms : 3600 * 1000)), "nonce", nonce,
			   "args", q->args, "reason", q->reason);
	if (claims && q->args == NULL)
		json_object_del(claims, "args");
	if (claims && q->reason == NULL)
		json_object_del(claims, "reason");
	if (claims == NULL || rein_token_sign(k, claims, &tok, err) != REIN_OK) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	d = json_pack("{s:s, s:s}", "id", q->id, "token", tok);
	if (d == NULL) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	if (q->submit &&
	    (rc = put(st, json_string_value(json_object_get(item, "run")), "approval", d, q->by,
		      inbox_id, err)) != REIN_OK)
		goto out;
	if (token) {
		*token = tok;
		tok = NULL;
	}
out:
	rein_free(tok);
	json_decref(d);
	json_decref(claims);
	json_decref(item);
	rein_token_keys_free(k);
	return rc;
}

int rein_approve_token(rein_store *st, const char *token, char inbox_id[64], rein_err *err)
{
	assert(st != NULL && token != NULL && inbox_id != NULL);
	json_t *claims = NULL, *d = NULL;
	int rc = rein_token_peek(token, &claims, err);
	const char *run = json_string_value(json_object_get(claims, "run"));
	const char *by = json_string_value(json_object_get(claims, "by"));
	if (rc == REIN_OK && run == NULL)
		rc = rein_err_set(err, REIN_EINVAL, "the token names no run");
	if (rc == REIN_OK && (d = json_pack("{s:s}", "token", token)) == NULL)
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
	if (rc == REIN_OK)
		rc = put(st, run, "approval", d, by, inbox_id, err);
	json_decref(d);
	json_decref(claims);
	return rc;
}

int rein_deny(rein_store *st, const char *id, const char *by, const char *reason,
	      char inbox_id[64], rein_err *err)
{
	assert(st != NULL && id != NULL && by != NULL && reason != NULL && inbox_id != NULL);
	json_t *item = NULL, *d = NULL;
	int rc = find_item(st, id, rein_clock_now(&rein_clock_system), &item, err);
	if (rc == REIN_OK &&
	    (d = json_pack("{s:s, s:s, s:s}", "id", id, "by", by, "reason", reason)) == NULL)
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
	if (rc == REIN_OK)
		rc = put(st, json_string_value(json_object_get(item, "run")), "denial", d, by, inbox_id,
			 err);
	json_decref(d);
	json_decref(item);
	return rc;
}
