/*
 * policy: pure rule evaluation (docs/policy.md). A proposed tool call and its
 * context (arguments, requester, input, steps, the run's recorded clock and
 * the calls it made so far) go in; a decision comes out: allow, deny or
 * approve, with the ids of the rules that decided it and their reasons.
 * No I/O, no clock, no model: `when` conditions run in the script sandbox,
 * which is deterministic, so the same call and context always give the same
 * decision. Rules arrive as JSON (the spec layer parses `policies:` from YAML,
 * the store keeps organisation policies as JSON); a rule set is compiled once.
 *
 * Precedence: any matching deny wins, then any approve, then any allow. With
 * no matching rule a read tool is allowed and a write tool is denied when
 * `enforce` is set (a workflow that declares policies, or organisation
 * policies loaded), allowed otherwise (the compatibility rule).
 */
#ifndef REIN_POLICY_H
#define REIN_POLICY_H

#include "base.h"
#include "script.h"

typedef struct rein_policy rein_policy;

enum { REIN_POLICY_ALLOW = 1, REIN_POLICY_DENY, REIN_POLICY_APPROVE };

/* The text of a decision: "allow", "deny", "approve". */
const char *rein_policy_decision_name(int d);

/*
 * Compiles rules (a JSON array of rule objects, borrowed; docs/policy.md lists
 * the fields) into *out (caller frees with rein_policy_free). origin names
 * them in messages ("workflow", "org"). Every `when` is compiled in sb
 * (borrowed for the call only). REIN_EINVAL with err "rule 'ID': what" and
 * *bad the index of the first bad rule (-1: the list itself); REIN_ENOMEM.
 * Rule ids must be unique within the list.
 */
int rein_policy_compile(const json_t *rules, const char *origin, rein_script *sb,
			rein_policy **out, int *bad, rein_err *err);
void rein_policy_free(rein_policy *p);
/* Number of rules. */
size_t rein_policy_count(const rein_policy *p);

/* A tool as the policy sees it (all borrowed). risk: 0 low, 1 medium, 2 high. */
typedef struct rein_policy_tool {
	const char *name;
	bool write;
	int risk;
	const json_t *input_doc; /* the input schema document, NULL: none */
} rein_policy_tool;

/*
 * Checks every rule against the tools it targets: a `when` that names
 * args.FIELD where a targeted tool's input schema lists properties and FIELD
 * is not one of them cannot be evaluated. REIN_EINVAL with err "rule 'ID':
 * args.FIELD is not a field of tool 'T'" and *bad the rule's index.
 */
int rein_policy_check_tools(const rein_policy *p, const rein_policy_tool *tools, size_t ntools,
			    int *bad, rein_err *err);

/* One proposed call and its context (all borrowed for the call). */
typedef struct rein_policy_call {
	rein_policy_tool tool;
	const json_t *args;      /* the validated arguments (an object) */
	const json_t *requester; /* {user, roles, tenant} */
	const json_t *input;     /* the run's input */
	const json_t *run;       /* {id, workflow, version}; now, hour, ... are added */
	const json_t *(*step_out)(void *ud, const char *name); /* steps.<name>.out */
	void *ud;
	int64_t now_ms;          /* the run's recorded clock (the last event's time) */
	const json_t *history;   /* the calls recorded so far: [{tool, write, at}] */
	const json_t *tenant_counts; /* per-tenant limits (limit.per: tenant): {rule id: the
					calls of every run of the tenant that rule counts, within
					its window}, counted outside (the runner, from the store)
					and recorded with the decision; a rule with no count here
					denies the call (fails closed). NULL: none known */
	bool enforce;            /* default-deny writes no rule allows */
	/* the labels of the call (NULL: none known): {agent: bool, context:
	   label|null (an agent's context without the model's own text), args:
	   {NAME: label}}; `provenance` in conditions, what trusted(), sources(),
	   readers() and readable_by() read, and the rule rein.untrusted_write */
	const json_t *provenance;
	rein_script_limits limits;
} rein_policy_call;

/*
 * Decides the call against sets[0..nsets) (NULL entries skipped), in order.
 * *out (caller decrefs): {decision: "allow"|"deny"|"approve", rules: [ids],
 * reasons: [texts]}. A rule whose condition cannot be evaluated (a Lua error,
 * a non-boolean result, a field the tool's schema does not have) denies the
 * call ("fails closed") with its reason. Only fails (REIN_ENOMEM) when memory
 * runs out.
 */
int rein_policy_eval(rein_script *sb, const rein_policy *const *sets, size_t nsets,
		     const rein_policy_call *call, json_t **out, rein_err *err);

/* A per-tenant limit of a rule set (limit: {max, window_s, per: tenant}),
 * borrowed from the set. */
typedef struct rein_policy_rate {
	const char *id;
	int64_t max, window_ms;
	const void *rule; /* the rule, for rein_policy_rate_counts */
} rein_policy_rate;

/* The per-tenant limits of p (NULL: none) into out[0..cap); returns how
 * many there are (which may be more than cap). */
size_t rein_policy_rates(const rein_policy *p, rein_policy_rate *out, size_t cap);

/* Whether a call of tool (write or read) counts toward the limit: the rule
 * targets the tool (its globs) and its access. */
bool rein_policy_rate_counts(const rein_policy_rate *rt, const char *tool, bool write);

/* ---- provenance labels (docs/policy.md, "Provenance") ------------------
 * A label is {sources: [...], readers: [...], trusted: bool}: where a value
 * came from ("requester", "tool:NAME", "retrieval", "model", "signal"; none:
 * a constant of the spec), who may read it ("public", "tenant:T", "role:R";
 * "public" is everyone) and whether every source is trusted. Arrays are
 * sorted and unique, so equal labels are equal JSON. */

/* A new label of one source (NULL: none) read by readers (borrowed; NULL:
 * public). NULL when out of memory. */
json_t *rein_label_new(const char *source, const json_t *readers, bool trusted);
/* Joins l (borrowed; NULL: nothing) into *acc (a reference the caller owns;
 * NULL: becomes a reference to l): the union of sources, the intersection of
 * readers, trusted if both are. Labels are immutable: *acc is replaced by a
 * new label, never changed in place. REIN_ENOMEM (*acc unchanged). */
int rein_label_join(json_t **acc, const json_t *l);
/* Whether every source of l is trusted (NULL: false). */
bool rein_label_trusted(const json_t *l);
/* Whether reader (or everyone) may read a value labelled l. */
bool rein_label_readable(const json_t *l, const char *reader);

/*
 * Approval settings (a rule with effect approve, a tool's `approval:`):
 * {approvers: N (1..10, default 1), roles: [..] (each approver must hold one;
 * default none), sla_s: S (default 86400), on_timeout: escalate|deny|halt
 * (default escalate)}. *out (caller decrefs) has every field filled in;
 * REIN_EINVAL with the reason ("approval: ..."); REIN_ENOMEM.
 */
int rein_policy_approval_norm(const json_t *in, json_t **out, rein_err *err);
/* The approval settings of rule id in p (normalized, borrowed), or NULL. */
const json_t *rein_policy_rule_approval(const rein_policy *p, const char *id);
/* The version of a rule list: hex SHA-256 of its canonical JSON. */
void rein_policy_version(const json_t *rules, char out[65]);

#endif
