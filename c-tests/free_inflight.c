/*
 * Engine completion after SSL_free (shim only). The application frees an
 * SSL whose job is paused on the device; the device completes later and
 * calls whatever callback it captured from the wait ctx. Native OpenSSL
 * would hand the application callback a dangling SSL*; the shim must drop
 * the completion: no user callback, no access to freed memory (run this
 * under the sanitizer configuration), and other connections unaffected.
 */
#include "tlsdrive.h"

#include <stdlib.h>

#define N 32

static atomic_uint stray;

/* Must not touch s: for a freed SSL it would dangle. */
static int counting_cb(SSL *s, void *arg)
{
    (void)s;
    (void)arg;
    atomic_fetch_add(&stray, 1);
    return 1;
}

int main(void)
{
    SSL_CTX *doomed_ctx, *live_ctx;
    tlsd_conn *doomed, *live;
    simaccel_counters d;
    int i;

    tlsd_begin("free_inflight", TLSD_SHIM_ONLY);
    doomed = calloc(N, sizeof(*doomed));
    live = calloc(N, sizeof(*live));
    TLSD_CHECK(doomed != NULL && live != NULL, "calloc");
    doomed_ctx = tlsd_server_ctx("ec", 0);
    live_ctx = tlsd_server_ctx("ec", 0);
    SSL_CTX_set_async_callback(doomed_ctx, counting_cb);
    SSL_CTX_set_async_callback(live_ctx, tlsd_cb);

    simaccel_hold(1);
    for (i = 0; i < N; i++) {
        tlsd_conn_init(&doomed[i], doomed_ctx, NULL);
        TLSD_CHECK(tlsd_run_until_paused(&doomed[i]) == 1, "connection %d: no pause", i);
    }
    TLSD_CHECK(simaccel_wait_in_flight(N, tlsd_timeout_ms()), "not all submitted");
    for (i = 0; i < N; i++)
        tlsd_conn_free(&doomed[i]);
    tlsd_say("%d SSLs freed while their jobs are paused on the device", N);

    /* New SSLs (likely reusing the freed memory) paused behind them. */
    for (i = 0; i < N; i++) {
        tlsd_conn_init(&live[i], live_ctx, NULL);
        SSL_set_async_callback_arg(live[i].server, &live[i]);
        TLSD_CHECK(tlsd_run_until_paused(&live[i]) == 1, "live %d: no pause", i);
    }
    tlsd_counters_mark();
    simaccel_hold(0);
    for (i = 0; i < N; i++)
        tlsd_handshake(&live[i]);
    TLSD_CHECK(simaccel_wait_idle(tlsd_timeout_ms()), "device did not finish");
    d = tlsd_counters_delta();
    TLSD_CHECK(d.completions == 2 * N && tlsd_device_notified(&d, 2 * N),
               "completions %llu, wait ctx callbacks %llu", (unsigned long long)d.completions,
               (unsigned long long)d.callbacks);
    TLSD_CHECK(atomic_load(&stray) == 0, "%u callbacks delivered for freed SSLs",
               atomic_load(&stray));
    for (i = 0; i < N; i++) {
        TLSD_CHECK(atomic_load(&live[i].notes) == 1, "live %d: %u callbacks", i,
                   atomic_load(&live[i].notes));
        TLSD_CHECK(live[i].cb_ssl == live[i].server, "live %d: callback got another SSL*", i);
    }
    tlsd_say("device completed all %d: freed SSLs got no callback, "
             "each live SSL exactly one, with its own SSL*", 2 * N);

    /* fd path: the device writes its own duplicate of the freed wait fd. */
    tlsd_style(SIMACCEL_STYLE_CALLBACK, 0, 0);
    SSL_CTX_set_async_callback(doomed_ctx, NULL);
    simaccel_hold(1);
    tlsd_conn_init(&doomed[0], doomed_ctx, NULL);
    TLSD_CHECK(tlsd_run_until_paused(&doomed[0]) == 1, "fd: no pause");
    tlsd_conn_free(&doomed[0]);
    simaccel_hold(0);
    TLSD_CHECK(simaccel_wait_idle(tlsd_timeout_ms()), "fd: device did not finish");
    tlsd_say("freed SSL on the fd path: completion harmless");

    for (i = 0; i < N; i++)
        tlsd_conn_free(&live[i]);
    free(doomed);
    free(live);
    SSL_CTX_free(doomed_ctx);
    SSL_CTX_free(live_ctx);
    return tlsd_end();
}
