//! Health probes of a cluster's backends: TCP connects and HTTP requests through Pingora's
//! connectors, on whatever the current snapshot holds (backends come and go with discovery),
//! with the thresholds counted here, per backend identity; a flip sets the member's health
//! flag, which requests read.
//!
//! One connector serves every probe of the process: each of Pingora's own checks makes a
//! connector, which under rustls loads the system's root certificates (milliseconds and
//! ~100 KB each), too much for 10,000 backends. At most [`CONCURRENT`] probes of a cluster run
//! at once.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};

use futures::StreamExt;
use pingora_core::connectors::http::Connector as HttpConnector;
use pingora_core::connectors::TransportConnector;
use pingora_core::upstreams::peer::{BasicPeer, HttpPeer};
use pingora_error::{Error, ErrorType, Result};
use pingora_http::RequestHeader;

use super::{Backend, Cluster};
use crate::config::{HealthCheckConfig, HealthCheckKind};

/// The probes of one cluster, one check per backend identity (by slot).
pub(super) struct Prober {
    config: HealthCheckConfig,
    checks: Mutex<HashMap<usize, Arc<Check>>>,
}

/// The check of one backend and its run of results.
struct Check {
    probe: Probe,
    /// Consecutive results of the same kind: (healthy, count).
    run: Mutex<(bool, usize)>,
}

/// What one probe does.
enum Probe {
    /// A TCP connect within the timeout.
    Tcp(Box<BasicPeer>),
    /// A GET as requests reach the backend (TLS, HTTP version), answered with an expected
    /// status within the timeout.
    Http(Box<HttpProbe>),
}

/// The request of an HTTP probe and what must answer it.
struct HttpProbe {
    peer: HttpPeer,
    req: RequestHeader,
    expect_status: Vec<u16>,
}

/// Probes of one cluster in flight at once.
const CONCURRENT: usize = 64;

/// The connectors every probe uses, made once.
fn connectors() -> &'static (TransportConnector, HttpConnector) {
    static SHARED: OnceLock<(TransportConnector, HttpConnector)> = OnceLock::new();
    SHARED.get_or_init(|| (TransportConnector::new(None), HttpConnector::new(None)))
}

impl Prober {
    pub fn new(config: &HealthCheckConfig) -> Prober {
        Prober {
            config: config.clone(),
            checks: Mutex::new(HashMap::new()),
        }
    }

    /// Probes every backend of the cluster's current snapshot ([`CONCURRENT`] at a time) and
    /// records the results.
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
        // Owned futures: a stream over borrowing closures trips the `Send` proof of the
        // service's future.
        let probes: Vec<_> = checks
            .iter()
            .map(|(_, check)| {
                let check = check.clone();
                async move { check.probe.run().await }
            })
            .collect();
        let results: Vec<Result<()>> = futures::stream::iter(probes)
            .buffered(CONCURRENT)
            .map(|result| {
                // Pingora's connect errors carry the whole peer in their context: keep the
                // type and the root cause.
                result.map_err(|e| {
                    let cause = e.root_cause().to_string();
                    Error::explain(e.etype().clone(), cause)
                })
            })
            .collect()
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
    /// the default `Host` is the backend's own address).
    fn check_for(&self, backend: &Backend) -> Result<Check> {
        let hc = &self.config;
        let probe = match &hc.kind {
            HealthCheckKind::Http {
                path,
                host,
                expect_status,
            } => {
                let host = host.as_deref().unwrap_or(&backend.address);
                let mut req = RequestHeader::build("GET", path.as_bytes(), None)?;
                req.append_header("Host", host)?;
                req.append_header("User-Agent", "tether-health-check")?;
                let mut peer = backend.peer();
                let options = &mut peer.options;
                options.connection_timeout = Some(hc.timeout);
                options.total_connection_timeout = Some(hc.timeout);
                options.read_timeout = Some(hc.timeout);
                options.write_timeout = Some(hc.timeout);
                Probe::Http(Box::new(HttpProbe {
                    peer,
                    req,
                    expect_status: expect_status.clone(),
                }))
            }
            _ => {
                let mut peer = BasicPeer::new(&backend.socket_addr.to_string());
                peer.options.connection_timeout = Some(hc.timeout);
                peer.options.total_connection_timeout = Some(hc.timeout);
                Probe::Tcp(Box::new(peer))
            }
        };
        Ok(Check {
            probe,
            run: Mutex::new((true, 0)),
        })
    }
}

impl Probe {
    async fn run(&self) -> Result<()> {
        let (tcp, http) = connectors();
        match self {
            Probe::Tcp(peer) => tcp.get_stream(&**peer).await.map(drop),
            Probe::Http(probe) => {
                let HttpProbe {
                    peer,
                    req,
                    expect_status,
                } = &**probe;
                let (mut session, _) = http.get_http_session(peer).await?;
                session.set_write_timeout(peer.options.write_timeout);
                session.write_request_header(Box::new(req.clone())).await?;
                session.finish_request_body().await?;
                session.set_read_timeout(peer.options.read_timeout);
                session.read_response_header().await?;
                let code = session.response_header().map_or(0, |r| r.status.as_u16());
                if !expect_status.contains(&code) {
                    return Error::e_explain(
                        ErrorType::CustomCode("unexpected status", code),
                        "during http health check",
                    );
                }
                // The answer read whole, so the connection closes cleanly.
                while session.read_response_body().await?.is_some() {}
                Ok(())
            }
        }
    }
}
