//! A listener's accept loop, in place of Pingora's listening service.
//!
//! Pingora's service spawns one task per connection whose state is sized for its own TLS
//! handshake (~8.8 KB with the `rustls` feature), kept for the connection's whole life even
//! though tether's listeners never use Pingora's TLS. This loop spawns a task that holds the
//! connection and its app's future and nothing else; the listening socket is taken over and
//! handed on in upgrades (`-u`) exactly as Pingora's is, through the same fd table.

use std::sync::Arc;
use std::time::Duration;

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd};

use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::{GetSocketDigest, SocketDigest};
use pingora_core::server::{ListenFds, ShutdownWatch};
use pingora_core::services::Service;
use tokio::net::{TcpListener, TcpSocket};

/// Accepts the connections of one address and serves each with `app`.
pub struct ListenerService<A> {
    name: String,
    address: String,
    app: Option<Arc<A>>,
}

impl<A> ListenerService<A> {
    /// A service named `name` serving `address` (`ip:port`) with `app`.
    pub fn new(name: String, address: String, app: A) -> Self {
        ListenerService {
            name,
            address,
            app: Some(Arc::new(app)),
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> Service for ListenerService<A> {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        listeners_per_fd: usize,
    ) {
        let Some(app) = self.app.take() else {
            return;
        };
        let listener = match listen(&self.address, fds).await {
            Ok(listener) => Arc::new(listener),
            Err(e) => {
                // Without its socket the listener cannot serve: a start that half works would
                // hide it from the operator (and from `-u`, which hands every socket on).
                log::error!("{}: cannot listen on {}: {e}", self.name, self.address);
                std::process::exit(1);
            }
        };
        let loops: Vec<_> = (0..listeners_per_fd.max(1))
            .map(|_| {
                let (listener, app, shutdown) = (listener.clone(), app.clone(), shutdown.clone());
                pingora_runtime::current_handle().spawn(accept_loop(listener, app, shutdown))
            })
            .collect();
        futures::future::join_all(loops).await;
        app.cleanup().await;
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        Some(vec![self.address.clone()])
    }
}

/// Pingora's listening backlog, kept alike.
const BACKLOG: u32 = 65535;

/// The listening socket of `address`: the one the previous instance handed over (`-u`), else a
/// new one, put into the table to be handed on. A busy address is tried again every second
/// for 30 s, as Pingora does (the old instance of a restart may still hold it).
async fn listen(address: &str, fds: Option<ListenFds>) -> std::io::Result<TcpListener> {
    if let Some(fds) = &fds {
        let handed_over = fds.lock().get(address).copied();
        if let Some(fd) = handed_over {
            // SAFETY: the fd table holds the listening sockets the previous instance passed over
            // the upgrade socket; each address's is taken by its one listener, as Pingora's
            // own services take theirs.
            #[allow(unsafe_code)]
            let socket = unsafe { std::net::TcpStream::from_raw_fd(fd) };
            // Listening again on a listening socket only updates its backlog on Linux.
            return TcpSocket::from_std_stream(socket).listen(BACKLOG);
        }
    }
    let addr: SocketAddr = address
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut tries = 0;
    let listener = loop {
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(addr) {
            Ok(()) => break socket.listen(BACKLOG)?,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 30 => {
                tries += 1;
                log::warn!("{address} is in use, will try again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    };
    if let Some(fds) = fds {
        fds.lock().add(address.to_string(), listener.as_raw_fd());
    }
    Ok(listener)
}

/// Accepts until the server shuts down; each connection gets its own task, on a thread of the
/// service's runtime picked as Pingora picks one.
async fn accept_loop<A: ServerApp + Send + Sync + 'static>(
    listener: Arc<TcpListener>,
    app: Arc<A>,
    mut shutdown: ShutdownWatch,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            changed = shutdown.changed() => match changed {
                Ok(()) if !*shutdown.borrow() => continue,
                _ => return,
            },
        };
        match accepted {
            Ok((tcp, peer)) => {
                // Responses leave whole (the guard gathers small writes); what remains of a
                // longer one should not wait for the client's delayed ACK.
                let _ = tcp.set_nodelay(true);
                let mut stream = L4Stream::from(tcp);
                let digest = SocketDigest::from_raw_fd(stream.as_raw_fd());
                let _ = digest.peer_addr.set(Some(peer.into()));
                stream.set_socket_digest(digest);
                let (app, shutdown) = (app.clone(), shutdown.clone());
                pingora_runtime::current_handle().spawn(async move {
                    let mut next = app.process_new(Box::new(stream), &shutdown).await;
                    while let Some(stream) = next {
                        next = app.process_new(stream, &shutdown).await;
                    }
                });
            }
            Err(e) => {
                log::error!("accept failed: {e}");
                if e.raw_os_error() == Some(EMFILE) {
                    // accept() fails at once while no descriptor is free: let others close.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

/// "Too many open files", on Linux.
const EMFILE: i32 = 24;
