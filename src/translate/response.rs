//! Whole responses and error bodies: OpenAI ↔ Anthropic.

use serde_json::{json, Value};

use super::{finish_reason, stop_reason, unix_now};

fn get_str<'a>(o: &'a Value, k: &str) -> Option<&'a str> {
    o.get(k).and_then(Value::as_str)
}

/// An Anthropic `message` as an OpenAI `chat.completion`.
pub fn anthropic_to_openai_response(msg: &Value) -> Value {
    let mut text = String::new();
    let mut calls = Vec::new();
    for b in msg
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match get_str(b, "type") {
            Some("text") => text.push_str(get_str(b, "text").unwrap_or("")),
            Some("tool_use") => calls.push(json!({
                "id": get_str(b, "id").unwrap_or(""),
                "type": "function",
                "function": {
                    "name": get_str(b, "name").unwrap_or(""),
                    "arguments": b.get("input").cloned().unwrap_or_else(|| json!({})).to_string(),
                },
            })),
            _ => {}
        }
    }
    let mut message = json!({
        "role": "assistant",
        "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) },
        "refusal": null,
    });
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let usage = msg.get("usage").cloned().unwrap_or(Value::Null);
    let input = usage
        .get("input_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0)
        + usage
            .get("cache_read_input_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0)
        + usage
            .get("cache_creation_input_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0);
    let output = usage
        .get("output_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    json!({
        "id": get_str(msg, "id").unwrap_or("msg"),
        "object": "chat.completion",
        "created": unix_now(),
        "model": get_str(msg, "model").unwrap_or(""),
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(get_str(msg, "stop_reason").unwrap_or("end_turn")),
        }],
        "usage": {"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output},
    })
}

/// An OpenAI `chat.completion` as an Anthropic `message`.
pub fn openai_to_anthropic_response(resp: &Value) -> Value {
    let choice = resp
        .get("choices")
        .and_then(|c| c.get(0))
        .cloned()
        .unwrap_or(Value::Null);
    let message = choice.get("message").cloned().unwrap_or(Value::Null);
    let mut content = Vec::new();
    match message.get("content") {
        Some(Value::String(s)) if !s.is_empty() => content.push(json!({"type": "text", "text": s})),
        Some(Value::Array(parts)) => {
            for p in parts {
                if let Some(t) = get_str(p, "text") {
                    content.push(json!({"type": "text", "text": t}));
                }
            }
        }
        _ => {}
    }
    for c in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let f = c.get("function").cloned().unwrap_or(Value::Null);
        let input = get_str(&f, "arguments")
            .and_then(|a| serde_json::from_str::<Value>(a).ok())
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({}));
        content.push(json!({
            "type": "tool_use",
            "id": get_str(c, "id").unwrap_or(""),
            "name": get_str(&f, "name").unwrap_or(""),
            "input": input,
        }));
    }
    let usage = resp.get("usage").cloned().unwrap_or(Value::Null);
    json!({
        "id": get_str(resp, "id").unwrap_or("msg"),
        "type": "message",
        "role": "assistant",
        "model": get_str(resp, "model").unwrap_or(""),
        "content": content,
        "stop_reason": stop_reason(get_str(&choice, "finish_reason").unwrap_or("stop")),
        "stop_sequence": null,
        "usage": {
            "input_tokens": usage.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(0),
            "output_tokens": usage.get("completion_tokens").and_then(Value::as_u64).unwrap_or(0),
        },
    })
}

/// The message of an upstream error body in either format, or the body's text.
fn error_message(body: &[u8]) -> (String, Option<String>) {
    let v: Option<Value> = serde_json::from_slice(body).ok();
    let err = v.as_ref().and_then(|v| v.get("error"));
    let message = err
        .and_then(|e| get_str(e, "message"))
        .map(str::to_string)
        .or_else(|| err.and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            let cut: String = text.chars().take(500).collect();
            if cut.is_empty() {
                "the upstream returned an error".into()
            } else {
                cut
            }
        });
    let ty = err.and_then(|e| get_str(e, "type")).map(str::to_string);
    (message, ty)
}

/// An upstream Anthropic error (status and body) as OpenAI's error JSON.
pub fn anthropic_to_openai_error(status: u16, body: &[u8]) -> Value {
    let (message, ty) = error_message(body);
    let ty = match ty.as_deref() {
        Some("invalid_request_error" | "request_too_large") => "invalid_request_error",
        Some("authentication_error") => "authentication_error",
        Some("permission_error") => "permission_error",
        Some("not_found_error") => "invalid_request_error",
        Some("rate_limit_error") => "rate_limit_error",
        _ => match status {
            400 | 404 | 413 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            429 => "rate_limit_error",
            _ => "api_error",
        },
    };
    json!({"error": {"message": message, "type": ty, "param": null, "code": null}})
}

/// An upstream OpenAI error (status and body) as Anthropic's error JSON.
pub fn openai_to_anthropic_error(status: u16, body: &[u8]) -> Value {
    let (message, _) = error_message(body);
    let ty = match status {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        _ => "api_error",
    };
    json!({"type": "error", "error": {"type": ty, "message": message}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anthropic_message_to_completion() {
        let m = json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
            "content": [{"type": "text", "text": "hi "}, {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 10, "output_tokens": 4}
        });
        let r = anthropic_to_openai_response(&m);
        assert_eq!(r["object"], "chat.completion");
        assert_eq!(r["choices"][0]["message"]["content"], "hi ");
        assert_eq!(
            r["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"a\":1}"
        );
        assert_eq!(r["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            r["usage"],
            json!({"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14})
        );
    }

    #[test]
    fn completion_to_anthropic_message() {
        let c = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt",
            "choices": [{"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": "abc",
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"x\":true}"}}]}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        });
        let r = openai_to_anthropic_response(&c);
        assert_eq!(r["type"], "message");
        assert_eq!(r["content"][0], json!({"type": "text", "text": "abc"}));
        assert_eq!(r["content"][1]["input"], json!({"x": true}));
        assert_eq!(r["stop_reason"], "max_tokens");
        assert_eq!(r["usage"], json!({"input_tokens": 3, "output_tokens": 2}));
    }

    #[test]
    fn errors_cross_formats() {
        let a = br#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#;
        let o = anthropic_to_openai_error(429, a);
        assert_eq!(o["error"]["message"], "slow down");
        assert_eq!(o["error"]["type"], "rate_limit_error");
        let o = br#"{"error":{"message":"bad","type":"invalid_request_error","param":null,"code":null}}"#;
        let a = openai_to_anthropic_error(400, o);
        assert_eq!(
            a,
            json!({"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}})
        );
        assert_eq!(
            openai_to_anthropic_error(502, b"<html>gateway</html>")["error"]["message"],
            "<html>gateway</html>"
        );
        assert_eq!(
            openai_to_anthropic_error(529, b"")["error"]["type"],
            "overloaded_error"
        );
    }
}
