//! MIRT routing (`docs/routing.md#scoring-mirt`): per-model ability θ_m, per-prompt discrimination a and difficulty b from the
//! prompt's features x; P(success) = σ(a·θ_m − b). The objective trades P against price.
//!
//! - [`data`]: outcome files (wide CSV, long CSV, JSONL).
//! - [`model`]: the maths, Adam training, seeded RNG.
//! - [`Mirt`]: a trained router (weights + model table + feature layout), saved as a versioned JSON checkpoint.
//! - [`cli`]: `dualrouter train` and `dualrouter eval`.

pub mod clusters;
pub mod data;
pub mod fit;
pub mod logistic;
pub mod model;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use data::{DataError, Dataset};
pub use dualrouter_core::config::mirt::{parse_interval, MirtSettings, Objective};
pub use model::{TrainConfig, TrainReport, Weights};

/// Checkpoint format name and version written into every checkpoint.
pub const CHECKPOINT_FORMAT: &str = "dualrouter-mirt";
pub const CHECKPOINT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum MirtError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Encoder(#[from] crate::encoder::EncoderError),
    #[error("checkpoint {path}: {msg}")]
    Checkpoint { path: PathBuf, msg: String },
    #[error(
        "checkpoint {path} was made with encoder `{checkpoint}` but the configured encoder is `{encoder}`: \
         retrain with `dualrouter train`, or configure the encoder the checkpoint names"
    )]
    EncoderMismatch {
        path: PathBuf,
        checkpoint: String,
        encoder: String,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub type Result<T, E = MirtError> = std::result::Result<T, E>;

/// Built-in prompt features that can join the embedding in x (names are stored in the checkpoint).
pub const BUILTIN_FEATURES: [&str; 3] = ["bias", "log_chars", "code"];

/// Value of one built-in feature for a prompt; None for a name that is not built in.
pub fn builtin_feature(name: &str, text: &str) -> Option<f32> {
    match name {
        "bias" => Some(1.0),
        "log_chars" => Some(((text.chars().count() as f32) + 1.0).ln() / 10.0),
        "code" => {
            let code = text.contains("```")
                || text.contains("def ")
                || text.contains("return ")
                || text.contains("#include")
                || text.contains("function ")
                || text.contains(");");
            Some(if code { 1.0 } else { 0.0 })
        }
        _ => None,
    }
}

/// Order candidate indices best-first under the objective. `p[i]` and `price[i]` belong to candidate i.
pub fn rank(p: &[f32], price: &[f64], cost_ref: f64, obj: Objective) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..p.len().min(price.len())).collect();
    let cref = if cost_ref > 0.0 { cost_ref } else { 1.0 };
    match obj {
        Objective::CostWeight(w) => {
            let score = |i: usize| f64::from(p[i]) - w * price[i] / cref;
            idx.sort_by(|&x, &y| {
                score(y)
                    .total_cmp(&score(x))
                    .then(price[x].total_cmp(&price[y]))
            });
        }
        Objective::CheapestAbove(t) => {
            idx.sort_by(|&x, &y| {
                let ox = f64::from(p[x]) >= t;
                let oy = f64::from(p[y]) >= t;
                oy.cmp(&ox).then_with(|| {
                    if ox && oy {
                        price[x].total_cmp(&price[y])
                    } else {
                        p[y].total_cmp(&p[x])
                    }
                })
            });
        }
    }
    idx
}

/// One routable model in a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelInfo {
    pub name: String,
    /// Mean cost per query (USD) in the training data, or the configured price.
    pub price: f64,
    /// True when θ comes from the prior (no outcomes yet).
    #[serde(default)]
    pub cold: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// Outcomes seen in training.
    #[serde(default)]
    pub outcomes: usize,
}

/// Summary of the data a checkpoint was trained on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct TrainingSummary {
    pub data: String,
    pub split: Option<String>,
    pub rows: usize,
    pub rows_skipped: usize,
    pub command: String,
    pub train: Option<TrainReport>,
    pub config: Option<TrainConfig>,
    #[serde(default)]
    pub ensemble: usize,
}

/// A trained router, as stored in a checkpoint file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Mirt {
    pub format: String,
    pub version: u32,
    pub encoder: String,
    pub embed_dim: usize,
    /// Whether x starts with the prompt's embedding (see [`XLayout`]); absent means yes.
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub embedding_in_x: bool,
    /// Unit centroids of a k-means of the training embeddings; x holds a one-hot of the nearest
    /// (see [`XLayout`]). Empty: none.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        with = "model::f32_b64_nested"
    )]
    pub centroids: Vec<Vec<f32>>,
    /// Features at the end of x, in order (built-in names; others come from plugins by name).
    pub features: Vec<String>,
    /// Price scale of the cost-weight objective (the dearest trained model's price).
    pub cost_ref: f64,
    pub models: Vec<ModelInfo>,
    pub weights: Weights,
    /// Further ensemble members (same shapes, other seeds); P is the mean over `weights` and these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ensemble: Vec<Weights>,
    pub training: TrainingSummary,
    #[serde(default)]
    pub eval: serde_json::Value,
}

fn yes() -> bool {
    true
}
fn is_yes(b: &bool) -> bool {
    *b
}

/// How a prompt becomes MIRT's input x: its embedding (if `embedding`), then a one-hot of its
/// nearest centroid (if there are centroids), then the named features (built-in from the text,
/// else from `extra`, else 0).
#[derive(Debug, Clone, Copy)]
pub struct XLayout<'a> {
    pub embedding: bool,
    pub centroids: &'a [Vec<f32>],
    pub features: &'a [String],
}

impl XLayout<'_> {
    pub fn dim(&self, embed_dim: usize) -> usize {
        self.features_at(embed_dim) + self.features.len()
    }

    /// Where the named features start in x.
    pub fn features_at(&self, embed_dim: usize) -> usize {
        (if self.embedding { embed_dim } else { 0 }) + self.centroids.len()
    }

    /// x for a prompt. Without its text (a logged decision), built-in features come from
    /// `extra`, where they were stored.
    pub fn build(
        &self,
        emb: &[f32],
        text: Option<&str>,
        extra: &HashMap<String, f32>,
        x: &mut Vec<f32>,
    ) {
        x.clear();
        if self.embedding {
            x.extend_from_slice(emb);
        }
        if !self.centroids.is_empty() {
            let at = x.len();
            x.resize(at + self.centroids.len(), 0.0);
            x[at + clusters::nearest(self.centroids, emb)] = 1.0;
        }
        for f in self.features {
            let v = text
                .and_then(|t| builtin_feature(f, t))
                .or_else(|| extra.get(f).copied())
                .unwrap_or(0.0);
            x.push(v);
        }
    }
}

impl Mirt {
    pub fn layout(&self) -> XLayout<'_> {
        XLayout {
            embedding: self.embedding_in_x,
            centroids: &self.centroids,
            features: &self.features,
        }
    }

    pub fn dim_x(&self) -> usize {
        self.layout().dim(self.embed_dim)
    }

    /// x for a prompt (see [`XLayout`]).
    pub fn features_into(
        &self,
        emb: &[f32],
        text: &str,
        extra: &HashMap<String, f32>,
        x: &mut Vec<f32>,
    ) {
        self.layout().build(emb, Some(text), extra, x);
    }

    /// P(success) of every model of the checkpoint for features x.
    pub fn predict(&self, x: &[f32]) -> Vec<f32> {
        let all: Vec<usize> = (0..self.models.len()).collect();
        let mut out = Vec::new();
        self.predict_subset(x, &all, &mut out);
        out
    }

    fn members(&self) -> impl Iterator<Item = &Weights> {
        std::iter::once(&self.weights).chain(self.ensemble.iter())
    }

    /// P for a subset of models (indices into `models`) without computing the others.
    pub fn predict_subset(&self, x: &[f32], which: &[usize], out: &mut Vec<f32>) {
        out.clear();
        out.resize(which.len(), 0.0);
        let mut n = 0f32;
        let mut a = [0f32; 256];
        for w in self.members() {
            let k = w.latent.min(256);
            let b = w.prompt_params(x, &mut a[..k]);
            for (o, &m) in out.iter_mut().zip(which) {
                let t = &w.theta[m];
                *o += model::sigmoid(a[..k].iter().zip(t).map(|(p, q)| p * q).sum::<f32>() - b);
            }
            n += 1.0;
        }
        out.iter_mut().for_each(|o| *o /= n);
    }

    pub fn model_index(&self, name: &str) -> Option<usize> {
        self.models.iter().position(|m| m.name == name)
    }

    /// Add a model without outcomes: θ from a prior, marked cold. Prior: the mean θ of trained models of the same
    /// tier if any; otherwise the mean θ of the two trained models nearest in log price.
    pub fn add_cold_model(&mut self, name: &str, price: f64, tier: Option<&str>) -> Result<usize> {
        if self.model_index(name).is_some() {
            return Err(MirtError::Invalid(format!(
                "model `{name}` is already in the checkpoint"
            )));
        }
        let warm: Vec<usize> = (0..self.models.len())
            .filter(|&i| !self.models[i].cold)
            .collect();
        if warm.is_empty() {
            return Err(MirtError::Invalid(
                "no trained model to take a prior from".into(),
            ));
        }
        let same_tier: Vec<usize> = match tier {
            Some(t) => warm
                .iter()
                .copied()
                .filter(|&i| self.models[i].tier.as_deref() == Some(t))
                .collect(),
            None => Vec::new(),
        };
        // Trained models rarely carry a tier: then `economy`, `standard` and `premium` stand
        // for the cheapest, middle and dearest third of them by price.
        let same_tier = if same_tier.is_empty() {
            let third = match tier {
                Some("economy") => Some(0),
                Some("standard") => Some(1),
                Some("premium") => Some(2),
                _ => None,
            };
            match third {
                Some(t) => {
                    let mut by_price = warm.clone();
                    by_price
                        .sort_by(|&a, &b| self.models[a].price.total_cmp(&self.models[b].price));
                    let n = by_price.len();
                    let (lo, hi) = (t * n / 3, ((t + 1) * n / 3).max(t * n / 3 + 1).min(n));
                    by_price[lo..hi].to_vec()
                }
                None => Vec::new(),
            }
        } else {
            same_tier
        };
        let donors = if same_tier.is_empty() {
            let lp = price.max(1e-12).ln();
            let mut by_price = warm.clone();
            by_price.sort_by(|&a, &b| {
                let da = (self.models[a].price.max(1e-12).ln() - lp).abs();
                let db = (self.models[b].price.max(1e-12).ln() - lp).abs();
                da.total_cmp(&db)
            });
            by_price.truncate(2);
            by_price
        } else {
            same_tier
        };
        for w in std::iter::once(&mut self.weights).chain(self.ensemble.iter_mut()) {
            let mut theta = vec![0f32; w.latent];
            for &d in &donors {
                theta.iter_mut().zip(&w.theta[d]).for_each(|(t, v)| *t += v);
            }
            theta.iter_mut().for_each(|t| *t /= donors.len() as f32);
            w.theta.push(theta);
        }
        self.models.push(ModelInfo {
            name: name.to_string(),
            price,
            cold: true,
            tier: tier.map(str::to_string),
            outcomes: 0,
        });
        Ok(self.models.len() - 1)
    }

    /// Add `name` scored with the ability of the checkpoint's `of` (a copy, marked cold: `name`
    /// has no outcomes of its own yet).
    pub fn add_alias(&mut self, name: &str, of: &str, price: f64) -> Result<usize> {
        if self.model_index(name).is_some() {
            return Err(MirtError::Invalid(format!(
                "model `{name}` is already in the checkpoint"
            )));
        }
        let src = self
            .model_index(of)
            .ok_or_else(|| MirtError::Invalid(format!("model `{of}` is not in the checkpoint")))?;
        for w in std::iter::once(&mut self.weights).chain(self.ensemble.iter_mut()) {
            let theta = w.theta[src].clone();
            w.theta.push(theta);
        }
        self.models.push(ModelInfo {
            name: name.to_string(),
            price,
            cold: true,
            tier: self.models[src].tier.clone(),
            outcomes: 0,
        });
        Ok(self.models.len() - 1)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let s = serde_json::to_string(self).map_err(|e| MirtError::Checkpoint {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| MirtError::Io {
                path: dir.to_path_buf(),
                source: e,
            })?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, s + "\n").map_err(|e| MirtError::Io {
            path: tmp.clone(),
            source: e,
        })?;
        std::fs::rename(&tmp, path).map_err(|e| MirtError::Io {
            path: path.to_path_buf(),
            source: e,
        })
    }

    /// Load and check a checkpoint. With `encoder_id`, a checkpoint made with another encoder is an error.
    pub fn load(path: &Path, encoder_id: Option<&str>) -> Result<Self> {
        let err = |msg: String| MirtError::Checkpoint {
            path: path.to_path_buf(),
            msg,
        };
        let text = std::fs::read_to_string(path).map_err(|e| MirtError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        let head: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| err(format!("not JSON: {e}")))?;
        if head.get("format").and_then(|f| f.as_str()) != Some(CHECKPOINT_FORMAT) {
            return Err(err(format!("not a {CHECKPOINT_FORMAT} checkpoint")));
        }
        let v = head.get("version").and_then(|v| v.as_u64()).unwrap_or(0);
        if v != u64::from(CHECKPOINT_VERSION) {
            return Err(err(format!(
                "format version {v}, this build reads version {CHECKPOINT_VERSION}"
            )));
        }
        let m: Mirt = serde_json::from_value(head).map_err(|e| err(e.to_string()))?;
        m.check().map_err(err)?;
        if let Some(id) = encoder_id {
            if id != m.encoder {
                return Err(MirtError::EncoderMismatch {
                    path: path.to_path_buf(),
                    checkpoint: m.encoder.clone(),
                    encoder: id.to_string(),
                });
            }
        }
        Ok(m)
    }

    fn check(&self) -> std::result::Result<(), String> {
        if self.centroids.iter().any(|c| c.len() != self.embed_dim) {
            return Err(format!(
                "centroids do not have the embedding's {} dimensions",
                self.embed_dim
            ));
        }
        for w in self.members() {
            self.check_member(w)?;
        }
        Ok(())
    }

    fn check_member(&self, w: &Weights) -> std::result::Result<(), String> {
        if w.dim_x != self.dim_x() {
            return Err(format!(
                "weights expect {} inputs, the checkpoint's prompt layout gives {}",
                w.dim_x,
                self.dim_x()
            ));
        }
        if w.w_a.len() != w.latent * w.dim_x || w.w_b.len() != w.dim_x {
            return Err("weight matrix sizes do not match dim_x/latent".into());
        }
        if w.latent == 0 || w.latent > 256 {
            return Err(format!("latent dimension {} out of 1..=256", w.latent));
        }
        if w.theta.len() != self.models.len() || w.theta.iter().any(|t| t.len() != w.latent) {
            return Err("θ table does not match the model list".into());
        }
        if w.w_a
            .iter()
            .chain(&w.w_b)
            .chain(w.theta.iter().flatten())
            .any(|v| !v.is_finite())
        {
            return Err("non-finite weight".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_strictly() {
        let s: MirtSettings = serde_yaml_ng::from_str(
            "checkpoint: c.json\ncost_weight: 0.5\nencoder: { kind: static, max_tokens: 128 }\n",
        )
        .unwrap();
        assert_eq!(s.encoder.kind, crate::encoder::EncoderKind::Static);
        assert_eq!(s.objective(), Objective::CostWeight(0.5));
        assert!(s.validate().is_ok());
        assert!(serde_yaml_ng::from_str::<MirtSettings>("cost_wieght: 1\n").is_err());
        let bad = MirtSettings {
            target: Some(2.0),
            ..MirtSettings::default()
        };
        assert!(bad.validate().unwrap_err().contains("mirt.target"));
    }

    #[test]
    fn rank_cost_weight_and_threshold() {
        let p = [0.9f32, 0.7, 0.5];
        let price = [10.0, 1.0, 0.1];
        assert_eq!(rank(&p, &price, 10.0, Objective::CostWeight(0.0))[0], 0);
        assert_eq!(rank(&p, &price, 10.0, Objective::CostWeight(1.0))[0], 1);
        assert_eq!(rank(&p, &price, 10.0, Objective::CostWeight(100.0))[0], 2);
        assert_eq!(
            rank(&p, &price, 10.0, Objective::CheapestAbove(0.6)),
            vec![1, 0, 2]
        );
        assert_eq!(rank(&p, &price, 10.0, Objective::CheapestAbove(0.95))[0], 0);
    }
}
