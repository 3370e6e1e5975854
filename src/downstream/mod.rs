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
//! On a TLS listener the handshake comes first, within `request_header_timeout`. An HTTP/2
//! connection (ALPN `h2`, or the h2c preface on a plain listener with `http2: true`) must send
//! its preface within the same deadline; from then on HTTP/2 frames its own requests and the
//! guard passes its bytes through (Pingora's HTTP/2 limits and idle timeout apply).
//!
//! Over `max_connections`, a new connection gets a 503 and is closed.

mod framing;
mod h2;
mod stream;

pub use framing::{Framing, FramingError, Scanned, Tracker};
pub use h2::Http2Connection;
pub use stream::{GuardedStream, Preface};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::{Stream, ALPN};
use pingora_core::server::ShutdownWatch;
use tokio::io::AsyncWriteExt;

use crate::config::Limits;
use crate::tls::TlsListener;

/// A listener's app with the connection limits applied, behind TLS when the listener has it.
pub struct Guarded<A> {
    inner: Arc<A>,
    limits: Limits,
    /// Open connections of the listener.
    open: Arc<AtomicUsize>,
    /// The listener's TLS, if it has any.
    tls: Option<Arc<TlsListener>>,
    /// Whether a plain connection may open with the HTTP/2 preface (h2c).
    h2c: bool,
}

impl<A> Guarded<A> {
    /// Wraps `inner` with `limits`, for a plain HTTP/1.1 listener.
    pub fn new(inner: A, limits: Limits) -> Self {
        Guarded {
            inner: Arc::new(inner),
            limits,
            open: Arc::new(AtomicUsize::new(0)),
            tls: None,
            h2c: false,
        }
    }

    /// Terminates TLS with `tls` before anything else.
    pub fn with_tls(mut self, tls: Arc<TlsListener>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Accepts HTTP/2 with prior knowledge on plain connections.
    pub fn with_h2c(mut self, h2c: bool) -> Self {
        self.h2c = h2c;
        self
    }

    /// The TLS handshake, for a TLS listener; the stream as it came otherwise.
    async fn secure(&self, raw: Stream) -> Option<Stream> {
        let Some(tls) = &self.tls else {
            return Some(raw);
        };
        // Pingora hands its listener's plain TCP stream over, boxed.
        let l4 = raw.into_any().downcast::<L4Stream>().ok()?;
        let secured = tls
            .handshake(*l4, self.limits.request_header_timeout)
            .await?;
        Some(Box::new(secured))
    }
}

const OVERLOADED: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Guarded<A> {
    /// Serves a connection: TLS first when the listener has it, then HTTP/1.1 through the
    /// guard, or HTTP/2 (chosen by ALPN, or by the h2c preface) once its preface has arrived in
    /// time. Pingora's HTTP app serves the requests of a kept-alive connection in its own loop;
    /// should an app hand the connection back, its next request is served here, as Pingora's
    /// listener loop would, still guarded.
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let open = self.open.fetch_add(1, Ordering::AcqRel) + 1;
        let slot = ConnectionSlot(self.open.clone());
        let mut stream = self.secure(stream).await?;
        let alpn_h2 = matches!(stream.selected_alpn_proto(), Some(ALPN::H2));
        if open > self.limits.max_connections {
            // An HTTP/2 client could not read an HTTP/1.1 answer: it only sees the close.
            if !alpn_h2 {
                let _ = stream.write_all(OVERLOADED).await;
                let _ = stream.flush().await;
            }
            return None;
        }
        let mut guarded = GuardedStream::new(stream, &self.limits, slot);
        if alpn_h2 || self.h2c {
            match guarded.read_preface().await {
                Preface::Http2 => guarded.pass_through_http2(),
                // ALPN promised HTTP/2: anything else is not a client of ours.
                Preface::Other if alpn_h2 => return None,
                Preface::Other => {}
                Preface::Closed => return None,
            }
        }
        let mut stream: Stream = Box::new(guarded);
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
