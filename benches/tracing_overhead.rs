//! What OpenTelemetry traces add: the same small non-streaming pass-through requests (a concrete
//! model, no routing) at a fixed rate, alternately to two proxies of one build serving the same
//! demo upstream: one without traces, one with `telemetry` at `sample_ratio: 1.0` exporting
//! every span over OTLP/HTTP to a receiver in this process (`dualrouter_testkit::otlp`). Both
//! run in the same run, interleaved, so both see the same noise. Prints p50/p99 of each and
//! the difference per rate, and how many spans were exported and dropped.
//! The target: at most 0.1 ms added at p99 at 1,000 req/s.
//!
//! Run: `cargo bench --bench tracing_overhead`.
//! Knobs (env): BENCH_RATES="500,1000", BENCH_SECONDS=5.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod common;
use common::{demo_upstream, interleaved, machine, pct_duration, Arm, Kill};

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Run {
    off: Vec<Duration>,
    on: Vec<Duration>,
    errors: usize,
    achieved_rps: f64,
}

async fn run_at(client: &reqwest::Client, off: &str, on: &str, rate: u64, secs: u64) -> Run {
    let body = serde_json::json!({"model": "bench", "max_tokens": 16, "messages": [{"role": "user", "content": "hello, how are you today?"}]}).to_string();
    let arms = [Arm::new(off, body.clone()), Arm::new(on, body)];
    let r = interleaved(client, &arms, rate, secs).await;
    let [off, on] = <[_; 2]>::try_from(r.latencies).unwrap();
    Run {
        off,
        on,
        errors: r.errors,
        achieved_rps: r.achieved_rps,
    }
}

/// Starts `dualrouter serve` with `extra` appended to a one-model config; its proxy and admin
/// addresses once ready.
fn start_proxy(bin: &str, dir: &Path, name: &str, up_port: u16, extra: &str) -> (Kill, Path2) {
    let cfg = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:0\nadmin: {{ listen: 127.0.0.1:0 }}\nserver: {{ threads: 1 }}\ndatabase: \"sqlite://{db}\"\ndecision_log: {{ spool_dir: {spool} }}\nproviders:\n  - {{ name: demo, kind: openai, base_url: \"http://127.0.0.1:{up_port}/v1\", models: [ {{ id: bench, upstream_id: demo, cost_per_mtok: {{ input: 0.1, output: 0.1 }} }} ] }}\nmirt: {{ checkpoint: {root}/checkpoints/default.json, encoder: {{ models_dir: {root}/models }} }}\n{extra}",
            root = env!("CARGO_MANIFEST_DIR"),
            db = dir.join(format!("{name}.db")).display(),
            spool = dir.join(format!("{name}-spool")).display(),
        ),
    )
    .unwrap();
    let ready = dir.join(format!("{name}-ready.json"));
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
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(t) = std::fs::read_to_string(&ready) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&t) {
                return (
                    child,
                    Path2 {
                        proxy: v["proxy"].as_str().unwrap().to_string(),
                        admin: v["admin"].as_str().unwrap().to_string(),
                    },
                );
            }
        }
        assert!(Instant::now() < deadline, "{name}: proxy did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Path2 {
    proxy: String,
    admin: String,
}

async fn metric(client: &reqwest::Client, admin: &str, series: &str) -> f64 {
    let text = client
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
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

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let receiver = dualrouter_testkit::otlp::Receiver::start_http().await;
        let (_upstream, up_port) = demo_upstream(bin);
        let dir = tempfile::tempdir().unwrap();
        let (_off_proc, off) = start_proxy(bin, dir.path(), "off", up_port, "");
        let (_on_proc, on) = start_proxy(
            bin,
            dir.path(),
            "on",
            up_port,
            &format!(
                "telemetry: {{ otlp_endpoint: '{}', protocol: http/protobuf, sample_ratio: 1.0 }}\n",
                receiver.endpoint()
            ),
        );
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(512)
            .build()
            .unwrap();
        let (off_url, on_url) = (
            format!("http://{}/v1/chat/completions", off.proxy),
            format!("http://{}/v1/chat/completions", on.proxy),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        for p in [&off.proxy, &on.proxy] {
            while client
                .get(format!("http://{p}/healthz"))
                .send()
                .await
                .is_err()
            {
                assert!(Instant::now() < deadline, "proxy not answering");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        // Warm-up: connections, pools, the exporter's first batch.
        run_at(&client, &off_url, &on_url, 200, 2).await;

        println!("dualrouter tracing overhead: demo upstream, small non-streaming pass-through requests, {secs} s per rate, traces off and on (ratio 1.0, OTLP/HTTP) interleaved");
        println!("{}", machine());
        println!(
            "{:>8} {:>9} {:>7} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
            "rate", "achieved", "errors", "off p50", "on p50", "off p99", "on p99", "added p50", "added p99"
        );
        for rate in rates {
            let r = run_at(&client, &off_url, &on_url, rate, secs).await;
            let (a50, b50) = (pct_duration(&r.off, 0.5), pct_duration(&r.on, 0.5));
            let (a99, b99) = (pct_duration(&r.off, 0.99), pct_duration(&r.on, 0.99));
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            println!(
                "{:>8} {:>9.0} {:>7} {:>8.3}ms {:>8.3}ms {:>8.3}ms {:>8.3}ms {:>8.3}ms {:>8.3}ms",
                rate,
                r.achieved_rps,
                r.errors,
                ms(a50),
                ms(b50),
                ms(a99),
                ms(b99),
                ms(b50) - ms(a50),
                ms(b99) - ms(a99)
            );
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let exported = metric(&client, &on.admin, "dualrouter_trace_spans_total{result=\"exported\"}").await;
        let dropped = metric(&client, &on.admin, "dualrouter_trace_spans_dropped_total").await;
        println!(
            "spans exported {exported:.0}, dropped {dropped:.0}, received by the collector {}",
            receiver.spans().len()
        );
    });
}
