/*
 * A callback registered after the SSL's first async job.
 *
 * Native OpenSSL wires the callback into the wait ctx only when the first
 * job creates it, so a later registration is never delivered: the engine
 * keeps using wait fds (README.md, "Semantics": "callback set after the SSL's
 * first async job"). The shim (deliberate difference) delivers it from the
 * next pause on. The engine decides per submission, so an operation already
 * in flight when the callback is set still completes through its fd in both.
 */
#include "tlsdrive.h"

#include <string.h>

static tlsd_tag a1 = { "a1" };

static void expect(tlsd_conn *c, const char *what, int shim_delivers)
{
    const char *want = shim_delivers ? "A(a1)" : "";

    TLSD_CHECK(strcmp(tlsd_log(c), want) == 0, "%s: callbacks '%s' want '%s'", what,
               tlsd_log(c), want);
    TLSD_CHECK(shim_delivers ? (c->woke_by_callback == 1 && c->woke_by_fd == 0)
                             : (c->woke_by_callback == 0 && c->woke_by_fd == 1),
               "%s: woke by callback %u, by fd %u", what, c->woke_by_callback, c->woke_by_fd);
    tlsd_say("%s: %s", what, shim_delivers ? "callback delivered [A(a1)]"
                                           : "no callback, completed via wait fd");
}

int main(void)
{
    SSL_CTX *sctx;
    tlsd_conn c;
    int r, shim;

    shim = tlsd_begin("late_register", 0) == TLSD_SHIM;
    tlsd_say("implementation: %s", shim ? "sslasync shim" : "native OpenSSL");
    sctx = tlsd_server_ctx("ec", 0);

    /* First job without a callback (no pause yet: the client is silent). */
    tlsd_conn_init(&c, sctx, NULL);
    r = SSL_do_handshake(c.server);
    TLSD_CHECK(r < 0 && SSL_get_error(c.server, r) == SSL_ERROR_WANT_READ, "first call");
    SSL_set_async_callback(c.server, tlsd_cb_A);
    SSL_set_async_callback_arg(c.server, &a1);
    tlsd_handshake(&c);
    expect(&c, "set after the first job, before the pause", shim);
    tlsd_conn_reset(&c);
    tlsd_handshake(&c);
    expect(&c, "next handshake on the same SSL", shim);
    tlsd_conn_free(&c);

    /* Registered while the operation is in flight on the fd path. */
    tlsd_conn_init(&c, sctx, NULL);
    simaccel_hold(1);
    TLSD_CHECK(tlsd_run_until_paused(&c) == 1, "no pause");
    SSL_set_async_callback(c.server, tlsd_cb_A);
    SSL_set_async_callback_arg(c.server, &a1);
    simaccel_hold(0);
    tlsd_handshake(&c);
    expect(&c, "set while paused on the fd path", 0);
    tlsd_conn_reset(&c);
    tlsd_handshake(&c);
    expect(&c, "the following pause", shim);
    tlsd_conn_free(&c);

    /*
     * Again while another SSL uses the API: the shim then marks the wait
     * ctx of an SSL without a callback so later job starts skip the lookup,
     * and a registration must still invalidate that mark.
     */
    {
        tlsd_conn other;
        static tlsd_tag b1 = { "b1" };

        tlsd_conn_init(&other, sctx, NULL);
        SSL_set_async_callback(other.server, tlsd_cb_B);
        SSL_set_async_callback_arg(other.server, &b1);
        tlsd_conn_init(&c, sctx, NULL);
        tlsd_handshake(&c);
        expect(&c, "no callback, another SSL using the API", 0);
        tlsd_conn_reset(&c);
        tlsd_handshake(&c);
        expect(&c, "still none on the next handshake", 0);
        SSL_set_async_callback(c.server, tlsd_cb_A);
        SSL_set_async_callback_arg(c.server, &a1);
        tlsd_conn_reset(&c);
        tlsd_handshake(&c);
        expect(&c, "set after two full handshakes", shim);
        tlsd_conn_free(&c);
        tlsd_conn_free(&other);
    }

    SSL_CTX_free(sctx);
    return tlsd_end();
}
