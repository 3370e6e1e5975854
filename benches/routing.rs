//! Per-request cost of routing against the size of the table: 1, 100 and 5,000 routes, the
//! request for the route found last, by kind of match:
//! - exact hostnames: N/2 hosts with a `PathPrefix /api` route and a catch-all each;
//! - wildcard hostnames: the same with `*.wJ.bench.test`, the request for a name under the last;
//! - prefixes: N `PathPrefix /pI` routes under one hostname, the request under the last;
//! - regular expressions: N under one hostname (tried in file order: the one kind that scans).
//!
//! `cargo bench --bench routing`; CI only builds it (`--no-run`): timing is never asserted.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use pingora_http::RequestHeader;
use tether::config::Config;
use tether::routing::Router;

/// The kinds of table, each with the request its last route takes.
#[derive(Clone, Copy)]
enum Kind {
    ExactHost,
    WildcardHost,
    Prefix,
    Regex,
}

const HEAD: &str = "listeners: [{name: l, address: 127.0.0.1:8000}]\nclusters: [{name: c, backends: [127.0.0.1:9001]}]\nroutes:\n";

/// A table of `n` routes of `kind`, and the host and path of a request for its last route.
fn table(kind: Kind, n: usize) -> (Config, String, String) {
    let mut y = String::from(HEAD);
    let route = |name: String, hosts: &str, matches: &str| {
        format!("  - {{name: {name}, hostnames: [{hosts}]{matches}, backends: [{{cluster: c}}]}}\n")
    };
    let prefix = |p: &str| format!(", matches: [{{path: {{type: PathPrefix, value: {p}}}}}]");
    let (host, path) = match kind {
        Kind::ExactHost | Kind::WildcardHost => {
            let hosts = n.div_ceil(2);
            let name = |j: usize| match kind {
                Kind::ExactHost => format!("h{j}.bench.test"),
                _ => format!("\"*.w{j}.bench.test\""),
            };
            for j in 0..hosts {
                y += &route(format!("api-{j}"), &name(j), &prefix("/api"));
                if n > 1 {
                    y += &route(format!("web-{j}"), &name(j), "");
                }
            }
            let last = hosts - 1;
            let host = match kind {
                Kind::ExactHost => format!("h{last}.bench.test"),
                _ => format!("a.w{last}.bench.test"),
            };
            (host, "/api/cart/items".to_string())
        }
        Kind::Prefix => {
            for i in 0..n {
                y += &route(
                    format!("p{i}"),
                    "shop.bench.test",
                    &prefix(&format!("/p{i}")),
                );
            }
            ("shop.bench.test".into(), format!("/p{}/cart/items", n - 1))
        }
        Kind::Regex => {
            for i in 0..n {
                let m = format!(
                    ", matches: [{{path: {{type: RegularExpression, value: \"/r{i}/[0-9]+\"}}}}]"
                );
                y += &route(format!("r{i}"), "shop.bench.test", &m);
            }
            ("shop.bench.test".into(), format!("/r{}/42", n - 1))
        }
    };
    (
        Config::parse(&y, Path::new("."), &|_| None).unwrap(),
        host,
        path,
    )
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
    let kinds = [
        ("exact hostnames", Kind::ExactHost, &[1, 100, 5000][..]),
        (
            "wildcard hostnames",
            Kind::WildcardHost,
            &[1, 100, 5000][..],
        ),
        ("prefixes of one host", Kind::Prefix, &[1, 100, 5000][..]),
        (
            "regular expressions of one host",
            Kind::Regex,
            &[1, 100][..],
        ),
    ];
    for (label, kind, sizes) in kinds {
        for &n in sizes {
            let (config, host, path) = table(kind, n);
            let router = Router::new(&config.routes, 0);
            let req = request(&host, &path);
            let last = config.routes.len() - 1;
            let expect = match kind {
                // The `/api` route of the last host, before its catch-all.
                Kind::ExactHost | Kind::WildcardHost if n > 1 => last - 1,
                _ => last,
            };
            assert_eq!(router.route(&req), Some(expect), "{label} {n}");
            c.bench_function(&format!("{label}: the last of {n}"), |b| {
                b.iter(|| router.route(black_box(&req)))
            });
        }
    }
    let (config, _, _) = table(Kind::ExactHost, 5000);
    let router = Router::new(&config.routes, 0);
    let none = request("nowhere.test", "/");
    c.bench_function("exact hostnames: no route among 5000", |b| {
        b.iter(|| router.route(black_box(&none)))
    });
}

criterion_group!(routing, benches);
criterion_main!(routing);
