//! A backend that records every request it parses, for the request-smuggling tests: what
//! reached it, on which of its connections, with which headers and body.

use std::io::{BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use super::{accept_each, eventually, read_body, read_message_head, Accepting};

/// How the recording backend answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// `200` with a `Content-Length` body naming the request (`<METHOD> <target>`), and the
    /// backend's own `Keep-Alive: timeout=1`.
    Length,
    /// `200` with the same body in chunked coding.
    Chunked,
    /// `status` at once, before reading the body, with `Connection: close`; then it closes.
    EarlyClose(u16),
}

/// One request as the backend parsed it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The backend connection it came on (1, 2, ... in accept order).
    pub conn: u64,
    pub method: String,
    pub target: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    /// Every value of a header, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.all(name).into_iter().next()
    }
}

struct State {
    answer: Answer,
    requests: Mutex<Vec<Recorded>>,
    next_conn: AtomicU64,
    accepting: Accepting,
}

/// An HTTP/1.1 backend on `127.0.0.1` that records what it parses.
pub struct RecordingBackend {
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl RecordingBackend {
    pub fn start(answer: Answer) -> RecordingBackend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind backend");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            answer,
            requests: Mutex::new(Vec::new()),
            next_conn: AtomicU64::new(1),
            accepting: Accepting::default(),
        });
        accept_each(listener, state.clone(), |s| &s.accepting, serve);
        RecordingBackend { addr, state }
    }

    /// Every request parsed so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    /// The requests whose target contains `needle`.
    pub fn requests_to(&self, needle: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.target.contains(needle))
            .collect()
    }

    /// Waits until `n` requests whose target contains `needle` arrived, and returns them.
    pub fn wait_for(&self, needle: &str, n: usize) -> Vec<Recorded> {
        eventually(
            Duration::from_secs(5),
            &format!("{n} requests to {needle}"),
            || {
                let found = self.requests_to(needle);
                (found.len() >= n).then_some(found)
            },
        )
    }
}

impl Drop for RecordingBackend {
    fn drop(&mut self) {
        self.state.accepting.stop(self.addr);
    }
}

fn serve(conn: TcpStream, st: Arc<State>) {
    let id = st.next_conn.fetch_add(1, Ordering::SeqCst);
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut out = conn;
    loop {
        let Some(head) = read_message_head(&mut reader) else {
            return;
        };
        let mut first = head.raw.lines().next().unwrap_or("").split(' ');
        let method = first.next().unwrap_or("").to_string();
        let target = first.next().unwrap_or("").to_string();
        let version = first.next().unwrap_or("").to_string();
        let named = format!("{method} {target}");
        let early = match st.answer {
            Answer::EarlyClose(status) => Some(status),
            _ => None,
        };
        let body = match early {
            Some(status) => {
                let _ = out.write_all(
                    format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                    .as_bytes(),
                );
                Vec::new()
            }
            None => match read_body(&mut reader, &head.headers, true) {
                Some(body) => body,
                None => return,
            },
        };
        st.requests.lock().unwrap().push(Recorded {
            conn: id,
            method,
            target,
            version,
            headers: head.headers,
            body,
        });
        if early.is_some() {
            // Let the response reach the proxy before the close.
            thread::sleep(Duration::from_millis(50));
            let _ = out.shutdown(Shutdown::Both);
            return;
        }
        let response = match st.answer {
            Answer::Chunked => format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{named}\r\n0\r\n\r\n",
                named.len()
            ),
            _ => format!(
                "HTTP/1.1 200 OK\r\nKeep-Alive: timeout=1\r\nContent-Length: {}\r\n\r\n{named}",
                named.len()
            ),
        };
        if out.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}
