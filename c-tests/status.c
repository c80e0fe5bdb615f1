/*
 * SSL_get_async_status: returns 0 and leaves *status untouched until the
 * SSL's first async job has run (whether or not it paused), then returns 1
 * and the wait ctx's status: UNSUPPORTED until an engine writes one, OK
 * from a callback-style engine, EAGAIN while refused. Nothing resets it: it
 * persists across completion, SSL_clear() and later jobs of engines that
 * never write a status.
 */
#include "tlsdrive.h"

#define SENTINEL 0x5eed

static int status_of(SSL *s, int *ret)
{
    int st = SENTINEL;

    *ret = SSL_get_async_status(s, &st);
    return st;
}

static void expect(SSL *s, int want_ret, int want_status, const char *when)
{
    int ret, st = status_of(s, &ret);

    TLSD_CHECK(ret == want_ret && st == want_status, "%s: ret %d status %d, want %d/%d",
               when, ret, st, want_ret, want_status);
    if (want_ret == 0)
        tlsd_say("%s: returns 0, *status untouched", when);
    else
        tlsd_say("%s: returns 1, status %d", when, st);
}

static void fresh(SSL_CTX *sctx, simaccel_style style, int with_cb, const char *what,
                  int want_status)
{
    tlsd_conn c;
    char when[128];

    tlsd_style(style, 50, 0);
    tlsd_conn_init(&c, sctx, NULL);
    if (with_cb) {
        SSL_set_async_callback(c.server, tlsd_cb);
        SSL_set_async_callback_arg(c.server, &c);
    }
    tlsd_handshake(&c);
    snprintf(when, sizeof(when), "%s, after the handshake", what);
    expect(c.server, 1, want_status, when);
    tlsd_conn_free(&c);
}

int main(void)
{
    SSL_CTX *sctx;
    tlsd_conn c;
    int r, after;

    tlsd_begin("status", 0);
    /* Under TLSD_STYLE=fd the callback style is the fd-only engine: OK while
     * paused only if the shim's fd adapter armed the pause, and UNSUPPORTED
     * again once the resume started (what the engine itself left). */
    after = tlsd_status_after_callback_job();
    sctx = tlsd_server_ctx("ec", 0);

    tlsd_conn_init(&c, sctx, NULL);
    SSL_set_async_callback(c.server, tlsd_cb);
    SSL_set_async_callback_arg(c.server, &c);
    expect(c.server, 0, SENTINEL, "new SSL, before any job");

    /* The first job runs (and creates the wait ctx) without pausing: the
     * client has not spoken yet. */
    r = SSL_do_handshake(c.server);
    TLSD_CHECK(r < 0 && SSL_get_error(c.server, r) == SSL_ERROR_WANT_READ, "first call");
    expect(c.server, 1, ASYNC_STATUS_UNSUPPORTED, "after a first job that did not pause");

    simaccel_hold(1);
    TLSD_CHECK(tlsd_run_until_paused(&c) == 1, "no pause");
    expect(c.server, 1, tlsd_expect_callbacks() ? ASYNC_STATUS_OK : ASYNC_STATUS_UNSUPPORTED,
           "paused on a callback-style engine");
    simaccel_hold(0);
    tlsd_handshake(&c);
    expect(c.server, 1, after, "after completion");
    tlsd_conn_reset(&c);
    expect(c.server, 1, after, "after SSL_clear");
    tlsd_style(SIMACCEL_STYLE_INLINE, 0, 0);
    tlsd_handshake(&c);
    expect(c.server, 1, after, "after an inline engine's job (never writes status)");
    tlsd_conn_free(&c);

    fresh(sctx, SIMACCEL_STYLE_INLINE, 1, "inline engine with callback", ASYNC_STATUS_UNSUPPORTED);
    fresh(sctx, SIMACCEL_STYLE_INLINE, 0, "inline engine without callback", ASYNC_STATUS_UNSUPPORTED);
    fresh(sctx, SIMACCEL_STYLE_FD, 1, "fd-only engine with callback", ASYNC_STATUS_UNSUPPORTED);
    fresh(sctx, SIMACCEL_STYLE_CALLBACK, 0, "callback engine without callback (fd)",
          ASYNC_STATUS_UNSUPPORTED);
    fresh(sctx, SIMACCEL_STYLE_CALLBACK, 1, "callback engine with callback", after);

    /* EAGAIN is visible while refused; the accepted retry writes OK.
     * (OpenSSL 1.1.1 has no status an engine could refuse with.) */
    if (!TLSD_OPENSSL_111) {
        tlsd_style(SIMACCEL_STYLE_EAGAIN, 50, 1);
        tlsd_conn_init(&c, sctx, NULL);
        SSL_set_async_callback(c.server, tlsd_cb);
        SSL_set_async_callback_arg(c.server, &c);
        tlsd_handshake(&c);
        TLSD_CHECK(c.eagain_redrives == 1, "EAGAIN not seen by the driver");
        tlsd_say("EAGAIN engine: status EAGAIN seen after WANT_ASYNC, re-driven");
        expect(c.server, 1, ASYNC_STATUS_OK, "EAGAIN engine, after the accepted retry");
        tlsd_conn_free(&c);
    }

    SSL_CTX_free(sctx);
    return tlsd_end();
}
