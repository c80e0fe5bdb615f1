/*
 * The SSLASYNC_STATS=1 report is printed only by a process that used the
 * API or saw a pause, and every report line names that process (shim only).
 * check-stats-report.sh runs this program with the shim preloaded under
 * `sh -c '/bin/true; ...'`, so the shell and true load the shim too but never
 * touch OpenSSL's async machinery: they must print nothing, and this
 * program's lines must start with "sslasync[<its pid> stats_report] stats:".
 * This program does one handshake paused on the device with its callback
 * delivered, and prints its pid ("pid <n>") for the script to compare.
 */
#include "tlsdrive.h"

#include <stdio.h>
#include <unistd.h>

int main(void)
{
    SSL_CTX *sctx;
    tlsd_conn c;
    simaccel_counters d;

    tlsd_begin("stats_report", TLSD_SHIM_ONLY);
    /* Not part of the transcript: the script reads it. */
    printf("pid %ld\n", (long)getpid());
    fflush(stdout);
    sctx = tlsd_server_ctx("ec", 0);
    SSL_CTX_set_async_callback(sctx, tlsd_cb);
    tlsd_conn_init(&c, sctx, NULL);
    SSL_set_async_callback_arg(c.server, &c);
    tlsd_counters_mark();
    tlsd_handshake(&c);
    d = tlsd_counters_delta();
    TLSD_CHECK(d.pauses == 1 && tlsd_device_notified(&d, 1) && atomic_load(&c.notes) == 1,
               "pauses %llu, device callbacks %llu, delivered %u",
               (unsigned long long)d.pauses, (unsigned long long)d.callbacks,
               atomic_load(&c.notes));
    tlsd_say("one paused handshake, its callback delivered");
    tlsd_conn_free(&c);
    SSL_CTX_free(sctx);
    return tlsd_end();
}
