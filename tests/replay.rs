//! `dualrouter replay` on a planted world: three models whose success rates per kind of prompt
//! are known, a start checkpoint that knows the two cheaper ones, the best model on maths cold
//! and dear. From bandit feedback alone (only the chosen model's outcome) the router must learn
//! that maths goes to the dear model, and it can only do so if it ever tries it: with
//! exploration it does, without it never does. Exploration stays inside its caps.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{repo_root, run_cli};
use serde_json::Value;

const MODELS: [&str; 3] = ["cheap", "mid", "dear"];
const PRICES: [f64; 3] = [0.001, 0.0015, 0.003];

/// Planted P(success): per kind of prompt (maths, poetry, code), per model.
const PLANTED: [[f64; 3]; 3] = [[0.15, 0.4, 0.95], [0.9, 0.5, 0.55], [0.2, 0.9, 0.5]];

fn prompt(kind: usize, i: usize) -> String {
    let n = [
        "seven", "twelve", "nine", "forty", "three", "eighty", "five", "sixty",
    ];
    let w = [
        "autumn",
        "the sea",
        "a lost key",
        "winter light",
        "old trains",
        "rain",
        "a lighthouse",
        "morning coffee",
    ];
    let l = ["Python", "Rust", "JavaScript", "Go", "C", "Java"];
    match kind {
        0 => format!(
            "Solve for x: {} times x plus {} equals {} (show the algebra)",
            n[i % 8],
            n[(i / 8) % 8],
            n[(i / 3) % 8]
        ),
        1 => format!(
            "Write a short rhyming poem about {} in the voice of {}",
            w[i % 8],
            w[(i / 8) % 8]
        ),
        _ => format!(
            "Write a {} function that sorts a list of {} records by key, with tests",
            l[i % 6],
            n[(i / 6) % 8]
        ),
    }
}

/// SplitMix64, so the planted outcomes are the same on every run.
struct Rng(u64);
impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("replay-planted");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A wide outcome file of `n` rows of each split (kinds in turn), outcomes drawn from PLANTED;
/// `models`: which of MODELS get a column.
fn write_file(path: &Path, train: usize, test: usize, models: &[usize], seed: u64) {
    let mut rng = Rng(seed);
    let mut csv = String::from("prompt");
    for &m in models {
        csv.push(',');
        csv.push_str(MODELS[m]);
    }
    for &m in models {
        csv.push_str(&format!(",{}|total_cost", MODELS[m]));
    }
    csv.push_str(",split\n");
    for i in 0..train + test {
        let kind = i % 3;
        csv.push_str(&format!("\"{}\"", prompt(kind, i / 3)));
        for &m in models {
            let y = u8::from(rng.uniform() < PLANTED[kind][m]);
            csv.push_str(&format!(",{y}"));
        }
        for &m in models {
            csv.push_str(&format!(",{}", PRICES[m]));
        }
        csv.push_str(if i < train { ",train\n" } else { ",test\n" });
    }
    std::fs::write(path, csv).unwrap();
}

/// The start checkpoint (once per test binary): `cheap` and `mid` only, static encoder.
fn start_checkpoint() -> &'static PathBuf {
    static CKPT: OnceLock<PathBuf> = OnceLock::new();
    CKPT.get_or_init(|| {
        let d = dir();
        let data = d.join("start.csv");
        write_file(&data, 240, 0, &[0, 1], 1);
        let out = d.join("start.json");
        let models = repo_root().join("models");
        let (ok, log) = run_cli(&[
            "train",
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--encoder",
            "static",
            "--models-dir",
            models.to_str().unwrap(),
            "--latent",
            "6",
            "--ensemble",
            "1",
            "--max-epochs",
            "60",
            "--quiet",
        ]);
        assert!(ok, "training the start checkpoint failed:\n{log}");
        out
    })
}

fn traffic_file() -> &'static PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let p = dir().join("traffic.csv");
        write_file(&p, 900, 300, &[0, 1, 2], 2);
        p
    })
}

fn replay(extra: &[&str]) -> Value {
    let models = repo_root().join("models");
    let mut args = vec![
        "replay",
        "--data",
        traffic_file().to_str().unwrap(),
        "--checkpoint",
        start_checkpoint().to_str().unwrap(),
        "--encoder",
        "static",
        "--models-dir",
        models.to_str().unwrap(),
        "--refit-every",
        "150",
        "--min-outcomes",
        "10",
        "--cost-weight",
        "0.1",
        "--no-ceiling",
        "--json",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    let (ok, out) = run_cli(&args);
    assert!(ok, "replay failed:\n{out}");
    let json = &out[out.find('{').unwrap()..];
    let mut de = serde_json::Deserializer::from_str(json);
    serde::Deserialize::deserialize(&mut de).unwrap()
}

fn q(v: &Value) -> f64 {
    v["quality"].as_f64().unwrap()
}

/// Rows explored over the whole replay, from the windows' shares.
fn explored_rows(r: &Value) -> f64 {
    let mut prev = 0.0;
    let mut sum = 0.0;
    for w in r["windows"].as_array().unwrap() {
        let end = w["end_row"].as_f64().unwrap();
        sum += w["explore_share"].as_f64().unwrap() * (end - prev);
        prev = end;
    }
    sum
}

#[test]
fn learns_the_planted_order_only_with_exploration() {
    let on = replay(&[
        "--explore",
        "thompson",
        "--explore-traffic-share",
        "0.2",
        "--explore-spend-share",
        "0.4",
    ]);
    let off = replay(&["--explore", "off"]);
    // The JSON shape the issue fixes.
    for k in ["start", "final", "best_single", "oracle"] {
        assert!(
            on[k]["quality"].is_f64() && on[k]["cost"].is_f64(),
            "{k}: {on}"
        );
    }
    assert!(on["ceiling"].is_null());
    let w = &on["windows"][0];
    for k in [
        "end_row",
        "quality",
        "cost",
        "online_quality",
        "online_cost",
        "explore_share",
    ] {
        assert!(w[k].is_number(), "{k}: {w}");
    }
    assert_eq!(on["windows"].as_array().unwrap().len(), 6);
    assert_eq!(on["start"], off["start"]);

    // Planted optimum: maths → dear, poetry → cheap, code → mid: (0.95 + 0.9 + 0.9) / 3 ≈ 0.917.
    // Without ever trying dear, maths stays with mid: at best (0.4 + 0.9 + 0.9) / 3 ≈ 0.733.
    assert!(
        q(&on["final"]) > 0.85,
        "with exploration the router should learn maths → dear: {on}"
    );
    assert!(
        q(&off["final"]) < 0.78,
        "without exploration dear is never tried, so it cannot be learned: {off}"
    );
    assert!(explored_rows(&on) > 0.0);
    assert_eq!(explored_rows(&off), 0.0);
}

#[test]
fn exploration_stays_within_its_caps() {
    let models = repo_root().join("models");
    for (traffic, spend) in [(0.05, 1.0), (1.0, 0.05)] {
        let (t, s) = (traffic.to_string(), spend.to_string());
        let (ok, out) = run_cli(&[
            "replay",
            "--data",
            traffic_file().to_str().unwrap(),
            "--checkpoint",
            start_checkpoint().to_str().unwrap(),
            "--encoder",
            "static",
            "--models-dir",
            models.to_str().unwrap(),
            "--refit-every",
            "150",
            "--min-outcomes",
            "10",
            "--cost-weight",
            "0.1",
            "--no-ceiling",
            "--quiet",
            "--rows",
            "300",
            "--explore",
            "ucb",
            "--explore-scale",
            "4",
            "--explore-traffic-share",
            &t,
            "--explore-spend-share",
            &s,
        ]);
        assert!(ok, "{out}");
        // `300 rows of traffic, …; N rows explored (P% of the spend)`
        let line = out.lines().find(|l| l.contains("rows explored")).unwrap();
        let explored: f64 = line
            .rsplit("; ")
            .next()
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let share: f64 = line
            .rsplit('(')
            .next()
            .unwrap()
            .split('%')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(explored <= traffic * 300.0, "{line}");
        assert!(share <= spend * 100.0 + 0.05, "{line}");
        // Optimism about the cold model wants it on every row: the binding cap is used.
        if traffic < 1.0 {
            assert!(explored >= traffic * 300.0 - 1.0, "{line}");
        } else {
            assert!(share >= spend * 100.0 * 0.5, "{line}");
        }
    }
}
