//! What routing adds: the same small chat requests at a fixed rate, sent through the proxy with a
//! concrete model (pass-through) and with `model: "auto"` (classify + MIRT), interleaved in one
//! run so all see the same noise. Two proxies: one with the MiniLM encoder, one with static
//! embeddings. Every routed prompt is new (the encoder's cache never answers). Prints added
//! latency (routed − pass-through, p50/p99), the ratio, and each proxy's resident memory.
//!
//! Run: `cargo bench --bench routing_overhead` (or `make bench`).
//! Knobs (env): BENCH_RATES="20,50", BENCH_SECONDS=10.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod common;
use common::{demo_upstream, pct_ms, Kill};

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

/// Resident and peak resident memory of a process, MB.
fn rss_mb(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (kb("VmRSS:") / 1024.0, kb("VmHWM:") / 1024.0)
}

struct Proxy {
    child: Kill,
    addr: String,
    _dir: tempfile::TempDir,
}

fn start_proxy(bin: &str, up_port: u16, encoder: &str) -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bench.yaml");
    let root = env!("CARGO_MANIFEST_DIR");
    std::fs::write(
        &cfg,
        format!(
            r#"listen: 127.0.0.1:0
admin: {{ listen: 127.0.0.1:0 }}
database: sqlite://{db}
decision_log: {{ spool_dir: {spool} }}
mirt:
  checkpoint: {root}/checkpoints/{checkpoint}
  encoder: {{ kind: {encoder}, models_dir: {root}/models }}
providers:
  - name: demo
    kind: openai
    base_url: "http://127.0.0.1:{up_port}/v1"
    models:
      - {{ id: small, upstream_id: demo, cost_per_mtok: {{ input: 0.1, output: 0.4 }}, mirt_model: mistralai/mixtral-8x7b-chat }}
      - {{ id: large, upstream_id: demo, cost_per_mtok: {{ input: 2.5, output: 10 }}, mirt_model: gpt-4-1106-preview }}
      - {{ id: mid, upstream_id: demo, cost_per_mtok: {{ input: 0.5, output: 1.5 }}, mirt_model: gpt-3.5-turbo-1106 }}
policies:
  - {{ domain: programming, action: code-generation, description: "writing new code", examples: ["write a function that sorts a list"], models: [large, mid, small] }}
  - {{ domain: chat, action: small-talk, description: "greetings and casual conversation", examples: ["hello, how are you?"], models: [small, mid] }}
  - {{ domain: writing, action: summary, description: "summarising a text", examples: ["summarise this article"], models: [mid, small, large] }}
"#,
            db = dir.path().join("b.db").display(),
            checkpoint = if encoder == "static" { "static.json" } else { "default.json" },
            spool = dir.path().join("spool").display(),
        ),
    )
    .unwrap();
    let ready = dir.path().join("ready.json");
    let child = Kill(
        Command::new(bin)
            .args([
                "serve",
                "--config",
                cfg.to_str().unwrap(),
                "--ready-file",
                ready.to_str().unwrap(),
            ])
            .env("DUALROUTER_LOG", "warn")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let addr = loop {
        if let Ok(t) = std::fs::read_to_string(&ready) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&t) {
                break v["proxy"].as_str().unwrap().to_string();
            }
        }
        assert!(Instant::now() < deadline, "proxy ({encoder}) did not start");
        std::thread::sleep(Duration::from_millis(50));
    };
    Proxy {
        child,
        addr,
        _dir: dir,
    }
}

const TOPICS: [&str; 6] = [
    "write a python function that merges two sorted lists number",
    "hello there, how is your day going, friend number",
    "summarise the plot of the novel in three sentences, chapter",
    "fix the null pointer exception in my java service, ticket",
    "what is the capital of the country with code",
    "explain how a hash map handles collisions, lesson",
];

/// One series of the run: a URL, a model, and its latencies.
struct Series {
    name: &'static str,
    url: String,
    model: &'static str,
    lat: Mutex<Vec<Duration>>,
    errors: AtomicUsize,
}

async fn run_at(client: &reqwest::Client, series: &[Arc<Series>], rate: u64, secs: u64) {
    let total = rate * secs;
    let counter = Arc::new(AtomicUsize::new(0));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total as usize {
        tick.tick().await;
        let s = series[i % series.len()].clone();
        let client = client.clone();
        let n = counter.fetch_add(1, Ordering::Relaxed);
        tasks.push(tokio::spawn(async move {
            // A new prompt every time: the encoder's cache never answers.
            let prompt = format!("{} {n}", TOPICS[n % TOPICS.len()]);
            let body = serde_json::json!({"model": s.model, "messages": [{"role": "user", "content": prompt}]});
            let t = Instant::now();
            let ok = match client.post(&s.url).json(&body).send().await {
                Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                Err(_) => false,
            };
            if ok {
                s.lat.lock().await.push(t.elapsed());
            } else {
                s.errors.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

fn main() {
    let bin = env!("CARGO_BIN_EXE_dualrouter");
    let rates: Vec<u64> = std::env::var("BENCH_RATES")
        .unwrap_or_else(|_| "20,50".into())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    let secs: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);

    let (_upstream, up_port) = demo_upstream(bin);
    let minilm = start_proxy(bin, up_port, "minilm-int8");
    let fast = start_proxy(bin, up_port, "static");
    let rss_idle = [minilm.child.0.id(), fast.child.0.id()].map(rss_mb);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()
            .unwrap();
        let url = |p: &Proxy| format!("http://{}/v1/chat/completions", p.addr);
        println!(
            "dualrouter routing overhead: demo upstream, small non-streaming requests, {secs} s per rate; \
             pass-through (model: small), routed with MiniLM and routed with static embeddings (model: auto), interleaved"
        );
        println!(
            "{:>6} {:>22} {:>9} {:>9} {:>7} {:>11} {:>11} {:>9}",
            "rate", "series", "p50 ms", "p99 ms", "errors", "added p50", "added p99", "p50 ratio"
        );
        for rate in rates {
            let series: Vec<Arc<Series>> = [
                ("pass-through", url(&minilm), "small"),
                ("routed, MiniLM", url(&minilm), "auto"),
                ("routed, static", url(&fast), "auto"),
                ("pass-through (static)", url(&fast), "small"),
            ]
            .into_iter()
            .map(|(name, url, model)| {
                Arc::new(Series {
                    name,
                    url,
                    model,
                    lat: Mutex::new(Vec::new()),
                    errors: AtomicUsize::new(0),
                })
            })
            .collect();
            // Warm up (connections, ONNX Runtime's first runs), then measure.
            run_at(&client, &series, 20, 1).await;
            for s in &series {
                s.lat.lock().await.clear();
            }
            run_at(&client, &series, rate, secs).await;
            let mut base = Vec::new();
            for s in &series {
                let mut l = s.lat.lock().await.clone();
                l.sort();
                base.push(l);
            }
            for (i, s) in series.iter().enumerate() {
                let pass = if i == 2 || i == 3 { &base[3] } else { &base[0] };
                let (p50, p99) = (pct_ms(&base[i], 0.5), pct_ms(&base[i], 0.99));
                let (b50, b99) = (pct_ms(pass, 0.5), pct_ms(pass, 0.99));
                println!(
                    "{:>6} {:>22} {:>9.3} {:>9.3} {:>7} {:>9.3}ms {:>9.3}ms {:>9.2}",
                    rate,
                    s.name,
                    p50,
                    p99,
                    s.errors.load(Ordering::Relaxed),
                    p50 - b50,
                    p99 - b99,
                    p50 / b50
                );
            }
        }
    });
    let rss = [minilm.child.0.id(), fast.child.0.id()].map(rss_mb);
    for (name, (idle, (now, peak))) in ["MiniLM", "static"]
        .iter()
        .zip(rss_idle.iter().map(|r| r.0).zip(rss))
    {
        println!(
            "resident memory, proxy with {name}: {idle:.0} MB after start, {now:.0} MB after the run, peak {peak:.0} MB"
        );
    }
}
