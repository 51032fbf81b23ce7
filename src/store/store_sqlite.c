/*
 * The SQLite backend: WAL mode, synchronous=FULL (a commit survives power
 * loss), prepared statements kept for the life of the handle. (Write
 * faults for tests come from a wrapper backend: tests/unit/faultstore.h.)
 *
 * Events appended inside a transaction are held here and written when the
 * transaction commits (or when many are held, or before events are read back):
 * sorted by key (run, seq), so that the inserts walk the events B-tree in order
 * instead of landing on a random page each (the runner interleaves thousands
 * of runs in one group commit), with duplicate payloads written once, and
 * up to 2^MULTI_MAX rows per INSERT statement.
 *
 * The handle remembers the hashes of payloads it stored (or found stored)
 * and does not insert them again. That memory is only trusted inside a write
 * transaction that follows one of this handle's own: if another connection
 * committed in between (SQLITE_FCNTL_DATA_VERSION moved), or a transaction
 * rolled back, it is forgotten. A failed write of held events fails the
 * call that triggered it (an append, or the commit, which then rolls back).
 */
#include "store_sqlite.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

enum {
	Q_SPEC_PUT,
	Q_SPEC_GET,
	Q_RUN_INSERT,
	Q_RUN_UPDATE,
	Q_RUN_GET,
	Q_RUN_LIST,
	Q_LEASE,
	Q_DUE,
	Q_INBOX_PUT,
	Q_INBOX_MARK,
	Q_RUN_EXISTS,
	Q_INBOX_LIST,
	Q_INBOX_DRAIN,
	Q_INBOX_UNMARK,
	Q_PAYLOAD_PUT,
	Q_EVENT_PUT,
	Q_EVENTS_LOAD,
	Q_RID,
	Q_RID_CLAIM,
	Q_BEGIN,
	Q_COMMIT,
	Q_ANCHOR_LAST,
	Q_ANCHOR_PUT,
	Q_COUNT
};

/* At most 2^MULTI_MAX rows per INSERT; held events are written when HELD_MAX
 * are held. */
#define MULTI_MAX 5
#define HELD_MAX 65536
/* Payload hashes this handle wrote or skipped as stored (direct-mapped). */
#define KNOWN_SLOTS 4096

/*
 * Schema (version STORE_VERSION, in PRAGMA user_version). Runs have an
 * integer key (rid, from blocks claimed in meta: see rid_take) beside their
 * text id, the runs table's key (one B-tree), and an event's key is
 * rid * 2^24 + seq: a run's events are one contiguous range of a rowid
 * table, and a run appending events appends at the right edge of the B-tree,
 * where SQLite splits a full leaf by starting a new one (a commit writes one
 * or two event pages, not the three to five of a text-keyed index). The view
 * event_log shows events with their run's text id, for people with sqlite3.
 * A run's inbox entries are keyed (run, seq), unique on (run, id); drained
 * ones are kept so that a repeated id stays a duplicate. runs.mail is 1
 * while the run has undrained entries. anchors is the global chain (store.h),
 * keyed by its seq, append-only like events.
 */
#define RUN_COLS "id, workflow, version, status, created_at, updated_at, wake_at, " \
		 "lease_owner, lease_expires, last_seq, last_hash, output, reason, mail"
/*
 */
#define STORE_VERSION 4 /* 3: the inbox table, runs.mail for cancel_requested; 4: anchors */
#define SEQ_BITS 24
#define SEQ_MAX ((INT64_C(1) << SEQ_BITS) - 1)

static const char *const sql[Q_COUNT] = {
	[Q_SPEC_PUT] = "INSERT OR IGNORE INTO specs(version, name, bundle) VALUES (?1, ?2, ?3)",
	[Q_SPEC_GET] = "SELECT bundle FROM specs WHERE version = ?1",
	[Q_RUN_INSERT] =
		"INSERT INTO runs(id, workflow, version, status, created_at, updated_at, wake_at, "
		"lease_owner, lease_expires, last_seq, last_hash, output, reason, rid) "
		"VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
	[Q_RUN_UPDATE] = "UPDATE runs SET status = ?2, updated_at = ?3, wake_at = ?4, "
			 "lease_owner = ?5, lease_expires = ?6, last_seq = ?7, last_hash = ?8, "
			 "output = ?9, reason = ?10 "
			 "WHERE id = ?1 AND (?11 IS NULL OR lease_owner = ?11) "
			 "RETURNING mail",
	[Q_RUN_GET] = "SELECT " RUN_COLS " FROM runs WHERE id = ?1",
	[Q_RUN_LIST] = "SELECT " RUN_COLS " FROM runs WHERE (?1 IS NULL OR status = ?1) "
		       "AND (?2 IS NULL OR created_at < ?3 OR (created_at = ?3 AND id > ?2)) "
		       "ORDER BY created_at DESC, id LIMIT ?4",
	[Q_LEASE] = "UPDATE runs SET lease_owner = ?3, lease_expires = ?4 "
		    "WHERE id = ?1 AND lease_owner IS ?2",
	/* through runs_by_status; our own live leases are never candidates */
	[Q_DUE] = "SELECT " RUN_COLS " FROM runs WHERE (status = 'running' OR "
		  "(status = 'waiting' AND ((wake_at > 0 AND wake_at <= ?1) OR mail = 1))) "
		  "AND (lease_owner IS NULL OR "
		  "lease_expires <= ?2 OR lease_owner <> ?3) ORDER BY status, wake_at, id",
	[Q_INBOX_PUT] = "INSERT INTO inbox(run, seq, id, type, data, sender, at) SELECT ?1, "
			"coalesce((SELECT max(seq) FROM inbox WHERE run = ?1), 0) + 1, "
			"?2, ?3, ?4, ?5, ?6 WHERE EXISTS (SELECT 1 FROM runs WHERE id = ?1) "
			"ON CONFLICT DO NOTHING",
	[Q_INBOX_MARK] = "UPDATE runs SET mail = 1 WHERE id = ?1",
	[Q_RUN_EXISTS] = "SELECT 1 FROM runs WHERE id = ?1",
	[Q_INBOX_LIST] = "SELECT seq, id, type, data, sender, at FROM inbox "
			 "WHERE run = ?1 AND drained = 0 ORDER BY seq",
	[Q_INBOX_DRAIN] = "UPDATE inbox SET drained = 1 WHERE run = ?1 AND seq <= ?2 AND drained = 0",
	[Q_INBOX_UNMARK] = "UPDATE runs SET mail = EXISTS (SELECT 1 FROM inbox WHERE run = ?1 "
			   "AND drained = 0) WHERE id = ?1",
	[Q_PAYLOAD_PUT] = "INSERT OR IGNORE INTO payloads(hash, body) VALUES (?1, ?2)",
	[Q_EVENT_PUT] = "INSERT INTO events(k, type, step, at, payload_hash, prev_hash, hash) "
			"VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
	[Q_EVENTS_LOAD] = "SELECT e.k & 16777215, e.type, e.step, e.at, e.payload_hash, e.prev_hash, "
			  "e.hash, p.body FROM events e LEFT JOIN payloads p ON p.hash = e.payload_hash "
			  "WHERE e.k BETWEEN ?1 AND ?2 ORDER BY e.k",
	[Q_RID] = "SELECT rid FROM runs WHERE id = ?1",
	[Q_RID_CLAIM] = "UPDATE meta SET v = v + ?1 WHERE k = 'next_rid' RETURNING v",
	[Q_BEGIN] = "BEGIN IMMEDIATE",
	[Q_COMMIT] = "COMMIT",
	[Q_ANCHOR_LAST] = "SELECT seq, run_id, run_last_seq, run_head_hash, prev_hash, hash "
			  "FROM anchors ORDER BY seq DESC LIMIT 1",
	[Q_ANCHOR_PUT] = "INSERT INTO anchors(seq, run_id, run_last_seq, run_head_hash, prev_hash, "
			 "hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
};

/* "INSERT ... VALUES (?,...,?),(...)" with rows groups of cols parameters. */
static char *multi_insert_sql(const char *head, int cols, int rows)
{
	rein_buf b = {0};
	int rc = rein_buf_puts(&b, head);
	for (int r = 0; r < rows && rc == REIN_OK; r++) {
		rc = rein_buf_puts(&b, r ? ",(" : " VALUES (");
		for (int c = 0; c < cols && rc == REIN_OK; c++)
			rc = rein_buf_puts(&b, c ? ",?" : "?");
		if (rc == REIN_OK)
			rc = rein_buf_puts(&b, ")");
	}
	if (rc != REIN_OK) {
		rein_buf_free(&b);
		return NULL;
	}
	return b.p;
}

static const char schema_sql[] =
	"CREATE TABLE IF NOT EXISTS specs("
	" version TEXT PRIMARY KEY, name TEXT NOT NULL, bundle TEXT NOT NULL);"
	"CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID;"
	"INSERT OR IGNORE INTO meta(k, v) VALUES ('next_rid', 1);"
	"CREATE TABLE IF NOT EXISTS runs("
	" id TEXT PRIMARY KEY, rid INTEGER NOT NULL, workflow TEXT NOT NULL,"
	" version TEXT NOT NULL,"
	" status TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,"
	" wake_at INTEGER NOT NULL DEFAULT 0, lease_owner TEXT,"
	" lease_expires INTEGER NOT NULL DEFAULT 0, last_seq INTEGER NOT NULL DEFAULT 0,"
	" last_hash BLOB, output TEXT, reason TEXT,"
	" mail INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS runs_by_status ON runs(status, wake_at)"
	" WHERE status IN ('running', 'waiting');"
	"CREATE TABLE IF NOT EXISTS events("
	" k INTEGER PRIMARY KEY, type TEXT NOT NULL, step TEXT,"
	" at INTEGER NOT NULL, payload_hash BLOB NOT NULL, prev_hash BLOB NOT NULL,"
	" hash BLOB NOT NULL);"
	"CREATE TABLE IF NOT EXISTS inbox("
	" run TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL, type TEXT NOT NULL,"
	" data TEXT, sender TEXT, at INTEGER NOT NULL, drained INTEGER NOT NULL DEFAULT 0,"
	" PRIMARY KEY(run, seq), UNIQUE(run, id)) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS payloads(hash BLOB PRIMARY KEY, body TEXT NOT NULL) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS org_policies(seq INTEGER PRIMARY KEY, version TEXT NOT NULL,"
	" rules TEXT NOT NULL, loaded_at INTEGER NOT NULL);"
	"CREATE TRIGGER IF NOT EXISTS events_append_only_u BEFORE UPDATE ON events"
	" BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;"
	"CREATE TRIGGER IF NOT EXISTS events_append_only_d BEFORE DELETE ON events"
	" BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;"
	"CREATE TABLE IF NOT EXISTS anchors("
	" seq INTEGER PRIMARY KEY, run_id TEXT NOT NULL, run_last_seq INTEGER NOT NULL,"
	" run_head_hash BLOB NOT NULL, prev_hash BLOB NOT NULL, hash BLOB NOT NULL);"
	"CREATE TRIGGER IF NOT EXISTS anchors_append_only_u BEFORE UPDATE ON anchors"
	" BEGIN SELECT RAISE(ABORT, 'anchors are append-only'); END;"
	"CREATE TRIGGER IF NOT EXISTS anchors_append_only_d BEFORE DELETE ON anchors"
	" BEGIN SELECT RAISE(ABORT, 'anchors are append-only'); END;"
	"CREATE VIEW IF NOT EXISTS event_log AS"
	" SELECT r.id AS run_id, e.k & 16777215 AS seq, e.type, e.step, e.at, e.payload_hash,"
	" e.prev_hash, e.hash, e.k FROM runs r JOIN events e"
	" ON e.k BETWEEN r.rid * 16777216 AND r.rid * 16777216 + 16777215;";

/* An event held until the transaction commits; strings live in sq.arena. */
typedef struct held_ev {
	size_t type, step, payload; /* offsets into the arena; step NO_STEP: NULL */
	int64_t k, at;              /* k: rid * 2^24 + seq */
	uint8_t payload_hash[REIN_HASH_LEN], prev_hash[REIN_HASH_LEN], hash[REIN_HASH_LEN];
} held_ev;

#define NO_STEP ((size_t)-1)

typedef struct sq {
	sqlite3 *db;
	sqlite3_stmt *q[Q_COUNT];
	bool in_tx;
	held_ev *held;
	size_t nheld, heldcap;
	rein_buf arena;
	const held_ev **order; /* scratch for sorting */
	size_t ordercap;
	/* run id -> rid, for the runs this handle inserted or looked up (rids never
	 * change); forgotten on rollback and when full */
	struct rid_slot {
		char id[64];
		int64_t rid;
	} *rids;
	size_t nrids;
	/* rids for new runs: [rid_next, rid_end), a block claimed from meta */
	int64_t rid_next, rid_end, rid_block;
	sqlite3_stmt *multi[2][MULTI_MAX + 1]; /* payloads, events: 2^j rows */
	uint8_t (*known)[REIN_HASH_LEN];        /* KNOWN_SLOTS payload hashes */
	unsigned int data_version;              /* after this handle's last commit */
	/* once read or written: the last anchor, trusted inside a write
	 * transaction (it holds the write lock, so nobody else appends) begun
	 * with the data_version of this handle's last commit (nobody else wrote
	 * since); forgotten on rollback */
	bool anc_known, anc_found;
	rein_anchor_row anc;
	sqlite3_stmt *kill_v;                   /* kill_version, prepared once */
	sqlite3_stmt *call_ins;                 /* call_note, prepared once */
} sq;

#define RID_SLOTS 32768 /* a power of two; at most half are used */

static int db_err(sq *b, rein_err *err, const char *what)
{
	int code = sqlite3_errcode(b->db);
	int rc = code == SQLITE_NOMEM ? REIN_ENOMEM
		 : code == SQLITE_CONSTRAINT ? REIN_ECONFLICT
					     : REIN_EIO;
	return rein_err_set(err, rc, "sqlite: %s: %s", what, sqlite3_errmsg(b->db));
}

static void rid_forget(sq *b)
{
	rein_free(b->rids);
	b->rids = NULL;
	b->nrids = 0;
}

static size_t rid_slot_of(const char *id)
{
	uint64_t h = 1469598103934665603u; /* FNV-1a */
	for (const unsigned char *p = (const unsigned char *)id; *p; p++)
		h = (h ^ *p) * 1099511628211u;
	return (size_t)(h & (RID_SLOTS - 1));
}

/* Remembers id -> rid (best effort: without memory it is looked up again). */
static void rid_remember(sq *b, const char *id, int64_t rid)
{
	size_t n = strlen(id);
	if (n >= sizeof b->rids[0].id)
		return;
	if (b->nrids >= RID_SLOTS / 2) { /* full: start again */
		memset(b->rids, 0, RID_SLOTS * sizeof *b->rids);
		b->nrids = 0;
	}
	if (b->rids == NULL && (b->rids = rein_calloc(RID_SLOTS, sizeof *b->rids)) == NULL)
		return;
	size_t i = rid_slot_of(id);
	while (b->rids[i].id[0] != '\0' && strcmp(b->rids[i].id, id) != 0)
		i = (i + 1) & (RID_SLOTS - 1);
	if (b->rids[i].id[0] == '\0')
		b->nrids++;
	memcpy(b->rids[i].id, id, n + 1);
	b->rids[i].rid = rid;
}

/* The row array v with its capacity doubled (from 8) in *cap, or NULL when
 * out of memory (v and *cap unchanged). */
static void *rows_grow(void *v, size_t *cap, size_t size)
{
	size_t c = *cap ? 2 * *cap : 8;
	void *w = rein_realloc(v, c * size);
	if (w)
		*cap = c;
	return w;
}

static sqlite3_stmt *stmt(sq *b, int i, rein_err *err)
{
	if (b->q[i] == NULL &&
	    sqlite3_prepare_v3(b->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &b->q[i], NULL) !=
		    SQLITE_OK) {
		db_err(b, err, "prepare");
		return NULL;
	}
	sqlite3_reset(b->q[i]); /* every caller binds every parameter */
	return b->q[i];
}

/* The integer key of run id; REIN_ENOTFOUND when there is no such run. */
static int rid_of(sq *b, const char *id, int64_t *rid, rein_err *err)
{
	if (b->rids) {
		for (size_t i = rid_slot_of(id); b->rids[i].id[0] != '\0';
		     i = (i + 1) & (RID_SLOTS - 1))
			if (strcmp(b->rids[i].id, id) == 0) {
				*rid = b->rids[i].rid;
				return REIN_OK;
			}
	}
	sqlite3_stmt *s = stmt(b, Q_RID, err);
	if (s == NULL)
		return REIN_EIO;
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	int r = sqlite3_step(s), rc = REIN_OK;
	if (r == SQLITE_ROW) {
		*rid = sqlite3_column_int64(s, 0);
		rid_remember(b, id, *rid);
	} else if (r == SQLITE_DONE) {
		rc = rein_err_set(err, REIN_ENOTFOUND, "no run %s", id);
	} else {
		rc = db_err(b, err, "run key");
	}
	sqlite3_reset(s);
	return rc;
}

/* The event key of (run, seq). */
static int event_key(sq *b, const rein_event_row *ev, int64_t *k, rein_err *err)
{
	int64_t rid;
	if (ev->seq < 1 || ev->seq > SEQ_MAX)
		return rein_err_set(err, REIN_EINVAL, "run %s: event %lld: a run holds at most %lld events",
				    ev->run_id, (long long)ev->seq, (long long)SEQ_MAX);
	int rc = rid_of(b, ev->run_id, &rid, err);
	if (rc == REIN_OK)
		*k = rid * (SEQ_MAX + 1) + ev->seq;
	return rc;
}

/* Forgets the held events; a large batch's buffers are not kept for the next. */
static void held_clear(sq *b)
{
	b->nheld = 0;
	b->arena.len = 0;
	if (b->heldcap > 8192) {
		rein_free(b->held);
		rein_free(b->order);
		rein_buf_free(&b->arena);
		b->held = NULL;
		b->order = NULL;
		b->heldcap = b->ordercap = 0;
	}
}

static void known_forget(sq *b);

static void sq_close(void *be)
{
	sq *b = be;
	if (b == NULL)
		return;
	for (int i = 0; i < Q_COUNT; i++)
		sqlite3_finalize(b->q[i]);
	for (int t = 0; t < 2; t++)
		for (int j = 0; j <= MULTI_MAX; j++)
			sqlite3_finalize(b->multi[t][j]);
	known_forget(b);
	sqlite3_finalize(b->kill_v);
	sqlite3_finalize(b->call_ins);
	sqlite3_close(b->db);
	rein_free(b->held);
	rein_free(b->order);
	rein_buf_free(&b->arena);
	rid_forget(b);
	rein_free(b);
}

static int sq_exec(sq *b, const char *s, rein_err *err)
{
	if (sqlite3_exec(b->db, s, NULL, NULL, NULL) != SQLITE_OK)
		return db_err(b, err, s);
	return REIN_OK;
}

static int held_write(sq *b, rein_err *err);

static unsigned int data_version(sq *b)
{
	unsigned int v = 0;
	sqlite3_file_control(b->db, "main", SQLITE_FCNTL_DATA_VERSION, &v);
	return v;
}

static int step_done(sq *b, sqlite3_stmt *s, rein_err *err, const char *what);

static int sq_begin(void *be, rein_err *err)
{
	sq *b = be;
	if (b->in_tx)
		return rein_err_set(err, REIN_EINVAL, "sqlite: begin inside a transaction");
	held_clear(b);
	sqlite3_stmt *s = stmt(b, Q_BEGIN, err);
	int rc = s ? step_done(b, s, err, "begin") : REIN_EIO;
	if (rc == REIN_OK) {
		b->in_tx = true;
		if (data_version(b) != b->data_version) {
			known_forget(b); /* someone else wrote since our last commit */
			b->anc_known = false;
		}
	} else {
		b->anc_known = false;
	}
	return rc;
}

/* Rolls the transaction back and forgets what this handle learnt inside it:
 * the rids of runs inserted in it, payloads stored in it, a rid block claimed
 * in it. */
static void sq_rollback(void *be)
{
	sq *b = be;
	if (b->in_tx)
		sqlite3_exec(b->db, "ROLLBACK", NULL, NULL, NULL);
	rid_forget(b);
	known_forget(b);
	b->rid_next = b->rid_end = 0;
	held_clear(b);
	b->anc_known = false;
	b->in_tx = false;
}

static int sq_commit(void *be, rein_err *err)
{
	sq *b = be;
	if (!b->in_tx)
		return rein_err_set(err, REIN_EINVAL, "sqlite: commit outside a transaction");
	int rc = held_write(b, err);
	if (rc == REIN_OK) {
		sqlite3_stmt *s = stmt(b, Q_COMMIT, err);
		rc = s ? step_done(b, s, err, "commit") : REIN_EIO;
	}
	if (rc != REIN_OK) {
		sq_rollback(b);
		return rc;
	}
	b->data_version = data_version(b);
	held_clear(b);
	b->in_tx = false;
	return REIN_OK;
}

static int step_done(sq *b, sqlite3_stmt *s, rein_err *err, const char *what)
{
	int r = sqlite3_step(s);
	sqlite3_reset(s);
	if (r != SQLITE_DONE)
		return db_err(b, err, what);
	return REIN_OK;
}

static int sq_spec_put(void *be, const char *version, const char *name, const char *bundle,
		       rein_err *err)
{
	sq *b = be;
	sqlite3_stmt *s = stmt(b, Q_SPEC_PUT, err);
	if (s == NULL)
		return REIN_EIO;
	sqlite3_bind_text(s, 1, version, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, bundle, -1, SQLITE_STATIC);
	return step_done(b, s, err, "spec put");
}

static int sq_spec_get(void *be, const char *version, char **bundle, rein_err *err)
{
	sq *b = be;
	sqlite3_stmt *s = stmt(b, Q_SPEC_GET, err);
	if (s == NULL)
		return REIN_EIO;
	sqlite3_bind_text(s, 1, version, -1, SQLITE_STATIC);
	int r = sqlite3_step(s), rc = REIN_OK;
	if (r == SQLITE_ROW) {
		if ((*bundle = rein_strdup((const char *)sqlite3_column_text(s, 0))) == NULL)
			rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
	} else if (r == SQLITE_DONE) {
		rc = rein_err_set(err, REIN_ENOTFOUND, "no workflow version %s in the store", version);
	} else {
		rc = db_err(b, err, "spec get");
	}
	sqlite3_reset(s);
	return rc;
}

/* Organisation policies: one row per load, the newest is current. (Rare:
 * prepared on each call rather than cached.) */
static int sq_org_policy_put(void *be, const char *version, const char *rules, int64_t at,
			     rein_err *err)
{
	sq *b = be;
	sqlite3_stmt *s = NULL;
	if (sqlite3_prepare_v2(b->db, "INSERT INTO org_policies(version, rules, loaded_at) "
			       "VALUES (?1, ?2, ?3)", -1, &s, NULL) != SQLITE_OK)
		return db_err(b, err, "policy put");
	sqlite3_bind_text(s, 1, version, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, rules, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, at);
	int rc = sqlite3_step(s) == SQLITE_DONE ? REIN_OK : db_err(b, err, "policy put");
	sqlite3_finalize(s);
	return rc;
}

static int sq_org_policy_current(void *be, char **version, char **rules, rein_err *err)
{
	sq *b = be;
	sqlite3_stmt *s = NULL;
	if (sqlite3_prepare_v2(b->db, "SELECT version, rules FROM org_policies ORDER BY seq DESC "
			       "LIMIT 1", -1, &s, NULL) != SQLITE_OK)
		return db_err(b, err, "policy get");
	int r = sqlite3_step(s), rc = REIN_OK;
	if (r == SQLITE_ROW) {
		*version = rein_strdup((const char *)sqlite3_column_text(s, 0));
		*rules = rein_strdup((const char *)sqlite3_column_text(s, 1));
		if (*version == NULL || *rules == NULL) {
			rein_free(*version);
			rein_free(*rules);
			*version = *rules = NULL;
			rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		}
	} else if (r != SQLITE_DONE) {
		rc = db_err(b, err, "policy get");
	}
	sqlite3_finalize(s);
	return rc;
}

static void bind_text_or_null(sqlite3_stmt *s, int i, const char *v)
{
	if (v)
		sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, i);
}

/*
 * A new run's rid, from a block this handle claimed in meta (1, 2, 4, ... up
 * to 256 rids at a time, so a short-lived process wastes few): rids are
 * unique across processes without an index on them, and the runs table is
 * one B-tree keyed by the text id.
 */
static int rid_take(sq *b, int64_t *rid, rein_err *err)
{
	if (b->rid_next >= b->rid_end) {
		int64_t n = b->rid_block ? b->rid_block : 1;
		sqlite3_stmt *s = stmt(b, Q_RID_CLAIM, err);
		if (s == NULL)
			return REIN_EIO;
		sqlite3_bind_int64(s, 1, n);
		int r = sqlite3_step(s), rc = REIN_OK;
		if (r == SQLITE_ROW) {
			b->rid_end = sqlite3_column_int64(s, 0);
			b->rid_next = b->rid_end - n;
			b->rid_block = n < 256 ? 2 * n : n;
		} else {
			rc = db_err(b, err, "run key block");
		}
		sqlite3_reset(s);
		if (rc != REIN_OK)
			return rc;
	}
	if (b->rid_next > (INT64_MAX >> SEQ_BITS))
		return rein_err_set(err, REIN_EINVAL, "run keys exhausted");
	*rid = b->rid_next++;
	return REIN_OK;
}

static int sq_run_insert(void *be, const rein_run_row *row, rein_err *err)
{
	sq *b = be;
	int rc;
	sqlite3_stmt *s = stmt(b, Q_RUN_INSERT, err);
	if (s == NULL)
		return REIN_EIO;
	sqlite3_bind_text(s, 1, row->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, row->workflow ? row->workflow : "", -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, row->version, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, rein_status_name(row->status), -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 5, row->created_at);
	sqlite3_bind_int64(s, 6, row->updated_at);
	sqlite3_bind_int64(s, 7, row->wake_at);
	bind_text_or_null(s, 8, row->lease_owner);
	sqlite3_bind_int64(s, 9, row->lease_expires);
	sqlite3_bind_int64(s, 10, row->last_seq);
	sqlite3_bind_blob(s, 11, row->last_hash, REIN_HASH_LEN, SQLITE_STATIC);
	bind_text_or_null(s, 12, row->output);
	bind_text_or_null(s, 13, row->reason);
	int64_t rid = 0;
	if ((rc = rid_take(b, &rid, err)) != REIN_OK)
		return rc;
	sqlite3_bind_int64(s, 14, rid);
	if ((rc = step_done(b, s, err, "run insert")) == REIN_OK)
		rid_remember(b, row->id, rid);
	return rc;
}

static int sq_run_update(void *be, const rein_run_row *row, const char *owner, bool *mail,
			 rein_err *err)
{
	sq *b = be;
	int rc;
	sqlite3_stmt *s = stmt(b, Q_RUN_UPDATE, err);
	if (s == NULL)
		return REIN_EIO;
	sqlite3_bind_text(s, 1, row->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, rein_status_name(row->status), -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, row->updated_at);
	sqlite3_bind_int64(s, 4, row->wake_at);
	bind_text_or_null(s, 5, row->lease_owner);
	sqlite3_bind_int64(s, 6, row->lease_expires);
	sqlite3_bind_int64(s, 7, row->last_seq);
	sqlite3_bind_blob(s, 8, row->last_hash, REIN_HASH_LEN, SQLITE_STATIC);
	bind_text_or_null(s, 9, row->output);
	bind_text_or_null(s, 10, row->reason);
	bind_text_or_null(s, 11, owner);
	int r = sqlite3_step(s);
	if (r == SQLITE_ROW) {
		if (mail)
			*mail = sqlite3_column_int(s, 0) != 0;
		r = sqlite3_step(s);
		rc = r == SQLITE_DONE ? REIN_OK : db_err(b, err, "run update");
	} else if (r == SQLITE_DONE) {
		rc = rein_err_set(err, REIN_ECONFLICT, "run %s: lease lost", row->id);
	} else {
		rc = db_err(b, err, "run update");
	}
	sqlite3_reset(s);
	return rc;
}

static char *col_dup(sqlite3_stmt *s, int i, bool *oom)
{
	const char *t = (const char *)sqlite3_column_text(s, i);
	if (t == NULL)
		return NULL;
	char *d = rein_strdup(t);
	if (d == NULL)
		*oom = true;
	return d;
}

static int read_row(sqlite3_stmt *s, rein_run_row *row)
{
	bool oom = false;
	memset(row, 0, sizeof *row);
	snprintf(row->id, sizeof row->id, "%s", (const char *)sqlite3_column_text(s, 0));
	row->workflow = col_dup(s, 1, &oom);
	snprintf(row->version, sizeof row->version, "%s", (const char *)sqlite3_column_text(s, 2));
	int st = rein_status_parse((const char *)sqlite3_column_text(s, 3));
	row->status = st < 0 ? REIN_RUN_FAILED : st;
	row->created_at = sqlite3_column_int64(s, 4);
	row->updated_at = sqlite3_column_int64(s, 5);
	row->wake_at = sqlite3_column_int64(s, 6);
	row->lease_owner = col_dup(s, 7, &oom);
	row->lease_expires = sqlite3_column_int64(s, 8);
	row->last_seq = sqlite3_column_int64(s, 9);
	if (sqlite3_column_bytes(s, 10) == REIN_HASH_LEN)
		memcpy(row->last_hash, sqlite3_column_blob(s, 10), REIN_HASH_LEN);
	row->output = col_dup(s, 11, &oom);
	row->reason = col_dup(s, 12, &oom);
	row->mail = sqlite3_column_int(s, 13) != 0;
	if (oom) {
		rein_run_row_clear(row);
		return REIN_ENOMEM;
	}
	return REIN_OK;
}

static int sq_run_get(void *be, const char *id, rein_run_row *row, rein_err *err)
{
	sq *b = be;
	sqlite3_stmt *s = stmt(b, Q_RUN_GET, err);
	if (s == NULL)
		return REIN_EIO;
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	int r = sqlite3_step(s), rc;
	if (r == SQLITE_ROW)
		rc = read_row(s, row) == REIN_OK ? REIN_OK
						 : rein_err_set(err, REIN_ENOMEM, "out of memory");
	else if (r == SQLITE_DONE)
		rc = rein_err_set(err, REIN_ENOTFOUND, "no run %s", id);
	else
		rc = db_err(b, err, "run get");
	sqlite3_reset(s);
	return rc;
}

/* Steps s to the end, reading each row into a growing array. */
static int rows_read(sq *b, sqlite3_stmt *s, rein_run_row **rows, size_t *n, size_t limit,
		     rein_err *err, const char *what)
{
	rein_run_row *v = NULL;
	size_t m = 0, cap = 0;
	int r = SQLITE_DONE, rc = REIN_OK;
	while (m < limit && (r = sqlite3_step(s)) == SQLITE_ROW) {
		void *w = m == cap ? rows_grow(v, &cap, sizeof *v) : v;
		if (w == NULL) {
			rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
			goto out;
		}
		v = w;
		if (read_row(s, &v[m]) != REIN_OK) {
			rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
			goto out;
		}
		m++;
	}
	if (m < limit && r != SQLITE_DONE)
		rc = db_err(b, err, what);
out:
	sqlite3_reset(s);
	if (rc != REIN_OK) {
		rein_run_rows_free(v, m);
		return rc;
	}
	*rows = v;
	*n = m;
	return REIN_OK;
}

static int sq_run_list(void *be, const rein_run_query *q, rein_run_row **rows, size_t *n,
		       rein_err *err)
{
	sq *b = be;
	sqlite3_stmt *s = stmt(b, Q_RUN_LIST, err);
	if (s == NULL)
		return REIN_EIO;
	if (q->status >= 0)
		sqlite3_bind_text(s, 1, rein_status_name(q->status), -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, 1);
	bind_text_or_null(s, 2, q->after_id);
	sqlite3_bind_int64(s, 3, q->after_created);
	sqlite3_bind_int64(s, 4, q->limit > INT64_MAX ? INT64_MAX : (int64_t)q->limit);
	return rows_read(b, s, rows, n, q->limit, err, "run list");
}

static int sq_lease(void *be, const char *id, const char *expect, const char *owner,
		    int64_t expires, rein_err *err)
{
	sq *b = be;
	int rc;
	sqlite3_stmt *s = stmt(b, Q_LEASE, err);
	if (s == NULL)
		return REIN_EIO;
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	bind_text_or_null(s, 2, expect);
	bind_text_or_null(s, 3, owner);
	sqlite3_bind_int64(s, 4, expires);
	if ((rc = step_done(b, s, err, "lease")) != REIN_OK)
		return rc;
	if (sqlite3_changes(b->db) == 0)
		return rein_err_set(err, REIN_ECONFLICT, "run %s is leased by another worker", id);
	return REIN_OK;
}

/* Runs BEGIN IMMEDIATE for an operation that autocommits. */
static int auto_begin(sq *b, const char *what, rein_err *err)
{
	if (b->in_tx)
		return rein_err_set(err, REIN_EINVAL, "sqlite: %s autocommits: not inside a transaction",
				    what);
	return sq_begin(b, err);
}

static int auto_end(sq *b, int rc, rein_err *err)
{
	if (rc == REIN_OK)
		return sq_commit(b, err);
	sq_rollback(b);
	return rc;
}

static int sq_claim_due(void *be, const rein_claim_req *req, rein_run_row **rows, size_t *n,
			rein_err *err)
{
	sq *b = be;
	rein_run_row *cand = NULL, *got = NULL;
	size_t nc = 0, ng = 0;
	int rc = auto_begin(b, "claim_due", err);
	if (rc != REIN_OK)
		return rc;
	sqlite3_stmt *s = stmt(b, Q_DUE, err);
	if (s == NULL) {
		rc = REIN_EIO;
		goto out;
	}
	sqlite3_bind_int64(s, 1, req->horizon);
	sqlite3_bind_int64(s, 2, req->now);
	sqlite3_bind_text(s, 3, req->owner, -1, SQLITE_STATIC);
	/* every candidate first: alive() runs with no cursor open */
	if ((rc = rows_read(b, s, &cand, &nc, SIZE_MAX, err, "claim due")) != REIN_OK)
		goto out;
	if ((got = rein_calloc(nc ? nc : 1, sizeof *got)) == NULL) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < nc && ng < req->limit; i++) {
		rein_run_row *r = &cand[i];
		bool live = r->lease_owner && r->lease_expires > req->now &&
			    (req->alive == NULL || req->alive(req->alive_ud, r->lease_owner));
		if (live)
			continue;
		if ((rc = sq_lease(b, r->id, r->lease_owner, req->owner, req->lease_until, err)) !=
		    REIN_OK)
			goto out;
		got[ng++] = *r;
		memset(r, 0, sizeof *r); /* moved */
	}
out:
	rein_run_rows_free(cand, nc);
	rc = auto_end(b, rc, err);
	if (rc != REIN_OK) {
		rein_run_rows_free(got, ng);
		return rc;
	}
	*rows = got;
	*n = ng;
	return REIN_OK;
}

static int sq_inbox_put(void *be, const rein_inbox_row *msg, bool *dup, rein_err *err)
{
	sq *b = be;
	int rc = auto_begin(b, "inbox put", err);
	if (rc != REIN_OK)
		return rc;
	bool added = false;
	sqlite3_stmt *s = stmt(b, Q_INBOX_PUT, err);
	if (s == NULL) {
		rc = REIN_EIO;
		goto out;
	}
	sqlite3_bind_text(s, 1, msg->run_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, msg->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, msg->type, -1, SQLITE_STATIC);
	bind_text_or_null(s, 4, msg->data);
	bind_text_or_null(s, 5, msg->sender);
	sqlite3_bind_int64(s, 6, msg->at);
	if ((rc = step_done(b, s, err, "inbox put")) != REIN_OK)
		goto out;
	added = sqlite3_changes(b->db) > 0;
	if (!added) { /* a duplicate, or no such run */
		if ((s = stmt(b, Q_RUN_EXISTS, err)) == NULL) {
			rc = REIN_EIO;
			goto out;
		}
		sqlite3_bind_text(s, 1, msg->run_id, -1, SQLITE_STATIC);
		int r = sqlite3_step(s);
		sqlite3_reset(s);
		if (r == SQLITE_DONE)
			rc = rein_err_set(err, REIN_ENOTFOUND, "no run %s", msg->run_id);
		else if (r != SQLITE_ROW)
			rc = db_err(b, err, "inbox put");
		goto out;
	}
	if ((s = stmt(b, Q_INBOX_MARK, err)) == NULL) {
		rc = REIN_EIO;
		goto out;
	}
	sqlite3_bind_text(s, 1, msg->run_id, -1, SQLITE_STATIC);
	rc = step_done(b, s, err, "inbox put");
out:
	rc = auto_end(b, rc, err);
	if (rc == REIN_OK && dup)
		*dup = !added;
	return rc;
}

static int sq_inbox_list(void *be, const char *run_id, rein_inbox_row **out, size_t *n,
			 rein_err *err)
{
	sq *b = be;
	rein_inbox_row *v = NULL;
	size_t m = 0, cap = 0;
	int r, rc = REIN_OK;
	sqlite3_stmt *s = stmt(b, Q_INBOX_LIST, err);
	if (s == NULL)
		return REIN_EIO;
	sqlite3_bind_text(s, 1, run_id, -1, SQLITE_STATIC);
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		void *w = m == cap ? rows_grow(v, &cap, sizeof *v) : v;
		if (w == NULL) {
			rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
			goto out;
		}
		v = w;
		bool oom = false;
		rein_inbox_row *e = &v[m++];
		memset(e, 0, sizeof *e);
		e->seq = sqlite3_column_int64(s, 0);
		e->at = sqlite3_column_int64(s, 5);
		e->run_id = rein_strdup(run_id);
		e->id = col_dup(s, 1, &oom);
		e->type = col_dup(s, 2, &oom);
		e->data = col_dup(s, 3, &oom);
		e->sender = col_dup(s, 4, &oom);
		if (oom || e->run_id == NULL) {
			rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
			goto out;
		}
	}
	if (r != SQLITE_DONE)
		rc = db_err(b, err, "inbox list");
out:
	sqlite3_reset(s);
	if (rc != REIN_OK) {
		rein_inbox_rows_free(v, m);
		return rc;
	}
	*out = v;
	*n = m;
	return REIN_OK;
}

static int sq_inbox_drained(void *be, const char *run_id, int64_t upto_seq, rein_err *err)
{
	sq *b = be;
	if (!b->in_tx)
		return rein_err_set(err, REIN_EINVAL, "sqlite: inbox drained outside a transaction");
	sqlite3_stmt *s = stmt(b, Q_INBOX_DRAIN, err);
	if (s == NULL)
		return REIN_EIO;
	sqlite3_bind_text(s, 1, run_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, upto_seq);
	int rc = step_done(b, s, err, "inbox drained");
	if (rc != REIN_OK)
		return rc;
	if ((s = stmt(b, Q_INBOX_UNMARK, err)) == NULL)
		return REIN_EIO;
	sqlite3_bind_text(s, 1, run_id, -1, SQLITE_STATIC);
	return step_done(b, s, err, "inbox drained");
}

/* Writes one event now (outside a transaction, or a batch's remainder). */
static int event_write(sq *b, const rein_event_row *ev, int64_t k, bool payload,
		       rein_err *err)
{
	int rc;
	sqlite3_stmt *s;
	if (payload) {
		if ((s = stmt(b, Q_PAYLOAD_PUT, err)) == NULL)
			return REIN_EIO;
		sqlite3_bind_blob(s, 1, ev->payload_hash, REIN_HASH_LEN, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, ev->payload ? ev->payload : "", -1, SQLITE_STATIC);
		if ((rc = step_done(b, s, err, "payload put")) != REIN_OK)
			return rc;
	}
	if ((s = stmt(b, Q_EVENT_PUT, err)) == NULL)
		return REIN_EIO;
	sqlite3_bind_int64(s, 1, k);
	sqlite3_bind_text(s, 2, ev->type, -1, SQLITE_STATIC);
	bind_text_or_null(s, 3, ev->step);
	sqlite3_bind_int64(s, 4, ev->at);
	sqlite3_bind_blob(s, 5, ev->payload_hash, REIN_HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_blob(s, 6, ev->prev_hash, REIN_HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_blob(s, 7, ev->hash, REIN_HASH_LEN, SQLITE_STATIC);
	return step_done(b, s, err, "event append");
}

static const char *arena_str(const sq *b, size_t off)
{
	return off == NO_STEP ? NULL : b->arena.p + off;
}

/* Copies s (NUL included) into the arena; *off gets its offset. */
static int arena_put(sq *b, const char *s, size_t *off)
{
	if (s == NULL) {
		*off = NO_STEP;
		return REIN_OK;
	}
	*off = b->arena.len;
	return rein_buf_append(&b->arena, s, strlen(s) + 1);
}

static int held_add(sq *b, const rein_event_row *ev, int64_t k, rein_err *err)
{
	if (b->nheld == b->heldcap) {
		size_t cap = b->heldcap ? 2 * b->heldcap : 256;
		held_ev *h = rein_realloc(b->held, cap * sizeof *h);
		if (h == NULL)
			return rein_err_set(err, REIN_ENOMEM, "out of memory");
		b->held = h;
		b->heldcap = cap;
	}
	held_ev *h = &b->held[b->nheld];
	size_t mark = b->arena.len;
	if (arena_put(b, ev->type, &h->type) != REIN_OK ||
	    arena_put(b, ev->step, &h->step) != REIN_OK ||
	    arena_put(b, ev->payload ? ev->payload : "", &h->payload) != REIN_OK) {
		b->arena.len = mark;
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	}
	h->k = k;
	h->at = ev->at;
	memcpy(h->payload_hash, ev->payload_hash, REIN_HASH_LEN);
	memcpy(h->prev_hash, ev->prev_hash, REIN_HASH_LEN);
	memcpy(h->hash, ev->hash, REIN_HASH_LEN);
	b->nheld++;
	return REIN_OK;
}

static int cmp_by_key(const void *x, const void *y)
{
	const held_ev *a = *(const held_ev *const *)x, *c = *(const held_ev *const *)y;
	return a->k < c->k ? -1 : a->k > c->k;
}

static int cmp_by_payload(const void *x, const void *y)
{
	const held_ev *a = *(const held_ev *const *)x, *c = *(const held_ev *const *)y;
	return memcmp(a->payload_hash, c->payload_hash, REIN_HASH_LEN);
}

/* Remembers that payload hash h is in the table (see sq.known). */
static void known_add(sq *b, const uint8_t *h)
{
	if (b->known == NULL && (b->known = rein_calloc(KNOWN_SLOTS, REIN_HASH_LEN)) == NULL)
		return;
	uint64_t x;
	memcpy(&x, h, sizeof x);
	memcpy(b->known[x & (KNOWN_SLOTS - 1)], h, REIN_HASH_LEN);
}

static bool known_has(const sq *b, const uint8_t *h)
{
	if (b->known == NULL)
		return false;
	uint64_t x;
	memcpy(&x, h, sizeof x);
	return memcmp(b->known[x & (KNOWN_SLOTS - 1)], h, REIN_HASH_LEN) == 0;
}

static void known_forget(sq *b)
{
	rein_free(b->known);
	b->known = NULL;
}

/* The INSERT statement for 2^j rows of table t (0 payloads, 1 events). */
static sqlite3_stmt *multi_stmt(sq *b, int t, int j, rein_err *err)
{
	sqlite3_stmt **q = &b->multi[t][j];
	if (*q == NULL) {
		char *text = t == 0 ? multi_insert_sql("INSERT OR IGNORE INTO payloads(hash, body)", 2,
							1 << j)
				    : multi_insert_sql("INSERT INTO events(k, type, step, at, "
							"payload_hash, prev_hash, hash)",
							7, 1 << j);
		if (text == NULL) {
			rein_err_set(err, REIN_ENOMEM, "out of memory");
			return NULL;
		}
		int r = sqlite3_prepare_v3(b->db, text, -1, SQLITE_PREPARE_PERSISTENT, q, NULL);
		rein_free(text);
		if (r != SQLITE_OK) {
			db_err(b, err, "prepare");
			return NULL;
		}
	}
	sqlite3_reset(*q);
	return *q;
}

/* The largest j with 2^j <= left, at most MULTI_MAX. */
static int rows_log2(size_t left)
{
	int j = 0;
	while (j < MULTI_MAX && ((size_t)2 << j) <= left)
		j++;
	return j;
}

/* Writes the held payloads (each distinct one once, and none this handle knows
 * are stored), then the held events, both in key order, many rows per INSERT.
 * Leaves nothing held, whatever happens. */
static int held_write(sq *b, rein_err *err)
{
	int rc = REIN_OK;
	size_t n = b->nheld;
	if (n == 0)
		goto out;
	if (b->ordercap < n) {
		const held_ev **o = rein_realloc(b->order, n * sizeof *o);
		if (o == NULL) {
			rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
			goto out;
		}
		b->order = o;
		b->ordercap = n;
	}
	/* payloads: distinct hashes not known to be stored, sorted */
	size_t m = 0;
	for (size_t i = 0; i < n; i++)
		if (!known_has(b, b->held[i].payload_hash))
			b->order[m++] = &b->held[i];
	qsort(b->order, m, sizeof *b->order, cmp_by_payload);
	size_t d = 0;
	for (size_t i = 0; i < m; i++)
		if (d == 0 || memcmp(b->order[d - 1]->payload_hash, b->order[i]->payload_hash,
				     REIN_HASH_LEN) != 0)
			b->order[d++] = b->order[i];
	for (size_t i = 0; i < d;) {
		int j = rows_log2(d - i);
		sqlite3_stmt *s = multi_stmt(b, 0, j, err);
		if (s == NULL) {
			rc = REIN_EIO;
			goto out;
		}
		for (int r = 0; r < 1 << j; r++) {
			const held_ev *h = b->order[i + (size_t)r];
			sqlite3_bind_blob(s, 2 * r + 1, h->payload_hash, REIN_HASH_LEN, SQLITE_STATIC);
			sqlite3_bind_text(s, 2 * r + 2, b->arena.p + h->payload, -1, SQLITE_STATIC);
		}
		if ((rc = step_done(b, s, err, "payload put")) != REIN_OK)
			goto out;
		for (int r = 0; r < 1 << j; r++)
			known_add(b, b->order[i + (size_t)r]->payload_hash);
		i += (size_t)1 << j;
	}

	/* events, in key order */
	for (size_t i = 0; i < n; i++)
		b->order[i] = &b->held[i];
	qsort(b->order, n, sizeof *b->order, cmp_by_key);
	for (size_t i = 0; i < n;) {
		int j = rows_log2(n - i);
		sqlite3_stmt *s = multi_stmt(b, 1, j, err);
		if (s == NULL) {
			rc = REIN_EIO;
			goto out;
		}
		for (int r = 0; r < 1 << j; r++) {
			const held_ev *h = b->order[i + (size_t)r];
			int p = 7 * r;
			sqlite3_bind_int64(s, p + 1, h->k);
			sqlite3_bind_text(s, p + 2, b->arena.p + h->type, -1, SQLITE_STATIC);
			bind_text_or_null(s, p + 3, arena_str(b, h->step));
			sqlite3_bind_int64(s, p + 4, h->at);
			sqlite3_bind_blob(s, p + 5, h->payload_hash, REIN_HASH_LEN, SQLITE_STATIC);
			sqlite3_bind_blob(s, p + 6, h->prev_hash, REIN_HASH_LEN, SQLITE_STATIC);
			sqlite3_bind_blob(s, p + 7, h->hash, REIN_HASH_LEN, SQLITE_STATIC);
		}
		if ((rc = step_done(b, s, err, "event append")) != REIN_OK)
			goto out;
		i += (size_t)1 << j;
	}
out:
	held_clear(b);
	return rc;
}

static int sq_event_append(void *be, const rein_event_row *ev, rein_err *err)
{
	sq *b = be;
	int rc;
	int64_t k = 0;
	if ((rc = event_key(b, ev, &k, err)) != REIN_OK)
		return rc;
	if (!b->in_tx)
		return event_write(b, ev, k, true, err);
	if ((rc = held_add(b, ev, k, err)) != REIN_OK)
		return rc;
	return b->nheld >= HELD_MAX ? held_write(b, err) : REIN_OK;
}

static void copy_hash(sqlite3_stmt *s, int i, uint8_t *out)
{
	memset(out, 0, REIN_HASH_LEN);
	if (sqlite3_column_bytes(s, i) == REIN_HASH_LEN)
		memcpy(out, sqlite3_column_blob(s, i), REIN_HASH_LEN);
}

static int sq_events_load(void *be, const char *run_id, rein_event_cb cb, void *ud, rein_err *err)
{
	sq *b = be;
	sqlite3_stmt *s = NULL;
	int64_t rid;
	int hr = held_write(b, err); /* the events held so far are part of the answer */
	if (hr != REIN_OK)
		return hr;
	if ((hr = rid_of(b, run_id, &rid, err)) != REIN_OK)
		return hr == REIN_ENOTFOUND ? REIN_OK : hr; /* no run: no events */
	if (sqlite3_prepare_v2(b->db, sql[Q_EVENTS_LOAD], -1, &s, NULL) != SQLITE_OK)
		return db_err(b, err, "events load");
	sqlite3_bind_int64(s, 1, rid * (SEQ_MAX + 1));
	sqlite3_bind_int64(s, 2, rid * (SEQ_MAX + 1) + SEQ_MAX);
	int r, rc = REIN_OK;
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		rein_event_row ev = {
			.run_id = run_id,
			.seq = sqlite3_column_int64(s, 0),
			.type = (const char *)sqlite3_column_text(s, 1),
			.step = (const char *)sqlite3_column_text(s, 2),
			.at = sqlite3_column_int64(s, 3),
			.payload = (const char *)sqlite3_column_text(s, 7),
		};
		copy_hash(s, 4, ev.payload_hash);
		copy_hash(s, 5, ev.prev_hash);
		copy_hash(s, 6, ev.hash);
		int x = cb(ud, &ev);
		if (x != 0) {
			rc = x < 0 ? x : REIN_OK;
			break;
		}
	}
	if (rc == REIN_OK && r != SQLITE_ROW && r != SQLITE_DONE)
		rc = db_err(b, err, "events load");
	sqlite3_finalize(s);
	return rc;
}

/*
 * What the last process on the store left in PATH-shm (the WAL index, in the
 * layout of https://www.sqlite.org/walformat.html, native byte order): the
 * WAL's frame count (mxFrame, offset 16 of the first of two equal 48-byte
 * headers) and how many of them were checkpointed into PATH (nBackfill,
 * offset 96). If frames that were never checkpointed are missing from
 * PATH-wal (it was deleted, or is shorter than they need), their committed
 * transactions are lost: returns how many frames, else 0. Read before SQLite
 * opens the store, since the first connection rebuilds the index.
 */
static int64_t wal_lost_frames(const char *path)
{
	char shm[1100], wal[1100];
	unsigned char h[100];
	int64_t lost = 0;
	FILE *f = NULL;
	struct stat st;
	snprintf(shm, sizeof shm, "%s-shm", path);
	snprintf(wal, sizeof wal, "%s-wal", path);
	if ((f = fopen(shm, "rb")) == NULL || fread(h, 1, sizeof h, f) != sizeof h)
		goto out;
	if (memcmp(h, h + 48, 48) != 0 || h[12] != 1) /* torn or not initialised */
		goto out;
	uint32_t mx, backfill;
	uint16_t szpage;
	memcpy(&szpage, h + 14, 2);
	memcpy(&mx, h + 16, 4);
	memcpy(&backfill, h + 96, 4);
	int64_t page = szpage == 1 ? 65536 : szpage;
	if (mx <= backfill || page < 512)
		goto out;
	int64_t need = 32 + (int64_t)mx * (24 + page);
	int64_t have = stat(wal, &st) == 0 ? (int64_t)st.st_size : 0;
	if (have < need)
		lost = (int64_t)mx - backfill;
out:
	if (f)
		fclose(f);
	return lost;
}

/* Records a loss found at open in meta, where sq_check finds it later. */
static int wal_lost_record(sq *b, int64_t frames, rein_err *err)
{
	char q[200];
	snprintf(q, sizeof q, "INSERT OR REPLACE INTO meta(k, v) VALUES ('wal_lost %lld', %lld)",
		 (long long)rein_clock_now(&rein_clock_system), (long long)frames);
	return sq_exec(b, q, err);
}

typedef struct check_ctx {
	rein_problem_cb cb;
	void *ud;
	int n;
} check_ctx;

static void problem(check_ctx *c, const char *msg)
{
	c->n++;
	if (c->cb)
		c->cb(c->ud, msg);
}

static int sq_check(void *be, rein_problem_cb cb, void *ud, int *n, rein_err *err)
{
	sq *b = be;
	check_ctx c = {cb, ud, 0};
	sqlite3_stmt *s = NULL;
	int rc = REIN_OK, r;
	if (sqlite3_prepare_v2(b->db, "SELECT k, v FROM meta WHERE k LIKE 'wal_lost %' ORDER BY k",
			       -1, &s, NULL) != SQLITE_OK) {
		rc = db_err(b, err, "check");
		goto out;
	}
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		char t[32], msg[300];
		long long at = strtoll((const char *)sqlite3_column_text(s, 0) + 9, NULL, 10);
		rein_time_format(at, t);
		snprintf(msg, sizeof msg,
			 "committed transactions were lost: the store's WAL file (-wal) was "
			 "deleted or cut while %lld of its frames were not yet in the database "
			 "(found %s); runs started or advanced in them are gone or older",
			 (long long)sqlite3_column_int64(s, 1), t);
		problem(&c, msg);
	}
	if (r != SQLITE_DONE) {
		rc = db_err(b, err, "check");
		goto out;
	}
	sqlite3_finalize(s);
	if (sqlite3_prepare_v2(b->db, "PRAGMA quick_check", -1, &s, NULL) != SQLITE_OK) {
		rc = db_err(b, err, "check");
		goto out;
	}
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		const char *t = (const char *)sqlite3_column_text(s, 0);
		if (t && strcmp(t, "ok") != 0) {
			char msg[300];
			snprintf(msg, sizeof msg, "the database file is damaged: %s", t);
			problem(&c, msg);
		}
	}
	if (r != SQLITE_DONE) {
		char msg[300];
		snprintf(msg, sizeof msg, "the database file is damaged: %s", sqlite3_errmsg(b->db));
		problem(&c, msg);
	}
	*n = c.n;
out:
	sqlite3_finalize(s);
	return rc;
}

static void read_anchor(sqlite3_stmt *s, rein_anchor_row *a)
{
	memset(a, 0, sizeof *a);
	a->seq = sqlite3_column_int64(s, 0);
	const char *id = (const char *)sqlite3_column_text(s, 1);
	snprintf(a->run_id, sizeof a->run_id, "%s", id ? id : "");
	a->run_last_seq = sqlite3_column_int64(s, 2);
	copy_hash(s, 3, a->run_head_hash);
	copy_hash(s, 4, a->prev_hash);
	copy_hash(s, 5, a->hash);
}

static int sq_anchor_last(void *be, rein_anchor_row *a, bool *found, rein_err *err)
{
	sq *b = be;
	if (b->in_tx && b->anc_known) {
		if ((*found = b->anc_found))
			*a = b->anc;
		return REIN_OK;
	}
	sqlite3_stmt *s = stmt(b, Q_ANCHOR_LAST, err);
	if (s == NULL)
		return REIN_EIO;
	int r = sqlite3_step(s), rc = REIN_OK;
	if (r == SQLITE_ROW) {
		read_anchor(s, a);
		*found = true;
	} else if (r == SQLITE_DONE) {
		*found = false;
	} else {
		rc = db_err(b, err, "anchor last");
	}
	sqlite3_reset(s);
	if (rc == REIN_OK && b->in_tx) {
		b->anc_known = true;
		if ((b->anc_found = *found))
			b->anc = *a;
	}
	return rc;
}

static int sq_anchor_append(void *be, const rein_anchor_row *a, rein_err *err)
{
	sq *b = be;
	if (!b->in_tx)
		return rein_err_set(err, REIN_EINVAL, "sqlite: anchor append outside a transaction");
	sqlite3_stmt *s = stmt(b, Q_ANCHOR_PUT, err);
	if (s == NULL)
		return REIN_EIO;
	sqlite3_bind_int64(s, 1, a->seq);
	sqlite3_bind_text(s, 2, a->run_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, a->run_last_seq);
	sqlite3_bind_blob(s, 4, a->run_head_hash, REIN_HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_blob(s, 5, a->prev_hash, REIN_HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_blob(s, 6, a->hash, REIN_HASH_LEN, SQLITE_STATIC);
	int rc = step_done(b, s, err, "anchor append");
	if (rc == REIN_OK) {
		b->anc_known = b->anc_found = true;
		b->anc = *a;
	}
	return rc;
}

static int sq_anchors_load(void *be, rein_anchor_cb cb, void *ud, rein_err *err)
{
	sq *b = be;
	sqlite3_stmt *s = NULL;
	int r, rc = REIN_OK;
	if (sqlite3_prepare_v2(b->db,
			       "SELECT seq, run_id, run_last_seq, run_head_hash, prev_hash, hash "
			       "FROM anchors ORDER BY seq",
			       -1, &s, NULL) != SQLITE_OK)
		return db_err(b, err, "anchors load");
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		rein_anchor_row a;
		read_anchor(s, &a);
		int x = cb(ud, &a);
		if (x != 0) {
			rc = x < 0 ? x : REIN_OK;
			break;
		}
	}
	if (rc == REIN_OK && r != SQLITE_ROW && r != SQLITE_DONE)
		rc = db_err(b, err, "anchors load");
	sqlite3_finalize(s);
	return rc;
}

/* ---- the kill switch ---------------------------------------------------- */

/* Created in every store this rein opens (new or not): one row per switch,
 * lifted ones kept with lifted_at; meta 'kill_version' counts the changes. */
static const char kills_sql[] =
	"CREATE TABLE IF NOT EXISTS kills(id INTEGER PRIMARY KEY, workflow TEXT, tool TEXT,"
	" tenant TEXT, reason TEXT NOT NULL, by TEXT, at INTEGER NOT NULL, lifted_at INTEGER);"
	"INSERT OR IGNORE INTO meta(k, v) VALUES ('kill_version', 0);";

#define KILL_SEL "workflow IS ?1 AND tool IS ?2 AND tenant IS ?3 AND lifted_at IS NULL"

/* Prepares q into *s; REIN_EIO (or REIN_ENOMEM) with err otherwise. */
static int kill_prep(sq *b, const char *q, sqlite3_stmt **s, rein_err *err)
{
	return sqlite3_prepare_v2(b->db, q, -1, s, NULL) == SQLITE_OK ? REIN_OK
								     : db_err(b, err, "kill switch");
}

static void kill_bind_sel(sqlite3_stmt *s, const rein_kill_row *k)
{
	bind_text_or_null(s, 1, k->workflow);
	bind_text_or_null(s, 2, k->tool);
	bind_text_or_null(s, 3, k->tenant);
}

static int kill_bump(sq *b, rein_err *err)
{
	return sq_exec(b, "UPDATE meta SET v = v + 1 WHERE k = 'kill_version'", err);
}

static int sq_kill_set(void *be, const rein_kill_row *k, int64_t *id, rein_err *err)
{
	sq *b = be;
	sqlite3_stmt *s = NULL;
	int64_t got = 0;
	int rc = auto_begin(b, "kill set", err);
	if (rc != REIN_OK)
		return rc;
	if ((rc = kill_prep(b, "SELECT id FROM kills WHERE " KILL_SEL, &s, err)) != REIN_OK)
		goto out;
	kill_bind_sel(s, k);
	int r = sqlite3_step(s);
	if (r == SQLITE_ROW)
		got = sqlite3_column_int64(s, 0);
	else if (r != SQLITE_DONE)
		rc = db_err(b, err, "kill set");
	sqlite3_finalize(s);
	s = NULL;
	if (rc != REIN_OK)
		goto out;
	if ((rc = kill_prep(b, got ? "UPDATE kills SET reason = ?4, by = ?5, at = ?6 WHERE id = ?7"
				   : "INSERT INTO kills(workflow, tool, tenant, reason, by, at) "
				     "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
			    &s, err)) != REIN_OK)
		goto out;
	if (!got)
		kill_bind_sel(s, k);
	sqlite3_bind_text(s, 4, k->reason, -1, SQLITE_STATIC);
	bind_text_or_null(s, 5, k->by);
	sqlite3_bind_int64(s, 6, k->at);
	if (got)
		sqlite3_bind_int64(s, 7, got);
	if (sqlite3_step(s) != SQLITE_DONE) {
		rc = db_err(b, err, "kill set");
		goto out;
	}
	if (!got)
		got = sqlite3_last_insert_rowid(b->db);
	rc = kill_bump(b, err);
out:
	sqlite3_finalize(s);
	rc = auto_end(b, rc, err);
	if (rc == REIN_OK && id)
		*id = got;
	return rc;
}

static int sq_kill_lift(void *be, const rein_kill_row *sel, int *n, rein_err *err)
{
	sq *b = be;
	sqlite3_stmt *s = NULL;
	int changed = 0;
	int rc = auto_begin(b, "kill lift", err);
	if (rc != REIN_OK)
		return rc;
	if ((rc = kill_prep(b, "UPDATE kills SET lifted_at = ?4 WHERE " KILL_SEL, &s, err)) !=
	    REIN_OK)
		goto out;
	kill_bind_sel(s, sel);
	sqlite3_bind_int64(s, 4, sel->at);
	if (sqlite3_step(s) != SQLITE_DONE) {
		rc = db_err(b, err, "kill lift");
		goto out;
	}
	changed = sqlite3_changes(b->db);
	if (changed > 0)
		rc = kill_bump(b, err);
out:
	sqlite3_finalize(s);
	rc = auto_end(b, rc, err);
	if (rc == REIN_OK && n)
		*n = changed;
	return rc;
}

static int sq_kill_version(void *be, int64_t *version, rein_err *err)
{
	sq *b = be;
	if (b->kill_v == NULL &&
	    sqlite3_prepare_v3(b->db, "SELECT v FROM meta WHERE k = 'kill_version'", -1,
			       SQLITE_PREPARE_PERSISTENT, &b->kill_v, NULL) != SQLITE_OK)
		return db_err(b, err, "kill version");
	int r = sqlite3_step(b->kill_v), rc = REIN_OK;
	int64_t v = r == SQLITE_ROW ? sqlite3_column_int64(b->kill_v, 0) : 0;
	if (r != SQLITE_ROW && r != SQLITE_DONE)
		rc = db_err(b, err, "kill version");
	sqlite3_reset(b->kill_v);
	if (rc == REIN_OK)
		*version = v;
	return rc;
}

static int sq_kill_list(void *be, int64_t *version, rein_kill_row **rows, size_t *n,
			rein_err *err)
{
	sq *b = be;
	sqlite3_stmt *s = NULL;
	rein_kill_row *v = NULL;
	size_t m = 0, cap = 0;
	int64_t ver = 0;
	bool own = !b->in_tx; /* one read transaction: the rows and the version agree */
	int rc = own ? sq_exec(b, "BEGIN", err) : REIN_OK;
	if (rc != REIN_OK)
		return rc;
	if ((rc = sq_kill_version(b, &ver, err)) != REIN_OK ||
	    (rc = kill_prep(b, "SELECT id, workflow, tool, tenant, reason, by, at FROM kills "
			       "WHERE lifted_at IS NULL ORDER BY id", &s, err)) != REIN_OK)
		goto out;
	int r;
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		void *w = m == cap ? rows_grow(v, &cap, sizeof *v) : v;
		if (w == NULL) {
			rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
			goto out;
		}
		v = w;
		bool oom = false;
		rein_kill_row *e = &v[m++];
		memset(e, 0, sizeof *e);
		e->id = sqlite3_column_int64(s, 0);
		e->workflow = col_dup(s, 1, &oom);
		e->tool = col_dup(s, 2, &oom);
		e->tenant = col_dup(s, 3, &oom);
		e->reason = col_dup(s, 4, &oom);
		e->by = col_dup(s, 5, &oom);
		e->at = sqlite3_column_int64(s, 6);
		if (oom) {
			rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
			goto out;
		}
	}
	if (r != SQLITE_DONE)
		rc = db_err(b, err, "kill list");
out:
	sqlite3_finalize(s);
	if (own)
		sqlite3_exec(b->db, "COMMIT", NULL, NULL, NULL); /* read only: nothing to lose */
	if (rc != REIN_OK) {
		rein_kill_rows_free(v, m);
		return rc;
	}
	*version = ver;
	*rows = v;
	*n = m;
	return REIN_OK;
}

static int64_t query_int(sq *b, const char *q);

#define PURGE_EV "events e ON e.k BETWEEN g.rid * 16777216 AND g.rid * 16777216 + 16777215"

/*
 * Retention (store.h, rein_store_purge), in one write transaction: the
 * selected runs into temp.gc_runs, the payloads they use that are stored into
 * temp.gc_cand, less those an event of another run uses (a scan of the
 * events: a batch job, no index on payload_hash to slow every append), then
 * the deletes. secure_delete overwrites the deleted text in the pages.
 */
static int sq_purge(void *be, int64_t ended_before, bool dry_run, rein_purge_stats *st,
		    rein_err *err)
{
	sq *b = be;
	sqlite3_stmt *q = NULL;
	int64_t v[3];
	int rc = auto_begin(b, "purge", err);
	if (rc != REIN_OK)
		return rc;
	known_forget(b);
	if ((rc = sq_exec(b, "PRAGMA secure_delete = ON;"
			  "CREATE TEMP TABLE IF NOT EXISTS gc_runs(rid INTEGER PRIMARY KEY, id TEXT NOT NULL);"
			  "CREATE TEMP TABLE IF NOT EXISTS gc_cand(hash BLOB PRIMARY KEY) WITHOUT ROWID;"
			  "DELETE FROM temp.gc_runs; DELETE FROM temp.gc_cand;", err)) != REIN_OK)
		goto out;
	if (sqlite3_prepare_v2(b->db, "INSERT INTO temp.gc_runs SELECT rid, id FROM runs WHERE "
			       "status IN ('succeeded', 'failed', 'escalated', 'cancelled') AND "
			       "updated_at < ?1", -1, &q, NULL) != SQLITE_OK) {
		rc = db_err(b, err, "purge: selecting runs");
		goto out;
	}
	sqlite3_bind_int64(q, 1, ended_before);
	rc = sqlite3_step(q) == SQLITE_DONE ? REIN_OK : db_err(b, err, "purge: selecting runs");
	sqlite3_finalize(q);
	if (rc != REIN_OK)
		goto out;
	v[0] = query_int(b, "SELECT count(*) FROM temp.gc_runs");
	if ((rc = sq_exec(b, "INSERT OR IGNORE INTO temp.gc_cand SELECT DISTINCT e.payload_hash "
			  "FROM temp.gc_runs g JOIN " PURGE_EV " JOIN payloads p ON p.hash = e.payload_hash",
			  err)) != REIN_OK)
		goto out;
	if ((rc = sq_exec(b, "DELETE FROM temp.gc_cand WHERE hash IN (SELECT e.payload_hash FROM "
			  "events e WHERE (e.k >> 24) NOT IN (SELECT rid FROM temp.gc_runs))", err)) != REIN_OK)
		goto out;
	st->shared = sqlite3_changes64(b->db);
	v[1] = query_int(b, "SELECT count(*) FROM temp.gc_cand");
	v[2] = query_int(b, "SELECT coalesce(sum(length(CAST(body AS BLOB))), 0) FROM payloads "
			 "WHERE hash IN (SELECT hash FROM temp.gc_cand)");
	if (v[0] < 0 || v[1] < 0 || v[2] < 0) {
		rc = db_err(b, err, "purge: counting");
		goto out;
	}
	st->runs = v[0];
	st->payloads = v[1];
	st->bytes = v[2];
	if ((rc = sq_exec(b, "DELETE FROM payloads WHERE hash IN (SELECT hash FROM temp.gc_cand)",
			  err)) != REIN_OK)
		goto out;
	/* the rows whose run.ended payload is gone now (in a dry run: would be) */
	if ((rc = sq_exec(b, "UPDATE runs SET output = NULL, reason = NULL WHERE rid IN "
			  "(SELECT rid FROM temp.gc_runs) AND (output IS NOT NULL OR reason IS NOT NULL) "
			  "AND NOT EXISTS (SELECT 1 FROM temp.gc_runs g JOIN " PURGE_EV
			  " JOIN payloads p ON p.hash = e.payload_hash WHERE g.rid = runs.rid "
			  "AND e.type = 'run.ended')", err)) != REIN_OK)
		goto out;
	st->rows = sqlite3_changes64(b->db);
	if ((rc = sq_exec(b, "UPDATE inbox SET data = NULL WHERE data IS NOT NULL AND run IN "
			  "(SELECT id FROM temp.gc_runs)", err)) != REIN_OK)
		goto out;
	st->inbox = sqlite3_changes64(b->db);
	rc = sq_exec(b, "DELETE FROM temp.gc_runs; DELETE FROM temp.gc_cand;", err);
out:
	if (dry_run && rc == REIN_OK) {
		sq_rollback(b);
	} else {
		rc = auto_end(b, rc, err);
	}
	sqlite3_exec(b->db, "PRAGMA secure_delete = OFF", NULL, NULL, NULL);
	return rc;
}

/* ---- calls per tenant -------------------------------------------------- */

/* Created in every store this rein opens (new or not): one row per tool
 * intent, for the per-tenant limits; the index serves the count by window. */
static const char calls_sql[] =
	"CREATE TABLE IF NOT EXISTS calls(run TEXT NOT NULL, seq INTEGER NOT NULL,"
	" tenant TEXT NOT NULL, tool TEXT NOT NULL, write INTEGER NOT NULL, at INTEGER NOT NULL,"
	" PRIMARY KEY(run, seq)) WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS calls_by_tenant ON calls(tenant, at);";

static int sq_call_note(void *be, const rein_call_row *c, rein_err *err)
{
	sq *b = be;
	if (!b->in_tx)
		return rein_err_set(err, REIN_EINVAL, "sqlite: call note needs a transaction");
	if (b->call_ins == NULL &&
	    sqlite3_prepare_v3(b->db, "INSERT OR IGNORE INTO calls(run, seq, tenant, tool, write, at)"
				      " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
			       -1, SQLITE_PREPARE_PERSISTENT, &b->call_ins, NULL) != SQLITE_OK)
		return db_err(b, err, "call note");
	sqlite3_stmt *q = b->call_ins;
	sqlite3_bind_text(q, 1, c->run_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, c->seq);
	sqlite3_bind_text(q, 3, c->tenant, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 4, c->tool, -1, SQLITE_STATIC);
	sqlite3_bind_int(q, 5, c->write);
	sqlite3_bind_int64(q, 6, c->at);
	int rc = sqlite3_step(q) == SQLITE_DONE ? REIN_OK : db_err(b, err, "call note");
	sqlite3_reset(q);
	sqlite3_clear_bindings(q);
	return rc;
}

static int sq_call_counts(void *be, const char *tenant, int64_t since, rein_call_count **rows,
			  size_t *n, rein_err *err)
{
	sq *b = be;
	sqlite3_stmt *q = NULL;
	rein_call_count *v = NULL;
	size_t nv = 0, cap = 0;
	int rc = REIN_OK, r;
	if (sqlite3_prepare_v2(b->db, "SELECT tool, write, count(*) FROM calls"
				      " WHERE tenant = ?1 AND at > ?2 GROUP BY tool, write",
			       -1, &q, NULL) != SQLITE_OK) {
		rc = db_err(b, err, "call counts");
		goto out;
	}
	sqlite3_bind_text(q, 1, tenant, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, since);
	while ((r = sqlite3_step(q)) == SQLITE_ROW) {
		if (nv == cap) {
			size_t nc = cap ? cap * 2 : 8;
			rein_call_count *g = rein_realloc(v, nc * sizeof *v);
			if (g == NULL) {
				rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
				goto out;
			}
			v = g;
			cap = nc;
		}
		v[nv] = (rein_call_count){.tool = rein_strdup((const char *)sqlite3_column_text(q, 0)),
					  .write = sqlite3_column_int(q, 1) != 0,
					  .n = sqlite3_column_int64(q, 2)};
		if (v[nv++].tool == NULL) {
			rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
			goto out;
		}
	}
	if (r != SQLITE_DONE)
		rc = db_err(b, err, "call counts");
out:
	sqlite3_finalize(q);
	if (rc != REIN_OK) {
		rein_call_counts_free(v, nv);
		return rc;
	}
	*rows = v;
	*n = nv;
	return REIN_OK;
}


/* ---- deployments (canaries) --------------------------------------------- */

/* Created in every store this rein opens, like kills: one row per
 * deployment, never deleted (rein_deploy_row). */
static const char deploys_sql[] =
	"CREATE TABLE IF NOT EXISTS deployments(id INTEGER PRIMARY KEY, name TEXT NOT NULL,"
	" version TEXT NOT NULL, role TEXT NOT NULL, percent INTEGER NOT NULL, rule TEXT,"
	" state TEXT NOT NULL, reason TEXT, by TEXT, at INTEGER NOT NULL,"
	" ended_at INTEGER NOT NULL DEFAULT 0);";
/* The rollback rule counts runs by version (sq_run_counts). The index is made
 * with the first deployment, not with the store: a store that never deploys
 * does not pay one more B-tree insert per run (about 3% of a1's instructions,
 * bench/README.md). */
static const char deploys_index_sql[] =
	"CREATE INDEX IF NOT EXISTS runs_by_version ON runs(workflow, version);";

/* Begins a transaction unless the caller holds one (*own says which). */
static int join_begin(sq *b, bool *own, rein_err *err)
{
	*own = !b->in_tx;
	return *own ? sq_begin(b, err) : REIN_OK;
}

static int join_end(sq *b, bool own, int rc, rein_err *err)
{
	if (!own)
		return rc;
	return auto_end(b, rc, err);
}

static int sq_deploy_add(void *be, const rein_deploy_row *d, int64_t *id, rein_err *err)
{
	sq *b = be;
	sqlite3_stmt *s = NULL;
	bool own;
	int rc = join_begin(b, &own, err);
	if (rc != REIN_OK)
		return rc;
	if ((rc = sq_exec(b, deploys_index_sql, err)) != REIN_OK)
		goto out;
	if (sqlite3_prepare_v2(b->db, "INSERT INTO deployments(name, version, role, percent, rule,"
			       " state, by, at) VALUES (?1, ?2, ?3, ?4, ?5, 'active', ?6, ?7)",
			       -1, &s, NULL) != SQLITE_OK) {
		rc = db_err(b, err, "deploy add");
		goto out;
	}
	sqlite3_bind_text(s, 1, d->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, d->version, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, d->role, -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 4, d->percent);
	bind_text_or_null(s, 5, d->rule);
	bind_text_or_null(s, 6, d->by);
	sqlite3_bind_int64(s, 7, d->at);
	if (sqlite3_step(s) != SQLITE_DONE) {
		rc = db_err(b, err, "deploy add");
		goto out;
	}
	*id = sqlite3_last_insert_rowid(b->db);
out:
	sqlite3_finalize(s);
	return join_end(b, own, rc, err);
}

static int sq_deploy_end(void *be, int64_t id, const char *state, const char *reason, int64_t at,
			 rein_err *err)
{
	sq *b = be;
	sqlite3_stmt *s = NULL;
	bool own;
	int rc = join_begin(b, &own, err);
	if (rc != REIN_OK)
		return rc;
	if (sqlite3_prepare_v2(b->db, "UPDATE deployments SET state = ?2, reason = ?3, ended_at = ?4"
			       " WHERE id = ?1 AND state = 'active'", -1, &s, NULL) != SQLITE_OK) {
		rc = db_err(b, err, "deploy end");
		goto out;
	}
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_text(s, 2, state, -1, SQLITE_STATIC);
	bind_text_or_null(s, 3, reason);
	sqlite3_bind_int64(s, 4, at);
	if (sqlite3_step(s) != SQLITE_DONE)
		rc = db_err(b, err, "deploy end");
	else if (sqlite3_changes(b->db) == 0)
		rc = rein_err_set(err, REIN_ENOTFOUND, "no active deployment %lld", (long long)id);
out:
	sqlite3_finalize(s);
	return join_end(b, own, rc, err);
}

static int sq_deploy_list(void *be, const char *name, rein_deploy_row **rows, size_t *n,
			  rein_err *err)
{
	sq *b = be;
	sqlite3_stmt *s = NULL;
	rein_deploy_row *v = NULL;
	size_t m = 0, cap = 0;
	int rc = REIN_OK, r;
	if (sqlite3_prepare_v2(b->db, "SELECT id, name, version, role, percent, rule, state, reason,"
			       " by, at, ended_at FROM deployments WHERE ?1 IS NULL OR name = ?1"
			       " ORDER BY id", -1, &s, NULL) != SQLITE_OK)
		return db_err(b, err, "deploy list");
	bind_text_or_null(s, 1, name);
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		void *w = m == cap ? rows_grow(v, &cap, sizeof *v) : v;
		if (w == NULL) {
			rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
			goto out;
		}
		v = w;
		bool oom = false;
		rein_deploy_row *e = &v[m++];
		memset(e, 0, sizeof *e);
		e->id = sqlite3_column_int64(s, 0);
		e->name = col_dup(s, 1, &oom);
		snprintf(e->version, sizeof e->version, "%s",
			 (const char *)sqlite3_column_text(s, 2));
		e->role = col_dup(s, 3, &oom);
		e->percent = sqlite3_column_int(s, 4);
		e->rule = col_dup(s, 5, &oom);
		e->state = col_dup(s, 6, &oom);
		e->reason = col_dup(s, 7, &oom);
		e->by = col_dup(s, 8, &oom);
		e->at = sqlite3_column_int64(s, 9);
		e->ended_at = sqlite3_column_int64(s, 10);
		if (oom) {
			rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
			goto out;
		}
	}
	if (r != SQLITE_DONE)
		rc = db_err(b, err, "deploy list");
out:
	sqlite3_finalize(s);
	if (rc != REIN_OK) {
		rein_deploy_rows_free(v, m);
		return rc;
	}
	*rows = v;
	*n = m;
	return REIN_OK;
}

static int sq_run_counts(void *be, const char *workflow, const char *version, int64_t since,
			 int64_t until, rein_run_counts *c, rein_err *err)
{
	sq *b = be;
	sqlite3_stmt *s = NULL;
	int rc = REIN_OK, r;
	if (sqlite3_prepare_v2(b->db, "SELECT status, count(*) FROM runs WHERE workflow = ?1 AND"
			       " version = ?2 AND created_at >= ?3 AND (?4 = 0 OR created_at < ?4)"
			       " GROUP BY status", -1, &s, NULL) != SQLITE_OK)
		return db_err(b, err, "run counts");
	sqlite3_bind_text(s, 1, workflow, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, version, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, since);
	sqlite3_bind_int64(s, 4, until);
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		int st = rein_status_parse((const char *)sqlite3_column_text(s, 0));
		if (st >= 0 && st < REIN_STORE_NSTATUS)
			c->n[st] += sqlite3_column_int64(s, 1);
	}
	if (r != SQLITE_DONE)
		rc = db_err(b, err, "run counts");
	sqlite3_finalize(s);
	return rc;
}

static const rein_store_ops sqlite_ops = {
	.close = sq_close,
	.begin = sq_begin,
	.commit = sq_commit,
	.rollback = sq_rollback,
	.spec_put = sq_spec_put,
	.spec_get = sq_spec_get,
	.run_insert = sq_run_insert,
	.run_update = sq_run_update,
	.run_get = sq_run_get,
	.run_list = sq_run_list,
	.lease_claim = sq_lease,
	.claim_due = sq_claim_due,
	.event_append = sq_event_append,
	.events_load = sq_events_load,
	.inbox_put = sq_inbox_put,
	.inbox_list = sq_inbox_list,
	.inbox_drained = sq_inbox_drained,
	.check = sq_check,
	.anchor_last = sq_anchor_last,
	.anchor_append = sq_anchor_append,
	.anchors_load = sq_anchors_load,
	.kill_set = sq_kill_set,
	.kill_lift = sq_kill_lift,
	.kill_list = sq_kill_list,
	.kill_version = sq_kill_version,
	.org_policy_put = sq_org_policy_put,
	.org_policy_current = sq_org_policy_current,
	.purge = sq_purge,
	.call_note = sq_call_note,
	.call_counts = sq_call_counts,
	.deploy_add = sq_deploy_add,
	.deploy_end = sq_deploy_end,
	.deploy_list = sq_deploy_list,
	.run_counts = sq_run_counts,
};

static int64_t query_int(sq *b, const char *q)
{
	sqlite3_stmt *s = NULL;
	int64_t v = -1;
	if (sqlite3_prepare_v2(b->db, q, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return v;
}

/* Creates the schema in a new store (unless must_exist); refuses a store of
 * another version. */
static int schema_ensure(sq *b, const char *path, bool must_exist, rein_err *err)
{
	int rc = sq_exec(b, "BEGIN IMMEDIATE", err);
	if (rc != REIN_OK)
		return rc;
	int64_t version = query_int(b, "PRAGMA user_version");
	int64_t tables = query_int(b, "SELECT count(*) FROM sqlite_schema WHERE name = 'runs'");
	if (version < 0 || tables < 0) {
		rc = db_err(b, err, "reading the schema version");
	} else if (version == 0 && tables == 0 && must_exist) {
		rc = rein_err_set(err, REIN_ENOTFOUND, "no database at %s (the file holds no rein store)",
				  path);
	} else if (version == 0 && tables == 0) {
		char set[48];
		snprintf(set, sizeof set, "PRAGMA user_version=%d", STORE_VERSION);
		if ((rc = sq_exec(b, schema_sql, err)) == REIN_OK)
			rc = sq_exec(b, set, err);
	} else if (version != STORE_VERSION) {
		rc = rein_err_set(err, REIN_EINVAL,
				  "%s: store schema version %lld, this rein reads version %d "
				  "(a store from an earlier development build: start a new one)",
				  path, (long long)(version ? version : 1), STORE_VERSION);
	}
	if (rc == REIN_OK) /* the kill switch's table, in new and existing stores */
		rc = sq_exec(b, kills_sql, err);
	if (rc == REIN_OK) /* the calls per tenant, likewise */
		rc = sq_exec(b, calls_sql, err);
	if (rc == REIN_OK) /* the deployments' table, likewise */
		rc = sq_exec(b, deploys_sql, err);
	if (rc == REIN_OK)
		return sq_exec(b, "COMMIT", err);
	sqlite3_exec(b->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

int rein_store_open_sqlite(const char *path, const rein_store_opts *opts, rein_store **out,
			   rein_err *err)
{
	rein_init();
	int rc = REIN_OK;
	bool must_exist = opts && opts->must_exist;
	struct stat st;
	if (must_exist && stat(path, &st) != 0)
		return rein_err_set(err, REIN_ENOTFOUND, "no database at %s", path);
	if (must_exist && S_ISREG(st.st_mode) && st.st_size == 0) /* opening would write it */
		return rein_err_set(err, REIN_ENOTFOUND, "no database at %s (the file is empty)", path);
	int64_t lost = wal_lost_frames(path);
	sq *b = rein_calloc(1, sizeof *b);
	if (b == NULL)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	/* NOMUTEX: one thread at a time uses a handle (the runner hands it to its
	 * commit thread and back under its own lock), so SQLite's per-call mutex
	 * is not needed */
	if (sqlite3_open_v2(path, &b->db,
			    SQLITE_OPEN_READWRITE | (must_exist ? 0 : SQLITE_OPEN_CREATE) |
				    SQLITE_OPEN_NOMUTEX,
			    NULL) != SQLITE_OK) {
		rc = rein_err_set(err, REIN_EIO, "%s: %s", path,
				  b->db ? sqlite3_errmsg(b->db) : "cannot open");
		goto fail;
	}
	sqlite3_busy_timeout(b->db, 10000);
	/*
	 * A small WAL that is written over rather than grown: SQLite checkpoints
	 * after 256 pages (1 MiB) and starts the WAL again from its beginning
	 * (a new store's first pass appends, so the smaller the sooner), and
	 * PERSIST_WAL keeps the file (and its blocks) between connections. On
	 * this kind of disk an fdatasync of a file that grew also writes its
	 * inode and costs about 1.7x one that only rewrote existing blocks
	 * (bench/README.md, round 4).
	 */
	char pragmas[128];
	snprintf(pragmas, sizeof pragmas,
		 "PRAGMA journal_mode=WAL; PRAGMA synchronous=%s; PRAGMA wal_autocheckpoint=256;",
		 opts && opts->no_sync ? "NORMAL" : "FULL");
	int persist = 1;
	sqlite3_file_control(b->db, "main", SQLITE_FCNTL_PERSIST_WAL, &persist);
	if (sqlite3_exec(b->db, pragmas, NULL, NULL, NULL) != SQLITE_OK) {
		/* the first read of the file: say what is wrong with it, not the SQL */
		int code = sqlite3_errcode(b->db);
		rc = code == SQLITE_NOMEM ? rein_err_set(err, REIN_ENOMEM, "out of memory")
		     : code == SQLITE_NOTADB
			     ? rein_err_set(err, REIN_EIO, "%s is not a rein database (not an SQLite file)", path)
			     : rein_err_set(err, REIN_EIO, "%s: cannot set the database up: %s", path,
					    sqlite3_errmsg(b->db));
		goto fail;
	}
	if ((rc = schema_ensure(b, path, must_exist, err)) != REIN_OK)
		goto fail;
	if (lost > 0 && (rc = wal_lost_record(b, lost, err)) != REIN_OK)
		goto fail;
	if ((rc = rein_store_wrap(&sqlite_ops, b, out)) != REIN_OK) {
		rein_err_set(err, rc, "out of memory");
		goto fail;
	}
	return REIN_OK;
fail:
	sq_close(b);
	return rc;
}
