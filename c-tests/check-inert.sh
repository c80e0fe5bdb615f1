#!/bin/sh
# Runs a program with libsslasync loaded but inert, and checks that the
# program sees native OpenSSL (SSLASYNC_EXPECT=native: late_register then
# asserts native's fd fallback) and that the shim says why in exactly one
# stderr line.
#
#   check-inert.sh behind PROG     PROG links the shim *behind* libssl, so
#                                  libssl's definitions win
#   check-inert.sh disabled PROG   PROG with the shim preloaded (its
#                                  symbols win) and SSLASYNC_DISABLE=1: every
#                                  export must be a pure forward
set -u
how=${1:?behind|disabled}
prog=${2:?program}
err=$(mktemp)
trap 'rm -f "$err"' EXIT

case $how in
behind)
    want='not in front of libssl'
    env -u LD_PRELOAD SSLASYNC_EXPECT=native "$prog" 2>"$err"
    rc=$?
    ;;
disabled)
    want='SSLASYNC_DISABLE=1 is set'
    [ -f "${SSLASYNC_SHIM:-}" ] || { echo "check-inert: SSLASYNC_SHIM not set" >&2; exit 1; }
    env LD_PRELOAD="${SSLASYNC_ASAN_RUNTIME:+$SSLASYNC_ASAN_RUNTIME:}$SSLASYNC_SHIM" \
        SSLASYNC_DISABLE=1 SSLASYNC_EXPECT=native "$prog" 2>"$err"
    rc=$?
    ;;
*)
    echo "check-inert: unknown mode $how" >&2
    exit 2
    ;;
esac
cat "$err" >&2
[ "$rc" -eq 0 ] || { echo "check-inert: $prog exited $rc" >&2; exit 1; }
n=$(grep -c '^sslasync' "$err")
if [ "$n" -ne 1 ] || ! grep -q "^sslasync: inactive, .*$want" "$err"; then
    echo "check-inert: want exactly one 'sslasync: inactive ... $want' line, got $n sslasync lines" >&2
    exit 1
fi
if [ "$how" = behind ]; then
    ldd "$prog" | grep -q 'libsslasync' || { echo "check-inert: shim not loaded at all" >&2; exit 1; }
fi
echo "inert ($how): one stderr line, native behaviour"
