#!/usr/bin/env python3
"""What an idle connection costs a proxy: open N connections that each make one request, read
the answer and then wait, and compare the proxy's resident memory (VmRSS) before and after.

    benches/load/idle.py --pid PID --port PORT [--proto http1|https|h2|h2c|ws] [--count 5000]
                         [--host HOST]

Used by run.py and tls.py (`--memory`); alone it measures any running proxy. Protocols:
  http1  HTTP/1.1 keep-alive          https  HTTP/1.1 over TLS (no certificate check)
  h2     HTTP/2 over TLS (ALPN h2)    h2c    HTTP/2 with prior knowledge, plain
  ws     a WebSocket upgrade (101), then nothing sent either way

The first 200 connections warm the proxy up (allocator pools, caches) and are closed before the
baseline is read, so the figure is what each further connection keeps.
"""
import argparse
import os
import re
import resource
import socket
import ssl
import time

WARMUP = 200


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _tls(sock, alpn):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols([alpn])
    return ctx.wrap_socket(sock, server_hostname="bench.test")


def _read_http1(sock, upgrade=False):
    """Reads one HTTP/1.1 answer (Content-Length or no body; a 101 ends at its head)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the answer")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if upgrade:
        if status != 101:
            raise ConnectionError(f"upgrade answered {status}")
        return
    m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
    length = int(m.group(1)) if m else 0
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed in the body")
        body += chunk


def _h2_request(sock, host):
    import h2.config
    import h2.connection
    import h2.events

    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "GET"), (":path", "/"), (":scheme", "https"), (":authority", host)], end_stream=True)
    sock.sendall(conn.data_to_send())
    while True:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed before the answer")
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.StreamEnded) and event.stream_id == 1:
                sock.sendall(conn.data_to_send())
                return conn
        sock.sendall(conn.data_to_send())


def open_one(port, proto, host):
    """One connection that made its request and read the answer."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    if proto in ("https", "h2"):
        sock = _tls(sock, "h2" if proto == "h2" else "http/1.1")
    if proto in ("h2", "h2c"):
        return (sock, _h2_request(sock, host))
    if proto == "ws":
        sock.sendall(
            f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        _read_http1(sock, upgrade=True)
        return sock
    sock.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    _read_http1(sock)
    return sock


def measure(pid, port, proto="http1", count=5000, host="bench.test"):
    """(RSS before in KiB, RSS with `count` idle connections in KiB, bytes per connection)."""
    raise_fd_limit()
    warm = [open_one(port, proto, host) for _ in range(WARMUP)]
    for s in warm:
        (s[0] if isinstance(s, tuple) else s).close()
    time.sleep(0.5)
    before = rss_kb(pid)
    held = [open_one(port, proto, host) for _ in range(count)]
    time.sleep(0.5)  # the proxy's last answers written and its tasks parked
    after = rss_kb(pid)
    for s in held:
        (s[0] if isinstance(s, tuple) else s).close()
    return before, after, (after - before) * 1024 / count


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--proto", default="http1", choices=["http1", "https", "h2", "h2c", "ws"])
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--host", default="bench.test")
    args = ap.parse_args()
    before, after, per = measure(args.pid, args.port, args.proto, args.count, args.host)
    print(f"{args.proto}: RSS {before / 1024:.1f} -> {after / 1024:.1f} MiB, {per / 1024:.2f} KiB per idle connection")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
