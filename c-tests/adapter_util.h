/*
 * Helpers of the fd adapter's tests (adapter_*.c): the three switch
 * functions and the adapter counters, looked up at run time (so the tests
 * build against any sslasync.h and fail, rather than not link, against a
 * shim without the adapter), and the adapter thread's name.
 */
#ifndef ADAPTER_UTIL_H
#define ADAPTER_UTIL_H

#define _GNU_SOURCE
#include "tlsdrive.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

typedef int (*ad_ctx_set_fn)(SSL_CTX *ctx, int on);
typedef int (*ad_set_fn)(SSL *s, int on);
typedef int (*ad_get_fn)(const SSL *s);

static inline void *ad_sym(const char *name)
{
    void *p = dlsym(RTLD_DEFAULT, name);

    TLSD_CHECK(p != NULL, "the shim exports no %s", name);
    return p;
}

static inline int ad_ctx_set(SSL_CTX *ctx, int on)
{
    return ((ad_ctx_set_fn)(uintptr_t)ad_sym("sslasync_CTX_set_fd_callbacks"))(ctx, on);
}

static inline int ad_set(SSL *s, int on)
{
    return ((ad_set_fn)(uintptr_t)ad_sym("sslasync_set_fd_callbacks"))(s, on);
}

static inline int ad_get(const SSL *s)
{
    return ((ad_get_fn)(uintptr_t)ad_sym("sslasync_get_fd_callbacks"))(s);
}

/* The four adapter counters, appended to struct sslasync_stats right after
 * jobs_unverified (read by offset, so an older sslasync.h still builds). */
typedef struct {
    uint64_t arms, deliveries, drops, unavailable;
} ad_stats;

static inline ad_stats ad_stats_now(void)
{
    uint64_t buf[256];
    size_t base = offsetof(sslasync_stats, jobs_unverified) / sizeof(uint64_t) + 1;
    ad_stats a;

    memset(buf, 0, sizeof(buf));
    (void)tlsd_shim_stats_get()((sslasync_stats *)(void *)buf, sizeof(buf));
    a.arms = buf[base];
    a.deliveries = buf[base + 1];
    a.drops = buf[base + 2];
    a.unavailable = buf[base + 3];
    return a;
}

static inline ad_stats ad_delta(ad_stats now, ad_stats then)
{
    ad_stats d;

    d.arms = now.arms - then.arms;
    d.deliveries = now.deliveries - then.deliveries;
    d.drops = now.drops - then.drops;
    d.unavailable = now.unavailable - then.unavailable;
    return d;
}

/* Once nothing is armed: arms == deliveries + drops. A delivery is counted
 * around its callback, so this waits (bounded, failing the test) for the
 * counters to settle, and returns them. */
static inline ad_stats ad_settled(const char *when)
{
    long long waited_us = 0, limit_us = (long long)tlsd_timeout_ms() * 1000;
    ad_stats a;

    for (;;) {
        struct timespec ts = { 0, 200000 };

        a = ad_stats_now();
        if (a.arms == a.deliveries + a.drops)
            return a;
        TLSD_CHECK(waited_us < limit_us,
                   "%s: arms %llu != deliveries %llu + drops %llu with nothing armed", when,
                   (unsigned long long)a.arms, (unsigned long long)a.deliveries,
                   (unsigned long long)a.drops);
        nanosleep(&ts, NULL);
        waited_us += 200;
    }
}

/* 1 on the shim's poller thread. */
static inline int ad_on_fd_thread(void)
{
    char name[16] = "";

    return pthread_getname_np(pthread_self(), name, sizeof(name)) == 0
        && strcmp(name, "sslasync-fd") == 0;
}

#endif
