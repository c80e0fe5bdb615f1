/*
 * SSL_clear() reuse: the callback and arg survive, the second and later
 * handshakes on the same SSL pause and complete through the callback again,
 * and changes made between handshakes take effect.
 */
#include "tlsdrive.h"

#include <string.h>

static void round_(tlsd_conn *c, int n, const char *want)
{
    simaccel_counters d;
    int st = -1;

    tlsd_counters_mark();
    tlsd_handshake(c);
    d = tlsd_counters_delta();
    TLSD_CHECK(strcmp(tlsd_log(c), want) == 0, "handshake %d: '%s' want '%s'", n,
               tlsd_log(c), want);
    TLSD_CHECK(d.pauses == 1 && tlsd_device_notified(&d, 1),
               "handshake %d: pauses %llu callbacks %llu fds %llu", n,
               (unsigned long long)d.pauses, (unsigned long long)d.callbacks,
               (unsigned long long)d.fd_signals);
    TLSD_CHECK(SSL_get_async_status(c->server, &st) == 1
               && st == tlsd_status_after_callback_job(),
               "status %d", st);
    tlsd_say("handshake %d on the same SSL: paused once, callbacks [%s]", n, tlsd_log(c));
}

int main(void)
{
    static tlsd_tag a1 = { "a1" }, a2 = { "a2" };
    SSL_CTX *sctx;
    tlsd_conn c;
    SSL *first;

    tlsd_begin("clear_reuse", 0);
    sctx = tlsd_server_ctx("ec", 0);
    SSL_CTX_set_async_callback(sctx, tlsd_cb_A);
    SSL_CTX_set_async_callback_arg(sctx, &a1);
    tlsd_conn_init(&c, sctx, NULL);
    first = c.server;

    round_(&c, 1, "A(a1)");
    tlsd_conn_reset(&c);
    round_(&c, 2, "A(a1)");
    tlsd_conn_reset(&c);
    round_(&c, 3, "A(a1)");
    SSL_set_async_callback_arg(c.server, &a2);
    tlsd_conn_reset(&c);
    round_(&c, 4, "A(a2)");
    SSL_set_async_callback(c.server, tlsd_cb_B);
    tlsd_conn_reset(&c);
    round_(&c, 5, "B(a2)");
    TLSD_CHECK(c.server == first, "SSL object changed");

    tlsd_conn_free(&c);
    SSL_CTX_free(sctx);
    return tlsd_end();
}
