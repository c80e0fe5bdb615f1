#!/bin/bash
# check-preflight.sh WRAPPER CASE PROGRAM [ARGS...]
#
# Runs `WRAPPER --check PROGRAM` and asserts its exit status, the findings
# that explain it and the verdict line for CASE; then runs PROGRAM the way
# the check assumed and asserts that reality agrees with the verdict. The
# suite's programs check SSLASYNC_EXPECT themselves (shim: the shim must
# provide the API; native: libssl must), and an inert shim prints one
# "sslasync: inactive" line. ARGS are passed to PROGRAM in those runs.
#
#   active-preload  --check exits 0, preloaded; the wrapped run uses the shim
#   active-linked   --check exits 0, linked ahead of libssl; the direct run too
#   inert-behind    --check exits 1: libssl loads first; the direct run is
#                   native and the shim says it is inactive
#   inert-dropped   PROGRAM has no DT_NEEDED libsslasync: --check --direct
#                   exits 1, the direct run is native; --check (preloaded)
#                   exits 0 and the wrapped run uses the shim
#   inert-other     PROGRAM uses another OpenSSL: --check exits 1, and the
#                   wrapped run prints "sslasync: inactive" (77 if absent)
set -euo pipefail
wrapper=${1:?wrapper}
case=${2:?case}
prog=${3:?program}
shift 3
unset LD_PRELOAD SSLASYNC_LIB

if [ ! -x "$prog" ]; then
    if [ "$case" = inert-other ]; then
        echo "check-preflight: $prog absent (bash c-tests/matrix/build-openssl.sh 4.0.3 builds it): skipped"
        exit 77
    fi
    echo "check-preflight: $prog not found" >&2
    exit 1
fi

fails=0
fail() { echo "check-preflight: FAIL: $*" >&2; fails=$((fails + 1)); }

# check [--direct] WANT_RC PATTERN...: the check's output must match every
# PATTERN (an ERE) on some line.
check() {
    local opt=() rc want out p
    if [ "$1" = --direct ]; then opt=(--direct); shift; fi
    want=$1
    shift
    set +e
    out=$("$wrapper" --check "${opt[@]}" "$prog" 2>&1)
    rc=$?
    set -e
    echo "\$ with-sslasync --check ${opt[*]:+${opt[*]} }$prog"
    printf '%s\n' "$out" | sed 's/^/  /'
    [ "$rc" -eq "$want" ] || fail "--check ${opt[*]:-}exit status $rc, want $want"
    for p in "$@"; do
        grep -qE -- "$p" <<<"$out" || fail "--check ${opt[*]:-}output lacks /$p/"
    done
}

# truth HOW EXPECT [ARGS...]: runs PROGRAM directly or through the wrapper.
# EXPECT shim/native is passed to the suite's programs (they check it);
# for other programs "active" requires exit 0 and no inactive line,
# "inactive" the shim's inactive line.
truth() {
    local how=$1 expect=$2 err rc
    shift 2
    err=$(mktemp)
    local run=(env SSLASYNC_EXPECT="$expect")
    case $expect in active | inactive) run=(env) ;; esac
    [ "$how" = wrapped ] && run=("$wrapper" "${run[@]}")
    set +e
    "${run[@]}" "$prog" "$@" >/dev/null 2>"$err"
    rc=$?
    set -e
    case $expect in
    shim | active)
        [ $rc -eq 0 ] || { sed 's/^/  /' "$err" >&2; fail "$how run with SSLASYNC_EXPECT=shim exited $rc"; }
        grep -q '^sslasync: inactive' "$err" && fail "$how run: the shim says it is inactive"
        ;;
    native)
        [ $rc -eq 0 ] || { sed 's/^/  /' "$err" >&2; fail "$how run with SSLASYNC_EXPECT=native exited $rc"; }
        ;;
    inactive)
        grep -q '^sslasync: inactive' "$err" ||
            { sed 's/^/  /' "$err" >&2; fail "$how run: no 'sslasync: inactive' line"; }
        ;;
    esac
    rm -f "$err"
    echo "  reality ($how run): as predicted"
}

needed=$(readelf -dW "$prog" | sed -n 's/.*(NEEDED).*\[\(.*\)\].*/\1/p' | tr '\n' ' ')
case $case in
active-preload)
    check 0 '^info: .*checked as .with-sslasync' '^ok: +preloaded' '^verdict: active$'
    if [ $# -gt 0 ]; then truth wrapped active "$@"; else truth wrapped shim; fi
    ;;
active-linked)
    case " $needed" in *" libsslasync.so.0 "*) ;; *) fail "setup: $prog does not link libsslasync ($needed)" ;; esac
    check 0 '^ok: +links libsslasync\.so\.0' '^ok: +libsslasync\.so\.0 loads before libssl' '^verdict: active$'
    truth direct shim
    ;;
inert-behind)
    check 1 '^ok: +links libsslasync\.so\.0' '^FAIL: libssl loads before libsslasync' '^verdict: inert \(1 problem'
    truth direct native
    truth direct inactive
    ;;
inert-dropped)
    case " $needed" in *" libsslasync.so"*) fail "setup: $prog links libsslasync ($needed): --as-needed kept it" ;; esac
    check --direct 1 '^FAIL: no DT_NEEDED entry for libsslasync\.so\.0' '^verdict: inert \(1 problem'
    truth direct native
    check 0 '^ok: +preloaded' '^verdict: active$'
    truth wrapped shim
    ;;
inert-other)
    check 1 '^FAIL: the program uses libssl\.so\.[0-9]+, the shim was built for libssl\.so\.' '^verdict: inert'
    truth wrapped inactive version
    ;;
*)
    echo "check-preflight: unknown case $case" >&2
    exit 2
    ;;
esac
[ $fails -eq 0 ] || exit 1
echo "check-preflight: $case: verdict and reality agree"
