//! The admin listener: `GET /metrics`, `/healthz` and `/status`.

use std::sync::Arc;

use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use serde_json::json;

use crate::config::BackendState;
use crate::metrics::Metrics;
use crate::upstreams::Upstreams;

/// Serves the admin endpoints.
pub struct Admin {
    metrics: Arc<Metrics>,
    services: Vec<Arc<Upstreams>>,
}

impl Admin {
    /// An admin app over these metrics and services.
    pub fn new(metrics: Arc<Metrics>, services: Vec<Arc<Upstreams>>) -> Self {
        Admin { metrics, services }
    }

    /// Sets the health and draining gauges from the live state: read at scrape time, so they
    /// are exact without hooking into every health transition (see pingora#542).
    fn refresh_gauges(&self) {
        for up in &self.services {
            for idx in 0..up.len() {
                let b = up.backend(idx);
                let labels = [up.config.name.as_str(), b.id.as_str()];
                self.metrics
                    .backend_healthy
                    .with_label_values(&labels)
                    .set(i64::from(up.is_healthy(idx)));
                self.metrics
                    .backend_draining
                    .with_label_values(&labels)
                    .set(i64::from(b.state == BackendState::Draining));
            }
        }
    }

    /// The `/status` document.
    pub fn status(&self) -> serde_json::Value {
        let services: Vec<_> = self
            .services
            .iter()
            .map(|up| {
                let backends: Vec<_> = (0..up.len())
                    .map(|idx| {
                        let b = up.backend(idx);
                        json!({
                            "id": b.id,
                            "address": b.address,
                            "weight": b.weight,
                            "state": match b.state {
                                BackendState::Active => "active",
                                BackendState::Draining => "draining",
                            },
                            "healthy": up.is_healthy(idx),
                        })
                    })
                    .collect();
                json!({
                    "name": up.config.name,
                    "listen": up.config.listen.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                    "session_persistence": up.config.session.as_ref().map(|s| format!("{:?}", s.kind)),
                    "backends": backends,
                })
            })
            .collect();
        json!({ "version": env!("CARGO_PKG_VERSION"), "services": services })
    }
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

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        if req.method != Method::GET {
            let mut r = respond(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                b"method not allowed\n".to_vec(),
            );
            r.headers_mut()
                .insert(http::header::ALLOW, http::HeaderValue::from_static("GET"));
            return r;
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
            "/status" => {
                let mut body = serde_json::to_vec_pretty(&self.status()).unwrap_or_default();
                body.push(b'\n');
                respond(StatusCode::OK, "application/json", body)
            }
            _ => respond(StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec()),
        }
    }
}
