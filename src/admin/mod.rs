//! The admin listener: the REST API ([`api`], [`stats`]), Prometheus `/metrics` and `/healthz`,
//! all behind the admin bearer token when one is configured (without one, config validation
//! keeps the listener on loopback), and the dashboard ([`dashboard`], `GET /`), whose page asks
//! for the token and sends it with each API call.

pub mod api;
pub mod dashboard;
mod error;
pub mod stats;

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

pub use api::{api_router, require_token, AdminState, Catalog, ConfigCatalog, ExecutorInfo};
pub use error::AdminError;

use crate::metrics::Metrics;

/// The whole admin app: the API, `/metrics`, `/healthz` and the dashboard.
pub fn router(state: AdminState, metrics: Arc<Metrics>) -> Router {
    let ops = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(metrics)
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    ops.merge(api_router(state.clone()))
        .merge(stats::router(state))
        .merge(dashboard::router())
}

async fn render_metrics(State(metrics): State<Arc<Metrics>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics.render(),
    )
        .into_response()
}
