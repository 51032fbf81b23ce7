/*
 * Compiling a schema: load documents, scan them for resources ($id) and
 * anchors, then turn every reachable schema object into an sc_node with its
 * keywords decoded and its references ($ref, $dynamicRef) resolved to nodes.
 * Validation (validate.c) then never parses, allocates for, or looks up
 * anything in the schema JSON.
 *
 * Reference resolution never reaches the network: a URI is looked up among the
 * resources already scanned, then the built-in meta-schemas, then the
 * caller's prefix → directory maps, then (for the synthetic base URI of a root
 * schema without $id) the base directory.
 */
#include "schema_int.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The base URI of a root schema without "$id"; relative refs map to base_dir. */
#define ROOT_BASE "rein:/root/schema.json"
#define ROOT_PREFIX "rein:/root/"
#define MAX_COMPILE_DEPTH 3000
#define MAX_DIALECT_DEPTH 8

typedef struct cctx {
	rein_schema *s;
	rein_err *err;
	int rc;
	int depth;
	int dialect_depth;
} cctx;

static int fail(cctx *cc, int code, const sc_path *sp, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail(cctx *cc, int code, const sc_path *sp, const char *fmt, ...)
{
	char msg[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (cc->rc == REIN_OK) {
		char *where = code == REIN_ENOMEM ? NULL : schema_path_render(sp);
		rein_err_set(cc->err, code, "%s: at \"%s\": %s",
			     cc->s->name ? cc->s->name : "schema", where ? where : "", msg);
		rein_free(where);
		cc->rc = code;
	}
	return code;
}

static int oom(cctx *cc) { return fail(cc, REIN_ENOMEM, NULL, "out of memory"); }

/* ---- json_t* → (resource, node) map --------------------------------- */

static size_t ptr_hash(const void *p)
{
	uintptr_t x = (uintptr_t)p;
	x ^= x >> 17;
	x *= (uintptr_t)0xed5ad4bbU;
	x ^= x >> 11;
	return (size_t)x;
}

static sc_slot *slot_find(const rein_schema *s, const void *key)
{
	if (s->cslots == 0)
		return NULL;
	size_t i = ptr_hash(key) & (s->cslots - 1);
	while (s->slots[i].key) {
		if (s->slots[i].key == key)
			return &s->slots[i];
		i = (i + 1) & (s->cslots - 1);
	}
	return NULL;
}

static sc_slot *slot_get(cctx *cc, const void *key)
{
	rein_schema *s = cc->s;
	sc_slot *e = slot_find(s, key);
	if (e)
		return e;
	if ((s->nslots + 1) * 2 > s->cslots) {
		size_t nc = s->cslots ? s->cslots * 2 : 64;
		sc_slot *ns = rein_calloc(nc, sizeof *ns);
		if (ns == NULL) {
			oom(cc);
			return NULL;
		}
		for (size_t i = 0; i < s->cslots; i++) {
			if (!s->slots[i].key)
				continue;
			size_t j = ptr_hash(s->slots[i].key) & (nc - 1);
			while (ns[j].key)
				j = (j + 1) & (nc - 1);
			ns[j] = s->slots[i];
		}
		rein_free(s->slots);
		s->slots = ns;
		s->cslots = nc;
	}
	size_t i = ptr_hash(key) & (s->cslots - 1);
	while (s->slots[i].key)
		i = (i + 1) & (s->cslots - 1);
	s->slots[i].key = key;
	s->nslots++;
	return &s->slots[i];
}

/* ---- resources ------------------------------------------------------- */

static sc_resource *res_find(const rein_schema *s, const char *uri)
{
	for (sc_resource *r = s->resources; r; r = r->next)
		if (strcmp(r->uri, uri) == 0)
			return r->target ? r->target : r;
	return NULL;
}

static sc_resource *res_new(cctx *cc, const char *uri, const json_t *root, int draft,
			    unsigned vocab)
{
	sc_resource *r = rein_calloc(1, sizeof *r);
	if (r == NULL || (r->uri = rein_strdup(uri)) == NULL) {
		rein_free(r);
		oom(cc);
		return NULL;
	}
	r->root = root;
	r->draft = draft;
	r->vocab = vocab;
	r->next = cc->s->resources;
	cc->s->resources = r;
	return r;
}

static int anchor_add(cctx *cc, sc_resource *r, const char *name, const json_t *at, bool dynamic)
{
	for (size_t i = 0; i < r->nanchors; i++) {
		if (strcmp(r->anchors[i].name, name) == 0) {
			if (dynamic)
				r->anchors[i].dynamic = true;
			return REIN_OK;
		}
	}
	if (r->nanchors == r->canchors) {
		size_t nc = r->canchors ? r->canchors * 2 : 4;
		sc_anchor *na = rein_realloc(r->anchors, nc * sizeof *na);
		if (na == NULL)
			return oom(cc);
		r->anchors = na;
		r->canchors = nc;
	}
	sc_anchor *a = &r->anchors[r->nanchors];
	memset(a, 0, sizeof *a);
	if ((a->name = rein_strdup(name)) == NULL)
		return oom(cc);
	a->at = at;
	a->dynamic = dynamic;
	r->nanchors++;
	return REIN_OK;
}

static sc_anchor *anchor_find(const sc_resource *r, const char *name)
{
	for (size_t i = 0; i < r->nanchors; i++)
		if (strcmp(r->anchors[i].name, name) == 0)
			return &r->anchors[i];
	return NULL;
}

/* ---- dialects -------------------------------------------------------- */

static sc_resource *res_load(cctx *cc, const char *uri, int draft, unsigned vocab);

static const struct {
	const char *uri;
	unsigned bits;
} vocabs[] = {
	{"https://json-schema.org/draft/2020-12/vocab/core", 0},
	{"https://json-schema.org/draft/2020-12/vocab/applicator", SC_VOC_APPLICATOR},
	{"https://json-schema.org/draft/2020-12/vocab/unevaluated", SC_VOC_UNEVALUATED},
	{"https://json-schema.org/draft/2020-12/vocab/validation", SC_VOC_VALIDATION},
	{"https://json-schema.org/draft/2020-12/vocab/meta-data", 0},
	{"https://json-schema.org/draft/2020-12/vocab/format-annotation", 0},
	{"https://json-schema.org/draft/2020-12/vocab/format-assertion", 0},
	{"https://json-schema.org/draft/2020-12/vocab/content", 0},
};

/*
 * Works out the draft and vocabularies a "$schema" value selects. Known
 * dialects are recognised by URI; any other meta-schema is loaded (maps,
 * base_dir) and its "$vocabulary" read. An unknown, unloadable meta-schema
 * leaves the inherited dialect in place.
 */
static int dialect_of(cctx *cc, const char *ms, int *draft, unsigned *vocab, const sc_path *sp)
{
	int rc = REIN_OK;
	const char *frag;
	char *u = schema_uri_split(ms, &frag);
	if (u == NULL)
		return oom(cc);
	if (strcmp(u, "http://json-schema.org/draft-07/schema") == 0 ||
	    strcmp(u, "http://json-schema.org/draft-06/schema") == 0 ||
	    strcmp(u, "http://json-schema.org/draft-04/schema") == 0) {
		*draft = REIN_DRAFT_7;
		*vocab = SC_VOC_ALL;
		goto out;
	}
	if (strcmp(u, "https://json-schema.org/draft/2020-12/schema") == 0 ||
	    strcmp(u, "https://json-schema.org/draft/2019-09/schema") == 0) {
		*draft = REIN_DRAFT_2020_12;
		*vocab = SC_VOC_ALL;
		goto out;
	}
	if (cc->dialect_depth >= MAX_DIALECT_DEPTH)
		goto out;
	cc->dialect_depth++;
	sc_resource *m = res_load(cc, u, *draft, *vocab);
	cc->dialect_depth--;
	if (m == NULL || cc->rc)
		goto out;
	*draft = m->draft;
	const json_t *voc = json_is_object(m->root) ? json_object_get(m->root, "$vocabulary") : NULL;
	if (!json_is_object(voc)) {
		*vocab = SC_VOC_ALL;
		goto out;
	}
	unsigned bits = 0;
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)voc, k, v) {
		bool known = false;
		for (size_t i = 0; i < sizeof vocabs / sizeof vocabs[0]; i++) {
			if (strcmp(vocabs[i].uri, k) == 0) {
				known = true;
				bits |= vocabs[i].bits;
			}
		}
		if (!known && json_is_true(v)) {
			rc = fail(cc, REIN_ESCHEMA, sp, "meta-schema \"%s\" requires unknown vocabulary \"%s\"",
				  u, k);
			goto out;
		}
	}
	*vocab = bits;
out:
	rein_free(u);
	return rc;
}

/* ---- scanning: resources and anchors --------------------------------- */

static void scan(cctx *cc, const json_t *j, sc_resource *res, const char *base, int depth);

static void scan_map(cctx *cc, const json_t *o, sc_resource *res, int depth)
{
	const char *k;
	json_t *v;
	if (!json_is_object(o))
		return;
	json_object_foreach((json_t *)o, k, v) scan(cc, v, res, NULL, depth + 1);
}

static void scan_arr(cctx *cc, const json_t *a, sc_resource *res, int depth)
{
	size_t i;
	json_t *v;
	if (!json_is_array(a))
		return;
	json_array_foreach(a, i, v) scan(cc, v, res, NULL, depth + 1);
}

static const char *const sub_2020[] = {"additionalProperties", "propertyNames", "items",
	"contains", "if", "then", "else", "not", "unevaluatedItems", "unevaluatedProperties",
	"contentSchema", NULL};
static const char *const map_2020[] = {"$defs", "properties", "patternProperties",
	"dependentSchemas", NULL};
static const char *const arr_2020[] = {"allOf", "anyOf", "oneOf", "prefixItems", NULL};
static const char *const sub_7[] = {"additionalProperties", "propertyNames", "items",
	"additionalItems", "contains", "if", "then", "else", "not", NULL};
static const char *const map_7[] = {"definitions", "properties", "patternProperties",
	"dependencies", NULL};
static const char *const arr_7[] = {"allOf", "anyOf", "oneOf", "items", NULL};

/*
 * Registers the resource and anchors of schema j and of its subschemas.
 * res is the enclosing resource, or NULL at a document root whose retrieval
 * URI is base.
 */
static void scan(cctx *cc, const json_t *j, sc_resource *res, const char *base, int depth)
{
	char *idu = NULL, *full = NULL;
	if (cc->rc || !json_is_object(j))
		return;
	if (depth > MAX_COMPILE_DEPTH) {
		fail(cc, REIN_ESCHEMA, NULL, "schema nesting too deep");
		return;
	}
	sc_slot *slot = slot_find(cc->s, j);
	if (slot && slot->res)
		return; /* already scanned (a document shared twice) */
	int draft = res ? res->draft : cc->s->draft;
	unsigned vocab = res ? res->vocab : SC_VOC_ALL;
	const json_t *id = json_object_get(j, "$id");
	const json_t *ms = json_object_get(j, "$schema");
	bool has_ref = json_object_get(j, "$ref") != NULL;
	if (json_is_string(ms) && (res == NULL || json_is_string(id)) &&
	    !(res == NULL && depth == 0 && cc->s->draft != REIN_DRAFT_AUTO && cc->s->ndocs == 1)) {
		if (dialect_of(cc, json_string_value(ms), &draft, &vocab, NULL) != REIN_OK)
			return;
	}
	if (draft == REIN_DRAFT_AUTO)
		draft = REIN_DRAFT_2020_12;
	const char *cur = res ? res->uri : base;
	const char *frag = "";
	if (json_is_string(id) && !(draft == REIN_DRAFT_7 && has_ref)) {
		full = schema_uri_resolve(cur, json_string_value(id));
		if (full == NULL || (idu = schema_uri_split(full, &frag)) == NULL) {
			oom(cc);
			goto out;
		}
		if (strcmp(idu, cur) != 0 || res == NULL) {
			sc_resource *nr = res_new(cc, idu, j, draft, vocab);
			if (nr == NULL)
				goto out;
			if (res == NULL && strcmp(idu, base) != 0) {
				sc_resource *alias = res_new(cc, base, j, draft, vocab);
				if (alias == NULL)
					goto out;
				alias->target = nr;
			}
			res = nr;
		}
	} else if (res == NULL) {
		if ((res = res_new(cc, base, j, draft, vocab)) == NULL)
			goto out;
	}
	if (*frag && draft == REIN_DRAFT_7 && anchor_add(cc, res, frag, j, false) != REIN_OK)
		goto out;
	if ((slot = slot_get(cc, j)) == NULL)
		goto out;
	slot->res = res;
	if (draft == REIN_DRAFT_7) {
		if (has_ref)
			goto out; /* draft-07: siblings of $ref are ignored */
		for (int i = 0; sub_7[i]; i++)
			scan(cc, json_object_get(j, sub_7[i]), res, NULL, depth + 1);
		for (int i = 0; map_7[i]; i++)
			scan_map(cc, json_object_get(j, map_7[i]), res, depth);
		for (int i = 0; arr_7[i]; i++)
			scan_arr(cc, json_object_get(j, arr_7[i]), res, depth);
		goto out;
	}
	const json_t *a = json_object_get(j, "$anchor");
	if (json_is_string(a) && anchor_add(cc, res, json_string_value(a), j, false) != REIN_OK)
		goto out;
	a = json_object_get(j, "$dynamicAnchor");
	if (json_is_string(a) && anchor_add(cc, res, json_string_value(a), j, true) != REIN_OK)
		goto out;
	for (int i = 0; sub_2020[i]; i++)
		scan(cc, json_object_get(j, sub_2020[i]), res, NULL, depth + 1);
	for (int i = 0; map_2020[i]; i++)
		scan_map(cc, json_object_get(j, map_2020[i]), res, depth);
	for (int i = 0; arr_2020[i]; i++)
		scan_arr(cc, json_object_get(j, arr_2020[i]), res, depth);
out:
	rein_free(full);
	rein_free(idu);
}

static int doc_add(cctx *cc, json_t *doc)
{
	rein_schema *s = cc->s;
	if (s->ndocs == s->cdocs) {
		size_t nc = s->cdocs ? s->cdocs * 2 : 4;
		json_t **nd = rein_realloc(s->docs, nc * sizeof *nd);
		if (nd == NULL) {
			json_decref(doc);
			return oom(cc);
		}
		s->docs = nd;
		s->cdocs = nc;
	}
	s->docs[s->ndocs++] = doc;
	return REIN_OK;
}

/* A path under dir for the URI tail rel, refusing ".." and absolute tails. */
static bool rel_ok(const char *rel)
{
	return !(rel[0] == '/' || strstr(rel, "..") || strchr(rel, '?') || rel[0] == '\0');
}

/* Finds the resource for an absolute URI (no fragment), loading its document. */
static sc_resource *res_load(cctx *cc, const char *uri, int draft, unsigned vocab)
{
	rein_schema *s = cc->s;
	sc_resource *r = res_find(s, uri);
	char *path = NULL, *text = NULL;
	json_t *doc = NULL;
	if (r || cc->rc)
		return r;
	const char *builtin = schema_builtin(uri);
	if (builtin) {
		rein_err perr = {0};
		doc = rein_json_parse(builtin, strlen(builtin), &perr);
		rein_err_clear(&perr);
		if (doc == NULL) {
			oom(cc);
			goto out;
		}
	} else {
		const char *dir = NULL, *rel = NULL;
		for (size_t i = 0; i < s->nmaps && dir == NULL; i++) {
			size_t pl = strlen(s->maps[i].prefix);
			if (strncmp(uri, s->maps[i].prefix, pl) == 0 && rel_ok(uri + pl))
				dir = s->maps[i].dir, rel = uri + pl;
		}
		if (dir == NULL && s->base_dir && strncmp(uri, ROOT_PREFIX, strlen(ROOT_PREFIX)) == 0 &&
		    rel_ok(uri + strlen(ROOT_PREFIX)))
			dir = s->base_dir, rel = uri + strlen(ROOT_PREFIX);
		if (dir == NULL)
			goto out;
		if ((path = rein_sprintf("%s/%s", dir, rel)) == NULL) {
			oom(cc);
			goto out;
		}
		rein_err ferr = {0};
		size_t len;
		/* on the real path: a symlink must not lead out of the mapped directory */
		int frc = rein_file_read_within(dir, rel, &text, &len, &ferr);
		if (frc == REIN_ENOMEM)
			oom(cc);
		else if (frc == REIN_EINVAL)
			fail(cc, REIN_ESCHEMA, NULL, "%s %s", path, ferr.msg);
		rein_err_clear(&ferr);
		if (frc != REIN_OK)
			goto out;
		rein_err perr = {0};
		doc = rein_json_parse(text, len, &perr);
		if (doc == NULL) {
			fail(cc, REIN_ESCHEMA, NULL, "%s: %s", path, perr.msg);
			rein_err_clear(&perr);
			goto out;
		}
	}
	if (doc_add(cc, doc) != REIN_OK)
		goto out;
	if (json_is_object(doc)) {
		int saved = s->draft;
		s->draft = draft;
		scan(cc, doc, NULL, uri, 0);
		s->draft = saved;
	} else {
		res_new(cc, uri, doc, draft, vocab);
	}
	r = cc->rc ? NULL : res_find(s, uri);
out:
	rein_free(path);
	rein_free(text);
	return r;
}

/* ---- compiling nodes -------------------------------------------------- */

static sc_node *compile(cctx *cc, const json_t *j, const sc_resource *res, const sc_path *sp);

static bool as_count(const json_t *v, long long *out)
{
	if (json_is_integer(v) && json_integer_value(v) >= 0) {
		*out = json_integer_value(v);
		return true;
	}
	if (json_is_real(v)) {
		double d = json_real_value(v);
		if (d >= 0 && d < 9e18 && d == (double)(long long)d) {
			*out = (long long)d;
			return true;
		}
	}
	return false;
}

static void kw_count(cctx *cc, const json_t *j, const char *kw, long long *out, const sc_path *sp)
{
	const json_t *v = json_object_get(j, kw);
	if (v == NULL)
		return;
	if (!as_count(v, out)) {
		sc_path p = {sp, kw, strlen(kw), 0};
		fail(cc, REIN_ESCHEMA, &p, "\"%s\" must be a non-negative integer", kw);
	}
}

static const json_t *kw_number(cctx *cc, const json_t *j, const char *kw, const sc_path *sp)
{
	const json_t *v = json_object_get(j, kw);
	if (v && !json_is_number(v)) {
		sc_path p = {sp, kw, strlen(kw), 0};
		fail(cc, REIN_ESCHEMA, &p, "\"%s\" must be a number", kw);
		return NULL;
	}
	return v;
}

static sc_node *kw_schema(cctx *cc, const json_t *j, const char *kw, const sc_resource *res,
			  const sc_path *sp)
{
	const json_t *v = json_object_get(j, kw);
	if (v == NULL)
		return NULL;
	sc_path p = {sp, kw, strlen(kw), 0};
	return compile(cc, v, res, &p);
}

static sc_node **kw_schema_array(cctx *cc, const json_t *v, const char *kw, size_t *n,
				 const sc_resource *res, const sc_path *sp)
{
	sc_path p = {sp, kw, strlen(kw), 0};
	if (!json_is_array(v) || json_array_size(v) == 0) {
		fail(cc, REIN_ESCHEMA, &p, "\"%s\" must be a non-empty array of schemas", kw);
		return NULL;
	}
	size_t m = json_array_size(v);
	sc_node **a = rein_calloc(m, sizeof *a);
	if (a == NULL) {
		oom(cc);
		return NULL;
	}
	for (size_t i = 0; i < m && !cc->rc; i++) {
		sc_path q = {&p, NULL, 0, i};
		a[i] = compile(cc, json_array_get(v, i), res, &q);
	}
	*n = m;
	return a;
}

static int prop_cmp(const void *a, const void *b)
{
	const sc_prop *x = a, *y = b;
	size_t n = x->klen < y->klen ? x->klen : y->klen;
	int c = memcmp(x->key, y->key, n);
	if (c)
		return c;
	return x->klen < y->klen ? -1 : x->klen > y->klen;
}

static unsigned type_bit(const char *t)
{
	static const struct {
		const char *name;
		unsigned bit;
	} names[] = {
		{"null", SC_T_NULL}, {"boolean", SC_T_BOOLEAN}, {"object", SC_T_OBJECT},
		{"array", SC_T_ARRAY}, {"number", SC_T_NUMBER}, {"string", SC_T_STRING},
		{"integer", SC_T_INTEGER},
	};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (strcmp(names[i].name, t) == 0)
			return names[i].bit;
	return 0;
}

/* Resolves a $ref / $dynamicRef value against res into a compiled node. */
static sc_node *ref_resolve(cctx *cc, const sc_resource *res, const json_t *v, const char *kw,
			    const char **dyn_name, const sc_path *sp)
{
	sc_path p = {sp, kw, strlen(kw), 0};
	char *full = NULL, *u = NULL, *frag = NULL;
	sc_node *n = NULL;
	if (!json_is_string(v)) {
		fail(cc, REIN_ESCHEMA, &p, "\"%s\" must be a string", kw);
		return NULL;
	}
	const char *ref = json_string_value(v);
	const char *rawfrag;
	full = schema_uri_resolve(res->uri, ref);
	if (full == NULL || (u = schema_uri_split(full, &rawfrag)) == NULL) {
		oom(cc);
		goto out;
	}
	sc_resource *r = res_load(cc, u, res->draft, res->vocab);
	if (cc->rc)
		goto out;
	if (r == NULL) {
		fail(cc, REIN_ESCHEMA, &p, "cannot resolve \"%s\": no schema is known for \"%s\"", ref, u);
		goto out;
	}
	size_t flen;
	if ((frag = schema_pct_decode(rawfrag, strlen(rawfrag), &flen)) == NULL) {
		oom(cc);
		goto out;
	}
	const json_t *target = NULL;
	if (flen == 0) {
		target = r->root;
	} else if (frag[0] == '/') {
		target = schema_pointer_get(r->root, frag, flen);
	} else {
		sc_anchor *a = anchor_find(r, frag);
		if (a) {
			target = a->at;
			if (a->dynamic && dyn_name)
				*dyn_name = a->name;
		}
	}
	if (target == NULL) {
		fail(cc, REIN_ESCHEMA, &p, "cannot resolve \"%s\": \"%s\" has no \"#%s\"", ref, u, frag);
		goto out;
	}
	n = compile(cc, target, r, &p);
out:
	rein_free(full);
	rein_free(u);
	rein_free(frag);
	return n;
}

static void compile_props(cctx *cc, sc_node *n, const json_t *j, const sc_resource *res,
			  const sc_path *sp)
{
	const json_t *v = json_object_get(j, "properties");
	if (v) {
		sc_path p = {sp, "properties", 10, 0};
		if (!json_is_object(v)) {
			fail(cc, REIN_ESCHEMA, &p, "\"properties\" must be an object");
			return;
		}
		size_t m = json_object_size(v);
		if (m && (n->props = rein_calloc(m, sizeof *n->props)) == NULL) {
			oom(cc);
			return;
		}
		const char *k;
		size_t kl;
		json_t *c;
		json_object_keylen_foreach((json_t *)v, k, kl, c) {
			sc_path q = {&p, k, kl, 0};
			sc_prop *pr = &n->props[n->nprops++];
			pr->key = k;
			pr->klen = kl;
			if ((pr->node = compile(cc, c, res, &q)) == NULL)
				return;
		}
		if (n->nprops > 1)
			qsort(n->props, n->nprops, sizeof *n->props, prop_cmp);
	}
	v = json_object_get(j, "patternProperties");
	if (v) {
		sc_path p = {sp, "patternProperties", 17, 0};
		if (!json_is_object(v)) {
			fail(cc, REIN_ESCHEMA, &p, "\"patternProperties\" must be an object");
			return;
		}
		size_t m = json_object_size(v);
		if (m && (n->patprops = rein_calloc(m, sizeof *n->patprops)) == NULL) {
			oom(cc);
			return;
		}
		const char *k;
		size_t kl;
		json_t *c;
		json_object_keylen_foreach((json_t *)v, k, kl, c) {
			sc_path q = {&p, k, kl, 0};
			sc_patprop *pp = &n->patprops[n->npatprops];
			rein_err rerr = {0};
			if (strlen(k) != kl || schema_regex_compile(&pp->re, k, &rerr) != REIN_OK) {
				fail(cc, rerr.code == REIN_ENOMEM ? REIN_ENOMEM : REIN_ESCHEMA, &q, "%s",
				     rerr.code ? rerr.msg : "regex contains NUL");
				return;
			}
			n->npatprops++;
			if ((pp->node = compile(cc, c, res, &q)) == NULL)
				return;
		}
	}
}

static void compile_deps(cctx *cc, sc_node *n, const json_t *j, const sc_resource *res,
			 const sc_path *sp)
{
	static const char *const kws[] = {"dependentRequired", "dependentSchemas", "dependencies"};
	size_t total = 0;
	int first = res->draft == REIN_DRAFT_7 ? 2 : 0, last = res->draft == REIN_DRAFT_7 ? 2 : 1;
	for (int w = first; w <= last; w++) {
		const json_t *v = json_object_get(j, kws[w]);
		if (v == NULL)
			continue;
		if (!json_is_object(v)) {
			sc_path p = {sp, kws[w], strlen(kws[w]), 0};
			fail(cc, REIN_ESCHEMA, &p, "\"%s\" must be an object", kws[w]);
			return;
		}
		if (w == 0 && !(res->vocab & SC_VOC_VALIDATION))
			continue;
		if (w == 1 && !(res->vocab & SC_VOC_APPLICATOR))
			continue;
		total += json_object_size(v);
	}
	if (total == 0)
		return;
	if ((n->deps = rein_calloc(total, sizeof *n->deps)) == NULL) {
		oom(cc);
		return;
	}
	for (int w = first; w <= last; w++) {
		const json_t *v = json_object_get(j, kws[w]);
		if (v == NULL || (w == 0 && !(res->vocab & SC_VOC_VALIDATION)) ||
		    (w == 1 && !(res->vocab & SC_VOC_APPLICATOR)))
			continue;
		sc_path p = {sp, kws[w], strlen(kws[w]), 0};
		const char *k;
		size_t kl;
		json_t *c;
		json_object_keylen_foreach((json_t *)v, k, kl, c) {
			sc_path q = {&p, k, kl, 0};
			sc_dep *d = &n->deps[n->ndeps++];
			d->key = k;
			d->klen = kl;
			bool names = w == 0 || (w == 2 && json_is_array(c));
			if (names) {
				size_t i;
				json_t *e;
				if (!json_is_array(c)) {
					fail(cc, REIN_ESCHEMA, &q, "must be an array of strings");
					return;
				}
				json_array_foreach(c, i, e) {
					if (!json_is_string(e)) {
						fail(cc, REIN_ESCHEMA, &q, "must be an array of strings");
						return;
					}
				}
				d->names = c;
			} else if ((d->node = compile(cc, c, res, &q)) == NULL) {
				return;
			}
		}
	}
}

static void compile_items(cctx *cc, sc_node *n, const json_t *j, const sc_resource *res,
			  const sc_path *sp)
{
	const json_t *items = json_object_get(j, "items");
	if (res->draft == REIN_DRAFT_7) {
		if (json_is_array(items)) {
			n->prefix = kw_schema_array(cc, items, "items", &n->nprefix, res, sp);
			n->items = kw_schema(cc, j, "additionalItems", res, sp);
			n->items_kw = "additionalItems";
		} else {
			n->items = kw_schema(cc, j, "items", res, sp);
			n->items_kw = "items";
		}
	} else {
		const json_t *pi = json_object_get(j, "prefixItems");
		if (pi)
			n->prefix = kw_schema_array(cc, pi, "prefixItems", &n->nprefix, res, sp);
		n->items = kw_schema(cc, j, "items", res, sp);
		n->items_kw = "items";
	}
	n->contains = kw_schema(cc, j, "contains", res, sp);
}

static void compile_validation(cctx *cc, sc_node *n, const json_t *j, const sc_path *sp)
{
	const json_t *v = json_object_get(j, "type");
	if (v) {
		sc_path p = {sp, "type", 4, 0};
		if (json_is_string(v)) {
			n->types = type_bit(json_string_value(v));
		} else if (json_is_array(v)) {
			size_t i;
			json_t *e;
			json_array_foreach(v, i, e) {
				unsigned b = json_is_string(e) ? type_bit(json_string_value(e)) : 0;
				if (b == 0) {
					n->types = 0;
					break;
				}
				n->types |= b;
			}
		}
		if (n->types == 0) {
			fail(cc, REIN_ESCHEMA, &p, "\"type\" must be a type name or an array of type names");
			return;
		}
	}
	n->konst = json_object_get(j, "const");
	n->enm = json_object_get(j, "enum");
	if (n->enm && !json_is_array(n->enm)) {
		sc_path p = {sp, "enum", 4, 0};
		fail(cc, REIN_ESCHEMA, &p, "\"enum\" must be an array");
		return;
	}
	n->minimum = kw_number(cc, j, "minimum", sp);
	n->maximum = kw_number(cc, j, "maximum", sp);
	n->exmin = kw_number(cc, j, "exclusiveMinimum", sp);
	n->exmax = kw_number(cc, j, "exclusiveMaximum", sp);
	n->multiple = kw_number(cc, j, "multipleOf", sp);
	if (n->multiple && json_number_value(n->multiple) <= 0) {
		sc_path p = {sp, "multipleOf", 10, 0};
		fail(cc, REIN_ESCHEMA, &p, "\"multipleOf\" must be greater than 0");
		return;
	}
	kw_count(cc, j, "minLength", &n->min_len, sp);
	kw_count(cc, j, "maxLength", &n->max_len, sp);
	kw_count(cc, j, "minItems", &n->min_items, sp);
	kw_count(cc, j, "maxItems", &n->max_items, sp);
	kw_count(cc, j, "minProperties", &n->min_props, sp);
	kw_count(cc, j, "maxProperties", &n->max_props, sp);
	if (n->res->draft != REIN_DRAFT_7) {
		kw_count(cc, j, "minContains", &n->min_contains, sp);
		kw_count(cc, j, "maxContains", &n->max_contains, sp);
	}
	v = json_object_get(j, "uniqueItems");
	if (v) {
		if (!json_is_boolean(v)) {
			sc_path p = {sp, "uniqueItems", 11, 0};
			fail(cc, REIN_ESCHEMA, &p, "\"uniqueItems\" must be a boolean");
			return;
		}
		n->unique = json_is_true(v);
	}
	v = json_object_get(j, "pattern");
	if (v) {
		sc_path p = {sp, "pattern", 7, 0};
		rein_err rerr = {0};
		if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) {
			fail(cc, REIN_ESCHEMA, &p, "\"pattern\" must be a string without NUL");
			return;
		}
		if ((n->pattern = rein_calloc(1, sizeof *n->pattern)) == NULL) {
			oom(cc);
			return;
		}
		if (schema_regex_compile(n->pattern, json_string_value(v), &rerr) != REIN_OK) {
			rein_free(n->pattern);
			n->pattern = NULL;
			fail(cc, rerr.code, &p, "%s", rerr.msg);
			return;
		}
	}
	v = json_object_get(j, "required");
	if (v) {
		sc_path p = {sp, "required", 8, 0};
		size_t i;
		json_t *e;
		if (!json_is_array(v)) {
			fail(cc, REIN_ESCHEMA, &p, "\"required\" must be an array of strings");
			return;
		}
		json_array_foreach(v, i, e) {
			if (!json_is_string(e)) {
				fail(cc, REIN_ESCHEMA, &p, "\"required\" must be an array of strings");
				return;
			}
		}
		n->required = v;
	}
}

static sc_node *compile(cctx *cc, const json_t *j, const sc_resource *res, const sc_path *sp)
{
	rein_schema *s = cc->s;
	if (cc->rc)
		return NULL;
	if (json_is_true(j))
		return &s->true_node;
	if (json_is_false(j))
		return &s->false_node;
	if (!json_is_object(j)) {
		fail(cc, REIN_ESCHEMA, sp, "a schema must be an object or a boolean");
		return NULL;
	}
	sc_slot *slot = slot_get(cc, j);
	if (slot == NULL)
		return NULL;
	if (slot->node)
		return slot->node;
	if (slot->res)
		res = slot->res;
	if (cc->depth >= MAX_COMPILE_DEPTH) {
		fail(cc, REIN_ESCHEMA, sp, "schema nesting too deep");
		return NULL;
	}
	sc_node *n = rein_calloc(1, sizeof *n);
	if (n == NULL) {
		oom(cc);
		return NULL;
	}
	n->next_alloc = s->nodes;
	s->nodes = n;
	slot->node = n; /* slot pointers move on rehash: do not use slot below */
	n->src = j;
	n->res = res;
	n->boolean = -1;
	n->min_len = n->max_len = n->min_items = n->max_items = -1;
	n->min_props = n->max_props = n->min_contains = n->max_contains = -1;
	cc->depth++;

	const json_t *ref = json_object_get(j, "$ref");
	if (ref) {
		n->ref = ref_resolve(cc, res, ref, "$ref", NULL, sp);
		if (res->draft == REIN_DRAFT_7)
			goto out;
	}
	if (res->draft != REIN_DRAFT_7) {
		const json_t *dr = json_object_get(j, "$dynamicRef");
		if (dr)
			n->dynref = ref_resolve(cc, res, dr, "$dynamicRef", &n->dyn_name, sp);
	}
	if (res->vocab & SC_VOC_APPLICATOR) {
		const json_t *v;
		if ((v = json_object_get(j, "allOf")))
			n->allof = kw_schema_array(cc, v, "allOf", &n->nallof, res, sp);
		if ((v = json_object_get(j, "anyOf")))
			n->anyof = kw_schema_array(cc, v, "anyOf", &n->nanyof, res, sp);
		if ((v = json_object_get(j, "oneOf")))
			n->oneof = kw_schema_array(cc, v, "oneOf", &n->noneof, res, sp);
		n->not_ = kw_schema(cc, j, "not", res, sp);
		n->if_ = kw_schema(cc, j, "if", res, sp);
		if (n->if_) {
			n->then_ = kw_schema(cc, j, "then", res, sp);
			n->else_ = kw_schema(cc, j, "else", res, sp);
		}
		compile_props(cc, n, j, res, sp);
		n->addprops = kw_schema(cc, j, "additionalProperties", res, sp);
		n->propnames = kw_schema(cc, j, "propertyNames", res, sp);
		compile_items(cc, n, j, res, sp);
	}
	compile_deps(cc, n, j, res, sp);
	if (res->vocab & SC_VOC_VALIDATION)
		compile_validation(cc, n, j, sp);
	if (res->draft != REIN_DRAFT_7 && (res->vocab & SC_VOC_UNEVALUATED)) {
		n->uneval_props = kw_schema(cc, j, "unevaluatedProperties", res, sp);
		n->uneval_items = kw_schema(cc, j, "unevaluatedItems", res, sp);
	}
out:
	cc->depth--;
	return cc->rc ? NULL : n;
}

/* Compiles every dynamic anchor so $dynamicRef can jump to it at run time. */
static void compile_dynamic_anchors(cctx *cc)
{
	bool again = true;
	while (again && !cc->rc) {
		again = false;
		for (sc_resource *r = cc->s->resources; r && !cc->rc; r = r->next) {
			for (size_t i = 0; i < r->nanchors && !cc->rc; i++) {
				sc_anchor *a = &r->anchors[i];
				if (!a->dynamic || a->node)
					continue;
				sc_path p = {NULL, a->name, strlen(a->name), 0};
				a->node = compile(cc, a->at, r, &p);
				again = true;
			}
		}
	}
}

static void node_free(sc_node *n)
{
	rein_free(n->allof);
	rein_free(n->anyof);
	rein_free(n->oneof);
	rein_free(n->props);
	for (size_t i = 0; i < n->npatprops; i++)
		schema_regex_free(&n->patprops[i].re);
	rein_free(n->patprops);
	rein_free(n->deps);
	rein_free(n->prefix);
	if (n->pattern) {
		schema_regex_free(n->pattern);
		rein_free(n->pattern);
	}
	rein_free(n);
}

void rein_schema_free(rein_schema *s)
{
	if (s == NULL)
		return;
	for (sc_node *n = s->nodes, *next; n; n = next) {
		next = n->next_alloc;
		node_free(n);
	}
	for (sc_resource *r = s->resources, *next; r; r = next) {
		next = r->next;
		for (size_t i = 0; i < r->nanchors; i++)
			rein_free(r->anchors[i].name);
		rein_free(r->anchors);
		rein_free(r->uri);
		rein_free(r);
	}
	for (size_t i = 0; i < s->ndocs; i++)
		json_decref(s->docs[i]);
	rein_free(s->docs);
	rein_free(s->slots);
	for (size_t i = 0; i < s->nmaps; i++) {
		rein_free((char *)s->maps[i].prefix);
		rein_free((char *)s->maps[i].dir);
	}
	rein_free(s->maps);
	rein_free(s->base_dir);
	rein_free(s->name);
	rein_free(s);
}

static int copy_opts(cctx *cc, const rein_schema_opts *o)
{
	rein_schema *s = cc->s;
	if (o->base_dir && (s->base_dir = rein_strdup(o->base_dir)) == NULL)
		return oom(cc);
	if (o->name && (s->name = rein_strdup(o->name)) == NULL)
		return oom(cc);
	if (o->nmaps) {
		if ((s->maps = rein_calloc(o->nmaps, sizeof *s->maps)) == NULL)
			return oom(cc);
		for (size_t i = 0; i < o->nmaps; i++) {
			s->maps[i].prefix = rein_strdup(o->maps[i].prefix);
			s->maps[i].dir = rein_strdup(o->maps[i].dir);
			s->nmaps++;
			if (!s->maps[i].prefix || !s->maps[i].dir)
				return oom(cc);
		}
	}
	return REIN_OK;
}

int rein_schema_compile(const json_t *schema, const rein_schema_opts *opts, rein_schema **out,
			rein_err *err)
{
	static const rein_schema_opts none = {0};
	cctx cc = {.err = err};
	rein_schema *s = NULL;
	if (opts == NULL)
		opts = &none;
	if (schema == NULL) {
		rein_err_set(err, REIN_EINVAL, "schema: no schema given");
		return REIN_EINVAL;
	}
	if ((s = rein_calloc(1, sizeof *s)) == NULL) {
		rein_err_set(err, REIN_ENOMEM, "out of memory");
		return REIN_ENOMEM;
	}
	cc.s = s;
	s->true_node.boolean = 1;
	s->false_node.boolean = 0;
	s->draft = opts->draft;
	if (copy_opts(&cc, opts) != REIN_OK)
		goto out;
	if (doc_add(&cc, json_incref((json_t *)schema)) != REIN_OK)
		goto out;
	if (json_is_object(schema)) {
		int forced = opts->draft;
		scan(&cc, schema, NULL, ROOT_BASE, 0);
		sc_resource *r = cc.rc ? NULL : res_find(s, ROOT_BASE);
		if (r && forced != REIN_DRAFT_AUTO) {
			r->draft = forced;
			r->vocab = SC_VOC_ALL;
		}
		if (cc.rc)
			goto out;
		if (r == NULL) {
			fail(&cc, REIN_ESCHEMA, NULL, "root schema was not registered");
			goto out;
		}
		s->root = compile(&cc, schema, r, NULL);
	} else {
		s->root = compile(&cc, schema, NULL, NULL);
	}
	compile_dynamic_anchors(&cc);
	if (s->draft == REIN_DRAFT_AUTO)
		s->draft = REIN_DRAFT_2020_12;
out:
	if (cc.rc != REIN_OK) {
		rein_schema_free(s);
		return cc.rc;
	}
	*out = s;
	return REIN_OK;
}
