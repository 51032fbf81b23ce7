/*
 * store: the durable event log behind one table of operations
 * (rein_store_ops). A backend implements that table from this header alone:
 * SQLite is the embedded one (store_sqlite.h), PostgreSQL comes later, and
 * the tests run the same suite over an in-memory backend and a
 * fault-injecting wrapper (tests/unit/memstore.h, tests/unit/faultstore.h).
 *
 * Events are append-only. Each event's hash chains to the run's previous one:
 *
 *   hash = SHA-256( prev_hash[32] || be64(seq) || type NUL || step NUL ||
 *                   be64(at) || payload_hash[32] )
 *
 * with prev_hash for seq 1 the run's genesis, SHA-256("rein.run\0" || run
 * id), which binds the chain to its run (payloads need not repeat the id, so
 * equal payloads of different runs are stored once), and payload_hash =
 * SHA-256(payload JSON text). Payloads live in a content-addressed table, so a
 * retention job can purge a payload without breaking the chain.
 *
 * The runs' chains are anchored in one global chain: when a run ends or
 * suspends (its row gives the lease up), the transaction that writes its
 * last events and its row also appends an anchor {seq, run_id, run_last_seq,
 * run_head_hash, prev_hash, hash} (rein_anchor_row, rein_anchor_hash):
 *
 *   hash = SHA-256( "rein.anchor" NUL || prev_hash[32] || be64(seq) ||
 *                   run_id NUL || be64(run_last_seq) || run_head_hash[32] )
 *
 * with seq from 1 in append order and prev_hash the previous anchor's hash,
 * 32 zero bytes for seq 1. So deleting a whole run (its row and its events)
 * leaves anchors that name a run that is gone, and rewriting a run's chain
 * consistently leaves anchored heads that are no longer on it.
 *
 * Transactions. rein_store_begin opens one write transaction on the handle;
 * every operation called until commit or rollback is part of it, and sees
 * what the transaction wrote so far (read-your-writes: run_get, events_load,
 * inbox_list inside a transaction return its own uncommitted rows). Nothing
 * of it is visible to other handles before commit. A failed commit has rolled
 * back. Operations marked "autocommits" make their own transaction and must
 * not be called inside one (REIN_EINVAL); operations marked "in a transaction"
 * require one (REIN_EINVAL otherwise); the others (no mark) commit on their
 * own outside a transaction and join it inside. The runner batches many
 * runs' events into one transaction (group commit) and commits only at
 * durability barriers.
 *
 * Strings and ownership. Every const char * an operation takes is borrowed
 * for the call only: the backend copies what it keeps. Rows the store returns
 * own all their strings (freed by rein_run_row_clear, rein_run_rows_free,
 * rein_inbox_rows_free), except the rein_event_row handed to an events_load
 * callback, whose strings are valid during that callback only.
 *
 * Errors: REIN_OK or a negative rein_err code set in *err (which may be NULL)
 * with a message; out-parameters are written only on success. REIN_ENOTFOUND
 * for an unknown run or spec, REIN_ECONFLICT for a lease held elsewhere or a
 * duplicate key, REIN_EIO for the backend's own failures, REIN_ENOMEM.
 *
 * Threads: one thread at a time uses a handle (the runner may hand it to its
 * commit thread and back under its own lock).
 */
#ifndef REIN_STORE_H
#define REIN_STORE_H

#include "base.h"

typedef struct rein_store rein_store;

/*
 * One run. id and version are inline; every char * field is owned by the row
 * when the store filled it (run_get, run_list, claim_due: free with
 * rein_run_row_clear), and borrowed for the call when the caller passes a row
 * in (run_insert, run_update never keep or free the caller's pointers).
 */
typedef struct rein_run_row {
	char id[64];
	char *workflow;      /* the workflow's name */
	char version[65];    /* the spec's content hash */
	int status;          /* rein_status */
	int64_t created_at, updated_at;
	int64_t wake_at;     /* waiting: earliest timer, else 0 */
	char *lease_owner;   /* NULL: free */
	int64_t lease_expires;
	int64_t last_seq;
	uint8_t last_hash[REIN_HASH_LEN];
	char *output;        /* JSON text once ended, else NULL */
	char *reason;        /* NULL unless ended with one */
	bool mail;           /* the run's inbox holds undrained entries (read only:
				set by inbox_put, cleared by inbox_drained) */
} rein_run_row;

/* Frees the row's owned strings and zeroes it; accepts NULL. */
void rein_run_row_clear(rein_run_row *r);
/* Clears and frees an array of n rows from run_list or claim_due; accepts NULL. */
void rein_run_rows_free(rein_run_row *rows, size_t n);

/* One event. All strings are borrowed (see events_load for their lifetime). */
typedef struct rein_event_row {
	const char *run_id;
	int64_t seq;
	const char *type;
	const char *step; /* NULL for run-level events */
	int64_t at;
	const char *payload; /* JSON text; NULL when purged */
	uint8_t payload_hash[REIN_HASH_LEN];
	uint8_t prev_hash[REIN_HASH_LEN];
	uint8_t hash[REIN_HASH_LEN];
} rein_event_row;

/* The prev_hash of a run's first event. */
void rein_event_genesis(const char *run_id, uint8_t out[REIN_HASH_LEN]);
/* Computes payload_hash (from payload) and hash (from the rest) of ev. */
void rein_event_hash(rein_event_row *ev);
/* Recomputes ev->hash from its fields (payload_hash as stored) into out.
 * Streams the fields into the digest: never allocates, cannot fail. */
void rein_event_chain_hash(const rein_event_row *ev, uint8_t out[REIN_HASH_LEN]);

/* One anchor of the global chain (see the formula above); all inline. */
typedef struct rein_anchor_row {
	int64_t seq;          /* from 1, append order */
	char run_id[64];
	int64_t run_last_seq; /* the run's last event when it was anchored */
	uint8_t run_head_hash[REIN_HASH_LEN]; /* that event's hash */
	uint8_t prev_hash[REIN_HASH_LEN];     /* the previous anchor's hash (seq 1: zeros) */
	uint8_t hash[REIN_HASH_LEN];
} rein_anchor_row;

/* Computes a->hash from a's other fields (the formula above). Never
 * allocates, cannot fail. */
void rein_anchor_hash(const rein_anchor_row *a, uint8_t out[REIN_HASH_LEN]);

/*
 * One entry of a run's inbox: something from outside the run (a cancel, a
 * signal with data, an approval) waiting to be drained into its log. Passed
 * to inbox_put, the strings are borrowed and seq is ignored; returned by
 * inbox_list, the row owns them (rein_inbox_rows_free).
 */
typedef struct rein_inbox_row {
	const char *run_id;
	int64_t seq;        /* arrival order in the run's inbox, from 1; set by the store */
	const char *id;     /* chosen by the sender; unique per run (idempotency) */
	const char *type;   /* "cancel", "signal", ... */
	const char *data;   /* JSON text or NULL */
	const char *sender; /* who sent it, or NULL */
	int64_t at;         /* ms since the epoch, the sender's clock */
} rein_inbox_row;

void rein_inbox_rows_free(rein_inbox_row *rows, size_t n);

/* Which page of runs run_list returns: newest first (created_at descending,
 * then id ascending), after the cursor (after_id NULL: from the newest). */
typedef struct rein_run_query {
	int status;            /* rein_status, or -1 for any */
	const char *after_id;  /* the last row of the previous page, or NULL */
	int64_t after_created; /* that row's created_at */
	size_t limit;          /* rows at most, >= 1 */
} rein_run_query;

/* Tells whether the holder of a lease is alive (e.g. rein_owner_alive for a
 * process on this host). Must not use the store. */
typedef bool (*rein_owner_alive_fn)(void *ud, const char *owner);

/* What claim_due claims; see rein_store_claim_due. */
typedef struct rein_claim_req {
	const char *owner;       /* who takes the leases */
	int64_t now;             /* a lease with lease_expires <= now is expired */
	int64_t horizon;         /* waiting runs with wake_at <= horizon are due */
	int64_t lease_until;     /* the new leases' lease_expires */
	size_t limit;            /* runs at most, >= 1 */
	rein_owner_alive_fn alive; /* NULL: every unexpired lease is live */
	void *alive_ud;
} rein_claim_req;

/*
 * One kill switch (`rein kill`): no write call it covers leaves any process
 * using the store while it is set. A NULL selector covers everything: a switch
 * with workflow "pay" and tool NULL covers every write tool of runs of pay.
 * Passed to kill_set / kill_lift the strings are borrowed and id ignored;
 * returned by kill_list the row owns them (rein_kill_rows_free).
 */
typedef struct rein_kill_row {
	int64_t id;           /* set by the store, from 1; kept across a re-kill */
	const char *workflow; /* NULL: any workflow */
	const char *tool;     /* NULL: any write tool */
	const char *tenant;   /* NULL: any tenant, and runs without one */
	const char *reason;
	const char *by;       /* who set it, or NULL */
	int64_t at;           /* ms since the epoch, the setter's clock */
} rein_kill_row;

void rein_kill_rows_free(rein_kill_row *rows, size_t n);

/* One tool call of a tenant's run, noted for the per-tenant limits
 * (docs/policy.md, limit.per: tenant). Strings borrowed. */
typedef struct rein_call_row {
	const char *tenant; /* the run's requester.tenant, "default" when none */
	const char *run_id;
	int64_t seq;        /* the tool.intent's seq in the run */
	const char *tool;
	bool write;
	int64_t at;         /* the intent's time, ms since the epoch */
} rein_call_row;

/* Calls of one (tool, write) counted by rein_store_call_counts; tool owned
 * (rein_call_counts_free). */
typedef struct rein_call_count {
	char *tool;
	bool write;
	int64_t n;
} rein_call_count;
void rein_call_counts_free(rein_call_count *rows, size_t n);

/* What rein_store_purge removed (or, dry_run, would remove). */
typedef struct rein_purge_stats {
	int64_t runs;     /* ended runs selected (ended before the cutoff) */
	int64_t payloads; /* distinct payloads deleted */
	int64_t bytes;    /* their text's size */
	int64_t shared;   /* payloads of selected runs kept: a run not selected uses them */
	int64_t rows;     /* run rows whose output and reason were cleared */
	int64_t inbox;    /* inbox entries whose data was cleared */
} rein_purge_stats;

/*
 * One deployment of a workflow version (`rein deploy`, docs/operations.md
 * "Canaries"): a version of workflow name made the stable one, or the
 * candidate that receives percent % of new runs. Rows are never deleted: a
 * deployment that stops being in force keeps its row with state, reason and
 * ended_at, so the table is the history of who deployed what and why it was
 * rolled back. Passed to deploy_add the strings are borrowed and id, state,
 * reason and ended_at ignored (a new row is active); returned by deploy_list
 * the row owns them (rein_deploy_rows_free).
 */
typedef struct rein_deploy_row {
	int64_t id;          /* set by the store, from 1, in deploy order */
	char *name;          /* the workflow's name */
	char version[65];    /* the spec's content hash (its bundle is in the store) */
	char *role;          /* "stable" or "candidate" */
	int percent;         /* candidate: 1..99, its share of new runs; stable: 0 */
	char *rule;          /* candidate: the rollback rule (JSON text), or NULL */
	char *state;         /* "active", "superseded", "promoted" or "rolled_back" */
	char *reason;        /* why it left "active" (NULL while active) */
	char *by;            /* who deployed it, or NULL */
	int64_t at;          /* deployed (ms since the epoch, the deployer's clock) */
	int64_t ended_at;    /* left "active"; 0 while active */
} rein_deploy_row;

void rein_deploy_rows_free(rein_deploy_row *rows, size_t n);

/* Runs of one workflow version by status (rein_status, 0 .. REIN_STORE_NSTATUS-1). */
#define REIN_STORE_NSTATUS 8
typedef struct rein_run_counts {
	int64_t n[REIN_STORE_NSTATUS];
} rein_run_counts;

typedef int (*rein_event_cb)(void *ud, const rein_event_row *ev);
typedef void (*rein_problem_cb)(void *ud, const char *problem);
typedef int (*rein_run_cb)(void *ud, const rein_run_row *row);
typedef int (*rein_anchor_cb)(void *ud, const rein_anchor_row *a);

/*
 * The table of operations a backend implements: each has the contract of the
 * rein_store_ function of the same name below (be is the backend's handle).
 * Every entry is required. close releases the handle (rolling back an open
 * transaction); rollback never fails and accepts "no transaction".
 */
typedef struct rein_store_ops {
	void (*close)(void *be);
	int (*begin)(void *be, rein_err *err);
	int (*commit)(void *be, rein_err *err);
	void (*rollback)(void *be);
	int (*spec_put)(void *be, const char *version, const char *name, const char *bundle,
			rein_err *err);
	int (*spec_get)(void *be, const char *version, char **bundle, rein_err *err);
	int (*run_insert)(void *be, const rein_run_row *row, rein_err *err);
	int (*run_update)(void *be, const rein_run_row *row, const char *owner, bool *mail,
			  rein_err *err);
	int (*run_get)(void *be, const char *id, rein_run_row *row, rein_err *err);
	int (*run_list)(void *be, const rein_run_query *q, rein_run_row **rows, size_t *n,
			rein_err *err);
	int (*lease_claim)(void *be, const char *id, const char *expect_owner, const char *owner,
			   int64_t expires, rein_err *err);
	int (*claim_due)(void *be, const rein_claim_req *req, rein_run_row **rows, size_t *n,
			 rein_err *err);
	int (*event_append)(void *be, const rein_event_row *ev, rein_err *err);
	int (*events_load)(void *be, const char *run_id, rein_event_cb cb, void *ud, rein_err *err);
	int (*inbox_put)(void *be, const rein_inbox_row *msg, bool *dup, rein_err *err);
	int (*inbox_list)(void *be, const char *run_id, rein_inbox_row **out, size_t *n,
			  rein_err *err);
	int (*inbox_drained)(void *be, const char *run_id, int64_t upto_seq, rein_err *err);
	int (*check)(void *be, rein_problem_cb cb, void *ud, int *n, rein_err *err);
	/* the global anchor chain (rein_store_anchor, rein_store_anchors_load):
	 * anchor_last sets *found false on an empty chain (a left untouched);
	 * anchor_append is called in a transaction with a->seq the last + 1
	 * (REIN_ECONFLICT for a seq already stored) */
	int (*anchor_last)(void *be, rein_anchor_row *a, bool *found, rein_err *err);
	int (*anchor_append)(void *be, const rein_anchor_row *a, rein_err *err);
	int (*anchors_load)(void *be, rein_anchor_cb cb, void *ud, rein_err *err);
	int (*kill_set)(void *be, const rein_kill_row *k, int64_t *id, rein_err *err);
	int (*kill_lift)(void *be, const rein_kill_row *sel, int *n, rein_err *err);
	int (*kill_list)(void *be, int64_t *version, rein_kill_row **rows, size_t *n,
			 rein_err *err);
	int (*kill_version)(void *be, int64_t *version, rein_err *err);
	/* optional (NULL: the backend keeps no organisation policies) */
	int (*org_policy_put)(void *be, const char *version, const char *rules, int64_t at,
			      rein_err *err);
	int (*org_policy_current)(void *be, char **version, char **rules, rein_err *err);
	/* optional (NULL: rein_store_purge says "not supported") */
	int (*purge)(void *be, int64_t ended_before, bool dry_run, rein_purge_stats *st,
		     rein_err *err);
	/* optional (NULL: calls are not noted, and rein_store_call_counts says
	 * "not supported", so per-tenant limits fail closed) */
	int (*call_note)(void *be, const rein_call_row *c, rein_err *err);
	int (*call_counts)(void *be, const char *tenant, int64_t since, rein_call_count **rows,
			   size_t *n, rein_err *err);
	/* optional, all four or none (NULL: rein_store_deploy_* say "not
	 * supported"); contracts at rein_store_deploy_add and below */
	int (*deploy_add)(void *be, const rein_deploy_row *d, int64_t *id, rein_err *err);
	int (*deploy_end)(void *be, int64_t id, const char *state, const char *reason, int64_t at,
			  rein_err *err);
	int (*deploy_list)(void *be, const char *name, rein_deploy_row **rows, size_t *n,
			   rein_err *err);
	int (*run_counts)(void *be, const char *workflow, const char *version, int64_t since,
			  int64_t until, rein_run_counts *c, rein_err *err);
} rein_store_ops;

typedef struct rein_store_opts {
	bool no_sync;    /* SQLite: synchronous=NORMAL instead of FULL (tests only) */
	bool must_exist; /* never create a store: REIN_ENOTFOUND "no database at PATH"
			    when there is none (what every command but `rein run`
			    opens with, so a mistyped --db is an error, not a new
			    empty store that verifies) */
} rein_store_opts;

/*
 * Opens the store named by url: "sqlite:PATH", or a bare PATH (also SQLite,
 * as `--db PATH`), creating it unless opts->must_exist. "postgres://..." and
 * any other "scheme://" are refused with REIN_EINVAL and a message saying so.
 * opts may be NULL (create if needed). Caller closes with rein_store_close.
 *
 * SQLite: the store is three files, PATH, PATH-wal and PATH-shm, and the WAL
 * holds the last committed transactions until they are checkpointed into
 * PATH: deleting it loses them. When an open finds PATH-shm recording WAL
 * frames that were never checkpointed while PATH-wal is gone or shorter, it
 * records the loss in the store (meta), where rein_store_check reports it.
 */
int rein_store_open(const char *url, const rein_store_opts *opts, rein_store **out,
		    rein_err *err);
/* Makes a store of any backend: ops is borrowed for the store's life, be is
 * owned by it (ops->close(be) at rein_store_close). REIN_ENOMEM only. */
int rein_store_wrap(const rein_store_ops *ops, void *be, rein_store **out);
/* Closes the backend (rolling back an open transaction) and frees s; accepts NULL. */
void rein_store_close(rein_store *s);

/* Opens a write transaction. REIN_EINVAL inside one. */
int rein_store_begin(rein_store *s, rein_err *err);
/* Makes the transaction durable (SQLite: fsync unless no_sync). On failure
 * the transaction has been rolled back. REIN_EINVAL outside one. */
int rein_store_commit(rein_store *s, rein_err *err);
/* Abandons the transaction's writes; a no-op outside one. */
void rein_store_rollback(rein_store *s);

/* Stores a spec bundle (JSON text) under its version; a version already
 * stored is left as it is (no error). */
int rein_store_spec_put(rein_store *s, const char *version, const char *name, const char *bundle,
			rein_err *err);
/*
 * *bundle: JSON text, caller frees with rein_free. REIN_ENOTFOUND if unknown.
 * The bundle is checked against its version on every load: version is the
 * lowercase hex SHA-256 of the bundle text exactly as stored (the spec layer
 * stores rein_json_dump of the bundle and hashes that same text, see
 * rein_spec.version); a bundle that does not match is REIN_ECORRUPT ("the
 * stored bundle of version V does not match its hash"), never returned.
 */
int rein_store_spec_get(rein_store *s, const char *version, char **bundle, rein_err *err);

/*
 * Organisation policies (docs/policy.md): a load records rules (JSON text,
 * the canonical dump of the list) under version (its hex SHA-256) as the
 * current set; every load is kept (the history of versions). Autocommits.
 * REIN_EINVAL when version is not the hash of rules; REIN_EINVAL "not
 * supported" on a backend without them.
 */
int rein_store_org_policy_put(rein_store *s, const char *version, const char *rules, int64_t at,
			      rein_err *err);
/* The current set: *version and *rules (caller frees both), or both NULL when
 * none was loaded. REIN_ECORRUPT when the stored rules do not match their
 * version. */
int rein_store_org_policy_current(rein_store *s, char **version, char **rules, rein_err *err);
/* Inserts a new run with every field of row (mail starts false).
 * REIN_ECONFLICT when the id exists. */
int rein_store_run_insert(rein_store *s, const rein_run_row *row, rein_err *err);
/*
 * Updates status, updated_at, wake_at, lease_owner, lease_expires, last_seq,
 * last_hash, output and reason of row->id, only while the lease is held by
 * owner (NULL: unconditionally); workflow, version, created_at and mail are
 * not written. REIN_ECONFLICT when the lease is gone (or the run unknown).
 * *mail (may be NULL) gets the run's mail flag as of this update, so the
 * holder hears of new inbox entries in the commit it makes anyway.
 */
int rein_store_run_update(rein_store *s, const rein_run_row *row, const char *owner, bool *mail,
			  rein_err *err);
/* Fills row (caller clears it). REIN_ENOTFOUND if unknown. */
int rein_store_run_get(rein_store *s, const char *id, rein_run_row *row, rein_err *err);
/*
 * One page of runs in the order of rein_run_query. *rows: an array of *n <=
 * q->limit rows (NULL when 0), caller frees with rein_run_rows_free; fewer than
 * limit means the last page. Calls nothing back, and leaves no cursor open:
 * the caller may use the store between pages.
 */
int rein_store_run_list(rein_store *s, const rein_run_query *q, rein_run_row **rows, size_t *n,
			rein_err *err);
/*
 * Calls cb for each run with that status (-1: all), newest first, a page at a
 * time through run_list: cb may use the store (no cursor is open while it
 * runs). Stops at cb's first non-zero return (negative: returned as the
 * error).
 */
int rein_store_run_each(rein_store *s, int status, rein_run_cb cb, void *ud, rein_err *err);
/*
 * Takes the lease of run id for owner until expires, provided it is still held
 * by expect_owner (NULL: free). REIN_ECONFLICT otherwise. owner NULL releases
 * the lease.
 */
int rein_store_lease_claim(rein_store *s, const char *id, const char *expect_owner,
			   const char *owner, int64_t expires, rein_err *err);
/*
 * Finds runs ready to advance and leases them to req->owner until
 * req->lease_until, in one transaction (autocommits): runs that are running,
 * or waiting with 0 < wake_at <= req->horizon (0: no timer), or waiting with
 * mail (an inbox entry, e.g. a signal, to read), whose lease is free, expired
 * (lease_expires <= req->now) or held by an owner req->alive says is dead.
 * Runs already leased to req->owner and unexpired are not returned. At most
 * req->limit runs, running ones first, then by wake_at, then by id. *rows
 * (array of *n, caller frees with rein_run_rows_free) holds each run as it was
 * BEFORE the claim: lease_owner is the previous holder (NULL: it was free), so
 * the caller can tell an abandoned run. Every returned run is leased to owner
 * when this returns; a run claimed by another worker concurrently is skipped,
 * never returned to both (PostgreSQL: SELECT ... FOR UPDATE SKIP LOCKED, then
 * one UPDATE; SQLite: under BEGIN IMMEDIATE). req->alive is called with no
 * cursor open on the store, for leases that are unexpired.
 */
int rein_store_claim_due(rein_store *s, const rein_claim_req *req, rein_run_row **rows, size_t *n,
			 rein_err *err);
/*
 * Appends one event (seq = the run's next, ev->hash already computed with
 * rein_event_hash). The run must exist (REIN_ENOTFOUND); a seq already stored
 * is REIN_ECONFLICT (possibly only at commit: a backend may hold appends until
 * then). Does not touch the run row: run_update records last_seq/last_hash.
 */
int rein_store_event_append(rein_store *s, const rein_event_row *ev, rein_err *err);
/* Calls cb for each event of the run in seq order (none for an unknown run);
 * stops on a non-zero return (negative: returned as the error). The row and
 * its strings are valid during the callback only. cb must not use the store
 * (a cursor may be open). */
int rein_store_events_load(rein_store *s, const char *run_id, rein_event_cb cb, void *ud,
			   rein_err *err);

/*
 * Appends msg to run msg->run_id's inbox and sets the run's mail flag. A
 * second put of the same (run, id) changes nothing and sets *dup (may be
 * NULL; false otherwise). msg->seq is ignored: the store numbers entries in
 * arrival order. REIN_ENOTFOUND for an unknown run. Autocommits (it is called
 * by other processes, e.g. `rein cancel`). Works on ended runs too (the
 * entries are never drained).
 */
int rein_store_inbox_put(rein_store *s, const rein_inbox_row *msg, bool *dup, rein_err *err);
/* The run's undrained entries in arrival (seq) order: *out an array of *n
 * (NULL when 0; an unknown run has none), caller frees with
 * rein_inbox_rows_free. */
int rein_store_inbox_list(rein_store *s, const char *run_id, rein_inbox_row **out, size_t *n,
			  rein_err *err);
/*
 * In a transaction (the one that appends the events recording the entries in
 * the run's log, so both commit or neither): marks the run's entries with seq
 * <= upto_seq drained, and clears the mail flag when no undrained entry is
 * left. Drained entries are kept (a later put of the same id is still a dup).
 */
int rein_store_inbox_drained(rein_store *s, const char *run_id, int64_t upto_seq, rein_err *err);
/* Puts the inbox entry {id "cancel", type "cancel"} for run id (a repeated
 * cancel is not an error). Autocommits. REIN_ENOTFOUND for an unknown run. */
int rein_store_cancel_request(rein_store *s, const char *id, rein_err *err);

/* ---- the kill switch ------------------------------------------------------ */

/*
 * Sets the switch with k's selector (workflow, tool, tenant; NULL: any) and
 * reason (required), by and at. A switch with exactly that selector already
 * set keeps its id and takes the new reason, by and at. *id (may be NULL)
 * gets the switch's id. Raises the kill version in the same transaction.
 * Autocommits: once this returns, every later kill_version or kill_list on
 * any handle sees the switch.
 */
int rein_store_kill_set(rein_store *s, const rein_kill_row *k, int64_t *id, rein_err *err);
/* Lifts the switch with exactly sel's selector (sel->reason etc. ignored):
 * *n (may be NULL) 1 when one was set, 0 otherwise. Raises the kill version
 * when one was lifted. Lifted switches are kept (history), never listed
 * again. Autocommits. */
int rein_store_kill_lift(rein_store *s, const rein_kill_row *sel, int *n, rein_err *err);
/* The switches set (id order) and *version, the kill version they are as of,
 * read together (one snapshot). *rows: an array of *n (NULL when 0), caller
 * frees with rein_kill_rows_free. */
int rein_store_kill_list(rein_store *s, int64_t *version, rein_kill_row **rows, size_t *n,
			 rein_err *err);
/* The kill version: 0 for a store where no switch was ever set, raised by
 * every kill_set and every kill_lift that lifted one. Cheap (one row), for a
 * cache of kill_list to check at each dispatch. */
int rein_store_kill_version(rein_store *s, int64_t *version, rein_err *err);

/*
 * In a transaction (the one that writes the run's last events and the row
 * that gives its lease up, so both commit or neither): appends the anchor of
 * run_id's head (its event last_seq, whose hash is head) to the global chain,
 * after the chain's last anchor (read in the same transaction, so concurrent
 * writers serialise on it). *out (may be NULL) gets the anchor. REIN_EINVAL
 * outside a transaction.
 */
int rein_store_anchor(rein_store *s, const char *run_id, int64_t last_seq,
		      const uint8_t head[REIN_HASH_LEN], rein_anchor_row *out, rein_err *err);
/* In a transaction: appends a exactly as given (a->hash computed, a->seq the
 * chain's last + 1, else REIN_ECONFLICT, possibly only at commit). For
 * wrapping backends; the runner uses rein_store_anchor. */
int rein_store_anchor_append(rein_store *s, const rein_anchor_row *a, rein_err *err);
/* The chain's last anchor; *found false (a untouched) when there is none. */
int rein_store_anchor_last(rein_store *s, rein_anchor_row *a, bool *found, rein_err *err);
/* Calls cb for every anchor in seq order, as stored (nothing is checked);
 * stops on a non-zero return (negative: returned as the error). cb must not
 * use the store (a cursor may be open). */
int rein_store_anchors_load(rein_store *s, rein_anchor_cb cb, void *ud, rein_err *err);

/*
 * Recomputes the chain of one run: every hash, every link, every payload
 * present against its hash, and the run row's last seq and hash; then checks
 * the row against the log: a run whose log holds run.ended must have that
 * event's status, reason and output in its row (an output or reason purged
 * from the event is not compared), a run without one must not have an ended
 * status; and its workflow bundle against its version (rein_store_spec_get).
 * On a mismatch returns REIN_ECORRUPT with *bad_seq set to the first bad
 * sequence number (the seq of run.ended for a row that disagrees with it, 0
 * when the row has no event to disagree with, or for the bundle).
 */
int rein_store_verify_run(rein_store *s, const char *run_id, int64_t *bad_seq, rein_err *err);

/*
 * Retention (`rein gc`): purges the payloads of the runs that ended
 * (succeeded, failed, escalated, cancelled; not needs_review, which a review
 * can reopen, nor running or waiting ones) with updated_at < ended_before.
 * Events stay, with their payload_hash: every chain and anchor still
 * verifies, and events_load returns the purged payloads as NULL. A payload
 * is content-addressed: one that an event of a run not selected also uses is
 * kept (st->shared). A selected run whose run.ended payload is gone also has
 * its row's output and reason cleared (verify_run compares them only with a
 * payload present), and its inbox entries lose their data. A later event with
 * an equal payload stores it again (and the purged events show it again).
 * dry_run: counts without changing anything. *st (may be NULL) gets the
 * counts. Autocommits (REIN_EINVAL inside a transaction). SQLite: the
 * deleted text is overwritten (secure_delete) and its pages are reused by
 * later writes; the file does not shrink (docs/operations.md, Retention).
 */
int rein_store_purge(rein_store *s, int64_t ended_before, bool dry_run, rein_purge_stats *st,
		     rein_err *err);

/* ---- deployments (canaries; docs/operations.md) -------------------------- */

/*
 * Adds an active deployment (d's id, state, reason, ended_at are ignored);
 * *id (may be NULL) is its id. Joins the caller's transaction, else
 * autocommits. The caller ends the one it replaces (deploy_end) in the same
 * transaction: the store keeps no rule about how many are active.
 * REIN_EINVAL when the backend keeps no deployments.
 */
int rein_store_deploy_add(rein_store *s, const rein_deploy_row *d, int64_t *id, rein_err *err);
/*
 * Ends active deployment id: sets its state (not "active"), reason (may be
 * NULL) and ended_at. REIN_ENOTFOUND when no active deployment has that id
 * (unknown, or ended already: the first end wins). Joins or autocommits.
 */
int rein_store_deploy_end(rein_store *s, int64_t id, const char *state, const char *reason,
			  int64_t at, rein_err *err);
/* The deployments of workflow name (NULL: of every workflow), in id order,
 * ended ones included. Caller frees with rein_deploy_rows_free. */
int rein_store_deploy_list(rein_store *s, const char *name, rein_deploy_row **rows, size_t *n,
			   rein_err *err);
/* The number of runs of workflow at version created in [since, until)
 * (until 0: no end), by status (zeros when none). */
int rein_store_run_counts(rein_store *s, const char *workflow, const char *version,
			  int64_t since, int64_t until, rein_run_counts *c, rein_err *err);

/* ---- views and audit (view.c, verify.c) ---- */

/*
 * The JSON view of a run row: {run, workflow, version, status, created_at,
 * updated_at, event_count[, output][, reason][, wake_at][, lease_owner]
 * [, cancel_requested]} (`rein show --json` adds the list as "events"). The
 * view of an event row: {seq, type, step, at, data, hash}, where data is the
 * payload, or {"purged": true} with "purged": true beside it when a retention
 * job removed the payload (a stored JSON null stays null, unmarked). New
 * references the caller owns; NULL when out of memory.
 */
json_t *rein_run_row_json(const rein_run_row *r);
json_t *rein_event_row_json(const rein_event_row *ev);

typedef struct rein_verify_stats {
	int runs, bad;  /* runs verified, runs whose chain did not verify */
	int64_t events; /* events covered (sum of last_seq) */
	int store_problems; /* problems of the store itself (rein_store_check) */
	int64_t anchors;    /* anchors in the global chain */
	int anchor_problems; /* breaks of the anchor chain, anchors of runs that are gone */
	uint8_t anchor_head[REIN_HASH_LEN]; /* the last anchor's hash (zeros: none) */
	/* rein_store_verify_one: the run's latest anchor (0: none) and its run seq */
	int64_t run_anchor, run_anchor_seq;
} rein_verify_stats;
/* A run whose chain did not verify: bad_seq its first bad event (0: not an
 * event, e.g. the row's last hash or a read error); why borrowed for the call. */
typedef void (*rein_verify_cb)(void *ud, const char *run_id, int64_t bad_seq, const char *why);
/*
 * Verifies the store (rein_store_check: each problem is passed to cb with
 * run_id NULL) and every run's chain (rein_store_verify_run), calling cb (may
 * be NULL) for each one that fails; a bundle that does not match its version
 * is named by cb once per run that uses it (why says which version). *stats
 * written on REIN_OK. A failed chain is not an error of this call: REIN_OK
 * with stats->bad > 0 (or store_problems > 0). Lists the runs first and
 * verifies after the listing has ended (no reentry under an open cursor).
 */
int rein_store_verify_all(rein_store *s, rein_verify_cb cb, void *ud, rein_verify_stats *stats,
			  rein_err *err);
/*
 * The anchors, as part of verify_all (and of verify_one for one run): the
 * global chain (each anchor's hash from its fields, its link to the one
 * before, seqs 1..n without a gap; the first break is named, run_id NULL),
 * every anchor's run exists (verify_all only: "anchor N: run X is not in the
 * store"), every anchored head is a point of its run's chain (the run's event
 * run_last_seq has hash run_head_hash: "anchor N: ..." with that seq), and
 * every run whose row has given its lease up (it ended or suspended) with
 * events has an anchor at or after its last seq ("... is not anchored").
 * A problem of an anchor that names a run is reported for that run (why
 * starts "anchor N: "), the others with run_id NULL (why "anchor N: ...").
 * The anchors are held in memory during the check (about 100 bytes each).
 */
int rein_store_verify_one(rein_store *s, const char *run_id, rein_verify_cb cb, void *ud,
			  rein_verify_stats *stats, rein_err *err);

/*
 * Checks the store as a whole for what no run's chain shows: committed
 * transactions lost with a deleted SQLite WAL (recorded by the open that
 * found it, so every later check reports it), and (SQLite) PRAGMA
 * quick_check. Calls cb (may be NULL) with each problem (borrowed for the
 * call); *n (may be NULL) gets their count. A problem is not an error of this
 * call (REIN_OK); REIN_EIO when the check itself cannot run.
 */
int rein_store_check(rein_store *s, rein_problem_cb cb, void *ud, int *n, rein_err *err);

/*
 * The keyring (keys.c): one AES-256 key per tenant for protected payloads
 * (the real values behind redaction placeholders, sealed by the runner), kept
 * outside the database in DIR/TENANT.key (0600, in a 0700 DIR) so that
 * shredding a key destroys it for good: not in SQLite's free pages, the WAL,
 * or any backup of the database. Tenants: 1 to 63 of A-Z a-z 0-9 . _ -.
 * One handle per thread; keys read once are cached in the handle.
 */
#define REIN_KID_LEN 16 /* a key id: 16 hex digits */
typedef struct rein_keyring rein_keyring;
/* A keyring over dir (nothing is touched before the first key is made). */
int rein_keyring_open(const char *dir, rein_keyring **out, rein_err *err);
/* Wipes the cached keys and frees k; accepts NULL. */
void rein_keyring_close(rein_keyring *k);
const char *rein_keyring_dir(const rein_keyring *k);
bool rein_tenant_valid(const char *tenant);
/* The tenant's current key and its id. create: make one (RAND_bytes, written
 * atomically and fsynced) when there is none, else REIN_ENOTFOUND. */
int rein_keyring_current(rein_keyring *k, const char *tenant, bool create,
			 char kid[REIN_KID_LEN + 1], uint8_t key[REIN_KEY_LEN], rein_err *err);
/* The tenant's key with id kid: REIN_ENOTFOUND "key KID of tenant T is gone
 * (shredded)" when it is not the current one (keys are never rotated except
 * by a shred, which destroys the old one). */
int rein_keyring_get(rein_keyring *k, const char *tenant, const char *kid,
		     uint8_t key[REIN_KEY_LEN], rein_err *err);
/* Crypto-shredding: overwrites, fsyncs and unlinks the tenant's key file.
 * *existed: there was one. A process that read the key before keeps it in
 * its cache until it closes its keyring. */
int rein_keyring_shred(rein_keyring *k, const char *tenant, bool *existed, rein_err *err);

/* ---- calls per tenant (the per-tenant limits) ----------------------------- */

/*
 * In a transaction (the one that appends the run's tool.intent, so both
 * commit or neither): notes call c. A second note of the same (run, seq) is a
 * no-op. Notes are kept when payloads are purged (they hold no argument).
 * Backends without the operation: REIN_OK, nothing noted.
 */
int rein_store_call_note(rein_store *s, const rein_call_row *c, rein_err *err);
/*
 * The calls noted for tenant with at > since, counted by (tool, write):
 * *rows an array of *n (NULL when 0), in no particular order, caller frees
 * with rein_call_counts_free. Reads what is committed (inside a transaction:
 * what it wrote too). Backends without the operation: REIN_EINVAL "not
 * supported".
 */
int rein_store_call_counts(rein_store *s, const char *tenant, int64_t since,
			   rein_call_count **rows, size_t *n, rein_err *err);

#endif
