//! `services[]`, the short form of version 1: one entry is a listener per `listen` address
//! (named `web`, `web-2`, ...), a cluster `web` with the backends, and a route `web` on those
//! listeners taking every request, with the session persistence.

use super::cluster::{cluster_body, name, ClusterConfig};
use super::decode::{Field, Res};
use super::listener::ListenerConfig;
use super::session::{session, SessionConfig};

/// What one `services` entry stands for, before its parts are numbered.
pub(crate) struct Service<'a> {
    /// Its listeners, each with the field of its address (for errors about it).
    pub listeners: Vec<(ListenerConfig, Field<'a>)>,
    /// Its cluster, named as the service.
    pub cluster: ClusterConfig,
    /// The session persistence of its route.
    pub session: Option<SessionConfig>,
    /// The field of its name.
    pub name_field: Field<'a>,
}

/// Decodes one `services[i]`.
pub(crate) fn service<'a>(field: &Field<'a>) -> Res<Service<'a>> {
    let f = field.map()?;
    let name = name(&f, "service")?;
    let name_field = f.req("name")?;
    let listen_field = f.req("listen")?;
    let listen_items = listen_field.one_or_list()?;
    if listen_items.is_empty() {
        return Err(listen_field.err("at least one listen address is required"));
    }
    let mut listeners = Vec::new();
    for (i, item) in listen_items.into_iter().enumerate() {
        let listener_name = if i == 0 {
            name.clone()
        } else {
            format!("{name}-{}", i + 1)
        };
        let listener = ListenerConfig::plain(listener_name, super::socket_addr(&item)?, false);
        listeners.push((listener, item));
    }
    let cluster = cluster_body(&f, name)?;
    let session = f
        .opt("session_persistence")
        .map(|s| session(&s))
        .transpose()?;
    f.finish()?;
    Ok(Service {
        listeners,
        cluster,
        session,
        name_field,
    })
}
