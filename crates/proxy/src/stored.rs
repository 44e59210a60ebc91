//! The Responses API's stored responses, as the proxy port serves them: a request with
//! `previous_response_id` continues a stored conversation on whichever upstream routing picks;
//! an answer whose request did not set `store: false` is stored (scoped to the client key that
//! made it, for `response_store.retention_hours`); `GET` and `DELETE /v1/responses/{id}`.
//!
//! Store calls run on the control runtime, where the store's pool lives.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::ProxyState;
use crate::error::ApiError;
use dualrouter_core::metrics::Metrics;
use dualrouter_store::{Store, StoredResponse};

/// This turn's input items (a string input is one user message).
pub(crate) fn turn_input(body: &Map<String, Value>) -> Value {
    match body.get("input") {
        Some(Value::String(s)) => json!([{"type": "message", "role": "user",
                                          "content": [{"type": "input_text", "text": s}]}]),
        Some(Value::Array(a)) => Value::Array(a.clone()),
        _ => json!([]),
    }
}

fn unavailable(e: dualrouter_store::StoreError) -> ApiError {
    tracing::warn!("stored responses: {e}");
    ApiError::Unavailable("the response store")
}

async fn on_control<T: Send + 'static>(
    state: &ProxyState,
    f: impl std::future::Future<Output = Result<T, dualrouter_store::StoreError>> + Send + 'static,
) -> Result<T, ApiError> {
    state
        .control
        .spawn(f)
        .await
        .map_err(|e| ApiError::Internal(format!("store task: {e}")))?
        .map_err(unavailable)
}

/// The conversation a `previous_response_id` names, as input items; 404 when it does not
/// exist, expired, or belongs to another key.
pub(crate) async fn history(
    state: &ProxyState,
    id: &str,
    owner: &str,
) -> Result<Vec<Value>, ApiError> {
    let (store, id2, owner) = (state.store.clone(), id.to_string(), owner.to_string());
    on_control(state, async move {
        store
            .response_history(&id2, &owner, chrono::Utc::now())
            .await
    })
    .await?
    .ok_or_else(|| ApiError::UnknownResponse {
        id: id.to_string(),
        param: Some("previous_response_id"),
    })
}

pub(crate) async fn get(
    state: &ProxyState,
    id: &str,
    owner: &str,
) -> Result<StoredResponse, ApiError> {
    let (store, id2, owner) = (state.store.clone(), id.to_string(), owner.to_string());
    on_control(state, async move {
        store.get_response(&id2, &owner, chrono::Utc::now()).await
    })
    .await?
    .ok_or_else(|| ApiError::UnknownResponse {
        id: id.to_string(),
        param: None,
    })
}

pub(crate) async fn delete(state: &ProxyState, id: &str, owner: &str) -> Result<(), ApiError> {
    let (store, id2, owner) = (state.store.clone(), id.to_string(), owner.to_string());
    let deleted = on_control(
        state,
        async move { store.delete_response(&id2, &owner).await },
    )
    .await?;
    if deleted {
        Ok(())
    } else {
        Err(ApiError::UnknownResponse {
            id: id.to_string(),
            param: None,
        })
    }
}

/// `GET /v1/responses/{id}/input_items`: the input items of that turn, in OpenAI's list shape.
pub(crate) fn input_items(r: &StoredResponse) -> Value {
    let data: Vec<Value> = r.input.as_array().cloned().unwrap_or_default();
    let id_of = |v: Option<&Value>| v.and_then(|i| i.get("id")).cloned().unwrap_or(Value::Null);
    json!({
        "object": "list",
        "data": data,
        "first_id": id_of(data.first()),
        "last_id": id_of(data.last()),
        "has_more": false,
    })
}

/// Where one answer goes to be stored.
pub(crate) struct Sink {
    pub store: Store,
    pub control: tokio::runtime::Handle,
    pub owner: String,
    pub previous_id: Option<String>,
    /// The input items this turn's request added.
    pub turn_input: Value,
    pub decision_id: String,
    pub retention: Duration,
    pub metrics: Arc<Metrics>,
}

impl Sink {
    /// Stores the `response` object the client is about to receive whole. A failure is
    /// logged and counted, and the answer still goes out (a later request naming it gets 404).
    pub(crate) async fn save(&self, response: &Value) {
        let Some(id) = response.get("id").and_then(Value::as_str) else {
            return;
        };
        let mut response = response.clone();
        // A Responses upstream got the conversation itself, not the id: the stored copy says
        // what it continued.
        if let (Some(prev), Some(o)) = (&self.previous_id, response.as_object_mut()) {
            o.insert("previous_response_id".into(), json!(prev));
        }
        let now = chrono::Utc::now();
        let retention = chrono::Duration::from_std(self.retention)
            .unwrap_or_else(|_| chrono::Duration::days(30));
        let row = StoredResponse {
            id: id.to_string(),
            owner: self.owner.clone(),
            previous_id: self.previous_id.clone(),
            model: response
                .get("model")
                .and_then(Value::as_str)
                .map(str::to_string),
            decision_id: Some(self.decision_id.clone()),
            input: self.turn_input.clone(),
            output: response.get("output").cloned().unwrap_or_else(|| json!([])),
            response,
            created_at: now,
            expires_at: now + retention,
        };
        let store = self.store.clone();
        let saved = self
            .control
            .spawn(async move { store.put_response(&row).await })
            .await;
        match saved {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                self.metrics
                    .errors
                    .with_label_values(&["response_store"])
                    .inc();
                tracing::warn!(decision_id = %self.decision_id, "response not stored: {e}");
            }
            Err(e) => tracing::warn!(decision_id = %self.decision_id, "response not stored: {e}"),
        }
    }
}

/// Deletes expired responses in batches, every `response_store.prune_interval_s`, until the
/// process ends.
pub async fn prune_forever(
    store: Store,
    settings: dualrouter_core::config::validated::ResponseStoreSettings,
) {
    let mut tick = tokio::time::interval(settings.prune_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        loop {
            match store
                .prune_responses(chrono::Utc::now(), settings.prune_batch)
                .await
            {
                Ok(n) if n >= settings.prune_batch as u64 => {
                    // More to delete: let the writer in between batches.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!("pruning stored responses: {e}");
                    break;
                }
            }
        }
    }
}
