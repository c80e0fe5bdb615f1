/*
 * The five functions on QUIC objects (OpenSSL 3.2+), where native OpenSSL's
 * return values depend on the kind of object: a QUIC connection carries an
 * inner TLS connection, so the SSL-level setters return 1 on it; a QUIC
 * listener or domain (3.5+) has none, so they return 0, with nothing queued.
 * SSL_get_async_status returns 0 on all of them (no async job ever ran), and
 * SSL_dup of a QUIC connection returns NULL. The shim runs the real setter
 * first and returns its value, so the transcript must equal native's.
 */
#include "tlsdrive.h"

#include <stdio.h>
#include <stdlib.h>

#include <openssl/err.h>

#if OPENSSL_VERSION_NUMBER < 0x30200000L || defined(OPENSSL_NO_QUIC)
int main(void)
{
    printf("SKIP quic_objects: this OpenSSL has no QUIC\n");
    return 77;
}
#else

static void probe(const char *what, SSL *s, int want_set)
{
    static tlsd_tag a1 = { "a1" };
    int status = 12345;

    tlsd_say("%s:", what);
    TLSD_EXPECT_RET(SSL_set_async_callback(s, tlsd_cb_A), want_set);
    TLSD_EXPECT_RET(SSL_set_async_callback_arg(s, &a1), want_set);
    TLSD_EXPECT_RET(SSL_set_async_callback(s, NULL), want_set);
    TLSD_EXPECT_RET(SSL_set_async_callback_arg(s, NULL), want_set);
    TLSD_EXPECT_RET(SSL_get_async_status(s, &status), 0);
    TLSD_CHECK(status == 12345, "%s: status written: %d", what, status);
}

int main(void)
{
    static tlsd_tag c1 = { "c1" };
    SSL_CTX *cctx;
    SSL *conn, *dup;

    tlsd_begin("quic_objects", 0);
    ERR_clear_error();

    cctx = SSL_CTX_new(OSSL_QUIC_client_method());
    TLSD_CHECK(cctx != NULL, "SSL_CTX_new(OSSL_QUIC_client_method())");
    /* Set before SSL_new, so the shim's SSL_new copies from a QUIC CTX. */
    TLSD_EXPECT_RET(SSL_CTX_set_async_callback(cctx, tlsd_cb_B), 1);
    TLSD_EXPECT_RET(SSL_CTX_set_async_callback_arg(cctx, &c1), 1);

    conn = SSL_new(cctx);
    TLSD_CHECK(conn != NULL, "SSL_new on a QUIC client CTX");
    probe("QUIC connection", conn, 1);

    dup = SSL_dup(conn);
    tlsd_say("SSL_dup(QUIC connection) = %s", dup == NULL ? "NULL" : "an SSL");
    TLSD_CHECK(dup == NULL, "SSL_dup of a QUIC connection returned an object");
    ERR_clear_error();

#if OPENSSL_VERSION_NUMBER >= 0x30500000L
    {
        SSL_CTX *sctx = SSL_CTX_new(OSSL_QUIC_server_method());
        SSL *listener, *domain;

        TLSD_CHECK(sctx != NULL, "SSL_CTX_new(OSSL_QUIC_server_method())");
        listener = SSL_new_listener(sctx, 0);
        TLSD_CHECK(listener != NULL, "SSL_new_listener");
        probe("QUIC listener", listener, 0);
        domain = SSL_new_domain(cctx, 0);
        TLSD_CHECK(domain != NULL, "SSL_new_domain");
        probe("QUIC domain", domain, 0);
        SSL_free(domain);
        SSL_free(listener);
        SSL_CTX_free(sctx);
    }
#endif

    SSL_free(conn);
    SSL_CTX_free(cctx);
    return tlsd_end();
}
#endif
