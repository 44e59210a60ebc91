//! What the admin API shows of the routable models: [`ExecutorInfo`] per model and the
//! [`Catalog`] the registry (or, before it exists, the config) provides.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Config;

/// One routable model as `GET /api/executors` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutorInfo {
    /// The model id clients and policies use.
    pub id: String,
    /// The provider (or executor plugin) serving it.
    pub provider: String,
    /// Where the registry learned of it: `config`, `discovered`, `plugin`.
    pub source: String,
    pub cost_per_mtok: Price,
    pub context_tokens: Option<u64>,
    pub tier: Option<String>,
    /// `healthy`, `cooling_down` (the circuit breaker keeps it out of the candidates) or
    /// `probing` (one request is finding out whether it is back).
    pub health: String,
    pub last_check: Option<DateTime<Utc>>,
}

/// USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Price {
    pub input: f64,
    pub output: f64,
}

/// What the admin API knows about routable models. The proxy's live registry implements it
/// once it exists; [`ConfigCatalog`] is a snapshot of the config file's models.
pub trait Catalog: Send + Sync + 'static {
    /// Every model, in display order.
    fn executors(&self) -> Vec<ExecutorInfo>;
    /// Whether a policy may name this model.
    fn has_model(&self, id: &str) -> bool {
        self.executors().iter().any(|e| e.id == id)
    }
}

/// The models of one config, fixed at construction.
#[derive(Debug, Clone, Default)]
pub struct ConfigCatalog {
    executors: Vec<ExecutorInfo>,
    ids: HashSet<String>,
}

impl ConfigCatalog {
    pub fn new(cfg: &Config) -> Self {
        let executors: Vec<ExecutorInfo> = cfg
            .model_order
            .iter()
            .filter_map(|id| cfg.models.get(id))
            .map(|m| ExecutorInfo {
                id: m.id.clone(),
                provider: m.owner().to_string(),
                source: "config".into(),
                cost_per_mtok: Price {
                    input: m.cost.input,
                    output: m.cost.output,
                },
                context_tokens: m.context_tokens,
                tier: m.tier.clone(),
                health: "unknown".into(),
                last_check: None,
            })
            .collect();
        Self::from_executors(executors)
    }

    pub fn from_executors(executors: Vec<ExecutorInfo>) -> Self {
        let ids = executors.iter().map(|e| e.id.clone()).collect();
        Self { executors, ids }
    }
}

impl Catalog for ConfigCatalog {
    fn executors(&self) -> Vec<ExecutorInfo> {
        self.executors.clone()
    }
    fn has_model(&self, id: &str) -> bool {
        self.ids.contains(id)
    }
}
