/*
 * Provenance labels (policy.h, docs/policy.md "Provenance"). A label is a
 * small JSON object {sources, readers, trusted}: sources and readers are
 * sorted arrays of unique strings, so two runs that join the same labels in
 * any order write the same bytes, and a replay compares equal. A label is
 * never changed once made (a join makes a new one), so labels are shared by
 * reference, not copied.
 */
#include <assert.h>
#include <string.h>

#include "policy.h"

/* Whether the array arr holds the string s (NULL: a reader that is not a
 * string, in a label made outside rein_label_new: never). */
static bool has(const json_t *arr, const char *s)
{
	for (size_t i = 0; i < json_array_size(arr); i++) {
		const char *x = json_string_value(json_array_get(arr, i));
		if (s && x && strcmp(x, s) == 0)
			return true;
	}
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
	if (ok && readers)
		for (size_t i = 0; i < json_array_size(readers); i++) {
			const json_t *x = json_array_get(readers, i);
			ok = ok && json_typeof(x) == JSON_STRING && insert_sorted(rd, json_string_value(x));
		}
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

/* The sorted union of the sorted string arrays a and b (new); NULL: OOM. */
static json_t *merge(const json_t *a, const json_t *b)
{
	json_t *m = json_array();
	size_t i = 0, j = 0, na = json_array_size(a), nb = json_array_size(b);
	while (m && (i < na || j < nb)) {
		const char *x = i < na ? json_string_value(json_array_get(a, i)) : NULL;
		const char *y = j < nb ? json_string_value(json_array_get(b, j)) : NULL;
		int c = x == NULL ? 1 : y == NULL ? -1 : strcmp(x, y);
		const char *take = c <= 0 ? x : y;
		i += c <= 0;
		j += c >= 0;
		if (json_array_append_new(m, json_string(take)) != 0) {
			json_decref(m);
			m = NULL;
		}
	}
	return m;
}

/* The readers both a and b allow (new); "public" is everyone. */
static json_t *meet(const json_t *a, const json_t *b)
{
	if (has(a, "public"))
		return json_copy((json_t *)b);
	if (has(b, "public"))
		return json_copy((json_t *)a);
	json_t *m = json_array();
	for (size_t i = 0; i < json_array_size(a); i++) {
		json_t *x = json_array_get(a, i);
		if (m && has(b, json_string_value(x)) && json_array_append(m, x) != 0) {
			json_decref(m);
			m = NULL;
		}
	}
	return m;
}

int rein_label_join(json_t **acc, const json_t *l)
{
	assert(acc != NULL);
	if (l == NULL || *acc == l)
		return REIN_OK;
	if (*acc == NULL) { /* labels are never changed once made: share it */
		*acc = json_incref((json_t *)l);
		return REIN_OK;
	}
	const json_t *a = *acc;
	if (json_equal((json_t *)a, (json_t *)l))
		return REIN_OK;
	json_t *src = merge(json_object_get(a, "sources"), json_object_get(l, "sources"));
	json_t *rd = meet(json_object_get(a, "readers"), json_object_get(l, "readers"));
	json_t *n = json_object();
	bool t = rein_label_trusted(a) && rein_label_trusted(l);
	bool ok = src && rd && n;
	if (ok) { /* each set steals its value, also when it fails */
		ok = json_object_set_new(n, "sources", src) == 0;
		ok = json_object_set_new(n, "readers", rd) == 0 && ok;
		ok = ok && json_object_set_new(n, "trusted", json_boolean(t)) == 0;
	} else {
		json_decref(src);
		json_decref(rd);
	}
	if (!ok) {
		json_decref(n);
		return REIN_ENOMEM;
	}
	json_decref(*acc);
	*acc = n;
	return REIN_OK;
}

bool rein_label_trusted(const json_t *l) { return l != NULL && json_is_true(json_object_get(l, "trusted")); }

bool rein_label_readable(const json_t *l, const char *reader)
{
	const json_t *r = json_object_get(l, "readers");
	return has(r, "public") || (reader && has(r, reader));
}
