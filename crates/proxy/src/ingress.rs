//! Ingress: which endpoint a request is for, whether its client key is good, its body read
//! whole (up to the configured cap, within the client timeout) and parsed.

use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;
use serde_json::Value;

use dualrouter_wire as wire;

use crate::error::{ApiError, Format};
use dualrouter_core::config::validated::ClientAuth;
use dualrouter_core::config::Limits;
use dualrouter_core::conversation::Conversation;

/// The endpoints the proxy port serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    ChatCompletions,
    /// Anthropic's Messages API.
    Messages,
    /// The OpenAI Responses API.
    Responses,
    /// `GET /v1/responses/{id}`: a stored response.
    ResponseGet(String),
    /// `DELETE /v1/responses/{id}`.
    ResponseDelete(String),
    /// `GET /v1/responses/{id}/input_items`.
    ResponseInputItems(String),
    /// Anthropic's `POST /v1/messages/count_tokens`.
    CountTokens,
    Embeddings,
    /// Dry run: the routing decision as JSON, nothing sent upstream.
    Route,
    /// An outcome score for a logged decision.
    Feedback,
    Models,
    /// `GET /v1/models/{id}`.
    Model(String),
    Health,
    /// `GET /readyz`: store, encoder, checkpoint, a healthy model.
    Ready,
}

impl Endpoint {
    /// The wire format errors on this endpoint use.
    pub(crate) fn format(&self) -> Format {
        match self {
            Self::Messages | Self::CountTokens => Format::Messages,
            Self::Responses
            | Self::ResponseGet(_)
            | Self::ResponseDelete(_)
            | Self::ResponseInputItems(_) => Format::Responses,
            Self::ChatCompletions
            | Self::Embeddings
            | Self::Route
            | Self::Feedback
            | Self::Models
            | Self::Model(_)
            | Self::Health
            | Self::Ready => Format::Chat,
        }
    }
}

/// A path segment with its percent-escapes decoded (model ids may hold `/`, sent as `%2F`).
fn path_segment(s: &str) -> Result<String, ApiError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).map_err(|_| ApiError::BadRequest("the path is not valid UTF-8".into()))
}

/// Matches method and path (the query string, e.g. Claude Code's `?beta=true`, is ignored).
pub(crate) fn endpoint(method: &http::Method, path: &str) -> Result<Endpoint, ApiError> {
    let path = path.trim_end_matches('/');
    let not_found = || ApiError::NotFound {
        method: method.to_string(),
        path: path.to_string(),
    };
    let bare = path.strip_prefix("/v1").unwrap_or(path);
    let (ep, allowed): (Endpoint, &[http::Method]) = match bare {
        "/chat/completions" => (Endpoint::ChatCompletions, &[http::Method::POST]),
        "/messages" => (Endpoint::Messages, &[http::Method::POST]),
        "/messages/count_tokens" => (Endpoint::CountTokens, &[http::Method::POST]),
        "/responses" => (Endpoint::Responses, &[http::Method::POST]),
        "/embeddings" => (Endpoint::Embeddings, &[http::Method::POST]),
        "/models" => (Endpoint::Models, &[http::Method::GET]),
        "/route" if path.starts_with("/v1") => (Endpoint::Route, &[http::Method::POST]),
        "/feedback" if path.starts_with("/v1") => (Endpoint::Feedback, &[http::Method::POST]),
        "/healthz" if path == "/healthz" => (Endpoint::Health, &[http::Method::GET]),
        "/readyz" if path == "/readyz" => (Endpoint::Ready, &[http::Method::GET]),
        _ => {
            if let Some(rest) = bare.strip_prefix("/models/").filter(|r| !r.is_empty()) {
                (Endpoint::Model(path_segment(rest)?), &[http::Method::GET])
            } else if let Some(rest) = bare.strip_prefix("/responses/") {
                match rest.split_once('/') {
                    Some((id, "input_items")) if !id.is_empty() => (
                        Endpoint::ResponseInputItems(path_segment(id)?),
                        &[http::Method::GET],
                    ),
                    None if !rest.is_empty() => {
                        let id = path_segment(rest)?;
                        if *method == http::Method::DELETE {
                            (Endpoint::ResponseDelete(id), &[http::Method::DELETE])
                        } else {
                            (Endpoint::ResponseGet(id), &[http::Method::GET])
                        }
                    }
                    _ => return Err(not_found()),
                }
            } else {
                return Err(not_found());
            }
        }
    };
    let ok = allowed.contains(method)
        || (allowed.contains(&http::Method::GET) && *method == http::Method::HEAD);
    if ok {
        Ok(ep)
    } else {
        Err(ApiError::MethodNotAllowed {
            method: method.to_string(),
            path: path.to_string(),
        })
    }
}

/// Checks the client key (`Authorization: Bearer KEY` or `x-api-key: KEY`) against every
/// configured key in constant time.
pub(crate) fn authorize(
    auth: Option<&ClientAuth>,
    headers: &http::HeaderMap,
) -> Result<(), ApiError> {
    let Some(auth) = auth else {
        return Ok(());
    };
    let presented = presented_key(headers);
    // Check every key (no early exit), so timing says nothing about which key nearly matched.
    let mut ok = false;
    for key in &auth.keys {
        ok |= key.matches(presented.as_bytes());
    }
    if ok && !presented.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// Who a request's stored responses belong to: `key:` and the first 16 hex digits of the
/// client key's SHA-256 when client keys are configured (never the key itself), else
/// `anonymous` (one shared owner: without keys the proxy does not tell clients apart).
pub(crate) fn key_owner(auth: Option<&ClientAuth>, headers: &http::HeaderMap) -> String {
    use sha2::{Digest, Sha256};
    if auth.is_none() {
        return "anonymous".into();
    }
    let presented = presented_key(headers);
    let digest = Sha256::digest(presented.as_bytes());
    format!("key:{}", &hex::encode(digest)[..16])
}

/// The client key a request presents (`Authorization: Bearer KEY` or `x-api-key: KEY`).
pub(crate) fn presented_key(headers: &http::HeaderMap) -> &str {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(str::trim)
        .unwrap_or("")
}

/// The largest declared body [`drain_refused_body`] reads to keep a connection open.
const REFUSED_DRAIN_BYTES: u64 = 64 * 1024;

/// The request's `Content-Length`, when it declares a valid one.
fn declared_length(session: &Session) -> Option<u64> {
    session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Before a refusal (503 `overloaded`) on a request whose body is still unread: reads and drops
/// a body of up to 64 KiB (within `limits.refused_linger_ms`), so the connection can stay open
/// for the client's next request instead of being closed; a larger, chunked or slower body is
/// left, and the connection closed after the answer.
pub(crate) async fn drain_refused_body(session: &mut Session, limits: &Limits) {
    let declared = declared_length(session);
    let expects_continue = session
        .req_header()
        .headers
        .contains_key(http::header::EXPECT);
    if declared.is_some_and(|n| n <= REFUSED_DRAIN_BYTES) && !expects_continue {
        let _ = tokio::time::timeout(limits.refused_linger, session.drain_request_body()).await;
    }
}

/// Reads the whole request body, refusing more than `limits.max_body_bytes` and a client that
/// takes longer than `limits.client_body`.
pub(crate) async fn read_body(session: &mut Session, limits: &Limits) -> Result<Bytes, ApiError> {
    let cap = limits.max_body_bytes;
    let declared = declared_length(session);
    if declared.is_some_and(|n| n > cap as u64) {
        return Err(ApiError::PayloadTooLarge { limit: cap });
    }
    let expects_continue = session
        .req_header()
        .headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue {
        session.write_continue_response().await.map_err(|e| {
            ApiError::BadRequest(format!("cannot answer Expect: 100-continue: {e}"))
        })?;
    }
    let read_all = async {
        let mut buf = BytesMut::with_capacity(declared.map_or(16 * 1024, |n| n as usize));
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) => {
                    if buf.len() + chunk.len() > cap {
                        return Err(ApiError::PayloadTooLarge { limit: cap });
                    }
                    buf.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(buf.freeze()),
                Err(e) => {
                    return Err(ApiError::BadRequest(format!(
                        "cannot read the request body: {e}"
                    )))
                }
            }
        }
    };
    match tokio::time::timeout(limits.client_body, read_all).await {
        Ok(r) => r,
        Err(_) => Err(ApiError::ClientTimeout),
    }
}

/// A chat request in the client's format (chat completions, Responses or Messages): the
/// fields the proxy acts on, and the whole JSON object, so that an upstream of the same format
/// gets it as sent. It stays in the client's format so that it can be translated for any
/// upstream, again for each candidate of a fallback chain (decoded once, on first need).
#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub format: Format,
    pub model: String,
    pub stream: bool,
    /// The client asked for the usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
    /// Shared with the IR, which reads the tools' schemas from it rather than copying them.
    pub body: std::sync::Arc<serde_json::Map<String, Value>>,
    /// The request decoded into the translation IR.
    ir: std::sync::OnceLock<Result<wire::Request, wire::WireError>>,
}

/// The request body as a JSON object, or a 400 saying what it is instead.
fn json_object(body: &[u8]) -> Result<serde_json::Map<String, Value>, ApiError> {
    if body.is_empty() {
        return Err(ApiError::BadRequest(
            "the request body is empty; expected a JSON object".into(),
        ));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the request body is not valid JSON: {e}")))?;
    match v {
        Value::Object(map) => Ok(map),
        _ => Err(ApiError::BadRequest(
            "the request body must be a JSON object".into(),
        )),
    }
}

/// `stream`: absent, null or a boolean.
fn stream_flag(body: &serde_json::Map<String, Value>, err: &str) -> Result<bool, ApiError> {
    match body.get("stream") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ApiError::BadRequest(err.into())),
    }
}

impl ChatRequest {
    fn new(
        format: Format,
        model: String,
        stream: bool,
        include_usage: bool,
        body: serde_json::Map<String, Value>,
    ) -> Self {
        Self {
            format,
            model,
            stream,
            include_usage,
            body: std::sync::Arc::new(body),
            ir: std::sync::OnceLock::new(),
        }
    }

    /// Parses a request of `format`.
    pub fn parse_as(format: Format, body: &[u8]) -> Result<Self, ApiError> {
        match format {
            Format::Chat => Self::parse(body),
            Format::Messages => Self::parse_anthropic(body),
            Format::Responses => Self::parse_responses(body),
        }
    }

    /// Parses and checks an OpenAI chat-completions request.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let body = json_object(body)?;
        let model = match body.get("model") {
            Some(Value::String(m)) if !m.trim().is_empty() => m.clone(),
            Some(_) => {
                return Err(ApiError::BadRequest(
                    "'model' must be a non-empty string".into(),
                ))
            }
            None => {
                return Err(ApiError::BadRequest(
                    "missing required parameter: 'model'".into(),
                ))
            }
        };
        match body.get("messages") {
            Some(Value::Array(m)) if !m.is_empty() => {
                for (i, msg) in m.iter().enumerate() {
                    let role = msg.get("role").and_then(Value::as_str);
                    if role.is_none() {
                        return Err(ApiError::BadRequest(format!(
                            "messages[{i}] must be an object with a string 'role'"
                        )));
                    }
                }
            }
            Some(Value::Array(_)) => {
                return Err(ApiError::BadRequest("'messages' must not be empty".into()));
            }
            Some(_) => return Err(ApiError::BadRequest("'messages' must be an array".into())),
            None => {
                return Err(ApiError::BadRequest(
                    "missing required parameter: 'messages'".into(),
                ))
            }
        }
        let stream = stream_flag(&body, "'stream' must be a boolean")?;
        let include_usage = body
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok(Self::new(Format::Chat, model, stream, include_usage, body))
    }

    /// Parses and checks an Anthropic Messages request (errors read like Anthropic's own).
    /// Messages of role `system` inside `messages` are accepted, as the current API does.
    pub fn parse_anthropic(body: &[u8]) -> Result<Self, ApiError> {
        let body = json_object(body)?;
        let model = match body.get("model") {
            Some(Value::String(m)) if !m.trim().is_empty() => m.clone(),
            Some(_) => {
                return Err(ApiError::BadRequest(
                    "model: must be a non-empty string".into(),
                ))
            }
            None => return Err(ApiError::BadRequest("model: Field required".into())),
        };
        match body.get("max_tokens") {
            Some(n) if n.as_u64().is_some_and(|n| n >= 1) => {}
            Some(_) => {
                return Err(ApiError::BadRequest(
                    "max_tokens: must be an integer of at least 1".into(),
                ))
            }
            None => return Err(ApiError::BadRequest("max_tokens: Field required".into())),
        }
        check_anthropic_messages(&body)?;
        let stream = stream_flag(&body, "stream: must be a boolean")?;
        // Anthropic streams always carry usage; nothing to drop.
        Ok(Self::new(Format::Messages, model, stream, true, body))
    }

    /// Parses and checks a Responses request: the whole request is decoded, so a malformed
    /// input item is a 400 naming it whichever upstream would have served it.
    pub fn parse_responses(body: &[u8]) -> Result<Self, ApiError> {
        let body = json_object(body)?;
        let model = match body.get("model") {
            Some(Value::String(m)) if !m.trim().is_empty() => m.clone(),
            Some(_) => {
                return Err(ApiError::Unsupported(wire::WireError::new(
                    "model",
                    "must be a non-empty string",
                )))
            }
            None => {
                return Err(ApiError::Unsupported(wire::WireError::new(
                    "model",
                    "missing required parameter",
                )))
            }
        };
        match body.get("input") {
            None if body.get("previous_response_id").is_some() => {}
            None => {
                return Err(ApiError::Unsupported(wire::WireError::new(
                    "input",
                    "missing required parameter",
                )))
            }
            Some(Value::String(_) | Value::Array(_)) => {}
            Some(_) => {
                return Err(ApiError::Unsupported(wire::WireError::new(
                    "input",
                    "must be a string or an array of input items",
                )))
            }
        }
        match body.get("previous_response_id") {
            None | Some(Value::Null | Value::String(_)) => {}
            Some(_) => {
                return Err(ApiError::Unsupported(wire::WireError::new(
                    "previous_response_id",
                    "must be a string",
                )))
            }
        }
        let stream = stream_flag(&body, "stream: must be a boolean")?;
        let r = Self::new(Format::Responses, model, stream, true, body);
        // Every item is checked now. What only another format cannot express still goes to a
        // Responses upstream as sent.
        match r
            .ir
            .get_or_init(|| wire::decode_shared(Format::Responses, &r.body))
        {
            Err(e) if !e.untranslatable => Err(ApiError::Unsupported(e.clone())),
            _ => Ok(r),
        }
    }

    /// The request decoded into the translation IR (once).
    pub fn ir(&self) -> Result<&wire::Request, ApiError> {
        self.ir
            .get_or_init(|| wire::decode_shared(self.format, &self.body))
            .as_ref()
            .map_err(|e| ApiError::Unsupported(e.clone()))
    }

    /// Replaces the body (a Responses request whose stored conversation was prepended).
    pub fn set_body(&mut self, body: serde_json::Map<String, Value>) -> Result<(), ApiError> {
        self.body = std::sync::Arc::new(body);
        self.ir = std::sync::OnceLock::new();
        self.ir().map(|_| ())
    }

    /// The conversation as routing reads it, whatever the format.
    pub fn conversation(&self) -> Conversation {
        match self.format {
            Format::Chat | Format::Messages => Conversation::from_openai_messages(self.messages()),
            Format::Responses => Conversation::from_responses(&self.body),
        }
    }

    /// The messages of a chat or Messages request (empty for Responses).
    pub fn messages(&self) -> &[Value] {
        self.body
            .get("messages")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The output cap the request sets, in its format's field.
    pub fn max_output_tokens(&self) -> Option<u64> {
        match self.format {
            Format::Chat => self
                .body
                .get("max_completion_tokens")
                .or_else(|| self.body.get("max_tokens")),
            Format::Messages => self.body.get("max_tokens"),
            Format::Responses => self.body.get("max_output_tokens"),
        }
        .and_then(Value::as_u64)
    }

    /// Whether this request can go to `model` as an upstream of format `upstream` at all
    /// (routing leaves the others out).
    pub fn servable_by(&self, upstream: Format, caps: wire::Caps) -> Result<(), ApiError> {
        if upstream == self.format {
            return wire::check_native(self.format, &self.body, caps)
                .map_err(ApiError::Unsupported);
        }
        let ir = self.ir()?;
        wire::check(ir, upstream, caps).map_err(ApiError::Unsupported)
    }

    /// The body for `target`: as sent (with its model id and the fixes of
    /// [`wire::prepare_native`]) when the formats match, a translation otherwise. Also returns
    /// what the translation left out.
    pub fn body_for(&self, target: &wire::Target<'_>) -> Result<(Bytes, wire::Notes), ApiError> {
        if target.format == Format::Chat && self.format == Format::Chat {
            // The common pass-through: written straight from the parsed body with the model id
            // (and the usage chunk's option) patched in, without a copy of the body first.
            wire::check_native(self.format, &self.body, target.caps)
                .map_err(ApiError::Unsupported)?;
            let patched = PatchedChat {
                body: &self.body,
                model: target.model,
                include_usage: self.stream,
            };
            // Serializing JSON values cannot fail.
            let bytes = serde_json::to_vec(&patched).unwrap_or_default();
            return Ok((Bytes::from(bytes), wire::Notes::new()));
        }
        if target.format == self.format {
            wire::check_native(self.format, &self.body, target.caps)
                .map_err(ApiError::Unsupported)?;
            let mut body = serde_json::Map::clone(&self.body);
            let notes = wire::prepare_native(self.format, &mut body, target);
            if self.format == Format::Chat && self.stream {
                // The usage chunk is captured for the log; passed on only if the client
                // asked for it.
                let opts = body
                    .entry("stream_options")
                    .or_insert_with(|| Value::Object(Default::default()));
                if let Value::Object(o) = opts {
                    o.insert("include_usage".into(), Value::Bool(true));
                } else {
                    *opts = serde_json::json!({ "include_usage": true });
                }
            }
            // Serializing a Map of Values cannot fail.
            return Ok((
                Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
                notes,
            ));
        }
        let ir = self.ir()?;
        let t = wire::encode_request(ir, target).map_err(ApiError::Unsupported)?;
        Ok((Bytes::from(t.body), t.notes))
    }

    /// The body for an OpenAI-compatible upstream when the client spoke chat completions.
    pub fn upstream_body(&self, upstream_model: &str) -> Bytes {
        let target = wire::Target {
            format: Format::Chat,
            model: upstream_model,
            caps: wire::Caps {
                reasoning: true,
                structured_output: true,
            },
        };
        self.body_for(&target).map(|(b, _)| b).unwrap_or_default()
    }
}

/// Anthropic's own checks on `messages` and `system`, with its error wording.
fn check_anthropic_messages(body: &serde_json::Map<String, Value>) -> Result<(), ApiError> {
    match body.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => {
            for (i, msg) in m.iter().enumerate() {
                match msg.get("role").and_then(Value::as_str) {
                    Some("user" | "assistant" | "system") => {}
                    _ => {
                        return Err(ApiError::BadRequest(format!(
                            "messages.{i}.role: must be 'user', 'assistant' or 'system'"
                        )))
                    }
                }
                match msg.get("content") {
                    Some(Value::String(_) | Value::Array(_)) => {}
                    Some(_) => {
                        return Err(ApiError::BadRequest(format!(
                            "messages.{i}.content: must be a string or an array of content blocks"
                        )))
                    }
                    None => {
                        return Err(ApiError::BadRequest(format!(
                            "messages.{i}.content: Field required"
                        )))
                    }
                }
            }
        }
        Some(Value::Array(_)) => {
            return Err(ApiError::BadRequest(
                "messages: at least one message is required".into(),
            ))
        }
        Some(_) => return Err(ApiError::BadRequest("messages: must be an array".into())),
        None => return Err(ApiError::BadRequest("messages: Field required".into())),
    }
    match body.get("system") {
        None | Some(Value::Null | Value::String(_) | Value::Array(_)) => Ok(()),
        Some(_) => Err(ApiError::BadRequest(
            "system: must be a string or an array of text blocks".into(),
        )),
    }
}

/// A `POST /v1/messages/count_tokens` body: a Messages request without `max_tokens`.
pub fn count_tokens_request(body: &[u8]) -> Result<ChatRequest, ApiError> {
    let body = json_object(body)?;
    let model = match body.get("model") {
        Some(Value::String(m)) if !m.trim().is_empty() => m.clone(),
        Some(_) => {
            return Err(ApiError::BadRequest(
                "model: must be a non-empty string".into(),
            ))
        }
        None => return Err(ApiError::BadRequest("model: Field required".into())),
    };
    check_anthropic_messages(&body)?;
    Ok(ChatRequest::new(Format::Messages, model, false, true, body))
}

/// A `POST /v1/embeddings` body: its model (a concrete one) and the whole object.
pub fn embeddings_request(
    body: &[u8],
) -> Result<(String, serde_json::Map<String, Value>), ApiError> {
    let body = json_object(body)?;
    let model = match body.get("model") {
        Some(Value::String(m)) if !m.trim().is_empty() => m.clone(),
        _ => {
            return Err(ApiError::Unsupported(wire::WireError::new(
                "model",
                "missing required parameter (a string)",
            )))
        }
    };
    match body.get("input") {
        Some(Value::String(_) | Value::Array(_)) => Ok((model, body)),
        _ => Err(ApiError::Unsupported(wire::WireError::new(
            "input",
            "must be a string or an array",
        ))),
    }
}

/// The body of `POST /v1/feedback`: `{"decision_id": "…", "score": 0.0..=1.0, "comment"?: "…"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Feedback {
    pub decision_id: String,
    pub score: f64,
    pub comment: Option<String>,
}

/// Longest feedback comment kept.
pub(crate) const MAX_COMMENT_CHARS: usize = 2000;

pub fn feedback_request(body: &[u8]) -> Result<Feedback, ApiError> {
    let v = json_object(body)?;
    let decision_id = match v.get("decision_id") {
        Some(Value::String(id)) => uuid::Uuid::parse_str(id)
            .map_err(|_| {
                ApiError::BadRequest("'decision_id' must be a decision id (a UUID)".into())
            })?
            .to_string(),
        _ => {
            return Err(ApiError::BadRequest(
                "missing required parameter: 'decision_id' (a string)".into(),
            ))
        }
    };
    let score = match v.get("score").and_then(Value::as_f64) {
        Some(s) if (0.0..=1.0).contains(&s) => s,
        Some(_) => {
            return Err(ApiError::BadRequest(
                "'score' must be between 0 and 1".into(),
            ))
        }
        None => {
            return Err(ApiError::BadRequest(
                "missing required parameter: 'score' (a number from 0 to 1)".into(),
            ))
        }
    };
    let comment = match v.get("comment") {
        None | Some(Value::Null) => None,
        // PostgreSQL cannot store U+0000 in text.
        Some(Value::String(c)) if c.contains('\0') => {
            return Err(ApiError::BadRequest(
                "'comment' must not contain a NUL character (U+0000)".into(),
            ))
        }
        Some(Value::String(c)) if c.chars().count() <= MAX_COMMENT_CHARS => Some(c.clone()),
        Some(Value::String(_)) => {
            return Err(ApiError::BadRequest(format!(
                "'comment' is longer than {MAX_COMMENT_CHARS} characters"
            )))
        }
        Some(_) => return Err(ApiError::BadRequest("'comment' must be a string".into())),
    };
    Ok(Feedback {
        decision_id,
        score,
        comment,
    })
}

/// The body of `POST /v1/route`: `{"messages": [...]}` (OpenAI shape) or `{"prompt": "..."}`.
pub fn route_request(body: &[u8]) -> Result<dualrouter_core::conversation::Conversation, ApiError> {
    use dualrouter_core::conversation::Conversation;
    let v = json_object(body)?;
    if let Some(Value::String(p)) = v.get("prompt") {
        if p.trim().is_empty() {
            return Err(ApiError::BadRequest("'prompt' must not be empty".into()));
        }
        return Ok(Conversation::from_prompt(p));
    }
    match v.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => Ok(Conversation::from_openai_messages(m)),
        _ => Err(ApiError::BadRequest(
            "expected {\"messages\": [...]} or {\"prompt\": \"...\"}".into(),
        )),
    }
}

/// A chat-completions body as it goes to a chat-completions upstream: `model` replaced and, for
/// a stream, `stream_options.include_usage` set (the usage chunk is captured for the log, and
/// passed on only if the client asked for it). Serializes as the patched copy would, keys in
/// the same order.
struct PatchedChat<'a> {
    body: &'a serde_json::Map<String, Value>,
    model: &'a str,
    include_usage: bool,
}

impl serde::Serialize for PatchedChat<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let add_options = self.include_usage && !self.body.contains_key("stream_options");
        let mut map = s.serialize_map(Some(self.body.len() + usize::from(add_options)))?;
        for (k, v) in self.body {
            match k.as_str() {
                "model" => map.serialize_entry(k, self.model)?,
                "stream_options" if self.include_usage => {
                    let mut opts = match v {
                        Value::Object(o) => o.clone(),
                        _ => serde_json::Map::new(),
                    };
                    opts.insert("include_usage".into(), Value::Bool(true));
                    map.serialize_entry(k, &opts)?;
                }
                _ => map.serialize_entry(k, v)?,
            }
        }
        if add_options {
            map.serialize_entry(
                "stream_options",
                &serde_json::json!({ "include_usage": true }),
            )?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(format: Format) -> wire::Target<'static> {
        wire::Target {
            format,
            model: "up",
            caps: wire::Caps::default(),
        }
    }

    /// The chat pass-through body written without a copy is the body the copy made.
    #[test]
    fn chat_body_for_a_chat_upstream_is_the_patched_copy() {
        let cases = [
            r#"{"model":"auto","messages":[{"role":"user","content":"hi"}],"temperature":0.2}"#,
            r#"{"messages":[{"role":"user","content":"hi"}],"stream":true,"model":"m"}"#,
            r#"{"model":"m","stream":true,"stream_options":{"include_usage":false,"x":1},"messages":[{"role":"user","content":"hi"}]}"#,
            r#"{"model":"m","stream":true,"stream_options":null,"messages":[{"role":"user","content":"hi"}]}"#,
            r#"{"model":"m","stream":false,"stream_options":{"x":1},"messages":[{"role":"user","content":"hi"}]}"#,
        ];
        for body in cases {
            let req = ChatRequest::parse(body.as_bytes()).unwrap();
            let (fast, _) = req.body_for(&target(Format::Chat)).unwrap();
            // What the general path (a copy, patched) writes.
            let mut copy = serde_json::Map::clone(&req.body);
            copy.insert("model".into(), Value::String("up".into()));
            if req.stream {
                let opts = copy
                    .entry("stream_options")
                    .or_insert_with(|| Value::Object(Default::default()));
                if let Value::Object(o) = opts {
                    o.insert("include_usage".into(), Value::Bool(true));
                } else {
                    *opts = serde_json::json!({ "include_usage": true });
                }
            }
            assert_eq!(
                std::str::from_utf8(&fast).unwrap(),
                serde_json::to_string(&copy).unwrap(),
                "{body}"
            );
        }
    }

    #[test]
    fn routes_and_methods() {
        assert_eq!(
            endpoint(&http::Method::POST, "/v1/chat/completions").unwrap(),
            Endpoint::ChatCompletions
        );
        assert_eq!(
            endpoint(&http::Method::GET, "/v1/chat/completions")
                .unwrap_err()
                .status(),
            405
        );
        assert_eq!(
            endpoint(&http::Method::GET, "/v2/nothing")
                .unwrap_err()
                .status(),
            404
        );
    }

    #[test]
    fn parse_errors_are_400() {
        for body in [
            &b""[..],
            b"{",
            b"[]",
            b"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
            b"{\"model\":\"m\"}",
            b"{\"model\":\"m\",\"messages\":[]}",
            b"{\"model\":\"m\",\"messages\":[{\"content\":\"x\"}]}",
            b"{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"stream\":\"yes\"}",
        ] {
            let e = ChatRequest::parse(body).unwrap_err();
            assert_eq!(e.status(), 400, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn messages_endpoint_and_anthropic_parse() {
        let ep = endpoint(&http::Method::POST, "/v1/messages").unwrap();
        assert_eq!(ep, Endpoint::Messages);
        assert_eq!(ep.format(), Format::Messages);
        for body in [
            &b"{"[..],
            b"{\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
            b"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
            b"{\"model\":\"m\",\"max_tokens\":0,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
            b"{\"model\":\"m\",\"max_tokens\":1,\"messages\":[]}",
            b"{\"model\":\"m\",\"max_tokens\":1,\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}",
            b"{\"model\":\"m\",\"max_tokens\":1,\"messages\":[{\"role\":\"user\"}]}",
            b"{\"model\":\"m\",\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"system\":5}",
        ] {
            let e = ChatRequest::parse_anthropic(body).unwrap_err();
            assert_eq!(e.status(), 400, "{}", String::from_utf8_lossy(body));
        }
        let r = ChatRequest::parse_anthropic(
            br#"{"model":"m","max_tokens":9,"stream":true,"system":"s","messages":[{"role":"user","content":"x"}]}"#,
        )
        .unwrap();
        assert!(r.stream);
        let same: Value =
            serde_json::from_slice(&r.body_for(&target(Format::Messages)).unwrap().0).unwrap();
        assert_eq!(same["model"], "up");
        assert_eq!(same["system"], "s");
        let other: Value =
            serde_json::from_slice(&r.body_for(&target(Format::Chat)).unwrap().0).unwrap();
        assert_eq!(other["messages"][0]["role"], "system");
        assert_eq!(other["stream_options"]["include_usage"], true);
    }

    #[test]
    fn claude_code_system_messages_are_accepted() {
        let r = ChatRequest::parse_anthropic(
            br#"{"model":"m","max_tokens":9,"messages":[{"role":"user","content":"x"},{"role":"system","content":[{"type":"text","text":"note"}]},{"role":"user","content":"y"}]}"#,
        )
        .unwrap();
        let chat: Value =
            serde_json::from_slice(&r.body_for(&target(Format::Chat)).unwrap().0).unwrap();
        assert_eq!(
            chat["messages"][1],
            serde_json::json!({"role": "system", "content": "note"})
        );
    }

    #[test]
    fn responses_paths_and_ids() {
        let get = |m: http::Method, p: &str| endpoint(&m, p);
        assert_eq!(
            get(http::Method::POST, "/v1/responses").unwrap(),
            Endpoint::Responses
        );
        assert_eq!(
            get(http::Method::GET, "/v1/responses/resp_1").unwrap(),
            Endpoint::ResponseGet("resp_1".into())
        );
        assert_eq!(
            get(http::Method::DELETE, "/v1/responses/resp_1").unwrap(),
            Endpoint::ResponseDelete("resp_1".into())
        );
        assert_eq!(
            get(http::Method::GET, "/v1/responses/resp_1/input_items").unwrap(),
            Endpoint::ResponseInputItems("resp_1".into())
        );
        assert_eq!(
            get(http::Method::POST, "/v1/responses/resp_1")
                .unwrap_err()
                .status(),
            405
        );
        assert_eq!(
            get(http::Method::GET, "/v1/responses/")
                .unwrap_err()
                .status(),
            405
        );
        assert_eq!(
            get(http::Method::GET, "/v1/models/openai%2Fgpt-4o").unwrap(),
            Endpoint::Model("openai/gpt-4o".into())
        );
        assert_eq!(
            get(http::Method::GET, "/v1/models/vendor/model").unwrap(),
            Endpoint::Model("vendor/model".into())
        );
        assert_eq!(
            get(http::Method::POST, "/v1/messages/count_tokens").unwrap(),
            Endpoint::CountTokens
        );
        assert_eq!(
            get(http::Method::POST, "/v1/embeddings").unwrap(),
            Endpoint::Embeddings
        );
        assert_eq!(
            get(http::Method::GET, "/v1/healthz").unwrap_err().status(),
            404
        );
        // A malformed item is a 400 naming it; what only other formats cannot express is not.
        let e = ChatRequest::parse_responses(
            br#"{"model":"m","input":[{"type":"function_call","name":"f"}]}"#,
        )
        .unwrap_err();
        assert_eq!(e.status(), 400);
        let v: Value = serde_json::from_slice(&e.body(Format::Responses)).unwrap();
        assert_eq!(v["error"]["param"], "input[0].call_id");
        assert!(
            ChatRequest::parse_responses(br#"{"model":"m","input":"x","background":true}"#).is_ok()
        );
        assert_eq!(
            ChatRequest::parse_responses(br#"{"model":"m"}"#)
                .unwrap_err()
                .status(),
            400
        );
        assert!(
            ChatRequest::parse_responses(br#"{"model":"m","previous_response_id":"resp_1"}"#)
                .is_ok()
        );
    }

    #[test]
    fn feedback_comment_with_nul_is_a_400() {
        let id = "0190f0b2-7c1e-7a3b-9c2d-1234567890ab";
        let bad = format!(r#"{{"decision_id":"{id}","score":1,"comment":"x\u0000' OR 1=1"}}"#);
        assert_eq!(feedback_request(bad.as_bytes()).unwrap_err().status(), 400);
        let good = format!(r#"{{"decision_id":"{id}","score":1,"comment":"' OR 1=1 --"}}"#);
        assert_eq!(
            feedback_request(good.as_bytes())
                .unwrap()
                .comment
                .as_deref(),
            Some("' OR 1=1 --")
        );
    }

    #[test]
    fn rewrites_model_and_asks_for_usage() {
        let r = ChatRequest::parse(br#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":true,"temperature":0.5}"#)
            .unwrap();
        assert!(r.stream && !r.include_usage);
        let out: Value = serde_json::from_slice(&r.upstream_body("vendor/m")).unwrap();
        assert_eq!(out["model"], "vendor/m");
        assert_eq!(out["stream_options"]["include_usage"], true);
        assert_eq!(out["temperature"], 0.5);
    }
}
