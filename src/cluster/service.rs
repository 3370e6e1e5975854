//! The background service of one cluster: discovery rounds (when the cluster has
//! `discovery`) and health probes, each at its own interval. With discovery it says "ready"
//! after the first round of each, so that listeners (which depend on it) take no request
//! before the backends are known and probed; a failed first discovery round still makes it
//! ready (with no backends: 503 until a round succeeds).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use pingora_core::services::ServiceReadyNotifier;
use pingora_error::Result;
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

    /// The service's name in Pingora's logs.
    pub fn name(&self) -> String {
        format!("cluster {}", self.cluster.config.name)
    }
}

#[async_trait]
impl BackgroundService for ClusterService {
    async fn start_with_ready_notifier(
        &self,
        mut shutdown: ShutdownWatch,
        ready: ServiceReadyNotifier,
    ) {
        let probes = (self.cluster.config.health_check.kind != HealthCheckKind::None)
            .then_some(self.cluster.config.health_check.interval);
        let rounds = self.discovery.as_ref().map(Discovery::interval);
        // Configured backends are healthy until a probe says otherwise (as Pingora starts
        // them): no need to wait. Discovered ones are found, then probed, before traffic.
        let mut ready = Some(ready);
        if self.discovery.is_none() {
            if let Some(ready) = ready.take() {
                ready.notify_ready();
            }
        }
        let now = Instant::now();
        let (mut next_round, mut next_probe) = (now, now);
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
                ready.notify_ready();
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

/// How long a discovery round may take before it counts as failed.
pub const ROUND_TIMEOUT: Duration = Duration::from_secs(2);
