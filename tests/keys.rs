//! Virtual keys, budgets and rate limits through the real proxy (`tests/common`), mock upstreams
//! and a real PostgreSQL where instances share one: the admin API and its refusals; 401, 403 and
//! 429 in each client format with their headers; a budget held exactly by 20 concurrent clients;
//! two instances sharing one budget, one rate limit and a revocation; the store stopped under
//! load; spend by key, team and model, cached input priced on its own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::Proxy;
use dualrouter_testkit::db::PgCluster;
use dualrouter_testkit::Mock;
use serde_json::{json, Value};

const ADMIN: &str = "keys-admin-token-5e1d";
const STATIC_KEY: &str = "static-client-key-77a0";
/// What one `echo` answer costs on the `*-cheap` models: 11 input and 7 output tokens at
/// $1000 per million tokens each.
const COST: f64 = 0.018;

fn env() -> Vec<(&'static str, &'static str)> {
    vec![("KEYS_ADMIN", ADMIN), ("KEYS_STATIC", STATIC_KEY)]
}

/// A proxy with an admin token, a static key beside virtual keys, and models on an OpenAI-kind
/// and an Anthropic-kind mock. `extra` goes at the end (a `database:`, say); `auth` adds to
/// the auth section.
fn config(oa: &Mock, an: &Mock, auth: &str, extra: &str) -> String {
    format!(
        r#"listen: 127.0.0.1:0
admin: {{ listen: 127.0.0.1:0, token_env: KEYS_ADMIN }}
auth: {{ keys_env: KEYS_STATIC, virtual_keys: true{auth} }}
mirt: {{ checkpoint: checkpoints/static.json, encoder: {{ kind: static }} }}
providers:
  - name: oa
    kind: openai
    base_url: {oa}
    models:
      - {{ id: m-cheap, upstream_id: echo, cost_per_mtok: {{ input: 1000, output: 1000 }} }}
      - {{ id: m-dear, upstream_id: echo, cost_per_mtok: {{ input: 100000, output: 100000 }} }}
      - {{ id: m-cached, upstream_id: cached, cost_per_mtok: {{ input: 1000, output: 1000, cache_read: 100 }} }}
  - name: an
    kind: anthropic
    base_url: {an}
    models:
      - {{ id: a-cheap, upstream_id: echo, cost_per_mtok: {{ input: 1000, output: 1000 }} }}
{extra}"#,
        oa = oa.base_url(),
        an = an.base_url(),
    )
}

fn client() -> reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .unwrap()
        })
        .clone()
}

async fn admin(
    p: &Proxy,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client()
        .request(method, format!("{}{path}", p.admin))
        .bearer_auth(ADMIN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Creates a key; returns (id, secret).
async fn create(p: &Proxy, body: Value) -> (String, String) {
    let (status, v) = admin(p, reqwest::Method::POST, "/api/keys", Some(body)).await;
    assert_eq!(status, 201, "{v}");
    (
        v["id"].as_str().unwrap().to_string(),
        v["key"].as_str().unwrap().to_string(),
    )
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Api {
    Chat,
    Messages,
    Responses,
}

const APIS: [Api; 3] = [Api::Chat, Api::Messages, Api::Responses];

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    /// The OpenAI `error.code`, or for Anthropic's format the `error.type`.
    fn code(&self, api: Api) -> String {
        let v = self.json();
        match api {
            Api::Messages => v["error"]["type"].as_str().unwrap_or("").to_string(),
            _ => v["error"]["code"].as_str().unwrap_or("").to_string(),
        }
    }

    fn message(&self) -> String {
        self.json()["error"]["message"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

/// One request in `api`'s format with `key` (Bearer for OpenAI's formats, x-api-key for
/// Anthropic's).
async fn ask(p: &Proxy, api: Api, key: &str, model: &str, stream: bool) -> Answer {
    ask_at(&p.proxy, api, key, model, stream).await
}

async fn until<F, Fut>(what: &str, within: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !f().await {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The key's budget counter: (spent, reserved) in USD.
async fn counter(p: &Proxy, id: &str) -> (f64, f64) {
    let (status, v) = admin(p, reqwest::Method::GET, &format!("/api/keys/{id}"), None).await;
    assert_eq!(status, 200, "{v}");
    (
        v["spend"]["spent_usd"].as_f64().unwrap_or(0.0),
        v["spend"]["reserved_usd"].as_f64().unwrap_or(0.0),
    )
}

/// Waits until nothing is reserved on the key any more (every request settled).
async fn settled(p: &Proxy, id: &str, within: Duration) -> f64 {
    let deadline = Instant::now() + within;
    loop {
        let (spent, reserved) = counter(p, id).await;
        if reserved == 0.0 {
            return spent;
        }
        assert!(
            Instant::now() < deadline,
            "reservations never settled: {reserved} held"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn metrics(p: &Proxy) -> String {
    client()
        .get(format!("{}/metrics", p.admin))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn spend(p: &Proxy, by: &str) -> Vec<Value> {
    let (status, v) = admin(
        p,
        reqwest::Method::GET,
        &format!("/api/spend?by={by}&since=1h"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    v["data"].as_array().unwrap().clone()
}

fn row<'a>(rows: &'a [Value], group: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["group"] == group)
        .unwrap_or_else(|| panic!("no spend row for {group}: {rows:?}"))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn admin_crud_and_bad_input() {
    let (oa, an) = (Mock::start().await, Mock::start_anthropic().await);
    let p = Proxy::start_with_env(&config(&oa, &an, "", ""), &env()).await;
    use reqwest::Method;

    let (status, created) = admin(
        &p,
        Method::POST,
        "/api/keys",
        Some(json!({"name": "ci", "team": "platform", "models": ["m-cheap", "a-cheap"],
                    "budget": {"usd": 5, "period": "month"}, "rate_limit": {"rpm": 100, "tpm": 5000},
                    "max_cost_per_request_usd": 0.5, "expires_at": "2999-01-01T00:00:00Z",
                    "metadata": {"ticket": "OPS-1"}})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let secret = created["key"].as_str().unwrap().to_string();
    assert!(secret.starts_with("sk-dr-"), "{secret}");
    assert_eq!(created["status"], "active");
    assert_eq!(created["team"], "platform");
    assert_eq!(created["budget"], json!({"usd": 5.0, "period": "month"}));
    assert_eq!(created["rate_limit"], json!({"rpm": 100, "tpm": 5000}));
    assert!(secret.starts_with(created["prefix"].as_str().unwrap()));

    // The secret is shown once: never in a listing or a read.
    let (status, list) = admin(&p, Method::GET, "/api/keys", None).await;
    assert_eq!(status, 200);
    assert!(!list.to_string().contains(&secret[8..]), "{list}");
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    let (status, one) = admin(&p, Method::GET, &format!("/api/keys/{id}"), None).await;
    assert_eq!(status, 200);
    assert!(!one.to_string().contains(&secret[8..]));
    assert_eq!(one["spend"]["spent_usd"], 0.0);
    assert_eq!(one["metadata"]["ticket"], "OPS-1");

    // The key works, with Bearer and with x-api-key.
    assert_eq!(
        ask(&p, Api::Chat, &secret, "m-cheap", false).await.status,
        200
    );
    assert_eq!(
        ask(&p, Api::Messages, &secret, "a-cheap", false)
            .await
            .status,
        200
    );

    // PATCH changes what it names, null clears.
    let (status, patched) = admin(
        &p,
        Method::PATCH,
        &format!("/api/keys/{id}"),
        Some(json!({"team": "infra", "rate_limit": {"rpm": 7}, "max_cost_per_request_usd": null})),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["team"], "infra");
    assert_eq!(patched["rate_limit"], json!({"rpm": 7}));
    assert_eq!(patched["max_cost_per_request_usd"], Value::Null);
    assert_eq!(patched["budget"]["usd"], 5.0);

    // Rotation: the old secret stops at once, the new one works.
    let (status, rotated) = admin(&p, Method::POST, &format!("/api/keys/{id}/rotate"), None).await;
    assert_eq!(status, 200, "{rotated}");
    let secret2 = rotated["key"].as_str().unwrap().to_string();
    assert_ne!(secret, secret2);
    assert_eq!(
        ask(&p, Api::Chat, &secret, "m-cheap", false).await.status,
        401
    );
    assert_eq!(
        ask(&p, Api::Chat, &secret2, "m-cheap", false).await.status,
        200
    );

    // DELETE revokes.
    let (status, revoked) = admin(&p, Method::DELETE, &format!("/api/keys/{id}"), None).await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["status"], "revoked");
    assert!(revoked["revoked_at"].is_string());
    assert_eq!(
        ask(&p, Api::Chat, &secret2, "m-cheap", false).await.status,
        401
    );

    // Bad input: 4xx naming the field.
    for (body, status, field) in [
        (
            json!({"name": "x", "budget": {"usd": -1, "period": "day"}}),
            422,
            "budget.usd",
        ),
        (
            json!({"name": "x", "budget": {"usd": 1, "period": "week"}}),
            422,
            "budget.period",
        ),
        (
            json!({"name": "x", "models": ["no-such-model"]}),
            422,
            "models[0]",
        ),
        (
            json!({"name": "x", "models": ["m-cheap", "nope"]}),
            422,
            "models[1]",
        ),
        (json!({"name": "x", "models": []}), 422, "models"),
        (json!({"name": "ci"}), 409, "name"),
        (json!({"name": "  "}), 422, "name"),
        (
            json!({"name": "x", "rate_limit": {"rpm": 0}}),
            422,
            "rate_limit.rpm",
        ),
        (
            json!({"name": "x", "rate_limit": {"tpm": -5}}),
            422,
            "rate_limit.tpm",
        ),
        (
            json!({"name": "x", "max_cost_per_request_usd": -0.1}),
            422,
            "max_cost_per_request_usd",
        ),
        (
            json!({"name": "x", "expires_at": "tomorrow"}),
            422,
            "expires_at",
        ),
        (json!({"name": "x", "metadata": [1, 2]}), 422, "metadata"),
        (json!({"name": "x", "team": "a\u{0000}b"}), 422, "team"),
    ] {
        let (got, v) = admin(&p, Method::POST, "/api/keys", Some(body.clone())).await;
        assert_eq!(got, status, "{body}: {v}");
        assert_eq!(v["error"]["field"], field, "{body}: {v}");
    }
    let (got, v) = admin(
        &p,
        Method::POST,
        "/api/keys",
        Some(json!({"name": "x", "colour": "red"})),
    )
    .await;
    assert_eq!(got, 400, "{v}");
    let (got, v) = admin(
        &p,
        Method::PATCH,
        &format!("/api/keys/{id}"),
        Some(json!({"budget": {"usd": -3, "period": "day"}})),
    )
    .await;
    assert_eq!(
        (got, v["error"]["field"].as_str()),
        (422, Some("budget.usd")),
        "{v}"
    );
    for (m, path) in [
        (Method::GET, "/api/keys/key_nope"),
        (Method::PATCH, "/api/keys/key_nope"),
        (Method::DELETE, "/api/keys/key_nope"),
        (Method::POST, "/api/keys/key_nope/rotate"),
    ] {
        let body = (m == Method::PATCH).then(|| json!({"team": "x"}));
        let (got, v) = admin(&p, m.clone(), path, body).await;
        assert_eq!(got, 404, "{m} {path}: {v}");
    }
    let (got, v) = admin(&p, Method::GET, "/api/spend?by=colour", None).await;
    assert_eq!(
        (got, v["error"]["field"].as_str()),
        (422, Some("by")),
        "{v}"
    );
    let (got, v) = admin(&p, Method::GET, "/api/spend?since=yesterday", None).await;
    assert_eq!(
        (got, v["error"]["field"].as_str()),
        (422, Some("since")),
        "{v}"
    );
    // Nothing of the secrets in the log.
    let log = p.log();
    assert!(!log.contains(&secret[8..]) && !log.contains(&secret2[8..]));
}

#[tokio::test]
async fn refusals_in_each_client_format() {
    let (oa, an) = (Mock::start().await, Mock::start_anthropic().await);
    let p = Proxy::start_with_env(&config(&oa, &an, "", ""), &env()).await;
    let model = |api: Api| {
        if api == Api::Messages {
            "a-cheap"
        } else {
            "m-cheap"
        }
    };

    // 401: unknown, revoked, expired; the static key keeps working beside virtual keys.
    let (revoked_id, revoked) = create(&p, json!({"name": "revoked"})).await;
    assert_eq!(
        ask(&p, Api::Chat, &revoked, "m-cheap", false).await.status,
        200
    );
    let (s, _) = admin(
        &p,
        reqwest::Method::DELETE,
        &format!("/api/keys/{revoked_id}"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (_, expired) = create(
        &p,
        json!({"name": "expired", "expires_at": "2020-01-01T00:00:00Z"}),
    )
    .await;
    for api in APIS {
        for (key, why) in [
            ("sk-dr-0000000000000000000000000000", "invalid"),
            (revoked.as_str(), "revoked"),
            (expired.as_str(), "expired"),
        ] {
            let a = ask(&p, api, key, model(api), false).await;
            assert_eq!(a.status, 401, "{api:?} {why}: {}", a.body);
            let want = if api == Api::Messages {
                "authentication_error"
            } else {
                "invalid_api_key"
            };
            assert_eq!(a.code(api), want, "{api:?} {why}: {}", a.body);
            assert!(a.message().contains(why), "{api:?}: {}", a.body);
        }
        assert_eq!(
            ask(&p, api, STATIC_KEY, model(api), false).await.status,
            200
        );
    }

    // 403: a concrete model outside the key's list; for `auto` such models are no candidates.
    let (_, narrow) = create(&p, json!({"name": "narrow", "models": ["m-cheap"]})).await;
    for (api, m) in [
        (Api::Chat, "m-dear"),
        (Api::Responses, "m-dear"),
        (Api::Messages, "a-cheap"),
    ] {
        let a = ask(&p, api, &narrow, m, false).await;
        assert_eq!(a.status, 403, "{api:?}: {}", a.body);
        let want = if api == Api::Messages {
            "permission_error"
        } else {
            "model_not_allowed"
        };
        assert_eq!(a.code(api), want, "{api:?}: {}", a.body);
    }
    for api in APIS {
        for stream in [false, true] {
            let a = ask(&p, api, &narrow, "auto", stream).await;
            assert_eq!(a.status, 200, "{api:?}: {}", a.body);
            assert_eq!(a.header("x-dualrouter-model").as_deref(), Some("m-cheap"));
        }
    }
    // The model list shows the key what it may use.
    let r = client()
        .get(p.url("/v1/models"))
        .bearer_auth(&narrow)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, ["auto", "m-cheap"]);
    let r = client()
        .get(p.url("/v1/models/m-dear"))
        .bearer_auth(&narrow)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // Embeddings: the key's models hold, and what it spends is charged.
    let (eid, ekey) = create(
        &p,
        json!({"name": "embed", "models": ["m-cheap"], "rate_limit": {"rpm": 50}}),
    )
    .await;
    let embed = |model: &str| {
        client()
            .post(p.url("/v1/embeddings"))
            .bearer_auth(&ekey)
            .json(&json!({"model": model, "input": "hello"}))
            .send()
    };
    let r = embed("m-cheap").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-ratelimit-limit-requests"], "50");
    assert_eq!(embed("m-dear").await.unwrap().status(), 403);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !spend(&p, "key")
        .await
        .iter()
        .any(|r| r["group"] == eid.as_str())
    {
        assert!(
            Instant::now() < deadline,
            "the embeddings request was not charged"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // A concrete model whose estimate passes the per-request cap.
    let (_, capped) = create(
        &p,
        json!({"name": "capped", "max_cost_per_request_usd": 0.001}),
    )
    .await;
    let a = ask(&p, Api::Chat, &capped, "m-cheap", false).await;
    assert_eq!(
        (a.status, a.code(Api::Chat).as_str()),
        (403, "max_cost_exceeded"),
        "{}",
        a.body
    );

    // 429 rate limit (requests), in each format, with the headers.
    for api in APIS {
        let (_, k) = create(
            &p,
            json!({"name": format!("rpm-{api:?}"), "rate_limit": {"rpm": 2}}),
        )
        .await;
        for left in [1, 0] {
            let a = ask(&p, api, &k, model(api), true).await;
            assert_eq!(a.status, 200, "{api:?}: {}", a.body);
            // Served answers carry the key's own limits too.
            assert_eq!(a.header("x-ratelimit-limit-requests").as_deref(), Some("2"));
            assert_eq!(
                a.header("x-ratelimit-remaining-requests"),
                Some(left.to_string()),
                "{api:?}"
            );
            assert!(a.header("x-ratelimit-reset-requests").is_some());
        }
        let a = ask(&p, api, &k, model(api), false).await;
        assert_eq!(a.status, 429, "{api:?}: {}", a.body);
        let want = if api == Api::Messages {
            "rate_limit_error"
        } else {
            "rate_limit_exceeded"
        };
        assert_eq!(a.code(api), want, "{api:?}: {}", a.body);
        let retry: u64 = a.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
        assert_eq!(a.header("x-ratelimit-limit-requests").as_deref(), Some("2"));
        assert_eq!(
            a.header("x-ratelimit-remaining-requests").as_deref(),
            Some("0")
        );
        assert_eq!(
            a.header("x-ratelimit-reset-requests"),
            Some(format!("{retry}s"))
        );
    }
    // 429 rate limit (tokens): one answer of 18 tokens uses up 10 a minute.
    let (_, tk) = create(&p, json!({"name": "tpm", "rate_limit": {"tpm": 10}})).await;
    assert_eq!(ask(&p, Api::Chat, &tk, "m-cheap", false).await.status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    let a = loop {
        let a = ask(&p, Api::Chat, &tk, "m-cheap", false).await;
        if a.status == 429 {
            break a;
        }
        assert!(
            Instant::now() < deadline,
            "tokens never charged to the window"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(a.code(Api::Chat), "rate_limit_exceeded", "{}", a.body);
    assert!(a.header("retry-after").is_some());
    assert_eq!(a.header("x-ratelimit-limit-tokens").as_deref(), Some("10"));
    assert_eq!(
        a.header("x-ratelimit-remaining-tokens").as_deref(),
        Some("0")
    );
    assert!(a.header("x-ratelimit-reset-tokens").is_some());

    // 429 budget_exceeded, in each format, routed and concrete.
    let (_, broke) = create(
        &p,
        json!({"name": "broke", "budget": {"usd": 0, "period": "total"}}),
    )
    .await;
    for api in APIS {
        for m in [model(api), "auto"] {
            let a = ask(&p, api, &broke, m, false).await;
            assert_eq!(a.status, 429, "{api:?} {m}: {}", a.body);
            if api == Api::Messages {
                assert_eq!(a.code(api), "rate_limit_error");
                assert!(a.message().starts_with("budget_exceeded"), "{}", a.body);
            } else {
                assert_eq!(a.code(api), "budget_exceeded", "{}", a.body);
            }
        }
    }
    // `auto` leaves out what the budget left cannot pay for: m-dear (about $3.6 a request).
    let (_, modest) = create(
        &p,
        json!({"name": "modest", "models": ["m-dear", "m-cheap"],
        "budget": {"usd": 1, "period": "day"}}),
    )
    .await;
    for _ in 0..3 {
        let a = ask(&p, Api::Chat, &modest, "auto", false).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.header("x-dualrouter-model").as_deref(), Some("m-cheap"));
    }
    let a = ask(&p, Api::Chat, &modest, "m-dear", false).await;
    assert_eq!(
        (a.status, a.code(Api::Chat).as_str()),
        (429, "budget_exceeded"),
        "{}",
        a.body
    );

    let metrics = metrics(&p).await;
    for reason in [
        "invalid_key",
        "model_not_allowed",
        "max_cost",
        "rate_requests",
        "rate_tokens",
        "budget",
    ] {
        assert!(
            metrics.contains(&format!(
                "dualrouter_key_refusals_total{{reason=\"{reason}\"}}"
            )),
            "{reason}:\n{metrics}"
        );
    }
}

/// 20 concurrent clients, streaming and not, routed and concrete, in the three formats, on a
/// key whose budget pays for 5 answers: every request is served and charged or refused with
/// 429, and spend never passes the budget.
async fn budget_exactness(p: &Proxy) {
    let (id, key) = create(
        p,
        json!({"name": "budget", "team": "t-budget", "models": ["m-cheap", "a-cheap"],
               "budget": {"usd": 5.0 * COST, "period": "day"}}),
    )
    .await;
    let mut tasks = Vec::new();
    for i in 0..20usize {
        let key = key.clone();
        let base = p.proxy.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for j in 0..3usize {
                let api = APIS[(i + j) % 3];
                let routed = (i + j) % 2 == 0;
                let model = match (routed, api) {
                    (true, _) => "auto",
                    (false, Api::Messages) => "a-cheap",
                    (false, _) => "m-cheap",
                };
                let a = ask_at(&base, api, &key, model, i % 2 == 1).await;
                out.push((api, a.status, a.code(api), a.message(), a.body));
            }
            out
        }));
    }
    let (mut served, mut refused) = (0usize, 0usize);
    for t in tasks {
        for (api, status, code, message, body) in t.await.unwrap() {
            match status {
                200 => served += 1,
                429 => {
                    refused += 1;
                    let budget = if api == Api::Messages {
                        message.starts_with("budget_exceeded")
                    } else {
                        code == "budget_exceeded"
                    };
                    assert!(budget, "{api:?}: {body}");
                }
                other => panic!("{api:?}: {other} {body}"),
            }
        }
    }
    assert_eq!(served + refused, 60);
    assert!(
        served >= 2 && refused >= 1,
        "served {served}, refused {refused}"
    );
    let spent = settled(p, &id, Duration::from_secs(20)).await;
    // Each answer was charged exactly (to the nano-dollar), refusals nothing; with max_tokens set
    // no reservation is below the real cost, so the documented bound is 0 here.
    assert!(
        close(spent, served as f64 * COST),
        "spent {spent}, served {served}"
    );
    assert!(spent <= 5.0 * COST + 1e-9, "spent {spent} over the budget");
    // Refusals were due: the budget left cannot hold one more reservation.
    let a = ask(p, Api::Chat, &key, "m-cheap", false).await;
    assert_eq!(a.status, 429, "{}", a.body);

    // Spend by key, team and model; the decision records carry the key id.
    let by_key = spend(p, "key").await;
    let r = row(&by_key, &id);
    assert_eq!(r["name"], "budget");
    assert_eq!(r["requests"].as_i64(), Some(served as i64));
    assert!(close(r["cost_usd"].as_f64().unwrap(), spent));
    assert!(close(
        row(&spend(p, "team").await, "t-budget")["cost_usd"]
            .as_f64()
            .unwrap(),
        spent
    ));
    let by_model = spend(p, "model").await;
    let per_model: i64 = by_model
        .iter()
        .filter(|r| r["group"] == "m-cheap" || r["group"] == "a-cheap")
        .map(|r| r["requests"].as_i64().unwrap())
        .sum();
    assert!(per_model >= served as i64);
    until("the decision rows", Duration::from_secs(20), || async {
        let (_, d) = admin(p, reqwest::Method::GET, "/api/decisions?limit=1000", None).await;
        let ok = d
            .as_array()
            .map(|rows| {
                rows.iter()
                    .filter(|r| r["key_id"] == id.as_str() && r["status"] == "ok")
                    .count()
            })
            .unwrap_or(0);
        ok == served
    })
    .await;
    let metrics = metrics(p).await;
    assert!(
        metrics.contains("dualrouter_key_spend_usd_total{key=\"budget\",model=\"m-cheap\"}")
            || metrics.contains("dualrouter_key_spend_usd_total{key=\"budget\",model=\"a-cheap\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("dualrouter_key_tokens_total{key=\"budget\""),
        "{metrics}"
    );
}

async fn ask_at(base: &str, api: Api, key: &str, model: &str, stream: bool) -> Answer {
    let (path, body) = match api {
        Api::Chat => (
            "/v1/chat/completions",
            json!({"model": model, "stream": stream, "max_tokens": 7,
                   "messages": [{"role": "user", "content": "say hello to Ada"}]}),
        ),
        Api::Messages => (
            "/v1/messages",
            json!({"model": model, "stream": stream, "max_tokens": 7,
                   "messages": [{"role": "user", "content": "say hello to Ada"}]}),
        ),
        Api::Responses => (
            "/v1/responses",
            json!({"model": model, "stream": stream, "max_output_tokens": 7, "store": false,
                   "input": "say hello to Ada"}),
        ),
    };
    let mut req = client().post(format!("{base}{path}")).json(&body);
    req = match api {
        Api::Messages => req
            .header("x-api-key", key)
            .header("anthropic-version", "2023-06-01"),
        _ => req.bearer_auth(key),
    };
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.text().await.unwrap_or_default();
    Answer {
        status,
        headers,
        body,
    }
}

#[tokio::test]
async fn budget_holds_under_concurrency_and_spend_is_exact() {
    let (oa, an) = (Mock::start().await, Mock::start_anthropic().await);
    let p = Proxy::start_with_env(&config(&oa, &an, "", ""), &env()).await;
    budget_exactness(&p).await;

    // Cached input is priced on its own: 200 uncached at $1000, 800 cached at $100, 7 output.
    let (id, key) = create(
        &p,
        json!({"name": "cache", "team": "t-cache", "models": ["m-cached"]}),
    )
    .await;
    for stream in [false, true] {
        let a = ask(&p, Api::Chat, &key, "m-cached", stream).await;
        assert_eq!(a.status, 200, "{}", a.body);
    }
    let want = 2.0 * (200.0 * 1000.0 + 800.0 * 100.0 + 7.0 * 1000.0) / 1e6;
    let deadline = Instant::now() + Duration::from_secs(20);
    let rows = loop {
        let rows = spend(&p, "key").await;
        if rows
            .iter()
            .any(|r| r["group"] == id.as_str() && r["requests"] == 2)
        {
            break rows;
        }
        assert!(
            Instant::now() < deadline,
            "the cached requests' spend: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert!(
        close(row(&rows, &id)["cost_usd"].as_f64().unwrap(), want),
        "{rows:?}"
    );
    let m = row(&spend(&p, "model").await, "m-cached").clone();
    assert_eq!(m["cached_tokens"], 1600);
    assert_eq!(m["input_tokens"], 2000);
    assert_eq!(m["output_tokens"], 14);
}

#[tokio::test]
async fn budget_holds_on_postgres() {
    let Some(pg) = PgCluster::start() else { return };
    let (oa, an) = (Mock::start().await, Mock::start_anthropic().await);
    let db = format!("database: \"{}\"\n", pg.url());
    let p = Proxy::start_with_env(&config(&oa, &an, "", &db), &env()).await;
    budget_exactness(&p).await;
}

/// Waits, if need be, so that a burst of a few seconds falls inside one minute window.
async fn at_start_of_a_window() {
    let secs = chrono::Utc::now().timestamp().rem_euclid(60);
    if secs > 40 {
        tokio::time::sleep(Duration::from_secs((61 - secs) as u64)).await;
    }
}

#[tokio::test]
async fn two_instances_share_budget_rate_limit_and_revocation() {
    let Some(pg) = PgCluster::start() else { return };
    let (oa, an) = (Mock::start().await, Mock::start_anthropic().await);
    let db = format!("database: \"{}\"\n", pg.url());
    let a = Proxy::start_with_env(&config(&oa, &an, "", &db), &env()).await;
    let b = Proxy::start_with_env(&config(&oa, &an, "", &db), &env()).await;

    // One budget: 10 answers' worth, 40 requests spread over both instances.
    let (bid, bkey) = create(
        &a,
        json!({"name": "shared-budget", "budget": {"usd": 10.0 * COST, "period": "total"}}),
    )
    .await;
    let mut tasks = Vec::new();
    for i in 0..10usize {
        let base = if i % 2 == 0 {
            a.proxy.clone()
        } else {
            b.proxy.clone()
        };
        let key = bkey.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for j in 0..4usize {
                out.push(
                    ask_at(&base, Api::Chat, &key, "m-cheap", (i + j) % 2 == 0)
                        .await
                        .status,
                );
            }
            out
        }));
    }
    let mut served = 0;
    for t in tasks {
        for s in t.await.unwrap() {
            assert!(s == 200 || s == 429, "{s}");
            served += usize::from(s == 200);
        }
    }
    let spent = settled(&a, &bid, Duration::from_secs(20)).await;
    assert!(served >= 2, "{served}");
    assert!(
        close(spent, served as f64 * COST),
        "spent {spent}, served {served}"
    );
    assert!(spent <= 10.0 * COST + 1e-9, "{spent}");

    // One rate limit: 60 a minute, 90 requests over both instances within one minute.
    let (_, rkey) = create(
        &a,
        json!({"name": "shared-rate", "rate_limit": {"rpm": 60}}),
    )
    .await;
    // The key is known to b before the burst (its cache, or the store on a miss).
    assert_eq!(
        ask(&b, Api::Chat, &rkey, "m-cheap", false).await.status,
        200
    );
    at_start_of_a_window().await;
    let window = chrono::Utc::now().timestamp().div_euclid(60);
    let mut tasks = Vec::new();
    for i in 0..6usize {
        let base = if i % 2 == 0 {
            a.proxy.clone()
        } else {
            b.proxy.clone()
        };
        let key = rkey.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for _ in 0..15 {
                let r = ask_at(&base, Api::Chat, &key, "m-cheap", false).await;
                if r.status == 429 {
                    assert_eq!(
                        r.header("x-ratelimit-limit-requests").as_deref(),
                        Some("60")
                    );
                }
                out.push(r.status);
            }
            out
        }));
    }
    let mut served = 0;
    let mut refused = 0;
    for t in tasks {
        for s in t.await.unwrap() {
            match s {
                200 => served += 1,
                429 => refused += 1,
                other => panic!("{other}"),
            }
        }
    }
    let same_window = chrono::Utc::now().timestamp().div_euclid(60) == window;
    assert!(
        same_window,
        "the burst crossed a minute; cannot judge the count"
    );
    // The request before the burst may have fallen in the same window.
    assert!(served <= 60, "served {served} in one minute with rpm 60");
    assert!(served >= 59, "served {served}: the limit refused too early");
    assert_eq!(served + refused, 90);

    // A key revoked through one instance is refused by the other within 1 s.
    let (rid, vkey) = create(&a, json!({"name": "to-revoke"})).await;
    assert_eq!(
        ask(&b, Api::Messages, &vkey, "a-cheap", false).await.status,
        200
    );
    let (s, _) = admin(
        &a,
        reqwest::Method::DELETE,
        &format!("/api/keys/{rid}"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    until(
        "the other instance to refuse the revoked key",
        Duration::from_secs(1),
        || async { ask(&b, Api::Messages, &vkey, "a-cheap", false).await.status == 401 },
    )
    .await;
}

#[tokio::test]
async fn store_stopped_under_load_holds_the_policy_and_loses_no_spend() {
    let Some(pg) = PgCluster::start() else { return };
    let (oa, an) = (Mock::start().await, Mock::start_anthropic().await);
    let db = format!("database: \"{}\"\n", pg.url());
    // a fails closed (the default); b fails open with an allowance of $0.1 per key.
    let a = Proxy::start_with_env(&config(&oa, &an, "", &db), &env()).await;
    let b = Proxy::start_with_env(
        &config(
            &oa,
            &an,
            ", on_store_failure: fail_open, fail_open_allowance_usd: 0.1",
            &db,
        ),
        &env(),
    )
    .await;
    let (ka_id, ka) = create(
        &a,
        json!({"name": "on-a", "budget": {"usd": 10, "period": "total"}}),
    )
    .await;
    let (kb_id, kb) = create(
        &a,
        json!({"name": "on-b", "budget": {"usd": 10, "period": "total"}}),
    )
    .await;
    // b's allowance is per key: the load on `kb` may use all of its own, so the outage is
    // probed with a key of its own.
    let (kp_id, kp) = create(
        &a,
        json!({"name": "on-b-probe", "budget": {"usd": 10, "period": "total"}}),
    )
    .await;
    // Both instances know every key before the store goes.
    for p in [&a, &b] {
        for k in [&ka, &kb, &kp] {
            assert_eq!(ask(p, Api::Chat, k, "m-cheap", false).await.status, 200);
        }
    }
    // Load on both while the store stops.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for (base, key) in [(a.proxy.clone(), ka.clone()), (b.proxy.clone(), kb.clone())] {
        let stop = stop.clone();
        load.push(tokio::spawn(async move {
            let mut served = 0usize;
            let mut other = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let r = ask_at(&base, Api::Chat, &key, "m-cheap", true).await;
                if r.status == 200 {
                    served += 1;
                } else {
                    other.push(r.status);
                }
            }
            (served, other)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    pg.stop_server();
    // While it is away: a refuses (503), b serves within the allowance, then refuses.
    let mut a_refused = 0;
    for _ in 0..3 {
        let r = ask(&a, Api::Chat, &ka, "m-cheap", false).await;
        assert_eq!(r.status, 503, "{}", r.body);
        a_refused += 1;
    }
    let mut b_outage = 0usize;
    for _ in 0..20 {
        let r = ask(&b, Api::Chat, &kp, "m-cheap", false).await;
        match r.status {
            200 => b_outage += 1,
            503 => break,
            other => panic!("{other}: {}", r.body),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut served = [0usize; 2];
    for (i, t) in load.into_iter().enumerate() {
        let (s, other) = t.await.unwrap();
        served[i] = s;
        assert!(other.iter().all(|s| *s == 503), "{other:?}");
    }
    assert_eq!(a_refused, 3);
    assert!(b_outage >= 1, "fail_open served nothing");
    // The probe key's spend while the store was away stays within its allowance: at most 5
    // answers of $0.018 fit in $0.1.
    assert!(b_outage <= 5, "{b_outage} answers on a $0.1 allowance");
    let r = ask(&b, Api::Chat, &kp, "m-cheap", false).await;
    assert_eq!(r.status, 503, "the allowance is used up: {}", r.body);

    // Back: every answer served is charged, none lost.
    pg.start_server();
    let expect_a = (2 + served[0]) as f64 * COST;
    until("a's spend written", Duration::from_secs(30), || async {
        let (s, v) = admin(
            &a,
            reqwest::Method::GET,
            &format!("/api/keys/{ka_id}"),
            None,
        )
        .await;
        s == 200 && close(v["spend"]["spent_usd"].as_f64().unwrap_or(0.0), expect_a)
    })
    .await;
    let expect_p = (2 + b_outage) as f64 * COST;
    until(
        "the probe key's spend written",
        Duration::from_secs(30),
        || async {
            let (s, v) = admin(
                &a,
                reqwest::Method::GET,
                &format!("/api/keys/{kp_id}"),
                None,
            )
            .await;
            s == 200 && close(v["spend"]["spent_usd"].as_f64().unwrap_or(0.0), expect_p)
        },
    )
    .await;
    let expect_b = (2 + served[1]) as f64 * COST;
    let mut last = Value::Null;
    let res = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let (s, v) = admin(
                &a,
                reqwest::Method::GET,
                &format!("/api/keys/{kb_id}"),
                None,
            )
            .await;
            if s == 200 && close(v["spend"]["spent_usd"].as_f64().unwrap_or(0.0), expect_b) {
                return;
            }
            last = v;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        res.is_ok(),
        "b's spend: want {expect_b} ({served:?}, outage {b_outage}), got {last}"
    );
    // And keys work again on both.
    assert_eq!(ask(&a, Api::Chat, &ka, "m-cheap", false).await.status, 200);
}
