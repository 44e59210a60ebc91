//! Step 4 of routing: MIRT's P(success) for the candidates, from the active checkpoint.
//!
//! A [`Scorer`] joins a checkpoint to the registry's models: a model the checkpoint knows by
//! its id is scored with its own ability; one configured with `mirt_model` borrows that
//! checkpoint model's ability; any other gets a prior from its tier and price (marked cold).
//! The router holds the active scorer behind an atomic swap, so activating a new checkpoint
//! never disturbs a request being scored.

use std::collections::HashMap;
use std::path::PathBuf;

use dualrouter_core::config::Model;
use dualrouter_ml::mirt::{Mirt, MirtError};

/// Tokens of a "typical" request, to put configured per-token prices on the checkpoint's
/// per-query price scale when choosing a cold model's prior.
const TYPICAL_INPUT_TOKENS: u64 = 400;
const TYPICAL_OUTPUT_TOKENS: u64 = 200;

pub struct Scorer {
    pub mirt: Mirt,
    /// The `mirt_checkpoints` version, or `None` for the config's checkpoint file.
    pub version: Option<i64>,
    pub path: PathBuf,
    /// Registry model id → index into `mirt.models`.
    index: HashMap<String, usize>,
}

impl std::fmt::Debug for Scorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scorer")
            .field("version", &self.version)
            .field("path", &self.path)
            .field("models", &self.index.len())
            .finish()
    }
}

impl Scorer {
    pub fn new<'a>(
        mut mirt: Mirt,
        version: Option<i64>,
        path: PathBuf,
        models: impl Iterator<Item = &'a std::sync::Arc<Model>>,
    ) -> Result<Self, MirtError> {
        let mut index = HashMap::new();
        for m in models {
            let price = m.cost.usd(TYPICAL_INPUT_TOKENS, TYPICAL_OUTPUT_TOKENS);
            let i = join(
                &mut mirt,
                &m.id,
                price,
                m.mirt_model.as_deref(),
                m.tier.as_deref(),
            )?;
            index.insert(m.id.clone(), i);
        }
        Ok(Self {
            mirt,
            version,
            path,
            index,
        })
    }

    /// A scorer for models given by id and price per query (no registry: `dualrouter replay`),
    /// joined to the checkpoint as [`Scorer::new`] joins the registry's.
    pub fn for_models(
        mut mirt: Mirt,
        path: PathBuf,
        models: &[(String, f64)],
    ) -> Result<Self, MirtError> {
        let mut index = HashMap::new();
        for (id, price) in models {
            let i = join(&mut mirt, id, *price, None, None)?;
            index.insert(id.clone(), i);
        }
        Ok(Self {
            mirt,
            version: None,
            path,
            index,
        })
    }

    pub fn index_of(&self, model: &str) -> Option<usize> {
        self.index.get(model).copied()
    }

    /// Outcomes the model's ability was fitted on (0 for a cold model or an unknown one).
    pub fn outcomes(&self, model: &str) -> usize {
        self.index_of(model)
            .map(|i| &self.mirt.models[i])
            .filter(|m| !m.cold)
            .map_or(0, |m| m.outcomes)
    }

    /// True when the model is scored from a prior, not from outcomes of its own.
    pub fn is_cold(&self, model: &str) -> bool {
        self.index_of(model)
            .is_none_or(|i| self.mirt.models[i].cold)
    }

    /// Whether P can be given for `model`: a registry id, or a model of the checkpoint.
    pub fn knows(&self, model: &str) -> bool {
        self.index_of(model).is_some() || self.mirt.model_index(model).is_some()
    }

    /// P(success) of one model (registry id or checkpoint name) for x.
    pub fn p_named(&self, x: &[f32], model: &str) -> Option<f32> {
        let i = self
            .index_of(model)
            .or_else(|| self.mirt.model_index(model))?;
        let mut out = Vec::new();
        self.mirt.predict_subset(x, &[i], &mut out);
        out.first().copied()
    }

    /// The features x of a prompt (embedding + the checkpoint's features).
    pub fn features(&self, embedding: &[f32], text: &str) -> Vec<f32> {
        self.features_with(embedding, text, &HashMap::new())
    }

    /// x with features from plugins (`<plugin>.<feature>`) for the checkpoint's feature names
    /// that are not built in.
    pub fn features_with(
        &self,
        embedding: &[f32],
        text: &str,
        plugin_features: &HashMap<String, f32>,
    ) -> Vec<f32> {
        let mut x = Vec::with_capacity(self.mirt.dim_x());
        self.mirt
            .features_into(embedding, text, plugin_features, &mut x);
        x
    }

    /// P(success) of each of `models` (registry ids the scorer was built with) for x.
    pub fn p_success(&self, x: &[f32], models: &[&str]) -> Vec<f32> {
        let which: Vec<usize> = models
            .iter()
            .map(|m| self.index_of(m).unwrap_or(usize::MAX))
            .collect();
        let known: Vec<usize> = which.iter().copied().filter(|&i| i != usize::MAX).collect();
        let mut p = Vec::new();
        self.mirt.predict_subset(x, &known, &mut p);
        let mut it = p.into_iter();
        which
            .iter()
            .map(|&i| {
                if i == usize::MAX {
                    0.5
                } else {
                    it.next().unwrap_or(0.5)
                }
            })
            .collect()
    }
}

/// The checkpoint's index of a model: its own, an alias's (`mirt_model`), or a new cold one.
fn join(
    mirt: &mut Mirt,
    id: &str,
    price: f64,
    mirt_model: Option<&str>,
    tier: Option<&str>,
) -> Result<usize, MirtError> {
    match (mirt.model_index(id), mirt_model) {
        (Some(i), _) => Ok(i),
        (None, Some(of)) => mirt
            .add_alias(id, of, price)
            .map_err(|e| MirtError::Invalid(format!("model '{id}': mirt_model: {e}"))),
        (None, None) => mirt.add_cold_model(id, price, tier),
    }
}
