/*
 * runner: drives runs, and does only that. It turns the engine's commands
 * into actions (run a code step, sleep until a timer, append an event, send
 * a tool call to the tools layer or a model call to the model layer's
 * router, which owns providers, caching, recording and the provider
 * breaker), holds each run it advances under a lease in the store, and
 * batches what it appends: many runs' events share one transaction (group
 * commit, commit.c), committed only at a durability barrier (a run ends or
 * suspends, a run is started by a caller who will be told its id, effects
 * are about to go out, or the batch grows large). The blocking `rein run` is
 * a loop over this same machinery.
 */
#ifndef REIN_RUNNER_H
#define REIN_RUNNER_H

#include <signal.h>

#include "base.h"
#include "engine.h"
#include "model.h"
#include "script.h"
#include "spec.h"
#include "store.h"

typedef struct rein_runner rein_runner;

typedef struct rein_runner_opts {
	const rein_clock *clock; /* NULL: the system clock */
	/* Runs started by this runner are shadow runs (run.started shadow: true,
	 * kept across resumes): no write call is sent (docs/operations.md). */
	bool shadow;
	int64_t lease_ms;        /* lease length; 0: 60 s */
	int64_t max_wait_ms;     /* timers due within this are slept through; 0: none */
	size_t max_batch;        /* events per transaction before a forced commit;
				    0: 1,024 with commit_thread, else 50,000 */
	/* Sleeps ms milliseconds (NULL: nanosleep). The simulator advances a manual clock. */
	void (*sleep_ms)(void *ud, int64_t ms);
	/* Called for each event appended, before it is applied and before it is
	 * durable (live progress); may be NULL. It may show events that are then
	 * lost: after a store error they are forgotten, and a resume makes them
	 * again, with other times. What must match the log listens to on_commit. */
	void (*on_event)(void *ud, const rein_event_row *ev);
	/* Called after each commit with the events it made durable, n >= 1 at a
	 * time, in commit order (a run's in seq order), also for the commits of
	 * the commit thread: always on the caller's thread, from inside
	 * rein_runner_drive, rein_runner_flush or rein_runner_free, so a listener
	 * needs no locking. Every event
	 * it reports is in the store; an event the store lost is never reported.
	 * The rows (and their strings) are valid during the call only. May be NULL. */
	void (*on_commit)(void *ud, const rein_event_row *rows, size_t n);
	void *ud;
	/* Test hook: called after each event is appended, before it is applied; a
	 * non-zero return makes the runner stop as if the process died. */
	int (*crash_point)(void *ud, const rein_event_row *ev);
	/* Commit the batches forced by max_batch on a second thread while this one
	 * goes on advancing runs (barriers still wait for their commit). The store
	 * is then used from that thread, one call at a time, and only while
	 * rein_runner_drive runs: no batch is out when any call returns, so the
	 * caller may use the store between calls. Fault injection counts per
	 * thread, so tests that sweep faults leave this off. */
	bool commit_thread;
	/* Graceful stop: when *stop (may be NULL) becomes non-zero (a signal
	 * handler may set it), rein_runner_drive takes no further step of any
	 * run and sends nothing new; calls already out get stop_grace_ms (0: none)
	 * to finish, and their outcomes are recorded. Calls still out after that
	 * are cut short without an outcome: their intents stay in the log with
	 * none, which a resume treats as in doubt (sent again with the same key
	 * when the tool honours keys, else needs_review). Then every held run's
	 * row is written with its lease free (status running or waiting) so that
	 * any worker can take it at once, its result is queued, and drive returns
	 * REIN_OK; rein_runner_stopped says so. */
	volatile sig_atomic_t *stop;
	int64_t stop_grace_ms;
	/* who the runs this runner starts are for (docs/policy.md): recorded as
	 * run.started's requester {user, roles, tenant}; borrowed; NULL: none */
	const json_t *requester;
	/* the deployment the runs this runner starts were routed by (rein run
	 * NAME of a deployed workflow, docs/operations.md "Canaries"): recorded
	 * as run.started's deployment {name, role}; borrowed; NULL: none */
	const json_t *deployment;
	/* The tenants' keys for protected payloads (borrowed; see protect.c): a
	 * run whose spec sets trace.redact stores placeholders and seals the real
	 * values under its tenant's key. NULL: such a run cannot start or resume
	 * (REIN_EINVAL). */
	rein_keyring *keys;
} rein_runner_opts;

typedef struct rein_run_result {
	char id[64];
	rein_status status;
	json_t *output; /* owned by the result */
	char *reason;   /* owned, may be NULL */
	int64_t wake_at;
} rein_run_result;

void rein_run_result_clear(rein_run_result *r);

/* Borrows store and sandbox for the runner's life. Caller frees. */
int rein_runner_new(rein_store *store, rein_script *sandbox, const rein_runner_opts *opts,
		    rein_runner **out, rein_err *err);
void rein_runner_free(rein_runner *rn);

/* This process's lease owner name: "HOST/PID/STARTTIME". */
const char *rein_runner_owner(const rein_runner *rn);

/*
 * Starts a run of spec (borrowed: keep it alive while the runner lives) with
 * input (borrowed). The input is checked against the spec's input schema
 * first: REIN_ESCHEMA with the errors in err (listed in err->schema: release with
 * rein_err_clear), and nothing is started. id may
 * be NULL (a new id is made); the run's id is written to id_out[64].
 * The start is durable only after the next rein_runner_flush or barrier.
 */
int rein_runner_start(rein_runner *rn, const rein_spec *spec, const json_t *input, const char *id,
		      char id_out[64], rein_err *err);

/*
 * Idempotent start: a run whose id is key (1 to 63 of A-Z a-z 0-9 . _ : -,
 * starting with a letter or digit; else REIN_EINVAL), a business key such as
 * an order number. The input is checked first, as rein_runner_start does.
 * When no run has that id, starts one and makes the start durable
 * (*existed false). When one exists (also one another process started at
 * the same moment), nothing is started and *existed is true: a run of
 * another workflow (by name) is REIN_EINVAL; otherwise it is taken as
 * rein_runner_resume takes it: one that has ended is reported as a result,
 * one no live worker holds is held (drive advances it), and one a live
 * worker holds is REIN_ECONFLICT. The existing run keeps its own input and
 * version: the input given here is not compared with it.
 */
int rein_runner_start_once(rein_runner *rn, const rein_spec *spec, const json_t *input,
			   const char *key, bool *existed, rein_err *err);

/*
 * Takes over run id from the store: claims its lease (free, expired, or held
 * by a process on this host that has died), rebuilds its state from its events
 * and records run.resumed when it took the run from a dead owner. A run that
 * has already ended is reported as a result straight away. REIN_ECONFLICT
 * when a live worker holds it, REIN_ENOTFOUND when unknown.
 */
int rein_runner_resume(rein_runner *rn, const char *id, rein_err *err);

/*
 * Takes over every run that is due or abandoned: running runs no live worker
 * holds, and waiting runs whose timer comes before horizon (ms since the
 * epoch). A run held by a live worker is left alone. For a run that cannot be
 * taken over (its log does not verify, its spec is gone) on_error (may be
 * NULL) hears why and the others go on. Returns REIN_OK unless listing the
 * store fails; *errors (may be NULL) counts the runs that could not be taken.
 */
int rein_runner_resume_due(rein_runner *rn, int64_t horizon,
			   void (*on_error)(void *ud, const char *run, const char *why), void *ud,
			   int *errors, rein_err *err);

/*
 * Resolves run id, which ended needs_review (rein_run_review_check says what
 * review, a JSON object {action, result | reason}, may hold): checks the
 * review against the run, takes the run's lease, records the review in the
 * run's inbox as type "review" with data {action, result | reason, by} and
 * sender by, and holds the run: the next drive records it, the engine
 * reopens the run (run.reviewed) and it goes on. REIN_EINVAL / REIN_ESCHEMA
 * when the run does not accept the review (nothing recorded), REIN_ECONFLICT
 * when a live worker holds it, REIN_ENOTFOUND when unknown.
 */
int rein_runner_review(rein_runner *rn, const char *id, const json_t *review, const char *by,
		       rein_err *err);

/*
 * Starts a new run that retries run old_id from its step `from`, reusing what
 * the old run recorded before it: the new run's log begins with the old
 * run's events up to (not including) the first event of that step's first
 * visit, copied as events of the new run (new seq, new chain, stamped now,
 * the same payloads; run.resumed left out), its run.started carrying
 * retry_of {run, from}. The engine is then exactly where the old run was on
 * entering the step, and goes on from there: no model or tool call recorded
 * before it is made again. The new run is pinned to the OLD run's workflow
 * version (the workflow as it is now plays no part). REIN_EINVAL (saying why)
 * when the old run has not ended, or has no step `from`, or the step never
 * ran in it; REIN_ENOTFOUND when unknown. The new run's id goes to id_out[64];
 * the start is durable after the next rein_runner_flush, as with
 * rein_runner_start. The store is used here: no batch may be in flight.
 */
int rein_runner_retry(rein_runner *rn, const char *old_id, const char *from, char id_out[64],
		      rein_err *err);

/* Asks for run id to be cancelled: at once if this runner holds it. */
int rein_runner_cancel(rein_runner *rn, const char *id, rein_err *err);

/* Makes every pending event durable now (one transaction). */
int rein_runner_flush(rein_runner *rn, rein_err *err);

/*
 * Advances every run the runner holds until each has ended or is waiting on a
 * timer further away than max_wait_ms; results become available through
 * rein_runner_result. On a store error the runner drops the runs it held (the
 * store still has their last durable state) and returns the error.
 */
int rein_runner_drive(rein_runner *rn, rein_err *err);

/* Pops the next finished or suspended run into *res; false when none. */
bool rein_runner_result(rein_runner *rn, rein_run_result *res);

/* True when a drive returned because opts.stop was set (see there): the runs
 * it held were released, unfinished, for a later resume. */
bool rein_runner_stopped(const rein_runner *rn);

/* Number of runs held. */
size_t rein_runner_active(const rein_runner *rn);

/* True when owner (as written by rein_runner_owner) names a live process on this host. */
bool rein_owner_alive(const char *owner);

/*
 * The cancel protocol (control.c). Cancels run id of store: if no live worker
 * holds it, takes it over with a runner of its own (opts may be NULL), ends
 * it as cancelled and writes its result to *res (caller clears), *requested
 * false; a run that has already ended is left as it is and its result
 * written the same way. If a live worker holds it, records the request in the
 * store for that worker to act on at its next commit: *requested true, *res
 * untouched. REIN_ENOTFOUND when unknown.
 */
int rein_cancel_request(rein_store *store, rein_script *sandbox, const rein_runner_opts *opts,
			const char *id, rein_run_result *res, bool *requested, rein_err *err);


/* ---- approvals (approval.c, docs/approvals.md) ------------------------------ */

/* The signing keys: env REIN_APPROVAL_KEYS ("kid=hex,kid2=hex"), else the file
 * REIN_APPROVAL_KEYS_FILE names; *out NULL (REIN_OK) when neither is set. */
int rein_approval_keys(rein_token_keys **out, rein_err *err);
/* The verdict a worker records on an approval inbox entry's data (borrowed):
 * a copy of it with token_ok, and claims or token_error (signature, key id
 * and expiry checked against now_ms with the configured keys). NULL on OOM. */
json_t *rein_approval_verdict(const json_t *data, int64_t now_ms);
/*
 * The approvals pending in waiting runs (run: only that run; NULL: all), read
 * from their logs: an approval.requested with no denial, no expiry (but one
 * that halts), no tool.intent of its key and no run.ended after it. *out (caller
 * decrefs) an array of {id, run, step, tool, key, args, action_hash,
 * policy_version, risk, rules, need, have, approvers, requester, evidence,
 * provenance?, sla_due_at?, sla_left_s?, tenant, requested_at}. Reads only.
 */
int rein_approvals_pending(rein_store *st, const char *run, int64_t now, json_t **out,
			   rein_err *err);
typedef struct rein_approve_req {
	const char *id;     /* the pending approval */
	const char *by;     /* the approver's user id */
	const json_t *roles; /* the roles they hold (array of strings) or NULL */
	const char *reason; /* or NULL */
	const json_t *args; /* edited arguments (an object) or NULL */
	int64_t ttl_ms;     /* the token's life; 0: one hour */
	bool submit;        /* put it in the run's inbox (else only mint it) */
} rein_approve_req;
/* Mints a token for pending approval q->id (REIN_ENOTFOUND when none is
 * pending; REIN_EINVAL when no key is configured) and, with q->submit, puts
 * {id, token} in its run's inbox as type approval (autocommits; inbox_id[64]
 * its entry id). *token (may be NULL; caller frees) the token. */
int rein_approve(rein_store *st, const rein_approve_req *q, char **token, char inbox_id[64],
		 rein_err *err);
/* Puts a token minted elsewhere in the inbox of the run its claims name (the
 * worker verifies it). REIN_EINVAL when it cannot be read. */
int rein_approve_token(rein_store *st, const char *token, char inbox_id[64], rein_err *err);
/* Puts a denial {id, by, reason} of pending approval id in its run's inbox. */
int rein_deny(rein_store *st, const char *id, const char *by, const char *reason,
	      char inbox_id[64], rein_err *err);

/*
 * Sends the signal name with data (borrowed; NULL: null) to run id of store
 * (control.c): the inbox entry {id: sig_id (NULL: a new random one), type
 * "signal", data {name, data}, sender (may be NULL)}, which the worker holding
 * the run drains into its log (or the next `resume` picks the run up for it).
 * Checked first against the run's own workflow version: some wait step must
 * wait for that signal (else REIN_EINVAL saying so), and data must match the
 * schema of one such step that has one (else REIN_ESCHEMA, the errors
 * attached to err as rein_schema_check does: release with rein_err_clear). A
 * run that has ended takes no signal (REIN_EINVAL); REIN_ENOTFOUND when
 * unknown. The signal id used goes to id_out[64]; *dup (may be NULL) is set
 * when that id had been sent before: nothing changed, the signal counts once.
 */
int rein_signal_send(rein_store *store, rein_script *sandbox, const char *id, const char *name,
		     const json_t *data, const char *sig_id, const char *sender, char id_out[64],
		     bool *dup, rein_err *err);

/*
 * Deployments (deploy.c; docs/operations.md "Canaries"). A workflow name has
 * at most one active stable version and at most one active candidate, which
 * receives percent % of new runs until it is superseded, promoted or rolled
 * back by its rule. Every change is a row of the store's deployments table
 * (rein_deploy_row), never deleted.
 */
typedef struct rein_rollback_rule {
	double success_drop;    /* candidate success rate below stable's by more: roll back */
	double escalation_rise; /* candidate escalation rate above stable's by more: roll back */
	int min_runs;           /* candidate runs ended before the rule is applied, >= 1 */
} rein_rollback_rule;

/* The default rule: success_drop=0.1, escalation_rise=0.1, min_runs=20. */
extern const rein_rollback_rule rein_rollback_default;

/* Parses "key=value,..." (keys success_drop, escalation_rise in [0, 1],
 * min_runs >= 1; an omitted key keeps its default) into *out. REIN_EINVAL
 * with the offending item. */
int rein_rollback_parse(const char *text, rein_rollback_rule *out, rein_err *err);

/*
 * Deploys spec (its bundle is stored under its version) as name's stable
 * version (percent 0; rule ignored) or as its candidate (percent 1..99, rule
 * NULL: the default), in one transaction: the active deployment of the same
 * role is ended ("superseded"), and a stable deploy of the active candidate's
 * version ends the candidate as "promoted". Deploying what is already active
 * with the same role and percent changes nothing. A candidate needs an active
 * stable version of another version (REIN_EINVAL otherwise). *id (may be
 * NULL): the active deployment's id. by may be NULL.
 */
int rein_deploy(rein_store *store, const rein_spec *spec, int percent,
		const rein_rollback_rule *rule, const char *by, int64_t now, int64_t *id,
		rein_err *err);

/* The bucket of a start key, 0..99: the first four bytes of
 * SHA-256("rein-canary:" key), big-endian, modulo 100. A run goes to the
 * candidate when its bucket is below the candidate's percent. */
int rein_deploy_bucket(const char *key);

/*
 * Which version a new run of deployed workflow name with start key key (its
 * run id) takes: the active candidate's when the key's bucket is below its
 * percent, else the active stable's; version[65] and *candidate are written.
 * The same key picks the same while the deployments do not change.
 * REIN_ENOTFOUND when name has no active stable version.
 */
int rein_deploy_route(rein_store *store, const char *name, const char *key, char version[65],
		      bool *candidate, rein_err *err);

/* The spec of a stored version, rebuilt from its bundle (sandbox borrowed;
 * caller frees with rein_spec_free). REIN_ENOTFOUND when not stored. */
int rein_spec_of_version(rein_store *store, rein_script *sandbox, const char *version,
			 rein_spec **out, rein_err *err);

/* The outcomes of the runs one deployment started: runs of its version
 * created while it was in force (from d->at to d->ended_at, or now). A run
 * counts once it has ended succeeded, failed, escalated or needs_review
 * (cancelled runs say nothing about the version and are left out), so a
 * version deployed again starts from no runs. */
typedef struct rein_deploy_stats {
	int64_t runs, succeeded, escalated; /* runs: ended runs counted */
	double success_rate, escalation_rate; /* 0 when runs == 0 */
} rein_deploy_stats;

int rein_deploy_stats_get(rein_store *store, const rein_deploy_row *d, rein_deploy_stats *out,
			  rein_err *err);

/*
 * Applies the rule of name's active candidate: when it has at least min_runs
 * counted runs, the stable version at least one, and the candidate's success
 * rate is below stable's by more than success_drop or its escalation rate
 * above stable's by more than escalation_rise, the candidate is ended as
 * "rolled_back" with the reason (the rates compared) in its row, so no new
 * run goes to it. *rolled (may be NULL) says whether this call rolled it
 * back; *reason (may be NULL; caller frees with rein_free) is then the
 * reason, else NULL. No candidate: REIN_OK, nothing done.
 */
int rein_deploy_check(rein_store *store, const char *name, int64_t now, bool *rolled,
		      char **reason, rein_err *err);

/*
 * Replay (replay.c): feeds run_id's recorded events, rows[0..n) in seq order
 * (strings borrowed), back through a fresh run of spec (the run's pinned
 * version; borrowed, as is sandbox) and checks that every decision the
 * engine makes is the recorded one: each event the engine decides must be
 * what rein_run_poll emits at the event's timestamp (type, step, canonical
 * payload), each code step re-executed (rein_run_exec) must give its
 * recorded result; model, tool, inbox and breaker events are applied as
 * recorded. Nothing is sent anywhere and the chain is not verified (that is
 * `rein audit verify`). REIN_OK when the walk could be made, with *res
 * saying whether it stopped at a divergence (caller clears with
 * rein_replay_result_clear); an error (a purged payload, an event type the
 * spec cannot hold, out of memory) otherwise, *res then cleared.
 */
typedef struct rein_replay_result {
	int64_t events;       /* events replayed (before the divergence, if any) */
	int64_t decisions;    /* of them, engine decisions checked and reproduced */
	int64_t recoveries;   /* resumes recognised without a run.resumed event */
	int64_t diverged_seq; /* 0: every decision reproduced; else the first that was not */
	char *type;           /* owned: the diverging event's type */
	char *expected;       /* owned: the recorded event, "type [step] payload" */
	char *got;            /* owned: what the engine decided instead */
} rein_replay_result;

void rein_replay_result_clear(rein_replay_result *r);

int rein_replay_events(const rein_spec *spec, rein_script *sandbox, const char *run_id,
		       const rein_event_row *rows, size_t n, rein_replay_result *res, rein_err *err);

/*
 * The same for run id of store: its version's spec from the store's bundle,
 * its events from the log. REIN_ENOTFOUND when unknown.
 */
int rein_replay_run(rein_store *store, rein_script *sandbox, const char *id,
		    rein_replay_result *res, rein_err *err);

/*
 * What-if (whatif.c; docs/observability.md): runs the recorded input,
 * requester and pinned organisation policies of run_id (rows[0..n), its
 * events in seq order, strings borrowed; recorded: its pinned spec) again
 * through a fresh engine against spec (the changed workflow), with no store:
 * nothing is written anywhere. A model call whose request_hash the recording
 * answered gets the recorded answers of that request; a changed one goes to
 * spec's provider for the tier (opts->model when set, else the model router:
 * real HTTP), and when that tier has no provider that can answer (a
 * configuration it refuses, a replay tier without the answer) the what-if
 * stops: REIN_EINVAL, "model request changed at step S and no provider is
 * configured: ...". A tool call of the same tool and canonical arguments
 * gets the recorded outcomes of that call (the idempotency key alone is no
 * match: it names a position in the run, not a call); one the
 * recording lacks is never sent, is listed in what_if.not_recorded, and its
 * step fails with "not in the recording: tool T args {...}". Timers and
 * backoffs pass on a virtual clock.
 *
 * *report (caller decrefs): {run, recorded_version, what_if_version, same,
 * differences: [{kind, step?, recorded, what_if}], recorded: SUMMARY,
 * what_if: SUMMARY + {not_recorded, model_requests: {from_recording, sent}}}
 * where SUMMARY is {status, reason, output, path, steps, tool_calls, policy,
 * tiers, routing, model_calls, tokens: {input, output}, cost_usd}; kinds: status,
 * reason, output, path, step_output, tool_call_removed, tool_call_added,
 * tool_call_changed, policy, routing, model_calls, tokens, cost.
 */
typedef struct rein_whatif_opts {
	/* Answers a changed model request instead of the router (tests): the
	 * events to record, as rein_model_router_call gives them. NULL: the router. */
	int (*model)(void *ud, const rein_spec *spec, int tier, const json_t *request, int attempt,
		     rein_model_routed *out, rein_err *err);
	void *ud;
} rein_whatif_opts;

int rein_whatif_events(const rein_spec *recorded, const rein_spec *spec, rein_script *sandbox,
		       const char *run_id, const rein_event_row *rows, size_t n,
		       const rein_whatif_opts *opts, json_t **report, rein_err *err);

/* The same for run id of store (REIN_ENOTFOUND when unknown); opts may be NULL. */
int rein_whatif_run(rein_store *store, rein_script *sandbox, const char *id, const rein_spec *spec,
		    const rein_whatif_opts *opts, json_t **report, rein_err *err);

#endif
