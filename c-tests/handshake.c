/*
 * The accelerator really pauses libssl's handshake job: TLS 1.3 and 1.2,
 * RSA and ECDSA server keys, every notification style, with and without a
 * callback. Each full handshake is exactly one offloaded private-key
 * operation; the counters prove that it paused and how it was completed.
 */
#include "tlsdrive.h"

#include <string.h>

static const char *style_name(simaccel_style s)
{
    switch (s) {
    case SIMACCEL_STYLE_CALLBACK: return "callback";
    case SIMACCEL_STYLE_INLINE: return "inline";
    case SIMACCEL_STYLE_FD: return "fd";
    case SIMACCEL_STYLE_EAGAIN: return "eagain";
    }
    return "?";
}

static void one(const char *keytype, int version, simaccel_style style, int with_cb)
{
    SSL_CTX *sctx = tlsd_server_ctx(keytype, version);
    tlsd_conn c;
    simaccel_counters d;
    /* Which path must announce the completion. Under TLSD_STYLE=fd the
     * callback style runs as the fd-only one, and on OpenSSL 1.1.1 every
     * style only signals fds; their callbacks then come only from the
     * shim's fd adapter (SSLASYNC_FD_CALLBACKS=1, always on on 1.1.1). */
    int fd_only = tlsd_style_is_fd(style);
    int adapted = with_cb && fd_only && tlsd_fd_adapter();
    int expect_cb = with_cb && (!fd_only || adapted);

    tlsd_style(style, 50, 1);
    tlsd_conn_init(&c, sctx, NULL);
    if (with_cb) {
        TLSD_CHECK(SSL_set_async_callback(c.server, tlsd_cb) == 1, "set cb");
        TLSD_CHECK(SSL_set_async_callback_arg(c.server, &c) == 1, "set arg");
    }
    tlsd_counters_mark();
    tlsd_handshake(&c);
    d = tlsd_counters_delta();

    TLSD_CHECK(SSL_version(c.server) == version, "negotiated 0x%x", SSL_version(c.server));
    TLSD_CHECK(d.offloaded_ops == 1, "offloaded %llu", (unsigned long long)d.offloaded_ops);
    TLSD_CHECK(d.not_in_job == 0, "not_in_job %llu", (unsigned long long)d.not_in_job);
    TLSD_CHECK(d.pauses >= 1, "no pause");
    TLSD_CHECK(d.completions == 1, "completions %llu", (unsigned long long)d.completions);
    TLSD_CHECK(d.submissions == 1, "submissions %llu", (unsigned long long)d.submissions);
    TLSD_CHECK(c.want_async >= 1, "WANT_ASYNC never returned");
    if (adapted) {
        /* The device signalled its fd; the adapter called back from its thread. */
        TLSD_CHECK(d.callbacks == 0 && d.fd_signals == 1, "callbacks %llu fd %llu",
                   (unsigned long long)d.callbacks, (unsigned long long)d.fd_signals);
        TLSD_CHECK(atomic_load(&c.notes) == 1, "user callback ran %u times",
                   atomic_load(&c.notes));
        TLSD_CHECK(c.cb_ssl == c.server, "callback got another SSL*");
        TLSD_CHECK(c.cb_on_adapter_thread && !c.cb_on_device_thread && !c.cb_inside_call,
                   "adapter callback thread: adapter %d device %d inside %d",
                   c.cb_on_adapter_thread, c.cb_on_device_thread, c.cb_inside_call);
        TLSD_CHECK(c.cb_status_ret == 1 && c.cb_status == ASYNC_STATUS_OK,
                   "status in the adapter's callback %d/%d", c.cb_status_ret, c.cb_status);
        TLSD_CHECK(c.paused_status == ASYNC_STATUS_OK, "status after WANT_ASYNC %d",
                   c.paused_status);
        TLSD_CHECK(c.max_async_fds == 1 && c.woke_by_callback == 1 && c.woke_by_fd == 0,
                   "fds %u, woke by callback %u, by fd %u", c.max_async_fds,
                   c.woke_by_callback, c.woke_by_fd);
    } else if (expect_cb) {
        TLSD_CHECK(d.callbacks == 1 && d.fd_signals == 0, "callbacks %llu fd %llu",
                   (unsigned long long)d.callbacks, (unsigned long long)d.fd_signals);
        TLSD_CHECK(atomic_load(&c.notes) == 1, "user callback ran %u times",
                   atomic_load(&c.notes));
        TLSD_CHECK(c.cb_ssl == c.server, "callback got another SSL*");
        TLSD_CHECK(c.max_async_fds == 0, "wait fd created in callback mode");
    } else {
        TLSD_CHECK(d.callbacks == 0 && d.fd_signals == 1, "callbacks %llu fd %llu",
                   (unsigned long long)d.callbacks, (unsigned long long)d.fd_signals);
        TLSD_CHECK(atomic_load(&c.notes) == 0, "user callback ran");
        TLSD_CHECK(style == SIMACCEL_STYLE_INLINE || c.woke_by_fd == 1,
                   "woke by fd %u", c.woke_by_fd);
    }
    /* (1.1.1 has no status to refuse with: EAGAIN runs as FD there.) */
    if (style == SIMACCEL_STYLE_EAGAIN && !TLSD_OPENSSL_111) {
        TLSD_CHECK(d.eagains == 1 && c.eagain_redrives == 1, "eagains %llu redrives %u",
                   (unsigned long long)d.eagains, c.eagain_redrives);
        TLSD_CHECK(d.pauses == 2, "pauses %llu", (unsigned long long)d.pauses);
    } else {
        TLSD_CHECK(d.eagains == 0 && d.pauses == 1, "eagains %llu pauses %llu",
                   (unsigned long long)d.eagains, (unsigned long long)d.pauses);
    }
    tlsd_say("%s TLS%s %-8s %-11s: ok, paused %llu, user callbacks %u, "
             "fd signals %llu, EAGAIN re-drives %u",
             keytype, version == TLS1_3_VERSION ? "1.3" : "1.2", style_name(style),
             with_cb ? "callback" : "no callback", (unsigned long long)d.pauses,
             atomic_load(&c.notes), (unsigned long long)d.fd_signals, c.eagain_redrives);
    tlsd_conn_free(&c);
    SSL_CTX_free(sctx);
}

int main(void)
{
    static const char *const keys[] = { "ec", "rsa" };
    static const int versions[] = { TLS1_3_VERSION, TLS1_2_VERSION };
    static const simaccel_style styles[] = {
        SIMACCEL_STYLE_CALLBACK, SIMACCEL_STYLE_INLINE, SIMACCEL_STYLE_FD,
        SIMACCEL_STYLE_EAGAIN,
    };
    size_t k, v, s;
    int cb;

    /* Native OpenSSL 1.1.1 has no callback API: the cells without one. */
    tlsd_begin("handshake", TLSD_NO_API_OK);
    for (k = 0; k < 2; k++)
        for (v = 0; v < 2; v++)
            for (s = 0; s < 4; s++)
                for (cb = tlsd_have_api(); cb >= 0; cb--)
                    one(keys[k], versions[v], styles[s], cb);
    return tlsd_end();
}
