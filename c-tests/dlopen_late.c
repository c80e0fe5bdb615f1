/*
 * sslasync loaded after libssl (shim only): a program that does not link
 * libssl dlopen()s its TLS plugin, the way Python loads _ssl, and later
 * dlopen()s libsslasync.so.0 and calls the API through that handle. libssl
 * was bound to libcrypto when the plugin loaded, so the shim's job-start
 * hook never runs: it cannot act, must say so (sslasync_active() 0, one
 * stderr line), and its exports must behave as native OpenSSL: a callback
 * set before the first job is called back, one set after it falls back to
 * the wait fd. Run with RTLD_LOCAL and with RTLD_GLOBAL (argv[1]).
 *
 * And the other way round ("first"): the program dlopen()s the shim with
 * RTLD_GLOBAL before the plugin, so libssl, loaded with it, binds to it and
 * the plugin's calls reach it: active, and a callback set after the first
 * job is called back (the shim's behaviour).
 *
 * Usage: dlopen_late local|global|first PLUGIN SHIM
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef int (*set_cb_fn)(void *ssl, int (*cb)(void *, void *));

#define FAIL(...)                                                           \
    do {                                                                    \
        fprintf(stderr, "FAIL dlopen_late: " __VA_ARGS__);                  \
        fputc('\n', stderr);                                                \
        return 1;                                                           \
    } while (0)

int main(int argc, char **argv)
{
    void *plugin, *shim;
    int (*setup)(void), (*run)(void *set_cb, int late, int shim), (*finish)(void);
    int (*active)(void);
    void *set_cb;
    int global, first, r;

    if (argc != 4)
        FAIL("usage: dlopen_late local|global|first PLUGIN SHIM");
    first = strcmp(argv[1], "first") == 0;
    global = first || strcmp(argv[1], "global") == 0;
    if (dlsym(RTLD_DEFAULT, "SSL_new") != NULL)
        FAIL("this program must not link libssl");
    if (first && (shim = dlopen(argv[3], RTLD_NOW | RTLD_GLOBAL)) == NULL)
        FAIL("dlopen shim: %s", dlerror());
    if ((plugin = dlopen(argv[2], RTLD_NOW | RTLD_LOCAL)) == NULL)
        FAIL("dlopen plugin: %s", dlerror());
    *(void **)&setup = dlsym(plugin, "late_plugin_setup");
    *(void **)&run = dlsym(plugin, "late_plugin_handshake");
    *(void **)&finish = dlsym(plugin, "late_plugin_finish");
    if (setup == NULL || run == NULL || finish == NULL)
        FAIL("plugin symbols missing");
    if (setup() != 0)
        FAIL("plugin setup");
    if (!first && (shim = dlopen(argv[3], RTLD_NOW | (global ? RTLD_GLOBAL : RTLD_LOCAL))) == NULL)
        FAIL("dlopen shim: %s", dlerror());
    *(void **)&active = dlsym(shim, "sslasync_active");
    set_cb = dlsym(shim, "SSL_set_async_callback");
    if (active == NULL || set_cb == NULL)
        FAIL("shim symbols missing");
    if ((r = active()) != first)
        FAIL("sslasync_active() = %d, but libssl was bound %s the shim loaded (%s)", r,
             first ? "after" : "before", argv[1]);
    /* Through the handle: a callback set before the first job is called
     * back; one set after it too with the shim, not natively (fd
     * fallback); nothing crashes. */
    if (run(set_cb, 0, first) != 0 || run(set_cb, 1, first) != 0)
        FAIL("handshakes through the shim's API");
    if (finish() != 0)
        FAIL("plugin finish");
    printf("dlopen_late %s: sslasync_active() = %d; the API through its handle behaved as %s\n",
           argv[1], first, first ? "the shim" : "native OpenSSL");
    return 0;
}
