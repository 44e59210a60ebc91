//! The three wire formats dualrouter speaks, and the translation among them.
//!
//! - [`Format::Chat`]: OpenAI chat completions (`/v1/chat/completions`),
//! - [`Format::Responses`]: the OpenAI Responses API (`/v1/responses`),
//! - [`Format::Messages`]: Anthropic Messages (`/v1/messages`).
//!
//! Each format has one module ([`chat`], [`responses`], [`messages`]) that decodes its requests,
//! answers and stream events into the [`ir`] and encodes them back. A translation is a decode
//! in the client's format and an encode in the upstream's (and the reverse for the answer), so
//! every pair of formats is served by three decoders and three encoders rather than six
//! pairwise translators. [`StreamTranslator`] chains a decoder and an encoder for a stream.
//!
//! A request whose client and upstream speak the same format is not translated: it is
//! forwarded as sent, with the fixes of [`prepare_native`] only.
//!
//! Everything here is a pure function over JSON: no I/O, nothing that can block, no panics
//! (fuzzed in `fuzz/`). What is carried across and what is not is tabled in
//! `docs/translation.md`.

mod chat;
pub mod ir;
mod messages;
mod names;
mod responses;
mod seal;
mod tokens;
mod util;

use std::sync::Arc;

use serde_json::Value;

pub use chat::decode_usage as decode_chat_usage;
pub use ir::{Event, Obj, Request, Response, Schema, Usage};
pub use names::ToolNames;
pub use responses::{final_response, EchoFields};
pub use tokens::estimate as estimate_tokens;

/// The `anthropic-version` sent to Anthropic upstreams unless the client or the provider's
/// `headers` name another.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// A wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// OpenAI chat completions.
    Chat,
    /// Anthropic Messages.
    Messages,
    /// The OpenAI Responses API.
    Responses,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::Messages => "messages",
            Self::Responses => "responses",
        }
    }
}

/// A request that is malformed, or that cannot be expressed for an upstream of another
/// format: `field` names the request field at fault (answered as a 400 naming it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    pub field: String,
    pub message: String,
    /// Valid in its own format, but not translatable: an upstream of the client's format can
    /// still take it as sent.
    pub untranslatable: bool,
}

impl WireError {
    /// A malformed request.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
            untranslatable: false,
        }
    }

    /// A valid request that no other format can express.
    pub fn cannot(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            untranslatable: true,
            ..Self::new(field, message)
        }
    }
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for WireError {}

/// What an upstream model can take beyond the basics of its format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Caps {
    /// It reasons and takes reasoning settings (OpenAI `reasoning_effort`/`reasoning`,
    /// Anthropic `thinking`); without it they are left out.
    pub reasoning: bool,
    /// It can be held to a JSON schema (OpenAI `response_format`/`text.format`, Anthropic
    /// `output_config.format`); without it a request asking for one cannot go there.
    pub structured_output: bool,
}

/// The upstream a request is encoded for.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub format: Format,
    /// The id the upstream knows the model by.
    pub model: &'a str,
    pub caps: Caps,
}

/// What a translation left out or changed for its upstream, one line each (kept in the
/// decision log).
pub type Notes = Vec<String>;

/// A request translated for one upstream.
#[derive(Debug, Clone)]
pub struct Translated {
    /// The JSON body, ready to send.
    pub body: Vec<u8>,
    pub notes: Notes,
}

impl Translated {
    /// The body as a JSON object (for inspection; the proxy sends [`Translated::body`]).
    pub fn json(&self) -> Obj {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
}

/// Decodes a request body of `format`.
pub fn decode_request(format: Format, body: &Obj) -> Result<Request, WireError> {
    match format {
        Format::Chat => chat::decode_request(body, None),
        Format::Messages => messages::decode_request(body, None),
        Format::Responses => responses::decode_request(body, None),
    }
}

/// [`decode_request`] of a body kept alive beside the result: the tools' schemas (most of an
/// agent's request) are read from it where they are instead of copied.
pub fn decode_shared(format: Format, body: &Arc<Obj>) -> Result<Request, WireError> {
    match format {
        Format::Chat => chat::decode_request(body, Some(body)),
        Format::Messages => messages::decode_request(body, Some(body)),
        Format::Responses => responses::decode_request(body, Some(body)),
    }
}

/// Whether a request decoded from another format can go to an upstream of `format` with
/// `caps` at all (what [`encode_request`] would refuse whatever the conversation holds).
pub fn check(req: &Request, format: Format, caps: Caps) -> Result<(), WireError> {
    if req.n.is_some_and(|n| n > 1) && format != Format::Chat {
        return Err(WireError::cannot(
            "n",
            format!(
                "a {} upstream gives one answer per request",
                format.as_str()
            ),
        ));
    }
    if req.output_format.is_some() && !caps.structured_output {
        return Err(WireError::cannot(
            chat::output_format_field(req),
            "this model cannot be held to a JSON format (structured_output: false)",
        ));
    }
    if !req.stop.is_empty() && format == Format::Responses {
        return Err(WireError::cannot(
            "stop",
            "a Responses upstream has no stop sequences",
        ));
    }
    Ok(())
}

/// Whether a request can go as sent to an upstream of its own format with `caps`.
pub fn check_native(format: Format, body: &Obj, caps: Caps) -> Result<(), WireError> {
    let (field, format_value) = match format {
        Format::Chat => ("response_format", body.get("response_format")),
        Format::Responses => (
            "text.format",
            body.get("text").and_then(|t| t.get("format")),
        ),
        Format::Messages => (
            "output_config.format",
            body.get("output_config").and_then(|o| o.get("format")),
        ),
    };
    let structured = format_value
        .and_then(|f| f.get("type"))
        .and_then(Value::as_str)
        .is_some_and(|t| t.starts_with("json"));
    if structured && !caps.structured_output {
        return Err(WireError::cannot(
            field,
            "this model cannot be held to a JSON format (structured_output: false)",
        ));
    }
    Ok(())
}

/// Encodes a decoded request for `target`.
pub fn encode_request(req: &Request, target: &Target<'_>) -> Result<Translated, WireError> {
    check(req, target.format, target.caps)?;
    let mut notes = Notes::new();
    for f in &req.unmapped {
        notes.push(format!(
            "{f}: left out (no counterpart in the {} format)",
            target.format.as_str()
        ));
    }
    let names = ToolNames::new(req);
    let body = match target.format {
        Format::Chat => chat::encode_request(req, target, &names, &mut notes)?,
        Format::Messages => to_vec(&messages::encode_request(req, target, &names, &mut notes)?),
        Format::Responses => to_vec(&responses::encode_request(req, target, &mut notes)?),
    };
    Ok(Translated { body, notes })
}

fn to_vec(body: &Obj) -> Vec<u8> {
    // Serializing a map of JSON values cannot fail.
    serde_json::to_vec(body).unwrap_or_default()
}

/// The fixes a request forwarded in its own format still needs: the model id, and reasoning
/// tokens another provider issued taken out (see [`seal`]). Returns what was changed.
pub fn prepare_native(format: Format, body: &mut Obj, target: &Target<'_>) -> Notes {
    body.insert("model".into(), Value::String(target.model.to_string()));
    match format {
        Format::Chat => Notes::new(),
        Format::Messages => messages::prepare_native(body),
        Format::Responses => responses::prepare_native(body),
    }
}

/// Decodes a whole (non-streamed) answer of `format`.
pub fn decode_response(format: Format, v: &Value) -> Result<Response, WireError> {
    match format {
        Format::Chat => chat::decode_response(v),
        Format::Messages => messages::decode_response(v),
        Format::Responses => responses::decode_response(v),
    }
}

/// The usage a whole (non-streamed) answer of `format` reports, read without building the rest
/// of the answer: its other fields are skipped as they are parsed. `None` when the body is not
/// a JSON object or carries no usage.
pub fn usage_of_answer(format: Format, body: &[u8]) -> Option<Usage> {
    #[derive(serde::Deserialize)]
    struct UsageOnly {
        #[serde(default)]
        usage: Option<Value>,
    }
    let usage = serde_json::from_slice::<UsageOnly>(body).ok()?.usage?;
    match format {
        Format::Chat => chat::decode_usage(&usage),
        Format::Messages => messages::decode_usage(&usage),
        Format::Responses => responses::decode_usage(&usage),
    }
}

/// How an answer is presented to the client: what its request said that the answer repeats or
/// depends on.
#[derive(Debug, Clone, Default)]
pub struct Echo {
    /// Maps the tool names the upstream saw back to the client's.
    pub names: ToolNames,
    /// Chat: the client asked for the usage chunk.
    pub include_usage: bool,
    /// Anthropic: the prompt's estimated size, for `message_start` before the upstream says.
    pub input_estimate: u64,
    /// Responses: the response id (minted by the proxy) and creation time.
    pub response_id: String,
    pub created: u64,
    /// Responses: the request's fields a response object repeats (`instructions`, `tools`,
    /// `tool_choice`, `temperature`, `metadata`, `previous_response_id`, …).
    pub fields: responses::EchoFields,
}

/// Encodes a whole answer in `format`, as JSON text.
pub fn encode_response(format: Format, r: &Response, echo: &Echo) -> String {
    match format {
        Format::Chat => chat::encode_response(r, echo).to_string(),
        Format::Messages => messages::encode_response(r, echo).to_string(),
        Format::Responses => responses::encode_response(r, echo),
    }
}

/// An error body in `format`: OpenAI's `{"error": {message, type, param, code}}` (chat and
/// Responses) or Anthropic's `{"type": "error", "error": {type, message}}`.
pub fn error_body(
    format: Format,
    status: u16,
    message: &str,
    openai_type: &str,
    code: Option<&str>,
    param: Option<&str>,
) -> Value {
    match format {
        Format::Chat | Format::Responses => serde_json::json!({
            "error": {"message": message, "type": openai_type, "param": param, "code": code}
        }),
        Format::Messages => serde_json::json!({
            "type": "error",
            "error": {"type": messages::error_type(status), "message": message}
        }),
    }
}

/// An upstream's error answer (its status and body, in the upstream's format) as the client's
/// format's error JSON, keeping the provider's message.
pub fn translate_error(from: Format, to: Format, status: u16, body: &[u8]) -> Value {
    let (message, ty) = util::error_message(body);
    match to {
        Format::Messages => serde_json::json!({
            "type": "error",
            "error": {"type": messages::error_type(status), "message": message}
        }),
        Format::Chat | Format::Responses => {
            let ty = match (from, ty.as_deref()) {
                (
                    _,
                    Some(
                        t @ ("invalid_request_error"
                        | "authentication_error"
                        | "permission_error"
                        | "rate_limit_error"),
                    ),
                ) => t.to_string(),
                (_, Some("not_found_error" | "request_too_large")) => {
                    "invalid_request_error".into()
                }
                _ => util::openai_error_type(status).to_string(),
            };
            serde_json::json!({
                "error": {"message": message, "type": ty, "param": null, "code": null}
            })
        }
    }
}

/// Decodes one format's stream events into [`Event`]s.
#[derive(Debug)]
pub enum Decoder {
    Chat(chat::StreamDecoder),
    Messages(messages::StreamDecoder),
    Responses(responses::StreamDecoder),
}

impl Decoder {
    pub fn new(format: Format) -> Self {
        match format {
            Format::Chat => Self::Chat(Default::default()),
            Format::Messages => Self::Messages(Default::default()),
            Format::Responses => Self::Responses(Default::default()),
        }
    }

    /// One upstream event's `data`.
    pub fn event(&mut self, data: &[u8], out: &mut Vec<Event>) {
        match self {
            Self::Chat(d) => d.event(data, out),
            Self::Messages(d) => d.event(data, out),
            Self::Responses(d) => d.event(data, out),
        }
    }
}

/// Encodes [`Event`]s as one format's stream.
#[derive(Debug)]
pub enum Encoder {
    Chat(chat::StreamEncoder),
    Messages(messages::StreamEncoder),
    Responses(Box<responses::StreamEncoder>),
}

impl Encoder {
    pub fn new(format: Format, echo: Echo) -> Self {
        match format {
            Format::Chat => Self::Chat(chat::StreamEncoder::new(echo)),
            Format::Messages => Self::Messages(messages::StreamEncoder::new(echo)),
            Format::Responses => Self::Responses(Box::new(responses::StreamEncoder::new(echo))),
        }
    }

    pub fn event(&mut self, ev: &Event, out: &mut Vec<u8>) {
        match self {
            Self::Chat(e) => e.event(ev, out),
            Self::Messages(e) => e.event(ev, out),
            Self::Responses(e) => e.event(ev, out),
        }
    }

    /// Whether the client's stream has been ended (by a finish or an error).
    pub fn ended(&self) -> bool {
        match self {
            Self::Chat(e) => e.ended(),
            Self::Messages(e) => e.ended(),
            Self::Responses(e) => e.ended(),
        }
    }
}

/// Everything a stream said, gathered as it passes (for usage, the decision log and stored
/// responses).
#[derive(Debug, Default, Clone)]
pub struct Collector {
    pub response: Response,
    /// Tool-call index → position in `response.output`.
    calls: Vec<(u64, usize)>,
    pub errored: bool,
    pub done: bool,
}

impl Collector {
    pub fn event(&mut self, ev: &Event) {
        let r = &mut self.response;
        match ev {
            Event::Start { id, model } => {
                if r.id.is_none() {
                    r.id.clone_from(id);
                }
                if r.model.is_none() {
                    r.model.clone_from(model);
                }
            }
            Event::Usage(u) => r.usage = Some(*u),
            Event::Text(t) => match r.output.last_mut() {
                Some(ir::Item::Message { content, .. }) => match content.last_mut() {
                    Some(ir::Part::Text { text, .. }) => text.push_str(t),
                    _ => content.push(ir::Part::text(t.clone())),
                },
                _ => r.output.push(ir::Item::Message {
                    role: ir::Role::Assistant,
                    content: vec![ir::Part::text(t.clone())],
                }),
            },
            Event::Reasoning(t) => match r.output.last_mut() {
                Some(ir::Item::Reasoning {
                    text,
                    sealed: None,
                    redacted: false,
                }) => text.push_str(t),
                _ => r.output.push(ir::Item::Reasoning {
                    text: t.clone(),
                    sealed: None,
                    redacted: false,
                }),
            },
            Event::ReasoningSealed(s) => match r.output.last_mut() {
                Some(ir::Item::Reasoning {
                    sealed: sealed @ None,
                    redacted: false,
                    ..
                }) => *sealed = Some(s.clone()),
                _ => r.output.push(ir::Item::Reasoning {
                    text: String::new(),
                    sealed: Some(s.clone()),
                    redacted: false,
                }),
            },
            Event::RedactedReasoning(s) => r.output.push(ir::Item::Reasoning {
                text: String::new(),
                sealed: Some(s.clone()),
                redacted: true,
            }),
            Event::ToolCall {
                index,
                call_id,
                name,
                namespace,
                kind,
            } => {
                self.calls.push((*index, r.output.len()));
                r.output.push(ir::Item::ToolCall {
                    call_id: call_id.clone(),
                    name: name.clone(),
                    namespace: namespace.clone(),
                    arguments: String::new(),
                    kind: *kind,
                });
            }
            Event::ToolArgs { index, delta } => {
                if let Some(&(_, pos)) = self.calls.iter().rev().find(|(i, _)| i == index) {
                    if let Some(ir::Item::ToolCall { arguments, .. }) = r.output.get_mut(pos) {
                        arguments.push_str(delta);
                    }
                }
            }
            Event::EndBlock => {}
            Event::Stop(s) => r.stop = s.clone(),
            Event::Error { .. } => self.errored = true,
            Event::Done => self.done = true,
        }
    }
}

/// A stream translated event by event: the upstream's format decoded, the client's encoded.
#[derive(Debug)]
pub struct StreamTranslator {
    decoder: Decoder,
    encoder: Encoder,
    collector: Collector,
    events: Vec<Event>,
}

impl StreamTranslator {
    pub fn new(from: Format, to: Format, echo: Echo) -> Self {
        Self {
            decoder: Decoder::new(from),
            encoder: Encoder::new(to, echo),
            collector: Collector::default(),
            events: Vec::new(),
        }
    }

    /// Translates one upstream event's `data`; returns the client's bytes (maybe none).
    pub fn event(&mut self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if self.encoder.ended() {
            return out;
        }
        self.events.clear();
        self.decoder.event(data, &mut self.events);
        for ev in &self.events {
            self.collector.event(ev);
            self.encoder.event(ev, &mut out);
        }
        out
    }

    /// The upstream's stream ended: ends the client's (once), even if the upstream never said
    /// it was done.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.encoder.ended() {
            self.collector.event(&Event::Done);
            self.encoder.event(&Event::Done, &mut out);
        }
        out
    }

    /// Ends the client's stream with an error (a failure on the proxy's side after the first
    /// byte).
    pub fn fail(&mut self, message: &str, kind: &str) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.encoder.ended() {
            let ev = Event::Error {
                message: message.to_string(),
                kind: kind.to_string(),
            };
            self.collector.event(&ev);
            self.encoder.event(&ev, &mut out);
        }
        out
    }

    pub fn usage(&self) -> Option<Usage> {
        self.collector.response.usage
    }

    /// The answer as far as it went.
    pub fn collected(&self) -> &Collector {
        &self.collector
    }

    pub fn ended(&self) -> bool {
        self.encoder.ended()
    }

    /// A Responses client's `response` object, once its stream has ended.
    pub fn final_response(&self) -> Option<Value> {
        match &self.encoder {
            Encoder::Responses(e) if e.ended() => Some(e.response()),
            _ => None,
        }
    }
}
