/*
 * The runner: commands → actions, leases, batching. Group commit is in
 * commit.c, model policy in the model layer's router. See runner.h.
 */
#include "runner_int.h"

#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void rein_run_result_clear(rein_run_result *r)
{
	json_decref(r->output);
	rein_free(r->reason);
	memset(r, 0, sizeof *r);
}

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

void runner_active_free(active *a)
{
	if (a) {
		for (ticket *t = a->tickets; t; t = t->next)
			t->dead = true;
		rein_run_free(a->run);
		rein_redactor_free(a->red);
		rein_free(a);
	}
}

static void drop_pending(rein_runner *rn)
{
	for (size_t i = 0; i < rn->nev; i++)
		rein_free(rn->ev[i].payload);
	rn->nev = 0;
}

void runner_drop_all(rein_runner *rn)
{
	runner_commit_settle(rn);
	drop_pending(rn);
	rn->ndq = 0;
	for (size_t i = 0; i < rn->n; i++)
		runner_active_free(rn->runs[i]);
	rn->n = 0;
}

void rein_runner_free(rein_runner *rn)
{
	if (rn == NULL)
		return;
	runner_drop_all(rn);
	runner_commit_free(rn);
	runner_alerts_wait(rn); /* the alert posts still going (bounded by their attempts) */
	rein_tools_shutdown(rn->tx); /* MCP servers close while the loop still runs */
	/* model calls still out report cancelled to dead tickets inside io_free */
	rein_io_free(rn->io);        /* cancels calls still out: their tickets are dead */
	rein_tools_free(rn->tx);
	rein_model_router_free(rn->router); /* after io: the calls out are done */
	runner_kill_free(rn);
	runner_governance_free(rn);
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
bool rein_runner_stopped(const rein_runner *rn) { return rn->stopped; }
size_t rein_runner_active(const rein_runner *rn) { return rn->n; }

int runner_grow(void **v, size_t *cap, size_t need, size_t size)
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

int runner_push_result(rein_runner *rn, active *a)
{
	if (runner_grow((void **)&rn->res, &rn->rescap, rn->nres + 1, sizeof *rn->res) != REIN_OK)
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
	char *payload = NULL;
	if ((rc = runner_protect_store(rn, a, type, data, &payload, err)) != REIN_OK)
		return rc;
	if (runner_grow((void **)&rn->ev, &rn->evcap, rn->nev + 1, sizeof *rn->ev) != REIN_OK) {
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
	return append_at(rn, a, type, step, data, runner_now(rn), err);
}

int runner_append(rein_runner *rn, active *a, const char *type, int step, const json_t *data,
		  rein_err *err)
{
	return append(rn, a, type, step, data, err);
}

static int add_active(rein_runner *rn, active *a)
{
	if (runner_grow((void **)&rn->runs, &rn->cap, rn->n + 1, sizeof *rn->runs) != REIN_OK)
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
	if ((rc = rein_schema_check(spec->input_schema, input, err,
				    "input does not match the input schema")) != REIN_OK)
		return rc;
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
	a->created_at = runner_now(rn);
	rein_event_genesis(a->id, a->last_hash);
	if ((rc = rein_run_new(spec, rn->sb, a->id, &a->run)) != REIN_OK) {
		rein_err_set(err, rc, "out of memory");
		goto fail;
	}
	if ((rc = runner_protect_init(rn, a, err)) != REIN_OK)
		goto fail;
	/* (not json_pack: it parses its format each time, and starts are hot) */
	data = json_object();
	if (data && (json_object_set_new_nocheck(data, "workflow",
						   json_string(spec->name ? spec->name : "")) ||
		     json_object_set_new_nocheck(data, "version", json_string(spec->version)) ||
		     json_object_set_nocheck(data, "input", (json_t *)input) ||
		     (rn->o.shadow && json_object_set_new_nocheck(data, "shadow", json_true())))) {
		json_decref(data);
		data = NULL;
	}
	if (data == NULL) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto fail;
	}
	if ((rc = runner_start_governance(rn, data, err)) != REIN_OK)
		goto fail;
	if (add_active(rn, a) != REIN_OK) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto fail;
	}
	rc = append(rn, a, rein_event_name(REIN_EV_RUN_STARTED), -1, data, err);
	json_decref(data);
	if (rc == REIN_OK)
		snprintf(id_out, 64, "%s", a->id);
	return rc; /* on failure the run stays held and is dropped at the next error/flush */
fail:
	json_decref(data);
	runner_active_free(a);
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
	if (runner_grow((void **)&rn->owned, &rn->ownedcap, rn->nowned + 1, sizeof *rn->owned) != REIN_OK) {
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
	rein_runner *rn;
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
	json_t *data = NULL;
	if ((c->rc = runner_protect_load(c->rn, a, ev, &data, c->err)) != REIN_OK)
		return 1;
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

/*
 * Rebuilds the run of row from its log into a new active (*out, not yet
 * held): its spec from the store, every event replayed, the log's end
 * checked against the row. REIN_ECORRUPT when they disagree.
 */
static int rebuild(rein_runner *rn, const rein_run_row *row, active **out, rein_err *err)
{
	active *a = NULL;
	int rc;
	const rein_spec *spec = spec_for(rn, row->version, err);
	if (spec == NULL) {
		rc = err && err->code ? err->code : REIN_EIO;
		goto out;
	}
	if ((a = rein_calloc(1, sizeof *a)) == NULL) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	snprintf(a->id, sizeof a->id, "%s", row->id);
	rein_event_genesis(a->id, a->last_hash);
	a->spec = spec;
	a->inserted = true;
	a->created_at = row->created_at;
	a->state = A_RUN;
	if ((rc = rein_run_new(spec, rn->sb, a->id, &a->run)) != REIN_OK) {
		rein_err_set(err, rc, "out of memory");
		goto out;
	}
	if ((rc = runner_protect_init(rn, a, err)) != REIN_OK)
		goto out;
	replay_ctx c = {.rn = rn, .a = a, .err = err};
	if ((rc = rein_store_events_load(rn->st, row->id, replay_one, &c, err)) != REIN_OK ||
	    (rc = c.rc) != REIN_OK)
		goto out;
	if (a->seq != row->last_seq || memcmp(a->last_hash, row->last_hash, REIN_HASH_LEN) != 0) {
		rc = rein_err_set(err, REIN_ECORRUPT, "run %s: the log ends at seq %lld, the run row "
				  "says %lld", row->id, (long long)a->seq, (long long)row->last_seq);
		goto out;
	}
	*out = a;
	a = NULL;
out:
	runner_active_free(a);
	return rc;
}

/* Resumes the run of row (as read from the store; claimed: already leased to
 * us by claim_due, row.lease_owner the previous holder). */
static int resume_row(rein_runner *rn, const rein_run_row *rowp, bool claimed, rein_err *err)
{
	const rein_run_row row = *rowp;
	const char *id = row.id;
	active *a = NULL;
	int rc;
	int64_t t = runner_now(rn);
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
	if ((rc = rebuild(rn, &row, &a, err)) != REIN_OK)
		goto out;
	a->mail = row.mail; /* drained before the run advances (drain_mail) */
	rein_run_recovered(a->run, t);
	if (ended) { /* nothing to do: report it */
		rc = runner_push_result(rn, a) == REIN_OK ? REIN_OK
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
		rc = d ? append(rn, a, rein_event_name(REIN_EV_RUN_RESUMED), -1, d, err)
		       : rein_err_set(err, REIN_ENOMEM, "out of memory");
		json_decref(d);
	}
	a = NULL;
out:
	runner_active_free(a);
	return rc;
}

const rein_spec *runner_spec_of(rein_runner *rn, const char *id)
{
	active *a = find_active(rn, id);
	return a ? a->spec : NULL;
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

/* A business key usable as a run id (rein_runner_start_once). */
static bool key_valid(const char *key)
{
	size_t n = strlen(key);
	if (n == 0 || n > 63 || !((key[0] >= 'a' && key[0] <= 'z') || (key[0] >= 'A' && key[0] <= 'Z') ||
				  (key[0] >= '0' && key[0] <= '9')))
		return false;
	for (const char *p = key; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		      *p == '.' || *p == '_' || *p == ':' || *p == '-'))
			return false;
	return true;
}

/* The run key exists: the same workflow's is taken as resume takes it. */
static int start_existing(rein_runner *rn, const rein_spec *spec, const char *key, rein_err *err)
{
	rein_run_row row = {0};
	int rc = rein_store_run_get(rn->st, key, &row, err);
	if (rc != REIN_OK)
		goto out;
	const char *name = spec->name ? spec->name : "";
	if (strcmp(row.workflow ? row.workflow : "", name) != 0) {
		rc = rein_err_set(err, REIN_EINVAL, "run %s exists as a run of workflow %s, not %s",
				  key, row.workflow ? row.workflow : "?", name);
		goto out;
	}
	rc = find_active(rn, key) ? REIN_OK : resume_row(rn, &row, false, err);
out:
	rein_run_row_clear(&row);
	return rc;
}

int rein_runner_start_once(rein_runner *rn, const rein_spec *spec, const json_t *input,
			   const char *key, bool *existed, rein_err *err)
{
	assert(rn->fly == NULL && key != NULL && existed != NULL);
	rein_run_row row = {0};
	char id[64];
	int rc;
	*existed = false;
	if (!key_valid(key))
		return rein_err_set(err, REIN_EINVAL, "run id '%s': 1 to 63 of A-Z a-z 0-9 . _ : - "
				    "(starting with a letter or digit)", key);
	if ((rc = rein_schema_check(spec->input_schema, input, err,
				    "input does not match the input schema")) != REIN_OK)
		return rc;
	rc = find_active(rn, key) ? REIN_OK : rein_store_run_get(rn->st, key, &row, err);
	rein_run_row_clear(&row);
	if (rc == REIN_ENOTFOUND) {
		rein_err_clear(err);
		if ((rc = rein_runner_start(rn, spec, input, key, id, err)) == REIN_OK &&
		    (rc = rein_runner_flush(rn, err)) == REIN_OK)
			return REIN_OK;
		if (rc != REIN_ECONFLICT) /* not a run started meanwhile by another */
			return rc;
		rein_err_clear(err);
	} else if (rc != REIN_OK) {
		return rc;
	}
	*existed = true;
	return start_existing(rn, spec, key, err);
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
		int64_t t = runner_now(rn);
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

int rein_runner_review(rein_runner *rn, const char *id, const json_t *review, const char *by,
		       rein_err *err)
{
	assert(rn->fly == NULL && id != NULL && review != NULL);
	rein_run_row row = {0};
	active *a = NULL;
	json_t *d = NULL;
	char *text = NULL;
	bool leased = false;
	int64_t t = runner_now(rn);
	int rc = find_active(rn, id) ? rein_err_set(err, REIN_ECONFLICT, "run %s is held here", id)
				     : rein_store_run_get(rn->st, id, &row, err);
	if (rc != REIN_OK)
		goto out;
	if (row.status != REIN_RUN_NEEDS_REVIEW) {
		rc = rein_err_set(err, REIN_EINVAL, "run %s is %s, not needs_review", id,
				  rein_status_name(row.status));
		goto out;
	}
	/* rebuilt from its log, as a resume does */
	if ((rc = rebuild(rn, &row, &a, err)) != REIN_OK)
		goto out;
	if ((rc = rein_run_review_check(a->run, review, err)) != REIN_OK)
		goto out;
	if ((rc = rein_store_lease_claim(rn->st, id, row.lease_owner, rn->owner,
					 t + rn->o.lease_ms, err)) != REIN_OK)
		goto out;
	leased = true;
	char mid[64];
	if ((d = json_deep_copy(review)) == NULL ||
	    (by && json_object_set_new(d, "by", json_string(by)) != 0) ||
	    (text = rein_json_dump(d)) == NULL || rein_random_id("review_", mid, sizeof mid) != REIN_OK) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	bool dup = false;
	rein_inbox_row m = {.run_id = id, .id = mid, .type = "review", .data = text, .sender = by,
			    .at = t};
	if ((rc = rein_store_inbox_put(rn->st, &m, &dup, err)) != REIN_OK)
		goto out;
	if ((rc = add_active(rn, a)) != REIN_OK) {
		rein_err_set(err, rc, "out of memory");
		goto out; /* recorded: the next review of the run drains it */
	}
	a->mail = true; /* drained at the top of the next drive */
	a->lease_until = t + rn->o.lease_ms;
	a = NULL;
	leased = false;
out:
	if (leased) { /* not taken on: the lease goes back */
		rein_err e2 = {0};
		rein_store_lease_claim(rn->st, id, rn->owner, row.lease_owner, row.lease_expires, &e2);
	}
	runner_active_free(a);
	json_decref(d);
	rein_free(text);
	rein_run_row_clear(&row);
	return rc;
}

int rein_runner_cancel(rein_runner *rn, const char *id, rein_err *err)
{
	assert(rn->fly == NULL);
	/* a cancel is an inbox entry like any other: durable first, then
	 * drained into the log and decided by the engine (drain_mail) */
	int rc = rein_store_cancel_request(rn->st, id, err);
	active *a = rc == REIN_OK ? find_active(rn, id) : NULL;
	if (a) {
		a->mail = true;
		if (a->state == A_SLEEP || a->state == A_PARK_WAIT)
			a->state = A_RUN;
	}
	return rc;
}

/* Takes the dispatches of run a out of the queue: they must not go out. */
static void withhold(rein_runner *rn, const active *a)
{
	size_t keep = 0;
	for (size_t i = 0; i < rn->ndq; i++)
		if (rn->dq[i].a != a)
			rn->dq[keep++] = rn->dq[i];
	rn->ndq = keep;
}

/*
 * Records the run's undrained inbox entries in its log as inbox.received
 * events, which the engine applies (a cancel decides the end). They leave
 * the inbox in the transaction that makes these events durable (commit.c),
 * so each is recorded exactly once, also across a crash. When the engine has
 * decided the run ends, nothing the run wanted to send goes out: queued
 * dispatches are withheld, calls in flight are cut short. The store is used
 * here: no batch may be in flight.
 */
static int drain_mail(rein_runner *rn, active *a, rein_err *err)
{
	assert(rn->fly == NULL && a != NULL);
	rein_inbox_row *m = NULL;
	size_t n = 0;
	a->mail = a->peek = false;
	/* an ended run has nothing to read, but one in review its resolution */
	if (rein_run_status(a->run) >= REIN_RUN_SUCCEEDED &&
	    rein_run_status(a->run) != REIN_RUN_NEEDS_REVIEW)
		return REIN_OK;
	int rc = rein_store_inbox_list(rn->st, a->id, &m, &n, err);
	for (size_t i = 0; i < n && rc == REIN_OK; i++) {
		if (m[i].seq <= a->drained)
			continue; /* recorded already, its drain not yet committed */
		json_t *data = NULL;
		if (m[i].data) {
			rein_err je = {0};
			data = rein_json_parse(m[i].data, strlen(m[i].data), &je);
			if (data == NULL && je.code == REIN_ENOMEM) {
				rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
				break;
			}
			if (data == NULL) /* kept as text: the log takes what was sent */
				data = json_string(m[i].data);
		}
		if (strcmp(m[i].type, "approval") == 0) { /* the token checked here: keys, clock */
			json_t *v = rein_approval_verdict(data, runner_now(rn));
			json_decref(data);
			if ((data = v) == NULL) {
				rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
				break;
			}
		}
		json_t *d = json_pack("{s:s, s:s, s:o?, s:s?, s:I}", "id", m[i].id, "type", m[i].type,
				      "data", data, "sender", m[i].sender, "at", (json_int_t)m[i].at);
		rc = d ? append(rn, a, rein_event_name(REIN_EV_INBOX_RECEIVED), -1, d, err)
		       : rein_err_set(err, REIN_ENOMEM, "out of memory");
		json_decref(d);
		if (rc == REIN_OK)
			a->drained = m[i].seq;
		if (rc == REIN_OK && a->state == A_SLEEP)
			a->state = A_RUN; /* e.g. the signal it waits for: it goes on now */
	}
	rein_inbox_rows_free(m, n);
	if (rc == REIN_OK && rein_run_ending(a->run)) {
		withhold(rn, a);
		for (ticket *tk = a->tickets; tk && rn->tx; tk = tk->next)
			rein_tools_cancel(rn->tx, tk); /* calls out are cut short */
		if (a->state != A_BUSY || a->inflight == 0)
			a->state = A_RUN;
	}
	return rc;
}

/* Drains the inbox of every held run that has mail or was just woken. */
static int drain_all(rein_runner *rn, bool *any, rein_err *err)
{
	int rc = REIN_OK;
	for (size_t i = 0; i < rn->n && rc == REIN_OK; i++) {
		active *a = rn->runs[i];
		if (!a->mail && !a->peek)
			continue;
		rc = drain_mail(rn, a, err);
		if (any)
			*any = true;
	}
	return rc;
}


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
		/* pending events keep their type pointer: use the table's names */
		int k = rein_event_type_find(json_string_value(json_object_get(bev, "type")));
		if ((k == REIN_EV_BREAKER_OPENED || k == REIN_EV_BREAKER_HALF_OPEN ||
		     k == REIN_EV_BREAKER_CLOSED) && rc == REIN_OK)
			rc = append(rn, a, rein_event_name(k), step, json_object_get(bev, "data"), err);
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
				rein_event_name(o->ok ? (agent ? REIN_EV_TOOL_RESULT : REIN_EV_STEP_COMPLETED)
				      : REIN_EV_TOOL_ATTEMPT),
				step, d, err)
		       : rein_err_set(err, REIN_ENOMEM, "out of memory");
	json_decref(d);
	if (rc != REIN_OK)
		rn->cb_rc = rc;
	if (a->state == A_BUSY)
		a->state = A_RUN;
}

/* Runs held while their calls are out do not reach a commit, where mail is
 * normally noticed: look at their inboxes (a cancel cuts the calls short). */
static int check_mail(rein_runner *rn, rein_err *err)
{
	assert(rn->fly == NULL);
	for (size_t i = 0; i < rn->n; i++)
		if (rn->runs[i]->state == A_BUSY)
			rn->runs[i]->peek = true;
	return drain_all(rn, NULL, err);
}

/* Records what the router says a model call came to (out of memory when it
 * could not build an event). */
static int record_routed(rein_runner *rn, active *a, int step, const rein_model_routed *rt,
			 rein_err *err)
{
	int rc = REIN_OK;
	for (size_t i = 0; i < rt->n && rc == REIN_OK; i++)
		rc = rt->ev[i].data ? append(rn, a, rt->ev[i].type, step, rt->ev[i].data, err)
				    : rein_err_set(err, REIN_ENOMEM, "out of memory");
	return rc;
}

static bool model_done(void *ud, const rein_model_routed *rt)
{
	ticket *tk = ud;
	rein_runner *rn = tk->rn;
	if (!ticket_back(tk))
		return false;
	active *a = tk->a;
	int step = tk->step;
	rein_free(tk);
	if (rein_run_status(a->run) >= REIN_RUN_SUCCEEDED || rn->cb_rc != REIN_OK)
		return false; /* ended meanwhile (cancelled): the outcome has nowhere to go */
	int rc = record_routed(rn, a, step, rt, &rn->cb_err);
	if (rc != REIN_OK)
		rn->cb_rc = rc;
	if (a->state == A_BUSY)
		a->state = A_RUN;
	return true;
}

/* The events of an earlier run, for a replay tier's from_run. */
typedef struct history_ctx {
	void (*each)(void *ud, const char *type, const char *payload);
	void *ud;
} history_ctx;

static int history_one(void *ud, const rein_event_row *ev)
{
	history_ctx *c = ud;
	c->each(c->ud, ev->type, ev->payload);
	return 0;
}

static int history(void *ud, const char *run,
		   void (*each)(void *each_ud, const char *type, const char *payload),
		   void *each_ud, rein_err *err)
{
	rein_runner *rn = ud;
	history_ctx c = {each, each_ud};
	return rein_store_events_load(rn->st, run, history_one, &c, err);
}

/* Asks the router for one model call for the step's tier. */
static int dispatch_model(rein_runner *rn, active *a, int step, rein_err *err)
{
	rein_model_request call;
	if (rein_run_model_call(a->run, step, &call) != REIN_OK)
		return rein_err_set(err, REIN_EINVAL, "run %s: no model call at step %d", a->id, step);
	ticket *tk = rein_calloc(1, sizeof *tk);
	if (tk == NULL)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	*tk = (ticket){.rn = rn, .a = a, .step = step, .attempt = call.attempt, .next = a->tickets};
	rein_model_routed now = {0};
	int rc = rein_model_router_call(rn->router, rn->io, a->spec, call.tier, call.request,
					call.attempt, model_done, tk, &now, err);
	if (rc == REIN_OK && now.n == 0) { /* sent: the ticket comes back in model_done */
		a->tickets = tk;
		a->inflight++;
		return REIN_OK;
	}
	rein_free(tk);
	if (rc == REIN_OK) { /* answered at once */
		rc = record_routed(rn, a, step, &now, err);
		a->state = A_RUN;
	}
	rein_model_routed_clear(&now);
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
		if (rn->router == NULL &&
		    (rc = rein_model_router_new(&(rein_model_router_opts){.clock = rn->o.clock,
									  .history = history,
									  .ud = rn},
						&rn->router, err)) != REIN_OK)
			return rc;
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
			rc = d ? append(rn, a, rein_event_name(REIN_EV_TOOL_FALLBACK), step, d, err)
			       : rein_err_set(err, REIN_ENOMEM, "out of memory");
			json_decref(d);
			a->state = A_RUN;
			continue;
		}
		/* the last look before the wire: shadow mode, the kill switch */
		bool kept = false;
		if (a->spec->tools[call.tool].write &&
		    (rc = runner_write_gate(rn, a, step, &call, &kept, err)) != REIN_OK)
			return rc;
		if (kept) {
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
		if ((rc = rein_tools_call_as(rn->tx, a->spec, call.tool, rein_run_tenant(a->run),
					     call.key, call.args, tool_done, tk, err)) != REIN_OK) {
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
		/* what the engine decides at t is stamped t: one clock reading, or a
		 * timer due at t + 3 s could record that it was set to wait 2,999 ms */
		int64_t t = runner_now(rn);
		if ((rc = rein_run_poll(a->run, t, &cmd, err)) != REIN_OK)
			return rc;
		if (cmd.kind == REIN_CMD_EMIT && cmd.type == rein_event_name(REIN_EV_POLICY_DECISION) &&
		    runner_rated(a)) { /* decide again with the tenant's counts (rate.c) */
			rein_cmd_clear(&cmd);
			if ((rc = runner_rate_counts(rn, a, err)) != REIN_OK ||
			    (rc = rein_run_poll(a->run, t, &cmd, err)) != REIN_OK)
				return rc;
		}
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
				if (runner_grow((void **)&rn->dq, &rn->dqcap, rn->ndq + 1, sizeof *rn->dq) != REIN_OK)
					return rein_err_set(err, REIN_ENOMEM, "out of memory");
				rn->dq[rn->ndq++] = (dispatch){a, cmd.step};
				break;
			}
			int64_t t0 = runner_now(rn);
			rc = rein_run_exec(a->run, cmd.step, rn->o.clock, &type, &data, err);
			if (rc == REIN_OK)
				rc = append(rn, a, type, cmd.step, data, err);
			json_decref(data);
			/* the adaptive barrier: a step that cost more than a commit
			 * is made durable now (on the commit thread, while the run
			 * goes on), so a crash never makes a resume redo it */
			if (rc == REIN_OK && runner_now(rn) - t0 > runner_barrier_ms(rn))
				rc = runner_flush(rn, true, err);
			break;
		}
		}
		if (rc != REIN_OK)
			return rc;
		if (rn->nev >= rn->o.max_batch && !runner_fly_busy(rn) &&
		    (rc = runner_flush(rn, true, err)) != REIN_OK)
			return rc;
	}
	return REIN_OK;
}

/* Calls out (tool attempts and model calls) of every held run. */
static int inflight_all(const rein_runner *rn)
{
	int n = 0;
	for (size_t i = 0; i < rn->n; i++)
		n += rn->runs[i]->inflight;
	return n;
}

/*
 * The graceful stop (opts.stop): once the calls out have finished, or the
 * grace period is over, cuts the rest short without an outcome (their
 * tickets die: the intents stay without one, in doubt for a resume), then
 * commits what is pending with every held run's row released. *done true
 * when the runner has stopped.
 */
static int stop_check(rein_runner *rn, bool *done, rein_err *err)
{
	*done = false;
	if (rn->o.stop == NULL || *rn->o.stop == 0)
		return REIN_OK;
	int64_t t = runner_now(rn);
	if (!rn->stopping) {
		rn->stopping = true;
		rn->stop_by = t + (rn->o.stop_grace_ms > 0 ? rn->o.stop_grace_ms : 0);
	}
	if (inflight_all(rn) > 0 && t < rn->stop_by)
		return REIN_OK;
	rn->ndq = 0; /* nothing new goes out (the queue is empty between passes) */
	for (size_t i = 0; i < rn->n; i++) {
		active *a = rn->runs[i];
		for (ticket *tk = a->tickets; tk; tk = tk->next)
			tk->dead = true; /* the io layer frees it when the call ends */
		a->tickets = NULL;
		a->inflight = 0;
	}
	rn->stopped = true;
	*done = true;
	return runner_flush(rn, false, err);
}

/* Does a run sleep here waiting for a signal (sent by another process)? */
static bool signal_sleepers(const rein_runner *rn)
{
	for (size_t i = 0; i < rn->n; i++)
		if (rn->runs[i]->state == A_SLEEP && rein_run_awaits_signal(rn->runs[i]->run))
			return true;
	return false;
}

int rein_runner_drive(rein_runner *rn, rein_err *err)
{
	int rc = REIN_OK;
	for (;;) {
		bool ran = false, stop = false;
		if ((rc = stop_check(rn, &stop, err)) != REIN_OK || stop)
			return rc;
		/* no batch is out here: what reached the inbox is recorded before
		 * the run takes another step (a cancel ends it at once) */
		if ((rc = drain_all(rn, NULL, err)) != REIN_OK)
			goto fail;
		for (size_t i = 0; i < rn->n && !rn->stopping; i++) /* the store is ours here too */
			if (rn->runs[i]->state == A_RUN &&
			    (rc = runner_kill_recheck(rn, rn->runs[i], err)) != REIN_OK)
				goto fail;
		for (size_t i = 0; i < rn->n; i++) {
			active *a = rn->runs[i];
			if (a->state != A_RUN || rn->stopping) /* stopping: no further step */
				continue;
			ran = true;
			if ((rc = advance(rn, a, err)) != REIN_OK)
				goto fail;
		}
		/* the barrier: everything parked, and every intent, becomes durable
		 * together; only then do the effects go out */
		if ((rc = runner_flush(rn, false, err)) != REIN_OK)
			return rc;
		/* mail the commit reported is read before any effect leaves */
		bool drained = false;
		if ((rc = drain_all(rn, &drained, err)) != REIN_OK)
			goto fail;
		if (drained) {
			/* what it recorded is durable before the effects go out */
			if ((rc = runner_flush(rn, false, err)) != REIN_OK)
				return rc;
			ran = true;
		}
		if ((rc = dispatch_all(rn, err)) != REIN_OK)
			goto fail;
		if (ran)
			continue;
		int64_t t = runner_now(rn), next = INT64_MAX;
		bool busy = false;
		for (size_t i = 0; i < rn->n; i++) {
			if (rn->runs[i]->state == A_SLEEP && rn->runs[i]->wake_at < next)
				next = rn->runs[i]->wake_at;
			busy |= rn->runs[i]->state == A_BUSY || rn->runs[i]->state == A_RUN;
		}
		if (next == INT64_MAX && !busy)
			return REIN_OK; /* nothing held */
		if (rn->io && (rein_io_inflight(rn->io) > 0 || rein_tools_inflight(rn->tx) > 0 ||
			       rein_model_router_inflight(rn->router) > 0)) {
			/* outcomes arrive as events from the callbacks; at least once
			 * a second, look for cancels asked by other processes */
			int64_t wait = next == INT64_MAX ? 1000 : (next > t ? next - t : 0);
			int64_t most = rn->o.stop ? 100 : 1000; /* a stop is seen soon */
			if (rein_io_wait(rn->io, wait > most ? most : wait) == 0 &&
			    (rc = check_mail(rn, err)) != REIN_OK)
				goto fail;
			if (rn->cb_rc != REIN_OK) {
				rc = rn->cb_rc;
				rn->cb_rc = REIN_OK;
				rein_err_set(err, rc, "%s", rn->cb_err.msg);
				goto fail;
			}
		} else if (next != INT64_MAX && next > t) {
			/* wake at least every half lease to renew the leases held,
			 * and every second while a run waits for a signal */
			int64_t nap = next - t, cap = rn->o.stop ? 100 : rn->o.lease_ms / 2;
			if (cap > 1000 && signal_sleepers(rn))
				cap = 1000;
			rn->o.sleep_ms(rn->o.ud, nap > cap ? cap : nap);
		}
		t = runner_now(rn);
		for (size_t i = 0; i < rn->n; i++)
			if (rn->runs[i]->state == A_SLEEP && rn->runs[i]->wake_at <= t) {
				rn->runs[i]->state = A_RUN;
				rn->runs[i]->peek = true; /* a cancel meanwhile wins over the timer */
			} else if (rn->runs[i]->state == A_SLEEP &&
				   rein_run_awaits_signal(rn->runs[i]->run)) {
				rn->runs[i]->peek = true; /* its signal may be in the inbox */
			}
	}
fail:
	/* A step's failure is an event, so an error here is a store or memory
	 * problem (or a simulated crash): memory may be ahead of the store, so
	 * forget every held run; the store keeps their last durable state and
	 * `resume` continues from it. */
	runner_drop_all(rn);
	return rc;
}

/* ---- retry from a step ----------------------------------------------------- */

/* The old run's events, copied up to the first event of step `from`. */
typedef struct retry_ctx {
	const char *from;
	json_t *evs; /* [[type, step|null, payload text], ...] before the cut */
	bool cut;    /* the first event of `from` was found */
	int rc;
	rein_err *err;
	rein_runner *rn;
	active *old; /* the old run, to open its sealed payloads (trace.redact), or NULL */
} retry_ctx;

static int retry_collect(void *ud, const rein_event_row *ev)
{
	retry_ctx *c = ud;
	if (ev->step && strcmp(ev->step, c->from) == 0) {
		c->cut = true;
		return 1; /* the rest is redone */
	}
	if (ev->payload == NULL) {
		c->rc = rein_err_set(c->err, REIN_ECORRUPT, "seq %lld: its payload was purged",
				     (long long)ev->seq);
		return 1;
	}
	const char *payload = ev->payload;
	char *real = NULL; /* a redacting run's payload with its values put back */
	if (c->old) {
		json_t *d = NULL;
		if ((c->rc = runner_protect_load(c->rn, c->old, ev, &d, c->err)) != REIN_OK)
			return 1;
		real = rein_json_dump(d);
		json_decref(d);
		if ((payload = real) == NULL) {
			c->rc = rein_err_set(c->err, REIN_ENOMEM, "out of memory");
			return 1;
		}
	}
	json_t *e = json_pack("[s, s?, s]", ev->type, ev->step, payload);
	rein_free(real);
	if (e == NULL || json_array_append_new(c->evs, e) != 0) {
		c->rc = rein_err_set(c->err, REIN_ENOMEM, "out of memory");
		return 1;
	}
	return 0;
}

int rein_runner_retry(rein_runner *rn, const char *old_id, const char *from, char id_out[64],
		      rein_err *err)
{
	assert(rn != NULL && old_id != NULL && from != NULL && id_out != NULL);
	assert(rn->fly == NULL);
	rein_run_row row = {0};
	active *a = NULL, *held = NULL, *old = NULL;
	size_t n0 = 0;
	json_t *data = NULL;
	retry_ctx c = {.from = from, .evs = json_array(), .err = err};
	int rc = c.evs ? rein_store_run_get(rn->st, old_id, &row, err)
		       : rein_err_set(err, REIN_ENOMEM, "out of memory");
	if (rc != REIN_OK)
		goto out;
	if (row.status < REIN_RUN_SUCCEEDED) {
		rc = rein_err_set(err, REIN_EINVAL,
				  "run %s has not ended (%s): cancel it before retrying it", old_id,
				  rein_status_name((rein_status)row.status));
		goto out;
	}
	/* the old run's version, whatever the workflow directory holds now */
	const rein_spec *spec = spec_for(rn, row.version, err);
	if (spec == NULL) {
		rc = err && err->code ? err->code : REIN_EIO;
		goto out;
	}
	if (spec->redact) { /* its payloads are sealed under the old run's id */
		if ((old = rein_calloc(1, sizeof *old)) == NULL) {
			rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
			goto out;
		}
		snprintf(old->id, sizeof old->id, "%s", old_id);
		old->spec = spec;
		if ((rc = runner_protect_init(rn, old, err)) != REIN_OK)
			goto out;
		c.rn = rn;
		c.old = old;
	}
	if (rein_spec_step(spec, from) < 0) {
		rc = rein_err_set(err, REIN_EINVAL,
				  "run %s: its workflow (version %.12s, which the retry uses) has no "
				  "step '%s'", old_id, row.version, from);
		goto out;
	}
	if ((rc = rein_store_events_load(rn->st, old_id, retry_collect, &c, err)) != REIN_OK ||
	    (rc = c.rc) != REIN_OK)
		goto out;
	if (!c.cut || json_array_size(c.evs) == 0) {
		rc = rein_err_set(err, REIN_EINVAL, "step '%s' never ran in run %s: nothing to retry "
				  "from", from, old_id);
		goto out;
	}
	if ((a = rein_calloc(1, sizeof *a)) == NULL) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	if ((rc = rein_random_id("run_", a->id, sizeof a->id)) != REIN_OK) {
		rein_err_set(err, rc, "cannot make a run id");
		goto out;
	}
	a->spec = spec;
	a->state = A_RUN;
	a->created_at = runner_now(rn);
	rein_event_genesis(a->id, a->last_hash);
	if ((rc = rein_run_new(spec, rn->sb, a->id, &a->run)) != REIN_OK) {
		rein_err_set(err, rc, "out of memory");
		goto out;
	}
	if ((rc = runner_protect_init(rn, a, err)) != REIN_OK)
		goto out;
	if ((rc = add_active(rn, a)) != REIN_OK) {
		rein_err_set(err, rc, "out of memory");
		goto out;
	}
	held = a;
	a = NULL;
	n0 = rn->nev;
	size_t i;
	json_t *e;
	json_array_foreach(c.evs, i, e)
	{
		const char *type = json_string_value(json_array_get(e, 0));
		const char *step = json_string_value(json_array_get(e, 1));
		const char *payload = json_string_value(json_array_get(e, 2));
		int k = rein_event_type_find(type);
		int s = step ? rein_spec_step(spec, step) : -1;
		if (k < 0 || (step && s < 0)) {
			rc = rein_err_set(err, REIN_ECORRUPT, "run %s: event %zu (%s) does not fit its "
					  "workflow", old_id, i + 1, type);
			goto out;
		}
		if (k == REIN_EV_RUN_RESUMED)
			continue; /* about the old run's workers */
		if ((data = rein_json_parse(payload, strlen(payload), err)) == NULL) {
			rc = err && err->code ? err->code : REIN_ECORRUPT;
			goto out;
		}
		if (k == REIN_EV_RUN_STARTED &&
		    json_object_set_new(data, "retry_of",
					json_pack("{s:s, s:s}", "run", old_id, "from", from)) != 0) {
			rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
			goto out;
		}
		/* pending events keep their type pointer: the table's names */
		if ((rc = append(rn, held, rein_event_name(k), s, data, err)) != REIN_OK)
			goto out;
		json_decref(data);
		data = NULL;
	}
	snprintf(id_out, 64, "%s", held->id);
	held = NULL;
out:
	if (held) { /* not started after all: forget it and what it appended */
		for (size_t j = n0; j < rn->nev; j++)
			rein_free(rn->ev[j].payload);
		rn->nev = n0;
		assert(rn->n > 0 && rn->runs[rn->n - 1] == held);
		rn->n--;
		runner_active_free(held);
	}
	json_decref(data);
	json_decref(c.evs);
	runner_active_free(a);
	runner_active_free(old);
	rein_run_row_clear(&row);
	return rc;
}
