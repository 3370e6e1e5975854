//! Faults under load (loopback, bounded in time): backends killed and restarted, hanging,
//! slow. Every test prints its counts.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::load::Load;
use common::*;

fn sessions_over(backends: &[(&str, std::net::SocketAddr)], extra: &str) -> String {
    let mut y = String::from("  - name: web\n    listen: {listen}\n    backends:\n");
    for (id, addr) in backends {
        y.push_str(&format!("      - {{address: {addr}, id: {id}}}\n"));
    }
    y.push_str(extra);
    y.push_str("    session_persistence: {type: Cookie, name: sid, absolute_timeout: 1h}\n");
    y
}

/// A backend killed under load, then restarted: with `strict: false` no request fails; the
/// sessions on it are re-pinned. Requests take 30 ms and backends close every connection, so
/// the kill catches requests in flight on fresh upstream connections (which Pingora's default
/// policy would not retry).
#[test]
fn killed_backend_under_load_loses_no_request() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let c = Backend::start("c");
    for backend in [&a, &b, &c] {
        backend.set_close_each(true);
    }
    let b_port = b.addr.port();
    let t = Tether::start(&sessions_over(
        &[("a", a.addr), ("b", b.addr), ("c", c.addr)],
        "    health_check: {interval: 300ms, timeout: 300ms}\n",
    ));
    let load = Load::start_on_path(t.listen, "/slow/30", 4, 4, true);
    eventually(Duration::from_secs(10), "load running", || {
        (load.ok() > 100).then_some(())
    });
    let before_kill = b.requests();
    eventually(Duration::from_secs(5), "requests in flight on b", || {
        (b.requests() > before_kill).then_some(())
    });
    b.stop();
    let killed = load.ok();
    eventually(Duration::from_secs(10), "load continues without b", || {
        (load.ok() > killed + 150).then_some(())
    });
    let b = Backend::start_on("b", b_port);
    b.set_close_each(true);
    eventually(Duration::from_secs(5), "b healthy again", || {
        (t.metric("tether_backend_healthy{backend=\"b\",cluster=\"web\"}") == Some(1.0))
            .then_some(())
    });
    let back = load.ok();
    eventually(Duration::from_secs(10), "load after restart", || {
        (load.ok() > back + 100).then_some(())
    });
    let (ok, failed, wrong, resent, repinned) = load.finish_all();
    let failed_open = t
        .metric("tether_session_failed_open_total{route=\"web\"}")
        .unwrap_or(0.0);
    eprintln!(
        "killed backend: requests ok={ok} failed={failed} wrong_backend={wrong} resent={resent} re-pinned={repinned} failed_open={failed_open}"
    );
    assert_eq!((failed, wrong), (0, 0));
    drop(b);
}

/// A hanging backend: requests on it fail with 504 within the read timeout, the HTTP health
/// check takes it out, and another service on the same tether is never slowed.
#[test]
fn hanging_backend_fails_fast_and_leaves_rotation() {
    let a = Backend::start("a");
    let hang = HangingBackend::start();
    let other = Backend::start("other");
    let services = format!(
        "{}  - name: other\n    listen: 127.0.0.1:{}\n    backends: [{}]\n",
        sessions_over(
            &[("a", a.addr), ("hang", hang.addr)],
            "    health_check: {type: http, interval: 300ms, timeout: 300ms}\n    timeouts: {read: 1s}\n",
        ),
        free_port(),
        other.addr
    );
    let t = Tether::start(&services);
    let other_addr = t.listener_address("other");
    // The second service starts after its first health round, maybe after the first one.
    eventually(
        Duration::from_secs(5),
        "the other service to listen",
        || std::net::TcpStream::connect(other_addr).ok(),
    );
    let began = Instant::now();
    let (mut ok, mut timeouts, mut slowest_other) = (0, 0, Duration::ZERO);
    let mut slowest_timeout = Duration::ZERO;
    while began.elapsed() < Duration::from_secs(4) {
        let sent = Instant::now();
        let r = get(t.listen, "/", &[]).unwrap();
        match r.status() {
            200 => ok += 1,
            504 => {
                timeouts += 1;
                slowest_timeout = slowest_timeout.max(sent.elapsed());
            }
            s => panic!("unexpected {s}"),
        }
        let sent = Instant::now();
        assert_eq!(get(other_addr, "/", &[]).unwrap().status(), 200);
        slowest_other = slowest_other.max(sent.elapsed());
    }
    eprintln!(
        "hanging backend: ok={ok} 504={timeouts} slowest 504 {slowest_timeout:?} slowest other-service request {slowest_other:?}"
    );
    assert!(timeouts >= 1, "the hanging backend was never tried");
    assert!(
        slowest_timeout < Duration::from_millis(2500),
        "504 after {slowest_timeout:?}"
    );
    assert!(
        slowest_other < Duration::from_millis(500),
        "other service stalled {slowest_other:?}"
    );
    assert_eq!(
        t.metric("tether_backend_healthy{backend=\"hang\",cluster=\"web\"}"),
        Some(0.0)
    );
    // Out of rotation: no more errors.
    for _ in 0..10 {
        assert_eq!(get(t.listen, "/", &[]).unwrap().status(), 200);
    }
}

/// A slow backend is waited for (within the read timeout), not failed over.
#[test]
fn slow_backend_is_waited_for() {
    let a = Backend::start("a");
    let t = Tether::start(&sessions_over(
        &[("a", a.addr)],
        "    timeouts: {read: 2s}\n",
    ));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let addr = t.listen;
            thread::spawn(move || get(addr, "/slow/400", &[]).unwrap().status())
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 200);
    }
}

/// Backends `a` and `b` behind a service with sessions, a first request's response, and the
/// session cookie it set (`sid=...`).
fn session_on_two_backends() -> (Backend, Backend, Tether, Response, String) {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let t = Tether::start(&sessions_over(&[("a", a.addr), ("b", b.addr)], ""));
    let first = get(t.listen, "/", &[]).unwrap();
    let cookie = format!(
        "sid={}",
        set_cookie_value(&first, "sid").expect("a session cookie")
    );
    (a, b, t, first, cookie)
}

/// A client that hangs up while its request waits on the backend is not a backend failure: the
/// request is not sent again to another backend, and the session is not re-pinned (a load
/// generator stopping, a browser tab closed).
#[test]
fn client_hanging_up_is_not_a_backend_failure() {
    let (a, b, t, first, cookie) = session_on_two_backends();
    let (ours, other) = if first.backend() == "a" {
        (&a, &b)
    } else {
        (&b, &a)
    };
    let (ours_before, other_before) = (ours.requests(), other.requests());
    let mut client = std::net::TcpStream::connect(t.listen).unwrap();
    use std::io::Write as _;
    write!(
        client,
        "GET /slow/3000 HTTP/1.1\r\nHost: web\r\nCookie: {cookie}\r\n\r\n"
    )
    .unwrap();
    eventually(Duration::from_secs(5), "request at its backend", || {
        (ours.requests() > ours_before).then_some(())
    });
    drop(client);
    // Logged once tether is done with the request, retries included.
    t.wait_for_log(&["/slow/3000"]);
    assert_eq!(
        other.requests(),
        other_before,
        "sent again to the other backend"
    );
    t.assert_metric("tether_session_failed_open_total{route=\"web\"}", 0.0);
}

/// A backend closing a pooled connection just as tether reuses it (the keep-alive race) is not
/// a backend failure: the request goes again to the same backend on a new connection, and the
/// session stays where it is.
#[test]
fn keepalive_race_keeps_the_session() {
    let (a, b, t, first, cookie) = session_on_two_backends();
    // The first request's upstream connection is pooled; its backend drops it when reused.
    for backend in [&a, &b] {
        backend.set_drop_reused(true);
    }
    for _ in 0..3 {
        let again = get(t.listen, "/", &[&format!("Cookie: {cookie}")])
            .unwrap_or_else(|e| panic!("{e}: {}", t.log()));
        assert_eq!(again.status(), 200);
        assert_eq!(again.backend(), first.backend(), "session moved");
        assert_eq!(
            set_cookie_value(&again, "sid"),
            None,
            "a new token was issued"
        );
    }
    t.assert_metric("tether_session_failed_open_total{route=\"web\"}", 0.0);
    t.assert_metric("tether_session_routed_total{route=\"web\"}", 3.0);
}
