//! Answering in the client's format from an executor plugin's result: OpenAI's chat completion
//! JSON, or its SSE stream when the client asked to stream. (An Anthropic client's answer is
//! this JSON through the `dualrouter_wire` codecs.)

use serde_json::{json, Value};

use super::host::InvokeResponse;

/// The `chat.completion` object for a non-streaming request.
pub fn chat_completion_json(id: &str, model: &str, created: u64, resp: &InvokeResponse) -> Value {
    json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": resp.text },
            "logprobs": null,
            "finish_reason": resp.finish_reason,
        }],
        "usage": usage_json(resp),
    })
}

fn usage_json(resp: &InvokeResponse) -> Value {
    json!({
        "prompt_tokens": resp.usage.input_tokens,
        "completion_tokens": resp.usage.output_tokens,
        "total_tokens": u64::from(resp.usage.input_tokens) + u64::from(resp.usage.output_tokens),
    })
}

/// Text is sent in chunks of about this many bytes (cut on character boundaries).
pub const SSE_CHUNK_BYTES: usize = 1024;

/// The SSE body for a streaming request, whole: a role chunk, the text in chunks of about
/// [`SSE_CHUNK_BYTES`], a final chunk with the finish reason, a usage chunk when the client
/// asked for it (`stream_options.include_usage`), and `data: [DONE]`. Each element is one
/// `data: …\n\n` event, so the proxy can send them as they are.
pub fn chat_completion_sse(
    id: &str,
    model: &str,
    created: u64,
    resp: &InvokeResponse,
    include_usage: bool,
) -> Vec<String> {
    let chunk = |delta: Value, finish: Value| {
        let mut v = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }],
        });
        if include_usage {
            v["usage"] = Value::Null;
        }
        format!("data: {v}\n\n")
    };
    let mut events = vec![chunk(
        json!({ "role": "assistant", "content": "" }),
        Value::Null,
    )];
    let text = resp.text.as_str();
    let mut start = 0;
    while start < text.len() {
        let mut end = (start + SSE_CHUNK_BYTES).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        events.push(chunk(json!({ "content": &text[start..end] }), Value::Null));
        start = end;
    }
    events.push(chunk(json!({}), json!(resp.finish_reason)));
    if include_usage {
        let v = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [],
            "usage": usage_json(resp),
        });
        events.push(format!("data: {v}\n\n"));
    }
    events.push("data: [DONE]\n\n".to_string());
    events
}

#[cfg(test)]
mod tests {
    use super::super::host::Usage;
    use super::*;

    fn resp(text: &str) -> InvokeResponse {
        InvokeResponse {
            text: text.into(),
            usage: Usage {
                input_tokens: 7,
                output_tokens: 3,
                estimated: false,
            },
            finish_reason: "stop".into(),
        }
    }

    #[test]
    fn json_shape() {
        let v = chat_completion_json("chatcmpl-1", "auggie", 42, &resp("hi"));
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["choices"][0]["message"]["content"], "hi");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["usage"]["total_tokens"], 10);
    }

    #[test]
    fn sse_reassembles_to_the_text() {
        let text = "é".repeat(1500) + "end";
        let events = chat_completion_sse("c", "m", 1, &resp(&text), true);
        assert_eq!(events.last().unwrap(), "data: [DONE]\n\n");
        let mut out = String::new();
        let mut usage = None;
        let mut finish = None;
        for e in &events[..events.len() - 1] {
            let body = e.strip_prefix("data: ").unwrap().trim_end();
            let v: Value = serde_json::from_str(body).unwrap();
            assert_eq!(v["object"], "chat.completion.chunk");
            if let Some(c) = v["choices"].get(0) {
                if let Some(s) = c["delta"]["content"].as_str() {
                    out.push_str(s);
                }
                if !c["finish_reason"].is_null() {
                    finish = Some(c["finish_reason"].clone());
                }
            }
            if !v["usage"].is_null() {
                usage = Some(v["usage"].clone());
            }
        }
        assert_eq!(out, text);
        assert_eq!(finish.unwrap(), "stop");
        assert_eq!(usage.unwrap()["completion_tokens"], 3);
        assert!(events.len() > 4, "text should be split into several chunks");
    }
}
