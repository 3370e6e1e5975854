//! A large config with the real binary: 5,000 routes over 2,500 hostnames (plus one route
//! without hostnames), 1,000 clusters of 10 backends each (10,000 backends, over 10 real
//! servers): it loads, a sample of hosts and paths reach the route they should, and a reload
//! of it under load fails no request. Nothing here is timed: benches/load/large.py measures.

mod common;

use std::time::Duration;

use common::gateway::{Gateway, Route};
use common::load::Load;
use common::*;

const HOSTS: usize = 2_500;
const CLUSTERS: usize = 1_000;

/// Per host `h{j}.scale.test`: `PathPrefix /api` to cluster `c{2j mod 1000}` (route `api-{j}`)
/// and everything else to `c{2j+1 mod 1000}` (route `web-{j}`); a wildcard host for every
/// tenth; then one route without hostnames, with cookie sessions, for the load.
fn large(backends: &[Backend]) -> Gateway {
    let members: Vec<(String, std::net::SocketAddr)> = backends
        .iter()
        .enumerate()
        .map(|(i, b)| (format!("b{i}"), b.addr))
        .collect();
    let members: Vec<(&str, std::net::SocketAddr)> =
        members.iter().map(|(id, a)| (id.as_str(), *a)).collect();
    let mut gw = Gateway::new().top("access_log: {format: json}\n");
    for c in 0..CLUSTERS {
        gw = gw.cluster(&format!("c{c}"), &members);
    }
    for j in 0..HOSTS {
        let host = format!("h{j}.scale.test");
        let mut hosts = vec![host.as_str()];
        let wildcard = format!("*.w{j}.scale.test");
        if j % 10 == 0 {
            hosts.push(&wildcard);
        }
        gw = gw
            .route(
                Route::new(&format!("api-{j}"))
                    .hosts(&hosts)
                    .path("PathPrefix", "/api")
                    .to(&format!("c{}", (2 * j) % CLUSTERS), 1),
            )
            .route(
                Route::new(&format!("web-{j}"))
                    .hosts(&hosts)
                    .to(&format!("c{}", (2 * j + 1) % CLUSTERS), 1),
            );
    }
    gw.route(Route::new("default").to("c0", 1).cookie("sid"))
}

/// `GET path` with `Host: host` on a new connection.
fn get_host(t: &Tether, host: &str, path: &str) -> Response {
    let raw = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    Conn::open(t.listen)
        .unwrap()
        .send_raw(raw.as_bytes())
        .unwrap()
}

/// The route and cluster of the access line of the request for `path` (paths are unique).
fn logged_route(t: &Tether, path: &str) -> (String, String) {
    eventually(Duration::from_secs(10), "the access line", || {
        t.log()
            .lines()
            .filter(|l| l.starts_with('{'))
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["path"] == path)
            .map(|v| {
                let field = |k: &str| v[k].as_str().unwrap_or("-").to_string();
                (field("route"), field("cluster"))
            })
    })
}

#[test]
fn a_config_of_5000_routes_and_10000_backends_routes_a_sample_right_and_reloads_under_load() {
    let backends: Vec<Backend> = (0..10).map(|i| Backend::start(&format!("s{i}"))).collect();
    let gw = large(&backends);
    let mut t = gw.start();
    let status: serde_json::Value = serde_json::from_str(&t.status()).unwrap();
    let backends_listed: usize = status["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["backends"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(backends_listed, 10 * CLUSTERS, "every backend in /status");

    // A sample over the whole table: first, last and spread hosts, both routes each.
    for (n, j) in [0, 1, 7, 499, 1234, 2000, 2498, 2499]
        .into_iter()
        .enumerate()
    {
        let host = format!("h{j}.scale.test");
        let api = format!("/api/probe-{n}");
        assert_eq!(get_host(&t, &host, &api).status(), 200, "{host}{api}");
        let expect = (format!("api-{j}"), format!("c{}", (2 * j) % CLUSTERS));
        assert_eq!(logged_route(&t, &api), expect, "{host}{api}");
        let web = format!("/apix/probe-{n}");
        assert_eq!(get_host(&t, &host, &web).status(), 200, "{host}{web}");
        let expect = (format!("web-{j}"), format!("c{}", (2 * j + 1) % CLUSTERS));
        assert_eq!(logged_route(&t, &web), expect, "{host}{web}");
    }
    // A wildcard host, and a host no route names (the default route takes it).
    let path = "/api/wild";
    assert_eq!(get_host(&t, "x.w1230.scale.test", path).status(), 200);
    assert_eq!(logged_route(&t, path), ("api-1230".into(), "c460".into()));
    let path = "/api/nowhere";
    assert_eq!(get_host(&t, "nowhere.test", path).status(), 200);
    assert_eq!(logged_route(&t, path), ("default".into(), "c0".into()));

    // A reload of the whole config under load: no request fails.
    let load = Load::start(t.listen, 3, 3, false);
    eventually(Duration::from_secs(10), "load running", || {
        (load.ok() > 50).then_some(())
    });
    let mut old = gw.reload(&mut t);
    assert!(
        wait_exit(&mut old, Duration::from_secs(30)).is_some(),
        "the old process exits"
    );
    let before = load.ok();
    eventually(
        Duration::from_secs(10),
        "load served by the new process",
        || (load.ok() > before + 50).then_some(()),
    );
    let (ok, failed, wrong, resent) = load.finish();
    assert_eq!(failed, 0, "failed requests ({ok} ok, {resent} resent)");
    assert_eq!(wrong, 0, "requests off their session's backend");
}
