//! Peers side by side (issue 11): one small non-streaming chat request, one demo upstream, one
//! machine, one run, sent
//! - straight to the upstream (the baseline every "added" figure subtracts),
//! - through dualrouter pass-through (`model: "bench"`),
//! - through dualrouter routed (`model: "auto"`: classification, MIRT scoring) with the static
//!   encoder and with MiniLM,
//! - through nginx (Debian's package) as a plain reverse proxy,
//! - through the LiteLLM proxy (PyPI).
//!
//! Part 1, added latency: every target at the same fixed rate, requests interleaved round-robin
//! so all see the same noise; p50/p99 of each minus the direct path's.
//! Part 2, highest rate held: each target alone, rates ramped; held = no error, at least 95% of
//! the offered rate achieved, p99 under `PEERS_P99_MS` (default 100 ms).
//! Every proxy runs one worker (dualrouter `server.threads: 1`, nginx `worker_processes 1`,
//! LiteLLM `--num_workers 1`); the load generator is this process, on one thread.
//!
//! Run: `scripts/bench-peers.sh` (installs nginx and LiteLLM, then runs this).
//! Env: PEERS_NGINX (default: `nginx` on PATH, else /usr/sbin/nginx), PEERS_LITELLM (default
//! `.venv-peers/bin/litellm`), PEERS_RATE=150, PEERS_SECONDS=20, PEERS_RAMP (rates, default
//! "10,25,50,100,200,400,800,1600,3200"), PEERS_RAMP_SECONDS=5, PEERS_P99_MS=100. A peer that is not
//! installed is skipped, and said so.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod common;
use common::{demo_upstream, free_port, pct_ms, Kill};

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Clone)]
struct Target {
    name: &'static str,
    url: String,
    model: &'static str,
}

/// Latencies of successful requests, and the count of failed ones, per target.
struct Run {
    lat: Vec<Vec<Duration>>,
    errors: Vec<usize>,
    achieved_rps: f64,
}

/// Sends `rate` requests a second for `secs`, round-robin over `targets` (open loop: a slow
/// target does not slow the offered rate).
async fn run(client: &reqwest::Client, targets: &[Target], rate: u64, secs: u64) -> Run {
    let n = targets.len();
    let lat: Arc<Vec<Mutex<Vec<Duration>>>> =
        Arc::new((0..n).map(|_| Mutex::new(Vec::new())).collect());
    let errors: Arc<Vec<AtomicUsize>> = Arc::new((0..n).map(|_| AtomicUsize::new(0)).collect());
    let total = rate * secs;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total as usize {
        tick.tick().await;
        let k = i % n;
        let t = targets[k].clone();
        let (client, lat, errors) = (client.clone(), lat.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            // A prompt of its own per request: the encoder's cache must not answer for routing.
            let body = format!(
                r#"{{"model":"{}","messages":[{{"role":"user","content":"hello, how are you today? (request {i})"}}]}}"#,
                t.model
            );
            let began = Instant::now();
            let ok = match client
                .post(&t.url)
                .header("content-type", "application/json")
                .header("authorization", "Bearer sk-bench")
                .body(body)
                .timeout(Duration::from_secs(10))
                .send()
                .await
            {
                Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                Err(_) => false,
            };
            if ok {
                lat[k].lock().unwrap().push(began.elapsed());
            } else {
                errors[k].fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let lat: Vec<Vec<Duration>> = lat
        .iter()
        .map(|m| {
            let mut v = m.lock().unwrap().clone();
            v.sort();
            v
        })
        .collect();
    let done: usize = lat.iter().map(Vec::len).sum();
    Run {
        achieved_rps: done as f64 / elapsed,
        lat,
        errors: errors.iter().map(|e| e.load(Ordering::Relaxed)).collect(),
    }
}

/// Waits until `url` answers 2xx to GET (or the deadline passes).
async fn wait_ready(client: &reqwest::Client, url: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(r) = client.get(url).send().await {
            if r.status().is_success() {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn dualrouter(bin: &str, dir: &Path, name: &str, up: u16, mirt: &str) -> (Kill, u16) {
    let port = free_port();
    let cfg = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{port}\nadmin: {{ listen: 127.0.0.1:0 }}\nserver: {{ threads: 1 }}\n\
             database: sqlite://{db}\ndecision_log: {{ spool_dir: {spool} }}\nmirt: {mirt}\n\
             providers:\n  - {{ name: demo, kind: openai, base_url: \"http://127.0.0.1:{up}/v1\", models: [ {{ id: bench, upstream_id: demo }} ] }}\n",
            db = dir.join(format!("{name}.db")).display(),
            spool = dir.join(format!("{name}-spool")).display(),
        ),
    )
    .unwrap();
    let child = Command::new(bin)
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .env("DUALROUTER_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (Kill(child), port)
}

fn nginx(dir: &Path, up: u16) -> Option<(Kill, u16)> {
    let bin = std::env::var("PEERS_NGINX").ok().or_else(|| {
        ["nginx", "/usr/sbin/nginx"]
            .into_iter()
            .find(|b| {
                Command::new(b)
                    .arg("-v")
                    .stderr(Stdio::null())
                    .status()
                    .is_ok()
            })
            .map(str::to_string)
    })?;
    let port = free_port();
    let root = dir.join("nginx");
    std::fs::create_dir_all(root.join("logs")).unwrap();
    let conf = root.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes 1;\ndaemon off;\nmaster_process off;\npid {root}/nginx.pid;\nerror_log {root}/logs/error.log warn;\n\
             events {{ worker_connections 8192; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {root}/body;\n  proxy_temp_path {root}/proxy;\n\
               fastcgi_temp_path {root}/fcgi;\n  uwsgi_temp_path {root}/uwsgi;\n  scgi_temp_path {root}/scgi;\n\
               upstream up {{ server 127.0.0.1:{up}; keepalive 128; }}\n\
               server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      proxy_pass http://up;\n\
                 proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_buffering off;\n    }}\n  }}\n}}\n",
            root = root.display(),
        ),
    )
    .unwrap();
    let child = Command::new(&bin)
        .args(["-p", root.to_str().unwrap(), "-c", conf.to_str().unwrap()])
        .args(["-e", root.join("logs/error.log").to_str().unwrap()])
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    Some((Kill(child), port))
}

fn litellm(dir: &Path, up: u16) -> Option<(Kill, u16)> {
    let bin: PathBuf = std::env::var("PEERS_LITELLM")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(".venv-peers/bin/litellm"));
    if !bin.is_file() {
        return None;
    }
    let port = free_port();
    let cfg = dir.join("litellm.yaml");
    std::fs::write(
        &cfg,
        format!(
            "model_list:\n  - model_name: bench\n    litellm_params: {{ model: openai/demo, api_base: \"http://127.0.0.1:{up}/v1\", api_key: sk-bench }}\n\
             litellm_settings: {{ telemetry: false, drop_params: true, set_verbose: false }}\n"
        ),
    )
    .unwrap();
    let child = Command::new(&bin)
        .args(["--config", cfg.to_str().unwrap(), "--host", "127.0.0.1"])
        .args(["--port", &port.to_string(), "--num_workers", "1"])
        // No network: the model price map ships with the package.
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        .env("LITELLM_LOG", "ERROR")
        .env("LITELLM_TELEMETRY", "False")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    Some((Kill(child), port))
}

fn main() {
    let bin = env!("CARGO_BIN_EXE_dualrouter");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rate: u64 = env_or("PEERS_RATE", 150);
    let secs: u64 = env_or("PEERS_SECONDS", 20);
    let ramp_secs: u64 = env_or("PEERS_RAMP_SECONDS", 5);
    let p99_ms: f64 = env_or("PEERS_P99_MS", 100.0);
    let ramp: Vec<u64> = std::env::var("PEERS_RAMP")
        .unwrap_or_else(|_| "10,25,50,100,200,400,800,1600,3200".into())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let (_upstream, up) = demo_upstream(bin);
    let models = root.join("models");
    let static_mirt = format!(
        "{{ checkpoint: {}, encoder: {{ kind: static, models_dir: {} }} }}",
        root.join("checkpoints/static.json").display(),
        models.display()
    );
    let minilm_mirt = format!(
        "{{ checkpoint: {}, encoder: {{ models_dir: {} }} }}",
        root.join("checkpoints/default.json").display(),
        models.display()
    );
    let (_dr_static, dr_static) = dualrouter(bin, dir.path(), "static", up, &static_mirt);
    let (_dr_minilm, dr_minilm) = dualrouter(bin, dir.path(), "minilm", up, &minilm_mirt);
    let nginx = nginx(dir.path(), up);
    let litellm = litellm(dir.path(), up);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .build()
            .unwrap();
        let chat = |port: u16| format!("http://127.0.0.1:{port}/v1/chat/completions");
        let mut targets = vec![Target { name: "direct", url: chat(up), model: "demo" }];
        let ready = |port: u16, path: &str| format!("http://127.0.0.1:{port}{path}");
        for (name, port, model) in [
            ("dualrouter pass-through", dr_static, "bench"),
            ("dualrouter routed (static)", dr_static, "auto"),
            ("dualrouter routed (MiniLM)", dr_minilm, "auto"),
        ] {
            assert!(
                wait_ready(&client, &ready(port, "/healthz"), Duration::from_secs(60)).await,
                "dualrouter did not start"
            );
            targets.push(Target { name, url: chat(port), model });
        }
        match &nginx {
            Some((_, port)) if wait_ready(&client, &ready(*port, "/v1/models"), Duration::from_secs(20)).await => {
                targets.push(Target { name: "nginx", url: chat(*port), model: "demo" })
            }
            _ => println!("nginx: not installed or did not start; skipped (scripts/bench-peers.sh installs it)"),
        }
        match &litellm {
            Some((_, port)) if wait_ready(&client, &ready(*port, "/health/liveliness"), Duration::from_secs(120)).await => {
                targets.push(Target { name: "litellm", url: chat(*port), model: "bench" })
            }
            _ => println!("litellm: not installed or did not start; skipped (scripts/bench-peers.sh installs it)"),
        }
        // Warm up every path (connections, the encoders, LiteLLM's imports).
        let warm = run(&client, &targets, 40, 3).await;
        for (t, e) in targets.iter().zip(&warm.errors) {
            assert!(*e < 60, "{}: {e} of 60 warm-up requests failed", t.name);
        }

        println!("\nPart 1: added latency, {rate} req/s over all targets interleaved, {secs} s");
        let r = run(&client, &targets, rate, secs).await;
        let (d50, d99) = (pct_ms(&r.lat[0], 0.5), pct_ms(&r.lat[0], 0.99));
        println!("{:<28} {:>6} {:>7} {:>9} {:>9} {:>11} {:>11}", "target", "ok", "errors", "p50 ms", "p99 ms", "added p50", "added p99");
        let mut added = Vec::new();
        for (k, t) in targets.iter().enumerate() {
            let (p50, p99) = (pct_ms(&r.lat[k], 0.5), pct_ms(&r.lat[k], 0.99));
            println!(
                "{:<28} {:>6} {:>7} {:>9.3} {:>9.3} {:>9.3}ms {:>9.3}ms",
                t.name, r.lat[k].len(), r.errors[k], p50, p99, p50 - d50, p99 - d99
            );
            added.push((t.name, p50 - d50, p99 - d99));
        }

        println!("\nPart 2: highest rate held alone ({ramp_secs} s per rate; held = 0 errors, >= 95% of the rate achieved, p99 < {p99_ms} ms)");
        let mut held = Vec::new();
        for t in &targets {
            let mut best = 0;
            for &rate in &ramp {
                let r = run(&client, std::slice::from_ref(t), rate, ramp_secs).await;
                let p99 = pct_ms(&r.lat[0], 0.99);
                let ok = r.errors[0] == 0 && r.achieved_rps >= rate as f64 * 0.95 && p99 < p99_ms;
                println!(
                    "{:<28} {:>6} req/s: achieved {:>7.0}, errors {:>5}, p99 {:>8.2} ms{}",
                    t.name, rate, r.achieved_rps, r.errors[0], p99, if ok { "" } else { "  (not held)" }
                );
                if !ok {
                    break;
                }
                best = rate;
            }
            held.push((t.name, best));
        }

        println!("\nSummary");
        let get = |name: &str| added.iter().find(|a| a.0 == name).map(|a| (a.1, a.2));
        let rate_of = |name: &str| held.iter().find(|h| h.0 == name).map(|h| h.1);
        for (name, best) in &held {
            println!("{name:<28} held {best:>6} req/s");
        }
        if let (Some(dr), Some(ng)) = (get("dualrouter pass-through"), get("nginx")) {
            println!(
                "pass-through added latency vs nginx's: p50 {:.3} / {:.3} ms = {:.2}x, p99 {:.3} / {:.3} ms = {:.2}x (goal <= 2x)",
                dr.0, ng.0, dr.0 / ng.0, dr.1, ng.1, dr.1 / ng.1
            );
        }
        let lowest = ramp.first().copied().unwrap_or(1);
        for who in ["dualrouter pass-through", "dualrouter routed (static)", "dualrouter routed (MiniLM)"] {
            match (rate_of(who), rate_of("litellm")) {
                (Some(dr), Some(0)) => println!(
                    "{who} rate held vs LiteLLM's: {dr} req/s vs under {lowest} req/s = more than {:.0}x (goal >= 10x)",
                    dr as f64 / lowest as f64
                ),
                (Some(dr), Some(ll)) => println!(
                    "{who} rate held vs LiteLLM's: {dr} / {ll} req/s = {:.1}x (goal >= 10x)",
                    dr as f64 / ll as f64
                ),
                _ => {}
            }
        }
    });
}
