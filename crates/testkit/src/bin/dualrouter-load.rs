//! `dualrouter-load`: the load generator of `scripts/soak.sh`. Each mode prints one JSON object
//! on stdout (the script reads it) and a human line on stderr.
//!
//! - `sse`: N streams through the proxy, each compared byte for byte with what the mock's
//!   `sse:C:S` stream must look like to an OpenAI client (`dualrouter_testkit::openai_sse_bytes`).
//! - `rate`: an open-loop constant rate for a duration (requests are sent on schedule whatever
//!   the answers do), counting statuses, latencies of answers and refusals, `Retry-After` on
//!   refusals, and writing the decision id of every answer to a file.
//! - `capacity`: a closed loop of C workers for a duration: the rate the proxy sustains.
//! - `slow`: clients dribbling a request header or body a byte at a time; how long until the
//!   proxy closes each.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Parser)]
#[command(name = "dualrouter-load", about = "Load generator for scripts/soak.sh")]
struct Cli {
    /// Tokio worker threads of the generator.
    #[arg(long, default_value_t = 1, global = true)]
    threads: usize,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    Sse(SseArgs),
    Rate(RateArgs),
    Capacity(CapacityArgs),
    Slow(SlowArgs),
}

#[derive(clap::Args)]
struct SseArgs {
    /// The proxy, e.g. http://127.0.0.1:8080
    #[arg(long)]
    url: String,
    /// The model clients ask for.
    #[arg(long)]
    model: String,
    /// The upstream model id (what the mock puts in each chunk), e.g. `sse:200:64`.
    #[arg(long)]
    upstream_model: String,
    #[arg(long, default_value_t = 200)]
    chunks: usize,
    #[arg(long, default_value_t = 64)]
    size: usize,
    #[arg(long, default_value_t = 10_000)]
    streams: usize,
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
}

#[derive(clap::Args)]
struct RateArgs {
    #[arg(long)]
    url: String,
    #[arg(long)]
    model: String,
    /// Requests per second.
    #[arg(long)]
    rate: f64,
    #[arg(long)]
    seconds: f64,
    #[arg(long)]
    stream: bool,
    /// Path: `/v1/chat/completions` or `/v1/messages`.
    #[arg(long, default_value = "/v1/chat/completions")]
    path: String,
    /// Append the decision id of every answer (one a line) here.
    #[arg(long)]
    ids_out: Option<std::path::PathBuf>,
    /// Give up on one request after this long.
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
    /// Most requests (so connections) open at once, like that many clients each with one
    /// connection; a request due while all are busy waits for one, and its latency counts from
    /// when it was due. 0: no limit (a new connection whenever none is idle).
    #[arg(long, default_value_t = 0)]
    connections: usize,
}

#[derive(clap::Args)]
struct CapacityArgs {
    #[arg(long)]
    url: String,
    #[arg(long)]
    model: String,
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    #[arg(long)]
    stream: bool,
}

#[derive(clap::Args)]
struct SlowArgs {
    /// host:port of the proxy.
    #[arg(long)]
    addr: String,
    #[arg(long, default_value_t = 50)]
    clients: usize,
    /// `header` or `body`.
    #[arg(long, default_value = "header")]
    what: String,
    /// Pause between two bytes.
    #[arg(long, default_value_t = 500)]
    interval_ms: u64,
    /// Stop dribbling after this long (a client still open then counts as not closed).
    #[arg(long, default_value_t = 120.0)]
    seconds: f64,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dualrouter-load: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let out = rt.block_on(async {
        match cli.mode {
            Mode::Sse(a) => sse(a).await,
            Mode::Rate(a) => rate(a).await,
            Mode::Capacity(a) => capacity(a).await,
            Mode::Slow(a) => slow(a).await,
        }
    });
    println!("{out}");
    std::process::ExitCode::SUCCESS
}

fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .pool_max_idle_per_host(4096)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

fn body(model: &str, path: &str, i: u64, stream: bool) -> Value {
    let prompt = format!("load test request {i}: say hello to the router");
    if path.ends_with("/messages") {
        json!({"model": model, "max_tokens": 64, "stream": stream,
               "messages": [{"role": "user", "content": prompt}]})
    } else {
        json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": prompt}]})
    }
}

/// p50/p90/p99/max of latencies, in ms.
fn summary(mut v: Vec<f64>) -> Value {
    if v.is_empty() {
        return json!({"n": 0});
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let p = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    json!({"n": v.len(), "p50": round(p(0.5)), "p90": round(p(0.9)), "p99": round(p(0.99)), "max": round(p(1.0))})
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

async fn sse(a: SseArgs) -> Value {
    let expected = Arc::new(dualrouter_testkit::openai_sse_bytes(
        &a.upstream_model,
        a.chunks,
        a.size,
        false,
    ));
    let client = client(Duration::from_secs(60));
    let next = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let mismatched = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let first_bad: Arc<Mutex<Option<String>>> = Arc::default();
    let url = format!("{}/v1/chat/completions", a.url);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..a.concurrency.max(1) {
        let (client, url, expected, next, ok, mismatched, failed, bytes, first_bad) = (
            client.clone(),
            url.clone(),
            expected.clone(),
            next.clone(),
            ok.clone(),
            mismatched.clone(),
            failed.clone(),
            bytes.clone(),
            first_bad.clone(),
        );
        let (model, streams) = (a.model.clone(), a.streams as u64);
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= streams {
                    return;
                }
                let r = client
                    .post(&url)
                    .json(&body(&model, "/v1/chat/completions", i, true))
                    .send()
                    .await;
                let got = match r {
                    Ok(r) if r.status() == 200 => r.bytes().await.map_err(|e| e.to_string()),
                    Ok(r) => Err(format!("status {}", r.status())),
                    Err(e) => Err(e.to_string()),
                };
                match got {
                    Ok(b) => {
                        bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
                        if b[..] == expected[..] {
                            ok.fetch_add(1, Ordering::Relaxed);
                        } else {
                            mismatched.fetch_add(1, Ordering::Relaxed);
                            if let Ok(mut f) = first_bad.lock() {
                                f.get_or_insert_with(|| {
                                    format!(
                                        "stream {i}: {} bytes, expected {}",
                                        b.len(),
                                        expected.len()
                                    )
                                });
                            }
                        }
                    }
                    Err(e) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut f) = first_bad.lock() {
                            f.get_or_insert_with(|| format!("stream {i}: {e}"));
                        }
                    }
                }
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let secs = started.elapsed().as_secs_f64();
    let v = json!({
        "mode": "sse", "streams": a.streams, "chunks": a.chunks, "chunk_bytes": a.size,
        "identical": ok.load(Ordering::SeqCst),
        "mismatched": mismatched.load(Ordering::SeqCst),
        "failed": failed.load(Ordering::SeqCst),
        "bytes_received": bytes.load(Ordering::SeqCst),
        "expected_bytes_per_stream": expected.len(),
        "seconds": round(secs),
        "first_problem": first_bad.lock().ok().and_then(|f| f.clone()),
    });
    eprintln!(
        "sse: {} streams x {} chunks: {} identical, {} mismatched, {} failed in {:.1} s",
        a.streams, a.chunks, v["identical"], v["mismatched"], v["failed"], secs
    );
    v
}

#[derive(Default)]
struct RateStats {
    status: BTreeMap<String, u64>,
    ok_ms: Vec<f64>,
    refused_ms: Vec<f64>,
    other_ms: Vec<f64>,
    /// From the request's send (a connection in hand) to its answer.
    ok_service_ms: Vec<f64>,
    refused_service_ms: Vec<f64>,
    refused_without_retry_after: u64,
    incomplete_streams: u64,
    transport_errors: BTreeMap<String, u64>,
}

async fn rate(a: RateArgs) -> Value {
    let client = client(Duration::from_millis(a.timeout_ms));
    let stats: Arc<Mutex<RateStats>> = Arc::default();
    let ids: Arc<Mutex<Vec<String>>> = Arc::default();
    let url = format!("{}{}", a.url, a.path);
    let total = (a.rate * a.seconds).round() as u64;
    let period = Duration::from_secs_f64(1.0 / a.rate.max(0.001));
    let started = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    let in_flight = Arc::new(AtomicU64::new(0));
    let mut max_in_flight = 0u64;
    let permits = (a.connections > 0).then(|| Arc::new(tokio::sync::Semaphore::new(a.connections)));
    let waits: Arc<Mutex<Vec<f64>>> = Arc::default();
    for i in 0..total {
        // On schedule, whatever the answers do (open loop).
        let due = started + period.mul_f64(i as f64);
        tokio::time::sleep_until(due).await;
        max_in_flight = max_in_flight.max(in_flight.load(Ordering::Relaxed));
        let (client, url, stats, ids, in_flight) = (
            client.clone(),
            url.clone(),
            stats.clone(),
            ids.clone(),
            in_flight.clone(),
        );
        let req = body(&a.model, &a.path, i, a.stream);
        let stream = a.stream;
        let (permits, waits) = (permits.clone(), waits.clone());
        in_flight.fetch_add(1, Ordering::Relaxed);
        tasks.push(tokio::spawn(async move {
            // Latency counts from when the request was due, however late the generator is.
            let t = due.into_std();
            let _permit = match &permits {
                Some(p) => {
                    let permit = p.clone().acquire_owned().await.ok();
                    waits
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(t.elapsed().as_secs_f64() * 1e3);
                    permit
                }
                None => None,
            };
            let sent = Instant::now();
            let r = client.post(&url).json(&req).send().await;
            match r {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let retry_after = r.headers().contains_key("retry-after");
                    let id = r
                        .headers()
                        .get("x-dualrouter-decision-id")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let body = r.bytes().await;
                    let ms = t.elapsed().as_secs_f64() * 1e3;
                    let service = sent.elapsed().as_secs_f64() * 1e3;
                    let mut s = stats.lock().unwrap_or_else(|p| p.into_inner());
                    match body {
                        Err(e) => {
                            *s.transport_errors
                                .entry(format!("body: {}", kind(&e)))
                                .or_insert(0) += 1;
                        }
                        Ok(b) => {
                            *s.status.entry(status.to_string()).or_insert(0) += 1;
                            if status == 200 {
                                s.ok_ms.push(ms);
                                s.ok_service_ms.push(service);
                                if stream
                                    && !(b.ends_with(b"data: [DONE]\n\n")
                                        || b.ends_with(b"data: {\"type\":\"message_stop\"}\n\n"))
                                {
                                    s.incomplete_streams += 1;
                                }
                            } else if status == 429 || status == 503 {
                                s.refused_ms.push(ms);
                                s.refused_service_ms.push(service);
                                if !retry_after {
                                    s.refused_without_retry_after += 1;
                                }
                            } else {
                                s.other_ms.push(ms);
                            }
                        }
                    }
                    drop(s);
                    if let Some(id) = id {
                        ids.lock().unwrap_or_else(|p| p.into_inner()).push(id);
                    }
                }
                Err(e) => {
                    let mut s = stats.lock().unwrap_or_else(|p| p.into_inner());
                    *s.transport_errors.entry(kind(&e)).or_insert(0) += 1;
                }
            }
            in_flight.fetch_sub(1, Ordering::Relaxed);
        }));
    }
    let sent_in = started.elapsed().as_secs_f64();
    for t in tasks {
        let _ = t.await;
    }
    let secs = started.elapsed().as_secs_f64();
    if let Some(path) = &a.ids_out {
        let ids = ids.lock().unwrap_or_else(|p| p.into_inner());
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            Ok(mut f) => {
                for id in ids.iter() {
                    let _ = writeln!(f, "{id}");
                }
            }
            Err(e) => eprintln!("rate: cannot write {}: {e}", path.display()),
        }
    }
    let s = std::mem::take(&mut *stats.lock().unwrap_or_else(|p| p.into_inner()));
    let errors: u64 = s.transport_errors.values().sum();
    let ok = s.status.get("200").copied().unwrap_or(0);
    let v = json!({
        "mode": "rate", "model": a.model, "rate": a.rate, "seconds": a.seconds, "stream": a.stream,
        "sent": total, "sent_in_s": round(sent_in), "done_in_s": round(secs),
        "status": s.status, "ok": ok,
        "transport_errors": errors, "transport_error_kinds": s.transport_errors,
        "refused_without_retry_after": s.refused_without_retry_after,
        "incomplete_streams": s.incomplete_streams,
        "generator_max_in_flight": max_in_flight,
        "connections": a.connections,
        "connection_wait_ms": summary(std::mem::take(&mut *waits.lock().unwrap_or_else(|p| p.into_inner()))),
        "latency_ms": {"ok": summary(s.ok_ms), "refused": summary(s.refused_ms), "other": summary(s.other_ms)},
        "service_ms": {"ok": summary(s.ok_service_ms), "refused": summary(s.refused_service_ms)},
    });
    eprintln!(
        "rate: {} req at {}/s for {} s: status {} transport errors {}",
        total, a.rate, a.seconds, v["status"], errors
    );
    v
}

fn kind(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        // Which connect failure (refused, no local port left, ...) matters to the reading.
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                return match io.raw_os_error() {
                    Some(_) => format!("connect: {io}"),
                    None => format!("connect: {:?}", io.kind()),
                };
            }
            source = s.source();
        }
        "connect".into()
    } else if e.is_body() || e.is_decode() {
        "body".into()
    } else {
        "other".into()
    }
}

async fn capacity(a: CapacityArgs) -> Value {
    let client = client(Duration::from_secs(30));
    let url = format!("{}/v1/chat/completions", a.url);
    let until = Instant::now() + Duration::from_secs_f64(a.seconds);
    let lat: Arc<Mutex<Vec<f64>>> = Arc::default();
    let errors = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..a.concurrency.max(1) {
        let (client, url, lat, errors, next, model, stream) = (
            client.clone(),
            url.clone(),
            lat.clone(),
            errors.clone(),
            next.clone(),
            a.model.clone(),
            a.stream,
        );
        workers.push(tokio::spawn(async move {
            while Instant::now() < until {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                let ok = match client
                    .post(&url)
                    .json(&body(&model, "/v1/chat/completions", i, stream))
                    .send()
                    .await
                {
                    Ok(r) => r.status() == 200 && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if ok {
                    lat.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(t.elapsed().as_secs_f64() * 1e3);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let secs = started.elapsed().as_secs_f64();
    let lat = std::mem::take(&mut *lat.lock().unwrap_or_else(|p| p.into_inner()));
    let n = lat.len();
    let v = json!({
        "mode": "capacity", "concurrency": a.concurrency, "seconds": round(secs),
        "ok": n, "errors": errors.load(Ordering::SeqCst),
        "rps": round(n as f64 / secs), "latency_ms": summary(lat),
    });
    eprintln!(
        "capacity: {} workers: {:.0} req/s, {} errors",
        a.concurrency,
        n as f64 / secs,
        v["errors"]
    );
    v
}

async fn slow(a: SlowArgs) -> Value {
    let limit = Duration::from_secs_f64(a.seconds);
    let interval = Duration::from_millis(a.interval_ms);
    let mut tasks = Vec::new();
    for i in 0..a.clients {
        let (addr, what) = (a.addr.clone(), a.what.clone());
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let Ok(mut s) = tokio::net::TcpStream::connect(&addr).await else {
                return (None, None);
            };
            let head = if what == "body" {
                format!("POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\ncontent-type: application/json\r\ncontent-length: 1000000\r\n\r\n{{\"model\": \"slow-{i}\", ")
            } else {
                format!("POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nx-slow-{i}: ")
            };
            if s.write_all(head.as_bytes()).await.is_err() {
                return (Some(started.elapsed()), None);
            }
            let mut answer = Vec::new();
            while started.elapsed() < limit {
                let mut buf = [0u8; 4096];
                match tokio::time::timeout(interval, s.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => {
                        return (Some(started.elapsed()), status_of(&answer));
                    }
                    Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
                    Err(_) => {
                        if s.write_all(b"a").await.is_err() {
                            return (Some(started.elapsed()), status_of(&answer));
                        }
                    }
                }
            }
            (None, status_of(&answer))
        }));
    }
    let mut closed = Vec::new();
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    let mut open = 0u64;
    for t in tasks {
        match t.await {
            Ok((Some(d), status)) => {
                closed.push(d.as_secs_f64());
                *statuses
                    .entry(status.unwrap_or_else(|| "none".into()))
                    .or_insert(0) += 1;
            }
            Ok((None, _)) | Err(_) => open += 1,
        }
    }
    let n_closed = closed.len();
    let s = summary(closed.iter().map(|x| x * 1e3).collect());
    let v = json!({
        "mode": "slow", "what": a.what, "clients": a.clients, "interval_ms": a.interval_ms,
        "closed_by_proxy": n_closed, "still_open_at_end": open, "answers": statuses,
        "closed_after_ms": s,
    });
    eprintln!(
        "slow {}: {} clients, {} closed by the proxy (median {} ms), {} still open",
        a.what, a.clients, n_closed, v["closed_after_ms"]["p50"], open
    );
    v
}

/// The status code of an HTTP answer's first line, if one came.
fn status_of(answer: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(answer);
    let line = text.lines().next()?;
    line.split_whitespace().nth(1).map(str::to_string)
}
