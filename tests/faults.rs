//! Every fault of the mock upstream (`dualrouter_testkit::Mock`: `error`, `reset`, `slow`,
//! `stall`, `forever`, `malformed`, `huge`) driven through the real proxy: fallback before the
//! first byte, an error event after it, the idle timeout on a stall, `Retry-After` honoured, the
//! response size limit, the total deadline on an endless stream; and the proxy's own limits
//! against clients: admission control (`limits.max_in_flight`) and slow request headers
//! (`limits.client_header_ms`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::synthetic::{ask, attempts, chat, checkpoint, decision, easy, messages};
use common::{repo_root, Proxy};
use dualrouter_testkit::Mock;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `cheap` (OpenAI format) on `a`, `strong` (Anthropic format) on `b`, both answering `echo`
/// unless forced; MIRT (the synthetic checkpoint) puts `cheap` first for easy prompts. Concrete
/// models on `a`: `c-NAME` → upstream id `NAME` for each of `concrete` (`:` in NAME becomes `-`
/// in the public id).
fn config(a: &Mock, b: &Mock, limits: &str, concrete: &[&str], extra: &str) -> String {
    let models: String = concrete
        .iter()
        .map(|n| format!("      - {{ id: {}, upstream_id: \"{n}\" }}\n", public(n)))
        .collect();
    format!(
        r#"listen: 127.0.0.1:0
admin: {{ listen: 127.0.0.1:0 }}
limits: {{ {limits} }}
mirt:
  checkpoint: {ckpt}
  cost_weight: 0.3
  encoder: {{ kind: static, models_dir: {models_dir} }}
routing: {{ breaker: {{ failures: 100 }} }}
providers:
  - name: faulty
    kind: openai
    base_url: {a}
    models:
      - {{ id: cheap, upstream_id: echo, cost_per_mtok: {{ input: 0.1, output: 0.4 }} }}
{models}  - name: steady
    kind: anthropic
    base_url: {b}
    models:
      - {{ id: strong, upstream_id: echo, cost_per_mtok: {{ input: 5, output: 15 }} }}
policies:
  - domain: general
    action: question
    description: "questions and small tasks of any kind"
    examples: ["say hello to Ada", "what colour is a plum?"]
    models: [strong, cheap]
  - domain: general
    action: research
    description: "proofs, derivations, algorithms and system design"
    examples: ["prove that there are infinitely many primes", "design a consensus protocol"]
    models: [strong, cheap]
{extra}"#,
        ckpt = checkpoint().display(),
        models_dir = repo_root().join("models").display(),
        a = a.base_url(),
        b = b.base_url(),
    )
}

/// The public id of the concrete model whose upstream id is `behaviour`.
fn public(behaviour: &str) -> String {
    format!("c-{}", behaviour.replace(':', "-"))
}

async fn mocks() -> (Mock, Mock) {
    (Mock::start().await, Mock::start_anthropic().await)
}

fn concrete(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

/// The `data:` payloads of an SSE body that parse as JSON.
fn events(body: &str) -> Vec<Value> {
    body.split("\n\n")
        .filter_map(|e| {
            e.lines()
                .find_map(|l| l.strip_prefix("data: "))
                .and_then(|d| serde_json::from_str(d).ok())
        })
        .collect()
}

/// The error object of the last SSE event, if the stream ended with one.
fn final_error(body: &str) -> Option<Value> {
    events(body).last().and_then(|v| v.get("error").cloned())
}

#[tokio::test]
async fn faults_before_the_first_byte_fall_back() {
    let (a, b) = mocks().await;
    let p = Proxy::start(&config(&a, &b, "first_byte_ms: 1500", &[], "")).await;
    for (i, (fault, outcome)) in [
        ("error:503", "5xx"),
        ("error:500", "5xx"),
        ("reset", "broken"),
        ("slow:5000", "timeout"),
        ("error:429:1", "429"),
    ]
    .into_iter()
    .enumerate()
    {
        for stream in [false, true] {
            a.force(Some(fault));
            let sid = format!("{fault}-{stream}");
            let before = (a.behaviour_count(fault), b.count());
            let r = ask(
                &p,
                "/v1/chat/completions",
                &chat(&easy(30 + 2 * i + usize::from(stream)), stream),
                &[("x-session-id", sid.as_str())],
            )
            .await;
            assert_eq!(r.status, 200, "{fault}: {}", r.body);
            assert_eq!(r.model.as_deref(), Some("strong"), "{fault}");
            // (A reset on a pooled connection is retried on a fresh one, as for a connection
            // the upstream closed while idle: at most 3 tries.)
            let tries = a.behaviour_count(fault) - before.0;
            if fault == "reset" {
                assert!((1..=3).contains(&tries), "{fault}: {tries}");
            } else {
                assert_eq!(tries, 1, "{fault} tried once");
            }
            assert_eq!(b.count(), before.1 + 1);
            if stream {
                assert!(r.body.ends_with("data: [DONE]\n\n"), "{fault}: {}", r.body);
                assert!(final_error(&r.body).is_none(), "{}", r.body);
            } else {
                let v: Value = serde_json::from_str(&r.body).unwrap();
                assert_eq!(v["object"], "chat.completion", "{v}");
            }
            let d = decision(&p, r.decision.as_deref().unwrap()).await;
            assert_eq!(
                attempts(&d),
                vec![
                    ("cheap".into(), outcome.into()),
                    ("strong".into(), "ok".into())
                ],
                "{fault}"
            );
            // A 429's Retry-After (1 s) cools `cheap`; let it pass before the next fault.
            if outcome == "429" {
                a.force(None);
                wait_until_served_by(&p, "cheap").await;
            }
        }
    }
    // The Anthropic client falls back the same way, and gets its own format.
    a.force(Some("error:503"));
    let r = ask(&p, "/v1/messages", &messages(&easy(60)), &[]).await;
    assert_eq!((r.status, r.model.as_deref()), (200, Some("strong")));
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["type"], "message", "{v}");
}

/// Sends easy prompts until one is answered by `model` (a cool-down ending), at most 200.
async fn wait_until_served_by(p: &Proxy, model: &str) {
    for i in 0..200 {
        let r = ask(p, "/v1/chat/completions", &chat(&easy(100 + i), false), &[]).await;
        if r.model.as_deref() == Some(model) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{model} never served again");
}

#[tokio::test]
async fn faults_after_the_first_byte_end_the_stream_with_an_error_event() {
    let (a, b) = mocks().await;
    let p = Proxy::start(&config(
        &a,
        &b,
        "idle_ms: 800, total_ms: 2500",
        &["reset:3", "stall:5", "forever:10", "malformed"],
        "",
    ))
    .await;

    // A reset mid-stream: the chunks sent so far, then an error event; never retried.
    let r = ask(
        &p,
        "/v1/chat/completions",
        &concrete("c-reset-3", true),
        &[],
    )
    .await;
    assert_eq!(r.status, 200);
    let evs = events(&r.body);
    let content = evs
        .iter()
        .filter(|e| e["choices"][0]["delta"]["content"].is_string())
        .count();
    assert_eq!(content, 3, "the 3 pieces sent: {}", r.body);
    let err = final_error(&r.body).expect("an error event");
    assert_eq!(err["code"], "upstream_broken", "{err}");
    assert!(!r.body.contains("[DONE]"));
    assert_eq!(b.count(), 0, "nothing is retried after the first byte");
    let d = decision(&p, r.decision.as_deref().unwrap()).await;
    assert_eq!(d["status"], "error", "{d}");

    // A stall: the idle timeout ends it; the upstream connection is closed.
    let dropped = a.streams_dropped();
    let r = ask(
        &p,
        "/v1/chat/completions",
        &concrete("c-stall-5", true),
        &[],
    )
    .await;
    assert_eq!(r.status, 200);
    let err = final_error(&r.body).expect("an error event");
    assert_eq!(err["code"], "upstream_timeout", "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("next chunk"),
        "{err}"
    );
    wait_for(|| a.streams_dropped() > dropped).await;

    // Endless: cut by the total deadline although chunks keep coming.
    let r = ask(
        &p,
        "/v1/chat/completions",
        &concrete("c-forever-10", true),
        &[],
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(events(&r.body).len() > 5, "{}", r.body);
    let err = final_error(&r.body).expect("an error event");
    assert_eq!(err["code"], "upstream_timeout", "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("total deadline"),
        "{err}"
    );
    // Not streamed, endless: the body is cut (the status was sent).
    let resp = reqwest::Client::new()
        .post(p.url("/v1/chat/completions"))
        .json(&concrete("c-forever-10", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.is_err(), "a cut body is an error");

    // Malformed SSE passes through as sent (the proxy invents nothing), and the proxy goes on.
    let r = ask(
        &p,
        "/v1/chat/completions",
        &concrete("c-malformed", true),
        &[],
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("data: not json either"), "{}", r.body);
    let r = ask(&p, "/v1/chat/completions", &chat(&easy(1), true), &[]).await;
    assert_eq!((r.status, r.model.as_deref()), (200, Some("cheap")));
    assert!(r.body.ends_with("data: [DONE]\n\n"));
    // An Anthropic client of the malformed OpenAI stream gets Anthropic events, no crash.
    let r = ask(
        &p,
        "/v1/messages",
        &json!({"model": "c-malformed", "max_tokens": 10, "stream": true,
                "messages": [{"role": "user", "content": "hi"}]}),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!r.body.contains("not json"), "{}", r.body);
}

async fn wait_for(cond: impl Fn() -> bool) {
    for _ in 0..400 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("condition never held");
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let (a, b) = mocks().await;
    let p = Proxy::start(&config(&a, &b, "", &["error:429:30"], "")).await;
    // The only candidate answers 429 with Retry-After: its own answer goes back...
    let r = ask(
        &p,
        "/v1/chat/completions",
        &concrete("c-error-429-30", false),
        &[],
    )
    .await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.retry_after.as_deref(), Some("30"));
    // ...and for that long the model is not called: the proxy answers 503 with the time left.
    let r = ask(
        &p,
        "/v1/chat/completions",
        &concrete("c-error-429-30", false),
        &[],
    )
    .await;
    assert_eq!(r.status, 503, "{}", r.body);
    let left: u64 = r.retry_after.as_deref().unwrap().parse().unwrap();
    assert!((1..=30).contains(&left), "{left}");
    assert_eq!(a.behaviour_count("error:429:30"), 1);

    // Routed: `cheap` says 429 for 30 s; `strong` answers, and `cheap` is skipped meanwhile
    // even though it is healthy again.
    a.force(Some("error:429:30"));
    let r = ask(&p, "/v1/chat/completions", &chat(&easy(2), false), &[]).await;
    assert_eq!((r.status, r.model.as_deref()), (200, Some("strong")));
    a.force(None);
    let before = a.count();
    for i in 0..5 {
        let r = ask(&p, "/v1/chat/completions", &chat(&easy(40 + i), false), &[]).await;
        assert_eq!((r.status, r.model.as_deref()), (200, Some("strong")));
        let d = decision(&p, r.decision.as_deref().unwrap()).await;
        assert!(
            attempts(&d)
                .iter()
                .all(|(m, o)| m != "cheap" || o == "skipped"),
            "{d}"
        );
    }
    assert_eq!(a.count(), before, "a cooling model is not called");
}

#[tokio::test]
async fn a_huge_answer_hits_the_response_limit() {
    let (a, b) = mocks().await;
    let p = Proxy::start(&config(
        &a,
        &b,
        "max_response_bytes: 1048576",
        &["huge:4mib", "sse:10:1000"],
        "",
    ))
    .await;
    // Its length is declared: refused before the first byte, in the client's format.
    let r = ask(
        &p,
        "/v1/chat/completions",
        &concrete("c-huge-4mib", false),
        &[],
    )
    .await;
    assert_eq!(r.status, 502, "{}", &r.body[..r.body.len().min(300)]);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["error"]["code"], "upstream_error");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("max_response_bytes"));
    let r = ask(
        &p,
        "/v1/messages",
        &json!({"model": "c-huge-4mib", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}),
        &[],
    )
    .await;
    assert_eq!(r.status, 502);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["type"], "error", "{v}");
    // Streamed: cut at the limit with an error event.
    let r = ask(
        &p,
        "/v1/chat/completions",
        &concrete("c-huge-4mib", true),
        &[],
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.body.len() < 1_048_576 + 64 * 1024, "{}", r.body.len());
    let err = final_error(&r.body).expect("an error event");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("max_response_bytes"),
        "{err}"
    );
    // Under the limit, every byte arrives.
    let r = ask(
        &p,
        "/v1/chat/completions",
        &concrete("c-sse-10-1000", true),
        &[],
    )
    .await;
    assert_eq!(
        r.body.as_bytes(),
        dualrouter_testkit::openai_sse_bytes("sse:10:1000", 10, 1000, false).as_slice()
    );
}

#[tokio::test]
async fn excess_requests_are_refused_with_503_and_retry_after() {
    let (a, b) = mocks().await;
    let p = Proxy::start(&config(
        &a,
        &b,
        "max_in_flight: 2, overload_retry_after_s: 3, idle_ms: 60000",
        &["stall:1"],
        "",
    ))
    .await;
    // Two streams that stall hold both slots.
    let client = reqwest::Client::new();
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut resp = client
            .post(p.url("/v1/chat/completions"))
            .json(&concrete("c-stall-1", true))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.chunk().await.unwrap().is_some());
        held.push(resp);
    }
    let r = ask(&p, "/v1/chat/completions", &chat(&easy(1), false), &[]).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.retry_after.as_deref(), Some("3"));
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["error"]["code"], "overloaded", "{v}");
    let r = ask(&p, "/v1/messages", &messages(&easy(2)), &[]).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.retry_after.as_deref(), Some("3"));
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["error"]["type"], "overloaded_error", "{v}");
    let r = ask(&p, "/v1/route", &json!({"prompt": "hello"}), &[]).await;
    assert_eq!(r.status, 503);
    // Health checks are not counted.
    let h = client.get(p.url("/healthz")).send().await.unwrap();
    assert_eq!(h.status(), 200);
    // A refusal keeps the connection: its small body is read, and the next request on the
    // same connection is answered.
    let addr = p.proxy.trim_start_matches("http://").to_string();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let body = serde_json::to_vec(&chat(&easy(9), false)).unwrap();
    let mut req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    conn.write_all(&req).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = conn.read(&mut buf).await.unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        !answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let n = conn.read(&mut buf).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "the connection was not kept after a refusal"
    );
    // Nothing was queued: the refused requests never reached an upstream.
    assert_eq!(b.count(), 0);
    assert_eq!(a.count(), 2);
    // A slot freed is a slot taken.
    drop(held.pop());
    let mut served = false;
    for i in 0..200 {
        let r = ask(&p, "/v1/chat/completions", &chat(&easy(3 + i), false), &[]).await;
        if r.status == 200 {
            served = true;
            break;
        }
        assert_eq!(r.status, 503);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(served);
    // Metrics count the refusals.
    let m = p.metrics().await;
    assert!(
        m.lines()
            .any(|l| l.contains("kind=\"overloaded\"") && !l.ends_with(" 0")),
        "{m}"
    );
}

/// Sends `request` on a new connection and reads until the proxy closes it.
async fn raw_exchange(addr: &str, request: &[u8]) -> String {
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut out))
        .await
        .expect("a refused connection is closed at once")
        .unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn connections_over_max_connections_are_refused_at_accept() {
    let (a, b) = mocks().await;
    let p = Proxy::start(&config(
        &a,
        &b,
        "max_connections: 2, overload_retry_after_s: 4, client_header_ms: 60000",
        &[],
        "",
    ))
    .await;
    let addr = p.proxy.trim_start_matches("http://").to_string();
    let metric = |m: &str, name: &str| -> i64 {
        m.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .map_or(0, |v| v.parse().unwrap())
    };
    let refused = "dualrouter_connections_refused_total{reason=\"max_connections\"}";
    let proxy = &p;
    let wait_open = |n: i64| async move {
        let mut open = -1;
        for _ in 0..500 {
            open = metric(&proxy.metrics().await, "dualrouter_connections_open");
            if open == n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(open, n);
    };
    // The start-up probe's kept-alive connection is gone; then two connections that have
    // not sent a header yet fill the cap.
    wait_open(0).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    wait_open(2).await;
    assert_eq!(metric(&p.metrics().await, refused), 0);

    // A third one is answered 503 + Retry-After in its endpoint's format, then closed.
    let body = serde_json::to_vec(&chat(&easy(1), false)).unwrap();
    let req = |path: &str| {
        let mut r = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(&body);
        r
    };
    let answer = raw_exchange(&addr, &req("/v1/chat/completions")).await;
    let (head, json) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 4"),
        "{head}"
    );
    let v: Value = serde_json::from_str(json).unwrap();
    assert_eq!(v["error"]["code"], "overloaded", "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("limits.max_connections"));
    let answer = raw_exchange(&addr, &req("/v1/messages")).await;
    let v: Value = serde_json::from_str(answer.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(v["error"]["type"], "overloaded_error", "{v}");
    // An SDK sees the same through its HTTP client.
    let r = ask(&p, "/v1/chat/completions", &chat(&easy(2), false), &[]).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.retry_after.as_deref(), Some("4"));
    assert_eq!(a.count() + b.count(), 0, "a refused request went upstream");

    assert_eq!(metric(&p.metrics().await, refused), 3);
    // Closing a held connection frees its place.
    held.clear();
    let mut served = false;
    for i in 0..200 {
        let r = ask(&p, "/v1/chat/completions", &chat(&easy(3 + i), false), &[]).await;
        if r.status == 200 {
            served = true;
            break;
        }
        assert_eq!(r.status, 503);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        served,
        "the proxy kept refusing after the held connections closed"
    );
}

#[tokio::test]
async fn slow_request_headers_are_cut_off() {
    let (a, b) = mocks().await;
    let p = Proxy::start(&config(&a, &b, "client_header_ms: 1000", &[], "")).await;
    let addr = p.proxy.trim_start_matches("http://").to_string();

    // A client dribbling its header a byte every 100 ms is closed although it never pauses
    // for long; a normal request beside it is served.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut closed = false;
    for _ in 0..300 {
        if slow.write_all(b"x").await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(100), slow.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(_)) => panic!("the proxy answered a header that never ended"),
            Err(_) => {}
        }
    }
    assert!(closed, "a header dribbled for 30 s was never cut off");
    let r = ask(&p, "/v1/chat/completions", &chat(&easy(1), false), &[]).await;
    assert_eq!(r.status, 200);

    // A kept-alive connection that idles is closed too; one that sends its next request in
    // time is served on the same connection.
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let req = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    for _ in 0..2 {
        conn.write_all(req).await.unwrap();
        let mut buf = vec![0u8; 1024];
        let n = conn.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    }
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(30), conn.read(&mut buf))
        .await
        .expect("an idle kept-alive connection is closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
}

#[tokio::test]
async fn the_mock_answers_by_header_in_every_format_and_counts_per_behaviour() {
    let m = Mock::start().await;
    let c = reqwest::Client::new();
    let r = c
        .post(format!("{}/chat/completions", m.base_url()))
        .header(dualrouter_testkit::BEHAVIOUR_HEADER, "error:503:2")
        .json(&concrete("echo", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "2");
    let r = c
        .post(format!("{}/messages", m.base_url()))
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "sse:3:5", "max_tokens": 5, "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let body = r.text().await.unwrap();
    assert!(body.starts_with("event: message_start\n"), "{body}");
    assert_eq!(body.matches("content_block_delta").count(), 2 * 3);
    for i in 0..3 {
        assert!(body.contains(&dualrouter_testkit::piece(i, 5)), "{body}");
    }
    assert!(body.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
    let r = c
        .post(format!("{}/responses", m.base_url()))
        .json(&json!({"model": "sse:2:7", "stream": true, "input": "hi"}))
        .send()
        .await
        .unwrap();
    let body = r.text().await.unwrap();
    assert_eq!(
        body.matches("event: response.output_text.delta").count(),
        2,
        "{body}"
    );
    assert!(body.contains("event: response.completed"), "{body}");
    let r = c
        .post(format!("{}/chat/completions", m.base_url()))
        .json(&concrete("no-such-behaviour", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let stats: Value = c
        .get(format!("http://{}/stats", m.addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["requests"], 4);
    assert_eq!(stats["by_behaviour"]["error:503:2"], 1);
    assert_eq!(stats["by_behaviour"]["sse:3:5"], 1);
    assert_eq!(stats["by_behaviour"]["no-such-behaviour"], 1);
}
