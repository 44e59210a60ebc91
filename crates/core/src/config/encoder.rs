//! The `mirt.encoder` section: which prompt encoder, where its files are, its budgets.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Which encoder backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EncoderKind {
    /// all-MiniLM-L6-v2, fp32, from its safetensors weights.
    Minilm,
    /// all-MiniLM-L6-v2 from its safetensors weights, computed in dynamic int8.
    #[default]
    #[serde(rename = "minilm-int8")]
    MinilmInt8,
    /// model2vec potion-base-8M static embeddings.
    Static,
}

/// Encoder settings (`mirt.encoder` in the config file).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EncoderConfig {
    #[serde(default)]
    pub kind: EncoderKind,
    /// The folder `scripts/fetch-models.sh` fills (`minilm/`, `potion-base-8M/`, `onnxruntime/`).
    #[serde(default = "default_models_dir")]
    pub models_dir: PathBuf,
    /// Token budget per prompt, special tokens included.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: usize,
    /// Of a long prompt, keep this many tokens from the start; the rest of the budget comes from the end.
    #[serde(default = "default_head_tokens")]
    pub head_tokens: usize,
    /// Prompts per ONNX run.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Embeddings kept in the LRU cache (0 disables it).
    #[serde(default = "default_cache")]
    pub cache_size: usize,
    /// ONNX Runtime intra-op threads.
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// ONNX Runtime sessions, each one encoder pass at a time, so this many prompts are encoded
    /// at once. 0 (the default): one per proxy worker thread (`server.threads`); a command
    /// without workers (`train`, `eval`) uses one.
    #[serde(default)]
    pub sessions: usize,
}

fn default_models_dir() -> PathBuf {
    PathBuf::from("models")
}
fn default_max_tokens() -> usize {
    256
}
fn default_head_tokens() -> usize {
    32
}
fn default_batch() -> usize {
    16
}
fn default_cache() -> usize {
    4096
}
fn default_threads() -> usize {
    1
}

impl Default for EncoderConfig {
    fn default() -> Self {
        Self {
            kind: EncoderKind::default(),
            models_dir: default_models_dir(),
            max_tokens: default_max_tokens(),
            head_tokens: default_head_tokens(),
            batch_size: default_batch(),
            cache_size: default_cache(),
            threads: default_threads(),
            sessions: 0,
        }
    }
}

impl EncoderConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_tokens < 8 || self.max_tokens > 512 {
            return Err(format!(
                "max_tokens must be in 8..=512, got {}",
                self.max_tokens
            ));
        }
        if self.head_tokens + 2 > self.max_tokens {
            return Err(format!(
                "head_tokens ({}) must leave room in max_tokens ({})",
                self.head_tokens, self.max_tokens
            ));
        }
        if self.batch_size == 0 || self.threads == 0 {
            return Err("batch_size and threads must be at least 1".into());
        }
        Ok(())
    }
}

impl std::str::FromStr for EncoderKind {
    type Err = String;

    /// `minilm`, `minilm-int8`, or `static` (also `potion`).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "minilm" => Ok(Self::Minilm),
            "minilm-int8" => Ok(Self::MinilmInt8),
            "static" | "potion" => Ok(Self::Static),
            other => Err(format!(
                "unknown encoder `{other}` (minilm | minilm-int8 | static)"
            )),
        }
    }
}
