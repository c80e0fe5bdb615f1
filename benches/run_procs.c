/*
 * Running: the driver's child processes (spawned native, or with the shim
 * preloaded) and the line protocol it speaks with its two workers.
 */
#define _GNU_SOURCE
#include "driver.h"

#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

char sched_mode[16];
struct worker workers[2] = { { "native", 0, 0, NULL, NULL, 0 }, { "shim", 1, 0, NULL, NULL, 0 } };
struct shim_counters shim_counters;

/* environ without LD_PRELOAD, plus LD_PRELOAD=shim for the shim side. */
static char **child_env(int shim)
{
    static char *envs[2][1024];
    static char preload[4200];
    char **e = envs[shim];
    size_t n = 0, i;

    for (i = 0; environ[i] != NULL && n < 1020; i++)
        if (strncmp(environ[i], "LD_PRELOAD=", 11) != 0
            && strncmp(environ[i], "SSLASYNC_STATS=", 15) != 0)
            e[n++] = environ[i];
    if (shim) {
        snprintf(preload, sizeof(preload), "LD_PRELOAD=%s", cfg.shim_path);
        e[n++] = preload;
    }
    e[n] = NULL;
    return e;
}

pid_t spawn(char *const argv[], int shim, int in_fd, int out_fd, int err_fd)
{
    posix_spawn_file_actions_t fa;
    pid_t pid;
    int rc;

    posix_spawn_file_actions_init(&fa);
    if (in_fd >= 0)
        posix_spawn_file_actions_adddup2(&fa, in_fd, 0);
    if (out_fd >= 0)
        posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
    if (err_fd >= 0)
        posix_spawn_file_actions_adddup2(&fa, err_fd, 2);
    rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, child_env(shim));
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        fatal("cannot start %s: %s", argv[0], strerror(rc));
    return pid;
}

void wait_ok(pid_t pid, const char *what)
{
    int st;

    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fatal("%s failed (status %d)", what, st);
}

/* Runs argv to completion and returns its first stdout line. */
void run_capture(char *const argv[], int shim, char *line, size_t len)
{
    int p[2];
    pid_t pid;
    FILE *f;

    if (pipe(p) != 0)
        fatal("pipe: %s", strerror(errno));
    pid = spawn(argv, shim, -1, p[1], -1);
    close(p[1]);
    f = fdopen(p[0], "r");
    if (f == NULL || fgets(line, (int)len, f) == NULL)
        line[0] = '\0';
    if (f != NULL)
        fclose(f);
    wait_ok(pid, argv[1]);
}

void worker_start(struct worker *w, int light)
{
    int in[2], out[2];
    char line[256], want[64];
    char *argv[] = { cfg.self_exe, "worker", light ? "light" : NULL, NULL };

    if (pipe(in) != 0 || pipe(out) != 0)
        fatal("pipe: %s", strerror(errno));
    w->pid = spawn(argv, w->shim, in[0], out[1], -1);
    close(in[0]);
    close(out[1]);
    w->to = fdopen(in[1], "w");
    w->from = fdopen(out[0], "r");
    if (w->to == NULL || w->from == NULL || fgets(line, sizeof(line), w->from) == NULL)
        fatal("%s worker did not start", w->name);
    /* A silently failed preload, or an inert shim, would make the whole
     * comparison native against native. */
    snprintf(want, sizeof(want), "ok impl=%s active=%d", w->name, w->shim);
    if (strncmp(line, want, strlen(want)) != 0)
        fatal("%s worker reports \"%.*s\", expected \"%s\"%s", w->name,
              (int)strcspn(line, "\n"), line, want,
              w->shim ? " (is the shim built for this OpenSSL? see its stderr line)" : "");
    if (sscanf(line, "%*s %*s %*s sched=%15s", sched_mode) != 1)
        snprintf(sched_mode, sizeof(sched_mode), "?");
    w->adapter = strstr(line, " adapter=1") != NULL;
}

/* The shim worker's counters are read once, at its exit: they are totals. */
static void worker_counters(struct worker *w)
{
    char line[256];
    int have;
    unsigned long long v[5];

    fputs("stats\n", w->to);
    fflush(w->to);
    if (fgets(line, sizeof(line), w->from) == NULL
        || sscanf(line, "ok %d %llu %llu %llu %llu %llu", &have, &v[0], &v[1], &v[2], &v[3],
                  &v[4]) != 6)
        fatal("%s worker: bad answer \"%s\" to \"stats\"", w->name, line);
    shim_counters.workers++;
    shim_counters.have += have;
    shim_counters.arms += v[0];
    shim_counters.deliveries += v[1];
    shim_counters.drops += v[2];
    shim_counters.unavailable += v[3];
    shim_counters.unverified += v[4];
}

void worker_stop(struct worker *w)
{
    if (w->shim)
        worker_counters(w);
    fputs("quit\n", w->to);
    fclose(w->to);
    fclose(w->from);
    wait_ok(w->pid, w->name);
}

/* One command; returns count/seconds, and in *disturbed the fraction of
 * the cell the worker's threads spent runnable but not running. */
double worker_rate(struct worker *w, const char *cmd, double *disturbed)
{
    char line[256];
    double n, s, delay_ns;

    fprintf(w->to, "%s\n", cmd);
    fflush(w->to);
    if (fgets(line, sizeof(line), w->from) == NULL)
        fatal("%s worker died on \"%s\"", w->name, cmd);
    if (sscanf(line, "ok %lf %lf %lf", &n, &s, &delay_ns) != 3 || s <= 0)
        fatal("%s worker: bad answer \"%s\" to \"%s\"", w->name, line, cmd);
    if (disturbed != NULL)
        *disturbed = delay_ns * 1e-9 / s;
    return n / s;
}

double worker_lat(struct worker *w, const char *cmd, double *learn, double *resume, int *n,
                  int max, long *early)
{
    char *line = NULL, *p, *end;
    size_t cap = 0;
    long cnt, i;
    double t0 = now_s(), el;
    long long delay;
    long e;

    fprintf(w->to, "%s\n", cmd);
    fflush(w->to);
    if (getline(&line, &cap, w->from) <= 0)
        fatal("%s worker died on \"%s\"", w->name, cmd);
    el = now_s() - t0;
    if (sscanf(line, "ok %ld %lld %ld", &cnt, &delay, &e) != 3 || cnt < 1)
        fatal("%s worker: bad answer to \"%s\"", w->name, cmd);
    if (early != NULL)
        *early += e;
    p = line + 3;
    strtol(p, &p, 10);
    strtoll(p, &p, 10);
    strtol(p, &p, 10);
    for (i = 0; i < cnt; i++) {
        double a = (double)strtoll(p, &end, 10) / 1000.0, b;

        if (end == p)
            fatal("%s worker: short answer to \"%s\"", w->name, cmd);
        p = end;
        b = (double)strtoll(p, &end, 10) / 1000.0;
        if (end == p)
            fatal("%s worker: short answer to \"%s\"", w->name, cmd);
        p = end;
        if (*n < max) {
            learn[*n] = a;
            resume[*n] = b;
            (*n)++;
        }
    }
    free(line);
    return (double)delay * 1e-9 / el;
}
