//! Outlier detection: a backend whose health endpoint says OK but that answers real requests
//! with 502 is ejected after `consecutive_failures`, its sessions move, and it comes back after
//! `ejection_time`; the cap on ejected backends holds when every backend fails.

mod common;

use std::time::{Duration, Instant};

use common::gateway::{Gateway, Outlier, Route};
use common::*;

fn gateway(backends: &[(&str, std::net::SocketAddr)], max_ejected_percent: u32) -> Gateway {
    Gateway::new()
        .cluster("app", backends)
        .http_health("app", "/healthz", 200)
        .outlier(
            "app",
            Outlier {
                consecutive_failures: 3,
                ejection_time_ms: 1500,
                max_ejected_percent,
            },
        )
        .route(Route::new("app").to("app", 1).cookie("sid"))
}

fn ejected(t: &Tether, id: &str) -> bool {
    t.backends_of("app")
        .iter()
        .any(|b| b["id"] == id && b["ejected"] == true)
}

#[test]
fn a_backend_failing_real_requests_is_ejected_and_comes_back() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let t = gateway(&[("a", a.addr), ("b", b.addr)], 50).start();
    // A session on a.
    let token = loop {
        let r = get(t.listen, "/", &[]).unwrap();
        if r.backend() == "a" {
            break set_cookie_value(&r, "sid").unwrap();
        }
    };
    let cookie = format!("Cookie: sid={token}");
    // a's health endpoint stays 200; its real answers turn 502.
    a.set_status(502);
    for _ in 0..3 {
        let r = get(t.listen, "/", &[&cookie]).unwrap();
        assert_eq!((r.status(), r.backend()), (502, "a".to_string()));
    }
    // Counted in the logging phase, just after the response went out.
    eventually(Duration::from_secs(2), "a ejected", || {
        ejected(&t, "a").then_some(())
    });
    t.assert_metric("tether_backend_ejected{backend=\"a\",cluster=\"app\"}", 1.0);
    let since = Instant::now();
    // The session moves (failed_open, a new token), new sessions go to b.
    let moved = get(t.listen, "/", &[&cookie]).unwrap();
    assert_eq!((moved.status(), moved.backend()), (200, "b".to_string()));
    assert!(set_cookie_value(&moved, "sid").is_some());
    for _ in 0..4 {
        assert_eq!(get(t.listen, "/", &[]).unwrap().backend(), "b");
    }
    let log = t.wait_for_log(&["ejected for 1.5s after 3 failures in a row"]);
    assert!(log.contains("cluster app backend a ("), "{log}");
    // Its probes pass all along: only the ejection keeps it out, until it runs out.
    assert!(t.backends_of("app").iter().all(|b| b["healthy"] == true));
    a.set_status(200);
    eventually(Duration::from_secs(5), "a back after its ejection", || {
        (!ejected(&t, "a")).then_some(())
    });
    assert!(
        since.elapsed() >= Duration::from_millis(1200),
        "{:?}",
        since.elapsed()
    );
    let spread: Vec<String> = (0..4)
        .map(|_| get(t.listen, "/", &[]).unwrap().backend())
        .collect();
    assert!(spread.contains(&"a".to_string()), "{spread:?}");
    t.assert_metric("tether_backend_ejected{backend=\"a\",cluster=\"app\"}", 0.0);
}

/// Requests `n` times, then waits for the number of ejected backends to settle at `expect`
/// (ejections are decided just after each response) and checks that more failing requests
/// do not raise it.
fn settles_at(t: &Tether, n: usize, expect: usize) {
    let count = || {
        t.backends_of("app")
            .iter()
            .filter(|b| b["ejected"] == true)
            .count()
    };
    for _ in 0..n {
        assert!(get(t.listen, "/", &[]).unwrap().status() >= 500);
    }
    eventually(Duration::from_secs(2), "ejections settled", || {
        (count() == expect).then_some(())
    });
    for _ in 0..20 {
        get(t.listen, "/", &[]).unwrap();
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(count(), expect, "{}", t.status());
}

#[test]
fn the_cap_keeps_backends_in_when_every_one_fails() {
    let backends: Vec<Backend> = ["a", "b", "c", "d"]
        .iter()
        .map(|n| Backend::start(n))
        .collect();
    let named: Vec<(&str, std::net::SocketAddr)> =
        backends.iter().map(|b| (b.name(), b.addr)).collect();
    let t = gateway(&named, 50).start();
    for b in &backends {
        b.set_status(503);
    }
    // 50% of 4: two at most.
    settles_at(&t, 40, 2);
    t.wait_for_log(&["not ejected: 2 of 4 backends are ejected already"]);
    // With a cap of 100%, one stays all the same.
    drop(t);
    let t = gateway(&named, 100).start();
    settles_at(&t, 60, 3);
}
