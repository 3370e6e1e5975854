//! The `ProxyHttp` implementation: one [`Proxy`] per listener.
//!
//! Phases, in the order Pingora runs them for a request:
//!
//! ```text
//! early_request_filter ──> request_filter ──> upstream_peer ──connect──> upstream_request_filter
//!  (refuse or normalise     (keep-alive, 431,   (read token,      │ refused   (strip our cookie/
//!   target, Host, framing)   route or 404)      decide, pick)     │            header, X-Forwarded-*)
//!                                                   ^             v
//!            response_filter ──> logging            └── retry ── fail_to_connect (another healthy
//!   (issue a token when needed;                     backend, unless strict) ──> fail_to_proxy
//!    HTTP/1.0 responses unchunked)                  (400/502/503/504) ──> logging
//! ```
//!
//! Session rules (SPEC 3, [`crate::session::decide`]): a valid token whose backend serves it is
//! honoured whatever the weights (`routed`). Its backend unhealthy, disabled, removed or
//! refusing: re-pin and re-issue (`failed_open`), or with `strict` answer 503 and keep the token
//! (`failed_closed`). No valid token: the route's weights and a new token (`created`).

mod access;
mod conformance;
mod forwarded;
mod redirect;
mod select;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

use crate::config::Limits;
use crate::downstream::{client_ip_value, Framing, FramingError, GuardedStream, Http2Connection};
use crate::gateway::Gateway;
use crate::routing::{Chosen, Route, Router};
use crate::session::Outcome;
use crate::token::Session as Token;

pub use conformance::{
    adapt_response_for_http10, check_http2_request, has_dot_segment, normalize_request,
    strip_hop_by_hop, Refusal,
};
pub use forwarded::{add_forwarded, drop_header_case, join_cookie_fields};
pub use redirect::redirect_to_https;

/// Per-request state.
pub struct Ctx {
    start: Instant,
    /// The route that took the request (its number).
    route: Option<usize>,
    /// Wall-clock seconds at the first selection, for every token check and issue.
    now: u32,
    /// The token was read (selection runs again on retries).
    token_read: bool,
    /// The valid token of this route presented, while it may still be honoured.
    session: Option<Token>,
    /// The backend chosen last.
    backend: Option<Chosen>,
    /// Backends that refused a connection during this request: (cluster position, slot).
    refused: Vec<(usize, usize)>,
    /// A pooled connection to the chosen backend failed and the request went again to it.
    retried_stale: bool,
    /// The chosen backend's failure was told to outlier detection already.
    failure_observed: bool,
    /// Issue a token whose session began at this time.
    issue_start: Option<u32>,
    /// Status sent by tether itself (`fail_to_proxy`, a 404 of no route), when it answered.
    error_status: u16,
    outcome: Outcome,
    /// The HTTP/2 connection the request came on, counting it while it lasts.
    http2: Option<Arc<Http2Connection>>,
}

/// The proxy of one listener.
pub struct Proxy {
    gateway: Arc<Gateway>,
    router: Router,
    limits: Limits,
    /// The listener terminates TLS: `X-Forwarded-Proto: https`, `Secure` cookies (`auto`).
    tls: bool,
    /// The listener answers everything with a redirect to `https` on this port.
    redirect_https: Option<u16>,
}

impl Proxy {
    /// The proxy of listener `listener` of `gateway`, enforcing `limits`.
    pub fn new(gateway: Arc<Gateway>, listener: usize, limits: Limits) -> Self {
        let config = &gateway.listeners[listener];
        Proxy {
            router: gateway.router(listener),
            tls: config.tls.is_some(),
            redirect_https: config.redirect_https,
            gateway,
            limits,
        }
    }

    /// The route that took the request.
    fn route(&self, ctx: &Ctx) -> Option<&Route> {
        ctx.route.map(|r| &self.gateway.routes[r])
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
            route: None,
            now: 0,
            token_read: false,
            session: None,
            backend: None,
            failure_observed: false,
            refused: Vec::new(),
            retried_stale: false,
            issue_start: None,
            error_status: 0,
            outcome: Outcome::None,
            http2: None,
        }
    }

    /// Refuses (400) a request whose target, `Host` or `Content-Length` could be read two
    /// ways, normalises the rest, and tells the connection's guard how the body is framed (it
    /// holds back the bytes after a header section until then). Pipelined requests are
    /// answered in order.
    async fn early_request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
        if session.is_http2() {
            if let Some(connection) = Http2Connection::of(session.digest()) {
                ctx.http2 = Some(connection.clone());
                if !connection.begin() {
                    return Err(Error::explain(
                        ErrorType::HTTPStatus(503),
                        "HTTP/2 connection over its budget",
                    ));
                }
            }
            // HTTP/2 frames its own requests: only the target and the host are ours to check.
            return check_http2_request(session.req_header()).map_err(|refusal| {
                Error::explain(ErrorType::HTTPStatus(400), refusal.to_string()).into_down()
            });
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

    /// Finds the route, refuses a request line plus header section beyond
    /// `limits.max_request_header_bytes` with 431, and answers 404 when no route took the
    /// request. Drops the header names' case when every cluster of the route says so.
    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        // Pingora's idle wait for the next request is a fixed 60 s; use ours, on a connection
        // that stays open: never where HTTP or Pingora decided to close (HTTP/1.0 without
        // keep-alive, Content-Length beside Transfer-Encoding, shutting down).
        if session.get_keepalive().is_some() && !session.is_process_shutting_down() {
            session.set_keepalive(Some(self.limits.keepalive_timeout.as_secs().max(1)));
        }
        if let Some(port) = self.redirect_https {
            ctx.error_status = 308;
            let resp = redirect_to_https(session.req_header(), port, session.server_addr())?;
            session.write_response_header(Box::new(resp), true).await?;
            return Ok(true);
        }
        // The route first, so that a 431 counts against it.
        ctx.route = self.router.route(session.req_header());
        let req = session.req_header();
        let size = req.method.as_str().len()
            + req.uri.path_and_query().map_or(0, |p| p.as_str().len())
            + req.uri.authority().map_or(0, |a| a.as_str().len())
            + req
                .headers
                .iter()
                .map(|(name, value)| name.as_str().len() + value.len() + 4)
                .sum::<usize>();
        if size > self.limits.max_request_header_bytes {
            ctx.error_status = 431;
            session.respond_error(431).await?;
            return Ok(true);
        }
        let Some(route) = self.route(ctx) else {
            ctx.error_status = 404;
            let mut resp = ResponseHeader::build(404, Some(2))?;
            resp.insert_header(http::header::CONTENT_LENGTH, "0")?;
            session.write_response_header(Box::new(resp), true).await?;
            return Ok(true);
        };
        // On the client's request rather than upstream: Pingora then copies one header map
        // per attempt, not two.
        if route.drop_header_case {
            drop_header_case(session.req_header_mut());
        }
        Ok(false)
    }

    /// Picks the backend: the session's, when it can be honoured; otherwise the route's weights
    /// over healthy active backends, skipping any that refused this request's earlier attempts.
    /// Nothing healthy: 503 at once.
    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let chosen = self.choose(session, ctx)?;
        let peer = chosen.backend.peer();
        ctx.backend = Some(chosen);
        ctx.failure_observed = false;
        Ok(Box::new(peer))
    }

    /// A backend that cannot be connected to is skipped and the request retried on another,
    /// while one is left: nothing was sent yet, so this is safe for any method.
    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut Ctx,
        e: Box<Error>,
    ) -> Box<Error> {
        if matches!(
            e.etype(),
            ErrorType::TLSHandshakeFailure | ErrorType::InvalidCert
        ) {
            // A configuration problem, not a passing failure: say which backend and why.
            if let (Some(route), Some(chosen)) = (self.route(ctx), &ctx.backend) {
                log::error!(
                    "cluster {} backend {} ({}): TLS to the backend failed: {}",
                    route.cluster(chosen.cluster).config.name,
                    chosen.backend.id,
                    peer._address,
                    e.root_cause()
                );
            }
        }
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

    /// Removes tether's cookie or header, then adds `X-Forwarded-For` (appended),
    /// `X-Forwarded-Proto` and `X-Forwarded-Host`; the `Host` header goes through as the client
    /// sent it.
    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(sessions) = self.route(ctx).and_then(|r| r.sessions.as_ref()) {
            sessions.strip(upstream_request)?;
        }
        // The client's address comes formatted from its connection (once per connection).
        let client = match (session.stream().and_then(GuardedStream::of), &ctx.http2) {
            (Some(guard), _) => guard.client_ip().cloned(),
            (None, Some(connection)) => connection.client_ip().cloned(),
            (None, None) => session.client_addr().and_then(client_ip_value),
        };
        let listener = session.server_addr().and_then(|a| a.as_inet().copied());
        add_forwarded(upstream_request, client, listener, self.tls)?;
        // HTTP/2 clients may split Cookie into several fields; HTTP/1.1 wants one line.
        if session.is_http2() && upstream_request.version != http::Version::HTTP_2 {
            join_cookie_fields(upstream_request)?;
        }
        Ok(())
    }

    /// Issues a token when the session is new, re-pinned, or due for a refresh. An HTTP/1.0
    /// client gets the response without chunked coding (closing the connection after it when
    /// it has no length); after a protocol switch the connection's bytes are no longer HTTP/1.
    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
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
        let sessions = self.route(ctx).and_then(|r| r.sessions.as_ref());
        if let (Some(sessions), Some(start), Some(chosen)) =
            (sessions, ctx.issue_start, &ctx.backend)
        {
            sessions.issue(
                upstream_response,
                chosen.backend.tag(0),
                start,
                ctx.now,
                self.tls,
            )?;
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
    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        if let Some(connection) = ctx.http2.take() {
            let abandoned = e.is_some_and(|e| e.esource() == &ErrorSource::Downstream);
            connection.end(abandoned);
        }
        self.observe_backend(session, e, ctx);
        self.account(session, ctx);
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
