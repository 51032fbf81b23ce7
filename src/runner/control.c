/*
 * runner control: requests from outside a worker, made the same way by the
 * command line and (later) the server. Today the one request is a cancel.
 */
#include <assert.h>
#include <string.h>

#include "runner.h"

int rein_cancel_request(rein_store *store, rein_script *sandbox, const rein_runner_opts *opts,
			const char *id, rein_run_result *res, bool *requested, rein_err *err)
{
	assert(store != NULL && sandbox != NULL && id != NULL && res != NULL && requested != NULL);
	rein_runner_opts o = opts ? *opts : (rein_runner_opts){0};
	rein_runner *rn = NULL;
	rein_run_result r = {0};
	bool got = false;
	o.max_wait_ms = 0; /* end the run, do not sleep through its timers */
	int rc = rein_runner_new(store, sandbox, &o, &rn, err);
	if (rc != REIN_OK)
		goto out;
	rc = rein_runner_resume(rn, id, err);
	if (rc == REIN_ECONFLICT) { /* a live worker holds it: leave it the request */
		rein_err_clear(err);
		if ((rc = rein_store_cancel_request(store, id, err)) == REIN_OK)
			*requested = true;
		goto out;
	}
	if (rc != REIN_OK)
		goto out;
	if (rein_runner_active(rn) > 0 && ((rc = rein_runner_cancel(rn, id, err)) != REIN_OK ||
					   (rc = rein_runner_drive(rn, err)) != REIN_OK))
		goto out;
	while (rein_runner_result(rn, &r)) {
		if (!got && strcmp(r.id, id) == 0) {
			*res = r;
			got = true;
		} else {
			rein_run_result_clear(&r);
		}
	}
	if (!got)
		rc = rein_err_set(err, REIN_EIO, "run %s: cancelled without a result", id);
	else
		*requested = false;
out:
	rein_runner_free(rn);
	return rc;
}
