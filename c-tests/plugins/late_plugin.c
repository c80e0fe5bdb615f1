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

/* One handshake with tlsd_cb set through `set_cb` (the shim's export),
 * before the SSL's first job, or after it (late): natively a late one is
 * never wired, with an active shim it is. */
int late_plugin_handshake(int (*set_cb)(SSL *, SSL_async_callback_fn), int late, int shim)
{
    tlsd_conn c;

    tlsd_conn_init(&c, sctx, NULL);
    SSL_set_async_callback_arg(c.server, &c);
    if (!late) {
        TLSD_CHECK(set_cb(c.server, tlsd_cb) == 1, "set callback through the handle");
        tlsd_handshake(&c);
        TLSD_CHECK(c.woke_by_callback == 1, "callback set before the first job: not called");
    } else {
        /* One paused job first, then the callback: natively never wired;
         * with the shim, from the SSL's next job start on (the operation in
         * flight was submitted without it): the next handshake on the SSL
         * is called back. */
        TLSD_CHECK(tlsd_run_until_paused(&c) == 1, "no pause");
        TLSD_CHECK(set_cb(c.server, tlsd_cb) == 1, "late callback through the handle");
        tlsd_handshake(&c);
        tlsd_conn_reset(&c);
        tlsd_handshake(&c);
        if (shim)
            TLSD_CHECK(c.woke_by_callback == 1, "late callback: the shim did not call it");
        else
            TLSD_CHECK(c.woke_by_fd == 1 && atomic_load(&c.notes) == 0,
                       "late callback: native OpenSSL falls back to the fd (fd %u, callbacks %u)",
                       c.woke_by_fd, atomic_load(&c.notes));
    }
    tlsd_conn_free(&c);
    return 0;
}

int late_plugin_finish(void)
{
    SSL_CTX_free(sctx);
    return tlsd_end();
}
