#!/bin/sh
# check-version.sh TARGETDIR: every place that states sslasync's version
# must state Cargo.toml's [package] version: the Makefile, CHANGELOG.md, the
# built man pages, with-sslasync --version, SSLASYNC_VERSION in sslasync.h,
# sslasync_version() of the built library, and the Debian packages (their
# Version, dependencies, library file name, .pc, header, man pages and
# changelog). TARGETDIR holds release/, man/ and deb/ (make deb). One line
# per check; exit 1 if any fails.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
target=${1:?target dir (holding release/, man/, deb/)}
target=$(cd "$target" && pwd)
want=$(sed -n '/^\[package\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' "$root/Cargo.toml")
[ -n "$want" ] || { echo "check-version: no version in Cargo.toml" >&2; exit 1; }
echo "check-version: Cargo.toml says $want"

fails=0
# same WHAT VALUE: VALUE must be the version.
same() {
    if [ "$2" = "$want" ]; then
        echo "ok:   $1: $2"
    else
        echo "FAIL: $1: '${2}', want '$want'"
        fails=$((fails + 1))
    fi
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# SSLASYNC_VERSION's string in a header.
header_version() {
    sed -n 's/^#[[:space:]]*define[[:space:]]\{1,\}SSLASYNC_VERSION[[:space:]]\{1,\}"\([^"]*\)".*/\1/p' "$1" | head -n 1
}

same "Makefile VERSION" "$(make --no-print-directory -s -C "$root" version)"
same "CHANGELOG.md latest entry" "$(sed -n 's/^## \[\([^]]*\)\].*/\1/p' "$root/CHANGELOG.md" | head -n 1)"
same "include/sslasync.h SSLASYNC_VERSION" \
    "$(header_version "$root/include/sslasync.h")"

# The man pages' .TH source field: "sslasync VERSION".
th_version() { sed -n 's/^\.TH [^"]*"sslasync \([^"]*\)".*/\1/p' | head -n 1; }
for page in "$root"/man/*.[1-8]; do
    same "man page ${page##*/}" "$(th_version <"$target/man/${page##*/}")"
done
same "with-sslasync --version" "$("$target/release/with-sslasync" --version | sed 's/.* //')"

# sslasync_version() of the library itself, through a program linked with it
# (compiled against the repository's header).
cat >"$tmp/v.c" <<'EOC'
#include <stdio.h>
#include <sslasync.h>
int main(void)
{
    const char *v = sslasync_version();
    printf("%s\n", v ? v : "(null)");
    return 0;
}
EOC
if ${CC:-cc} -Werror=implicit-function-declaration -o "$tmp/v" "$tmp/v.c" -I"$root/include" -L"$target/release" \
        -Wl,--no-as-needed -lsslasync -lssl -lcrypto -Wl,-rpath,"$target/release" \
        >"$tmp/cc.log" 2>&1; then
    same "sslasync_version()" "$("$tmp/v" 2>/dev/null)"
else
    echo "FAIL: sslasync_version(): a program calling it does not build:"
    sed 's/^/      /' "$tmp/cc.log" | head -n 5
    fails=$((fails + 1))
fi

# The packages.
arch=$(dpkg --print-architecture)
lib=$target/deb/libsslasync0_${want}_$arch.deb
dev=$target/deb/libsslasync-dev_${want}_$arch.deb
for deb in "$lib" "$dev"; do
    if [ ! -f "$deb" ]; then
        echo "FAIL: ${deb##*/} not built (make deb)"
        fails=$((fails + 1))
    fi
done
if [ -f "$lib" ] && [ -f "$dev" ]; then
    same "libsslasync0 Version" "$(dpkg-deb -f "$lib" Version)"
    same "libsslasync-dev Version" "$(dpkg-deb -f "$dev" Version)"
    same "libsslasync-dev Depends on libsslasync0 (= V)" \
        "$(dpkg-deb -f "$dev" Depends | sed -n 's/.*libsslasync0 (= \([^)]*\)).*/\1/p')"
    mkdir "$tmp/lib" "$tmp/dev"
    dpkg-deb -x "$lib" "$tmp/lib"
    dpkg-deb -x "$dev" "$tmp/dev"
    dpkg-deb -e "$lib" "$tmp/lib/DEBIAN"
    same "libsslasync0 shlibs (>= V)" "$(sed -n 's/.*(>= \([^)]*\)).*/\1/p' "$tmp/lib/DEBIAN/shlibs")"
    same "library file name libsslasync.so.V" \
        "$(cd "$tmp/lib" && ls usr/lib/*/libsslasync.so.*.* | sed 's/.*libsslasync\.so\.//')"
    same "sslasync.pc Version" "$(sed -n 's/^Version: *//p' "$tmp"/dev/usr/lib/*/pkgconfig/sslasync.pc)"
    same "packaged sslasync.h SSLASYNC_VERSION" \
        "$(header_version "$tmp/dev/usr/include/sslasync.h")"
    same "packaged with-sslasync --version" "$(sh "$tmp/lib/usr/bin/with-sslasync" --version | sed 's/.* //')"
    for page in "$tmp"/lib/usr/share/man/man*/*.gz "$tmp"/dev/usr/share/man/man*/*.gz; do
        same "packaged man page ${page##*/}" "$(gzip -dc "$page" | th_version)"
    done
    for p in lib dev; do
        pkg=libsslasync0
        [ $p = dev ] && pkg=libsslasync-dev
        same "$pkg Debian changelog" \
            "$(gzip -dc "$tmp/$p/usr/share/doc/$pkg/changelog.gz" | sed -n '1s/^sslasync (\([^)]*\)).*/\1/p')"
    done
fi

if [ $fails -ne 0 ]; then
    echo "check-version: $fails place(s) disagree with Cargo.toml ($want)"
    exit 1
fi
echo "check-version: every place says $want"
