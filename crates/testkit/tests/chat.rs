//! `POST /v1/chat/completions`: each behaviour, whole and streamed.

mod common;

use common::{chat, Answer};
use dualrouter_testkit::Mock;
use serde_json::{json, Value};

fn body(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

/// Content, reasoning, tool calls `(id, name, arguments)`, finish reason and usage of a stream,
/// which must end with `data: [DONE]`.
struct Streamed {
    content: String,
    reasoning: String,
    calls: Vec<(String, String, String)>,
    finish: Value,
    usage: Value,
    chunks: usize,
}

fn streamed(a: &Answer) -> Streamed {
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(a.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let ev = a.events();
    assert_eq!(ev.last().unwrap().1, "[DONE]", "{}", a.text);
    let mut s = Streamed {
        content: String::new(),
        reasoning: String::new(),
        calls: Vec::new(),
        finish: Value::Null,
        usage: Value::Null,
        chunks: ev.len() - 1,
    };
    for (name, d) in &ev[..ev.len() - 1] {
        assert_eq!(name, "", "chat streams have no event names");
        assert_eq!(d["object"], "chat.completion.chunk", "{d}");
        if !d["usage"].is_null() {
            assert_eq!(d["choices"], json!([]));
            s.usage = d["usage"].clone();
            continue;
        }
        let c = &d["choices"][0];
        let delta = &c["delta"];
        s.content += delta["content"].as_str().unwrap_or("");
        s.reasoning += delta["reasoning_content"].as_str().unwrap_or("");
        for tc in delta["tool_calls"].as_array().into_iter().flatten() {
            let i = tc["index"].as_u64().unwrap() as usize;
            if s.calls.len() <= i {
                s.calls.push((
                    tc["id"].as_str().unwrap().to_string(),
                    tc["function"]["name"].as_str().unwrap().to_string(),
                    String::new(),
                ));
            }
            s.calls[i].2 += tc["function"]["arguments"].as_str().unwrap_or("");
        }
        if !c["finish_reason"].is_null() {
            s.finish = c["finish_reason"].clone();
        }
    }
    s
}

#[tokio::test]
async fn echo_whole_and_streamed() {
    let mock = Mock::start().await;
    let b = body("echo", false);
    let a = chat(&mock, &b).await;
    assert_eq!(a.status, 200);
    let v = a.json();
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["model"], "echo");
    let n = b.to_string().len();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        format!("received {n} bytes")
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 11);
    assert_eq!(v["usage"]["completion_tokens"], 7);
    assert_eq!(v["usage"]["total_tokens"], 18);
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 0);

    // Streamed: three content chunks, [DONE]; the usage chunk only when asked for.
    let s = streamed(&chat(&mock, &body("echo", true)).await);
    assert_eq!(s.content, "tok0 tok1 tok2 ");
    assert_eq!((s.chunks, s.usage.clone()), (3, Value::Null));
    let mut b = body("echo", true);
    b["stream_options"] = json!({"include_usage": true});
    let s = streamed(&chat(&mock, &b).await);
    assert_eq!(s.chunks, 4);
    assert_eq!(s.usage["completion_tokens"], 7);
    assert_eq!(mock.count(), 3);
}

#[tokio::test]
async fn stream_n_ms_sends_n_chunks_apart() {
    let mock = Mock::start().await;
    let mut b = body("stream:3:40", true);
    b["stream_options"] = json!({"include_usage": true});
    let t = std::time::Instant::now();
    let a = chat(&mock, &b).await;
    assert!(t.elapsed() >= std::time::Duration::from_millis(110));
    assert_eq!(
        a.text.matches("data: ").count(),
        5,
        "3 chunks + usage + DONE"
    );
    assert_eq!(streamed(&a).content, "tok0 tok1 tok2 ");
    // Without `stream`: the same text, whole.
    let v = chat(&mock, &body("stream:2:0", false)).await.json();
    assert_eq!(v["choices"][0]["message"]["content"], "tok0 tok1 ");
}

#[tokio::test]
async fn tools_whole_and_streamed() {
    let mock = Mock::start().await;
    let v = chat(&mock, &body("tools", false)).await.json();
    let m = &v["choices"][0]["message"];
    assert_eq!(m["content"], "Let me check.");
    assert_eq!(m["tool_calls"][0]["id"], "call_mock");
    assert_eq!(m["tool_calls"][0]["function"]["name"], "get_weather");
    let args: Value = serde_json::from_str(
        m["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(args, json!({"city": "Paris"}));
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");

    let s = streamed(&chat(&mock, &body("tools", true)).await);
    assert_eq!(s.content, "Let me check.");
    assert_eq!(s.calls.len(), 1);
    assert_eq!(s.calls[0].0, "call_mock");
    assert_eq!(s.calls[0].1, "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(&s.calls[0].2).unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(s.finish, "tool_calls");
}

fn tool(name: &str, params: Value) -> Value {
    json!({"type": "function", "function": {"name": name, "description": "", "parameters": params}})
}

#[tokio::test]
async fn agent_calls_an_offered_tool_then_answers_with_its_result() {
    let mock = Mock::start().await;
    let ask = "Run cat on /work/x/secret.txt and tell me what it says.";
    let mut b = json!({"model": "agent", "messages": [
        {"role": "system", "content": "You are a coding agent in /work/x"},
        {"role": "user", "content": [{"type": "text", "text": ask}]}
    ], "tools": [
        tool("write_stdin", json!({"type": "object", "properties": {"chars": {"type": "string"}}})),
        tool("exec_command", json!({"type": "object", "properties": {"cmd": {"type": "string"}}}))
    ]});
    // Phase 1: a tool call of `exec_command` with `cat P`.
    let v = chat(&mock, &b).await.json();
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "exec_command");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"cmd": "cat /work/x/secret.txt"}));
    assert!(call["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    b["stream"] = json!(true);
    let s = streamed(&chat(&mock, &b).await);
    assert_eq!(s.calls.len(), 1);
    assert_eq!(s.calls[0].1, "exec_command");
    assert_eq!(
        serde_json::from_str::<Value>(&s.calls[0].2).unwrap(),
        json!({"cmd": "cat /work/x/secret.txt"})
    );
    assert_eq!(s.finish, "tool_calls");

    // Phase 2: the conversation has the tool result (a string, or text parts).
    let id = call["id"].clone();
    let history = b["messages"].as_array_mut().unwrap();
    history.push(json!({"role": "assistant", "content": null, "tool_calls": [call]}));
    history.push(json!({"role": "tool", "tool_call_id": id, "content": "top secret\n"}));
    b["stream"] = json!(false);
    let v = chat(&mock, &b).await.json();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "The file says: top secret"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    b["messages"][3]["content"] = json!([{"type": "text", "text": "     1→top secret"}]);
    b["stream"] = json!(true);
    let s = streamed(&chat(&mock, &b).await);
    assert_eq!(s.content, "The file says: top secret");
    assert!(s.calls.is_empty());
    assert_eq!(s.finish, "stop");
}

#[tokio::test]
async fn agent_never_calls_a_tool_it_was_not_offered() {
    let mock = Mock::start().await;
    let b = json!({"model": "agent", "messages": [{"role": "user", "content": "read /etc/hostname"}],
                   "tools": [tool("lookup", json!({"type": "object"}))]});
    let v = chat(&mock, &b).await.json();
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "lookup");
    assert_eq!(
        call["function"]["arguments"],
        "{\"path\":\"/etc/hostname\"}"
    );

    let b =
        json!({"model": "agent", "messages": [{"role": "user", "content": "read /etc/hostname"}]});
    let v = chat(&mock, &b).await.json();
    assert!(v["choices"][0]["message"]["tool_calls"].is_null(), "{v}");
    assert!(v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .contains("no tool"));
}

#[tokio::test]
async fn think_reasons_first() {
    let mock = Mock::start().await;
    let v = chat(&mock, &body("think", false)).await.json();
    let m = &v["choices"][0]["message"];
    assert_eq!(
        m["reasoning_content"],
        "Thinking it through: the user wants an answer."
    );
    assert_eq!(m["content"], "The answer is 42.");
    assert_eq!(
        v["usage"]["completion_tokens_details"]["reasoning_tokens"],
        20
    );
    let a = chat(&mock, &body("think", true)).await;
    let s = streamed(&a);
    assert_eq!(
        s.reasoning,
        "Thinking it through: the user wants an answer."
    );
    assert_eq!(s.content, "The answer is 42.");
    let first_content = a.text.find("\"content\":\"The").unwrap();
    assert!(a.text.rfind("reasoning_content").unwrap() < first_content);
}

#[tokio::test]
async fn cached_reports_cache_reads() {
    let mock = Mock::start().await;
    let v = chat(&mock, &body("cached", false)).await.json();
    assert!(v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .starts_with("received "));
    assert_eq!(v["usage"]["prompt_tokens"], 1000);
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 800);
    let mut b = body("cached", true);
    b["stream_options"] = json!({"include_usage": true});
    let s = streamed(&chat(&mock, &b).await);
    assert_eq!(s.usage["prompt_tokens_details"]["cached_tokens"], 800);
}

#[tokio::test]
async fn errors_and_unknown_models() {
    let mock = Mock::start().await;
    let a = chat(&mock, &body("error:429:7", false)).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.headers["retry-after"], "7");
    assert_eq!(a.json()["error"]["message"], "mock upstream error");
    let a = chat(&mock, &body("error:503", true)).await;
    assert_eq!(a.status, 503);
    assert!(a.headers.get("retry-after").is_none());
    let a = chat(&mock, &body("gpt-nope", false)).await;
    assert_eq!(a.status, 404);
    assert_eq!(a.json()["error"]["code"], "model_not_found");
}

#[tokio::test]
async fn fail_ends_the_stream_with_an_error() {
    let mock = Mock::start().await;
    let a = chat(&mock, &body("fail:2", true)).await;
    let ev = a.events();
    assert_eq!(ev.len(), 3, "{}", a.text);
    assert_eq!(ev[1].1["choices"][0]["delta"]["content"], "tok1 ");
    assert_eq!(ev[2].1["error"]["message"], "mock upstream error");
    assert!(!a.text.contains("[DONE]"));
}
