//! Translation between OpenAI chat completions and Anthropic Messages: requests, responses,
//! errors and streams. Pure functions over JSON (no I/O), so a request kept in the client's
//! format can be translated again for another upstream kind (a fallback across formats).
//!
//! What is carried across and what is not is listed in `docs/anthropic.md`.

pub mod request;
pub mod response;
pub mod stream;

pub use request::{anthropic_to_openai_request, openai_to_anthropic_request};
pub use response::{
    anthropic_to_openai_error, anthropic_to_openai_response, openai_to_anthropic_error,
    openai_to_anthropic_response,
};
pub use stream::{AnthropicToOpenAiStream, OpenAiToAnthropicStream};

/// `max_tokens` sent to an Anthropic upstream when an OpenAI client set neither `max_tokens`
/// nor `max_completion_tokens` (Anthropic requires it).
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// The `anthropic-version` header sent to Anthropic upstreams.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// A request that cannot be expressed in the other format (answered as a 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TranslateError(pub String);

impl TranslateError {
    pub(crate) fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

/// Token counts read from either format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// OpenAI `finish_reason` for an Anthropic `stop_reason`.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        // end_turn, stop_sequence, pause_turn and anything newer
        _ => "stop",
    }
}

/// Anthropic `stop_reason` for an OpenAI `finish_reason`.
pub fn stop_reason(finish_reason: &str) -> &'static str {
    match finish_reason {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
