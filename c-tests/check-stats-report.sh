#!/bin/sh
# SSLASYNC_STATS=1 report only where the shim was used, each line naming its
# process (see stats_report.c). Runs, with the shim preloaded:
#
#   sh -c '/bin/true; PROG; ...; exit'
#
# sh and true load the shim (and with it libssl) but never use it: they must
# print no report. PROG does one paused handshake with a callback and prints
# "pid <n>"; its report lines must all start "sslasync[<n> <name>] stats:",
# <name> being the program's short name, and give its exact counts.
#
#   check-stats-report.sh PROG
# Environment: SSLASYNC_SHIM, optional SSLASYNC_ASAN_RUNTIME (as run-test.sh).
set -u
prog=${1:?program}
name=$(basename "$prog")

die() {
    echo "check-stats-report: $*" >&2
    exit 1
}

[ -n "${SSLASYNC_SHIM:-}" ] && [ -f "$SSLASYNC_SHIM" ] || die "shim library not found: '${SSLASYNC_SHIM:-}'"
preload=$SSLASYNC_SHIM
[ -n "${SSLASYNC_ASAN_RUNTIME:-}" ] && preload=$SSLASYNC_ASAN_RUNTIME:$SSLASYNC_SHIM
tmp=$(mktemp -d) || die mktemp
trap 'rm -rf "$tmp"' EXIT

# "exit" after PROG keeps sh from exec'ing it, so sh itself exits through
# exit() (and its atexit handlers) after PROG, as a wrapper script would.
# The leak checker would only report the shell's own allocations.
env SSLASYNC_STATS=1 SSLASYNC_EXPECT=shim LD_PRELOAD="$preload" \
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
    /bin/sh -c '/bin/true; "$1"; rc=$?; /bin/true; exit $rc' sh "$prog" \
    >"$tmp/out" 2>"$tmp/err"
rc=$?
cat "$tmp/out"
echo "--- stderr:"
cat "$tmp/err"
echo "---"
[ $rc -eq 0 ] || die "the program (or sh) exited $rc"
pid=$(sed -n 's/^pid \([0-9][0-9]*\)$/\1/p' "$tmp/out")
[ -n "$pid" ] || die "the program printed no pid"

want="sslasync[$pid $name] stats:"
# Every line that looks like a report must be this program's.
bad=$(grep 'stats' "$tmp/err" | grep 'sslasync' | grep -vF "$want")
[ -z "$bad" ] || die "report lines from another process or without the '$want' prefix:
$bad"
awk -v w="$want" 'index($0, w) > 1 { bad = 1 } END { exit !bad }' "$tmp/err" &&
    die "a report line does not start with '$want'"
grep -qF "$want callbacks delivered=1 dropped=0 pauses=1 status ok=1 eagain=0 err=0 late_registrations=0" \
    "$tmp/err" || die "no '$want callbacks delivered=1 dropped=0 pauses=1 status ok=1 ...' line"
echo "stats report: only from pid $pid ($name), none from sh or true"
