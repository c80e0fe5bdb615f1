/*
 * Seeded randomized API sequences (shim only). Four threads each own a few
 * connections (OpenSSL forbids using one SSL from two threads at once; the
 * server CTXs are shared) and run random sequences of SSL_new, SSL_dup,
 * SSL_free, SSL_clear, SSL_set_SSL_CTX, setting and clearing the callback
 * and arg on SSLs and CTXs, single handshake steps, and accelerator styles
 * (completion now: inline dasync style; later: device thread, with latency
 * or held; never: EAGAIN refusals and fd-only; after free: an SSL freed
 * while its operation is held on the device). The device thread delivers
 * callbacks concurrently.
 *
 * Callbacks also free and clear other threads' SSLs: a worker now and then
 * hands a paused connection over to a shared pool of orphans instead of
 * freeing it, and callbacks (on the device, adapter or an owner thread)
 * take orphans from the pool and clear their callback or free them.
 *
 * It proves that every callback that arrives
 *   - gets the SSL* it belongs to (its arg token names its owner SSL),
 *   - gets an arg that was in force for that SSL while the completion was
 *     being delivered, and is a function that was set on that SSL then,
 *   - never starts after SSL_free(s) or SSL_set_async_callback(s, NULL)
 *     returned, and finds its SSL still there at its end, however long it
 *     ran (the shim waits for nothing: a free under a running callback is
 *     done when the callback returns; the test's own ex_data free function
 *     tells when OpenSSL really freed the SSL),
 * and that every handshake left open still completes once the device is
 * released, and nothing crashes or leaks (ASan+UBSan in make test). Some
 * device-thread callbacks yield the CPU for a while, so that frees and
 * clears on the owner threads land while they run.
 *
 * FUZZ_SEED (printed at start) reproduces each thread's operation sequence;
 * the interleaving of threads and the device is not reproducible.
 * FUZZ_OPS sets the total operation count (default 100000), FUZZ_WEIGHTS
 * the operation mix. The summary counts operations, checked callbacks and
 * violations by kind (the first MAX_REPORTS are printed in detail).
 *
 * How "in force" is checked: a global clock ticks at every change. Each SSL
 * (one record per SSL object, never freed during the run) keeps a history
 * of its callback/arg values with the clock at which each started (taken
 * before the setter call, so a value the shim already sees is in the
 * history) and the clock at which the setter that replaced it returned. A
 * delivery must use values in force at some clock in [lb, now]: now is read
 * at callback entry; lb is a clock the shim's read of the values cannot
 * precede, so the delivery began after it: for a device-thread delivery the
 * clock the device read just before it started the delivery (simaccel's
 * notify hook), for the adapter's thread the end of its previous callback
 * (it delivers one after the other), for an inline delivery the start of
 * the SSL call it runs in. A free or a clear that returned before lb must
 * have stopped the delivery. With a NULL or CTX arg the SSL* alone names the SSL, and
 * malloc hands a freed SSL's address to the next one at once: such a
 * delivery is checked against every SSL that had that address, and passes
 * if it fits one of them.
 */
#include "tlsdrive.h"

#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define THREADS 4
#define SLOTS 6          /* connections per thread */
#define PREV 4           /* freed SSLs per slot still findable by pointer */
#define NCTX 3
#define NCB 3
#define TOKEN_MAGIC 0x70c3e9a1u
#define MAX_REPORTS 20

/* ---------------------------------------------------------------- state */

static atomic_uint_fast64_t gclock = 1;

static uint64_t tick(void)
{
    return atomic_fetch_add(&gclock, 1);
}

struct rec;

/* An arg value. Allocated, never freed until the end of the run, so a
 * callback can always read the token it was given. */
typedef struct token {
    unsigned magic;
    int kind;            /* 0: set on an SSL, 1: set on a CTX */
    struct rec *owner;   /* the SSL it was set on (kind 0) */
    int ctx;             /* the CTX it was set on (kind 1) */
    int paired_cb;       /* callback in force when it was made (diagnostic) */
    uint64_t serial;
    struct token *next;  /* arena list */
} token;

typedef struct hist {
    uint64_t start, until;  /* until 0: still in force */
    int cb;                 /* -1: NULL */
    token *arg;
} hist;

/* One SSL object, from SSL_new/SSL_dup to SSL_free. */
typedef struct rec {
    SSL *ssl;
    int thread, slot;
    uint64_t serial;
    pthread_mutex_t mu;  /* protects the history; never held across an SSL call */
    hist *h;
    size_t n, cap;
    atomic_uint_fast64_t last_clear_done;  /* clock when the last clear returned */
    atomic_uint_fast64_t freed;            /* clock when SSL_free returned */
    atomic_int really_freed;               /* OpenSSL freed it (its ex_data) */
    atomic_uint delivered;
    struct rec *next;    /* arena list */
    struct rec *same;    /* older records in the same by_ptr bucket */
} rec;

typedef struct conn {
    rec *r;              /* NULL: slot empty */
    SSL *client;
    int ctx;             /* the CTX the server SSL uses now */
    int attached, started, paused, server_done, client_done;
} conn;

typedef struct slotview {
    _Atomic(rec *) cur;
    _Atomic(rec *) prev[PREV];
    unsigned prev_next;
} slotview;

static SSL_CTX *ctxs[NCTX];
static pthread_rwlock_t ctx_lock[NCTX];
static int ctx_cb[NCTX];            /* current values, under ctx_lock (write) */
static token *ctx_arg[NCTX];
static slotview views[THREADS][SLOTS];

static pthread_mutex_t arena_mu = PTHREAD_MUTEX_INITIALIZER;
static token *tokens;
static rec *recs;
static uint64_t token_serial, rec_serial;
/* Every record ever made, by SSL pointer (under arena_mu): a completion that
 * comes late may name an SSL freed long ago whose address is in use again. */
#define BUCKETS 4096
static rec *by_ptr[BUCKETS];

static size_t bucket(const SSL *s)
{
    return ((uintptr_t)s >> 4) * 0x9e3779b97f4a7c15ull >> 52;
}

static atomic_uint violations;
static atomic_uint reports;
/* Kinds of violation, counted separately for the summary. */
enum kind {
    K_THREAD, K_NOT_TOKEN, K_WRONG_SSL, K_UNKNOWN_SSL, K_AFTER_FREE, K_AFTER_CLEAR, K_BAD_CB,
    K_BAD_ARG, K_FREED_UNDER, K_COUNT
};
static const char *const kind_names[K_COUNT] = {
    "callback on an unexpected thread", "arg is no token", "SSL* is not its arg's SSL",
    "SSL* of no SSL of the test", "started after SSL_free returned",
    "started after a clear returned", "callback not in force", "arg not in force",
    "SSL freed while its callback ran",
};
static atomic_uint kind_count[K_COUNT];
static atomic_uint_fast64_t deliveries, device_deliveries, inline_deliveries,
    self_clears, mixed_pairs, slow_callbacks, orphans_freed, orphans_cleared;

static uint64_t seed;
static _Thread_local uint64_t lb_device;     /* end of the last callback on this thread */
static _Thread_local uint64_t device_began;  /* device thread: its delivery's start */
static _Thread_local uint64_t lb_call;       /* start of the current SSL call (owner) */
static _Thread_local int in_owner_call;
static _Thread_local int my_worker = -1;   /* worker index on a worker thread */
static _Thread_local uint64_t rng_state;

static void report(enum kind k, const char *fmt, ...) TLSD_PRINTF(2, 3);
static void report(enum kind k, const char *fmt, ...)
{
    va_list ap;

    atomic_fetch_add(&violations, 1);
    atomic_fetch_add(&kind_count[k], 1);
    if (atomic_fetch_add(&reports, 1) >= MAX_REPORTS)
        return;
    flockfile(stderr);
    fprintf(stderr, "VIOLATION (seed %llu): ", (unsigned long long)seed);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    funlockfile(stderr);
}

static uint64_t rnd(void)
{
    /* splitmix64: a reproducible sequence per thread from the seed */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static unsigned below(unsigned n)
{
    return (unsigned)(rnd() % n);
}

static token *token_new(int kind, rec *owner, int ctx, int paired_cb)
{
    token *t = calloc(1, sizeof(*t));

    TLSD_CHECK(t != NULL, "calloc");
    t->magic = TOKEN_MAGIC;
    t->kind = kind;
    t->owner = owner;
    t->ctx = ctx;
    t->paired_cb = paired_cb;
    pthread_mutex_lock(&arena_mu);
    t->serial = ++token_serial;
    t->next = tokens;
    tokens = t;
    pthread_mutex_unlock(&arena_mu);
    return t;
}

static rec *rec_new(SSL *s, int thread, int slot, int cb, token *arg)
{
    rec *r = calloc(1, sizeof(*r));

    TLSD_CHECK(r != NULL, "calloc");
    r->ssl = s;
    r->thread = thread;
    r->slot = slot;
    pthread_mutex_init(&r->mu, NULL);
    r->cap = 8;
    r->h = calloc(r->cap, sizeof(*r->h));
    TLSD_CHECK(r->h != NULL, "calloc");
    /* The values SSL_new copied from the CTX (read under its lock). */
    r->h[0].start = tick();
    r->h[0].cb = cb;
    r->h[0].arg = arg;
    r->n = 1;
    tlsd_watch_free(s, &r->really_freed);
    pthread_mutex_lock(&arena_mu);
    r->serial = ++rec_serial;
    r->next = recs;
    recs = r;
    r->same = by_ptr[bucket(s)];
    by_ptr[bucket(s)] = r;
    pthread_mutex_unlock(&arena_mu);
    return r;
}

/* The value currently in force (owner thread only, so no race on n). */
static hist cur_state(rec *r)
{
    hist h;

    pthread_mutex_lock(&r->mu);
    h = r->h[r->n - 1];
    pthread_mutex_unlock(&r->mu);
    return h;
}

/* Before a setter call: the new value may be seen from now on. Returns the
 * index of the entry it replaces. */
static size_t hist_begin(rec *r, int cb, token *arg)
{
    size_t prev;

    pthread_mutex_lock(&r->mu);
    if (r->n == r->cap) {
        hist *nh = realloc(r->h, 2 * r->cap * sizeof(*nh));

        TLSD_CHECK(nh != NULL, "realloc");
        r->h = nh;
        r->cap *= 2;
    }
    prev = r->n - 1;
    r->h[r->n].start = tick();
    r->h[r->n].until = 0;
    r->h[r->n].cb = cb;
    r->h[r->n].arg = arg;
    r->n++;
    pthread_mutex_unlock(&r->mu);
    return prev;
}

/* After the setter returned: the replaced value is no longer in force. */
static void hist_end(rec *r, size_t prev, int was_clear)
{
    uint64_t t = tick();

    pthread_mutex_lock(&r->mu);
    r->h[prev].until = t;
    pthread_mutex_unlock(&r->mu);
    if (was_clear)
        atomic_store(&r->last_clear_done, t);
}

/* -------------------------------------------------------------- callbacks */

static int cb0(SSL *s, void *arg);
static int cb1(SSL *s, void *arg);
static int cb2(SSL *s, void *arg);
static SSL_async_callback_fn const cbs[NCB] = { cb0, cb1, cb2 };

static SSL_async_callback_fn cb_fn(int i)
{
    return i < 0 ? NULL : cbs[i];
}

static void view_push(int thread, int slot, rec *r)
{
    slotview *v = &views[thread][slot];

    if (r == NULL) {
        rec *old = atomic_load(&v->cur);

        if (old != NULL) {
            atomic_store(&v->prev[v->prev_next], old);
            v->prev_next = (v->prev_next + 1) % PREV;
        }
    }
    atomic_store(&v->cur, r);
}

/* Records whose SSL object had pointer s: the live one and recently freed
 * ones (malloc reuses addresses at once). */
static int find_by_ssl(SSL *s, rec **out, int max)
{
    int n = 0;

    for (int t = 0; t < THREADS; t++)
        for (int k = 0; k < SLOTS; k++) {
            slotview *v = &views[t][k];
            rec *r = atomic_load(&v->cur);

            if (r != NULL && r->ssl == s && n < max)
                out[n++] = r;
            for (int p = 0; p < PREV; p++) {
                r = atomic_load(&v->prev[p]);
                if (r != NULL && r->ssl == s && n < max)
                    out[n++] = r;
            }
        }
    return n;
}

/* Whether some record of an SSL at address s is not freed yet. */
static int live_at(SSL *s)
{
    int live = 0;

    pthread_mutex_lock(&arena_mu);
    for (rec *o = by_ptr[bucket(s)]; o != NULL && !live; o = o->same)
        live = o->ssl == s && !atomic_load(&o->really_freed);
    pthread_mutex_unlock(&arena_mu);
    return live;
}

/* Whether entry e's value was in force at some clock in [lb, now]. */
/* Whether e was in force at some clock in [lb, now]. lb and now are loads
 * of the clock, which tick() had not yet handed out: an entry that ended at
 * exactly lb (its setter returned with tick() == lb) ended after the load,
 * so it was still in force then. */
static int in_window(const hist *e, uint64_t lb, uint64_t now)
{
    return e->start <= now && (e->until == 0 || e->until >= lb);
}

static void dump_history(rec *r, uint64_t lb, uint64_t now)
{
    char buf[1024];
    size_t len = 0;
    size_t from;

    pthread_mutex_lock(&r->mu);
    from = r->n > 8 ? r->n - 8 : 0;
    for (size_t i = from; i < r->n && len < sizeof(buf) - 80; i++)
        len += (size_t)snprintf(buf + len, sizeof(buf) - len, " [%llu,%llu) cb%d arg#%llu",
                                (unsigned long long)r->h[i].start,
                                (unsigned long long)r->h[i].until, r->h[i].cb,
                                r->h[i].arg ? (unsigned long long)r->h[i].arg->serial : 0ull);
    pthread_mutex_unlock(&r->mu);
    flockfile(stderr);
    fprintf(stderr, "  ssl#%llu (thread %d slot %d) history, window [%llu, %llu]:%s\n",
            (unsigned long long)r->serial, r->thread, r->slot, (unsigned long long)lb,
            (unsigned long long)now, buf);
    funlockfile(stderr);
}

enum verdict { V_OK, V_FREED, V_CLEARED, V_BAD_CB, V_BAD_ARG };

/* Checks one delivery against one SSL's record (see the header comment). */
static enum verdict evaluate(rec *r, int me, token *t, uint64_t lb, uint64_t now,
                             uint64_t *lcd_out)
{
    uint64_t lcd = atomic_load(&r->last_clear_done), freed = atomic_load(&r->freed);
    int ok_cb = 0, ok_arg = 0, cleared = 0;

    *lcd_out = lcd;
    pthread_mutex_lock(&r->mu);
    for (size_t i = r->n; i-- > 0;) {
        const hist *e = &r->h[i];

        if (e->cb == me && in_window(e, lb, now))
            ok_cb = 1;
        if (e->arg == t && in_window(e, lb, now))
            ok_arg = 1;
        /* The callback's last period ended by a clear before lb. */
        if (e->cb == me && e->until != 0 && e->until == lcd && lcd < lb)
            cleared = 1;
        if (e->until != 0 && e->until < lb)
            break; /* entries end in order: the older ones ended before lb */
    }
    pthread_mutex_unlock(&r->mu);
    if (!ok_arg)
        return V_BAD_ARG;
    /* freed and lb are ticks and loads: a free that returned at exactly lb
     * returned after the delivery began. */
    if (freed != 0 && freed < lb)
        return V_FREED;
    if (!ok_cb)
        return cleared ? V_CLEARED : V_BAD_CB;
    return V_OK;
}

/* ---------------------------------------------------------------- orphans */

/* A paused connection a worker handed over: nobody's any more, so any
 * thread that takes it from the pool may free it or clear its callback. */
typedef struct orphan {
    rec *r;
    SSL *client;
} orphan;

#define ORPHANS 16
static _Atomic(orphan *) orphan_pool[ORPHANS];

static void orphan_free(orphan *o)
{
    SSL_free(o->r->ssl);
    atomic_store(&o->r->freed, tick());
    SSL_free(o->client);
    free(o);
}

/* From inside a callback: take an orphan, if there is one, and clear its
 * callback (then free it) or free it. */
static void take_orphan(int clear_first)
{
    for (int i = 0; i < ORPHANS; i++) {
        orphan *o = atomic_exchange(&orphan_pool[i], NULL);

        if (o == NULL)
            continue;
        if (clear_first) {
            size_t prev = hist_begin(o->r, -1, cur_state(o->r).arg);

            TLSD_CHECK(SSL_set_async_callback(o->r->ssl, NULL) == 1, "clear an orphan");
            hist_end(o->r, prev, 1);
            atomic_fetch_add(&orphans_cleared, 1);
        }
        orphan_free(o);
        atomic_fetch_add(&orphans_freed, 1);
        return;
    }
}

/* The device thread notes when each of its deliveries begins. */
static void on_notify(void)
{
    device_began = atomic_load(&gclock);
}

static int check_callback(int me, SSL *s, void *arg)
{
    uint64_t now = atomic_load(&gclock);
    /* The device thread, or the shim's fd adapter thread (which delivers
     * the fd-only pauses' callbacks: every pause on OpenSSL 1.1.1). */
    int on_device = simaccel_on_device_thread() || tlsd_on_adapter_thread();
    uint64_t lb = on_device ? lb_device : lb_call;

    if (simaccel_on_device_thread() && device_began > lb)
        lb = device_began;
    uint64_t lcd = 0;
    token *t = arg;
    rec *cand[THREADS * SLOTS * (PREV + 1)], *r = NULL;
    int n, best = -1;
    enum verdict v = V_BAD_CB, bv = V_BAD_ARG;

    atomic_fetch_add(&deliveries, 1);
    atomic_fetch_add(on_device ? &device_deliveries : &inline_deliveries, 1);
    if (!on_device && !in_owner_call)
        report(K_THREAD, "callback cb%d on a thread that is neither the device nor inside an SSL call",
               me);
    if (t != NULL && t->magic != TOKEN_MAGIC) {
        report(K_NOT_TOKEN, "cb%d got an arg %p that is no token", me, arg);
        return 1;
    }
    if (t != NULL && t->kind == 0) {
        /* The arg names its SSL. */
        cand[0] = t->owner;
        n = 1;
        if (t->owner->ssl != s) {
            report(K_WRONG_SSL, "cb%d got SSL %p, but its arg #%llu belongs to ssl#%llu (%p)", me,
                   (void *)s, (unsigned long long)t->serial,
                   (unsigned long long)t->owner->serial, (void *)t->owner->ssl);
            return 1;
        }
    } else {
        n = find_by_ssl(s, cand, (int)(sizeof(cand) / sizeof(cand[0])));
        if (n == 0) {
            /* Not in the views (an orphan, or freed long ago): every SSL
             * this test made at that address. */
            pthread_mutex_lock(&arena_mu);
            for (rec *o = by_ptr[bucket(s)]; o != NULL && n < (int)(sizeof(cand) / sizeof(cand[0]));
                 o = o->same)
                if (o->ssl == s)
                    cand[n++] = o;
            pthread_mutex_unlock(&arena_mu);
        }
    }
    if (n == 0) {
        report(K_UNKNOWN_SSL, "cb%d got SSL %p that is no SSL of this test (arg #%llu)", me, (void *)s,
               t ? (unsigned long long)t->serial : 0ull);
        return 1;
    }
    /* With a NULL or CTX arg, an SSL* may name a live SSL and freed ones at
     * the same address: the delivery is right if it fits any of them, and
     * is reported against the one it fits best. */
    for (int i = 0; i < n; i++) {
        uint64_t l;

        v = evaluate(cand[i], me, t, lb, now, &l);
        if (best < 0 || v < bv) {
            best = i;
            bv = v;
            lcd = l;
        }
        if (v == V_OK)
            break;
    }
    if (bv != V_OK && (t == NULL || t->kind != 0)) {
        /* Not the live SSL's nor a recent one's: any SSL ever at this address? */
        pthread_mutex_lock(&arena_mu);
        for (rec *o = by_ptr[bucket(s)]; o != NULL && bv != V_OK; o = o->same) {
            uint64_t l;

            if (o->ssl != s)
                continue;
            v = evaluate(o, me, t, lb, now, &l);
            if (v < bv) {
                cand[best] = o;
                bv = v;
                lcd = l;
            }
        }
        pthread_mutex_unlock(&arena_mu);
    }
    r = cand[best];
    switch (bv) {
    case V_OK:
        break;
    case V_FREED:
        report(K_AFTER_FREE, "cb%d (%s) ran for ssl#%llu after its SSL_free returned (clock %llu, now "
               "%llu)", me, on_device ? "device" : "inline", (unsigned long long)r->serial,
               (unsigned long long)atomic_load(&r->freed), (unsigned long long)now);
        return 1;
    case V_CLEARED:
        report(K_AFTER_CLEAR, "cb%d (%s) ran for ssl#%llu after SSL_set_async_callback(s, NULL) returned "
               "(clock %llu, now %llu)", me, on_device ? "device" : "inline",
               (unsigned long long)r->serial, (unsigned long long)lcd,
               (unsigned long long)now);
        dump_history(r, lb, now);
        return 1;
    case V_BAD_CB:
        report(K_BAD_CB, "cb%d (%s) called for ssl#%llu but was not its callback in the window", me,
               on_device ? "device" : "inline", (unsigned long long)r->serial);
        dump_history(r, lb, now);
        return 1;
    case V_BAD_ARG:
        report(K_BAD_ARG, "cb%d (%s) for ssl#%llu got arg #%llu, not one in force in the window", me,
               on_device ? "device" : "inline", (unsigned long long)r->serial,
               t ? (unsigned long long)t->serial : 0ull);
        dump_history(r, lb, now);
        return 1;
    }
    if (t != NULL && t->paired_cb != me)
        atomic_fetch_add(&mixed_pairs, 1); /* legal: two separate setter calls */
    atomic_fetch_add(&r->delivered, 1);

    /* Now and then a slow callback, so that a free or clear on the owner
     * thread lands while it runs (nothing waits for it). */
    if (on_device && (now * 0x9e3779b97f4a7c15ull) >> 61 == 0) {
        atomic_fetch_add(&slow_callbacks, 1);
        for (int i = 0; i < 20; i++)
            sched_yield();
    }
    /* Callbacks free and clear other threads' SSLs (the orphans). */
    if ((now * 0xbf58476d1ce4e5b9ull) >> 61 == 0)
        take_orphan((now >> 3) & 1);
    /* Whatever happened meanwhile, the SSL is still there. Without an arg
     * naming it, the record chosen by pointer may be an earlier SSL at the
     * same address: then some SSL at that address must be live. */
    if (atomic_load(&r->really_freed) && (t != NULL && t->kind == 0 ? 1 : !live_at(s)))
        report(K_FREED_UNDER, "ssl#%llu was freed while its callback cb%d ran",
               (unsigned long long)r->serial, me);
    else if (SSL_is_server(s) != 1) /* freed memory reads as the fill byte */
        report(K_FREED_UNDER, "ssl#%llu no longer reads as its SSL in its callback cb%d",
               (unsigned long long)r->serial, me);

    /* Inline (dasync) delivery runs on the owner thread inside its SSL call:
     * it may clear its own SSL's callback, which must not wait for itself. */
    if (!on_device && r->thread == my_worker && (now & 7) == 0) {
        size_t prev = hist_begin(r, -1, cur_state(r).arg);

        SSL_set_async_callback(s, NULL);
        hist_end(r, prev, 1);
        atomic_fetch_add(&self_clears, 1);
    }
    if (on_device)
        lb_device = atomic_load(&gclock);
    return 1;
}

static int cb0(SSL *s, void *arg)
{
    return check_callback(0, s, arg);
}

static int cb1(SSL *s, void *arg)
{
    return check_callback(1, s, arg);
}

static int cb2(SSL *s, void *arg)
{
    return check_callback(2, s, arg);
}

/* ---------------------------------------------------------- connections */

enum {
    OP_NEW, OP_DUP, OP_FREE, OP_CLEAR, OP_SET_CTX, OP_SET_CB, OP_CLEAR_CB, OP_SET_ARG,
    OP_CLEAR_ARG, OP_CTX_CB, OP_CTX_ARG, OP_STEP, OP_STYLE, OP_HOLD, OP_RELEASE, OP_ORPHAN,
    OP_COUNT
};
static const char *const op_names[OP_COUNT] = {
    "SSL_new", "SSL_dup", "SSL_free", "SSL_clear", "SSL_set_SSL_CTX", "set callback",
    "clear callback", "set arg", "clear arg", "CTX callback", "CTX arg", "handshake step",
    "device style", "device hold", "device release", "orphan",
};
/* Relative weights: handshake steps and setters dominate. */
static unsigned op_weight[OP_COUNT] = { 4, 2, 2, 2, 1, 5, 2, 5, 2, 1, 1, 40, 2, 1, 3, 2 };

typedef struct worker {
    int id;
    uint64_t ops;
    conn c[SLOTS];
    uint64_t count[OP_COUNT];
    uint64_t handshakes, frees_paused, dup_copies, dup_refs;
} worker;

static SSL *new_server(int ctx, int *cb, token **arg)
{
    SSL *s;

    pthread_rwlock_rdlock(&ctx_lock[ctx]);
    s = SSL_new(ctxs[ctx]);
    *cb = ctx_cb[ctx];
    *arg = ctx_arg[ctx];
    pthread_rwlock_unlock(&ctx_lock[ctx]);
    TLSD_CHECK(s != NULL, "SSL_new");
    return s;
}

static void adopt(worker *w, int k, SSL *s, int ctx, int cb, token *arg)
{
    conn *c = &w->c[k];

    memset(c, 0, sizeof(*c));
    c->ctx = ctx;
    c->r = rec_new(s, w->id, k, cb, arg);
    view_push(w->id, k, c->r);
}

static void conn_free(worker *w, int k)
{
    conn *c = &w->c[k];
    rec *r = c->r;

    if (c->paused)
        w->frees_paused++;
    SSL_free(r->ssl);
    atomic_store(&r->freed, tick());
    SSL_free(c->client);
    view_push(w->id, k, NULL);
    memset(c, 0, sizeof(*c));
}

/* A fresh transport and client: at the first step and after SSL_clear. */
static void attach(conn *c)
{
    BIO *sb = NULL, *cbio = NULL;

    SSL_free(c->client);
    TLSD_CHECK(BIO_new_bio_pair(&sb, 0, &cbio, 0) == 1, "BIO_new_bio_pair");
    c->client = SSL_new(tlsd_client_ctx());
    TLSD_CHECK(c->client != NULL, "SSL_new(client)");
    SSL_set_bio(c->r->ssl, sb, sb);
    SSL_set_bio(c->client, cbio, cbio);
    SSL_set_accept_state(c->r->ssl);
    SSL_set_connect_state(c->client);
    c->attached = 1;
    c->started = c->paused = c->server_done = c->client_done = 0;
}

/* One step of the pair: one call on each unfinished end. The server may be
 * re-driven while its job is paused (a spurious resume pauses again), so a
 * step never needs to know whether a completion arrived. */
static void step(worker *w, conn *c)
{
    int r, e;

    if (!c->attached || (c->server_done && c->client_done)) {
        if (c->server_done && c->client_done)
            TLSD_CHECK(SSL_clear(c->r->ssl) == 1, "SSL_clear");
        attach(c);
    }
    if (!c->client_done) {
        r = SSL_do_handshake(c->client);
        if (r == 1) {
            c->client_done = 1;
        } else {
            e = SSL_get_error(c->client, r);
            TLSD_CHECK(e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE,
                       "client SSL_do_handshake: error %d", e);
        }
    }
    if (!c->server_done) {
        c->started = 1;
        lb_call = atomic_load(&gclock);
        in_owner_call = 1;
        r = SSL_do_handshake(c->r->ssl);
        in_owner_call = 0;
        if (r == 1) {
            c->server_done = 1;
            c->paused = 0;
            if (c->client_done)
                w->handshakes++;
        } else {
            e = SSL_get_error(c->r->ssl, r);
            TLSD_CHECK(e == SSL_ERROR_WANT_ASYNC || e == SSL_ERROR_WANT_READ
                           || e == SSL_ERROR_WANT_WRITE,
                       "server SSL_do_handshake: error %d", e);
            if (e == SSL_ERROR_WANT_ASYNC && c->paused)
                sched_yield(); /* paused again: let the device thread run */
            c->paused = e == SSL_ERROR_WANT_ASYNC;
        }
    } else if (c->client_done) {
        w->handshakes++;
    }
}

static int pick_slot(worker *w, int want_used)
{
    int k = (int)below(SLOTS);

    for (int i = 0; i < SLOTS; i++, k = (k + 1) % SLOTS)
        if ((w->c[k].r != NULL) == want_used)
            return k;
    return -1;
}

static unsigned weight_total; /* set by main before the threads start */

static int pick_op(void)
{
    unsigned x = below(weight_total);

    for (int i = 0; i < OP_COUNT; i++) {
        if (x < op_weight[i])
            return i;
        x -= op_weight[i];
    }
    return OP_STEP;
}

static void set_ssl_values(conn *c, int cb, int set_cb, token *arg, int set_arg)
{
    rec *r = c->r;
    hist cur = cur_state(r);
    size_t prev = hist_begin(r, set_cb ? cb : cur.cb, set_arg ? arg : cur.arg);

    if (set_cb)
        TLSD_CHECK(SSL_set_async_callback(r->ssl, cb_fn(cb)) == 1, "SSL_set_async_callback");
    else
        TLSD_CHECK(SSL_set_async_callback_arg(r->ssl, arg) == 1, "SSL_set_async_callback_arg");
    hist_end(r, prev, set_cb && cb < 0);
}

static void do_op(worker *w, int op)
{
    int k, ctx, cb;
    token *arg;
    conn *c;

    w->count[op]++;
    switch (op) {
    case OP_NEW:
        if ((k = pick_slot(w, 0)) < 0)
            break;
        ctx = (int)below(NCTX);
        {
            SSL *s = new_server(ctx, &cb, &arg); /* sets cb and arg */

            adopt(w, k, s, ctx, cb, arg);
        }
        break;
    case OP_DUP: {
        SSL *d;

        if ((k = pick_slot(w, 1)) < 0)
            break;
        c = &w->c[k];
        if (c->attached) {
            /* Past SSL_new's state (or with BIOs that SSL_dup would try to
             * duplicate): only ever an up-ref. */
            if (!c->started)
                break;
            d = SSL_dup(c->r->ssl);
            TLSD_CHECK(d == c->r->ssl, "SSL_dup of a started SSL made a new object");
            SSL_free(d); /* drops the reference, frees nothing */
            w->dup_refs++;
            break;
        }
        /* A fresh SSL: SSL_dup is SSL_new(its CTX), with the CTX's values. */
        pthread_rwlock_rdlock(&ctx_lock[c->ctx]);
        d = SSL_dup(c->r->ssl);
        cb = ctx_cb[c->ctx];
        arg = ctx_arg[c->ctx];
        pthread_rwlock_unlock(&ctx_lock[c->ctx]);
        TLSD_CHECK(d != NULL && d != c->r->ssl, "SSL_dup of a fresh SSL");
        w->dup_copies++;
        ctx = c->ctx;
        if ((k = pick_slot(w, 0)) < 0) {
            /* No room: the copy replaces its source. */
            k = (int)(c - w->c);
            conn_free(w, k);
        }
        adopt(w, k, d, ctx, cb, arg);
        break;
    }
    case OP_FREE:
        if ((k = pick_slot(w, 1)) >= 0)
            conn_free(w, k);
        break;
    case OP_CLEAR:
        /* Not while a job is paused: the job would resume on cleared state. */
        if ((k = pick_slot(w, 1)) < 0 || w->c[k].paused)
            break;
#if OPENSSL_VERSION_NUMBER < 0x30000000L
        /* OpenSSL 1.1.1's SSL_clear of a server in the middle of a handshake
         * leaves extension state behind: its next handshake fails with
         * "unsolicited extension" at the client. Only idle or finished
         * servers are cleared there. */
        if (w->c[k].started && !w->c[k].server_done)
            break;
#endif
        c = &w->c[k];
        TLSD_CHECK(SSL_clear(c->r->ssl) == 1, "SSL_clear");
        if (c->attached)
            attach(c);
        break;
    case OP_SET_CTX:
        if ((k = pick_slot(w, 1)) < 0 || w->c[k].paused)
            break;
        c = &w->c[k];
        ctx = (int)below(NCTX);
        TLSD_CHECK(SSL_set_SSL_CTX(c->r->ssl, ctxs[ctx]) == ctxs[ctx], "SSL_set_SSL_CTX");
        c->ctx = ctx;
        break;
    case OP_SET_CB:
        if ((k = pick_slot(w, 1)) >= 0)
            set_ssl_values(&w->c[k], (int)below(NCB), 1, NULL, 0);
        break;
    case OP_CLEAR_CB:
        if ((k = pick_slot(w, 1)) >= 0)
            set_ssl_values(&w->c[k], -1, 1, NULL, 0);
        break;
    case OP_SET_ARG:
        if ((k = pick_slot(w, 1)) >= 0) {
            rec *r = w->c[k].r;

            set_ssl_values(&w->c[k], 0, 0, token_new(0, r, -1, cur_state(r).cb), 1);
        }
        break;
    case OP_CLEAR_ARG:
        if ((k = pick_slot(w, 1)) >= 0)
            set_ssl_values(&w->c[k], 0, 0, NULL, 1);
        break;
    case OP_CTX_CB:
    case OP_CTX_ARG:
        ctx = (int)below(NCTX);
        cb = below(4) == 0 ? -1 : (int)below(NCB);
        pthread_rwlock_wrlock(&ctx_lock[ctx]);
        if (op == OP_CTX_CB) {
            TLSD_CHECK(SSL_CTX_set_async_callback(ctxs[ctx], cb_fn(cb)) == 1, "CTX callback");
            ctx_cb[ctx] = cb;
        } else {
            arg = below(4) == 0 ? NULL : token_new(1, NULL, ctx, ctx_cb[ctx]);
            TLSD_CHECK(SSL_CTX_set_async_callback_arg(ctxs[ctx], arg) == 1, "CTX arg");
            ctx_arg[ctx] = arg;
        }
        pthread_rwlock_unlock(&ctx_lock[ctx]);
        break;
    case OP_STEP:
        if ((k = pick_slot(w, 1)) >= 0)
            step(w, &w->c[k]);
        break;
    case OP_STYLE:
        switch (below(6)) {
        case 0: tlsd_style(SIMACCEL_STYLE_INLINE, 0, 0); break;
        case 1: tlsd_style(SIMACCEL_STYLE_FD, 0, 0); break;
        case 2: tlsd_style(SIMACCEL_STYLE_EAGAIN, 0, 2); break;
        case 3: tlsd_style(SIMACCEL_STYLE_CALLBACK, 200, 0); break;
        default: tlsd_style(SIMACCEL_STYLE_CALLBACK, 0, 0); break;
        }
        break;
    case OP_HOLD:
        simaccel_hold(1);
        break;
    case OP_RELEASE:
        simaccel_hold(0);
        break;
    case OP_ORPHAN:
        /* A paused connection goes to the pool (else it is freed). */
        if ((k = pick_slot(w, 1)) < 0 || !w->c[k].paused)
            break;
        c = &w->c[k];
        {
            orphan *o = calloc(1, sizeof(*o));
            int i;

            TLSD_CHECK(o != NULL, "calloc");
            o->r = c->r;
            o->client = c->client;
            for (i = 0; i < ORPHANS; i++) {
                orphan *none = NULL;

                if (atomic_compare_exchange_strong(&orphan_pool[i], &none, o))
                    break;
            }
            if (i == ORPHANS) {
                free(o);
                conn_free(w, k);
                break;
            }
            view_push(w->id, k, NULL);
            memset(c, 0, sizeof(*c));
        }
        break;
    }
}

/* After the random phase every connection's handshake must still complete.
 * Each thread finishes its own: a paused job is resumed on the thread that
 * started it (OpenSSL's jobs are per-thread objects). */
static void drain(worker *w)
{
    long long rounds = 100000;

    for (;;) {
        int pending = 0;

        for (int k = 0; k < SLOTS; k++) {
            conn *c = &w->c[k];

            if (c->r == NULL || (c->attached && c->server_done && c->client_done))
                continue;
            step(w, c);
            pending += !(c->server_done && c->client_done);
        }
        if (pending == 0)
            break;
        TLSD_CHECK(--rounds > 0, "thread %d: %d handshakes make no progress", w->id, pending);
        /* What is left is paused or waiting for its peer: once the device is
         * idle every submitted operation is complete and a re-drive proceeds
         * (also one whose completion was dropped because its callback was
         * cleared in flight). */
        TLSD_CHECK(simaccel_wait_idle(tlsd_timeout_ms()), "device did not go idle");
    }
    for (int k = 0; k < SLOTS; k++)
        if (w->c[k].r != NULL)
            conn_free(w, k);
}

static pthread_barrier_t phase;

static void *worker_main(void *p)
{
    worker *w = p;

    my_worker = w->id;
    rng_state = seed ^ (0x632be59bd9b4e019ull * (uint64_t)(w->id + 1));
    for (uint64_t i = 0; i < w->ops; i++)
        do_op(w, pick_op());
    pthread_barrier_wait(&phase); /* all random sequences done */
    pthread_barrier_wait(&phase); /* main released the device */
    drain(w);
    return NULL;
}

static uint64_t env_u64(const char *name, uint64_t dflt)
{
    const char *v = getenv(name);

    return v != NULL && *v != '\0' ? strtoull(v, NULL, 0) : dflt;
}

int main(void)
{
    worker ws[THREADS];
    pthread_t th[THREADS];
    uint64_t ops = env_u64("FUZZ_OPS", 100000), total[OP_COUNT] = { 0 };
    uint64_t handshakes = 0, frees_paused = 0, dup_copies = 0, dup_refs = 0;
    struct timespec t0, t1, t2, tstart;

    tlsd_begin("fuzz_api", TLSD_SHIM_ONLY);
    clock_gettime(CLOCK_REALTIME, &t0);
    seed = env_u64("FUZZ_SEED", ((uint64_t)t0.tv_sec * 1000003u) ^ (uint64_t)t0.tv_nsec
                                    ^ ((uint64_t)getpid() << 20));
    /* On stdout first, so a crash still leaves the seed in the log. */
    printf("fuzz_api: FUZZ_SEED=%llu FUZZ_OPS=%llu threads=%d\n", (unsigned long long)seed,
           (unsigned long long)ops, THREADS);
    fflush(stdout);

    for (int i = 0; i < NCTX; i++) {
        ctxs[i] = tlsd_server_ctx("ec", 0);
        pthread_rwlock_init(&ctx_lock[i], NULL);
        ctx_cb[i] = i < NCB ? i : -1;
        ctx_arg[i] = token_new(1, NULL, i, ctx_cb[i]);
        SSL_CTX_set_async_callback(ctxs[i], cb_fn(ctx_cb[i]));
        SSL_CTX_set_async_callback_arg(ctxs[i], ctx_arg[i]);
    }
    (void)tlsd_client_ctx(); /* made once here, then only read by the threads */
    tlsd_style(SIMACCEL_STYLE_CALLBACK, 0, 0);
    simaccel_set_notify_hook(on_notify);
    /* Before the random phase: one SSL's handshake (the shim measures the
     * job layout on it) and one more SSL_new (the reference count on it),
     * so that SSL_free can defer from the first random operation on. */
    {
        tlsd_conn warm[2];
        sslasync_stats st = { 0 };

        tlsd_conn_init(&warm[0], ctxs[NCTX - 1], NULL);
        SSL_set_async_callback(warm[0].server, tlsd_cb);
        SSL_set_async_callback_arg(warm[0].server, &warm[0]);
        tlsd_handshake(&warm[0]);
        tlsd_conn_init(&warm[1], ctxs[NCTX - 1], NULL);
        tlsd_conn_free(&warm[0]);
        tlsd_conn_free(&warm[1]);
        TLSD_CHECK(tlsd_shim_stats_get()(&st, sizeof(st)) >= 0 && st.free_deferral == 1,
                   "the shim cannot defer SSL_free (free_deferral %llu)",
                   (unsigned long long)st.free_deferral);
    }
    clock_gettime(CLOCK_MONOTONIC, &tstart);

    /* FUZZ_WEIGHTS=w0,w1,... overrides the op mix (to narrow down a failure). */
    if (getenv("FUZZ_WEIGHTS") != NULL) {
        const char *p = getenv("FUZZ_WEIGHTS");

        for (int i = 0; i < OP_COUNT && *p != '\0'; i++) {
            char *end;

            op_weight[i] = (unsigned)strtoul(p, &end, 10);
            p = *end == ',' ? end + 1 : end;
        }
    }
    for (int i = 0; i < OP_COUNT; i++)
        weight_total += op_weight[i];
    TLSD_CHECK(weight_total > 0, "FUZZ_WEIGHTS: all zero");
    memset(ws, 0, sizeof(ws));
    pthread_barrier_init(&phase, NULL, THREADS + 1);
    for (int t = 0; t < THREADS; t++) {
        ws[t].id = t;
        ws[t].ops = ops / THREADS + (t < (int)(ops % THREADS));
        TLSD_CHECK(pthread_create(&th[t], NULL, worker_main, &ws[t]) == 0, "pthread_create");
    }
    pthread_barrier_wait(&phase);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    simaccel_hold(0);
    tlsd_style(SIMACCEL_STYLE_CALLBACK, 0, 0);
    pthread_barrier_wait(&phase);
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    for (int i = 0; i < ORPHANS; i++) {
        orphan *o = atomic_exchange(&orphan_pool[i], NULL);

        if (o != NULL)
            orphan_free(o);
    }
    clock_gettime(CLOCK_MONOTONIC, &t2);

    for (int t = 0; t < THREADS; t++) {
        for (int i = 0; i < OP_COUNT; i++)
            total[i] += ws[t].count[i];
        handshakes += ws[t].handshakes;
        frees_paused += ws[t].frees_paused;
        dup_copies += ws[t].dup_copies;
        dup_refs += ws[t].dup_refs;
    }
    TLSD_CHECK(simaccel_wait_idle(tlsd_timeout_ms()), "device did not go idle");

    /* Informational only: nothing is asserted about time. */
    printf("fuzz_api: random phase %.1f s, drain %.1f s\n",
           (double)(t1.tv_sec - tstart.tv_sec) + (double)(t1.tv_nsec - tstart.tv_nsec) / 1e9,
           (double)(t2.tv_sec - t1.tv_sec) + (double)(t2.tv_nsec - t1.tv_nsec) / 1e9);
    for (int i = 0; i < OP_COUNT; i++)
        printf("fuzz_api: %-16s %llu\n", op_names[i], (unsigned long long)total[i]);
    printf("fuzz_api: handshakes completed %llu, SSLs freed while paused %llu, "
           "SSL_dup copies %llu / up-refs %llu\n", (unsigned long long)handshakes,
           (unsigned long long)frees_paused, (unsigned long long)dup_copies,
           (unsigned long long)dup_refs);
    printf("fuzz_api: callbacks checked %llu (device thread %llu, inline %llu; slow %llu; "
           "arg set beside another callback %llu), inline self-clears %llu\n",
           (unsigned long long)atomic_load(&deliveries),
           (unsigned long long)atomic_load(&device_deliveries),
           (unsigned long long)atomic_load(&inline_deliveries),
           (unsigned long long)atomic_load(&slow_callbacks),
           (unsigned long long)atomic_load(&mixed_pairs),
           (unsigned long long)atomic_load(&self_clears));
    printf("fuzz_api: orphans freed from callbacks %llu (cleared first %llu)\n",
           (unsigned long long)atomic_load(&orphans_freed),
           (unsigned long long)atomic_load(&orphans_cleared));
    for (int k = 0; k < K_COUNT; k++)
        if (atomic_load(&kind_count[k]) != 0)
            printf("fuzz_api: VIOLATIONS %-32s %u\n", kind_names[k], atomic_load(&kind_count[k]));
    fflush(stdout);

    /* Every SSL is freed by now, but a free left to a callback still
     * running (on the fd adapter's thread, say) completes when it returns:
     * the records and tokens it reads go only after that. */
    for (rec *r = recs; r != NULL; r = r->next)
        tlsd_wait_set(&r->really_freed, "every SSL freed");
    for (int i = 0; i < NCTX; i++) {
        SSL_CTX_free(ctxs[i]);
        pthread_rwlock_destroy(&ctx_lock[i]);
    }
    while (recs != NULL) {
        rec *r = recs;

        recs = r->next;
        pthread_mutex_destroy(&r->mu);
        free(r->h);
        free(r);
    }
    while (tokens != NULL) {
        token *t = tokens;

        tokens = t->next;
        free(t);
    }
    TLSD_CHECK(atomic_load(&violations) == 0, "%u violations with FUZZ_SEED=%llu",
               atomic_load(&violations), (unsigned long long)seed);
    TLSD_CHECK(atomic_load(&deliveries) > 0, "no callback was delivered at all");
    return tlsd_end();
}
