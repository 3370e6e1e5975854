//! What tether keeps per HTTP/2 client connection, shared by its streams: the client's address,
//! the last valid session token (so that the streams of a browser's connection verify its
//! cookie once, as HTTP/1.1 keep-alive requests do), and what the connection may cost: its
//! requests in flight, and the requests its client abandoned (reset) against those it let
//! complete.
//!
//! The HTTP/2 layer caps open streams (100) and closes a connection whose client resets streams
//! before they are taken up (the 2023 "rapid reset"). A client that resets each stream a moment
//! *after* it was taken up frees its stream slot while tether still proxies the request: each
//! reset is one more request at the backend, with no bound. So each request of an HTTP/2
//! connection is counted here, from its first phase to its log line; the connection is cut
//! (its reads fail, which ends it) when it has far more requests in flight than it may have
//! streams, or when its client abandons far more requests than it completes.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;

use http::HeaderValue;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_http::ResponseHeader;

use crate::token::TokenMemo;

/// Requests in flight beyond which a connection is cut: twice the streams it may have open
/// (a stream's request is logged just after the stream closes, so a few more are normal).
pub const MAX_IN_FLIGHT: usize = 200;
/// Abandoned requests a connection may have before the ratio below applies.
pub const ABANDONED_ALLOWANCE: u64 = 100;

/// One HTTP/2 connection, shared by its requests and its stream.
#[derive(Debug, Default)]
pub struct Http2Connection {
    /// The client's IP address as a header value (`X-Forwarded-For`).
    client_ip: Option<HeaderValue>,
    /// The last valid session token a stream of this connection presented.
    token_memo: TokenMemo,
    in_flight: AtomicUsize,
    completed: AtomicU64,
    abandoned: AtomicU64,
    cut: AtomicBool,
    /// The connection's reader, woken when the connection is cut.
    reader: Mutex<Option<Waker>>,
}

impl Http2Connection {
    /// A new connection from `client_ip`.
    pub fn new(client_ip: Option<HeaderValue>) -> Http2Connection {
        Http2Connection {
            client_ip,
            ..Http2Connection::default()
        }
    }

    /// The client's IP address, for `X-Forwarded-For`.
    pub fn client_ip(&self) -> Option<&HeaderValue> {
        self.client_ip.as_ref()
    }

    /// The connection's last valid session token.
    pub fn token_memo(&self) -> &TokenMemo {
        &self.token_memo
    }

    /// A request of this connection begins; `false` when the connection has just been cut.
    pub fn begin(&self) -> bool {
        let in_flight = self.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        if in_flight > MAX_IN_FLIGHT {
            self.cut();
            return false;
        }
        !self.is_cut()
    }

    /// A request of this connection ended: completed, or `abandoned` by its client (the stream
    /// failed on the client's side before the response was through).
    pub fn end(&self, abandoned: bool) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        if !abandoned {
            self.completed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let abandoned = self.abandoned.fetch_add(1, Ordering::Relaxed) + 1;
        if abandoned > ABANDONED_ALLOWANCE && abandoned > self.completed.load(Ordering::Relaxed) / 2
        {
            self.cut();
        }
    }

    /// Whether the connection must end.
    pub fn is_cut(&self) -> bool {
        self.cut.load(Ordering::Acquire)
    }

    fn cut(&self) {
        if !self.cut.swap(true, Ordering::AcqRel) {
            let client = self.client_ip.as_ref().and_then(|ip| ip.to_str().ok());
            log::warn!(
                "HTTP/2 client {}: {} requests in flight, {} abandoned, {} completed: disconnected",
                client.unwrap_or("-"),
                self.in_flight.load(Ordering::Relaxed),
                self.abandoned.load(Ordering::Relaxed),
                self.completed.load(Ordering::Relaxed)
            );
            if let Some(reader) = self.lock_reader().take() {
                reader.wake();
            }
        }
    }

    /// Remembers the waker of a read that waits, so that cutting the connection ends it.
    pub(super) fn wait_with(&self, waker: &Waker) {
        let mut reader = self.lock_reader();
        match reader.as_ref() {
            Some(w) if w.will_wake(waker) => {}
            _ => *reader = Some(waker.clone()),
        }
    }

    fn lock_reader(&self) -> std::sync::MutexGuard<'_, Option<Waker>> {
        self.reader.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The connection as its digest carries it to every request of the connection.
    pub(super) fn digest(self: &Arc<Self>) -> Arc<ProxyDigest> {
        // The digest's response is for CONNECT proxies; unused downstream.
        let unused = ResponseHeader::from(http::Response::new(()).into_parts().0);
        Arc::new(ProxyDigest::new(
            Box::new(unused),
            Some(Box::new(self.clone())),
        ))
    }

    /// The connection a request came on (HTTP/2 only).
    pub fn of(digest: Option<&pingora_core::protocols::Digest>) -> Option<&Arc<Http2Connection>> {
        digest?
            .proxy_digest
            .as_ref()?
            .user_data
            .as_ref()?
            .downcast_ref::<Arc<Http2Connection>>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_many_requests_in_flight_cut_the_connection() {
        let budget = Http2Connection::default();
        for _ in 0..MAX_IN_FLIGHT {
            assert!(budget.begin());
        }
        assert!(!budget.begin());
        assert!(budget.is_cut());
    }

    #[test]
    fn abandoning_far_more_than_completing_cuts_the_connection() {
        let budget = Http2Connection::default();
        // A browser that cancels now and then: fine.
        for i in 0..1000 {
            budget.begin();
            budget.end(i % 10 == 0);
        }
        assert!(!budget.is_cut());
        // Resets only: cut once past the allowance and half the completions.
        let budget = Http2Connection::default();
        for _ in 0..ABANDONED_ALLOWANCE {
            budget.begin();
            budget.end(true);
        }
        assert!(!budget.is_cut());
        budget.begin();
        budget.end(true);
        assert!(budget.is_cut());
    }

    #[test]
    fn a_waiting_reader_is_woken_by_the_cut() {
        let budget = Http2Connection::default();
        let woken = Arc::new(AtomicBool::new(false));
        struct Flag(Arc<AtomicBool>);
        impl std::task::Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let waker = Waker::from(Arc::new(Flag(woken.clone())));
        budget.wait_with(&waker);
        for _ in 0..=MAX_IN_FLIGHT {
            budget.begin();
        }
        assert!(woken.load(Ordering::SeqCst));
    }
}
