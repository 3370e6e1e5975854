//! Prometheus metrics of SPEC section 4, in a registry of our own served by the admin listener.

use crate::token::Reject;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Label used for responses that no backend produced (503 with nothing healthy).
pub const NO_BACKEND: &str = "none";

/// Every metric tether exports.
pub struct Metrics {
    registry: Registry,
    /// `tether_requests_total{service,backend,code}`.
    pub requests: IntCounterVec,
    /// `tether_request_duration_seconds{service}`.
    pub duration: HistogramVec,
    /// `tether_session_created_total{service}`.
    pub session_created: IntCounterVec,
    /// `tether_session_routed_total{service}`.
    pub session_routed: IntCounterVec,
    /// `tether_session_failed_open_total{service}`.
    pub session_failed_open: IntCounterVec,
    /// `tether_session_failed_closed_total{service}`.
    pub session_failed_closed: IntCounterVec,
    /// `tether_session_rejected_total{service,reason}`.
    pub session_rejected: IntCounterVec,
    /// `tether_backend_healthy{service,backend}`.
    pub backend_healthy: IntGaugeVec,
    /// `tether_backend_draining{service,backend}`.
    pub backend_draining: IntGaugeVec,
}

/// The per-request metrics of one service, resolved once so the request path skips label
/// hashing and the registry's locks: the duration histogram, and `tether_requests_total` per
/// backend and status, each created on first use.
pub struct RequestCounters {
    duration: prometheus::Histogram,
    requests: IntCounterVec,
    service: String,
    /// Per backend (config order), then one extra for "no backend": a slot per status 100..=599.
    by_status: Vec<Vec<std::sync::OnceLock<IntCounter>>>,
    backend_ids: Vec<String>,
}

impl RequestCounters {
    /// Counts one response of `backend` (None: answered without a backend) with `status`.
    pub fn observe(&self, backend: Option<usize>, status: u16, seconds: f64) {
        self.duration.observe(seconds);
        let slot_row = backend.unwrap_or(self.backend_ids.len());
        let counter = match (status as usize)
            .checked_sub(100)
            .and_then(|i| self.by_status[slot_row].get(i))
        {
            Some(slot) => slot.get_or_init(|| self.counter(slot_row, status)),
            // Status 0 (no response) or out of range: rare, so no cache.
            None => &self.counter(slot_row, status),
        };
        counter.inc();
    }

    fn counter(&self, row: usize, status: u16) -> IntCounter {
        let backend = self.backend_ids.get(row).map_or(NO_BACKEND, String::as_str);
        self.requests
            .with_label_values(&[self.service.as_str(), backend, &status.to_string()])
    }
}

/// The session counters of one service, resolved once so the request path skips label lookups.
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
        let gauge = |name: &str, help: &str| -> prometheus::Result<IntGaugeVec> {
            let g = IntGaugeVec::new(Opts::new(name, help), &["service", "backend"])?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "tether_request_duration_seconds",
                "Time from the downstream request to the last byte of the response",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0, 60.0,
            ]),
            &["service"],
        )?;
        registry.register(Box::new(duration.clone()))?;
        Ok(Metrics {
            requests: counter(
                "tether_requests_total",
                "Responses sent, by service, backend and status code",
                &["service", "backend", "code"],
            )?,
            duration,
            session_created: counter(
                "tether_session_created_total",
                "New sessions pinned to a backend",
                &["service"],
            )?,
            session_routed: counter(
                "tether_session_routed_total",
                "Requests whose valid session token was honoured",
                &["service"],
            )?,
            session_failed_open: counter(
                "tether_session_failed_open_total",
                "Sessions whose backend was unavailable and were re-pinned",
                &["service"],
            )?,
            session_failed_closed: counter(
                "tether_session_failed_closed_total",
                "Sessions whose backend was unavailable and got 503 (strict)",
                &["service"],
            )?,
            session_rejected: counter(
                "tether_session_rejected_total",
                "Session tokens ignored, by reason",
                &["service", "reason"],
            )?,
            backend_healthy: gauge(
                "tether_backend_healthy",
                "1 when the backend passes its health check",
            )?,
            backend_draining: gauge("tether_backend_draining", "1 when the backend is draining")?,
            registry,
        })
    }

    /// Resolves (and so creates, at 0) the session counters of a service.
    pub fn session_counters(&self, service: &str) -> SessionCounters {
        SessionCounters {
            created: self.session_created.with_label_values(&[service]),
            routed: self.session_routed.with_label_values(&[service]),
            failed_open: self.session_failed_open.with_label_values(&[service]),
            failed_closed: self.session_failed_closed.with_label_values(&[service]),
            rejected: Reject::ALL
                .iter()
                .map(|r| {
                    self.session_rejected
                        .with_label_values(&[service, r.as_str()])
                })
                .collect(),
        }
    }

    /// Resolves the per-request metrics of a service with these backend ids (config order).
    pub fn request_counters(&self, service: &str, backend_ids: &[&str]) -> RequestCounters {
        let rows = backend_ids.len() + 1;
        RequestCounters {
            duration: self.duration.with_label_values(&[service]),
            requests: self.requests.clone(),
            service: service.to_string(),
            by_status: (0..rows)
                .map(|_| (100..=599).map(|_| std::sync::OnceLock::new()).collect())
                .collect(),
            backend_ids: backend_ids.iter().map(|s| s.to_string()).collect(),
        }
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
    fn request_counters_count_by_backend_and_status() {
        let m = Metrics::new().unwrap();
        let c = m.request_counters("web", &["a", "b"]);
        c.observe(Some(1), 200, 0.01);
        c.observe(Some(1), 200, 0.01);
        c.observe(None, 503, 0.0);
        c.observe(Some(0), 0, 0.0);
        let text = String::from_utf8(m.render()).unwrap();
        for line in [
            "tether_requests_total{backend=\"b\",code=\"200\",service=\"web\"} 2",
            "tether_requests_total{backend=\"none\",code=\"503\",service=\"web\"} 1",
            "tether_requests_total{backend=\"a\",code=\"0\",service=\"web\"} 1",
            "tether_request_duration_seconds_count{service=\"web\"} 4",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }

    #[test]
    fn session_counters_exist_at_zero() {
        let m = Metrics::new().unwrap();
        m.session_counters("web");
        let text = String::from_utf8(m.render()).unwrap();
        for name in [
            "tether_session_created_total{service=\"web\"} 0",
            "tether_session_routed_total{service=\"web\"} 0",
            "tether_session_failed_open_total{service=\"web\"} 0",
            "tether_session_failed_closed_total{service=\"web\"} 0",
            "tether_session_rejected_total{reason=\"bad_mac\",service=\"web\"} 0",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }
}
