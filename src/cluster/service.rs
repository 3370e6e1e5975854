//! Discovery rounds (when a cluster has `discovery`) and health probes, each at its own
//! interval, one task per cluster in one background service for all of them (a service of
//! Pingora's gets a runtime and threads of its own: a thousand clusters made a thousand
//! threads). The service says "ready" once every cluster with discovery has had its first
//! round and probes, so that listeners (which depend on it) take no request before their
//! backends are known and probed; a failed first discovery round still counts (no backends:
//! 503 until a round succeeds). The probes of clusters without discovery start at a point of
//! their interval set by the cluster's name, so that many clusters do not probe at once.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use pingora_core::services::ServiceReadyNotifier;
use pingora_error::Result;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::discovery::Discovery;
use super::health::Prober;
use super::Cluster;
use crate::config::HealthCheckKind;
use crate::metrics::Metrics;

/// Discovery and health probes of one cluster.
pub struct ClusterService {
    cluster: Arc<Cluster>,
    discovery: Option<Discovery>,
    prober: Prober,
}

impl ClusterService {
    pub(super) fn new(
        cluster: Arc<Cluster>,
        metrics: &Metrics,
        own: &[std::net::SocketAddr],
    ) -> Result<ClusterService> {
        let discovery = match &cluster.config.discovery {
            Some(config) => Some(Discovery::new(&cluster.config.name, config, metrics, own)?),
            None => None,
        };
        Ok(ClusterService {
            prober: Prober::new(&cluster.config.health_check),
            discovery,
            cluster,
        })
    }
}

impl ClusterService {
    /// Runs the cluster's rounds and probes until shutdown; `ready` is told once the backends
    /// are known (at once without discovery).
    async fn run(&self, mut shutdown: ShutdownWatch, ready: oneshot::Sender<()>) {
        let probes = (self.cluster.config.health_check.kind != HealthCheckKind::None)
            .then_some(self.cluster.config.health_check.interval);
        let rounds = self.discovery.as_ref().map(Discovery::interval);
        // Configured backends are healthy until a probe says otherwise (as Pingora starts
        // them): no need to wait. Discovered ones are found, then probed, before traffic.
        let mut ready = Some(ready);
        if self.discovery.is_none() {
            if let Some(ready) = ready.take() {
                let _ = ready.send(());
            }
        }
        let now = Instant::now();
        let next_probe = match (&self.discovery, probes) {
            (None, Some(every)) => now + phase(&self.cluster.config.name, every),
            _ => now,
        };
        let (mut next_round, mut next_probe) = (now, next_probe);
        loop {
            let now = Instant::now();
            if let (Some(discovery), Some(every)) = (&self.discovery, rounds) {
                if now >= next_round {
                    discovery.round(&self.cluster).await;
                    next_round = Instant::now() + every;
                    // New backends are probed at once rather than an interval later.
                    next_probe = Instant::now();
                }
            }
            if let Some(every) = probes {
                if Instant::now() >= next_probe {
                    self.prober.probe_all(&self.cluster).await;
                    next_probe = Instant::now() + every;
                }
            }
            if let Some(ready) = ready.take() {
                let _ = ready.send(());
            }
            let wake = [rounds.map(|_| next_round), probes.map(|_| next_probe)]
                .into_iter()
                .flatten()
                .min();
            let Some(wake) = wake else {
                // Nothing to do again: wait for the end.
                let _ = shutdown.changed().await;
                return;
            };
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }
}

/// Where in `every` a cluster's probes start: a fraction fixed by its name, the same in every
/// process and reload.
fn phase(name: &str, every: Duration) -> Duration {
    // FNV-1a: stable across builds, unlike the standard library's hasher.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    every.mul_f64((hash % 1024) as f64 / 1024.0)
}

/// Every cluster's discovery and probes, as one background service.
pub struct ClustersService {
    clusters: Vec<Arc<ClusterService>>,
}

impl ClustersService {
    /// The service of `clusters`.
    pub fn new(clusters: Vec<ClusterService>) -> ClustersService {
        ClustersService {
            clusters: clusters.into_iter().map(Arc::new).collect(),
        }
    }
}

#[async_trait]
impl BackgroundService for ClustersService {
    async fn start_with_ready_notifier(
        &self,
        shutdown: ShutdownWatch,
        ready: ServiceReadyNotifier,
    ) {
        let mut waiting = Vec::with_capacity(self.clusters.len());
        let tasks: Vec<_> = self
            .clusters
            .iter()
            .map(|cluster| {
                let (tx, rx) = oneshot::channel();
                waiting.push(rx);
                let (cluster, shutdown) = (cluster.clone(), shutdown.clone());
                tokio::spawn(async move { cluster.run(shutdown, tx).await })
            })
            .collect();
        // A cluster's task that ended early has nothing more to wait for either.
        futures::future::join_all(waiting).await;
        ready.notify_ready();
        futures::future::join_all(tasks).await;
    }
}

/// How long a discovery round may take before it counts as failed.
pub const ROUND_TIMEOUT: Duration = Duration::from_secs(2);
