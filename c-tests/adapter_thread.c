/*
 * The fd adapter's poller thread has attributes of its own (shim only), not
 * those of the thread whose pause first started it: an event loop pinned to
 * one CPU and running SCHED_FIFO must not make the poller run pinned and
 * real-time. The first armed pause here comes from a thread pinned to one
 * CPU (when there are several) and, where permitted, SCHED_FIFO; the
 * callback, on the poller thread, checks SCHED_OTHER, the process's CPU set
 * and nice value as they were at start, and every signal blocked.
 */
#include "adapter_util.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>

static cpu_set_t initial;
static int initial_nice;
static atomic_int checked, policy_seen, cpus_ok, nice_seen, signals_blocked;

static int thread_cb(SSL *s, void *arg)
{
    tlsd_conn *c = arg;
    cpu_set_t now;
    sigset_t mask;

    (void)s;
    atomic_store(&policy_seen, sched_getscheduler(0));
    CPU_ZERO(&now);
    atomic_store(&cpus_ok, sched_getaffinity(0, sizeof(now), &now) == 0 && CPU_EQUAL(&now, &initial));
    errno = 0;
    atomic_store(&nice_seen, getpriority(PRIO_PROCESS, 0));
    pthread_sigmask(SIG_BLOCK, NULL, &mask);
    atomic_store(&signals_blocked, sigismember(&mask, SIGINT) && sigismember(&mask, SIGTERM)
                                       && sigismember(&mask, SIGUSR1));
    atomic_store(&checked, 1);
    tlsd_note(c);
    return 1;
}

int main(void)
{
    SSL_CTX *sctx;
    tlsd_conn c;
    cpu_set_t one;
    struct sched_param fifo = { .sched_priority = 1 };
    int (*set_fd)(SSL *, int);
    int pinned = 0, realtime = 0;

    tlsd_begin("adapter_thread", TLSD_SHIM_ONLY);
    TLSD_CHECK(sched_getaffinity(0, sizeof(initial), &initial) == 0, "sched_getaffinity");
    errno = 0;
    initial_nice = getpriority(PRIO_PROCESS, 0);
    sctx = tlsd_server_ctx("ec", 0);
    tlsd_style(SIMACCEL_STYLE_FD, 0, 0);
    tlsd_conn_init(&c, sctx, NULL);
    *(void **)&set_fd = dlsym(RTLD_DEFAULT, "sslasync_set_fd_callbacks");
    TLSD_CHECK(set_fd != NULL && set_fd(c.server, 1) == 1, "sslasync_set_fd_callbacks");
    SSL_set_async_callback(c.server, thread_cb);
    SSL_set_async_callback_arg(c.server, &c);

    /* This thread pauses first: pinned, and real-time where allowed. */
    if (CPU_COUNT(&initial) > 1) {
        CPU_ZERO(&one);
        for (int i = 0; i < CPU_SETSIZE; i++)
            if (CPU_ISSET(i, &initial)) {
                CPU_SET(i, &one);
                break;
            }
        pinned = sched_setaffinity(0, sizeof(one), &one) == 0;
    }
    realtime = sched_setscheduler(0, SCHED_FIFO, &fifo) == 0;
    tlsd_handshake(&c);
    if (realtime) {
        struct sched_param normal = { .sched_priority = 0 };

        sched_setscheduler(0, SCHED_OTHER, &normal);
    }
    if (pinned)
        sched_setaffinity(0, sizeof(initial), &initial);
    TLSD_CHECK(atomic_load(&checked), "the adapter never called back");
    TLSD_CHECK(atomic_load(&policy_seen) == SCHED_OTHER, "the poller runs policy %d",
               atomic_load(&policy_seen));
    TLSD_CHECK(atomic_load(&cpus_ok), "the poller's CPU set is not the process's initial one");
    TLSD_CHECK(atomic_load(&nice_seen) == initial_nice, "the poller's nice value is %d, not %d",
               atomic_load(&nice_seen), initial_nice);
    TLSD_CHECK(atomic_load(&signals_blocked), "the poller does not block signals");
    fprintf(stderr, "adapter_thread: the first arm came from a thread %s and %s\n",
            pinned ? "pinned to one CPU" : "not pinned (one CPU)",
            realtime ? "SCHED_FIFO" : "not real-time (not permitted)");
    tlsd_say("the poller thread runs SCHED_OTHER at the process's initial CPU set and nice "
             "value, signals blocked, whatever the thread that started it");
    tlsd_conn_free(&c);
    tlsd_style(SIMACCEL_STYLE_CALLBACK, 0, 0);
    SSL_CTX_free(sctx);
    return tlsd_end();
}
