//! Stored responses on SQLite and PostgreSQL: a conversation read back as its chain, oldest
//! first; every read scoped to the owner and to rows not yet expired; expired rows pruned in
//! batches while the recent ones stay; the proxy end to end on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use chrono::{Duration, Utc};
use common::TestDb;
use dualrouter_store::{Store, StoredResponse};
use serde_json::{json, Value};

fn row(
    id: &str,
    owner: &str,
    previous: Option<&str>,
    text: &str,
    age_h: i64,
    ttl_h: i64,
) -> StoredResponse {
    let created = Utc::now() - Duration::hours(age_h);
    StoredResponse {
        id: id.into(),
        owner: owner.into(),
        previous_id: previous.map(str::to_string),
        model: Some("m".into()),
        decision_id: None,
        input: json!([{"type": "message", "role": "user", "content": format!("q {text}")}]),
        output: json!([{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": format!("a {text}")}]}]),
        response: json!({"id": id, "object": "response", "output_text_marker": text, "nul": "a\u{0}b"}),
        created_at: created,
        expires_at: created + Duration::hours(ttl_h),
    }
}

fn texts(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|i| match &i["content"] {
            Value::String(s) => s.clone(),
            c => c[0]["text"].as_str().unwrap().to_string(),
        })
        .collect()
}

async fn everything(store: Store) {
    let now = Utc::now();
    store
        .put_response(&row("resp_1", "key:a", None, "one", 2, 24))
        .await
        .unwrap();
    store
        .put_response(&row("resp_2", "key:a", Some("resp_1"), "two", 1, 24))
        .await
        .unwrap();
    store
        .put_response(&row("resp_3", "key:a", Some("resp_2"), "three", 0, 24))
        .await
        .unwrap();
    // A second write of one id keeps the first.
    store
        .put_response(&row("resp_3", "key:a", None, "other", 0, 24))
        .await
        .unwrap();

    let h = store
        .response_history("resp_3", "key:a", now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        texts(&h),
        ["q one", "a one", "q two", "a two", "q three", "a three"]
    );
    let got = store
        .get_response("resp_3", "key:a", now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.previous_id.as_deref(), Some("resp_2"));
    assert_eq!(got.response["output_text_marker"], "three");
    // A NUL inside the JSON survives (kept as text, not JSONB).
    assert_eq!(got.response["nul"], "a\u{0}b");

    // Another owner sees nothing.
    assert!(store
        .get_response("resp_3", "key:b", now)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .response_history("resp_3", "key:b", now)
        .await
        .unwrap()
        .is_none());
    assert!(!store.delete_response("resp_3", "key:b").await.unwrap());

    // Expired: unreadable, and the chain stops where a link expired.
    store
        .put_response(&row("resp_old", "key:a", None, "old", 50, 24))
        .await
        .unwrap();
    store
        .put_response(&row("resp_new", "key:a", Some("resp_old"), "new", 0, 24))
        .await
        .unwrap();
    assert!(store
        .get_response("resp_old", "key:a", now)
        .await
        .unwrap()
        .is_none());
    let h = store
        .response_history("resp_new", "key:a", now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(texts(&h), ["q new", "a new"]);

    // Pruning takes only expired rows, a batch at a time.
    for i in 0..25 {
        store
            .put_response(&row(&format!("resp_x{i}"), "key:c", None, "x", 100, 1))
            .await
            .unwrap();
    }
    let mut pruned = 0;
    loop {
        let n = store.prune_responses(now, 10).await.unwrap();
        assert!(n <= 10);
        pruned += n;
        if n == 0 {
            break;
        }
    }
    assert_eq!(pruned, 26, "25 expired rows and resp_old");
    assert!(store
        .get_response("resp_1", "key:a", now)
        .await
        .unwrap()
        .is_some());
    assert!(store
        .get_response("resp_new", "key:a", now)
        .await
        .unwrap()
        .is_some());

    assert!(store.delete_response("resp_2", "key:a").await.unwrap());
    // The chain stops at the deleted link.
    let h = store
        .response_history("resp_3", "key:a", now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(texts(&h), ["q three", "a three"]);
    store.close().await;
}

#[tokio::test]
async fn stored_responses_on_sqlite() {
    let db = TestDb::sqlite();
    everything(db.open().await).await;
}

#[tokio::test]
async fn stored_responses_on_postgres() {
    let Some(db) = TestDb::postgres() else { return };
    everything(db.open().await).await;
}

#[tokio::test]
async fn the_proxy_continues_a_conversation_stored_in_postgres() {
    let Some(db) = TestDb::postgres() else { return };
    let mock = dualrouter_testkit::Mock::start().await;
    let yaml = format!(
        r#"listen: 127.0.0.1:0
admin: {{ listen: 127.0.0.1:0 }}
database: {}
providers:
  - name: up
    kind: anthropic
    base_url: {}
    models:
      - {{ id: m, upstream_id: echo }}
"#,
        db.url(),
        mock.base_url()
    );
    let p = common::Proxy::start(&yaml).await;
    let client = reqwest::Client::new();
    let first: Value = client
        .post(p.url("/v1/responses"))
        .json(&json!({"model": "m", "input": "remember the word heron"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = first["id"].as_str().unwrap();
    let r = client
        .post(p.url("/v1/responses"))
        .json(&json!({"model": "m", "input": "which word?", "previous_response_id": id, "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("response.completed"), "{text}");
    let upstream = mock.last().json.unwrap().to_string();
    assert!(upstream.contains("remember the word heron"), "{upstream}");
    // The streamed answer was stored too, under the id its events carried.
    let done = text
        .split("\n\n")
        .find(|e| e.contains("response.completed"))
        .and_then(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .unwrap();
    let second_id = serde_json::from_str::<Value>(done).unwrap()["response"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let stored: Value = client
        .get(p.url(&format!("/v1/responses/{second_id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stored["previous_response_id"], id, "{stored}\n{}", p.log());
    assert_eq!(stored["status"], "completed");
}
