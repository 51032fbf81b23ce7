/*
 * Deployments and online canaries (contract in runner.h; docs/operations.md
 * "Canaries"). The store keeps the rows; this file holds the rules: one
 * active stable and one active candidate per workflow name, the
 * deterministic split of new runs by start key, and the rollback rule that
 * compares the candidate's outcomes with the stable version's.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runner.h"

const rein_rollback_rule rein_rollback_default = {
	.success_drop = 0.1, .escalation_rise = 0.1, .min_runs = 20};

static bool parse_rate(const char *v, double *out)
{
	char *end;
	double d = strtod(v, &end);
	if (*v == '\0' || *end != '\0' || !(d >= 0 && d <= 1))
		return false;
	*out = d;
	return true;
}

int rein_rollback_parse(const char *text, rein_rollback_rule *out, rein_err *err)
{
	assert(text != NULL && out != NULL);
	rein_rollback_rule r = rein_rollback_default;
	char item[128];
	int rc = REIN_OK;
	const char *p = text;
	while (*p) {
		size_t n = strcspn(p, ",");
		if (n == 0 || n >= sizeof item) {
			rc = rein_err_set(err, REIN_EINVAL, "rollback rule '%s': an empty or overlong item",
					  text);
			goto out;
		}
		memcpy(item, p, n);
		item[n] = '\0';
		p += n + (p[n] == ',');
		char *eq = strchr(item, '=');
		if (eq == NULL) {
			rc = rein_err_set(err, REIN_EINVAL, "rollback rule: '%s' is not key=value", item);
			goto out;
		}
		*eq++ = '\0';
		bool good;
		if (strcmp(item, "success_drop") == 0) {
			good = parse_rate(eq, &r.success_drop);
		} else if (strcmp(item, "escalation_rise") == 0) {
			good = parse_rate(eq, &r.escalation_rise);
		} else if (strcmp(item, "min_runs") == 0) {
			char *end;
			long v = strtol(eq, &end, 10);
			good = *eq != '\0' && *end == '\0' && v >= 1 && v <= 1000000;
			if (good)
				r.min_runs = (int)v;
		} else {
			rc = rein_err_set(err, REIN_EINVAL, "rollback rule: unknown key '%s' (success_drop, "
					  "escalation_rise, min_runs)", item);
			goto out;
		}
		if (!good) {
			rc = rein_err_set(err, REIN_EINVAL, "rollback rule: %s=%s: %s", item, eq,
					  strcmp(item, "min_runs") == 0 ? "a whole number >= 1"
									: "a rate between 0 and 1");
			goto out;
		}
	}
	*out = r;
out:
	return rc;
}

/* The rule as stored in the deployment row. */
static char *rule_text(const rein_rollback_rule *r)
{
	json_t *j = json_pack("{s:f, s:f, s:i}", "success_drop", r->success_drop,
			      "escalation_rise", r->escalation_rise, "min_runs", r->min_runs);
	char *t = j ? rein_json_dump(j) : NULL;
	json_decref(j);
	return t;
}

static rein_rollback_rule rule_of(const char *text)
{
	rein_rollback_rule r = rein_rollback_default;
	json_t *j = text ? rein_json_parse(text, strlen(text), NULL) : NULL;
	json_t *v;
	if ((v = json_object_get(j, "success_drop")) && json_is_number(v))
		r.success_drop = json_number_value(v);
	if ((v = json_object_get(j, "escalation_rise")) && json_is_number(v))
		r.escalation_rise = json_number_value(v);
	if ((v = json_object_get(j, "min_runs")) && json_is_integer(v) && json_integer_value(v) >= 1)
		r.min_runs = (int)json_integer_value(v);
	json_decref(j);
	return r;
}

static bool active(const rein_deploy_row *d, const char *role)
{
	return strcmp(d->state, "active") == 0 && strcmp(d->role, role) == 0;
}

/* The active row of role among rows[0..n), or NULL. */
static const rein_deploy_row *find_active(const rein_deploy_row *rows, size_t n, const char *role)
{
	const rein_deploy_row *got = NULL;
	for (size_t i = 0; i < n; i++)
		if (active(&rows[i], role))
			got = &rows[i]; /* the newest, should a backend hold two */
	return got;
}

int rein_deploy(rein_store *store, const rein_spec *spec, int percent,
		const rein_rollback_rule *rule, const char *by, int64_t now, int64_t *id,
		rein_err *err)
{
	assert(store != NULL && spec != NULL && percent >= 0 && percent <= 99);
	rein_deploy_row *rows = NULL;
	size_t n = 0;
	char *bundle = NULL, *rt = NULL, why[160];
	bool tx = false;
	int64_t got = 0;
	const char *role = percent ? "candidate" : "stable";
	int rc = rein_store_deploy_list(store, spec->name, &rows, &n, err);
	if (rc != REIN_OK)
		goto out;
	const rein_deploy_row *same = find_active(rows, n, role);
	const rein_deploy_row *stable = find_active(rows, n, "stable");
	const rein_deploy_row *cand = find_active(rows, n, "candidate");
	if (same && strcmp(same->version, spec->version) == 0 && same->percent == percent) {
		got = same->id; /* already so: nothing changes */
		goto done;
	}
	if (percent && stable == NULL) {
		rc = rein_err_set(err, REIN_EINVAL, "workflow %s has no stable version: deploy one "
				  "without --canary first", spec->name);
		goto out;
	}
	if (percent && strcmp(stable->version, spec->version) == 0) {
		rc = rein_err_set(err, REIN_EINVAL, "version %.12s is %s's stable version already",
				  spec->version, spec->name);
		goto out;
	}
	if ((bundle = rein_json_dump(spec->bundle)) == NULL ||
	    (percent && (rt = rule_text(rule ? rule : &rein_rollback_default)) == NULL)) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	if ((rc = rein_store_begin(store, err)) != REIN_OK)
		goto out;
	tx = true;
	if ((rc = rein_store_spec_put(store, spec->version, spec->name, bundle, err)) != REIN_OK)
		goto out;
	snprintf(why, sizeof why, "replaced by %.12s", spec->version);
	if (same && (rc = rein_store_deploy_end(store, same->id, "superseded", why, now, err)) !=
			    REIN_OK)
		goto out;
	if (!percent && cand && strcmp(cand->version, spec->version) == 0 &&
	    (rc = rein_store_deploy_end(store, cand->id, "promoted", "deployed as the stable version",
					now, err)) != REIN_OK)
		goto out;
	rein_deploy_row d = {.name = spec->name, .role = (char *)role, .percent = percent,
			     .rule = rt, .by = (char *)by, .at = now};
	snprintf(d.version, sizeof d.version, "%s", spec->version);
	if ((rc = rein_store_deploy_add(store, &d, &got, err)) != REIN_OK ||
	    (rc = rein_store_commit(store, err)) != REIN_OK)
		goto out;
	tx = false;
done:
	if (id)
		*id = got;
out:
	if (tx)
		rein_store_rollback(store);
	rein_deploy_rows_free(rows, n);
	rein_free(bundle);
	rein_free(rt);
	return rc;
}

int rein_deploy_bucket(const char *key)
{
	assert(key != NULL);
	rein_sha256_ctx c;
	uint8_t h[REIN_HASH_LEN];
	rein_sha256_init(&c);
	rein_sha256_update(&c, "rein-canary:", 12);
	rein_sha256_update(&c, key, strlen(key));
	rein_sha256_final(&c, h);
	uint32_t v = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
	return (int)(v % 100);
}

int rein_deploy_route(rein_store *store, const char *name, const char *key, char version[65],
		      bool *candidate, rein_err *err)
{
	assert(store != NULL && name != NULL && key != NULL && version != NULL && candidate != NULL);
	rein_deploy_row *rows = NULL;
	size_t n = 0;
	int rc = rein_store_deploy_list(store, name, &rows, &n, err);
	if (rc != REIN_OK)
		goto out;
	const rein_deploy_row *stable = find_active(rows, n, "stable");
	const rein_deploy_row *cand = find_active(rows, n, "candidate");
	if (stable == NULL) {
		rc = rein_err_set(err, REIN_ENOTFOUND, "workflow %s is not deployed", name);
		goto out;
	}
	bool c = cand != NULL && rein_deploy_bucket(key) < cand->percent;
	snprintf(version, 65, "%s", c ? cand->version : stable->version);
	*candidate = c;
out:
	rein_deploy_rows_free(rows, n);
	return rc;
}

int rein_deploy_stats_get(rein_store *store, const rein_deploy_row *d, rein_deploy_stats *out,
			  rein_err *err)
{
	assert(store != NULL && d != NULL && out != NULL);
	rein_run_counts c = {0};
	int rc = rein_store_run_counts(store, d->name, d->version, d->at, d->ended_at, &c, err);
	if (rc != REIN_OK)
		return rc;
	rein_deploy_stats s = {.succeeded = c.n[REIN_RUN_SUCCEEDED],
			       .escalated = c.n[REIN_RUN_ESCALATED]};
	s.runs = s.succeeded + s.escalated + c.n[REIN_RUN_FAILED] + c.n[REIN_RUN_NEEDS_REVIEW];
	if (s.runs > 0) {
		s.success_rate = (double)s.succeeded / (double)s.runs;
		s.escalation_rate = (double)s.escalated / (double)s.runs;
	}
	*out = s;
	return REIN_OK;
}

int rein_deploy_check(rein_store *store, const char *name, int64_t now, bool *rolled,
		      char **reason, rein_err *err)
{
	assert(store != NULL && name != NULL);
	rein_deploy_row *rows = NULL;
	size_t n = 0;
	char *why = NULL;
	bool done = false;
	int rc = rein_store_deploy_list(store, name, &rows, &n, err);
	if (rc != REIN_OK)
		goto out;
	const rein_deploy_row *stable = find_active(rows, n, "stable");
	const rein_deploy_row *cand = find_active(rows, n, "candidate");
	if (stable == NULL || cand == NULL)
		goto out;
	rein_rollback_rule r = rule_of(cand->rule);
	rein_deploy_stats sc, ss;
	if ((rc = rein_deploy_stats_get(store, cand, &sc, err)) != REIN_OK ||
	    (rc = rein_deploy_stats_get(store, stable, &ss, err)) != REIN_OK)
		goto out;
	if (sc.runs < r.min_runs || ss.runs < 1)
		goto out;
	/* a small epsilon: a drop of exactly the margin is not "more than" it */
	double drop = ss.success_rate - sc.success_rate;
	double rise = sc.escalation_rate - ss.escalation_rate;
	char text[400];
	if (drop > r.success_drop + 1e-9)
		snprintf(text, sizeof text, "success rate %.2f vs stable %.2f: a drop of %.2f > "
			 "success_drop %.2f over %lld candidate runs", sc.success_rate,
			 ss.success_rate, drop, r.success_drop, (long long)sc.runs);
	else if (rise > r.escalation_rise + 1e-9)
		snprintf(text, sizeof text, "escalation rate %.2f vs stable %.2f: a rise of %.2f > "
			 "escalation_rise %.2f over %lld candidate runs", sc.escalation_rate,
			 ss.escalation_rate, rise, r.escalation_rise, (long long)sc.runs);
	else
		goto out;
	if ((why = rein_strdup(text)) == NULL) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	rc = rein_store_deploy_end(store, cand->id, "rolled_back", why, now, err);
	if (rc == REIN_ENOTFOUND) { /* another process rolled it back first */
		rein_err_clear(err);
		rc = REIN_OK;
		goto out;
	}
	done = rc == REIN_OK;
out:
	if (rolled && rc == REIN_OK)
		*rolled = done;
	if (reason && rc == REIN_OK) {
		*reason = done ? why : NULL;
		why = done ? NULL : why;
	}
	rein_free(why);
	rein_deploy_rows_free(rows, n);
	return rc;
}
