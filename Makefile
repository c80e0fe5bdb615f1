# sslasync: build, test, demo, install.
#
#   make            build target/release/libsslasync.so (soname libsslasync.so.0)
#   make demo       the example async TLS server, callback mode vs fd mode; then an fd-only
#                   engine, callback mode through the shim's fd adapter vs fd mode
#   make bench      shim vs native OpenSSL benchmarks, then the OpenSSL 1.1.1w comparison
#                   (BENCH_QUICK=1: fewer cells and rounds)
#   make matrix     the C suite on OpenSSL 1.1.1w, system 3.0, 3.5.5 and 4.0.3 (builds them once;
#                   MATRIX_REUSE=1 takes the cells make [OPENSSL=VER] test already ran)
#   make test       every test: Rust checks, C suite (preload/linked/native), ASan+UBSan
#   make soak       long runs (plain build, target/ctest-soak): the randomized API test with
#                   300,000 operations on each of 4 seeds, stress at 8 x 10,000 SSLs,
#                   valgrind memcheck over 300,000 SSL lifecycles (SOAK_SEEDS="5 6" for others)
#   make header     regenerate include/sslasync.h
#   make install    PREFIX=/usr/local LIBDIR=$(PREFIX)/lib MANDIR=$(PREFIX)/share/man DESTDIR=
#   make deb        Debian packages libsslasync0 and libsslasync-dev in target/deb/
#
# Build against another OpenSSL (its own build tree, target/<prefix name>/):
#   make OPENSSL_DIR=/opt/openssl-3.5 [test|demo]   an installed prefix
#   make OPENSSL=4.0.3 [test|demo]                  a private build (1.1.1w, 3.5.5, 4.0.3),
#                                                   made once into ~/.cache/sslasync
#   (The package and version checks, two_openssl and the real programs run
#   in the system build only.)

PREFIX     ?= /usr/local
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
BINDIR     ?= $(PREFIX)/bin
MANDIR     ?= $(PREFIX)/share/man
DESTDIR    ?=
CARGO      ?= cargo
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)

# Cargo.toml's [package] version is the only place the version is written.
VERSION    := $(shell sed -n '/^\[package\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml)
ifeq ($(VERSION),)
$(error cannot read the version from Cargo.toml)
endif
TARGET     := target
CTEST_DIR  := target/ctest
ASAN_DIR   := target/ctest-asan

ifneq ($(OPENSSL),)
# The script prints its progress, then the prefix on its last line.
OPENSSL_DIR := $(shell bash c-tests/matrix/build-openssl.sh $(OPENSSL) | tee /dev/stderr | tail -n 1)
ifeq ($(OPENSSL_DIR),)
$(error could not build OpenSSL $(OPENSSL))
endif
endif

ifneq ($(OPENSSL_DIR),)
# Everything built against another OpenSSL lives in its own tree, so the
# system build (and CMake's cached OpenSSL choice) is never mixed with it.
OSSL_NAME  := $(notdir $(abspath $(OPENSSL_DIR)))
TARGET     := target/$(OSSL_NAME)
CTEST_DIR  := $(TARGET)/ctest
ASAN_DIR   := $(TARGET)/ctest-asan
export OPENSSL_DIR
export CARGO_TARGET_DIR := $(CURDIR)/$(TARGET)
# cargo's own test binary links that libssl but has no rpath to it.
CARGO_TEST_ENV := LD_LIBRARY_PATH=$(abspath $(OPENSSL_DIR))/lib
endif

SO         := $(TARGET)/release/libsslasync.so
CMAKE_ARGS := -DSSLASYNC_LIB_DIR=$(CURDIR)/$(TARGET)/release -DSSLASYNC_INCLUDE_DIR=$(CURDIR)/include \
              -DSSLASYNC_WRAPPER=$(CURDIR)/$(TARGET)/release/with-sslasync
ifneq ($(OPENSSL_DIR),)
CMAKE_ARGS += -DOPENSSL_ROOT_DIR=$(abspath $(OPENSSL_DIR))
endif

# The preload wrapper (and its --check) is tools/with-sslasync.in; the
# library path it preloads and the version are filled in here.
WRAPPER_SED = sed 's|@VERSION@|$(VERSION)|g; s|@SO@|$(1)|g' tools/with-sslasync.in
# The man pages carry @VERSION@ in their .TH line; built into $(TARGET)/man.
MAN_SRC    := $(wildcard man/*.[1-8])
MAN_OUT    := $(patsubst man/%,$(TARGET)/man/%,$(MAN_SRC))

# pkg-config file. --no-as-needed: the shim works only by symbol
# interposition, so a linker that drops "unused" libraries would drop it.
define PCFILE
prefix=@PREFIX@
libdir=@LIBDIR@
includedir=@INCLUDEDIR@

Name: sslasync
Description: OpenSSL async-completion callback API as a drop-in shim (link before -lssl)
Version: $(VERSION)
Requires: libssl libcrypto
Libs: -L$${libdir} -Wl,--push-state,--no-as-needed -lsslasync -Wl,--pop-state
Cflags: -I$${includedir}
endef
export PCFILE

.PHONY: all deps lib header test test-rust test-c test-asan demo bench matrix install uninstall clean
.PHONY: soak
.PHONY: man deb test-doc test-version test-deb version

# Man-page lint always; the version check and the package round trip only
# for the system build (the packages are built against the system OpenSSL).
TEST_PKG   := test-doc
ifeq ($(OPENSSL_DIR),)
TEST_PKG   += test-version test-deb
endif

all: lib

deps:
	@sh .ci/deps

lib: deps
	$(CARGO) build --release
	ln -sf libsslasync.so $(TARGET)/release/libsslasync.so.0
	$(call WRAPPER_SED,$(CURDIR)/$(SO)) > $(TARGET)/release/with-sslasync
	chmod 0755 $(TARGET)/release/with-sslasync

header:
	SSLASYNC_BLESS=1 $(CARGO) test --release header

test: test-rust test-c test-asan $(TEST_PKG)
	@echo "make test: all suites passed"

test-rust: lib
	$(CARGO) fmt --check
	$(CARGO) clippy --release --all-targets -- -D warnings
	$(CARGO_TEST_ENV) $(CARGO) test --release
# The slot protocol under loom's model checker (its own build: --cfg loom).
# src/slots.rs and src/sync.rs do not depend on the OpenSSL version, so only
# the system build runs it (a second full compile per OpenSSL otherwise).
ifeq ($(OPENSSL_DIR),)
	$(CARGO_TEST_ENV) RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=$(CURDIR)/$(TARGET)/loom \
		$(CARGO) test --release --lib loom
endif

# The two_openssl test loads a private OpenSSL 4.0.3 beside the system one
# (system build only); the script builds it once into ~/.cache/sslasync,
# afterwards it only prints the prefix.
ifeq ($(OPENSSL_DIR),)
WITH_OTHER  = other=$$(bash c-tests/matrix/build-openssl.sh 4.0.3) &&
OTHER_ARG   = -DSSLASYNC_OTHER_OPENSSL=$$other
endif

test-c: lib
	$(WITH_OTHER) cmake -S c-tests -B $(CTEST_DIR) $(CMAKE_ARGS) $(OTHER_ARG) -DSSLASYNC_SANITIZE=OFF >/dev/null
	cmake --build $(CTEST_DIR) -j$(JOBS)
	# ctest-junit.xml: every test's result, which make matrix can take
	# (MATRIX_REUSE=1) instead of running the same cell again.
	ctest --test-dir $(CTEST_DIR) -j$(JOBS) --output-on-failure --output-junit ctest-junit.xml

test-asan: lib
	$(WITH_OTHER) cmake -S c-tests -B $(ASAN_DIR) $(CMAKE_ARGS) $(OTHER_ARG) -DSSLASYNC_SANITIZE=ON >/dev/null
	cmake --build $(ASAN_DIR) -j$(JOBS)
	ctest --test-dir $(ASAN_DIR) -j$(JOBS) --output-on-failure

# Two comparisons, 3 s per mode: the callback-style accelerator, then the
# fd-only one with the fd adapter on in callback mode (--fd-callbacks).
DEMO_RUN = SSLASYNC_STATS=1 $(CTEST_DIR)/examples/async_server --compare --duration 3
demo: lib
	cmake -S c-tests -B $(CTEST_DIR) $(CMAKE_ARGS) >/dev/null
	cmake --build $(CTEST_DIR) -j$(JOBS) --target async_server
	$(DEMO_RUN)
	@echo
	$(DEMO_RUN) --style fd --fd-callbacks

# The bench built against OpenSSL 1.1.1 compares only native 1.1.1 in fd
# mode with the shim's fd adapter; `make bench` runs it after the main one,
# in that build's own tree (target/openssl-1.1.1w/: shim, ctest, bench).
# BENCH_OPENSSL111= (empty) skips it.
BENCH_OPENSSL111 ?= 1.1.1w
bench: lib
	@sh .ci/deps bench
	cmake -S c-tests -B $(CTEST_DIR) $(CMAKE_ARGS) >/dev/null
	cmake --build $(CTEST_DIR) -j$(JOBS) --target sslasync-bench
	SSLASYNC_SHIM=$(CURDIR)/$(SO) SSLASYNC_BUILD_DIR=$(CURDIR)/$(CTEST_DIR) BENCH_OUT=$(CURDIR)/$(TARGET)/bench \
		sh benches/run.sh
ifeq ($(OPENSSL_DIR),)
ifneq ($(BENCH_OPENSSL111),)
	$(MAKE) --no-print-directory OPENSSL=$(BENCH_OPENSSL111) bench
endif
endif

# MATRIX_REUSE=1 (CI, after make test and make OPENSSL=1.1.1w test): cells
# whose configuration those already ran completely take that run's results.
matrix: lib
	sh c-tests/matrix/run-matrix.sh

# Only the soak runs (label soak) of a build of their own; valgrind comes
# from .ci/deps. Each fuzz seed prints its FUZZ_SEED, for a rerun by hand.
SOAK_DIR   := $(TARGET)/ctest-soak
SOAK_SEEDS ?= 1 2 3 4
soak: lib
	cmake -S c-tests -B $(SOAK_DIR) $(CMAKE_ARGS) -DSSLASYNC_SANITIZE=OFF -DSSLASYNC_SOAK=ON \
		"-DSSLASYNC_SOAK_SEEDS=$(SOAK_SEEDS)" >/dev/null
	cmake --build $(SOAK_DIR) -j$(JOBS) --target fuzz_api stress lifecycle
	ctest --test-dir $(SOAK_DIR) -L soak -j$(JOBS) --output-on-failure

install: lib man
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR)/pkgconfig
	install -m 0755 $(SO) $(DESTDIR)$(LIBDIR)/libsslasync.so.$(VERSION)
	ln -sf libsslasync.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libsslasync.so.0
	ln -sf libsslasync.so.0 $(DESTDIR)$(LIBDIR)/libsslasync.so
	install -m 0644 include/sslasync.h $(DESTDIR)$(INCLUDEDIR)/sslasync.h
	printf '%s\n' "$$PCFILE" | sed 's|@PREFIX@|$(PREFIX)|; s|@LIBDIR@|$(LIBDIR)|; s|@INCLUDEDIR@|$(INCLUDEDIR)|' \
		> $(DESTDIR)$(LIBDIR)/pkgconfig/sslasync.pc
	$(call WRAPPER_SED,$(LIBDIR)/libsslasync.so.0) > $(DESTDIR)$(BINDIR)/with-sslasync
	chmod 0755 $(DESTDIR)$(BINDIR)/with-sslasync
	for f in $(MAN_OUT); do s=$${f##*.}; install -d $(DESTDIR)$(MANDIR)/man$$s; \
		install -m 0644 $$f $(DESTDIR)$(MANDIR)/man$$s/; done

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/libsslasync.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libsslasync.so.0 \
		$(DESTDIR)$(LIBDIR)/libsslasync.so $(DESTDIR)$(INCLUDEDIR)/sslasync.h \
		$(DESTDIR)$(LIBDIR)/pkgconfig/sslasync.pc $(DESTDIR)$(BINDIR)/with-sslasync
	for f in $(MAN_SRC); do rm -f $(DESTDIR)$(MANDIR)/man$${f##*.}/$${f##*/}; done

# ------------------------------------------- man pages, packages, version
man: $(MAN_OUT)

$(TARGET)/man/%: man/% Cargo.toml
	@mkdir -p $(@D)
	sed 's|@VERSION@|$(VERSION)|g' $< > $@

# Debian packages: the `make install` layout for /usr, split into the library
# package and the -dev package by packaging/build-deb.sh.
DEB_DIR      := $(TARGET)/deb
DEB_MULTIARCH = $(shell dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || $${CC:-cc} -print-multiarch)
deb: lib man
	@test -z "$(OPENSSL_DIR)" || { echo "make deb: packages are built against the system OpenSSL only" >&2; exit 1; }
	rm -rf $(DEB_DIR)/stage
	$(MAKE) --no-print-directory install DESTDIR=$(CURDIR)/$(DEB_DIR)/stage PREFIX=/usr \
		LIBDIR=/usr/lib/$(DEB_MULTIARCH)
	sh packaging/build-deb.sh $(VERSION) $(DEB_DIR)/stage $(DEB_DIR)

test-doc: man
	sh packaging/lint-man.sh $(MAN_OUT)

test-version: deb
	sh packaging/check-version.sh $(TARGET)

version:
	@echo $(VERSION)

# Installs the packages on this machine (root only; CI is root), exit 77 = skipped.
test-deb: deb
	@bash packaging/test-deb.sh $(DEB_DIR); rc=$$?; \
	if [ $$rc -eq 77 ]; then echo "test-deb: SKIPPED (needs root for dpkg -i)"; else exit $$rc; fi

clean:
	$(CARGO) clean
