//! Step 1 of routing: the conversation's route, `domain/action`.
//!
//! [`arch_router`] asks the Arch-Router model when one is configured; the embedded classifier
//! answers otherwise, and whenever Arch-Router times out or fails.

pub mod arch_router;
pub mod embedded;

use serde::Serialize;

/// A route the classifiers can choose: a policy's `domain/action`, its description and
/// example utterances.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteSpec {
    /// `domain/action`.
    pub name: String,
    pub description: String,
    pub examples: Vec<String>,
}

impl RouteSpec {
    pub fn new(name: &str, description: &str) -> Self {
        Self {
            name: name.to_string(),
            description: description.to_string(),
            examples: Vec::new(),
        }
    }

    /// `(domain, action)` from the name.
    pub fn parts(&self) -> (&str, &str) {
        self.name
            .split_once('/')
            .unwrap_or((self.name.as_str(), ""))
    }
}

/// Who decided the route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RouteSource {
    ArchRouter,
    Embedded,
    Default,
}

impl RouteSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ArchRouter => "arch-router",
            Self::Embedded => "embedded",
            Self::Default => "default",
        }
    }
}

/// The route of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Route {
    pub domain: String,
    pub action: String,
    pub confidence: f32,
    pub source: RouteSource,
}
