/*
 * The adapter's switches (shim only).
 *
 *  env:  SSLASYNC_FD_CALLBACKS=1 / 0 / unset / "yes" / "2": the program
 *        re-executes itself with each value (its stderr captured): a new
 *        SSL from a CTX never set has the adapter on for "1" only; a bad
 *        value gives exactly one stderr line naming SSLASYNC_FD_CALLBACKS
 *        and counts as 0, the others none. With the adapter off an
 *        fd-only pause with a callback is native: status UNSUPPORTED after
 *        WANT_ASYNC, no callback, completed by polling the wait fd, nothing
 *        armed; with it on the callback comes from sslasync-fd.
 *  api:  sslasync_CTX_set_fd_callbacks / sslasync_set_fd_callbacks return 1
 *        for 0 and 1 with nothing queued; 0 with ERR_R_PASSED_NULL_PARAMETER
 *        for NULL and with ERR_R_PASSED_INVALID_ARGUMENT for any other value
 *        (the setting unchanged); sslasync_get_fd_callbacks(NULL) is 0 with
 *        ERR_R_PASSED_NULL_PARAMETER.
 *  inherit: SSL_new copies the CTX's setting (later CTX changes do not reach
 *        the SSL); the SSL-level setter overrides it; SSL_dup gives the copy
 *        the CTX's setting, not the source's; each SSL's handshake then
 *        behaves by its own setting.
 */
#include "adapter_util.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/err.h>

#if OPENSSL_VERSION_NUMBER < 0x30000000L
#define ALWAYS_ON 1   /* 1.1.1: the adapter is the only way to call back */
#else
#define ALWAYS_ON 0
#endif

static void expect_err(int got, const char *call, int reason)
{
    unsigned long e = ERR_peek_error();

    TLSD_CHECK(got == 0, "%s returned %d, want 0", call, got);
    TLSD_CHECK(e != 0, "%s queued no error", call);
    TLSD_CHECK(ERR_GET_REASON(e) == ERR_GET_REASON(reason), "%s: reason %d, want %d", call,
               ERR_GET_REASON(e), ERR_GET_REASON(reason));
    ERR_clear_error();
    tlsd_say("%s = 0, %s queued", call,
             reason == ERR_R_PASSED_NULL_PARAMETER ? "ERR_R_PASSED_NULL_PARAMETER"
                                                   : "ERR_R_PASSED_INVALID_ARGUMENT");
}

#define EXPECT_OK(call, want) TLSD_EXPECT_RET(call, want)
#define EXPECT_ERR(call, reason) expect_err((call), #call, reason)

/* One paused fd-only handshake with a callback; checks the path taken. */
static void handshake_by(SSL_CTX *sctx, SSL *server, int adapter, const char *what)
{
    tlsd_conn c;
    ad_stats before = ad_settled(what), d;

    tlsd_style(SIMACCEL_STYLE_FD, 50, 0);
    if (server != NULL)
        tlsd_conn_adopt(&c, server, NULL);
    else
        tlsd_conn_init(&c, sctx, NULL);
    SSL_set_async_callback(c.server, tlsd_cb);
    SSL_set_async_callback_arg(c.server, &c);
    TLSD_CHECK(ad_get(c.server) == adapter, "%s: adapter %d, want %d", what, ad_get(c.server),
               adapter);
    simaccel_hold(1);
    TLSD_CHECK(tlsd_run_until_paused(&c) == 1, "%s: no pause", what);
    TLSD_CHECK(c.paused_status == (adapter ? ASYNC_STATUS_OK : ASYNC_STATUS_UNSUPPORTED),
               "%s: status %d after WANT_ASYNC", what, c.paused_status);
    simaccel_hold(0);
    if (adapter) {
        tlsd_wait_notes(&c, 1);
        tlsd_handshake(&c);
        TLSD_CHECK(atomic_load(&c.notes) == 1 && c.cb_on_adapter_thread && c.woke_by_fd == 0,
                   "%s: callbacks %u, adapter thread %d", what, atomic_load(&c.notes),
                   c.cb_on_adapter_thread);
    } else {
        /* Native: the wait fd announces it, no callback ever. */
        tlsd_handshake(&c);
        TLSD_CHECK(simaccel_wait_idle(tlsd_timeout_ms()), "%s: device busy", what);
        TLSD_CHECK(atomic_load(&c.notes) == 0 && c.woke_by_fd == 1,
                   "%s: callbacks %u, woke by fd %u", what, atomic_load(&c.notes), c.woke_by_fd);
    }
    d = ad_delta(ad_settled(what), before);
    TLSD_CHECK(d.arms == (uint64_t)adapter && d.deliveries == (uint64_t)adapter
               && d.drops == 0 && d.unavailable == 0,
               "%s: arms %llu deliveries %llu drops %llu unavailable %llu", what,
               (unsigned long long)d.arms, (unsigned long long)d.deliveries,
               (unsigned long long)d.drops, (unsigned long long)d.unavailable);
    tlsd_say("%s: %s", what, adapter ? "armed, one callback on sslasync-fd"
                                     : "native: status UNSUPPORTED, no callback, wait fd");
    tlsd_conn_free(&c);
}

/* Child: the process default as the environment set it. */
static int child(int want_default)
{
    SSL_CTX *sctx;
    SSL *s;

    tlsd_begin("adapter_switch.child", TLSD_SHIM_ONLY);
    sctx = tlsd_server_ctx("ec", 0);
    s = SSL_new(sctx);
    TLSD_CHECK(s != NULL, "SSL_new");
    TLSD_CHECK(ad_get(s) == want_default, "default: adapter %d, want %d", ad_get(s),
               want_default);
    SSL_free(s);
    handshake_by(sctx, NULL, want_default, "process default");
    SSL_CTX_free(sctx);
    return tlsd_end();
}

/* Runs this program with SSLASYNC_FD_CALLBACKS=value (NULL: unset). */
static void env_case(const char *self, const char *value, int want_default, int want_lines)
{
    int p[2], status, lines = 0, other = 0;
    char buf[8192], *line, *save = NULL;
    size_t len = 0;
    ssize_t n;
    pid_t pid;

    TLSD_CHECK(pipe(p) == 0, "pipe: %s", strerror(errno));
    fflush(NULL);
    pid = fork();
    TLSD_CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        char arg[2] = { (char)('0' + want_default), 0 };
        char *const argv[] = { (char *)self, (char *)"child", arg, NULL };

        dup2(p[1], 2);
        close(p[0]);
        close(p[1]);
        if (value != NULL)
            setenv("SSLASYNC_FD_CALLBACKS", value, 1);
        else
            unsetenv("SSLASYNC_FD_CALLBACKS");
        /* Its transcript is not this one's. */
        if (freopen("/dev/null", "w", stdout) == NULL)
            _exit(126);
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    close(p[1]);
    while ((n = read(p[0], buf + len, sizeof(buf) - 1 - len)) > 0)
        len += (size_t)n;
    close(p[0]);
    buf[len] = '\0';
    TLSD_CHECK(waitpid(pid, &status, 0) == pid, "waitpid");
    TLSD_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
               "SSLASYNC_FD_CALLBACKS=%s: child failed (status 0x%x), stderr:\n%s",
               value ? value : "(unset)", status, buf);
    for (line = strtok_r(buf, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        /* (Under ASan the fibres' stack warnings go to stderr too.) */
        if (strstr(line, "SSLASYNC_FD_CALLBACKS") != NULL)
            lines++;
        else if (strstr(line, "sslasync") != NULL)
            other++;
    }
    TLSD_CHECK(lines == want_lines && other == 0,
               "SSLASYNC_FD_CALLBACKS=%s: %d stderr lines about it (want %d), %d other "
               "sslasync lines",
               value ? value : "(unset)", lines, want_lines, other);
    if (want_lines)
        TLSD_CHECK(strncmp(buf, "sslasync", 8) == 0, "line not from the shim: %s", buf);
    tlsd_say("SSLASYNC_FD_CALLBACKS=%s: default %s, %d stderr line(s)",
             value ? value : "(unset)", want_default ? "on" : "off", lines);
}

static void api(void)
{
    SSL_CTX *ctx = tlsd_server_ctx("ec", 0);
    SSL *s = SSL_new(ctx);

    TLSD_CHECK(s != NULL, "SSL_new");
    ERR_clear_error();
    EXPECT_OK(ad_ctx_set(ctx, 1), 1);
    EXPECT_OK(ad_set(s, 1), 1);
    EXPECT_OK(ad_get(s), 1);
    if (!ALWAYS_ON) {
        EXPECT_OK(ad_ctx_set(ctx, 0), 1);
        EXPECT_OK(ad_set(s, 0), 1);
        EXPECT_OK(ad_get(s), 0);
        EXPECT_OK(ad_set(s, 1), 1);
        EXPECT_OK(ad_ctx_set(ctx, 1), 1);
    } else {
        EXPECT_ERR(ad_ctx_set(ctx, 0), ERR_R_PASSED_INVALID_ARGUMENT);
        EXPECT_ERR(ad_set(s, 0), ERR_R_PASSED_INVALID_ARGUMENT);
    }
    EXPECT_ERR(ad_ctx_set(NULL, 1), ERR_R_PASSED_NULL_PARAMETER);
    EXPECT_ERR(ad_ctx_set(NULL, 0), ERR_R_PASSED_NULL_PARAMETER);
    EXPECT_ERR(ad_set(NULL, 1), ERR_R_PASSED_NULL_PARAMETER);
    EXPECT_ERR(ad_set(NULL, 0), ERR_R_PASSED_NULL_PARAMETER);
    EXPECT_ERR(ad_get(NULL), ERR_R_PASSED_NULL_PARAMETER);
    EXPECT_ERR(ad_ctx_set(ctx, 2), ERR_R_PASSED_INVALID_ARGUMENT);
    EXPECT_ERR(ad_ctx_set(ctx, -1), ERR_R_PASSED_INVALID_ARGUMENT);
    EXPECT_ERR(ad_set(s, 2), ERR_R_PASSED_INVALID_ARGUMENT);
    EXPECT_ERR(ad_set(s, -1), ERR_R_PASSED_INVALID_ARGUMENT);
    EXPECT_ERR(ad_set(s, 256), ERR_R_PASSED_INVALID_ARGUMENT);
    /* A refused value changes nothing. */
    EXPECT_OK(ad_get(s), 1);
    SSL_free(s);
    s = SSL_new(ctx);
    EXPECT_OK(ad_get(s), 1);
    SSL_free(s);
    SSL_CTX_free(ctx);
}

static void inherit(void)
{
    SSL_CTX *on = tlsd_server_ctx("ec", 0), *off = tlsd_server_ctx("ec", 0);
    SSL *a, *b, *c, *d;

    TLSD_CHECK(ad_ctx_set(on, 1) == 1 && ad_ctx_set(off, ALWAYS_ON) == 1, "CTX setters");
    a = SSL_new(on);
    b = SSL_new(off);
    TLSD_CHECK(a != NULL && b != NULL, "SSL_new");
    TLSD_CHECK(ad_get(a) == 1 && ad_get(b) == ALWAYS_ON, "SSL_new copies: %d %d", ad_get(a),
               ad_get(b));
    tlsd_say("SSL_new copies the CTX's setting");
    if (!ALWAYS_ON) {
        /* CTX changes after SSL_new do not reach existing SSLs. */
        TLSD_CHECK(ad_ctx_set(on, 0) == 1 && ad_ctx_set(off, 1) == 1, "CTX setters");
        TLSD_CHECK(ad_get(a) == 1 && ad_get(b) == 0, "CTX change reached an SSL: %d %d",
                   ad_get(a), ad_get(b));
        c = SSL_new(on);
        TLSD_CHECK(c != NULL && ad_get(c) == 0, "new SSL after the change");
        SSL_free(c);
        TLSD_CHECK(ad_ctx_set(on, 1) == 1 && ad_ctx_set(off, 0) == 1, "CTX setters");
        tlsd_say("CTX changes after SSL_new reach only later SSLs");
        /* SSL_dup: the copy gets the CTX's setting, not the source's. */
        TLSD_CHECK(ad_set(a, 0) == 1 && ad_set(b, 1) == 1, "SSL setters");
        c = SSL_dup(a);
        d = SSL_dup(b);
        TLSD_CHECK(c != NULL && d != NULL && c != a && d != b, "SSL_dup");
        TLSD_CHECK(ad_get(c) == 1 && ad_get(d) == 0, "SSL_dup: %d (want the CTX's 1), %d "
                   "(want the CTX's 0)", ad_get(c), ad_get(d));
        TLSD_CHECK(ad_get(a) == 0 && ad_get(b) == 1, "sources changed");
        tlsd_say("SSL_dup gives the copy the CTX's setting, not the source's");
        /* Each handshake by its own setting. */
        handshake_by(NULL, a, 0, "SSL turned off in an adapter CTX");
        handshake_by(NULL, b, 1, "SSL turned on in a CTX without");
        handshake_by(NULL, c, 1, "SSL_dup from the adapter CTX");
        handshake_by(NULL, d, 0, "SSL_dup from the CTX without");
        handshake_by(on, NULL, 1, "new SSL of the adapter CTX");
        handshake_by(off, NULL, 0, "new SSL of the CTX without");
    } else {
        SSL_free(a);
        SSL_free(b);
    }
    SSL_CTX_free(on);
    SSL_CTX_free(off);
}

int main(int argc, char **argv)
{
    const char *self = "/proc/self/exe";

    if (argc == 3 && strcmp(argv[1], "child") == 0)
        return child(atoi(argv[2]));
    tlsd_begin("adapter_switch", TLSD_SHIM_ONLY);
    env_case(self, "1", 1, 0);
    env_case(self, "0", ALWAYS_ON, 0);
    env_case(self, NULL, ALWAYS_ON, 0);
    env_case(self, "yes", ALWAYS_ON, 1);
    env_case(self, "2", ALWAYS_ON, 1);
    api();
    inherit();
    return tlsd_end();
}
