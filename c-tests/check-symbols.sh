#!/bin/sh
# check-symbols.sh NM LIBRARY EXPORTS-LIST OPENSSL-NODE [DOC ...]
# The library's defined dynamic symbols must be exactly src/exports.list,
# each with its version node ("openssl" entries: OPENSSL-NODE, e.g.
# OPENSSL_3.0.0; "api" entries: OPENSSL-NODE, except SSLASYNC_0 when
# OPENSSL-NODE is OPENSSL_1_1_0, whose libssl has no such functions;
# "sslasync" entries: SSLASYNC_0) and as the default version
# (@@). Anything more (leaked Rust or libc symbols) would interpose on the
# host process, an unversioned or wrongly versioned symbol would capture
# another OpenSSL's calls, anything less breaks the API or the wiring.
# Each DOC (README, man page) must name every listed symbol.
set -u
nm=${1:?nm}
lib=${2:?library}
list=${3:?exports list}
node=${4:?OpenSSL version node}
shift 4

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

"$nm" -D --defined-only "$lib" >"$tmp/nm.out" || { echo "nm failed on $lib" >&2; exit 1; }
# Version-definition entries (type A) are not symbols.
awk '$2 != "A" { print $NF }' "$tmp/nm.out" | sort -u >"$tmp/actual"
awk -v node="$node" '
    /^[[:space:]]*(#|$)/ { next }
    $2 == "openssl"  { print $1 "@@" node; next }
    $2 == "api"      { print $1 "@@" (node == "OPENSSL_1_1_0" ? "SSLASYNC_0" : node); next }
    $2 == "sslasync" { print $1 "@@SSLASYNC_0"; next }
    { print "bad line in exports list: " $0 > "/dev/stderr"; exit 1 }
' "$list" | sort -u >"$tmp/expected" || exit 1

status=0
if ! diff -u "$tmp/expected" "$tmp/actual" >"$tmp/diff"; then
    echo "exported symbols of $lib differ from $list (- missing, + unexpected):" >&2
    tail -n +3 "$tmp/diff" | grep '^[-+]' >&2
    status=1
fi
for doc in "$@"; do
    sed 's/@@.*//' "$tmp/expected" | while read -r sym; do
        grep -q "$sym" "$doc" || echo "$doc does not mention $sym" >&2
    done >"$tmp/undocumented" 2>&1
    if [ -s "$tmp/undocumented" ]; then
        cat "$tmp/undocumented" >&2
        status=1
    fi
done
[ $status -eq 0 ] && echo "exported symbols: $(tr '\n' ' ' <"$tmp/actual")"
exit $status
