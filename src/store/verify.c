/*
 * store audit: checks the store as a whole (rein_store_check), then the
 * global anchor chain, then recomputes the hash chain of every run, with the
 * heads anchored for it. The runs are listed first, then the anchors are
 * read, and the runs verified after both listings have ended, so a backend
 * need not reenter while a cursor is open.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "store_int.h"

typedef struct run_ent {
	char id[64];
	int64_t last_seq;
	bool released; /* the row gave its lease up: the run ended or suspended */
	size_t ref0, nref; /* its anchors in the sorted refs */
} run_ent;

typedef struct anchored {
	size_t run; /* index into the runs */
	store_anchor_ref ref;
} anchored;

typedef struct audit {
	run_ent *v;
	size_t n, cap;
	int64_t events;
	bool nomem;
	/* the anchors */
	anchored *a;
	size_t na, acap;
	int64_t expect;          /* the next anchor seq */
	uint8_t prev[REIN_HASH_LEN];
	bool chain_broken;       /* the first break was reported */
	bool one;                /* one run only: anchors of other runs are skipped */
	int problems;
	rein_verify_cb cb;
	void *ud;
} audit;

static int collect_run(void *ud, const rein_run_row *row)
{
	audit *l = ud;
	int rc = 0;
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 64;
		void *p = rein_realloc(l->v, cap * sizeof *l->v);
		if (p == NULL) {
			l->nomem = true;
			rc = 1; /* stop the listing */
			goto out;
		}
		l->v = p;
		l->cap = cap;
	}
	run_ent *e = &l->v[l->n++];
	memset(e, 0, sizeof *e);
	snprintf(e->id, sizeof e->id, "%s", row->id);
	e->last_seq = row->last_seq;
	e->released = row->lease_owner == NULL;
	l->events += row->last_seq;
out:
	return rc;
}

static int cmp_run(const void *x, const void *y)
{
	return strcmp(((const run_ent *)x)->id, ((const run_ent *)y)->id);
}

static int cmp_anchored(const void *x, const void *y)
{
	const anchored *p = x, *q = y;
	if (p->run != q->run)
		return p->run < q->run ? -1 : 1;
	if (p->ref.run_seq != q->ref.run_seq)
		return p->ref.run_seq < q->ref.run_seq ? -1 : 1;
	return p->ref.anchor < q->ref.anchor ? -1 : p->ref.anchor > q->ref.anchor;
}

static void report(audit *l, const char *run, int64_t seq, const char *why)
{
	l->problems++;
	if (l->cb)
		l->cb(l->ud, run, seq, why);
}

/* One anchor: its link and hash, then where its run is. */
static int take_anchor(void *ud, const rein_anchor_row *an)
{
	audit *l = ud;
	uint8_t h[REIN_HASH_LEN];
	char why[300];
	const char *broke = NULL;
	if (an->seq != l->expect)
		broke = an->seq > l->expect ? "anchors are missing before it" : "its seq is out of order";
	else if (memcmp(an->prev_hash, l->prev, REIN_HASH_LEN) != 0)
		broke = "prev_hash does not link to the anchor before it";
	rein_anchor_hash(an, h);
	if (broke == NULL && memcmp(h, an->hash, REIN_HASH_LEN) != 0)
		broke = "its hash does not match its fields";
	if (broke && !l->chain_broken) {
		l->chain_broken = true;
		snprintf(why, sizeof why, "anchor %lld (run %.64s, seq %lld): %s", (long long)an->seq,
			 an->run_id, (long long)an->run_last_seq, broke);
		report(l, NULL, 0, why);
	}
	l->expect = an->seq + 1;
	memcpy(l->prev, an->hash, REIN_HASH_LEN);
	run_ent key;
	snprintf(key.id, sizeof key.id, "%s", an->run_id);
	run_ent *r = bsearch(&key, l->v, l->n, sizeof *l->v, cmp_run);
	if (r == NULL) {
		if (!l->one) {
			snprintf(why, sizeof why,
				 "anchor %lld: run %.64s (anchored at seq %lld) is not in the store "
				 "(the run was deleted)",
				 (long long)an->seq, an->run_id, (long long)an->run_last_seq);
			report(l, NULL, 0, why);
		}
		return 0;
	}
	if (l->na == l->acap) {
		size_t cap = l->acap ? 2 * l->acap : 64;
		void *p = rein_realloc(l->a, cap * sizeof *l->a);
		if (p == NULL) {
			l->nomem = true;
			return 1;
		}
		l->a = p;
		l->acap = cap;
	}
	anchored *x = &l->a[l->na++];
	x->run = (size_t)(r - l->v);
	x->ref.anchor = an->seq;
	x->ref.run_seq = an->run_last_seq;
	memcpy(x->ref.head, an->run_head_hash, REIN_HASH_LEN);
	return 0;
}

/* The runs' chains with their anchored heads, and the heads not anchored. */
static void verify_runs(rein_store *s, audit *l, store_anchor_ref *refs, rein_verify_stats *st)
{
	for (size_t i = 0; i < l->n; i++) {
		run_ent *r = &l->v[i];
		rein_err e = {0};
		int64_t bad = 0;
		st->runs++;
		if (store_verify_run_refs(s, r->id, refs + r->ref0, r->nref, &bad, &e) != REIN_OK) {
			st->bad++;
			if (l->cb)
				l->cb(l->ud, r->id, bad, e.msg);
		} else if (r->released && r->last_seq > 0 &&
			   (r->nref == 0 || refs[r->ref0 + r->nref - 1].run_seq < r->last_seq)) {
			char why[200];
			snprintf(why, sizeof why,
				 "anchor missing: the run gave its lease up at seq %lld (it ended or "
				 "suspended) but that head is not anchored (%s)",
				 (long long)r->last_seq,
				 r->nref ? "its anchors stop before it" : "the run has no anchor");
			st->bad++;
			if (l->cb)
				l->cb(l->ud, r->id, r->last_seq, why);
		}
		rein_err_clear(&e);
	}
}

static int audit_store(rein_store *s, const char *only, rein_verify_cb cb, void *ud,
		       rein_verify_stats *stats, rein_err *err)
{
	assert(s != NULL && stats != NULL);
	audit l = {.expect = 1, .cb = cb, .ud = ud, .one = only != NULL};
	store_anchor_ref *refs = NULL;
	rein_verify_stats st = {0};
	int rc = REIN_OK;
	if (only) {
		rein_run_row row = {0};
		if ((rc = rein_store_run_get(s, only, &row, err)) != REIN_OK)
			goto out;
		rc = collect_run(&l, &row) == 0 ? REIN_OK : REIN_ENOMEM;
		rein_run_row_clear(&row);
	} else {
		rc = rein_store_run_each(s, -1, collect_run, &l, err);
	}
	if (rc != REIN_OK || l.nomem) {
		if (rc == REIN_OK || rc == REIN_ENOMEM)
			rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	st.events = l.events;
	if (l.n > 1)
		qsort(l.v, l.n, sizeof *l.v, cmp_run);
	if ((rc = rein_store_anchors_load(s, take_anchor, &l, err)) != REIN_OK)
		goto out;
	if (l.nomem) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	st.anchors = l.expect - 1;
	memcpy(st.anchor_head, l.prev, REIN_HASH_LEN);
	if (l.na > 1)
		qsort(l.a, l.na, sizeof *l.a, cmp_anchored);
	if (l.na && (refs = rein_calloc(l.na, sizeof *refs)) == NULL) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < l.na; i++) {
		run_ent *r = &l.v[l.a[i].run];
		if (r->nref++ == 0)
			r->ref0 = i;
		refs[i] = l.a[i].ref;
		if (only && l.a[i].ref.anchor > st.run_anchor) {
			st.run_anchor = l.a[i].ref.anchor;
			st.run_anchor_seq = l.a[i].ref.run_seq;
		}
	}
	st.anchor_problems = l.problems;
	verify_runs(s, &l, refs, &st);
	*stats = st;
out:
	rein_free(refs);
	rein_free(l.a);
	rein_free(l.v);
	return rc;
}

typedef struct problem_fwd {
	rein_verify_cb cb;
	void *ud;
} problem_fwd;

static void forward_problem(void *ud, const char *problem)
{
	problem_fwd *f = ud;
	if (f->cb)
		f->cb(f->ud, NULL, 0, problem);
}

int rein_store_verify_all(rein_store *s, rein_verify_cb cb, void *ud, rein_verify_stats *stats,
			  rein_err *err)
{
	assert(s != NULL && stats != NULL);
	problem_fwd fwd = {cb, ud};
	int problems = 0;
	int rc = rein_store_check(s, forward_problem, &fwd, &problems, err);
	if (rc == REIN_OK && (rc = audit_store(s, NULL, cb, ud, stats, err)) == REIN_OK)
		stats->store_problems = problems;
	return rc;
}

int rein_store_verify_one(rein_store *s, const char *run_id, rein_verify_cb cb, void *ud,
			  rein_verify_stats *stats, rein_err *err)
{
	assert(run_id != NULL);
	return audit_store(s, run_id, cb, ud, stats, err);
}
