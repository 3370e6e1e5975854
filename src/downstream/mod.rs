//! What tether enforces on client connections beneath Pingora's HTTP layer: a deadline for
//! each request's header section (slowloris), unambiguous request framing (no bare LF in
//! chunked coding, request boundaries followed for pipelined requests), and a cap on
//! concurrent connections per listener.
//!
//! Pingora's own downstream `read_timeout` applies to each read, so a client sending one byte
//! every few seconds is never cut off. [`Guarded`] wraps a service's app and every connection's
//! stream in a [`GuardedStream`] whose reads fail once the current deadline passes or the
//! framing breaks:
//!
//! ```text
//! new connection ──request_header_timeout──> end of header section ──> body (its framing
//! followed) ──> next request: idle up to keepalive_timeout (Pingora's keep-alive timeout, set
//! per request by the proxy) ──> first byte ──request_header_timeout──> end of header section
//! ```
//!
//! Over `max_connections`, a new connection gets a 503 and is closed.

mod framing;
mod stream;

pub use framing::{Framing, FramingError, Scanned, Tracker};
pub use stream::GuardedStream;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use tokio::io::AsyncWriteExt;

use crate::config::Limits;

/// A service's app with the connection limits applied.
pub struct Guarded<A> {
    inner: Arc<A>,
    limits: Limits,
    /// Open connections per listen address of the service.
    listeners: Vec<(std::net::SocketAddr, Arc<AtomicUsize>)>,
}

impl<A> Guarded<A> {
    /// Wraps `inner`, listening on `listen`, with `limits`.
    pub fn new(inner: A, listen: &[std::net::SocketAddr], limits: Limits) -> Self {
        Guarded {
            inner: Arc::new(inner),
            limits,
            listeners: listen
                .iter()
                .map(|a| (*a, Arc::new(AtomicUsize::new(0))))
                .collect(),
        }
    }

    /// The counter of the listener a connection arrived on: its local address, or its port
    /// for a wildcard listener (which sees the concrete address).
    fn counter(&self, local: Option<std::net::SocketAddr>) -> &Arc<AtomicUsize> {
        let found = local.and_then(|local| {
            self.listeners.iter().find(|(l, _)| {
                *l == local
                    || (l.ip().is_unspecified()
                        && l.port() == local.port()
                        && l.is_ipv4() == local.is_ipv4())
            })
        });
        // A service has at least one listener (config validation).
        &found.unwrap_or(&self.listeners[0]).1
    }
}

const OVERLOADED: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Guarded<A> {
    /// Serves a connection. Pingora's HTTP app serves the requests of a kept-alive connection in
    /// its own loop; should an app hand the connection back, its next request is served here, as
    /// Pingora's listener loop would, still guarded.
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let mut raw = stream;
        let local = raw
            .get_socket_digest()
            .and_then(|d| d.local_addr().and_then(|a| a.as_inet().copied()));
        let counter = self.counter(local);
        let open = counter.fetch_add(1, Ordering::AcqRel) + 1;
        let slot = ConnectionSlot(counter.clone());
        if open > self.limits.max_connections {
            let _ = raw.write_all(OVERLOADED).await;
            let _ = raw.flush().await;
            return None;
        }
        let mut stream: Stream = Box::new(GuardedStream::new(raw, &self.limits, slot));
        while let Some(kept_alive) = self.inner.process_new(stream, shutdown).await {
            stream = kept_alive;
        }
        None
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

/// One open connection, counted while it lives.
#[derive(Debug)]
struct ConnectionSlot(Arc<AtomicUsize>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A client's IP address (no port) as a header value, for `X-Forwarded-For`; `None` for a
/// Unix socket peer.
pub fn client_ip_value(
    addr: &pingora_core::protocols::l4::socket::SocketAddr,
) -> Option<http::HeaderValue> {
    let ip = addr.as_inet()?.ip();
    http::HeaderValue::try_from(ip.to_string()).ok()
}
