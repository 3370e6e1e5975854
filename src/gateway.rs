//! The gateway a config describes, at run time: clusters (backends and their health), routes
//! (their clusters, session policies and counters) and each listener's routing table.
//!
//! ```text
//! listener ──Router──> route ──weights──> cluster ──snapshot──> backend
//! ```

use std::sync::Arc;

use pingora_error::Result;

use crate::cluster::{Cluster, ClusterService, StateFile};
use crate::config::{Config, ListenerConfig};
use crate::metrics::{Metrics, RequestCounters, NONE};
use crate::routing::{Route, Router};
use crate::session::Sessions;
use crate::token::KeyRing;

/// Everything the proxy needs to place a request.
pub struct Gateway {
    /// The listeners, as configured.
    pub listeners: Vec<ListenerConfig>,
    /// The clusters, as the config numbers them.
    pub clusters: Vec<Arc<Cluster>>,
    /// The routes, in file order (a route's number is its index).
    pub routes: Vec<Route>,
    /// The counters of requests no route took.
    pub no_route: RequestCounters,
    /// Where runtime backend states are kept, if anywhere.
    pub state_file: Option<StateFile>,
}

impl Gateway {
    /// Builds the gateway of `config` (runtime backend states restored from the state file),
    /// and the background services of its clusters (in cluster order), which must be added to
    /// the server.
    pub fn build(
        config: &Config,
        ring: &Arc<KeyRing>,
        metrics: &Arc<Metrics>,
    ) -> Result<(Arc<Gateway>, Vec<ClusterService>)> {
        let mut own: Vec<_> = config.listeners.iter().map(|l| l.address).collect();
        own.extend(config.admin.as_ref().map(|a| a.listen));
        let mut clusters = Vec::new();
        let mut services = Vec::new();
        // Per cluster, the routes that send requests to it (ascending: routes in file order).
        let mut routes_of = vec![Vec::new(); config.clusters.len()];
        for (r, route) in config.routes.iter().enumerate() {
            for wc in &route.backends {
                if routes_of[wc.cluster].last() != Some(&r) {
                    routes_of[wc.cluster].push(r);
                }
            }
        }
        for (c, routes) in config.clusters.iter().zip(routes_of) {
            let (cluster, service) = Cluster::build(c, ring, metrics, routes, &own)?;
            clusters.push(cluster);
            services.push(service);
        }
        let state_file = config
            .admin
            .as_ref()
            .and_then(|a| a.state_file.as_deref())
            .map(StateFile::new);
        if let Some(file) = &state_file {
            file.restore(&clusters);
        }
        let routes = config
            .routes
            .iter()
            .enumerate()
            .map(|(idx, r)| {
                Route::new(
                    r,
                    &clusters,
                    Sessions::new(ring, r, idx),
                    metrics.session_counters(&r.name),
                    metrics.request_counters(&r.name, Some(idx)),
                )
            })
            .collect();
        let gateway = Gateway {
            listeners: config.listeners.clone(),
            clusters,
            routes,
            no_route: metrics.request_counters(NONE, None),
            state_file,
        };
        Ok((Arc::new(gateway), services))
    }

    /// The routing table of listener `listener`.
    pub fn router(&self, listener: usize) -> Router {
        let configs: Vec<_> = self.routes.iter().map(|r| r.config.clone()).collect();
        Router::new(&configs, listener)
    }
}
