/*
 * `policies:` in a workflow and organisation policy files: YAML rules into
 * JSON, compiled and checked by the policy layer, each problem located at its
 * rule (FILE:LINE:COL). A workflow's rules are also checked against the tools
 * they target (a condition over an argument the tool does not have).
 */
#include <string.h>

#include "spec_int.h"

/* The tools of s as the policy layer sees them; caller frees. */
static rein_policy_tool *policy_tools(const rein_spec *s)
{
	rein_policy_tool *t = rein_calloc(s->ntools ? s->ntools : 1, sizeof *t);
	for (size_t i = 0; t && i < s->ntools; i++)
		t[i] = (rein_policy_tool){.name = s->tools[i].name,
					  .write = s->tools[i].write,
					  .risk = (int)s->tools[i].risk,
					  .input_doc = s->tools[i].input_doc};
	return t;
}

void spec_load_policies(loader *L, const ynode *n)
{
	rein_spec *s = L->spec;
	s->has_policies = true;
	if (!spec_want_type(L, n, YNODE_SEQ, "policies"))
		return;
	json_t *rules = spec_to_json(L, n);
	if (rules == NULL)
		return;
	rein_err e = {0};
	int bad = -1;
	rein_policy_tool *tools = NULL;
	int rc = rein_policy_compile(rules, "workflow", L->sb, &s->policies, &bad, &e);
	if (rc == REIN_OK && (tools = policy_tools(s)) == NULL)
		rc = rein_err_set(&e, REIN_ENOMEM, "out of memory");
	if (rc == REIN_OK)
		rc = rein_policy_check_tools(s->policies, tools, s->ntools, &bad, &e);
	rein_free(tools);
	if (rc == REIN_ENOMEM)
		L->nomem = true;
	else if (rc != REIN_OK)
		DIAG(L, bad >= 0 && (size_t)bad < n->n ? n->kids[bad] : n, "policies: %s", e.msg);
	json_decref(rules);
}

int rein_spec_yaml_file(const char *path, json_t **out, rein_err *err)
{
	char *text = NULL;
	size_t len = 0;
	ynode *root = NULL;
	int rc = rein_file_read(path, &text, &len, err);
	if (rc != REIN_OK)
		return rc;
	rein_err ye = {0};
	if ((rc = ynode_parse(text, len, &root, &ye)) != REIN_OK) {
		rc = rein_err_set(err, rc == REIN_ENOMEM ? rc : REIN_ESPEC, "%s:%s", path, ye.msg);
		goto out;
	}
	const ynode *bad = NULL;
	json_t *j = root ? ynode_to_json(root, &bad, &ye) : json_null();
	if (j == NULL) {
		rc = ye.code == REIN_ENOMEM ? rein_err_set(err, REIN_ENOMEM, "out of memory")
					    : rein_err_set(err, REIN_ESPEC, "%s:%d:%d: %s", path,
							   bad ? bad->line : 1, bad ? bad->col : 1, ye.msg);
		goto out;
	}
	*out = j;
out:
	ynode_free(root);
	rein_free(text);
	return rc;
}

int rein_spec_policy_file(const char *path, rein_script *sb, json_t **rules, rein_err *err)
{
	json_t *doc = NULL, *list = NULL;
	rein_policy *p = NULL;
	int rc = rein_spec_yaml_file(path, &doc, err), bad = -1;
	if (rc != REIN_OK)
		return rc;
	list = json_is_object(doc) ? json_object_get(doc, "policies") : doc;
	if (!json_is_array(list)) {
		rc = rein_err_set(err, REIN_ESPEC, "%s: a policy file is a list of rules, or a mapping "
				  "with one key 'policies' holding that list", path);
		goto out;
	}
	rein_err e = {0};
	if ((rc = rein_policy_compile(list, "org", sb, &p, &bad, &e)) != REIN_OK) {
		rc = rc == REIN_ENOMEM ? rein_err_set(err, rc, "out of memory")
				       : rein_err_set(err, REIN_ESPEC, "%s: rule %d: %s", path, bad + 1, e.msg);
		goto out;
	}
	*rules = json_incref(list);
out:
	rein_policy_free(p);
	json_decref(doc);
	return rc;
}
