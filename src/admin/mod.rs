//! The admin listener: an axum app served by a Pingora background service, behind the admin
//! bearer token when one is configured (without one, validation keeps it on loopback).

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::config::Secret;
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct AdminCore {
    pub token: Option<Secret>,
    pub metrics: Arc<Metrics>,
}

/// The admin app: `/metrics`, `/healthz`, behind the token check.
pub fn router(core: AdminCore) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .layer(middleware::from_fn_with_state(core.clone(), require_token))
        .with_state(core)
}

async fn metrics(State(core): State<AdminCore>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        core.metrics.render(),
    )
        .into_response()
}

/// `Authorization: Bearer TOKEN`, compared in constant time.
async fn require_token(State(core): State<AdminCore>, req: Request, next: Next) -> Response {
    if let Some(token) = &core.token {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if presented.is_empty() || !token.matches(presented.as_bytes()) {
            let body = serde_json::json!({"error": {"message": "missing or wrong admin token", "type": "authentication_error"}});
            return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
        }
    }
    next.run(req).await
}

/// Serves an axum app on an already-bound listener until Pingora shuts down.
pub struct AxumService {
    pub name: &'static str,
    pub listener: Mutex<Option<std::net::TcpListener>>,
    pub app: Router,
}

#[async_trait]
impl BackgroundService for AxumService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(std_listener) = self.listener.lock().ok().and_then(|mut l| l.take()) else {
            return;
        };
        let listener = match tokio::net::TcpListener::from_std(std_listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("{}: cannot use its listener: {e}", self.name);
                return;
            }
        };
        let served = axum::serve(listener, self.app.clone()).with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        });
        if let Err(e) = served.await {
            tracing::error!("{} stopped: {e}", self.name);
        }
    }
}
