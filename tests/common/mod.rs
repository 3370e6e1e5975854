//! Test harness: real HTTP backends on loopback, the real `tether` binary, a raw HTTP client.
#![allow(dead_code)]

pub mod gateway;
pub mod load;
pub mod recording;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// Polls `f` until it returns `Some`, or panics with `what` after `timeout`.
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        thread::sleep(Duration::from_millis(25));
    }
}

/// A port nobody listens on right now, not handed out before in this test process.
pub fn free_port() -> u16 {
    static USED: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let used = USED.get_or_init(|| Mutex::new(HashSet::new()));
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if used.lock().unwrap().insert(port) {
            return port;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Backends

struct BackendState {
    name: String,
    status: AtomicU16,
    health_status: AtomicU16,
    stopped: AtomicBool,
    conns: Mutex<Vec<TcpStream>>,
    requests: AtomicU64,
    close_each: AtomicBool,
    drop_reused: AtomicBool,
}

/// A small HTTP/1.1 server on `127.0.0.1`. Every response carries `x-backend: <name>`.
/// - `GET /healthz` answers `health_status` (default 200);
/// - `/echo` answers the request head it received as the body;
/// - `POST /body` answers `len=<n> fnv=<hash>` of the request body;
/// - `/slow/<ms>` answers `<name>` after `ms` milliseconds;
/// - `Upgrade: websocket` gets `101` and then every byte is echoed;
/// - anything else answers `status` (default 200) with body `<name>`.
pub struct Backend {
    pub addr: SocketAddr,
    state: Arc<BackendState>,
}

impl Backend {
    /// Starts a backend on a fresh port.
    pub fn start(name: &str) -> Backend {
        Self::start_on(name, 0)
    }

    /// Starts a backend on `port` (0: any).
    pub fn start_on(name: &str, port: u16) -> Backend {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind backend");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(BackendState {
            name: name.to_string(),
            status: AtomicU16::new(200),
            health_status: AtomicU16::new(200),
            stopped: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
            requests: AtomicU64::new(0),
            close_each: AtomicBool::new(false),
            drop_reused: AtomicBool::new(false),
        });
        let st = state.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                if st.stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                if let Ok(c) = conn.try_clone() {
                    st.conns.lock().unwrap().push(c);
                }
                let st = st.clone();
                thread::spawn(move || serve(conn, st));
            }
        });
        Backend { addr, state }
    }

    /// The name it reports in `x-backend`.
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// Sets the status of ordinary responses.
    pub fn set_status(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }

    /// Sets the status of `GET /healthz`.
    pub fn set_health_status(&self, status: u16) {
        self.state.health_status.store(status, Ordering::SeqCst);
    }

    /// Answers every request with `Connection: close` and closes (no upstream reuse).
    pub fn set_close_each(&self, close: bool) {
        self.state.close_each.store(close, Ordering::SeqCst);
    }

    /// Closes a kept-alive connection instead of answering its second request, as a backend
    /// does that closes an idle connection just as the proxy reuses it.
    pub fn set_drop_reused(&self, drop: bool) {
        self.state.drop_reused.store(drop, Ordering::SeqCst);
    }

    /// Requests served so far.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Stops listening and closes every open connection: the port then refuses connections.
    pub fn stop(&self) {
        if self.state.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        let _ = TcpStream::connect(self.addr); // wake the accept loop so it drops the listener
        for c in self.state.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        // Wait until the listener is really gone.
        eventually(Duration::from_secs(5), "backend port closed", || {
            TcpStream::connect(self.addr).is_err().then_some(())
        });
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(conn: TcpStream, st: Arc<BackendState>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut out = conn;
    let mut on_this_connection = 0;
    loop {
        let Some(req) = read_message_head(&mut reader) else {
            return;
        };
        on_this_connection += 1;
        if st.stopped.load(Ordering::SeqCst) {
            return;
        }
        if on_this_connection > 1 && st.drop_reused.load(Ordering::SeqCst) {
            // `conns` holds a clone of the socket: only a shutdown closes it.
            let _ = out.shutdown(Shutdown::Both);
            return;
        }
        st.requests.fetch_add(1, Ordering::SeqCst);
        let body = match read_body(&mut reader, &req.headers, true) {
            Some(b) => b,
            None => return,
        };
        let path = req.target.clone();
        if req
            .header("upgrade")
            .is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
        {
            let _ = write!(
                out,
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nx-backend: {}\r\n\r\n",
                st.name
            );
            // Echo whatever follows, byte stream in both directions.
            let mut buf = [0u8; 4096];
            let pending = reader.buffer().to_vec();
            let _ = out.write_all(&pending);
            loop {
                match reader.get_mut().read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if out.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
        }
        let (status, resp_body) = if path == "/healthz" {
            (
                st.health_status.load(Ordering::SeqCst),
                b"health\n".to_vec(),
            )
        } else if path == "/echo" {
            (200, req.raw.clone().into_bytes())
        } else if path == "/body" {
            (
                200,
                format!("len={} fnv={:016x}", body.len(), fnv(&body)).into_bytes(),
            )
        } else if let Some(ms) = path.strip_prefix("/slow/") {
            thread::sleep(Duration::from_millis(ms.parse().unwrap_or(0)));
            (200, st.name.clone().into_bytes())
        } else if let Some(size) = path.strip_prefix("/big/") {
            let n: usize = size.parse().unwrap_or(0);
            (200, (0..n).map(|i| (i % 251) as u8).collect())
        } else {
            (
                st.status.load(Ordering::SeqCst),
                st.name.clone().into_bytes(),
            )
        };
        let close = st.close_each.load(Ordering::SeqCst);
        let head = format!(
            "HTTP/1.1 {status} X\r\nx-backend: {}\r\nContent-Length: {}\r\nSet-Cookie: app=1; Path=/\r\n{}\r\n",
            st.name,
            resp_body.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        // One write: separate head and body writes meet Nagle and delayed ACKs (40 ms).
        let mut response = head.into_bytes();
        response.extend_from_slice(&resp_body);
        if out.write_all(&response).is_err() {
            return;
        }
        if req
            .header("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"))
        {
            return;
        }
    }
}

/// FNV-1a, to compare bodies without shipping them back.
pub fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf29ce484222325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

/// A backend that accepts connections and reads requests but never answers.
pub struct HangingBackend {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl HangingBackend {
    pub fn start() -> HangingBackend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let flag = flag.clone();
                thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    conn.set_read_timeout(Some(Duration::from_millis(100))).ok();
                    while !flag.load(Ordering::SeqCst) {
                        if let Ok(0) = conn.read(&mut buf) {
                            return;
                        }
                    }
                });
            }
        });
        HangingBackend { addr, stop }
    }
}

impl Drop for HangingBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP messages

/// A parsed request or response head.
pub struct Head {
    /// Request target, or the status code for a response.
    pub target: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub raw: String,
}

impl Head {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header, in order.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

fn read_message_head(reader: &mut impl BufRead) -> Option<Head> {
    let mut raw = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" || line == "\n" {
            if raw.is_empty() {
                continue;
            }
            break;
        }
        raw.push_str(&line);
    }
    let mut lines = raw.lines();
    let first = lines.next()?.to_string();
    let mut parts = first.split_whitespace();
    let a = parts.next()?.to_string();
    let b = parts.next().unwrap_or("").to_string();
    let status = if a.starts_with("HTTP/") {
        b.parse().unwrap_or(0)
    } else {
        0
    };
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Some(Head {
        target: b,
        status,
        headers,
        raw,
    })
}

fn read_body(
    reader: &mut impl BufRead,
    headers: &[(String, String)],
    request: bool,
) -> Option<Vec<u8>> {
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    if get("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            if n == 0 {
                let mut end = String::new();
                reader.read_line(&mut end).ok()?;
                return Some(body);
            }
            let start = body.len();
            body.resize(start + n, 0);
            reader.read_exact(&mut body[start..]).ok()?;
            let mut crlf = [0u8; 2];
            reader.read_exact(&mut crlf).ok()?;
        }
    }
    if let Some(len) = get("content-length") {
        let mut body = vec![0; len.parse().ok()?];
        reader.read_exact(&mut body).ok()?;
        return Some(body);
    }
    if request {
        return Some(Vec::new());
    }
    let mut body = Vec::new();
    reader.read_to_end(&mut body).ok()?;
    Some(body)
}

/// A response.
pub struct Response {
    pub head: Head,
    pub body: Vec<u8>,
}

impl Response {
    pub fn status(&self) -> u16 {
        self.head.status
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The backend that answered (`x-backend`), or "" when tether answered itself.
    pub fn backend(&self) -> String {
        self.header("x-backend").unwrap_or("").to_string()
    }
}

/// A client connection (HTTP/1.1 keep-alive).
pub struct Conn {
    reader: BufReader<TcpStream>,
    stream: TcpStream,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(15)))?;
        Ok(Conn {
            reader: BufReader::new(stream.try_clone()?),
            stream,
        })
    }

    /// Sends raw bytes and reads one response.
    pub fn send_raw(&mut self, raw: &[u8]) -> std::io::Result<Response> {
        self.stream.write_all(raw)?;
        self.read_response()
    }

    pub fn read_response(&mut self) -> std::io::Result<Response> {
        let bad = || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "no response");
        let head = read_message_head(&mut self.reader).ok_or_else(bad)?;
        let body = if head.status == 101 || head.status == 204 || head.status == 304 {
            Vec::new()
        } else {
            read_body(&mut self.reader, &head.headers, false).ok_or_else(bad)?
        };
        Ok(Response { head, body })
    }

    /// `GET path` with extra header lines (each without CRLF).
    pub fn get(&mut self, path: &str, headers: &[&str]) -> std::io::Result<Response> {
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: test.local\r\n");
        for h in headers {
            req.push_str(h);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        self.send_raw(req.as_bytes())
    }

    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    pub fn reader(&mut self) -> &mut BufReader<TcpStream> {
        &mut self.reader
    }
}

/// One `GET` on a new connection.
pub fn get(addr: SocketAddr, path: &str, headers: &[&str]) -> std::io::Result<Response> {
    let mut h: Vec<&str> = headers.to_vec();
    h.push("Connection: close");
    Conn::open(addr)?.get(path, &h)
}

// ---------------------------------------------------------------------------------------------
// tether

/// A temp folder removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tether-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn tether_bin() -> &'static str {
    env!("CARGO_BIN_EXE_tether")
}

/// The Pingora keys every test config starts with: short grace periods, files in `dir`.
pub fn server_keys(dir: &TempDir) -> String {
    format!(
        "version: 1\nthreads: 1\npid_file: {}\nupgrade_sock: {}\ngrace_period_seconds: 1\ngraceful_shutdown_timeout_seconds: 1\n",
        dir.path("tether.pid").display(),
        dir.path("upgrade.sock").display()
    )
}

/// A running tether, killed on drop.
pub struct Tether {
    pub child: Child,
    pub dir: TempDir,
    pub admin: SocketAddr,
    /// The first listener's address (a service's, with `services`).
    pub listen: SocketAddr,
    /// Every listener's address, in the order they were asked for.
    pub listeners: Vec<SocketAddr>,
    top_yaml: String,
    env: Vec<(String, String)>,
    generation: usize,
}

impl Tether {
    /// Starts tether with `services_yaml` (the `services:` list, indented by 2) on fresh ports.
    /// `{listen}` in the YAML is replaced by the service address. Waits until both the admin
    /// listener and the service answer.
    pub fn start(services_yaml: &str) -> Tether {
        Self::start_full("", services_yaml, &[])
    }

    /// As [`Tether::start`], with extra top-level YAML (e.g. `session_keys`) and environment.
    pub fn start_full(top_yaml: &str, services_yaml: &str, env: &[(&str, &str)]) -> Tether {
        // A port handed out by free_port() can be taken (by an outgoing connection, say) before
        // tether binds it; then start again on other ports. (Two test suites run at once on one
        // machine can still collide: free_port() only knows its own process.)
        for _ in 0..3 {
            if let Some(t) = Self::try_start(top_yaml, services_yaml, env) {
                return t;
            }
        }
        panic!("tether could not bind its ports three times");
    }

    fn try_start(top_yaml: &str, services_yaml: &str, env: &[(&str, &str)]) -> Option<Tether> {
        let body = |addrs: &[SocketAddr]| {
            format!(
                "services:\n{}",
                services_yaml.replace("{listen}", &addrs[0].to_string())
            )
        };
        Self::launch(top_yaml, 1, &body, env)
    }

    /// Starts tether on a config whose body (listeners, clusters, routes or services) `body`
    /// writes for `listeners` fresh listener addresses, with `top_yaml` and `env`. Waits until
    /// the admin listener and every listener answer.
    pub fn start_body(
        top_yaml: &str,
        listeners: usize,
        body: &dyn Fn(&[SocketAddr]) -> String,
        env: &[(&str, &str)],
    ) -> Tether {
        for _ in 0..3 {
            if let Some(t) = Self::launch(top_yaml, listeners, body, env) {
                return t;
            }
        }
        panic!("tether could not bind its ports three times");
    }

    fn launch(
        top_yaml: &str,
        listeners: usize,
        body: &dyn Fn(&[SocketAddr]) -> String,
        env: &[(&str, &str)],
    ) -> Option<Tether> {
        let dir = TempDir::new();
        let addrs: Vec<SocketAddr> = (0..listeners)
            .map(|_| format!("127.0.0.1:{}", free_port()).parse().unwrap())
            .collect();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let yaml = config_text(&dir, top_yaml, admin, &body(&addrs));
        std::fs::write(dir.path("tether.yaml"), yaml).unwrap();
        let mut t = Tether {
            child: Self::spawn(&dir, 0, &[], &env),
            dir,
            admin,
            listen: addrs[0],
            listeners: addrs,
            top_yaml: top_yaml.to_string(),
            env,
            generation: 0,
        };
        let mut bind_failed = false;
        eventually(Duration::from_secs(20), "tether to listen", || {
            if let Ok(Some(status)) = t.child.try_wait() {
                panic!("tether exited early ({status}):\n{}", t.log());
            }
            // Pingora retries a busy port for 30 s; rather move to other ports at once.
            if t.log().contains("is in use, will try again") {
                bind_failed = true;
                return Some(());
            }
            let admin_up = get(t.admin, "/healthz", &[]).is_ok_and(|r| r.status() == 200);
            let all_up = t.listeners.iter().all(|a| TcpStream::connect(a).is_ok());
            (admin_up && all_up).then_some(())
        });
        (!bind_failed).then_some(t)
    }

    /// The config file.
    pub fn conf(&self) -> PathBuf {
        self.dir.path("tether.yaml")
    }

    /// Writes the config with these services (same ports, keys and environment).
    pub fn write_config(&self, services_yaml: &str) {
        let body = format!(
            "services:\n{}",
            services_yaml.replace("{listen}", &self.listen.to_string())
        );
        self.write_body(&body);
    }

    /// Writes the config with this body (same keys, admin listener and environment).
    pub fn write_body(&self, body: &str) {
        let yaml = config_text(&self.dir, &self.top_yaml, self.admin, body);
        std::fs::write(self.conf(), yaml).unwrap();
    }

    /// Starts a tether process on the config file, logging to its own file.
    fn spawn(dir: &TempDir, generation: usize, args: &[&str], env: &[(String, String)]) -> Child {
        let log = std::fs::File::create(dir.path(&format!("tether-{generation}.log"))).unwrap();
        Command::new(tether_bin())
            .args(args)
            .arg("-c")
            .arg(dir.path("tether.yaml"))
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn tether")
    }

    /// Zero-downtime upgrade as an operator does it: start `tether -u` on the same config file
    /// (rewritten first when `services_yaml` is given), then SIGQUIT the running process. The
    /// new process becomes `self.child`; the old one is returned.
    pub fn upgrade(&mut self, services_yaml: Option<&str>) -> Child {
        if let Some(yaml) = services_yaml {
            self.write_config(yaml);
        }
        self.generation += 1;
        let new = Self::spawn(&self.dir, self.generation, &["-u"], &self.env);
        signal(self.child.id(), "QUIT");
        std::mem::replace(&mut self.child, new)
    }

    /// Runs `tether` on this instance's config file with `args`, waiting for it to exit.
    pub fn run_once(&self, args: &[&str]) -> std::process::Output {
        Command::new(tether_bin())
            .args(args)
            .arg("-c")
            .arg(self.conf())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap()
    }

    /// Every log of this instance so far.
    pub fn log(&self) -> String {
        (0..=self.generation)
            .map(|g| {
                std::fs::read_to_string(self.dir.path(&format!("tether-{g}.log")))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The log once it contains one of `needles` (lines are written in batches, within
    /// 100 ms).
    pub fn wait_for_log(&self, needles: &[&str]) -> String {
        eventually(
            Duration::from_secs(5),
            &format!("one of {needles:?} in the log"),
            || {
                let log = self.log();
                needles.iter().any(|n| log.contains(n)).then_some(log)
            },
        )
    }

    /// `GET /status` as JSON text.
    pub fn status(&self) -> String {
        get(self.admin, "/status", &[]).unwrap().text()
    }

    /// The address of listener `name`, from `/status`.
    pub fn listener_address(&self, name: &str) -> SocketAddr {
        let status: serde_json::Value = serde_json::from_str(&self.status()).unwrap();
        let listeners = status["listeners"]
            .as_array()
            .expect("listeners in /status");
        let found = listeners.iter().find(|l| l["name"] == name);
        let address = found.and_then(|l| l["address"].as_str());
        address
            .unwrap_or_else(|| panic!("no listener `{name}` in /status"))
            .parse()
            .unwrap()
    }

    /// `GET /metrics` text.
    pub fn metrics(&self) -> String {
        get(self.admin, "/metrics", &[]).unwrap().text()
    }

    /// Waits (up to 5 s) for a metric to reach `expect`. Counters move in Pingora's logging
    /// phase, which runs after the response has reached the client.
    #[track_caller]
    pub fn assert_metric(&self, series: &str, expect: f64) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let got = self.metric(series);
            if got == Some(expect) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{series}: expected {expect}, got {got:?}\n{}",
                    self.metrics()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The value of one metric line (`name{labels}`), if present.
    pub fn metric(&self, series: &str) -> Option<f64> {
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }
}

/// A whole config: test server keys, extra top-level YAML, the admin listener, and the body
/// (listeners, clusters, routes or services).
/// A `grace_period_seconds` in `top_yaml` replaces the default one.
fn config_text(dir: &TempDir, top_yaml: &str, admin: SocketAddr, body: &str) -> String {
    let mut keys = server_keys(dir);
    if top_yaml.contains("grace_period_seconds:") {
        keys = keys.replace("grace_period_seconds: 1\n", "");
    }
    format!("{keys}{top_yaml}admin:\n  listen: {admin}\n{body}")
}

/// Sends a signal (`QUIT`, `TERM`, `INT`) to a process.
pub fn signal(pid: u32, name: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -{name} {pid} failed");
}

/// Waits for a child to exit, returning how long it took, or `None` after `timeout`.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<Duration> {
    let began = Instant::now();
    while began.elapsed() < timeout {
        if let Ok(Some(_)) = child.try_wait() {
            return Some(began.elapsed());
        }
        thread::sleep(Duration::from_millis(20));
    }
    None
}

impl Drop for Tether {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("---- tether log ----\n{}", self.log());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Cookies

/// A cookie's attributes as (lower-cased name, value).
pub type Attributes = Vec<(String, String)>;

/// The `name=value` of a response's first `Set-Cookie`, and its attributes.
pub fn first_set_cookie(r: &Response) -> Option<(String, String, Attributes)> {
    let sc = r.head.headers_named("set-cookie").into_iter().next()?;
    let mut parts = sc.split(';');
    let (name, value) = parts.next()?.trim().split_once('=')?;
    let attrs = parts
        .map(|p| {
            let p = p.trim();
            match p.split_once('=') {
                Some((k, v)) => (k.to_ascii_lowercase(), v.to_string()),
                None => (p.to_ascii_lowercase(), String::new()),
            }
        })
        .collect();
    Some((name.to_string(), value.to_string(), attrs))
}

/// The value a response sets for cookie `name`, if it sets one.
pub fn set_cookie_value(r: &Response, name: &str) -> Option<String> {
    r.head
        .headers_named("set-cookie")
        .into_iter()
        .find_map(|sc| {
            let (n, v) = sc.split(';').next()?.trim().split_once('=')?;
            (n == name).then(|| v.to_string())
        })
}
