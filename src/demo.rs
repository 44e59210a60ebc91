//! The demo upstream: a small OpenAI-compatible server answering canned text, streaming too,
//! so a newcomer can try the proxy without an API key. `serve` runs it in-process when the
//! config has a `demo:` section; `dualrouter demo-upstream` runs it alone (benches use that).

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};

#[derive(Clone, Copy, Default)]
pub struct DemoOptions {
    /// Pause between streamed chunks, so streaming is visible in a terminal.
    pub chunk_delay: Duration,
}

pub fn router(opts: DemoOptions) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .with_state(opts)
}

pub fn run_standalone(listen: &str, opts: DemoOptions) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        println!(
            "demo upstream listening on http://{}/v1",
            listener.local_addr()?
        );
        axum::serve(listener, router(opts)).await?;
        Ok(())
    })
}

async fn models() -> impl IntoResponse {
    axum::Json(
        json!({"object": "list", "data": [{"id": "demo", "object": "model", "created": 0, "owned_by": "demo"}]}),
    )
}

fn error(status: StatusCode, message: &str) -> Response {
    let body = json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}});
    (status, axum::Json(body)).into_response()
}

/// Roughly four bytes a token: good enough for a demo's usage figures.
fn tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4).max(1)
}

async fn chat(State(opts): State<DemoOptions>, body: Bytes) -> Response {
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "the request body is not valid JSON",
        );
    };
    let model = req
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("demo")
        .to_string();
    let Some(messages) = req.get("messages").and_then(Value::as_array) else {
        return error(StatusCode::BAD_REQUEST, "'messages' must be an array");
    };
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .and_then(|m| m.get("content"))
        .map(|c| match c {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or_default();
    let snippet: String = last_user.chars().take(80).collect();
    let answer = format!(
        "Hello from the dualrouter demo upstream (model {model}). You said: \"{snippet}\". \
         Point a provider in the config at a real API to get real answers."
    );
    let prompt_text: String = messages
        .iter()
        .filter_map(|m| m.get("content"))
        .map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_string))
        .collect();
    let prompt_tokens = tokens(&prompt_text);
    let completion_tokens = tokens(&answer);
    let usage = json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens});
    let id = format!("chatcmpl-demo-{}", uuid::Uuid::now_v7().simple());
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());

    if req.get("stream").and_then(Value::as_bool) != Some(true) {
        let body = json!({
            "id": id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
            "usage": usage,
        });
        return axum::Json(body).into_response();
    }

    let include_usage = req
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let chunk = |delta: Value, finish: Value| {
        let mut c = json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        });
        if include_usage {
            c["usage"] = Value::Null;
        }
        format!("data: {c}\n\n")
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    for word in answer.split_inclusive(' ') {
        events.push(chunk(json!({"content": word}), Value::Null));
    }
    events.push(chunk(json!({}), json!("stop")));
    if include_usage {
        let u = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [], "usage": usage});
        events.push(format!("data: {u}\n\n"));
    }
    events.push("data: [DONE]\n\n".to_string());
    let delay = opts.chunk_delay;
    let stream = futures::stream::iter(events).then(move |e| async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok::<_, std::convert::Infallible>(Bytes::from(e))
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}
