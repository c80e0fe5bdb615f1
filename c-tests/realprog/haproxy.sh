#!/bin/bash
# realprog/haproxy.sh: an unmodified haproxy with `ssl-mode-async`,
# terminating TLS with an RSA-2048 key offloaded to the simulated accelerator
# (dynamic ENGINE loaded through OPENSSL_CONF) and serving a fixed ~12 KB
# response itself, behaves with the shim preloaded exactly as without it: N
# curl (TLS 1.3) and N Python (TLS 1.2) requests, each a new connection and
# full handshake, get the same status and body. Every handshake is offloaded
# inside an async job and pauses (engine counters, both runs), and the shim
# is active and counts those very pauses (SSLASYNC_STATS=1: pauses = the
# engine's, >= 2N; no callback: haproxy polls the wait fds).
set -eu
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
: "${HAPROXY:=haproxy}"
rp_init haproxy
rp_certs rsa
cat "$RP_TMP/cert.pem" "$RP_TMP/key.pem" >"$RP_TMP/crt.pem"

run() {
    local mode=$1 port
    port=$(rp_free_port)
    cat >"$RP_TMP/haproxy.cfg" <<EOF
global
    ssl-mode-async
    nbthread 2
    maxconn 256
defaults
    mode http
    timeout connect 5s
    timeout client 10s
    timeout server 10s
frontend tls
    bind 127.0.0.1:$port ssl crt $RP_TMP/crt.pem
    http-request return status 200 content-type text/plain file $RP_TMP/www/index.html
EOF
    # -db: foreground, no daemon, no master-worker.
    OPENSSL_CONF=$RP_TMP/openssl.cnf rp_start "$mode" "$RP_TMP/$mode.haproxy.log" \
        "$HAPROXY" -db -f "$RP_TMP/haproxy.cfg"
    rp_wait_listen "$port"
    rp_check_mapped "$mode" "$RP_PID"
    rp_curl "$mode" "$port" /
    rp_python "$mode" "$port" / 1.2
    # Soft stop: haproxy finishes its connections and exits normally.
    rp_stop USR1 "haproxy ($mode run)"

    rp_expect "$RP_TMP/$mode.curl.transcript" "curl http/1.1 200 conn=1 $RP_BODY_SHA"
    rp_expect "$RP_TMP/$mode.python.transcript" "python TLSv1.2 200 $RP_BODY_SHA"
    rp_reports "$mode" "$RP_TMP/$mode.haproxy.log"
    rp_assert "$ENG_OFFLOADED -eq $((2 * N))" "$mode run: offloaded operations != handshakes"
    rp_assert "$ENG_NOT_IN_JOB -eq 0" "$mode run: private-key operations outside an async job"
    rp_assert "$ENG_PAUSES -ge $ENG_OFFLOADED" "$mode run: an offloaded operation did not pause"
    rp_assert "$ENG_FD -eq $ENG_OFFLOADED -a $ENG_CALLBACKS -eq 0" "$mode run: not notified through the wait fd"
    if [ "$mode" = shim ]; then
        rp_assert "$SHIM_REPORTS -eq 1" "one 'sslasync stats' report from haproxy"
        rp_assert "$SHIM_PAUSES -eq $ENG_PAUSES" "the shim did not see the engine's pauses"
        rp_assert "$SHIM_DELIVERED -eq 0 -a $SHIM_DROPPED -eq 0" "callbacks in an fd-only program"
    fi
}

run native
run shim
rp_same_transcripts curl python
rp_note "PASS: $N curl + $N python requests, the same with and without the shim;" \
    "shim pauses=$SHIM_PAUSES"
