//! The command line: `--version`, `-t` on good and bad files, start-up refusal of a bad file.

mod common;

use std::process::Command;

use common::*;

fn tether(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(tether_bin())
        .args(args)
        .env("TETHER_SESSION_KEY", "0123456789abcdef0123456789abcdef")
        .output()
        .expect("run tether");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn version_is_printed() {
    let (code, out, _) = tether(&["--version"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("tether {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn check_accepts_every_shipped_config() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let path = path.to_str().unwrap();
        let (code, out, err) = tether(&["-t", "-c", path]);
        assert_eq!(code, 0, "{path}: {out}{err}");
        assert!(out.contains("is valid"), "{out}");
    }
}

#[test]
fn check_rejects_a_bad_file_naming_file_line_and_key() {
    let dir = TempDir::new();
    let conf = dir.path("bad.yaml");
    std::fs::write(
        &conf,
        "version: 1\nservices:\n  - name: web\n    listen: 127.0.0.1:8000\n    backends:\n      - address: 127.0.0.1:9001\n        weight: 0\n",
    )
    .unwrap();
    let conf = conf.to_str().unwrap();
    let (code, _, err) = tether(&["-t", "-c", conf]);
    assert_ne!(code, 0);
    assert!(
        err.contains(&format!(
            "{conf}:7: services[0].backends[0].weight: must be at least 1"
        )),
        "{err}"
    );
}

#[test]
fn check_rejects_a_typo_in_a_pingora_key() {
    let dir = TempDir::new();
    let conf = dir.path("typo.yaml");
    std::fs::write(
        &conf,
        "grace_period_second: 10\nservices:\n  - name: web\n    listen: 127.0.0.1:8000\n    backends: [127.0.0.1:9001]\n",
    )
    .unwrap();
    let (code, _, err) = tether(&["-t", "-c", conf.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(
        err.contains(":1: grace_period_second: unknown key"),
        "{err}"
    );
}

#[test]
fn missing_file_is_a_clear_error() {
    let (code, _, err) = tether(&["-t", "-c", "/nonexistent/tether.yaml"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("/nonexistent/tether.yaml: cannot read"),
        "{err}"
    );
}

#[test]
fn a_bad_file_is_not_served() {
    let dir = TempDir::new();
    let conf = dir.path("bad.yaml");
    let port = free_port();
    std::fs::write(
        &conf,
        format!(
            "{}services:\n  - name: web\n    listen: 127.0.0.1:{port}\n    backends: []\n",
            server_keys(&dir)
        ),
    )
    .unwrap();
    let (code, _, err) = tether(&["-c", conf.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("backend list is empty"), "{err}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn check_warns_of_a_certificate_about_to_expire_and_refuses_a_mismatched_key() {
    let ca = TestCa::new();
    let soon = ca.write("soon", &ca.issue_for("soon", &["soon.test"], 5));
    let other = ca.issue("other", &["other.test"]);
    let conf = ca.dir.path("tls.yaml");
    let write = |cert: &std::path::Path, key: &std::path::Path| {
        std::fs::write(
            &conf,
            format!(
                "listeners:\n  - name: public\n    address: 127.0.0.1:8443\n    tls:\n      certificates:\n        - cert_file: {}\n          key_file: {}\nclusters:\n  - name: app\n    backends: [127.0.0.1:9001]\nroutes:\n  - name: app\n    backends: [{{cluster: app}}]\n",
                cert.display(),
                key.display()
            ),
        )
        .unwrap();
    };
    let conf_text = conf.to_str().unwrap();
    write(&soon.cert, &soon.key);
    let (code, out, err) = tether(&["-t", "-c", conf_text]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains(&format!(
            "warning: {conf_text}:6: listeners[0].tls.certificates[0]: certificate `{}` expires in ",
        soon.cert.display()
        )),
        "{err}"
    );
    write(&soon.cert, &other.key);
    let (code, _, err) = tether(&["-t", "-c", conf_text]);
    assert_ne!(code, 0);
    assert!(
        err.contains(&format!("{conf_text}:6: listeners[0].tls.certificates[0]: the key in `{}` does not match the certificate in `{}`", other.key.display(), soon.cert.display())),
        "{err}"
    );
}
