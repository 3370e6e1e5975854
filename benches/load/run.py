#!/usr/bin/env python3
"""Side-by-side load benchmark: HAProxy (cookie insert), a plain Pingora round-robin proxy,
tether (cookie sessions) and tether-rr (the same tether process, a service without sessions), in
front of 4 nginx backends, driven by wrk on loopback.

Each proxy runs one worker thread pinned to CPU 0 (taskset); wrk and nginx run on CPU 1. Two
modes: `sticky` (every request carries a valid session cookie) and `new` (no cookie: a new
session each). Runs are interleaved (the order rotates every round) and repeated; the table
shows medians and the ratios of tether to each other proxy from the same run.

    benches/load/run.py [--duration 10] [--rounds 3] [--connections 64] [--memory] [--routes 50]
                        [--paired]

`--paired`: plain Pingora and tether (or the --proxies given) driven at the same time, each by
its own wrk, sharing the proxy CPU: both see the same machine at the same moment, so their CPU
per request compares far more steadily than one run after another on a shared machine.

`--routes N`: tether's sticky service becomes a gateway of N routes over N/2 hostnames (a
`PathPrefix /static` route without sessions and a catch-all `/` route with cookie sessions per
host), and every request carries the last hostname and a path only the catch-all takes: the
route precedence finds last.

Installs haproxy, nginx and wrk from Debian when missing. Everything listens on 127.0.0.1.
"""
import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORK = os.path.join(ROOT, "target", "loadbench")
# The tether under test (TETHER_BIN: another build, e.g. an older commit's, to compare).
TETHER = os.environ.get("TETHER_BIN", os.path.join(ROOT, "target", "release", "tether"))
BACKEND_PORTS = [19081, 19082, 19083, 19084]
PORTS = {"haproxy": 19100, "pingora": 19101, "tether": 19102, "tether-rr": 19103}
# Proxies --proxies may name, in driving order. tether-rr is a second service of the same tether
# process without session persistence (round robin, X-Forwarded-*, timeouts and log alike): its
# ratio to tether is what stickiness itself costs.
PROXIES = ("haproxy", "pingora", "tether", "tether-rr")
TETHER_ADMIN = 19199
PROXY_CPU, LOAD_CPU = "0", "1"
# tether's worker threads (--tether-threads); the other proxies keep one.
TETHER_THREADS = 1
# The Host every request carries (--routes), or None.
ROUTE_HOST = None


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, **kw)


def ensure_tools():
    missing = [p for p, b in (("haproxy", "haproxy"), ("nginx", "nginx"), ("wrk", "wrk")) if not shutil.which(b) and not os.path.exists(f"/usr/sbin/{b}")]
    if missing:
        sudo = "" if os.geteuid() == 0 else "sudo "
        sh(f"{sudo}apt-get update -qq && DEBIAN_FRONTEND=noninteractive {sudo}apt-get install -y -qq {' '.join(missing)} >/dev/null")
    sh(f"{ROOT}/scripts/deps.sh")
    sh("cargo build --release --locked --bin tether --example plain_lb", cwd=ROOT)


def wait_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def http_get(port, headers=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/", headers=headers or {})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.status, r.headers


class Procs:
    def __init__(self):
        self.procs = []

    def start(self, name, argv, env=None, cpu=None):
        if cpu is not None:
            argv = ["taskset", "-c", cpu] + argv
        log = open(os.path.join(WORK, f"{name}.log"), "w")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.procs.append((name, p))
        return p

    def stop(self):
        for _, p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for _, p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()


def write(name, text):
    path = os.path.join(WORK, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def key_values(items):
    """`KEY=VALUE` command-line items as (key, value) pairs."""
    return [(k.strip(), v.strip()) for k, v in (kv.split("=", 1) for kv in items)]


def tether_head(name, admin, extra=""):
    """The top of a bench tether config: one thread, files named after `name`, no grace
    periods, the admin listener on `admin`, the bench session key (BENCH_SESSION_KEY)."""
    return f"""version: 1
threads: {TETHER_THREADS}
{extra}pid_file: {WORK}/{name}.pid
upgrade_sock: {WORK}/{name}.sock
grace_period_seconds: 0
graceful_shutdown_timeout_seconds: 0
admin:
  listen: 127.0.0.1:{admin}
session_keys:
  - id: bench
    secret_env: BENCH_SESSION_KEY
"""


def gateway_yaml(routes, backend_lines, service_extra):
    """The sticky tether service as a gateway of `routes` routes over routes/2 hostnames."""
    hosts = routes // 2
    y = f"""listeners:
  - {{name: bench, address: 127.0.0.1:{PORTS['tether']}}}
clusters:
  - name: bench
    backends:
{backend_lines}
{service_extra}routes:
"""
    for h in range(1, hosts + 1):
        y += f"""  - name: static-{h}
    listeners: [bench]
    hostnames: [h{h}.bench.test]
    matches: [{{path: {{type: PathPrefix, value: /static}}}}]
    backends: [{{cluster: bench}}]
  - name: app-{h}
    listeners: [bench]
    hostnames: [h{h}.bench.test]
    backends: [{{cluster: bench}}]
    session_persistence: {{type: Cookie, name: _srv_id, absolute_timeout: 8h, idle_timeout: 30m}}
"""
    return y


def start_nginx(procs):
    """The 4 nginx backends (one worker, on the load CPU), once they listen."""
    servers = "\n".join(
        f"  server {{ listen 127.0.0.1:{p}; access_log off; location / {{ return 200 'backend {i}\\n'; }} }}"
        for i, p in enumerate(BACKEND_PORTS, 1)
    )
    nginx_conf = write("nginx.conf", f"""
worker_processes 1;
daemon off;
pid {WORK}/nginx.pid;
error_log {WORK}/nginx-error.log warn;
events {{ worker_connections 10240; }}
http {{
  keepalive_requests 1000000;
  keepalive_timeout 300s;
{servers}
}}
""")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    procs.start("nginx", [nginx, "-c", nginx_conf, "-p", WORK], cpu=LOAD_CPU)
    # Backends first: a proxy's first health check must find them up.
    for port in BACKEND_PORTS:
        wait_port(port)


def start_haproxy(procs, name, port, bind_extra="", global_extra="", cookie_extra=""):
    """HAProxy (one thread, on the proxy CPU) on `port` in front of the nginx backends, with
    `cookie SRV insert` sessions; `bind_extra` (e.g. TLS), `global_extra` and `cookie_extra`
    are added to their lines."""
    servers = "\n".join(f"  server s{i} 127.0.0.1:{p} cookie s{i} check inter 5s" for i, p in enumerate(BACKEND_PORTS, 1))
    conf = write(f"{name}.cfg", f"""
global
  nbthread 1
  maxconn 9000
{global_extra}defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
frontend fe
  bind 127.0.0.1:{port}{bind_extra}
  default_backend be
backend be
  balance roundrobin
  cookie SRV insert indirect nocache maxidle 30m maxlife 8h{cookie_extra}
{servers}
""")
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    procs.start("haproxy", [haproxy, "-f", conf], cpu=PROXY_CPU)


def start_all(procs, tether_settings=(), tether_env=(), service_settings=(), routes=0):
    start_nginx(procs)
    start_haproxy(procs, "haproxy", PORTS["haproxy"])

    backends = ",".join(f"127.0.0.1:{p}" for p in BACKEND_PORTS)
    pingora_conf = write("pingora.yaml", f"version: 1\nthreads: 1\npid_file: {WORK}/pingora.pid\nupgrade_sock: {WORK}/pingora.sock\ngrace_period_seconds: 0\ngraceful_shutdown_timeout_seconds: 0\n")
    env = dict(os.environ, PLAIN_LB_LISTEN=f"127.0.0.1:{PORTS['pingora']}", PLAIN_LB_BACKENDS=backends, RUST_LOG="warn")
    procs.start("pingora", [f"{ROOT}/target/release/examples/plain_lb", "-c", pingora_conf], env=env, cpu=PROXY_CPU)

    backend_lines = "\n".join(f"      - {{address: 127.0.0.1:{p}, id: app-{i}}}" for i, p in enumerate(BACKEND_PORTS, 1))
    extra = "".join(f"{k}: {v}\n" for k, v in key_values(tether_settings))
    # The recommended production setting (README); --service-set preserve_header_case=true
    # measures the default.
    service = {"preserve_header_case": "false"}
    service.update(key_values(service_settings))
    service_extra = "".join(f"    {k}: {v}\n" for k, v in service.items())
    sticky = f"""  - name: bench
    listen: 127.0.0.1:{PORTS['tether']}
    backends:
{backend_lines}
{service_extra}    session_persistence:
      type: Cookie
      name: _srv_id
      absolute_timeout: 8h
      idle_timeout: 30m
"""
    gateway = gateway_yaml(routes, backend_lines, service_extra) if routes else ""
    tether_conf = write("tether.yaml", tether_head("tether", TETHER_ADMIN, extra) + f"""{gateway}services:
{"" if routes else sticky}  - name: bench-rr
    listen: 127.0.0.1:{PORTS['tether-rr']}
    backends:
{backend_lines}
{service_extra}""")
    # As systemd/tether.service and the Dockerfile run it (mimalloc commits memory as used).
    env = dict(os.environ, BENCH_SESSION_KEY="load-bench-key-not-a-secret-0123456789", RUST_LOG="warn")
    env.setdefault("MIMALLOC_ARENA_EAGER_COMMIT", "0")
    env.update(key_values(tether_env))
    procs.start("tether", [TETHER, "-c", tether_conf], env=env, cpu=PROXY_CPU)
    for port in PORTS.values():
        wait_port(port)
    time.sleep(1.5)  # first health checks


def http_get_body(port):
    headers = {"Host": ROUTE_HOST} if ROUTE_HOST else {}
    req = urllib.request.Request(f"http://127.0.0.1:{port}/", headers=headers)
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.read().decode(), r.headers


def cookies():
    """Valid session cookies for each proxy (sticky mode), one per backend: sessions spread over
    the backends as real clients' do (all on one backend is a different, slower workload)."""
    tether = {}
    for _ in range(40):
        body, headers = http_get_body(PORTS["tether"])
        tether.setdefault(body.strip(), headers.get("Set-Cookie").split(";")[0])
        if len(tether) == len(BACKEND_PORTS):
            break
    else:
        raise RuntimeError(f"tether pinned sessions to only {sorted(tether)}")
    out = {"haproxy": [f"SRV=s{i}" for i in range(1, len(BACKEND_PORTS) + 1)], "tether": sorted(tether.values())}
    # The proxies without sessions ignore cookies; they get tether's so requests match.
    out["pingora"] = out["tether-rr"] = out["tether"]
    return out


# wrk runs one thread per backend; thread i sends cookie i on each of its connections.
WRK_THREADS = len(BACKEND_PORTS)


def wrk_script(cookies):
    """A wrk script giving thread i the cookie i (a static request: no Lua per request)."""
    path = os.path.join(WORK, "sticky.lua")
    listed = ", ".join(f'"{c}"' for c in cookies)
    write("sticky.lua", f"""local cookies = {{{listed}}}
local n = 0
function setup(thread)
  n = n + 1
  thread:set("cookie", cookies[(n - 1) % #cookies + 1])
end
function init(args)
  wrk.headers["Cookie"] = cookie
end
""")
    return path


def wrk(port, duration, connections, cookies):
    argv = ["taskset", "-c", LOAD_CPU, "wrk", f"-t{WRK_THREADS}", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "5s"]
    if cookies:
        argv += ["-s", wrk_script(cookies)]
    if ROUTE_HOST:
        argv += ["-H", f"Host: {ROUTE_HOST}"]
    argv.append(f"http://127.0.0.1:{port}/")
    out = subprocess.run(argv, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def latency(pct):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    errors = 0
    for pattern in (r"Non-2xx or 3xx responses:\s+(\d+)", r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"):
        m = re.search(pattern, out)
        if m:
            errors += sum(int(g) for g in m.groups())
    return {"rps": rps, "p50": latency(50), "p99": latency(99), "errors": errors}


def paired(names, modes, rounds, duration, fresh_cookies, process_of, drive):
    """`--paired`: the named proxies under load at once (each its own clients, all sharing the
    proxy CPU), so that they see the same machine at the same moment; their CPU per request,
    round by round. `process_of(mode, name)` is the pid serving it, `drive(mode, name, jar)` one
    run returning its req/s."""
    from concurrent.futures import ThreadPoolExecutor
    print(f"\nPaired: {', '.join(names)} driven at once ({rounds} rounds, {duration} s each)")
    for mode in modes:
        effs = []
        for _ in range(rounds):
            jar = fresh_cookies()
            pids = {n: process_of(mode, n) for n in names}
            cpu0 = {n: cpu_seconds(pid) for n, pid in pids.items()}
            with ThreadPoolExecutor(len(names)) as ex:
                runs = {n: ex.submit(drive, mode, n, jar) for n in names}
                res = {n: f.result() for n, f in runs.items()}
            us = {n: 1e6 * (cpu_seconds(pids[n]) - cpu0[n]) / (res[n]["rps"] * duration) for n in names}
            if "pingora" in us and "tether" in us:
                effs.append(us["pingora"] / us["tether"])
            print(f"  {mode:9} " + "   ".join(f"{n} {res[n]['rps']:8.0f} req/s {us[n]:6.1f} us cpu/req" for n in names)
                  + (f"   efficiency {effs[-1]:.3f}" if effs else ""), flush=True)
        if effs:
            print(f"  {mode:9} tether / pingora efficiency: median {statistics.median(effs):.3f} ({min(effs):.3f}-{max(effs):.3f})")


def round_order(names, r):
    """The proxies in the order round `r` runs them: rotated every round, so that no proxy always
    runs first or right after another (the machine drifts over a run)."""
    names = list(names)
    k = r % len(names) if names else 0
    return names[k:] + names[:k]


def pid_of(procs, name):
    """The process serving proxy `name` (tether-rr is a service of the tether process)."""
    process = "tether" if name == "tether-rr" else name
    return next(p.pid for n, p in procs.procs if n == process)


def cpu_seconds(pid):
    """User plus system CPU time of process `pid` (all threads) so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def memory(procs, proxies):
    """RSS at rest, then with 5,000 idle keep-alive connections that each made one request
    (idle.py), per proxy."""
    import idle
    print("\nMemory (VmRSS): at rest, then with 5,000 idle HTTP/1.1 keep-alive connections")
    print(f"{'proxy':10} {'rest MiB':>10} {'5k idle MiB':>12} {'KiB/conn':>9}")
    rows = {}
    for name in proxies:
        before, after, per = idle.measure(pid_of(procs, name), PORTS[name], "http1", 5000, ROUTE_HOST or "bench.test")
        rows[name] = after
        print(f"{name:10} {before / 1024:10.1f} {after / 1024:12.1f} {per / 1024:9.2f}")
    if "haproxy" in rows and "tether" in rows:
        print(f"tether / haproxy RSS with 5k idle connections: {rows['tether'] / rows['haproxy']:.2f}x")


def ensure_inferno():
    """inferno (flamegraphs from perf), installed with cargo when missing; None if it cannot be."""
    if not shutil.which("inferno-flamegraph"):
        subprocess.run("cargo install inferno --locked", shell=True)
    return shutil.which("inferno-flamegraph") and shutil.which("inferno-collapse-perf")


def profile(procs, args, jar, names):
    """Records the proxies in turn under the same load (cpu-clock, DWARF call graphs): a flat
    report by symbol for each, and flamegraphs to compare side by side."""
    inferno = ensure_inferno()
    for name in names:
        pid = pid_of(procs, name)
        data = os.path.join(WORK, f"perf-{name}.data")
        perf = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "997", "--call-graph", "dwarf,8192", "-p", str(pid), "-o", data, "--", "sleep", str(args.duration)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cookie = jar[name] if args.profile == "sticky" else None
        res = wrk(PORTS[name], args.duration, args.connections, cookie)
        perf.wait()
        report = os.path.join(WORK, f"perf-{name}-{args.profile}.txt")
        sh(f"perf report -i {data} --no-children --sort symbol -g none --percent-limit 0.7 --stdio > {report} 2>/dev/null")
        print(f"{name} {args.profile}: {res['rps']:.0f} req/s (while recorded); flat profile in {report}")
        with open(report) as f:
            print("".join(l for l in f if "%" in l and not l.startswith("#"))[:4000])
        if inferno:
            svg = os.path.join(WORK, f"flamegraph-{name}-{args.profile}.svg")
            sh(f"perf script -i {data} 2>/dev/null | inferno-collapse-perf > {data}.folded && inferno-flamegraph --title '{name} {args.profile}' < {data}.folded > {svg}")
            print(f"flamegraph: {svg}")
    if inferno and len(names) > 1:
        base, other = names[0], names[-1]
        diff = os.path.join(WORK, f"flamegraph-diff-{args.profile}.svg")
        sh(f"inferno-diff-folded {WORK}/perf-{base}.data.folded {WORK}/perf-{other}.data.folded | inferno-flamegraph --title '{base} -> {other} ({args.profile})' > {diff}")
        print(f"differential flamegraph (red: more in {other}): {diff}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved repetitions")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--proxies", help=f"comma-separated subset of {','.join(PROXIES)} to drive (default: all; with --profile: pingora,tether)")
    ap.add_argument("--modes", default="sticky,new", help="comma-separated subset of sticky,new")
    ap.add_argument("--tether-set", action="append", default=[], metavar="KEY=VALUE",
                    help="a top-level setting for tether's config (repeatable), e.g. work_stealing=false")
    ap.add_argument("--tether-env", action="append", default=[], metavar="KEY=VALUE",
                    help="an environment variable for tether (repeatable), e.g. RUST_LOG=info")
    ap.add_argument("--service-set", action="append", default=[], metavar="KEY=VALUE",
                    help="a setting for both of tether's services (repeatable), e.g. preserve_header_case=true")
    ap.add_argument("--tether-threads", type=int, default=1, help="tether's worker threads (the other proxies keep 1)")
    ap.add_argument("--unpinned", action="store_true", help="proxies, wrk and nginx share every CPU (for --tether-threads 2)")
    ap.add_argument("--memory", action="store_true", help="also measure RSS with 5,000 idle keep-alive connections")
    ap.add_argument("--paired", action="store_true", help="drive the --proxies (default pingora,tether) at once instead of one after the other: the steadiest comparison of CPU per request")
    ap.add_argument("--routes", type=int, default=0, help="tether's sticky service as a gateway of this many routes (even; traffic hits the one precedence finds last)")
    ap.add_argument("--profile", choices=["sticky", "new"], help="only profile (perf record -e cpu-clock, flamegraphs) the --proxies in this mode")
    args = ap.parse_args()
    global TETHER_THREADS, PROXY_CPU, LOAD_CPU
    TETHER_THREADS = args.tether_threads
    if args.unpinned:
        PROXY_CPU = LOAD_CPU = ",".join(str(c) for c in range(os.cpu_count() or 1))
    if args.routes:
        if args.routes < 2 or args.routes % 2:
            sys.exit("--routes takes an even number >= 2")
        global ROUTE_HOST
        ROUTE_HOST = f"h{args.routes // 2}.bench.test"
    unknown = set((args.proxies or "").split(",")) - set(PROXIES) - {""}
    if unknown:
        ap.error(f"unknown proxies: {', '.join(sorted(unknown))} (known: {', '.join(PROXIES)})")
    os.makedirs(WORK, exist_ok=True)
    ensure_tools()
    procs = Procs()
    try:
        start_all(procs, args.tether_set, args.tether_env, args.service_set, args.routes)
        jar = cookies()
        if args.profile:
            # In the order given: the differential flamegraph goes from the first to the last.
            profile(procs, args, jar, [n for n in (args.proxies or "pingora,tether").split(",") if n != "haproxy"])
            return
        names = [n for n in PROXIES if n in (args.proxies or ",".join(PROXIES)).split(",")]
        # --rounds 0: only --memory.
        modes = [m for m in ("sticky", "new") if m in args.modes.split(",")] if args.rounds else []
        if args.paired:
            paired([n for n in names if args.proxies or n in ("pingora", "tether")], modes, args.rounds, args.duration,
                   cookies, lambda mode, name: pid_of(procs, name),
                   lambda mode, name, jar: wrk(PORTS[name], args.duration, args.connections, jar[name] if mode == "sticky" else None))
            return
        results = {}
        for r in range(args.rounds):
            # Fresh tokens each round: with idle_timeout 30m tether re-issues a token older than
            # 3 minutes on every request (wrk never takes the new one), which is not this load.
            jar = cookies() if r else jar
            for mode in modes:
                for name in round_order(names, r):
                    cookie = jar[name] if mode == "sticky" else None
                    pid = pid_of(procs, name)
                    cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
                    res = wrk(PORTS[name], args.duration, args.connections, cookie)
                    # The proxy's CPU use while driven: near 100% means it is the bottleneck.
                    res["cpu"] = 100 * (cpu_seconds(pid) - cpu_before) / (time.monotonic() - wall_before)
                    results.setdefault((name, mode), []).append(res)
                    print(f"round {r + 1} {mode:6} {name:9} {res['rps']:10.0f} req/s  p50 {res['p50']:.3f} ms  p99 {res['p99']:.3f} ms  errors {res['errors']}  proxy cpu {res['cpu']:.0f}%", flush=True)
        print(f"\nMedians of {args.rounds} rounds, {args.duration} s each, {args.connections} keep-alive connections, proxies pinned to CPU {PROXY_CPU}, wrk and nginx to CPU {LOAD_CPU}")
        print(f"{'mode':7} {'proxy':9} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'cpu %':>6}")
        med = {}
        for mode in modes:
            for name in names:
                runs = results[(name, mode)]
                m = {k: statistics.median(x[k] for x in runs) for k in ("rps", "p50", "p99", "cpu")}
                m["errors"] = sum(x["errors"] for x in runs)
                med[(name, mode)] = m
                print(f"{mode:7} {name:9} {m['rps']:10.0f} {m['p50']:8.3f} {m['p99']:8.3f} {m['errors']:7d} {m['cpu']:6.0f}")
        print("\nRatios (tether / other), same run: of the medians, and the median of each round's ratio")
        print("(rounds run back to back, so a per-round ratio is less affected by the machine's drift):")
        for mode in modes if "tether" in names else []:
            t = med[("tether", mode)]
            for other in (n for n in names if n != "tether"):
                o = med[(other, mode)]
                per_round = [a["rps"] / b["rps"] for a, b in zip(results[("tether", mode)], results[(other, mode)])]
                round_median = statistics.median(per_round)
                p99_round_median = statistics.median(
                    a["p99"] / b["p99"] for a, b in zip(results[("tether", mode)], results[(other, mode)])
                )
                # The spread of the per-round ratios shows how far one run can be trusted.
                print(f"  {mode:7} vs {other:9} throughput {t['rps'] / o['rps']:.3f}x (per round {round_median:.3f}x, {min(per_round):.3f}-{max(per_round):.3f})   p99 {t['p99'] / o['p99']:.3f}x (per round {p99_round_median:.3f}x)")
        if "tether" in names:
            # A check on the load itself: sticky requests must have been routed by their token.
            with urllib.request.urlopen(f"http://127.0.0.1:{TETHER_ADMIN}/metrics", timeout=5) as r:
                text = r.read().decode()
            route = f"app-{args.routes // 2}" if args.routes else "bench"
            counts = {m.group(1): float(m.group(2)) for m in re.finditer(rf'^tether_session_(\w+)_total\{{route="{route}"[^}}]*\}} (\S+)', text, re.M)}
            print("tether sessions: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(counts.items())))
        if args.memory:
            memory(procs, [n for n in names if n != "tether-rr"])
    finally:
        procs.stop()


if __name__ == "__main__":
    main()
