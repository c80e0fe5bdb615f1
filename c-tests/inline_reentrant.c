/*
 * dasync-style engine: the callback runs synchronously inside the job,
 * i.e. inside SSL_do_handshake and before it returns SSL_ERROR_WANT_ASYNC,
 * on the application's own thread. The callback may re-enter the API on the
 * same SSL (read the status, change its own arg and callback) without
 * deadlocking, and the next event sees those changes.
 */
#include "tlsdrive.h"

#include <stdlib.h>
#include <string.h>

static tlsd_tag next = { "next" };

static int reentering_cb(SSL *s, void *arg)
{
    tlsd_conn *c = SSL_get_app_data(s);
    int st = -1;

    (void)arg;
    c->cb_ssl = s;
    c->cb_inside_call = tlsd_in_server_call();
    c->cb_on_device_thread = simaccel_on_device_thread();
    c->cb_status_ret = SSL_get_async_status(s, &st);
    c->cb_status = st;
    /* Re-entering the setters from inside the job. */
    if (SSL_set_async_callback_arg(s, &next) != 1 || SSL_set_async_callback(s, tlsd_cb_B) != 1)
        abort();
    tlsd_note(c);
    return 1;
}

int main(void)
{
    SSL_CTX *sctx;
    tlsd_conn c;
    simaccel_counters d;

    tlsd_begin("inline_reentrant", 0);
    tlsd_style(SIMACCEL_STYLE_INLINE, 0, 0);
    sctx = tlsd_server_ctx("ec", 0);
    tlsd_conn_init(&c, sctx, NULL);
    SSL_set_async_callback(c.server, reentering_cb);
    SSL_set_async_callback_arg(c.server, &c);

    tlsd_counters_mark();
    tlsd_handshake(&c);
    d = tlsd_counters_delta();
    TLSD_CHECK(atomic_load(&c.notes) == 1, "callback ran %u times", atomic_load(&c.notes));
    TLSD_CHECK(d.pauses == 1 && d.callbacks == 1 && d.fd_signals == 0, "counters");
    TLSD_CHECK(c.cb_ssl == c.server, "callback got another SSL*");
    TLSD_CHECK(c.cb_inside_call == 1, "callback did not run inside SSL_do_handshake");
    TLSD_CHECK(c.cb_on_device_thread == 0, "callback on the device thread");
    TLSD_CHECK(c.noted_before_return == 1, "callback had not run when WANT_ASYNC returned");
    TLSD_CHECK(c.want_async == 1, "WANT_ASYNC returned %u times", c.want_async);
    TLSD_CHECK(c.cb_status_ret == 1 && c.cb_status == ASYNC_STATUS_UNSUPPORTED,
               "status from inside the callback: %d/%d", c.cb_status_ret, c.cb_status);
    tlsd_say("callback ran inside SSL_do_handshake on the calling thread, "
             "before WANT_ASYNC was returned");
    tlsd_say("status read from inside the callback: ret %d, status %d (UNSUPPORTED)",
             c.cb_status_ret, c.cb_status);

    /* The changes the callback made from inside the job apply next time. */
    tlsd_conn_reset(&c);
    tlsd_handshake(&c);
    TLSD_CHECK(strcmp(tlsd_log(&c), "B(next)") == 0, "second: %s", tlsd_log(&c));
    TLSD_CHECK(c.cb_inside_call == 1 && c.noted_before_return == 1, "second not inline");
    tlsd_say("next handshake: callbacks [%s] (set from inside the first callback)",
             tlsd_log(&c));

    tlsd_conn_free(&c);
    SSL_CTX_free(sctx);
    return tlsd_end();
}
