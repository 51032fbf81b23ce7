/*
 * schema internals shared by the files of the layer: the compiled node, the
 * schema resources ($id scopes) that references resolve against, URI helpers,
 * the ECMA-262 → POSIX regex bridge and the built-in meta-schemas.
 */
#ifndef REIN_SCHEMA_INT_H
#define REIN_SCHEMA_INT_H

#include "schema.h"

#include <regex.h>

/* Vocabularies that change validation; core is always on. */
enum {
	SC_VOC_APPLICATOR = 1,
	SC_VOC_UNEVALUATED = 2,
	SC_VOC_VALIDATION = 4,
	SC_VOC_ALL = 7,
};

/* Type bits for the "type" keyword. */
enum {
	SC_T_NULL = 1,
	SC_T_BOOLEAN = 2,
	SC_T_OBJECT = 4,
	SC_T_ARRAY = 8,
	SC_T_NUMBER = 16,
	SC_T_STRING = 32,
	SC_T_INTEGER = 64,
};

typedef struct sc_node sc_node;
typedef struct sc_resource sc_resource;

typedef struct sc_anchor {
	char *name;
	const json_t *at;
	bool dynamic;
	sc_node *node; /* compiled at the end of compilation for dynamic anchors */
} sc_anchor;

/* A schema resource: the subtree an absolute URI ($id or retrieval URI) names. */
struct sc_resource {
	char *uri;          /* absolute, no fragment */
	const json_t *root; /* borrowed from a document the schema owns */
	int draft;
	unsigned vocab;
	sc_anchor *anchors;
	size_t nanchors, canchors;
	sc_resource *target; /* an alias (retrieval URI of a document with another $id) */
	sc_resource *next;
};

typedef struct sc_regex {
	regex_t re;
	char *src; /* the original ECMA-262 pattern, for messages */
} sc_regex;

typedef struct sc_prop {
	const char *key;
	size_t klen;
	sc_node *node;
} sc_prop;

typedef struct sc_patprop {
	sc_regex re;
	sc_node *node;
} sc_patprop;

/* dependentRequired / dependentSchemas / draft-07 dependencies. */
typedef struct sc_dep {
	const char *key;
	size_t klen;
	sc_node *node;        /* schema form, or NULL */
	const json_t *names;  /* array-of-names form, or NULL */
} sc_dep;

struct sc_node {
	const json_t *src;
	const sc_resource *res;
	int boolean; /* -1: object schema; 0 false; 1 true */
	unsigned types; /* 0: no "type" */
	const json_t *konst;
	const json_t *enm;
	const json_t *minimum, *maximum, *exmin, *exmax, *multiple;
	long long min_len, max_len, min_items, max_items, min_props, max_props;
	long long min_contains, max_contains;
	bool unique;
	sc_regex *pattern;
	const json_t *required;
	sc_node *ref;
	sc_node *dynref;
	const char *dyn_name; /* $dynamicRef resolves dynamically by this anchor */
	sc_node **allof, **anyof, **oneof;
	size_t nallof, nanyof, noneof;
	sc_node *not_, *if_, *then_, *else_;
	sc_prop *props; /* sorted by key */
	size_t nprops;
	sc_patprop *patprops;
	size_t npatprops;
	sc_node *addprops, *propnames, *uneval_props;
	sc_dep *deps;
	size_t ndeps;
	sc_node **prefix; /* prefixItems, or draft-07 array-form items */
	size_t nprefix;
	sc_node *items;   /* items after the prefix */
	const char *items_kw;
	sc_node *contains;
	sc_node *uneval_items;
	sc_node *next_alloc;
};

/* One entry of the json_t* → (resource, node) map. */
typedef struct sc_slot {
	const void *key;
	sc_resource *res;
	sc_node *node;
} sc_slot;

struct rein_schema {
	json_t **docs; /* documents we hold a reference on; docs[0] is the root */
	size_t ndocs, cdocs;
	sc_resource *resources;
	sc_node *nodes;
	sc_node *root;
	sc_node true_node, false_node;
	sc_slot *slots;
	size_t nslots, cslots;
	int draft;
	char *base_dir;
	rein_schema_map *maps;
	size_t nmaps;
	char *name;
};

/* A segment of an instance or schema location, linked towards the root. */
typedef struct sc_path {
	const struct sc_path *up;
	const char *key; /* NULL: an array index */
	size_t klen;
	size_t idx;
} sc_path;

/* Renders the location as a JSON Pointer; caller frees. NULL on OOM. */
char *schema_path_render(const sc_path *p);

/* ---- URIs (uri.c) ---------------------------------------------------- */

/* RFC 3986 reference resolution; caller frees. NULL on OOM. */
char *schema_uri_resolve(const char *base, const char *ref);
/* Splits off the fragment: returns a copy without it, *frag points into ref. */
char *schema_uri_split(const char *uri, const char **frag);
/* Percent-decodes s (n bytes) into a new string; NULL on OOM. */
char *schema_pct_decode(const char *s, size_t n, size_t *outlen);
/* Follows a JSON Pointer (already percent-decoded) from root; NULL if absent. */
const json_t *schema_pointer_get(const json_t *root, const char *ptr, size_t n);

/* ---- regex (regex.c) ------------------------------------------------- */

int schema_regex_compile(sc_regex *r, const char *pattern, rein_err *err);
bool schema_regex_match(const sc_regex *r, const char *s, size_t len);
void schema_regex_free(sc_regex *r);
/* Number of code points in UTF-8 text. */
size_t schema_utf8_len(const char *s, size_t n);

/* ---- built-in meta-schemas (meta.c) ---------------------------------- */

/* The text of a built-in meta-schema for an absolute URI without fragment, or NULL. */
const char *schema_builtin(const char *uri);

/* ---- JSON equality with numeric value semantics (validate.c) --------- */
bool schema_json_equal(const json_t *a, const json_t *b);

#endif
