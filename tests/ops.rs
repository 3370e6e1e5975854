//! Operations with the real binary: zero-downtime upgrade and reload under load, draining,
//! an invalid config on reload, graceful SIGTERM.

mod common;

use std::collections::HashSet;
use std::thread;
use std::time::{Duration, Instant};

use common::load::Load;
use common::*;

const KEY: &str = "ops-test-session-key-0123456789abcdef";

fn keys() -> &'static str {
    "session_keys:\n  - id: k1\n    secret_env: OPS_SESSION_KEY\n"
}

fn env() -> [(&'static str, &'static str); 1] {
    [("OPS_SESSION_KEY", KEY)]
}

/// A service with cookie sessions over `backends` (name, address, state).
fn services(backends: &[(&str, &Backend, &str)]) -> String {
    let mut y = String::from("  - name: web\n    listen: {listen}\n    backends:\n");
    for (id, b, state) in backends {
        y.push_str(&format!(
            "      - {{address: {}, id: {id}, state: {state}}}\n",
            b.addr
        ));
    }
    y.push_str("    health_check: {interval: 500ms}\n    session_persistence:\n      type: Cookie\n      name: sid\n      absolute_timeout: 1h\n");
    y
}

/// Upgrades under load and checks nothing failed, every response came from its session's
/// backend, the new process serves, and the old one left within its deadline.
fn upgrade_under_load(t: &mut Tether, new_services: Option<&str>) -> (u64, u64, u64, u64) {
    let load = Load::start(t.listen, 3, 3, false);
    eventually(Duration::from_secs(10), "load running", || {
        (load.ok() > 50).then_some(())
    });
    let mut old = t.upgrade(new_services);
    // 5 s handover window + grace_period_seconds (1) + graceful_shutdown_timeout_seconds (1).
    let took = wait_exit(&mut old, Duration::from_secs(15));
    assert!(took.is_some(), "old process still running:\n{}", t.log());
    let after = load.ok();
    eventually(
        Duration::from_secs(5),
        "load served by the new process",
        || (load.ok() > after + 50).then_some(()),
    );
    let stats = load.finish();
    eprintln!(
        "upgrade: ok={} failed={} wrong_backend={} resent={} old exited after {:?}",
        stats.0,
        stats.1,
        stats.2,
        stats.3,
        took.unwrap()
    );
    assert_eq!(
        (stats.1, stats.2),
        (0, 0),
        "failed / wrong backend during upgrade"
    );
    assert!(
        t.child.try_wait().unwrap().is_none(),
        "new process died:\n{}",
        t.log()
    );
    stats
}

#[test]
fn upgrade_under_load_then_reload_with_a_changed_config() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let c = Backend::start("c");
    let mut t = Tether::start_full(
        keys(),
        &services(&[("a", &a, "active"), ("b", &b, "active")]),
        &env(),
    );

    // 1. Same binary, same config: a plain upgrade.
    upgrade_under_load(&mut t, None);
    assert_eq!(
        get(t.admin, "/healthz", &[]).unwrap().status(),
        200,
        "admin listener handed over"
    );

    // 2. Reload: add c, drain a. Sessions on a stay there; new sessions avoid a.
    let changed = services(&[
        ("a", &a, "draining"),
        ("b", &b, "active"),
        ("c", &c, "active"),
    ]);
    upgrade_under_load(&mut t, Some(&changed));
    let status = t.status();
    assert!(
        status.contains("\"id\": \"c\"") && status.contains("\"state\": \"draining\""),
        "{status}"
    );
    let fresh: HashSet<String> = (0..10)
        .map(|_| get(t.listen, "/", &[]).unwrap().backend())
        .collect();
    assert_eq!(fresh, HashSet::from(["b".to_string(), "c".to_string()]));
}

#[test]
fn draining_keeps_sessions_then_removal_re_pins() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let mut t = Tether::start_full(
        keys(),
        &services(&[("a", &a, "active"), ("b", &b, "active")]),
        &env(),
    );
    let on_a = eventually(Duration::from_secs(5), "a session on a", || {
        let r = get(t.listen, "/", &[]).ok()?;
        (r.backend() == "a")
            .then(|| set_cookie_value(&r, "sid"))
            .flatten()
    });
    let cookie = format!("Cookie: sid={on_a}");

    let mut old = t.upgrade(Some(&services(&[
        ("a", &a, "draining"),
        ("b", &b, "active"),
    ])));
    wait_exit(&mut old, Duration::from_secs(15)).expect("old process exits");
    t.assert_metric(
        "tether_backend_draining{backend=\"a\",cluster=\"web\"}",
        1.0,
    );
    for _ in 0..5 {
        let r = get(t.listen, "/", &[&cookie]).unwrap();
        assert_eq!(r.backend(), "a", "draining backend lost its session");
        assert_eq!(set_cookie_value(&r, "sid"), None);
    }
    for _ in 0..6 {
        assert_eq!(
            get(t.listen, "/", &[]).unwrap().backend(),
            "b",
            "draining backend took a new session"
        );
    }

    // Removed: the session re-pins (failed_open) with a new token.
    let mut old = t.upgrade(Some(&services(&[("b", &b, "active")])));
    wait_exit(&mut old, Duration::from_secs(15)).expect("old process exits");
    let r = get(t.listen, "/", &[&cookie]).unwrap();
    assert_eq!((r.status(), r.backend().as_str()), (200, "b"));
    assert!(set_cookie_value(&r, "sid").is_some());
    t.assert_metric("tether_session_failed_open_total{route=\"web\"}", 1.0);
}

#[test]
fn invalid_config_on_reload_leaves_the_running_process_serving() {
    let a = Backend::start("a");
    let mut t = Tether::start_full(keys(), &services(&[("a", &a, "active")]), &env());
    t.write_config("  - name: web\n    listen: {listen}\n    backends: []\n");
    // The check an operator (and the systemd unit) runs first fails...
    let check = t.run_once(&["-t"]);
    assert!(!check.status.success());
    assert!(String::from_utf8_lossy(&check.stderr).contains("backend list is empty"));
    // ...and even a new process started on it refuses, before touching the running one.
    let upgrade = t.run_once(&["-u"]);
    assert!(!upgrade.status.success());
    for _ in 0..5 {
        assert_eq!(get(t.listen, "/", &[]).unwrap().status(), 200);
    }
    assert!(t.child.try_wait().unwrap().is_none());
}

/// Pingora lets in-flight requests run for `grace_period_seconds` after SIGTERM, then cancels
/// what is left within `graceful_shutdown_timeout_seconds`: a request shorter than the grace
/// period completes.
#[test]
fn sigterm_finishes_the_request_in_flight_and_exits_in_time() {
    let a = Backend::start("a");
    let mut t = Tether::start_full(
        "grace_period_seconds: 3\n",
        &format!(
            "  - name: web\n    listen: {{listen}}\n    backends: [{}]\n",
            a.addr
        ),
        &[],
    );
    let addr = t.listen;
    let slow = thread::spawn(move || get(addr, "/slow/1500", &[]));
    eventually(
        Duration::from_secs(5),
        "slow request reached the backend",
        || (a.requests() >= 1).then_some(()),
    );
    let began = Instant::now();
    signal(t.child.id(), "TERM");
    let r = slow
        .join()
        .unwrap()
        .expect("the request in flight completes");
    assert_eq!((r.status(), r.text().as_str()), (200, "a"));
    // New connections are refused at once (Pingora closes the listeners on SIGTERM).
    eventually(Duration::from_secs(2), "listener closed", || {
        std::net::TcpStream::connect(addr).is_err().then_some(())
    });
    // grace_period_seconds (3) + graceful_shutdown_timeout_seconds (1), plus slack.
    let took = wait_exit(&mut t.child, Duration::from_secs(7)).expect("exits after SIGTERM");
    assert!(
        began.elapsed() >= Duration::from_secs(3),
        "exited before the grace period"
    );
    eprintln!(
        "SIGTERM: request completed, exit after {:?}",
        began.elapsed().max(took)
    );
}

/// SIGINT stops at once, and the access lines still in the log buffer (written every 100 ms)
/// are written before the process exits.
#[test]
fn sigint_stops_at_once() {
    let a = Backend::start("a");
    let mut t = Tether::start(&format!(
        "  - name: web\n    listen: {{listen}}\n    backends: [{}]\n",
        a.addr
    ));
    for path in ["/first", "/last-before-sigint"] {
        assert_eq!(get(t.listen, path, &[]).unwrap().status(), 200);
    }
    // Counted in the logging phase just before the access line is formatted.
    t.assert_metric(
        &format!(
            "tether_requests_total{{backend=\"{}\",cluster=\"web\",code=\"200\",route=\"web\"}}",
            a.addr
        ),
        2.0,
    );
    signal(t.child.id(), "INT");
    wait_exit(&mut t.child, Duration::from_secs(3)).expect("exits at once after SIGINT");
    let log = t.log();
    assert!(
        log.contains("\"GET /last-before-sigint\" 200"),
        "the last access line was lost:\n{log}"
    );
}

/// Kills a daemon (not our child) by pid on drop.
struct DaemonGuard(std::path::PathBuf);

impl Drop for DaemonGuard {
    fn drop(&mut self) {
        for path in [self.0.clone(), self.0.with_extension("pid.old")] {
            if let Ok(pid) = std::fs::read_to_string(&path) {
                let _ = std::process::Command::new("kill")
                    .args(["-INT", pid.trim()])
                    .stderr(std::process::Stdio::null())
                    .status();
            }
        }
    }
}

/// The unit's own ExecStart and ExecReload lines, run in order as systemd runs them (with
/// `$MAINPID` read from the pid file): the daemon starts, and a reload hands the sockets to a
/// new daemon without a failed request.
#[test]
fn systemd_unit_start_and_reload_sequence_works_in_daemon_mode() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/tether.service"
    ))
    .unwrap();
    let lines = |key: &str| -> Vec<String> {
        unit.lines()
            .filter_map(|l| l.strip_prefix(key))
            .map(str::to_string)
            .collect()
    };
    let a = Backend::start("a");
    let b = Backend::start("b");
    let dir = TempDir::new();
    let (listen, admin) = (free_port(), free_port());
    let pid_file = dir.path("tether.pid");
    let conf = dir.path("tether.yaml");
    std::fs::write(
        &conf,
        format!(
            "{}{}admin:\n  listen: 127.0.0.1:{admin}\nservices:\n{}",
            server_keys(&dir),
            keys(),
            services(&[("a", &a, "active"), ("b", &b, "active")])
                .replace("{listen}", &format!("127.0.0.1:{listen}"))
        ),
    )
    .unwrap();
    let _guard = DaemonGuard(pid_file.clone());
    let run = |line: &str| {
        let main_pid = std::fs::read_to_string(&pid_file).unwrap_or_default();
        let cmd = line
            .replace("/usr/local/bin/tether", tether_bin())
            .replace("/etc/tether/tether.yaml", conf.to_str().unwrap())
            .replace("$MAINPID", main_pid.trim());
        let status = std::process::Command::new("sh")
            .args(["-c", &cmd])
            .env("OPS_SESSION_KEY", KEY)
            .env("RUST_LOG", "warn")
            .status()
            .unwrap();
        assert!(status.success(), "`{cmd}` failed");
    };
    for line in lines("ExecStartPre=").iter().chain(&lines("ExecStart=")) {
        run(line);
    }
    let addr: std::net::SocketAddr = format!("127.0.0.1:{listen}").parse().unwrap();
    eventually(Duration::from_secs(10), "daemon serving", || {
        get(addr, "/", &[]).ok().map(|_| ())
    });
    let first_pid = std::fs::read_to_string(&pid_file).unwrap();

    let load = Load::start(addr, 2, 2, false);
    eventually(Duration::from_secs(10), "load running", || {
        (load.ok() > 50).then_some(())
    });
    let reload = lines("ExecReload=");
    assert_eq!(reload.len(), 3, "check, signal, new process");
    for line in &reload {
        run(line);
    }
    let new_pid = eventually(Duration::from_secs(10), "new pid file", || {
        let pid = std::fs::read_to_string(&pid_file).ok()?;
        (pid != first_pid && !pid.trim().is_empty()).then_some(pid)
    });
    // The old daemon leaves within the handover window + grace + shutdown timeout.
    eventually(Duration::from_secs(15), "old daemon gone", || {
        let alive = std::process::Command::new("kill")
            .args(["-0", first_pid.trim()])
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
            .success();
        (!alive).then_some(())
    });
    let after = load.ok();
    eventually(Duration::from_secs(5), "served by the new daemon", || {
        (load.ok() > after + 50).then_some(())
    });
    let (ok, failed, wrong, resent) = load.finish();
    eprintln!(
        "systemd reload: ok={ok} failed={failed} wrong_backend={wrong} resent={resent} new pid {}",
        new_pid.trim()
    );
    assert_eq!((failed, wrong), (0, 0));
}

/// A reload that moves the service to another port closes the old listener and binds the new.
#[test]
fn reload_closes_dropped_listeners_and_binds_new_ones() {
    let a = Backend::start("a");
    let mut t = Tether::start_full(keys(), &services(&[("a", &a, "active")]), &env());
    let old_addr = t.listen;
    let new_addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let moved = services(&[("a", &a, "active")]).replace("{listen}", &new_addr.to_string());
    let mut old = t.upgrade(Some(&moved));
    wait_exit(&mut old, Duration::from_secs(15)).expect("old process exits");
    assert_eq!(get(new_addr, "/", &[]).unwrap().backend(), "a");
    assert!(
        std::net::TcpStream::connect(old_addr).is_err(),
        "old listener still open"
    );
    assert_eq!(get(t.admin, "/healthz", &[]).unwrap().status(), 200);
}
