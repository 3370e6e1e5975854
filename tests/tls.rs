//! TLS termination against the real binary, with real clients: certificates by SNI, versions and
//! suites, ALPN, sessions over HTTPS in HTTP/1.1 and HTTP/2, handshakes that never finish or
//! arrive a byte at a time, and the redirect from plain HTTP.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::gateway::{Gateway, Route};
use common::*;

/// A gateway with one TLS listener, `public`, serving `certs`, routing to backends `a` and `b`
/// with cookie sessions.
fn https_gateway(certs: &[&CertFiles], a: &Backend, b: &Backend) -> Gateway {
    Gateway::new()
        .tls("public", certs)
        .cluster("app", &[("a", a.addr), ("b", b.addr)])
        .route(Route::new("app").to("app", 1).cookie("sid"))
}

#[test]
fn the_certificate_is_chosen_by_sni_exact_before_wildcard_else_the_first() {
    let ca = TestCa::new();
    let shop = ca.issue("shop", &["shop.test"]);
    let wild = ca.issue("wild", &["*.api.test"]);
    let exact = ca.issue("exact", &["x.api.test"]);
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let t = https_gateway(&[&shop, &wild, &exact], &a, &b).start();
    for (sni, cn) in [
        (Some("shop.test"), "shop"),
        (Some("y.api.test"), "wild"),
        (Some("Y.API.TEST"), "wild"),
        (Some("x.api.test"), "exact"),
        // A wildcard covers one label exactly; anything else gets the first certificate.
        (Some("api.test"), "shop"),
        (Some("z.y.api.test"), "shop"),
        (Some("unknown.test"), "shop"),
        (None, "shop"),
    ] {
        let hs = s_client(t.listen, sni, &[]);
        assert_eq!(
            hs.subject_cn.as_deref(),
            Some(cn),
            "SNI {sni:?}:\n{}",
            hs.output
        );
    }
    // The chains verify against the CA for the names they were chosen for.
    for host in ["shop.test", "y.api.test", "x.api.test"] {
        let r = Curl::new()
            .ca(&ca.ca_file())
            .resolve(host, t.listen)
            .get(&format!("https://{host}:{}/", t.listen.port()))
            .unwrap_or_else(|e| panic!("{host}: {e}"));
        assert_eq!(r.status, 200, "{host}");
    }
}

#[test]
fn only_tls_12_and_13_with_forward_secret_aead_suites() {
    let ca = TestCa::new();
    let cert = ca.issue("shop", &["shop.test"]);
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let t = https_gateway(&[&cert], &a, &b)
        .listener("modern")
        .tls("modern", &[&cert])
        .min_version("modern", "1.3")
        .start();
    let sni = Some("shop.test");
    let version = |addr, args: &[&str]| s_client(addr, sni, args).version;
    assert_eq!(version(t.listen, &[]).as_deref(), Some("TLSv1.3"));
    assert_eq!(version(t.listen, &["-tls1_2"]).as_deref(), Some("TLSv1.2"));
    for old in ["-tls1_1", "-tls1"] {
        // OpenSSL 3 may not even offer these at its default security level: either way no
        // handshake.
        let hs = s_client(t.listen, sni, &[old, "-cipher", "DEFAULT@SECLEVEL=0"]);
        assert_eq!(hs.version, None, "{old}:\n{}", hs.output);
    }
    // Without forward secrecy (RSA key exchange) or without AEAD (CBC): refused.
    for suite in [
        "AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES128-SHA",
        "ECDHE-RSA-AES256-SHA384",
    ] {
        let hs = s_client(t.listen, sni, &["-tls1_2", "-cipher", suite]);
        assert_eq!(hs.version, None, "{suite}:\n{}", hs.output);
    }
    let hs = s_client(
        t.listen,
        sni,
        &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"],
    );
    assert_eq!(hs.version.as_deref(), Some("TLSv1.2"), "{}", hs.output);
    // min_version 1.3: TLS 1.2 refused.
    let modern = t.listener_address("modern");
    assert_eq!(version(modern, &["-tls1_2"]), None);
    assert_eq!(version(modern, &["-tls1_3"]).as_deref(), Some("TLSv1.3"));
    t.assert_metric(
        "tether_tls_handshakes_total{listener=\"public\",version=\"TLSv1.2\"}",
        2.0,
    );
}

#[test]
fn alpn_offers_h2_unless_http2_is_off() {
    let ca = TestCa::new();
    let cert = ca.issue("shop", &["shop.test"]);
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let t = https_gateway(&[&cert], &a, &b)
        .listener("h1")
        .tls("h1", &[&cert])
        .http2("h1", false)
        .start();
    let alpn = |addr, offer: &str| s_client(addr, Some("shop.test"), &["-alpn", offer]).alpn;
    assert_eq!(alpn(t.listen, "h2,http/1.1").as_deref(), Some("h2"));
    assert_eq!(alpn(t.listen, "http/1.1").as_deref(), Some("http/1.1"));
    let h1 = t.listener_address("h1");
    assert_eq!(alpn(h1, "h2,http/1.1").as_deref(), Some("http/1.1"));
    let r = Curl::new()
        .ca(&ca.ca_file())
        .resolve("shop.test", h1)
        .http2()
        .get(&format!("https://shop.test:{}/", h1.port()))
        .unwrap();
    assert_eq!((r.status, r.version.as_str()), (200, "1.1"));
}

#[test]
fn sessions_stick_over_https_with_secure_cookies_in_http1_and_http2() {
    let ca = TestCa::new();
    let cert = ca.issue("shop", &["shop.test"]);
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let t = https_gateway(&[&cert], &a, &b).listener("plain").start();
    let tls = t.listen;
    let plain = t.listener_address("plain");
    for (http2, version) in [(false, "1.1"), (true, "2")] {
        let jar = t.dir.path(&format!("jar-{version}"));
        let curl = Curl::new()
            .ca(&ca.ca_file())
            .resolve("shop.test", tls)
            .jar(&jar);
        let curl = if http2 { curl.http2() } else { curl.http1() };
        let url = format!("https://shop.test:{}/", tls.port());
        let first = curl.get(&url).unwrap();
        assert_eq!((first.status, first.version.as_str()), (200, version));
        let set_cookie = first.header("set-cookie").expect("a session cookie");
        assert!(set_cookie.starts_with("sid="), "{set_cookie}");
        assert!(
            set_cookie.contains("; Secure"),
            "secure: auto over TLS: {set_cookie}"
        );
        // Ours first, the backend's own after it.
        assert_eq!(first.headers_named("set-cookie")[1], "app=1; Path=/");
        for _ in 0..6 {
            let r = curl.get(&url).unwrap();
            assert_eq!(r.backend(), first.backend(), "HTTP/{version} sticks");
            assert!(r
                .header("set-cookie")
                .is_none_or(|c| !c.starts_with("sid=")));
        }
        let echo = curl
            .get(&format!("https://shop.test:{}/echo", tls.port()))
            .unwrap();
        let head = echo.body.to_ascii_lowercase();
        assert!(head.contains("x-forwarded-proto: https\r\n"), "{head}");
        assert!(
            !head.contains("sid="),
            "our cookie stays with tether: {head}"
        );
        assert!(head.contains("host: shop.test:"), "{head}");
    }
    // The plain listener of the same gateway: no Secure, http.
    let r = Curl::new()
        .header("X-Forwarded-Proto: https")
        .get(&format!("http://{plain}/echo"))
        .unwrap();
    let set_cookie = r.header("set-cookie").unwrap();
    assert!(!set_cookie.contains("Secure"), "{set_cookie}");
    assert!(r
        .body
        .to_ascii_lowercase()
        .contains("x-forwarded-proto: http\r\n"));
    // The plain request came last: its line is written after the others.
    let log = t.wait_for_log(&["protocol=HTTP/1.1 tls=false"]);
    assert!(log.contains("protocol=HTTP/1.1 tls=true"), "{log}");
    assert!(log.contains("protocol=HTTP/2 tls=true"), "{log}");
    let handshakes = t
        .metric("tether_tls_handshakes_total{listener=\"public\",version=\"TLSv1.3\"}")
        .unwrap();
    assert!(handshakes >= 16.0, "{handshakes}");
}

/// Reads until the peer closes; the time it took, or `None` if it stayed open past `limit`.
fn closed_within(conn: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let began = Instant::now();
    conn.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return Some(began.elapsed()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(began.elapsed())
            }
            Err(_) => return None,
        }
    }
}

#[test]
fn handshakes_that_never_finish_are_closed_and_garbage_harms_no_one() {
    let ca = TestCa::new();
    let cert = ca.issue("shop", &["shop.test"]);
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let t = https_gateway(&[&cert], &a, &b)
        .top("limits:\n  request_header_timeout: 1s\n")
        .start();
    // Silent after connecting, and stuck in the middle of a ClientHello record.
    let opened = Instant::now();
    let mut silent = TcpStream::connect(t.listen).unwrap();
    let mut partial = TcpStream::connect(t.listen).unwrap();
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();
    // Garbage (an HTTP request on the TLS port, and random bytes): refused at once.
    let mut http = TcpStream::connect(t.listen).unwrap();
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut noise = TcpStream::connect(t.listen).unwrap();
    noise.write_all(&[0xff; 300]).unwrap();
    // Others are served meanwhile.
    let curl = Curl::new().ca(&ca.ca_file()).resolve("shop.test", t.listen);
    let url = format!("https://shop.test:{}/", t.listen.port());
    assert_eq!(curl.get(&url).unwrap().status, 200);
    for conn in [&mut http, &mut noise] {
        let took = closed_within(conn, Duration::from_secs(5)).expect("garbage closed");
        assert!(took < Duration::from_millis(900), "{took:?}");
    }
    for conn in [&mut silent, &mut partial] {
        closed_within(conn, Duration::from_secs(5)).expect("closed by the deadline");
        let open_for = opened.elapsed();
        assert!(open_for >= Duration::from_millis(900), "{open_for:?}");
    }
    assert_eq!(curl.get(&url).unwrap().status, 200);
    assert!(!t.log().contains("panicked"), "{}", t.log());
}

#[test]
fn a_client_hello_split_byte_by_byte_is_served() {
    let ca = TestCa::new();
    let cert = ca.issue("shop", &["shop.test"]);
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let t = https_gateway(&[&cert], &a, &b).start();
    let relay = ByteRelay::start(t.listen);
    for http2 in [false, true] {
        let curl = Curl::new()
            .ca(&ca.ca_file())
            .resolve("shop.test", relay.addr);
        let curl = if http2 { curl.http2() } else { curl.http1() };
        let r = curl
            .get(&format!("https://shop.test:{}/", relay.addr.port()))
            .unwrap();
        assert_eq!(r.status, 200, "http2 {http2}");
        assert!(r.header("set-cookie").unwrap().contains("Secure"));
    }
}

#[test]
fn a_plain_listener_with_redirect_https_answers_308_and_forwards_nothing() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let t = Gateway::new()
        .redirect_https("public", 8443)
        .listener("standard")
        .redirect_https("standard", 443)
        .cluster("app", &[("a", a.addr), ("b", b.addr)])
        .route(Route::new("app").to("app", 1).cookie("sid"))
        .start();
    let r = Curl::new()
        .header("Host: Shop.Test:8080")
        .args(&["-X", "POST", "-d", "x=1"])
        .get(&format!("http://{}/cart/add?id=7&q=a%20b", t.listen))
        .unwrap();
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location"),
        Some("https://shop.test:8443/cart/add?id=7&q=a%20b")
    );
    assert!(r.header("set-cookie").is_none());
    let standard = t.listener_address("standard");
    let r = Curl::new()
        .header("Host: shop.test")
        .get(&format!("http://{standard}/"))
        .unwrap();
    assert_eq!(r.header("location"), Some("https://shop.test/"));
    assert_eq!(a.requests() + b.requests(), 0, "nothing reaches a backend");
}

#[test]
fn over_max_connections_a_tls_client_gets_503_or_a_close_for_http2() {
    let ca = TestCa::new();
    let cert = ca.issue("shop", &["shop.test"]);
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let t = https_gateway(&[&cert], &a, &b)
        .top("limits:\n  max_connections: 2\n")
        .start();
    let mut held: Vec<HeldTls> = (0..2)
        .map(|_| HeldTls::connect(t.listen, "shop.test", &ca.ca_file()))
        .collect();
    let curl = Curl::new().ca(&ca.ca_file()).resolve("shop.test", t.listen);
    let url = format!("https://shop.test:{}/", t.listen.port());
    let r = curl.clone().http1().get(&url).unwrap();
    assert_eq!(r.status, 503);
    assert!(curl.clone().http2().get(&url).is_err(), "HTTP/2: closed");
    // The held ones are served; once one goes, a new client is too.
    assert_eq!(held[0].get("/").unwrap().0, 200);
    held.pop();
    eventually(std::time::Duration::from_secs(5), "a free slot", || {
        curl.clone()
            .http2()
            .get(&url)
            .ok()
            .filter(|r| r.status == 200)
    });
}
