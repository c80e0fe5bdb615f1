/*
 * Many concurrent connections in one process: 256 server SSLs are paused at
 * the same time (the device is held until all have submitted), then the
 * device completes them all. Every connection gets exactly one callback,
 * with its own SSL* and arg: none lost, none duplicated, none crossed.
 * A second round does the same through 256 wait fds.
 */
#include "tlsdrive.h"

#include <stdlib.h>

#define N 256

static void round_(SSL_CTX *sctx, int with_cb)
{
    tlsd_conn *conns = calloc(N, sizeof(*conns));
    simaccel_counters d;
    int i, with_cb_set;

    TLSD_CHECK(conns != NULL, "calloc");
    /* TLSD_STYLE=fd without the fd adapter: the callback is never called. */
    with_cb_set = with_cb;
    with_cb = with_cb && tlsd_expect_callbacks();
    tlsd_counters_mark();
    simaccel_hold(1);
    for (i = 0; i < N; i++) {
        tlsd_conn_init(&conns[i], sctx, NULL);
        if (with_cb_set)
            SSL_set_async_callback_arg(conns[i].server, &conns[i]);
        else if (tlsd_have_api())
            SSL_set_async_callback(conns[i].server, NULL);
        TLSD_CHECK(tlsd_run_until_paused(&conns[i]) == 1, "connection %d did not pause", i);
    }
    TLSD_CHECK(simaccel_wait_in_flight(N, tlsd_timeout_ms()), "in flight %llu",
               (unsigned long long)simaccel_in_flight());
    d = tlsd_counters_delta();
    TLSD_CHECK(simaccel_in_flight() == N && d.pauses == N && d.completions == 0,
               "in flight %llu, pauses %llu", (unsigned long long)simaccel_in_flight(),
               (unsigned long long)d.pauses);
    for (i = 0; i < N; i++)
        TLSD_CHECK(SSL_waiting_for_async(conns[i].server) == 1, "connection %d not paused", i);
    tlsd_say("%s: %d handshakes paused at once, %d operations in flight",
             with_cb ? "callbacks" : "wait fds", N, N);

    simaccel_hold(0);
    for (i = 0; i < N; i++)
        tlsd_handshake(&conns[i]);
    TLSD_CHECK(simaccel_wait_idle(tlsd_timeout_ms()), "device not idle");
    d = tlsd_counters_delta();
    for (i = 0; i < N; i++) {
        tlsd_conn *c = &conns[i];

        if (with_cb) {
            TLSD_CHECK(atomic_load(&c->notes) == 1, "connection %d: %u callbacks", i,
                       atomic_load(&c->notes));
            TLSD_CHECK(c->cb_ssl == c->server, "connection %d: callback got another SSL*", i);
            TLSD_CHECK(tlsd_cb_on_notifier(c), "connection %d: callback thread", i);
        } else {
            TLSD_CHECK(atomic_load(&c->notes) == 0 && c->woke_by_fd == 1,
                       "connection %d: fd wake", i);
        }
    }
    TLSD_CHECK(d.completions == N && d.pauses == N && d.offloaded_ops == N,
               "completions %llu", (unsigned long long)d.completions);
    TLSD_CHECK(with_cb ? tlsd_device_notified(&d, N)
                       : (d.callbacks == 0 && d.fd_signals == N),
               "callbacks %llu fds %llu", (unsigned long long)d.callbacks,
               (unsigned long long)d.fd_signals);
    tlsd_say("%s: %d handshakes completed, each notified exactly once",
             with_cb ? "callbacks" : "wait fds", N);
    for (i = 0; i < N; i++)
        tlsd_conn_free(&conns[i]);
    free(conns);
}

int main(void)
{
    SSL_CTX *sctx;

    /* Native OpenSSL 1.1.1 has no callback API: the wait-fd round only. */
    tlsd_begin("many", TLSD_NO_API_OK);
    tlsd_style(SIMACCEL_STYLE_CALLBACK, 0, 0);
    sctx = tlsd_server_ctx("ec", 0);
    if (tlsd_have_api()) {
        SSL_CTX_set_async_callback(sctx, tlsd_cb);
        round_(sctx, 1);
    }
    round_(sctx, 0);
    SSL_CTX_free(sctx);
    return tlsd_end();
}
