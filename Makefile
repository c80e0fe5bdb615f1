# sslasync: build, test, demo, install.
#
#   make            build target/release/libsslasync.so (soname libsslasync.so.0)
#   make demo       the example async TLS server, callback mode vs fd mode
#   make bench      shim vs native OpenSSL benchmarks (BENCH_QUICK=1: under a minute)
#   make matrix     the C suite on system OpenSSL 3.0, 3.5.5 and 4.0.3 (builds them once)
#   make test       every test: Rust checks, C suite (preload/linked/native), ASan+UBSan
#   make header     regenerate include/sslasync.h
#   make install    PREFIX=/usr/local LIBDIR=$(PREFIX)/lib DESTDIR=
#
# Build against another OpenSSL (its own build tree, target/<prefix name>/):
#   make OPENSSL_DIR=/opt/openssl-3.5 [test|demo]   an installed prefix
#   make OPENSSL=4.0.3 [test|demo]                  a private build (3.5.5, 4.0.3),
#                                                   made once into ~/.cache/sslasync

PREFIX     ?= /usr/local
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
BINDIR     ?= $(PREFIX)/bin
DESTDIR    ?=
CARGO      ?= cargo
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)

VERSION    := 0.1.0
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

# The preload wrapper, generated next to the library (and installed to BINDIR).
define WRAPPER
#!/bin/sh
# with-sslasync COMMAND [ARGS...]: runs COMMAND with sslasync preloaded in
# front of the system libssl. The program needs no rebuild: its calls to
# OpenSSL's async callback API and libssl's async job starts go through it.
SSLASYNC_LIB=$${SSLASYNC_LIB:-@SO@}
if [ $$# -eq 0 ]; then
    echo "usage: with-sslasync COMMAND [ARGS...]" >&2
    exit 2
fi
if [ ! -f "$$SSLASYNC_LIB" ]; then
    echo "with-sslasync: $$SSLASYNC_LIB not found (run make, or set SSLASYNC_LIB)" >&2
    exit 127
fi
LD_PRELOAD="$$SSLASYNC_LIB$${LD_PRELOAD:+:$$LD_PRELOAD}" exec "$$@"
endef

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
export WRAPPER PCFILE

.PHONY: all deps lib header test test-rust test-c test-asan demo bench matrix install uninstall clean

all: lib

deps:
	@sh .ci/deps

lib: deps
	$(CARGO) build --release
	ln -sf libsslasync.so $(TARGET)/release/libsslasync.so.0
	printf '%s\n' "$$WRAPPER" | sed 's|@SO@|$(CURDIR)/$(SO)|' > $(TARGET)/release/with-sslasync
	chmod 0755 $(TARGET)/release/with-sslasync

header:
	SSLASYNC_BLESS=1 $(CARGO) test --release header

test: test-rust test-c test-asan
	@echo "make test: all suites passed"

test-rust: lib
	$(CARGO) fmt --check
	$(CARGO) clippy --release --all-targets -- -D warnings
	$(CARGO_TEST_ENV) $(CARGO) test --release
	# The slot protocol under loom's model checker (its own build: --cfg loom).
	$(CARGO_TEST_ENV) RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=$(CURDIR)/$(TARGET)/loom \
		$(CARGO) test --release --lib loom

test-c: lib
	cmake -S c-tests -B $(CTEST_DIR) $(CMAKE_ARGS) -DSSLASYNC_SANITIZE=OFF >/dev/null
	cmake --build $(CTEST_DIR) -j$(JOBS)
	ctest --test-dir $(CTEST_DIR) -j$(JOBS) --output-on-failure

test-asan: lib
	cmake -S c-tests -B $(ASAN_DIR) $(CMAKE_ARGS) -DSSLASYNC_SANITIZE=ON >/dev/null
	cmake --build $(ASAN_DIR) -j$(JOBS)
	ctest --test-dir $(ASAN_DIR) -j$(JOBS) --output-on-failure

demo: lib
	cmake -S c-tests -B $(CTEST_DIR) $(CMAKE_ARGS) >/dev/null
	cmake --build $(CTEST_DIR) -j$(JOBS) --target async_server
	SSLASYNC_STATS=1 $(CTEST_DIR)/examples/async_server --compare

bench: lib
	@sh .ci/deps bench
	cmake -S c-tests -B $(CTEST_DIR) $(CMAKE_ARGS) >/dev/null
	cmake --build $(CTEST_DIR) -j$(JOBS)
	SSLASYNC_SHIM=$(CURDIR)/$(SO) SSLASYNC_BUILD_DIR=$(CURDIR)/$(CTEST_DIR) BENCH_OUT=$(CURDIR)/$(TARGET)/bench \
		sh benches/run.sh

matrix: lib
	sh c-tests/matrix/run-matrix.sh

install: lib
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR)/pkgconfig
	install -m 0755 $(SO) $(DESTDIR)$(LIBDIR)/libsslasync.so.$(VERSION)
	ln -sf libsslasync.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libsslasync.so.0
	ln -sf libsslasync.so.0 $(DESTDIR)$(LIBDIR)/libsslasync.so
	install -m 0644 include/sslasync.h $(DESTDIR)$(INCLUDEDIR)/sslasync.h
	printf '%s\n' "$$PCFILE" | sed 's|@PREFIX@|$(PREFIX)|; s|@LIBDIR@|$(LIBDIR)|; s|@INCLUDEDIR@|$(INCLUDEDIR)|' \
		> $(DESTDIR)$(LIBDIR)/pkgconfig/sslasync.pc
	printf '%s\n' "$$WRAPPER" | sed 's|@SO@|$(LIBDIR)/libsslasync.so.0|' > $(DESTDIR)$(BINDIR)/with-sslasync
	chmod 0755 $(DESTDIR)$(BINDIR)/with-sslasync

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/libsslasync.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libsslasync.so.0 \
		$(DESTDIR)$(LIBDIR)/libsslasync.so $(DESTDIR)$(INCLUDEDIR)/sslasync.h \
		$(DESTDIR)$(LIBDIR)/pkgconfig/sslasync.pc $(DESTDIR)$(BINDIR)/with-sslasync

clean:
	$(CARGO) clean
