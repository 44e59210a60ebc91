//! Executor adapter for Cursor's `cursor-agent` CLI.
//!
//! Each request runs `cursor-agent -p --output-format json [--model M] PROMPT` through the
//! host's `process` capability (`cursor-agent` must be in the plugin's `allow_commands`):
//! - `-p` (`--print`): non-interactive, answer once and exit;
//! - `--output-format json`: one JSON object on stdout when done, of the form
//!   `{"type":"result","subtype":"success","is_error":false,"result":"<answer>",…}`;
//! - `--model`: the CLI model, when the configured model id maps to one.
//!
//! The adapter reads the last line of stdout that parses as a JSON object with `type` `result`;
//! `is_error: true` or a non-zero exit is an error (`unavailable` when the text mentions login or
//! authentication, else `failed`). Token counts are taken from a `usage` object
//! (`input_tokens`/`output_tokens`) when the CLI reports one, else estimated. `health` runs
//! `cursor-agent --version`. The CLI reads its key from the host environment (`CURSOR_API_KEY`).
//!
//! Config keys (all optional): `command` (default `cursor-agent`), `models` (`id[=cli-model],…`,
//! default `cursor-agent`), `context_tokens` (200000), `input_cost_per_mtok` /
//! `output_cost_per_mtok` (0), `tier` (`premium`), `max_prompt_bytes` (100000), `timeout_ms` (0:
//! the host's limit), `extra_args` (space-separated, appended before the prompt).

wit_bindgen::generate!({ world: "executor", path: "../../wit/v0.1.0" });

use cli_common::{estimate_tokens, parse_models, render_prompt, strip_ansi, tail, Turn};
use dualrouter::plugin::types::{
    ChatRequest, ChatResponse, ExecutorError, ExecutorInfo, HealthReport, HealthStatus, ModelInfo,
    Usage,
};
use dualrouter::plugin::{config, process};
use exports::dualrouter::plugin::executor_api::Guest;
use serde_json::Value;

struct CursorAgent;

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
        program: cfg("command", "cursor-agent"),
        args,
        stdin: Vec::new(),
        timeout_ms,
    })
    .map_err(|e| match e {
        process::CommandError::NotAllowed(m) | process::CommandError::SpawnFailed(m) => {
            ExecutorError::Unavailable(m)
        }
        process::CommandError::TimedOut(ms) => {
            ExecutorError::Failed(format!("cursor-agent ran past {ms} ms"))
        }
        process::CommandError::OutputTooLarge(n) => {
            ExecutorError::Failed(format!("cursor-agent wrote more than {n} bytes"))
        }
    })
}

fn looks_like_auth(text: &str) -> bool {
    let l = text.to_lowercase();
    l.contains("login")
        || l.contains("logged in")
        || l.contains("authenticat")
        || l.contains("api key")
}

/// The `result` object of `--output-format json` output: the last such JSON line.
fn result_object(stdout: &str) -> Option<Value> {
    stdout
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .find(|v| v.get("type").and_then(Value::as_str) == Some("result"))
}

fn usage_field(v: &Value, key: &str) -> Option<u32> {
    v.get("usage")?
        .get(key)?
        .as_u64()
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
}

impl Guest for CursorAgent {
    fn describe() -> ExecutorInfo {
        let models = parse_models(&cfg("models", "cursor-agent"))
            .into_iter()
            .map(|m| ModelInfo {
                description: format!(
                    "Cursor's agent CLI{}",
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
            id: "cursor-agent".into(),
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
                    "cursor-agent --version exited with {:?}: {}",
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
        let mapping = parse_models(&cfg("models", "cursor-agent"))
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
        let mut args = vec!["-p".to_string(), "--output-format".into(), "json".into()];
        if let Some(model) = mapping.cli_model {
            args.push("--model".into());
            args.push(model);
        }
        args.extend(cfg("extra_args", "").split_whitespace().map(str::to_string));
        args.push(prompt.clone());
        let out = run(args, cfg_num("timeout_ms", 0))?;
        let stdout = strip_ansi(&String::from_utf8_lossy(&out.stdout));
        let result = result_object(&stdout);
        if out.exit_code != Some(0) {
            let mut err = tail(&out.stderr, 400);
            if err.is_empty() {
                err = tail(stdout.as_bytes(), 400);
            }
            return Err(if looks_like_auth(&err) {
                ExecutorError::Unavailable(format!("cursor-agent is not logged in: {err}"))
            } else {
                ExecutorError::Failed(format!(
                    "cursor-agent exited with {:?}: {err}",
                    out.exit_code
                ))
            });
        }
        let Some(result) = result else {
            return Err(ExecutorError::Failed(format!(
                "cursor-agent printed no JSON result: {}",
                tail(stdout.as_bytes(), 200)
            )));
        };
        let text = result
            .get("result")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .trim()
            .to_string();
        if result.get("is_error").and_then(Value::as_bool) == Some(true) {
            return Err(if looks_like_auth(&text) {
                ExecutorError::Unavailable(text)
            } else {
                ExecutorError::Failed(format!("cursor-agent reported an error: {text}"))
            });
        }
        if text.is_empty() {
            return Err(ExecutorError::Failed(
                "cursor-agent returned an empty result".into(),
            ));
        }
        Ok(ChatResponse {
            usage: Some(Usage {
                input_tokens: usage_field(&result, "input_tokens")
                    .unwrap_or_else(|| estimate_tokens(&prompt)),
                output_tokens: usage_field(&result, "output_tokens")
                    .unwrap_or_else(|| estimate_tokens(&text)),
            }),
            text,
            finish_reason: "stop".into(),
        })
    }
}

export!(CursorAgent);
