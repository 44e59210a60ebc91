//! OpenAI chat completions: requests, answers and `chat.completion.chunk` streams.

use std::borrow::Cow;

use serde::Serialize;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::ir::{
    CallKind, Effort, Event, Item, Obj, OutputFormat, Part, Request, Response, Role, Schema,
    Source, Stop, Thinking, Tool, ToolChoice, Usage,
};
use crate::names::ToolNames;
use crate::util::{get_str, get_u64, sse, text_of, unix_now};
use crate::{Echo, Format, Notes, Target, WireError};

// ---------------------------------------------------------------------------------------------
// Requests

/// Chat fields no other format can express: left out (with a note) when the request crosses.
const CHAT_ONLY: &[&str] = &[
    "seed",
    "logit_bias",
    "presence_penalty",
    "frequency_penalty",
    "prediction",
    "service_tier",
    "store",
    "web_search_options",
    "verbosity",
];

/// Chat fields asking for output other formats cannot give: a request carrying them cannot go
/// to an upstream of another format.
const CHAT_OUTPUT_ONLY: &[(&str, &str)] = &[
    (
        "logprobs",
        "log probabilities are only returned by chat-completions upstreams",
    ),
    (
        "top_logprobs",
        "log probabilities are only returned by chat-completions upstreams",
    ),
    (
        "audio",
        "audio output is only produced by chat-completions upstreams",
    ),
];

pub(crate) fn decode_request(body: &Obj, shared: Option<&Arc<Obj>>) -> Result<Request, WireError> {
    let mut r = Request {
        origin: Some(Format::Chat),
        model: body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        ..Default::default()
    };
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| WireError::new("messages", "must be an array"))?;
    for (i, m) in messages.iter().enumerate() {
        decode_message(m, i, &mut r.items)?;
    }
    if let Some(tools) = body.get("tools").and_then(Value::as_array) {
        for (i, t) in tools.iter().enumerate() {
            r.tools.push(decode_tool(t, i, shared)?);
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
            Some("function") => Some(ToolChoice::Named(
                v.get("function")
                    .and_then(|f| get_str(f, "name"))
                    .ok_or_else(|| WireError::new("tool_choice.function.name", "is required"))?
                    .to_string(),
            )),
            Some("custom") => Some(ToolChoice::Named(
                v.get("custom")
                    .and_then(|f| get_str(f, "name"))
                    .ok_or_else(|| WireError::new("tool_choice.custom.name", "is required"))?
                    .to_string(),
            )),
            // `allowed_tools` narrows the tools offered; every tool stays offered here.
            Some("allowed_tools") => Some(ToolChoice::Auto),
            _ => return Err(WireError::new("tool_choice", "unknown type")),
        },
    };
    r.parallel_tool_calls = body.get("parallel_tool_calls").and_then(Value::as_bool);
    r.max_output_tokens =
        get_u64_of(body, "max_completion_tokens").or_else(|| get_u64_of(body, "max_tokens"));
    r.temperature = body.get("temperature").and_then(Value::as_f64);
    r.top_p = body.get("top_p").and_then(Value::as_f64);
    r.stop = match body.get("stop") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    };
    r.n = get_u64_of(body, "n");
    r.stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    r.include_usage = body
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    match body.get("reasoning_effort").and_then(Value::as_str) {
        Some("none") => r.reasoning.thinking = Some(Thinking::Off),
        Some(e) => r.reasoning.effort = Effort::parse(e),
        None => {}
    }
    r.output_format = decode_response_format(body.get("response_format"), "response_format")?;
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
    for f in CHAT_ONLY {
        if body.get(*f).is_some_and(|v| !v.is_null()) {
            r.unmapped.push((*f).to_string());
        }
    }
    for (f, why) in CHAT_OUTPUT_ONLY {
        if body
            .get(*f)
            .is_some_and(|v| !v.is_null() && v != &Value::Bool(false))
        {
            return Err(WireError::cannot(*f, *why));
        }
    }
    if body
        .get("modalities")
        .and_then(Value::as_array)
        .is_some_and(|m| m.iter().any(|x| x != "text"))
    {
        return Err(WireError::cannot(
            "modalities",
            "only text output can be translated to another format",
        ));
    }
    Ok(r)
}

fn get_u64_of(body: &Obj, k: &str) -> Option<u64> {
    body.get(k).and_then(Value::as_u64)
}

/// `response_format` (chat) or `text.format` (Responses, flat) into an [`OutputFormat`].
pub(crate) fn decode_response_format(
    v: Option<&Value>,
    field: &str,
) -> Result<Option<OutputFormat>, WireError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    match get_str(v, "type") {
        Some("text") | None => Ok(None),
        Some("json_object") => Ok(Some(OutputFormat::JsonObject)),
        Some("json_schema") => {
            // Chat nests the schema in `json_schema`; Responses has it flat.
            let s = v.get("json_schema").unwrap_or(v);
            Ok(Some(OutputFormat::JsonSchema {
                name: get_str(s, "name").unwrap_or("response").to_string(),
                schema: s.get("schema").cloned().unwrap_or_else(|| json!({})),
                strict: s.get("strict").and_then(Value::as_bool),
                description: get_str(s, "description").map(str::to_string),
            }))
        }
        Some(other) => Err(WireError::new(
            format!("{field}.type"),
            format!("unknown value '{other}'"),
        )),
    }
}

fn decode_message(m: &Value, i: usize, items: &mut Vec<Item>) -> Result<(), WireError> {
    let role = get_str(m, "role").unwrap_or("");
    match role {
        "system" | "developer" | "user" => {
            let role = match role {
                "system" => Role::System,
                "developer" => Role::Developer,
                _ => Role::User,
            };
            items.push(Item::Message {
                role,
                content: decode_content(m.get("content"), i)?,
            });
        }
        "assistant" => {
            let reasoning = get_str(m, "reasoning_content").or_else(|| get_str(m, "reasoning"));
            if let Some(text) = reasoning.filter(|t| !t.is_empty()) {
                items.push(Item::Reasoning {
                    text: text.to_string(),
                    sealed: None,
                    redacted: false,
                });
            }
            let mut content = decode_content(m.get("content"), i)?;
            if let Some(r) = get_str(m, "refusal").filter(|r| !r.is_empty()) {
                content.push(Part::text(r));
            }
            if !content.is_empty() {
                items.push(Item::Message {
                    role: Role::Assistant,
                    content,
                });
            }
            for c in m
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                items.push(decode_tool_call(c, i)?);
            }
        }
        "tool" => {
            let call_id = get_str(m, "tool_call_id").ok_or_else(|| {
                WireError::new(format!("messages[{i}].tool_call_id"), "is required")
            })?;
            items.push(Item::ToolResult {
                call_id: call_id.to_string(),
                content: decode_content(m.get("content"), i)?,
                is_error: false,
                kind: CallKind::Function,
                cache_control: None,
            });
        }
        other => {
            return Err(WireError::cannot(
                format!("messages[{i}].role"),
                format!("'{other}' cannot be translated to another format"),
            ))
        }
    }
    Ok(())
}

fn decode_tool_call(c: &Value, i: usize) -> Result<Item, WireError> {
    let call_id = get_str(c, "id").unwrap_or_default().to_string();
    if get_str(c, "type") == Some("custom") {
        let f = c.get("custom").cloned().unwrap_or(Value::Null);
        return Ok(Item::ToolCall {
            call_id,
            name: get_str(&f, "name").unwrap_or_default().to_string(),
            namespace: None,
            arguments: get_str(&f, "input").unwrap_or_default().to_string(),
            kind: CallKind::Custom,
        });
    }
    let f = c
        .get("function")
        .ok_or_else(|| WireError::new(format!("messages[{i}].tool_calls"), "missing 'function'"))?;
    Ok(Item::ToolCall {
        call_id,
        name: get_str(f, "name").unwrap_or_default().to_string(),
        namespace: None,
        arguments: f.get("arguments").map(text_of).unwrap_or_default(),
        kind: CallKind::Function,
    })
}

/// A data URL (`data:TYPE;base64,DATA`) or any other URL as a [`Source`].
pub(crate) fn source_of_url(url: &str, field: &str) -> Result<Source, WireError> {
    match url.strip_prefix("data:") {
        Some(rest) => {
            let (meta, data) = rest
                .split_once(',')
                .ok_or_else(|| WireError::new(field, "malformed data: URL"))?;
            let media_type = meta
                .strip_suffix(";base64")
                .ok_or_else(|| WireError::new(field, "only base64 data: URLs are supported"))?;
            Ok(Source::Base64 {
                media_type: media_type.to_string(),
                data: data.to_string(),
            })
        }
        None => Ok(Source::Url(url.to_string())),
    }
}

/// A [`Source`] as a URL (base64 as a data URL).
pub(crate) fn url_of_source(s: &Source) -> Option<String> {
    match s {
        Source::Url(u) => Some(u.clone()),
        Source::Base64 { media_type, data } => Some(format!("data:{media_type};base64,{data}")),
        Source::FileId(_) => None,
    }
}

fn decode_content(content: Option<&Value>, i: usize) -> Result<Vec<Part>, WireError> {
    match content {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) if s.is_empty() => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![Part::text(s.clone())]),
        Some(Value::Array(parts)) => {
            let mut out = Vec::new();
            for (j, p) in parts.iter().enumerate() {
                let field = || format!("messages[{i}].content[{j}]");
                match get_str(p, "type") {
                    Some("text") | None => {
                        let t = get_str(p, "text").unwrap_or_default();
                        if !t.is_empty() {
                            out.push(Part::Text {
                                text: t.to_string(),
                                cache_control: p.get("cache_control").cloned(),
                            });
                        }
                    }
                    Some("image_url") => {
                        let u = p.get("image_url");
                        let url = u
                            .and_then(|u| get_str(u, "url").or_else(|| u.as_str()))
                            .ok_or_else(|| WireError::new(field(), "image_url.url is required"))?;
                        out.push(Part::Image {
                            source: source_of_url(url, &field())?,
                            detail: u.and_then(|u| get_str(u, "detail")).map(str::to_string),
                            cache_control: p.get("cache_control").cloned(),
                        });
                    }
                    Some("file") => {
                        let f = p.get("file").cloned().unwrap_or(Value::Null);
                        let source = if let Some(d) = get_str(&f, "file_data") {
                            source_of_url(d, &field())?
                        } else if let Some(id) = get_str(&f, "file_id") {
                            Source::FileId(id.to_string())
                        } else {
                            return Err(WireError::new(field(), "file needs file_data or file_id"));
                        };
                        out.push(Part::File {
                            source,
                            filename: get_str(&f, "filename").map(str::to_string),
                            cache_control: None,
                        });
                    }
                    Some("refusal") => {
                        if let Some(t) = get_str(p, "refusal") {
                            out.push(Part::text(t));
                        }
                    }
                    Some(other) => {
                        return Err(WireError::cannot(
                            field(),
                            format!(
                                "content part '{other}' cannot be translated to another format"
                            ),
                        ))
                    }
                }
            }
            Ok(out)
        }
        Some(_) => Err(WireError::new(
            format!("messages[{i}].content"),
            "must be a string or an array",
        )),
    }
}

fn decode_tool(t: &Value, i: usize, shared: Option<&Arc<Obj>>) -> Result<Tool, WireError> {
    match get_str(t, "type").unwrap_or("function") {
        "function" => {
            let f = t
                .get("function")
                .ok_or_else(|| WireError::new(format!("tools[{i}].function"), "is required"))?;
            let name = get_str(f, "name").ok_or_else(|| {
                WireError::new(format!("tools[{i}].function.name"), "is required")
            })?;
            Ok(Tool::Function {
                name: name.to_string(),
                description: get_str(f, "description").map(str::to_string),
                parameters: Schema::decoded(shared, Format::Chat, i, None, f.get("parameters")),
                strict: f.get("strict").and_then(Value::as_bool),
                namespace: None,
                cache_control: t.get("cache_control").cloned(),
            })
        }
        "custom" => {
            let c = t.get("custom").cloned().unwrap_or(Value::Null);
            let name = get_str(&c, "name")
                .ok_or_else(|| WireError::new(format!("tools[{i}].custom.name"), "is required"))?;
            Ok(Tool::Custom {
                name: name.to_string(),
                description: get_str(&c, "description").map(str::to_string),
                format: c.get("format").cloned(),
            })
        }
        _ => Ok(Tool::Hosted {
            format: Format::Chat,
            spec: t.clone(),
        }),
    }
}

/// The JSON schema a custom (free-form) tool is offered as to an upstream without them.
pub(crate) fn custom_tool_schema() -> Value {
    json!({
        "type": "object",
        "properties": {"input": {"type": "string", "description": "The tool's whole input, as free-form text."}},
        "required": ["input"],
    })
}

/// A custom tool's description for an upstream without them: its own, plus its grammar.
pub(crate) fn custom_tool_description(description: Option<&str>, format: Option<&Value>) -> String {
    let mut d = description.unwrap_or_default().to_string();
    if let Some(f) = format.filter(|f| get_str(f, "type") == Some("grammar")) {
        if let Some(def) = get_str(f, "definition") {
            if !d.is_empty() {
                d.push_str("\n\n");
            }
            d.push_str(&format!(
                "The input must follow this {} grammar:\n{def}",
                get_str(f, "syntax").unwrap_or("")
            ));
        }
    }
    d
}

/// A custom tool call's raw input as function arguments, and back.
pub(crate) fn custom_args(input: &str) -> String {
    json!({ "input": input }).to_string()
}

pub(crate) fn custom_input(arguments: &str) -> String {
    serde_json::from_str::<Value>(arguments)
        .ok()
        .and_then(|v| v.get("input").map(text_of))
        .unwrap_or_else(|| arguments.to_string())
}

/// The text of some parts, for a target that takes only text there.
pub(crate) fn join_text(parts: &[Part]) -> String {
    parts
        .iter()
        .filter_map(Part::as_text)
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// A chat message as it is written upstream: everything borrowed from the decoded request
/// (serialized straight from it, never copied into a JSON tree first).
#[derive(Serialize)]
struct OutMessage<'a> {
    role: &'static str,
    /// `null` for an assistant message that only calls tools.
    content: OutContent<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<OutCall<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum OutContent<'a> {
    Text(Cow<'a, str>),
    Parts(Vec<OutPart<'a>>),
    Null(()),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutPart<'a> {
    Text { text: &'a str },
    ImageUrl { image_url: OutImage<'a> },
    File { file: OutFile<'a> },
}

#[derive(Serialize)]
struct OutImage<'a> {
    url: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
}

#[derive(Serialize)]
struct OutFile<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    file_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file_data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    filename: Option<&'a str>,
}

#[derive(Serialize)]
struct OutCall<'a> {
    id: &'a str,
    r#type: &'static str,
    function: OutFunctionCall<'a>,
}

#[derive(Serialize)]
struct OutFunctionCall<'a> {
    name: Cow<'a, str>,
    arguments: Cow<'a, str>,
}

#[derive(Serialize)]
struct OutTool<'a> {
    r#type: &'static str,
    function: OutFunction<'a>,
}

#[derive(Serialize)]
struct OutFunction<'a> {
    name: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<Cow<'a, str>>,
    parameters: Cow<'a, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    strict: Option<bool>,
}

/// A chat-completions request as it is written upstream.
#[derive(Serialize)]
struct OutRequest<'a> {
    model: &'a str,
    messages: Vec<OutMessage<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<OutTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parallel_tool_calls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    n: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_effort: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_cache_key: Option<&'a str>,
}

/// Some parts as chat `content`: a string when they are all text (joined), parts otherwise.
fn out_content<'a>(parts: &'a [Part], notes: &mut Notes, at: &str) -> OutContent<'a> {
    if parts.iter().all(|p| matches!(p, Part::Text { .. })) {
        return OutContent::Text(text_of_parts(parts));
    }
    let mut out = Vec::new();
    for p in parts {
        match p {
            Part::Text { text, .. } => out.push(OutPart::Text { text }),
            Part::Image { source, detail, .. } => match url_of_source_cow(source) {
                Some(url) => out.push(OutPart::ImageUrl {
                    image_url: OutImage {
                        url,
                        detail: detail.as_deref(),
                    },
                }),
                None => notes.push(format!("{at}: an image given by file id left out")),
            },
            Part::File {
                source, filename, ..
            } => {
                let (file_id, file_data) = match source {
                    Source::FileId(id) => (Some(id.as_str()), None),
                    other => (None, url_of_source(other)),
                };
                out.push(OutPart::File {
                    file: OutFile {
                        file_id,
                        file_data,
                        filename: filename.as_deref(),
                    },
                });
            }
        }
    }
    OutContent::Parts(out)
}

/// The text of some parts (joined by a blank line), borrowed when there is one.
fn text_of_parts(parts: &[Part]) -> Cow<'_, str> {
    let mut texts = parts.iter().filter_map(Part::as_text);
    match (texts.next(), texts.next()) {
        (None, _) => Cow::Borrowed(""),
        (Some(one), None) => Cow::Borrowed(one),
        _ => Cow::Owned(join_text(parts)),
    }
}

fn url_of_source_cow(s: &Source) -> Option<Cow<'_, str>> {
    match s {
        Source::Url(u) => Some(Cow::Borrowed(u)),
        other => url_of_source(other).map(Cow::Owned),
    }
}

/// A tool's name as an upstream without namespaces knows it.
fn upstream_name<'a>(names: &ToolNames, name: &'a str, namespace: Option<&str>) -> Cow<'a, str> {
    match namespace {
        None => Cow::Borrowed(name),
        Some(_) => Cow::Owned(names.upstream(name, namespace)),
    }
}

pub(crate) fn encode_request(
    req: &Request,
    target: &Target<'_>,
    names: &ToolNames,
    notes: &mut Notes,
) -> Result<Vec<u8>, WireError> {
    let mut messages: Vec<OutMessage<'_>> = Vec::with_capacity(req.items.len() + 1);
    let message = |role, content| OutMessage {
        role,
        content,
        tool_calls: Vec::new(),
        tool_call_id: None,
    };
    if !req.system.is_empty() {
        messages.push(message(
            "system",
            OutContent::Text(text_of_parts(&req.system)),
        ));
    }
    // Whether the last message is an assistant message that tool calls may join.
    let mut open_assistant = false;
    for (i, item) in req.items.iter().enumerate() {
        match item {
            Item::Message { role, content } => {
                let (role_name, content) = match role {
                    Role::Developer | Role::System => (
                        "system",
                        out_content(content, notes, &format!("input item {i}")),
                    ),
                    Role::User => (
                        "user",
                        out_content(content, notes, &format!("input item {i}")),
                    ),
                    Role::Assistant => ("assistant", OutContent::Text(text_of_parts(content))),
                };
                messages.push(message(role_name, content));
                open_assistant = *role == Role::Assistant;
            }
            Item::ToolCall {
                call_id,
                name,
                namespace,
                arguments,
                kind,
            } => {
                let arguments = match kind {
                    CallKind::Function => Cow::Borrowed(arguments.as_str()),
                    CallKind::Custom => Cow::Owned(custom_args(arguments)),
                };
                let call = OutCall {
                    id: call_id,
                    r#type: "function",
                    function: OutFunctionCall {
                        name: upstream_name(names, name, namespace.as_deref()),
                        arguments,
                    },
                };
                match messages.last_mut() {
                    Some(m) if open_assistant => {
                        if matches!(&m.content, OutContent::Text(t) if t.is_empty()) {
                            m.content = OutContent::Null(());
                        }
                        m.tool_calls.push(call);
                    }
                    _ => {
                        let mut m = message("assistant", OutContent::Null(()));
                        m.tool_calls.push(call);
                        messages.push(m);
                        open_assistant = true;
                    }
                }
            }
            Item::ToolResult {
                call_id,
                content,
                is_error,
                ..
            } => {
                if content.iter().any(|p| !matches!(p, Part::Text { .. })) {
                    notes.push(format!(
                        "input item {i}: images in a tool result left out (chat tool messages carry text)"
                    ));
                }
                let text = text_of_parts(content);
                let text = if *is_error {
                    Cow::Owned(format!("Error: {text}"))
                } else {
                    text
                };
                let mut m = message("tool", OutContent::Text(text));
                m.tool_call_id = Some(call_id);
                messages.push(m);
                open_assistant = false;
            }
            // Reasoning from earlier turns has no place in a chat request.
            Item::Reasoning { .. } => {}
        }
    }
    let mut tools = Vec::with_capacity(req.tools.len());
    for (i, t) in req.tools.iter().enumerate() {
        match t {
            Tool::Function {
                name,
                description,
                parameters,
                strict,
                namespace,
                ..
            } => tools.push(OutTool {
                r#type: "function",
                function: OutFunction {
                    name: upstream_name(names, name, namespace.as_deref()),
                    description: description.as_deref().map(Cow::Borrowed),
                    parameters: Cow::Borrowed(parameters),
                    strict: *strict,
                },
            }),
            Tool::Custom {
                name,
                description,
                format,
            } => tools.push(OutTool {
                r#type: "function",
                function: OutFunction {
                    name: Cow::Borrowed(name),
                    description: Some(Cow::Owned(custom_tool_description(
                        description.as_deref(),
                        format.as_ref(),
                    ))),
                    parameters: Cow::Owned(custom_tool_schema()),
                    strict: None,
                },
            }),
            Tool::Hosted { spec, .. } => notes.push(format!(
                "tools[{i}] ({}): hosted tool left out (a chat-completions upstream cannot run it)",
                get_str(spec, "type").unwrap_or("?")
            )),
        }
    }
    let has_tools = !tools.is_empty();
    let tool_choice = req
        .tool_choice
        .as_ref()
        .filter(|_| has_tools)
        .map(|c| match c {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::None => json!("none"),
            ToolChoice::Required => json!("required"),
            ToolChoice::Named(n) => {
                json!({"type": "function", "function": {"name": names.upstream(n, None)}})
            }
        });
    if req.top_k.is_some() {
        notes.push("top_k: left out (chat completions has no top_k)".into());
    }
    let reasoning_effort = if !req.reasoning.on() {
        None
    } else if !target.caps.reasoning {
        notes.push("reasoning: left out (the model does not take reasoning settings)".into());
        None
    } else {
        req.reasoning.wanted_effort().map(Effort::openai)
    };
    let response_format = match &req.output_format {
        None => None,
        Some(_) if !target.caps.structured_output => {
            return Err(WireError::cannot(
                output_format_field(req),
                "this model cannot be held to a JSON format (structured_output: false)",
            ))
        }
        Some(OutputFormat::JsonObject) => Some(json!({"type": "json_object"})),
        Some(OutputFormat::JsonSchema {
            name,
            schema,
            strict,
            description,
        }) => {
            let mut s = json!({"name": name, "schema": schema});
            if let Some(st) = strict {
                s["strict"] = json!(st);
            }
            if let Some(d) = description {
                s["description"] = json!(d);
            }
            Some(json!({"type": "json_schema", "json_schema": s}))
        }
    };
    // Reasoning models take only the newer name of the output cap; other OpenAI-compatible
    // servers may know only the older one.
    let (max_tokens, max_completion_tokens) = if target.caps.reasoning {
        (None, req.max_output_tokens)
    } else {
        (req.max_output_tokens, None)
    };
    let out = OutRequest {
        model: target.model,
        messages,
        tool_choice,
        parallel_tool_calls: req.parallel_tool_calls.filter(|_| has_tools),
        tools,
        max_tokens,
        max_completion_tokens,
        temperature: req.temperature,
        top_p: req.top_p,
        stop: &req.stop,
        n: req.n,
        stream: req.stream,
        stream_options: req.stream.then(|| json!({"include_usage": true})),
        reasoning_effort,
        response_format,
        user: req.user.as_deref(),
        prompt_cache_key: req.prompt_cache_key.as_deref(),
    };
    serde_json::to_vec(&out).map_err(|e| WireError::new("", e.to_string()))
}

/// The client's name for the output-format field (for errors).
pub(crate) fn output_format_field(req: &Request) -> &'static str {
    match req.origin {
        Some(Format::Responses) => "text.format",
        Some(Format::Messages) => "output_config.format",
        Some(Format::Chat) | None => "response_format",
    }
}

// ---------------------------------------------------------------------------------------------
// Answers

/// Reads chat's `usage` object.
pub fn decode_usage(u: &Value) -> Option<Usage> {
    if !u.is_object() {
        return None;
    }
    let prompt = get_u64(u, "prompt_tokens").unwrap_or(0);
    let details = u.get("prompt_tokens_details");
    let cached = details
        .and_then(|d| get_u64(d, "cached_tokens"))
        .unwrap_or(0)
        .min(prompt);
    let written = details
        .and_then(|d| get_u64(d, "cache_write_tokens"))
        .unwrap_or(0)
        .min(prompt - cached);
    Some(Usage {
        input: prompt - cached - written,
        cache_read: cached,
        cache_write: written,
        output: get_u64(u, "completion_tokens").unwrap_or(0),
        reasoning: u
            .get("completion_tokens_details")
            .and_then(|d| get_u64(d, "reasoning_tokens"))
            .unwrap_or(0),
    })
}

pub(crate) fn encode_usage(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt(),
        "completion_tokens": u.output,
        "total_tokens": u.prompt() + u.output,
        "prompt_tokens_details": {"cached_tokens": u.cache_read, "cache_write_tokens": u.cache_write},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning},
    })
}

fn decode_stop(finish: &str) -> Stop {
    match finish {
        "length" => Stop::MaxTokens,
        "tool_calls" | "function_call" => Stop::ToolUse,
        "content_filter" => Stop::ContentFilter,
        _ => Stop::End,
    }
}

fn encode_stop(stop: &Stop, has_calls: bool) -> &'static str {
    match stop {
        Stop::MaxTokens => "length",
        Stop::ToolUse => "tool_calls",
        Stop::ContentFilter => "content_filter",
        Stop::End | Stop::StopSequence(_) if has_calls => "tool_calls",
        Stop::End | Stop::StopSequence(_) => "stop",
    }
}

pub(crate) fn decode_response(v: &Value) -> Result<Response, WireError> {
    let choice = v
        .get("choices")
        .and_then(|c| c.get(0))
        .ok_or_else(|| WireError::new("choices", "the answer has no choice"))?;
    let message = choice.get("message").cloned().unwrap_or(Value::Null);
    let mut items = Vec::new();
    let mut msg = message.clone();
    if let Some(o) = msg.as_object_mut() {
        o.insert("role".into(), json!("assistant"));
    }
    decode_message(&msg, 0, &mut items)?;
    Ok(Response {
        id: get_str(v, "id").map(str::to_string),
        model: get_str(v, "model").map(str::to_string),
        output: items,
        stop: decode_stop(get_str(choice, "finish_reason").unwrap_or("stop")),
        usage: v.get("usage").and_then(decode_usage),
    })
}

fn encode_call(
    names: &ToolNames,
    call_id: &str,
    name: &str,
    arguments: &str,
    kind: CallKind,
) -> Value {
    let client = names.client(name);
    match (kind, client.kind) {
        (CallKind::Custom, _) | (_, CallKind::Custom) => {
            let input = if kind == CallKind::Custom {
                arguments.to_string()
            } else {
                custom_input(arguments)
            };
            json!({"id": call_id, "type": "custom", "custom": {"name": client.name, "input": input}})
        }
        _ => json!({"id": call_id, "type": "function",
                    "function": {"name": client.name, "arguments": arguments}}),
    }
}

pub(crate) fn encode_response(r: &Response, echo: &Echo) -> Value {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for item in &r.output {
        match item {
            Item::Message { content, .. } => text.push_str(&join_text(content)),
            Item::Reasoning { text: t, .. } => reasoning.push_str(t),
            Item::ToolCall {
                call_id,
                name,
                arguments,
                kind,
                ..
            } => calls.push(encode_call(&echo.names, call_id, name, arguments, *kind)),
            Item::ToolResult { .. } => {}
        }
    }
    let mut message = json!({
        "role": "assistant",
        "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) },
        "refusal": null,
    });
    if !reasoning.is_empty() {
        message["reasoning_content"] = json!(reasoning);
    }
    let has_calls = !calls.is_empty();
    if has_calls {
        message["tool_calls"] = Value::Array(calls);
    }
    let mut out = json!({
        "id": r.id.clone().unwrap_or_else(|| "chatcmpl".into()),
        "object": "chat.completion",
        "created": if echo.created > 0 { echo.created } else { unix_now() },
        "model": r.model.clone().unwrap_or_default(),
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": encode_stop(&r.stop, has_calls),
        }],
    });
    out["usage"] = encode_usage(&r.usage.unwrap_or_default());
    out
}

// ---------------------------------------------------------------------------------------------
// Streams

/// `chat.completion.chunk` events → [`Event`]s.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    started: bool,
    /// Per chat tool-call index: the call id seen there and the event index given to it.
    calls: Vec<(u64, String, u64)>,
    next_call: u64,
}

impl StreamDecoder {
    pub fn event(&mut self, data: &[u8], out: &mut Vec<Event>) {
        if data.trim_ascii() == b"[DONE]" {
            out.push(Event::Done);
            return;
        }
        let Ok(v) = serde_json::from_slice::<Value>(data) else {
            return;
        };
        if let Some(e) = v.get("error").filter(|e| !e.is_null()) {
            out.push(Event::Error {
                message: get_str(e, "message")
                    .unwrap_or("the upstream reported an error")
                    .to_string(),
                kind: get_str(e, "code")
                    .or_else(|| get_str(e, "type"))
                    .unwrap_or("api_error")
                    .to_string(),
            });
            return;
        }
        if !self.started {
            self.started = true;
            out.push(Event::Start {
                id: get_str(&v, "id").map(str::to_string),
                model: get_str(&v, "model").map(str::to_string),
            });
        }
        if let Some(choice) = v.get("choices").and_then(|c| c.get(0)) {
            let delta = choice.get("delta").cloned().unwrap_or(Value::Null);
            let reasoning =
                get_str(&delta, "reasoning_content").or_else(|| get_str(&delta, "reasoning"));
            if let Some(t) = reasoning.filter(|t| !t.is_empty()) {
                out.push(Event::Reasoning(t.to_string()));
            }
            if let Some(t) = get_str(&delta, "content").filter(|t| !t.is_empty()) {
                out.push(Event::Text(t.to_string()));
            }
            if let Some(t) = get_str(&delta, "refusal").filter(|t| !t.is_empty()) {
                out.push(Event::Text(t.to_string()));
            }
            for call in delta
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                self.tool_call(call, out);
            }
            if let Some(r) = get_str(choice, "finish_reason") {
                out.push(Event::Stop(decode_stop(r)));
            }
        }
        if let Some(u) = v.get("usage").and_then(decode_usage) {
            out.push(Event::Usage(u));
        }
    }

    fn tool_call(&mut self, call: &Value, out: &mut Vec<Event>) {
        let chat_index = get_u64(call, "index").unwrap_or(0);
        let custom = get_str(call, "type") == Some("custom");
        let f = if custom {
            call.get("custom")
        } else {
            call.get("function")
        }
        .cloned()
        .unwrap_or(Value::Null);
        let id = get_str(call, "id").filter(|id| !id.is_empty());
        let known = self
            .calls
            .iter()
            .rposition(|(i, seen, _)| *i == chat_index && id.is_none_or(|id| id == seen));
        let index = match known {
            Some(k) => self.calls[k].2,
            None => {
                let index = self.next_call;
                self.next_call += 1;
                let call_id = id
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("call_{index}"));
                self.calls.push((chat_index, call_id.clone(), index));
                out.push(Event::ToolCall {
                    index,
                    call_id,
                    name: get_str(&f, "name").unwrap_or_default().to_string(),
                    namespace: None,
                    kind: if custom {
                        CallKind::Custom
                    } else {
                        CallKind::Function
                    },
                });
                index
            }
        };
        let args = if custom {
            get_str(&f, "input")
        } else {
            get_str(&f, "arguments")
        };
        if let Some(a) = args.filter(|a| !a.is_empty()) {
            out.push(Event::ToolArgs {
                index,
                delta: a.to_string(),
            });
        }
    }
}

/// [`Event`]s → `chat.completion.chunk` events ending `data: [DONE]`.
#[derive(Debug)]
pub struct StreamEncoder {
    echo: Echo,
    id: String,
    model: String,
    created: u64,
    started: bool,
    ended: bool,
    /// Event tool-call index → (chat index, custom for the client).
    calls: Vec<(u64, u64, bool)>,
    /// Custom calls' argument text, held until the call is complete.
    custom_args: Vec<(u64, String)>,
    stop: Stop,
    usage: Option<Usage>,
}

impl StreamEncoder {
    pub fn new(echo: Echo) -> Self {
        Self {
            echo,
            id: "chatcmpl".into(),
            model: String::new(),
            created: unix_now(),
            started: false,
            ended: false,
            calls: Vec::new(),
            custom_args: Vec::new(),
            stop: Stop::End,
            usage: None,
        }
    }

    pub fn ended(&self) -> bool {
        self.ended
    }

    fn chunk(&self, out: &mut Vec<u8>, delta: Value, finish: Option<&str>) {
        let v = json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        sse(out, None, &v);
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.started = true;
            self.chunk(out, json!({"role": "assistant", "content": ""}), None);
        }
    }

    fn flush_custom(&mut self, out: &mut Vec<u8>) {
        for (index, args) in std::mem::take(&mut self.custom_args) {
            if let Some(&(_, n, _)) = self.calls.iter().find(|c| c.0 == index) {
                let input = custom_input(&args);
                self.chunk(
                    out,
                    json!({"tool_calls": [{"index": n, "custom": {"input": input}}]}),
                    None,
                );
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
                self.start(out);
            }
            Event::Usage(u) => self.usage = Some(*u),
            Event::Text(t) => {
                self.start(out);
                self.chunk(out, json!({ "content": t }), None);
            }
            Event::Reasoning(t) => {
                self.start(out);
                self.chunk(out, json!({ "reasoning_content": t }), None);
            }
            Event::ReasoningSealed(_) | Event::RedactedReasoning(_) | Event::EndBlock => {}
            Event::ToolCall {
                index,
                call_id,
                name,
                kind,
                ..
            } => {
                self.start(out);
                self.flush_custom(out);
                let n = self.calls.len() as u64;
                let client = self.echo.names.client(name);
                let custom = *kind == CallKind::Custom || client.kind == CallKind::Custom;
                self.calls.push((*index, n, custom));
                let call = if custom {
                    self.custom_args.push((*index, String::new()));
                    json!({"index": n, "id": call_id, "type": "custom",
                           "custom": {"name": client.name, "input": ""}})
                } else {
                    json!({"index": n, "id": call_id, "type": "function",
                           "function": {"name": client.name, "arguments": ""}})
                };
                self.chunk(out, json!({ "tool_calls": [call] }), None);
            }
            Event::ToolArgs { index, delta } => {
                let Some(&(_, n, custom)) = self.calls.iter().rev().find(|c| c.0 == *index) else {
                    return;
                };
                if custom {
                    if let Some((_, a)) = self.custom_args.iter_mut().find(|c| c.0 == *index) {
                        a.push_str(delta);
                    }
                } else {
                    self.chunk(
                        out,
                        json!({"tool_calls": [{"index": n, "function": {"arguments": delta}}]}),
                        None,
                    );
                }
            }
            Event::Stop(s) => self.stop = s.clone(),
            Event::Error { message, kind } => {
                let v = json!({"error": {"message": message, "type": "api_error",
                                         "param": null, "code": kind}});
                sse(out, None, &v);
                self.ended = true;
            }
            Event::Done => {
                self.start(out);
                self.flush_custom(out);
                let finish = encode_stop(&self.stop, !self.calls.is_empty());
                self.chunk(out, json!({}), Some(finish));
                if self.echo.include_usage {
                    let u = self.usage.unwrap_or_default();
                    let v = json!({
                        "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                        "model": self.model, "choices": [], "usage": encode_usage(&u),
                    });
                    sse(out, None, &v);
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
                self.ended = true;
            }
        }
    }
}
