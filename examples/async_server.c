/*
 * async_server.c - a reference asynchronous TLS server for OpenSSL's
 * async-completion callback API (SSL_CTX_set_async_callback & co.).
 *
 * WHAT IT SHOWS
 *
 *   A TLS server whose private-key operation (the CertificateVerify /
 *   ServerKeyExchange signature) is offloaded to an asynchronous crypto
 *   accelerator.  The accelerator here is "simaccel", a simulated device from
 *   the sslasync test fixture: it pauses the OpenSSL async job that runs the
 *   handshake and completes the operation later from its own device thread,
 *   just as Intel QAT does.  The server never blocks on the device: while a
 *   handshake is paused the event loop keeps serving every other connection.
 *
 *   There are two ways for the application to learn that a paused operation
 *   may be resumed, and the program implements both so they can be compared:
 *
 *   callback mode  SSL_CTX_set_async_callback() once on the SSL_CTX, and
 *                  SSL_set_async_callback_arg() per connection.  The device
 *                  calls the callback when it is done.  The callback pushes
 *                  the connection onto a thread-safe ready queue and wakes the
 *                  event loop through ONE eventfd shared by all connections.
 *                  No per-operation file descriptor exists at all.
 *
 *   fd mode        No callback.  The engine attaches a "wait fd" to the SSL's
 *                  ASYNC_WAIT_CTX; the application fetches it with
 *                  SSL_get_changed_async_fds() after SSL_ERROR_WANT_ASYNC and
 *                  polls it with epoll, as Intel's async-mode nginx does.
 *
 *   An engine that only signals wait fds (--style fd: afalg, OpenSSL 1.1.1
 *   builds of QAT) never calls back, so in callback mode the program falls
 *   back to its wait fds.  With --fd-callbacks the server CTX turns on the
 *   sslasync shim's fd adapter (sslasync_CTX_set_fd_callbacks(); the same as
 *   SSLASYNC_FD_CALLBACKS=1, and always on with a shim built for OpenSSL
 *   1.1.1): at such a pause the shim watches the engine's wait fd itself,
 *   reports ASYNC_STATUS_OK and calls the callback from its own thread, so
 *   callback mode works unchanged with an fd-only engine.
 *
 * DESIGN
 *
 *   One event-loop thread owns every server connection and is the only
 *   thread that ever calls into a server SSL object.  Sockets are
 *   non-blocking and watched with level-triggered epoll.  Each connection is
 *   a small state machine (handshake -> read request -> write echo -> wait
 *   for the client's close_notify -> shutdown) driven by conn_drive(), which
 *   re-issues whichever SSL call is pending until it would block.
 *
 *   After SSL_ERROR_WANT_ASYNC the handshake job is paused inside OpenSSL.
 *   The rule the loop follows: a paused connection is resumed ONLY by a
 *   wake-up that belongs to the async operation (the callback, its wait fd,
 *   or our own re-drive after ASYNC_STATUS_EAGAIN), never because its socket
 *   became readable; while paused its socket interest is cleared.  What to
 *   wait for is decided by SSL_get_async_status():
 *
 *     ASYNC_STATUS_OK           the device accepted the work and will call
 *                               back: just wait for the callback.
 *     ASYNC_STATUS_EAGAIN       the device was busy and queued nothing; no
 *                               callback and no fd will ever come.  The
 *                               application must re-drive the SSL call
 *                               itself (we schedule it through the ready
 *                               queue so other connections get a turn).
 *     ASYNC_STATUS_UNSUPPORTED  the engine does not do callbacks (or never
 *                               set a status): fall back to its wait fds.
 *     ASYNC_STATUS_ERR          the submission failed: fail the connection.
 *
 *   The callback may run on the accelerator's device thread (QAT style) or
 *   re-entrantly on the event-loop thread, inside SSL_do_handshake() before
 *   that call has even returned SSL_ERROR_WANT_ASYNC (OpenSSL's dasync
 *   style).  Both are handled the same way, because the callback does
 *   nothing but enqueue the connection: it never touches the SSL, never
 *   takes a lock that the loop could hold while calling OpenSSL, and the
 *   connection is only resumed later, from the loop, after the SSL call that
 *   paused has returned.  The eventfd is written only when the queue goes
 *   from empty to non-empty, so a burst of completions costs one wake-up.
 *
 *   A connection whose async job is still paused is never freed: OpenSSL's
 *   SSL_free() does not release a paused job and a device completing later
 *   would call back into freed memory.  A failing connection is therefore
 *   first resumed until its job has finished, then freed.
 *
 * LOAD GENERATOR
 *
 *   A second thread in the same process runs its own epoll loop with N
 *   concurrent loopback TCP clients (default 64).  Each client connects to
 *   127.0.0.1, performs a full TLS handshake (session caches and tickets are
 *   off, so there is no resumption), sends a 1 KiB request, checks the 1 KiB
 *   echo, exchanges close_notify and starts over.  A run ends after
 *   --duration seconds or --handshakes per client, whichever comes first;
 *   in-flight connections are always finished cleanly.
 *
 * WHAT IT PRINTS, AND WHEN IT FAILS
 *
 *   Handshakes completed, accelerator pauses, callbacks delivered (and how
 *   many of them arrived re-entrantly), EAGAIN re-drives, wait-fd wake-ups,
 *   eventfd wake-ups and handshakes per second.  --compare (the default) runs
 *   callback mode and then fd mode with identical settings and prints both
 *   side by side.  The exit status is non-zero if any connection failed or
 *   if the counts do not add up against the accelerator's own counters - for
 *   instance, in callback mode every pause the device completed must have
 *   produced exactly one callback here (a lost callback would otherwise show
 *   up only as a hung connection, which the watchdog reports after 10 s of
 *   no progress).  With SSLASYNC_STATS=1 and the shim in front, the shim's
 *   own counters (sslasync_stats_get()) are printed and cross-checked too.
 *   SSLASYNC_EXPECT=shim|native (set by the test harness) makes the program
 *   fail unless that implementation of the API is really the one in front.
 *
 * BUILDING
 *
 *   The async callback API is declared by <openssl/ssl.h> 3.x and by
 *   include/sslasync.h.  The sslasync shim (libsslasync.so) provides a
 *   fixed implementation of it; it is used either by linking it AHEAD of
 *   libssl (-Wl,--no-as-needed -lsslasync -lssl -lcrypto, which is how
 *   "async_server" is built) or by preloading it into a binary that only
 *   knows the system libssl:
 *       LD_PRELOAD=target/release/libsslasync.so ./async_server_plain
 *   The program prints which library actually provides the API.  Both
 *   are built by c-tests/CMakeLists.txt (which adds examples/); `make demo`
 *   at the top level builds async_server and runs it with --compare, once
 *   with the callback-style accelerator and once with the fd-only one and
 *   --fd-callbacks.  Built against OpenSSL 1.1.1, whose libssl has no async
 *   callback API, the program declares the API weak: without the shim in
 *   front it runs fd mode only.
 *   --help lists the knobs: accelerator style (callback, inline = dasync
 *   style, fd-only, eagain) and latency, client count, per-client handshake
 *   count or duration, EC or RSA key, TLS 1.2 or 1.3, one mode or both.
 */
#define _GNU_SOURCE

#include <dlfcn.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/async.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "sslasync.h"
#include "simaccel.h"

/*
 * OpenSSL 1.1.1's libssl has no async callback API: there only the sslasync
 * shim provides it.  Declared weak (sslasync.h declares the functions for
 * old headers), so that the program still links and runs without the shim,
 * in fd mode only; api_present() tells.
 */
#if !defined(OPENSSL_VERSION_MAJOR) || OPENSSL_VERSION_MAJOR < 3
#define WEAK_ASYNC_API 1
#pragma weak SSL_CTX_set_async_callback
#pragma weak SSL_CTX_set_async_callback_arg
#pragma weak SSL_set_async_callback
#pragma weak SSL_set_async_callback_arg
#pragma weak SSL_get_async_status
#else
#define WEAK_ASYNC_API 0
#endif

/* Whether some library in the process provides the async callback API. */
static int api_present(void)
{
#if WEAK_ASYNC_API
    int (*fn)(SSL_CTX *, SSL_async_callback_fn) = SSL_CTX_set_async_callback;

    return fn != NULL;
#else
    return 1;
#endif
}

/*
 * The shim's fd adapter (sslasync 0.3.0 and later): looked up at run time,
 * like sslasync_stats_get() below, so that the same source also runs on a
 * plain libssl or an older shim, where the functions are absent.
 */
typedef int (*ctx_set_fd_callbacks_fn)(SSL_CTX *ctx, int on);
typedef int (*get_fd_callbacks_fn)(const SSL *s);

static void *shim_symbol(const char *name)
{
    return dlsym(RTLD_DEFAULT, name);
}

/* 1 if the shim's fd adapter is on for s, 0 if off or absent. */
static int fd_adapter_on(const SSL *s)
{
    static get_fd_callbacks_fn fn;
    static int looked_up;

    if (!looked_up) {
        void *sym = shim_symbol("sslasync_get_fd_callbacks");

        memcpy(&fn, &sym, sizeof(fn));
        looked_up = 1;
    }
    return fn != NULL && fn(s) == 1;
}

/* sslasync_CTX_set_fd_callbacks(ctx, 1); 0 if the shim lacks it or is
 * inert. */
static int fd_adapter_enable(SSL_CTX *ctx)
{
    ctx_set_fd_callbacks_fn fn;
    void *sym = shim_symbol("sslasync_CTX_set_fd_callbacks");

    memcpy(&fn, &sym, sizeof(fn));
    return fn != NULL && fn(ctx, 1) == 1;
}

/* ------------------------------------------------------------------------ */
/* Settings                                                                  */
/* ------------------------------------------------------------------------ */

#define REQUEST_SIZE 1024        /* bytes sent by each client and echoed back */
#define MAX_EVENTS 256           /* epoll_wait batch */
#define LOOP_TICK_MS 50          /* idle tick: end-of-run and watchdog checks */
#define STALL_SECONDS 10.0       /* no progress for this long = lost wake-up */
#define MAX_CLIENTS 4096
#define MAX_DURATION_S 300.0
#define MAX_ASYNC_FDS 8          /* per connection; engines use one */
#define MAX_LOGGED_FAILURES 5

enum run_mode { MODE_CALLBACK, MODE_FD };

struct options {
    simaccel_style style;
    unsigned latency_us;
    unsigned eagain_every;
    int clients;                 /* concurrent client connections */
    long handshakes_per_client;  /* 0 = bounded by --duration only */
    double duration_s;
    const char *key;             /* "ec" or "rsa" */
    int tls_version;             /* TLS1_2_VERSION or TLS1_3_VERSION */
    int compare;                 /* run both modes */
    enum run_mode mode;          /* when not comparing */
    int verbose;
    int require_shim;            /* fail unless libsslasync provides the API */
    int fd_callbacks;            /* callback mode: turn on the shim's fd adapter */
    int expect_adapter;          /* fail unless the fd adapter is on in callback
                                    mode (--fd-callbacks, or the shim in front
                                    with SSLASYNC_FD_CALLBACKS=1) */
};

static const char *style_name(simaccel_style s)
{
    switch (s) {
    case SIMACCEL_STYLE_CALLBACK: return "callback";
    case SIMACCEL_STYLE_INLINE:   return "inline";
    case SIMACCEL_STYLE_FD:       return "fd";
    case SIMACCEL_STYLE_EAGAIN:   return "eagain";
    }
    return "?";
}

static const char *mode_name(enum run_mode m)
{
    return m == MODE_CALLBACK ? "callback" : "fd";
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fputs("async_server: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    ERR_print_errors_fp(stderr);
    exit(2);
}

/*
 * Every object registered with an epoll instance is reached through one of
 * these, so a single epoll_wait() can tell a listening socket from a client
 * socket, an accelerator wait fd or the ready-queue eventfd.
 */
enum watch_kind { W_LISTEN, W_WAKE, W_SOCKET, W_ASYNC_FD };

struct watch {
    enum watch_kind kind;
    void *obj;
};

static int set_nodelay(int fd)
{
    int one = 1;

    /* Handshake flights and the echo are small writes that each wait for an
     * answer; Nagle plus delayed ACK would add tens of milliseconds. */
    return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* ------------------------------------------------------------------------ */
/* Server                                                                    */
/* ------------------------------------------------------------------------ */

enum srv_state {
    S_HANDSHAKE,
    S_READ_REQUEST,
    S_WRITE_RESPONSE,
    S_AWAIT_CLOSE,     /* wait for the client's close_notify */
    S_SHUTDOWN,        /* send ours */
    S_CLOSED
};

static const char *srv_state_name(enum srv_state s)
{
    static const char *const names[] = {
        "handshake", "read-request", "write-response", "await-close",
        "shutdown", "closed"
    };
    return names[s];
}

struct server;

struct conn {
    struct server *srv;
    SSL *ssl;
    int fd;
    enum srv_state state;

    /* Loop-thread-only fields. */
    uint32_t sock_events;        /* current epoll interest for fd */
    int sock_registered;         /* fd is in the epoll set */
    int paused;                  /* async job paused, waiting for a wake-up */
    int doomed;                  /* failed; free once the job has finished */
    int last_status;             /* last SSL_get_async_status() seen */
    size_t nbytes;
    struct watch sock_w, async_w;
    struct conn *prev, *next;    /* server's list of live connections */
    struct conn *grave_next;     /* deferred free list */
    unsigned char buf[REQUEST_SIZE];

    /* Ready-queue linkage: shared with the callback, guarded by q_lock. */
    struct conn *q_prev, *q_next;
    int queued;
};

/* Counters written by the callback, possibly on the device thread. */
struct callback_stats {
    atomic_ulong callbacks;
    atomic_ulong callbacks_reentrant;
    atomic_ulong eventfd_writes;
};

/* Counters of the event-loop thread. */
struct server_stats {
    unsigned long accepted;
    unsigned long handshakes;
    unsigned long resumed;       /* handshakes that were session resumptions */
    unsigned long failed;
    unsigned long want_async;
    unsigned long status_ok, status_eagain, status_unsupported, status_err;
    unsigned long eagain_redrives;
    unsigned long job_redrives;  /* SSL_ERROR_WANT_ASYNC_JOB */
    unsigned long fd_wakeups;
    unsigned long spurious_wakeups;
    unsigned long eventfd_wakeups;
    unsigned long adapter_ssls;  /* SSLs with the shim's fd adapter on */
};

struct server {
    enum run_mode mode;
    SSL_CTX *ctx;
    int epfd;
    int listen_fd;
    int wake_fd;                 /* eventfd: ready queue became non-empty */
    struct sockaddr_in addr;
    pthread_t loop_thread;
    struct watch listen_w, wake_w;

    pthread_mutex_t q_lock;      /* guards the ready queue only */
    struct conn *q_head, *q_tail;
    size_t q_len;

    struct conn *conns;          /* live connections */
    size_t live;
    struct conn *grave;          /* closed, freed after the epoll batch */
    double last_progress;
    struct server_stats st;
    struct callback_stats cb;
};

/* A callback whose arg is not a connection of ours, or whose SSL is not the
 * connection's: impossible with a correct implementation of the API, but a
 * reference program should notice rather than crash. */
static atomic_ulong g_bad_callbacks;

/* --- the ready queue ---------------------------------------------------- */

/* Appends c unless it is already queued.  Safe from any thread.  Writes the
 * eventfd only on the empty -> non-empty transition: the loop drains the
 * whole queue on each wake-up, so one write per burst is enough. */
static void ready_push(struct server *srv, struct conn *c)
{
    int was_empty = 0;

    pthread_mutex_lock(&srv->q_lock);
    if (!c->queued) {
        c->queued = 1;
        c->q_next = NULL;
        c->q_prev = srv->q_tail;
        if (srv->q_tail)
            srv->q_tail->q_next = c;
        else
            srv->q_head = c;
        srv->q_tail = c;
        was_empty = (srv->q_len++ == 0);
    }
    pthread_mutex_unlock(&srv->q_lock);

    if (was_empty) {
        uint64_t one = 1;

        atomic_fetch_add_explicit(&srv->cb.eventfd_writes, 1,
                                  memory_order_relaxed);
        /* Cannot fail short of a counter overflow (2^64-1 wake-ups). */
        if (write(srv->wake_fd, &one, sizeof(one)) != sizeof(one))
            abort();
    }
}

static void ready_unlink_locked(struct server *srv, struct conn *c)
{
    if (c->q_prev)
        c->q_prev->q_next = c->q_next;
    else
        srv->q_head = c->q_next;
    if (c->q_next)
        c->q_next->q_prev = c->q_prev;
    else
        srv->q_tail = c->q_prev;
    c->q_prev = c->q_next = NULL;
    c->queued = 0;
    srv->q_len--;
}

static struct conn *ready_pop(struct server *srv)
{
    struct conn *c;

    pthread_mutex_lock(&srv->q_lock);
    c = srv->q_head;
    if (c)
        ready_unlink_locked(srv, c);
    pthread_mutex_unlock(&srv->q_lock);
    return c;
}

static size_t ready_len(struct server *srv)
{
    size_t n;

    pthread_mutex_lock(&srv->q_lock);
    n = srv->q_len;
    pthread_mutex_unlock(&srv->q_lock);
    return n;
}

/*
 * THE async completion callback.  Registered once on the SSL_CTX; OpenSSL
 * hands it the SSL and the per-connection arg set with
 * SSL_set_async_callback_arg().  It may run on the accelerator's thread or
 * re-entrantly inside SSL_do_handshake() on the loop thread, so it does the
 * minimum: count, enqueue, and (maybe) poke the eventfd.  It must not call
 * into the SSL object - another thread may be inside it.
 */
static int on_async_complete(SSL *ssl, void *arg)
{
    struct conn *c = arg;
    struct server *srv;

    if (c == NULL || c->ssl != ssl) {
        atomic_fetch_add(&g_bad_callbacks, 1);
        return 0;
    }
    srv = c->srv;
    atomic_fetch_add_explicit(&srv->cb.callbacks, 1, memory_order_relaxed);
    if (pthread_equal(pthread_self(), srv->loop_thread))
        atomic_fetch_add_explicit(&srv->cb.callbacks_reentrant, 1,
                                  memory_order_relaxed);
    ready_push(srv, c);
    return 1;
}

/* --- epoll helpers ------------------------------------------------------ */

static void sock_interest(struct conn *c, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.ptr = &c->sock_w };
    int op;

    if (c->sock_registered && c->sock_events == events)
        return;
    op = c->sock_registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(c->srv->epfd, op, c->fd, &ev) != 0)
        die("epoll_ctl(socket): %s", strerror(errno));
    c->sock_registered = 1;
    c->sock_events = events;
}

static void sock_unregister(struct conn *c)
{
    if (c->sock_registered) {
        epoll_ctl(c->srv->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        c->sock_registered = 0;
        c->sock_events = 0;
    }
}

/*
 * Brings the epoll set up to date with the SSL's wait fds, the fd-mode way:
 * SSL_get_changed_async_fds() reports the fds the engine added to / removed
 * from the wait ctx during the job run that just paused.
 */
static void async_fds_update(struct conn *c)
{
    OSSL_ASYNC_FD add[MAX_ASYNC_FDS], del[MAX_ASYNC_FDS];
    size_t nadd = 0, ndel = 0, i;

    if (!SSL_get_changed_async_fds(c->ssl, NULL, &nadd, NULL, &ndel))
        die("SSL_get_changed_async_fds");
    if (nadd > MAX_ASYNC_FDS || ndel > MAX_ASYNC_FDS)
        die("engine uses more than %d wait fds", MAX_ASYNC_FDS);
    if (nadd + ndel == 0)
        return;
    if (!SSL_get_changed_async_fds(c->ssl, add, &nadd, del, &ndel))
        die("SSL_get_changed_async_fds");
    for (i = 0; i < ndel; i++) {
        /* The engine may already have closed it (which removed it from the
         * epoll set by itself), so errors are expected and ignored. */
        epoll_ctl(c->srv->epfd, EPOLL_CTL_DEL, del[i], NULL);
    }
    for (i = 0; i < nadd; i++) {
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &c->async_w };

        if (epoll_ctl(c->srv->epfd, EPOLL_CTL_ADD, add[i], &ev) != 0
            && errno != EEXIST)
            die("epoll_ctl(async fd): %s", strerror(errno));
    }
}

/* Before SSL_free(): the wait fds still attached to the SSL are open (the
 * wait ctx closes them), take them out of our epoll set explicitly. */
static void async_fds_forget(struct conn *c)
{
    OSSL_ASYNC_FD fds[MAX_ASYNC_FDS];
    size_t n = 0, i;

    if (!SSL_get_all_async_fds(c->ssl, NULL, &n) || n == 0
        || n > MAX_ASYNC_FDS)
        return;
    if (!SSL_get_all_async_fds(c->ssl, fds, &n))
        return;
    for (i = 0; i < n; i++)
        epoll_ctl(c->srv->epfd, EPOLL_CTL_DEL, fds[i], NULL);
}

/* --- connection lifetime ------------------------------------------------ */

static void conn_close(struct conn *c)
{
    struct server *srv = c->srv;

    if (c->state == S_CLOSED)
        return;
    c->state = S_CLOSED;

    /* Only reached with no job in flight, so no callback can still be on
     * its way for this connection; a stale queue entry is possible (e.g. a
     * duplicate notification) and is removed here. */
    pthread_mutex_lock(&srv->q_lock);
    if (c->queued)
        ready_unlink_locked(srv, c);
    pthread_mutex_unlock(&srv->q_lock);

    sock_unregister(c);
    async_fds_forget(c);
    SSL_free(c->ssl);
    c->ssl = NULL;
    close(c->fd);
    c->fd = -1;

    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->live--;

    /* Events for this connection may still sit in the current epoll batch;
     * keep the memory until the batch has been processed. */
    c->grave_next = srv->grave;
    srv->grave = c;
}

static void conn_fail(struct conn *c, const char *what)
{
    struct server *srv = c->srv;

    if (!c->doomed) {
        c->doomed = 1;
        srv->st.failed++;
        if (srv->st.failed <= MAX_LOGGED_FAILURES) {
            fprintf(stderr, "async_server: connection failed in %s: %s\n",
                    srv_state_name(c->state), what);
            ERR_print_errors_fp(stderr);
        }
    }
    ERR_clear_error();
    /* A paused job must be run to its end before SSL_free(); the next
     * wake-up (or our own re-drive) will finish it and land back here. */
    if (!SSL_waiting_for_async(c->ssl))
        conn_close(c);
}

static void conn_drive(struct conn *c);

/*
 * SSL_ERROR_WANT_ASYNC: the handshake job is paused inside OpenSSL.  Decide
 * who will wake this connection up.
 */
static void conn_paused(struct conn *c)
{
    struct server *srv = c->srv;
    int status = ASYNC_STATUS_UNSUPPORTED;

    srv->st.want_async++;
    c->paused = 1;
    /* Resuming on socket readiness would resume the job before the device
     * finished; silence the socket until the operation completes. */
    sock_interest(c, 0);

    /* Returns 0 (leaving status alone) only if the SSL never ran a job,
     * which cannot be the case right after WANT_ASYNC; either way
     * UNSUPPORTED is the safe reading. */
    if (!api_present() || !SSL_get_async_status(c->ssl, &status))
        status = ASYNC_STATUS_UNSUPPORTED;
    c->last_status = status;

    switch (status) {
    case ASYNC_STATUS_OK:
        /* From the engine, or from the shim's fd adapter, which watches an
         * fd-only engine's wait fd for us and calls back like the engine. */
        srv->st.status_ok++;
        if (srv->mode == MODE_CALLBACK)
            return;              /* the callback will (or already did) */
        /* fd mode registered no callback, so an engine that still says OK
         * signals through its wait fd. */
        async_fds_update(c);
        return;
    case ASYNC_STATUS_EAGAIN:
        /* The device refused the request: nothing will call back and no fd
         * will fire.  Re-drive ourselves, via the queue so that every other
         * ready connection gets its turn first. */
        srv->st.status_eagain++;
        srv->st.eagain_redrives++;
        ready_push(srv, c);
        return;
    case ASYNC_STATUS_ERR:
        srv->st.status_err++;
        conn_fail(c, "accelerator reported ASYNC_STATUS_ERR");
        /* Resume once so the job sees the failure and unwinds; the
         * connection is freed when it has. */
        if (c->state != S_CLOSED)
            ready_push(srv, c);
        return;
    case ASYNC_STATUS_UNSUPPORTED:
    default:
        /* The engine does not use the callback (fd-only engine, or fd mode
         * where we registered none).  An engine that calls back without
         * setting a status (dasync) has already queued us and added no fd,
         * so this is harmless there. */
        srv->st.status_unsupported++;
        async_fds_update(c);
        return;
    }
}

/* Runs the connection's state machine until an SSL call would block. */
static void conn_drive(struct conn *c)
{
    struct server *srv = c->srv;

    for (;;) {
        int ret, err;

        switch (c->state) {
        case S_HANDSHAKE:
            ret = SSL_do_handshake(c->ssl);
            if (ret == 1) {
                srv->st.handshakes++;
                if (SSL_session_reused(c->ssl))
                    srv->st.resumed++;
                srv->last_progress = now_s();
                c->state = S_READ_REQUEST;
                c->nbytes = 0;
                continue;
            }
            break;
        case S_READ_REQUEST:
            ret = SSL_read(c->ssl, c->buf + c->nbytes,
                           (int)(REQUEST_SIZE - c->nbytes));
            if (ret > 0) {
                c->nbytes += (size_t)ret;
                if (c->nbytes == REQUEST_SIZE)
                    c->state = S_WRITE_RESPONSE;
                continue;
            }
            break;
        case S_WRITE_RESPONSE:
            /* Without SSL_MODE_ENABLE_PARTIAL_WRITE this writes all or
             * nothing; a retry must repeat the same arguments. */
            ret = SSL_write(c->ssl, c->buf, REQUEST_SIZE);
            if (ret > 0) {
                c->state = S_AWAIT_CLOSE;
                continue;
            }
            break;
        case S_AWAIT_CLOSE: {
            unsigned char extra;

            ret = SSL_read(c->ssl, &extra, 1);
            if (ret > 0) {
                conn_fail(c, "client sent more than one request");
                return;
            }
            if (SSL_get_error(c->ssl, ret) == SSL_ERROR_ZERO_RETURN) {
                c->state = S_SHUTDOWN;
                continue;
            }
            break;
        }
        case S_SHUTDOWN:
            ret = SSL_shutdown(c->ssl);
            if (ret >= 0) {      /* close_notify sent (and received) */
                srv->last_progress = now_s();
                conn_close(c);
                return;
            }
            break;
        case S_CLOSED:
        default:
            return;
        }

        err = SSL_get_error(c->ssl, ret);
        switch (err) {
        case SSL_ERROR_WANT_READ:
            if (c->doomed)
                break;
            sock_interest(c, EPOLLIN);
            return;
        case SSL_ERROR_WANT_WRITE:
            if (c->doomed)
                break;
            sock_interest(c, EPOLLOUT);
            return;
        case SSL_ERROR_WANT_ASYNC:
            conn_paused(c);
            return;
        case SSL_ERROR_WANT_ASYNC_JOB:
            /* The async job pool is exhausted (only with a bounded pool,
             * see ASYNC_init_thread()).  Try again on the next turn. */
            srv->st.job_redrives++;
            c->paused = 1;
            sock_interest(c, 0);
            ready_push(srv, c);
            return;
        default:
            break;
        }
        if (c->state == S_SHUTDOWN && !c->doomed) {
            /* Request and response went through; a peer that does not wait
             * for our close_notify is not a failed connection. */
            ERR_clear_error();
            conn_close(c);
            return;
        }
        conn_fail(c, c->doomed ? "aborted" : "TLS error");
        return;
    }
}

static void server_accept(struct server *srv, SSL_CTX *ctx)
{
    for (;;) {
        struct conn *c;
        int fd = accept4(srv->listen_fd, NULL, NULL,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR
                || errno == ECONNABORTED)
                return;
            die("accept: %s", strerror(errno));
        }
        set_nodelay(fd);

        c = calloc(1, sizeof(*c));
        if (c == NULL)
            die("out of memory");
        c->srv = srv;
        c->fd = fd;
        c->state = S_HANDSHAKE;
        c->sock_w.kind = W_SOCKET;
        c->sock_w.obj = c;
        c->async_w.kind = W_ASYNC_FD;
        c->async_w.obj = c;

        c->ssl = SSL_new(ctx);
        if (c->ssl == NULL || !SSL_set_fd(c->ssl, fd))
            die("SSL_new/SSL_set_fd");
        SSL_set_accept_state(c->ssl);
        /*
         * The callback itself was set once on the SSL_CTX and copied into
         * this SSL by SSL_new(); what is per connection is the argument the
         * callback receives.  It must be set before the first SSL call that
         * can pause, i.e. before the handshake starts.
         */
        if (srv->mode == MODE_CALLBACK && !SSL_set_async_callback_arg(c->ssl, c))
            die("SSL_set_async_callback_arg");
        /* SSL_new() copied the CTX's fd-adapter setting too (or the
         * process default, SSLASYNC_FD_CALLBACKS); record what it is. */
        if (srv->mode == MODE_CALLBACK && fd_adapter_on(c->ssl))
            srv->st.adapter_ssls++;

        c->next = srv->conns;
        if (srv->conns)
            srv->conns->prev = c;
        srv->conns = c;
        srv->live++;
        srv->st.accepted++;

        /* The ClientHello is usually already here. */
        conn_drive(c);
    }
}

/* Resumes every connection that was queued when the eventfd fired. */
static void server_drain_ready(struct server *srv)
{
    uint64_t v;
    size_t n;

    srv->st.eventfd_wakeups++;
    /* Reset the eventfd first: a push that finds the queue empty after this
     * point writes it again, so no wake-up can be lost. */
    if (read(srv->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        die("read(eventfd): %s", strerror(errno));

    /* Bound the pass to what was queued on entry: an EAGAIN re-drive that
     * pauses again re-queues itself and must wait for the next turn. */
    for (n = ready_len(srv); n > 0; n--) {
        struct conn *c = ready_pop(srv);

        if (c == NULL)
            break;
        if (!c->paused) {
            /* A second notification for an operation that was already
             * resumed by the first one. */
            srv->st.spurious_wakeups++;
            continue;
        }
        c->paused = 0;
        conn_drive(c);
    }

    /* Anything queued meanwhile did not write the eventfd (the queue was
     * not empty), so make sure the next epoll_wait() returns at once. */
    if (ready_len(srv) > 0) {
        uint64_t one = 1;

        if (write(srv->wake_fd, &one, sizeof(one)) != sizeof(one))
            abort();
    }
}

static void server_free_graves(struct server *srv)
{
    while (srv->grave) {
        struct conn *c = srv->grave;

        srv->grave = c->grave_next;
        free(c);
    }
}

/* ------------------------------------------------------------------------ */
/* Load generator: client connections on their own thread and epoll loop     */
/* ------------------------------------------------------------------------ */

enum cli_state { C_IDLE, C_CONNECTING, C_HANDSHAKE, C_WRITE, C_READ,
                 C_SHUTDOWN };

struct loadgen;

struct client {
    struct loadgen *lg;
    int idx;
    int fd;
    SSL *ssl;
    enum cli_state state;
    uint32_t events;
    long done;                   /* sessions completed by this slot */
    size_t nbytes;
    double t_start;
    struct watch w;
    unsigned char req[REQUEST_SIZE];
    unsigned char resp[REQUEST_SIZE];
};

struct loadgen {
    const struct options *opt;
    struct sockaddr_in addr;
    SSL_CTX *ctx;
    int epfd;
    struct client *cl;
    int active;
    double stop_at;
    atomic_int finished;
    /* Results (read by the main thread after join). */
    unsigned long ok, failed;
    double hs_latency_sum, hs_latency_max;
};

static void client_interest(struct client *c, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.ptr = &c->w };

    if (c->events == events)
        return;
    if (epoll_ctl(c->lg->epfd, c->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD,
                  c->fd, &ev) != 0)
        die("epoll_ctl(client): %s", strerror(errno));
    c->events = events;
}

static void client_start(struct client *c);

static void client_finish(struct client *c, int ok)
{
    struct loadgen *lg = c->lg;

    if (ok) {
        lg->ok++;
    } else {
        lg->failed++;
        if (lg->failed <= MAX_LOGGED_FAILURES) {
            fprintf(stderr, "async_server: client %d failed (state %d)\n",
                    c->idx, (int)c->state);
            ERR_print_errors_fp(stderr);
        }
        ERR_clear_error();
    }
    if (c->ssl)
        SSL_free(c->ssl);
    c->ssl = NULL;
    if (c->fd >= 0)
        close(c->fd);          /* also removes it from the epoll set */
    c->fd = -1;
    c->events = 0;
    c->state = C_IDLE;
    c->done++;
    lg->active--;
    client_start(c);
}

static void client_drive(struct client *c)
{
    for (;;) {
        int ret;

        switch (c->state) {
        case C_CONNECTING: {
            int soerr = 0;
            socklen_t len = sizeof(soerr);

            if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0
                || soerr != 0) {
                client_finish(c, 0);
                return;
            }
            c->ssl = SSL_new(c->lg->ctx);
            if (c->ssl == NULL || !SSL_set_fd(c->ssl, c->fd))
                die("client SSL_new");
            SSL_set_connect_state(c->ssl);
            c->state = C_HANDSHAKE;
            continue;
        }
        case C_HANDSHAKE:
            ret = SSL_do_handshake(c->ssl);
            if (ret == 1) {
                double lat = now_s() - c->t_start;

                c->lg->hs_latency_sum += lat;
                if (lat > c->lg->hs_latency_max)
                    c->lg->hs_latency_max = lat;
                c->state = C_WRITE;
                continue;
            }
            break;
        case C_WRITE:
            ret = SSL_write(c->ssl, c->req, REQUEST_SIZE);
            if (ret > 0) {
                c->state = C_READ;
                c->nbytes = 0;
                continue;
            }
            break;
        case C_READ:
            ret = SSL_read(c->ssl, c->resp + c->nbytes,
                           (int)(REQUEST_SIZE - c->nbytes));
            if (ret > 0) {
                c->nbytes += (size_t)ret;
                if (c->nbytes == REQUEST_SIZE) {
                    if (memcmp(c->req, c->resp, REQUEST_SIZE) != 0) {
                        client_finish(c, 0);
                        return;
                    }
                    c->state = C_SHUTDOWN;
                }
                continue;
            }
            break;
        case C_SHUTDOWN:
            /* 0: our close_notify is out, theirs not yet in; 1: both. */
            ret = SSL_shutdown(c->ssl);
            if (ret == 1) {
                client_finish(c, 1);
                return;
            }
            if (ret == 0)
                continue;
            break;
        case C_IDLE:
        default:
            return;
        }

        switch (SSL_get_error(c->ssl, ret)) {
        case SSL_ERROR_WANT_READ:
            client_interest(c, EPOLLIN);
            return;
        case SSL_ERROR_WANT_WRITE:
            client_interest(c, EPOLLOUT);
            return;
        default:
            client_finish(c, 0);
            return;
        }
    }
}

/* Opens the slot's next connection, unless the run is over. */
static void client_start(struct client *c)
{
    struct loadgen *lg = c->lg;
    size_t i;

    if ((lg->opt->handshakes_per_client > 0
         && c->done >= lg->opt->handshakes_per_client)
        || now_s() >= lg->stop_at)
        return;

    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        die("socket: %s", strerror(errno));
    set_nodelay(c->fd);
    for (i = 0; i < REQUEST_SIZE; i++)
        c->req[i] = (unsigned char)(c->idx * 31 + c->done * 7 + i);
    c->t_start = now_s();
    c->events = 0;
    c->state = C_CONNECTING;
    lg->active++;
    if (connect(c->fd, (struct sockaddr *)&lg->addr, sizeof(lg->addr)) != 0
        && errno != EINPROGRESS) {
        fprintf(stderr, "async_server: connect: %s\n", strerror(errno));
        client_finish(c, 0);
        return;
    }
    /* Writable = connected (or failed; SO_ERROR tells). */
    client_interest(c, EPOLLOUT);
}

static void *loadgen_main(void *arg)
{
    struct loadgen *lg = arg;
    struct epoll_event evs[MAX_EVENTS];
    int i;

    for (i = 0; i < lg->opt->clients; i++)
        client_start(&lg->cl[i]);

    while (lg->active > 0) {
        int n = epoll_wait(lg->epfd, evs, MAX_EVENTS, LOOP_TICK_MS);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait(clients): %s", strerror(errno));
        }
        for (i = 0; i < n; i++) {
            struct client *c = ((struct watch *)evs[i].data.ptr)->obj;

            if (c->state != C_IDLE)
                client_drive(c);
        }
    }
    atomic_store(&lg->finished, 1);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* One run: server loop on this thread, load generator on another            */
/* ------------------------------------------------------------------------ */

struct run_result {
    enum run_mode mode;
    struct server_stats st;
    unsigned long callbacks, callbacks_reentrant, eventfd_writes;
    unsigned long client_ok, client_failed;
    double hs_latency_ms, hs_latency_max_ms;
    double elapsed;
    simaccel_counters acc;       /* accelerator counters during the run */
    int have_shim_stats;         /* SSLASYNC_STATS=1 and the shim in front */
    struct sslasync_stats shim;  /* the shim's own counters during the run
                                    (the adapter_* ones are counted even
                                    without SSLASYNC_STATS) */
    int adapter_on;              /* callback mode with the fd adapter on */
    int consistent;
    char problems[1024];
};

static SSL_CTX *make_server_ctx(const struct options *opt, EVP_PKEY *key,
                                X509 *cert, enum run_mode mode)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

    if (ctx == NULL)
        die("SSL_CTX_new");
    if (!SSL_CTX_set_min_proto_version(ctx, opt->tls_version)
        || !SSL_CTX_set_max_proto_version(ctx, opt->tls_version))
        die("cannot select the TLS version");
    if (!SSL_CTX_use_certificate(ctx, cert)
        || !SSL_CTX_use_PrivateKey(ctx, key)
        || !SSL_CTX_check_private_key(ctx))
        die("cannot install the server key and certificate");

    /* Every handshake must be a full one so that each of them signs with
     * the offloaded key: no session cache, no tickets. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    if (!SSL_CTX_set_num_tickets(ctx, 0))
        die("SSL_CTX_set_num_tickets");

    /* Let OpenSSL run each SSL call as an async job that can pause. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ASYNC);

    /*
     * Callback mode: one callback for every connection of this SSL_CTX.
     * SSL_new() copies it (and the CTX-level arg, which we leave NULL) into
     * each SSL; the per-connection arg is set after SSL_new().
     */
    if (mode == MODE_CALLBACK
        && !SSL_CTX_set_async_callback(ctx, on_async_complete))
        die("SSL_CTX_set_async_callback");
    /*
     * --fd-callbacks: an engine that only signals wait fds gets its
     * callback from the shim's fd adapter.  Inherited by SSL_new() like
     * the callback.  (Without it the process default applies:
     * SSLASYNC_FD_CALLBACKS, or always on with a shim built for 1.1.1.)
     */
    if (mode == MODE_CALLBACK && opt->fd_callbacks && !fd_adapter_enable(ctx))
        die("--fd-callbacks: sslasync_CTX_set_fd_callbacks() is not available "
            "(needs an active sslasync 0.3.0 or later in front of libssl)");
    return ctx;
}

static SSL_CTX *make_client_ctx(const struct options *opt)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

    if (ctx == NULL)
        die("SSL_CTX_new(client)");
    if (!SSL_CTX_set_min_proto_version(ctx, opt->tls_version)
        || !SSL_CTX_set_max_proto_version(ctx, opt->tls_version))
        die("cannot select the TLS version (client)");
    /* The server's certificate is self-signed; the handshake still checks
     * its signature over the transcript, which is what we offload. */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    return ctx;
}

/*
 * The shim's optional counters (sslasync_stats_get(), active when the
 * process runs with SSLASYNC_STATS=1).  Looked up at run time so that the
 * same source also runs on a plain libssl, where the function is absent.
 * Returns 1 when counting is on; the fd adapter's counters are filled in
 * either way (zeros without the shim or with one older than 0.3.0).
 */
typedef int (*stats_get_fn)(struct sslasync_stats *out, size_t size);

static int shim_stats(struct sslasync_stats *out)
{
    static stats_get_fn fn;
    static int looked_up;

    if (!looked_up) {
        void *sym = shim_symbol("sslasync_stats_get");

        memcpy(&fn, &sym, sizeof(fn));
        looked_up = 1;
    }
    memset(out, 0, sizeof(*out));
    return fn != NULL && fn(out, sizeof(*out)) == 1;
}

static void sub_shim_stats(struct sslasync_stats *d,
                           const struct sslasync_stats *a,
                           const struct sslasync_stats *b)
{
    int i;

    d->enabled = b->enabled;
    d->callbacks_delivered = b->callbacks_delivered - a->callbacks_delivered;
    d->callbacks_dropped = b->callbacks_dropped - a->callbacks_dropped;
    d->pauses = b->pauses - a->pauses;
    d->status_ok = b->status_ok - a->status_ok;
    d->status_eagain = b->status_eagain - a->status_eagain;
    d->status_err = b->status_err - a->status_err;
    d->late_registrations = b->late_registrations - a->late_registrations;
    d->adapter_arms = b->adapter_arms - a->adapter_arms;
    d->adapter_deliveries = b->adapter_deliveries - a->adapter_deliveries;
    d->adapter_drops = b->adapter_drops - a->adapter_drops;
    d->adapter_unavailable = b->adapter_unavailable - a->adapter_unavailable;
    for (i = 0; i < SSLASYNC_LATENCY_BUCKETS; i++)
        d->latency_us_log2[i] = b->latency_us_log2[i] - a->latency_us_log2[i];
}

/* Upper bound (us) of the histogram bucket holding the given percentile of
 * the shim's pause-to-callback latencies; 0 if there are none. */
static unsigned long long shim_latency_pct(const struct sslasync_stats *s,
                                           double pct)
{
    unsigned long long total = 0, seen = 0;
    int i;

    for (i = 0; i < SSLASYNC_LATENCY_BUCKETS; i++)
        total += s->latency_us_log2[i];
    if (total == 0)
        return 0;
    for (i = 0; i < SSLASYNC_LATENCY_BUCKETS; i++) {
        seen += s->latency_us_log2[i];
        if ((double)seen >= pct / 100.0 * (double)total)
            break;
    }
    if (i >= SSLASYNC_LATENCY_BUCKETS)
        i = SSLASYNC_LATENCY_BUCKETS - 1;
    return 1ULL << i;
}

static void sub_counters(simaccel_counters *d, const simaccel_counters *a,
                         const simaccel_counters *b)
{
    d->submissions = b->submissions - a->submissions;
    d->pauses = b->pauses - a->pauses;
    d->callbacks = b->callbacks - a->callbacks;
    d->fd_signals = b->fd_signals - a->fd_signals;
    d->eagains = b->eagains - a->eagains;
    d->completions = b->completions - a->completions;
    d->offloaded_ops = b->offloaded_ops - a->offloaded_ops;
    d->not_in_job = b->not_in_job - a->not_in_job;
}

static void dump_stuck(struct server *srv)
{
    struct conn *c;
    int shown = 0;

    fprintf(stderr, "async_server: no progress for %.0f s with %zu server "
            "connection(s) open - a wake-up was lost?\n", STALL_SECONDS,
            srv->live);
    for (c = srv->conns; c && shown < 10; c = c->next, shown++) {
        int queued;

        pthread_mutex_lock(&srv->q_lock);
        queued = c->queued;
        pthread_mutex_unlock(&srv->q_lock);
        fprintf(stderr, "  conn %p: state %s, paused %d, async status %d, "
                "job %s, queued %d\n", (void *)c, srv_state_name(c->state),
                c->paused, c->last_status,
                SSL_waiting_for_async(c->ssl) ? "paused" : "none", queued);
    }
}

static void check(struct run_result *r, int ok, const char *fmt, ...)
{
    size_t used = strlen(r->problems);
    va_list ap;

    if (ok)
        return;
    r->consistent = 0;
    if (used + 4 >= sizeof(r->problems))
        return;
    if (used)
        strcat(r->problems, "; ");
    va_start(ap, fmt);
    vsnprintf(r->problems + strlen(r->problems),
              sizeof(r->problems) - strlen(r->problems), fmt, ap);
    va_end(ap);
}

/* Cross-checks the run's counters against the accelerator's. */
static void check_run(const struct options *opt, struct run_result *r)
{
    const simaccel_counters *a = &r->acc;
    const struct sslasync_stats *sh = &r->shim;
    /* Pauses after which the device really worked and then notified. */
    unsigned long long device_pauses = a->pauses - a->eagains;
    /* Callbacks the shim's fd adapter made for an fd-only engine. */
    unsigned long long adapter_cb = sh->adapter_deliveries;

    r->consistent = 1;
    check(r, r->st.failed == 0, "%lu server connection(s) failed",
          r->st.failed);
    check(r, r->client_failed == 0, "%lu client connection(s) failed",
          r->client_failed);
    check(r, r->st.handshakes > 0, "no handshake completed");
    check(r, r->st.handshakes == r->client_ok,
          "server completed %lu handshakes but clients finished %lu",
          r->st.handshakes, r->client_ok);
    check(r, r->st.resumed == 0, "%lu handshakes were resumptions",
          r->st.resumed);
    check(r, a->pauses >= r->st.handshakes,
          "only %llu accelerator pauses for %lu handshakes (key not offloaded?)",
          (unsigned long long)a->pauses, r->st.handshakes);
    check(r, r->callbacks == a->callbacks + adapter_cb,
          "accelerator invoked %llu callbacks and the fd adapter %llu, "
          "application received %lu", (unsigned long long)a->callbacks,
          adapter_cb, r->callbacks);
    if (r->mode == MODE_CALLBACK)
        /* Each completed operation woke its connection exactly once: by a
         * callback (the engine's or the fd adapter's) or by its wait fd
         * (an fd-only engine with the adapter off). */
        check(r, r->callbacks + r->st.fd_wakeups == device_pauses,
              "callbacks (%lu) + fd wake-ups (%lu) != completed pauses (%llu)",
              r->callbacks, r->st.fd_wakeups, device_pauses);
    else
        check(r, r->callbacks == 0, "%lu callbacks in %s mode",
              r->callbacks, mode_name(r->mode));
    check(r, r->st.eagain_redrives == a->eagains,
          "EAGAIN re-drives (%lu) != accelerator EAGAIN refusals (%llu)",
          r->st.eagain_redrives, (unsigned long long)a->eagains);
    /* A wait-fd signal reaches either the application's epoll or the fd
     * adapter, never both. */
    check(r, r->st.fd_wakeups + adapter_cb == a->fd_signals,
          "fd wake-ups (%lu) + fd adapter callbacks (%llu) != accelerator "
          "fd signals (%llu)", r->st.fd_wakeups, adapter_cb,
          (unsigned long long)a->fd_signals);

    /* The fd adapter: on for every connection of a run or for none; every
     * pause it armed ended in exactly one callback (this program never
     * resumes, frees or clears a paused SSL itself, so nothing is dropped);
     * with it on, every pause at which the engine only signalled its fd
     * was armed, or left native and counted (the poller could not run). */
    check(r, r->st.adapter_ssls == 0 || r->st.adapter_ssls == r->st.accepted,
          "fd adapter on for %lu of %lu connections", r->st.adapter_ssls,
          r->st.accepted);
    check(r, sh->adapter_arms == sh->adapter_deliveries + sh->adapter_drops,
          "fd adapter armed %llu pauses, delivered %llu, dropped %llu",
          (unsigned long long)sh->adapter_arms,
          (unsigned long long)sh->adapter_deliveries,
          (unsigned long long)sh->adapter_drops);
    check(r, sh->adapter_drops == 0, "fd adapter dropped %llu armed pauses",
          (unsigned long long)sh->adapter_drops);
    if (r->mode == MODE_CALLBACK && opt->expect_adapter) {
        check(r, r->adapter_on, "the fd adapter is off");
        if (opt->style == SIMACCEL_STYLE_FD)
            check(r, adapter_cb > 0, "fd-only engine, but no callback came "
                  "from the fd adapter");
    }
    if (r->adapter_on)
        check(r, sh->adapter_arms + sh->adapter_unavailable == a->fd_signals,
              "fd adapter armed %llu pauses and left %llu native, the "
              "engine signalled %llu fds", (unsigned long long)sh->adapter_arms,
              (unsigned long long)sh->adapter_unavailable,
              (unsigned long long)a->fd_signals);
    else
        check(r, sh->adapter_arms == 0, "fd adapter armed %llu pauses "
              "while off", (unsigned long long)sh->adapter_arms);
    check(r, r->callbacks + r->st.fd_wakeups + r->st.eagain_redrives
             >= r->st.want_async,
          "%lu pauses but only %lu wake-ups", r->st.want_async,
          r->callbacks + r->st.fd_wakeups + r->st.eagain_redrives);
    if (r->have_shim_stats) {
        /* The shim counts on its side of the same events. */
        check(r, r->shim.callbacks_delivered == r->callbacks,
              "shim delivered %llu callbacks, application received %lu",
              (unsigned long long)r->shim.callbacks_delivered, r->callbacks);
        check(r, r->shim.callbacks_dropped == 0,
              "shim dropped %llu completions",
              (unsigned long long)r->shim.callbacks_dropped);
        check(r, r->shim.pauses == r->st.want_async,
              "shim saw %llu pauses, application %lu",
              (unsigned long long)r->shim.pauses, r->st.want_async);
        check(r, r->shim.status_eagain == r->st.status_eagain,
              "shim saw %llu EAGAIN statuses, application %lu",
              (unsigned long long)r->shim.status_eagain, r->st.status_eagain);
    }
    check(r, atomic_load(&g_bad_callbacks) == 0,
          "%lu callbacks with a wrong SSL/arg",
          (unsigned long)atomic_load(&g_bad_callbacks));
}

static void run_once(const struct options *opt, EVP_PKEY *key, X509 *cert,
                     enum run_mode mode, struct run_result *r)
{
    struct server *srv = calloc(1, sizeof(*srv));
    struct loadgen *lg = calloc(1, sizeof(*lg));
    struct epoll_event ev, evs[MAX_EVENTS];
    simaccel_counters before, after;
    struct sslasync_stats shim_before, shim_after;
    socklen_t alen;
    pthread_t tid;
    double t0;
    int i, stalled = 0;

    if (srv == NULL || lg == NULL)
        die("out of memory");
    memset(r, 0, sizeof(*r));
    r->mode = mode;

    srv->mode = mode;
    srv->loop_thread = pthread_self();
    pthread_mutex_init(&srv->q_lock, NULL);
    srv->ctx = make_server_ctx(opt, key, cert, mode);

    srv->epfd = epoll_create1(EPOLL_CLOEXEC);
    srv->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    srv->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK
                                     | SOCK_CLOEXEC, 0);
    if (srv->epfd < 0 || srv->wake_fd < 0 || srv->listen_fd < 0)
        die("epoll/eventfd/socket: %s", strerror(errno));
    srv->addr.sin_family = AF_INET;
    srv->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    srv->addr.sin_port = 0;      /* ephemeral */
    alen = sizeof(srv->addr);
    if (bind(srv->listen_fd, (struct sockaddr *)&srv->addr,
             sizeof(srv->addr)) != 0
        || listen(srv->listen_fd, 1024) != 0
        || getsockname(srv->listen_fd, (struct sockaddr *)&srv->addr,
                       &alen) != 0)
        die("listen on 127.0.0.1: %s", strerror(errno));

    srv->listen_w.kind = W_LISTEN;
    srv->wake_w.kind = W_WAKE;
    ev.events = EPOLLIN;
    ev.data.ptr = &srv->listen_w;
    if (epoll_ctl(srv->epfd, EPOLL_CTL_ADD, srv->listen_fd, &ev) != 0)
        die("epoll_ctl(listen)");
    ev.events = EPOLLIN;
    ev.data.ptr = &srv->wake_w;
    if (epoll_ctl(srv->epfd, EPOLL_CTL_ADD, srv->wake_fd, &ev) != 0)
        die("epoll_ctl(eventfd)");

    lg->opt = opt;
    lg->addr = srv->addr;
    lg->ctx = make_client_ctx(opt);
    lg->epfd = epoll_create1(EPOLL_CLOEXEC);
    lg->cl = calloc((size_t)opt->clients, sizeof(*lg->cl));
    if (lg->epfd < 0 || lg->cl == NULL)
        die("load generator setup");
    for (i = 0; i < opt->clients; i++) {
        lg->cl[i].lg = lg;
        lg->cl[i].idx = i;
        lg->cl[i].fd = -1;
        lg->cl[i].w.kind = W_SOCKET;
        lg->cl[i].w.obj = &lg->cl[i];
    }

    simaccel_get_counters(&before);
    r->have_shim_stats = shim_stats(&shim_before);
    t0 = now_s();
    lg->stop_at = opt->duration_s > 0 ? t0 + opt->duration_s
                                      : t0 + MAX_DURATION_S;
    srv->last_progress = t0;
    if (pthread_create(&tid, NULL, loadgen_main, lg) != 0)
        die("pthread_create");

    /* The event loop.  Runs until the load generator is done and every
     * server connection has been closed. */
    while (!(atomic_load(&lg->finished) && srv->live == 0)) {
        int n = epoll_wait(srv->epfd, evs, MAX_EVENTS, LOOP_TICK_MS);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait: %s", strerror(errno));
        }
        for (i = 0; i < n; i++) {
            struct watch *w = evs[i].data.ptr;
            struct conn *c = w->obj;

            switch (w->kind) {
            case W_LISTEN:
                server_accept(srv, srv->ctx);
                break;
            case W_WAKE:
                server_drain_ready(srv);
                break;
            case W_SOCKET:
                if (c->state == S_CLOSED)
                    break;
                if (c->paused) {
                    /* Only EPOLLHUP/EPOLLERR get here (interest is 0) and
                     * they are level-triggered: park the socket outside
                     * the set until the operation completes. */
                    sock_unregister(c);
                    break;
                }
                conn_drive(c);
                break;
            case W_ASYNC_FD:
                if (c->state == S_CLOSED)
                    break;
                if (!c->paused) {
                    srv->st.spurious_wakeups++;
                    break;
                }
                srv->st.fd_wakeups++;
                c->paused = 0;
                conn_drive(c);
                break;
            }
        }
        server_free_graves(srv);

        /* Handshakes complete many times a second; a long silence means a
         * paused connection that nobody will ever resume. */
        if (now_s() - srv->last_progress > STALL_SECONDS) {
            dump_stuck(srv);
            stalled = 1;
            break;
        }
    }
    if (stalled) {
        /* Paused jobs cannot be freed safely; report and give up. */
        fprintf(stderr, "async_server: %s mode stalled, aborting\n",
                mode_name(mode));
        exit(3);
    }

    pthread_join(tid, NULL);
    r->elapsed = now_s() - t0;
    simaccel_get_counters(&after);
    sub_counters(&r->acc, &before, &after);
    if (!shim_stats(&shim_after))
        r->have_shim_stats = 0;
    sub_shim_stats(&r->shim, &shim_before, &shim_after);

    r->st = srv->st;
    r->callbacks = atomic_load(&srv->cb.callbacks);
    r->callbacks_reentrant = atomic_load(&srv->cb.callbacks_reentrant);
    r->eventfd_writes = atomic_load(&srv->cb.eventfd_writes);
    r->adapter_on = srv->st.adapter_ssls > 0;
    r->client_ok = lg->ok;
    r->client_failed = lg->failed;
    r->hs_latency_ms = lg->ok ? lg->hs_latency_sum * 1e3 / (double)lg->ok : 0;
    r->hs_latency_max_ms = lg->hs_latency_max * 1e3;
    check_run(opt, r);

    close(srv->listen_fd);
    close(srv->wake_fd);
    close(srv->epfd);
    close(lg->epfd);
    SSL_CTX_free(srv->ctx);
    SSL_CTX_free(lg->ctx);
    pthread_mutex_destroy(&srv->q_lock);
    free(lg->cl);
    free(lg);
    free(srv);
}

/* ------------------------------------------------------------------------ */
/* Report                                                                    */
/* ------------------------------------------------------------------------ */

static void print_results(const struct options *opt,
                          const struct run_result *r, int n)
{
    int i, show_adapter = 0;

    /* The fd adapter's rows, when it was on in a run or did anything. */
    for (i = 0; i < n; i++)
        if (r[i].adapter_on || r[i].shim.adapter_arms
            || r[i].shim.adapter_unavailable)
            show_adapter = 1;

#define ROW(label, fmt, expr)                                   \
    do {                                                        \
        printf("  %-30s", label);                               \
        for (i = 0; i < n; i++)                                 \
            printf(fmt, expr);                                  \
        printf("\n");                                           \
    } while (0)

    printf("  %-30s", "");
    for (i = 0; i < n; i++)
        printf("%16s", r[i].mode == MODE_CALLBACK ? "callback mode"
                                                  : "fd mode");
    printf("\n");
    if (show_adapter)
        ROW("fd adapter", "%16s", r[i].adapter_on ? "on" : "off");
    ROW("handshakes completed", "%16lu", r[i].st.handshakes);
    ROW("handshakes failed", "%16lu", r[i].st.failed + r[i].client_failed);
    ROW("accelerator pauses", "%16llu",
        (unsigned long long)r[i].acc.pauses);
    ROW("callbacks delivered", "%16lu", r[i].callbacks);
    ROW("  of which re-entrant", "%16lu", r[i].callbacks_reentrant);
    ROW("EAGAIN re-drives", "%16lu", r[i].st.eagain_redrives);
    ROW("fd wakeups", "%16lu", r[i].st.fd_wakeups);
    ROW("eventfd wakeups", "%16lu", r[i].st.eventfd_wakeups);
    if (show_adapter) {
        ROW("adapter: pauses armed", "%16llu",
            (unsigned long long)r[i].shim.adapter_arms);
        ROW("adapter: callbacks delivered", "%16llu",
            (unsigned long long)r[i].shim.adapter_deliveries);
        ROW("adapter: arms dropped", "%16llu",
            (unsigned long long)r[i].shim.adapter_drops);
        ROW("adapter: pauses left native", "%16llu",
            (unsigned long long)r[i].shim.adapter_unavailable);
    }
    if (opt->verbose) {
        ROW("WANT_ASYNC returns", "%16lu", r[i].st.want_async);
        ROW("  status OK", "%16lu", r[i].st.status_ok);
        ROW("  status EAGAIN", "%16lu", r[i].st.status_eagain);
        ROW("  status UNSUPPORTED", "%16lu", r[i].st.status_unsupported);
        ROW("  status ERR", "%16lu", r[i].st.status_err);
        ROW("eventfd writes", "%16lu", r[i].eventfd_writes);
        ROW("spurious wakeups", "%16lu", r[i].st.spurious_wakeups);
        ROW("job-pool re-drives", "%16lu", r[i].st.job_redrives);
        ROW("accel submissions", "%16llu",
            (unsigned long long)r[i].acc.submissions);
        ROW("accel callbacks", "%16llu",
            (unsigned long long)r[i].acc.callbacks);
        ROW("accel fd signals", "%16llu",
            (unsigned long long)r[i].acc.fd_signals);
        ROW("accel EAGAIN refusals", "%16llu",
            (unsigned long long)r[i].acc.eagains);
        ROW("accel offloaded ops", "%16llu",
            (unsigned long long)r[i].acc.offloaded_ops);
        ROW("accel ops outside a job", "%16llu",
            (unsigned long long)r[i].acc.not_in_job);
    }
    if (r[0].have_shim_stats) {
        ROW("shim: callbacks delivered", "%16llu",
            (unsigned long long)r[i].shim.callbacks_delivered);
        ROW("shim: completions dropped", "%16llu",
            (unsigned long long)r[i].shim.callbacks_dropped);
        ROW("shim: pauses seen", "%16llu",
            (unsigned long long)r[i].shim.pauses);
        ROW("shim: pause->callback p50 <us", "%16llu",
            shim_latency_pct(&r[i].shim, 50));
        ROW("shim: pause->callback p99 <us", "%16llu",
            shim_latency_pct(&r[i].shim, 99));
    }
    ROW("mean handshake latency (ms)", "%16.2f", r[i].hs_latency_ms);
    ROW("max handshake latency (ms)", "%16.2f", r[i].hs_latency_max_ms);
    ROW("elapsed (s)", "%16.2f", r[i].elapsed);
    ROW("handshakes per second", "%16.1f",
        r[i].elapsed > 0 ? (double)r[i].st.handshakes / r[i].elapsed : 0.0);
    ROW("counts consistent", "%16s", r[i].consistent ? "yes" : "NO");
#undef ROW
    for (i = 0; i < n; i++)
        if (!r[i].consistent)
            printf("  %s mode: %s\n", mode_name(r[i].mode), r[i].problems);
}

/* Each client costs up to five descriptors: its socket, the server's
 * socket, the engine's wait fd, the device's copy, and the fd adapter's
 * copy while the adapter watches it. */
static void raise_fd_limit(int clients)
{
    rlim_t need = (rlim_t)clients * 5 + 64;
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= need)
        return;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > need
                  ? need : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < need)
        die("--clients %d needs %lu file descriptors, the limit is %lu",
            clients, (unsigned long)need, (unsigned long)rl.rlim_cur);
}

/* Which shared object really provides the async callback API in this
 * process: the sslasync shim (linked ahead of libssl or preloaded) or the
 * system libssl. */
static const char *api_provider(void)
{
    int (*fn)(SSL_CTX *, SSL_async_callback_fn) = SSL_CTX_set_async_callback;
    void *addr;
    Dl_info info;

    if (!api_present())
        return "nothing (this libssl has none)";
    memcpy(&addr, &fn, sizeof(addr));
    if (dladdr(addr, &info) && info.dli_fname)
        return info.dli_fname;
    return "unknown";
}

/* ------------------------------------------------------------------------ */
/* Command line                                                              */
/* ------------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f,
"usage: async_server [options]\n"
"  --compare              run callback mode, then fd mode (default)\n"
"  --mode callback|fd     run one mode only\n"
"  --style callback|inline|fd|eagain\n"
"                         accelerator notification style (default callback)\n"
"  --fd-callbacks         callback mode: turn on the sslasync shim's fd adapter\n"
"                         (callbacks for an fd-only engine, e.g. --style fd)\n"
"  --latency-us N         device latency per operation (default 200)\n"
"  --eagain-every N       style eagain: refuse every Nth submission (default 4)\n"
"  --clients N            concurrent client connections (default 64)\n"
"  --handshakes N         stop after N handshakes per client (default: none)\n"
"  --duration S           stop starting connections after S seconds\n"
"                         (default 5, 0 = bounded by --handshakes only)\n"
"  --key ec|rsa           server key type (default ec)\n"
"  --tls 1.2|1.3          protocol version (default 1.3)\n"
"  --threads 1            server event-loop threads (only 1 is supported)\n"
"  --verbose              print status and accelerator counters too\n"
"  --require-shim         exit with an error unless the sslasync shim (not the\n"
"                         system libssl) provides the async callback API\n");
}

static long parse_num(const char *opt, const char *s, long lo, long hi)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) {
        fprintf(stderr, "async_server: %s: expected an integer in "
                "[%ld, %ld]\n", opt, lo, hi);
        exit(2);
    }
    return v;
}

static void parse_args(int argc, char **argv, struct options *opt)
{
    enum { O_COMPARE = 256, O_MODE, O_STYLE, O_LATENCY, O_EAGAIN, O_CLIENTS,
           O_HANDSHAKES, O_DURATION, O_KEY, O_TLS, O_THREADS, O_VERBOSE,
           O_REQUIRE_SHIM, O_FD_CALLBACKS, O_HELP };
    static const struct option longopts[] = {
        { "compare", no_argument, NULL, O_COMPARE },
        { "mode", required_argument, NULL, O_MODE },
        { "style", required_argument, NULL, O_STYLE },
        { "latency-us", required_argument, NULL, O_LATENCY },
        { "eagain-every", required_argument, NULL, O_EAGAIN },
        { "clients", required_argument, NULL, O_CLIENTS },
        { "handshakes", required_argument, NULL, O_HANDSHAKES },
        { "duration", required_argument, NULL, O_DURATION },
        { "key", required_argument, NULL, O_KEY },
        { "tls", required_argument, NULL, O_TLS },
        { "threads", required_argument, NULL, O_THREADS },
        { "verbose", no_argument, NULL, O_VERBOSE },
        { "require-shim", no_argument, NULL, O_REQUIRE_SHIM },
        { "fd-callbacks", no_argument, NULL, O_FD_CALLBACKS },
        { "help", no_argument, NULL, O_HELP },
        { NULL, 0, NULL, 0 }
    };
    int ch, have_mode = 0, want_compare = 0;
    char *end;

    memset(opt, 0, sizeof(*opt));
    opt->style = SIMACCEL_STYLE_CALLBACK;
    opt->latency_us = 200;
    opt->eagain_every = 4;
    opt->clients = 64;
    opt->handshakes_per_client = 0;
    opt->duration_s = 5.0;
    opt->key = "ec";
    opt->tls_version = TLS1_3_VERSION;
    opt->mode = MODE_CALLBACK;

    while ((ch = getopt_long(argc, argv, "hv", longopts, NULL)) != -1) {
        switch (ch) {
        case O_COMPARE:
            want_compare = 1;
            break;
        case O_MODE:
            have_mode = 1;
            if (strcmp(optarg, "callback") == 0)
                opt->mode = MODE_CALLBACK;
            else if (strcmp(optarg, "fd") == 0)
                opt->mode = MODE_FD;
            else
                goto bad;
            break;
        case O_STYLE:
            if (strcmp(optarg, "callback") == 0)
                opt->style = SIMACCEL_STYLE_CALLBACK;
            else if (strcmp(optarg, "inline") == 0)
                opt->style = SIMACCEL_STYLE_INLINE;
            else if (strcmp(optarg, "fd") == 0)
                opt->style = SIMACCEL_STYLE_FD;
            else if (strcmp(optarg, "eagain") == 0)
                opt->style = SIMACCEL_STYLE_EAGAIN;
            else
                goto bad;
            break;
        case O_LATENCY:
            opt->latency_us = (unsigned)parse_num("--latency-us", optarg, 0,
                                                  1000000);
            break;
        case O_EAGAIN:
            opt->eagain_every = (unsigned)parse_num("--eagain-every", optarg,
                                                    1, 1000000);
            break;
        case O_CLIENTS:
            opt->clients = (int)parse_num("--clients", optarg, 1,
                                          MAX_CLIENTS);
            break;
        case O_HANDSHAKES:
            opt->handshakes_per_client = parse_num("--handshakes", optarg, 0,
                                                   1000000);
            break;
        case O_DURATION:
            errno = 0;
            opt->duration_s = strtod(optarg, &end);
            if (errno || *end || opt->duration_s < 0
                || opt->duration_s > MAX_DURATION_S)
                goto bad;
            break;
        case O_KEY:
            if (strcmp(optarg, "ec") != 0 && strcmp(optarg, "rsa") != 0)
                goto bad;
            opt->key = optarg;
            break;
        case O_TLS:
            if (strcmp(optarg, "1.2") == 0)
                opt->tls_version = TLS1_2_VERSION;
            else if (strcmp(optarg, "1.3") == 0)
                opt->tls_version = TLS1_3_VERSION;
            else
                goto bad;
            break;
        case O_THREADS:
            /* One loop thread is the whole point of the design; the option
             * exists so scripts can say so explicitly. */
            if (parse_num("--threads", optarg, 1, 1) != 1)
                goto bad;
            break;
        case 'v':
        case O_VERBOSE:
            opt->verbose = 1;
            break;
        case O_REQUIRE_SHIM:
            opt->require_shim = 1;
            break;
        case O_FD_CALLBACKS:
            opt->fd_callbacks = 1;
            break;
        case 'h':
        case O_HELP:
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            exit(2);
        }
    }
    if (optind != argc) {
        usage(stderr);
        exit(2);
    }
    if (opt->duration_s == 0 && opt->handshakes_per_client == 0) {
        fprintf(stderr, "async_server: --duration 0 needs --handshakes\n");
        exit(2);
    }
    /* Comparing is the default; an explicit --mode runs just that mode. */
    opt->compare = want_compare || !have_mode;
    return;
bad:
    fprintf(stderr, "async_server: invalid value '%s'\n", optarg);
    usage(stderr);
    exit(2);
}

int main(int argc, char **argv)
{
    struct options opt;
    simaccel_config cfg;
    struct run_result results[2];
    EVP_PKEY *key;
    X509 *cert;
    const char *provider, *expect;
    int nruns = 0, i, rc = 0;

    parse_args(argc, argv, &opt);

    /* The test harness says which implementation it meant to put in front
     * (SSLASYNC_EXPECT=shim|native); a preload or link order that silently
     * did not take effect must fail rather than measure the wrong thing. */
    provider = api_provider();
    expect = getenv("SSLASYNC_EXPECT");
    if (expect && strcmp(expect, "shim") == 0)
        opt.require_shim = 1;
    if (opt.require_shim && strstr(provider, "libsslasync") == NULL) {
        fprintf(stderr, "async_server: the async callback API comes from %s, "
                "not from libsslasync (link it before -lssl with "
                "--no-as-needed, or LD_PRELOAD it)\n", provider);
        return 2;
    }
    /* The shim's fd adapter must really be on where it was asked for. */
    opt.expect_adapter = opt.fd_callbacks
        || (opt.require_shim && getenv("SSLASYNC_FD_CALLBACKS") != NULL
            && strcmp(getenv("SSLASYNC_FD_CALLBACKS"), "1") == 0);
    if (expect && strcmp(expect, "native") == 0
        && strstr(provider, "libsslasync") != NULL) {
        fprintf(stderr, "async_server: expected the native libssl API but "
                "%s is in front\n", provider);
        return 2;
    }

    if (opt.fd_callbacks && shim_symbol("sslasync_CTX_set_fd_callbacks") == NULL) {
        fprintf(stderr, "async_server: --fd-callbacks needs sslasync 0.3.0 "
                "or later in front of libssl (%s provides the API)\n",
                provider);
        return 2;
    }
    /* OpenSSL 1.1.1 without the shim: no callbacks at all, fd mode only. */
    if (!api_present()
        && (opt.fd_callbacks || (!opt.compare && opt.mode == MODE_CALLBACK))) {
        fprintf(stderr, "async_server: callback mode needs the async "
                "callback API, which %s lacks (put the sslasync shim in "
                "front); --mode fd works\n", OpenSSL_version(OPENSSL_VERSION));
        return 2;
    }

    /* A client that vanishes mid-write must not kill the server. */
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit(opt.clients);

    memset(&cfg, 0, sizeof(cfg));
    cfg.style = opt.style;
    cfg.latency_us = opt.latency_us;
    cfg.eagain_every = opt.eagain_every;
    /* The accelerator has to be in place before the key exists: a key
     * created earlier would silently not be offloaded. */
    if (!simaccel_install(&cfg))
        die("simaccel_install failed");
    key = simaccel_make_key(opt.key);
    cert = key ? simaccel_make_cert(key) : NULL;
    if (key == NULL || cert == NULL)
        die("cannot create the %s server key/certificate", opt.key);

    printf("async_server: %s key, TLS %s, %d concurrent clients, ",
           opt.key, opt.tls_version == TLS1_3_VERSION ? "1.3" : "1.2",
           opt.clients);
    if (opt.handshakes_per_client > 0)
        printf("%ld handshakes per client, ", opt.handshakes_per_client);
    if (opt.duration_s > 0)
        printf("%.1f s per mode, ", opt.duration_s);
    printf("accelerator style %s%s, latency %u us",
           style_name(opt.style),
           opt.style == SIMACCEL_STYLE_FD ? " (fd-only engine)" : "",
           opt.latency_us);
    if (opt.style == SIMACCEL_STYLE_EAGAIN)
        printf(", EAGAIN every %u", opt.eagain_every);
    if (opt.fd_callbacks)
        printf(", fd adapter on in callback mode");
    printf("\nasync callback API provided by %s\n\n", provider);
    fflush(stdout);

    if (opt.compare) {
        if (api_present())
            run_once(&opt, key, cert, MODE_CALLBACK, &results[nruns++]);
        else
            printf("(no async callback API in this process: fd mode only)\n");
        run_once(&opt, key, cert, MODE_FD, &results[nruns++]);
    } else {
        run_once(&opt, key, cert, opt.mode, &results[nruns++]);
    }
    print_results(&opt, results, nruns);

    for (i = 0; i < nruns; i++)
        if (!results[i].consistent)
            rc = 1;

    X509_free(cert);
    EVP_PKEY_free(key);
    simaccel_uninstall();
    printf("\nresult: %s\n", rc == 0 ? "OK" : "FAILED");
    /* Before any exit-time output of the libraries (the shim prints its
     * totals on stderr at exit when SSLASYNC_STATS=1). */
    fflush(stdout);
    return rc;
}
