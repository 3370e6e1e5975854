//! Certificate rotation from disk without a reload, with real clients: new connections get the
//! new pair within 10 s, a held connection keeps working, an invalid pair changes nothing (and
//! is reported once it stays invalid), and the expiry metric follows.

mod common;

use std::time::{Duration, Instant};

use common::gateway::{Gateway, Route};
use common::*;

/// The common name `openssl s_client` is served on `addr` for `sni`.
fn served_cn(addr: std::net::SocketAddr, sni: &str) -> Option<String> {
    s_client(addr, Some(sni), &[]).subject_cn
}

#[test]
fn a_changed_certificate_is_served_without_a_reload_and_an_invalid_one_is_ignored() {
    let ca = TestCa::new();
    let files = ca.write("shop", &ca.issue_for("shop-v1", &["shop.test"], 365));
    let a = Backend::start("a");
    let t = Gateway::new()
        .tls("public", &[&files])
        .cluster("app", &[("a", a.addr)])
        .route(Route::new("app").to("app", 1).cookie("sid"))
        .start();
    let mut held = HeldTls::connect(t.listen, "shop.test", &ca.ca_file());
    assert_eq!(held.peer_cn(), "shop-v1");
    assert_eq!(held.get("/").unwrap(), (200, "a".to_string()));
    let series = "tether_tls_certificate_expiry_timestamp_seconds{certificate=\"".to_string()
        + &files.cert.display().to_string()
        + "\",listener=\"public\"}";
    let expiry_v1 = t.metric(&series).expect("expiry gauge");

    // A valid new pair: served to new connections within 10 s.
    let v2 = ca.issue_for("shop-v2", &["shop.test"], 30);
    ca.write("shop", &v2);
    let changed = Instant::now();
    eventually(
        Duration::from_secs(10),
        "the new certificate served",
        || (served_cn(t.listen, "shop.test").as_deref() == Some("shop-v2")).then_some(()),
    );
    let took = changed.elapsed();
    eprintln!("new certificate served after {took:?}");
    // The held connection was not disturbed.
    assert_eq!(held.get("/").unwrap(), (200, "a".to_string()));
    assert_eq!(held.peer_cn(), "shop-v1");
    let expiry_v2 = t.metric(&series).unwrap();
    assert!(
        expiry_v2 < expiry_v1 - 300.0 * 86_400.0,
        "{expiry_v1} -> {expiry_v2}"
    );
    let fresh = HeldTls::connect(t.listen, "shop.test", &ca.ca_file());
    assert_eq!(fresh.peer_cn(), "shop-v2");

    // A certificate whose key has not arrived yet: a mismatched pair, ignored; the error is
    // logged once it has stayed so for 10 s.
    let v3 = ca.issue_for("shop-v3", &["shop.test"], 60);
    replace_file(&files.cert, v3.cert_pem.as_bytes());
    let broken = Instant::now();
    let log = eventually(Duration::from_secs(16), "the invalid pair reported", || {
        assert_eq!(served_cn(t.listen, "shop.test").as_deref(), Some("shop-v2"));
        let log = t.log();
        log.contains("changed on disk but is invalid")
            .then_some(log)
    });
    assert!(
        broken.elapsed() >= Duration::from_secs(9),
        "{:?}",
        broken.elapsed()
    );
    assert!(log.contains("does not match the certificate"), "{log}");
    assert_eq!(
        log.matches("changed on disk but is invalid").count(),
        1,
        "reported once"
    );
    // Its key arrives: the pair is whole and served at the next check.
    replace_file(&files.key, v3.key_pem.as_bytes());
    eventually(Duration::from_secs(10), "the completed pair served", || {
        (served_cn(t.listen, "shop.test").as_deref() == Some("shop-v3")).then_some(())
    });
    // Garbage: ignored, the last good pair keeps serving.
    replace_file(&files.cert, b"garbage");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(served_cn(t.listen, "shop.test").as_deref(), Some("shop-v3"));
    assert_eq!(held.get("/").unwrap(), (200, "a".to_string()));
    assert!(!t.log().contains("panicked"));
}
