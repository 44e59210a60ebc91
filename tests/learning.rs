//! Learning from outcomes through the real proxy: feedback on routed decisions → a refit in
//! the background (`POST /api/mirt/train`) → activation, checked on the held-out slice → routing
//! changes live. A worse checkpoint is refused, and says why; `dualrouter train --from-db`
//! fits the same data from the command line.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::synthetic::{ask, chat, clusters_checkpoint, config, config_with, hard};
use common::{run_cli, Proxy};
use dualrouter_testkit::Mock;
use serde_json::{json, Value};

async fn feedback(p: &Proxy, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(p.url("/v1/feedback"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn admin(p: &Proxy, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let c = reqwest::Client::new();
    let url = format!("{}{path}", p.admin);
    let req = match method {
        "POST" => c.post(&url).json(&body.unwrap_or(json!({}))),
        _ => c.get(&url),
    };
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// `POST /api/mirt/checkpoints/{version}/activate[?force=true]`: status and body.
async fn activate(p: &Proxy, version: i64, force: bool) -> (u16, Value) {
    let query = if force { "?force=true" } else { "" };
    let path = format!("/api/mirt/checkpoints/{version}/activate{query}");
    admin(p, "POST", &path, None).await
}

/// Starts a refit in the background (`POST /api/mirt/train`) and waits for it to end: the job
/// as accepted, then as finished (asserted done).
async fn refit(p: &Proxy) -> (Value, Value) {
    let (s, job) = admin(p, "POST", "/api/mirt/train", Some(json!({}))).await;
    assert_eq!(s, 202, "{job}");
    let mut done = Value::Null;
    for _ in 0..600 {
        let (_, j) = admin(p, "GET", "/api/mirt/train", None).await;
        if j["state"] != "running" {
            done = j;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(done["state"], "done", "{done}");
    (job, done)
}

/// `dualrouter train --from-db` on the proxy's config and store, writing `out`; its output.
fn refit_from_cli(p: &Proxy, out: &std::path::Path) -> String {
    let (ok, log) = run_cli(&[
        "train",
        "--from-db",
        "--config",
        p.dir.path().join("config.yaml").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{log}");
    log
}

async fn routed_model(p: &Proxy, prompt: &str) -> String {
    let a = ask(p, "/v1/route", &json!({ "prompt": prompt }), &[]).await;
    let v: Value = serde_json::from_str(&a.body).unwrap();
    v["selected_model"].as_str().unwrap().to_string()
}

/// Logs outcomes saying the cheap model does well on hard prompts and the strong one fails
/// them: 60 routed requests each (the cheap ones under a price cap), all with feedback. Returns
/// the first decision id. With `strict`, each request must have gone where routing sends it
/// before any refit; without, the score follows the model that served (a refit activated
/// meanwhile may already send hard prompts to the cheap model).
async fn teach(p: &Proxy, strict: bool) -> String {
    let mut first = None;
    for i in 0..60 {
        let a = ask(
            p,
            "/v1/chat/completions",
            &chat(&format!("{} (case {i})", hard(400 + i)), false),
            &[("x-dualrouter-max-cost", "1")],
        )
        .await;
        assert_eq!(a.model.as_deref(), Some("cheap"));
        let id = a.decision.unwrap();
        let (s, v) = feedback(p, json!({"decision_id": id, "score": 1.0})).await;
        assert_eq!(s, 200, "{v}");
        first.get_or_insert(id);
        let prompt = format!("{} (case {})", hard(500 + i), 100 + i);
        let a = ask(p, "/v1/chat/completions", &chat(&prompt, false), &[]).await;
        if strict {
            assert_eq!(a.model.as_deref(), Some("strong"));
        }
        let score = if a.model.as_deref() == Some("cheap") {
            1.0
        } else {
            0.0
        };
        let (s, v) = feedback(
            p,
            json!({"decision_id": a.decision.unwrap(), "score": score, "comment": "graded"}),
        )
        .await;
        assert_eq!(s, 200, "{v}");
    }
    first.unwrap()
}

/// The synthetic world's config, learning settings added.
fn learning_config(cheap: &Mock, strong: &Mock, dir: &std::path::Path, extra: &str) -> String {
    with_learning(config(cheap, strong, ""), dir, extra)
}

fn with_learning(config: String, dir: &std::path::Path, extra: &str) -> String {
    config.replace(
        "  cost_weight: 0.3\n",
        &format!(
            "  cost_weight: 0.3\n  checkpoints_dir: {}\n  min_outcomes: 10\n  holdout_percent: 20\n{extra}",
            dir.display()
        ),
    )
}

#[tokio::test]
async fn scheduled_refits_activate_what_passes() {
    let cheap = Mock::start().await;
    let strong = Mock::start_anthropic().await;
    let dir = tempfile::tempdir().unwrap();
    let p = Proxy::start(&learning_config(
        &cheap,
        &strong,
        dir.path(),
        "  retrain_every: 2s\n",
    ))
    .await;
    teach(&p, false).await;
    // Within a few periods a refit on these outcomes is registered and activated.
    for _ in 0..300 {
        if routed_model(&p, &hard(1000)).await == "cheap" {
            let (_, list) = admin(&p, "GET", "/api/mirt/checkpoints", None).await;
            let list = list.as_array().unwrap();
            assert!(list.len() >= 2, "{list:?}");
            // Refits go on every 2 s, so a newer one may be registered (and not yet judged)
            // by now: the active checkpoint is one of the refits, not the config's.
            let active: Vec<&Value> = list.iter().filter(|c| c["active"] == true).collect();
            assert_eq!(active.len(), 1, "one active checkpoint: {list:?}");
            assert!(active[0]["version"].as_i64().unwrap() >= 2, "{list:?}");
            assert_eq!(
                active[0]["metrics"]["source"], "logged outcomes",
                "a refit is active: {list:?}"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("no scheduled refit was activated:\n{}", p.log());
}

#[tokio::test]
async fn feedback_retrain_activate_changes_routing() {
    let cheap = Mock::start().await;
    let strong = Mock::start_anthropic().await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = learning_config(&cheap, &strong, dir.path(), "");
    let p = Proxy::start(&yaml).await;

    // Feedback is checked: unknown decision, bad score, bad id.
    let (s, v) = feedback(
        &p,
        json!({"decision_id": "01a20f90-2119-7436-b91a-a2d5647ce189", "score": 1}),
    )
    .await;
    assert_eq!(s, 404, "{v}");
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    let (s, v) = feedback(&p, json!({"decision_id": "x", "score": 1})).await;
    assert_eq!(s, 400, "{v}");

    // In practice the strong model fails these hard prompts and the cheap one does well.
    assert_eq!(routed_model(&p, &hard(1000)).await, "strong");
    let first = teach(&p, true).await;
    let (s, v) = feedback(&p, json!({"decision_id": first, "score": 1.5})).await;
    assert_eq!(s, 400, "{v}");

    // The shipped checkpoint is registered and active.
    let (_, list) = admin(&p, "GET", "/api/mirt/checkpoints", None).await;
    let list = list.as_array().unwrap().clone();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["active"], true);
    let v1 = list[0]["version"].as_i64().unwrap();

    // Refit in the background, with progress.
    let (job, done) = refit(&p).await;
    assert_eq!(job["state"], "running");
    assert!(done["epoch"].as_u64().unwrap() > 0, "{done}");
    let v2 = done["version"].as_i64().unwrap();
    assert_ne!(v2, v1);
    // Registering does not activate.
    assert_eq!(routed_model(&p, &hard(1000)).await, "strong");

    let (s, a) = activate(&p, v2, false).await;
    assert_eq!(s, 200, "{a}");
    assert!(a["holdout_n"].as_u64().unwrap() > 5, "{a}");
    assert!(a["new_bce"].as_f64().unwrap() < a["active_bce"].as_f64().unwrap());
    // Routing changed, live.
    assert_eq!(routed_model(&p, &hard(1000)).await, "cheap");
    let r = ask(&p, "/v1/chat/completions", &chat(&hard(1001), false), &[]).await;
    assert_eq!(r.model.as_deref(), Some("cheap"));

    // Going back to the shipped checkpoint is worse on the held-out slice: refused.
    let (s, e) = activate(&p, v1, false).await;
    assert_eq!(s, 409, "{e}");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(msg.contains("worse") && msg.contains("held-out"), "{msg}");
    assert_eq!(routed_model(&p, &hard(1000)).await, "cheap");
    let (_, list) = admin(&p, "GET", "/api/mirt/checkpoints", None).await;
    let active: Vec<i64> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["active"] == true)
        .map(|c| c["version"].as_i64().unwrap())
        .collect();
    assert_eq!(active, vec![v2]);
    // Unless forced.
    let (s, a) = activate(&p, v1, true).await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(routed_model(&p, &hard(1000)).await, "strong");
    let (s, _) = activate(&p, 999, false).await;
    assert_eq!(s, 404);

    // The same refit from the command line, on the same store.
    let out = dir.path().join("cli.json");
    let log = refit_from_cli(&p, &out);
    assert!(log.contains("registered it as checkpoint v3"), "{log}");
    assert!(out.is_file());
}

/// A refit keeps the prompt layout of the checkpoint it refits: from one trained with
/// `--prompt-x clusters:8`, the background job and `train --from-db` both write checkpoints with
/// the same centroids and no embedding in x, and the refit learns the outcomes all the same.
#[tokio::test]
async fn a_refit_keeps_the_active_checkpoint_s_layout_and_shape() {
    let read = |p: &std::path::Path| -> Value {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    // latent dimension and ensemble members of a checkpoint, as its file says
    let shape = |m: &Value| {
        (
            m["weights"]["latent"].as_u64().unwrap(),
            1 + m["ensemble"].as_array().map_or(0, Vec::len),
            m["training"]["config"]["latent"].as_u64().unwrap(),
        )
    };
    let shipped = read(clusters_checkpoint());
    assert_eq!(shipped["embedding_in_x"], false);
    assert_eq!(shipped["centroids"].as_array().map(Vec::len), Some(8));
    assert_eq!(shape(&shipped), (6, 2, 6), "not the defaults (25, 5)");

    let cheap = Mock::start().await;
    let strong = Mock::start_anthropic().await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = with_learning(
        config_with(clusters_checkpoint(), &cheap, &strong, ""),
        dir.path(),
        "",
    );
    let p = Proxy::start(&yaml).await;
    assert_eq!(routed_model(&p, &hard(1000)).await, "strong");
    teach(&p, false).await;

    let (job, done) = refit(&p).await;
    assert_eq!(job["members"], 2, "{job}");
    let version = done["version"].as_i64().unwrap();
    let (_, list) = admin(&p, "GET", "/api/mirt/checkpoints", None).await;
    let row = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["version"] == version)
        .unwrap()
        .clone();
    let refit = read(std::path::Path::new(row["path"].as_str().unwrap()));
    assert_eq!(refit["embedding_in_x"], false, "the job's refit");
    assert_eq!(refit["centroids"], shipped["centroids"], "the job's refit");
    assert_eq!(shape(&refit), shape(&shipped), "the job's refit");

    let (s, a) = activate(&p, version, false).await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(routed_model(&p, &hard(1000)).await, "cheap");

    let out = dir.path().join("cli.json");
    let log = refit_from_cli(&p, &out);
    assert!(
        log.contains("prompt in x: clusters:8, latent 6, 2 members"),
        "{log}"
    );
    let cli = read(&out);
    assert_eq!(cli["embedding_in_x"], false, "the command line's refit");
    assert_eq!(shape(&cli), shape(&shipped), "the command line's refit");
    assert_eq!(
        cli["centroids"], shipped["centroids"],
        "the command line's refit"
    );
}
