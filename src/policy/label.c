/*
 * Provenance labels (policy.h, docs/policy.md "Provenance"). A label is a
 * small JSON object {sources, readers, trusted}: sources and readers are
 * sorted arrays of unique strings, so two runs that join the same labels in
 * any order write the same bytes, and a replay compares equal.
 */
#include <assert.h>
#include <string.h>

#include "policy.h"

static bool has(const json_t *arr, const char *s)
{
	size_t i;
	json_t *x;
	json_array_foreach(arr, i, x) if (json_string_value(x) && strcmp(json_string_value(x), s) == 0) return true;
	return false;
}

/* Inserts s into the sorted array a (no duplicate); false when out of memory. */
static bool insert_sorted(json_t *a, const char *s)
{
	size_t i, n = json_array_size(a);
	for (i = 0; i < n; i++) {
		int c = strcmp(json_string_value(json_array_get(a, i)), s);
		if (c == 0)
			return true;
		if (c > 0)
			break;
	}
	return json_array_insert_new(a, i, json_string(s)) == 0;
}

json_t *rein_label_new(const char *source, const json_t *readers, bool trusted)
{
	json_t *l = json_object(), *src = json_array(), *rd = json_array();
	bool ok = l && src && rd && (source == NULL || insert_sorted(src, source));
	size_t i;
	json_t *x;
	if (ok && readers)
		json_array_foreach(readers, i, x) ok = ok && json_is_string(x) && insert_sorted(rd, json_string_value(x));
	if (ok && readers == NULL)
		ok = insert_sorted(rd, "public");
	if (ok) { /* each set steals its value, also when it fails */
		ok = json_object_set_new(l, "sources", src) == 0;
		ok = json_object_set_new(l, "readers", rd) == 0 && ok;
		ok = ok && json_object_set_new(l, "trusted", json_boolean(trusted)) == 0;
	} else {
		json_decref(src);
		json_decref(rd);
	}
	if (!ok) {
		json_decref(l);
		return NULL;
	}
	return l;
}

int rein_label_join(json_t **acc, const json_t *l)
{
	assert(acc != NULL);
	if (l == NULL)
		return REIN_OK;
	if (*acc == NULL)
		return (*acc = json_deep_copy(l)) ? REIN_OK : REIN_ENOMEM;
	json_t *a = *acc;
	json_t *as = json_object_get(a, "sources"), *ar = json_object_get(a, "readers");
	const json_t *ls = json_object_get(l, "sources"), *lr = json_object_get(l, "readers");
	size_t i;
	json_t *x;
	json_array_foreach(ls, i, x) if (json_is_string(x) && !insert_sorted(as, json_string_value(x))) return REIN_ENOMEM;
	/* readers: intersection, "public" being everyone */
	if (has(ar, "public")) {
		json_t *c = json_deep_copy(lr);
		if (c == NULL || json_object_set_new(a, "readers", c) != 0)
			return REIN_ENOMEM;
	} else if (!has(lr, "public")) {
		for (i = json_array_size(ar); i-- > 0;)
			if (!has(lr, json_string_value(json_array_get(ar, i))) && json_array_remove(ar, i) != 0)
				return REIN_ENOMEM;
	}
	bool t = json_is_true(json_object_get(a, "trusted")) && json_is_true(json_object_get(l, "trusted"));
	return json_object_set_new(a, "trusted", json_boolean(t)) == 0 ? REIN_OK : REIN_ENOMEM;
}

bool rein_label_trusted(const json_t *l) { return l != NULL && json_is_true(json_object_get(l, "trusted")); }

bool rein_label_readable(const json_t *l, const char *reader)
{
	const json_t *r = json_object_get(l, "readers");
	return has(r, "public") || (reader && has(r, reader));
}
