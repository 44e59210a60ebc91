//! A two-model world for routing tests: `cheap` (OpenAI mock) answers easy prompts as well as
//! `strong` (Anthropic mock), and only `strong` gets hard ones right. A MIRT checkpoint is
//! trained on it once per test binary (static encoder), and helpers talk to the proxy.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{json, Value};

use super::{repo_root, run_cli, Proxy};
use dualrouter_testkit::Mock;

/// Prompts a cheap model answers as well as a strong one.
pub fn easy(i: usize) -> String {
    let names = [
        "Ada", "Linus", "Grace", "Ken", "Barbara", "Dennis", "Edsger", "Frances",
    ];
    let fruits = [
        "banana", "cherry", "lime", "plum", "grape", "lemon", "apple", "kiwi",
    ];
    let n = names[i % names.len()];
    let f = fruits[(i / 3) % fruits.len()];
    match i % 4 {
        0 => format!("say hello to {n}"),
        1 => format!("what colour is a {f}?"),
        2 => format!("what is {} plus {}?", i % 10, (i * 7) % 10),
        _ => format!("give me a synonym for happy, {n}"),
    }
}

/// Prompts only the strong model gets right.
pub fn hard(i: usize) -> String {
    let k = 3 + i % 17;
    match i % 4 {
        0 => format!(
            "prove that there are infinitely many primes of the form {k}n+1 using cyclotomic polynomials, and give every step of the number-theoretic argument rigorously"
        ),
        1 => format!(
            "derive the asymptotic expansion of the integral of exp(-{k} x^2) cos(t x) over the real line with explicit error bounds, then prove uniform convergence"
        ),
        2 => format!(
            "implement a lock-free concurrent skip list in Rust with epoch-based memory reclamation for {k} threads, prove linearizability of insert and delete"
        ),
        _ => format!(
            "design a Byzantine fault tolerant consensus protocol for {k} replicas, prove its safety and liveness under partial synchrony, and analyse message complexity"
        ),
    }
}

/// Trains (once per test binary) a checkpoint on the synthetic set with the static encoder.
pub fn checkpoint() -> &'static PathBuf {
    static CKPT: OnceLock<PathBuf> = OnceLock::new();
    CKPT.get_or_init(|| train("synthetic", 0, &[]))
}

/// The synthetic checkpoint with `--prompt-x clusters:8` (a one-hot of the prompt's nearest of
/// 8 centroids in x instead of the embedding: 4 easy and 4 hard prompt templates), trained with
/// options other than the defaults: latent dimension 6, 2 ensemble members.
pub fn clusters_checkpoint() -> &'static PathBuf {
    static CKPT: OnceLock<PathBuf> = OnceLock::new();
    CKPT.get_or_init(|| {
        train(
            "clusters",
            0,
            &[
                "--prompt-x",
                "clusters:8",
                "--latent",
                "6",
                "--ensemble",
                "2",
            ],
        )
    })
}

/// A checkpoint of a world where the cheap model gets hard prompts right too.
pub fn inverse_checkpoint() -> &'static PathBuf {
    static CKPT: OnceLock<PathBuf> = OnceLock::new();
    CKPT.get_or_init(|| train("inverse", 1, &[]))
}

fn train(name: &str, cheap_on_hard: u8, extra_args: &[&str]) -> PathBuf {
    // Under target/tmp, one folder per test binary, overwritten by its next run (a folder per
    // process in /tmp was never removed).
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("synthetic-{}", env!("CARGO_CRATE_NAME")));
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join(format!("{name}.csv"));
    let mut csv = String::from("prompt,cheap,strong,cheap|total_cost,strong|total_cost,split\n");
    for i in 0..120 {
        let split = if i % 5 == 0 { "test" } else { "train" };
        csv.push_str(&format!("\"{}\",1,1,0.0001,0.005,{split}\n", easy(i)));
        csv.push_str(&format!(
            "\"{}\",{cheap_on_hard},1,0.0001,0.005,{split}\n",
            hard(i)
        ));
    }
    std::fs::write(&data, csv).unwrap();
    let out = dir.join(format!("{name}.json"));
    let models = repo_root().join("models");
    let mut args = vec![
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--encoder",
        "static",
        "--models-dir",
        models.to_str().unwrap(),
        "--quiet",
    ];
    args.extend_from_slice(extra_args);
    if !extra_args.contains(&"--ensemble") {
        // One member: the planted difference needs no ensemble, and a debug build fits five
        // slowly (every test binary that routes pays for it).
        args.extend_from_slice(&["--ensemble", "1"]);
    }
    let (ok, log) = run_cli(&args);
    assert!(ok, "training the {name} checkpoint failed:\n{log}");
    out
}

/// A proxy whose `cheap` model lives on `cheap_mock` (OpenAI) and `strong` on `strong_mock`
/// (Anthropic), both in one policy, scored by the synthetic checkpoint.
pub fn config(cheap: &Mock, strong: &Mock, extra: &str) -> String {
    config_with(checkpoint(), cheap, strong, extra)
}

/// [`config`] scored by the checkpoint `ckpt`.
pub fn config_with(ckpt: &std::path::Path, cheap: &Mock, strong: &Mock, extra: &str) -> String {
    format!(
        r#"listen: 127.0.0.1:0
admin: {{ listen: 127.0.0.1:0 }}
limits: {{ first_byte_ms: 1500, idle_ms: 1500 }}
mirt:
  checkpoint: {ckpt}
  cost_weight: 0.3
  encoder: {{ kind: static, models_dir: {models} }}
providers:
  - name: cheapco
    kind: openai
    base_url: {cheap_url}
    models:
      - {{ id: cheap, upstream_id: echo, cost_per_mtok: {{ input: 0.1, output: 0.4 }} }}
  - name: strongco
    kind: anthropic
    base_url: {strong_url}
    models:
      - {{ id: strong, upstream_id: echo, cost_per_mtok: {{ input: 5, output: 15 }} }}
policies:
  - domain: general
    action: question
    description: "questions and small tasks of any kind"
    examples: ["say hello to Ada", "what colour is a plum?"]
    models: [strong, cheap]
  - domain: general
    action: research
    description: "proofs, derivations, algorithms and system design"
    examples: ["prove that there are infinitely many primes", "design a consensus protocol"]
    models: [strong, cheap]
{extra}"#,
        ckpt = ckpt.display(),
        models = repo_root().join("models").display(),
        cheap_url = cheap.base_url(),
        strong_url = strong.base_url(),
    )
}

pub struct Answer {
    pub status: u16,
    pub model: Option<String>,
    pub route: Option<String>,
    pub decision: Option<String>,
    pub retry_after: Option<String>,
    pub body: String,
}

pub async fn ask(p: &Proxy, path: &str, body: &Value, headers: &[(&str, &str)]) -> Answer {
    let mut req = reqwest::Client::new().post(p.url(path)).json(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let h = |n: &str| r.headers().get(n).map(|v| v.to_str().unwrap().to_string());
    let (model, route, decision, retry_after) = (
        h("x-dualrouter-model"),
        h("x-dualrouter-route"),
        h("x-dualrouter-decision-id"),
        h("retry-after"),
    );
    let status = r.status().as_u16();
    Answer {
        status,
        model,
        route,
        decision,
        retry_after,
        body: r.text().await.unwrap(),
    }
}

pub fn chat(prompt: &str, stream: bool) -> Value {
    json!({"model": "auto", "stream": stream, "messages": [{"role": "user", "content": prompt}]})
}

pub fn messages(prompt: &str) -> Value {
    json!({"model": "auto", "max_tokens": 64, "messages": [{"role": "user", "content": prompt}]})
}

/// The logged decision, once the log has written it.
pub async fn decision(p: &Proxy, id: &str) -> Value {
    let url = format!("{}/api/decisions/{id}", p.admin);
    for _ in 0..100 {
        let r = reqwest::get(&url).await.unwrap();
        if r.status() == 200 {
            return r.json().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("decision {id} never logged");
}

pub fn attempts(d: &Value) -> Vec<(String, String)> {
    d["details"]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["model"].as_str().unwrap().to_string(),
                a["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}
