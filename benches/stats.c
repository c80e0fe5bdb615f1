/*
 * Statistics: medians and spreads of samples, per-round paired ratios, the
 * geometric means of the summary, and the per-iteration and per-SSL deltas.
 */
#include "driver.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

double median(const double *v, int n)
{
    double s[MAXR];

    if (n == 0)
        return NAN;
    memcpy(s, v, sizeof(double) * (size_t)n);
    qsort(s, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

double vmin(const double *v, int n)
{
    double m = INFINITY;

    while (n-- > 0)
        m = v[n] < m ? v[n] : m;
    return m;
}

double vmax(const double *v, int n)
{
    double m = -INFINITY;

    while (n-- > 0)
        m = v[n] > m ? v[n] : m;
    return m;
}

/* Ratio a/b of the two sides' samples taken in the same round. */
int paired(const struct cell *c, const char *a, const char *b, double *r)
{
    int i = side_index(c, a), j = side_index(c, b), k, n;

    if (i < 0 || j < 0)
        return 0;
    n = c->n[i] < c->n[j] ? c->n[i] : c->n[j];
    for (k = 0; k < n; k++)
        r[k] = c->v[i][k] / c->v[j][k];
    return n;
}

double ratio_median(const struct cell *c, const char *a, const char *b)
{
    double r[MAXR];
    int n = paired(c, a, b, r);

    return n ? median(r, n) : NAN;
}

/* Geometric mean over a group's cells of their median a/b ratios, and the
 * lowest of those ratios with its cell's name. */
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

void summarize(struct summary *sm)
{
    sm->hsa = geomean_ratio(HSA_A, HSA_B, G_HSA, &sm->hsa_worst, &sm->hsa_worst_name);
    sm->hs = geomean_ratio("shim_cb", "native_cb", G_HS, &sm->hs_worst, &sm->hs_worst_name);
    sm->hs_fd = geomean_ratio("shim_fd", "native_fd", G_HS, &sm->hs_fd_worst, &sm->hs_fd_worst_name);
    sm->cbfd = geomean_ratio("shim_cb", "shim_fd", G_HS, &sm->cbfd_worst, &sm->cbfd_worst_name);
    sm->cbfd_native = geomean_ratio("native_cb", "native_fd", G_HS, &sm->cbfd_native_worst,
                                    &sm->cbfd_native_worst_name);
}

/* The shim's extra instructions per delivered callback: rtt_inline has one
 * per iteration (its two job starts are counted in too). */
double instr_per_callback(void)
{
    return cg.per_iter[0][1] - cg.per_iter[0][0];
}

/* ... per pass-through job start: the io64 loops have two per iteration. */
double instr_per_job_start(int loop)
{
    return (cg.per_iter[loop][1] - cg.per_iter[loop][0]) / 2;
}

double heap_delta(int variant)
{
    return mem.heap[variant][1] - mem.heap[variant][0];
}

double rss_delta(int variant)
{
    return mem.rss[variant][1] - mem.rss[variant][0];
}

double lat_quantile(int side, int resume, double q)
{
    static double s[LAT_MAX];
    int n = lat.n[side];
    long k;

    if (side < 0 || n == 0)
        return NAN;
    memcpy(s, resume ? lat.resume[side] : lat.learn[side], sizeof(double) * (size_t)n);
    qsort(s, (size_t)n, sizeof(double), cmp_double);
    k = (long)ceil(q * n) - 1;
    return s[k < 0 ? 0 : k];
}
