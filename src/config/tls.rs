//! TLS in the config: `listeners[].tls` (certificates chosen by SNI, lowest version) and a
//! cluster's `protocol` and `tls` (how tether talks to its backends). Certificate and key
//! files are read and checked here, so `tether -t` refuses what the server could not serve.

use std::path::{Path, PathBuf};

use super::decode::{Field, Fields, Res};
use crate::tls::{CertPair, PairFiles, PairPart};

/// A certificate that ends sooner than this is warned about at `-t` and at start.
pub const EXPIRY_WARNING_DAYS: i64 = 14;

/// `listeners[].tls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    /// The certificates, the first one the default.
    pub certificates: Vec<PairFiles>,
    /// The lowest TLS version accepted.
    pub min_version: TlsVersion,
}

/// A TLS protocol version tether speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2 (and 1.3).
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

/// How tether talks to a cluster's backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 (over TLS when the cluster has `tls`).
    #[default]
    Http1,
    /// HTTP/2 over TLS (ALPN `h2`).
    H2,
    /// HTTP/2 with prior knowledge, no TLS.
    H2c,
}

impl UpstreamProtocol {
    /// The word used in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamProtocol::Http1 => "http1",
            UpstreamProtocol::H2 => "h2",
            UpstreamProtocol::H2c => "h2c",
        }
    }
}

/// A cluster's `tls`: TLS to its backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    /// The server name sent and verified; default: the host part of each backend's address.
    pub sni: Option<String>,
    /// Verify the backend's certificate (default true).
    pub verify: bool,
    /// The roots to verify against; default: the system's.
    pub ca_file: Option<PathBuf>,
}

/// Decodes `listeners[i].tls`; warnings (certificates about to expire) go to `warnings`.
pub(crate) fn listener_tls(
    field: &Field<'_>,
    base: &Path,
    warnings: &mut Vec<String>,
) -> Res<ListenerTls> {
    let f = field.map()?;
    let list = f.req("certificates")?;
    let items = list.list()?;
    if items.is_empty() {
        return Err(list.err("at least one certificate is required"));
    }
    let mut certificates = Vec::new();
    for item in &items {
        let files = certificate(item, base, warnings)?;
        certificates.push(files);
    }
    let min_version = match f.opt("min_version") {
        None => TlsVersion::Tls12,
        Some(v) => match v.string()?.as_str() {
            "1.2" => TlsVersion::Tls12,
            "1.3" => TlsVersion::Tls13,
            _ => {
                return Err(v.err(format!(
                    "unsupported TLS version {}: use \"1.2\" or \"1.3\" (older versions are never offered)",
                    v.quoted()
                )))
            }
        },
    };
    f.finish()?;
    Ok(ListenerTls {
        certificates,
        min_version,
    })
}

/// One `certificates[j]`: its files read and checked now.
fn certificate(item: &Field<'_>, base: &Path, warnings: &mut Vec<String>) -> Res<PairFiles> {
    let f = item.map()?;
    let cert_field = f.req("cert_file")?;
    let key_field = f.req("key_file")?;
    f.finish()?;
    let cert_file = cert_field.string()?;
    let files = PairFiles {
        cert_path: base.join(&cert_file),
        key_path: base.join(key_field.string()?),
        cert_file,
    };
    let pair = CertPair::load(&files).map_err(|e| match e.0 {
        PairPart::Cert => cert_field.err(e.1),
        PairPart::Key => key_field.err(e.1),
        PairPart::Both => item.err(e.1),
    })?;
    if let Some(warning) = expiry_warning(&pair, &files, i64::from(crate::session::unix_now())) {
        warnings.push(format!("{}: {}: {warning}", item.node.line, item.path));
    }
    Ok(files)
}

/// The warning for a certificate that has expired or expires within
/// [`EXPIRY_WARNING_DAYS`].
pub fn expiry_warning(pair: &CertPair, files: &PairFiles, now: i64) -> Option<String> {
    let left = pair.seconds_left(now);
    let file = &files.cert_file;
    if left <= 0 {
        Some(format!("certificate `{file}` has expired"))
    } else if left < EXPIRY_WARNING_DAYS * 86_400 {
        let days = left / 86_400;
        let hours = (left % 86_400) / 3600;
        Some(format!(
            "certificate `{file}` expires in {days} days {hours} hours"
        ))
    } else {
        None
    }
}

/// Decodes a cluster's `protocol` and `tls` together: `h2` needs `tls`, `h2c` excludes it.
pub(crate) fn upstream(
    f: &Fields<'_>,
    base: &Path,
) -> Res<(UpstreamProtocol, Option<UpstreamTls>)> {
    let protocol_field = f.opt("protocol");
    let protocol = match &protocol_field {
        None => UpstreamProtocol::Http1,
        Some(p) => match p.string()?.to_ascii_lowercase().as_str() {
            "http1" => UpstreamProtocol::Http1,
            "h2" => UpstreamProtocol::H2,
            "h2c" => UpstreamProtocol::H2c,
            _ => {
                return Err(p.err(format!(
                    "unknown protocol {}: expected http1, h2 or h2c",
                    p.quoted()
                )))
            }
        },
    };
    let tls_field = f.opt("tls");
    let tls = tls_field
        .as_ref()
        .map(|t| upstream_tls(t, base))
        .transpose()?;
    match (protocol, &tls, &protocol_field, &tls_field) {
        (UpstreamProtocol::H2, None, Some(p), _) => Err(p.err(
            "`h2` is HTTP/2 over TLS and needs the cluster's `tls`; for HTTP/2 without TLS use `h2c`",
        )),
        (UpstreamProtocol::H2c, Some(_), _, Some(t)) => Err(t.err(
            "`protocol: h2c` is HTTP/2 without TLS; with `tls` use `protocol: h2`",
        )),
        _ => Ok((protocol, tls)),
    }
}

fn upstream_tls(field: &Field<'_>, base: &Path) -> Res<UpstreamTls> {
    let f = field.map()?;
    let sni = match f.opt("sni") {
        Some(s) => {
            let name = s.string()?;
            if name.is_empty() || rustls_pki_types::ServerName::try_from(name.as_str()).is_err() {
                return Err(s.err(format!("`{name}` is not a DNS name or IP address")));
            }
            Some(name)
        }
        None => None,
    };
    let verify = f
        .opt("verify")
        .map(|v| v.boolean())
        .transpose()?
        .unwrap_or(true);
    let ca_file = match f.opt("ca_file") {
        Some(c) => {
            let path = base.join(c.string()?);
            crate::tls::read_roots(&path).map_err(|e| c.err(e))?;
            Some(path)
        }
        None => None,
    };
    f.finish()?;
    Ok(UpstreamTls {
        sni,
        verify,
        ca_file,
    })
}
