#!/usr/bin/env python3
"""Sticky throughput with a cluster of 100 discovered backends that changes every second,
against the same 100 backends listed statically, side by side in one tether process.

One nginx listens on every loopback address (port 19090) and answers with the address it was
reached at, so 100 addresses are 100 backends. dnsmasq answers `bench.test` with 100 of them;
every second the last 10 swap between two sets (a SIGHUP re-reads the hosts file), while the
90 others stay: wrk's sessions are pinned to those, so every request stays a routed sticky
request (wrk never takes a new cookie). tether has two listeners: `static` (the 100 addresses
listed, 127.0.2.1-100) and `discovered` (interval 1s). Both pinned to CPU 0, wrk and nginx to
CPU 1; rounds interleaved.

    benches/load/discovery.py [--duration 10] [--rounds 3]

Reports the median requests/s of each and the ratio discovered/static (of the medians and per
round), the discovery rounds seen (tether's log) and errors. Installs nginx, wrk and dnsmasq
when missing.
"""
import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as base  # noqa: E402  (processes, wrk, CPU pinning)

NGINX_PORT = 19090
DNS_PORT = 19053
PORTS = {"static": 19110, "discovered": 19111}
ADMIN = 19199
STABLE = [f"127.0.2.{i}" for i in range(1, 91)]
SWAP = ([f"127.0.2.{i}" for i in range(91, 101)], [f"127.0.2.{i}" for i in range(101, 111)])


def ensure_tools():
    base.ensure_tools()
    if not shutil.which("dnsmasq") and not os.path.exists("/usr/sbin/dnsmasq"):
        sudo = "" if os.geteuid() == 0 else "sudo "
        base.sh(f"{sudo}apt-get install -y -qq dnsmasq-base >/dev/null")


def write_hosts(swap):
    base.write("hosts", "".join(f"{ip} bench.test\n" for ip in STABLE + SWAP[swap]))


def start(procs):
    nginx_conf = base.write("nginx-discovery.conf", f"""
worker_processes 1;
daemon off;
pid {base.WORK}/nginx-discovery.pid;
error_log {base.WORK}/nginx-discovery-error.log warn;
events {{ worker_connections 10240; }}
http {{
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  server {{ listen {NGINX_PORT}; access_log off; location / {{ return 200 '$server_addr\\n'; }} }}
}}
""")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    procs.start("nginx", [nginx, "-c", nginx_conf, "-p", base.WORK], cpu=base.LOAD_CPU)
    write_hosts(0)
    dnsmasq = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    dns = procs.start("dnsmasq", [dnsmasq, "--keep-in-foreground", "--no-resolv", "--no-hosts",
                                  "--bind-interfaces", "--listen-address=127.0.0.1", "--pid-file=",
                                  "--user=root", "--local-ttl=0", "--log-facility=-",
                                  f"--port={DNS_PORT}", f"--addn-hosts={base.WORK}/hosts"], cpu=base.LOAD_CPU)
    listed = "\n".join(f"      - {ip}:{NGINX_PORT}" for ip in STABLE + SWAP[0])
    session = "session_persistence: {type: Cookie, name: _srv_id, absolute_timeout: 8h, idle_timeout: 30m}"
    conf = base.write("tether-discovery.yaml", base.tether_head("tether-discovery", ADMIN) + f"""listeners:
  - {{name: static, address: 127.0.0.1:{PORTS['static']}}}
  - {{name: discovered, address: 127.0.0.1:{PORTS['discovered']}}}
clusters:
  - name: static
    preserve_header_case: false
    backends:
{listed}
  - name: discovered
    preserve_header_case: false
    discovery: {{type: dns, name: bench.test, port: {NGINX_PORT}, interval: 1s, nameservers: ["127.0.0.1:{DNS_PORT}"]}}
routes:
  - {{name: static, listeners: [static], backends: [{{cluster: static}}], {session}}}
  - {{name: discovered, listeners: [discovered], backends: [{{cluster: discovered}}], {session}}}
""")
    env = dict(os.environ, BENCH_SESSION_KEY="load-bench-key-not-a-secret-0123456789",
               RUST_LOG="warn,tether::cluster::discovery=info")
    env.setdefault("MIMALLOC_ARENA_EAGER_COMMIT", "0")
    procs.start("tether", [base.TETHER, "-c", conf], env=env, cpu=base.PROXY_CPU)
    for port in PORTS.values():
        base.wait_port(port)
    return dns


def cookies(port):
    """Four session cookies pinned to stable backends."""
    found = {}
    for _ in range(400):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
            backend = r.read().decode().strip()
            if backend in STABLE and backend not in found:
                found[backend] = r.headers.get("Set-Cookie").split(";")[0]
        if len(found) == base.WRK_THREADS:
            return sorted(found.values())
    raise RuntimeError(f"only {len(found)} sessions on stable backends")


def churn(dns, stop):
    """Every second, the last 10 addresses swap sets."""
    swap = 0
    while not stop.is_set():
        swap = 1 - swap
        write_hosts(swap)
        dns.send_signal(signal.SIGHUP)
        stop.wait(1.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=64)
    args = ap.parse_args()
    os.makedirs(base.WORK, exist_ok=True)
    ensure_tools()
    procs = base.Procs()
    stop = threading.Event()
    try:
        dns = start(procs)
        # Wait for the discovered cluster to be probed.
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{PORTS['discovered']}/", timeout=2)
                break
            except Exception:
                time.sleep(0.2)
        jars = {name: cookies(port) for name, port in PORTS.items()}
        churner = threading.Thread(target=churn, args=(dns, stop), daemon=True)
        churner.start()
        results = {name: [] for name in PORTS}
        for r in range(1, args.rounds + 1):
            for name, port in PORTS.items():
                res = base.wrk(port, args.duration, args.connections, jars[name])
                results[name].append(res)
                print(f"round {r} {name:10} {res['rps']:9.0f} req/s  p99 {res['p99']:.2f} ms  errors {res['errors']}", flush=True)
        stop.set()
        med = {n: statistics.median(x["rps"] for x in v) for n, v in results.items()}
        per_round = [d["rps"] / s["rps"] for d, s in zip(results["discovered"], results["static"])]
        print(f"\nstatic      {med['static']:9.0f} req/s (median)")
        print(f"discovered  {med['discovered']:9.0f} req/s (median), 100 backends, 10 changing every second")
        print(f"ratio discovered/static {med['discovered'] / med['static']:.3f}x "
              f"(per round median {statistics.median(per_round):.3f}x, {min(per_round):.3f}-{max(per_round):.3f})")
        with open(os.path.join(base.WORK, "tether.log")) as f:
            log = f.read()
        print(f"discovery rounds that changed the set: {log.count('discovery found')}; "
              f"errors: {log.count('discovery of')}")
        with urllib.request.urlopen(f"http://127.0.0.1:{ADMIN}/metrics", timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(("tether_session_routed_total", "tether_session_failed_open_total",
                                    "tether_session_created_total", "tether_discovery")):
                    print(line)
    finally:
        stop.set()
        procs.stop()


if __name__ == "__main__":
    main()
