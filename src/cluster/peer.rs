//! How a cluster's backends are reached: address, TLS (name, verification, roots), HTTP version
//! and timeouts, as a Pingora peer made once per backend.

use std::net::SocketAddr;
use std::sync::Arc;

use pingora_core::upstreams::peer::HttpPeer;

use crate::config::{ClusterConfig, UpstreamProtocol};
use crate::tls::UpstreamRoots;

/// Concurrent requests on one HTTP/2 connection to a backend.
const H2_STREAMS_PER_CONNECTION: usize = 100;

/// The host part of `host:port` (an IPv6 literal without its brackets): the default TLS name.
fn host_of(address: &str) -> String {
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

/// How the backends of a cluster are reached: address, TLS (name, verification, roots), HTTP
/// version and timeouts.
pub(super) fn peer_template(
    config: &ClusterConfig,
    address: &str,
    socket_addr: SocketAddr,
    roots: Option<&Arc<UpstreamRoots>>,
) -> HttpPeer {
    let tls = config.tls.as_ref();
    let sni = tls.map_or_else(String::new, |t| {
        t.sni.clone().unwrap_or_else(|| host_of(address))
    });
    let mut peer = HttpPeer::new(socket_addr, tls.is_some(), sni);
    if let Some(tls) = tls {
        peer.options.verify_cert = tls.verify;
        peer.options.verify_hostname = tls.verify;
        peer.options.ca = roots.cloned();
    }
    match config.protocol {
        UpstreamProtocol::Http1 => peer.options.set_http_version(1, 1),
        UpstreamProtocol::H2 | UpstreamProtocol::H2c => {
            peer.options.set_http_version(2, 2);
            // Requests share connections as streams (Pingora's default is one per connection).
            peer.options.max_h2_streams = H2_STREAMS_PER_CONNECTION;
        }
    }
    let t = &config.timeouts;
    peer.options.connection_timeout = Some(t.connect);
    peer.options.total_connection_timeout = Some(t.connect);
    peer.options.read_timeout = Some(t.read);
    peer.options.write_timeout = Some(t.write);
    peer
}
