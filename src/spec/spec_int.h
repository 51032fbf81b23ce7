/* Internal to spec: the loader state and the helpers spec.c and tools.c share. */
#ifndef REIN_SPEC_INT_H
#define REIN_SPEC_INT_H

#include "spec.h"
#include "yaml_tree.h"

typedef struct loader {
	const char *dir;   /* files are read from here; NULL: bundle only */
	const char *path;  /* for messages */
	json_t *files;     /* bundle "files" object */
	rein_script *sb;
	rein_diags *d;     /* collected here, attached to the caller's error at the end */
	rein_spec *spec;
	char *wf;          /* "PATH/workflow.yaml" */
	const char *cur;   /* the file diagnostics point into (wf or a contract) */
	bool nomem;
} loader;

void spec_diag(loader *L, const char *file, int line, int col, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
#define DIAG(L, n, ...) spec_diag((L), (L)->cur, (n)->line, (n)->col, __VA_ARGS__)

void spec_check_keys(loader *L, const ynode *map, const char *what, const char *const *allowed);
bool spec_want_type(loader *L, const ynode *n, int type, const char *what);
bool spec_want_int(loader *L, const ynode *n, const char *what, int64_t min, int64_t *v);
const char *spec_read_rel(loader *L, const ynode *n, const char *rel);
rein_schema *spec_load_schema(loader *L, const ynode *n, const char *what, json_t **doc);
json_t *spec_to_json(loader *L, const ynode *n);
void spec_check_templates(loader *L, const ynode *n);
int spec_step_ref(loader *L, const ynode *n, const char *what);
void spec_check_expr(loader *L, const ynode *n, const char *what);

/* reads.c: fills each code step's reads_input, reads_all and reads from its
 * text, and the spec's const_label; REIN_ENOMEM. */
int spec_code_reads(rein_spec *s);

/* tools.c: the `tools:` and `mcp_servers:` sections, and `tool` steps. */
void spec_load_servers(loader *L, const ynode *n);
void spec_load_tools(loader *L, const ynode *n);
void spec_load_tool_step(loader *L, rein_step *st, const ynode *kind, const ynode *val);
void spec_tools_free(rein_spec *s);

/* models.c: the `models:` and `trace:` sections, and `llm` steps. */
void spec_load_models(loader *L, const ynode *n);
/* tools.c: a `breaker: {failures, window_s, cooldown_s}` mapping into b (keeps b's
 * defaults for the keys it lacks): tools and model tiers. */
void spec_load_breaker(loader *L, rein_breaker_policy *b, const ynode *n);
void spec_load_trace(loader *L, const ynode *n);
void spec_load_llm_step(loader *L, rein_step *st, const ynode *kind);
void spec_load_agent_step(loader *L, rein_step *st, const ynode *kind);
/* The model check of a verify step (model, prompt, system, max_tokens,
 * temperature, min_confidence in the verify mapping n), if it has one. */
void spec_load_verify_model(loader *L, rein_step *st, const ynode *n);
void spec_models_free(rein_spec *s);

/* `policies:` of the workflow (policies.c), after the tools are loaded. */
void spec_load_policies(loader *L, const ynode *n);

#endif
