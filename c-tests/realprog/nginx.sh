#!/bin/bash
# realprog/nginx.sh: an unmodified nginx (master and 2 workers, all paths in
# a temporary prefix) serving a static file over TLS, its EC key offloaded to
# the simulated accelerator (dynamic ENGINE loaded through OPENSSL_CONF),
# behaves with the shim preloaded exactly as without it: N curl (TLS 1.3) and
# N Python (TLS 1.2) requests, each a new connection and full handshake, get
# the same status and body. The shim is mapped into every nginx process and
# none reports it inactive. Stock nginx never sets SSL_MODE_ASYNC, so
# nothing pauses: every signature goes through the engine synchronously
# (engine: not_in_job = 2N, no pause) and the shim counts no pause either.
set -eu
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
: "${NGINX:=nginx}"
rp_init nginx
rp_certs ec

run() {
    local mode=$1 port pids dir="$RP_TMP/$1.nginx" deadline user=
    port=$(rp_free_port)
    mkdir -p "$dir"
    # Started as root, nginx would run its workers as nobody, who may not
    # reach the work dir (TMPDIR can be private): keep the current user.
    [ "$(id -u)" -eq 0 ] && user="user $(id -un) $(id -gn);"
    cat >"$dir/nginx.conf" <<EOF
$user
daemon off;
master_process on;
worker_processes 2;
pid $dir/nginx.pid;
error_log $dir/error.log notice;
# Workers keep only the environment named here.
env OPENSSL_CONF;
env SIMACCEL_REPORT;
env SSLASYNC_STATS;
events { worker_connections 128; }
http {
    access_log off;
    client_body_temp_path $dir/client_body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    server {
        listen 127.0.0.1:$port ssl;
        ssl_certificate $RP_TMP/cert.pem;
        ssl_certificate_key $RP_TMP/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        root $RP_TMP/www;
    }
}
EOF
    OPENSSL_CONF=$RP_TMP/openssl.cnf rp_start "$mode" "$RP_TMP/$mode.nginx.log" \
        "$NGINX" -p "$dir" -c "$dir/nginx.conf"
    rp_wait_listen "$port"
    # The workers, which do the handshakes, must be there too.
    deadline=$((SECONDS + RP_START_WAIT))
    while pids=$(rp_children "$RP_PID") && [ "$(echo "$pids" | wc -w)" -lt 2 ]; do
        [ $SECONDS -lt $deadline ] || rp_fail "nginx ($mode run) did not start 2 workers"
        sleep 0.05
    done
    # shellcheck disable=SC2086
    rp_check_mapped "$mode" "$RP_PID" $pids
    rp_curl "$mode" "$port" /index.html
    rp_python "$mode" "$port" /index.html 1.2
    # Graceful shutdown: the workers finish and exit, then the master.
    rp_stop QUIT "nginx ($mode run)"
    # Once the master is up, the workers' stderr is the error log.
    cp "$dir/error.log" "$RP_TMP/$mode.error.log"

    rp_expect "$RP_TMP/$mode.curl.transcript" "curl http/1.1 200 conn=1 $RP_BODY_SHA"
    rp_expect "$RP_TMP/$mode.python.transcript" "python TLSv1.2 200 $RP_BODY_SHA"
    rp_reports "$mode" "$RP_TMP/$mode.nginx.log" "$RP_TMP/$mode.error.log"
    rp_assert "$ENG_NOT_IN_JOB -eq $((2 * N))" "$mode run: not one synchronous offload per handshake"
    rp_assert "$ENG_OFFLOADED -eq 0 -a $ENG_PAUSES -eq 0" "$mode run: an async job in nginx"
    if [ "$mode" = shim ]; then
        rp_assert "$SHIM_PAUSES -eq 0" "the shim counted pauses nginx never has"
        rp_assert "$SHIM_DELIVERED -eq 0 -a $SHIM_DROPPED -eq 0" "callbacks in nginx"
    fi
}

run native
run shim
rp_same_transcripts curl python
rp_note "PASS: $N curl + $N python requests, the same with and without the shim" \
    "(no pause: nginx has no async mode)"
