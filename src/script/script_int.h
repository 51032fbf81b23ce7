/*
 * Internal header of the script layer: the JSON<->Lua bridge shared by the
 * sandbox (sandbox.c) and templates (template.c). Not for other layers.
 */
#ifndef REIN_SCRIPT_INT_H
#define REIN_SCRIPT_INT_H

#include <lua.h>

#include "script.h"

/* Maximum table nesting accepted when turning a Lua value into JSON. */
#define SCRIPT_JSON_MAX_DEPTH 64

/* Registers the shared "array" metatable in L's registry. Raises on OOM. */
void script_bridge_init(lua_State *L);

/* Pushes the JSON null sentinel (a light userdata). Never raises. */
void script_push_null(lua_State *L);

/*
 * Pushes j as a Lua value (NULL: nil). Objects become tables, arrays become
 * tables tagged with the shared array metatable, null becomes nil (a null
 * member is absent, a null element a hole). Raises a
 * Lua error on OOM or absurd nesting, so call it only in protected mode.
 */
void script_push_json(lua_State *L, const json_t *j);

/*
 * Converts the Lua value at idx into a new JSON reference in *out. Uses only
 * API calls that never raise, so it may run outside protected mode and never
 * leaks. Errors: REIN_ESCRIPT (message names the path, e.g. "$.a[2]"),
 * REIN_ENOMEM.
 */
int script_to_json(lua_State *L, int idx, json_t **out, rein_err *err);

/* True when the value at idx is json.null. */
bool script_is_null(lua_State *L, int idx);
/* Pushes the deterministic text of the value at idx (no addresses). May raise. */
void script_push_tostring(lua_State *L, int idx);
/* The sandbox's tostring. */
int script_lua_tostring(lua_State *L);
/* Wraps find/match/gmatch/gsub/format of the string table on top (strguard.c). */
void script_guard_string(lua_State *L);
/* Instructions left in the running evaluation's budget (huge outside one). */
double script_budget_left(lua_State *L);
/* Charges units to the budget; raises the limit error when it is spent. */
void script_charge(lua_State *L, double units);
/* Marks the table at idx as a JSON array. Raises on bad argument. */
int script_lua_array(lua_State *L);

#endif
