/*
 * Delivery vs SSL_free and clearing (shim only). Once SSL_free(s) or
 * SSL_set_async_callback(s, NULL) has returned, no callback of s starts;
 * neither call waits for a callback of s already running, and SSL_free
 * leaves the real free to that callback's end, so its SSL* stays valid
 * until it returns. A callback that clears or frees its own SSL (on the
 * device thread, or inline inside SSL_do_handshake) must not wait for
 * itself either.
 *
 * Phases:
 *  1. device thread, the callback clears its own SSL's callback;
 *  2. device thread, the callback frees its own SSL: freed once the
 *     callback has returned;
 *  3. inline (dasync style, same thread, inside the job): the callback
 *     clears itself;
 *     none of them may deadlock (a watchdog fails the test instead);
 *  4. the race: rounds of K SSLs paused on the device; the device is
 *     released and two threads at once SSL_free or clear each SSL, either
 *     the moment its callback is seen running or without waiting, and
 *     record the clock right after the call returns. The device records
 *     the clock just before it starts each delivery (simaccel's notify
 *     hook). A callback whose delivery began after the call returned is a
 *     violation; so is a callback that finds its SSL freed (the test's
 *     ex_data free function ran) at its end, after spinning up to a
 *     millisecond to widen the window. The callback reads its SSL* at its
 *     end (ASan would report a freed one).
 *  5. two references: each SSL has a second one (SSL_up_ref); while its
 *     callback runs, two threads drop one each at the same moment (both
 *     spin until the other arrives). Whichever is last, the SSL must stay
 *     until the callback returns: two SSL_free calls each seeing the other's
 *     reference still there would free it under the callback.
 */
#define _GNU_SOURCE
#include "tlsdrive.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define K 8            /* connections per round */
#define ROUNDS 100
/* How long the racing callback runs unless it sees its SSL gone first:
 * long enough that a thread that saw it start, even one descheduled for a
 * while on a loaded machine, frees or clears it while it still runs. */
#define SPIN_US 1000
#define FREERS 2

enum mode { FREE_WHEN_RUNNING, CLEAR_WHEN_RUNNING, FREE_AT_ONCE, CLEAR_AT_ONCE, NMODES };
static const char *const mode_name[NMODES] = {
    "SSL_free while the callback runs", "clear while the callback runs",
    "SSL_free right after the release", "clear right after the release",
};

typedef struct {
    tlsd_conn c;
    atomic_int running, done, really_freed;
    atomic_int arrived, left; /* phase 5: the two freers of the SSL */
    atomic_llong gone;   /* clock when the free or clear returned, 0 before */
    enum mode mode;
    int round, index;
} race_conn;

static atomic_llong gclock = 1;
/* The clock when the device began its current delivery (device thread). */
static __thread long long delivery_began;

static void on_notify(void)
{
    delivery_began = atomic_fetch_add(&gclock, 1);
}

static atomic_uint violations;
static atomic_flag first_taken = ATOMIC_FLAG_INIT;
static char first_violation[256];

static const char *phase_name = "";

static void phase(const char *name)
{
    phase_name = name != NULL ? name : "";
    tlsd_watchdog(name, 0);
}

static long long now_ns(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* ------------------------------------------------------------- phases 1-3 */
static atomic_uint self_done;

static int self_clear_cb(SSL *s, void *arg)
{
    race_conn *r = arg;

    TLSD_CHECK(SSL_set_async_callback(s, NULL) == 1, "self clear");
    atomic_store(&r->done, 1);
    atomic_fetch_add(&self_done, 1);
    return 1;
}

static int self_free_cb(SSL *s, void *arg)
{
    race_conn *r = arg;

    TLSD_CHECK(s == r->c.server, "callback got another SSL*");
    SSL_free(s);
    /* Left to this callback's end: s is still there. */
    TLSD_CHECK(!atomic_load(&r->really_freed), "SSL freed under its own callback");
    TLSD_CHECK(SSL_get_app_data(s) == &r->c, "the callback's SSL* no longer reads right");
    atomic_store(&r->done, 1);
    atomic_fetch_add(&self_done, 1);
    return 1;
}

static int inline_clear_cb(SSL *s, void *arg)
{
    race_conn *r = arg;

    TLSD_CHECK(tlsd_in_server_call(), "inline callback outside SSL_do_handshake");
    TLSD_CHECK(SSL_set_async_callback(s, NULL) == 1, "inline self clear");
    atomic_store(&r->done, 1);
    atomic_fetch_add(&self_done, 1);
    tlsd_note(&r->c);
    return 1;
}

static void wait_self_done(unsigned n, const char *what)
{
    long long deadline = now_ns() + (long long)tlsd_timeout_ms() * 1000000LL;

    while (atomic_load(&self_done) < n) {
        TLSD_CHECK(now_ns() < deadline, "%s: %u of %u callbacks returned (deadlock?)", what,
                   atomic_load(&self_done), n);
        sched_yield();
    }
}

/* K SSLs paused on the held device, their callback `cb`, arg the conn. */
static void pause_all(race_conn *rc, SSL_CTX *sctx, SSL_async_callback_fn cb)
{
    int i;

    simaccel_hold(1);
    for (i = 0; i < K; i++) {
        memset(&rc[i], 0, sizeof(rc[i]));
        tlsd_conn_init(&rc[i].c, sctx, NULL);
        tlsd_watch_free(rc[i].c.server, &rc[i].really_freed);
        TLSD_CHECK(SSL_set_async_callback(rc[i].c.server, cb) == 1, "set callback");
        TLSD_CHECK(SSL_set_async_callback_arg(rc[i].c.server, &rc[i]) == 1, "set arg");
        rc[i].index = i;
        TLSD_CHECK(tlsd_run_until_paused(&rc[i].c) == 1, "connection %d: no pause", i);
    }
    TLSD_CHECK(simaccel_wait_in_flight(K, tlsd_timeout_ms()), "not all %d submitted", K);
}

/* The operation is complete: resume the job and finish the handshake (the
 * completion's notification may have been dropped, hence no waiting). */
static void finish(race_conn *r)
{
    r->c.paused = 0;
    tlsd_handshake(&r->c);
    tlsd_conn_free(&r->c);
}

/* Waits until every server of rc is really freed (a free under a running
 * callback completes when it returns): rc is reused next. */
static void wait_all_freed(race_conn *rc, const char *what)
{
    for (int i = 0; i < K; i++)
        tlsd_wait_set(&rc[i].really_freed, what);
}

static void self_phases(SSL_CTX *sctx, race_conn *rc)
{
    int i;

    phase("device callback clears its own SSL");
    atomic_store(&self_done, 0);
    pause_all(rc, sctx, self_clear_cb);
    simaccel_hold(0);
    wait_self_done(K, phase_name);
    TLSD_CHECK(simaccel_wait_idle(tlsd_timeout_ms()), "%s: device did not finish", phase_name);
    for (i = 0; i < K; i++)
        finish(&rc[i]);
    wait_all_freed(rc, phase_name);
    tlsd_say("device thread: %d callbacks cleared their own SSL and returned", K);

    phase("device callback frees its own SSL");
    atomic_store(&self_done, 0);
    pause_all(rc, sctx, self_free_cb);
    simaccel_hold(0);
    wait_self_done(K, phase_name);
    TLSD_CHECK(simaccel_wait_idle(tlsd_timeout_ms()), "%s: device did not finish", phase_name);
    /* The callback freed the server (its paused job leaks, as natively)
     * when it returned. */
    wait_all_freed(rc, phase_name);
    for (i = 0; i < K; i++)
        SSL_free(rc[i].c.client);
    tlsd_say("device thread: %d callbacks freed their own SSL and returned; each SSL went when "
             "its callback returned", K);

    /* (OpenSSL 1.1.1 has no engine callback, so nothing runs inline.) */
    if (TLSD_OPENSSL_111)
        return;
    phase("inline callback clears itself");
    tlsd_style(SIMACCEL_STYLE_INLINE, 0, 0);
    atomic_store(&self_done, 0);
    for (i = 0; i < K; i++) {
        memset(&rc[i], 0, sizeof(rc[i]));
        tlsd_conn_init(&rc[i].c, sctx, NULL);
        SSL_set_async_callback(rc[i].c.server, inline_clear_cb);
        SSL_set_async_callback_arg(rc[i].c.server, &rc[i]);
        tlsd_handshake(&rc[i].c);
        TLSD_CHECK(rc[i].c.noted_before_return == 1, "connection %d: callback not inline", i);
        tlsd_conn_free(&rc[i].c);
    }
    wait_self_done(K, phase_name);
    tlsd_style(SIMACCEL_STYLE_CALLBACK, 0, 0);
    tlsd_say("inline: %d callbacks cleared themselves inside SSL_do_handshake", K);
}

/* ---------------------------------------------------------------- phase 4 */
static void violation(race_conn *r, const char *what)
{
    atomic_fetch_add(&violations, 1);
    if (!atomic_flag_test_and_set(&first_taken))
        snprintf(first_violation, sizeof(first_violation),
                 "round %d connection %d (%s): the callback %s", r->round, r->index,
                 mode_name[r->mode], what);
}

static int race_cb(SSL *s, void *arg)
{
    race_conn *r = arg;
    long long until, gone = atomic_load(&r->gone);

    if (gone != 0 && gone < delivery_began) {
        violation(r, "started after the call had returned");
        return 1;
    }
    atomic_store(&r->running, 1);
    until = now_ns() + SPIN_US * 1000LL;
    while (now_ns() < until && !atomic_load(&r->gone))
        ;
    /* Freed or not meanwhile, s is still there until this returns. */
    if (atomic_load(&r->really_freed))
        violation(r, "found its SSL freed while it ran");
    else if (SSL_get_app_data(s) != &r->c)
        violation(r, "found its SSL* no longer reading as its SSL");
    atomic_store(&r->running, 0);
    atomic_store(&r->done, 1);
    return 1;
}

static race_conn *round_conns;
static pthread_barrier_t round_start, round_end;
static atomic_int stop_freers;

static void act(race_conn *r)
{
    if (r->mode == FREE_WHEN_RUNNING || r->mode == FREE_AT_ONCE)
        tlsd_conn_free_server_only(&r->c);
    else
        SSL_set_async_callback(r->c.server, NULL);
    atomic_store(&r->gone, atomic_fetch_add(&gclock, 1));
}

static void *freer_main(void *argp)
{
    int me = (int)(intptr_t)argp, i;

    for (;;) {
        pthread_barrier_wait(&round_start);
        if (atomic_load(&stop_freers))
            return NULL;
        /* In FIFO order, the order the device completes them. */
        for (i = me; i < K; i += FREERS) {
            race_conn *r = &round_conns[i];

            if (r->mode == FREE_WHEN_RUNNING || r->mode == CLEAR_WHEN_RUNNING) {
                long long deadline = now_ns() + (long long)tlsd_timeout_ms() * 1000000LL;

                /* Never freed before, so its callback is delivered. */
                while (!atomic_load(&r->running) && !atomic_load(&r->done))
                    TLSD_CHECK(now_ns() < deadline, "round %d connection %d: callback "
                               "never ran", r->round, i);
            }
            act(r);
        }
        pthread_barrier_wait(&round_end);
    }
}

static void race_phase(SSL_CTX *sctx, race_conn *rc)
{
    pthread_t freers[FREERS];
    unsigned delivered = 0, tally[NMODES] = { 0 };
    int round, i;

    round_conns = rc;
    TLSD_CHECK(pthread_barrier_init(&round_start, NULL, FREERS + 1) == 0, "barrier");
    TLSD_CHECK(pthread_barrier_init(&round_end, NULL, FREERS + 1) == 0, "barrier");
    for (i = 0; i < FREERS; i++)
        TLSD_CHECK(pthread_create(&freers[i], NULL, freer_main, (void *)(intptr_t)i) == 0,
                   "pthread_create");
    for (round = 0; round < ROUNDS; round++) {
        phase("SSL_free and clear racing deliveries");
        pause_all(rc, sctx, race_cb);
        for (i = 0; i < K; i++) {
            rc[i].round = round;
            rc[i].mode = (enum mode)((round + i) % NMODES);
        }
        simaccel_hold(0);
        pthread_barrier_wait(&round_start);
        pthread_barrier_wait(&round_end);
        TLSD_CHECK(simaccel_wait_idle(tlsd_timeout_ms()), "round %d: device did not finish",
                   round);
        for (i = 0; i < K; i++) {
            race_conn *r = &rc[i];

            tally[r->mode]++;
            delivered += (unsigned)atomic_load(&r->done);
            if (r->mode == CLEAR_WHEN_RUNNING || r->mode == CLEAR_AT_ONCE)
                finish(r);
            else
                SSL_free(r->c.client); /* the server's paused job leaks, as natively */
        }
        /* The records are reused next round. */
        wait_all_freed(rc, "race");
    }
    atomic_store(&stop_freers, 1);
    pthread_barrier_wait(&round_start);
    for (i = 0; i < FREERS; i++)
        pthread_join(freers[i], NULL);
    pthread_barrier_destroy(&round_start);
    pthread_barrier_destroy(&round_end);
    phase(NULL);
    fprintf(stderr, "free_vs_delivery: %d rounds x %d SSLs, %u callbacks ran; per mode:"
            " %u %u %u %u\n", ROUNDS, K, delivered, tally[0], tally[1], tally[2], tally[3]);
    TLSD_CHECK(atomic_load(&violations) == 0,
               "%u callbacks started after SSL_free or a clear of their SSL had returned, or "
               "lost their SSL while running; first: %s", atomic_load(&violations),
               first_violation);
    tlsd_say("%d rounds x %d SSLs freed or cleared against their deliveries: no callback "
             "started after the call returned, none lost its SSL", ROUNDS, K);
}

/* ---------------------------------------------------------------- phase 5 */
#define SHARED_ROUNDS 25

static int shared_cb(SSL *s, void *arg)
{
    race_conn *r = arg;
    long long deadline = now_ns() + (long long)tlsd_timeout_ms() * 1000000LL;

    atomic_store(&r->running, 1);
    /* Until both references are dropped (sleeping: the freers need the
     * CPUs to meet). */
    while (!atomic_load(&r->gone) && now_ns() < deadline)
        usleep(20);
    if (atomic_load(&r->really_freed))
        violation(r, "found its SSL freed while it ran (both references dropped at once)");
    else if (SSL_get_app_data(s) != &r->c)
        violation(r, "found its SSL* no longer reading as its SSL");
    atomic_store(&r->done, 1);
    return 1;
}

static void *shared_freer_main(void *unused)
{
    (void)unused;
    for (;;) {
        pthread_barrier_wait(&round_start);
        if (atomic_load(&stop_freers))
            return NULL;
        for (int i = 0; i < K; i++) {
            race_conn *r = &round_conns[i];
            long long deadline = now_ns() + (long long)tlsd_timeout_ms() * 1000000LL;

            while (!atomic_load(&r->running))
                TLSD_CHECK(now_ns() < deadline, "connection %d: callback never ran", i);
            /* Meet the other freer, spinning, then both drop a reference. */
            atomic_fetch_add(&r->arrived, 1);
            while (atomic_load(&r->arrived) < 2)
                TLSD_CHECK(now_ns() < deadline, "connection %d: the other freer never came", i);
            SSL_free(r->c.server);
            if (atomic_fetch_add(&r->left, 1) == 1)
                atomic_store(&r->gone, atomic_fetch_add(&gclock, 1));
        }
        pthread_barrier_wait(&round_end);
    }
}

static void shared_phase(SSL_CTX *sctx, race_conn *rc)
{
    pthread_t freers[2];
    sslasync_stats st;
    int round, i;

    /* The shim must know where the reference count is (else it cannot
     * defer, and this phase would test nothing of the sort). */
    memset(&st, 0, sizeof(st));
    TLSD_CHECK(tlsd_shim_stats_get()(&st, sizeof(st)) >= 0 && st.free_deferral == 1,
               "the shim cannot defer SSL_free (free_deferral %llu)",
               (unsigned long long)st.free_deferral);
    round_conns = rc;
    atomic_store(&stop_freers, 0);
    TLSD_CHECK(pthread_barrier_init(&round_start, NULL, 3) == 0, "barrier");
    TLSD_CHECK(pthread_barrier_init(&round_end, NULL, 3) == 0, "barrier");
    for (i = 0; i < 2; i++)
        TLSD_CHECK(pthread_create(&freers[i], NULL, shared_freer_main, NULL) == 0,
                   "pthread_create");
    for (round = 0; round < SHARED_ROUNDS; round++) {
        phase("two references dropped at once under a running callback");
        pause_all(rc, sctx, shared_cb);
        for (i = 0; i < K; i++) {
            rc[i].round = round;
            rc[i].mode = FREE_WHEN_RUNNING;
            TLSD_CHECK(SSL_up_ref(rc[i].c.server) == 1, "SSL_up_ref");
        }
        simaccel_hold(0);
        pthread_barrier_wait(&round_start);
        pthread_barrier_wait(&round_end);
        TLSD_CHECK(simaccel_wait_idle(tlsd_timeout_ms()), "round %d: device did not finish",
                   round);
        for (i = 0; i < K; i++)
            SSL_free(rc[i].c.client); /* the server's paused job leaks, as natively */
        wait_all_freed(rc, "two references");
    }
    atomic_store(&stop_freers, 1);
    pthread_barrier_wait(&round_start);
    for (i = 0; i < 2; i++)
        pthread_join(freers[i], NULL);
    pthread_barrier_destroy(&round_start);
    pthread_barrier_destroy(&round_end);
    phase(NULL);
    TLSD_CHECK(atomic_load(&violations) == 0,
               "%u callbacks lost their SSL to two SSL_free calls at once; first: %s",
               atomic_load(&violations), first_violation);
    tlsd_say("%d rounds x %d SSLs with two references dropped at once under their running "
             "callback: each SSL went when its callback returned", SHARED_ROUNDS, K);
}

int main(void)
{
    SSL_CTX *sctx;
    race_conn *rc;

    tlsd_begin("free_vs_delivery", TLSD_SHIM_ONLY);
    simaccel_set_notify_hook(on_notify);
    tlsd_style(SIMACCEL_STYLE_CALLBACK, 0, 0);
    rc = calloc(K, sizeof(*rc));
    TLSD_CHECK(rc != NULL, "calloc");
    sctx = tlsd_server_ctx("ec", 0);
    self_phases(sctx, rc);
    race_phase(sctx, rc);
    shared_phase(sctx, rc);
    phase(NULL);
    free(rc);
    SSL_CTX_free(sctx);
    return tlsd_end();
}
