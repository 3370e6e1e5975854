//! The config file: one YAML document holding Pingora's server keys and tether's own.
//!
//! Reading goes YAML text -> [`yaml::Node`] tree (with lines) -> [`Config`], a model of ready-made
//! types (`SocketAddr`, `Duration`, secrets as bytes). Every rejection is a [`ConfigError`] naming
//! file, line, key path and reason. Unknown keys are errors everywhere, Pingora's included: the
//! list of Pingora's keys is read from `ServerConf`'s own serialization, so it follows the crate.

mod checks;
mod cluster;
mod decode;
mod dynamic;
mod listener;
mod route;
mod service;
mod session;
mod tls;
pub mod yaml;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pingora_core::server::configuration::ServerConf;

pub use cluster::{
    BackendConfig, BackendState, ClusterConfig, HealthCheckConfig, HealthCheckKind, Timeouts,
    MAX_WEIGHT,
};
pub use decode::parse_duration;
use decode::{Field, Res};
pub use dynamic::{AdminToken, DiscoveryConfig, OutlierConfig, RecordKind, MIN_ADMIN_TOKEN_LEN};
pub use listener::ListenerConfig;
pub use route::{
    HeaderMatch, Hostname, PathMatch, RouteConfig, RouteMatch, WeightedCluster, MAX_CLUSTER_WEIGHT,
};
pub use session::{
    is_token, CookieConfig, LifetimeType, SameSite, Secure, SessionConfig, SessionKind,
};
pub use tls::{
    expiry_warning, ListenerTls, TlsVersion, UpstreamProtocol, UpstreamTls, EXPIRY_WARNING_DAYS,
};

/// Smallest accepted session key, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

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
    /// Limits on what clients may send.
    pub limits: Limits,
    /// How access lines are written.
    pub access_log: AccessLogFormat,
    /// Where connections are accepted: `listeners`, then those `services` make.
    pub listeners: Vec<ListenerConfig>,
    /// The backend clusters: `clusters`, then those `services` make.
    pub clusters: Vec<ClusterConfig>,
    /// The routes, in the order of the file (`services` entries count where they are written).
    pub routes: Vec<RouteConfig>,
    /// What is valid but should be looked at (certificates about to expire), as
    /// `line: key path: message`; printed by `-t` and logged at start.
    pub warnings: Vec<String>,
}

/// `access_log.format`: one text line per request, or one JSON object per line (SPEC 9).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AccessLogFormat {
    /// `[time INFO tether::access] client "GET /path" 200 host=... route=...`.
    #[default]
    Text,
    /// `{"time": ..., "client": ..., ...}`, nothing else on the line.
    Json,
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
    /// The bearer token of the write API (`POST /clusters/...`); none: writes are refused.
    pub token: Option<AdminToken>,
    /// Where runtime backend states are kept across reloads and restarts.
    pub state_file: Option<PathBuf>,
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
        let top = root.map()?;
        let pingora_keys = pingora_keys();
        let server = server_conf(&top, &pingora_keys)?;
        let admin_field = top.opt("admin");
        let admin = admin_field
            .as_ref()
            .map(|f| admin(f, base, env))
            .transpose()?;
        let limits = top
            .opt("limits")
            .map(|f| limits(&f))
            .transpose()?
            .unwrap_or_default();
        let access_log = match top.opt("access_log") {
            Some(f) => access_log(&f)?,
            None => AccessLogFormat::Text,
        };
        let session_keys = match top.opt("session_keys") {
            Some(f) => session_keys(&f, base, env)?,
            None => Vec::new(),
        };
        let mut parts = checks::Parts::default();
        let mut warnings = Vec::new();
        if let Some(list) = top.opt("listeners") {
            for item in list.list()? {
                let listener = listener::listener(&item, base, &mut warnings)?;
                parts.add_listener(listener, &item)?;
            }
        }
        if let Some(list) = top.opt("clusters") {
            for item in list.list()? {
                let cluster = cluster::cluster(&item, base)?;
                parts.add_cluster(cluster, &item)?;
            }
        }
        let services_field = top.opt("services");
        let services = match &services_field {
            Some(list) => list.list()?,
            None => Vec::new(),
        };
        for item in &services {
            parts.add_service(service::service(item)?)?;
        }
        let routes_field = top.opt("routes");
        if let Some(list) = &routes_field {
            let long_form: Vec<usize> = (0..parts.listeners.len())
                .filter(|&i| parts.listeners[i].long_form)
                .collect();
            for item in list.list()? {
                let route = route::route(
                    &item,
                    &|name| parts.listener_index(name),
                    &|name| parts.cluster_index(name),
                    &long_form,
                )?;
                parts.add_route(route, &item)?;
            }
        }
        top.finish()?;
        if parts.routes.is_empty() {
            let at = routes_field.or(services_field);
            return Err(match at {
                Some(f) => f.err("at least one route (or service) is required"),
                None => ConfigError::at(1, "routes", "at least one route (or service) is required"),
            });
        }
        parts.check_listen_addresses(admin.as_ref(), admin_field.as_ref())?;
        parts.check_session_scopes()?;
        let (listeners, clusters, routes) = parts.finish();
        Ok(Config {
            path: PathBuf::new(),
            server,
            admin,
            session_keys,
            limits,
            access_log,
            listeners,
            clusters,
            routes,
            warnings,
        })
    }
}

fn access_log(field: &Field<'_>) -> Res<AccessLogFormat> {
    let f = field.map()?;
    let format = match f.opt("format") {
        None => AccessLogFormat::Text,
        Some(v) => match v.string()?.to_ascii_lowercase().as_str() {
            "text" => AccessLogFormat::Text,
            "json" => AccessLogFormat::Json,
            _ => {
                return Err(v.err(format!(
                    "unknown format {}: expected text or json",
                    v.quoted()
                )))
            }
        },
    };
    f.finish()?;
    Ok(format)
}

fn limits(field: &Field<'_>) -> Res<Limits> {
    let f = field.map()?;
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
    f.finish()?;
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
    let mut threads_line = None;
    for entry in top.take(pingora_keys) {
        if entry.key == "threads" {
            threads_line = Some(entry.value.line);
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
        let line = threads_line.unwrap_or(1);
        return Err(ConfigError::at(line, "threads", "must be at least 1"));
    }
    conf.validate()
        .map_err(|e| ConfigError::whole_file(format!("Pingora rejected the server keys: {e}")))
}

fn admin(field: &Field<'_>, base: &Path, env: &dyn Fn(&str) -> Option<String>) -> Res<AdminConfig> {
    let f = field.map()?;
    let listen = socket_addr(&f.req("listen")?)?;
    let (token, state_file) = dynamic::admin_api(&f, base, env)?;
    f.finish()?;
    Ok(AdminConfig {
        listen,
        token,
        state_file,
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
        let f = item.map()?;
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
        let secret = dynamic::secret(
            &f,
            ("secret_file", "secret_env"),
            base,
            env,
            MIN_SECRET_LEN,
            "secret",
        )?;
        f.finish()?;
        keys.push(SessionKey { id, secret });
    }
    Ok(keys)
}

#[cfg(test)]
mod dynamic_tests;
#[cfg(test)]
mod gateway_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;
