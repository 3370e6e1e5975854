//! The request tether sends upstream: `X-Forwarded-*`, a `Host` where the client sent none, and
//! (when asked) header names without their case.

use std::net::SocketAddr;

use http::header::COOKIE;
use http::{HeaderName, HeaderValue};
use pingora_error::Result;
use pingora_http::authority::raw_target_authority;
use pingora_http::RequestHeader;

/// Joins the `Cookie` fields of a request into one line, `; ` between them (RFC 9113 8.2.3:
/// what an HTTP/2 client may split must be one line for HTTP/1.1).
pub fn join_cookie_fields(req: &mut RequestHeader) -> Result<()> {
    let mut fields = req.headers.get_all(COOKIE).iter();
    let (Some(first), Some(_)) = (fields.next(), fields.next()) else {
        return Ok(());
    };
    let mut joined = first.as_bytes().to_vec();
    for field in req.headers.get_all(COOKIE).iter().skip(1) {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(field.as_bytes());
    }
    req.insert_header(COOKIE, joined)?;
    Ok(())
}

/// Forgets the case the client wrote header names in, so that Pingora keeps one header map
/// instead of two (names go out lowercase, a few standard ones title-cased, as HTTP/2 would
/// carry them). Only for an origin-form target (`/path?query`, valid UTF-8): the request line
/// is then rebuilt from the URI byte for byte; any other target keeps its exact bytes and its
/// header case.
pub fn drop_header_case(req: &mut RequestHeader) {
    if !req.has_case() || !req.raw_path_is_utf8() || req.raw_path().first() != Some(&b'/') {
        return;
    }
    // Moves the parts out (no copy) and puts them back without the case map.
    let placeholder = RequestHeader::from(http::Request::new(()).into_parts().0);
    let parts: http::request::Parts = std::mem::replace(req, placeholder).into();
    *req = RequestHeader::from(parts);
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Appends the client address to any `X-Forwarded-For` the client sent, as one field line.
fn forwarded_for(req: &RequestHeader, client: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(64);
    for v in req.headers.get_all("x-forwarded-for") {
        let v = v.as_bytes().trim_ascii();
        if !v.is_empty() {
            value.extend_from_slice(v);
            value.extend_from_slice(b", ");
        }
    }
    value.extend_from_slice(client);
    value
}

/// Adds `X-Forwarded-For` (`client` after any value the client sent), `X-Forwarded-Proto`
/// (`https` when the request came over TLS) and `X-Forwarded-Host` (the `Host` the client sent,
/// or its target's authority), and a `Host` for a request that had none (HTTP/1.0): the address
/// of the listener it came to.
pub fn add_forwarded(
    req: &mut RequestHeader,
    client: Option<HeaderValue>,
    listener: Option<SocketAddr>,
    tls: bool,
) -> Result<()> {
    if let Some(client) = client {
        if req.headers.contains_key(&X_FORWARDED_FOR) {
            let xff = forwarded_for(req, client.as_bytes());
            req.insert_header("X-Forwarded-For", xff)?;
        } else {
            req.insert_header("X-Forwarded-For", client)?;
        }
    }
    let proto = if tls { "https" } else { "http" };
    req.insert_header("X-Forwarded-Proto", HeaderValue::from_static(proto))?;
    // A clone of the Host value shares its bytes.
    let host = req.headers.get(http::header::HOST).cloned().or_else(|| {
        let authority = match req.uri.authority() {
            Some(authority) => authority.as_str().as_bytes(),
            None => raw_target_authority(req.raw_path()).authority()?,
        };
        HeaderValue::from_bytes(authority).ok()
    });
    match host {
        Some(host) => req.insert_header("X-Forwarded-Host", host)?,
        None => {
            req.remove_header("X-Forwarded-Host");
            // A forwarded HTTP/1.1 request needs a Host (RFC 9112 3.2); Pingora adds none for a
            // Host-less HTTP/1.0 request.
            if let Some(listener) = listener {
                let value = HeaderValue::try_from(listener.to_string())
                    .unwrap_or_else(|_| HeaderValue::from_static("localhost"));
                req.insert_header(http::header::HOST, value)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(req: &RequestHeader) -> String {
        let mut buf = Vec::new();
        req.header_to_h1_wire(&mut buf);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn dropping_header_case_keeps_the_request_otherwise() {
        let mut req = RequestHeader::build("POST", b"/a/b?c=1&d", None).unwrap();
        req.append_header("Host", "example.com").unwrap();
        req.append_header("X-Custom-Thing", "Value One").unwrap();
        req.append_header("Cookie", "a=1; B=2").unwrap();
        req.append_header("x-custom-thing", "Value Two").unwrap();
        assert!(wire(&req).contains("X-Custom-Thing: Value One\r\n"));

        drop_header_case(&mut req);
        assert!(!req.has_case());
        assert_eq!(req.method, http::Method::POST);
        assert_eq!(req.raw_path(), b"/a/b?c=1&d");
        assert_eq!(req.version, http::Version::HTTP_11);
        assert_eq!(
            wire(&req),
            "Host: example.com\r\nx-custom-thing: Value One\r\n\
             x-custom-thing: Value Two\r\ncookie: a=1; B=2\r\n"
        );
        // Headers added afterwards go into the one map.
        req.insert_header("X-Forwarded-Proto", "http").unwrap();
        assert!(wire(&req).ends_with("x-forwarded-proto: http\r\n"));
    }

    #[test]
    fn other_targets_keep_their_bytes_and_header_case() {
        for target in [
            &b"http://example.com/p?q"[..],
            b"/caf\xe9",
            b"example.com:443",
        ] {
            let mut req = RequestHeader::build("GET", target, None).unwrap();
            req.append_header("X-Custom-Thing", "v").unwrap();
            drop_header_case(&mut req);
            assert!(req.has_case(), "{target:?}");
            assert_eq!(req.raw_path(), target);
            assert_eq!(wire(&req), "X-Custom-Thing: v\r\n");
        }
    }

    #[test]
    fn forwarded_for_appends_to_every_prior_value() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        assert_eq!(forwarded_for(&req, b"10.0.0.9"), b"10.0.0.9");
        req.append_header("X-Forwarded-For", "1.1.1.1, 2.2.2.2")
            .unwrap();
        req.append_header("X-Forwarded-For", "3.3.3.3").unwrap();
        assert_eq!(
            forwarded_for(&req, b"10.0.0.9"),
            b"1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.9"
        );
    }

    #[test]
    fn a_request_without_host_gets_the_listener_address() {
        let listener: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.set_version(http::Version::HTTP_10);
        add_forwarded(&mut req, None, Some(listener), false).unwrap();
        assert_eq!(req.headers["host"], "127.0.0.1:8080");
        assert!(req.headers.get("x-forwarded-host").is_none());

        let v6: SocketAddr = "[::1]:80".parse().unwrap();
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        add_forwarded(&mut req, None, Some(v6), false).unwrap();
        assert_eq!(req.headers["host"], "[::1]:80");

        // The client's Host, and an absolute-form target's authority, are kept.
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header("Host", "shop.test").unwrap();
        add_forwarded(&mut req, None, Some(listener), false).unwrap();
        assert_eq!(req.headers["host"], "shop.test");
        assert_eq!(req.headers["x-forwarded-host"], "shop.test");
        let mut req = RequestHeader::build("GET", b"http://abs.test/p", None).unwrap();
        add_forwarded(&mut req, None, Some(listener), false).unwrap();
        // (Pingora sets Host from the target afterwards.)
        assert!(req.headers.get("host").is_none());
        assert_eq!(req.headers["x-forwarded-host"], "abs.test");
    }

    #[test]
    fn the_protocol_follows_tls_and_replaces_the_clients() {
        for (tls, proto) in [(false, "http"), (true, "https")] {
            let mut req = RequestHeader::build("GET", b"/", None).unwrap();
            req.append_header("X-Forwarded-Proto", "gopher").unwrap();
            add_forwarded(&mut req, None, None, tls).unwrap();
            let values: Vec<_> = req.headers.get_all("x-forwarded-proto").iter().collect();
            assert_eq!(values, [proto]);
        }
    }

    #[test]
    fn cookie_fields_become_one_line() {
        let joined = |fields: &[&str]| {
            let mut req = RequestHeader::build("GET", b"/", None).unwrap();
            for f in fields {
                req.append_header("cookie", *f).unwrap();
            }
            join_cookie_fields(&mut req).unwrap();
            let lines: Vec<_> = req.headers.get_all("cookie").iter().cloned().collect();
            lines
        };
        assert_eq!(joined(&["a=1", "b=2", "c=3"]), ["a=1; b=2; c=3"]);
        assert_eq!(joined(&["a=1; b=2"]), ["a=1; b=2"]);
        assert!(joined(&[]).is_empty());
    }
}
