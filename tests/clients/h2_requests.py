#!/usr/bin/env python3
"""Sends HTTP/2 requests on one connection, all streams open at once, and prints the responses.

Usage: h2_requests.py HOST PORT [--tls CA_FILE SNI] < spec.json
spec: {"authority": "shop.test:8443", "requests": [{"path": "/", "headers": [["cookie", "a=1"]]}]}
Prints a JSON list, in request order: {"status", "headers": [[name, value]], "body"}; a stream
the server reset has "reset": error code instead.
"""
import json
import socket
import ssl
import sys

import h2.config
import h2.connection
import h2.events


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    spec = json.load(sys.stdin)
    sock = socket.create_connection((host, port), timeout=15)
    scheme = "http"
    if len(sys.argv) > 3 and sys.argv[3] == "--tls":
        ctx = ssl.create_default_context(cafile=sys.argv[4])
        ctx.set_alpn_protocols(["h2"])
        sock = ctx.wrap_socket(sock, server_hostname=sys.argv[5])
        if sock.selected_alpn_protocol() != "h2":
            sys.exit("the server did not choose h2")
        scheme = "https"
    # Headers sent as given (no normalisation): cookie crumbs stay separate fields.
    config = h2.config.H2Configuration(
        client_side=True, header_encoding="utf-8", normalize_outbound_headers=False
    )
    conn = h2.connection.H2Connection(config=config)
    conn.initiate_connection()
    conn.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1000})
    sock.sendall(conn.data_to_send())
    order = []
    results = {}
    for req in spec["requests"]:
        stream = conn.get_next_available_stream_id()
        headers = [
            (":method", req.get("method", "GET")),
            (":scheme", scheme),
            (":authority", spec["authority"]),
            (":path", req["path"]),
        ] + [tuple(h) for h in req.get("headers", [])]
        conn.send_headers(stream, headers, end_stream=True)
        order.append(stream)
        results[stream] = {"status": 0, "headers": [], "body": ""}
    sock.sendall(conn.data_to_send())
    open_streams = set(order)
    while open_streams:
        data = sock.recv(65536)
        if not data:
            break
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                r = results[event.stream_id]
                for name, value in event.headers:
                    if name == ":status":
                        r["status"] = int(value)
                    else:
                        r["headers"].append([name, value])
            elif isinstance(event, h2.events.DataReceived):
                results[event.stream_id]["body"] += event.data.decode("utf-8", "replace")
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                open_streams.discard(event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                results[event.stream_id]["reset"] = int(event.error_code)
                open_streams.discard(event.stream_id)
            elif isinstance(event, h2.events.ConnectionTerminated):
                open_streams.clear()
        sock.sendall(conn.data_to_send())
    conn.close_connection()
    try:
        sock.sendall(conn.data_to_send())
    except OSError:
        pass
    print(json.dumps([results[s] for s in order]))


if __name__ == "__main__":
    main()
