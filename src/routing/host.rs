//! The host a request is for, as routes match it: the `Host` header (Pingora has refused an
//! absolute-form target that disagrees with it), else the target's authority (absolute-form, or
//! HTTP/2's `:authority`); without port or trailing dot, lowercase.

use http::header::HOST;
use pingora_http::authority::raw_target_authority;
use pingora_http::RequestHeader;

/// Longest host name routes can match (DNS names are at most 253 characters).
pub const MAX_HOST_LEN: usize = 255;

/// The request's host for routing, written lowercase into `buf`; `None` when it has none or an
/// unusable one (too long), which only routes without hostnames take.
pub fn request_host<'b>(req: &RequestHeader, buf: &'b mut [u8; MAX_HOST_LEN]) -> Option<&'b str> {
    let authority = match req.headers.get(HOST) {
        Some(host) => host.as_bytes(),
        None => match req.uri.authority() {
            Some(authority) => authority.as_str().as_bytes(),
            None => raw_target_authority(req.raw_path()).authority()?,
        },
    };
    normalize(authority, buf)
}

/// `authority` without its port and trailing dot, lowercase, in `buf`.
pub fn normalize<'b>(authority: &[u8], buf: &'b mut [u8; MAX_HOST_LEN]) -> Option<&'b str> {
    let host = if authority.first() == Some(&b'[') {
        // An IPv6 literal keeps its brackets; the port follows them.
        let end = memchr::memchr(b']', authority)?;
        &authority[..=end]
    } else {
        match memchr::memrchr(b':', authority) {
            Some(colon) => &authority[..colon],
            None => authority,
        }
    };
    let host = host.strip_suffix(b".").unwrap_or(host);
    if host.is_empty() || host.len() > MAX_HOST_LEN {
        return None;
    }
    let out = &mut buf[..host.len()];
    for (o, b) in out.iter_mut().zip(host) {
        *o = b.to_ascii_lowercase();
    }
    std::str::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(authority: &str) -> Option<String> {
        let mut buf = [0; MAX_HOST_LEN];
        normalize(authority.as_bytes(), &mut buf).map(str::to_string)
    }

    #[test]
    fn ports_case_and_trailing_dots_do_not_count() {
        assert_eq!(
            host("Shop.Example.COM").as_deref(),
            Some("shop.example.com")
        );
        assert_eq!(
            host("shop.example.com:8443").as_deref(),
            Some("shop.example.com")
        );
        assert_eq!(
            host("shop.example.com.").as_deref(),
            Some("shop.example.com")
        );
        assert_eq!(
            host("shop.example.com.:80").as_deref(),
            Some("shop.example.com")
        );
        assert_eq!(host("[::1]:8080").as_deref(), Some("[::1]"));
        assert_eq!(host("[::1]").as_deref(), Some("[::1]"));
        assert_eq!(host("127.0.0.1:80").as_deref(), Some("127.0.0.1"));
        assert_eq!(host(""), None);
        assert_eq!(host(":80"), None);
        assert_eq!(host("[::1"), None);
        assert_eq!(host(&"a".repeat(300)), None);
    }

    #[test]
    fn the_host_comes_from_host_then_the_target() {
        let mut buf = [0; MAX_HOST_LEN];
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        assert_eq!(request_host(&req, &mut buf), None);
        req.append_header("Host", "A.test:80").unwrap();
        assert_eq!(request_host(&req, &mut buf), Some("a.test"));
        let req = RequestHeader::build("GET", b"http://B.test:8080/x", None).unwrap();
        assert_eq!(request_host(&req, &mut buf), Some("b.test"));
    }
}
