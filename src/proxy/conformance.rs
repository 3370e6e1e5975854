//! What tether refuses or normalises in a client's HTTP/1 request, and in the response it
//! sends back, so that no message leaves tether with framing or a target that two HTTP
//! implementations could read two ways (request smuggling, RFC 9112 section 11.2).
//!
//! Pingora already refuses differing `Content-Length` values, `Transfer-Encoding` in HTTP/1.0,
//! a final coding other than chunked, and closes after a request with both `Content-Length` and
//! `Transfer-Encoding`. Here, on top of that (docs/security.md has each decision and why):
//! - a path with a `.` or `..` segment (plain or `%2e`): 400;
//! - a request target that is not origin-form (`/...`), absolute-form or `*`, or has bytes
//!   outside visible ASCII (controls, space, DEL, bytes >= 0x80): 400, as HAProxy does
//!   (Pingora has already cut a fragment off; control characters Pingora percent-encodes are
//!   seen by the connection guard);
//! - `chunked` named twice in `Transfer-Encoding`, and `Content_Length` or `Transfer_Encoding`
//!   (servers that map `_` to `-`, as CGI does, would frame by them): 400;
//! - a `Host` that is not a URI authority (spaces, controls, ...): 400;
//! - `Content-Length` given twice with one value: forwarded once;
//! - HTTP/1.0: `Expect` and `Upgrade` are ignored (RFC 9110 10.1.1, 7.8), and the response is
//!   sent without chunked coding;
//! - the backend's `Keep-Alive` response field is not passed on.

use http::header::{CONTENT_LENGTH, EXPECT, HOST, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderName, HeaderValue, Version};
use pingora_http::authority::{raw_target_authority, RawTargetAuthority};
use pingora_http::{RequestHeader, ResponseHeader};

use crate::downstream::Framing;

/// Why a request is refused with 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The request target has a byte outside visible ASCII, or is of no request-target form.
    Target,
    /// `Host` is not a URI authority.
    Host,
    /// `Content-Length` values that do not agree or do not parse.
    ContentLength,
    /// `chunked` twice, or a framing header's name written with `_`.
    Framing,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::Target => "invalid byte in the request target",
            Refusal::Host => "invalid Host",
            Refusal::ContentLength => "ambiguous Content-Length",
            Refusal::Framing => "ambiguous framing header",
        })
    }
}

/// Checks an HTTP/1 request, normalises it in place, and returns how its body is framed.
pub fn normalize_request(req: &mut RequestHeader) -> Result<Framing, Refusal> {
    if !valid_target(req.raw_path()) || has_dot_segment(req.uri.path()) {
        return Err(Refusal::Target);
    }
    // One pass over the fields (no lookups by name).
    let mut chunked = None::<usize>;
    let mut length = ContentLength::default();
    for (name, value) in &req.headers {
        if name == HOST {
            if !valid_authority(value.as_bytes()) {
                return Err(Refusal::Host);
            }
        } else if name == CONTENT_LENGTH {
            length.add(value.as_bytes())?;
        } else if name == TRANSFER_ENCODING {
            *chunked.get_or_insert(0) += value
                .as_bytes()
                .split(|&b| b == b',')
                .filter(|coding| coding.trim_ascii().eq_ignore_ascii_case(b"chunked"))
                .count();
        } else if framing_name_with_underscore(name.as_str()) {
            return Err(Refusal::Framing);
        }
    }
    if req.version < Version::HTTP_11 {
        // An HTTP/1.0 client cannot take a 100 or a protocol switch.
        req.remove_header(&EXPECT);
        req.remove_header(&UPGRADE);
    }
    match chunked {
        // Pingora refuses any final coding but chunked, and drops Content-Length beside it.
        Some(0 | 1) => return Ok(Framing::Chunked),
        Some(_) => return Err(Refusal::Framing),
        None => {}
    }
    if length.items > 1 {
        req.insert_header(CONTENT_LENGTH, HeaderValue::from(length.value))
            .map_err(|_| Refusal::ContentLength)?;
    }
    Ok(Framing::Length(length.value))
}

/// `Content-Length` values as they are read: every item the same number.
#[derive(Debug, Default)]
struct ContentLength {
    value: u64,
    /// Items seen, over every field line and comma list.
    items: usize,
}

impl ContentLength {
    fn add(&mut self, field: &[u8]) -> Result<(), Refusal> {
        for item in field.split(|&b| b == b',') {
            let item = item.trim_ascii();
            let n = std::str::from_utf8(item)
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or(Refusal::ContentLength)?;
            if self.items > 0 && self.value != n {
                return Err(Refusal::ContentLength);
            }
            self.value = n;
            self.items += 1;
        }
        Ok(())
    }
}

/// A request target of visible ASCII in origin-form, absolute-form or asterisk-form
/// (RFC 9112 3.2; authority-form is CONNECT's, which Pingora refuses).
fn valid_target(target: &[u8]) -> bool {
    let form = target.first() == Some(&b'/')
        || target == b"*"
        || matches!(
            raw_target_authority(target),
            RawTargetAuthority::Absolute { .. }
        );
    form && target.iter().all(u8::is_ascii_graphic)
}

/// Whether a path has a `.` or `..` segment, plain or percent-encoded (`%2e`): routes match the
/// path as sent, and a backend that resolves dot segments would read it as another path.
pub fn has_dot_segment(path: &str) -> bool {
    // Most paths have no `.` and no `%` at all.
    if memchr::memchr2(b'.', b'%', path.as_bytes()).is_none() {
        return false;
    }
    path.split('/').any(|segment| {
        let mut rest = segment.as_bytes();
        let mut dots = 0;
        while !rest.is_empty() {
            if rest[0] == b'.' {
                rest = &rest[1..];
            } else if rest.len() >= 3
                && rest[0] == b'%'
                && rest[1] == b'2'
                && rest[2] | 0x20 == b'e'
            {
                rest = &rest[3..];
            } else {
                return false;
            }
            dots += 1;
        }
        dots == 1 || dots == 2
    })
}

/// `content_length` or `transfer_encoding` (any case; header names come lowercase).
fn framing_name_with_underscore(name: &str) -> bool {
    name.contains('_') && matches!(name, "content_length" | "transfer_encoding")
}

/// `Host`: empty, or a URI authority (host and optional port, no userinfo): letters, digits,
/// `-._~`, `%`, sub-delims, and `:[]` for ports and IPv6 literals.
fn valid_authority(host: &[u8]) -> bool {
    host.iter()
        .all(|&b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:[]".contains(&b))
}

/// Checks an HTTP/2 request (whose framing and connection-specific fields the HTTP/2 layer has
/// checked): no dot segments in the path, and a `Host`, when sent, that is one valid authority
/// naming what `:authority` names (RFC 9113 8.3.1).
pub fn check_http2_request(req: &RequestHeader) -> Result<(), Refusal> {
    if has_dot_segment(req.uri.path()) {
        return Err(Refusal::Target);
    }
    let mut hosts = req.headers.get_all(HOST).iter();
    if let Some(host) = hosts.next() {
        let host = host.as_bytes();
        if hosts.next().is_some() || !valid_authority(host) {
            return Err(Refusal::Host);
        }
        if let Some(authority) = req.uri.authority() {
            if !authority.as_str().as_bytes().eq_ignore_ascii_case(host) {
                return Err(Refusal::Host);
            }
        }
    }
    Ok(())
}

/// Removes the backend's `Keep-Alive` (a hop-by-hop field, RFC 9110 7.6.1): how long the
/// client's connection stays open is tether's `keepalive_timeout`, not the backend's.
pub fn strip_hop_by_hop(resp: &mut ResponseHeader) {
    // A name made once: from a `&str` it would be parsed on every response.
    static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
    if resp.headers.contains_key(&KEEP_ALIVE) {
        resp.remove_header(&KEEP_ALIVE);
    }
}

/// Makes a response readable by an HTTP/1.0 client: no chunked coding (the body is then
/// delimited by closing the connection, unless it has a `Content-Length`). Returns whether the
/// connection must close after it.
pub fn adapt_response_for_http10(resp: &mut ResponseHeader) -> bool {
    let chunked = resp.remove_header(&TRANSFER_ENCODING).is_some();
    chunked || !resp.headers.contains_key(CONTENT_LENGTH)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(target: &[u8], headers: &[(&str, &[u8])]) -> RequestHeader {
        let mut req = RequestHeader::build("POST", target, None).unwrap();
        for (name, value) in headers {
            req.append_header(name.to_string(), HeaderValue::from_bytes(value).unwrap())
                .unwrap();
        }
        req
    }

    #[test]
    fn targets_outside_visible_ascii_are_refused() {
        for target in [
            &b"/caf\xc3\xa9"[..],
            b"/caf\xe9",
            b"/a\x01b",
            b"/a\x7fb",
            b"/a b",
            b"/a\tb",
            b"http://h.test/\xff",
            b"?x=1",
            b"x/y",
            b"h.test:80",
        ] {
            // Some of them Pingora cannot even build (and answers 400 itself).
            let Ok(mut req) = RequestHeader::build("GET", target, None) else {
                continue;
            };
            assert_eq!(
                normalize_request(&mut req),
                Err(Refusal::Target),
                "{}",
                target.escape_ascii()
            );
        }
        for target in [
            &b"/"[..],
            b"/a/b?c=d&e=%C3%A9",
            b"*",
            b"http://h.test:8/p?q",
        ] {
            let mut req = request(target, &[]);
            assert_eq!(normalize_request(&mut req), Ok(Framing::Length(0)));
        }
    }

    #[test]
    fn dot_segments_are_found_plain_or_encoded() {
        for path in [
            "/a/../b",
            "/..",
            "/.",
            "/a/./b",
            "/a/%2e%2E/b",
            "/%2e",
            "/a/.%2e/",
            "/a/..",
        ] {
            assert!(has_dot_segment(path), "{path}");
        }
        for path in [
            "/",
            "/a/b",
            "/a/.../b",
            "/a/..b",
            "/.well-known/x",
            "/a.b",
            "/%2e%2e%2e",
            "//",
        ] {
            assert!(!has_dot_segment(path), "{path}");
        }
        let mut req = request(b"/a/%2e%2e/admin", &[]);
        assert_eq!(normalize_request(&mut req), Err(Refusal::Target));
    }

    #[test]
    fn a_host_that_is_not_an_authority_is_refused() {
        for host in [
            &b"a b"[..],
            b"a\tb",
            b"a/b",
            b"u@h",
            b"h\"",
            b"\xc3\xa9.test",
        ] {
            let mut req = request(b"/", &[("Host", host)]);
            assert_eq!(normalize_request(&mut req), Err(Refusal::Host), "{host:?}");
        }
        for host in [
            &b""[..],
            b"a.test",
            b"A-b_c.test:8080",
            b"[::1]:80",
            b"127.0.0.1",
            b"xn--caf-dma.test",
        ] {
            let mut req = request(b"/", &[("Host", host)]);
            assert!(normalize_request(&mut req).is_ok(), "{host:?}");
        }
    }

    #[test]
    fn one_content_length_goes_upstream_once() {
        for values in [&["5", "5"][..], &["5, 5"], &["5,5", " 5 "]] {
            let headers: Vec<(&str, &[u8])> = values
                .iter()
                .map(|v| ("Content-Length", v.as_bytes()))
                .collect();
            let mut req = request(b"/", &headers);
            assert_eq!(normalize_request(&mut req), Ok(Framing::Length(5)));
            let all: Vec<_> = req.headers.get_all(CONTENT_LENGTH).iter().collect();
            assert_eq!(all, [&HeaderValue::from_static("5")], "{values:?}");
        }
        // Given once, it is left as written.
        let mut req = request(b"/", &[("Content-Length", b"007")]);
        assert_eq!(normalize_request(&mut req), Ok(Framing::Length(7)));
        assert_eq!(req.headers[CONTENT_LENGTH], "007");
        for values in [
            &["5", "6"][..],
            &["5, 6"],
            &["5,"],
            &["x"],
            &["-1"],
            &["+5"],
        ] {
            let headers: Vec<(&str, &[u8])> = values
                .iter()
                .map(|v| ("Content-Length", v.as_bytes()))
                .collect();
            let mut req = request(b"/", &headers);
            assert_eq!(
                normalize_request(&mut req),
                Err(Refusal::ContentLength),
                "{values:?}"
            );
        }
    }

    #[test]
    fn ambiguous_framing_headers_are_refused() {
        for headers in [
            &[
                ("Transfer-Encoding", &b"chunked"[..]),
                ("Transfer-Encoding", b"chunked"),
            ][..],
            &[("Transfer-Encoding", b"chunked, Chunked")],
            &[("Transfer_Encoding", b"chunked"), ("Content-Length", b"3")],
            &[("content_length", b"3")],
            &[("CONTENT_LENGTH", b"3")],
        ] {
            let mut req = request(b"/", headers);
            assert_eq!(
                normalize_request(&mut req),
                Err(Refusal::Framing),
                "{headers:?}"
            );
        }
        let mut req = request(
            b"/",
            &[("X_Custom", b"1"), ("Transfer-Encoding", b"gzip, chunked")],
        );
        assert_eq!(normalize_request(&mut req), Ok(Framing::Chunked));
    }

    #[test]
    fn framing_follows_the_headers() {
        let mut req = request(b"/", &[("Transfer-Encoding", b"chunked")]);
        assert_eq!(normalize_request(&mut req), Ok(Framing::Chunked));
        let mut req = request(b"/", &[]);
        assert_eq!(normalize_request(&mut req), Ok(Framing::Length(0)));
    }

    #[test]
    fn an_http10_request_loses_expect_and_upgrade() {
        let mut req = request(
            b"/",
            &[
                ("Expect", b"100-continue"),
                ("Upgrade", b"websocket"),
                ("X-A", b"1"),
            ],
        );
        req.set_version(Version::HTTP_10);
        normalize_request(&mut req).unwrap();
        assert!(req.headers.get(EXPECT).is_none() && req.headers.get(UPGRADE).is_none());
        assert_eq!(req.headers["x-a"], "1");
        // HTTP/1.1 keeps them.
        let mut req = request(b"/", &[("Expect", b"100-continue")]);
        normalize_request(&mut req).unwrap();
        assert!(req.headers.get(EXPECT).is_some());
    }

    #[test]
    fn http10_responses_lose_chunked_coding() {
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.append_header("Transfer-Encoding", "chunked").unwrap();
        assert!(adapt_response_for_http10(&mut resp));
        assert!(resp.headers.get(TRANSFER_ENCODING).is_none());

        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.append_header("Content-Length", "3").unwrap();
        assert!(!adapt_response_for_http10(&mut resp));
        assert_eq!(resp.headers[CONTENT_LENGTH], "3");

        let mut resp = ResponseHeader::build(200, None).unwrap();
        assert!(adapt_response_for_http10(&mut resp));
    }

    #[test]
    fn the_backends_keep_alive_stays_behind() {
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.append_header("Keep-Alive", "timeout=30").unwrap();
        resp.append_header("X-A", "1").unwrap();
        strip_hop_by_hop(&mut resp);
        assert!(resp.headers.get("keep-alive").is_none());
        assert_eq!(resp.headers["x-a"], "1");
    }
}
