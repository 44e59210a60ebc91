//! The decision log through the proxy: one row per forwarded request, on SQLite and on a real
//! PostgreSQL, across a database outage and a SIGKILL of the proxy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{chat_body, PgCluster, Proxy};
use dualrouter_store::Store;
use dualrouter_testkit::Mock;
use futures::StreamExt;

fn config(base_url: &str, database: &str, spool: &std::path::Path) -> String {
    format!(
        r#"listen: 127.0.0.1:0
admin: {{ listen: 127.0.0.1:0 }}
database: "{database}"
decision_log: {{ spool_dir: "{}", batch_ms: 50 }}
providers:
  - name: mock
    kind: openai
    base_url: {base_url}
    models:
      - {{ id: m, upstream_id: echo, cost_per_mtok: {{ input: 1, output: 2 }} }}
"#,
        spool.display()
    )
}

/// Sends `n` requests, `concurrency` at a time; returns the decision ids the proxy answered with.
async fn drive(p: &Proxy, n: usize, concurrency: usize) -> Vec<String> {
    let client = reqwest::Client::new();
    let url = p.url("/v1/chat/completions");
    futures::stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            let url = url.clone();
            async move {
                let r = client
                    .post(&url)
                    .json(&chat_body("m", &format!("request {i}"), false))
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
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

async fn wait_for_rows(store: &Store, want: i64, within: Duration) -> (i64, i64) {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(c) = store.count_decisions().await {
            if c.0 >= want || Instant::now() > deadline {
                return c;
            }
        } else if Instant::now() > deadline {
            panic!("store unreachable");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn check_ids(store: &Store, ids: &[String]) {
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "decision ids are unique");
    for id in ids.iter().step_by(997) {
        let rec = store
            .get_decision(id)
            .await
            .unwrap()
            .expect("row for a returned decision id");
        assert_eq!(rec.selected_model.as_deref(), Some("m"));
        assert_eq!(rec.provider.as_deref(), Some("mock"));
        assert_eq!(rec.http_status, Some(200));
        assert_eq!(rec.input_tokens, Some(11));
        assert!((rec.cost_usd.unwrap() - (11.0 + 2.0 * 7.0) / 1e6).abs() < 1e-12);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_requests_ten_thousand_rows_sqlite() {
    let mock = Mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/d.db", dir.path().display());
    let p = Proxy::start(&config(&mock.base_url(), &db, &dir.path().join("spool"))).await;
    let ids = drive(&p, 10_000, 32).await;
    let store = Store::connect(&db).await.unwrap();
    assert_eq!(
        wait_for_rows(&store, 10_000, Duration::from_secs(30)).await,
        (10_000, 10_000)
    );
    check_ids(&store, &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_mid_run_still_one_row_per_request() {
    let Some(pg) = PgCluster::start() else { return };
    let mock = Mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    let p = Proxy::start(&config(
        &mock.base_url(),
        &pg.url(),
        &dir.path().join("spool"),
    ))
    .await;
    let mut ids = drive(&p, 3_000, 32).await;
    pg.stop_server();
    ids.extend(drive(&p, 4_000, 32).await); // the database is down: nothing fails for clients
    pg.start_server();
    ids.extend(drive(&p, 3_000, 32).await);
    let store = Store::connect(&pg.url()).await.unwrap();
    assert_eq!(
        wait_for_rows(&store, 10_000, Duration::from_secs(60)).await,
        (10_000, 10_000)
    );
    check_ids(&store, &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_records_in_spool_replays_after_restart() {
    let Some(pg) = PgCluster::start() else { return };
    let mock = Mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let yaml = config(&mock.base_url(), &pg.url(), &spool);
    let mut p = Proxy::start(&yaml).await;
    let mut ids = drive(&p, 200, 16).await;
    pg.stop_server();
    ids.extend(drive(&p, 800, 16).await);
    // Wait until every record is in the database or in the spool file (records of a batch in
    // flight when the database stopped reach the spool only once that batch has failed), then
    // kill the proxy without warning.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = reqwest::get(format!("{}/metrics", p.admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let counter = |name: &str| {
            m.lines()
                .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let (written, spooled) = (
            counter("dualrouter_decisions_written_total"),
            counter("dualrouter_decisions_spooled_total"),
        );
        if spooled >= 800.0 && written + spooled >= 1000.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "records never reached the spool:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = p.signal_and_wait("KILL", Duration::from_secs(5));
    assert!(!status.success());
    drop(p);

    pg.start_server();
    let _p2 = Proxy::start(&yaml).await;
    let store = Store::connect(&pg.url()).await.unwrap();
    assert_eq!(
        wait_for_rows(&store, 1_000, Duration::from_secs(30)).await,
        (1_000, 1_000)
    );
    check_ids(&store, &ids).await;
}
