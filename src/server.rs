//! Assembles the Pingora server from a validated [`Config`]: per cluster a background service
//! (discovery and health probes), per listener a proxy service (which waits for its clusters' first discovery), the
//! certificate watcher of the TLS listeners, the admin listener and the log flusher.

use std::sync::Arc;

use pingora_core::apps::HttpServerOptions;
use pingora_core::protocols::http::v2::server::default_h2_options;
use pingora_core::server::configuration::Opt;
use pingora_core::server::Server;
use pingora_core::services::background::background_service;
use pingora_core::services::listening::Service;
use pingora_proxy::HttpProxy;

use crate::admin::Admin;
use crate::cluster::ClustersService;
use crate::config::{Config, Limits, ListenerConfig};
use crate::downstream::{Guarded, ListenerService};
use crate::gateway::Gateway;
use crate::logging::Flusher;
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::tls::{CertWatcher, TlsListener};
use crate::token::KeyRing;

/// How the process was started (Pingora's flags).
#[derive(Debug, Clone, Copy, Default)]
pub struct StartMode {
    /// `-u`: take the listening sockets over from a running instance.
    pub upgrade: bool,
    /// `-d`: run in the background.
    pub daemon: bool,
}

/// Builds the bootstrapped server, ready for `run_forever`.
pub fn build(config: Config, mode: StartMode) -> Result<Server, Box<dyn std::error::Error>> {
    crate::logging::set_json_access(config.access_log == crate::config::AccessLogFormat::Json);
    for warning in &config.warnings {
        log::warn!("{}:{warning}", config.path.display());
    }
    let opt = Opt {
        upgrade: mode.upgrade,
        daemon: mode.daemon,
        ..Opt::default()
    };
    let ring = Arc::new(key_ring(&config)?);
    let metrics = Arc::new(Metrics::new()?);
    let (gateway, health) = Gateway::build(&config, &ring, &metrics)?;
    let mut server = Server::new_with_opt_and_conf(opt, config.server);
    server.bootstrap();

    // One service runs every cluster's discovery and probes; listeners wait for it.
    let clusters = (!health.is_empty())
        .then(|| server.add_service(background_service("clusters", ClustersService::new(health))));
    let mut watched = Vec::new();
    for (idx, listener) in gateway.listeners.iter().enumerate() {
        let mut app = HttpProxy::new(
            Proxy::new(gateway.clone(), idx, config.limits),
            server.configuration.clone(),
        );
        app.handle_init_modules();
        http2_options(&mut app, listener, &config.limits);
        let mut guarded =
            Guarded::new(app, config.limits).with_h2c(listener.tls.is_none() && listener.http2);
        if let Some(tls) = &listener.tls {
            let tls = Arc::new(TlsListener::new(listener, tls, &metrics)?);
            watched.push(tls.clone());
            guarded = guarded.with_tls(tls);
        }
        let proxy = ListenerService::new(
            format!("listener {}", listener.name),
            listener.address.to_string(),
            guarded,
        );
        // No traffic before the backends are known, or every request would get 503.
        let handle = server.add_service(proxy);
        if let Some(clusters) = &clusters {
            handle.add_dependency(clusters);
        }
    }
    if !watched.is_empty() {
        server.add_service(background_service(
            "certificate watcher",
            CertWatcher::new(watched),
        ));
    }
    server.add_service(background_service("log flusher", Flusher));
    if let Some(admin) = &config.admin {
        let mut service = Service::new(
            "admin".to_string(),
            Admin::new(metrics, gateway, admin.token.clone()),
        );
        service.add_tcp(&admin.listen.to_string());
        service.threads = Some(1);
        server.add_service(service);
    }
    Ok(server)
}

/// HTTP/2 on a listener: h2c when asked for on a plain one (ALPN decides on TLS), Pingora's
/// bounded defaults (100 streams, and the header list capped at the configured header size),
/// and idle connections closed after the keep-alive timeout.
fn http2_options(app: &mut HttpProxy<Proxy>, listener: &ListenerConfig, limits: &Limits) {
    let mut options = HttpServerOptions::default();
    options.h2c = listener.tls.is_none() && listener.http2;
    options.h2_idle_timeout = Some(limits.keepalive_timeout);
    app.server_options = Some(options);
    let mut h2 = default_h2_options();
    h2.max_header_list_size(u32::try_from(limits.max_request_header_bytes).unwrap_or(u32::MAX));
    app.h2_options = Some(h2);
}

/// The key ring of `session_keys`, or a random key (with a warning) when none are configured.
fn key_ring(config: &Config) -> Result<KeyRing, String> {
    if !config.session_keys.is_empty() {
        return KeyRing::new(&config.session_keys);
    }
    if config.routes.iter().any(|r| r.session.is_some()) {
        log::warn!(
            "no session_keys configured: using a random key; sessions will not survive a restart \
             or upgrade, and other instances will not honour them"
        );
    }
    KeyRing::random()
}
