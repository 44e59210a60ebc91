//! Peers side by side (issues 11, 24, 25): one small non-streaming chat request, one demo
//! upstream, one machine, one run, sent
//! - straight to the upstream (the baseline every "added" figure subtracts),
//! - through dualrouter pass-through (`model: "bench"`),
//! - through dualrouter routed (`model: "auto"`: classification, MIRT scoring) with the static
//!   encoder, with MiniLM on one worker (one encoder session), and with MiniLM on two workers
//!   and a pool of two sessions,
//! - through nginx (Debian's package) as a plain reverse proxy,
//! - through the LiteLLM proxy (PyPI).
//!
//! Part 1, added latency: every target at the same fixed rate, requests interleaved round-robin
//! so all see the same noise; p50/p99 of each minus the direct path's. Then again at a higher
//! rate over the targets that hold it (direct, pass-through, static routing, nginx).
//! Part 2, highest rate held: each target alone, rates ramped, then refined between the last
//! rate held and the first not held; held = no error, at least 95% of the offered rate
//! achieved, p99 under `PEERS_P99_MS` (default 100 ms).
//! Part 3, CPU per request: each proxy alone at fixed rates (those it held in part 2), the
//! proxies taking turns of a slice each over several rounds so drift falls on all alike; the CPU
//! time the kernel accounted to its process (every thread, and child processes: LiteLLM's
//! workers) per 1,000 requests. Last, each dualrouter process's resident memory.
//! Every proxy runs one worker (dualrouter `server.threads: 1`, nginx `worker_processes 1`,
//! LiteLLM `--num_workers 1`) but the two-session MiniLM one; the load generator is this process,
//! on one thread.
//!
//! Run: `scripts/bench-peers.sh` (installs nginx and LiteLLM, then runs this).
//! Env: PEERS_NGINX (default: `nginx` on PATH, else /usr/sbin/nginx), PEERS_LITELLM (default
//! `.venv-peers/bin/litellm`), PEERS_RATE=150, PEERS_FAST_RATE=1000 (0: skip), PEERS_SECONDS=20,
//! PEERS_RAMP (rates, default "10,25,50,100,200,400,800,1600,3200"), PEERS_RAMP_SECONDS=5,
//! PEERS_P99_MS=100, PEERS_CPU_RATES="150,1000", PEERS_CPU_SECONDS=10 (each proxy's total),
//! PEERS_CPU_ROUNDS=5. A peer that is not installed is skipped, and said so.
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
    /// The process serving it (none for the direct path).
    pid: Option<u32>,
}

/// One proxy's share of part 3 at one rate, summed over its turns.
struct CpuTurns {
    target: Target,
    pid: u32,
    spent_ms: f64,
    requests: usize,
    errors: usize,
    per_round_us: Vec<f64>,
}

/// CPU time the kernel accounted to `pid`, its threads and its descendants so far, in
/// nanoseconds (`/proc/*/task/*/schedstat`: nanosecond resolution, where `stat`'s ticks are
/// 10 ms).
fn cpu_ns(pid: u32) -> u64 {
    let mut total = 0;
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) {
            for t in tasks.flatten() {
                let stat = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
                total += stat
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
        todo.extend(children_of(p));
    }
    total
}

/// The processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            // `pid (comm) state ppid …`: comm may hold spaces, so read after its `)`.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                == Some(pid)
        })
        .collect()
}

/// `VmRSS` and `VmHWM` (peak) of a process, in MB.
fn memory_mb(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (kb("VmRSS:") / 1024.0, kb("VmHWM:") / 1024.0)
}

/// Numbers the prompts of the whole bench, so that no run repeats an earlier run's prompt.
static PROMPT_SEQ: AtomicUsize = AtomicUsize::new(0);

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
            // A prompt of its own per request, across the whole bench (every run counts on from
            // the last): the encoder's cache must not answer for routing.
            let n = PROMPT_SEQ.fetch_add(1, Ordering::Relaxed);
            let body = format!(
                r#"{{"model":"{}","messages":[{{"role":"user","content":"hello, how are you today? (request {n})"}}]}}"#,
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

fn dualrouter(bin: &str, dir: &Path, name: &str, up: u16, mirt: &str, threads: u32) -> (Kill, u16) {
    let port = free_port();
    let cfg = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{port}\nadmin: {{ listen: 127.0.0.1:0 }}\nserver: {{ threads: {threads} }}\n\
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
    let fast_rate: u64 = env_or("PEERS_FAST_RATE", 1000);
    let secs: u64 = env_or("PEERS_SECONDS", 20);
    let ramp_secs: u64 = env_or("PEERS_RAMP_SECONDS", 5);
    let p99_ms: f64 = env_or("PEERS_P99_MS", 100.0);
    let cpu_secs: u64 = env_or("PEERS_CPU_SECONDS", 10);
    let cpu_rounds: u64 = env_or("PEERS_CPU_ROUNDS", 5).max(1);
    let rates = |name: &str, default: &str| -> Vec<u64> {
        std::env::var(name)
            .unwrap_or_else(|_| default.into())
            .split(',')
            .filter_map(|r| r.trim().parse().ok())
            .collect()
    };
    let ramp = rates("PEERS_RAMP", "10,25,50,100,200,400,800,1600,3200");
    let cpu_rates = rates("PEERS_CPU_RATES", "150,1000");
    println!("{}", common::machine());

    let dir = tempfile::tempdir().unwrap();
    let (_upstream, up) = demo_upstream(bin);
    let models = root.join("models");
    let static_mirt = format!(
        "{{ checkpoint: {}, encoder: {{ kind: static, models_dir: {} }} }}",
        root.join("checkpoints/static.json").display(),
        models.display()
    );
    let minilm_mirt = |sessions: u32| {
        format!(
            "{{ checkpoint: {}, encoder: {{ models_dir: {}, sessions: {sessions} }} }}",
            root.join("checkpoints/default.json").display(),
            models.display()
        )
    };
    let (dr_static, dr_static_port) = dualrouter(bin, dir.path(), "static", up, &static_mirt, 1);
    let (dr_minilm, dr_minilm_port) = dualrouter(bin, dir.path(), "minilm", up, &minilm_mirt(1), 1);
    let (dr_pool, dr_pool_port) = dualrouter(bin, dir.path(), "pool", up, &minilm_mirt(2), 2);
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
        let mut targets = vec![Target { name: "direct", url: chat(up), model: "demo", pid: None }];
        let ready = |port: u16, path: &str| format!("http://127.0.0.1:{port}{path}");
        for (name, port, model, pid) in [
            ("dualrouter pass-through", dr_static_port, "bench", dr_static.0.id()),
            ("dualrouter routed (static)", dr_static_port, "auto", dr_static.0.id()),
            ("dualrouter routed (MiniLM)", dr_minilm_port, "auto", dr_minilm.0.id()),
            ("dualrouter routed (MiniLM, 2 sessions)", dr_pool_port, "auto", dr_pool.0.id()),
        ] {
            assert!(
                wait_ready(&client, &ready(port, "/healthz"), Duration::from_secs(60)).await,
                "dualrouter did not start"
            );
            targets.push(Target { name, url: chat(port), model, pid: Some(pid) });
        }
        match &nginx {
            Some((kill, port)) if wait_ready(&client, &ready(*port, "/v1/models"), Duration::from_secs(20)).await => {
                targets.push(Target { name: "nginx", url: chat(*port), model: "demo", pid: Some(kill.0.id()) })
            }
            _ => println!("nginx: not installed or did not start; skipped (scripts/bench-peers.sh installs it)"),
        }
        match &litellm {
            Some((kill, port)) if wait_ready(&client, &ready(*port, "/health/liveliness"), Duration::from_secs(120)).await => {
                targets.push(Target { name: "litellm", url: chat(*port), model: "bench", pid: Some(kill.0.id()) })
            }
            _ => println!("litellm: not installed or did not start; skipped (scripts/bench-peers.sh installs it)"),
        }
        // Warm up every path (connections, the encoders, LiteLLM's imports).
        let warm = run(&client, &targets, 40, 3).await;
        for (t, e) in targets.iter().zip(&warm.errors) {
            assert!(*e < 60, "{}: {e} of 60 warm-up requests failed", t.name);
        }

        let added_at = |r: &Run, targets: &[Target]| {
            let (d50, d99) = (pct_ms(&r.lat[0], 0.5), pct_ms(&r.lat[0], 0.99));
            println!("{:<40} {:>6} {:>7} {:>9} {:>9} {:>11} {:>11}", "target", "ok", "errors", "p50 ms", "p99 ms", "added p50", "added p99");
            let mut added = Vec::new();
            for (k, t) in targets.iter().enumerate() {
                let (p50, p99) = (pct_ms(&r.lat[k], 0.5), pct_ms(&r.lat[k], 0.99));
                println!(
                    "{:<40} {:>6} {:>7} {:>9.3} {:>9.3} {:>9.3}ms {:>9.3}ms",
                    t.name, r.lat[k].len(), r.errors[k], p50, p99, p50 - d50, p99 - d99
                );
                added.push((t.name, p50 - d50, p99 - d99));
            }
            added
        };
        println!("\nPart 1: added latency, {rate} req/s over all targets interleaved, {secs} s");
        let r = run(&client, &targets, rate, secs).await;
        let added = added_at(&r, &targets);
        // The targets that hold a thousand requests a second on one worker.
        let fast: Vec<Target> = targets
            .iter()
            .filter(|t| !t.name.contains("MiniLM") && t.name != "litellm")
            .cloned()
            .collect();
        let added_fast = if fast_rate > 0 {
            println!(
                "\nPart 1b: added latency, {fast_rate} req/s over {} targets interleaved ({} req/s each), {secs} s",
                fast.len(),
                fast_rate / fast.len() as u64
            );
            let r = run(&client, &fast, fast_rate, secs).await;
            added_at(&r, &fast)
        } else {
            Vec::new()
        };

        println!("\nPart 2: highest rate held alone ({ramp_secs} s per rate; held = 0 errors, >= 95% of the rate achieved, p99 < {p99_ms} ms)");
        let mut held = Vec::new();
        for t in &targets {
            let try_rate = |rate: u64| {
                let client = client.clone();
                let t = t.clone();
                async move {
                    let r = run(&client, std::slice::from_ref(&t), rate, ramp_secs).await;
                    let p99 = pct_ms(&r.lat[0], 0.99);
                    let ok = r.errors[0] == 0 && r.achieved_rps >= rate as f64 * 0.95 && p99 < p99_ms;
                    println!(
                        "{:<40} {:>6} req/s: achieved {:>7.0}, errors {:>5}, p99 {:>8.2} ms{}",
                        t.name, rate, r.achieved_rps, r.errors[0], p99, if ok { "" } else { "  (not held)" }
                    );
                    ok
                }
            };
            let mut best = 0;
            let mut failed = None;
            for &rate in &ramp {
                if !try_rate(rate).await {
                    failed = Some(rate);
                    break;
                }
                best = rate;
            }
            // Between the last rate held and the first not held, in quarters of the gap.
            if let Some(fail) = failed {
                for k in 1..4 {
                    let rate = best + (fail - best) * k / 4;
                    if rate <= best || !try_rate(rate).await {
                        break;
                    }
                    best = rate;
                }
            }
            held.push((t.name, best));
        }
        let rate_of = |name: &str| held.iter().find(|h| h.0 == name).map(|h| h.1);

        // Issue 24: MiniLM routing with the pool, at half the rate it held, beside the direct path.
        let pool_name = "dualrouter routed (MiniLM, 2 sessions)";
        let mut pool_added = None;
        if let (Some(pool_held), Some(pool)) = (rate_of(pool_name), targets.iter().find(|t| t.name == pool_name)) {
            if pool_held >= 2 {
                let pair = [targets[0].clone(), pool.clone()];
                println!("\nPart 2b: {pool_name} at half the rate it held ({} req/s) beside the direct path, {secs} s", pool_held / 2);
                let r = run(&client, &pair, pool_held, secs).await;
                let added = added_at(&r, &pair);
                pool_added = added.get(1).map(|a| (pool_held / 2, a.1));
            }
        }

        let slice = (cpu_secs as f64 / cpu_rounds as f64).round().max(1.0) as u64;
        println!("\nPart 3: CPU time per 1,000 requests at a fixed rate, the proxies taking turns of {slice} s over {cpu_rounds} rounds (its process, every thread and child)");
        let mut cpu = Vec::new();
        for &rate in &cpu_rates {
            // Each proxy alone at the rate, in turns of a slice each, round after round: the
            // machine's drift falls on all of them alike, so their ratios are of one moment.
            let mut turns: Vec<CpuTurns> = Vec::new();
            for t in &targets {
                let Some(pid) = t.pid else { continue };
                if rate_of(t.name).is_some_and(|h| h < rate) {
                    println!("{:<40} {:>6} req/s: not held in part 2; skipped", t.name, rate);
                    continue;
                }
                turns.push(CpuTurns {
                    target: t.clone(),
                    pid,
                    spent_ms: 0.0,
                    requests: 0,
                    errors: 0,
                    per_round_us: Vec::new(),
                });
            }
            for _ in 0..cpu_rounds {
                for turn in turns.iter_mut() {
                    let before = cpu_ns(turn.pid);
                    let r = run(&client, std::slice::from_ref(&turn.target), rate, slice).await;
                    let ms = cpu_ns(turn.pid).saturating_sub(before) as f64 / 1e6;
                    let done = r.lat[0].len() + r.errors[0];
                    turn.spent_ms += ms;
                    turn.requests += done;
                    turn.errors += r.errors[0];
                    turn.per_round_us.push(ms / done.max(1) as f64 * 1e3);
                }
            }
            for mut turn in turns {
                let (n, spent, errors) = (turn.requests, turn.spent_ms, turn.errors);
                let per_k = spent / n.max(1) as f64 * 1000.0;
                turn.per_round_us.sort_by(f64::total_cmp);
                let lo = turn.per_round_us.first().copied().unwrap_or(0.0);
                let hi = turn.per_round_us.last().copied().unwrap_or(0.0);
                println!(
                    "{:<40} {:>6} req/s: {n} requests, {spent:.1} ms of CPU = {per_k:.1} ms per 1,000 ({:.1} µs each; rounds {lo:.0}–{hi:.0} µs), errors {errors}",
                    turn.target.name, rate, per_k
                );
                cpu.push((turn.target.name, rate, per_k));
            }
        }

        println!("\nMemory (resident now / peak):");
        for (name, pid) in [
            ("dualrouter static", dr_static.0.id()),
            ("dualrouter MiniLM, 1 session", dr_minilm.0.id()),
            ("dualrouter MiniLM, 2 sessions", dr_pool.0.id()),
        ] {
            let (rss, hwm) = memory_mb(pid);
            println!("{name:<40} {rss:>7.1} MB / {hwm:>7.1} MB");
        }

        println!("\nSummary");
        for (name, best) in &held {
            println!("{name:<40} held {best:>6} req/s");
        }
        let vs_nginx = |added: &[(&str, f64, f64)], at: u64| {
            let get = |name: &str| added.iter().find(|a| a.0 == name).map(|a| (a.1, a.2));
            if let (Some(dr), Some(ng)) = (get("dualrouter pass-through"), get("nginx")) {
                println!(
                    "at {at} req/s: pass-through added vs nginx's: p50 {:.3} / {:.3} ms = {:.2}x, p99 {:.3} / {:.3} ms = {:.2}x (goal p50 <= 2x)",
                    dr.0, ng.0, dr.0 / ng.0, dr.1, ng.1, dr.1 / ng.1
                );
            }
            if let Some(st) = get("dualrouter routed (static)") {
                println!("at {at} req/s: routed (static encoder) added p50 {:.3} ms (goal <= 0.3 ms)", st.0);
            }
        };
        vs_nginx(&added, rate);
        if fast_rate > 0 {
            vs_nginx(&added_fast, fast_rate);
        }
        for &r in &cpu_rates {
            let get = |name: &str| cpu.iter().find(|c| c.0 == name && c.1 == r).map(|c| c.2);
            if let (Some(dr), Some(ng)) = (get("dualrouter pass-through"), get("nginx")) {
                println!(
                    "at {r} req/s: CPU per request, pass-through vs nginx: {dr:.1} / {ng:.1} ms per 1,000 = {:.2}x (goal <= 1.5x)",
                    dr / ng
                );
            }
        }
        let lowest = ramp.first().copied().unwrap_or(1);
        for who in [
            "dualrouter pass-through",
            "dualrouter routed (static)",
            "dualrouter routed (MiniLM)",
            "dualrouter routed (MiniLM, 2 sessions)",
        ] {
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
        if let Some((at, p50)) = pool_added {
            println!("{pool_name} added p50 at {at} req/s (half the rate held): {p50:.3} ms (goal <= 3 ms)");
        }
        if let (Some(one), Some(two)) = (
            rate_of("dualrouter routed (MiniLM)"),
            rate_of("dualrouter routed (MiniLM, 2 sessions)"),
        ) {
            println!(
                "MiniLM, 2 sessions vs 2 x one session's rate: {two} / {} req/s = {:.2}x (goal >= 0.8x where the cores allow: here the load generator and the upstream share the 2 cores)",
                2 * one,
                two as f64 / (2 * one).max(1) as f64
            );
        }
    });
}
