/*
 * The nginx model of fork(): the master process sets the callback on its
 * SSL_CTX and has no connections yet; it forks workers, and each worker
 * runs its own async handshakes, paused on the accelerator (restarted in
 * the child, as an engine's poller would be), whose callbacks must be
 * delivered in that worker: right SSL*, right arg, from the device thread,
 * with status OK. The master is still usable afterwards.
 */
#define _GNU_SOURCE
#include "tlsdrive.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WORKERS 4
#define HANDSHAKES 25

static void handshakes(SSL_CTX *sctx, const char *who)
{
    int i;

    for (i = 0; i < HANDSHAKES; i++) {
        tlsd_conn c;
        simaccel_counters d;

        tlsd_conn_init(&c, sctx, NULL);
        SSL_set_async_callback_arg(c.server, &c);
        tlsd_counters_mark();
        tlsd_handshake(&c);
        d = tlsd_counters_delta();
        TLSD_CHECK(d.pauses == 1 && tlsd_device_notified(&d, 1) && atomic_load(&c.notes) == 1
                       && c.woke_by_callback == 1,
                   "%s handshake %d: pauses %llu, device callbacks %llu, delivered %u",
                   who, i, (unsigned long long)d.pauses, (unsigned long long)d.callbacks,
                   atomic_load(&c.notes));
        TLSD_CHECK(c.cb_ssl == c.server && tlsd_cb_on_notifier(&c) && c.cb_status_ret == 1
                       && c.cb_status == ASYNC_STATUS_OK,
                   "%s handshake %d: callback saw ssl ok %d, notifier thread %d, status %d/%d",
                   who, i, c.cb_ssl == c.server, tlsd_cb_on_notifier(&c), c.cb_status_ret,
                   c.cb_status);
        tlsd_conn_free(&c);
    }
}

static long long now_ms(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

int main(void)
{
    pid_t pids[WORKERS];
    SSL_CTX *sctx;
    long long deadline;
    int i, left = WORKERS;

    tlsd_begin("fork_nginx", 0);
    tlsd_style(SIMACCEL_STYLE_CALLBACK, 50, 0);
    sctx = tlsd_server_ctx("ec", 0);
    SSL_CTX_set_async_callback(sctx, tlsd_cb);
    (void)tlsd_client_ctx();

    fflush(NULL);
    for (i = 0; i < WORKERS; i++) {
        pids[i] = fork();
        TLSD_CHECK(pids[i] >= 0, "fork: %s", strerror(errno));
        if (pids[i] == 0) {
            tlsd_after_fork_child();
            handshakes(sctx, "worker");
            _exit(0);
        }
    }
    deadline = now_ms() + tlsd_timeout_ms();
    while (left > 0) {
        int status = 0;
        pid_t r = waitpid(-1, &status, WNOHANG);

        if (r == 0) {
            struct timespec ts = { 0, 1000000 };

            if (now_ms() >= deadline) {
                for (i = 0; i < WORKERS; i++)
                    kill(pids[i], SIGKILL);
                TLSD_CHECK(0, "%d of %d workers did not finish within %u ms", left, WORKERS,
                           tlsd_timeout_ms());
            }
            nanosleep(&ts, NULL);
            continue;
        }
        TLSD_CHECK(r > 0, "waitpid: %s", strerror(errno));
        TLSD_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "a worker failed (%s %d)",
                   WIFEXITED(status) ? "exit" : "signal",
                   WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
        left--;
    }
    tlsd_say("%d workers forked after SSL_CTX_set_async_callback: %d handshakes each, "
             "every callback delivered in the worker", WORKERS, HANDSHAKES);
    handshakes(sctx, "master");
    tlsd_say("the master afterwards: %d handshakes, callbacks delivered", HANDSHAKES);
    SSL_CTX_free(sctx);
    return tlsd_end();
}
