/*
 * A callback whose thread ends inside it (shim only). An engine thread may
 * end inside the application's callback: pthread_exit, or a cancellation at
 * a cancellation point. Natively nothing of OpenSSL is held across the
 * callback, so the application can go on clearing and freeing that SSL.
 * With the shim the delivery holds a claim on the SSL's record while the
 * callback runs; the forced unwind that ends the thread must release it,
 * so that:
 *  - SSL_set_async_callback(s, NULL) and SSL_free(s) return (a watchdog
 *    fails the test on a hang), and
 *  - SSL_free(s) frees s at once, no callback of s being left running (its
 *    ex_data free has run when SSL_free returns).
 * The fd adapter's poller thread too: a callback that ends it must leave a
 * replacement, so later adapter pauses are still called back.
 */
#define _GNU_SOURCE
#include "tlsdrive.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum how { EXIT, CANCEL, NHOW };
static const char *const how_name[NHOW] = { "pthread_exit", "pthread_cancel" };

static enum how how;
static atomic_int entered;

static int leaving_cb(SSL *s, void *arg)
{
    (void)s;
    (void)arg;
    atomic_store(&entered, 1);
    switch (how) {
    case EXIT:
        pthread_exit(NULL);
    case CANCEL:
        /* The main thread cancels this thread; sleep() is a cancellation
         * point, so the thread ends inside it. */
        for (;;)
            sleep(1);
    default:
        abort();
    }
}

/* An engine thread: completes the one held operation on this thread, whose
 * callback then ends the thread. */
static void *engine_main(void *unused)
{
    (void)unused;
    pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
    TLSD_CHECK(simaccel_complete_one() == 1, "nothing to complete");
    tlsd_fail(__FILE__, __LINE__, "engine_main", "%s: the callback returned", how_name[how]);
}

static void wait_entered(void)
{
    tlsd_wait_set(&entered, "the callback runs");
}

static void one(SSL_CTX *sctx, enum how h)
{
    tlsd_conn c;
    pthread_t engine;
    atomic_int freed;
    char phase[96];

    how = h;
    atomic_store(&entered, 0);
    snprintf(phase, sizeof(phase), "%s inside the callback, then clear and free", how_name[h]);
    tlsd_watchdog(phase, 0);
    simaccel_hold(1);
    memset(&c, 0, sizeof(c));
    tlsd_conn_init(&c, sctx, NULL);
    tlsd_watch_free(c.server, &freed);
    TLSD_CHECK(SSL_set_async_callback(c.server, leaving_cb) == 1, "set callback");
    TLSD_CHECK(tlsd_run_until_paused(&c) == 1, "no pause");
    TLSD_CHECK(simaccel_wait_in_flight(1, tlsd_timeout_ms()), "not submitted");
    TLSD_CHECK(pthread_create(&engine, NULL, engine_main, NULL) == 0, "pthread_create");
    wait_entered();
    if (h == CANCEL)
        TLSD_CHECK(pthread_cancel(engine) == 0, "pthread_cancel");
    TLSD_CHECK(pthread_join(engine, NULL) == 0, "pthread_join");
    /* The device's notification never returned to the fixture. */
    simaccel_abandon_one();
    /* The thread is gone: nothing of s is in a callback. */
    TLSD_CHECK(SSL_set_async_callback(c.server, NULL) == 1, "clear");
    tlsd_conn_free(&c);
    TLSD_CHECK(atomic_load(&freed) == 1,
               "%s: SSL_free returned without freeing the SSL (a callback still "
               "counted as running)", how_name[h]);
    simaccel_hold(0);
    tlsd_watchdog(NULL, 0);
    tlsd_say("%s inside the callback: the clear and SSL_free returned, the SSL was freed at "
             "once", how_name[h]);
}

/* ------------------------------------------------------ the fd adapter */

static atomic_int adapter_calls;

static int adapter_cb(SSL *s, void *arg)
{
    tlsd_conn *c = arg;

    (void)s;
    TLSD_CHECK(tlsd_on_adapter_thread(), "adapter callback on another thread");
    if (atomic_fetch_add(&adapter_calls, 1) == 0)
        pthread_exit(NULL); /* ends the poller thread itself */
    tlsd_note(c);
    return 1;
}

static void poller(SSL_CTX *sctx)
{
    int (*set_fd)(SSL *, int) =
        (int (*)(SSL *, int))(uintptr_t)dlsym(RTLD_DEFAULT, "sslasync_set_fd_callbacks");
    tlsd_conn c[2];
    int i;

    TLSD_CHECK(set_fd != NULL, "no sslasync_set_fd_callbacks");
    tlsd_watchdog("pthread_exit inside an fd adapter callback", 0);
    tlsd_style(SIMACCEL_STYLE_FD, 0, 0);
    for (i = 0; i < 2; i++) {
        memset(&c[i], 0, sizeof(c[i]));
        tlsd_conn_init(&c[i], sctx, NULL);
        TLSD_CHECK(set_fd(c[i].server, 1) == 1, "sslasync_set_fd_callbacks");
        TLSD_CHECK(SSL_set_async_callback(c[i].server, adapter_cb) == 1, "set callback");
        TLSD_CHECK(SSL_set_async_callback_arg(c[i].server, &c[i]) == 1, "set arg");
    }
    /* The first callback ends the poller: its handshake is finished by
     * polling, as after any lost wake-up (the SSL itself is fine). */
    TLSD_CHECK(tlsd_run_until_paused(&c[0]) == 1, "no pause");
    tlsd_wait_set(&adapter_calls, "the adapter calls back");
    c[0].paused = 0;
    tlsd_handshake(&c[0]);
    /* A later pause is called back by the poller's replacement (waited for
     * alone: the driver would also poll the engine's fd). */
    TLSD_CHECK(tlsd_run_until_paused(&c[1]) == 1, "no pause");
    tlsd_wait_notes(&c[1], 1);
    c[1].paused = 0;
    tlsd_handshake(&c[1]);
    TLSD_CHECK(atomic_load(&c[1].notes) == 1, "after the poller thread ended: %u callbacks",
               atomic_load(&c[1].notes));
    for (i = 0; i < 2; i++)
        tlsd_conn_free(&c[i]);
    tlsd_style(SIMACCEL_STYLE_CALLBACK, 0, 0);
    tlsd_watchdog(NULL, 0);
    tlsd_say("pthread_exit inside an fd adapter callback: a new poller delivered the next pause");
}

int main(void)
{
    SSL_CTX *sctx;
    enum how h;

    tlsd_begin("thread_exit", TLSD_SHIM_ONLY);
    sctx = tlsd_server_ctx("ec", 0);
    /* Engine callbacks exist on 3.x only; on 1.1.1 every callback is the
     * adapter's. */
    if (!TLSD_OPENSSL_111 && !tlsd_fd_style())
        for (h = EXIT; h < NHOW; h++)
            one(sctx, h);
    poller(sctx);
    SSL_CTX_free(sctx);
    return tlsd_end();
}
