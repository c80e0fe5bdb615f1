/*
 * The adapter's poller cannot start, or the pause's fd cannot be
 * duplicated (shim only; TLSD_STYLE=fd SSLASYNC_FD_CALLBACKS=1): the pause
 * stays native (status UNSUPPORTED after WANT_ASYNC, no callback, the
 * handshake completes by polling the engine's wait fd), counted in
 * adapter_unavailable, nothing hangs, and the next pause tries again.
 *
 *  seccomp: a child installs a seccomp filter before its first pause that
 *           makes epoll_create1 and epoll_create fail with EMFILE (checked):
 *           3 paused handshakes, each native, 3 unavailable, no arm;
 *  nofile:  in this process, before its first pause, RLIMIT_NOFILE and
 *           filler fds leave exactly the two fds the engine needs: the
 *           shim can get none, the pause is native and unavailable; with
 *           the limit and the fds given back the next pause is armed and
 *           called back on sslasync-fd.
 */
#include "adapter_util.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void native_pause(SSL_CTX *sctx, const char *what)
{
    ad_stats before = ad_stats_now(), d;
    tlsd_conn c;
    int st = -1;

    tlsd_conn_init(&c, sctx, NULL);
    SSL_set_async_callback_arg(c.server, &c);
    TLSD_CHECK(tlsd_run_until_paused(&c) == 1, "%s: no pause", what);
    TLSD_CHECK(c.paused_status == ASYNC_STATUS_UNSUPPORTED,
               "%s: status %d after WANT_ASYNC (want UNSUPPORTED: not armed)", what,
               c.paused_status);
    TLSD_CHECK(SSL_get_async_status(c.server, &st) == 1 && st == ASYNC_STATUS_UNSUPPORTED,
               "%s: status %d", what, st);
    tlsd_handshake(&c);
    TLSD_CHECK(simaccel_wait_idle(tlsd_timeout_ms()), "%s: device busy", what);
    TLSD_CHECK(atomic_load(&c.notes) == 0 && c.woke_by_fd == 1 && c.max_async_fds == 1,
               "%s: callbacks %u, woke by fd %u, fds %u", what, atomic_load(&c.notes),
               c.woke_by_fd, c.max_async_fds);
    d = ad_delta(ad_stats_now(), before);
    TLSD_CHECK(d.arms == 0 && d.deliveries == 0 && d.unavailable == 1,
               "%s: arms %llu deliveries %llu unavailable %llu (want 0 0 1)", what,
               (unsigned long long)d.arms, (unsigned long long)d.deliveries,
               (unsigned long long)d.unavailable);
    tlsd_conn_free(&c);
}

static void armed_pause(SSL_CTX *sctx, const char *what)
{
    ad_stats before = ad_settled(what), d;
    tlsd_conn c;

    tlsd_conn_init(&c, sctx, NULL);
    SSL_set_async_callback_arg(c.server, &c);
    tlsd_handshake(&c);
    TLSD_CHECK(c.paused_status == ASYNC_STATUS_OK && atomic_load(&c.notes) == 1
                   && c.cb_on_adapter_thread,
               "%s: status %d, callbacks %u, adapter thread %d", what, c.paused_status,
               atomic_load(&c.notes), c.cb_on_adapter_thread);
    d = ad_delta(ad_settled(what), before);
    TLSD_CHECK(d.arms == 1 && d.deliveries == 1 && d.unavailable == 0,
               "%s: arms %llu deliveries %llu unavailable %llu", what,
               (unsigned long long)d.arms, (unsigned long long)d.deliveries,
               (unsigned long long)d.unavailable);
    tlsd_conn_free(&c);
}

static void deny_epoll(void)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_epoll_create1, 2, 0),
#ifdef __NR_epoll_create
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_epoll_create, 1, 0),
#else
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_epoll_create1, 1, 0),
#endif
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EMFILE & SECCOMP_RET_DATA)),
    };
    struct sock_fprog prog = { (unsigned short)(sizeof(f) / sizeof(f[0])), f };
    int e;

    TLSD_CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0, "no_new_privs: %s", strerror(errno));
    TLSD_CHECK(syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog)
                   == 0, "seccomp: %s", strerror(errno));
    e = epoll_create1(EPOLL_CLOEXEC);
    TLSD_CHECK(e < 0 && errno == EMFILE, "epoll_create1 still works under the filter (%d)", e);
}

static long long now_ms(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void seccomp_child(SSL_CTX *sctx)
{
    long long deadline;
    int status = 0;
    pid_t pid, r;

    fflush(NULL);
    pid = fork();
    TLSD_CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        int i;

        tlsd_after_fork_child();
        deny_epoll();
        for (i = 0; i < 3; i++)
            native_pause(sctx, "seccomp child");
        _exit(0);
    }
    deadline = now_ms() + tlsd_timeout_ms();
    while ((r = waitpid(pid, &status, WNOHANG)) == 0) {
        struct timespec ts = { 0, 1000000 };

        if (now_ms() >= deadline) {
            kill(pid, SIGKILL);
            TLSD_CHECK(0, "seccomp child hung");
        }
        nanosleep(&ts, NULL);
    }
    TLSD_CHECK(r == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
               "seccomp child failed (status 0x%x)", status);
    tlsd_say("seccomp: epoll_create1/epoll_create fail with EMFILE: 3 pauses native "
             "(UNSUPPORTED, wait fd, no callback), each counted unavailable");
}

/* Leaves exactly `free_slots` fd numbers obtainable; returns the fillers. */
static int fill_fds(struct rlimit *saved, int *fillers, int max, int free_slots)
{
    struct rlimit lim;
    int n = 0, hi = 0, fd, i;

    TLSD_CHECK(getrlimit(RLIMIT_NOFILE, saved) == 0, "getrlimit");
    for (fd = 0; fd < 4096; fd++)
        if (fcntl(fd, F_GETFD) >= 0)
            hi = fd;
    lim = *saved;
    lim.rlim_cur = (rlim_t)hi + 1 + 32;
    TLSD_CHECK(lim.rlim_cur <= saved->rlim_cur, "fd limit too low");
    TLSD_CHECK(setrlimit(RLIMIT_NOFILE, &lim) == 0, "setrlimit: %s", strerror(errno));
    while (n < max && (fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
        fillers[n++] = fd;
    TLSD_CHECK(n < max && errno == EMFILE, "could not fill the fd table (%d)", n);
    for (i = 0; i < free_slots; i++)
        close(fillers[--n]);
    return n;
}

static void nofile(SSL_CTX *sctx)
{
    struct rlimit saved;
    int fillers[4096], n, i;

    n = fill_fds(&saved, fillers, 4096, 2);
    native_pause(sctx, "no fd for the shim");
    for (i = 0; i < n; i++)
        close(fillers[i]);
    TLSD_CHECK(setrlimit(RLIMIT_NOFILE, &saved) == 0, "setrlimit: %s", strerror(errno));
    tlsd_say("nofile: only the engine's two fds obtainable: the pause is native, unavailable");
    armed_pause(sctx, "fds given back");
    armed_pause(sctx, "and again");
    tlsd_say("nofile: fds given back: the next pauses are armed and called back");
}

int main(void)
{
    SSL_CTX *sctx;

    tlsd_begin("adapter_nopoller", TLSD_SHIM_ONLY);
    TLSD_CHECK(tlsd_fd_adapter(), "run with TLSD_STYLE=fd SSLASYNC_FD_CALLBACKS=1");
    tlsd_style(SIMACCEL_STYLE_FD, 50, 0);
    sctx = tlsd_server_ctx("ec", 0);
    SSL_CTX_set_async_callback(sctx, tlsd_cb);
    (void)tlsd_client_ctx();
    /* Both before this process's first pause: no poller exists yet. */
    seccomp_child(sctx);
    nofile(sctx);
    SSL_CTX_free(sctx);
    return tlsd_end();
}
