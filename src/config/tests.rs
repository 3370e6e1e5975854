use std::path::Path;
use std::time::Duration;

use super::*;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn env(name: &str) -> Option<String> {
    match name {
        "GOOD_KEY" => Some(SECRET.to_string()),
        "SHORT_KEY" => Some("too-short".to_string()),
        _ => None,
    }
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/nonexistent"), &env)
}

/// Parses text expected to fail; checks the line, path and a part of the message.
#[track_caller]
fn assert_error(text: &str, line: usize, path: &str, message_part: &str) {
    let err = parse(text).expect_err("config should be rejected");
    assert_eq!(err.line, Some(line), "line of {err}");
    assert_eq!(err.path, path, "path of {err}");
    assert!(
        err.message.contains(message_part),
        "`{message_part}` not in `{}`",
        err.message
    );
}

const MINIMAL: &str = "services:
  - name: web
    listen: 127.0.0.1:8000
    backends:
      - 127.0.0.1:9001
";

#[test]
fn minimal_config_gets_every_default() {
    let c = parse(MINIMAL).unwrap();
    assert!(c.admin.is_none());
    assert!(c.session_keys.is_empty());
    // A service is a listener, a cluster and a route of its name.
    assert_eq!(c.listeners.len(), 1);
    assert_eq!(c.listeners[0].name, "web");
    assert_eq!(c.listeners[0].address, "127.0.0.1:8000".parse().unwrap());
    assert!(!c.listeners[0].long_form);
    let r = &c.routes[0];
    assert_eq!((r.name.as_str(), r.listeners.as_slice()), ("web", &[0][..]));
    assert!(r.hostnames.is_empty());
    assert!(matches!(&r.matches[..], [m] if matches!(&m.path, PathMatch::Prefix(p) if p == "/")));
    assert_eq!(
        r.backends,
        [WeightedCluster {
            cluster: 0,
            weight: 1
        }]
    );
    assert!(r.session.is_none());
    let s = &c.clusters[0];
    assert_eq!(s.name, "web");
    let b = &s.backends[0];
    assert_eq!(
        (b.id.as_str(), b.weight, b.state),
        ("127.0.0.1:9001", 1, BackendState::Active)
    );
    assert_eq!(s.health_check.kind, HealthCheckKind::Tcp);
    assert_eq!(s.health_check.interval, Duration::from_secs(5));
    assert_eq!(s.health_check.timeout, Duration::from_secs(1));
    assert_eq!(
        (
            s.health_check.healthy_threshold,
            s.health_check.unhealthy_threshold
        ),
        (1, 1)
    );
    assert_eq!(s.timeouts.connect, Duration::from_secs(2));
    assert_eq!(s.timeouts.read, Duration::from_secs(60));
    assert_eq!(s.timeouts.write, Duration::from_secs(60));
    assert!(s.preserve_header_case);
}

#[test]
fn full_config_reads_every_key() {
    let text = "version: 1
threads: 2
grace_period_seconds: 10
graceful_shutdown_timeout_seconds: 5
upstream_keepalive_pool_size: 64
admin:
  listen: 127.0.0.1:9100
session_keys:
  - id: k2
    secret_env: GOOD_KEY
services:
  - name: web
    listen: [\"0.0.0.0:8000\", \"127.0.0.1:8001\"]
    backends:
      - address: 127.0.0.1:8080
        id: web-1
        weight: 3
        state: draining
      - 127.0.0.1:8081
    health_check:
      type: http
      path: /healthz
      host: web.internal
      expect_status: [200, 204]
      interval: 2s
      timeout: 500ms
      healthy_threshold: 2
      unhealthy_threshold: 3
    timeouts: {connect: 1s, read: 10m, write: 1h}
    preserve_header_case: false
    session_persistence:
      type: cookie
      name: _srv_id
      absolute_timeout: 600
      idle_timeout: 60s
      strict: true
      cookie:
        lifetime_type: Permanent
        path: /app
        domain: example.com
        secure: true
        http_only: false
        same_site: None
";
    let c = parse(text).unwrap();
    assert_eq!(c.server.threads, 2);
    assert_eq!(c.server.grace_period_seconds, Some(10));
    assert_eq!(c.server.upstream_keepalive_pool_size, 64);
    assert_eq!(c.admin.unwrap().listen, "127.0.0.1:9100".parse().unwrap());
    assert_eq!(c.session_keys[0].id, "k2");
    assert_eq!(c.session_keys[0].secret, SECRET.as_bytes());
    let names: Vec<_> = c.listeners.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["web", "web-2"]);
    assert_eq!(c.routes[0].listeners, [0, 1]);
    let s = &c.clusters[0];
    assert_eq!(s.backends[0].weight, 3);
    assert_eq!(s.backends[0].state, BackendState::Draining);
    assert_eq!(s.backends[1].id, "127.0.0.1:8081");
    assert_eq!(
        s.health_check.kind,
        HealthCheckKind::Http {
            path: "/healthz".into(),
            host: Some("web.internal".into()),
            expect_status: vec![200, 204]
        }
    );
    assert_eq!(s.health_check.timeout, Duration::from_millis(500));
    assert_eq!(s.timeouts.read, Duration::from_secs(600));
    assert_eq!(s.timeouts.write, Duration::from_secs(3600));
    assert!(!s.preserve_header_case);
    let p = c.routes[0].session.as_ref().unwrap();
    assert_eq!(p.kind, SessionKind::Cookie);
    assert_eq!(p.absolute_timeout, Some(Duration::from_secs(600)));
    assert_eq!(p.idle_timeout, Some(Duration::from_secs(60)));
    assert!(p.strict);
    assert_eq!(p.cookie.lifetime_type, LifetimeType::Permanent);
    assert_eq!(p.cookie.domain.as_deref(), Some("example.com"));
    assert_eq!(p.cookie.same_site, SameSite::None);
    assert_eq!(p.cookie.secure, Secure::Always);
    assert!(!p.cookie.http_only);
}

#[test]
fn unknown_tether_key_is_named_with_its_line_and_a_hint() {
    let text = MINIMAL.replace("    backends:", "    backend_list: 1\n    backends:");
    assert_error(
        &text,
        4,
        "services[0].backend_list",
        "unknown key `backend_list`",
    );
    let text = MINIMAL.replace(
        "      - 127.0.0.1:9001",
        "      - address: 127.0.0.1:9001\n        wieght: 2",
    );
    assert_error(
        &text,
        6,
        "services[0].backends[0].wieght",
        "did you mean `weight`?",
    );
}

#[test]
fn unknown_pingora_key_is_an_error() {
    let text = format!("grace_period_second: 10\n{MINIMAL}");
    assert_error(
        &text,
        1,
        "grace_period_second",
        "did you mean `grace_period_seconds`?",
    );
}

#[test]
fn limits_have_defaults_and_bounds() {
    assert_eq!(
        parse(MINIMAL).unwrap().limits.max_request_header_bytes,
        65536
    );
    let c = parse(&format!(
        "limits:\n  max_request_header_bytes: 16384\n{MINIMAL}"
    ))
    .unwrap();
    assert_eq!(c.limits.max_request_header_bytes, 16384);
    let text = format!("limits:\n  max_request_header_bytes: 100\n{MINIMAL}");
    assert_error(&text, 2, "limits.max_request_header_bytes", "at least 1024");
    let text = format!("limits:\n  max_request_header_bytes: 2000000\n{MINIMAL}");
    assert_error(
        &text,
        2,
        "limits.max_request_header_bytes",
        "Pingora's own limit",
    );
}

#[test]
fn wrong_types_are_reported_at_their_line() {
    assert_error(
        &format!("threads: many\n{MINIMAL}"),
        1,
        "threads",
        "invalid type",
    );
    let text = MINIMAL.replace(
        "      - 127.0.0.1:9001",
        "      - address: 127.0.0.1:9001\n        weight: heavy",
    );
    assert_error(
        &text,
        6,
        "services[0].backends[0].weight",
        "expected a whole number",
    );
    let text = MINIMAL.replace(
        "    backends:\n      - 127.0.0.1:9001",
        "    backends: 127.0.0.1:9001",
    );
    assert_error(&text, 4, "services[0].backends", "expected a list");
    let text =
        format!("{MINIMAL}    session_persistence: {{type: Cookie, name: a, strict: maybe}}\n");
    assert_error(
        &text,
        6,
        "services[0].session_persistence.strict",
        "expected true or false",
    );
    let text = format!("{MINIMAL}    preserve_header_case: 1\n");
    assert_error(
        &text,
        6,
        "services[0].preserve_header_case",
        "expected true or false",
    );
}

#[test]
fn duplicate_service_name() {
    let text = format!(
        "{MINIMAL}  - name: web\n    listen: 127.0.0.1:8001\n    backends: [127.0.0.1:9001]\n"
    );
    assert_error(&text, 6, "services[1].name", "duplicate service name `web`");
}

#[test]
fn duplicate_backend_id_and_address() {
    let text = MINIMAL.replace(
        "      - 127.0.0.1:9001",
        "      - {address: 127.0.0.1:9001, id: x}\n      - {address: 127.0.0.1:9002, id: x}",
    );
    assert_error(
        &text,
        6,
        "services[0].backends[1]",
        "duplicate backend id `x`",
    );
    let text = MINIMAL.replace(
        "      - 127.0.0.1:9001",
        "      - {address: 127.0.0.1:9001, id: a}\n      - {address: 127.0.0.1:9001, id: b}",
    );
    assert_error(
        &text,
        6,
        "services[0].backends[1]",
        "duplicate backend address",
    );
}

#[test]
fn listen_address_used_twice() {
    let text = format!(
        "{MINIMAL}  - name: api\n    listen: [127.0.0.1:8001, 0.0.0.0:8000]\n    backends: [127.0.0.1:9001]\n"
    );
    assert_error(&text, 7, "services[1].listen[1]", "used twice");
    let text = format!("admin:\n  listen: 127.0.0.1:8000\n{MINIMAL}");
    assert_error(&text, 2, "admin.listen", "used twice");
}

#[test]
fn empty_backend_list() {
    let text = MINIMAL.replace("    backends:\n      - 127.0.0.1:9001", "    backends: []");
    assert_error(&text, 4, "services[0].backends", "backend list is empty");
}

#[test]
fn weight_zero() {
    let text = MINIMAL.replace(
        "      - 127.0.0.1:9001",
        "      - address: 127.0.0.1:9001\n        weight: 0",
    );
    assert_error(
        &text,
        6,
        "services[0].backends[0].weight",
        "must be at least 1",
    );
}

#[test]
fn permanent_without_absolute_timeout() {
    let text = format!(
        "{MINIMAL}    session_persistence:\n      type: Cookie\n      name: s\n      cookie: {{lifetime_type: Permanent}}\n"
    );
    assert_error(
        &text,
        7,
        "services[0].session_persistence",
        "requires `absolute_timeout`",
    );
}

#[test]
fn same_site_none_without_secure() {
    let text = format!(
        "{MINIMAL}    session_persistence:\n      type: Cookie\n      name: s\n      cookie:\n        secure: false\n        same_site: None\n"
    );
    assert_error(
        &text,
        11,
        "services[0].session_persistence.cookie.same_site",
        "requires `secure: true` or `auto`",
    );
    // `secure: auto`, the default, sets Secure over TLS: None is allowed with it.
    let text = format!(
        "{MINIMAL}    session_persistence:\n      type: Cookie\n      name: s\n      cookie: {{same_site: None}}\n"
    );
    let c = parse(&text).unwrap();
    assert_eq!(
        c.routes[0].session.as_ref().unwrap().cookie.secure,
        Secure::Auto
    );
}

#[test]
fn invalid_cookie_and_header_names() {
    for (kind, name) in [
        ("Cookie", "\"a b\""),
        ("Cookie", "\"a;b\""),
        ("Header", "\"x:y\""),
        ("Cookie", "\"\""),
    ] {
        let text =
            format!("{MINIMAL}    session_persistence:\n      type: {kind}\n      name: {name}\n");
        let err = parse(&text).unwrap_err();
        assert_eq!(err.path, "services[0].session_persistence.name", "{err}");
        assert_eq!(err.line, Some(8), "{err}");
    }
    let text =
        format!("{MINIMAL}    session_persistence:\n      type: Header\n      name: Cookie\n");
    assert_error(&text, 8, "services[0].session_persistence.name", "reserved");
}

#[test]
fn short_or_unreadable_secrets() {
    let text = format!("session_keys:\n  - id: k1\n    secret_env: SHORT_KEY\n{MINIMAL}");
    assert_error(&text, 3, "session_keys[0].secret_env", "at least 32");
    let text = format!("session_keys:\n  - id: k1\n    secret_env: MISSING\n{MINIMAL}");
    assert_error(&text, 3, "session_keys[0].secret_env", "not set");
    let text = format!("session_keys:\n  - id: k1\n    secret_file: k1.key\n{MINIMAL}");
    assert_error(
        &text,
        3,
        "session_keys[0].secret_file",
        "cannot read `/nonexistent/k1.key`",
    );
}

#[test]
fn secret_files_resolve_against_the_config_folder() {
    let dir = std::env::temp_dir().join(format!("tether-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("k1.key"), format!("{SECRET}\n")).unwrap();
    std::fs::write(
        dir.join("tether.yaml"),
        format!("session_keys:\n  - id: k1\n    secret_file: k1.key\n{MINIMAL}"),
    )
    .unwrap();
    let c = Config::load(dir.join("tether.yaml")).unwrap();
    assert_eq!(
        c.session_keys[0].secret,
        SECRET.as_bytes(),
        "trailing newline is not part of the key"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unparsable_duration() {
    let text = format!("{MINIMAL}    timeouts:\n      read: 10 minutes\n");
    assert_error(
        &text,
        7,
        "services[0].timeouts.read",
        "invalid duration `10 minutes`",
    );
    let text = format!("{MINIMAL}    health_check:\n      interval: 0s\n");
    assert_error(
        &text,
        7,
        "services[0].health_check.interval",
        "greater than 0",
    );
}

#[test]
fn missing_required_keys() {
    assert_error(
        "version: 1\n",
        1,
        "routes",
        "at least one route (or service) is required",
    );
    let text = MINIMAL.replace("    listen: 127.0.0.1:8000\n", "");
    assert_error(
        &text,
        2,
        "services[0].listen",
        "missing required key `listen`",
    );
}

#[test]
fn bad_values_name_what_is_allowed() {
    let text = MINIMAL.replace("name: web", "name: \"web app\"");
    assert_error(&text, 2, "services[0].name", "[A-Za-z0-9_-]");
    let text = MINIMAL.replace("listen: 127.0.0.1:8000", "listen: localhost");
    assert_error(&text, 3, "services[0].listen", "not a listen address");
    let text = MINIMAL.replace("      - 127.0.0.1:9001", "      - nowhere");
    assert_error(&text, 5, "services[0].backends[0]", "ip:port or host:port");
    let text = format!("{MINIMAL}    health_check: {{type: tcp, path: /x}}\n");
    assert_error(
        &text,
        6,
        "services[0].health_check.path",
        "only allowed with `type: http`",
    );
    let text = format!("{MINIMAL}    health_check: {{type: grpc}}\n");
    assert_error(
        &text,
        6,
        "services[0].health_check.type",
        "expected tcp, http or none",
    );
}

#[test]
fn syntax_errors_have_a_line() {
    let err = parse("services:\n  - name: [unclosed\n").unwrap_err();
    assert!(
        err.line.is_some() && err.message.contains("invalid YAML"),
        "{err}"
    );
}

#[test]
fn errors_display_file_line_path_and_reason() {
    let mut err = ConfigError::at(
        12,
        "services[1].backends[0].weight",
        "must be at least 1, found 0",
    );
    err.file = "/etc/tether/tether.yaml".into();
    assert_eq!(
        err.to_string(),
        "/etc/tether/tether.yaml:12: services[1].backends[0].weight: must be at least 1, found 0"
    );
}

#[test]
fn secrets_do_not_show_in_debug_output() {
    let key = SessionKey {
        id: "k1".into(),
        secret: SECRET.as_bytes().to_vec(),
    };
    let text = format!("{key:?}");
    assert!(
        !text.contains(SECRET) && text.contains("32 bytes"),
        "{text}"
    );
}

/// Every shipped example is valid (with the documented environment).
#[test]
fn shipped_examples_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let env = |name: &str| (name == "TETHER_SESSION_KEY").then(|| SECRET.to_string());
            Config::parse(&text, &dir, &env).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            seen += 1;
        }
    }
    assert!(seen >= 2, "expected conf/tether.yaml and conf/demo.yaml");
}
