/*
 * runner control: requests from outside a worker, made the same way by the
 * command line and (later) the server: a cancel, a signal.
 */
#include <assert.h>
#include <stdio.h>
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

int rein_spec_of_version(rein_store *store, rein_script *sandbox, const char *version,
			 rein_spec **out, rein_err *err)
{
	assert(store != NULL && sandbox != NULL && version != NULL && out != NULL);
	char *text = NULL;
	json_t *bundle = NULL;
	rein_err le = {0};
	int rc = rein_store_spec_get(store, version, &text, err);
	if (rc != REIN_OK)
		goto out;
	if ((bundle = rein_json_parse(text, strlen(text), err)) == NULL) {
		rc = err && err->code ? err->code : REIN_ECORRUPT;
		goto out;
	}
	char path[80];
	snprintf(path, sizeof path, "version:%.12s", version);
	if ((rc = rein_spec_load_bundle(bundle, path, sandbox, out, &le)) != REIN_OK)
		rein_err_set(err, le.code, "%s", le.msg);
out:
	rein_err_clear(&le);
	json_decref(bundle);
	rein_free(text);
	return rc;
}

int rein_signal_send(rein_store *store, rein_script *sandbox, const char *id, const char *name,
		     const json_t *data, const char *sig_id, const char *sender, char id_out[64],
		     bool *dup, rein_err *err)
{
	assert(store != NULL && sandbox != NULL && id != NULL && name != NULL && id_out != NULL);
	rein_run_row row = {0};
	rein_spec *spec = NULL;
	json_t *d = NULL;
	char *text = NULL;
	char sid[64];
	int rc = rein_store_run_get(store, id, &row, err);
	if (rc != REIN_OK)
		goto out;
	if (row.status >= REIN_RUN_SUCCEEDED) {
		rc = rein_err_set(err, REIN_EINVAL, "run %s has ended (%s): it takes no signal", id,
				  rein_status_name((rein_status)row.status));
		goto out;
	}
	if ((rc = rein_spec_of_version(store, sandbox, row.version, &spec, err)) != REIN_OK)
		goto out;
	const json_t *v = data ? data : json_null();
	const rein_step *first = NULL; /* the first wait for it with a schema */
	bool waits = false, fits = false;
	for (size_t i = 0; i < spec->nsteps && !fits; i++) {
		const rein_step *st = &spec->steps[i];
		if (st->kind != REIN_STEP_WAIT || st->u.wait.signal == NULL ||
		    strcmp(st->u.wait.signal, name) != 0)
			continue;
		waits = true;
		if (st->u.wait.schema == NULL) {
			fits = true;
		} else {
			rein_err e = {0};
			fits = rein_schema_check(st->u.wait.schema, v, &e, "signal") == REIN_OK;
			rein_err_clear(&e);
			if (first == NULL)
				first = st;
		}
	}
	if (!waits) {
		rc = rein_err_set(err, REIN_EINVAL, "workflow %s has no wait step for signal '%s'",
				  spec->name ? spec->name : "", name);
		goto out;
	}
	if (!fits) {
		rc = rein_schema_check(first->u.wait.schema, v, err,
				       "signal %s: data does not match the schema of step '%s'", name,
				       first->name);
		goto out;
	}
	if (sig_id)
		snprintf(sid, sizeof sid, "%s", sig_id);
	else if ((rc = rein_random_id("sig_", sid, sizeof sid)) != REIN_OK) {
		rein_err_set(err, rc, "cannot make a signal id");
		goto out;
	}
	d = json_pack("{s:s, s:O}", "name", name, "data", (json_t *)v);
	if (d == NULL || (text = rein_json_dump(d)) == NULL) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	rein_inbox_row msg = {.run_id = id, .id = sid, .type = "signal", .data = text,
			      .sender = sender, .at = rein_clock_now(&rein_clock_system)};
	if ((rc = rein_store_inbox_put(store, &msg, dup, err)) == REIN_OK)
		snprintf(id_out, 64, "%s", sid);
out:
	rein_free(text);
	json_decref(d);
	rein_spec_free(spec);
	rein_run_row_clear(&row);
	return rc;
}
