//! The admin write API (`POST /clusters/{cluster}/backends/{id}`): every status it answers, a
//! drain under load, the drain kept across an upgrade and a restart by the state file,
//! `"config"` restoring the file's values, and the token never in a log.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::gateway::{Gateway, Route, ADMIN_TOKEN};
use common::load::Load;
use common::*;

/// A raw request to the admin listener: `(status, body)`.
fn admin_request(
    admin: SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &[u8],
) -> (u16, String) {
    let mut s = TcpStream::connect(admin).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for h in headers {
        head += h;
        head += "\r\n";
    }
    head += "\r\n";
    s.write_all(head.as_bytes()).unwrap();
    // A peer may answer (413) before it read everything.
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

fn bearer() -> String {
    format!("Authorization: Bearer {ADMIN_TOKEN}")
}

/// `POST` a JSON body with the right token.
fn set(t: &Tether, cluster: &str, id: &str, json: &str) -> (u16, String) {
    admin_request(
        t.admin,
        "POST",
        &format!("/clusters/{cluster}/backends/{id}"),
        &[&bearer()],
        json.as_bytes(),
    )
}

fn two_backends(a: &Backend, b: &Backend) -> Gateway {
    Gateway::new()
        .cluster("app", &[("a", a.addr), ("b", b.addr)])
        .route(Route::new("app").to("app", 1).cookie("sid"))
}

/// `gateway` with the write API on and its runtime states kept in `state`.
fn with_state_file(gateway: Gateway, state: &std::path::Path) -> Gateway {
    gateway
        .admin("token_env: ADMIN_TOKEN")
        .admin(&format!("state_file: \"{}\"", state.display()))
}

/// The `state`, `weight` and `source` of backend `id` in `/status`.
fn shown(t: &Tether, id: &str) -> (String, u64, String) {
    let backends = t.backends_of("app");
    let b = backends.iter().find(|b| b["id"] == id).unwrap();
    (
        b["state"].as_str().unwrap().into(),
        b["weight"].as_u64().unwrap(),
        b["source"].as_str().unwrap().into(),
    )
}

#[test]
fn every_answer_of_the_api() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    // No token configured: every write is refused.
    let t = two_backends(&a, &b).start();
    let (status, body) = set(&t, "app", "a", r#"{"state": "draining"}"#);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("token_file"), "{body}");
    drop(t);

    let t = two_backends(&a, &b).admin("token_env: ADMIN_TOKEN").start();
    let post = |path: &str, headers: &[&str], body: &str| {
        admin_request(t.admin, "POST", path, headers, body.as_bytes())
    };
    let auth = bearer();
    let ok = r#"{"state": "draining"}"#;
    let cases: Vec<(u16, (u16, String))> = vec![
        (401, post("/clusters/app/backends/a", &[], ok)),
        (
            401,
            post(
                "/clusters/app/backends/a",
                &["Authorization: Bearer admin-test-token-012345678"],
                ok,
            ),
        ),
        (
            401,
            post(
                "/clusters/app/backends/a",
                &[&format!("Authorization: Basic {ADMIN_TOKEN}")],
                ok,
            ),
        ),
        (404, post("/clusters/nope/backends/a", &[&auth], ok)),
        (404, post("/clusters/app/backends/nope", &[&auth], ok)),
        (404, post("/clusters/app", &[&auth], ok)),
        (400, post("/clusters/app/backends/a", &[&auth], "{}")),
        (400, post("/clusters/app/backends/a", &[&auth], "not json")),
        (
            400,
            post(
                "/clusters/app/backends/a",
                &[&auth],
                r#"{"state": "sleepy"}"#,
            ),
        ),
        (
            400,
            post("/clusters/app/backends/a", &[&auth], r#"{"weight": 0}"#),
        ),
        (
            400,
            post("/clusters/app/backends/a", &[&auth], r#"["draining"]"#),
        ),
        (
            413,
            post("/clusters/app/backends/a", &[&auth], &"x".repeat(100_000)),
        ),
        (
            405,
            admin_request(t.admin, "GET", "/clusters/app/backends/a", &[&auth], b""),
        ),
        (
            405,
            admin_request(t.admin, "POST", "/metrics", &[&auth], b""),
        ),
    ];
    for (i, (want, (got, body))) in cases.iter().enumerate() {
        assert_eq!(got, want, "case {i}: {body}");
    }
    // Nothing changed so far.
    assert_eq!(shown(&t, "a"), ("active".into(), 1, "config".into()));
    // The backend id percent-encoded (as an ip:port id would be).
    let (status, body) = set(&t, "app", "%61", r#"{"state": "draining", "weight": 3}"#);
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (
            json["id"].as_str(),
            json["state"].as_str(),
            json["weight"].as_u64(),
            json["source"].as_str()
        ),
        (Some("a"), Some("draining"), Some(3), Some("runtime"))
    );
    assert_eq!(shown(&t, "a"), ("draining".into(), 3, "runtime".into()));
    // Admin answers and the tether process are still fine; the token is in no log.
    assert_eq!(get(t.listen, "/", &[]).unwrap().status(), 200);
    assert!(!t.log().contains(ADMIN_TOKEN));
}

#[test]
fn a_drain_under_load_keeps_its_sessions_and_takes_no_new_ones() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let t = two_backends(&a, &b).admin("token_env: ADMIN_TOKEN").start();
    let load = Load::start(t.listen, 4, 2, false);
    eventually(Duration::from_secs(5), "load running", || {
        (load.ok() > 50).then_some(())
    });
    assert_eq!(set(&t, "app", "a", r#"{"state": "draining"}"#).0, 200);
    let routed = |id: &str| {
        t.metric(&format!(
            "tether_backend_sessions_routed_total{{backend=\"{id}\",cluster=\"app\"}}"
        ))
        .unwrap()
    };
    let before = routed("a");
    // New sessions all go to b while a drains ...
    for _ in 0..10 {
        assert_eq!(get(t.listen, "/", &[]).unwrap().backend(), "b");
    }
    // ... and a's sessions keep reaching it (the load checks each response's backend).
    eventually(Duration::from_secs(5), "a's sessions still routed", || {
        (routed("a") > before + 20.0).then_some(())
    });
    let (ok, failed, wrong, _) = load.finish();
    assert_eq!((failed, wrong), (0, 0), "{ok} ok");
    t.assert_metric(
        "tether_backend_draining{backend=\"a\",cluster=\"app\"}",
        1.0,
    );
    // Disabled: no request at all; its sessions move.
    assert_eq!(set(&t, "app", "a", r#"{"state": "disabled"}"#).0, 200);
    let served = a.requests();
    let load = Load::start(t.listen, 4, 0, true);
    eventually(Duration::from_secs(5), "load running", || {
        (load.ok() > 50).then_some(())
    });
    let (_, failed, wrong, _) = load.finish();
    assert_eq!((failed, wrong, a.requests()), (0, 0, served));
}

#[test]
fn the_state_file_keeps_a_drain_across_upgrade_and_restart() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let dir = TempDir::new();
    let state = dir.path("state.json");
    let gw = with_state_file(two_backends(&a, &b), &state);
    let mut t = gw.start();
    assert_eq!(set(&t, "app", "a", r#"{"state": "draining"}"#).0, 200);
    assert_eq!(set(&t, "app", "b", r#"{"weight": 5}"#).0, 200);
    let file = std::fs::read_to_string(&state).unwrap();
    assert!(file.contains("\"draining\""), "{file}");
    // A zero-downtime upgrade reads it ...
    let mut old = gw.reload(&mut t);
    wait_exit(&mut old, Duration::from_secs(15)).expect("old process exits");
    assert_eq!(shown(&t, "a"), ("draining".into(), 1, "runtime".into()));
    assert_eq!(shown(&t, "b"), ("active".into(), 5, "runtime".into()));
    // ... and so does a restart.
    t.restart();
    assert_eq!(shown(&t, "a"), ("draining".into(), 1, "runtime".into()));
    for _ in 0..6 {
        assert_eq!(get(t.listen, "/", &[]).unwrap().backend(), "b");
    }
    // "config" drops the runtime state: the file's values hold again, and stay so.
    assert_eq!(set(&t, "app", "a", r#"{"state": "config"}"#).0, 200);
    assert_eq!(shown(&t, "a"), ("active".into(), 1, "config".into()));
    t.restart();
    assert_eq!(shown(&t, "a"), ("active".into(), 1, "config".into()));
    assert_eq!(shown(&t, "b"), ("active".into(), 5, "runtime".into()));
    assert!(!t.log().contains(ADMIN_TOKEN));
}

#[test]
fn a_config_edited_since_wins_over_the_kept_state() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let dir = TempDir::new();
    let gw = with_state_file(two_backends(&a, &b), &dir.path("state.json"));
    let mut t = gw.start();
    assert_eq!(set(&t, "app", "a", r#"{"state": "draining"}"#).0, 200);
    // The operator edits the file: backend a is now `disabled` there; the reload takes it.
    let edited = gw.clone().backend_state("app", "a", "disabled");
    let mut old = edited.reload(&mut t);
    wait_exit(&mut old, Duration::from_secs(15)).expect("old process exits");
    assert_eq!(shown(&t, "a"), ("disabled".into(), 1, "config".into()));
}
