/*
 * store audit: checks the store as a whole (rein_store_check), then
 * recomputes the hash chain of every run. The ids are listed
 * first and verified after the listing has ended, so a backend need not
 * reenter while a cursor is open.
 */
#include <assert.h>
#include <string.h>

#include "store.h"

typedef struct id_list {
	char (*v)[64];
	size_t n, cap;
	int64_t events;
	bool nomem;
} id_list;

static int collect_id(void *ud, const rein_run_row *row)
{
	id_list *l = ud;
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
	memcpy(l->v[l->n++], row->id, sizeof row->id);
	l->v[l->n - 1][63] = '\0';
	l->events += row->last_seq;
out:
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
	id_list l = {0};
	rein_verify_stats st = {0};
	problem_fwd fwd = {cb, ud};
	int rc = rein_store_check(s, forward_problem, &fwd, &st.store_problems, err);
	if (rc != REIN_OK)
		goto out;
	rc = rein_store_run_each(s, -1, collect_id, &l, err);
	if (rc != REIN_OK)
		goto out;
	if (l.nomem) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	st.events = l.events;
	for (size_t i = 0; i < l.n; i++) {
		rein_err e = {0};
		int64_t bad = 0;
		st.runs++;
		if (rein_store_verify_run(s, l.v[i], &bad, &e) != REIN_OK) {
			st.bad++;
			if (cb)
				cb(ud, l.v[i], bad, e.msg);
		}
	}
	*stats = st;
out:
	rein_free(l.v);
	return rc;
}
