//! What the proxy adds: the same small non-streaming requests, at a fixed rate, sent straight to
//! the demo upstream and through the proxy, interleaved in one run so both see the same noise.
//! Prints added latency (p50/p99) per rate and the highest rate the proxy held.
//!
//! Run: `cargo bench --bench proxy_overhead` (or `make bench`).
//! Knobs (env): BENCH_RATES="500,1000,2000", BENCH_SECONDS=5.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod common;
use common::{demo_upstream, interleaved, pct_duration, Arm, Kill};

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Run {
    direct: Vec<Duration>,
    proxied: Vec<Duration>,
    errors: usize,
    achieved_rps: f64,
}

async fn run_at(
    client: &reqwest::Client,
    direct: &str,
    proxied: &str,
    rate: u64,
    secs: u64,
) -> Run {
    let body = serde_json::json!({"model": "bench", "messages": [{"role": "user", "content": "hello, how are you today?"}]}).to_string();
    let arms = [Arm::new(direct, body.clone()), Arm::new(proxied, body)];
    let r = interleaved(client, &arms, rate, secs).await;
    let [direct, proxied] = <[_; 2]>::try_from(r.latencies).unwrap();
    Run {
        direct,
        proxied,
        errors: r.errors,
        achieved_rps: r.achieved_rps,
    }
}

fn main() {
    let bin = env!("CARGO_BIN_EXE_dualrouter");
    let rates: Vec<u64> = std::env::var("BENCH_RATES")
        .unwrap_or_else(|_| "250,500,1000,1500,2000,3000".into())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    let secs: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);

    let (_upstream, up_port) = demo_upstream(bin);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bench.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:0\nadmin: {{ listen: 127.0.0.1:0 }}\nserver: {{ threads: 1 }}\nproviders:\n  - {{ name: demo, kind: openai, base_url: \"http://127.0.0.1:{up_port}/v1\", models: [ {{ id: bench, upstream_id: demo }} ] }}\nmirt: {{ checkpoint: {root}/checkpoints/default.json, encoder: {{ models_dir: {root}/models }} }}\n",
            root = env!("CARGO_MANIFEST_DIR"),
        ),
    )
    .unwrap();
    let ready = dir.path().join("ready.json");
    let _proxy = Kill(
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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(20);
        let proxy_addr = loop {
            if let Ok(t) = std::fs::read_to_string(&ready) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&t) {
                    break v["proxy"].as_str().unwrap().to_string();
                }
            }
            assert!(Instant::now() < deadline, "proxy did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let direct = format!("http://127.0.0.1:{up_port}/v1/chat/completions");
        let proxied = format!("http://{proxy_addr}/v1/chat/completions");
        let client = reqwest::Client::builder().pool_max_idle_per_host(512).build().unwrap();
        // Warm up both paths (connections, caches).
        loop {
            let ok_d = client.post(&direct).body("{\"model\":\"bench\",\"messages\":[]}").send().await.is_ok();
            let ok_p = client.get(format!("http://{proxy_addr}/healthz")).send().await.is_ok();
            if ok_d && ok_p {
                break;
            }
            assert!(Instant::now() < deadline, "upstream or proxy not answering");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        run_at(&client, &direct, &proxied, 200, 2).await;

        println!("dualrouter proxy overhead: demo upstream, small non-streaming requests, {secs} s per rate, direct and proxied interleaved");
        println!("{:>8} {:>9} {:>7} {:>11} {:>11} {:>11} {:>11} {:>10} {:>10}", "rate", "achieved", "errors", "direct p50", "proxy p50", "direct p99", "proxy p99", "added p50", "added p99");
        let mut held = 0;
        for rate in rates {
            let r = run_at(&client, &direct, &proxied, rate, secs).await;
            let (d50, p50) = (pct_duration(&r.direct, 0.5), pct_duration(&r.proxied, 0.5));
            let (d99, p99) = (pct_duration(&r.direct, 0.99), pct_duration(&r.proxied, 0.99));
            let added = |p: Duration, d: Duration| p.as_secs_f64() * 1e3 - d.as_secs_f64() * 1e3;
            println!(
                "{:>8} {:>9.0} {:>7} {:>9.3}ms {:>9.3}ms {:>9.3}ms {:>9.3}ms {:>8.3}ms {:>8.3}ms",
                rate, r.achieved_rps, r.errors, d50.as_secs_f64() * 1e3, p50.as_secs_f64() * 1e3,
                d99.as_secs_f64() * 1e3, p99.as_secs_f64() * 1e3, added(p50, d50), added(p99, d99)
            );
            // Held: no errors, the offered rate achieved within 5%, and p99 under 50 ms.
            if r.errors == 0 && r.achieved_rps >= rate as f64 * 0.95 && p99 < Duration::from_millis(50) {
                held = rate;
            }
        }
        println!("highest rate held through the proxy: {held} req/s (half of them proxied)");
    });
}
