/*
 * SSL lifecycles (shim only), for memcheck and for the shim's memory bound.
 *
 * Phase 1: LIFECYCLES (default 100,000) SSLs in cycles: each cycle creates
 * LIVE (4,000) SSLs that use the API in varied patterns (callback and arg
 * set on the SSL or inherited from the CTX, cleared, set again, SSL_dup of
 * a fresh SSL, SSL_clear, SSL_set_SSL_CTX, status reads), keeps them all
 * alive at once, then frees them. The shim's memory must be bounded by the
 * peak of live SSLs: the resident set after the last cycle (frees done,
 * malloc_trim'ed so that free heap is not counted) may exceed the one after
 * the first cycle by at most RSS_SLACK (a leak of 8 bytes per SSL exceeds
 * it many times over). The resident set with SSLs alive is printed, not
 * asserted: calloc'ed pages that nobody touches are not resident, so it
 * depends on where malloc found the memory. Not asserted under valgrind, whose own
 * memory it would measure (the runner sets LIFECYCLE_NO_RSS=1).
 * LIFECYCLE_SELFTEST_LEAK=<bytes> leaks that much per SSL on purpose, to
 * see both this check and memcheck fail.
 *
 * Phase 2: HANDSHAKES (default 200) real handshakes whose server job
 * pauses on the accelerator and is completed from the device thread; every
 * tenth SSL is freed while its operation is in flight (OpenSSL leaks that
 * job by design: see valgrind-paused-job.supp).
 *
 * Run under valgrind memcheck by run-valgrind.sh: any error, and any
 * definitely lost block, fails the test.
 */
#include "tlsdrive.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LIVE 4000
#define RSS_SLACK (512L * 1024)

static atomic_uint calls;

static int cb_a(SSL *s, void *arg)
{
    (void)s;
    (void)arg;
    atomic_fetch_add(&calls, 1);
    return 1;
}

static int cb_b(SSL *s, void *arg)
{
    (void)s;
    (void)arg;
    atomic_fetch_add(&calls, 1);
    return 1;
}

static long rss_bytes(void)
{
    long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");

    TLSD_CHECK(f != NULL, "/proc/self/statm");
    TLSD_CHECK(fscanf(f, "%ld %ld", &size, &resident) == 2, "statm format");
    fclose(f);
    return resident * sysconf(_SC_PAGESIZE);
}

static unsigned long env_ul(const char *name, unsigned long dflt)
{
    const char *v = getenv(name);

    return v != NULL && *v != '\0' ? strtoul(v, NULL, 0) : dflt;
}

/* One SSL from ctx (the CTX has cb_a and an arg) or plain (no values),
 * used in pattern p; returns the SSL(s) to keep alive (up to 2). */
static int make(SSL_CTX *plain, SSL_CTX *with_cb, SSL_CTX *other, unsigned p, SSL **out)
{
    static int tag;
    SSL *s, *d;
    int st = -1;

    switch (p % 8) {
    case 0: /* no API use at all */
        s = SSL_new(plain);
        break;
    case 1: /* callback and arg on the SSL */
        s = SSL_new(plain);
        TLSD_CHECK(s != NULL && SSL_set_async_callback(s, cb_a) == 1
                       && SSL_set_async_callback_arg(s, &tag) == 1, "setters");
        break;
    case 2: /* inherited from the CTX */
        s = SSL_new(with_cb);
        break;
    case 3: /* SSL_dup of a fresh SSL: a second object with the CTX's values */
        s = SSL_new(with_cb);
        TLSD_CHECK(s != NULL && SSL_set_async_callback(s, cb_b) == 1, "setter");
        d = SSL_dup(s);
        TLSD_CHECK(d != NULL && d != s, "SSL_dup");
        out[0] = s;
        out[1] = d;
        return 2;
    case 4: /* set, SSL_clear, cleared */
        s = SSL_new(plain);
        TLSD_CHECK(s != NULL && SSL_set_async_callback(s, cb_a) == 1
                       && SSL_set_async_callback_arg(s, &tag) == 1, "setters");
        TLSD_CHECK(SSL_clear(s) == 1, "SSL_clear");
        TLSD_CHECK(SSL_set_async_callback(s, NULL) == 1, "clear");
        break;
    case 5: /* inherited, cleared, set again, moved to another CTX */
        s = SSL_new(with_cb);
        TLSD_CHECK(s != NULL && SSL_set_async_callback_arg(s, NULL) == 1
                       && SSL_set_async_callback(s, NULL) == 1
                       && SSL_set_async_callback(s, cb_b) == 1, "setters");
        TLSD_CHECK(SSL_set_SSL_CTX(s, other) == other, "SSL_set_SSL_CTX");
        break;
    case 6: /* only an arg */
        s = SSL_new(plain);
        TLSD_CHECK(s != NULL && SSL_set_async_callback_arg(s, &tag) == 1, "setter");
        break;
    default: /* status before any job: 0, untouched */
        s = SSL_new(with_cb);
        TLSD_CHECK(s != NULL && SSL_get_async_status(s, &st) == 0 && st == -1, "status");
        break;
    }
    TLSD_CHECK(s != NULL, "SSL_new");
    out[0] = s;
    return 1;
}

int main(void)
{
    static SSL *live[2 * LIVE];
    static int tag;
    unsigned long lifecycles = env_ul("LIFECYCLES", 100000);
    unsigned long handshakes = env_ul("HANDSHAKES", 200);
    unsigned long made = 0, cycles = 0, freed_in_flight = 0;
    int check_rss = getenv("LIFECYCLE_NO_RSS") == NULL;
    long rss_first = 0, rss_last = 0, live_first = 0, live_last = 0;
    unsigned long selftest_leak = env_ul("LIFECYCLE_SELFTEST_LEAK", 0);
    SSL_CTX *plain, *with_cb, *other;
    simaccel_counters d;

    tlsd_begin("lifecycle", TLSD_SHIM_ONLY);
    plain = tlsd_server_ctx("ec", 0);
    with_cb = tlsd_server_ctx("ec", 0);
    other = tlsd_server_ctx("ec", 0);
    SSL_CTX_set_async_callback(with_cb, cb_a);
    SSL_CTX_set_async_callback_arg(with_cb, &tag);

    /* Phase 1: cycles of LIVE SSLs alive at once. */
    while (made < lifecycles) {
        unsigned long n = 0;
        long rss;

        while (n < LIVE && made < lifecycles) {
            n += (unsigned long)make(plain, with_cb, other, (unsigned)made, &live[n]);
            made++;
            if (selftest_leak != 0)
                TLSD_CHECK(memset(malloc(selftest_leak), 1, selftest_leak) != NULL, "malloc");
        }
        rss = rss_bytes();
        if (cycles == 0)
            live_first = rss;
        live_last = rss;
        for (unsigned long i = 0; i < n; i++)
            SSL_free(live[i]);
        malloc_trim(0);
        rss = rss_bytes();
        if (cycles++ == 0)
            rss_first = rss;
        rss_last = rss;
    }
    printf("lifecycle: %lu SSL lifecycles (+ SSL_dup copies) in %lu cycles of up to %d live\n",
           made, cycles, LIVE);
    printf("lifecycle: RSS after the first cycle %ld KiB, after the last %ld KiB (growth %ld "
           "KiB); with the SSLs alive: first %ld KiB, last %ld KiB (growth %ld KiB); "
           "allowed %ld KiB\n", rss_first / 1024, rss_last / 1024, (rss_last - rss_first) / 1024,
           live_first / 1024, live_last / 1024, (live_last - live_first) / 1024,
           RSS_SLACK / 1024);
    fflush(stdout);
    if (check_rss) {
        TLSD_CHECK(rss_last - rss_first <= RSS_SLACK,
                   "RSS grew by %ld KiB over %lu cycles: memory not bounded by the live SSLs",
                   (rss_last - rss_first) / 1024, cycles);
    } else
        printf("lifecycle: RSS bound not asserted (LIFECYCLE_NO_RSS: under valgrind)\n");

    /* Phase 2: real paused handshakes, every tenth SSL freed in flight. */
    tlsd_style(SIMACCEL_STYLE_CALLBACK, 0, 0);
    tlsd_counters_mark();
    for (unsigned long i = 0; i < handshakes; i++) {
        tlsd_conn c;

        tlsd_conn_init(&c, i % 2 ? with_cb : plain, NULL);
        SSL_set_async_callback(c.server, tlsd_cb);
        SSL_set_async_callback_arg(c.server, &c);
        if (i % 10 == 9) {
            simaccel_hold(1);
            TLSD_CHECK(tlsd_run_until_paused(&c) == 1, "no pause");
            TLSD_CHECK(simaccel_wait_in_flight(1, tlsd_timeout_ms()), "not submitted");
            tlsd_conn_free(&c);
            simaccel_hold(0);
            /* Completes after the free: the shim drops it, &c is not touched. */
            TLSD_CHECK(simaccel_wait_idle(tlsd_timeout_ms()), "device did not go idle");
            freed_in_flight++;
            continue;
        }
        tlsd_handshake(&c);
        TLSD_CHECK(atomic_load(&c.notes) == 1 && c.cb_ssl == c.server,
                   "handshake %lu: %u callbacks", i, atomic_load(&c.notes));
        tlsd_conn_free(&c);
    }
    d = tlsd_counters_delta();
    TLSD_CHECK(d.pauses == handshakes && tlsd_device_notified(&d, handshakes),
               "pauses %llu, device callbacks %llu, fd signals %llu",
               (unsigned long long)d.pauses, (unsigned long long)d.callbacks,
               (unsigned long long)d.fd_signals);
    TLSD_CHECK(atomic_load(&calls) == 0, "%u callbacks reached cb_a/cb_b", atomic_load(&calls));
    printf("lifecycle: %lu paused handshakes, %lu of them freed in flight\n", handshakes,
           freed_in_flight);

    SSL_CTX_free(plain);
    SSL_CTX_free(with_cb);
    SSL_CTX_free(other);
    return tlsd_end();
}
