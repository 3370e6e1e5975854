//! The keys of backends that change while tether runs (SPEC 8): a cluster's `discovery` and
//! `outlier_detection`, and the admin listener's write API (`token_file`/`token_env`,
//! `state_file`).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::decode::{Field, Fields, Res};

/// `clusters[].discovery`: backends found by DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryConfig {
    /// The DNS name resolved (as written, without a trailing dot).
    pub name: String,
    /// The backends' port (A/AAAA records); SRV records carry their own.
    pub port: Option<u16>,
    /// Time between rounds.
    pub interval: Duration,
    /// Which records.
    pub record: RecordKind,
    /// Name servers asked; empty: the system's resolver configuration.
    pub nameservers: Vec<SocketAddr>,
}

/// The records a discovery asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// A and AAAA: addresses, with the configured port.
    Address,
    /// SRV: targets with their ports and weights, the targets resolved in turn.
    Srv,
}

/// `clusters[].outlier_detection`: passive health from real traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierConfig {
    /// Failed responses in a row (connection failures, timeouts, 5xx) that eject a backend.
    pub consecutive_failures: u32,
    /// How long a first ejection lasts (doubled for each ejection in a row, at most 10x).
    pub ejection_time: Duration,
    /// At most this share of a cluster's backends is ejected at once (rounded down).
    pub max_ejected_percent: u32,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig {
            consecutive_failures: 5,
            ejection_time: Duration::from_secs(30),
            max_ejected_percent: 50,
        }
    }
}

/// The bearer token of the admin write API. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(pub Vec<u8>);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AdminToken({} bytes)", self.0.len())
    }
}

/// Shortest accepted admin token.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// Default time between discovery rounds.
pub const DEFAULT_DISCOVERY_INTERVAL: Duration = Duration::from_secs(5);

/// Decodes `clusters[i].discovery`.
pub(crate) fn discovery(field: &Field<'_>) -> Res<DiscoveryConfig> {
    let f = field.map()?;
    let kind = f.req("type")?;
    if !kind.string()?.eq_ignore_ascii_case("dns") {
        return Err(kind.err(format!("unknown type {}: expected dns", kind.quoted())));
    }
    let name_field = f.req("name")?;
    let name = dns_name(&name_field)?;
    let record = match f.opt("record") {
        None => RecordKind::Address,
        Some(r) => match r.string()?.to_ascii_uppercase().as_str() {
            "A" | "AAAA" => RecordKind::Address,
            "SRV" => RecordKind::Srv,
            _ => {
                return Err(r.err(format!(
                    "unknown record {}: expected A (A and AAAA) or SRV",
                    r.quoted()
                )))
            }
        },
    };
    let port = match (f.opt("port"), record) {
        (Some(p), RecordKind::Srv) => {
            return Err(p.err("SRV records carry their own ports: remove `port`"))
        }
        (Some(p), RecordKind::Address) => {
            let n = p.uint_min(1)?;
            Some(u16::try_from(n).map_err(|_| p.err(format!("{n} is not a port")))?)
        }
        (None, RecordKind::Address) => {
            return Err(f.err("missing required key `port` (A/AAAA records carry no port)"))
        }
        (None, RecordKind::Srv) => None,
    };
    let interval = match f.opt("interval") {
        Some(d) => d.duration()?,
        None => DEFAULT_DISCOVERY_INTERVAL,
    };
    let nameservers = match f.opt("nameservers") {
        Some(list) => list
            .one_or_list()?
            .iter()
            .map(nameserver)
            .collect::<Res<Vec<_>>>()?,
        None => Vec::new(),
    };
    f.finish()?;
    Ok(DiscoveryConfig {
        name,
        port,
        interval,
        record,
        nameservers,
    })
}

/// A DNS name: labels of letters, digits, `-` and `_` (SRV names), 1-63 bytes each, 253 in all;
/// a trailing dot is dropped.
fn dns_name(field: &Field<'_>) -> Res<String> {
    let text = field.string()?;
    let name = text.strip_suffix('.').unwrap_or(&text);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(field.err(format!("{} is not a DNS name", field.quoted())));
    }
    Ok(name.to_ascii_lowercase())
}

/// A name server: `ip` or `ip:port` (port 53 by default).
fn nameserver(field: &Field<'_>) -> Res<SocketAddr> {
    let text = field.string()?;
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    Err(field.err(format!(
        "{} is not a name server address: use ip or ip:port, e.g. 10.0.0.2:53",
        field.quoted()
    )))
}

/// Decodes `clusters[i].outlier_detection`.
pub(crate) fn outlier(field: &Field<'_>) -> Res<OutlierConfig> {
    let f = field.map()?;
    let mut o = OutlierConfig::default();
    if let Some(n) = f.opt("consecutive_failures") {
        let v = n.uint_min(1)?;
        o.consecutive_failures =
            u32::try_from(v).map_err(|_| n.err(format!("{v} is too large")))?;
    }
    if let Some(d) = f.opt("ejection_time") {
        o.ejection_time = d.duration()?;
    }
    if let Some(p) = f.opt("max_ejected_percent") {
        let v = p.uint()?;
        if v > 100 {
            return Err(p.err(format!("must be at most 100, found {v}")));
        }
        o.max_ejected_percent = v as u32;
    }
    f.finish()?;
    Ok(o)
}

/// Reads a secret from the file under key `keys.0` (relative to `base`) or the environment
/// variable named under `keys.1`, exactly one of the two, without trailing whitespace, at least
/// `min_len` bytes. `what` names it in messages.
pub(crate) fn secret(
    at: &Fields<'_>,
    keys: (&'static str, &'static str),
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    min_len: usize,
    what: &str,
) -> Res<Vec<u8>> {
    let (file_key, env_key) = keys;
    let (source, bytes) = match (at.opt(file_key), at.opt(env_key)) {
        (Some(file), None) => {
            let name = file.string()?;
            let path = base.join(&name);
            let bytes = std::fs::read(&path)
                .map_err(|e| file.err(format!("cannot read `{}`: {e}", path.display())))?;
            (file, bytes)
        }
        (None, Some(var)) => {
            let name = var.string()?;
            let value = env(&name)
                .ok_or_else(|| var.err(format!("environment variable `{name}` is not set")))?;
            (var, value.into_bytes())
        }
        (Some(file), Some(_)) => {
            return Err(file.err(format!("give either `{file_key}` or `{env_key}`, not both")))
        }
        (None, None) => return Err(at.err(format!("missing `{file_key}` or `{env_key}`"))),
    };
    let bytes = trim_secret(bytes);
    if bytes.len() < min_len {
        return Err(source.err(format!(
            "{what} is {} bytes; at least {min_len} are required",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// Trailing newlines and spaces are not part of a secret (`echo ... > key` adds one).
fn trim_secret(mut bytes: Vec<u8>) -> Vec<u8> {
    while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
        bytes.pop();
    }
    bytes
}

/// The admin write API's keys of `admin:`: the token (optional) and the state file.
pub(crate) fn admin_api(
    f: &Fields<'_>,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Res<(Option<AdminToken>, Option<PathBuf>)> {
    let token = if f.has("token_file") || f.has("token_env") {
        Some(AdminToken(secret(
            f,
            ("token_file", "token_env"),
            base,
            env,
            MIN_ADMIN_TOKEN_LEN,
            "admin token",
        )?))
    } else {
        None
    };
    let state_file = match f.opt("state_file") {
        Some(p) => {
            let text = p.string()?;
            if text.is_empty() {
                return Err(p.err("must be a file path"));
            }
            Some(base.join(text))
        }
        None => None,
    };
    Ok((token, state_file))
}
