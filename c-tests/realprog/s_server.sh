#!/bin/bash
# realprog/s_server.sh: an unmodified `openssl s_server -async`, its EC key
# offloaded to the simulated accelerator (`-engine simaccel_dyn.so`), behaves
# with the shim preloaded exactly as without it:
#  - www mode (-WWW, a static file): W curl (TLS 1.3) and W Python (TLS 1.2)
#    requests get the same status and body;
#  - default mode: K `openssl s_time -new` connections (s_time preloaded too)
#    all complete.
# Every handshake is offloaded inside an async job and pauses once (engine
# counters, both runs); the shim is active and counts those very pauses
# (SSLASYNC_STATS=1: pauses = the engine's > 0, no callback: s_server uses
# no callback). In default mode s_server waits on the wait fds; in www mode
# it does not: it sleeps 1 s whenever the handshake job pauses ("read R
# BLOCK"), hence the small W.
set -eu
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
rp_init s_server
rp_certs ec
W=${REALPROG_WWW_REQUESTS:-10}
K=${REALPROG_STIME_CONNECTIONS:-$N}

# Exit reports of both phases of one run, checked together.
check_reports() {
    local mode=$1 handshakes=$2
    shift 2
    rp_reports "$mode" "$@"
    # Every full handshake: one offloaded signature, inside a job, paused
    # and signalled on the wait fd once, no callback (s_server sets none).
    # In default mode s_server re-drives the paused job without waiting
    # (each early resume pauses again), hence more pauses than operations.
    rp_assert "$ENG_OFFLOADED -eq $handshakes" "$mode run: offloaded operations != handshakes"
    rp_assert "$ENG_NOT_IN_JOB -eq 0" "$mode run: private-key operations outside an async job"
    rp_assert "$ENG_PAUSES -ge $ENG_OFFLOADED" "$mode run: an offloaded operation did not pause"
    rp_assert "$ENG_FD -eq $ENG_OFFLOADED -a $ENG_CALLBACKS -eq 0" "$mode run: not notified through the wait fd"
    if [ "$mode" = shim ]; then
        rp_assert "$SHIM_REPORTS -eq 2" "one 'sslasync stats' report per s_server"
        rp_assert "$SHIM_PAUSES -eq $ENG_PAUSES" "the shim did not see the engine's pauses"
        rp_assert "$SHIM_DELIVERED -eq 0 -a $SHIM_DROPPED -eq 0" "callbacks in an fd-only program"
    fi
}

run() {
    local mode=$1 port rc=0 marks
    local client_env=()
    [ "$mode" = shim ] && client_env=("LD_PRELOAD=$SSLASYNC_SHIM")

    # www mode: files from the working directory. Each server ends by itself
    # after its exact number of connections (-naccept): the graceful exit at
    # which the reports are printed.
    port=$(rp_free_port)
    cd "$RP_TMP/www"
    rp_start "$mode" "$RP_TMP/$mode.www.log" "$OPENSSL_PROGRAM" s_server -async \
        -engine "$SIMACCEL_ENGINE" -WWW -accept "127.0.0.1:$port" -naccept $((2 * W)) \
        -cert "$RP_TMP/cert.pem" -key "$RP_TMP/key.pem"
    cd "$RP_TMP"
    rp_wait_listen "$port"
    rp_check_mapped "$mode" "$RP_PID"
    rp_curl "$mode" "$port" /index.html "$W"
    rp_python "$mode" "$port" /index.html 1.2 "$W"
    rp_wait_exit "s_server -WWW ($mode run)"
    # curl reports HTTP/1.0 as "1".
    rp_expect "$RP_TMP/$mode.curl.transcript" "curl http/1 200 conn=1 $RP_BODY_SHA" "$W"
    rp_expect "$RP_TMP/$mode.python.transcript" "python TLSv1.2 200 $RP_BODY_SHA" "$W"

    # Default mode with s_time. Its stdin stays open and empty (a FIFO we
    # hold): at end of input s_server would quit after one connection.
    rm -f "$RP_TMP/stdin"
    mkfifo "$RP_TMP/stdin"
    exec 4<>"$RP_TMP/stdin"
    port=$(rp_free_port)
    RP_STDIN=$RP_TMP/stdin rp_start "$mode" "$RP_TMP/$mode.s_server.log" "$OPENSSL_PROGRAM" \
        s_server -async -engine "$SIMACCEL_ENGINE" -accept "127.0.0.1:$port" -naccept "$K" \
        -cert "$RP_TMP/cert.pem" -key "$RP_TMP/key.pem"
    rp_wait_listen "$port"
    rp_check_mapped "$mode" "$RP_PID"
    # s_time has a duration, no connection count: it runs until the server
    # has had its K connections and exited, and then fails to connect. Each
    # completed new-session connection prints one '*'.
    timeout 120 env "${client_env[@]}" "$OPENSSL_PROGRAM" s_time -connect "127.0.0.1:$port" \
        -new -time 100 -CAfile "$RP_TMP/cert.pem" \
        >"$RP_TMP/$mode.s_time.out" 2>"$RP_TMP/$mode.s_time.log" </dev/null || rc=$?
    rp_wait_exit "s_server ($mode run)"
    exec 4>&-
    marks=$(tr -cd '*' <"$RP_TMP/$mode.s_time.out" | wc -c)
    [ "$marks" -eq "$K" ] || rp_fail "s_time ($mode run) completed $marks connections, expected $K"
    [ $rc -eq 1 ] || rp_fail "s_time ($mode run) exit status $rc, expected 1 (its connection after the server's last)"
    if grep -qE 'sslasync(\[[^]]*\])?: inactive' "$RP_TMP/$mode.s_time.log"; then
        rp_fail "the shim is inactive in s_time"
    fi
    echo "s_time new-session connections=$marks" >"$RP_TMP/$mode.s_time.transcript"

    check_reports "$mode" $((2 * W + K)) "$RP_TMP/$mode.www.log" "$RP_TMP/$mode.s_server.log"
}

run native
run shim
rp_same_transcripts curl python s_time
rp_note "PASS: $W curl + $W python requests (-WWW) and $K s_time connections, the same" \
    "with and without the shim; shim pauses=$SHIM_PAUSES"
