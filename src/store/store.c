/*
 * The store's front: dispatch to a backend's table of operations, the event
 * hash chain (shared by every backend so a chain means the same thing in
 * SQLite and PostgreSQL), and chain verification.
 */
#include "store.h"

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

static uint8_t *put64(uint8_t *b, int64_t v)
{
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)((uint64_t)v >> (56 - 8 * i));
	return b + 8;
}

void rein_event_chain_hash(const rein_event_row *ev, uint8_t out[REIN_HASH_LEN])
{
	/* one flat buffer: hashing never allocates, so it cannot fail */
	size_t tl = strlen(ev->type) + 1;
	const char *step = ev->step ? ev->step : "";
	size_t sl = strlen(step) + 1;
	uint8_t small[512], *buf = small;
	size_t n = REIN_HASH_LEN + 8 + tl + sl + 8 + REIN_HASH_LEN;
	uint8_t *big = NULL;
	if (n > sizeof small) {
		big = malloc(n); /* type/step names are short; this is the rare case */
		if (big == NULL)
			abort();
		buf = big;
	}
	uint8_t *p = buf;
	memcpy(p, ev->prev_hash, REIN_HASH_LEN);
	p += REIN_HASH_LEN;
	p = put64(p, ev->seq);
	memcpy(p, ev->type, tl);
	p += tl;
	memcpy(p, step, sl);
	p += sl;
	p = put64(p, ev->at);
	memcpy(p, ev->payload_hash, REIN_HASH_LEN);
	rein_sha256(buf, n, out);
	free(big);
}

void rein_event_genesis(const char *run_id, uint8_t out[REIN_HASH_LEN])
{
	static const char tag[] = "rein.run"; /* with its NUL */
	size_t n = strlen(run_id);
	uint8_t small[128], *buf = n + sizeof tag <= sizeof small ? small : malloc(n + sizeof tag);
	if (buf == NULL)
		abort();
	memcpy(buf, tag, sizeof tag);
	memcpy(buf + sizeof tag, run_id, n);
	rein_sha256(buf, n + sizeof tag, out);
	if (buf != small)
		free(buf);
}

void rein_event_hash(rein_event_row *ev)
{
	const char *p = ev->payload ? ev->payload : "";
	rein_sha256(p, strlen(p), ev->payload_hash);
	rein_event_chain_hash(ev, ev->hash);
}

int rein_store_wrap(const rein_store_ops *ops, void *be, rein_store **out)
{
	rein_store *s = rein_malloc(sizeof *s);
	if (s == NULL)
		return REIN_ENOMEM;
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

int rein_store_spec_get(rein_store *s, const char *version, char **bundle, rein_err *err)
{
	return s->ops->spec_get(s->be, version, bundle, err);
}

int rein_store_run_insert(rein_store *s, const rein_run_row *row, rein_err *err)
{
	return s->ops->run_insert(s->be, row, err);
}

int rein_store_run_update(rein_store *s, const rein_run_row *row, const char *owner, bool *cancel,
			  rein_err *err)
{
	return s->ops->run_update(s->be, row, owner, cancel, err);
}

int rein_store_run_get(rein_store *s, const char *id, rein_run_row *row, rein_err *err)
{
	return s->ops->run_get(s->be, id, row, err);
}

int rein_store_run_list(rein_store *s, int status, rein_run_cb cb, void *ud, rein_err *err)
{
	return s->ops->run_list(s->be, status, cb, ud, err);
}

int rein_store_lease_claim(rein_store *s, const char *id, const char *expect_owner,
			   const char *owner, int64_t expires, rein_err *err)
{
	return s->ops->lease_claim(s->be, id, expect_owner, owner, expires, err);
}

int rein_store_cancel_request(rein_store *s, const char *id, rein_err *err)
{
	return s->ops->cancel_request(s->be, id, err);
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

typedef struct verify_state {
	int64_t expect_seq;
	uint8_t prev[REIN_HASH_LEN];
	int64_t bad_seq;
	char why[256];
} verify_state;

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
	memcpy(v->prev, ev->hash, REIN_HASH_LEN);
	v->expect_seq++;
	return 0;
}

int rein_store_verify_run(rein_store *s, const char *run_id, int64_t *bad_seq, rein_err *err)
{
	rein_run_row row = {0};
	verify_state v = {.expect_seq = 1};
	rein_event_genesis(run_id, v.prev);
	int rc = rein_store_run_get(s, run_id, &row, err);
	if (rc != REIN_OK)
		goto out;
	rc = rein_store_events_load(s, run_id, verify_one, &v, err);
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
	if (v.bad_seq) {
		*bad_seq = v.bad_seq;
		rc = rein_err_set(err, REIN_ECORRUPT, "run %s: seq %lld: %s", run_id,
				  (long long)v.bad_seq, v.why);
	}
out:
	rein_run_row_clear(&row);
	return rc;
}
