//! The admin API over real HTTP, on SQLite and on a throwaway PostgreSQL: policy CRUD, auth,
//! every validation error, executors, decisions, and config seeding.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{serve_admin, test_config, TestDb, ADMIN_TOKEN};
use dualrouter::admin::AdminState;
use dualrouter_store::{CandidateScore, DecisionRecord, Store};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

struct Api {
    base: String,
    http: Client,
}

impl Api {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, self.url(path))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{status} body is not JSON ({e}): {text}"))
        };
        (status, v)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }
}

/// Starts the API on `db` with the test config's policies seeded.
async fn start(db: &TestDb) -> (Api, Store) {
    let cfg = test_config(&db.url());
    let store = dualrouter_store::open_and_seed(&cfg.database, &cfg.policies)
        .await
        .unwrap();
    let base = serve_admin(AdminState::from_config(store.clone(), &cfg)).await;
    (
        Api {
            base,
            http: Client::new(),
        },
        store,
    )
}

fn policy(domain: &str, action: &str, models: &[&str]) -> Value {
    json!({
        "domain": domain,
        "action": action,
        "description": format!("{domain} {action}"),
        "examples": ["an example"],
        "models": models,
        "priority": 5,
    })
}

async fn crud(api: &Api) {
    // The seeded policy is there.
    let (s, list) = api.get("/api/routing/policies").await;
    assert_eq!(s, StatusCode::OK);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["domain"], "programming");
    assert_eq!(list[0]["models"], json!(["large", "small"]));

    // Create.
    let (s, created) = api
        .send(
            reqwest::Method::POST,
            "/api/routing/policies",
            Some(policy("writing", "summarize", &["small", "sonnet"])),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let id = created["id"].as_i64().unwrap();
    assert_eq!(created["models"], json!(["small", "sonnet"]));
    assert_eq!(created["examples"], json!(["an example"]));
    assert_eq!(created["priority"], 5);

    // Read.
    let (s, got) = api.get(&format!("/api/routing/policies/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(got, created);

    // Update: model order changes, budget added; id and created_at stay.
    let mut body = policy("writing", "summarize", &["sonnet", "small"]);
    body["budget_usd"] = json!(12.5);
    let (s, updated) = api
        .send(
            reqwest::Method::PUT,
            &format!("/api/routing/policies/{id}"),
            Some(body),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{updated}");
    assert_eq!(updated["id"], id);
    assert_eq!(updated["models"], json!(["sonnet", "small"]));
    assert_eq!(updated["budget_usd"], 12.5);
    assert_eq!(updated["created_at"], created["created_at"]);

    // Listed by priority (5 before the seeded 0).
    let (_, list) = api.get("/api/routing/policies").await;
    let domains: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["domain"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(domains, vec!["writing", "programming"]);

    // Delete, then it is gone.
    let (s, _) = api
        .send(
            reqwest::Method::DELETE,
            &format!("/api/routing/policies/{id}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, err) = api.get(&format!("/api/routing/policies/{id}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(err["error"]["type"], "not_found");
}

async fn auth(api: &Api) {
    for path in ["/api/routing/policies", "/api/executors", "/api/decisions"] {
        let resp = api.http.get(api.url(path)).send().await.unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::UNAUTHORIZED,
            "{path} without token"
        );
        assert!(resp.headers().contains_key("www-authenticate"));
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["type"], "unauthorized");

        for wrong in ["wrong", "test-admin-token-12", "test-admin-token-1234", ""] {
            let resp = api
                .http
                .get(api.url(path))
                .bearer_auth(wrong)
                .send()
                .await
                .unwrap();
            assert_eq!(
                resp.status(),
                StatusCode::UNAUTHORIZED,
                "{path} token {wrong:?}"
            );
        }
        // Basic auth carrying the token is not a bearer token.
        let resp = api
            .http
            .get(api.url(path))
            .header("authorization", format!("Basic {ADMIN_TOKEN}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
    // A write without the token changes nothing.
    let resp = api
        .http
        .post(api.url("/api/routing/policies"))
        .json(&policy("x", "y", &["small"]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let (_, list) = api.get("/api/routing/policies").await;
    assert!(list.as_array().unwrap().iter().all(|p| p["domain"] != "x"));
    // The scheme is case-insensitive.
    let resp = api
        .http
        .get(api.url("/api/executors"))
        .header("authorization", format!("bearer {ADMIN_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

async fn validation(api: &Api) {
    let post = |body: Value| async move {
        api.send(reqwest::Method::POST, "/api/routing/policies", Some(body))
            .await
    };

    // 422: unknown model, named.
    let (s, err) = post(policy("a", "b", &["small", "gpt-ghost"])).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(err["error"]["type"], "unknown_model");
    assert_eq!(err["error"]["field"], "models[1]");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("gpt-ghost"));

    // 422: other invalid values.
    let (s, err) = post(policy("a/b", "c", &["small"])).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err["error"]["field"], "domain");
    let (s, err) = post(policy("a", "b", &[])).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err["error"]["field"], "models");

    // 409: the seeded domain/action again; on update too.
    let (s, err) = post(policy("programming", "code-generation", &["small"])).await;
    assert_eq!(s, StatusCode::CONFLICT, "{err}");
    assert_eq!(err["error"]["type"], "conflict");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("programming/code-generation"));
    let (s, other) = post(policy("chat", "smalltalk", &["small"])).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = api
        .send(
            reqwest::Method::PUT,
            &format!("/api/routing/policies/{}", other["id"]),
            Some(policy("programming", "code-generation", &["small"])),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);

    // 400: not JSON, wrong shape, unknown field, no content type. All with JSON bodies.
    for (body, ctype) in [
        ("{not json", "application/json"),
        (r#"{"domain": "a"}"#, "application/json"),
        (
            r#"{"domain": 1, "action": "b", "models": []}"#,
            "application/json",
        ),
        (
            r#"{"domain": "a", "action": "b", "models": ["small"], "modles": []}"#,
            "application/json",
        ),
        (
            r#"{"domain": "a", "action": "b", "models": ["small"]}"#,
            "text/plain",
        ),
    ] {
        let resp = api
            .http
            .post(api.url("/api/routing/policies"))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", ctype)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "body {body}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["type"], "bad_request", "body {body}");
    }

    // 404: unknown ids, on every verb.
    for path in ["/api/routing/policies/999999", "/api/routing/policies/abc"] {
        let (s, _) = api.get(path).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "GET {path}");
        let (s, _) = api
            .send(
                reqwest::Method::PUT,
                path,
                Some(policy("n", "m", &["small"])),
            )
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "PUT {path}");
        let (s, _) = api.send(reqwest::Method::DELETE, path, None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "DELETE {path}");
    }
    let (s, err) = api.get("/api/decisions/no-such-decision").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(err["error"]["type"], "not_found");

    // Bad query strings.
    let (s, _) = api.get("/api/decisions?limit=abc").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = api.get("/api/decisions?limit=0").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = api.get("/api/decisions?limit=1001").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
}

async fn executors(api: &Api) {
    let resp = api
        .http
        .get(api.url("/api/executors"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.unwrap();
    assert!(
        !text.contains("sk-beta-secret-canary"),
        "API key leaked: {text}"
    );
    assert!(!text.contains(ADMIN_TOKEN), "admin token leaked: {text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    let ids: Vec<_> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["small", "large", "sonnet"]);
    let sonnet = &v[2];
    assert_eq!(sonnet["provider"], "beta");
    assert_eq!(sonnet["source"], "config");
    assert_eq!(
        sonnet["cost_per_mtok"],
        json!({"input": 3.0, "output": 15.0})
    );
    assert_eq!(sonnet["health"], "unknown");
    assert_eq!(sonnet["last_check"], Value::Null);
    assert_eq!(v[1]["context_tokens"], 128000);
}

async fn decisions(api: &Api, store: &Store) {
    let base = chrono::Utc::now() - chrono::Duration::seconds(100);
    let mut recs = Vec::new();
    for i in 0..30 {
        let mut r = DecisionRecord::new("ok");
        r.created_at = base + chrono::Duration::milliseconds(i * 1500);
        r.prompt_hash = dualrouter_store::prompt_hash(&format!("prompt {i}"));
        r.domain = Some(if i % 3 == 0 { "math" } else { "programming" }.into());
        r.action = Some("solve".into());
        r.selected_model = Some(if i % 2 == 0 { "small" } else { "large" }.into());
        r.candidates = vec![CandidateScore {
            model: "small".into(),
            p_success: 0.8,
            cost: 0.0001,
            cost_per_mtok: 0.25,
            score: 0.7,
        }];
        r.input_tokens = Some(100 + i as u64);
        r.http_status = Some(200);
        r.latencies_ms.insert("upstream".into(), i as f64);
        recs.push(r);
    }
    assert_eq!(store.insert_decisions(&recs).await.unwrap(), 30);

    let (s, v) = api.get("/api/decisions?limit=5").await;
    assert_eq!(s, StatusCode::OK);
    let got: Vec<DecisionRecord> = serde_json::from_value(v).unwrap();
    assert_eq!(got.len(), 5);
    // Newest first, complete round trip.
    let newest: Vec<_> = recs.iter().rev().take(5).cloned().collect();
    assert_eq!(
        got.iter().map(|d| &d.decision_id).collect::<Vec<_>>(),
        newest.iter().map(|d| &d.decision_id).collect::<Vec<_>>()
    );
    assert_eq!(got[0].candidates, newest[0].candidates);
    assert_eq!(got[0].latencies_ms, newest[0].latencies_ms);
    assert_eq!(got[0].input_tokens, newest[0].input_tokens);

    let (_, v) = api.get("/api/decisions?domain=math&limit=100").await;
    let math: Vec<DecisionRecord> = serde_json::from_value(v).unwrap();
    assert_eq!(math.len(), 10);
    assert!(math.iter().all(|d| d.domain.as_deref() == Some("math")));

    let (_, v) = api
        .get("/api/decisions?domain=programming&model=large&limit=100")
        .await;
    let both: Vec<DecisionRecord> = serde_json::from_value(v).unwrap();
    let expected = recs
        .iter()
        .filter(|r| {
            r.domain.as_deref() == Some("programming")
                && r.selected_model.as_deref() == Some("large")
        })
        .count();
    assert_eq!(both.len(), expected);
    assert!(both.windows(2).all(|w| w[0].created_at >= w[1].created_at));

    // Default page size.
    let (_, v) = api.get("/api/decisions").await;
    assert_eq!(v.as_array().unwrap().len(), 30);

    // Detail, with feedback recorded afterwards.
    let id = &recs[7].decision_id;
    store.record_feedback(id, 0.25, Some("meh")).await.unwrap();
    let (s, v) = api.get(&format!("/api/decisions/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    let d: DecisionRecord = serde_json::from_value(v).unwrap();
    assert_eq!(d.decision_id, *id);
    assert_eq!(d.feedback_score, Some(0.25));
    assert_eq!(d.prompt_hash, recs[7].prompt_hash);
}

async fn seeding_upserts(store: &Store, db: &TestDb) {
    // Seeding again with a changed model list updates in place (same id), adds new ones, and
    // leaves API-created policies alone.
    let mut cfg = test_config(&db.url());
    let before = store
        .find_policy("programming", "code-generation")
        .await
        .unwrap()
        .unwrap();
    cfg.policies[0].models = vec!["sonnet".into()];
    let mut extra = cfg.policies[0].clone();
    extra.action = "debugging".into();
    cfg.policies.push(extra);
    store.seed_policies(&cfg.policies).await.unwrap();
    let after = store
        .find_policy("programming", "code-generation")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.id, before.id);
    assert_eq!(after.models, vec!["sonnet"]);
    assert!(store
        .find_policy("programming", "debugging")
        .await
        .unwrap()
        .is_some());
    assert!(store
        .find_policy("chat", "smalltalk")
        .await
        .unwrap()
        .is_some());
}

async fn everything(db: TestDb) {
    let (api, store) = start(&db).await;
    crud(&api).await;
    auth(&api).await;
    validation(&api).await;
    executors(&api).await;
    decisions(&api, &store).await;
    seeding_upserts(&store, &db).await;
}

#[tokio::test]
async fn admin_api_on_sqlite() {
    everything(TestDb::sqlite()).await;
}

#[tokio::test]
async fn admin_api_on_postgres() {
    let Some(db) = TestDb::postgres() else { return };
    everything(db).await;
}

#[tokio::test]
async fn no_token_configured_means_open() {
    let db = TestDb::sqlite();
    let cfg = test_config(&db.url());
    let mut state = AdminState::from_config(db.open().await, &cfg);
    state.token = None;
    let base = serve_admin(state).await;
    let resp = reqwest::get(format!("{base}/api/routing/policies"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn migrate_command_creates_the_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("fresh.db");
    let url = format!("sqlite://{}", db.display());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dualrouter"))
        .args(["migrate", "--database", &url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(db.exists());
    // Migrated: the tables are there, and a second run is a no-op.
    let store = Store::connect(&url).await.unwrap();
    assert_eq!(store.count_decisions().await.unwrap(), (0, 0));
    assert!(store.list_policies().await.unwrap().is_empty());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dualrouter"))
        .args(["migrate", "--database", &url])
        .output()
        .unwrap();
    assert!(out.status.success());
    // WAL mode.
    let Store::Sqlite(pool) = &store else {
        panic!("a sqlite:// URL must give a SQLite store")
    };
    let mode: (String,) = sqlx::query_as("PRAGMA journal_mode")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(mode.0, "wal");
}

#[test]
fn config_policy_naming_an_unserved_model_is_an_error() {
    let yaml = r#"
providers:
  - name: alpha
    kind: openai
    base_url: http://127.0.0.1:9/v1
    models: [ { id: small } ]
database: postgres://u:hunter2@db.example/router
decision_log: { batch_rows: 0 }
policies:
  - { domain: a, action: b, models: [small, ghost-model] }
  - { domain: a, action: b, models: [small] }
"#;
    let raw = dualrouter_core::config::parse(yaml, "t.yaml").unwrap();
    let err = dualrouter_core::config::validated::validate(raw, &|_| None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("policies[0].models[1]: model 'ghost-model' is not served by any provider"),
        "{err}"
    );
    assert!(
        err.contains("policies[1]: a/b is already defined by policies[0]"),
        "{err}"
    );
    assert!(
        err.contains("decision_log.batch_rows: must be greater than 0"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");

    // Unknown keys are refused with their path.
    let err = dualrouter_core::config::parse("decision_log: { batch_row: 5 }", "t.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("decision_log") && err.contains("batch_row"),
        "{err}"
    );
    let err = dualrouter_core::config::parse(
        "policies: [ { domain: a, action: b, models: [x], modles: [] } ]",
        "t.yaml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("policies[0]") && err.contains("modles"),
        "{err}"
    );

    // Defaults.
    let cfg = dualrouter_core::config::validated::validate(
        dualrouter_core::config::parse("{}", "t.yaml").unwrap(),
        &|_| None,
    )
    .unwrap();
    assert_eq!(cfg.database, "sqlite://dualrouter.db");
    assert_eq!(cfg.decision_log.batch_rows, 500);
    assert_eq!(
        cfg.decision_log.batch_ms,
        std::time::Duration::from_millis(100)
    );
    assert_eq!(cfg.decision_log.prompt_preview_chars, 0);
}

#[test]
fn served_by_prices_the_tokens() {
    let cfg = test_config("sqlite://unused.db");
    let mut r = DecisionRecord::new("ok");
    let usage = |input, cache_read, cache_write, output| dualrouter_wire::Usage {
        input,
        cache_read,
        cache_write,
        output,
        reasoning: 0,
    };
    r.served_by(&cfg.models["large"], Some(&usage(1_000_000, 0, 0, 500_000)));
    assert_eq!(r.selected_model.as_deref(), Some("large"));
    assert_eq!(r.provider.as_deref(), Some("alpha"));
    // 1M input at $2.5 + 0.5M output at $10.
    assert!((r.cost_usd.unwrap() - 7.5).abs() < 1e-9);
    // Cached input at its own price: "large" sets cache_read 0.25 and cache_write 3.125.
    r.served_by(
        &cfg.models["large"],
        Some(&usage(0, 2_000_000, 1_000_000, 0)),
    );
    assert_eq!(r.input_tokens, Some(3_000_000));
    assert_eq!(r.cache_read_tokens, Some(2_000_000));
    assert!((r.cost_usd.unwrap() - (0.5 + 3.125)).abs() < 1e-9);
    r.served_by(&cfg.models["small"], None);
    assert_eq!(r.cost_usd, None);
}
