//! Backends for the tests: a small HTTP/1.1 server that names itself, and one that hangs.

use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use super::{eventually, read_body, read_message_head};

struct BackendState {
    name: String,
    status: AtomicU16,
    health_status: AtomicU16,
    accepting: Accepting,
    requests: AtomicU64,
    close_each: AtomicBool,
    drop_reused: AtomicBool,
}

/// What a test server's accept loop shares with whoever stops it.
#[derive(Default)]
pub struct Accepting {
    stopped: AtomicBool,
    /// A clone of every connection accepted: only a shutdown closes a socket that is cloned.
    conns: Mutex<Vec<TcpStream>>,
}

impl Accepting {
    /// Stops accepting on `addr` and closes every connection; false if it was stopped before.
    pub fn stop(&self, addr: SocketAddr) -> bool {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return false;
        }
        let _ = TcpStream::connect(addr); // wake the accept loop so it drops the listener
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        true
    }
}

/// Accepts on `listener` until stopped, keeping a clone of each connection, and serves each on
/// its own thread.
pub fn accept_each<S: Send + Sync + 'static>(
    listener: TcpListener,
    state: Arc<S>,
    accepting: fn(&S) -> &Accepting,
    serve: fn(TcpStream, Arc<S>),
) {
    thread::spawn(move || {
        for conn in listener.incoming() {
            if accepting(&state).stopped.load(Ordering::SeqCst) {
                break;
            }
            let Ok(conn) = conn else { continue };
            if let Ok(c) = conn.try_clone() {
                accepting(&state).conns.lock().unwrap().push(c);
            }
            let state = state.clone();
            thread::spawn(move || serve(conn, state));
        }
    });
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
        Self::start_at(name, &format!("127.0.0.1:{port}"))
    }

    /// Starts a backend on `addr` (another loopback address, say `127.0.0.3:0`).
    pub fn start_at(name: &str, addr: &str) -> Backend {
        let listener = TcpListener::bind(addr).expect("bind backend");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(BackendState {
            name: name.to_string(),
            status: AtomicU16::new(200),
            health_status: AtomicU16::new(200),
            accepting: Accepting::default(),
            requests: AtomicU64::new(0),
            close_each: AtomicBool::new(false),
            drop_reused: AtomicBool::new(false),
        });
        accept_each(listener, state.clone(), |s| &s.accepting, serve);
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
        if self.state.accepting.stop(self.addr) {
            // Wait until the listener is really gone.
            eventually(Duration::from_secs(5), "backend port closed", || {
                TcpStream::connect(self.addr).is_err().then_some(())
            });
        }
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
        if st.accepting.stopped.load(Ordering::SeqCst) {
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
        } else if path == "/page" {
            (200, page(&st.name).into_bytes())
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
        let content_type = if path == "/page" {
            "Content-Type: text/html; charset=utf-8\r\n"
        } else {
            ""
        };
        let head = format!(
            "HTTP/1.1 {status} X\r\nx-backend: {}\r\nContent-Length: {}\r\nSet-Cookie: app=1; Path=/\r\n{content_type}{}\r\n",
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
/// A page for browsers: it names its backend, then fetches `/` six times in a row (with the
/// cookies the browser keeps) and writes the backends that answered into `#out`.
fn page(name: &str) -> String {
    format!(
        "<!DOCTYPE html><html><body><p id=\"page\">{name}</p><pre id=\"out\">pending</pre>\
         <script>(async () => {{ const names = []; for (let i = 0; i < 6; i++) {{ \
         const r = await fetch('/who?' + i, {{cache: 'no-store'}}); names.push(await r.text()); }} \
         document.getElementById('out').textContent = 'fetched:' + names.join(','); }})();\
         </script></body></html>"
    )
}

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
