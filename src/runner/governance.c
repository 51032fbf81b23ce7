/*
 * What a run's start records for governance (docs/policy.md): the requester
 * the runner was given, and the organisation policies current in the store,
 * pinned in run.started so a resume and a replay decide with the same rules.
 */
#include <string.h>

#include "runner_int.h"

/* How long a read of the organisation policies serves new runs: a start is
 * hot (thousands a second), a `rein policy load` takes effect within this. */
#define ORG_POLICY_TTL_MS 1000

/* Reads the current organisation policies into rn's cache ({version, rules}
 * or NULL when none are loaded). */
static int org_refresh(rein_runner *rn, rein_err *err)
{
	char *version = NULL, *rules = NULL;
	json_t *list = NULL, *o = NULL;
	int rc = rein_store_org_policy_current(rn->st, &version, &rules, err);
	if (rc != REIN_OK)
		goto out;
	if (version != NULL) {
		rein_err pe = {0};
		if ((list = rein_json_parse(rules, strlen(rules), &pe)) == NULL) {
			rc = rein_err_set(err, REIN_ECORRUPT,
					  "the stored organisation policies do not parse: %s", pe.msg);
			goto out;
		}
		if ((o = json_pack("{s:s, s:O}", "version", version, "rules", list)) == NULL) {
			rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
			goto out;
		}
	}
	json_decref(rn->org_cache);
	rn->org_cache = o;
	o = NULL;
	rn->org_read = true;
	rn->org_read_at = runner_now(rn);
out:
	json_decref(o);
	json_decref(list);
	rein_free(version);
	rein_free(rules);
	return rc;
}

int runner_start_governance(rein_runner *rn, json_t *data, rein_err *err)
{
	int rc = REIN_OK;
	if (rn->o.requester &&
	    json_object_set_nocheck(data, "requester", (json_t *)rn->o.requester) != 0)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	if (rn->o.deployment &&
	    json_object_set_nocheck(data, "deployment", (json_t *)rn->o.deployment) != 0)
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	if ((!rn->org_read || runner_now(rn) - rn->org_read_at >= ORG_POLICY_TTL_MS) &&
	    (rc = org_refresh(rn, err)) != REIN_OK)
		return rc;
	if (rn->org_cache && json_object_set_nocheck(data, "org_policies", rn->org_cache) != 0)
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
	return rc;
}

void runner_governance_free(rein_runner *rn)
{
	json_decref(rn->org_cache);
	rn->org_cache = NULL;
	rn->org_read = false;
}
