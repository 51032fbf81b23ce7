/*
 * store: the durable event log behind one table of operations. SQLite is the
 * embedded backend; PostgreSQL implements the same table later without the
 * engine noticing.
 *
 * Events are append-only. Each event's hash chains to the run's previous one:
 *
 *   hash = SHA-256( prev_hash[32] || be64(seq) || type NUL || step NUL ||
 *                   be64(at) || payload_hash[32] )
 *
 * with prev_hash for seq 1 the run's genesis, SHA-256("rein.run\0" || run
 * id), which binds the chain to its run (payloads need not repeat the id, so
 * equal payloads of different runs are stored once), and payload_hash =
 * SHA-256(payload JSON text). Payloads live in a content-addressed table, so a retention job can
 * purge a payload without breaking the chain.
 *
 * Writes happen between rein_store_begin and rein_store_commit; the runner
 * batches many runs' events into one transaction (group commit) and commits
 * only at durability barriers.
 */
#ifndef REIN_STORE_H
#define REIN_STORE_H

#include "base.h"

typedef struct rein_store rein_store;

typedef struct rein_run_row {
	char id[64];
	char *workflow;
	char version[65];
	int status;          /* rein_status */
	int64_t created_at, updated_at;
	int64_t wake_at;     /* waiting: earliest timer, else 0 */
	char *lease_owner;   /* NULL: free */
	int64_t lease_expires;
	int64_t last_seq;
	uint8_t last_hash[REIN_HASH_LEN];
	char *output;        /* JSON text once ended, else NULL */
	char *reason;
	bool cancel_requested;
} rein_run_row;

void rein_run_row_clear(rein_run_row *r);

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
/* Recomputes ev->hash from its fields (payload_hash as stored) into out. */
void rein_event_chain_hash(const rein_event_row *ev, uint8_t out[REIN_HASH_LEN]);

typedef int (*rein_event_cb)(void *ud, const rein_event_row *ev);
typedef int (*rein_run_cb)(void *ud, const rein_run_row *row);

/* The table of operations a backend implements; see store.c for contracts. */
typedef struct rein_store_ops {
	void (*close)(void *be);
	int (*begin)(void *be, rein_err *err);
	int (*commit)(void *be, rein_err *err);
	void (*rollback)(void *be);
	int (*spec_put)(void *be, const char *version, const char *name, const char *bundle,
			rein_err *err);
	int (*spec_get)(void *be, const char *version, char **bundle, rein_err *err);
	int (*run_insert)(void *be, const rein_run_row *row, rein_err *err);
	int (*run_update)(void *be, const rein_run_row *row, const char *owner, bool *cancel,
			  rein_err *err);
	int (*run_get)(void *be, const char *id, rein_run_row *row, rein_err *err);
	int (*run_list)(void *be, int status, rein_run_cb cb, void *ud, rein_err *err);
	int (*lease_claim)(void *be, const char *id, const char *expect_owner, const char *owner,
			   int64_t expires, rein_err *err);
	int (*cancel_request)(void *be, const char *id, rein_err *err);
	int (*event_append)(void *be, const rein_event_row *ev, rein_err *err);
	int (*events_load)(void *be, const char *run_id, rein_event_cb cb, void *ud, rein_err *err);
} rein_store_ops;

typedef struct rein_store_opts {
	bool no_sync; /* PRAGMA synchronous=NORMAL instead of FULL (tests only) */
} rein_store_opts;

/* Opens (creating if needed) a SQLite store in WAL mode. Caller closes. */
int rein_store_open_sqlite(const char *path, const rein_store_opts *opts, rein_store **out,
			   rein_err *err);
/* Wraps any backend (e.g. a fault-injecting one in tests). */
int rein_store_wrap(const rein_store_ops *ops, void *be, rein_store **out);
void rein_store_close(rein_store *s);

int rein_store_begin(rein_store *s, rein_err *err);
int rein_store_commit(rein_store *s, rein_err *err);
void rein_store_rollback(rein_store *s);

int rein_store_spec_put(rein_store *s, const char *version, const char *name, const char *bundle,
			rein_err *err);
/* *bundle: JSON text, caller frees. REIN_ENOTFOUND if unknown. */
int rein_store_spec_get(rein_store *s, const char *version, char **bundle, rein_err *err);
int rein_store_run_insert(rein_store *s, const rein_run_row *row, rein_err *err);
/*
 * Updates status, wake_at, lease, last seq/hash, output, reason, updated_at of
 * row->id, only while the lease is held by owner (NULL: unconditionally).
 * REIN_ECONFLICT when the lease is gone. *cancel (may be NULL) tells whether a
 * cancel was requested meanwhile.
 */
int rein_store_run_update(rein_store *s, const rein_run_row *row, const char *owner, bool *cancel,
			  rein_err *err);
/* Fills row (caller clears it). REIN_ENOTFOUND if unknown. */
int rein_store_run_get(rein_store *s, const char *id, rein_run_row *row, rein_err *err);
/* Calls cb for each run (status -1: all), newest first. */
int rein_store_run_list(rein_store *s, int status, rein_run_cb cb, void *ud, rein_err *err);
/*
 * Takes the lease of run id for owner until expires, provided it is still held
 * by expect_owner (NULL: free). REIN_ECONFLICT otherwise. Autocommits.
 */
int rein_store_lease_claim(rein_store *s, const char *id, const char *expect_owner,
			   const char *owner, int64_t expires, rein_err *err);
int rein_store_cancel_request(rein_store *s, const char *id, rein_err *err);
int rein_store_event_append(rein_store *s, const rein_event_row *ev, rein_err *err);
/* Calls cb for each event of the run in seq order; stops on a non-zero return. */
int rein_store_events_load(rein_store *s, const char *run_id, rein_event_cb cb, void *ud,
			   rein_err *err);

/*
 * Recomputes the chain of one run: every hash, every link, every payload
 * present against its hash, and the run row's last hash. On a mismatch returns
 * REIN_ECORRUPT with *bad_seq set to the first bad sequence number.
 */
int rein_store_verify_run(rein_store *s, const char *run_id, int64_t *bad_seq, rein_err *err);

/* ---- views and audit (view.c, verify.c) ---- */

/*
 * The JSON view of a run row: {run, workflow, version, status, created_at,
 * updated_at, events[, output][, reason][, wake_at][, lease_owner]
 * [, cancel_requested]}. The view of an event row: {seq, type, step, at, data,
 * hash}. New references the caller owns; NULL when out of memory.
 */
json_t *rein_run_row_json(const rein_run_row *r);
json_t *rein_event_row_json(const rein_event_row *ev);

typedef struct rein_verify_stats {
	int runs, bad;  /* runs verified, runs whose chain did not verify */
	int64_t events; /* events covered (sum of last_seq) */
} rein_verify_stats;
/* A run whose chain did not verify: bad_seq its first bad event (0: not an
 * event, e.g. the row's last hash or a read error); why borrowed for the call. */
typedef void (*rein_verify_cb)(void *ud, const char *run_id, int64_t bad_seq, const char *why);
/*
 * Verifies every run's chain (rein_store_verify_run), calling cb (may be NULL)
 * for each one that fails; *stats written on REIN_OK. A failed chain is not an
 * error of this call: REIN_OK with stats->bad > 0. Lists the runs first and
 * verifies after the listing has ended (no reentry under an open cursor).
 */
int rein_store_verify_all(rein_store *s, rein_verify_cb cb, void *ud, rein_verify_stats *stats,
			  rein_err *err);

#endif
