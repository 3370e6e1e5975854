//! Test harness: real HTTP backends on loopback, the real `tether` binary, a raw HTTP client.
#![allow(dead_code, unused_imports)]

pub mod certs;
pub mod dns;
pub mod gateway;
pub mod load;
pub mod recording;

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

mod backend;
mod clients;
mod cookies;
mod http;
mod relays;
mod tether;

pub use backend::*;
pub use certs::*;
pub use clients::*;
pub use cookies::*;
pub use http::*;
pub use relays::*;
pub use tether::*;

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
