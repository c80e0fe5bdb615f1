#!/bin/sh
# Runs ctor_ctx's race phase (SSL_CTX_set_async_callback on CTXs made before
# the shim initialised, racing SSL_new) with the shim preloaded under
# valgrind's helgrind, and fails if helgrind reports a data race inside
# OpenSSL's ex_data code (CRYPTO_get/set_ex_data, the OPENSSL_sk_* stack
# functions): the shim must not give such a CTX its record with
# SSL_CTX_set_ex_data while SSL_new reads the CTX's ex_data on another
# thread. Other reports (OpenSSL's own SSL_new reading the CTX fields a
# setter writes, atomics helgrind does not model) are not this test's.
#
#   check-helgrind-exdata.sh VALGRIND PROG
# Environment: SSLASYNC_SHIM (as run-test.sh).
set -u
valgrind=${1:?valgrind}
prog=${2:?program}
[ -n "${SSLASYNC_SHIM:-}" ] && [ -f "$SSLASYNC_SHIM" ] || {
    echo "check-helgrind-exdata: shim library not found: '${SSLASYNC_SHIM:-}'" >&2
    exit 1
}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

env CTORLIB_CTXS=16 CTOR_CTX_RACE_ONLY=1 SSLASYNC_EXPECT=shim LD_PRELOAD="$SSLASYNC_SHIM" \
    "$valgrind" --tool=helgrind --log-file="$log" "$prog"
rc=$?
[ $rc -eq 0 ] || { cat "$log" >&2; echo "check-helgrind-exdata: $prog exited $rc" >&2; exit 1; }

# One record per report: the access and the conflicting one, frame by frame.
bad=$(awk '
    /Possible data race/ { if (r != "" && hit) print r; r = $0 "\n"; hit = 0; next }
    /^==[0-9]+== *$/     { next }
    r != "" && /(at|by) 0x[0-9A-F]+: / {
        r = r $0 "\n"
        if ($0 ~ /(at) 0x[0-9A-F]+: (CRYPTO_get_ex_data|CRYPTO_set_ex_data|OPENSSL_sk_[a-z_]+) /)
            hit = 1
        next
    }
    r != "" && /This conflicts|Address 0x|Block was/ { r = r $0 "\n"; next }
    END { if (r != "" && hit) print r }
' "$log")
total=$(grep -c 'Possible data race' "$log")
if [ -n "$bad" ]; then
    printf '%s\n' "$bad" >&2
    echo "check-helgrind-exdata: data races on a CTX's ex_data between SSL_CTX_set_async_callback and SSL_new (above; $total race reports in all)" >&2
    exit 1
fi
echo "helgrind: no race in OpenSSL's ex_data code ($total other race reports ignored)"
