/*
 * The runner: commands → actions, leases, and group commit. See runner.h.
 */
#include "runner.h"

#include "model.h"
#include "tools.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { A_RUN = 1, A_PARK_END, A_PARK_WAIT, A_SLEEP, A_BUSY };

/* One tool attempt in flight, owned by the io callback. When the run is
 * dropped first, the ticket is marked dead and the callback only frees it. */
typedef struct ticket {
	struct rein_runner *rn;
	struct active *a;
	int step;
	int attempt;
	bool dead;
	const char *provider; /* model calls: the provider's type (static) */
	bool unnamed;         /* model calls: the tier named no model */
	rein_model_provider *mp; /* model calls: for the breaker */
	struct ticket *next;
} ticket;

typedef struct active {
	rein_run *run;
	const rein_spec *spec;
	char id[64];
	int64_t seq;
	uint8_t last_hash[REIN_HASH_LEN];
	int64_t created_at;
	int state;
	int64_t wake_at;
	bool inserted; /* the row exists in the store (or is on its way there) */
	bool gone;     /* released: freed once the batch is compacted */
	int64_t row_seq;     /* last_seq of the row last written */
	int64_t lease_until; /* lease expiry in the row last written */
	bool cancel;
	int inflight;     /* tool attempts out */
	ticket *tickets;
} active;

typedef struct dispatch {
	active *a;
	int step;
} dispatch;

typedef struct pending {
	active *a;
	rein_event_row row;
	char *payload;
} pending;

/* A run's row in a batch, as the run was when the batch was made. */
typedef struct brow {
	active *a;
	rein_run_row row; /* output and reason owned */
	bool insert;      /* a new run: INSERT, else UPDATE under our lease */
	bool leaving;     /* the row releases the lease: the run leaves at completion */
	int state;        /* a->state when the batch was made */
	bool cancel;      /* out: a cancel was requested meanwhile */
} brow;

/* One transaction's worth: made on the runner's thread, executed there or on
 * the commit thread, completed on the runner's thread. */
typedef struct batch {
	pending *ev;
	size_t nev, evcap;
	brow *rows;
	size_t nrows, rowcap;
	struct bspec {
		char version[65];
		const char *name;
		char *bundle;
	} *specs;
	size_t nspecs, specscap;
	int rc; /* out */
	rein_err err;
} batch;

struct rein_runner {
	rein_store *st;
	rein_script *sb;
	rein_runner_opts o;
	char owner[160];
	active **runs;
	size_t n, cap;
	pending *ev;
	size_t nev, evcap;
	rein_spec **owned; /* specs rebuilt from bundles */
	size_t nowned, ownedcap;
	char (*stored)[65]; /* versions written to the store by this runner */
	size_t nstored, storedcap;
	rein_run_result *res;
	size_t nres, rescap, reshead;
	bool crashed;
	rein_io *io; /* created on the first tool call */
	int cb_rc;   /* an error inside an io callback, reported by drive */
	rein_err cb_err;
	rein_tools *tx;
	dispatch *dq; /* tool attempts waiting for the barrier */
	size_t ndq, dqcap;
	/* model providers, one per (workflow version, tier), built on first use */
	struct provider_slot {
		char key[160];
		rein_model_provider *p;
		/* the provider's circuit breaker: 5 transient failures in a row open
		 * it for 30 s, then one probe call decides */
		int fails;
		bool open, probing;
		int64_t opened_at;
	} *providers;
	size_t nproviders;
	json_t *model_cache; /* request hash → response, for tiers with cache: true */
	json_t *recording;   /* REIN_RECORD: every exchange, written as a replay file */
	size_t model_inflight;
	/* group commit: two batches, at most one in flight on the commit thread */
	batch bt[2];
	int cur;          /* the batch made last */
	batch *fly;       /* in flight, or NULL */
	struct committer {
		pthread_t th;
		pthread_mutex_t mu;
		pthread_cond_t cv;
		batch *job; /* to execute; NULL when idle */
		bool done, stop, started;
	} cm;
};

void rein_run_result_clear(rein_run_result *r)
{
	json_decref(r->output);
	rein_free(r->reason);
	memset(r, 0, sizeof *r);
}

static int64_t now(rein_runner *rn) { return rein_clock_now(rn->o.clock); }

static void sys_sleep(void *ud, int64_t ms)
{
	(void)ud;
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* /proc/PID/stat field 22: the start time, so a reused pid is not mistaken. */
static long long proc_start(long pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%ld/stat", pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return -1;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	if (p == NULL)
		return -1;
	/* after ") " come fields 3.. ; starttime is field 22 */
	long long v = -1;
	int field = 2;
	for (char *tok = strtok(p + 1, " "); tok; tok = strtok(NULL, " "))
		if (++field == 22) {
			v = atoll(tok);
			break;
		}
	return v;
}

static void host_name(char *out, size_t n)
{
	if (gethostname(out, n) != 0)
		snprintf(out, n, "localhost");
	out[n - 1] = '\0';
	for (char *p = out; *p; p++)
		if (*p == '/')
			*p = '_';
}

bool rein_owner_alive(const char *owner)
{
	char host[128], mine[128];
	long pid;
	long long start;
	if (owner == NULL || sscanf(owner, "%127[^/]/%ld/%lld", host, &pid, &start) != 3)
		return false;
	host_name(mine, sizeof mine);
	if (strcmp(host, mine) != 0)
		return true; /* another host: only the lease expiry can tell */
	return proc_start(pid) == start;
}

int rein_runner_new(rein_store *store, rein_script *sandbox, const rein_runner_opts *opts,
		    rein_runner **out, rein_err *err)
{
	rein_runner *rn = rein_calloc(1, sizeof *rn);
	if (rn == NULL)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	rn->st = store;
	rn->sb = sandbox;
	if (opts)
		rn->o = *opts;
	if (rn->o.clock == NULL)
		rn->o.clock = &rein_clock_system;
	if (rn->o.lease_ms <= 0)
		rn->o.lease_ms = 60000;
	if (rn->o.max_batch == 0) /* small batches overlap with the commit thread */
		rn->o.max_batch = rn->o.commit_thread ? 1024 : 50000;
	if (rn->o.sleep_ms == NULL)
		rn->o.sleep_ms = sys_sleep;
	char host[128];
	host_name(host, sizeof host);
	snprintf(rn->owner, sizeof rn->owner, "%s/%ld/%lld", host, (long)getpid(),
		 proc_start((long)getpid()));
	*out = rn;
	return REIN_OK;
}

static void active_free(active *a)
{
	if (a) {
		for (ticket *t = a->tickets; t; t = t->next)
			t->dead = true;
		rein_run_free(a->run);
		rein_free(a);
	}
}

static void drop_pending(rein_runner *rn)
{
	for (size_t i = 0; i < rn->nev; i++)
		rein_free(rn->ev[i].payload);
	rn->nev = 0;
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

/*
 * Is a batch still being committed, and may the runner go on without
 * waiting? Then what it appends meanwhile joins the next batch (group commit:
 * the batch grows while the disk is busy), up to 16 times max_batch.
 */
static bool fly_busy(rein_runner *rn)
{
	if (rn->fly == NULL || rn->nev >= 16 * rn->o.max_batch)
		return false;
	pthread_mutex_lock(&rn->cm.mu);
	bool busy = !rn->cm.done;
	pthread_mutex_unlock(&rn->cm.mu);
	return busy;
}

static void drop_all(rein_runner *rn)
{
	batch *f = flush_wait(rn); /* its outcome no longer matters */
	if (f)
		batch_drop(f);
	drop_pending(rn);
	rn->ndq = 0;
	for (size_t i = 0; i < rn->n; i++)
		active_free(rn->runs[i]);
	rn->n = 0;
}

void rein_runner_free(rein_runner *rn)
{
	if (rn == NULL)
		return;
	drop_all(rn);
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
	rein_tools_shutdown(rn->tx); /* MCP servers close while the loop still runs */
	/* model calls still out report cancelled to dead tickets inside io_free */
	rein_io_free(rn->io);        /* cancels calls still out: their tickets are dead */
	rein_tools_free(rn->tx);
	if (rn->recording && getenv("REIN_RECORD")) {
		/* merge with what the file already holds: several runs, one replay file */
		const char *path = getenv("REIN_RECORD");
		json_t *old = json_load_file(path, 0, NULL);
		if (json_is_object(old)) {
			json_t *seq = json_object_get(old, "$sequence");
			json_array_extend(seq, json_object_get(rn->recording, "$sequence"));
			json_object_update_missing(rn->recording, old);
			json_object_set(rn->recording, "$sequence", seq);
		}
		json_decref(old);
		json_dump_file(rn->recording, path, JSON_INDENT(2) | JSON_SORT_KEYS);
	}
	for (size_t i = 0; i < rn->nproviders; i++)
		rein_model_provider_free(rn->providers[i].p);
	rein_free(rn->providers);
	json_decref(rn->model_cache);
	json_decref(rn->recording);
	rein_free(rn->dq);
	rein_free(rn->ev);
	rein_free(rn->runs);
	for (size_t i = 0; i < rn->nowned; i++)
		rein_spec_free(rn->owned[i]);
	rein_free(rn->owned);
	rein_free(rn->stored);
	for (size_t i = rn->reshead; i < rn->nres; i++)
		rein_run_result_clear(&rn->res[i]);
	rein_free(rn->res);
	rein_free(rn);
}

const char *rein_runner_owner(const rein_runner *rn) { return rn->owner; }
size_t rein_runner_active(const rein_runner *rn) { return rn->n; }

static int grow(void **v, size_t *cap, size_t need, size_t size)
{
	if (need <= *cap)
		return REIN_OK;
	size_t c = *cap ? *cap * 2 : 16;
	while (c < need)
		c *= 2;
	void *p = rein_realloc(*v, c * size);
	if (p == NULL)
		return REIN_ENOMEM;
	*v = p;
	*cap = c;
	return REIN_OK;
}

static int push_result(rein_runner *rn, active *a)
{
	if (grow((void **)&rn->res, &rn->rescap, rn->nres + 1, sizeof *rn->res) != REIN_OK)
		return REIN_ENOMEM;
	rein_run_result *r = &rn->res[rn->nres];
	memset(r, 0, sizeof *r);
	snprintf(r->id, sizeof r->id, "%s", a->id);
	r->status = rein_run_status(a->run);
	const json_t *o = rein_run_output(a->run);
	r->output = o ? json_incref((json_t *)o) : NULL;
	const char *why = rein_run_reason(a->run);
	r->reason = why ? rein_strdup(why) : NULL;
	r->wake_at = rein_run_wake_at(a->run);
	rn->nres++;
	return REIN_OK;
}

bool rein_runner_result(rein_runner *rn, rein_run_result *res)
{
	if (rn->reshead >= rn->nres)
		return false;
	*res = rn->res[rn->reshead++];
	if (rn->reshead == rn->nres)
		rn->reshead = rn->nres = 0;
	return true;
}

/* Appends an event to the run's log (in the pending batch), then applies it. */
static int append_at(rein_runner *rn, active *a, const char *type, int step,
		     const json_t *data, int64_t at, rein_err *err)
{
	int rc;
	char *payload = rein_json_dump(data);
	if (payload == NULL ||
	    grow((void **)&rn->ev, &rn->evcap, rn->nev + 1, sizeof *rn->ev) != REIN_OK) {
		rein_free(payload);
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	}
	pending *p = &rn->ev[rn->nev++];
	p->a = a;
	p->payload = payload;
	p->row = (rein_event_row){
		.run_id = a->id,
		.seq = a->seq + 1,
		.type = type,
		.step = step >= 0 ? a->spec->steps[step].name : NULL,
		.at = at,
		.payload = payload,
	};
	memcpy(p->row.prev_hash, a->last_hash, REIN_HASH_LEN);
	rein_event_hash(&p->row);
	a->seq++;
	memcpy(a->last_hash, p->row.hash, REIN_HASH_LEN);
	if (rn->o.on_event)
		rn->o.on_event(rn->o.ud, &p->row);
	if (rn->o.crash_point && rn->o.crash_point(rn->o.ud, &p->row)) {
		rn->crashed = true;
		return rein_err_set(err, REIN_EFAULT, "simulated crash after %s seq %lld", type,
				    (long long)p->row.seq);
	}
	rc = rein_run_apply(a->run, type, p->row.step, p->row.at, data, err);
	return rc;
}

/* Appends an event stamped with the time it is appended. */
static int append(rein_runner *rn, active *a, const char *type, int step, const json_t *data,
		  rein_err *err)
{
	return append_at(rn, a, type, step, data, now(rn), err);
}

static int add_active(rein_runner *rn, active *a)
{
	if (grow((void **)&rn->runs, &rn->cap, rn->n + 1, sizeof *rn->runs) != REIN_OK)
		return REIN_ENOMEM;
	rn->runs[rn->n++] = a;
	return REIN_OK;
}

int rein_runner_start(rein_runner *rn, const rein_spec *spec, const json_t *input, const char *id,
		      char id_out[64], rein_err *err)
{
	int rc = REIN_OK;
	active *a = NULL;
	json_t *data = NULL;
	if (spec->input_schema) {
		rein_schema_errors errs = {0};
		if (!rein_schema_validate(spec->input_schema, input, &errs)) {
			char *detail = rein_schema_errors_format(&errs);
			rc = rein_err_set(err, REIN_ESCHEMA, "input does not match the input schema: %s",
					  detail ? detail : "");
			rein_free(detail);
			rein_schema_errors_free(&errs);
			return rc;
		}
	}
	if ((a = rein_calloc(1, sizeof *a)) == NULL)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	if (id)
		snprintf(a->id, sizeof a->id, "%s", id);
	else if ((rc = rein_random_id("run_", a->id, sizeof a->id)) != REIN_OK) {
		rein_err_set(err, rc, "cannot make a run id");
		goto fail;
	}
	a->spec = spec;
	a->state = A_RUN;
	a->created_at = now(rn);
	rein_event_genesis(a->id, a->last_hash);
	if ((rc = rein_run_new(spec, rn->sb, a->id, &a->run)) != REIN_OK) {
		rein_err_set(err, rc, "out of memory");
		goto fail;
	}
	/* (not json_pack: it parses its format each time, and starts are hot) */
	data = json_object();
	if (data && (json_object_set_new_nocheck(data, "workflow",
						   json_string(spec->name ? spec->name : "")) ||
		     json_object_set_new_nocheck(data, "version", json_string(spec->version)) ||
		     json_object_set_nocheck(data, "input", (json_t *)input))) {
		json_decref(data);
		data = NULL;
	}
	if (data == NULL || add_active(rn, a) != REIN_OK) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto fail;
	}
	rc = append(rn, a, "run.started", -1, data, err);
	json_decref(data);
	if (rc == REIN_OK)
		snprintf(id_out, 64, "%s", a->id);
	return rc; /* on failure the run stays held and is dropped at the next error/flush */
fail:
	json_decref(data);
	active_free(a);
	return rc;
}

static const rein_spec *spec_for(rein_runner *rn, const char *version, rein_err *err)
{
	for (size_t i = 0; i < rn->nowned; i++)
		if (strcmp(rn->owned[i]->version, version) == 0)
			return rn->owned[i];
	char *text = NULL;
	json_t *bundle = NULL;
	rein_spec *spec = NULL;
	rein_err le = {0}; /* holds the diagnostics; only its text goes on */
	if (rein_store_spec_get(rn->st, version, &text, err) != REIN_OK)
		goto out;
	if ((bundle = rein_json_parse(text, strlen(text), err)) == NULL)
		goto out;
	char path[80];
	snprintf(path, sizeof path, "version:%.12s", version);
	if (rein_spec_load_bundle(bundle, path, rn->sb, &spec, &le) != REIN_OK) {
		rein_err_set(err, le.code, "%s", le.msg);
		goto out;
	}
	if (grow((void **)&rn->owned, &rn->ownedcap, rn->nowned + 1, sizeof *rn->owned) != REIN_OK) {
		rein_spec_free(spec);
		spec = NULL;
		rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	rn->owned[rn->nowned++] = spec;
out:
	rein_err_clear(&le);
	json_decref(bundle);
	rein_free(text);
	return spec;
}

typedef struct replay_ctx {
	active *a;
	rein_err *err;
	int rc;
} replay_ctx;

static int replay_one(void *ud, const rein_event_row *ev)
{
	replay_ctx *c = ud;
	active *a = c->a;
	if (ev->seq != a->seq + 1 || memcmp(ev->prev_hash, a->last_hash, REIN_HASH_LEN) != 0) {
		c->rc = rein_err_set(c->err, REIN_ECORRUPT, "run %s: the chain breaks at seq %lld",
				     a->id, (long long)ev->seq);
		return 1;
	}
	if (ev->payload == NULL) {
		c->rc = rein_err_set(c->err, REIN_ECORRUPT, "run %s: payload of seq %lld was purged",
				     a->id, (long long)ev->seq);
		return 1;
	}
	json_t *data = rein_json_parse(ev->payload, strlen(ev->payload), c->err);
	if (data == NULL) {
		c->rc = REIN_ECORRUPT;
		return 1;
	}
	c->rc = rein_run_apply(a->run, ev->type, ev->step, ev->at, data, c->err);
	json_decref(data);
	a->seq = ev->seq;
	memcpy(a->last_hash, ev->hash, REIN_HASH_LEN);
	return c->rc != REIN_OK;
}

static active *find_active(rein_runner *rn, const char *id)
{
	for (size_t i = 0; i < rn->n; i++)
		if (strcmp(rn->runs[i]->id, id) == 0)
			return rn->runs[i];
	return NULL;
}

/* Resumes the run of row (as read from the store; claimed: already leased to
 * us by claim_due, row.lease_owner the previous holder). */
static int resume_row(rein_runner *rn, const rein_run_row *rowp, bool claimed, rein_err *err)
{
	const rein_run_row row = *rowp;
	const char *id = row.id;
	active *a = NULL;
	int rc;
	int64_t t = now(rn);
	bool ended = row.status >= REIN_RUN_SUCCEEDED;
	const char *prev = row.lease_owner;
	bool abandoned = false;
	if (!ended && prev && strcmp(prev, rn->owner) != 0) {
		if (!claimed && row.lease_expires > t && rein_owner_alive(prev)) {
			rc = rein_err_set(err, REIN_ECONFLICT, "run %s is being advanced by %s", id,
					  prev);
			goto out;
		}
		abandoned = true;
	}
	const rein_spec *spec = spec_for(rn, row.version, err);
	if (spec == NULL) {
		rc = err && err->code ? err->code : REIN_EIO;
		goto out;
	}
	if ((a = rein_calloc(1, sizeof *a)) == NULL) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	snprintf(a->id, sizeof a->id, "%s", id);
	rein_event_genesis(a->id, a->last_hash);
	a->spec = spec;
	a->inserted = true;
	a->created_at = row.created_at;
	a->state = A_RUN;
	a->cancel = row.mail; /* today only a cancel puts mail (rein_store_cancel_request) */
	if ((rc = rein_run_new(spec, rn->sb, a->id, &a->run)) != REIN_OK) {
		rein_err_set(err, rc, "out of memory");
		goto out;
	}
	replay_ctx c = {.a = a, .err = err};
	if ((rc = rein_store_events_load(rn->st, id, replay_one, &c, err)) != REIN_OK ||
	    (rc = c.rc) != REIN_OK)
		goto out;
	if (a->seq != row.last_seq || memcmp(a->last_hash, row.last_hash, REIN_HASH_LEN) != 0) {
		rc = rein_err_set(err, REIN_ECORRUPT, "run %s: the log ends at seq %lld, the run row "
				  "says %lld", id, (long long)a->seq, (long long)row.last_seq);
		goto out;
	}
	rein_run_recovered(a->run, t);
	if (ended) { /* nothing to do: report it */
		rc = push_result(rn, a) == REIN_OK ? REIN_OK
						   : rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	if (!claimed &&
	    (rc = rein_store_lease_claim(rn->st, id, prev, rn->owner, t + rn->o.lease_ms, err)) !=
		    REIN_OK)
		goto out;
	if ((rc = add_active(rn, a)) != REIN_OK) {
		rein_err_set(err, rc, "out of memory");
		goto out;
	}
	if (abandoned) {
		json_t *d = json_pack("{s:s, s:s}", "owner", rn->owner, "previous_owner", prev);
		rc = d ? append(rn, a, "run.resumed", -1, d, err)
		       : rein_err_set(err, REIN_ENOMEM, "out of memory");
		json_decref(d);
	}
	a = NULL;
out:
	active_free(a);
	return rc;
}

int rein_runner_resume(rein_runner *rn, const char *id, rein_err *err)
{
	assert(rn->fly == NULL); /* the store is ours: no batch is out (see flush) */
	rein_run_row row = {0};
	int rc = REIN_OK;
	if (find_active(rn, id))
		return REIN_OK;
	if ((rc = rein_store_run_get(rn->st, id, &row, err)) == REIN_OK)
		rc = resume_row(rn, &row, false, err);
	rein_run_row_clear(&row);
	return rc;
}

static bool owner_alive(void *ud, const char *owner) { return rein_owner_alive(owner); }

#define DUE_PAGE 256

/* Claims the due runs a page at a time (claim_due leases them to us) and
 * resumes each; one that cannot be resumed gets its previous lease back. A
 * full page in which nothing could be resumed ends the sweep (runs that keep
 * failing do not make it spin). */
int rein_runner_resume_due(rein_runner *rn, int64_t horizon,
			   void (*on_error)(void *ud, const char *run, const char *why), void *ud,
			   int *errors, rein_err *err)
{
	assert(rn->fly == NULL);
	int nerr = 0, rc = REIN_OK;
	rein_run_row *rows = NULL;
	size_t n = 0;
	for (;;) {
		int64_t t = now(rn);
		rein_claim_req q = {.owner = rn->owner, .now = t, .horizon = horizon,
				    .lease_until = t + rn->o.lease_ms, .limit = DUE_PAGE,
				    .alive = owner_alive};
		if ((rc = rein_store_claim_due(rn->st, &q, &rows, &n, err)) != REIN_OK)
			break;
		size_t resumed = 0;
		for (size_t i = 0; i < n; i++) {
			rein_err e = {0};
			bool here = find_active(rn, rows[i].id) != NULL; /* parked here */
			int r = here ? REIN_OK : resume_row(rn, &rows[i], true, &e);
			if (r == REIN_OK && !here) {
				resumed++;
				continue;
			}
			/* not taken on here: give the lease back as it was */
			rein_err e2 = {0};
			if (here || find_active(rn, rows[i].id) == NULL)
				rein_store_lease_claim(rn->st, rows[i].id, rn->owner,
						       rows[i].lease_owner, rows[i].lease_expires, &e2);
			if (r != REIN_OK && r != REIN_ECONFLICT) {
				nerr++;
				if (on_error)
					on_error(ud, rows[i].id, e.msg);
			}
		}
		bool more = n == DUE_PAGE && resumed > 0;
		rein_run_rows_free(rows, n);
		rows = NULL;
		n = 0;
		if (!more)
			break;
	}
	if (errors)
		*errors = nerr;
	return rc;
}

int rein_runner_cancel(rein_runner *rn, const char *id, rein_err *err)
{
	assert(rn->fly == NULL);
	active *a = find_active(rn, id);
	if (a) {
		a->cancel = true;
		if (a->state == A_SLEEP || a->state == A_PARK_WAIT)
			a->state = A_RUN;
		for (ticket *tk = a->tickets; tk && rn->tx; tk = tk->next)
			rein_tools_cancel(rn->tx, tk); /* calls out are cut short */
		return REIN_OK;
	}
	return rein_store_cancel_request(rn->st, id, err);
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
	if (o && (row->output = rein_json_dump(o)) == NULL)
		return REIN_ENOMEM;
	row->reason = (char *)rein_run_reason(a->run);
	return REIN_OK;
}

/* Will a leave the runner at this flush? */
static bool leaving(rein_runner *rn, active *a, int64_t t)
{
	if (a->inflight > 0)
		return false;
	if (a->state == A_PARK_END)
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
		/* a run to be cancelled keeps its lease: it ends here */
		bool leave = leaving(rn, a, t) && !(a->cancel && a->state == A_PARK_WAIT);
		if (!row_due(rn, a, leave, t))
			continue;
		if (!a->inserted && !spec_stored(rn, a->spec->version)) {
			if (grow((void **)&b->specs, &b->specscap, b->nspecs + 1, sizeof *b->specs) !=
				    REIN_OK ||
			    grow((void **)&rn->stored, &rn->storedcap, rn->nstored + 1,
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
		if (grow((void **)&b->rows, &b->rowcap, b->nrows + 1, sizeof *b->rows) != REIN_OK)
			return rein_err_set(err, REIN_ENOMEM, "out of memory");
		brow *r = &b->rows[b->nrows];
		if (row_for(rn, a, leave, &r->row, t) != REIN_OK)
			return rein_err_set(err, REIN_ENOMEM, "out of memory");
		if (r->row.reason && (r->row.reason = rein_strdup(r->row.reason)) == NULL) {
			rein_free(r->row.output);
			return rein_err_set(err, REIN_ENOMEM, "out of memory");
		}
		b->nrows++;
		r->a = a;
		r->insert = !a->inserted;
		r->leaving = leave;
		r->state = a->state;
		r->cancel = false;
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
	for (size_t i = 0; i < b->nrows && rc == REIN_OK; i++)
		if (!b->rows[i].insert)
			rc = rein_store_run_update(st, &b->rows[i].row, owner, &b->rows[i].cancel, err);
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
		drop_all(rn);
		return rc;
	}
	bool gone = false;
	for (size_t i = 0; i < b->nrows; i++) {
		brow *r = &b->rows[i];
		active *a = r->a;
		if (r->cancel && rein_run_status(a->run) < REIN_RUN_SUCCEEDED)
			a->cancel = true;
		if (r->leaving && a->cancel && a->state == A_PARK_WAIT) {
			/* the cancel came back with the row that gave the lease up:
			 * take it again and end the run here (if nobody took it) */
			rein_err e = {0};
			int64_t t = now(rn);
			if (rein_store_lease_claim(rn->st, a->id, NULL, rn->owner, t + rn->o.lease_ms,
						   &e) == REIN_OK) {
				a->lease_until = t + rn->o.lease_ms;
				a->state = A_RUN;
				continue;
			}
		}
		if (r->leaving) {
			if (push_result(rn, a) != REIN_OK) {
				/* the store is fine; keep the run held */
				rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
				continue;
			}
			a->gone = gone = true;
		} else if (r->state == A_PARK_WAIT && a->state == A_PARK_WAIT) {
			a->state = a->cancel ? A_RUN : A_SLEEP;
		}
	}
	batch_drop(b);
	if (gone) {
		size_t keep = 0;
		for (size_t i = 0; i < rn->n; i++) {
			if (rn->runs[i]->gone)
				active_free(rn->runs[i]);
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

/*
 * Commits what is pending. With async (and opts.commit_thread), the
 * transaction runs on the commit thread while this one goes on advancing
 * other runs; nothing in that batch is released, and no effect goes out,
 * until it is complete, which the next flush waits for first.
 */
static int flush(rein_runner *rn, bool async, rein_err *err)
{
	int rc = REIN_OK;
	batch *done = flush_wait(rn);
	if (done && (rc = batch_complete(rn, done, err)) != REIN_OK)
		return rc;
	int64_t t = now(rn);
	bool dirty = rn->nev > 0;
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
		drop_all(rn);
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
	return batch_complete(rn, b, err);
}

int rein_runner_flush(rein_runner *rn, rein_err *err) { return flush(rn, false, err); }

/* An attempt's outcome: recorded as events on its run, which runs again. */
/* A call's ticket comes back: unhooked from its run (false when the run was
 * dropped meanwhile: then the ticket is freed and there is nothing to do). */
static bool ticket_back(ticket *tk)
{
	if (tk->dead) {
		rein_free(tk);
		return false;
	}
	active *a = tk->a;
	for (ticket **p = &a->tickets; *p; p = &(*p)->next)
		if (*p == tk) {
			*p = tk->next;
			break;
		}
	a->inflight--;
	return true;
}

static void tool_done(void *ud, rein_tool_outcome *o)
{
	ticket *tk = ud;
	rein_runner *rn = tk->rn;
	if (!ticket_back(tk))
		return;
	active *a = tk->a;
	int step = tk->step, attempt = tk->attempt;
	rein_free(tk);
	if (rein_run_status(a->run) >= REIN_RUN_SUCCEEDED || rn->cb_rc != REIN_OK)
		return; /* ended meanwhile (cancelled): the outcome has nowhere to go */
	int rc = REIN_OK;
	rein_err *err = &rn->cb_err;
	size_t i;
	json_t *bev;
	json_array_foreach(o->breaker, i, bev)
	{
		/* pending events keep their type pointer: use the static names */
		static const char *const types[] = {"breaker.opened", "breaker.half_open",
						    "breaker.closed"};
		const char *type = json_string_value(json_object_get(bev, "type"));
		for (size_t k = 0; k < 3; k++)
			if (type && strcmp(type, types[k]) == 0 && rc == REIN_OK)
				rc = append(rn, a, types[k], step, json_object_get(bev, "data"), err);
	}
	json_t *d;
	bool agent = a->spec->steps[step].kind == REIN_STEP_AGENT;
	if (o->ok) { /* an agent's result goes back to the model (tool.result), not out */
		d = json_pack("{s:O, s:i, s:I}", "out", o->result, "attempt", attempt, "latency_ms",
			      (json_int_t)o->latency_ms);
		if (d && o->status)
			json_object_set_new(d, "status", json_integer(o->status));
	} else {
		d = json_pack("{s:i, s:s, s:s, s:b, s:b, s:I}", "attempt", attempt, "outcome",
			      o->outcome, "error", o->error, "transient", o->transient, "ambiguous",
			      o->ambiguous, "latency_ms", (json_int_t)o->latency_ms);
		if (d && o->status)
			json_object_set_new(d, "status", json_integer(o->status));
		if (d && o->retry_after_ms >= 0)
			json_object_set_new(d, "retry_after_ms", json_integer(o->retry_after_ms));
	}
	if (rc == REIN_OK)
		rc = d ? append(rn, a,
				o->ok ? (agent ? "tool.result" : "step.completed") : "tool.attempt",
				step, d, err)
		       : rein_err_set(err, REIN_ENOMEM, "out of memory");
	json_decref(d);
	if (rc != REIN_OK)
		rn->cb_rc = rc;
	if (a->state == A_BUSY)
		a->state = A_RUN;
}

/* Runs held while their calls are out do not reach a commit, where cancel
 * requests are normally noticed: ask the store, and cut their calls short. */
static void check_cancels(rein_runner *rn)
{
	assert(rn->fly == NULL);
	for (size_t i = 0; i < rn->n; i++) {
		active *a = rn->runs[i];
		if (a->state != A_BUSY || a->cancel)
			continue;
		rein_run_row row = {0};
		rein_err e = {0};
		if (rein_store_run_get(rn->st, a->id, &row, &e) == REIN_OK && row.mail) {
			a->cancel = true;
			for (ticket *tk = a->tickets; tk; tk = tk->next)
				rein_tools_cancel(rn->tx, tk);
		}
		rein_run_row_clear(&row);
	}
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
static int collect_answer(void *ud, const rein_event_row *ev)
{
	json_t *seq = ud;
	if (strcmp(ev->type, "model.call") != 0 || ev->payload == NULL)
		return 0;
	json_t *d = json_loads(ev->payload, 0, NULL);
	json_t *resp = d ? json_deep_copy(json_object_get(d, "response")) : NULL;
	if (resp) {
		json_object_set(resp, "model", json_object_get(d, "model"));
		json_object_set(resp, "usage", json_object_get(d, "usage"));
		json_array_append_new(seq, resp);
	}
	json_decref(d);
	return 0;
}

static rein_model_provider *provider_for(rein_runner *rn, const rein_spec *spec, int tier,
					 rein_err *err)
{
	char key[160];
	snprintf(key, sizeof key, "%.64s/%.80s", spec->version, spec->tiers[tier].name);
	for (size_t i = 0; i < rn->nproviders; i++)
		if (strcmp(rn->providers[i].key, key) == 0)
			return rn->providers[i].p;
	json_t *cfg = expand_json(spec->tiers[tier].config);
	rein_model_provider *p = NULL;
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
			if (seq == NULL || rein_store_events_load(rn->st, from, collect_answer, seq, err) != REIN_OK) {
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
	int rc = rein_model_provider_new(cfg, &p, err);
	json_decref(cfg);
	if (rc != REIN_OK)
		return NULL;
	struct provider_slot *v = rein_realloc(rn->providers, (rn->nproviders + 1) * sizeof *v);
	if (v == NULL) {
		rein_model_provider_free(p);
		rein_err_set(err, REIN_ENOMEM, "out of memory");
		return NULL;
	}
	rn->providers = v;
	memset(&v[rn->nproviders], 0, sizeof v[rn->nproviders]);
	snprintf(v[rn->nproviders].key, sizeof v[rn->nproviders].key, "%s", key);
	v[rn->nproviders++].p = p;
	return p;
}

/* The record of one answered model call. */
static json_t *model_call_event(const active *a, int tier, const char *provider,
				const json_t *request, const json_t *resp, bool cached)
{
	const rein_model_tier *t = &a->spec->tiers[tier];
	char hash[REIN_MODEL_HASH_HEX] = "";
	rein_err e = {0};
	rein_model_request_hash(request, hash, &e);
	json_t *r = json_pack("{s:O?, s:O?, s:O?, s:O?, s:O?}", "text", json_object_get(resp, "text"),
			      "output", json_object_get(resp, "output"), "output_error",
			      json_object_get(resp, "output_error"), "tool_calls",
			      json_object_get(resp, "tool_calls"), "finish_reason",
			      json_object_get(resp, "finish_reason"));
	json_t *d = json_pack("{s:s, s:s?, s:O?, s:s, s:O?, s:O?, s:O?, s:O?, s:o, s:b}", "tier",
			      t->name, "provider", provider, "model", json_object_get(resp, "model"),
			      "request_hash", hash, "latency_ms", json_object_get(resp, "latency_ms"),
			      "ttft_ms", json_object_get(resp, "ttft_ms"), "usage",
			      json_object_get(resp, "usage"), "cost_usd", json_object_get(resp, "cost_usd"),
			      "response", r, "cached", cached);
	return d;
}

static void model_done(void *ud, rein_model_outcome *o)
{
	ticket *tk = ud;
	rein_runner *rn = tk->rn;
	if (!ticket_back(tk))
		return;
	active *a = tk->a;
	rn->model_inflight--;
	int step = tk->step, attempt = tk->attempt;
	const char *tk_provider = tk->provider;
	bool unnamed = tk->unnamed;
	struct provider_slot *slot = NULL;
	for (size_t i = 0; i < rn->nproviders; i++)
		if (rn->providers[i].p == tk->mp)
			slot = &rn->providers[i];
	rein_free(tk);
	const char *transition = NULL;
	if (slot) {
		slot->probing = false;
		if (o->ok) {
			if (slot->open)
				transition = "closed";
			slot->open = false;
			slot->fails = 0;
		} else if (o->transient && (slot->open || ++slot->fails >= 5)) {
			transition = "opened";
			slot->open = true;
			slot->opened_at = now(rn);
		}
	}
	if (rein_run_status(a->run) >= REIN_RUN_SUCCEEDED || rn->cb_rc != REIN_OK)
		return;
	rein_model_request call;
	json_t *d = NULL;
	int rc = rein_run_model_call(a->run, step, &call);
	if (rc == REIN_OK && o->ok) {
		d = model_call_event(a, call.tier, tk_provider, call.request, o->response, false);
		const rein_model_tier *t = &a->spec->tiers[call.tier];
		if (t->cache && rn->model_cache)
			json_object_set(rn->model_cache, o->request_hash, o->response);
		if (rn->recording) {
			/* a tier that named no model is recorded without one, so the
			 * replay of the same workflow finds it by its hash */
			json_t *rq = json_deep_copy(call.request);
			if (rq && !unnamed) {
				char *m = rein_expand_env(json_string_value(json_object_get(rq, "model")) ?: "");
				json_object_set_new(rq, "model", json_string(m ? m : ""));
				rein_free(m);
			}
			if (rq && unnamed)
				json_object_set_new(rq, "model", json_string("default"));
			if (rq)
				rein_model_record(rn->recording, rq, o->response, &rn->cb_err);
			json_decref(rq);
		}
	} else if (rc == REIN_OK) {
		char ev[1024] = "";
		if (o->evidence)
			snprintf(ev, sizeof ev, "%.*s", (int)(o->evidence_len < 1000 ? o->evidence_len : 1000),
				 o->evidence);
		d = json_pack("{s:i, s:s, s:s, s:b, s:I}", "attempt", attempt, "outcome",
			      o->outcome ? o->outcome : "other", "error", o->error, "transient",
			      o->transient, "latency_ms", (json_int_t)o->latency_ms);
		if (d && o->status)
			json_object_set_new(d, "status", json_integer(o->status));
		if (d && o->retry_after_ms >= 0)
			json_object_set_new(d, "retry_after_ms", json_integer(o->retry_after_ms));
		if (d && o->evidence)
			json_object_set_new(d, "evidence", json_string(ev));
	}
	if (rc == REIN_OK && transition) {
		json_t *b = json_pack("{s:s, s:s?}", "state", transition, "provider", tk_provider);
		rc = b ? append(rn, a, "model.breaker", step, b, &rn->cb_err) : REIN_ENOMEM;
		json_decref(b);
	}
	if (rc == REIN_OK)
		rc = d ? append(rn, a, o->ok ? "model.call" : "model.attempt", step, d, &rn->cb_err)
		       : rein_err_set(&rn->cb_err, REIN_ENOMEM, "out of memory");
	json_decref(d);
	if (rc != REIN_OK)
		rn->cb_rc = rc;
	if (a->state == A_BUSY)
		a->state = A_RUN;
}

/* Sends one model call (or answers it from the cache). */
static int dispatch_model(rein_runner *rn, active *a, int step, rein_err *err)
{
	rein_model_request call;
	if (rein_run_model_call(a->run, step, &call) != REIN_OK)
		return rein_err_set(err, REIN_EINVAL, "run %s: no model call at step %d", a->id, step);
	const rein_model_tier *t = &a->spec->tiers[call.tier];
	int rc = REIN_OK;
	json_t *req = json_deep_copy(call.request);
	if (req == NULL)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
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
		if (rn->model_cache == NULL)
			rn->model_cache = json_object();
		const json_t *hit = rein_model_request_hash(call.request, hash, &e) == REIN_OK
					    ? json_object_get(rn->model_cache, hash)
					    : NULL;
		if (hit) {
			json_t *d = model_call_event(a, call.tier, "cache", call.request, hit, true);
			rc = d ? append(rn, a, "model.call", step, d, err)
			       : rein_err_set(err, REIN_ENOMEM, "out of memory");
			json_decref(d);
			json_decref(req);
			a->state = A_RUN;
			return rc;
		}
	}
	rein_model_provider *p = provider_for(rn, a->spec, call.tier, err);
	if (p && unnamed) { /* a tier that names no model takes its provider's usual one */
		const char *type = rein_model_provider_type(p);
		json_object_set_new(req, "model",
				    json_string(strcmp(type, "anthropic") == 0 ? "claude-sonnet-4-20250514"
						: strcmp(type, "openai") == 0      ? "gpt-4o-mini-2024-07-18"
										   : "default"));
	}
	if (p == NULL) {
		/* a configuration the provider refuses: a permanent failure of this tier */
		json_t *d = json_pack("{s:i, s:s, s:s, s:b}", "attempt", call.attempt, "outcome", "config",
				      "error", err->msg, "transient", 0);
		rein_err_clear(err);
		rc = d ? append(rn, a, "model.attempt", step, d, err)
		       : rein_err_set(err, REIN_ENOMEM, "out of memory");
		json_decref(d);
		json_decref(req);
		a->state = A_RUN;
		return rc;
	}
	struct provider_slot *slot = NULL;
	for (size_t i = 0; i < rn->nproviders; i++)
		if (rn->providers[i].p == p)
			slot = &rn->providers[i];
	if (slot && slot->open) {
		if (now(rn) - slot->opened_at >= 30000 && !slot->probing) {
			slot->probing = true; /* half-open: this call is the probe */
		} else {
			json_t *d = json_pack("{s:i, s:s, s:s, s:b}", "attempt", call.attempt, "outcome",
					      "breaker_open", "error", "the provider's circuit breaker is open",
					      "transient", 0);
			rc = d ? append(rn, a, "model.attempt", step, d, err)
			       : rein_err_set(err, REIN_ENOMEM, "out of memory");
			json_decref(d);
			json_decref(req);
			a->state = A_RUN;
			return rc;
		}
	}
	ticket *tk = rein_calloc(1, sizeof *tk);
	if (tk == NULL) {
		json_decref(req);
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	}
	*tk = (ticket){.rn = rn, .a = a, .step = step, .attempt = call.attempt, .next = a->tickets,
		       .provider = rein_model_provider_type(p), .unnamed = unnamed, .mp = p};
	a->tickets = tk;
	a->inflight++;
	rn->model_inflight++;
	if ((rc = rein_model_call(rn->io, p, req, model_done, tk, err)) != REIN_OK) {
		a->tickets = tk->next;
		a->inflight--;
		rn->model_inflight--;
		rein_free(tk);
		/* a request the provider refuses is the workflow's error */
		json_t *d = json_pack("{s:i, s:s, s:s, s:b}", "attempt", call.attempt, "outcome",
				      "invalid_request", "error", err->msg, "transient", 0);
		rein_err_clear(err);
		rc = d ? append(rn, a, "model.attempt", step, d, err)
		       : rein_err_set(err, REIN_ENOMEM, "out of memory");
		json_decref(d);
		a->state = A_RUN;
	}
	json_decref(req);
	return rc;
}

/* Sends every attempt queued behind the barrier that just committed. */
static int dispatch_all(rein_runner *rn, rein_err *err)
{
	int rc = REIN_OK;
	size_t n = rn->ndq;
	rn->ndq = 0;
	for (size_t i = 0; i < n && rc == REIN_OK; i++) {
		active *a = rn->dq[i].a;
		int step = rn->dq[i].step;
		if (rn->io == NULL && ((rc = rein_io_new(&rn->io, err)) != REIN_OK ||
				       (rc = rein_tools_new(rn->io, rn->o.clock, &rn->tx, err)) != REIN_OK))
			return rc;
		if (rn->recording == NULL && getenv("REIN_RECORD"))
			rn->recording = json_object();
		if (rein_run_effect(a->run, step) == REIN_STEP_LLM) {
			rc = dispatch_model(rn, a, step, err);
			continue;
		}
		rein_tool_call call;
		if (rein_run_tool_call(a->run, step, &call) != REIN_OK)
			return rein_err_set(err, REIN_EINVAL, "run %s: no call at step %d", a->id, step);
		if (call.cached) { /* the fallback asks for the last good result */
			const json_t *c = rein_tools_cached(rn->tx, a->spec, call.tool);
			json_t *d = json_pack("{s:s, s:s, s:O?}", "kind", "cached", "from",
					      a->spec->tools[call.tool].name, "result", (json_t *)c);
			rc = d ? append(rn, a, "tool.fallback", step, d, err)
			       : rein_err_set(err, REIN_ENOMEM, "out of memory");
			json_decref(d);
			a->state = A_RUN;
			continue;
		}
		ticket *tk = rein_calloc(1, sizeof *tk);
		if (tk == NULL)
			return rein_err_set(err, REIN_ENOMEM, "out of memory");
		*tk = (ticket){.rn = rn, .a = a, .step = step, .attempt = call.attempt,
			       .next = a->tickets};
		a->tickets = tk;
		a->inflight++;
		if ((rc = rein_tools_call(rn->tx, a->spec, call.tool, call.key, call.args, tool_done,
					  tk, err)) != REIN_OK) {
			/* not sent: undo the ticket */
			for (ticket **p = &a->tickets; *p; p = &(*p)->next)
				if (*p == tk) {
					*p = tk->next;
					break;
				}
			a->inflight--;
			rein_free(tk);
		}
		if (rn->cb_rc != REIN_OK) {
			rc = rn->cb_rc;
			rn->cb_rc = REIN_OK;
			rein_err_set(err, rc, "%s", rn->cb_err.msg);
		}
	}
	return rc;
}

/* Advances one run until it parks (ends or waits) or the batch is full. */
static int advance(rein_runner *rn, active *a, rein_err *err)
{
	int rc = REIN_OK;
	for (int guard = 0; guard < 100000; guard++) {
		rein_cmd cmd;
		if (a->cancel && rein_run_status(a->run) < REIN_RUN_SUCCEEDED) {
			json_t *d = json_pack("{s:s, s:s, s:n}", "status", "cancelled", "reason",
					      "cancelled on request", "output");
			rc = d ? append(rn, a, "run.ended", -1, d, err)
			       : rein_err_set(err, REIN_ENOMEM, "out of memory");
			json_decref(d);
			if (rc != REIN_OK)
				return rc;
		}
		/* what the engine decides at t is stamped t: one clock reading, or a
		 * timer due at t + 3 s could record that it was set to wait 2,999 ms */
		int64_t t = now(rn);
		if ((rc = rein_run_poll(a->run, t, &cmd, err)) != REIN_OK)
			return rc;
		switch (cmd.kind) {
		case REIN_CMD_NONE:
			a->state = A_PARK_END;
			return REIN_OK;
		case REIN_CMD_SLEEP:
			a->state = A_PARK_WAIT;
			a->wake_at = cmd.due;
			return REIN_OK;
		case REIN_CMD_BUSY: /* tool attempts out: their outcomes will wake it */
			a->state = A_BUSY;
			return REIN_OK;
		case REIN_CMD_EMIT:
			rc = append_at(rn, a, cmd.type, cmd.step, cmd.data, t, err);
			rein_cmd_clear(&cmd);
			break;
		case REIN_CMD_EXEC: {
			const char *type = NULL;
			json_t *data = NULL;
			if (rein_run_effect(a->run, cmd.step) == REIN_STEP_TOOL ||
			    rein_run_effect(a->run, cmd.step) == REIN_STEP_LLM) {
				/* an effect: it goes out after the next commit */
				if (grow((void **)&rn->dq, &rn->dqcap, rn->ndq + 1, sizeof *rn->dq) != REIN_OK)
					return rein_err_set(err, REIN_ENOMEM, "out of memory");
				rn->dq[rn->ndq++] = (dispatch){a, cmd.step};
				break;
			}
			rc = rein_run_exec(a->run, cmd.step, &type, &data, err);
			if (rc == REIN_OK)
				rc = append(rn, a, type, cmd.step, data, err);
			json_decref(data);
			break;
		}
		}
		if (rc != REIN_OK)
			return rc;
		if (rn->nev >= rn->o.max_batch && !fly_busy(rn) &&
		    (rc = flush(rn, true, err)) != REIN_OK)
			return rc;
	}
	return REIN_OK;
}

int rein_runner_drive(rein_runner *rn, rein_err *err)
{
	int rc = REIN_OK;
	for (;;) {
		bool ran = false;
		for (size_t i = 0; i < rn->n; i++) {
			active *a = rn->runs[i];
			if (a->state != A_RUN)
				continue;
			ran = true;
			if ((rc = advance(rn, a, err)) != REIN_OK)
				goto fail;
		}
		/* the barrier: everything parked, and every intent, becomes durable
		 * together; only then do the effects go out */
		if ((rc = rein_runner_flush(rn, err)) != REIN_OK)
			return rc;
		if ((rc = dispatch_all(rn, err)) != REIN_OK)
			goto fail;
		if (ran)
			continue;
		int64_t t = now(rn), next = INT64_MAX;
		bool busy = false;
		for (size_t i = 0; i < rn->n; i++) {
			if (rn->runs[i]->state == A_SLEEP && rn->runs[i]->wake_at < next)
				next = rn->runs[i]->wake_at;
			busy |= rn->runs[i]->state == A_BUSY || rn->runs[i]->state == A_RUN;
		}
		if (next == INT64_MAX && !busy)
			return REIN_OK; /* nothing held */
		if (rn->io && (rein_io_inflight(rn->io) > 0 || rein_tools_inflight(rn->tx) > 0 ||
			       rn->model_inflight > 0)) {
			/* outcomes arrive as events from the callbacks; at least once
			 * a second, look for cancels asked by other processes */
			int64_t wait = next == INT64_MAX ? 1000 : (next > t ? next - t : 0);
			if (rein_io_wait(rn->io, wait > 1000 ? 1000 : wait) == 0)
				check_cancels(rn);
			if (rn->cb_rc != REIN_OK) {
				rc = rn->cb_rc;
				rn->cb_rc = REIN_OK;
				rein_err_set(err, rc, "%s", rn->cb_err.msg);
				goto fail;
			}
		} else if (next != INT64_MAX && next > t) {
			/* wake at least every half lease to renew the leases held */
			int64_t nap = next - t;
			rn->o.sleep_ms(rn->o.ud, nap > rn->o.lease_ms / 2 ? rn->o.lease_ms / 2 : nap);
		}
		t = now(rn);
		for (size_t i = 0; i < rn->n; i++)
			if (rn->runs[i]->state == A_SLEEP && rn->runs[i]->wake_at <= t)
				rn->runs[i]->state = A_RUN;
	}
fail:
	/* A step's failure is an event, so an error here is a store or memory
	 * problem (or a simulated crash): memory may be ahead of the store, so
	 * forget every held run; the store keeps their last durable state and
	 * `resume` continues from it. */
	drop_all(rn);
	return rc;
}
