//! `POST /v1/responses`, OpenAI's Responses format.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::convo::Conversation;
use crate::{
    answer_for, conn_of, cut_answer, delay_before_answer, malformed, model_behaviour, named_event,
    now_secs, openai_error, rand_hex, record_model_request, reset_now, sse, with_retry_after,
    After, Answer, Behaviour, Conn, MockState, Usage,
};

fn usage_json(u: &Usage) -> Value {
    json!({
        "input_tokens": u.input,
        "input_tokens_details": {"cached_tokens": u.cache_read},
        "output_tokens": u.output,
        "output_tokens_details": {"reasoning_tokens": u.reasoning},
        "total_tokens": u.input + u.output
    })
}

/// The request's items: `input` as items (a string is one user message).
fn input_items(req: &Value) -> Vec<Value> {
    match &req["input"] {
        Value::String(s) => vec![json!({
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": s}]
        })],
        Value::Array(items) => items.clone(),
        _ => Vec::new(),
    }
}

struct Ctx<'a> {
    req: &'a Value,
    id: String,
    created_at: u64,
    model: String,
}

/// Builds a Responses event stream: each event's `type` and `sequence_number` first.
struct Events {
    seq: u64,
    out: Vec<(Duration, Bytes)>,
}

impl Events {
    fn event(seq: &mut u64, ty: &str, data: Value) -> Bytes {
        let mut m = Map::new();
        m.insert("type".into(), json!(ty));
        m.insert("sequence_number".into(), json!(*seq));
        *seq += 1;
        if let Value::Object(rest) = data {
            m.extend(rest);
        }
        named_event(ty, &Value::Object(m))
    }

    fn push(&mut self, ty: &str, data: Value) {
        self.push_after(Duration::ZERO, ty, data);
    }

    fn push_after(&mut self, delay: Duration, ty: &str, data: Value) {
        let b = Events::event(&mut self.seq, ty, data);
        self.out.push((delay, b));
    }
}

impl Ctx<'_> {
    /// The `response` object with `status`, `output` and `usage`.
    fn response(&self, status: &str, output: Vec<Value>, usage: Option<&Usage>) -> Value {
        let r = self.req;
        let or = |v: &Value, d: Value| if v.is_null() { d } else { v.clone() };
        json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": false,
            "error": null,
            "incomplete_details": null,
            "instructions": r["instructions"],
            "max_output_tokens": r["max_output_tokens"],
            "max_tool_calls": null,
            "model": self.model,
            "output": output,
            "parallel_tool_calls": or(&r["parallel_tool_calls"], json!(true)),
            "previous_response_id": r["previous_response_id"],
            "prompt_cache_key": r["prompt_cache_key"],
            "reasoning": {
                "effort": r["reasoning"]["effort"],
                "summary": r["reasoning"]["summary"]
            },
            "safety_identifier": null,
            "service_tier": "default",
            "store": or(&r["store"], json!(true)),
            "temperature": or(&r["temperature"], json!(1.0)),
            "text": or(&r["text"], json!({"format": {"type": "text"}, "verbosity": "medium"})),
            "tool_choice": or(&r["tool_choice"], json!("auto")),
            "tools": or(&r["tools"], json!([])),
            "top_logprobs": 0,
            "top_p": or(&r["top_p"], json!(1.0)),
            "truncation": "disabled",
            "usage": usage.map(usage_json),
            "user": null,
            "metadata": or(&r["metadata"], json!({}))
        })
    }

    fn encrypted(&self) -> bool {
        self.req["include"]
            .as_array()
            .is_some_and(|i| i.iter().any(|v| v == "reasoning.encrypted_content"))
    }

    /// The output items of an answer (ids fixed here, shared by the stream and the whole).
    fn items(&self, a: &Answer) -> Vec<Value> {
        let mut items = Vec::new();
        if !a.reasoning.is_empty() {
            let mut item = json!({
                "id": format!("rs_{}", rand_hex(48)), "type": "reasoning",
                "summary": [{"type": "summary_text", "text": a.full_reasoning()}]
            });
            if self.encrypted() {
                item["encrypted_content"] = json!(format!("gAAAAAB{}", rand_hex(160)));
            }
            items.push(item);
        }
        if !a.text.is_empty() {
            items.push(json!({
                "id": format!("msg_{}", rand_hex(48)), "type": "message", "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": a.full_text()}]
            }));
        }
        for c in &a.calls {
            items.push(json!({
                "id": c.fc_id, "type": "function_call", "status": "completed",
                "arguments": c.arguments(), "call_id": c.call_id, "name": c.name
            }));
        }
        items
    }

    fn start(&self) -> Events {
        let mut e = Events {
            seq: 0,
            out: Vec::new(),
        };
        let r = self.response("in_progress", Vec::new(), None);
        e.push("response.created", json!({"response": r}));
        e.push("response.in_progress", json!({"response": r}));
        e
    }

    fn stream(&self, a: &Answer, items: &[Value]) -> Vec<(Duration, Bytes)> {
        let mut e = self.start();
        for (k, item) in items.iter().enumerate() {
            let id = item["id"].clone();
            match item["type"].as_str() {
                Some("reasoning") => {
                    let mut added = item.clone();
                    added["summary"] = json!([]);
                    e.push(
                        "response.output_item.added",
                        json!({"output_index": k, "item": added}),
                    );
                    let at = json!({"item_id": id, "output_index": k, "summary_index": 0});
                    let with = |extra: Value| {
                        let mut v = at.clone();
                        if let (Value::Object(m), Value::Object(x)) = (&mut v, extra) {
                            m.extend(x);
                        }
                        v
                    };
                    e.push(
                        "response.reasoning_summary_part.added",
                        with(json!({"part": {"type": "summary_text", "text": ""}})),
                    );
                    for p in &a.reasoning {
                        e.push(
                            "response.reasoning_summary_text.delta",
                            with(json!({"delta": p})),
                        );
                    }
                    let text = a.full_reasoning();
                    e.push(
                        "response.reasoning_summary_text.done",
                        with(json!({"text": text})),
                    );
                    e.push(
                        "response.reasoning_summary_part.done",
                        with(json!({"part": {"type": "summary_text", "text": text}})),
                    );
                }
                Some("message") => {
                    let mut added = item.clone();
                    added["status"] = json!("in_progress");
                    added["content"] = json!([]);
                    e.push(
                        "response.output_item.added",
                        json!({"output_index": k, "item": added}),
                    );
                    let part = item["content"][0].clone();
                    let mut empty = part.clone();
                    empty["text"] = json!("");
                    e.push(
                        "response.content_part.added",
                        json!({"item_id": id, "output_index": k, "content_index": 0, "part": empty}),
                    );
                    for p in &a.text {
                        e.push_after(
                            a.gap,
                            "response.output_text.delta",
                            json!({"item_id": id, "output_index": k, "content_index": 0,
                                   "delta": p, "logprobs": []}),
                        );
                    }
                    e.push(
                        "response.output_text.done",
                        json!({"item_id": id, "output_index": k, "content_index": 0,
                               "text": part["text"], "logprobs": []}),
                    );
                    e.push(
                        "response.content_part.done",
                        json!({"item_id": id, "output_index": k, "content_index": 0, "part": part}),
                    );
                }
                Some("function_call") => {
                    let mut added = item.clone();
                    added["status"] = json!("in_progress");
                    added["arguments"] = json!("");
                    e.push(
                        "response.output_item.added",
                        json!({"output_index": k, "item": added}),
                    );
                    let pieces = a
                        .calls
                        .iter()
                        .find(|c| item["id"] == c.fc_id.as_str())
                        .map(|c| c.pieces.clone())
                        .unwrap_or_default();
                    for p in pieces {
                        e.push(
                            "response.function_call_arguments.delta",
                            json!({"item_id": id, "output_index": k, "delta": p}),
                        );
                    }
                    e.push(
                        "response.function_call_arguments.done",
                        json!({"item_id": id, "output_index": k, "name": item["name"],
                               "arguments": item["arguments"]}),
                    );
                }
                _ => {}
            }
            e.push(
                "response.output_item.done",
                json!({"output_index": k, "item": item}),
            );
        }
        let done = self.response("completed", items.to_vec(), Some(&a.usage));
        e.push("response.completed", json!({"response": done}));
        e.out
    }

    /// A stream's start and `n` text deltas (`stall`, `forever`, `fail`); returns the events,
    /// the message item id and the next sequence number.
    fn open(&self, n: usize) -> (Events, String) {
        let mut e = self.start();
        let id = format!("msg_{}", rand_hex(48));
        e.push(
            "response.output_item.added",
            json!({"output_index": 0, "item": {"id": id, "type": "message", "status": "in_progress",
                                               "role": "assistant", "content": []}}),
        );
        e.push(
            "response.content_part.added",
            json!({"item_id": id, "output_index": 0, "content_index": 0,
                   "part": {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}}),
        );
        for i in 0..n {
            e.push("response.output_text.delta", text_delta(&id, i));
        }
        (e, id)
    }
}

fn text_delta(item_id: &str, i: usize) -> Value {
    json!({"item_id": item_id, "output_index": 0, "content_index": 0,
           "delta": format!("tok{i} "), "logprobs": []})
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
    let ctx = Ctx {
        req: &req,
        id: format!("resp_{}", rand_hex(48)),
        created_at: now_secs(),
        model,
    };
    // The conversation: a stored response's items, then this request's input.
    let mut items = Vec::new();
    if let Some(prev) = req["previous_response_id"].as_str() {
        match state.stored.lock().expect("lock").get(prev) {
            Some(history) => items.extend(history.iter().cloned()),
            None => {
                let body = json!({"error": {
                    "message": format!("Previous response with id '{prev}' not found."),
                    "type": "invalid_request_error", "param": "previous_response_id",
                    "code": "previous_response_not_found"}});
                return (StatusCode::NOT_FOUND, axum::Json(body)).into_response();
            }
        }
    }
    items.extend(input_items(&req));
    if !stream {
        let whole = |a: &Answer| ctx.response("completed", ctx.items(a), Some(&a.usage));
        if let Some(r) = cut_answer(&state, &behaviour, conn_of(conn.clone()), whole) {
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
            let (e, _) = ctx.open(n);
            return sse(state.clone(), e.out, After::Reset(conn_of(conn)));
        }
        Behaviour::Malformed => return malformed(state.clone()),
        Behaviour::Stall(n) => {
            let (e, _) = ctx.open(n);
            return sse(state.clone(), e.out, After::Silence);
        }
        Behaviour::Forever(every) => {
            let (e, id) = ctx.open(0);
            let mut seq = e.seq;
            let mut i = 1000;
            let next = move || {
                i += 1;
                Events::event(
                    &mut seq,
                    "response.output_text.delta",
                    text_delta(&id, i - 1),
                )
            };
            return sse(state.clone(), e.out, After::Every(every, Box::new(next)));
        }
        Behaviour::Fail(n) => {
            let (mut e, _) = ctx.open(n);
            let mut failed = ctx.response("failed", Vec::new(), None);
            failed["error"] = json!({"code": "server_error", "message": "mock upstream error"});
            e.push("response.failed", json!({"response": failed}));
            return sse(state.clone(), e.out, After::End);
        }
        _ => {}
    }
    let wait = delay_before_answer(&behaviour, stream);
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    let conv = Conversation::responses(&items, &req);
    let Some(answer) = answer_for(&behaviour, &conv, stream, body.len()) else {
        return openai_error(StatusCode::INTERNAL_SERVER_ERROR, "mock: no answer", None);
    };
    let output = ctx.items(&answer);
    if req["store"] != json!(false) {
        items.extend(output.iter().cloned());
        state
            .stored
            .lock()
            .expect("lock")
            .insert(ctx.id.clone(), items);
    }
    if stream {
        sse(state.clone(), ctx.stream(&answer, &output), After::End)
    } else {
        axum::Json(ctx.response("completed", output, Some(&answer.usage))).into_response()
    }
}
