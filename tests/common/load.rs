//! A load generator for tests: client threads holding sessions, checking every response.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::*;

#[derive(Default)]
pub struct Stats {
    ok: AtomicU64,
    failed: AtomicU64,
    wrong_backend: AtomicU64,
    /// Requests resent on a new connection after a keep-alive connection was closed by the
    /// server between requests (RFC 9112 9.3.1 lets clients retry idempotent requests then).
    resent: AtomicU64,
    /// Sessions moved to another backend with a new token (when following re-pins).
    repinned: AtomicU64,
}

/// Client threads, each holding one session, checking every response. Without `follow`, every
/// response must come from the session's backend; with it, a response from another backend
/// must carry a new token (a re-pin), which the client then uses.
pub struct Load {
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
    threads: Vec<JoinHandle<()>>,
    errors: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Load {
    pub fn start(
        addr: std::net::SocketAddr,
        keep_alive: usize,
        fresh: usize,
        follow: bool,
    ) -> Load {
        Self::start_on_path(addr, "/", keep_alive, fresh, follow)
    }

    /// As [`Load::start`], every request for `path`.
    pub fn start_on_path(
        addr: std::net::SocketAddr,
        path: &'static str,
        keep_alive: usize,
        fresh: usize,
        follow: bool,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Stats::default());
        let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for i in 0..keep_alive + fresh {
            let (stop, stats, errors) = (stop.clone(), stats.clone(), errors.clone());
            let keep = i < keep_alive;
            threads.push(thread::spawn(move || {
                let first = get(addr, "/", &[]).expect("first request");
                let token = set_cookie_value(&first, "sid").expect("session cookie");
                let mut pinned = first.backend();
                let mut cookie = format!("Cookie: sid={token}");
                let mut conn: Option<Conn> = None;
                while !stop.load(Ordering::Relaxed) {
                    let result = if keep {
                        let reused = conn.is_some();
                        let attempt = match conn.as_mut() {
                            Some(c) => c.get(path, &[&cookie]),
                            None => Conn::open(addr).and_then(|mut c| {
                                let r = c.get(path, &[&cookie]);
                                conn = Some(c);
                                r
                            }),
                        };
                        match attempt {
                            Err(_) if reused => {
                                stats.resent.fetch_add(1, Ordering::Relaxed);
                                conn = None;
                                Conn::open(addr).and_then(|mut c| {
                                    let r = c.get(path, &[&cookie]);
                                    conn = Some(c);
                                    r
                                })
                            }
                            other => other,
                        }
                    } else {
                        get(addr, path, &[&cookie])
                    };
                    match result {
                        Ok(r) if r.status() == 200 && r.backend() == pinned => {
                            stats.ok.fetch_add(1, Ordering::Relaxed);
                            if r.header("connection")
                                .is_some_and(|c| c.eq_ignore_ascii_case("close"))
                            {
                                conn = None;
                            }
                        }
                        Ok(r)
                            if follow
                                && r.status() == 200
                                && set_cookie_value(&r, "sid").is_some() =>
                        {
                            stats.ok.fetch_add(1, Ordering::Relaxed);
                            stats.repinned.fetch_add(1, Ordering::Relaxed);
                            pinned = r.backend();
                            cookie =
                                format!("Cookie: sid={}", set_cookie_value(&r, "sid").unwrap());
                        }
                        Ok(r) if r.status() == 200 => {
                            stats.wrong_backend.fetch_add(1, Ordering::Relaxed);
                            errors.lock().unwrap().push(format!(
                                "200 from {} (pinned {pinned}) without a new token",
                                r.backend()
                            ));
                            conn = None;
                        }
                        Ok(r) => {
                            stats.failed.fetch_add(1, Ordering::Relaxed);
                            errors.lock().unwrap().push(format!(
                                "{} from {:?}",
                                r.status(),
                                r.backend()
                            ));
                            conn = None;
                        }
                        Err(e) => {
                            stats.failed.fetch_add(1, Ordering::Relaxed);
                            errors.lock().unwrap().push(e.to_string());
                            conn = None;
                        }
                    }
                    thread::sleep(Duration::from_millis(2));
                }
            }));
        }
        Load {
            stop,
            stats,
            threads,
            errors,
        }
    }

    pub fn ok(&self) -> u64 {
        self.stats.ok.load(Ordering::Relaxed)
    }

    /// Stops the clients; returns (ok, failed, wrong backend, resent).
    pub fn finish(self) -> (u64, u64, u64, u64) {
        let (ok, failed, wrong, resent, _) = self.finish_all();
        (ok, failed, wrong, resent)
    }

    /// Stops the clients; returns (ok, failed, wrong backend, resent, re-pinned).
    pub fn finish_all(self) -> (u64, u64, u64, u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let s = &self.stats;
        let errors = self.errors.lock().unwrap();
        if !errors.is_empty() {
            eprintln!(
                "load errors (first 10): {:?}",
                &errors[..errors.len().min(10)]
            );
        }
        (
            s.ok.load(Ordering::Relaxed),
            s.failed.load(Ordering::Relaxed),
            s.wrong_backend.load(Ordering::Relaxed),
            s.resent.load(Ordering::Relaxed),
            s.repinned.load(Ordering::Relaxed),
        )
    }
}
