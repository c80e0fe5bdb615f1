/*
 * The driver of sslasync-bench: it measures nothing itself. It keeps two
 * long-lived workers (the same binary, one with the shim preloaded), sends
 * them the same cells in alternating order round after round, and turns
 * the samples into medians, spreads and per-round paired ratios. Pairing
 * by round matters on a shared 2-core VM: a slow period hits both sides of
 * a pair, so the ratio stays honest even when absolute numbers drift.
 *
 * It also runs the deterministic parts (callgrind instruction counts, heap
 * growth per SSL) in fresh processes, and writes results.json plus the data
 * and script for the handshake plot.
 */
#define _GNU_SOURCE
#include "bench.h"

#include <errno.h>
#include <math.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

extern char **environ;

#define MAXS 4          /* sides per cell */
#define MAXR 64         /* samples per side: rounds x repetitions */
#define NSIDE_HS 4

__attribute__((noreturn, format(printf, 1, 2)))
static void fatal(const char *fmt, ...)
{
    va_list ap;

    fflush(stdout);
    fputs("sslasync-bench: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static double now_s(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static char self_exe[4096];
static const char *shim_path;
static const char *out_dir;
static int quick;

/* ---------------------------------------------------------------- spawn */

/* environ without LD_PRELOAD, plus LD_PRELOAD=shim for the shim side. */
static char **child_env(int shim)
{
    static char *envs[2][1024];
    static char preload[4200];
    char **e = envs[shim];
    size_t n = 0, i;

    for (i = 0; environ[i] != NULL && n < 1020; i++)
        if (strncmp(environ[i], "LD_PRELOAD=", 11) != 0
            && strncmp(environ[i], "SSLASYNC_STATS=", 15) != 0)
            e[n++] = environ[i];
    if (shim) {
        snprintf(preload, sizeof(preload), "LD_PRELOAD=%s", shim_path);
        e[n++] = preload;
    }
    e[n] = NULL;
    return e;
}

static pid_t spawn(char *const argv[], int shim, int in_fd, int out_fd, int err_fd)
{
    posix_spawn_file_actions_t fa;
    pid_t pid;
    int rc;

    posix_spawn_file_actions_init(&fa);
    if (in_fd >= 0)
        posix_spawn_file_actions_adddup2(&fa, in_fd, 0);
    if (out_fd >= 0)
        posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
    if (err_fd >= 0)
        posix_spawn_file_actions_adddup2(&fa, err_fd, 2);
    rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, child_env(shim));
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        fatal("cannot start %s: %s", argv[0], strerror(rc));
    return pid;
}

static void wait_ok(pid_t pid, const char *what)
{
    int st;

    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fatal("%s failed (status %d)", what, st);
}

/* Runs argv to completion and returns its first stdout line. */
static void run_capture(char *const argv[], int shim, char *line, size_t len)
{
    int p[2];
    pid_t pid;
    FILE *f;

    if (pipe(p) != 0)
        fatal("pipe: %s", strerror(errno));
    pid = spawn(argv, shim, -1, p[1], -1);
    close(p[1]);
    f = fdopen(p[0], "r");
    if (f == NULL || fgets(line, (int)len, f) == NULL)
        line[0] = '\0';
    if (f != NULL)
        fclose(f);
    wait_ok(pid, argv[1]);
}

/* -------------------------------------------------------------- workers */

struct worker {
    const char *name;
    int shim;
    pid_t pid;
    FILE *to, *from;
};

static char sched_mode[16];
static struct worker workers[2] = { { "native", 0, 0, NULL, NULL },
                                    { "shim", 1, 0, NULL, NULL } };

static void worker_start(struct worker *w, int light)
{
    int in[2], out[2];
    char line[256], want[64];
    char *argv[] = { self_exe, "worker", light ? "light" : NULL, NULL };

    if (pipe(in) != 0 || pipe(out) != 0)
        fatal("pipe: %s", strerror(errno));
    w->pid = spawn(argv, w->shim, in[0], out[1], -1);
    close(in[0]);
    close(out[1]);
    w->to = fdopen(in[1], "w");
    w->from = fdopen(out[0], "r");
    if (w->to == NULL || w->from == NULL || fgets(line, sizeof(line), w->from) == NULL)
        fatal("%s worker did not start", w->name);
    /* A silently failed preload, or an inert shim, would make the whole
     * comparison native against native. */
    snprintf(want, sizeof(want), "ok impl=%s active=%d", w->name, w->shim);
    if (strncmp(line, want, strlen(want)) != 0)
        fatal("%s worker reports \"%.*s\", expected \"%s\"%s", w->name,
              (int)strcspn(line, "\n"), line, want,
              w->shim ? " (is the shim built for this OpenSSL? see its stderr line)" : "");
    if (sscanf(line, "%*s %*s %*s sched=%15s", sched_mode) != 1)
        snprintf(sched_mode, sizeof(sched_mode), "?");
}

static void worker_stop(struct worker *w)
{
    fputs("quit\n", w->to);
    fclose(w->to);
    fclose(w->from);
    wait_ok(w->pid, w->name);
}

/* One command; returns count/seconds, and in *disturbed the fraction of
 * the cell the worker's threads spent runnable but not running. */
static double worker_rate(struct worker *w, const char *cmd, double *disturbed)
{
    char line[256];
    double n, s, delay_ns;

    fprintf(w->to, "%s\n", cmd);
    fflush(w->to);
    if (fgets(line, sizeof(line), w->from) == NULL)
        fatal("%s worker died on \"%s\"", w->name, cmd);
    if (sscanf(line, "ok %lf %lf %lf", &n, &s, &delay_ns) != 3 || s <= 0)
        fatal("%s worker: bad answer \"%s\" to \"%s\"", w->name, line, cmd);
    if (disturbed != NULL)
        *disturbed = delay_ns * 1e-9 / s;
    return n / s;
}

/* ---------------------------------------------------------------- cells */

enum { G_HS, G_RTT, G_IO, G_API };

struct cell {
    int group;
    char name[64];             /* key in results.json */
    char title[64];            /* table label */
    int nsides;
    const char *side[MAXS];    /* native, shim, native_cb, shim_cb, ... */
    int wk[MAXS];              /* worker index */
    char cmd[MAXS][96];
    double v[MAXS][MAXR];      /* rates, per second */
    int n[MAXS];
    int rounds;                /* rounds (or worker pairs) this cell takes part in */
    /* handshake parameters */
    int key_rsa, tls12, lat;
    long conc;
};

static struct cell cells[160];
static int ncells;

static struct cell *cell_new(int group, int rounds)
{
    struct cell *c;

    if (ncells == (int)(sizeof(cells) / sizeof(cells[0])))
        fatal("too many cells");
    c = &cells[ncells++];
    memset(c, 0, sizeof(*c));
    c->group = group;
    c->rounds = rounds;
    return c;
}

static void side(struct cell *c, const char *name, int wk, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void side(struct cell *c, const char *name, int wk, const char *fmt, ...)
{
    va_list ap;

    c->side[c->nsides] = name;
    c->wk[c->nsides] = wk;
    va_start(ap, fmt);
    vsnprintf(c->cmd[c->nsides], sizeof(c->cmd[0]), fmt, ap);
    va_end(ap);
    c->nsides++;
}

static int side_index(const struct cell *c, const char *name)
{
    int i;

    for (i = 0; i < c->nsides; i++)
        if (strcmp(c->side[i], name) == 0)
            return i;
    return -1;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static double median(const double *v, int n)
{
    double s[MAXR];

    if (n == 0)
        return NAN;
    memcpy(s, v, sizeof(double) * (size_t)n);
    qsort(s, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static double vmin(const double *v, int n)
{
    double m = INFINITY;

    while (n-- > 0)
        m = v[n] < m ? v[n] : m;
    return m;
}

static double vmax(const double *v, int n)
{
    double m = -INFINITY;

    while (n-- > 0)
        m = v[n] > m ? v[n] : m;
    return m;
}

/* Ratio a/b of the two sides' samples taken in the same round. */
static int paired(const struct cell *c, const char *a, const char *b, double *r)
{
    int i = side_index(c, a), j = side_index(c, b), k, n;

    if (i < 0 || j < 0)
        return 0;
    n = c->n[i] < c->n[j] ? c->n[i] : c->n[j];
    for (k = 0; k < n; k++)
        r[k] = c->v[i][k] / c->v[j][k];
    return n;
}

static double ratio_median(const struct cell *c, const char *a, const char *b)
{
    double r[MAXR];
    int n = paired(c, a, b, r);

    return n ? median(r, n) : NAN;
}

/* ------------------------------------------------------------- the plan */

static const int hs_conc[] = { 1, 16, 256, 1024 };
static double hs_rate[2][2];   /* calibrated handshakes/s at lat 0: [rsa][tls12] */

static long hs_count(const struct cell *c, double cell_s)
{
    long k = (long)ceil(hs_rate[c->key_rsa][c->tls12] * cell_s);

    return k < c->conc ? c->conc : k;
}

static double plan_cell_s;
static int n_pairs;

static void plan_handshakes(int rounds, int rounds_big)
{
    int k, v, l, ci;
    const int lats[] = { 0, 50 };
    double cell_s = plan_cell_s;
    struct cell *c;

    for (k = 0; k < 2; k++) {
        if (quick && k == 1)
            continue;
        for (v = 0; v < 2; v++) {
            if (quick && v == 1)
                continue;
            for (l = 0; l < 2; l++) {
                for (ci = 0; ci < 4; ci++) {
                    long conc = hs_conc[ci];
                    const char *key = k ? "rsa" : "ec";
                    int ver = v ? 12 : 13;
                    long cnt;

                    c = cell_new(G_HS, conc >= 1024 ? rounds_big : rounds);
                    c->key_rsa = k;
                    c->tls12 = v;
                    c->lat = lats[l];
                    c->conc = conc;
                    cnt = hs_count(c, cell_s);
                    snprintf(c->name, sizeof(c->name), "hs/%s/tls1%c/lat%d/c%ld", key,
                             v ? '2' : '3', lats[l], conc);
                    snprintf(c->title, sizeof(c->title), "%-3s TLS1.%c %3dus c=%-4ld", key,
                             v ? '2' : '3', lats[l], conc);
                    side(c, "native_cb", 0, "hs %s %d %d %ld cb %ld", key, ver, lats[l], conc, cnt);
                    side(c, "shim_cb", 1, "hs %s %d %d %ld cb %ld", key, ver, lats[l], conc, cnt);
                    side(c, "shim_fd", 1, "hs %s %d %d %ld fd %ld", key, ver, lats[l], conc, cnt);
                    /* Native fd mode only feeds the plot (TLS 1.3 panels). */
                    if (!v)
                        side(c, "native_fd", 0, "hs %s %d %d %ld fd %ld", key, ver, lats[l],
                             conc, cnt);
                }
            }
        }
    }
    fprintf(stderr, "sslasync-bench: %d handshake cells, %d rounds (%d at c=1024)\n", ncells,
            rounds, rounds_big);
}

/* micro_s: seconds per round-trip/I/O sample (the device-thread round
 * trips get 3x: their batching makes them the noisiest). */
static void plan_micro(int pairs, double micro_s)
{
    struct cell *c;
    int k;

    c = cell_new(G_RTT, pairs);
    snprintf(c->name, sizeof(c->name), "roundtrip_inline");
    snprintf(c->title, sizeof(c->title), "inline device, 1 conn");
    side(c, "native", 0, "rtt inline 1 %.3f", micro_s);
    side(c, "shim", 1, "rtt inline 1 %.3f", micro_s);
    c = cell_new(G_RTT, pairs);
    snprintf(c->name, sizeof(c->name), "roundtrip_device");
    snprintf(c->title, sizeof(c->title), "device thread, 1 conn");
    side(c, "native", 0, "rtt device 1 %.3f", 3 * micro_s);
    side(c, "shim", 1, "rtt device 1 %.3f", 3 * micro_s);
    c = cell_new(G_RTT, pairs);
    snprintf(c->name, sizeof(c->name), "roundtrip_device_c64");
    snprintf(c->title, sizeof(c->title), "device thread, 64 conns");
    side(c, "native", 0, "rtt device 64 %.3f", 3 * micro_s);
    side(c, "shim", 1, "rtt device 64 %.3f", 3 * micro_s);

    c = cell_new(G_IO, pairs);
    snprintf(c->name, sizeof(c->name), "io64");
    snprintf(c->title, sizeof(c->title), "64 B records");
    side(c, "native", 0, "io 64 plain %.3f", micro_s);
    side(c, "shim", 1, "io 64 plain %.3f", micro_s);
    c = cell_new(G_IO, pairs);
    snprintf(c->name, sizeof(c->name), "io16k");
    snprintf(c->title, sizeof(c->title), "16 KiB records");
    side(c, "native", 0, "io 16384 plain %.3f", micro_s);
    side(c, "shim", 1, "io 16384 plain %.3f", micro_s);
    c = cell_new(G_IO, pairs);
    snprintf(c->name, sizeof(c->name), "io64_mixed");
    snprintf(c->title, sizeof(c->title), "64 B, another SSL uses API");
    side(c, "native", 0, "io 64 mixed %.3f", micro_s);
    side(c, "shim", 1, "io 64 mixed %.3f", micro_s);

    {
        static const char *const api[][2] = {
            { "SSL_set_async_callback_arg", "set_arg" },
            { "SSL_get_async_status", "get_status" },
            { "SSL_CTX_set_async_callback", "ctx_set_cb" },
        };
        long calls = quick ? 1000000 : 3000000;

        for (k = 0; k < 3; k++) {
            c = cell_new(G_API, pairs);
            snprintf(c->name, sizeof(c->name), "%s", api[k][0]);
            snprintf(c->title, sizeof(c->title), "%s", api[k][0]);
            side(c, "native", 0, "set %s %ld", api[k][1], calls);
            side(c, "shim", 1, "set %s %ld", api[k][1], calls);
        }
    }
}

/*
 * A sample whose threads waited for a CPU more than this fraction of the
 * cell was disturbed by other processes: it is taken again (twice at most,
 * keeping the least disturbed). Wake-up latency alone stays well below.
 */
#define DISTURBED 0.02
static int samples_taken, samples_retried, samples_disturbed;
static double worst_disturbance;

/*
 * After each sample the CPU is left idle for a while: the workers run
 * SCHED_FIFO, and a CPU that stays busy with real-time work for most of a
 * second gets 50 ms taken away for other tasks by the kernel (fair server /
 * RT throttling), which would land in the middle of some cell.
 */
static void gap(double t0)
{
    double idle = (now_s() - t0) * 0.1;
    struct timespec ts;

    if (idle < 0.005)
        idle = 0.005;
    ts.tv_sec = (time_t)idle;
    ts.tv_nsec = (long)((idle - (double)ts.tv_sec) * 1e9);
    nanosleep(&ts, NULL);
}

static double sample(const struct cell *c, int s)
{
    double best = 0, best_d = INFINITY, v, d;
    int tries;

    for (tries = 0; tries < 2; tries++) {
        double t0 = now_s();

        v = worker_rate(&workers[c->wk[s]], c->cmd[s], &d);
        gap(t0);
        if (d < best_d) {
            best = v;
            best_d = d;
        }
        if (d <= DISTURBED)
            break;
        samples_retried++;
    }
    samples_taken++;
    if (best_d > DISTURBED)
        samples_disturbed++;
    if (best_d > worst_disturbance)
        worst_disturbance = best_d;
    return best;
}

/*
 * Every round runs in a fresh worker pair, warmed with the same work on
 * both sides: every server CTX the plan uses, and the job pool and heap at
 * 1024 connections if the round has such cells. A fresh pair also re-rolls
 * the address-space layout, whose effect on a tight loop (measured here: a
 * few percent either way, fixed for a process's life) would otherwise be
 * mistaken for the shim's; the median over pairs averages it out.
 */
static void warm_up(int big, int calibrate)
{
    int w, k, v, m;
    char cmd[96];

    for (w = 0; w < 2; w++) {
        struct worker *wk = &workers[calibrate ? 1 - w : w];

        for (k = 0; k < 2; k++)
            for (v = 0; v < 2; v++)
                for (m = 0; m < 2; m++) {
                    double r;

                    if (quick && (k || v))
                        continue;
                    snprintf(cmd, sizeof(cmd), "hs %s %d 0 16 %s 48", k ? "rsa" : "ec",
                             v ? 12 : 13, m ? "fd" : "cb");
                    r = worker_rate(wk, cmd, NULL);
                    /* Sizes the handshake cells: ~cell_s on the native side. */
                    if (calibrate && !wk->shim && !m)
                        hs_rate[k][v] = r;
                }
        if (big) {
            double t0 = now_s();

            worker_rate(wk, "hs ec 13 0 1024 cb 1024", NULL);
            gap(t0);
        }
    }
}

static void run_cell(struct cell *c, int rot)
{
    int j;

    /* Rotate who goes first. */
    for (j = 0; j < c->nsides; j++) {
        int s = (j + rot) % c->nsides;

        c->v[s][c->n[s]++] = sample(c, s);
    }
}

static void run_rounds(int rounds, int rounds_big)
{
    int r, i;

    for (r = 0; r < rounds; r++) {
        double t0 = now_s();

        worker_start(&workers[0], 0);
        worker_start(&workers[1], 0);
        warm_up(r < rounds_big, r == 0);
        if (r == 0)
            plan_handshakes(rounds, rounds_big);
        for (i = 0; i < ncells; i++)
            if (cells[i].group == G_HS && r < cells[i].rounds)
                run_cell(&cells[i], r + i);
        worker_stop(&workers[0]);
        worker_stop(&workers[1]);
        fprintf(stderr, "sslasync-bench: handshakes, round %d/%d done (%.0f s)\n", r + 1, rounds,
                now_s() - t0);
    }
}

/*
 * The short cells (round trips, bulk I/O, API calls) are where layout bias
 * and noise are largest relative to the effect, so each gets many fresh
 * worker pairs (light ones: no RSA key to make), one sample per side each.
 */
static void run_micro(int pairs)
{
    int p, i;
    double t0 = now_s();

    for (p = 0; p < pairs; p++) {
        int w;

        worker_start(&workers[0], 1);
        worker_start(&workers[1], 1);
        for (w = 0; w < 2; w++) {
            worker_rate(&workers[w], "rtt inline 1 0.01", NULL);
            worker_rate(&workers[w], "rtt device 64 0.01", NULL);
            worker_rate(&workers[w], "io 64 mixed 0.01", NULL);
            worker_rate(&workers[w], "io 16384 plain 0.01", NULL);
        }
        for (i = 0; i < ncells; i++)
            if (cells[i].group != G_HS)
                run_cell(&cells[i], p + i);
        worker_stop(&workers[0]);
        worker_stop(&workers[1]);
    }
    fprintf(stderr, "sslasync-bench: round trips, I/O, API calls: %d worker pairs done (%.0f s)\n",
            pairs, now_s() - t0);
}

/* ------------------------------------------------------------ callgrind */

static const char *const cg_loops[] = { "rtt_inline", "io64", "io64_mixed" };
#define NLOOPS 3

struct cg {
    double total[NLOOPS][2][2]; /* [loop][shim][N or 2N] */
    double per_iter[NLOOPS][2];
    long n;
    int ok;
};
static struct cg cg;

static double callgrind_total(const char *file)
{
    FILE *f = fopen(file, "r");
    char line[512];
    double v = NAN;

    if (f == NULL)
        return NAN;
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "summary: %lf", &v) == 1 || sscanf(line, "totals: %lf", &v) == 1)
            break;
    fclose(f);
    return v;
}

static int have_program(const char *name)
{
    char cmd[256];

    snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", name);
    return system(cmd) == 0;
}

/*
 * Each (loop, side, N) in a fresh process under callgrind; two at a time,
 * since instruction counts do not depend on timing. The difference between
 * 2N and N iterations is N iterations' worth, with start-up cancelled.
 */
static void run_callgrind(long n)
{
    char dir[4096];
    int job = 0, l, s, m;
    pid_t pids[2];
    int npids = 0;

    cg.n = n;
    if (!have_program("valgrind")) {
        fprintf(stderr, "sslasync-bench: valgrind not found, instruction counts skipped\n");
        return;
    }
    snprintf(dir, sizeof(dir), "%s/callgrind", out_dir);
    mkdir(dir, 0755);
    for (l = 0; l < NLOOPS; l++)
        for (s = 0; s < 2; s++)
            for (m = 0; m < 2; m++, job++) {
                char outf[4200], logf[4200], iters[32], opt[4300];
                char *argv[] = { "valgrind", "--tool=callgrind", opt, self_exe, "count",
                                 (char *)cg_loops[l], iters, NULL };
                FILE *lf;

                snprintf(outf, sizeof(outf), "%s/%s.%s.%ld.out", dir, cg_loops[l],
                         s ? "shim" : "native", n * (m + 1));
                snprintf(logf, sizeof(logf), "%s/%s.%s.%ld.log", dir, cg_loops[l],
                         s ? "shim" : "native", n * (m + 1));
                snprintf(opt, sizeof(opt), "--callgrind-out-file=%s", outf);
                snprintf(iters, sizeof(iters), "%ld", n * (m + 1));
                if ((lf = fopen(logf, "w")) == NULL)
                    fatal("%s: %s", logf, strerror(errno));
                pids[npids++] = spawn(argv, s, -1, fileno(lf), fileno(lf));
                fclose(lf);
                if (npids == 2) {
                    wait_ok(pids[0], "callgrind run");
                    wait_ok(pids[1], "callgrind run");
                    npids = 0;
                }
            }
    for (l = 0; l < NLOOPS; l++)
        for (s = 0; s < 2; s++) {
            for (m = 0; m < 2; m++) {
                char outf[4200];

                snprintf(outf, sizeof(outf), "%s/%s.%s.%ld.out", dir, cg_loops[l],
                         s ? "shim" : "native", n * (m + 1));
                cg.total[l][s][m] = callgrind_total(outf);
            }
            cg.per_iter[l][s] = (cg.total[l][s][1] - cg.total[l][s][0]) / (double)n;
        }
    cg.ok = 1;
}

/* --------------------------------------------------------------- memory */

static const char *const mem_variants[] = { "none", "ctx_cb", "ssl_cb", "ssl_cb_appdata" };
#define NMEM 4

struct memres {
    double rss[NMEM][2], heap[NMEM][2]; /* bytes per SSL */
    long n;
};
static struct memres mem;

static void run_mem(long n)
{
    int v, s;

    mem.n = n;
    for (v = 0; v < NMEM; v++)
        for (s = 0; s < 2; s++) {
            char cnt[32], line[256];
            char *argv[] = { self_exe, "mem", (char *)mem_variants[v], cnt, NULL };
            long got;
            double rss, heap;

            snprintf(cnt, sizeof(cnt), "%ld", n);
            run_capture(argv, s, line, sizeof(line));
            if (sscanf(line, "ok %ld %lf %lf", &got, &rss, &heap) != 3 || got != n)
                fatal("mem %s: bad answer \"%s\"", mem_variants[v], line);
            mem.rss[v][s] = rss / (double)n;
            mem.heap[v][s] = heap / (double)n;
        }
}

/* -------------------------------------------------------------- reports */

static void print_spread(const struct cell *c, int s, int width)
{
    char buf[64];

    if (s < 0) {
        printf("%*s", width, "-");
        return;
    }
    snprintf(buf, sizeof(buf), "%.0f [%.0f..%.0f]", median(c->v[s], c->n[s]),
             vmin(c->v[s], c->n[s]), vmax(c->v[s], c->n[s]));
    printf("%*s", width, buf);
}

static void print_ratio(const struct cell *c, const char *a, const char *b)
{
    double r[MAXR];
    int n = paired(c, a, b, r);

    if (n == 0)
        printf("  %18s", "-");
    else
        printf("  %5.3f [%.3f..%.3f]", median(r, n), vmin(r, n), vmax(r, n));
}

static double geomean_ratio(const char *a, const char *b, int group, double *worst,
                            const char **worst_name)
{
    double sum = 0, w = INFINITY;
    int i, n = 0;

    for (i = 0; i < ncells; i++) {
        double r;

        if (cells[i].group != group || isnan(r = ratio_median(&cells[i], a, b)))
            continue;
        sum += log(r);
        n++;
        if (r < w) {
            w = r;
            *worst_name = cells[i].name;
        }
    }
    *worst = w;
    return n ? exp(sum / n) : NAN;
}

static void print_tables(int rounds, int rounds_big)
{
    int i;

    printf("\nWorkers: loop and device threads pinned to two CPUs, scheduling %s; %d samples, "
           "%d retaken after other processes took the CPU (>%.0f%% of a cell), %d still "
           "disturbed (worst %.1f%%)\n",
           sched_mode, samples_taken, samples_retried, DISTURBED * 100, samples_disturbed,
           worst_disturbance * 100);
    printf("\nHandshakes/s through the simulated accelerator: median [min..max] of %d rounds "
           "(%d at c=1024);\nratios are medians [min..max] of per-round pairs.\n",
           rounds, rounds_big);
    printf("%-22s %20s %20s %20s %20s  %-18s  %-18s\n", "cell", "native cb", "shim cb", "shim fd",
           "native fd", "shim/native (cb)", "callback/fd (shim)");
    for (i = 0; i < ncells; i++) {
        const struct cell *c = &cells[i];

        if (c->group != G_HS)
            continue;
        printf("%-22s ", c->title);
        print_spread(c, side_index(c, "native_cb"), 20);
        print_spread(c, side_index(c, "shim_cb"), 21);
        print_spread(c, side_index(c, "shim_fd"), 21);
        print_spread(c, side_index(c, "native_fd"), 21);
        print_ratio(c, "shim_cb", "native_cb");
        print_ratio(c, "shim_cb", "shim_fd");
        putchar('\n');
    }
    printf("\nAsync round trips, bulk I/O (ops/s) and API calls (calls/s): median [min..max] of "
           "%d fresh worker pairs\n", ncells ? cells[ncells - 1].rounds : 0);
    printf("%-30s %26s %26s  %s\n", "cell", "native", "shim", "shim/native");
    for (i = 0; i < ncells; i++) {
        const struct cell *c = &cells[i];

        if (c->group == G_HS)
            continue;
        printf("%-30s ", c->title);
        print_spread(c, 0, 26);
        print_spread(c, 1, 27);
        print_ratio(c, "shim", "native");
        if (c->group == G_API)
            printf("   (%.2f vs %.2f ns/call)", 1e9 / median(c->v[1], c->n[1]),
                   1e9 / median(c->v[0], c->n[0]));
        if (c->group == G_IO && strstr(c->name, "16k") != NULL)
            printf("   (%.0f vs %.0f MB/s)", median(c->v[1], c->n[1]) * 16384 / 1e6,
                   median(c->v[0], c->n[0]) * 16384 / 1e6);
        putchar('\n');
    }
    if (cg.ok) {
        printf("\nInstructions per iteration (callgrind, (I(2N) - I(N)) / N, N = %ld):\n", cg.n);
        printf("%-12s %12s %12s %10s\n", "loop", "native", "shim", "shim-native");
        for (i = 0; i < NLOOPS; i++)
            printf("%-12s %12.1f %12.1f %+10.1f\n", cg_loops[i], cg.per_iter[i][0],
                   cg.per_iter[i][1], cg.per_iter[i][1] - cg.per_iter[i][0]);
        printf("(rtt_inline: 1 delivered callback and 2 job starts per iteration; io64 and "
               "io64_mixed: 2 job starts)\n");
    }
    printf("\nMemory per SSL over %ld SSL objects (bytes; heap = malloc'd, RSS = resident):\n", mem.n);
    printf("%-16s %10s %10s %10s %10s %12s %12s\n", "variant", "heap nat", "heap shim", "rss nat",
           "rss shim", "heap delta", "rss delta");
    for (i = 0; i < NMEM; i++)
        printf("%-16s %10.1f %10.1f %10.1f %10.1f %+12.1f %+12.1f\n", mem_variants[i],
               mem.heap[i][0], mem.heap[i][1], mem.rss[i][0], mem.rss[i][1],
               mem.heap[i][1] - mem.heap[i][0], mem.rss[i][1] - mem.rss[i][0]);
}

static const struct cell *cell_named(const char *name)
{
    int i;

    for (i = 0; i < ncells; i++)
        if (strcmp(cells[i].name, name) == 0)
            return &cells[i];
    return NULL;
}

struct summary {
    double hs, hs_fd, cbfd, cbfd_native;
    double hs_worst, hs_fd_worst, cbfd_worst, cbfd_native_worst;
    const char *hs_worst_name, *hs_fd_worst_name, *cbfd_worst_name, *cbfd_native_worst_name;
};

/* Timed budgets (ratios) judged on a quick run are only indicative: too
 * few cells and rounds to resolve one percent. */
static void budget(const char *name, double v, double limit, int at_least, const char *unit)
{
    int ok = at_least ? v >= limit : v <= limit;

    printf(at_least ? "BUDGET %s %s%.3f%s (%s %g%s) %s%s\n" : "BUDGET %s %s%.1f%s (%s %g%s) %s%s\n",
           name, at_least ? "" : "+", v, unit,
           at_least ? ">=" : "<=", limit, unit, isnan(v) ? "unmeasured" : ok ? "ok" : "MISS",
           quick && at_least ? " (quick run: indicative only)" : "");
}

static void print_summary(struct summary *sm)
{
    static const char *const simple[] = { "roundtrip_inline", "roundtrip_device",
                                          "roundtrip_device_c64", "io64", "io16k", "io64_mixed",
                                          "SSL_set_async_callback_arg", "SSL_get_async_status",
                                          "SSL_CTX_set_async_callback" };
    size_t i;

    sm->hs = geomean_ratio("shim_cb", "native_cb", G_HS, &sm->hs_worst, &sm->hs_worst_name);
    sm->hs_fd = geomean_ratio("shim_fd", "native_fd", G_HS, &sm->hs_fd_worst, &sm->hs_fd_worst_name);
    sm->cbfd = geomean_ratio("shim_cb", "shim_fd", G_HS, &sm->cbfd_worst, &sm->cbfd_worst_name);
    sm->cbfd_native = geomean_ratio("native_cb", "native_fd", G_HS, &sm->cbfd_native_worst,
                                    &sm->cbfd_native_worst_name);
    printf("\nSummary (handshake lines: geometric mean over the grid of per-cell median ratios;\n"
           "worst cells: shim/native %.3f at %s, callback/fd %.3f at %s)\n",
           sm->hs_worst, sm->hs_worst_name, sm->cbfd_worst, sm->cbfd_worst_name);
    printf("RATIO handshakes shim/native=%.3f\n", sm->hs);
    printf("RATIO handshakes_fdmode shim/native=%.3f\n", sm->hs_fd);
    printf("RATIO handshakes callback/fd=%.3f\n", sm->cbfd);
    printf("RATIO handshakes_native callback/fd=%.3f\n", sm->cbfd_native);
    for (i = 0; i < sizeof(simple) / sizeof(simple[0]); i++) {
        const struct cell *c = cell_named(simple[i]);

        if (c != NULL)
            printf("RATIO %s shim/native=%.3f\n", simple[i], ratio_median(c, "shim", "native"));
    }
    if (cg.ok) {
        printf("INSTR per_delivered_callback shim-native=%+.1f\n",
               cg.per_iter[0][1] - cg.per_iter[0][0]);
        printf("INSTR per_passthrough_job_start shim-native=%+.1f\n",
               (cg.per_iter[1][1] - cg.per_iter[1][0]) / 2);
        printf("INSTR per_passthrough_job_start_api_in_use shim-native=%+.1f\n",
               (cg.per_iter[2][1] - cg.per_iter[2][0]) / 2);
    }
    for (i = 0; i < NMEM; i++)
        printf("MEM per_ssl_%s shim-native=%+.1f B (rss %+.1f B)\n", mem_variants[i],
               mem.heap[i][1] - mem.heap[i][0], mem.rss[i][1] - mem.rss[i][0]);

    putchar('\n');
    budget("handshakes shim/native", sm->hs, 0.99, 1, "");
    {
        const char *bulk[] = { "io64", "io16k" };
        const char *rtt[] = { "roundtrip_inline", "roundtrip_device", "roundtrip_device_c64" };

        for (i = 0; i < 2; i++) {
            const struct cell *c = cell_named(bulk[i]);
            char n[64];

            snprintf(n, sizeof(n), "%s shim/native", bulk[i]);
            budget(n, c ? ratio_median(c, "shim", "native") : NAN, 0.99, 1, "");
        }
        for (i = 0; i < 3; i++) {
            const struct cell *c = cell_named(rtt[i]);
            char n[64];

            snprintf(n, sizeof(n), "%s shim/native", rtt[i]);
            budget(n, c ? ratio_median(c, "shim", "native") : NAN, 0.95, 1, "");
        }
    }
    budget("instructions per delivered callback",
           cg.ok ? cg.per_iter[0][1] - cg.per_iter[0][0] : NAN, 60, 0, "");
    budget("instructions per pass-through job start",
           cg.ok ? (cg.per_iter[1][1] - cg.per_iter[1][0]) / 2 : NAN, 25, 0, "");
    budget("bytes per SSL using the API (ctx_cb)", mem.heap[1][1] - mem.heap[1][0], 64, 0, " B");
    budget("bytes per SSL using the API (ssl_cb)", mem.heap[2][1] - mem.heap[2][0], 64, 0, " B");
    budget("bytes per SSL not using the API", mem.heap[0][1] - mem.heap[0][0], 0.5, 0, " B");
}

/* ------------------------------------------------------------- outputs */

static void json_samples(FILE *f, const double *v, int n)
{
    int i;

    fputc('[', f);
    for (i = 0; i < n; i++)
        fprintf(f, "%s%.6g", i ? ", " : "", v[i]);
    fputc(']', f);
}

static void read_first_line(const char *path, const char *prefix, char *out, size_t len)
{
    FILE *f = fopen(path, "r");
    char line[512];

    snprintf(out, len, "unknown");
    if (f == NULL)
        return;
    while (fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, prefix, strlen(prefix)) == 0) {
            char *p = strchr(line, ':');

            if (p != NULL) {
                p++;
                while (*p == ' ' || *p == '\t')
                    p++;
                snprintf(out, len, "%.*s", (int)strcspn(p, "\n"), p);
            }
            break;
        }
    fclose(f);
}

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', f);
        if ((unsigned char)*s >= 0x20)
            fputc(*s, f);
    }
    fputc('"', f);
}

static void write_json(const struct summary *sm, int rounds, int rounds_big, double elapsed)
{
    char path[4200], model[256];
    struct utsname u;
    FILE *f;
    int i, s;

    snprintf(path, sizeof(path), "%s/results.json", out_dir);
    if ((f = fopen(path, "w")) == NULL)
        fatal("%s: %s", path, strerror(errno));
    read_first_line("/proc/cpuinfo", "model name", model, sizeof(model));
    uname(&u);
    fprintf(f, "{\n  \"machine\": {\"cpu\": ");
    json_string(f, model);
    fprintf(f, ", \"cpus\": %ld, \"kernel\": ", sysconf(_SC_NPROCESSORS_ONLN));
    json_string(f, u.release);
    fprintf(f, ", \"openssl\": ");
    json_string(f, OpenSSL_version(OPENSSL_VERSION));
    fprintf(f, "},\n  \"config\": {\"quick\": %s, \"rounds\": %d, \"rounds_c1024\": %d, "
               "\"worker_pairs_short_cells\": %d, "
               "\"elapsed_s\": %.1f, \"sched\": \"%s\", \"samples\": %d, "
               "\"samples_retaken\": %d, \"samples_disturbed\": %d, "
               "\"worst_disturbance\": %.4f, \"shim\": ",
            quick ? "true" : "false", rounds, rounds_big, n_pairs, elapsed, sched_mode, samples_taken,
            samples_retried, samples_disturbed, worst_disturbance);
    json_string(f, shim_path);
    fprintf(f, ", \"units\": \"handshakes, round trips, records and calls per second\"},\n");
    fprintf(f, "  \"cells\": {\n");
    for (i = 0; i < ncells; i++) {
        const struct cell *c = &cells[i];

        fprintf(f, "    \"%s\": {", c->name);
        if (c->group == G_HS)
            fprintf(f, "\"key\": \"%s\", \"tls\": \"1.%c\", \"latency_us\": %d, "
                       "\"concurrency\": %ld, \"count\": %s, ",
                    c->key_rsa ? "rsa2048" : "ecdsa-p256", c->tls12 ? '2' : '3', c->lat, c->conc,
                    strrchr(c->cmd[0], ' ') + 1);
        for (s = 0; s < c->nsides; s++) {
            fprintf(f, "%s\"%s\": {\"median\": %.6g, \"min\": %.6g, \"max\": %.6g, \"samples\": ",
                    s ? ", " : "", c->side[s], median(c->v[s], c->n[s]), vmin(c->v[s], c->n[s]),
                    vmax(c->v[s], c->n[s]));
            json_samples(f, c->v[s], c->n[s]);
            fputc('}', f);
        }
        if (c->group == G_HS) {
            fprintf(f, ", \"ratio_shim_native\": %.4f, \"ratio_callback_fd\": %.4f",
                    ratio_median(c, "shim_cb", "native_cb"), ratio_median(c, "shim_cb", "shim_fd"));
            if (side_index(c, "native_fd") >= 0)
                fprintf(f, ", \"ratio_fdmode_shim_native\": %.4f",
                        ratio_median(c, "shim_fd", "native_fd"));
        } else {
            fprintf(f, ", \"ratio_shim_native\": %.4f", ratio_median(c, "shim", "native"));
        }
        fprintf(f, "}%s\n", i + 1 < ncells ? "," : "");
    }
    fprintf(f, "  },\n  \"callgrind\": ");
    if (cg.ok) {
        fprintf(f, "{\"n\": %ld, \"loops\": {", cg.n);
        for (i = 0; i < NLOOPS; i++)
            fprintf(f, "%s\"%s\": {\"native_total_n\": %.0f, \"native_total_2n\": %.0f, "
                       "\"shim_total_n\": %.0f, \"shim_total_2n\": %.0f, "
                       "\"native_per_iter\": %.2f, \"shim_per_iter\": %.2f}",
                    i ? ", " : "", cg_loops[i], cg.total[i][0][0], cg.total[i][0][1],
                    cg.total[i][1][0], cg.total[i][1][1], cg.per_iter[i][0], cg.per_iter[i][1]);
        fprintf(f, "}, \"extra_per_delivered_callback\": %.2f, "
                   "\"extra_per_passthrough_job_start\": %.2f, "
                   "\"extra_per_passthrough_job_start_api_in_use\": %.2f}",
                cg.per_iter[0][1] - cg.per_iter[0][0], (cg.per_iter[1][1] - cg.per_iter[1][0]) / 2,
                (cg.per_iter[2][1] - cg.per_iter[2][0]) / 2);
    } else {
        fprintf(f, "null");
    }
    fprintf(f, ",\n  \"memory\": {\"ssl_objects\": %ld", mem.n);
    for (i = 0; i < NMEM; i++)
        fprintf(f, ", \"%s\": {\"native_heap_per_ssl\": %.2f, \"shim_heap_per_ssl\": %.2f, "
                   "\"native_rss_per_ssl\": %.2f, \"shim_rss_per_ssl\": %.2f}",
                mem_variants[i], mem.heap[i][0], mem.heap[i][1], mem.rss[i][0], mem.rss[i][1]);
    fprintf(f, "},\n  \"summary\": {\"handshakes_shim_native\": %.4f, "
               "\"handshakes_fdmode_shim_native\": %.4f, \"handshakes_callback_fd\": %.4f, "
               "\"handshakes_native_callback_fd\": %.4f}\n}\n",
            sm->hs, sm->hs_fd, sm->cbfd, sm->cbfd_native);
    fclose(f);
}

/* handshakes.dat (one block per panel) and handshakes.gp for gnuplot. */
static void write_plot(void)
{
    char path[4200];
    FILE *d, *g;
    int k, l, ci, panels = 0, lat;
    const int lats[] = { 0, 50 };

    snprintf(path, sizeof(path), "%s/handshakes.dat", out_dir);
    if ((d = fopen(path, "w")) == NULL)
        fatal("%s: %s", path, strerror(errno));
    snprintf(path, sizeof(path), "%s/handshakes.gp", out_dir);
    if ((g = fopen(path, "w")) == NULL)
        fatal("%s: %s", path, strerror(errno));
    fprintf(d, "# concurrency native_cb shim_cb shim_fd native_fd (median handshakes/s), TLS 1.3\n");
    for (k = 0; k < 2; k++)
        for (l = 0; l < 2; l++) {
            int rows = 0;

            lat = lats[l];
            for (ci = 0; ci < 4; ci++) {
                char name[64];
                const struct cell *c;
                const char *sides[] = { "native_cb", "shim_cb", "shim_fd", "native_fd" };
                int s;

                snprintf(name, sizeof(name), "hs/%s/tls13/lat%d/c%d", k ? "rsa" : "ec", lat,
                         hs_conc[ci]);
                if ((c = cell_named(name)) == NULL)
                    continue;
                if (rows++ == 0)
                    fprintf(d, "%s# %s lat %d\n", panels ? "\n\n" : "", k ? "rsa" : "ec", lat);
                fprintf(d, "%ld", c->conc);
                for (s = 0; s < 4; s++) {
                    int i = side_index(c, sides[s]);

                    fprintf(d, " %.1f", i < 0 ? NAN : median(c->v[i], c->n[i]));
                }
                fputc('\n', d);
            }
            if (rows)
                panels++;
        }
    fclose(d);
    fprintf(g, "# generated by sslasync-bench; run from %s\n", out_dir);
    fprintf(g, "set terminal pngcairo size %d,%d noenhanced font ',10'\n", panels > 2 ? 1200 : 1200,
            panels > 2 ? 900 : 450);
    fprintf(g, "set output 'handshakes.png'\n");
    fprintf(g, "set logscale x 2\nset xtics (1, 16, 256, 1024)\nset xrange [0.7:1500]\n");
    fprintf(g, "set yrange [0:*]\nset grid\nset key bottom right\n");
    fprintf(g, "set xlabel 'concurrent handshakes'\nset ylabel 'handshakes/s'\n");
    fprintf(g, "set multiplot layout %d,2 title 'sslasync: handshakes/s through the simulated "
               "accelerator (TLS 1.3, one event-loop thread)'\n",
            panels > 2 ? 2 : 1);
    panels = 0;
    for (k = 0; k < 2; k++)
        for (l = 0; l < 2; l++) {
            char name[64];

            snprintf(name, sizeof(name), "hs/%s/tls13/lat%d/c1", k ? "rsa" : "ec", lats[l]);
            if (cell_named(name) == NULL)
                continue;
            fprintf(g, "set title '%s, device latency %d us'\n", k ? "RSA-2048" : "ECDSA P-256",
                    lats[l]);
            fprintf(g, "plot 'handshakes.dat' index %d using 1:2 with linespoints lw 2 title "
                       "'native, callback', \\\n"
                       "     '' index %d using 1:3 with linespoints lw 2 title 'shim, callback', \\\n"
                       "     '' index %d using 1:5 with linespoints lw 2 dt 2 title 'native, fd', \\\n"
                       "     '' index %d using 1:4 with linespoints lw 2 dt 2 title 'shim, fd'\n",
                    panels, panels, panels, panels);
            panels++;
        }
    fprintf(g, "unset multiplot\n");
    fclose(g);
}

/* ----------------------------------------------------------------- main */

static double env_double(const char *name, double dflt)
{
    const char *s = getenv(name);

    return s != NULL && *s != '\0' ? atof(s) : dflt;
}

int bench_driver_main(int argc, char **argv)
{
    int i, rounds, rounds_big, pairs;
    double micro_s, t0 = now_s();
    long cg_n, mem_n;
    struct summary sm;
    ssize_t len;

    for (i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            quick = 1;
        else if (strcmp(argv[i], "--shim") == 0 && i + 1 < argc)
            shim_path = argv[++i];
        else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc)
            out_dir = argv[++i];
        else
            fatal("usage: run [--quick] --shim LIBSSLASYNC --out DIR");
    }
    if (shim_path == NULL || out_dir == NULL)
        fatal("usage: run [--quick] --shim LIBSSLASYNC --out DIR");
    if (access(shim_path, R_OK) != 0)
        fatal("%s: %s", shim_path, strerror(errno));
    if ((len = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1)) <= 0)
        fatal("readlink(/proc/self/exe): %s", strerror(errno));
    self_exe[len] = '\0';
    mkdir(out_dir, 0755);

    rounds = (int)env_double("BENCH_ROUNDS", quick ? 3 : 5);
    rounds_big = (int)env_double("BENCH_ROUNDS_C1024", quick ? 1 : 3);
    pairs = n_pairs = (int)env_double("BENCH_PAIRS", quick ? 6 : 15);
    plan_cell_s = env_double("BENCH_CELL_SECONDS", quick ? 0.12 : 0.2);
    micro_s = env_double("BENCH_MICRO_SECONDS", quick ? 0.05 : 0.08);
    cg_n = (long)env_double("BENCH_CALLGRIND_N", quick ? 500 : 2000);
    mem_n = (long)env_double("BENCH_MEM_SSLS", quick ? 20000 : 100000);
    if (rounds < 1 || rounds > MAXR || rounds_big < 1 || rounds_big > rounds || pairs < 1
        || pairs > MAXR)
        fatal("need 1 <= BENCH_ROUNDS <= %d, 1 <= BENCH_ROUNDS_C1024 <= BENCH_ROUNDS and "
              "1 <= BENCH_PAIRS <= %d", MAXR, MAXR);

    /* Deterministic parts first, while nothing else runs. */
    fprintf(stderr, "sslasync-bench: instruction counts (callgrind)...\n");
    run_callgrind(cg_n);
    fprintf(stderr, "sslasync-bench: memory per SSL... (%.0f s so far)\n", now_s() - t0);
    run_mem(mem_n);
    fprintf(stderr, "sslasync-bench: timed comparisons... (%.0f s so far)\n", now_s() - t0);
    run_rounds(rounds, rounds_big);
    plan_micro(pairs, micro_s);
    run_micro(pairs);

    print_tables(rounds, rounds_big);
    print_summary(&sm);
    write_json(&sm, rounds, rounds_big, now_s() - t0);
    write_plot();
    printf("\nsslasync-bench: %s run took %.0f s; raw numbers in %s/results.json\n",
           quick ? "quick" : "default", now_s() - t0, out_dir);
    return 0;
}
