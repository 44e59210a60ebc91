//! The prompt encoder: text → a unit-length embedding, shared by the router's classifier and MIRT.
//!
//! Backends, chosen in config (`mirt.encoder.kind`):
//! - `minilm`: all-MiniLM-L6-v2 in full precision: its safetensors weights, written as an ONNX graph in memory
//!   ([`bert_onnx`]), run by ONNX Runtime (loaded at run time from `ORT_DYLIB_PATH` or `models/onnxruntime/`)
//!   after `tokenizers`; mean pooling over the attention mask, then L2 normalisation, as sentence-transformers does
//!   for this model. 384 dimensions.
//! - `minilm-int8` (default): the same graph in dynamic int8 (7-bit weights per channel, activations quantised per
//!   prompt at run time, integer products): about half the time of `minilm` here, embeddings at cosine ≥ 0.97 to
//!   it, and the same routing and classification accuracy (`docs/routing.md#the-prompt-encoder`).
//! - `static`: model2vec potion-base-8M: the mean of per-token static vectors, normalised. 256 dimensions, ~100×
//!   faster, a little weaker.
//!
//! Long prompts are truncated to `max_tokens` keeping the first `head_tokens` and the rest from the END (the
//! question of a few-shot prompt sits at its end). Embeddings are cached in an LRU keyed by the prompt's hash.
//! The files come from `scripts/fetch-models.sh`; a missing or corrupt file is an [`EncoderError`] that says so.

pub mod bert_onnx;
mod minilm;
mod pool;
mod static_emb;

use std::hash::{Hash, Hasher};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use dualrouter_core::config::encoder::{EncoderConfig, EncoderKind};
pub use minilm::{MiniLm, SessionTuning};
pub use static_emb::StaticEmbedder;

/// What can go wrong in the encoder layer.
#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    #[error("{what} not found at {path}: run `scripts/fetch-models.sh` (or set the models folder in config)")]
    Missing { what: &'static str, path: PathBuf },
    #[error("{what} at {path} is unusable ({reason}): run `scripts/fetch-models.sh` again to replace it")]
    Corrupt {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("encoder config: {0}")]
    Config(String),
}

pub type Result<T, E = EncoderError> = std::result::Result<T, E>;

/// Keep `head` tokens from the start and fill the remaining `budget - head` from the end.
pub(crate) fn head_tail(ids: &[u32], budget: usize, head: usize) -> Vec<u32> {
    if ids.len() <= budget {
        return ids.to_vec();
    }
    let tail = budget - head.min(budget);
    let mut out = Vec::with_capacity(budget);
    out.extend_from_slice(&ids[..head.min(budget)]);
    out.extend_from_slice(&ids[ids.len() - tail..]);
    out
}

pub(crate) fn l2_normalise(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

enum Backend {
    MiniLm(MiniLm),
    Static(StaticEmbedder),
}

/// A loaded encoder with its cache. Cheap to share behind an `Arc`.
pub struct Encoder {
    backend: Backend,
    id: String,
    cache: Option<Mutex<lru::LruCache<u64, Arc<[f32]>>>>,
    batch_size: usize,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder").field("id", &self.id).finish()
    }
}

fn prompt_hash(text: &str) -> u64 {
    // SipHash with fixed keys: stable within a process, which is all an in-memory cache needs.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

impl Encoder {
    /// Load the encoder the config names. Fails with a message naming the missing file and the fetch script.
    pub fn load(cfg: &EncoderConfig) -> Result<Self> {
        cfg.validate().map_err(EncoderError::Config)?;
        let (backend, id) = match cfg.kind {
            EncoderKind::Minilm | EncoderKind::MinilmInt8 => {
                let (precision, name) = if cfg.kind == EncoderKind::MinilmInt8 {
                    // not `minilm-l6-v2-int8`: that id belonged to the int8 ONNX file used before, whose
                    // checkpoints must not load with this encoder
                    (bert_onnx::Precision::Int8, "minilm-l6-v2-dq8")
                } else {
                    (bert_onnx::Precision::Fp32, "minilm-l6-v2")
                };
                let m = MiniLm::load(&cfg.models_dir, cfg, precision)?;
                let id = format!("{name}/t{}h{}", cfg.max_tokens, cfg.head_tokens);
                (Backend::MiniLm(m), id)
            }
            EncoderKind::Static => {
                let m = StaticEmbedder::load(&cfg.models_dir.join("potion-base-8M"), cfg)?;
                let id = format!("potion-base-8m/t{}h{}", cfg.max_tokens, cfg.head_tokens);
                (Backend::Static(m), id)
            }
        };
        let cache = NonZeroUsize::new(cfg.cache_size).map(|n| Mutex::new(lru::LruCache::new(n)));
        Ok(Self {
            backend,
            id,
            cache,
            batch_size: cfg.batch_size,
        })
    }

    /// The encoder's id, stored in checkpoints (a checkpoint only loads with the encoder that made it).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// How many prompts it encodes at once (its ONNX Runtime sessions); `None` when that is not
    /// bounded (the static encoder: a table lookup on the caller's thread).
    pub fn concurrency(&self) -> Option<usize> {
        match &self.backend {
            Backend::MiniLm(m) => Some(m.sessions()),
            Backend::Static(_) => None,
        }
    }

    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        match &self.backend {
            Backend::MiniLm(m) => m.dim(),
            Backend::Static(s) => s.dim(),
        }
    }

    /// Whether the cache holds this prompt's embedding now (it may be evicted before it is
    /// asked for: a hint, for callers that would otherwise wait for a session).
    pub fn is_cached(&self, text: &str) -> bool {
        let h = prompt_hash(text);
        self.cache
            .as_ref()
            .and_then(|c| c.lock().ok().map(|c| c.contains(&h)))
            .unwrap_or(false)
    }

    /// One prompt's unit-length embedding.
    pub fn embed(&self, text: &str) -> Result<Arc<[f32]>> {
        let mut v = self.embed_batch(&[text])?;
        v.pop()
            .ok_or_else(|| EncoderError::Runtime("no embedding returned".into()))
    }

    /// Many prompts at once; cached ones are not recomputed, the others run in batches.
    pub fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Arc<[f32]>>> {
        let hashes: Vec<u64> = texts.iter().map(|t| prompt_hash(t)).collect();
        let mut out: Vec<Option<Arc<[f32]>>> = vec![None; texts.len()];
        if let Some(cache) = &self.cache {
            let mut c = cache
                .lock()
                .map_err(|_| EncoderError::Runtime("cache lock poisoned".into()))?;
            for (i, h) in hashes.iter().enumerate() {
                out[i] = c.get(h).cloned();
            }
        }
        let missing: Vec<usize> = (0..texts.len()).filter(|&i| out[i].is_none()).collect();
        for chunk in missing.chunks(self.batch_size.max(1)) {
            let batch: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
            let vecs = match &self.backend {
                Backend::MiniLm(m) => m.embed_batch(&batch)?,
                Backend::Static(s) => s.embed_batch(&batch)?,
            };
            for (&i, v) in chunk.iter().zip(vecs) {
                let v: Arc<[f32]> = v.into();
                if let Some(cache) = &self.cache {
                    if let Ok(mut c) = cache.lock() {
                        c.put(hashes[i], v.clone());
                    }
                }
                out[i] = Some(v);
            }
        }
        out.into_iter()
            .map(|v| v.ok_or_else(|| EncoderError::Runtime("embedding missing".into())))
            .collect()
    }
}

pub(crate) fn require_file(path: &Path, what: &'static str) -> Result<()> {
    if path.is_file() {
        Ok(())
    } else {
        Err(EncoderError::Missing {
            what,
            path: path.to_path_buf(),
        })
    }
}

pub(crate) fn load_tokenizer(path: &Path, what: &'static str) -> Result<tokenizers::Tokenizer> {
    require_file(path, what)?;
    let mut tok = tokenizers::Tokenizer::from_file(path).map_err(|e| EncoderError::Corrupt {
        what,
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    tok.with_padding(None);
    tok.with_truncation(None)
        .map_err(|e| EncoderError::Tokenizer(e.to_string()))?;
    Ok(tok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_tail_keeps_both_ends() {
        let ids: Vec<u32> = (0..10).collect();
        assert_eq!(head_tail(&ids, 5, 2), vec![0, 1, 7, 8, 9]);
        assert_eq!(head_tail(&ids, 20, 2), ids);
        assert_eq!(head_tail(&ids, 4, 0), vec![6, 7, 8, 9]);
    }

    #[test]
    fn config_rejects_bad_budget() {
        let cfg = EncoderConfig {
            head_tokens: 300,
            ..EncoderConfig::default()
        };
        assert!(cfg.validate().is_err());
    }
}
