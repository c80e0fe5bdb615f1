#!/bin/bash
# test-deb.sh DEBDIR: the Debian packages' round trip on this machine (as
# root; CI runs as root): install libsslasync0 and libsslasync-dev with
# dpkg -i, build examples/async_server.c with `pkg-config --cflags --libs
# sslasync` against the installed files only and run it, check it with
# with-sslasync --check, run `with-sslasync openssl s_server`/`s_client`,
# then purge both and check that nothing is left behind.
#
# It refuses to start when anything of sslasync is installed already (a
# package, or a file the packages would own, e.g. from make install), so it
# never clobbers or removes what it did not install; once it has installed
# the packages it always purges them (trap). Exit 77: not root (skipped).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
debdir=$(cd "${1:?directory holding the .deb files}" && pwd)
[ "$(id -u)" -eq 0 ] || { echo "test-deb: needs root (dpkg -i)" >&2; exit 77; }

say() { echo "test-deb: $*"; }
die() { echo "test-deb: FAIL: $*" >&2; exit 1; }

version=$(sed -n '/^\[package\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' "$root/Cargo.toml")
arch=$(dpkg --print-architecture)
lib=$debdir/libsslasync0_${version}_$arch.deb
dev=$debdir/libsslasync-dev_${version}_$arch.deb
[ -f "$lib" ] && [ -f "$dev" ] || die "no packages for $version in $debdir (make deb)"
pkgs="libsslasync-dev libsslasync0"

tmp=$(mktemp -d)
installed=0
cleanup() {
    local rc=$?
    if [ $installed -eq 1 ]; then
        echo "test-deb: purging the packages after a failure" >&2
        dpkg --purge $pkgs >/dev/null 2>&1 || echo "test-deb: dpkg --purge failed, remove $pkgs by hand" >&2
    fi
    rm -rf "$tmp"
    exit $rc
}
trap cleanup EXIT

# ------------------------------------------------------------ preconditions
is_installed() { dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null | grep -qv '^not-installed$'; }
for p in $pkgs; do
    is_installed "$p" && die "$p is already installed ($(dpkg-query -W -f='${db:Status-Status}' "$p")): not touching it"
done
# Every path the packages would install (directories aside) must be absent.
{ dpkg-deb -c "$lib"; dpkg-deb -c "$dev"; } | awk '$1 !~ /^d/ { print $6 }' | sed 's|^\.||' >"$tmp/files"
while IFS= read -r f; do
    if [ -e "$f" ] || [ -L "$f" ]; then die "$f exists already (make install PREFIX=/usr?): not touching it"; fi
done <"$tmp/files"
ldconfig -p | grep -q libsslasync && die "the loader cache already knows a libsslasync: not touching it"
# A make install elsewhere (/usr/local) would shadow the packages' files
# (PATH, the compiler's include path) and the test would check the wrong ones.
wrap=$(command -v with-sslasync || true)
[ -z "$wrap" ] || die "a with-sslasync is installed already ($wrap): not touching it"
for f in /usr/local/include/sslasync.h /usr/local/lib/pkgconfig/sslasync.pc /usr/local/lib/libsslasync.so.0; do
    [ ! -e "$f" ] || die "$f exists (make install): uninstall it first"
done

# What the file system holds before; compared after the purge.
snapshot() {
    find /usr /etc /opt /var/lib/dpkg/info -xdev -not -path '*/__pycache__*' 2>/dev/null | LC_ALL=C sort
}
snapshot >"$tmp/before"

# ------------------------------------------------------------------ install
say "dpkg -i ${lib##*/} ${dev##*/}"
installed=1
dpkg -i "$lib" "$dev" >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log" >&2; die "dpkg -i failed"; }
for p in $pkgs; do
    [ "$(dpkg-query -W -f='${db:Status-Status} ${Version}' "$p")" = "installed $version" ] ||
        die "$p is not installed at version $version"
done
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || cc -print-multiarch)
libdir=/usr/lib/$multiarch
# The same file, whatever the path (merged /usr: the cache says /lib/...).
same_file() { [ -n "$1" ] && [ "$(readlink -f "$1")" = "$(readlink -f "$2")" ]; }
same_file "$(ldconfig -p | sed -n 's/^[[:space:]]*libsslasync\.so\.0 .*=> //p' | head -n 1)" \
    "$libdir/libsslasync.so.0" || die "ldconfig did not register $libdir/libsslasync.so.0 (ldconfig trigger)"
[ "$(pkg-config --modversion sslasync)" = "$version" ] || die "pkg-config --modversion sslasync is not $version"
man -w sslasync >/dev/null 2>&1 || die "man -w sslasync finds no page"
man -w 3 sslasync_stats_get >/dev/null 2>&1 || die "man -w 3 sslasync_stats_get finds no page"

# ----------------------------------------- build the example, installed files only
# Nothing of the checkout may leak in: no include path, no library path.
unset CPATH C_INCLUDE_PATH LIBRARY_PATH LD_LIBRARY_PATH LD_PRELOAD PKG_CONFIG_PATH SSLASYNC_LIB
cflags=$(pkg-config --cflags sslasync)
libs=$(pkg-config --libs sslasync)
say "cc examples/async_server.c $cflags $libs"
fx=$root/c-tests/fixture
# The example's simulated accelerator is an ENGINE on OpenSSL 3 (a provider
# on 4); the ENGINE API is deprecated in 3.0, hence the define for it only.
cc -c -O2 -Wall -I"$fx" -o "$tmp/core.o" "$fx/simaccel_core.c"
cc -c -O2 -Wall -I"$fx" -DOPENSSL_SUPPRESS_DEPRECATED -o "$tmp/glue.o" "$fx/simaccel_engine.c"
# shellcheck disable=SC2086
cc -O2 -Wall -Wextra -Werror -I"$fx" $cflags -o "$tmp/async_server" "$root/examples/async_server.c" \
    "$tmp/core.o" "$tmp/glue.o" $libs -lpthread -ldl ||
    die "examples/async_server.c does not build with pkg-config"
needed=$(readelf -dW "$tmp/async_server" | sed -n 's/.*(NEEDED).*\[\(.*\)\].*/\1/p' | tr '\n' ' ')
case " $needed" in
*" libsslasync.so.0 "*"libssl.so"*) ;;
*) die "async_server's DT_NEEDED ($needed) lacks libsslasync.so.0 ahead of libssl" ;;
esac
same_file "$(ldd "$tmp/async_server" | sed -n 's/^[[:space:]]*libsslasync\.so\.0 => \([^ ]*\).*/\1/p')" \
    "$libdir/libsslasync.so.0" || die "async_server does not load the installed $libdir/libsslasync.so.0"
say "async_server: DT_NEEDED $needed"
# --require-shim and SSLASYNC_EXPECT=shim: the program itself fails unless the
# shim provides the API it calls; the stats cross-check its own counts.
SSLASYNC_EXPECT=shim SSLASYNC_STATS=1 timeout 60 "$tmp/async_server" --require-shim \
    --duration 1 --clients 8 >"$tmp/server.log" 2>&1 ||
    { cat "$tmp/server.log" >&2; die "async_server (linked with the installed shim) failed"; }
grep -q 'counts consistent *yes' "$tmp/server.log" ||
    { cat "$tmp/server.log" >&2; die "async_server reports inconsistent counts"; }
say "async_server ran callback and fd mode against the installed shim"

# ------------------------------------------- the installed wrapper and --check
wrapper=/usr/bin/with-sslasync
[ "$(command -v with-sslasync)" = "$wrapper" ] || die "with-sslasync is not $wrapper on PATH"
"$wrapper" --check "$tmp/async_server" >"$tmp/check.log" 2>&1 ||
    { cat "$tmp/check.log" >&2; die "with-sslasync --check: the linked example would not be active"; }
"$wrapper" --check openssl >"$tmp/check.log" 2>&1 ||
    { cat "$tmp/check.log" >&2; die "with-sslasync --check openssl: would not be active"; }
grep -q "shim: $libdir/libsslasync.so.$version" "$tmp/check.log" ||
    { cat "$tmp/check.log" >&2; die "--check did not examine the installed library"; }
bash "$root/c-tests/smoke-s_server.sh" "$(command -v openssl)" "$wrapper" ||
    die "with-sslasync openssl s_server / s_client failed"

# -------------------------------------------------------------------- purge
say "dpkg --purge $pkgs"
dpkg --purge $pkgs >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log" >&2; die "dpkg --purge failed"; }
installed=0
for p in $pkgs; do
    is_installed "$p" && die "$p is still known to dpkg after --purge"
done
while IFS= read -r f; do
    if [ -e "$f" ] || [ -L "$f" ]; then die "$f is left behind after --purge"; fi
done <"$tmp/files"
ldconfig -p | grep -q libsslasync && die "the loader cache still lists libsslasync after --purge"
snapshot >"$tmp/after"
# Other work on this machine (apt-get by a parallel build) may change files
# meanwhile: a difference owned by another package is reported, not failed.
left=0
while IFS= read -r line; do
    path=${line:1}
    owner=$(dpkg -S "$path" 2>/dev/null | head -n 1 | cut -d: -f1 || true)
    if [ -n "$owner" ] && [ "${owner#libsslasync}" = "$owner" ]; then
        say "ignored: $line (belongs to $owner, changed meanwhile)"
    else
        echo "test-deb: left behind or removed: $line" >&2
        left=1
    fi
done < <(diff "$tmp/before" "$tmp/after" | sed -n 's/^\([<>]\) /\1/p')
[ $left -eq 0 ] || die "the file system differs after the round trip"
say "installed, built, ran and purged ${lib##*/} and ${dev##*/}; nothing left behind"
