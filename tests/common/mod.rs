//! Shared test harness: the real `dualrouter` binary on a free port, database helpers, and a
//! proxy in front of two mock upstreams (`dualrouter_testkit::Mock`, whose docs list its
//! behaviours).
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

pub mod db;
pub mod synthetic;

#[allow(unused_imports)]
pub use db::*;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use dualrouter_testkit::Mock;

/// A running `dualrouter serve`, killed when dropped.
pub struct Proxy {
    child: Child,
    pub dir: tempfile::TempDir,
    pub proxy: String,
    pub admin: String,
    pub demo: Option<String>,
}

impl Proxy {
    /// Starts the proxy with this YAML (its `listen` and `admin.listen` should use port 0).
    pub async fn start(yaml: &str) -> Proxy {
        Self::start_with_env(yaml, &[]).await
    }

    pub async fn start_with_env(yaml: &str, env: &[(&str, &str)]) -> Proxy {
        Self::start_at(yaml, "config.yaml", env).await
    }

    /// Starts the proxy with this YAML written at `config_path`, relative to a fresh folder that
    /// holds the repository's models and checkpoints as `models/` and `checkpoints/` (the shipped
    /// config, which names them `../models`, runs from `config/dualrouter.yaml`).
    pub async fn start_at(yaml: &str, config_path: &str, env: &[(&str, &str)]) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        link_repo_files(dir.path());
        let config = dir.path().join(config_path);
        if let Some(parent) = config.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        // Each proxy gets its own store and spool unless the test names them.
        let mut yaml = yaml.to_string();
        if !yaml.contains("\ndatabase:") {
            yaml.push_str(&format!(
                "\ndatabase: sqlite://{}/dualrouter.db\n",
                dir.path().display()
            ));
        }
        if !yaml.contains("\ndecision_log:") {
            yaml.push_str(&format!(
                "\ndecision_log: {{ spool_dir: {}/spool }}\n",
                dir.path().display()
            ));
        }
        std::fs::write(&config, &yaml).unwrap();
        let ready = dir.path().join("ready.json");
        let log = std::fs::File::create(dir.path().join("proxy.log")).unwrap();
        let stdout = std::fs::File::create(dir.path().join("proxy.stdout")).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dualrouter"));
        cmd.arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--ready-file")
            .arg(&ready)
            .env(
                "DUALROUTER_LOG",
                "info,pingora_core=warn,pingora_proxy=warn",
            )
            .env("NO_COLOR", "1")
            .stdout(stdout)
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn dualrouter");
        let deadline = Instant::now() + Duration::from_secs(20);
        let ready_json = loop {
            if let Ok(text) = std::fs::read_to_string(&ready) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                    break v;
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(dir.path().join("proxy.log")).unwrap_or_default();
                panic!("dualrouter exited early ({status}):\n{log}");
            }
            assert!(Instant::now() < deadline, "dualrouter did not become ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let p = Proxy {
            child,
            proxy: format!("http://{}", ready_json["proxy"].as_str().unwrap()),
            admin: format!("http://{}", ready_json["admin"].as_str().unwrap()),
            demo: ready_json["demo"].as_str().map(|d| format!("http://{d}")),
            dir,
        };
        // The proxy's own listener is bound by Pingora after the ready file: wait for it.
        let client = reqwest::Client::new();
        loop {
            if let Ok(r) = client.get(format!("{}/healthz", p.proxy)).send().await {
                if r.status() == 200 {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "dualrouter /healthz never answered"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        p
    }

    /// The admin listener's `/metrics` text.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.proxy, path)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("proxy.log")).unwrap_or_default()
    }

    /// What the process wrote to stdout (logs go to stderr, [`Proxy::log`]).
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("proxy.stdout")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (e.g. "TERM") and waits for the process to exit.
    pub fn signal_and_wait(&mut self, signal: &str, within: Duration) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "dualrouter did not exit after SIG{signal}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary with arguments and returns (exit success, stdout+stderr).
pub fn run_cli(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dualrouter"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Makes the repository's encoder models and shipped checkpoints visible from `dir` as
/// `models/` and `checkpoints/*.json` (symbolic links, read only): a config written to `dir`
/// resolves its relative paths, defaults included, against `dir`, and a test config leaves
/// `mirt.checkpoint` and `mirt.encoder.models_dir` at their defaults.
pub fn link_repo_files(dir: &Path) {
    let root = repo_root();
    std::os::unix::fs::symlink(root.join("models"), dir.join("models")).unwrap();
    std::fs::create_dir_all(dir.join("checkpoints")).unwrap();
    for name in ["default.json", "static.json"] {
        std::os::unix::fs::symlink(
            root.join("checkpoints").join(name),
            dir.join("checkpoints").join(name),
        )
        .unwrap();
    }
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// A chat-completions request body.
pub fn chat_body(model: &str, prompt: &str, stream: bool) -> serde_json::Value {
    serde_json::json!({
        "model": model,
        "stream": stream,
        "messages": [{"role": "user", "content": prompt}],
    })
}

pub const BOTH_FORMATS_UPSTREAM_KEY: &str = "sk-ant-upstream-secret";

/// Mocks of both kinds and a proxy with `oa-*` models on the OpenAI mock and `an-*` models on
/// the Anthropic one (`echo`, `tools`, `error` → 429).
pub async fn both_formats() -> (Mock, Mock, Proxy) {
    let oa = Mock::start().await;
    let an = Mock::start_anthropic().await;
    let yaml = format!(
        r#"listen: 127.0.0.1:0
admin: {{ listen: 127.0.0.1:0 }}
auth: {{ keys_env: TEST_CLIENT_KEYS }}
providers:
  - name: oa
    kind: openai
    base_url: {}
    models:
      - {{ id: oa-echo, upstream_id: echo }}
      - {{ id: oa-tools, upstream_id: tools }}
      - {{ id: oa-error, upstream_id: "error:429" }}
  - name: an
    kind: anthropic
    base_url: {}
    api_key_env: TEST_ANTHROPIC_KEY
    models:
      - {{ id: an-echo, upstream_id: echo }}
      - {{ id: an-tools, upstream_id: tools }}
      - {{ id: an-error, upstream_id: "error:429" }}
"#,
        oa.base_url(),
        an.base_url()
    );
    let p = Proxy::start_with_env(
        &yaml,
        &[
            ("TEST_CLIENT_KEYS", "client-key"),
            ("TEST_ANTHROPIC_KEY", BOTH_FORMATS_UPSTREAM_KEY),
        ],
    )
    .await;
    (oa, an, p)
}
