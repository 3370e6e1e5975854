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
mod listen;
mod stream;

pub use framing::{Framing, FramingError, Scanned, Tracker};
pub use h2::Http2Connection;
pub use listen::ListenerService;
pub use stream::{GuardedStream, Preface};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::apps::{HttpServerApp, ServerApp};
use pingora_core::protocols::http::ServerSession;
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
impl<A: HttpServerApp + Send + Sync + 'static> ServerApp for Guarded<A> {
    /// Serves a connection: TLS first when the listener has it, then HTTP/1.1 through the
    /// guard, or HTTP/2 (chosen by ALPN, or by the h2c preface) once its preface has arrived in
    /// time.
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let open = self.open.fetch_add(1, Ordering::AcqRel) + 1;
        let slot = ConnectionSlot(self.open.clone());
        // Boxed: the handshake's state (~8 KB) is needed once, not for the connection's life.
        let mut stream = Box::pin(self.secure(stream)).await?;
        let alpn_h2 = matches!(stream.selected_alpn_proto(), Some(ALPN::H2));
        if open > self.limits.max_connections {
            // An HTTP/2 client could not read an HTTP/1.1 answer: it only sees the close.
            if !alpn_h2 {
                let _ = stream.write_all(OVERLOADED).await;
                let _ = stream.flush().await;
            }
            return None;
        }
        let mut guarded = Box::new(GuardedStream::new(stream, &self.limits, slot));
        if alpn_h2 || self.h2c {
            match guarded.read_preface().await {
                Preface::Http2 => {
                    guarded.pass_through_http2();
                    // Pingora's HTTP/2 server takes the connection from here.
                    return self.inner.process_new(guarded, shutdown).await;
                }
                // ALPN promised HTTP/2: anything else is not a client of ours.
                Preface::Other if alpn_h2 => return None,
                Preface::Other => {}
                Preface::Closed => return None,
            }
        }
        self.serve_http1(guarded, shutdown).await;
        None
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

impl<A: HttpServerApp + Send + Sync + 'static> Guarded<A> {
    /// HTTP/1.1 requests one after the other, as Pingora's own loop serves them, except that
    /// between two requests the connection waits here, before Pingora's session (and its
    /// header buffer) exists for the next one: an idle keep-alive connection keeps no read
    /// buffer.
    async fn serve_http1(
        self: &Arc<Self>,
        mut guarded: Box<GuardedStream>,
        shutdown: &ShutdownWatch,
    ) {
        let mut session = ServerSession::new_http1(guarded);
        // Pingora's defaults for a first request; the proxy sets the keep-alive per request.
        session.set_keepalive((!*shutdown.borrow()).then_some(60));
        let limit = self
            .inner
            .server_options()
            .and_then(|o| o.keepalive_request_limit);
        session.set_keepalive_reuses_remaining(limit);
        let keepalive = self.limits.keepalive_timeout.max(Duration::from_secs(1));
        let mut stopping = shutdown.clone();
        loop {
            let Some(reused) = self.inner.process_new_http(session, shutdown).await else {
                return;
            };
            let (stream, settings) = reused.consume();
            // Only our guard is ever handed to the session.
            let Ok(stream) = stream.into_any().downcast::<GuardedStream>() else {
                return;
            };
            guarded = stream;
            // Idle until the next request, the keep-alive timeout or the shutdown.
            tokio::select! {
                ready = guarded.wait_for_request(keepalive) => if !ready { return },
                () = shutting_down(&mut stopping) => return,
            }
            session = ServerSession::new_http1(guarded);
            if let Some(settings) = settings {
                settings.apply_to_session(&mut session);
            }
        }
    }
}

/// Resolves once the server begins to shut down (a watch also reports its first value as a
/// change, so the value itself is what counts).
async fn shutting_down(watch: &mut ShutdownWatch) {
    while !*watch.borrow_and_update() {
        if watch.changed().await.is_err() {
            return;
        }
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
