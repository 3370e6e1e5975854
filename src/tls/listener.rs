//! A TLS listener's side of a connection: the handshake (bounded in time, counted by version)
//! with the certificate chosen by SNI from a table that rotation replaces.

use std::sync::Arc;
use std::time::Duration;

use pingora_core::listeners::tls::Acceptor;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::tls::TlsStream;
use pingora_core::protocols::{GetSocketDigest, Ssl};
use prometheus::{IntCounter, IntGauge};
use rustls::server::ServerConfig;
use rustls::version::{TLS12, TLS13};

use super::pair::{CertPair, PairError, PairFiles};
use super::store::{CertTable, SniResolver};
use crate::config::{ListenerConfig, ListenerTls, TlsVersion};
use crate::metrics::Metrics;

/// ALPN protocol ids, in our order of preference.
const ALPN_H2: &[u8] = b"h2";
const ALPN_HTTP11: &[u8] = b"http/1.1";

/// The TLS of one listener.
pub struct TlsListener {
    /// The listener's name, for logs.
    pub name: String,
    /// Its certificate files, in config order (the rows of the resolver's table).
    pub files: Vec<PairFiles>,
    /// The certificates served now.
    pub resolver: Arc<SniResolver>,
    acceptor: Acceptor,
    /// Completed handshakes: TLS 1.2, TLS 1.3.
    handshakes: [IntCounter; 2],
    /// notAfter of each certificate, by row.
    expiry: Vec<IntGauge>,
}

impl TlsListener {
    /// Loads the certificates of `listener` (checked by the config already; read again here,
    /// as they may have changed since) and builds its acceptor.
    pub fn new(
        listener: &ListenerConfig,
        tls: &ListenerTls,
        metrics: &Metrics,
    ) -> Result<TlsListener, String> {
        let pairs = tls
            .certificates
            .iter()
            .map(|files| CertPair::load(files).map(Arc::new))
            .collect::<Result<Vec<_>, PairError>>()
            .map_err(|e| format!("listener {}: {e}", listener.name))?;
        let expiry: Vec<IntGauge> = tls
            .certificates
            .iter()
            .map(|files| {
                metrics
                    .tls_certificate_expiry
                    .with_label_values(&[listener.name.as_str(), files.cert_file.as_str()])
            })
            .collect();
        for (gauge, pair) in expiry.iter().zip(&pairs) {
            gauge.set(pair.not_after);
        }
        let resolver = Arc::new(SniResolver::new(CertTable::new(pairs)));
        let config = server_config(resolver.clone(), tls.min_version, listener.http2)
            .map_err(|e| format!("listener {}: {e}", listener.name))?;
        let handshakes = ["TLSv1.2", "TLSv1.3"].map(|version| {
            metrics
                .tls_handshakes
                .with_label_values(&[listener.name.as_str(), version])
        });
        Ok(TlsListener {
            name: listener.name.clone(),
            files: tls.certificates.clone(),
            resolver,
            acceptor: Acceptor::from_server_config(Arc::new(config)),
            handshakes,
            expiry,
        })
    }

    /// Runs the server side of the handshake on `stream`, giving up after `deadline`; `None`
    /// when it fails or runs out of time (the connection is then dropped).
    pub async fn handshake(
        &self,
        stream: L4Stream,
        deadline: Duration,
    ) -> Option<TlsStream<L4Stream>> {
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().map(|a| a.to_string()))
            .unwrap_or_default();
        match tokio::time::timeout(deadline, self.acceptor.tls_handshake(stream)).await {
            Ok(Ok(tls)) => {
                let version = tls.get_ssl_digest().map(|d| d.version.clone());
                match version.as_deref() {
                    Some("TLSv1_2") => self.handshakes[0].inc(),
                    Some("TLSv1_3") => self.handshakes[1].inc(),
                    _ => {}
                }
                Some(tls)
            }
            // Scanners and broken clients are common: not an error of ours.
            Ok(Err(e)) => {
                log::debug!(
                    "listener {}: TLS handshake from {peer} failed: {e}",
                    self.name
                );
                None
            }
            Err(_) => {
                log::debug!(
                    "listener {}: TLS handshake from {peer} not done within {deadline:?}: closed",
                    self.name
                );
                None
            }
        }
    }

    /// Serves `pair` in row `idx` to the handshakes that start from now on.
    pub fn replace(&self, idx: usize, pair: Arc<CertPair>) {
        self.expiry[idx].set(pair.not_after);
        let table = self.resolver.table().with_pair(idx, pair);
        self.resolver.publish(table);
    }
}

/// rustls's server settings for a listener: versions from `min`, ALPN `h2` when HTTP/2 is on,
/// certificates from `resolver`. The ring provider's suites are all forward-secret AEAD.
fn server_config(
    resolver: Arc<SniResolver>,
    min: TlsVersion,
    http2: bool,
) -> Result<ServerConfig, rustls::Error> {
    let versions: &[&rustls::SupportedProtocolVersion] = match min {
        TlsVersion::Tls12 => &[&TLS12, &TLS13],
        TlsVersion::Tls13 => &[&TLS13],
    };
    let mut config = ServerConfig::builder_with_provider(super::provider().clone())
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = if http2 {
        vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()]
    } else {
        vec![ALPN_HTTP11.to_vec()]
    };
    Ok(config)
}
