/*
 * Interface between the driver's files: the run's settings, the cells and
 * their samples, the probe results, and the functions that fill and read them.
 */
#ifndef SSLASYNC_BENCH_DRIVER_H
#define SSLASYNC_BENCH_DRIVER_H

#include <stdio.h>
#include <sys/types.h>

#include <openssl/opensslv.h>

/* Built against OpenSSL 1.1.1 the bench has one comparison only: handshakes
 * through an fd-only device, native in fd mode vs the shim's fd adapter in
 * callback mode (and the adapter's latency); 1.1.1 has no callback API of
 * its own, so there is no native callback side and nothing else to compare. */
#if OPENSSL_VERSION_NUMBER < 0x30000000L
#define BENCH_OSSL111 1
#else
#define BENCH_OSSL111 0
#endif

#define MAXS 4          /* sides per cell */
#define MAXR 64         /* samples per side: rounds x repetitions */

/* ------------------------------------------------------------ driver.c */

struct config {
    char self_exe[4096];    /* this binary: the workers and probes run it */
    const char *shim_path;
    const char *out_dir;
    int quick;
    int rounds, rounds_big; /* handshake rounds; those that include c=1024 */
    int pairs;              /* fresh worker pairs for the short cells */
    double cell_s;          /* seconds per handshake sample (native side) */
    double micro_s;         /* seconds per round-trip / I/O sample */
    long cg_n;              /* callgrind iterations (N; 2N is run too) */
    long mem_n;             /* SSL objects per memory probe */
};
extern struct config cfg;

__attribute__((noreturn, format(printf, 1, 2)))
void fatal(const char *fmt, ...);
double now_s(void);

/* --------------------------------------------------------- run_procs.c */

struct worker {
    const char *name;
    int shim;
    pid_t pid;
    FILE *to, *from;
    int adapter;               /* the process has sslasync_CTX_set_fd_callbacks */
};
extern struct worker workers[2];   /* [0] native, [1] shim */
extern char sched_mode[16];        /* as the workers report it */

pid_t spawn(char *const argv[], int shim, int in_fd, int out_fd, int err_fd);
void wait_ok(pid_t pid, const char *what);
void run_capture(char *const argv[], int shim, char *line, size_t len);
void worker_start(struct worker *w, int light);
void worker_stop(struct worker *w);
double worker_rate(struct worker *w, const char *cmd, double *disturbed);
/* A "lat" command: appends the samples (us) to learn[] and resume[] from
 * index *n on (at most max in all), adds to *early (if not NULL) the
 * operations completed before the loop waited; returns the fraction
 * disturbed. */
double worker_lat(struct worker *w, const char *cmd, double *learn, double *resume, int *n,
                  int max, long *early);

/* The shim's counters, summed over every shim worker at its exit. */
struct shim_counters {
    int workers, have;         /* shim workers asked; of them, with sslasync_stats_get */
    unsigned long long arms, deliveries, drops, unavailable, unverified;
};
extern struct shim_counters shim_counters;

/* ---------------------------------------------------------- run_plan.c */

/* G_HSA: handshakes through the fd-only device (SIMACCEL_STYLE_FD), the
 * shim's fd adapter's cells. */
enum { G_HS, G_RTT, G_IO, G_API, G_HSA };

/* The G_HSA comparison: callback through the adapter (a) vs fd mode (b). */
#if BENCH_OSSL111
#define HSA_A "shim_acb"
#define HSA_B "native_afd"
#else
#define HSA_A "shim_acb"
#define HSA_B "shim_afd"
#endif

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

extern struct cell cells[160];
extern int ncells;

#define NCONC 4
#define NLAT 2
extern const int hs_conc[NCONC];
extern const int hs_lats[NLAT];

/* rate: calibrated handshakes/s at latency 0, [rsa][tls12]. */
void plan_handshakes(const double rate[2][2]);
void plan_micro(void);
int side_index(const struct cell *c, const char *name);
const struct cell *cell_named(const char *name);

/* --------------------------------------------------------- run_cells.c */

/* Fraction of a cell spent waiting for a CPU above which it is disturbed. */
#define DISTURBED 0.02

struct sampling {
    int taken, retried, disturbed;
    double worst;              /* worst disturbance kept */
};
extern struct sampling sampling;

void run_rounds(void);
void run_micro(void);

/* Completion -> application latency through the fd-only device (cmd_lat). */
#define LAT_SIDES 3
#define LAT_MAX 20000
struct latency {
    int lat_us, per_chunk, chunks, pairs;
    int nsides;
    const char *side[LAT_SIDES];    /* native_afd, shim_afd, shim_acb */
    int wk[LAT_SIDES];
    double learn[LAT_SIDES][LAT_MAX], resume[LAT_SIDES][LAT_MAX]; /* us */
    int n[LAT_SIDES];
    long early[LAT_SIDES];     /* completed before SSL_write returned */
    int retried, disturbed;
};
extern struct latency lat;

void run_latency(void);

/* -------------------------------------------------------- run_probes.c */

#define NLOOPS 3
extern const char *const cg_loops[NLOOPS];

struct cg {
    double total[NLOOPS][2][2]; /* [loop][shim][N or 2N] */
    double per_iter[NLOOPS][2];
    long n;
    int ok;
};
extern struct cg cg;

#define NMEM 4
extern const char *const mem_variants[NMEM];

struct memres {
    double rss[NMEM][2], heap[NMEM][2]; /* bytes per SSL */
    long n;
};
extern struct memres mem;

void run_callgrind(void);
void run_mem(void);

/* ------------------------------------------------------------- stats.c */

struct summary {
    double hsa, hsa_worst;     /* G_HSA: HSA_A / HSA_B */
    const char *hsa_worst_name;
    double hs, hs_fd, cbfd, cbfd_native;
    double hs_worst, hs_fd_worst, cbfd_worst, cbfd_native_worst;
    const char *hs_worst_name, *hs_fd_worst_name, *cbfd_worst_name, *cbfd_native_worst_name;
};

double median(const double *v, int n);
double vmin(const double *v, int n);
double vmax(const double *v, int n);
int paired(const struct cell *c, const char *a, const char *b, double *r);
double ratio_median(const struct cell *c, const char *a, const char *b);
void summarize(struct summary *sm);
double instr_per_callback(void);
double instr_per_job_start(int loop);
double heap_delta(int variant);
/* q-quantile (nearest rank) of the latency side's samples; NAN if none. */
double lat_quantile(int side, int resume, double q);
double rss_delta(int variant);

/* ------------------------------------------------------ report_*.c */

void print_tables(void);
void print_summary(const struct summary *sm);
void write_json(const struct summary *sm, double elapsed);
void write_plot(void);

#endif
