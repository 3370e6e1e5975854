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
pub type StatusCounters = Box<[OnceLock<IntCounter>]>;

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
    /// `tether_discovery_backends{cluster}`.
    pub discovery_backends: IntGaugeVec,
    /// `tether_discovery_errors_total{cluster}`.
    pub discovery_errors: IntCounterVec,
    /// `tether_tls_handshakes_total{listener,version}`.
    pub tls_handshakes: IntCounterVec,
    /// `tether_tls_certificate_expiry_timestamp_seconds{listener,certificate}`.
    pub tls_certificate_expiry: IntGaugeVec,
}

/// The per-request metrics of one route, resolved once so the request path skips label hashing
/// and the registry's locks: the duration histogram, and `tether_requests_total` per backend
/// and status, each created on first use. A backend's counters are cached with the backend
/// itself (its identity outlives snapshots; discovered backends come and go), one row per route.
pub struct RequestCounters {
    duration: prometheus::Histogram,
    requests: IntCounterVec,
    route: String,
    /// The route's number: the row of a backend's cache (`None`: the counters of no route).
    row: Option<usize>,
    /// Responses without a backend, per status.
    no_backend: StatusCounters,
}

/// The cache rows of one backend: per route that can reach its cluster (route numbers in
/// ascending order), a counter slot per status. Only those routes: a row per route of the
/// gateway made 10,000 backends under 5,000 routes cost 1.2 GB.
pub type BackendRequestCells = Box<[(usize, OnceLock<StatusCounters>)]>;

/// Empty cache rows for a backend that routes `routes` (route numbers, ascending) reach.
pub fn backend_request_cells(routes: &[usize]) -> BackendRequestCells {
    routes.iter().map(|&r| (r, OnceLock::new())).collect()
}

/// The row of route `route` in `cells`.
fn row_of(cells: &BackendRequestCells, route: usize) -> Option<&OnceLock<StatusCounters>> {
    let at = cells.binary_search_by_key(&route, |(r, _)| *r).ok()?;
    Some(&cells[at].1)
}

fn status_slots() -> StatusCounters {
    (0..STATUSES).map(|_| OnceLock::new()).collect()
}

/// The backend a response came from, for the counters.
pub struct FromBackend<'a> {
    /// Its cluster's name.
    pub cluster: &'a str,
    /// Its id.
    pub id: &'a str,
    /// Its cache rows.
    pub cells: &'a BackendRequestCells,
}

impl RequestCounters {
    /// Counts one response with `status` from `backend` (`None`: answered without a backend).
    pub fn observe(&self, backend: Option<FromBackend<'_>>, status: u16, seconds: f64) {
        self.duration.observe(seconds);
        let names = match &backend {
            Some(b) => (b.cluster, b.id),
            None => (NONE, NONE),
        };
        let slots = match &backend {
            Some(b) => match self.row.and_then(|row| row_of(b.cells, row)) {
                Some(cell) => &**cell.get_or_init(status_slots),
                None => return self.counter(names, status).inc(),
            },
            None => &*self.no_backend,
        };
        let counter = match (status as usize)
            .checked_sub(100)
            .and_then(|i| slots.get(i))
        {
            Some(slot) => slot.get_or_init(|| self.counter(names, status)),
            // Status 0 (no response) or out of range: rare, so no cache.
            None => &self.counter(names, status),
        };
        counter.inc();
    }

    fn counter(&self, (cluster, id): (&str, &str), status: u16) -> IntCounter {
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
            discovery_backends: gauge_of(
                "tether_discovery_backends",
                "Backends the last successful discovery round returned",
                &["cluster"],
            )?,
            discovery_errors: counter(
                "tether_discovery_errors_total",
                "Failed discovery rounds (the last good set is kept)",
                &["cluster"],
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

    /// Resolves the per-request metrics of route number `row` (`None`: requests no route took).
    pub fn request_counters(&self, route: &str, row: Option<usize>) -> RequestCounters {
        RequestCounters {
            duration: self.duration.with_label_values(&[route]),
            requests: self.requests.clone(),
            route: route.to_string(),
            row,
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

    /// Drops the gauges of a backend that left its cluster (its counters stay).
    pub fn forget_backend(&self, cluster: &str, backend: &str) {
        for gauge in [
            &self.backend_healthy,
            &self.backend_draining,
            &self.backend_ejected,
        ] {
            let _ = gauge.remove_label_values(&[cluster, backend]);
        }
    }

    /// Creates, at 0, the discovery series of a cluster.
    pub fn discovery(&self, cluster: &str) -> (prometheus::IntGauge, IntCounter) {
        (
            self.discovery_backends.with_label_values(&[cluster]),
            self.discovery_errors.with_label_values(&[cluster]),
        )
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
        // Route number 1 of a gateway of two routes.
        let c = m.request_counters("web", Some(1));
        let cells: Vec<BackendRequestCells> =
            (0..3).map(|_| backend_request_cells(&[0, 1])).collect();
        let from = |cluster, id, i: usize| {
            Some(FromBackend {
                cluster,
                id,
                cells: &cells[i],
            })
        };
        c.observe(from("shop", "b", 1), 200, 0.01);
        c.observe(from("shop", "b", 1), 200, 0.01);
        c.observe(from("canary", "c", 2), 502, 0.01);
        c.observe(None, 503, 0.0);
        c.observe(from("shop", "a", 0), 0, 0.0);
        assert!(cells[1][1].1.get().is_some() && cells[1][0].1.get().is_none());
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
