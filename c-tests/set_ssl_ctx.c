/*
 * SSL_set_SSL_CTX() switches certificates but not the async callback or
 * arg: neither when called before the handshake, nor from the servername
 * (SNI) callback, i.e. inside the handshake's own async job.
 */
#include "tlsdrive.h"

#include <string.h>

static SSL_CTX *sni_target;

static int on_servername(SSL *s, int *alert, void *arg)
{
    (void)alert;
    (void)arg;
    return SSL_set_SSL_CTX(s, sni_target) == sni_target ? SSL_TLSEXT_ERR_OK
                                                        : SSL_TLSEXT_ERR_ALERT_FATAL;
}

int main(void)
{
    static tlsd_tag a1 = { "a1" }, b1 = { "b1" };
    SSL_CTX *ctx1, *ctx2;
    tlsd_conn c;

    tlsd_begin("set_ssl_ctx", 0);
    ctx1 = tlsd_server_ctx("ec", 0);
    ctx2 = tlsd_server_ctx("ec", 0);
    SSL_CTX_set_async_callback(ctx1, tlsd_cb_A);
    SSL_CTX_set_async_callback_arg(ctx1, &a1);
    SSL_CTX_set_async_callback(ctx2, tlsd_cb_B);
    SSL_CTX_set_async_callback_arg(ctx2, &b1);

    tlsd_conn_init(&c, ctx1, NULL);
    TLSD_CHECK(SSL_set_SSL_CTX(c.server, ctx2) == ctx2, "SSL_set_SSL_CTX");
    tlsd_handshake(&c);
    TLSD_CHECK(SSL_get_SSL_CTX(c.server) == ctx2, "context not switched");
    TLSD_CHECK(strcmp(tlsd_log(&c), "A(a1)") == 0, "before handshake: %s", tlsd_log(&c));
    tlsd_say("SSL_set_SSL_CTX before the handshake: callbacks [%s]", tlsd_log(&c));
    tlsd_conn_free(&c);

    sni_target = ctx2;
    SSL_CTX_set_tlsext_servername_callback(ctx1, on_servername);
    tlsd_conn_init(&c, ctx1, NULL);
    TLSD_CHECK(SSL_set_tlsext_host_name(c.client, "other.example") == 1, "SNI");
    tlsd_handshake(&c);
    TLSD_CHECK(SSL_get_SSL_CTX(c.server) == ctx2, "SNI callback did not switch");
    TLSD_CHECK(strcmp(tlsd_log(&c), "A(a1)") == 0, "from SNI: %s", tlsd_log(&c));
    tlsd_say("SSL_set_SSL_CTX from the SNI callback: callbacks [%s]", tlsd_log(&c));
    tlsd_conn_free(&c);

    SSL_CTX_free(ctx1);
    SSL_CTX_free(ctx2);
    return tlsd_end();
}
