//! The admin listener: the REST API ([`api`], [`stats`]), Prometheus `/metrics` and `/healthz`,
//! all behind the admin bearer token when one is configured (without one, config validation
//! keeps the listener on loopback), and the dashboard ([`dashboard`], `GET /`), whose page asks
//! for the token and sends it with each API call.

pub mod api;
pub mod dashboard;
mod error;
mod keys;
pub mod stats;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, Method};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::Router;

pub use api::{api_router, require_token, AdminState, Catalog, ConfigCatalog, ExecutorInfo};
pub use error::AdminError;

use dualrouter_core::metrics::Metrics;

/// The whole admin app: the API, `/metrics`, `/healthz` and the dashboard.
pub fn router(state: AdminState, metrics: Arc<Metrics>) -> Router {
    let ops = ops_routes().finish(&state, metrics);
    let ready = ready_routes().finish(&state, state.clone());
    ops.merge(ready)
        .merge(api_router(state.clone()))
        .merge(keys::routes().finish(&state, state.clone()))
        .merge(stats::router(state))
        .merge(dashboard::router())
}

fn ops_routes() -> Routes<Arc<Metrics>> {
    Routes::protected()
        .add(Method::GET, "/metrics", get(render_metrics))
        .add(Method::GET, "/healthz", get(|| async { "ok" }))
}

fn ready_routes() -> Routes<AdminState> {
    Routes::protected().add(Method::GET, "/readyz", get(readyz))
}

/// The proxy port's readiness report (store, encoder, checkpoint, a healthy model); without a
/// proxy (the API served alone) only the store is checked.
async fn readyz(
    State(state): State<AdminState>,
) -> Result<axum::Json<serde_json::Value>, AdminError> {
    let report = match &state.live {
        Some(live) => dualrouter_proxy::readiness(&live.current()).await,
        None => {
            let ping =
                tokio::time::timeout(std::time::Duration::from_secs(2), state.store.ping()).await;
            let store = match ping {
                Ok(Ok(())) => serde_json::json!({"ok": true}),
                Ok(Err(e)) => serde_json::json!({"ok": false, "error": e.to_string()}),
                Err(_) => serde_json::json!({"ok": false, "error": "no answer within 2000 ms"}),
            };
            let ready = store["ok"] == serde_json::json!(true);
            dualrouter_proxy::Readiness {
                ready,
                body: serde_json::json!({"ready": ready, "checks": {"store": store}}),
            }
        }
    };
    if report.ready {
        Ok(axum::Json(report.body))
    } else {
        Err(AdminError::NotReady(report.body))
    }
}

/// Who may call an admin route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Behind [`require_token`] (`Authorization: Bearer <admin token>` when one is configured).
    Token,
    /// Served to anyone who can reach the admin listener (the dashboard's page and assets,
    /// which hold no data and no secret).
    Public,
}

/// One route of the admin listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    pub method: Method,
    /// The axum path, with `{param}` placeholders.
    pub path: &'static str,
    pub access: Access,
}

/// Every route the admin listener serves, read from the same builders [`router`] is made of
/// (so the list cannot drift from the router). A `GET` route also answers `HEAD`.
pub fn route_table() -> Vec<RouteInfo> {
    let mut all = ops_routes().table;
    all.extend(ready_routes().table);
    all.extend(api::routes().table);
    all.extend(keys::routes().table);
    all.extend(stats::routes().table);
    all.extend(dashboard::routes().table);
    all
}

/// A router under construction that records each (method, path) it is given, and whose
/// [`Access`] decides, when it is finished, whether the token check is layered on.
pub(crate) struct Routes<S> {
    router: Router<S>,
    table: Vec<RouteInfo>,
    access: Access,
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    pub(crate) fn protected() -> Self {
        Self::new(Access::Token)
    }

    pub(crate) fn public() -> Self {
        Self::new(Access::Public)
    }

    fn new(access: Access) -> Self {
        Self {
            router: Router::new(),
            table: Vec::new(),
            access,
        }
    }

    /// Adds `handler` (a method router for `method` only) at `path`.
    pub(crate) fn add(
        mut self,
        method: Method,
        path: &'static str,
        handler: MethodRouter<S>,
    ) -> Self {
        self.table.push(RouteInfo {
            method,
            path,
            access: self.access,
        });
        self.router = self.router.route(path, handler);
        self
    }

    /// The finished router: behind the token check unless the routes are public.
    pub(crate) fn finish(self, admin: &AdminState, state: S) -> Router {
        let router = match self.access {
            Access::Token => self
                .router
                .route_layer(middleware::from_fn_with_state(admin.clone(), require_token)),
            Access::Public => self.router,
        };
        router.with_state(state)
    }
}

impl Routes<()> {
    /// The finished router of public, stateless routes. Fails closed: routes marked
    /// [`Access::Token`] cannot be finished without the admin state, so none are served.
    pub(crate) fn into_public_router(self) -> Router {
        match self.access {
            Access::Public => self.router,
            Access::Token => Router::new(),
        }
    }
}

async fn render_metrics(State(metrics): State<Arc<Metrics>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics.render(),
    )
        .into_response()
}
