//! Choosing the backend of a request: the token read once, the session decision, the route's
//! weights, and what a backend failing means for the session.

use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_proxy::Session;

use super::{Ctx, Proxy};
use crate::downstream::GuardedStream;
use crate::routing::{Chosen, Route};
use crate::session::{decide, unix_now, Decision, Outcome, Presented, Sessions, TokenBackend};
use crate::token::Reject;

fn unavailable(why: &'static str) -> Box<Error> {
    Error::explain(ErrorType::HTTPStatus(503), why)
}

impl Proxy {
    /// The backend for this attempt of the request.
    pub(super) fn choose(&self, session: &Session, ctx: &mut Ctx) -> Result<Chosen> {
        let route = self
            .route(ctx)
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route chosen"))?;
        if let Some(sessions) = &route.sessions {
            if !ctx.token_read {
                ctx.now = unix_now();
                read_token(route, sessions, session, ctx);
            }
            match self.decision(route, sessions, ctx) {
                Decision::Routed(chosen) => {
                    let token = ctx.session.take();
                    ctx.outcome = Outcome::Routed;
                    ctx.issue_start = token
                        .filter(|t| sessions.needs_refresh(t, ctx.now))
                        .map(|t| t.start);
                    // Kept for retries: the same backend again after a keep-alive race.
                    ctx.session = token;
                    return Ok(chosen);
                }
                Decision::FailedClosed => {
                    ctx.session = None;
                    ctx.outcome = Outcome::FailedClosed;
                    return Err(unavailable("session backend unavailable (strict)"));
                }
                Decision::New(outcome) => {
                    ctx.session = None;
                    // A retry after a failed-open pick stays failed-open.
                    if ctx.outcome != Outcome::FailedOpen {
                        ctx.outcome = outcome;
                    }
                    ctx.issue_start = Some(ctx.now);
                }
            }
        }
        let refused = &ctx.refused;
        route
            .pick(&|pos, b| refused.contains(&(pos, b.slot())))
            .ok_or_else(|| unavailable("no healthy backend"))
    }

    /// What the presented token means now: its backend found in the route's clusters and
    /// able to serve it, or not.
    fn decision(&self, route: &Route, sessions: &Sessions, ctx: &Ctx) -> Decision<Chosen> {
        let token = ctx.session.as_ref().map(|t| match route.find(t) {
            Some(chosen)
                if chosen.backend.serves_sessions()
                    && !ctx
                        .refused
                        .contains(&(chosen.cluster, chosen.backend.slot())) =>
            {
                TokenBackend::Serves(chosen)
            }
            _ => TokenBackend::Unavailable,
        });
        decide(token, sessions.config().strict)
    }

    /// The chosen backend failed before anything reached the client (refused the connection,
    /// or dropped it): retry on another backend while one is left. A strict session's backend
    /// failing answers 503 instead, keeping the token.
    pub(super) fn backend_failed(&self, ctx: &mut Ctx, mut e: Box<Error>) -> Box<Error> {
        let Some(route) = self.route(ctx) else {
            return e;
        };
        if let Some(chosen) = &ctx.backend {
            ctx.refused.push((chosen.cluster, chosen.backend.slot()));
            route
                .cluster(chosen.cluster)
                .observe(&chosen.backend, false);
            ctx.failure_observed = true;
        }
        let strict = route.sessions.as_ref().is_some_and(|s| s.config().strict);
        if ctx.outcome == Outcome::Routed && strict {
            ctx.outcome = Outcome::FailedClosed;
            ctx.issue_start = None;
            return Error::because(
                ErrorType::HTTPStatus(503),
                "session backend unavailable (strict)",
                e,
            );
        }
        if ctx.outcome == Outcome::Routed {
            // The session's backend refused: the next attempt decides again, as failed over.
            ctx.outcome = Outcome::None;
        }
        let refused = &ctx.refused;
        e.set_retry(route.any_available(&|pos, b| refused.contains(&(pos, b.slot()))));
        e
    }
}

impl Proxy {
    /// Tells outlier detection how the chosen backend did: a response below 500 is a success;
    /// a 5xx, a timeout or a connection failing is a failure (connection failures that led to a
    /// retry were told as they happened). The client failing, or tether answering itself, says
    /// nothing of the backend.
    pub(super) fn observe_backend(&self, session: &Session, e: Option<&Error>, ctx: &Ctx) {
        let (Some(route), Some(chosen)) = (self.route(ctx), &ctx.backend) else {
            return;
        };
        if ctx.failure_observed || ctx.error_status != 0 && e.is_none() {
            return;
        }
        let ok = match e {
            Some(e) if e.esource() == &ErrorSource::Upstream => false,
            Some(_) => return,
            None => match session.response_written() {
                Some(response) => response.status.as_u16() < 500,
                None => return,
            },
        };
        route.cluster(chosen.cluster).observe(&chosen.backend, ok);
    }
}

/// Reads the request's token once, counting a rejection. A valid token whose backend the
/// route no longer has counts as `unknown_backend` and is then a session that lost its
/// backend (failed_open / failed_closed), not merely a bad token.
fn read_token(route: &Route, sessions: &Sessions, session: &Session, ctx: &mut Ctx) {
    ctx.token_read = true;
    // The connection's last valid token: HTTP/1's guard, or what HTTP/2's streams share.
    let memo = match (session.stream().and_then(GuardedStream::of), &ctx.http2) {
        (Some(guard), _) => Some(guard.token_memo()),
        (None, Some(connection)) => Some(connection.token_memo()),
        (None, None) => None,
    };
    match sessions.find(session.req_header(), ctx.now, memo) {
        Presented::Nothing => {}
        Presented::Valid(token) => {
            if route.find(&token).is_none() {
                route.counters.rejected[Reject::UnknownBackend.index()].inc();
            }
            ctx.session = Some(token);
        }
        Presented::Rejected(reason) => route.counters.rejected[reason.index()].inc(),
    }
}
