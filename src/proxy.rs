//! The `ProxyHttp` implementation: one [`Proxy`] per service.
//!
//! Phases, in the order Pingora runs them for a request:
//!
//! ```text
//! upstream_peer ──connect──> upstream_request_filter ──> response_filter ──> logging
//!      ^              │ refused
//!      └── retry ── fail_to_connect (another healthy backend, if any)
//!                     └──> fail_to_proxy (502/503/504) ──> logging
//! ```

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use log::info;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::RequestHeader;
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

use crate::metrics::{Metrics, SessionCounters, NO_BACKEND};
use crate::upstreams::Upstreams;

/// What happened to the request's session, for the access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionOutcome {
    /// No session persistence, or the request never reached selection.
    None,
    /// A new session was pinned.
    Created,
    /// A valid token was honoured.
    Routed,
    /// The token's backend was unavailable; re-pinned.
    FailedOpen,
    /// The token's backend was unavailable; strict 503.
    FailedClosed,
}

impl SessionOutcome {
    /// The access-log word.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionOutcome::None => "none",
            SessionOutcome::Created => "created",
            SessionOutcome::Routed => "routed",
            SessionOutcome::FailedOpen => "failed_open",
            SessionOutcome::FailedClosed => "failed_closed",
        }
    }
}

/// Per-request state.
pub struct Ctx {
    start: Instant,
    /// The backend chosen last (index into the service's backends).
    backend: Option<usize>,
    /// Backends that refused a connection during this request.
    refused: Vec<usize>,
    /// Status sent by `fail_to_proxy`, when the request ended in an error.
    error_status: u16,
    outcome: SessionOutcome,
}

/// The proxy of one service.
pub struct Proxy {
    upstreams: Arc<Upstreams>,
    metrics: Arc<Metrics>,
    #[allow(dead_code)] // used by session persistence
    sessions: SessionCounters,
}

impl Proxy {
    /// A proxy over these upstreams, counting into `metrics`.
    pub fn new(upstreams: Arc<Upstreams>, metrics: Arc<Metrics>) -> Self {
        let sessions = metrics.session_counters(&upstreams.config.name);
        Proxy {
            upstreams,
            metrics,
            sessions,
        }
    }
}

/// Appends the client address to any `X-Forwarded-For` the client sent, as one field line.
fn forwarded_for(req: &RequestHeader, client: &str) -> Vec<u8> {
    let mut value = Vec::new();
    for v in req.headers.get_all("x-forwarded-for") {
        let v = v.as_bytes().trim_ascii();
        if !v.is_empty() {
            value.extend_from_slice(v);
            value.extend_from_slice(b", ");
        }
    }
    value.extend_from_slice(client.as_bytes());
    value
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            start: Instant::now(),
            backend: None,
            refused: Vec::new(),
            error_status: 0,
            outcome: SessionOutcome::None,
        }
    }

    /// Picks the backend: weighted round robin over healthy active backends, skipping any that
    /// refused this request's earlier attempts. Nothing healthy: 503 at once.
    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let refused = &ctx.refused;
        let idx = self
            .upstreams
            .pick(|i| refused.contains(&i))
            .ok_or_else(|| Error::explain(ErrorType::HTTPStatus(503), "no healthy backend"))?;
        ctx.backend = Some(idx);
        Ok(Box::new(self.upstreams.peer(idx)))
    }

    /// A backend that cannot be connected to is skipped and the request retried on another,
    /// while one is left: nothing was sent yet, so this is safe for any method.
    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some(idx) = ctx.backend {
            ctx.refused.push(idx);
        }
        let refused = &ctx.refused;
        let another = self.upstreams.pick(|i| refused.contains(&i)).is_some();
        e.set_retry(another);
        e
    }

    /// Adds `X-Forwarded-For` (appended), `X-Forwarded-Proto` and `X-Forwarded-Host`; the
    /// `Host` header goes through as the client sent it.
    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        _ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(client) = session.client_addr().and_then(|a| a.as_inet()) {
            let xff = forwarded_for(upstream_request, &client.ip().to_string());
            upstream_request.insert_header("X-Forwarded-For", xff)?;
        }
        upstream_request.insert_header("X-Forwarded-Proto", "http")?;
        let host = upstream_request
            .headers
            .get(http::header::HOST)
            .map(|h| h.as_bytes().to_vec())
            .or_else(|| {
                upstream_request
                    .uri
                    .authority()
                    .map(|a| a.as_str().as_bytes().to_vec())
            });
        match host {
            Some(host) => upstream_request.insert_header("X-Forwarded-Host", host)?,
            None => {
                upstream_request.remove_header("X-Forwarded-Host");
            }
        }
        Ok(())
    }

    /// Maps errors to statuses: ours as given (503), upstream timeouts 504, other upstream
    /// failures 502, malformed requests 400.
    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        use ErrorType::*;
        let code = match (e.etype(), e.esource()) {
            (HTTPStatus(code), _) => *code,
            (ConnectTimedout | ReadTimedout | WriteTimedout, ErrorSource::Upstream) => 504,
            (_, ErrorSource::Upstream) => 502,
            (WriteError | ReadError | ConnectionClosed, ErrorSource::Downstream) => 0,
            (_, ErrorSource::Downstream) => 400,
            _ => 500,
        };
        if code > 0 {
            if let Err(err) = session.respond_error(code).await {
                log::debug!("could not send {code} downstream: {err}");
            }
        }
        ctx.error_status = code;
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// Statuses tether chose itself (503: nothing healthy) are expected outcomes, already in the
    /// access log; Pingora would log each at error level.
    fn suppress_error_log(&self, _session: &Session, _ctx: &Ctx, error: &Error) -> bool {
        matches!(error.etype(), ErrorType::HTTPStatus(_))
    }

    /// Counts the response and writes the access line (no token values, no query strings).
    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        let status = session
            .response_written()
            .map_or(ctx.error_status, |r| r.status.as_u16());
        let service = self.upstreams.config.name.as_str();
        let backend = ctx
            .backend
            .map_or(NO_BACKEND, |i| self.upstreams.backend(i).id.as_str());
        let elapsed = ctx.start.elapsed();
        let code = status.to_string();
        self.metrics
            .requests
            .with_label_values(&[service, backend, code.as_str()])
            .inc();
        self.metrics
            .duration
            .with_label_values(&[service])
            .observe(elapsed.as_secs_f64());
        if log::log_enabled!(target: "tether::access", log::Level::Info) {
            let req = session.req_header();
            let client = session
                .client_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|| "-".to_string());
            info!(
                target: "tether::access",
                "{client} \"{} {}\" {status} service={service} backend={backend} session={} duration={:.3}ms",
                req.method,
                req.uri.path(),
                ctx.outcome.as_str(),
                elapsed.as_secs_f64() * 1000.0
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_appends_to_every_prior_value() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        assert_eq!(forwarded_for(&req, "10.0.0.9"), b"10.0.0.9");
        req.append_header("X-Forwarded-For", "1.1.1.1, 2.2.2.2")
            .unwrap();
        req.append_header("X-Forwarded-For", "3.3.3.3").unwrap();
        assert_eq!(
            forwarded_for(&req, "10.0.0.9"),
            b"1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.9"
        );
    }
}
