/*
 * spec: a workflow directory (workflow.yaml and the files it names) compiled
 * into an immutable, validated spec. Problems are reported as diagnostics
 * "FILE:LINE:COL: message", all of them, not just the first, attached to the
 * rein_err (base.h). After loading, a
 * spec does no I/O: the files it read are kept as a bundle (path → content)
 * whose hash is the workflow version a run is pinned to, and a spec can be
 * rebuilt from that bundle alone (that is how `rein resume` gets it back).
 */
#ifndef REIN_SPEC_H
#define REIN_SPEC_H

#include "base.h"
#include "policy.h"
#include "schema.h"
#include "script.h"

typedef enum rein_step_kind {
	REIN_STEP_CODE = 1,
	REIN_STEP_WAIT,
	REIN_STEP_PARALLEL,
	REIN_STEP_END,
	REIN_STEP_TOOL,
	REIN_STEP_LLM,
	REIN_STEP_AGENT,
	REIN_STEP_VERIFY,
} rein_step_kind;

/* ---- tool contracts (docs/tools.md) ---- */

typedef enum rein_tool_kind { REIN_TOOL_HTTP = 1, REIN_TOOL_MCP } rein_tool_kind;
typedef enum rein_risk { REIN_RISK_LOW = 0, REIN_RISK_MEDIUM, REIN_RISK_HIGH } rein_risk;
typedef enum rein_idem { REIN_IDEM_NONE = 0, REIN_IDEM_HEADER, REIN_IDEM_ARG } rein_idem;
typedef enum rein_tool_fallback {
	REIN_FALLBACK_NONE = 0,
	REIN_FALLBACK_UNAVAILABLE,
	REIN_FALLBACK_TOOL,
	REIN_FALLBACK_CACHED
} rein_tool_fallback;

typedef struct rein_retry_policy {
	int max_attempts;     /* including the first; default 3 */
	int64_t base_ms;      /* first backoff ceiling; default 200 */
	int64_t max_delay_ms; /* ceiling of any one backoff; default 10,000 */
	int64_t max_total_ms; /* from the intent to the last attempt's start; default 60,000 */
} rein_retry_policy;

typedef struct rein_breaker_policy {
	int failures;        /* transient failures within window that open it; default 5 */
	int64_t window_ms;   /* default 60,000 (model tiers: 0, no window) */
	int64_t cooldown_ms; /* open → half-open after; default 30,000 */
} rein_breaker_policy;

typedef struct rein_kv {
	char *key;
	char *value;
} rein_kv;

/* Where one secret's value is read from: an environment variable or a file. */
typedef struct rein_secret_src {
	char *tenant; /* under `tenants:`: the tenant it is for; else NULL */
	char *env;    /* read from this environment variable, or */
	char *file;   /* from this file (trailing newline removed) */
} rein_secret_src;

typedef struct rein_secret_ref {
	char *name; /* referenced as ${secret.NAME} */
	char *env;  /* read from this environment variable, or */
	char *file; /* from this file (trailing newline removed); for a scoped
		       secret these two are its `default:` (both NULL: none) */
	bool scoped;             /* declared with `tenants:` (docs/tools.md) */
	rein_secret_src *tenants; /* scoped: one entry per tenant */
	size_t ntenants;
} rein_secret_ref;

typedef struct rein_tool {
	char *name;
	char *description;
	char *origin; /* the file that defines it, for messages */
	rein_tool_kind kind;
	bool write;   /* effect: write (else read) */
	rein_risk risk;
	rein_idem idem;  /* how the idempotency key travels */
	char *idem_name; /* the header or argument name */
	int64_t timeout_ms;
	size_t max_response_bytes;
	rein_retry_policy retry;
	rein_breaker_policy breaker;
	rein_tool_fallback fallback;
	int fallback_tool; /* tool index for REIN_FALLBACK_TOOL */
	rein_schema *input, *output; /* NULL: none declared */
	json_t *input_doc, *output_doc;
	bool input_locked; /* mcp: input is the one tools.lock recorded (no contract input) */
	json_t *shadow;    /* `shadow:` what a write call answers in shadow mode (it
			      matches output), or NULL: {"shadow": true} */
	/* provenance (docs/policy.md): `trust: trusted` (default untrusted),
	   `readers: [public | tenant:T | role:R, ...]` (NULL: the run's tenant),
	   `provenance: retrieval` (its output is retrieved documents) */
	bool trusted;
	json_t *readers;
	bool retrieval;
	json_t *approval;  /* `approval:` normalized (rein_policy_approval_norm), or NULL */
	/* http */
	char *method, *url; /* url may hold ${env.X} ${secret.X} ${args.X} */
	rein_kv *headers;
	size_t nheaders;
	rein_secret_ref *secrets;
	size_t nsecrets;
	/* mcp */
	int server;     /* index into spec->servers */
	char *mcp_tool; /* the server's name for it */
} rein_tool;

/*
 * The source secret s is read from for a run of tenant (NULL: the run names
 * no tenant): an unscoped secret's one source; a scoped secret's entry for
 * tenant, else its default. Returns false when there is none (a scoped
 * secret with no entry for tenant and no default); *src is then untouched.
 */
bool rein_secret_pick(const rein_secret_ref *s, const char *tenant, rein_secret_src *src);

/*
 * The names of the credentials a call of t by a run of tenant uses, never
 * their values, e.g. "api_key (tenant acme, env ACME_KEY)"; several are
 * joined by "; ". A new string the caller frees, or NULL when t declares no
 * secrets or memory ran out (*oom tells which).
 */
char *rein_tool_credential(const rein_tool *t, const char *tenant, bool *oom);

/* A model tier (`models:` in the spec; docs/models.md). */
typedef struct rein_model_tier {
	char *name;
	json_t *config;   /* provider configuration; strings may hold ${env.X:-default} */
	rein_retry_policy retry;
	int fallback;     /* tier index, -1: none */
	double price_in, price_out, price_cached; /* USD per million tokens */
	int64_t max_tokens; /* default for calls (1024) */
	bool cache;       /* serve repeated identical requests from a cache */
	rein_breaker_policy breaker; /* the provider's; default 5 in a row (window_ms 0:
					no window), cooldown 30,000 */
} rein_model_tier;

typedef struct rein_mcp_server_spec {
	char *name;
	char **argv; /* stdio: command and arguments (may hold ${env.X}); NULL-terminated */
	char **env;  /* "K=V" entries, NULL-terminated */
	char *url;   /* streamable HTTP */
	char *cwd;   /* stdio: the child's working directory (may hold ${env.X}) */
	int64_t timeout_ms;
} rein_mcp_server_spec;

typedef struct rein_next {
	char *when; /* Lua expression, NULL: always */
	int target; /* step index */
} rein_next;

/*
 * A step is its common fields and one member per kind in the union u, which
 * kind selects; the members of the other kinds are not there. Each member owns
 * what it points to (rein_spec_free frees it).
 */

/* code: a Lua chunk */
typedef struct rein_step_code {
	char *src;            /* the Lua chunk (inline or the file's content) */
	char *origin;         /* the file it came from, inside the workflow (the same however the
			       * spec was loaded): "workflow.yaml" or "scripts/x.lua" */
	int line_offset;      /* added to Lua's line numbers in messages */
	rein_script_limits limits;
	rein_schema *out_schema; /* the schema the step's output must match, NULL: none */
	/* what the chunk's text can read (spec_code_reads; the engine's provenance
	 * label of the step, docs/policy.md "Provenance"): `input` as a whole name;
	 * `steps` other than steps.NAME or steps["NAME"] (every step); the steps
	 * named so (indices, each once, in text order) */
	bool reads_input, reads_all;
	int *reads;
	size_t nreads;
} rein_step_code;

/* wait: a number of seconds or a template giving one, or (signal set) until
 * a signal of that name arrives (`rein signal`), within timeout_ms */
typedef struct rein_step_wait {
	json_t *seconds;      /* NULL for a signal wait */
	char *signal;         /* the signal's name, NULL for a timer wait */
	int64_t timeout_ms;   /* signal: 0 waits without a limit */
	rein_schema *schema;  /* signal: the data must match it, NULL: any data */
} rein_step_wait;

/* parallel: branch start steps */
typedef struct rein_step_parallel {
	int *branches;
	size_t nbranches;
} rein_step_parallel;

/* end */
typedef struct rein_step_end {
	rein_status status;
	json_t *reason; /* template or NULL */
	json_t *output; /* template or NULL: the previous step's output */
} rein_step_end;

/* tool */
typedef struct rein_step_tool {
	int tool;      /* index into spec->tools */
	json_t *args;  /* template for the arguments object */
	rein_schema *out_schema; /* the schema the step's output must match, NULL: none */
} rein_step_tool;

/* llm, and the model part of agent */
typedef struct rein_step_model {
	int tier;
	json_t *system, *prompt; /* template strings */
	json_t *schema_doc;      /* the output schema asked from the model, or NULL */
	rein_schema *schema;
	int64_t max_tokens;
	double temperature;      /* < 0: not sent */
	/* the step's own budget (0: none) and what running out does */
	int64_t b_tokens, b_model_calls, b_tool_calls, b_timeout_ms;
	double b_cost_usd;
	bool optional;           /* out of budget: skip the step (output null) */
} rein_step_model;

/* agent: a model in a loop with tools */
typedef struct rein_step_agent {
	rein_step_model model;   /* first: an agent is a model step and more */
	int *allow;              /* the tools the model may call (indices) */
	size_t nallow;
	int max_turns;           /* model turns (default 8) */
	json_t *tool_defs;       /* the tool definitions shown to the model */
} rein_step_agent;

/* verify: named deterministic rules over the previous step's output */
typedef struct rein_verify_rule {
	char *id;      /* the rule's name; NULL: it is named by its place ("rule 2") */
	char *check;   /* a Lua expression over out, input, steps, run, requester */
	char *message; /* said when the check is not true; NULL: the expression */
} rein_verify_rule;

/* verify: the rules, then (has_model) a model asked for {confidence, rationale}
 * (model.schema_doc); a confidence under min_confidence fails the step */
typedef struct rein_step_verify {
	rein_verify_rule *rules;
	size_t nrules;
	bool has_model;
	rein_step_model model;   /* has_model: the llm part (model, prompt, system...) */
	double min_confidence;   /* 0..1, default 0.5 */
} rein_step_verify;

typedef struct rein_step {
	char *name;
	rein_step_kind kind;  /* 0 only in a spec that failed to load */
	int line, col; /* where the step is defined */
	rein_next *next; /* tried in order; none: the end of a parallel branch */
	size_t nnext;
	int on_fail;    /* step index, -1: the run fails */
	int max_visits; /* 0: no bound of its own */
	union {
		rein_step_code code;         /* REIN_STEP_CODE */
		rein_step_wait wait;         /* REIN_STEP_WAIT */
		rein_step_parallel parallel; /* REIN_STEP_PARALLEL */
		rein_step_end end;           /* REIN_STEP_END */
		rein_step_tool tool;         /* REIN_STEP_TOOL */
		rein_step_model llm;         /* REIN_STEP_LLM */
		rein_step_agent agent;       /* REIN_STEP_AGENT */
		rein_step_verify verify;     /* REIN_STEP_VERIFY */
	} u;
} rein_step;

/* The model part of an llm or agent step (&u.llm or &u.agent.model), or of a
 * verify step with a model check (&u.verify.model), NULL for the other kinds. */
const rein_step_model *rein_step_model_of(const rein_step *st);

typedef struct rein_spec {
	char *name;
	char *description;
	char *path;          /* the directory given, for messages */
	char version[65];    /* hex SHA-256 of the bundle */
	json_t *bundle;      /* {"files": {relpath: content}} */
	rein_schema *input_schema;  /* NULL: any input */
	rein_schema *output_schema; /* NULL: any output */
	int64_t max_steps;   /* 0: default 1000 */
	int64_t timeout_ms;  /* 0: none */
	rein_script_limits limits;
	rein_step *steps;
	size_t nsteps;
	int start;
	rein_tool *tools;
	size_t ntools;
	rein_mcp_server_spec *servers;
	size_t nservers;
	rein_model_tier *tiers;
	size_t ntiers;
	/* run budgets beyond max_steps / timeout (0: none) */
	int64_t max_tokens, max_model_calls, max_tool_calls;
	double max_cost_usd;
	bool store_prompts; /* trace.store_prompts: keep rendered prompts in events */
	bool shadow;        /* `shadow: true`: every run is in shadow mode (no write
			       call is sent; docs/operations.md) */
	char *alert_webhook; /* `alerts: {webhook: URL}` (docs/approvals.md), or NULL */
	/* `policies:` (docs/policy.md): compiled rules, NULL when none; has_policies
	   when the key is there (even empty): writes are then denied by default */
	rein_policy *policies;
	bool has_policies;
	/* the label of a value computed from nothing the run was given (no source,
	 * read by everyone, trusted): shared by the runs of the spec, never changed */
	json_t *const_label;
	/* the requester of a run that names none, {user: null, roles: [], tenant:
	 * null}: shared by the runs of the spec, never changed */
	json_t *no_requester;
	unsigned redact;    /* trace.redact: REIN_REDACT_* classes stored as placeholders */
} rein_spec;

/* Index of the tool called name, or -1. */
int rein_spec_tool(const rein_spec *s, const char *name);

/*
 * Loads DIR/workflow.yaml and every file it references. sandbox is borrowed to
 * check Lua compiles. Returns REIN_OK and *out, or REIN_ESPEC with every
 * problem attached to err as diagnostics (err->diags, in the order found; msg
 * is the first of them, "FILE:LINE:COL: what (and N more problems)"), or another code with detail in
 * err (out of memory; no diagnostics then). The caller calls rein_err_clear on
 * err afterwards; rein_err_print shows the diagnostics. Caller frees *out with
 * rein_spec_free.
 */
int rein_spec_load_dir(const char *dir, rein_script *sandbox, rein_spec **out, rein_err *err);

/* The same from a bundle recorded earlier; path is used in messages only. */
int rein_spec_load_bundle(const json_t *bundle, const char *path, rein_script *sandbox,
			  rein_spec **out, rein_err *err);

void rein_spec_free(rein_spec *s);

/* Reads a YAML file into JSON (*out, caller decrefs); REIN_ESPEC
 * "PATH:LINE:COL: message" when it does not parse. */
int rein_spec_yaml_file(const char *path, json_t **out, rein_err *err);

/*
 * Parses YAML text (len bytes; path names it in messages) into JSON (*out,
 * caller decrefs; an empty document is null), with the core-schema typing of
 * rein_spec_yaml_file. When locs is not NULL, *locs (caller decrefs) maps the
 * JSON Pointer of every node ("" the root, "/cases/0/name") to [line, col],
 * 1-based, so a reader above spec can say FILE:LINE:COL of a value it
 * refuses. REIN_ESPEC "PATH:LINE:COL: message" when it does not parse,
 * REIN_ENOMEM; nothing is written then.
 */
int rein_spec_yaml_text(const char *text, size_t len, const char *path, json_t **out,
			json_t **locs, rein_err *err);

/*
 * Reads an organisation policy file (docs/policy.md): a list of rules, or a
 * mapping {policies: [rules]}. Every rule is compiled (sb borrowed to check
 * the conditions); *rules (caller decrefs) is the list as JSON. REIN_ESPEC
 * "PATH: rule N: what" for a bad rule.
 */
int rein_spec_policy_file(const char *path, rein_script *sb, json_t **rules, rein_err *err);

/* Index of the step called name, or -1. */
int rein_spec_step(const rein_spec *s, const char *name);

#endif
