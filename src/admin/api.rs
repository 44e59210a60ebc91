//! The admin REST API (admin port; `docs/operations.md#admin-api`): routing policies, executors, decisions.
//!
//! [`api_router`] returns an axum `Router` the admin listener mounts beside `/metrics`. Every
//! route sits behind the bearer-token check ([`require_token`]): with a token configured, a
//! request without `Authorization: Bearer <token>` (compared in constant time) gets 401; with
//! none configured the listener is loopback-only (config validation enforces that) and open.
//!
//! | route | answers |
//! |---|---|
//! | `GET /api/routing/policies` | every policy, highest priority first |
//! | `POST /api/routing/policies` | 201 + the policy; 409 duplicate domain/action; 422 unknown model or bad value; 400 bad JSON |
//! | `GET /api/routing/policies/{id}` | the policy; 404 |
//! | `PUT /api/routing/policies/{id}` | replaces it (same body and errors as POST); 404 |
//! | `DELETE /api/routing/policies/{id}` | 204; 404 |
//! | `GET /api/executors` | every model: id, provider, source, price, health, last check |
//! | `GET /api/decisions?limit=&domain=&model=` | newest first; `limit` 1..=1000 (default 50) |
//! | `GET /api/decisions/{id}` | one decision; 404 |
//! | `GET /api/mirt/checkpoints` | every registered checkpoint, newest first, with its metrics and `active` |
//! | `POST /api/mirt/checkpoints/{version}/activate[?force=true]` | swaps it in live; 409 if worse than the active one on the held-out slice; 404 |
//! | `POST /api/mirt/train` `{"activate"?: bool, "data"?: NAME}` | 202 + the job: refits on logged outcomes (+ the upload NAME as base data) in the background; 409 while one runs |
//! | `POST /api/reload` | re-reads the config file and swaps the live state; 422 with every reason when it does not build (the old state keeps serving) |
//! | `GET /api/mirt/train` | the running or last job (epoch, validation BCE, the version it registered); 404 before any |
//!
//! Errors are JSON ([`AdminError`]). Secrets (the admin token, API keys) are never returned.

use super::error;

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;

pub use error::AdminError;

pub use dualrouter_core::catalog::{Catalog, ConfigCatalog, ExecutorInfo, Price};

use dualrouter_core::config::{Config, Secret};
use dualrouter_store::{DecisionQuery, PolicyProblem, PolicySpec, Store, MAX_DECISIONS_PAGE};

/// Decisions returned when `limit` is not given.
pub const DEFAULT_DECISIONS_PAGE: u32 = 50;

/// Everything the admin API's handlers need.
#[derive(Clone)]
pub struct AdminState {
    pub store: Store,
    /// The bearer token (`admin.token_env`); `None`: no check (loopback-only listener).
    pub token: Option<Secret>,
    pub catalog: Arc<dyn Catalog>,
    /// The proxy's live state: policy edits rebuild it at once, `/api/reload` re-reads the
    /// config, and the models come from its registry. `None` when the admin API runs without a
    /// proxy (tests of the API alone; `catalog` then answers).
    pub live: Option<Arc<crate::live::Live>>,
    /// MIRT training and checkpoint activation (`/api/mirt/*`); `None` without a proxy.
    pub trainer: Option<Arc<crate::trainer::Trainer>>,
}

impl AdminState {
    /// The state for one config: its admin token and its models.
    pub fn from_config(store: Store, cfg: &Config) -> Self {
        Self {
            store,
            token: cfg.admin.token.clone(),
            catalog: Arc::new(ConfigCatalog::new(cfg)),
            live: None,
            trainer: None,
        }
    }

    /// Rebuilds the live state with the store's policies after an edit, before answering.
    async fn policies_changed(&self) {
        if let Some(live) = &self.live {
            if let Err(e) = live.reload_policies().await {
                tracing::warn!("policy edit saved but not applied yet: {e}");
            }
        }
    }

    /// The models policies may name: the live registry's, else the fixed catalog.
    pub(crate) fn models(&self) -> Arc<dyn Catalog> {
        match &self.live {
            Some(live) => live.current().router.registry().clone(),
            None => self.catalog.clone(),
        }
    }
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState")
            .field("store", &self.store.backend())
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// The admin API's routes, behind the token check.
pub fn api_router(state: AdminState) -> Router {
    routes().finish(&state, state.clone())
}

pub(crate) fn routes() -> super::Routes<AdminState> {
    use axum::http::Method;
    use axum::routing::{delete, post, put};
    super::Routes::protected()
        .add(Method::GET, "/api/routing/policies", get(list_policies))
        .add(Method::POST, "/api/routing/policies", post(create_policy))
        .add(Method::GET, "/api/routing/policies/{id}", get(get_policy))
        .add(
            Method::PUT,
            "/api/routing/policies/{id}",
            put(update_policy),
        )
        .add(
            Method::DELETE,
            "/api/routing/policies/{id}",
            delete(delete_policy),
        )
        .add(Method::GET, "/api/executors", get(list_executors))
        .add(Method::GET, "/api/decisions", get(list_decisions))
        .add(Method::GET, "/api/decisions/{id}", get(get_decision))
        .add(Method::GET, "/api/mirt/checkpoints", get(list_checkpoints))
        .add(
            Method::POST,
            "/api/mirt/checkpoints/{version}/activate",
            post(activate_checkpoint),
        )
        .add(Method::GET, "/api/mirt/train", get(train_status))
        .add(Method::POST, "/api/mirt/train", post(start_training))
        .add(Method::POST, "/api/reload", post(reload))
}

/// Checks `Authorization: Bearer <token>` in constant time when a token is configured.
pub async fn require_token(State(state): State<AdminState>, req: Request, next: Next) -> Response {
    if let Some(token) = &state.token {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            });
        let ok = presented.is_some_and(|p| token.matches(p.as_bytes()));
        if !ok {
            return AdminError::Unauthorized.into_response();
        }
    }
    next.run(req).await
}

/// `Json<T>` whose rejections are [`AdminError`]s (JSON bodies, status 400).
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AdminError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(v) = Json::<T>::from_request(req, state).await?;
        Ok(Self(v))
    }
}

/// `Query<T>` whose rejections are [`AdminError`]s.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(v) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Self(v))
    }
}

fn policy_id(raw: &str) -> Result<i64, AdminError> {
    raw.parse::<i64>()
        .map_err(|_| AdminError::NotFound(format!("policy {raw} not found")))
}

/// The first problem with a policy body, as the error the client sees (422).
fn check_policy(state: &AdminState, spec: &PolicySpec) -> Result<(), AdminError> {
    let catalog = state.models();
    let problems = spec.problems(&|m| catalog.has_model(m));
    // An unknown model is the most useful thing to report, so it goes first.
    let first = problems
        .iter()
        .find(|p| matches!(p, PolicyProblem::UnknownModel { .. }))
        .or(problems.first());
    match first {
        None => Ok(()),
        Some(PolicyProblem::UnknownModel { field, model }) => Err(AdminError::UnknownModel {
            field: field.clone(),
            model: model.clone(),
        }),
        Some(PolicyProblem::Invalid { field, message }) => Err(AdminError::Invalid {
            field: field.clone(),
            message: message.clone(),
        }),
    }
}

async fn list_policies(State(state): State<AdminState>) -> Result<Response, AdminError> {
    Ok(Json(state.store.list_policies().await?).into_response())
}

async fn create_policy(
    State(state): State<AdminState>,
    ApiJson(spec): ApiJson<PolicySpec>,
) -> Result<Response, AdminError> {
    check_policy(&state, &spec)?;
    let policy = state.store.create_policy(&spec).await?;
    tracing::info!(id = policy.id, route = %policy.route(), "policy created");
    state.policies_changed().await;
    Ok((StatusCode::CREATED, Json(policy)).into_response())
}

async fn get_policy(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    let id = policy_id(&id)?;
    Ok(Json(state.store.get_policy(id).await?).into_response())
}

async fn update_policy(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    ApiJson(spec): ApiJson<PolicySpec>,
) -> Result<Response, AdminError> {
    let id = policy_id(&id)?;
    check_policy(&state, &spec)?;
    let policy = state.store.update_policy(id, &spec).await?;
    tracing::info!(id = policy.id, route = %policy.route(), "policy updated");
    state.policies_changed().await;
    Ok(Json(policy).into_response())
}

async fn delete_policy(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    let id = policy_id(&id)?;
    state.store.delete_policy(id).await?;
    tracing::info!(id, "policy deleted");
    state.policies_changed().await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_executors(State(state): State<AdminState>) -> Response {
    Json(state.models().executors()).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionParams {
    limit: Option<u32>,
    domain: Option<String>,
    model: Option<String>,
}

async fn list_decisions(
    State(state): State<AdminState>,
    ApiQuery(params): ApiQuery<DecisionParams>,
) -> Result<Response, AdminError> {
    let limit = params.limit.unwrap_or(DEFAULT_DECISIONS_PAGE);
    if limit == 0 || limit > MAX_DECISIONS_PAGE {
        return Err(AdminError::Invalid {
            field: "limit".into(),
            message: format!("must be between 1 and {MAX_DECISIONS_PAGE}"),
        });
    }
    for (field, value) in [("domain", &params.domain), ("model", &params.model)] {
        if value.as_deref().is_some_and(|v| v.contains('\0')) {
            return Err(AdminError::Invalid {
                field: field.into(),
                message: "must not contain a NUL character (U+0000)".into(),
            });
        }
    }
    let q = DecisionQuery {
        limit,
        domain: params.domain.filter(|s| !s.is_empty()),
        model: params.model.filter(|s| !s.is_empty()),
    };
    Ok(Json(state.store.list_decisions(&q).await?).into_response())
}

async fn get_decision(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    // No stored id holds U+0000, and PostgreSQL refuses it in a query (an error, not a miss).
    if id.contains('\0') {
        return Err(AdminError::NotFound(format!(
            "decision {} not found",
            id.escape_default()
        )));
    }
    match state.store.get_decision(&id).await? {
        Some(d) => Ok(Json(d).into_response()),
        None => Err(AdminError::NotFound(format!("decision {id} not found"))),
    }
}

fn trainer(state: &AdminState) -> Result<&Arc<crate::trainer::Trainer>, AdminError> {
    state
        .trainer
        .as_ref()
        .ok_or_else(|| AdminError::NotFound("MIRT training is not available here".into()))
}

impl From<crate::trainer::TrainerError> for AdminError {
    fn from(e: crate::trainer::TrainerError) -> Self {
        use crate::trainer::TrainerError as T;
        match e {
            T::Busy(_) | T::Worse { .. } => Self::Conflict(e.to_string()),
            T::NotFound(_) => Self::NotFound(e.to_string()),
            T::NotEnough(_) => Self::Invalid {
                field: "data".into(),
                message: e.to_string(),
            },
            T::Store(s) => s.into(),
            T::Mirt(_) | T::Other(_) => {
                tracing::error!(error = %e, "admin API: MIRT");
                Self::Internal
            }
        }
    }
}

async fn list_checkpoints(State(state): State<AdminState>) -> Result<Response, AdminError> {
    Ok(Json(state.store.list_checkpoints().await?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActivateParams {
    #[serde(default)]
    force: bool,
}

async fn activate_checkpoint(
    State(state): State<AdminState>,
    Path(version): Path<String>,
    query: Result<axum::extract::Query<ActivateParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, AdminError> {
    let axum::extract::Query(params) = query?;
    let version: i64 = version
        .parse()
        .map_err(|_| AdminError::BadRequest(format!("'{version}' is not a checkpoint version")))?;
    let a = trainer(&state)?.activate(version, params.force).await?;
    Ok(Json(a).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrainRequest {
    /// Activate the result if it passes the held-out check.
    #[serde(default)]
    activate: bool,
    /// An upload (`POST /api/training-data`) to use as the base data instead of
    /// `mirt.base_data`.
    #[serde(default)]
    data: Option<String>,
}

async fn start_training(
    State(state): State<AdminState>,
    body: axum::body::Bytes,
) -> Result<Response, AdminError> {
    let req: TrainRequest = if body.iter().all(u8::is_ascii_whitespace) {
        TrainRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| AdminError::BadRequest(format!("invalid JSON body: {e}")))?
    };
    let base = match req.data.as_deref().filter(|d| !d.is_empty()) {
        Some(name) => Some(super::stats::upload_path(&state, name)?),
        None => None,
    };
    let job = trainer(&state)?.start_on(req.activate, base)?;
    Ok((StatusCode::ACCEPTED, Json(job)).into_response())
}

async fn train_status(State(state): State<AdminState>) -> Result<Response, AdminError> {
    match trainer(&state)?.status() {
        Some(j) => Ok(Json(j).into_response()),
        None => Err(AdminError::NotFound("no training job has run yet".into())),
    }
}

async fn reload(State(state): State<AdminState>) -> Result<Response, AdminError> {
    let live = state
        .live
        .as_ref()
        .ok_or_else(|| AdminError::NotFound("reloading is not available here".into()))?;
    match live.reload_config().await {
        Ok(report) => Ok(Json(report).into_response()),
        Err(e) => Err(AdminError::ReloadRefused(e.reasons())),
    }
}
