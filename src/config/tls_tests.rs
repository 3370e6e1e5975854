//! TLS and HTTP/2 keys of listeners and clusters, and their errors (certificate files made by
//! the tests in a temp folder).

use std::path::{Path, PathBuf};

use super::*;

/// A temp folder with a certificate pair (`good.pem`/`good.key`), a key of another pair
/// (`other.key`) and a file that is not PEM (`junk.pem`); removed on drop.
struct Files(PathBuf);

impl Files {
    fn new() -> Files {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("tether-tls-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pair = |names: &[&str], days: i64| {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(
                names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            )
            .unwrap();
            params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(days);
            (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
        };
        let (cert, key) = pair(&["shop.test"], 365);
        std::fs::write(dir.join("good.pem"), cert).unwrap();
        std::fs::write(dir.join("good.key"), key).unwrap();
        let (soon, soon_key) = pair(&["soon.test"], 3);
        std::fs::write(dir.join("soon.pem"), soon).unwrap();
        std::fs::write(dir.join("soon.key"), soon_key).unwrap();
        std::fs::write(dir.join("other.key"), pair(&["x.test"], 365).1).unwrap();
        std::fs::write(dir.join("junk.pem"), "not a certificate\n").unwrap();
        Files(dir)
    }

    fn parse(&self, text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, &self.0, &|_| None)
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A config with one listener whose body is `listener` (indented under `- name: public`) and
/// one cluster whose extra keys are `cluster`.
fn config(listener: &str, cluster: &str) -> String {
    format!(
        "listeners:
  - name: public
    address: 127.0.0.1:8443
{listener}
clusters:
  - name: app
    backends: [127.0.0.1:9001]
{cluster}
routes:
  - name: app
    backends: [{{cluster: app}}]
"
    )
}

const TLS: &str = "    tls:
      certificates:
        - {cert_file: good.pem, key_file: good.key}";

#[track_caller]
fn assert_error(files: &Files, text: &str, line: usize, path: &str, part: &str) {
    let err = files.parse(text).expect_err("config should be rejected");
    assert_eq!((err.line, err.path.as_str()), (Some(line), path), "{err}");
    assert!(err.message.contains(part), "`{part}` not in `{err}`");
}

#[test]
fn tls_listeners_and_upstream_protocols_are_read() {
    let files = Files::new();
    let text = config(
        &format!("{TLS}\n        - {{cert_file: soon.pem, key_file: soon.key}}\n      min_version: \"1.3\""),
        "    protocol: h2\n    tls: {sni: api.internal, verify: false}",
    );
    let c = files.parse(&text).unwrap();
    let tls = c.listeners[0].tls.as_ref().unwrap();
    assert_eq!(tls.certificates.len(), 2);
    assert_eq!(tls.certificates[0].cert_file, "good.pem");
    assert_eq!(tls.certificates[0].cert_path, files.0.join("good.pem"));
    assert_eq!(tls.min_version, TlsVersion::Tls13);
    assert!(c.listeners[0].http2, "HTTP/2 is on by default with TLS");
    assert_eq!(c.clusters[0].protocol, UpstreamProtocol::H2);
    let upstream = c.clusters[0].tls.as_ref().unwrap();
    assert_eq!(
        (upstream.sni.as_deref(), upstream.verify),
        (Some("api.internal"), false)
    );
    // The certificate that expires in 3 days: valid, with a warning naming it.
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(
        c.warnings[0].contains("listeners[0].tls.certificates[1]")
            && c.warnings[0].contains("`soon.pem` expires in "),
        "{:?}",
        c.warnings
    );
    // Plain listeners: no HTTP/2 unless asked (h2c).
    let plain = files.parse(&config("    http2: true", "")).unwrap();
    assert!(plain.listeners[0].tls.is_none() && plain.listeners[0].http2);
    let plain = files.parse(&config("    redirect_https: 443", "")).unwrap();
    assert!(!plain.listeners[0].http2);
    assert_eq!(plain.listeners[0].redirect_https, Some(443));
}

#[test]
fn certificate_errors_name_the_file_and_key_path() {
    let files = Files::new();
    let with = |cert: &str, key: &str| {
        config(
            &format!(
                "    tls:\n      certificates:\n        - {{cert_file: {cert}, key_file: {key}}}"
            ),
            "",
        )
    };
    let at = "listeners[0].tls.certificates[0]";
    let missing = files.0.join("missing.pem").display().to_string();
    assert_error(
        &files,
        &with("missing.pem", "good.key"),
        6,
        &format!("{at}.cert_file"),
        &format!("cannot read `{missing}`"),
    );
    let junk = files.0.join("junk.pem").display().to_string();
    assert_error(
        &files,
        &with("junk.pem", "good.key"),
        6,
        &format!("{at}.cert_file"),
        &format!("`{junk}` holds no PEM certificate"),
    );
    assert_error(
        &files,
        &with("good.pem", "junk.pem"),
        6,
        &format!("{at}.key_file"),
        "holds no PEM private key",
    );
    assert_error(
        &files,
        &with("good.pem", "other.key"),
        6,
        at,
        "does not match the certificate",
    );
    // A key file given where the certificate belongs.
    assert_error(
        &files,
        &with("good.key", "good.key"),
        6,
        &format!("{at}.cert_file"),
        "holds no PEM certificate",
    );
}

#[test]
fn tls_and_http2_keys_in_the_wrong_place_are_errors() {
    let files = Files::new();
    assert_error(
        &files,
        &config(&format!("{TLS}\n      min_version: \"1.1\""), ""),
        7,
        "listeners[0].tls.min_version",
        "unsupported TLS version `1.1`",
    );
    assert_error(
        &files,
        &config(&format!("{TLS}\n      http2: true"), ""),
        7,
        "listeners[0].tls.http2",
        "unknown key `http2`",
    );
    assert_error(
        &files,
        &config(&format!("{TLS}\n    redirect_https: 443"), ""),
        7,
        "listeners[0].redirect_https",
        "for plain listeners",
    );
    assert_error(
        &files,
        &config("    http2: yes", ""),
        4,
        "listeners[0].http2",
        "expected true or false",
    );
    assert_error(
        &files,
        &config("    tls: {certificates: []}", ""),
        4,
        "listeners[0].tls.certificates",
        "at least one certificate",
    );
    // Upstream: h2 is over TLS, h2c is not; a CA file must hold certificates.
    assert_error(
        &files,
        &config("", "    protocol: h2"),
        8,
        "clusters[0].protocol",
        "needs the cluster's `tls`",
    );
    assert_error(
        &files,
        &config("", "    protocol: h2c\n    tls: {}"),
        9,
        "clusters[0].tls",
        "with `tls` use `protocol: h2`",
    );
    assert_error(
        &files,
        &config("", "    protocol: HTTP3"),
        8,
        "clusters[0].protocol",
        "unknown protocol `HTTP3`",
    );
    assert_error(
        &files,
        &config("", "    tls: {ca_file: junk.pem}"),
        8,
        "clusters[0].tls.ca_file",
        "holds no PEM certificate",
    );
    assert_error(
        &files,
        &config("", "    tls: {sni: \"bad name\"}"),
        8,
        "clusters[0].tls.sni",
        "not a DNS name",
    );
    // The short form has no TLS keys.
    let err = files
        .parse("services:\n  - name: web\n    listen: 127.0.0.1:8000\n    backends: [127.0.0.1:9001]\n    tls: {}\n")
        .unwrap_err();
    assert_eq!(err.path, "services[0].tls", "{err}");
}

#[test]
fn relative_certificate_paths_follow_the_config_folder() {
    let files = Files::new();
    let text = config(TLS, "");
    let elsewhere = Config::parse(&text, Path::new("/nonexistent"), &|_| None).unwrap_err();
    assert!(
        elsewhere.message.contains("/nonexistent/good.pem"),
        "{elsewhere}"
    );
    assert!(files.parse(&text).is_ok());
}
