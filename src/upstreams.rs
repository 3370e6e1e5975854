//! A service's backends: their health (probed by Pingora's load-balancing background service)
//! and the weighted round robin that picks a backend for a new session.
//!
//! Pingora's `LoadBalancer` is used for discovery and health only. Selection is ours: Pingora's
//! weighted selection falls back to pseudo-random picks when the first choice is not ready, which
//! distorts weights, and it knows nothing of draining. Ours walks a precomputed smooth weighted
//! schedule of the `active` backends from a shared cursor and takes the first eligible one.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::services::background::{background_service, GenBackgroundService};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::RequestHeader;
use pingora_load_balancing::health_check::{HealthCheck, HttpHealthCheck, TcpHealthCheck};
use pingora_load_balancing::selection::RoundRobin;
use pingora_load_balancing::{discovery, Backend, Backends, LoadBalancer};

use crate::config::{BackendConfig, BackendState, HealthCheckKind, ServiceConfig};

/// The background task that runs discovery and health checks for one service.
pub type HealthService = GenBackgroundService<LoadBalancer<RoundRobin>>;

/// A service's backends with their live health.
pub struct Upstreams {
    /// The service's config.
    pub config: ServiceConfig,
    /// Peer templates (address and timeouts), in config order.
    peers: Vec<HttpPeer>,
    /// Each backend's health as the probes last reported it, in config order: a load per
    /// request instead of Pingora's lookup (an `ArcSwap` load and two hashes of the backend).
    health: Arc<[AtomicBool]>,
    /// Indexes of active backends, each repeated by weight, smoothly interleaved.
    schedule: Vec<usize>,
    cursor: AtomicUsize,
}

impl Upstreams {
    /// Builds the upstreams of a service and the background service that keeps their health.
    /// The returned service must be added to the server, or health is never probed.
    pub fn build(config: &ServiceConfig) -> Result<(Arc<Upstreams>, HealthService)> {
        let set: BTreeSet<Backend> = config
            .backends
            .iter()
            .map(|b| Backend::new_with_weight(&b.socket_addr.to_string(), b.weight))
            .collect::<Result<_>>()?;
        let mut lb =
            LoadBalancer::<RoundRobin>::from_backends(Backends::new(discovery::Static::new(set)));
        // Healthy until a probe says otherwise, as Pingora starts each backend.
        let health: Arc<[AtomicBool]> = config
            .backends
            .iter()
            .map(|_| AtomicBool::new(true))
            .collect();
        // Static membership: one discovery pass; probes repeat at the configured interval.
        lb.update_frequency = None;
        lb.parallel_health_check = true;
        match &config.health_check.kind {
            HealthCheckKind::None => lb.health_check_frequency = None,
            _ => {
                lb.set_health_check(Box::new(Probe::new(config, health.clone())?));
                lb.health_check_frequency = Some(config.health_check.interval);
            }
        }
        let service = background_service(&format!("health {}", config.name), lb);
        let peers = config
            .backends
            .iter()
            .map(|b| peer_template(config, b))
            .collect();
        let upstreams = Upstreams {
            config: config.clone(),
            peers,
            health,
            schedule: smooth_schedule(&config.backends),
            cursor: AtomicUsize::new(0),
        };
        Ok((Arc::new(upstreams), service))
    }

    /// Number of configured backends.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// True when the service has no backends (config forbids it; here for completeness).
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// The config of backend `idx`.
    pub fn backend(&self, idx: usize) -> &BackendConfig {
        &self.config.backends[idx]
    }

    /// Whether backend `idx` passes its health check.
    pub fn is_healthy(&self, idx: usize) -> bool {
        self.health[idx].load(Ordering::Relaxed)
    }

    /// Picks a healthy `active` backend for a new session by weighted round robin, skipping
    /// those for which `skip` is true (backends that just refused a connection).
    pub fn pick(&self, skip: impl Fn(usize) -> bool) -> Option<usize> {
        let len = self.schedule.len();
        if len == 0 {
            return None;
        }
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        (0..len)
            .map(|i| self.schedule[(start + i) % len])
            .find(|&idx| !skip(idx) && self.is_healthy(idx))
    }

    /// Whether [`Upstreams::pick`] would find a backend, without moving the rotation.
    pub fn any_available(&self, skip: impl Fn(usize) -> bool) -> bool {
        self.schedule
            .iter()
            .any(|&idx| !skip(idx) && self.is_healthy(idx))
    }

    /// A peer for backend `idx`, with the service's timeouts.
    pub fn peer(&self, idx: usize) -> HttpPeer {
        self.peers[idx].clone()
    }
}

fn peer_template(config: &ServiceConfig, backend: &BackendConfig) -> HttpPeer {
    let mut peer = HttpPeer::new(backend.socket_addr, false, String::new());
    let t = &config.timeouts;
    peer.options.connection_timeout = Some(t.connect);
    peer.options.total_connection_timeout = Some(t.connect);
    peer.options.read_timeout = Some(t.read);
    peer.options.write_timeout = Some(t.write);
    peer
}

/// The smooth weighted round robin sequence (as nginx computes it) over active backends:
/// weights 5,1,1 give a a b a c a a rather than a a a a a b c. Weights are first divided
/// by their greatest common divisor so the schedule stays short.
fn smooth_schedule(backends: &[BackendConfig]) -> Vec<usize> {
    let active: Vec<(usize, usize)> = backends
        .iter()
        .enumerate()
        .filter(|(_, b)| b.state == BackendState::Active)
        .map(|(i, b)| (i, b.weight))
        .collect();
    let divisor = active.iter().fold(0, |g, &(_, w)| gcd(g, w)).max(1);
    let weights: Vec<i64> = active.iter().map(|&(_, w)| (w / divisor) as i64).collect();
    let total: i64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    let mut schedule = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, w) in current.iter_mut().zip(&weights) {
            *c += w;
        }
        let best = (0..current.len())
            .max_by_key(|&i| (current[i], std::cmp::Reverse(i)))
            .unwrap_or(0);
        current[best] -= total;
        schedule.push(active[best].0);
    }
    schedule
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The health check of one service: Pingora's TCP or HTTP check, with per-backend `Host`
/// headers and log lines that name the service and backend id.
struct Probe {
    kind: ProbeKind,
    summaries: HashMap<SocketAddr, String>,
    /// [`Upstreams`]' health flags, and which of them each address sets.
    health: Arc<[AtomicBool]>,
    indexes: HashMap<SocketAddr, Vec<usize>>,
    healthy_threshold: usize,
    unhealthy_threshold: usize,
}

enum ProbeKind {
    Tcp(Box<TcpHealthCheck>),
    /// One check per backend address, since the default `Host` is the backend's own address.
    Http(HashMap<SocketAddr, HttpHealthCheck>),
}

impl Probe {
    fn new(config: &ServiceConfig, health: Arc<[AtomicBool]>) -> Result<Probe> {
        let hc = &config.health_check;
        let kind = match &hc.kind {
            HealthCheckKind::Http {
                path,
                host,
                expect_status,
            } => {
                let mut checks = HashMap::new();
                for b in &config.backends {
                    let host = host.as_deref().unwrap_or(&b.address);
                    let mut check = HttpHealthCheck::new(host, false);
                    let mut req = RequestHeader::build("GET", path.as_bytes(), None)?;
                    req.append_header("Host", host)?;
                    req.append_header("User-Agent", "tether-health-check")?;
                    check.req = req;
                    check.peer_template.options.connection_timeout = Some(hc.timeout);
                    check.peer_template.options.read_timeout = Some(hc.timeout);
                    check.peer_template.options.write_timeout = Some(hc.timeout);
                    let expected = expect_status.clone();
                    check.validator = Some(Box::new(move |resp| {
                        let code = resp.status.as_u16();
                        if expected.contains(&code) {
                            Ok(())
                        } else {
                            Error::e_explain(
                                ErrorType::CustomCode("unexpected status", code),
                                "during http health check",
                            )
                        }
                    }));
                    checks.insert(b.socket_addr, check);
                }
                ProbeKind::Http(checks)
            }
            _ => {
                let mut check = TcpHealthCheck::new();
                check.peer_template.options.connection_timeout = Some(hc.timeout);
                check.peer_template.options.total_connection_timeout = Some(hc.timeout);
                ProbeKind::Tcp(check)
            }
        };
        let summaries = config
            .backends
            .iter()
            .map(|b| {
                let summary = format!(
                    "service {} backend {} ({})",
                    config.name, b.id, b.socket_addr
                );
                (b.socket_addr, summary)
            })
            .collect();
        let mut indexes: HashMap<SocketAddr, Vec<usize>> = HashMap::new();
        for (idx, b) in config.backends.iter().enumerate() {
            indexes.entry(b.socket_addr).or_default().push(idx);
        }
        Ok(Probe {
            kind,
            summaries,
            health,
            indexes,
            healthy_threshold: hc.healthy_threshold,
            unhealthy_threshold: hc.unhealthy_threshold,
        })
    }
}

#[async_trait]
impl HealthCheck for Probe {
    async fn check(&self, target: &Backend) -> Result<()> {
        let result = match &self.kind {
            ProbeKind::Tcp(check) => check.check(target).await,
            ProbeKind::Http(checks) => {
                let check = target.addr.as_inet().and_then(|addr| checks.get(addr));
                match check {
                    Some(check) => check.check(target).await,
                    None => Error::e_explain(ErrorType::InternalError, "unknown backend"),
                }
            }
        };
        // Pingora's connect errors carry the whole peer (every option) in their context, which
        // Pingora logs on each health change: keep the type and the root cause only.
        result.map_err(|e| {
            let cause = e.root_cause().to_string();
            Error::explain(e.etype().clone(), cause)
        })
    }

    /// Pingora calls this on every flip, right after recording it.
    async fn health_status_change(&self, target: &Backend, healthy: bool) {
        let indexes = target.addr.as_inet().and_then(|a| self.indexes.get(a));
        for &idx in indexes.into_iter().flatten() {
            self.health[idx].store(healthy, Ordering::Relaxed);
        }
    }

    fn backend_summary(&self, target: &Backend) -> String {
        target
            .addr
            .as_inet()
            .and_then(|a| self.summaries.get(a))
            .cloned()
            .unwrap_or_else(|| target.addr.to_string())
    }

    fn health_threshold(&self, success: bool) -> usize {
        if success {
            self.healthy_threshold
        } else {
            self.unhealthy_threshold
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(id: &str, weight: usize, state: BackendState) -> BackendConfig {
        BackendConfig {
            address: format!("127.0.0.1:{}", 1000 + weight),
            socket_addr: "127.0.0.1:1".parse().unwrap(),
            id: id.to_string(),
            weight,
            state,
        }
    }

    #[test]
    fn schedule_follows_weights_and_interleaves() {
        let b = [
            backend("a", 5, BackendState::Active),
            backend("b", 1, BackendState::Active),
            backend("c", 1, BackendState::Active),
        ];
        let s = smooth_schedule(&b);
        assert_eq!(s, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn schedule_skips_draining_and_reduces_weights() {
        let b = [
            backend("a", 70, BackendState::Active),
            backend("b", 30, BackendState::Active),
            backend("c", 50, BackendState::Draining),
        ];
        let s = smooth_schedule(&b);
        assert_eq!(s.len(), 10);
        assert_eq!(s.iter().filter(|&&i| i == 0).count(), 7);
        assert_eq!(s.iter().filter(|&&i| i == 1).count(), 3);
        assert!(!s.contains(&2));
    }

    #[test]
    fn schedule_of_only_draining_backends_is_empty() {
        let b = [backend("a", 1, BackendState::Draining)];
        assert!(smooth_schedule(&b).is_empty());
    }
}
