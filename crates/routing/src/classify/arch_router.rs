//! The Arch-Router client: asks katanemo's Arch-Router (served by any OpenAI-compatible server)
//! which route a conversation belongs to, with exactly the input the model was trained on
//! (`docs/routing.md#arch-router`), and reads its answer robustly.
//!
//! Failures never fail the request: a timeout, an HTTP or network error, or an open circuit
//! breaker is an [`ArchRouterError`], on which the caller falls back to the embedded classifier.
//! An answer of `other`, an unknown route name or text with no route in it is `Ok(None)`: the
//! model says no route fits (the caller uses the default policy).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::RouteSpec;
pub use dualrouter_core::config::ArchRouterSettings;
use dualrouter_core::conversation::Conversation;

/// The prompt, word for word as the model was trained on (`docs/routing.md#arch-router`).
const PROMPT_HEAD: &str = "You are a helpful assistant designed to find the best suited route.\n\
You are provided with route description within <routes></routes> XML tags:\n\
<routes>\n";
const PROMPT_MIDDLE: &str = "\n</routes>\n\n<conversation>\n";
const PROMPT_TAIL: &str = "\n</conversation>\n\n\
Your task is to decide which route is best suit with user intent on the conversation in <conversation></conversation> XML tags.  Follow the instruction:\n\
1. If the latest intent from user is irrelevant or user intent is full filled, response with other route {\"route\": \"other\"}.\n\
2. You must analyze the route descriptions and find the best match route for user latest intent.\n\
3. You only response the name of the route that best matches the user's request, use the exact name in the <routes></routes>.\n\
\n\
Based on your analysis, provide your response in the following JSON formats if you decide to match any route:\n\
{\"route\": \"route_name\"}\n";

/// Why the Arch-Router gave no usable answer (the caller falls back to the embedded classifier).
#[derive(Debug, thiserror::Error)]
pub enum ArchRouterError {
    #[error("arch-router timed out after {0:?}")]
    Timeout(Duration),
    #[error("arch-router request failed: {0}")]
    Transport(String),
    #[error("arch-router answered HTTP {0}")]
    Status(u16),
    #[error("arch-router answer is not an OpenAI chat completion")]
    BadResponse,
    #[error("arch-router circuit breaker is open (probing again later)")]
    BreakerOpen,
}

impl ArchRouterError {
    /// Low-cardinality label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "timeout",
            Self::Transport(_) => "transport",
            Self::Status(_) => "status",
            Self::BadResponse => "bad_response",
            Self::BreakerOpen => "breaker_open",
        }
    }
}

#[derive(Debug)]
enum Breaker {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is in flight; others are refused until it reports.
    HalfOpen,
}

pub struct ArchRouterClient {
    settings: ArchRouterSettings,
    http: reqwest::Client,
    url: String,
    breaker: Mutex<Breaker>,
}

impl ArchRouterClient {
    pub fn new(settings: ArchRouterSettings) -> Result<Self, ArchRouterError> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ArchRouterError::Transport(e.to_string()))?;
        let url = format!(
            "{}/chat/completions",
            settings.base_url.trim_end_matches('/')
        );
        Ok(Self {
            settings,
            http,
            url,
            breaker: Mutex::new(Breaker::Closed { failures: 0 }),
        })
    }

    pub fn settings(&self) -> &ArchRouterSettings {
        &self.settings
    }

    /// Asks for the route of `conversation` among `routes`. `Ok(Some(name))` is one of the
    /// routes' names; `Ok(None)` means no route fits.
    pub async fn classify(
        &self,
        routes: &[RouteSpec],
        conversation: &Conversation,
    ) -> Result<Option<String>, ArchRouterError> {
        self.admit()?;
        let result = self.call(routes, conversation).await;
        self.report(result.is_ok());
        result
    }

    /// The breaker's gate: closed lets everything through; open refuses until the cool-down
    /// ends, then lets exactly one probe through (half-open).
    fn admit(&self) -> Result<(), ArchRouterError> {
        let Ok(mut b) = self.breaker.lock() else {
            return Ok(());
        };
        match *b {
            Breaker::Closed { .. } => Ok(()),
            Breaker::Open { until } if Instant::now() >= until => {
                *b = Breaker::HalfOpen;
                Ok(())
            }
            Breaker::Open { .. } | Breaker::HalfOpen => Err(ArchRouterError::BreakerOpen),
        }
    }

    fn report(&self, ok: bool) {
        let Ok(mut b) = self.breaker.lock() else {
            return;
        };
        *b = match (&*b, ok) {
            (_, true) => Breaker::Closed { failures: 0 },
            (Breaker::Closed { failures }, false)
                if failures + 1 < self.settings.breaker_failures =>
            {
                Breaker::Closed {
                    failures: failures + 1,
                }
            }
            (_, false) => {
                tracing::warn!(
                    "arch-router failing; not called for {:?} (embedded classifier meanwhile)",
                    self.settings.breaker_cooldown
                );
                Breaker::Open {
                    until: Instant::now() + self.settings.breaker_cooldown,
                }
            }
        };
    }

    async fn call(
        &self,
        routes: &[RouteSpec],
        conversation: &Conversation,
    ) -> Result<Option<String>, ArchRouterError> {
        let body = request_body(&self.settings, routes, conversation);
        let mut req = self.http.post(&self.url).json(&body);
        if let Some(key) = &self.settings.api_key {
            req = req.bearer_auth(key.expose());
        }
        let resp = req.send().await.map_err(|e| self.transport(e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(ArchRouterError::Status(status.as_u16()));
        }
        let v: Value = resp.json().await.map_err(|e| self.transport(e))?;
        let text = v
            .pointer("/choices/0/message/content")
            .and_then(Value::as_str)
            .ok_or(ArchRouterError::BadResponse)?;
        Ok(parse_answer(text, routes))
    }

    fn transport(&self, e: reqwest::Error) -> ArchRouterError {
        if e.is_timeout() {
            ArchRouterError::Timeout(self.settings.timeout)
        } else {
            // reqwest's message names the URL, never headers.
            ArchRouterError::Transport(e.to_string())
        }
    }
}

/// The chat-completions request: one user message holding the §6 prompt, temperature 0.
pub fn request_body(
    settings: &ArchRouterSettings,
    routes: &[RouteSpec],
    conversation: &Conversation,
) -> Value {
    json!({
        "model": settings.model,
        "messages": [{"role": "user", "content": prompt(routes, conversation, settings.context_tokens)}],
        "temperature": 0.0,
        "max_tokens": settings.max_tokens,
        "stream": false,
    })
}

/// The §6 prompt: routes as a JSON array of `{"name","description"}`, the conversation as a
/// JSON array of `{"role","content"}` with system, tool and empty messages dropped and the
/// oldest turns trimmed to the budget (the latest user message always kept).
pub fn prompt(routes: &[RouteSpec], conversation: &Conversation, budget_tokens: usize) -> String {
    let routes_json: Vec<Value> = routes
        .iter()
        .map(|r| json!({"name": r.name, "description": r.description}))
        .collect();
    let turns = trimmed_turns(conversation, budget_tokens);
    let conv_json: Vec<Value> = turns
        .iter()
        .map(|(role, text)| json!({"role": role, "content": text}))
        .collect();
    let mut out = String::with_capacity(2048);
    out.push_str(PROMPT_HEAD);
    out.push_str(&Value::Array(routes_json).to_string());
    out.push_str(PROMPT_MIDDLE);
    out.push_str(&Value::Array(conv_json).to_string());
    out.push_str(PROMPT_TAIL);
    out
}

/// Estimated tokens of a text (about four bytes a token for English).
fn estimate_tokens(text: &str) -> usize {
    text.len().div_ceil(4)
}

fn trimmed_turns(conversation: &Conversation, budget_tokens: usize) -> Vec<(&str, &str)> {
    let kept: Vec<(&str, &str)> = conversation
        .turns
        .iter()
        .filter(|t| matches!(t.role.as_str(), "user" | "assistant"))
        .filter(|t| !t.text.trim().is_empty())
        .map(|t| (t.role.as_str(), t.text.as_str()))
        .collect();
    let Some(last_user) = kept.iter().rposition(|(role, _)| *role == "user") else {
        return kept;
    };
    // Always keep the latest user message (and anything after it); then add older turns,
    // newest first, while they fit.
    let mut used: usize = kept[last_user..]
        .iter()
        .map(|(_, t)| estimate_tokens(t))
        .sum();
    let mut start = last_user;
    while start > 0 {
        let cost = estimate_tokens(kept[start - 1].1);
        if used + cost > budget_tokens {
            break;
        }
        used += cost;
        start -= 1;
    }
    kept[start..].to_vec()
}

/// Reads the model's answer: `{"route": "name"}`, also with single quotes, inside a ```json
/// fence, or surrounded by whitespace or chatter. `other`, an unknown name or no route → `None`.
pub fn parse_answer(text: &str, routes: &[RouteSpec]) -> Option<String> {
    let name = extract_route(text)?;
    if name == "other" {
        return None;
    }
    routes
        .iter()
        .find(|r| r.name == name)
        .map(|r| r.name.clone())
}

fn extract_route(text: &str) -> Option<String> {
    let t = text.trim();
    let t = t
        .strip_prefix("```json")
        .or_else(|| t.strip_prefix("```"))
        .map(|rest| rest.trim_end().trim_end_matches("```"))
        .unwrap_or(t)
        .trim();
    if let (Some(open), Some(close)) = (t.find('{'), t.rfind('}')) {
        if open < close {
            let obj = &t[open..=close];
            let parsed = serde_json::from_str::<Value>(obj)
                .ok()
                .or_else(|| serde_json::from_str::<Value>(&obj.replace('\'', "\"")).ok());
            if let Some(route) = parsed
                .as_ref()
                .and_then(|v| v.get("route"))
                .and_then(Value::as_str)
            {
                return Some(route.trim().to_string());
            }
        }
    }
    // A bare name, as small models sometimes answer.
    let bare = t.trim_matches(|c: char| c == '"' || c == '\'' || c.is_whitespace());
    (!bare.is_empty() && !bare.contains(char::is_whitespace)).then(|| bare.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dualrouter_core::conversation::Turn;

    fn routes() -> Vec<RouteSpec> {
        vec![
            RouteSpec::new("programming/bug-fix", "fixing errors in code"),
            RouteSpec::new("writing/summary", "summarising a text"),
        ]
    }

    #[test]
    fn answers_in_every_shape() {
        let r = routes();
        for ans in [
            r#"{"route": "programming/bug-fix"}"#,
            "{'route': 'programming/bug-fix'}",
            "```json\n{\"route\": \"programming/bug-fix\"}\n```",
            "  \n{\"route\":\"programming/bug-fix\"}  ",
            "programming/bug-fix",
        ] {
            assert_eq!(
                parse_answer(ans, &r).as_deref(),
                Some("programming/bug-fix"),
                "{ans}"
            );
        }
        for ans in [
            r#"{"route": "other"}"#,
            r#"{"route": "cooking/recipe"}"#,
            "I cannot decide, sorry",
            "",
            "{",
        ] {
            assert_eq!(parse_answer(ans, &r), None, "{ans}");
        }
    }

    #[test]
    fn prompt_drops_and_trims() {
        let turn = |role: &str, text: &str| Turn {
            role: role.into(),
            text: text.into(),
        };
        let c = Conversation {
            turns: vec![
                turn("system", "you are helpful"),
                turn("user", &"old ".repeat(3000)),
                turn("assistant", ""),
                turn("tool", "{}"),
                turn("assistant", "earlier answer"),
                turn("user", "fix my bug"),
            ],
        };
        let p = prompt(&routes(), &c, 2048);
        assert!(
            p.starts_with("You are a helpful assistant designed to find the best suited route.\n")
        );
        assert!(p.contains(
            "<routes>\n[{\"name\":\"programming/bug-fix\",\"description\":\"fixing errors in code\"},"
        ));
        assert!(
            p.contains("<conversation>\n[{\"role\":\"assistant\",\"content\":\"earlier answer\"},{\"role\":\"user\",\"content\":\"fix my bug\"}]\n</conversation>"),
            "{p}"
        );
        assert!(!p.contains("you are helpful") && !p.contains("old old"));
        assert!(p.ends_with("{\"route\": \"route_name\"}\n"));
    }
}
