//! Both wire formats through the real proxy: OpenAI and Anthropic clients (raw HTTP here; the
//! official SDKs in `sdk.rs`) against OpenAI-compatible and Anthropic mock upstreams, for plain
//! answers, streams, tool use and upstream errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Proxy;
use dualrouter_testkit::Mock;
use serde_json::{json, Value};

use common::BOTH_FORMATS_UPSTREAM_KEY as UPSTREAM_KEY;

async fn setup() -> (Mock, Mock, Proxy) {
    common::both_formats().await
}

async fn messages(p: &Proxy, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(p.url("/v1/messages"))
        .header("x-api-key", "client-key")
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn messages_at(p: &Proxy, path: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(p.url(path))
        .header("x-api-key", "client-key")
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn chat(p: &Proxy, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(p.url("/v1/chat/completions"))
        .bearer_auth("client-key")
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn anthropic_body(model: &str, stream: bool) -> Value {
    json!({
        "model": model, "max_tokens": 64, "stream": stream, "system": "be brief",
        "messages": [{"role": "user", "content": "weather in Paris?"}],
        "tools": [{"name": "get_weather", "description": "weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    })
}

fn openai_body(model: &str, stream: bool) -> Value {
    json!({
        "model": model, "stream": stream,
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "weather in Paris?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    })
}

/// Splits an SSE body into (event name, data) pairs; data is JSON, or a string such as `[DONE]`.
fn sse_events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut name = String::new();
            let mut data = Value::Null;
            for line in e.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = n.to_string();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(d).unwrap_or_else(|_| Value::String(d.into()));
                }
            }
            (name, data)
        })
        .collect()
}

/// Text and tool calls of an Anthropic event stream, checking its shape on the way.
fn anthropic_stream(text: &str) -> (String, Vec<(String, Value)>, Value) {
    let ev = sse_events(text);
    assert_eq!(ev.first().unwrap().0, "message_start", "{text}");
    assert_eq!(ev.last().unwrap().0, "message_stop", "{text}");
    let mut out = String::new();
    let mut tools: Vec<(String, String)> = Vec::new();
    let mut open: Option<u64> = None;
    let mut delta = Value::Null;
    for (name, d) in &ev {
        assert_eq!(
            d["type"],
            name.as_str(),
            "event name and type agree: {text}"
        );
        match name.as_str() {
            "content_block_start" => {
                assert!(open.is_none(), "blocks do not overlap: {text}");
                open = d["index"].as_u64();
                if d["content_block"]["type"] == "tool_use" {
                    tools.push((
                        d["content_block"]["name"].as_str().unwrap().into(),
                        String::new(),
                    ));
                }
            }
            "content_block_delta" => {
                assert_eq!(d["index"].as_u64(), open, "{text}");
                match d["delta"]["type"].as_str().unwrap() {
                    "text_delta" => out.push_str(d["delta"]["text"].as_str().unwrap()),
                    "input_json_delta" => tools
                        .last_mut()
                        .unwrap()
                        .1
                        .push_str(d["delta"]["partial_json"].as_str().unwrap()),
                    other => panic!("unexpected delta {other}"),
                }
            }
            "content_block_stop" => {
                assert_eq!(d["index"].as_u64(), open, "{text}");
                open = None;
            }
            "message_delta" => delta = d.clone(),
            _ => {}
        }
    }
    let tools = tools
        .into_iter()
        .map(|(n, args)| (n, serde_json::from_str::<Value>(&args).unwrap()))
        .collect();
    (out, tools, delta)
}

/// Text, tool calls, finish reason and usage of an OpenAI chunk stream (must end `[DONE]`).
fn openai_stream(text: &str) -> (String, Vec<(String, Value)>, String, Value) {
    let ev = sse_events(text);
    assert_eq!(ev.last().unwrap().1, "[DONE]", "{text}");
    let mut out = String::new();
    let mut tools: Vec<(String, String)> = Vec::new();
    let mut finish = String::new();
    let mut usage = Value::Null;
    for (_, d) in &ev[..ev.len() - 1] {
        assert_eq!(d["object"], "chat.completion.chunk", "{text}");
        if !d["usage"].is_null() {
            usage = d["usage"].clone();
        }
        let Some(c) = d["choices"].get(0) else {
            continue;
        };
        if let Some(t) = c["delta"]["content"].as_str() {
            out.push_str(t);
        }
        for call in c["delta"]["tool_calls"].as_array().into_iter().flatten() {
            let i = call["index"].as_u64().unwrap() as usize;
            if i == tools.len() {
                tools.push((
                    call["function"]["name"].as_str().unwrap().into(),
                    String::new(),
                ));
            }
            if let Some(a) = call["function"]["arguments"].as_str() {
                tools[i].1.push_str(a);
            }
        }
        if let Some(f) = c["finish_reason"].as_str() {
            finish = f.into();
        }
    }
    let tools = tools
        .into_iter()
        .map(|(n, args)| (n, serde_json::from_str::<Value>(&args).unwrap()))
        .collect();
    (out, tools, finish, usage)
}

#[tokio::test]
async fn anthropic_client_to_anthropic_upstream_passes_through() {
    let (oa, an, p) = setup().await;
    let resp = messages(&p, anthropic_body("an-echo", false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-dualrouter-model"], "an-echo");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "message");
    assert!(
        v["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("received "),
        "{v}"
    );
    // What reached the upstream: Anthropic's headers with the provider's key, never the client's.
    let seen = an.last();
    assert_eq!(seen.headers["x-api-key"], UPSTREAM_KEY);
    assert_eq!(seen.headers["anthropic-version"], "2023-06-01");
    assert!(seen.headers.get("authorization").is_none());
    let sent: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(sent["model"], "echo");
    assert_eq!(sent["system"], "be brief");
    assert_eq!(oa.count(), 0);

    // Streaming: byte for byte what the upstream sent.
    let resp = messages(&p, anthropic_body("an-tools", true)).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(
        text.contains("event: ping\n"),
        "passed through untouched: {text}"
    );
    let (out, tools, delta) = anthropic_stream(&text);
    assert_eq!(out, "Let me check.");
    assert_eq!(
        tools,
        vec![("get_weather".to_string(), json!({"city": "Paris"}))]
    );
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");

    // An upstream error keeps its status and body.
    let resp = messages(&p, anthropic_body("an-error", false)).await;
    assert_eq!(resp.status(), 429);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error");
}

#[tokio::test]
async fn anthropic_client_to_openai_upstream_is_translated() {
    let (oa, an, p) = setup().await;
    let resp = messages(&p, anthropic_body("oa-echo", false)).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert!(
        v["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("received "),
        "{v}"
    );
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(
        v["usage"],
        json!({"input_tokens": 11, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 7})
    );
    let sent: Value = serde_json::from_slice(&oa.last().body).unwrap();
    assert_eq!(sent["model"], "echo");
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "be brief"})
    );
    assert_eq!(sent["max_tokens"], 64);
    assert_eq!(sent["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(oa.last().headers.get("x-api-key"), None);
    assert_eq!(an.count(), 0);

    // Plain tool use.
    let v: Value = messages(&p, anthropic_body("oa-tools", false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["stop_reason"], "tool_use");
    assert_eq!(
        v["content"][0],
        json!({"type": "text", "text": "Let me check."})
    );
    assert_eq!(v["content"][1]["type"], "tool_use");
    assert_eq!(v["content"][1]["id"], "call_mock");
    assert_eq!(v["content"][1]["input"], json!({"city": "Paris"}));

    // Streams, text and tool use.
    let resp = messages(&p, anthropic_body("oa-echo", true)).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let (out, tools, delta) = anthropic_stream(&resp.text().await.unwrap());
    assert_eq!(out, "tok0 tok1 tok2 ");
    assert!(tools.is_empty());
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], 7);
    let sent: Value = serde_json::from_slice(&oa.last().body).unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true);

    let text = messages(&p, anthropic_body("oa-tools", true))
        .await
        .text()
        .await
        .unwrap();
    let (out, tools, delta) = anthropic_stream(&text);
    assert_eq!(out, "Let me check.");
    assert_eq!(
        tools,
        vec![("get_weather".to_string(), json!({"city": "Paris"}))]
    );
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");

    // An OpenAI error becomes Anthropic's, status kept.
    let resp = messages(&p, anthropic_body("oa-error", false)).await;
    assert_eq!(resp.status(), 429);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert_eq!(v["error"]["message"], "mock upstream error");
    let resp = messages(&p, anthropic_body("oa-error", true)).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.json::<Value>().await.unwrap()["type"], "error");
}

#[tokio::test]
async fn openai_client_to_anthropic_upstream_is_translated() {
    let (oa, an, p) = setup().await;
    let resp = chat(&p, openai_body("an-echo", false)).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert!(
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .starts_with("received "),
        "{v}"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 11);
    assert_eq!(v["usage"]["completion_tokens"], 7);
    let seen = an.last();
    assert_eq!(seen.headers["x-api-key"], UPSTREAM_KEY);
    let sent: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(sent["model"], "echo");
    assert_eq!(sent["system"][0]["text"], "be brief");
    assert_eq!(sent["max_tokens"], 4096, "the documented default");
    assert_eq!(sent["tools"][0]["input_schema"]["type"], "object");
    assert_eq!(oa.count(), 0);

    let v: Value = chat(&p, openai_body("an-tools", false))
        .await
        .json()
        .await
        .unwrap();
    let m = &v["choices"][0]["message"];
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(m["content"], "Let me check.");
    assert_eq!(m["tool_calls"][0]["id"], "toolu_mock");
    assert_eq!(m["tool_calls"][0]["function"]["name"], "get_weather");
    let args: Value = serde_json::from_str(
        m["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(args, json!({"city": "Paris"}));

    let mut body = openai_body("an-echo", true);
    body["stream_options"] = json!({"include_usage": true});
    let text = chat(&p, body).await.text().await.unwrap();
    let (out, tools, finish, usage) = openai_stream(&text);
    assert_eq!(out, "tok0 tok1 tok2 ");
    assert!(tools.is_empty());
    assert_eq!(finish, "stop");
    assert_eq!(usage["completion_tokens"], 7);
    assert_eq!(usage["prompt_tokens"], 11);

    let text = chat(&p, openai_body("an-tools", true))
        .await
        .text()
        .await
        .unwrap();
    let (out, tools, finish, usage) = openai_stream(&text);
    assert_eq!(out, "Let me check.");
    assert_eq!(
        tools,
        vec![("get_weather".to_string(), json!({"city": "Paris"}))]
    );
    assert_eq!(finish, "tool_calls");
    assert!(usage.is_null(), "no usage chunk unless asked");

    let resp = chat(&p, openai_body("an-error", false)).await;
    assert_eq!(resp.status(), 429);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert_eq!(v["error"]["message"], "mock upstream error");
}

#[tokio::test]
async fn openai_client_to_openai_upstream_tools_and_errors_pass_through() {
    let (oa, _an, p) = setup().await;
    let v: Value = chat(&p, openai_body("oa-tools", false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["choices"][0]["message"]["tool_calls"][0]["id"],
        "call_mock"
    );
    let text = chat(&p, openai_body("oa-tools", true))
        .await
        .text()
        .await
        .unwrap();
    let (out, tools, finish, _) = openai_stream(&text);
    assert_eq!(out, "Let me check.");
    assert_eq!(
        tools,
        vec![("get_weather".to_string(), json!({"city": "Paris"}))]
    );
    assert_eq!(finish, "tool_calls");
    let sent: Value = serde_json::from_slice(&oa.last().body).unwrap();
    assert_eq!(sent["tools"], openai_body("x", false)["tools"], "untouched");
    let resp = chat(&p, openai_body("oa-error", false)).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["message"],
        "mock upstream error"
    );
}

#[tokio::test]
async fn messages_endpoint_errors_in_anthropic_format() {
    let (oa, an, p) = setup().await;
    let client = reqwest::Client::new();
    // Bad client key.
    let resp = client
        .post(p.url("/v1/messages"))
        .header("x-api-key", "wrong")
        .json(&anthropic_body("an-echo", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "authentication_error");
    // max_tokens is required, as Anthropic requires it.
    let mut body = anthropic_body("an-echo", false);
    body.as_object_mut().unwrap().remove("max_tokens");
    let resp = messages(&p, body).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_tokens"),
        "{v}"
    );
    // Unknown model.
    let resp = messages(&p, anthropic_body("nope", false)).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["type"],
        "not_found_error"
    );
    // A hosted tool the other format cannot run is left out for it, never a failed request.
    let mut body = anthropic_body("oa-echo", false);
    body["tools"] = json!([{"type": "web_search_20250305", "name": "web_search"}]);
    let before = oa.count();
    let resp = messages(&p, body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(oa.count(), before + 1);
    let sent: Value = serde_json::from_slice(&oa.last().body).unwrap();
    assert!(sent.get("tools").is_none(), "{sent}");
    // Something the other format cannot express: 400 before anything goes upstream.
    let mut body = anthropic_body("oa-echo", false);
    body["messages"][0]["content"] =
        json!([{"type": "search_result", "source": "s", "title": "t", "content": []}]);
    let resp = messages(&p, body).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(oa.count(), before + 1);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["type"],
        "invalid_request_error"
    );
    // Other paths of Anthropic's API are not served, and say so in its format.
    let resp = messages_at(&p, "/v1/messages/batches", anthropic_body("an-echo", false)).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["type"],
        "not_found_error"
    );
    assert_eq!(an.count(), 0);
}

/// A multi-MiB prompt from an Anthropic client reaches an OpenAI upstream whole, translated.
#[tokio::test]
async fn multi_mib_prompt_is_translated_whole() {
    let (oa, _an, p) = setup().await;
    let prompt = "x".repeat(3 * 1024 * 1024);
    let mut body = anthropic_body("oa-echo", false);
    body["messages"][0]["content"] = json!([{"type": "text", "text": prompt}]);
    let resp = messages(&p, body).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    let sent: Value = serde_json::from_slice(&oa.last().body).unwrap();
    assert_eq!(
        sent["messages"][1]["content"].as_str().unwrap().len(),
        prompt.len()
    );
    assert_eq!(
        v["content"][0]["text"],
        format!("received {} bytes", oa.last().body.len())
    );
}

/// The decision record of a finished request, once the log has written it.
async fn decision(p: &Proxy, id: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = reqwest::get(format!("{}/api/decisions/{id}", p.admin))
            .await
            .unwrap();
        if r.status() == 200 {
            return r.json().await.unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "no decision {id}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Usage reaches the decision log for every client × upstream pair, streamed or not.
#[tokio::test]
async fn usage_is_captured_for_every_pair() {
    let (_oa, _an, p) = setup().await;
    for stream in [false, true] {
        for (client_format, model) in [
            ("anthropic", "an-echo"),
            ("anthropic", "oa-echo"),
            ("openai", "an-echo"),
            ("openai", "oa-echo"),
        ] {
            let resp = if client_format == "anthropic" {
                messages(&p, anthropic_body(model, stream)).await
            } else {
                chat(&p, openai_body(model, stream)).await
            };
            assert_eq!(resp.status(), 200);
            let id = resp.headers()["x-dualrouter-decision-id"]
                .to_str()
                .unwrap()
                .to_string();
            resp.bytes().await.unwrap();
            let d = decision(&p, &id).await;
            let what = format!("{client_format} client, {model}, stream {stream}: {d}");
            assert_eq!(d["status"], "ok", "{what}");
            assert_eq!(d["input_tokens"], 11, "{what}");
            assert_eq!(d["output_tokens"], 7, "{what}");
            assert_eq!(d["requested_model"], model, "{what}");
        }
    }
}

/// An upstream that stalls after the first byte: the translated stream ends with an Anthropic
/// `error` event (the status was already sent).
#[tokio::test]
async fn stalled_stream_ends_with_an_anthropic_error_event() {
    let oa = Mock::start().await;
    let yaml = format!(
        r#"listen: 127.0.0.1:0
admin: {{ listen: 127.0.0.1:0 }}
limits: {{ idle_ms: 500, first_byte_ms: 2000, total_ms: 5000 }}
providers:
  - name: oa
    kind: openai
    base_url: {}
    models:
      - {{ id: stall, upstream_id: "stall:2" }}
"#,
        oa.base_url()
    );
    let p = Proxy::start(&yaml).await;
    let resp = messages(&p, anthropic_body("stall", true)).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let ev = sse_events(&text);
    assert_eq!(ev[0].0, "message_start", "{text}");
    assert_eq!(ev[2].1["delta"]["text"], "tok0 ", "{text}");
    let (name, data) = ev.last().unwrap();
    assert_eq!(name, "error", "{text}");
    assert_eq!(data["type"], "error", "{text}");
    assert!(
        data["error"]["message"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{text}"
    );
    assert!(!text.contains("message_stop"), "{text}");
}
