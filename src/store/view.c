/*
 * store views: the JSON shape of a run row and of an event row, the one
 * every front end prints (`rein show`, `rein runs --json`, `rein events`, and
 * later the HTTP API), so that they cannot drift apart.
 */
#include <assert.h>
#include <string.h>

#include "store.h"

/* Sets key to v (a new reference, taken even on failure): REIN_OK or REIN_ENOMEM. */
static int set_new(json_t *o, const char *key, json_t *v)
{
	return v != NULL && json_object_set_new(o, key, v) == 0 ? REIN_OK : REIN_ENOMEM;
}

json_t *rein_run_row_json(const rein_run_row *r)
{
	assert(r != NULL);
	char created[32], updated[32], w[32];
	int rc = REIN_OK;
	rein_time_format(r->created_at, created);
	rein_time_format(r->updated_at, updated);
	json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I}", "run", r->id, "workflow",
			      r->workflow ? r->workflow : "", "version", r->version, "status",
			      rein_status_name(r->status), "created_at", created, "updated_at",
			      updated, "event_count", (json_int_t)r->last_seq);
	if (o == NULL)
		goto out;
	if (r->output) {
		json_t *out = rein_json_parse(r->output, strlen(r->output), NULL);
		rc = set_new(o, "output", out ? out : json_null());
	}
	if (rc == REIN_OK && r->reason)
		rc = set_new(o, "reason", json_string(r->reason));
	if (rc == REIN_OK && r->wake_at && r->status == REIN_RUN_WAITING) {
		rein_time_format(r->wake_at, w);
		rc = set_new(o, "wake_at", json_string(w));
	}
	if (rc == REIN_OK && r->lease_owner)
		rc = set_new(o, "lease_owner", json_string(r->lease_owner));
	if (rc == REIN_OK && r->mail)
		rc = set_new(o, "cancel_requested", json_true());
	if (rc != REIN_OK) {
		json_decref(o);
		o = NULL;
	}
out:
	return o;
}

json_t *rein_event_row_json(const rein_event_row *ev)
{
	assert(ev != NULL && ev->type != NULL);
	char at[32], hash[2 * REIN_HASH_LEN + 1];
	rein_time_format(ev->at, at);
	rein_hex(ev->hash, REIN_HASH_LEN, hash);
	/* a purged payload says so: {"purged": true} as data, and "purged": true */
	json_t *data = ev->payload ? rein_json_parse(ev->payload, strlen(ev->payload), NULL)
				   : json_pack("{s:b}", "purged", 1);
	json_t *o = json_pack("{s:I, s:s, s:s?, s:s, s:o, s:s}", "seq", (json_int_t)ev->seq, "type",
			      ev->type, "step", ev->step, "at", at, "data",
			      data ? data : json_null(), "hash", hash);
	if (o && ev->payload == NULL && set_new(o, "purged", json_true()) != REIN_OK) {
		json_decref(o);
		o = NULL;
	}
	return o;
}
