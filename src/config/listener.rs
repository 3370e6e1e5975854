//! `listeners[]`: where tether accepts connections, plain or TLS, HTTP/1.1 and HTTP/2. Routes
//! attach to listeners.

use std::net::SocketAddr;
use std::path::Path;

use super::decode::{Field, Res};
use super::tls::{listener_tls, ListenerTls};

/// One listening address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Unique name, `[A-Za-z0-9_-]+`.
    pub name: String,
    /// Where it listens.
    pub address: SocketAddr,
    /// Defined in `listeners` (routes without `listeners` attach to these), not made by a
    /// `services` entry.
    pub long_form: bool,
    /// TLS termination, when set.
    pub tls: Option<ListenerTls>,
    /// HTTP/2: offered by ALPN on TLS (default on), accepted with prior knowledge (h2c) on
    /// plain listeners (default off).
    pub http2: bool,
    /// On a plain listener: answer every request with a 308 to `https` on this port.
    pub redirect_https: Option<u16>,
}

impl ListenerConfig {
    /// A plain HTTP/1.1 listener (what a `services` entry makes).
    pub fn plain(name: String, address: SocketAddr, long_form: bool) -> ListenerConfig {
        ListenerConfig {
            name,
            address,
            long_form,
            tls: None,
            http2: false,
            redirect_https: None,
        }
    }
}

/// Decodes one `listeners[i]`; certificate warnings go to `warnings`.
pub(crate) fn listener(
    field: &Field<'_>,
    base: &Path,
    warnings: &mut Vec<String>,
) -> Res<ListenerConfig> {
    let f = field.map()?;
    let name = super::cluster::name(&f, "listener")?;
    let address = super::socket_addr(&f.req("address")?)?;
    let tls = f
        .opt("tls")
        .map(|t| listener_tls(&t, base, warnings))
        .transpose()?;
    let http2 = f
        .opt("http2")
        .map(|h| h.boolean())
        .transpose()?
        .unwrap_or(tls.is_some());
    let redirect_https = match f.opt("redirect_https") {
        Some(r) if tls.is_some() => {
            return Err(
                r.err("`redirect_https` is for plain listeners: this one already speaks TLS")
            )
        }
        Some(r) => {
            let port = r.uint_min(1)?;
            Some(u16::try_from(port).map_err(|_| r.err(format!("{port} is not a port")))?)
        }
        None => None,
    };
    f.finish()?;
    Ok(ListenerConfig {
        name,
        address,
        long_form: true,
        tls,
        http2,
        redirect_https,
    })
}
