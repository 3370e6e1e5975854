//! `services[]`: listeners, backends, health check, upstream timeouts, session persistence.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use super::decode::{Field, Res};
use super::socket_addr;

pub(crate) const SERVICE_KEYS: &[&str] = &[
    "name",
    "listen",
    "backends",
    "health_check",
    "timeouts",
    "session_persistence",
    "preserve_header_case",
];

/// Largest accepted backend weight: weights expand into a selection schedule.
pub const MAX_WEIGHT: u64 = 10_000;

/// One proxied service.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    /// Unique name, `[A-Za-z0-9_-]+`, used in metrics labels.
    pub name: String,
    /// Listen addresses.
    pub listen: Vec<SocketAddr>,
    /// Backends, in config order.
    pub backends: Vec<BackendConfig>,
    /// How backends are probed.
    pub health_check: HealthCheckConfig,
    /// Upstream timeouts.
    pub timeouts: Timeouts,
    /// Session persistence; `None` means plain round robin.
    pub session: Option<SessionConfig>,
    /// Send request header names to backends in the case the client wrote them (the
    /// default). `false` sends them as HTTP/2 would, lowercase (a few standard ones
    /// title-cased), which saves Pingora a second header map per request.
    pub preserve_header_case: bool,
}

/// One backend of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    /// The address as written (`ip:port` or `host:port`).
    pub address: String,
    /// The address resolved once at load.
    pub socket_addr: SocketAddr,
    /// Stable id (default: the address as written).
    pub id: String,
    /// Weight, 1..=[`MAX_WEIGHT`].
    pub weight: usize,
    /// Active or draining.
    pub state: BackendState,
}

/// Whether a backend takes new sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendState {
    /// Takes new sessions and keeps its existing ones.
    Active,
    /// Keeps its existing sessions, takes no new ones.
    Draining,
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

/// `session_persistence:` of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Cookie or header.
    pub kind: SessionKind,
    /// Cookie or header name.
    pub name: String,
    /// Session lifetime from its start.
    pub absolute_timeout: Option<Duration>,
    /// Session ends after this long without a request.
    pub idle_timeout: Option<Duration>,
    /// 503 instead of re-pinning when the session's backend is unavailable.
    pub strict: bool,
    /// Cookie attributes (Cookie type only).
    pub cookie: CookieConfig,
}

/// Where the session token travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// In a cookie.
    Cookie,
    /// In a request/response header.
    Header,
}

/// Attributes of the session cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieConfig {
    /// Permanent (Max-Age + Expires) or Session.
    pub lifetime_type: LifetimeType,
    /// `Path`.
    pub path: String,
    /// `Domain`, if any.
    pub domain: Option<String>,
    /// `Secure`.
    pub secure: bool,
    /// `HttpOnly`.
    pub http_only: bool,
    /// `SameSite`.
    pub same_site: SameSite,
}

impl Default for CookieConfig {
    fn default() -> Self {
        CookieConfig {
            lifetime_type: LifetimeType::Session,
            path: "/".to_string(),
            domain: None,
            secure: false,
            http_only: true,
            same_site: SameSite::Lax,
        }
    }
}

/// Cookie lifetime type (Gateway API naming).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifetimeType {
    /// `Max-Age` and `Expires` set from `absolute_timeout`.
    Permanent,
    /// A browser-session cookie.
    Session,
}

/// The `SameSite` cookie attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    /// `SameSite=Strict`.
    Strict,
    /// `SameSite=Lax`.
    Lax,
    /// `SameSite=None` (requires `Secure`).
    None,
}

impl SameSite {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
            SameSite::None => "None",
        }
    }
}

/// Decodes one `services[i]`.
pub(crate) fn service(field: &Field<'_>) -> Res<ServiceConfig> {
    let f = field.fields(SERVICE_KEYS)?;
    let name_field = f.req("name")?;
    let name = name_field.string()?;
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(name_field.err(format!(
            "service name `{name}` must be one or more of [A-Za-z0-9_-]"
        )));
    }
    let listen_field = f.req("listen")?;
    let listen_items = listen_field.one_or_list()?;
    if listen_items.is_empty() {
        return Err(listen_field.err("at least one listen address is required"));
    }
    let listen = listen_items
        .iter()
        .map(socket_addr)
        .collect::<Res<Vec<_>>>()?;

    let backends_field = f.req("backends")?;
    let backend_items = backends_field.list()?;
    if backend_items.is_empty() {
        return Err(backends_field.err("the backend list is empty"));
    }
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
    Ok(ServiceConfig {
        name,
        listen,
        backends,
        health_check: f
            .opt("health_check")
            .map(|h| health_check(&h))
            .transpose()?
            .unwrap_or_else(default_health_check),
        timeouts: f
            .opt("timeouts")
            .map(|t| timeouts(&t))
            .transpose()?
            .unwrap_or_else(default_timeouts),
        session: f
            .opt("session_persistence")
            .map(|s| session(&s))
            .transpose()?,
        preserve_header_case: f
            .opt("preserve_header_case")
            .map(|b| b.boolean())
            .transpose()?
            .unwrap_or(true),
    })
}

fn backend(field: &Field<'_>) -> Res<BackendConfig> {
    // The short form `- 10.0.0.12:8080` is a backend with every default.
    if matches!(field.node.kind, super::yaml::NodeKind::Scalar { .. }) {
        let address = field.string()?;
        return Ok(BackendConfig {
            socket_addr: resolve(field, &address)?,
            id: address.clone(),
            address,
            weight: 1,
            state: BackendState::Active,
        });
    }
    let f = field.fields(&["address", "id", "weight", "state"])?;
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
        Some(s) => match s.string()?.to_ascii_lowercase().as_str() {
            "active" => BackendState::Active,
            "draining" => BackendState::Draining,
            other => {
                return Err(s.err(format!(
                    "unknown state `{other}`: expected active or draining"
                )))
            }
        },
        None => BackendState::Active,
    };
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

fn default_health_check() -> HealthCheckConfig {
    HealthCheckConfig {
        kind: HealthCheckKind::Tcp,
        interval: Duration::from_secs(5),
        timeout: Duration::from_secs(1),
        healthy_threshold: 1,
        unhealthy_threshold: 1,
    }
}

fn health_check(field: &Field<'_>) -> Res<HealthCheckConfig> {
    let f = field.fields(&[
        "type",
        "path",
        "host",
        "expect_status",
        "interval",
        "timeout",
        "healthy_threshold",
        "unhealthy_threshold",
    ])?;
    let mut hc = default_health_check();
    let kind = match f.opt("type") {
        Some(t) => t.string()?.to_ascii_lowercase(),
        None => "tcp".to_string(),
    };
    let http_only = ["path", "host", "expect_status"];
    if kind != "http" {
        if let Some(key) = http_only.iter().find_map(|k| f.opt(k)) {
            return Err(key.err("only allowed with `type: http`"));
        }
    }
    hc.kind = match kind.as_str() {
        "tcp" => HealthCheckKind::Tcp,
        "none" => HealthCheckKind::None,
        "http" => {
            let path = match f.opt("path") {
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
            };
            let host = f.opt("host").map(|h| h.string()).transpose()?;
            let expect_status = match f.opt("expect_status") {
                Some(list) => {
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
                        .collect::<Res<Vec<_>>>()?
                }
                None => vec![200],
            };
            HealthCheckKind::Http {
                path,
                host,
                expect_status,
            }
        }
        other => {
            let t = f.req("type")?;
            return Err(t.err(format!(
                "unknown type `{other}`: expected tcp, http or none"
            )));
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
    Ok(hc)
}

fn default_timeouts() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(2),
        read: Duration::from_secs(60),
        write: Duration::from_secs(60),
    }
}

fn timeouts(field: &Field<'_>) -> Res<Timeouts> {
    let f = field.fields(&["connect", "read", "write"])?;
    let mut t = default_timeouts();
    if let Some(d) = f.opt("connect") {
        t.connect = d.duration()?;
    }
    if let Some(d) = f.opt("read") {
        t.read = d.duration()?;
    }
    if let Some(d) = f.opt("write") {
        t.write = d.duration()?;
    }
    Ok(t)
}

/// RFC 7230 `tchar`, which is also RFC 6265's cookie-name `token`.
pub fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Headers tether or HTTP itself owns; a session header may not take their name.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "cookie",
    "set-cookie",
    "connection",
    "content-length",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
];

fn session(field: &Field<'_>) -> Res<SessionConfig> {
    let f = field.fields(&[
        "type",
        "name",
        "absolute_timeout",
        "idle_timeout",
        "strict",
        "cookie",
    ])?;
    let type_field = f.req("type")?;
    let kind = match type_field.string()?.to_ascii_lowercase().as_str() {
        "cookie" => SessionKind::Cookie,
        "header" => SessionKind::Header,
        other => {
            return Err(type_field.err(format!("unknown type `{other}`: expected Cookie or Header")))
        }
    };
    let name_field = f.req("name")?;
    let name = name_field.string()?;
    if !is_token(&name) {
        return Err(name_field.err(format!(
            "`{name}` is not a valid {} name (RFC 6265 / RFC 7230 token: letters, digits and !#$%&'*+-.^_`|~)",
            if kind == SessionKind::Cookie { "cookie" } else { "header" }
        )));
    }
    if kind == SessionKind::Header && RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str())
    {
        return Err(name_field.err(format!("`{name}` is reserved and cannot carry sessions")));
    }
    let absolute_timeout = f
        .opt("absolute_timeout")
        .map(|d| d.duration())
        .transpose()?;
    let idle_timeout = f.opt("idle_timeout").map(|d| d.duration()).transpose()?;
    let strict = f
        .opt("strict")
        .map(|b| b.boolean())
        .transpose()?
        .unwrap_or(false);
    let cookie = match f.opt("cookie") {
        Some(c) if kind == SessionKind::Header => {
            return Err(c.err("only allowed with `type: Cookie`"));
        }
        Some(c) => cookie(&c)?,
        None => CookieConfig::default(),
    };
    if cookie.lifetime_type == LifetimeType::Permanent && absolute_timeout.is_none() {
        return Err(field.err("`cookie.lifetime_type: Permanent` requires `absolute_timeout`"));
    }
    Ok(SessionConfig {
        kind,
        name,
        absolute_timeout,
        idle_timeout,
        strict,
        cookie,
    })
}

fn cookie(field: &Field<'_>) -> Res<CookieConfig> {
    let f = field.fields(&[
        "lifetime_type",
        "path",
        "domain",
        "secure",
        "http_only",
        "same_site",
    ])?;
    let mut c = CookieConfig::default();
    if let Some(l) = f.opt("lifetime_type") {
        c.lifetime_type = match l.string()?.to_ascii_lowercase().as_str() {
            "permanent" => LifetimeType::Permanent,
            "session" => LifetimeType::Session,
            other => {
                return Err(l.err(format!(
                    "unknown lifetime_type `{other}`: expected Permanent or Session"
                )))
            }
        };
    }
    // Attribute values end up inside Set-Cookie: nothing that could end or split it.
    let attr_ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b > b' ' && b != b';' && b != 0x7f);
    if let Some(p) = f.opt("path") {
        c.path = p.string()?;
        if !c.path.starts_with('/') || !attr_ok(&c.path) {
            return Err(
                p.err("must start with `/` and contain no spaces, `;` or control characters")
            );
        }
    }
    if let Some(d) = f.opt("domain") {
        let domain = d.string()?;
        if !attr_ok(&domain)
            || !domain
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        {
            return Err(d.err(format!("`{domain}` is not a domain name")));
        }
        c.domain = Some(domain);
    }
    if let Some(b) = f.opt("secure") {
        c.secure = b.boolean()?;
    }
    if let Some(b) = f.opt("http_only") {
        c.http_only = b.boolean()?;
    }
    if let Some(s) = f.opt("same_site") {
        c.same_site = match s.string()?.to_ascii_lowercase().as_str() {
            "strict" => SameSite::Strict,
            "lax" => SameSite::Lax,
            "none" => SameSite::None,
            other => {
                return Err(s.err(format!(
                    "unknown same_site `{other}`: expected Strict, Lax or None"
                )))
            }
        };
        if c.same_site == SameSite::None && !c.secure {
            return Err(s.err("`same_site: None` requires `secure: true`"));
        }
    }
    Ok(c)
}
