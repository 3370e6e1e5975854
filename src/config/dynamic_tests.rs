//! Keys of backends that change at run time: `discovery`, `outlier_detection`, the admin
//! token and state file, and their errors.

use std::path::Path;
use std::time::Duration;

use super::*;

fn parse_env(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/tether"), &|name| match name {
        "ADMIN_TOKEN" => Some("0123456789abcdef-admin\n".into()),
        "SHORT_TOKEN" => Some("short".into()),
        _ => None,
    })
}

fn error_of(text: &str) -> ConfigError {
    parse_env(text).expect_err("config should be rejected")
}

/// A long-form config with one cluster `app` whose body is `cluster` (indented by 4).
fn with_cluster(cluster: &str) -> String {
    format!(
        "listeners:
  - {{name: public, address: 127.0.0.1:8000}}
clusters:
  - name: app
{cluster}
routes:
  - {{name: app, backends: [{{cluster: app}}]}}
"
    )
}

#[test]
fn a_discovered_cluster_reads_every_key() {
    let c = parse_env(&with_cluster(
        "    discovery:
      type: DNS
      name: App.Internal.
      port: 8080
      interval: 2s
      nameservers: [127.0.0.1:5353, 10.0.0.2]
    outlier_detection: {consecutive_failures: 3, ejection_time: 10s, max_ejected_percent: 34}",
    ))
    .unwrap();
    let cluster = &c.clusters[0];
    assert!(cluster.backends.is_empty());
    let d = cluster.discovery.as_ref().unwrap();
    assert_eq!(d.name, "app.internal");
    assert_eq!(d.port, Some(8080));
    assert_eq!(d.interval, Duration::from_secs(2));
    assert_eq!(d.record, RecordKind::Address);
    assert_eq!(
        d.nameservers,
        vec![
            "127.0.0.1:5353".parse().unwrap(),
            "10.0.0.2:53".parse().unwrap()
        ]
    );
    let o = cluster.outlier.unwrap();
    assert_eq!(
        (
            o.consecutive_failures,
            o.ejection_time,
            o.max_ejected_percent
        ),
        (3, Duration::from_secs(10), 34)
    );
    let srv = parse_env(&with_cluster(
        "    discovery: {type: dns, name: _http._tcp.app.internal, record: SRV}
    outlier_detection: {}",
    ))
    .unwrap();
    let d = srv.clusters[0].discovery.as_ref().unwrap();
    assert_eq!((d.record, d.port), (RecordKind::Srv, None));
    assert_eq!(d.interval, Duration::from_secs(5));
    assert_eq!(srv.clusters[0].outlier, Some(OutlierConfig::default()));
}

#[test]
fn discovery_errors_name_the_key() {
    for (cluster, line, path, part) in [
        (
            "    backends: [127.0.0.1:9001]\n    discovery: {type: dns, name: a.test, port: 80}",
            6,
            "clusters[0].discovery",
            "not both",
        ),
        (
            "    health_check: {type: tcp}",
            4,
            "clusters[0].backends",
            "`backends` (a list) or `discovery`",
        ),
        (
            "    discovery: {type: dns, name: \"bad name!\", port: 80}",
            5,
            "clusters[0].discovery.name",
            "`bad name!` is not a DNS name",
        ),
        (
            "    discovery: {type: dns, name: a.test, port: 80, nameservers: [dns.local]}",
            5,
            "clusters[0].discovery.nameservers[0]",
            "`dns.local` is not a name server address",
        ),
        (
            "    discovery: {type: dns, name: a.test}",
            5,
            "clusters[0].discovery",
            "missing required key `port`",
        ),
        (
            "    discovery: {type: dns, name: a.test, record: SRV, port: 80}",
            5,
            "clusters[0].discovery.port",
            "SRV records carry their own ports",
        ),
        (
            "    discovery: {type: consul, name: a.test, port: 80}",
            5,
            "clusters[0].discovery.type",
            "unknown type `consul`",
        ),
        (
            "    discovery: {type: dns, name: a.test, port: 80, record: MX}",
            5,
            "clusters[0].discovery.record",
            "unknown record `MX`",
        ),
        (
            "    backends: [127.0.0.1:9001]\n    outlier_detection: {max_ejected_percent: 101}",
            6,
            "clusters[0].outlier_detection.max_ejected_percent",
            "at most 100",
        ),
        (
            "    backends: [127.0.0.1:9001]\n    outlier_detection: {consecutive_failures: 0}",
            6,
            "clusters[0].outlier_detection.consecutive_failures",
            "",
        ),
    ] {
        let err = error_of(&with_cluster(cluster));
        assert_eq!(
            (err.line, err.path.as_str()),
            (Some(line), path),
            "{cluster}: {err}"
        );
        assert!(err.message.contains(part), "{cluster}: {err}");
    }
}

#[test]
fn the_admin_token_and_state_file() {
    let text = format!(
        "admin:\n  listen: 127.0.0.1:9100\n  token_env: ADMIN_TOKEN\n  state_file: state.json\n{}",
        with_cluster("    backends: [127.0.0.1:9001]")
    );
    let admin = parse_env(&text).unwrap().admin.unwrap();
    assert_eq!(
        admin.token,
        Some(AdminToken(b"0123456789abcdef-admin".to_vec()))
    );
    assert_eq!(
        admin.state_file.as_deref(),
        Some(Path::new("/etc/tether/state.json"))
    );
    // The token never shows in a debug print.
    assert!(!format!("{admin:?}").contains("0123456789abcdef"));
    for (keys, path, part) in [
        ("  token_env: SHORT_TOKEN", "admin.token_env", "at least 16"),
        (
            "  token_file: /nonexistent/admin.token",
            "admin.token_file",
            "cannot read `/nonexistent/admin.token`",
        ),
        (
            "  token_file: a\n  token_env: ADMIN_TOKEN",
            "admin.token_file",
            "not both",
        ),
        ("  token_env: UNSET", "admin.token_env", "is not set"),
    ] {
        let text = format!(
            "admin:\n  listen: 127.0.0.1:9100\n{keys}\n{}",
            with_cluster("    backends: [127.0.0.1:9001]")
        );
        let err = error_of(&text);
        assert_eq!(err.path, path, "{err}");
        assert!(err.message.contains(part), "{err}");
    }
}
