/*
 * Per-tenant limits (docs/policy.md, limit.per: tenant): the counts come from
 * outside the engine (the runner counts the tenant's recorded calls in the
 * store; replay takes the ones recorded with each decision) and are used and
 * recorded by the policy gate (engine_propose.c).
 */
#include "engine_int.h"

void rein_run_policies(const rein_run *r, const rein_policy *sets[2])
{
	assert(r != NULL && sets != NULL);
	sets[0] = r->org_pol;
	sets[1] = r->spec->policies;
}

void rein_run_set_tenant_counts(rein_run *r, json_t *counts)
{
	assert(r != NULL);
	json_t *old = r->tenant_counts;
	r->tenant_counts = counts ? json_incref(counts) : NULL;
	json_decref(old);
}
