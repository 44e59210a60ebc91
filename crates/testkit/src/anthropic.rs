//! `POST /v1/messages` (and `/v1/messages/count_tokens`), Anthropic's Messages format.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bytes::Bytes;
use serde_json::{json, Value};

use crate::convo::Conversation;
use crate::{
    answer_for, behaviour_for, conn_of, cut_answer, delay_before_answer, malformed,
    model_behaviour, named_event, rand_b62, record_model_request, reset_now, sse, with_retry_after,
    After, Answer, Behaviour, Conn, MockState, Usage,
};

/// An Anthropic error body, with a `request-id` header as the API sends.
fn error(status: StatusCode, ty: &str, message: &str) -> Response {
    let mut resp = (
        status,
        axum::Json(json!({"type": "error", "error": {"type": ty, "message": message}})),
    )
        .into_response();
    resp.headers_mut().insert(
        "request-id",
        format!("req_01{}", rand_b62(22))
            .parse()
            .expect("header value"),
    );
    resp
}

fn error_type(code: StatusCode) -> &'static str {
    match code.as_u16() {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    }
}

fn usage_json(u: &Usage, output: u64) -> Value {
    json!({
        "input_tokens": u.input - u.cache_read - u.cache_write,
        "cache_creation_input_tokens": u.cache_write,
        "cache_read_input_tokens": u.cache_read,
        "output_tokens": output,
        "service_tier": "standard"
    })
}

fn ev(v: Value) -> (Duration, Bytes) {
    let name = v["type"].as_str().unwrap_or("unknown").to_string();
    (Duration::ZERO, named_event(&name, &v))
}

fn signature() -> String {
    format!("EqQB{}", rand_b62(120))
}

struct Ctx {
    id: String,
    model: String,
}

impl Ctx {
    fn message_start(&self, u: &Usage) -> (Duration, Bytes) {
        ev(json!({"type": "message_start", "message": {
            "id": self.id, "type": "message", "role": "assistant", "model": self.model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": usage_json(u, 1)}}))
    }

    fn whole(&self, a: &Answer) -> Value {
        let mut content = Vec::new();
        if !a.reasoning.is_empty() {
            content.push(json!({"type": "thinking", "thinking": a.full_reasoning(), "signature": signature()}));
        }
        if !a.text.is_empty() {
            content.push(json!({"type": "text", "text": a.full_text()}));
        }
        for c in &a.calls {
            let input: Value = serde_json::from_str(&c.arguments()).unwrap_or(json!({}));
            content.push(
                json!({"type": "tool_use", "id": c.toolu_id, "name": c.name, "input": input}),
            );
        }
        json!({
            "id": self.id, "type": "message", "role": "assistant", "model": self.model,
            "content": content, "stop_reason": stop_reason(a), "stop_sequence": null,
            "usage": usage_json(&a.usage, a.usage.output)
        })
    }

    fn stream(&self, a: &Answer) -> Vec<(Duration, Bytes)> {
        let mut out = vec![self.message_start(&a.usage)];
        let mut index = 0;
        let mut start = |out: &mut Vec<(Duration, Bytes)>, block: Value| {
            out.push(ev(
                json!({"type": "content_block_start", "index": index, "content_block": block}),
            ));
            if index == 0 {
                out.push(ev(json!({"type": "ping"})));
            }
            index += 1;
            index - 1
        };
        let delta =
            |i: usize, d: Value| ev(json!({"type": "content_block_delta", "index": i, "delta": d}));
        let stop = |i: usize| ev(json!({"type": "content_block_stop", "index": i}));
        if !a.reasoning.is_empty() {
            let i = start(
                &mut out,
                json!({"type": "thinking", "thinking": "", "signature": ""}),
            );
            for p in &a.reasoning {
                out.push(delta(i, json!({"type": "thinking_delta", "thinking": p})));
            }
            out.push(delta(
                i,
                json!({"type": "signature_delta", "signature": signature()}),
            ));
            out.push(stop(i));
        }
        if !a.text.is_empty() {
            let i = start(&mut out, json!({"type": "text", "text": ""}));
            for p in &a.text {
                let (_, b) = delta(i, json!({"type": "text_delta", "text": p}));
                out.push((a.gap, b));
            }
            out.push(stop(i));
        }
        for c in &a.calls {
            let i = start(
                &mut out,
                json!({"type": "tool_use", "id": c.toolu_id, "name": c.name, "input": {}}),
            );
            out.push(delta(
                i,
                json!({"type": "input_json_delta", "partial_json": ""}),
            ));
            for p in &c.pieces {
                out.push(delta(
                    i,
                    json!({"type": "input_json_delta", "partial_json": p}),
                ));
            }
            out.push(stop(i));
        }
        let mut usage = usage_json(&a.usage, a.usage.output);
        if let Value::Object(u) = &mut usage {
            u.remove("service_tier");
        }
        out.push(ev(json!({"type": "message_delta",
            "delta": {"stop_reason": stop_reason(a), "stop_sequence": null},
            "usage": usage})));
        out.push(ev(json!({"type": "message_stop"})));
        out
    }

    /// A stream's start and `n` text pieces (`stall`, `forever`, `fail`).
    fn open(&self, n: usize) -> Vec<(Duration, Bytes)> {
        let mut out = vec![
            self.message_start(&Usage::PLAIN),
            ev(
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            ev(json!({"type": "ping"})),
        ];
        out.extend((0..n).map(text_delta));
        out
    }
}

fn text_delta(i: usize) -> (Duration, Bytes) {
    ev(
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": format!("tok{i} ")}}),
    )
}

fn stop_reason(a: &Answer) -> &'static str {
    if a.calls.is_empty() {
        "end_turn"
    } else {
        "tool_use"
    }
}

/// The checks the real API makes before anything else: `anthropic-version`, JSON.
#[allow(clippy::result_large_err)]
fn precheck(headers: &HeaderMap, body: &Bytes) -> Result<Value, Response> {
    if !headers.contains_key("anthropic-version") {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "anthropic-version: header is required",
        ));
    }
    serde_json::from_slice::<Value>(body)
        .map_err(|_| error(StatusCode::BAD_REQUEST, "invalid_request_error", "not JSON"))
}

pub(crate) async fn handle(
    State(state): State<Arc<MockState>>,
    conn: Option<Extension<Conn>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record_model_request(&state, &uri, &headers, &body);
    let req = match precheck(&headers, &body) {
        Ok(req) => req,
        Err(resp) => return resp,
    };
    if !req["max_tokens"].is_u64() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "max_tokens: Field required",
        );
    }
    let model = req["model"].as_str().unwrap_or("").to_string();
    let (name, behaviour) = model_behaviour(&state, &headers, &model);
    let stream = req["stream"] == json!(true);
    let ctx = Ctx {
        id: format!("msg_01{}", rand_b62(22)),
        model,
    };
    if !stream {
        if let Some(r) = cut_answer(&state, &behaviour, conn_of(conn.clone()), |a| ctx.whole(a)) {
            return r;
        }
    }
    match behaviour {
        Behaviour::Error { code, retry_after } => {
            return with_retry_after(
                error(code, error_type(code), "mock upstream error"),
                retry_after,
            )
        }
        Behaviour::Unknown => {
            return error(
                StatusCode::NOT_FOUND,
                "not_found_error",
                &format!("model: {name} (mock: unknown behaviour)"),
            )
        }
        Behaviour::Reset(None) => return reset_now(conn_of(conn)).await,
        Behaviour::Reset(Some(n)) => {
            return sse(state.clone(), ctx.open(n), After::Reset(conn_of(conn)));
        }
        Behaviour::Malformed => return malformed(state.clone()),
        Behaviour::Stall(n) => return sse(state.clone(), ctx.open(n), After::Silence),
        Behaviour::Forever(every) => {
            let mut i = 1000;
            let next = move || {
                i += 1;
                text_delta(i - 1).1
            };
            return sse(
                state.clone(),
                ctx.open(0),
                After::Every(every, Box::new(next)),
            );
        }
        Behaviour::Fail(n) => {
            let mut out = ctx.open(n);
            out.push(ev(json!({"type": "error", "error": {
                "type": "overloaded_error", "message": "mock upstream error"}})));
            return sse(state.clone(), out, After::End);
        }
        _ => {}
    }
    let wait = delay_before_answer(&behaviour, stream);
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    let conv = Conversation::anthropic(&req);
    let Some(answer) = answer_for(&behaviour, &conv, stream, body.len()) else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            "mock: no answer",
        );
    };
    let mut resp = if stream {
        sse(state.clone(), ctx.stream(&answer), After::End)
    } else {
        axum::Json(ctx.whole(&answer)).into_response()
    };
    resp.headers_mut().insert(
        "request-id",
        format!("req_01{}", rand_b62(22))
            .parse()
            .expect("header value"),
    );
    resp
}

/// `POST /v1/messages/count_tokens`: the input tokens the same request's answer reports.
pub(crate) async fn count_tokens(
    State(state): State<Arc<MockState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = match precheck(&headers, &body) {
        Ok(req) => req,
        Err(resp) => return resp,
    };
    let model = req["model"].as_str().unwrap_or("");
    let (name, behaviour) = behaviour_for(&state, &headers, model);
    let input = match behaviour {
        Behaviour::Error { code, retry_after } => {
            return with_retry_after(
                error(code, error_type(code), "mock upstream error"),
                retry_after,
            )
        }
        Behaviour::Unknown => {
            return error(
                StatusCode::NOT_FOUND,
                "not_found_error",
                &format!("model: {name} (mock: unknown behaviour)"),
            )
        }
        Behaviour::Cached => Usage::CACHED.input,
        Behaviour::Think => Usage::THINK.input,
        _ => Usage::PLAIN.input,
    };
    axum::Json(json!({"input_tokens": input})).into_response()
}
