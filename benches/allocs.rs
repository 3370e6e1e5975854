//! Heap allocations per proxied request, counted by a global allocator around mimalloc (the
//! allocator the tether binary uses). tether runs in this process; the backend and the client
//! are written to allocate nothing per request, so every counted allocation is the proxy's.
//! `cargo bench --bench allocs`. Prints allocations per request for a service without sessions,
//! with a valid session cookie, and with a new session each time.
//!
//! `cargo bench --bench allocs -- --trace` (best with `CARGO_PROFILE_BENCH_DEBUG=line-tables-only`)
//! also records where each allocation of 100 requests came from and prints the call sites by
//! count, for the plain baseline and the valid-cookie case.
//!
//! It also prints the heap an idle connection keeps (1,000 connections that each made one
//! request: plain Pingora and tether over HTTP/1.1, tether over h2c); `-- --idle-sites` lists
//! what tether's keep, by call site.

use std::alloc::{GlobalAlloc, Layout};
use std::backtrace::Backtrace;
use std::cell::Cell;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[path = "../examples/plain_lb.rs"]
mod plain_lb;

struct Counting;
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// Bytes allocated and not freed.
static LIVE: AtomicI64 = AtomicI64::new(0);

/// While set, allocations record their call stacks into `LIVE_SITES` by address, and frees take
/// them out again: what is left is what stays allocated.
static LIVE_TRACING: AtomicBool = AtomicBool::new(false);
static LIVE_SITES: Mutex<Option<HashMap<usize, (usize, Backtrace)>>> = Mutex::new(None);

/// While set, allocations record their call stacks into `TRACES`.
static TRACING: AtomicBool = AtomicBool::new(false);
static TRACES: Mutex<Vec<Backtrace>> = Mutex::new(Vec::new());

thread_local! {
    /// Set while recording a stack, whose own allocations are not recorded.
    static RECORDING: Cell<bool> = const { Cell::new(false) };
}

fn record() {
    if !TRACING.load(Ordering::Relaxed) || RECORDING.with(|r| r.replace(true)) {
        return;
    }
    let trace = Backtrace::force_capture();
    TRACES.lock().unwrap().push(trace);
    RECORDING.with(|r| r.set(false));
}

fn record_live(ptr: *mut u8, size: usize) {
    if !LIVE_TRACING.load(Ordering::Relaxed) || RECORDING.with(|r| r.replace(true)) {
        return;
    }
    let trace = Backtrace::force_capture();
    if let Some(map) = LIVE_SITES.lock().unwrap().as_mut() {
        map.insert(ptr as usize, (size, trace));
    }
    RECORDING.with(|r| r.set(false));
}

fn forget_live(ptr: *mut u8) {
    if !LIVE_TRACING.load(Ordering::Relaxed) || RECORDING.with(|r| r.replace(true)) {
        return;
    }
    if let Some(map) = LIVE_SITES.lock().unwrap().as_mut() {
        map.remove(&(ptr as usize));
    }
    RECORDING.with(|r| r.set(false));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        record();
        let ptr = unsafe { mimalloc::MiMalloc.alloc(layout) };
        record_live(ptr, layout.size());
        ptr
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        forget_live(ptr);
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        record();
        forget_live(ptr);
        let new = unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) };
        record_live(new, new_size);
        new
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// A backend that answers every request with `RESPONSE`, reusing one buffer per connection.
fn backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut conn = conn;
                let mut buf = [0u8; 16384];
                let mut filled = 0;
                loop {
                    match conn.read(&mut buf[filled..]) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => filled += n,
                    }
                    while let Some(end) = find(&buf[..filled], b"\r\n\r\n") {
                        if conn.write_all(RESPONSE).is_err() {
                            return;
                        }
                        buf.copy_within(end + 4..filled, 0);
                        filled -= end + 4;
                    }
                }
            });
        }
    });
    addr
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A keep-alive client connection that sends one request and reads its (2-byte) response.
struct Client {
    conn: TcpStream,
    buf: [u8; 8192],
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let conn = TcpStream::connect(addr).unwrap();
        conn.set_nodelay(true).unwrap();
        Client {
            conn,
            buf: [0u8; 8192],
        }
    }

    fn exchange(&mut self, request: &[u8]) {
        self.conn.write_all(request).unwrap();
        let mut filled = 0;
        loop {
            filled += self.conn.read(&mut self.buf[filled..]).unwrap();
            if let Some(end) = find(&self.buf[..filled], b"\r\n\r\n") {
                if filled >= end + 4 + 2 {
                    return;
                }
            }
        }
    }
}

/// Sends `request` `n` times on one keep-alive connection; returns allocations per request.
fn measure(addr: SocketAddr, request: &[u8], n: u64) -> f64 {
    let mut client = Client::connect(addr);
    for _ in 0..2000 {
        client.exchange(request); // warm-up: pools, caches, metric slots
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..n {
        client.exchange(request);
    }
    (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / n as f64
}

/// The first `depth` frames of `trace` outside the allocator, the standard library and this
/// bench, as "function (file)".
fn call_site(trace: &Backtrace, depth: usize) -> Vec<String> {
    let text = trace.to_string();
    // Frames are "N: function" lines, each followed by an "at file:line" line.
    let mut frames = Vec::new();
    let mut name = "";
    for line in text.lines().map(str::trim) {
        if let Some(at) = line.strip_prefix("at ") {
            let skip = [
                "/rustc/",
                "/library/",
                "benches/allocs.rs",
                "mimalloc",
                "libmimalloc",
            ]
            .iter()
            .any(|p| at.contains(p));
            if !skip && frames.len() < depth {
                let file = at.rsplit('/').next().unwrap_or(at);
                frames.push(format!("{name} ({file})"));
            }
        } else if let Some((_, f)) = line.split_once(": ") {
            name = f;
        }
    }
    frames
}

/// Opens `count` idle connections as [`idle_heap`] does and prints what their allocations that
/// stay are, by call site (bytes per connection).
fn idle_sites(label: &str, open: &dyn Fn() -> TcpStream, count: usize) {
    drop(open());
    settled_live();
    *LIVE_SITES.lock().unwrap() = Some(HashMap::new());
    LIVE_TRACING.store(true, Ordering::Relaxed);
    let mut held = Vec::new();
    for _ in 0..count {
        held.push(open());
    }
    settled_live();
    LIVE_TRACING.store(false, Ordering::Relaxed);
    let live = LIVE_SITES.lock().unwrap().take().unwrap_or_default();
    let mut sites: HashMap<String, (usize, usize)> = HashMap::new();
    for (size, trace) in live.values() {
        let entry = sites.entry(call_site(trace, 4).join("  <  ")).or_default();
        entry.0 += 1;
        entry.1 += size;
    }
    let mut sites: Vec<_> = sites.into_iter().collect();
    sites.sort_by_key(|site| std::cmp::Reverse(site.1 .1));
    let total: usize = sites.iter().map(|s| s.1 .1).sum();
    println!(
        "\n{label}: {:.0} bytes kept per idle connection, by call site (allocations, bytes per connection)",
        total as f64 / count as f64
    );
    for (site, (n, bytes)) in sites.iter().take(25) {
        println!(
            "  {:5.2} {:7.0}  {site}",
            *n as f64 / count as f64,
            *bytes as f64 / count as f64
        );
    }
    drop(held);
}

/// Records the allocations of `n` requests (after `measure`'s warm-up) and prints their call
/// sites: the first frames outside the allocator and the standard library's collections.
fn trace(label: &str, addr: SocketAddr, request: &[u8], n: u64) {
    measure_traced(addr, request, n);
    TRACING.store(false, Ordering::Relaxed);
    let traces = std::mem::take(&mut *TRACES.lock().unwrap());
    let mut sites: HashMap<String, usize> = HashMap::new();
    for t in &traces {
        let frames = call_site(t, 3);
        *sites.entry(frames.join("  <  ")).or_default() += 1;
    }
    let mut sites: Vec<_> = sites.into_iter().collect();
    sites.sort_by_key(|site| std::cmp::Reverse(site.1));
    println!(
        "\n{label}: {:.1} allocations per request, by call site",
        traces.len() as f64 / n as f64
    );
    for (site, count) in sites {
        println!("  {:5.1}  {site}", count as f64 / n as f64);
    }
}

/// Sends `request` `n + 1` times on a new connection, recording allocations from the second
/// on (the first also makes the connection's own).
fn measure_traced(addr: SocketAddr, request: &[u8], n: u64) {
    let mut client = Client::connect(addr);
    client.exchange(request);
    TRACES.lock().unwrap().clear();
    TRACING.store(true, Ordering::Relaxed);
    for _ in 0..n {
        client.exchange(request);
    }
}

/// Heap bytes each idle connection keeps: `count` connections opened by `open` (each has made
/// one request and read its answer) stay open; the proxy's live heap (bytes allocated and not
/// freed) before and after, per connection.
fn idle_heap(open: &dyn Fn() -> TcpStream, count: usize) -> f64 {
    drop(open());
    let before = settled_live();
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        held.push(open());
    }
    let after = settled_live();
    // The client's own `Vec` of streams is on the heap too.
    let own = (count * std::mem::size_of::<TcpStream>()) as i64;
    drop(held);
    (after - before - own) as f64 / count as f64
}

/// An HTTP/1.1 keep-alive connection that made one request.
fn http1_once(addr: SocketAddr, request: &[u8]) -> TcpStream {
    let mut c = Client::connect(addr);
    c.exchange(request);
    c.conn
}

/// An HTTP/2 connection with prior knowledge (h2c) that made one request (`GET /`) and read
/// the answer: frames written by hand (HPACK literals without indexing), no client library.
fn h2c_once(addr: SocketAddr) -> TcpStream {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_nodelay(true).unwrap();
    let frame = |kind: u8, flags: u8, stream: u32, payload: &[u8]| {
        let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        f.extend([kind, flags]);
        f.extend(stream.to_be_bytes());
        f.extend(payload);
        f
    };
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "example.com"),
    ] {
        block.push(0);
        block.push(name.len() as u8);
        block.extend(name.as_bytes());
        block.push(value.len() as u8);
        block.extend(value.as_bytes());
    }
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(0x4, 0, 0, &[])); // SETTINGS
    out.extend(frame(0x4, 0x1, 0, &[])); // SETTINGS ACK (of the server's, sent at once)
    out.extend(frame(0x1, 0x5, 1, &block)); // HEADERS, END_STREAM | END_HEADERS
    conn.write_all(&out).unwrap();
    // Frames until stream 1 ends (a HEADERS or DATA frame of stream 1 with END_STREAM).
    loop {
        let mut head = [0u8; 9];
        conn.read_exact(&mut head).unwrap();
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0u8; len];
        conn.read_exact(&mut payload).unwrap();
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        if stream == 1 && head[4] & 0x1 != 0 && head[3] <= 0x1 {
            return conn;
        }
    }
}

/// The live heap once it stops moving (the proxy's tasks parked).
fn settled_live() -> i64 {
    let mut last = LIVE.load(Ordering::Relaxed);
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = LIVE.load(Ordering::Relaxed);
        if now == last {
            return now;
        }
        last = now;
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The load benchmark's baseline (examples/plain_lb.rs) on its own Pingora server.
fn plain_pingora(backend: SocketAddr) -> SocketAddr {
    use pingora_load_balancing::{selection::RoundRobin, LoadBalancer};
    let port = free_port();
    let conf = pingora_core::server::configuration::ServerConf {
        threads: 1,
        pid_file: format!("/tmp/plain-allocs-{}.pid", std::process::id()),
        upgrade_sock: format!("/tmp/plain-allocs-{}.sock", std::process::id()),
        ..Default::default()
    };
    let mut server = pingora_core::server::Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let lb = LoadBalancer::<RoundRobin>::try_from_iter([backend]).unwrap();
    let background = pingora_core::services::background::background_service("lb", lb);
    let mut proxy =
        pingora_proxy::http_proxy_service(&server.configuration, plain_lb::Lb(background.task()));
    proxy.add_tcp(&format!("127.0.0.1:{port}"));
    server.add_service(proxy);
    server.add_service(background);
    std::thread::spawn(move || server.run_forever());
    listening(port, "plain proxy")
}

/// A second tether in this process with an h2c listener (`http2: true`) in front of `backend`.
fn h2c_listener(backend: SocketAddr) -> SocketAddr {
    let port = free_port();
    let yaml = format!(
        "version: 1\nthreads: 1\ngrace_period_seconds: 0\ngraceful_shutdown_timeout_seconds: 0
pid_file: /tmp/tether-allocs-h2c-{pid}.pid\nupgrade_sock: /tmp/tether-allocs-h2c-{pid}.sock
listeners: [{{name: h2c, address: 127.0.0.1:{port}, http2: true}}]
clusters: [{{name: c, backends: [{backend}], health_check: {{type: none}}}}]
routes: [{{name: r, backends: [{{cluster: c}}]}}]
",
        pid = std::process::id()
    );
    let config = tether::config::Config::parse(&yaml, Path::new("."), &|_| None).unwrap();
    let server = tether::server::build(config, tether::server::StartMode::default()).unwrap();
    std::thread::spawn(move || server.run_forever());
    listening(port, "the h2c tether")
}

/// The address of a server started in this process, once it accepts connections.
fn listening(port: u16, what: &str) -> SocketAddr {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    addr
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // cargo bench --list
    }
    let backend = backend();
    let (plain, sticky, lower) = (free_port(), free_port(), free_port());
    let yaml = format!(
        "version: 1\nthreads: 1\ngrace_period_seconds: 0\ngraceful_shutdown_timeout_seconds: 0
pid_file: /tmp/tether-allocs-{pid}.pid\nupgrade_sock: /tmp/tether-allocs-{pid}.sock
session_keys:\n  - id: k1\n    secret_env: ALLOCS_KEY
services:
  - name: plain\n    listen: 127.0.0.1:{plain}\n    backends: [{backend}]\n    health_check: {{type: none}}
  - name: sticky\n    listen: 127.0.0.1:{sticky}\n    backends: [{backend}]\n    health_check: {{type: none}}
    session_persistence: {{type: Cookie, name: sid, absolute_timeout: 8h, idle_timeout: 30m}}
  - name: lower\n    listen: 127.0.0.1:{lower}\n    backends: [{backend}]\n    health_check: {{type: none}}
    preserve_header_case: false
    session_persistence: {{type: Cookie, name: sid, absolute_timeout: 8h, idle_timeout: 30m}}
",
        pid = std::process::id()
    );
    let env = |name: &str| {
        (name == "ALLOCS_KEY").then(|| "allocs-bench-key-0123456789abcdef0123".to_string())
    };
    let config = tether::config::Config::parse(&yaml, Path::new("."), &env).unwrap();
    let server = tether::server::build(config, tether::server::StartMode::default()).unwrap();
    std::thread::spawn(move || server.run_forever());
    let plain_addr = listening(plain, "tether");
    let sticky_addr = listening(sticky, "tether");
    let lower_addr = listening(lower, "tether");
    // A valid token, from a first response.
    let mut c = TcpStream::connect(sticky_addr).unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    c.read_to_string(&mut response).unwrap();
    let cookie = response
        .lines()
        .find_map(|l| l.strip_prefix("Set-Cookie: "))
        .and_then(|v| v.split(';').next())
        .unwrap()
        .to_string();

    let n = 20_000;
    let get = b"GET / HTTP/1.1\r\nHost: example.com\r\nUser-Agent: allocs\r\nAccept: */*\r\n\r\n";
    let with_cookie = format!(
        "GET / HTTP/1.1\r\nHost: example.com\r\nUser-Agent: allocs\r\nAccept: */*\r\nCookie: theme=dark; {cookie}\r\n\r\n"
    );
    let baseline = plain_pingora(backend);
    println!("heap allocations per proxied request ({n} keep-alive requests each):");
    println!(
        "  plain Pingora round robin    {:6.1}",
        measure(baseline, get, n)
    );
    println!(
        "  tether, no sessions          {:6.1}",
        measure(plain_addr, get, n)
    );
    println!(
        "  sticky, valid cookie         {:6.1}",
        measure(sticky_addr, with_cookie.as_bytes(), n)
    );
    println!(
        "  sticky, new session each     {:6.1}",
        measure(sticky_addr, get, n)
    );
    // Both services take the same key ring, so the token is valid here too.
    println!(
        "  sticky, valid cookie, preserve_header_case: false {:6.1}",
        measure(lower_addr, with_cookie.as_bytes(), n)
    );
    let h2c = h2c_listener(backend);
    println!("heap bytes kept per idle connection (1,000 connections, one request each):");
    println!(
        "  plain Pingora, HTTP/1.1      {:8.0}",
        idle_heap(&|| http1_once(baseline, get), 1000)
    );
    let sticky_once = || http1_once(sticky_addr, with_cookie.as_bytes());
    println!(
        "  tether, HTTP/1.1, sticky     {:8.0}",
        idle_heap(&sticky_once, 1000)
    );
    println!(
        "  tether, h2c                  {:8.0}",
        idle_heap(&|| h2c_once(h2c), 1000)
    );
    if std::env::args().any(|a| a == "--idle-sites") {
        idle_sites("tether, HTTP/1.1, sticky", &sticky_once, 200);
        idle_sites("tether, h2c", &|| h2c_once(h2c), 200);
    }
    if std::env::args().any(|a| a == "--trace") {
        trace("plain Pingora", baseline, get, 100);
        trace(
            "tether, valid cookie",
            sticky_addr,
            with_cookie.as_bytes(),
            100,
        );
        trace("tether, new session", sticky_addr, get, 100);
    }
    std::process::exit(0);
}
