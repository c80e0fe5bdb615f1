#!/bin/sh
# Runs one C test program in one mode (CTest calls this).
#
#   run-test.sh native  PROG   plain libssl (LD_PRELOAD cleared)
#   run-test.sh preload PROG   PROG with the shim in LD_PRELOAD
#   run-test.sh linked  PROG   PROG-linked, which has -lsslasync in DT_NEEDED
#   run-test.sh diff    PROG   native and preloaded runs; their stdout
#                              transcripts must be identical
#
# Environment: SSLASYNC_SHIM (path of libsslasync.so), optional
# SSLASYNC_ASAN_RUNTIME (libasan.so, which must precede the shim in
# LD_PRELOAD). The program gets SSLASYNC_EXPECT=shim|native and checks the
# claim itself, so a preload that silently did not happen fails the test.
set -u

mode=${1:?mode}
prog=${2:?program}

die() {
    echo "run-test.sh: $*" >&2
    exit 1
}

preload_list() {
    [ -n "${SSLASYNC_SHIM:-}" ] && [ -f "$SSLASYNC_SHIM" ] ||
        die "shim library not found: '${SSLASYNC_SHIM:-}'"
    if [ -n "${SSLASYNC_ASAN_RUNTIME:-}" ]; then
        printf '%s:%s' "$SSLASYNC_ASAN_RUNTIME" "$SSLASYNC_SHIM"
    else
        printf '%s' "$SSLASYNC_SHIM"
    fi
}

run_native() {
    env -u LD_PRELOAD SSLASYNC_EXPECT=native "$prog"
}

run_preload() {
    list=$(preload_list) || exit 1
    env LD_PRELOAD="$list" SSLASYNC_EXPECT=shim "$prog"
}

case $mode in
native)
    run_native
    ;;
preload)
    run_preload
    ;;
linked)
    env -u LD_PRELOAD SSLASYNC_EXPECT=shim "$prog"
    ;;
diff)
    tmp=$(mktemp -d) || die "mktemp"
    trap 'rm -rf "$tmp"' EXIT
    run_native >"$tmp/native.out"
    rc=$?
    [ $rc -eq 0 ] || { cat "$tmp/native.out"; die "native run failed (exit $rc)"; }
    run_preload >"$tmp/shim.out"
    rc=$?
    [ $rc -eq 0 ] || { cat "$tmp/shim.out"; die "preloaded run failed (exit $rc)"; }
    if ! diff -u "$tmp/native.out" "$tmp/shim.out"; then
        die "transcripts differ between native OpenSSL and the shim"
    fi
    cat "$tmp/shim.out"
    ;;
*)
    die "unknown mode $mode"
    ;;
esac
