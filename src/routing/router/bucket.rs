//! The candidates of one hostname bucket, in precedence order, and how a request's path finds
//! the first that takes it: a short bucket is tried in order; a long one (many paths under one
//! hostname) is indexed, so its cost grows with the path's segments, not with its routes.

use std::collections::HashMap;

use pingora_http::RequestHeader;

use super::Candidate;
use crate::config::PathMatch;

/// From this many candidates on, a bucket is indexed.
const INDEX_FROM: usize = 8;

/// The candidates of one hostname (or of routes without hostnames).
#[derive(Debug)]
pub(super) enum Bucket {
    /// Few candidates: tried in order, cheaper than hashing the path.
    Scan(Vec<Candidate>),
    /// Many: exact paths and prefixes looked up by the path, regular expressions in order.
    Indexed(Box<Indexed>),
}

/// An indexed bucket; each list keeps the precedence order of the candidates it holds.
#[derive(Debug, Default)]
pub(super) struct Indexed {
    exact: HashMap<Box<str>, Vec<Candidate>>,
    /// By prefix value (without a trailing `/`, as the config normalizes it).
    prefix: HashMap<Box<str>, Vec<Candidate>>,
    /// `PathPrefix /`: every path.
    root: Vec<Candidate>,
    regex: Vec<Candidate>,
}

impl Default for Bucket {
    fn default() -> Self {
        Bucket::Scan(Vec::new())
    }
}

impl Bucket {
    /// The bucket of `sorted`, candidates in precedence order.
    pub(super) fn new(sorted: Vec<Candidate>) -> Bucket {
        if sorted.len() < INDEX_FROM {
            return Bucket::Scan(sorted);
        }
        let mut index = Indexed::default();
        for candidate in sorted {
            let list = match &candidate.rule.path {
                PathMatch::Exact(p) => index.exact.entry(p.as_str().into()).or_default(),
                PathMatch::Prefix(p) if p == "/" => &mut index.root,
                PathMatch::Prefix(p) => index.prefix.entry(p.as_str().into()).or_default(),
                PathMatch::Regex(_) => &mut index.regex,
            };
            list.push(candidate);
        }
        Bucket::Indexed(Box::new(index))
    }

    /// The route of the first candidate that takes the request.
    pub(super) fn first(&self, req: &RequestHeader, path: &str) -> Option<usize> {
        match self {
            Bucket::Scan(candidates) => first_of(candidates, req, path),
            Bucket::Indexed(index) => index.first(req, path),
        }
    }
}

impl Indexed {
    /// Exact paths, then prefixes from the longest (the whole path, then up to each `/`),
    /// then `/`, then regular expressions: the precedence order across the lists.
    fn first(&self, req: &RequestHeader, path: &str) -> Option<usize> {
        let found = |list: Option<&Vec<Candidate>>| list.and_then(|l| first_of(l, req, path));
        if let Some(route) = found(self.exact.get(path)) {
            return Some(route);
        }
        if !self.prefix.is_empty() {
            let mut end = path.len();
            loop {
                if let Some(route) = found(self.prefix.get(&path[..end])) {
                    return Some(route);
                }
                match path[..end].rfind('/') {
                    Some(slash) if slash > 0 => end = slash,
                    _ => break,
                }
            }
        }
        first_of(&self.root, req, path).or_else(|| first_of(&self.regex, req, path))
    }
}

fn first_of(candidates: &[Candidate], req: &RequestHeader, path: &str) -> Option<usize> {
    candidates
        .iter()
        .find(|c| c.takes(req, path))
        .map(|c| c.route)
}
