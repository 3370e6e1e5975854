//! Per-request cost of routing: finding the route of a request among 50 (25 hostnames, two
//! prefixes each), for the route precedence finds last, and with a regular expression last.
//! `cargo bench --bench routing`; CI only builds it (`--no-run`): timing is never asserted.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use pingora_http::RequestHeader;
use tether::config::Config;
use tether::routing::Router;

/// 50 routes over 25 hostnames: per host a `PathPrefix /static` route and a catch-all.
fn config(regex_last: bool) -> Config {
    let mut y = String::from(
        "listeners: [{name: l, address: 127.0.0.1:8000}]\nclusters: [{name: c, backends: [127.0.0.1:9001]}]\nroutes:\n",
    );
    for h in 1..=25 {
        y += &format!(
            "  - {{name: static-{h}, hostnames: [h{h}.bench.test], matches: [{{path: {{type: PathPrefix, value: /static}}}}], backends: [{{cluster: c}}]}}\n"
        );
        let matches = if regex_last {
            ", matches: [{path: {type: RegularExpression, value: \"/[a-z]+/[0-9]+\"}}]"
        } else {
            ""
        };
        y += &format!(
            "  - {{name: app-{h}, hostnames: [h{h}.bench.test]{matches}, backends: [{{cluster: c}}]}}\n"
        );
    }
    Config::parse(&y, Path::new("."), &|_| None).unwrap()
}

fn request(host: &str, path: &str) -> RequestHeader {
    let mut req = RequestHeader::build("GET", path.as_bytes(), None).unwrap();
    req.append_header("Host", host).unwrap();
    req.append_header("User-Agent", "bench").unwrap();
    req.append_header("Cookie", "_srv_id=x; theme=dark")
        .unwrap();
    req
}

fn benches(c: &mut Criterion) {
    let plain = config(false);
    let router = Router::new(&plain.routes, 0);
    let last = request("h25.bench.test", "/cart/items");
    assert_eq!(router.route(&last), Some(49));
    c.bench_function("route of 50: the last one", |b| {
        b.iter(|| router.route(black_box(&last)))
    });
    let wild = config(true);
    let router = Router::new(&wild.routes, 0);
    let regex = request("H25.Bench.Test:8080", "/cart/42");
    assert_eq!(router.route(&regex), Some(49));
    c.bench_function("route of 50: a regular expression last", |b| {
        b.iter(|| router.route(black_box(&regex)))
    });
    let none = request("nowhere.test", "/");
    c.bench_function("route of 50: no route", |b| {
        b.iter(|| router.route(black_box(&none)))
    });
}

criterion_group!(routing, benches);
criterion_main!(routing);
