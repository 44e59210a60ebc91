//! The dashboard's data routes beside the REST API, behind the same token check:
//!
//! | route | answers |
//! |---|---|
//! | `GET /api/stats?window=24h` | requests, cost, estimated savings and mean feedback per model over the window, in 24 buckets ([`dualrouter_store::Stats`]) |
//! | `POST /api/training-data[?name=NAME]` | CSV or JSONL body, validated as MIRT training data, kept as `mirt.checkpoints_dir/uploads/NAME.csv` (or `.jsonl`); `201` + what it holds |
//! | `GET /api/training-data` | the uploads, newest first |
//!
//! An upload is read by [`dualrouter_ml::mirt::Dataset`], the same reader `dualrouter train` uses, so
//! a bad file is refused (`422`, field `body`) with the row that is wrong. `POST /api/mirt/train`
//! `{"data": NAME}` refits with that upload as its base data.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::api::{AdminState, ApiQuery};
use super::AdminError;
use dualrouter_ml::mirt::data::DataError;
use dualrouter_ml::mirt::Dataset;

/// Buckets in each chart of `GET /api/stats`.
pub const STATS_BUCKETS: u32 = 24;
/// The shortest and longest `window` of `GET /api/stats`.
const MIN_WINDOW: Duration = Duration::from_secs(5 * 60);
const MAX_WINDOW: Duration = Duration::from_secs(90 * 86_400);
/// The largest upload accepted.
pub const MAX_UPLOAD_BYTES: usize = 64 * 1024 * 1024;
/// The longest upload name.
const MAX_NAME_CHARS: usize = 64;

pub fn router(state: AdminState) -> Router {
    routes().finish(&state, state.clone())
}

pub(crate) fn routes() -> super::Routes<AdminState> {
    use axum::http::Method;
    use axum::routing::post;
    super::Routes::protected()
        .add(Method::GET, "/api/stats", get(stats))
        .add(Method::GET, "/api/training-data", get(list_uploads))
        .add(
            Method::POST,
            "/api/training-data",
            post(upload).layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES)),
        )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatsParams {
    window: Option<String>,
}

async fn stats(
    State(state): State<AdminState>,
    ApiQuery(params): ApiQuery<StatsParams>,
) -> Result<Response, AdminError> {
    let raw = params.window.unwrap_or_else(|| "24h".into());
    let window = dualrouter_ml::mirt::parse_interval(&raw)
        .ok()
        .filter(|w| (MIN_WINDOW..=MAX_WINDOW).contains(w))
        .ok_or_else(|| AdminError::Invalid {
            field: "window".into(),
            message: format!("'{raw}' is not a duration from 5m to 90d (s, m, h or d)"),
        })?;
    let until = Utc::now();
    let since = until
        - chrono::Duration::from_std(window).map_err(|_| AdminError::Invalid {
            field: "window".into(),
            message: format!("'{raw}' is too long"),
        })?;
    let s = state.store.stats(since, until, STATS_BUCKETS).await?;
    Ok(Json(s).into_response())
}

/// An upload as listed and as answered after `POST`.
#[derive(Debug, Clone, Serialize)]
pub struct Upload {
    /// What `POST /api/mirt/train` `{"data": ...}` takes.
    pub name: String,
    /// `csv` or `jsonl`.
    pub format: &'static str,
    pub bytes: u64,
    pub modified: Option<DateTime<Utc>>,
    /// Filled after an upload (not when listing: that would read every file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadParams {
    name: Option<String>,
}

fn uploads_dir(state: &AdminState) -> Result<PathBuf, AdminError> {
    state
        .trainer
        .as_ref()
        .map(|t| t.uploads_dir())
        .ok_or_else(|| AdminError::NotFound("MIRT training is not available here".into()))
}

fn check_name(name: &str) -> Result<(), AdminError> {
    let ok = !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(AdminError::Invalid {
            field: "name".into(),
            message: format!(
                "must be 1 to {MAX_NAME_CHARS} letters, digits, '-', '_' or '.', starting with a letter or digit"
            ),
        })
    }
}

/// The stored file of an upload, if there is one.
pub fn find_upload(dir: &Path, name: &str) -> Option<PathBuf> {
    check_name(name).ok()?;
    ["csv", "jsonl"]
        .iter()
        .map(|ext| dir.join(format!("{name}.{ext}")))
        .find(|p| p.is_file())
}

/// The path of an upload for `POST /api/mirt/train` `{"data": NAME}` (422 if unknown).
pub fn upload_path(state: &AdminState, name: &str) -> Result<PathBuf, AdminError> {
    let dir = uploads_dir(state)?;
    find_upload(&dir, name).ok_or_else(|| AdminError::Invalid {
        field: "data".into(),
        message: format!("no uploaded training data named '{name}' (POST /api/training-data)"),
    })
}

/// `jsonl` when the content type says so or the body starts with `{`, else `csv`.
fn format_of(headers: &HeaderMap, body: &[u8]) -> &'static str {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ct.contains("ndjson") || ct.contains("jsonl") || ct.contains("json-lines") {
        return "jsonl";
    }
    if ct.contains("csv") {
        return "csv";
    }
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => "jsonl",
        _ => "csv",
    }
}

/// The reader's complaint without the server's file path.
fn data_problem(e: DataError) -> AdminError {
    let message = match e {
        DataError::Row { row: 0, msg, .. } => format!("header: {msg}"),
        DataError::Row { row, msg, .. } => format!("row {row}: {msg}"),
        DataError::File { msg, .. } => msg,
    };
    AdminError::Invalid {
        field: "body".into(),
        message,
    }
}

async fn upload(
    State(state): State<AdminState>,
    ApiQuery(params): ApiQuery<UploadParams>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, AdminError> {
    let dir = uploads_dir(&state)?;
    let name = params
        .name
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| Utc::now().format("upload-%Y%m%d-%H%M%S").to_string());
    check_name(&name)?;
    if find_upload(&dir, &name).is_some() {
        return Err(AdminError::Conflict(format!(
            "training data named '{name}' already exists; choose another name"
        )));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(AdminError::Invalid {
            field: "body".into(),
            message: "empty upload: send a CSV or JSONL file as the body".into(),
        });
    }
    let format = format_of(&headers, &body);
    let result = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir)?;
        let tmp = dir.join(format!(".{name}.{}.part.{format}", std::process::id()));
        std::fs::write(&tmp, &body)?;
        match Dataset::load(&tmp) {
            Ok(ds) => {
                let path = dir.join(format!("{name}.{format}"));
                std::fs::rename(&tmp, &path)?;
                let meta = std::fs::metadata(&path)?;
                Ok(Ok(Upload {
                    name,
                    format,
                    bytes: meta.len(),
                    modified: meta.modified().ok().map(DateTime::<Utc>::from),
                    rows: Some(ds.rows.len()),
                    models: Some(ds.models),
                }))
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Ok(Err(e))
            }
        }
    })
    .await
    .map_err(|e| {
        tracing::error!("training-data upload task: {e}");
        AdminError::Internal
    })?
    .map_err(|e: std::io::Error| {
        tracing::error!("storing training data: {e}");
        AdminError::Internal
    })?;
    let upload = result.map_err(data_problem)?;
    tracing::info!(name = %upload.name, rows = ?upload.rows, "training data uploaded");
    Ok((StatusCode::CREATED, Json(upload)).into_response())
}

async fn list_uploads(State(state): State<AdminState>) -> Result<Response, AdminError> {
    let dir = uploads_dir(&state)?;
    let list = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return out;
        };
        for e in entries.flatten() {
            let path = e.path();
            let (Some(stem), Some(ext)) = (
                path.file_stem().and_then(|s| s.to_str()),
                path.extension().and_then(|s| s.to_str()),
            ) else {
                continue;
            };
            let format = match ext {
                "csv" => "csv",
                "jsonl" => "jsonl",
                _ => continue,
            };
            if stem.starts_with('.') {
                continue;
            }
            let Ok(meta) = e.metadata() else { continue };
            out.push(Upload {
                name: stem.to_string(),
                format,
                bytes: meta.len(),
                modified: meta.modified().ok().map(DateTime::<Utc>::from),
                rows: None,
                models: None,
            });
        }
        out.sort_by(|a, b| b.modified.cmp(&a.modified).then(a.name.cmp(&b.name)));
        out
    })
    .await
    .map_err(|e| {
        tracing::error!("listing training data: {e}");
        AdminError::Internal
    })?;
    Ok(Json(list).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain() {
        assert!(check_name("june-runs_2.v1").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "a b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn format_from_type_or_body() {
        let mut h = HeaderMap::new();
        assert_eq!(format_of(&h, b"  {\"prompt\":1}"), "jsonl");
        assert_eq!(format_of(&h, b"prompt,a\n"), "csv");
        h.insert(
            header::CONTENT_TYPE,
            "application/x-ndjson".parse().unwrap(),
        );
        assert_eq!(format_of(&h, b"prompt,a\n"), "jsonl");
    }
}
