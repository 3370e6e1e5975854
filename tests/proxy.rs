//! The real binary proxying to real backends on loopback: balancing, health, retries, headers,
//! bodies, upgrades, admin endpoints.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::Duration;

use common::*;

fn count_backends(t: &Tether, n: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        let r = get(t.listen, "/", &[]).expect("request");
        assert_eq!(r.status(), 200, "{}", r.text());
        *counts.entry(r.backend()).or_insert(0) += 1;
    }
    counts
}

#[test]
fn weighted_round_robin_follows_weights() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let t = Tether::start(&format!(
        "  - name: web\n    listen: {{listen}}\n    backends:\n      - address: {}\n        weight: 7\n      - address: {}\n        weight: 3\n",
        a.addr, b.addr
    ));
    let counts = count_backends(&t, 200);
    let (na, nb) = (counts["a"], counts["b"]);
    assert_eq!(na + nb, 200);
    assert!((130..=150).contains(&na), "a got {na}, b got {nb}");
    assert!((50..=70).contains(&nb), "a got {na}, b got {nb}");
}

#[test]
fn keep_alive_connection_carries_many_requests() {
    let a = Backend::start("a");
    let t = Tether::start(&format!(
        "  - name: web\n    listen: {{listen}}\n    backends: [{}]\n",
        a.addr
    ));
    let mut conn = Conn::open(t.listen).unwrap();
    for _ in 0..20 {
        let r = conn.get("/", &[]).unwrap();
        assert_eq!((r.status(), r.text().as_str()), (200, "a"));
    }
}

/// The backend `b` is stopped; the TCP check takes it out, and brings it back on restart.
#[test]
fn tcp_check_takes_a_dead_backend_out_and_back() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let b_addr = b.addr;
    let t = Tether::start(&format!(
        "  - name: web\n    listen: {{listen}}\n    backends:\n      - address: {}\n        id: a\n      - address: {}\n        id: b\n    health_check:\n      type: tcp\n      interval: 500ms\n      timeout: 500ms\n",
        a.addr, b.addr
    ));
    let healthy_b = "tether_backend_healthy{backend=\"b\",cluster=\"web\"}";
    t.assert_metric(healthy_b, 1.0);
    b.stop();
    // interval x unhealthy_threshold + 1 s, plus slack for a loaded machine.
    eventually(Duration::from_secs(4), "b marked unhealthy", || {
        (t.metric(healthy_b) == Some(0.0)).then_some(())
    });
    assert!(t.status().contains("\"healthy\": false"));
    // Out of rotation: every request answered by a.
    assert_eq!(count_backends(&t, 10).get("a"), Some(&10));
    let b = Backend::start_on("b", b_addr.port());
    eventually(Duration::from_secs(4), "b back in rotation", || {
        (t.metric(healthy_b) == Some(1.0)).then_some(())
    });
    let counts = count_backends(&t, 10);
    assert_eq!(counts.get("b"), Some(&5), "{counts:?}");
    drop(b);
}

/// The backend keeps accepting connections but fails its HTTP check: only the HTTP probe can
/// see it, and requests stop going there.
#[test]
fn http_check_takes_a_failing_backend_out_and_back() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let t = Tether::start(&format!(
        "  - name: web\n    listen: {{listen}}\n    backends:\n      - address: {}\n        id: a\n      - address: {}\n        id: b\n    health_check:\n      type: http\n      path: /healthz\n      expect_status: [200, 204]\n      interval: 300ms\n      timeout: 500ms\n      healthy_threshold: 2\n      unhealthy_threshold: 2\n",
        a.addr, b.addr
    ));
    let healthy_b = "tether_backend_healthy{backend=\"b\",cluster=\"web\"}";
    b.set_health_status(500);
    eventually(Duration::from_secs(4), "b marked unhealthy", || {
        (t.metric(healthy_b) == Some(0.0)).then_some(())
    });
    assert_eq!(count_backends(&t, 10).get("a"), Some(&10));
    b.set_health_status(200);
    eventually(Duration::from_secs(4), "b healthy again", || {
        (t.metric(healthy_b) == Some(1.0)).then_some(())
    });
    assert_eq!(count_backends(&t, 10).get("b"), Some(&5));
}

/// With no health check the dead backend stays "healthy"; each refused connection is retried
/// on the live one, so no request fails.
#[test]
fn refused_connection_is_retried_on_another_backend() {
    let a = Backend::start("a");
    let dead = free_port();
    let t = Tether::start(&format!(
        "  - name: web\n    listen: {{listen}}\n    backends: [{}, 127.0.0.1:{dead}]\n    health_check: {{type: none}}\n",
        a.addr
    ));
    let counts = count_backends(&t, 20);
    assert_eq!(counts.get("a"), Some(&20), "{counts:?}");
}

#[test]
fn no_healthy_backend_answers_503_at_once() {
    let dead = free_port();
    let t = Tether::start(&format!(
        "  - name: web\n    listen: {{listen}}\n    backends: [127.0.0.1:{dead}]\n    health_check: {{interval: 500ms}}\n"
    ));
    eventually(Duration::from_secs(4), "503 from tether", || {
        let r = get(t.listen, "/", &[]).ok()?;
        (r.status() == 503).then_some(())
    });
    eventually(Duration::from_secs(5), "the 503 counted", || {
        let n = t.metric(
            "tether_requests_total{backend=\"none\",cluster=\"none\",code=\"503\",route=\"web\"}",
        )?;
        (n >= 1.0).then_some(())
    });
}

#[test]
fn all_backends_refusing_gives_502_not_a_hang() {
    let (d1, d2) = (free_port(), free_port());
    let t = Tether::start(&format!(
        "  - name: web\n    listen: {{listen}}\n    backends: [127.0.0.1:{d1}, 127.0.0.1:{d2}]\n    health_check: {{type: none}}\n"
    ));
    let r = get(t.listen, "/", &[]).unwrap();
    assert_eq!(r.status(), 502);
}

#[test]
fn forwarded_headers_are_added_and_host_kept() {
    let a = Backend::start("a");
    let t = Tether::start(&format!(
        "  - name: web\n    listen: {{listen}}\n    backends: [{}]\n",
        a.addr
    ));
    let r = get(
        t.listen,
        "/echo",
        &["X-Forwarded-For: 203.0.113.7", "X-Forwarded-Proto: https"],
    )
    .unwrap();
    let seen = r.text();
    let head: Vec<&str> = seen.lines().collect();
    let has = |line: &str| head.iter().any(|l| l.eq_ignore_ascii_case(line));
    assert!(has("X-Forwarded-For: 203.0.113.7, 127.0.0.1"), "{seen}");
    assert!(has("X-Forwarded-Proto: http"), "{seen}");
    assert!(has("X-Forwarded-Host: test.local"), "{seen}");
    assert!(has("Host: test.local"), "{seen}");
}

/// Header names reach the backend as the client wrote them, or lowercase (a few standard ones
/// title-cased) with `preserve_header_case: false`; the request line, the values and the
/// session cookie's removal are the same either way.
#[test]
fn header_name_case_is_kept_unless_told_otherwise() {
    let a = Backend::start("a");
    for (setting, custom, cookie) in [
        (
            "",
            "X-Custom-Thing: Some Value",
            "Cookie: Other=Value; last=1",
        ),
        (
            "    preserve_header_case: false\n",
            "x-custom-thing: Some Value",
            "cookie: Other=Value; last=1",
        ),
    ] {
        let t = Tether::start(&format!(
            "  - name: web\n    listen: {{listen}}\n    backends: [{}]\n{setting}    \
             session_persistence: {{type: Cookie, name: _srv_id}}\n",
            a.addr
        ));
        let token = set_cookie_value(&get(t.listen, "/", &[]).unwrap(), "_srv_id").unwrap();
        let sent_cookie = format!("Cookie: Other=Value; _srv_id={token}; last=1");
        let r = get(
            t.listen,
            "/echo",
            &["X-Custom-Thing: Some Value", &sent_cookie],
        )
        .unwrap();
        // Routed by the token: not re-issued.
        assert_eq!(set_cookie_value(&r, "_srv_id"), None);
        let seen = r.text();
        let head: Vec<&str> = seen.lines().collect();
        assert_eq!(head[0], "GET /echo HTTP/1.1", "{seen}");
        assert!(head.contains(&custom), "{setting:?}: {seen}");
        assert!(head.contains(&cookie), "{setting:?}: {seen}");
        assert!(head.contains(&"Host: test.local"), "{seen}");
        assert!(
            head.iter()
                .any(|l| l.eq_ignore_ascii_case("x-forwarded-proto: http")),
            "{seen}"
        );
        assert!(!seen.contains("_srv_id"), "{seen}");
    }
}

#[test]
fn large_request_bodies_arrive_intact() {
    let a = Backend::start("a");
    let t = Tether::start(&format!(
        "  - name: web\n    listen: {{listen}}\n    backends: [{}]\n",
        a.addr
    ));
    let body: Vec<u8> = (0..1_048_576u32).map(|i| (i * 7 % 256) as u8).collect();
    let expect = format!("len={} fnv={:016x}", body.len(), fnv(&body));

    let mut conn = Conn::open(t.listen).unwrap();
    let head = format!(
        "POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.stream().write_all(head.as_bytes()).unwrap();
    conn.stream().write_all(&body).unwrap();
    let r = conn.read_response().unwrap();
    assert_eq!(r.text(), expect);

    // The same body chunked, on the same connection.
    conn.stream()
        .write_all(b"POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    for chunk in body.chunks(100_000) {
        write!(conn.stream(), "{:x}\r\n", chunk.len()).unwrap();
        conn.stream().write_all(chunk).unwrap();
        conn.stream().write_all(b"\r\n").unwrap();
    }
    conn.stream().write_all(b"0\r\n\r\n").unwrap();
    let r = conn.read_response().unwrap();
    assert_eq!(r.text(), expect);
}

#[test]
fn large_response_bodies_arrive_intact() {
    let a = Backend::start("a");
    let t = Tether::start(&format!(
        "  - name: web\n    listen: {{listen}}\n    backends: [{}]\n",
        a.addr
    ));
    let r = get(t.listen, "/big/3000000", &[]).unwrap();
    let expect: Vec<u8> = (0..3_000_000usize).map(|i| (i % 251) as u8).collect();
    assert_eq!(r.body.len(), expect.len());
    assert!(r.body == expect);
}

#[test]
fn websocket_upgrade_passes_bytes_both_ways() {
    let a = Backend::start("a");
    // Lowercase header names upstream must not break the upgrade either.
    for setting in ["", "    preserve_header_case: false\n"] {
        let t = Tether::start(&format!(
            "  - name: web\n    listen: {{listen}}\n    backends: [{}]\n{setting}",
            a.addr
        ));
        let mut conn = Conn::open(t.listen).unwrap();
        let r = conn
            .send_raw(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
            .unwrap();
        assert_eq!(r.status(), 101, "{setting:?}");
        assert_eq!(r.backend(), "a");
        for msg in [&b"ping one"[..], b"second frame of bytes"] {
            conn.stream().write_all(msg).unwrap();
            let mut got = vec![0u8; msg.len()];
            conn.reader().read_exact(&mut got).unwrap();
            assert_eq!(got, msg);
        }
    }
}

#[test]
fn backend_set_cookie_passes_through() {
    let a = Backend::start("a");
    let t = Tether::start(&format!(
        "  - name: web\n    listen: {{listen}}\n    backends: [{}]\n",
        a.addr
    ));
    let r = get(t.listen, "/", &[]).unwrap();
    assert_eq!(r.head.headers_named("set-cookie"), vec!["app=1; Path=/"]);
}

#[test]
fn admin_endpoints_report_services_and_counters() {
    let a = Backend::start("a");
    let t = Tether::start(&format!(
        "  - name: web\n    listen: {{listen}}\n    backends:\n      - address: {}\n        id: web-1\n        weight: 2\n      - address: 127.0.0.1:{}\n        id: web-2\n        state: draining\n    health_check: {{type: none}}\n",
        a.addr,
        free_port()
    ));
    assert_eq!(get(t.admin, "/healthz", &[]).unwrap().text(), "ok\n");
    let status = t.status();
    for needle in [
        "\"name\": \"web\"",
        "\"id\": \"web-1\"",
        "\"weight\": 2",
        "\"state\": \"draining\"",
        "\"healthy\": true",
    ] {
        assert!(status.contains(needle), "{needle} not in {status}");
    }
    get(t.listen, "/", &[]).unwrap();
    t.assert_metric(
        "tether_requests_total{backend=\"web-1\",cluster=\"web\",code=\"200\",route=\"web\"}",
        1.0,
    );
    let m = t.metrics();
    for series in [
        "tether_requests_total{backend=\"web-1\",cluster=\"web\",code=\"200\",route=\"web\"} 1",
        "tether_request_duration_seconds_count{route=\"web\"} 1",
        "tether_backend_healthy{backend=\"web-1\",cluster=\"web\"} 1",
        "tether_backend_draining{backend=\"web-2\",cluster=\"web\"} 1",
        "tether_backend_draining{backend=\"web-1\",cluster=\"web\"} 0",
        "tether_session_created_total{route=\"web\"} 0",
        "tether_session_routed_total{route=\"web\"} 0",
        "tether_session_failed_open_total{route=\"web\"} 0",
        "tether_session_failed_closed_total{route=\"web\"} 0",
        "tether_session_rejected_total{reason=\"unknown_backend\",route=\"web\"} 0",
    ] {
        assert!(m.contains(series), "{series} not in\n{m}");
    }
    assert_eq!(get(t.admin, "/nope", &[]).unwrap().status(), 404);
    // The access log line names the service and backend, and no draining backend took traffic.
    t.wait_for_log(&["route=web cluster=web backend=web-1 session=none"]);
}
