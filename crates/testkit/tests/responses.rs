//! `POST /v1/responses`: each behaviour, whole and streamed, and stored responses.

mod common;

use common::{responses, Answer};
use dualrouter_testkit::Mock;
use serde_json::{json, Value};

fn body(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "input": "hi"})
}

/// Checks a Responses stream (names = `type`s, sequence numbers 0.., `response.created` first,
/// `response.completed` last, every item added and done, deltas adding up to the done texts) and
/// returns the completed `response` and the event names.
fn streamed(a: &Answer) -> (Value, Vec<String>) {
    assert_eq!(a.status, 200, "{}", a.text);
    let ev = a.events();
    let names: Vec<String> = ev.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(names[0], "response.created");
    assert_eq!(names[1], "response.in_progress");
    assert_eq!(names.last().unwrap(), "response.completed", "{}", a.text);
    let mut text = String::new();
    let mut args = String::new();
    let mut summary = String::new();
    let mut done_items = Vec::new();
    for (i, (name, d)) in ev.iter().enumerate() {
        assert_eq!(d["type"], name.as_str());
        assert_eq!(d["sequence_number"], i, "{d}");
        match name.as_str() {
            "response.output_text.delta" => text += d["delta"].as_str().unwrap(),
            "response.output_text.done" => {
                assert_eq!(d["text"], text.as_str());
                text.clear();
            }
            "response.function_call_arguments.delta" => args += d["delta"].as_str().unwrap(),
            "response.function_call_arguments.done" => {
                assert_eq!(d["arguments"], args.as_str());
                args.clear();
            }
            "response.reasoning_summary_text.delta" => summary += d["delta"].as_str().unwrap(),
            "response.reasoning_summary_text.done" => {
                assert_eq!(d["text"], summary.as_str());
                summary.clear();
            }
            "response.output_item.added" => {
                assert_eq!(d["output_index"], done_items.len());
            }
            "response.output_item.done" => done_items.push(d["item"].clone()),
            _ => {}
        }
    }
    let r = ev.last().unwrap().1["response"].clone();
    assert_eq!(ev[0].1["response"]["status"], "in_progress");
    assert_eq!(ev[0].1["response"]["id"], r["id"]);
    assert_eq!(r["status"], "completed");
    assert_eq!(r["output"], Value::Array(done_items));
    (r, names)
}

fn output_text(r: &Value) -> String {
    r["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "message")
        .flat_map(|i| i["content"].as_array().unwrap().clone())
        .map(|p| p["text"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn echo_whole_and_streamed() {
    let mock = Mock::start().await;
    let b = body("echo", false);
    let r = responses(&mock, &b).await.json();
    assert_eq!(r["object"], "response");
    assert!(r["id"].as_str().unwrap().starts_with("resp_"));
    assert!(r["created_at"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(r["status"], "completed");
    assert_eq!(r["model"], "echo");
    assert_eq!(
        output_text(&r),
        format!("received {} bytes", b.to_string().len())
    );
    let item = &r["output"][0];
    assert_eq!(item["type"], "message");
    assert_eq!(item["role"], "assistant");
    assert!(item["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(
        r["usage"],
        json!({"input_tokens": 11, "input_tokens_details": {"cached_tokens": 0},
               "output_tokens": 7, "output_tokens_details": {"reasoning_tokens": 0},
               "total_tokens": 18})
    );

    let (r, names) = streamed(&responses(&mock, &body("echo", true)).await);
    assert_eq!(output_text(&r), "tok0 tok1 tok2 ");
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    assert_eq!(r["usage"]["total_tokens"], 18);
}

#[tokio::test]
async fn tools_whole_and_streamed() {
    let mock = Mock::start().await;
    let want = json!({"id": "fc_mock", "type": "function_call", "status": "completed",
                      "arguments": "{\"city\": \"Paris\"}", "call_id": "call_mock", "name": "get_weather"});
    let r = responses(&mock, &body("tools", false)).await.json();
    assert_eq!(output_text(&r), "Let me check.");
    assert_eq!(r["output"][1], want);
    let (r, names) = streamed(&responses(&mock, &body("tools", true)).await);
    assert_eq!(output_text(&r), "Let me check.");
    assert_eq!(r["output"][1], want);
    assert!(names.contains(&"response.function_call_arguments.delta".to_string()));
}

/// Codex's tools, as it sends them (a subset): function tools, a namespace, a hosted tool.
fn codex_tools() -> Value {
    json!([
        {"type": "function", "name": "exec_command", "strict": false,
         "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}},
        {"type": "function", "name": "write_stdin", "strict": false,
         "parameters": {"type": "object", "properties": {"chars": {"type": "string"}}}},
        {"type": "namespace", "name": "multi_agent_v1", "tools": []},
        {"type": "web_search", "external_web_access": false}
    ])
}

#[tokio::test]
async fn agent_runs_codexs_exec_command_then_answers() {
    let mock = Mock::start().await;
    let mut b = json!({
        "model": "agent", "stream": true, "store": false, "tools": codex_tools(),
        "include": ["reasoning.encrypted_content"], "reasoning": {"summary": "auto"},
        "instructions": "You are Codex.",
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "rules in /etc/rules"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text",
             "text": "<environment_context>\n  <cwd>/tmp/c</cwd>\n</environment_context>"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text",
             "text": "Run cat on /tmp/c/secret.txt and tell me what it says"}]}
        ]
    });
    let (r, _) = streamed(&responses(&mock, &b).await);
    let call = r["output"][0].clone();
    assert_eq!(r["output"].as_array().unwrap().len(), 1);
    assert_eq!(call["type"], "function_call");
    assert_eq!(call["name"], "exec_command");
    assert_eq!(call["arguments"], "{\"cmd\":\"cat /tmp/c/secret.txt\"}");
    assert!(call["call_id"].as_str().unwrap().starts_with("call_"));
    assert!(call["id"].as_str().unwrap().starts_with("fc_"));
    b["stream"] = json!(false);
    let whole = responses(&mock, &b).await.json();
    assert_eq!(whole["output"][0]["name"], "exec_command");
    assert_eq!(whole["instructions"], "You are Codex.");

    // Phase 2: exec_command's output as Codex sends it back.
    let input = b["input"].as_array_mut().unwrap();
    input.push(call.clone());
    input.push(json!({"type": "function_call_output", "call_id": call["call_id"],
        "output": "Chunk ID: 1\nWall time: 0.0 seconds\nProcess exited with code 0\nOutput:\nthe secret\n"}));
    let r = responses(&mock, &b).await.json();
    assert_eq!(output_text(&r), "The file says: the secret");
    b["stream"] = json!(true);
    b["input"][4]["output"] = json!([{"type": "input_text", "text": "as parts"}]);
    let (r, _) = streamed(&responses(&mock, &b).await);
    assert_eq!(output_text(&r), "The file says: as parts");
}

#[tokio::test]
async fn agent_reads_custom_tool_results_and_sdk_function_tools() {
    let mock = Mock::start().await;
    // The Agents SDK: a message without `type`, one function tool.
    let b = json!({"model": "agent", "input": [{"role": "user", "content": "Read /data/f.txt"}],
                   "tools": [{"type": "function", "name": "read_file", "strict": true,
                              "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}]});
    let r = responses(&mock, &b).await.json();
    assert_eq!(r["output"][0]["name"], "read_file");
    assert_eq!(r["output"][0]["arguments"], "{\"path\":\"/data/f.txt\"}");
    let b = json!({"model": "agent", "input": [
        {"role": "user", "content": "Read /data/f.txt"},
        {"type": "custom_tool_call", "call_id": "call_1", "name": "x", "input": "y"},
        {"type": "custom_tool_call_output", "call_id": "call_1", "output": "custom out"}
    ]});
    let r = responses(&mock, &b).await.json();
    assert_eq!(output_text(&r), "The file says: custom out");
}

#[tokio::test]
async fn think_gives_a_reasoning_item_first() {
    let mock = Mock::start().await;
    let r = responses(&mock, &body("think", false)).await.json();
    let rs = &r["output"][0];
    assert_eq!(rs["type"], "reasoning");
    assert!(rs["id"].as_str().unwrap().starts_with("rs_"));
    assert_eq!(
        rs["summary"],
        json!([{"type": "summary_text", "text": "Thinking it through: the user wants an answer."}])
    );
    assert!(rs.get("encrypted_content").is_none());
    assert_eq!(output_text(&r), "The answer is 42.");
    assert_eq!(r["usage"]["output_tokens_details"]["reasoning_tokens"], 20);

    let mut b = body("think", true);
    b["include"] = json!(["reasoning.encrypted_content"]);
    let (r, names) = streamed(&responses(&mock, &b).await);
    assert!(r["output"][0]["encrypted_content"]
        .as_str()
        .unwrap()
        .starts_with("gAAAA"));
    assert_eq!(output_text(&r), "The answer is 42.");
    for n in [
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
    ] {
        assert!(names.contains(&n.to_string()), "{n}");
    }
}

#[tokio::test]
async fn cached_reports_cached_tokens() {
    let mock = Mock::start().await;
    let r = responses(&mock, &body("cached", false)).await.json();
    assert_eq!(r["usage"]["input_tokens"], 1000);
    assert_eq!(r["usage"]["input_tokens_details"]["cached_tokens"], 800);
    let (r, _) = streamed(&responses(&mock, &body("cached", true)).await);
    assert_eq!(r["usage"]["input_tokens_details"]["cached_tokens"], 800);
}

#[tokio::test]
async fn previous_response_id_continues_a_stored_response() {
    let mock = Mock::start().await;
    let b = json!({"model": "agent", "input": "Read /srv/a.txt",
                   "tools": [{"type": "function", "name": "read_file", "parameters": {}}]});
    let first = responses(&mock, &b).await.json();
    let call_id = first["output"][0]["call_id"].clone();
    let next = json!({"model": "agent", "previous_response_id": first["id"],
                      "input": [{"type": "function_call_output", "call_id": call_id, "output": "A"}]});
    let r = responses(&mock, &next).await.json();
    assert_eq!(output_text(&r), "The file says: A");
    assert_eq!(r["previous_response_id"], first["id"]);

    let a = responses(
        &mock,
        &json!({"model": "echo", "input": "x", "previous_response_id": "resp_nope"}),
    )
    .await;
    assert_eq!(a.status, 404);
    assert_eq!(a.json()["error"]["code"], "previous_response_not_found");
    // `store: false` is not kept.
    let r = responses(
        &mock,
        &json!({"model": "echo", "input": "x", "store": false}),
    )
    .await
    .json();
    let a = responses(
        &mock,
        &json!({"model": "echo", "input": "y", "previous_response_id": r["id"]}),
    )
    .await;
    assert_eq!(a.status, 404);
}

#[tokio::test]
async fn errors_and_failed_streams() {
    let mock = Mock::start().await;
    let a = responses(&mock, &body("error:500:2", true)).await;
    assert_eq!(a.status, 500);
    assert_eq!(a.headers["retry-after"], "2");
    assert_eq!(a.json()["error"]["type"], "server_error");
    let a = responses(&mock, &body("fail:2", true)).await;
    let ev = a.events();
    let (name, d) = ev.last().unwrap();
    assert_eq!(name, "response.failed");
    assert_eq!(d["response"]["status"], "failed");
    assert_eq!(d["response"]["error"]["message"], "mock upstream error");
    assert_eq!(
        ev.iter()
            .filter(|(n, _)| n == "response.output_text.delta")
            .count(),
        2
    );
}
