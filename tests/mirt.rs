//! MIRT training, checkpoints and outcome-data errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;

use dualrouter_ml::mirt::data::Dataset;
use dualrouter_ml::mirt::model::{train, Rng, TrainConfig};
use dualrouter_ml::mirt::{
    Mirt, MirtError, ModelInfo, TrainingSummary, CHECKPOINT_FORMAT, CHECKPOINT_VERSION,
};

/// Prompts in two clusters; model 0 weak everywhere, model 1 good on cluster A only, model 2 strong everywhere.
type Synthetic = (Vec<Vec<f32>>, Vec<Vec<Option<f32>>>, Vec<bool>);

fn synthetic(n: usize, seed: u64) -> Synthetic {
    let mut rng = Rng::new(seed);
    let d = 12;
    let (mut xs, mut ys, mut cluster) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let a = i % 2 == 0;
        let mut x: Vec<f32> = (0..d).map(|_| (rng.normal() * 0.3) as f32).collect();
        x[0] += if a { 1.0 } else { -1.0 };
        x.push(1.0); // bias
        let logits: [f64; 3] = [-1.5, if a { 1.5 } else { -1.0 }, 1.0];
        let y = logits
            .iter()
            .map(|l| {
                let p = 1.0 / (1.0 + (-l).exp());
                Some(if rng.uniform() < p { 1.0 } else { 0.0 })
            })
            .collect();
        xs.push(x);
        ys.push(y);
        cluster.push(a);
    }
    (xs, ys, cluster)
}

fn mean_p(
    w: &dualrouter_ml::mirt::Weights,
    xs: &[Vec<f32>],
    pick: impl Fn(usize) -> bool,
) -> Vec<f64> {
    let mut sum = vec![0.0; w.theta.len()];
    let mut n = 0.0;
    for (i, x) in xs.iter().enumerate() {
        if pick(i) {
            for (s, p) in sum.iter_mut().zip(w.predict(x)) {
                *s += f64::from(p);
            }
            n += 1.0;
        }
    }
    sum.iter().map(|s| s / n).collect()
}

#[test]
fn training_recovers_planted_abilities() {
    let (xs, ys, cluster) = synthetic(1200, 7);
    let cfg = TrainConfig {
        latent: 4,
        seed: 3,
        lr: 1e-2,
        max_epochs: 150,
        ..TrainConfig::default()
    };
    let (w, report) = train(&xs, &ys, 3, &cfg, |_, _| {});
    assert!(report.val_bce < 0.62, "val BCE {}", report.val_bce);
    let all = mean_p(&w, &xs, |_| true);
    assert!(
        all[0] < all[1] && all[0] < all[2],
        "overall order wrong: {all:?}"
    );
    let on_a = mean_p(&w, &xs, |i| cluster[i]);
    let on_b = mean_p(&w, &xs, |i| !cluster[i]);
    // planted: cluster A → 1 > 2 > 0; cluster B → 2 > 1 > 0 (and 1 ≈ 0 there)
    assert!(
        on_a[1] > on_a[2] && on_a[2] > on_a[0],
        "cluster A order wrong: {on_a:?}"
    );
    assert!(
        on_b[2] > on_b[1] && on_b[2] > on_b[0],
        "cluster B order wrong: {on_b:?}"
    );
    // true rates: model 1 on A σ(1.5)=0.82, on B σ(−1)=0.27
    assert!(
        (on_a[1] - 0.82).abs() < 0.08 && (on_b[1] - 0.27).abs() < 0.08,
        "{on_a:?} {on_b:?}"
    );
}

#[test]
fn training_is_reproducible() {
    let (xs, ys, _) = synthetic(300, 1);
    let cfg = TrainConfig {
        latent: 3,
        max_epochs: 10,
        ..TrainConfig::default()
    };
    let (a, _) = train(&xs, &ys, 3, &cfg, |_, _| {});
    let (b, _) = train(&xs, &ys, 3, &cfg, |_, _| {});
    assert_eq!(a, b);
    let (c, _) = train(&xs, &ys, 3, &TrainConfig { seed: 99, ..cfg }, |_, _| {});
    assert_ne!(a, c);
}

fn tiny_checkpoint(encoder: &str) -> Mirt {
    let (xs, ys, _) = synthetic(100, 2);
    let cfg = TrainConfig {
        latent: 2,
        max_epochs: 3,
        ..TrainConfig::default()
    };
    let (w, _) = train(&xs, &ys, 3, &cfg, |_, _| {});
    Mirt {
        format: CHECKPOINT_FORMAT.into(),
        version: CHECKPOINT_VERSION,
        encoder: encoder.into(),
        embed_dim: 12,
        embedding_in_x: true,
        centroids: Vec::new(),
        features: vec!["bias".into()],
        cost_ref: 10.0,
        models: ["weak", "mid", "strong"]
            .iter()
            .zip([0.1, 1.0, 10.0])
            .map(|(n, p)| ModelInfo {
                name: n.to_string(),
                price: p,
                cold: false,
                tier: Some(if p > 5.0 {
                    "premium".into()
                } else {
                    "standard".into()
                }),
                outcomes: 100,
            })
            .collect(),
        weights: w,
        ensemble: Vec::new(),
        training: TrainingSummary::default(),
        eval: serde_json::Value::Null,
    }
}

#[test]
fn checkpoint_round_trip_and_encoder_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.json");
    let m = tiny_checkpoint("enc-A");
    m.save(&path).unwrap();
    assert_eq!(Mirt::load(&path, Some("enc-A")).unwrap(), m);
    let err = Mirt::load(&path, Some("enc-B")).unwrap_err();
    assert!(matches!(err, MirtError::EncoderMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("enc-A") && msg.contains("enc-B"), "{msg}");
    // a damaged file is an error, not a panic
    std::fs::write(&path, r#"{"format":"dualrouter-mirt","version":99}"#).unwrap();
    assert!(Mirt::load(&path, None)
        .unwrap_err()
        .to_string()
        .contains("version 99"));
}

#[test]
fn cold_model_gets_prior_from_its_tier() {
    let mut m = tiny_checkpoint("enc");
    let i = m
        .add_cold_model("new-premium", 12.0, Some("premium"))
        .unwrap();
    assert!(m.models[i].cold);
    assert_eq!(m.weights.theta[i], m.weights.theta[2]);
    let j = m.add_cold_model("new-cheap", 0.2, None).unwrap();
    // nearest in log price: weak (0.1) and mid (1.0)
    let want: Vec<f32> = m.weights.theta[0]
        .iter()
        .zip(&m.weights.theta[1])
        .map(|(a, b)| (a + b) / 2.0)
        .collect();
    assert_eq!(m.weights.theta[j], want);
    assert!(m.add_cold_model("weak", 1.0, None).is_err());
}

fn write(dir: &tempfile::TempDir, name: &str, body: &str) -> std::path::PathBuf {
    let p = dir.path().join(name);
    let mut f = std::fs::File::create(&p).unwrap();
    f.write_all(body.as_bytes()).unwrap();
    p
}

fn load_err(dir: &tempfile::TempDir, name: &str, body: &str) -> String {
    let p = write(dir, name, body);
    let e = Dataset::load(&p).unwrap_err().to_string();
    assert!(e.contains(name), "error does not name the file: {e}");
    e
}

#[test]
fn bad_data_errors_name_file_and_row() {
    let dir = tempfile::tempdir().unwrap();
    let e = load_err(&dir, "empty.csv", "");
    assert!(e.contains("empty"), "{e}");
    let e = load_err(&dir, "noprompt.csv", "id,a,b\n1,1,0\n");
    assert!(e.contains("missing column") && e.contains("row 0"), "{e}");
    let e = load_err(&dir, "nan.csv", "prompt,a,b\nhi,1,0\nyo,NaN,1\n");
    assert!(e.contains("row 2") && e.contains("NaN"), "{e}");
    let e = load_err(&dir, "range.csv", "prompt,a,b\nhi,1,0\nyo,1,0\nza,2,1\n");
    assert!(e.contains("row 3"), "{e}");
    let e = load_err(&dir, "unknown.csv", "prompt,a,b,c|total_cost\nhi,1,0,0.1\n");
    assert!(e.contains("unknown model `c`"), "{e}");
    let e = load_err(&dir, "nocost.csv", "prompt,a,b,a|total_cost\nhi,1,0,0.1\n");
    assert!(e.contains("b|total_cost"), "{e}");
    let e = load_err(
        &dir,
        "long.jsonl",
        "{\"prompt\":\"p\",\"model\":\"a\",\"score\":1}\n{\"prompt\":\"p\",\"score\":0}\n",
    );
    assert!(e.contains("row 2") && e.contains("model"), "{e}");
    let e = load_err(&dir, "long.csv", "prompt,model,score\np,a,1\np,b,oops\n");
    assert!(e.contains("row 2") && e.contains("oops"), "{e}");
}

#[test]
fn wide_and_long_shapes_agree() {
    let dir = tempfile::tempdir().unwrap();
    let wide = write(
        &dir,
        "w.csv",
        "sample_id,split,prompt_text,a,b,a|total_cost,b|total_cost\n1,train,hello,1,0,0.5,2\n2,test,bye,,1,0.5,2\n",
    );
    let w = Dataset::load(&wide).unwrap();
    assert_eq!(w.models, vec!["a", "b"]);
    assert!(w.has_cost);
    assert_eq!(w.rows[1].scores, vec![None, Some(1.0)]);
    assert!(!w.rows[1].complete());
    assert_eq!(w.split(Some("test")).len(), 1);
    let long = write(
        &dir,
        "l.jsonl",
        "{\"prompt\":\"hello\",\"model\":\"a\",\"score\":1,\"cost\":0.5,\"split\":\"train\"}\n\
         {\"prompt\":\"hello\",\"model\":\"b\",\"score\":0,\"cost\":2,\"split\":\"train\"}\n\
         {\"prompt\":\"bye\",\"model\":\"b\",\"score\":1,\"cost\":2,\"split\":\"test\"}\n",
    );
    let l = Dataset::load(&long).unwrap();
    assert_eq!(l.models, w.models);
    assert_eq!(l.rows[0].scores, w.rows[0].scores);
    assert_eq!(l.rows[1].scores, w.rows[1].scores);
    assert_eq!(l.mean_prices(&l.split(Some("train"))), vec![0.5, 2.0]);
    // no cost columns → equal costs
    let nc = write(&dir, "nc.csv", "question,a,b\nq,1,0\n");
    let n = Dataset::load(&nc).unwrap();
    assert!(!n.has_cost);
    assert_eq!(n.rows[0].costs, vec![Some(1.0), Some(1.0)]);
}

#[test]
fn a_cluster_layout_learns_each_kind_of_prompt_and_round_trips() {
    use dualrouter_ml::mirt::clusters::kmeans;
    use dualrouter_ml::mirt::fit::{fit_xy, FitInput, FitOptions};
    use dualrouter_ml::mirt::XLayout;
    use std::collections::HashMap;

    let (xs, ys, cluster) = synthetic(1200, 11);
    // The embeddings: the synthetic x without its bias, the two kinds set clearly apart.
    let emb: Vec<Vec<f32>> = xs
        .iter()
        .map(|x| {
            let mut e = x[..12].to_vec();
            e[0] *= 3.0;
            e
        })
        .collect();
    let centroids = kmeans(&emb, 2, 1, 100);
    let features = vec!["bias".to_string()];
    let layout = XLayout {
        embedding: false,
        centroids: &centroids,
        features: &features,
    };
    let none = HashMap::new();
    let x_of = |e: &[f32]| {
        let mut x = Vec::new();
        layout.build(e, Some("a prompt"), &none, &mut x);
        x
    };
    let xs: Vec<Vec<f32>> = emb.iter().map(|e| x_of(e)).collect();
    // x: a one-hot of the nearest centroid, then the bias; one cluster per kind.
    assert!(xs
        .iter()
        .all(|x| x.len() == 3 && x[..2].iter().sum::<f32>() == 1.0 && x[2] == 1.0));
    // (A point whose noise crossed to the other side may sit in the other cluster.)
    let kind_of = |x: &[f32]| x[0] == 1.0;
    let agree = (0..xs.len())
        .filter(|&i| (kind_of(&xs[i]) == kind_of(&xs[0])) == (cluster[i] == cluster[0]))
        .count();
    assert!(
        agree * 100 >= xs.len() * 99,
        "the clusters are the planted kinds: {agree}"
    );
    let input = FitInput {
        models: vec!["weak".into(), "mid".into(), "strong".into()],
        prices: vec![0.1, 1.0, 10.0],
        xs,
        ys,
        features: features.clone(),
        embedding_in_x: false,
        centroids: centroids.clone(),
        data: "synthetic".into(),
        split: None,
        command: "test".into(),
    };
    let mut args = FitOptions::defaults(&dualrouter_ml::encoder::EncoderConfig::default());
    args.latent = 4;
    args.ensemble = 1;
    let m = fit_xy(input, "enc", 12, &args, &mut |_, _, _| {}).unwrap();
    assert!(!m.embedding_in_x);
    assert_eq!(m.dim_x(), 3);
    let mean = |a: bool| {
        let mut sum = [0f64; 3];
        let mut n = 0.0;
        for (e, c) in emb.iter().zip(&cluster) {
            if *c == a {
                let mut x = Vec::new();
                m.features_into(e, "a prompt", &none, &mut x);
                for (s, p) in sum.iter_mut().zip(m.predict(&x)) {
                    *s += f64::from(p);
                }
                n += 1.0;
            }
        }
        sum.map(|s| s / n)
    };
    // Planted: weak σ(−1.5) everywhere, mid σ(1.5) on A and σ(−1) on B, strong σ(1) everywhere.
    let (a, b) = (mean(true), mean(false));
    assert!(a[1] > a[2] && a[2] > a[0], "kind A: {a:?}");
    assert!(
        b[2] > b[1] && b[1] > b[0] - 0.1 && b[2] > b[0],
        "kind B: {b:?}"
    );
    assert!(a[1] - b[1] > 0.3, "mid differs by kind: {a:?} {b:?}");

    // The layout is saved with the checkpoint, and checked when loaded.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.json");
    m.save(&path).unwrap();
    let back = Mirt::load(&path, Some("enc")).unwrap();
    assert_eq!(back, m);
    let mut bad: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut short = m.clone();
    short.centroids = vec![vec![1.0; 5]; 2];
    bad["centroids"] = serde_json::to_value(&short).unwrap()["centroids"].clone();
    std::fs::write(&path, bad.to_string()).unwrap();
    let err = Mirt::load(&path, None).unwrap_err().to_string();
    assert!(err.contains("centroids"), "{err}");
}

/// A wide CSV of a planted world: `cheap` gets only the short questions right, `mid` those and
/// every other long task, `strong` everything, at 1 : 10 : 100 the price.
fn planted_world_csv() -> String {
    let mut csv = String::from(
        "prompt,cheap,mid,strong,cheap|total_cost,mid|total_cost,strong|total_cost,split\n",
    );
    let names = ["Ada", "Linus", "Grace", "Ken", "Barbara", "Dennis"];
    for i in 0..150 {
        let split = if i % 5 == 0 { "test" } else { "train" };
        let n = names[i % names.len()];
        csv.push_str(&format!(
            "\"say hello to {n}, number {i}\",1,1,1,0.0001,0.001,0.01,{split}\n"
        ));
        csv.push_str(&format!(
            "\"prove that the sequence {i} n + 1 contains infinitely many primes, with every step of the analytic argument written out rigorously\",0,{},1,0.0001,0.001,0.01,{split}\n",
            i % 2
        ));
    }
    csv
}

fn run_eval(args: &[&str]) -> (bool, String, String) {
    run_static("eval", args)
}

/// `dualrouter <command> ARGS` with the static encoder and one ensemble member: (success,
/// stdout, stderr).
fn run_static(command: &str, args: &[&str]) -> (bool, String, String) {
    let models = concat!(env!("CARGO_MANIFEST_DIR"), "/models");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dualrouter"))
        .arg(command)
        .args(args)
        .args([
            "--encoder",
            "static",
            "--models-dir",
            models,
            "--ensemble",
            "1",
            "--quiet",
        ])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `dualrouter eval` end to end: every router in the JSON shape the issue names, MIRT learning
/// the planted world (above random mixing, under the oracle), the exact sweep's hull never
/// under a grid's, the plot written, a bad `--sweep` refused, and a checkpoint that knows none of
/// the file's models refused.
#[test]
fn eval_reports_every_router_and_plots_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = write(&dir, "world.csv", &planted_world_csv());
    let plot = dir.path().join("curves.svg");
    let (ok, stdout, stderr) = run_eval(&[
        "--data",
        data.to_str().unwrap(),
        "--json",
        "--plot",
        plot.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let exact: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let routers = exact["routers"].as_object().unwrap();
    let names: Vec<&str> = routers.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "mirt",
            "knn",
            "logistic",
            "random_mixing",
            "best_single",
            "oracle"
        ],
        "{stdout}"
    );
    for (name, m) in routers {
        for key in [
            "aiq_linear",
            "aiq_log",
            "savings_at_parity",
            "max_quality",
            "max_quality_cost",
        ] {
            assert!(m.get(key).is_some(), "{name} lacks {key}: {m}");
        }
    }
    let aiq = |v: &serde_json::Value, r: &str| v["routers"][r]["aiq_linear"].as_f64().unwrap();
    assert!(
        aiq(&exact, "mirt") > aiq(&exact, "random_mixing") + 0.02,
        "{stdout}"
    );
    assert!(aiq(&exact, "oracle") >= aiq(&exact, "mirt"), "{stdout}");
    // the per-model logistic regression learns the same planted world from the same embeddings
    assert!(
        aiq(&exact, "logistic") > aiq(&exact, "random_mixing") + 0.02,
        "{stdout}"
    );
    assert!(aiq(&exact, "oracle") >= aiq(&exact, "logistic"), "{stdout}");
    // The oracle sends each short question to `cheap` and each long task to the cheapest
    // model that gets it right: all correct.
    assert_eq!(exact["routers"]["oracle"]["max_quality"], 1.0, "{stdout}");
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("oracle") && svg.contains("strong"));

    let (ok, stdout, stderr) =
        run_eval(&["--data", data.to_str().unwrap(), "--json", "--sweep", "8"]);
    assert!(ok, "{stderr}");
    let grid: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    for r in ["mirt", "knn", "logistic", "oracle"] {
        assert!(
            aiq(&exact, r) >= aiq(&grid, r) - 1e-12,
            "{r}: {exact} vs {grid}"
        );
    }

    let (ok, _, stderr) = run_eval(&["--data", data.to_str().unwrap(), "--sweep", "1"]);
    assert!(!ok);
    assert!(stderr.contains("at least 2"), "{stderr}");

    // A checkpoint that knows none of the file's models (the shipped static one: routerbench's).
    let ckpt = concat!(env!("CARGO_MANIFEST_DIR"), "/checkpoints/static.json");
    let (ok, _, stderr) = run_eval(&["--data", data.to_str().unwrap(), "--checkpoint", ckpt]);
    assert!(!ok);
    assert!(
        stderr.contains("world.csv: unknown models: none of the file's models"),
        "{stderr}"
    );
}

/// `train` on a file with a `test` split scores the new checkpoint there and keeps the metrics in
/// its `eval`: the same figures `eval --checkpoint` prints for it. `--no-eval` leaves `eval` null.
#[test]
fn train_keeps_the_test_split_metrics_in_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let data = write(&dir, "world.csv", &planted_world_csv());
    let ckpt = dir.path().join("world.json");
    // `train` with `extra` options: the checkpoint it wrote, and its stderr
    let train = |extra: &[&str]| {
        let mut args = vec![
            "--data",
            data.to_str().unwrap(),
            "--out",
            ckpt.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let (ok, _, stderr) = run_static("train", &args);
        assert!(ok, "{stderr}");
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&ckpt).unwrap()).unwrap();
        (m, stderr)
    };
    let (m, stderr) = train(&[]);
    assert!(stderr.contains("test split (60 rows): AIQ "), "{stderr}");
    let kept = &m["eval"];
    assert_eq!(kept["split"], "test", "{kept}");
    assert_eq!(kept["rows"], 60, "{kept}");
    assert_eq!(kept["sweep"], "exact", "{kept}");

    let (ok, stdout, stderr) = run_eval(&[
        "--data",
        data.to_str().unwrap(),
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let printed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(kept["routers"], printed["routers"]);
    let aiq = |r: &str| kept["routers"][r]["aiq_linear"].as_f64().unwrap();
    assert!(aiq("mirt") > aiq("random_mixing") + 0.02, "{kept}");

    let (bare, _) = train(&["--no-eval"]);
    assert!(bare["eval"].is_null(), "{}", bare["eval"]);
}
