//! A listener's routing table, built once per config: which route takes a request, by the
//! Gateway API's precedence (SPEC 2.2).
//!
//! Hostnames come first: routes are bucketed by the hostnames they take, and a request looks at
//! the bucket of its exact host (a hash lookup), then at the buckets of its wildcard suffixes,
//! longest first (one lookup per label), then at the routes without hostnames. Within a bucket,
//! the candidates (one per route match) are sorted once by the rest of the precedence: an
//! `Exact` path, then the longest `PathPrefix`, then regular expressions in file order; a match
//! with a method before one without; more header conditions first; then the order in the file.
//! The first candidate whose conditions hold wins, so a regular expression only runs when no
//! cheaper candidate of the bucket took the request. A bucket of many candidates is indexed by
//! path ([`bucket`]): exact paths and prefixes are hash lookups, one per segment of the path.

use std::cmp::Reverse;
use std::collections::HashMap;

use pingora_http::RequestHeader;

use super::host::{request_host, MAX_HOST_LEN};
use crate::config::{Hostname, PathMatch, RouteConfig, RouteMatch};
use bucket::Bucket;

/// One route match that may take a request of a bucket.
#[derive(Debug, Clone)]
struct Candidate {
    route: usize,
    rule: RouteMatch,
}

impl Candidate {
    fn takes(&self, req: &RequestHeader, path: &str) -> bool {
        self.rule.path.accepts(path)
            && self.rule.method.as_ref().is_none_or(|m| *m == req.method)
            && self.rule.headers.iter().all(|h| {
                req.headers
                    .get_all(&h.name)
                    .iter()
                    .any(|v| v.as_bytes() == h.value.as_bytes())
            })
    }

    /// The precedence within a bucket (smaller first).
    fn rank(&self, order: usize) -> impl Ord {
        let (class, prefix) = match &self.rule.path {
            PathMatch::Exact(_) => (0, 0),
            PathMatch::Prefix(p) => (1, p.len()),
            PathMatch::Regex(_) => (2, 0),
        };
        (
            class,
            Reverse(prefix),
            Reverse(self.rule.method.is_some()),
            Reverse(self.rule.headers.len()),
            order,
        )
    }
}

/// The routes of one listener.
#[derive(Debug, Default)]
pub struct Router {
    exact: HashMap<Box<str>, Bucket>,
    /// Keyed by the suffix a `*.` hostname covers.
    wildcard: HashMap<Box<str>, Bucket>,
    any: Bucket,
}

impl Router {
    /// The table of `listener`: every route attached to it (`routes` in file order; a route's
    /// number is its index).
    pub fn new(routes: &[RouteConfig], listener: usize) -> Router {
        let mut order = 0;
        let mut ranked: Vec<(Option<Hostname>, Candidate, usize)> = Vec::new();
        for (idx, route) in routes.iter().enumerate() {
            if !route.listeners.contains(&listener) {
                continue;
            }
            for rule in &route.matches {
                let candidate = Candidate {
                    route: idx,
                    rule: rule.clone(),
                };
                if route.hostnames.is_empty() {
                    ranked.push((None, candidate, order));
                } else {
                    for h in &route.hostnames {
                        ranked.push((Some(h.clone()), candidate.clone(), order));
                    }
                }
                order += 1;
            }
        }
        ranked.sort_by_cached_key(|(_, c, order)| c.rank(*order));
        let mut exact: HashMap<Box<str>, Vec<Candidate>> = HashMap::new();
        let mut wildcard: HashMap<Box<str>, Vec<Candidate>> = HashMap::new();
        let mut any = Vec::new();
        for (hostname, candidate, _) in ranked {
            let bucket = match hostname {
                Some(Hostname::Exact(h)) => exact.entry(h.into()).or_default(),
                Some(Hostname::Wildcard(s)) => wildcard.entry(s.into()).or_default(),
                None => &mut any,
            };
            bucket.push(candidate);
        }
        let index = |m: HashMap<Box<str>, Vec<Candidate>>| {
            m.into_iter().map(|(k, v)| (k, Bucket::new(v))).collect()
        };
        Router {
            exact: index(exact),
            wildcard: index(wildcard),
            any: Bucket::new(any),
        }
    }

    /// The route (its number) that takes `req`, if any.
    pub fn route(&self, req: &RequestHeader) -> Option<usize> {
        let path = req.uri.path();
        let mut buf = [0u8; MAX_HOST_LEN];
        if !(self.exact.is_empty() && self.wildcard.is_empty()) {
            if let Some(host) = request_host(req, &mut buf) {
                if let Some(found) = self.exact.get(host).and_then(|b| b.first(req, path)) {
                    return Some(found);
                }
                if !self.wildcard.is_empty() {
                    // Longest suffix first: `a.b.c.test` tries `b.c.test`, `c.test`, `test`.
                    let suffixes = host.match_indices('.').map(|(dot, _)| &host[dot + 1..]);
                    for suffix in suffixes {
                        if let Some(found) =
                            self.wildcard.get(suffix).and_then(|b| b.first(req, path))
                        {
                            return Some(found);
                        }
                    }
                }
            }
        }
        self.any.first(req, path)
    }
}

mod bucket;
#[cfg(test)]
mod tests;
