/*
 * SSLASYNC_STATS=1 counters (shim only): a scenario whose pauses, callbacks,
 * statuses, EAGAINs, late registrations and drops are known exactly, checked
 * phase by phase against sslasync_stats_get(). The shim reads the variable
 * when it loads, so the test re-executes itself with it set.
 */
#include "tlsdrive.h"
#include "sslasync.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static tlsd_stats_get_fn stats_get;
static sslasync_stats before;

static void mark(void)
{
    TLSD_CHECK(stats_get(&before, sizeof(before)) == 1, "stats are off");
}

static uint64_t latency_total(const sslasync_stats *s)
{
    uint64_t n = 0;
    for (int i = 0; i < SSLASYNC_LATENCY_BUCKETS; i++)
        n += s->latency_us_log2[i];
    return n;
}

/* The counter deltas since mark() must be exactly these. */
static void expect(const char *phase, uint64_t pauses, uint64_t delivered, uint64_t dropped,
                   uint64_t ok, uint64_t eagain, uint64_t late)
{
    sslasync_stats now;

    TLSD_CHECK(stats_get(&now, sizeof(now)) == 1, "stats are off");
#define D(f) (now.f - before.f)
    /* "dropped": completions the application was not told about, whether
     * the trampoline dropped them or (OpenSSL 1.1.1) SSL_free ended the fd
     * adapter's watch first. */
    TLSD_CHECK(D(pauses) == pauses && D(callbacks_delivered) == delivered
                   && D(callbacks_dropped) + D(adapter_drops) == dropped && D(status_ok) == ok
                   && D(status_eagain) == eagain && D(status_err) == 0
                   && D(late_registrations) == late,
               "%s: pauses %llu/%llu delivered %llu/%llu dropped %llu/%llu ok %llu/%llu "
               "eagain %llu/%llu err %llu late %llu/%llu", phase,
               (unsigned long long)D(pauses), (unsigned long long)pauses,
               (unsigned long long)D(callbacks_delivered), (unsigned long long)delivered,
               (unsigned long long)(D(callbacks_dropped) + D(adapter_drops)),
               (unsigned long long)dropped,
               (unsigned long long)D(status_ok), (unsigned long long)ok,
               (unsigned long long)D(status_eagain), (unsigned long long)eagain,
               (unsigned long long)D(status_err), (unsigned long long)D(late_registrations),
               (unsigned long long)late);
    /* Every delivered callback of a wired SSL lands in one latency bucket. */
    TLSD_CHECK(latency_total(&now) - latency_total(&before) == delivered,
               "%s: latency histogram counted %llu of %llu callbacks", phase,
               (unsigned long long)(latency_total(&now) - latency_total(&before)),
               (unsigned long long)delivered);
#undef D
    tlsd_say("%s: pauses %llu, callbacks %llu delivered / %llu dropped, status ok %llu "
             "eagain %llu, late registrations %llu", phase, (unsigned long long)pauses,
             (unsigned long long)delivered, (unsigned long long)dropped,
             (unsigned long long)ok, (unsigned long long)eagain, (unsigned long long)late);
}

static void handshakes(SSL_CTX *sctx, int n)
{
    for (int i = 0; i < n; i++) {
        tlsd_conn c;
        tlsd_conn_init(&c, sctx, NULL);
        SSL_set_async_callback_arg(c.server, &c);
        tlsd_handshake(&c);
        tlsd_conn_free(&c);
    }
}

int main(int argc, char **argv)
{
    SSL_CTX *cb_ctx, *fd_ctx;
    tlsd_conn c;
    sslasync_stats off;

    (void)argc;
    tlsd_reexec_with_stats(argv);
    tlsd_begin("stats", TLSD_SHIM_ONLY);
    stats_get = tlsd_shim_stats_get();
    TLSD_CHECK(stats_get(NULL, sizeof(off)) == 0, "NULL out must return 0");
    memset(&off, 0xff, sizeof(off));
    TLSD_CHECK(stats_get(&off, 8) == 1 && off.enabled == 1 && off.callbacks_delivered
                   == UINT64_MAX, "a short buffer must get only its own bytes");

    cb_ctx = tlsd_server_ctx("ec", 0);
    SSL_CTX_set_async_callback(cb_ctx, tlsd_cb);
    fd_ctx = tlsd_server_ctx("ec", 0);

    mark();
    tlsd_style(SIMACCEL_STYLE_CALLBACK, 50, 0);
    handshakes(cb_ctx, 5);
    expect("device-thread callbacks", 5, 5, 0, 5, 0, 0);

    /* (OpenSSL 1.1.1 has no inline engine callback and no EAGAIN status.) */
    if (!TLSD_OPENSSL_111) {
        mark();
        tlsd_style(SIMACCEL_STYLE_INLINE, 0, 0);
        handshakes(cb_ctx, 2);
        expect("inline callbacks (engine sets no status)", 2, 2, 0, 0, 0, 0);

        /* Every operation refused once: a pause with EAGAIN, then one with OK. */
        mark();
        tlsd_style(SIMACCEL_STYLE_EAGAIN, 50, 1);
        handshakes(cb_ctx, 3);
        expect("EAGAIN re-drives", 6, 3, 0, 3, 3, 0);
    }

    mark();
    tlsd_style(SIMACCEL_STYLE_CALLBACK, 50, 0);
    handshakes(fd_ctx, 2);
    expect("wait fds, no callback", 2, 0, 0, 0, 0, 0);

    /* A callback set after the SSL's first job: native would never wire it. */
    mark();
    tlsd_conn_init(&c, fd_ctx, NULL);
    tlsd_handshake(&c);
    SSL_set_async_callback(c.server, tlsd_cb);
    SSL_set_async_callback_arg(c.server, &c);
    tlsd_conn_reset(&c);
    tlsd_handshake(&c);
    tlsd_conn_free(&c);
    expect("late registration", 2, 1, 0, 1, 0, 1);

    /* Freed while the device holds the operation: the completion is dropped. */
    mark();
    simaccel_hold(1);
    tlsd_conn_init(&c, cb_ctx, NULL);
    SSL_set_async_callback_arg(c.server, &c);
    TLSD_CHECK(tlsd_run_until_paused(&c) == 1, "no pause");
    TLSD_CHECK(simaccel_wait_in_flight(1, tlsd_timeout_ms()), "not submitted");
    tlsd_conn_free(&c);
    simaccel_hold(0);
    TLSD_CHECK(simaccel_wait_idle(tlsd_timeout_ms()), "device did not complete");
    expect("completion after SSL_free", 1, 0, 1, 1, 0, 0);

    SSL_CTX_free(cb_ctx);
    SSL_CTX_free(fd_ctx);
    return tlsd_end();
}
