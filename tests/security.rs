//! Security properties of the real binary (issue #11, "Prove it holds"):
//!
//! - every admin route answers 401 without the admin token or with a wrong one; the list of
//!   routes is `dualrouter::admin::route_table()`, read from the builders the admin router is
//!   made of, and the only public routes are the dashboard's page and assets;
//! - SQL injection attempts in every admin field (and the feedback comment) change nothing in
//!   the database beyond the literal text legitimately stored, and never answer 500, on SQLite
//!   and on PostgreSQL;
//! - nothing in a request (Host, X-Forwarded-Host, Forwarded, an absolute-URI request target, a
//!   `base_url` in the body, odd model ids) changes where the proxy sends a request: the one
//!   configured upstream sees its own Host and path, a second listener sees nothing;
//! - canary secrets (provider keys, admin token, client key) never show in the process's logs
//!   (debug level), the database, `/metrics`, error bodies or the decision-log spool.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use common::{repo_root, PgCluster, Proxy};
use dualrouter::admin::{route_table, Access};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---------------------------------------------------------------------------------------------
// A recording upstream: answers every method and path, OpenAI or Anthropic shaped, and keeps
// what it received.

#[derive(Clone, Debug)]
struct Received {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Default)]
struct Upstream {
    seen: Mutex<Vec<Received>>,
    /// `ok`, `401` (an error echoing the key it was given, as some providers do) or `500`.
    mode: Mutex<String>,
}

struct Recorder {
    addr: SocketAddr,
    state: Arc<Upstream>,
}

impl Recorder {
    async fn start() -> Recorder {
        let state = Arc::new(Upstream::default());
        *state.mode.lock().unwrap() = "ok".into();
        let app = axum::Router::new()
            .fallback(record)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Recorder { addr, state }
    }

    fn seen(&self) -> Vec<Received> {
        self.state.seen.lock().unwrap().clone()
    }

    fn set_mode(&self, mode: &str) {
        *self.state.mode.lock().unwrap() = mode.into();
    }
}

async fn record(
    axum::extract::State(state): axum::extract::State<Arc<Upstream>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.seen.lock().unwrap().push(Received {
        method,
        uri: uri.clone(),
        headers: headers.clone(),
        body: body.clone(),
    });
    let anthropic = uri.path().ends_with("/messages");
    let mode = state.mode.lock().unwrap().clone();
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let model = req["model"].as_str().unwrap_or("?").to_string();
    match mode.as_str() {
        "401" => {
            // Some providers repeat the key they were given in the error.
            let key = headers
                .get("x-api-key")
                .or_else(|| headers.get("authorization"))
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .trim_start_matches("Bearer ")
                .to_string();
            let body = if anthropic {
                json!({"type": "error", "error": {"type": "authentication_error",
                    "message": format!("invalid x-api-key: {key}")}})
            } else {
                json!({"error": {"message": format!("Incorrect API key provided: {key}"),
                    "type": "invalid_request_error", "code": "invalid_api_key", "param": null}})
            };
            (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response()
        }
        "500" => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"error": {"message": "upstream exploded", "type": "server_error"}})),
        )
            .into_response(),
        _ if req["stream"] == true => {
            let text = if anthropic {
                [
                    json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": model, "content": [], "usage": {"input_tokens": 3, "output_tokens": 1}}}),
                    json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                    json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}}),
                    json!({"type": "content_block_stop", "index": 0}),
                    json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}}),
                    json!({"type": "message_stop"}),
                ]
                .iter()
                .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
                .collect::<String>()
            } else {
                let mut s = String::new();
                for chunk in [
                    json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": model, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hi"}, "finish_reason": null}]}),
                    json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": model, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
                    json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": model, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}),
                ] {
                    s.push_str(&format!("data: {chunk}\n\n"));
                }
                s.push_str("data: [DONE]\n\n");
                s
            };
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from(text))
                .unwrap()
        }
        _ if anthropic => axum::Json(json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 3, "output_tokens": 2}
        }))
        .into_response(),
        _ => axum::Json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        }))
        .into_response(),
    }
}

/// A listener that only counts the connections it accepts (an "evil" upstream).
async fn evil_listener() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            h.fetch_add(1, Ordering::SeqCst);
            let _ = s.shutdown().await;
        }
    });
    (addr, hits)
}

// ---------------------------------------------------------------------------------------------
// Helpers

const ADMIN_TOKEN: &str = "adm-canary-3f9d0c2e71b84a65";
const CLIENT_KEY: &str = "cli-canary-8a41e6d2f07c9b13";
const OA_KEY: &str = "sk-canary-oa-5b1f9e07d3c2a468";
const AN_KEY: &str = "sk-ant-canary-c4d27e90b1f35a86";
const CANARIES: [&str; 4] = [ADMIN_TOKEN, CLIENT_KEY, OA_KEY, AN_KEY];

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("SEC_ADMIN_TOKEN", ADMIN_TOKEN),
        ("SEC_CLIENT_KEYS", CLIENT_KEY),
        ("SEC_OA_KEY", OA_KEY),
        ("SEC_AN_KEY", AN_KEY),
    ]
}

/// A proxy with an admin token, a client key, `cheap` on an OpenAI-kind upstream and `strong`
/// on an Anthropic-kind one, both with canary keys, scored by the synthetic checkpoint.
fn config(oa: &Recorder, an: &Recorder, database: Option<&str>, extra: &str) -> String {
    config_with(oa, an, database, true, extra)
}

/// `mirt`: score with the synthetic checkpoint (trained once per test binary, which takes a
/// while) so that `model: "auto"` is routed by MIRT.
fn config_with(
    oa: &Recorder,
    an: &Recorder,
    database: Option<&str>,
    mirt: bool,
    extra: &str,
) -> String {
    let db = database
        .map(|d| format!("database: \"{d}\"\n"))
        .unwrap_or_default();
    let mirt = if mirt {
        format!(
            "mirt:\n  checkpoint: {}\n  encoder: {{ kind: static, models_dir: {} }}\n",
            common::synthetic::checkpoint().display(),
            repo_root().join("models").display()
        )
    } else {
        String::new()
    };
    format!(
        r#"listen: 127.0.0.1:0
admin: {{ listen: 127.0.0.1:0, token_env: SEC_ADMIN_TOKEN }}
auth: {{ keys_env: SEC_CLIENT_KEYS, virtual_keys: true }}
{db}{mirt}providers:
  - name: oa
    kind: openai
    base_url: http://{oa}/v1
    api_key_env: SEC_OA_KEY
    models:
      - {{ id: cheap, upstream_id: up-cheap, cost_per_mtok: {{ input: 0.1, output: 0.4 }} }}
  - name: an
    kind: anthropic
    base_url: http://{an}/v1
    api_key_env: SEC_AN_KEY
    models:
      - {{ id: strong, upstream_id: up-strong, cost_per_mtok: {{ input: 5, output: 15 }} }}
policies:
  - domain: general
    action: question
    description: "questions and small tasks of any kind"
    examples: ["say hello to Ada"]
    models: [strong, cheap]
{extra}"#,
        oa = oa.addr,
        an = an.addr,
    )
}

/// One client for the whole test binary (building one loads the system's root certificates).
fn client() -> reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap()
        })
        .clone()
}

/// Percent-encodes everything but unreserved characters (for a path segment or query value).
fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Sends `method path` to the admin listener with an optional `Authorization` value.
async fn admin_call(
    p: &Proxy,
    method: Method,
    path: &str,
    auth: Option<&str>,
    body: Option<Value>,
) -> (u16, String) {
    let mut req = client().request(method, format!("{}{path}", p.admin));
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

fn bearer() -> String {
    format!("Bearer {ADMIN_TOKEN}")
}

/// A route path with its `{param}`s filled in.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| if seg.starts_with('{') { "1" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

/// Polls until `f` holds (the decision log writes asynchronously), at most 20 s.
async fn until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f().await {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Every table of the database, every row as text.

type Dump = BTreeMap<String, Vec<String>>;

async fn dump(url: &str) -> Dump {
    let mut out = Dump::new();
    if url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let tables: Vec<(String,)> =
            sqlx::query_as("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
                .fetch_all(&pool)
                .await
                .unwrap();
        for (t,) in tables {
            let cols: Vec<(String,)> = sqlx::query_as("SELECT name FROM pragma_table_info(?)")
                .bind(&t)
                .fetch_all(&pool)
                .await
                .unwrap();
            let list = cols
                .iter()
                .map(|(c,)| {
                    // Blobs (ids bound as UUIDs) as their UUID text, other blobs as hex.
                    let h = format!("hex(\"{c}\")");
                    format!(
                        "'{c}', CASE WHEN typeof(\"{c}\") = 'blob' AND length(\"{c}\") = 16 \
                         THEN lower(substr({h},1,8)||'-'||substr({h},9,4)||'-'||substr({h},13,4)\
                         ||'-'||substr({h},17,4)||'-'||substr({h},21)) \
                         WHEN typeof(\"{c}\") = 'blob' THEN {h} ELSE \"{c}\" END"
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            let rows: Vec<(String,)> =
                sqlx::query_as(&format!("SELECT json_object({list}) FROM \"{t}\""))
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            let mut rows: Vec<String> = rows.into_iter().map(|(r,)| r).collect();
            rows.sort();
            out.insert(t, rows);
        }
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let tables: Vec<(String,)> = sqlx::query_as(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = 'public' ORDER BY table_name",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        for (t,) in tables {
            let rows: Vec<(String,)> =
                sqlx::query_as(&format!("SELECT row_to_json(t)::text FROM \"{t}\" t"))
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            let mut rows: Vec<String> = rows.into_iter().map(|(r,)| r).collect();
            rows.sort();
            out.insert(t, rows);
        }
        pool.close().await;
    }
    assert!(
        out.contains_key("routing_policies") && out.contains_key("feedback"),
        "the dump found no dualrouter tables: {:?}",
        out.keys()
    );
    out
}

/// The rows of `after` not in `before`, and of `before` not in `after`, per table.
fn diff(before: &Dump, after: &Dump) -> BTreeMap<String, (Vec<String>, Vec<String>)> {
    let mut d = BTreeMap::new();
    let tables: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for t in tables {
        let b = before.get(t).cloned().unwrap_or_default();
        let a = after.get(t).cloned().unwrap_or_default();
        let added: Vec<String> = a.iter().filter(|r| !b.contains(r)).cloned().collect();
        let removed: Vec<String> = b.iter().filter(|r| !a.contains(r)).cloned().collect();
        if !added.is_empty() || !removed.is_empty() {
            d.insert(t.clone(), (added, removed));
        }
    }
    d
}

// ---------------------------------------------------------------------------------------------
// 1. Admin routes need the token.

#[tokio::test]
async fn every_admin_route_needs_the_token() {
    let (oa, an) = (Recorder::start().await, Recorder::start().await);
    let p = Proxy::start_with_env(&config_with(&oa, &an, None, true, ""), &env()).await;
    let table = route_table();

    // The public routes are exactly the dashboard's page and its assets.
    let mut public: Vec<(Method, &str)> = table
        .iter()
        .filter(|r| r.access == Access::Public)
        .map(|r| (r.method.clone(), r.path))
        .collect();
    public.sort_by_key(|(_, path)| *path);
    assert_eq!(
        public,
        vec![
            (Method::GET, "/"),
            (Method::GET, "/dashboard/app.css"),
            (Method::GET, "/dashboard/app.js"),
            (Method::GET, "/dashboard/icon.svg"),
        ]
    );
    // The table covers the API the docs list (a sanity floor, not the source of truth).
    for must in [
        "/metrics",
        "/api/routing/policies/{id}",
        "/api/reload",
        "/api/training-data",
        "/api/mirt/checkpoints/{version}/activate",
    ] {
        assert!(
            table.iter().any(|r| r.path == must),
            "{must} not in the table"
        );
    }

    let wrong = [
        None,
        Some("Bearer wrong-token".to_string()),
        Some("Bearer ".to_string()),
        Some("Bearer".to_string()),
        Some(format!("Basic {ADMIN_TOKEN}")),
        Some(ADMIN_TOKEN.to_string()),
        Some(format!("Bearer {}", &ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1])),
        Some(format!("Bearer {ADMIN_TOKEN}x")),
        Some(format!("Bearer {}", ADMIN_TOKEN.to_uppercase())),
    ];
    let mut checked = 0;
    for r in table.iter().filter(|r| r.access == Access::Token) {
        let path = concrete(r.path);
        for auth in &wrong {
            let (status, body) = admin_call(
                &p,
                r.method.clone(),
                &path,
                auth.as_deref(),
                Some(json!({})),
            )
            .await;
            assert_eq!(status, 401, "{} {path} with {auth:?}: {body}", r.method);
            let v: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{body}"));
            assert_eq!(v["error"]["type"], "unauthorized", "{body}");
            checked += 1;
        }
        // Also with the token as a client key header, a cookie or a query parameter.
        let req = client()
            .request(
                r.method.clone(),
                format!("{}{path}?token={ADMIN_TOKEN}", p.admin),
            )
            .header("x-api-key", ADMIN_TOKEN)
            .header("cookie", format!("token={ADMIN_TOKEN}"));
        assert_eq!(req.send().await.unwrap().status(), 401, "{path}");
        // With the token, the route exists (it is not 401, 404 or 405).
        let (status, body) = admin_call(&p, r.method.clone(), &path, Some(&bearer()), None).await;
        assert_ne!(
            status, 401,
            "{} {path} refused the right token: {body}",
            r.method
        );
        assert_ne!(status, 405, "{} {path} is not routed: {body}", r.method);
    }
    assert!(checked >= 18 * wrong.len(), "only {checked} checks");

    // No method the table does not list is served on any of its paths. Without the token a
    // protected path answers 401 whatever the method (the check runs before method routing);
    // with it, an unlisted method answers 405. A `GET` route also serves `HEAD`.
    let paths: std::collections::BTreeSet<&str> = table.iter().map(|r| r.path).collect();
    for path in paths {
        for m in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
            Method::HEAD,
            Method::OPTIONS,
        ] {
            let listed = table.iter().find(|r| {
                r.path == path && (r.method == m || (m == Method::HEAD && r.method == Method::GET))
            });
            let protected = table
                .iter()
                .any(|r| r.path == path && r.access == Access::Token);
            let (status, body) = admin_call(&p, m.clone(), &concrete(path), None, None).await;
            if protected {
                assert_eq!(status, 401, "{m} {path} without the token: {body}");
            }
            if listed.is_none() {
                let (status, body) =
                    admin_call(&p, m.clone(), &concrete(path), Some(&bearer()), None).await;
                assert_eq!(
                    status, 405,
                    "{m} {path} is served but not in the table: {body}"
                );
            } else if !protected {
                assert_eq!(status, 200, "{m} {path}: {body}");
            }
        }
    }

    // The public page holds no secret and no data.
    let (status, page) = admin_call(&p, Method::GET, "/", None, None).await;
    assert_eq!(status, 200);
    assert!(!page.contains(ADMIN_TOKEN));

    // Path tricks reach no protected handler without the token.
    for path in [
        "/api/routing/policies/",
        "//api/routing/policies",
        "/api/./routing/policies",
        "/api/x/../routing/policies",
        "/API/routing/policies",
        "/api/routing/policies%2F1",
        "/api%2Frouting%2Fpolicies",
        "/metrics/",
        "/dashboard/../metrics",
        "/dashboard/app.js/../../api/executors",
    ] {
        let (status, body) = admin_call(&p, Method::GET, path, None, None).await;
        assert!(
            status == 401 || status == 404,
            "GET {path} without the token: {status} {body}"
        );
        assert!(
            !body.contains("\"id\"") && !body.contains("dualrouter_"),
            "{path}: {body}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 2. SQL injection.

const SQLI: &[&str] = &[
    "' OR '1'='1",
    "' OR 1=1 --",
    "'; DROP TABLE routing_policies; --",
    "\"; DELETE FROM routing_decisions; --",
    "1 OR 1=1",
    "1; DROP TABLE feedback",
    "') UNION SELECT name, sql FROM sqlite_master --",
    "' UNION SELECT table_name FROM information_schema.tables --",
    "%' OR '%'='",
    "\\'; UPDATE routing_policies SET priority = 999; --",
    "$1",
    "?",
    "'); INSERT INTO feedback (decision_id, score, created_at) VALUES ('x', 1, 'now'); --",
    "robert'); DROP TABLE training_data; --",
    "x\u{0}' OR 1=1 --",
    "general",
];

async fn sql_injection_changes_nothing(database: &str) {
    let (oa, an) = (Recorder::start().await, Recorder::start().await);
    let spool = tempfile::tempdir().unwrap();
    let extra = format!(
        "decision_log: {{ prompt_preview_chars: 50, spool_dir: {} }}\n",
        spool.path().display()
    );
    let p = Proxy::start_with_env(&config(&oa, &an, Some(database), &extra), &env()).await;
    let http = client();
    let auth = bearer();

    // One decision to give feedback to and for the decision queries to (not) find.
    let r = http
        .post(p.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .json(&json!({"model": "auto", "messages": [{"role": "user", "content": "say hello to Ada"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let decision = r.headers()["x-dualrouter-decision-id"]
        .to_str()
        .unwrap()
        .to_string();
    until("the decision row", || async {
        dump(database).await["routing_decisions"].len() == 1
    })
    .await;
    // Feedback once, so the later ones do not change the decision's row.
    let fb = |comment: Value| {
        http.post(p.url("/v1/feedback"))
            .bearer_auth(CLIENT_KEY)
            .json(&json!({"decision_id": decision, "score": 0.5, "comment": comment}))
            .send()
    };
    assert!(fb(json!("fine")).await.unwrap().status().is_success());
    until("the first feedback row", || async {
        dump(database).await["feedback"].len() == 1
    })
    .await;

    let before = dump(database).await;
    let no_500 = |what: &str, status: u16, body: &str| {
        assert!(status < 500, "{what}: {status} {body} ({database})");
    };

    for payload in SQLI {
        let base = json!({"domain": "sec", "action": "probe", "description": "d",
            "examples": ["e"], "models": ["cheap"]});
        // Each field of a new policy.
        for field in ["domain", "action", "description", "examples", "models"] {
            let mut spec = base.clone();
            spec[field] = if matches!(field, "examples" | "models") {
                json!([payload])
            } else {
                json!(payload)
            };
            let (status, body) = admin_call(
                &p,
                Method::POST,
                "/api/routing/policies",
                Some(&auth),
                Some(spec.clone()),
            )
            .await;
            no_500(&format!("POST policy {field}={payload:?}"), status, &body);
            if status == 201 {
                // Stored as the literal text, then removed again.
                let v: Value = serde_json::from_str(&body).unwrap();
                let id = v["id"].as_i64().unwrap();
                let (s, got) = admin_call(
                    &p,
                    Method::GET,
                    &format!("/api/routing/policies/{id}"),
                    Some(&auth),
                    None,
                )
                .await;
                assert_eq!(s, 200);
                let got: Value = serde_json::from_str(&got).unwrap();
                assert_eq!(got[field], spec[field], "{field} not stored literally");
                // And replaced with the payload in every text field at once.
                let mut all = spec.clone();
                all["description"] = json!(payload);
                all["examples"] = json!([payload, payload]);
                let (s, b) = admin_call(
                    &p,
                    Method::PUT,
                    &format!("/api/routing/policies/{id}"),
                    Some(&auth),
                    Some(all),
                )
                .await;
                no_500("PUT policy", s, &b);
                let (s, b) = admin_call(
                    &p,
                    Method::DELETE,
                    &format!("/api/routing/policies/{id}"),
                    Some(&auth),
                    None,
                )
                .await;
                assert_eq!(s, 204, "{b}");
            } else {
                assert!(
                    [400, 409, 422].contains(&status),
                    "POST policy {field}={payload:?}: {status} {body}"
                );
            }
        }
        let e = enc(payload);
        // Path and query parameters.
        for (m, path, body) in [
            (Method::GET, format!("/api/routing/policies/{e}"), None),
            (
                Method::PUT,
                format!("/api/routing/policies/{e}"),
                Some(base.clone()),
            ),
            (Method::DELETE, format!("/api/routing/policies/{e}"), None),
            (Method::GET, format!("/api/decisions/{e}"), None),
            (Method::GET, format!("/api/decisions?limit={e}"), None),
            (Method::GET, format!("/api/decisions?{e}=1"), None),
            (
                Method::POST,
                format!("/api/mirt/checkpoints/{e}/activate"),
                None,
            ),
            (
                Method::POST,
                format!("/api/mirt/checkpoints/1/activate?force={e}"),
                None,
            ),
            (
                Method::POST,
                "/api/mirt/train".to_string(),
                Some(json!({"data": payload})),
            ),
            (Method::GET, format!("/api/stats?window={e}"), None),
            (Method::GET, format!("/api/keys/{e}"), None),
            (
                Method::PATCH,
                format!("/api/keys/{e}"),
                Some(json!({"team": payload})),
            ),
            (Method::DELETE, format!("/api/keys/{e}"), None),
            (Method::POST, format!("/api/keys/{e}/rotate"), None),
            (Method::GET, format!("/api/spend?by={e}"), None),
            (Method::GET, format!("/api/spend?since={e}"), None),
            (
                Method::POST,
                format!("/api/training-data?name={e}"),
                Some(json!({"x": 1})),
            ),
        ] {
            let (status, b) = admin_call(&p, m.clone(), &path, Some(&auth), body).await;
            no_500(&format!("{m} {path}"), status, &b);
            assert!(
                status >= 400 || path == "/api/mirt/train",
                "{m} {path}: {status} {b}"
            );
        }
        // Filters that match nothing find nothing (an injected OR would find the decision).
        for q in ["domain", "model"] {
            if *payload == "general" {
                continue;
            }
            let (status, b) = admin_call(
                &p,
                Method::GET,
                &format!("/api/decisions?{q}={e}"),
                Some(&auth),
                None,
            )
            .await;
            no_500(&format!("decisions {q}"), status, &b);
            if status == 200 {
                let v: Value = serde_json::from_str(&b).unwrap();
                let n = v
                    .as_array()
                    .or_else(|| v["decisions"].as_array())
                    .map_or(0, Vec::len);
                assert_eq!(n, 0, "{q}={payload:?} found decisions: {b}");
            }
        }
        // The feedback endpoint: the decision id and the comment.
        let r = http
            .post(p.url("/v1/feedback"))
            .bearer_auth(CLIENT_KEY)
            .json(&json!({"decision_id": payload, "score": 0.5}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "feedback decision_id={payload:?}");
    }
    // The filter that does match finds exactly the one decision.
    let (_, b) = admin_call(
        &p,
        Method::GET,
        "/api/decisions?domain=general",
        Some(&auth),
        None,
    )
    .await;
    let v: Value = serde_json::from_str(&b).unwrap();
    let n = v
        .as_array()
        .or_else(|| v["decisions"].as_array())
        .map_or(0, Vec::len);
    assert_eq!(n, 1, "{b}");

    let middle = dump(database).await;
    let d = diff(&before, &middle);
    let d: BTreeMap<_, _> = d
        .into_iter()
        // The catalog tables mirror the registry and are rewritten after every round of health
        // checks (`routing.health_checks.interval_ms`), which a slow run sees go by.
        .filter(|(t, _)| {
            !matches!(
                t.as_str(),
                "sqlite_sequence" | "candidate_models" | "executor_services"
            )
        })
        .collect();
    assert!(
        d.is_empty(),
        "the admin API calls changed the database ({database}): {d:#?}"
    );

    // Feedback comments are stored as the literal text; nothing else changes.
    let mut stored = 0;
    for payload in SQLI {
        let r = fb(json!(payload)).await.unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        no_500(&format!("feedback comment {payload:?}"), status, &body);
        if status < 300 {
            stored += 1;
        }
    }
    assert!(stored >= SQLI.len() - 1, "only {stored} comments accepted");
    until("the feedback rows", || async {
        dump(database).await["feedback"].len() == 1 + stored
    })
    .await;
    let after = dump(database).await;
    for (t, (added, removed)) in diff(&middle, &after) {
        if matches!(
            t.as_str(),
            "sqlite_sequence" | "candidate_models" | "executor_services"
        ) {
            continue;
        }
        assert_eq!(t, "feedback", "{t} changed: +{added:?} -{removed:?}");
        assert!(removed.is_empty(), "feedback rows removed: {removed:?}");
        for row in added {
            let v: Value = serde_json::from_str(&row).unwrap();
            let c = v["comment"].as_str().unwrap();
            assert!(SQLI.contains(&c), "unexpected comment {c:?}");
            assert_eq!(v["decision_id"], json!(decision));
        }
    }

    // Client text with the same payloads (and U+0000) in a logged decision's prompt preview
    // and requested model is written as text, and does not cost other decisions their row.
    let mut ids = Vec::new();
    for (i, payload) in SQLI.iter().enumerate() {
        let model = if i % 2 == 0 { "auto" } else { "cheap" };
        let r = http
            .post(p.url("/v1/chat/completions"))
            .bearer_auth(CLIENT_KEY)
            .json(&json!({"model": model, "messages": [{"role": "user", "content": payload}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "prompt {payload:?}");
        ids.push(
            r.headers()["x-dualrouter-decision-id"]
                .to_str()
                .unwrap()
                .to_string(),
        );
    }
    let r = http
        .post(p.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .json(&json!({"model": "'; DROP TABLE routing_decisions; --\u{0}", "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error());
    until("every decision row", || async {
        let d = dump(database).await;
        ids.iter().all(|id| {
            d["routing_decisions"]
                .iter()
                .any(|r| r.contains(id.as_str()))
        })
    })
    .await;
    let end = dump(database).await;
    for table in [
        "routing_policies",
        "feedback",
        "training_data",
        "mirt_checkpoints",
    ] {
        assert_eq!(end[table], after[table], "{table} changed");
    }
}

#[tokio::test]
async fn sql_injection_changes_nothing_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/sec.db", dir.path().display());
    sql_injection_changes_nothing(&url).await;
}

#[tokio::test]
async fn sql_injection_changes_nothing_postgres() {
    let Some(pg) = PgCluster::start() else {
        return;
    };
    sql_injection_changes_nothing(&pg.url()).await;
}

// ---------------------------------------------------------------------------------------------
// 3. The upstream cannot be redirected.

/// One HTTP/1.1 request written as is (for request targets reqwest will not send).
async fn raw(addr: &str, request: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn nothing_in_a_request_changes_the_upstream() {
    let up = Recorder::start().await;
    let (evil, evil_hits) = evil_listener().await;
    // (The static encoder and a small checkpoint: quick to start; routing is not under test.)
    let yaml = format!(
        r#"listen: 127.0.0.1:0
admin: {{ listen: 127.0.0.1:0 }}
mirt:
  checkpoint: {ckpt}
  encoder: {{ kind: static, models_dir: {models} }}
providers:
  - name: only
    kind: openai
    base_url: http://{up}/v1
    models:
      - {{ id: gpt, upstream_id: up-gpt }}
      - {{ id: vendor/model, upstream_id: vendor/up-model }}
"#,
        up = up.addr,
        ckpt = common::synthetic::checkpoint().display(),
        models = repo_root().join("models").display(),
    );
    let p = Proxy::start(&yaml).await;
    let http = client();
    let body =
        |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    let evil_host = evil.to_string();
    let evil_url = format!("http://{evil}");
    let mut forwarded = 0usize;

    // Headers that name another host.
    for (name, value) in [
        ("host", evil_host.clone()),
        ("x-forwarded-host", evil_host.clone()),
        ("x-forwarded-server", evil_host.clone()),
        ("x-forwarded-proto", "https".into()),
        ("x-forwarded-port", evil.port().to_string()),
        ("forwarded", format!("host={evil_host};proto=http")),
        ("x-original-url", format!("{evil_url}/v1/chat/completions")),
        ("x-rewrite-url", "/evil".into()),
        ("x-http-method-override", "GET".into()),
        ("x-real-ip", "127.0.0.1".into()),
    ] {
        let r = http
            .post(p.url("/v1/chat/completions"))
            .header(name, &value)
            .json(&body("gpt"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{name}: {value}");
        forwarded += 1;
    }
    // A base URL in the body.
    for field in ["base_url", "api_base", "baseURL", "url", "endpoint", "host"] {
        let mut b = body("gpt");
        b[field] = json!(format!("{evil_url}/v1"));
        let r = http
            .post(p.url("/v1/chat/completions"))
            .json(&b)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{field}");
        forwarded += 1;
    }
    // The configured model id with a slash goes to the same upstream.
    let r = http
        .post(p.url("/v1/chat/completions"))
        .json(&body("vendor/model"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    forwarded += 1;
    // Model ids that look like URLs, paths or header injections are unknown models.
    for model in [
        format!("{evil_url}/v1"),
        format!("gpt@{evil_host}"),
        format!("//{evil_host}/gpt"),
        "../../gpt".into(),
        "gpt/../../evil".into(),
        "vendor/../gpt".into(),
        "gpt\r\nHost: evil.example".into(),
        "gpt\r\n\r\nPOST /evil HTTP/1.1".into(),
        "gpt#frag".into(),
        "gpt?x=1".into(),
        "gpt%2F..".into(),
        " gpt".into(),
    ] {
        let r = http
            .post(p.url("/v1/chat/completions"))
            .json(&body(&model))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert!(
            (400..500).contains(&status),
            "model {model:?}: {status} {text}"
        );
        assert!(serde_json::from_str::<Value>(&text).unwrap()["error"].is_object());
    }
    // Absolute-URI request targets and odd Host headers, written by hand.
    let proxy_addr = p.proxy.trim_start_matches("http://").to_string();
    let b = body("gpt").to_string();
    for (target, host) in [
        (format!("{evil_url}/v1/chat/completions"), evil_host.clone()),
        (
            format!("{evil_url}/v1/chat/completions"),
            proxy_addr.clone(),
        ),
        (
            format!("http://{proxy_addr}/v1/chat/completions"),
            evil_host.clone(),
        ),
        (
            "/v1/chat/completions".to_string(),
            format!("{evil_host}@{proxy_addr}"),
        ),
        (
            "/v1/chat/completions".to_string(),
            format!("{proxy_addr}\r\nX-Forwarded-Host: {evil_host}"),
        ),
    ] {
        let req = format!(
            "POST {target} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{b}",
            b.len()
        );
        let resp = raw(&proxy_addr, &req).await;
        let status: u16 = resp
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        assert!(status > 0, "no answer to {target} / {host:?}: {resp:?}");
        if status == 200 {
            forwarded += 1;
        } else {
            assert!((400..500).contains(&status), "{target} / {host:?}: {resp}");
        }
    }

    // Every forwarded request reached the one upstream with its own Host and path; the other
    // listener saw nothing.
    let seen = up.seen();
    assert_eq!(
        seen.len(),
        forwarded,
        "forwarded {forwarded}, upstream saw {}",
        seen.len()
    );
    for r in &seen {
        assert_eq!(r.method, Method::POST);
        assert_eq!(r.uri.to_string(), "/v1/chat/completions", "{r:?}");
        assert_eq!(r.headers["host"], up.addr.to_string().as_str(), "{r:?}");
        for (name, _) in r.headers.iter() {
            assert!(
                !name.as_str().starts_with("x-forwarded")
                    && name.as_str() != "forwarded"
                    && name.as_str() != "x-original-url",
                "client header {name} reached the upstream"
            );
        }
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert!(
            v["model"] == "up-gpt" || v["model"] == "vendor/up-model",
            "{v}"
        );
    }
    assert_eq!(
        evil_hits.load(Ordering::SeqCst),
        0,
        "the evil listener was contacted"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Canary secrets go nowhere but the upstream's auth header.

/// The secret of the virtual key the canary test makes (known once the admin API made it).
static VIRTUAL_CANARY: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn assert_no_canary(place: &str, text: &str) {
    let virtual_key = VIRTUAL_CANARY.get().map(String::as_str);
    for c in CANARIES.into_iter().chain(virtual_key) {
        // The whole secret, and its distinctive tail (a partly masked key still leaks), also
        // hex-encoded (SQLite blobs are dumped as hex).
        let tail = &c[c.len() - 12..];
        let hex_tail = hex::encode_upper(tail);
        assert!(
            !text.contains(c) && !text.contains(tail) && !text.contains(&hex_tail),
            "a canary secret ({}…) shows in {place}:\n{}",
            &c[..6],
            text.lines()
                .filter(|l| l.contains(tail))
                .take(5)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[tokio::test]
async fn canary_secrets_leak_nowhere() {
    let (oa, an) = (Recorder::start().await, Recorder::start().await);
    let mut env = env();
    env.push(("DUALROUTER_LOG", "debug"));
    let p = Proxy::start_with_env(
        &config(
            &oa,
            &an,
            None,
            "decision_log: { prompt_preview_chars: 200 }\n",
        ),
        &env,
    )
    .await;
    // The spool goes to the proxy's temp dir (the harness adds it unless the config names it).
    let http = client();
    let mut bodies: Vec<(String, String)> = Vec::new();
    let send = |what: String, req: reqwest::RequestBuilder| {
        let what = what.clone();
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let headers = format!("{:?}", r.headers());
            let text = r.text().await.unwrap_or_default();
            (what, status, format!("{headers}\n{text}"))
        }
    };
    let chat = |model: &str, stream: bool| json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "say hello to Ada"}]});
    let msgs = |model: &str, stream: bool| json!({"model": model, "max_tokens": 20, "stream": stream, "messages": [{"role": "user", "content": "say hello"}]});

    let mut calls: Vec<(String, reqwest::RequestBuilder, Option<u16>)> = Vec::new();
    for model in ["auto", "cheap", "strong"] {
        for stream in [false, true] {
            calls.push((
                format!("chat {model} {stream}"),
                http.post(p.url("/v1/chat/completions"))
                    .bearer_auth(CLIENT_KEY)
                    .json(&chat(model, stream)),
                Some(200),
            ));
            calls.push((
                format!("messages {model} {stream}"),
                http.post(p.url("/v1/messages"))
                    .header("x-api-key", CLIENT_KEY)
                    .json(&msgs(model, stream)),
                Some(200),
            ));
        }
    }
    calls.push((
        "route".into(),
        http.post(p.url("/v1/route"))
            .bearer_auth(CLIENT_KEY)
            .json(&json!({"prompt": "say hello"})),
        Some(200),
    ));
    calls.push((
        "models".into(),
        http.get(p.url("/v1/models")).bearer_auth(CLIENT_KEY),
        Some(200),
    ));
    calls.push((
        "bad json".into(),
        http.post(p.url("/v1/chat/completions"))
            .bearer_auth(CLIENT_KEY)
            .body("{\"model\": "),
        Some(400),
    ));
    calls.push((
        "unknown model".into(),
        http.post(p.url("/v1/chat/completions"))
            .bearer_auth(CLIENT_KEY)
            .json(&chat("no-such-model", false)),
        None,
    ));
    calls.push((
        "no client key".into(),
        http.post(p.url("/v1/chat/completions"))
            .json(&chat("cheap", false)),
        Some(401),
    ));
    calls.push((
        "wrong client key".into(),
        http.post(p.url("/v1/chat/completions"))
            .bearer_auth(&CLIENT_KEY[..CLIENT_KEY.len() - 2])
            .json(&chat("cheap", false)),
        Some(401),
    ));
    calls.push((
        "client key as admin token".into(),
        http.get(format!("{}/api/executors", p.admin))
            .bearer_auth(CLIENT_KEY),
        Some(401),
    ));
    calls.push((
        "wrong admin token".into(),
        http.get(format!("{}/api/executors", p.admin))
            .bearer_auth(format!("{ADMIN_TOKEN}0")),
        Some(401),
    ));
    for (what, req, expect) in calls {
        let (what, status, text) = send(what, req).await;
        if let Some(e) = expect {
            assert_eq!(status, e, "{what}: {text}");
        }
        bodies.push((what, text));
    }

    // A virtual key: made through the admin API (the one answer that shows its secret), used
    // in each format, past its rate limit, on a model it may not use, and after revocation.
    let r = http
        .post(format!("{}/api/keys", p.admin))
        .bearer_auth(ADMIN_TOKEN)
        .json(
            &json!({"name": "canary", "team": "sec", "models": ["cheap", "strong"],
                      "budget": {"usd": 100, "period": "day"}, "rate_limit": {"rpm": 6}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    let vkey = created["key"].as_str().unwrap().to_string();
    let vid = created["id"].as_str().unwrap().to_string();
    VIRTUAL_CANARY.set(vkey.clone()).unwrap();
    let mut vcalls: Vec<(String, reqwest::RequestBuilder, u16)> = Vec::new();
    for model in ["auto", "cheap", "strong"] {
        vcalls.push((
            format!("virtual key chat {model}"),
            http.post(p.url("/v1/chat/completions"))
                .bearer_auth(&vkey)
                .json(&chat(model, model == "cheap")),
            200,
        ));
        vcalls.push((
            format!("virtual key messages {model}"),
            http.post(p.url("/v1/messages"))
                .header("x-api-key", &vkey)
                .json(&msgs(model, model != "cheap")),
            200,
        ));
    }
    for (what, req, expect) in vcalls {
        let (what, status, text) = send(what, req).await;
        assert_eq!(status, expect, "{what}: {text}");
        bodies.push((what, text));
    }
    // Past its 6 a minute (a minute boundary in between allows 6 more: 14 tries suffice).
    let mut limited = false;
    for _ in 0..14 {
        let (what, status, text) = send(
            "virtual key over its rate limit".into(),
            http.post(p.url("/v1/chat/completions"))
                .bearer_auth(&vkey)
                .json(&chat("cheap", false)),
        )
        .await;
        bodies.push((what, text));
        if status == 429 {
            limited = true;
            break;
        }
    }
    assert!(limited, "the virtual key's rate limit never refused");
    for (what, m, path) in [
        ("list keys", Method::GET, "/api/keys".to_string()),
        ("get key", Method::GET, format!("/api/keys/{vid}")),
        ("spend by key", Method::GET, "/api/spend?by=key".to_string()),
        ("revoke key", Method::DELETE, format!("/api/keys/{vid}")),
    ] {
        let (what, status, text) = send(
            what.into(),
            http.request(m, format!("{}{path}", p.admin))
                .bearer_auth(ADMIN_TOKEN),
        )
        .await;
        assert_eq!(status, 200, "{what}: {text}");
        bodies.push((what, text));
    }
    let (what, status, text) = send(
        "revoked virtual key".into(),
        http.post(p.url("/v1/chat/completions"))
            .bearer_auth(&vkey)
            .json(&chat("cheap", false)),
    )
    .await;
    assert_eq!(status, 401, "{what}: {text}");
    bodies.push((what, text));

    // Upstream errors: 401 (echoing the key it was given) and 500, each format, both ways.
    for mode in ["401", "500"] {
        oa.set_mode(mode);
        an.set_mode(mode);
        for model in ["cheap", "strong"] {
            for stream in [false, true] {
                let (what, status, text) = send(
                    format!("upstream {mode} chat {model} {stream}"),
                    http.post(p.url("/v1/chat/completions"))
                        .bearer_auth(CLIENT_KEY)
                        .json(&chat(model, stream)),
                )
                .await;
                assert!(status >= 400, "{what}: {status}");
                bodies.push((what, text));
                let (what, status, text) = send(
                    format!("upstream {mode} messages {model} {stream}"),
                    http.post(p.url("/v1/messages"))
                        .header("x-api-key", CLIENT_KEY)
                        .json(&msgs(model, stream)),
                )
                .await;
                assert!(status >= 400, "{what}: {status}");
                bodies.push((what, text));
            }
        }
    }
    oa.set_mode("ok");
    an.set_mode("ok");

    // Admin API: a good reload, then a config error (a secret variable unset, and a bad field).
    let admin = |m: Method, path: &str| {
        http.request(m, format!("{}{path}", p.admin))
            .bearer_auth(ADMIN_TOKEN)
    };
    for (what, m, path) in [
        ("executors", Method::GET, "/api/executors"),
        ("policies", Method::GET, "/api/routing/policies"),
        ("decisions", Method::GET, "/api/decisions?limit=1000"),
        ("stats", Method::GET, "/api/stats"),
        ("checkpoints", Method::GET, "/api/mirt/checkpoints"),
        ("metrics", Method::GET, "/metrics"),
        ("reload", Method::POST, "/api/reload"),
    ] {
        let (what, status, text) = send(what.into(), admin(m, path)).await;
        assert_eq!(status, 200, "{what}: {text}");
        bodies.push((what, text));
    }
    let cfg_path = p.dir.path().join("config.yaml");
    let good = std::fs::read_to_string(&cfg_path).unwrap();
    for (what, bad) in [
        (
            "reload: unset key variable",
            good.replace("SEC_OA_KEY", "SEC_UNSET_KEY"),
        ),
        (
            "reload: bad field",
            good.replace("kind: openai", "kind: 42\n    bogus: 1"),
        ),
        ("reload: bad yaml", format!("{good}\n  : [\n")),
    ] {
        std::fs::write(&cfg_path, bad).unwrap();
        let (what, status, text) = send(what.into(), admin(Method::POST, "/api/reload")).await;
        assert_eq!(status, 422, "{what}: {text}");
        bodies.push((what, text));
    }
    std::fs::write(&cfg_path, &good).unwrap();
    let (what, status, text) = send("reload back".into(), admin(Method::POST, "/api/reload")).await;
    assert_eq!(status, 200, "{what}: {text}");
    bodies.push((what, text));
    // Feedback on a logged decision.
    let (_, _, text) = send(
        "decisions".into(),
        admin(Method::GET, "/api/decisions?limit=1"),
    )
    .await;
    let id = text
        .split("\"decision_id\":\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .map(str::to_string);
    if let Some(id) = id {
        let (what, _, text) = send(
            "feedback".into(),
            http.post(p.url("/v1/feedback"))
                .bearer_auth(CLIENT_KEY)
                .json(&json!({"decision_id": id, "score": 1.0, "comment": "ok"})),
        )
        .await;
        bodies.push((what, text));
    }

    // Wait until every decision is written, then look everywhere.
    let db = format!("sqlite://{}/dualrouter.db", p.dir.path().display());
    until("the decision rows", || async {
        dump(&db).await["routing_decisions"].len() >= 12
    })
    .await;
    let (_, status, metrics) = send("metrics".into(), admin(Method::GET, "/metrics")).await;
    assert_eq!(status, 200);
    assert!(metrics.contains("dualrouter_"), "{metrics}");

    for (what, text) in &bodies {
        assert_no_canary(&format!("the response to {what}"), text);
    }
    assert_no_canary("/metrics", &metrics);
    let dumped = dump(&db).await;
    assert!(dumped["routing_decisions"]
        .iter()
        .any(|r| r.contains("say hello")));
    for (table, rows) in &dumped {
        assert_no_canary(&format!("table {table}"), &rows.join("\n"));
    }
    let spool = p.dir.path().join("spool");
    for entry in walk(&spool) {
        let text = String::from_utf8_lossy(&std::fs::read(&entry).unwrap()).into_owned();
        assert_no_canary(&format!("spool file {}", entry.display()), &text);
    }
    let log = p.log();
    assert!(
        log.contains("DEBUG"),
        "not running with debug logging:\n{log}"
    );
    assert!(log.contains("reload"), "{log}");
    assert_no_canary("the proxy's stderr", &log);
    assert_no_canary("the proxy's stdout", &p.stdout());

    // The upstreams got their own key, and only it, in their auth header; never the client's
    // key or the admin token anywhere.
    let oa_seen = oa.seen();
    let an_seen = an.seen();
    assert!(!oa_seen.is_empty() && !an_seen.is_empty());
    for (seen, key, header, prefix) in [
        (&oa_seen, OA_KEY, "authorization", "Bearer "),
        (&an_seen, AN_KEY, "x-api-key", ""),
    ] {
        for r in seen.iter() {
            assert_eq!(r.headers[header], format!("{prefix}{key}").as_str());
            let mut rest = r.headers.clone();
            rest.remove(header);
            let text = format!("{rest:?} {} {}", r.uri, String::from_utf8_lossy(&r.body));
            assert_no_canary("what the upstream received besides its auth header", &text);
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let path = e.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}
