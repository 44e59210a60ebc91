//! Observability through the real binary: readiness (`/readyz`) following the store, the
//! access log in JSON and its level changed by a reload, the metrics operators chart and the
//! Grafana dashboard over them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{chat_body, PgCluster, Proxy};
use dualrouter_testkit::Mock;

fn config(base_url: &str, database: &str, extra: &str) -> String {
    format!(
        r#"listen: 127.0.0.1:0
admin: {{ listen: 127.0.0.1:0 }}
database: "{database}"
providers:
  - name: mock
    kind: openai
    base_url: {base_url}
    models:
      - {{ id: m, upstream_id: echo, cost_per_mtok: {{ input: 1, output: 2 }} }}
      - {{ id: m-cached, upstream_id: cached, cost_per_mtok: {{ input: 1, output: 2, cache_read: 0.5 }} }}
      - {{ id: m-stream, upstream_id: "stream:3:5", cost_per_mtok: {{ input: 1, output: 2 }} }}
      - {{ id: m-down, upstream_id: "error:503", cost_per_mtok: {{ input: 0.1, output: 0.1 }} }}
{extra}"#
    )
}

/// `GET url` → (status, JSON body).
async fn get_json(url: &str) -> (u16, serde_json::Value) {
    let r = reqwest::get(url).await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

/// Polls `url` until it answers `want`, for at most `within`; returns the last body.
async fn wait_status(url: &str, want: u16, within: Duration) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let (status, body) = get_json(url).await;
        if status == want {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{url} did not answer {want} within {within:?}; last {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_store_and_healthz_stays_alive() {
    let Some(pg) = PgCluster::start() else { return };
    let mock = Mock::start().await;
    let p = Proxy::start(&config(&mock.base_url(), &pg.url(), "")).await;
    let ready = p.url("/readyz");
    let admin_ready = format!("{}/readyz", p.admin);

    let (status, body) = get_json(&ready).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ready"], true);
    let checks = &body["checks"];
    assert_eq!(checks["store"]["ok"], true, "{body}");
    assert_eq!(checks["store"]["backend"], "postgres", "{body}");
    assert_eq!(checks["encoder"]["ok"], true, "{body}");
    assert!(
        checks["encoder"]["id"].as_str().unwrap().contains("minilm"),
        "{body}"
    );
    assert_eq!(checks["checkpoint"]["ok"], true, "{body}");
    assert_eq!(checks["models"]["ok"], true, "{body}");
    assert_eq!(checks["models"]["total"], 4, "{body}");
    assert_eq!(get_json(&admin_ready).await.0, 200);

    pg.stop_server();
    let body = wait_status(&ready, 503, Duration::from_secs(20)).await;
    assert_eq!(body["ready"], false, "{body}");
    assert_eq!(body["checks"]["store"]["ok"], false, "{body}");
    assert!(
        !body["checks"]["store"]["error"]
            .as_str()
            .unwrap()
            .is_empty(),
        "{body}"
    );
    // Only the store is at fault.
    for check in ["encoder", "checkpoint", "models"] {
        assert_eq!(body["checks"][check]["ok"], true, "{check}: {body}");
    }
    assert_eq!(get_json(&admin_ready).await.0, 503);
    // Liveness is not readiness: the process still answers.
    let (status, _) = get_json(&p.url("/healthz")).await;
    assert_eq!(status, 200);
    // Clients are still served while the store is down (the decision log spools).
    let r = reqwest::Client::new()
        .post(p.url("/v1/chat/completions"))
        .json(&chat_body("m", "hello", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    pg.start_server();
    let body = wait_status(&ready, 200, Duration::from_secs(30)).await;
    assert_eq!(body["ready"], true, "{body}");
    assert_eq!(get_json(&admin_ready).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_says_no_model_is_healthy_when_every_provider_fails_its_checks() {
    // A provider on a port nothing listens on: its health checks fail, its models go out.
    let reserved = common::free_port();
    let port = reserved.port();
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/d.db", dir.path().display());
    let yaml = config(
        &format!("http://127.0.0.1:{port}/v1"),
        &db,
        "routing: { health_checks: { interval_ms: 100, timeout_ms: 500, failures: 1 } }\n",
    );
    let p = Proxy::start(&yaml).await;
    let body = wait_status(&p.url("/readyz"), 503, Duration::from_secs(20)).await;
    assert_eq!(body["checks"]["models"]["ok"], false, "{body}");
    assert_eq!(body["checks"]["models"]["healthy"], 0, "{body}");
    assert_eq!(body["checks"]["store"]["ok"], true, "{body}");
    assert_eq!(body["checks"]["store"]["backend"], "sqlite", "{body}");
}

/// The log's lines, each parsed as JSON (every line must be one).
fn json_lines(p: &Proxy) -> Vec<serde_json::Value> {
    p.log()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
        })
        .collect()
}

/// The access line of `decision_id`, once it is in the log (bounded wait).
async fn access_line(p: &Proxy, decision_id: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(line) = json_lines(p)
            .into_iter()
            .find(|l| l["target"] == "dualrouter::access" && l["decision_id"] == decision_id)
        {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "no access line for {decision_id}:\n{}",
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn post_chat(p: &Proxy, key: &str, model: &str, stream: bool) -> String {
    let r = reqwest::Client::new()
        .post(p.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&chat_body(model, "hello there", stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-dualrouter-decision-id"]
        .to_str()
        .unwrap()
        .to_string();
    r.bytes().await.unwrap();
    id
}

const CLIENT_KEY: &str = "sk-client-canary-7f3a9c";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_access_lines_carry_the_request_and_a_reload_changes_the_level() {
    let mock = Mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/d.db", dir.path().display());
    let with_level = |level: &str| {
        config(
            &mock.base_url(),
            &db,
            &format!(
                "auth: {{ keys_env: TEST_CLIENT_KEYS }}\nlog: {{ format: json, level: \"{level}\" }}\n"
            ),
        )
    };
    let p = Proxy::start_with_env(&with_level("info"), &[("TEST_CLIENT_KEYS", CLIENT_KEY)]).await;

    let id = post_chat(&p, CLIENT_KEY, "m-cached", false).await;
    let line = access_line(&p, &id).await;
    assert_eq!(line["level"], "INFO", "{line}");
    assert!(line["timestamp"].is_string(), "{line}");
    assert_eq!(line["message"], "request", "{line}");
    assert_eq!(line["method"], "POST", "{line}");
    assert_eq!(line["path"], "/v1/chat/completions", "{line}");
    assert_eq!(line["model"], "m-cached", "{line}");
    assert_eq!(line["provider"], "mock", "{line}");
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["outcome"], "ok", "{line}");
    assert_eq!(line["attempts"], 1, "{line}");
    assert!(line["input_tokens"].as_u64().unwrap() > 0, "{line}");
    assert!(line["output_tokens"].as_u64().unwrap() > 0, "{line}");
    assert!(line["cached_tokens"].as_u64().unwrap() > 0, "{line}");
    assert!(line["cost_usd"].as_f64().unwrap() > 0.0, "{line}");
    assert!(line["latency_ms"].as_f64().unwrap() > 0.0, "{line}");
    let steps: serde_json::Value =
        serde_json::from_str(line["steps_ms"].as_str().unwrap()).unwrap();
    assert!(steps["first_byte"].as_f64().is_some(), "{line}");
    let key_id = line["key_id"].as_str().unwrap();
    assert!(key_id.starts_with("key:") && key_id.len() == 20, "{line}");

    // A refused request has its line too (no model, no tokens).
    let r = reqwest::Client::new()
        .post(p.url("/v1/chat/completions"))
        .bearer_auth("sk-wrong-key-0000")
        .json(&chat_body("m", "hi", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let refused = r.headers()["x-dualrouter-decision-id"]
        .to_str()
        .unwrap()
        .to_string();
    let line = access_line(&p, &refused).await;
    assert_eq!(line["status"], 401, "{line}");
    assert_eq!(line["error_kind"], "unauthorized", "{line}");

    // The level follows the config on reload: at `warn` no access line is written …
    std::fs::write(p.dir.path().join("config.yaml"), with_level("warn")).unwrap();
    let admin = reqwest::Client::new();
    let r = admin
        .post(format!("{}/api/reload", p.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let quiet = post_chat(&p, CLIENT_KEY, "m", false).await;
    // … and back at `info` the next one is. Lines are written in order, so once the second
    // request's line is in, the first one's would be too.
    std::fs::write(p.dir.path().join("config.yaml"), with_level("info")).unwrap();
    let r = admin
        .post(format!("{}/api/reload", p.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let loud = post_chat(&p, CLIENT_KEY, "m", true).await;
    access_line(&p, &loud).await;
    assert!(
        !json_lines(&p)
            .iter()
            .any(|l| l["decision_id"] == quiet.as_str() && l["target"] == "dualrouter::access"),
        "an access line was written at level warn"
    );

    // A level that is not a filter is refused, naming the key; the old level stays.
    std::fs::write(
        p.dir.path().join("config.yaml"),
        with_level("info,dualrouter=nonsense"),
    )
    .unwrap();
    let r = admin
        .post(format!("{}/api/reload", p.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("log.level"));
    let after = post_chat(&p, CLIENT_KEY, "m", false).await;
    access_line(&p, &after).await;

    // No secret in any line.
    assert!(!p.log().contains(CLIENT_KEY));
    assert!(!p.log().contains("sk-wrong-key-0000"));
}

/// The value of the series `name{labels}` in a scrape (labels as the text format writes them).
fn series(metrics: &str, name_and_labels: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
}

/// The metric names a PromQL expression reads (every `dualrouter_…` identifier).
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("dualrouter_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_metrics_and_every_dashboard_query_names_an_exported_metric() {
    let mock = Mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/d.db", dir.path().display());
    let p = Proxy::start(&config(
        &mock.base_url(),
        &db,
        // `auto` goes to m-stream (asked without streaming), so the other models' counts are
        // their own requests'.
        "decision_log: { batch_ms: 20 }\nrouting: { default_models: [m-stream] }\n",
    ))
    .await;
    let client = reqwest::Client::new();
    let send = |model: &'static str, stream: bool| {
        let client = client.clone();
        let url = p.url("/v1/chat/completions");
        async move {
            let r = client
                .post(url)
                .json(&chat_body(model, "count the tokens", stream))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let id = r
                .headers()
                .get("x-dualrouter-decision-id")
                .map(|v| v.to_str().unwrap().to_string());
            r.bytes().await.unwrap();
            (status, id)
        }
    };
    assert_eq!(send("m", false).await.0, 200);
    assert_eq!(send("m-cached", false).await.0, 200);
    assert_eq!(send("m-stream", true).await.0, 200);
    assert_eq!(send("m-down", false).await.0, 503); // the provider's own 503, passed through
    assert_eq!(send("nope", false).await.0, 404); // an error the proxy produces
    let (status, routed) = send("auto", false).await;
    assert_eq!(status, 200);

    let deadline = Instant::now() + Duration::from_secs(10);
    let m = loop {
        let m = p.metrics().await;
        let written = series(&m, "dualrouter_decisions_written_total").unwrap_or(0.0);
        if written >= 5.0 {
            break m;
        }
        assert!(Instant::now() < deadline, "decisions not written:\n{m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // By default a routed decision keeps its prompt embedding (what refits learn from).
    let store = dualrouter_store::Store::open(&db).await.unwrap();
    let rec = store.get_decision(&routed.unwrap()).await.unwrap().unwrap();
    assert!(rec.features.is_some(), "{rec:?}");

    // Tokens and cost by model and provider.
    for kind in ["input", "output", "cached"] {
        let v = series(
            &m,
            &format!(
                r#"dualrouter_tokens_total{{kind="{kind}",model="m-cached",provider="mock"}}"#
            ),
        );
        assert!(
            v.is_some_and(|v| v > 0.0),
            "{kind} tokens of m-cached:\n{m}"
        );
    }
    assert!(
        series(
            &m,
            r#"dualrouter_tokens_total{kind="cached",model="m",provider="mock"}"#
        )
        .is_none(),
        "no cached tokens for an answer without any:\n{m}"
    );
    let cost = series(
        &m,
        r#"dualrouter_cost_usd_total{model="m",provider="mock"}"#,
    )
    .unwrap();
    // The echo mock's usage: 11 prompt and 7 completion tokens at 1 and 2 USD per million.
    assert!(
        (cost - (11.0 + 2.0 * 7.0) / 1e6).abs() < 1e-12,
        "{cost}\n{m}"
    );
    // Streams: time to first token and duration, by model.
    assert_eq!(
        series(
            &m,
            r#"dualrouter_time_to_first_token_seconds_count{model="m-stream"}"#
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        series(
            &m,
            r#"dualrouter_stream_duration_seconds_count{model="m-stream"}"#
        ),
        Some(1.0),
        "{m}"
    );
    assert!(
        series(
            &m,
            r#"dualrouter_time_to_first_token_seconds_count{model="m"}"#
        )
        .is_none(),
        "a whole answer has no time to first token:\n{m}"
    );
    // Upstream latency by model (and provider).
    assert_eq!(
        series(
            &m,
            r#"dualrouter_upstream_latency_seconds_count{model="m-cached",provider="mock"}"#
        ),
        Some(1.0),
        "{m}"
    );

    // The Grafana dashboard: every query reads only metrics this proxy exports.
    let path = common::repo_root().join("docs/grafana/dualrouter.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let exported: std::collections::HashSet<&str> = m
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 10, "the dashboard has its panels");
    let mut queries = 0;
    for panel in panels {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{expr}: reads no dualrouter metric");
            for name in names {
                assert!(
                    exported.contains(name.as_str()),
                    "panel '{}': {name} is not exported:\n{m}",
                    panel["title"]
                );
            }
            queries += 1;
        }
    }
    assert!(queries >= panels.len());
}

/// Inserts `n` decisions created `days_ago` days ago; returns their ids.
async fn aged_decisions(store: &dualrouter_store::Store, n: usize, days_ago: i64) -> Vec<String> {
    let at = chrono::Utc::now() - chrono::Duration::days(days_ago);
    let recs: Vec<_> = (0..n)
        .map(|i| {
            let mut r = dualrouter_store::DecisionRecord::new("ok");
            r.decision_id = dualrouter_store::DecisionRecord::new_id();
            r.created_at = at + chrono::Duration::milliseconds(i as i64);
            r.prompt_hash = dualrouter_store::prompt_hash(&format!("aged {days_ago} {i}"));
            r.selected_model = Some("m".into());
            r
        })
        .collect();
    store.insert_decisions(&recs).await.unwrap();
    recs.into_iter().map(|r| r.decision_id).collect()
}

async fn retention_prunes_old_rows_while_requests_flow(db: common::TestDb) {
    let mock = Mock::start().await;
    let store = db.open().await;
    let p = Proxy::start(&config(
        &mock.base_url(),
        &db.url(),
        "routing: { default_models: [m] }\n\
         decision_log: { batch_ms: 20 }\n\
         retention: { decisions_days: 30, feedback_days: 30, batch_rows: 7, interval_s: 1, store_embeddings: false }\n",
    ))
    .await;

    // Requests keep flowing the whole time.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let driver = {
        let url = p.url("/v1/chat/completions");
        let stop = stop.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut ids = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let model = if ids.len() % 2 == 0 { "m" } else { "auto" };
                let r = client
                    .post(&url)
                    .json(&chat_body(model, &format!("request {}", ids.len()), false))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                ids.push(
                    r.headers()["x-dualrouter-decision-id"]
                        .to_str()
                        .unwrap()
                        .to_string(),
                );
                r.bytes().await.unwrap();
            }
            ids
        })
    };

    // Rows that have aged past the retention (written now, dated 40 days back) and recent ones.
    let old = aged_decisions(&store, 120, 40).await;
    let recent = aged_decisions(&store, 30, 10).await;
    let long_ago = chrono::Utc::now() - chrono::Duration::days(40);
    let lately = chrono::Utc::now() - chrono::Duration::days(5);
    for id in &recent[..10] {
        store
            .record_feedback_at(id, 0.5, Some("old comment"), long_ago)
            .await
            .unwrap();
    }
    for id in &recent[10..25] {
        store
            .record_feedback_at(id, 0.9, None, lately)
            .await
            .unwrap();
    }

    // Every old row goes (in batches of 7, rounds a second apart); recent ones stay.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = p.metrics().await;
        let decisions = series(
            &m,
            r#"dualrouter_pruned_rows_total{table="routing_decisions"}"#,
        )
        .unwrap_or(0.0);
        let feedback =
            series(&m, r#"dualrouter_pruned_rows_total{table="feedback"}"#).unwrap_or(0.0);
        if decisions >= 120.0 && feedback >= 10.0 {
            assert_eq!((decisions, feedback), (120.0, 10.0), "{m}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "old rows not pruned: {decisions} decisions, {feedback} feedback"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let served = driver.await.unwrap();
    assert!(
        served.len() >= 10,
        "requests kept flowing: {}",
        served.len()
    );

    for id in &old {
        assert!(
            store.get_decision(id).await.unwrap().is_none(),
            "old {id} kept"
        );
    }
    for id in &recent {
        assert!(
            store.get_decision(id).await.unwrap().is_some(),
            "recent {id} pruned"
        );
    }
    assert_eq!(store.count_feedback().await.unwrap(), 15);
    // The requests served meanwhile were all logged, routed ones without their embedding.
    let deadline = Instant::now() + Duration::from_secs(20);
    for (i, id) in served.iter().enumerate() {
        let rec = loop {
            if let Some(rec) = store.get_decision(id).await.unwrap() {
                break rec;
            }
            assert!(Instant::now() < deadline, "decision {id} never written");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        if i % 2 == 1 {
            assert_ne!(
                rec.route_source.as_deref(),
                Some("explicit"),
                "routed: {rec:?}"
            );
            assert!(rec.features.is_none(), "retention.store_embeddings: false");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_on_sqlite() {
    retention_prunes_old_rows_while_requests_flow(common::TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_on_postgres() {
    let Some(db) = common::TestDb::postgres() else {
        return;
    };
    retention_prunes_old_rows_while_requests_flow(db).await;
}
