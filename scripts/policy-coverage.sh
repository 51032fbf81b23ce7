#!/bin/sh
# Branch coverage of src/policy (gcov): builds every src/policy/*.c (policy.c,
# label.c) with --coverage into build/cov, runs tests/unit/test_policy.c
# against them, and prints, per file, gcov's summary and the source lines with
# a branch never taken, "LINE (how many)" (build/cov/FILE.gcov has the detail;
# docs/policy.md "Coverage" says why each of them is left).
# The coverage build defines NDEBUG: asserts are contracts, checked in every
# other build (ASan included, where test_policy runs with them on), and their
# failing side aborts, so no passing test can take it (SQLite measures its
# branch coverage the same way, with ALWAYS/NEVER compiled out).
set -e
B=build/cov
mkdir -p $B
rm -f $B/*.gcda
PK="jansson yaml-0.1 sqlite3 lua5.4 libuv libcurl libcrypto libmicrohttpd"
CF="-std=c11 -D_GNU_SOURCE -DNDEBUG -O0 -g --coverage -Isrc/base -Isrc/policy -Isrc/script"
make -s build/librein.a
OBJS=
for f in src/policy/*.c; do
	o=$B/$(basename "$f" .c).o
	cc $CF $(pkg-config --cflags $PK) -c "$(pwd)/$f" -o "$o"
	OBJS="$OBJS $o"
done
cc $CF -Itests/unit $(pkg-config --cflags $PK) -o $B/test_policy tests/unit/test_policy.c $OBJS \
	build/librein.a $(pkg-config --libs $PK cmocka) -lm -lpthread -Wl,--allow-multiple-definition
$B/test_policy >/dev/null
R=$(pwd)
cd $B
for f in "$R"/src/policy/*.c; do
	n=$(basename "$f")
	gcov -b -o . "$f" | grep -A4 "$n'"
	echo "$n: lines with a branch never taken:"
	awk '/^ *[-0-9#=]+\*?: *[0-9]+:/ { split($0, f, ":"); line = f[2] + 0 }
	     /^branch .*(never executed|taken 0%)/ { n[line]++ }
	     END { for (l in n) printf "  %d (%d)\n", l, n[l] }' "$n.gcov" | sort -n
done
