/*
 * The callback and arg are read when the completion fires, not when the job
 * paused: an application (like FDio VPP) may change the arg per event, even
 * while the operation is in flight, and the callback sees the new value.
 * The device is held while the SSL is paused so the changes provably happen
 * between the pause and the completion.
 */
#include "tlsdrive.h"

#include <string.h>

static tlsd_conn c;

/* Pauses the server with the device held, applies change, completes. */
static void event(int n, void (*change)(SSL *), const char *what, const char *want)
{
    unsigned notes;

    if (n > 1)
        tlsd_conn_reset(&c);
    notes = atomic_load(&c.notes);
    simaccel_hold(1);
    TLSD_CHECK(tlsd_run_until_paused(&c) == 1, "event %d: no pause", n);
    TLSD_CHECK(simaccel_wait_in_flight(1, tlsd_timeout_ms()), "event %d: not submitted", n);
    TLSD_CHECK(atomic_load(&c.notes) == notes, "event %d: completed while held", n);
    change(c.server);
    simaccel_hold(0);
    tlsd_handshake(&c);
    TLSD_CHECK(strcmp(tlsd_log(&c), want) == 0, "event %d: '%s' want '%s'", n,
               tlsd_log(&c), want);
    tlsd_say("event %d, paused, then %s: callbacks [%s]", n, what, tlsd_log(&c));
}

static tlsd_tag a1 = { "a1" }, a2 = { "a2" }, a3 = { "a3" }, ctxarg = { "ctx" };
static SSL_CTX *sctx;

static void set_a2(SSL *s) { SSL_set_async_callback_arg(s, &a2); }
static void set_a3(SSL *s) { SSL_set_async_callback_arg(s, &a3); }
static void set_null(SSL *s) { SSL_set_async_callback_arg(s, NULL); }
static void set_cb_b(SSL *s) { SSL_set_async_callback(s, tlsd_cb_B); }
static void set_ctx_arg(SSL *s)
{
    (void)s;
    SSL_CTX_set_async_callback_arg(sctx, &ctxarg);
}

int main(void)
{
    tlsd_begin("arg_fire_time", 0);
    sctx = tlsd_server_ctx("ec", 0);
    SSL_CTX_set_async_callback(sctx, tlsd_cb_A);
    SSL_CTX_set_async_callback_arg(sctx, &a1);
    tlsd_conn_init(&c, sctx, NULL);

    event(1, set_a2, "arg set to a2", "A(a2)");
    event(2, set_a3, "arg set to a3", "A(a3)");
    event(3, set_null, "arg set to NULL", "A(null)");
    event(4, set_cb_b, "callback set to B", "B(null)");
    event(5, set_a2, "arg set to a2", "B(a2)");
    event(6, set_ctx_arg, "only the CTX's arg changed", "B(a2)");

    tlsd_conn_free(&c);
    SSL_CTX_free(sctx);
    return tlsd_end();
}
