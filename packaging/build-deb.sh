#!/bin/sh
# build-deb.sh VERSION STAGE OUTDIR: splits the `make install` tree STAGE
# (PREFIX=/usr, LIBDIR=/usr/lib/<multiarch>) into the Debian packages
#
#   libsslasync0      the library, with-sslasync, sslasync(7), with-sslasync(1)
#   libsslasync-dev   sslasync.h, sslasync.pc, the libsslasync.so link, section 3
#
# built with dpkg-deb into OUTDIR, then runs lintian on them (failing on any
# error or warning that packaging/lintian-overrides does not explain).
# Environment: DEB_MAINTAINER ("Name <address>"; default: git's user.name and
# user.email), LINTIAN=0 to skip lintian.
set -eu
version=${1:?version}
stage=${2:?stage dir}
out=${3:?output dir}
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
# The Maintainer field: DEB_MAINTAINER, else the repository's git identity.
maintainer=${DEB_MAINTAINER:-$(git -C "$root" config user.name 2>/dev/null) <$(git -C "$root" config user.email 2>/dev/null)>}
case $maintainer in
" <>" | *"<>") echo "build-deb: set DEB_MAINTAINER='Name <address>' (no git identity)" >&2; exit 1 ;;
esac
umask 022

mkdir -p "$out"
out=$(cd "$out" && pwd)
stage=$(cd "$stage" && pwd)
so=$(cd "$stage" && ls usr/lib/*/libsslasync.so."$version")
libdir=$(dirname "$so")
arch=$(dpkg --print-architecture)
pkgs="$out/pkg"
# Packages of an older version left here would confuse the tests.
rm -rf "$pkgs" "$out"/libsslasync*.deb
mkdir -p "$pkgs"
# Reproducible timestamps (gzip -n, dpkg-deb): the release date in CHANGELOG.md.
release_date=$(sed -n "s/^## \[$version\] - \([0-9-]*\).*/\1/p" "$root/CHANGELOG.md")
[ -n "$release_date" ] || { echo "build-deb: CHANGELOG.md has no '## [$version] - DATE' entry" >&2; exit 1; }
SOURCE_DATE_EPOCH=$(date -u -d "$release_date 12:00" +%s)
export SOURCE_DATE_EPOCH

# put PKG SRC DEST MODE: copies a file from the stage into PKG's tree.
put() {
    mkdir -p "$pkgs/$1/$(dirname "$3")"
    install -m "$4" "$stage/$2" "$pkgs/$1/$3"
}
# man PKG PAGE: a man page, compressed as Debian policy asks.
man() {
    sec=${2##*.}
    mkdir -p "$pkgs/$1/usr/share/man/man$sec"
    gzip -9n <"$stage/usr/share/man/man$sec/$2" >"$pkgs/$1/usr/share/man/man$sec/$2.gz"
}

# The Debian changelog of this native package, from CHANGELOG.md: one entry
# per release, its bullet points as items (continuation lines folded in).
debian_changelog() {
    # Entries newer than VERSION are left out. CHANGELOG.md has dates only and
    # dpkg wants strictly decreasing timestamps: the newest entry is 12:00
    # UTC, each older one a minute earlier.
    awk -v maint="$maintainer" -v want="$version" '
        function flush() { if (item != "") { items = items "  * " item "\n"; item = "" } }
        function close_entry() {
            flush()
            if (ver != "" && started) {
                cmd = "date -u -R -d \"" date " 12:00 " (n + 0) " minutes ago\""
                cmd | getline rdate; close(cmd); n++
                printf "sslasync (%s) unstable; urgency=medium\n\n%s\n -- %s  %s\n\n", ver, items, maint, rdate
            }
            items = ""
        }
        /^## \[/ { close_entry(); ver = $2; gsub(/[][]/, "", ver); date = $4
                   if (ver == want) started = 1; next }
        ver == "" || !started { next }
        /^- / { flush(); item = substr($0, 3); next }
        /^  +[^ ]/ && item != "" { sub(/^ +/, ""); item = item " " $0; next }
        { flush() }
        END { close_entry() }' "$root/CHANGELOG.md" |
    # Debian changelog lines stay under 80 columns.
    awk '/^  \* / { s = substr($0, 5); pre = "  * "
                    while (length(s) > 74) {
                        i = 74; while (i > 1 && substr(s, i, 1) != " ") i--
                        if (i == 1) break
                        print pre substr(s, 1, i - 1); s = substr(s, i + 1); pre = "    "
                    }
                    print pre s; next }
         { print }'
}

docs() {
    d="$pkgs/$1/usr/share/doc/$1"
    mkdir -p "$d"
    install -m 0644 "$here/copyright" "$d/copyright"
    debian_changelog | gzip -9n >"$d/changelog.gz"
    if [ -f "$here/lintian-overrides/$1" ]; then
        mkdir -p "$pkgs/$1/usr/share/lintian/overrides"
        install -m 0644 "$here/lintian-overrides/$1" "$pkgs/$1/usr/share/lintian/overrides/$1"
    fi
}

# ---------------------------------------------------------- libsslasync0
p=libsslasync0
mkdir -p "$pkgs/$p/$libdir" "$pkgs/$p/DEBIAN"
# Stripped of the debug info the release profile keeps (policy 10.1).
strip --strip-unneeded --remove-section=.comment --remove-section=.note \
    -o "$pkgs/$p/$so" "$stage/$so"
chmod 0644 "$pkgs/$p/$so"
ln -s "libsslasync.so.$version" "$pkgs/$p/$libdir/libsslasync.so.0"
put $p usr/bin/with-sslasync usr/bin/with-sslasync 0755
man $p sslasync.7
man $p with-sslasync.1
docs $p

# The library's run-time dependencies, as dpkg-shlibdeps computes them from
# the libraries it links (libssl3, libc6, libgcc-s1); it wants a debian/control.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/debian"
printf 'Source: sslasync\n\nPackage: %s\nArchitecture: any\n' $p >"$tmp/debian/control"
depends=$(cd "$tmp" && dpkg-shlibdeps -O "$pkgs/$p/$so" | sed -n 's/^shlibs:Depends=//p')
[ -n "$depends" ] || { echo "build-deb: dpkg-shlibdeps found no dependencies" >&2; exit 1; }

control() {
    pkg=$1 section=$2 deps=$3
    shift 3
    size=$(du -sk --exclude=DEBIAN "$pkgs/$pkg" | cut -f1)
    {
        echo "Package: $pkg"
        echo "Source: sslasync"
        echo "Version: $version"
        echo "Architecture: $arch"
        echo "Maintainer: $maintainer"
        echo "Installed-Size: $size"
        echo "Depends: $deps"
        for extra in "$@"; do echo "$extra"; done
        echo "Section: $section"
        echo "Priority: optional"
    } >"$pkgs/$pkg/DEBIAN/control"
}

control $p libs "$depends" "Recommends: binutils"
cat >>"$pkgs/$p/DEBIAN/control" <<'EOF2'
Description: OpenSSL async completion callback API as a drop-in shim
 sslasync exports OpenSSL's asynchronous-completion callback API
 (SSL_CTX_set_async_callback, SSL_set_async_callback, SSL_get_async_status
 and their arg setters) in front of libssl, for TLS servers whose crypto is
 offloaded to an async engine or provider. It fixes the native behaviour
 that crashes or hangs C callers: callbacks registered after the first
 async job, callbacks cleared while wired, NULL arguments, and completions
 after SSL_free.
 .
 This package contains the shared library, the with-sslasync wrapper that
 preloads it into unmodified programs (with-sslasync --check tells
 beforehand whether it would be active; it needs binutils), and the
 sslasync(7) and with-sslasync(1) manual pages.
EOF2
# Our own shared library: other packages linking it depend on this package.
echo "libsslasync 0 $p (>= $version)" >"$pkgs/$p/DEBIAN/shlibs"
echo "activate-noawait ldconfig" >"$pkgs/$p/DEBIAN/triggers"
chmod 0644 "$pkgs/$p/DEBIAN/shlibs" "$pkgs/$p/DEBIAN/triggers"

# ------------------------------------------------------- libsslasync-dev
p=libsslasync-dev
mkdir -p "$pkgs/$p/$libdir" "$pkgs/$p/DEBIAN"
put $p usr/include/sslasync.h usr/include/sslasync.h 0644
put $p "$libdir/pkgconfig/sslasync.pc" "$libdir/pkgconfig/sslasync.pc" 0644
ln -s libsslasync.so.0 "$pkgs/$p/$libdir/libsslasync.so"
for page in "$stage"/usr/share/man/man3/*.3; do man $p "${page##*/}"; done
docs $p
control $p libdevel "libsslasync0 (= $version), libssl-dev"
cat >>"$pkgs/$p/DEBIAN/control" <<'EOF2'
Description: OpenSSL async completion callback API as a drop-in shim - development files
 sslasync exports OpenSSL's asynchronous-completion callback API in front
 of libssl, fixing the native behaviour that crashes or hangs C callers.
 .
 This package contains the header sslasync.h, the pkg-config file (which
 links the shim ahead of libssl and keeps --as-needed from dropping it),
 the libsslasync.so link, and the section 3 manual pages.
EOF2

# ----------------------------------------------------------------- build
for p in libsslasync0 libsslasync-dev; do
    (cd "$pkgs/$p" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | sort |
        xargs md5sum >DEBIAN/md5sums)
    chmod 0644 "$pkgs/$p/DEBIAN/md5sums" "$pkgs/$p/DEBIAN/control"
    find "$pkgs/$p" -type d -exec chmod 0755 {} +
    dpkg-deb --root-owner-group -Zxz --build "$pkgs/$p" "$out/${p}_${version}_$arch.deb" >/dev/null
    echo "build-deb: $out/${p}_${version}_$arch.deb"
done

if [ "${LINTIAN:-1}" != 0 ]; then
    command -v lintian >/dev/null 2>&1 ||
        { echo "build-deb: lintian not found (sh .ci/deps installs it; LINTIAN=0 skips)" >&2; exit 1; }
    # Errors and warnings fail; info and pedantic tags are shown.
    lintian --fail-on error,warning --display-info \
        "$out/libsslasync0_${version}_$arch.deb" "$out/libsslasync-dev_${version}_$arch.deb"
    echo "build-deb: lintian clean"
fi
