//! Connections between a client and a server that the tests shape: TLS in front of a plain test
//! backend (a backend that speaks TLS), and a TCP relay that passes the client's first bytes on
//! one at a time.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;

use tokio_rustls::rustls;

use super::Issued;

/// A TLS server on `127.0.0.1` whose connections are relayed, decrypted, to `backend`.
pub struct TlsFront {
    pub addr: SocketAddr,
}

impl TlsFront {
    /// Serves `issued` (certificate and key), relaying to `backend`.
    pub fn start(backend: SocketAddr, issued: &Issued) -> TlsFront {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap();
        let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        let Ok(mut tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await else {
                            return;
                        };
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                    });
                }
            });
        });
        TlsFront { addr }
    }
}

/// A TCP relay to `target` that writes the client's bytes on one at a time (each flushed on
/// its own, no Nagle), so a server sees them split at every byte.
pub struct ByteRelay {
    pub addr: SocketAddr,
}

impl ByteRelay {
    /// Relays to `target`.
    pub fn start(target: SocketAddr) -> ByteRelay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                let _ = server.set_nodelay(true);
                let (mut c_in, mut s_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                thread::spawn(move || {
                    let mut byte = [0u8; 1];
                    while let Ok(1) = c_in.read(&mut byte) {
                        if s_out.write_all(&byte).is_err() {
                            break;
                        }
                        thread::sleep(std::time::Duration::from_micros(200));
                    }
                    let _ = s_out.shutdown(std::net::Shutdown::Write);
                });
                let (mut s_in, mut c_out) = (server, client);
                thread::spawn(move || {
                    let _ = std::io::copy(&mut s_in, &mut c_out);
                    let _ = c_out.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        ByteRelay { addr }
    }
}
