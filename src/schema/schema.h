/*
 * schema: JSON Schema (2020-12 and draft-07). Compile once, validate many.
 * Every error names the instance location as a JSON Pointer, the schema
 * keyword that failed, and a readable message. $ref never reaches the network:
 * references resolve inside the schema, against the built-in meta-schemas, in
 * the base directory, and through explicit URI-prefix → directory mappings.
 */
#ifndef REIN_SCHEMA_H
#define REIN_SCHEMA_H

#include "base.h"

typedef struct rein_schema rein_schema;

enum { REIN_DRAFT_AUTO = 0, REIN_DRAFT_7 = 7, REIN_DRAFT_2020_12 = 2020 };

typedef struct rein_schema_map {
	const char *prefix; /* e.g. "http://localhost:1234/" */
	const char *dir;    /* e.g. "tests/conformance/JSON-Schema-Test-Suite/remotes" */
} rein_schema_map;

typedef struct rein_schema_opts {
	int draft;            /* REIN_DRAFT_AUTO: from "$schema", else 2020-12 */
	const char *base_dir; /* relative file $refs resolve here; NULL: none allowed */
	const rein_schema_map *maps;
	size_t nmaps;
	const char *name;     /* used in messages, e.g. "wf/workflow.yaml#/input" */
} rein_schema_opts;

/*
 * Compiles schema (borrowed; the compiled schema keeps its own reference).
 * opts may be NULL. On failure returns REIN_ESCHEMA (bad schema, unresolved
 * $ref) or REIN_ENOMEM, with detail in err. Caller frees with rein_schema_free.
 */
int rein_schema_compile(const json_t *schema, const rein_schema_opts *opts, rein_schema **out,
			rein_err *err);
void rein_schema_free(rein_schema *s);

/* rein_schema_error(s) and rein_schema_errors_free live in base.h: they are an
 * attachment of rein_err. */

/*
 * Validates instance against s. Returns true when valid. When errs is not NULL
 * it receives the errors (appended; caller frees with rein_schema_errors_free).
 * Thread-compatible: a compiled schema may be used by many validations.
 */
bool rein_schema_validate(const rein_schema *s, const json_t *instance, rein_schema_errors *errs);
void rein_schema_errors_free(rein_schema_errors *errs);

/* Formats errors one per line as "POINTER: message (keyword)" into a new string. */
char *rein_schema_errors_format(const rein_schema_errors *errs);

/*
 * The one schema check every layer uses. Validates instance against s (NULL:
 * anything matches). On a match returns REIN_OK and leaves err alone. On a
 * mismatch returns REIN_ESCHEMA and sets err (first error wins): err->msg reads
 * "<what>: POINTER: message (keyword)", one error per line, no trailing
 * newline (cut to fit msg), and err->schema holds every error (the caller
 * calls rein_err_clear). what is a printf format (e.g. "arguments do not match
 * the input schema of '%s'"). REIN_ENOMEM (set in err) when out of memory.
 * err may be NULL: then only the code is returned.
 */
int rein_schema_check(const rein_schema *s, const json_t *instance, rein_err *err,
		      const char *what, ...) __attribute__((format(printf, 4, 5)));

#endif
