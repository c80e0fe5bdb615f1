/*
 * Clearing a wired callback (deliberate difference, shim only): native
 * OpenSSL 3.0 keeps its trampoline in the wait ctx and the next completion
 * calls a NULL function pointer. With the shim, an SSL whose callback is
 * set to NULL goes back to wait-fd notification from its next pause, and a
 * completion already in flight when the callback is cleared is dropped
 * without a crash (the application then re-drives on its own).
 */
#include "tlsdrive.h"

#include <string.h>

static tlsd_tag a1 = { "a1" };

static void run(tlsd_conn *c, const char *what, const char *want, int want_fd)
{
    simaccel_counters d;

    tlsd_counters_mark();
    tlsd_handshake(c);
    d = tlsd_counters_delta();
    TLSD_CHECK(strcmp(tlsd_log(c), want) == 0, "%s: '%s' want '%s'", what, tlsd_log(c), want);
    TLSD_CHECK(want_fd ? (d.fd_signals == 1 && d.callbacks == 0 && c->woke_by_fd == 1)
                       : (tlsd_device_notified(&d, 1) && c->woke_by_callback == 1),
               "%s: fds %llu callbacks %llu", what, (unsigned long long)d.fd_signals,
               (unsigned long long)d.callbacks);
    tlsd_say("%s: callbacks [%s]%s", what, tlsd_log(c), want_fd ? ", via wait fd" : "");
}

int main(void)
{
    SSL_CTX *sctx;
    tlsd_conn c;
    simaccel_counters d;
    unsigned notes;

    tlsd_begin("clear_null", TLSD_SHIM_ONLY);
    sctx = tlsd_server_ctx("ec", 0);
    SSL_CTX_set_async_callback(sctx, tlsd_cb_A);
    SSL_CTX_set_async_callback_arg(sctx, &a1);

    tlsd_conn_init(&c, sctx, NULL);
    run(&c, "wired", "A(a1)", 0);
    TLSD_CHECK(SSL_set_async_callback(c.server, NULL) == 1, "clear");
    tlsd_conn_reset(&c);
    run(&c, "after clearing", "", 1);
    tlsd_conn_reset(&c);
    run(&c, "still cleared", "", 1);
    SSL_set_async_callback(c.server, tlsd_cb_A);
    tlsd_conn_reset(&c);
    run(&c, "set again", "A(a1)", 0);

    /* Cleared while the device holds the operation. */
    tlsd_conn_reset(&c);
    simaccel_hold(1);
    TLSD_CHECK(tlsd_run_until_paused(&c) == 1, "no pause");
    TLSD_CHECK(simaccel_wait_in_flight(1, tlsd_timeout_ms()), "not submitted");
    tlsd_counters_mark();
    notes = atomic_load(&c.notes);
    SSL_set_async_callback(c.server, NULL);
    simaccel_hold(0);
    TLSD_CHECK(simaccel_wait_idle(tlsd_timeout_ms()), "device did not complete");
    d = tlsd_counters_delta();
    TLSD_CHECK(tlsd_device_notified(&d, 1), "the device did not notify the completion");
    TLSD_CHECK(atomic_load(&c.notes) == notes, "a cleared callback was called");
    /* Nothing will announce this completion: re-drive on our own. */
    c.paused = 0;
    tlsd_handshake(&c);
    TLSD_CHECK(strcmp(tlsd_log(&c), "") == 0, "callbacks %s", tlsd_log(&c));
    tlsd_say("cleared while in flight: completion dropped, no crash, re-drive completes");
    tlsd_conn_reset(&c);
    run(&c, "next pause after clearing in flight", "", 1);

    tlsd_conn_free(&c);
    SSL_CTX_free(sctx);
    return tlsd_end();
}
