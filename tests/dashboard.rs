//! The operator's dashboard (`GET /` on the admin listener) in a real headless Chromium
//! (Debian's `chromium`) driven by `playwright-core` (`tests/dashboard/`, installed by
//! `scripts/setup.sh`): sign in, create a policy, see a routed request's decision appear, see a
//! failing upstream turn red, make, edit, use and revoke a virtual key. Each scenario saves a
//! screenshot under `target/dashboard-screenshots/`. Also, without a browser: the page's
//! headers, and the aggregates (`GET /api/stats`, on SQLite and PostgreSQL) and training-data
//! uploads the page uses.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use common::synthetic::{self, ask, chat, easy, hard};
use common::{repo_root, Proxy, TestDb};
use dualrouter_store::{Attempt, CandidateScore, DecisionRecord, Store};
use dualrouter_testkit::Mock;
use serde_json::{json, Value};

/// One browser at a time: the machine is small and shared.
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const CHROMIUM: &str = "/usr/bin/chromium";

fn screenshot_dir() -> PathBuf {
    let dir = repo_root().join("target").join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The synthetic two-model world, optionally with an admin token (env `DASH_ADMIN_TOKEN`).
/// Checkpoints and uploads go to the proxy's own temp dir.
async fn world(token: Option<&str>, extra: &str) -> World {
    let cheap = Mock::start().await;
    let strong = Mock::start_anthropic().await;
    let dir = tempfile::tempdir().unwrap();
    let mut yaml = synthetic::config(&cheap, &strong, extra).replacen(
        "mirt:\n",
        &format!("mirt:\n  checkpoints_dir: {}\n", dir.path().display()),
        1,
    );
    assert!(
        yaml.contains("checkpoints_dir"),
        "the synthetic config changed shape"
    );
    let mut env = Vec::new();
    if let Some(t) = token {
        yaml = yaml.replace(
            "admin: { listen: 127.0.0.1:0 }",
            "admin: { listen: 127.0.0.1:0, token_env: DASH_ADMIN_TOKEN }",
        );
        assert!(
            yaml.contains("token_env"),
            "the synthetic config changed shape"
        );
        env.push(("DASH_ADMIN_TOKEN", t));
    }
    let p = Proxy::start_with_env(&yaml, &env).await;
    World {
        cheap,
        _strong: strong,
        p,
        _dir: dir,
    }
}

struct World {
    cheap: Mock,
    _strong: Mock,
    p: Proxy,
    _dir: tempfile::TempDir,
}

/// Runs `tests/dashboard/scenario.mjs NAME` against the proxy and checks its screenshot.
async fn scenario(name: &str, p: &Proxy, token: Option<&str>) {
    let script = repo_root().join("tests/dashboard/scenario.mjs");
    let module = repo_root().join("tests/dashboard/node_modules/playwright-core/package.json");
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install Debian's `chromium` package (scripts/setup.sh does)"
    );
    assert!(
        module.exists(),
        "playwright-core is not installed in tests/dashboard: run scripts/setup.sh (npm ci)"
    );
    let shot = screenshot_dir().join(format!("{name}.png"));
    let _ = std::fs::remove_file(&shot);
    let mut cmd = std::process::Command::new("node");
    cmd.arg(&script)
        .arg(name)
        .env("DASH_ADMIN", &p.admin)
        .env("DASH_PROXY", &p.proxy)
        .env("DASH_SCREENSHOT", &shot)
        .env("DASH_CHROMIUM", CHROMIUM)
        .env("DASH_PROMPT", easy(1))
        .env_remove("DASH_TOKEN");
    if let Some(t) = token {
        cmd.env("DASH_TOKEN", t);
    }
    let _one = BROWSER.lock().await;
    // Off the runtime's thread: the mock upstreams live on it and must keep answering.
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("run node (is Node.js installed?)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(
        out.status.success(),
        "dashboard scenario {name} failed:\n{text}\n--- proxy log ---\n{}",
        p.log()
    );
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot {shot:?}: {e}"));
    assert!(
        png.len() > 1000 && png.starts_with(b"\x89PNG"),
        "{shot:?} is not a PNG"
    );
    if let Some(t) = token {
        assert!(!p.log().contains(t), "the admin token reached the log");
    }
}

#[tokio::test]
async fn signs_in_with_the_admin_token() {
    let token = "dash-token-7f3a9c";
    let w = world(Some(token), "").await;
    scenario("signin", &w.p, Some(token)).await;
}

#[tokio::test]
async fn creates_a_policy_and_lists_it() {
    let token = "dash-token-policy-51e0";
    let w = world(Some(token), "").await;
    scenario("policy", &w.p, Some(token)).await;
}

#[tokio::test]
async fn a_routed_request_appears_in_the_live_decisions() {
    // No admin token configured: the page works on the open (loopback-only) API.
    let w = world(None, "").await;
    scenario("decision", &w.p, None).await;
}

#[tokio::test]
async fn a_failing_upstream_turns_its_model_red() {
    let token = "dash-token-breaker-22d1";
    let w = world(
        Some(token),
        "routing: { breaker: { failures: 1, cooldown_ms: 60000 } }\n",
    )
    .await;
    w.cheap.force(Some("error:503"));
    scenario("breaker", &w.p, Some(token)).await;
    assert!(w.cheap.count() >= 1, "the cheap upstream was never tried");
}

#[tokio::test]
async fn charts_uploads_training_and_activation_from_the_page() {
    let token = "dash-token-mirt-64c7";
    let w = world(Some(token), "").await;
    scenario("mirt", &w.p, Some(token)).await;
}

#[tokio::test]
async fn keys_are_made_edited_charged_and_revoked_from_the_page() {
    let token = "dash-token-keys-3c8e";
    let w = world(Some(token), "auth: { virtual_keys: true }\n").await;
    scenario("keys", &w.p, Some(token)).await;
    // Only the request with the live key reached the upstream (not the refused ones).
    assert_eq!(w.cheap.count(), 1);
}

#[tokio::test]
async fn the_page_is_ours_and_needs_no_token_but_its_data_does() {
    let token = "dash-token-page-9b2";
    let w = world(Some(token), "").await;
    let p = &w.p;
    let http = reqwest::Client::new();
    let r = http.get(format!("{}/", p.admin)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("connect-src 'self'"));
    let html = r.text().await.unwrap();
    assert!(html.contains("/dashboard/app.js") && !html.contains(token));
    // Nothing from elsewhere: no absolute URL in the page, its script or its style.
    for path in ["/", "/dashboard/app.js", "/dashboard/app.css"] {
        let body = http
            .get(format!("{}{path}", p.admin))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for needle in ["http://", "https://", "//cdn", "@import", "fonts."] {
            let hits: Vec<&str> = body
                .lines()
                .filter(|l| l.contains(needle) && !l.contains("www.w3.org/2000/svg"))
                .collect();
            assert!(hits.is_empty(), "{path} refers outside: {hits:?}");
        }
    }
    let icon = http
        .get(format!("{}/dashboard/icon.svg", p.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(icon.headers()["content-type"], "image/svg+xml");
    for path in ["/api/stats", "/api/training-data"] {
        let r = http.get(format!("{}{path}", p.admin)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path} without the token");
        let r = http
            .get(format!("{}{path}", p.admin))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path} with the token");
    }
}

async fn admin(
    p: &Proxy,
    method: reqwest::Method,
    path: &str,
    body: Option<(&str, String)>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, format!("{}{path}", p.admin));
    if let Some((ct, b)) = body {
        req = req.header("content-type", ct).body(b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn stats_uploads_and_a_refit_on_an_upload() {
    let w = world(None, "").await;
    let p = &w.p;
    // Three easy prompts (cheap) and two hard ones (strong); feedback on one.
    let mut ids = Vec::new();
    for prompt in [easy(1), easy(2), easy(3), hard(1), hard(2)] {
        let a = ask(p, "/v1/chat/completions", &chat(&prompt, false), &[]).await;
        assert_eq!(a.status, 200, "{}", a.body);
        ids.push(a.decision.unwrap());
    }
    for id in &ids {
        synthetic::decision(p, id).await;
    }
    let fb = reqwest::Client::new()
        .post(p.url("/v1/feedback"))
        .json(&json!({"decision_id": ids[0], "score": 0.75}))
        .send()
        .await
        .unwrap();
    assert!(fb.status().is_success());

    let (status, st) = admin(p, reqwest::Method::GET, "/api/stats?window=1h", None).await;
    assert_eq!(status, 200, "{st}");
    assert_eq!(st["buckets"].as_array().unwrap().len(), 24);
    let models = st["models"].as_array().unwrap();
    let by = |m: &str| models.iter().find(|x| x["model"] == m).unwrap().clone();
    let (cheap, strong) = (by("cheap"), by("strong"));
    assert_eq!(cheap["requests"], 3, "{st}");
    assert_eq!(strong["requests"], 2, "{st}");
    let series: i64 = cheap["series_requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .sum();
    assert_eq!(series, 3, "every request falls in a bucket");
    assert_eq!(cheap["feedback_n"], 1);
    assert_eq!(cheap["feedback_mean"], 0.75);
    // Routing to cheap saved money against strong (the dearest); strong saved nothing.
    assert!(cheap["savings_usd"].as_f64().unwrap() > 0.0, "{cheap}");
    assert!(
        strong["savings_usd"].as_f64().unwrap().abs() < 1e-12,
        "{strong}"
    );
    let (status, bad) = admin(p, reqwest::Method::GET, "/api/stats?window=1y", None).await;
    assert_eq!(
        (status, bad["error"]["field"].as_str()),
        (422, Some("window"))
    );

    // Uploads: a bad row is named; a good file is kept and listed.
    let bad_csv = "prompt,cheap,strong\n\"hi\",1,0\n\"yo\",2,1\n".to_string();
    let (status, e) = admin(
        p,
        reqwest::Method::POST,
        "/api/training-data?name=bad",
        Some(("text/csv", bad_csv)),
    )
    .await;
    assert_eq!(status, 422, "{e}");
    assert_eq!(e["error"]["field"], "body");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(msg.contains("row 2:") && msg.contains("`cheap`"), "{msg}");
    assert!(!msg.contains('/'), "the server's path leaks: {msg}");
    let mut jsonl = String::new();
    let mut prompts = std::collections::HashSet::new();
    for i in 0..40 {
        prompts.insert(easy(i));
        prompts.insert(hard(i));
        for (m, s) in [("cheap", 1), ("strong", 1)] {
            jsonl.push_str(&format!(
                "{}\n",
                json!({"prompt": easy(i), "model": m, "score": s})
            ));
        }
        for (m, s) in [("cheap", 0), ("strong", 1)] {
            jsonl.push_str(&format!(
                "{}\n",
                json!({"prompt": hard(i), "model": m, "score": s})
            ));
        }
    }
    let (status, u) = admin(
        p,
        reqwest::Method::POST,
        "/api/training-data?name=june",
        Some(("application/x-ndjson", jsonl.clone())),
    )
    .await;
    assert_eq!(status, 201, "{u}");
    // A row is a prompt with its scores, one per model.
    let rows = prompts.len() as u64;
    assert_eq!(
        (u["rows"].as_u64(), u["format"].as_str()),
        (Some(rows), Some("jsonl"))
    );
    assert_eq!(u["models"], json!(["cheap", "strong"]));
    let (status, _) = admin(
        p,
        reqwest::Method::POST,
        "/api/training-data?name=june",
        Some(("application/x-ndjson", jsonl)),
    )
    .await;
    assert_eq!(status, 409, "a name is not overwritten");
    let (status, e) = admin(
        p,
        reqwest::Method::POST,
        "/api/training-data?name=../x",
        Some(("text/csv", "prompt,a\nx,1\n".into())),
    )
    .await;
    assert_eq!((status, e["error"]["field"].as_str()), (422, Some("name")));
    let (_, list) = admin(p, reqwest::Method::GET, "/api/training-data", None).await;
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["june"]);

    // A refit on an unknown upload is refused; on `june` it trains with its rows.
    let (status, e) = admin(
        p,
        reqwest::Method::POST,
        "/api/mirt/train",
        Some(("application/json", json!({"data": "nope"}).to_string())),
    )
    .await;
    assert_eq!((status, e["error"]["field"].as_str()), (422, Some("data")));
    let (status, job) = admin(
        p,
        reqwest::Method::POST,
        "/api/mirt/train",
        Some(("application/json", json!({"data": "june"}).to_string())),
    )
    .await;
    assert_eq!(status, 202, "{job}");
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    let job = loop {
        let (_, j) = admin(p, reqwest::Method::GET, "/api/mirt/train", None).await;
        if j["state"] != "running" {
            break j;
        }
        assert!(std::time::Instant::now() < deadline, "training never ended");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(job["state"], "done", "{job}");
    let version = job["version"].as_i64().unwrap();
    let (_, cps) = admin(p, reqwest::Method::GET, "/api/mirt/checkpoints", None).await;
    let cp = cps
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["version"] == version)
        .unwrap();
    // The upload's rows (all `train`: no split column) were the base data.
    assert_eq!(cp["metrics"]["base_rows"].as_u64(), Some(rows), "{cp}");
}

// ---- the aggregates on both stores --------------------------------------------------------

fn record(
    model: &str,
    ago_s: i64,
    cost: f64,
    cands: &[(&str, f64)],
    status: &str,
) -> DecisionRecord {
    let mut r = DecisionRecord::new(status);
    r.created_at = Utc::now() - chrono::Duration::seconds(ago_s);
    r.prompt_hash = "h".into();
    r.domain = Some("general".into());
    r.action = Some("question".into());
    r.selected_model = Some(model.into());
    r.cost_usd = Some(cost);
    r.candidates = cands
        .iter()
        .map(|(m, c)| CandidateScore {
            model: (*m).into(),
            p_success: 0.5,
            cost: *c,
            cost_per_mtok: 1.0,
            score: 0.1,
        })
        .collect();
    r.details.attempts.push(Attempt {
        model: model.into(),
        provider: "p".into(),
        outcome: "ok".into(),
        status: Some(200),
        ms: 1.0,
    });
    r
}

async fn stats_add_up(store: Store) {
    let both = [("a", 0.001), ("b", 0.01)];
    let recs = vec![
        record("a", 30, 0.002, &both, "ok"),
        record("a", 90, 0.003, &both, "ok"),
        record("b", 100, 0.02, &both, "error"),
        // Not routed: no candidates, no saving, still counted.
        record("b", 400, 0.05, &[], "ok"),
        // Outside a 1h window.
        record("a", 7200, 1.0, &both, "ok"),
    ];
    store.insert_decisions(&recs).await.unwrap();
    store
        .record_feedback(&recs[0].decision_id, 1.0, None)
        .await
        .unwrap();
    store
        .record_feedback(&recs[1].decision_id, 0.5, None)
        .await
        .unwrap();
    let until = Utc::now() + chrono::Duration::seconds(1);
    let st = store
        .stats(until - chrono::Duration::hours(1), until, 12)
        .await
        .unwrap();
    assert_eq!(st.buckets.len(), 12);
    assert_eq!(st.bucket_seconds, 300);
    let a = st.models.iter().find(|m| m.model == "a").unwrap();
    let b = st.models.iter().find(|m| m.model == "b").unwrap();
    assert_eq!(st.models[0].model, "a", "most requests first");
    assert_eq!((a.requests, a.errors, a.routed), (2, 0, 2));
    assert_eq!((b.requests, b.errors, b.routed), (2, 1, 1));
    assert!((a.cost_usd - 0.005).abs() < 1e-12);
    assert!((b.cost_usd - 0.07).abs() < 1e-12);
    assert!((a.est_cost_usd - 0.002).abs() < 1e-12);
    assert!((a.dearest_est_usd - 0.02).abs() < 1e-12);
    assert!((a.savings_usd - 0.018).abs() < 1e-12);
    assert!(b.savings_usd.abs() < 1e-12);
    assert_eq!(a.feedback_n, 2);
    assert!((a.feedback_mean.unwrap() - 0.75).abs() < 1e-12);
    assert_eq!((b.feedback_n, b.feedback_mean), (0, None));
    assert_eq!(a.series_requests.iter().sum::<i64>(), 2);
    assert_eq!(a.series_requests[11], 2, "both in the last five minutes");
    assert_eq!(b.series_requests[11], 1);
    assert_eq!(b.series_requests[10], 1);
    assert!((b.series_cost_usd[10] - 0.05).abs() < 1e-12);
    // An empty window.
    let old = store
        .stats(
            until - chrono::Duration::days(30),
            until - chrono::Duration::days(29),
            24,
        )
        .await
        .unwrap();
    assert!(old.models.is_empty());
}

#[tokio::test]
async fn stats_on_sqlite() {
    let db = TestDb::sqlite();
    stats_add_up(db.open().await).await;
}

#[tokio::test]
async fn stats_on_postgres() {
    let Some(db) = TestDb::postgres() else { return };
    stats_add_up(db.open().await).await;
}
