/*
 * Two OpenSSLs in one process: the suite's (system 3.x) and another major
 * (OpenSSL 4), dlopen()ed beside it through two_openssl_side.c. The shim is
 * built for one of them; the other's references (SSL_new@OPENSSL_4.0.0,
 * ASYNC_start_job@OPENSSL_4.0.0 from libssl.so.4, ...) must not bind to it,
 * or OpenSSL 4 objects reach OpenSSL 3 functions. Checked:
 *  - a handshake on the suite's OpenSSL, paused on the device, its
 *    callback delivered, its server steps inside a 3.x async job;
 *  - the side library's references resolve to its own libssl/libcrypto;
 *  - an SSL_MODE_ASYNC handshake there whose server steps run inside
 *    OpenSSL 4's async jobs (OpenSSL 4's ASYNC_get_current_job non-NULL);
 *  - the suite's OpenSSL again, unchanged.
 */
#define _GNU_SOURCE
#include "tlsdrive.h"

#include <dlfcn.h>
#include <stdio.h>

#include <openssl/async.h>

#ifndef TWO_OPENSSL_SIDE
#error "TWO_OPENSSL_SIDE: path of the side library"
#endif

static int in_job, out_of_job;

static void info_cb(const SSL *s, int where, int ret)
{
    (void)s;
    (void)where;
    (void)ret;
    if (ASYNC_get_current_job() != NULL)
        in_job++;
    else
        out_of_job++;
}

static void own_handshake(SSL_CTX *sctx, const char *phase)
{
    char when[64];
    tlsd_conn c;
    simaccel_counters d;

    snprintf(when, sizeof(when), "OpenSSL %d %s", OPENSSL_VERSION_MAJOR, phase);
    in_job = out_of_job = 0;
    tlsd_conn_init(&c, sctx, NULL);
    SSL_set_async_callback_arg(c.server, &c);
    tlsd_counters_mark();
    tlsd_handshake(&c);
    d = tlsd_counters_delta();
    TLSD_CHECK(d.pauses == 1 && d.not_in_job == 0 && atomic_load(&c.notes) == 1
                   && c.woke_by_callback == 1 && c.cb_ssl == c.server,
               "%s: pauses %llu, ops outside a job %llu, callbacks delivered %u", when,
               (unsigned long long)d.pauses, (unsigned long long)d.not_in_job,
               atomic_load(&c.notes));
    TLSD_CHECK(in_job > 0 && out_of_job == 0,
               "%s: server steps inside a job %d, outside %d", when, in_job, out_of_job);
    tlsd_say("%s: paused on the device, callback delivered, steps inside this OpenSSL's jobs",
             when);
    tlsd_conn_free(&c);
}

int main(void)
{
    int (*major)(void);
    int (*bindings)(char *, size_t);
    int (*handshake)(char *, size_t);
    char where[512], why[256];
    SSL_CTX *sctx;
    void *side;
    int bound_ok;

    tlsd_begin("two_openssl", 0);
    tlsd_style(SIMACCEL_STYLE_CALLBACK, 0, 0);
    sctx = tlsd_server_ctx("ec", 0);
    SSL_CTX_set_info_callback(sctx, info_cb);
    SSL_CTX_set_async_callback(sctx, tlsd_cb);
    own_handshake(sctx, "before");

    side = dlopen(TWO_OPENSSL_SIDE, RTLD_NOW | RTLD_LOCAL);
    TLSD_CHECK(side != NULL, "dlopen: %s", dlerror());
    major = (int (*)(void))dlsym(side, "side_version_major");
    bindings = (int (*)(char *, size_t))dlsym(side, "side_bindings");
    handshake = (int (*)(char *, size_t))dlsym(side, "side_async_handshake");
    TLSD_CHECK(major != NULL && bindings != NULL && handshake != NULL, "side symbols");
    TLSD_CHECK(major() != OPENSSL_VERSION_MAJOR, "the side library is OpenSSL %d too", major());
    tlsd_say("loaded a library on OpenSSL %d beside OpenSSL %d", major(), OPENSSL_VERSION_MAJOR);

    /* Said before the handshake, which a cross-wired shim may crash. */
    bound_ok = bindings(where, sizeof(where));
    fprintf(stderr, "two_openssl: OpenSSL %d side bound %s\n", major(), where);
    TLSD_CHECK(handshake(why, sizeof(why)) == 1, "OpenSSL %d handshake: %s", major(), why);
    tlsd_say("OpenSSL %d: async-mode handshake, server steps inside its own jobs", major());
    TLSD_CHECK(bound_ok, "the OpenSSL %d library's references bound elsewhere: %s", major(),
               where);
    tlsd_say("OpenSSL %d: its references bound to its own libssl and libcrypto", major());

    own_handshake(sctx, "after");
    SSL_CTX_free(sctx);
    return tlsd_end();
}
