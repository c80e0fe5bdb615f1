/*
 * Reporting to results.json: the machine and settings, every cell's samples
 * with their statistics, the probes and the summary (all raw numbers).
 */
#define _GNU_SOURCE
#include "driver.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <openssl/crypto.h>

static void json_samples(FILE *f, const double *v, int n)
{
    int i;

    fputc('[', f);
    for (i = 0; i < n; i++)
        fprintf(f, "%s%.6g", i ? ", " : "", v[i]);
    fputc(']', f);
}

/* The value of the first "prefix: value" line of a file, or "unknown". */
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

/* A number, or null for NAN (not measured). */
static void json_num(FILE *f, double v)
{
    if (isnan(v) || isinf(v))
        fputs("null", f);
    else
        fprintf(f, "%.4f", v);
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

static void json_header(FILE *f, double elapsed)
{
    char model[256];
    struct utsname u;

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
            cfg.quick ? "true" : "false", cfg.rounds, cfg.rounds_big, cfg.pairs, elapsed,
            sched_mode, sampling.taken, sampling.retried, sampling.disturbed, sampling.worst);
    json_string(f, cfg.shim_path);
    fprintf(f, ", \"units\": \"handshakes, round trips, records and calls per second\"},\n");
}

static void json_cell(FILE *f, const struct cell *c)
{
    int s;

    fprintf(f, "    \"%s\": {", c->name);
    if (c->group == G_HSA)
        fprintf(f, "\"device\": \"fd-only\", ");
    if (c->group == G_HS || c->group == G_HSA)
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
    } else if (c->group == G_HSA) {
        fprintf(f, ", \"%s\": ", BENCH_OSSL111 ? "ratio_shim_callback_native_fd" : "ratio_callback_fd");
        json_num(f, ratio_median(c, HSA_A, HSA_B));
    } else {
        fprintf(f, ", \"ratio_shim_native\": %.4f", ratio_median(c, "shim", "native"));
    }
    fputc('}', f);
}

static void json_probes(FILE *f)
{
    int i;

    fprintf(f, "  \"callgrind\": ");
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
                instr_per_callback(), instr_per_job_start(1), instr_per_job_start(2));
    } else {
        fprintf(f, "null");
    }
    fprintf(f, ",\n  \"memory\": {\"ssl_objects\": %ld", mem.n);
    for (i = 0; i < NMEM; i++)
        fprintf(f, ", \"%s\": {\"native_heap_per_ssl\": %.2f, \"shim_heap_per_ssl\": %.2f, "
                   "\"native_rss_per_ssl\": %.2f, \"shim_rss_per_ssl\": %.2f}",
                mem_variants[i], mem.heap[i][0], mem.heap[i][1], mem.rss[i][0], mem.rss[i][1]);
    fputc('}', f);
}

/* The latency samples' percentiles and the shim's counters. */
static void json_latency(FILE *f)
{
    static const double qs[] = { 0.5, 0.9, 0.99, 1.0 };
    static const char *const qn[] = { "p50", "p90", "p99", "max" };
    int i, m;
    size_t q;

    fprintf(f, ",\n  \"latency\": {\"device_latency_us\": %d, \"worker_pairs\": %d, "
               "\"chunks\": %d, \"per_chunk\": %d, \"chunks_retaken\": %d, "
               "\"chunks_disturbed\": %d, \"unit\": \"us from the device's wait-fd signal\"",
            lat.lat_us, lat.pairs, lat.chunks, lat.per_chunk, lat.retried, lat.disturbed);
    for (i = 0; i < lat.nsides; i++) {
        fprintf(f, ", \"%s\": {\"n\": %d, \"early\": %ld", lat.side[i], lat.n[i], lat.early[i]);
        for (m = 0; m < 2; m++)
            for (q = 0; q < sizeof(qs) / sizeof(qs[0]); q++) {
                fprintf(f, ", \"%s_%s\": ", m ? "resume" : "learn", qn[q]);
                json_num(f, lat_quantile(i, m, qs[q]));
            }
        fputc('}', f);
    }
    fprintf(f, "},\n  \"shim_counters\": {\"workers\": %d, \"adapter_arms\": %llu, "
               "\"adapter_deliveries\": %llu, \"adapter_drops\": %llu, "
               "\"adapter_unavailable\": %llu, \"jobs_unverified\": %llu}",
            shim_counters.workers, shim_counters.arms, shim_counters.deliveries,
            shim_counters.drops, shim_counters.unavailable, shim_counters.unverified);
}

void write_json(const struct summary *sm, double elapsed)
{
    char path[4200];
    FILE *f;
    int i;

    snprintf(path, sizeof(path), "%s/results.json", cfg.out_dir);
    if ((f = fopen(path, "w")) == NULL)
        fatal("%s: %s", path, strerror(errno));
    json_header(f, elapsed);
    fprintf(f, "  \"cells\": {\n");
    for (i = 0; i < ncells; i++) {
        json_cell(f, &cells[i]);
        fprintf(f, "%s\n", i + 1 < ncells ? "," : "");
    }
    fprintf(f, "  },\n");
    json_probes(f);
    json_latency(f);
    fprintf(f, ",\n  \"summary\": {");
    if (BENCH_OSSL111) {
        fprintf(f, "\"handshakes_111_shim_callback_native_fd\": ");
        json_num(f, sm->hsa);
    } else {
        fprintf(f, "\"handshakes_shim_native\": ");
        json_num(f, sm->hs);
        fprintf(f, ", \"handshakes_fdmode_shim_native\": ");
        json_num(f, sm->hs_fd);
        fprintf(f, ", \"handshakes_callback_fd\": ");
        json_num(f, sm->cbfd);
        fprintf(f, ", \"handshakes_native_callback_fd\": ");
        json_num(f, sm->cbfd_native);
        fprintf(f, ", \"handshakes_fdadapter_callback_fd\": ");
        json_num(f, sm->hsa);
    }
    fprintf(f, "}\n}\n");
    fclose(f);
}
