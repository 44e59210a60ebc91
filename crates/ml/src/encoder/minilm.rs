//! all-MiniLM-L6-v2 through ONNX Runtime: the graph built by [`super::bert_onnx`] from `model.safetensors`, in fp32
//! or dynamic int8 (or any BERT-shaped ONNX file, for the benches).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use super::pool::Pool;

use ort::session::Session;
use ort::value::Tensor;

use super::bert_onnx::Precision;
use super::{
    head_tail, l2_normalise, load_tokenizer, require_file, EncoderConfig, EncoderError, Result,
};

/// The ONNX Runtime library file `scripts/fetch-models.sh` extracts.
pub(super) const ORT_LIB_FILE: &str = "libonnxruntime.so.1.32.0";

static ORT_ENV: OnceLock<ort::environment::Environment> = OnceLock::new();
static ORT_INIT: Mutex<()> = Mutex::new(());

/// Where the ONNX Runtime library is: `ORT_DYLIB_PATH`, else `<models>/onnxruntime/libonnxruntime.so.1.32.0`.
pub(super) fn ort_dylib_path(models_dir: &Path) -> PathBuf {
    match std::env::var_os("ORT_DYLIB_PATH") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => models_dir.join("onnxruntime").join(ORT_LIB_FILE),
    }
}

fn environment(models_dir: &Path) -> Result<ort::environment::Environment> {
    if let Some(env) = ORT_ENV.get() {
        return Ok(env.clone());
    }
    let _guard = ORT_INIT
        .lock()
        .map_err(|_| EncoderError::Runtime("init lock poisoned".into()))?;
    if let Some(env) = ORT_ENV.get() {
        return Ok(env.clone());
    }
    let lib = ort_dylib_path(models_dir);
    require_file(&lib, "ONNX Runtime library (ORT_DYLIB_PATH)")?;
    let env = ort::init_from(&lib)
        .map_err(|e| EncoderError::Corrupt {
            what: "ONNX Runtime library",
            path: lib.clone(),
            reason: e.to_string(),
        })?
        .with_name("dualrouter")
        .build()
        .map_err(|e| EncoderError::Runtime(e.to_string()))?;
    let _ = ORT_ENV.set(env.clone());
    Ok(env)
}

pub struct MiniLm {
    tokenizer: tokenizers::Tokenizer,
    /// ONNX Runtime sessions: each runs one pass at a time, so with N of them N prompts are
    /// encoded at once (a session holds its own copy of the graph's weights and arena).
    sessions: Pool<Session>,
    input_names: Vec<String>,
    cls: u32,
    sep: u32,
    max_tokens: usize,
    head_tokens: usize,
    dim: usize,
    /// Run prompts one per session run (int8: the input's quantisation scale is per tensor, see [`Precision`]).
    one_at_a_time: bool,
}

/// ONNX Runtime session settings (measured in `benches/encoder_variants.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTuning {
    /// 0 = disable, 1 = basic, 2 = extended, 3 = all.
    pub opt_level: u8,
    pub intra_threads: usize,
    pub spinning: bool,
    pub memory_pattern: bool,
    /// The arithmetic of a graph built from safetensors weights (ignored for an ONNX file).
    pub precision: Precision,
}

impl Default for SessionTuning {
    fn default() -> Self {
        Self {
            opt_level: 3,
            intra_threads: 1,
            spinning: true,
            // Off: the memory-pattern planner is for fixed shapes; prompts vary in length. Measured 0.71–0.90× the
            // time with it on (benches/encoder_variants.rs, three runs).
            memory_pattern: false,
            precision: Precision::Fp32,
        }
    }
}

impl MiniLm {
    /// `<models>/minilm/model.safetensors`, computed in `precision`.
    pub fn load(models_dir: &Path, cfg: &EncoderConfig, precision: Precision) -> Result<Self> {
        let model = models_dir.join("minilm").join("model.safetensors");
        let tuning = SessionTuning {
            intra_threads: cfg.threads,
            precision,
            // On for int8: measured 0.88–0.94× the time of off in two interleaved runs (benches/encoder_variants.rs,
            // 2026-11-25); for fp32 the runs disagree (see `SessionTuning::default`).
            memory_pattern: precision == Precision::Int8,
            ..SessionTuning::default()
        };
        Self::load_file(models_dir, &model, cfg, tuning)
    }

    /// Load a specific model file (tokenizer from `<models>/minilm/`) with explicit session settings: an ONNX file,
    /// or BERT weights in a `.safetensors` file (the graph is then built in memory).
    pub fn load_file(
        models_dir: &Path,
        model: &Path,
        cfg: &EncoderConfig,
        tuning: SessionTuning,
    ) -> Result<Self> {
        let dir = models_dir.join("minilm");
        let model = model.to_path_buf();
        let safetensors = model.extension().is_some_and(|e| e == "safetensors");
        let what = if safetensors {
            "MiniLM weights (model.safetensors)"
        } else {
            "MiniLM ONNX model"
        };
        require_file(&model, what)?;
        let tokenizer = load_tokenizer(&dir.join("tokenizer.json"), "MiniLM tokenizer")?;
        let env = environment(models_dir)?;
        let corrupt = |reason: String| EncoderError::Corrupt {
            what,
            path: model.clone(),
            reason,
        };
        let onnx_bytes = if safetensors {
            let file = std::fs::File::open(&model).map_err(|e| corrupt(e.to_string()))?;
            let tensors = super::bert_onnx::read_safetensors(std::io::BufReader::new(file))
                .map_err(&corrupt)?;
            Some(super::bert_onnx::build(tensors, 12, tuning.precision).map_err(&corrupt)?)
        } else {
            None
        };
        use ort::session::builder::GraphOptimizationLevel as G;
        fn rt<E: std::fmt::Display>(e: E) -> EncoderError {
            EncoderError::Runtime(e.to_string())
        }
        let level = match tuning.opt_level {
            0 => G::Disable,
            1 => G::Level1,
            2 => G::Level2,
            _ => G::All,
        };
        let mut builder = Session::builder(&env)
            .map_err(rt)?
            .with_optimization_level(level)
            .map_err(rt)?
            .with_intra_threads(tuning.intra_threads)
            .map_err(rt)?
            .with_inter_threads(1)
            .map_err(rt)?
            .with_parallel_execution(false)
            .map_err(rt)?
            .with_intra_op_spinning(tuning.spinning)
            .map_err(rt)?
            .with_memory_pattern(tuning.memory_pattern)
            .map_err(rt)?;
        let mut sessions = Vec::new();
        for _ in 0..cfg.sessions.max(1) {
            let session = match &onnx_bytes {
                Some(b) => builder.commit_from_memory(b),
                None => builder.commit_from_file(&model),
            }
            .map_err(|e| corrupt(e.to_string()))?;
            sessions.push(session);
        }
        drop(onnx_bytes);
        let session = sessions
            .first()
            .ok_or_else(|| corrupt("no session".into()))?;
        let input_names: Vec<String> = session
            .inputs()
            .iter()
            .map(|i| i.name().to_string())
            .collect();
        if !input_names.iter().any(|n| n == "input_ids") {
            return Err(corrupt(format!(
                "no input_ids input (inputs: {input_names:?})"
            )));
        }
        let cls = tokenizer
            .token_to_id("[CLS]")
            .ok_or_else(|| EncoderError::Tokenizer("no [CLS] token".into()))?;
        let sep = tokenizer
            .token_to_id("[SEP]")
            .ok_or_else(|| EncoderError::Tokenizer("no [SEP] token".into()))?;
        let mut me = Self {
            tokenizer,
            sessions: Pool::new(sessions),
            input_names,
            cls,
            sep,
            max_tokens: cfg.max_tokens,
            head_tokens: cfg.head_tokens,
            dim: 0,
            one_at_a_time: safetensors && tuning.precision == Precision::Int8,
        };
        // One probe run fixes the output width and proves the model runs.
        let probe = me
            .embed_batch(&["probe"])
            .map_err(|e| corrupt(e.to_string()))?;
        me.dim = probe.first().map(|v| v.len()).unwrap_or(0);
        if me.dim == 0 {
            return Err(corrupt("empty output".into()));
        }
        Ok(me)
    }

    /// ONNX Runtime sessions: prompts encoded at once.
    pub fn sessions(&self) -> usize {
        self.sessions.size()
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Token ids with [CLS]/[SEP], truncated head+tail to the budget.
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode_fast(text, false)
            .map_err(|e| EncoderError::Tokenizer(e.to_string()))?;
        let body = head_tail(enc.get_ids(), self.max_tokens - 2, self.head_tokens);
        let mut ids = Vec::with_capacity(body.len() + 2);
        ids.push(self.cls);
        ids.extend(body);
        ids.push(self.sep);
        Ok(ids)
    }

    pub fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        if self.one_at_a_time && texts.len() > 1 {
            let mut out = Vec::with_capacity(texts.len());
            for t in texts {
                out.extend(self.run(&[t])?);
            }
            return Ok(out);
        }
        self.run(texts)
    }

    /// One session run over `texts` (padded to the longest).
    fn run(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let seqs: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| self.token_ids(t))
            .collect::<Result<_>>()?;
        let b = seqs.len();
        let l = seqs.iter().map(Vec::len).max().unwrap_or(2);
        let mut ids = vec![0i64; b * l];
        let mut mask = vec![0i64; b * l];
        for (r, s) in seqs.iter().enumerate() {
            for (c, &t) in s.iter().enumerate() {
                ids[r * l + c] = i64::from(t);
                mask[r * l + c] = 1;
            }
        }
        let rt = |e: ort::Error| EncoderError::Runtime(e.to_string());
        let mut inputs: Vec<(
            std::borrow::Cow<'_, str>,
            ort::session::SessionInputValue<'_>,
        )> = Vec::new();
        for name in &self.input_names {
            let data = match name.as_str() {
                "input_ids" => ids.clone(),
                "attention_mask" => mask.clone(),
                "token_type_ids" => vec![0i64; b * l],
                other => {
                    return Err(EncoderError::Runtime(format!(
                        "unexpected model input {other}"
                    )))
                }
            };
            let t = Tensor::from_array(([b, l], data)).map_err(rt)?;
            inputs.push((name.clone().into(), t.into()));
        }
        let mut session = self
            .sessions
            .lend()
            .map_err(|_| EncoderError::Runtime("session pool lock poisoned".into()))?;
        let outputs = session.run(inputs).map_err(rt)?;
        let (shape, data) = outputs[0].try_extract_tensor::<f32>().map_err(rt)?;
        if shape.len() != 3 || shape[0] as usize != b || shape[1] as usize != l {
            return Err(EncoderError::Runtime(format!(
                "unexpected output shape {shape:?}"
            )));
        }
        let h = shape[2] as usize;
        let mut out = Vec::with_capacity(b);
        for r in 0..b {
            let mut v = vec![0f32; h];
            let mut n = 0f32;
            for c in 0..l {
                if mask[r * l + c] == 1 {
                    let row = &data[(r * l + c) * h..(r * l + c + 1) * h];
                    v.iter_mut().zip(row).for_each(|(a, x)| *a += x);
                    n += 1.0;
                }
            }
            v.iter_mut().for_each(|a| *a /= n.max(1.0));
            l2_normalise(&mut v);
            out.push(v);
        }
        Ok(out)
    }
}
