# rein: one build. `make` builds build/rein and build/librein.a; `make test`
# builds with ASan+UBSan into build/asan and runs every test; `make demo` runs
# the example; `make fuzz` builds the libFuzzer targets; `make bench` the benchmarks.

PKGS    := jansson yaml-0.1 sqlite3 lua5.4 libuv libcurl libcrypto libmicrohttpd
CC      ?= cc
WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter
CSTD    := -std=c11 -D_GNU_SOURCE
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm -lpthread
LAYERS  := base policy spec schema script engine store io mcp model trace tools runner eval
INCS    := $(addprefix -Isrc/,$(LAYERS))

LIB_SRC := $(foreach l,$(LAYERS),$(wildcard src/$(l)/*.c))
CLI_SRC := $(wildcard src/cli/*.c)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
# the loopback test servers: one program per .c, all built with loopback.c
TOOL_LIB := tests/tools/loopback.c
TOOL_SRC := $(filter-out $(TOOL_LIB),$(wildcard tests/tools/*.c))
BENCH_SRC := $(wildcard bench/*.c)
FUZZ_SRC := $(wildcard fuzz/fuzz_*.c)

# Release build
B       := build
CFLAGS_R := $(CSTD) -O2 -g $(WARN) $(INCS) $(PKG_CFLAGS)
LIB_OBJ := $(LIB_SRC:%.c=$(B)/obj/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(B)/obj/%.o)

# Sanitizer build for tests
A       := build/asan
SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
CFLAGS_A := $(CSTD) -O1 -g $(SAN) $(WARN) $(INCS) $(PKG_CFLAGS)
LIB_OBJ_A := $(LIB_SRC:%.c=$(A)/obj/%.o)
CLI_OBJ_A := $(CLI_SRC:%.c=$(A)/obj/%.o)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(A)/tests/%)
TOOL_BIN := $(TOOL_SRC:tests/tools/%.c=$(A)/tools/%)

.PHONY: all deps test demo fuzz fuzz-smoke check-src bench clean check-build asan

all: $(B)/rein $(B)/librein.a

deps:
	@scripts/deps.sh

$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_R) -MMD -MP -c $< -o $@

$(B)/librein.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	ar rcs $@ $^

$(B)/rein: $(CLI_OBJ) $(B)/librein.a
	$(CC) $(CFLAGS_R) -o $@ $(CLI_OBJ) $(B)/librein.a $(PKG_LIBS)

$(A)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_A) -MMD -MP -c $< -o $@

$(A)/librein.a: $(LIB_OBJ_A)
	@mkdir -p $(dir $@)
	ar rcs $@ $^

$(A)/rein: $(CLI_OBJ_A) $(A)/librein.a
	$(CC) $(CFLAGS_A) -o $@ $(CLI_OBJ_A) $(A)/librein.a $(PKG_LIBS)

$(A)/tests/%: tests/unit/%.c $(wildcard tests/unit/*.h) $(A)/librein.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_A) -Itests/unit -o $@ $< $(A)/librein.a $(PKG_LIBS) $(shell pkg-config --libs cmocka)

$(A)/tools/%: tests/tools/%.c $(TOOL_LIB) tests/tools/loopback.h $(A)/librein.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_A) -o $@ $< $(TOOL_LIB) $(A)/librein.a $(PKG_LIBS)

asan: $(A)/rein $(UNIT_BIN) $(TOOL_BIN)

# the source checks (layering, banned calls), the suite, then each fuzz target
# for FUZZ_SECONDS over its seed corpus
FUZZ_SECONDS ?= 10
test: deps check-src
	@$(MAKE) --no-print-directory -j2 asan
	@tests/run.sh $(A)
	@$(MAKE) --no-print-directory -j2 $(FUZZ_BIN)
	@scripts/fuzz-smoke.sh $(F) $(FUZZ_SECONDS)

check-src:
	@python3 scripts/check-src.py

fuzz-smoke: fuzz
	@scripts/fuzz-smoke.sh $(F) $(FUZZ_SECONDS)

demo: deps
	@$(MAKE) --no-print-directory -j2 all $(B)/tools/toolserver
	@scripts/demo.sh $(B)

# libFuzzer targets (clang), each parser gets one.
F       := build/fuzz
CFLAGS_F := $(CSTD) -O1 -g -fsanitize=fuzzer-no-link,address,undefined $(filter-out -Werror,$(WARN)) $(INCS) $(PKG_CFLAGS)
LIB_OBJ_F := $(LIB_SRC:%.c=$(F)/obj/%.o)
FUZZ_BIN := $(FUZZ_SRC:fuzz/%.c=$(F)/%)

$(F)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	clang $(CFLAGS_F) -MMD -MP -c $< -o $@

# the objects are only prerequisites of the pattern rule below, which makes
# them intermediate: without this make deletes them after each build
.SECONDARY: $(LIB_OBJ_F)

$(F)/%: fuzz/%.c $(LIB_OBJ_F)
	clang $(CFLAGS_F) -fsanitize=fuzzer -o $@ $< $(LIB_OBJ_F) $(PKG_LIBS)

fuzz: deps
	@$(MAKE) --no-print-directory -j2 $(FUZZ_BIN)

BENCH_BIN := $(BENCH_SRC:bench/%.c=$(B)/bench/%)
$(B)/bench/%: bench/%.c $(B)/librein.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_R) -o $@ $< $(B)/librein.a $(PKG_LIBS)

$(B)/tools/%: tests/tools/%.c $(TOOL_LIB) tests/tools/loopback.h $(B)/librein.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_R) -o $@ $< $(TOOL_LIB) $(B)/librein.a $(PKG_LIBS)

bench: deps
	@$(MAKE) --no-print-directory -j2 all $(BENCH_BIN) $(TOOL_SRC:tests/tools/%.c=$(B)/tools/%)

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
