# shellcheck shell=bash disable=SC2034 # (its results are read by the sourcing scripts)
# Shared helpers of the realprog tests (sourced by haproxy.sh, nginx.sh,
# s_server.sh). A test runs one unmodified program twice over loopback,
# natively and with the shim preloaded, each time with its private key
# offloaded to the simulated accelerator loaded as a dynamic ENGINE
# (SIMACCEL_ENGINE); it drives REALPROG_REQUESTS (default 200) requests with
# curl and as many with client.py, then compares the two runs' transcripts
# with each other and with the expected body, and reads the shim's
# (SSLASYNC_STATS=1) and the engine's (SIMACCEL_REPORT=1) exit reports.
# Every wait is bounded, every process started is killed on exit, and
# nothing but 127.0.0.1 is ever addressed.
#
# Environment (CTest sets it): SSLASYNC_SHIM, SIMACCEL_ENGINE, OPENSSL_PROGRAM,
# CURL, PYTHON3, and HAPROXY or NGINX. REALPROG_KEEP=1 keeps the work dir.

: "${SSLASYNC_SHIM:?path of libsslasync.so}"
: "${SIMACCEL_ENGINE:?path of the simaccel_dyn.so dynamic ENGINE}"
OPENSSL_PROGRAM=${OPENSSL_PROGRAM:-openssl}
CURL=${CURL:-curl}
PYTHON3=${PYTHON3:-python3}
N=${REALPROG_REQUESTS:-200}
RP_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Upper bound of any server's lifetime (timeout -s KILL), and of waits.
RP_LIFETIME=240
RP_START_WAIT=20
RP_STOP_WAIT=30

RP_NAME=
RP_TMP=
RP_KILL=()  # the timeout(1) of every server: each leads its process group
RP_TPID=   # the timeout(1) wrapping the current server
RP_PID=    # the server itself (timeout's child)

rp_note() { echo "realprog.$RP_NAME: $*"; }

rp_dump_logs() {
    local f
    for f in "$RP_TMP"/*.log; do
        [ -f "$f" ] || continue
        echo "---- ${f##*/} (last 40 lines)" >&2
        tail -n 40 "$f" >&2
    done
}

rp_fail() {
    echo "realprog.$RP_NAME: FAIL: $*" >&2
    rp_dump_logs
    exit 1
}

rp_cleanup() {
    local p
    # The whole group: nginx's workers too.
    for p in "${RP_KILL[@]}"; do
        kill -KILL -- "-$p" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    if [ -n "${REALPROG_KEEP:-}" ]; then
        echo "realprog.$RP_NAME: work dir kept: $RP_TMP" >&2
    else
        rm -rf "$RP_TMP"
    fi
}

# rp_init NAME: work dir, traps, the inputs every run shares.
rp_init() {
    RP_NAME=$1
    RP_TMP=$(mktemp -d "${TMPDIR:-/tmp}/realprog-$1.XXXXXX")
    trap rp_cleanup EXIT
    trap 'exit 1' INT TERM HUP
    [ -f "$SSLASYNC_SHIM" ] || rp_fail "no shim at $SSLASYNC_SHIM"
    [ -f "$SIMACCEL_ENGINE" ] || rp_fail "no dynamic engine at $SIMACCEL_ENGINE"
    mkdir "$RP_TMP/www"
    # 11400 bytes: under haproxy's 16 KB buffer (it serves the file from memory).
    awk 'BEGIN { for (i = 1; i <= 200; i++)
                 printf "line %03d of the sslasync realprog body, served unchanged\n", i }' \
        >"$RP_TMP/www/index.html"
    RP_BODY_SHA=$(sha256sum <"$RP_TMP/www/index.html" | cut -d' ' -f1)
    cat >"$RP_TMP/openssl.cnf" <<EOF
# The simulated accelerator, loaded at OpenSSL init and made the default for
# RSA and EC, so the server key (decoded later) signs through it.
openssl_conf = openssl_init
[openssl_init]
engines = engine_section
[engine_section]
simaccel = simaccel_section
[simaccel_section]
dynamic_path = $SIMACCEL_ENGINE
default_algorithms = RSA,EC
init = 1
EOF
}

# rp_certs ec|rsa: cert.pem (CN and SAN localhost, 127.0.0.1) and key.pem.
rp_certs() {
    local newkey
    case $1 in
    ec) newkey=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) ;;
    rsa) newkey=(-newkey rsa:2048) ;;
    *) rp_fail "rp_certs: key type $1" ;;
    esac
    timeout 60 "$OPENSSL_PROGRAM" req -x509 "${newkey[@]}" -nodes -days 2 -subj /CN=localhost \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$RP_TMP/key.pem" -out "$RP_TMP/cert.pem" 2>"$RP_TMP/req.log" ||
        rp_fail "certificate generation failed"
    rm -f "$RP_TMP/req.log"
}

# A port nobody listens on now (the kernel's pick for a fresh socket).
rp_free_port() {
    "$PYTHON3" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# rp_start native|shim LOG CMD [ARGS...]: starts the server in the
# background with the engine's report on, and in shim mode the shim preloaded
# with its statistics on; stdin is RP_STDIN (default /dev/null). Sets RP_TPID
# and RP_PID.
rp_start() {
    local mode=$1 log=$2 deadline child=
    shift 2
    local envs=(SIMACCEL_REPORT=1)
    [ "$mode" = shim ] && envs+=("LD_PRELOAD=$SSLASYNC_SHIM" SSLASYNC_STATS=1)
    timeout -s KILL "$RP_LIFETIME" env "${envs[@]}" "$@" >"$log" 2>&1 <"${RP_STDIN:-/dev/null}" &
    RP_TPID=$!
    RP_KILL+=("$RP_TPID")
    deadline=$((SECONDS + RP_START_WAIT))
    while [ -z "$child" ]; do
        child=$(cat "/proc/$RP_TPID/task/$RP_TPID/children" 2>/dev/null) || true
        child=${child%% *}
        [ -n "$child" ] && break
        kill -0 "$RP_TPID" 2>/dev/null || rp_fail "$1 exited at once"
        [ $SECONDS -lt $deadline ] || rp_fail "$1 did not start"
        sleep 0.02
    done
    RP_PID=$child
}

# rp_wait_listen PORT: until a socket listens on 127.0.0.1:PORT (seen in
# /proc/net/tcp, without connecting to it), while the server lives.
rp_wait_listen() {
    local hex deadline
    hex=$(printf '0100007F:%04X' "$1")
    deadline=$((SECONDS + RP_START_WAIT))
    until awk -v a="$hex" '$2 == a && $4 == "0A" { found = 1 } END { exit !found }' /proc/net/tcp; do
        kill -0 "$RP_TPID" 2>/dev/null || rp_fail "the server exited before listening on port $1"
        [ $SECONDS -lt $deadline ] || rp_fail "nothing listens on 127.0.0.1:$1 after ${RP_START_WAIT}s"
        sleep 0.05
    done
}

# rp_children PID: its child processes.
rp_children() {
    cat "/proc/$1/task/"*/children 2>/dev/null || true
}

# rp_check_mapped native|shim PID...: the shim is mapped into each process
# in shim mode (a preload can fail quietly) and into none natively.
rp_check_mapped() {
    local mode=$1 p
    shift
    for p in "$@"; do
        if grep -q libsslasync "/proc/$p/maps" 2>/dev/null; then
            [ "$mode" = shim ] || rp_fail "libsslasync mapped into pid $p in the native run"
        else
            [ "$mode" = native ] || rp_fail "libsslasync is not loaded in pid $p"
        fi
    done
}

# rp_wait_exit WHAT: waits (bounded) for the server to exit; it must exit 0.
rp_wait_exit() {
    local deadline=$((SECONDS + RP_STOP_WAIT)) rc=0
    while kill -0 "$RP_TPID" 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || rp_fail "$1 still running ${RP_STOP_WAIT}s after it should have stopped"
        sleep 0.05
    done
    wait "$RP_TPID" || rc=$?
    [ $rc -eq 0 ] || rp_fail "$1 exit status $rc (137: killed at the ${RP_LIFETIME}s bound)"
}

# rp_stop SIGNAL WHAT: graceful stop (the exit reports are printed at exit).
rp_stop() {
    kill "-$1" "$RP_PID" 2>/dev/null || rp_fail "$2 is gone before the stop"
    rp_wait_exit "$2"
}

# rp_curl MODE PORT PATH [COUNT]: COUNT (default N) requests in one curl process, each on a new
# connection with no session reuse (a full TLS 1.3 handshake each). Writes
# MODE.curl.transcript: "curl http/VERSION STATUS conn=NEW_CONNECTIONS SHA256".
rp_curl() {
    local mode=$1 port=$2 path=$3 count=${4:-$N} i rc=0 code ver conns sha
    local dir="$RP_TMP/$mode.curl"
    mkdir -p "$dir"
    for i in $(seq "$count"); do
        printf 'url = "https://localhost:%s%s"\noutput = "%s/%d"\n' "$port" "$path" "$dir" "$i"
    done >"$dir/config"
    timeout 180 "$CURL" --config "$dir/config" -sS --noproxy '*' \
        --resolve "localhost:$port:127.0.0.1" --cacert "$RP_TMP/cert.pem" \
        --no-sessionid --tlsv1.3 -H 'Connection: close' --max-time 10 \
        -w '%{http_code} %{http_version} %{num_connects}\n' \
        >"$dir/w.out" 2>"$RP_TMP/$mode.curl.log" || rc=$?
    [ $rc -eq 0 ] || rp_fail "curl ($mode run) exit status $rc"
    i=0
    while read -r code ver conns; do
        i=$((i + 1))
        sha=$(sha256sum <"$dir/$i" | cut -d' ' -f1)
        echo "curl http/$ver $code conn=$conns $sha"
    done <"$dir/w.out" >"$RP_TMP/$mode.curl.transcript"
}

# rp_python MODE PORT PATH TLS [COUNT]: COUNT (default N) requests with
# client.py over TLS 1.2 or 1.3. Writes MODE.python.transcript.
rp_python() {
    local mode=$1 rc=0
    timeout 180 "$PYTHON3" "$RP_HERE/client.py" --port "$2" --path "$3" --tls "$4" \
        --cafile "$RP_TMP/cert.pem" --count "${5:-$N}" \
        >"$RP_TMP/$mode.python.transcript" 2>"$RP_TMP/$mode.python.log" || rc=$?
    [ $rc -eq 0 ] || rp_fail "client.py ($mode run) exit status $rc"
}

# rp_expect FILE LINE [COUNT]: FILE holds exactly COUNT (default N) lines,
# each equal to LINE.
rp_expect() {
    local got count=${3:-$N}
    got=$(sort "$1" | uniq -c | sed 's/^ *//')
    [ "$got" = "$count $2" ] ||
        rp_fail "${1##*/}: expected $count x '$2', got:"$'\n'"$got"
}

# rp_same_transcripts CLIENT...: the native and shim runs gave the same
# responses, line by line.
rp_same_transcripts() {
    local c
    for c in "$@"; do
        cmp -s "$RP_TMP/native.$c.transcript" "$RP_TMP/shim.$c.transcript" ||
            rp_fail "$c: responses differ with and without the shim:"$'\n'"$(
                diff "$RP_TMP/native.$c.transcript" "$RP_TMP/shim.$c.transcript" | head -20)"
    done
}

# Report lines, matched whole: in a multi-process program (nginx) another
# process's stderr output can land in the middle of one (the shim's line is
# not written in one piece), and such a line must not be misread. The shim's
# report may carry its process: "sslasync[<pid> <program>] stats: ...".
RP_SHIM_LINE='sslasync(\[[^]]*\])? stats: callbacks delivered=[0-9]+ dropped=[0-9]+ pauses=[0-9]+ status ok=[0-9]+ eagain=[0-9]+ err=[0-9]+ late_registrations=[0-9]+ adapter_arms=[0-9]+ adapter_deliveries=[0-9]+ adapter_drops=[0-9]+ adapter_unavailable=[0-9]+ frees_deferred=[0-9]+ jobs_bypassed=[0-9]+ job_layout=[0-2] free_deferral=[0-2]( jobs_unverified=[0-9]+)?$'
RP_ENG_LINE='simaccel: pid=[0-9]+ offloaded=[0-9]+ pauses=[0-9]+ fd_signals=[0-9]+ callbacks=[0-9]+ not_in_job=[0-9]+$'

# rp_sum REGEX FIELD FILE...: sum of FIELD=N over the lines matching REGEX.
rp_sum() {
    local re=$1 field=$2
    shift 2
    cat "$@" 2>/dev/null | grep -oE -- "$re" | grep -oE "(^| )$field=[0-9]+" |
        awk -F= '{ s += $2 } END { print s + 0 }'
}

# rp_reports MODE FILE...: reads the exit reports of one run into
# SHIM_REPORTS (intact report lines), SHIM_PAUSES, SHIM_DELIVERED,
# SHIM_DROPPED and ENG_REPORTS, ENG_OFFLOADED, ENG_PAUSES, ENG_FD,
# ENG_CALLBACKS, ENG_NOT_IN_JOB (summed over processes), after checking that
# no process found the shim inactive and that the engine reported; prints
# the shim's report lines.
rp_reports() {
    local mode=$1
    shift
    if cat "$@" 2>/dev/null | grep -qE 'sslasync(\[[^]]*\])?: inactive'; then
        rp_fail "the shim reported itself inactive ($mode run)"
    fi
    SHIM_REPORTS=$(cat "$@" 2>/dev/null | grep -cE -- "$RP_SHIM_LINE") || true
    SHIM_PAUSES=$(rp_sum "$RP_SHIM_LINE" pauses "$@")
    SHIM_DELIVERED=$(rp_sum "$RP_SHIM_LINE" delivered "$@")
    SHIM_DROPPED=$(rp_sum "$RP_SHIM_LINE" dropped "$@")
    ENG_REPORTS=$(cat "$@" 2>/dev/null | grep -cE -- "$RP_ENG_LINE") || true
    ENG_OFFLOADED=$(rp_sum "$RP_ENG_LINE" offloaded "$@")
    ENG_PAUSES=$(rp_sum "$RP_ENG_LINE" pauses "$@")
    ENG_FD=$(rp_sum "$RP_ENG_LINE" fd_signals "$@")
    ENG_CALLBACKS=$(rp_sum "$RP_ENG_LINE" callbacks "$@")
    ENG_NOT_IN_JOB=$(rp_sum "$RP_ENG_LINE" not_in_job "$@")
    [ "$ENG_REPORTS" -ge 1 ] || rp_fail "no simaccel report ($mode run): the engine was not loaded"
    if [ "$mode" = shim ]; then
        cat "$@" 2>/dev/null | grep -E 'sslasync(\[[^]]*\])? stats: callbacks' |
            sed "s/^/realprog.$RP_NAME: shim run: /"
    fi
    rp_note "$mode run engine: offloaded=$ENG_OFFLOADED pauses=$ENG_PAUSES fd_signals=$ENG_FD" \
        "callbacks=$ENG_CALLBACKS not_in_job=$ENG_NOT_IN_JOB ($ENG_REPORTS process(es))"
}

# rp_assert CONDITION MESSAGE (CONDITION: a test(1) expression, as one string)
rp_assert() {
    # shellcheck disable=SC2086
    test $1 || rp_fail "$2 ($1)"
}
