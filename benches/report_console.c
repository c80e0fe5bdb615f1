/*
 * Reporting on stdout: the tables, then the RATIO / INSTR / MEM lines and the
 * BUDGET verdicts that run.sh, CI and the README's figures are read from.
 */
#include "driver.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include <openssl/opensslv.h>

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

static int have_group(int group)
{
    int i;

    for (i = 0; i < ncells; i++)
        if (cells[i].group == group)
            return 1;
    return 0;
}

static void print_adapter_cells(void)
{
    int i;

    if (!have_group(G_HSA))
        return;
    printf("\nHandshakes/s through an fd-only accelerator (it only signals the wait fd): "
           "median [min..max] of %d rounds (%d at c=1024);\n%s\n",
           cfg.rounds, cfg.rounds_big,
           BENCH_OSSL111 ? "OpenSSL 1.1.1: the shim's fd adapter in callback mode vs native 1.1.1 "
                           "polling the wait fds."
                         : "the shim's fd adapter in callback mode vs the same shim worker polling "
                           "the wait fds (adapter off).");
    printf("%-22s %20s %20s  %-18s\n", "cell", BENCH_OSSL111 ? "shim adapter cb" : "adapter cb",
           BENCH_OSSL111 ? "native fd" : "fd (adapter off)",
           BENCH_OSSL111 ? "shim-cb/native-fd" : "callback/fd");
    for (i = 0; i < ncells; i++) {
        const struct cell *c = &cells[i];

        if (c->group != G_HSA)
            continue;
        printf("%-22s ", c->title);
        print_spread(c, side_index(c, HSA_A), 20);
        print_spread(c, side_index(c, HSA_B), 21);
        print_ratio(c, HSA_A, HSA_B);
        putchar('\n');
    }
}

static const char *const lat_titles[][2] = {
    { "native_afd", "native, app polls the wait fd" },
    { "shim_afd", "shim, app polls the wait fd (adapter off)" },
    { "shim_acb", "shim, fd adapter calls back" },
};

static int lat_side_index(const char *name)
{
    int i;

    for (i = 0; i < lat.nsides; i++)
        if (strcmp(lat.side[i], name) == 0)
            return i;
    return -1;
}

static void print_latency(void)
{
    int i, k;

    if (lat.nsides == 0)
        return;
    printf("\nCompletion -> application latency, fd-only accelerator, device latency %d us, one "
           "operation at a time\n(us from the device's timestamp just before it signals the wait "
           "fd; %d worker pairs x %d chunks x %d operations per side, %d chunks retaken, %d still "
           "disturbed):\n", lat.lat_us, lat.pairs, lat.chunks, lat.per_chunk, lat.retried,
           lat.disturbed);
    printf("  learn  = the app learns of it: the callback starts (adapter), epoll_wait returns "
           "(fd)\n  resume = the loop thread is awake to resume the SSL (adapter: woken by the "
           "callback)\n  early  = samples whose operation completed before SSL_write returned "
           "(kept; the loop was not asleep yet)\n");
    printf("%-44s %7s %6s %8s %8s %8s %8s %8s %8s\n", "side", "n", "early", "learn50", "learn90",
           "learn99", "resume50", "resume90", "resume99");
    for (i = 0; i < lat.nsides; i++) {
        const char *t = lat.side[i];

        for (k = 0; k < 3; k++)
            if (strcmp(lat_titles[k][0], lat.side[i]) == 0)
                t = lat_titles[k][1];
        printf("%-44s %7d %6ld %8.1f %8.1f %8.1f %8.1f %8.1f %8.1f\n", t, lat.n[i], lat.early[i],
               lat_quantile(i, 0, 0.5), lat_quantile(i, 0, 0.9), lat_quantile(i, 0, 0.99),
               lat_quantile(i, 1, 0.5), lat_quantile(i, 1, 0.9), lat_quantile(i, 1, 0.99));
    }
}

/* The shim's counters: counted whether or not SSLASYNC_STATS is set (the
 * workers run without it), summed over all shim workers of the run. */
static void print_counters(void)
{
    const struct shim_counters *k = &shim_counters;

    printf("\nShim counters, summed over %d shim workers (sslasync_stats_get%s):\n", k->workers,
           k->have == k->workers ? "" : "; missing in some");
    printf("  adapter_arms %llu, adapter_deliveries %llu, adapter_drops %llu, "
           "adapter_unavailable %llu, jobs_unverified %llu\n",
           k->arms, k->deliveries, k->drops, k->unavailable, k->unverified);
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
    if (have_group(G_HS))
        print_handshakes();
    print_adapter_cells();
    if (!BENCH_OSSL111) {
        print_short_cells();
        print_probes();
    }
    print_latency();
    print_counters();
}

/* Timed budgets (ratios) judged on a quick run are only indicative: too
 * few cells and rounds to resolve one percent. */
static void budget(const char *name, double v, double limit, int at_least, const char *unit)
{
    int ok = at_least ? v >= limit : v <= limit;

    printf(at_least ? "BUDGET %s %.3f%s (%s %g%s) %s%s\n" : "BUDGET %s %+.1f%s (%s %g%s) %s%s\n",
           name, v, unit,
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

/* The adapter's added latency: p50/p99 of learn (resume), adapter minus
 * the fd wake-up it is compared with. */
static double lat_delta(int resume, double q)
{
    int a = lat_side_index("shim_acb"), b = lat_side_index(BENCH_OSSL111 ? "native_afd" : "shim_afd");

    if (a < 0 || b < 0)
        return NAN;
    return lat_quantile(a, resume, q) - lat_quantile(b, resume, q);
}

static void print_adapter_budgets(void)
{
    budget(BENCH_OSSL111 ? "latency fdadapter_111 p50" : "latency fdadapter p50", lat_delta(0, 0.5),
           20, 0, " us");
}

static void print_budgets(const struct summary *sm)
{
    putchar('\n');
    if (BENCH_OSSL111) {
        print_adapter_budgets();
        return;
    }
    budget("handshakes_fdadapter callback/fd", sm->hsa, 0.97, 1, "");
    print_adapter_budgets();
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

static void print_latency_lines(void)
{
    const char *name = BENCH_OSSL111 ? "fdadapter_111" : "fdadapter";
    int i;

    if (lat.nsides == 0)
        return;
    if (lat_side_index("shim_acb") < 0)
        printf("LATENCY %s unmeasured (the shim has no fd adapter)\n", name);
    else
        printf("LATENCY %s p50=%+.1fus p99=%+.1fus (adapter vs %sfd wake-up)\n", name,
               lat_delta(0, 0.5), lat_delta(0, 0.99), BENCH_OSSL111 ? "native 1.1.1 " : "");
    if (lat_side_index("shim_acb") >= 0)
        printf("LATENCY %s_resume p50=%+.1fus p99=%+.1fus (to the loop thread awake: adapter's "
               "callback + eventfd vs fd wake-up)\n", name, lat_delta(1, 0.5), lat_delta(1, 0.99));
    for (i = 0; i < lat.nsides; i++)
        printf("LATENCY %s_abs %s learn p50=%.1fus p99=%.1fus resume p50=%.1fus p99=%.1fus "
               "(n=%d)\n", name, lat.side[i], lat_quantile(i, 0, 0.5), lat_quantile(i, 0, 0.99),
               lat_quantile(i, 1, 0.5), lat_quantile(i, 1, 0.99), lat.n[i]);
}

static void print_counter_line(void)
{
    const struct shim_counters *k = &shim_counters;

    printf("STATS shim adapter_arms=%llu adapter_deliveries=%llu adapter_drops=%llu "
           "adapter_unavailable=%llu jobs_unverified=%llu (arms %s deliveries + drops)\n",
           k->arms, k->deliveries, k->drops, k->unavailable, k->unverified,
           k->arms == k->deliveries + k->drops ? "==" : "!=");
}

void print_summary(const struct summary *sm)
{
    if (BENCH_OSSL111) {
        printf("\nSummary (%s; handshake line: geometric mean over the cells of "
               "per-cell median ratios; worst cell %.3f at %s)\n", OPENSSL_VERSION_TEXT,
               sm->hsa_worst, sm->hsa_worst_name ? sm->hsa_worst_name : "-");
        printf("RATIO handshakes_111 shim-callback/native-fd=%.3f\n", sm->hsa);
        print_latency_lines();
        print_counter_line();
        print_budgets(sm);
        return;
    }
    static const char *const simple[] = { "roundtrip_inline", "roundtrip_device",
                                          "roundtrip_device_c64", "io64", "io16k", "io64_mixed",
                                          "SSL_set_async_callback_arg", "SSL_get_async_status",
                                          "SSL_CTX_set_async_callback" };
    size_t i;

    printf("\nSummary (handshake lines: geometric mean over the grid of per-cell median ratios;\n"
           "worst cells: shim/native %.3f at %s, callback/fd %.3f at %s",
           sm->hs_worst, sm->hs_worst_name, sm->cbfd_worst, sm->cbfd_worst_name);
    if (have_group(G_HSA))
        printf(", fd adapter callback/fd %.3f at %s", sm->hsa_worst, sm->hsa_worst_name);
    printf(")\n");
    printf("RATIO handshakes shim/native=%.3f\n", sm->hs);
    printf("RATIO handshakes_fdmode shim/native=%.3f\n", sm->hs_fd);
    printf("RATIO handshakes callback/fd=%.3f\n", sm->cbfd);
    printf("RATIO handshakes_native callback/fd=%.3f\n", sm->cbfd_native);
    if (have_group(G_HSA))
        printf("RATIO handshakes_fdadapter callback/fd=%.3f\n", sm->hsa);
    else
        printf("RATIO handshakes_fdadapter callback/fd=unmeasured\n");
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
    print_latency_lines();
    print_counter_line();
    print_budgets(sm);
}
