#!/usr/bin/env python3
"""WebSocket echo through HAProxy, plain Pingora and tether, side by side: a WebSocket echo
backend (examples/ws_bench.rs, on the load CPU), each proxy on CPU 0 as in run.py, and 64
upgraded connections each sending a 32-byte message and waiting for its echo in turn.

    benches/load/websocket.py [--duration 10] [--rounds 3] [--memory]

Reports messages per second, the proxy's CPU time per message, and the ratios of tether to
each other proxy; `--memory`: RSS with 2,000 idle upgraded connections (idle.py).
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as base  # noqa: E402

PORTS = {"haproxy": 19300, "pingora": 19301, "tether": 19302}
BACKEND, ADMIN = 19310, 19399
WS_BENCH = f"{base.ROOT}/target/release/examples/ws_bench"


def start_all(procs):
    procs.start("ws-backend", [WS_BENCH, "server", f"127.0.0.1:{BACKEND}"], cpu=base.LOAD_CPU)
    base.wait_port(BACKEND)
    base.BACKEND_PORTS = [BACKEND]
    base.start_haproxy(procs, "haproxy-ws", PORTS["haproxy"])
    conf = base.write("pingora-ws.yaml", f"version: 1\nthreads: 1\npid_file: {base.WORK}/pingora-ws.pid\nupgrade_sock: {base.WORK}/pingora-ws.sock\ngrace_period_seconds: 0\ngraceful_shutdown_timeout_seconds: 0\n")
    env = dict(os.environ, PLAIN_LB_LISTEN=f"127.0.0.1:{PORTS['pingora']}", PLAIN_LB_BACKENDS=f"127.0.0.1:{BACKEND}", RUST_LOG="warn")
    procs.start("pingora", [f"{base.ROOT}/target/release/examples/plain_lb", "-c", conf], env=env, cpu=base.PROXY_CPU)
    tether_conf = base.write("tether-ws.yaml", base.tether_head("tether-ws", ADMIN) + f"""services:
  - name: ws
    listen: 127.0.0.1:{PORTS['tether']}
    preserve_header_case: false
    backends: [127.0.0.1:{BACKEND}]
    session_persistence: {{type: Cookie, name: _srv_id, absolute_timeout: 8h, idle_timeout: 30m}}
""")
    env = dict(os.environ, BENCH_SESSION_KEY="load-bench-key-not-a-secret-0123456789", RUST_LOG="warn")
    env.setdefault("MIMALLOC_ARENA_EAGER_COMMIT", "0")
    procs.start("tether", [base.TETHER, "-c", tether_conf], env=env, cpu=base.PROXY_CPU)
    for port in PORTS.values():
        base.wait_port(port)
    time.sleep(1.5)


def drive(port, duration):
    out = subprocess.run(["taskset", "-c", base.LOAD_CPU, WS_BENCH, "client", f"127.0.0.1:{port}", str(duration), "64"],
                         capture_output=True, text=True, timeout=duration + 60).stdout.split()
    return {"rps": float(out[1]), "errors": int(out[3])}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--memory", action="store_true")
    args = ap.parse_args()
    os.makedirs(base.WORK, exist_ok=True)
    base.ensure_tools()
    base.sh("cargo build --release --locked --example ws_bench", cwd=base.ROOT)
    procs = base.Procs()
    try:
        start_all(procs)
        results = {}
        for r in range(args.rounds):
            for name in base.round_order(PORTS, r):
                pid = base.pid_of(procs, name)
                cpu0, wall0 = base.cpu_seconds(pid), time.monotonic()
                res = drive(PORTS[name], args.duration)
                cpu, wall = base.cpu_seconds(pid) - cpu0, time.monotonic() - wall0
                res["us"] = 1e6 * cpu / max(1.0, res["rps"] * wall)
                results.setdefault(name, []).append(res)
                print(f"round {r + 1} {name:8} {res['rps']:10.0f} messages/s  {res['us']:5.1f} us cpu/message  errors {res['errors']}", flush=True)
        if args.rounds:
            med = {n: statistics.median(x["rps"] for x in runs) for n, runs in results.items()}
            cost = {n: statistics.median(x["us"] for x in runs) for n, runs in results.items()}
            print(f"\nMedians of {args.rounds} rounds, {args.duration} s each, 64 connections, 32-byte messages")
            for name in PORTS:
                print(f"  {name:8} {med[name]:10.0f} messages/s  {cost[name]:5.1f} us cpu/message")
            for other in ("haproxy", "pingora"):
                per_round = [a["rps"] / b["rps"] for a, b in zip(results["tether"], results[other])]
                print(f"  tether vs {other:8} {med['tether'] / med[other]:.3f}x (per round {statistics.median(per_round):.3f}x, "
                      f"{min(per_round):.3f}-{max(per_round):.3f})   efficiency {cost[other] / cost['tether']:.3f}x")
        if args.memory:
            import idle
            print("\nMemory (VmRSS): at rest, then with 2,000 idle upgraded WebSocket connections")
            for name in PORTS:
                before, after, per = idle.measure(base.pid_of(procs, name), PORTS[name], "ws", 2000)
                print(f"  {name:8} {before / 1024:8.1f} -> {after / 1024:8.1f} MiB, {per / 1024:6.2f} KiB per connection")
    finally:
        procs.stop()


if __name__ == "__main__":
    main()
