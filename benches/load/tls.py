#!/usr/bin/env python3
"""Side-by-side TLS load benchmark: HAProxy (TLS, `cookie insert`), plain Pingora over TLS
(Pingora's own TLS listener, round robin) and tether (TLS listener, cookie sessions), with the
same certificate (ECDSA P-256), in front of the 4 nginx backends of run.py.

Modes (each proxy pinned to CPU 0, clients and nginx to CPU 1, runs interleaved and repeated):
  https      wrk over TLS, HTTP/1.1 keep-alive, every request with a valid session cookie
  h2         h2load over TLS, HTTP/2: 4 clients x 16 connections x 10 streams, each client with
             the session cookie of one backend
  handshake  wrk over TLS with `Connection: close`: a full TLS 1.3 handshake per request
             (handshakes per second), with a session cookie
  h2c        h2load as for h2, over plain TCP with prior knowledge (HAProxy `proto h2`, plain
             Pingora with `h2c`, tether's listener with `http2: true`)

    benches/load/tls.py [--duration 10] [--rounds 3] [--modes https,h2,handshake,h2c] [--memory]
                        [--paired]

`--paired`: tether and plain Pingora driven at the same time, each by its own clients, sharing
the proxy CPU: both see the same machine at the same moment, so their CPU per request compares
far more steadily than in runs one after the other (per round spread ~0.04 against ~0.4 on the
shared 2-core machine). Reports tether's efficiency (Pingora's CPU per request over tether's).

`--memory` (`--rounds 0` for it alone): each proxy's RSS at rest and with 5,000 idle connections
that each made one request (idle.py): h2c, HTTPS (HTTP/1.1) and HTTP/2 over TLS. (HAProxy serves
h2c and TLS in one process, so its h2c row comes first, from a process at rest.)

Reports medians and the ratios tether/HAProxy and tether/Pingora (of the medians, and the median
of each round's ratio). Installs haproxy, nginx, wrk and h2load when missing.
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
import ssl

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as base  # noqa: E402  (the shared parts: backends, processes, wrk)

PORTS = {"haproxy": 19200, "pingora": 19201, "tether": 19202}
H2C_PORT = 19203
# The plain HTTP/2 (h2c) endpoint of each proxy, and the process that serves it.
H2C = {"haproxy": (19204, "haproxy"), "pingora": (19205, "pingora-h2c"), "tether": (H2C_PORT, "tether")}
PROXIES = tuple(PORTS)
ADMIN = 19299
# The h2 modes keep 640 requests in flight over 4 backends; Pingora's default upstream pool (128
# idle connections, one LRU over every backend) would close and reopen connections all run long,
# and more so for tether, whose sticky clients load one backend each while plain Pingora's round
# robin spreads every client evenly. HAProxy's pool has no such limit: both Pingora-based proxies
# get room for every connection in flight, so the runs compare proxies, not pool thrash.
POOL = "upstream_keepalive_pool_size: 1024\n"


def ensure_tools():
    base.ensure_tools()
    if not shutil.which("h2load"):
        sudo = "" if os.geteuid() == 0 else "sudo "
        base.sh(f"{sudo}apt-get install -y -qq nghttp2-client >/dev/null")


def make_certificate():
    """One ECDSA P-256 pair for every proxy (HAProxy takes it as one file)."""
    cert, key = os.path.join(base.WORK, "bench.pem"), os.path.join(base.WORK, "bench.key")
    base.sh(
        f"openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 "
        f"-keyout {key} -out {cert} -subj /CN=bench.test "
        f"-addext subjectAltName=DNS:bench.test,IP:127.0.0.1 2>/dev/null"
    )
    both = os.path.join(base.WORK, "bench-haproxy.pem")
    with open(both, "w") as f:
        f.write(open(cert).read() + open(key).read())
    return cert, key, both


def start_all(procs):
    base.start_nginx(procs)
    cert, key, both = make_certificate()
    base.start_haproxy(procs, "haproxy-tls", PORTS["haproxy"],
                       bind_extra=f" ssl crt {both} alpn h2,http/1.1\n  bind 127.0.0.1:{H2C['haproxy'][0]} proto h2",
                       global_extra="  ssl-default-bind-options ssl-min-ver TLSv1.2\n",
                       cookie_extra=" secure")

    backends = ",".join(f"127.0.0.1:{p}" for p in base.BACKEND_PORTS)
    pingora_conf = base.write("pingora-tls.yaml", f"version: 1\nthreads: 1\npid_file: {base.WORK}/pingora-tls.pid\nupgrade_sock: {base.WORK}/pingora-tls.sock\ngrace_period_seconds: 0\ngraceful_shutdown_timeout_seconds: 0\n{POOL}")
    env = dict(os.environ, PLAIN_LB_LISTEN=f"127.0.0.1:{PORTS['pingora']}", PLAIN_LB_BACKENDS=backends,
               PLAIN_LB_TLS_CERT=cert, PLAIN_LB_TLS_KEY=key, RUST_LOG="warn")
    procs.start("pingora", [f"{base.ROOT}/target/release/examples/plain_lb", "-c", pingora_conf], env=env, cpu=base.PROXY_CPU)
    h2c_conf = base.write("pingora-h2c.yaml", f"version: 1\nthreads: 1\npid_file: {base.WORK}/pingora-h2c.pid\nupgrade_sock: {base.WORK}/pingora-h2c.sock\ngrace_period_seconds: 0\ngraceful_shutdown_timeout_seconds: 0\n{POOL}")
    env = dict(os.environ, PLAIN_LB_LISTEN=f"127.0.0.1:{H2C['pingora'][0]}", PLAIN_LB_BACKENDS=backends, PLAIN_LB_H2C="1", RUST_LOG="warn")
    procs.start("pingora-h2c", [f"{base.ROOT}/target/release/examples/plain_lb", "-c", h2c_conf], env=env, cpu=base.PROXY_CPU)

    backend_lines = "\n".join(f"      - {{address: 127.0.0.1:{p}, id: app-{i}}}" for i, p in enumerate(base.BACKEND_PORTS, 1))
    tether_conf = base.write("tether-tls.yaml", base.tether_head("tether-tls", ADMIN, POOL) + f"""listeners:
  - name: bench
    address: 127.0.0.1:{PORTS['tether']}
    tls:
      certificates: [{{cert_file: {cert}, key_file: {key}}}]
  - name: h2c
    address: 127.0.0.1:{H2C_PORT}
    http2: true
clusters:
  - name: bench
    preserve_header_case: false
    backends:
{backend_lines}
routes:
  - name: bench
    backends: [{{cluster: bench}}]
    session_persistence: {{type: Cookie, name: _srv_id, absolute_timeout: 8h, idle_timeout: 30m}}
""")
    env = dict(os.environ, BENCH_SESSION_KEY="load-bench-key-not-a-secret-0123456789", RUST_LOG="warn")
    env.setdefault("MIMALLOC_ARENA_EAGER_COMMIT", "0")
    procs.start("tether", [base.TETHER, "-c", tether_conf], env=env, cpu=base.PROXY_CPU)
    for port in [*PORTS.values(), *(p for p, _ in H2C.values())]:
        base.wait_port(port)
    time.sleep(1.5)


def https_get(port):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(f"https://127.0.0.1:{port}/", timeout=5, context=ctx) as r:
        return r.read().decode().strip(), r.headers


def cookies():
    """A valid session cookie per backend for tether (HAProxy's are SRV=s1..s4)."""
    tether = {}
    for _ in range(40):
        body, headers = https_get(PORTS["tether"])
        tether.setdefault(body, headers.get("Set-Cookie").split(";")[0])
        if len(tether) == len(base.BACKEND_PORTS):
            break
    out = {"haproxy": [f"SRV=s{i}" for i in range(1, len(base.BACKEND_PORTS) + 1)], "tether": sorted(tether.values())}
    out["pingora"] = out["tether"]
    return out


def wrk_tls(port, duration, cookies, close):
    """wrk over TLS (HTTP/1.1): keep-alive, or a new connection per request when `close`."""
    argv = ["taskset", "-c", base.LOAD_CPU, "wrk", f"-t{base.WRK_THREADS}", "-c64", f"-d{duration}s", "--latency", "--timeout", "5s",
            "-s", base.wrk_script(cookies)]
    if close:
        argv += ["-H", "Connection: close"]
    argv.append(f"https://127.0.0.1:{port}/")
    out = subprocess.run(argv, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = 0
    for pattern in (r"Non-2xx or 3xx responses:\s+(\d+)", r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"):
        m = re.search(pattern, out)
        if m:
            errors += sum(int(g) for g in m.groups())
    return {"rps": rps, "errors": errors}


def h2load(port, duration, cookies, scheme="https"):
    """4 h2load clients at once, one per backend's cookie, 16 connections x 10 streams each."""
    procs = [
        subprocess.Popen(["taskset", "-c", base.LOAD_CPU, "h2load", "-D", str(duration), "-c", "16", "-m", "10",
                          "-H", f"cookie: {c}", f"{scheme}://127.0.0.1:{port}/"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for c in cookies
    ]
    rps, errors = 0.0, 0
    for p in procs:
        out = p.communicate()[0]
        rps += float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))
        m = re.search(r"requests: \d+ total, \d+ started, \d+ done, \d+ succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", out)
        errors += sum(int(g) for g in m.groups())
        s = re.search(r"status codes: \d+ 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
        errors += sum(int(g) for g in s.groups())
    return {"rps": rps, "errors": errors}


def drive(mode, name, duration, cookies):
    """One run of `mode` against proxy `name`."""
    if mode == "h2c":
        return h2load(H2C[name][0], duration, cookies, scheme="http")
    if mode == "h2":
        return h2load(PORTS[name], duration, cookies)
    return wrk_tls(PORTS[name], duration, cookies, close=(mode == "handshake"))


def memory(procs):
    import idle
    print("\nMemory (VmRSS): at rest, then with 5,000 idle connections that each made one request")
    print(f"{'protocol':9} {'proxy':8} {'rest MiB':>9} {'5k idle MiB':>12} {'KiB/conn':>9}")
    # h2c first: a proxy's allocator keeps what earlier connections freed, which would hide the
    # cost of the ones after.
    runs = [("h2c", name, H2C[name][0], H2C[name][1]) for name in PROXIES]
    runs += [(proto, name, PORTS[name], name) for proto in ("https", "h2") for name in PROXIES]
    rows = {}
    for proto, name, port, process in runs:
        before, after, per = idle.measure(base.pid_of(procs, process), port, proto, 5000)
        rows[(proto, name)] = after
        print(f"{proto:9} {name:8} {before / 1024:9.1f} {after / 1024:12.1f} {per / 1024:9.2f}")
    for proto in ("h2c", "https", "h2"):
        print(f"tether / haproxy RSS with 5k idle {proto} connections: {rows[(proto, 'tether')] / rows[(proto, 'haproxy')]:.2f}x")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--modes", default="https,h2,handshake")
    ap.add_argument("--memory", action="store_true", help="also RSS with 5,000 idle connections per protocol")
    ap.add_argument("--paired", action="store_true", help="tether and plain Pingora at once, instead of one after the other")
    args = ap.parse_args()
    os.makedirs(base.WORK, exist_ok=True)
    ensure_tools()
    procs = base.Procs()
    try:
        start_all(procs)
        modes = args.modes.split(",") if args.rounds else []
        if args.paired:
            base.paired(("pingora", "tether"), modes, args.rounds, args.duration, cookies,
                        lambda mode, name: base.pid_of(procs, H2C[name][1] if mode == "h2c" else name),
                        lambda mode, name, jar: drive(mode, name, args.duration, jar[name]))
            return
        results = {}
        for r in range(args.rounds):
            jar = cookies()
            for mode in modes:
                for name in base.round_order(PROXIES, r):
                    pid = base.pid_of(procs, H2C[name][1] if mode == "h2c" else name)
                    cpu_before, wall_before = base.cpu_seconds(pid), time.monotonic()
                    res = drive(mode, name, args.duration, jar[name])
                    cpu, wall = base.cpu_seconds(pid) - cpu_before, time.monotonic() - wall_before
                    res["cpu"] = 100 * cpu / wall
                    # The proxy's CPU time per request: steadier than throughput on a noisy machine.
                    res["us"] = 1e6 * cpu / (res["rps"] * args.duration)
                    results.setdefault((name, mode), []).append(res)
                    print(f"round {r + 1} {mode:9} {name:8} {res['rps']:10.0f} req/s  {res['us']:6.1f} us cpu/req  errors {res['errors']}  proxy cpu {res['cpu']:.0f}%", flush=True)
        print(f"\nMedians of {args.rounds} rounds, {args.duration} s each (handshake: one TLS handshake per request)")
        print(f"{'mode':10} {'proxy':8} {'req/s':>10} {'us cpu/req':>11} {'errors':>7} {'cpu %':>6}")
        med, cost = {}, {}
        for mode in modes:
            for name in PROXIES:
                runs = results[(name, mode)]
                med[(name, mode)] = statistics.median(x["rps"] for x in runs)
                cost[(name, mode)] = statistics.median(x["us"] for x in runs)
                cpu = statistics.median(x["cpu"] for x in runs)
                print(f"{mode:10} {name:8} {med[(name, mode)]:10.0f} {cost[(name, mode)]:11.1f} {sum(x['errors'] for x in runs):7d} {cpu:6.0f}")
        print("\nRatios tether / other: throughput of the medians (per round median, min-max), and")
        print("efficiency: the other's CPU time per request over tether's (above 1: tether does more with a core)")
        for mode in modes:
            for other in ("haproxy", "pingora"):
                per_round = [a["rps"] / b["rps"] for a, b in zip(results[("tether", mode)], results[(other, mode)])]
                print(f"  {mode:10} vs {other:8} {med[('tether', mode)] / med[(other, mode)]:.3f}x "
                      f"(per round {statistics.median(per_round):.3f}x, {min(per_round):.3f}-{max(per_round):.3f})"
                      f"   efficiency {cost[(other, mode)] / cost[('tether', mode)]:.3f}x")
        if args.memory:
            memory(procs)
        with urllib.request.urlopen(f"http://127.0.0.1:{ADMIN}/metrics", timeout=5) as r:
            text = r.read().decode()
        counts = {m.group(1): float(m.group(2)) for m in re.finditer(r'^tether_session_(\w+)_total\{route="bench"\} (\S+)', text, re.M)}
        print("tether sessions: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(counts.items())))
        hs = {m.group(1): float(m.group(2)) for m in re.finditer(r'^tether_tls_handshakes_total\{listener="bench",version="(\S+)"\} (\S+)', text, re.M)}
        print("tether handshakes: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(hs.items())))
    finally:
        procs.stop()


if __name__ == "__main__":
    main()
