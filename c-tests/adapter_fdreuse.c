/*
 * The engine closes its wait fd and the number is reused by the next
 * pause (shim only; TLSD_STYLE=fd SSLASYNC_FD_CALLBACKS=1). The adapter
 * watches its own duplicate, keyed by a token, so a completion signalled on
 * an old fd never calls back the SSL that now has that number:
 *
 *  freed:   A is armed on fd X, freed (its wait ctx closes X); B pauses
 *           and gets number X; A's operation completes first: B's callback
 *           comes once, only after B's own completion, A's never;
 *  per_op:  the engine opens a fresh fd per operation and closes it after
 *           the resume (simaccel_fd_per_op): A completes through X, B and
 *           then A again get number X, one callback each, after their own
 *           completion;
 *  resumed: A's fd X turns readable and the application resumes A itself
 *           (the engine then closes X); B gets number X: as above, and A
 *           gets no callback after its resume.
 *
 * "Only after its own completion": B's operation has a latency of 200 ms
 * after A's completes, and B's callback checks that the device has
 * completed B's operation (the device counts a completion before it
 * signals the fd).
 */
#include "adapter_util.h"

#include <poll.h>
#include <unistd.h>

typedef struct rconn {
    tlsd_conn c;
    atomic_int calls, gone, early, bad_thread, freed;
    uint64_t own_completion;  /* device completions once this op completed */
} rconn;

static int gated_cb(SSL *s, void *arg)
{
    rconn *r = arg;
    simaccel_counters now;

    (void)s;
    simaccel_get_counters(&now);
    if (atomic_load(&r->gone) || now.completions < r->own_completion)
        atomic_fetch_add(&r->early, 1);
    if (!ad_on_fd_thread())
        atomic_fetch_add(&r->bad_thread, 1);
    atomic_fetch_add(&r->calls, 1);
    tlsd_note(&r->c);
    return 1;
}

/* Frees r and waits until OpenSSL really freed it: an SSL freed while its
 * callback still runs on the poller thread goes (closing its wait fd) when
 * that returns, and the next phase counts on fd numbers. */
static void rfree(rconn *r)
{
    tlsd_conn_free(&r->c);
    tlsd_wait_set(&r->freed, "the SSL freed");
}

static void rinit(rconn *r, SSL_CTX *sctx)
{
    memset(r, 0, sizeof(*r));
    tlsd_conn_init(&r->c, sctx, NULL);
    tlsd_watch_free(r->c.server, &r->freed);
    SSL_set_async_callback(r->c.server, gated_cb);
    SSL_set_async_callback_arg(r->c.server, r);
    r->own_completion = UINT64_MAX;
}

/* Pauses r (armed); returns its one wait fd's number. Its operation is
 * the next the device completes after the `before` completions already
 * queued ahead of it. */
static int rpause(rconn *r, uint64_t ahead, const char *what)
{
    simaccel_counters now;
    OSSL_ASYNC_FD fd = -1;
    size_t n = 1;

    simaccel_get_counters(&now);
    r->own_completion = now.completions + ahead + 1;
    TLSD_CHECK(tlsd_run_until_paused(&r->c) == 1, "%s: no pause", what);
    TLSD_CHECK(r->c.paused_status == ASYNC_STATUS_OK, "%s: not armed (status %d)", what,
               r->c.paused_status);
    TLSD_CHECK(SSL_get_all_async_fds(r->c.server, &fd, &n) == 1 && n == 1, "%s: %zu fds",
               what, n);
    return fd;
}

static void rdone(rconn *r, const char *what)
{
    TLSD_CHECK(atomic_load(&r->early) == 0, "%s: callback before its own completion "
               "(or after its SSL was freed or resumed)", what);
    TLSD_CHECK(atomic_load(&r->bad_thread) == 0, "%s: callback not on sslasync-fd", what);
}

static void freed(SSL_CTX *sctx)
{
    rconn a, b;
    int x, y;

    tlsd_style(SIMACCEL_STYLE_FD, 0, 0);
    simaccel_hold(1);
    rinit(&a, sctx);
    x = rpause(&a, 0, "freed A");
    rfree(&a);
    atomic_store(&a.gone, 1);
    tlsd_style(SIMACCEL_STYLE_FD, 200000, 0);
    rinit(&b, sctx);
    y = rpause(&b, 1, "freed B");
    TLSD_CHECK(x == y, "freed: B's wait fd is %d, not the reused %d", y, x);
    simaccel_hold(0);
    tlsd_handshake(&b.c);
    TLSD_CHECK(simaccel_wait_idle(tlsd_timeout_ms()), "device not idle");
    rdone(&a, "freed A");
    rdone(&b, "freed B");
    TLSD_CHECK(atomic_load(&a.calls) == 0 && atomic_load(&b.calls) == 1,
               "freed: A %d callbacks, B %d", atomic_load(&a.calls), atomic_load(&b.calls));
    rfree(&b);
    tlsd_say("freed: A armed on an fd, freed, its number reused by B; A's completion "
             "first: B called back once, after its own; A never");
}

static void per_op(SSL_CTX *sctx)
{
    rconn a, b;
    int x, y, z;
    size_t n = 9;

    simaccel_fd_per_op(1);
    tlsd_style(SIMACCEL_STYLE_FD, 0, 0);
    rinit(&a, sctx);
    x = rpause(&a, 0, "per_op A");
    tlsd_handshake(&a.c);
    TLSD_CHECK(SSL_get_all_async_fds(a.c.server, NULL, &n) == 1 && n == 0,
               "per_op: the engine did not close its fd (%zu left)", n);
    tlsd_style(SIMACCEL_STYLE_FD, 200000, 0);
    rinit(&b, sctx);
    y = rpause(&b, 0, "per_op B");
    TLSD_CHECK(x == y, "per_op: B's wait fd is %d, not the reused %d", y, x);
    tlsd_handshake(&b.c);
    /* A again on the same SSL, after SSL_clear: its old number once more. */
    tlsd_conn_reset(&a.c);
    z = rpause(&a, 0, "per_op A again");
    TLSD_CHECK(z == x, "per_op: A's second wait fd is %d, not the reused %d", z, x);
    tlsd_handshake(&a.c);
    TLSD_CHECK(simaccel_wait_idle(tlsd_timeout_ms()), "device not idle");
    rdone(&a, "per_op A");
    rdone(&b, "per_op B");
    TLSD_CHECK(atomic_load(&a.calls) == 2 && atomic_load(&b.calls) == 1,
               "per_op: A %d callbacks (want 2), B %d", atomic_load(&a.calls),
               atomic_load(&b.calls));
    rfree(&a);
    rfree(&b);
    simaccel_fd_per_op(0);
    tlsd_say("per_op: a fresh fd per operation, closed by the engine: one number for "
             "three pauses of two SSLs, one callback each after its own completion");
}

static void resumed(SSL_CTX *sctx)
{
    rconn a, b;
    int x, y;
    struct pollfd p;

    simaccel_fd_per_op(1);
    tlsd_style(SIMACCEL_STYLE_FD, 0, 0);
    rinit(&a, sctx);
    x = rpause(&a, 0, "resumed A");
    p.fd = x;
    p.events = POLLIN;
    TLSD_CHECK(poll(&p, 1, (int)tlsd_timeout_ms()) == 1, "resumed: A's fd not readable");
    a.c.paused = 0;
    tlsd_handshake(&a.c);  /* the resume: the engine closes x */
    atomic_store(&a.gone, 1);
    tlsd_style(SIMACCEL_STYLE_FD, 200000, 0);
    rinit(&b, sctx);
    y = rpause(&b, 0, "resumed B");
    TLSD_CHECK(x == y, "resumed: B's wait fd is %d, not the reused %d", y, x);
    tlsd_handshake(&b.c);
    TLSD_CHECK(simaccel_wait_idle(tlsd_timeout_ms()), "device not idle");
    rdone(&a, "resumed A");
    rdone(&b, "resumed B");
    TLSD_CHECK(atomic_load(&a.calls) <= 1 && atomic_load(&b.calls) == 1,
               "resumed: A %d callbacks, B %d", atomic_load(&a.calls), atomic_load(&b.calls));
    rfree(&a);
    rfree(&b);
    simaccel_fd_per_op(0);
    tlsd_say("resumed: A resumed by the application on its readable fd, the engine closed "
             "it, B got the number: B called back once after its own completion, A not after "
             "its resume");
}

int main(void)
{
    SSL_CTX *sctx;
    ad_stats before, d;

    tlsd_begin("adapter_fdreuse", TLSD_SHIM_ONLY);
    TLSD_CHECK(tlsd_fd_adapter(), "run with TLSD_STYLE=fd SSLASYNC_FD_CALLBACKS=1");
    sctx = tlsd_server_ctx("ec", 0);
    before = ad_settled("start");
    freed(sctx);
    per_op(sctx);
    resumed(sctx);
    d = ad_delta(ad_settled("end"), before);
    TLSD_CHECK(d.arms == 7 && d.unavailable == 0 && d.deliveries >= 5 && d.deliveries <= 6,
               "arms %llu deliveries %llu drops %llu unavailable %llu",
               (unsigned long long)d.arms, (unsigned long long)d.deliveries,
               (unsigned long long)d.drops, (unsigned long long)d.unavailable);
    tlsd_say("adapter counters: 7 arms, each delivered or dropped");
    SSL_CTX_free(sctx);
    return tlsd_end();
}
