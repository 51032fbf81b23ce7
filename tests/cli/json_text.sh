# What rein writes it reads back, and every JSON text the CLI prints goes
# through the one writer: a real is printed in its shortest form (24.99, not
# 24.989999999999998) and a string holding a NUL byte survives the run row
# (`rein runs --json`, `rein show --json`) and the log (`rein events`).
. "$ROOT/tests/cli/lib.sh"

want='{"amount": 24.99, "cost": 0.004621, "s": "a\u0000b"}'
check() { # check WHAT TEXT PYEXPR: the value at PYEXPR is the output, its text shortest
	case "$2" in *24.989999*|*0.00462100000*) fail "$1 prints long reals: $2" ;; esac
	got=$(json_get "$2" "json.dumps($3, sort_keys=True)")
	[ "$got" = "$want" ] || fail "$1: $got, want $want"
}
expect_exit 0 "$REIN" run "$WF/reals"
check "rein run" "$OUT" 'j["output"]'
run=$(json_get "$OUT" 'j["run"]')
expect_exit 0 "$REIN" runs --json
check "rein runs --json" "$OUT" 'j[0]["output"]'
expect_exit 0 "$REIN" show "$run" --json
check "rein show --json" "$OUT" 'j["output"]'
expect_exit 0 "$REIN" events "$run"
check "rein events" "$(echo "$OUT" | tail -n 1)" 'j["data"]["output"]'
expect_exit 0 "$REIN" show "$run"
case "$OUT" in *24.989999*) fail "rein show prints long reals: $OUT" ;; esac
ok "reals shortest and NUL kept in run, runs, show, events"
