//! Fitting and evaluating MIRT checkpoints on outcome data: what `dualrouter train` and
//! `dualrouter eval` (the app's command line) and the background trainer run. Options are
//! plain structs ([`FitOptions`], [`EvalOptions`]); the command line maps its flags onto them.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::data::{Dataset, Row};
use super::logistic;
use super::model::{self, TrainConfig};
use super::{
    Mirt, ModelInfo, TrainingSummary, BUILTIN_FEATURES, CHECKPOINT_FORMAT, CHECKPOINT_VERSION,
};
use crate::encoder::{Encoder, EncoderConfig, EncoderKind};
use crate::eval::{self, Curve, Metrics, Outcomes};

/// Encoder and training options shared by `train`, `eval` and refits.
#[derive(Debug, Clone)]
pub struct FitOptions {
    /// `minilm-int8` (all-MiniLM-L6-v2 in dynamic int8), `minilm` (the same in fp32) or `static`.
    pub encoder: EncoderKind,
    /// Folder filled by scripts/fetch-models.sh.
    pub models_dir: PathBuf,
    /// Token budget per prompt.
    pub max_tokens: usize,
    /// Tokens kept from the start of a long prompt (the rest from its end).
    pub head_tokens: usize,
    /// Latent dimension of θ and a.
    pub latent: usize,
    pub seed: u64,
    pub max_epochs: usize,
    pub lr: f32,
    pub weight_decay: f32,
    /// Ensemble members (each trained with its own seed and early-stopping slice; P is their
    /// mean). 5 by default: chosen by `eval --cv 5` inside the train splits (routerbench
    /// +0.0024 AIQ, routerdc +0.0047 quality, no fold worse).
    pub ensemble: usize,
    /// Features joined to the embedding (comma list of: bias, log_chars, code).
    pub features: String,
    /// What of the prompt enters x besides the features.
    pub prompt_x: PromptX,
    /// Where computed embeddings are cached between runs (keyed by encoder id and prompts);
    /// `None`: `<models_dir>/.embcache`.
    pub embedding_cache: Option<PathBuf>,
    /// No progress bars.
    pub quiet: bool,
}

impl Default for FitOptions {
    fn default() -> Self {
        Self {
            encoder: EncoderKind::MinilmInt8,
            models_dir: PathBuf::from("models"),
            max_tokens: 256,
            head_tokens: 32,
            latent: 25,
            seed: 42,
            max_epochs: 200,
            lr: 2e-3,
            weight_decay: 1e-4,
            ensemble: 5,
            features: "bias,log_chars,code".into(),
            prompt_x: PromptX {
                embedding: true,
                clusters: 0,
            },
            embedding_cache: None,
            quiet: false,
        }
    }
}

/// The prompt's part of x (`--prompt-x`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PromptX {
    pub embedding: bool,
    /// k-means clusters (0: none).
    pub clusters: usize,
}

impl std::fmt::Display for PromptX {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.embedding, self.clusters) {
            (true, 0) => write!(f, "embedding"),
            (false, k) => write!(f, "clusters:{k}"),
            (true, k) => write!(f, "embedding+clusters:{k}"),
        }
    }
}

impl std::str::FromStr for PromptX {
    type Err = String;

    /// `embedding`, `clusters:K` or `embedding+clusters:K` (K ≥ 2).
    fn from_str(s: &str) -> Result<Self, String> {
        parse_prompt_x(s)
    }
}

fn parse_prompt_x(s: &str) -> Result<PromptX, String> {
    let bad =
        || format!("`{s}`: expected `embedding`, `clusters:K` or `embedding+clusters:K` (K ≥ 2)");
    let (embedding, rest) = match s.strip_prefix("embedding") {
        Some("") => {
            return Ok(PromptX {
                embedding: true,
                clusters: 0,
            })
        }
        Some(rest) => (true, rest.strip_prefix('+').ok_or_else(bad)?),
        None => (false, s),
    };
    let k: usize = rest
        .strip_prefix("clusters:")
        .and_then(|k| k.parse().ok())
        .filter(|k| (2..=4096).contains(k))
        .ok_or_else(bad)?;
    Ok(PromptX {
        embedding,
        clusters: k,
    })
}

/// Neighbours of the kNN baseline unless the evaluation says otherwise.
pub const KNN_K: usize = 40;

/// What `dualrouter eval` (and its cross-validation) evaluates.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    pub data: PathBuf,
    /// Split to evaluate on.
    pub split: String,
    /// Route with this checkpoint instead of training on the file's train split.
    pub checkpoint: Option<PathBuf>,
    /// Neighbours of the kNN baseline.
    pub knn_k: usize,
    /// The cost-weight values each router's curve is made of.
    pub sweep: eval::Sweep,
    pub fit: FitOptions,
}

impl FitOptions {
    /// The defaults of `dualrouter train`, for the given encoder (quiet).
    pub fn defaults(encoder: &EncoderConfig) -> Self {
        Self {
            encoder: encoder.kind,
            models_dir: encoder.models_dir.clone(),
            max_tokens: encoder.max_tokens,
            head_tokens: encoder.head_tokens,
            quiet: true,
            ..Self::default()
        }
    }

    /// The options a refit of `active` trains with: the defaults, then what `active`'s own training recorded (latent
    /// dimension, seed, learning rate, weight decay, epochs) and its number of ensemble members, so a refit changes
    /// what the router learned, not its shape.
    pub fn refit_of(encoder: &EncoderConfig, active: &Mirt) -> Self {
        let mut fit = Self::defaults(encoder);
        if let Some(c) = &active.training.config {
            fit.latent = c.latent;
            fit.seed = c.seed;
            fit.lr = c.lr;
            fit.weight_decay = c.weight_decay;
            fit.max_epochs = c.max_epochs;
        }
        fit.ensemble = 1 + active.ensemble.len();
        fit
    }

    /// The shape a fit with these options gives (for logs): `latent 25, 5 members`.
    pub fn describe_shape(&self) -> String {
        let n = self.ensemble.max(1);
        let s = if n == 1 { "" } else { "s" };
        format!("latent {}, {n} member{s}", self.latent)
    }

    pub fn encoder_config(&self) -> EncoderConfig {
        EncoderConfig {
            kind: self.encoder,
            models_dir: self.models_dir.clone(),
            max_tokens: self.max_tokens,
            head_tokens: self.head_tokens,
            ..EncoderConfig::default()
        }
    }

    pub fn train_config(&self) -> TrainConfig {
        TrainConfig {
            latent: self.latent,
            seed: self.seed,
            lr: self.lr,
            weight_decay: self.weight_decay,
            max_epochs: self.max_epochs,
            ..TrainConfig::default()
        }
    }

    pub fn feature_names(&self) -> anyhow::Result<Vec<String>> {
        let mut v = Vec::new();
        for f in self
            .features
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            if !BUILTIN_FEATURES.contains(&f) {
                bail!(
                    "unknown feature `{f}` (known: {})",
                    BUILTIN_FEATURES.join(", ")
                );
            }
            v.push(f.to_string());
        }
        Ok(v)
    }
}

fn bar(len: u64, msg: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:>10} [{bar:40}] {pos}/{len} {elapsed_precise} eta {eta} {prefix}",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(msg.to_string());
    pb
}

fn fnv64(bytes: &[u8], mut h: u64) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// Embed prompts, reading/writing an on-disk cache keyed by the encoder id and the exact prompts.
pub fn embed_prompts(
    enc: &Encoder,
    prompts: &[&str],
    cache_dir: Option<&Path>,
    quiet: bool,
) -> anyhow::Result<Vec<Vec<f32>>> {
    let mut h = fnv64(enc.id().as_bytes(), 0xcbf2_9ce4_8422_2325);
    for p in prompts {
        h = fnv64(p.as_bytes(), h);
        h = fnv64(&[0xff], h);
    }
    let file = cache_dir.map(|d| d.join(format!("{:016x}.emb", h)));
    let dim = enc.dim();
    if let Some(f) = &file {
        if let Ok(mut fh) = std::fs::File::open(f) {
            let mut buf = Vec::new();
            if fh.read_to_end(&mut buf).is_ok() && buf.len() == prompts.len() * dim * 4 {
                let flat: Vec<f32> = buf
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                return Ok(flat.chunks(dim).map(<[f32]>::to_vec).collect());
            }
        }
    }
    let pb = bar(prompts.len() as u64, "embedding", quiet);
    let mut out = Vec::with_capacity(prompts.len());
    for chunk in prompts.chunks(32) {
        let v = enc.embed_batch(chunk)?;
        out.extend(v.iter().map(|e| e.to_vec()));
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    if let Some(f) = &file {
        if let Some(d) = f.parent() {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        let mut fh =
            std::fs::File::create(f).with_context(|| format!("writing {}", f.display()))?;
        let mut buf = Vec::with_capacity(out.len() * dim * 4);
        for v in &out {
            for x in v {
                buf.extend_from_slice(&x.to_le_bytes());
            }
        }
        fh.write_all(&buf)?;
    }
    Ok(out)
}

/// The embeddings of `rows`' prompts, cached in `--embedding-cache` (default `<models>/.embcache`).
pub fn embed_rows(enc: &Encoder, rows: &[&Row], fit: &FitOptions) -> anyhow::Result<Vec<Vec<f32>>> {
    let cache = fit
        .embedding_cache
        .clone()
        .unwrap_or_else(|| fit.models_dir.join(".embcache"));
    let prompts: Vec<&str> = rows.iter().map(|r| r.prompt.as_str()).collect();
    embed_prompts(enc, &prompts, Some(&cache), fit.quiet)
}

/// Each row with its embedding.
pub fn paired<'a>(rows: &[&'a Row], emb: &'a [Vec<f32>]) -> Vec<(&'a Row, &'a [f32])> {
    rows.iter()
        .copied()
        .zip(emb.iter().map(Vec::as_slice))
        .collect()
}

/// Fit a checkpoint on `rows` of `ds` (embeddings given, one per row).
pub fn fit(
    ds: &Dataset,
    rows: &[&Row],
    emb: &[Vec<f32>],
    enc: &Encoder,
    args: &FitOptions,
    split: Option<&str>,
    command: String,
) -> anyhow::Result<Mirt> {
    let features = args.feature_names()?;
    // Centroids from the rows being fitted only (in cross-validation, the fold's train part).
    let centroids = if args.prompt_x.clusters > 0 {
        super::clusters::kmeans(emb, args.prompt_x.clusters, args.seed, 100)
    } else {
        Vec::new()
    };
    let layout = super::XLayout {
        embedding: args.prompt_x.embedding,
        centroids: &centroids,
        features: &features,
    };
    let none = HashMap::new();
    let xs: Vec<Vec<f32>> = emb
        .iter()
        .zip(rows)
        .map(|(e, r)| {
            let mut x = Vec::new();
            layout.build(e, Some(&r.prompt), &none, &mut x);
            x
        })
        .collect();
    let embedding_in_x = args.prompt_x.embedding;
    let input = FitInput {
        models: ds.models.clone(),
        prices: ds.mean_prices(rows),
        xs,
        ys: rows.iter().map(|r| r.scores.clone()).collect(),
        features,
        embedding_in_x,
        centroids,
        data: ds.source.display().to_string(),
        split: split.map(str::to_string),
        command,
    };
    fit_xy(input, enc.id(), enc.dim(), args, &mut |_, _, _| {})
}

/// What a fit needs once the prompts are features: one row of `xs` and `ys` per prompt, one
/// column of `ys` per model.
pub struct FitInput {
    pub models: Vec<String>,
    /// Mean cost per query of each model (the objective's price scale).
    pub prices: Vec<f64>,
    pub xs: Vec<Vec<f32>>,
    pub ys: Vec<Vec<Option<f32>>>,
    /// How each x was made (see [`super::XLayout`]): the embedding or not, the centroids of
    /// its one-hot, the names of the features at its end.
    pub features: Vec<String>,
    pub embedding_in_x: bool,
    pub centroids: Vec<Vec<f32>>,
    /// Where the data came from (for the checkpoint's summary).
    pub data: String,
    pub split: Option<String>,
    pub command: String,
}

/// Fits a checkpoint on prepared features. `progress(member, epoch, val_bce)` is called after
/// every epoch (for a progress bar or a job's status).
pub fn fit_xy(
    input: FitInput,
    encoder_id: &str,
    embed_dim: usize,
    args: &FitOptions,
    progress: &mut dyn FnMut(usize, usize, f64),
) -> anyhow::Result<Mirt> {
    let cfg = args.train_config();
    let FitInput {
        models: names,
        prices,
        xs,
        ys,
        features,
        embedding_in_x,
        centroids,
        data,
        split,
        command,
    } = input;
    let cost_ref = prices.iter().copied().fold(0.0, f64::max);
    let models = names
        .iter()
        .enumerate()
        .map(|(j, name)| ModelInfo {
            name: name.clone(),
            price: prices[j],
            cold: false,
            tier: None,
            outcomes: ys.iter().filter(|y| y[j].is_some()).count(),
        })
        .collect::<Vec<_>>();
    let mut m = Mirt {
        format: CHECKPOINT_FORMAT.into(),
        version: CHECKPOINT_VERSION,
        encoder: encoder_id.to_string(),
        embed_dim,
        embedding_in_x,
        centroids,
        features,
        cost_ref,
        models,
        weights: model::Weights {
            dim_x: 0,
            latent: 0,
            w_a: vec![],
            w_b: vec![],
            theta: vec![],
        },
        ensemble: Vec::new(),
        training: TrainingSummary::default(),
        eval: serde_json::Value::Null,
    };
    let skipped = ys.iter().filter(|y| y.iter().all(Option::is_none)).count();
    let members = args.ensemble.max(1);
    let pb = bar((cfg.max_epochs * members) as u64, "training", args.quiet);
    let mut report = None;
    for e in 0..members {
        let c = TrainConfig {
            seed: cfg.seed.wrapping_add(e as u64),
            ..cfg.clone()
        };
        let mut last = 0;
        let (w, r) = model::train(&xs, &ys, names.len(), &c, |ep, vb| {
            pb.set_prefix(format!("member {}/{members} val BCE {vb:.4}", e + 1));
            pb.inc(1);
            progress(e, ep, vb);
            last = ep;
        });
        pb.inc((cfg.max_epochs - last) as u64);
        if e == 0 {
            m.weights = w;
            report = Some(r);
        } else {
            m.ensemble.push(w);
        }
    }
    pb.finish_and_clear();
    let Some(report) = report else {
        bail!("no ensemble member trained");
    };
    m.training = TrainingSummary {
        data,
        split,
        rows: xs.len(),
        rows_skipped: skipped,
        command,
        train: Some(report),
        ensemble: members,
        config: Some(cfg),
    };
    Ok(m)
}

pub fn split_rows<'a>(ds: &'a Dataset, split: &str) -> Vec<&'a Row> {
    if ds.has_splits() {
        ds.split(Some(split))
    } else {
        ds.split(None)
    }
}

/// Fits a checkpoint on `split` of the outcome file `data` and, unless `no_eval` or there is
/// no other split, scores it on the file's `test` split (its metrics go into the checkpoint's
/// `eval`, as `dualrouter eval --checkpoint` computes them). `command` is recorded in it.
pub fn train(
    data: &Path,
    split: &str,
    no_eval: bool,
    fit_opts: &FitOptions,
    command: String,
) -> anyhow::Result<Mirt> {
    let ds = Dataset::load(data)?;
    let rows = split_rows(&ds, split);
    if rows.is_empty() {
        bail!("{}: no rows in split `{split}`", data.display());
    }
    let enc = Encoder::load(&fit_opts.encoder_config())?;
    let emb = embed_rows(&enc, &rows, fit_opts)?;
    let split_name = ds.has_splits().then_some(split);
    let mut m = fit(&ds, &rows, &emb, &enc, fit_opts, split_name, command)?;
    let test = if ds.has_splits() && split != "test" && !no_eval {
        ds.split(Some("test"))
    } else {
        Vec::new()
    };
    if !test.is_empty() {
        let test_emb = embed_rows(&enc, &test, fit_opts)?;
        let pairs = paired(&test, &test_emb);
        let sweep = eval::Sweep::Exact;
        let res = score_routers(&ds, &m, &rows, &emb, &pairs, KNN_K, sweep, "split `test`")?;
        let mut routers = serde_json::Map::new();
        for (name, _, metrics) in &res.routers {
            routers.insert(name.clone(), serde_json::to_value(metrics)?);
        }
        m.eval = json!({
            "split": "test",
            "rows": res.test_rows,
            "skipped": res.skipped,
            "sweep": sweep.to_string(),
            "routers": routers,
        });
    }
    Ok(m)
}

/// Everything `eval` computes, before printing.
pub struct EvalResult {
    pub routers: Vec<(String, Curve, Metrics)>,
    pub singles: eval::Singles,
    pub test_rows: usize,
    pub skipped: usize,
}

/// K-fold cross-validation inside the train split (for choosing settings without touching the test split).
pub fn cross_validate(args: &EvalOptions, k: usize) -> anyhow::Result<Vec<EvalResult>> {
    if k < 2 {
        bail!("--cv needs at least 2 folds");
    }
    let ds = Dataset::load(&args.data)?;
    let enc = Encoder::load(&args.fit.encoder_config())?;
    let train_rows: Vec<&Row> = split_rows(&ds, "train");
    if train_rows.len() < k {
        bail!("{}: too few train rows for {k} folds", args.data.display());
    }
    let emb = embed_rows(&enc, &train_rows, &args.fit)?;
    let mut order: Vec<usize> = (0..train_rows.len()).collect();
    model::Rng::new(args.fit.seed ^ 0xC0FF_EE00).shuffle(&mut order);
    let mut out = Vec::with_capacity(k);
    for f in 0..k {
        let (mut fit_idx, mut val_idx) = (Vec::new(), Vec::new());
        for (pos, &i) in order.iter().enumerate() {
            if pos % k == f {
                val_idx.push(i);
            } else {
                fit_idx.push(i);
            }
        }
        fit_idx.sort_unstable();
        val_idx.sort_unstable();
        let fit_rows: Vec<&Row> = fit_idx.iter().map(|&i| train_rows[i]).collect();
        let fit_emb: Vec<Vec<f32>> = fit_idx.iter().map(|&i| emb[i].clone()).collect();
        let mirt = fit(
            &ds,
            &fit_rows,
            &fit_emb,
            &enc,
            &args.fit,
            Some("train"),
            "eval --cv".into(),
        )?;
        let val: Vec<(&Row, &[f32])> = val_idx
            .iter()
            .map(|&i| (train_rows[i], emb[i].as_slice()))
            .collect();
        out.push(score_routers(
            &ds,
            &mirt,
            &fit_rows,
            &fit_emb,
            &val,
            args.knn_k,
            args.sweep,
            &format!("fold {} of the train split", f + 1),
        )?);
    }
    Ok(out)
}

/// The models both the checkpoint and the file know, as (file column, checkpoint index); none is an error.
fn common_models(ds: &Dataset, mirt: &Mirt) -> anyhow::Result<Vec<(usize, usize)>> {
    let common: Vec<(usize, usize)> = ds
        .models
        .iter()
        .enumerate()
        .filter_map(|(j, n)| mirt.model_index(n).map(|k| (j, k)))
        .collect();
    if common.is_empty() {
        bail!(
            "{}: unknown models: none of the file's models ({}) is in the checkpoint",
            ds.source.display(),
            ds.models.join(", ")
        );
    }
    Ok(common)
}

/// Every router's curve and metrics on `test_all` (rows with their embeddings; `what` names them in errors), routing
/// among the models both `mirt` and the file know: MIRT from `mirt`, kNN and a per-model logistic regression over
/// `train_rows` (neither when it is empty), random mixing, the best single model and the oracle.
#[allow(clippy::too_many_arguments)]
fn score_routers(
    ds: &Dataset,
    mirt: &Mirt,
    train_rows: &[&Row],
    train_emb: &[Vec<f32>],
    test_all: &[(&Row, &[f32])],
    knn_k: usize,
    sweep: eval::Sweep,
    what: &str,
) -> anyhow::Result<EvalResult> {
    let common = common_models(ds, mirt)?;
    let names: Vec<String> = common.iter().map(|&(j, _)| ds.models[j].clone()).collect();
    let test: Vec<(&Row, &[f32])> = test_all
        .iter()
        .copied()
        .filter(|(r, _)| {
            common
                .iter()
                .all(|&(j, _)| r.scores[j].is_some() && r.costs[j].is_some())
        })
        .collect();
    let skipped = test_all.len() - test.len();
    if test.is_empty() {
        bail!(
            "{}: every row of {what} misses an outcome",
            ds.source.display()
        );
    }
    let outcomes = Outcomes {
        scores: test
            .iter()
            .map(|(r, _)| {
                common
                    .iter()
                    .map(|&(j, _)| r.scores[j].unwrap_or(0.0))
                    .collect()
            })
            .collect(),
        costs: test
            .iter()
            .map(|(r, _)| {
                common
                    .iter()
                    .map(|&(j, _)| r.costs[j].unwrap_or(0.0))
                    .collect()
            })
            .collect(),
    };
    let singles = outcomes.singles(&names);
    let prices: Vec<f64> = common.iter().map(|&(_, k)| mirt.models[k].price).collect();
    let cost_ref = prices.iter().copied().fold(0.0, f64::max);
    let which: Vec<usize> = common.iter().map(|&(_, k)| k).collect();
    let none = HashMap::new();
    let p_mirt: Vec<Vec<f32>> = test
        .iter()
        .map(|(r, e)| {
            let mut x = Vec::new();
            mirt.features_into(e, &r.prompt, &none, &mut x);
            let mut out = Vec::new();
            mirt.predict_subset(&x, &which, &mut out);
            out
        })
        .collect();
    let mut routers = vec![(
        "mirt".to_string(),
        outcomes.sweep(&p_mirt, &prices, cost_ref, sweep),
    )];
    if !train_rows.is_empty() {
        let ty: Vec<Vec<Option<f32>>> = train_rows
            .iter()
            .map(|r| common.iter().map(|&(j, _)| r.scores[j]).collect())
            .collect();
        let prior: Vec<f32> = (0..common.len())
            .map(|m| {
                let v: Vec<f32> = ty.iter().filter_map(|y| y[m]).collect();
                v.iter().sum::<f32>() / v.len().max(1) as f32
            })
            .collect();
        let p_knn: Vec<Vec<f32>> = test
            .iter()
            .map(|(_, q)| eval::knn_predict(train_emb, &ty, q, knn_k, &prior))
            .collect();
        routers.push((
            "knn".to_string(),
            outcomes.sweep(&p_knn, &prices, cost_ref, sweep),
        ));
        // Per-model logistic regression on the embedding and the checkpoint's named features (whatever its prompt
        // layout), default training settings.
        let layout = super::XLayout {
            embedding: true,
            centroids: &[],
            features: &mirt.features,
        };
        let x_of = |e: &[f32], text: &str| {
            let mut x = Vec::new();
            layout.build(e, Some(text), &none, &mut x);
            x
        };
        let tx: Vec<Vec<f32>> = train_rows
            .iter()
            .zip(train_emb)
            .map(|(r, e)| x_of(e, &r.prompt))
            .collect();
        let lr = logistic::train(&tx, &ty, common.len(), &TrainConfig::default());
        let p_lr: Vec<Vec<f32>> = test
            .iter()
            .map(|(r, e)| lr.predict(&x_of(e, &r.prompt)))
            .collect();
        routers.push((
            "logistic".to_string(),
            outcomes.sweep(&p_lr, &prices, cost_ref, sweep),
        ));
    }
    routers.push(("random_mixing".to_string(), mixing_curve(&singles)));
    let b = singles.best();
    routers.push((
        "best_single".to_string(),
        Curve {
            points: vec![singles.points[b]],
            shares: vec![(0..names.len())
                .map(|k| if k == b { 1.0 } else { 0.0 })
                .collect()],
        },
    ));
    routers.push((
        "oracle".to_string(),
        outcomes.sweep(&outcomes.scores, &prices, cost_ref, sweep),
    ));
    let routers = routers
        .into_iter()
        .map(|(n, c)| {
            let m = eval::metrics(&c, &singles);
            (n, c, m)
        })
        .collect();
    Ok(EvalResult {
        routers,
        singles,
        test_rows: test.len(),
        skipped,
    })
}

fn mixing_curve(singles: &eval::Singles) -> Curve {
    let n = singles.points.len();
    Curve {
        points: singles.points.clone(),
        shares: (0..n)
            .map(|m| (0..n).map(|k| if k == m { 1.0 } else { 0.0 }).collect())
            .collect(),
    }
}

pub fn evaluate(args: &EvalOptions) -> anyhow::Result<EvalResult> {
    let ds = Dataset::load(&args.data)?;
    let enc = Encoder::load(&args.fit.encoder_config())?;
    let train_rows: Vec<&Row> = if ds.has_splits() {
        ds.split(Some("train"))
    } else {
        Vec::new()
    };
    let test_all: Vec<&Row> = split_rows(&ds, &args.split);
    if test_all.is_empty() {
        bail!("{}: no rows in split `{}`", args.data.display(), args.split);
    }

    // A checkpoint is read, and checked against the file, before any embedding (minutes uncached).
    let checkpoint = match &args.checkpoint {
        Some(path) => {
            let m = Mirt::load(path, Some(enc.id()))?;
            common_models(&ds, &m)?;
            Some(m)
        }
        None if train_rows.is_empty() => bail!(
            "{}: no `train` split to fit on; pass --checkpoint",
            args.data.display()
        ),
        None => None,
    };
    let train_emb = if train_rows.is_empty() {
        Vec::new()
    } else {
        embed_rows(&enc, &train_rows, &args.fit)?
    };
    // The MIRT router: the checkpoint, or fitted on the train split.
    let mirt = match checkpoint {
        Some(m) => m,
        None => fit(
            &ds,
            &train_rows,
            &train_emb,
            &enc,
            &args.fit,
            Some("train"),
            "eval".into(),
        )?,
    };
    let test_emb = embed_rows(&enc, &test_all, &args.fit)?;
    let test = paired(&test_all, &test_emb);
    score_routers(
        &ds,
        &mirt,
        &train_rows,
        &train_emb,
        &test,
        args.knn_k,
        args.sweep,
        &format!("split `{}`", args.split),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_x_parses_and_prints_back() {
        for (s, embedding, clusters) in [
            ("embedding", true, 0),
            ("clusters:24", false, 24),
            ("embedding+clusters:8", true, 8),
        ] {
            let p = parse_prompt_x(s).unwrap();
            assert_eq!((p.embedding, p.clusters), (embedding, clusters), "{s}");
            assert_eq!(p.to_string(), s);
        }
        for bad in [
            "",
            "clusters",
            "clusters:1",
            "clusters:x",
            "embedding+",
            "embeddings",
            "clusters:24+embedding",
        ] {
            let e = parse_prompt_x(bad).unwrap_err();
            assert!(e.contains("clusters:K"), "{bad}: {e}");
        }
    }
}
