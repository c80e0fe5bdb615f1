/*
 * The CTX's callback and arg are copied into an SSL at SSL_new; an SSL-level
 * setting overrides them; CTX changes after SSL_new do not reach existing
 * SSLs (but do reach later ones); an SSL whose callback is NULL at its
 * first job uses wait fds.
 */
#include "tlsdrive.h"

#include <string.h>

static tlsd_tag a1 = { "a1" }, a2 = { "a2" }, b1 = { "b1" };

/* One full handshake on a new connection; returns its callback log. */
static void expect(tlsd_conn *c, const char *what, const char *want_log, int want_fd)
{
    tlsd_handshake(c);
    TLSD_CHECK(strcmp(tlsd_log(c), want_log) == 0, "%s: callbacks '%s', want '%s'",
               what, tlsd_log(c), want_log);
    TLSD_CHECK(c->woke_by_fd == (unsigned)want_fd, "%s: woke by fd %u", what, c->woke_by_fd);
    tlsd_say("%s: callbacks [%s]%s", what, tlsd_log(c), want_fd ? ", completed via wait fd" : "");
}

int main(void)
{
    SSL_CTX *sctx;
    tlsd_conn c, d;

    tlsd_begin("ctx_inherit", 0);
    sctx = tlsd_server_ctx("ec", 0);

    SSL_CTX_set_async_callback(sctx, tlsd_cb_A);
    SSL_CTX_set_async_callback_arg(sctx, &a1);
    tlsd_conn_init(&c, sctx, NULL);
    expect(&c, "inherited from CTX", "A(a1)", 0);
    tlsd_conn_free(&c);

    tlsd_conn_init(&c, sctx, NULL);
    SSL_set_async_callback(c.server, tlsd_cb_B);
    SSL_set_async_callback_arg(c.server, &b1);
    expect(&c, "SSL-level override", "B(b1)", 0);
    tlsd_conn_free(&c);

    tlsd_conn_init(&c, sctx, NULL);
    SSL_set_async_callback(c.server, tlsd_cb_B);
    expect(&c, "SSL-level callback, CTX arg", "B(a1)", 0);
    tlsd_conn_free(&c);

    /* c is created before the CTX changes, d after. */
    tlsd_conn_init(&c, sctx, NULL);
    SSL_CTX_set_async_callback(sctx, tlsd_cb_C);
    SSL_CTX_set_async_callback_arg(sctx, &a2);
    tlsd_conn_init(&d, sctx, NULL);
    expect(&c, "CTX changed after SSL_new (existing SSL)", "A(a1)", 0);
    expect(&d, "CTX changed before SSL_new (new SSL)", "C(a2)", 0);
    tlsd_conn_free(&c);
    tlsd_conn_free(&d);

    tlsd_conn_init(&c, sctx, NULL);
    SSL_set_async_callback(c.server, NULL);
    expect(&c, "SSL-level NULL before the first job", "", 1);
    tlsd_conn_free(&c);

    /* A CTX without a callback; set it only after SSL_new. */
    SSL_CTX_set_async_callback(sctx, NULL);
    SSL_CTX_set_async_callback_arg(sctx, NULL);
    tlsd_conn_init(&c, sctx, NULL);
    SSL_CTX_set_async_callback(sctx, tlsd_cb_A);
    SSL_CTX_set_async_callback_arg(sctx, &a1);
    expect(&c, "CTX callback set after SSL_new", "", 1);
    tlsd_conn_free(&c);

    /* Only an arg on the CTX: nothing to call. */
    SSL_CTX_set_async_callback(sctx, NULL);
    tlsd_conn_init(&c, sctx, NULL);
    expect(&c, "CTX arg without callback", "", 1);
    SSL_set_async_callback(c.server, tlsd_cb_B);
    tlsd_conn_free(&c);

    SSL_CTX_free(sctx);
    return tlsd_end();
}
