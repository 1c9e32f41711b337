# Bunker build. `make run` and `make test` are the two commands of the README;
# both install what is missing first (scripts/install-deps.sh).

CC      ?= gcc
SAN     ?= 0
BUILD   ?= $(if $(filter 1,$(SAN)),build/asan,build/release)

PKGS      := libmicrohttpd jansson sqlite3 libpq libsodium libseccomp libarchive libmnl libnftables
TEST_PKGS := libcurl

WARN    := -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers -Wshadow -Wformat=2 -Wvla
HARDEN  := -fstack-protector-strong -fPIE -D_GNU_SOURCE -ftrivial-auto-var-init=zero
LDHARD  := -pie -Wl,-z,relro,-z,now
ifeq ($(SAN),1)
OPT     := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDSAN   := -fsanitize=address,undefined
else
OPT     := -O2 -g -D_FORTIFY_SOURCE=2
LDSAN   :=
endif

CFLAGS_ALL = -std=gnu17 $(WARN) $(HARDEN) $(OPT) -Isrc -MMD -MP $(CFLAGS)
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   = $(shell pkg-config --libs $(PKGS)) -lpthread
TEST_LIBS  = $(shell pkg-config --libs $(TEST_PKGS))

LIB_SRCS := $(sort $(wildcard src/util/*.c src/agent/*.c src/sandbox/*.c src/store/*.c \
                              src/core/*.c src/http/*.c src/api/*.c src/snapshot/*.c))
# The interpreter drivers, carried by the daemon into the image it builds.
DRIVERS  := $(sort $(wildcard src/init/drivers/*))
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/gen/drivers.o
INIT_SRCS := src/init/main.c src/init/exec.c src/init/proc.c src/init/interp.c src/init/interp_chan.c src/init/harden.c src/init/files.c src/init/rootfiles.c src/init/request.c src/agent/proto.c src/util/util.c src/util/err.c

UNIT_SRCS := $(sort $(wildcard tests/unit/*.c))
BB_SRCS   := $(sort $(wildcard tests/blackbox/*.c))
TEST_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/unit_%) \
             $(BB_SRCS:tests/blackbox/%.c=$(BUILD)/tests/bb_%)
# Fuzz targets (tests/fuzz/<name>.c, each a LLVMFuzzerTestOneInput): in
# `make tests` each is also a plain replay binary that runs every input of
# tests/fuzz/corpus/<name>/ once (tests/fuzz/replay.c), so a target that no
# longer builds or an input that crashes again fails the test run.
FUZZ_NAMES := $(sort $(filter-out replay,$(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/*.c))))
FUZZ_INIT_OBJS = $(BUILD)/obj/src/init/request.o
TEST_BINS += $(FUZZ_NAMES:%=$(BUILD)/tests/fuzz_%)
TEST_COMMON := $(BUILD)/obj/tests/harness.o $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard tests/client.c tests/iv_client.c tests/raw.c tests/fakes.c tests/fake_store.c tests/fake_backend.c tests/sbx_fixture.c tests/pg_server.c))

.PHONY: all tests run test deps clean format format-check analyze bench bench-bin fuzz fuzz-bin fuzz-merge
# The daemon and init never cut a string (util's path_fmt() refuses a path
# that does not fit, the rest check what snprintf returns);
# -Wformat-truncation holds them to it. Tests and benchmarks format into
# buffers sized for their own fixtures, and keep it off.
$(BUILD)/obj/tests/%.o $(BUILD)/bench/%: WARN += -Wno-format-truncation
all: $(BUILD)/bunkerd $(BUILD)/bunker $(BUILD)/bunker-init

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(PKG_CFLAGS) -c $< -o $@

$(BUILD)/gen/drivers.c: $(DRIVERS) scripts/embed-drivers.sh
	@mkdir -p $(dir $@)
	scripts/embed-drivers.sh $(DRIVERS) > $@.tmp && mv $@.tmp $@

$(BUILD)/obj/gen/drivers.o: $(BUILD)/gen/drivers.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/libbunker.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/bunkerd: $(BUILD)/obj/src/bunkerd/main.o $(BUILD)/libbunker.a
	$(CC) $(LDHARD) $(LDSAN) -o $@ $^ $(PKG_LIBS)

$(BUILD)/bunker: $(BUILD)/obj/src/cli/main.o $(BUILD)/libbunker.a
	$(CC) $(LDHARD) $(LDSAN) -o $@ $^ $(PKG_LIBS)

# PID 1 of every sandbox: static, so it needs nothing from the image, and
# never sanitized (the sanitizers' runtimes cannot link statically).
$(BUILD)/bunker-init: $(INIT_SRCS) $(wildcard src/agent/*.h src/util/*.h src/init/*.h)
	@mkdir -p $(dir $@)
	$(CC) -std=gnu17 $(WARN) -D_GNU_SOURCE -O2 -g -D_FORTIFY_SOURCE=2 -fstack-protector-strong \
		-ftrivial-auto-var-init=zero -Isrc -static -o $@ $(INIT_SRCS) -lseccomp

tests: all $(TEST_BINS)

$(BUILD)/tests/unit_%: $(BUILD)/obj/tests/unit/%.o $(TEST_COMMON) $(BUILD)/libbunker.a
	@mkdir -p $(dir $@)
	$(CC) $(LDHARD) $(LDSAN) -o $@ $^ $(PKG_LIBS) $(TEST_LIBS)

$(BUILD)/tests/bb_%: $(BUILD)/obj/tests/blackbox/%.o $(TEST_COMMON) $(BUILD)/libbunker.a
	@mkdir -p $(dir $@)
	$(CC) $(LDHARD) $(LDSAN) -o $@ $^ $(PKG_LIBS) $(TEST_LIBS)

$(BUILD)/obj/tests/fuzz/replay_%.o: tests/fuzz/replay.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -DFUZZ_NAME=$* -c $< -o $@

$(BUILD)/tests/fuzz_%: $(BUILD)/obj/tests/fuzz/%.o $(BUILD)/obj/tests/fuzz/replay_%.o $(BUILD)/obj/tests/harness.o $(FUZZ_INIT_OBJS) $(BUILD)/libbunker.a
	@mkdir -p $(dir $@)
	$(CC) $(LDHARD) $(LDSAN) -o $@ $^ $(PKG_LIBS)

# libFuzzer builds of the same targets (clang, ASan + UBSan), in build/fuzz;
# `make fuzz` runs each for FUZZ_SECONDS from its corpus, `make fuzz-merge`
# folds what the runs found into tests/fuzz/corpus/ minimised
# (scripts/fuzz.sh; FUZZ_TARGETS picks some, FUZZ_NICE their niceness).
# clang takes a variable used only by its cleanup attribute for unused, and
# wants a format attribute on every vprintf wrapper.
FUZZ_CC     ?= clang
FUZZ_BUILD  := build/fuzz
FUZZ_CFLAGS := -std=gnu17 $(WARN) -Wno-unknown-warning-option -Wno-unused-variable -Wno-format-nonliteral -D_GNU_SOURCE -Isrc -MMD -MP \
               -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined \
               -fno-sanitize-recover=undefined $(CFLAGS)
FUZZ_LIB_OBJS := $(LIB_SRCS:%.c=$(FUZZ_BUILD)/obj/%.o) $(FUZZ_BUILD)/obj/gen/drivers.o \
                 $(FUZZ_BUILD)/obj/src/init/request.o
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= $(FUZZ_NAMES)
FUZZ_NICE    ?= 10

$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(PKG_CFLAGS) -c $< -o $@

# The OpenAPI document is a GNU C raw string, which clang does not take in
# C; it is data, nothing to instrument.
$(FUZZ_BUILD)/obj/src/api/openapi.o: src/api/openapi.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu17 -O1 -fPIE -D_GNU_SOURCE -Isrc $(PKG_CFLAGS) -c $< -o $@

$(FUZZ_BUILD)/obj/gen/drivers.o: $(FUZZ_BUILD)/gen/drivers.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@

$(FUZZ_BUILD)/gen/drivers.c: $(DRIVERS) scripts/embed-drivers.sh
	@mkdir -p $(dir $@)
	scripts/embed-drivers.sh $(DRIVERS) > $@.tmp && mv $@.tmp $@

$(FUZZ_BUILD)/libfuzzlib.a: $(FUZZ_LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(FUZZ_NAMES:%=$(FUZZ_BUILD)/%): $(FUZZ_BUILD)/%: $(FUZZ_BUILD)/obj/tests/fuzz/%.o $(FUZZ_BUILD)/libfuzzlib.a
	$(FUZZ_CC) -fsanitize=fuzzer,address,undefined -o $@ $^ $(PKG_LIBS)

fuzz-bin: $(FUZZ_NAMES:%=$(FUZZ_BUILD)/%)

fuzz: fuzz-bin
	@FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_NICE=$(FUZZ_NICE) scripts/fuzz.sh run $(FUZZ_TARGETS)

fuzz-merge: fuzz-bin
	@FUZZ_NICE=$(FUZZ_NICE) scripts/fuzz.sh merge $(FUZZ_TARGETS)

deps:
	@scripts/install-deps.sh

run: deps
	@$(MAKE) --no-print-directory SAN=0 all
	@scripts/run.sh build/release

test: deps
	@$(MAKE) --no-print-directory SAN=1 tests
	@$(MAKE) --no-print-directory SAN=0 all
	@scripts/test.sh build/asan

bench: deps
	@$(MAKE) --no-print-directory SAN=0 all bench-bin
	@bench/run.sh build/release

# Every benchmark; `make bench` runs only the first (bench/lifecycle.sh runs
# the second, which takes minutes; bench/preview.sh the third;
# build/release/bench/hostile the fourth, about five minutes; the fifth,
# the interpreters at the sandbox level, runs as `build/release/bench/interp`;
# `build/release/bench/instavm` the InstaVM dialect's; `build/release/bench/scale`
# the costs at 10 to 2,000 awake sessions, some minutes; `build/release/bench/egress`
# a session's outbound network against the host's and what a grant adds to
# a create at 1 and 1,000 sessions, some minutes; `build/release/bench/cluster`
# three nodes on a PostgreSQL of its own: a relay's cost, creates per second,
# the rate limit across nodes and a node's kill -9, some minutes).
BENCHES := bench lifecycle preview hostile instavm scale egress
bench-bin: $(BENCHES:%=$(BUILD)/bench/%) $(BUILD)/bench/interp $(BUILD)/bench/cluster

# The interpreters' bench drives the backend itself: libbunker, no
# bench/common.c (whose die() and now_ms() are libbunker's names too).
$(BUILD)/bench/interp: bench/interp.c $(BUILD)/libbunker.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(PKG_CFLAGS) -o $@ $< $(BUILD)/libbunker.a $(PKG_LIBS)

# The relay between nodes (bench/cluster.c) starts its own PostgreSQL, as
# the tests do (tests/pg_server.c).
$(BUILD)/bench/cluster: bench/cluster.c bench/common.c bench/common.h tests/pg_server.c tests/pg_server.h $(BUILD)/libbunker.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(PKG_CFLAGS) -o $@ $< bench/common.c tests/pg_server.c $(BUILD)/libbunker.a $(PKG_LIBS) $(TEST_LIBS) -lm

$(BENCHES:%=$(BUILD)/bench/%): $(BUILD)/bench/%: bench/%.c bench/common.c bench/common.h $(BUILD)/libbunker.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(PKG_CFLAGS) -o $@ $< bench/common.c $(BUILD)/libbunker.a $(PKG_LIBS) $(TEST_LIBS) -lm

# cppcheck and gcc -fanalyzer over src/ (scripts/analyze.sh says how their
# wrong findings are kept out); CI runs it before the tests.
analyze: deps
	@scripts/analyze.sh

format:
	clang-format -i $(shell git ls-files '*.c' '*.h')

format-check:
	clang-format --dry-run --Werror $(shell git ls-files '*.c' '*.h')

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
