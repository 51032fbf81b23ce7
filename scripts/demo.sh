#!/bin/sh
# The demo: runs the example workflow twice (a small amount and a large one
# that escalates), shows the recorded events of the first run and verifies
# the audit chains. Usage: scripts/demo.sh PATH/TO/rein
set -eu
REIN=${1:-build/rein}
DIR=$(mktemp -d /tmp/rein-demo.XXXXXX)
export REIN_DB="$DIR/rein.db"
echo "== rein validate examples/hello"
"$REIN" validate examples/hello
echo
echo "== rein run examples/hello --input '{\"name\": \"ada\", \"amount\": 7}'"
out=$("$REIN" run examples/hello --input '{"name": "ada", "amount": 7}')
echo "$out"
run=$(printf '%s' "$out" | sed 's/^{"run":"\([^"]*\)".*/\1/')
echo
echo "== rein events $run"
"$REIN" events "$run"
echo
echo "== rein run examples/hello --input '{\"name\": \"bob\", \"amount\": 700}'   (exit 3: escalated)"
"$REIN" run examples/hello --input '{"name": "bob", "amount": 700}' || echo "(exit $?)"
echo
echo "== rein runs"
"$REIN" runs
echo
echo "== rein audit verify"
"$REIN" audit verify
echo
echo "demo store: $REIN_DB"
