//! What a virtual key adds: the same small non-streaming requests through one proxy, at a fixed
//! rate, half with a static client key (`auth.keys_env`, no store call) and half with a virtual
//! key that has a budget and a rate limit (the key from the cache, the rate window and the budget
//! reservation from the instance's leases in memory, topped up from the store in the background,
//! the settlement batched in the background), interleaved in one run so both see the same noise.
//! Prints the added latency (p50/p99) per rate.
//! The target: at most 0.2 ms added at p99 at 1,000 req/s (SQLite store, as shipped).
//!
//! Run: `cargo bench --bench key_overhead`.
//! Knobs (env): BENCH_RATES="500,1000", BENCH_SECONDS=5, BENCH_DATABASE=postgres://… (default: a
//! SQLite file in a temp dir).
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

const STATIC_KEY: &str = "bench-static-key";
const ADMIN_TOKEN: &str = "bench-admin-token";

struct Run {
    static_key: Vec<Duration>,
    virtual_key: Vec<Duration>,
    errors: usize,
    achieved_rps: f64,
}

async fn run_at(client: &reqwest::Client, url: &str, vkey: &str, rate: u64, secs: u64) -> Run {
    let body = serde_json::json!({"model": "bench", "max_tokens": 16, "messages": [{"role": "user", "content": "hello, how are you today?"}]}).to_string();
    let arms = [
        Arm::new(url, body.clone()).with_bearer(STATIC_KEY),
        Arm::new(url, body).with_bearer(vkey),
    ];
    let r = interleaved(client, &arms, rate, secs).await;
    let [static_key, virtual_key] = <[_; 2]>::try_from(r.latencies).unwrap();
    Run {
        static_key,
        virtual_key,
        errors: r.errors,
        achieved_rps: r.achieved_rps,
    }
}

fn main() {
    let bin = env!("CARGO_BIN_EXE_dualrouter");
    let rates: Vec<u64> = std::env::var("BENCH_RATES")
        .unwrap_or_else(|_| "500,1000".into())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    let secs: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);

    let (_upstream, up_port) = demo_upstream(bin);
    let dir = tempfile::tempdir().unwrap();
    let database = std::env::var("BENCH_DATABASE")
        .unwrap_or_else(|_| format!("sqlite://{}/bench.db", dir.path().display()));
    let cfg = dir.path().join("bench.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:0\nadmin: {{ listen: 127.0.0.1:0, token_env: BENCH_ADMIN }}\nauth: {{ keys_env: BENCH_KEYS, virtual_keys: true }}\nserver: {{ threads: 1 }}\ndatabase: \"{database}\"\ndecision_log: {{ spool_dir: {spool} }}\nproviders:\n  - {{ name: demo, kind: openai, base_url: \"http://127.0.0.1:{up_port}/v1\", models: [ {{ id: bench, upstream_id: demo, cost_per_mtok: {{ input: 0.1, output: 0.1 }} }} ] }}\nmirt: {{ checkpoint: {root}/checkpoints/default.json, encoder: {{ models_dir: {root}/models }} }}\n",
            root = env!("CARGO_MANIFEST_DIR"),
            spool = dir.path().join("spool").display(),
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
            .env("BENCH_KEYS", STATIC_KEY)
            .env("BENCH_ADMIN", ADMIN_TOKEN)
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
        let (proxy_addr, admin_addr) = loop {
            if let Ok(t) = std::fs::read_to_string(&ready) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&t) {
                    break (
                        v["proxy"].as_str().unwrap().to_string(),
                        v["admin"].as_str().unwrap().to_string(),
                    );
                }
            }
            assert!(Instant::now() < deadline, "proxy did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(512)
            .build()
            .unwrap();
        // A key with a budget that will not run out and a rate limit that will not be reached:
        // every counter is exercised, nothing is refused.
        let created: serde_json::Value = client
            .post(format!("http://{admin_addr}/api/keys"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&serde_json::json!({"name": "bench", "budget": {"usd": 1_000_000, "period": "total"},
                                      "rate_limit": {"rpm": 10_000_000}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let vkey = created["key"].as_str().unwrap().to_string();
        let url = format!("http://{proxy_addr}/v1/chat/completions");
        loop {
            if client
                .get(format!("http://{proxy_addr}/healthz"))
                .send()
                .await
                .is_ok()
            {
                break;
            }
            assert!(Instant::now() < deadline, "proxy not answering");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        run_at(&client, &url, &vkey, 200, 2).await;

        println!("dualrouter virtual-key overhead: demo upstream, small non-streaming requests, {secs} s per rate, static and virtual key interleaved ({})", if database.starts_with("sqlite") { "SQLite" } else { "PostgreSQL" });
        println!(
            "{:>8} {:>9} {:>7} {:>11} {:>11} {:>11} {:>11} {:>10} {:>10}",
            "rate", "achieved", "errors", "static p50", "virtual p50", "static p99", "virtual p99", "added p50", "added p99"
        );
        for rate in rates {
            let r = run_at(&client, &url, &vkey, rate, secs).await;
            let (s50, v50) = (pct_duration(&r.static_key, 0.5), pct_duration(&r.virtual_key, 0.5));
            let (s99, v99) = (pct_duration(&r.static_key, 0.99), pct_duration(&r.virtual_key, 0.99));
            let added = |v: Duration, s: Duration| v.as_secs_f64() * 1e3 - s.as_secs_f64() * 1e3;
            println!(
                "{:>8} {:>9.0} {:>7} {:>9.3}ms {:>9.3}ms {:>9.3}ms {:>9.3}ms {:>8.3}ms {:>8.3}ms",
                rate,
                r.achieved_rps,
                r.errors,
                s50.as_secs_f64() * 1e3,
                v50.as_secs_f64() * 1e3,
                s99.as_secs_f64() * 1e3,
                v99.as_secs_f64() * 1e3,
                added(v50, s50),
                added(v99, s99)
            );
        }
    });
}
