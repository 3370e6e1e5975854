//! Limits on client connections, which Pingora does not offer: a deadline for each request's
//! header section (slowloris), an idle timeout between keep-alive requests, and a cap on
//! concurrent connections per listener.
//!
//! Pingora's own downstream `read_timeout` applies to each read, so a client sending one byte
//! every few seconds is never cut off. [`Guarded`] wraps a service's app and every connection's
//! stream in a [`GuardedStream`] whose reads fail once the current deadline passes:
//!
//! ```text
//! new connection ──request_header_timeout──> end of header section (CRLF CRLF) ──> no deadline
//! next request (keep-alive): idle up to keepalive_timeout (Pingora's keep-alive timeout, set
//! per request by the proxy) ──> first byte ──request_header_timeout──> end of header section
//! ```
//!
//! Pingora serves a kept-alive connection's requests in its own loop; the proxy's logging
//! phase marks each request done ([`GuardedStream::request_done`]), which re-arms the deadline
//! for the next one. Over `max_connections`, a new connection gets a 503 and is closed.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::tls::{SslDigest, TlsRef};
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use pingora_core::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::config::Limits;
use crate::token::TokenMemo;

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
            // Back for its next request (the proxy marks requests done in its logging phase).
            if let Some(guard) = GuardedStream::of(&kept_alive) {
                guard.request_done();
            }
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

/// The searcher for CRLF CRLF, built once (building one costs about as much as a search).
static HEAD_END: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\r\n\r\n"));

/// Finds the end of a header section (CRLF CRLF) in bytes that arrive in pieces.
#[derive(Debug, Default, Clone, Copy)]
struct HeadEnd {
    /// The last (up to three) bytes of the previous pieces.
    tail: [u8; 3],
    tail_len: usize,
}

impl HeadEnd {
    /// Whether CRLF CRLF ends within `bytes` (or straddles the previous pieces and these).
    fn found_in(&mut self, bytes: &[u8]) -> bool {
        let head = bytes.len().min(3);
        let mut joint = [0u8; 6];
        joint[..self.tail_len].copy_from_slice(&self.tail[..self.tail_len]);
        joint[self.tail_len..self.tail_len + head].copy_from_slice(&bytes[..head]);
        if HEAD_END.find(&joint[..self.tail_len + head]).is_some() || HEAD_END.find(bytes).is_some()
        {
            return true;
        }
        // Keep the last three bytes of everything seen.
        let mut all = [0u8; 6];
        all[..self.tail_len].copy_from_slice(&self.tail[..self.tail_len]);
        let take = bytes.len().min(3);
        all[self.tail_len..self.tail_len + take].copy_from_slice(&bytes[bytes.len() - take..]);
        let total = self.tail_len + take;
        let keep = total.min(3);
        self.tail[..keep].copy_from_slice(&all[total - keep..total]);
        self.tail_len = keep;
        false
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Between requests: Pingora's keep-alive timeout (set from `keepalive_timeout`) applies.
    Idle,
    /// Reading a request's header section, which must end by `deadline` (once armed).
    Head,
    /// Header section complete: no deadline (bodies and upgrades run on upstream timeouts).
    Open,
}

/// A client connection whose header sections must arrive in time.
///
/// A legitimate client sends a head in one piece, so the common path reads no clock and takes
/// no timer lock: a request's deadline is set (from the clock) the first time a read has to wait
/// in the middle of its header section, microseconds after its first byte, and from then on it
/// is checked whenever bytes arrive, so a client trickling bytes is cut off at its next byte past
/// the deadline, or by the timer while it sends nothing.
pub struct GuardedStream {
    inner: Stream,
    phase: Phase,
    /// The current request's header deadline, once armed.
    deadline: Option<Instant>,
    /// Armed only while waiting mid-header; reset only when the deadline moved.
    timer: Option<(Instant, Pin<Box<Sleep>>)>,
    header_timeout: Duration,
    head_end: HeadEnd,
    /// Set when a request on this connection has finished (see [`GuardedStream::request_done`]).
    next_request: AtomicBool,
    /// The client's IP address as a header value, formatted once per connection.
    client_ip: Option<http::HeaderValue>,
    /// The last valid session token this connection presented.
    token_memo: TokenMemo,
    _slot: ConnectionSlot,
}

impl std::fmt::Debug for GuardedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedStream")
            .field("inner", &self.inner)
            .field("phase", &self.phase)
            .finish()
    }
}

impl GuardedStream {
    fn new(inner: Stream, limits: &Limits, slot: ConnectionSlot) -> Self {
        let client_ip = inner
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(client_ip_value));
        GuardedStream {
            inner,
            // The first request's whole wait counts against the header deadline.
            phase: Phase::Head,
            deadline: Some(Instant::now() + limits.request_header_timeout),
            timer: None,
            header_timeout: limits.request_header_timeout,
            head_end: HeadEnd::default(),
            next_request: AtomicBool::new(false),
            client_ip,
            token_memo: TokenMemo::default(),
            _slot: slot,
        }
    }

    /// The client's IP address, for `X-Forwarded-For` (a clone shares its bytes).
    pub fn client_ip(&self) -> Option<&http::HeaderValue> {
        self.client_ip.as_ref()
    }

    /// The connection's last valid session token, so its next requests need not verify it again.
    pub fn token_memo(&self) -> &TokenMemo {
        &self.token_memo
    }

    /// Marks the current request finished: the next bytes read start a new request, whose
    /// header deadline runs from its first byte (armed when a read first waits mid-head).
    /// Pingora serves the requests of a kept-alive connection in its own loop, so the proxy
    /// calls this from its logging phase.
    pub fn request_done(&self) {
        self.next_request.store(true, Ordering::Release);
    }

    /// The guard of a downstream stream, if it has one.
    pub fn of(stream: &Stream) -> Option<&GuardedStream> {
        stream.as_any().downcast_ref::<GuardedStream>()
    }

    /// Follows the bytes of the header section: the first byte of a request starts its
    /// deadline, CRLF CRLF ends it.
    fn saw(&mut self, bytes: &[u8]) {
        if bytes.is_empty() || self.phase == Phase::Open {
            return;
        }
        if self.phase == Phase::Idle {
            self.phase = Phase::Head;
            self.deadline = None;
        }
        if self.head_end.found_in(bytes) {
            self.phase = Phase::Open;
        }
    }

    fn timed_out() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::TimedOut, "request header timeout")
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        // A plain load first: the flag is set once per request, read on every read.
        if this.next_request.load(Ordering::Relaxed)
            && this.next_request.swap(false, Ordering::AcqRel)
        {
            this.phase = Phase::Idle;
            this.head_end = HeadEnd::default();
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.saw(&buf.filled()[before..]);
                if this.phase == Phase::Head && this.deadline.is_some_and(|d| Instant::now() >= d) {
                    return Poll::Ready(Err(Self::timed_out()));
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if this.phase == Phase::Head => {
                let deadline = *this
                    .deadline
                    .get_or_insert_with(|| Instant::now() + this.header_timeout);
                let timer = match &mut this.timer {
                    Some((at, sleep)) => {
                        if *at != deadline {
                            sleep.as_mut().reset(deadline);
                            *at = deadline;
                        }
                        sleep
                    }
                    None => {
                        &mut this
                            .timer
                            .insert((deadline, Box::pin(tokio::time::sleep_until(deadline))))
                            .1
                    }
                };
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(Self::timed_out()));
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for GuardedStream {
    async fn shutdown(&mut self) {
        Shutdown::shutdown(self.inner.as_mut()).await
    }
}

impl UniqueID for GuardedStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for GuardedStream {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for GuardedStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for GuardedStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for GuardedStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for GuardedStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ends(chunks: &[&[u8]]) -> bool {
        let mut h = HeadEnd::default();
        chunks.iter().any(|c| h.found_in(c))
    }

    #[test]
    fn end_of_head_is_found_across_any_split() {
        let head: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        for cut in 0..=head.len() {
            assert!(ends(&[&head[..cut], &head[cut..]]), "split at {cut}");
        }
        let bytes: Vec<&[u8]> = head.chunks(1).collect();
        assert!(ends(&bytes), "byte by byte");
        let pairs: Vec<&[u8]> = head.chunks(2).collect();
        assert!(ends(&pairs), "two by two");
    }

    #[test]
    fn no_end_is_no_end() {
        assert!(!ends(&[b"GET / HTTP/1.1\r\nHost: x\r\n"]));
        assert!(!ends(&[b"\r\n\r", b"x\n"]));
        assert!(!ends(&[b"\r", b"\n", b"x", b"\r", b"\n"]));
        assert!(!ends(&[b"", b"\r\n", b""]));
    }
}
