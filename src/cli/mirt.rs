//! `dualrouter train` and `dualrouter eval`: their flags, mapped onto the options of
//! `dualrouter_ml::mirt::fit`, and what they print and write.

use std::path::PathBuf;

use anyhow::{bail, Context};
use serde_json::json;

use dualrouter_ml::encoder::EncoderKind;
use dualrouter_ml::eval::{self, Metrics};
use dualrouter_ml::mirt::fit::{cross_validate, evaluate, EvalOptions, FitOptions, PromptX, KNN_K};

fn parse_kind(s: &str) -> Result<EncoderKind, String> {
    s.parse()
}

fn parse_prompt_x(s: &str) -> Result<PromptX, String> {
    s.parse()
}

/// Encoder and training options shared by `train` and `eval`.
#[derive(Debug, Clone, clap::Args)]
pub struct FitArgs {
    /// Encoder: `minilm-int8` (all-MiniLM-L6-v2 in dynamic int8), `minilm` (the same in fp32) or `static` (potion-base-8M).
    #[arg(long, default_value = "minilm-int8", value_parser = parse_kind)]
    pub encoder: EncoderKind,
    /// Folder filled by scripts/fetch-models.sh.
    #[arg(long, default_value = "models", env = "DUALROUTER_MODELS_DIR")]
    pub models_dir: PathBuf,
    /// Token budget per prompt.
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
    /// Tokens kept from the start of a long prompt (the rest from its end).
    #[arg(long, default_value_t = 32)]
    pub head_tokens: usize,
    /// Latent dimension of θ and a.
    #[arg(long, default_value_t = 25)]
    pub latent: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[arg(long, default_value_t = 200)]
    pub max_epochs: usize,
    #[arg(long, default_value_t = 2e-3)]
    pub lr: f32,
    #[arg(long, default_value_t = 1e-4)]
    pub weight_decay: f32,
    /// Ensemble members (each trained with its own seed and early-stopping slice; P is their mean). 5 by
    /// default: chosen by `eval --cv 5` inside the train splits (routerbench +0.0024 AIQ, routerdc +0.0047 quality,
    /// no fold worse).
    #[arg(long, default_value_t = 5)]
    pub ensemble: usize,
    /// Features joined to the embedding (comma list of: bias, log_chars, code).
    #[arg(long, default_value = "bias,log_chars,code")]
    pub features: String,
    /// What of the prompt enters x besides the features: `embedding` (default), `clusters:K` (a
    /// one-hot of the nearest of K k-means centroids of the training embeddings, not the
    /// embedding itself) or `embedding+clusters:K`.
    #[arg(long, default_value = "embedding", value_parser = parse_prompt_x)]
    pub prompt_x: PromptX,
    /// Where computed embeddings are cached between runs (keyed by encoder id and prompts).
    #[arg(long)]
    pub embedding_cache: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

impl From<&FitArgs> for FitOptions {
    fn from(a: &FitArgs) -> Self {
        FitOptions {
            encoder: a.encoder,
            models_dir: a.models_dir.clone(),
            max_tokens: a.max_tokens,
            head_tokens: a.head_tokens,
            latent: a.latent,
            seed: a.seed,
            max_epochs: a.max_epochs,
            lr: a.lr,
            weight_decay: a.weight_decay,
            ensemble: a.ensemble,
            features: a.features.clone(),
            prompt_x: a.prompt_x,
            embedding_cache: a.embedding_cache.clone(),
            quiet: a.quiet,
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct TrainArgs {
    /// Outcome data: wide CSV, long CSV (prompt,model,score[,cost][,split]) or JSONL. With
    /// `--from-db`, the base data joined to the logged outcomes (default: `mirt.base_data`).
    #[arg(long, required_unless_present = "from_db")]
    pub data: Option<PathBuf>,
    /// Fit on the outcomes logged in the config's store (failed attempts score 0, feedback
    /// scores the model that served), register the checkpoint there (not active).
    #[arg(long)]
    pub from_db: bool,
    /// The config file whose store, encoder and models `--from-db` uses.
    #[arg(
        long,
        default_value = "config/dualrouter.yaml",
        env = "DUALROUTER_CONFIG"
    )]
    pub config: PathBuf,
    /// Checkpoint to write.
    #[arg(long, default_value = "checkpoints/mirt.json")]
    pub out: PathBuf,
    /// Split to train on (ignored if the file has no `split` column).
    #[arg(long, default_value = "train")]
    pub split: String,
    /// Do not evaluate the checkpoint on the file's `test` split (by default, when the file has
    /// one, its metrics go into the checkpoint's `eval`, as `dualrouter eval --checkpoint` computes them).
    #[arg(long)]
    pub no_eval: bool,
    #[command(flatten)]
    pub fit: FitArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    #[arg(long)]
    pub data: PathBuf,
    /// Split to evaluate on.
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Route with this checkpoint instead of training on the file's train split.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Write the cost-quality plot here (SVG).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Neighbours of the kNN baseline.
    #[arg(long, default_value_t = KNN_K)]
    pub knn_k: usize,
    /// The cost-weight values each router's curve is made of: `exact` (every routing the knob
    /// can give) or a number N (0 and N − 1 values from 1e-4 to 1e3, geometric).
    #[arg(long, default_value = "exact")]
    pub sweep: eval::Sweep,
    /// Tuning mode: K-fold cross-validation inside the `train` split (folds drawn with --seed); the test split is
    /// not read. Prints the mean over the folds (and each fold with --json).
    #[arg(long)]
    pub cv: Option<usize>,
    #[command(flatten)]
    pub fit: FitArgs,
}

impl EvalArgs {
    fn options(&self) -> EvalOptions {
        EvalOptions {
            data: self.data.clone(),
            split: self.split.clone(),
            checkpoint: self.checkpoint.clone(),
            knn_k: self.knn_k,
            sweep: self.sweep,
            fit: FitOptions::from(&self.fit),
        }
    }
}

pub fn run_train(args: &TrainArgs) -> anyhow::Result<()> {
    if args.from_db {
        return crate::trainer::train_from_db_command(
            &args.config,
            args.data.as_deref(),
            &args.out,
        );
    }
    let Some(data) = &args.data else {
        bail!("--data FILE is required (or --from-db)");
    };
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let m = dualrouter_ml::mirt::fit::train(
        data,
        &args.split,
        args.no_eval,
        &FitOptions::from(&args.fit),
        command,
    )?;
    if let Some(r) = &m.training.train {
        eprintln!(
            "trained on {} prompts ({} outcomes, {} for validation): best epoch {} of {}, val BCE {:.4}",
            r.train_prompts, r.outcomes, r.val_prompts, r.best_epoch, r.epochs_run, r.val_bce
        );
    }
    if !m.eval.is_null() {
        let aiq = |r: &str| {
            m.eval["routers"][r]["aiq_linear"]
                .as_f64()
                .map_or("null".to_string(), |v| format!("{v:.4}"))
        };
        eprintln!(
            "test split ({} rows): AIQ {} (kNN {}, random mixing {}, oracle {})",
            m.eval["rows"],
            aiq("mirt"),
            aiq("knn"),
            aiq("random_mixing"),
            aiq("oracle")
        );
    }
    m.save(&args.out)?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

pub fn run_eval(args: &EvalArgs) -> anyhow::Result<()> {
    if let Some(k) = args.cv {
        return run_cv(args, k);
    }
    let res = evaluate(&args.options())?;
    let mut routers = serde_json::Map::new();
    for (name, _, m) in &res.routers {
        routers.insert(name.clone(), serde_json::to_value(m)?);
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "routers": routers }))?
        );
    } else {
        println!(
            "{} split `{}`: {} queries ({} skipped for missing outcomes)",
            args.data.display(),
            args.split,
            res.test_rows,
            res.skipped
        );
        println!("single models:");
        for (n, p) in res.singles.names.iter().zip(&res.singles.points) {
            println!(
                "  {:<40} cost {:>10.6}  quality {:.4}",
                n, p.cost, p.quality
            );
        }
        let f = |v: Option<f64>| v.map_or("null".to_string(), |x| format!("{x:.4}"));
        let mirt_points = res.routers.first().map_or(0, |(_, c, _)| c.points.len());
        println!(
            "cost-weight sweep: {} ({mirt_points} points on the mirt curve)",
            args.sweep
        );
        println!(
            "{:<14} {:>10} {:>10} {:>9} {:>11} {:>12} {:>8} {:>8} {:>8}",
            "router",
            "aiq_linear",
            "aiq_log",
            "savings",
            "max_quality",
            "at_cost",
            "apgr",
            "cpt50",
            "cpt80"
        );
        for (name, _, m) in &res.routers {
            println!(
                "{:<14} {:>10} {:>10} {:>9} {:>11.4} {:>12.6} {:>8} {:>8} {:>8}",
                name,
                f(m.aiq_linear),
                f(m.aiq_log),
                f(m.savings_at_parity),
                m.max_quality,
                m.max_quality_cost,
                f(m.apgr),
                f(m.cpt50),
                f(m.cpt80)
            );
        }
    }
    if let Some(plot) = &args.plot {
        let lines: Vec<(String, Vec<eval::Point>)> = res
            .routers
            .iter()
            .map(|(n, c, _)| (n.clone(), c.points.clone()))
            .collect();
        let singles: Vec<(String, eval::Point)> = res
            .singles
            .names
            .iter()
            .cloned()
            .zip(res.singles.points.iter().copied())
            .collect();
        let lo = res.singles.cheapest();
        let hi = res.singles.dearest();
        let log = lo > 0.0 && hi / lo > 5.0;
        let title = format!("{} ({} split)", args.data.display(), args.split);
        std::fs::write(plot, eval::svg::plot(&title, &lines, &singles, log))
            .with_context(|| format!("writing {}", plot.display()))?;
        eprintln!("wrote {}", plot.display());
    }
    Ok(())
}

fn run_cv(args: &EvalArgs, k: usize) -> anyhow::Result<()> {
    let folds = cross_validate(&args.options(), k)?;
    let names: Vec<String> = folds[0].routers.iter().map(|(n, _, _)| n.clone()).collect();
    let mean = |get: &dyn Fn(&Metrics) -> Option<f64>, r: usize| -> Option<f64> {
        let v: Vec<f64> = folds.iter().filter_map(|f| get(&f.routers[r].2)).collect();
        (v.len() == folds.len()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let mut routers = serde_json::Map::new();
    for (r, n) in names.iter().enumerate() {
        routers.insert(
            n.clone(),
            json!({
                "aiq_linear": mean(&|m| m.aiq_linear, r),
                "aiq_log": mean(&|m| m.aiq_log, r),
                "savings_at_parity": mean(&|m| m.savings_at_parity, r),
                "max_quality": mean(&|m| Some(m.max_quality), r),
            }),
        );
    }
    if args.json {
        let per_fold: Vec<serde_json::Value> = folds
            .iter()
            .map(|f| {
                let mut m = serde_json::Map::new();
                for (n, _, x) in &f.routers {
                    m.insert(
                        n.clone(),
                        json!({"aiq_linear": x.aiq_linear, "max_quality": x.max_quality}),
                    );
                }
                serde_json::Value::Object(m)
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"cv": k, "routers": routers, "folds": per_fold}))?
        );
    } else {
        println!(
            "{}: {k}-fold cross-validation inside the train split (mean over folds)",
            args.data.display()
        );
        let f = |v: &serde_json::Value| v.as_f64().map_or("null".into(), |x| format!("{x:.4}"));
        println!(
            "{:<14} {:>10} {:>10} {:>9} {:>11}",
            "router", "aiq_linear", "aiq_log", "savings", "max_quality"
        );
        for n in &names {
            let m = &routers[n];
            println!(
                "{:<14} {:>10} {:>10} {:>9} {:>11}",
                n,
                f(&m["aiq_linear"]),
                f(&m["aiq_log"]),
                f(&m["savings_at_parity"]),
                f(&m["max_quality"])
            );
        }
    }
    Ok(())
}

#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// Outcome data (as `train` reads it): its `train` split is the traffic and its `test` split
    /// the measured slice; a file without splits is replayed whole, measured on the rows a hash
    /// holds out.
    #[arg(long)]
    pub data: PathBuf,
    /// The checkpoint the router starts from; the file's models it does not know start cold.
    #[arg(long, default_value = "checkpoints/default.json")]
    pub checkpoint: PathBuf,
    /// The file's models to route among (comma list; default: all).
    #[arg(long, value_delimiter = ',')]
    pub models: Vec<String>,
    /// Print the curve as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Write the learning curve here (SVG).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Refit (and judge, and maybe activate) after every K rows of traffic.
    #[arg(long, default_value_t = 500)]
    pub refit_every: usize,
    /// A point of the curve every N rows (default: every refit).
    #[arg(long)]
    pub window: Option<usize>,
    /// Replay only the first N rows of traffic.
    #[arg(long)]
    pub rows: Option<usize>,
    /// The objective's cost weight (as `mirt.cost_weight`).
    #[arg(long, default_value_t = 0.2)]
    pub cost_weight: f64,
    /// Exploration (as `mirt.exploration.policy`): off, thompson or ucb.
    #[arg(long, default_value = "off", value_parser = crate::replay::parse_policy)]
    pub explore: dualrouter_core::config::mirt::ExplorePolicy,
    /// `mirt.exploration.scale`: logits of uncertainty of a model without outcomes.
    #[arg(long, default_value_t = 2.0)]
    pub explore_scale: f64,
    /// `mirt.exploration.max_traffic_share`.
    #[arg(long, default_value_t = 0.1)]
    pub explore_traffic_share: f64,
    /// `mirt.exploration.max_spend_share`.
    #[arg(long, default_value_t = 0.1)]
    pub explore_spend_share: f64,
    /// `mirt.holdout_percent`: rows (by hash) whose outcomes judge refits and are never trained
    /// on (and, without splits, the measured slice).
    #[arg(long, default_value_t = 10)]
    pub holdout_percent: u32,
    /// `mirt.min_outcomes`: a model joins a refit once it has this many revealed outcomes.
    #[arg(long, default_value_t = 20)]
    pub min_outcomes: usize,
    /// As `mirt.base_data`: refits also train on this file's `train` split (say, the data the
    /// checkpoint was trained on), and its `test` split joins the held-out slice refits are
    /// judged on.
    #[arg(long)]
    pub base_data: Option<PathBuf>,
    /// The ceiling: this checkpoint (say, `train` on the same file) instead of fitting one.
    #[arg(long)]
    pub ceiling: Option<PathBuf>,
    /// No ceiling (null).
    #[arg(long, conflicts_with = "ceiling")]
    pub no_ceiling: bool,
    #[command(flatten)]
    pub fit: FitArgs,
}

pub fn run_replay(args: &ReplayArgs) -> anyhow::Result<()> {
    let exploration = dualrouter_core::config::mirt::ExplorationSettings {
        policy: args.explore,
        scale: args.explore_scale,
        max_traffic_share: args.explore_traffic_share,
        max_spend_share: args.explore_spend_share,
        seed: args.fit.seed,
    };
    exploration
        .validate()
        .map_err(|e| anyhow::anyhow!("{}", e.replace("mirt.exploration.", "--explore-")))?;
    let mut fit = FitOptions::from(&args.fit);
    // Progress is the replay's own lines; the per-fit bars would interleave with them.
    let quiet = fit.quiet;
    fit.quiet = true;
    let opts = crate::replay::ReplayOptions {
        data: args.data.clone(),
        checkpoint: args.checkpoint.clone(),
        models: args.models.clone(),
        refit_every: args.refit_every,
        window: args.window.unwrap_or(args.refit_every),
        max_rows: args.rows,
        objective: dualrouter_ml::mirt::Objective::CostWeight(args.cost_weight),
        exploration,
        holdout_percent: args.holdout_percent.min(50),
        min_outcomes: args.min_outcomes,
        base_data: args.base_data.clone(),
        fit,
        ceiling: args.ceiling.clone(),
        skip_ceiling: args.no_ceiling,
        quiet,
    };
    let (report, extra) = crate::replay::run(&opts)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", crate::replay::render(&report, &extra));
    }
    if let Some(plot) = &args.plot {
        let title = format!(
            "{}: learning curve (exploration {:?})",
            args.data.display(),
            args.explore
        );
        crate::replay::write_plot(plot, &title, &report)?;
        eprintln!("wrote {}", plot.display());
    }
    Ok(())
}
