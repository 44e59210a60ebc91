//! Step 1 of routing: the conversation's route, `domain/action`.
//!
//! [`arch_router`] asks the Arch-Router model when one is configured; the embedded classifier
//! answers otherwise, and whenever Arch-Router times out or fails.

pub mod arch_router;
pub mod embedded;
pub mod eval;

use serde::Serialize;

use dualrouter_core::conversation;

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

/// Classifies conversations: Arch-Router when configured and answering, else the embedded
/// classifier; no confident route → the default route.
pub struct Classifier {
    arch: Option<arch_router::ArchRouterClient>,
    embedded: embedded::EmbeddedClassifier,
    metrics: std::sync::Arc<dualrouter_core::metrics::Metrics>,
}

impl Classifier {
    pub fn new(
        arch: Option<arch_router::ArchRouterClient>,
        embedded: embedded::EmbeddedClassifier,
        metrics: std::sync::Arc<dualrouter_core::metrics::Metrics>,
    ) -> Self {
        Self {
            arch,
            embedded,
            metrics,
        }
    }

    pub fn routes(&self) -> &[RouteSpec] {
        self.embedded.routes()
    }

    /// The route of `conversation`, whose (latest user turn's) embedding is `embedding`.
    pub async fn classify(
        &self,
        conversation: &conversation::Conversation,
        embedding: &[f32],
    ) -> Route {
        if let Some(arch) = &self.arch {
            match arch.classify(self.embedded.routes(), conversation).await {
                Ok(Some(name)) => {
                    let (domain, action) = name.split_once('/').unwrap_or((name.as_str(), ""));
                    return self.counted(Route {
                        domain: domain.to_string(),
                        action: action.to_string(),
                        confidence: 1.0,
                        source: RouteSource::ArchRouter,
                    });
                }
                Ok(None) => return self.counted(Route::default_route()),
                Err(e) => {
                    self.metrics
                        .classifier_fallbacks
                        .with_label_values(&[e.kind()])
                        .inc();
                    tracing::debug!("{e}; using the embedded classifier");
                }
            }
        }
        let route = self
            .embedded
            .classify(embedding)
            .unwrap_or_else(Route::default_route);
        self.counted(route)
    }

    fn counted(&self, route: Route) -> Route {
        self.metrics
            .routes
            .with_label_values(&[route.source.as_str()])
            .inc();
        route
    }
}

impl Route {
    /// No route fits: the default policy applies.
    pub fn default_route() -> Self {
        Self {
            domain: "default".into(),
            action: String::new(),
            confidence: 0.0,
            source: RouteSource::Default,
        }
    }

    /// `domain/action`, or `default`.
    pub fn name(&self) -> String {
        if self.action.is_empty() {
            self.domain.clone()
        } else {
            format!("{}/{}", self.domain, self.action)
        }
    }
}
