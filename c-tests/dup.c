/*
 * SSL_dup of a fresh SSL calls SSL_new(ctx): the copy takes the CTX's
 * callback and arg as they are at dup time, not the source SSL's own ones
 * (also not through the SSL's ex_data, which SSL_dup duplicates after
 * SSL_new). SSL_dup of an SSL past its handshake just takes a reference.
 */
#include "tlsdrive.h"

#include <string.h>

int main(void)
{
    static tlsd_tag a1 = { "a1" }, a2 = { "a2" }, b1 = { "b1" };
    SSL_CTX *sctx;
    SSL *s, *d, *again;
    tlsd_conn cs, cd;

    tlsd_begin("dup", 0);
    sctx = tlsd_server_ctx("ec", 0);
    SSL_CTX_set_async_callback(sctx, tlsd_cb_A);
    SSL_CTX_set_async_callback_arg(sctx, &a1);

    /* Duplicated before any transport is attached: SSL_dup would try to
     * duplicate the BIOs too. */
    s = SSL_new(sctx);
    TLSD_CHECK(s != NULL, "SSL_new");
    SSL_set_async_callback(s, tlsd_cb_B);
    SSL_set_async_callback_arg(s, &b1);
    SSL_CTX_set_async_callback_arg(sctx, &a2);
    d = SSL_dup(s);
    TLSD_CHECK(d != NULL, "SSL_dup");
    TLSD_CHECK(d != s, "SSL_dup of a fresh SSL returned the same object");
    TLSD_CHECK(SSL_get_mode(d) & SSL_MODE_ASYNC, "SSL_dup lost SSL_MODE_ASYNC");
    tlsd_say("SSL_dup of a fresh SSL: a new object");

    tlsd_conn_adopt(&cd, d, NULL);
    tlsd_handshake(&cd);
    TLSD_CHECK(strcmp(tlsd_log(&cd), "A(a2)") == 0, "duplicate: %s", tlsd_log(&cd));
    tlsd_say("duplicate: callbacks [%s] (the CTX's values at dup time)", tlsd_log(&cd));

    tlsd_conn_adopt(&cs, s, NULL);
    tlsd_handshake(&cs);
    TLSD_CHECK(strcmp(tlsd_log(&cs), "B(b1)") == 0, "source: %s", tlsd_log(&cs));
    tlsd_say("source: callbacks [%s] (its own values, untouched)", tlsd_log(&cs));

    again = SSL_dup(s);
    TLSD_CHECK(again == s, "SSL_dup after the handshake made a new object");
    SSL_free(again);
    tlsd_say("SSL_dup after the handshake: same object, one more reference");

    /* The reference dance did not disturb the source's callback. */
    tlsd_conn_reset(&cs);
    tlsd_handshake(&cs);
    TLSD_CHECK(strcmp(tlsd_log(&cs), "B(b1)") == 0, "source again: %s", tlsd_log(&cs));
    tlsd_say("source after SSL_clear: callbacks [%s]", tlsd_log(&cs));

    tlsd_conn_free(&cs);
    tlsd_conn_free(&cd);
    SSL_CTX_free(sctx);
    return tlsd_end();
}
