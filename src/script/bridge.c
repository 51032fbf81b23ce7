/*
 * The JSON<->Lua bridge. JSON objects become plain tables, arrays become
 * tables tagged with one shared "array" metatable (so `[]` and `{}` survive a
 * round trip), null becomes nil: a script tests `x == nil` or `x or default`
 * the same way whether a value is null or absent, and `when:` and templates
 * agree. A null member of an object is therefore absent from its table, and a
 * null element of an array is a hole: the array keeps its other indices, and
 * on the way back a tagged array runs to its largest index, holes written as
 * null (a trailing null is lost). `json.null`, a light-userdata sentinel,
 * remains for a script that must write an explicit null. The way back is strict:
 * anything that has no faithful JSON form (functions, NaN, non-string keys,
 * cycles, absurd nesting) is an error that names where it was found.
 */
#include "script_int.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* Addresses used as registry keys and as the null sentinel. */
static const char array_mt_key;
static const char null_tag;

void script_push_null(lua_State *L) { lua_pushlightuserdata(L, (void *)&null_tag); }

bool script_is_null(lua_State *L, int idx)
{
	return lua_type(L, idx) == LUA_TLIGHTUSERDATA && lua_touserdata(L, idx) == &null_tag;
}

void script_bridge_init(lua_State *L)
{
	lua_createtable(L, 0, 2);
	lua_pushliteral(L, "array");
	lua_setfield(L, -2, "__name");
	/* Scripts see the string "array" and cannot alter the shared table. */
	lua_pushliteral(L, "array");
	lua_setfield(L, -2, "__metatable");
	lua_rawsetp(L, LUA_REGISTRYINDEX, &array_mt_key);
}

int script_lua_array(lua_State *L)
{
	if (lua_isnoneornil(L, 1)) {
		lua_settop(L, 0);
		lua_newtable(L);
	}
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	if (lua_getmetatable(L, 1)) {
		lua_rawgetp(L, LUA_REGISTRYINDEX, &array_mt_key);
		if (!lua_rawequal(L, -1, -2))
			return luaL_error(L, "json.array: table already has a metatable");
		lua_pop(L, 2);
		return 1;
	}
	lua_rawgetp(L, LUA_REGISTRYINDEX, &array_mt_key);
	lua_setmetatable(L, 1);
	return 1;
}

static void push_json(lua_State *L, const json_t *j, int depth)
{
	if (depth > 1000)
		luaL_error(L, "JSON value nested too deeply");
	luaL_checkstack(L, 4, "JSON value nested too deeply");
	json_t *m = (json_t *)j; /* jansson's iteration API takes non-const */
	switch (json_typeof(j)) {
	case JSON_OBJECT:
		lua_createtable(L, 0, (int)json_object_size(j));
		for (void *it = json_object_iter(m); it; it = json_object_iter_next(m, it)) {
			lua_pushlstring(L, json_object_iter_key(it), json_object_iter_key_len(it));
			push_json(L, json_object_iter_value(it), depth + 1);
			lua_rawset(L, -3);
		}
		break;
	case JSON_ARRAY: {
		size_t n = json_array_size(j);
		lua_createtable(L, n > 1u << 20 ? 1 << 20 : (int)n, 0);
		for (size_t i = 0; i < n; i++) {
			push_json(L, json_array_get(j, i), depth + 1);
			lua_rawseti(L, -2, (lua_Integer)i + 1);
		}
		lua_rawgetp(L, LUA_REGISTRYINDEX, &array_mt_key);
		lua_setmetatable(L, -2);
		break;
	}
	case JSON_STRING:
		lua_pushlstring(L, json_string_value(j), json_string_length(j));
		break;
	case JSON_INTEGER:
		lua_pushinteger(L, (lua_Integer)json_integer_value(j));
		break;
	case JSON_REAL:
		lua_pushnumber(L, (lua_Number)json_real_value(j));
		break;
	case JSON_TRUE:
		lua_pushboolean(L, 1);
		break;
	case JSON_FALSE:
		lua_pushboolean(L, 0);
		break;
	case JSON_NULL:
		lua_pushnil(L);
		break;
	}
}

void script_push_json(lua_State *L, const json_t *j)
{
	if (j == NULL)
		lua_pushnil(L);
	else
		push_json(L, j, 0);
}

/* ---- Lua -> JSON ----------------------------------------------------- */

struct conv {
	lua_State *L;
	rein_err *err;
	int rc;
	int depth;
	const void *seen[SCRIPT_JSON_MAX_DEPTH + 1];
	char path[256];
	size_t plen;
};

static bool utf8_valid(const unsigned char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		unsigned c = s[i];
		size_t k;
		unsigned min;
		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			k = 1, min = 0x80, c &= 0x1f;
		} else if ((c & 0xf0) == 0xe0) {
			k = 2, min = 0x800, c &= 0x0f;
		} else if ((c & 0xf8) == 0xf0) {
			k = 3, min = 0x10000, c &= 0x07;
		} else {
			return false;
		}
		if (i + k >= n)
			return false;
		for (size_t t = 1; t <= k; t++) {
			if ((s[i + t] & 0xc0) != 0x80)
				return false;
			c = (c << 6) | (s[i + t] & 0x3f);
		}
		if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
			return false;
		i += k + 1;
	}
	return true;
}

static json_t *conv_fail(struct conv *c, int code, const char *what)
{
	if (c->rc == REIN_OK) {
		c->rc = code;
		if (code == REIN_ENOMEM)
			rein_err_set(c->err, code, "out of memory converting the result to JSON");
		else
			rein_err_set(c->err, code, "%s at %s", what, c->path);
	}
	return NULL;
}

/* Appends ".key" (key != NULL) or "[idx]"; returns the length to restore. */
static size_t path_push(struct conv *c, const char *key, size_t klen, long long idx)
{
	size_t old = c->plen, room = sizeof c->path - c->plen;
	int n;
	if (key)
		n = snprintf(c->path + c->plen, room, ".%.*s", klen > 40 ? 40 : (int)klen, key);
	else
		n = snprintf(c->path + c->plen, room, "[%lld]", idx);
	if (n > 0)
		c->plen += (size_t)n < room ? (size_t)n : room - 1;
	return old;
}

static void path_pop(struct conv *c, size_t old)
{
	c->plen = old;
	c->path[old] = '\0';
}

static json_t *to_json(struct conv *c, int idx);

static bool is_array_tagged(lua_State *L, int idx)
{
	if (!lua_getmetatable(L, idx))
		return false;
	lua_rawgetp(L, LUA_REGISTRYINDEX, &array_mt_key);
	bool eq = lua_rawequal(L, -1, -2);
	lua_pop(L, 2);
	return eq;
}

static json_t *array_to_json(struct conv *c, int idx, lua_Integer n)
{
	lua_State *L = c->L;
	json_t *arr = json_array();
	if (arr == NULL)
		return conv_fail(c, REIN_ENOMEM, NULL);
	for (lua_Integer i = 1; i <= n; i++) {
		lua_rawgeti(L, idx, i);
		size_t old = path_push(c, NULL, 0, (long long)i);
		json_t *v = to_json(c, lua_gettop(L));
		path_pop(c, old);
		lua_pop(L, 1);
		if (v == NULL || json_array_append_new(arr, v) != 0) {
			json_decref(arr);
			return v ? conv_fail(c, REIN_ENOMEM, NULL) : NULL;
		}
	}
	return arr;
}

static json_t *object_to_json(struct conv *c, int idx)
{
	lua_State *L = c->L;
	json_t *obj = json_object();
	if (obj == NULL)
		return conv_fail(c, REIN_ENOMEM, NULL);
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		if (lua_type(L, -2) != LUA_TSTRING) {
			json_decref(obj);
			return conv_fail(c, REIN_ESCRIPT, "table key must be a string");
		}
		size_t klen;
		const char *k = lua_tolstring(L, -2, &klen);
		if (!utf8_valid((const unsigned char *)k, klen)) {
			json_decref(obj);
			return conv_fail(c, REIN_ESCRIPT, "table key is not valid UTF-8");
		}
		if (memchr(k, '\0', klen)) { /* JSON allows it, but no reader (jansson) does */
			json_decref(obj);
			return conv_fail(c, REIN_ESCRIPT, "table key contains a NUL byte");
		}
		size_t old = path_push(c, k, klen, 0);
		json_t *v = to_json(c, lua_gettop(L));
		path_pop(c, old);
		lua_pop(L, 1);
		if (v == NULL || json_object_setn_new(obj, k, klen, v) != 0) {
			json_decref(obj);
			return v ? conv_fail(c, REIN_ENOMEM, NULL) : NULL;
		}
	}
	return obj;
}

static json_t *table_to_json(struct conv *c, int idx)
{
	lua_State *L = c->L;
	const void *self = lua_topointer(L, idx);
	for (int i = 0; i < c->depth; i++)
		if (c->seen[i] == self)
			return conv_fail(c, REIN_ESCRIPT, "table contains a cycle");
	if (c->depth >= SCRIPT_JSON_MAX_DEPTH)
		return conv_fail(c, REIN_ESCRIPT, "tables nested deeper than 64 levels");
	if (!lua_checkstack(L, 4))
		return conv_fail(c, REIN_ENOMEM, NULL);
	int top = lua_gettop(L);
	json_t *res = NULL;
	c->seen[c->depth++] = self;
	if (is_array_tagged(L, idx)) {
		/* to the largest positive integer key: null elements are holes */
		lua_Integer n = (lua_Integer)lua_rawlen(L, idx), count = 0;
		lua_pushnil(L);
		while (lua_next(L, idx)) {
			if (lua_isinteger(L, -2) && lua_tointeger(L, -2) > n)
				n = lua_tointeger(L, -2);
			count++;
			lua_pop(L, 1);
		}
		if (n > 2 * count + 1024) { /* json.array{[1e9] = 1} */
			res = conv_fail(c, REIN_ESCRIPT, "array has too many holes (null elements)");
			goto out;
		}
		res = array_to_json(c, idx, n);
		goto out;
	}
	/* Untagged: keys exactly 1..n (n > 0) make an array, else an object. */
	lua_Integer count = 0, max = 0;
	bool all_int = true;
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		if (all_int && lua_type(L, -2) == LUA_TNUMBER && lua_isinteger(L, -2)) {
			lua_Integer k = lua_tointeger(L, -2);
			if (k < 1)
				all_int = false;
			else if (k > max)
				max = k;
		} else {
			all_int = false;
		}
		count++;
		lua_pop(L, 1);
	}
	if (count > 0 && all_int && max == count)
		res = array_to_json(c, idx, count);
	else
		res = object_to_json(c, idx);
out:
	c->depth--;
	lua_settop(L, top);
	return res;
}

static json_t *to_json(struct conv *c, int idx)
{
	lua_State *L = c->L;
	json_t *j = NULL;
	switch (lua_type(L, idx)) {
	case LUA_TNIL:
		return json_null();
	case LUA_TBOOLEAN:
		return json_boolean(lua_toboolean(L, idx));
	case LUA_TNUMBER:
		if (lua_isinteger(L, idx)) {
			j = json_integer((json_int_t)lua_tointeger(L, idx));
		} else {
			double d = (double)lua_tonumber(L, idx);
			if (!isfinite(d))
				return conv_fail(c, REIN_ESCRIPT, "number is NaN or infinite");
			j = json_real(d);
		}
		break;
	case LUA_TSTRING: {
		size_t n;
		const char *s = lua_tolstring(L, idx, &n);
		if (!utf8_valid((const unsigned char *)s, n))
			return conv_fail(c, REIN_ESCRIPT, "string is not valid UTF-8");
		j = json_stringn_nocheck(s, n);
		break;
	}
	case LUA_TLIGHTUSERDATA:
		if (lua_touserdata(L, idx) == &null_tag)
			return json_null();
		return conv_fail(c, REIN_ESCRIPT, "cannot convert a userdata to JSON");
	case LUA_TTABLE:
		return table_to_json(c, idx);
	default: {
		char what[64];
		snprintf(what, sizeof what, "cannot convert a %s to JSON",
			 lua_typename(L, lua_type(L, idx)));
		return conv_fail(c, REIN_ESCRIPT, what);
	}
	}
	if (j == NULL)
		return conv_fail(c, REIN_ENOMEM, NULL);
	return j;
}

int script_to_json(lua_State *L, int idx, json_t **out, rein_err *err)
{
	struct conv c = {.L = L, .err = err, .rc = REIN_OK, .path = "$", .plen = 1};
	json_t *j = to_json(&c, lua_absindex(L, idx));
	if (j == NULL)
		return c.rc != REIN_OK ? c.rc : rein_err_set(err, REIN_ENOMEM, "out of memory");
	*out = j;
	return REIN_OK;
}
