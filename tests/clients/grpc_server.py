#!/usr/bin/env python3
"""A gRPC server without generated code (bytes in, bytes out), naming itself in every answer.

Usage: grpc_server.py NAME [--tls CERT KEY]
Prints its port, then serves until killed:
  /tether.Test/Unary   -> b"NAME"
  /tether.Test/Stream  -> int(request) messages b"NAME:i" (server streaming)
  /tether.Test/Echo    -> the request's metadata as "key=value" lines (cookie, x-forwarded-*)
"""
import sys
from concurrent import futures

import grpc


def main():
    name = sys.argv[1]

    def unary(request, context):
        return name.encode()

    def stream(request, context):
        for i in range(int(request or b"3")):
            yield f"{name}:{i}".encode()

    def echo(request, context):
        lines = [f"{k}={v}" for k, v in context.invocation_metadata()]
        return "\n".join(lines).encode()

    handler = grpc.method_handlers_generic_handler(
        "tether.Test",
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "Stream": grpc.unary_stream_rpc_method_handler(stream),
            "Echo": grpc.unary_unary_rpc_method_handler(echo),
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers((handler,))
    if len(sys.argv) > 2 and sys.argv[2] == "--tls":
        with open(sys.argv[3], "rb") as c, open(sys.argv[4], "rb") as k:
            creds = grpc.ssl_server_credentials([(k.read(), c.read())])
        port = server.add_secure_port("127.0.0.1:0", creds)
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
