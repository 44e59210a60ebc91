//! `model: "auto"` end to end through the real proxy: MIRT picks the model (a checkpoint
//! trained here on a small synthetic set), the fallback chain takes over on every failure kind
//! before the first byte and never after it, the price cap, the breaker's cool-down and
//! recovery, and a multi-MiB prompt routed and fallen back. Upstreams are mocks speaking
//! OpenAI's and Anthropic's wire formats.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::synthetic::{ask, attempts, chat, checkpoint, config, decision, easy, hard, messages};
use common::{repo_root, run_cli, Proxy};
use dualrouter_testkit::net::ReservedPort;
use dualrouter_testkit::Mock;
use serde_json::{json, Value};

#[tokio::test]
async fn easy_prompts_go_cheap_and_hard_ones_strong() {
    let cheap = Mock::start().await;
    let strong = Mock::start_anthropic().await;
    let p = Proxy::start(&config(&cheap, &strong, "")).await;
    // Prompts from the templates with fillers the training set did not use.
    for i in 200..206 {
        let a = ask(&p, "/v1/chat/completions", &chat(&easy(i), false), &[]).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(
            a.model.as_deref(),
            Some("cheap"),
            "easy prompt {:?}",
            easy(i)
        );
        let a = ask(&p, "/v1/chat/completions", &chat(&hard(i), false), &[]).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(
            a.model.as_deref(),
            Some("strong"),
            "hard prompt {:?}",
            hard(i)
        );
        assert!(a.route.as_deref().unwrap().starts_with("general/"));
    }
    // A concrete model id passes through unrouted.
    let a = ask(
        &p,
        "/v1/chat/completions",
        &json!({"model": "strong", "messages": [{"role": "user", "content": easy(1)}]}),
        &[],
    )
    .await;
    assert_eq!(
        (a.status, a.model.as_deref(), a.route.as_deref()),
        (200, Some("strong"), None)
    );

    // The decision is logged whole.
    let a = ask(&p, "/v1/chat/completions", &chat(&hard(300), false), &[]).await;
    let d = decision(&p, a.decision.as_deref().unwrap()).await;
    assert_eq!(d["requested_model"], "auto");
    assert_eq!(d["selected_model"], "strong");
    assert_eq!(d["domain"], "general");
    assert_eq!(d["route_source"], "embedded");
    let cands = d["candidates"].as_array().unwrap();
    assert_eq!(cands.len(), 2);
    assert_eq!(cands[0]["model"], "strong");
    assert!(cands[0]["p_success"].as_f64().unwrap() > cands[1]["p_success"].as_f64().unwrap());
    assert!(cands[1]["cost_per_mtok"].as_f64().unwrap() < 1.0);
    assert!(d["details"]["reasoning"]
        .as_str()
        .unwrap()
        .contains("→ MIRT: strong"));
    assert_eq!(d["details"]["fallbacks"], json!(["cheap"]));
    assert_eq!(attempts(&d), vec![("strong".into(), "ok".into())]);
    for step in ["embed", "classify", "score", "first_byte"] {
        assert!(d["latencies_ms"][step].as_f64().is_some(), "{step}: {d}");
    }
    assert!(d["features"]["embedding"].as_str().unwrap().len() > 100);

    // The dry run says the same, in the documented shape.
    let a = ask(&p, "/v1/route", &json!({"prompt": hard(301)}), &[]).await;
    let v: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["selected_model"], "strong", "{v}");
    assert_eq!(v["fallbacks"], json!(["cheap"]));
    for k in ["domain", "action", "source", "confidence"] {
        assert!(!v["route"][k].is_null(), "route.{k}: {v}");
    }
    for k in ["model", "p_success", "cost_per_mtok", "score"] {
        assert!(!v["candidates"][0][k].is_null(), "candidates[0].{k}: {v}");
    }
    assert!(v["decision_id"].as_str().unwrap().len() == 36);
    let reasoning = v["reasoning"].as_str().unwrap();
    assert!(
        reasoning.starts_with("Arch: general/")
            && reasoning.contains("Candidates: [strong, cheap]"),
        "{reasoning}"
    );
}

#[tokio::test]
async fn route_command_prints_the_decision() {
    let cheap = Mock::start().await;
    let strong = Mock::start_anthropic().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    let yaml = config(
        &cheap,
        &strong,
        &format!("database: sqlite://{}/r.db\n", dir.path().display()),
    );
    std::fs::write(&cfg, yaml).unwrap();
    let (ok, out) = run_cli(&[
        "route",
        "--config",
        cfg.to_str().unwrap(),
        "--json",
        &easy(7),
    ]);
    assert!(ok, "{out}");
    let line = out.lines().find(|l| l.starts_with('{')).unwrap();
    let v: Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["selected_model"], "cheap", "{v}");
    let (ok, out) = run_cli(&["route", "--config", cfg.to_str().unwrap(), &hard(7)]);
    assert!(ok, "{out}");
    assert!(out.contains("→ MIRT: strong"), "{out}");
    assert!(out.contains("selected    strong"), "{out}");
    // Nothing was sent upstream.
    assert_eq!(cheap.count() + strong.count(), 0);
}

/// A URL at a port nothing listens on, kept so while the reservation lives.
fn closed_port_url() -> (String, ReservedPort) {
    let reserved = ReservedPort::new();
    (format!("http://127.0.0.1:{}/v1", reserved.port()), reserved)
}

#[tokio::test]
async fn falls_back_on_every_failure_before_the_first_byte() {
    let cheap = Mock::start().await;
    let strong = Mock::start_anthropic().await;
    // A breaker that does not trip here: each failure kind is seen once.
    let p = Proxy::start(&config(
        &cheap,
        &strong,
        "routing: { breaker: { failures: 100 } }\n",
    ))
    .await;
    // (Each request is a new conversation: session affinity would keep a conversation on the
    // model that answered it.)
    for (i, (behaviour, outcome)) in [
        ("error:503", "5xx"),
        ("error:500", "5xx"),
        ("slow:4000", "timeout"),
        ("error:429", "429"),
    ]
    .into_iter()
    .enumerate()
    {
        cheap.force(Some(behaviour));
        let before = strong.count();
        let sid = format!("openai-{i}");
        let a = ask(
            &p,
            "/v1/chat/completions",
            &chat(&easy(10 + i), false),
            &[("x-session-id", sid.as_str())],
        )
        .await;
        assert_eq!(a.status, 200, "{behaviour}: {}", a.body);
        assert_eq!(a.model.as_deref(), Some("strong"), "{behaviour}");
        assert_eq!(strong.count(), before + 1);
        // The OpenAI client got an OpenAI answer from the Anthropic upstream.
        let v: Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(v["object"], "chat.completion", "{v}");
        let d = decision(&p, a.decision.as_deref().unwrap()).await;
        assert_eq!(
            attempts(&d),
            vec![
                ("cheap".into(), outcome.into()),
                ("strong".into(), "ok".into())
            ],
            "{behaviour}"
        );
        // And an Anthropic client, crossing formats the other way round.
        let sid = format!("anthropic-{i}");
        let a = ask(
            &p,
            "/v1/messages",
            &messages(&easy(20 + i)),
            &[("x-session-id", sid.as_str())],
        )
        .await;
        assert_eq!(
            (a.status, a.model.as_deref()),
            (200, Some("strong")),
            "{}",
            a.body
        );
        let v: Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(v["type"], "message", "{v}");
    }
    cheap.force(None);

    // The other way round: the Anthropic upstream (first for a hard prompt) is overloaded, and
    // an Anthropic client gets its answer from the OpenAI-compatible one, in its own format.
    strong.force(Some("error:529"));
    let a = ask(
        &p,
        "/v1/messages",
        &messages(&hard(3)),
        &[("x-session-id", "anthropic-hard")],
    )
    .await;
    assert_eq!(
        (a.status, a.model.as_deref()),
        (200, Some("cheap")),
        "{}",
        a.body
    );
    let v: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["type"], "message", "{v}");
    let d = decision(&p, a.decision.as_deref().unwrap()).await;
    assert_eq!(
        attempts(&d),
        vec![
            ("strong".into(), "5xx".into()),
            ("cheap".into(), "ok".into())
        ]
    );
    strong.force(None);

    // Connect failure: a provider at a closed port.
    let strong2 = Mock::start().await;
    let gone = closed_port_url();
    let yaml = format!(
        r#"listen: 127.0.0.1:0
admin: {{ listen: 127.0.0.1:0 }}
mirt: {{ checkpoint: {ckpt}, encoder: {{ kind: static, models_dir: {models} }} }}
providers:
  - {{ name: gone, kind: openai, base_url: "{gone}", models: [ {{ id: cheap, upstream_id: echo, cost_per_mtok: {{ input: 0.1, output: 0.4 }} }} ] }}
  - {{ name: up, kind: openai, base_url: "{up}", models: [ {{ id: strong, upstream_id: echo, cost_per_mtok: {{ input: 5, output: 15 }} }} ] }}
policies:
  - {{ domain: a, action: b, description: anything, models: [cheap, strong] }}
  - {{ domain: c, action: d, description: something else, models: [cheap, strong] }}
"#,
        ckpt = checkpoint().display(),
        models = repo_root().join("models").display(),
        gone = gone.0,
        up = strong2.base_url(),
    );
    let p2 = Proxy::start(&yaml).await;
    let a = ask(&p2, "/v1/chat/completions", &chat(&easy(3), true), &[]).await;
    assert_eq!(
        (a.status, a.model.as_deref()),
        (200, Some("strong")),
        "{}",
        a.body
    );
    assert!(a.body.contains("data: [DONE]"));
    let d = decision(&p2, a.decision.as_deref().unwrap()).await;
    assert_eq!(
        attempts(&d),
        vec![
            ("cheap".into(), "connect".into()),
            ("strong".into(), "ok".into())
        ]
    );
}

#[tokio::test]
async fn no_retry_after_the_first_byte() {
    let cheap = Mock::start().await;
    let strong = Mock::start_anthropic().await;
    let p = Proxy::start(&config(&cheap, &strong, "")).await;
    // Two chunks, then silence: the idle timeout ends the stream with an error event.
    cheap.force(Some("stall:2"));
    let a = ask(&p, "/v1/chat/completions", &chat(&easy(1), true), &[]).await;
    assert_eq!((a.status, a.model.as_deref()), (200, Some("cheap")));
    assert_eq!(
        a.body.matches("chat.completion.chunk").count(),
        2,
        "{}",
        a.body
    );
    assert!(a.body.contains("\"error\""), "{}", a.body);
    assert!(!a.body.contains("[DONE]"));
    assert_eq!(strong.count(), 0, "nothing is retried after the first byte");
}

#[tokio::test]
async fn price_cap_header_and_no_candidate() {
    let cheap = Mock::start().await;
    let strong = Mock::start_anthropic().await;
    let p = Proxy::start(&config(&cheap, &strong, "")).await;
    // strong would win this prompt; a cap of $1/Mtok leaves only cheap.
    let a = ask(
        &p,
        "/v1/chat/completions",
        &chat(&hard(5), false),
        &[("x-dualrouter-max-cost", "1.0")],
    )
    .await;
    assert_eq!(
        (a.status, a.model.as_deref()),
        (200, Some("cheap")),
        "{}",
        a.body
    );
    let d = decision(&p, a.decision.as_deref().unwrap()).await;
    assert_eq!(
        d["details"]["excluded"],
        json!([{"model": "strong", "reason": "over_max_cost"}])
    );
    // Nothing under the cap, even on the default route: 503 in the client's format.
    let a = ask(
        &p,
        "/v1/chat/completions",
        &chat(&hard(5), false),
        &[("x-dualrouter-max-cost", "0.001")],
    )
    .await;
    assert_eq!(a.status, 503, "{}", a.body);
    let v: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["error"]["code"], "no_model_available", "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("over max cost"));
    let a = ask(
        &p,
        "/v1/messages",
        &messages("hi"),
        &[("x-dualrouter-max-cost", "0")],
    )
    .await;
    assert_eq!(a.status, 503);
    let v: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["type"], "error", "{v}");
    // A malformed cap is the client's error.
    let a = ask(
        &p,
        "/v1/chat/completions",
        &chat("hi", false),
        &[("x-dualrouter-max-cost", "cheap please")],
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.body);
    // Nothing to route on (no user text) is the client's error too.
    let only_system =
        json!({"model": "auto", "messages": [{"role": "system", "content": "be brief"}]});
    let a = ask(&p, "/v1/chat/completions", &only_system, &[]).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.body.contains("nothing to route on"), "{}", a.body);
    assert_eq!(cheap.count() + strong.count(), 1);
}

#[tokio::test]
async fn a_failing_model_cools_down_and_comes_back() {
    let cheap = Mock::start().await;
    let strong = Mock::start_anthropic().await;
    let p = Proxy::start(&config(
        &cheap,
        &strong,
        "routing: { breaker: { failures: 2, cooldown_ms: 1500 } }\n",
    ))
    .await;
    cheap.force(Some("error:503"));
    for i in 0..2 {
        let a = ask(&p, "/v1/chat/completions", &chat(&easy(i), false), &[]).await;
        assert_eq!(a.model.as_deref(), Some("strong"));
    }
    assert_eq!(cheap.count(), 2);
    // Open: cheap is out of the candidates, not even tried.
    let a = ask(&p, "/v1/chat/completions", &chat(&easy(2), false), &[]).await;
    assert_eq!(a.model.as_deref(), Some("strong"));
    assert_eq!(cheap.count(), 2);
    let d = decision(&p, a.decision.as_deref().unwrap()).await;
    assert_eq!(
        d["details"]["excluded"],
        json!([{"model": "cheap", "reason": "cooling_down"}])
    );
    let ex: Value = reqwest::get(format!("{}/api/executors", p.admin))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let cheap_row = ex
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "cheap")
        .unwrap()
        .clone();
    assert_eq!(cheap_row["health"], "cooling_down", "{ex}");

    // Healthy again; after the cool-down one probe brings it back.
    cheap.force(None);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let a = ask(&p, "/v1/chat/completions", &chat(&easy(3), false), &[]).await;
    assert_eq!(a.model.as_deref(), Some("cheap"), "{}", a.body);
    let a = ask(&p, "/v1/chat/completions", &chat(&easy(4), false), &[]).await;
    assert_eq!(a.model.as_deref(), Some("cheap"));
}

#[tokio::test]
async fn retry_after_cools_a_model_down_for_that_long() {
    let cheap = Mock::start().await;
    let strong = Mock::start_anthropic().await;
    let p = Proxy::start(&config(&cheap, &strong, "")).await;
    cheap.force(Some("error:429:60"));
    let a = ask(&p, "/v1/chat/completions", &chat(&easy(0), false), &[]).await;
    assert_eq!(a.model.as_deref(), Some("strong"));
    cheap.force(None);
    // One 429 with Retry-After: 60 keeps it out (the default breaker needs 3 failures).
    for i in 1..4 {
        let a = ask(&p, "/v1/chat/completions", &chat(&easy(i), false), &[]).await;
        assert_eq!(a.model.as_deref(), Some("strong"));
    }
    assert_eq!(cheap.count(), 1);
    // With only cheap allowed and cheap cooling down: 503 with Retry-After.
    let a = ask(
        &p,
        "/v1/chat/completions",
        &chat(&easy(1), false),
        &[("x-dualrouter-max-cost", "1")],
    )
    .await;
    assert_eq!(a.status, 503, "{}", a.body);
    let ra: u64 = a.retry_after.unwrap().parse().unwrap();
    assert!((55..=60).contains(&ra), "{ra}");
}

#[tokio::test]
async fn a_multi_mib_prompt_is_routed_and_falls_back() {
    let cheap = Mock::start().await;
    let strong = Mock::start().await;
    let yaml = config(&cheap, &strong, "").replace("kind: anthropic", "kind: openai");
    let p = Proxy::start(&yaml).await;
    let big = format!("say hello to Ada. {}", "lorem ipsum ".repeat(300_000));
    let body = chat(&big, false);
    let sent = serde_json::to_vec(&body).unwrap().len();
    assert!(sent > 3 << 20);
    // Whichever model routing puts first fails.
    let plan = ask(&p, "/v1/route", &json!({"prompt": big}), &[]).await;
    let plan: Value = serde_json::from_str(&plan.body).unwrap();
    let (first, second) = match plan["selected_model"].as_str().unwrap() {
        "cheap" => (&cheap, "strong"),
        _ => (&strong, "cheap"),
    };
    first.force(Some("error:502"));
    let a = ask(&p, "/v1/chat/completions", &body, &[]).await;
    assert_eq!(
        (a.status, a.model.as_deref()),
        (200, Some(second)),
        "{}",
        a.body
    );
    // Both upstreams got the whole prompt.
    for m in [&cheap, &strong] {
        let seen: Value = serde_json::from_slice(&m.last().body).unwrap();
        assert_eq!(
            seen["messages"][0]["content"].as_str().unwrap().len(),
            big.len()
        );
    }
}

#[tokio::test]
async fn a_conversation_stays_on_its_model_while_it_is_healthy() {
    let cheap = Mock::start().await;
    let strong = Mock::start_anthropic().await;
    let p = Proxy::start(&config(
        &cheap,
        &strong,
        "routing: { breaker: { failures: 1, cooldown_ms: 60000 } }\n",
    ))
    .await;
    let session = [("x-session-id", "conv-1")];
    let a = ask(&p, "/v1/chat/completions", &chat(&easy(1), false), &session).await;
    assert_eq!(a.model.as_deref(), Some("cheap"));
    // A hard follow-up in the same conversation stays on cheap (its prompt cache is warm)…
    let a = ask(&p, "/v1/chat/completions", &chat(&hard(1), false), &session).await;
    assert_eq!(a.model.as_deref(), Some("cheap"));
    let d = decision(&p, a.decision.as_deref().unwrap()).await;
    assert_eq!(d["details"]["affinity"], true);
    assert!(d["details"]["reasoning"]
        .as_str()
        .unwrap()
        .contains("→ affinity: cheap"));
    // …while the same prompt in another conversation goes where MIRT says.
    let a = ask(
        &p,
        "/v1/chat/completions",
        &chat(&hard(1), false),
        &[("x-session-id", "conv-2")],
    )
    .await;
    assert_eq!(a.model.as_deref(), Some("strong"));
    // Without a session header, a conversation is its first user message: the next turn of
    // the easy conversation stays on cheap.
    let turns = json!({"model": "auto", "messages": [
        {"role": "user", "content": easy(5)},
        {"role": "assistant", "content": "sure"},
        {"role": "user", "content": hard(9)},
    ]});
    let first = ask(&p, "/v1/chat/completions", &chat(&easy(5), false), &[]).await;
    assert_eq!(first.model.as_deref(), Some("cheap"));
    let a = ask(&p, "/v1/chat/completions", &turns, &[]).await;
    assert_eq!(a.model.as_deref(), Some("cheap"));
    // When its model fails, the conversation moves on.
    cheap.force(Some("error:503"));
    let a = ask(&p, "/v1/chat/completions", &chat(&easy(2), false), &session).await;
    assert_eq!(a.model.as_deref(), Some("strong"));
    cheap.force(None);
    let a = ask(&p, "/v1/chat/completions", &chat(&easy(3), false), &session).await;
    assert_eq!(a.model.as_deref(), Some("strong"), "cheap is cooling down");
}
