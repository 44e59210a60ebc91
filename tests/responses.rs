//! The Responses API and the side endpoints through the real proxy: the official SDK's
//! `responses.create` (plain, streamed, continued with `previous_response_id`), retrieve and
//! delete against every upstream kind; stored responses scoped to the key that made them;
//! chat and Messages clients served by a Responses-only upstream; errors in the Responses
//! format; `count_tokens`, embeddings, model lookups; cached tokens priced on their own.
//! Upstreams are `dualrouter-testkit`'s mock, speaking each format.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Proxy;
use dualrouter_testkit::{agents, Mock};
use serde_json::{json, Value};

/// One provider of `kind` in front of the mock (`extra`: more provider lines), with client
/// keys `key-a` and `key-b`, and models `m-echo` (echo), `m-tools`, `m-cached`, `m-think`.
async fn proxy_for(mock: &Mock, kind: &str, extra: &str) -> Proxy {
    let yaml = format!(
        r#"listen: 127.0.0.1:0
admin: {{ listen: 127.0.0.1:0 }}
auth: {{ keys_env: TEST_KEYS }}
providers:
  - name: up
    kind: {kind}
    {extra}
    base_url: {}
    models:
      - {{ id: m-echo, upstream_id: echo, cost_per_mtok: {{ input: 2, output: 8, cache_read: 0.5 }} }}
      - {{ id: m-tools, upstream_id: tools }}
      - {{ id: m-cached, upstream_id: cached, cost_per_mtok: {{ input: 2, output: 8, cache_read: 0.5, cache_write: 2.5 }} }}
      - {{ id: m-think, upstream_id: think, reasoning: true }}
"#,
        mock.base_url()
    );
    Proxy::start_with_env(&yaml, &[("TEST_KEYS", "key-a,key-b")]).await
}

async fn post(
    p: &Proxy,
    path: &str,
    key: &str,
    body: &Value,
) -> (u16, reqwest::header::HeaderMap, String) {
    let r = reqwest::Client::new()
        .post(p.url(path))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap())
}

async fn get(p: &Proxy, path: &str, key: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .get(p.url(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn events(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

async fn decision(p: &Proxy, id: &str) -> Value {
    for _ in 0..100 {
        let r = reqwest::get(format!("{}/api/decisions/{id}", p.admin))
            .await
            .unwrap();
        if r.status() == 200 {
            return r.json().await.unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("decision {id} never logged");
}

#[tokio::test]
async fn the_openai_sdk_responses_api_on_every_upstream_kind() {
    for (kind, extra) in [
        ("openai", ""),
        ("anthropic", ""),
        ("openai", "responses: native"),
    ] {
        let mock = Mock::start().await;
        let p = proxy_for(&mock, kind, extra).await;
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = agents::python(dir.path());
        cmd.arg(common::repo_root().join("tests/sdk/responses_sdk.py"))
            .arg(format!("{}/v1", p.proxy))
            .arg("m-echo")
            .env("OPENAI_API_KEY", "key-a");
        let out = cmd.output().await.unwrap();
        let what = format!("{kind} {extra}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{what}: {stderr}\n{}", p.log());
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let first = &v["first"];
        assert!(
            first["text"].as_str().unwrap().starts_with("received "),
            "{what}: {v}"
        );
        assert_eq!(first["status"], "completed", "{what}");
        assert_eq!(first["instructions"], "be brief", "{what}");
        assert!(
            first["usage"]["input_tokens"].as_u64().unwrap() > 0,
            "{what}: {v}"
        );
        assert_eq!(v["streamed"]["text"], "tok0 tok1 tok2 ", "{what}: {v}");
        assert_eq!(
            v["streamed"]["completed_text"], "tok0 tok1 tok2 ",
            "{what}: {v}"
        );
        let types = v["streamed"]["types"].as_array().unwrap();
        assert_eq!(types[0], "response.created", "{what}");
        assert_eq!(types.last().unwrap(), "response.completed", "{what}");
        for t in [
            "response.output_item.added",
            "response.output_text.delta",
            "response.output_item.done",
        ] {
            assert!(types.iter().any(|x| x == t), "{what}: {t} missing");
        }
        if extra.is_empty() {
            assert_eq!(v["second"]["previous"], first["id"], "{what}");
        }
        assert_eq!(v["retrieved"]["id"], first["id"], "{what}");
        assert_eq!(v["retrieved"]["text"], first["text"], "{what}");
        assert_eq!(v["after_delete"], "not_found", "{what}");
        assert_eq!(
            v["unknown_previous"]["code"], "response_not_found",
            "{what}: {v}"
        );
        // The continued request carried the first turn (its input and its answer) upstream.
        let reqs = mock.requests();
        let continued = reqs
            .iter()
            .map(|r| r.json.clone().unwrap().to_string())
            .find(|b| b.contains("and again"))
            .unwrap();
        assert!(continued.contains("hello there"), "{what}: {continued}");
        assert!(
            continued.contains(first["text"].as_str().unwrap()),
            "{what}: {continued}"
        );
        assert!(
            !continued.contains("previous_response_id"),
            "{what}: {continued}"
        );
        // Instructions are not carried over (the Responses API's rule).
        assert!(!continued.contains("be brief"), "{what}: {continued}");
    }
}

#[tokio::test]
async fn stored_responses_belong_to_the_key_that_made_them() {
    let mock = Mock::start().await;
    let p = proxy_for(&mock, "openai", "").await;
    let (s, _, body) = post(
        &p,
        "/v1/responses",
        "key-a",
        &json!({"model": "m-echo", "input": "mine"}),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(id.starts_with("resp_"), "{id}");
    assert_eq!(
        get(&p, &format!("/v1/responses/{id}"), "key-a").await.0,
        200
    );
    let (s, body) = get(&p, &format!("/v1/responses/{id}"), "key-b").await;
    assert_eq!(s, 404, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    let (s, _, body) = post(
        &p,
        "/v1/responses",
        "key-b",
        &json!({"model": "m-echo", "input": "yours?", "previous_response_id": id}),
    )
    .await;
    assert_eq!(s, 404, "{body}");
    let (s, body) = get(&p, &format!("/v1/responses/{id}/input_items"), "key-a").await;
    assert_eq!(s, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"][0]["content"][0]["text"], "mine");
    // DELETE by another key changes nothing.
    let del = |key: &'static str| {
        reqwest::Client::new()
            .delete(p.url(&format!("/v1/responses/{id}")))
            .bearer_auth(key)
            .send()
    };
    assert_eq!(del("key-b").await.unwrap().status(), 404);
    let r = del("key-a").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["deleted"], true);
    // `store: false` keeps nothing.
    let (_, _, body) = post(
        &p,
        "/v1/responses",
        "key-a",
        &json!({"model": "m-echo", "input": "x", "store": false}),
    )
    .await;
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        get(&p, &format!("/v1/responses/{id}"), "key-a").await.0,
        404
    );
    // A key is needed at all.
    let r = reqwest::get(p.url(&format!("/v1/responses/{id}")))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn malformed_responses_requests_are_clear_errors() {
    let mock = Mock::start().await;
    let p = proxy_for(&mock, "openai", "").await;
    let cases = [
        (json!({"model": "m-echo"}), "input"),
        (json!({"model": "m-echo", "input": 5}), "input"),
        (json!({"input": "x"}), "model"),
        (
            json!({"model": "m-echo", "input": [{"type": "function_call", "name": "f"}]}),
            "input[0].call_id",
        ),
        (
            json!({"model": "m-echo", "input": [{"type": "function_call_output", "call_id": "c"}]}),
            "input[0].output",
        ),
        (
            json!({"model": "m-echo", "input": [{"role": "robot", "content": "x"}]}),
            "input[0].role",
        ),
        (
            json!({"model": "m-echo", "input": [{"type": "message", "role": "user", "content": 7}]}),
            "input[0].content",
        ),
        (
            json!({"model": "m-echo", "input": [{"type": "message", "role": "user", "content": [{"type": "input_image"}]}]}),
            "input[0].content[0]",
        ),
        (
            json!({"model": "m-echo", "input": [{"type": "reasoning", "summary": "x"}], "reasoning": {"effort": "enormous"}}),
            "reasoning.effort",
        ),
        (
            json!({"model": "m-echo", "input": "x", "tools": [{"type": "function"}]}),
            "tools[0].name",
        ),
        (
            json!({"model": "m-echo", "input": "x", "tool_choice": "sometimes"}),
            "tool_choice",
        ),
        (
            json!({"model": "m-echo", "input": "x", "text": {"format": {"type": "yaml"}}}),
            "text.format.type",
        ),
    ];
    for (body, param) in cases {
        let (s, _, text) = post(&p, "/v1/responses", "key-a", &body).await;
        assert_eq!(s, 400, "{body}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["error"]["param"], param, "{body}: {text}");
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
    // Not JSON at all.
    let r = reqwest::Client::new()
        .post(p.url("/v1/responses"))
        .bearer_auth("key-a")
        .body("{\"input\": [")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.json::<Value>().await.unwrap()["error"]["message"].is_string());
    // What a chat upstream cannot do is refused naming the field (background mode).
    let (s, _, text) = post(
        &p,
        "/v1/responses",
        "key-a",
        &json!({"model": "m-echo", "input": "x", "background": true}),
    )
    .await;
    assert_eq!(s, 400, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["error"]["param"],
        "background"
    );
    // A body over the cap is a 413 in the Responses format, before it is read whole; a
    // multi-MiB input is translated and served.
    let big = "x".repeat(40 * 1024 * 1024);
    let (s, _, text) = post(
        &p,
        "/v1/responses",
        "key-a",
        &json!({"model": "m-echo", "input": big}),
    )
    .await;
    assert_eq!(s, 413, "{}", &text[..text.len().min(300)]);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["code"], "request_too_large");
    let five = "y".repeat(5 * 1024 * 1024);
    let (s, _, text) = post(
        &p,
        "/v1/responses",
        "key-a",
        &json!({"model": "m-echo", "input": five}),
    )
    .await;
    assert_eq!(s, 200, "{}", &text[..text.len().min(300)]);
    let n: usize = mock.last().body.len();
    assert!(n > 5 * 1024 * 1024, "{n}");
    // An unknown path under /v1/responses answers in the same format.
    let (s, text) = get(&p, "/v1/responses/x/y/z", "key-a").await;
    assert_eq!(s, 404, "{text}");
    assert!(serde_json::from_str::<Value>(&text).unwrap()["error"].is_object());
    // The proxy is still up.
    assert_eq!(reqwest::get(p.url("/healthz")).await.unwrap().status(), 200);
}

#[tokio::test]
async fn chat_and_messages_clients_on_a_responses_only_upstream() {
    let mock = Mock::start().await;
    let p = proxy_for(&mock, "openai", "responses: only").await;
    for stream in [false, true] {
        // Chat completions, with a tool call.
        let (s, _, text) = post(
            &p,
            "/v1/chat/completions",
            "key-a",
            &json!({"model": "m-tools", "stream": stream, "stream_options": {"include_usage": true},
                    "messages": [{"role": "user", "content": "weather in Paris?"}],
                    "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]}),
        )
        .await;
        assert_eq!(s, 200, "{text}");
        assert_eq!(mock.last().path, "/v1/responses");
        let up = mock.last().json.unwrap();
        assert_eq!(up["tools"][0]["name"], "get_weather", "{up}");
        assert_eq!(up["store"], false);
        if stream {
            let ev = events(&text);
            let call = ev
                .iter()
                .find(|e| {
                    e["choices"][0]["delta"]["tool_calls"][0]["function"]["name"] == "get_weather"
                })
                .unwrap_or_else(|| panic!("{text}"));
            assert!(call["choices"][0]["delta"]["tool_calls"][0]["id"].is_string());
            let finish = ev
                .iter()
                .find_map(|e| e["choices"][0]["finish_reason"].as_str());
            assert_eq!(finish, Some("tool_calls"), "{text}");
            assert!(
                ev.iter()
                    .any(|e| e["usage"]["prompt_tokens"].as_u64().is_some()),
                "{text}"
            );
            assert!(text.ends_with("data: [DONE]\n\n"));
        } else {
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["object"], "chat.completion");
            assert_eq!(
                v["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
                "get_weather"
            );
            assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        }
        // Anthropic Messages.
        let (s, _, text) = post(
            &p,
            "/v1/messages",
            "key-a",
            &json!({"model": "m-echo", "max_tokens": 50, "stream": stream, "system": "be brief",
                    "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
        assert_eq!(s, 200, "{text}");
        assert_eq!(mock.last().json.unwrap()["instructions"], "be brief");
        if stream {
            let ev = events(&text);
            assert_eq!(ev[0]["type"], "message_start");
            let streamed: String = ev
                .iter()
                .filter_map(|e| e["delta"]["text"].as_str())
                .collect();
            assert_eq!(streamed, "tok0 tok1 tok2 ");
            assert_eq!(ev.last().unwrap()["type"], "message_stop");
        } else {
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["type"], "message");
            assert!(v["content"][0]["text"]
                .as_str()
                .unwrap()
                .starts_with("received "));
        }
    }
    // Chat stop sequences cannot be expressed for a Responses upstream: refused, naming them.
    let (s, _, text) = post(
        &p,
        "/v1/chat/completions",
        "key-a",
        &json!({"model": "m-echo", "stop": ["END"], "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(s, 400, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["error"]["param"],
        "stop"
    );
}

#[tokio::test]
async fn reasoning_crosses_formats_both_ways() {
    // An Anthropic upstream's signed thinking reaches a Responses client as a reasoning item,
    // and goes back to Anthropic with its signature on the next turn.
    let mock = Mock::start().await;
    let p = proxy_for(&mock, "anthropic", "").await;
    let (s, _, text) = post(
        &p,
        "/v1/responses",
        "key-a",
        &json!({"model": "m-think", "input": "think first", "reasoning": {"effort": "high"},
                "include": ["reasoning.encrypted_content"]}),
    )
    .await;
    assert_eq!(s, 200, "{text}");
    let up = mock.last().json.unwrap();
    assert_eq!(up["thinking"]["type"], "enabled", "{up}");
    assert!(up["thinking"]["budget_tokens"].as_u64().unwrap() >= 1024);
    let v: Value = serde_json::from_str(&text).unwrap();
    let output = v["output"].as_array().unwrap();
    assert_eq!(output[0]["type"], "reasoning", "{v}");
    assert!(!output[0]["summary"][0]["text"].as_str().unwrap().is_empty());
    let sealed = output[0]["encrypted_content"].as_str().unwrap();
    assert!(sealed.starts_with("dr1:as:"), "{sealed}");
    // The client sends the conversation back (store: false style).
    let mut input = vec![json!({"type": "message", "role": "user", "content": "think first"})];
    input.extend(output.iter().cloned());
    input.push(json!({"type": "message", "role": "user", "content": "and now?"}));
    let (s, _, text) = post(
        &p,
        "/v1/responses",
        "key-a",
        &json!({"model": "m-think", "input": input, "store": false, "reasoning": {"effort": "high"}}),
    )
    .await;
    assert_eq!(s, 200, "{text}");
    let up = mock.last().json.unwrap();
    let thinking = &up["messages"][1]["content"][0];
    assert_eq!(thinking["type"], "thinking", "{up}");
    assert_eq!(thinking["signature"], sealed.trim_start_matches("dr1:as:"));

    // A chat upstream's reasoning reaches an Anthropic client as thinking, with the
    // estimated prompt size in message_start and the real one in message_delta.
    let chat = Mock::start().await;
    let p = proxy_for(&chat, "openai", "").await;
    let (s, _, text) = post(
        &p,
        "/v1/messages",
        "key-a",
        &json!({"model": "m-think", "max_tokens": 100, "stream": true,
                "thinking": {"type": "adaptive"}, "output_config": {"effort": "low"},
                "messages": [{"role": "user", "content": "think about this for a while please"}]}),
    )
    .await;
    assert_eq!(s, 200, "{text}");
    assert_eq!(chat.last().json.unwrap()["reasoning_effort"], "low");
    let ev = events(&text);
    assert!(
        ev[0]["message"]["usage"]["input_tokens"].as_u64().unwrap() > 0,
        "{text}"
    );
    let start = ev
        .iter()
        .find(|e| e["type"] == "content_block_start")
        .unwrap();
    assert_eq!(start["content_block"]["type"], "thinking", "{text}");
    let delta = ev.iter().find(|e| e["type"] == "message_delta").unwrap();
    assert!(delta["usage"]["input_tokens"].is_u64(), "{text}");
}

#[tokio::test]
async fn cached_tokens_are_counted_and_priced_on_their_own() {
    for kind in ["openai", "anthropic"] {
        let mock = Mock::start().await;
        let p = proxy_for(&mock, kind, "").await;
        let (s, h, text) = post(
            &p,
            "/v1/chat/completions",
            "key-a",
            &json!({"model": "m-cached", "max_tokens": 20, "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
        assert_eq!(s, 200, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        let u = &v["usage"];
        assert_eq!(
            u["prompt_tokens_details"]["cached_tokens"], 800,
            "{kind}: {v}"
        );
        let d = decision(&p, h["x-dualrouter-decision-id"].to_str().unwrap()).await;
        assert_eq!(d["cache_read_tokens"], 800, "{kind}: {d}");
        let input = d["input_tokens"].as_u64().unwrap();
        let write = d["cache_write_tokens"].as_u64().unwrap();
        let out = d["output_tokens"].as_u64().unwrap();
        let uncached = input - 800 - write;
        let want =
            (uncached as f64 * 2.0 + 800.0 * 0.5 + write as f64 * 2.5 + out as f64 * 8.0) / 1e6;
        assert!(
            (d["cost_usd"].as_f64().unwrap() - want).abs() < 1e-12,
            "{kind}: {d}"
        );
        // Cheaper than the same tokens all at the input price.
        assert!(d["cost_usd"].as_f64().unwrap() < (input as f64 * 2.0 + out as f64 * 8.0) / 1e6);
    }
}

#[tokio::test]
async fn count_tokens_embeddings_and_model_lookup() {
    let an = Mock::start().await;
    let oa = Mock::start().await;
    let yaml = format!(
        r#"listen: 127.0.0.1:0
admin: {{ listen: 127.0.0.1:0 }}
providers:
  - name: an
    kind: anthropic
    base_url: {}
    models:
      - {{ id: claude-x, upstream_id: echo }}
  - name: oa
    kind: openai
    base_url: {}
    models:
      - {{ id: gpt-x, upstream_id: echo }}
      - {{ id: vendor/embed, upstream_id: echo }}
"#,
        an.base_url(),
        oa.base_url()
    );
    let p = Proxy::start(&yaml).await;
    let body = |model: &str| json!({"model": model, "system": "be brief", "messages": [{"role": "user", "content": "count these words please"}]});
    // An Anthropic model: the provider counts (with the client's betas).
    let r = reqwest::Client::new()
        .post(p.url("/v1/messages/count_tokens?beta=true"))
        .header("anthropic-beta", "token-counting-2024-11-01")
        .json(&body("claude-x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-dualrouter-token-count").is_none());
    let v: Value = r.json().await.unwrap();
    assert!(v["input_tokens"].as_u64().unwrap() > 0, "{v}");
    let seen = an.all_requests().pop().unwrap();
    assert_eq!(seen.path, "/v1/messages/count_tokens");
    assert_eq!(seen.json.unwrap()["model"], "echo");
    assert_eq!(seen.headers["anthropic-beta"], "token-counting-2024-11-01");
    // Another model: the documented estimate, said to be one.
    let r = reqwest::Client::new()
        .post(p.url("/v1/messages/count_tokens"))
        .json(&body("gpt-x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-dualrouter-token-count"], "estimate");
    let v: Value = r.json().await.unwrap();
    assert!(v["input_tokens"].as_u64().unwrap() >= 7, "{v}");
    // Routed: the count of the model routing picks.
    let r = reqwest::Client::new()
        .post(p.url("/v1/messages/count_tokens"))
        .json(&body("auto"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-dualrouter-model").is_some());
    // Malformed: Anthropic's error format.
    let r = reqwest::Client::new()
        .post(p.url("/v1/messages/count_tokens"))
        .json(&json!({"messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["type"], "error");

    // Embeddings: passed to the OpenAI provider with its model id.
    let r = reqwest::Client::new()
        .post(p.url("/v1/embeddings"))
        .json(&json!({"model": "vendor/embed", "input": ["a", "b"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2, "{v}");
    let seen = oa.all_requests().pop().unwrap();
    assert_eq!(seen.path, "/v1/embeddings");
    assert_eq!(seen.json.unwrap()["model"], "echo");
    for (model, status) in [("auto", 400), ("claude-x", 400), ("nope", 404)] {
        let r = reqwest::Client::new()
            .post(p.url("/v1/embeddings"))
            .json(&json!({"model": model, "input": "a"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{model}");
        assert!(r.json::<Value>().await.unwrap()["error"]["message"].is_string());
    }

    // Model lookup: ids with a slash, aliases, Anthropic's shape for Anthropic's clients.
    let (s, text) = get(&p, "/v1/models/vendor%2Fembed", "").await;
    assert_eq!(s, 200, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["owned_by"],
        "oa"
    );
    assert_eq!(get(&p, "/v1/models/vendor/embed", "").await.0, 200);
    assert_eq!(get(&p, "/v1/models/auto", "").await.0, 200);
    let (s, text) = get(&p, "/v1/models/nope", "").await;
    assert_eq!(s, 404);
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["error"]["code"],
        "model_not_found"
    );
    let r = reqwest::Client::new()
        .get(p.url("/v1/models/claude-x"))
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "model");
    assert_eq!(v["display_name"], "claude-x");
    let r = reqwest::Client::new()
        .get(p.url("/v1/models"))
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["has_more"], false);
    assert_eq!(v["first_id"], "auto");
}

#[tokio::test]
async fn a_request_only_some_models_can_serve_goes_to_those() {
    // One model cannot be held to a JSON schema: a routed request asking for one goes to the
    // other; if none can, a 400 names the field.
    let mock = Mock::start().await;
    let yaml = format!(
        r#"listen: 127.0.0.1:0
admin: {{ listen: 127.0.0.1:0 }}
providers:
  - name: up
    kind: openai
    base_url: {}
    models:
      - {{ id: loose, upstream_id: echo, structured_output: false, cost_per_mtok: {{ input: 0.1, output: 0.1 }} }}
      - {{ id: strict, upstream_id: echo, cost_per_mtok: {{ input: 9, output: 9 }} }}
  - name: an
    kind: anthropic
    base_url: {}
    models:
      - {{ id: claude-one, upstream_id: echo, cost_per_mtok: {{ input: 0.1, output: 0.1 }} }}
"#,
        mock.base_url(),
        mock.base_url()
    );
    let p = Proxy::start(&yaml).await;
    let schema = json!({"type": "json_schema", "name": "a", "schema": {"type": "object"}});
    for _ in 0..3 {
        let (s, h, text) = post(
            &p,
            "/v1/responses",
            "",
            &json!({"model": "auto", "input": "give me json", "text": {"format": schema}}),
        )
        .await;
        assert_eq!(s, 200, "{text}");
        let model = h["x-dualrouter-model"].to_str().unwrap();
        assert_ne!(model, "loose");
        let d = decision(&p, h["x-dualrouter-decision-id"].to_str().unwrap()).await;
        let excluded = d["details"]["excluded"].to_string();
        assert!(
            excluded.contains("\"loose\"") && excluded.contains("unsupported"),
            "{d}"
        );
    }
    // n > 1: only the chat-completions models can answer more than once.
    let (s, h, text) = post(
        &p,
        "/v1/chat/completions",
        "",
        &json!({"model": "auto", "n": 2, "messages": [{"role": "user", "content": "two answers"}]}),
    )
    .await;
    assert_eq!(s, 200, "{text}");
    assert_ne!(h["x-dualrouter-model"], "claude-one");
    // Concrete and impossible: a 400 naming the field.
    let (s, _, text) = post(
        &p,
        "/v1/responses",
        "",
        &json!({"model": "loose", "input": "x", "text": {"format": schema}}),
    )
    .await;
    assert_eq!(s, 400, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["error"]["param"],
        "text.format"
    );
    let (s, _, text) = post(
        &p,
        "/v1/chat/completions",
        "",
        &json!({"model": "claude-one", "n": 3, "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(s, 400, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["error"]["param"],
        "n"
    );
}
