//! The official OpenAI and Anthropic Python SDKs against the proxy (a venv made by `scripts/setup.sh`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Proxy;
use dualrouter_testkit::Mock;

/// The Python with the SDKs: `DUALROUTER_PYTHON`, or the repository's `.venv`.
fn python() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("DUALROUTER_PYTHON") {
        return p.into();
    }
    let p = common::repo_root().join(".venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run `make test` (or scripts/setup.sh) to create the venv with the SDKs",
        p.display()
    );
    p
}

#[tokio::test]
async fn openai_python_sdk_completion_and_stream() {
    let mock = Mock::start().await;
    let yaml = format!(
        r#"listen: 127.0.0.1:0
admin: {{ listen: 127.0.0.1:0 }}
providers:
  - name: mock
    kind: openai
    base_url: {}
    models:
      - {{ id: sdk-model, upstream_id: echo }}
"#,
        mock.base_url()
    );
    let p = Proxy::start(&yaml).await;
    let base = format!("{}/v1", p.proxy);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python())
            .arg(common::repo_root().join("tests/sdk/openai_sdk.py"))
            .arg(base)
            .arg("sdk-model")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "SDK run failed:\n{stderr}\n{}",
        p.log()
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["text"].as_str().unwrap().starts_with("received "), "{v}");
    assert_eq!(v["model_header"], "sdk-model");
    assert_eq!(
        v["streamed"],
        "tok0 tok1 tok2 ",
        "{v} {}",
        String::from_utf8_lossy(&mock.last().body)
    );
    // 3 content chunks + the usage chunk the SDK asked for.
    assert_eq!(v["chunks"], 4, "{v}");
    assert_eq!(v["usage"]["completion_tokens"], 7, "{v}");
    assert_eq!(mock.count(), 3);
}

/// Runs one SDK script against the proxy with a model prefix; returns its JSON output.
async fn run_script(
    script: &'static str,
    base: String,
    prefix: &'static str,
    p: &Proxy,
) -> serde_json::Value {
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python())
            .arg(common::repo_root().join("tests/sdk").join(script))
            .arg(base)
            .arg(prefix)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} against {prefix}-* failed:\n{stderr}\n{}",
        p.log()
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The Anthropic SDK against an Anthropic upstream (passed through) and an OpenAI-compatible
/// one (translated): plain, streamed, tool use (plain, streamed, and the tool result sent
/// back), and an upstream 429 surfacing as the SDK's `RateLimitError`.
#[tokio::test]
async fn anthropic_python_sdk_against_both_upstream_kinds() {
    let (oa, an, p) = common::both_formats().await;
    for prefix in ["an", "oa"] {
        let v = run_script("anthropic_sdk.py", p.proxy.clone(), prefix, &p).await;
        assert!(
            v["text"].as_str().unwrap().starts_with("received "),
            "{prefix}: {v}"
        );
        assert_eq!(v["stop_reason"], "end_turn", "{prefix}: {v}");
        assert_eq!(
            v["usage"],
            serde_json::json!({"input": 11, "output": 7}),
            "{prefix}: {v}"
        );
        assert_eq!(v["streamed"], "tok0 tok1 tok2 ", "{prefix}: {v}");
        assert_eq!(v["streamed_stop_reason"], "end_turn", "{prefix}: {v}");
        assert_eq!(v["streamed_output_tokens"], 7, "{prefix}: {v}");
        assert_eq!(v["tools_text"], "Let me check.", "{prefix}: {v}");
        assert_eq!(v["tools"][0]["name"], "get_weather", "{prefix}: {v}");
        assert_eq!(
            v["tools"][0]["input"],
            serde_json::json!({"city": "Paris"}),
            "{prefix}: {v}"
        );
        assert_eq!(v["tools_stop_reason"], "tool_use", "{prefix}: {v}");
        assert!(
            v["follow_up"].as_str().unwrap().starts_with("received "),
            "{prefix}: {v}"
        );
        assert_eq!(
            v["tools_streamed"][0]["input"],
            serde_json::json!({"city": "Paris"}),
            "{prefix}: {v}"
        );
        assert_eq!(v["tools_streamed_text"], "Let me check.", "{prefix}: {v}");
        assert_eq!(v["tools_streamed_stop_reason"], "tool_use", "{prefix}: {v}");
        assert_eq!(v["error"]["status"], 429, "{prefix}: {v}");
        assert_eq!(v["error"]["type"], "rate_limit_error", "{prefix}: {v}");
        assert_eq!(
            v["error"]["message"], "mock upstream error",
            "{prefix}: {v}"
        );
    }
    // The tool result reached the OpenAI upstream as a `tool` message after the assistant's call.
    let follow = oa
        .state
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|s| serde_json::from_slice::<serde_json::Value>(&s.body).unwrap())
        .find(|b| b["messages"].as_array().unwrap().len() == 3)
        .expect("the follow-up request");
    assert_eq!(follow["messages"][1]["tool_calls"][0]["id"], "call_mock");
    assert_eq!(
        follow["messages"][2],
        serde_json::json!({"role": "tool", "tool_call_id": "call_mock", "content": "sunny"})
    );
    assert_eq!(an.count(), 6);
    assert_eq!(oa.count(), 6);
}

/// The OpenAI SDK against an OpenAI-compatible upstream (passed through) and an Anthropic one
/// (translated): the same four cases.
#[tokio::test]
async fn openai_python_sdk_against_both_upstream_kinds() {
    let (_oa, an, p) = common::both_formats().await;
    let base = format!("{}/v1", p.proxy);
    for prefix in ["oa", "an"] {
        let v = run_script("openai_formats.py", base.clone(), prefix, &p).await;
        assert!(
            v["text"].as_str().unwrap().starts_with("received "),
            "{prefix}: {v}"
        );
        assert_eq!(v["finish_reason"], "stop", "{prefix}: {v}");
        assert_eq!(
            v["usage"],
            serde_json::json!({"input": 11, "output": 7}),
            "{prefix}: {v}"
        );
        assert_eq!(v["streamed"], "tok0 tok1 tok2 ", "{prefix}: {v}");
        if prefix == "an" {
            // (The OpenAI mock's echo stream sends no finish chunk.)
            assert_eq!(v["streamed_finish_reason"], "stop", "{prefix}: {v}");
        }
        assert_eq!(v["streamed_usage"]["completion_tokens"], 7, "{prefix}: {v}");
        assert_eq!(v["tools"][0]["name"], "get_weather", "{prefix}: {v}");
        assert_eq!(
            v["tools"][0]["input"],
            serde_json::json!({"city": "Paris"}),
            "{prefix}: {v}"
        );
        assert_eq!(v["tools_finish_reason"], "tool_calls", "{prefix}: {v}");
        assert!(
            v["follow_up"].as_str().unwrap().starts_with("received "),
            "{prefix}: {v}"
        );
        assert_eq!(
            v["tools_streamed"][0]["input"],
            serde_json::json!({"city": "Paris"}),
            "{prefix}: {v}"
        );
        assert_eq!(
            v["tools_streamed_finish_reason"], "tool_calls",
            "{prefix}: {v}"
        );
        assert_eq!(v["error"]["status"], 429, "{prefix}: {v}");
        assert_eq!(
            v["error"]["message"], "mock upstream error",
            "{prefix}: {v}"
        );
    }
    // The tool result reached the Anthropic upstream as a tool_result block in a user turn.
    let follow = an
        .state
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|s| serde_json::from_slice::<serde_json::Value>(&s.body).unwrap())
        .find(|b| b["messages"].as_array().unwrap().len() == 3)
        .expect("the follow-up request");
    assert_eq!(follow["messages"][1]["content"][1]["type"], "tool_use");
    assert_eq!(follow["messages"][2]["content"][0]["type"], "tool_result");
    assert_eq!(
        follow["messages"][2]["content"][0]["tool_use_id"],
        "toolu_mock"
    );
}

/// Both SDKs with `model: "auto"`: routed, with the first choice failing (503) so the fallback
/// chain crosses formats: OpenAI upstream down → Anthropic upstream answers, and the reverse.
#[tokio::test]
async fn both_sdks_with_auto_fall_back_across_formats() {
    let oa = Mock::start().await;
    let an = Mock::start_anthropic().await;
    for down in ["oa", "an"] {
        // The cheaper model is tried first (equal priors: same tier) and is the one that fails.
        let (oa_id, an_id) = if down == "oa" {
            ("error:503", "echo")
        } else {
            ("echo", "error:503")
        };
        let (oa_price, an_price) = if down == "oa" { (0.1, 1.0) } else { (1.0, 0.1) };
        let yaml = format!(
            r#"listen: 127.0.0.1:0
admin: {{ listen: 127.0.0.1:0 }}
providers:
  - name: oa
    kind: openai
    base_url: {}
    models:
      - {{ id: oa-model, upstream_id: "{oa_id}", tier: premium, cost_per_mtok: {{ input: {oa_price}, output: {oa_price} }} }}
  - name: an
    kind: anthropic
    base_url: {}
    models:
      - {{ id: an-model, upstream_id: "{an_id}", tier: premium, cost_per_mtok: {{ input: {an_price}, output: {an_price} }} }}
policies:
  - {{ domain: programming, action: code-generation, description: "writing new code", models: [oa-model, an-model] }}
  - {{ domain: chat, action: small-talk, description: "greetings and casual conversation", models: [oa-model, an-model] }}
"#,
            oa.base_url(),
            an.base_url()
        );
        let p = Proxy::start(&yaml).await;
        let base = p.proxy.clone();
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(python())
                .arg(common::repo_root().join("tests/sdk/auto_sdk.py"))
                .arg(base)
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{down} down:\n{stderr}\n{}", p.log());
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let served = if down == "oa" { "an-model" } else { "oa-model" };
        for sdk in ["openai", "anthropic"] {
            assert_eq!(v[sdk]["model"], served, "{down} down, {sdk}: {v}");
            assert_eq!(v[sdk]["route"], "programming/code-generation", "{v}");
            assert!(
                v[sdk]["text"].as_str().unwrap().starts_with("received "),
                "{down} down, {sdk}: {v}"
            );
            assert_eq!(
                v[sdk]["streamed"], "tok0 tok1 tok2 ",
                "{down} down, {sdk}: {v}"
            );
        }
        // The first request of each SDK tried the failing model first.
        let id = v["openai"]["decision"].as_str().unwrap();
        let mut d = serde_json::Value::Null;
        for _ in 0..100 {
            let r = reqwest::get(format!("{}/api/decisions/{id}", p.admin))
                .await
                .unwrap();
            if r.status() == 200 {
                d = r.json().await.unwrap();
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let tried: Vec<&str> = d["details"]["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["model"].as_str().unwrap())
            .collect();
        let failing = if down == "oa" { "oa-model" } else { "an-model" };
        assert_eq!(tried, [failing, served], "{d}");
    }
}
