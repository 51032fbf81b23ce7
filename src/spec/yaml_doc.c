/* A YAML document as JSON plus where each of its nodes was written, for the
 * layers above spec that read YAML files of their own (eval suites). */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "spec.h"
#include "yaml_tree.h"

/* Appends ptr's node and its descendants' positions to locs. */
static int locate(const ynode *n, rein_buf *ptr, json_t *locs)
{
	int rc = REIN_OK;
	size_t keep = ptr->len;
	json_t *at = json_pack("[ii]", n->line, n->col);
	if (at == NULL || json_object_set_new(locs, ptr->p ? ptr->p : "", at) != 0)
		return REIN_ENOMEM;
	for (size_t i = 0; i < n->n && rc == REIN_OK; i++) {
		const ynode *kid = n->kids[i];
		if (n->type == YNODE_MAP) {
			if (i % 2 == 0)
				continue;
			const ynode *key = n->kids[i - 1];
			if (key->type != YNODE_SCALAR)
				continue;
			if (rein_buf_puts(ptr, "/") != REIN_OK)
				return REIN_ENOMEM;
			for (size_t k = 0; k < key->len && rc == REIN_OK; k++)
				rc = key->str[k] == '~'   ? rein_buf_puts(ptr, "~0")
				     : key->str[k] == '/' ? rein_buf_puts(ptr, "~1")
							  : rein_buf_append(ptr, &key->str[k], 1);
		} else {
			rc = rein_buf_printf(ptr, "/%zu", i);
		}
		if (rc == REIN_OK)
			rc = locate(kid, ptr, locs);
		ptr->len = keep;
		if (ptr->p)
			ptr->p[keep] = '\0';
	}
	return rc;
}

int rein_spec_yaml_text(const char *text, size_t len, const char *path, json_t **out,
			json_t **locs, rein_err *err)
{
	assert(text != NULL || len == 0);
	assert(out != NULL && path != NULL);
	ynode *root = NULL;
	json_t *j = NULL, *l = NULL;
	rein_buf ptr = {0};
	rein_err ye = {0};
	int rc = ynode_parse(text ? text : "", len, &root, &ye);
	if (rc != REIN_OK) {
		rc = rein_err_set(err, rc == REIN_ENOMEM ? rc : REIN_ESPEC, "%s:%s", path, ye.msg);
		goto out;
	}
	const ynode *bad = NULL;
	j = root ? ynode_to_json(root, &bad, &ye) : json_null();
	if (j == NULL) {
		rc = ye.code == REIN_ENOMEM ? rein_err_set(err, REIN_ENOMEM, "out of memory")
					    : rein_err_set(err, REIN_ESPEC, "%s:%d:%d: %s", path,
							   bad ? bad->line : 1, bad ? bad->col : 1, ye.msg);
		goto out;
	}
	if (locs) {
		if ((l = json_object()) == NULL || (root && locate(root, &ptr, l) != REIN_OK)) {
			rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
			goto out;
		}
		if (root == NULL && json_object_set_new(l, "", json_pack("[ii]", 1, 1)) != 0) {
			rc = rein_err_set(err, REIN_ENOMEM, "out of memory");
			goto out;
		}
		*locs = l;
		l = NULL;
	}
	*out = j;
	j = NULL;
out:
	json_decref(l);
	json_decref(j);
	rein_buf_free(&ptr);
	rein_err_clear(&ye);
	ynode_free(root);
	return rc;
}
