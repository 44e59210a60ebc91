//! A mock of Anthropic's Messages API (`POST /v1/messages`), speaking its documented wire
//! format: a `message` object, the streaming events (`message_start`, `content_block_start`,
//! `ping`, `content_block_delta` with `text_delta` / `input_json_delta`, `content_block_stop`,
//! `message_delta`, `message_stop`, each as `event: NAME` + `data: JSON`), and its error JSON.
//! Like the real API it answers 400 when `max_tokens` is missing and 401 without
//! `anthropic-version`. The upstream model id picks the behaviour:
//!
//! | upstream model id | behaviour |
//! |---|---|
//! | `echo`       | text "received N bytes" (N: the body size); streamed as "tok0 tok1 tok2 " |
//! | `tools`      | text "Let me check." then a `get_weather` tool_use for Paris; stop_reason `tool_use` |
//! | `error:CODE` | status CODE with an Anthropic error body |
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use serde_json::{json, Value};

use super::mock::{sse, MockState, Seen};

pub fn router(state: Arc<MockState>) -> Router {
    Router::new()
        .route("/v1/messages", post(messages))
        .layer(DefaultBodyLimit::max(256 * 1024 * 1024))
        .with_state(state)
}

fn error(status: StatusCode, ty: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"type": "error", "error": {"type": ty, "message": message}})),
    )
        .into_response()
}

fn event(v: Value) -> (Duration, Bytes) {
    let name = v["type"].as_str().unwrap().to_string();
    (
        Duration::ZERO,
        Bytes::from(format!("event: {name}\ndata: {v}\n\n")),
    )
}

fn message(model: &str, content: Value, stop_reason: &str) -> Value {
    json!({
        "id": "msg_mock", "type": "message", "role": "assistant", "model": model,
        "content": content, "stop_reason": stop_reason, "stop_sequence": null,
        "usage": {"input_tokens": 11, "output_tokens": 7}
    })
}

async fn messages(
    State(state): State<Arc<MockState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.count.fetch_add(1, Ordering::SeqCst);
    state.requests.lock().unwrap().push(Seen {
        headers: headers.clone(),
        body: body.clone(),
    });
    if !headers.contains_key("anthropic-version") {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "anthropic-version: header is required",
        );
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", "not JSON");
    };
    if !req["max_tokens"].is_u64() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "max_tokens: Field required",
        );
    }
    let forced = state.forced.lock().unwrap().clone();
    let model = forced.unwrap_or_else(|| req["model"].as_str().unwrap_or("").to_string());
    let stream = req["stream"] == json!(true);
    let parts: Vec<&str> = model.split(':').collect();
    let start = || {
        event(json!({"type": "message_start", "message": {
            "id": "msg_mock", "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 11, "output_tokens": 1}}}))
    };
    let end = |stop: &str| {
        vec![
            event(
                json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": 7}}),
            ),
            event(json!({"type": "message_stop"})),
        ]
    };
    match parts[0] {
        "echo" if stream => {
            let mut events = vec![
                start(),
                event(json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})),
                event(json!({"type": "ping"})),
            ];
            for i in 0..3 {
                events.push(event(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": format!("tok{i} ")}})));
            }
            events.push(event(json!({"type": "content_block_stop", "index": 0})));
            events.extend(end("end_turn"));
            sse(state.clone(), events, None, model)
        }
        "echo" => axum::Json(message(
            &model,
            json!([{"type": "text", "text": format!("received {} bytes", body.len())}]),
            "end_turn",
        ))
        .into_response(),
        "tools" if stream => {
            let mut events = vec![
                start(),
                event(json!({"type": "ping"})),
                event(json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})),
                event(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let me check."}})),
                event(json!({"type": "content_block_stop", "index": 0})),
                event(json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_mock", "name": "get_weather", "input": {}}})),
                event(json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}})),
                event(json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"city\":"}})),
                event(json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": " \"Paris\"}"}})),
                event(json!({"type": "content_block_stop", "index": 1})),
            ];
            events.extend(end("tool_use"));
            sse(state.clone(), events, None, model)
        }
        "tools" => axum::Json(message(
            &model,
            json!([
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_mock", "name": "get_weather", "input": {"city": "Paris"}}
            ]),
            "tool_use",
        ))
        .into_response(),
        "error" => {
            let code = parts
                .get(1)
                .and_then(|c| c.parse::<u16>().ok())
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let ty = match code.as_u16() {
                400 => "invalid_request_error",
                401 => "authentication_error",
                404 => "not_found_error",
                429 => "rate_limit_error",
                529 => "overloaded_error",
                _ => "api_error",
            };
            error(code, ty, "mock upstream error")
        }
        _ => error(StatusCode::NOT_FOUND, "not_found_error", "mock: unknown behaviour"),
    }
}
