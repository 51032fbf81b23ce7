/*
 * Guards for the string functions that run in C, out of reach of the
 * sandbox's instruction hook, and for the ones that would leak a process
 * address into a script's output.
 *
 * Pattern functions (find, match, gmatch, gsub). Lua's matcher backtracks;
 * with no alternation its worst case is polynomial, but the degree grows
 * with the number of quantified items (".-.-.-.-x" on 100 kB ran for
 * minutes). Before calling the real function, pattern_cost walks the pattern
 * the way the matcher does and bounds the number of match paths:
 *
 *   reach   how many times the matcher may arrive at the item: the subject
 *           length + 1 for the first (1 when find/match/gsub is anchored by
 *           '^'); a quantified item multiplies it by (the longest run of
 *           subject bytes its class matches) + 1, a '?' item by 2: each is a
 *           point where the matcher may come back and retry the rest
 *   cost    the sum over items of reach * (1 + the item's own scan): the
 *           run for a greedy item, the subject length for %b and for a
 *           back-reference (%1), plus the subject length per quantified item
 *           for measuring its runs
 *
 * A quantified item at the end (only ')' after it) always succeeds, so it
 * adds no paths: "%s+", "(%w+)=(%w+)" on prose cost a few units per byte.
 * Plain finds cost (n + 1) * (m + 1). The cost is charged to the instruction
 * budget like the other C loops; when it is more than the budget has left,
 * the call raises a catchable error instead of running.
 *
 * tostring and string.format("%s"/"%p") print a table's, function's or
 * userdata's address, which differs from process to process and would break
 * replay: here they print the type (or the metatable's __name, e.g. "array";
 * __tostring is honoured) and %p is refused.
 */
#include "script_int.h"

#include <ctype.h>
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

/* ---- deterministic tostring ------------------------------------------ */

void script_push_tostring(lua_State *L, int idx)
{
	idx = lua_absindex(L, idx);
	int t = lua_type(L, idx);
	if (t != LUA_TTABLE && t != LUA_TUSERDATA && t != LUA_TLIGHTUSERDATA &&
	    t != LUA_TFUNCTION && t != LUA_TTHREAD) {
		luaL_tolstring(L, idx, NULL);
		return;
	}
	if (luaL_getmetafield(L, idx, "__tostring") != LUA_TNIL) {
		lua_pushvalue(L, idx);
		lua_call(L, 1, 1);
		if (!lua_isstring(L, -1))
			luaL_error(L, "'__tostring' must return a string");
		return;
	}
	if (script_is_null(L, idx)) {
		lua_pushliteral(L, "null");
		return;
	}
	int nt = luaL_getmetafield(L, idx, "__name");
	if (nt == LUA_TSTRING)
		return;
	if (nt != LUA_TNIL)
		lua_pop(L, 1);
	lua_pushstring(L, luaL_typename(L, idx));
}

int script_lua_tostring(lua_State *L)
{
	luaL_checkany(L, 1);
	script_push_tostring(L, 1);
	return 1;
}

/* string.format: %p refused; a %s argument that is not a string or number is
 * replaced by its deterministic text before the real format runs. */
static int safe_format(lua_State *L)
{
	size_t len;
	const char *f = luaL_checklstring(L, 1, &len);
	int top = lua_gettop(L), arg = 1;
	for (size_t i = 0; i < len; i++) {
		if (f[i] != '%')
			continue;
		if (++i < len && f[i] == '%')
			continue;
		arg++;
		while (i < len && strchr("-+ #0123456789.", f[i]))
			i++;
		if (i >= len)
			break;
		if (f[i] == 'p')
			return luaL_error(L, "string.format: '%%p' is not available in the sandbox "
					     "(an address differs from run to run)");
		if (f[i] == 's' && arg <= top && !lua_isstring(L, arg)) {
			script_push_tostring(L, arg);
			lua_replace(L, arg);
		}
	}
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_insert(L, 1);
	lua_call(L, top, LUA_MULTRET);
	return lua_gettop(L);
}

/* ---- pattern cost ---------------------------------------------------- */

/* Lua's match_class (lstrlib.c). */
static bool class_match(int c, int cl)
{
	bool res;
	switch (tolower(cl)) {
	case 'a': res = isalpha(c); break;
	case 'c': res = iscntrl(c); break;
	case 'd': res = isdigit(c); break;
	case 'g': res = isgraph(c); break;
	case 'l': res = islower(c); break;
	case 'p': res = ispunct(c); break;
	case 's': res = isspace(c); break;
	case 'u': res = isupper(c); break;
	case 'w': res = isalnum(c); break;
	case 'x': res = isxdigit(c); break;
	default: return cl == c;
	}
	return isupper(cl) ? !res : res;
}

/* Lua's matchbracketclass: p at '[', ec at the closing ']'. */
static bool bracket_match(int c, const char *p, const char *ec)
{
	bool sig = true;
	if (p[1] == '^') {
		sig = false;
		p++;
	}
	while (++p < ec) {
		if (*p == '%') {
			p++;
			if (class_match(c, (unsigned char)*p))
				return sig;
		} else if (p[1] == '-' && p + 2 < ec) {
			p += 2;
			if ((unsigned char)p[-2] <= c && c <= (unsigned char)*p)
				return sig;
		} else if ((unsigned char)*p == c) {
			return sig;
		}
	}
	return !sig;
}

/* Lua's singlematch for the item [p, ep). */
static bool item_match(int c, const char *p, const char *ep)
{
	switch (*p) {
	case '.': return true;
	case '%': return class_match(c, (unsigned char)p[1]);
	case '[': return bracket_match(c, p, ep - 1);
	default: return (unsigned char)*p == c;
	}
}

/* Lua's classEnd: the end of the single-class item at p, NULL if malformed. */
static const char *item_end(const char *p, const char *pend)
{
	if (*p == '%')
		return p + 1 < pend ? p + 2 : NULL;
	if (*p != '[')
		return p + 1;
	p++;
	if (p < pend && *p == '^')
		p++;
	do {
		if (p >= pend)
			return NULL;
		if (*p++ == '%' && p < pend)
			p++;
	} while (p >= pend || *p != ']');
	return p + 1;
}

static double longest_run(const char *s, size_t n, const char *p, const char *ep)
{
	size_t best = 0, cur = 0;
	for (size_t i = 0; i < n; i++) {
		cur = item_match((unsigned char)s[i], p, ep) ? cur + 1 : 0;
		if (cur > best)
			best = cur;
	}
	return (double)best;
}

static bool only_closers(const char *p, const char *pend)
{
	for (; p < pend; p++)
		if (*p != ')')
			return false;
	return true;
}

/*
 * The bound above for matching pat against s; *scans gets the part spent
 * measuring runs (charged even when the call is refused). A malformed
 * pattern costs the subject length: Lua itself refuses it.
 */
static double pattern_cost(const char *s, size_t n, const char *pat, size_t m, bool anchorable,
			   double left, double *scans)
{
	const char *p = pat, *pend = pat + m;
	double dn = (double)n, reach = dn + 1, total = 0;
	*scans = 0;
	if (anchorable && p < pend && *p == '^') {
		reach = 1;
		p++;
	}
	while (p < pend) {
		if (*p == '(' || *p == ')' || (*p == '$' && p + 1 == pend)) {
			p++;
			continue;
		}
		if (*p == '%' && p + 1 < pend && p[1] == 'b') {
			if (p + 3 >= pend)
				return dn;
			total += reach * (1 + dn);
			p += 4;
			continue;
		}
		if (*p == '%' && p + 1 < pend && p[1] == 'f') {
			p += 2;
			const char *ep = p < pend && *p == '[' ? item_end(p, pend) : NULL;
			if (ep == NULL)
				return dn;
			total += reach;
			p = ep;
			continue;
		}
		if (*p == '%' && p + 1 < pend && isdigit((unsigned char)p[1])) {
			total += reach * (1 + dn);
			p += 2;
			continue;
		}
		const char *ep = item_end(p, pend);
		if (ep == NULL)
			return dn;
		char q = ep < pend ? *ep : '\0';
		bool last = only_closers(ep + (q == '*' || q == '+' || q == '-' || q == '?'), pend);
		if (q == '?') {
			total += reach;
			if (!last)
				reach *= 2;
			p = ep + 1;
		} else if (q == '*' || q == '+' || q == '-') {
			*scans += dn;
			if (*scans > left) /* measuring alone would exceed the budget */
				return *scans;
			double run = longest_run(s, n, p, ep);
			if (last) { /* cannot fail once reached: its scans never overlap */
				total += reach + dn;
			} else {
				total += reach * (1 + (q == '-' ? 0 : run));
				reach *= run + 1;
			}
			p = ep + 1;
		} else {
			total += reach;
			p = ep;
		}
	}
	return total + reach + *scans;
}

static bool has_specials(const char *p, size_t m)
{
	for (size_t i = 0; i < m; i++)
		if (strchr("^$*+?.([%-", p[i]) && p[i] != '\0')
			return true;
	return false;
}

/* Charges the call's bound or refuses it; then calls the original (upvalue 1). */
static int guarded(lua_State *L, const char *fn, bool anchorable, bool plain_arg)
{
	size_t n, m;
	const char *s = luaL_checklstring(L, 1, &n);
	const char *p = luaL_checklstring(L, 2, &m);
	double left = script_budget_left(L), scans = 0, cost;
	if (plain_arg && (lua_toboolean(L, 4) || !has_specials(p, m)))
		cost = ((double)n + 1) * ((double)m + 1);
	else
		cost = pattern_cost(s, n, p, m, anchorable, left, &scans);
	if (cost > left) {
		script_charge(L, scans);
		char msg[200];
		snprintf(msg, sizeof msg,
			 "string.%s: pattern too costly for a subject of %zu bytes (up to %.3g "
			 "matching steps, %.3g left in the instruction budget)",
			 fn, n, cost, left);
		return luaL_error(L, "%s", msg);
	}
	script_charge(L, cost);
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_insert(L, 1);
	lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
	return lua_gettop(L);
}

static int safe_find(lua_State *L) { return guarded(L, "find", true, true); }
static int safe_match(lua_State *L) { return guarded(L, "match", true, false); }
static int safe_gmatch(lua_State *L) { return guarded(L, "gmatch", false, false); }
static int safe_gsub(lua_State *L) { return guarded(L, "gsub", true, false); }

void script_guard_string(lua_State *L)
{
	static const struct {
		const char *name;
		lua_CFunction f;
	} wraps[] = {
		{"find", safe_find},     {"match", safe_match}, {"gmatch", safe_gmatch},
		{"gsub", safe_gsub},     {"format", safe_format},
	};
	for (size_t i = 0; i < sizeof wraps / sizeof wraps[0]; i++) {
		lua_getfield(L, -1, wraps[i].name);
		lua_pushcclosure(L, wraps[i].f, 1);
		lua_setfield(L, -2, wraps[i].name);
	}
}
