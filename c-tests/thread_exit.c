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
 *
 * And a cancellation pending when the shim does its own work, which reaches
 * cancellation points (a real SSL_free closes the SSL's socket; here an
 * ex_data free function of every SSL calls close()): it must not end the
 * thread inside the shim (a forced unwind through the shim's frames skips
 * its bookkeeping, or meets a panic boundary that aborts the process) but
 * at the thread's next cancellation point, the SSL freed:
 *  - SSL_free(s) on a thread whose cancellation is pending;
 *  - a callback that frees its own SSL (the real free runs after it
 *    returns, in the shim) and asks for its own thread's cancellation;
 *  - a callback on the fd adapter's thread asking for that thread's
 *    cancellation: it ends when the callback returns, a new one takes over.
 */
#define _GNU_SOURCE
#include "tlsdrive.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum how { EXIT, CANCEL, FREE_AND_CANCEL, NHOW };
static const char *const how_name[NHOW] = { "pthread_exit", "pthread_cancel",
                                            "SSL_free of its own SSL and a cancellation request" };

/* Every SSL's ex_data free reaches a cancellation point, as closing the
 * socket of a real connection does. */
static void cancellation_point_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx,
                                    long argl, void *argp)
{
    int fd = open("/dev/null", O_RDONLY);

    (void)parent, (void)ptr, (void)ad, (void)idx, (void)argl, (void)argp;
    if (fd >= 0)
        close(fd);
}

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
    case FREE_AND_CANCEL:
        /* The last reference: the real free is left to this callback's end,
         * where the shim runs it with the cancellation pending. */
        SSL_free(s);
        pthread_cancel(pthread_self());
        return 1;
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
    if (how == FREE_AND_CANCEL) {
        /* Still pending: the shim's work after the callback held it off. */
        pthread_testcancel();
        tlsd_fail(__FILE__, __LINE__, "engine_main", "%s: the thread was not cancelled",
                  how_name[how]);
    }
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
    void *ret;
    char phase[160];

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
    TLSD_CHECK(pthread_join(engine, &ret) == 0, "pthread_join");
    if (h != EXIT)
        TLSD_CHECK(ret == PTHREAD_CANCELED, "%s: the engine thread was not cancelled",
                   how_name[h]);
    if (h == FREE_AND_CANCEL) {
        /* Freed by the shim after the callback returned, before the
         * cancellation acted. */
        TLSD_CHECK(atomic_load(&freed) == 1, "%s: the SSL was not freed", how_name[h]);
        SSL_free(c.client);
        if (simaccel_in_flight() > 0)
            simaccel_abandon_one();
        simaccel_hold(0);
        tlsd_watchdog(NULL, 0);
        tlsd_say("%s inside the callback: the SSL was freed after it returned, the thread "
                 "cancelled after that", how_name[h]);
        return;
    }
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
static atomic_int blocker_in, blocker_release;

/* What each connection's adapter callback does (tlsd_conn.user). */
enum role { ROLE_EXIT, ROLE_BLOCK, ROLE_CANCEL, ROLE_PLAIN, NROLES };

static int adapter_cb(SSL *s, void *arg)
{
    tlsd_conn *c = arg;
    long long deadline = tlsd_now_ns() + (long long)tlsd_timeout_ms() * 1000000LL;

    (void)s;
    TLSD_CHECK(tlsd_on_adapter_thread(), "adapter callback on another thread");
    atomic_fetch_add(&adapter_calls, 1);
    switch ((enum role)(intptr_t)c->user) {
    case ROLE_EXIT:
        pthread_exit(NULL); /* ends the poller thread itself */
    case ROLE_BLOCK:
        /* Keeps the poller here until two more pauses are ready, so that
         * its next wait returns both in one batch. */
        atomic_store(&blocker_in, 1);
        while (!atomic_load(&blocker_release) && tlsd_now_ns() < deadline)
            usleep(1000);
        break;
    case ROLE_CANCEL:
        /* Acts when this returns: the other ready pause of the batch must
         * still be called back, by the poller that takes over. */
        tlsd_note(c);
        pthread_cancel(pthread_self());
        return 1;
    default:
        break;
    }
    tlsd_note(c);
    return 1;
}

/* Drives a connection whose pause the adapter called back to the end. */
static void finish_noted(tlsd_conn *c, const char *what)
{
    tlsd_wait_notes(c, 1);
    c->paused = 0;
    tlsd_handshake(c);
    TLSD_CHECK(atomic_load(&c->notes) == 1, "%s: %u callbacks", what, atomic_load(&c->notes));
}

static void poller(SSL_CTX *sctx)
{
    int (*set_fd)(SSL *, int) =
        (int (*)(SSL *, int))(uintptr_t)dlsym(RTLD_DEFAULT, "sslasync_set_fd_callbacks");
    tlsd_conn c[NROLES];
    simaccel_counters before, now;
    long long deadline;
    int i;

    TLSD_CHECK(set_fd != NULL, "no sslasync_set_fd_callbacks");
    tlsd_watchdog("pthread_exit and a cancellation in fd adapter callbacks", 0);
    tlsd_style(SIMACCEL_STYLE_FD, 0, 0);
    for (i = 0; i < NROLES; i++) {
        memset(&c[i], 0, sizeof(c[i]));
        tlsd_conn_init(&c[i], sctx, NULL);
        c[i].user = (void *)(intptr_t)i;
        TLSD_CHECK(set_fd(c[i].server, 1) == 1, "sslasync_set_fd_callbacks");
        TLSD_CHECK(SSL_set_async_callback(c[i].server, adapter_cb) == 1, "set callback");
        TLSD_CHECK(SSL_set_async_callback_arg(c[i].server, &c[i]) == 1, "set arg");
    }
    /* The first callback ends the poller: its handshake is finished by
     * polling, as after any lost wake-up (the SSL itself is fine). */
    TLSD_CHECK(tlsd_run_until_paused(&c[ROLE_EXIT]) == 1, "no pause");
    tlsd_wait_set(&adapter_calls, "the adapter calls back");
    c[ROLE_EXIT].paused = 0;
    tlsd_handshake(&c[ROLE_EXIT]);
    /* The poller that took over blocks in a callback while two more pauses
     * become ready; then one callback of that batch asks for its thread's
     * cancellation, and the other pause is called back all the same (by
     * the next poller). Callbacks are waited for alone: the driver would
     * also poll the engine's fd. */
    TLSD_CHECK(tlsd_run_until_paused(&c[ROLE_BLOCK]) == 1, "no pause");
    tlsd_wait_set(&blocker_in, "the blocking callback runs");
    simaccel_get_counters(&before);
    TLSD_CHECK(tlsd_run_until_paused(&c[ROLE_CANCEL]) == 1, "no pause");
    TLSD_CHECK(tlsd_run_until_paused(&c[ROLE_PLAIN]) == 1, "no pause");
    deadline = tlsd_now_ns() + (long long)tlsd_timeout_ms() * 1000000LL;
    do {
        TLSD_CHECK(tlsd_now_ns() < deadline, "the device did not complete both");
        usleep(1000);
        simaccel_get_counters(&now);
    } while (now.completions < before.completions + 2);
    atomic_store(&blocker_release, 1);
    finish_noted(&c[ROLE_BLOCK], "the blocking callback's pause");
    finish_noted(&c[ROLE_CANCEL], "the pause whose callback asked for cancellation");
    finish_noted(&c[ROLE_PLAIN], "the other pause of the batch");
    for (i = 0; i < NROLES; i++)
        tlsd_conn_free(&c[i]);
    tlsd_style(SIMACCEL_STYLE_CALLBACK, 0, 0);
    tlsd_watchdog(NULL, 0);
    tlsd_say("pthread_exit, then a cancellation request in a batch of two ready pauses, in fd "
             "adapter callbacks: a new poller delivered each next pause");
}

/* --------------------------------------- SSL_free with a cancellation pending */

static atomic_int free_returned;

static void *pending_free_main(void *arg)
{
    pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
    pthread_cancel(pthread_self());
    SSL_free(arg);
    atomic_store(&free_returned, 1);
    pthread_testcancel();
    return NULL;
}

static void pending_cancel_free(SSL_CTX *sctx)
{
    tlsd_conn c;
    pthread_t t;
    atomic_int freed;
    void *ret;

    tlsd_watchdog("SSL_free with a cancellation pending", 0);
    memset(&c, 0, sizeof(c));
    tlsd_conn_init(&c, sctx, NULL);
    tlsd_watch_free(c.server, &freed);
    TLSD_CHECK(SSL_set_async_callback(c.server, tlsd_cb) == 1, "set callback");
    TLSD_CHECK(SSL_set_async_callback_arg(c.server, &c) == 1, "set arg");
    tlsd_handshake(&c);
    TLSD_CHECK(pthread_create(&t, NULL, pending_free_main, c.server) == 0, "pthread_create");
    TLSD_CHECK(pthread_join(t, &ret) == 0, "pthread_join");
    TLSD_CHECK(ret == PTHREAD_CANCELED, "the freeing thread was not cancelled");
    TLSD_CHECK(atomic_load(&free_returned) == 1,
               "the cancellation acted inside SSL_free, not after it");
    TLSD_CHECK(atomic_load(&freed) == 1, "the SSL was not freed");
    SSL_free(c.client);
    tlsd_watchdog(NULL, 0);
    tlsd_say("SSL_free with a cancellation pending: the SSL freed, the thread cancelled at its "
             "next cancellation point");
}

int main(void)
{
    SSL_CTX *sctx;
    enum how h;

    tlsd_begin("thread_exit", TLSD_SHIM_ONLY);
    sctx = tlsd_server_ctx("ec", 0);
    TLSD_CHECK(SSL_get_ex_new_index(0, NULL, NULL, NULL, cancellation_point_free) >= 0,
               "ex_data index");
    pending_cancel_free(sctx);
    /* Engine callbacks exist on 3.x only; on 1.1.1 every callback is the
     * adapter's. */
    if (!TLSD_OPENSSL_111 && !tlsd_fd_style())
        for (h = EXIT; h < NHOW; h++)
            one(sctx, h);
    poller(sctx);
    SSL_CTX_free(sctx);
    return tlsd_end();
}
