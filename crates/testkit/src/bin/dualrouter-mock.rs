//! `dualrouter-mock`: the test kit's mock LLM upstream as a program, for manual use and benches.
//!
//! ```text
//! dualrouter-mock [--listen ADDR] [--threads N] [--list ID,ID,...] [--force BEHAVIOUR] [--log] [--dump DIR]
//! ```
//!
//! Serves OpenAI chat completions, OpenAI Responses and Anthropic Messages on ADDR (default
//! 127.0.0.1:0); the model id picks the behaviour (see the `dualrouter_testkit` docs), and
//! `GET /stats`, `PUT /force` and `GET /healthz` are there for scripts (`scripts/soak.sh`).
//! Prints `listening on ADDR` once bound. `--threads N`: N runtime worker threads (default: one
//! per core). `--log` prints one line per request to stderr (method, path, model, stream);
//! `--dump DIR` writes each request to `DIR/NNNN.json` (method, path, query, headers, and the
//! body as JSON, or as text when it is not JSON). Without either, requests are counted, not
//! kept, so a long load run does not grow the mock's memory.

use std::net::SocketAddr;
use std::time::Duration;

use dualrouter_testkit::Mock;

const USAGE: &str = "usage: dualrouter-mock [--listen ADDR] [--threads N] [--list ID,ID,...] \
     [--force BEHAVIOUR] [--log] [--dump DIR]";

fn main() {
    let mut listen: SocketAddr = "127.0.0.1:0".parse().expect("address");
    let mut list: Vec<String> = Vec::new();
    let mut force: Option<String> = None;
    let mut log = false;
    let mut dump: Option<std::path::PathBuf> = None;
    let mut threads: Option<usize> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next().unwrap_or_else(|| {
                eprintln!("{name} needs a value\n{USAGE}");
                std::process::exit(2)
            })
        };
        match a.as_str() {
            "--listen" => {
                let v = value("--listen");
                listen = v.parse().unwrap_or_else(|e| {
                    eprintln!("--listen {v}: {e}");
                    std::process::exit(2)
                });
            }
            "--threads" => {
                let v = value("--threads");
                threads = Some(v.parse().ok().filter(|n| *n > 0).unwrap_or_else(|| {
                    eprintln!("--threads {v}: a number above 0");
                    std::process::exit(2)
                }));
            }
            "--list" => list = value("--list").split(',').map(str::to_string).collect(),
            "--force" => force = Some(value("--force")),
            "--log" => log = true,
            "--dump" => dump = Some(value("--dump").into()),
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            other => {
                eprintln!("unknown argument {other}\n{USAGE}");
                std::process::exit(2);
            }
        }
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = threads {
        rt.worker_threads(n);
    }
    let rt = rt.enable_all().build().expect("tokio runtime");
    rt.block_on(async move {
        let mock = match Mock::bind(listen).await {
            Ok(m) => m,
            Err(e) => {
                eprintln!("cannot listen on {listen}: {e}");
                std::process::exit(1);
            }
        };
        let ids: Vec<&str> = list.iter().map(String::as_str).collect();
        mock.list(&ids);
        mock.force(force.as_deref());
        mock.record_requests(log || dump.is_some());
        println!("listening on {}", mock.addr);
        let mut seen = 0;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            if log || dump.is_some() {
                let all = mock.all_requests();
                for (n, r) in all.iter().enumerate().skip(seen) {
                    if let Some(dir) = &dump {
                        write_dump(dir, n, r);
                    }
                    if !log {
                        continue;
                    }
                    let j = r.json.as_ref();
                    let model = j.and_then(|j| j["model"].as_str()).unwrap_or("-");
                    let stream = j.is_some_and(|j| j["stream"] == true);
                    let query = r
                        .query
                        .as_deref()
                        .map(|q| format!("?{q}"))
                        .unwrap_or_default();
                    eprintln!(
                        "{} {}{} model={model} stream={stream} bytes={}",
                        r.method,
                        r.path,
                        query,
                        r.body.len()
                    );
                }
                seen = all.len();
            }
        }
    });
}

fn write_dump(dir: &std::path::Path, n: usize, r: &dualrouter_testkit::Seen) {
    let headers: serde_json::Map<String, serde_json::Value> = r
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                serde_json::Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
            )
        })
        .collect();
    let body = r.json.clone().unwrap_or_else(|| {
        serde_json::Value::String(String::from_utf8_lossy(&r.body).into_owned())
    });
    let v = serde_json::json!({
        "method": r.method.as_str(), "path": r.path, "query": r.query,
        "headers": headers, "body": body
    });
    let _ = std::fs::create_dir_all(dir);
    let file = dir.join(format!("{n:04}.json"));
    if let Err(e) = std::fs::write(&file, format!("{v:#}\n")) {
        eprintln!("--dump {}: {e}", file.display());
    }
}
