/*
 * The store's front: dispatch to a backend's table of operations, the event
 * hash chain (shared by every backend so a chain means the same thing in
 * SQLite and PostgreSQL), and chain verification.
 */
#include "store.h"
#include "store_int.h"
#include "store_sqlite.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rein_store {
	const rein_store_ops *ops;
	void *be;
};

void rein_run_row_clear(rein_run_row *r)
{
	if (r == NULL)
		return;
	rein_free(r->workflow);
	rein_free(r->lease_owner);
	rein_free(r->output);
	rein_free(r->reason);
	memset(r, 0, sizeof *r);
}

static void put64(uint8_t b[8], int64_t v)
{
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)((uint64_t)v >> (56 - 8 * i));
}

void rein_event_chain_hash(const rein_event_row *ev, uint8_t out[REIN_HASH_LEN])
{
	/* streamed field by field: hashing never allocates, so it cannot fail */
	const char *step = ev->step ? ev->step : "";
	uint8_t seq[8], at[8];
	put64(seq, ev->seq);
	put64(at, ev->at);
	rein_sha256_ctx c;
	rein_sha256_init(&c);
	rein_sha256_update(&c, ev->prev_hash, REIN_HASH_LEN);
	rein_sha256_update(&c, seq, sizeof seq);
	rein_sha256_update(&c, ev->type, strlen(ev->type) + 1);
	rein_sha256_update(&c, step, strlen(step) + 1);
	rein_sha256_update(&c, at, sizeof at);
	rein_sha256_update(&c, ev->payload_hash, REIN_HASH_LEN);
	rein_sha256_final(&c, out);
}

void rein_event_genesis(const char *run_id, uint8_t out[REIN_HASH_LEN])
{
	static const char tag[] = "rein.run"; /* with its NUL */
	rein_sha256_ctx c;
	rein_sha256_init(&c);
	rein_sha256_update(&c, tag, sizeof tag);
	rein_sha256_update(&c, run_id, strlen(run_id));
	rein_sha256_final(&c, out);
}

void rein_event_hash(rein_event_row *ev)
{
	const char *p = ev->payload ? ev->payload : "";
	rein_sha256(p, strlen(p), ev->payload_hash);
	rein_event_chain_hash(ev, ev->hash);
}

void rein_anchor_hash(const rein_anchor_row *a, uint8_t out[REIN_HASH_LEN])
{
	static const char tag[] = "rein.anchor"; /* with its NUL */
	uint8_t seq[8], last[8];
	put64(seq, a->seq);
	put64(last, a->run_last_seq);
	rein_sha256_ctx c;
	rein_sha256_init(&c);
	rein_sha256_update(&c, tag, sizeof tag);
	rein_sha256_update(&c, a->prev_hash, REIN_HASH_LEN);
	rein_sha256_update(&c, seq, sizeof seq);
	rein_sha256_update(&c, a->run_id, strlen(a->run_id) + 1);
	rein_sha256_update(&c, last, sizeof last);
	rein_sha256_update(&c, a->run_head_hash, REIN_HASH_LEN);
	rein_sha256_final(&c, out);
}

void rein_run_rows_free(rein_run_row *rows, size_t n)
{
	for (size_t i = 0; rows && i < n; i++)
		rein_run_row_clear(&rows[i]);
	rein_free(rows);
}

void rein_inbox_rows_free(rein_inbox_row *rows, size_t n)
{
	for (size_t i = 0; rows && i < n; i++) {
		rein_free((char *)rows[i].run_id);
		rein_free((char *)rows[i].id);
		rein_free((char *)rows[i].type);
		rein_free((char *)rows[i].data);
		rein_free((char *)rows[i].sender);
	}
	rein_free(rows);
}

int rein_store_open(const char *url, const rein_store_opts *opts, rein_store **out,
		    rein_err *err)
{
	assert(url != NULL && out != NULL);
	if (strncmp(url, "sqlite:", 7) == 0)
		return rein_store_open_sqlite(url + 7, opts, out, err);
	if (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0)
		return rein_err_set(err, REIN_EINVAL,
				    "%s: PostgreSQL stores are not supported yet (use sqlite:PATH)",
				    url);
	if (strstr(url, "://") != NULL)
		return rein_err_set(err, REIN_EINVAL,
				    "%s: unknown store URL (use sqlite:PATH, or a file path)", url);
	return rein_store_open_sqlite(url, opts, out, err);
}

int rein_store_wrap(const rein_store_ops *ops, void *be, rein_store **out)
{
	rein_store *s = rein_malloc(sizeof *s);
	if (s == NULL)
		return REIN_ENOMEM;
	assert(ops != NULL);
	s->ops = ops;
	s->be = be;
	*out = s;
	return REIN_OK;
}

void rein_store_close(rein_store *s)
{
	if (s == NULL)
		return;
	s->ops->close(s->be);
	rein_free(s);
}

int rein_store_begin(rein_store *s, rein_err *err) { return s->ops->begin(s->be, err); }
int rein_store_commit(rein_store *s, rein_err *err) { return s->ops->commit(s->be, err); }
void rein_store_rollback(rein_store *s) { s->ops->rollback(s->be); }

int rein_store_spec_put(rein_store *s, const char *version, const char *name, const char *bundle,
			rein_err *err)
{
	return s->ops->spec_put(s->be, version, name, bundle, err);
}

/* Whether text hashes to version (lowercase hex SHA-256), the rule every
 * bundle is stored under (store.h). */
static bool bundle_matches(const char *version, const char *text)
{
	uint8_t h[REIN_HASH_LEN];
	char hex[2 * REIN_HASH_LEN + 1];
	rein_sha256(text, strlen(text), h);
	rein_hex(h, REIN_HASH_LEN, hex);
	return strcmp(hex, version) == 0;
}

int rein_store_org_policy_put(rein_store *s, const char *version, const char *rules, int64_t at,
			      rein_err *err)
{
	assert(version != NULL && rules != NULL);
	if (s->ops->org_policy_put == NULL)
		return rein_err_set(err, REIN_EINVAL, "this store keeps no organisation policies "
				    "(not supported)");
	if (!bundle_matches(version, rules))
		return rein_err_set(err, REIN_EINVAL, "policy version %.12s is not the hash of its rules",
				    version);
	return s->ops->org_policy_put(s->be, version, rules, at, err);
}

int rein_store_purge(rein_store *s, int64_t ended_before, bool dry_run, rein_purge_stats *st,
		     rein_err *err)
{
	rein_purge_stats got = {0};
	if (s->ops->purge == NULL)
		return rein_err_set(err, REIN_EINVAL, "this store cannot purge payloads (not supported)");
	int rc = s->ops->purge(s->be, ended_before, dry_run, &got, err);
	if (rc == REIN_OK && st)
		*st = got;
	return rc;
}

int rein_store_org_policy_current(rein_store *s, char **version, char **rules, rein_err *err)
{
	assert(version != NULL && rules != NULL);
	*version = *rules = NULL;
	if (s->ops->org_policy_current == NULL)
		return REIN_OK;
	char *v = NULL, *r = NULL;
	int rc = s->ops->org_policy_current(s->be, &v, &r, err);
	if (rc == REIN_OK && v && (r == NULL || !bundle_matches(v, r)))
		rc = rein_err_set(err, REIN_ECORRUPT, "the stored organisation policies %.12s do not "
				  "match their hash (changed after they were loaded)", v);
	if (rc != REIN_OK) {
		rein_free(v);
		rein_free(r);
		return rc;
	}
	*version = v;
	*rules = r;
	return REIN_OK;
}

int rein_store_spec_get(rein_store *s, const char *version, char **bundle, rein_err *err)
{
	assert(version != NULL && bundle != NULL);
	char *text = NULL;
	int rc = s->ops->spec_get(s->be, version, &text, err);
	if (rc != REIN_OK)
		goto out;
	if (!bundle_matches(version, text)) {
		rc = rein_err_set(err, REIN_ECORRUPT,
				  "the stored bundle of workflow version %.12s does not match its "
				  "hash (it was changed after it was stored)",
				  version);
		goto out;
	}
	*bundle = text;
	text = NULL;
out:
	rein_free(text);
	return rc;
}

int rein_store_check(rein_store *s, rein_problem_cb cb, void *ud, int *n, rein_err *err)
{
	int k = 0;
	int rc = s->ops->check(s->be, cb, ud, &k, err);
	if (rc == REIN_OK && n)
		*n = k;
	return rc;
}

int rein_store_run_insert(rein_store *s, const rein_run_row *row, rein_err *err)
{
	return s->ops->run_insert(s->be, row, err);
}

int rein_store_run_update(rein_store *s, const rein_run_row *row, const char *owner, bool *mail,
			  rein_err *err)
{
	assert(row != NULL && row->id[0] != '\0');
	return s->ops->run_update(s->be, row, owner, mail, err);
}

int rein_store_run_get(rein_store *s, const char *id, rein_run_row *row, rein_err *err)
{
	return s->ops->run_get(s->be, id, row, err);
}

int rein_store_run_list(rein_store *s, const rein_run_query *q, rein_run_row **rows, size_t *n,
			rein_err *err)
{
	assert(q != NULL && q->limit >= 1 && rows != NULL && n != NULL);
	return s->ops->run_list(s->be, q, rows, n, err);
}

#define RUN_PAGE 256

int rein_store_run_each(rein_store *s, int status, rein_run_cb cb, void *ud, rein_err *err)
{
	rein_run_query q = {.status = status, .limit = RUN_PAGE};
	rein_run_row *rows = NULL;
	size_t n = 0;
	char after[sizeof rows->id];
	int rc;
	for (;;) {
		if ((rc = rein_store_run_list(s, &q, &rows, &n, err)) != REIN_OK)
			goto out;
		for (size_t i = 0; i < n; i++) {
			int x = cb(ud, &rows[i]);
			if (x != 0) {
				rc = x < 0 ? x : REIN_OK;
				goto out;
			}
		}
		if (n < q.limit)
			goto out;
		snprintf(after, sizeof after, "%s", rows[n - 1].id);
		q.after_id = after;
		q.after_created = rows[n - 1].created_at;
		rein_run_rows_free(rows, n);
		rows = NULL;
		n = 0;
	}
out:
	rein_run_rows_free(rows, n);
	return rc;
}

int rein_store_lease_claim(rein_store *s, const char *id, const char *expect_owner,
			   const char *owner, int64_t expires, rein_err *err)
{
	return s->ops->lease_claim(s->be, id, expect_owner, owner, expires, err);
}

int rein_store_claim_due(rein_store *s, const rein_claim_req *req, rein_run_row **rows, size_t *n,
			 rein_err *err)
{
	assert(req != NULL && req->owner != NULL && req->limit >= 1 && rows && n);
	return s->ops->claim_due(s->be, req, rows, n, err);
}

int rein_store_inbox_put(rein_store *s, const rein_inbox_row *msg, bool *dup, rein_err *err)
{
	assert(msg != NULL && msg->run_id && msg->id && msg->type);
	return s->ops->inbox_put(s->be, msg, dup, err);
}

int rein_store_inbox_list(rein_store *s, const char *run_id, rein_inbox_row **out, size_t *n,
			  rein_err *err)
{
	assert(run_id != NULL && out != NULL && n != NULL);
	return s->ops->inbox_list(s->be, run_id, out, n, err);
}

int rein_store_inbox_drained(rein_store *s, const char *run_id, int64_t upto_seq, rein_err *err)
{
	assert(run_id != NULL);
	return s->ops->inbox_drained(s->be, run_id, upto_seq, err);
}

int rein_store_cancel_request(rein_store *s, const char *id, rein_err *err)
{
	rein_inbox_row msg = {.run_id = id, .id = "cancel", .type = "cancel",
			      .at = rein_clock_now(&rein_clock_system)};
	return rein_store_inbox_put(s, &msg, NULL, err);
}

void rein_kill_rows_free(rein_kill_row *rows, size_t n)
{
	for (size_t i = 0; rows && i < n; i++) {
		rein_free((char *)rows[i].workflow);
		rein_free((char *)rows[i].tool);
		rein_free((char *)rows[i].tenant);
		rein_free((char *)rows[i].reason);
		rein_free((char *)rows[i].by);
	}
	rein_free(rows);
}

int rein_store_kill_set(rein_store *s, const rein_kill_row *k, int64_t *id, rein_err *err)
{
	assert(k != NULL && k->reason != NULL);
	return s->ops->kill_set(s->be, k, id, err);
}

int rein_store_kill_lift(rein_store *s, const rein_kill_row *sel, int *n, rein_err *err)
{
	assert(sel != NULL);
	return s->ops->kill_lift(s->be, sel, n, err);
}

int rein_store_kill_list(rein_store *s, int64_t *version, rein_kill_row **rows, size_t *n,
			 rein_err *err)
{
	assert(version != NULL && rows != NULL && n != NULL);
	return s->ops->kill_list(s->be, version, rows, n, err);
}

int rein_store_kill_version(rein_store *s, int64_t *version, rein_err *err)
{
	assert(version != NULL);
	return s->ops->kill_version(s->be, version, err);
}

int rein_store_event_append(rein_store *s, const rein_event_row *ev, rein_err *err)
{
	assert(ev->seq >= 1 && ev->type != NULL);
	return s->ops->event_append(s->be, ev, err);
}

int rein_store_events_load(rein_store *s, const char *run_id, rein_event_cb cb, void *ud,
			   rein_err *err)
{
	return s->ops->events_load(s->be, run_id, cb, ud, err);
}

int rein_store_anchor_last(rein_store *s, rein_anchor_row *a, bool *found, rein_err *err)
{
	assert(a != NULL && found != NULL);
	return s->ops->anchor_last(s->be, a, found, err);
}

int rein_store_anchor_append(rein_store *s, const rein_anchor_row *a, rein_err *err)
{
	assert(a != NULL && a->seq >= 1);
	return s->ops->anchor_append(s->be, a, err);
}

int rein_store_anchors_load(rein_store *s, rein_anchor_cb cb, void *ud, rein_err *err)
{
	assert(cb != NULL);
	return s->ops->anchors_load(s->be, cb, ud, err);
}

int rein_store_anchor(rein_store *s, const char *run_id, int64_t last_seq,
		      const uint8_t head[REIN_HASH_LEN], rein_anchor_row *out, rein_err *err)
{
	assert(run_id != NULL && head != NULL && last_seq >= 1);
	rein_anchor_row last = {0}, a = {0};
	bool found = false;
	if (strlen(run_id) >= sizeof a.run_id)
		return rein_err_set(err, REIN_EINVAL, "run id too long to anchor: %.64s", run_id);
	int rc = rein_store_anchor_last(s, &last, &found, err);
	if (rc != REIN_OK)
		return rc;
	a.seq = found ? last.seq + 1 : 1;
	if (found)
		memcpy(a.prev_hash, last.hash, REIN_HASH_LEN);
	snprintf(a.run_id, sizeof a.run_id, "%s", run_id);
	a.run_last_seq = last_seq;
	memcpy(a.run_head_hash, head, REIN_HASH_LEN);
	rein_anchor_hash(&a, a.hash);
	if ((rc = rein_store_anchor_append(s, &a, err)) == REIN_OK && out)
		*out = a;
	return rc;
}

typedef struct verify_state {
	int64_t expect_seq;
	uint8_t prev[REIN_HASH_LEN];
	int64_t bad_seq;
	char why[256];
	int64_t end_seq;  /* run.ended's seq, 0: none */
	bool end_purged;  /* its payload was purged */
	bool bad_bundle;
	json_t *end;      /* its payload */
	const store_anchor_ref *refs; /* anchored heads, by run_seq */
	size_t nrefs, ri;
} verify_state;

/* The anchored heads at ev's seq must be ev's hash. */
static int check_refs(verify_state *v, const rein_event_row *ev)
{
	if (v->ri < v->nrefs && v->refs[v->ri].run_seq < ev->seq) {
		/* below seq 1: no event of the run can match it */
		v->bad_seq = ev->seq;
		snprintf(v->why, sizeof v->why, "anchor %lld: anchors seq %lld, not a seq of the run",
			 (long long)v->refs[v->ri].anchor, (long long)v->refs[v->ri].run_seq);
		return 1;
	}
	for (; v->ri < v->nrefs && v->refs[v->ri].run_seq == ev->seq; v->ri++) {
		if (memcmp(v->refs[v->ri].head, ev->hash, REIN_HASH_LEN) != 0) {
			v->bad_seq = ev->seq;
			snprintf(v->why, sizeof v->why,
				 "anchor %lld: the anchored head of seq %lld is not the run's "
				 "event %lld (the run's chain was rewritten after it was anchored)",
				 (long long)v->refs[v->ri].anchor, (long long)ev->seq,
				 (long long)ev->seq);
			return 1;
		}
	}
	return 0;
}

static int verify_one(void *ud, const rein_event_row *ev)
{
	verify_state *v = ud;
	uint8_t h[REIN_HASH_LEN];
	if (ev->seq != v->expect_seq) {
		v->bad_seq = v->expect_seq;
		snprintf(v->why, sizeof v->why, "sequence %lld is missing",
			 (long long)v->expect_seq);
		return 1;
	}
	if (memcmp(ev->prev_hash, v->prev, REIN_HASH_LEN) != 0) {
		v->bad_seq = ev->seq;
		snprintf(v->why, sizeof v->why, "prev_hash does not link to event %lld",
			 (long long)ev->seq - 1);
		return 1;
	}
	if (ev->payload) {
		rein_sha256(ev->payload, strlen(ev->payload), h);
		if (memcmp(h, ev->payload_hash, REIN_HASH_LEN) != 0) {
			v->bad_seq = ev->seq;
			snprintf(v->why, sizeof v->why, "payload does not match its hash");
			return 1;
		}
	}
	rein_event_chain_hash(ev, h);
	if (memcmp(h, ev->hash, REIN_HASH_LEN) != 0) {
		v->bad_seq = ev->seq;
		snprintf(v->why, sizeof v->why, "event hash does not match its fields");
		return 1;
	}
	if (v->nrefs && check_refs(v, ev))
		return 1;
	memcpy(v->prev, ev->hash, REIN_HASH_LEN);
	v->expect_seq++;
	return 0;
}

/* Copies the last event's seq, and of run.ended its payload (NULL: purged). */
static int note_end(verify_state *v, const rein_event_row *ev)
{
	/* the store sits beside the engine, not above it: the one event type it
	 * reads is named here (src/engine/events.c has the table) */
	if (strcmp(ev->type, "run.ended") != 0)
		return 0;
	v->end_seq = ev->seq;
	v->end_purged = ev->payload == NULL;
	json_decref(v->end);
	v->end = ev->payload ? rein_json_parse(ev->payload, strlen(ev->payload), NULL) : NULL;
	if (ev->payload && v->end == NULL) {
		v->bad_seq = ev->seq;
		snprintf(v->why, sizeof v->why, "run.ended payload is not JSON");
		return 1;
	}
	return 0;
}

static int verify_event(void *ud, const rein_event_row *ev)
{
	int rc = verify_one(ud, ev);
	return rc ? rc : note_end(ud, ev);
}

/* Whether the row's text field (JSON text or a plain string, NULL: absent)
 * says what the event's value says (NULL or JSON null: absent). */
static bool same_output(const char *row_text, const json_t *ev)
{
	json_t *r = row_text ? rein_json_parse(row_text, strlen(row_text), NULL) : NULL;
	bool same;
	if (r == NULL || json_is_null(r))
		same = ev == NULL || json_is_null(ev);
	else
		same = ev != NULL && json_equal(r, (json_t *)ev);
	json_decref(r);
	return same;
}

static bool same_reason(const char *row_reason, const json_t *ev)
{
	const char *e = json_string_value(ev);
	if (row_reason == NULL || e == NULL)
		return row_reason == NULL && e == NULL;
	return strcmp(row_reason, e) == 0;
}

/* Checks the row's status, output and reason against the log's run.ended. */
static void check_row(verify_state *v, const rein_run_row *row)
{
	bool ended_row = row->status != REIN_RUN_RUNNING && row->status != REIN_RUN_WAITING;
	if (v->end_seq == 0) {
		if (ended_row) {
			v->bad_seq = row->last_seq > 0 ? row->last_seq : 0;
			snprintf(v->why, sizeof v->why,
				 "the run row says %s but the log has no run.ended",
				 rein_status_name(row->status));
		}
		return;
	}
	if (v->end_purged) {
		/* the payload is gone: only the ended status can still be checked */
		if (!ended_row) {
			v->bad_seq = v->end_seq;
			snprintf(v->why, sizeof v->why, "the run row says %s but the log has run.ended",
				 rein_status_name(row->status));
		}
		return;
	}
	const char *st = json_string_value(json_object_get(v->end, "status"));
	const char *what = NULL;
	if (st == NULL || rein_status_parse(st) != row->status)
		what = "status";
	else if (!same_output(row->output, json_object_get(v->end, "output")))
		what = "output";
	else if (!same_reason(row->reason, json_object_get(v->end, "reason")))
		what = "reason";
	if (what) {
		v->bad_seq = v->end_seq;
		snprintf(v->why, sizeof v->why,
			 "the run row's %s does not match run.ended (row: %s, log: %s)", what,
			 rein_status_name(row->status), st ? st : "?");
	}
}

/* The bundle of the run's version against its hash (REIN_ENOTFOUND: a run of
 * a version the store does not hold is corrupt too). */
static void check_bundle(rein_store *s, verify_state *v, const rein_run_row *row)
{
	char *text = NULL;
	rein_err e = {0};
	int rc = rein_store_spec_get(s, row->version, &text, &e);
	if (rc == REIN_ECORRUPT || rc == REIN_ENOTFOUND) {
		v->bad_seq = 0;
		v->bad_bundle = true;
		snprintf(v->why, sizeof v->why, "%.200s", e.msg);
	}
	rein_free(text);
	rein_err_clear(&e);
}

int rein_store_verify_run(rein_store *s, const char *run_id, int64_t *bad_seq, rein_err *err)
{
	return store_verify_run_refs(s, run_id, NULL, 0, bad_seq, err);
}

int store_verify_run_refs(rein_store *s, const char *run_id, const store_anchor_ref *refs,
			  size_t n, int64_t *bad_seq, rein_err *err)
{
	rein_run_row row = {0};
	verify_state v = {.expect_seq = 1, .refs = refs, .nrefs = n};
	rein_event_genesis(run_id, v.prev);
	int rc = rein_store_run_get(s, run_id, &row, err);
	if (rc != REIN_OK)
		goto out;
	rc = rein_store_events_load(s, run_id, verify_event, &v, err);
	if (rc != REIN_OK)
		goto out;
	if (v.bad_seq == 0 && v.expect_seq - 1 != row.last_seq) {
		v.bad_seq = v.expect_seq - 1 < row.last_seq ? v.expect_seq : row.last_seq;
		snprintf(v.why, sizeof v.why, "the run records %lld events, the log holds %lld",
			 (long long)row.last_seq, (long long)v.expect_seq - 1);
	} else if (v.bad_seq == 0 && memcmp(v.prev, row.last_hash, REIN_HASH_LEN) != 0) {
		v.bad_seq = row.last_seq;
		snprintf(v.why, sizeof v.why, "the run's last hash does not match event %lld",
			 (long long)row.last_seq);
	}
	if (v.bad_seq == 0 && v.ri < v.nrefs) {
		/* an anchor past the log's end: events were cut off */
		v.bad_seq = v.expect_seq;
		snprintf(v.why, sizeof v.why,
			 "anchor %lld: anchors seq %lld but the log ends at seq %lld (events were "
			 "removed after it was anchored)",
			 (long long)v.refs[v.ri].anchor, (long long)v.refs[v.ri].run_seq,
			 (long long)v.expect_seq - 1);
	}
	if (v.bad_seq == 0)
		check_row(&v, &row);
	if (v.bad_seq == 0 && v.why[0] == '\0')
		check_bundle(s, &v, &row);
	if (v.bad_seq) {
		*bad_seq = v.bad_seq;
		rc = rein_err_set(err, REIN_ECORRUPT, "run %s: seq %lld: %s", run_id,
				  (long long)v.bad_seq, v.why);
	} else if (v.why[0]) {
		*bad_seq = 0;
		rc = rein_err_set(err, REIN_ECORRUPT, "run %s: %s", run_id, v.why);
	}
out:
	json_decref(v.end);
	rein_run_row_clear(&row);
	return rc;
}

void rein_call_counts_free(rein_call_count *rows, size_t n)
{
	for (size_t i = 0; rows && i < n; i++)
		rein_free(rows[i].tool);
	rein_free(rows);
}

int rein_store_call_note(rein_store *s, const rein_call_row *c, rein_err *err)
{
	assert(c != NULL && c->tenant && c->run_id && c->tool && c->seq > 0);
	return s->ops->call_note ? s->ops->call_note(s->be, c, err) : REIN_OK;
}

int rein_store_call_counts(rein_store *s, const char *tenant, int64_t since,
			   rein_call_count **rows, size_t *n, rein_err *err)
{
	assert(tenant != NULL && rows != NULL && n != NULL);
	*rows = NULL;
	*n = 0;
	if (s->ops->call_counts == NULL)
		return rein_err_set(err, REIN_EINVAL,
				    "this store does not count calls per tenant (not supported)");
	return s->ops->call_counts(s->be, tenant, since, rows, n, err);
}

/* ---- deployments ---------------------------------------------------------- */

void rein_deploy_rows_free(rein_deploy_row *rows, size_t n)
{
	for (size_t i = 0; rows && i < n; i++) {
		rein_free(rows[i].name);
		rein_free(rows[i].role);
		rein_free(rows[i].rule);
		rein_free(rows[i].state);
		rein_free(rows[i].reason);
		rein_free(rows[i].by);
	}
	rein_free(rows);
}

static int no_deploys(rein_err *err)
{
	return rein_err_set(err, REIN_EINVAL, "this store keeps no deployments (not supported)");
}

int rein_store_deploy_add(rein_store *s, const rein_deploy_row *d, int64_t *id, rein_err *err)
{
	assert(d != NULL && d->name != NULL && d->role != NULL && strlen(d->version) == 64);
	assert(strcmp(d->role, "stable") == 0 ? d->percent == 0
					       : strcmp(d->role, "candidate") == 0 &&
							 d->percent >= 1 && d->percent <= 99);
	if (s->ops->deploy_add == NULL)
		return no_deploys(err);
	int64_t got = 0;
	int rc = s->ops->deploy_add(s->be, d, &got, err);
	if (rc == REIN_OK && id)
		*id = got;
	return rc;
}

int rein_store_deploy_end(rein_store *s, int64_t id, const char *state, const char *reason,
			  int64_t at, rein_err *err)
{
	assert(id >= 1 && state != NULL && strcmp(state, "active") != 0);
	if (s->ops->deploy_end == NULL)
		return no_deploys(err);
	return s->ops->deploy_end(s->be, id, state, reason, at, err);
}

int rein_store_deploy_list(rein_store *s, const char *name, rein_deploy_row **rows, size_t *n,
			   rein_err *err)
{
	assert(rows != NULL && n != NULL);
	if (s->ops->deploy_list == NULL)
		return no_deploys(err);
	rein_deploy_row *v = NULL;
	size_t m = 0;
	int rc = s->ops->deploy_list(s->be, name, &v, &m, err);
	if (rc == REIN_OK) {
		*rows = v;
		*n = m;
	}
	return rc;
}

int rein_store_run_counts(rein_store *s, const char *workflow, const char *version,
			  int64_t since, int64_t until, rein_run_counts *c, rein_err *err)
{
	assert(workflow != NULL && version != NULL && c != NULL);
	if (s->ops->run_counts == NULL)
		return no_deploys(err);
	rein_run_counts got = {0};
	int rc = s->ops->run_counts(s->be, workflow, version, since, until, &got, err);
	if (rc == REIN_OK)
		*c = got;
	return rc;
}
