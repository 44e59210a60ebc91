//! The mock itself: forcing, listing, recording, timing behaviours, TLS, the binary.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{chat, client, messages, post, responses};
use dualrouter_testkit::Mock;
use futures::StreamExt;
use serde_json::json;

fn chat_body(model: &str, stream: bool) -> serde_json::Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn forced_behaviour_then_recovery_keeps_the_models_id() {
    let mock = Mock::start().await;
    mock.force(Some("error:503:1"));
    let a = chat(&mock, &chat_body("echo", false)).await;
    assert_eq!(
        (a.status, a.headers["retry-after"].to_str().unwrap()),
        (503, "1")
    );
    let a = messages(
        &mock,
        &json!({"model": "echo", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(a.status, 503);
    mock.force(Some("think"));
    let r = responses(&mock, &json!({"model": "my-model", "input": "x"}))
        .await
        .json();
    assert_eq!(r["model"], "my-model", "the request's own model id");
    assert_eq!(r["output"][0]["type"], "reasoning");
    mock.force(None);
    let v = chat(&mock, &chat_body("echo", false)).await.json();
    assert_eq!(v["model"], "echo");
    assert_eq!(mock.count(), 4);
}

#[tokio::test]
async fn listed_models_and_model_listing() {
    let mock = Mock::start().await;
    mock.list(&["gpt-x", "claude-y"]);
    let get = |path: &str| {
        let url = format!("{}{path}", mock.root_url());
        async move {
            client()
                .get(url)
                .header("authorization", "Bearer k")
                .send()
                .await
                .unwrap()
        }
    };
    let v: serde_json::Value = get("/v1/models").await.json().await.unwrap();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["gpt-x", "claude-y"]);
    assert_eq!(mock.list_count(), 1);
    assert_eq!(mock.list_headers().unwrap()["authorization"], "Bearer k");
    assert_eq!(get("/v1/models/gpt-x").await.status(), 200);
    assert_eq!(get("/v1/models/other").await.status(), 404);
    // A listed id behaves like echo, in every format, and keeps its name.
    let v = chat(&mock, &chat_body("gpt-x", false)).await.json();
    assert!(v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .starts_with("received "));
    assert_eq!(v["model"], "gpt-x");
    let r = responses(&mock, &json!({"model": "claude-y", "input": "x"}))
        .await
        .json();
    assert_eq!(r["model"], "claude-y");
    mock.force(Some("error:500"));
    assert_eq!(get("/v1/models").await.status(), 503);
}

#[tokio::test]
async fn every_request_is_recorded() {
    let mock = Mock::start().await;
    post(
        &mock,
        "/v1/responses?x=1",
        &json!({"model": "echo", "input": "x"}),
        &[("x-test", "yes")],
    )
    .await;
    let a = post(&mock, "/v1/unknown", &json!({}), &[]).await;
    assert_eq!(a.status, 404);
    let seen = mock.last();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/v1/responses");
    assert_eq!(seen.query.as_deref(), Some("x=1"));
    assert_eq!(seen.headers["x-test"], "yes");
    assert_eq!(seen.json.as_ref().unwrap()["input"], "x");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&seen.body).unwrap()["model"],
        "echo"
    );
    assert_eq!(mock.requests().len(), 1);
    let all = mock.all_requests();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].path, "/v1/unknown");
}

#[tokio::test]
async fn slow_waits_then_answers() {
    let mock = Mock::start().await;
    let t = Instant::now();
    let v = chat(&mock, &chat_body("slow:150", false)).await.json();
    assert!(t.elapsed() >= Duration::from_millis(150));
    assert_eq!(v["choices"][0]["message"]["content"], "slow answer");
    let t = Instant::now();
    let a = messages(
        &mock,
        &json!({"model": "slow:100", "max_tokens": 5, "stream": true,
                "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert!(t.elapsed() >= Duration::from_millis(100));
    assert!(a.text.contains("tok2 "));
}

/// Reads a stream until `want` events arrived or `wait` passed; returns them, then drops it.
async fn read_events(resp: reqwest::Response, wait: Duration) -> String {
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(chunk)) = tokio::time::timeout_at(deadline, body.next()).await {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    text
}

#[tokio::test]
async fn stall_and_forever_never_end_and_count_the_drop() {
    let mock = Mock::start().await;
    let send = |path: &str, body: serde_json::Value| {
        client()
            .post(format!("{}{path}", mock.root_url()))
            .header("anthropic-version", "2023-06-01")
            .json(&body)
            .send()
    };
    // Each format: the start, two pieces, then silence.
    let r = send("/v1/chat/completions", chat_body("stall:2", true))
        .await
        .unwrap();
    let text = read_events(r, Duration::from_millis(300)).await;
    assert_eq!(text.matches("chat.completion.chunk").count(), 2, "{text}");
    assert!(!text.contains("[DONE]"));
    let r = send(
        "/v1/messages",
        json!({"model": "stall:2", "max_tokens": 5, "stream": true, "messages": [{"role": "user", "content": "x"}]}),
    )
    .await
    .unwrap();
    let text = read_events(r, Duration::from_millis(300)).await;
    assert!(text.starts_with("event: message_start"), "{text}");
    assert_eq!(text.matches("text_delta").count(), 2, "{text}");
    assert!(!text.contains("message_stop"));
    let r = send(
        "/v1/responses",
        json!({"model": "stall:2", "stream": true, "input": "x"}),
    )
    .await
    .unwrap();
    let text = read_events(r, Duration::from_millis(300)).await;
    assert_eq!(
        text.matches("event: response.output_text.delta").count(),
        2,
        "{text}"
    );
    assert!(!text.contains("response.completed"));

    // forever: a piece every 50 ms, with growing sequence numbers.
    let r = send(
        "/v1/responses",
        json!({"model": "forever:50", "stream": true, "input": "x"}),
    )
    .await
    .unwrap();
    let text = read_events(r, Duration::from_millis(400)).await;
    let ev = common::sse(&text);
    assert!(ev.len() >= 6, "{text}");
    for (i, (_, d)) in ev.iter().enumerate() {
        assert_eq!(d["sequence_number"], i);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while mock.streams_dropped() < 4 {
        assert!(Instant::now() < deadline, "{}", mock.streams_dropped());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn embeddings() {
    let mock = Mock::start().await;
    let a = post(
        &mock,
        "/v1/embeddings",
        &json!({"model": "emb", "input": ["a", "b"]}),
        &[],
    )
    .await;
    let v = a.json();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][1]["embedding"].as_array().unwrap().len(), 8);
    assert_eq!(v["model"], "emb");
    assert_ne!(v["data"][0]["embedding"], v["data"][1]["embedding"]);
}

#[tokio::test]
async fn tls() {
    let (mock, ca) = Mock::start_tls().await;
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .build()
        .unwrap();
    let v: serde_json::Value = client
        .post(format!(
            "https://localhost:{}/v1/chat/completions",
            mock.addr.port()
        ))
        .json(&chat_body("echo", false))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(mock.count(), 1);
}

#[test]
fn the_binary_serves_the_mock() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dualrouter-mock"))
        .args(["--listen", "127.0.0.1:0", "--threads", "2", "--list", "a,b"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{line}"))
        .to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (v, forced, stats) = rt.block_on(async {
        let c = client();
        let v: serde_json::Value = c
            .get(format!("http://{addr}/v1/models"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        // Scripts force a behaviour over HTTP, and read the counts.
        c.put(format!("http://{addr}/force"))
            .body("error:503")
            .send()
            .await
            .unwrap();
        let forced = c
            .post(format!("http://{addr}/v1/chat/completions"))
            .json(&chat_body("echo", false))
            .send()
            .await
            .unwrap()
            .status();
        let stats: serde_json::Value = c
            .get(format!("http://{addr}/stats"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (v, forced, stats)
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(v["data"][1]["id"], "b");
    assert_eq!(forced, 503);
    assert_eq!(stats["by_behaviour"]["error:503"], 1);
}
