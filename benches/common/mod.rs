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
