#!/bin/sh
# Runs every test: the unit programs (cmocka), the data-driven spec cases and
# the command-line scenarios. Usage: tests/run.sh BUILD_DIR (e.g. build/asan).
# Prints one line per test and a summary; exits non-zero if any failed.
set -u
B=${1:-build/asan}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
REIN="$ROOT/$B/rein"
export REIN ROOT
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
pass=0
fail=0
failed=""
TMPROOT=$(mktemp -d /tmp/rein-tests.XXXXXX)
trap 'rm -rf "$TMPROOT"' EXIT

result() { # name status
	if [ "$2" -eq 0 ]; then
		pass=$((pass + 1))
		echo "PASS $1"
	else
		fail=$((fail + 1))
		failed="$failed $1"
		echo "FAIL $1"
	fi
}

cd "$ROOT"

# the real MCP servers the tests talk to (npm registry; quick when installed)
sh tests/mcp/setup.sh >"$TMPROOT/mcp-setup.log" 2>&1 || { echo "tests/mcp/setup.sh failed:"; cat "$TMPROOT/mcp-setup.log"; }

# 1. unit programs
for t in "$B"/tests/test_*; do
	[ -x "$t" ] || continue
	name=$(basename "$t")
	log="$TMPROOT/$name.log"
	( cd "$ROOT" && "$t" ) >"$log" 2>&1
	st=$?
	[ $st -ne 0 ] && tail -n 40 "$log"
	grep -E '^(draft|SEED|sim:)' "$log" 2>/dev/null | head -5
	result "unit/$name" $st
done

# 2. spec cases: each invalid spec must fail `rein validate` with exactly the
#    lines in its expected.txt; each valid one must pass.
cd "$ROOT/tests/specs/invalid"
for d in */; do
	d=${d%/}
	got="$TMPROOT/spec-$d.txt"
	"$REIN" validate "$d" >/dev/null 2>"$got"
	st=$?
	if [ $st -eq 2 ] && diff -u "$d/expected.txt" "$got" >"$TMPROOT/spec-$d.diff"; then
		result "spec/invalid/$d" 0
	else
		echo "  exit $st; diff against $d/expected.txt:"
		sed 's/^/  /' "$TMPROOT/spec-$d.diff"
		result "spec/invalid/$d" 1
	fi
done
cd "$ROOT"
for d in tests/specs/valid/*/ examples/*/; do
	[ -f "$d/workflow.yaml" ] || continue
	"$REIN" validate "$d" >"$TMPROOT/valid.log" 2>&1
	st=$?
	[ $st -ne 0 ] && cat "$TMPROOT/valid.log"
	result "spec/valid/$(basename "$d")" $st
done

# 3. command-line scenarios
for s in tests/cli/*.sh; do
	case $(basename "$s") in lib.sh | toollib.sh) continue ;; esac
	name=$(basename "$s" .sh)
	work="$TMPROOT/cli-$name"
	mkdir -p "$work"
	( cd "$work" && sh "$ROOT/$s" ) >"$TMPROOT/cli-$name.log" 2>&1
	st=$?
	[ $st -ne 0 ] && tail -n 40 "$TMPROOT/cli-$name.log"
	result "cli/$name" $st
done

echo
echo "tests: $pass passed, $fail failed"
[ -n "$failed" ] && echo "failed:$failed"
[ $fail -eq 0 ]
