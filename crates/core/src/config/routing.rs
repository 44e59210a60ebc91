//! The `routing:` section of the config file: what `model: "auto"` means and how the fallback
//! chain, the per-model circuit breaker and session affinity behave.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RoutingSettings {
    /// Model names that ask for routing (`auto` and any alias, e.g. `dualrouter/auto`).
    #[serde(default = "default_aliases")]
    pub aliases: Vec<String>,
    /// Models tried for one request, the selected one included (fallbacks = this − 1).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: usize,
    /// Candidates of the default route when no policy named `default/…` exists. Empty: every
    /// configured model.
    #[serde(default)]
    pub default_models: Vec<String>,
    /// Output tokens assumed when the request sets no `max_tokens` (for the cost estimate).
    #[serde(default = "default_expected_output_tokens")]
    pub expected_output_tokens: u64,
    #[serde(default)]
    pub breaker: BreakerSettings,
    #[serde(default)]
    pub affinity: AffinitySettings,
    #[serde(default)]
    pub health_checks: HealthCheckSettings,
}

/// Periodic checks of the providers: a cheap `GET {base_url}/models` (which also refreshes the
/// models of providers with `discover_models`). A provider whose check fails has its models
/// marked unhealthy and out of the candidates until a check succeeds. Executor plugins are
/// checked by their own `health` export (`plugin_host.health_interval_ms`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckSettings {
    /// Time between two rounds of checks; 0 turns them off (discovery then runs only at start
    /// and on reload).
    #[serde(default = "default_health_interval_ms")]
    pub interval_ms: u64,
    /// How long one check may take before it counts as failed.
    #[serde(default = "default_health_timeout_ms")]
    pub timeout_ms: u64,
    /// Consecutive failed checks that mark a provider unhealthy.
    #[serde(default = "default_health_failures")]
    pub failures: u32,
}

fn default_health_interval_ms() -> u64 {
    30_000
}
fn default_health_timeout_ms() -> u64 {
    2_000
}
fn default_health_failures() -> u32 {
    2
}

impl Default for HealthCheckSettings {
    fn default() -> Self {
        Self {
            interval_ms: default_health_interval_ms(),
            timeout_ms: default_health_timeout_ms(),
            failures: default_health_failures(),
        }
    }
}

/// A model that keeps failing leaves the candidates for a cool-down, then one probe request
/// decides whether it comes back.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BreakerSettings {
    /// Consecutive failures (connect error, timeout, 429 or 5xx before the first byte) that
    /// open the breaker.
    #[serde(default = "default_failures")]
    pub failures: u32,
    /// How long an open breaker keeps the model out before a probe.
    #[serde(default = "default_cooldown_ms")]
    pub cooldown_ms: u64,
    /// Longest `Retry-After` honoured (a provider asking for longer is cooled down this long).
    #[serde(default = "default_max_retry_after_ms")]
    pub max_retry_after_ms: u64,
}

/// Requests of one conversation stay on the model chosen first while it is healthy, so the
/// provider's prompt cache stays warm.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AffinitySettings {
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// How long a conversation's model is remembered after its last request.
    #[serde(default = "default_affinity_ttl_s")]
    pub ttl_s: u64,
    /// Conversations remembered (least recently used are forgotten first).
    #[serde(default = "default_affinity_max")]
    pub max_sessions: usize,
    /// Without an `x-session-id` header, a conversation is known by the hash of its system
    /// prompt and this many first user messages.
    #[serde(default = "default_prefix_messages")]
    pub prefix_messages: usize,
}

fn default_aliases() -> Vec<String> {
    vec!["auto".into()]
}
fn default_max_attempts() -> usize {
    3
}
fn default_expected_output_tokens() -> u64 {
    512
}
fn default_failures() -> u32 {
    3
}
fn default_cooldown_ms() -> u64 {
    30_000
}
fn default_max_retry_after_ms() -> u64 {
    300_000
}
fn default_true() -> bool {
    true
}
fn default_affinity_ttl_s() -> u64 {
    3600
}
fn default_affinity_max() -> usize {
    100_000
}
fn default_prefix_messages() -> usize {
    1
}

impl Default for RoutingSettings {
    fn default() -> Self {
        Self {
            aliases: default_aliases(),
            max_attempts: default_max_attempts(),
            default_models: Vec::new(),
            expected_output_tokens: default_expected_output_tokens(),
            breaker: BreakerSettings::default(),
            affinity: AffinitySettings::default(),
            health_checks: HealthCheckSettings::default(),
        }
    }
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            failures: default_failures(),
            cooldown_ms: default_cooldown_ms(),
            max_retry_after_ms: default_max_retry_after_ms(),
        }
    }
}

impl Default for AffinitySettings {
    fn default() -> Self {
        Self {
            enabled: true,
            ttl_s: default_affinity_ttl_s(),
            max_sessions: default_affinity_max(),
            prefix_messages: default_prefix_messages(),
        }
    }
}

impl RoutingSettings {
    /// Every problem, each starting with its field path under `routing`. `is_model` knows the
    /// configured models; `dynamic`: plugins or discovery may add others, so a name the config
    /// cannot place is left to the registry.
    pub fn problems(&self, is_model: &dyn Fn(&str) -> bool, dynamic: bool) -> Vec<String> {
        let mut out = Vec::new();
        if self.aliases.is_empty() {
            out.push("routing.aliases: must name at least one alias (e.g. auto)".into());
        }
        for (i, a) in self.aliases.iter().enumerate() {
            if a.trim().is_empty() {
                out.push(format!("routing.aliases[{i}]: must not be empty"));
            } else if is_model(a) {
                out.push(format!(
                    "routing.aliases[{i}]: '{a}' is also a model id; an alias must not shadow a model"
                ));
            }
        }
        if self.max_attempts == 0 || self.max_attempts > 10 {
            out.push("routing.max_attempts: must be in 1..=10".into());
        }
        for (i, m) in self.default_models.iter().enumerate() {
            if !dynamic && !is_model(m) {
                out.push(format!(
                    "routing.default_models[{i}]: model '{m}' is not served by any provider"
                ));
            }
        }
        if self.breaker.failures == 0 {
            out.push("routing.breaker.failures: must be at least 1".into());
        }
        if self.breaker.cooldown_ms == 0 {
            out.push("routing.breaker.cooldown_ms: must be at least 1".into());
        }
        if self.affinity.enabled && self.affinity.max_sessions == 0 {
            out.push("routing.affinity.max_sessions: must be at least 1 when enabled".into());
        }
        if self.affinity.prefix_messages == 0 {
            out.push("routing.affinity.prefix_messages: must be at least 1".into());
        }
        if self.health_checks.timeout_ms == 0 {
            out.push("routing.health_checks.timeout_ms: must be at least 1".into());
        }
        if self.health_checks.failures == 0 {
            out.push("routing.health_checks.failures: must be at least 1".into());
        }
        out
    }

    pub fn is_alias(&self, model: &str) -> bool {
        self.aliases.iter().any(|a| a == model)
    }
}
