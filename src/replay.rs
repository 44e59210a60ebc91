//! `dualrouter replay`: an outcome file's rows arrive in order as traffic; the router learns from
//! the outcomes of the models it chose, as the server would (`docs/learning.md`).
//!
//! For each row the router chooses as `DualRouter` does once the route's candidates are known
//! (the scorer joins the file's models to the checkpoint, unknown ones cold from a prior; the
//! objective and exploration choose through [`Explorer::select`]; affinity off). Only the chosen
//! model's outcome is revealed. Every `refit_every` rows the revealed outcomes are refitted with
//! the trainer's own input ([`trainer::fit_input`]) and fit, and the result is judged by the
//! server's activation guard ([`trainer::judge`]) on the revealed outcomes of the held-out rows
//! (by a hash of the row, as the server holds decisions out by their id), never trained on.
//!
//! The curve is measured on a slice the router never learns from: the file's `test` split
//! (traffic is then its `train` split), or, in a file without splits, the rows the hash holds
//! out (all rows are traffic; the held-out rows' outcomes judge refits but are not trained on).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Serialize;

use dualrouter_core::config::mirt::{ExplorationSettings, ExplorePolicy};
use dualrouter_ml::encoder::Encoder;
use dualrouter_ml::eval::{self, Outcomes};
use dualrouter_ml::mirt::data::Row;
use dualrouter_ml::mirt::fit::{self, embed_rows, fit_xy, FitOptions};
use dualrouter_ml::mirt::{Dataset, Mirt, Objective};
use dualrouter_routing::{Explorer, Scored, Scorer, Selection};

use crate::trainer::{self, HeldOut, PromptPart};

/// What to replay and how the router learns.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub data: PathBuf,
    pub checkpoint: PathBuf,
    /// The file's models to route among (empty: all).
    pub models: Vec<String>,
    /// Refit after this many rows of traffic.
    pub refit_every: usize,
    /// A point of the curve after this many rows.
    pub window: usize,
    /// Replay at most this many rows of traffic.
    pub max_rows: Option<usize>,
    pub objective: Objective,
    pub exploration: ExplorationSettings,
    /// Share of rows (by hash) held out: in a file without splits, the measured slice.
    pub holdout_percent: u32,
    /// Fewest revealed outcomes a model needs to join a refit (`mirt.min_outcomes`).
    pub min_outcomes: usize,
    /// As `mirt.base_data`: refits train on its `train` split beside the revealed outcomes, and
    /// its `test` split joins the guard's held-out slice.
    pub base_data: Option<PathBuf>,
    /// Encoder, embedding cache, and the ceiling's training options (`dualrouter train`'s).
    pub fit: FitOptions,
    /// The ceiling: this checkpoint instead of a fit on the train split; `skip_ceiling`: none.
    pub ceiling: Option<PathBuf>,
    pub skip_ceiling: bool,
    /// No progress lines on stderr.
    pub quiet: bool,
}

/// Quality and cost (means per row) of a router on the measured slice.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct QualityCost {
    pub quality: f64,
    pub cost: f64,
}

/// One window of the curve.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    /// Rows of traffic replayed so far.
    pub end_row: usize,
    /// The router as it stands, on the measured slice.
    pub quality: f64,
    pub cost: f64,
    /// What the window's traffic itself got.
    pub online_quality: f64,
    pub online_cost: f64,
    /// Share of the window's rows whose model exploration chose.
    pub explore_share: f64,
}

/// The learning curve (`--json` prints exactly this).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub start: QualityCost,
    #[serde(rename = "final")]
    pub final_: QualityCost,
    pub ceiling: Option<QualityCost>,
    pub best_single: QualityCost,
    pub oracle: QualityCost,
    pub windows: Vec<Window>,
}

/// What the text output adds to the report.
#[derive(Debug, Clone, Default)]
pub struct Extra {
    pub traffic_rows: usize,
    pub measured_rows: usize,
    pub best_single_model: String,
    pub refits: usize,
    pub activated: usize,
    pub explored: u64,
    pub explore_spend_share: f64,
}

/// The measured slice, ready to route: per row, the embedding, the text, and per candidate
/// its score and cost.
struct Measured<'a> {
    rows: Vec<(&'a Row, &'a [f32])>,
    outcomes: Outcomes,
}

fn hash_held_out(r: &Row, percent: u32) -> bool {
    trainer::is_held_out(&format!("replay-row-{}", r.row), percent)
}

/// The router's quality and cost on `m`: each row routed by `scorer` among `cands` without
/// exploration.
fn measure(
    scorer: &Scorer,
    m: &Measured<'_>,
    cands: &[(String, f64)],
    cost_ref: f64,
    obj: Objective,
) -> QualityCost {
    let off = Explorer::new(&ExplorationSettings::default());
    let (mut q, mut c) = (0.0, 0.0);
    let ids: Vec<&str> = cands.iter().map(|(n, _)| n.as_str()).collect();
    for (i, (row, emb)) in m.rows.iter().enumerate() {
        let x = scorer.features(emb, &row.prompt);
        let p = scorer.p_success(&x, &ids);
        let scored: Vec<Scored<'_>> = cands
            .iter()
            .zip(&p)
            .map(|((n, price), &p)| Scored {
                model: n,
                p,
                cost: *price,
                outcomes: scorer.outcomes(n),
            })
            .collect();
        let first = off.select(&scored, cost_ref, obj).order[0];
        q += f64::from(m.outcomes.scores[i][first]);
        c += m.outcomes.costs[i][first];
    }
    let n = m.rows.len().max(1) as f64;
    QualityCost {
        quality: q / n,
        cost: c / n,
    }
}

pub fn run(opts: &ReplayOptions) -> anyhow::Result<(Report, Extra)> {
    let ds = Dataset::load(&opts.data)?;
    // The candidates: the file's models (or those asked for), as file columns.
    let cols: Vec<usize> = if opts.models.is_empty() {
        (0..ds.models.len()).collect()
    } else {
        opts.models
            .iter()
            .map(|m| {
                ds.models.iter().position(|x| x == m).with_context(|| {
                    format!(
                        "--models: `{m}` is not a model of {} ({})",
                        opts.data.display(),
                        ds.models.join(", ")
                    )
                })
            })
            .collect::<anyhow::Result<_>>()?
    };
    let enc = Encoder::load(&opts.fit.encoder_config())?;
    let active_mirt = Mirt::load(&opts.checkpoint, Some(enc.id()))?;

    // Traffic, measured slice, and embeddings (cached as `train` and `eval` cache them: by split).
    let split_file = ds.has_splits() && !ds.split(Some("train")).is_empty();
    let (traffic, measured_rows, traffic_emb, measured_emb): (Vec<&Row>, Vec<&Row>, _, _) =
        if split_file {
            let train = fit::split_rows(&ds, "train");
            let test = ds.split(Some("test"));
            if test.is_empty() {
                bail!("{}: no `test` split to measure on", opts.data.display());
            }
            let te = embed_rows(&enc, &train, &opts.fit)?;
            let me = embed_rows(&enc, &test, &opts.fit)?;
            (train, test, te, me)
        } else {
            let all: Vec<&Row> = ds.rows.iter().collect();
            let emb = embed_rows(&enc, &all, &opts.fit)?;
            let held: Vec<usize> = (0..all.len())
                .filter(|&i| hash_held_out(all[i], opts.holdout_percent))
                .collect();
            if held.is_empty() {
                bail!(
                    "{}: no row falls in the held-out slice ({}%)",
                    opts.data.display(),
                    opts.holdout_percent
                );
            }
            let m: Vec<&Row> = held.iter().map(|&i| all[i]).collect();
            let me: Vec<Vec<f32>> = held.iter().map(|&i| emb[i].clone()).collect();
            (all, m, emb, me)
        };
    let n_traffic = opts
        .max_rows
        .map_or(traffic.len(), |n| n.min(traffic.len()));

    // Prices per query: the traffic's mean cost of each model (1 without costs).
    let prices = ds.mean_prices(&traffic);
    let cands: Vec<(String, f64)> = cols
        .iter()
        .map(|&j| (ds.models[j].clone(), prices[j]))
        .collect();
    let cost_ref = cands.iter().map(|c| c.1).fold(0.0, f64::max);
    let price_of: HashMap<String, f64> = cands.iter().cloned().collect();

    // The measured slice: rows with every candidate's outcome.
    let pairs: Vec<(&Row, &[f32])> = measured_rows
        .iter()
        .copied()
        .zip(measured_emb.iter().map(Vec::as_slice))
        .filter(|(r, _)| cols.iter().all(|&j| r.scores[j].is_some()))
        .collect();
    if pairs.is_empty() {
        bail!(
            "{}: every measured row misses an outcome",
            opts.data.display()
        );
    }
    let outcomes = Outcomes {
        scores: pairs
            .iter()
            .map(|(r, _)| cols.iter().map(|&j| r.scores[j].unwrap_or(0.0)).collect())
            .collect(),
        costs: pairs
            .iter()
            .map(|(r, _)| {
                cols.iter()
                    .map(|&j| r.costs[j].unwrap_or(prices[j]))
                    .collect()
            })
            .collect(),
    };
    let measured = Measured {
        rows: pairs,
        outcomes,
    };
    let names: Vec<String> = cands.iter().map(|c| c.0.clone()).collect();
    let singles = measured.outcomes.singles(&names);
    let b = singles.best();
    let best_single = QualityCost {
        quality: singles.points[b].quality,
        cost: singles.points[b].cost,
    };
    let oracle = {
        let (mut q, mut c) = (0.0, 0.0);
        for (s, k) in measured
            .outcomes
            .scores
            .iter()
            .zip(&measured.outcomes.costs)
        {
            let best = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let cheapest = (0..s.len())
                .filter(|&m| s[m] == best)
                .map(|m| k[m])
                .fold(f64::INFINITY, f64::min);
            q += f64::from(best);
            c += cheapest;
        }
        let n = measured.rows.len() as f64;
        QualityCost {
            quality: q / n,
            cost: c / n,
        }
    };
    let say = |s: String| {
        if !opts.quiet {
            eprintln!("{s}");
        }
    };
    say(format!(
        "replay of {}: {} rows of traffic, {} measured rows ({}), {} candidates, {} cold for {}",
        opts.data.display(),
        n_traffic,
        measured.rows.len(),
        if split_file {
            "the test split"
        } else {
            "held out by hash"
        },
        cands.len(),
        cands
            .iter()
            .filter(|(n, _)| active_mirt.model_index(n).is_none())
            .count(),
        opts.checkpoint.display()
    ));

    // The ceiling: full outcomes of the train split (or of the rows not held out).
    let ceiling = if opts.skip_ceiling {
        None
    } else {
        let m = match &opts.ceiling {
            Some(path) => Mirt::load(path, Some(enc.id()))?,
            None => {
                say("fitting the ceiling (offline, every outcome of the training rows)".into());
                let (rows, emb): (Vec<&Row>, Vec<Vec<f32>>) = traffic
                    .iter()
                    .zip(&traffic_emb)
                    .filter(|(r, _)| split_file || !hash_held_out(r, opts.holdout_percent))
                    .map(|(r, e)| (*r, e.clone()))
                    .unzip();
                fit::fit(
                    &ds,
                    &rows,
                    &emb,
                    &enc,
                    &opts.fit,
                    split_file.then_some("train"),
                    "replay ceiling".into(),
                )?
            }
        };
        let s = Scorer::for_models(m, PathBuf::from("ceiling"), &cands)?;
        Some(measure(&s, &measured, &cands, cost_ref, opts.objective))
    };

    let mut active = Scorer::for_models(active_mirt, opts.checkpoint.clone(), &cands)?;
    let start = measure(&active, &measured, &cands, cost_ref, opts.objective);
    say(format!(
        "start {:.4} (cost {:.6}), ceiling {}, best single {:.4} ({}), oracle {:.4}",
        start.quality,
        start.cost,
        ceiling.map_or("null".into(), |c| format!("{:.4}", c.quality)),
        best_single.quality,
        names[b],
        oracle.quality
    ));

    let explorer = Explorer::new(&opts.exploration);
    let encoder_config = opts.fit.encoder_config();
    let mut train_rows: Vec<HeldOut> = Vec::new();
    let mut guard_rows: Vec<HeldOut> = Vec::new();
    let (base_train, base_test) = match &opts.base_data {
        Some(path) => base_rows(path, &enc, &opts.fit)?,
        None => (Vec::new(), Vec::new()),
    };
    guard_rows.extend(base_test);
    let mut windows = Vec::new();
    let (mut wq, mut wc, mut wn, mut we) = (0.0, 0.0, 0usize, 0usize);
    let mut extra = Extra {
        traffic_rows: n_traffic,
        measured_rows: measured.rows.len(),
        best_single_model: names[b].clone(),
        ..Extra::default()
    };
    let window = opts.window.max(1);
    let refit_every = opts.refit_every.max(1);
    for (t, (row, emb)) in traffic.iter().zip(&traffic_emb).take(n_traffic).enumerate() {
        // Candidates: the models with an outcome for this row.
        let here: Vec<usize> = (0..cols.len())
            .filter(|&k| row.scores[cols[k]].is_some())
            .collect();
        if !here.is_empty() {
            let ids: Vec<&str> = here.iter().map(|&k| cands[k].0.as_str()).collect();
            let x = active.features(emb, &row.prompt);
            let p = active.p_success(&x, &ids);
            let scored: Vec<Scored<'_>> = here
                .iter()
                .zip(&p)
                .map(|(&k, &p)| Scored {
                    model: &cands[k].0,
                    p,
                    cost: cands[k].1,
                    outcomes: active.outcomes(&cands[k].0),
                })
                .collect();
            let Selection { order, explore } = explorer.select(&scored, cost_ref, opts.objective);
            let k = here[order[0]];
            let j = cols[k];
            let y = row.scores[j].unwrap_or(0.0);
            wq += f64::from(y);
            wc += row.costs[j].unwrap_or(prices[j]);
            wn += 1;
            we += usize::from(explore);
            let revealed = HeldOut {
                embedding: emb.clone(),
                text: Some(row.prompt.clone()),
                extra: HashMap::new(),
                scores: vec![(cands[k].0.clone(), y)],
            };
            if hash_held_out(row, opts.holdout_percent) {
                guard_rows.push(revealed);
            } else {
                train_rows.push(revealed);
            }
        }
        let done = t + 1;
        let mut note = String::new();
        if done % refit_every == 0 || done == n_traffic {
            match refit(
                &active,
                &train_rows,
                &base_train,
                &guard_rows,
                &cands,
                &price_of,
                &enc,
                &encoder_config,
                opts,
            ) {
                Ok(Some((candidate, verdict))) => {
                    extra.refits += 1;
                    if verdict.passes() {
                        extra.activated += 1;
                        active = candidate;
                        explorer.checkpoint_changed();
                        note = format!(
                            "refit activated (held-out BCE {:.4} vs {:.4} over {})",
                            verdict.new_bce, verdict.active_bce, verdict.n
                        );
                    } else {
                        note = format!(
                            "refit refused by the guard (held-out BCE {:.4} vs {:.4} over {})",
                            verdict.new_bce, verdict.active_bce, verdict.n
                        );
                    }
                }
                Ok(None) => note = "not enough outcomes to refit".into(),
                Err(e) => return Err(e),
            }
        }
        if done % window == 0 || done == n_traffic {
            let now = measure(&active, &measured, &cands, cost_ref, opts.objective);
            let n = wn.max(1) as f64;
            let w = Window {
                end_row: done,
                quality: now.quality,
                cost: now.cost,
                online_quality: wq / n,
                online_cost: wc / n,
                explore_share: we as f64 / n,
            };
            say(format!(
                "row {done}/{n_traffic}: quality {:.4} cost {:.6} | online {:.4} cost {:.6} | explore {:.3} | {note}",
                w.quality, w.cost, w.online_quality, w.online_cost, w.explore_share
            ));
            windows.push(w);
            (wq, wc, wn, we) = (0.0, 0.0, 0, 0);
        }
    }
    let final_ = measure(&active, &measured, &cands, cost_ref, opts.objective);
    let st = explorer.stats();
    extra.explored = st.explored;
    extra.explore_spend_share = if st.spend > 0.0 {
        st.explore_spend / st.spend
    } else {
        0.0
    };
    Ok((
        Report {
            start,
            final_,
            ceiling,
            best_single,
            oracle,
            windows,
        },
        extra,
    ))
}

/// One refit: the trainer's input from the revealed outcomes, fitted with the active
/// checkpoint's options, judged by the activation guard. `None`: not enough outcomes yet.
#[allow(clippy::too_many_arguments)]
fn refit(
    active: &Scorer,
    train_rows: &[HeldOut],
    base_rows: &[HeldOut],
    guard_rows: &[HeldOut],
    cands: &[(String, f64)],
    price_of: &HashMap<String, f64>,
    enc: &Encoder,
    encoder_config: &dualrouter_ml::encoder::EncoderConfig,
    opts: &ReplayOptions,
) -> anyhow::Result<Option<(Scorer, trainer::Verdict)>> {
    let rows: Vec<HeldOut> = train_rows.iter().chain(base_rows).cloned().collect();
    let input = match trainer::fit_input(
        &rows,
        train_rows.len(),
        opts.min_outcomes,
        !base_rows.is_empty(),
        &|m: &str| price_of.get(m).copied().unwrap_or(0.0),
        PromptPart::of(&active.mirt),
        format!("replay of {}", opts.data.display()),
    ) {
        Ok(i) => i,
        Err(trainer::TrainerError::NotEnough(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let args = FitOptions::refit_of(encoder_config, &active.mirt);
    let m = fit_xy(input, enc.id(), enc.dim(), &args, &mut |_, _, _| {})?;
    let candidate = Scorer::for_models(m, PathBuf::from("refit"), cands)?;
    let verdict = trainer::judge(&candidate, active, guard_rows);
    Ok(Some((candidate, verdict)))
}

/// A base file's rows, every outcome known: its `train` split (all rows without splits) and its
/// `test` split, as the trainer reads `mirt.base_data`.
fn base_rows(
    path: &Path,
    enc: &Encoder,
    fit: &FitOptions,
) -> anyhow::Result<(Vec<HeldOut>, Vec<HeldOut>)> {
    let ds = Dataset::load(path)?;
    let train = fit::split_rows(&ds, "train");
    let test = if ds.has_splits() {
        ds.split(Some("test"))
    } else {
        Vec::new()
    };
    let rows_of = |rows: &[&Row]| -> anyhow::Result<Vec<HeldOut>> {
        let emb = embed_rows(enc, rows, fit)?;
        Ok(rows
            .iter()
            .zip(emb)
            .map(|(r, e)| HeldOut {
                embedding: e,
                text: Some(r.prompt.clone()),
                extra: HashMap::new(),
                scores: ds
                    .models
                    .iter()
                    .zip(&r.scores)
                    .filter_map(|(m, s)| s.map(|s| (m.clone(), s)))
                    .collect(),
            })
            .collect())
    };
    let tr = rows_of(&train)?;
    let te = if test.is_empty() {
        Vec::new()
    } else {
        rows_of(&test)?
    };
    Ok((tr, te))
}

/// The text report.
pub fn render(r: &Report, x: &Extra) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let f = |q: &QualityCost| format!("quality {:.4}  cost {:.6}", q.quality, q.cost);
    let _ = writeln!(
        s,
        "{} rows of traffic, measured on {} rows; {} refits, {} activated; {} rows explored ({:.1}% of the spend)",
        x.traffic_rows,
        x.measured_rows,
        x.refits,
        x.activated,
        x.explored,
        x.explore_spend_share * 100.0
    );
    let _ = writeln!(
        s,
        "{:>8} {:>9} {:>11} {:>9} {:>11} {:>8}",
        "end_row", "quality", "cost", "online_q", "online_cost", "explore"
    );
    for w in &r.windows {
        let _ = writeln!(
            s,
            "{:>8} {:>9.4} {:>11.6} {:>9.4} {:>11.6} {:>8.3}",
            w.end_row, w.quality, w.cost, w.online_quality, w.online_cost, w.explore_share
        );
    }
    let _ = writeln!(s, "start        {}", f(&r.start));
    let _ = writeln!(s, "final        {}", f(&r.final_));
    match &r.ceiling {
        Some(c) => {
            let _ = writeln!(s, "ceiling      {}", f(c));
        }
        None => {
            let _ = writeln!(s, "ceiling      null");
        }
    }
    let _ = writeln!(
        s,
        "best_single  {}  ({})",
        f(&r.best_single),
        x.best_single_model
    );
    let _ = writeln!(s, "oracle       {}", f(&r.oracle));
    if let Some(c) = &r.ceiling {
        let gap = c.quality - r.start.quality;
        if gap.abs() > 1e-12 {
            let _ = writeln!(
                s,
                "gap closed by the end: {:.1}% (final − ceiling = {:+.4})",
                (r.final_.quality - r.start.quality) / gap * 100.0,
                r.final_.quality - c.quality
            );
        }
    }
    s
}

/// The learning curve as an SVG: held-out and online quality by rows replayed, with the
/// start, ceiling, best single and oracle as horizontal lines.
pub fn plot(title: &str, r: &Report) -> String {
    let held: Vec<(f64, f64)> = std::iter::once((0.0, r.start.quality))
        .chain(r.windows.iter().map(|w| (w.end_row as f64, w.quality)))
        .collect();
    let online: Vec<(f64, f64)> = r
        .windows
        .iter()
        .map(|w| (w.end_row as f64, w.online_quality))
        .collect();
    let explore: Vec<(f64, f64)> = r
        .windows
        .iter()
        .map(|w| (w.end_row as f64, w.explore_share))
        .collect();
    let mut levels = vec![
        ("best single".to_string(), r.best_single.quality),
        ("oracle".to_string(), r.oracle.quality),
    ];
    if let Some(c) = &r.ceiling {
        levels.push(("ceiling (offline)".to_string(), c.quality));
    }
    eval::svg::lines(
        title,
        "rows replayed",
        "quality",
        &[
            ("held-out quality".to_string(), held),
            ("online quality".to_string(), online),
        ],
        &levels,
        Some(("explore share (right axis)".to_string(), explore)),
    )
}

/// Parses `off`, `thompson` or `ucb`.
pub fn parse_policy(s: &str) -> Result<ExplorePolicy, String> {
    match s {
        "off" => Ok(ExplorePolicy::Off),
        "thompson" => Ok(ExplorePolicy::Thompson),
        "ucb" => Ok(ExplorePolicy::Ucb),
        _ => Err(format!("`{s}`: expected off, thompson or ucb")),
    }
}

/// Writes the plot.
pub fn write_plot(path: &Path, title: &str, r: &Report) -> anyhow::Result<()> {
    std::fs::write(path, plot(title, r)).with_context(|| format!("writing {}", path.display()))
}
