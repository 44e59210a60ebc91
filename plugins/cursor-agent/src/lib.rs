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
//! Config keys: see `plugins/cli-common/adapter.rs`.

wit_bindgen::generate!({ world: "executor", path: "../../wit/v0.1.0" });

#[path = "../../cli-common/adapter.rs"]
mod adapter;

use cli_common::{estimate_tokens, strip_ansi, tail};
use dualrouter::plugin::process::CommandOutput;
use dualrouter::plugin::types::{
    ChatRequest, ChatResponse, ExecutorError, ExecutorInfo, HealthReport, Usage,
};
use exports::dualrouter::plugin::executor_api::Guest;
use serde_json::Value;

const CURSOR_AGENT: adapter::Cli = adapter::Cli {
    name: "cursor-agent",
    description: "Cursor's agent CLI",
    flags: &["-p", "--output-format", "json"],
    parse,
};

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

fn parse(out: &CommandOutput, prompt: &str) -> Result<ChatResponse, ExecutorError> {
    let stdout = strip_ansi(&String::from_utf8_lossy(&out.stdout));
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
    let Some(result) = result_object(&stdout) else {
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
                .unwrap_or_else(|| estimate_tokens(prompt)),
            output_tokens: usage_field(&result, "output_tokens")
                .unwrap_or_else(|| estimate_tokens(&text)),
        }),
        text,
        finish_reason: "stop".into(),
    })
}

struct CursorAgent;

impl Guest for CursorAgent {
    fn describe() -> ExecutorInfo {
        adapter::describe(&CURSOR_AGENT)
    }
    fn health() -> HealthReport {
        adapter::health(&CURSOR_AGENT)
    }
    fn invoke(request: ChatRequest) -> Result<ChatResponse, ExecutorError> {
        adapter::invoke(&CURSOR_AGENT, request)
    }
}

export!(CursorAgent);
