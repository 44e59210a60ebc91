//! Learning from outcomes: refit MIRT on logged decisions (plus an optional base data file),
//! register the checkpoint, and activate it live, but only if it is no worse than the active
//! one on a held-out slice.
//!
//! - Outcomes: every routed decision is logged with its prompt's features (embedding and
//!   built-in features, never the text). Each failed attempt scores its model 0; feedback from
//!   `POST /v1/feedback` scores the model that served.
//! - Held-out slice: the decisions whose id hashes into the first `mirt.holdout_percent` of 100
//!   buckets (always the same ones, never trained on), plus the base file's `test` split.
//! - Judging: mean binary cross-entropy of P against the held-out scores, over the
//!   (prompt, model) pairs both checkpoints can score. Lower is better.
//!
//! `POST /api/mirt/train` runs [`Trainer::train`] as a background job (one at a time);
//! `mirt.retrain_every` runs it on a schedule and activates what passes.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use dualrouter_core::config::Config;
use dualrouter_ml::encoder::Encoder;
use dualrouter_ml::mirt::fit::{embed_prompts, fit_xy, FitInput, FitOptions};
use dualrouter_ml::mirt::{Dataset, Mirt, MirtError};
use dualrouter_routing::DualRouter;
use dualrouter_routing::Scorer;
use dualrouter_store::{CheckpointRow, Store, StoreError};

/// How much worse (in mean BCE) a checkpoint may be than the active one and still be
/// activated: numerical noise, not a real difference.
const BCE_TOLERANCE: f64 = 1e-4;

#[derive(Debug, thiserror::Error)]
pub enum TrainerError {
    #[error("a training job is already running (job {0})")]
    Busy(u64),
    #[error("checkpoint version {0} is not registered")]
    NotFound(i64),
    #[error(
        "checkpoint v{version} is worse than the active checkpoint on the held-out slice \
         (mean BCE {new_bce:.4} vs {active_bce:.4} over {n} outcomes); not activated \
         (activate with force to override)"
    )]
    Worse {
        version: i64,
        new_bce: f64,
        active_bce: f64,
        n: usize,
    },
    #[error("not enough data to train: {0}")]
    NotEnough(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Mirt(#[from] MirtError),
    #[error("{0}")]
    Other(String),
}

/// One held-out outcome: x's ingredients and the scores to predict.
#[derive(Debug, Clone)]
pub struct HeldOut {
    pub embedding: Vec<f32>,
    /// The prompt, for base-file rows (built-in features come from it); `None` for logged
    /// decisions, whose built-in features were stored.
    pub text: Option<String>,
    pub extra: HashMap<String, f32>,
    pub scores: Vec<(String, f32)>,
}

/// What of the prompt a refit puts in x: the active checkpoint's choice (`--prompt-x`), its
/// centroids kept as they are, so a refit of a `clusters:K` checkpoint goes on learning each
/// model's ability per the same kinds of prompt.
#[derive(Clone)]
pub struct PromptPart {
    pub embedding_in_x: bool,
    pub centroids: Vec<Vec<f32>>,
}

impl PromptPart {
    pub fn of(m: &Mirt) -> Self {
        Self {
            embedding_in_x: m.embedding_in_x,
            centroids: m.centroids.clone(),
        }
    }

    fn describe(&self) -> String {
        match (self.embedding_in_x, self.centroids.len()) {
            (true, 0) => "embedding".into(),
            (true, k) => format!("embedding+clusters:{k}"),
            (false, k) => format!("clusters:{k}"),
        }
    }
}

/// Training rows and the held-out slice, gathered once.
pub struct Prepared {
    pub input: FitInput,
    pub holdout: Vec<HeldOut>,
    pub logged_rows: usize,
    pub base_rows: usize,
}

/// Whether a decision belongs to the held-out slice.
pub fn is_held_out(decision_id: &str, percent: u32) -> bool {
    let d = Sha256::digest(decision_id.as_bytes());
    (u32::from(d[0]) << 8 | u32::from(d[1])) % 100 < percent
}

/// x of a held-out or training row for a checkpoint's layout (built-in features from the text
/// when there is one, else as logged).
fn x_for(layout: dualrouter_ml::mirt::XLayout<'_>, h: &HeldOut) -> Vec<f32> {
    let mut x = Vec::new();
    layout.build(&h.embedding, h.text.as_deref(), &h.extra, &mut x);
    x
}

/// Gathers training rows (logged outcomes not held out, the base file's train split) and the
/// held-out slice; x is laid out as `prompt` says. Models with fewer than `mirt.min_outcomes`
/// logged outcomes and no base data are left out of training (they keep their prior).
pub async fn prepare(
    store: &Store,
    encoder: &Arc<Encoder>,
    config: &Config,
    base: Option<&Path>,
    prompt: PromptPart,
) -> Result<Prepared, TrainerError> {
    let settings = &config.mirt;
    let outcomes = store.outcomes(encoder.id()).await?;
    let mut train_rows: Vec<HeldOut> = Vec::new();
    let mut holdout: Vec<HeldOut> = Vec::new();
    for o in outcomes {
        let Some(embedding) = o.features.embedding() else {
            continue;
        };
        if embedding.len() != encoder.dim() {
            continue;
        }
        let row = HeldOut {
            embedding,
            text: None,
            extra: o.features.extra.clone().into_iter().collect(),
            scores: o.scores,
        };
        if is_held_out(&o.decision_id, settings.holdout_percent) {
            holdout.push(row);
        } else {
            train_rows.push(row);
        }
    }
    let logged_rows = train_rows.len();

    let mut base_rows = 0;
    let mut base_prices = HashMap::new();
    let mut data_names = vec!["logged outcomes".to_string()];
    if let Some(path) = base {
        let cache = Some(settings.encoder.models_dir.join(".embcache"));
        let b = base_rows_of(path, encoder, cache).await?;
        base_rows = b.train.len();
        train_rows.extend(b.train);
        holdout.extend(b.test);
        base_prices = b.prices;
        data_names.push(path.display().to_string());
    }

    let input = fit_input(
        &train_rows,
        logged_rows,
        settings.min_outcomes,
        base.is_some(),
        &|m: &str| {
            base_prices.get(m).copied().unwrap_or_else(|| {
                config
                    .models
                    .get(m)
                    .map(|cm| cm.cost.usd(400, 200))
                    .unwrap_or(0.0)
            })
        },
        prompt,
        data_names.join(" + "),
    )?;
    Ok(Prepared {
        input,
        holdout,
        logged_rows,
        base_rows,
    })
}

/// The fit's input from training rows (the first `logged_rows` logged outcomes, the rest base
/// data): models with base data or at least `min_outcomes` logged outcomes (the others keep
/// their prior), the built-in features and every plugin feature the rows carry, x laid out as
/// `prompt` says, each model's price from `price_of`.
#[allow(clippy::too_many_arguments)]
pub fn fit_input(
    train_rows: &[HeldOut],
    logged_rows: usize,
    min_outcomes: usize,
    has_base: bool,
    price_of: &dyn Fn(&str) -> f64,
    prompt: PromptPart,
    data: String,
) -> Result<FitInput, TrainerError> {
    // Models: every one with base data, and logged ones with enough outcomes.
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for r in train_rows {
        for (m, _) in &r.scores {
            *counts.entry(m.clone()).or_default() += 1;
        }
    }
    let base_models: std::collections::HashSet<String> = train_rows[logged_rows..]
        .iter()
        .flat_map(|r| r.scores.iter().map(|(m, _)| m.clone()))
        .collect();
    let models: Vec<String> = counts
        .iter()
        .filter(|(m, n)| base_models.contains(*m) || **n >= min_outcomes)
        .map(|(m, _)| m.clone())
        .collect();
    if models.is_empty() {
        return Err(TrainerError::NotEnough(format!(
            "{logged_rows} logged outcomes (held-out slice excluded), no model with at least \
             mirt.min_outcomes = {} of them{}",
            min_outcomes,
            if has_base {
                ""
            } else {
                ", and no base data (mirt.base_data)"
            }
        )));
    }
    let col: HashMap<&str, usize> = models
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), i))
        .collect();
    // The built-in features, then every feature-extractor plugin's (`<plugin>.<feature>`) that
    // logged decisions carry; rows without one (base data, older decisions) read 0.
    let mut plugin_features: Vec<String> = train_rows
        .iter()
        .flat_map(|r| r.extra.keys())
        .filter(|k| k.contains('.'))
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut features: Vec<String> = dualrouter_ml::mirt::BUILTIN_FEATURES
        .iter()
        .map(|s| s.to_string())
        .collect();
    features.append(&mut plugin_features);
    let layout = dualrouter_ml::mirt::XLayout {
        embedding: prompt.embedding_in_x,
        centroids: &prompt.centroids,
        features: &features,
    };
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for r in train_rows {
        let mut y = vec![None; models.len()];
        for (m, s) in &r.scores {
            if let Some(&j) = col.get(m.as_str()) {
                y[j] = Some(s.clamp(0.0, 1.0));
            }
        }
        if y.iter().all(Option::is_none) {
            continue;
        }
        xs.push(x_for(layout, r));
        ys.push(y);
    }
    // Prices (cost per query): the base file's where it has them, else the configured price
    // of a typical request.
    let prices = models.iter().map(|m| price_of(m)).collect();
    Ok(FitInput {
        models,
        prices,
        xs,
        ys,
        features,
        embedding_in_x: prompt.embedding_in_x,
        centroids: prompt.centroids,
        data,
        split: None,
        command: "refit on logged outcomes".into(),
    })
}

struct BaseRows {
    train: Vec<HeldOut>,
    /// The `test` split: held out.
    test: Vec<HeldOut>,
    /// Mean cost per query by model, when the file has costs.
    prices: HashMap<String, f64>,
}

/// The base file's rows: its `test` split is held out.
async fn base_rows_of(
    path: &Path,
    encoder: &Arc<Encoder>,
    cache: Option<PathBuf>,
) -> Result<BaseRows, TrainerError> {
    let path = path.to_path_buf();
    let encoder = encoder.clone();
    tokio::task::spawn_blocking(move || {
        let ds = Dataset::load(&path).map_err(MirtError::from)?;
        let prompts: Vec<&str> = ds.rows.iter().map(|r| r.prompt.as_str()).collect();
        let emb = embed_prompts(&encoder, &prompts, cache.as_deref(), true)
            .map_err(|e| TrainerError::Other(format!("embedding {}: {e}", path.display())))?;
        let all: Vec<&dualrouter_ml::mirt::data::Row> = ds.rows.iter().collect();
        let prices = ds
            .models
            .iter()
            .cloned()
            .zip(ds.mean_prices(&all))
            .filter(|_| ds.has_cost)
            .collect();
        let mut train = Vec::new();
        let mut test = Vec::new();
        for (r, e) in ds.rows.iter().zip(emb) {
            let row = HeldOut {
                embedding: e,
                text: Some(r.prompt.clone()),
                extra: HashMap::new(),
                scores: ds
                    .models
                    .iter()
                    .zip(&r.scores)
                    .filter_map(|(m, s)| s.map(|s| (m.clone(), s)))
                    .collect(),
            };
            match r.split.as_deref() {
                Some("test") => test.push(row),
                _ => train.push(row),
            }
        }
        Ok(BaseRows {
            train,
            test,
            prices,
        })
    })
    .await
    .map_err(|e| TrainerError::Other(format!("training task: {e}")))?
}

/// Mean BCE of `scorer` on the held-out pairs `known` accepts, and how many pairs.
fn bce_on(scorer: &Scorer, holdout: &[HeldOut], known: &dyn Fn(&str) -> bool) -> (f64, usize) {
    let mut sum = 0.0;
    let mut n = 0usize;
    for h in holdout {
        let x = x_for(scorer.mirt.layout(), h);
        for (m, y) in &h.scores {
            if !known(m) {
                continue;
            }
            let Some(p) = scorer.p_named(&x, m) else {
                continue;
            };
            let p = f64::from(p).clamp(1e-6, 1.0 - 1e-6);
            let y = f64::from(*y);
            sum -= y * p.ln() + (1.0 - y) * (1.0 - p).ln();
            n += 1;
        }
    }
    (if n > 0 { sum / n as f64 } else { 0.0 }, n)
}

/// The activation guard's verdict on a candidate checkpoint against the active one.
#[derive(Debug, Clone, Copy)]
pub struct Verdict {
    pub new_bce: f64,
    pub active_bce: f64,
    /// Held-out (prompt, model) pairs both could score.
    pub n: usize,
}

impl Verdict {
    /// Whether the candidate may be activated without force: no worse (within noise) on the
    /// held-out slice, or nothing to compare on.
    pub fn passes(&self) -> bool {
        self.n == 0 || self.new_bce <= self.active_bce + BCE_TOLERANCE
    }
}

/// Judges `candidate` against `active` on the held-out pairs both can score (a prior's P
/// counts: it is what routing would use).
pub fn judge(candidate: &Scorer, active: &Scorer, holdout: &[HeldOut]) -> Verdict {
    let known = |m: &str| candidate.knows(m) && active.knows(m);
    let (new_bce, n) = bce_on(candidate, holdout, &known);
    let (active_bce, n2) = bce_on(active, holdout, &known);
    debug_assert_eq!(n, n2);
    Verdict {
        new_bce,
        active_bce,
        n,
    }
}

/// Where a background job stands.
#[derive(Debug, Clone, Serialize)]
pub struct JobStatus {
    pub id: u64,
    /// `running`, `done` or `failed`.
    pub state: &'static str,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Epochs run so far of at most `max_epochs` per ensemble member (early stopping ends
    /// sooner).
    pub epoch: usize,
    pub max_epochs: usize,
    pub member: usize,
    pub members: usize,
    pub val_bce: Option<f64>,
    /// The checkpoint registered, once done.
    pub version: Option<i64>,
    /// Whether it was activated (when asked to).
    pub activated: Option<bool>,
    pub message: Option<String>,
}

/// The result of an activation.
#[derive(Debug, Clone, Serialize)]
pub struct Activation {
    pub version: i64,
    pub holdout_n: usize,
    pub new_bce: Option<f64>,
    pub active_bce: Option<f64>,
    pub forced: bool,
    pub message: String,
}

pub struct Trainer {
    store: Store,
    live: Arc<crate::live::Live>,
    job: Mutex<Option<JobStatus>>,
    next_job: std::sync::atomic::AtomicU64,
}

impl Trainer {
    pub fn new(live: Arc<crate::live::Live>) -> Self {
        Self {
            store: live.store().clone(),
            live,
            job: Mutex::new(None),
            next_job: std::sync::atomic::AtomicU64::new(1),
        }
    }

    fn router(&self) -> Arc<DualRouter> {
        self.live.current().router.clone()
    }

    fn config(&self) -> Arc<Config> {
        self.live.current().config.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<JobStatus>> {
        self.job.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The running or last job.
    pub fn status(&self) -> Option<JobStatus> {
        self.lock().clone()
    }

    fn scorer_for(&self, router: &DualRouter, row: &CheckpointRow) -> Result<Scorer, TrainerError> {
        let path = PathBuf::from(&row.path);
        let mirt = Mirt::load(&path, Some(router.encoder().id()))?;
        Ok(Scorer::new(
            mirt,
            Some(row.version),
            path,
            router.registry().models(),
        )?)
    }

    /// Refits on logged outcomes (+ `mirt.base_data`), saves and registers the checkpoint.
    pub async fn train(
        &self,
        progress: Arc<dyn Fn(usize, usize, f64) + Send + Sync>,
    ) -> Result<CheckpointRow, TrainerError> {
        self.train_on(progress, None).await
    }

    /// [`Trainer::train`] with `base` (an uploaded file, say) as the base data instead of
    /// `mirt.base_data` when given.
    pub async fn train_on(
        &self,
        progress: Arc<dyn Fn(usize, usize, f64) + Send + Sync>,
        base: Option<&Path>,
    ) -> Result<CheckpointRow, TrainerError> {
        let (router, config) = (self.router(), self.config());
        let encoder = router.encoder().clone();
        let active = router.scorer();
        let prepared = prepare(
            &self.store,
            &encoder,
            &config,
            base.or(config.mirt.base_data.as_deref()),
            PromptPart::of(&active.mirt),
        )
        .await?;
        let args = FitOptions::refit_of(&config.mirt.encoder, &active.mirt);
        drop(active);
        let rows = prepared.input.xs.len();
        let holdout = prepared.holdout;
        let (logged, base) = (prepared.logged_rows, prepared.base_rows);
        let enc = encoder.clone();
        let dir = config.mirt.checkpoints_dir.clone();
        let input = prepared.input;
        let (mirt, path) = tokio::task::spawn_blocking(move || {
            let mut m = fit_xy(input, enc.id(), enc.dim(), &args, &mut |member, ep, vb| {
                progress(member, ep, vb)
            })
            .map_err(|e| TrainerError::Other(format!("training: {e}")))?;
            let bytes = serde_json::to_vec(&m).map_err(|e| TrainerError::Other(e.to_string()))?;
            let name = format!("mirt-{}.json", &hex::encode(Sha256::digest(&bytes))[..16]);
            let path = dir.join(name);
            m.eval = serde_json::json!({ "logged_rows": logged, "base_rows": base });
            m.save(&path)?;
            Ok::<_, TrainerError>((m, path))
        })
        .await
        .map_err(|e| TrainerError::Other(format!("training task: {e}")))??;
        let scorer = Scorer::new(mirt.clone(), None, path.clone(), router.registry().models())?;
        let (bce, n) = bce_on(&scorer, &holdout, &|_| true);
        let metrics = serde_json::json!({
            "source": "logged outcomes",
            "logged_rows": logged,
            "base_rows": base,
            "holdout_bce": (n > 0).then_some(bce),
            "holdout_n": n,
            "val_bce": mirt.training.train.as_ref().map(|r| r.val_bce),
        });
        let row = self
            .store
            .register_checkpoint(
                &path.display().to_string(),
                &file_sha256(&path)?,
                mirt.dim_x() as i32,
                &mirt
                    .models
                    .iter()
                    .map(|m| m.name.clone())
                    .collect::<Vec<_>>(),
                &metrics,
                rows as i64,
            )
            .await?;
        tracing::info!(
            version = row.version,
            rows,
            holdout_n = n,
            "MIRT checkpoint trained"
        );
        Ok(row)
    }

    /// Activates a registered checkpoint unless it is worse than the active one on the
    /// held-out slice (or `force`).
    pub async fn activate(&self, version: i64, force: bool) -> Result<Activation, TrainerError> {
        let row = self
            .store
            .get_checkpoint(version)
            .await?
            .ok_or(TrainerError::NotFound(version))?;
        let (router, config) = (self.router(), self.config());
        let candidate = self.scorer_for(&router, &row)?;
        let active = router.scorer();
        let holdout = match prepare(
            &self.store,
            router.encoder(),
            &config,
            config.mirt.base_data.as_deref(),
            PromptPart::of(&active.mirt),
        )
        .await
        {
            Ok(p) => p.holdout,
            Err(TrainerError::NotEnough(_)) => Vec::new(),
            Err(e) => return Err(e),
        };
        let verdict = judge(&candidate, &active, &holdout);
        let Verdict {
            new_bce,
            active_bce,
            n,
        } = verdict;
        if !verdict.passes() && !force {
            return Err(TrainerError::Worse {
                version,
                new_bce,
                active_bce,
                n,
            });
        }
        self.store.set_active_checkpoint(version).await?;
        // The live state now; the store's active mark for every state built later.
        router.activate(candidate);
        let message = if n == 0 {
            format!("checkpoint v{version} activated (no held-out outcomes to compare on)")
        } else if !verdict.passes() {
            format!(
                "checkpoint v{version} activated by force although worse on the held-out slice \
                 (mean BCE {new_bce:.4} vs {active_bce:.4} over {n} outcomes)"
            )
        } else {
            format!(
                "checkpoint v{version} activated: mean BCE {new_bce:.4} vs {active_bce:.4} \
                 over {n} held-out outcomes"
            )
        };
        tracing::info!("{message}");
        Ok(Activation {
            version,
            holdout_n: n,
            new_bce: (n > 0).then_some(new_bce),
            active_bce: (n > 0).then_some(active_bce),
            forced: force,
            message,
        })
    }

    /// Where uploaded training data is kept: `mirt.checkpoints_dir/uploads`.
    pub fn uploads_dir(&self) -> PathBuf {
        self.config().mirt.checkpoints_dir.join("uploads")
    }

    /// Starts a background training job (one at a time), optionally activating the result.
    pub fn start(self: &Arc<Self>, activate: bool) -> Result<JobStatus, TrainerError> {
        self.start_on(activate, None)
    }

    /// [`Trainer::start`] with `base` as the refit's base data instead of `mirt.base_data`.
    pub fn start_on(
        self: &Arc<Self>,
        activate: bool,
        base: Option<PathBuf>,
    ) -> Result<JobStatus, TrainerError> {
        let id = self
            .next_job
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let args = FitOptions::refit_of(&self.config().mirt.encoder, &self.router().scorer().mirt);
        let status = JobStatus {
            id,
            state: "running",
            started_at: Utc::now(),
            finished_at: None,
            epoch: 0,
            max_epochs: args.max_epochs,
            member: 0,
            members: args.ensemble.max(1),
            val_bce: None,
            version: None,
            activated: None,
            message: None,
        };
        {
            let mut job = self.lock();
            if let Some(j) = job.as_ref().filter(|j| j.state == "running") {
                return Err(TrainerError::Busy(j.id));
            }
            *job = Some(status.clone());
        }
        let me = self.clone();
        tokio::spawn(async move {
            let watcher = me.clone();
            let progress: Arc<dyn Fn(usize, usize, f64) + Send + Sync> =
                Arc::new(move |member, epoch, vb| {
                    if let Some(j) = watcher.lock().as_mut() {
                        j.member = member;
                        j.epoch = epoch + 1;
                        j.val_bce = Some(vb);
                    }
                });
            let result = match me.train_on(progress, base.as_deref()).await {
                Ok(row) if activate => match me.activate(row.version, false).await {
                    Ok(a) => Ok((row.version, Some(true), a.message)),
                    Err(e) => Ok((row.version, Some(false), e.to_string())),
                },
                Ok(row) => Ok((
                    row.version,
                    None,
                    format!("checkpoint v{} registered", row.version),
                )),
                Err(e) => Err(e.to_string()),
            };
            let mut job = me.lock();
            if let Some(j) = job.as_mut() {
                j.finished_at = Some(Utc::now());
                match result {
                    Ok((version, activated, message)) => {
                        j.state = "done";
                        j.version = Some(version);
                        j.activated = activated;
                        j.message = Some(message);
                    }
                    Err(message) => {
                        tracing::warn!("MIRT training failed: {message}");
                        j.state = "failed";
                        j.message = Some(message);
                    }
                }
            }
        });
        Ok(status)
    }

    /// `mirt.retrain_every`: refit on that schedule and activate what passes the held-out check.
    pub fn schedule(self: Arc<Self>, every: std::time::Duration) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                match self.start(true) {
                    Ok(j) => tracing::info!(job = j.id, "scheduled MIRT refit started"),
                    Err(e) => tracing::info!("scheduled MIRT refit skipped: {e}"),
                }
            }
        });
    }
}

fn file_sha256(path: &Path) -> Result<String, TrainerError> {
    crate::live::file_sha256(path).map_err(|e| TrainerError::Other(e.to_string()))
}

/// The checkpoint the proxy scores with, whose prompt layout and training options a refit keeps:
/// the store's active one, else the config's file.
async fn active_checkpoint(
    store: &Store,
    encoder: &Encoder,
    config: &Config,
) -> anyhow::Result<Mirt> {
    let active = store
        .list_checkpoints()
        .await?
        .into_iter()
        .find(|r| r.active);
    let path = active.map_or_else(|| config.mirt.checkpoint.clone(), |r| PathBuf::from(r.path));
    Mirt::load(&path, Some(encoder.id())).map_err(|e| {
        anyhow::anyhow!(
            "the active checkpoint {} (whose layout and options a refit keeps) cannot be read: {e}",
            path.display()
        )
    })
}

/// `dualrouter train --from-db`: refit on the config's store (+ `--data` or `mirt.base_data`),
/// write `--out`, and register it (not active).
pub fn train_from_db_command(
    config_path: &Path,
    data: Option<&Path>,
    out: &Path,
) -> anyhow::Result<()> {
    // It serves nothing: only the store and the encoder are used, no secret.
    let config = dualrouter_core::config::load_with(
        config_path,
        dualrouter_core::config::validated::Secrets::IfSet,
    )?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let store = Store::open(&config.database).await?;
        let encoder = Arc::new(Encoder::load(&config.mirt.encoder)?);
        let base = data.or(config.mirt.base_data.as_deref());
        let active = active_checkpoint(&store, &encoder, &config).await?;
        let prompt = PromptPart::of(&active);
        let mut args = FitOptions::refit_of(&config.mirt.encoder, &active);
        args.quiet = false;
        let layout = prompt.describe();
        let prepared = prepare(&store, &encoder, &config, base, prompt).await?;
        eprintln!(
            "training on {} logged outcomes and {} base rows ({} held out), prompt in x: {layout}, {}",
            prepared.logged_rows,
            prepared.base_rows,
            prepared.holdout.len(),
            args.describe_shape()
        );
        let m = fit_xy(prepared.input, encoder.id(), encoder.dim(), &args, &mut |_, _, _| {})?;
        m.save(out)?;
        let row = store
            .register_checkpoint(
                &out.display().to_string(),
                &file_sha256(out)?,
                m.dim_x() as i32,
                &m.models.iter().map(|x| x.name.clone()).collect::<Vec<_>>(),
                &serde_json::json!({ "source": "dualrouter train --from-db" }),
                m.training.rows as i64,
            )
            .await?;
        store.close().await;
        eprintln!(
            "wrote {} and registered it as checkpoint v{} (activate it with POST /api/mirt/checkpoints/{}/activate)",
            out.display(),
            row.version,
            row.version
        );
        anyhow::Ok(())
    })
}
