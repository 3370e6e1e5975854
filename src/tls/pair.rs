//! A certificate chain and its private key, read from PEM files and checked: the key must be
//! the certificate's, and the leaf's DNS names (for SNI) and expiry are read once here.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Where a pair is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairFiles {
    /// `cert_file` as written in the config: the metrics label and what messages quote.
    pub cert_file: String,
    /// The certificate chain file (leaf first), resolved against the config's folder.
    pub cert_path: PathBuf,
    /// The private key file, resolved against the config's folder.
    pub key_path: PathBuf,
}

/// A loaded, consistent pair.
#[derive(Debug)]
pub struct CertPair {
    /// What rustls serves.
    pub certified: Arc<CertifiedKey>,
    /// The leaf's DNS names, lowercase (from subjectAltName; the common name only when it has
    /// none), wildcards as written (`*.example.com`).
    pub names: Vec<String>,
    /// The leaf's notAfter, in Unix seconds.
    pub not_after: i64,
    /// The bytes of both files, to notice a change.
    pub source: (Vec<u8>, Vec<u8>),
}

/// Why a pair could not be loaded: which file, and a message naming it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairError(pub PairPart, pub String);

/// The file a [`PairError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairPart {
    /// The certificate file.
    Cert,
    /// The key file.
    Key,
    /// Both: the key is not the certificate's.
    Both,
}

impl std::fmt::Display for PairError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}

impl std::error::Error for PairError {}

impl CertPair {
    /// Reads and checks the pair of `files`.
    pub fn load(files: &PairFiles) -> Result<CertPair, PairError> {
        let cert = read(&files.cert_path, PairPart::Cert)?;
        let key = read(&files.key_path, PairPart::Key)?;
        CertPair::from_pem(cert, key, files)
    }

    /// Checks a pair given as the bytes of its two files.
    pub fn from_pem(cert: Vec<u8>, key: Vec<u8>, files: &PairFiles) -> Result<CertPair, PairError> {
        let cert_file = files.cert_path.display();
        let key_file = files.key_path.display();
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert)
            .collect::<Result<_, _>>()
            .map_err(|e| {
                PairError(
                    PairPart::Cert,
                    format!("`{cert_file}` is not a PEM certificate file: {e}"),
                )
            })?;
        let Some(leaf) = chain.first() else {
            return Err(PairError(
                PairPart::Cert,
                format!("`{cert_file}` holds no PEM certificate (-----BEGIN CERTIFICATE-----)"),
            ));
        };
        let (_, parsed) = X509Certificate::from_der(leaf.as_ref()).map_err(|e| {
            PairError(
                PairPart::Cert,
                format!("`{cert_file}`: the first certificate cannot be parsed: {e}"),
            )
        })?;
        let names = dns_names(&parsed);
        let not_after = parsed.validity().not_after.timestamp();
        let private = PrivateKeyDer::from_pem_slice(&key).map_err(|e| {
            PairError(
                PairPart::Key,
                format!("`{key_file}` holds no PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"),
            )
        })?;
        let certified =
            CertifiedKey::from_der(chain, private, provider()).map_err(|e| match e {
                rustls::Error::InconsistentKeys(_) => PairError(
                    PairPart::Both,
                    format!(
                        "the key in `{key_file}` does not match the certificate in `{cert_file}`"
                    ),
                ),
                e => PairError(
                    PairPart::Key,
                    format!("`{key_file}`: the key cannot be used: {e}"),
                ),
            })?;
        Ok(CertPair {
            certified: Arc::new(certified),
            names,
            not_after,
            source: (cert, key),
        })
    }

    /// Seconds from `now` (Unix seconds) until it expires; negative once expired.
    pub fn seconds_left(&self, now: i64) -> i64 {
        self.not_after - now
    }
}

/// The crypto provider tether's TLS uses: rustls's ring provider (the one Pingora's `rustls`
/// feature builds), whose suites are all forward-secret AEAD.
pub fn provider() -> &'static Arc<CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<Arc<CryptoProvider>> = std::sync::OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
}

fn read(path: &Path, part: PairPart) -> Result<Vec<u8>, PairError> {
    std::fs::read(path)
        .map_err(|e| PairError(part, format!("cannot read `{}`: {e}", path.display())))
}

/// The DNS names a certificate is for: subjectAltName entries, or the common name when there
/// are none (as old certificates have it).
fn dns_names(cert: &X509Certificate<'_>) -> Vec<String> {
    let mut names: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(name) => Some(name.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if names.is_empty() {
        names = cert
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok())
            .map(str::to_ascii_lowercase)
            .collect();
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> PairFiles {
        PairFiles {
            cert_file: "c.pem".into(),
            cert_path: "c.pem".into(),
            key_path: "k.pem".into(),
        }
    }

    fn made(names: &[&str]) -> (Vec<u8>, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem().into_bytes(), key.serialize_pem().into_bytes())
    }

    #[test]
    fn a_pair_reads_its_names_and_expiry() {
        let (cert, key) = made(&["Shop.Example.com", "*.api.example.com"]);
        let pair = CertPair::from_pem(cert, key, &files()).unwrap();
        assert_eq!(pair.names, ["shop.example.com", "*.api.example.com"]);
        // rcgen's default validity ends in 4096.
        assert!(pair.not_after > 4_000_000_000, "{}", pair.not_after);
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let (cert, _) = made(&["a.test"]);
        let (_, other_key) = made(&["a.test"]);
        let e = CertPair::from_pem(cert, other_key, &files()).unwrap_err();
        assert!(e.1.contains("does not match"), "{e}");
        assert_eq!(e.0, PairPart::Both);
    }

    #[test]
    fn files_that_are_not_pem_are_refused_by_name() {
        let (cert, key) = made(&["a.test"]);
        let e = CertPair::from_pem(b"garbage".to_vec(), key.clone(), &files()).unwrap_err();
        assert!(e.1.contains("`c.pem` holds no PEM certificate"), "{e}");
        let e = CertPair::from_pem(cert.clone(), b"garbage".to_vec(), &files()).unwrap_err();
        assert!(e.1.contains("`k.pem` holds no PEM private key"), "{e}");
        // A key where the certificate belongs, and the other way round.
        let e = CertPair::from_pem(key.clone(), cert.clone(), &files()).unwrap_err();
        assert!(e.1.contains("`c.pem`"), "{e}");
        let e = CertPair::load(&PairFiles {
            cert_path: "/nonexistent/c.pem".into(),
            ..files()
        })
        .unwrap_err();
        assert!(e.1.contains("cannot read `/nonexistent/c.pem`"), "{e}");
    }
}
