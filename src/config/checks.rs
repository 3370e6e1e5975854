//! The parts of a config as they are read (listeners, clusters, routes from both forms), and
//! the checks across them: unique names, no address listened on twice, no two routes that would
//! overwrite each other's sessions.

use std::net::SocketAddr;

use super::decode::{Field, Res};
use super::listener::ListenerConfig;
use super::route::{Hostname, RouteConfig};
use super::service::Service;
use super::session::SessionKind;
use super::{AdminConfig, ClusterConfig, ConfigError};

/// Where an item was written: for errors about it.
#[derive(Debug, Clone)]
struct Site {
    line: usize,
    path: String,
}

impl Site {
    fn of(field: &Field<'_>) -> Site {
        Site {
            line: field.node.line,
            path: field.path.clone(),
        }
    }

    fn err(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::at(self.line, &self.path, message)
    }
}

/// Listeners, clusters and routes read so far, each with where it was written.
#[derive(Default)]
pub(crate) struct Parts {
    pub listeners: Vec<ListenerConfig>,
    listener_sites: Vec<Site>,
    pub clusters: Vec<ClusterConfig>,
    pub routes: Vec<RouteConfig>,
    route_sites: Vec<Site>,
}

impl Parts {
    pub fn listener_index(&self, name: &str) -> Option<usize> {
        self.listeners.iter().position(|l| l.name == name)
    }

    pub fn cluster_index(&self, name: &str) -> Option<usize> {
        self.clusters.iter().position(|c| c.name == name)
    }

    pub fn add_listener(&mut self, listener: ListenerConfig, at: &Field<'_>) -> Res<()> {
        if self.listener_index(&listener.name).is_some() {
            return Err(at.err(format!("duplicate listener name `{}`", listener.name)));
        }
        self.listeners.push(listener);
        self.listener_sites.push(Site::of(at));
        Ok(())
    }

    pub fn add_cluster(&mut self, cluster: ClusterConfig, at: &Field<'_>) -> Res<()> {
        if self.cluster_index(&cluster.name).is_some() {
            return Err(at.err(format!("duplicate cluster name `{}`", cluster.name)));
        }
        self.clusters.push(cluster);
        Ok(())
    }

    pub fn add_route(&mut self, route: RouteConfig, at: &Field<'_>) -> Res<()> {
        if self.routes.iter().any(|r| r.name == route.name) {
            return Err(at.err(format!("duplicate route name `{}`", route.name)));
        }
        self.routes.push(route);
        self.route_sites.push(Site::of(at));
        Ok(())
    }

    /// A `services` entry: its listeners, its cluster and its route.
    pub fn add_service(&mut self, service: Service<'_>) -> Res<()> {
        let name = service.cluster.name.clone();
        let at = &service.name_field;
        if self.cluster_index(&name).is_some() || self.routes.iter().any(|r| r.name == name) {
            return Err(at.err(format!("duplicate service name `{name}`")));
        }
        let mut listeners = Vec::new();
        for (listener, field) in service.listeners {
            if self.listener_index(&listener.name).is_some() {
                return Err(at.err(format!(
                    "the service's listener `{}` clashes with a listener of that name",
                    listener.name
                )));
            }
            listeners.push(self.listeners.len());
            self.listeners.push(listener);
            self.listener_sites.push(Site::of(&field));
        }
        let cluster = self.clusters.len();
        self.clusters.push(service.cluster);
        self.routes.push(RouteConfig {
            name,
            listeners,
            hostnames: Vec::new(),
            matches: vec![super::RouteMatch {
                path: super::PathMatch::Prefix("/".to_string()),
                headers: Vec::new(),
                method: None,
            }],
            backends: vec![super::WeightedCluster { cluster, weight: 1 }],
            session: service.session,
        });
        self.route_sites.push(Site::of(at));
        Ok(())
    }

    /// No address is listened on twice (a wildcard and a specific address on one port clash
    /// too), the admin listener's included.
    pub fn check_listen_addresses(
        &self,
        admin: Option<&AdminConfig>,
        admin_field: Option<&Field<'_>>,
    ) -> Res<()> {
        let clash = |a: &SocketAddr, b: &SocketAddr| {
            a.port() == b.port()
                && a.is_ipv4() == b.is_ipv4()
                && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
        };
        for (i, listener) in self.listeners.iter().enumerate() {
            if let Some(first) = self.listeners[..i]
                .iter()
                .find(|l| clash(&l.address, &listener.address))
            {
                return Err(self.listener_sites[i].err(format!(
                    "listen address {} is used twice (listeners `{}` and `{}`)",
                    listener.address, first.name, listener.name
                )));
            }
        }
        if let (Some(admin), Some(field)) = (admin, admin_field) {
            if let Some(l) = self
                .listeners
                .iter()
                .find(|l| clash(&l.address, &admin.listen))
            {
                let at = field.map()?.req("listen")?;
                return Err(at.err(format!(
                    "listen address {} is used twice (by listener `{}` and the admin listener)",
                    admin.listen, l.name
                )));
            }
        }
        Ok(())
    }

    /// Two routes with session persistence whose requests can meet (a listener and a host in
    /// common), carrying their tokens under one name (cookies: with overlapping paths) would
    /// overwrite each other's sessions.
    pub fn check_session_scopes(&self) -> Res<()> {
        for (j, b) in self.routes.iter().enumerate() {
            let Some(sb) = &b.session else { continue };
            for a in &self.routes[..j] {
                let Some(sa) = &a.session else { continue };
                let same_carrier = sa.kind == sb.kind
                    && match sa.kind {
                        SessionKind::Cookie => {
                            sa.name == sb.name && paths_overlap(&sa.cookie.path, &sb.cookie.path)
                        }
                        SessionKind::Header => sa.name.eq_ignore_ascii_case(&sb.name),
                    };
                let meet = a.listeners.iter().any(|l| b.listeners.contains(l))
                    && hostnames_overlap(&a.hostnames, &b.hostnames);
                if same_carrier && meet {
                    return Err(self.route_sites[j].err(format!(
                        "routes `{}` and `{}` would overwrite each other's sessions: they can \
                         take the same requests and carry their tokens in the same {} `{}`; \
                         give one another name",
                        a.name,
                        b.name,
                        if sa.kind == SessionKind::Cookie {
                            "cookie"
                        } else {
                            "header"
                        },
                        sb.name
                    )));
                }
            }
        }
        Ok(())
    }

    pub fn finish(self) -> (Vec<ListenerConfig>, Vec<ClusterConfig>, Vec<RouteConfig>) {
        // Routes in the order they are written, whichever section they come from.
        let mut routes: Vec<(usize, RouteConfig)> = self
            .route_sites
            .iter()
            .map(|s| s.line)
            .zip(self.routes)
            .collect();
        routes.sort_by_key(|(line, _)| *line);
        (
            self.listeners,
            self.clusters,
            routes.into_iter().map(|(_, r)| r).collect(),
        )
    }
}

/// Whether two hostname lists take a host in common (an empty list takes every host).
pub(crate) fn hostnames_overlap(a: &[Hostname], b: &[Hostname]) -> bool {
    if a.is_empty() || b.is_empty() {
        return true;
    }
    a.iter().any(|x| b.iter().any(|y| hostname_overlap(x, y)))
}

fn hostname_overlap(a: &Hostname, b: &Hostname) -> bool {
    match (a, b) {
        (Hostname::Exact(x), Hostname::Exact(y)) => x == y,
        (Hostname::Exact(x), w @ Hostname::Wildcard(_))
        | (w @ Hostname::Wildcard(_), Hostname::Exact(x)) => w.accepts(x),
        (Hostname::Wildcard(s), Hostname::Wildcard(t)) => {
            s == t || s.ends_with(&format!(".{t}")) || t.ends_with(&format!(".{s}"))
        }
    }
}

/// Whether a request path could match both cookie paths (RFC 6265 5.1.4 path-match).
fn paths_overlap(a: &str, b: &str) -> bool {
    let covers = |p: &str, q: &str| {
        q == p
            || q.strip_prefix(p)
                .is_some_and(|rest| p.ends_with('/') || rest.starts_with('/'))
    };
    covers(a, b) || covers(b, a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_overlap_as_requests_could_meet() {
        let e = |s: &str| Hostname::Exact(s.into());
        let w = |s: &str| Hostname::Wildcard(s.into());
        assert!(hostnames_overlap(&[], &[e("a.test")]));
        assert!(hostnames_overlap(&[e("a.test")], &[e("a.test")]));
        assert!(!hostnames_overlap(&[e("a.test")], &[e("b.test")]));
        assert!(hostnames_overlap(&[e("x.a.test")], &[w("a.test")]));
        assert!(!hostnames_overlap(&[e("a.test")], &[w("a.test")]));
        assert!(hostnames_overlap(&[w("b.a.test")], &[w("a.test")]));
        assert!(!hostnames_overlap(&[w("a.test")], &[w("b.test")]));
    }

    #[test]
    fn cookie_paths_overlap_by_path_match() {
        assert!(paths_overlap("/", "/cart"));
        assert!(paths_overlap("/cart", "/cart/x"));
        assert!(paths_overlap("/cart/", "/cart/x"));
        assert!(!paths_overlap("/cart", "/cartx"));
        assert!(!paths_overlap("/a", "/b"));
    }
}
