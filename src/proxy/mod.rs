//! The `ProxyHttp` implementation: one [`Proxy`] per service.
//!
//! Phases, in the order Pingora runs them for a request:
//!
//! ```text
//! early_request_filter ──> request_filter ──> upstream_peer ──connect──> upstream_request_filter
//!  (refuse or normalise     (keep-alive,       (read token,      │ refused   (strip our cookie/
//!   target, Host, framing)   431)               pick backend)    │            header, X-Forwarded-*)
//!                                                   ^             v
//!            response_filter ──> logging            └── retry ── fail_to_connect (another healthy
//!   (issue a token when needed;                     backend, unless strict) ──> fail_to_proxy
//!    HTTP/1.0 responses unchunked)                  (400/502/503/504) ──> logging
//! ```
//!
//! Session rules (SPEC 3): a valid token whose backend is healthy is honoured whatever the
//! weights (`routed`). Its backend unhealthy, removed or refusing: re-pin and re-issue
//! (`failed_open`), or with `strict` answer 503 and keep the token (`failed_closed`). No valid
//! token: weighted round robin and a new token (`created`).

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use log::info;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::RequestHeader;
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

use crate::config::Limits;
use crate::downstream::{client_ip_value, Framing, FramingError, GuardedStream};
use crate::metrics::{Metrics, RequestCounters, SessionCounters, NO_BACKEND};
use crate::session::{unix_now, Presented, Sessions};
use crate::token::{Reject, Session as Token};
use crate::upstreams::Upstreams;

mod conformance;
mod forwarded;

pub use conformance::{adapt_response_for_http10, normalize_request, strip_hop_by_hop, Refusal};
pub use forwarded::{add_forwarded, drop_header_case};

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
    /// Wall-clock seconds at the first selection, for every token check and issue.
    now: u32,
    /// The token was read (selection runs again on retries).
    token_read: bool,
    /// The valid token presented, while it may still be honoured.
    session: Option<Token>,
    /// The token presented named a backend the service no longer has.
    removed_backend: bool,
    /// The backend chosen last (index into the service's backends).
    backend: Option<usize>,
    /// Backends that refused a connection during this request.
    refused: Vec<usize>,
    /// A pooled connection to the chosen backend failed and the request went again to it.
    retried_stale: bool,
    /// Issue a token whose session began at this time.
    issue_start: Option<u32>,
    /// Status sent by `fail_to_proxy`, when the request ended in an error.
    error_status: u16,
    outcome: SessionOutcome,
}

/// The proxy of one service.
pub struct Proxy {
    upstreams: Arc<Upstreams>,
    limits: Limits,
    sessions: Option<Sessions>,
    requests: RequestCounters,
    counters: SessionCounters,
}

impl Proxy {
    /// A proxy over these upstreams, with their session persistence if any, enforcing
    /// `limits`, counting into `metrics`.
    pub fn new(
        upstreams: Arc<Upstreams>,
        sessions: Option<Sessions>,
        limits: Limits,
        metrics: Arc<Metrics>,
    ) -> Self {
        let name = &upstreams.config.name;
        let ids: Vec<&str> = upstreams
            .config
            .backends
            .iter()
            .map(|b| b.id.as_str())
            .collect();
        Proxy {
            requests: metrics.request_counters(name, &ids),
            counters: metrics.session_counters(name),
            upstreams,
            sessions,
            limits,
        }
    }

    /// Reads the request's token once, counting a rejection.
    fn read_token(&self, sessions: &Sessions, session: &Session, ctx: &mut Ctx) {
        ctx.token_read = true;
        let memo = session
            .stream()
            .and_then(GuardedStream::of)
            .map(GuardedStream::token_memo);
        match sessions.find(session.req_header(), ctx.now, memo) {
            Presented::Nothing => {}
            Presented::Valid(token) => ctx.session = Some(token),
            Presented::Rejected(reason) => {
                self.counters.rejected[reason.index()].inc();
                // An authentic token whose backend is gone is a session that lost its backend
                // (failed_open / failed_closed), not merely a bad token.
                ctx.removed_backend = reason == Reject::UnknownBackend;
            }
        }
    }

    /// The chosen backend failed before anything reached the client (refused the connection,
    /// or dropped it): retry on another backend while one is left. A strict session's backend
    /// failing answers 503 instead, keeping the token.
    fn backend_failed(&self, ctx: &mut Ctx, mut e: Box<Error>) -> Box<Error> {
        if let Some(idx) = ctx.backend {
            ctx.refused.push(idx);
        }
        let strict = self.sessions.as_ref().is_some_and(|s| s.config().strict);
        if ctx.outcome == SessionOutcome::Routed && strict {
            ctx.outcome = SessionOutcome::FailedClosed;
            ctx.issue_start = None;
            return Error::because(
                ErrorType::HTTPStatus(503),
                "session backend unavailable (strict)",
                e,
            );
        }
        let refused = &ctx.refused;
        e.set_retry(self.upstreams.any_available(|i| refused.contains(&i)));
        e
    }

    /// The backend of the presented session, if it can be honoured now. Otherwise it notes
    /// the session as failed, and a strict service answers 503.
    fn session_backend(&self, sessions: &Sessions, ctx: &mut Ctx) -> Result<Option<usize>> {
        let wanted = ctx.session.map(|s| s.backend);
        if let Some(idx) = wanted {
            if !ctx.refused.contains(&idx) && self.upstreams.is_healthy(idx) {
                return Ok(Some(idx));
            }
        } else if !ctx.removed_backend {
            return Ok(None);
        }
        ctx.session = None;
        ctx.removed_backend = false;
        if sessions.config().strict {
            ctx.outcome = SessionOutcome::FailedClosed;
            return Err(Error::explain(
                ErrorType::HTTPStatus(503),
                "session backend unavailable (strict)",
            ));
        }
        ctx.outcome = SessionOutcome::FailedOpen;
        Ok(None)
    }
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = Ctx;

    /// No downstream modules: Pingora's default adds a disabled compression module, which still
    /// costs a context and filter calls per request. tether never compresses.
    fn init_downstream_modules(&self, _modules: &mut pingora_core::modules::http::HttpModules) {}

    fn new_ctx(&self) -> Ctx {
        Ctx {
            start: Instant::now(),
            now: 0,
            token_read: false,
            session: None,
            removed_backend: false,
            backend: None,
            refused: Vec::new(),
            retried_stale: false,
            issue_start: None,
            error_status: 0,
            outcome: SessionOutcome::None,
        }
    }

    /// Refuses (400) a request whose target, `Host` or `Content-Length` could be read two
    /// ways, normalises the rest, and tells the connection's guard how the body is framed (it
    /// holds back the bytes after a header section until then). Pipelined requests are
    /// answered in order.
    async fn early_request_filter(&self, session: &mut Session, _ctx: &mut Ctx) -> Result<()> {
        if session.is_http2() {
            return Ok(());
        }
        session.set_pipelining_enabled(true);
        let http10 = session.req_header().version < http::Version::HTTP_11;
        if http10 {
            // No 1xx to an HTTP/1.0 client (RFC 9110 15.2).
            session.set_ignore_info_resp(true);
        }
        let mut framing = normalize_request(session.req_header_mut());
        if let Some(guard) = session.stream().and_then(GuardedStream::of) {
            if guard.request_line_has_control() {
                framing = Err(Refusal::Target);
            }
            // Refused requests close the connection: their body's framing does not matter.
            guard.tell_framing(*framing.as_ref().unwrap_or(&Framing::Length(0)));
        }
        framing.map(|_| ()).map_err(|refusal| {
            Error::explain(ErrorType::HTTPStatus(400), refusal.to_string()).into_down()
        })
    }

    /// Refuses a request line plus header section beyond `limits.max_request_header_bytes`
    /// with 431, before anything else is done with it. Drops the header names' case when the
    /// service says so.
    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        // Pingora's idle wait for the next request is a fixed 60 s; use ours, on a connection
        // that stays open: never where HTTP or Pingora decided to close (HTTP/1.0 without
        // keep-alive, Content-Length beside Transfer-Encoding, shutting down).
        if session.get_keepalive().is_some() && !session.is_process_shutting_down() {
            session.set_keepalive(Some(self.limits.keepalive_timeout.as_secs().max(1)));
        }
        // On the client's request rather than upstream: Pingora then copies one header map
        // per attempt, not two.
        if !self.upstreams.config.preserve_header_case {
            drop_header_case(session.req_header_mut());
        }
        let req = session.req_header();
        let size = req.method.as_str().len()
            + req.uri.path_and_query().map_or(0, |p| p.as_str().len())
            + req.uri.authority().map_or(0, |a| a.as_str().len())
            + req
                .headers
                .iter()
                .map(|(name, value)| name.as_str().len() + value.len() + 4)
                .sum::<usize>();
        if size <= self.limits.max_request_header_bytes {
            return Ok(false);
        }
        ctx.error_status = 431;
        session.respond_error(431).await?;
        Ok(true)
    }

    /// Picks the backend: the session's, when it can be honoured; otherwise weighted round
    /// robin over healthy active backends, skipping any that refused this request's earlier
    /// attempts. Nothing healthy: 503 at once.
    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        if let Some(sessions) = &self.sessions {
            if !ctx.token_read {
                ctx.now = unix_now();
                self.read_token(sessions, session, ctx);
            }
            if let Some(idx) = self.session_backend(sessions, ctx)? {
                let token = ctx.session.expect("a session backend comes from a token");
                ctx.outcome = SessionOutcome::Routed;
                ctx.issue_start = sessions
                    .needs_refresh(&token, ctx.now)
                    .then_some(token.start);
                ctx.backend = Some(idx);
                return Ok(Box::new(self.upstreams.peer(idx)));
            }
        }
        let refused = &ctx.refused;
        let idx = self
            .upstreams
            .pick(|i| refused.contains(&i))
            .ok_or_else(|| Error::explain(ErrorType::HTTPStatus(503), "no healthy backend"))?;
        if self.sessions.is_some() {
            if ctx.outcome != SessionOutcome::FailedOpen {
                ctx.outcome = SessionOutcome::Created;
            }
            ctx.issue_start = Some(ctx.now);
        }
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
        e: Box<Error>,
    ) -> Box<Error> {
        self.backend_failed(ctx, e)
    }

    /// A backend that fails after the connection was made (reset, closed mid-request) before
    /// anything reached the client: an idempotent request whose body can be replayed is retried
    /// on another backend, like a refused connection (HTTP allows retrying idempotent requests).
    /// A pooled connection failing is first taken for a keep-alive race (the backend closed it
    /// as it was reused): the request goes once more to the same backend. Timeouts are not
    /// retried: a hanging backend fails within `timeouts.read`, and the health check takes it
    /// out. The client hanging up or failing is no fault of the backend's: no retry.
    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Ctx,
        client_reused: bool,
    ) -> Box<Error> {
        use ErrorType::*;
        let mut e = e.more_context(format!("Peer: {peer}"));
        let replayable = session.req_header().method.is_idempotent()
            && !session.as_ref().retry_buffer_truncated()
            && session.response_written().is_none();
        if !replayable || e.esource() != &ErrorSource::Upstream {
            e.set_retry(false);
            return e;
        }
        let connection_failed = matches!(
            e.etype(),
            ConnectionClosed | ReadError | WriteError | ConnectError | ConnectRefused
        );
        if !connection_failed {
            e.retry.decide_reuse(client_reused);
            return e;
        }
        if client_reused && !ctx.retried_stale {
            ctx.retried_stale = true;
            e.set_retry(true);
            return e;
        }
        self.backend_failed(ctx, e)
    }

    /// Removes tether's cookie or header, then adds `X-Forwarded-For` (appended), `X-Forwarded-Proto` and `X-Forwarded-Host`; the
    /// `Host` header goes through as the client sent it.
    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        _ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(sessions) = &self.sessions {
            sessions.strip(upstream_request)?;
        }
        // The client's address comes formatted from its connection (once per connection).
        let client = match session.stream().and_then(GuardedStream::of) {
            Some(guard) => guard.client_ip().cloned(),
            None => session.client_addr().and_then(client_ip_value),
        };
        let listener = session.server_addr().and_then(|a| a.as_inet().copied());
        add_forwarded(upstream_request, client, listener)?;
        Ok(())
    }

    /// Issues a token when the session is new, re-pinned, or due for a refresh. An HTTP/1.0
    /// client gets the response without chunked coding (closing the connection after it when
    /// it has no length); after a protocol switch the connection's bytes are no longer HTTP/1.
    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut pingora_http::ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        strip_hop_by_hop(upstream_response);
        if upstream_response.status == http::StatusCode::SWITCHING_PROTOCOLS {
            if let Some(guard) = session.stream().and_then(GuardedStream::of) {
                guard.tell_framing(Framing::PassThrough);
            }
        } else if session.req_header().version < http::Version::HTTP_11
            && !session.is_http2()
            && adapt_response_for_http10(upstream_response)
        {
            session.set_keepalive(None);
        }
        if let (Some(sessions), Some(start), Some(backend)) =
            (&self.sessions, ctx.issue_start, ctx.backend)
        {
            sessions.issue(upstream_response, backend, start, ctx.now)?;
        }
        Ok(())
    }

    /// Maps errors to statuses: ours as given (503), upstream timeouts 504, other upstream
    /// failures 502, malformed requests (framing the guard refused included) 400.
    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        use ErrorType::*;
        let code = match (e.etype(), e.esource()) {
            (HTTPStatus(code), _) => *code,
            _ if framing_refused(e) => 400,
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
        match ctx.outcome {
            SessionOutcome::None => {}
            SessionOutcome::Created => self.counters.created.inc(),
            SessionOutcome::Routed => self.counters.routed.inc(),
            SessionOutcome::FailedOpen => self.counters.failed_open.inc(),
            SessionOutcome::FailedClosed => self.counters.failed_closed.inc(),
        }
        self.requests
            .observe(ctx.backend, status, elapsed.as_secs_f64());
        if log::log_enabled!(target: "tether::access", log::Level::Info) {
            let req = session.req_header();
            // Formatted straight into the line: no string of its own.
            let client: &dyn std::fmt::Display = match session.client_addr() {
                Some(addr) => addr,
                None => &"-",
            };
            info!(
                target: "tether::access",
                "{client} \"{} {}\" {status} service={service} backend={backend} session={} duration={}ms",
                req.method,
                req.uri.path(),
                ctx.outcome.as_str(),
                Millis(elapsed)
            );
        }
    }
}

/// Whether the error comes from the connection guard refusing the request's framing (an
/// `InvalidData` read error carrying a [`FramingError`]).
fn framing_refused(e: &Error) -> bool {
    let root = e.root_cause();
    root.downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        .is_some_and(|inner| inner.is::<FramingError>())
}

/// A duration as milliseconds with three decimals (`12.345`), formatted from integers: float
/// formatting with a precision costs more than the rest of an access log line.
struct Millis(std::time::Duration);

impl std::fmt::Display for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let micros = (self.0.as_nanos() + 500) / 1000;
        write!(f, "{}.{:03}", micros / 1000, micros % 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_have_three_decimals() {
        let ms = |nanos: u64| Millis(std::time::Duration::from_nanos(nanos)).to_string();
        assert_eq!(ms(0), "0.000");
        assert_eq!(ms(1_234_567), "1.235");
        assert_eq!(ms(999_499), "0.999");
        assert_eq!(ms(999_500), "1.000");
        assert_eq!(ms(61_002_000_000), "61002.000");
    }
}
