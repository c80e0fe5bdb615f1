/*
 * Nothing in the shim waits for a slow callback, let alone burns a core
 * doing so (shim only). Callbacks of three SSLs sleep for 2 seconds: two
 * on engine threads, one on the fd adapter's poller thread. Meanwhile three
 * threads clear and free the first, free the second, and resume then free
 * the third. Each of those calls must return while the callback it concerns
 * is still sleeping (they wait for nothing), and together they may use at
 * most 50 ms of CPU.
 */
#define _GNU_SOURCE
#include "tlsdrive.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SLEEP_S 2

typedef struct {
    tlsd_conn c;
    atomic_int asleep, woke, freed;
    long long cpu_ns;
    int still_asleep_after;
} sleeper;

static int sleepy_cb(SSL *s, void *arg)
{
    sleeper *z = arg;
    struct timespec t = { SLEEP_S, 0 };

    (void)s;
    atomic_store(&z->asleep, 1);
    while (nanosleep(&t, &t) != 0)
        ;
    atomic_store(&z->woke, 1);
    return 1;
}

static void wait_asleep(sleeper *z)
{
    tlsd_wait_set(&z->asleep, "the callback runs");
}

static void *engine_main(void *unused)
{
    (void)unused;
    TLSD_CHECK(simaccel_complete_one() == 1, "nothing to complete");
    return NULL;
}

/* The actors: what each does to its SSL while its callback sleeps. */
static void *clear_then_free(void *arg)
{
    sleeper *z = arg;
    long long t0 = tlsd_thread_cpu_ns();

    TLSD_CHECK(SSL_set_async_callback(z->c.server, NULL) == 1, "clear");
    tlsd_conn_free(&z->c);
    z->cpu_ns = tlsd_thread_cpu_ns() - t0;
    z->still_asleep_after = !atomic_load(&z->woke);
    return NULL;
}

static void *just_free(void *arg)
{
    sleeper *z = arg;
    long long t0 = tlsd_thread_cpu_ns();

    tlsd_conn_free(&z->c);
    z->cpu_ns = tlsd_thread_cpu_ns() - t0;
    z->still_asleep_after = !atomic_load(&z->woke);
    return NULL;
}

static void wait_asleep(sleeper *z);
static void set_up(sleeper *z, SSL_CTX *sctx, int fd_adapter);
static SSL_CTX *sctx;
static atomic_int adapter_paused;

/* An async job is resumed on the thread that started it: this thread
 * starts the handshake, waits until the adapter's callback sleeps, then
 * resumes it. */
static void *resume_then_free(void *arg)
{
    sleeper *z = arg;
    long long t0;

    set_up(z, sctx, 1);
    TLSD_CHECK(tlsd_run_until_paused(&z->c) == 1, "no pause");
    wait_asleep(z);
    atomic_store(&adapter_paused, 1);
    t0 = tlsd_thread_cpu_ns();
    /* A job start of the SSL the adapter is calling back for. */
    z->c.paused = 0;
    tlsd_handshake(&z->c);
    tlsd_conn_free(&z->c);
    z->cpu_ns = tlsd_thread_cpu_ns() - t0;
    z->still_asleep_after = !atomic_load(&z->woke);
    return NULL;
}

static void set_up(sleeper *z, SSL_CTX *sctx, int fd_adapter)
{
    memset(z, 0, sizeof(*z));
    tlsd_conn_init(&z->c, sctx, NULL);
    tlsd_watch_free(z->c.server, &z->freed);
    if (fd_adapter) {
        int (*set_fd)(SSL *, int) =
            (int (*)(SSL *, int))(uintptr_t)dlsym(RTLD_DEFAULT, "sslasync_set_fd_callbacks");

        TLSD_CHECK(set_fd != NULL && set_fd(z->c.server, 1) == 1, "sslasync_set_fd_callbacks");
    }
    TLSD_CHECK(SSL_set_async_callback(z->c.server, sleepy_cb) == 1, "set callback");
    TLSD_CHECK(SSL_set_async_callback_arg(z->c.server, z) == 1, "set arg");
}

int main(void)
{
    sleeper z[3];
    pthread_t engine[2], actor[3];
    void *(*const act[3])(void *) = { clear_then_free, just_free, resume_then_free };
    int engines = !TLSD_OPENSSL_111 && !tlsd_fd_style(), first = engines ? 0 : 2, i;
    long long total = 0;

    tlsd_begin("waiter_cpu", TLSD_SHIM_ONLY);
    tlsd_watchdog("slow callbacks while their SSLs are cleared, freed, resumed", 0);
    sctx = tlsd_server_ctx("ec", 0);
    if (engines) {
        /* Two engine-thread callbacks, completed by threads of the test. */
        simaccel_hold(1);
        for (i = 0; i < 2; i++) {
            set_up(&z[i], sctx, 0);
            TLSD_CHECK(tlsd_run_until_paused(&z[i].c) == 1, "no pause");
        }
        TLSD_CHECK(simaccel_wait_in_flight(2, tlsd_timeout_ms()), "not submitted");
        for (i = 0; i < 2; i++)
            TLSD_CHECK(pthread_create(&engine[i], NULL, engine_main, NULL) == 0, "engine");
        for (i = 0; i < 2; i++)
            wait_asleep(&z[i]);
        simaccel_hold(0); /* the device serves the fd-only SSL below */
    }
    /* One fd adapter callback, on its poller thread: its actor starts it. */
    tlsd_style(SIMACCEL_STYLE_FD, 0, 0);
    for (i = first; i < 3; i++)
        TLSD_CHECK(pthread_create(&actor[i], NULL, act[i], &z[i]) == 0, "actor");
    for (i = first; i < 3; i++) {
        pthread_join(actor[i], NULL);
        TLSD_CHECK(z[i].still_asleep_after,
                   "SSL %d: the call returned only after its callback woke (it waited)", i);
        total += z[i].cpu_ns;
        fprintf(stderr, "waiter_cpu: SSL %d: %.3f ms of CPU\n", i, z[i].cpu_ns / 1e6);
    }
    TLSD_CHECK(total < 50 * 1000000LL, "the calls used %.1f ms of CPU (limit 50)", total / 1e6);
    if (engines)
        for (i = 0; i < 2; i++)
            pthread_join(engine[i], NULL);
    TLSD_CHECK(simaccel_wait_idle(tlsd_timeout_ms()), "the device did not finish");
    /* The freed SSLs went when their callbacks returned. */
    for (i = first; i < 3; i++)
        tlsd_wait_set(&z[i].freed, "a freed SSL goes when its callback returns");
    tlsd_style(SIMACCEL_STYLE_CALLBACK, 0, 0);
    tlsd_watchdog(NULL, 0);
    tlsd_say("clear, free and resume returned while the callbacks slept, using under 50 ms "
             "of CPU");
    SSL_CTX_free(sctx);
    return tlsd_end();
}
