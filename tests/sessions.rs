//! Session persistence with the real binary and real backends: the seed demonstrations of the
//! FSM guide, Envoy Gateway (cookie and header), Envoy's strict mode, idle timeouts, several
//! instances sharing keys, and upstream hygiene.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;

const KEY: &str = "an-example-session-key-of-32-bytes-or-more";

fn keys_yaml() -> &'static str {
    "session_keys:\n  - id: k1\n    secret_env: TEST_SESSION_KEY\n"
}

/// The `backends:` of a service, each backend's id its name.
fn backends_yaml(backends: &[&Backend]) -> String {
    let mut y = String::from("    backends:\n");
    for b in backends {
        y.push_str(&format!(
            "      - address: {}\n        id: {}\n",
            b.addr,
            b.name()
        ));
    }
    y
}

/// Backends b1..bn and a service `name` over them with this `session_persistence` (its lines,
/// indented by 6).
fn backends_and_service(n: usize, name: &str, session: &str) -> (Vec<Backend>, String) {
    let bs: Vec<Backend> = (1..=n).map(|i| Backend::start(&format!("b{i}"))).collect();
    let refs: Vec<&Backend> = bs.iter().collect();
    let yaml = format!(
        "  - name: {name}\n    listen: {{listen}}\n{}    session_persistence:\n{session}",
        backends_yaml(&refs)
    );
    (bs, yaml)
}

fn cookie_header(name: &str, value: &str) -> String {
    format!("Cookie: {name}={value}")
}

/// FSM guide: `_srv_id`, `absolute_timeout: 600`, Permanent.
#[test]
fn fsm_guide_cookie_flow() {
    let hello = Backend::start("hello");
    let unavailable = Backend::start("unavailable");
    unavailable.set_status(503);
    let t = Tether::start(&format!(
        "  - name: demo\n    listen: {{listen}}\n{}    session_persistence:\n      type: Cookie\n      name: _srv_id\n      absolute_timeout: 600\n      cookie:\n        lifetime_type: Permanent\n",
        backends_yaml(&[&hello, &unavailable])
    ));
    // Without a cookie both answers alternate, each with a new session cookie.
    let first = get(t.listen, "/", &[]).unwrap();
    let second = get(t.listen, "/", &[]).unwrap();
    let statuses: HashSet<u16> = [first.status(), second.status()].into();
    assert_eq!(statuses, HashSet::from([200, 503]));
    let sent_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;

    // tether's Set-Cookie is the first; the backend's own follows untouched.
    let (name, value, attrs) = first_set_cookie(&first).expect("Set-Cookie");
    assert_eq!(name, "_srv_id");
    assert_eq!(first.head.headers_named("set-cookie")[1], "app=1; Path=/");
    let attr = |k: &str| attrs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(attr("path").as_deref(), Some("/"));
    assert_eq!(attr("max-age").as_deref(), Some("600"));
    assert!(attr("httponly").is_some());
    assert_eq!(attr("samesite").as_deref(), Some("Lax"));
    let expires = httpdate::parse_http_date(&attr("expires").expect("Expires")).unwrap();
    let expires = expires.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!(
        (expires - (sent_at + 600)).abs() <= 2,
        "Expires {expires} vs now {sent_at}"
    );

    // Three requests with that cookie get the same answer, and no new cookie.
    for _ in 0..3 {
        let r = get(t.listen, "/", &[&cookie_header(&name, &value)]).unwrap();
        assert_eq!((r.status(), r.text()), (first.status(), first.text()));
        assert_eq!(set_cookie_value(&r, "_srv_id"), None);
    }
    t.assert_metric("tether_session_routed_total{route=\"demo\"}", 3.0);
    t.assert_metric("tether_session_created_total{route=\"demo\"}", 2.0);
    let log = t.wait_for_log(&[
        "route=demo cluster=demo backend=hello session=routed",
        "route=demo cluster=demo backend=unavailable session=routed",
    ]);
    assert!(!log.contains(&value), "a token value reached the log");
}

/// Envoy Gateway: four backends, cookie `Session-A`, short absolute timeout.
#[test]
fn envoy_gateway_cookie_sticks_then_expires() {
    let (_backends, services) = backends_and_service(4, "eg", "      type: Cookie\n      name: Session-A\n      absolute_timeout: 2s\n      cookie:\n        lifetime_type: Permanent\n");
    let t = Tether::start(&services);
    let first = get(t.listen, "/", &[]).unwrap();
    let token = set_cookie_value(&first, "Session-A").unwrap();
    let (_, _, attrs) = first_set_cookie(&first).unwrap();
    assert!(attrs.contains(&("max-age".into(), "2".into())), "{attrs:?}");
    let started = Instant::now();
    for _ in 0..5 {
        let r = get(t.listen, "/", &[&cookie_header("Session-A", &token)]).unwrap();
        assert_eq!(r.backend(), first.backend());
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "machine too slow for this timeout"
    );
    // After expiry the same cookie no longer pins: each request is a new session.
    eventually(Duration::from_secs(5), "token expired", || {
        let r = get(t.listen, "/", &[&cookie_header("Session-A", &token)]).ok()?;
        set_cookie_value(&r, "Session-A").map(|_| ())
    });
    let mut seen = HashSet::new();
    for _ in 0..8 {
        let r = get(t.listen, "/", &[&cookie_header("Session-A", &token)]).unwrap();
        assert!(set_cookie_value(&r, "Session-A").is_some());
        seen.insert(r.backend());
    }
    assert!(seen.len() >= 3, "expired token still pins: {seen:?}");
    let expired = t.metric("tether_session_rejected_total{reason=\"expired\",route=\"eg\"}");
    assert!(expired.unwrap() >= 8.0);
}

/// Envoy Gateway header mode: header `Session-A`.
#[test]
fn envoy_gateway_header_sticks() {
    let (_backends, services) = backends_and_service(
        4,
        "hdr",
        "      type: Header\n      name: Session-A\n      absolute_timeout: 1h\n",
    );
    let t = Tether::start(&services);
    let first = get(t.listen, "/", &[]).unwrap();
    let token = first
        .header("session-a")
        .expect("session header")
        .to_string();
    assert_eq!(set_cookie_value(&first, "Session-A"), None);
    for _ in 0..5 {
        let r = get(t.listen, "/", &[&format!("Session-A: {token}")]).unwrap();
        assert_eq!(r.backend(), first.backend());
        assert!(
            r.header("session-a").is_none(),
            "a valid token is not re-sent"
        );
    }
    // The header does not reach the backend.
    let echo = get(t.listen, "/echo", &[&format!("Session-A: {token}")]).unwrap();
    assert!(
        !echo.text().to_ascii_lowercase().contains("session-a"),
        "{}",
        echo.text()
    );
    // Without it requests spread.
    let seen: HashSet<String> = (0..8)
        .map(|_| get(t.listen, "/", &[]).unwrap().backend())
        .collect();
    assert_eq!(seen.len(), 4);
}

fn strict_setup(strict: bool, health: &str) -> (Backend, Backend, Tether) {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let t = Tether::start(&format!(
        "  - name: s\n    listen: {{listen}}\n{}    health_check: {health}\n    session_persistence:\n      type: Cookie\n      name: sid\n      strict: {strict}\n",
        backends_yaml(&[&a, &b])
    ));
    (a, b, t)
}

/// Pins a session, returning the token and the backend that holds it.
fn pin(t: &Tether) -> (String, String) {
    let r = get(t.listen, "/", &[]).unwrap();
    (set_cookie_value(&r, "sid").unwrap(), r.backend())
}

/// Envoy strict: false. The pinned backend stops; health takes it out; the session re-pins.
#[test]
fn non_strict_session_fails_open_to_another_backend() {
    let (a, b, t) = strict_setup(false, "{interval: 300ms, timeout: 300ms}");
    let (token, pinned) = pin(&t);
    let r = get(t.listen, "/", &[&cookie_header("sid", &token)]).unwrap();
    assert_eq!(r.backend(), pinned);
    let (dead, other) = if pinned == "a" { (&a, "b") } else { (&b, "a") };
    dead.stop();
    eventually(Duration::from_secs(4), "pinned backend unhealthy", || {
        (t.metric(&format!(
            "tether_backend_healthy{{backend=\"{pinned}\",cluster=\"s\"}}"
        )) == Some(0.0))
        .then_some(())
    });
    let r = get(t.listen, "/", &[&cookie_header("sid", &token)]).unwrap();
    assert_eq!((r.status(), r.backend().as_str()), (200, other));
    let new_token = set_cookie_value(&r, "sid").expect("re-pinned token");
    assert_ne!(new_token, token);
    let r = get(t.listen, "/", &[&cookie_header("sid", &new_token)]).unwrap();
    assert_eq!(r.backend(), other);
    t.assert_metric("tether_session_failed_open_total{route=\"s\"}", 1.0);
    t.assert_metric("tether_session_routed_total{route=\"s\"}", 2.0);
}

/// Envoy strict: true. The pinned backend stops: 503, the token kept, failed_closed counted.
#[test]
fn strict_session_fails_closed_with_503() {
    let (a, b, t) = strict_setup(true, "{interval: 300ms, timeout: 300ms}");
    let (token, pinned) = pin(&t);
    let dead = if pinned == "a" { &a } else { &b };
    dead.stop();
    eventually(Duration::from_secs(4), "pinned backend unhealthy", || {
        (t.metric(&format!(
            "tether_backend_healthy{{backend=\"{pinned}\",cluster=\"s\"}}"
        )) == Some(0.0))
        .then_some(())
    });
    let r = get(t.listen, "/", &[&cookie_header("sid", &token)]).unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(set_cookie_value(&r, "sid"), None, "strict keeps the token");
    t.assert_metric("tether_session_failed_closed_total{route=\"s\"}", 1.0);
    // A request without a token is still served by the live backend.
    assert_eq!(get(t.listen, "/", &[]).unwrap().status(), 200);
}

/// A refused connection to the session's backend counts as unavailable, before any health
/// check notices (here there is none).
#[test]
fn refused_connection_to_session_backend_fails_open_or_closed() {
    for strict in [false, true] {
        let (a, b, t) = strict_setup(strict, "{type: none}");
        let (token, pinned) = pin(&t);
        let (dead, other) = if pinned == "a" { (&a, "b") } else { (&b, "a") };
        dead.stop();
        let r = get(t.listen, "/", &[&cookie_header("sid", &token)]).unwrap();
        if strict {
            assert_eq!(r.status(), 503);
            assert_eq!(set_cookie_value(&r, "sid"), None);
            t.assert_metric("tether_session_failed_closed_total{route=\"s\"}", 1.0);
        } else {
            assert_eq!((r.status(), r.backend().as_str()), (200, other));
            assert!(set_cookie_value(&r, "sid").is_some());
            t.assert_metric("tether_session_failed_open_total{route=\"s\"}", 1.0);
        }
    }
}

/// Idle timeout: a session used every few hundred ms outlives it; left idle, it ends.
#[test]
fn idle_timeout_ends_only_unused_sessions() {
    let (_backends, services) = backends_and_service(
        3,
        "idle",
        "      type: Cookie\n      name: sid\n      idle_timeout: 2s\n",
    );
    let t = Tether::start(&services);
    let first = get(t.listen, "/", &[]).unwrap();
    let mut token = set_cookie_value(&first, "sid").unwrap();
    let began = Instant::now();
    let mut refreshed = 0;
    // Used every 300 ms for 5 s: more than twice the idle timeout.
    while began.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(300));
        let r = get(t.listen, "/", &[&cookie_header("sid", &token)]).unwrap();
        assert_eq!(r.backend(), first.backend(), "session lost while in use");
        if let Some(new) = set_cookie_value(&r, "sid") {
            token = new;
            refreshed += 1;
        }
    }
    assert!(refreshed >= 2, "token never refreshed");
    // Left idle for longer than idle_timeout, it ends.
    std::thread::sleep(Duration::from_millis(3100));
    let r = get(t.listen, "/", &[&cookie_header("sid", &token)]).unwrap();
    assert!(
        set_cookie_value(&r, "sid").is_some(),
        "idle session was honoured"
    );
    t.assert_metric(
        "tether_session_rejected_total{reason=\"idle\",route=\"idle\"}",
        1.0,
    );
}

/// On a kept-alive connection a token is verified once and then remembered; its lifetimes still
/// apply to every request: a client that keeps sending it, never taking the refreshed one, loses
/// the session at `idle_timeout`.
#[test]
fn remembered_token_still_goes_idle() {
    let (_backends, services) = backends_and_service(
        2,
        "idle",
        "      type: Cookie\n      name: sid\n      idle_timeout: 1s\n",
    );
    let t = Tether::start(&services);
    let first = get(t.listen, "/", &[]).unwrap();
    let cookie = cookie_header("sid", &set_cookie_value(&first, "sid").unwrap());
    let mut conn = Conn::open(t.listen).unwrap();
    let routed = conn.get("/", &[&cookie]).unwrap();
    assert_eq!(routed.backend(), first.backend());
    assert_eq!(set_cookie_value(&routed, "sid"), None);
    let idle = "tether_session_rejected_total{reason=\"idle\",route=\"idle\"}";
    let ended = eventually(Duration::from_secs(5), "the same token to go idle", || {
        let r = conn.get("/", &[&cookie]).unwrap();
        set_cookie_value(&r, "sid").map(|_| r)
    });
    assert_eq!(ended.status(), 200);
    t.assert_metric(idle, 1.0);
    assert!(
        t.metric("tether_session_routed_total{route=\"idle\"}")
            .unwrap()
            >= 2.0,
        "the token was honoured on the connection before it went idle"
    );
}

/// Two processes with the same keys honour each other's tokens; a different key does not.
#[test]
fn instances_sharing_keys_honour_each_others_tokens() {
    let (_backends, services) = backends_and_service(
        4,
        "web",
        "      type: Cookie\n      name: sid\n      absolute_timeout: 1h\n",
    );
    let env = [("TEST_SESSION_KEY", KEY)];
    let t1 = Tether::start_full(keys_yaml(), &services, &env);
    let t2 = Tether::start_full(keys_yaml(), &services, &env);
    for _ in 0..4 {
        let r = get(t1.listen, "/", &[]).unwrap();
        let token = set_cookie_value(&r, "sid").unwrap();
        for _ in 0..3 {
            let r2 = get(t2.listen, "/", &[&cookie_header("sid", &token)]).unwrap();
            assert_eq!(r2.backend(), r.backend());
            assert_eq!(set_cookie_value(&r2, "sid"), None);
        }
    }
    let other_key = [(
        "TEST_SESSION_KEY",
        "a-completely-different-key-of-32-bytes!",
    )];
    let t3 = Tether::start_full(keys_yaml(), &services, &other_key);
    let token = set_cookie_value(&get(t1.listen, "/", &[]).unwrap(), "sid").unwrap();
    let r = get(t3.listen, "/", &[&cookie_header("sid", &token)]).unwrap();
    assert!(set_cookie_value(&r, "sid").is_some());
    t3.assert_metric(
        "tether_session_rejected_total{reason=\"bad_mac\",route=\"web\"}",
        1.0,
    );
}

/// A session beats the weights; without one the weights hold.
#[test]
fn sessions_beat_weights() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let t = Tether::start(&format!(
        "  - name: w\n    listen: {{listen}}\n    backends:\n      - {{address: {}, id: a, weight: 7}}\n      - {{address: {}, id: b, weight: 3}}\n    session_persistence: {{type: Cookie, name: sid}}\n",
        a.addr, b.addr
    ));
    let token_b = eventually(Duration::from_secs(5), "a session on b", || {
        let r = get(t.listen, "/", &[]).ok()?;
        (r.backend() == "b")
            .then(|| set_cookie_value(&r, "sid"))
            .flatten()
    });
    for _ in 0..20 {
        let r = get(t.listen, "/", &[&cookie_header("sid", &token_b)]).unwrap();
        assert_eq!(r.backend(), "b");
    }
}

/// Our cookie (only ours) is removed upstream; the rest of Cookie stays byte for byte. Bad
/// tokens of every kind are new sessions, never errors.
#[test]
fn cookie_hygiene_and_bad_tokens() {
    let a = Backend::start("a");
    let t = Tether::start(&format!(
        "  - name: h\n    listen: {{listen}}\n    backends: [{}]\n    session_persistence: {{type: Cookie, name: sid}}\n",
        a.addr
    ));
    let (token, _) = pin(&t);
    let echo = get(
        t.listen,
        "/echo",
        &[
            &format!("Cookie: a=1; sid={token};  b=\"two\""),
            "Cookie: sid=x",
            "Cookie: c=3",
        ],
    )
    .unwrap();
    let text = echo.text();
    let cookies: Vec<&str> = text
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("cookie:"))
        .collect();
    assert_eq!(
        cookies,
        vec!["Cookie: a=1;  b=\"two\"", "Cookie: c=3"],
        "{text}"
    );
    assert!(!text.contains(&token));
    // The first valid token wins among many cookies of the name.
    let r = get(
        t.listen,
        "/",
        &[&format!("Cookie: sid=garbage; sid={token}")],
    )
    .unwrap();
    assert_eq!(set_cookie_value(&r, "sid"), None);

    let long = "A".repeat(4000);
    let many: String = (0..500).map(|i| format!("c{i}=v{i}; ")).collect();
    let bad = [
        "Cookie: sid=".to_string(),
        "Cookie: sid=\"\"".to_string(),
        format!("Cookie: sid={}", &token[..60]),
        format!("Cookie: sid={long}"),
        format!("Cookie: {many}sid=nope"),
        format!(
            "Cookie: sid={}",
            token.replace(|c: char| c.is_ascii_digit(), "x")
        ),
    ];
    for h in &bad {
        let r = get(t.listen, "/", &[h]).unwrap();
        assert_eq!(r.status(), 200, "{h:.80}");
        assert!(set_cookie_value(&r, "sid").is_some(), "{h:.80}");
    }
}

/// WebSocket upgrades are sticky like any request: a session's upgrade goes to its backend,
/// and an upgrade that starts a session gets its cookie on the 101 (Traefik's bug #3343).
#[test]
fn websocket_upgrades_are_sticky() {
    let (_backends, services) =
        backends_and_service(3, "ws", "      type: Cookie\n      name: sid\n");
    let t = Tether::start(&services);
    let upgrade = |cookie: Option<&str>| {
        let mut req = String::from(
            "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
        );
        if let Some(c) = cookie {
            req.push_str(&format!("Cookie: sid={c}\r\n"));
        }
        req.push_str("\r\n");
        Conn::open(t.listen)
            .unwrap()
            .send_raw(req.as_bytes())
            .unwrap()
    };
    // An upgrade without a session starts one: the cookie comes on the 101.
    let first = upgrade(None);
    assert_eq!(first.status(), 101);
    let token = set_cookie_value(&first, "sid").expect("session cookie on the 101");
    // Upgrades and plain requests with it stay on that backend.
    for _ in 0..4 {
        let r = upgrade(Some(&token));
        assert_eq!((r.status(), r.backend()), (101, first.backend()));
        assert_eq!(set_cookie_value(&r, "sid"), None);
        let r = get(t.listen, "/", &[&cookie_header("sid", &token)]).unwrap();
        assert_eq!(r.backend(), first.backend());
    }
}
