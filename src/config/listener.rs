//! `listeners[]`: where tether accepts connections. Routes attach to listeners.

use std::net::SocketAddr;

use super::decode::{Field, Res};

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
}

/// Decodes one `listeners[i]`.
pub(crate) fn listener(field: &Field<'_>) -> Res<ListenerConfig> {
    let f = field.map()?;
    let name = super::cluster::name(&f, "listener")?;
    let address = super::socket_addr(&f.req("address")?)?;
    f.finish()?;
    Ok(ListenerConfig {
        name,
        address,
        long_form: true,
    })
}
