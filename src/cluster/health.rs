//! Health probes of a cluster's backends: Pingora's TCP and HTTP checks run on whatever the
//! current snapshot holds (backends come and go with discovery), with the thresholds counted
//! here, per backend identity; a flip sets the member's health flag, which requests read.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use pingora_error::{Error, ErrorType, Result};
use pingora_http::RequestHeader;
use pingora_load_balancing::health_check::{HealthCheck, HttpHealthCheck, TcpHealthCheck};

use super::{Backend, Cluster};
use crate::config::{HealthCheckConfig, HealthCheckKind};

/// The probes of one cluster, one check per backend identity (by slot).
pub(super) struct Prober {
    config: HealthCheckConfig,
    checks: Mutex<HashMap<usize, Arc<Check>>>,
    /// The TCP probe, shared: each of Pingora's checks makes a connector of its own, which
    /// under rustls loads the system's root certificates (milliseconds each).
    tcp: Arc<TcpHealthCheck>,
}

/// The check of one backend and its run of results.
struct Check {
    probe: Arc<dyn HealthCheck + Send + Sync>,
    target: pingora_load_balancing::Backend,
    /// Consecutive results of the same kind: (healthy, count).
    run: Mutex<(bool, usize)>,
}

impl Prober {
    pub fn new(config: &HealthCheckConfig) -> Prober {
        let mut tcp = TcpHealthCheck::new();
        tcp.peer_template.options.connection_timeout = Some(config.timeout);
        tcp.peer_template.options.total_connection_timeout = Some(config.timeout);
        Prober {
            config: config.clone(),
            checks: Mutex::new(HashMap::new()),
            tcp: Arc::from(tcp),
        }
    }

    /// Probes every backend of the cluster's current snapshot at once, and records the results.
    pub async fn probe_all(&self, cluster: &Cluster) {
        if self.config.kind == HealthCheckKind::None {
            return;
        }
        let set = cluster.backends();
        let mut checks = Vec::with_capacity(set.backends.len());
        {
            let mut known = self.checks.lock().unwrap_or_else(|e| e.into_inner());
            known.retain(|slot, _| set.backends.iter().any(|b| b.slot() == *slot));
            for b in &set.backends {
                let check = match known.get(&b.slot()) {
                    Some(check) => check.clone(),
                    None => match self.check_for(b) {
                        Ok(check) => {
                            let check = Arc::new(check);
                            known.insert(b.slot(), check.clone());
                            check
                        }
                        Err(e) => {
                            log::error!(
                                "cluster {} backend {}: cannot make its health check: {e}",
                                cluster.config.name,
                                b.id
                            );
                            continue;
                        }
                    },
                };
                checks.push((b.clone(), check));
            }
        }
        let results = futures::future::join_all(checks.iter().map(|(_, check)| async {
            // Pingora's connect errors carry the whole peer in their context: keep the type
            // and the root cause.
            check.probe.check(&check.target).await.map_err(|e| {
                let cause = e.root_cause().to_string();
                Error::explain(e.etype().clone(), cause)
            })
        }))
        .await;
        for ((backend, check), result) in checks.iter().zip(results) {
            self.record(cluster, backend, check, result);
        }
    }

    /// Counts a result; enough in a row flips the backend's health.
    fn record(&self, cluster: &Cluster, backend: &Backend, check: &Check, result: Result<()>) {
        let healthy = result.is_ok();
        let mut run = check.run.lock().unwrap_or_else(|e| e.into_inner());
        *run = if run.0 == healthy {
            (healthy, run.1 + 1)
        } else {
            (healthy, 1)
        };
        let threshold = if healthy {
            self.config.healthy_threshold
        } else {
            self.config.unhealthy_threshold
        };
        let flag = &backend.member.health;
        if run.1 < threshold || flag.load(Ordering::Relaxed) == healthy {
            return;
        }
        flag.store(healthy, Ordering::Relaxed);
        let who = format!(
            "cluster {} backend {} ({})",
            cluster.config.name, backend.id, backend.socket_addr
        );
        match result {
            Ok(()) => log::info!("{who} becomes healthy"),
            Err(e) => log::warn!("{who} becomes unhealthy, {e}"),
        }
    }

    /// The check of one backend: TCP, or HTTP reaching it as requests do (TLS, HTTP version;
    /// one check each, since the default `Host` is the backend's own address).
    fn check_for(&self, backend: &Backend) -> Result<Check> {
        let hc = &self.config;
        let target = pingora_load_balancing::Backend::new(&backend.socket_addr.to_string())?;
        let probe: Arc<dyn HealthCheck + Send + Sync> = match &hc.kind {
            HealthCheckKind::Http {
                path,
                host,
                expect_status,
            } => {
                let host = host.as_deref().unwrap_or(&backend.address);
                let mut check = HttpHealthCheck::new(host, false);
                check.peer_template = backend.peer();
                let mut req = RequestHeader::build("GET", path.as_bytes(), None)?;
                req.append_header("Host", host)?;
                req.append_header("User-Agent", "tether-health-check")?;
                check.req = req;
                let options = &mut check.peer_template.options;
                options.connection_timeout = Some(hc.timeout);
                options.total_connection_timeout = Some(hc.timeout);
                options.read_timeout = Some(hc.timeout);
                options.write_timeout = Some(hc.timeout);
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
                Arc::new(check)
            }
            _ => self.tcp.clone(),
        };
        Ok(Check {
            probe,
            target,
            run: Mutex::new((true, 0)),
        })
    }
}
