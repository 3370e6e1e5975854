//! The long form (`listeners`, `clusters`, `routes`) and its errors.

use std::path::Path;

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/nonexistent"), &|_| None)
}

#[track_caller]
fn assert_error(text: &str, line: usize, path: &str, message_part: &str) {
    let err = parse(text).expect_err("config should be rejected");
    assert_eq!((err.line, err.path.as_str()), (Some(line), path), "{err}");
    assert!(
        err.message.contains(message_part),
        "`{message_part}` not in `{err}`"
    );
}

const GATEWAY: &str = "listeners:
  - name: public
    address: 127.0.0.1:8000
  - name: internal
    address: 127.0.0.1:8001
clusters:
  - name: shop
    backends: [127.0.0.1:9001, 127.0.0.1:9002]
  - name: shop-canary
    backends: [{address: 127.0.0.1:9003, id: canary-1}]
routes:
  - name: cart
    hostnames: [shop.example.com, \"*.Shop.example.com\"]
    matches:
      - path: {type: PathPrefix, value: /cart/}
        headers: [{name: X-Canary, value: \"1\"}]
        method: GET
      - path: {type: RegularExpression, value: \"/c/[0-9]+\"}
    backends:
      - {cluster: shop, weight: 90}
      - {cluster: shop-canary, weight: 10}
    session_persistence: {type: Cookie, name: _srv_id, absolute_timeout: 600s}
  - name: api
    listeners: [internal]
    backends: [{cluster: shop}]
    session_persistence: {type: header, name: X-Session}
";

#[test]
fn the_long_form_reads_every_part() {
    let c = parse(GATEWAY).unwrap();
    let names: Vec<_> = c
        .listeners
        .iter()
        .map(|l| (l.name.as_str(), l.long_form))
        .collect();
    assert_eq!(names, [("public", true), ("internal", true)]);
    assert_eq!(c.clusters.len(), 2);
    assert_eq!(c.clusters[1].backends[0].id, "canary-1");
    let cart = &c.routes[0];
    assert_eq!(
        cart.listeners,
        [0, 1],
        "no `listeners`: every listener of the long form"
    );
    assert_eq!(
        cart.hostnames,
        [
            Hostname::Exact("shop.example.com".into()),
            Hostname::Wildcard("shop.example.com".into())
        ]
    );
    let m = &cart.matches[0];
    assert!(
        matches!(&m.path, PathMatch::Prefix(p) if p == "/cart"),
        "trailing / ignored"
    );
    assert_eq!(m.method, Some(http::Method::GET));
    assert_eq!(m.headers[0].name, "x-canary");
    assert!(matches!(&cart.matches[1].path, PathMatch::Regex(_)));
    assert!(cart.matches[1].path.accepts("/c/12") && !cart.matches[1].path.accepts("/c/12/x"));
    assert_eq!(
        cart.backends,
        [
            WeightedCluster {
                cluster: 0,
                weight: 90
            },
            WeightedCluster {
                cluster: 1,
                weight: 10
            }
        ]
    );
    let api = &c.routes[1];
    assert_eq!(api.listeners, [1]);
    assert_eq!(api.session.as_ref().unwrap().kind, SessionKind::Header);
}

#[test]
fn both_forms_mix_and_routes_keep_the_file_order() {
    let text = format!(
        "services:\n  - name: web\n    listen: [127.0.0.1:7000, 127.0.0.1:7001]\n    backends: [127.0.0.1:9009]\n{GATEWAY}"
    );
    let c = parse(&text).unwrap();
    let names: Vec<_> = c.listeners.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["public", "internal", "web", "web-2"]);
    let routes: Vec<_> = c.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(routes, ["web", "cart", "api"]);
    // A route without `listeners` takes the long form's, not a service's.
    assert_eq!(c.routes[1].listeners, [0, 1]);
    assert_eq!(c.routes[0].listeners, [2, 3]);
}

#[test]
fn names_are_unique_within_each_kind_across_both_forms() {
    let text = GATEWAY.replace("name: internal", "name: public");
    assert_error(&text, 4, "listeners[1]", "duplicate listener name `public`");
    let text = GATEWAY.replace("name: shop-canary", "name: shop");
    assert_error(&text, 9, "clusters[1]", "duplicate cluster name `shop`");
    let text = GATEWAY.replace("name: api", "name: cart");
    assert_error(&text, 23, "routes[1]", "duplicate route name `cart`");
    let text = format!(
        "{GATEWAY}services:\n  - name: shop\n    listen: 127.0.0.1:7000\n    backends: [127.0.0.1:9009]\n"
    );
    assert_error(
        &text,
        28,
        "services[0].name",
        "duplicate service name `shop`",
    );
    let text = format!(
        "{GATEWAY}services:\n  - name: public\n    listen: 127.0.0.1:7000\n    backends: [127.0.0.1:9009]\n"
    );
    assert_error(&text, 28, "services[0].name", "listener `public`");
}

#[test]
fn routes_name_listeners_and_clusters_that_exist() {
    let text = GATEWAY.replace("listeners: [internal]", "listeners: [private]");
    assert_error(
        &text,
        24,
        "routes[1].listeners[0]",
        "unknown listener `private`",
    );
    let text = GATEWAY.replace("backends: [{cluster: shop}]", "backends: [{cluster: shoe}]");
    assert_error(
        &text,
        25,
        "routes[1].backends[0].cluster",
        "unknown cluster `shoe`",
    );
    let text = GATEWAY
        .replace("weight: 90", "weight: 0")
        .replace("weight: 10", "weight: 0");
    assert_error(
        &text,
        20,
        "routes[0].backends",
        "every cluster has weight 0",
    );
    // One cluster at 0 is the canary roll-back: allowed.
    let c = parse(&GATEWAY.replace("weight: 10", "weight: 0")).unwrap();
    assert_eq!(c.routes[0].backends[1].weight, 0);
}

#[test]
fn path_matches_and_hostnames_are_checked() {
    let text = GATEWAY.replace("value: /cart/", "value: cart");
    assert_error(
        &text,
        15,
        "routes[0].matches[0].path.value",
        "must start with `/`",
    );
    let text = GATEWAY.replace("\"/c/[0-9]+\"", "\"/c/[0-9\"");
    assert_error(
        &text,
        18,
        "routes[0].matches[1].path.value",
        "does not compile",
    );
    let text = GATEWAY.replace("type: PathPrefix", "type: Prefix");
    assert_error(
        &text,
        15,
        "routes[0].matches[0].path.type",
        "unknown path type `Prefix`",
    );
    for bad in [
        "shop_example.com",
        "shop.example.com.",
        "-a.test",
        "*.",
        "a.*.test",
        "a b",
    ] {
        let text = GATEWAY.replace("shop.example.com, ", &format!("\"{bad}\", "));
        assert_error(&text, 13, "routes[0].hostnames[0]", "invalid hostname");
    }
}

#[test]
fn routes_that_would_overwrite_each_others_sessions_are_refused() {
    // Same cookie name and path, on a listener and host they share.
    let text = GATEWAY.replace(
        "session_persistence: {type: header, name: X-Session}",
        "session_persistence: {type: Cookie, name: _srv_id}",
    );
    let err = parse(&text).unwrap_err();
    assert_eq!(
        (err.line, err.path.as_str()),
        (Some(23), "routes[1]"),
        "{err}"
    );
    assert!(err.message.contains("`cart` and `api`"), "{err}");
    // Apart by host, by listener, by cookie path, or by name: fine.
    for apart in [
        "    hostnames: [api.example.com]\n",
        "    listeners: [internal]\n",
    ] {
        let base = GATEWAY.replace("    listeners: [internal]\n", "");
        let text = base
            .replace(
                "session_persistence: {type: header, name: X-Session}",
                "session_persistence: {type: Cookie, name: _srv_id}",
            )
            .replace("  - name: api\n", &format!("  - name: api\n{apart}"));
        let text = if apart.contains("listeners") {
            text.replace(
                "  - name: cart\n",
                "  - name: cart\n    listeners: [public]\n",
            )
        } else {
            text
        };
        assert!(parse(&text).is_ok(), "{apart}: {:?}", parse(&text).err());
    }
    let text = GATEWAY.replace(
        "session_persistence: {type: header, name: X-Session}",
        "session_persistence: {type: Cookie, name: _srv_id, cookie: {path: /api}}",
    );
    assert!(parse(&text).is_err(), "/api is under /: they overlap");
    let text = GATEWAY
        .replace(
            "session_persistence: {type: Cookie, name: _srv_id, absolute_timeout: 600s}",
            "session_persistence: {type: Cookie, name: _srv_id, cookie: {path: /cart}}",
        )
        .replace(
            "session_persistence: {type: header, name: X-Session}",
            "session_persistence: {type: Cookie, name: _srv_id, cookie: {path: /api}}",
        );
    assert!(parse(&text).is_ok(), "{:?}", parse(&text).err());
}

#[test]
fn bad_values_are_quoted_as_written() {
    let text = GATEWAY.replace("type: header", "type: Biscuit");
    assert_error(&text, 26, "routes[1].session_persistence.type", "`Biscuit`");
    let text = GATEWAY.replace("method: GET", "method: \"G T\"");
    assert_error(
        &text,
        17,
        "routes[0].matches[0].method",
        "invalid method `G T`",
    );
}

#[test]
fn a_cluster_needs_backends() {
    let text = GATEWAY.replace(
        "    backends: [{address: 127.0.0.1:9003, id: canary-1}]\n",
        "",
    );
    assert_error(
        &text,
        9,
        "clusters[1].backends",
        "missing required key `backends`",
    );
}

#[test]
fn every_key_is_known_where_it_is_read() {
    let text = GATEWAY.replace("    address: 127.0.0.1:8001", "    adress: 127.0.0.1:8001");
    assert_error(&text, 5, "listeners[1].adress", "did you mean `address`?");
    let text = GATEWAY.replace("hostnames:", "hostname:");
    assert_error(&text, 13, "routes[0].hostname", "did you mean `hostnames`?");
    let text = format!("{GATEWAY}    priority: 1\n");
    assert_error(&text, 27, "routes[1].priority", "unknown key `priority`");
}
