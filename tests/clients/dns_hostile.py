#!/usr/bin/env python3
"""A hostile DNS server on UDP and TCP loopback for the discovery tests: every query is answered
with a CNAME of the name to itself (a CNAME loop). Prints its port, serves until killed."""
import socket
import struct
import threading


def answer(query):
    """The reply to one query: its question, and one CNAME record pointing at the name itself."""
    qid = query[:2]
    end = 12
    while query[end] != 0:
        end += 1 + query[end]
    question = query[12:end + 5]
    # Answer: the name (pointer to offset 12), CNAME, IN, TTL 0, and the same name as data.
    record = b"\xc0\x0c" + struct.pack(">HHIH", 5, 1, 0, 2) + b"\xc0\x0c"
    return qid + b"\x81\x80" + struct.pack(">HHHH", 1, 1, 0, 0) + question + record


def serve_udp(sock):
    while True:
        data, peer = sock.recvfrom(4096)
        try:
            sock.sendto(answer(data), peer)
        except (IndexError, OSError):
            pass


def serve_tcp(listener):
    while True:
        conn, _ = listener.accept()
        try:
            size = struct.unpack(">H", conn.recv(2))[0]
            reply = answer(conn.recv(size))
            conn.sendall(struct.pack(">H", len(reply)) + reply)
        except (IndexError, OSError, struct.error):
            pass
        conn.close()


udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("127.0.0.1", 0))
port = udp.getsockname()[1]
tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind(("127.0.0.1", port))
tcp.listen(16)
threading.Thread(target=serve_tcp, args=(tcp,), daemon=True).start()
print(port, flush=True)
serve_udp(udp)
