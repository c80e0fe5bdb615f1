#!/bin/sh
# Fault injection: runs fault_scenario once per failable call the shim
# makes, with that one call failed (c-tests/fault/libfault.c), and checks
# that every run passes: no crash, no hang, native-equivalent or documented
# behaviour, sslasync_active() true to what happened (fault_scenario.c).
#
#   check-faults.sh LIBFAULT SCENARIO
#
# Environment: SSLASYNC_SHIM (the library under test). The calls are counted
# in an undisturbed run first; each one is then failed in turn, up to
# FAULT_MAX (12) per function.
set -u
fault=${1:?libfault.so}
prog=${2:?fault_scenario}
shim=${SSLASYNC_SHIM:?SSLASYNC_SHIM}
max=${FAULT_MAX:-12}
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

run() { # FN NTH -> exit status; log in $tmp/log
    env LD_PRELOAD="$fault $shim" SSLASYNC_EXPECT= FAULT_FN="$1" FAULT_NTH="$2" \
        FAULT_REPORT="$tmp/report" TLSD_TIMEOUT_MS=10000 "$prog" >"$tmp/log" 2>&1
}

run none 0 || { cat "$tmp/log"; echo "check-faults: the undisturbed run failed" >&2; exit 1; }
grep -q 'fault_scenario: active=1' "$tmp/log" ||
    { cat "$tmp/log"; echo "check-faults: the undisturbed run is not active" >&2; exit 1; }
cp "$tmp/report" "$tmp/counts"
runs=0 inert=0 failed=0
while read -r fn count; do
    [ "$count" -gt 0 ] || continue
    n=1
    while [ "$n" -le "$count" ] && [ "$n" -le "$max" ]; do
        runs=$((runs + 1))
        if ! run "$fn" "$n"; then
            failed=$((failed + 1))
            echo "check-faults: FAIL with call $n of $fn failed (exit $?):" >&2
            tail -n 20 "$tmp/log" >&2
        elif ! grep -q 'fault_scenario: active=' "$tmp/log"; then
            failed=$((failed + 1))
            echo "check-faults: FAIL with call $n of $fn failed: no result line" >&2
        else
            grep -q 'fault_scenario: active=0' "$tmp/log" && inert=$((inert + 1))
            echo "check-faults: $fn #$n: $(grep -o 'active=[0-9].*' "$tmp/log")"
        fi
        n=$((n + 1))
    done
done <"$tmp/counts"
echo "check-faults: $runs runs, each with one of the shim's calls failed: $failed failed," \
     "$inert left the shim reporting itself inactive"
[ "$failed" -eq 0 ] && [ "$runs" -gt 0 ]
