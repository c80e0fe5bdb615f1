/*
 * Running: the timed cells, round after round in fresh worker pairs, each
 * sample retaken when other processes took the CPU during it.
 */
#define _GNU_SOURCE
#include "driver.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/*
 * A sample whose threads waited for a CPU more than DISTURBED of the cell
 * was disturbed by other processes: it is taken again (twice at most,
 * keeping the least disturbed). Wake-up latency alone stays well below.
 */
struct sampling sampling;

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
        sampling.retried++;
    }
    sampling.taken++;
    if (best_d > DISTURBED)
        sampling.disturbed++;
    if (best_d > sampling.worst)
        sampling.worst = best_d;
    return best;
}

/*
 * Every round runs in a fresh worker pair, warmed with the same work on
 * both sides: every server CTX the plan uses, and the job pool and heap at
 * 1024 connections if the round has such cells. A fresh pair also re-rolls
 * the address-space layout, whose effect on a tight loop (measured here: a
 * few percent either way, fixed for a process's life) would otherwise be
 * mistaken for the shim's; the median over pairs averages it out.
 *
 * rate, when not NULL, gets the native side's handshakes/s at latency 0,
 * which sizes the handshake cells.
 */
/*
 * The modes a worker warms (worker.c's hs modes): the first one calibrates
 * on the native side. The fd-only device's modes are warmed on TLS 1.3
 * only (its cells are), the adapter's (acb) where the adapter is.
 */
static int warm_modes(const struct worker *w, const char *modes[4], int tls12)
{
    int n = 0;

#if BENCH_OSSL111
    if (tls12)
        return 0;
    modes[n++] = "afd";
    if (w->shim)
        modes[n++] = "acb";
#else
    modes[n++] = "cb";
    modes[n++] = "fd";
    if (!tls12 && w->adapter) {
        modes[n++] = "afd";
        modes[n++] = "acb";
    }
#endif
    return n;
}

static void warm_up(int big, double rate[2][2])
{
    int w, k, v, m, nm;
    char cmd[96];
    const char *modes[4];

    for (w = 0; w < 2; w++) {
        struct worker *wk = &workers[rate != NULL ? 1 - w : w];

        for (k = 0; k < 2; k++)
            for (v = 0; v < 2; v++) {
                nm = warm_modes(wk, modes, v);
                for (m = 0; m < nm; m++) {
                    double r;

                    if (cfg.quick && (k || v))
                        continue;
                    snprintf(cmd, sizeof(cmd), "hs %s %d 0 16 %s 48", k ? "rsa" : "ec",
                             v ? 12 : 13, modes[m]);
                    r = worker_rate(wk, cmd, NULL);
                    if (rate != NULL && !wk->shim && m == 0)
                        rate[k][v] = r;
                }
            }
        if (big) {
            double t0 = now_s();

            nm = warm_modes(wk, modes, 0);
            snprintf(cmd, sizeof(cmd), "hs ec 13 0 1024 %s 1024", modes[nm - 1]);
            worker_rate(wk, cmd, NULL);
            gap(t0);
        }
    }
}

/*
 * One sample of every side, in the same round so that ratios can be taken
 * per round: on a shared 2-core VM a slow period hits both sides of a pair,
 * and the ratio stays honest while absolute numbers drift.
 */
static void run_cell(struct cell *c, int rot)
{
    int j;

    /* Rotate who goes first. */
    for (j = 0; j < c->nsides; j++) {
        int s = (j + rot) % c->nsides;

        c->v[s][c->n[s]++] = sample(c, s);
    }
}

static void pair_start(int light)
{
    worker_start(&workers[0], light);
    worker_start(&workers[1], light);
}

static void pair_stop(void)
{
    worker_stop(&workers[0]);
    worker_stop(&workers[1]);
}

/* The handshake cells are planned after the first round's warm-up, which
 * calibrates them. */
void run_rounds(void)
{
    double rate[2][2] = { { 0 } };
    int r, i;

    for (r = 0; r < cfg.rounds; r++) {
        double t0 = now_s();

        pair_start(0);
        warm_up(r < cfg.rounds_big, r == 0 ? rate : NULL);
        if (r == 0)
            plan_handshakes(rate);
        for (i = 0; i < ncells; i++)
            if ((cells[i].group == G_HS || cells[i].group == G_HSA) && r < cells[i].rounds)
                run_cell(&cells[i], r + i);
        pair_stop();
        fprintf(stderr, "sslasync-bench: handshakes, round %d/%d done (%.0f s)\n", r + 1,
                cfg.rounds, now_s() - t0);
    }
}

/*
 * The short cells (round trips, bulk I/O, API calls) are where layout bias
 * and noise are largest relative to the effect, so each gets many fresh
 * worker pairs (light ones: no RSA key to make), one sample per side each.
 */
void run_micro(void)
{
    int p, i;
    double t0 = now_s();

    for (p = 0; p < cfg.pairs; p++) {
        int w;

        pair_start(1);
        for (w = 0; w < 2; w++) {
            worker_rate(&workers[w], "rtt inline 1 0.01", NULL);
            worker_rate(&workers[w], "rtt device 64 0.01", NULL);
            worker_rate(&workers[w], "io 64 mixed 0.01", NULL);
            worker_rate(&workers[w], "io 16384 plain 0.01", NULL);
        }
        for (i = 0; i < ncells; i++)
            if (cells[i].group != G_HS && cells[i].group != G_HSA)
                run_cell(&cells[i], p + i);
        pair_stop();
    }
    fprintf(stderr, "sslasync-bench: round trips, I/O, API calls: %d worker pairs done (%.0f s)\n",
            cfg.pairs, now_s() - t0);
}

/*
 * Completion -> application latency through the fd-only device at 50 us:
 * fresh light worker pairs, each side several chunks of single operations
 * (worker.c, cmd_lat), sides alternating chunk by chunk; a chunk whose
 * threads waited for a CPU more than DISTURBED of the time is taken again
 * once (the retake is kept). Percentiles are over all samples kept.
 */
struct latency lat;

static void lat_side(const char *name, int wk)
{
    lat.side[lat.nsides] = name;
    lat.wk[lat.nsides] = wk;
    lat.nsides++;
}

void run_latency(void)
{
    int p, ch, j;
    double t0 = now_s();

    lat.lat_us = 50;
    lat.per_chunk = 250;
    lat.chunks = cfg.quick ? 2 : 4;
    lat.pairs = cfg.rounds;
    lat.nsides = 0;
    lat_side("native_afd", 0);
    if (!BENCH_OSSL111)
        lat_side("shim_afd", 1);
    for (p = 0; p < lat.pairs; p++) {
        pair_start(1);
        if (p == 0 && workers[1].adapter)
            lat_side("shim_acb", 1);
        for (j = 0; j < lat.nsides; j++) {
            char cmd[64];

            /* Warm: the connection, the key, and the adapter's thread. */
            snprintf(cmd, sizeof(cmd), "lat %s %d 20", strchr(lat.side[j], '_') + 1, lat.lat_us);
            worker_lat(&workers[lat.wk[j]], cmd, lat.learn[j], lat.resume[j], &(int){ 0 }, 0,
                       NULL);
        }
        for (ch = 0; ch < lat.chunks; ch++)
            for (j = 0; j < lat.nsides; j++) {
                int s = (j + ch + p) % lat.nsides, tries;
                char cmd[64];

                snprintf(cmd, sizeof(cmd), "lat %s %d %d", strchr(lat.side[s], '_') + 1,
                         lat.lat_us, lat.per_chunk);
                for (tries = 0; tries < 2; tries++) {
                    int n0 = lat.n[s];
                    long early = 0;
                    double t1 = now_s(), d;

                    d = worker_lat(&workers[lat.wk[s]], cmd, lat.learn[s], lat.resume[s],
                                   &lat.n[s], LAT_MAX, &early);
                    gap(t1);
                    if (d <= DISTURBED || tries == 1)
                        lat.early[s] += early;
                    if (d <= DISTURBED)
                        break;
                    if (tries == 0) {
                        lat.n[s] = n0;
                        lat.retried++;
                    } else {
                        lat.disturbed++;
                    }
                }
            }
        pair_stop();
    }
    fprintf(stderr, "sslasync-bench: completion latency, %d worker pairs done (%.0f s)\n",
            lat.pairs, now_s() - t0);
}
