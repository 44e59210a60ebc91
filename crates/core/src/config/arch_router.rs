//! The `classifier.arch_router` section, validated: the Arch-Router client's settings.

use std::time::Duration;

use super::Secret;

/// Settings of the client (from `classifier.arch_router`).
#[derive(Debug, Clone)]
pub struct ArchRouterSettings {
    /// e.g. `http://127.0.0.1:8008/v1`; `/chat/completions` is appended.
    pub base_url: String,
    pub model: String,
    pub api_key: Option<Secret>,
    pub timeout: Duration,
    pub max_tokens: u32,
    /// Conversation budget in tokens (estimated at 4 bytes a token); oldest turns go first.
    pub context_tokens: usize,
    /// Consecutive failures that open the circuit breaker.
    pub breaker_failures: u32,
    /// How long the breaker stays open before one probe request is let through.
    pub breaker_cooldown: Duration,
}

impl Default for ArchRouterSettings {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:8008/v1".into(),
            model: "katanemo/Arch-Router-1.5B".into(),
            api_key: None,
            timeout: Duration::from_millis(300),
            max_tokens: 32,
            context_tokens: 2048,
            breaker_failures: 3,
            breaker_cooldown: Duration::from_secs(30),
        }
    }
}
