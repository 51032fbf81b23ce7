#!/bin/sh
# Branch coverage of src/policy (gcov): builds policy.c with --coverage into
# build/cov, runs tests/unit/test_policy.c against it, prints gcov's summary
# and the source lines with a branch never taken (build/cov/policy.c.gcov has
# the detail; docs/policy.md "Coverage" says why each of them is left).
set -e
B=build/cov
mkdir -p $B
rm -f $B/*.gcda
PK="jansson yaml-0.1 sqlite3 lua5.4 libuv libcurl libcrypto libmicrohttpd"
make -s build/librein.a
cc -std=c11 -D_GNU_SOURCE -O0 -g --coverage -Isrc/base -Isrc/policy -Isrc/script \
	$(pkg-config --cflags $PK) -c "$(pwd)/src/policy/policy.c" -o $B/policy.o
cc -std=c11 -D_GNU_SOURCE -O0 -g --coverage -Isrc/base -Isrc/policy -Isrc/script -Itests/unit \
	$(pkg-config --cflags $PK) -o $B/test_policy tests/unit/test_policy.c $B/policy.o \
	build/librein.a $(pkg-config --libs $PK cmocka) -lm -lpthread -Wl,--allow-multiple-definition
$B/test_policy >/dev/null
cd $B && gcov -b -o . "$OLDPWD/src/policy/policy.c" | grep -A4 "policy.c'"
echo "lines with a branch never taken:"
awk '/^ *[-0-9#=]+\*?: *[0-9]+:/ { split($0, f, ":"); line = f[2] + 0 }
     /^branch .*(never executed|taken 0%)/ { n[line]++ }
     END { for (l in n) printf "  %d (%d)\n", l, n[l] }' policy.c.gcov | sort -n
