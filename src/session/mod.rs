//! Session persistence of one route on the wire: finding the token in a request, removing it
//! before the request goes upstream, and issuing a token in the response. The token itself is
//! [`crate::token`]; what a token means for a request is [`decide`].

mod cookie;
mod decide;

use cookie::without_ours;
pub use cookie::{cookie_values, without_cookie};
pub use decide::{decide, Decision, Outcome, TokenBackend};

use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{COOKIE, SET_COOKIE};
use http::HeaderValue;
use pingora_error::Result;
use pingora_http::{RequestHeader, ResponseHeader};

use crate::config::{LifetimeType, RouteConfig, Secure, SessionConfig, SessionKind};
use crate::token::{
    BackendTag, KeyRing, Lifetimes, Reject, RouteCodec, Session, TokenMemo, TOKEN_LEN,
};

/// Most candidate tokens tried per request: many cookies of our name cost no more than this.
const MAX_CANDIDATES: usize = 8;

/// The current wall-clock time in Unix seconds (tokens must read alike on every instance).
pub fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}

/// What a request presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented {
    /// No token of ours.
    Nothing,
    /// A valid token (the first valid one, when there were several).
    Valid(Session),
    /// Only invalid tokens; the reason is the first one's.
    Rejected(Reject),
}

/// Session persistence of one route.
pub struct Sessions {
    config: SessionConfig,
    codec: RouteCodec,
    /// The route's number: a connection's remembered token is only for its own route.
    scope: usize,
    /// `; Path=/; Domain=..; HttpOnly; SameSite=Lax`: what every Set-Cookie ends with, without
    /// and with `Secure`.
    cookie_attributes: [String; 2],
    /// Re-issue a valid token once it is this old, so a session in use never goes idle.
    refresh_after: Option<u32>,
}

impl Sessions {
    /// The session persistence of `route` (number `scope`), if it has any.
    pub fn new(ring: &Arc<KeyRing>, route: &RouteConfig, scope: usize) -> Option<Sessions> {
        let config = route.session.clone()?;
        let secs = |d: Duration| u32::try_from(d.as_secs().max(1)).unwrap_or(u32::MAX);
        let lifetimes = Lifetimes {
            absolute: config.absolute_timeout.map(secs),
            idle: config.idle_timeout.map(secs),
        };
        let codec = RouteCodec::new(ring.clone(), &route.name, lifetimes);
        let c = &config.cookie;
        let attributes = |secure: bool| {
            let mut a = format!("; Path={}", c.path);
            if let Some(domain) = &c.domain {
                a.push_str("; Domain=");
                a.push_str(domain);
            }
            if secure {
                a.push_str("; Secure");
            }
            if c.http_only {
                a.push_str("; HttpOnly");
            }
            a.push_str("; SameSite=");
            a.push_str(c.same_site.as_str());
            a
        };
        let cookie_attributes = [attributes(false), attributes(true)];
        // A tenth of the idle timeout: a session whose requests are less than 90% of
        // idle_timeout apart never expires, at the cost of one new token per tenth.
        let refresh_after = lifetimes.idle.map(|idle| (idle / 10).max(1));
        Some(Sessions {
            config,
            codec,
            scope,
            cookie_attributes,
            refresh_after,
        })
    }

    /// The policy.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// Finds our token in the request: every `Cookie` header and every cookie of our name, or
    /// every value of our header. The first valid one wins. `memo` is the client connection's
    /// last valid token, when the connection keeps one.
    pub fn find(&self, req: &RequestHeader, now: u32, memo: Option<&TokenMemo>) -> Presented {
        let mut first_reject = None;
        let decode = |value: &[u8]| match memo {
            Some(memo) => self.codec.decode_remembered(value, now, memo, self.scope),
            None => self.codec.decode(value, now),
        };
        let mut check = |value: &[u8]| match decode(value) {
            Ok(session) => Some(session),
            Err(reason) => {
                first_reject.get_or_insert(reason);
                None
            }
        };
        let name = self.config.name.as_bytes();
        let found = match self.config.kind {
            SessionKind::Cookie => req
                .headers
                .get_all(COOKIE)
                .iter()
                .flat_map(|h| cookie_values(h.as_bytes(), name))
                .take(MAX_CANDIDATES)
                .find_map(&mut check),
            SessionKind::Header => req
                .headers
                .get_all(self.config.name.as_str())
                .iter()
                .take(MAX_CANDIDATES)
                .find_map(|v| check(v.as_bytes().trim_ascii())),
        };
        match (found, first_reject) {
            (Some(session), _) => Presented::Valid(session),
            (None, Some(reason)) => Presented::Rejected(reason),
            (None, None) => Presented::Nothing,
        }
    }

    /// Removes our cookie (only ours: the rest of `Cookie` stays byte for byte) or our header
    /// from the request that goes upstream.
    pub fn strip(&self, req: &mut RequestHeader) -> Result<()> {
        match self.config.kind {
            SessionKind::Header => {
                req.remove_header(self.config.name.as_str());
            }
            SessionKind::Cookie => {
                let name = self.config.name.as_bytes();
                let mut lines = req.headers.get_all(COOKIE).iter();
                if let (Some(line), None) = (lines.next(), lines.next()) {
                    // One Cookie line, the usual case: replaced in place, or removed when it
                    // held only ours.
                    match without_ours(line.as_bytes(), name) {
                        None => {}
                        Some(kept) if kept.is_empty() => {
                            req.remove_header(&COOKIE);
                        }
                        Some(kept) => req.insert_header("Cookie", kept)?,
                    }
                    return Ok(());
                }
                let lines: Vec<(HeaderValue, Option<Vec<u8>>)> = req
                    .headers
                    .get_all(COOKIE)
                    .iter()
                    .map(|line| (line.clone(), without_ours(line.as_bytes(), name)))
                    .collect();
                if lines.iter().all(|(_, stripped)| stripped.is_none()) {
                    return Ok(());
                }
                req.remove_header(&COOKIE);
                for (line, stripped) in lines {
                    match stripped {
                        None => {
                            req.append_header("Cookie", line)?;
                        }
                        Some(kept) if !kept.is_empty() => {
                            req.append_header("Cookie", kept)?;
                        }
                        // It held only ours: the line goes.
                        Some(_) => {}
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether a valid token should be sent again: to keep an idle timeout from running out,
    /// or to move a session from a retiring key to the signing key.
    pub fn needs_refresh(&self, session: &Session, now: u32) -> bool {
        session.key_index != 0
            || self
                .refresh_after
                .is_some_and(|after| now.saturating_sub(session.last) >= after)
    }

    /// Adds a token for the backend tagged `backend` to the response: a `Set-Cookie` placed
    /// before the backend's own (which pass through untouched), or the session header. `tls`:
    /// the request came over TLS (`secure: auto` then sets `Secure`).
    pub fn issue(
        &self,
        resp: &mut ResponseHeader,
        backend: &BackendTag,
        start: u32,
        now: u32,
        tls: bool,
    ) -> Result<()> {
        match self.config.kind {
            SessionKind::Header => {
                let token = self.codec.encode(backend, start, now);
                resp.insert_header(self.config.name.clone(), token)
            }
            SessionKind::Cookie => {
                let cookie = self.set_cookie(backend, start, now, tls);
                let theirs: Vec<HeaderValue> =
                    resp.headers.get_all(SET_COOKIE).iter().cloned().collect();
                resp.insert_header("Set-Cookie", cookie)?;
                for value in theirs {
                    resp.append_header("Set-Cookie", value)?;
                }
                Ok(())
            }
        }
    }

    /// The `Set-Cookie` value for a new token. Allocated once, at its exact size, so it becomes
    /// the header value without another allocation.
    pub fn set_cookie(&self, backend: &BackendTag, start: u32, now: u32, tls: bool) -> String {
        const MAX_AGE: &str = "; Max-Age=";
        const EXPIRES: &str = "; Expires=";
        /// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) is always this long.
        const IMF_FIXDATE_LEN: usize = 29;
        let secure = match self.config.cookie.secure {
            Secure::Auto => tls,
            Secure::Always => true,
            Secure::Never => false,
        };
        let attributes = &self.cookie_attributes[usize::from(secure)];
        // Validation guarantees absolute_timeout with Permanent.
        let left = (self.config.cookie.lifetime_type == LifetimeType::Permanent).then(|| {
            let absolute = self.codec.lifetimes().absolute.unwrap_or(0);
            start.saturating_add(absolute).saturating_sub(now)
        });
        let lifetime_len = left.map_or(0, |left| {
            MAX_AGE.len() + decimal_digits(left) + EXPIRES.len() + IMF_FIXDATE_LEN
        });
        let len = self.config.name.len() + 1 + TOKEN_LEN + lifetime_len + attributes.len();
        let mut cookie = String::with_capacity(len);
        cookie.push_str(&self.config.name);
        cookie.push('=');
        self.codec.encode_into(backend, start, now, &mut cookie);
        if let Some(left) = left {
            let expires = UNIX_EPOCH + Duration::from_secs(u64::from(now) + u64::from(left));
            let _ = write!(
                cookie,
                "{MAX_AGE}{left}{EXPIRES}{}",
                httpdate::HttpDate::from(expires)
            );
        }
        cookie.push_str(attributes);
        debug_assert_eq!(
            cookie.len(),
            cookie.capacity(),
            "Set-Cookie length computed wrong"
        );
        cookie
    }
}

/// How many decimal digits `n` is written with.
fn decimal_digits(n: u32) -> usize {
    n.checked_ilog10().map_or(1, |log| log as usize + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions(persistence: &str) -> Sessions {
        let yaml = format!(
            "services:\n  - name: web\n    listen: 127.0.0.1:8000\n    backends: [127.0.0.1:9001]\n    session_persistence: {persistence}\n"
        );
        let config =
            crate::config::Config::parse(&yaml, std::path::Path::new("."), &|_| None).unwrap();
        let ring = crate::token::KeyRing::random().unwrap();
        Sessions::new(&Arc::new(ring), &config.routes[0], 0).unwrap()
    }

    #[test]
    fn strip_of_one_cookie_line() {
        let cookie = sessions("{type: cookie, name: s}");
        let stripped = |line: &str| {
            let mut req = RequestHeader::build("GET", b"/", None).unwrap();
            req.append_header("Host", "h").unwrap();
            req.append_header("Cookie", line).unwrap();
            cookie.strip(&mut req).unwrap();
            let lines: Vec<_> = req.headers.get_all(COOKIE).iter().cloned().collect();
            assert_eq!(req.headers.len(), 1 + lines.len(), "other headers kept");
            lines
        };
        assert!(stripped("s=x").is_empty(), "only ours: the header goes");
        assert!(stripped(" s=x ; s=y").is_empty());
        assert_eq!(stripped("a=1; s=x; b=2"), ["a=1; b=2"]);
        // Not ours: left exactly as sent, including oddities that a rewrite would change.
        assert_eq!(stripped(";a=1;; sx=2"), [";a=1;; sx=2"]);
    }

    #[test]
    fn strip_of_several_cookie_lines() {
        let cookie = sessions("{type: cookie, name: s}");
        let stripped = |lines: &[&str]| {
            let mut req = RequestHeader::build("GET", b"/", None).unwrap();
            for line in lines {
                req.append_header("Cookie", *line).unwrap();
            }
            cookie.strip(&mut req).unwrap();
            let kept: Vec<_> = req.headers.get_all(COOKIE).iter().cloned().collect();
            kept
        };
        // Lines without ours stay as sent, in order; a line of only ours goes.
        assert_eq!(
            stripped(&[";a=1", "s=x", " b=2; s=y; c=3"]),
            [";a=1", "b=2; c=3"]
        );
        assert_eq!(stripped(&[";a=1", " b=2"]), [";a=1", " b=2"]);
        assert!(stripped(&["s=x", "s=y"]).is_empty());
    }

    #[test]
    fn set_cookie_is_allocated_at_its_exact_size() {
        let permanent = sessions(
            "{type: Cookie, name: sid, absolute_timeout: 8h, cookie: {lifetime_type: Permanent, domain: example.com, secure: true, same_site: None}}",
        );
        let session = sessions("{type: Cookie, name: a_longer_name, idle_timeout: 30m}");
        let now = unix_now();
        for (start, now) in [
            (now, now),
            (now - 5, now),
            (now - 8 * 3600, now),
            (now - 28_799, now),
        ] {
            for s in [&permanent, &session] {
                let cookie = s.set_cookie(&[0; 8], start, now, true);
                assert_eq!(cookie.len(), cookie.capacity(), "{cookie}");
            }
        }
        let cookie = permanent.set_cookie(&[0; 8], now - 28_799, now, false);
        assert!(cookie.contains("; Max-Age=1; Expires="), "{cookie}");
    }

    #[test]
    fn decimal_digits_counts() {
        for n in [0, 9, 10, 99, 100, 600, 28_800, 999_999, u32::MAX] {
            assert_eq!(decimal_digits(n), n.to_string().len(), "{n}");
        }
    }
}
