/*
 * Per-tenant limits (docs/policy.md, limit: {max, window_s, per: tenant}):
 * each tool.intent is noted for its run's tenant in the transaction that
 * appends it (runner_note_call, from batch_execute), and before the engine
 * decides a call of a run whose policies hold such a limit, the runner
 * commits what is pending and counts, per rule, the calls the store holds
 * for the tenant within the rule's window (runner_rate_counts). The engine
 * records the counts it used on policy.decision, so replay decides the same.
 */
#include "runner_int.h"

#include <assert.h>
#include <string.h>

#define MAX_RATES 64

/* The tenant whose calls a run counts: its requester's, else "default". */
static const char *tenant_of(const active *a)
{
	const char *t = rein_run_tenant(a->run);
	return t && *t ? t : "default";
}

int runner_note_call(rein_store *st, const pending *p, rein_err *err)
{
	if (p->row.type[0] != 't' || strcmp(p->row.type, rein_event_name(REIN_EV_TOOL_INTENT)) != 0)
		return REIN_OK;
	json_t *d = rein_json_parse(p->row.payload, strlen(p->row.payload), NULL);
	const char *tool = json_string_value(json_object_get(d, "tool"));
	const char *eff = json_string_value(json_object_get(d, "effect"));
	int rc = REIN_OK;
	if (tool != NULL) {
		rein_call_row c = {.tenant = tenant_of(p->a), .run_id = p->row.run_id,
				   .seq = p->row.seq, .tool = tool,
				   .write = eff && strcmp(eff, "write") == 0, .at = p->row.at};
		rc = rein_store_call_note(st, &c, err);
	}
	json_decref(d);
	return rc;
}

bool runner_rated(const active *a)
{
	const rein_policy *sets[2];
	rein_run_policies(a->run, sets);
	return rein_policy_rates(sets[0], NULL, 0) + rein_policy_rates(sets[1], NULL, 0) > 0;
}

int runner_rate_counts(rein_runner *rn, active *a, rein_err *err)
{
	int rc = REIN_OK;
	json_t *counts = NULL;
	rein_call_count *rows = NULL;
	size_t nrows = 0;
	int64_t since = INT64_MIN;
	const rein_policy *sets[2];
	rein_policy_rate rates[MAX_RATES];
	size_t n = 0;
	rein_run_policies(a->run, sets);
	for (int s = 0; s < 2; s++) {
		size_t got = rein_policy_rates(sets[s], rates + n, MAX_RATES - n);
		n += got < MAX_RATES - n ? got : MAX_RATES - n;
	}
	/* what is pending goes to the store first, so every call is counted */
	if ((rc = runner_flush(rn, false, err)) != REIN_OK)
		goto out;
	if ((counts = json_object()) == NULL) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	int64_t now = runner_now(rn);
	for (size_t i = 0; i < n; i++) {
		int64_t from = now - rates[i].window_ms;
		if (rows == NULL || from != since) {
			rein_call_counts_free(rows, nrows);
			rows = NULL;
			nrows = 0;
			rein_err e = {0};
			since = from;
			if (rein_store_call_counts(rn->st, tenant_of(a), since, &rows, &nrows, &e) !=
			    REIN_OK) {
				/* not counted: the rule fails closed, saying so */
				if (e.code == REIN_ENOMEM)
					rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
				goto out;
			}
		}
		int64_t c = 0;
		for (size_t j = 0; j < nrows; j++)
			if (rein_policy_rate_counts(&rates[i], rows[j].tool, rows[j].write))
				c += rows[j].n;
		if (json_object_set_new(counts, rates[i].id, json_integer(c)) != 0) {
			rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
			goto out;
		}
	}
out:
	rein_run_set_tenant_counts(a->run, rc == REIN_OK ? counts : NULL);
	json_decref(counts);
	rein_call_counts_free(rows, nrows);
	return rc;
}
