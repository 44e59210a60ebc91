//! Test guest (not for production): an executor whose behaviour is chosen by the model name, so
//! one component exercises every way a plugin can misbehave. Used by `tests/plugins.rs`.
//!
//! | model | invoke does |
//! |---|---|
//! | `test-echo` | answers `echo: <latest user turn>` with usage 3/5 |
//! | `test-loop` | loops forever (the host's epoch deadline stops it) |
//! | `test-alloc` | allocates without end (the host's memory limit stops it) |
//! | `test-trap` | panics, which traps |
//! | `test-forbidden` | runs `touch <config marker>`, a command it is not allowed |
//! | `test-huge` | returns a 16 MiB answer (over the host's output cap) |
//! | `test-flood` | runs `yes` (allowed in tests), which floods stdout past the host's cap |
//! | `test-slow-command` | runs `sleep 5` with a 200 ms timeout |
//! | `test-http-denied` | sends a request to `http://example.invalid/` (not allowed) |
//! | `test-error` | returns `executor-error::unavailable` |
//!
//! Model ids carry the config key `prefix` in front (default none), so several copies of this
//! plugin can be loaded side by side without declaring the same model twice.
//!
//! `health` answers healthy unless config `health` is `unhealthy`.

wit_bindgen::generate!({ world: "executor", path: "../../wit/v0.1.0" });

use dualrouter::plugin::types::{
    ChatRequest, ChatResponse, ExecutorError, ExecutorInfo, HealthReport, HealthStatus, ModelInfo,
    Usage,
};
use dualrouter::plugin::{config, http, log, process};
use exports::dualrouter::plugin::executor_api::Guest;

struct TestExecutor;

fn prefix() -> String {
    config::get("prefix").unwrap_or_default()
}

const MODELS: &[&str] = &[
    "test-echo",
    "test-loop",
    "test-alloc",
    "test-trap",
    "test-forbidden",
    "test-huge",
    "test-flood",
    "test-slow-command",
    "test-http-denied",
    "test-error",
];

fn command_error(e: process::CommandError) -> ExecutorError {
    ExecutorError::Failed(match e {
        process::CommandError::NotAllowed(m) => format!("not-allowed: {m}"),
        process::CommandError::SpawnFailed(m) => format!("spawn-failed: {m}"),
        process::CommandError::TimedOut(ms) => format!("timed-out: {ms}"),
        process::CommandError::OutputTooLarge(n) => format!("output-too-large: {n}"),
    })
}

fn run(program: &str, args: &[&str], timeout_ms: u32) -> Result<ChatResponse, ExecutorError> {
    let out = process::run(&process::Command {
        program: program.into(),
        args: args.iter().map(|a| a.to_string()).collect(),
        stdin: Vec::new(),
        timeout_ms,
    })
    .map_err(command_error)?;
    Ok(ChatResponse {
        text: String::from_utf8_lossy(&out.stdout).into_owned(),
        usage: None,
        finish_reason: "stop".into(),
    })
}

impl Guest for TestExecutor {
    fn describe() -> ExecutorInfo {
        ExecutorInfo {
            id: "test-executor".into(),
            kind: "test".into(),
            models: MODELS
                .iter()
                .map(|m| ModelInfo {
                    id: format!("{}{m}", prefix()),
                    description: format!("test behaviour {m}"),
                    context_tokens: 8192,
                    input_cost_per_mtok: 1.0,
                    output_cost_per_mtok: 2.0,
                    tier: Some("test".into()),
                    capabilities: vec![],
                })
                .collect(),
        }
    }

    fn health() -> HealthReport {
        if config::get("health").as_deref() == Some("unhealthy") {
            HealthReport {
                status: HealthStatus::Unhealthy,
                detail: "configured unhealthy".into(),
            }
        } else {
            HealthReport {
                status: HealthStatus::Healthy,
                detail: "ok".into(),
            }
        }
    }

    fn invoke(request: ChatRequest) -> Result<ChatResponse, ExecutorError> {
        log::log(log::Level::Debug, &format!("invoke {}", request.model));
        let prefix = prefix();
        let behaviour = request.model.strip_prefix(prefix.as_str()).unwrap_or("");
        match behaviour {
            "test-echo" => {
                let last = request
                    .messages
                    .iter()
                    .rev()
                    .find(|m| m.role == "user")
                    .map(|m| m.content.clone())
                    .unwrap_or_default();
                Ok(ChatResponse {
                    text: format!("echo: {last}"),
                    usage: Some(Usage {
                        input_tokens: 3,
                        output_tokens: 5,
                    }),
                    finish_reason: "stop".into(),
                })
            }
            "test-loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "test-alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "test-trap" => panic!("deliberate trap for the host's tests"),
            "test-forbidden" => {
                let marker =
                    config::get("marker").unwrap_or_else(|| "/tmp/dualrouter-forbidden".into());
                run("touch", &[&marker], 0)
            }
            "test-huge" => Ok(ChatResponse {
                text: "x".repeat(16 << 20),
                usage: None,
                finish_reason: "stop".into(),
            }),
            "test-flood" => run("yes", &[], 0),
            "test-slow-command" => run("sleep", &["5"], 200),
            "test-http-denied" => {
                let r = http::send(&http::Request {
                    method: "GET".into(),
                    url: "http://example.invalid/".into(),
                    headers: vec![],
                    body: vec![],
                    timeout_ms: 0,
                });
                match r {
                    Ok(_) => Ok(ChatResponse {
                        text: "reached".into(),
                        usage: None,
                        finish_reason: "stop".into(),
                    }),
                    Err(http::HttpError::NotAllowed(m)) => {
                        Err(ExecutorError::Failed(format!("not-allowed: {m}")))
                    }
                    Err(e) => Err(ExecutorError::Failed(format!("{e:?}"))),
                }
            }
            "test-error" => Err(ExecutorError::Unavailable("configured to fail".into())),
            _ => Err(ExecutorError::UnknownModel(request.model.clone())),
        }
    }
}

export!(TestExecutor);
