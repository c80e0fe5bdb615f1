/*
 * dlopen_late's TLS plugin: the only part of that program that links
 * libssl (with the test fixture), loaded with dlopen(RTLD_LOCAL).
 */
#include "tlsdrive.h"

static SSL_CTX *sctx;

int late_plugin_setup(void)
{
    tlsd_begin("dlopen_late", TLSD_NO_API_OK);
    sctx = tlsd_server_ctx("ec", 0);
    return 0;
}

/* Handshakes with tlsd_cb set through `set_cb` (the shim's export), before
 * the SSL's first job, or after it (late). Natively a late one is never
 * wired (and OpenSSL 1.1.1 has no such function at all: the inert shim's
 * export fails); with an active shim it is, from the SSL's next job start
 * (the operation already in flight was submitted without it). */
int late_plugin_handshake(int (*set_cb)(SSL *, SSL_async_callback_fn), int late, int shim)
{
    int no_api = TLSD_OPENSSL_111 && !shim;
    int want_cb = !no_api && (shim || !late);
    tlsd_conn c;

    tlsd_conn_init(&c, sctx, NULL);
    if (tlsd_have_api()) /* (weak, NULL on 1.1.1 without an active shim) */
        SSL_set_async_callback_arg(c.server, &c);
    if (late)
        TLSD_CHECK(tlsd_run_until_paused(&c) == 1, "no pause");
    if (no_api) {
        TLSD_CHECK(set_cb(c.server, tlsd_cb) == 0 && ERR_peek_error() != 0,
                   "OpenSSL 1.1.1 has no SSL_set_async_callback: the inert shim's must fail");
        ERR_clear_error();
    } else {
        TLSD_CHECK(set_cb(c.server, tlsd_cb) == 1, "set callback through the handle");
    }
    tlsd_handshake(&c);
    if (late) {
        tlsd_conn_reset(&c);
        tlsd_handshake(&c);
    }
    TLSD_CHECK(simaccel_wait_idle(tlsd_timeout_ms()), "device not idle");
    if (want_cb)
        tlsd_wait_notes(&c, 1);
    else
        TLSD_CHECK(atomic_load(&c.notes) == 0, "%u callbacks where native OpenSSL makes none",
                   atomic_load(&c.notes));
    tlsd_conn_free(&c);
    return 0;
}

int late_plugin_finish(void)
{
    SSL_CTX_free(sctx);
    return tlsd_end();
}
