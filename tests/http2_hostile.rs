//! Hostile HTTP/2 clients (frames written by hand, `tests/clients/h2_abuse.py`): rapid resets,
//! more streams than allowed, header floods, endless CONTINUATION, frames out of order. Each is
//! bounded, never crashes tether, and never degrades another client's service.

mod common;

use common::gateway::{Gateway, Route};
use common::*;
use serde_json::Value;

struct Setup {
    t: Tether,
    backend: Backend,
    h2c: std::net::SocketAddr,
}

fn setup() -> Setup {
    let backend = Backend::start("a");
    let t = Gateway::new()
        .http2("public", true)
        .cluster("app", &[("a", backend.addr)])
        .route(Route::new("app").to("app", 1).cookie("sid"))
        .start();
    let h2c = t.listen;
    Setup { t, backend, h2c }
}

fn abuse(s: &Setup, mode: &str) -> Value {
    let out = run_client(
        "h2_abuse.py",
        &["127.0.0.1", &s.h2c.port().to_string(), mode],
        "",
    );
    serde_json::from_str(&out).unwrap()
}

/// Another client is served normally, and tether has not crashed.
#[track_caller]
fn others_are_served(s: &Setup) {
    let r = Curl::new()
        .prior_knowledge()
        .get(&format!("http://{}/", s.h2c))
        .unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "a"));
    let log = s.t.log();
    assert!(!log.contains("panicked"), "{log}");
}

const ENHANCE_YOUR_CALM: u64 = 0xb;
const PROTOCOL_ERROR: u64 = 0x1;

#[test]
fn rapid_resets_get_the_connection_closed_without_reaching_the_backend() {
    let s = setup();
    let r = abuse(&s, "rapid_reset");
    assert_eq!(r["goaway"], ENHANCE_YOUR_CALM, "{r}");
    assert!(
        s.backend.requests() < 50,
        "{} reached the backend",
        s.backend.requests()
    );
    others_are_served(&s);
    // Resets that come once each request was taken up: still far faster than completions.
    let before = s.backend.requests();
    let r = abuse(&s, "reset_after_accept");
    assert!(
        r["goaway"] == ENHANCE_YOUR_CALM || r["closed"] == true,
        "still connected after {r}"
    );
    assert!(r["sent"].as_u64().unwrap() < 1000, "{r}");
    assert!(
        s.backend.requests() - before < 300,
        "{}",
        s.backend.requests() - before
    );
    s.t.wait_for_log(&["HTTP/2 client 127.0.0.1: "]);
    others_are_served(&s);
}

#[test]
fn at_most_100_streams_at_once_the_rest_refused() {
    let s = setup();
    let r = abuse(&s, "too_many");
    assert_eq!(r["answered"], 100, "{r}");
    assert_eq!(r["refused"], 50, "{r}");
    assert!(r["statuses"].as_array().unwrap().iter().all(|c| c == 200));
    others_are_served(&s);
}

#[test]
fn header_lists_beyond_64_kib_get_431_or_the_connection_closed() {
    let s = setup();
    // Oversized once decoded: 431 on that stream, the connection still serves.
    let r = abuse(&s, "header_list");
    assert_eq!(r["statuses"][0], 431, "{r}");
    assert_eq!(r["last_stream_answered"], true, "{r}");
    // An oversized block (CONTINUATION frames): the connection goes.
    let r = abuse(&s, "header_flood");
    assert_eq!(r["goaway"], ENHANCE_YOUR_CALM, "{r}");
    // A block that never ends: cut off early, not buffered without end.
    let r = abuse(&s, "continuation");
    assert_eq!(r["goaway"], ENHANCE_YOUR_CALM, "{r}");
    assert!(
        r["continuation_frames_sent"].as_u64().unwrap() < 20_000,
        "{r}"
    );
    assert_eq!(s.backend.requests(), 1, "only the request after the 431");
    others_are_served(&s);
}

#[test]
fn frames_out_of_order_are_a_protocol_error() {
    let s = setup();
    let r = abuse(&s, "out_of_order");
    assert_eq!(r["goaway"], PROTOCOL_ERROR, "{r}");
    others_are_served(&s);
}
