//! The real `tether` binary, started on fresh ports and killed on drop.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::{eventually, free_port, get};

/// A temp folder removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tether-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn tether_bin() -> &'static str {
    env!("CARGO_BIN_EXE_tether")
}

/// The Pingora keys every test config starts with: short grace periods, files in `dir`.
pub fn server_keys(dir: &TempDir) -> String {
    format!(
        "version: 1\nthreads: 1\npid_file: {}\nupgrade_sock: {}\ngrace_period_seconds: 1\ngraceful_shutdown_timeout_seconds: 1\n",
        dir.path("tether.pid").display(),
        dir.path("upgrade.sock").display()
    )
}

/// A running tether, killed on drop.
pub struct Tether {
    pub child: Child,
    pub dir: TempDir,
    pub admin: SocketAddr,
    /// The first listener's address (a service's, with `services`).
    pub listen: SocketAddr,
    /// Every listener's address, in the order they were asked for.
    pub listeners: Vec<SocketAddr>,
    top_yaml: String,
    env: Vec<(String, String)>,
    generation: usize,
}

impl Tether {
    /// Starts tether with `services_yaml` (the `services:` list, indented by 2) on fresh ports.
    /// `{listen}` in the YAML is replaced by the service address. Waits until both the admin
    /// listener and the service answer.
    pub fn start(services_yaml: &str) -> Tether {
        Self::start_full("", services_yaml, &[])
    }

    /// As [`Tether::start`], with extra top-level YAML (e.g. `session_keys`) and environment.
    pub fn start_full(top_yaml: &str, services_yaml: &str, env: &[(&str, &str)]) -> Tether {
        // A port handed out by free_port() can be taken (by an outgoing connection, say) before
        // tether binds it; then start again on other ports. (Two test suites run at once on one
        // machine can still collide: free_port() only knows its own process.)
        for _ in 0..3 {
            if let Some(t) = Self::try_start(top_yaml, services_yaml, env) {
                return t;
            }
        }
        panic!("tether could not bind its ports three times");
    }

    fn try_start(top_yaml: &str, services_yaml: &str, env: &[(&str, &str)]) -> Option<Tether> {
        let body = |addrs: &[SocketAddr]| {
            format!(
                "services:\n{}",
                services_yaml.replace("{listen}", &addrs[0].to_string())
            )
        };
        Self::launch(top_yaml, 1, &body, env)
    }

    /// Starts tether on a config whose body (listeners, clusters, routes or services) `body`
    /// writes for `listeners` fresh listener addresses, with `top_yaml` and `env`. Waits until
    /// the admin listener and every listener answer.
    pub fn start_body(
        top_yaml: &str,
        listeners: usize,
        body: &dyn Fn(&[SocketAddr]) -> String,
        env: &[(&str, &str)],
    ) -> Tether {
        for _ in 0..3 {
            if let Some(t) = Self::launch(top_yaml, listeners, body, env) {
                return t;
            }
        }
        panic!("tether could not bind its ports three times");
    }

    fn launch(
        top_yaml: &str,
        listeners: usize,
        body: &dyn Fn(&[SocketAddr]) -> String,
        env: &[(&str, &str)],
    ) -> Option<Tether> {
        let dir = TempDir::new();
        let addrs: Vec<SocketAddr> = (0..listeners)
            .map(|_| format!("127.0.0.1:{}", free_port()).parse().unwrap())
            .collect();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let yaml = config_text(&dir, top_yaml, admin, &body(&addrs));
        std::fs::write(dir.path("tether.yaml"), yaml).unwrap();
        let mut t = Tether {
            child: Self::spawn(&dir, 0, &[], &env),
            dir,
            admin,
            listen: addrs[0],
            listeners: addrs,
            top_yaml: top_yaml.to_string(),
            env,
            generation: 0,
        };
        let mut bind_failed = false;
        eventually(Duration::from_secs(20), "tether to listen", || {
            if let Ok(Some(status)) = t.child.try_wait() {
                panic!("tether exited early ({status}):\n{}", t.log());
            }
            // Pingora retries a busy port for 30 s; rather move to other ports at once.
            if t.log().contains("is in use, will try again") {
                bind_failed = true;
                return Some(());
            }
            let admin_up = get(t.admin, "/healthz", &[]).is_ok_and(|r| r.status() == 200);
            let all_up = t.listeners.iter().all(|a| TcpStream::connect(a).is_ok());
            (admin_up && all_up).then_some(())
        });
        (!bind_failed).then_some(t)
    }

    /// The config file.
    pub fn conf(&self) -> PathBuf {
        self.dir.path("tether.yaml")
    }

    /// Writes the config with these services (same ports, keys and environment).
    pub fn write_config(&self, services_yaml: &str) {
        let body = format!(
            "services:\n{}",
            services_yaml.replace("{listen}", &self.listen.to_string())
        );
        self.write_body(&body);
    }

    /// Writes the config with this body (same keys, admin listener and environment).
    pub fn write_body(&self, body: &str) {
        let yaml = config_text(&self.dir, &self.top_yaml, self.admin, body);
        std::fs::write(self.conf(), yaml).unwrap();
    }

    /// Starts a tether process on the config file, logging to its own file.
    fn spawn(dir: &TempDir, generation: usize, args: &[&str], env: &[(String, String)]) -> Child {
        let log = std::fs::File::create(dir.path(&format!("tether-{generation}.log"))).unwrap();
        Command::new(tether_bin())
            .args(args)
            .arg("-c")
            .arg(dir.path("tether.yaml"))
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn tether")
    }

    /// Zero-downtime upgrade as an operator does it: start `tether -u` on the same config file
    /// (rewritten first when `services_yaml` is given), then SIGQUIT the running process. The
    /// new process becomes `self.child`; the old one is returned (killed if dropped alive).
    pub fn upgrade(&mut self, services_yaml: Option<&str>) -> Retiring {
        if let Some(yaml) = services_yaml {
            self.write_config(yaml);
        }
        self.generation += 1;
        let new = Self::spawn(&self.dir, self.generation, &["-u"], &self.env);
        signal(self.child.id(), "QUIT");
        Retiring(std::mem::replace(&mut self.child, new))
    }

    /// Stops tether (SIGTERM, then waits) and starts it again on the same config and ports, as a
    /// restart does; waits until the admin listener answers.
    pub fn restart(&mut self) {
        signal(self.child.id(), "TERM");
        wait_exit(&mut self.child, Duration::from_secs(10)).expect("tether stops on SIGTERM");
        self.generation += 1;
        self.child = Self::spawn(&self.dir, self.generation, &[], &self.env);
        let admin = self.admin;
        eventually(Duration::from_secs(20), "tether to start again", || {
            get(admin, "/healthz", &[])
                .is_ok_and(|r| r.status() == 200)
                .then_some(())
        });
    }

    /// Runs `tether` on this instance's config file with `args`, waiting for it to exit.
    pub fn run_once(&self, args: &[&str]) -> std::process::Output {
        Command::new(tether_bin())
            .args(args)
            .arg("-c")
            .arg(self.conf())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap()
    }

    /// Every log of this instance so far.
    pub fn log(&self) -> String {
        (0..=self.generation)
            .map(|g| {
                std::fs::read_to_string(self.dir.path(&format!("tether-{g}.log")))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The log once it contains one of `needles` (lines are written in batches, within
    /// 100 ms).
    pub fn wait_for_log(&self, needles: &[&str]) -> String {
        eventually(
            Duration::from_secs(5),
            &format!("one of {needles:?} in the log"),
            || {
                let log = self.log();
                needles.iter().any(|n| log.contains(n)).then_some(log)
            },
        )
    }

    /// `GET /status` as JSON text.
    pub fn status(&self) -> String {
        get(self.admin, "/status", &[]).unwrap().text()
    }

    /// The address of listener `name`, from `/status`.
    pub fn listener_address(&self, name: &str) -> SocketAddr {
        let status: serde_json::Value = serde_json::from_str(&self.status()).unwrap();
        let listeners = status["listeners"]
            .as_array()
            .expect("listeners in /status");
        let found = listeners.iter().find(|l| l["name"] == name);
        let address = found.and_then(|l| l["address"].as_str());
        address
            .unwrap_or_else(|| panic!("no listener `{name}` in /status"))
            .parse()
            .unwrap()
    }

    /// The backends of cluster `name` as `/status` shows them.
    pub fn backends_of(&self, name: &str) -> Vec<serde_json::Value> {
        let status: serde_json::Value = serde_json::from_str(&self.status()).unwrap();
        let clusters = status["clusters"].as_array().expect("clusters in /status");
        let cluster = clusters.iter().find(|c| c["name"] == name);
        cluster
            .and_then(|c| c["backends"].as_array())
            .unwrap_or_else(|| panic!("no cluster `{name}` in /status"))
            .clone()
    }

    /// The ids of cluster `name`'s backends (sorted) once `ready` holds for the list.
    pub fn wait_backends(
        &self,
        name: &str,
        what: &str,
        ready: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<String> {
        eventually(Duration::from_secs(10), what, || {
            let backends = self.backends_of(name);
            ready(&backends).then(|| {
                let mut ids: Vec<String> = backends
                    .iter()
                    .map(|b| b["id"].as_str().unwrap().to_string())
                    .collect();
                ids.sort();
                ids
            })
        })
    }

    /// `GET /metrics` text.
    pub fn metrics(&self) -> String {
        get(self.admin, "/metrics", &[]).unwrap().text()
    }

    /// Waits (up to 5 s) for a metric to reach `expect`. Counters move in Pingora's logging
    /// phase, which runs after the response has reached the client.
    #[track_caller]
    pub fn assert_metric(&self, series: &str, expect: f64) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let got = self.metric(series);
            if got == Some(expect) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{series}: expected {expect}, got {got:?}\n{}",
                    self.metrics()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The value of one metric line (`name{labels}`), if present.
    pub fn metric(&self, series: &str) -> Option<f64> {
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }
}

/// A whole config: test server keys, extra top-level YAML, the admin listener, and the body
/// (listeners, clusters, routes or services).
/// A `grace_period_seconds` in `top_yaml` replaces the default one.
fn config_text(dir: &TempDir, top_yaml: &str, admin: SocketAddr, body: &str) -> String {
    let mut keys = server_keys(dir);
    if top_yaml.contains("grace_period_seconds:") {
        keys = keys.replace("grace_period_seconds: 1\n", "");
    }
    format!("{keys}{top_yaml}admin:\n  listen: {admin}\n{body}")
}

/// What a failed test shows of a log: every line that is not an access line, and the
/// last 8 access lines (a load test writes thousands; they would hide the panic message).
fn log_digest(log: &str) -> String {
    let access: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("tether::access"))
        .collect();
    let skipped = access.len().saturating_sub(8);
    let mut kept = 0;
    let mut out = Vec::new();
    for line in log.lines() {
        if line.contains("tether::access") {
            kept += 1;
            if kept <= skipped {
                continue;
            }
        }
        out.push(line);
    }
    format!(
        "{}\n({skipped} access lines left out; the panic message is above the log)",
        out.join("\n")
    )
}

/// Sends a signal (`QUIT`, `TERM`, `INT`) to a process.
pub fn signal(pid: u32, name: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -{name} {pid} failed");
}

/// Waits for a child to exit, returning how long it took, or `None` after `timeout`.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<Duration> {
    let began = Instant::now();
    while began.elapsed() < timeout {
        if let Ok(Some(_)) = child.try_wait() {
            return Some(began.elapsed());
        }
        thread::sleep(Duration::from_millis(20));
    }
    None
}

/// A process told to stop after an upgrade; killed on drop if it has not stopped (a failed
/// test leaves no process behind).
pub struct Retiring(pub Child);

impl std::ops::Deref for Retiring {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Retiring {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Retiring {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Tether {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!(
                "---- tether log (shortened) ----\n{}",
                log_digest(&self.log())
            );
        }
    }
}
