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
    let port = common::free_port();
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
