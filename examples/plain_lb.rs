//! The baseline for the load benchmark: a plain Pingora round-robin proxy, shaped like
//! Pingora's own `load_balancer` example (TCP health check every second, no stickiness).
//!
//! `PLAIN_LB_LISTEN=127.0.0.1:8100 PLAIN_LB_BACKENDS=127.0.0.1:9001,127.0.0.1:9002 plain_lb -c conf.yaml`
//!
//! With `PLAIN_LB_TLS_CERT` and `PLAIN_LB_TLS_KEY` (PEM files) it listens with TLS instead,
//! through Pingora's own TLS listener (rustls, ALPN h2 and http/1.1); with `PLAIN_LB_H2C` set, its
//! plain listener takes HTTP/2 with prior knowledge too.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::server::configuration::Opt;
use pingora_core::server::Server;
use pingora_core::services::background::background_service;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};
use pingora_load_balancing::health_check::TcpHealthCheck;
use pingora_load_balancing::selection::RoundRobin;
use pingora_load_balancing::LoadBalancer;
use pingora_proxy::{ProxyHttp, Session};

/// The proxy (also used in-process by `benches/allocs.rs`).
pub struct Lb(pub Arc<LoadBalancer<RoundRobin>>);

#[async_trait]
impl ProxyHttp for Lb {
    type CTX = ();
    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        let upstream = self
            .0
            .select(b"", 256)
            .ok_or_else(|| Error::explain(ErrorType::HTTPStatus(503), "no healthy backend"))?;
        Ok(Box::new(HttpPeer::new(upstream, false, String::new())))
    }
}

#[allow(dead_code)] // unused where benches/allocs.rs includes this file
fn main() {
    env_logger::init();
    let listen = std::env::var("PLAIN_LB_LISTEN").unwrap_or_else(|_| "127.0.0.1:8100".into());
    let backends = std::env::var("PLAIN_LB_BACKENDS").expect("PLAIN_LB_BACKENDS=ip:port,...");
    let mut server = Server::new(Some(Opt::parse_args())).expect("server");
    server.bootstrap();
    let mut upstreams =
        LoadBalancer::try_from_iter(backends.split(',')).expect("backend addresses");
    upstreams.set_health_check(TcpHealthCheck::new());
    upstreams.health_check_frequency = Some(Duration::from_secs(1));
    let background = background_service("health check", upstreams);
    let mut proxy = pingora_proxy::http_proxy_service(&server.configuration, Lb(background.task()));
    match (
        std::env::var("PLAIN_LB_TLS_CERT"),
        std::env::var("PLAIN_LB_TLS_KEY"),
    ) {
        (Ok(cert), Ok(key)) => {
            let mut tls = pingora_core::listeners::tls::TlsSettings::intermediate(&cert, &key)
                .expect("TLS settings");
            tls.enable_h2();
            proxy.add_tls_with_settings(&listen, None, tls);
        }
        _ => proxy.add_tcp(&listen),
    }
    if std::env::var("PLAIN_LB_H2C").is_ok() {
        // HTTP/2 with prior knowledge on the plain listener (the bench's h2c mode).
        let mut options = pingora_core::apps::HttpServerOptions::default();
        options.h2c = true;
        if let Some(app) = proxy.app_logic_mut() {
            app.server_options = Some(options);
        }
    }
    server.add_service(proxy);
    server.add_service(background);
    server.run_forever();
}
