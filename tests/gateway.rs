//! The gateway with the real binary: routes by host and path on shared listeners, a session
//! scope per route, weighted canaries that stay sticky, 404 for no route, and the short form
//! behaving as the long form it stands for.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::gateway::{Gateway, Route, TEST_KEY};
use common::*;

/// `GET path` with `Host: host` and extra header lines on a new connection.
fn get_host(t: &Tether, host: &str, path: &str, headers: &[&str]) -> Response {
    let mut h = vec![format!("Host: {host}")];
    h.extend(headers.iter().map(|s| s.to_string()));
    h.push("Connection: close".into());
    let mut conn = Conn::open(t.listen).unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\n");
    for line in &h {
        req.push_str(line);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    conn.send_raw(req.as_bytes()).unwrap()
}

#[test]
fn two_applications_share_a_listener_by_host() {
    let (shop, blog) = (Backend::start("shop-1"), Backend::start("blog-1"));
    let t = Gateway::new()
        .cluster("shop", &[("shop-1", shop.addr)])
        .cluster("blog", &[("blog-1", blog.addr)])
        .route(
            Route::new("shop")
                .hosts(&["shop.test", "*.shop.test"])
                .to("shop", 1),
        )
        .route(Route::new("blog").hosts(&["blog.test"]).to("blog", 1))
        .start();
    for (host, backend) in [
        ("shop.test", "shop-1"),
        ("SHOP.test:8080", "shop-1"),
        ("www.shop.test", "shop-1"),
        ("blog.test", "blog-1"),
    ] {
        let r = get_host(&t, host, "/", &[]);
        assert_eq!((r.status(), r.backend().as_str()), (200, backend), "{host}");
    }
    // No route takes it: 404 from tether, counted under route "none".
    let r = get_host(&t, "other.test", "/", &[]);
    assert_eq!((r.status(), r.backend().as_str()), (404, ""));
    t.assert_metric(
        "tether_requests_total{backend=\"none\",cluster=\"none\",code=\"404\",route=\"none\"}",
        1.0,
    );
    t.assert_metric(
        "tether_requests_total{backend=\"shop-1\",cluster=\"shop\",code=\"200\",route=\"shop\"}",
        3.0,
    );
}

#[test]
fn routes_by_path_each_keep_their_own_sessions() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let t = Gateway::new()
        .cluster("app", &[("a", a.addr), ("b", b.addr)])
        .route(
            Route::new("cart")
                .path("PathPrefix", "/cart")
                .to("app", 1)
                .cookie("sid"),
        )
        .route(
            Route::new("api")
                .path("PathPrefix", "/api")
                .to("app", 1)
                .header("X-Session"),
        )
        .route(
            Route::new("static")
                .path("PathPrefix", "/static")
                .to("app", 1),
        )
        .start();
    // Cookie sessions on /cart: the cookie pins, again and again.
    let first = get_host(&t, "x", "/cart/1", &[]);
    let cookie = set_cookie_value(&first, "sid").expect("a cookie on /cart");
    for _ in 0..4 {
        let r = get_host(&t, "x", "/cart/2", &[&format!("Cookie: sid={cookie}")]);
        assert_eq!(r.backend(), first.backend());
        assert_eq!(
            set_cookie_value(&r, "sid"),
            None,
            "a valid token is not re-sent"
        );
    }
    // Header sessions on /api.
    let first_api = get_host(&t, "x", "/api/1", &[]);
    let token = first_api
        .header("x-session")
        .expect("a header on /api")
        .to_string();
    assert_eq!(set_cookie_value(&first_api, "sid"), None);
    for _ in 0..4 {
        let r = get_host(&t, "x", "/api/2", &[&format!("X-Session: {token}")]);
        assert_eq!(r.backend(), first_api.backend());
    }
    // No sessions on /static: round robin, nothing issued.
    let mut seen = HashMap::new();
    for _ in 0..4 {
        let r = get_host(&t, "x", "/static/x", &[]);
        assert!(r.header("x-session").is_none() && set_cookie_value(&r, "sid").is_none());
        *seen.entry(r.backend()).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "round robin over both: {seen:?}");
    // The cart's token on the api route is another route's: a new session, counted.
    let r = get_host(&t, "x", "/api/3", &[&format!("X-Session: {cookie}")]);
    assert!(r.header("x-session").is_some(), "a new session");
    t.assert_metric(
        "tether_session_rejected_total{reason=\"other_route\",route=\"api\"}",
        1.0,
    );
    t.assert_metric("tether_session_routed_total{route=\"cart\"}", 4.0);
    t.assert_metric("tether_session_routed_total{route=\"api\"}", 4.0);
    t.assert_metric("tether_session_created_total{route=\"static\"}", 0.0);
    // No route for `/` at all.
    assert_eq!(get_host(&t, "x", "/", &[]).status(), 404);
}

#[test]
fn a_canary_takes_its_share_and_keeps_its_sessions_when_rolled_back() {
    let (stable, canary) = (Backend::start("stable"), Backend::start("canary"));
    let mut gw = Gateway::new()
        .cluster("shop", &[("stable", stable.addr)])
        .cluster("shop-canary", &[("canary", canary.addr)])
        .route(
            Route::new("cart")
                .to("shop", 90)
                .to("shop-canary", 10)
                .cookie("sid"),
        );
    let mut t = gw.start();
    // 2,000 new sessions (no cookie) on one kept-alive connection.
    let mut conn = Conn::open(t.listen).unwrap();
    let mut canary_tokens = Vec::new();
    let mut on_canary = 0;
    for _ in 0..2000 {
        let r = conn.get("/", &[]).unwrap();
        assert_eq!(r.status(), 200);
        if r.backend() == "canary" {
            on_canary += 1;
            if canary_tokens.len() < 20 {
                canary_tokens.push(set_cookie_value(&r, "sid").unwrap());
            }
        }
    }
    let share = on_canary as f64 / 2000.0 * 100.0;
    assert!((7.0..=13.0).contains(&share), "canary share {share}%");
    // Sessions stay where they began, whatever the weights.
    for token in &canary_tokens {
        let r = conn.get("/", &[&format!("Cookie: sid={token}")]).unwrap();
        assert_eq!(r.backend(), "canary");
    }
    drop(conn);

    // Roll back: the canary at weight 0, through a reload.
    gw.route_mut("cart").set_weight("shop-canary", 0);
    let mut old = gw.reload(&mut t);
    assert!(
        wait_exit(&mut old, Duration::from_secs(15)).is_some(),
        "old process exits"
    );
    let mut conn = Conn::open(t.listen).unwrap();
    for _ in 0..300 {
        let r = conn.get("/", &[]).unwrap();
        assert_eq!(
            r.backend(),
            "stable",
            "no new session on a weight-0 cluster"
        );
    }
    for token in &canary_tokens {
        let r = conn.get("/", &[&format!("Cookie: sid={token}")]).unwrap();
        assert_eq!(r.backend(), "canary", "pinned sessions are still served");
        assert_eq!(set_cookie_value(&r, "sid"), None);
    }
    t.assert_metric(
        "tether_backend_sessions_routed_total{backend=\"canary\",cluster=\"shop-canary\"}",
        20.0,
    );
}

#[test]
fn the_short_form_is_the_long_form_it_stands_for() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let short = Tether::start_full(
        "session_keys:\n  - id: k1\n    secret_env: TEST_KEY\n",
        &format!(
            "  - name: web\n    listen: {{listen}}\n    health_check: {{type: none}}\n    backends:\n      - {{address: \"{}\", id: a}}\n      - {{address: \"{}\", id: b}}\n    session_persistence: {{type: Cookie, name: sid, absolute_timeout: 1h}}\n",
            a.addr, b.addr
        ),
        &[("TEST_KEY", TEST_KEY)],
    );
    let long = Gateway::new()
        .cluster("web", &[("a", a.addr), ("b", b.addr)])
        .route(Route::new("web").to("web", 1).cookie("sid"))
        .start();
    // The same traffic gets the same answers: round robin for new sessions, then stickiness.
    let traffic = |t: &Tether| -> Vec<String> {
        let mut conn = Conn::open(t.listen).unwrap();
        let mut seen = Vec::new();
        let mut cookies = Vec::new();
        for _ in 0..4 {
            let r = conn.get("/", &[]).unwrap();
            cookies.push(set_cookie_value(&r, "sid").unwrap());
            seen.push(r.backend());
        }
        for c in &cookies {
            seen.push(
                conn.get("/", &[&format!("Cookie: sid={c}")])
                    .unwrap()
                    .backend(),
            );
        }
        seen
    };
    let (s, l) = (traffic(&short), traffic(&long));
    assert_eq!(s, l);
    assert_eq!(s, ["a", "b", "a", "b", "a", "b", "a", "b"]);
    // A token of one is valid on the other: same keys, same route and cluster names.
    let token = set_cookie_value(&get(short.listen, "/", &[]).unwrap(), "sid").unwrap();
    let r = get(long.listen, "/", &[&format!("Cookie: sid={token}")]).unwrap();
    assert_eq!(set_cookie_value(&r, "sid"), None, "honoured across forms");
    // The same series.
    for series in [
        "tether_session_routed_total{route=\"web\"}",
        "tether_backend_sessions_routed_total{backend=\"a\",cluster=\"web\"}",
    ] {
        assert!(
            short.metric(series).is_some() && long.metric(series).is_some(),
            "{series}"
        );
    }
}

#[test]
fn hostile_hosts_and_paths_get_a_route_they_really_match_or_an_error_of_theirs() {
    let (admin, public) = (Backend::start("admin"), Backend::start("public"));
    let t = Gateway::new()
        .cluster("admin", &[("admin", admin.addr)])
        .cluster("public", &[("public", public.addr)])
        .route(
            Route::new("admin")
                .hosts(&["shop.test"])
                .path("PathPrefix", "/admin")
                .to("admin", 1),
        )
        .route(Route::new("public").hosts(&["shop.test"]).to("public", 1))
        .start();
    let long_host = "h".repeat(300);
    let long_path = format!("/{}", "p".repeat(8000));
    let cases: Vec<(String, String, &str)> = vec![
        // (Host, target, expected: a backend or a status)
        ("shop.test".into(), "/admin".into(), "admin"),
        ("shop.test".into(), "/admin/x".into(), "admin"),
        ("shop.test".into(), "/adminx".into(), "public"),
        ("shop.test".into(), "//admin".into(), "public"),
        ("shop.test".into(), "/public/../admin".into(), "400"),
        ("shop.test".into(), "/public/%2e%2e/admin".into(), "400"),
        ("shop.test".into(), "/admin/%2E%2e/public".into(), "400"),
        ("shop.test".into(), "/./admin".into(), "400"),
        ("shop.test".into(), long_path, "public"),
        ("".into(), "/".into(), "404"),
        (long_host, "/".into(), "404"),
        ("shop test".into(), "/".into(), "400"),
        ("other.test".into(), "/admin".into(), "404"),
    ];
    for (host, target, expected) in &cases {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let r = Conn::open(t.listen)
            .unwrap()
            .send_raw(raw.as_bytes())
            .unwrap();
        let got = match r.backend().as_str() {
            "" => r.status().to_string(),
            backend => backend.to_string(),
        };
        assert_eq!(&got, expected, "Host {host:.20} {target:.40}");
        assert!(r.status() < 500, "{host:.20} {target:.40}: {}", r.status());
    }
    // Non-ASCII bytes in Host or target, and an absolute-form target naming another host.
    for raw in [
        &b"GET / HTTP/1.1\r\nHost: sh\xc3\xb6p.test\r\n\r\n"[..],
        b"GET /admin\xff HTTP/1.1\r\nHost: shop.test\r\n\r\n",
        b"GET http://other.test/admin HTTP/1.1\r\nHost: shop.test\r\n\r\n",
    ] {
        let r = Conn::open(t.listen).unwrap().send_raw(raw).unwrap();
        assert_eq!(
            (r.status(), r.backend().as_str()),
            (400, ""),
            "{}",
            raw.escape_ascii()
        );
    }
    assert_eq!(
        admin.requests(),
        2,
        "only the requests that really match /admin"
    );
}
