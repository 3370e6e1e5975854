//! Hostile requests against the real binary: none gets a 5xx of tether's making, none steers
//! traffic, nothing a client sends reaches a response header, and tether keeps serving.

mod common;

use std::io::Write;

use common::*;

fn start(a: &Backend, b: &Backend) -> Tether {
    start_with(a, b, true)
}

/// `preserve_header_case` of the `web` service as given.
fn start_with(a: &Backend, b: &Backend, preserve_header_case: bool) -> Tether {
    Tether::start(&format!(
        "  - name: web\n    listen: {{listen}}\n    backends:\n      - {{address: {}, id: a}}\n      - {{address: {}, id: b}}\n    preserve_header_case: {preserve_header_case}\n    session_persistence: {{type: Cookie, name: sid, absolute_timeout: 1h}}\n  - name: api\n    listen: 127.0.0.1:{}\n    backends:\n      - {{address: {}, id: a}}\n      - {{address: {}, id: b}}\n    session_persistence: {{type: Header, name: X-Session, absolute_timeout: 1h}}\n",
        a.addr,
        b.addr,
        free_port(),
        a.addr,
        b.addr
    ))
}

/// Sends raw bytes on a new connection and returns the response, if any.
fn raw(t: &Tether, bytes: &[u8]) -> Option<Response> {
    let mut c = Conn::open(t.listen).ok()?;
    c.stream().write_all(bytes).ok()?;
    c.read_response().ok()
}

#[test]
fn thousands_of_cookies_are_a_new_session() {
    for preserve_header_case in [true, false] {
        thousands_of_cookies_with(preserve_header_case);
    }
}

fn thousands_of_cookies_with(preserve_header_case: bool) {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let t = start_with(&a, &b, preserve_header_case);
    let one_line: String = (0..3000).map(|i| format!("c{i}=v{i}; ")).collect();
    let r = get(t.listen, "/", &[&format!("Cookie: {one_line}sid=forged")]).unwrap();
    assert_eq!(r.status(), 200);
    assert!(set_cookie_value(&r, "sid").is_some());

    // Many Cookie lines, each with our name: at most a few are even tried, none is valid.
    let lines: Vec<String> = (0..200).map(|i| format!("Cookie: sid=x{i}")).collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let r = get(t.listen, "/", &refs).unwrap();
    assert_eq!(r.status(), 200);
    assert!(set_cookie_value(&r, "sid").is_some());
    // One rejection counted per request, whatever the number of bad tokens in it.
    t.assert_metric(
        "tether_session_rejected_total{reason=\"malformed\",route=\"web\"}",
        2.0,
    );
}

#[test]
fn injection_attempts_never_reach_a_response_header() {
    for preserve_header_case in [true, false] {
        injection_attempts_with(preserve_header_case);
    }
}

fn injection_attempts_with(preserve_header_case: bool) {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let t = start_with(&a, &b, preserve_header_case);
    let attempts: [&[u8]; 5] = [
        b"GET / HTTP/1.1\r\nHost: x\r\nCookie: sid=abc%0d%0aX-Evil: 1\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nCookie: sid=abc\rX-Evil: 1\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nCookie: sid=abc\nX-Evil: 1\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nCookie: sid=\xff\xfe\x00\x01; a=\xc3\x28\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Session: abc\r\n X-Evil: folded\r\nConnection: close\r\n\r\n",
    ];
    for bytes in attempts {
        let shown = String::from_utf8_lossy(bytes).into_owned();
        // No response at all means the parser closed the connection: also a refusal.
        if let Some(r) = raw(&t, bytes) {
            assert!(r.status() < 500, "{} for {shown:?}", r.status());
            assert!(r.header("x-evil").is_none(), "{shown:?}");
            for (_, v) in &r.head.headers {
                assert!(
                    !v.contains("Evil") && !v.contains("abc"),
                    "{v} for {shown:?}"
                );
            }
        }
    }
    // Still serving.
    assert_eq!(get(t.listen, "/", &[]).unwrap().status(), 200);
}

#[test]
fn tokens_of_another_route_do_not_steer() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let t = start(&a, &b);
    let web_token = set_cookie_value(&get(t.listen, "/", &[]).unwrap(), "sid").unwrap();
    // The api service (header sessions) listens on the second address: read it from /status.
    let api_listen = t.listener_address("api");
    let r = get(api_listen, "/", &[&format!("X-Session: {web_token}")]).unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.header("x-session").is_some(), "a new session is issued");
    t.assert_metric(
        "tether_session_rejected_total{reason=\"other_route\",route=\"api\"}",
        1.0,
    );
}

#[test]
fn header_sections_beyond_the_limit_get_431_and_are_not_forwarded() {
    let a = Backend::start("a");
    let t = Tether::start_full(
        "limits:\n  max_request_header_bytes: 4096\n",
        &format!(
            "  - name: web\n    listen: {{listen}}\n    backends: [{}]\n",
            a.addr
        ),
        &[],
    );
    let fits = format!("X-Fill: {}", "f".repeat(3000));
    assert_eq!(get(t.listen, "/", &[&fits]).unwrap().status(), 200);
    let before = a.requests();
    let too_big = format!("X-Fill: {}", "f".repeat(5000));
    assert_eq!(get(t.listen, "/", &[&too_big]).unwrap().status(), 431);
    let many: Vec<String> = (0..100)
        .map(|i| format!("X-H{i}: {}", "v".repeat(40)))
        .collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_eq!(get(t.listen, "/", &refs).unwrap().status(), 431);
    assert_eq!(
        a.requests(),
        before,
        "an oversized request reached the backend"
    );
    t.assert_metric(
        "tether_requests_total{backend=\"none\",cluster=\"none\",code=\"431\",route=\"web\"}",
        2.0,
    );
}

#[test]
fn an_enormous_header_section_is_refused_not_forwarded() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let t = start(&a, &b);
    let mut req = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    req.extend(std::iter::repeat_n(b'a', 2_000_000));
    req.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    let before = a.requests() + b.requests();
    if let Some(r) = raw(&t, &req) {
        assert!((400..500).contains(&r.status()), "{}", r.status());
    }
    assert_eq!(
        a.requests() + b.requests(),
        before,
        "forwarded to a backend"
    );
    assert_eq!(get(t.listen, "/", &[]).unwrap().status(), 200);
}

/// Tokens minted with the right key but impossible or stale times (from the future, expired,
/// idle), and with another key: each is a new session, counted by reason, never an error.
#[test]
fn tokens_from_the_future_the_past_and_another_key_are_new_sessions() {
    use std::sync::Arc;
    use tether::config::SessionKey;
    use tether::token::{KeyRing, Lifetimes, RouteCodec};

    const SECRET: &str = "hostile-test-key-0123456789abcdef0123";
    let a = Backend::start("a");
    let t = Tether::start_full(
        "session_keys:\n  - id: k1\n    secret_env: HOSTILE_KEY\n",
        &format!(
            "  - name: web\n    listen: {{listen}}\n    backends:\n      - {{address: {}, id: a}}\n    session_persistence: {{type: Cookie, name: sid, absolute_timeout: 1h, idle_timeout: 10m}}\n",
            a.addr
        ),
        &[("HOSTILE_KEY", SECRET)],
    );
    // Tokens of route `web` for its backend `a`, made with `secret`.
    let mint = |secret: &str| {
        let ring = Arc::new(
            KeyRing::new(&[SessionKey {
                id: "k1".into(),
                secret: secret.as_bytes().to_vec(),
            }])
            .unwrap(),
        );
        let tag = ring.backend_tags("web", "a")[0];
        let codec = RouteCodec::new(ring, "web", Lifetimes::default());
        move |start: u32, last: u32| codec.encode(&tag, start, last)
    };
    let ours = mint(SECRET);
    let now = tether::session::unix_now();
    // The minted valid token is honoured: the binary and the library agree.
    let valid = ours(now - 5, now - 5);
    let r = get(t.listen, "/", &[&format!("Cookie: sid={valid}")]).unwrap();
    assert_eq!((r.status(), set_cookie_value(&r, "sid")), (200, None));

    let cases = [
        (ours(now + 3600, now + 3600), "malformed"),
        (ours(now - 7200, now - 60), "expired"),
        (ours(now - 1800, now - 1200), "idle"),
        (
            mint("another-key-entirely-0123456789abcdef")(now, now),
            "bad_mac",
        ),
    ];
    for (token, reason) in &cases {
        let r = get(t.listen, "/", &[&format!("Cookie: sid={token}")]).unwrap();
        assert_eq!(r.status(), 200, "{reason}");
        assert!(
            set_cookie_value(&r, "sid").is_some(),
            "{reason}: not a new session"
        );
        t.assert_metric(
            &format!("tether_session_rejected_total{{reason=\"{reason}\",route=\"web\"}}"),
            1.0,
        );
    }
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

/// A barrage of hostile requests leaves tether's memory where it was.
#[test]
fn memory_stays_bounded_under_hostile_requests() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let t = start(&a, &b);
    let many: String = (0..2000).map(|i| format!("c{i}=v{i}; ")).collect();
    let big = format!("X-Big: {}", "x".repeat(60_000));
    let lines: Vec<String> = (0..100).map(|i| format!("Cookie: sid=bad{i}")).collect();
    let barrage = |rounds: usize| {
        for _ in 0..rounds {
            let mut h: Vec<&str> = lines.iter().map(String::as_str).collect();
            let cookies = format!("Cookie: {many}sid=nope");
            h.push(&cookies);
            assert!(get(t.listen, "/", &h).unwrap().status() < 500);
            assert!(get(t.listen, "/", &[&big]).unwrap().status() < 500);
        }
    };
    barrage(100); // warm-up: pools and allocator caches settle
    let before = rss_kib(t.child.id());
    barrage(400);
    let after = rss_kib(t.child.id());
    eprintln!("RSS before {before} KiB, after 800 more hostile requests {after} KiB");
    assert!(
        after < before + 32 * 1024,
        "RSS grew from {before} to {after} KiB"
    );
}
