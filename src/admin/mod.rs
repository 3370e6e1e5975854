//! The admin listener: `GET /metrics`, `/healthz`, `/status` and the status page `/`
//! ([`page`]), and with a token the write API ([`api`]): `POST /clusters/{cluster}/backends/{id}`.

mod api;
mod page;

use std::sync::Arc;

use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use serde_json::json;

use crate::cluster::Backend;
use crate::config::{AdminToken, BackendState};
use crate::gateway::Gateway;
use crate::metrics::Metrics;

pub use api::token_matches;

/// Serves the admin endpoints.
pub struct Admin {
    metrics: Arc<Metrics>,
    gateway: Arc<Gateway>,
    /// The write API's bearer token; none: writes are refused (403).
    token: Option<AdminToken>,
}

impl Admin {
    /// An admin app over these metrics and this gateway; `token` enables the write API.
    pub fn new(metrics: Arc<Metrics>, gateway: Arc<Gateway>, token: Option<AdminToken>) -> Self {
        Admin {
            metrics,
            gateway,
            token,
        }
    }

    /// Sets the backend gauges from the live state: read at scrape time, so they are exact
    /// without hooking into every health transition (see pingora#542).
    fn refresh_gauges(&self) {
        for cluster in &self.gateway.clusters {
            for b in &cluster.backends().backends {
                let labels = [cluster.config.name.as_str(), b.id.as_str()];
                let m = &self.metrics;
                m.backend_healthy
                    .with_label_values(&labels)
                    .set(i64::from(b.member.passes_probes()));
                m.backend_draining
                    .with_label_values(&labels)
                    .set(i64::from(b.state == BackendState::Draining));
                m.backend_ejected
                    .with_label_values(&labels)
                    .set(i64::from(b.member.outlier.ejected_flag()));
            }
        }
    }

    /// The `/status` document: listeners, routes, clusters and each backend's state.
    pub fn status(&self) -> serde_json::Value {
        let gw = &self.gateway;
        let route_names = |listener: usize| -> Vec<&str> {
            gw.routes
                .iter()
                .filter(|r| r.config.listeners.contains(&listener))
                .map(|r| r.config.name.as_str())
                .collect()
        };
        let listeners: Vec<_> = gw
            .listeners
            .iter()
            .enumerate()
            .map(|(i, l)| {
                json!({
                    "name": l.name,
                    "address": l.address.to_string(),
                    "protocol": "http",
                    "routes": route_names(i),
                })
            })
            .collect();
        let routes: Vec<_> = gw
            .routes
            .iter()
            .map(|r| {
                let c = &r.config;
                json!({
                    "name": c.name,
                    "listeners": c.listeners.iter().map(|&l| gw.listeners[l].name.as_str()).collect::<Vec<_>>(),
                    "hostnames": c.hostnames.iter().map(|h| h.to_text()).collect::<Vec<_>>(),
                    "clusters": c.backends.iter().map(|w| json!({
                        "cluster": gw.clusters[w.cluster].config.name,
                        "weight": w.weight,
                    })).collect::<Vec<_>>(),
                    "session_persistence": c.session.as_ref().map(|s| json!({
                        "type": format!("{:?}", s.kind),
                        "name": s.name,
                        "strict": s.strict,
                    })),
                })
            })
            .collect();
        let clusters: Vec<_> = gw
            .clusters
            .iter()
            .map(|c| {
                let backends: Vec<_> = c
                    .backends()
                    .backends
                    .iter()
                    .map(|b| backend_json(b))
                    .collect();
                json!({ "name": c.config.name, "backends": backends })
            })
            .collect();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "listeners": listeners,
            "routes": routes,
            "clusters": clusters,
        })
    }
}

/// A backend as `/status` and the write API show it.
fn backend_json(b: &Backend) -> serde_json::Value {
    json!({
        "id": b.id,
        "address": b.address,
        "weight": b.weight,
        "state": b.state.as_str(),
        "healthy": b.member.passes_probes(),
        "ejected": b.member.outlier.ejected_flag(),
        "source": b.source.as_str(),
    })
}

fn respond(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CONTENT_LENGTH, body.len())
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(body)
        .unwrap_or_default()
}

/// `405` with the method that is allowed.
fn not_allowed(allow: &'static str) -> Response<Vec<u8>> {
    let mut r = respond(
        StatusCode::METHOD_NOT_ALLOWED,
        "text/plain",
        b"method not allowed\n".to_vec(),
    );
    r.headers_mut()
        .insert(http::header::ALLOW, http::HeaderValue::from_static(allow));
    r
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        if req.uri.path().starts_with("/clusters/") {
            return self.write(session).await;
        }
        if req.method != Method::GET {
            return not_allowed("GET");
        }
        match req.uri.path() {
            "/metrics" => {
                self.refresh_gauges();
                respond(
                    StatusCode::OK,
                    "text/plain; version=0.0.4",
                    self.metrics.render(),
                )
            }
            "/healthz" => respond(StatusCode::OK, "text/plain", b"ok\n".to_vec()),
            "/" => respond(
                StatusCode::OK,
                "text/html; charset=utf-8",
                page::render(&self.gateway).into_bytes(),
            ),
            "/status" => {
                let mut body = serde_json::to_vec_pretty(&self.status()).unwrap_or_default();
                body.push(b'\n');
                respond(StatusCode::OK, "application/json", body)
            }
            _ => respond(StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec()),
        }
    }
}
