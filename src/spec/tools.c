/*
 * Tool contracts and MCP servers in a spec, and `tool` steps.
 *
 *   mcp_servers:
 *     files: { command: [node, server.js, /tmp/x], env: { K: V }, timeout_s: 30 }
 *     remote: { url: "http://127.0.0.1:3001/mcp" }
 *   tools:
 *     refund: tools/refund.yaml                      # a contract file
 *     echo: { mcp: files, tool: echo, effect: read } # an MCP tool with local policy
 *
 * A contract (inline or in its own file) is documented in docs/tools.md.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "spec_int.h"

static const char *const contract_keys[] = {
	"description", "kind", "effect", "risk", "idempotency", "timeout_s", "max_response_kb",
	"retry", "breaker", "fallback", "input", "output", "http", "secrets", "mcp", "tool",
	"shadow", "trust", "readers", "provenance", "approval", NULL};

static char *dup_or_oom(loader *L, const char *s)
{
	char *d = rein_strdup(s);
	if (d == NULL)
		L->nomem = true;
	return d;
}

static bool scalar(loader *L, const ynode *n, const char *what)
{
	if (n->type == YNODE_SCALAR)
		return true;
	DIAG(L, n, "%s must be a scalar", what);
	return false;
}

/* trust, readers, provenance (docs/policy.md, "Provenance"). */
static void load_provenance(loader *L, rein_tool *t, const ynode *n)
{
	const ynode *v;
	if ((v = ynode_get(n, "trust")) && scalar(L, v, "trust")) {
		if (strcmp(v->str, "trusted") == 0)
			t->trusted = true;
		else if (strcmp(v->str, "untrusted") != 0)
			DIAG(L, v, "trust must be trusted or untrusted");
	}
	if ((v = ynode_get(n, "provenance")) && scalar(L, v, "provenance")) {
		if (strcmp(v->str, "retrieval") == 0)
			t->retrieval = true;
		else
			DIAG(L, v, "provenance must be retrieval");
	}
	if ((v = ynode_get(n, "readers")) == NULL)
		return;
	if (v->type != YNODE_SEQ) {
		DIAG(L, v, "readers must be a list (public, tenant:T, role:R)");
		return;
	}
	if ((t->readers = json_array()) == NULL) {
		L->nomem = true;
		return;
	}
	for (size_t i = 0; i < v->n; i++) {
		const ynode *x = v->kids[i];
		if (!scalar(L, x, "a reader"))
			continue;
		bool ok = strcmp(x->str, "public") == 0 ||
			  (strncmp(x->str, "tenant:", 7) == 0 && x->str[7]) ||
			  (strncmp(x->str, "role:", 5) == 0 && x->str[5]);
		if (!ok)
			DIAG(L, x, "reader '%s' must be public, tenant:T or role:R", x->str);
		else if (json_array_append_new(t->readers, json_string(x->str)) != 0)
			L->nomem = true;
	}
}

static void load_retry(loader *L, rein_tool *t, const ynode *n)
{
	static const char *const keys[] = {"max_attempts", "base_ms", "max_delay_ms", "max_total_s",
					   NULL};
	if (!spec_want_type(L, n, YNODE_MAP, "retry"))
		return;
	spec_check_keys(L, n, "retry", keys);
	const ynode *v;
	int64_t x;
	if ((v = ynode_get(n, "max_attempts")) && spec_want_int(L, v, "max_attempts", 1, &x))
		t->retry.max_attempts = (int)(x > 100 ? 100 : x);
	if ((v = ynode_get(n, "base_ms")) && spec_want_int(L, v, "base_ms", 1, &x))
		t->retry.base_ms = x;
	if ((v = ynode_get(n, "max_delay_ms")) && spec_want_int(L, v, "max_delay_ms", 1, &x))
		t->retry.max_delay_ms = x;
	if ((v = ynode_get(n, "max_total_s")) && spec_want_int(L, v, "max_total_s", 1, &x))
		t->retry.max_total_ms = x * 1000;
}

void spec_load_breaker(loader *L, rein_breaker_policy *b, const ynode *n)
{
	static const char *const keys[] = {"failures", "window_s", "cooldown_s", NULL};
	if (!spec_want_type(L, n, YNODE_MAP, "breaker"))
		return;
	spec_check_keys(L, n, "breaker", keys);
	const ynode *v;
	int64_t x;
	if ((v = ynode_get(n, "failures")) && spec_want_int(L, v, "failures", 1, &x))
		b->failures = (int)x;
	if ((v = ynode_get(n, "window_s")) && spec_want_int(L, v, "window_s", 1, &x))
		b->window_ms = x * 1000;
	if ((v = ynode_get(n, "cooldown_s")) && spec_want_int(L, v, "cooldown_s", 1, &x))
		b->cooldown_ms = x * 1000;
}

static void load_http(loader *L, rein_tool *t, const ynode *n)
{
	static const char *const keys[] = {"method", "url", "headers", NULL};
	if (!spec_want_type(L, n, YNODE_MAP, "http"))
		return;
	spec_check_keys(L, n, "http", keys);
	const ynode *v;
	t->method = dup_or_oom(L, "POST");
	if ((v = ynode_get(n, "method")) && scalar(L, v, "method")) {
		static const char *const ok[] = {"GET", "POST", "PUT", "PATCH", "DELETE", NULL};
		bool good = false;
		for (const char *const *m = ok; *m; m++)
			good |= strcmp(*m, v->str) == 0;
		if (!good)
			DIAG(L, v, "method must be one of GET, POST, PUT, PATCH, DELETE");
		rein_free(t->method);
		t->method = dup_or_oom(L, v->str);
	}
	if ((v = ynode_get(n, "url")) == NULL)
		DIAG(L, n, "http needs 'url'");
	else if (scalar(L, v, "url")) {
		if (strncmp(v->str, "http://", 7) != 0 && strncmp(v->str, "https://", 8) != 0 &&
		    strncmp(v->str, "${", 2) != 0)
			DIAG(L, v, "url must start with http:// or https:// (or a ${env.X})");
		t->url = dup_or_oom(L, v->str);
	}
	if ((v = ynode_get(n, "headers")) && spec_want_type(L, v, YNODE_MAP, "headers")) {
		t->headers = rein_calloc(v->n / 2 + 1, sizeof *t->headers);
		if (t->headers == NULL) {
			L->nomem = true;
			return;
		}
		for (size_t i = 0; i + 1 < v->n; i += 2) {
			if (!scalar(L, v->kids[i + 1], "a header value"))
				continue;
			rein_kv *kv = &t->headers[t->nheaders++];
			kv->key = dup_or_oom(L, v->kids[i]->str);
			kv->value = dup_or_oom(L, v->kids[i + 1]->str);
		}
	}
}

/* Reads one source {env: X} | {file: F} of secret `name` into *src; false when
 * it is not one (reported). what names it in messages. */
static bool load_secret_src(loader *L, const ynode *v, const char *name, const char *what,
			    rein_secret_src *src)
{
	static const char *const keys[] = {"env", "file", NULL};
	if (!spec_want_type(L, v, YNODE_MAP, what))
		return false;
	spec_check_keys(L, v, what, keys);
	const ynode *env = ynode_get(v, "env"), *file = ynode_get(v, "file");
	if ((env == NULL) == (file == NULL)) {
		DIAG(L, v, "secret '%s' needs exactly one of 'env' or 'file'", name);
		return false;
	}
	if (env && scalar(L, env, "env"))
		src->env = dup_or_oom(L, env->str);
	if (file && scalar(L, file, "file"))
		src->file = dup_or_oom(L, file->str);
	return true;
}

/* A scoped secret: {tenants: {T: SRC, ...}, default: SRC?}. */
static void load_scoped_secret(loader *L, rein_secret_ref *r, const ynode *v)
{
	static const char *const keys[] = {"tenants", "default", NULL};
	spec_check_keys(L, v, "a secret with tenants", keys);
	r->scoped = true;
	const ynode *ts = ynode_get(v, "tenants"), *def = ynode_get(v, "default");
	if (spec_want_type(L, ts, YNODE_MAP, "tenants")) {
		if (ts->n == 0)
			DIAG(L, ts, "secret '%s' has no tenants", r->name);
		if ((r->tenants = rein_calloc(ts->n / 2 + 1, sizeof *r->tenants)) == NULL) {
			L->nomem = true;
			return;
		}
		for (size_t i = 0; i + 1 < ts->n; i += 2) {
			rein_secret_src src = {0};
			if (!load_secret_src(L, ts->kids[i + 1], r->name, "a tenant's secret", &src))
				continue;
			src.tenant = dup_or_oom(L, ts->kids[i]->str);
			r->tenants[r->ntenants++] = src;
		}
	}
	if (def) {
		rein_secret_src src = {0};
		if (load_secret_src(L, def, r->name, "a secret's default", &src)) {
			r->env = src.env;
			r->file = src.file;
		}
	}
}

static void load_secrets(loader *L, rein_tool *t, const ynode *n)
{
	if (!spec_want_type(L, n, YNODE_MAP, "secrets"))
		return;
	t->secrets = rein_calloc(n->n / 2 + 1, sizeof *t->secrets);
	if (t->secrets == NULL) {
		L->nomem = true;
		return;
	}
	for (size_t i = 0; i + 1 < n->n; i += 2) {
		const ynode *v = n->kids[i + 1];
		if (!spec_want_type(L, v, YNODE_MAP, "a secret"))
			continue;
		rein_secret_ref *r = &t->secrets[t->nsecrets];
		if (ynode_get(v, "tenants")) {
			r->name = dup_or_oom(L, n->kids[i]->str);
			t->nsecrets++;
			load_scoped_secret(L, r, v);
			continue;
		}
		rein_secret_src src = {0};
		if (!load_secret_src(L, v, n->kids[i]->str, "a secret", &src))
			continue;
		t->nsecrets++;
		r->name = dup_or_oom(L, n->kids[i]->str);
		r->env = src.env;
		r->file = src.file;
	}
}

bool rein_secret_pick(const rein_secret_ref *s, const char *tenant, rein_secret_src *src)
{
	assert(s != NULL && src != NULL);
	for (size_t i = 0; s->scoped && tenant && i < s->ntenants; i++)
		if (strcmp(s->tenants[i].tenant, tenant) == 0) {
			*src = s->tenants[i];
			return true;
		}
	if (s->env == NULL && s->file == NULL)
		return false;
	*src = (rein_secret_src){.env = s->env, .file = s->file};
	return true;
}

char *rein_tool_credential(const rein_tool *t, const char *tenant, bool *oom)
{
	assert(t != NULL && oom != NULL);
	rein_buf b = {0};
	int rc = REIN_OK;
	for (size_t i = 0; i < t->nsecrets && rc == REIN_OK; i++) {
		const rein_secret_ref *s = &t->secrets[i];
		rein_secret_src src = {0};
		bool found = rein_secret_pick(s, tenant, &src);
		const char *how = src.env ? "env " : "file ", *where = src.env ? src.env : src.file;
		if (!s->scoped)
			rc = rein_buf_printf(&b, "%s%s (%s%s)", i ? "; " : "", s->name, how, where);
		else if (found)
			rc = rein_buf_printf(&b, "%s%s (tenant %s, %s%s%s)", i ? "; " : "", s->name,
					     tenant ? tenant : "(none)", src.tenant ? "" : "default, ",
					     how, where);
		else
			rc = rein_buf_printf(&b, "%s%s (tenant %s: no entry and no default)",
					     i ? "; " : "", s->name, tenant ? tenant : "(none)");
	}
	*oom = rc != REIN_OK;
	if (rc != REIN_OK)
		rein_buf_free(&b);
	return b.p;
}

/* Checks every ${secret.X} in s names a declared secret. */
static void check_secret_refs(loader *L, rein_tool *t, const ynode *where, const char *s)
{
	for (const char *p = strstr(s, "${secret."); p; p = strstr(p + 1, "${secret.")) {
		const char *name = p + 9, *end = strchr(name, '}');
		if (end == NULL)
			break;
		bool found = false;
		for (size_t i = 0; i < t->nsecrets; i++)
			found |= strlen(t->secrets[i].name) == (size_t)(end - name) &&
				 strncmp(t->secrets[i].name, name, (size_t)(end - name)) == 0;
		if (!found)
			DIAG(L, where, "secret '%.*s' is not declared under secrets", (int)(end - name),
			     name);
	}
}

/* Fills t from a contract mapping (a file's root or an inline entry). */
static void load_contract(loader *L, rein_tool *t, const ynode *n)
{
	const ynode *v;
	int64_t x;
	spec_check_keys(L, n, "a tool contract", contract_keys);
	t->retry = (rein_retry_policy){3, 200, 10000, 60000};
	t->breaker = (rein_breaker_policy){5, 60000, 30000};
	t->timeout_ms = 30000;
	t->max_response_bytes = 1024 * 1024;
	t->server = -1;
	t->fallback_tool = -1;
	if ((v = ynode_get(n, "description")) && scalar(L, v, "description"))
		t->description = dup_or_oom(L, v->str);
	const ynode *http = ynode_get(n, "http"), *mcp = ynode_get(n, "mcp");
	if ((http != NULL) == (mcp != NULL)) {
		DIAG(L, n, "tool '%s' needs exactly one of 'http' or 'mcp'", t->name);
	} else if (http) {
		t->kind = REIN_TOOL_HTTP;
		load_http(L, t, http);
	} else if (scalar(L, mcp, "mcp")) {
		t->kind = REIN_TOOL_MCP;
		for (size_t i = 0; i < L->spec->nservers; i++)
			if (strcmp(L->spec->servers[i].name, mcp->str) == 0)
				t->server = (int)i;
		if (t->server < 0)
			DIAG(L, mcp, "mcp server '%s' is not declared under mcp_servers", mcp->str);
		v = ynode_get(n, "tool");
		t->mcp_tool = dup_or_oom(L, v && scalar(L, v, "tool") ? v->str : t->name);
	}
	if (http && ynode_get(n, "tool"))
		DIAG(L, ynode_get(n, "tool"), "'tool' names an MCP server's tool; an http tool has none");
	if ((v = ynode_get(n, "kind")) && scalar(L, v, "kind") &&
	    !((strcmp(v->str, "http") == 0 && http) || (strcmp(v->str, "mcp") == 0 && mcp)))
		DIAG(L, v, "kind '%s' does not match the tool's definition", v->str);
	if ((v = ynode_get(n, "effect")) == NULL)
		DIAG(L, n, "tool '%s' needs 'effect: read' or 'effect: write'", t->name);
	else if (scalar(L, v, "effect")) {
		if (strcmp(v->str, "write") == 0)
			t->write = true;
		else if (strcmp(v->str, "read") != 0)
			DIAG(L, v, "effect must be read or write");
	}
	t->risk = REIN_RISK_LOW; /* every tool: a write waits only when its risk says so */
	if ((v = ynode_get(n, "risk")) && scalar(L, v, "risk")) {
		if (strcmp(v->str, "low") == 0)
			t->risk = REIN_RISK_LOW;
		else if (strcmp(v->str, "medium") == 0)
			t->risk = REIN_RISK_MEDIUM;
		else if (strcmp(v->str, "high") == 0)
			t->risk = REIN_RISK_HIGH;
		else
			DIAG(L, v, "risk must be low, medium or high");
	}
	load_provenance(L, t, n);
	if ((v = ynode_get(n, "approval"))) {
		json_t *a = spec_to_json(L, v);
		rein_err ae = {0};
		int arc = a ? rein_policy_approval_norm(a, &t->approval, &ae) : REIN_OK;
		if (arc == REIN_ENOMEM)
			L->nomem = true;
		else if (arc != REIN_OK)
			DIAG(L, v, "tool '%s': %s", t->name, ae.msg);
		json_decref(a);
	}
	if ((v = ynode_get(n, "idempotency"))) {
		if (v->type == YNODE_SCALAR && strcmp(v->str, "none") == 0) {
			t->idem = REIN_IDEM_NONE;
		} else if (v->type == YNODE_SCALAR && strcmp(v->str, "header") == 0) {
			t->idem = REIN_IDEM_HEADER;
			t->idem_name = dup_or_oom(L, "Idempotency-Key");
		} else if (v->type == YNODE_MAP && v->n == 2 && ynode_get(v, "header") &&
			   scalar(L, ynode_get(v, "header"), "header")) {
			t->idem = REIN_IDEM_HEADER;
			t->idem_name = dup_or_oom(L, ynode_get(v, "header")->str);
		} else if (v->type == YNODE_MAP && v->n == 2 && ynode_get(v, "arg") &&
			   scalar(L, ynode_get(v, "arg"), "arg")) {
			t->idem = REIN_IDEM_ARG;
			t->idem_name = dup_or_oom(L, ynode_get(v, "arg")->str);
		} else {
			DIAG(L, v, "idempotency must be none, header, {header: NAME} or {arg: NAME}");
		}
		if (t->idem == REIN_IDEM_HEADER && mcp)
			DIAG(L, v, "an MCP tool takes its idempotency key as {arg: NAME}");
	}
	if ((v = ynode_get(n, "timeout_s")) && spec_want_int(L, v, "timeout_s", 1, &x))
		t->timeout_ms = x * 1000;
	if ((v = ynode_get(n, "max_response_kb")) && spec_want_int(L, v, "max_response_kb", 1, &x))
		t->max_response_bytes = (size_t)x * 1024;
	if ((v = ynode_get(n, "retry")))
		load_retry(L, t, v);
	if ((v = ynode_get(n, "breaker")))
		spec_load_breaker(L, &t->breaker, v);
	if ((v = ynode_get(n, "secrets")))
		load_secrets(L, t, v);
	if ((v = ynode_get(n, "input")))
		t->input = spec_load_schema(L, v, "tool input", &t->input_doc);
	else if (http)
		DIAG(L, n, "http tool '%s' needs an 'input' schema", t->name);
	if ((v = ynode_get(n, "output")))
		t->output = spec_load_schema(L, v, "tool output", &t->output_doc);
	if ((v = ynode_get(n, "shadow"))) { /* shadow mode's answer: checked now */
		rein_err se = {0};
		if (!t->write)
			DIAG(L, v, "tool '%s' is a read tool: shadow mode calls it, so it has no "
				   "shadow result", t->name);
		else if ((t->shadow = spec_to_json(L, v)) != NULL && t->output &&
			 rein_schema_check(t->output, t->shadow, &se,
					   "tool '%s': its shadow result does not match its output "
					   "schema", t->name) != REIN_OK)
			DIAG(L, v, "%s", se.msg);
		rein_err_clear(&se);
	}
	if (t->url)
		check_secret_refs(L, t, ynode_get(http, "url"), t->url);
	for (size_t i = 0; i < t->nheaders; i++)
		check_secret_refs(L, t, http, t->headers[i].value);
}

/* The fallback refers to other tools: resolved once all are known. */
static void load_fallback(loader *L, rein_tool *t, const ynode *n)
{
	if (n->type == YNODE_SCALAR && strcmp(n->str, "unavailable") == 0)
		t->fallback = REIN_FALLBACK_UNAVAILABLE;
	else if (n->type == YNODE_SCALAR && strcmp(n->str, "cached") == 0)
		t->fallback = REIN_FALLBACK_CACHED;
	else if (n->type == YNODE_MAP && n->n == 2 && ynode_get(n, "tool") &&
		 ynode_get(n, "tool")->type == YNODE_SCALAR) {
		const ynode *name = ynode_get(n, "tool");
		t->fallback = REIN_FALLBACK_TOOL;
		t->fallback_tool = rein_spec_tool(L->spec, name->str);
		if (t->fallback_tool < 0)
			DIAG(L, name, "fallback tool '%s' is not declared", name->str);
		else if (t->fallback_tool == (int)(t - L->spec->tools))
			DIAG(L, name, "a tool cannot be its own fallback");
	} else {
		DIAG(L, n, "fallback must be unavailable, cached or {tool: NAME}");
	}
}

void spec_load_servers(loader *L, const ynode *n)
{
	rein_spec *s = L->spec;
	if (!spec_want_type(L, n, YNODE_MAP, "mcp_servers"))
		return;
	if ((s->servers = rein_calloc(n->n / 2 + 1, sizeof *s->servers)) == NULL) {
		L->nomem = true;
		return;
	}
	static const char *const keys[] = {"command", "env", "url", "cwd", "timeout_s", NULL};
	for (size_t i = 0; i + 1 < n->n; i += 2) {
		const ynode *k = n->kids[i], *v = n->kids[i + 1];
		rein_mcp_server_spec *sv = &s->servers[s->nservers++];
		sv->name = dup_or_oom(L, k->str);
		sv->timeout_ms = 30000;
		if (!spec_want_type(L, v, YNODE_MAP, "an MCP server"))
			continue;
		spec_check_keys(L, v, "an MCP server", keys);
		const ynode *cmd = ynode_get(v, "command"), *url = ynode_get(v, "url"), *x;
		if ((cmd == NULL) == (url == NULL)) {
			DIAG(L, v, "MCP server '%s' needs exactly one of 'command' (stdio) or 'url' (HTTP)",
			     k->str);
			continue;
		}
		if (cmd) {
			if (cmd->type != YNODE_SEQ || cmd->n == 0) {
				DIAG(L, cmd, "command must be a non-empty list: [program, arg, ...]");
				continue;
			}
			if ((sv->argv = rein_calloc(cmd->n + 1, sizeof *sv->argv)) == NULL) {
				L->nomem = true;
				return;
			}
			for (size_t j = 0; j < cmd->n; j++)
				if (scalar(L, cmd->kids[j], "a command argument"))
					sv->argv[j] = dup_or_oom(L, cmd->kids[j]->str);
		} else if (scalar(L, url, "url")) {
			sv->url = dup_or_oom(L, url->str);
		}
		if ((x = ynode_get(v, "env")) && spec_want_type(L, x, YNODE_MAP, "env")) {
			if ((sv->env = rein_calloc(x->n / 2 + 1, sizeof *sv->env)) == NULL) {
				L->nomem = true;
				return;
			}
			for (size_t j = 0, m = 0; j + 1 < x->n; j += 2)
				if (scalar(L, x->kids[j + 1], "an env value") &&
				    (sv->env[m++] = rein_sprintf("%s=%s", x->kids[j]->str,
								 x->kids[j + 1]->str)) == NULL)
					L->nomem = true;
		}
		if ((x = ynode_get(v, "cwd")) && scalar(L, x, "cwd"))
			sv->cwd = dup_or_oom(L, x->str);
		int64_t t;
		if ((x = ynode_get(v, "timeout_s")) && spec_want_int(L, x, "timeout_s", 1, &t))
			sv->timeout_ms = t * 1000;
	}
}

/*
 * The text of the workflow's tools.lock (borrowed from the bundle's files,
 * where it is recorded), or NULL when there is none. A lock that cannot be
 * read is reported.
 */
static const char *lock_text(loader *L)
{
	json_t *have = json_object_get(L->files, "tools.lock");
	if (have || L->dir == NULL)
		return json_string_value(have);
	char *text = NULL;
	size_t len = 0;
	rein_err e = {0};
	const char *res = NULL;
	int rc = rein_file_read_within(L->dir, "tools.lock", &text, &len, &e);
	if (rc == REIN_ENOMEM) {
		L->nomem = true;
	} else if (rc == REIN_OK) {
		json_t *j = json_stringn(text, len);
		if (j == NULL)
			spec_diag(L, L->wf, 1, 1, "tools.lock is not valid UTF-8 text");
		else if (json_object_set_new(L->files, "tools.lock", j) != 0)
			L->nomem = true;
		else
			res = json_string_value(j);
	} else if (rc != REIN_ENOTFOUND) {
		spec_diag(L, L->wf, 1, 1, "cannot read tools.lock: %s", e.msg);
	}
	rein_err_clear(&e);
	rein_free(text);
	return res;
}

/*
 * An MCP tool whose contract declares no input takes the input schema that
 * `rein tools lock` recorded for it (server and tool name must match): the
 * arguments are checked against it before the call and it is the definition
 * the model is offered. The lock is part of the bundle, so of the version.
 */
static void load_locked_inputs(loader *L)
{
	rein_spec *s = L->spec;
	bool want = false;
	for (size_t i = 0; i < s->ntools; i++)
		want |= s->tools[i].kind == REIN_TOOL_MCP && s->tools[i].input == NULL &&
			s->tools[i].server >= 0;
	const char *text = want ? lock_text(L) : NULL;
	if (text == NULL)
		return;
	char where[600];
	snprintf(where, sizeof where, "%s/tools.lock", L->path);
	rein_err e = {0};
	json_t *lock = rein_json_parse(text, strlen(text), &e);
	if (lock == NULL) {
		spec_diag(L, where, 1, 1, "tools.lock is not JSON (%s); run 'rein tools lock' again",
			  e.msg);
		return;
	}
	for (size_t i = 0; i < s->ntools; i++) {
		rein_tool *t = &s->tools[i];
		if (t->kind != REIN_TOOL_MCP || t->input != NULL || t->server < 0)
			continue;
		const json_t *entry = json_object_get(json_object_get(lock, "tools"), t->name);
		const char *sv = json_string_value(json_object_get(entry, "server"));
		const char *tn = json_string_value(json_object_get(entry, "tool"));
		json_t *schema = json_object_get(json_object_get(entry, "input"), "schema");
		if (sv == NULL || tn == NULL || strcmp(sv, s->servers[t->server].name) != 0 ||
		    strcmp(tn, t->mcp_tool) != 0 || !json_is_object(schema))
			continue; /* not locked, or locked for another tool: `tools check` says so */
		char name[700];
		snprintf(name, sizeof name, "%s#/tools/%s/input/schema", where, t->name);
		rein_schema_opts o = {.name = name};
		rein_err ce = {0};
		if (rein_schema_compile(schema, &o, &t->input, &ce) != REIN_OK) {
			if (ce.code == REIN_ENOMEM)
				L->nomem = true;
			else
				spec_diag(L, where, 1, 1, "the locked input schema of tool '%s' is invalid: %s",
					  t->name, ce.msg);
			rein_err_clear(&ce);
			continue;
		}
		t->input_doc = json_incref(schema);
		t->input_locked = true;
	}
	json_decref(lock);
}

void spec_load_tools(loader *L, const ynode *n)
{
	rein_spec *s = L->spec;
	if (!spec_want_type(L, n, YNODE_MAP, "tools"))
		return;
	size_t count = n->n / 2;
	if ((s->tools = rein_calloc(count + 1, sizeof *s->tools)) == NULL) {
		L->nomem = true;
		return;
	}
	/* contract files are parsed here and kept until the fallbacks resolve */
	ynode **roots = rein_calloc(count + 1, sizeof *roots);
	char **files = rein_calloc(count + 1, sizeof *files);
	if (roots == NULL || files == NULL) {
		L->nomem = true;
		goto out;
	}
	s->ntools = count;
	for (size_t i = 0; i < count; i++) {
		const ynode *k = n->kids[2 * i];
		s->tools[i].name = dup_or_oom(L, k->str);
		s->tools[i].server = -1;
		s->tools[i].fallback_tool = -1;
	}
	for (size_t i = 0; i < count; i++) {
		const ynode *v = n->kids[2 * i + 1];
		rein_tool *t = &s->tools[i];
		const ynode *body = v;
		L->cur = L->wf;
		if (v->type == YNODE_SCALAR) { /* a contract file */
			const char *text = spec_read_rel(L, v, v->str);
			if (text == NULL)
				continue;
			files[i] = rein_sprintf("%s/%s", L->path, v->str);
			rein_err ye = {0};
			if (files[i] == NULL) {
				L->nomem = true;
				continue;
			}
			if (ynode_parse(text, strlen(text), &roots[i], &ye) != REIN_OK) {
				int line = 1, col = 1;
				const char *msg = ye.msg;
				if (sscanf(ye.msg, "%d:%d: ", &line, &col) == 2)
					msg = strstr(strchr(ye.msg, ':') + 1, ": ") + 2;
				spec_diag(L, files[i], line, col, "%s", msg);
				continue;
			}
			if (roots[i] == NULL || roots[i]->type != YNODE_MAP) {
				spec_diag(L, files[i], 1, 1, "a tool contract must be a mapping");
				continue;
			}
			body = roots[i];
			L->cur = files[i];
		} else if (!spec_want_type(L, v, YNODE_MAP, "a tool")) {
			continue;
		}
		t->origin = dup_or_oom(L, L->cur);
		load_contract(L, t, body);
	}
	for (size_t i = 0; i < count; i++) {
		const ynode *v = n->kids[2 * i + 1];
		const ynode *body = v->type == YNODE_SCALAR ? roots[i] : v;
		const ynode *fb = body ? ynode_get(body, "fallback") : NULL;
		L->cur = files[i] ? files[i] : L->wf;
		if (fb)
			load_fallback(L, &s->tools[i], fb);
	}
	load_locked_inputs(L);
out:
	L->cur = L->wf;
	for (size_t i = 0; i < count; i++) {
		ynode_free(roots ? roots[i] : NULL);
		rein_free(files ? files[i] : NULL);
	}
	rein_free(roots);
	rein_free(files);
}

void spec_load_tool_step(loader *L, rein_step *st, const ynode *kind, const ynode *val)
{
	st->u.tool.tool = -1;
	if (!scalar(L, kind, "tool"))
		return;
	st->u.tool.tool = rein_spec_tool(L->spec, kind->str);
	if (st->u.tool.tool < 0)
		DIAG(L, kind, "tool '%s' is not declared under tools", kind->str);
	const ynode *args = ynode_get(val, "args");
	if (args == NULL) {
		st->u.tool.args = json_object();
		if (st->u.tool.args == NULL)
			L->nomem = true;
		return;
	}
	if (!spec_want_type(L, args, YNODE_MAP, "args"))
		return;
	spec_check_templates(L, args);
	st->u.tool.args = spec_to_json(L, args);
}

static void free_strv(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		rein_free(v[i]);
	rein_free(v);
}

void spec_tools_free(rein_spec *s)
{
	for (size_t i = 0; i < s->ntools; i++) {
		rein_tool *t = &s->tools[i];
		rein_free(t->name);
		rein_free(t->description);
		rein_free(t->origin);
		rein_free(t->idem_name);
		rein_schema_free(t->input);
		rein_schema_free(t->output);
		json_decref(t->input_doc);
		json_decref(t->output_doc);
		json_decref(t->shadow);
		json_decref(t->readers);
		json_decref(t->approval);
		rein_free(t->method);
		rein_free(t->url);
		for (size_t j = 0; j < t->nheaders; j++) {
			rein_free(t->headers[j].key);
			rein_free(t->headers[j].value);
		}
		rein_free(t->headers);
		for (size_t j = 0; j < t->nsecrets; j++) {
			rein_free(t->secrets[j].name);
			rein_free(t->secrets[j].env);
			rein_free(t->secrets[j].file);
			for (size_t k = 0; k < t->secrets[j].ntenants; k++) {
				rein_free(t->secrets[j].tenants[k].tenant);
				rein_free(t->secrets[j].tenants[k].env);
				rein_free(t->secrets[j].tenants[k].file);
			}
			rein_free(t->secrets[j].tenants);
		}
		rein_free(t->secrets);
		rein_free(t->mcp_tool);
	}
	rein_free(s->tools);
	for (size_t i = 0; i < s->nservers; i++) {
		rein_mcp_server_spec *sv = &s->servers[i];
		rein_free(sv->name);
		free_strv(sv->argv);
		free_strv(sv->env);
		rein_free(sv->url);
		rein_free(sv->cwd);
	}
	rein_free(s->servers);
}
