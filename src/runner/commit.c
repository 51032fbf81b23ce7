/*
 * Group commit: what the runner appended becomes durable in batches, one
 * transaction each (many runs' events share it), made on the runner's thread
 * and executed there or on the commit thread, at most one in flight, while
 * the runner goes on advancing runs; the batch is completed (runs released,
 * on_commit told) on the runner's thread. See runner_int.h.
 */
#include "runner_int.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

/* Tells on_commit the events b made durable, in commit order. The rows
 * point into the runs, which the caller has not freed yet. */
static void committed(rein_runner *rn, const batch *b)
{
	for (size_t i = 0; i < b->nev; i++) /* a high-risk call's alert leaves now */
		if (b->ev[i].row.type[0] == 'a' && strcmp(b->ev[i].row.type, "approval.alert") == 0)
			runner_alerts_note(rn, &b->ev[i].row, 1);
	if (rn->o.on_commit == NULL || b->nev == 0)
		return;
	if (b->nev == 1) {
		rn->o.on_commit(rn->o.ud, &b->ev[0].row, 1);
		return;
	}
	/* pending rows sit apart: hand them over in runs of a chunk */
	rein_event_row chunk[64];
	size_t n = 0;
	for (size_t i = 0; i < b->nev; i++) {
		chunk[n++] = b->ev[i].row;
		if (n == 64 || i + 1 == b->nev) {
			rn->o.on_commit(rn->o.ud, chunk, n);
			n = 0;
		}
	}
}

static void batch_drop(batch *b)
{
	for (size_t i = 0; i < b->nev; i++)
		rein_free(b->ev[i].payload);
	b->nev = 0;
	for (size_t i = 0; i < b->nrows; i++) {
		rein_free(b->rows[i].row.output);
		rein_free(b->rows[i].row.reason);
	}
	b->nrows = 0;
	for (size_t i = 0; i < b->nspecs; i++)
		rein_free(b->specs[i].bundle);
	b->nspecs = 0;
}

static void batch_free(batch *b)
{
	batch_drop(b);
	rein_free(b->ev);
	rein_free(b->rows);
	rein_free(b->specs);
}

/* Waits for the batch in flight on the commit thread; returns it (or NULL). */
static batch *flush_wait(rein_runner *rn)
{
	batch *b = rn->fly;
	if (b == NULL)
		return NULL;
	pthread_mutex_lock(&rn->cm.mu);
	while (!rn->cm.done)
		pthread_cond_wait(&rn->cm.cv, &rn->cm.mu);
	pthread_mutex_unlock(&rn->cm.mu);
	rn->fly = NULL;
	return b;
}

/* What it appends meanwhile joins the next batch (group commit: the batch
 * grows while the disk is busy), up to 16 times max_batch. */
bool runner_fly_busy(rein_runner *rn)
{
	if (rn->fly == NULL || rn->nev >= 16 * rn->o.max_batch)
		return false;
	pthread_mutex_lock(&rn->cm.mu);
	bool busy = !rn->cm.done;
	pthread_mutex_unlock(&rn->cm.mu);
	return busy;
}

static bool spec_stored(rein_runner *rn, const char *version)
{
	for (size_t i = 0; i < rn->nstored; i++)
		if (strcmp(rn->stored[i], version) == 0)
			return true;
	return false;
}

/* Fills the run row for a's current state. */
static int row_for(rein_runner *rn, active *a, bool leaving, rein_run_row *row, int64_t t)
{
	memset(row, 0, sizeof *row);
	snprintf(row->id, sizeof row->id, "%s", a->id);
	row->workflow = a->spec->name;
	snprintf(row->version, sizeof row->version, "%s", a->spec->version);
	row->status = rein_run_status(a->run);
	row->created_at = a->created_at;
	row->updated_at = t;
	row->wake_at = rein_run_wake_at(a->run);
	row->lease_owner = leaving ? NULL : rn->owner;
	row->lease_expires = leaving ? 0 : t + rn->o.lease_ms;
	row->last_seq = a->seq;
	memcpy(row->last_hash, a->last_hash, REIN_HASH_LEN);
	const json_t *o = rein_run_output(a->run);
	if (o && (row->output = runner_protect_dump(a, o)) == NULL)
		return REIN_ENOMEM;
	row->reason = (char *)rein_run_reason(a->run);
	return REIN_OK;
}

/* Will a leave the runner at this flush? */
static bool leaving(rein_runner *rn, active *a, int64_t t)
{
	if (a->inflight > 0)
		return false;
	if (a->state == A_PARK_END || rn->stopped) /* stopped: every run is released */
		return true;
	if (a->state == A_PARK_WAIT)
		return a->wake_at - t > rn->o.max_wait_ms;
	return false;
}

/* Does a run need its row written in this batch? */
static bool row_due(rein_runner *rn, active *a, bool leave, int64_t t)
{
	return !a->inserted || a->seq != a->row_seq || leave || a->state == A_PARK_END ||
	       a->state == A_PARK_WAIT || a->lease_until - t <= rn->o.lease_ms / 2;
}

/*
 * Makes a batch of everything not yet durable: the pending events (moved, not
 * copied), the specs of new runs, and the row of every run that changed since
 * its row was last written (or whose lease is half gone).
 */
static int batch_make(rein_runner *rn, batch *b, int64_t t, rein_err *err)
{
	pending *ev = b->ev;
	size_t cap = b->evcap;
	b->ev = rn->ev;
	b->evcap = rn->evcap;
	b->nev = rn->nev;
	rn->ev = ev;
	rn->evcap = cap;
	rn->nev = 0;
	for (size_t i = 0; i < rn->n; i++) {
		active *a = rn->runs[i];
		/* a run with mail keeps its lease: it reads its inbox here */
		bool leave = leaving(rn, a, t) && !(a->mail && a->state == A_PARK_WAIT);
		if (!row_due(rn, a, leave, t))
			continue;
		if (!a->inserted && !spec_stored(rn, a->spec->version)) {
			if (runner_grow((void **)&b->specs, &b->specscap, b->nspecs + 1, sizeof *b->specs) !=
				    REIN_OK ||
			    runner_grow((void **)&rn->stored, &rn->storedcap, rn->nstored + 1,
				 sizeof *rn->stored) != REIN_OK)
				return rein_err_set(err, REIN_ENOMEM, "out of memory");
			struct bspec *sp = &b->specs[b->nspecs];
			if ((sp->bundle = rein_json_dump(a->spec->bundle)) == NULL)
				return rein_err_set(err, REIN_ENOMEM, "out of memory");
			snprintf(sp->version, sizeof sp->version, "%s", a->spec->version);
			sp->name = a->spec->name;
			b->nspecs++;
			snprintf(rn->stored[rn->nstored++], 65, "%s", a->spec->version);
		}
		if (runner_grow((void **)&b->rows, &b->rowcap, b->nrows + 1, sizeof *b->rows) != REIN_OK)
			return rein_err_set(err, REIN_ENOMEM, "out of memory");
		brow *r = &b->rows[b->nrows];
		if (row_for(rn, a, leave, &r->row, t) != REIN_OK)
			return rein_err_set(err, REIN_ENOMEM, "out of memory");
		if ((r->row.reason && (r->row.reason = rein_strdup(r->row.reason)) == NULL) ||
		    runner_protect_reason(a, &r->row.reason) != REIN_OK) {
			rein_free(r->row.reason);
			rein_free(r->row.output);
			return rein_err_set(err, REIN_ENOMEM, "out of memory");
		}
		b->nrows++;
		r->a = a;
		r->insert = !a->inserted;
		r->leaving = leave;
		r->state = a->state;
		r->mail = false;
		r->drain_upto = a->drained > a->drained_row ? a->drained : 0;
		a->drained_row = a->drained;
		a->inserted = true;
		a->row_seq = a->seq;
		a->lease_until = leave ? 0 : t + rn->o.lease_ms;
	}
	return REIN_OK;
}

/* One transaction: specs, new runs, events, then the other rows. Touches only
 * the batch and the store, so it may run on the commit thread. */
static int batch_execute(rein_store *st, batch *b, const char *owner, rein_err *err)
{
	int rc = rein_store_begin(st, err);
	if (rc != REIN_OK)
		return rc;
	for (size_t i = 0; i < b->nspecs && rc == REIN_OK; i++)
		rc = rein_store_spec_put(st, b->specs[i].version, b->specs[i].name, b->specs[i].bundle,
					 err);
	for (size_t i = 0; i < b->nrows && rc == REIN_OK; i++)
		if (b->rows[i].insert)
			rc = rein_store_run_insert(st, &b->rows[i].row, err);
	for (size_t i = 0; i < b->nev && rc == REIN_OK; i++)
		rc = rein_store_event_append(st, &b->ev[i].row, err);
	/* each tool call is noted for its tenant's per-tenant limits in the
	 * same transaction as its intent */
	for (size_t i = 0; i < b->nev && rc == REIN_OK; i++)
		rc = runner_note_call(st, &b->ev[i], err);
	/* inbox entries recorded in the log leave the inbox in the same
	 * transaction as their events: drained exactly once */
	for (size_t i = 0; i < b->nrows && rc == REIN_OK; i++)
		if (b->rows[i].drain_upto > 0)
			rc = rein_store_inbox_drained(st, b->rows[i].row.id, b->rows[i].drain_upto, err);
	for (size_t i = 0; i < b->nrows && rc == REIN_OK; i++)
		if (!b->rows[i].insert)
			rc = rein_store_run_update(st, &b->rows[i].row, owner, &b->rows[i].mail, err);
	/* a run that ends or suspends (its row gives the lease up) anchors its
	 * head in the global chain, in the same transaction as its events */
	for (size_t i = 0; i < b->nrows && rc == REIN_OK; i++)
		if (b->rows[i].leaving && b->rows[i].row.last_seq > 0)
			rc = rein_store_anchor(st, b->rows[i].row.id, b->rows[i].row.last_seq,
					       b->rows[i].row.last_hash, NULL, err);
	if (rc != REIN_OK) {
		rein_store_rollback(st);
		return rc;
	}
	return rein_store_commit(st, err);
}

/* After the batch's transaction: release the runs that left, wake the ones
 * that wait a short while. On failure, forget everything held: memory is
 * ahead of the store, and the store is the truth. */
static int batch_complete(rein_runner *rn, batch *b, rein_err *err)
{
	int rc = b->rc;
	if (rc != REIN_OK) {
		rein_err_set(err, rc, "%s", b->err.msg);
		batch_drop(b);
		rn->nstored = 0; /* the specs may have been rolled back */
		runner_drop_all(rn);
		return rc;
	}
	committed(rn, b);
	bool gone = false;
	for (size_t i = 0; i < b->nrows; i++) {
		brow *r = &b->rows[i];
		active *a = r->a;
		if (r->mail && rein_run_status(a->run) < REIN_RUN_SUCCEEDED)
			a->mail = true;
		if (r->leaving && a->mail && a->state == A_PARK_WAIT && !rn->stopped) {
			/* mail came back with the row that gave the lease up: take
			 * it again and read the inbox here (if nobody took it) */
			rein_err e = {0};
			int64_t t = runner_now(rn);
			if (rein_store_lease_claim(rn->st, a->id, NULL, rn->owner, t + rn->o.lease_ms,
						   &e) == REIN_OK) {
				a->lease_until = t + rn->o.lease_ms;
				a->state = A_RUN;
				continue;
			}
		}
		if (r->leaving) {
			if (runner_push_result(rn, a) != REIN_OK) {
				/* the store is fine; keep the run held */
				rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
				continue;
			}
			a->gone = gone = true;
		} else if (r->state == A_PARK_WAIT && a->state == A_PARK_WAIT) {
			a->state = a->mail ? A_RUN : A_SLEEP;
		}
	}
	batch_drop(b);
	if (gone) {
		size_t keep = 0;
		for (size_t i = 0; i < rn->n; i++) {
			if (rn->runs[i]->gone)
				runner_active_free(rn->runs[i]);
			else
				rn->runs[keep++] = rn->runs[i];
		}
		rn->n = keep;
	}
	return rc;
}

static void *committer_main(void *ud)
{
	rein_runner *rn = ud;
	struct committer *c = &rn->cm;
	pthread_mutex_lock(&c->mu);
	for (;;) {
		while (c->job == NULL && !c->stop)
			pthread_cond_wait(&c->cv, &c->mu);
		batch *b = c->job;
		if (b == NULL)
			break;
		pthread_mutex_unlock(&c->mu);
		b->rc = batch_execute(rn->st, b, rn->owner, &b->err);
		pthread_mutex_lock(&c->mu);
		c->job = NULL;
		c->done = true;
		pthread_cond_broadcast(&c->cv);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

/* Starts the commit thread once; false when it cannot run (then commit here). */
static bool committer_ready(rein_runner *rn)
{
	struct committer *c = &rn->cm;
	if (c->started)
		return true;
	if (pthread_mutex_init(&c->mu, NULL) != 0)
		return false;
	if (pthread_cond_init(&c->cv, NULL) != 0) {
		pthread_mutex_destroy(&c->mu);
		return false;
	}
	if (pthread_create(&c->th, NULL, committer_main, rn) != 0) {
		pthread_cond_destroy(&c->cv);
		pthread_mutex_destroy(&c->mu);
		return false;
	}
	c->started = true;
	return true;
}

int runner_flush(rein_runner *rn, bool async, rein_err *err)
{
	int rc = REIN_OK;
	batch *done = flush_wait(rn);
	if (done && (rc = batch_complete(rn, done, err)) != REIN_OK)
		return rc;
	int64_t t = runner_now(rn);
	bool dirty = rn->nev > 0 || (rn->stopped && rn->n > 0); /* stopped: release all */
	for (size_t i = 0; i < rn->n && !dirty; i++) {
		const active *a = rn->runs[i];
		dirty = a->state == A_PARK_END || a->state == A_PARK_WAIT ||
			(a->inserted && a->lease_until - t <= rn->o.lease_ms / 2); /* renew */
	}
	if (!dirty)
		return REIN_OK;
	rn->cur ^= 1;
	batch *b = &rn->bt[rn->cur];
	if ((rc = batch_make(rn, b, t, err)) != REIN_OK) {
		batch_drop(b);
		rn->nstored = 0; /* specs marked stored by this batch were not */
		runner_drop_all(rn);
		return rc;
	}
	if (async && rn->o.commit_thread && committer_ready(rn)) {
		pthread_mutex_lock(&rn->cm.mu);
		rn->cm.job = b;
		rn->cm.done = false;
		pthread_cond_broadcast(&rn->cm.cv);
		pthread_mutex_unlock(&rn->cm.mu);
		rn->fly = b;
		return REIN_OK;
	}
	b->rc = batch_execute(rn->st, b, rn->owner, &b->err);
	/* what a commit costs, for the adaptive barrier (runner_barrier_ms) */
	int64_t took = runner_now(rn) - t;
	rn->commit_ms = rn->commit_ms ? (3 * rn->commit_ms + took + 3) / 4 : took + 1;
	return batch_complete(rn, b, err);
}

int64_t runner_barrier_ms(const rein_runner *rn)
{
	return rn->commit_ms > RUNNER_BARRIER_MIN_MS ? rn->commit_ms : RUNNER_BARRIER_MIN_MS;
}

int rein_runner_flush(rein_runner *rn, rein_err *err) { return runner_flush(rn, false, err); }

void runner_commit_settle(rein_runner *rn)
{
	batch *f = flush_wait(rn);
	if (f == NULL)
		return;
	if (f->rc == REIN_OK)
		committed(rn, f); /* durable, even though the runner drops it all */
	batch_drop(f);
}

void runner_commit_free(rein_runner *rn)
{
	if (rn->cm.started) {
		pthread_mutex_lock(&rn->cm.mu);
		rn->cm.stop = true;
		pthread_cond_broadcast(&rn->cm.cv);
		pthread_mutex_unlock(&rn->cm.mu);
		pthread_join(rn->cm.th, NULL);
		pthread_mutex_destroy(&rn->cm.mu);
		pthread_cond_destroy(&rn->cm.cv);
	}
	batch_free(&rn->bt[0]);
	batch_free(&rn->bt[1]);
}
