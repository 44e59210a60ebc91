//! `POST /v1/chat/completions`, OpenAI's chat completions format.

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
    answer_for, conn_of, cut_answer, data_event, delay_before_answer, malformed, model_behaviour,
    now_secs, openai_error, rand_b62, record_model_request, reset_now, sse, with_retry_after,
    After, Answer, Behaviour, Conn, MockState, Usage,
};

struct Ctx {
    id: String,
    created: u64,
    model: String,
}

fn usage_json(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.input,
        "completion_tokens": u.output,
        "total_tokens": u.input + u.output,
        "prompt_tokens_details": {"cached_tokens": u.cache_read, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": u.reasoning, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0
        }
    })
}

impl Ctx {
    /// Random ids and the time now; fixed ones for an answer that asks for them (`sse`).
    fn new(model: String, fixed: bool) -> Ctx {
        if fixed {
            Ctx {
                id: "chatcmpl-mock".into(),
                created: 1_700_000_000,
                model,
            }
        } else {
            Ctx {
                id: format!("chatcmpl-{}", rand_b62(29)),
                created: now_secs(),
                model,
            }
        }
    }

    fn chunk(&self, delta: Value, finish: Value) -> Bytes {
        data_event(&json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model, "system_fingerprint": "fp_mock",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]
        }))
    }

    fn text_chunk(&self, text: &str) -> Bytes {
        self.chunk(json!({"content": text}), Value::Null)
    }

    fn usage_chunk(&self, u: &Usage) -> Bytes {
        data_event(&json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model, "system_fingerprint": "fp_mock",
            "choices": [], "usage": usage_json(u)
        }))
    }

    fn whole(&self, a: &Answer) -> Value {
        let mut message = json!({
            "role": "assistant",
            "content": if a.text.is_empty() { Value::Null } else { json!(a.full_text()) },
            "refusal": null,
            "annotations": []
        });
        if !a.reasoning.is_empty() {
            message["reasoning_content"] = json!(a.full_reasoning());
        }
        if !a.calls.is_empty() {
            message["tool_calls"] = a
                .calls
                .iter()
                .map(|c| {
                    json!({"id": c.call_id, "type": "function",
                           "function": {"name": c.name, "arguments": c.arguments()}})
                })
                .collect();
        }
        json!({
            "id": self.id, "object": "chat.completion", "created": self.created,
            "model": self.model, "system_fingerprint": "fp_mock", "service_tier": "default",
            "choices": [{"index": 0, "message": message, "logprobs": null,
                         "finish_reason": finish_reason(a)}],
            "usage": usage_json(&a.usage)
        })
    }

    fn stream(&self, a: &Answer, include_usage: bool) -> Vec<(Duration, Bytes)> {
        let now = |b: Bytes| (Duration::ZERO, b);
        let mut ev = Vec::new();
        if !a.bare {
            ev.push(now(self.chunk(
                json!({"role": "assistant", "content": "", "refusal": null}),
                Value::Null,
            )));
        }
        for p in &a.reasoning {
            ev.push(now(self.chunk(json!({"reasoning_content": p}), Value::Null)));
        }
        for p in &a.text {
            ev.push((a.gap, self.text_chunk(p)));
        }
        for (k, c) in a.calls.iter().enumerate() {
            ev.push(now(self.chunk(
                json!({"tool_calls": [{"index": k, "id": c.call_id, "type": "function",
                                       "function": {"name": c.name, "arguments": ""}}]}),
                Value::Null,
            )));
            for p in &c.pieces {
                ev.push(now(self.chunk(
                    json!({"tool_calls": [{"index": k, "function": {"arguments": p}}]}),
                    Value::Null,
                )));
            }
        }
        if !a.bare {
            ev.push(now(self.chunk(json!({}), json!(finish_reason(a)))));
        }
        if include_usage {
            ev.push(now(self.usage_chunk(&a.usage)));
        }
        ev.push(now(Bytes::from_static(b"data: [DONE]\n\n")));
        ev
    }
}

fn finish_reason(a: &Answer) -> &'static str {
    if a.calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    }
}

/// The bytes of the stream of `a` (made with fixed ids) for `model`.
pub(crate) fn fixed_stream(model: &str, a: &Answer, include_usage: bool) -> Vec<u8> {
    Ctx::new(model.to_string(), true)
        .stream(a, include_usage)
        .into_iter()
        .flat_map(|(_, b)| b.to_vec())
        .collect()
}

pub(crate) async fn handle(
    State(state): State<Arc<MockState>>,
    conn: Option<Extension<Conn>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record_model_request(&state, &uri, &headers, &body);
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return openai_error(StatusCode::BAD_REQUEST, "mock: not JSON", None);
    };
    let model = req["model"].as_str().unwrap_or("").to_string();
    let (name, behaviour) = model_behaviour(&state, &headers, &model);
    let stream = req["stream"] == json!(true);
    let include_usage = req
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    let ctx = Ctx::new(model, matches!(behaviour, Behaviour::Sse { .. }));
    let now = |b: Bytes| (Duration::ZERO, b);
    let pieces = |n: usize| -> Vec<(Duration, Bytes)> {
        (0..n)
            .map(|i| now(ctx.text_chunk(&format!("tok{i} "))))
            .collect()
    };
    if !stream {
        if let Some(r) = cut_answer(&state, &behaviour, conn_of(conn.clone()), |a| ctx.whole(a)) {
            return r;
        }
    }
    match behaviour {
        Behaviour::Error { code, retry_after } => {
            return with_retry_after(openai_error(code, "mock upstream error", None), retry_after)
        }
        Behaviour::Unknown => {
            return openai_error(
                StatusCode::NOT_FOUND,
                &format!("mock: unknown behaviour `{name}`"),
                Some("model_not_found"),
            )
        }
        Behaviour::Reset(None) => return reset_now(conn_of(conn)).await,
        Behaviour::Reset(Some(n)) => {
            return sse(state.clone(), pieces(n), After::Reset(conn_of(conn)));
        }
        Behaviour::Malformed => return malformed(state.clone()),
        Behaviour::Stall(n) => return sse(state.clone(), pieces(n), After::Silence),
        Behaviour::Forever(every) => {
            let mut i = 1000;
            let next = move || {
                i += 1;
                ctx.text_chunk(&format!("tok{} ", i - 1))
            };
            return sse(
                state.clone(),
                Vec::new(),
                After::Every(every, Box::new(next)),
            );
        }
        Behaviour::Fail(n) => {
            let mut ev = pieces(n);
            ev.push(now(data_event(&json!({"error": {
                "message": "mock upstream error", "type": "server_error", "param": null, "code": null
            }}))));
            return sse(state.clone(), ev, After::End);
        }
        _ => {}
    }
    let wait = delay_before_answer(&behaviour, stream);
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    let conv = Conversation::chat(&req);
    let Some(answer) = answer_for(&behaviour, &conv, stream, body.len()) else {
        return openai_error(StatusCode::INTERNAL_SERVER_ERROR, "mock: no answer", None);
    };
    if stream {
        sse(
            state.clone(),
            ctx.stream(&answer, include_usage),
            After::End,
        )
    } else {
        axum::Json(ctx.whole(&answer)).into_response()
    }
}
