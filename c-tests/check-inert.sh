#!/bin/sh
# Runs a program whose libsslasync is loaded but linked *behind* libssl, so
# libssl's definitions win: the shim must notice at load time, stay inert
# (the program sees native OpenSSL, SSLASYNC_EXPECT=native) and say so in
# exactly one stderr line.
#
#   check-inert.sh PROG
set -u
prog=${1:?program}
err=$(mktemp)
trap 'rm -f "$err"' EXIT

env -u LD_PRELOAD SSLASYNC_EXPECT=native "$prog" 2>"$err"
rc=$?
cat "$err" >&2
[ "$rc" -eq 0 ] || { echo "check-inert: $prog exited $rc" >&2; exit 1; }
n=$(grep -c '^sslasync: ' "$err")
if [ "$n" -ne 1 ] || ! grep -q '^sslasync: inactive, .*not in front of libssl' "$err"; then
    echo "check-inert: want exactly one 'sslasync: inactive ... not in front' line, got $n sslasync lines" >&2
    exit 1
fi
ldd "$prog" | grep -q 'libsslasync' || { echo "check-inert: shim not loaded at all" >&2; exit 1; }
echo "inert behind libssl: one stderr line, native behaviour"
