/*
 * A library loaded with RTLD_DEEPBIND binds to libssl past the shim (shim
 * only): the SSLs it makes and the callbacks it sets never reach sslasync,
 * so they get OpenSSL's own behaviour. The shim cannot prevent that, but it
 * sees such an SSL's job start (its wait ctx carries libssl's own callback,
 * and the shim never gave it one) and must not go on claiming protection it
 * does not give: sslasync_active() turns 0, jobs_bypassed counts it, and
 * one stderr line says so. This program itself uses the API through the
 * shim, so the shim looks at job starts.
 */
#define _GNU_SOURCE
#include "tlsdrive.h"

#include <dlfcn.h>
#include <stdio.h>

int main(void)
{
    SSL_CTX *sctx;
    tlsd_conn c;
    void *plugin;
    int (*run)(SSL_CTX *, SSL_CTX *);
    sslasync_stats st = { 0 };

    tlsd_begin("deepbind", TLSD_SHIM_ONLY);
    if (TLSD_OPENSSL_111) {
        printf("SKIP deepbind: OpenSSL 1.1.1 has no callback of its own to bypass with\n");
        return 77;
    }
    sctx = tlsd_server_ctx("ec", 0);
    /* This program's own SSL, through the shim. */
    tlsd_conn_init(&c, sctx, NULL);
    SSL_set_async_callback(c.server, tlsd_cb);
    SSL_set_async_callback_arg(c.server, &c);
    tlsd_handshake(&c);
    TLSD_CHECK(tlsd_shim_active() == 1, "not active before the plugin");

    plugin = dlopen(DEEPBIND_PLUGIN, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    TLSD_CHECK(plugin != NULL, "dlopen: %s", dlerror());
    *(void **)&run = dlsym(plugin, "deepbind_plugin_handshake");
    TLSD_CHECK(run != NULL, "plugin symbol");
    TLSD_CHECK(run(sctx, tlsd_client_ctx()) == 1, "the plugin's handshake (native callback)");
    TLSD_CHECK(tlsd_shim_stats_get()(&st, sizeof(st)) >= 0 && st.jobs_bypassed > 0,
               "the bypass was not seen (jobs_bypassed %llu)",
               (unsigned long long)st.jobs_bypassed);
    TLSD_CHECK(tlsd_shim_active() == 0,
               "sslasync_active() still 1 after an SSL got its callback past the shim");
    tlsd_say("a plugin loaded with RTLD_DEEPBIND set a callback past the shim: seen, "
             "sslasync_active() now 0");
    /* The program's own SSLs keep the shim's behaviour. */
    tlsd_conn_free(&c);
    tlsd_conn_init(&c, sctx, NULL);
    SSL_set_async_callback(c.server, tlsd_cb);
    SSL_set_async_callback_arg(c.server, &c);
    tlsd_handshake(&c);
    TLSD_CHECK(c.woke_by_callback == 1, "the program's own SSL lost its callback");
    tlsd_conn_free(&c);
    SSL_CTX_free(sctx);
    return tlsd_end();
}
