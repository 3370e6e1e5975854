//! What an operator looks at: the JSON access log (every key, the right types, no token) and
//! the status page, rendered by headless Chromium (every backend, its state; a screenshot is
//! kept in `target/status-page.png`), also for a config of 200 backends.

mod common;

use std::process::Command;
use std::time::Instant;

use common::gateway::{Gateway, Route, ADMIN_TOKEN};
use common::*;

/// The JSON access lines in `log`: every line that is a JSON object.
fn json_lines(log: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn json_access_lines_hold_every_key_and_no_token() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let t = Gateway::new()
        .top("access_log: {format: json}\n")
        .cluster("app", &[("a", a.addr), ("b", b.addr)])
        .route(
            Route::new("app")
                .path("PathPrefix", "/app")
                .to("app", 1)
                .cookie("sid"),
        )
        .start();
    let first = get(t.listen, "/app/x?secret=1", &[]).unwrap();
    let token = set_cookie_value(&first, "sid").unwrap();
    get(t.listen, "/app/y", &[&format!("Cookie: sid={token}")]).unwrap();
    get(t.listen, "/nowhere", &[]).unwrap();
    let log = t.wait_for_log(&["\"path\":\"/nowhere\""]);
    assert!(!log.contains(&token), "a token value in the log");
    assert!(!log.contains("secret=1"), "a query string in the log");
    let lines = json_lines(&log);
    assert_eq!(lines.len(), 3, "{log}");
    let keys = [
        "time",
        "client",
        "method",
        "host",
        "path",
        "protocol",
        "status",
        "route",
        "cluster",
        "backend",
        "session",
        "duration_ms",
        "bytes_sent",
        "tls",
    ];
    for line in &lines {
        let object = line.as_object().unwrap();
        let mut found: Vec<&str> = object.keys().map(|k| k.as_str()).collect();
        found.sort();
        let mut want = keys.to_vec();
        want.sort();
        assert_eq!(found, want, "{line}");
        let time = line["time"].as_str().unwrap();
        assert!(time.ends_with('Z') && time.contains('T'), "{time}");
        assert!(line["client"].as_str().unwrap().starts_with("127.0.0.1:"));
        assert!(line["status"].is_u64() && line["bytes_sent"].is_u64());
        assert!(line["duration_ms"].is_f64() || line["duration_ms"].is_u64());
        assert_eq!(line["tls"], false);
        assert_eq!(line["protocol"], "HTTP/1.1");
    }
    let (created, routed, none) = (&lines[0], &lines[1], &lines[2]);
    assert_eq!(
        (
            created["path"].as_str(),
            created["session"].as_str(),
            created["route"].as_str()
        ),
        (Some("/app/x"), Some("created"), Some("app"))
    );
    assert_eq!(created["cluster"], "app");
    assert_eq!(created["bytes_sent"], 1, "the body `a` or `b`");
    assert_eq!(routed["session"], "routed");
    assert_eq!(routed["backend"], created["backend"]);
    assert_eq!(none["status"], 404);
    assert!(none["route"].is_null() && none["cluster"].is_null() && none["backend"].is_null());
}

/// Loads `url` in headless Chromium; its DOM, and a screenshot at `png` when given.
fn chromium(url: &str, png: Option<&std::path::Path>) -> String {
    let home = TempDir::new();
    let mut args = vec![
        "--headless".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--no-first-run".into(),
        format!("--user-data-dir={}", home.path("profile").display()),
        "--window-size=1280,1000".into(),
    ];
    match png {
        Some(path) => args.push(format!("--screenshot={}", path.display())),
        None => args.push("--dump-dom".into()),
    }
    args.push(url.into());
    let out = Command::new("chromium")
        .env("HOME", &home.0)
        .args(&args)
        .output()
        .expect("chromium (scripts/test-deps.sh installs it)");
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn the_status_page_shows_every_backend_in_a_browser() {
    let (a, b, c) = (
        Backend::start("a"),
        Backend::start("b"),
        Backend::start("c"),
    );
    let t = Gateway::new()
        .cluster("shop", &[("shop-1", a.addr), ("shop-2", b.addr)])
        .cluster("canary", &[("canary-1", c.addr)])
        .route(
            Route::new("shop")
                .to("shop", 90)
                .to("canary", 10)
                .cookie("sid"),
        )
        .admin("token_env: ADMIN_TOKEN")
        .start();
    for _ in 0..5 {
        get(t.listen, "/", &[]).unwrap();
    }
    // One drained through the API: the page says so.
    let mut s = std::net::TcpStream::connect(t.admin).unwrap();
    use std::io::{Read, Write};
    let body = r#"{"state": "draining"}"#;
    write!(
        s,
        "POST /clusters/shop/backends/shop-2 HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let url = format!("http://{}/", t.admin);
    let dom = chromium(&url, None);
    for text in [
        "shop-1",
        "shop-2",
        "canary-1",
        "draining",
        "active",
        "healthy",
        "shop (90)",
        "canary (10)",
        "public",
    ] {
        assert!(dom.contains(text), "`{text}` not on the page:\n{dom}");
    }
    assert!(dom.contains("http-equiv=\"refresh\""), "{dom}");
    // The session counters: 5 created.
    assert!(dom.contains("<td class=\"n\">5</td>"), "{dom}");
    let png = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/status-page.png");
    let _ = std::fs::remove_file(&png);
    chromium(&url, Some(&png));
    let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    assert!(size > 10_000, "screenshot of {size} bytes");
}

#[test]
fn the_status_page_of_200_backends_loads_fast() {
    // 200 backends in 4 clusters (nothing listens there: the page is what is measured).
    let mut gw = Gateway::new();
    let ids: Vec<String> = (0..200).map(|i| format!("b{i:03}")).collect();
    for k in 0..4 {
        let backends: Vec<(&str, std::net::SocketAddr)> = ids[k * 50..(k + 1) * 50]
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let addr = format!("127.0.3.{}:{}", k + 1, 20_000 + i);
                (id.as_str(), addr.parse().unwrap())
            })
            .collect();
        gw = gw.cluster(&format!("c{k}"), &backends);
    }
    let mut route = Route::new("app");
    for k in 0..4 {
        route = route.to(&format!("c{k}"), 1);
    }
    let t = gw.route(route).start();
    let began = Instant::now();
    let page = get(t.admin, "/", &[]).unwrap();
    let took = began.elapsed();
    assert_eq!(page.status(), 200);
    let html = page.text();
    assert!(ids
        .iter()
        .all(|id| html.contains(&format!("<td>{id}</td>"))));
    eprintln!(
        "status page of 200 backends: {} bytes in {took:?}",
        html.len()
    );
    let dom = chromium(&format!("http://{}/", t.admin), None);
    assert!(dom.contains("b199"), "{}", &dom[..dom.len().min(2000)]);
}
