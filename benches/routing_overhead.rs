//! What routing adds: the same small chat requests at a fixed rate, sent through the proxy with a
//! concrete model (pass-through) and with `model: "auto"` (classify + MIRT), interleaved in one
//! run so all see the same noise. Two proxies: one with the MiniLM encoder, one with static
//! embeddings. Every routed prompt is new (the encoder's cache never answers). Prints added
//! latency (routed − pass-through, p50/p99), the ratio, and each proxy's resident memory.
//!
//! Run: `cargo bench --bench routing_overhead` (or `make bench`).
//! Knobs (env): BENCH_RATES="20,50", BENCH_SECONDS=10, BENCH_MINILM_THREADS="1" (the MiniLM
//! proxy's `mirt.encoder.threads`, or "T:S" with `mirt.encoder.sessions` S too; a list such as
//! "1:1,1:2" starts one MiniLM proxy per value, all interleaved in the same run), BENCH_BASELINE_BIN=/path/to/an/older/dualrouter (adds a static
//! proxy run by that binary to the same run, and prints new ÷ baseline for the added latencies:
//! how a refactor is checked to cost nothing).
//!
//! Beside the proxies, the demo upstream is asked directly (same rate, interleaved), so each
//! proxy's pass-through and routed latency is also given as added over the upstream alone.
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
    admin: String,
    _dir: tempfile::TempDir,
}

fn start_proxy(
    bin: &str,
    up_port: u16,
    encoder: &str,
    threads: usize,
    sessions: Option<usize>,
) -> Proxy {
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
  encoder: {{ kind: {encoder}, models_dir: {root}/models, threads: {threads}{sessions} }}
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
            sessions = sessions.map(|s| format!(", sessions: {s}")).unwrap_or_default(),
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
    let (addr, admin) = loop {
        if let Ok(t) = std::fs::read_to_string(&ready) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&t) {
                break (
                    v["proxy"].as_str().unwrap().to_string(),
                    v["admin"].as_str().unwrap().to_string(),
                );
            }
        }
        assert!(Instant::now() < deadline, "proxy ({encoder}) did not start");
        std::thread::sleep(Duration::from_millis(50));
    };
    Proxy {
        child,
        addr,
        admin,
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
    name: String,
    url: String,
    model: &'static str,
    lat: Mutex<Vec<Duration>>,
    errors: AtomicUsize,
}

/// Numbers the prompts of the whole run (warm-ups and every rate), so none repeats and the
/// encoder's cache never answers.
static PROMPTS: AtomicUsize = AtomicUsize::new(0);

async fn run_at(client: &reqwest::Client, series: &[Arc<Series>], rate: u64, secs: u64) {
    let total = rate * secs;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total as usize {
        tick.tick().await;
        let s = series[i % series.len()].clone();
        let client = client.clone();
        let n = PROMPTS.fetch_add(1, Ordering::Relaxed);
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

/// Median of each step's latency (`embed`, `classify`, `score`) over the newest `n` routed
/// decisions of a proxy, as "embed 3.10, classify 0.01, score 0.10".
async fn step_medians(client: &reqwest::Client, admin: &str, n: u64) -> String {
    // The decision log writes in batches; give it a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let url = format!("http://{admin}/api/decisions?limit={}", n.clamp(1, 1000));
    let Ok(resp) = client.get(&url).send().await else {
        return "unavailable".into();
    };
    let v: serde_json::Value = resp.json().await.unwrap_or_default();
    let rows = v
        .get("decisions")
        .and_then(|d| d.as_array())
        .or_else(|| v.as_array())
        .cloned()
        .unwrap_or_default();
    ["embed", "classify", "score"]
        .iter()
        .map(|step| {
            let mut l: Vec<f64> = rows
                .iter()
                .filter_map(|d| d["latencies_ms"][step].as_f64())
                .collect();
            l.sort_by(f64::total_cmp);
            match l.get(l.len() / 2) {
                Some(m) => format!("{step} {m:.2}"),
                None => format!("{step} -"),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn main() {
    println!("{}", common::machine());
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

    // "T" or "T:S": intra-op threads, and sessions (default: one per worker thread).
    let threads: Vec<(usize, Option<usize>)> = std::env::var("BENCH_MINILM_THREADS")
        .unwrap_or_else(|_| "1".into())
        .split(',')
        .filter_map(|t| match t.trim().split_once(':') {
            Some((t, s)) => Some((t.parse().ok()?, Some(s.parse().ok()?))),
            None => Some((t.trim().parse().ok()?, None)),
        })
        .collect();

    let (_upstream, up_port) = demo_upstream(bin);
    // (label, proxy): the MiniLM proxies, then the static one.
    let mut proxies: Vec<(String, Proxy)> = threads
        .iter()
        .map(|&(t, s)| {
            (
                match s {
                    Some(s) => format!("MiniLM, {t} thr, {s} sess"),
                    None => format!("MiniLM, {t} thr"),
                },
                start_proxy(bin, up_port, "minilm-int8", t, s),
            )
        })
        .collect();
    proxies.push((
        "static".into(),
        start_proxy(bin, up_port, "static", 1, None),
    ));
    let baseline = std::env::var("BENCH_BASELINE_BIN").ok();
    if let Some(old) = &baseline {
        proxies.push((
            "static, baseline".into(),
            start_proxy(old, up_port, "static", 1, None),
        ));
    }
    let rss_idle: Vec<(f64, f64)> = proxies
        .iter()
        .map(|(_, p)| rss_mb(p.child.0.id()))
        .collect();

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
             for each proxy, pass-through (model: small) and routed (model: auto), all interleaved"
        );
        println!(
            "{:>6} {:>30} {:>9} {:>9} {:>7} {:>11} {:>11} {:>9}",
            "rate", "series", "p50 ms", "p99 ms", "errors", "added p50", "added p99", "p50 ratio"
        );
        for rate in rates {
            // Per proxy: its pass-through series, then its routed one.
            // The upstream alone comes last.
            let direct = format!("http://127.0.0.1:{up_port}/v1/chat/completions");
            let series: Vec<Arc<Series>> = proxies
                .iter()
                .flat_map(|(label, p)| {
                    [
                        (format!("pass-through ({label})"), url(p), "small"),
                        (format!("routed, {label}"), url(p), "auto"),
                    ]
                })
                .chain([("direct (upstream alone)".to_string(), direct, "small")])
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
            // The routed decisions' own step timings (median of the newest), from the decision log.
            let mut steps = Vec::new();
            for (label, p) in &proxies {
                steps.push((label, step_medians(&client, &p.admin, rate * secs / 3).await));
            }
            let direct = &base[series.len() - 1];
            let (d50, d99) = (pct_ms(direct, 0.5), pct_ms(direct, 0.99));
            for (i, s) in series.iter().enumerate().take(series.len() - 1) {
                let pass = &base[i - i % 2];
                let (p50, p99) = (pct_ms(&base[i], 0.5), pct_ms(&base[i], 0.99));
                let (b50, b99) = (pct_ms(pass, 0.5), pct_ms(pass, 0.99));
                println!(
                    "{:>6} {:>30} {:>9.3} {:>9.3} {:>7} {:>9.3}ms {:>9.3}ms {:>9.2}",
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
            for (label, m) in steps {
                println!("{rate:>6} {label:>30} decision steps, median ms: {m}");
            }
            // Over the upstream alone: (pass p50, pass p99, routed p50, routed p99) per proxy.
            let mut over_direct = Vec::new();
            for (k, (label, _)) in proxies.iter().enumerate() {
                let (pass, routed) = (&base[2 * k], &base[2 * k + 1]);
                let added = [
                    pct_ms(pass, 0.5) - d50,
                    pct_ms(pass, 0.99) - d99,
                    pct_ms(routed, 0.5) - d50,
                    pct_ms(routed, 0.99) - d99,
                ];
                println!(
                    "{rate:>6} {label:>30} over the upstream alone ({d50:.3} / {d99:.3} ms): \
                     pass-through added p50 {:.3} ms, p99 {:.3} ms; routed added p50 {:.3} ms, p99 {:.3} ms",
                    added[0], added[1], added[2], added[3]
                );
                over_direct.push(added);
            }
            if baseline.is_some() {
                let (new, old) = (over_direct[proxies.len() - 2], over_direct[proxies.len() - 1]);
                println!(
                    "{rate:>6} {:>30} pass-through added p99 {:.2}x, routed added p50 {:.2}x",
                    "static: new / baseline",
                    new[1] / old[1],
                    new[2] / old[2]
                );
            }
        }
    });
    for ((name, p), idle) in proxies.iter().zip(rss_idle) {
        let (now, peak) = rss_mb(p.child.0.id());
        println!(
            "resident memory, proxy with {name}: {:.0} MB after start, {now:.0} MB after the run, peak {peak:.0} MB",
            idle.0
        );
    }
}
