/*
 * Setters on one SSL_CTX from several threads while other threads create
 * and free SSLs from it. Afterwards the CTX holds the last values set and
 * a new SSL inherits them. (Exercises the shim's locking; natively the
 * fields are plain stores.)
 */
#include "tlsdrive.h"

#include <string.h>

#define SETTERS 3
#define MAKERS 3
#define ITER 3000

static SSL_CTX *sctx;
static tlsd_tag a1 = { "a1" }, b1 = { "b1" };

static void *setter(void *p)
{
    int i, k = (int)(size_t)p;

    for (i = 0; i < ITER; i++) {
        int pick = (i + k) & 1;

        if (SSL_CTX_set_async_callback(sctx, pick ? tlsd_cb_A : tlsd_cb_B) != 1
            || SSL_CTX_set_async_callback_arg(sctx, pick ? &a1 : &b1) != 1)
            return (void *)1;
    }
    return NULL;
}

static void *maker(void *p)
{
    int i;

    (void)p;
    for (i = 0; i < ITER; i++) {
        SSL *s = SSL_new(sctx);

        if (s == NULL)
            return (void *)1;
        if (i % 3 == 0 && SSL_set_async_callback_arg(s, &a1) != 1)
            return (void *)1;
        SSL_free(s);
    }
    return NULL;
}

int main(void)
{
    pthread_t t[SETTERS + MAKERS];
    tlsd_conn c;
    void *ret;
    int i;

    tlsd_begin("ctx_threads", 0);
    sctx = tlsd_server_ctx("ec", 0);
    for (i = 0; i < SETTERS; i++)
        TLSD_CHECK(pthread_create(&t[i], NULL, setter, (void *)(size_t)i) == 0, "thread");
    for (i = 0; i < MAKERS; i++)
        TLSD_CHECK(pthread_create(&t[SETTERS + i], NULL, maker, NULL) == 0, "thread");
    for (i = 0; i < SETTERS + MAKERS; i++) {
        TLSD_CHECK(pthread_join(t[i], &ret) == 0 && ret == NULL, "thread %d failed", i);
    }
    tlsd_say("%d setter and %d SSL_new threads finished", SETTERS, MAKERS);

    SSL_CTX_set_async_callback(sctx, tlsd_cb_C);
    SSL_CTX_set_async_callback_arg(sctx, &a1);
    tlsd_conn_init(&c, sctx, NULL);
    tlsd_handshake(&c);
    TLSD_CHECK(strcmp(tlsd_log(&c), "C(a1)") == 0, "callbacks %s", tlsd_log(&c));
    tlsd_say("new SSL afterwards: callbacks [%s]", tlsd_log(&c));
    tlsd_conn_free(&c);

    SSL_CTX_free(sctx);
    return tlsd_end();
}
