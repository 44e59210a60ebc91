//! Anthropic Messages: requests, `message` answers and the event stream.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::chat::{custom_args, custom_input, custom_tool_description, custom_tool_schema};
use crate::ir::{
    CallKind, Effort, Event, Item, Obj, OutputFormat, Part, Request, Response, Role, Schema,
    Sealed, Source, Stop, Thinking, Tool, ToolChoice, Usage,
};
use crate::names::ToolNames;
use crate::seal;
use crate::util::{get_str, get_u64, sse};
use crate::{Echo, Format, Notes, Target, WireError};

/// `max_tokens` sent when the client set no output cap (Anthropic requires one).
pub(crate) const DEFAULT_MAX_TOKENS: u64 = 4096;

/// Anthropic fields with no counterpart in the OpenAI formats (left out, with a note, when
/// the request crosses). `context_management` edits only what Anthropic itself keeps of a
/// conversation: it cannot change an answer elsewhere.
const MESSAGES_ONLY: &[&str] = &[
    "context_management",
    "container",
    "mcp_servers",
    "service_tier",
];

/// Anthropic's `error.type` for an HTTP status.
pub(crate) fn error_type(status: u16) -> &'static str {
    match status {
        400 | 405 | 408 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        _ => "api_error",
    }
}

// ---------------------------------------------------------------------------------------------
// Requests

pub(crate) fn decode_request(body: &Obj, shared: Option<&Arc<Obj>>) -> Result<Request, WireError> {
    let mut r = Request {
        origin: Some(Format::Messages),
        model: get_str_o(body, "model").unwrap_or_default().to_string(),
        ..Default::default()
    };
    match body.get("system") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            if !s.is_empty() {
                r.system.push(Part::text(s.clone()));
            }
        }
        Some(Value::Array(blocks)) => {
            for (j, b) in blocks.iter().enumerate() {
                r.system
                    .extend(decode_block_part(b, &|| format!("system.{j}"))?);
            }
        }
        Some(_) => return Err(WireError::new("system", "must be a string or an array")),
    }
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| WireError::new("messages", "must be an array"))?;
    for (i, m) in messages.iter().enumerate() {
        let role = match get_str(m, "role") {
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            Some("system") => Role::System,
            _ => {
                return Err(WireError::new(
                    format!("messages.{i}.role"),
                    "must be 'user', 'assistant' or 'system'",
                ))
            }
        };
        decode_turn(role, m.get("content"), i, &mut r)?;
    }
    if let Some(tools) = body.get("tools").and_then(Value::as_array) {
        for (i, t) in tools.iter().enumerate() {
            r.tools.push(decode_tool(t, i, shared)?);
        }
    }
    if let Some(c) = body.get("tool_choice").filter(|c| c.is_object()) {
        r.tool_choice = Some(match get_str(c, "type") {
            Some("auto") => ToolChoice::Auto,
            Some("any") => ToolChoice::Required,
            Some("none") => ToolChoice::None,
            Some("tool") => ToolChoice::Named(
                get_str(c, "name")
                    .ok_or_else(|| WireError::new("tool_choice.name", "Field required"))?
                    .to_string(),
            ),
            _ => return Err(WireError::new("tool_choice.type", "unknown value")),
        });
        if c.get("disable_parallel_tool_use") == Some(&Value::Bool(true)) {
            r.parallel_tool_calls = Some(false);
        }
    }
    r.max_output_tokens = body.get("max_tokens").and_then(Value::as_u64);
    r.temperature = body.get("temperature").and_then(Value::as_f64);
    r.top_p = body.get("top_p").and_then(Value::as_f64);
    r.top_k = body.get("top_k").and_then(Value::as_u64);
    r.stop = body
        .get("stop_sequences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    r.stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    r.user = body
        .get("metadata")
        .and_then(|m| get_str(m, "user_id"))
        .map(str::to_string);
    if let Some(t) = body.get("thinking").filter(|t| t.is_object()) {
        r.reasoning.thinking = match get_str(t, "type") {
            Some("enabled") => Some(Thinking::Budget(get_u64(t, "budget_tokens").unwrap_or(0))),
            Some("adaptive") => Some(Thinking::Adaptive),
            Some("disabled") => Some(Thinking::Off),
            _ => return Err(WireError::new("thinking.type", "unknown value")),
        };
    }
    if let Some(oc) = body.get("output_config").filter(|o| o.is_object()) {
        if let Some(e) = get_str(oc, "effort") {
            r.reasoning.effort = Some(
                Effort::parse(e)
                    .ok_or_else(|| WireError::new("output_config.effort", "unknown value"))?,
            );
        }
        if let Some(f) = oc.get("format").filter(|f| f.is_object()) {
            r.output_format = match get_str(f, "type") {
                Some("json_schema") => Some(OutputFormat::JsonSchema {
                    name: "response".into(),
                    schema: f.get("schema").cloned().unwrap_or_else(|| json!({})),
                    strict: Some(true),
                    description: None,
                }),
                _ => return Err(WireError::new("output_config.format.type", "unknown value")),
            };
        }
    }
    for f in MESSAGES_ONLY {
        if body.get(*f).is_some_and(|v| !v.is_null()) {
            r.unmapped.push((*f).to_string());
        }
    }
    Ok(r)
}

fn get_str_o<'a>(body: &'a Obj, k: &str) -> Option<&'a str> {
    body.get(k).and_then(Value::as_str)
}

/// An Anthropic image or document `source`.
fn decode_source(s: Option<&Value>, field: &dyn Fn() -> String) -> Result<Source, WireError> {
    let s = s.ok_or_else(|| WireError::new(format!("{}.source", field()), "Field required"))?;
    match get_str(s, "type") {
        Some("base64") => Ok(Source::Base64 {
            media_type: get_str(s, "media_type").unwrap_or_default().to_string(),
            data: get_str(s, "data").unwrap_or_default().to_string(),
        }),
        Some("url") => Ok(Source::Url(
            get_str(s, "url").unwrap_or_default().to_string(),
        )),
        Some("file") => Ok(Source::FileId(
            get_str(s, "file_id").unwrap_or_default().to_string(),
        )),
        Some("text") => Ok(Source::Base64 {
            media_type: get_str(s, "media_type").unwrap_or("text/plain").to_string(),
            data: String::new(),
        }),
        _ => Err(WireError::cannot(
            format!("{}.source.type", field()),
            "cannot be translated to another format",
        )),
    }
}

/// A text, image or document block as a part (`None` for an empty text); `field` writes out
/// where the block is, for an error.
fn decode_block_part(b: &Value, field: &dyn Fn() -> String) -> Result<Option<Part>, WireError> {
    let cache_control = b.get("cache_control").cloned();
    match get_str(b, "type") {
        Some("text") => {
            let t = get_str(b, "text").unwrap_or_default();
            Ok((!t.is_empty()).then(|| Part::Text {
                text: t.to_string(),
                cache_control,
            }))
        }
        Some("image") => Ok(Some(Part::Image {
            source: decode_source(b.get("source"), field)?,
            detail: None,
            cache_control,
        })),
        Some("document") => {
            // A plain-text document is its text.
            if let Some(s) = b
                .get("source")
                .filter(|s| get_str(s, "type") == Some("text"))
            {
                return Ok(Some(Part::Text {
                    text: get_str(s, "data").unwrap_or_default().to_string(),
                    cache_control,
                }));
            }
            Ok(Some(Part::File {
                source: decode_source(b.get("source"), field)?,
                filename: get_str(b, "title").map(str::to_string),
                cache_control,
            }))
        }
        other => Err(WireError::cannot(
            field(),
            format!(
                "content block '{}' cannot be translated to another format",
                other.unwrap_or("?")
            ),
        )),
    }
}

fn decode_turn(
    role: Role,
    content: Option<&Value>,
    i: usize,
    r: &mut Request,
) -> Result<(), WireError> {
    let blocks = match content {
        Some(Value::String(s)) => {
            if !s.is_empty() {
                r.items.push(Item::Message {
                    role,
                    content: vec![Part::text(s.clone())],
                });
            }
            return Ok(());
        }
        Some(Value::Array(b)) => b,
        _ => {
            return Err(WireError::new(
                format!("messages.{i}.content"),
                "must be a string or an array of content blocks",
            ))
        }
    };
    let mut parts: Vec<Part> = Vec::new();
    let flush = |parts: &mut Vec<Part>, items: &mut Vec<Item>| {
        if !parts.is_empty() {
            items.push(Item::Message {
                role,
                content: std::mem::take(parts),
            });
        }
    };
    for (j, b) in blocks.iter().enumerate() {
        let field = || format!("messages.{i}.content.{j}");
        match get_str(b, "type") {
            Some("tool_use") if role == Role::Assistant => {
                flush(&mut parts, &mut r.items);
                r.items.push(Item::ToolCall {
                    call_id: get_str(b, "id").unwrap_or_default().to_string(),
                    name: get_str(b, "name").unwrap_or_default().to_string(),
                    namespace: None,
                    arguments: b
                        .get("input")
                        .cloned()
                        .unwrap_or_else(|| json!({}))
                        .to_string(),
                    kind: CallKind::Function,
                });
            }
            Some("tool_result") if role == Role::User => {
                flush(&mut parts, &mut r.items);
                let content = match b.get("content") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::String(s)) => vec![Part::text(s.clone())],
                    Some(Value::Array(inner)) => {
                        let mut out = Vec::new();
                        for (k, c) in inner.iter().enumerate() {
                            let inner = || format!("{}.content.{k}", field());
                            out.extend(decode_block_part(c, &inner)?);
                        }
                        out
                    }
                    Some(_) => {
                        return Err(WireError::new(
                            format!("{}.content", field()),
                            "must be a string or an array",
                        ))
                    }
                };
                r.items.push(Item::ToolResult {
                    call_id: get_str(b, "tool_use_id").unwrap_or_default().to_string(),
                    content,
                    is_error: b.get("is_error") == Some(&Value::Bool(true)),
                    kind: CallKind::Function,
                    cache_control: b.get("cache_control").cloned(),
                });
            }
            Some("thinking") if role == Role::Assistant => {
                flush(&mut parts, &mut r.items);
                r.items.push(Item::Reasoning {
                    text: get_str(b, "thinking").unwrap_or_default().to_string(),
                    sealed: get_str(b, "signature").and_then(seal::from_anthropic),
                    redacted: false,
                });
            }
            Some("redacted_thinking") if role == Role::Assistant => {
                flush(&mut parts, &mut r.items);
                r.items.push(Item::Reasoning {
                    text: String::new(),
                    sealed: get_str(b, "data").map(|d| Sealed {
                        origin: crate::ir::Origin::Anthropic,
                        value: d.to_string(),
                    }),
                    redacted: true,
                });
            }
            // Results of tools Anthropic ran itself: only Anthropic can read them back.
            Some(t)
                if t == "server_tool_use"
                    || t.ends_with("_tool_result")
                    || t == "mcp_tool_use"
                    || t == "container_upload" =>
            {
                r.unmapped.push(format!("{} ({t})", field()));
            }
            _ => parts.extend(decode_block_part(b, &field)?),
        }
    }
    flush(&mut parts, &mut r.items);
    Ok(())
}

fn decode_tool(t: &Value, i: usize, shared: Option<&Arc<Obj>>) -> Result<Tool, WireError> {
    match get_str(t, "type") {
        None | Some("custom") => {
            let name = get_str(t, "name")
                .ok_or_else(|| WireError::new(format!("tools.{i}.name"), "Field required"))?;
            Ok(Tool::Function {
                name: name.to_string(),
                description: get_str(t, "description").map(str::to_string),
                parameters: Schema::decoded(
                    shared,
                    Format::Messages,
                    i,
                    None,
                    t.get("input_schema"),
                ),
                strict: t.get("strict").and_then(Value::as_bool),
                namespace: None,
                cache_control: t.get("cache_control").cloned(),
            })
        }
        Some(_) => Ok(Tool::Hosted {
            format: Format::Messages,
            spec: t.clone(),
        }),
    }
}

/// An IR part as an Anthropic content block (`None` for empty text).
fn encode_part(p: &Part) -> Option<Value> {
    let (mut block, cc) = match p {
        Part::Text {
            text,
            cache_control,
        } => (json!({"type": "text", "text": text}), cache_control),
        Part::Image {
            source,
            cache_control,
            ..
        } => (
            json!({"type": "image", "source": encode_source(source)}),
            cache_control,
        ),
        Part::File {
            source,
            filename,
            cache_control,
        } => {
            let mut b = json!({"type": "document", "source": encode_source(source)});
            if let Some(f) = filename {
                b["title"] = json!(f);
            }
            (b, cache_control)
        }
    };
    if matches!(p, Part::Text { text, .. } if text.is_empty()) {
        return None;
    }
    if let Some(cc) = cc {
        block["cache_control"] = cc.clone();
    }
    Some(block)
}

fn encode_source(s: &Source) -> Value {
    match s {
        Source::Url(u) => json!({"type": "url", "url": u}),
        Source::Base64 { media_type, data } => {
            json!({"type": "base64", "media_type": media_type, "data": data})
        }
        Source::FileId(id) => json!({"type": "file", "file_id": id}),
    }
}

/// Consecutive turns of one role merge (Anthropic alternates user and assistant); system
/// messages stand alone.
fn push_blocks(
    turns: &mut Vec<(&'static str, Vec<Value>)>,
    role: &'static str,
    blocks: Vec<Value>,
) {
    if blocks.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some((r, b)) if *r == role && role != "system" => b.extend(blocks),
        _ => turns.push((role, blocks)),
    }
}

pub(crate) fn encode_request(
    req: &Request,
    target: &Target<'_>,
    names: &ToolNames,
    notes: &mut Notes,
) -> Result<Obj, WireError> {
    if req.n.is_some_and(|n| n > 1) {
        return Err(WireError::cannot(
            "n",
            "an Anthropic upstream gives one answer per request",
        ));
    }
    let mut system: Vec<Value> = Vec::new();
    for p in &req.system {
        system.extend(encode_part(p));
    }
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    let mut leading = true;
    for (i, item) in req.items.iter().enumerate() {
        match item {
            Item::Message { role, content } if role.is_instruction() => {
                let blocks: Vec<Value> = content.iter().filter_map(encode_part).collect();
                if leading {
                    system.extend(blocks);
                } else {
                    push_blocks(&mut turns, "system", blocks);
                }
            }
            Item::Message { role, content } => {
                leading = false;
                let r = if *role == Role::Assistant {
                    "assistant"
                } else {
                    "user"
                };
                let blocks = content.iter().filter_map(encode_part).collect();
                push_blocks(&mut turns, r, blocks);
            }
            Item::ToolCall {
                call_id,
                name,
                namespace,
                arguments,
                kind,
            } => {
                leading = false;
                let input: Value = match kind {
                    CallKind::Custom => json!({ "input": arguments }),
                    CallKind::Function if arguments.trim().is_empty() => json!({}),
                    CallKind::Function => serde_json::from_str(arguments)
                        .ok()
                        .filter(Value::is_object)
                        .ok_or_else(|| {
                            WireError::cannot(
                                format!("input item {i}.arguments"),
                                "tool call arguments are not a JSON object",
                            )
                        })?,
                };
                push_blocks(
                    &mut turns,
                    "assistant",
                    vec![json!({"type": "tool_use", "id": call_id,
                                "name": names.upstream(name, namespace.as_deref()), "input": input})],
                );
            }
            Item::ToolResult {
                call_id,
                content,
                is_error,
                cache_control,
                ..
            } => {
                leading = false;
                let inner: Vec<Value> = content.iter().filter_map(encode_part).collect();
                let mut b = json!({"type": "tool_result", "tool_use_id": call_id,
                                   "content": if inner.is_empty() { json!("") } else { Value::Array(inner) }});
                if *is_error {
                    b["is_error"] = json!(true);
                }
                if let Some(cc) = cache_control {
                    b["cache_control"] = cc.clone();
                }
                push_blocks(&mut turns, "user", vec![b]);
            }
            Item::Reasoning {
                text,
                sealed,
                redacted,
            } => {
                leading = false;
                // Anthropic takes back only the thinking it signed.
                let Some(s) = sealed
                    .as_ref()
                    .filter(|s| s.origin == crate::ir::Origin::Anthropic && !s.value.is_empty())
                else {
                    continue;
                };
                let block = if *redacted {
                    json!({"type": "redacted_thinking", "data": s.value})
                } else {
                    json!({"type": "thinking", "thinking": text, "signature": s.value})
                };
                push_blocks(&mut turns, "assistant", vec![block]);
            }
        }
    }
    // Anthropic wants a turn's tool results before anything else in it.
    for (role, blocks) in &mut turns {
        if *role == "user" {
            blocks.sort_by_key(|b| get_str(b, "type") != Some("tool_result"));
        }
    }

    let mut r = Obj::new();
    r.insert("model".into(), json!(target.model));
    let mut max_tokens = req.max_output_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
    if !system.is_empty() {
        r.insert("system".into(), Value::Array(system));
    }
    let mut tools = Vec::new();
    for (i, t) in req.tools.iter().enumerate() {
        match t {
            Tool::Function {
                name,
                description,
                parameters,
                namespace,
                cache_control,
                ..
            } => {
                let mut tool = json!({
                    "name": names.upstream(name, namespace.as_deref()),
                    "input_schema": parameters,
                });
                if let Some(d) = description {
                    tool["description"] = json!(d);
                }
                if let Some(cc) = cache_control {
                    tool["cache_control"] = cc.clone();
                }
                tools.push(tool);
            }
            Tool::Custom {
                name,
                description,
                format,
            } => tools.push(json!({
                "name": name,
                "description": custom_tool_description(description.as_deref(), format.as_ref()),
                "input_schema": custom_tool_schema(),
            })),
            Tool::Hosted { spec, .. } => notes.push(format!(
                "tools[{i}] ({}): hosted tool left out (this upstream cannot run it)",
                get_str(spec, "type").unwrap_or("?")
            )),
        }
    }
    let has_tools = !tools.is_empty();
    if has_tools {
        r.insert("tools".into(), Value::Array(tools));
    }

    // Thinking, and what Anthropic allows beside it.
    let mut thinking: Option<Value> = None;
    let mut effort: Option<Effort> = None;
    if req.reasoning.on() {
        if !target.caps.reasoning {
            notes.push("reasoning: left out (the model does not take reasoning settings)".into());
        } else if matches!(
            req.tool_choice,
            Some(ToolChoice::Required | ToolChoice::Named(_))
        ) && has_tools
        {
            notes.push(
                "thinking: turned off (Anthropic does not think when a tool call is forced)".into(),
            );
        } else if !last_tool_turn_thinks(&turns) {
            notes.push(
                "thinking: turned off (the conversation's last tool call was not made with Anthropic thinking)"
                    .into(),
            );
        } else {
            let budget = match req.reasoning.thinking {
                Some(Thinking::Budget(b)) if b >= 1024 => b,
                _ => req
                    .reasoning
                    .wanted_effort()
                    .unwrap_or(Effort::Medium)
                    .budget_tokens(),
            };
            if matches!(req.reasoning.thinking, Some(Thinking::Adaptive)) {
                thinking = Some(json!({"type": "adaptive"}));
                effort = req.reasoning.effort;
            } else {
                thinking = Some(json!({"type": "enabled", "budget_tokens": budget}));
                // Anthropic counts thinking within max_tokens.
                if max_tokens <= budget {
                    max_tokens += budget;
                }
            }
        }
    } else if req.reasoning.thinking == Some(Thinking::Off) && target.caps.reasoning {
        thinking = Some(json!({"type": "disabled"}));
    }
    let thinks = thinking
        .as_ref()
        .is_some_and(|t| get_str(t, "type") != Some("disabled"));
    r.insert("max_tokens".into(), json!(max_tokens));
    r.insert(
        "messages".into(),
        turns
            .into_iter()
            .map(|(role, content)| json!({"role": role, "content": content}))
            .collect(),
    );
    if let Some(t) = thinking {
        r.insert("thinking".into(), t);
    }
    if let Some(t) = req.temperature {
        if thinks {
            notes.push("temperature: left out (Anthropic thinking allows none)".into());
        } else {
            // OpenAI's range is 0..2, Anthropic's 0..1.
            r.insert("temperature".into(), json!(t.clamp(0.0, 1.0)));
        }
    }
    if let Some(p) = req.top_p {
        if thinks {
            notes.push("top_p: left out (Anthropic thinking allows none)".into());
        } else {
            r.insert("top_p".into(), json!(p));
        }
    }
    if let Some(k) = req.top_k {
        if !thinks {
            r.insert("top_k".into(), json!(k));
        }
    }
    if !req.stop.is_empty() {
        r.insert("stop_sequences".into(), json!(req.stop));
    }
    if req.stream {
        r.insert("stream".into(), json!(true));
    }
    if let Some(u) = &req.user {
        r.insert("metadata".into(), json!({ "user_id": u }));
    }
    if has_tools {
        let mut choice = match &req.tool_choice {
            Some(ToolChoice::Auto) => Some(json!({"type": "auto"})),
            Some(ToolChoice::Required) => Some(json!({"type": "any"})),
            Some(ToolChoice::None) => Some(json!({"type": "none"})),
            Some(ToolChoice::Named(n)) => {
                Some(json!({"type": "tool", "name": names.upstream(n, None)}))
            }
            None => None,
        };
        if req.parallel_tool_calls == Some(false) {
            let c = choice.get_or_insert_with(|| json!({"type": "auto"}));
            if c["type"] != "none" {
                c["disable_parallel_tool_use"] = json!(true);
            }
        }
        if let Some(c) = choice {
            r.insert("tool_choice".into(), c);
        }
    }
    let mut output_config = Obj::new();
    if let Some(e) = effort {
        output_config.insert("effort".into(), json!(e.anthropic()));
    }
    if let Some(f) = &req.output_format {
        if !target.caps.structured_output {
            return Err(WireError::cannot(
                crate::chat::output_format_field(req),
                "this model cannot be held to a JSON format (structured_output: false)",
            ));
        }
        let schema = match f {
            OutputFormat::JsonObject => json!({"type": "object"}),
            OutputFormat::JsonSchema { schema, .. } => schema.clone(),
        };
        output_config.insert(
            "format".into(),
            json!({"type": "json_schema", "schema": schema}),
        );
    }
    if !output_config.is_empty() {
        r.insert("output_config".into(), Value::Object(output_config));
    }
    Ok(r)
}

/// With thinking on, Anthropic requires the last assistant turn, when it calls tools, to
/// begin with its (signed) thinking.
fn last_tool_turn_thinks(turns: &[(&'static str, Vec<Value>)]) -> bool {
    let Some((_, blocks)) = turns.iter().rev().find(|(r, _)| *r == "assistant") else {
        return true;
    };
    let calls = blocks
        .iter()
        .any(|b| get_str(b, "type") == Some("tool_use"));
    !calls
        || blocks
            .first()
            .is_some_and(|b| matches!(get_str(b, "type"), Some("thinking" | "redacted_thinking")))
}

/// A request forwarded to Anthropic as sent, less the thinking blocks no Anthropic model
/// signed (issued by another provider, or unsigned) — Anthropic refuses those. If that leaves
/// the last tool call without its thinking, thinking is turned off for the request.
pub(crate) fn prepare_native(body: &mut Obj) -> Notes {
    let mut notes = Notes::new();
    let mut removed = 0;
    if let Some(Value::Array(messages)) = body.get_mut("messages") {
        for m in messages.iter_mut() {
            if get_str(m, "role") != Some("assistant") {
                continue;
            }
            if let Some(Value::Array(blocks)) = m.get_mut("content") {
                let before = blocks.len();
                blocks.retain(|b| {
                    get_str(b, "type") != Some("thinking")
                        || get_str(b, "signature")
                            .and_then(seal::from_anthropic)
                            .is_some_and(|s| s.origin == crate::ir::Origin::Anthropic)
                });
                removed += before - blocks.len();
            }
        }
    }
    if removed > 0 {
        notes.push(format!(
            "{removed} thinking block(s) another provider produced left out"
        ));
        let thinks = body
            .get("thinking")
            .and_then(|t| get_str(t, "type"))
            .is_some_and(|t| t != "disabled");
        if thinks {
            let last_ok = body
                .get("messages")
                .and_then(Value::as_array)
                .and_then(|ms| {
                    ms.iter()
                        .rev()
                        .find(|m| get_str(m, "role") == Some("assistant"))
                })
                .and_then(|m| m.get("content").and_then(Value::as_array))
                .is_none_or(|blocks| {
                    !blocks
                        .iter()
                        .any(|b| get_str(b, "type") == Some("tool_use"))
                        || blocks.first().is_some_and(|b| {
                            matches!(get_str(b, "type"), Some("thinking" | "redacted_thinking"))
                        })
                });
            if !last_ok {
                body.insert("thinking".into(), json!({"type": "disabled"}));
                notes.push(
                    "thinking: turned off (the conversation's last tool call was not made with Anthropic thinking)"
                        .into(),
                );
            }
        }
    }
    notes
}

// ---------------------------------------------------------------------------------------------
// Answers

pub(crate) fn decode_usage(u: &Value) -> Option<Usage> {
    if !u.is_object() {
        return None;
    }
    Some(Usage {
        input: get_u64(u, "input_tokens").unwrap_or(0),
        cache_read: get_u64(u, "cache_read_input_tokens").unwrap_or(0),
        cache_write: get_u64(u, "cache_creation_input_tokens").unwrap_or(0),
        output: get_u64(u, "output_tokens").unwrap_or(0),
        reasoning: 0,
    })
}

fn encode_usage(u: &Usage) -> Value {
    json!({
        "input_tokens": u.input,
        "cache_creation_input_tokens": u.cache_write,
        "cache_read_input_tokens": u.cache_read,
        "output_tokens": u.output,
    })
}

fn decode_stop(reason: &str, sequence: Option<&str>) -> Stop {
    match reason {
        "max_tokens" | "model_context_window_exceeded" => Stop::MaxTokens,
        "tool_use" => Stop::ToolUse,
        "stop_sequence" => Stop::StopSequence(sequence.map(str::to_string)),
        "refusal" => Stop::ContentFilter,
        // end_turn, pause_turn and anything newer
        _ => Stop::End,
    }
}

fn encode_stop(stop: &Stop, has_calls: bool) -> (&'static str, Option<String>) {
    match stop {
        Stop::MaxTokens => ("max_tokens", None),
        Stop::ToolUse => ("tool_use", None),
        Stop::ContentFilter => ("refusal", None),
        Stop::StopSequence(s) => ("stop_sequence", s.clone()),
        Stop::End if has_calls => ("tool_use", None),
        Stop::End => ("end_turn", None),
    }
}

pub(crate) fn decode_response(v: &Value) -> Result<Response, WireError> {
    let mut r = Request::default();
    decode_turn(Role::Assistant, v.get("content"), 0, &mut r)?;
    Ok(Response {
        id: get_str(v, "id").map(str::to_string),
        model: get_str(v, "model").map(str::to_string),
        output: r.items,
        stop: decode_stop(
            get_str(v, "stop_reason").unwrap_or("end_turn"),
            get_str(v, "stop_sequence"),
        ),
        usage: v.get("usage").and_then(decode_usage),
    })
}

/// A tool call's arguments as Anthropic's `input` object (a custom call's raw text, or
/// arguments that are not an object, as `{"input": …}`).
fn call_input(names: &ToolNames, name: &str, arguments: &str, kind: CallKind) -> Value {
    let custom = kind == CallKind::Custom || names.client(name).kind == CallKind::Custom;
    if kind == CallKind::Custom {
        return json!({ "input": arguments });
    }
    if custom {
        return json!({ "input": custom_input(arguments) });
    }
    serde_json::from_str::<Value>(arguments)
        .ok()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}))
}

pub(crate) fn encode_response(r: &Response, echo: &Echo) -> Value {
    let mut content = Vec::new();
    let mut calls = false;
    for item in &r.output {
        match item {
            Item::Message { content: parts, .. } => {
                for p in parts {
                    if let Some(t) = p.as_text().filter(|t| !t.is_empty()) {
                        content.push(json!({"type": "text", "text": t}));
                    }
                }
            }
            Item::Reasoning {
                text,
                sealed,
                redacted,
            } => {
                if *redacted {
                    if let Some(s) = sealed {
                        content.push(json!({"type": "redacted_thinking", "data": s.value}));
                    }
                } else {
                    content.push(json!({"type": "thinking", "thinking": text,
                                        "signature": seal::to_anthropic(sealed.as_ref())}));
                }
            }
            Item::ToolCall {
                call_id,
                name,
                arguments,
                kind,
                ..
            } => {
                calls = true;
                content.push(json!({
                    "type": "tool_use",
                    "id": call_id,
                    "name": echo.names.client(name).name,
                    "input": call_input(&echo.names, name, arguments, *kind),
                }));
            }
            Item::ToolResult { .. } => {}
        }
    }
    let (stop_reason, stop_sequence) = encode_stop(&r.stop, calls);
    json!({
        "id": r.id.clone().unwrap_or_else(|| "msg".into()),
        "type": "message",
        "role": "assistant",
        "model": r.model.clone().unwrap_or_default(),
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": encode_usage(&r.usage.unwrap_or_default()),
    })
}

// ---------------------------------------------------------------------------------------------
// Streams

/// Anthropic's events → [`Event`]s.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    usage: Usage,
}

impl StreamDecoder {
    pub fn event(&mut self, data: &[u8], out: &mut Vec<Event>) {
        let Ok(v) = serde_json::from_slice::<Value>(data) else {
            return;
        };
        match get_str(&v, "type") {
            Some("message_start") => {
                let m = v.get("message").cloned().unwrap_or(Value::Null);
                out.push(Event::Start {
                    id: get_str(&m, "id").map(str::to_string),
                    model: get_str(&m, "model").map(str::to_string),
                });
                if let Some(u) = m.get("usage").and_then(decode_usage) {
                    self.usage = u;
                    out.push(Event::Usage(u));
                }
            }
            Some("content_block_start") => {
                let index = get_u64(&v, "index").unwrap_or(0);
                let b = v.get("content_block").cloned().unwrap_or(Value::Null);
                match get_str(&b, "type") {
                    Some("text") => {
                        if let Some(t) = get_str(&b, "text").filter(|t| !t.is_empty()) {
                            out.push(Event::Text(t.to_string()));
                        }
                    }
                    Some("tool_use") => {
                        out.push(Event::ToolCall {
                            index,
                            call_id: get_str(&b, "id").unwrap_or_default().to_string(),
                            name: get_str(&b, "name").unwrap_or_default().to_string(),
                            namespace: None,
                            kind: CallKind::Function,
                        });
                        // A whole input in the start block (some servers send it there).
                        if let Some(input) = b
                            .get("input")
                            .filter(|i| i.as_object().is_some_and(|o| !o.is_empty()))
                        {
                            out.push(Event::ToolArgs {
                                index,
                                delta: input.to_string(),
                            });
                        }
                    }
                    Some("thinking") => {
                        if let Some(t) = get_str(&b, "thinking").filter(|t| !t.is_empty()) {
                            out.push(Event::Reasoning(t.to_string()));
                        }
                    }
                    Some("redacted_thinking") => {
                        if let Some(d) = get_str(&b, "data") {
                            out.push(Event::RedactedReasoning(Sealed {
                                origin: crate::ir::Origin::Anthropic,
                                value: d.to_string(),
                            }));
                        }
                    }
                    _ => {}
                }
            }
            Some("content_block_delta") => {
                let index = get_u64(&v, "index").unwrap_or(0);
                let d = v.get("delta").cloned().unwrap_or(Value::Null);
                match get_str(&d, "type") {
                    Some("text_delta") => {
                        if let Some(t) = get_str(&d, "text").filter(|t| !t.is_empty()) {
                            out.push(Event::Text(t.to_string()));
                        }
                    }
                    Some("input_json_delta") => {
                        if let Some(p) = get_str(&d, "partial_json").filter(|p| !p.is_empty()) {
                            out.push(Event::ToolArgs {
                                index,
                                delta: p.to_string(),
                            });
                        }
                    }
                    Some("thinking_delta") => {
                        if let Some(t) = get_str(&d, "thinking").filter(|t| !t.is_empty()) {
                            out.push(Event::Reasoning(t.to_string()));
                        }
                    }
                    Some("signature_delta") => {
                        if let Some(s) = get_str(&d, "signature").and_then(seal::from_anthropic) {
                            out.push(Event::ReasoningSealed(s));
                        }
                    }
                    _ => {}
                }
            }
            Some("content_block_stop") => out.push(Event::EndBlock),
            Some("message_delta") => {
                let d = v.get("delta").cloned().unwrap_or(Value::Null);
                if let Some(r) = get_str(&d, "stop_reason") {
                    out.push(Event::Stop(decode_stop(r, get_str(&d, "stop_sequence"))));
                }
                if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
                    if let Some(o) = get_u64(u, "output_tokens") {
                        self.usage.output = o;
                    }
                    if let Some(i) = get_u64(u, "input_tokens") {
                        self.usage.input = i;
                    }
                    if let Some(c) = get_u64(u, "cache_read_input_tokens") {
                        self.usage.cache_read = c;
                    }
                    if let Some(c) = get_u64(u, "cache_creation_input_tokens") {
                        self.usage.cache_write = c;
                    }
                    out.push(Event::Usage(self.usage));
                }
            }
            Some("message_stop") => out.push(Event::Done),
            Some("error") => {
                let e = v.get("error").cloned().unwrap_or(Value::Null);
                out.push(Event::Error {
                    message: get_str(&e, "message")
                        .unwrap_or("the upstream reported an error")
                        .to_string(),
                    kind: get_str(&e, "type").unwrap_or("api_error").to_string(),
                });
            }
            // ping and anything newer
            _ => {}
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text(usize),
    Thinking(usize),
    /// A tool call (event index) open as block `usize`.
    Tool(u64, usize),
}

impl Open {
    fn block(self) -> usize {
        match self {
            Self::Text(i) | Self::Thinking(i) | Self::Tool(_, i) => i,
        }
    }
}

/// [`Event`]s → Anthropic's events.
#[derive(Debug)]
pub struct StreamEncoder {
    echo: Echo,
    started: bool,
    ended: bool,
    next_block: usize,
    open: Option<Open>,
    /// A custom call's raw input, held until the call closes (then sent as `{"input": …}`).
    custom: Option<String>,
    /// The open thinking block got its signature.
    thinking_signed: bool,
    stop: Stop,
    calls: bool,
    usage: Option<Usage>,
    id: String,
    model: String,
}

impl StreamEncoder {
    pub fn new(echo: Echo) -> Self {
        Self {
            echo,
            started: false,
            ended: false,
            next_block: 0,
            open: None,
            custom: None,
            thinking_signed: false,
            stop: Stop::End,
            calls: false,
            usage: None,
            id: "msg".into(),
            model: String::new(),
        }
    }

    pub fn ended(&self) -> bool {
        self.ended
    }

    fn emit(out: &mut Vec<u8>, v: &Value) {
        let name = get_str(v, "type").unwrap_or("message");
        sse(out, Some(name), v);
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        // Before the upstream reports usage, the prompt's estimate (corrected in
        // message_delta).
        let input = self.usage.map_or(self.echo.input_estimate, |u| u.input);
        let u = self.usage.unwrap_or_default();
        Self::emit(
            out,
            &json!({"type": "message_start", "message": {
                "id": self.id, "type": "message", "role": "assistant", "content": [],
                "model": self.model, "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": input, "cache_creation_input_tokens": u.cache_write,
                          "cache_read_input_tokens": u.cache_read, "output_tokens": 1}}}),
        );
    }

    fn open_block(&mut self, out: &mut Vec<u8>, block: Value) -> usize {
        self.close(out);
        let i = self.next_block;
        self.next_block += 1;
        Self::emit(
            out,
            &json!({"type": "content_block_start", "index": i, "content_block": block}),
        );
        i
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        self.seal_thinking(out);
        if let Some(o) = self.open.take() {
            if let Some(input) = self.custom.take() {
                Self::emit(
                    out,
                    &json!({"type": "content_block_delta", "index": o.block(),
                            "delta": {"type": "input_json_delta",
                                      "partial_json": custom_args(&input)}}),
                );
            }
            Self::emit(
                out,
                &json!({"type": "content_block_stop", "index": o.block()}),
            );
        }
    }

    fn thinking_block(&mut self, out: &mut Vec<u8>) -> usize {
        match self.open {
            Some(Open::Thinking(i)) => i,
            _ => {
                let i = self.open_block(
                    out,
                    json!({"type": "thinking", "thinking": "", "signature": ""}),
                );
                self.open = Some(Open::Thinking(i));
                self.thinking_signed = false;
                i
            }
        }
    }

    pub fn event(&mut self, ev: &Event, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        match ev {
            Event::Start { id, model } => {
                if let Some(id) = id {
                    self.id.clone_from(id);
                }
                if let Some(m) = model {
                    self.model.clone_from(m);
                }
            }
            Event::Usage(u) => {
                self.usage = Some(*u);
                return;
            }
            Event::Stop(s) => {
                self.stop = s.clone();
                return;
            }
            _ => {}
        }
        if matches!(ev, Event::Error { .. }) && !self.started {
            // An error before anything else is the whole answer.
        } else {
            self.start(out);
        }
        match ev {
            Event::Start { .. } | Event::Usage(_) | Event::Stop(_) => {}
            Event::Text(t) => {
                let i = match self.open {
                    Some(Open::Text(i)) => i,
                    _ => {
                        let i = self.open_block(out, json!({"type": "text", "text": ""}));
                        self.open = Some(Open::Text(i));
                        i
                    }
                };
                Self::emit(
                    out,
                    &json!({"type": "content_block_delta", "index": i,
                            "delta": {"type": "text_delta", "text": t}}),
                );
            }
            Event::Reasoning(t) => {
                let i = self.thinking_block(out);
                Self::emit(
                    out,
                    &json!({"type": "content_block_delta", "index": i,
                            "delta": {"type": "thinking_delta", "thinking": t}}),
                );
            }
            Event::ReasoningSealed(s) => {
                let i = self.thinking_block(out);
                self.thinking_signed = true;
                Self::emit(
                    out,
                    &json!({"type": "content_block_delta", "index": i,
                            "delta": {"type": "signature_delta", "signature": seal::to_anthropic(Some(s))}}),
                );
            }
            Event::RedactedReasoning(s) => {
                self.open_block(out, json!({"type": "redacted_thinking", "data": s.value}));
                self.open = Some(Open::Text(self.next_block - 1));
                self.close(out);
            }
            Event::ToolCall {
                index,
                call_id,
                name,
                kind,
                ..
            } => {
                self.calls = true;
                let client = self.echo.names.client(name);
                let i = self.open_block(
                    out,
                    json!({"type": "tool_use", "id": call_id, "name": client.name, "input": {}}),
                );
                self.open = Some(Open::Tool(*index, i));
                if *kind == CallKind::Custom {
                    self.custom = Some(String::new());
                }
            }
            Event::ToolArgs { index, delta } => {
                if let Some(Open::Tool(n, i)) = self.open {
                    if n == *index {
                        match &mut self.custom {
                            Some(buf) => buf.push_str(delta),
                            None => Self::emit(
                                out,
                                &json!({"type": "content_block_delta", "index": i,
                                        "delta": {"type": "input_json_delta", "partial_json": delta}}),
                            ),
                        }
                    }
                }
            }
            Event::EndBlock => self.close(out),
            Event::Error { message, kind } => {
                Self::emit(
                    out,
                    &json!({"type": "error", "error": {"type": anthropic_kind(kind), "message": message}}),
                );
                self.ended = true;
            }
            Event::Done => {
                self.close(out);
                let u = self.usage.unwrap_or(Usage {
                    input: self.echo.input_estimate,
                    ..Default::default()
                });
                let (reason, seq) = encode_stop(&self.stop, self.calls);
                Self::emit(
                    out,
                    &json!({"type": "message_delta",
                            "delta": {"stop_reason": reason, "stop_sequence": seq},
                            "usage": encode_usage(&u)}),
                );
                Self::emit(out, &json!({"type": "message_stop"}));
                self.ended = true;
            }
        }
    }

    /// A thinking block that got no signature gets [`seal::UNSIGNED`] as it closes, so that
    /// it is a valid block for the client (and never goes back to Anthropic).
    fn seal_thinking(&mut self, out: &mut Vec<u8>) {
        if let Some(Open::Thinking(i)) = self.open {
            if !self.thinking_signed {
                self.thinking_signed = true;
                Self::emit(
                    out,
                    &json!({"type": "content_block_delta", "index": i,
                            "delta": {"type": "signature_delta", "signature": seal::UNSIGNED}}),
                );
            }
        }
    }
}

/// An error kind (ours or an OpenAI type) as Anthropic's `error.type`.
fn anthropic_kind(kind: &str) -> &str {
    match kind {
        "invalid_request_error"
        | "authentication_error"
        | "permission_error"
        | "not_found_error"
        | "request_too_large"
        | "rate_limit_error"
        | "overloaded_error"
        | "timeout_error" => kind,
        "upstream_timeout" => "timeout_error",
        _ => "api_error",
    }
}
