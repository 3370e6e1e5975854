//! The config file: one YAML document holding Pingora's server keys and tether's own.
//!
//! Reading goes YAML text -> [`yaml::Node`] tree (with lines) -> [`Config`], a model of ready-made
//! types (`SocketAddr`, `Duration`, secrets as bytes). Every rejection is a [`ConfigError`] naming
//! file, line, key path and reason. Unknown keys are errors everywhere, Pingora's included: the
//! list of Pingora's keys is read from `ServerConf`'s own serialization, so it follows the crate.

mod decode;
mod service;
pub mod yaml;

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pingora_core::server::configuration::ServerConf;

pub use decode::parse_duration;
use decode::{Field, Res};
pub use service::{
    BackendConfig, BackendState, CookieConfig, HealthCheckConfig, HealthCheckKind, LifetimeType,
    SameSite, ServiceConfig, SessionConfig, SessionKind, Timeouts,
};

/// Smallest accepted session key, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// tether's own top-level keys (Pingora's are found in `ServerConf`).
const TETHER_KEYS: &[&str] = &["admin", "session_keys", "services", "limits"];

/// Default of `limits.max_request_header_bytes` (Envoy's default is 60 KiB, nginx's 32 KiB).
pub const DEFAULT_MAX_REQUEST_HEADER_BYTES: usize = 64 * 1024;
/// Pingora refuses header sections beyond this itself (a constant in pingora-core).
pub const PINGORA_MAX_HEADER_BYTES: usize = 1_048_575;

/// A config error: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file.
    pub file: String,
    /// 1-based line, when the error is about a place in the file.
    pub line: Option<usize>,
    /// Key path such as `services[1].backends[0].weight`; empty for the whole file.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn at(line: usize, path: &str, message: impl Into<String>) -> Self {
        ConfigError {
            file: String::new(),
            line: Some(line),
            path: path.to_string(),
            message: message.into(),
        }
    }

    fn whole_file(message: impl Into<String>) -> Self {
        ConfigError {
            file: String::new(),
            line: None,
            path: String::new(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The whole validated configuration.
#[derive(Debug)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// Pingora's server settings from the same file.
    pub server: ServerConf,
    /// The admin listener, if enabled.
    pub admin: Option<AdminConfig>,
    /// The key ring, signing key first.
    pub session_keys: Vec<SessionKey>,
    /// The proxied services.
    pub services: Vec<ServiceConfig>,
    /// Limits on what clients may send.
    pub limits: Limits,
}

/// `limits:` section: what clients may send, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request line plus header section accepted; larger gets 431.
    pub max_request_header_bytes: usize,
    /// Time for a request's header section to arrive: from the connection for the first
    /// request, from its first byte for the next ones (cuts off slowloris clients).
    pub request_header_timeout: Duration,
    /// Time a kept-alive connection may wait for its next request.
    pub keepalive_timeout: Duration,
    /// Concurrent client connections per listener; beyond, 503 and close.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_header_bytes: DEFAULT_MAX_REQUEST_HEADER_BYTES,
            request_header_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(60),
            max_connections: 10_000,
        }
    }
}

/// `admin:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Where `/metrics`, `/healthz` and `/status` are served.
    pub listen: SocketAddr,
}

/// One key of the session key ring.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKey {
    /// The key's name, carried (as a tag) in tokens.
    pub id: String,
    /// The secret bytes (at least [`MIN_SECRET_LEN`]).
    pub secret: Vec<u8>,
}

impl fmt::Debug for SessionKey {
    // Secrets never reach a log, not even through Debug.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionKey")
            .field("id", &self.id)
            .field("secret", &format_args!("<{} bytes>", self.secret.len()))
            .finish()
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let with_file = |mut e: ConfigError| {
            e.file = file.clone();
            e
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| with_file(ConfigError::whole_file(format!("cannot read: {e}"))))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut config =
            Self::parse(&text, base, &|name| std::env::var(name).ok()).map_err(with_file)?;
        config.path = path.to_path_buf();
        Ok(config)
    }

    /// Parses config text. `base` resolves relative secret files; `env` looks up `secret_env`.
    pub fn parse(
        text: &str,
        base: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let root = yaml::parse(text).map_err(|e| ConfigError {
            file: String::new(),
            line: Some(e.line),
            path: String::new(),
            message: format!("invalid YAML: {}", e.message),
        })?;
        let root = Field::new(&root, "");
        let pingora_keys = pingora_keys();
        let mut allowed: Vec<&str> = pingora_keys.iter().map(String::as_str).collect();
        allowed.extend_from_slice(TETHER_KEYS);
        let top = root.fields(&allowed)?;

        let server = server_conf(&top, &pingora_keys)?;
        let admin = top.opt("admin").map(|f| admin(&f)).transpose()?;
        let limits = top
            .opt("limits")
            .map(|f| limits(&f))
            .transpose()?
            .unwrap_or_default();
        let session_keys = match top.opt("session_keys") {
            Some(f) => session_keys(&f, base, env)?,
            None => Vec::new(),
        };
        let services_field = top.req("services")?;
        let list = services_field.list()?;
        if list.is_empty() {
            return Err(services_field.err("at least one service is required"));
        }
        let services = list.iter().map(service::service).collect::<Res<Vec<_>>>()?;
        check_unique_names(&services, &list)?;
        check_listeners(&services, &list, admin.as_ref(), top.opt("admin"))?;
        Ok(Config {
            path: PathBuf::new(),
            server,
            admin,
            session_keys,
            services,
            limits,
        })
    }
}

fn limits(field: &Field<'_>) -> Res<Limits> {
    let f = field.fields(&[
        "max_request_header_bytes",
        "request_header_timeout",
        "keepalive_timeout",
        "max_connections",
    ])?;
    let mut limits = Limits::default();
    if let Some(n) = f.opt("max_request_header_bytes") {
        let bytes = n.uint_min(1024)?;
        if bytes > PINGORA_MAX_HEADER_BYTES as u64 {
            return Err(n.err(format!(
                "must be at most {PINGORA_MAX_HEADER_BYTES} (Pingora's own limit), found {bytes}"
            )));
        }
        limits.max_request_header_bytes = bytes as usize;
    }
    if let Some(d) = f.opt("request_header_timeout") {
        limits.request_header_timeout = d.duration()?;
    }
    if let Some(d) = f.opt("keepalive_timeout") {
        limits.keepalive_timeout = d.duration()?;
    }
    if let Some(n) = f.opt("max_connections") {
        limits.max_connections = n.uint_min(1)? as usize;
    }
    Ok(limits)
}

/// Pingora's top-level keys, read from what `ServerConf` serializes.
fn pingora_keys() -> Vec<String> {
    match serde_yaml::to_value(ServerConf::default()) {
        Ok(serde_yaml::Value::Mapping(m)) => m
            .keys()
            .filter_map(|k| k.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// Builds Pingora's `ServerConf` from its keys, checking each alone first so a wrong type is
/// reported at its own line.
fn server_conf(top: &decode::Fields<'_>, pingora_keys: &[String]) -> Res<ServerConf> {
    let mut all = serde_yaml::Mapping::new();
    for entry in top.entries() {
        if !pingora_keys.contains(&entry.key) {
            continue;
        }
        let key = serde_yaml::Value::String(entry.key.clone());
        let mut one = serde_yaml::Mapping::new();
        one.insert(key.clone(), entry.value.to_serde_value());
        if let Err(e) = serde_yaml::from_value::<ServerConf>(serde_yaml::Value::Mapping(one)) {
            let why = e.to_string();
            let why = why.split(" at line").next().unwrap_or(&why);
            return Err(ConfigError::at(entry.value.line, &entry.key, why));
        }
        all.insert(key, entry.value.to_serde_value());
    }
    let conf: ServerConf = serde_yaml::from_value(serde_yaml::Value::Mapping(all))
        .map_err(|e| ConfigError::whole_file(e.to_string()))?;
    if conf.threads == 0 {
        let line = top.opt("threads").map_or(1, |f| f.node.line);
        return Err(ConfigError::at(line, "threads", "must be at least 1"));
    }
    conf.validate()
        .map_err(|e| ConfigError::whole_file(format!("Pingora rejected the server keys: {e}")))
}

fn admin(field: &Field<'_>) -> Res<AdminConfig> {
    let f = field.fields(&["listen"])?;
    let listen = f.req("listen")?;
    Ok(AdminConfig {
        listen: socket_addr(&listen)?,
    })
}

/// A listen address: `ip:port`.
pub(crate) fn socket_addr(field: &Field<'_>) -> Res<SocketAddr> {
    let text = field.string()?;
    text.parse().map_err(|_| {
        field.err(format!(
            "`{text}` is not a listen address: use ip:port, e.g. 0.0.0.0:8000 or [::]:8000"
        ))
    })
}

fn session_keys(
    field: &Field<'_>,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Res<Vec<SessionKey>> {
    let mut keys: Vec<SessionKey> = Vec::new();
    for item in field.list()? {
        let f = item.fields(&["id", "secret_file", "secret_env"])?;
        let id_field = f.req("id")?;
        let id = id_field.string()?;
        if id.is_empty()
            || id.len() > 32
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(id_field.err("key id must be 1 to 32 characters of [A-Za-z0-9_-]"));
        }
        if keys.iter().any(|k| k.id == id) {
            return Err(id_field.err(format!("duplicate key id `{id}`")));
        }
        let secret = match (f.opt("secret_file"), f.opt("secret_env")) {
            (Some(file), None) => {
                let name = file.string()?;
                let path = base.join(&name);
                let bytes = std::fs::read(&path)
                    .map_err(|e| file.err(format!("cannot read `{}`: {e}", path.display())))?;
                (file, trim_secret(bytes))
            }
            (None, Some(var)) => {
                let name = var.string()?;
                let value = env(&name)
                    .ok_or_else(|| var.err(format!("environment variable `{name}` is not set")))?;
                (var, trim_secret(value.into_bytes()))
            }
            (Some(_), Some(var)) => {
                return Err(var.err("give either `secret_file` or `secret_env`, not both"))
            }
            (None, None) => {
                return Err(item.err("missing `secret_file` or `secret_env`"));
            }
        };
        let (source, secret) = secret;
        if secret.len() < MIN_SECRET_LEN {
            return Err(source.err(format!(
                "secret is {} bytes; at least {MIN_SECRET_LEN} are required",
                secret.len()
            )));
        }
        keys.push(SessionKey { id, secret });
    }
    Ok(keys)
}

/// Trailing newlines and spaces are not part of a secret (`echo ... > key` adds one).
fn trim_secret(mut bytes: Vec<u8>) -> Vec<u8> {
    while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
        bytes.pop();
    }
    bytes
}

fn check_unique_names(services: &[ServiceConfig], fields: &[Field<'_>]) -> Res<()> {
    let mut seen = HashSet::new();
    for (service, field) in services.iter().zip(fields) {
        if !seen.insert(service.name.as_str()) {
            let f = field.fields(service::SERVICE_KEYS)?.req("name")?;
            return Err(f.err(format!("duplicate service name `{}`", service.name)));
        }
    }
    Ok(())
}

/// No address is listened on twice (a wildcard and a specific address on one port clash too).
fn check_listeners(
    services: &[ServiceConfig],
    fields: &[Field<'_>],
    admin: Option<&AdminConfig>,
    admin_field: Option<Field<'_>>,
) -> Res<()> {
    let clash = |a: &SocketAddr, b: &SocketAddr| {
        a.port() == b.port()
            && a.is_ipv4() == b.is_ipv4()
            && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
    };
    let mut seen: Vec<SocketAddr> = Vec::new();
    for (service, field) in services.iter().zip(fields) {
        let listen = field.fields(service::SERVICE_KEYS)?.req("listen")?;
        let items = listen.one_or_list()?;
        for (addr, item) in service.listen.iter().zip(items) {
            if seen.iter().any(|s| clash(s, addr)) {
                return Err(item.err(format!("listen address {addr} is used twice")));
            }
            seen.push(*addr);
        }
    }
    if let (Some(admin), Some(field)) = (admin, admin_field) {
        if seen.iter().any(|s| clash(s, &admin.listen)) {
            let listen = field.fields(&["listen"])?.req("listen")?;
            return Err(listen.err(format!(
                "listen address {} is used twice (by a service and the admin listener)",
                admin.listen
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
