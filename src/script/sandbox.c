/*
 * The Lua sandbox: one lua_State per rein_script, built once with an
 * allow-listed library set, and a compile cache keyed by source text. Each
 * evaluation runs a cached function whose _ENV is a fresh table; that table's
 * __index resolves input/run/out/steps/vars lazily from the context and falls
 * back to read-only library tables. A count hook enforces the instruction
 * budget and a custom allocator the memory cap; once either trips, the hook
 * raises on every instruction so the script cannot pcall its way out, and the
 * evaluation fails whatever the script returns.
 */
#include "script_int.h"

#include <assert.h>
#include <lauxlib.h>
#include <stdatomic.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_INSTRUCTIONS 10000000ull
#define DEFAULT_MEMORY ((size_t)32 << 20)
#define HOOK_STEP 1000
#define CACHE_MAX 4096 /* compiled sources kept before the cache is reset */
#define CHUNKNAME "=script"
#define POOL_GRAIN 16
#define POOL_CLASSES 16 /* blocks up to 256 bytes */
#define POOL_MAX_BYTES ((size_t)1 << 20)

enum { STOP_NONE = 0, STOP_BUDGET, STOP_MEMORY, STOP_DEADLINE };
#define DEADLINE_EVERY 16 /* hook calls between two reads of the clock */

struct rein_script {
	lua_State *L;
	size_t mem_used;     /* bytes the Lua state holds right now */
	size_t mem_limit;    /* refuse growth past this; SIZE_MAX outside evaluations */
	size_t mem_after_gc; /* mem_used after the last full collection */
	size_t mem_cap;      /* cap of the running evaluation (for the message) */
	uint64_t budget;     /* budget of the running evaluation */
	uint64_t ticks_left; /* hook calls left before the budget is spent */
	uint64_t step;       /* instructions between hook calls */
	int stop;            /* STOP_*: which limit tripped in this evaluation */
	int64_t deadline_ms; /* wall-clock limit of the running evaluation; 0 = none */
	const rein_clock *clock;
	uint32_t until_clock; /* hook calls before the next clock read */
	atomic_bool interrupt; /* set by rein_script_interrupt, from any thread */
	int cache_count;
	bool busy; /* an evaluation is running: the sandbox is not reentrant */
	const rein_script_ctx *ctx; /* the running evaluation's context */
	/* Freed small blocks kept for reuse, by size class (POOL_GRAIN bytes each). */
	void *pool[POOL_CLASSES];
	size_t pool_bytes;
};

/* Registry keys. */
static const char lib_key, env_mt_key, steps_mt_key, expr_cache_key, chunk_cache_key,
	stop_msg_key;

static rein_script *script_of(lua_State *L) { return *(rein_script **)lua_getextraspace(L); }

/* ---- allocator and hook ---------------------------------------------- */

/* Under AddressSanitizer the pool is off: every Lua block goes through the
 * allocation wrapper, so a use after free is still caught and a fault
 * injected on the Nth allocation still reaches Lua. */
#if defined(__SANITIZE_ADDRESS__)
#define REIN_LUA_POOL 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define REIN_LUA_POOL 0
#endif
#endif
#ifndef REIN_LUA_POOL
#define REIN_LUA_POOL 1
#endif

/* Size class of a small block (1..POOL_CLASSES), 0 for a large one. */
static size_t pool_class(size_t n)
{
	if (!REIN_LUA_POOL)
		return 0;
	return n <= POOL_GRAIN * POOL_CLASSES ? (n + POOL_GRAIN - 1) / POOL_GRAIN : 0;
}

/* A block of at least n bytes; small ones come from the pool, rounded to their class. */
static void *pool_get(rein_script *s, size_t n)
{
	size_t c = pool_class(n);
	if (c == 0)
		return rein_malloc(n);
	void *p = s->pool[c - 1];
	if (p) {
		s->pool[c - 1] = *(void **)p;
		s->pool_bytes -= c * POOL_GRAIN;
		return p;
	}
	return rein_malloc(c * POOL_GRAIN);
}

/* Gives back a block Lua knows as n bytes (its real size is at least that). */
static void pool_put(rein_script *s, void *p, size_t n)
{
	size_t c = pool_class(n);
	if (c == 0 || s->pool_bytes + c * POOL_GRAIN > POOL_MAX_BYTES) {
		rein_free(p);
		return;
	}
	*(void **)p = s->pool[c - 1];
	s->pool[c - 1] = p;
	s->pool_bytes += c * POOL_GRAIN;
}

static void pool_drain(rein_script *s)
{
	for (int c = 0; c < POOL_CLASSES; c++)
		while (s->pool[c]) {
			void *p = s->pool[c];
			s->pool[c] = *(void **)p;
			rein_free(p);
		}
	s->pool_bytes = 0;
}

static void *sandbox_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	rein_script *s = ud;
	size_t old = ptr ? osize : 0;
	if (nsize == 0) {
		if (ptr)
			pool_put(s, ptr, old);
		s->mem_used -= old;
		return NULL;
	}
	if (nsize > old && (nsize - old > s->mem_limit || s->mem_used > s->mem_limit - (nsize - old))) {
		s->stop = STOP_MEMORY;
		return NULL;
	}
	size_t oc = pool_class(old), nc = pool_class(nsize);
	void *p;
	if (ptr == NULL) {
		p = pool_get(s, nsize);
	} else if (oc != 0 && oc == nc) {
		p = ptr; /* the block already holds nc * POOL_GRAIN bytes */
	} else if (oc == 0 && nc == 0) {
		p = rein_realloc(ptr, nsize);
	} else {
		p = pool_get(s, nsize);
		if (p) {
			memcpy(p, ptr, old < nsize ? old : nsize);
			pool_put(s, ptr, old);
		}
	}
	if (p == NULL) {
		if (nsize <= old) /* a failed shrink keeps the larger block */
			return ptr;
		return NULL;
	}
	s->mem_used = s->mem_used - old + nsize;
	return p;
}

static void sandbox_hook(lua_State *L, lua_Debug *ar)
{
	(void)ar;
	rein_script *s = script_of(L);
	if (s->stop == STOP_NONE) {
		if (atomic_load_explicit(&s->interrupt, memory_order_relaxed) ||
		    (s->deadline_ms && s->until_clock-- == 0 &&
		     (s->until_clock = DEADLINE_EVERY, rein_clock_now(s->clock) >= s->deadline_ms))) {
			s->stop = STOP_DEADLINE;
		} else if (s->ticks_left > 0) {
			s->ticks_left--;
			return;
		} else {
			s->stop = STOP_BUDGET;
		}
	}
	/* From now on every instruction raises: pcall cannot swallow the limit. */
	lua_sethook(L, sandbox_hook, LUA_MASKCOUNT, 1);
	lua_rawgetp(L, LUA_REGISTRYINDEX, &stop_msg_key); /* preallocated: no allocation */
	lua_error(L);
}

/* ---- library construction -------------------------------------------- */

static int readonly_newindex(lua_State *L)
{
	return luaL_error(L, "attempt to modify a read-only library table");
}

/* Replaces the table on top of the stack with a read-only proxy of it. */
static void make_readonly(lua_State *L)
{
	lua_newtable(L);
	lua_createtable(L, 0, 3);
	lua_pushvalue(L, -3);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, readonly_newindex);
	lua_setfield(L, -2, "__newindex");
	lua_pushboolean(L, 0);
	lua_setfield(L, -2, "__metatable");
	lua_setmetatable(L, -2);
	lua_remove(L, -2);
}

/* Pushes a copy of the table at idx without the listed keys. */
static void copy_without(lua_State *L, int idx, const char *const *drop)
{
	idx = lua_absindex(L, idx);
	lua_newtable(L);
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		bool skip = false;
		if (lua_type(L, -2) == LUA_TSTRING)
			for (const char *const *d = drop; *d; d++)
				if (strcmp(lua_tostring(L, -2), *d) == 0)
					skip = true;
		if (skip) {
			lua_pop(L, 1);
			continue;
		}
		lua_pushvalue(L, -2);
		lua_insert(L, -2);
		lua_rawset(L, -4);
	}
}

/* setmetatable that refuses __gc: finalizers would run outside any budget. */
static int safe_setmetatable(lua_State *L)
{
	int t = lua_type(L, 2);
	luaL_checktype(L, 1, LUA_TTABLE);
	luaL_argexpected(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table");
	if (t == LUA_TTABLE) {
		lua_pushliteral(L, "__gc");
		if (lua_rawget(L, 2) != LUA_TNIL)
			return luaL_error(L, "__gc metamethods are not allowed");
		lua_pop(L, 1);
	}
	if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL)
		return luaL_error(L, "cannot change a protected metatable");
	lua_settop(L, 2);
	lua_setmetatable(L, 1);
	return 1;
}

static int raise_stop(lua_State *L);

/*
 * string.rep that refuses, before allocating, a result larger than what is
 * left of the memory cap (Lua itself would first say "too large" only past
 * 2 GiB, which is not the limit we want to report).
 */
static int safe_rep(lua_State *L)
{
	size_t l, lsep = 0;
	luaL_checklstring(L, 1, &l);
	lua_Integer n = luaL_checkinteger(L, 2);
	luaL_optlstring(L, 3, "", &lsep);
	rein_script *s = script_of(L);
	if (l + lsep == 0) { /* Lua would loop n times copying nothing */
		lua_pushliteral(L, "");
		return 1;
	}
	if (n > 0 && s->mem_limit != SIZE_MAX) {
		double total = (double)l * (double)n + (double)lsep * (double)(n - 1);
		size_t room = s->mem_limit > s->mem_used ? s->mem_limit - s->mem_used : 0;
		if (total > (double)room) {
			s->stop = STOP_MEMORY;
			return raise_stop(L);
		}
	}
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_insert(L, 1);
	lua_call(L, lua_gettop(L) - 1, 1);
	return 1;
}

/* Raises the preallocated limit error; the caller has set s->stop. */
static int raise_stop(lua_State *L)
{
	lua_sethook(L, sandbox_hook, LUA_MASKCOUNT, 1);
	lua_rawgetp(L, LUA_REGISTRYINDEX, &stop_msg_key);
	return lua_error(L);
}

double script_budget_left(lua_State *L)
{
	rein_script *s = script_of(L);
	if (!s->busy || s->step == 0)
		return 1e300;
	return (double)s->ticks_left * (double)s->step;
}


/*
 * Charges work done inside a C library loop (where the count hook cannot
 * fire) against the instruction budget, one unit per element.
 */
void script_charge(lua_State *L, double units)
{
	rein_script *s = script_of(L);
	if (!s->busy || s->step == 0 || units <= 0)
		return;
	double ticks = units / (double)s->step;
	if (ticks >= (double)s->ticks_left) {
		s->stop = STOP_BUDGET;
		raise_stop(L);
	}
	s->ticks_left -= (uint64_t)ticks;
}

/* Calls upvalue 1 with all arguments, returning all its results. */
static int call_original(lua_State *L)
{
	int n = lua_gettop(L);
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_insert(L, 1);
	lua_call(L, n, LUA_MULTRET);
	return lua_gettop(L);
}

/* table.move(a1, f, e, t [, a2]) moves e - f + 1 elements in one C loop. */
static int safe_move(lua_State *L)
{
	lua_Integer f = luaL_checkinteger(L, 2), e = luaL_checkinteger(L, 3);
	if (e >= f)
		script_charge(L, (double)e - (double)f + 1);
	return call_original(L);
}

/* table.concat(list [, sep [, i [, j]]]) with an explicit range. */
static int safe_concat(lua_State *L)
{
	if (!lua_isnoneornil(L, 4)) {
		lua_Integer i = luaL_optinteger(L, 3, 1), j = luaL_checkinteger(L, 4);
		if (j >= i)
			script_charge(L, (double)j - (double)i + 1);
	}
	return call_original(L);
}

/* table.sort(list [, comp]): the default comparison never reaches the hook. */
static int safe_sort(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	double n = (double)lua_rawlen(L, 1);
	if (n > 1)
		script_charge(L, n * 2 * (1 + (double)(64 - __builtin_clzll((unsigned long long)n))));
	return call_original(L);
}

/* Replaces field name of the table on top with a closure over the original. */
static void wrap_field(lua_State *L, const char *name, lua_CFunction f)
{
	lua_getfield(L, -1, name);
	lua_pushcclosure(L, f, 1);
	lua_setfield(L, -2, name);
}

static int env_index(lua_State *L);
static int steps_index(lua_State *L);

static int sandbox_setup(lua_State *L)
{
	static const char *const base_allowed[] = {
		"assert", "error", "ipairs", "next", "pairs", "pcall", "xpcall",
		"select", "tonumber", "type", "rawequal", "rawlen", "rawget",
		"getmetatable", NULL,
	};
	static const char *const no_string[] = {"dump", NULL};
	static const char *const no_math[] = {"random", "randomseed", NULL};
	static const char *const none[] = {NULL};

	luaL_requiref(L, LUA_GNAME, luaopen_base, 0);
	int g = lua_gettop(L);
	lua_newtable(L);
	int lib = lua_gettop(L);
	for (const char *const *n = base_allowed; *n; n++) {
		lua_getfield(L, g, *n);
		lua_setfield(L, lib, *n);
	}
	lua_pushcfunction(L, safe_setmetatable);
	lua_setfield(L, lib, "setmetatable");
	lua_pushliteral(L, LUA_VERSION);
	lua_setfield(L, lib, "_VERSION");
	lua_pushcfunction(L, script_lua_tostring);
	lua_setfield(L, lib, "tostring");

	/* string: a sanitized copy backs both `string` and the string metatable. */
	luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 0);
	copy_without(L, -1, no_string);
	lua_getfield(L, -1, "rep");
	lua_pushcclosure(L, safe_rep, 1);
	lua_setfield(L, -2, "rep");
	script_guard_string(L);
	lua_pushliteral(L, "");
	lua_getmetatable(L, -1);
	lua_pushvalue(L, -3);
	lua_setfield(L, -2, "__index");
	lua_pushboolean(L, 0);
	lua_setfield(L, -2, "__metatable");
	lua_pop(L, 2);
	make_readonly(L);
	lua_setfield(L, lib, "string");
	lua_pop(L, 1);

	luaL_requiref(L, LUA_MATHLIBNAME, luaopen_math, 0);
	copy_without(L, -1, no_math);
	make_readonly(L);
	lua_setfield(L, lib, "math");
	lua_pop(L, 1);

	luaL_requiref(L, LUA_TABLIBNAME, luaopen_table, 0);
	copy_without(L, -1, none);
	wrap_field(L, "move", safe_move);
	wrap_field(L, "concat", safe_concat);
	wrap_field(L, "sort", safe_sort);
	make_readonly(L);
	lua_setfield(L, lib, "table");
	lua_pop(L, 1);

	luaL_requiref(L, LUA_UTF8LIBNAME, luaopen_utf8, 0);
	copy_without(L, -1, none);
	make_readonly(L);
	lua_setfield(L, lib, "utf8");
	lua_pop(L, 1);

	lua_createtable(L, 0, 2);
	lua_pushcfunction(L, script_lua_array);
	lua_setfield(L, -2, "array");
	script_push_null(L);
	lua_setfield(L, -2, "null");
	make_readonly(L);
	lua_setfield(L, lib, "json");

	lua_pushvalue(L, lib);
	lua_rawsetp(L, LUA_REGISTRYINDEX, &lib_key);

	/* The real globals table keeps load & co.; empty it so nothing can reach them. */
	lua_newtable(L);
	lua_rawseti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);

	lua_createtable(L, 0, 2);
	lua_pushcfunction(L, env_index);
	lua_setfield(L, -2, "__index");
	lua_pushboolean(L, 0);
	lua_setfield(L, -2, "__metatable");
	lua_rawsetp(L, LUA_REGISTRYINDEX, &env_mt_key);

	lua_createtable(L, 0, 2);
	lua_pushcfunction(L, steps_index);
	lua_setfield(L, -2, "__index");
	lua_pushboolean(L, 0);
	lua_setfield(L, -2, "__metatable");
	lua_rawsetp(L, LUA_REGISTRYINDEX, &steps_mt_key);

	lua_newtable(L);
	lua_rawsetp(L, LUA_REGISTRYINDEX, &expr_cache_key);
	lua_newtable(L);
	lua_rawsetp(L, LUA_REGISTRYINDEX, &chunk_cache_key);
	lua_pushliteral(L, "rein: evaluation limit reached");
	lua_rawsetp(L, LUA_REGISTRYINDEX, &stop_msg_key);

	script_bridge_init(L);
	lua_settop(L, 0);
	return 0;
}

int rein_script_new(rein_script **out)
{
	assert(out != NULL);
	int rc = REIN_OK;
	rein_script *s = rein_calloc(1, sizeof *s);
	if (s == NULL) {
		rc = REIN_ENOMEM;
		goto out;
	}
	s->mem_limit = SIZE_MAX;
	s->L = lua_newstate(sandbox_alloc, s);
	if (s->L == NULL) {
		rc = REIN_ENOMEM;
		goto out;
	}
	*(rein_script **)lua_getextraspace(s->L) = s;
	lua_pushcfunction(s->L, sandbox_setup);
	if (lua_pcall(s->L, 0, 0, 0) != LUA_OK) {
		rc = REIN_ENOMEM; /* setup only fails when allocation does */
		goto out;
	}
	lua_gc(s->L, LUA_GCCOLLECT);
	s->mem_after_gc = s->mem_used;
	*out = s;
	s = NULL;
out:
	rein_script_free(s);
	return rc;
}

void rein_script_free(rein_script *s)
{
	if (s == NULL)
		return;
	if (s->L)
		lua_close(s->L);
	pool_drain(s);
	rein_free(s);
}

/* ---- lazy environment ------------------------------------------------ */

static bool key_is(const char *k, size_t n, const char *lit, size_t ln)
{
	return n == ln && memcmp(k, lit, n) == 0;
}

/* __index of a per-evaluation _ENV: (env, key) -> value, cached into env. */
static int env_index(lua_State *L)
{
	rein_script *s = script_of(L);
	const rein_script_ctx *ctx = s->ctx;
	if (lua_type(L, 2) != LUA_TSTRING)
		return 0;
	size_t n;
	const char *k = lua_tolstring(L, 2, &n);
	const json_t *v = NULL;
	if (key_is(k, n, "input", 5)) {
		if (ctx && ctx->on_read)
			ctx->on_read(ctx->ud, REIN_READ_INPUT, NULL);
		script_push_json(L, ctx ? ctx->input : NULL);
	} else if (key_is(k, n, "run", 3)) {
		script_push_json(L, ctx ? ctx->run : NULL);
	} else if (key_is(k, n, "out", 3)) {
		if (ctx && ctx->on_read)
			ctx->on_read(ctx->ud, REIN_READ_OUT, NULL);
		script_push_json(L, ctx ? ctx->out : NULL);
	} else if (key_is(k, n, "steps", 5)) {
		lua_newtable(L);
		lua_rawgetp(L, LUA_REGISTRYINDEX, &steps_mt_key);
		lua_setmetatable(L, -2);
	} else if (ctx && ctx->vars && strlen(k) == n && (v = json_object_get(ctx->vars, k))) {
		script_push_json(L, v);
	} else {
		lua_rawgetp(L, LUA_REGISTRYINDEX, &lib_key);
		lua_pushvalue(L, 2);
		lua_rawget(L, -2);
		lua_remove(L, -2);
	}
	lua_pushvalue(L, 2);
	lua_pushvalue(L, -2);
	lua_rawset(L, 1);
	return 1;
}

/* __index of `steps`: (steps, name) -> {out = ...} or nil, cached. */
static int steps_index(lua_State *L)
{
	rein_script *s = script_of(L);
	const rein_script_ctx *ctx = s->ctx;
	if (ctx == NULL || ctx->step_out == NULL || lua_type(L, 2) != LUA_TSTRING)
		return 0;
	size_t n;
	const char *k = lua_tolstring(L, 2, &n);
	if (strlen(k) != n)
		return 0;
	if (ctx->on_read)
		ctx->on_read(ctx->ud, REIN_READ_STEP, k);
	const json_t *v = ctx->step_out(ctx->ud, k);
	if (v == NULL)
		return 0;
	lua_createtable(L, 0, 1);
	script_push_json(L, v);
	lua_setfield(L, -2, "out");
	lua_pushvalue(L, 2);
	lua_pushvalue(L, -2);
	lua_rawset(L, 1);
	return 1;
}

/* ---- compile and evaluate -------------------------------------------- */

struct job {
	rein_script *s;
	const char *src;
	size_t len;
	int kind;
	const rein_script_ctx *ctx;
	bool run;
	json_t *result;
	rein_err *err;
	int rc;
};

static int count_lines(const char *src, size_t len)
{
	int n = 1;
	for (size_t i = 0; i < len; i++)
		if (src[i] == '\n')
			n++;
	return n;
}

/* Records the error value on top of the stack, rewriting "script:N:" to "line N:". */
static void set_lua_error(lua_State *L, struct job *j, int code)
{
	char num[64];
	const char *msg;
	size_t n;
	if (lua_type(L, -1) == LUA_TSTRING) {
		msg = lua_tolstring(L, -1, &n);
	} else if (lua_type(L, -1) == LUA_TNUMBER) {
		if (lua_isinteger(L, -1))
			snprintf(num, sizeof num, "%lld", (long long)lua_tointeger(L, -1));
		else
			snprintf(num, sizeof num, "%.14g", (double)lua_tonumber(L, -1));
		msg = num;
		n = strlen(num);
	} else {
		snprintf(num, sizeof num, "error object is a %s value",
			 luaL_typename(L, -1));
		msg = num;
		n = strlen(num);
	}
	const char *pfx = &CHUNKNAME[1];
	size_t pl = strlen(pfx);
	if (n > pl + 1 && memcmp(msg, pfx, pl) == 0 && msg[pl] == ':') {
		char *end;
		long line = strtol(msg + pl + 1, &end, 10);
		if (end > msg + pl + 1 && *end == ':') {
			long max = count_lines(j->src, j->len);
			if (line > max)
				line = max;
			const char *rest = end + 1;
			if (*rest == ' ')
				rest++;
			j->rc = rein_err_set(j->err, code, "line %ld: %.*s", line,
					     (int)(n - (size_t)(rest - msg)), rest);
			return;
		}
	}
	j->rc = rein_err_set(j->err, code, "%.*s", (int)n, msg);
}

/* Pushes the compiled function for j->src, compiling and caching on a miss. */
static bool compile(lua_State *L, struct job *j)
{
	rein_script *s = j->s;
	const void *ck = j->kind == REIN_SCRIPT_EXPR ? &expr_cache_key : &chunk_cache_key;
	lua_rawgetp(L, LUA_REGISTRYINDEX, ck);
	lua_pushlstring(L, j->src, j->len);
	lua_pushvalue(L, -1);
	if (lua_rawget(L, -3) == LUA_TFUNCTION) {
		lua_replace(L, -3);
		lua_pop(L, 1);
		return true;
	}
	lua_pop(L, 1);
	const char *code = j->src;
	size_t clen = j->len;
	if (j->kind == REIN_SCRIPT_EXPR) {
		luaL_Buffer b;
		luaL_buffinit(L, &b);
		luaL_addstring(&b, "return (");
		luaL_addlstring(&b, j->src, j->len);
		luaL_addstring(&b, "\n)");
		luaL_pushresult(&b);
		code = lua_tolstring(L, -1, &clen);
	}
	int st = luaL_loadbufferx(L, code, clen, CHUNKNAME, "t");
	if (st != LUA_OK) {
		if (st == LUA_ERRMEM)
			j->rc = rein_err_set(j->err, REIN_ENOMEM, "out of memory compiling script");
		else
			set_lua_error(L, j, REIN_ESCRIPT);
		return false;
	}
	if (j->kind == REIN_SCRIPT_EXPR)
		lua_remove(L, -2);
	/* stack: cache, key, fn */
	if (++s->cache_count > CACHE_MAX) {
		lua_newtable(L);
		lua_rawsetp(L, LUA_REGISTRYINDEX, ck);
		s->cache_count = 0;
	} else {
		lua_pushvalue(L, -2);
		lua_pushvalue(L, -2);
		lua_rawset(L, -5);
	}
	lua_replace(L, -3);
	lua_pop(L, 1);
	return true;
}

static void set_limit_error(struct job *j)
{
	rein_script *s = j->s;
	if (s->stop == STOP_BUDGET)
		j->rc = rein_err_set(j->err, REIN_ELIMIT, "instruction budget of %llu exceeded",
				     (unsigned long long)s->budget);
	else if (s->stop == STOP_DEADLINE && atomic_load(&s->interrupt))
		j->rc = rein_err_set(j->err, REIN_ELIMIT, "evaluation interrupted");
	else if (s->stop == STOP_DEADLINE)
		j->rc = rein_err_set(j->err, REIN_ELIMIT, "time limit reached");
	else
		j->rc = rein_err_set(j->err, REIN_ELIMIT, "memory cap of %zu bytes exceeded",
				     s->mem_cap);
}

static int eval_protected(lua_State *L)
{
	struct job *j = lua_touserdata(L, 1);
	rein_script *s = j->s;
	lua_settop(L, 0);
	if (!compile(L, j) || !j->run)
		return 0;
	int fn = lua_gettop(L);

	lua_pushvalue(L, fn);
	lua_createtable(L, 0, 4);
	lua_rawgetp(L, LUA_REGISTRYINDEX, &env_mt_key);
	lua_setmetatable(L, -2);
	lua_setupvalue(L, -2, 1);

	const rein_script_limits *lim = j->ctx ? &j->ctx->limits : NULL;
	s->budget = lim && lim->instructions ? lim->instructions : DEFAULT_INSTRUCTIONS;
	s->mem_cap = lim && lim->memory_bytes ? lim->memory_bytes : DEFAULT_MEMORY;
	uint64_t step = s->budget < HOOK_STEP ? s->budget : HOOK_STEP;
	s->step = step;
	s->deadline_ms = lim ? lim->deadline_ms : 0;
	s->clock = lim && lim->clock ? lim->clock : &rein_clock_system;
	s->until_clock = 0; /* the first hook call reads the clock */
	s->ticks_left = s->budget / step;
	s->stop = STOP_NONE;
	s->ctx = j->ctx;
	s->mem_limit = s->mem_used + s->mem_cap < s->mem_used ? SIZE_MAX : s->mem_used + s->mem_cap;
	lua_sethook(L, sandbox_hook, LUA_MASKCOUNT, (int)step);
	int st = lua_pcall(L, 0, 1, 0);
	lua_sethook(L, NULL, 0, 0);
	s->mem_limit = SIZE_MAX;
	s->ctx = NULL;

	if (s->stop != STOP_NONE)
		set_limit_error(j);
	else if (st == LUA_ERRMEM)
		j->rc = rein_err_set(j->err, REIN_ENOMEM, "out of memory");
	else if (st != LUA_OK)
		set_lua_error(L, j, REIN_ESCRIPT);
	else
		j->rc = script_to_json(L, -1, &j->result, j->err);
	/* Drop the environment so its values can be collected. */
	lua_pushnil(L);
	lua_setupvalue(L, fn, 1);
	return 0;
}

static int run_job(rein_script *s, struct job *j)
{
	lua_State *L = s->L;
	if (s->busy)
		return j->rc = rein_err_set(j->err, REIN_EINVAL,
					    "sandbox is already evaluating (not reentrant)");
	s->busy = true;
	s->stop = STOP_NONE;
	lua_pushcfunction(L, eval_protected);
	lua_pushlightuserdata(L, j);
	int st = lua_pcall(L, 1, 0, 0);
	if (st != LUA_OK) {
		/* Raised outside the script itself: bridge or cache work failed. */
		s->mem_limit = SIZE_MAX;
		s->ctx = NULL;
		lua_sethook(L, NULL, 0, 0);
		if (s->stop != STOP_NONE)
			set_limit_error(j);
		else if (st == LUA_ERRMEM)
			j->rc = rein_err_set(j->err, REIN_ENOMEM, "out of memory");
		else
			set_lua_error(L, j, REIN_ESCRIPT);
		json_decref(j->result);
		j->result = NULL;
	}
	lua_settop(L, 0);
	if (s->mem_used > s->mem_after_gc * 2 + ((size_t)1 << 20)) {
		lua_gc(L, LUA_GCCOLLECT);
		s->mem_after_gc = s->mem_used;
	}
	s->busy = false;
	return j->rc;
}

int rein_script_check(rein_script *s, const char *src, int kind, rein_err *err)
{
	assert(s != NULL && src != NULL);
	assert(kind == REIN_SCRIPT_EXPR || kind == REIN_SCRIPT_CHUNK);
	struct job j = {.s = s, .src = src, .len = strlen(src), .kind = kind, .err = err};
	return run_job(s, &j);
}

int rein_script_eval(rein_script *s, const char *src, int kind, const rein_script_ctx *ctx,
		     json_t **result, rein_err *err)
{
	assert(s != NULL && src != NULL && result != NULL);
	assert(kind == REIN_SCRIPT_EXPR || kind == REIN_SCRIPT_CHUNK);
	struct job j = {.s = s, .src = src, .len = strlen(src), .kind = kind, .ctx = ctx,
			.run = true, .err = err};
	int rc = run_job(s, &j);
	if (rc == REIN_OK) {
		assert(j.result != NULL);
		*result = j.result;
	} else {
		json_decref(j.result);
	}
	return rc;
}

void rein_script_interrupt(rein_script *s, bool on)
{
	assert(s != NULL);
	atomic_store(&s->interrupt, on);
}
