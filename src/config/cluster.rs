//! `clusters[]`: a named set of backends with their health check, upstream timeouts and header
//! policy. Routes send requests to clusters; a `services` entry makes one cluster.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use super::decode::{Field, Fields, Res};
use super::dynamic::{discovery, outlier, DiscoveryConfig, OutlierConfig};
use super::tls::{upstream, UpstreamProtocol, UpstreamTls};
use super::yaml::NodeKind;

/// Largest accepted backend weight: weights expand into a selection schedule.
pub const MAX_WEIGHT: u64 = 10_000;

/// A cluster of backends.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// Unique name, `[A-Za-z0-9_-]+`, used in metrics labels and tokens.
    pub name: String,
    /// Backends, in config order (empty with `discovery`).
    pub backends: Vec<BackendConfig>,
    /// Backends found by DNS instead of listed.
    pub discovery: Option<DiscoveryConfig>,
    /// Passive health from real traffic, when set.
    pub outlier: Option<OutlierConfig>,
    /// How backends are probed.
    pub health_check: HealthCheckConfig,
    /// Upstream timeouts.
    pub timeouts: Timeouts,
    /// Send request header names to backends in the case the client wrote them (the
    /// default). `false` sends them as HTTP/2 would, lowercase (a few standard ones
    /// title-cased), which saves Pingora a second header map per request.
    pub preserve_header_case: bool,
    /// How tether talks to the backends.
    pub protocol: UpstreamProtocol,
    /// TLS to the backends, when set.
    pub tls: Option<UpstreamTls>,
}

/// One backend of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    /// The address as written (`ip:port` or `host:port`).
    pub address: String,
    /// The address resolved once at load.
    pub socket_addr: SocketAddr,
    /// Stable id (default: the address as written), unique in its cluster.
    pub id: String,
    /// Weight, 1..=[`MAX_WEIGHT`].
    pub weight: usize,
    /// Whether it takes new sessions.
    pub state: BackendState,
}

/// Whether a backend takes requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendState {
    /// Takes new sessions and keeps its existing ones.
    Active,
    /// Keeps its existing sessions, takes no new ones.
    Draining,
    /// Takes no request at all; its sessions move (or get 503 with `strict`).
    Disabled,
}

impl BackendState {
    /// The word used in the config, `/status` and the runtime API.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendState::Active => "active",
            BackendState::Draining => "draining",
            BackendState::Disabled => "disabled",
        }
    }

    /// The state a word names (any case).
    pub fn from_word(word: &str) -> Option<BackendState> {
        match word.to_ascii_lowercase().as_str() {
            "active" => Some(BackendState::Active),
            "draining" => Some(BackendState::Draining),
            "disabled" => Some(BackendState::Disabled),
            _ => None,
        }
    }
}

/// How backends are probed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckConfig {
    /// The probe.
    pub kind: HealthCheckKind,
    /// Time between probes.
    pub interval: Duration,
    /// Time a probe may take.
    pub timeout: Duration,
    /// Consecutive successes to come back.
    pub healthy_threshold: usize,
    /// Consecutive failures to go out.
    pub unhealthy_threshold: usize,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        HealthCheckConfig {
            kind: HealthCheckKind::Tcp,
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
            healthy_threshold: 1,
            unhealthy_threshold: 1,
        }
    }
}

/// The kind of probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCheckKind {
    /// A TCP connect.
    Tcp,
    /// An HTTP GET.
    Http {
        /// Request path.
        path: String,
        /// Host header; `None` means the backend's address.
        host: Option<String>,
        /// Statuses that count as healthy.
        expect_status: Vec<u16>,
    },
    /// No probing: backends are always healthy.
    None,
}

/// Upstream timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect.
    pub connect: Duration,
    /// Between reads from the backend.
    pub read: Duration,
    /// Between writes to the backend.
    pub write: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(2),
            read: Duration::from_secs(60),
            write: Duration::from_secs(60),
        }
    }
}

/// A name of a listener, cluster, route or service: `[A-Za-z0-9_-]+`.
pub(crate) fn name(f: &Fields<'_>, what: &str) -> Res<String> {
    let field = f.req("name")?;
    let name = field.string()?;
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(field.err(format!(
            "{what} name `{name}` must be one or more of [A-Za-z0-9_-]"
        )));
    }
    Ok(name)
}

/// Decodes one `clusters[i]`.
pub(crate) fn cluster(field: &Field<'_>, base: &Path) -> Res<ClusterConfig> {
    let f = field.map()?;
    let name = name(&f, "cluster")?;
    let mut cluster = cluster_body(&f, name)?;
    (cluster.protocol, cluster.tls) = upstream(&f, base)?;
    f.finish()?;
    Ok(cluster)
}

/// The keys a cluster and a `services` entry share: backends, health check, timeouts, header
/// case.
pub(crate) fn cluster_body(f: &Fields<'_>, name: String) -> Res<ClusterConfig> {
    let (backend_items, discovery) = match (f.opt("backends"), f.opt("discovery")) {
        (Some(_), Some(d)) => {
            return Err(d.err("a cluster has either `backends` or `discovery`, not both"))
        }
        (None, None) => {
            // A misspelt key gets its did-you-mean from `req`; otherwise say both options.
            let mut e = f.req("backends").err().unwrap_or_else(|| f.err(""));
            if e.message.starts_with("missing required key") {
                e.message = "missing required key `backends` (a list) or `discovery` (DNS)".into();
            }
            return Err(e);
        }
        (None, Some(d)) => (Vec::new(), Some(discovery(&d)?)),
        (Some(list), None) => {
            let items = list.list()?;
            if items.is_empty() {
                return Err(list.err("the backend list is empty"));
            }
            (items, None)
        }
    };
    let mut backends: Vec<BackendConfig> = Vec::new();
    for item in &backend_items {
        let b = backend(item)?;
        if let Some(other) = backends.iter().find(|o| o.id == b.id) {
            return Err(item.err(format!("duplicate backend id `{}`", other.id)));
        }
        if backends
            .iter()
            .any(|o| o.address == b.address || o.socket_addr == b.socket_addr)
        {
            return Err(item.err(format!("duplicate backend address `{}`", b.address)));
        }
        backends.push(b);
    }
    Ok(ClusterConfig {
        name,
        backends,
        discovery,
        outlier: f
            .opt("outlier_detection")
            .map(|o| outlier(&o))
            .transpose()?,
        health_check: f
            .opt("health_check")
            .map(|h| health_check(&h))
            .transpose()?
            .unwrap_or_default(),
        timeouts: f
            .opt("timeouts")
            .map(|t| timeouts(&t))
            .transpose()?
            .unwrap_or_default(),
        preserve_header_case: f
            .opt("preserve_header_case")
            .map(|b| b.boolean())
            .transpose()?
            .unwrap_or(true),
        protocol: UpstreamProtocol::Http1,
        tls: None,
    })
}

fn backend(field: &Field<'_>) -> Res<BackendConfig> {
    // The short form `- 10.0.0.12:8080` is a backend with every default.
    if matches!(field.node.kind, NodeKind::Scalar { .. }) {
        let address = field.string()?;
        return Ok(BackendConfig {
            socket_addr: resolve(field, &address)?,
            id: address.clone(),
            address,
            weight: 1,
            state: BackendState::Active,
        });
    }
    let f = field.map()?;
    let address_field = f.req("address")?;
    let address = address_field.string()?;
    let socket_addr = resolve(&address_field, &address)?;
    let id = match f.opt("id") {
        Some(id_field) => {
            let id = id_field.string()?;
            if id.is_empty() || id.len() > 128 || id.chars().any(char::is_control) {
                return Err(
                    id_field.err("backend id must be 1 to 128 characters, no control characters")
                );
            }
            id
        }
        None => address.clone(),
    };
    let weight = match f.opt("weight") {
        Some(w) => {
            let n = w.uint_min(1)?;
            if n > MAX_WEIGHT {
                return Err(w.err(format!("must be at most {MAX_WEIGHT}, found {n}")));
            }
            n as usize
        }
        None => 1,
    };
    let state = match f.opt("state") {
        Some(s) => BackendState::from_word(&s.string()?).ok_or_else(|| {
            s.err(format!(
                "unknown state {}: expected active, draining or disabled",
                s.quoted()
            ))
        })?,
        None => BackendState::Active,
    };
    f.finish()?;
    Ok(BackendConfig {
        address,
        socket_addr,
        id,
        weight,
        state,
    })
}

/// Resolves `ip:port` or `host:port` once, at load.
fn resolve(field: &Field<'_>, address: &str) -> Res<SocketAddr> {
    if let Ok(addr) = address.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let has_port = address
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !has_port {
        return Err(field.err(format!(
            "backend address `{address}` must be ip:port or host:port"
        )));
    }
    address
        .to_socket_addrs()
        .map_err(|e| field.err(format!("cannot resolve `{address}`: {e}")))?
        .next()
        .ok_or_else(|| field.err(format!("`{address}` resolves to no address")))
}

fn health_check(field: &Field<'_>) -> Res<HealthCheckConfig> {
    let f = field.map()?;
    let mut hc = HealthCheckConfig::default();
    let type_field = f.opt("type");
    let kind = match &type_field {
        Some(t) => t.string()?.to_ascii_lowercase(),
        None => "tcp".to_string(),
    };
    let path = f.opt("path");
    let host = f.opt("host");
    let expect_status = f.opt("expect_status");
    if kind != "http" {
        if let Some(key) = [&path, &host, &expect_status].into_iter().flatten().next() {
            return Err(key.err("only allowed with `type: http`"));
        }
    }
    hc.kind = match (kind.as_str(), &type_field) {
        ("tcp", _) | (_, None) => HealthCheckKind::Tcp,
        ("none", _) => HealthCheckKind::None,
        ("http", _) => HealthCheckKind::Http {
            path: match path {
                Some(p) => {
                    let path = p.string()?;
                    if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
                        return Err(p.err(
                            "must start with `/` and contain no spaces or control characters",
                        ));
                    }
                    path
                }
                None => "/".to_string(),
            },
            host: host.map(|h| h.string()).transpose()?,
            expect_status: match expect_status {
                Some(list) => statuses(&list)?,
                None => vec![200],
            },
        },
        (_, Some(t)) => {
            return Err(t.err(format!(
                "unknown type {}: expected tcp, http or none",
                t.quoted()
            )))
        }
    };
    if let Some(d) = f.opt("interval") {
        hc.interval = d.duration()?;
    }
    if let Some(d) = f.opt("timeout") {
        hc.timeout = d.duration()?;
    }
    if let Some(n) = f.opt("healthy_threshold") {
        hc.healthy_threshold = n.uint_min(1)? as usize;
    }
    if let Some(n) = f.opt("unhealthy_threshold") {
        hc.unhealthy_threshold = n.uint_min(1)? as usize;
    }
    f.finish()?;
    Ok(hc)
}

fn statuses(list: &Field<'_>) -> Res<Vec<u16>> {
    let items = list.one_or_list()?;
    if items.is_empty() {
        return Err(list.err("at least one status is required"));
    }
    items
        .iter()
        .map(|s| match s.uint()? {
            n @ 100..=599 => Ok(n as u16),
            n => Err(s.err(format!("{n} is not an HTTP status (100-599)"))),
        })
        .collect()
}

fn timeouts(field: &Field<'_>) -> Res<Timeouts> {
    let f = field.map()?;
    let mut t = Timeouts::default();
    if let Some(d) = f.opt("connect") {
        t.connect = d.duration()?;
    }
    if let Some(d) = f.opt("read") {
        t.read = d.duration()?;
    }
    if let Some(d) = f.opt("write") {
        t.write = d.duration()?;
    }
    f.finish()?;
    Ok(t)
}
