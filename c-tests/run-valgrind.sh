#!/bin/sh
# Runs one C test program with the shim preloaded under valgrind memcheck
# (CTest label valgrind). Fails on any memcheck error and on any definitely
# lost block; prints memcheck's leak summary either way.
#
#   run-valgrind.sh PROG
#
# Environment: SSLASYNC_SHIM (path of libsslasync.so), VALGRIND (default:
# valgrind on PATH). The program gets SSLASYNC_EXPECT=shim, so a preload
# that silently did not happen fails, and LIFECYCLE_NO_RSS=1: under
# valgrind the resident set is valgrind's, not the program's.
set -u

prog=${1:?program}
vg=${VALGRIND:-valgrind}
here=$(cd "$(dirname "$0")" && pwd)

die() {
    echo "run-valgrind.sh: $*" >&2
    exit 1
}

command -v "$vg" >/dev/null 2>&1 || die "$vg not found (.ci/deps installs valgrind)"
[ -n "${SSLASYNC_SHIM:-}" ] && [ -f "$SSLASYNC_SHIM" ] || die "shim library not found: '${SSLASYNC_SHIM:-}'"

log=$(mktemp) || die "mktemp"
trap 'rm -f "$log"' EXIT
# --errors-for-leak-kinds=definite: a definitely lost block is an error, so
# --error-exitcode reports it; possibly lost and still reachable blocks are
# listed in the summary but do not fail (OpenSSL keeps per-thread state until
# exit, and a job paused at SSL_free stays reachable from its pool).
env LD_PRELOAD="$SSLASYNC_SHIM" SSLASYNC_EXPECT=shim LIFECYCLE_NO_RSS=1 \
    "$vg" --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite \
    --error-exitcode=99 --num-callers=40 --log-file="$log" "$prog"
rc=$?
cat "$log" >&2
grep -E "definitely lost|indirectly lost|possibly lost|still reachable|ERROR SUMMARY" "$log" |
    sed 's/^==[0-9]*== */valgrind: /'
case $rc in
0) ;;
77) exit 77 ;;
99) die "memcheck found errors or definitely lost blocks" ;;
*) die "$prog failed under valgrind (exit $rc)" ;;
esac
