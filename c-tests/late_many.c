/*
 * Late registration on many SSLs before the shim has seen a job of an SSL
 * that uses the API.
 *
 * The shim learns libssl's job layout from the first job of an SSL given the
 * API; until then it remembers such SSLs, and marks the wait ctx of other
 * SSLs' jobs so their later job starts take its fast path. Here one SSL gets
 * a callback but never runs a job, twenty others complete handshakes with
 * none (their jobs run while the layout is unknown), and then all twenty get
 * a callback, more than the shim keeps in its short list of newest ones.
 * Each one's next handshake must be called back (natively: none is, a
 * registration after the first job is never wired). The oldest is driven
 * first: it is the one a short list has forgotten.
 */
#include "tlsdrive.h"

#include <string.h>

#define N 20

static tlsd_tag a1 = { "a1" };

int main(void)
{
    static tlsd_conn c[N];
    tlsd_conn idle;
    SSL_CTX *sctx;
    int i, shim;

    shim = tlsd_begin("late_many", 0) == TLSD_SHIM;
    sctx = tlsd_server_ctx("ec", 0);
    tlsd_watchdog("late registration on many SSLs", 0);

    /* An SSL using the API that never starts a job. */
    tlsd_conn_init(&idle, sctx, NULL);
    TLSD_CHECK(SSL_set_async_callback(idle.server, tlsd_cb_A) == 1, "set idle callback");

    for (i = 0; i < N; i++) {
        tlsd_conn_init(&c[i], sctx, NULL);
        tlsd_handshake(&c[i]);
        TLSD_CHECK(c[i].woke_by_callback == 0 && strcmp(tlsd_log(&c[i]), "") == 0,
                   "SSL %d: a callback without one set", i);
    }
    for (i = 0; i < N; i++) {
        TLSD_CHECK(SSL_set_async_callback(c[i].server, tlsd_cb_A) == 1, "set callback %d", i);
        TLSD_CHECK(SSL_set_async_callback_arg(c[i].server, &a1) == 1, "set arg %d", i);
    }
    for (i = 0; i < N; i++) {
        tlsd_conn_reset(&c[i]);
        tlsd_handshake(&c[i]);
        if (shim)
            TLSD_CHECK(strcmp(tlsd_log(&c[i]), "A(a1)") == 0 && c[i].woke_by_callback == 1 &&
                           c[i].woke_by_fd == 0,
                       "SSL %d of %d, set after its first job: callbacks '%s', woke by callback "
                       "%u, by fd %u (want one callback)",
                       i, N, tlsd_log(&c[i]), c[i].woke_by_callback, c[i].woke_by_fd);
        else
            TLSD_CHECK(strcmp(tlsd_log(&c[i]), "") == 0 && c[i].woke_by_fd == 1,
                       "native, SSL %d: callbacks '%s', woke by fd %u", i, tlsd_log(&c[i]),
                       c[i].woke_by_fd);
    }
    tlsd_say("%d SSLs given a callback after their first job, before any SSL using the API "
             "ran one: %s",
             N, shim ? "each called back on its next handshake" : "none called back (native)");
    for (i = 0; i < N; i++)
        tlsd_conn_free(&c[i]);
    tlsd_conn_free(&idle);
    tlsd_watchdog(NULL, 0);
    SSL_CTX_free(sctx);
    return tlsd_end();
}
