/*
 * Reporting on stdout: the tables, then the RATIO / INSTR / MEM lines and the
 * BUDGET verdicts that run.sh, CI and the README's figures are read from.
 */
#include "driver.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

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

static void print_handshakes(void)
{
    int i;

    printf("\nHandshakes/s through the simulated accelerator: median [min..max] of %d rounds "
           "(%d at c=1024);\nratios are medians [min..max] of per-round pairs.\n",
           cfg.rounds, cfg.rounds_big);
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
}

static void print_short_cells(void)
{
    int i;

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
}

static void print_probes(void)
{
    int i;

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
               mem.heap[i][0], mem.heap[i][1], mem.rss[i][0], mem.rss[i][1], heap_delta(i),
               rss_delta(i));
}

void print_tables(void)
{
    printf("\nWorkers: loop and device threads pinned to two CPUs, scheduling %s; %d samples, "
           "%d retaken after other processes took the CPU (>%.0f%% of a cell), %d still "
           "disturbed (worst %.1f%%)\n",
           sched_mode, sampling.taken, sampling.retried, DISTURBED * 100, sampling.disturbed,
           sampling.worst * 100);
    print_handshakes();
    print_short_cells();
    print_probes();
}

/* Timed budgets (ratios) judged on a quick run are only indicative: too
 * few cells and rounds to resolve one percent. */
static void budget(const char *name, double v, double limit, int at_least, const char *unit)
{
    int ok = at_least ? v >= limit : v <= limit;

    printf(at_least ? "BUDGET %s %s%.3f%s (%s %g%s) %s%s\n" : "BUDGET %s %s%.1f%s (%s %g%s) %s%s\n",
           name, at_least ? "" : "+", v, unit,
           at_least ? ">=" : "<=", limit, unit, isnan(v) ? "unmeasured" : ok ? "ok" : "MISS",
           cfg.quick && at_least ? " (quick run: indicative only)" : "");
}

/* A budget on a short cell's shim/native ratio (a missing cell is unmeasured). */
static void ratio_budget(const char *cell, double limit)
{
    const struct cell *c = cell_named(cell);
    char n[64];

    snprintf(n, sizeof(n), "%s shim/native", cell);
    budget(n, c ? ratio_median(c, "shim", "native") : NAN, limit, 1, "");
}

static void print_budgets(const struct summary *sm)
{
    putchar('\n');
    budget("handshakes shim/native", sm->hs, 0.99, 1, "");
    ratio_budget("io64", 0.99);
    ratio_budget("io16k", 0.99);
    ratio_budget("roundtrip_inline", 0.95);
    ratio_budget("roundtrip_device", 0.95);
    ratio_budget("roundtrip_device_c64", 0.95);
    budget("instructions per delivered callback", cg.ok ? instr_per_callback() : NAN, 60, 0, "");
    budget("instructions per pass-through job start", cg.ok ? instr_per_job_start(1) : NAN, 25, 0,
           "");
    budget("bytes per SSL using the API (ctx_cb)", heap_delta(1), 64, 0, " B");
    budget("bytes per SSL using the API (ssl_cb)", heap_delta(2), 64, 0, " B");
    budget("bytes per SSL not using the API", heap_delta(0), 0.5, 0, " B");
}

void print_summary(const struct summary *sm)
{
    static const char *const simple[] = { "roundtrip_inline", "roundtrip_device",
                                          "roundtrip_device_c64", "io64", "io16k", "io64_mixed",
                                          "SSL_set_async_callback_arg", "SSL_get_async_status",
                                          "SSL_CTX_set_async_callback" };
    size_t i;

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
        printf("INSTR per_delivered_callback shim-native=%+.1f\n", instr_per_callback());
        printf("INSTR per_passthrough_job_start shim-native=%+.1f\n", instr_per_job_start(1));
        printf("INSTR per_passthrough_job_start_api_in_use shim-native=%+.1f\n",
               instr_per_job_start(2));
    }
    for (i = 0; i < NMEM; i++)
        printf("MEM per_ssl_%s shim-native=%+.1f B (rss %+.1f B)\n", mem_variants[i],
               heap_delta((int)i), rss_delta((int)i));
    print_budgets(sm);
}
