/*
 * An in-memory store backend written from store.h alone (header-only,
 * static), to prove the interface backend-neutral: test_store.c runs the same
 * suite over it and over SQLite.
 *
 * The data (memdb) belongs to the test and outlives the handles opened on it,
 * so "close and reopen" works as with a file. A transaction is a deep copy of
 * the data taken at begin: rollback puts the copy back, commit drops it (both
 * without allocating). Every allocation goes through rein_malloc, so the
 * allocation-fault sweep reaches this backend too; each write op allocates
 * everything before it changes anything.
 */
#ifndef REIN_MEMSTORE_H
#define REIN_MEMSTORE_H

#include <stdlib.h>
#include <string.h>

#include "store.h"

typedef struct mem_ev {
	int64_t seq, at;
	char *type, *step, *payload;
	uint8_t payload_hash[REIN_HASH_LEN], prev_hash[REIN_HASH_LEN], hash[REIN_HASH_LEN];
} mem_ev;

typedef struct mem_msg {
	int64_t seq, at;
	char *id, *type, *data, *sender;
	bool drained;
} mem_msg;

typedef struct mem_run {
	rein_run_row row; /* owns its strings */
	mem_ev *ev;
	size_t nev, evcap;
	mem_msg *in;
	size_t nin, incap;
} mem_run;

typedef struct mem_spec {
	char *version, *name, *bundle;
} mem_spec;

typedef struct memdb {
	mem_run *runs;
	size_t nruns, runcap;
	mem_spec *specs;
	size_t nspecs, speccap;
	rein_anchor_row *anchors; /* the global chain, in seq order */
	size_t nanchors, anchorcap;
	rein_kill_row *kills; /* the switches set, owning their strings */
	size_t nkills, killcap;
	int64_t kill_version, kill_next;
	struct mem_call { /* calls per tenant, owning their strings */
		char *tenant, *run, *tool;
		int64_t seq, at;
		bool write;
	} *calls;
	size_t ncalls, callcap;
	rein_deploy_row *deploys; /* in id order, owning their strings */
	size_t ndeploys, deploycap;
} memdb;

typedef struct memstore {
	memdb *db;    /* borrowed: the test's */
	memdb *saved; /* inside a transaction: the data as at begin */
} memstore;

static inline char *ms_dup(const char *s, bool *oom)
{
	if (s == NULL)
		return NULL;
	char *d = rein_strdup(s);
	if (d == NULL)
		*oom = true;
	return d;
}

static inline void ms_run_free(mem_run *r)
{
	rein_run_row_clear(&r->row);
	for (size_t i = 0; i < r->nev; i++) {
		rein_free(r->ev[i].type);
		rein_free(r->ev[i].step);
		rein_free(r->ev[i].payload);
	}
	rein_free(r->ev);
	for (size_t i = 0; i < r->nin; i++) {
		rein_free(r->in[i].id);
		rein_free(r->in[i].type);
		rein_free(r->in[i].data);
		rein_free(r->in[i].sender);
	}
	rein_free(r->in);
	memset(r, 0, sizeof *r);
}

/* Empties db (keeps the struct). */
static inline void memdb_clear(memdb *db)
{
	if (db == NULL)
		return;
	for (size_t i = 0; i < db->nruns; i++)
		ms_run_free(&db->runs[i]);
	rein_free(db->runs);
	for (size_t i = 0; i < db->nspecs; i++) {
		rein_free(db->specs[i].version);
		rein_free(db->specs[i].name);
		rein_free(db->specs[i].bundle);
	}
	rein_free(db->specs);
	rein_free(db->anchors);
	rein_kill_rows_free(db->kills, db->nkills);
	for (size_t i = 0; i < db->ncalls; i++) {
		rein_free(db->calls[i].tenant);
		rein_free(db->calls[i].run);
		rein_free(db->calls[i].tool);
	}
	rein_free(db->calls);
	rein_deploy_rows_free(db->deploys, db->ndeploys);
	memset(db, 0, sizeof *db);
}

static inline void memdb_free(memdb *db)
{
	memdb_clear(db);
	rein_free(db);
}

/* A deep copy of a row's strings into d; false on out of memory (d cleared). */
static inline bool ms_row_copy(rein_run_row *d, const rein_run_row *s)
{
	bool oom = false;
	*d = *s;
	d->workflow = ms_dup(s->workflow, &oom);
	d->lease_owner = ms_dup(s->lease_owner, &oom);
	d->output = ms_dup(s->output, &oom);
	d->reason = ms_dup(s->reason, &oom);
	if (oom)
		rein_run_row_clear(d);
	return !oom;
}

static inline void ms_deploy_clear(rein_deploy_row *d)
{
	rein_free(d->name);
	rein_free(d->role);
	rein_free(d->rule);
	rein_free(d->state);
	rein_free(d->reason);
	rein_free(d->by);
	memset(d, 0, sizeof *d);
}

/* A deep copy of a deployment row into d; false on out of memory (d cleared). */
static inline bool ms_deploy_copy(rein_deploy_row *d, const rein_deploy_row *e)
{
	bool oom = false;
	*d = *e;
	d->name = ms_dup(e->name, &oom);
	d->role = ms_dup(e->role, &oom);
	d->rule = ms_dup(e->rule, &oom);
	d->state = ms_dup(e->state, &oom);
	d->reason = ms_dup(e->reason, &oom);
	d->by = ms_dup(e->by, &oom);
	if (oom)
		ms_deploy_clear(d);
	return !oom;
}

static inline memdb *memdb_copy(const memdb *db)
{
	bool oom = false;
	memdb *c = rein_calloc(1, sizeof *c);
	if (c == NULL)
		return NULL;
	if (db->nruns && (c->runs = rein_calloc(db->nruns, sizeof *c->runs)) == NULL)
		goto fail;
	c->runcap = db->nruns;
	for (size_t i = 0; i < db->nruns; i++) {
		const mem_run *s = &db->runs[i];
		mem_run *d = &c->runs[i];
		c->nruns = i + 1; /* freed with the copy from here on */
		if (!ms_row_copy(&d->row, &s->row))
			goto fail;
		if (s->nev && (d->ev = rein_calloc(s->nev, sizeof *d->ev)) == NULL)
			goto fail;
		d->evcap = s->nev;
		for (size_t j = 0; j < s->nev; j++, d->nev++) {
			d->ev[j] = s->ev[j];
			d->ev[j].type = ms_dup(s->ev[j].type, &oom);
			d->ev[j].step = ms_dup(s->ev[j].step, &oom);
			d->ev[j].payload = ms_dup(s->ev[j].payload, &oom);
		}
		if (s->nin && (d->in = rein_calloc(s->nin, sizeof *d->in)) == NULL)
			goto fail;
		d->incap = s->nin;
		for (size_t j = 0; j < s->nin; j++, d->nin++) {
			d->in[j] = s->in[j];
			d->in[j].id = ms_dup(s->in[j].id, &oom);
			d->in[j].type = ms_dup(s->in[j].type, &oom);
			d->in[j].data = ms_dup(s->in[j].data, &oom);
			d->in[j].sender = ms_dup(s->in[j].sender, &oom);
		}
		if (oom)
			goto fail;
	}
	if (db->nspecs && (c->specs = rein_calloc(db->nspecs, sizeof *c->specs)) == NULL)
		goto fail;
	c->speccap = db->nspecs;
	for (size_t i = 0; i < db->nspecs; i++, c->nspecs++) {
		c->specs[i].version = ms_dup(db->specs[i].version, &oom);
		c->specs[i].name = ms_dup(db->specs[i].name, &oom);
		c->specs[i].bundle = ms_dup(db->specs[i].bundle, &oom);
	}
	if (oom)
		goto fail;
	if (db->nanchors &&
	    (c->anchors = rein_calloc(db->nanchors, sizeof *c->anchors)) == NULL)
		goto fail;
	if (db->nanchors)
		memcpy(c->anchors, db->anchors, db->nanchors * sizeof *c->anchors);
	c->nanchors = c->anchorcap = db->nanchors;
	if (db->nkills && (c->kills = rein_calloc(db->nkills, sizeof *c->kills)) == NULL)
		goto fail;
	c->killcap = db->nkills;
	c->kill_version = db->kill_version;
	c->kill_next = db->kill_next;
	for (size_t i = 0; i < db->nkills; i++, c->nkills++) {
		const rein_kill_row *k = &db->kills[i];
		c->kills[i] = (rein_kill_row){.id = k->id, .at = k->at,
					      .workflow = ms_dup(k->workflow, &oom),
					      .tool = ms_dup(k->tool, &oom),
					      .tenant = ms_dup(k->tenant, &oom),
					      .reason = ms_dup(k->reason, &oom), .by = ms_dup(k->by, &oom)};
	}
	if (oom)
		goto fail;
	if (db->ncalls && (c->calls = rein_calloc(db->ncalls, sizeof *c->calls)) == NULL)
		goto fail;
	c->callcap = db->ncalls;
	for (size_t i = 0; i < db->ncalls; i++, c->ncalls++) {
		c->calls[i] = db->calls[i];
		c->calls[i].tenant = ms_dup(db->calls[i].tenant, &oom);
		c->calls[i].run = ms_dup(db->calls[i].run, &oom);
		c->calls[i].tool = ms_dup(db->calls[i].tool, &oom);
	}
	if (oom)
		goto fail;
	if (db->ndeploys && (c->deploys = rein_calloc(db->ndeploys, sizeof *c->deploys)) == NULL)
		goto fail;
	c->deploycap = db->ndeploys;
	for (size_t i = 0; i < db->ndeploys; i++, c->ndeploys++)
		if (!ms_deploy_copy(&c->deploys[i], &db->deploys[i]))
			goto fail;
	return c;
fail:
	memdb_free(c);
	return NULL;
}

static inline int ms_oom(rein_err *err) { return rein_err_set(err, REIN_ENOMEM, "out of memory"); }

/* Grows *v (of *cap elements of size sz) to hold n + 1. */
static inline bool ms_grow(void **v, size_t *cap, size_t n, size_t sz)
{
	if (n < *cap)
		return true;
	size_t c = *cap ? 2 * *cap : 8;
	void *w = rein_realloc(*v, c * sz);
	if (w == NULL)
		return false;
	*v = w;
	*cap = c;
	return true;
}

static inline mem_run *ms_find(memdb *db, const char *id)
{
	for (size_t i = 0; i < db->nruns; i++)
		if (strcmp(db->runs[i].row.id, id) == 0)
			return &db->runs[i];
	return NULL;
}

static inline void ms_close(void *be)
{
	memstore *m = be;
	if (m->saved) { /* roll back */
		memdb_clear(m->db);
		*m->db = *m->saved;
		rein_free(m->saved);
	}
	rein_free(m);
}

static inline int ms_begin(void *be, rein_err *err)
{
	memstore *m = be;
	if (m->saved)
		return rein_err_set(err, REIN_EINVAL, "mem: begin inside a transaction");
	if ((m->saved = memdb_copy(m->db)) == NULL)
		return ms_oom(err);
	return REIN_OK;
}

static inline void ms_rollback(void *be)
{
	memstore *m = be;
	if (m->saved == NULL)
		return;
	memdb_clear(m->db);
	*m->db = *m->saved;
	rein_free(m->saved);
	m->saved = NULL;
}

static inline int ms_commit(void *be, rein_err *err)
{
	memstore *m = be;
	if (m->saved == NULL)
		return rein_err_set(err, REIN_EINVAL, "mem: commit outside a transaction");
	memdb_free(m->saved);
	m->saved = NULL;
	return REIN_OK;
}

static inline int ms_spec_put(void *be, const char *version, const char *name,
			      const char *bundle, rein_err *err)
{
	memdb *db = ((memstore *)be)->db;
	for (size_t i = 0; i < db->nspecs; i++)
		if (strcmp(db->specs[i].version, version) == 0)
			return REIN_OK;
	bool oom = false;
	mem_spec sp = {ms_dup(version, &oom), ms_dup(name, &oom), ms_dup(bundle, &oom)};
	if (oom || !ms_grow((void **)&db->specs, &db->speccap, db->nspecs, sizeof sp)) {
		rein_free(sp.version);
		rein_free(sp.name);
		rein_free(sp.bundle);
		return ms_oom(err);
	}
	db->specs[db->nspecs++] = sp;
	return REIN_OK;
}

static inline int ms_spec_get(void *be, const char *version, char **bundle, rein_err *err)
{
	memdb *db = ((memstore *)be)->db;
	for (size_t i = 0; i < db->nspecs; i++)
		if (strcmp(db->specs[i].version, version) == 0) {
			char *b = rein_strdup(db->specs[i].bundle);
			if (b == NULL)
				return ms_oom(err);
			*bundle = b;
			return REIN_OK;
		}
	return rein_err_set(err, REIN_ENOTFOUND, "no workflow version %s in the store", version);
}

static inline int ms_run_insert(void *be, const rein_run_row *row, rein_err *err)
{
	memdb *db = ((memstore *)be)->db;
	if (ms_find(db, row->id))
		return rein_err_set(err, REIN_ECONFLICT, "mem: run %s exists", row->id);
	mem_run r = {0};
	if (!ms_row_copy(&r.row, row))
		return ms_oom(err);
	if (r.row.workflow == NULL && (r.row.workflow = rein_strdup("")) == NULL) {
		rein_run_row_clear(&r.row);
		return ms_oom(err);
	}
	r.row.mail = false;
	if (!ms_grow((void **)&db->runs, &db->runcap, db->nruns, sizeof r)) {
		rein_run_row_clear(&r.row);
		return ms_oom(err);
	}
	db->runs[db->nruns++] = r;
	return REIN_OK;
}

static inline int ms_run_update(void *be, const rein_run_row *row, const char *owner, bool *mail,
				rein_err *err)
{
	memdb *db = ((memstore *)be)->db;
	mem_run *r = ms_find(db, row->id);
	if (r == NULL || (owner && (r->row.lease_owner == NULL ||
				    strcmp(r->row.lease_owner, owner) != 0)))
		return rein_err_set(err, REIN_ECONFLICT, "run %s: lease lost", row->id);
	bool oom = false;
	char *lo = ms_dup(row->lease_owner, &oom), *out = ms_dup(row->output, &oom),
	     *why = ms_dup(row->reason, &oom);
	if (oom) {
		rein_free(lo);
		rein_free(out);
		rein_free(why);
		return ms_oom(err);
	}
	rein_free(r->row.lease_owner);
	rein_free(r->row.output);
	rein_free(r->row.reason);
	r->row.lease_owner = lo;
	r->row.output = out;
	r->row.reason = why;
	r->row.status = row->status;
	r->row.updated_at = row->updated_at;
	r->row.wake_at = row->wake_at;
	r->row.lease_expires = row->lease_expires;
	r->row.last_seq = row->last_seq;
	memcpy(r->row.last_hash, row->last_hash, REIN_HASH_LEN);
	if (mail)
		*mail = r->row.mail;
	return REIN_OK;
}

static inline int ms_run_get(void *be, const char *id, rein_run_row *row, rein_err *err)
{
	mem_run *r = ms_find(((memstore *)be)->db, id);
	if (r == NULL)
		return rein_err_set(err, REIN_ENOTFOUND, "no run %s", id);
	return ms_row_copy(row, &r->row) ? REIN_OK : ms_oom(err);
}

/* Newest first, then id ascending (the order of run_list). */
static inline int ms_cmp_list(const void *x, const void *y)
{
	const rein_run_row *a = *(const rein_run_row *const *)x, *b = *(const rein_run_row *const *)y;
	if (a->created_at != b->created_at)
		return a->created_at > b->created_at ? -1 : 1;
	return strcmp(a->id, b->id);
}

/* Running first, then by wake_at, then id (the order of claim_due). */
static inline int ms_cmp_due(const void *x, const void *y)
{
	const rein_run_row *a = *(const rein_run_row *const *)x, *b = *(const rein_run_row *const *)y;
	if (a->status != b->status)
		return a->status < b->status ? -1 : 1;
	if (a->wake_at != b->wake_at)
		return a->wake_at < b->wake_at ? -1 : 1;
	return strcmp(a->id, b->id);
}

/* Copies the rows of v (n pointers) into a new array. */
static inline int ms_rows_out(rein_run_row *const *v, size_t n, rein_run_row **rows, size_t *nout,
			      rein_err *err)
{
	rein_run_row *o = n ? rein_calloc(n, sizeof *o) : NULL;
	if (n && o == NULL)
		return ms_oom(err);
	for (size_t i = 0; i < n; i++)
		if (!ms_row_copy(&o[i], v[i])) {
			rein_run_rows_free(o, i);
			return ms_oom(err);
		}
	*rows = o;
	*nout = n;
	return REIN_OK;
}

static inline int ms_run_list(void *be, const rein_run_query *q, rein_run_row **rows, size_t *n,
			      rein_err *err)
{
	memdb *db = ((memstore *)be)->db;
	rein_run_row **v = rein_calloc(db->nruns + 1, sizeof *v);
	if (v == NULL)
		return ms_oom(err);
	size_t m = 0;
	for (size_t i = 0; i < db->nruns; i++) {
		rein_run_row *r = &db->runs[i].row;
		if (q->status >= 0 && r->status != q->status)
			continue;
		if (q->after_id && !(r->created_at < q->after_created ||
				     (r->created_at == q->after_created && strcmp(r->id, q->after_id) > 0)))
			continue;
		v[m++] = r;
	}
	qsort(v, m, sizeof *v, ms_cmp_list);
	int rc = ms_rows_out(v, m < q->limit ? m : q->limit, rows, n, err);
	rein_free(v);
	return rc;
}

static inline int ms_lease_claim(void *be, const char *id, const char *expect, const char *owner,
				 int64_t expires, rein_err *err)
{
	mem_run *r = ms_find(((memstore *)be)->db, id);
	const char *cur = r ? r->row.lease_owner : NULL;
	if (r == NULL || (expect == NULL) != (cur == NULL) || (expect && strcmp(expect, cur) != 0))
		return rein_err_set(err, REIN_ECONFLICT, "run %s is leased by another worker", id);
	bool oom = false;
	char *o = ms_dup(owner, &oom);
	if (oom)
		return ms_oom(err);
	rein_free(r->row.lease_owner);
	r->row.lease_owner = o;
	r->row.lease_expires = expires;
	return REIN_OK;
}

static inline int ms_claim_due(void *be, const rein_claim_req *req, rein_run_row **rows,
			       size_t *n, rein_err *err)
{
	memstore *m = be;
	if (m->saved)
		return rein_err_set(err, REIN_EINVAL, "mem: claim_due autocommits: not inside a transaction");
	memdb *db = m->db;
	rein_run_row **v = rein_calloc(db->nruns + 1, sizeof *v);
	if (v == NULL)
		return ms_oom(err);
	size_t k = 0;
	for (size_t i = 0; i < db->nruns; i++) {
		rein_run_row *r = &db->runs[i].row;
		bool due = r->status == REIN_RUN_RUNNING ||
			   (r->status == REIN_RUN_WAITING &&
			    ((r->wake_at > 0 && r->wake_at <= req->horizon) || r->mail));
		bool live = r->lease_owner && r->lease_expires > req->now &&
			    (strcmp(r->lease_owner, req->owner) == 0 || req->alive == NULL ||
			     req->alive(req->alive_ud, r->lease_owner));
		if (due && !live)
			v[k++] = r;
	}
	qsort(v, k, sizeof *v, ms_cmp_due);
	if (k > req->limit)
		k = req->limit;
	/* the rows as before the claim, then the claim (all or nothing) */
	char **owners = rein_calloc(k + 1, sizeof *owners);
	rein_run_row *got = NULL;
	size_t ngot = 0;
	int rc = owners ? ms_rows_out(v, k, &got, &ngot, err) : ms_oom(err);
	for (size_t i = 0; rc == REIN_OK && i < k; i++)
		if ((owners[i] = rein_strdup(req->owner)) == NULL) {
			rein_run_rows_free(got, ngot);
			rc = ms_oom(err);
		}
	if (rc == REIN_OK) {
		*rows = got;
		*n = ngot;
	}
	for (size_t i = 0; i < k; i++) {
		if (rc == REIN_OK) {
			rein_free(v[i]->lease_owner);
			v[i]->lease_owner = owners[i];
			v[i]->lease_expires = req->lease_until;
		} else {
			rein_free(owners[i]);
		}
	}
	rein_free(owners);
	rein_free(v);
	return rc;
}

static inline int ms_event_append(void *be, const rein_event_row *ev, rein_err *err)
{
	mem_run *r = ms_find(((memstore *)be)->db, ev->run_id);
	if (r == NULL)
		return rein_err_set(err, REIN_ENOTFOUND, "no run %s", ev->run_id);
	for (size_t i = 0; i < r->nev; i++)
		if (r->ev[i].seq == ev->seq)
			return rein_err_set(err, REIN_ECONFLICT, "run %s: event %lld exists",
					    ev->run_id, (long long)ev->seq);
	bool oom = false;
	mem_ev e = {.seq = ev->seq, .at = ev->at, .type = ms_dup(ev->type, &oom),
		    .step = ms_dup(ev->step, &oom), .payload = ms_dup(ev->payload ? ev->payload : "", &oom)};
	memcpy(e.payload_hash, ev->payload_hash, REIN_HASH_LEN);
	memcpy(e.prev_hash, ev->prev_hash, REIN_HASH_LEN);
	memcpy(e.hash, ev->hash, REIN_HASH_LEN);
	if (oom || !ms_grow((void **)&r->ev, &r->evcap, r->nev, sizeof e)) {
		rein_free(e.type);
		rein_free(e.step);
		rein_free(e.payload);
		return ms_oom(err);
	}
	size_t at = r->nev; /* kept in seq order */
	while (at > 0 && r->ev[at - 1].seq > e.seq)
		at--;
	memmove(&r->ev[at + 1], &r->ev[at], (r->nev - at) * sizeof e);
	r->ev[at] = e;
	r->nev++;
	return REIN_OK;
}

static inline int ms_events_load(void *be, const char *run_id, rein_event_cb cb, void *ud,
				 rein_err *err)
{
	mem_run *r = ms_find(((memstore *)be)->db, run_id);
	for (size_t i = 0; r && i < r->nev; i++) {
		const mem_ev *e = &r->ev[i];
		rein_event_row ev = {.run_id = run_id, .seq = e->seq, .type = e->type,
				     .step = e->step, .at = e->at, .payload = e->payload};
		memcpy(ev.payload_hash, e->payload_hash, REIN_HASH_LEN);
		memcpy(ev.prev_hash, e->prev_hash, REIN_HASH_LEN);
		memcpy(ev.hash, e->hash, REIN_HASH_LEN);
		int x = cb(ud, &ev);
		if (x != 0)
			return x < 0 ? x : REIN_OK;
	}
	return REIN_OK;
}

static inline int ms_inbox_put(void *be, const rein_inbox_row *msg, bool *dup, rein_err *err)
{
	memstore *m = be;
	if (m->saved)
		return rein_err_set(err, REIN_EINVAL, "mem: inbox put autocommits: not inside a transaction");
	mem_run *r = ms_find(m->db, msg->run_id);
	if (r == NULL)
		return rein_err_set(err, REIN_ENOTFOUND, "no run %s", msg->run_id);
	for (size_t i = 0; i < r->nin; i++)
		if (strcmp(r->in[i].id, msg->id) == 0) {
			if (dup)
				*dup = true;
			return REIN_OK;
		}
	bool oom = false;
	mem_msg e = {.seq = r->nin ? r->in[r->nin - 1].seq + 1 : 1, .at = msg->at,
		     .id = ms_dup(msg->id, &oom), .type = ms_dup(msg->type, &oom),
		     .data = ms_dup(msg->data, &oom), .sender = ms_dup(msg->sender, &oom)};
	if (oom || !ms_grow((void **)&r->in, &r->incap, r->nin, sizeof e)) {
		rein_free(e.id);
		rein_free(e.type);
		rein_free(e.data);
		rein_free(e.sender);
		return ms_oom(err);
	}
	r->in[r->nin++] = e;
	r->row.mail = true;
	if (dup)
		*dup = false;
	return REIN_OK;
}

static inline int ms_inbox_list(void *be, const char *run_id, rein_inbox_row **out, size_t *n,
				rein_err *err)
{
	mem_run *r = ms_find(((memstore *)be)->db, run_id);
	size_t k = 0;
	for (size_t i = 0; r && i < r->nin; i++)
		k += !r->in[i].drained;
	rein_inbox_row *v = k ? rein_calloc(k, sizeof *v) : NULL;
	if (k && v == NULL)
		return ms_oom(err);
	size_t j = 0;
	bool oom = false;
	for (size_t i = 0; r && i < r->nin; i++) {
		const mem_msg *e = &r->in[i];
		if (e->drained)
			continue;
		v[j++] = (rein_inbox_row){.run_id = ms_dup(run_id, &oom), .seq = e->seq,
					  .id = ms_dup(e->id, &oom), .type = ms_dup(e->type, &oom),
					  .data = ms_dup(e->data, &oom),
					  .sender = ms_dup(e->sender, &oom), .at = e->at};
	}
	if (oom) {
		rein_inbox_rows_free(v, j);
		return ms_oom(err);
	}
	*out = v;
	*n = k;
	return REIN_OK;
}

static inline int ms_inbox_drained(void *be, const char *run_id, int64_t upto_seq, rein_err *err)
{
	memstore *m = be;
	if (m->saved == NULL)
		return rein_err_set(err, REIN_EINVAL, "mem: inbox drained outside a transaction");
	mem_run *r = ms_find(m->db, run_id);
	if (r == NULL)
		return REIN_OK;
	bool left = false;
	for (size_t i = 0; i < r->nin; i++) {
		if (r->in[i].seq <= upto_seq)
			r->in[i].drained = true;
		left |= !r->in[i].drained;
	}
	r->row.mail = left;
	return REIN_OK;
}

/* Nothing can be lost from memory but what the tests remove: no problems. */
static inline int ms_check(void *be, rein_problem_cb cb, void *ud, int *n, rein_err *err)
{
	(void)be;
	(void)cb;
	(void)ud;
	(void)err;
	if (n)
		*n = 0;
	return REIN_OK;
}

static inline int ms_anchor_last(void *be, rein_anchor_row *a, bool *found, rein_err *err)
{
	memdb *db = ((memstore *)be)->db;
	(void)err;
	if ((*found = db->nanchors > 0))
		*a = db->anchors[db->nanchors - 1];
	return REIN_OK;
}

static inline int ms_anchor_append(void *be, const rein_anchor_row *a, rein_err *err)
{
	memstore *m = be;
	memdb *db = m->db;
	if (m->saved == NULL)
		return rein_err_set(err, REIN_EINVAL, "mem: anchor append outside a transaction");
	if (a->seq != (int64_t)db->nanchors + 1)
		return rein_err_set(err, REIN_ECONFLICT, "anchor %lld: the chain's next is %lld",
				    (long long)a->seq, (long long)db->nanchors + 1);
	if (!ms_grow((void **)&db->anchors, &db->anchorcap, db->nanchors, sizeof *a))
		return ms_oom(err);
	db->anchors[db->nanchors++] = *a;
	return REIN_OK;
}

static inline int ms_anchors_load(void *be, rein_anchor_cb cb, void *ud, rein_err *err)
{
	memdb *db = ((memstore *)be)->db;
	(void)err;
	for (size_t i = 0; i < db->nanchors; i++) {
		int x = cb(ud, &db->anchors[i]);
		if (x != 0)
			return x < 0 ? x : REIN_OK;
	}
	return REIN_OK;
}

/* ---- the kill switch ---- */

static inline bool ms_str_is(const char *a, const char *b)
{
	return a == NULL ? b == NULL : b != NULL && strcmp(a, b) == 0;
}

/* The index of the switch with k's selector, or -1. */
static inline long ms_kill_find(const memdb *db, const rein_kill_row *k)
{
	for (size_t i = 0; i < db->nkills; i++)
		if (ms_str_is(db->kills[i].workflow, k->workflow) &&
		    ms_str_is(db->kills[i].tool, k->tool) && ms_str_is(db->kills[i].tenant, k->tenant))
			return (long)i;
	return -1;
}

static inline int ms_kill_set(void *be, const rein_kill_row *k, int64_t *id, rein_err *err)
{
	memstore *m = be;
	if (m->saved)
		return rein_err_set(err, REIN_EINVAL, "mem: kill set autocommits: not inside a transaction");
	memdb *db = m->db;
	long i = ms_kill_find(db, k);
	bool oom = false;
	rein_kill_row e = {.id = i >= 0 ? db->kills[i].id : db->kill_next + 1, .at = k->at,
			   .workflow = ms_dup(k->workflow, &oom), .tool = ms_dup(k->tool, &oom),
			   .tenant = ms_dup(k->tenant, &oom), .reason = ms_dup(k->reason, &oom),
			   .by = ms_dup(k->by, &oom)};
	if (oom || (i < 0 && !ms_grow((void **)&db->kills, &db->killcap, db->nkills, sizeof e))) {
		rein_free((char *)e.workflow);
		rein_free((char *)e.tool);
		rein_free((char *)e.tenant);
		rein_free((char *)e.reason);
		rein_free((char *)e.by);
		return ms_oom(err);
	}
	if (i >= 0) {
		rein_kill_row old = db->kills[i];
		db->kills[i] = e;
		rein_free((char *)old.workflow);
		rein_free((char *)old.tool);
		rein_free((char *)old.tenant);
		rein_free((char *)old.reason);
		rein_free((char *)old.by);
	} else {
		db->kills[db->nkills++] = e;
		db->kill_next = e.id;
	}
	db->kill_version++;
	if (id)
		*id = e.id;
	return REIN_OK;
}

static inline int ms_kill_lift(void *be, const rein_kill_row *sel, int *n, rein_err *err)
{
	memstore *m = be;
	if (m->saved)
		return rein_err_set(err, REIN_EINVAL, "mem: kill lift autocommits: not inside a transaction");
	memdb *db = m->db;
	long i = ms_kill_find(db, sel);
	if (i >= 0) {
		rein_kill_row old = db->kills[i];
		memmove(&db->kills[i], &db->kills[i + 1], (db->nkills - (size_t)i - 1) * sizeof old);
		db->nkills--;
		rein_free((char *)old.workflow);
		rein_free((char *)old.tool);
		rein_free((char *)old.tenant);
		rein_free((char *)old.reason);
		rein_free((char *)old.by);
		db->kill_version++;
	}
	if (n)
		*n = i >= 0;
	return REIN_OK;
}

static inline int ms_kill_version(void *be, int64_t *version, rein_err *err)
{
	(void)err;
	*version = ((memstore *)be)->db->kill_version;
	return REIN_OK;
}

static inline int ms_kill_list(void *be, int64_t *version, rein_kill_row **rows, size_t *n,
			       rein_err *err)
{
	const memdb *db = ((memstore *)be)->db;
	size_t k = db->nkills;
	rein_kill_row *v = k ? rein_calloc(k, sizeof *v) : NULL;
	if (k && v == NULL)
		return ms_oom(err);
	bool oom = false;
	for (size_t i = 0; i < k; i++) {
		const rein_kill_row *e = &db->kills[i];
		v[i] = (rein_kill_row){.id = e->id, .at = e->at, .workflow = ms_dup(e->workflow, &oom),
				       .tool = ms_dup(e->tool, &oom), .tenant = ms_dup(e->tenant, &oom),
				       .reason = ms_dup(e->reason, &oom), .by = ms_dup(e->by, &oom)};
	}
	if (oom) {
		rein_kill_rows_free(v, k);
		return ms_oom(err);
	}
	*version = db->kill_version;
	*rows = v;
	*n = k;
	return REIN_OK;
}

/* Retention (rein_store_purge): payloads are per event here, so "a payload"
 * is a distinct hash among the selected runs' events. */
static inline bool ms_purge_sel(const mem_run *r, int64_t before)
{
	int st = r->row.status;
	return (st == REIN_RUN_SUCCEEDED || st == REIN_RUN_FAILED || st == REIN_RUN_ESCALATED ||
		st == REIN_RUN_CANCELLED) && r->row.updated_at < before;
}

static inline bool ms_hash_used(const memdb *db, int64_t before, const uint8_t *h, bool sel,
				const mem_ev *upto)
{
	for (size_t i = 0; i < db->nruns; i++) {
		const mem_run *r = &db->runs[i];
		if (ms_purge_sel(r, before) != sel)
			continue;
		for (size_t j = 0; j < r->nev; j++)
			if (&r->ev[j] == upto) /* the occurrences before upto only */
				return false;
			else if ((sel ? r->ev[j].payload != NULL : true) &&
			    memcmp(r->ev[j].payload_hash, h, REIN_HASH_LEN) == 0)
				return true;
	}
	return false;
}

static inline int ms_purge(void *be, int64_t before, bool dry_run, rein_purge_stats *st,
			   rein_err *err)
{
	memstore *m = be;
	if (m->saved)
		return rein_err_set(err, REIN_EINVAL, "mem: purge autocommits: not inside a transaction");
	memdb *db = m->db;
	/* pass 1 counts (each distinct hash at its first present occurrence);
	 * pass 2 (unless dry_run) frees */
	for (int pass = 0; pass < (dry_run ? 1 : 2); pass++)
		for (size_t i = 0; i < db->nruns; i++) {
			mem_run *r = &db->runs[i];
			if (!ms_purge_sel(r, before))
				continue;
			st->runs += pass == 0;
			bool ended_gone = false;
			for (size_t j = 0; j < r->nev; j++) {
				mem_ev *e = &r->ev[j];
				if (e->payload == NULL) {
					ended_gone |= strcmp(e->type, "run.ended") == 0;
					continue;
				}
				bool shared = ms_hash_used(db, before, e->payload_hash, false, NULL);
				if (pass == 0 && !ms_hash_used(db, before, e->payload_hash, true, e)) {
					st->shared += shared;
					st->payloads += !shared;
					st->bytes += shared ? 0 : (int64_t)strlen(e->payload);
				}
				if (!shared && strcmp(e->type, "run.ended") == 0)
					ended_gone = true;
				if (pass == 1 && !shared) {
					rein_free(e->payload);
					e->payload = NULL;
				}
			}
			if (ended_gone && (r->row.output || r->row.reason)) {
				st->rows += pass == 0;
				if (pass == 1) {
					rein_free(r->row.output);
					rein_free(r->row.reason);
					r->row.output = r->row.reason = NULL;
				}
			}
			for (size_t j = 0; j < r->nin; j++)
				if (r->in[j].data) {
					st->inbox += pass == 0;
					if (pass == 1) {
						rein_free(r->in[j].data);
						r->in[j].data = NULL;
					}
				}
		}
	return REIN_OK;
}

static inline int ms_call_note(void *be, const rein_call_row *c, rein_err *err)
{
	memstore *m = be;
	memdb *db = m->db;
	if (m->saved == NULL)
		return rein_err_set(err, REIN_EINVAL, "memstore: call note needs a transaction");
	for (size_t i = 0; i < db->ncalls; i++)
		if (db->calls[i].seq == c->seq && strcmp(db->calls[i].run, c->run_id) == 0)
			return REIN_OK; /* noted already */
	bool oom = false;
	struct mem_call k = {.tenant = ms_dup(c->tenant, &oom), .run = ms_dup(c->run_id, &oom),
			     .tool = ms_dup(c->tool, &oom), .seq = c->seq, .at = c->at,
			     .write = c->write};
	if (oom || !ms_grow((void **)&db->calls, &db->callcap, db->ncalls, sizeof *db->calls)) {
		rein_free(k.tenant);
		rein_free(k.run);
		rein_free(k.tool);
		return ms_oom(err);
	}
	db->calls[db->ncalls++] = k;
	return REIN_OK;
}

static inline int ms_call_counts(void *be, const char *tenant, int64_t since,
				 rein_call_count **rows, size_t *n, rein_err *err)
{
	memdb *db = ((memstore *)be)->db;
	rein_call_count *v = NULL;
	size_t nv = 0, cap = 0;
	for (size_t i = 0; i < db->ncalls; i++) {
		const struct mem_call *k = &db->calls[i];
		if (strcmp(k->tenant, tenant) != 0 || k->at <= since)
			continue;
		size_t j = 0;
		while (j < nv && !(v[j].write == k->write && strcmp(v[j].tool, k->tool) == 0))
			j++;
		if (j < nv) {
			v[j].n++;
			continue;
		}
		bool oom = false;
		if (!ms_grow((void **)&v, &cap, nv, sizeof *v) ||
		    (v[nv] = (rein_call_count){.tool = ms_dup(k->tool, &oom), .write = k->write, .n = 1},
		     oom)) {
			rein_call_counts_free(v, nv);
			return ms_oom(err);
		}
		nv++;
	}
	*rows = v;
	*n = nv;
	return REIN_OK;
}

/* Deployments (rein_store_deploy_*): the rows in id order. */
static inline int ms_deploy_add(void *be, const rein_deploy_row *d, int64_t *id, rein_err *err)
{
	memdb *db = ((memstore *)be)->db;
	rein_deploy_row e = *d;
	e.id = db->ndeploys ? db->deploys[db->ndeploys - 1].id + 1 : 1;
	e.state = "active";
	e.reason = NULL;
	e.ended_at = 0;
	rein_deploy_row c;
	if (!ms_deploy_copy(&c, &e))
		return ms_oom(err);
	if (!ms_grow((void **)&db->deploys, &db->deploycap, db->ndeploys, sizeof c)) {
		ms_deploy_clear(&c);
		return ms_oom(err);
	}
	db->deploys[db->ndeploys++] = c;
	*id = c.id;
	return REIN_OK;
}

static inline int ms_deploy_end(void *be, int64_t id, const char *state, const char *reason,
				int64_t at, rein_err *err)
{
	memdb *db = ((memstore *)be)->db;
	for (size_t i = 0; i < db->ndeploys; i++) {
		rein_deploy_row *e = &db->deploys[i];
		if (e->id != id || strcmp(e->state, "active") != 0)
			continue;
		bool oom = false;
		char *st = ms_dup(state, &oom), *why = ms_dup(reason, &oom);
		if (oom) {
			rein_free(st);
			rein_free(why);
			return ms_oom(err);
		}
		rein_free(e->state);
		rein_free(e->reason);
		e->state = st;
		e->reason = why;
		e->ended_at = at;
		return REIN_OK;
	}
	return rein_err_set(err, REIN_ENOTFOUND, "no active deployment %lld", (long long)id);
}

static inline int ms_deploy_list(void *be, const char *name, rein_deploy_row **rows, size_t *n,
				 rein_err *err)
{
	const memdb *db = ((memstore *)be)->db;
	rein_deploy_row *v = db->ndeploys ? rein_calloc(db->ndeploys, sizeof *v) : NULL;
	size_t m = 0;
	if (db->ndeploys && v == NULL)
		return ms_oom(err);
	for (size_t i = 0; i < db->ndeploys; i++) {
		if (name && strcmp(db->deploys[i].name, name) != 0)
			continue;
		if (!ms_deploy_copy(&v[m], &db->deploys[i])) {
			rein_deploy_rows_free(v, m);
			return ms_oom(err);
		}
		m++;
	}
	*rows = v;
	*n = m;
	return REIN_OK;
}

static inline int ms_run_counts(void *be, const char *workflow, const char *version,
				int64_t since, int64_t until, rein_run_counts *c, rein_err *err)
{
	(void)err;
	const memdb *db = ((memstore *)be)->db;
	for (size_t i = 0; i < db->nruns; i++) {
		const rein_run_row *r = &db->runs[i].row;
		if (strcmp(r->workflow, workflow) == 0 && strcmp(r->version, version) == 0 &&
		    r->created_at >= since && (until == 0 || r->created_at < until) &&
		    r->status >= 0 && r->status < REIN_STORE_NSTATUS)
			c->n[r->status]++;
	}
	return REIN_OK;
}

static const rein_store_ops memstore_ops = {
	.close = ms_close,
	.begin = ms_begin,
	.commit = ms_commit,
	.rollback = ms_rollback,
	.spec_put = ms_spec_put,
	.spec_get = ms_spec_get,
	.run_insert = ms_run_insert,
	.run_update = ms_run_update,
	.run_get = ms_run_get,
	.run_list = ms_run_list,
	.lease_claim = ms_lease_claim,
	.claim_due = ms_claim_due,
	.event_append = ms_event_append,
	.events_load = ms_events_load,
	.inbox_put = ms_inbox_put,
	.inbox_list = ms_inbox_list,
	.inbox_drained = ms_inbox_drained,
	.check = ms_check,
	.anchor_last = ms_anchor_last,
	.anchor_append = ms_anchor_append,
	.anchors_load = ms_anchors_load,
	.kill_set = ms_kill_set,
	.kill_lift = ms_kill_lift,
	.kill_list = ms_kill_list,
	.kill_version = ms_kill_version,
	.purge = ms_purge,
	.call_note = ms_call_note,
	.call_counts = ms_call_counts,
	.deploy_add = ms_deploy_add,
	.deploy_end = ms_deploy_end,
	.deploy_list = ms_deploy_list,
	.run_counts = ms_run_counts,
};

/* A new handle on db (borrowed: it must outlive the store). */
static inline int memstore_open(memdb *db, rein_store **out, rein_err *err)
{
	memstore *m = rein_calloc(1, sizeof *m);
	if (m == NULL)
		return ms_oom(err);
	m->db = db;
	if (rein_store_wrap(&memstore_ops, m, out) != REIN_OK) {
		rein_free(m);
		return ms_oom(err);
	}
	return REIN_OK;
}

#endif
