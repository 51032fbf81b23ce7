/*
 * What the runner's files share (runner.c: commands → actions, leases,
 * batching; commit.c: group commit and the commit thread). Not a public
 * header: nothing outside src/runner includes it.
 */
#ifndef REIN_RUNNER_INT_H
#define REIN_RUNNER_INT_H

#include "runner.h"

#include "model.h"
#include "tools.h"

#include <pthread.h>

enum { A_RUN = 1, A_PARK_END, A_PARK_WAIT, A_SLEEP, A_BUSY };

/* One tool or model attempt in flight, owned by its callback. When the run is
 * dropped first, the ticket is marked dead and the callback only frees it. */
typedef struct ticket {
	struct rein_runner *rn;
	struct active *a;
	int step;
	int attempt;
	bool dead;
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
	bool mail;        /* the store holds inbox entries not yet in the log */
	bool peek;        /* look at the inbox before advancing (a timer woke it) */
	int64_t drained;     /* the last inbox seq recorded in the log (in memory) */
	int64_t drained_row; /* ... as written with the run's row last batched */
	int inflight;     /* tool attempts out */
	ticket *tickets;
	rein_redactor *red; /* trace.redact: placeholders of this run (protect.c), else NULL */
	char tenant[64];    /* whose key seals its protected values */
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
	int64_t drain_upto; /* mark the inbox drained up to this seq (0: nothing) */
	bool mail;        /* out: the inbox holds entries not yet drained */
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
	struct runner_alert *alerts; /* alert webhook posts under way (alert.c) */
	/* the organisation policies last read from the store ({version, rules},
	 * or NULL when none), read again at most once a second (governance.c) */
	json_t *org_cache;
	int64_t org_read_at;
	bool org_read;
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
	bool stopping;       /* opts.stop was seen: no new step, no new call */
	bool stopped;        /* ... and the held runs were released */
	int64_t stop_by;     /* when the calls still out are cut short */
	rein_io *io; /* created on the first tool call */
	int cb_rc;   /* an error inside an io callback, reported by drive */
	rein_err cb_err;
	rein_tools *tx;
	dispatch *dq; /* tool attempts waiting for the barrier */
	size_t ndq, dqcap;
	rein_model_router *router; /* model policy; created with io, at the first dispatch */
	/* the kill switches as of kill_ver (kill.c); reloaded when the store's
	 * version differs from it, which is read before every write call */
	rein_kill_row *kills;
	size_t nkills;
	int64_t kill_ver;
	bool kill_loaded;
	int64_t commit_ms; /* what a synchronous commit costs (a moving average, ms): a
			      code step that took longer is made durable at once */
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

/* Adds run.started's requester (opts) and the organisation policies current
 * in the store ({version, rules}, when any) to data (governance.c). */
int runner_start_governance(rein_runner *rn, json_t *data, rein_err *err);
/* Frees the cached organisation policies (rein_runner_free). */
void runner_governance_free(rein_runner *rn);

static inline int64_t runner_now(const rein_runner *rn) { return rein_clock_now(rn->o.clock); }

/* protect.c: protected payloads (trace.redact) */

/* Gives a its redactor when its spec redacts (REIN_EINVAL without a keyring). */
int runner_protect_init(rein_runner *rn, active *a, rein_err *err);
/* The payload text to store for data: redacted and sealed when a redacts,
 * else rein_json_dump(data). *payload: caller frees. */
int runner_protect_store(rein_runner *rn, active *a, const char *type, const json_t *data,
			 char **payload, rein_err *err);
/* The data the engine applies for a stored event: the payload with its sealed
 * values put back (the tenant's key must exist), learned by a's redactor.
 * *out: caller decrefs. REIN_ECORRUPT for a payload that does not parse. */
int runner_protect_load(rein_runner *rn, active *a, const rein_event_row *ev, json_t **out,
			rein_err *err);
/* rein_json_dump of v, redacted when a redacts (for the run row); NULL on OOM. */
char *runner_protect_dump(active *a, const json_t *v);
/* Redacts *reason (owned) in place when a redacts. REIN_ENOMEM only. */
int runner_protect_reason(active *a, char **reason);

/* runner.c */

/* Grows *v (elements of size) to hold need; REIN_ENOMEM leaves it as it was. */
int runner_grow(void **v, size_t *cap, size_t need, size_t size);
/* Queues a's state as a result (rein_runner_result). */
int runner_push_result(rein_runner *rn, active *a);
void runner_active_free(active *a);
/* Forgets every held run and every pending event (after a store error). */
void runner_drop_all(rein_runner *rn);

/* kill.c: the kill switch and shadow mode, before the wire */

/*
 * Decides whether write call `call` of run a's step may leave now (the store
 * is ours: no batch in flight). A shadow run records tool.shadowed and the
 * contract's shadow result as the call's outcome; a call a switch covers is
 * recorded as kill.held. *kept true in both cases (nothing is sent; the run
 * goes on advancing), false when the call may go out.
 */
int runner_write_gate(rein_runner *rn, active *a, int step, const rein_tool_call *call,
		      bool *kept, rein_err *err);
/* A run held by a switch: kill.lifted for each held call no switch covers now. */
int runner_kill_recheck(rein_runner *rn, active *a, rein_err *err);
/* Frees the cached switches (rein_runner_free). */
void runner_kill_free(rein_runner *rn);

/* The event plumbing kill.c shares with runner.c: appends type (a table name)
 * for step with data (borrowed), stamped now. */
int runner_append(rein_runner *rn, active *a, const char *type, int step, const json_t *data,
		  rein_err *err);

/* commit.c: group commit */

/* The adaptive barrier: a code step that ran longer than this (ms) is
 * committed before the run goes on, so a crash never makes a resume repeat
 * more work than a commit costs: the measured cost of a commit, and at
 * least RUNNER_BARRIER_MIN_MS (microsecond steps never commit on their own). */
#define RUNNER_BARRIER_MIN_MS 5
int64_t runner_barrier_ms(const rein_runner *rn);

/*
 * Commits what is pending: the events, the specs of new runs, the rows of the
 * runs that changed. With async (and opts.commit_thread) the transaction runs
 * on the commit thread while this one goes on; nothing in that batch is
 * released, and no effect goes out, until it is complete, which the next
 * flush waits for first. After each commit, on this thread, opts.on_commit
 * hears the committed events. On failure every held run is dropped.
 */
int runner_flush(rein_runner *rn, bool async, rein_err *err);

/* Per-tenant limits (rate.c). In the batch's transaction: notes p when it is
 * a tool.intent (rein_store_call_note for the run's tenant, "default" when it
 * names none). */
int runner_note_call(rein_store *st, const pending *p, rein_err *err);
/* Whether a's policies hold a per-tenant limit. */
bool runner_rated(const active *a);
/* Commits what is pending, then gives a's run the counts of its tenant's
 * calls for each per-tenant limit (rein_run_set_tenant_counts); a store
 * that cannot count leaves none (those rules then deny, fail closed).
 * REIN_ENOMEM or a commit's error. */
int runner_rate_counts(rein_runner *rn, active *a, rein_err *err);
/* Is a batch in flight that the runner may keep appending behind? */
bool runner_fly_busy(rein_runner *rn);
/* Waits for the batch in flight and hands its committed events to on_commit
 * (its outcome no longer matters otherwise); used when dropping everything. */
void runner_commit_settle(rein_runner *rn);
/* Stops the commit thread and frees the batches (rein_runner_free). */
void runner_commit_free(rein_runner *rn);

/* The approval.alert events among rows (just committed): each POSTed to
 * REIN_ALERT_WEBHOOK on a thread of its own, retried (alert.c). */
void runner_alerts_note(rein_runner *rn, const rein_event_row *rows, size_t n);
/* The spec of run id held by rn (for its alerts.webhook), or NULL. */
const rein_spec *runner_spec_of(rein_runner *rn, const char *id);
/* Waits for the alert posts still under way (rein_runner_free). */
void runner_alerts_wait(rein_runner *rn);

#endif
