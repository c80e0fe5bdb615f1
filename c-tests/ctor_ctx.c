/*
 * SSL_CTXs created before the shim initialised (in another library's
 * constructor: fixture/ctorlib.c, linked into this program, whose
 * constructor runs before the shim's). Today such a CTX gets the shim's
 * record lazily, from the first CTX setter, with SSL_CTX_set_ex_data: that
 * grows the CTX's ex_data stack while SSL_new on another thread reads it
 * (a race on OpenSSL's unsynchronised stack). For each of those CTXs, one
 * thread calls SSL_CTX_set_async_callback while another calls SSL_new on
 * it, started together by a barrier; afterwards an SSL made from each CTX
 * must get the callback delivered on a real handshake paused on the device.
 * The test first checks that the CTXs really predate the shim (see
 * ctorlib_ctxs_predate_shim), or the race it is about could not happen.
 *
 * On x86 with Debian's libcrypto the race does not corrupt anything visible
 * (the reader checks the stack's count before it loads its array, and
 * stores are not reordered), and libcrypto is not instrumented, so neither
 * a crash nor ASan can show it here. check-helgrind-exdata.sh runs the race
 * phase alone (CTOR_CTX_RACE_ONLY=1) under valgrind's helgrind, which
 * reports the unsynchronised accesses to the CTX's ex_data deterministically.
 */
#define _GNU_SOURCE
#include "tlsdrive.h"
#include "ctorlib.h"

#include <stdlib.h>

#define SSL_NEW_PER_ROUND 4
#define HANDSHAKE_EVERY 16

static pthread_barrier_t go;
static int rounds;

static int other_cb(SSL *s, void *arg)
{
    (void)s;
    (void)arg;
    return 1;
}

/* Thread B: SSL_new on each CTX while thread A sets its callback. */
static void *ssl_new_main(void *unused)
{
    int i, k;

    (void)unused;
    for (i = 0; i < rounds; i++) {
        SSL *s[SSL_NEW_PER_ROUND];

        pthread_barrier_wait(&go);
        for (k = 0; k < SSL_NEW_PER_ROUND; k++) {
            s[k] = SSL_new(ctorlib_ctx(i));
            TLSD_CHECK(s[k] != NULL, "SSL_new(ctor CTX %d)", i);
        }
        for (k = 0; k < SSL_NEW_PER_ROUND; k++)
            SSL_free(s[k]);
    }
    return NULL;
}

int main(void)
{
    pthread_t b;
    int i, predate = ctorlib_ctxs_predate_shim();
    tlsd_impl impl = tlsd_begin("ctor_ctx", 0);

    /* Natively there is no shim to predate: nothing to check. */
    TLSD_CHECK(impl == TLSD_NATIVE || predate,
               "the constructor's CTXs do not predate the shim's initialisation: "
               "this link order no longer tests what it is meant to");
    rounds = ctorlib_count();
    TLSD_CHECK(rounds > 0, "the constructor made no CTX");
    TLSD_CHECK(pthread_barrier_init(&go, NULL, 2) == 0, "barrier");
    TLSD_CHECK(pthread_create(&b, NULL, ssl_new_main, NULL) == 0, "pthread_create");
    for (i = 0; i < rounds; i++) {
        pthread_barrier_wait(&go);
        TLSD_CHECK(SSL_CTX_set_async_callback(ctorlib_ctx(i), i % 2 ? tlsd_cb : other_cb) == 1,
                   "set callback");
        /* Thread A's second setter, the arg, races the same SSL_new calls. */
        TLSD_CHECK(SSL_CTX_set_async_callback_arg(ctorlib_ctx(i), NULL) == 1, "set arg");
    }
    pthread_join(b, NULL);
    pthread_barrier_destroy(&go);
    tlsd_say("%d CTXs made before the shim: SSL_CTX_set_async_callback raced SSL_new on each",
             rounds);
    if (getenv("CTOR_CTX_RACE_ONLY") != NULL)
        return tlsd_end();

    /* Functional: SSLs made from those CTXs now inherit the callback. */
    tlsd_style(SIMACCEL_STYLE_CALLBACK, 0, 0);
    for (i = 0; i < rounds; i++) {
        SSL_CTX *ctx = ctorlib_ctx(i);
        tlsd_conn c;
        simaccel_counters d;

        if (i % HANDSHAKE_EVERY != HANDSHAKE_EVERY - 1 && i != rounds - 1)
            continue;
        SSL_CTX_set_async_callback(ctx, tlsd_cb);
        TLSD_CHECK(SSL_CTX_use_certificate(ctx, tlsd_cert("ec")) == 1, "certificate");
        TLSD_CHECK(SSL_CTX_use_PrivateKey(ctx, tlsd_key("ec")) == 1, "key");
        tlsd_conn_init(&c, ctx, NULL);
        SSL_set_async_callback_arg(c.server, &c);
        tlsd_counters_mark();
        tlsd_handshake(&c);
        d = tlsd_counters_delta();
        TLSD_CHECK(d.pauses == 1 && atomic_load(&c.notes) == 1 && c.woke_by_callback == 1
                       && c.cb_ssl == c.server,
                   "ctor CTX %d: pauses %llu, callbacks delivered %u (woke by callback %u)", i,
                   (unsigned long long)d.pauses, atomic_load(&c.notes), c.woke_by_callback);
        tlsd_conn_free(&c);
    }
    tlsd_say("every %dth of them: an SSL made after the set got its callback on a paused "
             "handshake", HANDSHAKE_EVERY);
    return tlsd_end();
}
