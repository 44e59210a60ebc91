//! `POST /v1/messages`: each behaviour, whole and streamed, and the API's own checks.

mod common;

use common::{messages, post, Answer};
use dualrouter_testkit::Mock;
use serde_json::{json, Value};

fn body(model: &str, stream: bool) -> Value {
    json!({"model": model, "max_tokens": 64, "stream": stream,
           "messages": [{"role": "user", "content": "hi"}]})
}

/// The blocks a stream builds (`content_block_start` + deltas), its stop reason and usage; checks
/// the event order the API documents.
struct Streamed {
    blocks: Vec<Value>,
    stop_reason: Value,
    start_usage: Value,
    usage: Value,
    names: Vec<String>,
}

fn streamed(a: &Answer) -> Streamed {
    assert_eq!(a.status, 200, "{}", a.text);
    let ev = a.events();
    let names: Vec<String> = ev.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(names[0], "message_start", "{}", a.text);
    assert_eq!(names.last().unwrap(), "message_stop");
    assert_eq!(names[names.len() - 2], "message_delta");
    assert!(names.contains(&"ping".to_string()));
    let mut s = Streamed {
        blocks: Vec::new(),
        stop_reason: Value::Null,
        start_usage: ev[0].1["message"]["usage"].clone(),
        usage: Value::Null,
        names: names.clone(),
    };
    let mut partial = Vec::<String>::new();
    for (name, d) in &ev {
        assert_eq!(
            d["type"],
            name.as_str(),
            "the data's type is the event name"
        );
        match name.as_str() {
            "content_block_start" => {
                assert_eq!(d["index"], s.blocks.len());
                s.blocks.push(d["content_block"].clone());
                partial.push(String::new());
            }
            "content_block_delta" => {
                let i = d["index"].as_u64().unwrap() as usize;
                let b = &mut s.blocks[i];
                let delta = &d["delta"];
                match delta["type"].as_str().unwrap() {
                    "text_delta" => {
                        b["text"] = json!(format!(
                            "{}{}",
                            b["text"].as_str().unwrap(),
                            delta["text"].as_str().unwrap()
                        ))
                    }
                    "thinking_delta" => {
                        b["thinking"] = json!(format!(
                            "{}{}",
                            b["thinking"].as_str().unwrap(),
                            delta["thinking"].as_str().unwrap()
                        ))
                    }
                    "signature_delta" => b["signature"] = delta["signature"].clone(),
                    "input_json_delta" => partial[i] += delta["partial_json"].as_str().unwrap(),
                    t => panic!("delta type {t}"),
                }
            }
            "content_block_stop" => {
                let i = d["index"].as_u64().unwrap() as usize;
                if s.blocks[i]["type"] == "tool_use" {
                    s.blocks[i]["input"] = serde_json::from_str(&partial[i]).unwrap();
                }
            }
            "message_delta" => {
                s.stop_reason = d["delta"]["stop_reason"].clone();
                s.usage = d["usage"].clone();
            }
            _ => {}
        }
    }
    s
}

#[tokio::test]
async fn echo_whole_and_streamed() {
    let mock = Mock::start().await;
    let b = body("echo", false);
    let a = messages(&mock, &b).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(a.headers.contains_key("request-id"));
    let v = a.json();
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert!(v["id"].as_str().unwrap().starts_with("msg_01"));
    assert_eq!(v["model"], "echo");
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": format!("received {} bytes", b.to_string().len())}])
    );
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["usage"]["input_tokens"], 11);
    assert_eq!(v["usage"]["output_tokens"], 7);
    assert_eq!(v["usage"]["cache_read_input_tokens"], 0);
    assert_eq!(v["usage"]["cache_creation_input_tokens"], 0);

    let s = streamed(&messages(&mock, &body("echo", true)).await);
    assert_eq!(
        s.blocks,
        vec![json!({"type": "text", "text": "tok0 tok1 tok2 "})]
    );
    assert_eq!(s.stop_reason, "end_turn");
    assert_eq!(s.usage["output_tokens"], 7);
    assert_eq!(s.start_usage["input_tokens"], 11);
    assert_eq!(
        &s.names[..3],
        ["message_start", "content_block_start", "ping"]
    );
    // The query `?beta=true` and the headers were recorded.
    let seen = mock.last();
    assert_eq!(seen.path, "/v1/messages");
    assert_eq!(seen.query.as_deref(), Some("beta=true"));
    assert_eq!(seen.headers["anthropic-beta"], "claude-code-20250219");
    assert_eq!(seen.json.unwrap()["stream"], true);
}

#[tokio::test]
async fn the_api_checks_come_first() {
    let mock = Mock::start().await;
    let a = post(&mock, "/v1/messages", &body("echo", false), &[]).await;
    assert_eq!(a.status, 400);
    assert_eq!(
        a.json(),
        json!({"type": "error", "error": {"type": "invalid_request_error",
               "message": "anthropic-version: header is required"}})
    );
    let mut b = body("echo", false);
    b.as_object_mut().unwrap().remove("max_tokens");
    let a = messages(&mock, &b).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.json()["error"]["message"], "max_tokens: Field required");
    assert_eq!(mock.count(), 2, "rejected requests are recorded too");
}

#[tokio::test]
async fn tools_whole_and_streamed() {
    let mock = Mock::start().await;
    let v = messages(&mock, &body("tools", false)).await.json();
    assert_eq!(
        v["content"],
        json!([
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_mock", "name": "get_weather", "input": {"city": "Paris"}}
        ])
    );
    assert_eq!(v["stop_reason"], "tool_use");
    let s = streamed(&messages(&mock, &body("tools", true)).await);
    assert_eq!(
        s.blocks,
        vec![
            json!({"type": "text", "text": "Let me check."}),
            json!({"type": "tool_use", "id": "toolu_mock", "name": "get_weather", "input": {"city": "Paris"}})
        ]
    );
    assert_eq!(s.stop_reason, "tool_use");
}

/// Claude Code's tools, as it sends them (a subset).
fn claude_code_tools() -> Value {
    json!([
        {"name": "Bash", "description": "Run a command",
         "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}},
        {"name": "Read", "description": "Read a file",
         "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}},
         "cache_control": {"type": "ephemeral"}}
    ])
}

#[tokio::test]
async fn agent_reads_with_claude_codes_read_tool_then_answers() {
    let mock = Mock::start().await;
    let mut b = json!({
        "model": "agent", "max_tokens": 32000, "stream": true,
        "thinking": {"type": "adaptive"}, "output_config": {"effort": "high"},
        "tools": claude_code_tools(),
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "<system-reminder>\nSee https://claude.com/x and /not/this\n</system-reminder>"},
                {"type": "text", "text": "Read the file /tmp/t/secret.txt and tell me what it says"}
            ]},
            {"role": "system", "content": "Primary working directory: /tmp/t"}
        ]
    });
    let s = streamed(&messages(&mock, &b).await);
    assert_eq!(s.stop_reason, "tool_use");
    assert_eq!(s.blocks.len(), 1);
    let call = s.blocks[0].clone();
    assert_eq!(call["name"], "Read");
    assert_eq!(call["input"], json!({"file_path": "/tmp/t/secret.txt"}));
    assert!(call["id"].as_str().unwrap().starts_with("toolu_01"));
    b["stream"] = json!(false);
    let v = messages(&mock, &b).await.json();
    assert_eq!(v["content"][0]["name"], "Read");
    assert_eq!(v["content"][0]["input"]["file_path"], "/tmp/t/secret.txt");
    assert_eq!(v["stop_reason"], "tool_use");

    // Phase 2: Read's result, with its line numbers and a reminder after it.
    let msgs = b["messages"].as_array_mut().unwrap();
    msgs.push(json!({"role": "assistant", "content": [call.clone()]}));
    msgs.push(
        json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": call["id"],
        "content": "1\tline one\n2\tline two\n3\t\n\n<system-reminder>careful</system-reminder>",
        "cache_control": {"type": "ephemeral"}}]}),
    );
    let v = messages(&mock, &b).await.json();
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": "The file says: line one\nline two"}])
    );
    assert_eq!(v["stop_reason"], "end_turn");
    b["messages"][3]["content"][0]["content"] =
        json!([{"type": "text", "text": "     1→only line"}]);
    b["stream"] = json!(true);
    let s = streamed(&messages(&mock, &b).await);
    assert_eq!(
        s.blocks,
        vec![json!({"type": "text", "text": "The file says: only line"})]
    );
    assert_eq!(s.stop_reason, "end_turn");
}

#[tokio::test]
async fn think_sends_a_signed_thinking_block_first() {
    let mock = Mock::start().await;
    let v = messages(&mock, &body("think", false)).await.json();
    assert_eq!(v["content"][0]["type"], "thinking");
    assert_eq!(
        v["content"][0]["thinking"],
        "Thinking it through: the user wants an answer."
    );
    assert!(!v["content"][0]["signature"].as_str().unwrap().is_empty());
    assert_eq!(
        v["content"][1],
        json!({"type": "text", "text": "The answer is 42."})
    );
    let s = streamed(&messages(&mock, &body("think", true)).await);
    assert_eq!(s.blocks[0]["type"], "thinking");
    assert_eq!(
        s.blocks[0]["thinking"],
        "Thinking it through: the user wants an answer."
    );
    assert!(!s.blocks[0]["signature"].as_str().unwrap().is_empty());
    assert_eq!(s.blocks[1]["text"], "The answer is 42.");
}

#[tokio::test]
async fn cached_reports_cache_reads_and_writes() {
    let mock = Mock::start().await;
    let v = messages(&mock, &body("cached", false)).await.json();
    assert_eq!(v["usage"]["input_tokens"], 100);
    assert_eq!(v["usage"]["cache_read_input_tokens"], 800);
    assert_eq!(v["usage"]["cache_creation_input_tokens"], 100);
    let s = streamed(&messages(&mock, &body("cached", true)).await);
    assert_eq!(s.start_usage["cache_read_input_tokens"], 800);
    assert_eq!(s.usage["cache_read_input_tokens"], 800);
}

#[tokio::test]
async fn errors_in_anthropics_format() {
    let mock = Mock::start().await;
    let a = messages(&mock, &body("error:529:3", false)).await;
    assert_eq!(a.status, 529);
    assert_eq!(a.headers["retry-after"], "3");
    assert_eq!(
        a.json(),
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "mock upstream error"}})
    );
    let a = messages(&mock, &body("error:429", true)).await;
    assert_eq!(a.json()["error"]["type"], "rate_limit_error");
    let a = messages(&mock, &body("nope", false)).await;
    assert_eq!(
        (a.status, a.json()["error"]["type"].clone()),
        (404, json!("not_found_error"))
    );

    let a = messages(&mock, &body("fail:1", true)).await;
    let ev = a.events();
    assert_eq!(ev.last().unwrap().0, "error");
    assert_eq!(ev.last().unwrap().1["error"]["type"], "overloaded_error");
    assert!(!a.text.contains("message_stop"));
}

#[tokio::test]
async fn count_tokens() {
    let mock = Mock::start().await;
    let a = post(
        &mock,
        "/v1/messages/count_tokens?beta=true",
        &json!({"model": "cached", "messages": [{"role": "user", "content": "hi"}]}),
        &[("anthropic-version", "2023-06-01")],
    )
    .await;
    assert_eq!((a.status, a.json()), (200, json!({"input_tokens": 1000})));
    assert_eq!(mock.count(), 0, "not a model request");
    assert_eq!(mock.all_requests()[0].path, "/v1/messages/count_tokens");
}
