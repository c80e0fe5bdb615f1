#!/bin/sh
# check-header.sh CC INCLUDE_DIR [EXTRA_CFLAGS...]
# include/sslasync.h must compile strictly (-std=c99 -Wpedantic -Werror),
# both on its own and after <openssl/ssl.h>, and declare the five functions
# with exactly OpenSSL's prototypes and the ASYNC_STATUS_* values.
set -u
cc=${1:?compiler}
inc=${2:?include dir}
shift 2

hdr=$inc/sslasync.h
[ -f "$hdr" ] || { echo "missing $hdr" >&2; exit 1; }

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

# Assigning to pointers of the exact types fails to compile on any mismatch.
body='
typedef char status_values_ok[(ASYNC_STATUS_UNSUPPORTED == 0 && ASYNC_STATUS_ERR == 1
                               && ASYNC_STATUS_OK == 2 && ASYNC_STATUS_EAGAIN == 3) ? 1 : -1];
static int cb(SSL *s, void *arg) { (void)s; (void)arg; return 1; }
int main(void)
{
    SSL_async_callback_fn f = cb;
    int (*p1)(SSL_CTX *, SSL_async_callback_fn) = SSL_CTX_set_async_callback;
    int (*p2)(SSL_CTX *, void *) = SSL_CTX_set_async_callback_arg;
    int (*p3)(SSL *, SSL_async_callback_fn) = SSL_set_async_callback;
    int (*p4)(SSL *, void *) = SSL_set_async_callback_arg;
    int (*p5)(SSL *, int *) = SSL_get_async_status;
    status_values_ok *unused = 0;
    (void)f; (void)p1; (void)p2; (void)p3; (void)p4; (void)p5; (void)unused;
    return 0;
}
'
printf '#include <sslasync.h>\n%s' "$body" >"$tmp/alone.c"
printf '#include <openssl/ssl.h>\n#include <sslasync.h>\n%s' "$body" >"$tmp/after_ssl.c"

rc=0
for tu in alone after_ssl; do
    if "$cc" -std=c99 -Wpedantic -Wall -Wextra -Werror -I"$inc" "$@" \
        -c "$tmp/$tu.c" -o "$tmp/$tu.o"; then
        echo "sslasync.h ($tu): compiles with -std=c99 -Wpedantic -Wall -Wextra -Werror"
    else
        echo "sslasync.h ($tu): does not compile" >&2
        rc=1
    fi
done
exit $rc
