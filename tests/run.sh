#!/bin/sh
# Runs every test: the unit programs (cmocka), the data-driven spec cases and
# the command-line scenarios. Usage: tests/run.sh BUILD_DIR (e.g. build/asan).
# Prints one line per test (PASS, FAIL or SKIP) and a summary; exits non-zero
# if any failed, or under CI=true if any was skipped (CI must run everything).
# The simulators (test_sim*) run with a random seed (printed: replay with
# REIN_SEED=N); under CI=true also with each seed of REIN_SIM_SEEDS (default
# a fixed set), so a CI failure can always be replayed.
set -u
B=${1:-build/asan}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
REIN="$ROOT/$B/rein"
export REIN ROOT
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
CI=${CI:-false}
SIM_SEEDS=${REIN_SIM_SEEDS:-$([ "$CI" = true ] && echo "1 1000 424242")}
pass=0
fail=0
skip=0
failed=""
skipped=""
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

skipped() { # name why
	skip=$((skip + 1))
	skipped="$skipped $1"
	echo "SKIP $1 ($2)"
}

cd "$ROOT"

# the real MCP servers the tests talk to (npm registry; quick when installed)
sh tests/mcp/setup.sh >"$TMPROOT/mcp-setup.log" 2>&1 || { echo "tests/mcp/setup.sh failed:"; cat "$TMPROOT/mcp-setup.log"; }

# 1. unit programs
for t in "$B"/tests/test_*; do
	[ -x "$t" ] || continue
	name=$(basename "$t")
	log="$TMPROOT/$name.log"
	seeds=random
	case $name in test_sim*) [ -n "$SIM_SEEDS" ] && seeds="$SIM_SEEDS random" ;; esac
	for seed in $seeds; do
		label="unit/$name"
		[ "$seeds" != random ] && label="unit/$name[seed=$seed]"
		if [ "$seed" = random ]; then
			( cd "$ROOT" && "$t" ) >"$log" 2>&1
		else
			# test_sim runs one workflow for a given seed unless told: run a
			# batch (seed, seed+1, ...) so that crashes are injected
			( cd "$ROOT" && export REIN_SEED=$seed &&
				{ [ "$name" != test_sim ] || export REIN_SIM_N=${REIN_SIM_N:-100}; } &&
				"$t" ) >"$log" 2>&1
		fi
		st=$?
		[ $st -ne 0 ] && tail -n 40 "$log"
		grep -E '^(draft|SEED|sim:)' "$log" 2>/dev/null | head -5
		# cmocka's skip(): the program passes, but some cases did not run
		nskip=$(grep -c '^\[  SKIPPED \]' "$log" 2>/dev/null)
		if [ $st -eq 0 ] && [ "${nskip:-0}" -gt 0 ]; then
			grep -m1 -i 'skipped (' "$log" | sed 's/^/  /'
			skipped "$label" "$nskip case(s) skipped"
		else
			result "$label" $st
		fi
	done
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
	case $(basename "$s") in lib.sh | toollib.sh | modellib.sh) continue ;; esac
	name=$(basename "$s" .sh)
	work="$TMPROOT/cli-$name"
	mkdir -p "$work"
	( cd "$work" && sh "$ROOT/$s" ) >"$TMPROOT/cli-$name.log" 2>&1
	st=$?
	if [ $st -eq 77 ]; then # a scenario that cannot run here (tests/cli/lib.sh: skip)
		skipped "cli/$name" "$(tail -n 1 "$TMPROOT/cli-$name.log")"
		continue
	fi
	[ $st -ne 0 ] && tail -n 40 "$TMPROOT/cli-$name.log"
	result "cli/$name" $st
done

echo
echo "tests: $pass passed, $fail failed, $skip skipped"
[ -n "$failed" ] && echo "failed:$failed"
[ -n "$skipped" ] && echo "skipped:$skipped"
if [ "$CI" = true ] && [ $skip -gt 0 ]; then
	echo "CI=true: a skipped test is a failure (install what it needs: make deps)"
	fail=$((fail + skip))
fi
[ $fail -eq 0 ]
