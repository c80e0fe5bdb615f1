#!/usr/bin/env python3
"""HTTPS client of the realprog tests: COUNT sequential GET requests, each on
a new TLS connection (no session reuse, so every one is a full handshake and
the server signs once), to 127.0.0.1 only. Prints one transcript line per
response, "python <TLS version> <status> <sha256 of body>", and exits 1 if a
request fails or times out (10 s per request)."""
import argparse
import hashlib
import socket
import ssl
import sys


def one_request(ctx, args):
    with socket.create_connection((args.host, args.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=args.sni) as tls:
            request = (f"GET {args.path} HTTP/1.1\r\nHost: {args.sni}\r\n"
                       "Connection: close\r\n\r\n")
            tls.sendall(request.encode())
            data = bytearray()
            while True:
                chunk = tls.recv(65536)
                if not chunk:
                    break
                data += chunk
            version = tls.version()
    head, sep, body = bytes(data).partition(b"\r\n\r\n")
    if not sep:
        raise ValueError(f"no HTTP header end in {len(data)} bytes")
    lines = head.split(b"\r\n")
    status = lines[0].split()[1].decode()
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and int(value) != len(body):
            raise ValueError(f"content-length {int(value)}, body {len(body)} bytes")
    return f"python {version} {status} {hashlib.sha256(body).hexdigest()}"


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--sni", default="localhost")
    p.add_argument("--cafile", required=True)
    p.add_argument("--path", default="/index.html")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--tls", choices=["1.2", "1.3"], default="1.3")
    args = p.parse_args()
    if args.host != "127.0.0.1":
        sys.exit("client.py: loopback only")

    ctx = ssl.create_default_context(cafile=args.cafile)
    version = ssl.TLSVersion.TLSv1_2 if args.tls == "1.2" else ssl.TLSVersion.TLSv1_3
    ctx.minimum_version = ctx.maximum_version = version
    for i in range(args.count):
        try:
            print(one_request(ctx, args), flush=True)
        except (OSError, ValueError, IndexError) as e:
            print(f"client.py: request {i + 1} of {args.count}: {e!r}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
