/*
 * Running: the plan of cells, i.e. what is measured (names, table titles)
 * and the command each side's worker is sent for it.
 */
#include "driver.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

struct cell cells[160];
int ncells;

const int hs_conc[NCONC] = { 1, 16, 256, 1024 };
const int hs_lats[NLAT] = { 0, 50 };

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

int side_index(const struct cell *c, const char *name)
{
    int i;

    for (i = 0; i < c->nsides; i++)
        if (strcmp(c->side[i], name) == 0)
            return i;
    return -1;
}

const struct cell *cell_named(const char *name)
{
    int i;

    for (i = 0; i < ncells; i++)
        if (strcmp(cells[i].name, name) == 0)
            return &cells[i];
    return NULL;
}

/* Handshakes per sample: about cfg.cell_s on the native side, and at
 * least one per connection. */
static long hs_count(const struct cell *c, const double rate[2][2])
{
    long k = (long)ceil(rate[c->key_rsa][c->tls12] * cfg.cell_s);

    return k < c->conc ? c->conc : k;
}

/*
 * The fd-only device's cells (G_HSA), TLS 1.3, both keys, the same
 * latencies and concurrencies as the grid: on OpenSSL 3 the shim's fd
 * adapter in callback mode vs the same shim worker polling the wait fds
 * (adapter off); on 1.1.1 the adapter vs native 1.1.1 polling the fds.
 */
static void plan_adapter(const double rate[2][2])
{
    int k, l, ci;
    struct cell *c;

    for (k = 0; k < 2; k++) {
        if (cfg.quick && k == 1)
            continue;
        for (l = 0; l < NLAT; l++)
            for (ci = 0; ci < NCONC; ci++) {
                long conc = hs_conc[ci], cnt;
                const char *key = k ? "rsa" : "ec";
                int lat = hs_lats[l];

                c = cell_new(G_HSA, conc >= 1024 ? cfg.rounds_big : cfg.rounds);
                c->key_rsa = k;
                c->lat = lat;
                c->conc = conc;
                cnt = hs_count(c, rate);
                snprintf(c->name, sizeof(c->name), "%s/%s/tls13/lat%d/c%ld",
                         BENCH_OSSL111 ? "hs_111" : "hs_fdadapter", key, lat, conc);
                snprintf(c->title, sizeof(c->title), "%-3s TLS1.3 %3dus c=%-4ld", key, lat, conc);
                side(c, HSA_A, 1, "hs %s 13 %d %ld acb %ld", key, lat, conc, cnt);
                if (BENCH_OSSL111)
                    side(c, HSA_B, 0, "hs %s 13 %d %ld afd %ld", key, lat, conc, cnt);
                else
                    side(c, HSA_B, 1, "hs %s 13 %d %ld afd %ld", key, lat, conc, cnt);
            }
    }
}

void plan_handshakes(const double rate[2][2])
{
    int k, v, l, ci;
    struct cell *c;

    for (k = 0; k < 2 && !BENCH_OSSL111; k++) {
        if (cfg.quick && k == 1)
            continue;
        for (v = 0; v < 2; v++) {
            if (cfg.quick && v == 1)
                continue;
            for (l = 0; l < NLAT; l++) {
                for (ci = 0; ci < NCONC; ci++) {
                    long conc = hs_conc[ci];
                    const char *key = k ? "rsa" : "ec";
                    int ver = v ? 12 : 13, lat = hs_lats[l];
                    long cnt;

                    c = cell_new(G_HS, conc >= 1024 ? cfg.rounds_big : cfg.rounds);
                    c->key_rsa = k;
                    c->tls12 = v;
                    c->lat = lat;
                    c->conc = conc;
                    cnt = hs_count(c, rate);
                    snprintf(c->name, sizeof(c->name), "hs/%s/tls1%c/lat%d/c%ld", key,
                             v ? '2' : '3', lat, conc);
                    snprintf(c->title, sizeof(c->title), "%-3s TLS1.%c %3dus c=%-4ld", key,
                             v ? '2' : '3', lat, conc);
                    side(c, "native_cb", 0, "hs %s %d %d %ld cb %ld", key, ver, lat, conc, cnt);
                    side(c, "shim_cb", 1, "hs %s %d %d %ld cb %ld", key, ver, lat, conc, cnt);
                    side(c, "shim_fd", 1, "hs %s %d %d %ld fd %ld", key, ver, lat, conc, cnt);
                    /* Native fd mode only feeds the plot (TLS 1.3 panels). */
                    if (!v)
                        side(c, "native_fd", 0, "hs %s %d %d %ld fd %ld", key, ver, lat, conc,
                             cnt);
                }
            }
        }
    }
    if (BENCH_OSSL111 || workers[1].adapter)
        plan_adapter(rate);
    else
        fprintf(stderr, "sslasync-bench: the shim has no fd adapter "
                        "(sslasync_CTX_set_fd_callbacks): its cells are skipped\n");
    fprintf(stderr, "sslasync-bench: %d handshake cells, %d rounds (%d at c=1024)\n", ncells,
            cfg.rounds, cfg.rounds_big);
}

/* A short cell: the same command to the native and the shim worker. */
static void pair_cell(int group, const char *name, const char *title, const char *cmd)
{
    struct cell *c = cell_new(group, cfg.pairs);

    snprintf(c->name, sizeof(c->name), "%s", name);
    snprintf(c->title, sizeof(c->title), "%s", title);
    side(c, "native", 0, "%s", cmd);
    side(c, "shim", 1, "%s", cmd);
}

void plan_micro(void)
{
    /* Seconds per sample are cfg.micro_s times scale: the device-thread
     * round trips get 3x, their batching makes them the noisiest. */
    static const struct {
        int group;
        const char *name, *title, *cmd;
        double scale;
    } timed[] = {
        { G_RTT, "roundtrip_inline", "inline device, 1 conn", "rtt inline 1", 1 },
        { G_RTT, "roundtrip_device", "device thread, 1 conn", "rtt device 1", 3 },
        { G_RTT, "roundtrip_device_c64", "device thread, 64 conns", "rtt device 64", 3 },
        { G_IO, "io64", "64 B records", "io 64 plain", 1 },
        { G_IO, "io16k", "16 KiB records", "io 16384 plain", 1 },
        { G_IO, "io64_mixed", "64 B, another SSL uses API", "io 64 mixed", 1 },
    };
    static const char *const api[][2] = {
        { "SSL_set_async_callback_arg", "set_arg" },
        { "SSL_get_async_status", "get_status" },
        { "SSL_CTX_set_async_callback", "ctx_set_cb" },
    };
    long calls = cfg.quick ? 1000000 : 3000000;
    char cmd[96];
    size_t k;

    for (k = 0; k < sizeof(timed) / sizeof(timed[0]); k++) {
        snprintf(cmd, sizeof(cmd), "%s %.3f", timed[k].cmd, timed[k].scale * cfg.micro_s);
        pair_cell(timed[k].group, timed[k].name, timed[k].title, cmd);
    }
    for (k = 0; k < sizeof(api) / sizeof(api[0]); k++) {
        snprintf(cmd, sizeof(cmd), "set %s %ld", api[k][1], calls);
        pair_cell(G_API, api[k][0], api[k][0], cmd);
    }
}
