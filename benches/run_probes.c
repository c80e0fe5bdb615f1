/*
 * Running: the deterministic probes, each in a fresh process: callgrind
 * instruction counts per loop iteration, and heap and RSS growth per SSL.
 */
#include "driver.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *const cg_loops[NLOOPS] = { "rtt_inline", "io64", "io64_mixed" };
struct cg cg;

const char *const mem_variants[NMEM] = { "none", "ctx_cb", "ssl_cb", "ssl_cb_appdata" };
struct memres mem;

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

/* DIR/LOOP.SIDE.ITERS.EXT: where one callgrind run writes (out) and logs (log). */
static void cg_file(char *buf, size_t len, const char *dir, int loop, int shim, long iters,
                    const char *ext)
{
    snprintf(buf, len, "%s/%s.%s.%ld.%s", dir, cg_loops[loop], shim ? "shim" : "native", iters,
             ext);
}

/*
 * Each (loop, side, N) in a fresh process under callgrind; two at a time,
 * since instruction counts do not depend on timing. The difference between
 * 2N and N iterations is N iterations' worth, with start-up cancelled.
 */
void run_callgrind(void)
{
    char dir[4096];
    long n = cfg.cg_n;
    int l, s, m;
    pid_t pids[2];
    int npids = 0;

    cg.n = n;
    if (!have_program("valgrind")) {
        fprintf(stderr, "sslasync-bench: valgrind not found, instruction counts skipped\n");
        return;
    }
    snprintf(dir, sizeof(dir), "%s/callgrind", cfg.out_dir);
    mkdir(dir, 0755);
    for (l = 0; l < NLOOPS; l++)
        for (s = 0; s < 2; s++)
            for (m = 0; m < 2; m++) {
                char outf[4200], logf[4200], iters[32], opt[4300];
                char *argv[] = { "valgrind", "--tool=callgrind", opt, cfg.self_exe, "count",
                                 (char *)cg_loops[l], iters, NULL };
                FILE *lf;

                cg_file(outf, sizeof(outf), dir, l, s, n * (m + 1), "out");
                cg_file(logf, sizeof(logf), dir, l, s, n * (m + 1), "log");
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

                cg_file(outf, sizeof(outf), dir, l, s, n * (m + 1), "out");
                cg.total[l][s][m] = callgrind_total(outf);
            }
            cg.per_iter[l][s] = (cg.total[l][s][1] - cg.total[l][s][0]) / (double)n;
        }
    cg.ok = 1;
}

void run_mem(void)
{
    long n = cfg.mem_n;
    int v, s;

    mem.n = n;
    for (v = 0; v < NMEM; v++)
        for (s = 0; s < 2; s++) {
            char cnt[32], line[256];
            char *argv[] = { cfg.self_exe, "mem", (char *)mem_variants[v], cnt, NULL };
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
