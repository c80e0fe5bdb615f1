/*
 * EAGAIN re-drive (QAT's "device busy / retry"): the engine sets
 * ASYNC_STATUS_EAGAIN and pauses without submitting, calling nothing and
 * signalling no fd. The application must read SSL_get_async_status after
 * SSL_ERROR_WANT_ASYNC and re-drive the call itself; the retry is then
 * submitted and notified normally. The refusal produces no callback.
 */
#include "tlsdrive.h"

#include <string.h>

static void handshake(SSL_CTX *sctx, int with_cb, unsigned n, unsigned want_redrives)
{
    tlsd_conn c;
    simaccel_counters d;
    int st = -1;

    tlsd_conn_init(&c, sctx, NULL);
    if (with_cb) {
        SSL_set_async_callback(c.server, tlsd_cb);
        SSL_set_async_callback_arg(c.server, &c);
    }
    tlsd_counters_mark();
    tlsd_handshake(&c);
    d = tlsd_counters_delta();
    TLSD_CHECK(c.eagain_redrives == want_redrives && d.eagains == want_redrives,
               "handshake %u: re-drives %u, refusals %llu, want %u", n, c.eagain_redrives,
               (unsigned long long)d.eagains, want_redrives);
    TLSD_CHECK(d.submissions == 1 && d.completions == 1, "handshake %u: submissions", n);
    TLSD_CHECK(d.pauses == 1 + want_redrives, "handshake %u: pauses %llu", n,
               (unsigned long long)d.pauses);
    if (with_cb) {
        TLSD_CHECK(atomic_load(&c.notes) == 1 && d.callbacks == 1 && d.fd_signals == 0,
                   "handshake %u: callbacks %u", n, atomic_load(&c.notes));
        TLSD_CHECK(c.cb_status_ret == 1 && c.cb_status == ASYNC_STATUS_OK,
                   "handshake %u: status in the callback %d", n, c.cb_status);
    } else {
        TLSD_CHECK(d.callbacks == 0 && d.fd_signals == 1 && c.woke_by_fd == 1,
                   "handshake %u: fd path", n);
    }
    TLSD_CHECK(SSL_get_async_status(c.server, &st) == 1 && st == ASYNC_STATUS_OK,
               "handshake %u: final status %d", n, st);
    tlsd_say("%s handshake %u: EAGAIN seen and re-driven %u time(s), then %s; status OK",
             with_cb ? "callback" : "fd", n, c.eagain_redrives,
             with_cb ? "one callback (status OK inside it)" : "the wait fd");
    tlsd_conn_free(&c);
}

int main(void)
{
    SSL_CTX *sctx;
    unsigned i;

    tlsd_begin("eagain", 0);
    sctx = tlsd_server_ctx("ec", 0);

    tlsd_style(SIMACCEL_STYLE_EAGAIN, 50, 1);
    for (i = 1; i <= 2; i++)
        handshake(sctx, 1, i, 1);
    tlsd_style(SIMACCEL_STYLE_EAGAIN, 50, 3);
    for (i = 1; i <= 6; i++)
        handshake(sctx, 1, i, i % 3 == 0);
    tlsd_style(SIMACCEL_STYLE_EAGAIN, 50, 1);
    for (i = 1; i <= 2; i++)
        handshake(sctx, 0, i, 1);

    /* TLS 1.2 and RSA take the same path. */
    SSL_CTX_free(sctx);
    sctx = tlsd_server_ctx("rsa", TLS1_2_VERSION);
    handshake(sctx, 1, 1, 1);
    SSL_CTX_free(sctx);
    return tlsd_end();
}
