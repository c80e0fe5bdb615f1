/*
 * Self-check of the provider-based simaccel fixture, using only OpenSSL's
 * own (native) async-callback API: real TLS 1.3 and 1.2 handshakes between an
 * in-process client and an SSL_MODE_ASYNC server over a socketpair, in every
 * notification style, for EC P-256, RSA-2048 and RSA-PSS server keys. Checks
 * that each full handshake pauses the server's job (exactly once, or twice
 * when the device refuses with EAGAIN first), that callbacks arrive on the
 * right thread, and that the OpenSSL loaded at run time is the one the
 * program was compiled against (3.5.x shares its soname with the system 3.0).
 *
 *   provider_selftest [-v]      exit 0 when every check passed
 */
#define _GNU_SOURCE
#include "simaccel.h"

#include <openssl/async.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/provider.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int verbose;
static int failures, checks;

#define CHECK(cond, ...)                                                     \
    do {                                                                     \
        checks++;                                                            \
        if (!(cond)) {                                                       \
            failures++;                                                      \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);  \
            fprintf(stderr, __VA_ARGS__);                                    \
            fputc('\n', stderr);                                             \
            ERR_print_errors_fp(stderr);                                     \
        }                                                                    \
    } while (0)

/* ----------------------------------------------------------------------- */

/* What one server connection's application callback saw. */
typedef struct {
    atomic_int fired;          /* callbacks not yet consumed by the driver */
    atomic_int total;
    atomic_int on_device;      /* fired on the device thread */
    atomic_int wrong_ssl;      /* fired with an SSL* or arg we did not set */
    SSL *ssl;
} conn_cb;

static pthread_mutex_t cb_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cb_cv = PTHREAD_COND_INITIALIZER;

static int app_callback(SSL *s, void *arg)
{
    conn_cb *c = arg;

    if (c == NULL || s != c->ssl) {
        if (c != NULL)
            atomic_fetch_add(&c->wrong_ssl, 1);
        return 1;
    }
    atomic_fetch_add(&c->total, 1);
    if (simaccel_on_device_thread())
        atomic_fetch_add(&c->on_device, 1);
    pthread_mutex_lock(&cb_mu);
    atomic_fetch_add(&c->fired, 1);
    pthread_cond_broadcast(&cb_cv);
    pthread_mutex_unlock(&cb_mu);
    return 1;
}

static int wait_callback(conn_cb *c, int timeout_ms)
{
    struct timespec dl;
    int ok = 1;

    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&cb_mu);
    while (atomic_load(&c->fired) == 0)
        if (pthread_cond_timedwait(&cb_cv, &cb_mu, &dl) == ETIMEDOUT) {
            ok = 0;
            break;
        }
    if (ok)
        atomic_fetch_sub(&c->fired, 1);
    pthread_mutex_unlock(&cb_mu);
    return ok;
}

static int wait_async_fds(SSL *s, int timeout_ms)
{
    OSSL_ASYNC_FD fds[4];
    size_t n = 0, i;
    struct pollfd p[4];

    if (!SSL_get_all_async_fds(s, NULL, &n) || n == 0 || n > 4)
        return 0;
    if (!SSL_get_all_async_fds(s, fds, &n))
        return 0;
    for (i = 0; i < n; i++) {
        p[i].fd = fds[i];
        p[i].events = POLLIN;
    }
    return poll(p, n, timeout_ms) > 0;
}

/* ----------------------------------------------------------------------- */

typedef struct {
    const char *name;
    simaccel_style style;
    unsigned eagain_every;
    int app_callback;          /* application registers a callback */
} style_case;

typedef struct {
    int tls13;
    const char *cipher;        /* TLS 1.2 cipher list, NULL for the default */
    const char *sigalgs;       /* client sigalgs, NULL for the default */
    const char *label;
} proto_case;

typedef struct {
    int ok;
    int want_async;            /* SSL_ERROR_WANT_ASYNC seen by the driver */
    int eagain_redrives;       /* re-drives after reading ASYNC_STATUS_EAGAIN */
    int fd_waits, cb_waits;
    int status_ok_seen;
    conn_cb cb;
} hs_result;

static int step_client(SSL *c, int *done)
{
    int r, e;

    if (*done)
        return 1;
    r = SSL_do_handshake(c);
    if (r == 1) {
        *done = 1;
        return 1;
    }
    e = SSL_get_error(c, r);
    return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
}

/* One handshake plus a short exchange; the server runs in async mode. */
static void handshake(SSL_CTX *sctx, SSL_CTX *cctx, const style_case *sc,
                      int want_version, hs_result *res)
{
    int sv[2], cdone = 0, sdone = 0, iter, r, e, st;
    SSL *s = NULL, *c = NULL;
    char buf[16];

    memset(res, 0, sizeof(*res));
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0)
        return;
    s = SSL_new(sctx);
    c = SSL_new(cctx);
    if (s == NULL || c == NULL)
        goto out;
    SSL_set_fd(s, sv[0]);
    SSL_set_fd(c, sv[1]);
    SSL_set_accept_state(s);
    SSL_set_connect_state(c);
    SSL_set_tlsext_host_name(c, "localhost");
    res->cb.ssl = s;
    if (sc->app_callback
        && (!SSL_set_async_callback(s, app_callback)
            || !SSL_set_async_callback_arg(s, &res->cb)))
        goto out;

    for (iter = 0; iter < 10000 && !(cdone && sdone); iter++) {
        if (!step_client(c, &cdone))
            goto out;
        if (sdone)
            continue;
        r = SSL_do_handshake(s);
        if (r == 1) {
            sdone = 1;
            continue;
        }
        e = SSL_get_error(s, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            continue;
        if (e != SSL_ERROR_WANT_ASYNC)
            goto out;
        res->want_async++;
        st = -1;
        if (SSL_get_async_status(s, &st) && st == ASYNC_STATUS_OK)
            res->status_ok_seen++;
        if (st == ASYNC_STATUS_EAGAIN) {
            /* The device refused: nothing will signal; re-drive now. */
            res->eagain_redrives++;
            continue;
        }
        if (sc->app_callback && sc->style != SIMACCEL_STYLE_FD) {
            res->cb_waits++;
            if (!wait_callback(&res->cb, 5000))
                goto out;
        } else {
            res->fd_waits++;
            if (!wait_async_fds(s, 5000))
                goto out;
        }
    }
    if (!(cdone && sdone))
        goto out;

    /* Application data both ways; the server is still in async mode. */
    if (SSL_write(c, "ping", 4) != 4)
        goto out;
    for (iter = 0; iter < 1000; iter++) {
        r = SSL_read(s, buf, sizeof(buf));
        if (r > 0)
            break;
        e = SSL_get_error(s, r);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_ASYNC)
            goto out;
    }
    if (r != 4 || memcmp(buf, "ping", 4) != 0 || SSL_write(s, "pong", 4) != 4)
        goto out;
    for (iter = 0; iter < 1000; iter++) {
        r = SSL_read(c, buf, sizeof(buf));
        if (r > 0 || SSL_get_error(c, r) != SSL_ERROR_WANT_READ)
            break;
    }
    res->ok = r == 4 && memcmp(buf, "pong", 4) == 0
        && SSL_version(s) == want_version;
 out:
    if (!res->ok && verbose)
        ERR_print_errors_fp(stderr);
    ERR_clear_error();
    SSL_free(s);
    SSL_free(c);
    close(sv[0]);
    close(sv[1]);
}

/* ----------------------------------------------------------------------- */

static const style_case styles[] = {
    { "callback", SIMACCEL_STYLE_CALLBACK, 0, 1 },
    { "callback/no-app-cb", SIMACCEL_STYLE_CALLBACK, 0, 0 },
    { "inline", SIMACCEL_STYLE_INLINE, 0, 1 },
    { "inline/no-app-cb", SIMACCEL_STYLE_INLINE, 0, 0 },
    { "fd", SIMACCEL_STYLE_FD, 0, 1 },
    { "eagain/1", SIMACCEL_STYLE_EAGAIN, 1, 1 },
    { "eagain/2", SIMACCEL_STYLE_EAGAIN, 2, 1 },
    { "eagain/1/no-app-cb", SIMACCEL_STYLE_EAGAIN, 1, 0 },
};

/* Server-side operation being offloaded for each protocol/key pairing. */
static const proto_case protos[] = {
    { 1, NULL, NULL, "TLS1.3" },
    { 0, "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256", NULL,
      "TLS1.2-ECDHE" },
    /* Server-side RSA decryption of the premaster secret. */
    { 0, "AES128-GCM-SHA256", NULL, "TLS1.2-RSAkx" },
    /* PKCS#1 v1.5 signature in the ServerKeyExchange. */
    { 0, "ECDHE-RSA-AES128-GCM-SHA256", "RSA+SHA256", "TLS1.2-PKCS1" },
};

#define HANDSHAKES_PER_CASE 4

static SSL_CTX *server_ctx(EVP_PKEY *key, X509 *cert, const proto_case *pc)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

    if (ctx == NULL)
        return NULL;
    SSL_CTX_set_mode(ctx, SSL_MODE_ASYNC);
    /* Every handshake must be a full one: one private-key operation each. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(ctx, 0);
    if (!SSL_CTX_use_certificate(ctx, cert) || !SSL_CTX_use_PrivateKey(ctx, key)
        || !SSL_CTX_check_private_key(ctx))
        goto err;
    if (pc->tls13) {
        SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    } else {
        SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
        if (pc->cipher != NULL && !SSL_CTX_set_cipher_list(ctx, pc->cipher))
            goto err;
    }
    return ctx;
 err:
    SSL_CTX_free(ctx);
    return NULL;
}

static SSL_CTX *client_ctx(X509 *cert, const proto_case *pc)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

    if (ctx == NULL)
        return NULL;
    /* Trusting exactly the server's certificate makes the client check the
     * offloaded signature for real. */
    if (!X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), cert))
        goto err;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (!pc->tls13) {
        SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
        if (pc->cipher != NULL && !SSL_CTX_set_cipher_list(ctx, pc->cipher))
            goto err;
        if (pc->sigalgs != NULL && !SSL_CTX_set1_sigalgs_list(ctx, pc->sigalgs))
            goto err;
    }
    return ctx;
 err:
    SSL_CTX_free(ctx);
    return NULL;
}

static int applicable(const char *keytype, const proto_case *pc)
{
    int rsa = strcmp(keytype, "rsa") == 0;

    if (strcmp(pc->label, "TLS1.2-RSAkx") == 0
        || strcmp(pc->label, "TLS1.2-PKCS1") == 0)
        return rsa;   /* rsaEncryption keys only */
    return 1;
}

#define D(f) (after.f - before.f)

static void run_case(const char *keytype, EVP_PKEY *key, X509 *cert,
                     const proto_case *pc, const style_case *sc)
{
    simaccel_config cfg = { sc->style, 300, sc->eagain_every };
    simaccel_counters before, after;
    SSL_CTX *sctx = server_ctx(key, cert, pc), *cctx = client_ctx(cert, pc);
    int i, ok_all = 1, app_total = 0, app_on_device = 0, wrong = 0;
    int redrives = 0, fd_waits = 0, status_ok = 0, want_async = 0;
    uint64_t hs = HANDSHAKES_PER_CASE, expect_eagains;
    hs_result res;

    CHECK(sctx != NULL && cctx != NULL, "%s %s %s: SSL_CTX setup", keytype,
          pc->label, sc->name);
    if (sctx == NULL || cctx == NULL)
        goto out;
    simaccel_configure(&cfg);
    simaccel_get_counters(&before);
    for (i = 0; i < HANDSHAKES_PER_CASE; i++) {
        handshake(sctx, cctx, sc, pc->tls13 ? TLS1_3_VERSION : TLS1_2_VERSION,
                  &res);
        ok_all &= res.ok;
        app_total += atomic_load(&res.cb.total);
        app_on_device += atomic_load(&res.cb.on_device);
        wrong += atomic_load(&res.cb.wrong_ssl);
        redrives += res.eagain_redrives;
        fd_waits += res.fd_waits;
        status_ok += res.status_ok_seen;
        want_async += res.want_async;
    }
    /* Device completions are published before they are counted. */
    simaccel_wait_completions(before.completions + hs, 2000);
    simaccel_get_counters(&after);

    expect_eagains = sc->style == SIMACCEL_STYLE_EAGAIN
        ? hs / sc->eagain_every : 0;
    printf("  %-4s %-13s %-19s hs=%d pauses=%llu cb=%llu fd=%llu eagain=%llu"
           " app_cb=%d (device %d) redrives=%d\n", keytype, pc->label, sc->name,
           ok_all ? HANDSHAKES_PER_CASE : -1, (unsigned long long)D(pauses),
           (unsigned long long)D(callbacks), (unsigned long long)D(fd_signals),
           (unsigned long long)D(eagains), app_total, app_on_device, redrives);

#define WHERE "%s %s %s", keytype, pc->label, sc->name
    CHECK(ok_all, WHERE);
    CHECK(D(offloaded_ops) == hs, WHERE);
    CHECK(D(not_in_job) == 0, WHERE);
    CHECK(D(pauses) > 0, WHERE);
    CHECK(D(pauses) == hs + expect_eagains, WHERE);
    CHECK(D(eagains) == expect_eagains, WHERE);
    CHECK((uint64_t)redrives == expect_eagains, WHERE);
    CHECK(D(submissions) == hs, WHERE);
    CHECK(D(completions) == hs, WHERE);
    CHECK((uint64_t)want_async == hs + expect_eagains, WHERE);
    CHECK(wrong == 0, WHERE);
    if (sc->app_callback && sc->style != SIMACCEL_STYLE_FD) {
        CHECK(D(callbacks) == hs && app_total == HANDSHAKES_PER_CASE, WHERE);
        CHECK(D(fd_signals) == 0 && fd_waits == 0, WHERE);
        if (sc->style == SIMACCEL_STYLE_INLINE)
            CHECK(app_on_device == 0, WHERE);
        else
            CHECK(app_on_device == app_total, WHERE);
        if (sc->style != SIMACCEL_STYLE_INLINE)
            CHECK(status_ok > 0, WHERE);
    } else {
        CHECK(D(callbacks) == 0 && app_total == 0, WHERE);
        CHECK(D(fd_signals) == hs && (uint64_t)fd_waits == hs, WHERE);
    }
#undef WHERE
 out:
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
}

/* ECDHE must not pick up the simaccel key manager through a plain fetch. */
static void check_plain_fetch(void)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    const OSSL_PROVIDER *p = k == NULL ? NULL : EVP_PKEY_get0_provider(k);

    CHECK(p != NULL && strcmp(OSSL_PROVIDER_get0_name(p), "default") == 0,
          "plain EC keygen came from %s",
          p == NULL ? "(none)" : OSSL_PROVIDER_get0_name(p));
    EVP_PKEY_free(k);
}

int main(int argc, char **argv)
{
    static const char *keytypes[] = { "ec", "rsa", "rsa-pss" };
    simaccel_config cfg = { SIMACCEL_STYLE_CALLBACK, 300, 0 };
    simaccel_counters c0, c1;
    size_t k, p, s;

    verbose = argc > 1 && strcmp(argv[1], "-v") == 0;
    printf("provider_selftest: built against %s, running %s\n",
           OPENSSL_VERSION_TEXT, OpenSSL_version(OPENSSL_VERSION));
    /* 3.5.x and the system 3.0 share libssl.so.3: a wrong rpath would
     * silently test the system library. */
    if (OpenSSL_version_num() != OPENSSL_VERSION_NUMBER) {
        fprintf(stderr, "FAIL: run-time OpenSSL %s is not the compile-time %s\n",
                OpenSSL_version(OPENSSL_VERSION), OPENSSL_VERSION_TEXT);
        return 1;
    }
    if (!simaccel_install(&cfg)) {
        fprintf(stderr, "FAIL: simaccel_install\n");
        ERR_print_errors_fp(stderr);
        return 1;
    }
    check_plain_fetch();

    for (k = 0; k < sizeof(keytypes) / sizeof(keytypes[0]); k++) {
        EVP_PKEY *key = simaccel_make_key(keytypes[k]);
        const OSSL_PROVIDER *kp = key == NULL ? NULL : EVP_PKEY_get0_provider(key);
        X509 *cert;

        CHECK(key != NULL, "simaccel_make_key(%s)", keytypes[k]);
        if (key == NULL)
            continue;
        CHECK(kp != NULL && strcmp(OSSL_PROVIDER_get0_name(kp), "simaccel") == 0,
              "key %s is not bound to the simaccel provider", keytypes[k]);
        simaccel_get_counters(&c0);
        cert = simaccel_make_cert(key);
        simaccel_get_counters(&c1);
        CHECK(cert != NULL, "simaccel_make_cert(%s)", keytypes[k]);
        /* Certificate signing runs outside any job: offloaded synchronously. */
        CHECK(c1.not_in_job == c0.not_in_job + 1 && c1.pauses == c0.pauses,
              "make_cert(%s) not_in_job %llu->%llu", keytypes[k],
              (unsigned long long)c0.not_in_job,
              (unsigned long long)c1.not_in_job);
        if (cert == NULL) {
            EVP_PKEY_free(key);
            continue;
        }
        CHECK(X509_verify(cert, X509_get0_pubkey(cert)) == 1,
              "self-signature of %s certificate", keytypes[k]);
        for (p = 0; p < sizeof(protos) / sizeof(protos[0]); p++) {
            if (!applicable(keytypes[k], &protos[p]))
                continue;
            for (s = 0; s < sizeof(styles) / sizeof(styles[0]); s++)
                run_case(keytypes[k], key, cert, &protos[p], &styles[s]);
        }
        X509_free(cert);
        EVP_PKEY_free(key);
    }
    simaccel_uninstall();

    /* Tests install and uninstall per phase: a second install must work. */
    CHECK(simaccel_install(&cfg), "re-install");
    {
        EVP_PKEY *key = simaccel_make_key("ec");
        X509 *cert = key == NULL ? NULL : simaccel_make_cert(key);

        CHECK(cert != NULL, "key and certificate after re-install");
        if (cert != NULL)
            run_case("ec", key, cert, &protos[0], &styles[0]);
        X509_free(cert);
        EVP_PKEY_free(key);
    }
    simaccel_uninstall();
    printf("provider_selftest: %s: %d checks, %d failed\n",
           OpenSSL_version(OPENSSL_VERSION), checks, failures);
    return failures == 0 ? 0 : 1;
}
