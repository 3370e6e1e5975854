//! Session persistence of one service on the wire: finding the token in a request, removing
//! it before the request goes upstream, and issuing a token in the response.
//! The token itself is [`crate::token`].

use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{COOKIE, SET_COOKIE};
use http::HeaderValue;
use pingora_error::Result;
use pingora_http::{RequestHeader, ResponseHeader};

use crate::config::{LifetimeType, ServiceConfig, SessionConfig, SessionKind};
use crate::token::{KeyRing, Lifetimes, Reject, ServiceCodec, Session, TokenMemo, TOKEN_LEN};

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

/// Session persistence of one service.
pub struct Sessions {
    config: SessionConfig,
    codec: ServiceCodec,
    /// `; Path=/; Domain=..; Secure; HttpOnly; SameSite=Lax`: what every Set-Cookie ends with.
    cookie_attributes: String,
    /// Re-issue a valid token once it is this old, so a session in use never goes idle.
    refresh_after: Option<u32>,
}

impl Sessions {
    /// The session persistence of `service`, if it has any.
    pub fn new(ring: &Arc<KeyRing>, service: &ServiceConfig) -> Option<Sessions> {
        let config = service.session.clone()?;
        let secs = |d: Duration| u32::try_from(d.as_secs().max(1)).unwrap_or(u32::MAX);
        let lifetimes = Lifetimes {
            absolute: config.absolute_timeout.map(secs),
            idle: config.idle_timeout.map(secs),
        };
        let ids: Vec<&str> = service.backends.iter().map(|b| b.id.as_str()).collect();
        let codec = ServiceCodec::new(ring.clone(), &service.name, &ids, lifetimes);
        let c = &config.cookie;
        let mut cookie_attributes = format!("; Path={}", c.path);
        if let Some(domain) = &c.domain {
            cookie_attributes.push_str("; Domain=");
            cookie_attributes.push_str(domain);
        }
        if c.secure {
            cookie_attributes.push_str("; Secure");
        }
        if c.http_only {
            cookie_attributes.push_str("; HttpOnly");
        }
        cookie_attributes.push_str("; SameSite=");
        cookie_attributes.push_str(c.same_site.as_str());
        // A tenth of the idle timeout: a session whose requests are less than 90% of
        // idle_timeout apart never expires, at the cost of one new token per tenth.
        let refresh_after = lifetimes.idle.map(|idle| (idle / 10).max(1));
        Some(Sessions {
            config,
            codec,
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
            Some(memo) => self.codec.decode_remembered(value, now, memo),
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

    /// Adds a token for `backend` to the response: a `Set-Cookie` placed before the backend's
    /// own (which pass through untouched), or the session header.
    pub fn issue(
        &self,
        resp: &mut ResponseHeader,
        backend: usize,
        start: u32,
        now: u32,
    ) -> Result<()> {
        match self.config.kind {
            SessionKind::Header => {
                let token = self.codec.encode(backend, start, now);
                resp.insert_header(self.config.name.clone(), token)
            }
            SessionKind::Cookie => {
                let cookie = self.set_cookie(backend, start, now);
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
    pub fn set_cookie(&self, backend: usize, start: u32, now: u32) -> String {
        const MAX_AGE: &str = "; Max-Age=";
        const EXPIRES: &str = "; Expires=";
        /// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) is always this long.
        const IMF_FIXDATE_LEN: usize = 29;
        // Validation guarantees absolute_timeout with Permanent.
        let left = (self.config.cookie.lifetime_type == LifetimeType::Permanent).then(|| {
            let absolute = self.codec.lifetimes().absolute.unwrap_or(0);
            start.saturating_add(absolute).saturating_sub(now)
        });
        let lifetime_len = left.map_or(0, |left| {
            MAX_AGE.len() + decimal_digits(left) + EXPIRES.len() + IMF_FIXDATE_LEN
        });
        let len =
            self.config.name.len() + 1 + TOKEN_LEN + lifetime_len + self.cookie_attributes.len();
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
        cookie.push_str(&self.cookie_attributes);
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

/// Splits one `Cookie` header value into `name=value` pairs (RFC 6265 5.4; lenient about
/// spaces and quotes, strict about the name) and yields the values of cookies named `name`.
pub fn cookie_values<'a>(header: &'a [u8], name: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    pairs(header).filter_map(move |pair| {
        let value = value_if_named(pair, name)?;
        Some(
            value
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(value),
        )
    })
}

/// The value of one `name=value` pair (spaces around either trimmed), if it is named `name`.
#[inline]
fn value_if_named<'a>(pair: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let pair = pair.trim_ascii();
    let eq = memchr::memchr(b'=', pair)?;
    (pair[..eq].trim_ascii() == name).then(|| pair[eq + 1..].trim_ascii())
}

/// The `;`-separated pieces of a `Cookie` header value, untrimmed (as `split` on `;` would
/// give them, found with memchr: a token is most of the bytes and holds no `;`).
fn pairs(header: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(header);
    std::iter::from_fn(move || {
        let current = rest?;
        match memchr::memchr(b';', current) {
            Some(at) => {
                rest = Some(&current[at + 1..]);
                Some(&current[..at])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

/// The `Cookie` header value without the cookies named `name`; every other byte kept. The
/// result is allocated at its exact size, so it becomes a header value without another copy.
pub fn without_cookie(header: &[u8], name: &[u8]) -> Vec<u8> {
    without_ours(header, name).unwrap_or_else(|| header.to_vec())
}

/// As [`without_cookie`], but `None` when there is no cookie named `name` (nothing to rewrite).
fn without_ours(header: &[u8], name: &[u8]) -> Option<Vec<u8>> {
    let mut len = 0;
    if !kept_pieces(header, name, |piece| len += piece.len()) {
        return None;
    }
    if len == 0 {
        return Some(Vec::new());
    }
    let mut out = Vec::with_capacity(len);
    kept_pieces(header, name, |piece| out.extend_from_slice(piece));
    Some(out)
}

/// Calls `emit` with the pieces of `header` that remain once the cookies named `name` are gone;
/// returns whether there was one to remove.
fn kept_pieces(header: &[u8], name: &[u8], mut emit: impl FnMut(&[u8])) -> bool {
    let mut first = true;
    let mut removed = false;
    for pair in pairs(header) {
        if value_if_named(pair, name).is_some() {
            removed = true;
            continue;
        }
        let piece = if first {
            // The first kept pair loses the space that separated it from a removed one.
            pair.trim_ascii_start()
        } else {
            emit(b";");
            pair
        };
        // An empty first piece is not a pair: the next one is still first.
        first = first && piece.is_empty();
        emit(piece);
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values<'a>(header: &'a str, name: &'a str) -> Vec<&'a str> {
        cookie_values(header.as_bytes(), name.as_bytes())
            .map(|v| std::str::from_utf8(v).unwrap())
            .collect()
    }

    #[test]
    fn cookie_values_find_every_cookie_of_the_name() {
        assert_eq!(values("a=1; s=x; b=2; s=y", "s"), vec!["x", "y"]);
        assert_eq!(values("s=\"quoted\"", "s"), vec!["quoted"]);
        assert_eq!(values(" s = spaced ;", "s"), vec!["spaced"]);
        assert_eq!(values("ss=1; s_=2; S=3", "s"), Vec::<&str>::new());
        assert_eq!(values("s", "s"), Vec::<&str>::new());
        assert_eq!(values("s=", "s"), vec![""]);
        assert_eq!(values(";;;=;s=a=b", "s"), vec!["a=b"]);
    }

    #[test]
    fn cookie_values_take_any_bytes() {
        let header = b"a=\xff\xfe; s=\x00\x01; \xc3(=1";
        let found: Vec<&[u8]> = cookie_values(header, b"s").collect();
        assert_eq!(found, vec![&b"\x00\x01"[..]]);
    }

    fn sessions(persistence: &str) -> Sessions {
        let yaml = format!(
            "services:\n  - name: web\n    listen: 127.0.0.1:8000\n    backends: [127.0.0.1:9001]\n    session_persistence: {persistence}\n"
        );
        let config =
            crate::config::Config::parse(&yaml, std::path::Path::new("."), &|_| None).unwrap();
        let ring = crate::token::KeyRing::random().unwrap();
        Sessions::new(&std::sync::Arc::new(ring), &config.services[0]).unwrap()
    }

    #[test]
    fn pairs_split_like_split() {
        for header in ["", ";", "a=1", "a=1;", ";;a", "a=1; b=2;c", " ; ;"] {
            let ours: Vec<&[u8]> = pairs(header.as_bytes()).collect();
            let std: Vec<&[u8]> = header.as_bytes().split(|&b| b == b';').collect();
            assert_eq!(ours, std, "{header:?}");
        }
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
                let cookie = s.set_cookie(0, start, now);
                assert_eq!(cookie.len(), cookie.capacity(), "{cookie}");
            }
        }
        let cookie = permanent.set_cookie(0, now - 28_799, now);
        assert!(cookie.contains("; Max-Age=1; Expires="), "{cookie}");
    }

    #[test]
    fn decimal_digits_counts() {
        for n in [0, 9, 10, 99, 100, 600, 28_800, 999_999, u32::MAX] {
            assert_eq!(decimal_digits(n), n.to_string().len(), "{n}");
        }
    }

    #[test]
    fn without_cookie_keeps_every_other_byte() {
        let strip = |h: &str| String::from_utf8(without_cookie(h.as_bytes(), b"s")).unwrap();
        assert_eq!(strip("a=1; s=x; b=2"), "a=1; b=2");
        assert_eq!(strip("s=x; a=1;b=2"), "a=1;b=2");
        assert_eq!(strip("a=1;  b=2 ; s=x"), "a=1;  b=2 ");
        assert_eq!(strip("s=x"), "");
        assert_eq!(strip("s=x; s=y"), "");
        assert_eq!(strip("a=1; sx=2"), "a=1; sx=2");
        assert_eq!(strip("weird;;a=\"q\""), "weird;;a=\"q\"");
        assert_eq!(strip("  ; s=x; a=1"), "a=1");
        let kept = without_cookie(b"a=1; s=x; b=2", b"s");
        assert_eq!(
            kept.capacity(),
            kept.len(),
            "exact size: no copy into the header value"
        );
    }
}
