/*
 * QAT-style engine: the callback runs on the device's polling thread, never
 * on the application thread that called SSL_do_handshake, and only after
 * the job paused (the device is held until then). From there the callback
 * can read the status, which the engine set to ASYNC_STATUS_OK before
 * pausing.
 */
#include "tlsdrive.h"

int main(void)
{
    static const unsigned latencies[] = { 0, 50, 1000 };
    SSL_CTX *sctx;
    tlsd_conn c;
    size_t i;
    int round;

    tlsd_begin("foreign_thread", 0);
    sctx = tlsd_server_ctx("ec", 0);
    SSL_CTX_set_async_callback(sctx, tlsd_cb);

    /* Held device: the callback provably comes after the pause. */
    tlsd_conn_init(&c, sctx, NULL);
    SSL_set_async_callback_arg(c.server, &c);
    simaccel_hold(1);
    TLSD_CHECK(tlsd_run_until_paused(&c) == 1, "no pause");
    TLSD_CHECK(simaccel_wait_in_flight(1, tlsd_timeout_ms()), "not submitted");
    TLSD_CHECK(atomic_load(&c.notes) == 0, "callback before completion");
    simaccel_hold(0);
    tlsd_handshake(&c);
    TLSD_CHECK(atomic_load(&c.notes) == 1, "callbacks %u", atomic_load(&c.notes));
    TLSD_CHECK(c.cb_same_thread == 0, "callback ran on the application thread");
    TLSD_CHECK(tlsd_cb_on_notifier(&c), "callback not on the device (or fd adapter) thread");
    TLSD_CHECK(c.cb_inside_call == 0, "callback inside SSL_do_handshake");
    TLSD_CHECK(c.cb_ssl == c.server, "callback got another SSL*");
    TLSD_CHECK(c.cb_status_ret == 1 && c.cb_status == ASYNC_STATUS_OK,
               "status from the callback: %d/%d", c.cb_status_ret, c.cb_status);
    tlsd_say("held device: callback after the pause, on the device thread, status OK");
    tlsd_conn_free(&c);

    /* Free-running device at several latencies (the callback may even beat
     * the pause when the latency is 0). */
    for (i = 0; i < sizeof(latencies) / sizeof(latencies[0]); i++) {
        tlsd_style(SIMACCEL_STYLE_CALLBACK, latencies[i], 0);
        for (round = 0; round < 10; round++) {
            tlsd_conn_init(&c, sctx, NULL);
            SSL_set_async_callback_arg(c.server, &c);
            tlsd_handshake(&c);
            TLSD_CHECK(atomic_load(&c.notes) == 1, "callbacks %u", atomic_load(&c.notes));
            TLSD_CHECK(c.cb_same_thread == 0 && tlsd_cb_on_notifier(&c),
                       "latency %u: callback thread", latencies[i]);
            TLSD_CHECK(c.cb_status_ret == 1 && c.cb_status == ASYNC_STATUS_OK, "status");
            tlsd_conn_free(&c);
        }
        tlsd_say("latency %u us: 10 handshakes, each one callback on the device thread",
                 latencies[i]);
    }

    SSL_CTX_free(sctx);
    return tlsd_end();
}
