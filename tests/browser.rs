//! A real browser: headless Chromium over HTTPS (HTTP/2 by ALPN), trusting the test CA, keeps
//! tether's `Secure` session cookie and sticks to one backend across its requests.

mod common;

use std::process::Command;

use common::gateway::{Gateway, Route};
use common::*;

/// A home folder whose NSS database (where Chromium on Linux looks for trusted roots) trusts
/// the test CA.
fn home_trusting(ca: &TestCa, home: &std::path::Path) {
    let db = home.join(".pki/nssdb");
    std::fs::create_dir_all(&db).unwrap();
    let db = format!("sql:{}", db.display());
    let run = |args: &[&str]| {
        let out = Command::new("certutil")
            .args(args)
            .output()
            .expect("certutil (scripts/test-deps.sh installs libnss3-tools)");
        assert!(out.status.success(), "certutil {args:?}: {out:?}");
    };
    run(&["-N", "-d", &db, "--empty-password"]);
    let ca_file = ca.ca_file().display().to_string();
    run(&[
        "-A",
        "-d",
        &db,
        "-n",
        "tether test CA",
        "-t",
        "C,,",
        "-i",
        &ca_file,
    ]);
}

/// Loads `url` in headless Chromium (a fresh profile in `home`, which trusts the test CA) and
/// returns the DOM once the page's scripts have run.
fn chromium_dom(url: &str, home: &std::path::Path) -> String {
    let out = Command::new("chromium")
        .env("HOME", home)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            &format!("--user-data-dir={}", home.join("profile").display()),
            "--host-resolver-rules=MAP shop.test 127.0.0.1",
            "--virtual-time-budget=15000",
            "--dump-dom",
            url,
        ])
        .output()
        .expect("chromium (scripts/test-deps.sh installs it)");
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The text of the element with id `id` in `dom`.
fn element(dom: &str, id: &str) -> String {
    let start = dom
        .find(&format!("id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no #{id} in {dom}"));
    let rest = &dom[start + id.len() + 6..];
    rest[..rest.find('<').unwrap()].to_string()
}

#[test]
fn chromium_keeps_the_secure_session_cookie_and_sticks() {
    let ca = TestCa::new();
    let cert = ca.issue("shop", &["shop.test"]);
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let t = Gateway::new()
        .tls("public", &[&cert])
        .cluster("app", &[("a", a.addr), ("b", b.addr)])
        .route(Route::new("app").to("app", 1).cookie("sid"))
        .start();
    let url = format!("https://shop.test:{}/page", t.listen.port());
    let mut pages = Vec::new();
    for profile in ["one", "two"] {
        let home = t.dir.path(profile);
        home_trusting(&ca, &home);
        let dom = chromium_dom(&url, &home);
        let page = element(&dom, "page");
        let fetched = element(&dom, "out");
        let expected = format!("fetched:{}", [page.as_str(); 6].join(","));
        assert_eq!(
            fetched, expected,
            "every request of the page on its backend"
        );
        pages.push(page);
    }
    // Two browsers, two new sessions: round robin gave them different backends.
    assert_ne!(pages[0], pages[1]);
    // The browser sent its session back on every fetch, over HTTP/2 and TLS.
    t.assert_metric("tether_session_created_total{route=\"app\"}", 2.0);
    // (Chromium may ask for /favicon.ico too, with the cookie.)
    let routed = t
        .metric("tether_session_routed_total{route=\"app\"}")
        .unwrap();
    assert!(routed >= 12.0, "{routed}");
    let log = t.wait_for_log(&["\"GET /who\" 200"]);
    assert!(log.contains("protocol=HTTP/2 tls=true"), "{log}");
}
