//! What a finished request leaves behind: its counters and its access line.

use log::info;
use pingora_proxy::Session;

use super::{Ctx, Proxy};
use crate::logging::{json_access, ACCESS};
use crate::metrics::NONE;
use crate::routing::Route;
use crate::session::Outcome;

impl Proxy {
    /// Counts the response and writes the access line (no token values, no query strings).
    pub(super) fn account(&self, session: &Session, ctx: &Ctx) {
        let status = session
            .response_written()
            .map_or(ctx.error_status, |r| r.status.as_u16());
        let elapsed = ctx.start.elapsed();
        let route = self.route(ctx);
        if let Some(route) = route {
            let c = &route.counters;
            match ctx.outcome {
                Outcome::None => {}
                Outcome::Created => c.created.inc(),
                Outcome::Routed => c.routed.inc(),
                Outcome::FailedOpen => c.failed_open.inc(),
                Outcome::FailedClosed => c.failed_closed.inc(),
            }
        }
        if let (Outcome::Routed, Some(chosen)) = (ctx.outcome, &ctx.backend) {
            chosen.backend.member.sessions_routed.inc();
        }
        let requests = route.map_or(&self.gateway.no_route, |r| &r.requests);
        let backend = match (&ctx.backend, route) {
            (Some(c), Some(r)) => Some(r.cluster(c.cluster).counted(&c.backend)),
            _ => None,
        };
        requests.observe(backend, status, elapsed.as_secs_f64());
        if log::log_enabled!(target: ACCESS, log::Level::Info) {
            self.access_line(session, ctx, route, status, elapsed);
        }
    }

    /// Writes the access line, text or JSON.
    fn access_line(
        &self,
        session: &Session,
        ctx: &Ctx,
        route: Option<&Route>,
        status: u16,
        elapsed: std::time::Duration,
    ) {
        let req = session.req_header();
        // HTTP/2 carries the host in `:authority`, often without a `Host` field.
        let host = req
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri.authority().map(|a| a.as_str()));
        let (cluster, backend) = match (&ctx.backend, route) {
            (Some(c), Some(r)) => (
                Some(r.cluster(c.cluster).config.name.as_str()),
                Some(c.backend.id.as_str()),
            ),
            _ => (None, None),
        };
        let route_name = route.map(|r| r.config.name.as_str());
        if json_access() {
            let client = session.client_addr().map(|a| a.to_string());
            let record = AccessRecord {
                time: humantime::format_rfc3339_millis(std::time::SystemTime::now()),
                client: client.as_deref(),
                method: req.method.as_str(),
                host,
                path: req.uri.path(),
                protocol: protocol_name(req.version),
                status,
                route: route_name,
                cluster,
                backend,
                session: ctx.outcome.as_str(),
                duration_ms: elapsed.as_secs_f64() * 1000.0,
                bytes_sent: session.body_bytes_sent(),
                tls: self.tls,
            };
            match serde_json::to_string(&record) {
                Ok(line) => info!(target: ACCESS, "{line}"),
                Err(e) => log::warn!("cannot write an access line: {e}"),
            }
            return;
        }
        // Formatted straight into the line: no string of its own.
        let client: &dyn std::fmt::Display = match session.client_addr() {
            Some(addr) => addr,
            None => &"-",
        };
        info!(
            target: ACCESS,
            "{client} \"{} {}\" {status} host={} route={} cluster={} backend={} session={} protocol={} tls={} duration={}ms",
            req.method,
            req.uri.path(),
            host.unwrap_or("-"),
            route_name.unwrap_or(NONE),
            cluster.unwrap_or(NONE),
            backend.unwrap_or(NONE),
            ctx.outcome.as_str(),
            protocol_name(req.version),
            self.tls,
            Millis(elapsed)
        );
    }
}

/// One access line in JSON (SPEC 9): `null` where there was no route, cluster or backend.
#[derive(serde::Serialize)]
struct AccessRecord<'a> {
    #[serde(serialize_with = "display")]
    time: humantime::Rfc3339Timestamp,
    client: Option<&'a str>,
    method: &'a str,
    host: Option<&'a str>,
    path: &'a str,
    protocol: &'a str,
    status: u16,
    route: Option<&'a str>,
    cluster: Option<&'a str>,
    backend: Option<&'a str>,
    session: &'a str,
    duration_ms: f64,
    bytes_sent: usize,
    tls: bool,
}

fn display<S: serde::Serializer, T: std::fmt::Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// The protocol as the access log names it.
pub(super) fn protocol_name(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
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
