# weir — one Makefile for the binary, the tests, the sanitizer build and install.
# `make` builds build/weir; `make check` runs every suite (twice: plain, then ASan+UBSan);
# `make demo` runs the main job; `make bench` runs the benchmarks; `make deps` installs packages.

PREFIX  ?= /usr/local
DESTDIR ?=
BUILD   ?= build
SAN     ?=

CC      ?= cc
CFLAGS  ?= -O2 -g
WFLAGS  := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
PKGS    := libpq libuv lua5.4 libcurl zlib jansson

# Each required library with the Debian package that provides it.
DEB_libpq   := libpq-dev
DEB_libuv   := libuv1-dev
DEB_lua5.4  := liblua5.4-dev
DEB_libcurl := libcurl4-openssl-dev
DEB_zlib    := zlib1g-dev
DEB_jansson := libjansson-dev
DEB_PACKAGES := libpq-dev libuv1-dev liblua5.4-dev libcurl4-openssl-dev zlib1g-dev \
                libjansson-dev libhttp-parser-dev postgresql pkg-config gcc make curl jq \
                python3-sklearn

ifeq ($(filter deps clean help,$(MAKECMDGOALS)),)
  ifeq ($(shell command -v pkg-config),)
    $(error pkg-config not found: install it with `apt-get install pkg-config` or run `make deps`)
  endif
  $(foreach p,$(PKGS),$(if $(shell pkg-config --exists $(p) && echo ok),,\
    $(error $(p) not found by pkg-config: install the Debian package $(DEB_$(p)) (or run `make deps`))))
  ifeq ($(wildcard /usr/include/http_parser.h),)
    $(error http_parser.h not found: install the Debian package libhttp-parser-dev (or run `make deps`))
  endif
  NVCC := $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
  ifeq ($(MAKELEVEL),0)
    $(info weir: CUDA: $(if $(NVCC),yes ($(NVCC)),no (nvcc not found; CPU paths only)))
  endif
endif

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lhttp_parser -lm
ALL_CFLAGS := $(WFLAGS) $(CFLAGS) -I. -Iinclude $(PKG_CFLAGS) $(SAN) -DWEIR_PLUGIN_DIR=\"$(PREFIX)/lib/weir/plugins\"
ALL_LDFLAGS := $(LDFLAGS) $(SAN)

# Every .c under these folders is part of the one binary; cli/main.c holds main().
LIB_SRC  := $(wildcard common/*.c dsl/*.c engine/*.c workers/*.c cli/*.c plugins/*.c)
LIB_SRC  := $(filter-out cli/main.c,$(LIB_SRC))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
DSL_LUA  := $(wildcard dsl/*.lua)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

# The built-in ML steps: one plugin, loaded by `weir step-run` from $(BUILD)/plugins (or the
# installed plugin directory). Its shared code (plugins/*.c) is also in libweir.a for the unit tests.
PLUGIN_SRC := $(wildcard plugins/*.c plugins/ml/*.c) common/util.c common/error.c common/sha256.c
PLUGIN_HDR := $(wildcard plugins/*.h plugins/ml/*.h) include/weir/plugin.h
ML_PLUGIN  := $(BUILD)/plugins/weir-ml.so

# The CUDA paths: their own shared object, loaded by the ML plugin on first GPU use, so that
# weir-ml.so never needs the CUDA libraries. Built only where nvcc is found, never under the
# sanitizers. Their C sources are compiled again with -fPIC beside it.
CUDA_ARCH ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
             -gencode arch=compute_90,code=compute_90
CUDA_PLUGIN := $(if $(NVCC),$(if $(SAN),,$(BUILD)/plugins/cuda/weir-ml-cuda.so))
CUDA_C_OBJ  := $(patsubst %.c,$(BUILD)/plugins/cuda/obj/%.o,plugins/mlp.c plugins/linear.c common/error.c common/util.c)

.SECONDARY:
.PHONY: all deps check check-plain check-asan unit demo bench install clean help fmt
all: $(BUILD)/weir $(ML_PLUGIN) $(CUDA_PLUGIN)

help:
	@echo "make            build build/weir and the ML plugin build/plugins/weir-ml.so"
	@echo "make deps       install the Debian packages weir needs (root)"
	@echo "make check      run every test suite, plain and under ASan+UBSan"
	@echo "make demo       start a local stack and run the ML pipeline examples/cancer.lua end to end on it"
	@echo "make bench      run the benchmarks in bench/"
	@echo "make install    install into \$$(DESTDIR)\$$(PREFIX)"

deps:
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(DEB_PACKAGES)

# Lua sources of the DSL are embedded into the binary as C strings.
$(BUILD)/gen/%_lua.c: dsl/%.lua tools/embed.sh
	@mkdir -p $(dir $@)
	sh tools/embed.sh $< weir_lua_$(subst -,_,$*) > $@

# Migrations are embedded too, so that an installed binary can migrate without a source tree.
# The directory is a prerequisite too: a file removed or renamed changes only its mtime.
$(BUILD)/gen/migrations.c: $(wildcard migrations/*.sql) migrations tools/embed-migrations.sh
	@mkdir -p $(dir $@)
	sh tools/embed-migrations.sh $(wildcard migrations/*.sql) > $@

GEN_OBJ := $(DSL_LUA:dsl/%.lua=$(BUILD)/gen/%_lua.o) $(BUILD)/gen/migrations.o

$(BUILD)/gen/migrations.o: $(BUILD)/gen/migrations.c engine/migrate.h
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/gen/%_lua.o: $(BUILD)/gen/%_lua.c
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/%.o: %.c $(wildcard common/*.h dsl/*.h engine/*.h cli/*.h workers/*.h plugins/*.h include/weir/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/libweir.a: $(LIB_OBJ) $(GEN_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/weir: $(BUILD)/cli/main.o $(BUILD)/libweir.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(BUILD)/plugins/cuda/obj/%.o: %.c $(PLUGIN_HDR) $(wildcard common/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -fPIC -fvisibility=hidden -c $< -o $@

$(BUILD)/plugins/cuda/weir-ml-cuda.so: plugins/cuda/mlp.cu plugins/cuda/cuda.h plugins/mlp.h $(CUDA_C_OBJ)
	@mkdir -p $(dir $@)
	$(NVCC) -O2 -std=c++17 $(CUDA_ARCH) -Xcompiler -fPIC,-fvisibility=hidden,-Wall -I. -Iinclude -shared \
	  -o $@ plugins/cuda/mlp.cu $(CUDA_C_OBJ) -lcublas -lm

$(ML_PLUGIN): $(PLUGIN_SRC) $(PLUGIN_HDR) $(wildcard common/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -fPIC -fvisibility=hidden -shared $(if $(SAN),,-Wl,--no-undefined) -o $@ $(PLUGIN_SRC) $(ALL_LDFLAGS) $(PKG_LIBS)

$(BUILD)/tests/%: tests/unit/%.c tests/unit/unit.h $(wildcard tests/fixtures/*.h) $(BUILD)/libweir.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libweir.a $(ALL_LDFLAGS) $(PKG_LIBS)

unit: $(UNIT_BIN)

BENCH_BIN := $(patsubst bench/%.c,$(BUILD)/bench/%,$(wildcard bench/*.c))
$(BUILD)/bench/%: bench/%.c $(BUILD)/libweir.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libweir.a $(ALL_LDFLAGS) $(PKG_LIBS)

# The sanitizer build lives beside the plain one; `make check` runs the suites on both.
ASAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

check: all unit
	$(MAKE) --no-print-directory BUILD=build/asan SAN="$(ASAN_FLAGS)" CFLAGS="-O1 -g" all unit
	sh tests/run.sh build build/asan

check-plain: all unit
	sh tests/run.sh build

demo: all
	sh examples/demo.sh

bench: all $(BENCH_BIN)
	sh bench/run.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/include/weir \
	  $(DESTDIR)$(PREFIX)/share/weir/migrations $(DESTDIR)$(PREFIX)/lib/weir/plugins \
	  $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 755 $(BUILD)/weir $(DESTDIR)$(PREFIX)/bin/weir
	install -m 644 include/weir/*.h $(DESTDIR)$(PREFIX)/include/weir/
	install -m 644 migrations/*.sql $(DESTDIR)$(PREFIX)/share/weir/migrations/
	for p in $(wildcard $(BUILD)/plugins/*.so); do install -m 755 $$p $(DESTDIR)$(PREFIX)/lib/weir/plugins/; done
	sed -e 's|@PREFIX@|$(PREFIX)|g' weir.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/weir.pc

clean:
	rm -rf build
