//! What translating the Responses API to chat completions costs, beside plain pass-through: the
//! same conversations sent at a fixed rate straight to the demo upstream (chat), through the
//! proxy as chat (passed through), and through the proxy as a Responses request (translated to
//! chat, the answer translated back), interleaved in one run so all three see the same noise.
//! Prints each arm's latency and the proxy's added latency (p50/p99, against direct), and the
//! ratio translated-added / passed-through-added, for a one-line prompt and for an agent-sized
//! request (a system prompt, a dozen tools, a few turns with tool calls: about 30 KB).
//!
//! Run: `cargo bench --bench translation_overhead`.
//! Knobs (env): BENCH_RATES="200", BENCH_SECONDS=10.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod common;
use common::{demo_upstream, interleaved, machine, pct_duration, Arm, Kill};

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The same conversation as a chat request and as a Responses request.
fn bodies(agent_sized: bool) -> (Value, Value) {
    if !agent_sized {
        return (
            json!({"model": "bench", "messages": [{"role": "user", "content": "hello, how are you today?"}]}),
            json!({"model": "bench", "input": "hello, how are you today?"}),
        );
    }
    let params = json!({"type": "object", "properties": {
        "cmd": {"type": "string", "description": "The shell command to run, with its arguments."},
        "workdir": {"type": "string", "description": "The working directory; the session's when absent."},
        "timeout_ms": {"type": "number", "description": "Stop the command after this long."}},
        "required": ["cmd"], "additionalProperties": false});
    let description = "Runs a command in a pseudo-terminal and returns its output, or a session id to keep interacting with it. ".repeat(6);
    let system = "You are a coding agent working in a terminal. Be precise and safe; explain what you run and why. ".repeat(60);
    let mut chat_tools = Vec::new();
    let mut resp_tools = Vec::new();
    for i in 0..12 {
        let name = format!("tool_{i}");
        chat_tools.push(json!({"type": "function", "function": {"name": name, "description": description, "parameters": params}}));
        resp_tools.push(json!({"type": "function", "name": name, "description": description, "parameters": params, "strict": false}));
    }
    let mut chat_msgs = vec![json!({"role": "system", "content": system})];
    let mut input = Vec::new();
    for turn in 0..4 {
        let ask = format!(
            "Step {turn}: list the files, then show me the failing test's output in detail."
        );
        let args = json!({"cmd": format!("ls -la && cargo test step_{turn}")}).to_string();
        let output = format!(
            "test step_{turn} ... FAILED\n{}",
            "assertion failed at src/lib.rs:42\n".repeat(20)
        );
        let call_id = format!("call_{turn}");
        chat_msgs.push(json!({"role": "user", "content": ask}));
        chat_msgs.push(json!({"role": "assistant", "content": null, "tool_calls": [{"id": call_id, "type": "function", "function": {"name": "tool_0", "arguments": args}}]}));
        chat_msgs.push(json!({"role": "tool", "tool_call_id": call_id, "content": output}));
        input.push(json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": ask}]}));
        input.push(json!({"type": "function_call", "call_id": call_id, "name": "tool_0", "arguments": args}));
        input.push(json!({"type": "function_call_output", "call_id": call_id, "output": output}));
    }
    (
        json!({"model": "bench", "messages": chat_msgs, "tools": chat_tools, "tool_choice": "auto"}),
        json!({"model": "bench", "instructions": system, "input": input, "tools": resp_tools,
               "tool_choice": "auto", "store": false}),
    )
}

struct Arms {
    direct: Vec<Duration>,
    passthrough: Vec<Duration>,
    translated: Vec<Duration>,
    errors: usize,
}

async fn run_at(
    client: &reqwest::Client,
    urls: [String; 3],
    bodies: [bytes::Bytes; 3],
    rate: u64,
    secs: u64,
) -> Arms {
    let arms: Vec<Arm> = urls
        .into_iter()
        .zip(bodies)
        .map(|(url, body)| Arm::new(url, body))
        .collect();
    let r = interleaved(client, &arms, rate, secs).await;
    let [direct, passthrough, translated] = <[_; 3]>::try_from(r.latencies).unwrap();
    Arms {
        direct,
        passthrough,
        translated,
        errors: r.errors,
    }
}

/// User + system CPU time of a process so far, in seconds (`/proc/PID/stat`).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let hz = 100.0;
    (ticks(11) + ticks(12)) / hz
}

/// One arm alone at `rate` for `secs`; returns the requests completed.
async fn one_arm(
    client: &reqwest::Client,
    url: &str,
    body: &bytes::Bytes,
    rate: u64,
    secs: u64,
) -> usize {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let mut tasks = Vec::new();
    for _ in 0..rate * secs {
        tick.tick().await;
        let (client, url, body) = (client.clone(), url.to_string(), body.clone());
        tasks.push(tokio::spawn(async move {
            client
                .post(&url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += usize::from(t.await.unwrap_or(false));
    }
    ok
}

fn main() {
    let bin = env!("CARGO_BIN_EXE_dualrouter");
    let rates: Vec<u64> = std::env::var("BENCH_RATES")
        .unwrap_or_else(|_| "200".into())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    let secs: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);

    let (_upstream, up_port) = demo_upstream(bin);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bench.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:0\nadmin: {{ listen: 127.0.0.1:0 }}\nserver: {{ threads: 1 }}\nresponse_store: {{ enabled: false }}\nproviders:\n  - {{ name: demo, kind: openai, base_url: \"http://127.0.0.1:{up_port}/v1\", models: [ {{ id: bench, upstream_id: demo }} ] }}\nmirt: {{ checkpoint: {root}/checkpoints/default.json, encoder: {{ models_dir: {root}/models }} }}\n",
            root = env!("CARGO_MANIFEST_DIR"),
        ),
    )
    .unwrap();
    let ready = dir.path().join("ready.json");
    let proxy = Kill(
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
    let pid = proxy.0.id();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(20);
        let proxy_addr = loop {
            if let Ok(t) = std::fs::read_to_string(&ready) {
                if let Ok(v) = serde_json::from_str::<Value>(&t) {
                    break v["proxy"].as_str().unwrap().to_string();
                }
            }
            assert!(Instant::now() < deadline, "proxy did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let urls = [
            format!("http://127.0.0.1:{up_port}/v1/chat/completions"),
            format!("http://{proxy_addr}/v1/chat/completions"),
            format!("http://{proxy_addr}/v1/responses"),
        ];
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(512)
            .build()
            .unwrap();
        println!("{}", machine());
        println!(
            "Responses → chat translation against chat pass-through: demo upstream, non-streaming, {secs} s per rate, the three arms interleaved"
        );
        println!(
            "{:>6} {:>6} {:>7} {:>11} {:>11} {:>11} {:>12} {:>12} {:>12} {:>12} {:>8}",
            "size", "rate", "errors", "direct p50", "pass p50", "trans p50", "pass+ p50", "trans+ p50", "pass+ p99", "trans+ p99", "ratio"
        );
        for agent_sized in [false, true] {
            let (chat, responses) = bodies(agent_sized);
            let b = |v: &Value| bytes::Bytes::from(v.to_string());
            let arms = [b(&chat), b(&chat), b(&responses)];
            // Warm up every path.
            for (u, body) in urls.iter().zip(&arms) {
                loop {
                    let ok = client.post(u).header("content-type", "application/json").body(body.clone()).send().await
                        .is_ok_and(|r| r.status().is_success());
                    if ok {
                        break;
                    }
                    assert!(Instant::now() < deadline, "{u} not answering");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            run_at(&client, urls.clone(), arms.clone(), 150, 2).await;
            // CPU per request of each proxied arm alone, from the proxy's own accounting.
            let mut cpu = Vec::new();
            for arm in 1..3 {
                let before = cpu_seconds(pid);
                let n = one_arm(&client, &urls[arm], &arms[arm], 200, secs.min(5)).await;
                cpu.push((cpu_seconds(pid) - before) / n as f64 * 1e6);
            }
            println!(
                "{:>6} CPU per request: passed through {:.0} µs, translated {:.0} µs ({:.2}×)",
                if agent_sized { "agent" } else { "small" },
                cpu[0],
                cpu[1],
                cpu[1] / cpu[0]
            );
            for &rate in &rates {
                let r = run_at(&client, urls.clone(), arms.clone(), rate, secs).await;
                let ms = |d: Duration| d.as_secs_f64() * 1e3;
                let q = |v: &[Duration], p: f64| ms(pct_duration(v, p));
                let (d50, d99) = (q(&r.direct, 0.5), q(&r.direct, 0.99));
                let (p50, p99) = (q(&r.passthrough, 0.5), q(&r.passthrough, 0.99));
                let (t50, t99) = (q(&r.translated, 0.5), q(&r.translated, 0.99));
                println!(
                    "{:>6} {:>6} {:>7} {:>9.3}ms {:>9.3}ms {:>9.3}ms {:>10.3}ms {:>10.3}ms {:>10.3}ms {:>10.3}ms {:>7.2}×",
                    if agent_sized { "agent" } else { "small" },
                    rate, r.errors, d50, p50, t50, p50 - d50, t50 - d50, p99 - d99, t99 - d99,
                    (t50 - d50) / (p50 - d50)
                );
            }
        }
        println!("ratio: the translated arm's added p50 over the passed-through arm's (goal ≤ 1.2×)");
    });
}
