//! Routes at run time: which route takes a request ([`Router`], per listener) and, for a route,
//! which backend of its clusters serves a session or a new one ([`Route`]).

pub mod host;
mod router;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub use router::Router;

use crate::cluster::{first_eligible, smooth_schedule, Backend, Cluster};
use crate::config::RouteConfig;
use crate::metrics::{RequestCounters, SessionCounters};
use crate::session::Sessions;
use crate::token::Session;

/// A backend of one of a route's clusters.
#[derive(Debug, Clone)]
pub struct Chosen {
    /// The cluster's position among the route's clusters.
    pub cluster: usize,
    /// The backend.
    pub backend: Arc<Backend>,
}

impl Chosen {
    /// Whether this is backend `slot` of the route's cluster `cluster`.
    pub fn is(&self, cluster: usize, slot: usize) -> bool {
        self.cluster == cluster && self.backend.slot() == slot
    }
}

/// A route with its clusters, session policy and counters.
pub struct Route {
    /// Its config.
    pub config: RouteConfig,
    clusters: Vec<Arc<Cluster>>,
    /// Cluster positions, each repeated by its weight, smoothly interleaved.
    schedule: Vec<usize>,
    cursor: AtomicUsize,
    /// Its session persistence, if any.
    pub sessions: Option<Sessions>,
    /// Its session counters.
    pub counters: SessionCounters,
    /// Its request counters.
    pub requests: RequestCounters,
    /// Every cluster of it sends header names as HTTP/2 would: the case map can go at once.
    pub drop_header_case: bool,
}

impl Route {
    /// A route over `clusters` (all of the config's, indexed as the config indexes them).
    pub fn new(
        config: &RouteConfig,
        clusters: &[Arc<Cluster>],
        sessions: Option<Sessions>,
        counters: SessionCounters,
        requests: RequestCounters,
    ) -> Route {
        let own: Vec<Arc<Cluster>> = config
            .backends
            .iter()
            .map(|w| clusters[w.cluster].clone())
            .collect();
        let weights: Vec<(usize, usize)> = config
            .backends
            .iter()
            .enumerate()
            .map(|(pos, w)| (pos, w.weight as usize))
            .collect();
        Route {
            config: config.clone(),
            drop_header_case: own.iter().all(|c| !c.config.preserve_header_case),
            clusters: own,
            schedule: smooth_schedule(&weights),
            cursor: AtomicUsize::new(0),
            sessions,
            counters,
            requests,
        }
    }

    /// The route's cluster at position `pos`.
    pub fn cluster(&self, pos: usize) -> &Cluster {
        &self.clusters[pos]
    }

    /// Its clusters, in the order of its `backends`.
    pub fn clusters(&self) -> &[Arc<Cluster>] {
        &self.clusters
    }

    /// The backend a valid token of this route names, if one of its clusters has it now
    /// (whatever the cluster's weight, 0 included).
    pub fn find(&self, session: &Session) -> Option<Chosen> {
        self.clusters.iter().enumerate().find_map(|(pos, c)| {
            c.find(session.key_index, &session.backend)
                .map(|backend| Chosen {
                    cluster: pos,
                    backend,
                })
        })
    }

    /// A backend for a new session: a cluster by the route's weights, then a backend of it by
    /// the cluster's (healthy, `active`, not refused this request: `skip`). A cluster without
    /// such a backend passes its turn to the next.
    pub fn pick(&self, skip: &dyn Fn(usize, &Backend) -> bool) -> Option<Chosen> {
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        let mut found = None;
        first_eligible(&self.schedule, start, |pos| {
            found = self.clusters[pos]
                .pick(&|b| skip(pos, b))
                .map(|backend| Chosen {
                    cluster: pos,
                    backend,
                });
            found.is_some()
        });
        found
    }

    /// Whether [`Route::pick`] would find a backend, without moving any rotation.
    pub fn any_available(&self, skip: &dyn Fn(usize, &Backend) -> bool) -> bool {
        self.config
            .backends
            .iter()
            .enumerate()
            .filter(|(_, w)| w.weight > 0)
            .any(|(pos, _)| self.clusters[pos].any_available(&|b| skip(pos, b)))
    }
}
