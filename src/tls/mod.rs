//! TLS: termination on listeners (certificates chosen by SNI, rotated from disk without a
//! reload) and the roots tether trusts when it speaks TLS to backends.
//!
//! The stack is rustls with the ring provider, through Pingora's `rustls` feature: memory-safe
//! and built with only a C compiler. Pingora's `certificate_callback` does not run under rustls,
//! so the certificate is chosen by our [`SniResolver`] over a table swapped whole on rotation.
//! The handshake runs in tether's connection guard rather than Pingora's listener, so it is
//! bounded by `limits.request_header_timeout` (Pingora allows 60 s) and counted by version.

mod listener;
mod pair;
mod store;
mod watch;

use std::path::Path;
use std::sync::Arc;

use pingora_core::utils::tls::{parse_x509, WrappedX509};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

pub use listener::TlsListener;
pub use pair::{provider, CertPair, PairError, PairFiles, PairPart};
pub use store::{CertTable, SniResolver};
pub use watch::{check, CertWatcher, Checked, Spell, CHECK_EVERY, REPORT_AFTER};

/// The certificates of a CA file (PEM, at least one), as DER.
pub fn read_roots(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let file = path.display();
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read `{file}`: {e}"))?;
    let roots: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("`{file}` is not a PEM certificate file: {e}"))?;
    if roots.is_empty() {
        return Err(format!(
            "`{file}` holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        ));
    }
    for (i, der) in roots.iter().enumerate() {
        x509_parser::parse_x509_certificate(der.as_ref())
            .map_err(|e| format!("`{file}`: certificate {} cannot be parsed: {e}", i + 1))?;
    }
    Ok(roots)
}

/// The roots of a CA file as Pingora's upstream TLS takes them (checked by [`read_roots`]).
pub fn upstream_roots(path: &Path) -> Result<Arc<UpstreamRoots>, String> {
    let roots: Vec<WrappedX509> = read_roots(path)?
        .into_iter()
        .map(|der| WrappedX509::new(der.to_vec(), parse_x509))
        .collect();
    Ok(Arc::from(roots.into_boxed_slice()))
}

/// A set of roots for Pingora's upstream TLS.
pub type UpstreamRoots = pingora_core::protocols::tls::CaType;
