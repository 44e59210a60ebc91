//! What the benches share: child processes killed on drop, free ports, percentiles.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A child process, killed and reaped when dropped.
pub struct Kill(pub Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port free on 127.0.0.1 now (for a child process to bind).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `q` quantile (nearest rank) of sorted durations; zero when there are none.
pub fn pct_duration(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

/// The `q` quantile of sorted durations in milliseconds; NaN when there are none.
pub fn pct_ms(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    pct_duration(sorted, q).as_secs_f64() * 1e3
}

/// The `q` quantile (nearest rank) of unsorted samples.
pub fn pct(samples: &[f64], q: f64) -> f64 {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// `dualrouter demo-upstream` on a free port of 127.0.0.1: the process and its port.
pub fn demo_upstream(bin: &str) -> (Kill, u16) {
    let port = free_port();
    let child = Command::new(bin)
        .args(["demo-upstream", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    (Kill(child), port)
}

/// One line naming what a run measured on: the CPU's model name, the vector extensions the encoder's integer
/// kernels depend on, the cores and the load average at the start. Encoder timings differ more between CPUs than
/// between anything we change (docs/benchmarks.md#encoder-and-classification), so a figure goes with its machine.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        cpuinfo
            .lines()
            .find(|l| l.split(':').next().is_some_and(|k| k.trim() == name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    };
    let model = field("model name").unwrap_or_else(|| "unknown CPU".into());
    let flags = field("flags").unwrap_or_default();
    let flags: Vec<&str> = flags.split_whitespace().collect();
    let has: Vec<&str> = ["avx2", "fma", "avx512bw", "avx512_vnni", "avx_vnni"]
        .into_iter()
        .filter(|f| flags.contains(f))
        .collect();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "machine: {model} ({cores} cores; {}), load average {load}",
        if has.is_empty() {
            "no AVX2".to_string()
        } else {
            has.join(" ")
        }
    )
}

/// One kind of request a bench interleaves with others: where it goes, what it sends, and the
/// bearer key it carries (if any).
#[derive(Clone)]
pub struct Arm {
    pub url: String,
    pub body: bytes::Bytes,
    pub bearer: Option<String>,
}

impl Arm {
    pub fn new(url: impl Into<String>, body: impl Into<bytes::Bytes>) -> Self {
        Self {
            url: url.into(),
            body: body.into(),
            bearer: None,
        }
    }

    pub fn with_bearer(mut self, key: &str) -> Self {
        self.bearer = Some(key.to_string());
        self
    }
}

/// What an interleaved run measured: each arm's latencies (sorted; failed requests left out),
/// the failures, and the rate achieved over all arms.
pub struct Interleaved {
    pub latencies: Vec<Vec<std::time::Duration>>,
    pub errors: usize,
    pub achieved_rps: f64,
}

/// Sends `rate` requests a second for `secs` seconds, open loop (each on its own task, on a
/// fixed schedule whatever the answers' latency), taking the arms in turn so that every arm sees
/// the same noise. A request counts when its status is a success and its body was read whole.
pub async fn interleaved(
    client: &reqwest::Client,
    arms: &[Arm],
    rate: u64,
    secs: u64,
) -> Interleaved {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let lat: Vec<Arc<std::sync::Mutex<Vec<Duration>>>> =
        arms.iter().map(|_| Default::default()).collect();
    let errors = Arc::new(AtomicUsize::new(0));
    let total = rate * secs;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = std::time::Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        tick.tick().await;
        let n = (i % arms.len() as u64) as usize;
        let (arm, sink) = (arms[n].clone(), lat[n].clone());
        let (client, errors) = (client.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let t = std::time::Instant::now();
            let mut req = client
                .post(&arm.url)
                .header("content-type", "application/json")
                .body(arm.body);
            if let Some(key) = &arm.bearer {
                req = req.bearer_auth(key);
            }
            let ok = match req.send().await {
                Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                Err(_) => false,
            };
            if ok {
                sink.lock().unwrap().push(t.elapsed());
            } else {
                errors.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let latencies: Vec<Vec<Duration>> = lat
        .iter()
        .map(|l| {
            let mut v = l.lock().unwrap().clone();
            v.sort();
            v
        })
        .collect();
    Interleaved {
        achieved_rps: latencies.iter().map(Vec::len).sum::<usize>() as f64 / elapsed,
        latencies,
        errors: errors.load(Ordering::Relaxed),
    }
}
