/*
 * The kill switch and shadow mode: the runner's last look at a write call
 * before it goes on the wire (dispatch_all, after the barrier commit and the
 * inbox drain). See docs/operations.md for why nothing a switch covers can
 * leave once the switch is recorded.
 *
 * The switches are cached per runner with the store's kill version; the
 * version (one row) is read again before every write call, and the list only
 * when it changed. A read after the switch's commit always sees it (the
 * store's kill_set autocommits), and the read happens after the commit that
 * made the call's intent durable, just before the call is handed to the
 * tools layer.
 */
#include "runner_int.h"

#include <assert.h>
#include <string.h>

void runner_kill_free(rein_runner *rn)
{
	rein_kill_rows_free(rn->kills, rn->nkills);
	rn->kills = NULL;
	rn->nkills = 0;
	rn->kill_loaded = false;
}

/* Brings the cached switches up to the store's current version. */
static int kill_refresh(rein_runner *rn, rein_err *err)
{
	assert(rn->fly == NULL);
	int64_t v = 0;
	rein_kill_row *rows = NULL;
	size_t n = 0;
	int rc = rein_store_kill_version(rn->st, &v, err);
	if (rc != REIN_OK || (rn->kill_loaded && v == rn->kill_ver))
		return rc;
	if ((rc = rein_store_kill_list(rn->st, &v, &rows, &n, err)) != REIN_OK)
		return rc;
	runner_kill_free(rn);
	rn->kills = rows;
	rn->nkills = n;
	rn->kill_ver = v;
	rn->kill_loaded = true;
	return REIN_OK;
}

static bool sel_fits(const char *sel, const char *v)
{
	return sel == NULL || (v != NULL && strcmp(sel, v) == 0);
}

/* The first switch covering a write call of tool in run a, or NULL. */
static const rein_kill_row *kill_covering(const rein_runner *rn, const active *a,
					  const char *tool)
{
	const char *tenant = rein_run_tenant(a->run);
	for (size_t i = 0; i < rn->nkills; i++) {
		const rein_kill_row *k = &rn->kills[i];
		if (sel_fits(k->workflow, a->spec->name) && sel_fits(k->tool, tool) &&
		    sel_fits(k->tenant, tenant))
			return k;
	}
	return NULL;
}

/* Shadow mode: what would have been sent is recorded, and the contract's
 * shadow result answers the call ({"shadow": true} when it declares none). */
static int shadow_answer(rein_runner *rn, active *a, int step, const rein_tool_call *call,
			 rein_err *err)
{
	const rein_tool *tl = &a->spec->tools[call->tool];
	json_t *res = tl->shadow ? json_incref(tl->shadow) : json_pack("{s:b}", "shadow", 1);
	json_t *d = res ? json_pack("{s:s, s:s, s:O, s:O}", "tool", tl->name, "key", call->key,
				    "args", (json_t *)call->args, "result", res)
			: NULL;
	int rc = d ? runner_append(rn, a, rein_event_name(REIN_EV_TOOL_SHADOWED), step, d, err)
		   : rein_err_set(err, REIN_ENOMEM, "out of memory");
	json_decref(d);
	d = NULL;
	bool agent = a->spec->steps[step].kind == REIN_STEP_AGENT;
	if (rc == REIN_OK) { /* the answer, as tool_done records one that came back */
		d = json_pack("{s:O, s:i, s:i}", "out", res, "attempt", call->attempt, "latency_ms", 0);
		rc = d ? runner_append(rn, a,
				       rein_event_name(agent ? REIN_EV_TOOL_RESULT : REIN_EV_STEP_COMPLETED),
				       step, d, err)
		       : rein_err_set(err, REIN_ENOMEM, "out of memory");
	}
	json_decref(d);
	json_decref(res);
	return rc;
}

int runner_write_gate(rein_runner *rn, active *a, int step, const rein_tool_call *call,
		      bool *kept, rein_err *err)
{
	assert(rn != NULL && a != NULL && call != NULL && kept != NULL);
	const rein_tool *tl = &a->spec->tools[call->tool];
	assert(tl->write);
	*kept = false;
	if (rein_run_shadow(a->run)) {
		*kept = true;
		return shadow_answer(rn, a, step, call, err);
	}
	int rc = kill_refresh(rn, err);
	const rein_kill_row *k = rc == REIN_OK ? kill_covering(rn, a, tl->name) : NULL;
	if (k == NULL)
		return rc;
	*kept = true;
	json_t *d = json_pack("{s:s, s:s, s:I, s:s}", "tool", tl->name, "key", call->key, "switch",
			      (json_int_t)k->id, "reason", k->reason);
	rc = d ? runner_append(rn, a, rein_event_name(REIN_EV_KILL_HELD), step, d, err)
	       : rein_err_set(err, REIN_ENOMEM, "out of memory");
	json_decref(d);
	return rc;
}

int runner_kill_recheck(rein_runner *rn, active *a, rein_err *err)
{
	assert(rn != NULL && a != NULL);
	int rc = REIN_OK;
	bool fresh = false;
	if (rein_run_status(a->run) != REIN_RUN_WAITING)
		return REIN_OK;
	for (size_t s = 0; s < a->spec->nsteps && rc == REIN_OK; s++) {
		rein_tool_call call;
		if (!rein_run_killed(a->run, (int)s) || rein_run_tool_call(a->run, (int)s, &call) != REIN_OK)
			continue;
		if (!fresh && (rc = kill_refresh(rn, err)) != REIN_OK)
			break;
		fresh = true;
		const char *tool = a->spec->tools[call.tool].name;
		if (kill_covering(rn, a, tool))
			continue; /* still held: looked at again when the run wakes */
		json_t *d = json_pack("{s:s, s:s}", "tool", tool, "key", call.key);
		rc = d ? runner_append(rn, a, rein_event_name(REIN_EV_KILL_LIFTED), (int)s, d, err)
		       : rein_err_set(err, REIN_ENOMEM, "out of memory");
		json_decref(d);
	}
	return rc;
}
