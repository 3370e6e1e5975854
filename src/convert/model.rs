//! What a conversion builds: listeners, clusters, routes and the notes of what did not carry
//! over; written out as a tether config (long form).

use std::fmt::Write;

/// Choices of the operator (`tether convert` flags).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Name servers of every discovery (the cluster DNS, e.g. `10.96.0.10:53`); none: the
    /// system's resolver.
    pub nameservers: Vec<String>,
    /// The address of the listener made for routes whose Gateway is not among the inputs.
    pub listen: Option<String>,
    /// The namespace of manifests that name none (as `kubectl apply -n`); default `default`.
    pub namespace: Option<String>,
}

/// A listener made from a Gateway listener (or the default one).
pub struct Listener {
    pub name: String,
    pub address: String,
    /// The Gateway and listener it came from (`eg/http`), for `parentRefs`.
    pub gateway: Option<(String, String)>,
}

/// Where a cluster's backends come from.
pub enum Backends {
    /// DNS discovery of a Service: name, port.
    Dns(String, u16),
    /// Fixed addresses (an Envoy cluster's endpoints).
    Static(Vec<String>),
}

/// A cluster.
pub struct Cluster {
    pub name: String,
    pub backends: Backends,
    /// `h2c` for gRPC backends.
    pub protocol: Option<&'static str>,
}

/// One condition set of a route.
#[derive(Default)]
pub struct Match {
    /// `(type, value)`.
    pub path: Option<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub method: Option<String>,
}

/// Session persistence of a route.
#[derive(Clone)]
pub struct Session {
    pub header: bool,
    pub name: String,
    pub absolute_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub permanent: bool,
    pub path: Option<String>,
    pub strict: bool,
}

/// A route.
pub struct Route {
    pub name: String,
    pub listeners: Vec<String>,
    pub hostnames: Vec<String>,
    pub matches: Vec<Match>,
    /// `(cluster, weight)`.
    pub backends: Vec<(String, u64)>,
    pub session: Option<Session>,
    /// Where it came from, for its comment.
    pub origin: String,
}

/// The conversion so far.
pub struct Model {
    pub options: Options,
    pub listeners: Vec<Listener>,
    pub clusters: Vec<Cluster>,
    pub routes: Vec<Route>,
    notes: Vec<String>,
}

/// A name tether accepts (`[A-Za-z0-9_-]+`) made from `text`.
pub fn sanitize(text: &str) -> String {
    let s: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if s.is_empty() {
        "x".into()
    } else {
        s
    }
}

/// `text` as a YAML double-quoted scalar (JSON's string syntax is YAML's).
pub fn q(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

impl Model {
    pub fn new(options: &Options) -> Model {
        Model {
            options: options.clone(),
            listeners: Vec::new(),
            clusters: Vec::new(),
            routes: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// The namespace of manifests that name none.
    pub fn namespace(&self) -> String {
        self.options
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into())
    }

    /// Something that did not carry over.
    pub fn note(&mut self, text: String) {
        self.notes.push(text);
    }

    /// A name not yet used among `taken`, from `base`.
    pub fn unique(base: &str, taken: &[&str]) -> String {
        let base = sanitize(base);
        if !taken.contains(&base.as_str()) {
            return base;
        }
        (2..)
            .map(|i| format!("{base}-{i}"))
            .find(|n| !taken.contains(&n.as_str()))
            .unwrap_or(base)
    }

    /// The listener for routes whose Gateway is not among the inputs (made once).
    pub fn default_listener(&mut self) -> String {
        if let Some(l) = self.listeners.iter().find(|l| l.gateway.is_none()) {
            return l.name.clone();
        }
        let address = self
            .options
            .listen
            .clone()
            .unwrap_or_else(|| "0.0.0.0:8080".into());
        let taken: Vec<&str> = self.listeners.iter().map(|l| l.name.as_str()).collect();
        let name = Self::unique("public", &taken);
        self.listeners.push(Listener {
            name: name.clone(),
            address,
            gateway: None,
        });
        name
    }

    /// The cluster of a Service port (made once per service, port and protocol).
    pub fn service_cluster(
        &mut self,
        service: &str,
        namespace: &str,
        port: u16,
        grpc: bool,
    ) -> String {
        let dns = format!("{service}.{namespace}.svc.cluster.local");
        let protocol = grpc.then_some("h2c");
        let found = self.clusters.iter().find(|c| {
            matches!(&c.backends, Backends::Dns(n, p) if *n == dns && *p == port)
                && c.protocol == protocol
        });
        if let Some(c) = found {
            return c.name.clone();
        }
        let base = if grpc {
            format!("{service}-{port}-grpc")
        } else {
            format!("{service}-{port}")
        };
        let taken: Vec<&str> = self.clusters.iter().map(|c| c.name.as_str()).collect();
        let name = Self::unique(&base, &taken);
        self.clusters.push(Cluster {
            name: name.clone(),
            backends: Backends::Dns(dns, port),
            protocol,
        });
        name
    }

    /// A route name not used yet.
    pub fn route_name(&self, base: &str) -> String {
        let taken: Vec<&str> = self.routes.iter().map(|r| r.name.as_str()).collect();
        Self::unique(base, &taken)
    }

    /// The config text.
    pub fn emit(&self, sources: &[String]) -> String {
        let mut y = String::new();
        let _ = writeln!(y, "# tether config converted by `tether convert` from:");
        for s in sources {
            let _ = writeln!(y, "#   {s}");
        }
        y += "# Check it with: TETHER_SESSION_KEY=... tether -t -c FILE (add Pingora's keys, `admin`\n# and `limits` as you need them: docs/configuration.md)\n";
        if !self.notes.is_empty() {
            y += "#\n";
            for n in &self.notes {
                let _ = writeln!(y, "# not converted: {n}");
            }
        }
        if self.routes.iter().any(|r| r.session.is_some()) {
            y += "session_keys:\n  - id: k1\n    secret_env: TETHER_SESSION_KEY   # at least 32 bytes; the same on every instance\n";
        }
        y += "\nlisteners:\n";
        for l in &self.listeners {
            let _ = writeln!(y, "  - name: {}\n    address: {}", l.name, q(&l.address));
        }
        y += "\nclusters:\n";
        for c in &self.clusters {
            let _ = writeln!(y, "  - name: {}", c.name);
            if let Some(p) = c.protocol {
                let _ = writeln!(y, "    protocol: {p}");
            }
            match &c.backends {
                Backends::Dns(name, port) => {
                    let _ = write!(
                        y,
                        "    discovery: {{type: dns, name: {}, port: {port}",
                        q(name)
                    );
                    if !self.options.nameservers.is_empty() {
                        let list: Vec<String> =
                            self.options.nameservers.iter().map(|n| q(n)).collect();
                        let _ = write!(y, ", nameservers: [{}]", list.join(", "));
                    }
                    y += "}\n";
                }
                Backends::Static(addresses) => {
                    y += "    backends:\n";
                    for a in addresses {
                        let _ = writeln!(y, "      - {}", q(a));
                    }
                }
            }
        }
        y += "\nroutes:\n";
        for r in &self.routes {
            let _ = writeln!(y, "  # from {}", r.origin);
            let _ = writeln!(y, "  - name: {}", r.name);
            let listeners: Vec<&str> = r.listeners.iter().map(|l| l.as_str()).collect();
            let _ = writeln!(y, "    listeners: [{}]", listeners.join(", "));
            if !r.hostnames.is_empty() {
                let list: Vec<String> = r.hostnames.iter().map(|h| q(h)).collect();
                let _ = writeln!(y, "    hostnames: [{}]", list.join(", "));
            }
            if !r.matches.is_empty() {
                y += "    matches:\n";
                for m in &r.matches {
                    let mut parts = Vec::new();
                    if let Some((kind, value)) = &m.path {
                        parts.push(format!("path: {{type: {kind}, value: {}}}", q(value)));
                    }
                    if !m.headers.is_empty() {
                        let hs: Vec<String> = m
                            .headers
                            .iter()
                            .map(|(n, v)| format!("{{name: {}, value: {}}}", q(n), q(v)))
                            .collect();
                        parts.push(format!("headers: [{}]", hs.join(", ")));
                    }
                    if let Some(method) = &m.method {
                        parts.push(format!("method: {}", q(method)));
                    }
                    let _ = writeln!(y, "      - {{{}}}", parts.join(", "));
                }
            }
            y += "    backends:\n";
            for (cluster, weight) in &r.backends {
                let _ = writeln!(y, "      - {{cluster: {cluster}, weight: {weight}}}");
            }
            if let Some(s) = &r.session {
                y += "    session_persistence:\n";
                let _ = writeln!(
                    y,
                    "      type: {}\n      name: {}",
                    if s.header { "Header" } else { "Cookie" },
                    q(&s.name)
                );
                if let Some(t) = &s.absolute_timeout {
                    let _ = writeln!(y, "      absolute_timeout: {t}");
                }
                if let Some(t) = &s.idle_timeout {
                    let _ = writeln!(y, "      idle_timeout: {t}");
                }
                if s.strict {
                    y += "      strict: true\n";
                }
                if !s.header && (s.permanent || s.path.is_some()) {
                    y += "      cookie:\n";
                    if s.permanent {
                        y += "        lifetime_type: Permanent\n";
                    }
                    if let Some(p) = &s.path {
                        let _ = writeln!(y, "        path: {}", q(p));
                    }
                }
            }
        }
        y
    }
}

/// A duration of the Gateway API (`1h30m`, `10s`, `500ms`) or Envoy (`120s`, `1.5s`) as tether
/// writes one (`5400s`, `500ms`); `None` if it is not one, or zero.
pub fn duration(text: &str) -> Option<String> {
    let mut total_ms: f64 = 0.0;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let ms = match &rest[..unit_len] {
            "h" => 3_600_000.0,
            "m" => 60_000.0,
            "s" | "" => 1000.0,
            "ms" => 1.0,
            _ => return None,
        };
        total_ms += number * ms;
        rest = &rest[unit_len..];
    }
    let ms = total_ms.round() as u64;
    match ms {
        0 => None,
        ms if ms % 1000 == 0 => Some(format!("{}s", ms / 1000)),
        ms => Some(format!("{ms}ms")),
    }
}
