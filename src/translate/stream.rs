//! Streams: stateful translators from one provider's server-sent events to the other's.
//!
//! Each takes the `data` of one upstream event at a time (the proxy splits the byte stream
//! into events) and returns the bytes of zero or more whole events for the client.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::{finish_reason, stop_reason, unix_now, TokenUsage};

fn get_str<'a>(o: &'a Value, k: &str) -> Option<&'a str> {
    o.get(k).and_then(Value::as_str)
}

fn u64_of(v: &Value, k: &str) -> Option<u64> {
    v.get(k).and_then(Value::as_u64)
}

/// One Anthropic event: `event: NAME` and its JSON data.
fn anthropic_event(out: &mut Vec<u8>, v: &Value) {
    let name = get_str(v, "type").unwrap_or("message");
    out.extend_from_slice(format!("event: {name}\ndata: {v}\n\n").as_bytes());
}

/// An Anthropic `error` event, for a stream that must end early.
pub fn anthropic_error_event(message: &str, error_type: &str) -> Vec<u8> {
    let mut out = Vec::new();
    anthropic_event(
        &mut out,
        &json!({"type": "error", "error": {"type": error_type, "message": message}}),
    );
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Text(usize),
    /// An OpenAI tool call (by its `index`) open as Anthropic block `block`.
    Tool {
        call: u64,
        block: usize,
    },
}

impl Block {
    fn index(self) -> usize {
        match self {
            Self::Text(i) | Self::Tool { block: i, .. } => i,
        }
    }
}

/// OpenAI `chat.completion.chunk` events → Anthropic Messages events.
#[derive(Debug, Default)]
pub struct OpenAiToAnthropicStream {
    started: bool,
    ended: bool,
    next_block: usize,
    open: Option<Block>,
    stop: Option<String>,
    usage: Option<TokenUsage>,
    errored: bool,
}

impl OpenAiToAnthropicStream {
    pub fn new() -> Self {
        Self::default()
    }

    /// Usage as the upstream reported it, once it has.
    pub fn usage(&self) -> Option<TokenUsage> {
        self.usage
    }

    /// Whether the translated stream has been ended (`message_stop` or `error` sent).
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Whether the upstream reported an error in the stream.
    pub fn errored(&self) -> bool {
        self.errored
    }

    /// Translates one upstream event's data.
    pub fn event(&mut self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if self.ended {
            return out;
        }
        if data.trim_ascii() == b"[DONE]" {
            return self.finish();
        }
        let Ok(v) = serde_json::from_slice::<Value>(data) else {
            return out;
        };
        if let Some(e) = v.get("error").filter(|e| !e.is_null()) {
            let message = get_str(e, "message").unwrap_or("the upstream reported an error");
            self.ended = true;
            self.errored = true;
            return anthropic_error_event(message, "api_error");
        }
        self.start(&mut out, &v);
        if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
            self.usage = Some(TokenUsage {
                input_tokens: u64_of(u, "prompt_tokens").unwrap_or(0),
                output_tokens: u64_of(u, "completion_tokens").unwrap_or(0),
            });
        }
        let Some(choice) = v.get("choices").and_then(|c| c.get(0)) else {
            return out;
        };
        let delta = choice.get("delta").cloned().unwrap_or(Value::Null);
        if let Some(text) = get_str(&delta, "content").filter(|t| !t.is_empty()) {
            let idx = match self.open {
                Some(Block::Text(i)) => i,
                _ => {
                    let i = self.open_block(&mut out, json!({"type": "text", "text": ""}));
                    self.open = Some(Block::Text(i));
                    i
                }
            };
            anthropic_event(
                &mut out,
                &json!({"type": "content_block_delta", "index": idx,
                        "delta": {"type": "text_delta", "text": text}}),
            );
        }
        for call in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let n = u64_of(call, "index").unwrap_or(0);
            let f = call.get("function").cloned().unwrap_or(Value::Null);
            let idx = match self.open {
                Some(Block::Tool { call, block }) if call == n => block,
                _ => {
                    let i = self.open_block(
                        &mut out,
                        json!({"type": "tool_use", "id": get_str(call, "id").unwrap_or(""),
                               "name": get_str(&f, "name").unwrap_or(""), "input": {}}),
                    );
                    self.open = Some(Block::Tool { call: n, block: i });
                    i
                }
            };
            if let Some(args) = get_str(&f, "arguments").filter(|a| !a.is_empty()) {
                anthropic_event(
                    &mut out,
                    &json!({"type": "content_block_delta", "index": idx,
                            "delta": {"type": "input_json_delta", "partial_json": args}}),
                );
            }
        }
        if let Some(r) = get_str(choice, "finish_reason") {
            self.stop = Some(stop_reason(r).to_string());
        }
        out
    }

    /// The upstream stream ended: closes the open block and the message (once).
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.ended {
            return out;
        }
        self.start(&mut out, &Value::Null);
        self.close_block(&mut out);
        let usage = self.usage.unwrap_or_default();
        anthropic_event(
            &mut out,
            &json!({"type": "message_delta",
                    "delta": {"stop_reason": self.stop.as_deref().unwrap_or("end_turn"), "stop_sequence": null},
                    "usage": {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens}}),
        );
        anthropic_event(&mut out, &json!({"type": "message_stop"}));
        self.ended = true;
        out
    }

    fn start(&mut self, out: &mut Vec<u8>, chunk: &Value) {
        if self.started {
            return;
        }
        self.started = true;
        anthropic_event(
            out,
            &json!({"type": "message_start", "message": {
                "id": get_str(chunk, "id").unwrap_or("msg"),
                "type": "message", "role": "assistant", "content": [],
                "model": get_str(chunk, "model").unwrap_or(""),
                "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0}}}),
        );
    }

    fn open_block(&mut self, out: &mut Vec<u8>, block: Value) -> usize {
        self.close_block(out);
        let i = self.next_block;
        self.next_block += 1;
        anthropic_event(
            out,
            &json!({"type": "content_block_start", "index": i, "content_block": block}),
        );
        i
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        if let Some(b) = self.open.take() {
            anthropic_event(
                out,
                &json!({"type": "content_block_stop", "index": b.index()}),
            );
        }
    }
}

/// Anthropic Messages events → OpenAI `chat.completion.chunk` events, ending `data: [DONE]`.
#[derive(Debug)]
pub struct AnthropicToOpenAiStream {
    include_usage: bool,
    id: String,
    model: String,
    created: u64,
    /// Anthropic block index → OpenAI tool call index.
    tools: HashMap<u64, usize>,
    usage: Option<TokenUsage>,
    finish: Option<&'static str>,
    ended: bool,
    errored: bool,
}

impl AnthropicToOpenAiStream {
    /// `include_usage`: the client asked for the usage chunk (`stream_options.include_usage`).
    pub fn new(include_usage: bool) -> Self {
        Self {
            include_usage,
            id: "msg".into(),
            model: String::new(),
            created: unix_now(),
            tools: HashMap::new(),
            usage: None,
            finish: None,
            ended: false,
            errored: false,
        }
    }

    pub fn usage(&self) -> Option<TokenUsage> {
        self.usage
    }

    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Whether the upstream reported an error in the stream.
    pub fn errored(&self) -> bool {
        self.errored
    }

    fn chunk(&self, out: &mut Vec<u8>, delta: Value, finish: Option<&str>) {
        let v = json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        out.extend_from_slice(format!("data: {v}\n\n").as_bytes());
    }

    /// Translates one upstream event's data (its `type` field names the event).
    pub fn event(&mut self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if self.ended {
            return out;
        }
        let Ok(v) = serde_json::from_slice::<Value>(data) else {
            return out;
        };
        match get_str(&v, "type") {
            Some("message_start") => {
                let m = v.get("message").cloned().unwrap_or(Value::Null);
                if let Some(id) = get_str(&m, "id") {
                    self.id = id.to_string();
                }
                if let Some(model) = get_str(&m, "model") {
                    self.model = model.to_string();
                }
                if let Some(u) = m.get("usage") {
                    self.usage = Some(TokenUsage {
                        input_tokens: u64_of(u, "input_tokens").unwrap_or(0)
                            + u64_of(u, "cache_read_input_tokens").unwrap_or(0)
                            + u64_of(u, "cache_creation_input_tokens").unwrap_or(0),
                        output_tokens: u64_of(u, "output_tokens").unwrap_or(0),
                    });
                }
                self.chunk(&mut out, json!({"role": "assistant", "content": ""}), None);
            }
            Some("content_block_start") => {
                let index = u64_of(&v, "index").unwrap_or(0);
                let b = v.get("content_block").cloned().unwrap_or(Value::Null);
                match get_str(&b, "type") {
                    Some("tool_use") => {
                        let n = self.tools.len();
                        self.tools.insert(index, n);
                        self.chunk(
                            &mut out,
                            json!({"tool_calls": [{"index": n, "id": get_str(&b, "id").unwrap_or(""),
                                "type": "function",
                                "function": {"name": get_str(&b, "name").unwrap_or(""), "arguments": ""}}]}),
                            None,
                        );
                    }
                    Some("text") => {
                        if let Some(t) = get_str(&b, "text").filter(|t| !t.is_empty()) {
                            self.chunk(&mut out, json!({"content": t}), None);
                        }
                    }
                    _ => {}
                }
            }
            Some("content_block_delta") => {
                let index = u64_of(&v, "index").unwrap_or(0);
                let d = v.get("delta").cloned().unwrap_or(Value::Null);
                match get_str(&d, "type") {
                    Some("text_delta") => {
                        let t = get_str(&d, "text").unwrap_or("");
                        self.chunk(&mut out, json!({"content": t}), None);
                    }
                    Some("input_json_delta") => {
                        if let Some(&n) = self.tools.get(&index) {
                            let args = get_str(&d, "partial_json").unwrap_or("");
                            self.chunk(
                                &mut out,
                                json!({"tool_calls": [{"index": n, "function": {"arguments": args}}]}),
                                None,
                            );
                        }
                    }
                    // thinking_delta, signature_delta, citations: no OpenAI counterpart
                    _ => {}
                }
            }
            Some("message_delta") => {
                if let Some(r) = v.get("delta").and_then(|d| get_str(d, "stop_reason")) {
                    self.finish = Some(finish_reason(r));
                }
                if let Some(u) = v.get("usage") {
                    let mut usage = self.usage.unwrap_or_default();
                    if let Some(o) = u64_of(u, "output_tokens") {
                        usage.output_tokens = o;
                    }
                    if let Some(i) = u64_of(u, "input_tokens") {
                        usage.input_tokens = i
                            + u64_of(u, "cache_read_input_tokens").unwrap_or(0)
                            + u64_of(u, "cache_creation_input_tokens").unwrap_or(0);
                    }
                    self.usage = Some(usage);
                }
            }
            Some("message_stop") => return self.finish(),
            Some("error") => {
                let e = v.get("error").cloned().unwrap_or(Value::Null);
                let err = json!({"error": {
                    "message": get_str(&e, "message").unwrap_or("the upstream reported an error"),
                    "type": get_str(&e, "type").unwrap_or("api_error"),
                    "param": null, "code": null}});
                out.extend_from_slice(format!("data: {err}\n\n").as_bytes());
                self.ended = true;
                self.errored = true;
            }
            // ping and anything newer
            _ => {}
        }
        out
    }

    /// The upstream stream ended: the finish chunk, the usage chunk if asked, `[DONE]` (once).
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.ended {
            return out;
        }
        self.ended = true;
        self.chunk(&mut out, json!({}), Some(self.finish.unwrap_or("stop")));
        if self.include_usage {
            let u = self.usage.unwrap_or_default();
            let v = json!({
                "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "choices": [],
                "usage": {"prompt_tokens": u.input_tokens, "completion_tokens": u.output_tokens,
                          "total_tokens": u.input_tokens + u.output_tokens},
            });
            out.extend_from_slice(format!("data: {v}\n\n").as_bytes());
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits translated output back into (event name, data JSON) pairs.
    fn events(bytes: &[u8]) -> Vec<(String, Value)> {
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        text.split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                let mut name = String::new();
                let mut data = Value::Null;
                for line in e.lines() {
                    if let Some(n) = line.strip_prefix("event: ") {
                        name = n.into();
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data = serde_json::from_str(d).unwrap_or(Value::String(d.into()));
                    }
                }
                (name, data)
            })
            .collect()
    }

    #[test]
    fn openai_chunks_to_anthropic_events() {
        let mut t = OpenAiToAnthropicStream::new();
        let mut out = Vec::new();
        for d in [
            r#"{"id":"c1","model":"gpt","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
            r#"{"id":"c1","model":"gpt","choices":[{"index":0,"delta":{"content":"Hel"}}]}"#,
            r#"{"id":"c1","model":"gpt","choices":[{"index":0,"delta":{"content":"lo"}}]}"#,
            r#"{"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get","arguments":""}}]}}]}"#,
            r#"{"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"q\":"}}]}}]}"#,
            r#"{"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"1}"}}]}}]}"#,
            r#"{"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            r#"{"id":"c1","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":5}}"#,
            "[DONE]",
        ] {
            out.extend(t.event(d.as_bytes()));
        }
        out.extend(t.finish()); // idempotent after [DONE]
        let ev = events(&out);
        let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        for (n, d) in &ev {
            assert_eq!(d["type"], n.as_str());
        }
        assert_eq!(ev[0].1["message"]["model"], "gpt");
        assert_eq!(
            ev[2].1["delta"],
            json!({"type": "text_delta", "text": "Hel"})
        );
        assert_eq!(ev[5].1["index"], 1);
        assert_eq!(
            ev[5].1["content_block"],
            json!({"type": "tool_use", "id": "call_1", "name": "get", "input": {}})
        );
        assert_eq!(
            ev[6].1["delta"],
            json!({"type": "input_json_delta", "partial_json": "{\"q\":"})
        );
        assert_eq!(ev[9].1["delta"]["stop_reason"], "tool_use");
        assert_eq!(ev[9].1["usage"]["output_tokens"], 5);
        assert_eq!(
            t.usage(),
            Some(TokenUsage {
                input_tokens: 9,
                output_tokens: 5
            })
        );
    }

    #[test]
    fn openai_error_event_becomes_anthropic_error() {
        let mut t = OpenAiToAnthropicStream::new();
        let out = t.event(br#"{"error":{"message":"boom","type":"server_error"}}"#);
        let ev = events(&out);
        assert_eq!(ev[0].0, "error");
        assert_eq!(ev[0].1["error"]["message"], "boom");
        assert!(t.errored());
        assert!(t.finish().is_empty());
    }

    #[test]
    fn anthropic_events_to_openai_chunks() {
        let mut t = AnthropicToOpenAiStream::new(true);
        let mut out = Vec::new();
        for d in [
            r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":1}}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            r#"{"type":"ping"}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#,
            r#"{"type":"content_block_stop","index":0}"#,
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"get","input":{}}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"a\":"}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"2}"}}"#,
            r#"{"type":"content_block_stop","index":1}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":7}}"#,
            r#"{"type":"message_stop"}"#,
        ] {
            out.extend(t.event(d.as_bytes()));
        }
        let ev = events(&out);
        assert_eq!(ev.last().unwrap().1, "[DONE]");
        let chunks: Vec<&Value> = ev
            .iter()
            .map(|(_, d)| d)
            .filter(|d| d.is_object())
            .collect();
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(chunks[0]["id"], "msg_1");
        assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "Hi");
        assert_eq!(
            chunks[2]["choices"][0]["delta"]["tool_calls"][0]["id"],
            "toolu_1"
        );
        assert_eq!(
            chunks[3]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"],
            "{\"a\":"
        );
        assert_eq!(chunks[5]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            chunks[6]["usage"],
            json!({"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19})
        );
        assert_eq!(chunks.len(), 7);
        assert!(t.finish().is_empty());
    }

    #[test]
    fn anthropic_error_event_and_no_usage_chunk_unless_asked() {
        let mut t = AnthropicToOpenAiStream::new(false);
        let out = t.event(
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        let ev = events(&out);
        assert_eq!(ev[0].1["error"]["type"], "overloaded_error");
        assert!(t.errored());
        let mut t = AnthropicToOpenAiStream::new(false);
        let out = t.finish();
        let ev = events(&out);
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].1["choices"][0]["finish_reason"], "stop");
    }
}
