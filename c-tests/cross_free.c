/*
 * Callbacks on several engine threads that free and clear each other's
 * SSLs (shim only) — a TLS proxy closing the peer connection from a
 * completion callback. Nothing in the shim may wait for another thread's
 * callback: natively these programs run to completion, so must they with
 * the shim (a watchdog fails a phase that hangs).
 *
 *  1. pairs: SSLs A and B complete at the same time on two engine threads
 *     (the test's threads complete the device's operations, as QAT's own
 *     threads call back); once both callbacks run, A's frees (clears) B and
 *     B's frees (clears) A;
 *  2. a ring of four: each callback frees (clears) the next SSL's;
 *  3. a storm: four engine threads, SSLs paused on the device, every
 *     callback frees, clears, re-sets the callback or the arg of random
 *     other SSLs while the main thread refills the pool (STORM_OPS
 *     operations in all, 100000 by default).
 *
 * What the shim guarantees, checked throughout:
 *  - no callback starts after SSL_free(s) or a clear of s returned: an
 *    engine thread reads the clock before it completes an operation, and a
 *    callback whose delivery began after the call returned is a violation;
 *  - a callback's SSL* stays valid until the callback returns, even when
 *    SSL_free(s) returned meanwhile (the shim frees it when the callback
 *    returns): the callback reads s at its end, and s must not have been
 *    freed yet (ASan would also catch the read);
 *  - exactly one callback per completed submission, the rest counted as
 *    dropped by the shim (SSLASYNC_STATS).
 */
#define _GNU_SOURCE
#include "tlsdrive.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ENGINES 4

static atomic_llong gclock = 1;
static long long tick(void)
{
    return atomic_fetch_add(&gclock, 1);
}

static atomic_uint violations;
static atomic_flag reported = ATOMIC_FLAG_INIT;

static void violation(const char *fmt, ...) TLSD_PRINTF(1, 2);
static void violation(const char *fmt, ...)
{
    va_list ap;

    atomic_fetch_add(&violations, 1);
    if (atomic_flag_test_and_set(&reported))
        return;
    va_start(ap, fmt);
    fprintf(stderr, "VIOLATION: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* One SSL object: never freed during the test (late callbacks read it). */
typedef struct rec {
    tlsd_conn c;
    atomic_int really_freed;    /* OpenSSL freed the SSL (its ex_data) */
    atomic_llong free_ret;      /* clock when SSL_free(server) returned */
    atomic_llong clear_ret;     /* clock when a clear returned */
    atomic_int callbacks;       /* delivered for its one submission */
    atomic_int running;         /* its callback is running */
    struct rec *peer;           /* pairs and rings: the SSL its callback acts on */
    struct rec *next;           /* arena */
} rec;

static pthread_mutex_t arena_mu = PTHREAD_MUTEX_INITIALIZER;
static rec *arena;

static rec *rec_new(SSL_CTX *sctx, SSL_async_callback_fn cb)
{
    rec *r = calloc(1, sizeof(*r));

    TLSD_CHECK(r != NULL, "calloc");
    tlsd_conn_init(&r->c, sctx, NULL);
    tlsd_watch_free(r->c.server, &r->really_freed);
    TLSD_CHECK(SSL_set_async_callback(r->c.server, cb) == 1, "set callback");
    TLSD_CHECK(SSL_set_async_callback_arg(r->c.server, r) == 1, "set arg");
    TLSD_CHECK(tlsd_run_until_paused(&r->c) == 1, "no pause");
    pthread_mutex_lock(&arena_mu);
    r->next = arena;
    arena = r;
    pthread_mutex_unlock(&arena_mu);
    return r;
}

/* The engine thread's clock before the completion now being delivered. */
static __thread long long began;

/* What every callback checks first. */
static void arrived(rec *r, SSL *s)
{
    long long f = atomic_load(&r->free_ret), c = atomic_load(&r->clear_ret);

    if (f != 0 && f < began)
        violation("a callback started after SSL_free of its SSL returned");
    if (c != 0 && c < began)
        violation("a callback started after a clear of its SSL returned");
    if (s != r->c.server)
        violation("a callback got another SSL*");
    if (atomic_fetch_add(&r->callbacks, 1) != 0)
        violation("a second callback for one submission");
    atomic_store(&r->running, 1);
}

/* And last: its SSL is still there (not freed under it). */
static void leaving(rec *r, SSL *s)
{
    if (atomic_load(&r->really_freed))
        violation("an SSL was freed while its callback ran");
    else if (SSL_get_app_data(s) != &r->c)
        violation("a running callback's SSL* no longer reads as its SSL");
    atomic_store(&r->running, 0);
}

static void *engine_main(void *arg)
{
    atomic_int *stop = arg;

    while (!atomic_load(stop)) {
        began = tick();
        if (!simaccel_complete_one())
            usleep(20);
    }
    return NULL;
}

static pthread_t engines[ENGINES];
static atomic_int engines_stop;

static void engines_start(void)
{
    atomic_store(&engines_stop, 0);
    for (int i = 0; i < ENGINES; i++)
        TLSD_CHECK(pthread_create(&engines[i], NULL, engine_main, &engines_stop) == 0,
                   "pthread_create");
}

static void engines_stop_all(void)
{
    atomic_store(&engines_stop, 1);
    for (int i = 0; i < ENGINES; i++)
        pthread_join(engines[i], NULL);
}

/* ------------------------------------------------------- pairs and rings */

static int group;               /* SSLs in the current pair or ring */
static atomic_int group_started;
static int group_frees;         /* 1: free the peer, 0: clear it */

static int peer_cb(SSL *s, void *arg)
{
    rec *r = arg;
    long long deadline = tlsd_now_ns() + (long long)tlsd_timeout_ms() * 1000000LL;

    arrived(r, s);
    /* Every callback of the group is running before any acts. */
    atomic_fetch_add(&group_started, 1);
    while (atomic_load(&group_started) < group)
        TLSD_CHECK(tlsd_now_ns() < deadline, "only %d of %d callbacks ran at once",
                   atomic_load(&group_started), group);
    if (group_frees) {
        SSL_free(r->peer->c.server);
        atomic_store(&r->peer->free_ret, tick());
    } else {
        TLSD_CHECK(SSL_set_async_callback(r->peer->c.server, NULL) == 1, "clear");
        atomic_store(&r->peer->clear_ret, tick());
    }
    leaving(r, s);
    return 1;
}

static void peers(SSL_CTX *sctx, int n, int frees)
{
    rec *r[ENGINES];
    char phase[96];
    int i;

    snprintf(phase, sizeof(phase), "%d callbacks each %s the next one's SSL", n,
             frees ? "freeing" : "clearing");
    tlsd_watchdog(phase, 0);
    group = n;
    group_frees = frees;
    atomic_store(&group_started, 0);
    simaccel_hold(1);
    for (i = 0; i < n; i++)
        r[i] = rec_new(sctx, peer_cb);
    for (i = 0; i < n; i++)
        r[i]->peer = r[(i + 1) % n];
    TLSD_CHECK(simaccel_wait_in_flight((uint64_t)n, tlsd_timeout_ms()), "not submitted");
    engines_start();
    TLSD_CHECK(simaccel_wait_idle(tlsd_timeout_ms()), "%s: the device did not finish", phase);
    engines_stop_all();
    for (i = 0; i < n; i++) {
        TLSD_CHECK(atomic_load(&r[i]->callbacks) == 1, "%s: SSL %d got %d callbacks", phase,
                   i, atomic_load(&r[i]->callbacks));
        if (frees) {
            TLSD_CHECK(atomic_load(&r[i]->really_freed) == 1,
                       "%s: SSL %d not freed after its callback returned", phase, i);
            SSL_free(r[i]->c.client);
        } else {
            /* Completed and cleared: the handshake finishes by re-driving. */
            r[i]->c.paused = 0;
            tlsd_handshake(&r[i]->c);
            tlsd_conn_free(&r[i]->c);
        }
    }
    simaccel_hold(0);
    tlsd_watchdog(NULL, 0);
    tlsd_say("%s: no deadlock%s", phase,
             frees ? ", each SSL freed once its own callback returned" : "");
}

/* ---------------------------------------------------------------- storm */

#define POOL 48
enum { EMPTY, PAUSED, BUSY, FREED, CLEARED };

typedef struct slot {
    atomic_int state;
    rec *r;
} slot;

static slot pool[POOL];
static atomic_llong storm_ops, frees_in_cb, clears_in_cb;
static __thread unsigned long long rng;

static unsigned below(unsigned n)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (unsigned)((rng >> 33) % n);
}

static int storm_cb(SSL *s, void *arg);

/* A callback acts on another pool SSL it could take (never waits for it). */
static void act_on_other(rec *self)
{
    slot *o = &pool[below(POOL)];
    int expect = PAUSED;
    rec *t;

    if (!atomic_compare_exchange_strong(&o->state, &expect, BUSY))
        return;
    t = o->r;
    if (t == self) {
        atomic_store(&o->state, PAUSED);
        return;
    }
    atomic_fetch_add(&storm_ops, 1);
    switch (below(4)) {
    case 0:
        SSL_free(t->c.server);
        atomic_store(&t->free_ret, tick());
        atomic_fetch_add(&frees_in_cb, 1);
        atomic_store(&o->state, FREED);
        return;
    case 1:
        TLSD_CHECK(SSL_set_async_callback(t->c.server, NULL) == 1, "clear");
        atomic_store(&t->clear_ret, tick());
        atomic_fetch_add(&clears_in_cb, 1);
        atomic_store(&o->state, CLEARED);
        return;
    case 2:
        TLSD_CHECK(SSL_set_async_callback(t->c.server, storm_cb) == 1, "re-set callback");
        break;
    default:
        TLSD_CHECK(SSL_set_async_callback_arg(t->c.server, t) == 1, "set arg");
        break;
    }
    atomic_store(&o->state, PAUSED);
}

static int storm_cb(SSL *s, void *arg)
{
    rec *r = arg;

    arrived(r, s);
    if (rng == 0)
        rng = (unsigned long long)(uintptr_t)&rng | 1;
    for (int i = 0; i < 3; i++)
        act_on_other(r);
    leaving(r, s);
    atomic_fetch_add(&storm_ops, 1);
    return 1;
}

/* The main thread keeps the pool full of paused SSLs and retires the ones
 * that are done with. */
static void refill(SSL_CTX *sctx, long long target, const char *phase)
{
    long long rearmed = 0;

    while (atomic_load(&storm_ops) < target) {
        int progress = 0;

        /* The watchdog fires when the storm stops making progress, however
         * slowly a loaded machine runs it. */
        if (atomic_load(&storm_ops) - rearmed >= 2000) {
            rearmed = atomic_load(&storm_ops);
            tlsd_watchdog(phase, 0);
        }

        for (int i = 0; i < POOL; i++) {
            slot *p = &pool[i];
            int st = atomic_load(&p->state), expect = st;
            rec *r = p->r;

            if (st == EMPTY) {
                p->r = rec_new(sctx, storm_cb);
                atomic_store(&p->state, PAUSED);
                atomic_fetch_add(&storm_ops, 1);
                progress = 1;
                continue;
            }
            if (st == PAUSED && atomic_load(&r->callbacks) == 0)
                continue; /* not completed yet */
            if (st == BUSY || !atomic_compare_exchange_strong(&p->state, &expect, BUSY))
                continue;
            /* Freed by a callback: its client is left. Cleared, or called
             * back: the paused server too (its job leaks, as natively). */
            if (st != FREED) {
                SSL_free(r->c.server);
                atomic_store(&r->free_ret, tick());
            }
            SSL_free(r->c.client);
            atomic_store(&p->state, EMPTY);
            progress = 1;
        }
        if (!progress)
            usleep(100);
    }
}

static void storm(SSL_CTX *sctx)
{
    tlsd_stats_get_fn stats = tlsd_shim_stats_get();
    sslasync_stats st0, st1;
    simaccel_counters d;
    rec *before = arena;
    const char *env = getenv("STORM_OPS");
    long long target = env != NULL ? atoll(env) : 100000;
    unsigned long long callbacks = 0;
    rec *r;

    const char *phase = "a storm of callbacks freeing and clearing each other's SSLs";

    tlsd_watchdog(phase, 0);
    TLSD_CHECK(stats(&st0, sizeof(st0)) == 1, "SSLASYNC_STATS is off");
    simaccel_hold(1);
    tlsd_counters_mark();
    engines_start();
    refill(sctx, target, phase);
    /* Done: every pool SSL is freed; the device finishes what is queued. */
    for (int i = 0; i < POOL; i++) {
        slot *p = &pool[i];
        int expect;

        for (;;) {
            expect = atomic_load(&p->state);
            if (expect != BUSY && atomic_compare_exchange_strong(&p->state, &expect, BUSY))
                break;
            usleep(100);
        }
        if (expect == EMPTY)
            continue;
        if (expect != FREED) {
            SSL_free(p->r->c.server);
            atomic_store(&p->r->free_ret, tick());
        }
        SSL_free(p->r->c.client);
    }
    TLSD_CHECK(simaccel_wait_idle(tlsd_timeout_ms()), "the device did not finish");
    engines_stop_all();
    simaccel_hold(0);
    d = tlsd_counters_delta();
    TLSD_CHECK(stats(&st1, sizeof(st1)) == 1, "stats");
    for (r = arena; r != before; r = r->next) {
        callbacks += (unsigned)atomic_load(&r->callbacks);
        TLSD_CHECK(atomic_load(&r->really_freed) == 1, "an SSL was never freed");
    }
    fprintf(stderr, "cross_free: storm of %lld operations: %llu completions, %llu callbacks, "
            "%llu dropped; %lld frees and %lld clears from callbacks, %llu frees deferred\n",
            atomic_load(&storm_ops), (unsigned long long)d.completions, callbacks,
            (unsigned long long)(st1.callbacks_dropped - st0.callbacks_dropped),
            atomic_load(&frees_in_cb), atomic_load(&clears_in_cb),
            (unsigned long long)(st1.frees_deferred - st0.frees_deferred));
    TLSD_CHECK(d.completions == callbacks + (st1.callbacks_dropped - st0.callbacks_dropped),
               "%llu completions but %llu callbacks and %llu dropped",
               (unsigned long long)d.completions, callbacks,
               (unsigned long long)(st1.callbacks_dropped - st0.callbacks_dropped));
    TLSD_CHECK(atomic_load(&frees_in_cb) > 0 && atomic_load(&clears_in_cb) > 0,
               "no free or clear from a callback");
    tlsd_watchdog(NULL, 0);
    tlsd_say("storm of at least %lld operations on %d engine threads: no deadlock, one callback "
             "or one drop per completion", target, ENGINES);
}

int main(int argc, char **argv)
{
    SSL_CTX *sctx;
    rec *r;

    (void)argc;
    tlsd_reexec_with_stats(argv);
    tlsd_begin("cross_free", TLSD_SHIM_ONLY);
    if (TLSD_OPENSSL_111 || tlsd_fd_style()) {
        /* Engine threads calling back exist on 3.x only. */
        printf("SKIP cross_free: no engine callbacks with an fd-only accelerator\n");
        return 77;
    }
    sctx = tlsd_server_ctx("ec", 0);
    peers(sctx, 2, 1);
    peers(sctx, 2, 0);
    peers(sctx, 4, 1);
    peers(sctx, 4, 0);
    storm(sctx);
    TLSD_CHECK(atomic_load(&violations) == 0, "%u violations (the first is printed above)",
               atomic_load(&violations));
    SSL_CTX_free(sctx);
    while ((r = arena) != NULL) {
        arena = r->next;
        free(r);
    }
    return tlsd_end();
}
