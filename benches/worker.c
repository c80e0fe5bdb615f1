/*
 * The measuring side of sslasync-bench. Everything here is plain OpenSSL 3
 * application code; a worker started with the shim preloaded runs exactly
 * the same instructions, so any difference is the shim's.
 *
 * One event-loop thread (this one, pinned to one CPU) drives every
 * connection; the simulated accelerator's device thread (pinned to the
 * other CPU) completes offloaded operations. In callback mode the
 * completion callback pushes the connection onto a lock-free ready stack and
 * pokes one eventfd only if the loop is asleep; in fd mode the loop polls
 * each SSL's async wait fd with epoll, as Intel's async nginx does.
 *
 * With an fd-only accelerator (SIMACCEL_STYLE_FD) callback mode needs the
 * shim's fd adapter (sslasync_CTX_set_fd_callbacks, found with dlsym: the
 * native side has none), which watches the wait fd and calls back.
 *
 * Built against OpenSSL 1.1.1 (no callback API in its libssl), the five API
 * functions are weak references: present only when the shim is preloaded.
 */
#define _GNU_SOURCE
#include "bench.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <openssl/async.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

/* For the stats struct; on OpenSSL 1.1.1 also the five functions, the
 * callback type and ASYNC_STATUS_*, which <openssl/ssl.h> lacks there. The
 * shim's own functions are looked up with dlsym, never linked. */
#include "sslasync.h"

#if OPENSSL_VERSION_NUMBER < 0x30000000L
#define BENCH_OSSL111 1
#pragma weak SSL_CTX_set_async_callback
#pragma weak SSL_CTX_set_async_callback_arg
#pragma weak SSL_set_async_callback
#pragma weak SSL_set_async_callback_arg
#pragma weak SSL_get_async_status
#else
#define BENCH_OSSL111 0
#endif

#include "simaccel.h"
#include "simaccel_internal.h"

#define DIE(...) die(__LINE__, __VA_ARGS__)

__attribute__((noreturn, format(printf, 2, 3)))
static void die(int line, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "sslasync-bench worker[%d] (worker.c:%d): ", (int)getpid(), line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    ERR_print_errors_fp(stderr);
    exit(2);
}

static double now_s(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static long long now_ns(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/*
 * Latency probe (cmd_lat): the moment the device completes an operation is
 * the fixture's write to the wait fd, made on its device thread. The bench
 * is linked with --wrap=write, so that write (the static fixture's) comes
 * through here first and is stamped just before the fd is signalled.
 * Shared libraries (libssl, the shim) keep the real write.
 */
static atomic_int lat_probe;
static atomic_llong lat_done_ns, lat_cb_ns, lat_woke_ns;

ssize_t __real_write(int fd, const void *buf, size_t n);
ssize_t __wrap_write(int fd, const void *buf, size_t n);

ssize_t __wrap_write(int fd, const void *buf, size_t n)
{
    if (atomic_load_explicit(&lat_probe, memory_order_relaxed) && n == sizeof(uint64_t)
        && simaccel_on_device_thread())
        atomic_store(&lat_done_ns, now_ns());
    return __real_write(fd, buf, n);
}

/* The shim's own functions, when it is preloaded (dlsym: the native side
 * has none). */
static int (*shim_CTX_set_fd_callbacks)(SSL_CTX *ctx, int on);
static int (*shim_set_fd_callbacks)(SSL *s, int on);
static int (*shim_stats_get)(struct sslasync_stats *out, size_t size);

static void find_shim_functions(void)
{
    *(void **)&shim_CTX_set_fd_callbacks = dlsym(RTLD_DEFAULT, "sslasync_CTX_set_fd_callbacks");
    *(void **)&shim_set_fd_callbacks = dlsym(RTLD_DEFAULT, "sslasync_set_fd_callbacks");
    *(void **)&shim_stats_get = dlsym(RTLD_DEFAULT, "sslasync_stats_get");
}

/* Whether the process has the callback API at all (1.1.1 without the shim: no). */
static int have_api(void)
{
#if BENCH_OSSL111
    return SSL_get_async_status != NULL && SSL_set_async_callback != NULL;
#else
    return 1;
#endif
}

/*
 * Time this process's threads spent runnable but not running (schedstat
 * run_delay), summed over threads: the direct measure of other processes
 * taking our CPUs during a cell. The driver retries disturbed samples.
 */
static long long run_delay_ns(void)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    long long sum = 0;

    if (d == NULL)
        return 0;
    while ((e = readdir(d)) != NULL) {
        char path[300];
        unsigned long long run, wait;
        FILE *f;

        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "/proc/self/task/%s/schedstat", e->d_name);
        if ((f = fopen(path, "r")) == NULL)
            continue;
        if (fscanf(f, "%llu %llu", &run, &wait) == 2)
            sum += (long long)wait;
        fclose(f);
    }
    closedir(d);
    return sum;
}

static long long cell_delay0;

static void cell_begin(void)
{
    cell_delay0 = run_delay_ns();
}

static void cell_report(long count, double seconds)
{
    printf("ok %ld %.9f %lld\n", count, seconds, run_delay_ns() - cell_delay0);
}

/* ------------------------------------------------------------ connections */

struct conn {
    SSL *srv, *cli;
    struct conn *rnext;      /* ready stack link (callback side) */
    int cli_done, srv_done;
    int afd;                 /* async wait fd registered with epoll, or -1 */
};

static struct {
    _Atomic(struct conn *) ready;
    atomic_int sleeping;
    int evfd, ep;
    int fdmode;
    /* dasync-style device: the status stays UNSUPPORTED, the callback has
     * already run when WANT_ASYNC comes back. */
    int inline_style;
    /* FIFO of runnable connections, owned by the loop thread. */
    struct conn **rq;
    size_t rq_cap, rq_head, rq_len;
} L = { .evfd = -1, .ep = -1 };

static void rq_reset(size_t cap)
{
    if (cap > L.rq_cap) {
        free(L.rq);
        L.rq = calloc(cap, sizeof(*L.rq));
        if (L.rq == NULL)
            DIE("out of memory");
        L.rq_cap = cap;
    }
    L.rq_head = L.rq_len = 0;
}

static void rq_push(struct conn *c)
{
    if (L.rq_len == L.rq_cap)
        DIE("run queue overflow");
    L.rq[(L.rq_head + L.rq_len++) % L.rq_cap] = c;
}

static struct conn *rq_pop(void)
{
    struct conn *c;

    if (L.rq_len == 0)
        return NULL;
    c = L.rq[L.rq_head];
    L.rq_head = (L.rq_head + 1) % L.rq_cap;
    L.rq_len--;
    return c;
}

/*
 * The completion callback: may run on the device thread or, for the inline
 * style, inside SSL_write on the loop thread before it returns. It only
 * publishes the connection. The seq_cst push pairs with the loop's seq_cst
 * "sleeping" store so a wake-up is never lost.
 */
static int on_async(SSL *s, void *arg)
{
    struct conn *c = arg;
    struct conn *head = atomic_load_explicit(&L.ready, memory_order_relaxed);
    uint64_t one = 1;

    (void)s;
    do {
        c->rnext = head;
    } while (!atomic_compare_exchange_weak(&L.ready, &head, c));
    if (atomic_load(&L.sleeping) && write(L.evfd, &one, sizeof(one)) < 0)
        abort();
    return 1;
}

/* The latency probe's callback: stamps the moment the application learns
 * of the completion, then does what on_async does. */
static int on_async_lat(SSL *s, void *arg)
{
    atomic_store(&lat_cb_ns, now_ns());
    return on_async(s, arg);
}

/* A second callback, so the CTX setter benchmark really changes something. */
static int on_async_other(SSL *s, void *arg)
{
    return on_async(s, arg);
}

/* Moves what the callbacks published onto the run queue, oldest first. */
static int take_ready(void)
{
    struct conn *l = atomic_exchange(&L.ready, NULL), *rev = NULL;
    int n = 0;

    while (l != NULL) {
        struct conn *next = l->rnext;

        l->rnext = rev;
        rev = l;
        l = next;
    }
    for (; rev != NULL; rev = rev->rnext, n++)
        rq_push(rev);
    return n;
}

/* The latency probe: when the loop thread woke up. */
static inline void stamp_woke(void)
{
    if (atomic_load_explicit(&lat_probe, memory_order_relaxed))
        atomic_store(&lat_woke_ns, now_ns());
}

/* Blocks until at least one connection became runnable. */
static void wait_events(void)
{
    struct epoll_event ev[256];
    int n, i;

    if (!L.fdmode) {
        if (take_ready()) {
            stamp_woke();
            return;
        }
        atomic_store(&L.sleeping, 1);
        if (atomic_load(&L.ready) == NULL) {
            n = epoll_wait(L.ep, ev, 1, 20000);
            if (n == 0)
                DIE("no completion callback for 20 s");
            if (n < 0 && errno != EINTR)
                DIE("epoll_wait: %s", strerror(errno));
        }
        stamp_woke();
        atomic_store(&L.sleeping, 0);
        {
            uint64_t v;

            if (read(L.evfd, &v, sizeof(v)) < 0 && errno != EAGAIN)
                DIE("read(eventfd): %s", strerror(errno));
        }
        take_ready();
        return;
    }
    n = epoll_wait(L.ep, ev, 256, 20000);
    stamp_woke();
    if (n == 0)
        DIE("no async fd became readable for 20 s");
    if (n < 0 && errno != EINTR)
        DIE("epoll_wait: %s", strerror(errno));
    for (i = 0; i < n; i++)
        if (ev[i].data.ptr != NULL)
            rq_push(ev[i].data.ptr);
}

/*
 * After SSL_ERROR_WANT_ASYNC, what a real server does: read the status, and
 * either wait for the callback or watch the wait fd. The status read is part
 * of the measured path on purpose (FDio VPP and g3 do it every time).
 */
static void async_wait_begin(struct conn *c)
{
    int st = ASYNC_STATUS_UNSUPPORTED;

    /* (A program on OpenSSL 1.1.1 without the shim has no status to read.) */
    if (have_api() && SSL_get_async_status(c->srv, &st) != 1)
        DIE("SSL_get_async_status failed after WANT_ASYNC");
    if (!L.fdmode) {
        if (st != ASYNC_STATUS_OK && !(L.inline_style && st == ASYNC_STATUS_UNSUPPORTED))
            DIE("callback mode but status %d: the callback is not wired", st);
        return;
    }
    if (st == ASYNC_STATUS_OK)
        DIE("fd mode but the engine saw a callback");
    if (c->afd < 0) {
        OSSL_ASYNC_FD fd;
        size_t nfd = 0;
        struct epoll_event e = { .events = EPOLLIN, .data.ptr = c };

        if (!SSL_get_all_async_fds(c->srv, NULL, &nfd) || nfd != 1)
            DIE("expected one async fd, got %zu", nfd);
        if (!SSL_get_all_async_fds(c->srv, &fd, &nfd))
            DIE("SSL_get_all_async_fds");
        if (epoll_ctl(L.ep, EPOLL_CTL_ADD, fd, &e) != 0)
            DIE("epoll_ctl(ADD): %s", strerror(errno));
        c->afd = fd;
    }
}

/* ------------------------------------------------------------ keys, ctxs */

static struct {
    EVP_PKEY *key;
    X509 *cert;
} keys[2];                      /* 0: ec (P-256), 1: rsa (2048) */
/*
 * How a handshake cell is run: the device's style and how the application
 * learns of completions.
 *   cb   callback-style device (QAT-like), the application's callback
 *   fd   callback-style device, the application polls the wait fds
 *   acb  fd-only device, callback through the shim's fd adapter (on for the
 *        server CTX with sslasync_CTX_set_fd_callbacks)
 *   afd  fd-only device, the application polls the wait fds
 */
enum hs_mode { M_CB, M_FD, M_ACB, M_AFD, NMODES };
static const char *const mode_names[NMODES] = { "cb", "fd", "acb", "afd" };

static int mode_index(const char *m)
{
    int i;

    for (i = 0; i < NMODES; i++)
        if (strcmp(m, mode_names[i]) == 0)
            return i;
    DIE("unknown handshake mode %s", m);
}

static int mode_fd(int mode)
{
    return mode == M_FD || mode == M_AFD;
}

/* [key][tls12?][0: callback, 1: none (fd, afd), 2: callback + fd adapter] */
static SSL_CTX *server_ctxs[2][2][3];
static SSL_CTX *client_ctxs[2];        /* [tls12?] */
static SSL_CTX *plain_server_ctx;      /* no async mode: rtt/io pairs */

static int key_index(const char *k)
{
    if (strcmp(k, "ec") == 0)
        return 0;
    if (strcmp(k, "rsa") == 0)
        return 1;
    DIE("unknown key type %s", k);
}

static void need_key(int k)
{
    if (keys[k].key != NULL)
        return;
    keys[k].key = simaccel_make_key(k ? "rsa" : "ec");
    if (keys[k].key == NULL || (keys[k].cert = simaccel_make_cert(keys[k].key)) == NULL)
        DIE("simaccel key/cert");
}

static SSL_CTX *new_server_ctx(int k, int version)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

    need_key(k);
    if (ctx == NULL || SSL_CTX_use_certificate(ctx, keys[k].cert) != 1
        || SSL_CTX_use_PrivateKey(ctx, keys[k].key) != 1
        || (version && (SSL_CTX_set_min_proto_version(ctx, version) != 1
                        || SSL_CTX_set_max_proto_version(ctx, version) != 1)))
        DIE("server SSL_CTX");
    /* Every handshake must be full, or there is no signature to offload. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(ctx, 0);
    return ctx;
}

static SSL_CTX *server_ctx(int k, int tls12, int mode)
{
    int slot = mode_fd(mode) ? 1 : mode == M_ACB ? 2 : 0;
    SSL_CTX **p = &server_ctxs[k][tls12][slot];

    if (*p == NULL) {
        *p = new_server_ctx(k, tls12 ? TLS1_2_VERSION : TLS1_3_VERSION);
        SSL_CTX_set_mode(*p, SSL_MODE_ASYNC);
        if (slot != 1 && (!have_api() || SSL_CTX_set_async_callback(*p, on_async) != 1))
            DIE("SSL_CTX_set_async_callback");
        if (slot == 2 && (shim_CTX_set_fd_callbacks == NULL || shim_CTX_set_fd_callbacks(*p, 1) != 1))
            DIE("sslasync_CTX_set_fd_callbacks: %s",
                shim_CTX_set_fd_callbacks == NULL ? "not in this process (no shim, or one without "
                "the fd adapter)" : "failed");
    }
    return *p;
}

static SSL_CTX *client_ctx(int tls12)
{
    SSL_CTX **p = &client_ctxs[tls12];

    if (*p == NULL) {
        int v = tls12 ? TLS1_2_VERSION : TLS1_3_VERSION;

        if ((*p = SSL_CTX_new(TLS_client_method())) == NULL
            || SSL_CTX_set_min_proto_version(*p, v) != 1
            || SSL_CTX_set_max_proto_version(*p, v) != 1)
            DIE("client SSL_CTX");
        SSL_CTX_set_verify(*p, SSL_VERIFY_NONE, NULL);
        SSL_CTX_set_session_cache_mode(*p, SSL_SESS_CACHE_OFF);
    }
    return *p;
}

/* Both ends over a BIO pair; bufsz 0 means OpenSSL's default (17 KiB). */
static void conn_open(struct conn *c, SSL_CTX *sctx, SSL_CTX *cctx, size_t bufsz)
{
    BIO *a, *b;

    c->srv = SSL_new(sctx);
    c->cli = SSL_new(cctx);
    if (c->srv == NULL || c->cli == NULL || !BIO_new_bio_pair(&a, bufsz, &b, bufsz))
        DIE("SSL_new / BIO pair");
    SSL_set_bio(c->cli, a, a);
    SSL_set_bio(c->srv, b, b);
    SSL_set_connect_state(c->cli);
    SSL_set_accept_state(c->srv);
    c->cli_done = c->srv_done = 0;
    c->afd = -1;
    c->rnext = NULL;
}

static void conn_close(struct conn *c)
{
    if (c->afd >= 0) {
        /* The device may still hold a dup of this fd: deregister by hand. */
        if (epoll_ctl(L.ep, EPOLL_CTL_DEL, c->afd, NULL) != 0)
            DIE("epoll_ctl(DEL): %s", strerror(errno));
        c->afd = -1;
    }
    SSL_free(c->srv);
    SSL_free(c->cli);
    c->srv = c->cli = NULL;
}

/* Drives both ends; 1 when the handshake is complete, 0 when the server's
 * job paused on the accelerator. */
static int hs_drive(struct conn *c)
{
    int spins, r, e;

    for (spins = 0; spins < 64; spins++) {
        if (!c->cli_done) {
            r = SSL_do_handshake(c->cli);
            if (r == 1)
                c->cli_done = 1;
            else if ((e = SSL_get_error(c->cli, r)) != SSL_ERROR_WANT_READ
                     && e != SSL_ERROR_WANT_WRITE)
                DIE("client handshake: SSL error %d", e);
        }
        if (!c->srv_done) {
            r = SSL_do_handshake(c->srv);
            if (r == 1) {
                c->srv_done = 1;
            } else {
                e = SSL_get_error(c->srv, r);
                if (e == SSL_ERROR_WANT_ASYNC) {
                    async_wait_begin(c);
                    return 0;
                }
                if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                    DIE("server handshake: SSL error %d", e);
            }
        }
        if (c->cli_done && c->srv_done)
            return 1;
    }
    DIE("handshake makes no progress");
}

/* Synchronous handshake of a pair whose server is not in async mode. */
static void hs_plain(struct conn *c)
{
    int spins, r, e;

    for (spins = 0; spins < 64 && !(c->cli_done && c->srv_done); spins++) {
        if (!c->cli_done && (r = SSL_do_handshake(c->cli)) == 1)
            c->cli_done = 1;
        else if (!c->cli_done && (e = SSL_get_error(c->cli, r)) != SSL_ERROR_WANT_READ)
            DIE("client handshake: SSL error %d", e);
        if (!c->srv_done && (r = SSL_do_handshake(c->srv)) == 1)
            c->srv_done = 1;
        else if (!c->srv_done && (e = SSL_get_error(c->srv, r)) != SSL_ERROR_WANT_READ)
            DIE("server handshake: SSL error %d", e);
    }
    if (!(c->cli_done && c->srv_done))
        DIE("plain handshake makes no progress");
}

/* ------------------------------------------------------------ handshakes */

static void set_device(simaccel_style style, unsigned latency_us)
{
    simaccel_config cfg = { style, latency_us, 0 };

    simaccel_configure(&cfg);
}

/*
 * `count` full handshakes with at most `conc` in flight; the clock runs
 * from the first SSL_new to the last completion, so set-up and teardown of
 * connections are part of the cost, as in a server.
 */
static double hs_run(int k, int tls12, unsigned lat, long conc, int mode, long count)
{
    SSL_CTX *sctx = server_ctx(k, tls12, mode), *cctx = client_ctx(tls12);
    int fdmode = mode_fd(mode);
    struct conn *cs, *c;
    long started = 0, done = 0, i;
    double t0, t1;

    if (conc < 1 || count < conc)
        DIE("hs: need 1 <= conc <= count");
    if ((cs = calloc((size_t)conc, sizeof(*cs))) == NULL)
        DIE("out of memory");
    set_device(mode == M_ACB || mode == M_AFD ? SIMACCEL_STYLE_FD : SIMACCEL_STYLE_CALLBACK, lat);
    L.fdmode = fdmode;
    rq_reset((size_t)conc);
    t0 = now_s();
    for (i = 0; i < conc; i++, started++) {
        conn_open(&cs[i], sctx, cctx, 0);
        if (!fdmode)
            SSL_set_async_callback_arg(cs[i].srv, &cs[i]);
        rq_push(&cs[i]);
    }
    while (done < count) {
        while ((c = rq_pop()) != NULL) {
            if (!hs_drive(c))
                continue;
            done++;
            conn_close(c);
            if (started < count) {
                started++;
                conn_open(c, sctx, cctx, 0);
                if (!fdmode)
                    SSL_set_async_callback_arg(c->srv, c);
                rq_push(c);
            }
        }
        if (done < count)
            wait_events();
    }
    t1 = now_s();
    if (!simaccel_wait_idle(10000))
        DIE("device not idle after the cell");
    free(cs);
    return t1 - t0;
}

static void cmd_hs(const char *key, int ver, unsigned lat, long conc, const char *mode, long count)
{
    double el;
    int m = mode_index(mode);

    cell_begin();
    el = hs_run(key_index(key), ver == 12, lat, conc, m, count);
    cell_report(count, el);
}

/* ------------------------------------------------------- async round trip */

/*
 * A sink BIO whose write hands the SSL's job to the accelerator once: the
 * cheapest operation that goes pause -> device -> callback -> resume. It
 * carries no crypto of its own, so the shim's per-event cost is what varies.
 */
static BIO_METHOD *sink_method;
static atomic_int sink_armed;

static int sink_write(BIO *b, const char *buf, int len)
{
    (void)b;
    (void)buf;
    if (atomic_load_explicit(&sink_armed, memory_order_relaxed) && !simaccel_core_offload())
        return -1;
    return len;
}

static long sink_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b;
    (void)num;
    (void)ptr;
    return cmd == BIO_CTRL_FLUSH;
}

static int sink_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO *sink_new(void)
{
    BIO *b;

    if (sink_method == NULL) {
        sink_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "pause sink");
        if (sink_method == NULL || !BIO_meth_set_write(sink_method, sink_write)
            || !BIO_meth_set_ctrl(sink_method, sink_ctrl)
            || !BIO_meth_set_create(sink_method, sink_create))
            DIE("BIO_meth_new");
    }
    if ((b = BIO_new(sink_method)) == NULL)
        DIE("BIO_new(sink)");
    return b;
}

/*
 * An established pair whose server is then switched to SSL_MODE_ASYNC with
 * its writes going into the sink. The callback is set before the first job,
 * so native OpenSSL wires it too.
 */
static void rtt_conn_open(struct conn *c, int with_callback)
{
    if (plain_server_ctx == NULL)
        plain_server_ctx = new_server_ctx(0, 0);
    conn_open(c, plain_server_ctx, client_ctx(0), 0);
    hs_plain(c);
    if (with_callback
        && (SSL_set_async_callback(c->srv, on_async) != 1
            || SSL_set_async_callback_arg(c->srv, c) != 1))
        DIE("SSL_set_async_callback");
    SSL_set0_wbio(c->srv, sink_new());
    SSL_set_mode(c->srv, SSL_MODE_ASYNC);
}

#define RTT_MAX 64
static struct conn rtt_conns[RTT_MAX];

/* Resumes the op in flight (if any) and, if `more`, starts the next one.
 * Returns the number of ops completed (0 or 1). */
static int rtt_drive(struct conn *c, int more)
{
    int done = 0, r, e;

    for (;;) {
        r = SSL_write(c->srv, "x", 1);
        if (r == 1) {
            done++;
            if (more)
                continue;
            c->srv_done = 1;
            return done;
        }
        if ((e = SSL_get_error(c->srv, r)) != SSL_ERROR_WANT_ASYNC)
            DIE("SSL_write: SSL error %d", e);
        async_wait_begin(c);
        return done;
    }
}

static long rtt_loop(long conc, long iters, double seconds, double *elapsed)
{
    long ops = 0, i, in_flight = 0;
    struct conn *c;
    double t0, deadline;

    for (i = 0; i < conc; i++)
        rtt_conn_open(&rtt_conns[i], 1);
    L.fdmode = 0;
    rq_reset((size_t)conc);
    atomic_store(&sink_armed, 1);
    t0 = now_s();
    deadline = t0 + seconds;
    for (i = 0; i < conc; i++) {
        rtt_conns[i].srv_done = 0;
        rq_push(&rtt_conns[i]);
    }
    in_flight = conc;
    while (in_flight > 0) {
        int more = iters > 0 ? ops < iters : (ops & 63) || now_s() < deadline;

        while ((c = rq_pop()) != NULL) {
            ops += rtt_drive(c, more);
            if (c->srv_done)
                in_flight--;
        }
        if (in_flight > 0)
            wait_events();
    }
    *elapsed = now_s() - t0;
    atomic_store(&sink_armed, 0);
    /* Nothing is paused any more. Closing matters for the shim: an SSL
     * that keeps a callback would put later "no callback" cells on the
     * shim's slower hooked path. */
    for (i = 0; i < conc; i++)
        conn_close(&rtt_conns[i]);
    return ops;
}

static void cmd_rtt(const char *style, long conc, double seconds)
{
    double el;
    long ops;

    if (conc < 1 || conc > RTT_MAX)
        DIE("rtt: conc must be 1..%d", RTT_MAX);
    L.inline_style = strcmp(style, "inline") == 0;
    set_device(L.inline_style ? SIMACCEL_STYLE_INLINE : SIMACCEL_STYLE_CALLBACK, 0);
    cell_begin();
    ops = rtt_loop(conc, 0, seconds, &el);
    L.inline_style = 0;
    if (!simaccel_wait_idle(10000))
        DIE("device not idle after the cell");
    cell_report(ops, el);
}

/* ----------------------------------------------- completion -> application */

/*
 * How long after the device completes an operation the application learns
 * of it, fd-only device (SIMACCEL_STYLE_FD), one connection, one operation
 * at a time, so the loop thread is asleep when the completion comes:
 *   acb  the shim's fd adapter watches the wait fd and calls back: "learn"
 *        is the callback's first instruction (the adapter's thread); the
 *        callback then wakes the loop thread (its eventfd), "resume" is when
 *        epoll_wait returns there;
 *   afd  the loop thread epolls the wait fd itself: "learn" and "resume" are
 *        both when its epoll_wait returns.
 * Both from the fixture's timestamp just before it writes the wait fd.
 * Answer: "ok N run_delay_ns early" and N pairs "learn_ns resume_ns"; early
 * counts operations the device completed before SSL_write had returned
 * (the loop was not asleep yet: e.g. the adapter starting its thread).
 */
static void cmd_lat(const char *mode, unsigned lat_us, long n)
{
    struct conn *c = &rtt_conns[0];
    int adapter = strcmp(mode, "acb") == 0;
    long i, early = 0;
    long long *learn, *resume;

    if (!adapter && strcmp(mode, "afd") != 0)
        DIE("lat: mode acb or afd");
    if (n < 1 || (learn = calloc((size_t)n, sizeof(*learn))) == NULL
        || (resume = calloc((size_t)n, sizeof(*resume))) == NULL)
        DIE("lat: N >= 1 / out of memory");
    set_device(SIMACCEL_STYLE_FD, lat_us);
    rtt_conn_open(c, 0);
    if (adapter) {
        if (!have_api() || SSL_set_async_callback(c->srv, on_async_lat) != 1
            || SSL_set_async_callback_arg(c->srv, c) != 1)
            DIE("lat: SSL_set_async_callback");
        if (shim_set_fd_callbacks == NULL || shim_set_fd_callbacks(c->srv, 1) != 1)
            DIE("lat: sslasync_set_fd_callbacks (no shim, or one without the fd adapter)");
    }
    L.fdmode = !adapter;
    rq_reset(1);
    atomic_store(&sink_armed, 1);
    atomic_store(&lat_probe, 1);
    cell_begin();
    for (i = 0; i < n; i++) {
        int r;
        long long done, learned, woke;

        atomic_store(&lat_done_ns, 0);
        atomic_store(&lat_cb_ns, 0);
        r = SSL_write(c->srv, "x", 1);
        if (r == 1 || SSL_get_error(c->srv, r) != SSL_ERROR_WANT_ASYNC)
            DIE("lat: SSL_write did not pause (%d)", r);
        if (atomic_load(&lat_done_ns) != 0)
            early++;
        async_wait_begin(c);
        wait_events();
        if (rq_pop() != c || rq_pop() != NULL)
            DIE("lat: woke without the connection");
        woke = atomic_load(&lat_woke_ns);
        done = atomic_load(&lat_done_ns);
        learned = adapter ? atomic_load(&lat_cb_ns) : woke;
        if (done == 0 || learned == 0)
            DIE("lat: no completion timestamp (device %lld, application %lld)", done, learned);
        if ((r = SSL_write(c->srv, "x", 1)) != 1)
            DIE("lat: the resumed SSL_write = %d (SSL error %d)", r, SSL_get_error(c->srv, r));
        learn[i] = learned - done;
        resume[i] = woke - done;
    }
    atomic_store(&lat_probe, 0);
    atomic_store(&sink_armed, 0);
    printf("ok %ld %lld %ld", n, run_delay_ns() - cell_delay0, early);
    for (i = 0; i < n; i++)
        printf(" %lld %lld", learn[i], resume[i]);
    putchar('\n');
    conn_close(c);
    free(learn);
    free(resume);
    if (!simaccel_wait_idle(10000))
        DIE("device not idle after the cell");
}

/* The shim's counters (0 without the shim): the adapter's, and the jobs it
 * could not verify; all counted without SSLASYNC_STATS. */
static void cmd_stats(void)
{
    struct sslasync_stats st;

    memset(&st, 0, sizeof(st));
    if (shim_stats_get != NULL)
        shim_stats_get(&st, sizeof(st));
    printf("ok %d %llu %llu %llu %llu %llu\n", shim_stats_get != NULL,
           (unsigned long long)st.adapter_arms, (unsigned long long)st.adapter_deliveries,
           (unsigned long long)st.adapter_drops, (unsigned long long)st.adapter_unavailable,
           (unsigned long long)st.jobs_unverified);
}

/* ---------------------------------------------------------- bulk records */

static struct conn io_conn;
static int io_open;
static struct conn mixed_conn;

/* A pair in SSL_MODE_ASYNC on both ends and no callback anywhere. */
static void io_setup(void)
{
    if (io_open)
        return;
    if (plain_server_ctx == NULL)
        plain_server_ctx = new_server_ctx(0, 0);
    /* Room for a full 16 KiB record plus its header and tag. */
    conn_open(&io_conn, plain_server_ctx, client_ctx(0), 65536);
    hs_plain(&io_conn);
    SSL_set_mode(io_conn.srv, SSL_MODE_ASYNC);
    SSL_set_mode(io_conn.cli, SSL_MODE_ASYNC);
    io_open = 1;
}

/* "mixed": another SSL in the process uses the API, so the shim's job-start
 * hook cannot take its early exit for the pair being measured. */
static void mixed_begin(int on)
{
    if (on && mixed_conn.srv == NULL)
        rtt_conn_open(&mixed_conn, 1);
    else if (!on && mixed_conn.srv != NULL)
        conn_close(&mixed_conn);
}

static unsigned char io_wbuf[16384], io_rbuf[16384];

static inline void io_once(size_t size)
{
    size_t got = 0;
    int r;

    if ((r = SSL_write(io_conn.cli, io_wbuf, (int)size)) != (int)size)
        DIE("SSL_write = %d (SSL error %d)", r, SSL_get_error(io_conn.cli, r));
    while (got < size) {
        if ((r = SSL_read(io_conn.srv, io_rbuf, (int)(size - got))) <= 0)
            DIE("SSL_read = %d (SSL error %d)", r, SSL_get_error(io_conn.srv, r));
        got += (size_t)r;
    }
}

static void cmd_io(long size, const char *variant, double seconds)
{
    long n = 0;
    double t0, t1, deadline;

    if (size < 1 || size > 16384)
        DIE("io: size 1..16384");
    io_setup();
    mixed_begin(strcmp(variant, "mixed") == 0);
    cell_begin();
    t0 = now_s();
    deadline = t0 + seconds;
    do {
        int i;

        for (i = 0; i < 32; i++)
            io_once((size_t)size);
        n += 32;
    } while ((t1 = now_s()) < deadline);
    mixed_begin(0);
    cell_report(n, t1 - t0);
}

/* --------------------------------------------------------- setter/getter */

static struct conn api_conn;

static void cmd_set(const char *which, long calls)
{
    static SSL_CTX *ctx;
    double t0, t1;
    long i;
    int st;

    /* A callback and a wait ctx, i.e. the state a live server SSL has. */
    rtt_conn_open(&api_conn, 1);
    if (SSL_write(api_conn.srv, "x", 1) != 1)
        DIE("first async SSL_write");
    if (ctx == NULL && (ctx = SSL_CTX_new(TLS_server_method())) == NULL)
        DIE("SSL_CTX_new");
    cell_begin();
    t0 = now_s();
    if (strcmp(which, "set_arg") == 0) {
        for (i = 0; i < calls; i++)
            SSL_set_async_callback_arg(api_conn.srv, (i & 1) ? (void *)&api_conn : (void *)&ctx);
        SSL_set_async_callback_arg(api_conn.srv, &api_conn);
    } else if (strcmp(which, "get_status") == 0) {
        for (i = 0; i < calls; i++)
            SSL_get_async_status(api_conn.srv, &st);
    } else if (strcmp(which, "ctx_set_cb") == 0) {
        for (i = 0; i < calls; i++)
            SSL_CTX_set_async_callback(ctx, (i & 1) ? on_async : on_async_other);
    } else {
        DIE("set: unknown %s", which);
    }
    t1 = now_s();
    conn_close(&api_conn);
    cell_report(calls, t1 - t0);
}

/* ----------------------------------------------------------------- setup */

/* Which object the process binds the API to (dladdr of the resolved symbol). */
static const char *api_object(void)
{
    Dl_info info;
    void *p = dlsym(RTLD_DEFAULT, "SSL_set_async_callback");

    if (p == NULL) /* OpenSSL 1.1.1 without the shim: there is no API */
        return "native";
    if (!dladdr(p, &info) || info.dli_fname == NULL)
        return "?";
    return strstr(info.dli_fname, "libsslasync") != NULL ? "shim" : "native";
}

static atomic_int probe_flag;

static int probe_cb(SSL *s, void *arg)
{
    (void)s;
    atomic_store((atomic_int *)arg, 1);
    return 1;
}

/*
 * Is the shim really acting (not inert)? Register a callback after the
 * SSL's first job: only the shim wires it. Native falls back to the wait fd,
 * which the inline style signals before pausing, so both finish.
 */
static int probe_active(void)
{
    struct conn c;
    int r, spins;

    memset(&c, 0, sizeof(c));
#if BENCH_OSSL111
    /*
     * OpenSSL 1.1.1: callbacks come only from the shim's fd adapter (always
     * on there). A callback set before the first job, an fd-only device:
     * the SSL pauses, the adapter must call back.
     */
    if (!have_api())
        return 0;
    rtt_conn_open(&c, 0);
    if (SSL_set_async_callback(c.srv, probe_cb) != 1
        || SSL_set_async_callback_arg(c.srv, (void *)&probe_flag) != 1)
        DIE("probe: setters");
    set_device(SIMACCEL_STYLE_FD, 0);
    atomic_store(&sink_armed, 1);
    if ((r = SSL_write(c.srv, "x", 1)) == 1 || SSL_get_error(c.srv, r) != SSL_ERROR_WANT_ASYNC)
        DIE("probe: SSL_write did not pause");
    /* The device completes at once; give the adapter up to 5 s to call back. */
    for (spins = 0; spins < 5000 && !atomic_load(&probe_flag); spins++) {
        struct timespec ms = { 0, 1000000 };

        nanosleep(&ms, NULL);
    }
    if (SSL_write(c.srv, "x", 1) != 1)
        DIE("probe: resumed SSL_write");
    atomic_store(&sink_armed, 0);
    conn_close(&c);
    return atomic_load(&probe_flag);
#endif
    rtt_conn_open(&c, 0);
    if (SSL_write(c.srv, "x", 1) != 1)
        DIE("probe: first write");
    if (SSL_set_async_callback(c.srv, probe_cb) != 1
        || SSL_set_async_callback_arg(c.srv, (void *)&probe_flag) != 1)
        DIE("probe: setters");
    set_device(SIMACCEL_STYLE_INLINE, 0);
    atomic_store(&sink_armed, 1);
    for (spins = 0; (r = SSL_write(c.srv, "x", 1)) != 1; spins++)
        if (SSL_get_error(c.srv, r) != SSL_ERROR_WANT_ASYNC || spins > 4)
            DIE("probe: SSL_write");
    atomic_store(&sink_armed, 0);
    conn_close(&c);
    return atomic_load(&probe_flag);
}

/* Main loop on the first allowed CPU, everything else (the device thread)
 * on the second, so the two never fight and never migrate. The shim's fd
 * adapter starts its thread later, at its first arm, from the loop thread:
 * it inherits the loop's CPU and scheduling policy, as it would in an
 * application that pins its event loop. */
static void pin_threads(void)
{
    cpu_set_t allowed, one;
    int cpus[2], n = 0, i;
    DIR *d;
    struct dirent *e;

    if (getenv("BENCH_NO_PIN") != NULL || sched_getaffinity(0, sizeof(allowed), &allowed) != 0)
        return;
    for (i = 0; i < CPU_SETSIZE && n < 2; i++)
        if (CPU_ISSET(i, &allowed))
            cpus[n++] = i;
    if (n < 2)
        return;
    CPU_ZERO(&one);
    CPU_SET(cpus[0], &one);
    sched_setaffinity(0, sizeof(one), &one);
    if ((d = opendir("/proc/self/task")) == NULL)
        return;
    CPU_ZERO(&one);
    CPU_SET(cpus[1], &one);
    while ((e = readdir(d)) != NULL) {
        pid_t tid = (pid_t)atoi(e->d_name);

        if (tid > 0 && tid != gettid())
            sched_setaffinity(tid, sizeof(one), &one);
    }
    closedir(d);
}

/*
 * On a shared machine other work (builds, test suites) takes our CPUs in
 * the middle of a cell, and under EEVDF even nice -20 waits up to a slice
 * on every wake-up. SCHED_FIFO (when allowed: root or RLIMIT_RTPRIO) makes
 * the loop and device threads preempt it at once; the kernel's RT
 * throttling still leaves others 5 % of each CPU. Set before the device
 * thread exists, which inherits it. BENCH_SCHED=nice|normal opts out.
 */
static const char *sched_mode = "normal";

static void set_priority(void)
{
    const char *want = getenv("BENCH_SCHED");
    struct sched_param sp = { .sched_priority = 1 };

    if (want == NULL || *want == '\0')
        want = "fifo";
    if (strcmp(want, "fifo") == 0 && sched_setscheduler(0, SCHED_FIFO, &sp) == 0) {
        sched_mode = "fifo";
        return;
    }
    if (strcmp(want, "normal") != 0 && setpriority(PRIO_PROCESS, 0, -20) == 0)
        sched_mode = "nice-20";
}

static void setup(int keys_too)
{
    simaccel_config cfg = { SIMACCEL_STYLE_CALLBACK, 0, 0 };
    struct epoll_event e = { .events = EPOLLIN, .data.ptr = NULL };

    /* The device thread inherits this: a 50 us device latency then costs
     * about 50 us, not 50 us plus the default 50 us of timer slack. */
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
    if (simaccel_install(&cfg) != 1)
        DIE("simaccel_install");
    find_shim_functions();
    L.evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    L.ep = epoll_create1(EPOLL_CLOEXEC);
    if (L.evfd < 0 || L.ep < 0 || epoll_ctl(L.ep, EPOLL_CTL_ADD, L.evfd, &e) != 0)
        DIE("eventfd/epoll: %s", strerror(errno));
    if (keys_too) {
        need_key(0);
        need_key(1);
    }
}

int bench_worker_main(int light)
{
    char line[512];
    int active;

    /* Keep freed memory: a cell at 1024 connections should find the heap
     * that earlier cells grew, as a long-running server does. */
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    set_priority();
    /* A light worker serves only the round-trip, I/O and API cells, which
     * need no RSA key: it starts in milliseconds. */
    setup(!light);
    pin_threads();
    active = probe_active();
    printf("ok impl=%s active=%d sched=%s adapter=%d\n", api_object(), active, sched_mode,
           shim_CTX_set_fd_callbacks != NULL);
    fflush(stdout);
    while (fgets(line, sizeof(line), stdin) != NULL) {
        char a[32], b[32];
        long n1, n2, n3, n4;
        double s;

        unsigned lu;

        if (sscanf(line, "hs %31s %ld %ld %ld %31s %ld", a, &n1, &n2, &n3, b, &n4) == 6)
            cmd_hs(a, (int)n1, (unsigned)n2, n3, b, n4);
        else if (sscanf(line, "rtt %31s %ld %lf", a, &n1, &s) == 3)
            cmd_rtt(a, n1, s);
        else if (sscanf(line, "io %ld %31s %lf", &n1, a, &s) == 3)
            cmd_io(n1, a, s);
        else if (sscanf(line, "set %31s %ld", a, &n1) == 2)
            cmd_set(a, n1);
        else if (sscanf(line, "lat %31s %u %ld", a, &lu, &n1) == 3)
            cmd_lat(a, lu, n1);
        else if (strncmp(line, "stats", 5) == 0)
            cmd_stats();
        else if (strncmp(line, "quit", 4) == 0)
            break;
        else
            DIE("unknown command: %s", line);
        fflush(stdout);
    }
    return 0;
}

/* ------------------------------------------------------ callgrind loops */

/*
 * Instruction counting runs one loop N times in a fresh process; the driver
 * runs N and 2N under callgrind and keeps the difference, so set-up cancels.
 *   rtt_inline  one delivered callback per iteration: SSL_write pauses, the
 *               inline device calls back, SSL_write resumes (2 job starts)
 *   io64        SSL_write + SSL_read of 64 bytes, no callback anywhere
 *               (2 pass-through job starts)
 *   io64_mixed  the same while another SSL has a callback
 */
__attribute__((noinline)) long bench_counted_loop(const char *loop, long n)
{
    double el;
    long i;

    if (strcmp(loop, "rtt_inline") == 0)
        return rtt_loop(1, n, 0, &el);
    if (strncmp(loop, "hs_", 3) == 0) {
        hs_run(0, 0, 0, 16, strcmp(loop, "hs_fd") == 0 ? M_FD : M_CB, n);
        return n;
    }
    for (i = 0; i < n; i++)
        io_once(64);
    return n;
}

int bench_count_main(int argc, char **argv)
{
    long n;
    const char *loop;

    if (argc != 2)
        DIE("usage: count rtt_inline|io64|io64_mixed N");
    loop = argv[0];
    n = atol(argv[1]);
    setup(0);
    if (strcmp(loop, "rtt_inline") == 0) {
        L.inline_style = 1;
        set_device(SIMACCEL_STYLE_INLINE, 0);
    } else if (strcmp(loop, "hs_cb") == 0 || strcmp(loop, "hs_fd") == 0) {
        need_key(0);
    } else if (strcmp(loop, "io64") == 0 || strcmp(loop, "io64_mixed") == 0) {
        io_setup();
        mixed_begin(strcmp(loop, "io64_mixed") == 0);
    } else {
        DIE("unknown loop %s", loop);
    }
    printf("ok %ld\n", bench_counted_loop(loop, n));
    fflush(stdout);
    /* Skip teardown: it is not what is being counted. */
    _exit(0);
}

/* ------------------------------------------------------------ memory */

static size_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size, res = 0;

    if (f == NULL || fscanf(f, "%lu %lu", &size, &res) != 2)
        DIE("/proc/self/statm");
    fclose(f);
    return res * (size_t)sysconf(_SC_PAGESIZE);
}

static size_t heap_bytes(void)
{
    struct mallinfo2 mi = mallinfo2();

    return mi.uordblks + mi.hblkhd;
}

/*
 * Growth of RSS and of malloc'd bytes for N SSL objects from one CTX.
 * Variants: none (nothing set), ctx_cb (callback on the CTX before SSL_new:
 * every SSL inherits it), ssl_cb (SSL_set_async_callback on each SSL),
 * ssl_cb_appdata (the same on SSLs that already carry app data, as most
 * servers' SSLs do: OpenSSL's ex_data array then already exists).
 */
int bench_mem_main(int argc, char **argv)
{
    const char *v;
    long n, i;
    SSL_CTX *ctx;
    SSL **ssls;
    size_t rss0, heap0, rss1, heap1;
    int ctx_cb, ssl_cb, appdata;

    if (argc != 2)
        DIE("usage: mem none|ctx_cb|ssl_cb|ssl_cb_appdata N");
    v = argv[0];
    n = atol(argv[1]);
    ctx_cb = strcmp(v, "ctx_cb") == 0;
    ssl_cb = strncmp(v, "ssl_cb", 6) == 0;
    appdata = strcmp(v, "ssl_cb_appdata") == 0;
    if (!ctx_cb && !ssl_cb && strcmp(v, "none") != 0)
        DIE("unknown variant %s", v);
    if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL
        || (ssls = calloc((size_t)n, sizeof(*ssls))) == NULL)
        DIE("set-up");
    SSL_CTX_set_mode(ctx, SSL_MODE_ASYNC);
    if (ctx_cb)
        SSL_CTX_set_async_callback(ctx, on_async);
    /* One SSL first, so lazily initialised library state is not counted. */
    SSL_free(SSL_new(ctx));
    rss0 = rss_bytes();
    heap0 = heap_bytes();
    for (i = 0; i < n; i++) {
        if ((ssls[i] = SSL_new(ctx)) == NULL)
            DIE("SSL_new");
        if (appdata)
            SSL_set_app_data(ssls[i], ssls[i]);
        if (ssl_cb && SSL_set_async_callback(ssls[i], on_async) != 1)
            DIE("SSL_set_async_callback");
    }
    rss1 = rss_bytes();
    heap1 = heap_bytes();
    printf("ok %ld %zu %zu\n", n, rss1 - rss0, heap1 - heap0);
    fflush(stdout);
    _exit(0);
}
