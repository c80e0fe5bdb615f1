/*
 * The driver's entry point: options and BENCH_* knobs, then the phases in
 * order (probes, timed cells, statistics, reports); plus its shared helpers.
 */
#define _GNU_SOURCE
#include "bench.h"
#include "driver.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct config cfg;

void fatal(const char *fmt, ...)
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

double now_s(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static double env_double(const char *name, double dflt)
{
    const char *s = getenv(name);

    return s != NULL && *s != '\0' ? atof(s) : dflt;
}

static void parse_args(int argc, char **argv)
{
    int i;

    for (i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            cfg.quick = 1;
        else if (strcmp(argv[i], "--shim") == 0 && i + 1 < argc)
            cfg.shim_path = argv[++i];
        else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc)
            cfg.out_dir = argv[++i];
        else
            fatal("usage: run [--quick] --shim LIBSSLASYNC --out DIR");
    }
    if (cfg.shim_path == NULL || cfg.out_dir == NULL)
        fatal("usage: run [--quick] --shim LIBSSLASYNC --out DIR");
}

static void read_knobs(void)
{
    int quick = cfg.quick;

    cfg.rounds = (int)env_double("BENCH_ROUNDS", quick ? 3 : 5);
    cfg.rounds_big = (int)env_double("BENCH_ROUNDS_C1024", quick ? 1 : 3);
    cfg.pairs = (int)env_double("BENCH_PAIRS", quick ? 6 : 15);
    cfg.cell_s = env_double("BENCH_CELL_SECONDS", quick ? 0.12 : 0.2);
    cfg.micro_s = env_double("BENCH_MICRO_SECONDS", quick ? 0.05 : 0.08);
    cfg.cg_n = (long)env_double("BENCH_CALLGRIND_N", quick ? 500 : 2000);
    cfg.mem_n = (long)env_double("BENCH_MEM_SSLS", quick ? 20000 : 100000);
    if (cfg.rounds < 1 || cfg.rounds > MAXR || cfg.rounds_big < 1 || cfg.rounds_big > cfg.rounds
        || cfg.pairs < 1 || cfg.pairs > MAXR)
        fatal("need 1 <= BENCH_ROUNDS <= %d, 1 <= BENCH_ROUNDS_C1024 <= BENCH_ROUNDS and "
              "1 <= BENCH_PAIRS <= %d", MAXR, MAXR);
}

/*
 * The driver measures nothing itself: workers (this binary, the shim side
 * with the shim preloaded) and the probes run in child processes, and the
 * driver turns what they answer into tables, results.json and the plot.
 */
int bench_driver_main(int argc, char **argv)
{
    double t0 = now_s();
    struct summary sm = { 0 };
    ssize_t len;

    parse_args(argc, argv);
    if (access(cfg.shim_path, R_OK) != 0)
        fatal("%s: %s", cfg.shim_path, strerror(errno));
    if ((len = readlink("/proc/self/exe", cfg.self_exe, sizeof(cfg.self_exe) - 1)) <= 0)
        fatal("readlink(/proc/self/exe): %s", strerror(errno));
    cfg.self_exe[len] = '\0';
    mkdir(cfg.out_dir, 0755);
    read_knobs();

    if (!BENCH_OSSL111) {
        /* Deterministic parts first, while nothing else runs. */
        fprintf(stderr, "sslasync-bench: instruction counts (callgrind)...\n");
        run_callgrind();
        fprintf(stderr, "sslasync-bench: memory per SSL... (%.0f s so far)\n", now_s() - t0);
        run_mem();
    }
    fprintf(stderr, "sslasync-bench: timed comparisons... (%.0f s so far)\n", now_s() - t0);
    run_rounds();
    if (!BENCH_OSSL111) {
        plan_micro();
        run_micro();
    }
    run_latency();

    summarize(&sm);
    print_tables();
    print_summary(&sm);
    write_json(&sm, now_s() - t0);
    write_plot();
    printf("\nsslasync-bench: %s run took %.0f s; raw numbers in %s/results.json\n",
           cfg.quick ? "quick" : "default", now_s() - t0, cfg.out_dir);
    return 0;
}
