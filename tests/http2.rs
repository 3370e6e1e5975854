//! HTTP/2 end to end with real clients: h2c and h2 downstream (curl, Python's `h2`), cookie
//! crumbs, many concurrent streams with sessions, gRPC (Python `grpcio`) through `h2c` and `h2`
//! clusters, and TLS to backends (verified, wrong CA, `verify: false`).

mod common;

use common::gateway::{Gateway, Route, UpstreamTls};
use common::*;
use serde_json::{json, Value};

/// A gateway with a TLS listener `public` (HTTP/2 by ALPN) and a plain listener `h2c`
/// (HTTP/2 with prior knowledge), routing to `a` and `b` with cookie sessions `sid`.
fn h2_gateway(cert: &CertFiles, a: &Backend, b: &Backend) -> Gateway {
    Gateway::new()
        .tls("public", &[cert])
        .listener("h2c")
        .http2("h2c", true)
        .cluster("app", &[("a", a.addr), ("b", b.addr)])
        .route(Route::new("app").to("app", 1).cookie("sid"))
}

/// Sends `requests` (path, headers) on one HTTP/2 connection over TLS, all at once.
fn h2_over_tls(t: &Tether, ca: &TestCa, requests: &[(&str, Vec<(&str, String)>)]) -> Vec<Value> {
    let spec = json!({
        "authority": format!("shop.test:{}", t.listen.port()),
        "requests": requests.iter().map(|(path, headers)| json!({
            "path": path,
            "headers": headers.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    let out = run_client(
        "h2_requests.py",
        &[
            "127.0.0.1",
            &t.listen.port().to_string(),
            "--tls",
            &ca.ca_file().display().to_string(),
            "shop.test",
        ],
        &spec.to_string(),
    );
    serde_json::from_str::<Vec<Value>>(&out).unwrap()
}

fn header<'a>(response: &'a Value, name: &str) -> Vec<&'a str> {
    response["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[0] == name)
        .map(|h| h[1].as_str().unwrap())
        .collect()
}

#[test]
fn h2c_and_h1_share_a_plain_listener_with_http2_on() {
    let ca = TestCa::new();
    let cert = ca.issue("shop", &["shop.test"]);
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let t = h2_gateway(&cert, &a, &b).start();
    let h2c = t.listener_address("h2c");
    let jar = t.dir.path("jar");
    let curl = Curl::new().jar(&jar);
    let first = curl
        .clone()
        .prior_knowledge()
        .get(&format!("http://{h2c}/"))
        .unwrap();
    assert_eq!((first.status, first.version.as_str()), (200, "2"));
    let cookie = first.header("set-cookie").unwrap();
    assert!(
        cookie.starts_with("sid=") && !cookie.contains("Secure"),
        "{cookie}"
    );
    // The same session over HTTP/1.1 on the same listener, and back over h2c.
    for _ in 0..3 {
        let h1 = curl.clone().http1().get(&format!("http://{h2c}/")).unwrap();
        assert_eq!(
            (h1.version.as_str(), h1.backend()),
            ("1.1", first.backend())
        );
        let h2 = curl
            .clone()
            .prior_knowledge()
            .get(&format!("http://{h2c}/"))
            .unwrap();
        assert_eq!((h2.version.as_str(), h2.backend()), ("2", first.backend()));
    }
    // A plain listener without `http2` does not take h2c.
    let t2 = Gateway::new()
        .cluster("app", &[("a", a.addr)])
        .route(Route::new("app").to("app", 1))
        .start();
    let r = Curl::new()
        .prior_knowledge()
        .get(&format!("http://{}/", t2.listen));
    assert!(r.is_err() || r.unwrap().status >= 400);
}

#[test]
fn cookie_crumbs_reach_an_http1_backend_as_one_line_without_ours() {
    let ca = TestCa::new();
    let cert = ca.issue("shop", &["shop.test"]);
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let t = h2_gateway(&cert, &a, &b).start();
    let first = &h2_over_tls(&t, &ca, &[("/", vec![])])[0];
    let set_cookie = header(first, "set-cookie")[0];
    assert!(set_cookie.contains("; Secure"), "{set_cookie}");
    let token = set_cookie.split(';').next().unwrap().to_string();
    let backend = header(first, "x-backend")[0].to_string();
    let crumbs = vec![
        ("cookie", "a=1".to_string()),
        ("cookie", token.clone()),
        ("cookie", "b=2; c=3".to_string()),
    ];
    let echo = &h2_over_tls(&t, &ca, &[("/echo", crumbs)])[0];
    assert_eq!(echo["status"], 200);
    assert_eq!(
        header(echo, "x-backend"),
        [backend.as_str()],
        "the session's backend"
    );
    assert!(header(echo, "set-cookie")
        .iter()
        .all(|c| !c.starts_with("sid=")));
    let head = echo["body"].as_str().unwrap();
    let cookie_lines: Vec<&str> = head
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("cookie:"))
        .collect();
    assert_eq!(cookie_lines.len(), 1, "{head}");
    assert_eq!(
        cookie_lines[0].split_once(':').unwrap().1.trim(),
        "a=1; b=2; c=3"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("x-forwarded-proto: https"),
        "{head}"
    );
    // Only our crumb: no Cookie line at all.
    let echo = &h2_over_tls(&t, &ca, &[("/echo", vec![("cookie", token)])])[0];
    let head = echo["body"].as_str().unwrap().to_ascii_lowercase();
    assert!(!head.contains("cookie:"), "{head}");
}

#[test]
fn many_concurrent_streams_keep_their_sessions() {
    let ca = TestCa::new();
    let cert = ca.issue("shop", &["shop.test"]);
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let t = h2_gateway(&cert, &a, &b).start();
    // 80 new sessions at once on one connection: both backends, a token each.
    let fresh = h2_over_tls(&t, &ca, &vec![("/", vec![]); 80]);
    let mut tokens = Vec::new();
    let mut seen = std::collections::HashMap::<String, String>::new();
    for r in &fresh {
        assert_eq!(r["status"], 200, "{r}");
        let token = header(r, "set-cookie")[0]
            .split(';')
            .next()
            .unwrap()
            .to_string();
        seen.insert(token.clone(), header(r, "x-backend")[0].to_string());
        tokens.push(token);
    }
    let backends: std::collections::HashSet<&String> = seen.values().collect();
    assert_eq!(backends.len(), 2, "round robin over both");
    assert_eq!(seen.len(), 80, "a token per new session");
    // Each of them again, all at once on one connection: every one to its own backend.
    let again: Vec<(&str, Vec<(&str, String)>)> = tokens
        .iter()
        .map(|token| ("/", vec![("cookie", token.clone())]))
        .collect();
    for (r, token) in h2_over_tls(&t, &ca, &again).iter().zip(&tokens) {
        assert_eq!(r["status"], 200);
        assert_eq!(
            header(r, "x-backend")[0],
            seen[token],
            "stream kept its session"
        );
        assert!(header(r, "set-cookie")
            .iter()
            .all(|c| !c.starts_with("sid=")));
    }
    t.assert_metric("tether_session_routed_total{route=\"app\"}", 80.0);
    t.assert_metric("tether_session_created_total{route=\"app\"}", 80.0);
}

/// Starts two gRPC servers, `g1` and `g2` (TLS with `cert` when given).
fn grpc_servers(tls: Option<&CertFiles>) -> (ScriptServer, ScriptServer) {
    let start = |name: &str| match tls {
        Some(c) => ScriptServer::start(
            "grpc_server.py",
            &[
                name,
                "--tls",
                &c.cert.display().to_string(),
                &c.key.display().to_string(),
            ],
        ),
        None => ScriptServer::start("grpc_server.py", &[name]),
    };
    (start("g1"), start("g2"))
}

fn grpc_client(target: &str, tls: Option<(&TestCa, &str)>) -> Value {
    let ca_file;
    let mut args = vec![target, "50", "5"];
    if let Some((ca, sni)) = tls {
        ca_file = ca.ca_file().display().to_string();
        args.extend(["--tls", &ca_file, sni]);
    }
    serde_json::from_str(&run_client("grpc_client.py", &args, "")).unwrap()
}

#[track_caller]
fn assert_sticky_grpc(result: &Value, proto: &str) {
    let unary: Vec<&str> = result["unary"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(unary.len(), 50);
    assert!(unary.iter().all(|n| *n == unary[0]), "sticky: {unary:?}");
    let expected: Vec<String> = (0..5).map(|i| format!("{}:{i}", unary[0])).collect();
    assert_eq!(
        result["stream"],
        json!(expected),
        "server streaming, same backend"
    );
    let set_cookie = result["set_cookie"].as_str().expect("a session cookie");
    assert!(set_cookie.starts_with("sid="), "{set_cookie}");
    let echo = result["echo"].as_str().unwrap();
    assert!(
        echo.contains(&format!("x-forwarded-proto={proto}")),
        "{echo}"
    );
    assert!(
        !echo.contains("sid="),
        "our cookie stays with tether: {echo}"
    );
}

#[test]
fn grpc_through_an_h2c_cluster_is_sticky_over_h2c_and_h2() {
    let ca = TestCa::new();
    let cert = ca.issue("shop", &["shop.test"]);
    let (g1, g2) = grpc_servers(None);
    let t = Gateway::new()
        .tls("public", &[&cert])
        .listener("h2c")
        .http2("h2c", true)
        .cluster("grpc", &[("g1", g1.addr), ("g2", g2.addr)])
        .protocol("grpc", "h2c")
        .route(Route::new("grpc").to("grpc", 1).cookie("sid"))
        .start();
    let h2c = t.listener_address("h2c").to_string();
    let over_h2c = grpc_client(&h2c, None);
    assert_sticky_grpc(&over_h2c, "http");
    let over_tls = grpc_client(&t.listen.to_string(), Some((&ca, "shop.test")));
    assert_sticky_grpc(&over_tls, "https");
    assert!(over_tls["set_cookie"].as_str().unwrap().contains("Secure"));
    // Two clients, two new sessions: round robin put them on different servers.
    assert_ne!(over_h2c["unary"][0], over_tls["unary"][0]);
}

#[test]
fn grpc_to_an_h2_cluster_over_verified_tls() {
    let ca = TestCa::new();
    let listener_cert = ca.issue("shop", &["shop.test"]);
    let backend_cert = ca.issue("grpc-backend", &["127.0.0.1"]);
    let (g1, g2) = grpc_servers(Some(&backend_cert));
    let t = Gateway::new()
        .listener("h2c")
        .tls("public", &[&listener_cert])
        .http2("h2c", true)
        .cluster("grpc", &[("g1", g1.addr), ("g2", g2.addr)])
        .protocol("grpc", "h2")
        .upstream_tls(
            "grpc",
            UpstreamTls {
                ca_file: Some(ca.ca_file()),
                ..UpstreamTls::default()
            },
        )
        .route(Route::new("grpc").to("grpc", 1).cookie("sid"))
        .start();
    let result = grpc_client(&t.listener_address("h2c").to_string(), None);
    assert_sticky_grpc(&result, "http");
}

#[test]
fn backend_tls_is_verified_against_its_ca_unless_verify_is_false() {
    let ca = TestCa::new();
    let other_ca = TestCa::new();
    let a = Backend::start("a");
    let front = TlsFront::start(
        a.addr,
        &ca.issue_for("backend", &["127.0.0.1", "backend.internal"], 30),
    );
    let cluster =
        |sni: Option<&str>, ca_file: &std::path::Path, verify: Option<bool>| UpstreamTls {
            sni: sni.map(str::to_string),
            verify,
            ca_file: Some(ca_file.to_path_buf()),
        };
    let t = Gateway::new()
        .listener("wrong-ca")
        .listener("no-verify")
        .listener("by-name")
        .listener("wrong-name")
        .cluster("good", &[("front", front.addr)])
        .upstream_tls("good", cluster(None, &ca.ca_file(), None))
        .cluster("bad", &[("front", front.addr)])
        .upstream_tls("bad", cluster(None, &other_ca.ca_file(), None))
        .cluster("lax", &[("front", front.addr)])
        .upstream_tls("lax", cluster(None, &other_ca.ca_file(), Some(false)))
        .cluster("named", &[("front", front.addr)])
        .upstream_tls(
            "named",
            cluster(Some("backend.internal"), &ca.ca_file(), None),
        )
        .cluster("misnamed", &[("front", front.addr)])
        .upstream_tls(
            "misnamed",
            cluster(Some("other.internal"), &ca.ca_file(), None),
        )
        .route(Route::new("good").on(&["public"]).to("good", 1))
        .route(Route::new("bad").on(&["wrong-ca"]).to("bad", 1))
        .route(Route::new("lax").on(&["no-verify"]).to("lax", 1))
        .route(Route::new("named").on(&["by-name"]).to("named", 1))
        .route(Route::new("misnamed").on(&["wrong-name"]).to("misnamed", 1))
        .start();
    let status = |listener: &str| {
        let addr = t.listener_address(listener);
        let r = get(addr, "/echo", &[]).unwrap();
        (r.status(), r.text())
    };
    let (code, head) = status("public");
    assert_eq!(code, 200);
    assert!(head.contains("X-Forwarded-Proto: http"), "{head}");
    assert_eq!(status("by-name").0, 200);
    assert_eq!(status("no-verify").0, 200);
    assert_eq!(status("wrong-ca").0, 502);
    assert_eq!(status("wrong-name").0, 502);
    let log = t.wait_for_log(&["cluster misnamed backend front"]);
    assert!(
        log.contains("cluster bad backend front (")
            && log.contains("TLS to the backend failed")
            && log.contains("UnknownIssuer"),
        "{log}"
    );
    assert!(
        log.contains("not valid for name \"other.internal\""),
        "{log}"
    );
    assert_eq!(
        a.requests(),
        3,
        "only verified (or unverified by choice) backends are used"
    );
}
