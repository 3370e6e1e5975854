//! A typed builder of long-form configs (listeners, clusters, routes) for the tests, so a
//! test's gateway reads at a glance and its YAML is written in one place.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::{CertFiles, Retiring, Tether};

/// A gateway: listeners by name, clusters of backends, routes.
#[derive(Clone, Default)]
pub struct Gateway {
    listeners: Vec<Listener>,
    clusters: Vec<Cluster>,
    routes: Vec<Route>,
    /// Extra top-level YAML (e.g. `session_keys`).
    top: String,
    /// Extra keys of the `admin:` section (token, state file).
    admin: Vec<String>,
}

/// A listener: its name, and TLS and HTTP/2 when set.
#[derive(Clone, Default)]
pub struct Listener {
    name: String,
    certificates: Vec<CertFiles>,
    min_version: Option<String>,
    http2: Option<bool>,
    redirect_https: Option<u16>,
}

/// A cluster: backends as `(id, address, weight)`, or DNS discovery.
#[derive(Clone, Default)]
pub struct Cluster {
    name: String,
    backends: Vec<(String, SocketAddr, u32)>,
    discovery: Option<Discovery>,
    /// The `health_check` mapping (default `{type: none}`).
    health_check: Option<String>,
    outlier: Option<Outlier>,
    /// `state` of backends by id, where set.
    states: Vec<(String, String)>,
    protocol: Option<String>,
    tls: Option<UpstreamTls>,
}

/// A cluster's `discovery` (type dns).
#[derive(Clone)]
pub struct Discovery {
    pub name: String,
    /// `None` with SRV records.
    pub port: Option<u16>,
    pub srv: bool,
    pub interval_ms: u64,
    pub nameserver: SocketAddr,
}

/// A cluster's `outlier_detection`.
#[derive(Clone)]
pub struct Outlier {
    pub consecutive_failures: u32,
    pub ejection_time_ms: u64,
    pub max_ejected_percent: u32,
}

/// A cluster's `tls`.
#[derive(Clone, Default)]
pub struct UpstreamTls {
    pub sni: Option<String>,
    pub verify: Option<bool>,
    pub ca_file: Option<PathBuf>,
}

/// A route.
#[derive(Clone)]
pub struct Route {
    name: String,
    listeners: Vec<String>,
    hostnames: Vec<String>,
    matches: Vec<String>,
    backends: Vec<(String, u32)>,
    session: Option<String>,
}

impl Gateway {
    /// A gateway with one listener, `public`, and the test session key (`TEST_KEY`).
    pub fn new() -> Gateway {
        Gateway {
            listeners: vec![Listener {
                name: "public".into(),
                ..Listener::default()
            }],
            top: "session_keys:\n  - id: k1\n    secret_env: TEST_KEY\n".into(),
            ..Gateway::default()
        }
    }

    /// Adds top-level YAML (e.g. a `limits:` section).
    pub fn top(mut self, yaml: &str) -> Gateway {
        self.top += yaml;
        self
    }

    /// Adds a listener.
    pub fn listener(mut self, name: &str) -> Gateway {
        self.listeners.push(Listener {
            name: name.into(),
            ..Listener::default()
        });
        self
    }

    fn listener_mut(&mut self, name: &str) -> &mut Listener {
        self.listeners
            .iter_mut()
            .find(|l| l.name == name)
            .expect("a listener of that name")
    }

    /// Listener `name` terminates TLS with these certificates (the first the default).
    pub fn tls(mut self, name: &str, certificates: &[&CertFiles]) -> Gateway {
        self.listener_mut(name).certificates = certificates.iter().map(|c| (*c).clone()).collect();
        self
    }

    /// Listener `name` accepts TLS `version` ("1.2", "1.3") and above only.
    pub fn min_version(mut self, name: &str, version: &str) -> Gateway {
        self.listener_mut(name).min_version = Some(version.into());
        self
    }

    /// Sets `http2` on listener `name`.
    pub fn http2(mut self, name: &str, on: bool) -> Gateway {
        self.listener_mut(name).http2 = Some(on);
        self
    }

    /// Listener `name` redirects everything to `https` on `port`.
    pub fn redirect_https(mut self, name: &str, port: u16) -> Gateway {
        self.listener_mut(name).redirect_https = Some(port);
        self
    }

    /// The backends of cluster `name` speak `protocol` (`http1`, `h2`, `h2c`).
    pub fn protocol(mut self, name: &str, protocol: &str) -> Gateway {
        self.cluster_mut(name).protocol = Some(protocol.into());
        self
    }

    /// Tether speaks TLS to the backends of cluster `name`.
    pub fn upstream_tls(mut self, name: &str, tls: UpstreamTls) -> Gateway {
        self.cluster_mut(name).tls = Some(tls);
        self
    }

    fn cluster_mut(&mut self, name: &str) -> &mut Cluster {
        self.clusters
            .iter_mut()
            .find(|c| c.name == name)
            .expect("a cluster of that name")
    }

    /// Adds a cluster of backends `(id, address)`, each of weight 1.
    pub fn cluster(mut self, name: &str, backends: &[(&str, SocketAddr)]) -> Gateway {
        self.clusters.push(Cluster {
            name: name.into(),
            backends: backends
                .iter()
                .map(|(id, addr)| (id.to_string(), *addr, 1))
                .collect(),
            ..Cluster::default()
        });
        self
    }

    /// Adds a cluster whose backends DNS discovery finds.
    pub fn discovered(mut self, name: &str, discovery: Discovery) -> Gateway {
        self.clusters.push(Cluster {
            name: name.into(),
            discovery: Some(discovery),
            ..Cluster::default()
        });
        self
    }

    /// Probes cluster `name`'s backends with a TCP connect every `interval_ms`.
    pub fn tcp_health(mut self, name: &str, interval_ms: u64) -> Gateway {
        self.cluster_mut(name).health_check = Some(format!(
            "{{type: tcp, interval: {interval_ms}ms, timeout: 500ms}}"
        ));
        self
    }

    /// Probes cluster `name`'s backends with `GET path` every `interval_ms`.
    pub fn http_health(mut self, name: &str, path: &str, interval_ms: u64) -> Gateway {
        self.cluster_mut(name).health_check = Some(format!(
            "{{type: http, path: {path}, interval: {interval_ms}ms, timeout: 500ms}}"
        ));
        self
    }

    /// Outlier detection on cluster `name`.
    pub fn outlier(mut self, name: &str, outlier: Outlier) -> Gateway {
        self.cluster_mut(name).outlier = Some(outlier);
        self
    }

    /// Sets the config `state` of backend `id` of cluster `name`.
    pub fn backend_state(mut self, name: &str, id: &str, state: &str) -> Gateway {
        self.cluster_mut(name)
            .states
            .push((id.to_string(), state.to_string()));
        self
    }

    /// Adds a key to the `admin:` section (`token_env: ADMIN_TOKEN`, `state_file: ...`).
    pub fn admin(mut self, yaml: &str) -> Gateway {
        self.admin.push(yaml.to_string());
        self
    }

    /// Adds a route.
    pub fn route(mut self, route: Route) -> Gateway {
        self.routes.push(route);
        self
    }

    /// The route named `name`, to change it (for a reload).
    pub fn route_mut(&mut self, name: &str) -> &mut Route {
        self.routes
            .iter_mut()
            .find(|r| r.name == name)
            .expect("a route of that name")
    }

    /// The config body for listeners at `addrs` (in the order they were added).
    pub fn body(&self, addrs: &[SocketAddr]) -> String {
        // The body follows `admin:\n  listen: ...`: more admin keys come first.
        let mut y: String = self.admin.iter().map(|k| format!("  {k}\n")).collect();
        y += "listeners:\n";
        for (l, addr) in self.listeners.iter().zip(addrs) {
            y += &format!("  - name: {}\n    address: \"{addr}\"\n", l.name);
            if !l.certificates.is_empty() {
                y += "    tls:\n      certificates:\n";
                for c in &l.certificates {
                    y += &format!(
                        "        - {{cert_file: \"{}\", key_file: \"{}\"}}\n",
                        c.cert.display(),
                        c.key.display()
                    );
                }
                if let Some(v) = &l.min_version {
                    y += &format!("      min_version: \"{v}\"\n");
                }
            }
            if let Some(on) = l.http2 {
                y += &format!("    http2: {on}\n");
            }
            if let Some(port) = l.redirect_https {
                y += &format!("    redirect_https: {port}\n");
            }
        }
        y += "clusters:\n";
        for c in &self.clusters {
            let health = c.health_check.as_deref().unwrap_or("{type: none}");
            y += &format!("  - name: {}\n    health_check: {health}\n", c.name);
            if let Some(d) = &c.discovery {
                y += &format!(
                    "    discovery: {{type: dns, name: {}, interval: {}ms, nameservers: [\"{}\"]",
                    d.name, d.interval_ms, d.nameserver
                );
                if let Some(port) = d.port {
                    y += &format!(", port: {port}");
                }
                if d.srv {
                    y += ", record: SRV";
                }
                y += "}\n";
            }
            if let Some(o) = &c.outlier {
                y += &format!(
                    "    outlier_detection: {{consecutive_failures: {}, ejection_time: {}ms, max_ejected_percent: {}}}\n",
                    o.consecutive_failures, o.ejection_time_ms, o.max_ejected_percent
                );
            }
            if let Some(p) = &c.protocol {
                y += &format!("    protocol: {p}\n");
            }
            if let Some(tls) = &c.tls {
                y += "    tls:\n";
                if let Some(sni) = &tls.sni {
                    y += &format!("      sni: \"{sni}\"\n");
                }
                if let Some(verify) = tls.verify {
                    y += &format!("      verify: {verify}\n");
                }
                if let Some(ca) = &tls.ca_file {
                    y += &format!("      ca_file: \"{}\"\n", ca.display());
                }
            }
            if c.discovery.is_none() {
                y += "    backends:\n";
            }
            for (id, addr, weight) in &c.backends {
                let state = c
                    .states
                    .iter()
                    .find(|(b, _)| b == id)
                    .map_or(String::new(), |(_, s)| format!(", state: {s}"));
                y += &format!(
                    "      - {{address: \"{addr}\", id: \"{id}\", weight: {weight}{state}}}\n"
                );
            }
        }
        y += "routes:\n";
        for r in &self.routes {
            y += &format!("  - name: {}\n", r.name);
            if !r.listeners.is_empty() {
                y += &format!("    listeners: [{}]\n", r.listeners.join(", "));
            }
            if !r.hostnames.is_empty() {
                let quoted: Vec<String> = r.hostnames.iter().map(|h| format!("\"{h}\"")).collect();
                y += &format!("    hostnames: [{}]\n", quoted.join(", "));
            }
            if !r.matches.is_empty() {
                y += "    matches:\n";
                for m in &r.matches {
                    y += &format!("      - {m}\n");
                }
            }
            y += "    backends:\n";
            for (cluster, weight) in &r.backends {
                y += &format!("      - {{cluster: {cluster}, weight: {weight}}}\n");
            }
            if let Some(session) = &r.session {
                y += &format!("    session_persistence: {session}\n");
            }
        }
        y
    }

    /// Starts tether on this gateway (the session key in `TEST_KEY`).
    pub fn start(&self) -> Tether {
        Tether::start_body(
            &self.top,
            self.listeners.len(),
            &|addrs| self.body(addrs),
            &[("TEST_KEY", TEST_KEY), ("ADMIN_TOKEN", ADMIN_TOKEN)],
        )
    }
}

impl Gateway {
    /// Reloads `t` onto this gateway (same listener ports) as an operator does: the config
    /// rewritten, `tether -u`, SIGQUIT to the old process, which is returned.
    pub fn reload(&self, t: &mut Tether) -> Retiring {
        t.write_body(&self.body(&t.listeners));
        t.upgrade(None)
    }
}

/// The admin token the gateway tests run with (`token_env: ADMIN_TOKEN`).
pub const ADMIN_TOKEN: &str = "admin-test-token-0123456789";

/// The session key the gateway tests run with.
pub const TEST_KEY: &str = "gateway-test-key-0123456789abcdef0123";

impl Route {
    /// A route to nothing yet.
    pub fn new(name: &str) -> Route {
        Route {
            name: name.into(),
            listeners: Vec::new(),
            hostnames: Vec::new(),
            matches: Vec::new(),
            backends: Vec::new(),
            session: None,
        }
    }

    /// Takes requests for these hostnames only.
    pub fn hosts(mut self, hostnames: &[&str]) -> Route {
        self.hostnames = hostnames.iter().map(|h| h.to_string()).collect();
        self
    }

    /// Attaches to these listeners only.
    pub fn on(mut self, listeners: &[&str]) -> Route {
        self.listeners = listeners.iter().map(|l| l.to_string()).collect();
        self
    }

    /// Adds a match on the path (`Exact`, `PathPrefix`, `RegularExpression`).
    pub fn path(mut self, kind: &str, value: &str) -> Route {
        self.matches
            .push(format!("{{path: {{type: {kind}, value: \"{value}\"}}}}"));
        self
    }

    /// Sends new sessions to `cluster` with `weight`.
    pub fn to(mut self, cluster: &str, weight: u32) -> Route {
        self.backends.push((cluster.into(), weight));
        self
    }

    /// Sets the weight of `cluster` (for a reload).
    pub fn set_weight(&mut self, cluster: &str, weight: u32) {
        let entry = self.backends.iter_mut().find(|(c, _)| c == cluster);
        entry.expect("a cluster of the route").1 = weight;
    }

    /// Cookie sessions under `name`.
    pub fn cookie(mut self, name: &str) -> Route {
        self.session = Some(format!(
            "{{type: Cookie, name: {name}, absolute_timeout: 1h}}"
        ));
        self
    }

    /// Header sessions under `name`.
    pub fn header(mut self, name: &str) -> Route {
        self.session = Some(format!(
            "{{type: Header, name: {name}, absolute_timeout: 1h}}"
        ));
        self
    }
}
