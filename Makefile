# rostrum — one non-recursive Makefile.
#
#   make            release build: build/rostrum (and the tools)
#   make test       install test deps, build with ASan+UBSan, run unit, fuzz-replay and
#                   integration tests; ends with "N passed, N failed"
#   make demo       install deps, build, run a live demo space
#   make fuzz       build libFuzzer targets with clang and run each for FUZZ_SECONDS
#   make install    the binaries, rostrum(1), the example config and the systemd unit under
#                   DESTDIR + PREFIX (default /usr/local)
#
# Variants live in their own folders: O=build (release), O=build/asan (sanitizers).

O        ?= build
CC       ?= cc
SAN      ?=
WERROR   ?=
WARN     := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 -Wvla \
            -Wimplicit-fallthrough -Wno-unused-parameter
CFLAGS   ?= -O2 -g
CFLAGS   += -std=gnu11 $(WARN) $(if $(WERROR),-Werror) -D_GNU_SOURCE -Isrc -MMD -MP \
            -fno-strict-aliasing
ifeq ($(SAN),fuzz)
CFLAGS   += -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
endif
ifeq ($(SAN),1)
CFLAGS   += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS  += -fsanitize=address,undefined
endif
LDLIBS   := -lopus -logg -lhttp_parser -lwslay -lcjson -lssl -lcrypto -lisal -lsystemd -lavcodec -lavutil -lm

# Libraries in dependency order (each may use only those before it): the core modules any
# program may use, the server's layers, and each tool's own code. The tools do not link the
# server: rostrum-load and rostrum-speak are clients built on the core alone.
CORE_DIRS   := util event net tls http ws ogg limits web shm token config mixer hls record
SERVER_DIRS := conn space transcode captions stage stageport relay audience proc
MAINS       := src/proc/main.c src/load/main.c src/speak/main.c
dir_src      = $(filter-out $(MAINS),$(foreach d,$(1),$(wildcard src/$(d)/*.c)))
CORE_OBJ    := $(patsubst %.c,$(O)/obj/%.o,$(call dir_src,$(CORE_DIRS))) \
               $(O)/obj/web_assets.o $(O)/obj/web_table.o
SERVER_OBJ  := $(patsubst %.c,$(O)/obj/%.o,$(call dir_src,$(SERVER_DIRS)))
LOAD_OBJ    := $(patsubst %.c,$(O)/obj/%.o,$(call dir_src,load))
SPEAK_OBJ   := $(patsubst %.c,$(O)/obj/%.o,$(call dir_src,speak))
LIBS        := $(O)/librostrum-server.a $(O)/librostrum-load.a $(O)/librostrum-speak.a \
               $(O)/librostrum-core.a
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(O)/tests/%)
WEB      := $(wildcard web/*)

.PHONY: all test unit integration browser fuzz fuzz-replay demo deps test-deps clean bench bench-tls \
        bench-upgrade bench-tree bench-transcode bench-hls bench-event bench-captions install
all: $(O)/rostrum $(O)/rostrum-load $(O)/rostrum-speak $(O)/rostrum-captions

$(O)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

# The web pages are compiled into the binary so a server needs no files beside it.
# hls.js (npm, tests/browser/package.json) is served as /hls.min.js when it is installed
# (issue 11: the HLS test page plays with it); nothing of it is committed.
HLSJS    := $(wildcard tests/browser/node_modules/hls.js/dist/hls.min.js)
$(O)/gen/web_assets.S $(O)/gen/web_table.c: $(WEB) $(HLSJS) scripts/gen-web-assets
	@mkdir -p $(O)/gen
	scripts/gen-web-assets $(O)/gen/web_assets.S $(O)/gen/web_table.c $(HLSJS)
$(O)/obj/web_assets.o: $(O)/gen/web_assets.S
	@mkdir -p $(dir $@)
	$(CC) -c -o $@ $<
$(O)/obj/web_table.o: $(O)/gen/web_table.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

# Each archive is made whole again: "ar rcs" alone keeps the member of a source that was
# removed or moved (src/load/attack.c), and the tools would link its stale copy.
$(O)/librostrum-core.a: $(CORE_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^
$(O)/librostrum-server.a: $(SERVER_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^
$(O)/librostrum-load.a: $(LOAD_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^
$(O)/librostrum-speak.a: $(SPEAK_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(O)/rostrum: $(O)/obj/src/proc/main.o $(O)/librostrum-server.a $(O)/librostrum-core.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(O)/rostrum-load: $(O)/obj/src/load/main.o $(O)/librostrum-load.a $(O)/librostrum-core.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(O)/rostrum-speak: $(O)/obj/src/speak/main.o $(O)/librostrum-speak.a $(O)/librostrum-core.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The default live-caption recogniser (issue 12): a tool of its own, on pocketsphinx, that the
# server runs as a child (captions-cmd); it uses nothing of rostrum's.
PS_CFLAGS := $(shell pkg-config --cflags pocketsphinx 2>/dev/null)
PS_LIBS   := $(shell pkg-config --libs pocketsphinx 2>/dev/null || echo -lpocketsphinx -lsphinxbase)
$(O)/rostrum-captions: tools/captions/rostrum-captions.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PS_CFLAGS) $(LDFLAGS) -o $@ $< $(PS_LIBS) -lm

$(O)/tests/%: tests/unit/%.c tests/unit/harness.h $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/unit $(LDFLAGS) -o $@ $< $(LIBS) $(LDLIBS)

# ---- tests ---------------------------------------------------------------------------------
ASAN_O := build/asan

deps:
	@scripts/install-deps demo
test-deps:
	@scripts/install-deps test

# Unit tests, the fuzz corpus replay and the integration suite all run against the sanitizer
# build; one summary line at the end counts every test.
test: test-deps
	$(MAKE) O=$(ASAN_O) SAN=1 WERROR=1 $(ASAN_O)/rostrum $(ASAN_O)/rostrum-load $(ASAN_O)/rostrum-speak \
	  $(ASAN_O)/rostrum-captions unit-bins
	$(MAKE) WERROR=1 all
	scripts/run-tests $(ASAN_O)

unit-bins: $(UNIT_BIN) $(O)/fuzz-replay

# Fuzz targets: built with clang + libFuzzer for fuzzing, and with a small main() for the
# corpus replay that the normal test run does (works with gcc too).
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=build/fuzz/%)
FUZZ_SECONDS ?= 30

$(O)/fuzz-replay: $(FUZZ_SRC) tests/fuzz/replay_main.c $(LIBS)
	@mkdir -p $(dir $@)
	for f in $(FUZZ_SRC); do \
	  n=$$(basename $$f .c); \
	  $(CC) $(CFLAGS) -DFUZZ_NAME=$$n $(LDFLAGS) -o $(O)/tests/$$n tests/fuzz/replay_main.c $$f \
	    $(LIBS) $(LDLIBS) || exit 1; \
	done
	touch $@

build/fuzz/%: tests/fuzz/%.c
	$(MAKE) O=build/fuzz CC=clang SAN=fuzz $(subst $(O)/,build/fuzz/,$(LIBS))
	clang -O1 -g -std=gnu11 -D_GNU_SOURCE -Isrc -fsanitize=fuzzer,address,undefined \
	  -o $@ $< $(subst $(O)/,build/fuzz/,$(LIBS)) $(LDLIBS)

fuzz: $(FUZZ_BIN)
	scripts/fuzz $(FUZZ_SECONDS) $(FUZZ_BIN)

# Fan-out benchmark: rostrum and Icecast 2 side by side under rostrum-load (see bench/README.md).
bench: test-deps all
	bench/fanout $(BENCH_ARGS)

# TLS cost: rostrum plain, rostrum --audience-tls and nginx in front of a plain rostrum, in one
# run (see bench/README.md). BENCH_TLS_ARGS="--loads 2000 --seconds 20" for a short one.
bench-tls: test-deps all
	bench/tls $(BENCH_TLS_ARGS)

# A relay tree on loopback: relay vs origin, a cut, a fail-over, origin cost per relay.
bench-tree: test-deps all
	bench/tree --no-build $(BENCH_TREE_ARGS)

# What a space's AAC and MP3 renditions cost: the codec on a fixed input, then a live server.
bench-transcode: test-deps all
	bench/transcode && bench/transcode-live

# LL-HLS straight and through one nginx tier: latency behind live, time to first part, origin
# HLS answers per second at two player counts (see bench/README.md).
bench-hls: test-deps all
	bench/hls --no-build $(BENCH_HLS_ARGS)

# The default caption recogniser on recorded speech: word error rate, latency, CPU (issue 12).
bench-captions: test-deps all
	bench/captions --recogniser $(O)/rostrum-captions

# What an upgrade (SIGUSR2) costs the connected under load (see bench/README.md).
bench-upgrade: test-deps all
	bench/upgrade $(BENCH_ARGS)

# The event day (issue 12): a scheduled space, 100,000 listeners through the lobby under a
# flood and a slowloris, the recording checked (bench/README.md). BENCH_EVENT_ARGS="--listeners
# 20000" for a smaller one.
bench-event: test-deps all
	bench/event $(BENCH_EVENT_ARGS)

demo: deps all
	scripts/demo

# ---- install ------------------------------------------------------------------------------
# The unit's ExecStart is pointed at the installed binary; the config itself is the operator's
# (the example goes to the docs, never over /etc/rostrum/rostrum.conf).
PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR  ?= $(PREFIX)/bin
MANDIR  ?= $(PREFIX)/share/man
DOCDIR  ?= $(PREFIX)/share/doc/rostrum
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d

install: $(O)/rostrum $(O)/rostrum-load $(O)/rostrum-speak $(O)/rostrum-captions
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(DOCDIR) \
	  $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR)
	install -m 0755 $(O)/rostrum $(O)/rostrum-load $(O)/rostrum-speak $(O)/rostrum-captions \
	  $(DESTDIR)$(BINDIR)/
	install -m 0644 docs/rostrum.1 $(DESTDIR)$(MANDIR)/man1/rostrum.1
	install -m 0644 docs/config.example $(DESTDIR)$(DOCDIR)/rostrum.conf.example
	sed 's|^ExecStart=/usr/bin/rostrum |ExecStart=$(BINDIR)/rostrum |' docs/rostrum.service \
	  > $(DESTDIR)$(UNITDIR)/rostrum.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/rostrum.service
	install -m 0644 docs/rostrum.sysusers $(DESTDIR)$(SYSUSERSDIR)/rostrum.conf

clean:
	rm -rf build

-include $(shell find build -name '*.d' -type f 2>/dev/null)
