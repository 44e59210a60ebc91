//! The executor registry end to end (issue 7): models from the config, from a provider's
//! `GET /v1/models` (discovery) and from executor plugins' `describe`, all routable; executor
//! plugins answering through the proxy in the client's format; failing plugins falling back;
//! unhealthy plugins and providers leaving the candidates and coming back; the store's catalog
//! tables; extractor features in the decision log. Real components from `plugins/dist`, real
//! proxy processes, mock upstreams on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::synthetic::{self, ask, attempts, chat, decision, messages};
use common::{repo_root, Proxy};
use dualrouter_testkit::Mock;
use serde_json::{json, Value};

fn dist(stem: &str) -> String {
    repo_root()
        .join("plugins/dist")
        .join(format!("{stem}.wasm"))
        .display()
        .to_string()
}

/// A test-executor plugin entry; its models are `<name>-test-<behaviour>`.
fn test_executor(name: &str, extra: &str) -> String {
    format!(
        "  - {{ name: {name}, plugin: {wasm}, timeout_ms: 1500, memory_mb: 32, config: {{ prefix: \"{name}-\"{extra} }} }}\n",
        wasm = dist("test_executor"),
    )
}

/// A proxy with an HTTP provider (`cheap` on `cheap_mock`), a gateway whose models are
/// discovered, the given executor entries, the code-features extractor, and one policy.
fn config(
    cheap: &Mock,
    gateway: &Mock,
    executors: &str,
    policy_models: &str,
    extra: &str,
) -> String {
    format!(
        r#"listen: 127.0.0.1:0
admin: {{ listen: 127.0.0.1:0 }}
limits: {{ first_byte_ms: 1500, idle_ms: 1500 }}
mirt:
  checkpoint: {ckpt}
  cost_weight: 0.3
  encoder: {{ kind: static, models_dir: {models} }}
plugin_host: {{ cache_dir: {cache}, unhealthy_cooldown_ms: 1500, health_interval_ms: 200 }}
providers:
  - name: cheapco
    kind: openai
    base_url: {cheap_url}
    models:
      - {{ id: cheap, upstream_id: echo, cost_per_mtok: {{ input: 0.1, output: 0.4 }} }}
  - name: gateway
    kind: openai
    base_url: {gateway_url}
    discover_models: true
    discovered_cost_per_mtok: {{ input: 3, output: 9 }}
executors:
{executors}feature_extractors:
  - {{ name: code, plugin: {code} }}
policies:
  - domain: general
    action: question
    description: "questions and small tasks of any kind"
    examples: ["say hello to Ada", "what colour is a plum?"]
    models: [{policy_models}]
{extra}"#,
        ckpt = synthetic::checkpoint().display(),
        models = repo_root().join("models").display(),
        cache = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("plugin-cache")
            .display(),
        cheap_url = cheap.base_url(),
        gateway_url = gateway.base_url(),
        code = dist("code_features"),
    )
}

async fn get_json(url: &str) -> Value {
    let r = reqwest::get(url).await.unwrap();
    assert_eq!(r.status(), 200, "GET {url}");
    r.json().await.unwrap()
}

async fn executors(p: &Proxy) -> Vec<Value> {
    get_json(&format!("{}/api/executors", p.admin))
        .await
        .as_array()
        .cloned()
        .expect("/api/executors is a list")
}

async fn executor(p: &Proxy, id: &str) -> Value {
    executors(p)
        .await
        .into_iter()
        .find(|e| e["id"] == id)
        .unwrap_or_else(|| panic!("{id} not in /api/executors"))
}

/// Polls `cond` every 50 ms for up to `within`.
async fn eventually<F, Fut>(within: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !cond().await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The text of an OpenAI SSE body, its deltas joined.
fn sse_text(body: &str) -> String {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(String::from)
        })
        .collect()
}

#[tokio::test]
async fn every_source_of_models_is_listed_routable_and_answers_in_the_clients_format() {
    let (cheap, gateway) = (Mock::start().await, Mock::start().await);
    gateway.list(&["gw-a", "gw-b", "cheap"]);
    let p = Proxy::start(&config(
        &cheap,
        &gateway,
        &test_executor("tx", ""),
        "tx-test-echo, cheap",
        "",
    ))
    .await;

    // GET /v1/models: the alias, the config's model, the discovered ones, the plugin's.
    let listed = get_json(&p.url("/v1/models")).await;
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    for id in [
        "auto",
        "cheap",
        "gw-a",
        "gw-b",
        "tx-test-echo",
        "tx-test-trap",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    assert_eq!(ids.iter().filter(|i| **i == "cheap").count(), 1, "{ids:?}");
    let owner = |id: &str| {
        listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .map(|m| m["owned_by"].clone())
    };
    assert_eq!(owner("tx-test-echo"), Some(json!("tx")));
    assert_eq!(owner("gw-a"), Some(json!("gateway")));

    // GET /api/executors: source, price, health of each.
    let echo = executor(&p, "tx-test-echo").await;
    assert_eq!(echo["source"], "plugin", "{echo}");
    assert_eq!(echo["provider"], "tx");
    assert_eq!(echo["cost_per_mtok"], json!({"input": 1.0, "output": 2.0}));
    assert_eq!(echo["health"], "healthy");
    let gw = executor(&p, "gw-a").await;
    assert_eq!(gw["source"], "discovered", "{gw}");
    assert_eq!(gw["cost_per_mtok"], json!({"input": 3.0, "output": 9.0}));
    assert_eq!(executor(&p, "cheap").await["source"], "config");

    // An executor plugin's model, OpenAI JSON.
    let a = ask(
        &p,
        "/v1/chat/completions",
        &json!({"model": "tx-test-echo", "messages": [{"role": "user", "content": "hello"}]}),
        &[],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.model.as_deref(), Some("tx-test-echo"));
    let v: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "tx-test-echo");
    assert_eq!(v["choices"][0]["message"]["content"], "echo: hello");
    assert_eq!(v["usage"]["prompt_tokens"], 3);
    assert_eq!(v["usage"]["completion_tokens"], 5);
    let d = decision(&p, a.decision.as_deref().unwrap()).await;
    assert_eq!(d["provider"], "tx", "{d}");
    assert_eq!(d["selected_model"], "tx-test-echo");
    assert_eq!(d["input_tokens"], 3);

    // OpenAI SSE.
    let a = ask(&p, "/v1/chat/completions", &json!({"model": "tx-test-echo", "stream": true, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "stream me"}]}), &[]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(sse_text(&a.body), "echo: stream me");
    assert!(a.body.trim_end().ends_with("data: [DONE]"), "{}", a.body);
    assert!(
        a.body.contains("\"prompt_tokens\":3"),
        "usage chunk: {}",
        a.body
    );

    // Anthropic JSON: the system prompt and content blocks reach the plugin as turns.
    let a = ask(&p, "/v1/messages", &json!({"model": "tx-test-echo", "max_tokens": 32, "system": "be brief", "messages": [{"role": "user", "content": [{"type": "text", "text": "from claude"}]}]}), &[]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let v: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["type"], "message", "{v}");
    assert_eq!(v["content"][0]["text"], "echo: from claude");
    assert_eq!(v["usage"]["input_tokens"], 3);

    // Anthropic SSE.
    let a = ask(&p, "/v1/messages", &json!({"model": "tx-test-echo", "max_tokens": 32, "stream": true, "messages": [{"role": "user", "content": "claude streams"}]}), &[]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("event: message_start"), "{}", a.body);
    assert!(a.body.contains("echo: claude streams"), "{}", a.body);
    assert!(a.body.contains("event: message_stop"), "{}", a.body);

    // The Responses API, whole and streamed; the answer is stored and can be continued.
    let a = ask(
        &p,
        "/v1/responses",
        &json!({"model": "tx-test-echo", "input": "from codex"}),
        &[],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let v: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["object"], "response", "{v}");
    assert_eq!(v["output"][0]["content"][0]["text"], "echo: from codex");
    let stored = get_json(&p.url(&format!("/v1/responses/{}", v["id"].as_str().unwrap()))).await;
    assert_eq!(stored["output"], v["output"]);
    let a = ask(&p, "/v1/responses", &json!({"model": "tx-test-echo", "stream": true, "input": "again", "previous_response_id": v["id"]}), &[]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("event: response.completed"), "{}", a.body);
    assert!(a.body.contains("\"delta\":\"echo: again\""), "{}", a.body);

    // A discovered model goes to its provider under its own id.
    let before = gateway.count();
    let a = ask(
        &p,
        "/v1/chat/completions",
        &json!({"model": "gw-a", "messages": [{"role": "user", "content": "hi"}]}),
        &[],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(gateway.count(), before + 1);
    let sent: Value = serde_json::from_slice(&gateway.last().body).unwrap();
    assert_eq!(sent["model"], "gw-a");

    // The store's catalog: every model with its source, every executor plugin.
    let store = dualrouter_store::Store::open(&format!(
        "sqlite://{}/dualrouter.db",
        p.dir.path().display()
    ))
    .await
    .unwrap();
    eventually(
        Duration::from_secs(10),
        "catalog tables written",
        || async { store.list_executor_services().await.unwrap().len() == 1 },
    )
    .await;
    let services = store.list_executor_services().await.unwrap();
    assert_eq!(services[0].name, "tx");
    assert_eq!(services[0].kind, "test");
    assert_eq!(services[0].health, "healthy");
    assert!(services[0].settings.0["models"]
        .as_array()
        .unwrap()
        .contains(&json!("tx-test-echo")));
    let rows = store.list_candidate_models().await.unwrap();
    let source = |id: &str| rows.iter().find(|r| r.id == id).map(|r| r.source.clone());
    assert_eq!(source("cheap").as_deref(), Some("config"));
    assert_eq!(source("gw-b").as_deref(), Some("discovered"));
    assert_eq!(source("tx-test-echo").as_deref(), Some("plugin"));
}

#[tokio::test]
async fn a_failing_plugin_falls_back_and_an_unhealthy_one_leaves_the_candidates() {
    let (cheap, gateway) = (Mock::start().await, Mock::start().await);
    let executors = format!(
        "{}{}{}",
        test_executor("tx", ""),
        test_executor("ty", ""),
        test_executor("tz", ", health: unhealthy"),
    );
    // Equal priors and prices: the chain keeps the policy's order (tz is out before scoring).
    let p = Proxy::start(&config(
        &cheap,
        &gateway,
        &executors,
        "tz-test-echo, tx-test-error, ty-test-echo",
        "routing: { default_models: [tz-test-echo, tx-test-error, ty-test-echo] }\n",
    ))
    .await;

    // tz reports itself unhealthy at its first health check: out of the candidates.
    eventually(Duration::from_secs(10), "tz marked unhealthy", || async {
        executor(&p, "tz-test-echo").await["health"] == "unhealthy"
    })
    .await;

    // The executor's own error: the next candidate answers.
    let a = ask(
        &p,
        "/v1/chat/completions",
        &chat("say hello to Ada", false),
        &[("x-session-id", "s1")],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.model.as_deref(), Some("ty-test-echo"), "{}", a.body);
    let d = decision(&p, a.decision.as_deref().unwrap()).await;
    assert_eq!(
        attempts(&d),
        [
            ("tx-test-error".to_string(), "executor".to_string()),
            ("ty-test-echo".to_string(), "ok".to_string())
        ],
        "{d}"
    );
    let excluded = d["details"]["excluded"].to_string();
    assert!(
        excluded.contains("tz-test-echo") && excluded.contains("unhealthy"),
        "{excluded}"
    );

    // A plugin that traps is stopped and answered for in the client's format ...
    let a = ask(
        &p,
        "/v1/chat/completions",
        &json!({"model": "tx-test-trap", "messages": [{"role": "user", "content": "boom"}]}),
        &[],
    )
    .await;
    assert_eq!(a.status, 502, "{}", a.body);
    let v: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["error"]["code"], "upstream_error", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("tx"),
        "{v}"
    );
    let a = ask(&p, "/v1/messages", &json!({"model": "tx-test-trap", "max_tokens": 8, "messages": [{"role": "user", "content": "boom"}]}), &[]).await;
    assert_eq!(a.status, 502, "{}", a.body);
    let v: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["type"], "error", "{v}");
    // ... and leaves the candidates for its cooldown: the routed request skips tx entirely.
    assert_eq!(executor(&p, "tx-test-error").await["health"], "unhealthy");
    let a = ask(
        &p,
        "/v1/chat/completions",
        &chat("what colour is a plum?", false),
        &[("x-session-id", "s2")],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let d = decision(&p, a.decision.as_deref().unwrap()).await;
    assert_eq!(
        attempts(&d),
        [("ty-test-echo".to_string(), "ok".to_string())],
        "{d}"
    );
    // It comes back when the cooldown is over.
    eventually(Duration::from_secs(10), "tx back in service", || async {
        executor(&p, "tx-test-error").await["health"] == "healthy"
    })
    .await;

    // A plugin that loops is stopped at its deadline (504) while other requests are served.
    let slow = {
        let url = p.url("/v1/chat/completions");
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .json(&json!({"model": "ty-test-loop", "messages": [{"role": "user", "content": "spin"}]}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let a = ask(
        &p,
        "/v1/chat/completions",
        &json!({"model": "cheap", "messages": [{"role": "user", "content": "meanwhile"}]}),
        &[],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        !slow.is_finished(),
        "the looping plugin answered before its deadline"
    );
    assert_eq!(slow.await.unwrap(), 504);
}

#[tokio::test]
async fn providers_are_checked_discovery_is_refreshed_and_reload_brings_new_plugins() {
    let (cheap, gateway) = (Mock::start().await, Mock::start().await);
    gateway.list(&["gw-a"]);
    let health = "routing: { default_models: [cheap, gw-a], health_checks: { interval_ms: 200, timeout_ms: 500, failures: 1 } }\n";
    let yaml = config(
        &cheap,
        &gateway,
        &test_executor("tx", ""),
        "cheap, gw-a",
        health,
    );
    let p = Proxy::start(&yaml).await;

    // The checks reach every provider with its own auth (none configured here) at GET /models.
    eventually(Duration::from_secs(10), "providers checked", || async {
        cheap
            .state
            .list_count
            .load(std::sync::atomic::Ordering::SeqCst)
            > 0
    })
    .await;

    // cheapco fails its checks: cheap leaves the candidates, gw-a answers without a failed attempt.
    cheap.force(Some("error:503"));
    eventually(
        Duration::from_secs(10),
        "cheap marked unhealthy",
        || async { executor(&p, "cheap").await["health"] == "unhealthy" },
    )
    .await;
    let before = cheap.count();
    let a = ask(
        &p,
        "/v1/chat/completions",
        &chat("say hello to Ada", false),
        &[("x-session-id", "h1")],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.model.as_deref(), Some("gw-a"));
    assert_eq!(cheap.count(), before, "an unhealthy provider got a request");
    let d = decision(&p, a.decision.as_deref().unwrap()).await;
    assert_eq!(
        attempts(&d),
        [("gw-a".to_string(), "ok".to_string())],
        "{d}"
    );
    // It comes back once a check passes.
    cheap.force(None);
    eventually(Duration::from_secs(10), "cheap healthy again", || async {
        executor(&p, "cheap").await["health"] == "healthy"
    })
    .await;

    // The gateway lists a new model: it becomes routable without a reload.
    gateway.list(&["gw-a", "gw-new"]);
    eventually(Duration::from_secs(10), "gw-new discovered", || async {
        executors(&p).await.iter().any(|e| e["id"] == "gw-new")
    })
    .await;
    let a = ask(
        &p,
        "/v1/chat/completions",
        &json!({"model": "gw-new", "messages": [{"role": "user", "content": "hi"}]}),
        &[],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);

    // A reload that adds an executor plugin brings its models; one that removes it takes them.
    let config_path = p.dir.path().join("config.yaml");
    let text = std::fs::read_to_string(&config_path).unwrap();
    let with_ty = text.replace(
        &test_executor("tx", ""),
        &format!("{}{}", test_executor("tx", ""), test_executor("ty", "")),
    );
    assert_ne!(with_ty, text);
    std::fs::write(&config_path, &with_ty).unwrap();
    let r = reqwest::Client::new()
        .post(format!("{}/api/reload", p.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let a = ask(
        &p,
        "/v1/chat/completions",
        &json!({"model": "ty-test-echo", "messages": [{"role": "user", "content": "new"}]}),
        &[],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    std::fs::write(&config_path, &text).unwrap();
    let r = reqwest::Client::new()
        .post(format!("{}/api/reload", p.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let a = ask(
        &p,
        "/v1/chat/completions",
        &json!({"model": "ty-test-echo", "messages": [{"role": "user", "content": "gone"}]}),
        &[],
    )
    .await;
    assert_eq!(a.status, 404, "{}", a.body);
}

#[tokio::test]
async fn extractor_features_are_logged_with_the_decision() {
    let (cheap, gateway) = (Mock::start().await, Mock::start().await);
    let dir = tempfile::tempdir().unwrap();
    let yaml = config(&cheap, &gateway, &test_executor("tx", ""), "cheap", "").replace(
        "  cost_weight: 0.3\n",
        &format!(
            "  cost_weight: 0.3\n  checkpoints_dir: {}\n  min_outcomes: 3\n  holdout_percent: 0\n",
            dir.path().display()
        ),
    );
    let p = Proxy::start(&yaml).await;
    let prompt = "Why does this fail?\n```python\ndef f(x):\n    return x +\n```";
    let a = ask(&p, "/v1/chat/completions", &chat(prompt, false), &[]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let d = decision(&p, a.decision.as_deref().unwrap()).await;
    let extra = &d["features"]["extra"];
    assert_eq!(extra["code.has_code"], 1.0, "{d}");
    assert_eq!(extra["code.lang_python"], 1.0, "{extra}");
    assert!(extra["code.code_lines"].as_f64().unwrap() >= 2.0, "{extra}");
    let a = ask(
        &p,
        "/v1/messages",
        &messages("Write a haiku about autumn leaves."),
        &[],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let d = decision(&p, a.decision.as_deref().unwrap()).await;
    assert_eq!(d["features"]["extra"]["code.has_code"], 0.0, "{d}");
}

/// The cursor-agent adapter behind the proxy, with a stand-in `cursor-agent` on the proxy's
/// PATH: an OpenAI client and an Anthropic client both get its answer.
#[tokio::test]
async fn a_cli_executor_answers_through_the_proxy() {
    let bin = tempfile::tempdir().unwrap();
    let script = bin.path().join("cursor-agent");
    std::fs::write(
        &script,
        r#"#!/bin/sh
# Stand-in for cursor-agent -p --output-format json: answers with its last argument.
for last in "$@"; do :; done
case "$last" in
  *"please fail"*) echo '{"type":"result","subtype":"error","is_error":true,"result":"quota exceeded"}'; exit 0 ;;
esac
printf '{"type":"result","subtype":"success","is_error":false,"result":"cursor: %s","usage":{"input_tokens":9,"output_tokens":2}}\n' "$last"
"#,
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (cheap, gateway) = (Mock::start().await, Mock::start().await);
    let cursor = format!(
        "  - {{ name: cursor, plugin: {}, allow_commands: [cursor-agent], timeout_ms: 5000, config: {{ models: \"cursor-gpt5=gpt-5\" }} }}\n",
        dist("cursor_agent")
    );
    let yaml = config(&cheap, &gateway, &cursor, "cursor-gpt5, cheap", "");
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let p = Proxy::start_with_env(&yaml, &[("PATH", &path)]).await;

    let a = ask(
        &p,
        "/v1/chat/completions",
        &json!({"model": "cursor-gpt5", "messages": [{"role": "user", "content": "hi there"}]}),
        &[],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let v: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "cursor: hi there");
    assert_eq!(v["usage"]["prompt_tokens"], 9);
    let a = ask(&p, "/v1/messages", &json!({"model": "cursor-gpt5", "max_tokens": 16, "messages": [{"role": "user", "content": "from claude"}]}), &[]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let v: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["content"][0]["text"], "cursor: from claude");
    // The CLI's own failure is an executor error in the client's format.
    let a = ask(
        &p,
        "/v1/chat/completions",
        &json!({"model": "cursor-gpt5", "messages": [{"role": "user", "content": "please fail"}]}),
        &[],
    )
    .await;
    assert_eq!(a.status, 502, "{}", a.body);
    assert!(a.body.contains("quota exceeded"), "{}", a.body);
}
