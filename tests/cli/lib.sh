# Shared helpers for the command-line scenarios. Each scenario runs in its own
# empty directory with $REIN (the binary) and $ROOT (the repository) set.
set -u
export REIN_DB="$PWD/rein.db"
WF="$ROOT/tests/cli/workflows"

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

# expect_exit CODE CMD...: runs CMD, fails unless it exits CODE; stdout in $OUT.
expect_exit() {
	_want=$1
	shift
	OUT=$("$@" 2>"$PWD/stderr.txt")
	_got=$?
	[ "$_got" -eq "$_want" ] || { cat "$PWD/stderr.txt" >&2; fail "'$*' exited $_got, want $_want"; }
}

# json_get JSON EXPR: evaluates a Python expression on the parsed JSON `j`.
json_get() { printf '%s' "$1" | python3 -c "import json,sys; j=json.load(sys.stdin); print($2)"; }

# completions RUN: "step count" lines for step.completed events.
completions() {
	"$REIN" events "$1" | python3 -c '
import json, sys, collections
c = collections.Counter(json.loads(l)["step"] for l in sys.stdin if json.loads(l)["type"] == "step.completed")
for k in sorted(c): print(k, c[k])'
}
