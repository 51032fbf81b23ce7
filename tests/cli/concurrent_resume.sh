# Two and three `rein resume --all` at once on one database: contention on
# the store waits (no "database is locked"), a run held by another live
# worker is skipped, every one exits 0 and every run ends exactly once.
. "$ROOT/tests/cli/lib.sh"

# past T: true once the clock has passed T (seconds since the epoch)
past() { python3 -c "import sys, time; sys.exit(time.time() < $1)"; }

for round in 1 2 3 4 5 6; do
	rm -f rein.db rein.db-wal rein.db-shm
	i=0
	while [ $i -lt 8 ]; do
		expect_exit 4 "$REIN" run "$WF/tick" --max-wait 0
		i=$((i + 1))
	done
	# the last timer (1 s) is due by then
	due=$(python3 -c 'import time; print(time.time() + 1.2)')
	wait_until 30 "the timers to come due" past "$due"
	workers=$((2 + round % 2))
	pids=""
	w=0
	while [ $w -lt $workers ]; do
		"$REIN" resume --all --max-wait 0 >"r$w.out" 2>"r$w.err" &
		pids="$pids $!"
		w=$((w + 1))
	done
	w=0
	for p in $pids; do
		wait "$p"
		rc=$?
		[ $rc -eq 0 ] || { cat "r$w.err" >&2; fail "round $round: worker $w exited $rc"; }
		w=$((w + 1))
	done
	cat r*.out >all.out
	n=$(wc -l <all.out)
	[ "$n" -eq 8 ] || { cat all.out r*.err >&2; fail "round $round: $n results, want 8"; }
	[ "$(python3 -c 'import json,sys; print(len({json.loads(l)["run"] for l in open("all.out")}))')" -eq 8 ] ||
		fail "round $round: a run was reported twice"
	grep -v '"status":"succeeded"' all.out && fail "round $round: a run did not succeed"
	expect_exit 0 "$REIN" runs --json
	for run in $(json_get "$OUT" '" ".join(r["run"] for r in j)'); do
		e=$("$REIN" events "$run" | grep -c '"type":"run.ended"')
		[ "$e" -eq 1 ] || fail "round $round: run $run ended $e times"
		c=$(completions "$run")
		[ "$c" = "$(printf 'after 1\nbefore 1\npause 1')" ] || fail "run $run completions: $c"
	done
	expect_exit 0 "$REIN" audit verify
	rm -f r*.out r*.err
done
ok "concurrent resume --all: every worker exits 0, every run ends once"
