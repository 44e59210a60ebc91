//! Requests: OpenAI chat completions ↔ Anthropic Messages.

use serde_json::{json, Map, Value};

use super::{TranslateError, DEFAULT_MAX_TOKENS};

type Obj = Map<String, Value>;

fn get_str<'a>(o: &'a Value, k: &str) -> Option<&'a str> {
    o.get(k).and_then(Value::as_str)
}

// ---------------------------------------------------------------------------------------------
// OpenAI → Anthropic

/// Translates an OpenAI chat-completions body into an Anthropic Messages body for
/// `upstream_model`.
pub fn openai_to_anthropic_request(
    body: &Obj,
    upstream_model: &str,
) -> Result<Obj, TranslateError> {
    if body.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return Err(TranslateError::new(
            "'n' greater than 1 is not supported by this model's provider",
        ));
    }
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| TranslateError::new("'messages' must be an array"))?;
    let mut system: Vec<Value> = Vec::new();
    let mut out: Vec<(String, Vec<Value>)> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = get_str(m, "role").unwrap_or("");
        let (role, blocks) = match role {
            "system" | "developer" => {
                for b in openai_content_blocks(m.get("content"), i)? {
                    system.push(b);
                }
                continue;
            }
            "user" => ("user", openai_content_blocks(m.get("content"), i)?),
            "assistant" => ("assistant", assistant_blocks(m, i)?),
            "tool" => {
                let id = get_str(m, "tool_call_id").ok_or_else(|| {
                    TranslateError::new(format!(
                        "messages[{i}]: a tool message needs 'tool_call_id'"
                    ))
                })?;
                let blocks = openai_content_blocks(m.get("content"), i)?;
                let content = if blocks.is_empty() {
                    Value::String(String::new())
                } else {
                    Value::Array(blocks)
                };
                (
                    "user",
                    vec![json!({"type": "tool_result", "tool_use_id": id, "content": content})],
                )
            }
            other => {
                return Err(TranslateError::new(format!(
                    "messages[{i}]: role '{other}' is not supported by this model's provider"
                )))
            }
        };
        if blocks.is_empty() {
            continue;
        }
        // Anthropic alternates user and assistant: consecutive turns of one role are merged.
        match out.last_mut() {
            Some((r, b)) if r == role => b.extend(blocks),
            _ => out.push((role.to_string(), blocks)),
        }
    }
    let mut r = Obj::new();
    r.insert("model".into(), Value::String(upstream_model.to_string()));
    let max_tokens = body
        .get("max_completion_tokens")
        .and_then(Value::as_u64)
        .or_else(|| body.get("max_tokens").and_then(Value::as_u64))
        .unwrap_or(DEFAULT_MAX_TOKENS);
    r.insert("max_tokens".into(), max_tokens.into());
    if !system.is_empty() {
        r.insert("system".into(), Value::Array(system));
    }
    r.insert(
        "messages".into(),
        out.into_iter()
            .map(|(role, content)| json!({"role": role, "content": content}))
            .collect(),
    );
    if let Some(t) = body.get("temperature").and_then(Value::as_f64) {
        // OpenAI's range is 0..2, Anthropic's 0..1.
        r.insert("temperature".into(), json!(t.clamp(0.0, 1.0)));
    }
    if let Some(p) = body.get("top_p").filter(|v| v.is_number()) {
        r.insert("top_p".into(), p.clone());
    }
    match body.get("stop") {
        Some(Value::String(s)) => {
            r.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(a)) if !a.is_empty() => {
            r.insert("stop_sequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    if let Some(true) = body.get("stream").and_then(Value::as_bool) {
        r.insert("stream".into(), Value::Bool(true));
    }
    if let Some(u) = body.get("user").and_then(Value::as_str) {
        r.insert("metadata".into(), json!({ "user_id": u }));
    }
    if let Some(tools) = body.get("tools").and_then(Value::as_array) {
        let mut out = Vec::new();
        for (i, t) in tools.iter().enumerate() {
            if get_str(t, "type").unwrap_or("function") != "function" {
                return Err(TranslateError::new(format!(
                    "tools[{i}]: only function tools can be sent to this model's provider"
                )));
            }
            let f = t
                .get("function")
                .ok_or_else(|| TranslateError::new(format!("tools[{i}]: missing 'function'")))?;
            let name = get_str(f, "name")
                .ok_or_else(|| TranslateError::new(format!("tools[{i}]: missing function.name")))?;
            let mut tool = json!({
                "name": name,
                "input_schema": f.get("parameters").cloned()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            });
            if let Some(d) = get_str(f, "description") {
                tool["description"] = json!(d);
            }
            out.push(tool);
        }
        if !out.is_empty() {
            r.insert("tools".into(), Value::Array(out));
        }
    }
    let mut choice = match body.get("tool_choice") {
        Some(Value::String(s)) => match s.as_str() {
            "auto" => Some(json!({"type": "auto"})),
            "required" => Some(json!({"type": "any"})),
            "none" => Some(json!({"type": "none"})),
            other => {
                return Err(TranslateError::new(format!(
                    "unknown tool_choice '{other}'"
                )));
            }
        },
        Some(v @ Value::Object(_)) => {
            let name = v
                .get("function")
                .and_then(|f| get_str(f, "name"))
                .ok_or_else(|| TranslateError::new("tool_choice: missing function.name"))?;
            Some(json!({"type": "tool", "name": name}))
        }
        _ => None,
    };
    if body.get("parallel_tool_calls") == Some(&Value::Bool(false)) && r.contains_key("tools") {
        let c = choice.get_or_insert_with(|| json!({"type": "auto"}));
        if c["type"] != "none" {
            c["disable_parallel_tool_use"] = Value::Bool(true);
        }
    }
    if let Some(c) = choice {
        r.insert("tool_choice".into(), c);
    }
    Ok(r)
}

/// OpenAI `content` (string or parts) as Anthropic content blocks.
fn openai_content_blocks(content: Option<&Value>, i: usize) -> Result<Vec<Value>, TranslateError> {
    match content {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) if s.is_empty() => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![json!({"type": "text", "text": s})]),
        Some(Value::Array(parts)) => {
            let mut out = Vec::new();
            for p in parts {
                match get_str(p, "type") {
                    Some("text") => {
                        let t = get_str(p, "text").unwrap_or("");
                        if !t.is_empty() {
                            out.push(json!({"type": "text", "text": t}));
                        }
                    }
                    Some("image_url") => {
                        let url = p
                            .get("image_url")
                            .and_then(|u| get_str(u, "url"))
                            .ok_or_else(|| {
                                TranslateError::new(format!("messages[{i}]: image_url.url missing"))
                            })?;
                        out.push(json!({"type": "image", "source": image_source(url, i)?}));
                    }
                    Some("refusal") => {}
                    other => {
                        return Err(TranslateError::new(format!(
                            "messages[{i}]: content part '{}' is not supported by this model's provider",
                            other.unwrap_or("?")
                        )))
                    }
                }
            }
            Ok(out)
        }
        Some(_) => Err(TranslateError::new(format!(
            "messages[{i}]: 'content' must be a string or an array"
        ))),
    }
}

/// An image URL as an Anthropic image source: `data:` URLs become base64, others `url`.
fn image_source(url: &str, i: usize) -> Result<Value, TranslateError> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest
            .split_once(',')
            .ok_or_else(|| TranslateError::new(format!("messages[{i}]: malformed data: URL")))?;
        let media_type = meta.strip_suffix(";base64").ok_or_else(|| {
            TranslateError::new(format!(
                "messages[{i}]: only base64 data: URLs are supported"
            ))
        })?;
        Ok(json!({"type": "base64", "media_type": media_type, "data": data}))
    } else {
        Ok(json!({"type": "url", "url": url}))
    }
}

fn assistant_blocks(m: &Value, i: usize) -> Result<Vec<Value>, TranslateError> {
    let mut blocks = openai_content_blocks(m.get("content"), i)?;
    if let Some(calls) = m.get("tool_calls").and_then(Value::as_array) {
        for c in calls {
            let f = c.get("function").cloned().unwrap_or(Value::Null);
            let args = get_str(&f, "arguments").unwrap_or("");
            let input: Value = if args.trim().is_empty() {
                json!({})
            } else {
                serde_json::from_str(args).map_err(|_| {
                    TranslateError::new(format!(
                        "messages[{i}]: tool call arguments are not a JSON object"
                    ))
                })?
            };
            blocks.push(json!({
                "type": "tool_use",
                "id": get_str(c, "id").unwrap_or(""),
                "name": get_str(&f, "name").unwrap_or(""),
                "input": input,
            }));
        }
    }
    Ok(blocks)
}

// ---------------------------------------------------------------------------------------------
// Anthropic → OpenAI

/// Translates an Anthropic Messages body into an OpenAI chat-completions body for
/// `upstream_model`. A stream asks for the usage chunk (Anthropic always reports usage).
pub fn anthropic_to_openai_request(
    body: &Obj,
    upstream_model: &str,
) -> Result<Obj, TranslateError> {
    let mut messages: Vec<Value> = Vec::new();
    match body.get("system") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => messages.push(json!({"role": "system", "content": s})),
        Some(Value::Array(blocks)) => {
            let text = blocks
                .iter()
                .filter_map(|b| get_str(b, "text"))
                .collect::<Vec<_>>()
                .join("\n\n");
            messages.push(json!({"role": "system", "content": text}));
        }
        Some(_) => return Err(TranslateError::new("'system' must be a string or an array")),
    }
    let input = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| TranslateError::new("'messages' must be an array"))?;
    for (i, m) in input.iter().enumerate() {
        match get_str(m, "role") {
            Some("user") => user_messages(m.get("content"), i, &mut messages)?,
            Some("assistant") => messages.push(assistant_message(m.get("content"), i)?),
            _ => {
                return Err(TranslateError::new(format!(
                    "messages.{i}.role: must be 'user' or 'assistant'"
                )))
            }
        }
    }
    let mut r = Obj::new();
    r.insert("model".into(), Value::String(upstream_model.to_string()));
    r.insert("messages".into(), Value::Array(messages));
    if let Some(n) = body.get("max_tokens").filter(|v| v.is_u64()) {
        r.insert("max_tokens".into(), n.clone());
    }
    for k in ["temperature", "top_p"] {
        if let Some(v) = body.get(k).filter(|v| v.is_number()) {
            r.insert(k.into(), v.clone());
        }
    }
    if let Some(s) = body.get("stop_sequences").and_then(Value::as_array) {
        if !s.is_empty() {
            r.insert("stop".into(), Value::Array(s.clone()));
        }
    }
    if let Some(true) = body.get("stream").and_then(Value::as_bool) {
        r.insert("stream".into(), Value::Bool(true));
        r.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if let Some(u) = body.get("metadata").and_then(|m| get_str(m, "user_id")) {
        r.insert("user".into(), json!(u));
    }
    if let Some(tools) = body.get("tools").and_then(Value::as_array) {
        let mut out = Vec::new();
        for (i, t) in tools.iter().enumerate() {
            if get_str(t, "type").is_some_and(|ty| ty != "custom") {
                return Err(TranslateError::new(format!(
                    "tools.{i}: server tools ('{}') are not supported by this model's provider",
                    get_str(t, "type").unwrap_or("")
                )));
            }
            let name = get_str(t, "name")
                .ok_or_else(|| TranslateError::new(format!("tools.{i}.name: field required")))?;
            let mut f = json!({
                "name": name,
                "parameters": t.get("input_schema").cloned()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            });
            if let Some(d) = get_str(t, "description") {
                f["description"] = json!(d);
            }
            out.push(json!({"type": "function", "function": f}));
        }
        if !out.is_empty() {
            r.insert("tools".into(), Value::Array(out));
        }
    }
    if let Some(c) = body.get("tool_choice").filter(|c| c.is_object()) {
        let choice = match get_str(c, "type") {
            Some("auto") => json!("auto"),
            Some("any") => json!("required"),
            Some("none") => json!("none"),
            Some("tool") => {
                let name = get_str(c, "name")
                    .ok_or_else(|| TranslateError::new("tool_choice.name: field required"))?;
                json!({"type": "function", "function": {"name": name}})
            }
            _ => return Err(TranslateError::new("tool_choice.type: unknown")),
        };
        r.insert("tool_choice".into(), choice);
        if c.get("disable_parallel_tool_use") == Some(&Value::Bool(true)) {
            r.insert("parallel_tool_calls".into(), Value::Bool(false));
        }
    }
    Ok(r)
}

/// One Anthropic user turn: its `tool_result` blocks become `tool` messages (first, as OpenAI
/// wants them right after the assistant's calls), the rest one user message.
fn user_messages(
    content: Option<&Value>,
    i: usize,
    out: &mut Vec<Value>,
) -> Result<(), TranslateError> {
    let blocks = match content {
        Some(Value::String(s)) => {
            out.push(json!({"role": "user", "content": s}));
            return Ok(());
        }
        Some(Value::Array(b)) => b,
        _ => {
            return Err(TranslateError::new(format!(
                "messages.{i}.content: must be a string or an array"
            )))
        }
    };
    let mut parts = Vec::new();
    for b in blocks {
        match get_str(b, "type") {
            Some("text") => {
                parts.push(json!({"type": "text", "text": get_str(b, "text").unwrap_or("")}))
            }
            Some("image") => {
                let src = b.get("source").cloned().unwrap_or(Value::Null);
                let url = match get_str(&src, "type") {
                    Some("base64") => format!(
                        "data:{};base64,{}",
                        get_str(&src, "media_type").unwrap_or("image/png"),
                        get_str(&src, "data").unwrap_or("")
                    ),
                    Some("url") => get_str(&src, "url").unwrap_or("").to_string(),
                    _ => {
                        return Err(TranslateError::new(format!(
                        "messages.{i}: image source type is not supported by this model's provider"
                    )))
                    }
                };
                parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
            }
            Some("tool_result") => {
                let text = match b.get("content") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(items)) => items
                        .iter()
                        .filter_map(|x| get_str(x, "text"))
                        .collect::<Vec<_>>()
                        .join("\n"),
                    _ => String::new(),
                };
                let text = if b.get("is_error") == Some(&Value::Bool(true)) {
                    format!("Error: {text}")
                } else {
                    text
                };
                out.push(json!({
                    "role": "tool",
                    "tool_call_id": get_str(b, "tool_use_id").unwrap_or(""),
                    "content": text,
                }));
            }
            other => {
                return Err(TranslateError::new(format!(
                    "messages.{i}: content block '{}' is not supported by this model's provider",
                    other.unwrap_or("?")
                )))
            }
        }
    }
    if !parts.is_empty() {
        // Text only: the plain string form, which every OpenAI-compatible server accepts.
        let all_text = parts.iter().all(|p| p["type"] == "text");
        let content = if all_text {
            Value::String(
                parts
                    .iter()
                    .filter_map(|p| get_str(p, "text"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            )
        } else {
            Value::Array(parts)
        };
        out.push(json!({"role": "user", "content": content}));
    }
    Ok(())
}

fn assistant_message(content: Option<&Value>, i: usize) -> Result<Value, TranslateError> {
    let blocks = match content {
        Some(Value::String(s)) => return Ok(json!({"role": "assistant", "content": s})),
        Some(Value::Array(b)) => b,
        _ => {
            return Err(TranslateError::new(format!(
                "messages.{i}.content: must be a string or an array"
            )))
        }
    };
    let mut text = String::new();
    let mut calls = Vec::new();
    for b in blocks {
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
            // Reasoning blocks belong to the model that wrote them.
            Some("thinking" | "redacted_thinking") => {}
            other => {
                return Err(TranslateError::new(format!(
                    "messages.{i}: content block '{}' is not supported by this model's provider",
                    other.unwrap_or("?")
                )))
            }
        }
    }
    let mut m = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) }});
    if !calls.is_empty() {
        m["tool_calls"] = Value::Array(calls);
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Obj {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn openai_to_anthropic_full() {
        let b = obj(json!({
            "model": "pub", "stream": true, "temperature": 1.5, "top_p": 0.9, "stop": "END", "user": "u1",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [
                    {"type": "text", "text": "what is this"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "image_url", "image_url": {"url": "https://x/y.jpg"}}
                ]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get", "arguments": "{\"q\":1}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "42"},
                {"role": "user", "content": "thanks"}
            ],
            "tools": [{"type": "function", "function": {"name": "get", "description": "d", "parameters": {"type": "object"}}}],
            "tool_choice": "required", "parallel_tool_calls": false
        }));
        let r = openai_to_anthropic_request(&b, "claude-x").unwrap();
        assert_eq!(r["model"], "claude-x");
        assert_eq!(r["max_tokens"], DEFAULT_MAX_TOKENS);
        assert_eq!(r["system"], json!([{"type": "text", "text": "be brief"}]));
        assert_eq!(r["temperature"], 1.0);
        assert_eq!(r["stop_sequences"], json!(["END"]));
        assert_eq!(r["metadata"]["user_id"], "u1");
        assert_eq!(r["stream"], true);
        let m = r["messages"].as_array().unwrap();
        assert_eq!(m.len(), 3, "{m:?}");
        assert_eq!(
            m[0]["content"][1]["source"],
            json!({"type": "base64", "media_type": "image/png", "data": "AAAA"})
        );
        assert_eq!(
            m[0]["content"][2]["source"],
            json!({"type": "url", "url": "https://x/y.jpg"})
        );
        assert_eq!(
            m[1]["content"][0],
            json!({"type": "tool_use", "id": "call_1", "name": "get", "input": {"q": 1}})
        );
        // The tool result and the next user text merge into one user turn.
        assert_eq!(m[2]["role"], "user");
        assert_eq!(m[2]["content"][0]["type"], "tool_result");
        assert_eq!(m[2]["content"][0]["tool_use_id"], "call_1");
        assert_eq!(m[2]["content"][1]["text"], "thanks");
        assert_eq!(
            r["tools"][0],
            json!({"name": "get", "input_schema": {"type": "object"}, "description": "d"})
        );
        assert_eq!(
            r["tool_choice"],
            json!({"type": "any", "disable_parallel_tool_use": true})
        );
    }

    #[test]
    fn openai_max_tokens_and_refusals() {
        let b = obj(
            json!({"model": "m", "max_completion_tokens": 10, "messages": [{"role": "user", "content": "x"}]}),
        );
        assert_eq!(
            openai_to_anthropic_request(&b, "c").unwrap()["max_tokens"],
            10
        );
        let b = obj(json!({"model": "m", "n": 2, "messages": [{"role": "user", "content": "x"}]}));
        assert!(openai_to_anthropic_request(&b, "c").is_err());
        let b = obj(
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}),
        );
        assert!(openai_to_anthropic_request(&b, "c").is_err());
        let b = obj(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": {"type": "function", "function": {"name": "f"}}}),
        );
        assert_eq!(
            openai_to_anthropic_request(&b, "c").unwrap()["tool_choice"],
            json!({"type": "tool", "name": "f"})
        );
    }

    #[test]
    fn anthropic_to_openai_full() {
        let b = obj(json!({
            "model": "pub", "max_tokens": 100, "stream": true, "stop_sequences": ["X"], "top_k": 5,
            "system": [{"type": "text", "text": "sys"}],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "BBBB"}},
                    {"type": "image", "source": {"type": "url", "url": "https://x/z.png"}}
                ]},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "calling"},
                    {"type": "tool_use", "id": "toolu_1", "name": "get", "input": {"q": 2}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "7"}]},
                    {"type": "text", "text": "and?"}
                ]}
            ],
            "tools": [{"name": "get", "description": "d", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "tool", "name": "get", "disable_parallel_tool_use": true}
        }));
        let r = anthropic_to_openai_request(&b, "gpt-x").unwrap();
        assert_eq!(r["model"], "gpt-x");
        assert_eq!(r["max_tokens"], 100);
        assert_eq!(r["stop"], json!(["X"]));
        assert!(r.get("top_k").is_none());
        assert_eq!(r["stream_options"]["include_usage"], true);
        let m = r["messages"].as_array().unwrap();
        assert_eq!(m[0], json!({"role": "system", "content": "sys"}));
        assert_eq!(
            m[1]["content"][1]["image_url"]["url"],
            "data:image/jpeg;base64,BBBB"
        );
        assert_eq!(m[1]["content"][2]["image_url"]["url"], "https://x/z.png");
        assert_eq!(m[2]["content"], "calling");
        assert_eq!(m[2]["tool_calls"][0]["function"]["arguments"], "{\"q\":2}");
        assert_eq!(
            m[3],
            json!({"role": "tool", "tool_call_id": "toolu_1", "content": "7"})
        );
        assert_eq!(m[4], json!({"role": "user", "content": "and?"}));
        assert_eq!(
            r["tools"][0]["function"]["parameters"],
            json!({"type": "object"})
        );
        assert_eq!(
            r["tool_choice"],
            json!({"type": "function", "function": {"name": "get"}})
        );
        assert_eq!(r["parallel_tool_calls"], false);
    }

    #[test]
    fn round_trip_keeps_the_conversation() {
        let a = obj(json!({
            "model": "m", "max_tokens": 5, "system": "s",
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "r"}]}
            ]
        }));
        let o = anthropic_to_openai_request(&a, "x").unwrap();
        let back = openai_to_anthropic_request(&o, "m").unwrap();
        assert_eq!(back["messages"][1]["content"][0]["input"], json!({"a": 1}));
        assert_eq!(back["messages"][2]["content"][0]["tool_use_id"], "t1");
        assert_eq!(back["max_tokens"], 5);
        assert_eq!(back["system"][0]["text"], "s");
    }

    #[test]
    fn anthropic_server_tools_refused() {
        let b = obj(
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
        );
        assert!(anthropic_to_openai_request(&b, "x").is_err());
    }
}
