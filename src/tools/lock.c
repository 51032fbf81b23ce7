/*
 * tools.lock: the schemas every tool of a workflow had when someone looked,
 * so a CI job can notice a server that changed under it. `rein tools lock`
 * records them; `rein tools check` fetches them again and names every tool
 * whose contract changed in a way that breaks callers (a new required
 * argument, an argument no longer accepted, a result field no longer
 * guaranteed, a changed type).
 */
#include <stdio.h>
#include <string.h>

#include "mcp.h"
#include "tools.h"

static json_t *hashed(json_t *schema)
{
	char hex[2 * REIN_HASH_LEN + 1] = "";
	if (schema) {
		char *canon = rein_json_dump(schema);
		uint8_t h[REIN_HASH_LEN];
		if (canon) {
			rein_sha256(canon, strlen(canon), h);
			rein_hex(h, REIN_HASH_LEN, hex);
		}
		rein_free(canon);
	}
	return json_pack("{s:O?, s:s?}", "schema", schema, "sha256", schema ? hex : NULL);
}

/* tools/list of one server (blocking). */
static int list_server(rein_io *io, const rein_mcp_server_spec *sv, json_t **tools, char **proto,
		       rein_err *err)
{
	char *argv[64] = {0}, *env[64] = {0}, *url = NULL;
	for (size_t i = 0; sv->argv && sv->argv[i] && i < 63; i++)
		argv[i] = rein_expand_env(sv->argv[i]);
	for (size_t i = 0; sv->env && sv->env[i] && i < 63; i++)
		env[i] = rein_expand_env(sv->env[i]);
	if (sv->url)
		url = rein_expand_env(sv->url);
	char *cwd = sv->cwd ? rein_expand_env(sv->cwd) : NULL;
	rein_mcp_config cfg = {.name = sv->name,
			       .argv = sv->argv ? (const char *const *)argv : NULL,
			       .env = (const char *const *)env,
			       .url = url,
			       .cwd = cwd,
			       .request_timeout_ms = sv->timeout_ms};
	int rc = rein_mcp_list_tools_sync(io, &cfg, tools, proto, err);
	for (size_t i = 0; i < 64; i++) {
		rein_free(argv[i]);
		rein_free(env[i]);
	}
	rein_free(url);
	rein_free(cwd);
	return rc;
}

int rein_tools_lock(rein_io *io, const rein_spec *spec, json_t **out, rein_err *err)
{
	int rc = REIN_OK;
	json_t *lock = json_pack("{s:i, s:s, s:{}}", "lock", 1, "workflow", spec->name, "tools");
	json_t **listed = rein_calloc(spec->nservers + 1, sizeof *listed);
	if (lock == NULL || listed == NULL) {
		rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
		goto out;
	}
	json_t *tools = json_object_get(lock, "tools");
	for (size_t i = 0; i < spec->ntools; i++) {
		const rein_tool *t = &spec->tools[i];
		/* a locked input is what the lock said, not the contract: ask again */
		json_t *in = t->input_locked ? NULL : t->input_doc, *outs = t->output_doc, *entry;
		if (t->kind == REIN_TOOL_MCP) {
			const rein_mcp_server_spec *sv = &spec->servers[t->server];
			if (listed[t->server] == NULL) {
				char *proto = NULL;
				if ((rc = list_server(io, sv, &listed[t->server], &proto, err)) != REIN_OK) {
					rein_err e2 = {0};
					rein_err_set(&e2, rc, "MCP server '%s': %s", sv->name, err->msg);
					rein_err_clear(err); /* re-worded: the server's name first */
					rein_err_set(err, e2.code, "%s", e2.msg);
					goto out;
				}
				rein_free(proto);
			}
			json_t *found = NULL, *x;
			size_t k;
			json_t *arr = json_is_array(listed[t->server])
					      ? listed[t->server]
					      : json_object_get(listed[t->server], "tools");
			json_array_foreach(arr, k, x)
				if (json_is_string(json_object_get(x, "name")) && strcmp(json_string_value(json_object_get(x, "name")), t->mcp_tool) == 0)
					found = x;
			if (found == NULL) {
				rc = rein_err_set(err, REIN_ENOTFOUND, "MCP server '%s' has no tool '%s' (for '%s')",
						  sv->name, t->mcp_tool, t->name);
				goto out;
			}
			if (in == NULL)
				in = json_object_get(found, "inputSchema");
			if (outs == NULL)
				outs = json_object_get(found, "outputSchema");
			entry = json_pack("{s:s, s:s, s:s, s:o, s:o}", "kind", "mcp", "server", sv->name, "tool",
					  t->mcp_tool, "input", hashed(in), "output", hashed(outs));
		} else {
			entry = json_pack("{s:s, s:s?, s:o, s:o}", "kind", "http", "url", t->url, "input",
					  hashed(in), "output", hashed(outs));
		}
		if (entry == NULL || json_object_set_new(tools, t->name, entry) != 0) {
			rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
			goto out;
		}
	}
	*out = lock;
	lock = NULL;
out:
	for (size_t i = 0; listed && i < spec->nservers; i++)
		json_decref(listed[i]);
	rein_free(listed);
	json_decref(lock);
	return rc;
}

static void note(json_t *report, const char *tool, bool breaking, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void note(json_t *report, const char *tool, bool breaking, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	json_array_append_new(report,
			      json_pack("{s:s, s:b, s:s}", "tool", tool, "breaking", breaking, "change", msg));
}

static const char *type_text(const json_t *schema, char *buf, size_t n)
{
	const json_t *t = json_object_get(schema, "type");
	if (t == NULL)
		return "any";
	char *s = rein_json_dump(t);
	snprintf(buf, n, "%s", s ? s : "?");
	rein_free(s); /* jansson allocates through rein_malloc (mem.c) */
	return buf;
}

static bool in_array(const json_t *arr, const char *s)
{
	size_t i;
	json_t *x;
	json_array_foreach(arr, i, x)
		if (json_is_string(x) && strcmp(json_string_value(x), s) == 0)
			return true;
	return false;
}

/* What changed between two schemas, from the point of view of a caller. */
static void diff_schema(json_t *report, const char *tool, const char *side, const json_t *old,
			const json_t *cur)
{
	char a[64], b[64];
	if (old == NULL && cur == NULL)
		return;
	if (old == NULL) {
		note(report, tool, strcmp(side, "input") == 0, "%s schema added", side);
		return;
	}
	if (cur == NULL) {
		note(report, tool, false, "%s schema removed", side);
		return;
	}
	bool input = strcmp(side, "input") == 0;
	if (strcmp(type_text(old, a, sizeof a), type_text(cur, b, sizeof b)) != 0)
		note(report, tool, true, "%s type changed from %s to %s", side, a, b);
	const json_t *oreq = json_object_get(old, "required"), *creq = json_object_get(cur, "required");
	const json_t *oprops = json_object_get(old, "properties"), *cprops = json_object_get(cur, "properties");
	size_t i;
	json_t *x;
	const char *k;
	if (input) {
		json_array_foreach(creq, i, x)
			if (json_is_string(x) && !in_array(oreq, json_string_value(x)))
				note(report, tool, true, "now requires argument '%s'", json_string_value(x));
		bool closed = json_is_false(json_object_get(cur, "additionalProperties"));
		json_object_foreach((json_t *)oprops, k, x)
			if (json_object_get(cprops, k) == NULL && closed)
				note(report, tool, true, "no longer accepts argument '%s'", k);
	} else {
		json_array_foreach(oreq, i, x)
			if (json_is_string(x) && !in_array(creq, json_string_value(x)))
				note(report, tool, true, "no longer guarantees result field '%s'", json_string_value(x));
		json_object_foreach((json_t *)oprops, k, x)
			if (json_object_get(cprops, k) == NULL)
				note(report, tool, true, "result field '%s' removed", k);
	}
	json_object_foreach((json_t *)oprops, k, x)
	{
		const json_t *y = json_object_get(cprops, k);
		if (y && strcmp(type_text(x, a, sizeof a), type_text(y, b, sizeof b)) != 0)
			note(report, tool, true, "%s '%s' changed type from %s to %s",
			     input ? "argument" : "result field", k, a, b);
	}
}

int rein_tools_lock_diff(const json_t *old, const json_t *cur, json_t **report_out)
{
	json_t *report = json_array();
	int breaking = 0;
	const char *name;
	json_t *o;
	json_object_foreach(json_object_get(old, "tools"), name, o)
	{
		const json_t *c = json_object_get(json_object_get(cur, "tools"), name);
		if (c == NULL) {
			note(report, name, true, "tool removed from the workflow or the server");
			continue;
		}
		for (int side = 0; side < 2; side++) {
			const char *sname = side ? "output" : "input";
			const json_t *os = json_object_get(o, sname), *cs = json_object_get(c, sname);
			const char *oh = json_string_value(json_object_get(os, "sha256"));
			const char *ch = json_string_value(json_object_get(cs, "sha256"));
			if ((oh == NULL) == (ch == NULL) && (oh == NULL || strcmp(oh, ch) == 0))
				continue;
			size_t before = json_array_size(report);
			diff_schema(report, name, sname, json_object_get(os, "schema"),
				    json_object_get(cs, "schema"));
			if (json_array_size(report) == before)
				note(report, name, false, "%s schema changed (compatible)", sname);
		}
	}
	json_object_foreach(json_object_get(cur, "tools"), name, o)
		if (json_object_get(json_object_get(old, "tools"), name) == NULL)
			note(report, name, false, "new tool (not in the lock)");
	size_t i;
	json_array_foreach(report, i, o)
		breaking += json_is_true(json_object_get(o, "breaking"));
	*report_out = report;
	return breaking;
}
