//! A cluster: its backends as an immutable snapshot swapped whole ([`BackendSet`] in an
//! `ArcSwap`), each backend keyed by its stable id, with health that belongs to the id and so
//! outlives snapshots; weighted round robin over a snapshot for new sessions.
//!
//! Pingora's `LoadBalancer` runs the health probes only ([`health`]); selection is ours
//! ([`select`]): Pingora's weighted selection falls back to pseudo-random picks when its first
//! choice is not ready, which distorts weights, and it knows nothing of draining.

mod health;
mod select;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};
use prometheus::IntCounter;

use crate::config::{BackendConfig, BackendState, ClusterConfig, UpstreamProtocol};
use crate::metrics::Metrics;
use crate::tls::{upstream_roots, UpstreamRoots};
use crate::token::{BackendTag, KeyRing};

pub use health::HealthService;
pub(crate) use select::{first_eligible, smooth_schedule};

/// One backend of a cluster, as one snapshot has it.
#[derive(Debug)]
pub struct Backend {
    /// Stable id, unique in the cluster: what tokens pin to.
    pub id: String,
    /// The address as written.
    pub address: String,
    /// The resolved address.
    pub socket_addr: SocketAddr,
    /// Weight among the cluster's backends.
    pub weight: usize,
    /// Whether it takes new sessions, or any request.
    pub state: BackendState,
    /// Its position in the cluster, stable for its life: the row of its request counters.
    pub slot: usize,
    /// Address and upstream timeouts.
    peer: HttpPeer,
    /// Health as the probes last reported it; shared by every snapshot that has this id.
    health: Arc<AtomicBool>,
    /// Its token tag under each ring key (cluster and id, keyed).
    tags: Vec<BackendTag>,
    /// `tether_backend_sessions_routed_total{cluster,backend}`.
    pub sessions_routed: IntCounter,
}

impl Backend {
    /// Whether the probes find it healthy.
    pub fn is_healthy(&self) -> bool {
        self.health.load(Ordering::Relaxed)
    }

    /// Whether a valid session token may be honoured on it: healthy and not disabled.
    pub fn serves_sessions(&self) -> bool {
        self.state != BackendState::Disabled && self.is_healthy()
    }

    /// Its tag under ring key `key_index` (0: the signing key).
    pub fn tag(&self, key_index: usize) -> &BackendTag {
        &self.tags[key_index]
    }

    /// A peer for it (address and the cluster's timeouts).
    pub fn peer(&self) -> HttpPeer {
        self.peer.clone()
    }
}

/// The backends of a cluster at one moment.
#[derive(Debug)]
pub struct BackendSet {
    /// In config order.
    pub backends: Vec<Arc<Backend>>,
    /// Indexes of `active` backends, each repeated by weight, smoothly interleaved.
    schedule: Vec<usize>,
    /// Per ring key: backend tag to index.
    by_tag: Vec<TagMap>,
}

/// A cluster of backends.
pub struct Cluster {
    /// Its config.
    pub config: ClusterConfig,
    set: ArcSwap<BackendSet>,
    cursor: AtomicUsize,
}

impl Cluster {
    /// Builds a cluster and the background service that keeps its backends' health (to add
    /// to the server, or health is never probed).
    pub fn build(
        config: &ClusterConfig,
        ring: &KeyRing,
        metrics: &Metrics,
    ) -> Result<(Arc<Cluster>, HealthService)> {
        let roots = match config.tls.as_ref().and_then(|t| t.ca_file.as_ref()) {
            Some(path) => Some(
                upstream_roots(path).map_err(|e| Error::explain(ErrorType::InternalError, e))?,
            ),
            None => None,
        };
        let mut health_of = HashMap::new();
        let mut peers = HashMap::new();
        let backends: Vec<Arc<Backend>> = config
            .backends
            .iter()
            .enumerate()
            .map(|(slot, b)| {
                // Healthy until a probe says otherwise, as Pingora starts each backend.
                let health = Arc::new(AtomicBool::new(true));
                health_of.insert(b.socket_addr, health.clone());
                let peer = peer_template(config, b, roots.as_ref());
                peers.insert(b.socket_addr, peer.clone());
                Arc::new(Backend {
                    id: b.id.clone(),
                    address: b.address.clone(),
                    socket_addr: b.socket_addr,
                    weight: b.weight,
                    state: b.state,
                    slot,
                    peer,
                    health,
                    tags: ring.backend_tags(&config.name, &b.id),
                    sessions_routed: metrics.backend_sessions_routed(&config.name, &b.id),
                })
            })
            .collect();
        let service = health::service(config, health_of, &peers)?;
        let cluster = Cluster {
            config: config.clone(),
            set: ArcSwap::from_pointee(BackendSet::new(backends, ring.len())),
            cursor: AtomicUsize::new(0),
        };
        Ok((Arc::new(cluster), service))
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
                    .map(|(i, b)| (u64::from_le_bytes(b.tags[k]), i))
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

/// Concurrent requests on one HTTP/2 connection to a backend.
const H2_STREAMS_PER_CONNECTION: usize = 100;

/// The host part of `host:port` (an IPv6 literal without its brackets): the default TLS name.
fn host_of(address: &str) -> String {
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
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

/// How the backends of a cluster are reached: address, TLS (name, verification, roots), HTTP
/// version and timeouts.
fn peer_template(
    config: &ClusterConfig,
    backend: &BackendConfig,
    roots: Option<&Arc<UpstreamRoots>>,
) -> HttpPeer {
    let tls = config.tls.as_ref();
    let sni = tls.map_or_else(String::new, |t| {
        t.sni.clone().unwrap_or_else(|| host_of(&backend.address))
    });
    let mut peer = HttpPeer::new(backend.socket_addr, tls.is_some(), sni);
    if let Some(tls) = tls {
        peer.options.verify_cert = tls.verify;
        peer.options.verify_hostname = tls.verify;
        peer.options.ca = roots.cloned();
    }
    match config.protocol {
        UpstreamProtocol::Http1 => peer.options.set_http_version(1, 1),
        UpstreamProtocol::H2 | UpstreamProtocol::H2c => {
            peer.options.set_http_version(2, 2);
            // Requests share connections as streams (Pingora's default is one per connection).
            peer.options.max_h2_streams = H2_STREAMS_PER_CONNECTION;
        }
    }
    let t = &config.timeouts;
    peer.options.connection_timeout = Some(t.connect);
    peer.options.total_connection_timeout = Some(t.connect);
    peer.options.read_timeout = Some(t.read);
    peer.options.write_timeout = Some(t.write);
    peer
}
