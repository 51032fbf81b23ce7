#!/bin/sh
# Runs each libFuzzer target for a short fixed time over its seed corpus
# (fuzz/corpus/TARGET, read only: new inputs go to a scratch directory), two
# at a time. Usage: scripts/fuzz-smoke.sh FUZZ_BUILD_DIR [SECONDS]
# Exits non-zero if any target crashed, leaked or hung; its log is printed.
set -u
F=${1:-build/fuzz}
T=${2:-10}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
tmp=$(mktemp -d /tmp/rein-fuzz.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail=0

one() { # target
	mkdir -p "$tmp/$1/new" "$tmp/$1/art"
	seeds=fuzz/corpus/${1#fuzz_}
	[ -d "$seeds" ] || { echo "FAIL fuzz/$1: no seed corpus $seeds"; return 1; }
	if "$F/$1" -max_total_time="$T" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$tmp/$1/art/" "$tmp/$1/new" "$seeds" >"$tmp/$1.log" 2>&1; then
		echo "PASS fuzz/$1 ($(grep -o 'stat::number_of_executed_units: *[0-9]*' "$tmp/$1.log" | grep -o '[0-9]*$') runs)"
	else
		tail -n 40 "$tmp/$1.log"
		echo "FAIL fuzz/$1"
		return 1
	fi
}

set --
for b in "$F"/fuzz_*; do
	[ -x "$b" ] && set -- "$@" "$(basename "$b")"
done
[ $# -gt 0 ] || { echo "FAIL fuzz: no targets in $F"; exit 1; }
while [ $# -gt 0 ]; do
	one "$1" &
	p1=$!
	p2=
	if [ $# -gt 1 ]; then
		one "$2" &
		p2=$!
		shift
	fi
	shift
	wait $p1 || fail=1
	[ -n "$p2" ] && { wait $p2 || fail=1; }
done
exit $fail
