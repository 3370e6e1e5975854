//! `tether convert`: each input kind makes a config `tether -t` accepts; the seeds' manifests
//! (Envoy Gateway's cookie and header HTTPRoutes, FSM's Gateway, HTTPRoute and
//! SessionStickyPolicy, Envoy's stateful_session filter) convert and then behave as their
//! documents describe, with a real DNS server for the Services; broken manifests exit 2.
//!
//! The manifests are the seeds' (`../shared/seeds/`), with the ports the tests were given.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Output};

use common::dns::DnsServer;
use common::*;

/// Runs `tether convert` on these manifests (each written to a file) with `args`.
fn convert(manifests: &[&str], args: &[String]) -> (Output, TempDir) {
    let dir = TempDir::new();
    let files: Vec<String> = manifests
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let path = dir.path(&format!("manifest-{i}.yaml"));
            std::fs::write(&path, m).unwrap();
            path.display().to_string()
        })
        .collect();
    let out = Command::new(tether_bin())
        .arg("convert")
        .args(args)
        .args(&files)
        .output()
        .unwrap();
    (out, dir)
}

/// The converted config, which must be accepted by `tether -t`.
fn converted(manifests: &[&str], args: &[String]) -> String {
    let (out, dir) = convert(manifests, args);
    let config = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}\n{config}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(dir.path("tether.yaml"), &config).unwrap();
    let check = Command::new(tether_bin())
        .args(["-t", "-c"])
        .arg(dir.path("tether.yaml"))
        .env("TETHER_SESSION_KEY", SESSION_KEY)
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}\n{config}");
    config
}

/// A cookie attribute's value (names in lowercase).
fn attr<'a>(attrs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

const SESSION_KEY: &str = "convert-test-key-0123456789abcdef0123";

/// tether on a converted config: `make(addr)` converts for the listener address it is given.
fn start_converted(make: &dyn Fn(SocketAddr) -> String) -> Tether {
    Tether::start_body(
        "",
        1,
        &|addrs| make(addrs[0]),
        &[("TETHER_SESSION_KEY", SESSION_KEY)],
    )
}

/// Envoy Gateway's "Session Persistence" HTTPRoute, cookie or header type.
fn envoy_gateway_route(kind: &str, port: u16) -> String {
    let cookie_config = if kind == "Cookie" {
        "      cookieConfig:\n        lifetimeType: Permanent\n"
    } else {
        ""
    };
    format!(
        "apiVersion: gateway.networking.k8s.io/v1beta1
kind: HTTPRoute
metadata:
  name: {}
spec:
  parentRefs:
  - name: eg
  rules:
  - matches:
    - path:
        type: PathPrefix
        value: /
    backendRefs:
    - name: backend
      port: {port}
    sessionPersistence:
      sessionName: Session-A
      type: {kind}
      absoluteTimeout: 10s
{cookie_config}",
        kind.to_ascii_lowercase()
    )
}

/// Two backends of the Service `name` (namespace `ns`) on 127.0.0.2 and .3, found through a
/// real DNS server.
struct Service {
    first: Backend,
    second: Backend,
    dns: DnsServer,
}

impl Service {
    fn start(name: &str, ns: &str, names: (&str, &str)) -> Service {
        let first = Backend::start_at(names.0, "127.0.0.2:0");
        let port = first.addr.port();
        let second = Backend::start_at(names.1, &format!("127.0.0.3:{port}"));
        let fqdn = format!("{name}.{ns}.svc.cluster.local");
        let dns = DnsServer::start(&[("127.0.0.2", &fqdn), ("127.0.0.3", &fqdn)], &[]);
        Service { first, second, dns }
    }

    fn port(&self) -> u16 {
        self.first.addr.port()
    }

    fn args(&self, listen: Option<SocketAddr>) -> Vec<String> {
        let mut args = vec!["--nameserver".to_string(), self.dns.addr.to_string()];
        if let Some(addr) = listen {
            args.extend(["--listen".to_string(), addr.to_string()]);
        }
        args
    }
}

/// Waits until both backends of the converted cluster are found and healthy.
fn wait_found(t: &Tether, cluster: &str) {
    t.wait_backends(cluster, "both Service backends", |bs| {
        bs.len() == 2 && bs.iter().all(|b| b["healthy"] == true)
    });
}

/// Envoy Gateway's `backend` Service and tether on its converted HTTPRoute of type `kind`,
/// once both backends are found.
fn envoy_gateway(kind: &str) -> (Service, Tether) {
    let svc = Service::start("backend", "default", ("backend-1", "backend-2"));
    let port = svc.port();
    let t = start_converted(&|addr| {
        converted(&[&envoy_gateway_route(kind, port)], &svc.args(Some(addr)))
    });
    wait_found(&t, &format!("backend-{port}"));
    (svc, t)
}

#[test]
fn envoy_gateway_cookie_flow() {
    let (_svc, t) = envoy_gateway("Cookie");
    // curl --verbose --header "Host: www.example.com" http://localhost:8888/get (the route
    // takes any host; the test client sends its own Host).
    let first = get(t.listen, "/get", &[]).unwrap();
    let (name, value, attrs) = first_set_cookie(&first).expect("Set-Cookie Session-A");
    assert_eq!(name, "Session-A");
    assert_eq!(attr(&attrs, "max-age"), Some("10"), "{attrs:?}");
    // With the cookie: the same backend every time.
    for _ in 0..5 {
        let r = get(t.listen, "/get", &[&format!("Cookie: Session-A={value}")]).unwrap();
        assert_eq!(r.backend(), first.backend());
    }
}

#[test]
fn envoy_gateway_header_flow() {
    let (_svc, t) = envoy_gateway("Header");
    let first = get(t.listen, "/get", &[]).unwrap();
    let token = first
        .header("session-a")
        .expect("response header Session-A")
        .to_string();
    for _ in 0..5 {
        let r = get(t.listen, "/get", &[&format!("Session-A: {token}")]).unwrap();
        assert_eq!(r.backend(), first.backend());
    }
    // Without the header, requests spread.
    let spread: std::collections::HashSet<String> = (0..4)
        .map(|_| get(t.listen, "/get", &[]).unwrap().backend())
        .collect();
    assert_eq!(spread.len(), 2);
}

/// FSM's session sticky guide: a Gateway, an HTTPRoute, the policy (applied with `-n server`).
fn fsm_manifests(gateway_port: u16, service_port: u16) -> (String, String) {
    let gateway_and_route = format!(
        "apiVersion: gateway.networking.k8s.io/v1beta1
kind: Gateway
metadata:
  name: simple-fsm-gateway
spec:
  gatewayClassName: fsm-gateway-cls
  listeners:
    - protocol: HTTP
      port: {gateway_port}
      name: http
      allowedRoutes:
        namespaces:
          from: Same
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: HTTPRoute
metadata:
  name: fortio-route
spec:
  parentRefs:
  - name: simple-fsm-gateway
    port: {gateway_port}
  rules:
  - matches:
    - path:
        type: PathPrefix
        value: /
    backendRefs:
    - name: pipy
      port: {service_port}
"
    );
    let policy = format!(
        "apiVersion: gateway.flomesh.io/v1alpha1
kind: SessionStickyPolicy
metadata:
  name: session-sticky-policy-sample
spec:
  targetRef:
    group: \"\"
    kind: Service
    name: pipy
    namespace: server
  ports:
  - port: {service_port}
    config:
      cookieName: _srv_id
      expires: 600
"
    );
    (gateway_and_route, policy)
}

#[test]
fn fsm_session_sticky_flow() {
    let svc = Service::start("pipy", "server", ("Hello, world", "Service unavailable"));
    svc.second.set_status(503);
    let port = svc.port();
    let t = start_converted(&|addr| {
        let (gw, policy) = fsm_manifests(addr.port(), port);
        let mut args = svc.args(None);
        args.extend(["-n".to_string(), "server".to_string()]);
        converted(&[&gw, &policy], &args)
    });
    wait_found(&t, &format!("pipy-{port}"));
    // curl -i http://$GATEWAY_IP:8000/ : set-cookie _srv_id=...; max-age=600
    let first = get(t.listen, "/", &[]).unwrap();
    let (name, value, attrs) = first_set_cookie(&first).expect("set-cookie _srv_id");
    assert_eq!(name, "_srv_id");
    assert_eq!(attr(&attrs, "max-age"), Some("600"), "{attrs:?}");
    assert!(attr(&attrs, "expires").is_some(), "{attrs:?}");
    // curl -b _srv_id=... three times: the same answer each time.
    for _ in 0..3 {
        let r = get(t.listen, "/", &[&format!("Cookie: _srv_id={value}")]).unwrap();
        assert_eq!((r.status(), r.backend()), (first.status(), first.backend()));
    }
    // Without the cookie, the two pods alternate (200 Hello, 503 Service unavailable).
    let statuses: std::collections::HashSet<u16> = (0..4)
        .map(|_| get(t.listen, "/", &[]).unwrap().status())
        .collect();
    assert_eq!(statuses.len(), 2, "{statuses:?}");
}

/// Envoy's stateful session filter (cookie, strict) in a whole Envoy config whose cluster has
/// fixed endpoints.
fn envoy_config(strict: bool, backends: &[SocketAddr]) -> String {
    let endpoints: String = backends
        .iter()
        .map(|b| {
            format!(
                "        - endpoint:\n            address:\n              socket_address: {{address: {}, port_value: {}}}\n",
                b.ip(),
                b.port()
            )
        })
        .collect();
    format!(
        "static_resources:
  listeners:
  - name: listener_0
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          http_filters:
          - name: envoy.filters.http.stateful_session
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.filters.http.stateful_session.v3.StatefulSession
              strict: {strict}
              session_state:
                name: envoy.http.stateful_session.cookie
                typed_config:
                  \"@type\": type.googleapis.com/envoy.extensions.http.stateful_session.cookie.v3.CookieBasedSessionState
                  cookie:
                    name: global-session-cookie
                    path: /path
                    ttl: 120s
          - name: envoy.filters.http.router
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: service
    load_assignment:
      cluster_name: service
      endpoints:
      - lb_endpoints:
{endpoints}"
    )
}

#[test]
fn envoy_stateful_session_flow_strict() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let t = start_converted(&|addr| {
        converted(
            &[&envoy_config(true, &[a.addr, b.addr])],
            &["--listen".to_string(), addr.to_string()],
        )
    });
    let first = get(t.listen, "/path/x", &[]).unwrap();
    let (name, value, attrs) = first_set_cookie(&first).expect("the session cookie");
    assert_eq!(name, "global-session-cookie");
    assert_eq!(attr(&attrs, "path"), Some("/path"));
    assert_eq!(attr(&attrs, "max-age"), Some("120"));
    let cookie = format!("Cookie: global-session-cookie={value}");
    for _ in 0..3 {
        assert_eq!(
            get(t.listen, "/path/x", &[&cookie]).unwrap().backend(),
            first.backend()
        );
    }
    // strict: the pinned backend gone, the answer is 503 (failed_closed), not another backend.
    let (pinned, other) = if first.backend() == "a" {
        (a, b)
    } else {
        (b, a)
    };
    drop(pinned);
    let r = get(t.listen, "/path/x", &[&cookie]).unwrap();
    assert_eq!(r.status(), 503);
    t.assert_metric(
        "tether_session_failed_closed_total{route=\"envoy-session\"}",
        1.0,
    );
    drop(other);
}

#[test]
fn every_input_kind_converts() {
    // The seed's filter alone (no clusters): a placeholder cluster, said so.
    let filter_only = "- name: envoy.filters.http.stateful_session
  typed_config:
    \"@type\": type.googleapis.com/envoy.extensions.filters.http.stateful_session.v3.StatefulSession
    session_state:
      name: envoy.http.stateful_session.header
      typed_config:
        \"@type\": type.googleapis.com/envoy.extensions.http.stateful_session.header.v3.HeaderBasedSessionState
        name: session-header
";
    let config = converted(&[filter_only], &[]);
    assert!(
        config.contains("type: Header") && config.contains("\"session-header\""),
        "{config}"
    );
    assert!(config.contains("# not converted:") && config.contains("no cluster with endpoints"));

    // The other session persistence shape, and a GRPCRoute to an h2c cluster.
    let other_shape = "kind: HTTPRoute
metadata: {name: api, namespace: shop}
spec:
  hostnames: [\"api.example.com\"]
  rules:
  - backendRefs: [{name: api, port: 9000}]
    sessionPersistence:
      type: Cookie
      cookie: {name: api-session, lifetimeType: Permanent, path: /api}
      absoluteTimeout: 1h30m
---
kind: GRPCRoute
metadata: {name: greeter, namespace: shop}
spec:
  rules:
  - matches: [{method: {service: helloworld.Greeter, method: SayHello}}]
    backendRefs: [{name: greeter, port: 50051}]
    sessionPersistence: {type: Header, header: {name: x-session}}
";
    let config = converted(&[other_shape], &[]);
    for part in [
        "\"api-session\"",
        "absolute_timeout: 5400s",
        "path: \"/api\"",
        "name: \"api.shop.svc.cluster.local\", port: 9000",
        "protocol: h2c",
        "path: {type: Exact, value: \"/helloworld.Greeter/SayHello\"}",
        "type: Header",
    ] {
        assert!(config.contains(part), "`{part}` not in\n{config}");
    }
}

#[test]
fn broken_manifests_are_refused_with_status_2() {
    for (manifest, part) in [
        ("kind: HTTPRoute\nmetadata: {name: r}\nspec: {rules: []}\n", "spec.rules: no rule"),
        (
            "kind: HTTPRoute\nmetadata: {name: r}\nspec:\n  rules:\n  - backendRefs: [{name: a}]\n",
            "spec.rules[0].backendRefs[0].port: missing",
        ),
        (
            "kind: HTTPRoute\nmetadata: {name: r}\nspec:\n  rules:\n  - backendRefs: [{name: a, port: 80}]\n    sessionPersistence: {type: Magic}\n",
            "spec.rules[0].sessionPersistence.type: `Magic`",
        ),
        ("kind: HTTPRoute\n  oops: [\n", "not valid YAML"),
        ("- 1\n- 2\n", "expected a mapping"),
        ("kind: Deployment\nmetadata: {name: d}\n", "nothing to convert"),
    ] {
        let (out, _dir) = convert(&[manifest], &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{manifest}: {stderr}");
        assert!(stderr.contains(part), "`{part}` not in: {stderr}");
        assert!(stderr.contains("manifest-0.yaml"), "{stderr}");
        assert!(out.stdout.is_empty());
    }
}
