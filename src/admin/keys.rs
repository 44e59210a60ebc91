//! Virtual keys and spend on the admin API, behind the same token check:
//!
//! | route | answers |
//! |---|---|
//! | `POST /api/keys` | `201` + the key and its secret (`key`, shown this once); `409` name taken; `422` bad value or unknown model (the field named) |
//! | `GET /api/keys` | every key (revoked and expired ones too, with `status`), never a secret |
//! | `GET /api/keys/{id}` | one key, with its budget counter (`spend`) |
//! | `PATCH /api/keys/{id}` | changes the fields given (`null` clears an optional one); same checks as `POST` |
//! | `DELETE /api/keys/{id}` | revokes it at once (every instance refuses it within a notification) |
//! | `POST /api/keys/{id}/rotate` | a new secret (shown this once); the old one stops working at once |
//! | `GET /api/spend?by=key\|team\|model&since=` | spend and tokens per group since `since` (RFC 3339, or a duration such as `24h`; default `30d`), from the start of its hour |
//!
//! The store keeps only the SHA-256 of a secret and its first characters (`prefix`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::api::{AdminState, ApiJson, ApiQuery};
use super::AdminError;
use dualrouter_store::{
    to_usd, BudgetPeriod, KeyBudget, KeySpec, Keyring, RateLimit, SpendBy, VirtualKey,
};

/// The longest name or team.
const MAX_NAME_CHARS: usize = 128;
/// The largest `metadata`, serialized.
const MAX_METADATA_BYTES: usize = 16 * 1024;
/// `GET /api/spend` without `since`.
const DEFAULT_SPEND_WINDOW: &str = "30d";

pub(crate) fn routes() -> super::Routes<AdminState> {
    use axum::http::Method;
    use axum::routing::{delete, patch, post};
    super::Routes::protected()
        .add(Method::GET, "/api/keys", get(list_keys))
        .add(Method::POST, "/api/keys", post(create_key))
        .add(Method::GET, "/api/keys/{id}", get(get_key))
        .add(Method::PATCH, "/api/keys/{id}", patch(update_key))
        .add(Method::DELETE, "/api/keys/{id}", delete(revoke_key))
        .add(Method::POST, "/api/keys/{id}/rotate", post(rotate_key))
        .add(Method::GET, "/api/spend", get(spend))
}

/// The body of `POST /api/keys` (and, merged over the key, of `PATCH`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyBody {
    name: String,
    #[serde(default)]
    team: Option<String>,
    #[serde(default)]
    models: Option<Vec<String>>,
    #[serde(default)]
    budget: Option<BudgetBody>,
    #[serde(default)]
    rate_limit: Option<RateBody>,
    #[serde(default)]
    max_cost_per_request_usd: Option<f64>,
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    metadata: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BudgetBody {
    usd: f64,
    period: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateBody {
    #[serde(default)]
    rpm: Option<i64>,
    #[serde(default)]
    tpm: Option<i64>,
}

fn invalid(field: &str, message: impl Into<String>) -> AdminError {
    AdminError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

fn check_text(field: &str, v: &str) -> Result<(), AdminError> {
    if v.trim().is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if v.chars().count() > MAX_NAME_CHARS {
        return Err(invalid(
            field,
            format!("must be at most {MAX_NAME_CHARS} characters"),
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(invalid(field, "must not hold control characters"));
    }
    Ok(())
}

fn check_usd(field: &str, v: f64) -> Result<(), AdminError> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(invalid(field, "must be a finite number of USD >= 0"))
    }
}

fn positive(field: &str, v: Option<i64>) -> Result<Option<u64>, AdminError> {
    match v {
        None => Ok(None),
        Some(n) if n >= 1 => Ok(u64::try_from(n).ok()),
        Some(_) => Err(invalid(
            field,
            "must be an integer >= 1 (leave it out for no limit)",
        )),
    }
}

/// The first problem with a body, or the spec it describes.
fn validate(state: &AdminState, b: KeyBody) -> Result<KeySpec, AdminError> {
    check_text("name", &b.name)?;
    if let Some(team) = &b.team {
        check_text("team", team)?;
    }
    if let Some(models) = &b.models {
        if models.is_empty() {
            return Err(invalid(
                "models",
                "must name at least one model (leave it out for every model)",
            ));
        }
        let catalog = state.models();
        for (i, m) in models.iter().enumerate() {
            if !catalog.has_model(m) {
                return Err(AdminError::UnknownModel {
                    field: format!("models[{i}]"),
                    model: m.clone(),
                });
            }
        }
    }
    let budget = match b.budget {
        None => None,
        Some(bb) => {
            check_usd("budget.usd", bb.usd)?;
            let period = BudgetPeriod::parse(&bb.period)
                .ok_or_else(|| invalid("budget.period", "must be day, month or total"))?;
            Some(KeyBudget {
                usd: bb.usd,
                period,
            })
        }
    };
    let rate_limit = match b.rate_limit {
        None => RateLimit::default(),
        Some(r) => RateLimit {
            rpm: positive("rate_limit.rpm", r.rpm)?,
            tpm: positive("rate_limit.tpm", r.tpm)?,
        },
    };
    if let Some(cap) = b.max_cost_per_request_usd {
        check_usd("max_cost_per_request_usd", cap)?;
    }
    let expires_at = match &b.expires_at {
        None => None,
        Some(s) => Some(
            DateTime::parse_from_rfc3339(s)
                .map_err(|_| invalid("expires_at", "must be an RFC 3339 time"))?
                .with_timezone(&Utc),
        ),
    };
    let metadata = b.metadata.unwrap_or_else(|| json!({}));
    if !metadata.is_object() {
        return Err(invalid("metadata", "must be a JSON object"));
    }
    let text = metadata.to_string();
    if text.len() > MAX_METADATA_BYTES {
        return Err(invalid(
            "metadata",
            format!("must be at most {MAX_METADATA_BYTES} bytes"),
        ));
    }
    if text.contains("\\u0000") {
        return Err(invalid("metadata", "must not hold NUL characters"));
    }
    Ok(KeySpec {
        name: b.name.trim().to_string(),
        team: b.team.map(|t| t.trim().to_string()),
        models: b.models,
        budget,
        rate_limit,
        max_cost_per_request_usd: b.max_cost_per_request_usd,
        expires_at,
        metadata,
    })
}

/// A key as the API shows it (never its secret).
fn key_json(k: &VirtualKey) -> Value {
    let mut v = serde_json::to_value(k).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("status".into(), k.status(Utc::now()).as_str().into());
    }
    v
}

/// The key's settings as a body (what a PATCH is merged over).
fn body_of(k: &VirtualKey) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("name".into(), json!(k.name));
    m.insert("team".into(), json!(k.team));
    m.insert("models".into(), json!(k.models));
    m.insert(
        "budget".into(),
        k.budget.map_or(
            Value::Null,
            |b| json!({"usd": b.usd, "period": b.period.as_str()}),
        ),
    );
    let rl = k.rate_limit;
    m.insert(
        "rate_limit".into(),
        if rl.rpm.is_none() && rl.tpm.is_none() {
            Value::Null
        } else {
            json!({"rpm": rl.rpm, "tpm": rl.tpm})
        },
    );
    m.insert(
        "max_cost_per_request_usd".into(),
        json!(k.max_cost_per_request_usd),
    );
    m.insert(
        "expires_at".into(),
        json!(k.expires_at.map(|t| t.to_rfc3339())),
    );
    m.insert("metadata".into(), k.metadata.clone());
    m
}

/// A key id as the store makes them (`key_` and 32 hex digits); anything else names no key
/// (and never reaches the database: PostgreSQL refuses a NUL byte in text).
fn key_id(raw: &str) -> Result<&str, AdminError> {
    let ok = raw
        .strip_prefix("key_")
        .is_some_and(|hex| hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()));
    if ok {
        Ok(raw)
    } else {
        Err(AdminError::NotFound(format!(
            "key {} not found",
            raw.chars()
                .filter(|c| !c.is_control())
                .take(64)
                .collect::<String>()
        )))
    }
}

fn keyring(state: &AdminState) -> Option<std::sync::Arc<Keyring>> {
    state.live.as_ref().and_then(|l| l.current().keys.clone())
}

/// This instance sees a change at once (others through the store's notification).
async fn refresh(state: &AdminState) {
    if let Some(k) = keyring(state) {
        if let Err(e) = k.refresh().await {
            tracing::warn!("key cache not refreshed after an edit: {e}");
        }
    }
}

async fn create_key(
    State(state): State<AdminState>,
    ApiJson(body): ApiJson<KeyBody>,
) -> Result<Response, AdminError> {
    let spec = validate(&state, body)?;
    let (key, secret) = state.store.create_key(&spec).await?;
    refresh(&state).await;
    tracing::info!(key_id = %key.id, name = %key.name, "virtual key created");
    let mut v = key_json(&key);
    if let Some(o) = v.as_object_mut() {
        o.insert("key".into(), secret.into());
    }
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

async fn list_keys(State(state): State<AdminState>) -> Result<Response, AdminError> {
    let keys = state.store.list_keys().await?;
    let data: Vec<Value> = keys.iter().map(key_json).collect();
    Ok(Json(json!({ "data": data })).into_response())
}

async fn get_key(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    let key = state.store.get_key(key_id(&id)?).await?;
    let mut v = key_json(&key);
    if let (Some(b), Some(o)) = (key.budget, v.as_object_mut()) {
        let period = b.period.key_at(Utc::now());
        let c = state.store.budget_count(&key.id, &period).await?;
        o.insert(
            "spend".into(),
            json!({
                "period": period,
                "spent_usd": to_usd(c.spent_nusd),
                "reserved_usd": to_usd(c.reserved_nusd),
                "remaining_usd": b.usd - to_usd(c.spent_nusd) - to_usd(c.reserved_nusd),
            }),
        );
    }
    Ok(Json(v).into_response())
}

async fn update_key(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<Map<String, Value>>,
) -> Result<Response, AdminError> {
    let key = state.store.get_key(key_id(&id)?).await?;
    let mut merged = body_of(&key);
    for (k, v) in patch {
        if !merged.contains_key(&k) {
            return Err(AdminError::BadRequest(format!("unknown field '{k}'")));
        }
        if k == "name" && v.is_null() {
            return Err(invalid("name", "must not be empty"));
        }
        merged.insert(k, v);
    }
    merged.retain(|_, v| !v.is_null());
    let body: KeyBody = serde_json::from_value(Value::Object(merged))
        .map_err(|e| AdminError::BadRequest(format!("invalid JSON body: {e}")))?;
    let spec = validate(&state, body)?;
    let key = state.store.update_key(&id, &spec).await?;
    refresh(&state).await;
    Ok(Json(key_json(&key)).into_response())
}

async fn revoke_key(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    let key = state.store.revoke_key(key_id(&id)?).await?;
    refresh(&state).await;
    tracing::info!(key_id = %key.id, "virtual key revoked");
    Ok(Json(key_json(&key)).into_response())
}

async fn rotate_key(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    let (key, secret) = state.store.rotate_key(key_id(&id)?).await?;
    refresh(&state).await;
    tracing::info!(key_id = %key.id, "virtual key rotated");
    let mut v = key_json(&key);
    if let Some(o) = v.as_object_mut() {
        o.insert("key".into(), secret.into());
    }
    Ok(Json(v).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpendParams {
    by: Option<String>,
    since: Option<String>,
}

async fn spend(
    State(state): State<AdminState>,
    ApiQuery(p): ApiQuery<SpendParams>,
) -> Result<Response, AdminError> {
    let by = match p.by.as_deref().unwrap_or("key") {
        "key" => SpendBy::Key,
        "team" => SpendBy::Team,
        "model" => SpendBy::Model,
        _ => return Err(invalid("by", "must be key, team or model")),
    };
    let raw = p.since.unwrap_or_else(|| DEFAULT_SPEND_WINDOW.into());
    let since = match DateTime::parse_from_rfc3339(&raw) {
        Ok(t) => t.with_timezone(&Utc),
        Err(_) => {
            let d = dualrouter_ml::mirt::parse_interval(&raw)
                .ok()
                .and_then(|d| chrono::Duration::from_std(d).ok())
                .ok_or_else(|| {
                    invalid(
                        "since",
                        "must be an RFC 3339 time or a duration such as 24h (s, m, h or d)",
                    )
                })?;
            Utc::now() - d
        }
    };
    let rows = state.store.spend(by, since).await?;
    let total: f64 = rows.iter().map(|r| r.cost_usd).sum();
    Ok(Json(json!({
        "by": p.by.as_deref().unwrap_or("key"),
        "since": since.to_rfc3339(),
        "total_usd": total,
        "data": rows,
    }))
    .into_response())
}
