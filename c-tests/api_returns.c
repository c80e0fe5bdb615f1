/*
 * Return values of the five functions on valid objects, exactly as native
 * OpenSSL 3.0 returns them: the setters return 1 (also for NULL callback or
 * arg values), SSL_get_async_status returns 0 and leaves *status alone until
 * the SSL's first async job, 1 afterwards. Successful calls leave the error
 * queue empty. The prototypes are checked at compile time.
 */
#include "tlsdrive.h"

#include <string.h>

#include <openssl/err.h>

/* Exact prototypes of the spec; a mismatch is a compile error (-Werror). */
static int (*const p_ctx_cb)(SSL_CTX *, SSL_async_callback_fn) = SSL_CTX_set_async_callback;
static int (*const p_ctx_arg)(SSL_CTX *, void *) = SSL_CTX_set_async_callback_arg;
static int (*const p_ssl_cb)(SSL *, SSL_async_callback_fn) = SSL_set_async_callback;
static int (*const p_ssl_arg)(SSL *, void *) = SSL_set_async_callback_arg;
static int (*const p_status)(SSL *, int *) = SSL_get_async_status;
static int (*const p_cb_type)(SSL *, void *) = tlsd_cb_A;

int main(void)
{
    static tlsd_tag a1 = { "a1" };
    SSL_CTX *sctx, *plain;
    tlsd_conn c;
    SSL *s;
    int status;

    tlsd_begin("api_returns", 0);
    (void)p_cb_type;
    sctx = tlsd_server_ctx("ec", 0);
    ERR_clear_error();

    TLSD_EXPECT_RET(p_ctx_cb(sctx, tlsd_cb_A), 1);
    TLSD_EXPECT_RET(p_ctx_cb(sctx, NULL), 1);
    TLSD_EXPECT_RET(p_ctx_cb(sctx, tlsd_cb_A), 1);
    TLSD_EXPECT_RET(p_ctx_arg(sctx, &a1), 1);
    TLSD_EXPECT_RET(p_ctx_arg(sctx, NULL), 1);
    TLSD_EXPECT_RET(p_ctx_arg(sctx, &a1), 1);

    tlsd_conn_init(&c, sctx, NULL);
    s = c.server;
    TLSD_EXPECT_RET(p_ssl_cb(s, tlsd_cb_B), 1);
    TLSD_EXPECT_RET(p_ssl_cb(s, NULL), 1);
    TLSD_EXPECT_RET(p_ssl_cb(s, tlsd_cb_A), 1);
    TLSD_EXPECT_RET(p_ssl_arg(s, NULL), 1);
    TLSD_EXPECT_RET(p_ssl_arg(s, &a1), 1);

    status = 12345;
    TLSD_EXPECT_RET(p_status(s, &status), 0);
    TLSD_CHECK(status == 12345, "status written before the first job: %d", status);
    tlsd_say("before the first job: *status untouched");

    tlsd_handshake(&c);
    TLSD_CHECK(strcmp(tlsd_log(&c), "A(a1)") == 0, "callbacks: %s", tlsd_log(&c));
    tlsd_say("handshake: callbacks %s", tlsd_log(&c));
    status = 12345;
    TLSD_EXPECT_RET(p_status(s, &status), 1);
    TLSD_CHECK(status == tlsd_status_after_callback_job(), "status %d", status);
    tlsd_say("after the handshake: status %d (%s)", status,
             tlsd_fd_style() ? "ASYNC_STATUS_UNSUPPORTED" : "ASYNC_STATUS_OK");

    /* The setters keep returning 1 after the SSL's first job too. */
    TLSD_EXPECT_RET(p_ssl_cb(s, tlsd_cb_A), 1);
    TLSD_EXPECT_RET(p_ssl_arg(s, &a1), 1);
    TLSD_EXPECT_RET(p_ctx_cb(sctx, tlsd_cb_B), 1);
    TLSD_EXPECT_RET(p_ctx_arg(sctx, NULL), 1);
    tlsd_conn_free(&c);

    /* Without SSL_MODE_ASYNC no job ever runs, so there is never a status. */
    plain = tlsd_server_ctx("ec", 0);
    SSL_CTX_clear_mode(plain, SSL_MODE_ASYNC);
    tlsd_conn_init(&c, plain, NULL);
    tlsd_handshake(&c);
    status = 12345;
    TLSD_EXPECT_RET(p_status(c.server, &status), 0);
    TLSD_CHECK(status == 12345, "status %d", status);
    TLSD_CHECK(c.want_async == 0, "WANT_ASYNC without SSL_MODE_ASYNC");
    tlsd_say("no SSL_MODE_ASYNC: handshake without a job, status stays unset");
    tlsd_conn_free(&c);

    SSL_CTX_free(plain);
    SSL_CTX_free(sctx);
    return tlsd_end();
}
