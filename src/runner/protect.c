/*
 * Protected payloads: what a run stores when its spec sets trace.redact.
 *
 * The engine always sees the real values; what goes to the store is the
 * payload with every detected value replaced by its placeholder, plus, when
 * any was replaced, the real values of those placeholders sealed under the
 * tenant's key (AES-256-GCM, the run id as associated data):
 *
 *   {..., "~sealed": {"tenant": T, "kid": KEY_ID, "box": HEX}}
 *
 * That member is part of the stored payload, so the hash chain covers the
 * redacted text and the ciphertext together: shredding the key changes no
 * stored byte and every chain still verifies, while the placeholders can no
 * longer be opened. On resume the runner opens each box and puts the values
 * back before the engine applies the event; a box whose key was shredded makes
 * the resume fail with a clear error (the run can still be shown).
 *
 * The run row's output and reason are written redacted (no box: the real
 * output lives sealed in run.ended), so `rein show` and `rein runs` print
 * placeholders. The tenant is requester.tenant of run.started when present,
 * else "default".
 */
#include "runner_int.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* Adds the exact values of the spec's declared tool secrets (environment or
 * file) that a run of tenant (NULL: not known yet) reads to the redactor; a
 * secret that is not set is skipped (the call that needs it fails on its own).
 * Other tenants' entries are never read. */
static int add_secrets(rein_redactor *r, const rein_spec *spec, const char *tenant)
{
	int rc = REIN_OK;
	for (size_t t = 0; t < spec->ntools && rc == REIN_OK; t++)
		for (size_t i = 0; i < spec->tools[t].nsecrets && rc == REIN_OK; i++) {
			rein_secret_src s = {0};
			if (!rein_secret_pick(&spec->tools[t].secrets[i], tenant, &s))
				continue;
			if (s.env) {
				const char *v = getenv(s.env);
				if (v)
					rc = rein_redactor_secret(r, v);
			} else if (s.file) {
				char *text = NULL;
				size_t len = 0;
				if (rein_file_read(s.file, &text, &len, NULL) == REIN_OK) {
					while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
						text[--len] = '\0';
					rc = rein_redactor_secret(r, text);
					memset(text, 0, len);
				}
				rein_free(text);
			}
		}
	return rc;
}

int runner_protect_init(rein_runner *rn, active *a, rein_err *err)
{
	if (a->spec->redact == 0)
		return REIN_OK;
	if (rn->o.keys == NULL)
		return rein_err_set(err, REIN_EINVAL, "workflow %s redacts what it stores "
				    "(trace.redact) but no keyring was given for its protected values",
				    a->spec->name ? a->spec->name : "?");
	snprintf(a->tenant, sizeof a->tenant, "default");
	if (rein_redactor_new(a->spec->redact, &a->red) != REIN_OK ||
	    ((a->spec->redact & REIN_REDACT_SECRET) && add_secrets(a->red, a->spec, NULL) != REIN_OK))
		return rein_err_set(err, REIN_ENOMEM, "out of memory");
	return REIN_OK;
}

/* requester.tenant of a run.started payload, when it names one; the secrets
 * scoped to that tenant join the redactor. */
static int take_tenant(active *a, const char *type, const json_t *data)
{
	if (strcmp(type, rein_event_name(REIN_EV_RUN_STARTED)) != 0)
		return REIN_OK;
	const char *t = json_string_value(json_object_get(json_object_get(data, "requester"),
							  "tenant"));
	if (t && rein_tenant_valid(t))
		snprintf(a->tenant, sizeof a->tenant, "%s", t);
	if (t && a->red && (a->spec->redact & REIN_REDACT_SECRET))
		return add_secrets(a->red, a->spec, t);
	return REIN_OK;
}

int runner_protect_store(rein_runner *rn, active *a, const char *type, const json_t *data,
			 char **payload, rein_err *err)
{
	int rc = REIN_OK;
	json_t *red = NULL, *found = NULL, *sealed = NULL;
	char *plain = NULL, *hex = NULL;
	uint8_t *box = NULL, key[REIN_KEY_LEN];
	size_t nbox = 0;
	if (a->red == NULL) {
		if ((*payload = rein_json_dump(data)) == NULL)
			rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		return rc;
	}
	assert(json_is_object(data));
	if (take_tenant(a, type, data) != REIN_OK || (found = json_object()) == NULL ||
	    rein_redact_json(a->red, (json_t *)data, &red, found) != REIN_OK) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	if (json_object_size(found) > 0) {
		char kid[REIN_KID_LEN + 1];
		if ((rc = rein_keyring_current(rn->o.keys, a->tenant, true, kid, key, err)) != REIN_OK)
			goto out;
		json_t *copy = json_copy(red); /* red may be data itself: never write into it */
		json_decref(red);
		red = copy;
		if (red == NULL || (plain = rein_json_dump(found)) == NULL) {
			rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
			goto out;
		}
		if ((rc = rein_seal(key, plain, strlen(plain), a->id, &box, &nbox)) != REIN_OK) {
			rc = rein_err_set(err, rc, "cannot seal the protected values of run %s", a->id);
			goto out;
		}
		if ((hex = rein_malloc(2 * nbox + 1)) == NULL) {
			rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
			goto out;
		}
		rein_hex(box, nbox, hex);
		if ((sealed = json_pack("{s:s, s:s, s:s}", "tenant", a->tenant, "kid", kid, "box",
					hex)) == NULL ||
		    json_object_set_new(red, "~sealed", sealed) != 0) {
			sealed = NULL;
			rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
			goto out;
		}
	}
	if ((*payload = rein_json_dump(red)) == NULL)
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
out:
	memset(key, 0, sizeof key);
	if (plain) {
		memset(plain, 0, strlen(plain));
		rein_free(plain);
	}
	rein_free(box);
	rein_free(hex);
	json_decref(red);
	json_decref(found);
	return rc;
}

int runner_protect_load(rein_runner *rn, active *a, const rein_event_row *ev, json_t **out,
			rein_err *err)
{
	int rc = REIN_OK;
	json_t *data = rein_json_parse(ev->payload, strlen(ev->payload), err), *map = NULL;
	uint8_t *box = NULL, key[REIN_KEY_LEN];
	char *plain = NULL;
	size_t nplain = 0;
	if (data == NULL)
		return REIN_ECORRUPT;
	json_t *s = a->red ? json_object_get(data, "~sealed") : NULL;
	if (s == NULL) {
		if (a->red && take_tenant(a, ev->type, data) != REIN_OK) {
			rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
			goto out;
		}
		goto done;
	}
	const char *tenant = json_string_value(json_object_get(s, "tenant"));
	const char *kid = json_string_value(json_object_get(s, "kid"));
	const char *hex = json_string_value(json_object_get(s, "box"));
	size_t nhex = hex ? strlen(hex) : 0;
	if (tenant == NULL || kid == NULL || hex == NULL || nhex % 2 != 0) {
		rc = rein_err_set(err, REIN_ECORRUPT, "run %s: seq %lld has a malformed sealed box",
				  a->id, (long long)ev->seq);
		goto out;
	}
	rein_err ke = {0};
	if ((rc = rein_keyring_get(rn->o.keys, tenant, kid, key, &ke)) != REIN_OK) {
		/* EINVAL, not ENOTFOUND: the run exists, it can no longer be resumed */
		rc = rein_err_set(err, rc == REIN_ENOTFOUND ? REIN_EINVAL : rc,
				  "run %s cannot be resumed: the protected values of its "
				  "events were shredded (%s); it can still be shown", a->id, ke.msg);
		goto out;
	}
	if ((box = rein_malloc(nhex / 2 + 1)) == NULL) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	/* rein_unhex wants the NUL right after: decode in place of a copy */
	{
		char *h = rein_strdup(hex);
		rc = h ? rein_unhex(h, box, nhex / 2) : REIN_ENOMEM;
		rein_free(h);
	}
	if (rc == REIN_OK)
		rc = rein_unseal(key, box, nhex / 2, a->id, &plain, &nplain);
	if (rc == REIN_OK && (map = rein_json_parse(plain, nplain, NULL)) == NULL)
		rc = REIN_ECORRUPT;
	if (rc != REIN_OK) {
		rc = rein_err_set(err, rc == REIN_ENOMEM ? rc : REIN_ECORRUPT,
				  "run %s: the sealed box of seq %lld does not open", a->id,
				  (long long)ev->seq);
		goto out;
	}
	snprintf(a->tenant, sizeof a->tenant, "%s", tenant);
	const char *ph;
	json_t *v;
	json_object_foreach(map, ph, v) {
		if (json_is_string(v) && rein_redactor_learn(a->red, ph, json_string_value(v)) ==
						 REIN_ENOMEM) {
			rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
			goto out;
		}
	}
	json_object_del(data, "~sealed");
	json_t *real = rein_unredact_json(data, map);
	if (real == NULL) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	json_decref(data);
	data = real;
	if (take_tenant(a, ev->type, data) != REIN_OK) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
done:
	*out = data;
	data = NULL;
out:
	memset(key, 0, sizeof key);
	if (plain) {
		memset(plain, 0, nplain);
		rein_free(plain);
	}
	rein_free(box);
	json_decref(map);
	json_decref(data);
	return rc;
}

char *runner_protect_dump(active *a, const json_t *v)
{
	if (a->red == NULL)
		return rein_json_dump(v);
	json_t *red = NULL;
	if (rein_redact_json(a->red, (json_t *)v, &red, NULL) != REIN_OK)
		return NULL;
	char *s = rein_json_dump(red);
	json_decref(red);
	return s;
}

int runner_protect_reason(active *a, char **reason)
{
	char *s = NULL;
	if (a->red == NULL || *reason == NULL)
		return REIN_OK;
	if (rein_redact_text(a->red, *reason, strlen(*reason), &s, NULL) != REIN_OK)
		return REIN_ENOMEM;
	if (s) {
		rein_free(*reason);
		*reason = s;
	}
	return REIN_OK;
}
