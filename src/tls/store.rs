//! Choosing a listener's certificate by SNI: exact names before wildcards, the first
//! certificate for no SNI or an unknown name. The table is swapped whole when a certificate is
//! rotated, so a handshake reads it without a lock.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::pair::CertPair;

/// The certificates of a listener, indexed by name.
#[derive(Debug)]
pub struct CertTable {
    /// In config order; the first is the default.
    pairs: Vec<Arc<CertPair>>,
    /// Lowercase DNS name to index (the first certificate naming it).
    exact: HashMap<String, usize>,
    /// For `*.b.test`: `b.test` to index.
    wildcard: HashMap<String, usize>,
}

impl CertTable {
    /// A table of `pairs` (at least one).
    pub fn new(pairs: Vec<Arc<CertPair>>) -> CertTable {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for (idx, pair) in pairs.iter().enumerate() {
            for name in &pair.names {
                match name.strip_prefix("*.") {
                    Some(parent) => wildcard.entry(parent.to_string()).or_insert(idx),
                    None => exact.entry(name.clone()).or_insert(idx),
                };
            }
        }
        CertTable {
            pairs,
            exact,
            wildcard,
        }
    }

    /// The pairs, in config order.
    pub fn pairs(&self) -> &[Arc<CertPair>] {
        &self.pairs
    }

    /// The index of the certificate for `server_name` (RFC 6125: a wildcard stands for exactly
    /// one leftmost label).
    pub fn choose(&self, server_name: Option<&str>) -> usize {
        let Some(name) = server_name else {
            return 0;
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(&idx) = self.exact.get(&name) {
            return idx;
        }
        match name.split_once('.') {
            Some((label, parent)) if !label.is_empty() => {
                self.wildcard.get(parent).copied().unwrap_or(0)
            }
            _ => 0,
        }
    }

    /// A copy with pair `idx` replaced.
    pub fn with_pair(&self, idx: usize, pair: Arc<CertPair>) -> CertTable {
        let mut pairs = self.pairs.clone();
        pairs[idx] = pair;
        CertTable::new(pairs)
    }
}

/// The resolver rustls asks during each handshake.
#[derive(Debug)]
pub struct SniResolver {
    table: ArcSwap<CertTable>,
}

impl SniResolver {
    /// A resolver serving `table`.
    pub fn new(table: CertTable) -> SniResolver {
        SniResolver {
            table: ArcSwap::from_pointee(table),
        }
    }

    /// The table now served.
    pub fn table(&self) -> Arc<CertTable> {
        self.table.load_full()
    }

    /// Serves `table` to the handshakes that start from now on.
    pub fn publish(&self, table: CertTable) {
        self.table.store(Arc::new(table));
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let table = self.table.load();
        let idx = table.choose(hello.server_name());
        Some(table.pairs[idx].certified.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::pair::PairFiles;

    fn pair(names: &[&str]) -> Arc<CertPair> {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        let files = PairFiles {
            cert_file: String::new(),
            cert_path: "c".into(),
            key_path: "k".into(),
        };
        Arc::new(
            CertPair::from_pem(
                cert.pem().into_bytes(),
                key.serialize_pem().into_bytes(),
                &files,
            )
            .unwrap(),
        )
    }

    #[test]
    fn exact_names_before_wildcards_and_the_first_by_default() {
        let table = CertTable::new(vec![
            pair(&["default.test"]),
            pair(&["*.b.test"]),
            pair(&["x.b.test", "Other.Test"]),
        ]);
        assert_eq!(table.choose(None), 0);
        assert_eq!(table.choose(Some("unknown.test")), 0);
        assert_eq!(table.choose(Some("default.test")), 0);
        assert_eq!(table.choose(Some("y.b.test")), 1);
        assert_eq!(
            table.choose(Some("Y.B.TEST")),
            1,
            "names are case-insensitive"
        );
        assert_eq!(table.choose(Some("x.b.test")), 2, "exact before wildcard");
        assert_eq!(
            table.choose(Some("other.test.")),
            2,
            "a trailing dot is the same name"
        );
        // A wildcard covers exactly one label.
        assert_eq!(table.choose(Some("b.test")), 0);
        assert_eq!(table.choose(Some("z.y.b.test")), 0);
        assert_eq!(table.choose(Some(".b.test")), 0);
    }

    #[test]
    fn the_first_certificate_naming_a_host_wins() {
        let table = CertTable::new(vec![pair(&["a.test"]), pair(&["a.test", "*.a.test"])]);
        assert_eq!(table.choose(Some("a.test")), 0);
        assert_eq!(table.choose(Some("w.a.test")), 1);
        let replaced = table.with_pair(0, pair(&["c.test"]));
        assert_eq!(replaced.choose(Some("a.test")), 1);
        assert_eq!(replaced.choose(Some("c.test")), 0);
    }
}
