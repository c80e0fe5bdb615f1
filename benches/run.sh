#!/bin/sh
# Runs the sslasync benchmarks: shim (preloaded) vs native OpenSSL, side by
# side in one run, and draws the handshake plot.
#
#   SSLASYNC_SHIM       the shim (default: target/release/libsslasync.so)
#   SSLASYNC_BUILD_DIR  CMake build dir of c-tests/ (default: target/ctest);
#                       configured and built here if it lacks the bench
#   BENCH_OUT           output directory (default: target/bench)
#   BENCH_QUICK=1       fewer cells and rounds: under a minute
#
# A bench built against OpenSSL 1.1.1 (make OPENSSL=1.1.1w bench, which make
# bench runs after the main one) measures only native 1.1.1 in fd mode vs the
# shim's fd adapter (RATIO handshakes_111, LATENCY fdadapter_111); no plot.
#
# Tuning knobs, read by the driver: BENCH_ROUNDS, BENCH_ROUNDS_C1024,
# BENCH_PAIRS, BENCH_CELL_SECONDS, BENCH_MICRO_SECONDS, BENCH_CALLGRIND_N,
# BENCH_MEM_SSLS; by the workers: BENCH_NO_PIN (do not pin the loop and device
# threads to CPUs), BENCH_SCHED=nice|normal (nice -20, or plain, instead of
# SCHED_FIFO).
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
shim=${SSLASYNC_SHIM:-$top/target/release/libsslasync.so}
build=${SSLASYNC_BUILD_DIR:-$top/target/ctest}
out=${BENCH_OUT:-$top/target/bench}
bench=$build/benches/sslasync-bench

if [ ! -f "$shim" ]; then
    echo "run.sh: $shim not found: build the shim first (make)" >&2
    exit 1
fi
if [ ! -x "$bench" ]; then
    echo "run.sh: building $bench"
    cmake -S "$top/c-tests" -B "$build" -DSSLASYNC_LIB_DIR="$(dirname "$shim")" \
          -DSSLASYNC_INCLUDE_DIR="$top/include" >/dev/null
    cmake --build "$build" -j"$(nproc 2>/dev/null || echo 2)" --target sslasync-bench
fi
mkdir -p "$out"

quick=
[ "${BENCH_QUICK:-0}" != 0 ] && quick=--quick

start=$(date +%s)
# Progress goes to stderr as it happens; the tables (stdout) come at the end
# and are kept in bench.log.
status=0
"$bench" run $quick --shim "$shim" --out "$out" >"$out/bench.log" || status=$?
cat "$out/bench.log"
if [ "$status" -ne 0 ]; then
    echo "run.sh: sslasync-bench failed (exit $status)" >&2
    exit "$status"
fi

if [ ! -f "$out/handshakes.gp" ]; then
    : # nothing to plot (the OpenSSL 1.1.1 run)
elif command -v gnuplot >/dev/null 2>&1; then
    # pngcairo is preferred; plain png (libgd) is the fallback.
    if ! gnuplot -e 'set terminal pngcairo' </dev/null >/dev/null 2>&1; then
        sed -i 's/^set terminal pngcairo \(size [0-9,]*\).*/set terminal png \1/' "$out/handshakes.gp"
    fi
    (cd "$out" && gnuplot handshakes.gp) && echo "plot: $out/handshakes.png"
else
    echo "run.sh: gnuplot not found, no plot (data in $out/handshakes.dat)" >&2
fi
echo "run.sh: $(($(date +%s) - start)) s in all"
