//! `dualrouter eval-classifier`: the embedded classifier's accuracy and latency on a labelled CSV
//! (the evaluation itself is `dualrouter_routing::classify::eval`).

use dualrouter_routing::classify::embedded::HeadTraining;
use dualrouter_routing::classify::eval::{evaluate, load_csv};

/// `dualrouter eval-classifier` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct EvalClassifierArgs {
    /// CSV with `text`, `domain`,`action` (or `scenario`,`intent`), and `split` or `fold`.
    #[arg(long)]
    pub data: std::path::PathBuf,
    /// Print one JSON object: domain_accuracy, route_accuracy, p50_ms, p99_ms, examples.
    #[arg(long)]
    pub json: bool,
    /// Test on this fold only (e.g. `1` or `KFold_1`) instead of averaging over every fold.
    #[arg(long)]
    pub fold: Option<String>,
    /// Encoder backend.
    #[arg(long, default_value = "minilm-int8")]
    pub encoder: dualrouter_ml::encoder::EncoderKind,
    /// Folder filled by `scripts/fetch-models.sh`.
    #[arg(long, default_value = "models")]
    pub models_dir: std::path::PathBuf,
    /// Test prompts timed one by one (uncached encoder pass + head) for the latency figures.
    #[arg(long, default_value_t = 300)]
    pub latency_samples: usize,
    /// Training epochs of the head.
    #[arg(long, default_value_t = HeadTraining::default().epochs)]
    pub epochs: usize,
}

pub(super) fn run_cli(args: &EvalClassifierArgs) -> anyhow::Result<()> {
    use dualrouter_ml::encoder::{Encoder, EncoderConfig};
    let rows = load_csv(&args.data)?;
    let cfg = EncoderConfig {
        kind: args.encoder,
        models_dir: args.models_dir.clone(),
        ..EncoderConfig::default()
    };
    let encoder = Encoder::load(&cfg)?;
    // The latency figures time a real encoder pass: a second encoder without a cache.
    let fresh = Encoder::load(&EncoderConfig {
        cache_size: 0,
        ..cfg.clone()
    })?;
    let quiet = args.json;
    let bar = if quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(rows.len() as u64)
    };
    let done = std::sync::atomic::AtomicU64::new(0);
    let report = evaluate(
        &rows,
        |texts: &[&str]| {
            let out = encoder.embed_batch(texts);
            bar.set_position(
                done.fetch_add(texts.len() as u64, std::sync::atomic::Ordering::Relaxed)
                    + texts.len() as u64,
            );
            out
        },
        |text: &str| fresh.embed(text),
        args.fold.as_deref(),
        args.latency_samples,
        HeadTraining {
            epochs: args.epochs,
            ..HeadTraining::default()
        },
        |msg| {
            if !quiet {
                bar.set_message(msg.to_string());
                if msg.starts_with("fold") {
                    bar.println(msg);
                }
            }
        },
    )?;
    bar.finish_and_clear();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "domain_accuracy": report.domain_accuracy,
                "route_accuracy": report.route_accuracy,
                "p50_ms": report.p50_ms,
                "p99_ms": report.p99_ms,
                "examples": report.examples,
                "folds": report.folds,
                "encoder": encoder.id(),
            })
        );
    } else {
        println!("data            {}", args.data.display());
        println!("encoder         {}", encoder.id());
        println!("folds           {}", report.folds);
        println!("examples        {}", report.examples);
        println!("domain accuracy {:.2}%", report.domain_accuracy * 100.0);
        println!(
            "route accuracy  {:.2}%  (domain/action)",
            report.route_accuracy * 100.0
        );
        println!(
            "latency p50     {:.3} ms  (encoder pass + head, one prompt)",
            report.p50_ms
        );
        println!("latency p99     {:.3} ms", report.p99_ms);
    }
    Ok(())
}
