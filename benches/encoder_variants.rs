//! Encoder variants side by side: `cargo bench --bench encoder_variants` (needs scripts/fetch-models.sh).
//!
//! Each variant (an ONNX file and ONNX Runtime session settings) embeds the same prompts in turn, interleaved, so a
//! busy machine slows them alike; the figures to compare are the ratios to the first row. Prompts: the 26-token
//! prompt of `mirt_scoring` (with a variant number), and HWU64 utterances if `../shared/data/classify/hwu64.csv`
//! is there. Extra ONNX files to compare: `ENCODER_VARIANTS=/path/a.onnx:/path/b.onnx`.
//! `BENCH_PACE_MS=50` sleeps before each prompt (caches go cold as in a proxy at 20 requests a second).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::pct;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dualrouter_ml::encoder::bert_onnx::Precision;
use dualrouter_ml::encoder::{EncoderConfig, MiniLm, SessionTuning};

fn hwu64(n: usize) -> Vec<String> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/classify/hwu64.csv");
    let Ok(mut r) = csv::Reader::from_path(&p) else {
        return Vec::new();
    };
    let col = r
        .headers()
        .ok()
        .and_then(|h| h.iter().position(|c| c == "text"));
    let Some(col) = col else { return Vec::new() };
    let rows: Vec<String> = r
        .records()
        .filter_map(|x| x.ok().map(|x| x[col].to_string()))
        .collect();
    let step = (rows.len() / n.max(1)).max(1);
    rows.into_iter().step_by(step).take(n).collect()
}

fn main() {
    println!("{}", common::machine());
    let models = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models");
    let cfg = EncoderConfig {
        models_dir: models.clone(),
        ..EncoderConfig::default()
    };
    let weights = models.join("minilm/model.safetensors");
    // as the encoder loads them (`MiniLm::load`)
    let int8 = SessionTuning {
        precision: Precision::Int8,
        memory_pattern: true,
        ..SessionTuning::default()
    };
    let mut variants: Vec<(String, PathBuf, SessionTuning)> = vec![
        (
            "fp32, default".into(),
            weights.clone(),
            SessionTuning::default(),
        ),
        ("int8 (dynamic), default".into(), weights.clone(), int8),
        (
            "fp32, basic opt".into(),
            weights.clone(),
            SessionTuning {
                opt_level: 1,
                ..SessionTuning::default()
            },
        ),
        (
            "fp32, mem pattern on".into(),
            weights.clone(),
            SessionTuning {
                memory_pattern: true,
                ..SessionTuning::default()
            },
        ),
        (
            "int8, no spinning".into(),
            weights.clone(),
            SessionTuning {
                spinning: false,
                ..int8
            },
        ),
        (
            "int8, basic opt".into(),
            weights.clone(),
            SessionTuning {
                opt_level: 1,
                ..int8
            },
        ),
        (
            "int8, mem pattern off".into(),
            weights.clone(),
            SessionTuning {
                memory_pattern: false,
                ..int8
            },
        ),
    ];
    if let Ok(extra) = std::env::var("ENCODER_VARIANTS") {
        for p in extra.split(':').filter(|s| !s.is_empty()) {
            let name = Path::new(p)
                .file_name()
                .map_or(p.to_string(), |f| f.to_string_lossy().into_owned());
            variants.push((name, PathBuf::from(p), SessionTuning::default()));
        }
    }
    // ENCODER_ONLY=a,b keeps the first variant (the reference) and those whose name contains a or b.
    if let Ok(only) = std::env::var("ENCODER_ONLY") {
        let keys: Vec<&str> = only.split(',').filter(|k| !k.is_empty()).collect();
        let mut i = 0;
        variants.retain(|(n, _, _)| {
            i += 1;
            i == 1 || keys.iter().any(|k| n.contains(k))
        });
    }
    let loaded: Vec<(String, MiniLm)> = variants
        .into_iter()
        .filter_map(|(n, p, t)| match MiniLm::load_file(&models, &p, &cfg, t) {
            Ok(m) => Some((n, m)),
            Err(e) => {
                println!("{n}: skipped ({e})");
                None
            }
        })
        .collect();
    if loaded.is_empty() {
        return;
    }
    let prompt = "Write a function in Rust that parses an ISO-8601 date and returns the weekday; explain edge cases.";
    let long: Vec<String> = (0..200)
        .map(|i| format!("{prompt} (variant {i})"))
        .collect();
    let short = hwu64(300);
    // BENCH_PACE_MS=50 sleeps that long before each prompt, as a proxy at 20 requests a second
    // would (caches go cold in between); default 0, back to back.
    let pace = Duration::from_millis(
        std::env::var("BENCH_PACE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    );
    let ref_model = &loaded[0].1;
    for (set, texts) in [("26-token prompt", &long), ("HWU64 utterances", &short)] {
        if texts.is_empty() {
            continue;
        }
        let toks: Vec<usize> = texts
            .iter()
            .map(|t| ref_model.token_ids(t).map_or(0, |v| v.len()))
            .collect();
        println!(
            "\n{set}: {} prompts, median {} tokens (with [CLS]/[SEP])",
            texts.len(),
            pct(&toks.iter().map(|&x| x as f64).collect::<Vec<_>>(), 0.5)
        );
        let mut tok_ms = Vec::new();
        let mut ms: Vec<Vec<f64>> = vec![Vec::new(); loaded.len()];
        let mut cos: Vec<f64> = vec![1.0; loaded.len()];
        for (i, t) in texts.iter().enumerate() {
            std::thread::sleep(pace);
            let s = Instant::now();
            let _ = ref_model.token_ids(t);
            tok_ms.push(s.elapsed().as_secs_f64() * 1e3);
            let mut out: Vec<Vec<f32>> = vec![Vec::new(); loaded.len()];
            // rotate the order so no variant always runs first
            for k in 0..loaded.len() {
                let v = (k + i) % loaded.len();
                let s = Instant::now();
                let mut e = loaded[v].1.embed_batch(&[t.as_str()]).expect("embed");
                ms[v].push(s.elapsed().as_secs_f64() * 1e3);
                out[v] = e.swap_remove(0);
            }
            // every variant against the first on every prompt (embeddings are unit vectors)
            for (v, e) in out.iter().enumerate().skip(1) {
                let c: f32 = out[0].iter().zip(e).map(|(a, b)| a * b).sum();
                cos[v] = cos[v].min(f64::from(c));
            }
        }
        println!("  tokenizer alone: p50 {:.3} ms", pct(&tok_ms, 0.5));
        let p0 = pct(&ms[0], 0.5);
        for ((n, _), (v, c)) in loaded.iter().zip(ms.iter().zip(&cos)) {
            println!(
                "  {n:<34} p50 {:>6.2} ms  p90 {:>6.2} ms  ratio {:>5.2}  min cosine vs first {:.5}",
                pct(v, 0.5),
                pct(v, 0.9),
                pct(v, 0.5) / p0,
                c
            );
        }
    }
}
