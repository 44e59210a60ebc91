//! The real agent clients as commands aimed at a base URL (the mock's, or the proxy's): Claude
//! Code and the Codex CLI from `tests/agents/node_modules`, and the OpenAI Agents SDK script
//! `tests/sdk/agents_sdk.py` run by the `.venv`'s Python (all installed by `scripts/setup.sh`).
//!
//! Each command runs in a folder the caller gives (its working directory), with a throwaway
//! `HOME` (and `CODEX_HOME`) inside it, stdin closed (`codex exec` otherwise waits for stdin's
//! end and appends it to the prompt) and killed on drop. Run them with `.output().await`.
//!
//! What they need, found by running them against this mock:
//! - Claude Code: `ANTHROPIC_BASE_URL` is the server's root (not `/v1`: it appends
//!   `/v1/messages?beta=true`), `ANTHROPIC_API_KEY` any value, and
//!   `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1` (else it also sends `HEAD /api/hello` to the
//!   base URL). Its `Read` runs without asking inside the working directory; outside it, only
//!   with `--allowedTools Read` (else the tool result is a permission refusal). As root,
//!   `--dangerously-skip-permissions` / `--permission-mode bypassPermissions` are refused unless
//!   `IS_SANDBOX=1`. An unknown model id only prints a warning (it assumes a 1M context).
//! - Codex: `CODEX_HOME` must exist; `env_key`'s variable must be set; `wire_api` must be
//!   `responses`. Its default `read-only` sandbox works here (bundled bubblewrap), but `bash -lc`
//!   then prints profile noise into the command's output (pyenv cannot rehash), so these
//!   commands pass `-s danger-full-access`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

/// The repository's root (this crate is `crates/testkit`).
pub fn repo_root() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    p.canonicalize().unwrap_or(p)
}

fn installed(path: PathBuf, what: &str) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup.sh (it installs {what})",
        path.display()
    );
    path
}

/// `claude`: `DUALROUTER_CLAUDE`, or `tests/agents/node_modules/.bin/claude`.
pub fn claude_bin() -> PathBuf {
    match std::env::var_os("DUALROUTER_CLAUDE") {
        Some(p) => p.into(),
        None => installed(
            repo_root().join("tests/agents/node_modules/.bin/claude"),
            "Claude Code into tests/agents with npm ci",
        ),
    }
}

/// `codex`: `DUALROUTER_CODEX`, or `tests/agents/node_modules/.bin/codex`.
pub fn codex_bin() -> PathBuf {
    match std::env::var_os("DUALROUTER_CODEX") {
        Some(p) => p.into(),
        None => installed(
            repo_root().join("tests/agents/node_modules/.bin/codex"),
            "the Codex CLI into tests/agents with npm ci",
        ),
    }
}

/// The Python with the SDKs: `DUALROUTER_PYTHON`, or the repository's `.venv`.
pub fn python_bin() -> PathBuf {
    match std::env::var_os("DUALROUTER_PYTHON") {
        Some(p) => p.into(),
        None => installed(
            repo_root().join(".venv/bin/python"),
            "the .venv with tests/sdk/requirements.txt",
        ),
    }
}

/// Variables of the developer's environment that would change what the clients do.
const CLEARED: &[&str] = &[
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_MODEL",
    "ANTHROPIC_SMALL_FAST_MODEL",
    "ANTHROPIC_DEFAULT_HAIKU_MODEL",
    "ANTHROPIC_DEFAULT_SONNET_MODEL",
    "ANTHROPIC_DEFAULT_OPUS_MODEL",
    "ANTHROPIC_CUSTOM_HEADERS",
    "CLAUDE_CONFIG_DIR",
    "CLAUDE_CODE_USE_BEDROCK",
    "CLAUDE_CODE_USE_VERTEX",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_ORG_ID",
    "OPENAI_PROJECT_ID",
    "CODEX_HOME",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

fn base(program: PathBuf, dir: &Path) -> Command {
    let home = dir.join(".home");
    std::fs::create_dir_all(&home).expect("create the throwaway HOME");
    let mut cmd = Command::new(program);
    for v in CLEARED {
        cmd.env_remove(v);
    }
    cmd.current_dir(dir)
        .env("HOME", &home)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// `claude -p PROMPT --model MODEL --allowedTools Read`, with `ANTHROPIC_BASE_URL=root_url`
/// (the server's root, e.g. [`crate::Mock::root_url`]). Prints the final answer on stdout.
pub fn claude(root_url: &str, model: &str, prompt: &str, dir: &Path) -> Command {
    let mut cmd = base(claude_bin(), dir);
    cmd.args(["-p", prompt, "--model", model, "--allowedTools", "Read"])
        .env("ANTHROPIC_BASE_URL", root_url)
        .env("ANTHROPIC_API_KEY", "sk-ant-test-client")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1");
    cmd
}

/// `codex exec` with a provider `dualrouter_test` at `base_url` (ending `/v1`, e.g.
/// [`crate::Mock::base_url`]) over the Responses API, model `model`, no sandbox. Prints the final
/// answer on stdout (progress on stderr).
pub fn codex(base_url: &str, model: &str, prompt: &str, dir: &Path) -> Command {
    let codex_home = dir.join(".codex-home");
    std::fs::create_dir_all(&codex_home).expect("create CODEX_HOME");
    let provider = format!(
        "model_providers.dualrouter_test={{name=\"dualrouter_test\",base_url=\"{base_url}\",wire_api=\"responses\",env_key=\"DUALROUTER_TEST_KEY\"}}"
    );
    let mut cmd = base(codex_bin(), dir);
    cmd.args(["exec", "--skip-git-repo-check", "-s", "danger-full-access"])
        .args(["-c", "model_provider=dualrouter_test", "-c", &provider])
        .args(["-m", model, prompt])
        .env("CODEX_HOME", &codex_home)
        .env("DUALROUTER_TEST_KEY", "sk-test-client");
    cmd
}

/// The `.venv`'s Python in `dir` (add the script and its arguments).
pub fn python(dir: &Path) -> Command {
    base(python_bin(), dir)
}

/// `tests/sdk/agents_sdk.py BASE_URL MODEL FILE`: an OpenAI Agents SDK `Agent` with a
/// `read_file` function tool asked to read FILE, run plain and streamed over the Responses API;
/// prints one JSON object (see the script).
pub fn agents_sdk(base_url: &str, model: &str, file: &Path, dir: &Path) -> Command {
    let mut cmd = base(python_bin(), dir);
    cmd.arg(repo_root().join("tests/sdk/agents_sdk.py"))
        .args([base_url, model])
        .arg(file);
    cmd
}
