//! A cluster: its backends as an immutable snapshot swapped whole ([`BackendSet`] in an
//! `ArcSwap`), each backend keyed by its stable id, with health, outlier state and counters that
//! belong to the id ([`Member`]) and so outlive snapshots; weighted round robin over a snapshot
//! for new sessions. The config, discovery and the runtime API only publish new snapshots
//! ([`members`]); a request reads the current one with one atomic load.
//!
//! Selection is ours ([`select`]); the cluster's background service ([`service`]) runs
//! discovery and the health probes.

mod discovery;
mod health;
mod members;
mod outlier;
mod peer;
mod select;
mod service;
mod state_file;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};

use crate::config::{BackendState, ClusterConfig, HealthCheckKind, OutlierConfig};
use crate::metrics::{backend_request_cells, FromBackend, Metrics};
use crate::tls::{upstream_roots, UpstreamRoots};
use crate::token::{BackendTag, KeyRing};

pub use members::{Found, Member, Override, Source};
pub(crate) use select::{first_eligible, smooth_schedule};
pub use service::{ClusterService, ClustersService};
pub use state_file::StateFile;

/// One backend of a cluster, as one snapshot has it.
#[derive(Debug)]
pub struct Backend {
    /// Stable id, unique in the cluster: what tokens pin to.
    pub id: String,
    /// The address as written (`ip:port` when discovered).
    pub address: String,
    /// The address connected to.
    pub socket_addr: SocketAddr,
    /// Weight among the cluster's backends (a runtime weight included).
    pub weight: usize,
    /// Whether it takes new sessions, or any request (a runtime state included).
    pub state: BackendState,
    /// Where its state comes from.
    pub source: Source,
    /// Address, TLS and upstream timeouts.
    peer: HttpPeer,
    /// What belongs to its identity: health, outlier state, counters.
    pub member: Arc<Member>,
}

impl Backend {
    /// Its member's slot: unique in the cluster for the life of the process.
    pub fn slot(&self) -> usize {
        self.member.slot
    }

    /// Whether it may take requests: probes pass and outlier detection has not ejected it.
    pub fn is_healthy(&self) -> bool {
        self.member.is_available()
    }

    /// Whether a valid session token may be honoured on it: healthy and not disabled.
    pub fn serves_sessions(&self) -> bool {
        self.state != BackendState::Disabled && self.is_healthy()
    }

    /// Its tag under ring key `key_index` (0: the signing key).
    pub fn tag(&self, key_index: usize) -> &BackendTag {
        &self.member.tags[key_index]
    }

    /// A peer for it (address, TLS and the cluster's timeouts).
    pub fn peer(&self) -> HttpPeer {
        self.peer.clone()
    }
}

/// The backends of a cluster at one moment.
#[derive(Debug)]
pub struct BackendSet {
    /// In source order.
    pub backends: Vec<Arc<Backend>>,
    /// Indexes of `active` backends, each repeated by weight, smoothly interleaved.
    schedule: Vec<usize>,
    /// Per ring key: backend tag to index.
    by_tag: Vec<TagMap>,
}

/// What a cluster needs to make members and snapshots.
struct Makings {
    ring: Arc<KeyRing>,
    metrics: Arc<Metrics>,
    roots: Option<Arc<UpstreamRoots>>,
    /// Routes of the gateway: the rows of a member's request counters.
    /// The routes (numbers, ascending) that send requests to the cluster.
    routes: Vec<usize>,
}

/// A cluster of backends.
pub struct Cluster {
    /// Its config.
    pub config: ClusterConfig,
    set: ArcSwap<BackendSet>,
    cursor: AtomicUsize,
    registry: Mutex<members::Registry>,
    makings: Makings,
}

impl Cluster {
    /// Builds a cluster (its configured backends published, or none yet with discovery) and
    /// its background service (discovery and health probes), which must be added to the
    /// server. `routes` are the routes (numbers, ascending) that send requests to it; `own` are tether's listening
    /// addresses (never a discovered backend).
    pub fn build(
        config: &ClusterConfig,
        ring: &Arc<KeyRing>,
        metrics: &Arc<Metrics>,
        routes: Vec<usize>,
        own: &[SocketAddr],
    ) -> Result<(Arc<Cluster>, ClusterService)> {
        let roots = match config.tls.as_ref().and_then(|t| t.ca_file.as_ref()) {
            Some(path) => Some(
                upstream_roots(path).map_err(|e| Error::explain(ErrorType::InternalError, e))?,
            ),
            None => None,
        };
        let found = config
            .backends
            .iter()
            .map(|b| Found {
                id: b.id.clone(),
                address: b.address.clone(),
                socket_addr: b.socket_addr,
                weight: b.weight,
                state: b.state,
                source: Source::Config,
            })
            .collect();
        let cluster = Arc::new(Cluster {
            config: config.clone(),
            set: ArcSwap::from_pointee(BackendSet::new(Vec::new(), ring.len())),
            cursor: AtomicUsize::new(0),
            registry: Mutex::new(members::Registry::default()),
            makings: Makings {
                ring: ring.clone(),
                metrics: metrics.clone(),
                roots,
                routes,
            },
        });
        cluster.set_found(found);
        let service = ClusterService::new(cluster.clone(), metrics, own)?;
        Ok((cluster, service))
    }

    /// The current backends.
    pub fn backends(&self) -> arc_swap::Guard<Arc<BackendSet>> {
        self.set.load()
    }

    /// The backend with this token tag under ring key `key_index`, if the cluster has it now.
    pub fn find(&self, key_index: usize, tag: &BackendTag) -> Option<Arc<Backend>> {
        let set = self.set.load();
        let idx = *set.by_tag.get(key_index)?.get(&u64::from_le_bytes(*tag))?;
        Some(set.backends[idx].clone())
    }

    /// A healthy `active` backend for a new session by weighted round robin, skipping those
    /// `skip` names (they refused this request).
    pub fn pick(&self, skip: &dyn Fn(&Backend) -> bool) -> Option<Arc<Backend>> {
        let set = self.set.load();
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        select::first_eligible(&set.schedule, start, |idx| {
            let b = &set.backends[idx];
            !skip(b) && b.is_healthy()
        })
        .map(|idx| set.backends[idx].clone())
    }

    /// Whether [`Cluster::pick`] would find a backend, without moving the rotation.
    pub fn any_available(&self, skip: &dyn Fn(&Backend) -> bool) -> bool {
        let set = self.set.load();
        set.schedule.iter().any(|&idx| {
            let b = &set.backends[idx];
            !skip(b) && b.is_healthy()
        })
    }

    /// The cache and labels of `backend`'s request counters.
    pub fn counted<'a>(&'a self, backend: &'a Backend) -> FromBackend<'a> {
        FromBackend {
            cluster: &self.config.name,
            id: &backend.id,
            cells: &backend.member.requests,
        }
    }

    /// What a response (or its failure) from `backend` says of it, for outlier detection:
    /// `ok` false for a connection failure, a timeout or a 5xx.
    pub fn observe(&self, backend: &Backend, ok: bool) {
        let Some(config) = &self.config.outlier else {
            return;
        };
        let outlier = &backend.member.outlier;
        if ok {
            outlier.success();
        } else if outlier.failure() >= config.consecutive_failures {
            self.eject(backend, config);
        }
    }

    /// Ejects `backend` unless the cluster's cap is reached.
    fn eject(&self, backend: &Backend, config: &OutlierConfig) {
        let _publishing = self.lock();
        let set = self.set.load();
        let now = outlier::now_ms();
        if backend.member.outlier.is_ejected(now) {
            return;
        }
        let ejected = set
            .backends
            .iter()
            .filter(|b| b.member.outlier.is_ejected(now))
            .count();
        if ejected >= outlier::ejection_cap(config, set.backends.len()) {
            log::warn!(
                "cluster {} backend {} ({}): {} failures in a row, not ejected: {ejected} of {} \
                 backends are ejected already (max_ejected_percent {})",
                self.config.name,
                backend.id,
                backend.socket_addr,
                config.consecutive_failures,
                set.backends.len(),
                config.max_ejected_percent
            );
            return;
        }
        let length = backend.member.outlier.eject(config, now);
        log::warn!(
            "cluster {} backend {} ({}) ejected for {}s after {} failures in a row",
            self.config.name,
            backend.id,
            backend.socket_addr,
            length.as_secs_f64(),
            config.consecutive_failures
        );
    }

    /// Whether the probes set health (otherwise every backend is healthy).
    fn probed(&self) -> bool {
        self.config.health_check.kind != HealthCheckKind::None
    }

    fn lock(&self) -> MutexGuard<'_, members::Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes what the source says now (the config's list at start, a discovery answer
    /// later): the members of backends that stay are kept, new ones made, gone ones dropped.
    pub fn set_found(&self, found: Vec<Found>) {
        let mut registry = self.lock();
        registry.found = found;
        self.publish(&mut registry);
    }

    /// Sets or (`None`) drops the runtime override of backend `id`; `None` when the cluster
    /// has no such backend now. Returns the backend as published.
    pub fn set_override(
        &self,
        id: &str,
        change: Option<(Option<BackendState>, Option<usize>)>,
    ) -> Option<Arc<Backend>> {
        let mut registry = self.lock();
        let found = registry.found.iter().find(|f| f.id == id)?.clone();
        match change {
            None => {
                registry.overrides.remove(id);
            }
            Some((state, weight)) => {
                let previous = registry.overrides.get(id).copied();
                let o = Override {
                    state: state.or(previous.and_then(|p| p.state)),
                    weight: weight.or(previous.and_then(|p| p.weight)),
                    source_state: found.state,
                    source_weight: found.weight,
                };
                registry.overrides.insert(id.to_string(), o);
            }
        }
        self.publish(&mut registry);
        let published = self
            .set
            .load()
            .backends
            .iter()
            .find(|b| b.id == id)
            .cloned();
        published
    }

    /// The runtime overrides, by backend id.
    pub fn overrides(&self) -> HashMap<String, Override> {
        self.lock().overrides.clone()
    }

    /// Takes the overrides read from the state file; those of configured backends whose config
    /// values changed since are dropped (and logged).
    pub fn restore_overrides(&self, overrides: HashMap<String, Override>) {
        let mut registry = self.lock();
        registry.overrides = overrides;
        for id in registry.drop_outdated_overrides() {
            log::info!(
                "cluster {} backend {id}: the config changed since its runtime state was set; \
                 the config's state and weight hold",
                self.config.name
            );
        }
        self.publish(&mut registry);
    }

    /// Builds and stores the snapshot of `registry`.
    fn publish(&self, registry: &mut members::Registry) {
        let m = &self.makings;
        let mut backends = Vec::with_capacity(registry.found.len());
        let mut members = HashMap::with_capacity(registry.found.len());
        for found in &registry.found {
            let member = match registry.members.get(&found.id) {
                Some(member) => member.clone(),
                None => {
                    let slot = registry.next_slot;
                    registry.next_slot += 1;
                    Arc::new(Member {
                        slot,
                        // Configured backends are healthy until a probe says otherwise (as
                        // at start); discovered ones take requests once a probe passed.
                        health: (found.source == Source::Config || !self.probed()).into(),
                        outlier: Default::default(),
                        tags: m.ring.backend_tags(&self.config.name, &found.id),
                        sessions_routed: m
                            .metrics
                            .backend_sessions_routed(&self.config.name, &found.id),
                        requests: backend_request_cells(&m.routes),
                    })
                }
            };
            let (state, weight, source) = registry.effective(found);
            backends.push(Arc::new(Backend {
                id: found.id.clone(),
                address: found.address.clone(),
                socket_addr: found.socket_addr,
                weight,
                state,
                source,
                peer: peer::peer_template(
                    &self.config,
                    &found.address,
                    found.socket_addr,
                    m.roots.as_ref(),
                ),
                member: member.clone(),
            }));
            members.insert(found.id.clone(), member);
        }
        for gone in registry
            .members
            .keys()
            .filter(|id| !members.contains_key(*id))
        {
            m.metrics.forget_backend(&self.config.name, gone);
        }
        registry.members = members;
        self.set
            .store(Arc::new(BackendSet::new(backends, m.ring.len())));
    }
}

impl BackendSet {
    fn new(backends: Vec<Arc<Backend>>, keys: usize) -> BackendSet {
        let weights: Vec<(usize, usize)> = backends
            .iter()
            .enumerate()
            .filter(|(_, b)| b.state == BackendState::Active)
            .map(|(i, b)| (i, b.weight))
            .collect();
        let by_tag = (0..keys)
            .map(|k| {
                backends
                    .iter()
                    .enumerate()
                    .map(|(i, b)| (u64::from_le_bytes(*b.tag(k)), i))
                    .collect()
            })
            .collect();
        BackendSet {
            schedule: select::smooth_schedule(&weights),
            backends,
            by_tag,
        }
    }
}

/// Backend tags (as `u64`) to backend indexes. The tags are keyed hashes already, and only a
/// token that authenticated is looked up, so they need no hashing again.
type TagMap = HashMap<u64, usize, BuildHasherDefault<TagHasher>>;

/// The identity hash of a tag.
#[derive(Default)]
struct TagHasher(u64);

impl Hasher for TagHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used for a `u64` key; fold anything else all the same.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}
