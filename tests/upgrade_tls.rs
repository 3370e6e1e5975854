//! Zero-downtime upgrade (`-u` + SIGQUIT) under HTTPS and HTTP/2 load, with real clients:
//! h2load over TLS (HTTP/2 and HTTP/1.1) loses no request, HTTP/2 streams in flight get a
//! GOAWAY and finish, and the new process reads the certificates afresh.

mod common;

use std::thread;
use std::time::Duration;

use common::gateway::{Gateway, Route};
use common::*;

/// Runs h2load against `url` for `seconds`; its summary lines.
fn h2load(url: &str, seconds: u32, extra: &[&str]) -> String {
    let out = std::process::Command::new("h2load")
        .args(["-D", &seconds.to_string(), "-c", "4", "-m", "4"])
        .args(extra)
        .arg(url)
        .output()
        .expect("h2load (scripts/test-deps.sh installs nghttp2-client)");
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// `(succeeded, failed + errored + timeout, non-2xx)` from h2load's summary.
fn h2load_counts(summary: &str) -> (u64, u64, u64) {
    let numbers = |line: &str| -> Vec<u64> {
        line.split([',', ':'])
            .filter_map(|part| part.split_whitespace().next()?.parse().ok())
            .collect()
    };
    let requests = summary
        .lines()
        .find(|l| l.starts_with("requests:"))
        .expect("h2load summary");
    let r = numbers(requests);
    // total, started, done, succeeded, failed, errored, timeout
    let statuses = summary
        .lines()
        .find(|l| l.starts_with("status codes:"))
        .unwrap();
    let s = numbers(statuses);
    (r[3], r[4] + r[5] + r[6], s[1] + s[2] + s[3])
}

#[test]
fn upgrade_under_https_and_http2_load_fails_nothing_and_streams_finish() {
    let ca = TestCa::new();
    let cert = ca.issue("shop", &["shop.test"]);
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    // Long requests go to their own backend, so that the test knows when they are all in flight.
    let slow = Backend::start("slow");
    // Timeline after SIGQUIT: the old process broadcasts its shutdown (GOAWAY, `Connection:
    // close`) at 5 s, stops at 5 s + grace period + 1 s. The slow streams are in flight at
    // SIGQUIT and end at 7 s: after the GOAWAY, 3 s before the stop.
    let mut t = Gateway::new()
        .top("grace_period_seconds: 4\n")
        .tls("public", &[&cert])
        .cluster("app", &[("a", a.addr), ("b", b.addr)])
        .cluster("slow", &[("s", slow.addr)])
        .route(Route::new("slow").path("PathPrefix", "/slow").to("slow", 1))
        .route(Route::new("app").to("app", 1).cookie("sid"))
        .start();
    let url = format!("https://127.0.0.1:{}/", t.listen.port());
    let (h2_url, h1_url) = (url.clone(), url.clone());
    // Load from before SIGQUIT until after the old process said GOAWAY.
    let h2 = thread::spawn(move || h2load(&h2_url, 10, &[]));
    let h1 = thread::spawn(move || h2load(&h1_url, 10, &["--h1"]));
    // Streams in flight on one connection when the old process is told to go (curl: it
    // follows a graceful GOAWAY, finishing the streams it covers).
    let port = t.listen.port();
    let curl = Curl::new()
        .ca(&ca.ca_file())
        .resolve("shop.test", t.listen)
        .http2()
        .args(&[
            "-v",
            "--no-progress-meter",
            "--parallel",
            "--parallel-max",
            "20",
        ]);
    let streams = thread::spawn(move || {
        let urls: Vec<String> = (0..20)
            .map(|_| format!("https://shop.test:{port}/slow/7000"))
            .collect();
        curl.get_all(&urls)
    });
    eventually(Duration::from_secs(5), "20 slow streams in flight", || {
        (slow.requests() == 20).then_some(())
    });
    // The certificate changes on disk; the new process serves the new one.
    ca.write("shop", &ca.issue_for("shop-after", &["shop.test"], 90));
    let mut old = t.upgrade(None);
    let exited = wait_exit(&mut old, Duration::from_secs(20)).expect("old process exits");
    let (responses, verbose) = streams.join().unwrap();
    for (name, summary) in [("h2", h2.join().unwrap()), ("h1", h1.join().unwrap())] {
        let (ok, failed, non_2xx) = h2load_counts(&summary);
        eprintln!(
            "{name}: {ok} ok, {failed} failed, {non_2xx} non-2xx; old exited after {exited:?}"
        );
        assert!(ok > 100, "{name}: {summary}");
        assert_eq!((failed, non_2xx), (0, 0), "{name}: {summary}");
    }
    assert_eq!(responses.len(), 20, "{verbose}");
    for (status, version, connects) in &responses {
        assert_eq!((*status, version.as_str()), (200, "2"), "{verbose}");
        assert!(*connects <= 1, "{verbose}");
    }
    let goaway = verbose.lines().find(|l| l.contains("GOAWAY"));
    eprintln!("curl: {goaway:?}");
    assert!(
        goaway.is_some_and(|l| l.contains("GOAWAY, error=0")),
        "{verbose}"
    );
    let hs = s_client(t.listen, Some("shop.test"), &[]);
    assert_eq!(
        hs.subject_cn.as_deref(),
        Some("shop-after"),
        "{}",
        hs.output
    );
}
