//! The proxy end to end: the real binary on a free port, mock upstreams on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{chat_body, Proxy};
use dualrouter_testkit::Mock;
use futures::StreamExt;
use serde_json::Value;

/// One provider at `base_url` with a model for each mock behaviour (public id = behaviour).
fn config(base_url: &str, extra: &str) -> String {
    let models = [
        "echo",
        "stream:3:50",
        "stream:5:300",
        "slow:3000",
        "stall:2",
        "forever:100",
        "error:500",
        "error:429",
    ]
    .iter()
    .map(|b| format!("      - {{ id: \"{}\", upstream_id: \"{b}\", cost_per_mtok: {{ input: 1, output: 2 }} }}\n", b.replace(':', "-")))
    .collect::<String>();
    format!(
        r#"listen: 127.0.0.1:0
admin: {{ listen: 127.0.0.1:0 }}
limits: {{ max_body_bytes: 16777216, first_byte_ms: 1000, idle_ms: 700, total_ms: 2500, upstream_connect_ms: 500, client_body_ms: 800 }}
server: {{ graceful_shutdown_timeout_seconds: 2, grace_period_seconds: 0 }}
providers:
  - name: mock
    kind: openai
    base_url: {base_url}
    api_key_env: MOCK_PROVIDER_KEY
    models:
      - {{ id: public-echo, upstream_id: echo }}
{models}{extra}"#
    )
}

async fn start(mock: &Mock) -> Proxy {
    Proxy::start_with_env(
        &config(&mock.base_url(), ""),
        &[("MOCK_PROVIDER_KEY", "sk-provider-canary")],
    )
    .await
}

async fn post(p: &Proxy, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(p.url("/v1/chat/completions"))
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn error_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.expect("error body is JSON");
    assert!(v["error"]["message"].is_string(), "OpenAI error shape: {v}");
    assert!(v["error"]["type"].is_string(), "OpenAI error shape: {v}");
    assert!(v["error"].get("code").is_some(), "OpenAI error shape: {v}");
    (status, v)
}

#[tokio::test]
async fn non_streaming_rewrites_model_and_replaces_auth() {
    let mock = Mock::start().await;
    let p = start(&mock).await;
    let resp = reqwest::Client::new()
        .post(p.url("/v1/chat/completions"))
        .header("authorization", "Bearer sk-client-key-must-not-leak")
        .header("x-api-key", "client-x-api-key")
        .json(&chat_body("public-echo", "hello", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-dualrouter-model"], "public-echo");
    let id = resp.headers()["x-dualrouter-decision-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");

    let seen = mock.last();
    let sent: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(
        sent["model"], "echo",
        "model id rewritten to the provider's"
    );
    assert_eq!(sent["messages"][0]["content"], "hello");
    assert_eq!(seen.headers["authorization"], "Bearer sk-provider-canary");
    assert!(
        seen.headers.get("x-api-key").is_none(),
        "client's x-api-key must not go upstream"
    );
    assert!(
        !p.log().contains("sk-provider-canary"),
        "provider key in the log"
    );
}

#[tokio::test]
async fn streaming_arrives_chunk_by_chunk_and_usage_only_when_asked() {
    let mock = Mock::start().await;
    let p = start(&mock).await;

    // 5 chunks 300 ms apart: the first must reach the client long before the last is sent.
    let started = Instant::now();
    let resp = post(&p, &chat_body("stream-5-300", "hi", true)).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut stream = resp.bytes_stream();
    let mut body = Vec::new();
    let mut first_at = None;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        if first_at.is_none() && chunk.windows(4).any(|w| w == b"tok0") {
            first_at = Some(started.elapsed());
        }
        body.extend_from_slice(&chunk);
    }
    let total = started.elapsed();
    let first_at = first_at.expect("first chunk");
    assert!(
        first_at + Duration::from_millis(900) < total,
        "first chunk at {first_at:?}, stream done at {total:?}: buffered?"
    );
    let text = String::from_utf8(body).unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert!(
        !text.contains("\"usage\":{"),
        "usage chunk must not reach a client that did not ask: {text}"
    );
    let sent: Value = serde_json::from_slice(&mock.last().body).unwrap();
    assert_eq!(
        sent["stream_options"]["include_usage"], true,
        "usage requested upstream"
    );

    // Asked for: the usage chunk is passed on.
    let mut body = chat_body("stream-3-50", "hi", true);
    body["stream_options"] = serde_json::json!({"include_usage": true});
    let text = post(&p, &body).await.text().await.unwrap();
    assert!(text.contains("\"completion_tokens\":7"), "{text}");
    assert_eq!(
        text.matches("data: ").count(),
        5,
        "3 chunks + usage + DONE: {text}"
    );

    // Captured either way: the access log has the tokens.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !p.log().contains("output_tokens=7") {
        assert!(Instant::now() < deadline, "usage not captured: {}", p.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn multi_mib_prompt_reaches_upstream_whole() {
    let mock = Mock::start().await;
    let p = start(&mock).await;
    let prompt: String = (0..6 * 1024 * 1024)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let body = chat_body("public-echo", &prompt, false);
    let sent_len = serde_json::to_vec(&body).unwrap().len();
    let resp = post(&p, &body).await;
    assert_eq!(resp.status(), 200);
    let seen: Value = serde_json::from_slice(&mock.last().body).unwrap();
    assert_eq!(seen["messages"][0]["content"].as_str().unwrap(), prompt);
    assert!(mock.last().body.len() >= sent_len - 64);

    // Streamed too.
    let resp = post(&p, &chat_body("stream-3-50", &prompt, true)).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().ends_with("data: [DONE]\n\n"));
}

#[tokio::test]
async fn client_errors_in_openai_format() {
    let mock = Mock::start().await;
    let p = start(&mock).await;
    let client = reqwest::Client::new();
    let url = p.url("/v1/chat/completions");

    let (s, _) = error_of(client.post(&url).body("{not json").send().await.unwrap()).await;
    assert_eq!(s, 400);
    let (s, v) = error_of(
        client
            .post(&url)
            .body(r#"{"messages":[{"role":"user","content":"x"}]}"#)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 400);
    assert!(v["error"]["message"].as_str().unwrap().contains("model"));
    let (s, _) = error_of(
        client
            .post(&url)
            .body(r#"{"model":"public-echo"}"#)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 400);
    let (s, v) = error_of(post(&p, &chat_body("no-such-model", "x", false)).await).await;
    assert_eq!(s, 404);
    assert_eq!(v["error"]["code"], "model_not_found");
    let (s, _) = error_of(client.get(p.url("/v1/nothing")).send().await.unwrap()).await;
    assert_eq!(s, 404);
    let (s, _) = error_of(client.get(&url).send().await.unwrap()).await;
    assert_eq!(s, 405);

    // Over the 16 MiB cap: refused by Content-Length, and when sent chunked.
    let big = vec![b' '; 17 * 1024 * 1024];
    let (s, v) = error_of(client.post(&url).body(big.clone()).send().await.unwrap()).await;
    assert_eq!(s, 413);
    assert_eq!(v["error"]["code"], "request_too_large");
    let chunks = futures::stream::iter(
        big.chunks(1024 * 1024)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let resp = client
        .post(&url)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .expect("the 413 reaches a client still sending (lingering close)");
    assert_eq!(resp.status(), 413);
    assert_eq!(mock.count(), 0, "nothing reached the upstream");

    // The proxy still serves after all that.
    assert_eq!(
        post(&p, &chat_body("public-echo", "x", false))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn upstream_errors_pass_through_and_failures_map_to_502_504() {
    let mock = Mock::start().await;
    let p = start(&mock).await;
    // The upstream's own error answer is passed on as it is.
    let resp = post(&p, &chat_body("error-429", "x", false)).await;
    assert_eq!(resp.status(), 429);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["message"], "mock upstream error");

    // Slow first byte (3 s against first_byte_ms 1000) → 504.
    let started = Instant::now();
    let (s, v) = error_of(post(&p, &chat_body("slow-3000", "x", false)).await).await;
    assert_eq!(s, 504, "{v}");
    assert!(started.elapsed() < Duration::from_millis(2500));

    // Stalled mid-stream (idle_ms 700): the stream ends with an error event.
    let text = post(&p, &chat_body("stall-2", "x", true))
        .await
        .text()
        .await
        .unwrap_or_default();
    assert!(text.contains("tok1"), "{text}");
    assert!(text.contains("upstream_timeout"), "{text}");

    // Steady chunks but past total_ms (2500): cut with an error event.
    let started = Instant::now();
    let text = post(&p, &chat_body("forever-100", "x", true))
        .await
        .text()
        .await
        .unwrap_or_default();
    assert!(started.elapsed() < Duration::from_millis(4000));
    assert!(
        text.contains("tok1000") && text.contains("upstream_timeout"),
        "{text}"
    );
}

#[tokio::test]
async fn upstream_down_reset_and_connect_timeout() {
    // Nothing listens on this port.
    let reserved = dualrouter_testkit::net::ReservedPort::new();
    let down = reserved.addr();
    // Accepts and closes at once.
    let reset = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let reset_addr = reset.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            if let Ok((s, _)) = reset.accept().await {
                drop(s);
            }
        }
    });
    // A listener with a full backlog: new connections are never accepted (SYNs dropped).
    let backlog = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    backlog
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    backlog.listen(0).unwrap();
    let backlog_addr = backlog.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        if let Ok(Ok(s)) = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(backlog_addr),
        )
        .await
        {
            fillers.push(s);
        }
    }

    let mock = Mock::start().await;
    let extra = format!(
        r#"  - {{ name: down, kind: openai, base_url: "http://{down}/v1", models: [ {{ id: on-down, upstream_id: echo }} ] }}
  - {{ name: reset, kind: openai, base_url: "http://{reset_addr}/v1", models: [ {{ id: on-reset, upstream_id: echo }} ] }}
  - {{ name: blackhole, kind: openai, base_url: "http://{backlog_addr}/v1", models: [ {{ id: on-blackhole, upstream_id: echo }} ] }}
"#
    );
    let p = Proxy::start_with_env(
        &config(&mock.base_url(), &extra),
        &[("MOCK_PROVIDER_KEY", "k")],
    )
    .await;
    let (s, v) = error_of(post(&p, &chat_body("on-down", "x", false)).await).await;
    assert_eq!(s, 502, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("'down'"),
        "{v}"
    );
    let (s, v) = error_of(post(&p, &chat_body("on-reset", "x", false)).await).await;
    assert_eq!(s, 502, "{v}");
    let started = Instant::now();
    let (s, v) = error_of(post(&p, &chat_body("on-blackhole", "x", false)).await).await;
    assert_eq!(s, 504, "{v}");
    assert!(
        started.elapsed() < Duration::from_millis(2000),
        "connect timeout is 500 ms"
    );
    drop(fillers);
}

#[tokio::test]
async fn client_disconnect_mid_stream_closes_upstream() {
    let mock = Mock::start().await;
    let p = start(&mock).await;
    let resp = post(&p, &chat_body("forever-100", "x", true)).await;
    let mut stream = resp.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(2);
    while mock.streams_dropped() == 0 {
        assert!(
            Instant::now() < deadline,
            "upstream stream still open after the client left"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn slow_client_body_gets_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mock = Mock::start().await;
    let p = start(&mock).await;
    let mut s = tokio::net::TcpStream::connect(p.proxy.trim_start_matches("http://"))
        .await
        .unwrap();
    s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"model\"")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .expect("proxy hung")
        .unwrap();
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"error\""), "{text}");
    assert!(started.elapsed() >= Duration::from_millis(700));
    assert_eq!(mock.count(), 0);
}

#[tokio::test]
async fn client_keys_when_configured() {
    let mock = Mock::start().await;
    let extra = "auth: { keys_env: TEST_CLIENT_KEYS }\n";
    let yaml = format!("{}\n{extra}", config(&mock.base_url(), ""));
    let p = Proxy::start_with_env(
        &yaml,
        &[
            ("MOCK_PROVIDER_KEY", "sk-up"),
            ("TEST_CLIENT_KEYS", "ck-one, ck-two"),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let url = p.url("/v1/chat/completions");
    let body = chat_body("public-echo", "x", false);
    let (s, v) = error_of(client.post(&url).json(&body).send().await.unwrap()).await;
    assert_eq!(s, 401);
    assert_eq!(v["error"]["code"], "invalid_api_key");
    let (s, _) = error_of(
        client
            .post(&url)
            .bearer_auth("ck-wrong")
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 401);
    let r = client
        .post(&url)
        .bearer_auth("ck-two")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .post(&url)
        .header("x-api-key", "ck-one")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(mock.last().headers["authorization"], "Bearer sk-up");
    assert_eq!(
        client
            .get(p.url("/v1/models"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert!(!p.log().contains("ck-one") && !p.log().contains("ck-two"));
}

#[tokio::test]
async fn https_upstream_with_its_own_ca() {
    let (mock, ca_pem) = Mock::start_tls().await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let port = mock.addr.port();
    let extra = format!(
        r#"  - {{ name: tls-trusted, kind: openai, base_url: "https://localhost:{port}/v1", ca_file: "{}", models: [ {{ id: over-tls, upstream_id: echo }}, {{ id: over-tls-stream, upstream_id: "stream:3:10" }} ] }}
  - {{ name: tls-untrusted, kind: openai, base_url: "https://localhost:{port}/v1", models: [ {{ id: over-tls-untrusted, upstream_id: echo }} ] }}
"#,
        ca_file.display()
    );
    let other = Mock::start().await;
    let p = Proxy::start_with_env(
        &config(&other.base_url(), &extra),
        &[("MOCK_PROVIDER_KEY", "k")],
    )
    .await;
    for _ in 0..3 {
        // Several requests: the pooled connection is reused.
        let r = post(&p, &chat_body("over-tls", "x", false)).await;
        assert_eq!(r.status(), 200, "{}", p.log());
    }
    let text = post(&p, &chat_body("over-tls-stream", "x", true))
        .await
        .text()
        .await
        .unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"));
    assert_eq!(mock.count(), 4);
    assert_eq!(mock.last().headers["host"], format!("localhost:{port}"));

    // The same server without its CA: certificate verification fails → 502, nothing sent.
    let (s, v) = error_of(post(&p, &chat_body("over-tls-untrusted", "x", false)).await).await;
    assert_eq!(s, 502, "{v}");
    let msg = v["error"]["message"].as_str().unwrap().to_lowercase();
    assert!(msg.contains("tls") || msg.contains("certificate"), "{msg}");
    assert_eq!(mock.count(), 4);
}

#[tokio::test]
async fn models_health_and_metrics() {
    let mock = Mock::start().await;
    let p = start(&mock).await;
    let client = reqwest::Client::new();
    let v: Value = client
        .get(p.url("/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids[..2], ["auto", "public-echo"]);
    assert!(ids.contains(&"stream-3-50"));
    assert_eq!(
        client.get(p.url("/healthz")).send().await.unwrap().status(),
        200
    );

    post(&p, &chat_body("public-echo", "x", false))
        .await
        .text()
        .await
        .unwrap();
    post(&p, &chat_body("nope", "x", false))
        .await
        .text()
        .await
        .unwrap();
    // Counters are bumped right after the answer is written: poll briefly.
    let deadline = Instant::now() + Duration::from_secs(2);
    let m = loop {
        let m = client
            .get(format!("{}/metrics", p.admin))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if m.contains(r#"status="404"} 1"#) || Instant::now() > deadline {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        m.contains(r#"dualrouter_requests_total{model="public-echo",status="200"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"dualrouter_requests_total{model="none",status="404"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(
            r#"dualrouter_upstream_latency_seconds_count{model="public-echo",provider="mock"} 1"#
        ),
        "{m}"
    );
    assert!(
        m.contains("dualrouter_proxy_overhead_seconds_count 1"),
        "{m}"
    );
    assert!(m.contains("dualrouter_request_bytes_total"), "{m}");
    assert!(!m.contains("sk-provider-canary"));
}

#[tokio::test]
async fn admin_token_guards_metrics() {
    let mock = Mock::start().await;
    let yaml = config(&mock.base_url(), "").replace(
        "admin: { listen: 127.0.0.1:0 }",
        "admin: { listen: 127.0.0.1:0, token_env: TEST_ADMIN_TOKEN }",
    );
    let p = Proxy::start_with_env(
        &yaml,
        &[
            ("MOCK_PROVIDER_KEY", "k"),
            ("TEST_ADMIN_TOKEN", "adm-canary"),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let url = format!("{}/metrics", p.admin);
    assert_eq!(client.get(&url).send().await.unwrap().status(), 401);
    assert_eq!(
        client
            .get(&url)
            .bearer_auth("adm-wrong")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        client
            .get(&url)
            .bearer_auth("adm-canary")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(!p.log().contains("adm-canary"));
}

#[test]
fn bad_config_is_refused_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "listen: 127.0.0.1:0\nproviders:\n  - { name: a, kind: openai, base_url: http://127.0.0.1:1/v1, models: [ { id: m, cost_per_mtk: {} } ] }\n",
    )
    .unwrap();
    let (ok, out) = common::run_cli(&["serve", "--config", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        out.contains("providers[0].models[0]") && out.contains("cost_per_mtk"),
        "{out}"
    );

    std::fs::write(&path, "listen: 127.0.0.1:0\nproviders:\n  - { name: a, kind: openai, base_url: http://127.0.0.1:1/v1, api_key_env: SURELY_UNSET_VAR_X, models: [ { id: m } ] }\n").unwrap();
    let (ok, out) = common::run_cli(&["serve", "--config", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        out.contains("providers[0].api_key_env") && out.contains("SURELY_UNSET_VAR_X"),
        "{out}"
    );
}

#[tokio::test]
async fn default_config_demo_upstream_answers() {
    // The shipped config with its ports moved to free ones.
    let yaml = std::fs::read_to_string(common::repo_root().join("config/dualrouter.yaml")).unwrap();
    let reserved = dualrouter_testkit::net::ReservedPort::new();
    let demo_port = reserved.port();
    let yaml = yaml
        .replace("listen: 127.0.0.1:8080", "listen: 127.0.0.1:0")
        .replace("listen: 127.0.0.1:8081", "listen: 127.0.0.1:0")
        .replace("127.0.0.1:8090", &format!("127.0.0.1:{demo_port}"));
    // Where the repository keeps it, so its `../models`, `../checkpoints` and `../var` resolve
    // against a copy of the repository's layout.
    let p = Proxy::start_at(&yaml, "config/dualrouter.yaml", &[]).await;
    assert!(
        p.dir.path().join("var/dualrouter.db").exists(),
        "the shipped config keeps its state in var/ beside config/"
    );
    let v: Value = post(&p, &chat_body("demo-small", "hello demo", false))
        .await
        .json()
        .await
        .unwrap();
    assert!(v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .contains("hello demo"));
    let text = post(&p, &chat_body("demo-large", "hello demo", true))
        .await
        .text()
        .await
        .unwrap();
    assert!(text.contains("chat.completion.chunk") && text.ends_with("data: [DONE]\n\n"));
}
