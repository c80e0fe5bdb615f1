/*
 * The program check-faults.sh runs once per injected fault (shim only,
 * preloaded behind c-tests/fault/libfault.so). It does what an application
 * of the API does: a callback on the CTX, a late registration, clearing a
 * wired callback, the fd adapter, frees. Whatever failed inside the shim,
 * it must not crash or hang (a watchdog), every handshake must complete
 * (an application falls back to the wait fds when the status says so), a
 * setter may fail only with 0 and an error queued, and sslasync_active()
 * must be true to what happens:
 *  - active: a callback set after the SSL's first job is called back, and
 *    clearing a wired callback is safe (natively it calls through NULL);
 *  - inactive: everything is native (clearing a wired callback is then left
 *    out: native OpenSSL would crash, as documented).
 * It prints "fault_scenario: active=N" for the driver.
 */
#define _GNU_SOURCE
#include "tlsdrive.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

static uint64_t adapter_unavailable(void)
{
    sslasync_stats st = { 0 };
    tlsd_stats_get_fn get = (tlsd_stats_get_fn)(uintptr_t)dlsym(RTLD_DEFAULT, "sslasync_stats_get");

    if (get != NULL)
        get(&st, sizeof(st));
    return st.adapter_unavailable;
}

static int set_cb(SSL *s, SSL_async_callback_fn cb)
{
    int r = SSL_set_async_callback(s, cb);

    /* A failure is documented: 0 and an error queued (memory, a slot). */
    TLSD_CHECK(r == 1 || ERR_peek_error() != 0, "a setter failed without an error");
    ERR_clear_error();
    return r;
}

int main(void)
{
    int (*set_fd)(SSL *, int);
    SSL_CTX *sctx;
    tlsd_conn c;
    int active, late_ok, cleared = 0;
    uint64_t unavailable_before;

    tlsd_watchdog("the fault scenario", 60);
    tlsd_begin("fault_scenario", TLSD_NO_API_OK);
    sctx = tlsd_server_ctx("ec", 0);
    if (SSL_CTX_set_async_callback(sctx, tlsd_cb) != 1)
        ERR_clear_error();

    /* 1. The CTX's callback. */
    tlsd_conn_init(&c, sctx, NULL);
    SSL_set_async_callback_arg(c.server, &c);
    tlsd_handshake(&c);
    tlsd_conn_free(&c);

    /* 2. A callback set after the SSL's first job. Where the callback can
     * only come from the fd adapter (OpenSSL 1.1.1), a pause it could not
     * watch is left native, as documented (adapter_unavailable). */
    unavailable_before = adapter_unavailable();
    tlsd_conn_init(&c, sctx, NULL);
    SSL_set_async_callback_arg(c.server, &c);
    set_cb(c.server, NULL);
    TLSD_CHECK(tlsd_run_until_paused(&c) == 1, "no pause");
    late_ok = set_cb(c.server, tlsd_cb) == 1;
    tlsd_handshake(&c);
    tlsd_conn_reset(&c);
    tlsd_handshake(&c);
    active = tlsd_shim_active();
    if (active == 1 && late_ok && adapter_unavailable() == unavailable_before)
        TLSD_CHECK(c.woke_by_callback == 1,
                   "sslasync_active() is 1 but a late callback was not called back");
    tlsd_conn_free(&c);

    /* 3. Clearing a wired callback, where the shim says it protects. */
    tlsd_conn_init(&c, sctx, NULL);
    SSL_set_async_callback_arg(c.server, &c);
    tlsd_handshake(&c);
    if (tlsd_shim_active() == 1) {
        set_cb(c.server, NULL);
        tlsd_conn_reset(&c);
        tlsd_handshake(&c);
        cleared = 1;
    }
    tlsd_conn_free(&c);

    /* 4. The fd adapter with an fd-only engine. */
    *(void **)&set_fd = dlsym(RTLD_DEFAULT, "sslasync_set_fd_callbacks");
    tlsd_style(SIMACCEL_STYLE_FD, 0, 0);
    for (int i = 0; i < 3; i++) {
        tlsd_conn_init(&c, sctx, NULL);
        SSL_set_async_callback_arg(c.server, &c);
        if (set_fd != NULL && set_fd(c.server, 1) != 1)
            ERR_clear_error();
        tlsd_handshake(&c);
        tlsd_conn_free(&c);
    }
    tlsd_style(SIMACCEL_STYLE_CALLBACK, 0, 0);
    active = tlsd_shim_active();
    printf("fault_scenario: active=%d late=%d cleared=%d\n", active, late_ok, cleared);
    SSL_CTX_free(sctx);
    tlsd_watchdog(NULL, 0);
    return tlsd_end();
}
