/*
 * The spec compiler: workflow.yaml (plus the Lua and schema files it names)
 * → rein_spec. Every problem found becomes a FILE:LINE:COL diagnostic; the
 * checks go on after the first so `rein validate` can list them all.
 */
#include "spec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spec_int.h"
#include "yaml_tree.h"

#define DEFAULT_MAX_STEPS 1000

/* ---- the loader -------------------------------------------------------- */


void spec_diag(loader *L, const char *file, int line, int col, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (rein_diags_add(L->d, file, line, col, "%s", msg) != REIN_OK)
		L->nomem = true;
}


static const char *kind_name(int type)
{
	return type == YNODE_MAP ? "a mapping" : type == YNODE_SEQ ? "a list" : "a scalar";
}

/* Checks every key of map is in allowed (NULL-terminated). */
void spec_check_keys(loader *L, const ynode *map, const char *what, const char *const *allowed)
{
	for (size_t i = 0; i + 1 < map->n; i += 2) {
		const ynode *k = map->kids[i];
		if (k->type != YNODE_SCALAR) {
			DIAG(L, k, "%s: keys must be scalars", what);
			continue;
		}
		bool ok = false;
		for (const char *const *a = allowed; *a; a++)
			ok |= strcmp(*a, k->str) == 0;
		if (!ok) {
			char list[512] = "";
			for (const char *const *a = allowed; *a; a++) {
				strncat(list, *a, sizeof list - strlen(list) - 1);
				if (a[1])
					strncat(list, ", ", sizeof list - strlen(list) - 1);
			}
			DIAG(L, k, "unknown key '%s' in %s (expected one of: %s)", k->str, what, list);
		}
	}
}

bool spec_want_type(loader *L, const ynode *n, int type, const char *what)
{
	if (n->type == type)
		return true;
	DIAG(L, n, "%s must be %s, not %s", what, kind_name(type), kind_name(n->type));
	return false;
}

/* A positive integer scalar; returns false (with a diagnostic) otherwise. */
bool spec_want_int(loader *L, const ynode *n, const char *what, int64_t min, int64_t *v)
{
	if (n->type == YNODE_SCALAR && n->plain) {
		char *end;
		long long x = strtoll(n->str, &end, 10);
		if (*n->str && *end == '\0' && x >= min) {
			*v = x;
			return true;
		}
	}
	DIAG(L, n, "%s must be an integer >= %lld", what, (long long)min);
	return false;
}

static bool safe_relpath(const char *rel)
{
	if (rel[0] == '/' || rel[0] == '\0')
		return false;
	for (const char *p = rel; *p;) {
		const char *slash = strchr(p, '/');
		size_t len = slash ? (size_t)(slash - p) : strlen(p);
		if (len == 2 && p[0] == '.' && p[1] == '.')
			return false;
		p += len + (slash ? 1 : 0);
	}
	return true;
}

/*
 * Reads a file of the workflow by relative path, recording it in the bundle
 * (or taking it from the bundle). Returns a borrowed string or NULL with a
 * diagnostic at n.
 */
const char *spec_read_rel(loader *L, const ynode *n, const char *rel)
{
	if (!safe_relpath(rel)) {
		DIAG(L, n, "'%s': paths must be relative and stay inside the workflow directory", rel);
		return NULL;
	}
	json_t *have = json_object_get(L->files, rel);
	if (have)
		return json_string_value(have);
	if (L->dir == NULL) {
		DIAG(L, n, "'%s': not in the recorded workflow bundle", rel);
		return NULL;
	}
	char *text = NULL;
	size_t len = 0;
	rein_err e = {0};
	const char *res = NULL;
	/* containment on the real path: a symlink must not lead out of the directory */
	int rc = rein_file_read_within(L->dir, rel, &text, &len, &e);
	if (rc == REIN_ENOMEM) {
		L->nomem = true;
		goto out;
	} else if (rc == REIN_EINVAL) {
		DIAG(L, n, "'%s' %s: a workflow reads only files inside its directory", rel, e.msg);
		goto out;
	} else if (rc != REIN_OK) {
		DIAG(L, n, "cannot read '%s': %s", rel, e.msg);
		goto out;
	}
	json_t *s = json_stringn(text, len);
	if (s == NULL) {
		DIAG(L, n, "'%s' is not valid UTF-8 text", rel);
		goto out;
	}
	if (json_object_set_new(L->files, rel, s) != 0) {
		L->nomem = true;
		goto out;
	}
	res = json_string_value(s);
out:
	rein_err_clear(&e);
	rein_free(text);
	return res;
}

/* Reports a Lua compile error at the node's place, shifting Lua's line numbers. */
static void lua_diag(loader *L, const char *file, int line, int col, int offset, const char *what,
		     const char *msg)
{
	int lual = 0;
	const char *rest = msg;
	if (sscanf(msg, "line %d: ", &lual) == 1) {
		rest = strstr(msg, ": ") + 2;
		if (offset >= 0)
			line += offset + lual - 1;
	}
	spec_diag(L, file, line, col, "%s does not compile: %s", what, rest);
}

void spec_check_expr(loader *L, const ynode *n, const char *what)
{
	rein_err e = {0};
	if (rein_script_check(L->sb, n->str, REIN_SCRIPT_EXPR, &e) != REIN_OK)
		lua_diag(L, L->wf, n->line, n->col, -1, what, e.msg);
}

/* Checks the templates inside a value node (strings at any depth). */
void spec_check_templates(loader *L, const ynode *n)
{
	if (n->type == YNODE_SCALAR) {
		rein_err e = {0};
		if (rein_script_has_template(n->str) &&
		    rein_script_template_check(L->sb, n->str, &e) != REIN_OK)
			DIAG(L, n, "template does not compile: %s", e.msg);
		return;
	}
	for (size_t i = 0; i < n->n; i++)
		spec_check_templates(L, n->kids[i]);
}

json_t *spec_to_json(loader *L, const ynode *n)
{
	const ynode *bad = NULL;
	rein_err e = {0};
	json_t *j = ynode_to_json(n, &bad, &e);
	if (j == NULL) {
		if (e.code == REIN_ENOMEM)
			L->nomem = true;
		else
			DIAG(L, bad ? bad : n, "%s", e.msg);
	}
	return j;
}

/* input:/output: an inline schema, or {$ref: file.json} relative to the workflow. */
rein_schema *spec_load_schema(loader *L, const ynode *n, const char *what, json_t **doc_out)
{
	json_t *doc = NULL;
	rein_schema *s = NULL;
	const char *file = NULL;
	const ynode *ref = n->type == YNODE_MAP && n->n == 2 ? ynode_get(n, "$ref") : NULL;
	if (ref && ref->type == YNODE_SCALAR && !strchr(ref->str, '#') && !strchr(ref->str, ':')) {
		const char *text = spec_read_rel(L, ref, ref->str);
		if (text == NULL)
			goto out;
		rein_err e = {0};
		doc = rein_json_parse(text, strlen(text), &e);
		if (doc == NULL) {
			DIAG(L, ref, "%s schema '%s' is not JSON: %s", what, ref->str, e.msg);
			goto out;
		}
		file = ref->str;
	} else if ((doc = spec_to_json(L, n)) == NULL) {
		goto out;
	}
	rein_schema_opts o = {.base_dir = L->dir, .name = file};
	rein_err e = {0};
	if (rein_schema_compile(doc, &o, &s, &e) != REIN_OK) {
		if (e.code == REIN_ENOMEM)
			L->nomem = true;
		else
			DIAG(L, n, "%s schema is invalid: %s", what, e.msg);
	} else if (doc_out) {
		*doc_out = json_incref(doc);
	}
out:
	json_decref(doc);
	return s;
}

static void load_limits(loader *L, const ynode *n, rein_script_limits *lim, const char *what)
{
	static const char *const keys[] = {"instructions", "memory_kb", NULL};
	if (!spec_want_type(L, n, YNODE_MAP, what))
		return;
	spec_check_keys(L, n, what, keys);
	const ynode *v;
	int64_t x;
	if ((v = ynode_get(n, "instructions")) && spec_want_int(L, v, "instructions", 1000, &x))
		lim->instructions = (uint64_t)x;
	if ((v = ynode_get(n, "memory_kb")) && spec_want_int(L, v, "memory_kb", 64, &x))
		lim->memory_bytes = (size_t)x * 1024;
}

/* Resolves a step name to its index, or reports it. */
int spec_step_ref(loader *L, const ynode *n, const char *what)
{
	if (n->type != YNODE_SCALAR) {
		DIAG(L, n, "%s must be a step name", what);
		return -1;
	}
	int i = rein_spec_step(L->spec, n->str);
	if (i < 0)
		DIAG(L, n, "%s '%s': no such step", what, n->str);
	return i;
}

static void load_next(loader *L, rein_step *st, const ynode *n)
{
	if (n->type == YNODE_SCALAR) {
		if ((st->next = rein_calloc(1, sizeof *st->next)) == NULL) {
			L->nomem = true;
			return;
		}
		st->nnext = 1;
		st->next[0].target = spec_step_ref(L, n, "next");
		return;
	}
	if (n->type != YNODE_SEQ || n->n == 0) {
		DIAG(L, n, "next must be a step name or a list of {when, goto}");
		return;
	}
	if ((st->next = rein_calloc(n->n, sizeof *st->next)) == NULL) {
		L->nomem = true;
		return;
	}
	st->nnext = n->n;
	static const char *const keys[] = {"when", "goto", NULL};
	for (size_t i = 0; i < n->n; i++) {
		const ynode *it = n->kids[i];
		st->next[i].target = -1;
		if (it->type == YNODE_SCALAR) { /* a bare name in the list */
			st->next[i].target = spec_step_ref(L, it, "next");
			continue;
		}
		if (!spec_want_type(L, it, YNODE_MAP, "a next entry"))
			continue;
		spec_check_keys(L, it, "a next entry", keys);
		const ynode *g = ynode_get(it, "goto"), *w = ynode_get(it, "when");
		if (g == NULL)
			DIAG(L, it, "next entry has no 'goto'");
		else
			st->next[i].target = spec_step_ref(L, g, "goto");
		if (w) {
			if (w->type != YNODE_SCALAR) {
				DIAG(L, w, "when must be a Lua expression");
			} else {
				spec_check_expr(L, w, "when expression");
				if ((st->next[i].when = rein_strdup(w->str)) == NULL)
					L->nomem = true;
			}
		} else if (i + 1 < n->n) {
			DIAG(L, it, "next entry without 'when' must be the last one");
		}
	}
}

static void load_code(loader *L, rein_step *st, const ynode *n)
{
	const ynode *src = n, *file = NULL;
	st->u.code.limits = L->spec->limits;
	if (n->type == YNODE_MAP) {
		static const char *const keys[] = {"source", "file", "instructions", "memory_kb",
						   NULL};
		spec_check_keys(L, n, "code", keys);
		src = ynode_get(n, "source");
		file = ynode_get(n, "file");
		const ynode *v;
		int64_t x;
		if ((v = ynode_get(n, "instructions")) && spec_want_int(L, v, "instructions", 1000, &x))
			st->u.code.limits.instructions = (uint64_t)x;
		if ((v = ynode_get(n, "memory_kb")) && spec_want_int(L, v, "memory_kb", 64, &x))
			st->u.code.limits.memory_bytes = (size_t)x * 1024;
		if ((src == NULL) == (file == NULL)) {
			DIAG(L, n, "code needs exactly one of 'source' or 'file'");
			return;
		}
	}
	if (file) {
		if (file->type != YNODE_SCALAR) {
			DIAG(L, file, "code file must be a path");
			return;
		}
		const char *text = spec_read_rel(L, file, file->str);
		if (text == NULL)
			return;
		st->u.code.src = rein_strdup(text);
		/* named inside the workflow, not by where it was loaded from: the
		 * same message from the directory and from the store's bundle */
		st->u.code.origin = rein_strdup(file->str);
		st->u.code.line_offset = 0;
		rein_err e = {0};
		if (st->u.code.src && rein_script_check(L->sb, st->u.code.src, REIN_SCRIPT_CHUNK, &e) != REIN_OK) {
			char *fname = rein_sprintf("%s/%s", L->path, file->str);
			if (fname)
				lua_diag(L, fname, 1, 1, 0, "code", e.msg);
			rein_free(fname);
		}
	} else {
		if (src->type != YNODE_SCALAR) {
			DIAG(L, src, "code must be Lua source text");
			return;
		}
		st->u.code.src = rein_strdup(src->str);
		st->u.code.line_offset = src->line + (src->block ? 1 : 0) - 1;
		st->u.code.origin = rein_strdup("workflow.yaml");
		rein_err e = {0};
		if (st->u.code.src && rein_script_check(L->sb, st->u.code.src, REIN_SCRIPT_CHUNK, &e) != REIN_OK)
			lua_diag(L, L->wf, src->line, src->col, src->block ? 1 : 0, "code", e.msg);
	}
	if (st->u.code.src == NULL || st->u.code.origin == NULL)
		L->nomem = true;
}

/* wait: {signal: NAME, timeout_s: N?, schema: {...}?} */
static void load_wait_signal(loader *L, rein_step *st, const ynode *n, const ynode *sig)
{
	const ynode *v;
	int64_t x;
	if (ynode_get(n, "seconds"))
		DIAG(L, n, "wait takes one of 'seconds' or 'signal'");
	if (sig->type != YNODE_SCALAR || sig->str[0] == '\0' || strlen(sig->str) > 128) {
		DIAG(L, sig, "wait signal must be a name (1 to 128 characters)");
		return;
	}
	if ((st->u.wait.signal = rein_strdup(sig->str)) == NULL)
		L->nomem = true;
	if ((v = ynode_get(n, "timeout_s")) && spec_want_int(L, v, "timeout_s", 1, &x)) {
		if (x > 1000000000)
			DIAG(L, v, "timeout_s must be at most 1e9");
		else
			st->u.wait.timeout_ms = x * 1000;
	}
	if ((v = ynode_get(n, "schema")))
		st->u.wait.schema = spec_load_schema(L, v, "signal", NULL);
}

static void load_wait(loader *L, rein_step *st, const ynode *n)
{
	const ynode *v = n;
	if (n->type == YNODE_MAP) {
		static const char *const keys[] = {"seconds", "signal", "timeout_s", "schema", NULL};
		spec_check_keys(L, n, "wait", keys);
		const ynode *sig = ynode_get(n, "signal");
		if (sig) {
			load_wait_signal(L, st, n, sig);
			return;
		}
		if (ynode_get(n, "timeout_s") || ynode_get(n, "schema"))
			DIAG(L, n, "wait: 'timeout_s' and 'schema' go with 'signal'");
		if ((v = ynode_get(n, "seconds")) == NULL) {
			DIAG(L, n, "wait needs 'seconds' or 'signal'");
			return;
		}
	}
	if (v->type != YNODE_SCALAR) {
		DIAG(L, v, "wait seconds must be a number or a ${...} template");
		return;
	}
	json_t *j = ynode_scalar_json(v);
	if (j == NULL) {
		L->nomem = true;
		return;
	}
	if (json_is_number(j) ? json_number_value(j) < 0
			      : !(json_is_string(j) && rein_script_has_template(v->str))) {
		DIAG(L, v, "wait seconds must be a number >= 0 or a ${...} template");
		json_decref(j);
		return;
	}
	spec_check_templates(L, v);
	st->u.wait.seconds = j;
}

static void load_parallel(loader *L, rein_step *st, const ynode *n)
{
	const ynode *b = n;
	if (n->type == YNODE_MAP) {
		static const char *const keys[] = {"branches", NULL};
		spec_check_keys(L, n, "parallel", keys);
		if ((b = ynode_get(n, "branches")) == NULL) {
			DIAG(L, n, "parallel needs 'branches'");
			return;
		}
	}
	if (b->type != YNODE_SEQ || b->n == 0) {
		DIAG(L, b, "parallel branches must be a non-empty list of step names");
		return;
	}
	if ((st->u.parallel.branches = rein_calloc(b->n, sizeof *st->u.parallel.branches)) == NULL) {
		L->nomem = true;
		return;
	}
	st->u.parallel.nbranches = b->n;
	for (size_t i = 0; i < b->n; i++)
		st->u.parallel.branches[i] = spec_step_ref(L, b->kids[i], "branch");
}

/* verify: {rules: [{id?, check, message?} or "EXPR"], model?, prompt?,
 * system?, max_tokens?, temperature?, min_confidence?} */
static void load_verify(loader *L, rein_step *st, const ynode *n)
{
	static const char *const keys[] = {"rules",      "model",       "prompt",        "system",
					   "max_tokens", "temperature", "min_confidence", NULL};
	static const char *const rkeys[] = {"id", "check", "message", NULL};
	if (!spec_want_type(L, n, YNODE_MAP, "verify"))
		return;
	spec_check_keys(L, n, "verify", keys);
	spec_load_verify_model(L, st, n);
	const ynode *rules = ynode_get(n, "rules");
	if (rules == NULL && st->u.verify.has_model)
		return; /* the model check alone */
	if (rules == NULL || rules->type != YNODE_SEQ || rules->n == 0) {
		DIAG(L, rules ? rules : n,
		     "verify needs 'rules' (a non-empty list of checks) or 'model'");
		return;
	}
	rein_step_verify *v = &st->u.verify;
	if ((v->rules = rein_calloc(rules->n, sizeof *v->rules)) == NULL) {
		L->nomem = true;
		return;
	}
	v->nrules = rules->n;
	for (size_t i = 0; i < rules->n; i++) {
		const ynode *it = rules->kids[i], *chk = it, *id = NULL, *msg = NULL;
		rein_verify_rule *ru = &v->rules[i];
		if (it->type == YNODE_MAP) {
			spec_check_keys(L, it, "a verify rule", rkeys);
			chk = ynode_get(it, "check");
			id = ynode_get(it, "id");
			msg = ynode_get(it, "message");
			if (chk == NULL) {
				DIAG(L, it, "verify rule has no 'check' (a Lua expression)");
				continue;
			}
		}
		if (chk->type != YNODE_SCALAR || chk->len == 0) {
			DIAG(L, chk, "verify rule check must be a Lua expression");
			continue;
		}
		if (id && (id->type != YNODE_SCALAR || id->len == 0 || strlen(id->str) > 128)) {
			DIAG(L, id, "verify rule id must be a name (1 to 128 characters)");
			id = NULL;
		}
		for (size_t j = 0; id && j < i; j++)
			if (v->rules[j].id && strcmp(v->rules[j].id, id->str) == 0)
				DIAG(L, id, "verify rule id '%s' is used twice", id->str);
		if (msg && msg->type != YNODE_SCALAR) {
			DIAG(L, msg, "verify rule message must be text");
			msg = NULL;
		}
		spec_check_expr(L, chk, "verify rule");
		if ((ru->check = rein_strdup(chk->str)) == NULL ||
		    (id && (ru->id = rein_strdup(id->str)) == NULL) ||
		    (msg && (ru->message = rein_strdup(msg->str)) == NULL))
			L->nomem = true;
	}
}

static const char *const step_kinds[] = {"code",  "wait",  "parallel", "tool",
					  "llm",   "agent", "verify",   "end",      NULL};

static void load_step(loader *L, size_t idx, const ynode *key, const ynode *val)
{
	rein_step *st = &L->spec->steps[idx];
	if (!spec_want_type(L, val, YNODE_MAP, "a step"))
		return;
	const ynode *kind = NULL;
	const char *kname = NULL;
	for (const char *const *k = step_kinds; *k; k++) {
		const ynode *v = ynode_get(val, *k);
		if (v == NULL)
			continue;
		if (kind) {
			DIAG(L, v, "step '%s' has two kinds ('%s' and '%s')", st->name, kname, *k);
			continue;
		}
		kind = v;
		kname = *k;
	}
	if (kind == NULL) {
		DIAG(L, key, "step '%s' has no kind (one of: code, wait, parallel, tool, llm, agent, verify, end)", st->name);
		/* still follow its edges, so the steps after it are not reported
		 * as unreachable on top of this */
		const ynode *nx = ynode_get(val, "next");
		if (nx)
			load_next(L, st, nx);
		return;
	}
	static const char *const common[] = {"code",   "wait",     "parallel",   "tool",
					     "llm",    "agent",    "verify",     "args",       "output",
					     "budget", "optional", "next",       "on_fail",
					     "max_visits", "description", NULL};
	static const char *const end_keys[] = {"end", "reason", "output", "description", NULL};
	if (strcmp(kname, "end") == 0) {
		st->kind = REIN_STEP_END;
		spec_check_keys(L, val, "an end step", end_keys);
		int s = kind->type == YNODE_SCALAR ? rein_status_parse(kind->str) : -1;
		if (s != REIN_RUN_SUCCEEDED && s != REIN_RUN_FAILED && s != REIN_RUN_ESCALATED)
			DIAG(L, kind, "end must be one of: succeeded, failed, escalated");
		else
			st->u.end.status = (rein_status)s;
		const ynode *v;
		if ((v = ynode_get(val, "reason"))) {
			spec_check_templates(L, v);
			st->u.end.reason = spec_to_json(L, v);
		}
		if ((v = ynode_get(val, "output"))) {
			spec_check_templates(L, v);
			st->u.end.output = spec_to_json(L, v);
		}
		return;
	}
	spec_check_keys(L, val, "a step", common);
	const ynode *v;
	if ((v = ynode_get(val, "next")))
		load_next(L, st, v);
	if ((v = ynode_get(val, "on_fail")))
		st->on_fail = spec_step_ref(L, v, "on_fail");
	int64_t x;
	if ((v = ynode_get(val, "max_visits")) && spec_want_int(L, v, "max_visits", 1, &x))
		st->max_visits = (int)(x > 1000000000 ? 1000000000 : x);
	if (ynode_get(val, "args") && strcmp(kname, "tool") != 0)
		DIAG(L, ynode_get(val, "args"), "args only goes with a tool step");
	if ((v = ynode_get(val, "output"))) {
		if (strcmp(kname, "code") != 0 && strcmp(kname, "tool") != 0)
			DIAG(L, v, "output (a schema) only goes with code and tool steps");
		else if (strcmp(kname, "code") == 0)
			st->u.code.out_schema = spec_load_schema(L, v, "step output", NULL);
		else
			st->u.tool.out_schema = spec_load_schema(L, v, "step output", NULL);
	}
	/* budget and optional land in the model part; for another kind they are
	 * still checked (into a scratch copy) so the diagnostics stay the same */
	rein_step_model scratch = {0};
	rein_step_model *m = &scratch;
	if (strcmp(kname, "llm") == 0)
		m = &st->u.llm;
	else if (strcmp(kname, "agent") == 0)
		m = &st->u.agent.model;
	if ((v = ynode_get(val, "budget")) || (v = ynode_get(val, "optional"))) {
		if (strcmp(kname, "llm") != 0 && strcmp(kname, "agent") != 0)
			DIAG(L, v, "budget and optional go with llm and agent steps");
	}
	if ((v = ynode_get(val, "optional")) && v->type == YNODE_SCALAR)
		m->optional = strcmp(v->str, "true") == 0;
	if ((v = ynode_get(val, "budget")) && spec_want_type(L, v, YNODE_MAP, "budget")) {
		static const char *const bk[] = {"max_tokens", "max_cost_usd", "max_model_calls",
						 "max_tool_calls", "timeout_s", NULL};
		spec_check_keys(L, v, "a step budget", bk);
		const ynode *b;
		if ((b = ynode_get(v, "max_tokens")) && spec_want_int(L, b, "max_tokens", 1, &x))
			m->b_tokens = x;
		if ((b = ynode_get(v, "max_model_calls")) && spec_want_int(L, b, "max_model_calls", 1, &x))
			m->b_model_calls = x;
		if ((b = ynode_get(v, "max_tool_calls")) && spec_want_int(L, b, "max_tool_calls", 1, &x))
			m->b_tool_calls = x;
		if ((b = ynode_get(v, "timeout_s")) && spec_want_int(L, b, "timeout_s", 1, &x))
			m->b_timeout_ms = x * 1000;
		if ((b = ynode_get(v, "max_cost_usd"))) {
			json_t *j = b->type == YNODE_SCALAR ? ynode_scalar_json(b) : NULL;
			if (json_is_number(j) && json_number_value(j) > 0)
				m->b_cost_usd = json_number_value(j);
			else
				DIAG(L, b, "max_cost_usd must be a number > 0");
			json_decref(j);
		}
	}
	if (strcmp(kname, "code") == 0) {
		st->kind = REIN_STEP_CODE;
		load_code(L, st, kind);
	} else if (strcmp(kname, "wait") == 0) {
		st->kind = REIN_STEP_WAIT;
		load_wait(L, st, kind);
	} else if (strcmp(kname, "tool") == 0) {
		st->kind = REIN_STEP_TOOL;
		spec_load_tool_step(L, st, kind, val);
	} else if (strcmp(kname, "llm") == 0) {
		st->kind = REIN_STEP_LLM;
		spec_load_llm_step(L, st, kind);
	} else if (strcmp(kname, "agent") == 0) {
		st->kind = REIN_STEP_AGENT;
		spec_load_agent_step(L, st, kind);
	} else if (strcmp(kname, "verify") == 0) {
		st->kind = REIN_STEP_VERIFY;
		load_verify(L, st, kind);
	} else {
		st->kind = REIN_STEP_PARALLEL;
		load_parallel(L, st, kind);
	}
}

/* ---- graph checks ------------------------------------------------------- */

/*
 * Each step belongs to one scope: the main flow (0) or one branch of one
 * parallel step (1 + a running number). A step reached from two scopes, an
 * end step inside a branch, and a main-flow step with nowhere to go are errors.
 */
static void assign_scope(loader *L, int *scope, int start, int sc, int *nscopes)
{
	rein_spec *s = L->spec;
	int *queue = rein_malloc(s->nsteps * sizeof *queue);
	if (queue == NULL) {
		L->nomem = true;
		return;
	}
	size_t head = 0, tail = 0;
	if (scope[start] == -1) {
		scope[start] = sc;
		queue[tail++] = start;
	} else if (scope[start] != sc) {
		DIAG(L, (&(ynode){.line = s->steps[start].line, .col = s->steps[start].col}),
		     "step '%s' is shared between a parallel branch and another flow; branches "
		     "must not share steps",
		     s->steps[start].name);
	}
	while (head < tail) {
		rein_step *st = &s->steps[queue[head++]];
		int targets[64];
		size_t nt = 0;
		for (size_t i = 0; i < st->nnext && nt < 63; i++)
			targets[nt++] = st->next[i].target;
		if (nt < 64)
			targets[nt++] = st->on_fail;
		for (size_t i = 0; i < nt; i++) {
			int t = targets[i];
			if (t < 0)
				continue;
			if (scope[t] == -1) {
				scope[t] = sc;
				queue[tail++] = t;
			} else if (scope[t] != sc) {
				spec_diag(L, L->wf, s->steps[t].line, s->steps[t].col,
				     "step '%s' is shared between a parallel branch and another "
				     "flow; branches must not share steps",
				     s->steps[t].name);
			}
		}
		if (st->kind == REIN_STEP_PARALLEL)
			for (size_t i = 0; i < st->u.parallel.nbranches; i++)
				if (st->u.parallel.branches[i] >= 0)
					assign_scope(L, scope, st->u.parallel.branches[i], ++*nscopes, nscopes);
	}
	rein_free(queue);
}

/* Finds a cycle among unbounded steps (max_visits == 0); reports one per cycle. */
static bool find_loop(loader *L, int v, int *color, int *path, int depth)
{
	rein_spec *s = L->spec;
	rein_step *st = &s->steps[v];
	color[v] = 1;
	path[depth] = v;
	for (size_t i = 0; i <= st->nnext; i++) {
		int t = i < st->nnext ? st->next[i].target : st->on_fail;
		if (t < 0 || s->steps[t].max_visits > 0)
			continue;
		if (color[t] == 1) {
			char buf[512] = "";
			int from = depth;
			while (from > 0 && path[from] != t)
				from--;
			for (int k = from; k <= depth; k++) {
				strncat(buf, s->steps[path[k]].name, sizeof buf - strlen(buf) - 1);
				strncat(buf, " -> ", sizeof buf - strlen(buf) - 1);
			}
			strncat(buf, s->steps[t].name, sizeof buf - strlen(buf) - 1);
			spec_diag(L, L->wf, s->steps[t].line, s->steps[t].col,
			     "loop %s has no bound: set max_visits on one of its steps", buf);
			color[v] = 2;
			return true;
		}
		if (color[t] == 0 && find_loop(L, t, color, path, depth + 1)) {
			color[v] = 2;
			return true;
		}
	}
	color[v] = 2;
	return false;
}

static void check_graph(loader *L)
{
	rein_spec *s = L->spec;
	size_t n = s->nsteps;
	int *scope = rein_malloc(n * sizeof *scope), *color = rein_calloc(n, sizeof *color),
	    *path = rein_malloc((n + 1) * sizeof *path);
	if (scope == NULL || color == NULL || path == NULL) {
		L->nomem = true;
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		scope[i] = -1;
	int nscopes = 0;
	if (s->start >= 0)
		assign_scope(L, scope, s->start, 0, &nscopes);
	for (size_t i = 0; i < n; i++) {
		rein_step *st = &s->steps[i];
		if (st->kind == 0)
			continue; /* already reported */
		if (scope[i] == -1) {
			spec_diag(L, L->wf, st->line, st->col, "step '%s' is unreachable from '%s'", st->name,
			     s->start >= 0 ? s->steps[s->start].name : "?");
		} else if (scope[i] == 0 && st->kind != REIN_STEP_END && st->nnext == 0) {
			spec_diag(L, L->wf, st->line, st->col,
			     "step '%s' has no next (add next, or end the run with an end step)",
			     st->name);
		} else if (scope[i] > 0 && st->kind == REIN_STEP_END) {
			spec_diag(L, L->wf, st->line, st->col,
			     "end step '%s' cannot be inside a parallel branch", st->name);
		}
	}
	for (size_t i = 0; i < n; i++)
		if (color[i] == 0 && s->steps[i].max_visits == 0)
			find_loop(L, (int)i, color, path, 0);
out:
	rein_free(scope);
	rein_free(color);
	rein_free(path);
}

/* ---- top level --------------------------------------------------------- */

static void load_budgets(loader *L, const ynode *n)
{
	static const char *const keys[] = {"max_steps",      "timeout_s",      "max_tokens",
					   "max_cost_usd",   "max_model_calls", "max_tool_calls",
					   NULL};
	if (!spec_want_type(L, n, YNODE_MAP, "budgets"))
		return;
	spec_check_keys(L, n, "budgets", keys);
	const ynode *v;
	int64_t x;
	if ((v = ynode_get(n, "max_tokens")) && spec_want_int(L, v, "max_tokens", 1, &x))
		L->spec->max_tokens = x;
	if ((v = ynode_get(n, "max_model_calls")) && spec_want_int(L, v, "max_model_calls", 1, &x))
		L->spec->max_model_calls = x;
	if ((v = ynode_get(n, "max_tool_calls")) && spec_want_int(L, v, "max_tool_calls", 1, &x))
		L->spec->max_tool_calls = x;
	if ((v = ynode_get(n, "max_cost_usd"))) {
		json_t *j = v->type == YNODE_SCALAR ? ynode_scalar_json(v) : NULL;
		if (json_is_number(j) && json_number_value(j) > 0)
			L->spec->max_cost_usd = json_number_value(j);
		else
			DIAG(L, v, "max_cost_usd must be a number > 0");
		json_decref(j);
	}
	if ((v = ynode_get(n, "max_steps")) && spec_want_int(L, v, "max_steps", 1, &x))
		L->spec->max_steps = x;
	if ((v = ynode_get(n, "timeout_s")) && spec_want_int(L, v, "timeout_s", 1, &x))
		L->spec->timeout_ms = x * 1000;
}

static void compile(loader *L, const ynode *root)
{
	rein_spec *s = L->spec;
	static const char *const top[] = {"rein",   "name",    "description", "input",
					  "output", "budgets", "limits",      "mcp_servers",
					  "tools",  "models",  "trace",       "start",
					  "steps",  "shadow",  "policies", "alerts", NULL};
	if (root == NULL) {
		spec_diag(L, L->wf, 1, 1, "the workflow file is empty");
		return;
	}
	if (!spec_want_type(L, root, YNODE_MAP, "the workflow"))
		return;
	spec_check_keys(L, root, "the workflow", top);
	const ynode *v = ynode_get(root, "rein");
	if (v == NULL)
		spec_diag(L, L->wf, root->line, root->col, "missing key 'rein' (the format version, 1)");
	else if (v->type != YNODE_SCALAR || strcmp(v->str, "1") != 0)
		DIAG(L, v, "unsupported format version (rein: 1 is the only one)");
	v = ynode_get(root, "name");
	if (v == NULL)
		spec_diag(L, L->wf, root->line, root->col, "missing key 'name'");
	else if (v->type != YNODE_SCALAR || v->len == 0)
		DIAG(L, v, "name must be a non-empty string");
	else if ((s->name = rein_strdup(v->str)) == NULL)
		L->nomem = true;
	if ((v = ynode_get(root, "description")) && v->type == YNODE_SCALAR)
		s->description = rein_strdup(v->str);
	if ((v = ynode_get(root, "shadow"))) {
		if (v->type == YNODE_SCALAR && strcmp(v->str, "true") == 0)
			s->shadow = true;
		else if (v->type != YNODE_SCALAR || strcmp(v->str, "false") != 0)
			DIAG(L, v, "shadow must be true or false");
	}
	if ((v = ynode_get(root, "alerts"))) { /* the high-risk alert's webhook */
		static const char *const akeys[] = {"webhook", NULL};
		const ynode *w = NULL;
		if (spec_want_type(L, v, YNODE_MAP, "alerts")) {
			spec_check_keys(L, v, "alerts", akeys);
			w = ynode_get(v, "webhook");
		}
		if (w && (w->type != YNODE_SCALAR || (strncmp(w->str, "http://", 7) != 0 &&
						      strncmp(w->str, "https://", 8) != 0)))
			DIAG(L, w, "alerts.webhook must be an http:// or https:// URL");
		else if (w && (s->alert_webhook = rein_strdup(w->str)) == NULL)
			L->nomem = true;
	}
	s->max_steps = DEFAULT_MAX_STEPS;
	if ((v = ynode_get(root, "budgets")))
		load_budgets(L, v);
	if ((v = ynode_get(root, "limits")))
		load_limits(L, v, &s->limits, "limits");
	if ((v = ynode_get(root, "input")))
		s->input_schema = spec_load_schema(L, v, "input", NULL);
	if ((v = ynode_get(root, "output")))
		s->output_schema = spec_load_schema(L, v, "output", NULL);

	if ((v = ynode_get(root, "mcp_servers")))
		spec_load_servers(L, v);
	if ((v = ynode_get(root, "tools")))
		spec_load_tools(L, v);
	L->cur = L->wf;
	if ((v = ynode_get(root, "policies")))
		spec_load_policies(L, v);
	if ((v = ynode_get(root, "models")))
		spec_load_models(L, v);
	if ((v = ynode_get(root, "trace")))
		spec_load_trace(L, v);

	const ynode *steps = ynode_get(root, "steps");
	if (steps == NULL) {
		spec_diag(L, L->wf, root->line, root->col, "missing key 'steps'");
		return;
	}
	if (!spec_want_type(L, steps, YNODE_MAP, "steps"))
		return;
	if (steps->n == 0) {
		DIAG(L, steps, "steps must not be empty");
		return;
	}
	s->nsteps = steps->n / 2;
	if ((s->steps = rein_calloc(s->nsteps, sizeof *s->steps)) == NULL) {
		L->nomem = true;
		return;
	}
	for (size_t i = 0; i < s->nsteps; i++) {
		const ynode *k = steps->kids[2 * i];
		rein_step *st = &s->steps[i];
		st->on_fail = -1;
		st->line = k->line;
		st->col = k->col;
		if ((st->name = rein_strdup(k->type == YNODE_SCALAR ? k->str : "?")) == NULL) {
			L->nomem = true;
			return;
		}
	}
	s->start = 0;
	if ((v = ynode_get(root, "start")))
		s->start = spec_step_ref(L, v, "start");
	for (size_t i = 0; i < s->nsteps; i++)
		load_step(L, i, steps->kids[2 * i], steps->kids[2 * i + 1]);
	check_graph(L);
}

void rein_spec_free(rein_spec *s)
{
	if (s == NULL)
		return;
	rein_policy_free(s->policies);
	json_decref(s->const_label);
	json_decref(s->no_requester);
	for (size_t i = 0; i < s->nsteps; i++) {
		rein_step *st = &s->steps[i];
		rein_free(st->name);
		for (size_t j = 0; j < st->nnext; j++)
			rein_free(st->next[j].when);
		rein_free(st->next);
		switch (st->kind) {
		case REIN_STEP_CODE:
			rein_free(st->u.code.src);
			rein_free(st->u.code.origin);
			rein_free(st->u.code.reads);
			rein_schema_free(st->u.code.out_schema);
			break;
		case REIN_STEP_WAIT:
			json_decref(st->u.wait.seconds);
			rein_free(st->u.wait.signal);
			rein_schema_free(st->u.wait.schema);
			break;
		case REIN_STEP_PARALLEL:
			rein_free(st->u.parallel.branches);
			break;
		case REIN_STEP_END:
			json_decref(st->u.end.reason);
			json_decref(st->u.end.output);
			break;
		case REIN_STEP_TOOL:
			json_decref(st->u.tool.args);
			rein_schema_free(st->u.tool.out_schema);
			break;
		case REIN_STEP_VERIFY:
			for (size_t j = 0; j < st->u.verify.nrules; j++) {
				rein_free(st->u.verify.rules[j].id);
				rein_free(st->u.verify.rules[j].check);
				rein_free(st->u.verify.rules[j].message);
			}
			rein_free(st->u.verify.rules);
			break;
		case REIN_STEP_LLM:
		case REIN_STEP_AGENT:
			break; /* spec_models_free */
		}
	}
	spec_tools_free(s);
	spec_models_free(s);
	rein_free(s->steps);
	rein_free(s->name);
	rein_free(s->alert_webhook);
	rein_free(s->description);
	rein_free(s->path);
	json_decref(s->bundle);
	rein_schema_free(s->input_schema);
	rein_schema_free(s->output_schema);
	rein_free(s);
}

int rein_spec_tool(const rein_spec *s, const char *name)
{
	for (size_t i = 0; i < s->ntools; i++)
		if (s->tools[i].name && strcmp(s->tools[i].name, name) == 0)
			return (int)i;
	return -1;
}

int rein_spec_step(const rein_spec *s, const char *name)
{
	for (size_t i = 0; i < s->nsteps; i++)
		if (s->steps[i].name && strcmp(s->steps[i].name, name) == 0)
			return (int)i;
	return -1;
}

static int load(const char *dir, const json_t *bundle, const char *path, rein_script *sb,
		rein_spec **out, rein_err *err)
{
	int rc = REIN_OK;
	ynode *root = NULL;
	rein_diags diags = {0};
	loader L = {.dir = dir, .path = path, .sb = sb, .d = &diags};
	L.spec = rein_calloc(1, sizeof *L.spec);
	L.wf = rein_sprintf("%s/workflow.yaml", path);
	L.cur = L.wf;
	L.files = bundle ? json_deep_copy(json_object_get(bundle, "files")) : json_object();
	if (L.spec == NULL || L.wf == NULL || L.files == NULL || !json_is_object(L.files) ||
	    (L.spec->path = rein_strdup(path)) == NULL) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory loading %s", path);
		goto out;
	}
	L.spec->start = -1;
	static const ynode top = {.line = 1, .col = 1};
	const char *text = spec_read_rel(&L, &top, "workflow.yaml");
	if (text == NULL)
		goto check;
	rein_err ye = {0};
	if (ynode_parse(text, strlen(text), &root, &ye) != REIN_OK) {
		int line = 1, col = 1;
		const char *msg = ye.msg;
		if (sscanf(ye.msg, "%d:%d: ", &line, &col) == 2)
			msg = strstr(strchr(ye.msg, ':') + 1, ": ") + 2;
		spec_diag(&L, L.wf, line, col, "%s", msg);
		goto check;
	}
	compile(&L, root);
check:
	if (L.nomem) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory loading %s", path);
		goto out;
	}
	if (diags.n > 0) {
		/* the message alone (a caller that drops the list) still says what is wrong */
		const rein_diag *d0 = &diags.v[0];
		char more[48] = "";
		if (diags.n > 1)
			snprintf(more, sizeof more, " (and %zu more problem%s)", diags.n - 1,
				 diags.n > 2 ? "s" : "");
		rc = rein_err_set_diags(err, &diags, REIN_ESPEC, "%s:%d:%d: %s%s", d0->file, d0->line,
					d0->col, d0->msg, more);
		goto out;
	}
	if ((L.spec->bundle = json_pack("{s:O}", "files", L.files)) == NULL ||
	    spec_code_reads(L.spec) != REIN_OK) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	char *canon = rein_json_dump(L.spec->bundle);
	if (canon == NULL) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	uint8_t h[REIN_HASH_LEN];
	rein_sha256(canon, strlen(canon), h);
	rein_free(canon);
	rein_hex(h, sizeof h, L.spec->version);
	*out = L.spec;
	L.spec = NULL;
out:
	rein_diags_free(&diags);
	ynode_free(root);
	rein_spec_free(L.spec);
	json_decref(L.files);
	rein_free(L.wf);
	return rc;
}

int rein_spec_load_dir(const char *dir, rein_script *sandbox, rein_spec **out, rein_err *err)
{
	return load(dir, NULL, dir, sandbox, out, err);
}

int rein_spec_load_bundle(const json_t *bundle, const char *path, rein_script *sandbox,
			  rein_spec **out, rein_err *err)
{
	return load(NULL, bundle, path, sandbox, out, err);
}
