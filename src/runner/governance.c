/*
 * What a run's start records for governance (docs/policy.md): the requester
 * the runner was given, and the organisation policies current in the store,
 * pinned in run.started so a resume and a replay decide with the same rules.
 */
#include <string.h>

#include "runner_int.h"

int runner_start_governance(rein_runner *rn, json_t *data, rein_err *err)
{
	char *version = NULL, *rules = NULL;
	json_t *list = NULL;
	int rc = REIN_OK;
	if (rn->o.requester &&
	    json_object_set_nocheck(data, "requester", (json_t *)rn->o.requester) != 0) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	if ((rc = rein_store_org_policy_current(rn->st, &version, &rules, err)) != REIN_OK ||
	    version == NULL)
		goto out;
	rein_err pe = {0};
	if ((list = rein_json_parse(rules, strlen(rules), &pe)) == NULL) {
		rc = rein_err_set(err, REIN_ECORRUPT, "the stored organisation policies do not parse: %s",
				  pe.msg);
		goto out;
	}
	if (json_object_set_new_nocheck(data, "org_policies",
					json_pack("{s:s, s:O}", "version", version, "rules", list)) != 0)
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
out:
	json_decref(list);
	rein_free(version);
	rein_free(rules);
	return rc;
}
