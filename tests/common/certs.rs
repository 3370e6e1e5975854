//! Test certificates, made by the tests (rcgen): a CA, and server certificates it signs, written
//! as PEM files into a temp folder. No private key is ever committed.

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

use super::TempDir;

/// A test certificate authority and the folder its files go to.
pub struct TestCa {
    cert: Certificate,
    key: KeyPair,
    pub dir: TempDir,
}

/// A certificate and key written to files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A certificate and key as PEM text.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCa {
    /// A new CA; its certificate is written to `ca.pem`.
    pub fn new() -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // Each CA its own name: a client looks its issuer up by name.
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("tether test CA {n}"));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        let dir = TempDir::new();
        std::fs::write(dir.path("ca.pem"), cert.pem()).unwrap();
        TestCa { cert, key, dir }
    }

    /// The CA certificate file.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path("ca.pem")
    }

    /// A server certificate for `names` (DNS names or IP addresses), common name `cn`, valid
    /// from yesterday for `days`.
    pub fn issue_for(&self, cn: &str, names: &[&str], days: i64) -> Issued {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(days);
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// As [`TestCa::issue_for`], valid for a year, written to `<file>.pem` and `<file>.key`.
    pub fn issue(&self, file: &str, names: &[&str]) -> CertFiles {
        self.write(file, &self.issue_for(file, names, 365))
    }

    /// Writes `issued` to `<file>.pem` and `<file>.key` (replacing them whole, as a rename).
    pub fn write(&self, file: &str, issued: &Issued) -> CertFiles {
        let files = CertFiles {
            cert: self.dir.path(&format!("{file}.pem")),
            key: self.dir.path(&format!("{file}.key")),
        };
        replace_file(&files.cert, issued.cert_pem.as_bytes());
        replace_file(&files.key, issued.key_pem.as_bytes());
        files
    }
}

/// Writes `path` whole at once: a temp file renamed over it, as deployment tools do.
pub fn replace_file(path: &std::path::Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}
