//! A client connection's stream as Pingora reads it: the request-header deadline and the
//! request framing ([`super::framing`]) applied to every byte.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Buf, BytesMut};
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::tls::{SslDigest, TlsRef};
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::framing::{Framing, Tracker};
use super::h2::Http2Connection;
use super::{client_ip_value, ConnectionSlot};
use crate::config::Limits;
use crate::token::TokenMemo;

/// A client connection whose header sections must arrive in time and whose requests must be
/// framed unambiguously.
///
/// Reads pass through [`Tracker`]: bytes after a header section are held here until the proxy
/// tells the request's framing ([`GuardedStream::tell_framing`], from its first phase), and a
/// read fails (`InvalidData`, with a [`super::FramingError`] inside) on bytes that break it.
///
/// A legitimate client sends a head in one piece, so the common path reads no clock and takes
/// no timer lock: a request's deadline is set (from the clock) the first time a read has to wait
/// in the middle of its header section, microseconds after its first byte, and from then on it
/// is checked whenever bytes arrive, so a client trickling bytes is cut off at its next byte past
/// the deadline, or by the timer while it sends nothing. The first request's whole wait counts
/// against the deadline; between requests Pingora's keep-alive timeout applies instead.
pub struct GuardedStream {
    inner: Stream,
    framing: Tracker,
    /// Read from the connection but held back until the framing of the request before them
    /// is known.
    held: BytesMut,
    /// A framing told by the proxy and not yet applied ([`NOT_TOLD`] when none).
    told: AtomicU64,
    /// The current request's header deadline, once armed.
    deadline: Option<Instant>,
    /// Armed only while waiting mid-header; reset only when the deadline moved.
    timer: Option<(Instant, Pin<Box<Sleep>>)>,
    header_timeout: Duration,
    /// The client's IP address as a header value, formatted once per connection.
    client_ip: Option<http::HeaderValue>,
    /// The last valid session token this connection presented.
    token_memo: TokenMemo,
    /// For an HTTP/2 connection: what its streams share, and the digest that carries it to
    /// their requests.
    http2: Option<(Arc<Http2Connection>, Arc<ProxyDigest>)>,
    /// Small writes gathered until a flush (a response's head and a short body leave in one
    /// write); allocated for a response, released while the connection idles.
    out: Vec<u8>,
    /// How much of `out` has been written.
    out_written: usize,
    _slot: ConnectionSlot,
}

/// Writes shorter than this are gathered (about one TCP segment, as Pingora's own buffer).
const WRITE_BUFFER: usize = 1460;

/// The first bytes of every HTTP/2 connection (RFC 9113 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How a connection that may speak HTTP/2 began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preface {
    /// With the HTTP/2 preface.
    Http2,
    /// With something else (HTTP/1 for the parser to judge).
    Other,
    /// Closed, failed or out of time before it could tell.
    Closed,
}

/// `told` values: a length below [`TOLD_CHUNKED`], or one of these.
const NOT_TOLD: u64 = u64::MAX;
const TOLD_CHUNKED: u64 = u64::MAX - 1;
const TOLD_PASS_THROUGH: u64 = u64::MAX - 2;

impl std::fmt::Debug for GuardedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedStream")
            .field("inner", &self.inner)
            .field("framing", &self.framing)
            .finish()
    }
}

impl GuardedStream {
    pub(super) fn new(inner: Stream, limits: &Limits, slot: ConnectionSlot) -> Self {
        let client_ip = inner
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(client_ip_value));
        GuardedStream {
            inner,
            framing: Tracker::default(),
            held: BytesMut::new(),
            told: AtomicU64::new(NOT_TOLD),
            deadline: Some(Instant::now() + limits.request_header_timeout),
            timer: None,
            header_timeout: limits.request_header_timeout,
            client_ip,
            token_memo: TokenMemo::default(),
            http2: None,
            out: Vec::new(),
            out_written: 0,
            _slot: slot,
        }
    }

    /// The guard of a downstream stream, if it has one.
    pub fn of(stream: &Stream) -> Option<&GuardedStream> {
        stream.as_any().downcast_ref::<GuardedStream>()
    }

    /// The client's IP address, for `X-Forwarded-For` (a clone shares its bytes).
    pub fn client_ip(&self) -> Option<&http::HeaderValue> {
        self.client_ip.as_ref()
    }

    /// The connection's last valid session token, so its next requests need not verify it again.
    pub fn token_memo(&self) -> &TokenMemo {
        &self.token_memo
    }

    /// The request line just read had a control character (which Pingora percent-encodes).
    pub fn request_line_has_control(&self) -> bool {
        self.framing.request_line_has_control()
    }

    /// The framing of the request whose header section Pingora has just parsed (or
    /// [`Framing::PassThrough`] once the connection was upgraded). Applied before the next read.
    pub fn tell_framing(&self, framing: Framing) {
        let told = match framing {
            Framing::Length(n) => n.min(TOLD_PASS_THROUGH - 1),
            Framing::Chunked => TOLD_CHUNKED,
            Framing::PassThrough => TOLD_PASS_THROUGH,
        };
        self.told.store(told, Ordering::Release);
    }

    fn apply_told(&mut self) {
        // A plain load first: told once per request, checked on every read.
        if self.told.load(Ordering::Relaxed) == NOT_TOLD {
            return;
        }
        let framing = match self.told.swap(NOT_TOLD, Ordering::AcqRel) {
            NOT_TOLD => return,
            TOLD_CHUNKED => Framing::Chunked,
            TOLD_PASS_THROUGH => Framing::PassThrough,
            n => Framing::Length(n),
        };
        self.framing.set_framing(framing);
    }

    /// Hands out held-back bytes as far as their framing allows.
    fn read_held(&mut self, buf: &mut ReadBuf<'_>) -> std::io::Result<()> {
        let n = self.held.len().min(buf.remaining());
        let scanned = self.framing.scan(&self.held[..n]).map_err(refused)?;
        buf.put_slice(&self.held[..scanned.deliver]);
        self.held.advance(scanned.deliver);
        if self.held.is_empty() {
            // What a pipelining burst or the HTTP/2 preface needed, not kept while idle.
            self.held = BytesMut::new();
        }
        if scanned.head_ended {
            self.deadline = None;
        }
        Ok(())
    }

    /// Reads the start of the connection (within the header deadline) to tell HTTP/2's
    /// preface from anything else; what was read is delivered first by later reads.
    pub async fn read_preface(&mut self) -> Preface {
        let deadline = self
            .deadline
            .unwrap_or_else(|| Instant::now() + self.header_timeout);
        let read = async {
            let mut buf = [0u8; H2_PREFACE.len()];
            while self.held.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(&self.held) {
                let want = H2_PREFACE.len() - self.held.len();
                match self.inner.read(&mut buf[..want]).await {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => self.held.extend_from_slice(&buf[..n]),
                }
            }
            true
        };
        match tokio::time::timeout_at(deadline, read).await {
            Ok(true) if self.held[..] == *H2_PREFACE => Preface::Http2,
            Ok(true) => Preface::Other,
            // What came before the end may be an HTTP/1 request the parser should answer.
            Ok(false) if !self.held.is_empty() && !H2_PREFACE.starts_with(&self.held) => {
                Preface::Other
            }
            _ => Preface::Closed,
        }
    }

    /// From now on every byte passes unchecked and without deadline: HTTP/2 frames its own
    /// requests; its streams share an [`Http2Connection`], which counts what they cost and
    /// can cut the connection.
    pub fn pass_through_http2(&mut self) {
        self.framing.set_framing(Framing::PassThrough);
        self.deadline = None;
        let connection = Arc::new(Http2Connection::new(self.client_ip.clone()));
        let digest = connection.digest();
        self.http2 = Some((connection, digest));
    }

    /// Waits, holding no buffer, until the connection has bytes for its next request (or has
    /// closed, or failed: the parser that reads next finds out). An idle keep-alive connection
    /// so costs its streams and sockets, not a request's read buffers; `false` when
    /// `keepalive` passed first.
    pub async fn wait_for_request(&mut self, keepalive: Duration) -> bool {
        if !self.held.is_empty() {
            return true;
        }
        if self.out.is_empty() {
            // Flushed with the last response (Pingora flushes before handing the stream back).
            self.out = Vec::new();
        }
        // A read into no room waits for readiness (TCP) or for plaintext (TLS) and takes nothing.
        let ready = std::future::poll_fn(|cx| {
            let mut none = ReadBuf::new(&mut []);
            Pin::new(&mut self.inner).poll_read(cx, &mut none)
        });
        tokio::time::timeout(keepalive, ready).await.is_ok()
    }

    fn timed_out() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::TimedOut, "request header timeout")
    }
}

fn refused(e: super::FramingError) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e)
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if let Some((budget, _)) = &this.http2 {
            if budget.is_cut() {
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "HTTP/2 client abandons far more requests than it completes",
                )));
            }
        }
        this.apply_told();
        if !this.held.is_empty() {
            return Poll::Ready(this.read_held(buf));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let got = &buf.filled()[before..];
                if got.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                let scanned = match this.framing.scan(got) {
                    Ok(scanned) => scanned,
                    Err(e) => return Poll::Ready(Err(refused(e))),
                };
                if scanned.deliver < got.len() {
                    this.held.extend_from_slice(&got[scanned.deliver..]);
                    buf.set_filled(before + scanned.deliver);
                }
                if scanned.head_ended {
                    this.deadline = None;
                } else if this.framing.in_head()
                    && this.deadline.is_some_and(|d| Instant::now() >= d)
                {
                    return Poll::Ready(Err(Self::timed_out()));
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if this.http2.is_some() => {
                if let Some((budget, _)) = &this.http2 {
                    budget.wait_with(cx.waker());
                }
                Poll::Pending
            }
            Poll::Pending if this.framing.in_head() || this.deadline.is_some() => {
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

impl GuardedStream {
    /// Writes out what `out` gathered.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.out_written < self.out.len() {
            let n = std::task::ready!(
                Pin::new(&mut self.inner).poll_write(cx, &self.out[self.out_written..])
            )?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.out_written += n;
        }
        self.out.clear();
        self.out_written = 0;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        // HTTP/2 frames are gathered by the h2 codec already.
        if this.http2.is_some() {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        if this.out.len() + buf.len() > WRITE_BUFFER {
            std::task::ready!(this.poll_write_out(cx))?;
        }
        if buf.len() >= WRITE_BUFFER {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        if this.out.capacity() == 0 {
            this.out.reserve_exact(WRITE_BUFFER);
        }
        this.out.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_write_out(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_write_out(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
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
    /// An HTTP/2 connection's digest carries what its streams share ([`Http2Connection::of`]).
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        match &self.http2 {
            Some((_, digest)) => Some(digest.clone()),
            None => self.inner.get_proxy_digest(),
        }
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
    /// Held-back bytes come before the connection's own (Pingora peeks only before its first
    /// read, for the HTTP/2 preface, when nothing is held).
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        if self.held.is_empty() {
            return self.inner.try_peek(buf).await;
        }
        let n = self.held.len().min(buf.len());
        buf[..n].copy_from_slice(&self.held[..n]);
        Ok(true)
    }
}
