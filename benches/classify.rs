//! Classification latency: `cargo bench --bench classify` (needs scripts/fetch-models.sh and
//! `../shared/data/classify/hwu64.csv`).
//!
//! What a request pays to be classified by the embedded classifier: one uncached encoder pass over the utterance
//! plus the softmax head over HWU64's 64 routes. The head is trained on 12 utterances per route of folds 2–10
//! (accuracy is `dualrouter eval-classifier`'s job, not this bench's); the timed utterances are fold 1's. The
//! encoders run interleaved, one utterance each in turn, so a busy machine slows them alike: compare the ratios.
//! One thread (ONNX Runtime intra-op threads = 1), release build.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::pct;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use dualrouter_ml::encoder::{Encoder, EncoderConfig, EncoderKind};
use dualrouter_routing::classify::embedded::{EmbeddedClassifier, HeadTraining};
use dualrouter_routing::classify::RouteSpec;

const PER_ROUTE: usize = 12;
const TIMED: usize = 400;

fn main() {
    println!("{}", common::machine());
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let data = root.join("../shared/data/classify/hwu64.csv");
    let Ok(mut reader) = csv::Reader::from_path(&data) else {
        println!("skipped: {} not found", data.display());
        return;
    };
    let headers = reader.headers().expect("csv header").clone();
    let col = |n: &str| headers.iter().position(|h| h == n).expect(n);
    let (text, scenario, intent, fold) = (col("text"), col("scenario"), col("intent"), col("fold"));
    let mut routes: Vec<RouteSpec> = Vec::new();
    let mut by_name: HashMap<String, usize> = HashMap::new();
    let mut timed: Vec<String> = Vec::new();
    let mut first_fold: Option<String> = None;
    for rec in reader.records().map(|r| r.expect("csv row")) {
        let f = rec[fold].to_string();
        let ff = first_fold.get_or_insert_with(|| f.clone()).clone();
        if f == ff {
            if timed.len() < TIMED {
                timed.push(rec[text].to_string());
            }
            continue;
        }
        let name = format!("{}/{}", &rec[scenario], &rec[intent]);
        let i = *by_name.entry(name.clone()).or_insert_with(|| {
            routes.push(RouteSpec::new(&name, ""));
            routes.len() - 1
        });
        if routes[i].examples.len() < PER_ROUTE {
            routes[i].examples.push(rec[text].to_string());
        }
    }
    let models = root.join("models");
    let mut setups = Vec::new();
    for (kind, name) in [
        (EncoderKind::MinilmInt8, "MiniLM int8 (default)"),
        (EncoderKind::Minilm, "MiniLM fp32"),
        (EncoderKind::Static, "static potion-base-8M"),
    ] {
        let cfg = EncoderConfig {
            kind,
            models_dir: models.clone(),
            cache_size: 0, // time the encoder pass, not the cache
            ..EncoderConfig::default()
        };
        let enc = match Encoder::load(&cfg) {
            Ok(e) => Arc::new(e),
            Err(e) => {
                println!("{name}: skipped ({e})");
                continue;
            }
        };
        let e2 = enc.clone();
        let clf = EmbeddedClassifier::train(
            routes.clone(),
            move |t: &[&str]| e2.embed_batch(t),
            0.0,
            HeadTraining::default(),
        )
        .expect("train head");
        setups.push((name, enc, clf, Vec::new()));
    }
    let tokens = timed
        .iter()
        .map(|t| t.split_whitespace().count() as f64)
        .collect::<Vec<_>>();
    println!(
        "HWU64: {} routes, head trained on {} utterances each; timing {} fold-1 utterances (median {} words), one thread",
        routes.len(),
        PER_ROUTE,
        timed.len(),
        pct(&tokens, 0.5)
    );
    let mut sink = 0usize;
    for (i, t) in timed.iter().enumerate() {
        let n = setups.len();
        for k in 0..n {
            let s = &mut setups[(k + i) % n];
            let start = Instant::now();
            let emb = s.1.embed(t).expect("embed");
            let route = s.2.classify(&emb);
            s.3.push(start.elapsed().as_secs_f64() * 1e3);
            sink += route.map_or(0, |r| r.action.len());
        }
    }
    let base = setups.first().map(|s| pct(&s.3, 0.5)).unwrap_or(1.0);
    for (name, _, _, ms) in &setups {
        println!(
            "{name:<24} encoder pass + head: p50 {:>7.3} ms  p90 {:>7.3} ms  p99 {:>7.3} ms  ratio to first {:.2}",
            pct(ms, 0.5),
            pct(ms, 0.9),
            pct(ms, 0.99),
            pct(ms, 0.5) / base
        );
    }
    if sink == usize::MAX {
        println!("{sink}");
    }
}
