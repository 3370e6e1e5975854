//! Health probes of a cluster's backends, run by Pingora's load-balancing background service;
//! each flip sets the backend's health flag, which the cluster's snapshots read per request (a
//! load instead of Pingora's lookup: an `ArcSwap` load and two hashes of the backend).

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::services::background::{background_service, GenBackgroundService};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::RequestHeader;
use pingora_load_balancing::health_check::{HealthCheck, HttpHealthCheck, TcpHealthCheck};
use pingora_load_balancing::selection::RoundRobin;
use pingora_load_balancing::{discovery, Backend, Backends, LoadBalancer};

use crate::config::{ClusterConfig, HealthCheckKind};

/// The background task that runs the health checks of one cluster.
pub type HealthService = GenBackgroundService<LoadBalancer<RoundRobin>>;

/// The background service probing `config`'s backends, setting the flags in `health` (one per
/// backend address); HTTP probes reach each backend as requests do (`peers`: TLS, HTTP version).
pub(super) fn service(
    config: &ClusterConfig,
    health: HashMap<SocketAddr, Arc<AtomicBool>>,
    peers: &HashMap<SocketAddr, HttpPeer>,
) -> Result<HealthService> {
    let set: BTreeSet<Backend> = config
        .backends
        .iter()
        .map(|b| Backend::new_with_weight(&b.socket_addr.to_string(), b.weight))
        .collect::<Result<_>>()?;
    let mut lb =
        LoadBalancer::<RoundRobin>::from_backends(Backends::new(discovery::Static::new(set)));
    // Static membership: one discovery pass; probes repeat at the configured interval.
    lb.update_frequency = None;
    lb.parallel_health_check = true;
    match &config.health_check.kind {
        HealthCheckKind::None => lb.health_check_frequency = None,
        _ => {
            lb.set_health_check(Box::new(Probe::new(config, health, peers)?));
            lb.health_check_frequency = Some(config.health_check.interval);
        }
    }
    Ok(background_service(&format!("health {}", config.name), lb))
}

/// The health check of one cluster: Pingora's TCP or HTTP check, with per-backend `Host`
/// headers and log lines that name the cluster and backend id.
struct Probe {
    kind: ProbeKind,
    summaries: HashMap<SocketAddr, String>,
    /// The health flag of each backend address, which the cluster's snapshots read.
    health: HashMap<SocketAddr, Arc<AtomicBool>>,
    healthy_threshold: usize,
    unhealthy_threshold: usize,
}

enum ProbeKind {
    Tcp(Box<TcpHealthCheck>),
    /// One check per backend address, since the default `Host` is the backend's own address.
    Http(HashMap<SocketAddr, HttpHealthCheck>),
}

impl Probe {
    fn new(
        config: &ClusterConfig,
        health: HashMap<SocketAddr, Arc<AtomicBool>>,
        peers: &HashMap<SocketAddr, HttpPeer>,
    ) -> Result<Probe> {
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
                    if let Some(peer) = peers.get(&b.socket_addr) {
                        check.peer_template = peer.clone();
                    }
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
                    "cluster {} backend {} ({})",
                    config.name, b.id, b.socket_addr
                );
                (b.socket_addr, summary)
            })
            .collect();
        Ok(Probe {
            kind,
            summaries,
            health,
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
        if let Some(flag) = target.addr.as_inet().and_then(|a| self.health.get(a)) {
            flag.store(healthy, Ordering::Relaxed);
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
