//! The fault behaviours (`reset`, `reset:N`, `malformed`, `huge:SIZE`, non-streamed `stall` and
//! `forever`), the byte-exact `sse:N:S[:MS]` streams, and the control endpoints (`/stats`,
//! `PUT /force`, `/healthz`, the `x-mock-behaviour` header), over real connections.

mod common;

use std::time::{Duration, Instant};

use common::{chat, client, messages, post, responses};
use dualrouter_testkit::{openai_sse_bytes, piece, Mock, BEHAVIOUR_HEADER};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A request body of `format` ("chat", "messages", "responses") for `model`.
fn body(format: &str, model: &str, stream: bool) -> Value {
    match format {
        "chat" => {
            json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
        }
        "messages" => json!({"model": model, "max_tokens": 5, "stream": stream,
                             "messages": [{"role": "user", "content": "hi"}]}),
        _ => json!({"model": model, "stream": stream, "input": "hi"}),
    }
}

fn path(format: &str) -> &'static str {
    match format {
        "chat" => "/v1/chat/completions",
        "messages" => "/v1/messages",
        _ => "/v1/responses",
    }
}

const FORMATS: [&str; 3] = ["chat", "messages", "responses"];

/// Sends one request on a raw connection and reads until the connection ends; returns what
/// arrived and how it ended (`Ok` for an orderly close, the read error otherwise).
async fn raw(mock: &Mock, format: &str, body: &Value) -> (String, std::io::Result<()>) {
    let mut conn = tokio::net::TcpStream::connect(mock.addr).await.unwrap();
    let body = body.to_string();
    let req = format!(
        "POST {} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         anthropic-version: 2023-06-01\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        path(format),
        body.len()
    );
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf)).await {
            Err(_) => panic!("the connection neither ended nor reset: {got:?}"),
            Ok(Ok(0)) => break Ok(()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => break Err(e),
        }
    };
    (String::from_utf8_lossy(&got).into_owned(), end)
}

#[tokio::test]
async fn reset_resets_the_connection_before_a_byte() {
    let mock = Mock::start().await;
    for format in FORMATS {
        for stream in [false, true] {
            let (got, end) = raw(&mock, format, &body(format, "reset", stream)).await;
            assert_eq!(got, "", "{format}");
            let e = end.expect_err("a reset, not a close");
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset,
                "{format}: {e}"
            );
        }
    }
    assert_eq!(mock.behaviour_count("reset"), 6);
    // The mock goes on serving.
    assert_eq!(chat(&mock, &body("chat", "echo", false)).await.status, 200);
}

#[tokio::test]
async fn reset_after_n_pieces_in_every_format() {
    let mock = Mock::start().await;
    let piece_marks = [
        ("chat", "chat.completion.chunk"),
        ("messages", "event: content_block_delta"),
        ("responses", "event: response.output_text.delta"),
    ];
    for (format, mark) in piece_marks {
        let (got, end) = raw(&mock, format, &body(format, "reset:3", true)).await;
        assert!(got.starts_with("HTTP/1.1 200"), "{got}");
        assert_eq!(got.matches(mark).count(), 3, "{format}: {got}");
        assert!(got.contains("tok2 "), "{got}");
        let e = end.expect_err("a reset, not a close");
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{format}");
        // Not streamed: a JSON answer cut after the pieces, then the reset.
        let (got, end) = raw(&mock, format, &body(format, "reset:2", false)).await;
        assert!(got.contains("application/json"), "{got}");
        assert!(got.contains("tok0 tok1 "), "{got}");
        assert!(!got.contains("tok2"), "{got}");
        assert_eq!(
            end.expect_err("reset").kind(),
            std::io::ErrorKind::ConnectionReset
        );
    }
}

#[tokio::test]
async fn malformed_is_broken_sse_in_every_format() {
    let mock = Mock::start().await;
    for format in FORMATS {
        let a = post(
            &mock,
            path(format),
            &body(format, "malformed", true),
            &[("anthropic-version", "2023-06-01")],
        )
        .await;
        assert_eq!(a.status, 200);
        assert!(a.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        assert!(a.text.contains("data: not json either\n\n"), "{}", a.text);
        assert!(a.text.contains("this line is not an SSE field"));
        for end in ["[DONE]", "message_stop", "response.completed"] {
            assert!(!a.text.contains(end), "{}", a.text);
        }
    }
}

#[tokio::test]
async fn huge_answers_whole_with_a_length_or_streamed() {
    let mock = Mock::start().await;
    let size = 100 * 1024 + 5;
    let model = "huge:102405";
    let a = chat(&mock, &body("chat", model, false)).await;
    assert_eq!(a.status, 200);
    let declared: usize = a.headers["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(declared, a.text.len());
    let v = a.json();
    assert_eq!(
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .len(),
        size
    );
    let a = messages(&mock, &body("messages", "huge:512kib", false)).await;
    assert_eq!(
        a.json()["content"][0]["text"].as_str().unwrap().len(),
        512 * 1024
    );
    // Streamed: pieces of 16 KiB that add up to the size, then the end.
    let a = chat(&mock, &body("chat", model, true)).await;
    let text: String = a
        .events()
        .iter()
        .filter_map(|(_, d)| {
            d["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(text.len(), size);
    assert!(a.text.ends_with("data: [DONE]\n\n"));
    let a = responses(&mock, &body("responses", model, true)).await;
    let deltas: usize = a
        .events()
        .iter()
        .filter(|(n, _)| n == "response.output_text.delta")
        .map(|(_, d)| d["delta"].as_str().unwrap().len())
        .sum();
    assert_eq!(deltas, size);
}

#[tokio::test]
async fn sse_streams_are_byte_exact_and_timed() {
    let mock = Mock::start().await;
    for include_usage in [false, true] {
        let mut b = body("chat", "sse:5:40", true);
        b["stream_options"] = json!({"include_usage": include_usage});
        let a = chat(&mock, &b).await;
        assert_eq!(
            a.text.as_bytes(),
            openai_sse_bytes("sse:5:40", 5, 40, include_usage).as_slice()
        );
    }
    // Every format carries the same pieces, in order.
    let pieces: String = (0..4).map(|i| piece(i, 9)).collect();
    let a = messages(&mock, &body("messages", "sse:4:9", true)).await;
    let text: String = a
        .events()
        .iter()
        .filter_map(|(_, d)| d["delta"]["text"].as_str().map(str::to_string))
        .collect();
    assert_eq!(text, pieces);
    assert_eq!(a.events().last().unwrap().0, "message_stop");
    let r = responses(&mock, &body("responses", "sse:4:9", false))
        .await
        .json();
    assert_eq!(r["output"][0]["content"][0]["text"], pieces.as_str());
    assert_eq!(r["usage"]["output_tokens"], 4);
    // MS apart, and a whole answer waits as long.
    for stream in [true, false] {
        let t = Instant::now();
        let a = chat(&mock, &body("chat", "sse:4:9:60", stream)).await;
        assert_eq!(a.status, 200);
        assert!(
            t.elapsed() >= Duration::from_millis(240),
            "{:?}",
            t.elapsed()
        );
        assert!(a.text.contains(&piece(3, 9)));
    }
}

#[tokio::test]
async fn stall_and_forever_without_stream_cut_a_json_answer() {
    let mock = Mock::start().await;
    for format in FORMATS {
        for (model, wait, want) in [
            ("stall:2", 300, "tok0 tok1 "),
            ("forever:20", 300, "tok1003 "),
        ] {
            let resp = client()
                .post(format!("{}{}", mock.root_url(), path(format)))
                .header("anthropic-version", "2023-06-01")
                .json(&body(format, model, false))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            assert_eq!(resp.headers()["content-type"], "application/json");
            let mut s = resp.bytes_stream();
            let mut text = String::new();
            let deadline = tokio::time::Instant::now() + Duration::from_millis(wait);
            use futures::StreamExt;
            while let Ok(Some(c)) = tokio::time::timeout_at(deadline, s.next()).await {
                text.push_str(&String::from_utf8_lossy(&c.unwrap()));
            }
            assert!(text.starts_with('{'), "{format} {model}: {text}");
            assert!(text.contains(want), "{format} {model}: {text}");
            assert!(serde_json::from_str::<Value>(&text).is_err(), "never whole");
        }
    }
}

#[tokio::test]
async fn stats_force_health_and_the_header_over_http() {
    let mock = Mock::start().await;
    let c = client();
    let root = mock.root_url();
    let h: Value = c
        .get(format!("{root}/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["status"], "ok");
    // The header picks the behaviour; the model id stays in the answer.
    let a = post(
        &mock,
        "/v1/chat/completions",
        &body("chat", "my-model", false),
        &[(BEHAVIOUR_HEADER, "error:429:4")],
    )
    .await;
    assert_eq!(
        (a.status, a.headers["retry-after"].to_str().unwrap()),
        (429, "4")
    );
    // PUT /force wins over the header and the model id; an empty body undoes it.
    let put = |b: &'static str| c.put(format!("{root}/force")).body(b).send();
    assert_eq!(put("no-such-thing").await.unwrap().status(), 400);
    assert_eq!(put("error:503").await.unwrap().status(), 200);
    let a = post(
        &mock,
        "/v1/chat/completions",
        &body("chat", "echo", false),
        &[(BEHAVIOUR_HEADER, "tools")],
    )
    .await;
    assert_eq!(a.status, 503);
    let a = messages(&mock, &body("messages", "echo", false)).await;
    assert_eq!(a.status, 503);
    assert_eq!(put("").await.unwrap().status(), 200);
    assert_eq!(chat(&mock, &body("chat", "echo", false)).await.status, 200);
    let stats: Value = c
        .get(format!("{root}/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats, mock.stats());
    assert_eq!(stats["requests"], 4);
    assert_eq!(
        stats["by_behaviour"],
        json!({"echo": 1, "error:429:4": 1, "error:503": 2})
    );
    assert_eq!(mock.behaviour_count("error:503"), 2);
}

#[tokio::test]
async fn recording_can_be_turned_off() {
    let mock = Mock::start().await;
    chat(&mock, &body("chat", "echo", false)).await;
    mock.record_requests(false);
    chat(&mock, &body("chat", "echo", false)).await;
    responses(&mock, &body("responses", "echo", false)).await;
    assert_eq!(mock.count(), 3);
    assert_eq!(mock.requests().len(), 1);
    assert_eq!(mock.all_requests().len(), 1);
    assert_eq!(mock.behaviour_count("echo"), 3);
}
