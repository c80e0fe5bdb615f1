/*
 * fork() with the fd adapter (shim only; TLSD_STYLE=fd
 * SSLASYNC_FD_CALLBACKS=1). The parent's poller thread does not survive
 * fork(): a child starts its own at its first arm. The parent runs a
 * handshake through the adapter (its poller runs), arms a pause P with the
 * device held, forks 4 children and then lets the device complete P.
 * Each child does 25 paused handshakes: every one called back once, on a
 * thread of the child named sslasync-fd, and its adapter counters grow by
 * 25 arms and 25 deliveries; P, armed in the parent, is never called back
 * in a child. The parent gets P's callback once and handshakes afterwards.
 */
#include "adapter_util.h"

#include <errno.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define WORKERS 4
#define HANDSHAKES 25

static pid_t parent_pid;
static atomic_int p_calls_parent, p_calls_child, p_bad_thread;

static int p_cb(SSL *s, void *arg)
{
    (void)s;
    if (getpid() == parent_pid)
        atomic_fetch_add(&p_calls_parent, 1);
    else
        atomic_fetch_add(&p_calls_child, 1);
    if (!ad_on_fd_thread())
        atomic_fetch_add(&p_bad_thread, 1);
    tlsd_note(arg);
    return 1;
}

static long long now_ms(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void handshakes(SSL_CTX *sctx, int n, const char *who)
{
    ad_stats before = ad_stats_now(), d;
    long long deadline;
    int i;

    for (i = 0; i < n; i++) {
        tlsd_conn c;

        tlsd_conn_init(&c, sctx, NULL);
        SSL_set_async_callback_arg(c.server, &c);
        tlsd_handshake(&c);
        TLSD_CHECK(c.want_async >= 1 && c.paused_status == ASYNC_STATUS_OK,
                   "%s handshake %d: not armed (status %d)", who, i, c.paused_status);
        TLSD_CHECK(atomic_load(&c.notes) == 1 && c.woke_by_callback == 1
                       && c.cb_ssl == c.server && c.cb_on_adapter_thread
                       && !c.cb_same_thread && c.cb_status == ASYNC_STATUS_OK,
                   "%s handshake %d: callbacks %u, adapter thread %d, status %d", who, i,
                   atomic_load(&c.notes), c.cb_on_adapter_thread, c.cb_status);
        tlsd_conn_free(&c);
    }
    /* Deltas only: in a child the parent's armed P stays counted as armed.
     * A delivery is counted around its callback: bounded wait. */
    deadline = now_ms() + tlsd_timeout_ms();
    for (;;) {
        struct timespec ts = { 0, 200000 };

        d = ad_delta(ad_stats_now(), before);
        if (d.deliveries >= (uint64_t)n || now_ms() >= deadline)
            break;
        nanosleep(&ts, NULL);
    }
    TLSD_CHECK(d.arms == (uint64_t)n && d.deliveries == (uint64_t)n && d.drops == 0
                   && d.unavailable == 0,
               "%s: arms %llu deliveries %llu drops %llu unavailable %llu (want %d)", who,
               (unsigned long long)d.arms, (unsigned long long)d.deliveries,
               (unsigned long long)d.drops, (unsigned long long)d.unavailable, n);
}

int main(void)
{
    pid_t pids[WORKERS];
    SSL_CTX *sctx;
    tlsd_conn p;
    long long deadline;
    int i, left = WORKERS;

    tlsd_begin("adapter_fork", TLSD_SHIM_ONLY);
    TLSD_CHECK(tlsd_fd_adapter(), "run with TLSD_STYLE=fd SSLASYNC_FD_CALLBACKS=1");
    parent_pid = getpid();
    tlsd_style(SIMACCEL_STYLE_FD, 50, 0);
    sctx = tlsd_server_ctx("ec", 0);
    SSL_CTX_set_async_callback(sctx, tlsd_cb);
    (void)tlsd_client_ctx();

    handshakes(sctx, 1, "parent before fork");
    tlsd_say("parent: one handshake through the adapter (its poller runs)");

    tlsd_conn_init(&p, sctx, NULL);
    SSL_set_async_callback(p.server, p_cb);
    SSL_set_async_callback_arg(p.server, &p);
    simaccel_hold(1);
    TLSD_CHECK(tlsd_run_until_paused(&p) == 1 && p.paused_status == ASYNC_STATUS_OK,
               "P not armed (status %d)", p.paused_status);

    fflush(NULL);
    for (i = 0; i < WORKERS; i++) {
        pids[i] = fork();
        TLSD_CHECK(pids[i] >= 0, "fork: %s", strerror(errno));
        if (pids[i] == 0) {
            tlsd_after_fork_child();
            handshakes(sctx, HANDSHAKES, "child");
            TLSD_CHECK(atomic_load(&p_calls_child) == 0,
                       "child: the parent's armed pause was called back in the child");
            _exit(0);
        }
    }
    /* P completes in the parent while the children run. */
    simaccel_hold(0);
    deadline = now_ms() + tlsd_timeout_ms();
    while (left > 0) {
        int status = 0;
        pid_t r = waitpid(-1, &status, WNOHANG);

        if (r == 0) {
            struct timespec ts = { 0, 1000000 };

            if (now_ms() >= deadline) {
                for (i = 0; i < WORKERS; i++)
                    kill(pids[i], SIGKILL);
                TLSD_CHECK(0, "%d of %d children did not finish within %u ms", left, WORKERS,
                           tlsd_timeout_ms());
            }
            nanosleep(&ts, NULL);
            continue;
        }
        TLSD_CHECK(r > 0, "waitpid: %s", strerror(errno));
        TLSD_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "a child failed (%s %d)",
                   WIFEXITED(status) ? "exit" : "signal",
                   WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
        left--;
    }
    tlsd_say("%d children: %d handshakes each, every callback on the child's own "
             "sslasync-fd thread; the parent's armed pause never called back there",
             WORKERS, HANDSHAKES);

    tlsd_handshake(&p);
    TLSD_CHECK(atomic_load(&p_calls_parent) == 1 && atomic_load(&p_bad_thread) == 0,
               "P: %d callbacks in the parent, bad thread %d", atomic_load(&p_calls_parent),
               atomic_load(&p_bad_thread));
    tlsd_conn_free(&p);
    tlsd_say("parent: the pause armed before fork() called back once");
    handshakes(sctx, 5, "parent after fork");
    (void)ad_settled("parent");
    tlsd_say("parent afterwards: 5 handshakes through the adapter; arms == deliveries + drops");
    SSL_CTX_free(sctx);
    return tlsd_end();
}
