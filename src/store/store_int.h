/*
 * store internals shared by store.c and verify.c (not for other layers).
 */
#ifndef REIN_STORE_INT_H
#define REIN_STORE_INT_H

#include "store.h"

/* One anchored head of a run, as the verifier checks it against the run's
 * chain: the event run_seq must have hash head. */
typedef struct store_anchor_ref {
	int64_t anchor;  /* the anchor's seq */
	int64_t run_seq; /* its run_last_seq */
	uint8_t head[REIN_HASH_LEN];
} store_anchor_ref;

/*
 * rein_store_verify_run, also checking the run's anchored heads refs (n of
 * them, sorted by run_seq; may be NULL when n is 0). A head that is not on
 * the chain fails with *bad_seq its run seq and a message naming the anchor.
 */
int store_verify_run_refs(rein_store *s, const char *run_id, const store_anchor_ref *refs,
			  size_t n, int64_t *bad_seq, rein_err *err);

#endif
