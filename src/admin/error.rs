//! The admin API's one error type. Its status is chosen in [`AdminError::status`], an exhaustive
//! match with no catch-all arm; every error answers with the same JSON shape:
//! `{"error": {"type": "...", "message": "...", "field": "..."?}}`.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use dualrouter_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("missing or invalid admin token")]
    Unauthorized,
    /// The body or query could not be read (not JSON, wrong shape, unknown field).
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// A policy for this domain/action already exists.
    #[error("{0}")]
    Conflict(String),
    /// A value that must be unique is taken (a key's name).
    #[error("{field}: {message}")]
    Duplicate { field: String, message: String },
    /// A policy names a model no provider or executor serves.
    #[error("{field}: model '{model}' is not served by any provider or executor")]
    UnknownModel { field: String, model: String },
    /// A well-formed body with an invalid value.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// A reload that does not build; the old state keeps serving. Every reason.
    #[error("reload refused, the old configuration keeps serving: {}", .0.join("; "))]
    ReloadRefused(Vec<String>),
    /// The store is not answering.
    #[error("the store is unavailable; try again")]
    Unavailable,
    /// Details are logged, not returned.
    #[error("internal error")]
    Internal,
    /// `GET /readyz` while a check fails; the body is the readiness report itself.
    #[error("not ready")]
    NotReady(serde_json::Value),
}

impl AdminError {
    /// The one place a status is chosen.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) | Self::Duplicate { .. } => StatusCode::CONFLICT,
            Self::UnknownModel { .. } | Self::Invalid { .. } | Self::ReloadRefused(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::Unavailable | Self::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A low-cardinality label (the body's `error.type`, and fit for metrics).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::BadRequest(_) => "bad_request",
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) | Self::Duplicate { .. } => "conflict",
            Self::UnknownModel { .. } => "unknown_model",
            Self::Invalid { .. } => "invalid",
            Self::ReloadRefused(_) => "reload_refused",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
            Self::NotReady(_) => "not_ready",
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            Self::UnknownModel { field, .. }
            | Self::Invalid { field, .. }
            | Self::Duplicate { field, .. } => Some(field),
            Self::Unauthorized
            | Self::BadRequest(_)
            | Self::NotFound(_)
            | Self::Conflict(_)
            | Self::ReloadRefused(_)
            | Self::Unavailable
            | Self::Internal
            | Self::NotReady(_) => None,
        }
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::DuplicatePolicy { .. } => Self::Conflict(e.to_string()),
            StoreError::PolicyNotFound(_) | StoreError::KeyNotFound(_) => {
                Self::NotFound(e.to_string())
            }
            StoreError::DuplicateKey(_) => Self::Duplicate {
                field: "name".into(),
                message: e.to_string(),
            },
            e if e.is_unavailable() => {
                tracing::warn!(error = %e, "admin API: store unavailable");
                Self::Unavailable
            }
            e => {
                tracing::error!(error = %e, "admin API: store error");
                Self::Internal
            }
        }
    }
}

impl From<JsonRejection> for AdminError {
    fn from(r: JsonRejection) -> Self {
        Self::BadRequest(match r {
            JsonRejection::MissingJsonContentType(_) => {
                "expected a JSON body (content-type: application/json)".to_string()
            }
            other => format!("invalid JSON body: {}", other.body_text()),
        })
    }
}

impl From<QueryRejection> for AdminError {
    fn from(r: QueryRejection) -> Self {
        Self::BadRequest(format!("invalid query string: {}", r.body_text()))
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        if let Self::NotReady(report) = self {
            return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(report)).into_response();
        }
        let mut error = json!({ "type": self.kind(), "message": self.to_string() });
        if let (Some(field), Some(obj)) = (self.field(), error.as_object_mut()) {
            obj.insert("field".into(), field.into());
        }
        if let (Self::ReloadRefused(reasons), Some(obj)) = (&self, error.as_object_mut()) {
            obj.insert("reasons".into(), reasons.clone().into());
        }
        let mut resp = (self.status(), axum::Json(json!({ "error": error }))).into_response();
        if matches!(self, Self::Unauthorized) {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"dualrouter-admin\""),
            );
        }
        resp
    }
}
