//! Prometheus metrics of SPEC section 4, in a registry of our own served by the admin listener.

use std::sync::OnceLock;

use crate::token::Reject;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Label for a response no backend produced (503 with nothing healthy; all three labels for a
/// 404 of no route).
pub const NONE: &str = "none";

/// Statuses 100..=599 each get a counter slot.
const STATUSES: usize = 500;

/// A counter per status, each created on first use.
type StatusCounters = Box<[OnceLock<IntCounter>]>;

/// Every metric tether exports.
pub struct Metrics {
    registry: Registry,
    /// `tether_requests_total{route,cluster,backend,code}`.
    pub requests: IntCounterVec,
    /// `tether_request_duration_seconds{route}`.
    pub duration: HistogramVec,
    /// `tether_session_created_total{route}`.
    pub session_created: IntCounterVec,
    /// `tether_session_routed_total{route}`.
    pub session_routed: IntCounterVec,
    /// `tether_session_failed_open_total{route}`.
    pub session_failed_open: IntCounterVec,
    /// `tether_session_failed_closed_total{route}`.
    pub session_failed_closed: IntCounterVec,
    /// `tether_session_rejected_total{route,reason}`.
    pub session_rejected: IntCounterVec,
    /// `tether_backend_sessions_routed_total{cluster,backend}`.
    pub backend_sessions_routed: IntCounterVec,
    /// `tether_backend_healthy{cluster,backend}`.
    pub backend_healthy: IntGaugeVec,
    /// `tether_backend_draining{cluster,backend}`.
    pub backend_draining: IntGaugeVec,
    /// `tether_backend_ejected{cluster,backend}`.
    pub backend_ejected: IntGaugeVec,
    /// `tether_tls_handshakes_total{listener,version}`.
    pub tls_handshakes: IntCounterVec,
    /// `tether_tls_certificate_expiry_timestamp_seconds{listener,certificate}`.
    pub tls_certificate_expiry: IntGaugeVec,
}

/// The per-request metrics of one route, resolved once so the request path skips label hashing
/// and the registry's locks: the duration histogram, and `tether_requests_total` per backend
/// and status, each created on first use.
pub struct RequestCounters {
    duration: prometheus::Histogram,
    requests: IntCounterVec,
    route: String,
    /// Per cluster of the route: its name and its backends' ids by slot.
    clusters: Vec<(String, Vec<String>)>,
    /// Per cluster, per backend slot: a counter slot per status, allocated on first use.
    by_backend: Vec<Vec<OnceLock<StatusCounters>>>,
    /// Responses without a backend, per status.
    no_backend: StatusCounters,
}

fn status_slots() -> StatusCounters {
    (0..STATUSES).map(|_| OnceLock::new()).collect()
}

impl RequestCounters {
    /// Counts one response with `status` from backend `slot` of the route's cluster `cluster`
    /// (`None`: answered without a backend).
    pub fn observe(&self, backend: Option<(usize, usize)>, status: u16, seconds: f64) {
        self.duration.observe(seconds);
        let slots = match backend {
            Some((c, slot)) => match self.by_backend.get(c).and_then(|row| row.get(slot)) {
                Some(cell) => &**cell.get_or_init(status_slots),
                None => return,
            },
            None => &*self.no_backend,
        };
        let counter = match (status as usize)
            .checked_sub(100)
            .and_then(|i| slots.get(i))
        {
            Some(slot) => slot.get_or_init(|| self.counter(backend, status)),
            // Status 0 (no response) or out of range: rare, so no cache.
            None => &self.counter(backend, status),
        };
        counter.inc();
    }

    fn counter(&self, backend: Option<(usize, usize)>, status: u16) -> IntCounter {
        let (cluster, id) = backend
            .and_then(|(c, slot)| {
                let (name, ids) = self.clusters.get(c)?;
                Some((name.as_str(), ids.get(slot)?.as_str()))
            })
            .unwrap_or((NONE, NONE));
        self.requests
            .with_label_values(&[self.route.as_str(), cluster, id, &status.to_string()])
    }
}

/// The session counters of one route, resolved once so the request path skips label lookups.
#[derive(Clone)]
pub struct SessionCounters {
    /// New sessions pinned.
    pub created: IntCounter,
    /// Valid tokens honoured.
    pub routed: IntCounter,
    /// Token's backend unavailable, re-pinned.
    pub failed_open: IntCounter,
    /// Token's backend unavailable, strict 503.
    pub failed_closed: IntCounter,
    /// Rejections, in the order of [`Reject::ALL`].
    pub rejected: Vec<IntCounter>,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> prometheus::Result<Metrics> {
        let registry = Registry::new();
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<IntCounterVec> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let gauge_of =
            |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<IntGaugeVec> {
                let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(g.clone()))?;
                Ok(g)
            };
        let gauge = |name: &str, help: &str| gauge_of(name, help, &["cluster", "backend"]);
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "tether_request_duration_seconds",
                "Time from the downstream request to the last byte of the response",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0, 60.0,
            ]),
            &["route"],
        )?;
        registry.register(Box::new(duration.clone()))?;
        Ok(Metrics {
            requests: counter(
                "tether_requests_total",
                "Responses sent, by route, cluster, backend and status code",
                &["route", "cluster", "backend", "code"],
            )?,
            duration,
            session_created: counter(
                "tether_session_created_total",
                "New sessions pinned to a backend",
                &["route"],
            )?,
            session_routed: counter(
                "tether_session_routed_total",
                "Requests whose valid session token was honoured",
                &["route"],
            )?,
            session_failed_open: counter(
                "tether_session_failed_open_total",
                "Sessions whose backend was unavailable and were re-pinned",
                &["route"],
            )?,
            session_failed_closed: counter(
                "tether_session_failed_closed_total",
                "Sessions whose backend was unavailable and got 503 (strict)",
                &["route"],
            )?,
            session_rejected: counter(
                "tether_session_rejected_total",
                "Session tokens ignored, by reason",
                &["route", "reason"],
            )?,
            backend_sessions_routed: counter(
                "tether_backend_sessions_routed_total",
                "Requests whose valid session token was honoured, by the backend that served them",
                &["cluster", "backend"],
            )?,
            backend_healthy: gauge(
                "tether_backend_healthy",
                "1 when the backend passes its health check",
            )?,
            backend_draining: gauge("tether_backend_draining", "1 when the backend is draining")?,
            backend_ejected: gauge(
                "tether_backend_ejected",
                "1 when outlier detection has ejected the backend",
            )?,
            tls_handshakes: counter(
                "tether_tls_handshakes_total",
                "Completed TLS handshakes, by listener and protocol version",
                &["listener", "version"],
            )?,
            tls_certificate_expiry: gauge_of(
                "tether_tls_certificate_expiry_timestamp_seconds",
                "notAfter of each loaded certificate, in Unix seconds",
                &["listener", "certificate"],
            )?,
            registry,
        })
    }

    /// Resolves (and so creates, at 0) the session counters of a route.
    pub fn session_counters(&self, route: &str) -> SessionCounters {
        SessionCounters {
            created: self.session_created.with_label_values(&[route]),
            routed: self.session_routed.with_label_values(&[route]),
            failed_open: self.session_failed_open.with_label_values(&[route]),
            failed_closed: self.session_failed_closed.with_label_values(&[route]),
            rejected: Reject::ALL
                .iter()
                .map(|r| {
                    self.session_rejected
                        .with_label_values(&[route, r.as_str()])
                })
                .collect(),
        }
    }

    /// Resolves the per-request metrics of a route whose clusters (in its order) have these
    /// names and backend ids (by slot).
    pub fn request_counters(&self, route: &str, clusters: &[(&str, Vec<&str>)]) -> RequestCounters {
        RequestCounters {
            duration: self.duration.with_label_values(&[route]),
            requests: self.requests.clone(),
            route: route.to_string(),
            by_backend: clusters
                .iter()
                .map(|(_, ids)| ids.iter().map(|_| OnceLock::new()).collect())
                .collect(),
            clusters: clusters
                .iter()
                .map(|(name, ids)| {
                    (
                        name.to_string(),
                        ids.iter().map(|id| id.to_string()).collect(),
                    )
                })
                .collect(),
            no_backend: status_slots(),
        }
    }

    /// Resolves (and so creates, at 0) the sessions-routed counter and the gauges of a backend.
    pub fn backend_sessions_routed(&self, cluster: &str, backend: &str) -> IntCounter {
        for gauge in [
            &self.backend_healthy,
            &self.backend_draining,
            &self.backend_ejected,
        ] {
            gauge.with_label_values(&[cluster, backend]);
        }
        self.backend_sessions_routed
            .with_label_values(&[cluster, backend])
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8192);
        // Encoding into a Vec cannot fail on I/O; an encoding error leaves a partial page.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_counters_count_by_route_cluster_backend_and_status() {
        let m = Metrics::new().unwrap();
        let c = m.request_counters("web", &[("shop", vec!["a", "b"]), ("canary", vec!["c"])]);
        c.observe(Some((0, 1)), 200, 0.01);
        c.observe(Some((0, 1)), 200, 0.01);
        c.observe(Some((1, 0)), 502, 0.01);
        c.observe(None, 503, 0.0);
        c.observe(Some((0, 0)), 0, 0.0);
        let text = String::from_utf8(m.render()).unwrap();
        for line in [
            "tether_requests_total{backend=\"b\",cluster=\"shop\",code=\"200\",route=\"web\"} 2",
            "tether_requests_total{backend=\"c\",cluster=\"canary\",code=\"502\",route=\"web\"} 1",
            "tether_requests_total{backend=\"none\",cluster=\"none\",code=\"503\",route=\"web\"} 1",
            "tether_requests_total{backend=\"a\",cluster=\"shop\",code=\"0\",route=\"web\"} 1",
            "tether_request_duration_seconds_count{route=\"web\"} 5",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }

    #[test]
    fn session_and_backend_series_exist_at_zero() {
        let m = Metrics::new().unwrap();
        m.session_counters("web");
        m.backend_sessions_routed("shop", "a");
        let text = String::from_utf8(m.render()).unwrap();
        for name in [
            "tether_session_created_total{route=\"web\"} 0",
            "tether_session_routed_total{route=\"web\"} 0",
            "tether_session_failed_open_total{route=\"web\"} 0",
            "tether_session_failed_closed_total{route=\"web\"} 0",
            "tether_session_rejected_total{reason=\"other_route\",route=\"web\"} 0",
            "tether_backend_sessions_routed_total{backend=\"a\",cluster=\"shop\"} 0",
            "tether_backend_healthy{backend=\"a\",cluster=\"shop\"} 0",
            "tether_backend_draining{backend=\"a\",cluster=\"shop\"} 0",
            "tether_backend_ejected{backend=\"a\",cluster=\"shop\"} 0",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }
}
