#!/usr/bin/env python3
"""A large config, measured: 5,000 routes over 2,500 hostnames (and one without), 1,000
clusters of 10 backends (10,000 backends over 10 nginx servers), TCP health checks on all.

    benches/load/large.py [--interval 5] [--idle 20] [--duration 5]

Reports: `tether -t` wall time (median of 3), time from start to serving (listener accepting
and /healthz 200), RSS at rest, the CPU the health probes of 10,000 backends take while nothing
else runs (and how they spread over the interval: the busiest tenth of it), and the throughput
of the route found last in a 5,001-route table against a config of the same clusters (and
probes) with that one route, side by side. tests/scale.rs checks the same shape routes right and reloads under
load without a failed request.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as base  # noqa: E402

HOSTS, CLUSTERS, MEMBERS = 2500, 1000, 10
PORT, ADMIN, SMALL_PORT, SMALL_ADMIN = 19400, 19499, 19401, 19498


def config(name, port, admin, interval, large=True):
    """The large config, or (`large=False`) the same clusters and probes with one route, to
    compare the cost of finding a route in 5,001 with."""
    members = "".join(
        f"      - {{id: b{i}, address: 127.0.0.1:{p}}}\n" for i, p in enumerate(base.BACKEND_PORTS)
    )
    health = f"    health_check: {{type: tcp, interval: {interval}s}}\n"
    y = base.tether_head(name, admin) + f"listeners:\n  - name: public\n    address: 127.0.0.1:{port}\nclusters:\n"
    for c in range(CLUSTERS):
        y += f"  - name: c{c}\n{health}    backends:\n{members}"
    y += "routes:\n"
    for j in range(HOSTS if large else 0):
        hosts = f"[h{j}.bench.test" + (f", \"*.w{j}.bench.test\"" if j % 10 == 0 else "") + "]"
        y += f"  - {{name: api-{j}, hostnames: {hosts}, matches: [{{path: {{type: PathPrefix, value: /api}}}}], backends: [{{cluster: c{(2 * j) % CLUSTERS}}}]}}\n"
        y += f"  - {{name: web-{j}, hostnames: {hosts}, backends: [{{cluster: c{(2 * j + 1) % CLUSTERS}}}]}}\n"
    last = f"h{HOSTS - 1}.bench.test" if large else "h.bench.test"
    y += f"  - {{name: last, hostnames: [{last}], matches: [{{path: {{type: Exact, value: /last}}}}], backends: [{{cluster: c0}}],\n"
    y += "     session_persistence: {type: Cookie, name: _srv_id, absolute_timeout: 8h, idle_timeout: 30m}}\n"
    return base.write(f"{name}.yaml", y), last


def served(port, admin, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/healthz", timeout=1) as r:
                if r.status == 200:
                    base.wait_port(port, timeout=1)
                    return True
        except Exception:
            time.sleep(0.01)
    return False


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--interval", type=int, default=5, help="health check interval, seconds")
    ap.add_argument("--idle", type=int, default=20, help="seconds of probes alone, for their CPU")
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    args = ap.parse_args()
    os.makedirs(base.WORK, exist_ok=True)
    base.ensure_tools()
    base.BACKEND_PORTS = [19410 + i for i in range(MEMBERS)]
    procs = base.Procs()
    env = dict(os.environ, BENCH_SESSION_KEY="load-bench-key-not-a-secret-0123456789", RUST_LOG="warn")
    tether = base.TETHER
    try:
        base.start_nginx(procs)
        path, last = config("large", PORT, ADMIN, args.interval)
        small, small_host = config("small", SMALL_PORT, SMALL_ADMIN, args.interval, large=False)
        size = os.path.getsize(path)
        checks = []
        for _ in range(3):
            t0 = time.monotonic()
            subprocess.run([tether, "-t", "-c", path], env=env, check=True, capture_output=True)
            checks.append(time.monotonic() - t0)
        print(f"config: {HOSTS * 2 + 1} routes, {HOSTS} hostnames, {CLUSTERS} clusters, {CLUSTERS * MEMBERS} backends, {size / 1e6:.1f} MB of YAML")
        print(f"tether -t: {statistics.median(checks):.2f} s (median of 3)")
        t0 = time.monotonic()
        p = procs.start("tether-large", ["taskset", "-c", base.PROXY_CPU, tether, "-c", path], env=env)
        if not served(PORT, ADMIN):
            sys.exit("the large config did not start")
        print(f"start to serving: {time.monotonic() - t0:.2f} s")
        time.sleep(1)
        print(f"RSS at rest: {base.rss_kb(p.pid) / 1024:.1f} MiB")
        # The probes alone: CPU over the idle window, sampled by tenths of the interval.
        cpu0, t0 = base.cpu_seconds(p.pid), time.monotonic()
        samples = []
        while time.monotonic() - t0 < args.idle:
            c = base.cpu_seconds(p.pid)
            time.sleep(args.interval / 10)
            samples.append(base.cpu_seconds(p.pid) - c)
        cpu = base.cpu_seconds(p.pid) - cpu0
        probes = CLUSTERS * MEMBERS * args.idle / args.interval
        print(f"health probes: {CLUSTERS * MEMBERS} backends every {args.interval} s: {100 * cpu / args.idle:.1f}% of a core, {1e6 * cpu / probes:.0f} us per probe; "
              f"busiest tenth of an interval {100 * max(samples) / (args.interval / 10):.0f}% of a core (all at once would be ~{1000 * cpu / (args.idle / args.interval):.0f} ms in one tenth)")
        print(f"RSS after {args.idle} s of probes: {base.rss_kb(p.pid) / 1024:.1f} MiB")
        q = procs.start("tether-small", ["taskset", "-c", base.PROXY_CPU, tether, "-c", small], env=env)
        if not served(SMALL_PORT, SMALL_ADMIN):
            sys.exit("the small config did not start")
        rates = {"large": [], "small": []}
        for _ in range(3):
            for name, port, host in (("large", PORT, last), ("small", SMALL_PORT, small_host)):
                out = subprocess.run(["taskset", "-c", base.LOAD_CPU, "wrk", "-t1", "-c32", f"-d{args.duration}s", "-H", f"Host: {host}", f"http://127.0.0.1:{port}/last"], capture_output=True, text=True).stdout
                rates[name].append(float(out.split("Requests/sec:")[1].split()[0]))
        large_rps, small_rps = statistics.median(rates["large"]), statistics.median(rates["small"])
        print(f"route found last of 5,001 vs the only route: {large_rps:.0f} vs {small_rps:.0f} req/s, {large_rps / small_rps:.3f}x")
        del q
    finally:
        procs.stop()


if __name__ == "__main__":
    main()
