#!/usr/bin/env bash
# The whole C suite on every OpenSSL the shim supports (make matrix):
#
#   c-tests/matrix/run-matrix.sh [1.1.1w|system|3.5.5|4.0.3 ...]   default: all four
#
# Per version: the private OpenSSL (build-openssl.sh, cached outside the
# checkout, built only when missing), the shim built against it
# (target/openssl-VER; the system one is target/release), and the C suite
# configured against that OpenSSL in target/matrix/VER-FIXTURE for each
# simulated-accelerator fixture the version has (engine: 1.1.1 and 3.x,
# provider: 3.x and 4.x), run completely with CTest. Results are counted per
# (version, fixture, mode), printed as a table, and the last line is
# `MATRIX passed=N failed=M`.
#
# Two accelerator styles: "own" (each test runs the simulated accelerator in
# the styles it picks itself) and "fd-only" (c-tests/adapter.cmake: the
# callback-mode tests again with an fd-only engine, TLSD_STYLE=fd; NAME.
# fdadapter.{preload,linked} with the shim's fd adapter on, NAME.fddiff with
# it off against native). Modes: native, preload, linked, diff (from the
# labels), static, other; the fd-only runs are fd:preload, fd:linked, fd:diff
# (from the names).
#
# Failures: a failed, timed-out or skipped test, a test CTest registered but
# never reported, and a cell with no tests at all. Skips count because in the
# matrix every registered test applies (shim-only tests are not registered for
# native runs), so a skip means a test asserted nothing.
#
# Environment: SSLASYNC_CACHE (private OpenSSL builds), SSLASYNC_MATRIX_OUT
# (build dirs, logs and results; default target/matrix), JOBS (build
# parallelism, default nproc), MATRIX_CTEST_JOBS (ctest parallelism, default
# 2 x JOBS: most tests wait on the simulated device, not the CPU), CARGO,
# MATRIX_FUZZ_OPS / MATRIX_STRESS_SSLS / MATRIX_LIFECYCLES (sizes of the long
# tests per cell; defaults 25000, 2500, 25000).
#
# MATRIX_REUSE=1 (what CI sets after make test and make OPENSSL=1.1.1w test):
# a cell whose configuration `make [OPENSSL=VER] test-c` already built and
# ran completely (target/ctest, target/openssl-VER/ctest: same shim, same
# OpenSSL, same fixture, not sanitized, nothing rebuilt or edited since, every
# registered test in its ctest-junit.xml) takes that run's results instead of
# running the suite again; those runs have the full-size long tests. The
# links are still checked with ldd, and the cell's note names the run.
#
# MATRIX_BUILD_ONLY="VER-FIXTURE ..." (CI, in the background while the test
# runs go on): only the private OpenSSLs, the shims and those cells' builds,
# no tests and no report; the matrix run after it then finds them built.
#
# It also writes the table as Markdown to target/matrix/MATRIX.md, and, when
# all four versions ran, to MATRIX.md at the repository root (the copy the
# README links; commit it after a release's run).
#
# Cross checks (mode "cross"): each version's shim preloaded into another
# version's test program. Across OpenSSL majors (1.1.1, 3, 4) the shim must
# stay inert with exactly one "sslasync: inactive" line on stderr (and the
# program must work natively); within a major it must be active and silent.
#
# Every link is checked with ldd in the environment the tests run in: 3.5.5
# shares the sonames of the system 3.0, so a missing rpath would silently run
# a row against the wrong OpenSSL. The programs check it again at run time
# (tlsdrive compares the loaded OpenSSL's version with its headers').
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CTESTS=$(dirname "$HERE")
ROOT=$(dirname "$CTESTS")
OUT=${SSLASYNC_MATRIX_OUT:-$ROOT/target/matrix}
LOGS=$OUT/logs
CACHE=${SSLASYNC_CACHE:-$HOME/.cache/sslasync}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
CTEST_JOBS=${MATRIX_CTEST_JOBS:-$((2 * JOBS))}
CARGO=${CARGO:-cargo}
# Order of the report. A test's mode: fd:MODE for the fd-only variants (by
# name), else the first of the label modes it carries, else "other".
LABEL_MODES="native preload linked diff static"
FD_MODES="fd:preload fd:linked fd:diff"
MODES="$LABEL_MODES $FD_MODES"
ALL_VERSIONS="1.1.1w system 3.5.5 4.0.3"
REUSE=${MATRIX_REUSE:-0}
BUILD_ONLY=${MATRIX_BUILD_ONLY:-}
RESULTS=$OUT/results.tsv

# Nothing from the caller's environment may steer which libraries load or
# which OpenSSL cargo builds against. (pipefail: "ldd | grep -q" would fail
# whenever grep quits early, so ldd output is captured first.)
unset LD_LIBRARY_PATH LD_PRELOAD OPENSSL_DIR OPENSSL_LIB_DIR OPENSSL_INCLUDE_DIR \
      OPENSSL_STATIC OPENSSL_CONF OPENSSL_MODULES OPENSSL_ENGINES

if [ -n "$BUILD_ONLY" ]; then
    # The versions of the listed cells, in their order.
    set -- $(for c in $BUILD_ONLY; do echo "${c%-*}"; done | awk '!seen[$0]++')
    REUSE=0
fi
[ $# -gt 0 ] || set -- $ALL_VERSIONS
mkdir -p "$LOGS"
: >"$RESULTS"
# VER-FIXTURE and the make test build dir whose run a cell took (MATRIX_REUSE).
REUSED=$OUT/reused.tsv
: >"$REUSED"
# VER, OpenSSL version text and where it came from, for MATRIX.md.
VERSIONS=$OUT/versions.tsv
: >"$VERSIONS"
t_all=$(date +%s)

say() { echo "matrix: $*"; }
warn() { echo "matrix: $*" >&2; }
elapsed() { echo "$(( $(date +%s) - $1 )) s"; }

# record VER FIXTURE MODE PASSED FAILED SKIPPED [NOTE]
record() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "$6" "${7:-}" >>"$RESULTS"; }

# Marks every cell of VER (for the given fixtures) failed, e.g. after a build error.
fail_cells() {
    local ver=$1 note=$2 fx m
    shift 2
    for fx in "$@"; do
        for m in $MODES; do record "$ver" "$fx" "$m" 0 1 0 "$note"; done
    done
}

# check_links WHAT FILE WANT [PRELOAD]: the libssl and libcrypto the loader
# picks for FILE (with PRELOAD preloaded) must come from WANT (a lib dir, or
# "system": anything but the private builds). Both must be present.
check_links() {
    local what=$1 file=$2 want=$3 preload=${4:-} libs bad
    if [ -n "$preload" ]; then
        libs=$(LD_PRELOAD=$preload ldd "$file" 2>&1)
    else
        libs=$(ldd "$file" 2>&1)
    fi
    libs=$(printf '%s\n' "$libs" | grep -E '(^|[[:space:]/])lib(ssl|crypto|sslasync)\.so')
    if ! grep -q 'libssl\.so' <<<"$libs" || ! grep -q 'libcrypto\.so' <<<"$libs"; then
        warn "$what: $file does not load both libssl and libcrypto:"
        printf '%s\n' "$libs" | sed 's/^/    /' >&2
        return 1
    fi
    if [ "$want" = system ]; then
        bad=$(printf '%s\n' "$libs" | grep -E 'lib(ssl|crypto)\.so' |
              grep -E "not found|=> $CACHE/" || true)
    else
        bad=$(printf '%s\n' "$libs" | grep -E 'lib(ssl|crypto)\.so' |
              grep -v -- "=> $want/" || true)
    fi
    if [ -n "$bad" ]; then
        warn "$what: $file loads the wrong OpenSSL (want $want):"
        printf '%s\n' "$bad" | sed 's/^/    /' >&2
        return 1
    fi
}

# The major version in an OpenSSL include dir's opensslv.h (1.1.1 has no
# OPENSSL_VERSION_MAJOR: the first digit of OPENSSL_VERSION_NUMBER, 0x1010117fL).
header_major() {
    local h=$1/openssl/opensslv.h m
    m=$(sed -n 's/^#[[:space:]]*define[[:space:]]\{1,\}OPENSSL_VERSION_MAJOR[[:space:]]\{1,\}\([0-9]\{1,\}\).*/\1/p' "$h" | head -n 1)
    [ -n "$m" ] ||
        m=$(sed -n 's/^#[[:space:]]*define[[:space:]]\{1,\}OPENSSL_VERSION_NUMBER[[:space:]]\{1,\}0x\([0-9a-fA-F]\).*/\1/p' "$h" | head -n 1)
    echo "$m"
}

# cache_value DIR NAME: NAME's value in DIR/CMakeCache.txt (empty if unset).
cache_value() { sed -n "s/^$2:[A-Z]*=//p" "$1/CMakeCache.txt" 2>/dev/null | head -n 1; }

# reusable VER FIXTURE PREFIX SHIMDIR MAJOR: prints the make test build dir
# whose complete run stands for this cell, or fails (MATRIX_REUSE=1 only).
# Conservative: any doubt runs the cell.
reusable() {
    local ver=$1 fx=$2 prefix=$3 shimdir=$4 major=$5 dir junit cfx names ran newer
    [ "$REUSE" = 1 ] || return 1
    if [ "$ver" = system ]; then dir=$ROOT/target/ctest; else dir=$ROOT/target/openssl-$ver/ctest; fi
    junit=$dir/ctest-junit.xml
    [ -f "$dir/CMakeCache.txt" ] && [ -f "$junit" ] || return 1
    [ "$(cache_value "$dir" SSLASYNC_LIB_DIR)" = "$shimdir" ] || return 1
    [ "$(cache_value "$dir" OPENSSL_ROOT_DIR)" = "$prefix" ] || return 1
    case "$(cache_value "$dir" SSLASYNC_SANITIZE)" in OFF | "") ;; *) return 1 ;; esac
    case "$(cache_value "$dir" SSLASYNC_NATIVE_ONLY)" in OFF | "") ;; *) return 1 ;; esac
    case "$(cache_value "$dir" SSLASYNC_SOAK)" in OFF | "") ;; *) return 1 ;; esac
    cfx=engine
    case "$(cache_value "$dir" SIMACCEL_USE_PROVIDER)" in ON) cfx=provider ;; esac
    [ "$major" -ge 4 ] && cfx=provider
    [ "$cfx" = "$fx" ] || return 1
    # Nothing the run depends on may be newer than its result: the shim, any
    # program or library of the build, the test sources, the registered tests.
    newer=$(find -L "$shimdir/libsslasync.so" "$ROOT/include" "$CTESTS" \
                 "$ROOT/examples" "$ROOT/benches" -newer "$junit" -type f -print -quit 2>/dev/null)
    [ -z "$newer" ] || { warn "[$ver-$fx] not reusing $dir: $newer is newer than its run"; return 1; }
    newer=$(find "$dir" -path "$dir/Testing" -prune -o -type f \
                 \( -perm -u+x -o -name CTestTestfile.cmake -o -name CMakeCache.txt \) \
                 -newer "$junit" -print -quit)
    [ -z "$newer" ] || { warn "[$ver-$fx] not reusing $dir: $newer is newer than its run"; return 1; }
    # Every registered test ran.
    names=$(ctest --test-dir "$dir" -N 2>/dev/null | sed -n 's/^ *Test *#[0-9]*: *\([^ ]*\).*/\1/p' | sort)
    ran=$(sed -n 's/.*<testcase name="\([^"]*\)".*/\1/p' "$junit" | sort -u)
    [ -n "$names" ] && [ "$names" = "$ran" ] ||
        { warn "[$ver-$fx] not reusing $dir: its last run was not of every registered test"; return 1; }
    echo "$dir"
}

# junit_to_log JUNIT: ctest's console result lines from a JUnit report, for
# the same parser ("Test #0: NAME ...   Passed", "***Failed", "***Skipped").
junit_to_log() {
    sed -n 's/.*<testcase name="\([^"]*\)".* status="\([a-z]*\)".*/\1 \2/p' "$1" |
        while read -r name st; do
            case $st in
            run) echo "0/0 Test  #0: $name ....   Passed" ;;
            notrun) echo "0/0 Test  #0: $name ....***Skipped" ;;
            *) echo "0/0 Test  #0: $name ....***Failed ($st)" ;;
            esac
        done
}

# run_cell VER FIXTURE PREFIX SHIMDIR MAJOR: configure, build, verify and
# test one cell (or verify and take make test's run of it: MATRIX_REUSE);
# records one result line per mode. Sets CELL_DIR to the cell's build dir.
run_cell() {
    local ver=$1 fx=$2 prefix=$3 shimdir=$4 major=$5
    local bdir=$OUT/$ver-$fx cell=$ver-$fx want provider=OFF wrapper="" t
    local args=() f m bad=0 from="" note=""
    [ "$fx" = provider ] && provider=ON
    if [ -n "$prefix" ]; then
        want=$prefix/lib
        args+=(-DOPENSSL_ROOT_DIR="$prefix" -DOPENSSL_PROGRAM="$prefix/bin/openssl")
    else
        want=system
        # The wrapper in target/release points at the system shim; private
        # rows preload their own shim directly.
        wrapper=$ROOT/target/release/with-sslasync
        [ -x "$wrapper" ] || wrapper=""
    fi

    if from=$(reusable "$ver" "$fx" "$prefix" "$shimdir" "$major"); then
        bdir=$from
        note="ran in make test (${from#"$ROOT"/})"
        say "[$cell] taking the complete run of $bdir (MATRIX_REUSE=1)"
        printf '%s\t%s\n' "$cell" "${from#"$ROOT"/}" >>"$REUSED"
    fi
    CELL_DIR=$bdir

    if [ -z "$from" ]; then
    say "[$cell] configure and build ($bdir)"
    t=$(date +%s)
    if ! cmake -S "$CTESTS" -B "$bdir" "${args[@]}" \
            -DSSLASYNC_LIB_DIR="$shimdir" -DSSLASYNC_INCLUDE_DIR="$ROOT/include" \
            -DSSLASYNC_WRAPPER="$wrapper" -DSIMACCEL_USE_PROVIDER=$provider \
            -DSSLASYNC_SANITIZE=OFF -DSSLASYNC_NATIVE_ONLY=OFF \
            >"$LOGS/$cell.configure.log" 2>&1; then
        tail -n 30 "$LOGS/$cell.configure.log" >&2
        fail_cells "$ver" "configure failed" "$fx"
        return
    fi
    if ! cmake --build "$bdir" -j"$JOBS" >"$LOGS/$cell.build.log" 2>&1; then
        grep -E 'error|Error' "$LOGS/$cell.build.log" | head -n 30 >&2
        fail_cells "$ver" "build failed" "$fx"
        return
    fi
    say "[$cell] built in $(elapsed "$t")"
    fi
    [ -z "$BUILD_ONLY" ] || return 0

    # Every program of the suite, as the loader resolves it for each mode.
    # (Loadable modules, e.g. the dynamic ENGINE, which needs only libcrypto,
    # are checked through the programs that load them.)
    while IFS= read -r f; do
        case $f in *.so | *.so.*) continue ;; esac
        if grep -qE 'lib(ssl|crypto)\.so' <<<"$(ldd "$f" 2>/dev/null)"; then
            check_links "$cell" "$f" "$want" || bad=1
        fi
    done < <(find "$bdir" -path "$bdir/CMakeFiles" -prune -o -type f -perm -u+x -print)
    if [ -x "$bdir/handshake" ]; then
        check_links "$cell preload" "$bdir/handshake" "$want" "$shimdir/libsslasync.so" || bad=1
        grep -qE "^[[:space:]]*$shimdir/libsslasync\.so " \
            <<<"$(LD_PRELOAD=$shimdir/libsslasync.so ldd "$bdir/handshake")" ||
            { warn "$cell: preloaded shim is not $shimdir/libsslasync.so"; bad=1; }
    fi
    if [ -x "$bdir/handshake-linked" ]; then
        grep -q "libsslasync.so.0 => $shimdir/" <<<"$(ldd "$bdir/handshake-linked")" ||
            { warn "$cell: handshake-linked does not load $shimdir/libsslasync.so.0"; bad=1; }
    fi
    if [ $bad -ne 0 ]; then
        fail_cells "$ver" "wrong libraries" "$fx"
        return
    fi

    # test name -> mode: the fd-only variants by name (they also carry the
    # labels preload, linked, diff), then the first label mode a test
    # carries, else other; the first line for a name counts. The map is kept
    # in the logs (a reused build dir is not the matrix's to write in).
    local map=$LOGS/$cell.modes.txt
    ctest --test-dir "$bdir" -N 2>/dev/null |
        sed -n 's/^ *Test *#[0-9]*: *\([^ ]*\).*/\1/p' |
        sed -n -e 's/^\(.*\.fdadapter\.\(preload\|linked\)\)$/\1 fd:\2/p' \
               -e 's/^\(.*\.fddiff\)$/\1 fd:diff/p' >"$map"
    for m in $LABEL_MODES; do
        ctest --test-dir "$bdir" -N -L "^$m\$" 2>/dev/null |
            sed -n 's/^ *Test *#[0-9]*: *\([^ ]*\).*/\1/p' |
            while IFS= read -r f; do printf '%s %s\n' "$f" "$m"; done >>"$map"
    done
    ctest --test-dir "$bdir" -N 2>/dev/null |
        sed -n 's/^ *Test *#[0-9]*: *\([^ ]*\).*/\1 other/p' >>"$map"

    if [ -n "$from" ]; then
        junit_to_log "$from/ctest-junit.xml" >"$LOGS/$cell.ctest.log"
    else
    say "[$cell] ctest -j$CTEST_JOBS ($(ctest --test-dir "$bdir" -N | sed -n 's/^Total Tests: //p') tests)"
    t=$(date +%s)
    # The long randomized, stress and lifecycle runs go at full size in make
    # test; here a cell gets a shorter run of each, which keeps a cold CI run
    # (OpenSSL builds included) well under 30 min.
    FUZZ_OPS=${MATRIX_FUZZ_OPS:-25000} STRESS_SSLS=${MATRIX_STRESS_SSLS:-2500} \
        LIFECYCLES=${MATRIX_LIFECYCLES:-25000} \
        ctest --test-dir "$bdir" -j"$CTEST_JOBS" --output-on-failure >"$LOGS/$cell.ctest.log" 2>&1
    say "[$cell] tests ran in $(elapsed "$t")"
    fi

    # Result lines: "  3/76 Test #12: name .......   Passed    0.21 sec",
    # "***Failed", "***Timeout", "***Exception: SegFault", "***Skipped", "Not Run".
    # Modes a cell may lack: other; on 1.1.1 also diff (no native API to
    # compare with) and the fd-only variants (every pause there is fd-only
    # with the adapter, so the own-style runs already are).
    local optional=other
    [ "$major" -lt 3 ] && optional="other diff $FD_MODES"
    awk -v ver="$ver" -v fx="$fx" -v modes="$MODES other" -v cellnote="$note" -v optional=" $optional " '
        FNR == NR {                 # the name -> mode map
            if (!($1 in mode)) mode[$1] = $2
            next
        }
        match($0, /Test +#[0-9]+: [^ ]+ /) {
            s = substr($0, RSTART, RLENGTH); sub(/.*: /, "", s); sub(/ $/, "", s)
            if (!(s in mode) || (s in seen)) next
            seen[s] = 1
            rest = substr($0, RSTART + RLENGTH)
            if (rest ~ /^\.* *Passed/) res[s] = "pass"
            else if (rest ~ /Skipped/) res[s] = "skip"
            else res[s] = "fail"
        }
        END {
            n = split(modes, ms, " ")
            for (t in mode) {
                m = mode[t]
                r = (t in res) ? res[t] : "fail"
                cnt[m, r]++
                if (r != "pass") bad[m] = bad[m] " " t (t in res ? "" : "(no result)")
            }
            for (i = 1; i <= n; i++) {
                m = ms[i]
                if (index(optional, " " m " ") && cnt[m, "pass"] + cnt[m, "fail"] + cnt[m, "skip"] == 0)
                    continue
                note = substr(bad[m], 2)
                if (cellnote != "") note = cellnote (note == "" ? "" : "; " note)
                printf "%s\t%s\t%s\t%d\t%d\t%d\t%s\n", ver, fx, m,
                       cnt[m, "pass"], cnt[m, "fail"], cnt[m, "skip"], note
            }
        }' "$map" "$LOGS/$cell.ctest.log" >>"$RESULTS"

    if grep -qE 'Test +#[0-9]+: [^ ]+ \.* *(\*\*\*|Not Run)' "$LOGS/$cell.ctest.log"; then
        warn "[$cell] failures (full log: $LOGS/$cell.ctest.log):"
        # The failing tests' own output, which --output-on-failure put after
        # their result lines.
        awk '/Test +#[0-9]+: / { show = ($0 !~ /Passed/) }
             /tests passed, / { show = 0 }
             show' "$LOGS/$cell.ctest.log" | head -n 200 >&2
    fi
}

# The simulated-accelerator fixtures an OpenSSL major has: 1.1.1 has no
# providers, 4.0 removed the ENGINE API.
fixtures_for() {
    if [ "$1" -lt 3 ]; then echo engine
    elif [ "$1" -lt 4 ]; then echo "engine provider"
    else echo provider
    fi
}

declare -A CROSS_PROG CROSS_SHIM CROSS_MAJOR
for ver in "$@"; do
    t_ver=$(date +%s)
    say "== OpenSSL $ver"
    prefix="" major=""
    # Until the headers say otherwise (a failed build never gets that far).
    case "$ver" in
    1.*) fixtures=$(fixtures_for 1) ;;
    [4-9].*) fixtures=$(fixtures_for 4) ;;
    *) fixtures=$(fixtures_for 3) ;;
    esac
    case "$ver" in
    system)
        shimdir=$ROOT/target/release
        if [ ! -f "$shimdir/libsslasync.so" ]; then
            say "[$ver] building the shim (target/release)"
            (cd "$ROOT" && "$CARGO" build --release) >"$LOGS/shim-$ver.log" 2>&1 ||
                { tail -n 30 "$LOGS/shim-$ver.log" >&2; fail_cells "$ver" "shim build failed" $fixtures; continue; }
        fi
        major=$(header_major /usr/include)
        ;;
    *)
        say "[$ver] private OpenSSL (build-openssl.sh; cold builds take minutes)"
        t=$(date +%s)
        if ! prefix=$("$HERE/build-openssl.sh" "$ver" 2>"$LOGS/openssl-$ver.log" | tail -n 1) ||
           [ ! -d "$prefix/lib" ]; then
            tail -n 30 "$LOGS/openssl-$ver.log" >&2
            fail_cells "$ver" "OpenSSL build failed" $fixtures
            continue
        fi
        say "[$ver] $prefix ($(elapsed "$t"))"
        major=$(header_major "$prefix/include")
        shimdir=$ROOT/target/openssl-$ver/release
        say "[$ver] building the shim against it (target/openssl-$ver)"
        t=$(date +%s)
        if ! (cd "$ROOT" && OPENSSL_DIR=$prefix CARGO_TARGET_DIR=$ROOT/target/openssl-$ver \
                "$CARGO" build --release) >"$LOGS/shim-$ver.log" 2>&1; then
            tail -n 30 "$LOGS/shim-$ver.log" >&2
            fail_cells "$ver" "shim build failed" $fixtures
            continue
        fi
        say "[$ver] shim built ($(elapsed "$t"))"
        ;;
    esac
    if [ -z "$major" ]; then
        warn "[$ver] cannot read OPENSSL_VERSION_MAJOR"
        fail_cells "$ver" "no opensslv.h" $fixtures
        continue
    fi
    fixtures=$(fixtures_for "$major")
    printf '%s\t%s\t%s\n' "$ver" \
        "$(sed -n 's/^#[[:space:]]*define[[:space:]]*OPENSSL_VERSION_TEXT[[:space:]]*"\(.*\)".*/\1/p' \
            "${prefix:-/usr}/include/openssl/opensslv.h" | head -n 1)" \
        "${prefix:-system (/usr)}" >>"$VERSIONS"

    want=system
    [ -n "$prefix" ] && want=$prefix/lib
    if ! check_links "$ver shim" "$shimdir/libsslasync.so" "$want"; then
        fail_cells "$ver" "shim links the wrong OpenSSL" $fixtures
        continue
    fi
    for fx in $fixtures; do
        if [ -n "$BUILD_ONLY" ]; then
            case " $BUILD_ONLY " in *" $ver-$fx "*) ;; *) continue ;; esac
        fi
        CELL_DIR=$OUT/$ver-$fx
        run_cell "$ver" "$fx" "$prefix" "$shimdir" "$major"
        if [ -z "${CROSS_PROG[$ver]:-}" ] && [ -x "$CELL_DIR/late_register" ] &&
           [ -x "$CELL_DIR/api_returns" ] && [ -x "$CELL_DIR/handshake" ]; then
            CROSS_PROG[$ver]=$CELL_DIR
        fi
    done
    CROSS_SHIM[$ver]=$shimdir/libsslasync.so
    CROSS_MAJOR[$ver]=$major
    say "== OpenSSL $ver done in $(elapsed "$t_ver")"
done
if [ -n "$BUILD_ONLY" ]; then
    say "built $BUILD_ONLY in $(elapsed "$t_all") (MATRIX_BUILD_ONLY: no tests run)"
    exit 0
fi

# ------------------------------------------------------------ cross checks
# cross SHIMVER PROGVER: SHIMVER's shim preloaded into PROGVER's programs.
cross() {
    local a=$1 b=$2 shim=${CROSS_SHIM[$1]} dir=${CROSS_PROG[$2]} out rc lines prog
    local log=$LOGS/cross-$1-in-$2.log
    if [ "${CROSS_MAJOR[$a]}" != "${CROSS_MAJOR[$b]}" ]; then
        # The program must see native OpenSSL (SSLASYNC_EXPECT=native: the
        # API resolves to libssl, or to a shim that says it is inactive) and
        # pass as it does natively: api_returns, which passes natively and
        # under the shim alike, so it shows that the inert shim forwards
        # faithfully; on 1.1.1, which has no callback API of its own,
        # handshake (one of the tests that run natively there).
        prog=api_returns
        [ "${CROSS_MAJOR[$b]}" -lt 3 ] && prog=handshake
        out=$(LD_PRELOAD=$shim SSLASYNC_EXPECT=native "$dir/$prog" 2>&1 >"$log")
        rc=$?
        lines=$(grep -c . <<<"$out")
        if [ $rc -eq 0 ] && [ "$lines" -eq 1 ] && grep -q '^sslasync: inactive' <<<"$out"; then
            record "$a" "in-$b" cross 1 0 0 "inert: major ${CROSS_MAJOR[$a]} in a ${CROSS_MAJOR[$b]} process ($prog)"
            return
        fi
        warn "cross: $a shim in a $b program ($prog): want exit 0 and one 'sslasync: inactive' line, got exit $rc:"
    else
        # late_register asserts the shim's behaviour (native's differs).
        out=$(LD_PRELOAD=$shim SSLASYNC_EXPECT=shim "$dir/late_register" 2>&1 >"$log")
        rc=$?
        if [ $rc -eq 0 ] && ! grep -q '^sslasync:' <<<"$out"; then
            record "$a" "in-$b" cross 1 0 0 "active: same major ${CROSS_MAJOR[$a]}"
            return
        fi
        warn "cross: $a shim in a $b program: want an active, silent shim, got exit $rc:"
    fi
    printf '%s\n' "$out" | sed 's/^/    /' >&2
    record "$a" "in-$b" cross 0 1 0 "see $log"
}
for a in "$@"; do
    [ -n "${CROSS_SHIM[$a]:-}" ] || continue
    for b in "$@"; do
        [ "$a" != "$b" ] && [ -n "${CROSS_PROG[$b]:-}" ] && cross "$a" "$b"
    done
done

# ---------------------------------------------------------------- MATRIX.md
# The same counts as the report below (a skip is a failure, a cell without
# tests fails), as Markdown: a version x fixture grid with one column per
# mode, then every cell with its notes.
write_matrix_md() {
    local md=$1 commit dirty=""
    commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no -- src Cargo.toml c-tests 2>/dev/null)" ] &&
        dirty=", with local changes"
    {
        echo "# sslasync compatibility matrix"
        echo
        echo "Generated by \`make matrix\` (\`c-tests/matrix/run-matrix.sh\`) on" \
             "$(date -u '+%Y-%m-%d %H:%M UTC'), sslasync" \
             "$(sed -n '/^\[package\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' "$ROOT/Cargo.toml")" \
             "(commit $commit$dirty), $(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME"), $(uname -m)."
        echo "Each cell runs the whole C suite (\`c-tests/\`) built against that OpenSSL,"
        echo "with the simulated accelerator as an ENGINE (1.1.1, 3.x) or a provider (3.x, 4.x)."
        echo
        echo "## OpenSSL versions tested"
        echo
        echo "| row | OpenSSL | from |"
        echo "|---|---|---|"
        awk -F'\t' '{ printf "| %s | %s | %s |\n", $1, ($2 == "" ? "?" : $2), $3 }' "$VERSIONS"
        echo
        awk -F'\t' -v cols="native preload linked diff static other" '
            BEGIN { n = split(cols, ms, " ") }
            FILENAME == ARGV[1] { reused[$1] = $2; next }   # reused.tsv: VER-FIXTURE dir
            {
                p = $4; f = $5 + $6
                if (p + f == 0) f = 1
                P += p; F += f
                if ($3 == "cross") { cross[++nc] = $0; next }
                st = style($3); col = $3; sub(/^fd:/, "", col)
                key = $1 " | " $2 (($1 "-" $2) in reused ? " \\*" : "") " | " st
                if (!(key in seen)) { seen[key] = 1; rows[++nr] = key }
                cp[key, col] += p; cf[key, col] += f; has[key, col] = 1
                if (index(" " cols " ", " " col " ") == 0 && !(col in extra)) {
                    extra[col] = 1; ms[++n] = col
                }
                detail[++nd] = $0
            }
            function cell(k, m) {
                if (!((k, m) in has)) return "-"
                return cf[k, m] ? sprintf("**%d/%d failed**", cf[k, m], cp[k, m] + cf[k, m]) \
                                : sprintf("%d passed", cp[k, m])
            }
            function style(m) { return m ~ /^fd:/ ? "fd-only" : "own" }
            END {
                print "## Results: OpenSSL version x fixture x accelerator style x mode"
                print ""
                printf "| OpenSSL | fixture | style |"; for (i = 1; i <= n; i++) printf " %s |", ms[i]; print ""
                printf "|---|---|---|"; for (i = 1; i <= n; i++) printf "---|"; print ""
                for (r = 1; r <= nr; r++) {
                    printf "| %s |", rows[r]
                    for (i = 1; i <= n; i++) printf " %s |", cell(rows[r], ms[i])
                    print ""
                }
                print ""
                print "Accelerator styles: **own**: each test runs the simulated accelerator in"
                print "the styles it picks itself (callback, inline, fd, EAGAIN; on 1.1.1, whose"
                print "wait ctx has fds only, each of them signals an fd). **fd-only**: the"
                print "callback-mode tests again with the accelerator as an fd-only engine"
                print "(`TLSD_STYLE=fd`, `c-tests/adapter.cmake`): preload and linked with the"
                print "shim'"'"'s fd adapter on (`SSLASYNC_FD_CALLBACKS=1`; always on for 1.1.1),"
                print "every callback coming from the adapter; diff with the adapter off, the"
                print "shim'"'"'s transcript identical to native'"'"'s. On 1.1.1 every pause is"
                print "fd-only with the adapter, so its own-style runs are that style, and it"
                print "has no diff runs (no native API to compare with): \"-\" there."
                print ""
                print "Modes: native (plain libssl), preload (`LD_PRELOAD`), linked"
                print "(`-lsslasync` ahead of `-lssl`), diff (native and preloaded transcripts"
                print "identical), static (header and exported-symbol checks), other (tests"
                print "without one of those labels, e.g. the pre-flight checks)."
                if (length(reused)) {
                    print ""
                    print "\\* the cell is the complete run of `make test` (`target/ctest`) or"
                    print "`make OPENSSL=VER test` (`target/openssl-VER/ctest`) earlier in the same"
                    print "CI run, with the same shim, OpenSSL and fixture, taken instead of a second"
                    print "run (`MATRIX_REUSE=1`): its long tests ran at full size, and on the system"
                    print "OpenSSL it has the two-OpenSSL test."
                }
                if (nc) {
                    print ""
                    print "## Cross checks: one version'"'"'s shim preloaded into another'"'"'s programs"
                    print ""
                    print "| shim built for | program of | result | note |"
                    print "|---|---|---|---|"
                    for (i = 1; i <= nc; i++) {
                        split(cross[i], c, "\t"); sub(/^in-/, "", c[2])
                        printf "| %s | %s | %s | %s |\n", c[1], c[2], \
                            (c[5] + c[6] == 0 && c[4] > 0) ? "passed" : "**failed**", c[7]
                    }
                }
                print ""
                print "## Every cell"
                print ""
                print "| OpenSSL | fixture | style | mode | passed | failed | skipped | notes |"
                print "|---|---|---|---|---:|---:|---:|---|"
                for (i = 1; i <= nd; i++) {
                    split(detail[i], c, "\t")
                    note = c[7]; gsub(/\|/, "\\|", note)
                    m = c[3]; sub(/^fd:/, "", m)
                    printf "| %s | %s | %s | %s | %d | %d | %d | %s |\n", c[1], c[2], style(c[3]), m,
                           c[4], c[5], c[6], note
                }
                print ""
                printf "**MATRIX passed=%d failed=%d**\n", P, F
            }' "$REUSED" "$RESULTS"
    } >"$md"
}
write_matrix_md "$OUT/MATRIX.md"
if [ "$*" = "$ALL_VERSIONS" ]; then
    cp "$OUT/MATRIX.md" "$ROOT/MATRIX.md"
    say "wrote MATRIX.md"
else
    say "wrote $OUT/MATRIX.md (MATRIX.md at the root only for a run of all versions)"
fi

# ------------------------------------------------------------------ report
echo
echo "MATRIX results (OpenSSL version x mode x fixture; logs in $LOGS)"
awk -F'\t' '
    BEGIN { printf "%-8s %-10s %-10s %7s %7s %8s  %s\n", "openssl", "fixture", "mode",
                   "passed", "failed", "skipped", "notes" }
    {
        p = $4; f = $5; s = $6; note = $7
        if (p + f + s == 0) { f = 1; note = "no tests" (note == "" ? "" : ": " note) }
        f += s
        P += p; F += f
        printf "%-8s %-10s %-10s %7d %7d %8d  %s\n", $1, $2, $3, p, f - s, s, note
    }
    END {
        printf "time: '"$(elapsed "$t_all")"'\n"
        printf "MATRIX passed=%d failed=%d\n", P, F
        exit (F > 0 || NR == 0)
    }' "$RESULTS"
