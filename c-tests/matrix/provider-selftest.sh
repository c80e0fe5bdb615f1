#!/usr/bin/env bash
# Builds c-tests/matrix/provider_selftest.c with the provider-based simaccel
# fixture against each OpenSSL and runs it:
#
#   c-tests/matrix/provider-selftest.sh [system|3.5.5|4.0.3 ...]
#
# Default: system 3.5.5 4.0.3. Private builds come from build-openssl.sh (built
# into the cache when missing). Each run must really load the intended
# libraries: 3.5.5 has the same sonames as the system 3.0, so a missing rpath
# would silently test the wrong OpenSSL. That is checked twice, with ldd here
# and by the program itself (run-time vs compile-time version).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CTESTS=$(dirname "$HERE")
ROOT=$(dirname "$CTESTS")
OUT=${SSLASYNC_MATRIX_OUT:-$ROOT/target/matrix}
CC=${CC:-cc}
CFLAGS=(-std=gnu11 -Wall -Wextra -Werror -O1 -g)
SRCS=("$HERE/provider_selftest.c" "$CTESTS/fixture/simaccel_provider.c"
      "$CTESTS/fixture/simaccel_core.c")

[ $# -gt 0 ] || set -- system 3.5.5 4.0.3
mkdir -p "$OUT"
passed=0 failed=0
summary=()

run_one() {
    local ver=$1 prefix="" bin="$OUT/provider_selftest-$1" inc=() lib=()
    local want_libdir libs

    if [ "$ver" != system ]; then
        prefix=$("$HERE/build-openssl.sh" "$ver" | tail -n 1)
        inc=(-I"$prefix/include")
        lib=(-L"$prefix/lib" -Wl,-rpath,"$prefix/lib")
    fi
    echo "== provider selftest: OpenSSL $ver${prefix:+ ($prefix)}"
    echo "+ $CC ${CFLAGS[*]} ${inc[*]} -I$CTESTS/fixture -o $bin <srcs> ${lib[*]} -lssl -lcrypto -pthread"
    "$CC" "${CFLAGS[@]}" "${inc[@]}" -I"$CTESTS/fixture" -o "$bin" "${SRCS[@]}" \
        "${lib[@]}" -lssl -lcrypto -pthread || return 1

    # Which files the dynamic loader really picks, without any help from the
    # caller's environment.
    libs=$(env -u LD_LIBRARY_PATH -u LD_PRELOAD ldd "$bin" | grep -E 'lib(ssl|crypto)\.so')
    echo "$libs" | sed 's/^/   /'
    if [ -n "$prefix" ]; then
        want_libdir=$prefix/lib
        if echo "$libs" | grep -v -q -- "=> $want_libdir/"; then
            echo "provider-selftest: $bin does not load libssl/libcrypto from $want_libdir" >&2
            return 1
        fi
    elif echo "$libs" | grep -q -- "${SSLASYNC_CACHE:-$HOME/.cache/sslasync}"; then
        echo "provider-selftest: $bin loads a private OpenSSL instead of the system one" >&2
        return 1
    fi
    env -u LD_LIBRARY_PATH -u LD_PRELOAD "$bin"
}

for ver in "$@"; do
    case "$ver" in
        1.1.1*) echo "== provider selftest: OpenSSL $ver has no providers, skipped"
                summary+=("$ver skipped"); continue ;;
    esac
    start=$(date +%s)
    if run_one "$ver"; then
        passed=$((passed + 1)); res=passed
    else
        failed=$((failed + 1)); res=FAILED
    fi
    summary+=("$ver $res ($(( $(date +%s) - start )) s)")
done

echo "== provider selftest summary"
for s in "${summary[@]}"; do echo "   $s"; done
echo "PROVIDER-SELFTEST passed=$passed failed=$failed"
[ "$failed" -eq 0 ]
