/*
 * sslasync-bench: one binary, several roles.
 *
 *   sslasync-bench run ...        the driver: starts a native and a preloaded
 *                                 worker, alternates them cell by cell,
 *                                 runs callgrind and the memory probes,
 *                                 prints the tables and RATIO lines
 *   sslasync-bench worker [light] measurement server (commands on stdin)
 *   sslasync-bench count L N      N iterations of loop L (run under callgrind)
 *   sslasync-bench mem V N        RSS/heap growth of N SSL objects, variant V
 *
 * The driver never measures anything itself; whether a worker runs the shim
 * is decided only by LD_PRELOAD, so native and shim execute the same code.
 */
#ifndef SSLASYNC_BENCH_H
#define SSLASYNC_BENCH_H

int bench_worker_main(int light);
int bench_count_main(int argc, char **argv);
int bench_mem_main(int argc, char **argv);
int bench_driver_main(int argc, char **argv);

#endif
