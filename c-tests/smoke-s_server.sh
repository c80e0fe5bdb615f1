#!/bin/bash
# smoke-s_server.sh OPENSSL [WRAPPER]
# An unmodified `openssl s_server -async` with the shim preloaded (through
# the with-sslasync wrapper when given and present, else LD_PRELOAD of
# SSLASYNC_SHIM) must still complete a handshake and an HTTP exchange with
# `openssl s_client`. Every wait is bounded; the server is always killed.
set -u
openssl=${1:?openssl program}
wrapper=${2:-}

tmp=$(mktemp -d) || exit 1
server_pid=
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

die() {
    echo "smoke: $*" >&2
    [ -f "$tmp/server.log" ] && sed 's/^/  server: /' "$tmp/server.log" >&2
    exit 1
}

# A configuration of its own: a private OpenSSL build installs none.
printf '[req]\ndistinguished_name = dn\n[dn]\n' >"$tmp/req.cnf"
"$openssl" req -config "$tmp/req.cnf" -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -days 2 -subj /CN=localhost -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>"$tmp/req.log" ||
    { cat "$tmp/req.log" >&2; die "certificate generation failed"; }

if [ -n "$wrapper" ] && [ -x "$wrapper" ]; then
    run=("$wrapper" "$openssl")
    how="via $(basename "$wrapper")"
else
    [ -f "${SSLASYNC_SHIM:-}" ] || die "no wrapper and no SSLASYNC_SHIM"
    run=(env LD_PRELOAD="$SSLASYNC_SHIM" "$openssl")
    how="via LD_PRELOAD"
fi

# Port 0: the kernel picks a free port and s_server reports it on its
# "ACCEPT host:port" line, which we read from a FIFO as it is printed.
mkfifo "$tmp/out" || die "mkfifo"
# timeout bounds the server's whole lifetime, whatever goes wrong below.
timeout 30 "${run[@]}" s_server -async -accept 127.0.0.1:0 -naccept 1 -cert "$tmp/cert.pem" \
    -key "$tmp/key.pem" -www >"$tmp/out" 2>&1 </dev/null &
server_pid=$!

exec 3<"$tmp/out"
port=
while IFS= read -r -t 20 line <&3; do
    printf '%s\n' "$line" >>"$tmp/server.log"
    case $line in
    ACCEPT*) port=${line##*:}; break ;;
    esac
done
[ -n "$port" ] || die "s_server did not report its port"
# A shim built for another OpenSSL than this program's stays inert (it says so
# on stderr at load); everything below would then pass without testing it.
grep -q '^sslasync: inactive' "$tmp/server.log" && die "the shim is inactive in s_server"
# The shim must really be mapped into the server (a preload can fail quietly).
child=$(cat "/proc/$server_pid/task/$server_pid/children" 2>/dev/null)
grep -q libsslasync "/proc/${child%% *}/maps" 2>/dev/null ||
    die "libsslasync is not loaded in the s_server process"
cat <&3 >>"$tmp/server.log" &

printf 'GET / HTTP/1.0\r\n\r\n' |
    timeout 20 "$openssl" s_client -connect "127.0.0.1:$port" -servername localhost \
        -brief -ign_eof >"$tmp/client.log" 2>&1
rc=$?
[ $rc -eq 0 ] || { cat "$tmp/client.log" >&2; die "s_client failed (exit $rc)"; }
grep -q '^CONNECTION ESTABLISHED' "$tmp/client.log" ||
    { cat "$tmp/client.log" >&2; die "no handshake"; }
grep -q 's_server' "$tmp/client.log" ||
    { cat "$tmp/client.log" >&2; die "no HTTP response from the async server"; }

# -naccept 1: the server exits by itself after this connection.
wait "$server_pid"
rc=$?
server_pid=
[ $rc -eq 0 ] || die "s_server exit status $rc (124: killed by the timeout)"
echo "s_server -async $how: handshake and HTTP exchange completed"
