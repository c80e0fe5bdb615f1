#!/usr/bin/env bash
# Builds a private shared OpenSSL for the sslasync test matrix from the source
# carried by the crates.io openssl-src crate, and installs it into a cache
# outside the checkout:
#
#   c-tests/matrix/build-openssl.sh 3.5.5     # or 4.0.3, 1.1.1w
#   -> ${SSLASYNC_CACHE:-$HOME/.cache/sslasync}/openssl-3.5.5/{bin,include,lib}
#
# crates.io is the only source reachable from CI and dev machines, which is why
# the tarball comes through cargo rather than openssl.org. Does nothing when the
# build is already installed (stamp file). Prints the prefix on the last line.
set -euo pipefail

usage() { echo "usage: $0 {3.5.5|4.0.3|1.1.1w}" >&2; exit 2; }
[ $# -eq 1 ] || usage
VERSION=$1

case "$VERSION" in
    3.5.5)  CRATE=300.5.5+3.5.5;  STRIPPED=1; TARGET=build_sw ;;
    4.0.3)  CRATE=400.0.2+4.0.3;  STRIPPED=1; TARGET=build_sw ;;
    # 1.1.1 has no build_sw target; its default one builds libraries,
    # programs and the (few) test programs.
    1.1.1w) CRATE=111.28.2+1.1.1w; STRIPPED=0; TARGET=all ;;
    *) usage ;;
esac
# The 3.5/4.0 crates leave out util/mkdef.pl and util/providers.num, which the
# shared-library build still needs; this older crate still ships both and they
# have not changed in a way that matters for building the libraries.
HELPER_CRATE=300.3.2+3.3.2

CACHE=${SSLASYNC_CACHE:-$HOME/.cache/sslasync}
PREFIX=$CACHE/openssl-$VERSION
STAMP=$PREFIX/.sslasync-stamp
CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}
JOBS=$(nproc 2>/dev/null || echo 2)

log() { echo "build-openssl[$VERSION]: $*" >&2; }

stamp_ok() {
    [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$CRATE" ] &&
        ls "$PREFIX"/lib/libssl.so* >/dev/null 2>&1
}

# The crates carry no .cnf files, so install_sw leaves OPENSSLDIR without the
# openssl.cnf that `openssl req` (the smoke test's certificate) insists on
# reading. An empty one means the built-in defaults, as with no file at all
# for libssl. Also added to builds cached before this existed.
ensure_cnf() {
    local dir=$1/ssl
    [ -f "$dir/openssl.cnf" ] && return 0
    mkdir -p "$dir"
    echo "# Empty on purpose (see c-tests/matrix/build-openssl.sh)." >"$dir/openssl.cnf"
}

if stamp_ok; then
    ensure_cnf "$PREFIX"
    log "already installed in $PREFIX"
    echo "$PREFIX"
    exit 0
fi

mkdir -p "$CACHE"
# Two matrix runs starting together must not build into the same prefix.
exec 9>"$CACHE/openssl-$VERSION.lock"
if command -v flock >/dev/null; then
    log "taking lock $CACHE/openssl-$VERSION.lock"
    flock 9
fi
if stamp_ok; then
    ensure_cnf "$PREFIX"
    log "installed by a concurrent run in $PREFIX"
    echo "$PREFIX"
    exit 0
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sslasync-openssl-$VERSION.XXXXXX")
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT

# Prints the unpacked source directory of openssl-src =<crate>, fetching the
# crate into the cargo registry when it is not there yet.
crate_src() {
    local crate=$1 d
    for d in "$CARGO_HOME"/registry/src/*/"openssl-src-$crate"/openssl; do
        if [ -f "$d/Configure" ]; then echo "$d"; return 0; fi
    done
    log "cargo fetch openssl-src =$crate"
    local t="$WORK/fetch-$crate"
    mkdir -p "$t/src"
    cat >"$t/Cargo.toml" <<TOML
[package]
name = "sslasync-openssl-fetch"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
openssl-src = "=$crate"
TOML
    : >"$t/src/lib.rs"
    (cd "$t" && cargo fetch --quiet) >&2
    for d in "$CARGO_HOME"/registry/src/*/"openssl-src-$crate"/openssl; do
        if [ -f "$d/Configure" ]; then echo "$d"; return 0; fi
    done
    log "openssl-src $crate not found under $CARGO_HOME/registry/src after cargo fetch"
    return 1
}

SRC=$(crate_src "$CRATE")
log "source $SRC"
BUILD=$WORK/openssl
log "copying source to $BUILD"
cp -a "$SRC" "$BUILD"
chmod -R u+w "$BUILD"

EXTRA=()
if [ "$STRIPPED" = 1 ]; then
    HSRC=$(crate_src "$HELPER_CRATE")
    for f in util/mkdef.pl util/providers.num; do
        if [ ! -e "$BUILD/$f" ]; then
            log "adding $f from openssl-src $HELPER_CRATE"
            cp "$HSRC/$f" "$BUILD/$f"
        fi
    done
    # The crate has no test/ tree.
    EXTRA+=(no-tests)
fi

# The rpath lets the installed bin/openssl and libssl find this libcrypto and
# not the system one, whose soname (libcrypto.so.3) 3.5.5 shares.
CONFIG=(./config --prefix="$PREFIX" --libdir=lib --openssldir="$PREFIX/ssl"
        shared "${EXTRA[@]}" "-Wl,-rpath,$PREFIX/lib")
log "${CONFIG[*]}"
start=$(date +%s)
(cd "$BUILD" && "${CONFIG[@]}") >"$WORK/config.log" 2>&1 ||
    { tail -n 40 "$WORK/config.log" >&2; exit 1; }

log "make -j$JOBS $TARGET"
(cd "$BUILD" && make -j"$JOBS" "$TARGET") >"$WORK/make.log" 2>&1 ||
    { tail -n 60 "$WORK/make.log" >&2; exit 1; }

# Installed into a staging root first and moved into place at the end so that an
# interrupted run never leaves a half-installed prefix that looks complete.
STAGE=$WORK/stage
log "make install_sw (staged)"
(cd "$BUILD" && make DESTDIR="$STAGE" install_sw) >"$WORK/install.log" 2>&1 ||
    { tail -n 40 "$WORK/install.log" >&2; exit 1; }

ensure_cnf "$STAGE$PREFIX"
rm -rf "$PREFIX"
mkdir -p "$(dirname "$PREFIX")"
mv "$STAGE$PREFIX" "$PREFIX"
echo "$CRATE" >"$STAMP"

got=$("$PREFIX/bin/openssl" version)
log "installed $got in $PREFIX ($(( $(date +%s) - start )) s)"
case "$got" in
    "OpenSSL $VERSION "*) ;;
    *) log "unexpected version from $PREFIX/bin/openssl: $got"; exit 1 ;;
esac
echo "$PREFIX"
