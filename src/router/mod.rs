//! Routing: [`DualRouter`] classifies a conversation into a route (`domain/action`) with one
//! encoder pass whose embedding the later stages (candidates, MIRT scoring) share.

pub mod classify;
pub mod conversation;

use std::sync::Arc;

use classify::arch_router::ArchRouterClient;
use classify::embedded::{EmbeddedClassifier, HeadTraining};
use classify::{Classifier, Route, RouteSpec};
use conversation::Conversation;

use crate::config::Config;
use crate::encoder::{Encoder, EncoderError};
use crate::metrics::Metrics;
use crate::store::Policy;

/// The router layer's error type.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("encoder: {0}")]
    Encoder(#[from] EncoderError),
    #[error("arch-router client: {0}")]
    ArchRouter(#[from] classify::arch_router::ArchRouterError),
    #[error("the conversation has no text to route on")]
    Empty,
    #[error("routing task failed: {0}")]
    Task(String),
}

/// What routing decided for a conversation (so far: its route).
#[derive(Debug, Clone, serde::Serialize)]
pub struct RoutingDecision {
    pub route: Route,
    /// Milliseconds per step.
    pub latencies_ms: std::collections::BTreeMap<String, f64>,
}

pub struct DualRouter {
    encoder: Arc<Encoder>,
    classifier: Classifier,
}

/// Routes from policies: `domain/action`, description, examples.
pub fn routes_from_policies(policies: &[Policy]) -> Vec<RouteSpec> {
    policies
        .iter()
        .map(|p| RouteSpec {
            name: p.route(),
            description: p.description.clone(),
            examples: p.examples.clone(),
        })
        .collect()
}

impl DualRouter {
    /// Loads the encoder, trains the embedded classifier on the routes, and connects the
    /// Arch-Router client when configured.
    pub fn build(
        config: &Config,
        routes: Vec<RouteSpec>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, RouterError> {
        let encoder = Arc::new(Encoder::load(&config.mirt.encoder)?);
        Self::with_encoder(config, encoder, routes, metrics)
    }

    pub fn with_encoder(
        config: &Config,
        encoder: Arc<Encoder>,
        routes: Vec<RouteSpec>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, RouterError> {
        let embedded = EmbeddedClassifier::train(
            routes,
            |texts| encoder.embed_batch(texts),
            config.classifier.min_confidence,
            HeadTraining::default(),
        )?;
        let arch = match &config.classifier.arch_router {
            Some(settings) => Some(ArchRouterClient::new(settings.clone())?),
            None => None,
        };
        Ok(Self {
            encoder,
            classifier: Classifier::new(arch, embedded, metrics),
        })
    }

    pub fn encoder(&self) -> &Arc<Encoder> {
        &self.encoder
    }

    pub fn routes(&self) -> &[RouteSpec] {
        self.classifier.routes()
    }

    /// Classifies a conversation. The encoder pass runs on a blocking thread so it never stalls
    /// the proxy's event loop.
    pub async fn route(&self, conversation: &Conversation) -> Result<RoutingDecision, RouterError> {
        let text = conversation
            .latest_user()
            .ok_or(RouterError::Empty)?
            .to_string();
        let started = std::time::Instant::now();
        let encoder = self.encoder.clone();
        let embedding = tokio::task::spawn_blocking(move || encoder.embed(&text))
            .await
            .map_err(|e| RouterError::Task(e.to_string()))??;
        let embed_ms = started.elapsed().as_secs_f64() * 1e3;
        let started = std::time::Instant::now();
        let route = self.classifier.classify(conversation, &embedding).await;
        let mut latencies_ms = std::collections::BTreeMap::new();
        latencies_ms.insert("embed".to_string(), embed_ms);
        latencies_ms.insert(
            "classify".to_string(),
            started.elapsed().as_secs_f64() * 1e3,
        );
        Ok(RoutingDecision {
            route,
            latencies_ms,
        })
    }
}
