/*
 * NULL SSL_CTX*, SSL* or status pointer (deliberate difference, shim only;
 * native OpenSSL dereferences them): each call returns 0, leaves *status
 * alone and puts ERR_R_PASSED_NULL_PARAMETER on the OpenSSL error queue.
 */
#include "tlsdrive.h"

#include <openssl/err.h>

#define SENTINEL 0x5eed

static void expect_null_error(int ret, const char *call)
{
    unsigned long e = ERR_peek_error();

    TLSD_CHECK(ret == 0, "%s returned %d", call, ret);
    TLSD_CHECK(e != 0, "%s: empty error queue", call);
    TLSD_CHECK(ERR_GET_REASON(e) == ERR_GET_REASON(ERR_R_PASSED_NULL_PARAMETER),
               "%s: reason %d, want ERR_R_PASSED_NULL_PARAMETER", call, ERR_GET_REASON(e));
    TLSD_CHECK(ERR_GET_LIB(e) == ERR_LIB_SSL, "%s: library %d, want ERR_LIB_SSL", call,
               ERR_GET_LIB(e));
    ERR_clear_error();
    tlsd_say("%s = 0, error: lib SSL, reason PASSED_NULL_PARAMETER", call);
}

int main(void)
{
    SSL_CTX *sctx;
    tlsd_conn c;
    int st = SENTINEL, dummy = 0;

    tlsd_begin("null_params", TLSD_SHIM_ONLY);
    sctx = tlsd_server_ctx("ec", 0);

    /* The comparison itself works: a genuine error of that kind matches. */
    ERR_clear_error();
#if TLSD_OPENSSL_111
    ERR_put_error(ERR_LIB_SSL, 0, ERR_R_PASSED_NULL_PARAMETER, __FILE__, __LINE__);
#else
    ERR_raise(ERR_LIB_SSL, ERR_R_PASSED_NULL_PARAMETER);
#endif
    expect_null_error(0, "ERR_raise(ERR_LIB_SSL, ERR_R_PASSED_NULL_PARAMETER)");

    expect_null_error(SSL_CTX_set_async_callback(NULL, tlsd_cb_A),
                      "SSL_CTX_set_async_callback(NULL, cb)");
    expect_null_error(SSL_CTX_set_async_callback_arg(NULL, &dummy),
                      "SSL_CTX_set_async_callback_arg(NULL, arg)");
    expect_null_error(SSL_set_async_callback(NULL, tlsd_cb_A),
                      "SSL_set_async_callback(NULL, cb)");
    expect_null_error(SSL_set_async_callback_arg(NULL, &dummy),
                      "SSL_set_async_callback_arg(NULL, arg)");
    expect_null_error(SSL_get_async_status(NULL, &st), "SSL_get_async_status(NULL, &st)");
    TLSD_CHECK(st == SENTINEL, "status written: %d", st);

    tlsd_conn_init(&c, sctx, NULL);
    expect_null_error(SSL_get_async_status(c.server, NULL),
                      "SSL_get_async_status(ssl, NULL) before the first job");
    SSL_set_async_callback(c.server, tlsd_cb);
    SSL_set_async_callback_arg(c.server, &c);
    tlsd_handshake(&c);
    TLSD_CHECK(atomic_load(&c.notes) == 1, "handshake callbacks");
    expect_null_error(SSL_get_async_status(c.server, NULL),
                      "SSL_get_async_status(ssl, NULL) after a job");
    TLSD_CHECK(SSL_get_async_status(c.server, &st) == 1
               && st == tlsd_status_after_callback_job(), "status still readable: %d", st);
    TLSD_CHECK(ERR_peek_error() == 0, "error left by a valid call");

    /* A NULL-argument call changes nothing on valid objects. */
    SSL_CTX_set_async_callback(sctx, tlsd_cb);
    tlsd_conn_free(&c);
    tlsd_conn_init(&c, sctx, NULL);
    SSL_set_async_callback_arg(c.server, &c);
    TLSD_CHECK(SSL_set_async_callback(NULL, NULL) == 0, "NULL ssl");
    TLSD_CHECK(SSL_CTX_set_async_callback(NULL, NULL) == 0, "NULL ctx");
    ERR_clear_error();
    tlsd_handshake(&c);
    TLSD_CHECK(atomic_load(&c.notes) == 1, "valid objects disturbed");
    tlsd_say("valid SSLs unaffected by the rejected calls");

    tlsd_conn_free(&c);
    SSL_CTX_free(sctx);
    return tlsd_end();
}
