/*
 * The fd adapter against everything that can end an armed pause first
 * (shim only; run with TLSD_STYLE=fd SSLASYNC_FD_CALLBACKS=1). The device
 * is the fd-only engine: it only signals its wait fd, and the shim's
 * poller thread ("sslasync-fd") turns the readable fd into the callback.
 *
 *  free:    SSL_free racing the fd becoming readable: once SSL_free has
 *           returned no callback starts, and one already under way keeps
 *           its SSL until it returns (the free waits for nothing);
 *  clear:   no callback starts after SSL_set_async_callback(s, NULL)
 *           returned;
 *  resume:  the application polls the fd too and resumes the job itself
 *           as soon as it is readable: no callback starts once the resumed
 *           job runs, and none runs twice;
 *  eagain:  a callback-, inline- or EAGAIN-style engine is never armed
 *           (status EAGAIN is seen, the re-drive works, no adapter callback);
 *  clear_reuse: SSL_clear and a new handshake on the same SSL: one
 *           adapter callback per pause, status OK while paused, UNSUPPORTED
 *           after;
 *  many:    256 SSLs paused at once (device held) get exactly one callback
 *           each, with their own SSL* and arg, on the adapter thread.
 *
 * "Starts" is when the poller takes the armed pause to deliver it; the
 * poller delivers one pause after the other, so the end of its previous
 * callback is a clock the start cannot precede. A callback whose previous
 * one on the poller ended after the free, clear or resume returned started
 * after it.
 *
 * After each phase the shim's counters must settle at arms == deliveries +
 * drops, with the deltas the application saw.
 *
 * ADAPTER_RACES_BREAK=1 shows that the checks can fail: the free, clear or
 * resume is skipped but the SSL marked as if it had returned, which is what
 * a shim that kept calling back would look like (the run must fail).
 */
#include "adapter_util.h"

#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

#define K 16        /* SSLs per round */
static int rounds = 40;   /* ADAPTER_RACES_ROUNDS */
#define MANY 256

typedef struct rconn {
    tlsd_conn c;          /* first: SSL_get_app_data gives the rconn */
    SSL *server;          /* as handed out; compared, never used once freed */
    atomic_llong gone;    /* clock when SSL_free / clear / resume returned */
    atomic_int resuming;  /* the application is resuming the job itself */
    atomic_llong resumed; /* ... clock when the resumed job ran */
    atomic_int running;   /* the callback is running */
    atomic_int calls;
    atomic_int really_freed;
} rconn;

static atomic_uint v_late, v_freed, v_twice, v_thread, v_ssl;
static atomic_llong gclock = 1;
/* On the poller thread: the clock when its previous callback ended. */
static __thread long long prev_end;

static long long tick(void)
{
    return atomic_fetch_add(&gclock, 1);
}
static atomic_uint spin;   /* callback length, to widen the windows */
static int breaking;       /* ADAPTER_RACES_BREAK=1 */

static int race_cb(SSL *s, void *arg)
{
    rconn *r = arg;
    unsigned i, n = atomic_load(&spin);
    long long gone = atomic_load(&r->gone), resumed = atomic_load(&r->resumed);

    atomic_store(&r->running, 1);
    if ((gone != 0 && gone < prev_end) || (resumed != 0 && resumed < prev_end))
        atomic_fetch_add(&v_late, 1);
    if (s != r->server)
        atomic_fetch_add(&v_ssl, 1);
    if (!ad_on_fd_thread())
        atomic_fetch_add(&v_thread, 1);
    if (atomic_fetch_add(&r->calls, 1) != 0)
        atomic_fetch_add(&v_twice, 1);
    for (i = 0; i < n; i++)
        sched_yield();
    tlsd_note(&r->c);
    /* Freed meanwhile or not, s is there until this returns. */
    if (atomic_load(&r->really_freed) || SSL_get_app_data(s) != &r->c)
        atomic_fetch_add(&v_freed, 1);
    atomic_store(&r->running, 0);
    prev_end = tick();
    return 1;
}

/* Inside the server's job: a resumed job marks itself. */
static void info_cb(const SSL *s, int where, int ret)
{
    rconn *r = SSL_get_app_data(s);

    (void)where;
    (void)ret;
    if (r != NULL && atomic_load(&r->resuming) && !atomic_load(&r->resumed))
        atomic_store(&r->resumed, tick());
}

static void check_violations(const char *phase)
{
    TLSD_CHECK(atomic_load(&v_late) == 0, "%s: %u callbacks started after SSL_free, a clear "
               "or the resumed job", phase, atomic_load(&v_late));
    TLSD_CHECK(atomic_load(&v_freed) == 0, "%s: %u callbacks lost their SSL while running",
               phase, atomic_load(&v_freed));
    TLSD_CHECK(atomic_load(&v_twice) == 0, "%s: %u second callbacks for one pause", phase,
               atomic_load(&v_twice));
    TLSD_CHECK(atomic_load(&v_thread) == 0, "%s: %u callbacks not on the sslasync-fd thread",
               phase, atomic_load(&v_thread));
    TLSD_CHECK(atomic_load(&v_ssl) == 0, "%s: %u callbacks with another SSL*", phase,
               atomic_load(&v_ssl));
}

static void rconn_init(rconn *r, SSL_CTX *sctx)
{
    memset(r, 0, sizeof(*r));
    tlsd_conn_init(&r->c, sctx, NULL);
    r->server = r->c.server;
    tlsd_watch_free(r->server, &r->really_freed);
    SSL_set_async_callback(r->server, race_cb);
    SSL_set_async_callback_arg(r->server, r);
    SSL_set_info_callback(r->server, info_cb);
}

/* Pauses r with the device held: armed (status OK), fd not yet readable. */
static void pause_armed(rconn *r, const char *phase)
{
    TLSD_CHECK(tlsd_run_until_paused(&r->c) == 1, "%s: no pause", phase);
    TLSD_CHECK(r->c.paused_status == ASYNC_STATUS_OK,
               "%s: fd-only pause not armed (status %d after WANT_ASYNC)", phase,
               r->c.paused_status);
}

enum ender { END_FREE, END_CLEAR, END_RESUME };

static void race_rounds(SSL_CTX *sctx, enum ender how, const char *phase)
{
    rconn *rs = calloc(K, sizeof(*rs));
    unsigned calls = 0, round;
    ad_stats before, d;
    int i;

    TLSD_CHECK(rs != NULL, "calloc");
    before = ad_settled(phase);
    for (round = 0; round < (unsigned)rounds; round++) {
        uint64_t done0;
        simaccel_counters cnt;

        atomic_store(&spin, round % 4 == 0 ? 0 : round % 4 * 20);
        simaccel_hold(1);
        for (i = 0; i < K; i++) {
            rconn_init(&rs[i], sctx);
            pause_armed(&rs[i], phase);
        }
        TLSD_CHECK(simaccel_wait_in_flight(K, tlsd_timeout_ms()), "%s: not submitted", phase);
        simaccel_get_counters(&cnt);
        done0 = cnt.completions;
        simaccel_hold(0);
        /* Alternate: sometimes end them as the fds turn readable, sometimes
         * after the device wrote them all (the poller then races us). */
        if (round % 2)
            TLSD_CHECK(simaccel_wait_completions(done0 + K, tlsd_timeout_ms()),
                       "%s: device did not complete", phase);
        for (i = (int)(round % 3 == 2 ? K - 1 : 0); i >= 0 && i < K;
             i += round % 3 == 2 ? -1 : 1) {
            rconn *r = &rs[i];

            if (breaking) {
                /* Marked as ended, not ended: the callbacks keep coming. */
                if (how == END_RESUME)
                    atomic_store(&r->resumed, tick());
                atomic_store(&r->gone, tick());
                continue;
            }
            switch (how) {
            case END_FREE:
                tlsd_conn_free(&r->c);
                break;
            case END_CLEAR:
                TLSD_CHECK(SSL_set_async_callback(r->server, NULL) == 1, "clear");
                break;
            case END_RESUME: {
                /* The application saw the fd too: resume at once. */
                OSSL_ASYNC_FD fd;
                size_t n = 1;
                struct pollfd p;

                TLSD_CHECK(SSL_get_all_async_fds(r->server, &fd, &n) == 1 && n == 1,
                           "%s: %zu fds", phase, n);
                p.fd = fd;
                p.events = POLLIN;
                TLSD_CHECK(poll(&p, 1, (int)tlsd_timeout_ms()) == 1, "%s: fd not readable",
                           phase);
                atomic_store(&r->resuming, 1);
                r->c.paused = 0;
                tlsd_handshake(&r->c);
                TLSD_CHECK(atomic_load(&r->resumed), "%s: resumed job not seen", phase);
                break;
            }
            }
            atomic_store(&r->gone, tick());
        }
        TLSD_CHECK(simaccel_wait_idle(tlsd_timeout_ms()), "%s: device not idle", phase);
        if (breaking) {
            for (i = 0; i < K; i++)
                tlsd_wait_notes(&rs[i].c, 1);
            check_violations(phase);
        }
        for (i = 0; i < K; i++) {
            rconn *r = &rs[i];

            if (how == END_CLEAR) {
                /* Nothing announces it any more: re-drive, finish, free. */
                r->c.paused = 0;
                tlsd_handshake(&r->c);
            }
            if (how != END_FREE)
                tlsd_conn_free(&r->c);
        }
        /* The records are reused next round: every SSL of this one must be
         * gone (a free under a running callback completes when it returns). */
        for (i = 0; i < K; i++) {
            if (!breaking)
                tlsd_wait_set(&rs[i].really_freed, "an SSL of the round freed");
            /* Counted once its SSL is gone: a callback that began before a
             * clear may still have been running (nothing waits for it). */
            calls += (unsigned)atomic_load(&rs[i].calls);
        }
        check_violations(phase);
    }
    d = ad_delta(ad_settled(phase), before);
    TLSD_CHECK(d.arms == (uint64_t)K * rounds && d.deliveries == calls
               && d.drops == d.arms - calls && d.unavailable == 0,
               "%s: adapter arms %llu deliveries %llu drops %llu unavailable %llu; "
               "callbacks seen %u of %d pauses", phase, (unsigned long long)d.arms,
               (unsigned long long)d.deliveries, (unsigned long long)d.drops,
               (unsigned long long)d.unavailable, calls, K * rounds);
    tlsd_say("%s: %d rounds of %d armed pauses ended by %s racing readiness: no callback "
             "after it returned, none twice, all on sslasync-fd; arms == deliveries + drops",
             phase, rounds, K,
             how == END_FREE ? "SSL_free" : how == END_CLEAR ? "a clear" : "the application's resume");
    fprintf(stderr, "%s: %u of %d pauses got their callback first\n", phase, calls,
            K * rounds);
    free(rs);
}

/* Engines that call back or set a status are never armed. */
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
static void not_armed(SSL_CTX *sctx)
{
    static const struct {
        simaccel_style style;
        unsigned every;
        int with_cb;
        const char *what;
    } cases[] = {
        { SIMACCEL_STYLE_EAGAIN, 1, 1, "EAGAIN engine, callback" },
        { SIMACCEL_STYLE_EAGAIN, 1, 0, "EAGAIN engine, no callback (status OK, fd)" },
        { SIMACCEL_STYLE_EAGAIN, 2, 1, "EAGAIN engine (every 2nd), callback" },
        { SIMACCEL_STYLE_INLINE, 0, 1, "inline engine, callback" },
    };
    size_t k;
    int h;

    for (k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        ad_stats before = ad_settled("eagain"), d;

        tlsd_style(cases[k].style, 50, cases[k].every);
        for (h = 0; h < 4; h++) {
            tlsd_conn c;
            simaccel_counters cd;

            tlsd_conn_init(&c, sctx, NULL);
            if (cases[k].with_cb) {
                SSL_set_async_callback(c.server, tlsd_cb);
                SSL_set_async_callback_arg(c.server, &c);
            }
            tlsd_counters_mark();
            tlsd_handshake(&c);
            cd = tlsd_counters_delta();
            if (cases[k].style == SIMACCEL_STYLE_EAGAIN)
                TLSD_CHECK(c.eagain_redrives == cd.eagains
                           && (cases[k].every != 1 || c.eagain_redrives == 1),
                           "%s: re-drives %u refusals %llu", cases[k].what, c.eagain_redrives,
                           (unsigned long long)cd.eagains);
            if (cases[k].with_cb) {
                TLSD_CHECK(atomic_load(&c.notes) == 1 && cd.callbacks == 1
                           && !c.cb_on_adapter_thread,
                           "%s: callbacks %u (engine %llu), on the adapter thread %d",
                           cases[k].what, atomic_load(&c.notes),
                           (unsigned long long)cd.callbacks, c.cb_on_adapter_thread);
            } else {
                TLSD_CHECK(atomic_load(&c.notes) == 0 && c.woke_by_fd == 1,
                           "%s: fd path", cases[k].what);
            }
            tlsd_conn_free(&c);
        }
        d = ad_delta(ad_settled("eagain"), before);
        TLSD_CHECK(d.arms == 0 && d.deliveries == 0 && d.drops == 0,
                   "%s: adapter arms %llu deliveries %llu", cases[k].what,
                   (unsigned long long)d.arms, (unsigned long long)d.deliveries);
        tlsd_say("eagain: %s: never armed, re-drive and completion as without the adapter",
                 cases[k].what);
    }
    tlsd_style(SIMACCEL_STYLE_FD, 0, 0);
}
#endif

static void clear_reuse(SSL_CTX *sctx)
{
    ad_stats before = ad_settled("clear_reuse"), d;
    tlsd_conn c;
    SSL *first;
    int n, st;

    tlsd_style(SIMACCEL_STYLE_FD, 50, 0);
    tlsd_conn_init(&c, sctx, NULL);
    first = c.server;
    SSL_set_async_callback(c.server, tlsd_cb);
    SSL_set_async_callback_arg(c.server, &c);
    for (n = 1; n <= 5; n++) {
        if (n > 1)
            tlsd_conn_reset(&c);
        simaccel_hold(1);
        TLSD_CHECK(tlsd_run_until_paused(&c) == 1, "clear_reuse %d: no pause", n);
        st = -1;
        TLSD_CHECK(SSL_get_async_status(c.server, &st) == 1 && st == ASYNC_STATUS_OK,
                   "clear_reuse %d: status while paused %d", n, st);
        TLSD_CHECK(atomic_load(&c.notes) == (unsigned)n - 1, "clear_reuse %d: early callback", n);
        simaccel_hold(0);
        tlsd_handshake(&c);
        TLSD_CHECK(atomic_load(&c.notes) == (unsigned)n && c.cb_ssl == first
                   && c.cb_on_adapter_thread && c.cb_status_ret == 1
                   && c.cb_status == ASYNC_STATUS_OK,
                   "clear_reuse %d: callbacks %u, adapter thread %d, status %d", n,
                   atomic_load(&c.notes), c.cb_on_adapter_thread, c.cb_status);
        st = -1;
        TLSD_CHECK(SSL_get_async_status(c.server, &st) == 1
                   && st == ASYNC_STATUS_UNSUPPORTED, "clear_reuse %d: status after %d", n, st);
    }
    TLSD_CHECK(c.server == first, "SSL object changed");
    tlsd_conn_free(&c);
    d = ad_delta(ad_settled("clear_reuse"), before);
    TLSD_CHECK(d.arms == 5 && d.deliveries == 5 && d.drops == 0,
               "clear_reuse: arms %llu deliveries %llu drops %llu",
               (unsigned long long)d.arms, (unsigned long long)d.deliveries,
               (unsigned long long)d.drops);
    tlsd_say("clear_reuse: 5 handshakes on one SSL, SSL_clear between: each armed once, one "
             "adapter callback each, status OK while paused, UNSUPPORTED after");
}

static void many(SSL_CTX *sctx)
{
    rconn *rs = calloc(MANY, sizeof(*rs));
    ad_stats before = ad_settled("many"), d;
    int i;

    TLSD_CHECK(rs != NULL, "calloc");
    atomic_store(&spin, 0);
    tlsd_style(SIMACCEL_STYLE_FD, 0, 0);
    simaccel_hold(1);
    for (i = 0; i < MANY; i++) {
        rconn_init(&rs[i], sctx);
        pause_armed(&rs[i], "many");
    }
    TLSD_CHECK(simaccel_wait_in_flight(MANY, tlsd_timeout_ms()), "many: in flight %llu",
               (unsigned long long)simaccel_in_flight());
    d = ad_delta(ad_stats_now(), before);
    TLSD_CHECK(d.arms == MANY && d.deliveries == 0, "many: %llu armed, %llu delivered while held",
               (unsigned long long)d.arms, (unsigned long long)d.deliveries);
    for (i = 0; i < MANY; i++)
        TLSD_CHECK(atomic_load(&rs[i].calls) == 0, "many: callback %d while held", i);
    simaccel_hold(0);
    for (i = 0; i < MANY; i++)
        tlsd_wait_notes(&rs[i].c, 1);
    for (i = 0; i < MANY; i++)
        tlsd_handshake(&rs[i].c);
    TLSD_CHECK(simaccel_wait_idle(tlsd_timeout_ms()), "many: device not idle");
    for (i = 0; i < MANY; i++) {
        TLSD_CHECK(atomic_load(&rs[i].calls) == 1, "many: connection %d: %d callbacks", i,
                   atomic_load(&rs[i].calls));
        tlsd_conn_free(&rs[i].c);
        atomic_store(&rs[i].gone, tick());
    }
    check_violations("many");
    d = ad_delta(ad_settled("many"), before);
    TLSD_CHECK(d.arms == MANY && d.deliveries == MANY && d.drops == 0,
               "many: arms %llu deliveries %llu drops %llu", (unsigned long long)d.arms,
               (unsigned long long)d.deliveries, (unsigned long long)d.drops);
    tlsd_say("many: %d SSLs paused at once, each armed, each exactly one callback "
             "(own SSL* and arg, sslasync-fd thread)", MANY);
    free(rs);
}

int main(int argc, char **argv)
{
    SSL_CTX *sctx;
    const char *only = argc > 1 ? argv[1] : NULL;

    tlsd_begin("adapter_races", TLSD_SHIM_ONLY);
    breaking = getenv("ADAPTER_RACES_BREAK") != NULL;
    if (getenv("ADAPTER_RACES_ROUNDS") != NULL && atoi(getenv("ADAPTER_RACES_ROUNDS")) > 0)
        rounds = atoi(getenv("ADAPTER_RACES_ROUNDS"));
    TLSD_CHECK(tlsd_fd_adapter(), "run with TLSD_STYLE=fd SSLASYNC_FD_CALLBACKS=1");
    tlsd_style(SIMACCEL_STYLE_FD, 0, 0);
    sctx = tlsd_server_ctx("ec", 0);

    if (only == NULL || strcmp(only, "free") == 0)
        race_rounds(sctx, END_FREE, "free");
    if (only == NULL || strcmp(only, "clear") == 0)
        race_rounds(sctx, END_CLEAR, "clear");
    if (only == NULL || strcmp(only, "resume") == 0)
        race_rounds(sctx, END_RESUME, "resume");
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    /* On OpenSSL 1.1.1 no engine can call back or report a status: every
     * style signals its fd, and every pause is the adapter's. */
    if (only == NULL || strcmp(only, "eagain") == 0)
        not_armed(sctx);
#endif
    if (only == NULL || strcmp(only, "clear_reuse") == 0)
        clear_reuse(sctx);
    if (only == NULL || strcmp(only, "many") == 0)
        many(sctx);

    SSL_CTX_free(sctx);
    return tlsd_end();
}
