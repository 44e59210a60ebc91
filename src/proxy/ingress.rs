//! Ingress: which endpoint a request is for, whether its client key is good, its body read
//! whole (up to the configured cap, within the client timeout) and parsed.

use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;
use serde_json::Value;

use crate::config::validated::ClientAuth;
use crate::config::Limits;
use crate::error::{ApiError, ApiFormat};

/// The endpoints the proxy port serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    /// Dry run: the routing decision as JSON, nothing sent upstream.
    Route,
    /// An outcome score for a logged decision.
    Feedback,
    /// Anthropic's Messages API.
    Messages,
    Models,
    Health,
}

impl Endpoint {
    /// The wire format errors on this endpoint use.
    pub fn format(self) -> ApiFormat {
        match self {
            Self::Messages => ApiFormat::Anthropic,
            Self::ChatCompletions | Self::Route | Self::Feedback | Self::Models | Self::Health => {
                ApiFormat::OpenAi
            }
        }
    }
}

/// Matches method and path (the query string is ignored).
pub fn endpoint(method: &http::Method, path: &str) -> Result<Endpoint, ApiError> {
    let path = path.trim_end_matches('/');
    let (ep, allowed) = match path {
        "/v1/chat/completions" | "/chat/completions" => {
            (Endpoint::ChatCompletions, http::Method::POST)
        }
        "/v1/messages" | "/messages" => (Endpoint::Messages, http::Method::POST),
        "/v1/models" | "/models" => (Endpoint::Models, http::Method::GET),
        "/v1/route" => (Endpoint::Route, http::Method::POST),
        "/v1/feedback" => (Endpoint::Feedback, http::Method::POST),
        "/healthz" => (Endpoint::Health, http::Method::GET),
        _ => {
            return Err(ApiError::NotFound {
                method: method.to_string(),
                path: path.to_string(),
            })
        }
    };
    if *method == allowed || (allowed == http::Method::GET && *method == http::Method::HEAD) {
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
pub fn authorize(auth: Option<&ClientAuth>, headers: &http::HeaderMap) -> Result<(), ApiError> {
    let Some(auth) = auth else {
        return Ok(());
    };
    let presented = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(str::trim)
        .unwrap_or("");
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
pub async fn drain_refused_body(session: &mut Session, limits: &Limits) {
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
pub async fn read_body(session: &mut Session, limits: &Limits) -> Result<Bytes, ApiError> {
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

/// A chat request in the client's format (OpenAI chat completions or Anthropic Messages): the
/// fields the proxy acts on, and the whole JSON object so that everything else reaches an
/// upstream of the same format untouched. It stays in the client's format so that it can be
/// translated for any upstream kind, again for each candidate of a fallback chain.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub format: ApiFormat,
    pub model: String,
    pub stream: bool,
    /// The client asked for the usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
    pub body: serde_json::Map<String, Value>,
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

impl ChatRequest {
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
        let stream = match body.get("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(ApiError::BadRequest("'stream' must be a boolean".into())),
        };
        let include_usage = body
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok(Self {
            format: ApiFormat::OpenAi,
            model,
            stream,
            include_usage,
            body,
        })
    }

    /// Parses and checks an Anthropic Messages request (errors read like Anthropic's own).
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
        match body.get("messages") {
            Some(Value::Array(m)) if !m.is_empty() => {
                for (i, msg) in m.iter().enumerate() {
                    match msg.get("role").and_then(Value::as_str) {
                        Some("user" | "assistant") => {}
                        _ => {
                            return Err(ApiError::BadRequest(format!(
                                "messages.{i}.role: must be 'user' or 'assistant'"
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
            None | Some(Value::Null | Value::String(_) | Value::Array(_)) => {}
            Some(_) => {
                return Err(ApiError::BadRequest(
                    "system: must be a string or an array of text blocks".into(),
                ))
            }
        }
        let stream = match body.get("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(ApiError::BadRequest("stream: must be a boolean".into())),
        };
        Ok(Self {
            format: ApiFormat::Anthropic,
            model,
            stream,
            // Anthropic streams always carry usage; nothing to drop.
            include_usage: true,
            body,
        })
    }

    /// The messages, whatever the format (for the decision log and the router).
    pub fn messages(&self) -> &[Value] {
        // (Anthropic's `system` is outside `messages`; routing reads the user's turns.)
        self.body
            .get("messages")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// `max_tokens` (or OpenAI's `max_completion_tokens`), if the request sets one.
    pub fn max_output_tokens(&self) -> Option<u64> {
        self.body
            .get("max_completion_tokens")
            .or_else(|| self.body.get("max_tokens"))
            .and_then(Value::as_u64)
    }

    /// The body for an upstream of format `upstream`: the client's body with the model id the
    /// upstream expects when the formats match, a translation otherwise.
    pub fn upstream_body_for(
        &self,
        upstream: ApiFormat,
        upstream_model: &str,
    ) -> Result<Bytes, ApiError> {
        let translated = match (self.format, upstream) {
            (ApiFormat::OpenAi, ApiFormat::OpenAi) => return Ok(self.upstream_body(upstream_model)),
            (ApiFormat::Anthropic, ApiFormat::Anthropic) => {
                let mut body = self.body.clone();
                body.insert("model".into(), Value::String(upstream_model.to_string()));
                body
            }
            (ApiFormat::OpenAi, ApiFormat::Anthropic) => {
                crate::translate::openai_to_anthropic_request(&self.body, upstream_model)
                    .map_err(|e| ApiError::BadRequest(e.to_string()))?
            }
            (ApiFormat::Anthropic, ApiFormat::OpenAi) => {
                crate::translate::anthropic_to_openai_request(&self.body, upstream_model)
                    .map_err(|e| ApiError::BadRequest(e.to_string()))?
            }
        };
        Ok(Bytes::from(
            serde_json::to_vec(&translated).unwrap_or_default(),
        ))
    }

    /// The body for an OpenAI-compatible upstream when the client spoke OpenAI: the model id it
    /// expects and, when streaming, a request for the usage chunk (captured for the log; passed
    /// on only if the client asked for it).
    pub fn upstream_body(&self, upstream_model: &str) -> Bytes {
        let mut body = self.body.clone();
        body.insert("model".into(), Value::String(upstream_model.to_string()));
        if self.stream {
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
        Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
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
pub const MAX_COMMENT_CHARS: usize = 2000;

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
pub fn route_request(body: &[u8]) -> Result<crate::router::conversation::Conversation, ApiError> {
    use crate::router::conversation::Conversation;
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(ep.format(), ApiFormat::Anthropic);
        for body in [
            &b"{"[..],
            b"{\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
            b"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
            b"{\"model\":\"m\",\"max_tokens\":0,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
            b"{\"model\":\"m\",\"max_tokens\":1,\"messages\":[]}",
            b"{\"model\":\"m\",\"max_tokens\":1,\"messages\":[{\"role\":\"system\",\"content\":\"x\"}]}",
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
            serde_json::from_slice(&r.upstream_body_for(ApiFormat::Anthropic, "up").unwrap())
                .unwrap();
        assert_eq!(same["model"], "up");
        assert_eq!(same["system"], "s");
        let other: Value =
            serde_json::from_slice(&r.upstream_body_for(ApiFormat::OpenAi, "up").unwrap()).unwrap();
        assert_eq!(other["messages"][0]["role"], "system");
        assert_eq!(other["stream_options"]["include_usage"], true);
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
