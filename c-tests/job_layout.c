/*
 * A job that looks like libssl's but whose arguments are laid out
 * differently (shim only). The job-start hook must trust an argument block
 * only when it provably is libssl's `struct ssl_async_args`: entry point in
 * libssl, the right size, and the job out-pointer at the offset from the
 * block's first word that the shim measured on a known SSL. A same-size
 * reordering (a distribution patch, a future release) puts something else in
 * the first word; the shim must start such a job untouched — never treat the
 * word as an SSL* — and count it (jobs_unverified).
 *
 * The "reordered" job is made by hand: its entry point is a harmless libssl
 * function (SSL_get_ex_data_X509_STORE_CTX_idx takes no argument; the extra
 * one is ignored by the C calling convention), its block is 40 bytes whose
 * first word is not a pointer at all. Any other SSL having a callback keeps
 * the hook on its checked path, where the block is inspected.
 */
#include "tlsdrive.h"

#include <string.h>

#include <openssl/async.h>

#include "sslasync.h"

static int job_ran;

static unsigned long long unverified(void)
{
    sslasync_stats st;

    memset(&st, 0, sizeof(st));
    tlsd_shim_stats_get()(&st, sizeof(st));
    return (unsigned long long)st.jobs_unverified;
}

/* Starts a job of libssl's shape (size and entry point) with `first` as the
 * block's first word and `job` as the out-pointer; returns its result. */
static int start_job(ASYNC_WAIT_CTX *w, ASYNC_JOB **job, void *first)
{
    /* sizeof(struct ssl_async_args): five words from 1.1.0 to 4.0. */
    void *block[5] = { first, NULL, NULL, NULL, NULL };
    int ret = -1, r;

    (void)SSL_get_ex_data_X509_STORE_CTX_idx();
    r = ASYNC_start_job(job, w, &ret,
                        (int (*)(void *))(void (*)(void))SSL_get_ex_data_X509_STORE_CTX_idx,
                        block, sizeof(block));
    job_ran += (r == ASYNC_FINISH && ret >= 0);
    return r;
}

int main(void)
{
    SSL_CTX *sctx;
    tlsd_conn c;
    ASYNC_WAIT_CTX *w;
    ASYNC_JOB *job = NULL;
    unsigned long long before;
#if !TLSD_OPENSSL_111
    ASYNC_callback_fn cb = NULL;
    void *cbarg = NULL;
#endif

    tlsd_begin("job_layout", TLSD_SHIM_ONLY);
    sctx = tlsd_server_ctx("ec", 0);
    /* A real SSL with a callback: the hook looks at every job start, and
     * the shim has measured libssl's job layout on a known SSL. */
    tlsd_conn_init(&c, sctx, NULL);
    SSL_set_async_callback(c.server, tlsd_cb);
    SSL_set_async_callback_arg(c.server, &c);
    tlsd_handshake(&c);
    TLSD_CHECK(atomic_load(&c.notes) == 1, "the real handshake's callback: %u",
               atomic_load(&c.notes));
    tlsd_say("a real handshake with a callback: delivered once");

    w = ASYNC_WAIT_CTX_new();
    TLSD_CHECK(w != NULL, "ASYNC_WAIT_CTX_new");
    before = unverified();

    /* First word: not a pointer. Read as an SSL* it would crash at once. */
    TLSD_CHECK(start_job(w, &job, (void *)(uintptr_t)0x11) == ASYNC_FINISH,
               "the reordered job did not finish");
    /* First word: a real, live SSL, but the out-pointer is not its job field
     * (the layout changed around it): still not provably libssl's. */
    TLSD_CHECK(start_job(w, &job, c.server) == ASYNC_FINISH,
               "the second reordered job did not finish");
    TLSD_CHECK(job_ran == 2, "the jobs ran %d times, want 2", job_ran);
    tlsd_say("two same-size jobs of another layout ran to completion");

    TLSD_CHECK(unverified() - before == 2, "jobs_unverified grew by %llu, want 2",
               unverified() - before);
#if !TLSD_OPENSSL_111
    /* (1.1.1's wait ctx has no callback to wire.) */
    TLSD_CHECK(ASYNC_WAIT_CTX_get_callback(w, &cb, &cbarg) == 0 && cb == NULL,
               "the shim wired a wait ctx it could not verify");
#endif
    tlsd_say("both forwarded untouched and counted; their wait ctx not wired");

    /* The real SSL still works after that. */
    tlsd_conn_reset(&c);
    tlsd_handshake(&c);
    TLSD_CHECK(atomic_load(&c.notes) == 2, "callbacks after reuse: %u, want 2 in all",
               atomic_load(&c.notes));
    tlsd_say("the real SSL still gets its callback");

    ASYNC_WAIT_CTX_free(w);
    tlsd_conn_free(&c);
    SSL_CTX_free(sctx);
    return tlsd_end();
}
