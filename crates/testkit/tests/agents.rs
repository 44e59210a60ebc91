//! The real agent clients (installed by scripts/setup.sh) complete a tool round trip against the
//! mock's `agent` behaviour, each in its own wire format.

use std::path::PathBuf;

use dualrouter_testkit::{agents, Mock};
use serde_json::Value;

/// A fresh folder with `secret.txt`, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str, secret: &str) -> Dir {
        let d = std::env::temp_dir().join(format!(
            "dualrouter-testkit-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("secret.txt"), format!("{secret}\n")).unwrap();
        Dir(d)
    }
    fn secret(&self) -> PathBuf {
        self.0.join("secret.txt")
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn texts(out: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn claude_code_reads_a_file_through_the_messages_api() {
    let mock = Mock::start().await;
    let dir = Dir::new("claude", "claude secret 41");
    let prompt = format!(
        "Read the file {} and tell me what it says",
        dir.secret().display()
    );
    let out = agents::claude(&mock.root_url(), "agent", &prompt, &dir.0)
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout.trim(), "The file says: claude secret 41", "{stderr}");
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 2, "a tool call, then the answer");
    for r in &reqs {
        assert_eq!(r.path, "/v1/messages");
        assert_eq!(r.query.as_deref(), Some("beta=true"));
        assert!(r.headers.contains_key("anthropic-beta"));
        assert_eq!(r.json.as_ref().unwrap()["stream"], true);
    }
    let last = reqs[1].json.clone().unwrap();
    let msgs = last["messages"].as_array().unwrap();
    assert!(
        msgs.iter().any(|m| m["role"] == "system"),
        "Claude Code sends system messages inside messages"
    );
    assert_eq!(mock.all_requests().len(), 2, "nothing but the two turns");
}

#[tokio::test]
async fn codex_runs_a_command_through_the_responses_api() {
    let mock = Mock::start().await;
    let dir = Dir::new("codex", "codex secret 42");
    let prompt = format!(
        "Run cat on {} and tell me what it says",
        dir.secret().display()
    );
    let out = agents::codex(&mock.base_url(), "agent", &prompt, &dir.0)
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout.trim(), "The file says: codex secret 42", "{stderr}");
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 2, "a tool call, then the answer");
    let second = reqs[1].json.clone().unwrap();
    let input = second["input"].as_array().unwrap();
    assert!(input
        .iter()
        .any(|i| i["type"] == "function_call" && i["name"] == "exec_command"));
    assert!(input.iter().any(|i| i["type"] == "function_call_output"));
    assert_eq!(reqs[0].headers["authorization"], "Bearer sk-test-client");
    assert_eq!(mock.all_requests().len(), 2, "nothing but the two turns");
}

#[tokio::test]
async fn the_openai_agents_sdk_calls_its_function_tool() {
    let mock = Mock::start().await;
    let dir = Dir::new("agents-sdk", "sdk secret 43");
    let out = agents::agents_sdk(&mock.base_url(), "agent", &dir.secret(), &dir.0)
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["final"], "The file says: sdk secret 43");
    assert_eq!(v["streamed_final"], "The file says: sdk secret 43");
    let path = dir.secret().display().to_string();
    assert_eq!(v["tool_paths"], serde_json::json!([path, path]));
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 4);
    assert!(reqs.iter().all(|r| r.path == "/v1/responses"));
    assert_eq!(reqs[2].json.as_ref().unwrap()["stream"], true);
}
