#!/bin/sh
# check-symbols.sh NM LIBRARY EXPECTED-LIST
# The library's defined dynamic symbols must be exactly the expected list:
# anything more (leaked Rust or libc symbols) would interpose on the host
# process, anything less breaks the API or the wiring.
set -u
nm=${1:?nm}
lib=${2:?library}
list=${3:?expected list}

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

"$nm" -D --defined-only "$lib" >"$tmp/nm.out" || { echo "nm failed on $lib" >&2; exit 1; }
# Version-definition entries (type A) are not symbols; strip @VERSION tails.
awk '$2 != "A" { n = $NF; sub(/@.*/, "", n); print n }' "$tmp/nm.out" | sort -u >"$tmp/actual"
grep -v '^[[:space:]]*\(#\|$\)' "$list" | sort -u >"$tmp/expected"

if ! diff -u "$tmp/expected" "$tmp/actual" >"$tmp/diff"; then
    echo "exported symbols of $lib differ from $list (- missing, + unexpected):" >&2
    tail -n +3 "$tmp/diff" | grep '^[-+]' >&2
    exit 1
fi
echo "exported symbols: $(tr '\n' ' ' <"$tmp/actual")"
