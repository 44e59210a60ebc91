//! `POST /v1/route` and `dualrouter route`: the route, its source and confidence, with the
//! Arch-Router answering, failing (embedded fallback), and absent.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};

use axum::routing::post;
use common::Proxy;
use serde_json::{json, Value};

const POLICIES: &str = r#"
policies:
  - domain: programming
    action: bug-fix
    description: "finding and fixing bugs, errors and crashes in existing code"
    examples: ["my rust code panics with index out of bounds", "why does this python script throw a KeyError", "segfault when freeing memory"]
    models: [m]
  - domain: writing
    action: summary
    description: "summarising a text, article or document"
    examples: ["summarise this article in three bullet points", "give me a tl;dr of this email"]
    models: [m]
  - domain: chat
    action: small-talk
    description: "greetings and casual conversation"
    examples: ["hello, how are you?", "good morning!", "tell me a joke"]
    models: [m]
"#;

fn config(extra: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\nadmin: {{ listen: 127.0.0.1:0 }}\nproviders:\n  - {{ name: p, kind: openai, base_url: \"http://127.0.0.1:9/v1\", models: [ {{ id: m }} ] }}\n{POLICIES}{extra}"
    )
}

async fn route(p: &Proxy, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(p.url("/v1/route"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// A mock Arch-Router answering with a fixed text, or 500 when `None`; records prompts.
async fn arch_mock(answer: Option<&'static str>) -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(move |body: axum::Json<Value>| {
            let s = s.clone();
            async move {
                s.lock().unwrap().push(body.0);
                match answer {
                    Some(a) => (
                        axum::http::StatusCode::OK,
                        axum::Json(json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": a}, "finish_reason": "stop"}]})),
                    ),
                    None => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({"error": "down"}))),
                }
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, seen)
}

#[tokio::test]
async fn embedded_classifier_routes_by_policy() {
    let p = Proxy::start(&config("")).await;
    let (s, v) = route(
        &p,
        json!({"prompt": "my program crashes with a null pointer exception, please fix it"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["route"]["domain"], "programming");
    assert_eq!(v["route"]["action"], "bug-fix");
    assert_eq!(v["route"]["source"], "embedded");
    assert!(v["route"]["confidence"].as_f64().unwrap() > 0.25);
    assert!(v["decision_id"].is_string());
    let (_, v) = route(&p, json!({"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi! good evening"}]})).await;
    assert_eq!(v["route"]["action"], "small-talk", "{v}");
    let (s, v) = route(&p, json!({"nothing": 1})).await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("messages"));
}

#[tokio::test]
async fn arch_router_answers_then_falls_back_when_it_fails() {
    let (url, seen) = arch_mock(Some(r#"{"route": "writing/summary"}"#)).await;
    let p = Proxy::start(&config(&format!(
        "classifier: {{ arch_router: {{ base_url: \"{url}\", timeout_ms: 500 }} }}\n"
    )))
    .await;
    let (_, v) = route(&p, json!({"prompt": "my code panics, fix it"})).await;
    // The Arch-Router's answer wins over what the embedded classifier would say.
    assert_eq!(v["route"]["source"], "arch-router", "{v}");
    assert_eq!(v["route"]["action"], "summary");
    let prompt = seen.lock().unwrap()[0]["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(prompt.contains(r#"{"name":"programming/bug-fix","description":"finding and fixing bugs, errors and crashes in existing code"}"#), "{prompt}");

    let (url, _) = arch_mock(None).await;
    let p = Proxy::start(&config(&format!(
        "classifier: {{ arch_router: {{ base_url: \"{url}\" }} }}\n"
    )))
    .await;
    let (_, v) = route(
        &p,
        json!({"prompt": "my code panics with index out of bounds, fix it"}),
    )
    .await;
    assert_eq!(v["route"]["source"], "embedded", "{v}");
    assert_eq!(v["route"]["action"], "bug-fix");
    let m = reqwest::get(format!("{}/metrics", p.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains(r#"dualrouter_classifier_fallbacks_total{reason="status"} 1"#),
        "{m}"
    );

    let (url, _) = arch_mock(Some(r#"{"route": "other"}"#)).await;
    let p = Proxy::start(&config(&format!(
        "classifier: {{ arch_router: {{ base_url: \"{url}\" }} }}\n"
    )))
    .await;
    let (_, v) = route(&p, json!({"prompt": "what is the capital of France?"})).await;
    assert_eq!(v["route"]["source"], "default", "{v}");
}

#[test]
fn route_command_prints_the_route() {
    let dir = tempfile::tempdir().unwrap();
    common::link_repo_files(dir.path());
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        format!(
            "{}\ndatabase: sqlite://{}/r.db\n",
            config(""),
            dir.path().display()
        ),
    )
    .unwrap();
    let (ok, out) = common::run_cli(&[
        "route",
        "--json",
        "--config",
        cfg.to_str().unwrap(),
        "summarise this article about whales in two sentences",
    ]);
    assert!(ok, "{out}");
    let line = out.lines().find(|l| l.starts_with('{')).unwrap();
    let v: Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["route"]["domain"], "writing", "{v}");
    assert_eq!(v["route"]["source"], "embedded");
}

/// `dualrouter route` serves nothing, so it runs with the admin token, the client keys and the
/// provider's key unset (`serve` refuses that config, naming each); and the config's relative
/// paths are its folder's whatever the working directory.
#[test]
fn route_command_needs_no_secret_and_reads_paths_from_the_config_folder() {
    let dir = tempfile::tempdir().unwrap();
    let (etc, share) = (dir.path().join("etc"), dir.path().join("share"));
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::create_dir_all(&share).unwrap();
    common::link_repo_files(&share);
    let cfg = etc.join("dualrouter.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:0\n\
             admin: {{ listen: 0.0.0.0:0, token_env: DR_TEST_UNSET_TOKEN }}\n\
             auth: {{ keys_env: DR_TEST_UNSET_KEYS }}\n\
             providers:\n  - {{ name: p, kind: openai, base_url: \"http://127.0.0.1:9/v1\", api_key_env: DR_TEST_UNSET_KEY, models: [ {{ id: m }} ] }}\n\
             database: sqlite://../var/route.db\n\
             mirt: {{ checkpoint: ../share/checkpoints/default.json, encoder: {{ models_dir: ../share/models }} }}\n\
             {POLICIES}"
        ),
    )
    .unwrap();
    let run = |cwd: &std::path::Path, args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dualrouter"))
            .args(args)
            .current_dir(cwd)
            .env_remove("DR_TEST_UNSET_TOKEN")
            .env_remove("DR_TEST_UNSET_KEYS")
            .env_remove("DR_TEST_UNSET_KEY")
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    };
    // From the config's folder, named bare (`--config dualrouter.yaml`).
    let (ok, out) = run(
        &etc,
        &[
            "route",
            "--json",
            "--config",
            "dualrouter.yaml",
            "give me a tl;dr of this email",
        ],
    );
    assert!(ok, "{out}");
    let line = out.lines().find(|l| l.starts_with('{')).unwrap();
    let v: Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["route"]["domain"], "writing", "{v}");
    assert!(
        dir.path().join("var/route.db").exists(),
        "the database is not beside the config's folder: {out}"
    );

    // From elsewhere, named by its full path.
    let (ok, out) = run(
        std::path::Path::new("/"),
        &["serve", "--config", cfg.to_str().unwrap()],
    );
    assert!(!ok, "{out}");
    for key in [
        "admin.token_env",
        "auth.keys_env",
        "providers[0].api_key_env",
    ] {
        assert!(
            out.contains(&format!("{key}: environment variable")),
            "{key}: {out}"
        );
    }
}

/// `mirt.exploration` in the router the server builds: off, the objective's best (a model the
/// checkpoint knows) is chosen and `explore` is false; with optimism about a cold, dearer model
/// and caps that allow it, that model is tried and the decision says `explore: true`.
#[test]
fn exploration_shows_in_the_decision() {
    let run = |exploration: &str| -> Value {
        let dir = tempfile::tempdir().unwrap();
        common::link_repo_files(dir.path());
        let cfg = dir.path().join("c.yaml");
        let policies = POLICIES.replace("models: [m]", "models: [gpt-4-1106-preview, newcomer]");
        std::fs::write(
            &cfg,
            format!(
                "listen: 127.0.0.1:0\nadmin: {{ listen: 127.0.0.1:0 }}\nproviders:\n  - {{ name: p, kind: openai, base_url: \"http://127.0.0.1:9/v1\", models: [ {{ id: gpt-4-1106-preview, cost_per_mtok: {{ input: 10, output: 30 }} }}, {{ id: newcomer, tier: premium, cost_per_mtok: {{ input: 20, output: 60 }} }} ] }}\n{policies}\nmirt: {{ cost_weight: 0.0, exploration: {exploration} }}\ndatabase: sqlite://{}/r.db\n",
                dir.path().display()
            ),
        )
        .unwrap();
        let (ok, out) = common::run_cli(&[
            "route",
            "--json",
            "--config",
            cfg.to_str().unwrap(),
            "summarise this article about whales in two sentences",
        ]);
        assert!(ok, "{out}");
        let line = out.lines().find(|l| l.starts_with('{')).unwrap();
        serde_json::from_str(line).unwrap()
    };
    let off = run("{ policy: off }");
    assert_eq!(off["selected_model"], "gpt-4-1106-preview", "{off}");
    assert_eq!(off["explore"], false, "{off}");
    let on = run("{ policy: ucb, scale: 50, max_traffic_share: 1, max_spend_share: 1 }");
    assert_eq!(on["selected_model"], "newcomer", "{on}");
    assert_eq!(on["explore"], true, "{on}");
    assert!(
        on["reasoning"].as_str().unwrap().contains("exploration"),
        "{on}"
    );
    let capped = run("{ policy: ucb, scale: 50, max_traffic_share: 0, max_spend_share: 1 }");
    assert_eq!(capped["selected_model"], "gpt-4-1106-preview", "{capped}");
    assert_eq!(capped["explore"], false, "{capped}");
}
