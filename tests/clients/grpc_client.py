#!/usr/bin/env python3
"""Calls the test gRPC service through tether, keeping tether's session cookie like a browser.

Usage: grpc_client.py TARGET CALLS STREAM_LEN [--tls CA_FILE SNI]
Makes CALLS unary calls then one server-streaming call of STREAM_LEN messages; the first
`set-cookie` answered (name=value) is sent as `cookie` metadata on every later call.
Prints JSON: {"unary": [answers], "stream": [messages], "set_cookie": first set-cookie,
"echo": the metadata the server saw on a last call}.
"""
import json
import sys

import grpc


def main():
    target, calls, stream_len = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if len(sys.argv) > 4 and sys.argv[4] == "--tls":
        with open(sys.argv[5], "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        channel = grpc.secure_channel(
            target, creds, options=[("grpc.ssl_target_name_override", sys.argv[6])]
        )
    else:
        channel = grpc.insecure_channel(target)
    unary = channel.unary_unary("/tether.Test/Unary")
    stream = channel.unary_stream("/tether.Test/Stream")
    echo = channel.unary_unary("/tether.Test/Echo")
    cookie = None
    first_set_cookie = None
    answers = []

    def remember(metadata):
        nonlocal cookie, first_set_cookie
        for key, value in metadata:
            if key == "set-cookie" and first_set_cookie is None:
                first_set_cookie = value
                cookie = value.split(";")[0]

    def metadata():
        return [("cookie", cookie)] if cookie else []

    for _ in range(calls):
        answer, call = unary.with_call(b"", metadata=metadata(), timeout=10)
        remember(call.initial_metadata())
        answers.append(answer.decode())
    call = stream(stream_len.encode(), metadata=metadata(), timeout=10)
    messages = [m.decode() for m in call]
    remember(call.initial_metadata())
    seen = echo(b"", metadata=metadata(), timeout=10).decode()
    print(json.dumps({"unary": answers, "stream": messages, "set_cookie": first_set_cookie,
                      "echo": seen}))


if __name__ == "__main__":
    main()
