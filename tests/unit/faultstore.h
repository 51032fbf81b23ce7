/*
 * A fault-injecting store backend (header-only, static): it wraps another
 * store and passes every operation through, except that the Nth call of a
 * chosen set of operations fails with REIN_EFAULT before reaching the inner
 * store (a failing commit rolls the inner transaction back, as a real failed
 * commit does). It replaces the write fault point the SQLite backend used to
 * carry, and works over any backend.
 */
#ifndef REIN_FAULTSTORE_H
#define REIN_FAULTSTORE_H

#include "store.h"

enum {
	FS_BEGIN = 1 << 0,
	FS_COMMIT = 1 << 1,
	FS_SPEC_PUT = 1 << 2,
	FS_RUN_INSERT = 1 << 3,
	FS_RUN_UPDATE = 1 << 4,
	FS_LEASE = 1 << 5,
	FS_CLAIM_DUE = 1 << 6,
	FS_EVENT_APPEND = 1 << 7,
	FS_INBOX_PUT = 1 << 8,
	FS_INBOX_DRAINED = 1 << 9,
	FS_SPEC_GET = 1 << 10,
	FS_RUN_GET = 1 << 11,
	FS_RUN_LIST = 1 << 12,
	FS_EVENTS_LOAD = 1 << 13,
	FS_INBOX_LIST = 1 << 14,
	FS_ANCHOR_APPEND = 1 << 15,
	FS_ANCHOR_READ = 1 << 16, /* anchor_last, anchors_load */
	/* what the SQLite backend's write fault point used to cover, and more */
	FS_WRITES = FS_COMMIT | FS_SPEC_PUT | FS_RUN_INSERT | FS_RUN_UPDATE | FS_LEASE |
		    FS_CLAIM_DUE | FS_EVENT_APPEND | FS_INBOX_PUT | FS_INBOX_DRAINED |
		    FS_ANCHOR_APPEND,
	FS_READS = FS_SPEC_GET | FS_RUN_GET | FS_RUN_LIST | FS_EVENTS_LOAD | FS_INBOX_LIST |
		   FS_ANCHOR_READ,
};

/* The knobs, shared by the test and every wrapper made with them. */
typedef struct fault_plan {
	unsigned mask; /* which operations count */
	long nth;      /* the nth counted call fails; 0: none */
	long calls;    /* counted calls since armed */
	long fired;    /* faults injected */
	long reentered; /* operations called while another one was still running */
} fault_plan;

static inline void fault_plan_arm(fault_plan *p, unsigned mask, long nth)
{
	p->mask = mask;
	p->nth = nth;
	p->calls = 0;
	p->fired = 0;
	p->reentered = 0;
}

typedef struct faultstore {
	rein_store *inner; /* owned */
	fault_plan *plan;  /* borrowed */
	int depth;         /* operations in progress (an events_load callback runs inside one) */
} faultstore;

static inline int fs_hit(faultstore *f, unsigned op, const char *name, rein_err *err)
{
	fault_plan *p = f->plan;
	if (!(p->mask & op))
		return REIN_OK;
	if (++p->calls != p->nth)
		return REIN_OK;
	p->fired++;
	return rein_err_set(err, REIN_EFAULT, "store: injected fault in %s", name);
}

#define FS_ARGS(be) faultstore *f = (be)
/* Counts the call, fails it if it is the chosen one, else passes it through
 * and notes a call made while another operation is still running. */
#define FS_CALL(op, name, call)                                   \
	do {                                                      \
		int rc_ = fs_hit(f, op, name, err);               \
		if (rc_ != REIN_OK)                               \
			return rc_;                               \
		f->plan->reentered += f->depth > 0;               \
		f->depth++;                                       \
		rc_ = call;                                       \
		f->depth--;                                       \
		return rc_;                                       \
	} while (0)

static inline void fs_close(void *be)
{
	FS_ARGS(be);
	rein_store_close(f->inner);
	rein_free(f);
}

static inline int fs_begin(void *be, rein_err *err)
{
	FS_ARGS(be);
	FS_CALL(FS_BEGIN, "begin", rein_store_begin(f->inner, err));
}

static inline int fs_commit(void *be, rein_err *err)
{
	FS_ARGS(be);
	int rc = fs_hit(f, FS_COMMIT, "commit", err);
	if (rc != REIN_OK) {
		rein_store_rollback(f->inner); /* a failed commit has rolled back */
		return rc;
	}
	return rein_store_commit(f->inner, err);
}

static inline void fs_rollback(void *be) { rein_store_rollback(((faultstore *)be)->inner); }

static inline int fs_spec_put(void *be, const char *v, const char *name, const char *bundle,
			      rein_err *err)
{
	FS_ARGS(be);
	FS_CALL(FS_SPEC_PUT, "spec put", rein_store_spec_put(f->inner, v, name, bundle, err));
}

static inline int fs_spec_get(void *be, const char *v, char **bundle, rein_err *err)
{
	FS_ARGS(be);
	FS_CALL(FS_SPEC_GET, "spec get", rein_store_spec_get(f->inner, v, bundle, err));
}

static inline int fs_run_insert(void *be, const rein_run_row *row, rein_err *err)
{
	FS_ARGS(be);
	FS_CALL(FS_RUN_INSERT, "run insert", rein_store_run_insert(f->inner, row, err));
}

static inline int fs_run_update(void *be, const rein_run_row *row, const char *owner, bool *mail,
				rein_err *err)
{
	FS_ARGS(be);
	FS_CALL(FS_RUN_UPDATE, "run update", rein_store_run_update(f->inner, row, owner, mail, err));
}

static inline int fs_run_get(void *be, const char *id, rein_run_row *row, rein_err *err)
{
	FS_ARGS(be);
	FS_CALL(FS_RUN_GET, "run get", rein_store_run_get(f->inner, id, row, err));
}

static inline int fs_run_list(void *be, const rein_run_query *q, rein_run_row **rows, size_t *n,
			      rein_err *err)
{
	FS_ARGS(be);
	FS_CALL(FS_RUN_LIST, "run list", rein_store_run_list(f->inner, q, rows, n, err));
}

static inline int fs_lease(void *be, const char *id, const char *expect, const char *owner,
			   int64_t expires, rein_err *err)
{
	FS_ARGS(be);
	FS_CALL(FS_LEASE, "lease claim", rein_store_lease_claim(f->inner, id, expect, owner, expires, err));
}

static inline int fs_claim_due(void *be, const rein_claim_req *req, rein_run_row **rows,
			       size_t *n, rein_err *err)
{
	FS_ARGS(be);
	FS_CALL(FS_CLAIM_DUE, "claim due", rein_store_claim_due(f->inner, req, rows, n, err));
}

static inline int fs_event_append(void *be, const rein_event_row *ev, rein_err *err)
{
	FS_ARGS(be);
	FS_CALL(FS_EVENT_APPEND, "event append", rein_store_event_append(f->inner, ev, err));
}

static inline int fs_events_load(void *be, const char *run_id, rein_event_cb cb, void *ud,
				 rein_err *err)
{
	FS_ARGS(be);
	FS_CALL(FS_EVENTS_LOAD, "events load", rein_store_events_load(f->inner, run_id, cb, ud, err));
}

static inline int fs_inbox_put(void *be, const rein_inbox_row *msg, bool *dup, rein_err *err)
{
	FS_ARGS(be);
	FS_CALL(FS_INBOX_PUT, "inbox put", rein_store_inbox_put(f->inner, msg, dup, err));
}

static inline int fs_inbox_list(void *be, const char *run_id, rein_inbox_row **out, size_t *n,
				rein_err *err)
{
	FS_ARGS(be);
	FS_CALL(FS_INBOX_LIST, "inbox list", rein_store_inbox_list(f->inner, run_id, out, n, err));
}

static inline int fs_inbox_drained(void *be, const char *run_id, int64_t upto, rein_err *err)
{
	FS_ARGS(be);
	FS_CALL(FS_INBOX_DRAINED, "inbox drained", rein_store_inbox_drained(f->inner, run_id, upto, err));
}

static inline int fs_check(void *be, rein_problem_cb cb, void *ud, int *n, rein_err *err)
{
	FS_ARGS(be);
	FS_CALL(0, "check", rein_store_check(f->inner, cb, ud, n, err));
}

static inline int fs_anchor_last(void *be, rein_anchor_row *a, bool *found, rein_err *err)
{
	FS_ARGS(be);
	FS_CALL(FS_ANCHOR_READ, "anchor last", rein_store_anchor_last(f->inner, a, found, err));
}

static inline int fs_anchor_append(void *be, const rein_anchor_row *a, rein_err *err)
{
	FS_ARGS(be);
	FS_CALL(FS_ANCHOR_APPEND, "anchor append", rein_store_anchor_append(f->inner, a, err));
}

static inline int fs_anchors_load(void *be, rein_anchor_cb cb, void *ud, rein_err *err)
{
	FS_ARGS(be);
	FS_CALL(FS_ANCHOR_READ, "anchors load", rein_store_anchors_load(f->inner, cb, ud, err));
}

/* The kill switch passes through (it is not counted). */
static inline int fs_kill_set(void *be, const rein_kill_row *k, int64_t *id, rein_err *err)
{
	FS_ARGS(be);
	FS_CALL(0, "kill set", rein_store_kill_set(f->inner, k, id, err));
}

static inline int fs_kill_lift(void *be, const rein_kill_row *sel, int *n, rein_err *err)
{
	FS_ARGS(be);
	FS_CALL(0, "kill lift", rein_store_kill_lift(f->inner, sel, n, err));
}

static inline int fs_kill_list(void *be, int64_t *version, rein_kill_row **rows, size_t *n,
			       rein_err *err)
{
	FS_ARGS(be);
	FS_CALL(0, "kill list", rein_store_kill_list(f->inner, version, rows, n, err));
}

static inline int fs_kill_version(void *be, int64_t *version, rein_err *err)
{
	FS_ARGS(be);
	FS_CALL(0, "kill version", rein_store_kill_version(f->inner, version, err));
}

static inline int fs_purge(void *be, int64_t before, bool dry_run, rein_purge_stats *st,
			   rein_err *err)
{
	FS_ARGS(be);
	FS_CALL(0, "purge", rein_store_purge(f->inner, before, dry_run, st, err));
}

static inline int fs_call_note(void *be, const rein_call_row *c, rein_err *err)
{
	FS_ARGS(be);
	FS_CALL(0, "call note", rein_store_call_note(f->inner, c, err));
}

static inline int fs_call_counts(void *be, const char *tenant, int64_t since,
				 rein_call_count **rows, size_t *n, rein_err *err)
{
	FS_ARGS(be);
	FS_CALL(0, "call counts", rein_store_call_counts(f->inner, tenant, since, rows, n, err));
}

/* Deployments pass through too (not counted). */
static inline int fs_deploy_add(void *be, const rein_deploy_row *d, int64_t *id, rein_err *err)
{
	FS_ARGS(be);
	FS_CALL(0, "deploy add", rein_store_deploy_add(f->inner, d, id, err));
}

static inline int fs_deploy_end(void *be, int64_t id, const char *state, const char *reason,
				int64_t at, rein_err *err)
{
	FS_ARGS(be);
	FS_CALL(0, "deploy end", rein_store_deploy_end(f->inner, id, state, reason, at, err));
}

static inline int fs_deploy_list(void *be, const char *name, rein_deploy_row **rows, size_t *n,
				 rein_err *err)
{
	FS_ARGS(be);
	FS_CALL(0, "deploy list", rein_store_deploy_list(f->inner, name, rows, n, err));
}

static inline int fs_run_counts(void *be, const char *workflow, const char *version,
				int64_t since, int64_t until, rein_run_counts *c, rein_err *err)
{
	FS_ARGS(be);
	FS_CALL(0, "run counts",
		rein_store_run_counts(f->inner, workflow, version, since, until, c, err));
}

static const rein_store_ops faultstore_ops = {
	.close = fs_close,
	.begin = fs_begin,
	.commit = fs_commit,
	.rollback = fs_rollback,
	.spec_put = fs_spec_put,
	.spec_get = fs_spec_get,
	.run_insert = fs_run_insert,
	.run_update = fs_run_update,
	.run_get = fs_run_get,
	.run_list = fs_run_list,
	.lease_claim = fs_lease,
	.claim_due = fs_claim_due,
	.event_append = fs_event_append,
	.events_load = fs_events_load,
	.inbox_put = fs_inbox_put,
	.inbox_list = fs_inbox_list,
	.inbox_drained = fs_inbox_drained,
	.check = fs_check,
	.anchor_last = fs_anchor_last,
	.anchor_append = fs_anchor_append,
	.anchors_load = fs_anchors_load,
	.kill_set = fs_kill_set,
	.kill_lift = fs_kill_lift,
	.kill_list = fs_kill_list,
	.kill_version = fs_kill_version,
	.purge = fs_purge,
	.call_note = fs_call_note,
	.call_counts = fs_call_counts,
	.deploy_add = fs_deploy_add,
	.deploy_end = fs_deploy_end,
	.deploy_list = fs_deploy_list,
	.run_counts = fs_run_counts,
};

/* Wraps inner (owned from now on, even on failure) with plan (borrowed). */
static inline int faultstore_wrap(rein_store *inner, fault_plan *plan, rein_store **out,
				  rein_err *err)
{
	faultstore *f = rein_calloc(1, sizeof *f);
	if (f == NULL) {
		rein_store_close(inner);
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	}
	f->inner = inner;
	f->plan = plan;
	if (rein_store_wrap(&faultstore_ops, f, out) != REIN_OK) {
		fs_close(f);
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	}
	return REIN_OK;
}

#endif
