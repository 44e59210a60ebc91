//! The OpenAI Responses API: requests, `response` objects and the event stream.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::chat::{custom_input, decode_response_format, join_text, source_of_url, url_of_source};
use crate::ir::{
    CallKind, Effort, Event, Item, Obj, OutputFormat, Part, Request, Response, Role, Schema,
    Sealed, Source, Stop, Thinking, Tool, ToolChoice, Usage,
};
use crate::seal;
use crate::util::{get_str, get_u64, sse, text_of, unix_now};
use crate::{Echo, Format, Notes, Target, WireError};

/// Responses fields with no counterpart in the other formats (left out, with a note, when the
/// request crosses).
const RESPONSES_ONLY: &[&str] = &[
    "truncation",
    "service_tier",
    "max_tool_calls",
    "include",
    "text.verbosity",
];

/// Responses features no other format can serve: a request using them can only go to a
/// Responses upstream.
const RESPONSES_REQUIRED: &[(&str, &str)] = &[
    (
        "background",
        "background responses are served only by Responses upstreams",
    ),
    (
        "conversation",
        "conversations are served only by Responses upstreams",
    ),
    (
        "prompt",
        "prompt templates are served only by Responses upstreams",
    ),
    (
        "top_logprobs",
        "log probabilities are returned only by Responses upstreams",
    ),
];

// ---------------------------------------------------------------------------------------------
// Requests

pub(crate) fn decode_request(body: &Obj, shared: Option<&Arc<Obj>>) -> Result<Request, WireError> {
    let mut r = Request {
        origin: Some(Format::Responses),
        model: body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        ..Default::default()
    };
    match body.get("instructions") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            if !s.is_empty() {
                r.system.push(Part::text(s.clone()));
            }
        }
        Some(Value::Array(items)) => {
            for (i, it) in items.iter().enumerate() {
                r.system
                    .extend(decode_content(it.get("content"), At::Instructions(i))?);
            }
        }
        Some(_) => {
            return Err(WireError::new(
                "instructions",
                "must be a string or an array",
            ))
        }
    }
    match body.get("input") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => r.items.push(Item::Message {
            role: Role::User,
            content: vec![Part::text(s.clone())],
        }),
        Some(Value::Array(items)) => {
            for (i, it) in items.iter().enumerate() {
                decode_item(it, i, &mut r)?;
            }
        }
        Some(_) => return Err(WireError::new("input", "must be a string or an array")),
    }
    if let Some(tools) = body.get("tools").and_then(Value::as_array) {
        for (i, t) in tools.iter().enumerate() {
            let at = Place {
                shared,
                tool: i,
                inner: None,
            };
            decode_tool(t, &at, None, &mut r.tools)?;
        }
    }
    r.tool_choice = match body.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            other => {
                return Err(WireError::new(
                    "tool_choice",
                    format!("unknown value '{other}'"),
                ))
            }
        }),
        Some(v) => match get_str(v, "type") {
            Some("function" | "custom") => Some(ToolChoice::Named(
                get_str(v, "name")
                    .ok_or_else(|| WireError::new("tool_choice.name", "is required"))?
                    .to_string(),
            )),
            Some("allowed_tools") if get_str(v, "mode") == Some("required") => {
                Some(ToolChoice::Required)
            }
            Some(_) => Some(ToolChoice::Auto),
            None => return Err(WireError::new("tool_choice.type", "is required")),
        },
    };
    r.parallel_tool_calls = body.get("parallel_tool_calls").and_then(Value::as_bool);
    r.max_output_tokens = body.get("max_output_tokens").and_then(Value::as_u64);
    r.temperature = body.get("temperature").and_then(Value::as_f64);
    r.top_p = body.get("top_p").and_then(Value::as_f64);
    r.stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    if let Some(reasoning) = body.get("reasoning").filter(|v| v.is_object()) {
        match get_str(reasoning, "effort") {
            Some("none") => r.reasoning.thinking = Some(Thinking::Off),
            Some(e) => {
                r.reasoning.effort = Some(
                    Effort::parse(e)
                        .ok_or_else(|| WireError::new("reasoning.effort", "unknown value"))?,
                )
            }
            None => {}
        }
        r.reasoning.summary = get_str(reasoning, "summary").map(str::to_string);
    }
    if let Some(text) = body.get("text").filter(|v| v.is_object()) {
        r.output_format = decode_response_format(text.get("format"), "text.format")?;
        if text.get("verbosity").is_some_and(|v| !v.is_null()) {
            r.unmapped.push("text.verbosity".into());
        }
    }
    r.metadata = body.get("metadata").and_then(Value::as_object).cloned();
    r.user = body
        .get("safety_identifier")
        .or_else(|| body.get("user"))
        .and_then(Value::as_str)
        .map(str::to_string);
    r.prompt_cache_key = body
        .get("prompt_cache_key")
        .and_then(Value::as_str)
        .map(str::to_string);
    for f in RESPONSES_ONLY {
        if !f.contains('.') && body.get(*f).is_some_and(|v| !v.is_null()) {
            r.unmapped.push((*f).to_string());
        }
    }
    for (f, why) in RESPONSES_REQUIRED {
        if body
            .get(*f)
            .is_some_and(|v| !v.is_null() && v != &Value::Bool(false))
        {
            return Err(WireError::cannot(*f, *why));
        }
    }
    Ok(r)
}

/// Where content is in the request, for error messages: written out only when one is made (a
/// request's items and parts are many, its errors at most one).
#[derive(Debug, Clone, Copy)]
enum At {
    Instructions(usize),
    Input(usize),
    Output,
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            At::Instructions(i) => write!(f, "instructions[{i}]"),
            At::Input(i) => write!(f, "input[{i}]"),
            At::Output => f.write_str("output"),
        }
    }
}

fn decode_content(content: Option<&Value>, at: At) -> Result<Vec<Part>, WireError> {
    match content {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) if s.is_empty() => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![Part::text(s.clone())]),
        Some(Value::Array(parts)) => {
            let mut out = Vec::new();
            for (j, p) in parts.iter().enumerate() {
                let field = || format!("{at}.content[{j}]");
                match get_str(p, "type") {
                    Some("input_text" | "output_text" | "text" | "summary_text") => {
                        let t = get_str(p, "text").unwrap_or_default();
                        if !t.is_empty() {
                            out.push(Part::text(t));
                        }
                    }
                    Some("refusal") => {
                        if let Some(t) = get_str(p, "refusal") {
                            out.push(Part::text(t));
                        }
                    }
                    Some("input_image") => {
                        let source = if let Some(u) = p
                            .get("image_url")
                            .and_then(|u| u.as_str().or_else(|| get_str(u, "url")))
                        {
                            source_of_url(u, &field())?
                        } else if let Some(id) = get_str(p, "file_id") {
                            Source::FileId(id.to_string())
                        } else {
                            return Err(WireError::new(
                                field(),
                                "input_image needs image_url or file_id",
                            ));
                        };
                        out.push(Part::Image {
                            source,
                            detail: get_str(p, "detail").map(str::to_string),
                            cache_control: None,
                        });
                    }
                    Some("input_file") => {
                        let source = if let Some(d) = get_str(p, "file_data") {
                            if d.starts_with("data:") {
                                source_of_url(d, &field())?
                            } else {
                                Source::Base64 {
                                    media_type: "application/pdf".into(),
                                    data: d.to_string(),
                                }
                            }
                        } else if let Some(u) = get_str(p, "file_url") {
                            Source::Url(u.to_string())
                        } else if let Some(id) = get_str(p, "file_id") {
                            Source::FileId(id.to_string())
                        } else {
                            return Err(WireError::new(
                                field(),
                                "input_file needs file_data, file_url or file_id",
                            ));
                        };
                        out.push(Part::File {
                            source,
                            filename: get_str(p, "filename").map(str::to_string),
                            cache_control: None,
                        });
                    }
                    other => {
                        return Err(WireError::cannot(
                            field(),
                            format!(
                                "content part '{}' cannot be translated to another format",
                                other.unwrap_or("?")
                            ),
                        ))
                    }
                }
            }
            Ok(out)
        }
        Some(_) => Err(WireError::new(
            format!("{at}.content"),
            "must be a string or an array",
        )),
    }
}

fn decode_item(it: &Value, i: usize, r: &mut Request) -> Result<(), WireError> {
    let at = At::Input(i);
    if !it.is_object() {
        return Err(WireError::new(at.to_string(), "must be an object"));
    }
    let ty = get_str(it, "type").unwrap_or(if it.get("role").is_some() {
        "message"
    } else {
        ""
    });
    let need = |k: &str| -> Result<String, WireError> {
        get_str(it, k)
            .map(str::to_string)
            .ok_or_else(|| WireError::new(format!("{at}.{k}"), "is required"))
    };
    match ty {
        "message" => {
            let role = match get_str(it, "role") {
                Some("user") => Role::User,
                Some("assistant") => Role::Assistant,
                Some("system") => Role::System,
                Some("developer") => Role::Developer,
                _ => {
                    return Err(WireError::new(
                        format!("{at}.role"),
                        "must be 'user', 'assistant', 'system' or 'developer'",
                    ))
                }
            };
            let content = decode_content(it.get("content"), at)?;
            r.items.push(Item::Message { role, content });
        }
        "function_call" => r.items.push(Item::ToolCall {
            call_id: need("call_id")?,
            name: need("name")?,
            namespace: get_str(it, "namespace").map(str::to_string),
            arguments: it.get("arguments").map(text_of).unwrap_or_default(),
            kind: CallKind::Function,
        }),
        "custom_tool_call" => r.items.push(Item::ToolCall {
            call_id: need("call_id")?,
            name: need("name")?,
            namespace: None,
            arguments: it.get("input").map(text_of).unwrap_or_default(),
            kind: CallKind::Custom,
        }),
        "function_call_output" | "custom_tool_call_output" => {
            let call_id = need("call_id")?;
            let (content, is_error) = match it.get("output") {
                None => return Err(WireError::new(format!("{at}.output"), "is required")),
                Some(Value::String(s)) => (vec![Part::text(s.clone())], false),
                Some(v @ Value::Array(_)) => (decode_content(Some(v), at)?, false),
                Some(v) => (
                    vec![Part::text(
                        v.get("content").map_or_else(|| v.to_string(), text_of),
                    )],
                    v.get("success") == Some(&Value::Bool(false)),
                ),
            };
            r.items.push(Item::ToolResult {
                call_id,
                content,
                is_error,
                kind: if ty == "custom_tool_call_output" {
                    CallKind::Custom
                } else {
                    CallKind::Function
                },
                cache_control: None,
            });
        }
        "reasoning" => {
            let mut text: Vec<&str> = it
                .get("summary")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|s| get_str(s, "text"))
                .collect();
            if text.is_empty() {
                text = it
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|s| get_str(s, "text"))
                    .collect();
            }
            let (sealed, redacted) = match get_str(it, "encrypted_content") {
                Some(t) if !t.is_empty() => {
                    let (s, redacted) = seal::from_openai(t);
                    (Some(s), redacted)
                }
                _ => (None, false),
            };
            r.items.push(Item::Reasoning {
                text: text.join("\n\n"),
                sealed,
                redacted,
            });
        }
        "item_reference" => {
            return Err(WireError::cannot(
                at.to_string(),
                "item references are resolved only by Responses upstreams",
            ))
        }
        // Calls to and results of tools the provider ran itself, compaction summaries: only a
        // Responses upstream can read them back.
        other if !other.is_empty() => r.unmapped.push(format!("{at} ({other})")),
        _ => return Err(WireError::new(format!("{at}.type"), "is required")),
    }
    Ok(())
}

/// Where a tool is in the request: `tools[tool]`, or `tools[tool].tools[inner]` inside a
/// namespace; `shared`: the body its schema is read from, when it is not copied.
struct Place<'a> {
    shared: Option<&'a Arc<Obj>>,
    tool: usize,
    inner: Option<usize>,
}

impl Place<'_> {
    /// The tool's path, for errors.
    fn field(&self) -> String {
        match self.inner {
            Some(j) => format!("tools[{}].tools[{j}]", self.tool),
            None => format!("tools[{}]", self.tool),
        }
    }
}

fn decode_tool(
    t: &Value,
    at: &Place<'_>,
    namespace: Option<&str>,
    out: &mut Vec<Tool>,
) -> Result<(), WireError> {
    let name = || {
        get_str(t, "name")
            .map(str::to_string)
            .ok_or_else(|| WireError::new(format!("{}.name", at.field()), "is required"))
    };
    match get_str(t, "type") {
        Some("function") => out.push(Tool::Function {
            name: name()?,
            description: get_str(t, "description").map(str::to_string),
            parameters: Schema::decoded(
                at.shared,
                Format::Responses,
                at.tool,
                at.inner,
                t.get("parameters").filter(|p| !p.is_null()),
            ),
            strict: t.get("strict").and_then(Value::as_bool),
            namespace: namespace.map(str::to_string),
            cache_control: None,
        }),
        Some("custom") => out.push(Tool::Custom {
            name: name()?,
            description: get_str(t, "description").map(str::to_string),
            format: t.get("format").cloned(),
        }),
        Some("namespace") if namespace.is_none() => {
            let ns = name()?;
            for (j, inner) in t
                .get("tools")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let inner_at = Place {
                    shared: at.shared,
                    tool: at.tool,
                    inner: Some(j),
                };
                decode_tool(inner, &inner_at, Some(&ns), out)?;
            }
        }
        Some(_) => out.push(Tool::Hosted {
            format: Format::Responses,
            spec: t.clone(),
        }),
        None => {
            return Err(WireError::new(
                format!("{}.type", at.field()),
                "is required",
            ))
        }
    }
    Ok(())
}

fn encode_parts(parts: &[Part], assistant: bool) -> Vec<Value> {
    parts
        .iter()
        .map(|p| match p {
            Part::Text { text, .. } if assistant => {
                json!({"type": "output_text", "text": text, "annotations": []})
            }
            Part::Text { text, .. } => json!({"type": "input_text", "text": text}),
            Part::Image { source, detail, .. } => {
                let mut v = match source {
                    Source::FileId(id) => json!({"type": "input_image", "file_id": id}),
                    other => json!({"type": "input_image", "image_url": url_of_source(other)}),
                };
                v["detail"] = json!(detail.as_deref().unwrap_or("auto"));
                v
            }
            Part::File {
                source, filename, ..
            } => {
                let mut v = match source {
                    Source::FileId(id) => json!({"type": "input_file", "file_id": id}),
                    Source::Url(u) => json!({"type": "input_file", "file_url": u}),
                    b @ Source::Base64 { .. } => {
                        json!({"type": "input_file", "file_data": url_of_source(b)})
                    }
                };
                if let Some(f) = filename {
                    v["filename"] = json!(f);
                }
                v
            }
        })
        .collect()
}

pub(crate) fn encode_request(
    req: &Request,
    target: &Target<'_>,
    notes: &mut Notes,
) -> Result<Obj, WireError> {
    if req.n.is_some_and(|n| n > 1) {
        return Err(WireError::cannot(
            "n",
            "a Responses upstream gives one answer per request",
        ));
    }
    if !req.stop.is_empty() {
        return Err(WireError::cannot(
            "stop",
            "a Responses upstream has no stop sequences",
        ));
    }
    let mut input = Vec::new();
    for item in &req.items {
        match item {
            Item::Message { role, content } => input.push(json!({
                "type": "message",
                "role": role.as_str(),
                "content": encode_parts(content, *role == Role::Assistant),
            })),
            Item::ToolCall {
                call_id,
                name,
                arguments,
                kind: CallKind::Function,
                ..
            } => input.push(json!({"type": "function_call", "call_id": call_id,
                                    "name": name, "arguments": arguments})),
            Item::ToolCall {
                call_id,
                name,
                arguments,
                kind: CallKind::Custom,
                ..
            } => input.push(json!({"type": "custom_tool_call", "call_id": call_id,
                                    "name": name, "input": arguments})),
            Item::ToolResult {
                call_id,
                content,
                is_error,
                kind,
                ..
            } => {
                let ty = match kind {
                    CallKind::Function => "function_call_output",
                    CallKind::Custom => "custom_tool_call_output",
                };
                let mut text = join_text(content);
                if *is_error {
                    text = format!("Error: {text}");
                }
                let output = if *kind == CallKind::Function
                    && content.iter().any(|p| !matches!(p, Part::Text { .. }))
                {
                    Value::Array(encode_parts(content, false))
                } else {
                    Value::String(text)
                };
                input.push(json!({"type": ty, "call_id": call_id, "output": output}));
            }
            Item::Reasoning {
                text,
                sealed: Some(Sealed { origin, value }),
                ..
            } if *origin == crate::ir::Origin::OpenAi && !value.is_empty() => {
                let summary: Vec<Value> = if text.is_empty() {
                    Vec::new()
                } else {
                    vec![json!({"type": "summary_text", "text": text})]
                };
                input.push(
                    json!({"type": "reasoning", "summary": summary, "encrypted_content": value}),
                );
            }
            // Reasoning another provider issued (or none did) cannot go back to OpenAI.
            Item::Reasoning { .. } => {}
        }
    }
    let mut r = Obj::new();
    r.insert("model".into(), json!(target.model));
    if !req.system.is_empty() {
        r.insert("instructions".into(), json!(join_text(&req.system)));
    }
    r.insert("input".into(), Value::Array(input));
    let mut tools = Vec::new();
    for (i, t) in req.tools.iter().enumerate() {
        match t {
            Tool::Function {
                name,
                description,
                parameters,
                strict,
                ..
            } => {
                let mut f = json!({"type": "function", "name": name, "parameters": parameters,
                                   "strict": strict.unwrap_or(false)});
                if let Some(d) = description {
                    f["description"] = json!(d);
                }
                tools.push(f);
            }
            Tool::Custom {
                name,
                description,
                format,
            } => {
                let mut c = json!({"type": "custom", "name": name});
                if let Some(d) = description {
                    c["description"] = json!(d);
                }
                if let Some(f) = format {
                    c["format"] = f.clone();
                }
                tools.push(c);
            }
            Tool::Hosted { spec, .. } => notes.push(format!(
                "tools[{i}] ({}): hosted tool left out (this upstream cannot run it)",
                get_str(spec, "type").unwrap_or("?")
            )),
        }
    }
    if !tools.is_empty() {
        r.insert("tools".into(), Value::Array(tools));
        if let Some(c) = &req.tool_choice {
            r.insert(
                "tool_choice".into(),
                match c {
                    ToolChoice::Auto => json!("auto"),
                    ToolChoice::None => json!("none"),
                    ToolChoice::Required => json!("required"),
                    ToolChoice::Named(n) => {
                        let custom = req
                            .tools
                            .iter()
                            .any(|t| matches!(t, Tool::Custom { name, .. } if name == n));
                        json!({"type": if custom { "custom" } else { "function" }, "name": n})
                    }
                },
            );
        }
        if let Some(p) = req.parallel_tool_calls {
            r.insert("parallel_tool_calls".into(), json!(p));
        }
    }
    if let Some(n) = req.max_output_tokens {
        r.insert("max_output_tokens".into(), json!(n));
    }
    if let Some(t) = req.temperature {
        r.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        r.insert("top_p".into(), json!(p));
    }
    if req.top_k.is_some() {
        notes.push("top_k: left out (the Responses API has no top_k)".into());
    }
    if req.reasoning.on() {
        if target.caps.reasoning {
            let mut rs = Obj::new();
            if let Some(e) = req.reasoning.wanted_effort() {
                rs.insert("effort".into(), json!(e.openai()));
            }
            rs.insert(
                "summary".into(),
                json!(req.reasoning.summary.as_deref().unwrap_or("auto")),
            );
            r.insert("reasoning".into(), Value::Object(rs));
            r.insert("include".into(), json!(["reasoning.encrypted_content"]));
        } else {
            notes.push("reasoning: left out (the model does not take reasoning settings)".into());
        }
    }
    if let Some(f) = &req.output_format {
        if !target.caps.structured_output {
            return Err(WireError::cannot(
                crate::chat::output_format_field(req),
                "this model cannot be held to a JSON format (structured_output: false)",
            ));
        }
        let format = match f {
            OutputFormat::JsonObject => json!({"type": "json_object"}),
            OutputFormat::JsonSchema {
                name,
                schema,
                strict,
                description,
            } => {
                let mut v = json!({"type": "json_schema", "name": name, "schema": schema});
                if let Some(s) = strict {
                    v["strict"] = json!(s);
                }
                if let Some(d) = description {
                    v["description"] = json!(d);
                }
                v
            }
        };
        r.insert("text".into(), json!({ "format": format }));
    }
    if let Some(m) = &req.metadata {
        r.insert("metadata".into(), Value::Object(m.clone()));
    }
    if let Some(u) = &req.user {
        r.insert("user".into(), json!(u));
    }
    if let Some(k) = &req.prompt_cache_key {
        r.insert("prompt_cache_key".into(), json!(k));
    }
    // The proxy keeps the conversation; the provider need not.
    r.insert("store".into(), json!(false));
    if req.stream {
        r.insert("stream".into(), json!(true));
    }
    Ok(r)
}

/// A request forwarded to a Responses upstream as sent, less the reasoning items OpenAI did not
/// issue (an Anthropic signature carried in `encrypted_content`): OpenAI refuses those.
pub(crate) fn prepare_native(body: &mut Obj) -> Notes {
    let mut notes = Notes::new();
    if let Some(Value::Array(items)) = body.get_mut("input") {
        let before = items.len();
        items.retain(|it| {
            get_str(it, "type") != Some("reasoning")
                || get_str(it, "encrypted_content")
                    .is_none_or(|t| seal::from_openai(t).0.origin == crate::ir::Origin::OpenAi)
        });
        let removed = before - items.len();
        if removed > 0 {
            notes.push(format!(
                "{removed} reasoning item(s) another provider produced left out"
            ));
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
    let input = get_u64(u, "input_tokens").unwrap_or(0);
    let details = u.get("input_tokens_details");
    let cached = details
        .and_then(|d| get_u64(d, "cached_tokens"))
        .unwrap_or(0)
        .min(input);
    let written = details
        .and_then(|d| get_u64(d, "cache_write_tokens"))
        .unwrap_or(0)
        .min(input - cached);
    Some(Usage {
        input: input - cached - written,
        cache_read: cached,
        cache_write: written,
        output: get_u64(u, "output_tokens").unwrap_or(0),
        reasoning: u
            .get("output_tokens_details")
            .and_then(|d| get_u64(d, "reasoning_tokens"))
            .unwrap_or(0),
    })
}

/// `usage` as a response object states it.
#[derive(serde::Serialize)]
struct UsageOut {
    input_tokens: u64,
    input_tokens_details: CachedOut,
    output_tokens: u64,
    output_tokens_details: ReasoningOut,
    total_tokens: u64,
}

#[derive(serde::Serialize)]
struct CachedOut {
    cached_tokens: u64,
    cache_write_tokens: u64,
}

#[derive(serde::Serialize)]
struct ReasoningOut {
    reasoning_tokens: u64,
}

fn encode_usage(u: &Usage) -> UsageOut {
    UsageOut {
        input_tokens: u.prompt(),
        input_tokens_details: CachedOut {
            cached_tokens: u.cache_read,
            cache_write_tokens: u.cache_write,
        },
        output_tokens: u.output,
        output_tokens_details: ReasoningOut {
            reasoning_tokens: u.reasoning,
        },
        total_tokens: u.prompt() + u.output,
    }
}

/// The stop reason a finished `response` implies.
fn decode_stop(v: &Value, has_calls: bool) -> Stop {
    match get_str(v, "status") {
        Some("incomplete") => match v
            .get("incomplete_details")
            .and_then(|d| get_str(d, "reason"))
        {
            Some("content_filter") => Stop::ContentFilter,
            _ => Stop::MaxTokens,
        },
        _ if has_calls => Stop::ToolUse,
        _ => Stop::End,
    }
}

/// One output item of a `response` into the IR (`None` for what has no counterpart).
fn decode_output_item(it: &Value) -> Option<Item> {
    match get_str(it, "type")? {
        "message" => {
            let content = decode_content(it.get("content"), At::Output).ok()?;
            Some(Item::Message {
                role: Role::Assistant,
                content,
            })
        }
        "function_call" => Some(Item::ToolCall {
            call_id: get_str(it, "call_id").unwrap_or_default().to_string(),
            name: get_str(it, "name").unwrap_or_default().to_string(),
            namespace: get_str(it, "namespace").map(str::to_string),
            arguments: it.get("arguments").map(text_of).unwrap_or_default(),
            kind: CallKind::Function,
        }),
        "custom_tool_call" => Some(Item::ToolCall {
            call_id: get_str(it, "call_id").unwrap_or_default().to_string(),
            name: get_str(it, "name").unwrap_or_default().to_string(),
            namespace: None,
            arguments: it.get("input").map(text_of).unwrap_or_default(),
            kind: CallKind::Custom,
        }),
        "reasoning" => {
            let mut r = Request::default();
            decode_item(it, 0, &mut r).ok()?;
            r.items.pop()
        }
        _ => None,
    }
}

pub(crate) fn decode_response(v: &Value) -> Result<Response, WireError> {
    if get_str(v, "status") == Some("failed") {
        let msg = v
            .get("error")
            .and_then(|e| get_str(e, "message"))
            .unwrap_or("the response failed");
        return Err(WireError::new("", msg));
    }
    let output: Vec<Item> = v
        .get("output")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(decode_output_item)
        .collect();
    let has_calls = output.iter().any(|i| matches!(i, Item::ToolCall { .. }));
    Ok(Response {
        id: get_str(v, "id").map(str::to_string),
        model: get_str(v, "model").map(str::to_string),
        stop: decode_stop(v, has_calls),
        output,
        usage: v.get("usage").and_then(decode_usage),
    })
}

/// Output item ids, unique within a response.
fn item_id(prefix: &str, echo: &Echo, n: usize) -> String {
    let base = echo
        .response_id
        .strip_prefix("resp_")
        .unwrap_or(&echo.response_id);
    format!("{prefix}_{base}_{n}")
}

fn message_item(id: &str, text: &str, status: &str) -> Value {
    let content = if status == "completed" {
        json!([{"type": "output_text", "text": text, "annotations": [], "logprobs": []}])
    } else {
        json!([])
    };
    json!({"id": id, "type": "message", "status": status, "role": "assistant", "content": content})
}

fn reasoning_item(id: &str, text: &str, sealed: Option<&Sealed>, redacted: bool) -> Value {
    let summary: Vec<Value> = if text.is_empty() {
        Vec::new()
    } else {
        vec![json!({"type": "summary_text", "text": text})]
    };
    let mut v = json!({"id": id, "type": "reasoning", "summary": summary});
    if let Some(s) = sealed {
        v["encrypted_content"] = json!(seal::to_openai(s, redacted));
    }
    v
}

/// A call in the client's terms: a function call, or a custom tool call.
fn call_item(
    echo: &Echo,
    id_n: usize,
    call_id: &str,
    name: &str,
    arguments: &str,
    kind: CallKind,
    status: &str,
) -> Value {
    let client = echo.names.client(name);
    if kind == CallKind::Custom || client.kind == CallKind::Custom {
        let input = if kind == CallKind::Custom {
            arguments.to_string()
        } else {
            custom_input(arguments)
        };
        return json!({"id": item_id("ctc", echo, id_n), "type": "custom_tool_call",
                      "status": status, "call_id": call_id, "name": client.name, "input": input});
    }
    let mut v = json!({"id": item_id("fc", echo, id_n), "type": "function_call", "status": status,
                       "call_id": call_id, "name": client.name, "arguments": arguments});
    if let Some(ns) = client.namespace {
        v["namespace"] = json!(ns);
    }
    v
}

/// The request fields a `response` object repeats, and what it says when the request did not
/// set them.
const ECHOED: &[(&str, &str)] = &[
    ("instructions", "null"),
    ("max_output_tokens", "null"),
    ("max_tool_calls", "null"),
    ("metadata", "{}"),
    ("parallel_tool_calls", "true"),
    ("previous_response_id", "null"),
    ("prompt_cache_key", "null"),
    ("reasoning", r#"{"effort":null,"summary":null}"#),
    ("safety_identifier", "null"),
    ("store", "true"),
    ("temperature", "1.0"),
    ("text", r#"{"format":{"type":"text"}}"#),
    ("tool_choice", r#""auto""#),
    ("tools", "[]"),
    ("top_logprobs", "0"),
    ("top_p", "1.0"),
    ("truncation", r#""disabled""#),
    ("user", "null"),
];

/// The fields of a Responses request its answer repeats (`instructions`, `tools`, …), kept
/// as the JSON text the client sent: a response object (every event of a stream carries one)
/// splices them in as they are, never cloning or re-serializing them.
#[derive(Debug, Clone, Default)]
pub struct EchoFields {
    /// `"key":value` for every repeated field, comma-separated (the request's, else the
    /// default); shared by every response object of the request.
    raw: std::sync::Arc<str>,
}

/// The repeated fields of a request body, borrowed as raw JSON (nothing else is read).
#[derive(serde::Deserialize)]
struct RawEcho<'a> {
    #[serde(borrow)]
    instructions: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow)]
    max_output_tokens: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow)]
    max_tool_calls: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow)]
    metadata: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow)]
    parallel_tool_calls: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow)]
    previous_response_id: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow)]
    prompt_cache_key: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow)]
    reasoning: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow)]
    safety_identifier: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow)]
    store: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow)]
    temperature: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow)]
    text: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow)]
    tool_choice: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow)]
    tools: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow)]
    top_logprobs: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow)]
    top_p: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow)]
    truncation: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow)]
    user: Option<&'a serde_json::value::RawValue>,
}

impl RawEcho<'_> {
    /// The field named `k` of [`ECHOED`].
    fn get(&self, k: &str) -> Option<&str> {
        let v = match k {
            "instructions" => self.instructions,
            "max_output_tokens" => self.max_output_tokens,
            "max_tool_calls" => self.max_tool_calls,
            "metadata" => self.metadata,
            "parallel_tool_calls" => self.parallel_tool_calls,
            "previous_response_id" => self.previous_response_id,
            "prompt_cache_key" => self.prompt_cache_key,
            "reasoning" => self.reasoning,
            "safety_identifier" => self.safety_identifier,
            "store" => self.store,
            "temperature" => self.temperature,
            "text" => self.text,
            "tool_choice" => self.tool_choice,
            "tools" => self.tools,
            "top_logprobs" => self.top_logprobs,
            "top_p" => self.top_p,
            "truncation" => self.truncation,
            "user" => self.user,
            _ => None,
        };
        v.map(serde_json::value::RawValue::get)
    }
}

impl EchoFields {
    /// From the raw request body (a JSON object; anything else repeats only defaults).
    pub fn from_body(body: &[u8]) -> Self {
        match serde_json::from_slice::<RawEcho<'_>>(body) {
            Ok(raw) => Self::build(|k| raw.get(k)),
            Err(_) => Self::build(|_| None),
        }
    }

    /// From a request already parsed.
    pub fn from_obj(body: &Obj) -> Self {
        let texts: Vec<(&str, String)> = ECHOED
            .iter()
            .filter_map(|(k, _)| body.get(*k).map(|v| (*k, v.to_string())))
            .collect();
        Self::build(|k| texts.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str()))
    }

    fn build<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Self {
        let mut raw = String::new();
        for (k, default) in ECHOED {
            if !raw.is_empty() {
                raw.push(',');
            }
            raw.push('"');
            raw.push_str(k);
            raw.push_str("\":");
            raw.push_str(get(k).unwrap_or(default));
        }
        Self { raw: raw.into() }
    }
}

/// A whole `response` object as JSON text: the output, the status, the usage, and the
/// request's repeated fields spliced in as the client sent them.
fn response_object(
    echo: &Echo,
    model: &str,
    output: &[Value],
    status: &str,
    stop: &Stop,
    usage: Option<&Usage>,
    error: Option<Value>,
) -> String {
    /// The response's own fields, written straight to text (no tree of values built first).
    #[derive(serde::Serialize)]
    struct Own<'a> {
        id: &'a str,
        object: &'static str,
        created_at: u64,
        status: &'a str,
        background: bool,
        error: Option<Value>,
        incomplete_details: Option<Incomplete>,
        model: &'a str,
        output: &'a [Value],
        service_tier: &'static str,
        usage: Option<UsageOut>,
    }
    #[derive(serde::Serialize)]
    struct Incomplete {
        reason: &'static str,
    }
    let incomplete_details = match (status, stop) {
        ("incomplete", Stop::ContentFilter) => Some(Incomplete {
            reason: "content_filter",
        }),
        ("incomplete", _) => Some(Incomplete {
            reason: "max_output_tokens",
        }),
        _ => None,
    };
    let own = Own {
        id: &echo.response_id,
        object: "response",
        created_at: if echo.created > 0 {
            echo.created
        } else {
            unix_now()
        },
        status,
        background: false,
        error,
        incomplete_details,
        model,
        output,
        service_tier: "default",
        usage: usage.map(encode_usage),
    };
    let defaults;
    let fields = if echo.fields.raw.is_empty() {
        defaults = EchoFields::build(|_| None);
        &defaults.raw
    } else {
        &echo.fields.raw
    };
    // Serializing borrowed strings and JSON values cannot fail.
    let mut s = serde_json::to_string(&own).unwrap_or_default();
    s.reserve_exact(fields.len() + 1);
    s.pop();
    s.push(',');
    s.push_str(fields);
    s.push('}');
    s
}

fn status_of(stop: &Stop) -> &'static str {
    match stop {
        Stop::MaxTokens | Stop::ContentFilter => "incomplete",
        _ => "completed",
    }
}

pub(crate) fn encode_response(r: &Response, echo: &Echo) -> String {
    let mut output = Vec::new();
    for (n, item) in r.output.iter().enumerate() {
        match item {
            Item::Message { content, .. } => output.push(message_item(
                &item_id("msg", echo, n),
                &join_text(content),
                "completed",
            )),
            Item::Reasoning {
                text,
                sealed,
                redacted,
            } => output.push(reasoning_item(
                &item_id("rs", echo, n),
                text,
                sealed.as_ref(),
                *redacted,
            )),
            Item::ToolCall {
                call_id,
                name,
                arguments,
                kind,
                ..
            } => output.push(call_item(
                echo,
                n,
                call_id,
                name,
                arguments,
                *kind,
                "completed",
            )),
            Item::ToolResult { .. } => {}
        }
    }
    response_object(
        echo,
        r.model.as_deref().unwrap_or_default(),
        &output,
        status_of(&r.stop),
        &r.stop,
        r.usage.as_ref(),
        None,
    )
}

// ---------------------------------------------------------------------------------------------
// Streams

/// Responses events → [`Event`]s.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    /// Output indexes whose content arrived in deltas (their `…done` repeats it).
    streamed: Vec<u64>,
    /// Output indexes of calls announced by `output_item.added`.
    calls: Vec<u64>,
    /// The summary part being streamed, per reasoning item.
    summary_index: Option<(u64, u64)>,
    any_calls: bool,
}

impl StreamDecoder {
    pub fn event(&mut self, data: &[u8], out: &mut Vec<Event>) {
        let Ok(v) = serde_json::from_slice::<Value>(data) else {
            return;
        };
        let index = get_u64(&v, "output_index").unwrap_or(0);
        let delta = || get_str(&v, "delta").unwrap_or_default().to_string();
        match get_str(&v, "type").unwrap_or_default() {
            "response.created" => {
                let r = v.get("response").cloned().unwrap_or(Value::Null);
                out.push(Event::Start {
                    id: get_str(&r, "id").map(str::to_string),
                    model: get_str(&r, "model").map(str::to_string),
                });
            }
            "response.output_item.added" => {
                let it = v.get("item").cloned().unwrap_or(Value::Null);
                self.call_started(&it, index, out);
            }
            "response.output_text.delta" | "response.refusal.delta" => {
                self.streamed.push(index);
                out.push(Event::Text(delta()));
            }
            "response.function_call_arguments.delta" | "response.custom_tool_call_input.delta" => {
                self.streamed.push(index);
                out.push(Event::ToolArgs {
                    index,
                    delta: delta(),
                });
            }
            "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
                let part = get_u64(&v, "summary_index")
                    .or_else(|| get_u64(&v, "content_index"))
                    .unwrap_or(0);
                if let Some((i, p)) = self.summary_index {
                    if i == index && p != part {
                        out.push(Event::Reasoning("\n\n".into()));
                    }
                }
                self.summary_index = Some((index, part));
                self.streamed.push(index);
                out.push(Event::Reasoning(delta()));
            }
            "response.output_item.done" => {
                let it = v.get("item").cloned().unwrap_or(Value::Null);
                self.item_done(&it, index, out);
            }
            "response.completed" | "response.incomplete" => {
                let r = v.get("response").cloned().unwrap_or(Value::Null);
                if let Some(u) = r.get("usage").and_then(decode_usage) {
                    out.push(Event::Usage(u));
                }
                out.push(Event::Stop(decode_stop(&r, self.any_calls)));
                out.push(Event::Done);
            }
            "response.failed" => {
                let e = v
                    .get("response")
                    .and_then(|r| r.get("error"))
                    .cloned()
                    .unwrap_or(Value::Null);
                out.push(Event::Error {
                    message: get_str(&e, "message")
                        .unwrap_or("the upstream reported an error")
                        .to_string(),
                    kind: get_str(&e, "code").unwrap_or("api_error").to_string(),
                });
            }
            "error" => out.push(Event::Error {
                message: get_str(&v, "message")
                    .or_else(|| v.get("error").and_then(|e| get_str(e, "message")))
                    .unwrap_or("the upstream reported an error")
                    .to_string(),
                kind: get_str(&v, "code").unwrap_or("api_error").to_string(),
            }),
            _ => {}
        }
    }

    fn call_started(&mut self, it: &Value, index: u64, out: &mut Vec<Event>) {
        let kind = match get_str(it, "type") {
            Some("function_call") => CallKind::Function,
            Some("custom_tool_call") => CallKind::Custom,
            _ => return,
        };
        if self.calls.contains(&index) {
            return;
        }
        self.calls.push(index);
        self.any_calls = true;
        out.push(Event::ToolCall {
            index,
            call_id: get_str(it, "call_id").unwrap_or_default().to_string(),
            name: get_str(it, "name").unwrap_or_default().to_string(),
            namespace: get_str(it, "namespace").map(str::to_string),
            kind,
        });
    }

    fn item_done(&mut self, it: &Value, index: u64, out: &mut Vec<Event>) {
        let streamed = self.streamed.contains(&index);
        match get_str(it, "type") {
            Some("message") if !streamed => {
                if let Some(Item::Message { content, .. }) = decode_output_item(it) {
                    let t = join_text(&content);
                    if !t.is_empty() {
                        out.push(Event::Text(t));
                    }
                }
            }
            Some("function_call" | "custom_tool_call") => {
                self.call_started(it, index, out);
                if !streamed {
                    let args = if get_str(it, "type") == Some("custom_tool_call") {
                        it.get("input")
                    } else {
                        it.get("arguments")
                    };
                    if let Some(a) = args.map(text_of).filter(|a| !a.is_empty()) {
                        out.push(Event::ToolArgs { index, delta: a });
                    }
                }
            }
            Some("reasoning") => {
                if let Some(Item::Reasoning {
                    text,
                    sealed,
                    redacted,
                }) = decode_output_item(it)
                {
                    if redacted {
                        if let Some(s) = sealed {
                            out.push(Event::RedactedReasoning(s));
                        }
                        return;
                    }
                    if !streamed && !text.is_empty() {
                        out.push(Event::Reasoning(text));
                    }
                    if let Some(s) = sealed {
                        out.push(Event::ReasoningSealed(s));
                    }
                }
            }
            _ => return,
        }
        out.push(Event::EndBlock);
    }
}

#[derive(Debug)]
struct OpenCall {
    index: u64,
    output_index: usize,
    item: Value,
    /// A custom tool call for the client.
    custom: bool,
    /// The upstream sends the custom call's raw input (not `{"input": …}` arguments).
    raw: bool,
    args: String,
}

/// [`Event`]s → Responses events, each with its `sequence_number`.
#[derive(Debug)]
pub struct StreamEncoder {
    echo: Echo,
    seq: u64,
    started: bool,
    ended: bool,
    model: String,
    next_index: usize,
    /// Finished output items by output index.
    output: Vec<(usize, Value)>,
    text: Option<(usize, String, String)>,
    /// (output index, id, text, summary part open, sealed)
    reasoning: Option<(usize, String, String, bool, Option<Sealed>)>,
    calls: Vec<OpenCall>,
    stop: Stop,
    usage: Option<Usage>,
}

impl StreamEncoder {
    pub fn new(echo: Echo) -> Self {
        Self {
            echo,
            seq: 0,
            started: false,
            ended: false,
            model: String::new(),
            next_index: 0,
            output: Vec::new(),
            text: None,
            reasoning: None,
            calls: Vec::new(),
            stop: Stop::End,
            usage: None,
        }
    }

    pub fn ended(&self) -> bool {
        self.ended
    }

    fn emit(&mut self, out: &mut Vec<u8>, mut v: Value) {
        v["sequence_number"] = json!(self.seq);
        self.seq += 1;
        let name = get_str(&v, "type").unwrap_or("response").to_string();
        sse(out, Some(&name), &v);
    }

    fn snapshot(&self, status: &str, usage: Option<&Usage>, error: Option<Value>) -> String {
        let mut output = self.output.clone();
        output.sort_by_key(|(i, _)| *i);
        let output: Vec<Value> = output.into_iter().map(|(_, v)| v).collect();
        response_object(
            &self.echo,
            &self.model,
            &output,
            status,
            &self.stop,
            usage,
            error,
        )
    }

    /// An event carrying the whole response object.
    fn emit_response(&mut self, out: &mut Vec<u8>, ty: &str, response: &str) {
        let text = format!(
            "{{\"type\":\"{ty}\",\"sequence_number\":{},\"response\":{response}}}",
            self.seq
        );
        self.seq += 1;
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(ty.as_bytes());
        out.extend_from_slice(b"\ndata: ");
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(b"\n\n");
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let r = self.snapshot("in_progress", None, None);
        self.emit_response(out, "response.created", &r);
        self.emit_response(out, "response.in_progress", &r);
    }

    fn open_index(&mut self) -> usize {
        let i = self.next_index;
        self.next_index += 1;
        i
    }

    fn close_text(&mut self, out: &mut Vec<u8>) {
        let Some((i, id, text)) = self.text.take() else {
            return;
        };
        self.emit(
            out,
            json!({"type": "response.output_text.done", "item_id": id, "output_index": i,
                   "content_index": 0, "text": text, "logprobs": []}),
        );
        self.emit(
            out,
            json!({"type": "response.content_part.done", "item_id": id, "output_index": i,
                   "content_index": 0,
                   "part": {"type": "output_text", "text": text, "annotations": [], "logprobs": []}}),
        );
        let item = message_item(&id, &text, "completed");
        self.emit(
            out,
            json!({"type": "response.output_item.done", "output_index": i, "item": item}),
        );
        self.output.push((i, item));
    }

    fn close_reasoning(&mut self, out: &mut Vec<u8>) {
        let Some((i, id, text, summary_open, sealed)) = self.reasoning.take() else {
            return;
        };
        if summary_open {
            self.emit(
                out,
                json!({"type": "response.reasoning_summary_text.done", "item_id": id,
                       "output_index": i, "summary_index": 0, "text": text}),
            );
            self.emit(
                out,
                json!({"type": "response.reasoning_summary_part.done", "item_id": id,
                       "output_index": i, "summary_index": 0,
                       "part": {"type": "summary_text", "text": text}}),
            );
        }
        let item = reasoning_item(&id, &text, sealed.as_ref(), false);
        self.emit(
            out,
            json!({"type": "response.output_item.done", "output_index": i, "item": item}),
        );
        self.output.push((i, item));
    }

    fn close_calls(&mut self, out: &mut Vec<u8>) {
        for mut c in std::mem::take(&mut self.calls) {
            let id = get_str(&c.item, "id").unwrap_or_default().to_string();
            c.item["status"] = json!("completed");
            if c.custom {
                let input = if c.raw {
                    c.args.clone()
                } else {
                    custom_input(&c.args)
                };
                c.item["input"] = json!(input);
                self.emit(
                    out,
                    json!({"type": "response.custom_tool_call_input.delta", "item_id": id,
                           "output_index": c.output_index, "delta": input}),
                );
                self.emit(
                    out,
                    json!({"type": "response.custom_tool_call_input.done", "item_id": id,
                           "output_index": c.output_index, "input": input}),
                );
            } else {
                c.item["arguments"] = json!(c.args);
                self.emit(
                    out,
                    json!({"type": "response.function_call_arguments.done", "item_id": id,
                           "output_index": c.output_index, "arguments": c.args}),
                );
            }
            self.emit(
                out,
                json!({"type": "response.output_item.done", "output_index": c.output_index,
                       "item": c.item}),
            );
            self.output.push((c.output_index, c.item));
        }
    }

    fn close_all(&mut self, out: &mut Vec<u8>) {
        self.close_text(out);
        self.close_reasoning(out);
        self.close_calls(out);
    }

    fn open_reasoning(&mut self, out: &mut Vec<u8>) {
        if self.reasoning.is_some() {
            return;
        }
        self.close_text(out);
        self.close_calls(out);
        let i = self.open_index();
        let id = item_id("rs", &self.echo, i);
        self.emit(
            out,
            json!({"type": "response.output_item.added", "output_index": i,
                   "item": {"id": id, "type": "reasoning", "summary": []}}),
        );
        self.reasoning = Some((i, id, String::new(), false, None));
    }

    pub fn event(&mut self, ev: &Event, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        match ev {
            Event::Start { model, .. } => {
                if let Some(m) = model {
                    self.model.clone_from(m);
                }
                self.start(out);
            }
            Event::Usage(u) => self.usage = Some(*u),
            Event::Stop(s) => self.stop = s.clone(),
            Event::Text(t) => {
                self.start(out);
                if self.text.is_none() {
                    self.close_reasoning(out);
                    self.close_calls(out);
                    let i = self.open_index();
                    let id = item_id("msg", &self.echo, i);
                    self.emit(
                        out,
                        json!({"type": "response.output_item.added", "output_index": i,
                               "item": message_item(&id, "", "in_progress")}),
                    );
                    self.emit(
                        out,
                        json!({"type": "response.content_part.added", "item_id": id,
                               "output_index": i, "content_index": 0,
                               "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}}),
                    );
                    self.text = Some((i, id, String::new()));
                }
                let (i, id) = match &mut self.text {
                    Some((i, id, text)) => {
                        text.push_str(t);
                        (*i, id.clone())
                    }
                    None => return,
                };
                self.emit(
                    out,
                    json!({"type": "response.output_text.delta", "item_id": id, "output_index": i,
                           "content_index": 0, "delta": t, "logprobs": []}),
                );
            }
            Event::Reasoning(t) => {
                self.start(out);
                self.open_reasoning(out);
                let Some((i, id, text, summary_open, _)) = &mut self.reasoning else {
                    return;
                };
                let (i, id) = (*i, id.clone());
                text.push_str(t);
                let first = !*summary_open;
                *summary_open = true;
                if first {
                    self.emit(
                        out,
                        json!({"type": "response.reasoning_summary_part.added", "item_id": id,
                               "output_index": i, "summary_index": 0,
                               "part": {"type": "summary_text", "text": ""}}),
                    );
                }
                self.emit(
                    out,
                    json!({"type": "response.reasoning_summary_text.delta", "item_id": id,
                           "output_index": i, "summary_index": 0, "delta": t}),
                );
            }
            Event::ReasoningSealed(s) => {
                self.start(out);
                self.open_reasoning(out);
                if let Some((_, _, _, _, sealed)) = &mut self.reasoning {
                    *sealed = Some(s.clone());
                }
            }
            Event::RedactedReasoning(s) => {
                self.start(out);
                self.close_all(out);
                let i = self.open_index();
                let id = item_id("rs", &self.echo, i);
                let item = reasoning_item(&id, "", Some(s), true);
                self.emit(
                    out,
                    json!({"type": "response.output_item.added", "output_index": i,
                           "item": {"id": id, "type": "reasoning", "summary": []}}),
                );
                self.emit(
                    out,
                    json!({"type": "response.output_item.done", "output_index": i, "item": item}),
                );
                self.output.push((i, item));
            }
            Event::ToolCall {
                index,
                call_id,
                name,
                kind,
                ..
            } => {
                self.start(out);
                self.close_text(out);
                self.close_reasoning(out);
                let i = self.open_index();
                let item = call_item(&self.echo, i, call_id, name, "", *kind, "in_progress");
                let custom = get_str(&item, "type") == Some("custom_tool_call");
                self.emit(
                    out,
                    json!({"type": "response.output_item.added", "output_index": i, "item": item.clone()}),
                );
                self.calls.push(OpenCall {
                    index: *index,
                    output_index: i,
                    item,
                    custom,
                    raw: *kind == CallKind::Custom,
                    args: String::new(),
                });
            }
            Event::ToolArgs { index, delta } => {
                let Some(pos) = self.calls.iter().rposition(|c| c.index == *index) else {
                    return;
                };
                self.calls[pos].args.push_str(delta);
                if !self.calls[pos].custom {
                    let id = get_str(&self.calls[pos].item, "id")
                        .unwrap_or_default()
                        .to_string();
                    let i = self.calls[pos].output_index;
                    self.emit(
                        out,
                        json!({"type": "response.function_call_arguments.delta", "item_id": id,
                               "output_index": i, "delta": delta}),
                    );
                }
            }
            Event::EndBlock => self.close_all(out),
            Event::Error { message, kind } => {
                self.start(out);
                self.close_all(out);
                let error = json!({"code": kind, "message": message});
                let r = self.snapshot("failed", self.usage.as_ref(), Some(error));
                self.emit_response(out, "response.failed", &r);
                self.ended = true;
            }
            Event::Done => {
                self.start(out);
                self.close_all(out);
                let status = status_of(&self.stop);
                let r = self.snapshot(status, self.usage.as_ref(), None);
                let name = if status == "incomplete" {
                    "response.incomplete"
                } else {
                    "response.completed"
                };
                self.emit_response(out, name, &r);
                self.ended = true;
            }
        }
    }

    /// The finished `response` object (after [`Event::Done`]), as the client received it.
    pub fn response(&self) -> Value {
        let status = if self.ended {
            status_of(&self.stop)
        } else {
            "in_progress"
        };
        serde_json::from_str(&self.snapshot(status, self.usage.as_ref(), None))
            .unwrap_or(Value::Null)
    }
}

/// The `response` object a finished Responses stream carried (its `response.completed`,
/// `response.incomplete` or `response.failed` event), for streams passed through as sent.
pub fn final_response(data: &[u8]) -> Option<Value> {
    let v: Value = serde_json::from_slice(data).ok()?;
    match get_str(&v, "type")? {
        "response.completed" | "response.incomplete" | "response.failed" => {
            v.get("response").cloned()
        }
        _ => None,
    }
}
