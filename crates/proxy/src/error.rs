//! The proxy layer's error type. Its HTTP status is chosen in one place ([`ApiError::status`],
//! an exhaustive match with no catch-all arm, so a new variant does not compile until it has a
//! status), and so is its low-cardinality metric label ([`ApiError::kind`]).
//!
//! Messages never carry secrets: upstream errors are described by provider name and phase,
//! never by the headers that were sent.

use bytes::Bytes;
use http::StatusCode;
use serde_json::json;

/// Which wire format the client speaks; errors answer in it (chat completions and Responses
/// share OpenAI's error JSON).
pub use dualrouter_wire::Format;

/// The phase of an upstream exchange that timed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutPhase {
    Connect,
    FirstByte,
    Idle,
    Total,
}

impl std::fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Connect => "connecting",
            Self::FirstByte => "waiting for the first byte",
            Self::Idle => "waiting for the next chunk",
            Self::Total => "within the total deadline",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    /// The request asks for something no candidate model can serve, or is malformed in a way
    /// a field names (OpenAI's `param`).
    #[error("{0}")]
    Unsupported(dualrouter_wire::WireError),
    /// A stored response (`previous_response_id`, `GET /v1/responses/{id}`) that does not
    /// exist, expired, or belongs to another client key.
    #[error("response '{id}' not found")]
    UnknownResponse {
        id: String,
        /// The request field that named it (`previous_response_id`), if any.
        param: Option<&'static str>,
    },
    #[error("invalid or missing API key")]
    Unauthorized,
    /// A virtual key that exists but may no longer be used.
    #[error("invalid API key: the key {0}")]
    KeyRejected(&'static str),
    /// A concrete model outside the virtual key's `models`.
    #[error("this API key may not use the model '{0}'")]
    ModelNotAllowed(String),
    /// A concrete model whose estimated cost passes the key's `max_cost_per_request_usd`.
    #[error("the estimated cost of this request on '{model}' (${estimate_usd:.6}) exceeds this API key's limit of ${cap_usd:.6} per request")]
    OverKeyCap {
        model: String,
        estimate_usd: f64,
        cap_usd: f64,
    },
    /// The key's budget cannot pay for this request.
    #[error("budget_exceeded: this API key's {period} budget of ${budget_usd:.6} is used up (spent ${spent_usd:.6}, ${reserved_usd:.6} held by requests in flight)")]
    BudgetExceeded {
        period: &'static str,
        budget_usd: f64,
        spent_usd: f64,
        reserved_usd: f64,
    },
    /// Over the key's requests (`tokens: false`) or tokens per minute.
    #[error("rate limit exceeded: this API key's {} per minute are used up; retry in {reset_s} s", if *.tokens { "tokens" } else { "requests" })]
    RateLimited {
        tokens: bool,
        limit_requests: Option<u64>,
        remaining_requests: Option<u64>,
        limit_tokens: Option<u64>,
        remaining_tokens: Option<u64>,
        reset_s: u64,
    },
    #[error("no route for {method} {path}")]
    NotFound { method: String, path: String },
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error("the model '{0}' does not exist or is not served by this proxy")]
    UnknownModel(String),
    #[error("request body exceeds the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the client took too long to send the request body")]
    ClientTimeout,
    #[error("upstream '{provider}' is unreachable: {detail}")]
    UpstreamUnreachable { provider: String, detail: String },
    #[error("upstream '{provider}' sent a broken response: {detail}")]
    UpstreamBroken { provider: String, detail: String },
    #[error("upstream '{provider}' timed out {phase}")]
    UpstreamTimeout {
        provider: String,
        phase: TimeoutPhase,
    },
    /// An executor plugin could not answer (it failed, broke its limits, or is out of service).
    #[error("executor '{plugin}' could not answer: {detail}")]
    ExecutorFailed { plugin: String, detail: String },
    #[error("routing failed: {0}")]
    Routing(String),
    /// Every candidate is cooling down, over budget or over the request's price cap.
    #[error("{0}")]
    NoCandidate(dualrouter_routing::NoCandidate),
    /// `POST /v1/feedback` for a decision this proxy never logged.
    #[error("decision '{0}' not found")]
    UnknownDecision(String),
    /// The store cannot take the request now (e.g. the database is down).
    #[error("{0} is unavailable; retry later")]
    Unavailable(&'static str),
    /// `limits.max_in_flight` requests are being served, or the workers are saturated
    /// (`limits.max_queue_ms`); retry after `retry_after_s`.
    #[error("the proxy is overloaded ({why}); retry later")]
    Overloaded {
        why: &'static str,
        retry_after_s: u64,
    },
    #[error("internal error: {0}")]
    Internal(String),
    /// `GET /readyz` while a check fails; the body is the readiness report itself.
    #[error("not ready")]
    NotReady(serde_json::Value),
}

impl ApiError {
    /// The one place an HTTP status is chosen.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) | Self::Unsupported(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized | Self::KeyRejected(_) => StatusCode::UNAUTHORIZED,
            Self::ModelNotAllowed(_) | Self::OverKeyCap { .. } => StatusCode::FORBIDDEN,
            Self::BudgetExceeded { .. } | Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::NotFound { .. }
            | Self::UnknownModel(_)
            | Self::UnknownDecision(_)
            | Self::UnknownResponse { .. } => StatusCode::NOT_FOUND,
            Self::NoCandidate(_)
            | Self::Unavailable(_)
            | Self::Overloaded { .. }
            | Self::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::ClientTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::UpstreamUnreachable { .. }
            | Self::UpstreamBroken { .. }
            | Self::ExecutorFailed { .. } => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Routing(_) | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A low-cardinality label for metrics; never the message.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::Unsupported(_) => "unsupported",
            Self::UnknownResponse { .. } => "unknown_response",
            Self::Unauthorized => "unauthorized",
            Self::KeyRejected(_) => "key_rejected",
            Self::ModelNotAllowed(_) => "model_not_allowed",
            Self::OverKeyCap { .. } => "over_key_cap",
            Self::BudgetExceeded { .. } => "budget_exceeded",
            Self::RateLimited { .. } => "rate_limited",
            Self::NotFound { .. } => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::UnknownModel(_) => "unknown_model",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::ClientTimeout => "client_timeout",
            Self::UpstreamUnreachable { .. } => "upstream_unreachable",
            Self::UpstreamBroken { .. } => "upstream_broken",
            Self::UpstreamTimeout { .. } => "upstream_timeout",
            Self::ExecutorFailed { .. } => "executor_failed",
            Self::Routing(_) => "routing",
            Self::NoCandidate(_) => "no_candidate",
            Self::UnknownDecision(_) => "unknown_decision",
            Self::Unavailable(_) => "unavailable",
            Self::Overloaded { .. } => "overloaded",
            Self::Internal(_) => "internal",
            Self::NotReady(_) => "not_ready",
        }
    }

    /// OpenAI's `error.type`.
    fn openai_type(&self) -> &'static str {
        match self.status().as_u16() {
            401 => "authentication_error",
            403 => "permission_error",
            429 => "rate_limit_error",
            400 | 404 | 405 | 408 | 413 => "invalid_request_error",
            _ => "api_error",
        }
    }

    /// Anthropic's `error.type`.
    fn anthropic_type(&self) -> &'static str {
        match self.status().as_u16() {
            401 => "authentication_error",
            403 => "permission_error",
            429 => "rate_limit_error",
            404 => "not_found_error",
            413 => "request_too_large",
            400 | 405 | 408 => "invalid_request_error",
            504 => "timeout_error",
            503 => "overloaded_error",
            _ => "api_error",
        }
    }

    /// OpenAI's `error.code`.
    fn openai_code(&self) -> Option<&'static str> {
        match self {
            Self::Unauthorized | Self::KeyRejected(_) => Some("invalid_api_key"),
            Self::ModelNotAllowed(_) => Some("model_not_allowed"),
            Self::OverKeyCap { .. } => Some("max_cost_exceeded"),
            Self::BudgetExceeded { .. } => Some("budget_exceeded"),
            Self::RateLimited { .. } => Some("rate_limit_exceeded"),
            Self::UnknownModel(_) => Some("model_not_found"),
            Self::Unsupported(_) => Some("unsupported_parameter"),
            Self::UnknownResponse { .. } => Some("response_not_found"),
            Self::NoCandidate(_) => Some("no_model_available"),
            Self::PayloadTooLarge { .. } => Some("request_too_large"),
            Self::Overloaded { .. } => Some("overloaded"),
            Self::UpstreamTimeout { .. } => Some("upstream_timeout"),
            Self::UpstreamUnreachable { .. }
            | Self::UpstreamBroken { .. }
            | Self::ExecutorFailed { .. } => Some("upstream_error"),
            _ => None,
        }
    }

    /// OpenAI's `error.param`: the request field at fault, when one is.
    fn param(&self) -> Option<&str> {
        match self {
            Self::Unsupported(e) if !e.field.is_empty() => Some(&e.field),
            Self::UnknownResponse { param, .. } => *param,
            Self::ModelNotAllowed(_) | Self::OverKeyCap { .. } => Some("model"),
            _ => None,
        }
    }

    /// The JSON body in the client's own format.
    pub fn body(&self, format: Format) -> Bytes {
        if let Self::NotReady(report) = self {
            return Bytes::from(report.to_string());
        }
        let message = self.to_string();
        let v = match format {
            Format::Chat | Format::Responses => json!({
                "error": {
                    "message": message,
                    "type": self.openai_type(),
                    "param": self.param(),
                    "code": self.openai_code(),
                }
            }),
            Format::Messages => json!({
                "type": "error",
                "error": { "type": self.anthropic_type(), "message": message }
            }),
        };
        Bytes::from(v.to_string())
    }

    /// Seconds the client should wait before retrying, when known (`Retry-After`).
    pub fn retry_after_s(&self) -> Option<u64> {
        match self {
            Self::NoCandidate(n) => n
                .retry_after
                .map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0)),
            Self::Unavailable(_) => Some(1),
            Self::Overloaded { retry_after_s, .. } => Some(*retry_after_s),
            Self::RateLimited { reset_s, .. } => Some(*reset_s),
            _ => None,
        }
    }

    /// Headers beside `Retry-After`: a rate-limit refusal's `x-ratelimit-*`.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::RateLimited {
                limit_requests,
                remaining_requests,
                limit_tokens,
                remaining_tokens,
                reset_s,
                ..
            } => ratelimit_headers(
                limit_requests.zip(*remaining_requests),
                limit_tokens.zip(*remaining_tokens),
                *reset_s,
            ),
            _ => Vec::new(),
        }
    }
}

/// `x-ratelimit-limit-*`, `x-ratelimit-remaining-*` and `x-ratelimit-reset-*` for the limits
/// a virtual key has: (limit, remaining) of requests and of tokens in the current minute.
pub(crate) fn ratelimit_headers(
    requests: Option<(u64, u64)>,
    tokens: Option<(u64, u64)>,
    reset_s: u64,
) -> Vec<(&'static str, String)> {
    let mut h = Vec::new();
    let reset = format!("{reset_s}s");
    if let Some((l, r)) = requests {
        h.push(("x-ratelimit-limit-requests", l.to_string()));
        h.push(("x-ratelimit-remaining-requests", r.to_string()));
        h.push(("x-ratelimit-reset-requests", reset.clone()));
    }
    if let Some((l, r)) = tokens {
        h.push(("x-ratelimit-limit-tokens", l.to_string()));
        h.push(("x-ratelimit-remaining-tokens", r.to_string()));
        h.push(("x-ratelimit-reset-tokens", reset));
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_shape() {
        let e = ApiError::UnknownModel("nope".into());
        assert_eq!(e.status(), 404);
        let v: serde_json::Value = serde_json::from_slice(&e.body(Format::Chat)).unwrap();
        assert_eq!(v["error"]["code"], "model_not_found");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert!(v["error"]["message"].as_str().unwrap().contains("nope"));
    }

    #[test]
    fn key_refusals_in_both_shapes() {
        let rl = ApiError::RateLimited {
            tokens: false,
            limit_requests: Some(60),
            remaining_requests: Some(0),
            limit_tokens: Some(1000),
            remaining_tokens: Some(250),
            reset_s: 17,
        };
        assert_eq!(rl.status(), 429);
        assert_eq!(rl.retry_after_s(), Some(17));
        let h = rl.headers();
        for (name, value) in [
            ("x-ratelimit-limit-requests", "60"),
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "17s"),
            ("x-ratelimit-limit-tokens", "1000"),
            ("x-ratelimit-remaining-tokens", "250"),
            ("x-ratelimit-reset-tokens", "17s"),
        ] {
            assert!(h.contains(&(name, value.to_string())), "{name}: {h:?}");
        }
        let v: serde_json::Value = serde_json::from_slice(&rl.body(Format::Chat)).unwrap();
        assert_eq!(v["error"]["code"], "rate_limit_exceeded");
        assert_eq!(v["error"]["type"], "rate_limit_error");

        let b = ApiError::BudgetExceeded {
            period: "day",
            budget_usd: 1.0,
            spent_usd: 0.99,
            reserved_usd: 0.01,
        };
        assert_eq!(b.status(), 429);
        assert!(b.headers().is_empty());
        let v: serde_json::Value = serde_json::from_slice(&b.body(Format::Responses)).unwrap();
        assert_eq!(v["error"]["code"], "budget_exceeded");
        let v: serde_json::Value = serde_json::from_slice(&b.body(Format::Messages)).unwrap();
        assert_eq!(v["error"]["type"], "rate_limit_error");
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("budget_exceeded"));

        let m = ApiError::ModelNotAllowed("gpt-4o".into());
        assert_eq!(m.status(), 403);
        let v: serde_json::Value = serde_json::from_slice(&m.body(Format::Chat)).unwrap();
        assert_eq!(v["error"]["param"], "model");
        let v: serde_json::Value = serde_json::from_slice(&m.body(Format::Messages)).unwrap();
        assert_eq!(v["error"]["type"], "permission_error");
        assert_eq!(ApiError::KeyRejected("has been revoked").status(), 401);
    }

    #[test]
    fn anthropic_shape() {
        let e = ApiError::PayloadTooLarge { limit: 10 };
        let v: serde_json::Value = serde_json::from_slice(&e.body(Format::Messages)).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "request_too_large");
    }
}
