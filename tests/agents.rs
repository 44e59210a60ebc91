//! The coding agents of today through the proxy, unchanged, each turn routed (`model: auto`)
//! and served by an upstream of another wire format: Claude Code (`claude -p`, Anthropic
//! Messages) on a chat-completions upstream, the Codex CLI (`codex exec`, the Responses API) on
//! an Anthropic and on a chat upstream, the OpenAI Agents SDK (Responses) on every kind. The
//! upstream is `dualrouter-testkit`'s mock in its `agent` behaviour: it first asks for a tool
//! call that reads a file (with the client's own tool), then answers with the file's content,
//! so an agent prints the expected answer only if the whole round trip crossed the proxy both
//! ways. The clients are the real ones, installed by scripts/setup.sh; nothing leaves loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;

use common::Proxy;
use dualrouter_testkit::{agents, Mock};
use serde_json::Value;

/// The proxy in front of the mock as one provider of `kind` (`responses`: its Responses mode),
/// serving one model, `coder`, that `auto` routes to.
async fn proxy_for(mock: &Mock, kind: &str, responses: &str) -> Proxy {
    let yaml = format!(
        r#"listen: 127.0.0.1:0
admin: {{ listen: 127.0.0.1:0 }}
providers:
  - name: up
    kind: {kind}
    {responses}
    base_url: {}
    models:
      - {{ id: coder, upstream_id: agent, reasoning: true }}
"#,
        mock.base_url()
    );
    Proxy::start(&yaml).await
}

/// A fresh folder holding `secret.txt`.
fn workdir(secret: &str) -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("secret.txt");
    std::fs::write(&f, format!("{secret}\n")).unwrap();
    (d, f)
}

fn texts(out: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The decisions the proxy logged (at least `n`), newest first.
async fn decisions(p: &Proxy, n: usize) -> Vec<Value> {
    // The decision log writes in batches; wait for the rows.
    let mut list = Vec::new();
    for _ in 0..100 {
        let v: Value = reqwest::get(format!("{}/api/decisions?limit=50", p.admin))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        list = v.as_array().cloned().unwrap_or_default();
        if list.len() >= n {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    list
}

#[tokio::test]
async fn claude_code_works_through_a_chat_completions_upstream() {
    let mock = Mock::start().await;
    let p = proxy_for(&mock, "openai", "").await;
    let (dir, secret) = workdir("claude via chat 7731");
    let prompt = format!(
        "Read the file {} and tell me what it says",
        secret.display()
    );
    let out = agents::claude(&p.proxy, "auto", &prompt, dir.path())
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}\n{}", p.log());
    assert_eq!(
        stdout.trim(),
        "The file says: claude via chat 7731",
        "{stderr}\n{}",
        p.log()
    );
    // Two turns reached the chat upstream: the tool call, then the answer from its result.
    let reqs = mock.requests();
    assert_eq!(
        reqs.len(),
        2,
        "{:?}",
        reqs.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    for r in &reqs {
        assert_eq!(r.path, "/v1/chat/completions");
        let body = r.json.as_ref().unwrap();
        assert_eq!(body["model"], "agent");
        assert_eq!(body["stream"], true);
        // Claude Code's thinking and effort became a reasoning effort.
        assert_eq!(body["reasoning_effort"], "high", "{body}");
        let tools: Vec<&str> = body["tools"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["function"]["name"].as_str())
            .collect();
        assert!(tools.contains(&"Read"), "{tools:?}");
        // No Anthropic field leaked into the chat request.
        for k in ["thinking", "context_management", "output_config", "system"] {
            assert!(body.get(k).is_none(), "{k} reached the chat upstream");
        }
    }
    let second = reqs[1].json.as_ref().unwrap();
    let msgs = second["messages"].as_array().unwrap();
    let tool = msgs
        .iter()
        .find(|m| m["role"] == "tool")
        .expect("a tool message");
    assert!(
        tool["content"]
            .as_str()
            .unwrap()
            .contains("claude via chat 7731"),
        "{tool}"
    );
    let call = msgs
        .iter()
        .find(|m| m["tool_calls"].is_array())
        .expect("the assistant's tool call");
    assert_eq!(call["tool_calls"][0]["id"], tool["tool_call_id"]);
    // Both turns were routed and logged.
    let d = decisions(&p, 2).await;
    assert!(d.len() >= 2, "{d:?}");
    for x in d.iter().take(2) {
        assert_eq!(x["requested_model"], "auto");
        assert_eq!(x["selected_model"], "coder");
        assert!(x["input_tokens"].as_u64().unwrap() > 0, "{x}");
    }
}

#[tokio::test]
async fn claude_code_reaches_an_anthropic_upstream_as_it_sent() {
    let mock = Mock::start().await;
    let p = proxy_for(&mock, "anthropic", "").await;
    let (dir, secret) = workdir("claude native 5");
    let prompt = format!(
        "Read the file {} and tell me what it says",
        secret.display()
    );
    let out = agents::claude(&p.proxy, "auto", &prompt, dir.path())
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}\n{}", p.log());
    assert_eq!(stdout.trim(), "The file says: claude native 5", "{stderr}");
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 2);
    for r in &reqs {
        assert_eq!(r.path, "/v1/messages");
        // Its betas and version went along; its own key did not.
        let betas = r.headers["anthropic-beta"].to_str().unwrap();
        assert!(betas.contains("claude-code-"), "{betas}");
        assert_eq!(r.headers["anthropic-version"], "2023-06-01");
        assert!(r.headers.get("x-api-key").is_none());
        let body = r.json.as_ref().unwrap();
        // As sent: adaptive thinking, effort, context management, system messages inside.
        assert_eq!(body["thinking"]["type"], "adaptive");
        assert_eq!(body["output_config"]["effort"], "high");
        assert!(body.get("context_management").is_some());
        assert_eq!(body["model"], "agent");
    }
}

#[tokio::test]
async fn codex_works_through_anthropic_and_chat_upstreams() {
    for kind in ["anthropic", "openai"] {
        let mock = Mock::start().await;
        let p = proxy_for(&mock, kind, "").await;
        let (dir, secret) = workdir(&format!("codex via {kind} 42"));
        let prompt = format!("Run cat on {} and tell me what it says", secret.display());
        let out = agents::codex(&format!("{}/v1", p.proxy), "auto", &prompt, dir.path())
            .output()
            .await
            .unwrap();
        let (stdout, stderr) = texts(&out);
        assert!(
            out.status.success(),
            "{kind}: {stdout}\n{stderr}\n{}",
            p.log()
        );
        assert!(
            stdout.contains(&format!("The file says: codex via {kind} 42")),
            "{kind}: {stdout}\n{stderr}\n{}",
            p.log()
        );
        let reqs = mock.requests();
        assert_eq!(reqs.len(), 2, "{kind}");
        let path = if kind == "anthropic" {
            "/v1/messages"
        } else {
            "/v1/chat/completions"
        };
        for r in &reqs {
            assert_eq!(r.path, path, "{kind}");
        }
        // The shell command ran (its output came back as the tool result), and the hosted
        // web_search tool Codex offers was left out for this upstream.
        let second = reqs[1].json.clone().unwrap();
        let text = second.to_string();
        assert!(
            text.contains(&format!("codex via {kind} 42")),
            "{kind}: {text}"
        );
        assert!(!text.contains("\"web_search\""), "{kind}: hosted tool sent");
        assert!(text.contains("exec_command"), "{kind}");
        let d = decisions(&p, 2).await;
        let notes = d[0]["details"]["translation"].to_string();
        assert!(notes.contains("web_search"), "{kind}: {notes}");
    }
}

#[tokio::test]
async fn codex_reaches_a_responses_upstream_as_it_sent() {
    let mock = Mock::start().await;
    let p = proxy_for(&mock, "openai", "responses: native").await;
    let (dir, secret) = workdir("codex native 3");
    let prompt = format!("Run cat on {} and tell me what it says", secret.display());
    let out = agents::codex(&format!("{}/v1", p.proxy), "auto", &prompt, dir.path())
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}\n{}", p.log());
    assert!(
        stdout.contains("The file says: codex native 3"),
        "{stdout}\n{stderr}"
    );
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 2);
    for r in &reqs {
        assert_eq!(r.path, "/v1/responses");
        let body = r.json.as_ref().unwrap();
        assert_eq!(body["model"], "agent");
        // Hosted tools and namespaces reach a Responses upstream.
        let tools = body["tools"].to_string();
        assert!(tools.contains("\"web_search\""), "{tools}");
        assert!(tools.contains("\"namespace\""), "{tools}");
    }
}

#[tokio::test]
async fn the_agents_sdk_works_through_every_upstream_kind() {
    for (kind, responses) in [
        ("openai", ""),
        ("anthropic", ""),
        ("openai", "responses: native"),
    ] {
        let mock = Mock::start().await;
        let p = proxy_for(&mock, kind, responses).await;
        let (dir, secret) = workdir("agents sdk 99");
        let out = agents::agents_sdk(&format!("{}/v1", p.proxy), "auto", &secret, dir.path())
            .output()
            .await
            .unwrap();
        let (stdout, stderr) = texts(&out);
        let what = format!("{kind} {responses}");
        assert!(
            out.status.success(),
            "{what}: {stdout}\n{stderr}\n{}",
            p.log()
        );
        let v: Value = serde_json::from_str(stdout.trim()).expect(&stdout);
        assert_eq!(v["final"], "The file says: agents sdk 99", "{what}: {v}");
        assert_eq!(
            v["streamed_final"], "The file says: agents sdk 99",
            "{what}: {v}"
        );
        assert_eq!(v["tool_paths"].as_array().unwrap().len(), 2, "{what}: {v}");
    }
}
