//! model2vec static embeddings (potion-base-8M): mean of per-token vectors, L2-normalised.

use std::path::Path;

use super::{
    head_tail, l2_normalise, load_tokenizer, require_file, EncoderConfig, EncoderError, Result,
};

pub struct StaticEmbedder {
    tokenizer: tokenizers::Tokenizer,
    table: Vec<f32>,
    dim: usize,
    vocab: usize,
    unk: Option<u32>,
    normalize: bool,
    max_tokens: usize,
    head_tokens: usize,
}

/// Read the F32 2-D embedding table of a safetensors file (`embeddings`, or its only tensor).
fn read_safetensors_matrix(path: &Path) -> Result<(Vec<f32>, usize, usize)> {
    require_file(path, "static embedding weights")?;
    let corrupt = |reason: String| EncoderError::Corrupt {
        what: "static embedding weights",
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| corrupt(e.to_string()))?;
    let mut tensors =
        super::bert_onnx::read_safetensors(std::io::BufReader::new(file)).map_err(&corrupt)?;
    let name = if tensors.contains_key("embeddings") || tensors.len() != 1 {
        "embeddings".to_string()
    } else {
        tensors.keys().next().cloned().unwrap_or_default()
    };
    let (shape, table) = tensors
        .remove(&name)
        .ok_or_else(|| corrupt("no F32 tensor `embeddings`".into()))?;
    if shape.len() != 2 {
        return Err(corrupt("expected a 2-D tensor".into()));
    }
    Ok((table, shape[0], shape[1]))
}

impl StaticEmbedder {
    pub fn load(dir: &Path, cfg: &EncoderConfig) -> Result<Self> {
        let tokenizer = load_tokenizer(&dir.join("tokenizer.json"), "static embedding tokenizer")?;
        let (table, vocab, dim) = read_safetensors_matrix(&dir.join("model.safetensors"))?;
        let normalize = std::fs::read_to_string(dir.join("config.json"))
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .and_then(|v| v.get("normalize").and_then(|b| b.as_bool()))
            .unwrap_or(true);
        let unk = tokenizer.token_to_id("[UNK]");
        Ok(Self {
            tokenizer,
            table,
            dim,
            vocab,
            unk,
            normalize,
            max_tokens: cfg.max_tokens,
            head_tokens: cfg.head_tokens,
        })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        texts.iter().map(|t| self.embed_one(t)).collect()
    }

    fn embed_one(&self, text: &str) -> Result<Vec<f32>> {
        let enc = self
            .tokenizer
            .encode_fast(text, false)
            .map_err(|e| EncoderError::Tokenizer(e.to_string()))?;
        let ids: Vec<u32> = enc
            .get_ids()
            .iter()
            .copied()
            .filter(|&i| Some(i) != self.unk && (i as usize) < self.vocab)
            .collect();
        let ids = head_tail(&ids, self.max_tokens, self.head_tokens);
        let mut v = vec![0f32; self.dim];
        for &i in &ids {
            let row = &self.table[i as usize * self.dim..(i as usize + 1) * self.dim];
            v.iter_mut().zip(row).for_each(|(a, x)| *a += x);
        }
        if !ids.is_empty() {
            let n = ids.len() as f32;
            v.iter_mut().for_each(|a| *a /= n);
        }
        if self.normalize {
            l2_normalise(&mut v);
        }
        Ok(v)
    }
}
