//! Executor adapter for Augment's `auggie` CLI.
//!
//! Each request runs `auggie --print --quiet [--model M] PROMPT` through the host's `process`
//! capability (so `auggie` must be in the plugin's `allow_commands`):
//! - `--print` (`-p`): non-interactive, answer once and exit;
//! - `--quiet` (`-q`): only the final answer on stdout (no progress or tool chatter);
//! - `--model` (`-m`): the CLI model, when the configured model id maps to one.
//!
//! Its stdout (ANSI stripped, trimmed) is the reply. A non-zero exit is an error: "not logged in"
//! on stderr means `unavailable`, anything else `failed`, with the tail of stderr. `health` runs
//! `auggie --version`. The CLI reads its login from the host environment (e.g.
//! `AUGMENT_SESSION_AUTH`), which the child process inherits.
//!
//! Config keys (all optional): `command` (default `auggie`), `models` (`id[=cli-model],…`,
//! default `auggie`), `context_tokens` (200000), `input_cost_per_mtok` / `output_cost_per_mtok`
//! (0: subscription), `tier` (`premium`), `max_prompt_bytes` (100000; Linux caps one argument at
//! 128 KiB), `timeout_ms` (0: the host's limit), `extra_args` (space-separated, appended before
//! the prompt).

wit_bindgen::generate!({ world: "executor", path: "../../wit/v0.1.0" });

use cli_common::{estimate_tokens, parse_models, render_prompt, strip_ansi, tail, Turn};
use dualrouter::plugin::types::{
    ChatRequest, ChatResponse, ExecutorError, ExecutorInfo, HealthReport, HealthStatus, ModelInfo,
    Usage,
};
use dualrouter::plugin::{config, process};
use exports::dualrouter::plugin::executor_api::Guest;

struct Auggie;

fn cfg(key: &str, default: &str) -> String {
    config::get(key).unwrap_or_else(|| default.to_string())
}

fn cfg_num<T: std::str::FromStr>(key: &str, default: T) -> T {
    config::get(key)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn run(args: Vec<String>, timeout_ms: u32) -> Result<process::CommandOutput, ExecutorError> {
    process::run(&process::Command {
        program: cfg("command", "auggie"),
        args,
        stdin: Vec::new(),
        timeout_ms,
    })
    .map_err(|e| match e {
        process::CommandError::NotAllowed(m) | process::CommandError::SpawnFailed(m) => {
            ExecutorError::Unavailable(m)
        }
        process::CommandError::TimedOut(ms) => {
            ExecutorError::Failed(format!("auggie ran past {ms} ms"))
        }
        process::CommandError::OutputTooLarge(n) => {
            ExecutorError::Failed(format!("auggie wrote more than {n} bytes"))
        }
    })
}

impl Guest for Auggie {
    fn describe() -> ExecutorInfo {
        let models = parse_models(&cfg("models", "auggie"))
            .into_iter()
            .map(|m| ModelInfo {
                description: format!(
                    "Augment's auggie agent{}",
                    m.cli_model
                        .as_deref()
                        .map(|c| format!(" ({c})"))
                        .unwrap_or_default()
                ),
                id: m.id,
                context_tokens: cfg_num("context_tokens", 200_000),
                input_cost_per_mtok: cfg_num("input_cost_per_mtok", 0.0),
                output_cost_per_mtok: cfg_num("output_cost_per_mtok", 0.0),
                tier: Some(cfg("tier", "premium")),
                capabilities: vec!["code".into(), "agentic".into()],
            })
            .collect();
        ExecutorInfo {
            id: "auggie".into(),
            kind: "cli".into(),
            models,
        }
    }

    fn health() -> HealthReport {
        match run(vec!["--version".into()], 10_000) {
            Ok(out) if out.exit_code == Some(0) => HealthReport {
                status: HealthStatus::Healthy,
                detail: tail(&out.stdout, 80),
            },
            Ok(out) => HealthReport {
                status: HealthStatus::Unhealthy,
                detail: format!(
                    "auggie --version exited with {:?}: {}",
                    out.exit_code,
                    tail(&out.stderr, 200)
                ),
            },
            Err(e) => HealthReport {
                status: HealthStatus::Unhealthy,
                detail: format!("{e:?}"),
            },
        }
    }

    fn invoke(request: ChatRequest) -> Result<ChatResponse, ExecutorError> {
        let mapping = parse_models(&cfg("models", "auggie"))
            .into_iter()
            .find(|m| m.id == request.model)
            .ok_or_else(|| ExecutorError::UnknownModel(request.model.clone()))?;
        let turns: Vec<Turn<'_>> = request
            .messages
            .iter()
            .map(|m| Turn {
                role: &m.role,
                content: &m.content,
            })
            .collect();
        let prompt = render_prompt(&turns, cfg_num("max_prompt_bytes", 100_000));
        if prompt.trim().is_empty() {
            return Err(ExecutorError::InvalidRequest(
                "the conversation has no text".into(),
            ));
        }
        let mut args = vec!["--print".to_string(), "--quiet".to_string()];
        if let Some(model) = mapping.cli_model {
            args.push("--model".into());
            args.push(model);
        }
        args.extend(cfg("extra_args", "").split_whitespace().map(str::to_string));
        args.push(prompt.clone());
        let out = run(args, cfg_num("timeout_ms", 0))?;
        if out.exit_code != Some(0) {
            let err = tail(&out.stderr, 400);
            let lower = err.to_lowercase();
            return Err(
                if lower.contains("not currently logged in") || lower.contains("auggie login") {
                    ExecutorError::Unavailable(format!("auggie is not logged in: {err}"))
                } else {
                    ExecutorError::Failed(format!("auggie exited with {:?}: {err}", out.exit_code))
                },
            );
        }
        let text = strip_ansi(&String::from_utf8_lossy(&out.stdout))
            .trim()
            .to_string();
        if text.is_empty() {
            return Err(ExecutorError::Failed("auggie printed no answer".into()));
        }
        Ok(ChatResponse {
            usage: Some(Usage {
                input_tokens: estimate_tokens(&prompt),
                output_tokens: estimate_tokens(&text),
            }),
            text,
            finish_reason: "stop".into(),
        })
    }
}

export!(Auggie);
