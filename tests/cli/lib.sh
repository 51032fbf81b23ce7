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

# skip WHY: this scenario cannot run here; tests/run.sh prints SKIP (a failure
# under CI=true).
skip() { echo "skip: $*"; exit 77; }

# wait_until SECONDS WHAT CMD...: runs CMD every 0.1 s until it succeeds;
# fails the scenario naming WHAT if it has not within SECONDS. The way to
# reach a precondition (never sleep a fixed time and hope).
wait_until() {
	_secs=$1
	_what=$2
	shift 2
	_tries=$((_secs * 10))
	while ! "$@" >/dev/null 2>&1; do
		_tries=$((_tries - 1))
		[ $_tries -gt 0 ] || fail "timed out after ${_secs}s waiting for $_what"
		sleep 0.1
	done
}

# first_run [STATUS]: the id of the newest run (with that status), or nothing
first_run() { "$REIN" runs ${1:+--status "$1"} --json | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j[0]["run"] if j else "")'; }
# has_run [STATUS]: true when a run (with that status) exists
has_run() { [ -n "$(first_run "$@")" ]; }
# has_event RUN TYPE: true when the run has an event of that type
has_event() { "$REIN" events "$1" | grep -q "\"type\":\"$2\""; }
