/*
 * Stress (shim only): 8 threads each run 10,000 server SSLs (STRESS_SSLS
 * overrides the count per thread) through a real paused handshake, with the
 * callback on the shared CTX and each SSL's own arg. Each server reads the
 * same recorded ClientHello, so no client runs: the server's key exchange
 * and its signature (the offloaded operation, which pauses the job) are
 * real, the client's share of the crypto is saved. The device thread
 * completes them QAT style (callback on the device thread, after a device
 * latency), while every fourth SSL is freed right after it paused, i.e.
 * with its operation normally still in flight on the device.
 *
 * It proves exact counts:
 *   - every live SSL's operation is notified exactly once, with its own SSL*
 *     and arg, and the re-driven job completes it (the server then waits
 *     for the client's next flight);
 *   - a freed SSL gets no callback after SSL_free returned (one delivered
 *     before that is allowed: the device may win the race);
 *   - the shim's counters (SSLASYNC_STATS=1; the test re-executes itself
 *     with it, as stats.c does) agree with the application's and the
 *     device's: one pause with status OK per SSL, callbacks delivered ==
 *     callbacks the application saw, delivered + dropped == device
 *     completions through the trampoline, dropped == completions of freed
 *     SSLs that the application did not see, one latency sample per
 *     delivered callback.
 */
#include "tlsdrive.h"
#include "sslasync.h"

#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define THREADS 8
#define BATCH 32          /* connections a thread has open at once */
#define DOOMED_EVERY 4    /* every 4th SSL is freed while paused */
#define LATENCY_US 100


struct worker;

typedef struct sconn {
    SSL *server;
    struct worker *w;
    atomic_uint notes;       /* callbacks this SSL received */
    atomic_int bad;          /* a callback with another SSL* */
    unsigned notes_at_free;  /* notes when SSL_free(server) had returned */
    int doomed;
} sconn;

typedef struct worker {
    int id;
    unsigned n;
    int efd;                 /* written by the callbacks of this thread's SSLs */
    sconn *conns;            /* never freed during the run: late callbacks may read them */
    uint64_t doomed, doomed_seen_before_free, live;
} worker;

static SSL_CTX *sctx;
static unsigned char client_hello[4096];
static size_t client_hello_len;
static atomic_uint_fast64_t app_callbacks;

static long long now_ms(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int on_done(SSL *s, void *arg)
{
    sconn *c = arg;
    uint64_t one = 1;

    if (c->server != s)
        atomic_store(&c->bad, 1);
    atomic_fetch_add(&c->notes, 1);
    atomic_fetch_add(&app_callbacks, 1);
    if (write(c->w->efd, &one, sizeof(one)) != (ssize_t)sizeof(one))
        abort(); /* an eventfd write cannot fail short of a bug */
    return 1;
}

/* Bounded wait for c's callback, on this thread's eventfd. */
static void wait_note(worker *w, sconn *c)
{
    long long deadline = now_ms() + tlsd_timeout_ms();

    while (atomic_load(&c->notes) == 0) {
        struct pollfd p = { w->efd, POLLIN, 0 };
        long long left = deadline - now_ms();
        uint64_t v;

        TLSD_CHECK(left > 0, "thread %d: no callback for a paused SSL", w->id);
        if (poll(&p, 1, (int)left) > 0)
            TLSD_CHECK(read(w->efd, &v, sizeof(v)) == (ssize_t)sizeof(v) || errno == EAGAIN,
                       "eventfd read: %s", strerror(errno));
    }
}

/* One server call: 1 when it paused on the accelerator (status OK), 0 when
 * it wants the client's next flight. */
static int server_call(worker *w, sconn *c)
{
    int r = SSL_do_handshake(c->server), e = SSL_get_error(c->server, r), st = -1;

    if (e == SSL_ERROR_WANT_ASYNC) {
        TLSD_CHECK(SSL_get_async_status(c->server, &st) == 1 && st == ASYNC_STATUS_OK,
                   "thread %d: status %d after WANT_ASYNC", w->id, st);
        return 1;
    }
    TLSD_CHECK(e == SSL_ERROR_WANT_READ, "thread %d: server SSL_do_handshake: error %d",
               w->id, e);
    return 0;
}

/* The ClientHello of a real client, recorded once. */
static void record_client_hello(void)
{
    SSL *cl = SSL_new(tlsd_client_ctx());
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    int n;

    TLSD_CHECK(cl != NULL && rb != NULL && wb != NULL, "client");
    SSL_set_bio(cl, rb, wb);
    SSL_set_connect_state(cl);
    TLSD_CHECK(SSL_do_handshake(cl) == -1, "client handshake step");
    n = BIO_read(wb, client_hello, (int)sizeof(client_hello));
    TLSD_CHECK(n > 0 && BIO_pending(wb) == 0, "ClientHello of %d bytes", n);
    client_hello_len = (size_t)n;
    SSL_free(cl);
}

static void conn_open(worker *w, sconn *c)
{
    BIO *rb = BIO_new_mem_buf(client_hello, (int)client_hello_len);
    BIO *wb = BIO_new(BIO_s_mem());

    c->w = w;
    c->server = SSL_new(sctx);
    TLSD_CHECK(c->server != NULL && rb != NULL && wb != NULL, "SSL_new/BIO_new");
    TLSD_CHECK(SSL_set_async_callback_arg(c->server, c) == 1, "SSL_set_async_callback_arg");
    /* After the ClientHello: "no data yet", not end of file. */
    BIO_set_mem_eof_return(rb, -1);
    SSL_set_bio(c->server, rb, wb);
    SSL_set_accept_state(c->server);
}

static void *worker_main(void *p)
{
    worker *w = p;

    for (unsigned base = 0; base < w->n; base += BATCH) {
        unsigned end = base + BATCH < w->n ? base + BATCH : w->n;

        for (unsigned i = base; i < end; i++) {
            sconn *c = &w->conns[i];

            conn_open(w, c);
            c->doomed = i % DOOMED_EVERY == DOOMED_EVERY - 1;
            TLSD_CHECK(server_call(w, c) == 1, "thread %d: SSL %u did not pause", w->id, i);
            if (c->doomed) {
                /* Freed with its operation (normally) still on the device. */
                SSL_free(c->server);
                c->notes_at_free = atomic_load(&c->notes);
                w->doomed++;
                w->doomed_seen_before_free += c->notes_at_free;
            }
        }
        for (unsigned i = base; i < end; i++) {
            sconn *c = &w->conns[i];

            if (c->doomed)
                continue;
            wait_note(w, c);
            /* The completed operation lets the job finish: no second pause. */
            TLSD_CHECK(server_call(w, c) == 0, "thread %d: SSL %u paused again", w->id, i);
            TLSD_CHECK(atomic_load(&c->notes) == 1, "thread %d: live SSL %u notified %u times",
                       w->id, i, atomic_load(&c->notes));
            SSL_free(c->server);
            w->live++;
        }
    }
    return NULL;
}

static uint64_t latency_total(const sslasync_stats *s)
{
    uint64_t n = 0;

    for (int i = 0; i < SSLASYNC_LATENCY_BUCKETS; i++)
        n += s->latency_us_log2[i];
    return n;
}

int main(int argc, char **argv)
{
    worker ws[THREADS];
    pthread_t th[THREADS];
    tlsd_stats_get_fn stats_get;
    sslasync_stats before, after;
    simaccel_counters d;
    const char *env = getenv("STRESS_SSLS");
    unsigned n = env != NULL && atoi(env) > 0 ? (unsigned)atoi(env) : 10000;
    uint64_t total, doomed = 0, seen_before_free = 0, live = 0, late = 0, bad = 0;
    uint64_t delivered, dropped;

    (void)argc;
    tlsd_reexec_with_stats(argv);
    tlsd_begin("stress", TLSD_SHIM_ONLY);
    stats_get = tlsd_shim_stats_get();
    total = (uint64_t)n * THREADS;
    printf("stress: %d threads x %u SSLs, every %dth freed while paused, device latency %d us\n",
           THREADS, n, DOOMED_EVERY, LATENCY_US);
    fflush(stdout);

    sctx = tlsd_server_ctx("ec", 0);
    SSL_CTX_set_async_callback(sctx, on_done);
    record_client_hello();
    tlsd_style(SIMACCEL_STYLE_CALLBACK, LATENCY_US, 0);
    tlsd_counters_mark();
    TLSD_CHECK(stats_get(&before, sizeof(before)) == 1, "SSLASYNC_STATS=1 but stats are off");

    for (int t = 0; t < THREADS; t++) {
        memset(&ws[t], 0, sizeof(ws[t]));
        ws[t].id = t;
        ws[t].n = n;
        ws[t].efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        ws[t].conns = calloc(n, sizeof(sconn));
        TLSD_CHECK(ws[t].efd >= 0 && ws[t].conns != NULL, "eventfd/calloc");
        TLSD_CHECK(pthread_create(&th[t], NULL, worker_main, &ws[t]) == 0, "pthread_create");
    }
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    /* Completions of freed SSLs may still be on the device. */
    TLSD_CHECK(simaccel_wait_idle(tlsd_timeout_ms()), "device did not go idle");

    for (int t = 0; t < THREADS; t++) {
        doomed += ws[t].doomed;
        seen_before_free += ws[t].doomed_seen_before_free;
        live += ws[t].live;
        for (unsigned i = 0; i < n; i++) {
            sconn *c = &ws[t].conns[i];

            bad += (uint64_t)atomic_load(&c->bad);
            if (c->doomed && atomic_load(&c->notes) != c->notes_at_free)
                late++;
        }
    }
    d = tlsd_counters_delta();
    TLSD_CHECK(stats_get(&after, sizeof(after)) == 1, "stats are off");
    delivered = after.callbacks_delivered - before.callbacks_delivered;
    /* A completion the engine calls back for after SSL_free is dropped by
     * the trampoline; a pause the fd adapter watched (OpenSSL 1.1.1) is let
     * go by SSL_free itself: either way the application is not told. */
    dropped = after.callbacks_dropped - before.callbacks_dropped
              + after.adapter_drops - before.adapter_drops;

    printf("stress: SSLs %llu: live %llu (operation completed), freed while paused %llu "
           "(%llu of them notified before SSL_free returned)\n", (unsigned long long)total,
           (unsigned long long)live, (unsigned long long)doomed,
           (unsigned long long)seen_before_free);
    printf("stress: device: pauses %llu, completions %llu, trampoline calls %llu\n",
           (unsigned long long)d.pauses, (unsigned long long)d.completions,
           (unsigned long long)d.callbacks);
    printf("stress: application callbacks %llu; shim: delivered %llu, dropped %llu, pauses "
           "%llu, status ok %llu\n", (unsigned long long)atomic_load(&app_callbacks),
           (unsigned long long)delivered, (unsigned long long)dropped,
           (unsigned long long)(after.pauses - before.pauses),
           (unsigned long long)(after.status_ok - before.status_ok));
    fflush(stdout);

    TLSD_CHECK(bad == 0, "%llu callbacks got another SSL* than their arg's",
               (unsigned long long)bad);
    TLSD_CHECK(late == 0, "%llu freed SSLs got a callback after SSL_free returned",
               (unsigned long long)late);
    TLSD_CHECK(live + doomed == total, "live %llu + freed %llu != %llu",
               (unsigned long long)live, (unsigned long long)doomed, (unsigned long long)total);
    /* One offloaded operation, one pause, one device completion per SSL
     * (a callback; on OpenSSL 1.1.1 an fd signal the shim's adapter turns
     * into the callback). */
    TLSD_CHECK(d.pauses == total && d.submissions == total && d.completions == total
                   && tlsd_device_notified(&d, total),
               "device: pauses %llu submissions %llu completions %llu callbacks %llu fds %llu",
               (unsigned long long)d.pauses, (unsigned long long)d.submissions,
               (unsigned long long)d.completions, (unsigned long long)d.callbacks,
               (unsigned long long)d.fd_signals);
    TLSD_CHECK(after.pauses - before.pauses == total
                   && after.status_ok - before.status_ok == total
                   && after.status_eagain == before.status_eagain
                   && after.status_err == before.status_err,
               "shim: pauses %llu, status ok %llu, want %llu each",
               (unsigned long long)(after.pauses - before.pauses),
               (unsigned long long)(after.status_ok - before.status_ok),
               (unsigned long long)total);
    TLSD_CHECK(delivered == atomic_load(&app_callbacks),
               "shim delivered %llu, application saw %llu", (unsigned long long)delivered,
               (unsigned long long)atomic_load(&app_callbacks));
    TLSD_CHECK(delivered == live + seen_before_free,
               "delivered %llu != live %llu + freed-but-seen-before %llu",
               (unsigned long long)delivered, (unsigned long long)live,
               (unsigned long long)seen_before_free);
    TLSD_CHECK(delivered + dropped == total, "delivered %llu + dropped %llu != %llu",
               (unsigned long long)delivered, (unsigned long long)dropped,
               (unsigned long long)total);
    TLSD_CHECK(dropped == doomed - seen_before_free, "dropped %llu, want %llu",
               (unsigned long long)dropped, (unsigned long long)(doomed - seen_before_free));
    TLSD_CHECK(latency_total(&after) - latency_total(&before) == delivered,
               "latency histogram counted %llu of %llu callbacks",
               (unsigned long long)(latency_total(&after) - latency_total(&before)),
               (unsigned long long)delivered);

    for (int t = 0; t < THREADS; t++) {
        close(ws[t].efd);
        free(ws[t].conns);
    }
    SSL_CTX_free(sctx);
    return tlsd_end();
}
