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
//! `AUGMENT_SESSION_AUTH`), which the child process inherits. Config keys: see
//! `plugins/cli-common/adapter.rs`.

wit_bindgen::generate!({ world: "executor", path: "../../wit/v0.1.0" });

#[path = "../../cli-common/adapter.rs"]
mod adapter;

use cli_common::{estimate_tokens, strip_ansi, tail};
use dualrouter::plugin::process::CommandOutput;
use dualrouter::plugin::types::{
    ChatRequest, ChatResponse, ExecutorError, ExecutorInfo, HealthReport, Usage,
};
use exports::dualrouter::plugin::executor_api::Guest;

const AUGGIE: adapter::Cli = adapter::Cli {
    name: "auggie",
    description: "Augment's auggie agent",
    flags: &["--print", "--quiet"],
    parse,
};

fn parse(out: &CommandOutput, prompt: &str) -> Result<ChatResponse, ExecutorError> {
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
            input_tokens: estimate_tokens(prompt),
            output_tokens: estimate_tokens(&text),
        }),
        text,
        finish_reason: "stop".into(),
    })
}

struct Auggie;

impl Guest for Auggie {
    fn describe() -> ExecutorInfo {
        adapter::describe(&AUGGIE)
    }
    fn health() -> HealthReport {
        adapter::health(&AUGGIE)
    }
    fn invoke(request: ChatRequest) -> Result<ChatResponse, ExecutorError> {
        adapter::invoke(&AUGGIE, request)
    }
}

export!(Auggie);
