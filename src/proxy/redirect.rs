//! `redirect_https` on a plain listener: every request answered with a `308` to the same host,
//! path and query on `https` (RFC 9110 15.4.9: the method and body are kept on the way).

use std::fmt::Write;

use http::header::{CONNECTION, CONTENT_LENGTH, HOST, LOCATION};
use pingora_core::protocols::l4::socket::SocketAddr;
use pingora_error::Result;
use pingora_http::{RequestHeader, ResponseHeader};

use crate::routing::host::{normalize, MAX_HOST_LEN};

/// The `308` for `req` to `https` on `port` (left out when 443); a request without a usable
/// host is sent to the address it came to.
pub fn redirect_to_https(
    req: &RequestHeader,
    port: u16,
    listener: Option<&SocketAddr>,
) -> Result<ResponseHeader> {
    let mut buf = [0u8; MAX_HOST_LEN];
    let authority = req
        .headers
        .get(HOST)
        .map(|h| h.as_bytes())
        .or_else(|| req.uri.authority().map(|a| a.as_str().as_bytes()));
    let host = match authority.and_then(|a| normalize(a, &mut buf)) {
        Some(host) => host.to_string(),
        None => match listener.and_then(|a| a.as_inet()) {
            Some(addr) if addr.is_ipv6() => format!("[{}]", addr.ip()),
            Some(addr) => addr.ip().to_string(),
            None => "localhost".to_string(),
        },
    };
    let mut location = format!("https://{host}");
    if port != 443 {
        let _ = write!(location, ":{port}");
    }
    match req.uri.path_and_query() {
        Some(pq) => location.push_str(pq.as_str()),
        None => location.push('/'),
    }
    let mut resp = ResponseHeader::build(308, Some(3))?;
    resp.insert_header(LOCATION, location)?;
    resp.insert_header(CONTENT_LENGTH, "0")?;
    if req.version < http::Version::HTTP_11 {
        resp.insert_header(CONNECTION, "close")?;
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(target: &str, host: Option<&str>, port: u16) -> String {
        let mut req = RequestHeader::build("GET", target.as_bytes(), None).unwrap();
        if let Some(host) = host {
            req.append_header("Host", host).unwrap();
        }
        let listener: SocketAddr = "127.0.0.1:80"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into();
        let resp = redirect_to_https(&req, port, Some(&listener)).unwrap();
        assert_eq!(resp.status, 308);
        resp.headers[LOCATION].to_str().unwrap().to_string()
    }

    #[test]
    fn the_location_keeps_host_path_and_query() {
        assert_eq!(
            location("/cart?id=1&x=%20", Some("Shop.Test:8080"), 443),
            "https://shop.test/cart?id=1&x=%20"
        );
        assert_eq!(
            location("/", Some("shop.test"), 8443),
            "https://shop.test:8443/"
        );
        assert_eq!(location("/p", Some("[::1]:80"), 443), "https://[::1]/p");
        assert_eq!(location("/p", None, 443), "https://127.0.0.1/p");
    }
}
