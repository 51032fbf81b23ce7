/*
 * script: the Lua 5.4 sandbox. Expressions (`when`, `${…}` templates) and
 * code steps run here with no io, os, require, load, dofile, string.dump,
 * debug, coroutine or randomness; each evaluation has an instruction budget
 * and a memory cap. A script that escapes, loops or allocates without bound
 * fails its own evaluation with a clear error; the sandbox stays usable.
 * Deterministic: the same source and context always give the same result.
 */
#ifndef REIN_SCRIPT_H
#define REIN_SCRIPT_H

#include "base.h"

typedef struct rein_script rein_script;

enum {
	REIN_SCRIPT_EXPR = 1,  /* an expression: "out.category == 'refund'" */
	REIN_SCRIPT_CHUNK = 2, /* a chunk whose `return` value is the result */
};

typedef struct rein_script_limits {
	uint64_t instructions; /* VM instructions per evaluation; 0 = default (10,000,000) */
	size_t memory_bytes;   /* bytes allocated beyond the baseline; 0 = default (32 MiB) */
	/* Wall-clock limit: the evaluation fails with REIN_ELIMIT "time limit
	 * reached" once clock (NULL: the system clock) reads deadline_ms or later,
	 * checked every 16,000 instructions; 0 = none. For a step's or run's
	 * timeout: pass the earlier of the two. */
	int64_t deadline_ms;
	const rein_clock *clock;
} rein_script_limits;

/*
 * What an evaluation sees, all borrowed for the duration of the call:
 *   input  the run's input (NULL: nil)
 *   run    {id, workflow, version} (NULL: nil)
 *   out    the current step's output, for `when` (NULL: nil)
 *   steps  steps.<name>.out, resolved lazily through step_out(ud, name), which
 *          returns a borrowed value or NULL when that step has no output yet
 *          (then steps.<name> is nil).
 *   vars   extra globals (an object; NULL: none), e.g. {"why": "..."}
 *   on_read  optional: told (with ud) of the first read of each root the
 *          evaluation makes: REIN_READ_INPUT, REIN_READ_OUT, or REIN_READ_STEP
 *          with the step's name (steps.<name>, once per name). Provenance
 *          labels come from it (docs/policy.md); it must not evaluate scripts.
 */
enum { REIN_READ_INPUT = 1, REIN_READ_OUT, REIN_READ_STEP };
typedef struct rein_script_ctx {
	const json_t *input;
	const json_t *run;
	const json_t *out;
	const json_t *(*step_out)(void *ud, const char *name);
	void *ud;
	const json_t *vars;
	void (*on_read)(void *ud, int what, const char *name);
	rein_script_limits limits;
} rein_script_ctx;

/*
 * Creates a sandbox (one Lua state with a compile cache). Caller frees. A
 * sandbox serves one evaluation at a time (use one per thread); a call made
 * from inside a step_out callback fails with REIN_EINVAL.
 */
int rein_script_new(rein_script **out);
void rein_script_free(rein_script *s);

/*
 * Compiles src without running it (for `rein validate`). On a syntax error
 * returns REIN_ESCRIPT with err->msg like "line 1: unexpected symbol near '='"
 * (line relative to src).
 */
int rein_script_check(rein_script *s, const char *src, int kind, rein_err *err);

/*
 * Evaluates src (compiled once and cached by source text). On success *result
 * is a new reference (Lua nil becomes JSON null). Errors: REIN_ESCRIPT for a
 * runtime error or a result that cannot become JSON (message says why and
 * where), REIN_ELIMIT when the instruction budget or memory cap was hit.
 */
int rein_script_eval(rein_script *s, const char *src, int kind, const rein_script_ctx *ctx,
		     json_t **result, rein_err *err);

/*
 * Expands templates in a JSON value: every string containing ${expr} is
 * evaluated. A string that is exactly one "${expr}" becomes the expression's
 * value (any JSON type); otherwise each ${expr} is replaced by its string form
 * inside the string. Objects and arrays are walked. Returns a new reference.
 */
int rein_script_template(rein_script *s, const json_t *tmpl, const rein_script_ctx *ctx,
			 json_t **result, rein_err *err);

/*
 * While on, every evaluation of s fails at its next instruction-hook call
 * (within about 1,000 instructions) with REIN_ELIMIT "evaluation interrupted",
 * and pcall cannot catch it. Safe to call from another thread or a signal
 * handler (an atomic flag), e.g. a timer or a cancel; the caller turns it off
 * before the next evaluation that should run.
 */
void rein_script_interrupt(rein_script *s, bool on);
/* Checks every ${expr} inside str compiles; err names the expression. */
int rein_script_template_check(rein_script *s, const char *str, rein_err *err);

/* True when str contains a "${". */
bool rein_script_has_template(const char *str);

#endif
