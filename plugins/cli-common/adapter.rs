//! The executor side shared by the CLI adapters (`auggie`, `cursor-agent`): config keys,
//! `describe`, `health` and `invoke` written once against the `executor` world's bindings. Each
//! adapter crate includes this file with `#[path = "../../cli-common/adapter.rs"] mod adapter;`
//! (so it compiles against that crate's own `wit_bindgen::generate!` output) and supplies a
//! [`Cli`]: how to call its tool and how to read the answer.
//!
//! Config keys common to both: `command` (the program, default the CLI's name), `models`
//! (`id[=cli-model],…`, default the CLI's name), `context_tokens` (200000),
//! `input_cost_per_mtok` / `output_cost_per_mtok` (0: subscription), `tier` (`premium`),
//! `max_prompt_bytes` (100000; Linux caps one argument at 128 KiB), `timeout_ms` (0: the host's
//! limit), `extra_args` (space-separated, placed before the prompt).

use crate::dualrouter::plugin::types::{
    ChatRequest, ChatResponse, ExecutorError, ExecutorInfo, HealthReport, HealthStatus, ModelInfo,
};
use crate::dualrouter::plugin::{config, process};
use cli_common::{parse_models, render_prompt, tail, Turn};

/// One CLI tool.
pub struct Cli {
    /// The tool's name: default program, default model id, executor id.
    pub name: &'static str,
    /// What `describe` calls its models (`"Augment's auggie agent"`).
    pub description: &'static str,
    /// The flags before `--model`, e.g. `["--print", "--quiet"]`.
    pub flags: &'static [&'static str],
    /// Reads a finished run: `(stdout, stderr, exit code)` → the answer. `prompt` is what was
    /// sent (for token estimates).
    pub parse: fn(&process::CommandOutput, &str) -> Result<ChatResponse, ExecutorError>,
}

pub fn cfg(key: &str, default: &str) -> String {
    config::get(key).unwrap_or_else(|| default.to_string())
}

pub fn cfg_num<T: std::str::FromStr>(key: &str, default: T) -> T {
    config::get(key)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn run(
    cli: &Cli,
    args: Vec<String>,
    timeout_ms: u32,
) -> Result<process::CommandOutput, ExecutorError> {
    process::run(&process::Command {
        program: cfg("command", cli.name),
        args,
        stdin: Vec::new(),
        timeout_ms,
    })
    .map_err(|e| match e {
        process::CommandError::NotAllowed(m) | process::CommandError::SpawnFailed(m) => {
            ExecutorError::Unavailable(m)
        }
        process::CommandError::TimedOut(ms) => {
            ExecutorError::Failed(format!("{} ran past {ms} ms", cli.name))
        }
        process::CommandError::OutputTooLarge(n) => {
            ExecutorError::Failed(format!("{} wrote more than {n} bytes", cli.name))
        }
    })
}

pub fn describe(cli: &Cli) -> ExecutorInfo {
    let models = parse_models(&cfg("models", cli.name))
        .into_iter()
        .map(|m| ModelInfo {
            description: match &m.cli_model {
                Some(c) => format!("{} ({c})", cli.description),
                None => cli.description.to_string(),
            },
            id: m.id,
            context_tokens: cfg_num("context_tokens", 200_000),
            input_cost_per_mtok: cfg_num("input_cost_per_mtok", 0.0),
            output_cost_per_mtok: cfg_num("output_cost_per_mtok", 0.0),
            tier: Some(cfg("tier", "premium")),
            capabilities: vec!["code".into(), "agentic".into()],
        })
        .collect();
    ExecutorInfo {
        id: cli.name.into(),
        kind: "cli".into(),
        models,
    }
}

/// `<tool> --version` exits 0: healthy.
pub fn health(cli: &Cli) -> HealthReport {
    match run(cli, vec!["--version".into()], 10_000) {
        Ok(out) if out.exit_code == Some(0) => HealthReport {
            status: HealthStatus::Healthy,
            detail: tail(&out.stdout, 80),
        },
        Ok(out) => HealthReport {
            status: HealthStatus::Unhealthy,
            detail: format!(
                "{} --version exited with {:?}: {}",
                cli.name,
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

/// Runs `<tool> <flags> [--model M] [extra_args] PROMPT` and parses the result.
pub fn invoke(cli: &Cli, request: ChatRequest) -> Result<ChatResponse, ExecutorError> {
    let mapping = parse_models(&cfg("models", cli.name))
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
    let mut args: Vec<String> = cli.flags.iter().map(|f| f.to_string()).collect();
    if let Some(model) = mapping.cli_model {
        args.push("--model".into());
        args.push(model);
    }
    args.extend(cfg("extra_args", "").split_whitespace().map(str::to_string));
    args.push(prompt.clone());
    let out = run(cli, args, cfg_num("timeout_ms", 0))?;
    (cli.parse)(&out, &prompt)
}
