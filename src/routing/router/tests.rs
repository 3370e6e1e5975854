//! The precedence of SPEC 2.2, one rule per case, on one listener.

use std::path::Path;

use super::*;
use crate::config::Config;

/// A router over routes given as YAML route entries (each `- name: ...` block), all on one
/// listener, every one to one cluster.
fn router(routes: &str) -> (Router, Vec<String>) {
    let yaml = format!(
        "listeners: [{{name: l, address: 127.0.0.1:8000}}]\nclusters: [{{name: c, backends: [127.0.0.1:9001]}}]\nroutes:\n{routes}"
    );
    let config = Config::parse(&yaml, Path::new("."), &|_| None).unwrap();
    let names = config.routes.iter().map(|r| r.name.clone()).collect();
    (Router::new(&config.routes, 0), names)
}

fn route_of(r: &(Router, Vec<String>), req: &str) -> Option<String> {
    let mut parts = req.split_whitespace();
    let method = parts.next().unwrap();
    let target = parts.next().unwrap();
    let mut head = RequestHeader::build(method, target.as_bytes(), None).unwrap();
    for h in parts {
        let (k, v) = h.split_once('=').unwrap();
        head.append_header(k.to_string(), v).unwrap();
    }
    r.0.route(&head).map(|i| r.1[i].clone())
}

/// `request` as `METHOD target Header=value ...`, then the route expected (`-`: none).
fn check(routes: &str, cases: &[(&str, &str)]) {
    let r = router(routes);
    for (request, expected) in cases {
        let got = route_of(&r, request);
        assert_eq!(got.as_deref().unwrap_or("-"), *expected, "{request}");
    }
}

fn route(name: &str, extra: &str) -> String {
    format!("  - name: {name}\n    backends: [{{cluster: c}}]\n{extra}")
}

#[test]
fn an_exact_hostname_comes_before_a_wildcard_and_both_before_none() {
    let routes = [
        route("any", ""),
        route("wild", "    hostnames: [\"*.example.com\"]\n"),
        route("deeper", "    hostnames: [\"*.shop.example.com\"]\n"),
        route("exact", "    hostnames: [shop.example.com]\n"),
    ]
    .concat();
    check(
        &routes,
        &[
            ("GET / Host=shop.example.com", "exact"),
            ("GET / Host=Shop.Example.COM:8080", "exact"),
            ("GET / Host=shop.example.com.", "exact"),
            ("GET / Host=x.example.com", "wild"),
            ("GET / Host=a.b.example.com", "wild"),
            ("GET / Host=a.shop.example.com", "deeper"),
            ("GET / Host=example.com", "any"),
            ("GET / Host=other.test", "any"),
            ("GET / Host=[::1]:80", "any"),
            ("GET /", "any"),
            ("GET http://shop.example.com/x", "exact"),
        ],
    );
}

#[test]
fn a_route_whose_matches_fail_passes_to_the_next_hostname_bucket() {
    let routes = [
        route(
            "exact-cart",
            "    hostnames: [shop.example.com]\n    matches: [{path: {type: Exact, value: /cart}}]\n",
        ),
        route("wild", "    hostnames: [\"*.example.com\"]\n"),
        route("any", ""),
    ]
    .concat();
    check(
        &routes,
        &[
            ("GET /cart Host=shop.example.com", "exact-cart"),
            ("GET /other Host=shop.example.com", "wild"),
            ("GET /other Host=x.example.com", "wild"),
            ("GET /cart Host=example.com", "any"),
        ],
    );
}

#[test]
fn paths_rank_exact_then_longest_prefix_then_regular_expressions_in_file_order() {
    let m = |kind: &str, value: &str| {
        format!("    matches: [{{path: {{type: {kind}, value: \"{value}\"}}}}]\n")
    };
    let routes = [
        route("re-first", &m("RegularExpression", "/cart/.*")),
        route("re-second", &m("RegularExpression", "/c.*")),
        route("prefix", &m("PathPrefix", "/cart")),
        route("longer", &m("PathPrefix", "/cart/items")),
        route("exact", &m("Exact", "/cart")),
        route("root", &m("PathPrefix", "/")),
    ]
    .concat();
    check(
        &routes,
        &[
            ("GET /cart", "exact"),
            ("GET /cart?x=1", "exact"),
            ("GET /cart/", "prefix"),
            ("GET /cart/x", "prefix"),
            ("GET /cart/items", "longer"),
            ("GET /cart/items/9", "longer"),
            ("GET /cartx", "root"),
            ("GET /", "root"),
        ],
    );
    // Without the catch-all, regular expressions take what no prefix took, in file order.
    let routes = [
        route("re-first", &m("RegularExpression", "/cartx.*")),
        route("re-second", &m("RegularExpression", "/c.*")),
        route("prefix", &m("PathPrefix", "/cart")),
    ]
    .concat();
    check(
        &routes,
        &[
            ("GET /cartx", "re-first"),
            ("GET /cat", "re-second"),
            ("GET /cart/1", "prefix"),
            ("GET /dog", "-"),
        ],
    );
}

#[test]
fn a_method_comes_before_none_and_more_headers_before_fewer_then_file_order() {
    let routes = [
        route("plain", ""),
        route("also-plain", ""),
        route("get", "    matches: [{method: GET}]\n"),
        route(
            "one-header",
            "    matches: [{headers: [{name: X-A, value: \"1\"}]}]\n",
        ),
        route(
            "two-headers",
            "    matches: [{headers: [{name: X-A, value: \"1\"}, {name: x-b, value: \"2\"}]}]\n",
        ),
    ]
    .concat();
    check(
        &routes,
        &[
            ("GET /", "get"),
            ("POST /", "plain"),
            ("POST / X-A=1", "one-header"),
            ("POST / X-A=1 X-B=2", "two-headers"),
            ("POST / X-A=2 X-B=2", "plain"),
            ("GET / X-A=1 X-B=2", "get"),
        ],
    );
}

#[test]
fn matches_of_one_route_are_alternatives() {
    let routes = [
        route(
            "either",
            "    matches:\n      - path: {type: Exact, value: /a}\n      - path: {type: Exact, value: /b}\n        method: POST\n",
        ),
    ]
    .concat();
    check(
        &routes,
        &[
            ("GET /a", "either"),
            ("POST /b", "either"),
            ("GET /b", "-"),
            ("GET /c", "-"),
        ],
    );
}

#[test]
fn routes_of_other_listeners_are_not_in_the_table() {
    let yaml = "listeners: [{name: a, address: 127.0.0.1:8000}, {name: b, address: 127.0.0.1:8001}]
clusters: [{name: c, backends: [127.0.0.1:9001]}]
routes:
  - {name: on-a, listeners: [a], backends: [{cluster: c}]}
  - {name: on-b, listeners: [b], backends: [{cluster: c}]}
";
    let config = Config::parse(yaml, Path::new("."), &|_| None).unwrap();
    let names: Vec<String> = config.routes.iter().map(|r| r.name.clone()).collect();
    let a = (Router::new(&config.routes, 0), names.clone());
    let b = (Router::new(&config.routes, 1), names);
    assert_eq!(route_of(&a, "GET /").as_deref(), Some("on-a"));
    assert_eq!(route_of(&b, "GET /").as_deref(), Some("on-b"));
}

#[test]
fn an_indexed_bucket_answers_as_trying_every_candidate_in_order_would() {
    let mut routes = String::new();
    let mut add = |name: String, path: String, extra: &str| {
        routes += &route(
            &name,
            &format!("    hostnames: [h.test]\n    matches: [{{path: {path}{extra}}}]\n"),
        );
    };
    for p in [
        "/",
        "/a",
        "/a/b",
        "/a/b/c",
        "/ab",
        "/b",
        "/b/c",
        "/static",
        "/static/img",
    ] {
        add(
            format!("prefix{}", p.replace('/', "-")),
            format!("{{type: PathPrefix, value: \"{p}\"}}"),
            "",
        );
    }
    for p in ["/a", "/a/b/", "/exact", "/b/c/d"] {
        add(
            format!("exact{}", p.replace('/', "-")),
            format!("{{type: Exact, value: \"{p}\"}}"),
            "",
        );
    }
    add(
        "post-a".into(),
        "{type: PathPrefix, value: /a}".into(),
        ", method: POST",
    );
    add(
        "header-b".into(),
        "{type: PathPrefix, value: /b}".into(),
        ", headers: [{name: x-v, value: \"1\"}]",
    );
    add(
        "regex".into(),
        "{type: RegularExpression, value: \"/a/[0-9]+\"}".into(),
        "",
    );
    let yaml = format!(
        "listeners: [{{name: l, address: 127.0.0.1:8000}}]\nclusters: [{{name: c, backends: [127.0.0.1:9001]}}]\nroutes:\n{routes}"
    );
    let config = Config::parse(&yaml, Path::new("."), &|_| None).unwrap_or_else(|e| panic!("{e}"));
    let mut order = 0;
    let mut sorted = Vec::new();
    for (idx, r) in config.routes.iter().enumerate() {
        for rule in &r.matches {
            let c = Candidate {
                route: idx,
                rule: rule.clone(),
            };
            sorted.push((c.rank(order), c));
            order += 1;
        }
    }
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let sorted: Vec<_> = sorted.into_iter().map(|(_, c)| c).collect();
    let scan = bucket::Bucket::Scan(sorted.clone());
    let indexed = bucket::Bucket::new(sorted);
    assert!(matches!(indexed, bucket::Bucket::Indexed(_)));
    let paths = [
        "/",
        "/a",
        "/a/",
        "/a/b",
        "/a/b/",
        "/a/b/c",
        "/a/b/c/d",
        "/a/bc",
        "/ab",
        "/ab/x",
        "/abc",
        "/a/12",
        "/a/12/x",
        "/b",
        "/b/c",
        "/b/c/d",
        "/b/c/d/e",
        "/static",
        "/static/img/x.png",
        "/staticx",
        "/exact",
        "/exact/",
        "/zzz",
        "//",
        "/a//b",
    ];
    for path in paths {
        for method in ["GET", "POST"] {
            for header in [None, Some("1"), Some("2")] {
                let mut req = RequestHeader::build(method, path.as_bytes(), None).unwrap();
                if let Some(v) = header {
                    req.append_header("x-v", v).unwrap();
                }
                assert_eq!(
                    indexed.first(&req, path),
                    scan.first(&req, path),
                    "{method} {path} x-v={header:?}"
                );
            }
        }
    }
}
