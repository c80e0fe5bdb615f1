/*
 * fork() while other threads are inside the shim. Two threads hammer
 * operations that take the shim's locks: SSL_set_async_callback_arg and
 * SSL_set_async_callback on fresh SSLs (a per-SSL record is taken from the
 * free list), SSL_new from a CTX with a callback (likewise) and SSL_free
 * (records returned). The main thread forks hundreds of times, each time
 * while both hammers are in the middle of their setter loops. A lock held
 * by a hammer at the moment of fork() stays held forever in the child,
 * whose copy of that thread does not exist. Each child must still take and
 * return records (SSL_new from a CTX with a callback, SSL_set_async_callback
 * on another SSL, SSL_free), every fourth one also completes a real
 * handshake paused on the device with its callback delivered, and _exit(0)
 * within a bound; a child that does not is killed and the test fails (a
 * deadlock, not a slow machine: a child needs milliseconds).
 *
 * A third thread calls SSL_CTX_set_async_callback on SSL_CTXs made before
 * the shim initialised (fixture/ctorlib.c), each for the first time: the
 * shim gives such a CTX its record then, under a lock, and each child does
 * the same on a CTX of its own.
 *
 * OpenSSL 3.0 itself is not fork-safe in SSL_new and SSL_free: they take
 * its global ex_data lock (a write lock in 3.0), and a child forked while
 * another thread holds it deadlocks natively. So the forks land only in
 * the setter loops, where nothing but the shim locks: the hammers make
 * their SSLs before and free them after the fork, in lock step with the
 * main thread.
 */
#define _GNU_SOURCE
#include "tlsdrive.h"
#include "ctorlib.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
/* ASan's allocator ignores fork(), so the malloc-lock catch described at
 * ctor_hammer_main does not happen there, and each fork of an ASan process
 * costs far more: fewer rounds. */
#define FORKS 60
#else
#define FORKS 300
#endif
#define HAMMERS 2
#define BATCH 512
#define HANDSHAKE_EVERY 4

static SSL_CTX *cb_ctx, *plain_ctx;
static atomic_int stop;
/* The constructor's CTXs: the hammer takes them from the front, child n
 * uses the n-th from the back. */
static int ctor_next, ctor_limit;
static atomic_int in_fork;
/* Setter calls made in the current round, by all hammers. */
static atomic_uint progress;
static pthread_barrier_t made, forked, freed;

static int hammer_cb(SSL *s, void *arg)
{
    (void)s;
    (void)arg;
    return 1;
}

/* One round: make SSLs, wait for everyone, run the setters (the fork lands
 * here), free the SSLs, wait for everyone. */
static void *hammer_main(void *unused)
{
    SSL **b = calloc(BATCH, sizeof(*b));
    int i;

    (void)unused;
    TLSD_CHECK(b != NULL, "calloc");
    for (;;) {
        for (i = 0; i < BATCH; i++) {
            /* A quarter inherit the CTX's callback: a record taken in SSL_new. */
            b[i] = SSL_new(i % 4 == 0 ? cb_ctx : plain_ctx);
            TLSD_CHECK(b[i] != NULL, "SSL_new");
            /* The SSL's ex_data array now exists, so the setters below
             * allocate nothing: fork() holds malloc's locks, and a hammer
             * blocked in malloc would hold no shim lock. */
            SSL_set_app_data(b[i], b);
        }
        pthread_barrier_wait(&made);
        if (atomic_load(&stop))
            break;
        for (i = 0; i < BATCH; i++) {
            /* On a plain SSL the first of these takes a record. */
            TLSD_CHECK(SSL_set_async_callback_arg(b[i], b[i]) == 1, "set arg");
            TLSD_CHECK(SSL_set_async_callback(b[i], hammer_cb) == 1, "set callback");
            atomic_fetch_add(&progress, 1);
        }
        /* SSL_free takes OpenSSL's own ex_data lock: never during a fork. */
        pthread_barrier_wait(&forked);
        for (i = 0; i < BATCH; i++)
            SSL_free(b[i]);
        pthread_barrier_wait(&freed);
    }
    for (i = 0; i < BATCH; i++)
        SSL_free(b[i]);
    free(b);
    return NULL;
}

/* While the main thread is inside fork() (from its atfork prepare handler
 * on), a first SSL_CTX_set_async_callback on one constructor's CTX after
 * another. fork() takes malloc's locks before it copies the process, so a
 * thread that allocates while holding a shim lock is caught holding it. */
static void *ctor_hammer_main(void *unused)
{
    (void)unused;
    while (!atomic_load(&stop)) {
        while (atomic_load(&in_fork) && ctor_next < ctor_limit)
            TLSD_CHECK(SSL_CTX_set_async_callback(ctorlib_ctx(ctor_next++), hammer_cb) == 1,
                       "set callback on a constructor's CTX");
    }
    return NULL;
}

static void fork_prepare(void)
{
    atomic_store(&in_fork, 1);
}

static void fork_done(void)
{
    atomic_store(&in_fork, 0);
}

static long long now_ms(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Runs in the child: exits 0 on success, 1 (TLSD_CHECK) on failure. */
static void child(int n)
{
    SSL *s;

    tlsd_after_fork_child();
    /* A constructor's CTX of its own, set for the first time. */
    TLSD_CHECK(SSL_CTX_set_async_callback(ctorlib_ctx(ctorlib_count() - 1 - n), hammer_cb)
                   == 1, "child: set callback on a constructor's CTX");
    s = SSL_new(ctorlib_ctx(ctorlib_count() - 1 - n));
    TLSD_CHECK(s != NULL, "child: SSL_new");
    SSL_free(s);
    s = SSL_new(cb_ctx);
    TLSD_CHECK(s != NULL, "child: SSL_new");
    TLSD_CHECK(SSL_set_async_callback(s, hammer_cb) == 1, "child: set callback");
    SSL_free(s);
    s = SSL_new(plain_ctx);
    TLSD_CHECK(s != NULL, "child: SSL_new");
    TLSD_CHECK(SSL_set_async_callback(s, hammer_cb) == 1, "child: late callback");
    SSL_free(s);
    if (n % HANDSHAKE_EVERY == 0) {
        tlsd_conn c;
        simaccel_counters d;

        tlsd_conn_init(&c, plain_ctx, NULL);
        SSL_set_async_callback(c.server, tlsd_cb);
        SSL_set_async_callback_arg(c.server, &c);
        tlsd_counters_mark();
        tlsd_handshake(&c);
        d = tlsd_counters_delta();
        TLSD_CHECK(d.pauses == 1 && atomic_load(&c.notes) == 1 && c.woke_by_callback == 1
                       && c.cb_ssl == c.server && tlsd_cb_on_notifier(&c),
                   "child %d: pauses %llu, callbacks %u (woke by callback %u), on notifier %d",
                   n, (unsigned long long)d.pauses, atomic_load(&c.notes),
                   c.woke_by_callback, tlsd_cb_on_notifier(&c));
        tlsd_conn_free(&c);
    }
    _exit(0);
}

int main(void)
{
    pthread_t hammers[HAMMERS + 1];
    unsigned child_ms;
    int i, predate = ctorlib_ctxs_predate_shim();

    TLSD_CHECK(tlsd_begin("fork_safety", 0) == TLSD_NATIVE || predate,
               "the constructor's CTXs do not predate the shim's initialisation");
    ctor_limit = ctorlib_count() - FORKS;
    TLSD_CHECK(ctor_limit > 0, "too few constructor CTXs: %d", ctorlib_count());
    tlsd_style(SIMACCEL_STYLE_CALLBACK, 0, 0);
    cb_ctx = tlsd_server_ctx("ec", 0);
    plain_ctx = tlsd_server_ctx("ec", 0);
    SSL_CTX_set_async_callback(cb_ctx, hammer_cb);
    (void)tlsd_client_ctx(); /* made before any fork, shared by the children */
    /* A child needs milliseconds; this is far beyond any slow machine. */
    child_ms = tlsd_timeout_ms() / 2;

    TLSD_CHECK(pthread_atfork(fork_prepare, fork_done, fork_done) == 0, "pthread_atfork");
    TLSD_CHECK(pthread_barrier_init(&made, NULL, HAMMERS + 1) == 0, "barrier");
    TLSD_CHECK(pthread_barrier_init(&forked, NULL, HAMMERS + 1) == 0, "barrier");
    TLSD_CHECK(pthread_barrier_init(&freed, NULL, HAMMERS + 1) == 0, "barrier");
    for (i = 0; i < HAMMERS; i++)
        TLSD_CHECK(pthread_create(&hammers[i], NULL, hammer_main, NULL) == 0, "pthread_create");
    TLSD_CHECK(pthread_create(&hammers[HAMMERS], NULL, ctor_hammer_main, NULL) == 0,
               "pthread_create");
    for (i = 0; i < FORKS; i++) {
        long long deadline;
        int status = 0;
        pid_t pid, r;

        atomic_store(&progress, 0);
        pthread_barrier_wait(&made);
        /* Both hammers are now in their setter loops (BATCH calls each):
         * fork once they are well under way. */
        deadline = now_ms() + tlsd_timeout_ms();
        while (atomic_load(&progress) < BATCH / 4)
            TLSD_CHECK(now_ms() < deadline, "the hammer threads make no progress");
        fflush(NULL);
        pid = fork();
        if (pid == 0)
            child(i);
        pthread_barrier_wait(&forked);
        TLSD_CHECK(pid >= 0, "fork: %s", strerror(errno));
        deadline = now_ms() + child_ms;
        while ((r = waitpid(pid, &status, WNOHANG)) == 0 && now_ms() < deadline) {
            struct timespec ts = { 0, 200000 };

            nanosleep(&ts, NULL);
        }
        if (r == 0) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            TLSD_CHECK(0, "child %d of %d (forked while %d threads were taking per-SSL "
                       "and per-CTX records) did not finish within %u ms: deadlocked", i + 1,
                       FORKS, HAMMERS + 1, child_ms);
        }
        TLSD_CHECK(r == pid, "waitpid: %s", strerror(errno));
        TLSD_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                   "child %d of %d failed (%s %d)", i + 1, FORKS,
                   WIFEXITED(status) ? "exit" : "signal",
                   WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
        pthread_barrier_wait(&freed);
    }
    atomic_store(&stop, 1);
    pthread_barrier_wait(&made);
    for (i = 0; i <= HAMMERS; i++)
        pthread_join(hammers[i], NULL);
    pthread_barrier_destroy(&made);
    pthread_barrier_destroy(&forked);
    pthread_barrier_destroy(&freed);
    fprintf(stderr, "fork_safety: %d constructor CTXs set by the CTX hammer\n", ctor_next);
    tlsd_say("%d children forked while %d threads took per-SSL and per-CTX records: each "
             "worked, every %dth with a delivered callback", FORKS, HAMMERS + 1,
             HANDSHAKE_EVERY);
    SSL_CTX_free(cb_ctx);
    SSL_CTX_free(plain_ctx);
    return tlsd_end();
}
