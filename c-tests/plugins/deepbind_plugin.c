/*
 * deepbind's plugin, loaded with dlopen(RTLD_DEEPBIND): its references to
 * OpenSSL bind to libssl first, past any shim in front of it, so the SSL it
 * makes and the callback it sets never reach sslasync. It only links libssl.
 */
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>

static atomic_int called;

static int plugin_cb(SSL *s, void *arg)
{
    (void)s;
    (void)arg;
    atomic_store(&called, 1);
    return 1;
}

/* One handshake of a server SSL of sctx against a client of cctx, with a
 * callback set natively. Returns 1 when the callback was delivered, 0 when
 * the handshake completed without it, -1 on failure. */
int deepbind_plugin_handshake(SSL_CTX *sctx, SSL_CTX *cctx)
{
    SSL *server = SSL_new(sctx), *client = SSL_new(cctx);
    BIO *sb = NULL, *cb = NULL;
    int sdone = 0, cdone = 0, rounds = 0, r = -1;

    if (server == NULL || client == NULL || !BIO_new_bio_pair(&sb, 0, &cb, 0))
        goto out;
    SSL_set_bio(server, sb, sb);
    SSL_set_bio(client, cb, cb);
    SSL_set_accept_state(server);
    SSL_set_connect_state(client);
    if (SSL_set_async_callback(server, plugin_cb) != 1)
        goto out;
    while (!(sdone && cdone) && rounds++ < 200000) {
        if (!cdone && SSL_do_handshake(client) == 1)
            cdone = 1;
        if (!sdone) {
            int e = SSL_do_handshake(server);

            if (e == 1) {
                sdone = 1;
            } else if (SSL_get_error(server, e) == SSL_ERROR_WANT_ASYNC) {
                /* Wait for the callback (bounded), then re-drive. */
                for (int i = 0; i < 20000 && !atomic_load(&called); i++)
                    usleep(100);
            }
        }
    }
    r = sdone && cdone ? atomic_load(&called) : -1;
out:
    SSL_free(server);
    SSL_free(client);
    return r;
}
