/*
 * The other OpenSSL's half of two_openssl.c. Built against a different
 * OpenSSL major than the suite (OpenSSL 4 beside the system 3.x: see
 * SSLASYNC_OTHER_OPENSSL in CMakeLists.txt), with an rpath to it, and
 * dlopen()ed (RTLD_LOCAL) by two_openssl into a process whose libssl is the
 * suite's. Every call here must reach this library's own OpenSSL: a shim
 * built for the other major that captured them would hand OpenSSL 4 objects
 * to OpenSSL 3 functions.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include <openssl/async.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

int side_version_major(void);
int side_bindings(char *out, size_t outlen);
int side_async_handshake(char *why, size_t whylen);

int side_version_major(void)
{
    return OPENSSL_VERSION_MAJOR;
}

static const char *object_of(void *addr)
{
    Dl_info info;
    const char *slash;

    if (addr == NULL || !dladdr(addr, &info) || info.dli_fname == NULL)
        return "(unresolved)";
    slash = strrchr(info.dli_fname, '/');
    return slash != NULL ? slash + 1 : info.dli_fname;
}

/*
 * Where this library's references (versioned for its OpenSSL, e.g.
 * SSL_new@OPENSSL_4.0.0) were bound: "name=object" pairs. 1 if every one
 * is in this OpenSSL's libssl/libcrypto.
 */
int side_bindings(char *out, size_t outlen)
{
    static const struct {
        const char *name;
        void *addr;
        const char *want;
    } refs[] = {
        { "SSL_new", (void *)&SSL_new, "libssl.so." },
        { "SSL_dup", (void *)&SSL_dup, "libssl.so." },
        { "SSL_CTX_set_async_callback", (void *)&SSL_CTX_set_async_callback, "libssl.so." },
        { "SSL_get_async_status", (void *)&SSL_get_async_status, "libssl.so." },
        { "ASYNC_start_job", (void *)&ASYNC_start_job, "libcrypto.so." },
    };
    char want[32];
    size_t i, used = 0;
    int ok = 1;

    out[0] = '\0';
    for (i = 0; i < sizeof(refs) / sizeof(refs[0]); i++) {
        const char *o = object_of(refs[i].addr);

        snprintf(want, sizeof(want), "%s%d", refs[i].want, OPENSSL_VERSION_MAJOR);
        if (strcmp(o, want) != 0)
            ok = 0;
        used += (size_t)snprintf(out + used, used < outlen ? outlen - used : 0, "%s%s=%s",
                                 i ? " " : "", refs[i].name, o);
        if (used >= outlen)
            break;
    }
    return ok;
}

/* Server state-machine steps seen inside / outside an async job. */
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

static int never_called(SSL *s, void *arg)
{
    (void)s;
    (void)arg;
    return 1;
}

static X509 *self_signed(EVP_PKEY *key)
{
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    int ok = x != NULL && name != NULL
        && X509_set_version(x, 2)
        && ASN1_INTEGER_set(X509_get_serialNumber(x), 1)
        && X509_gmtime_adj(X509_getm_notBefore(x), -3600) != NULL
        && X509_gmtime_adj(X509_getm_notAfter(x), 86400) != NULL
        && X509_set_pubkey(x, key)
        && X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                      (const unsigned char *)"localhost", -1, -1, 0)
        && X509_set_subject_name(x, name) && X509_set_issuer_name(x, name)
        && X509_sign(x, key, EVP_sha256()) > 0;

    X509_NAME_free(name);
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

#define FAIL(...) do { snprintf(why, whylen, __VA_ARGS__); goto out; } while (0)

/*
 * A TLS handshake between a client and an SSL_MODE_ASYNC server over a BIO
 * pair, all on this library's OpenSSL, with a callback set on the server
 * CTX (this OpenSSL's setter must take it: 1). The server's handshake must
 * run inside this OpenSSL's async jobs: its info callback must see
 * ASYNC_get_current_job() non-NULL every time. 1 on success, else 0 and a
 * reason in why.
 */
int side_async_handshake(char *why, size_t whylen)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *cert = key != NULL ? self_signed(key) : NULL;
    SSL_CTX *sctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    SSL *server = NULL, *client = NULL;
    BIO *sb = NULL, *cb = NULL;
    int ok = 0, sdone = 0, cdone = 0, iter, st = -1;

    why[0] = '\0';
    if (key == NULL || cert == NULL || sctx == NULL || cctx == NULL)
        FAIL("key, certificate or SSL_CTX_new failed");
    if (SSL_CTX_use_certificate(sctx, cert) != 1 || SSL_CTX_use_PrivateKey(sctx, key) != 1)
        FAIL("certificate or key not accepted");
    SSL_CTX_set_mode(sctx, SSL_MODE_ASYNC);
    SSL_CTX_set_info_callback(sctx, info_cb);
    if (SSL_CTX_set_async_callback(sctx, never_called) != 1)
        FAIL("SSL_CTX_set_async_callback did not return 1");
    SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
    server = SSL_new(sctx);
    client = SSL_new(cctx);
    if (server == NULL || client == NULL)
        FAIL("SSL_new failed");
    if (SSL_get_async_status(server, &st) != 0)
        FAIL("SSL_get_async_status before the first job returned non-zero");
    if (BIO_new_bio_pair(&sb, 0, &cb, 0) != 1)
        FAIL("BIO_new_bio_pair failed");
    SSL_set_bio(server, sb, sb);
    SSL_set_bio(client, cb, cb);
    SSL_set_accept_state(server);
    SSL_set_connect_state(client);
    for (iter = 0; iter < 1000 && !(sdone && cdone); iter++) {
        int r, e;

        if (!cdone) {
            r = SSL_do_handshake(client);
            e = SSL_get_error(client, r);
            if (r == 1)
                cdone = 1;
            else if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                FAIL("client SSL_do_handshake: error %d", e);
        }
        if (!sdone) {
            r = SSL_do_handshake(server);
            e = SSL_get_error(server, r);
            if (r == 1)
                sdone = 1;
            else if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                FAIL("server SSL_do_handshake: error %d", e);
        }
    }
    if (!(sdone && cdone))
        FAIL("handshake made no progress");
    if (in_job == 0 || out_of_job != 0)
        FAIL("server handshake steps inside this OpenSSL's async job: %d, outside: %d",
             in_job, out_of_job);
    if (SSL_get_async_status(server, &st) != 1)
        FAIL("SSL_get_async_status after the handshake's jobs did not return 1");
    ok = 1;
out:
    SSL_free(server);
    SSL_free(client);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
    X509_free(cert);
    EVP_PKEY_free(key);
    return ok;
}
