/*
 * base: the ground every other layer stands on. Error codes and the error
 * object, the one allocation wrapper (with fault injection for tests), growable
 * buffers, SHA-256 and HMAC through libcrypto, JSON helpers over jansson, and the
 * clock and PRNG as injectable handles so nothing above reads time or entropy
 * behind the engine's back.
 */
#ifndef REIN_BASE_H
#define REIN_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* ---- errors ---------------------------------------------------------- */

/* Every function that can fail returns one of these (0 on success). */
enum {
	REIN_OK = 0,
	REIN_ENOMEM = -1,    /* an allocation failed */
	REIN_EINVAL = -2,    /* bad argument or bad input */
	REIN_EIO = -3,       /* a file or database operation failed */
	REIN_ENOTFOUND = -4, /* no such run, step, file */
	REIN_ESPEC = -5,     /* the workflow spec is invalid */
	REIN_ESCHEMA = -6,   /* a document does not match its schema */
	REIN_ESCRIPT = -7,   /* a Lua script or expression failed */
	REIN_ECONFLICT = -8, /* lease held by another owner, state changed */
	REIN_ECORRUPT = -9,  /* stored data does not verify */
	REIN_ELIMIT = -10,   /* a budget or resource limit was hit */
	REIN_EFAULT = -11,   /* an injected fault (tests only) */
};

/* A short text for a code; never NULL. */
const char *rein_strerror(int code);

/*
 * One error type. Human-readable detail travels in a rein_err the caller owns;
 * the first error wins: a setter on an error that already holds one does
 * nothing (and frees what it was handed to attach).
 *
 * Decision (issue 9, point 10): the lists that used to travel beside it
 * (spec diagnostics, schema errors) are attachments of the same object, not
 * separate out-parameters. An attachment is a heap list owned by the error and
 * freed by rein_err_clear. Only two setters attach: rein_err_set_diags (the
 * spec loader, REIN_ESPEC) and rein_err_set_schema (rein_schema_check,
 * REIN_ESCHEMA). So:
 *   - a rein_err must start zeroed ({0}) as before;
 *   - one that never got an attachment needs no cleanup (the stack errors all
 *     over the code stay valid as they are);
 *   - whoever passes a rein_err to rein_spec_load_* or rein_schema_check
 *     calls rein_err_clear on it before it goes out of scope, and does not
 *     copy it by value (forward the text with rein_err_set(dst, e.code, "%s",
 *     e.msg) instead, which drops the lists).
 * msg always holds the whole readable message (truncated to fit, never in the
 * middle of a UTF-8 sequence); the lists are for callers that want structure.
 * A string that is a legitimate value (a tool outcome's error text, a step's
 * failure reason) is not an error path and may stay a string.
 */

/* A located problem, printed "FILE:LINE:COL: msg". */
typedef struct rein_diag {
	char *file;
	int line, col;
	char *msg;
} rein_diag;

typedef struct rein_diags {
	rein_diag *v;
	size_t n;
} rein_diags;

void rein_diags_free(rein_diags *d);
/* Appends a diagnostic; returns REIN_ENOMEM on failure (d unchanged). */
int rein_diags_add(rein_diags *d, const char *file, int line, int col, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
/* Prints "FILE:LINE:COL: msg" lines to file (a FILE *). */
void rein_diags_print(const rein_diags *d, void *file);

/* A schema validation error (schema.h produces them). */
typedef struct rein_schema_error {
	char *pointer; /* instance location, JSON Pointer ("" is the root) */
	char *keyword; /* e.g. "required", "type", "$ref" */
	char *message; /* readable, e.g. "missing required property \"id\"" */
} rein_schema_error;

typedef struct rein_schema_errors {
	rein_schema_error *v;
	size_t n;
} rein_schema_errors;

void rein_schema_errors_free(rein_schema_errors *errs);

typedef struct rein_err {
	int code;
	char msg[1024];
	rein_diags diags;          /* attachment: REIN_ESPEC, every problem (owned) */
	rein_schema_errors schema; /* attachment: REIN_ESCHEMA, every error (owned) */
} rein_err;

/* Frees the attachments and resets e to "no error". NULL is fine. */
void rein_err_clear(rein_err *e);
/* Records code and message if e is not NULL and holds no error yet; returns code. */
int rein_err_set(rein_err *e, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/*
 * Like rein_err_set; when it records, e also takes the list (moved: *d or *errs
 * is left empty). When it does not record (e NULL or already set), the list is
 * freed. Either way the caller's list is empty afterwards. Returns code.
 */
int rein_err_set_diags(rein_err *e, rein_diags *d, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
int rein_err_set_schema(rein_err *e, rein_schema_errors *errs, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/*
 * Prints e to file (a FILE *): its diagnostics one a line when it has any,
 * else "PREFIX: msg" (just "msg" when prefix is NULL) and a newline.
 */
void rein_err_print(const rein_err *e, const char *prefix, void *file);

/* The statuses of a run; stored and printed by name. */
typedef enum rein_status {
	REIN_RUN_RUNNING = 0,
	REIN_RUN_WAITING,
	REIN_RUN_SUCCEEDED,
	REIN_RUN_FAILED,
	REIN_RUN_ESCALATED,
	REIN_RUN_CANCELLED,
	REIN_RUN_NEEDS_REVIEW,
} rein_status;

const char *rein_status_name(rein_status s);
/* Returns -1 for an unknown name. */
int rein_status_parse(const char *name);

/* ---- memory ---------------------------------------------------------- */

/*
 * All allocation goes through these so a test can make the Nth one fail.
 * They are also installed as jansson's allocator by rein_init().
 */
void *rein_malloc(size_t n);
void *rein_calloc(size_t nmemb, size_t size);
void *rein_realloc(void *p, size_t n);
void rein_free(void *p);
char *rein_strdup(const char *s);
char *rein_strndup(const char *s, size_t n);
char *rein_sprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Fault injection. Kinds are counted separately; rein_fault_arm(kind, n) makes
 * the nth check of that kind from now fail (n >= 1), 0 disarms. rein_fault_hit
 * is called at each fault point and returns true when this one must fail.
 */
/* Write faults are injected by a wrapping store backend (tests/unit/faultstore.h). */
enum { REIN_FAULT_ALLOC = 0, REIN_FAULT_KINDS = 1 };
void rein_fault_arm(int kind, long n);
/* As rein_fault_arm, but the nth check and the count - 1 after it fail
 * (count >= 1; rein_fault_arm is count 1): a caller that retries a failed
 * allocation once (Lua, after an emergency collection) still runs out. */
void rein_fault_arm_run(int kind, long n, long count);
bool rein_fault_hit(int kind);
/* How many checks of this kind were made since the last arm (for test sweeps). */
long rein_fault_count(int kind);

/* Process-wide setup: jansson allocator, SQLite and libcrypto init. Idempotent. */
void rein_init(void);

/* ---- buffers --------------------------------------------------------- */

typedef struct rein_buf {
	char *p; /* NUL-terminated when len > 0 or after any append */
	size_t len, cap;
} rein_buf;

int rein_buf_append(rein_buf *b, const void *data, size_t n);
int rein_buf_puts(rein_buf *b, const char *s);
int rein_buf_printf(rein_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void rein_buf_free(rein_buf *b);

/*
 * Replaces each ${env.NAME} and ${env.NAME:-default} in tmpl with the
 * environment variable (or the default when it is unset or empty). Other text
 * is kept. Returns a new string (caller frees) or NULL when out of memory.
 */
char *rein_expand_env(const char *tmpl);

/* Reads a whole file into *out (NUL-terminated); caller frees with rein_free. */
int rein_file_read(const char *path, char **out, size_t *len, rein_err *err);
/*
 * Like rein_file_read on dir/rel, but only when the file's real path (every
 * symlink resolved) lies inside dir's real path: a link to /etc/passwd, or
 * one that climbs out with "..", is refused with REIN_EINVAL "resolves to
 * PATH, outside DIR" (the caller names rel). REIN_ENOTFOUND when missing.
 */
int rein_file_read_within(const char *dir, const char *rel, char **out, size_t *len,
			  rein_err *err);

/* ---- hashing --------------------------------------------------------- */

#define REIN_HASH_LEN 32
void rein_sha256(const void *data, size_t n, uint8_t out[REIN_HASH_LEN]);
/* Incremental SHA-256 on the caller's stack: never allocates, cannot fail. */
typedef struct rein_sha256_ctx {
	_Alignas(8) unsigned char opaque[112];
} rein_sha256_ctx;
void rein_sha256_init(rein_sha256_ctx *c);
void rein_sha256_update(rein_sha256_ctx *c, const void *data, size_t n);
void rein_sha256_final(rein_sha256_ctx *c, uint8_t out[REIN_HASH_LEN]);
void rein_hmac_sha256(const void *key, size_t klen, const void *data, size_t n,
		      uint8_t out[REIN_HASH_LEN]);
/* Writes 2*n hex digits and a NUL into out. */
void rein_hex(const uint8_t *in, size_t n, char *out);
int rein_unhex(const char *in, uint8_t *out, size_t n);

/* ---- approval tokens (token.c, docs/approvals.md) ------------------------ */

/*
 * A token is "v1.KID.base64url(payload).base64url(mac)": payload the compact
 * canonical JSON of its claims, mac the HMAC-SHA256 of "v1.KID.PAYLOAD" under
 * the key KID. A key set holds named keys; the first signs, all verify (so a
 * rotated-out key keeps its tokens valid until they expire).
 */
typedef struct rein_token_keys rein_token_keys;
/* Parses "kid=hexsecret,kid2=hexsecret" (whitespace and newlines also
 * separate; a secret is 16 to 64 bytes of hex; a kid is [A-Za-z0-9_-],
 * 1-32 chars). REIN_EINVAL with the reason; REIN_ENOMEM. */
int rein_token_keys_parse(const char *text, rein_token_keys **out, rein_err *err);
void rein_token_keys_free(rein_token_keys *k);
/* The signing key's id (static storage of k). */
const char *rein_token_keys_kid(const rein_token_keys *k);
/* Signs claims (an object, borrowed) with the first key; *out caller frees. */
int rein_token_sign(const rein_token_keys *k, const json_t *claims, char **out, rein_err *err);
/*
 * Checks a token's form, key id, MAC and expiry (claims.exp, ms, against
 * now_ms): REIN_OK and *claims (caller decrefs), or REIN_EINVAL with the
 * reason in err ("malformed token", "unknown key id 'K'", "bad signature",
 * "expired"). Never reads beyond the string; constant-time MAC compare.
 */
int rein_token_verify(const rein_token_keys *k, const char *token, int64_t now_ms,
		      json_t **claims, rein_err *err);
/* The claims of a token, read WITHOUT checking its MAC or expiry (to route
 * it to its run; the worker verifies it): *claims or REIN_EINVAL. */
int rein_token_peek(const char *token, json_t **claims, rein_err *err);
/* SHA-256 hex (65 bytes with the NUL) of tool + "\n" + the canonical args
 * (json_dumps JSON_SORT_KEYS|JSON_COMPACT): the action an approval binds to.
 * REIN_ENOMEM. */
int rein_action_hash(const char *tool, const json_t *args, char out[65]);

/* ---- JSON ------------------------------------------------------------ */

/*
 * Canonical compact encoding (sorted keys); caller frees with rein_free.
 * Reals are written in the shortest form that reads back to the same double
 * (24.99, not 24.989999999999998). The one dump path: route every JSON text
 * rein writes through it.
 */
char *rein_json_dump(const json_t *j);
/*
 * The same writer with jansson's encoding flags (JSON_INDENT(n), JSON_COMPACT,
 * JSON_SORT_KEYS, JSON_ENCODE_ANY; without JSON_SORT_KEYS keys keep their
 * insertion order, as with JSON_PRESERVE_ORDER): the text json_dumps(j, flags)
 * would write, except that reals are shortest (JSON_ENSURE_ASCII,
 * JSON_ESCAPE_SLASH and JSON_EMBED are left to jansson, with the largest
 * precision any real of j needs). For display and files (tools
 * lock, `rein show`); caller frees with rein_free. NULL on OOM or when j is
 * not an object or array and JSON_ENCODE_ANY is not set.
 */
char *rein_json_dump_flags(const json_t *j, size_t flags);
/*
 * Parses text (any JSON value; strings may contain \u0000; duplicate keys are
 * refused); on failure fills err with "line L col C: why" and returns NULL.
 * The one parse path: whatever rein_json_dump writes, this reads back.
 */
json_t *rein_json_parse(const char *text, size_t len, rein_err *err);

/* ---- clock and randomness -------------------------------------------- */

/* Time in milliseconds since the Unix epoch. Injected wherever time is read. */
typedef struct rein_clock {
	int64_t (*now_ms)(void *ctx);
	void *ctx;
} rein_clock;

extern const rein_clock rein_clock_system;
static inline int64_t rein_clock_now(const rein_clock *c) { return c->now_ms(c->ctx); }

/* A manual clock for tests and the simulator. */
typedef struct rein_manual_clock {
	rein_clock clock;
	int64_t now;
} rein_manual_clock;
void rein_manual_clock_init(rein_manual_clock *m, int64_t start_ms);

/* xoshiro256** seeded by splitmix64: deterministic, for the simulator and jitter. */
typedef struct rein_rng {
	uint64_t s[4];
} rein_rng;
void rein_rng_seed(rein_rng *r, uint64_t seed);
uint64_t rein_rng_next(rein_rng *r);
/* Uniform in [0, n). */
uint64_t rein_rng_below(rein_rng *r, uint64_t n);

/* Formats ms since epoch as RFC 3339 UTC with milliseconds into out[32]. */
void rein_time_format(int64_t ms, char out[32]);

/* A random identifier: prefix + 26 lowercase base32 chars from the OS. */
int rein_random_id(const char *prefix, char *out, size_t outlen);

/* ---- redaction (redact.c) and sealing (seal.c) ----------------------- */

/*
 * Detection of sensitive values in text, and their replacement by typed
 * placeholders ("[email:1]", "[card:2]") numbered per class and stable for the
 * life of one redactor (the runner keeps one per run). It lives in base
 * because the runner (what is stored), the store and the CLI (what is shown)
 * and the trace layer (what is exported) all need the same detectors, and they
 * are pure text functions that know nothing of workflows.
 */
enum {
	REIN_REDACT_EMAIL = 1u << 0,  /* local@domain.tld */
	REIN_REDACT_PHONE = 1u << 1,  /* +CC..., or 7 to 15 digits with separators */
	REIN_REDACT_CARD = 1u << 2,   /* 13 to 19 digits (spaces/dashes) passing Luhn */
	REIN_REDACT_IBAN = 1u << 3,   /* CCdd + 11..30 alphanumerics passing mod-97 */
	REIN_REDACT_TOKEN = 1u << 4,  /* "Bearer X", sk-..., ghp_..., AKIA..., xoxb-... */
	REIN_REDACT_SECRET = 1u << 5, /* the exact values given to rein_redactor_secret */
};
/* The class bit of a name ("email", "phone", "card", "iban", "token",
 * "secret"), or 0 for an unknown name. */
unsigned rein_redact_class(const char *name);
/* The Luhn check over n ASCII digits (n >= 2). */
bool rein_luhn_valid(const char *digits, size_t n);
/* The ISO 13616 mod-97 check over an IBAN of n characters without spaces
 * (two letters, two digits, alphanumerics; case-insensitive). */
bool rein_iban_valid(const char *s, size_t n);

typedef struct rein_redactor rein_redactor;
/* A redactor for the classes (a mask of REIN_REDACT_*). Caller frees. */
int rein_redactor_new(unsigned classes, rein_redactor **out);
void rein_redactor_free(rein_redactor *r);
/* Adds an exact value to redact as [secret:N] (values under 4 bytes are
 * ignored: they would match everywhere). Needs REIN_REDACT_SECRET. */
int rein_redactor_secret(rein_redactor *r, const char *value);
/* Records that placeholder stands for value (read back from a sealed vault),
 * so the same value gets the same placeholder again and numbering goes on
 * after it. REIN_EINVAL for a text that is not a placeholder. */
int rein_redactor_learn(rein_redactor *r, const char *placeholder, const char *value);
/*
 * Redacts text of n bytes into *out (a new NUL-terminated string, caller
 * frees; NULL when nothing matched, so the common case copies nothing).
 * found (an object, may be NULL) gets placeholder -> real value for each
 * placeholder written. REIN_ENOMEM only.
 */
int rein_redact_text(rein_redactor *r, const char *text, size_t n, char **out, json_t *found);
/* A deep copy of v with every string value redacted (object keys are kept);
 * found as above. *out is v itself (a new reference) when nothing matched. */
int rein_redact_json(rein_redactor *r, json_t *v, json_t **out, json_t *found);
/* A copy of v with each placeholder that map (placeholder -> value) names
 * put back in every string; NULL on OOM. */
json_t *rein_unredact_json(json_t *v, const json_t *map);

#define REIN_KEY_LEN 32
/* n random bytes from the OS CSPRNG (RAND_bytes). REIN_EIO on failure. */
int rein_random_bytes(void *out, size_t n);
/*
 * AES-256-GCM. Seal: *out = nonce[12] || ciphertext[n] || tag[16] (caller
 * frees, *outlen = n + 28), a fresh random nonce each call; aad (may be NULL)
 * is authenticated, not stored. Open: the reverse; REIN_ECORRUPT when the key,
 * the aad or a byte is wrong.
 */
int rein_seal(const uint8_t key[REIN_KEY_LEN], const void *pt, size_t n, const char *aad,
	      uint8_t **out, size_t *outlen);
int rein_unseal(const uint8_t key[REIN_KEY_LEN], const uint8_t *in, size_t n, const char *aad,
		char **pt, size_t *ptlen);

#endif
