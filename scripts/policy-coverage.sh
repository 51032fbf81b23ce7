#!/bin/sh
# Branch coverage of src/policy (gcov): builds policy.c with --coverage into
# build/cov, runs tests/unit/test_policy.c against it, prints gcov's summary.
set -e
B=build/cov
mkdir -p $B
PK="jansson yaml-0.1 sqlite3 lua5.4 libuv libcurl libcrypto libmicrohttpd"
make -s build/librein.a
cc -std=c11 -D_GNU_SOURCE -O0 -g --coverage -Isrc/base -Isrc/policy -Isrc/script \
	$(pkg-config --cflags $PK) -c src/policy/policy.c -o $B/policy.o
cc -std=c11 -D_GNU_SOURCE -O0 -g --coverage -Isrc/base -Isrc/policy -Isrc/script -Itests/unit \
	$(pkg-config --cflags $PK) -o $B/test_policy tests/unit/test_policy.c $B/policy.o \
	build/librein.a $(pkg-config --libs $PK cmocka) -lm -lpthread -Wl,--allow-multiple-definition
$B/test_policy >/dev/null
cd $B && gcov -b -o . ../../src/policy/policy.c | grep -A4 "policy.c'"
