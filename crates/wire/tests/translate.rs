//! Translation between every pair of formats: requests, whole answers and streams.
//!
//! Streams are checked by a round trip: an upstream stream in format A is translated for a
//! client of format B, the client's bytes are decoded again with B's decoder, and what the
//! client ends up holding (text, reasoning, tool calls, stop reason, usage) must be what the
//! upstream said.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use dualrouter_wire::ir::{CallKind, Item, Origin, Role, Stop, Thinking, Tool, ToolChoice};
use dualrouter_wire::{
    decode_request, decode_response, encode_request, encode_response, prepare_native,
    usage_of_answer, Caps, Collector, Decoder, Echo, Format, Obj, StreamTranslator, Target,
    ToolNames,
};
use serde_json::{json, Value};

const ALL: [Format; 3] = [Format::Chat, Format::Messages, Format::Responses];

fn obj(v: Value) -> Obj {
    v.as_object().unwrap().clone()
}

fn target(format: Format) -> Target<'static> {
    Target {
        format,
        model: "up-model",
        caps: Caps {
            reasoning: true,
            structured_output: true,
        },
    }
}

/// Splits SSE bytes into the `data` of each event.
fn events(bytes: &[u8]) -> Vec<Vec<u8>> {
    let text = std::str::from_utf8(bytes).unwrap();
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            e.lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .collect::<Vec<_>>()
                .join("\n")
                .into_bytes()
        })
        .collect()
}

fn sse_of(format: Format, payloads: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in payloads {
        if format != Format::Chat {
            out.extend_from_slice(format!("event: {}\n", p["type"].as_str().unwrap()).as_bytes());
        }
        out.extend_from_slice(format!("data: {p}\n\n").as_bytes());
    }
    if format == Format::Chat {
        out.extend_from_slice(b"data: [DONE]\n\n");
    }
    out
}

/// One answer (reasoning, text, a tool call) as each format streams it.
fn upstream_stream(format: Format) -> Vec<u8> {
    match format {
        Format::Chat => sse_of(
            format,
            &[
                json!({"id": "c1", "model": "m", "choices": [{"index": 0, "delta": {"role": "assistant", "reasoning_content": "Let me "}}]}),
                json!({"id": "c1", "model": "m", "choices": [{"index": 0, "delta": {"reasoning_content": "think."}}]}),
                json!({"id": "c1", "model": "m", "choices": [{"index": 0, "delta": {"content": "Hello "}}]}),
                json!({"id": "c1", "model": "m", "choices": [{"index": 0, "delta": {"content": "world"}}]}),
                json!({"id": "c1", "model": "m", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}}]}),
                json!({"id": "c1", "model": "m", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}}]}),
                json!({"id": "c1", "model": "m", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}}]}),
                json!({"id": "c1", "model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
                json!({"id": "c1", "model": "m", "choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": 9, "prompt_tokens_details": {"cached_tokens": 20}, "completion_tokens_details": {"reasoning_tokens": 3}}}),
            ],
        ),
        Format::Messages => sse_of(
            format,
            &[
                json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "m", "content": [], "usage": {"input_tokens": 10, "cache_read_input_tokens": 20, "output_tokens": 1}}}),
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Let me "}}),
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "think."}}),
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "SIG-A"}}),
                json!({"type": "content_block_stop", "index": 0}),
                json!({"type": "ping"}),
                json!({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}),
                json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Hello "}}),
                json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "world"}}),
                json!({"type": "content_block_stop", "index": 1}),
                json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {}}}),
                json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{\"city\":"}}),
                json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "\"Paris\"}"}}),
                json!({"type": "content_block_stop", "index": 2}),
                json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 9}}),
                json!({"type": "message_stop"}),
            ],
        ),
        Format::Responses => sse_of(
            format,
            &[
                json!({"type": "response.created", "sequence_number": 0, "response": {"id": "resp_u", "object": "response", "status": "in_progress", "model": "m", "output": []}}),
                json!({"type": "response.output_item.added", "output_index": 0, "item": {"id": "rs_1", "type": "reasoning", "summary": []}}),
                json!({"type": "response.reasoning_summary_text.delta", "item_id": "rs_1", "output_index": 0, "summary_index": 0, "delta": "Let me "}),
                json!({"type": "response.reasoning_summary_text.delta", "item_id": "rs_1", "output_index": 0, "summary_index": 0, "delta": "think."}),
                json!({"type": "response.output_item.done", "output_index": 0, "item": {"id": "rs_1", "type": "reasoning", "summary": [{"type": "summary_text", "text": "Let me think."}], "encrypted_content": "ENC-O"}}),
                json!({"type": "response.output_item.added", "output_index": 1, "item": {"id": "msg_1", "type": "message", "role": "assistant", "status": "in_progress", "content": []}}),
                json!({"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 1, "content_index": 0, "delta": "Hello "}),
                json!({"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 1, "content_index": 0, "delta": "world"}),
                json!({"type": "response.output_item.done", "output_index": 1, "item": {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed", "content": [{"type": "output_text", "text": "Hello world", "annotations": []}]}}),
                json!({"type": "response.output_item.added", "output_index": 2, "item": {"id": "fc_1", "type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "", "status": "in_progress"}}),
                json!({"type": "response.function_call_arguments.delta", "item_id": "fc_1", "output_index": 2, "delta": "{\"city\":"}),
                json!({"type": "response.function_call_arguments.delta", "item_id": "fc_1", "output_index": 2, "delta": "\"Paris\"}"}),
                json!({"type": "response.output_item.done", "output_index": 2, "item": {"id": "fc_1", "type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}", "status": "completed"}}),
                json!({"type": "response.completed", "response": {"id": "resp_u", "object": "response", "status": "completed", "model": "m", "output": [], "usage": {"input_tokens": 30, "input_tokens_details": {"cached_tokens": 20}, "output_tokens": 9, "output_tokens_details": {"reasoning_tokens": 3}}}}),
            ],
        ),
    }
}

fn collect(format: Format, bytes: &[u8]) -> Collector {
    let mut d = Decoder::new(format);
    let mut c = Collector::default();
    let mut evs = Vec::new();
    for data in events(bytes) {
        evs.clear();
        d.event(&data, &mut evs);
        for e in &evs {
            c.event(e);
        }
    }
    c
}

fn reasoning_text(c: &Collector) -> String {
    c.response
        .output
        .iter()
        .filter_map(|i| match i {
            Item::Reasoning { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

fn calls(c: &Collector) -> Vec<(String, String, Value)> {
    c.response
        .output
        .iter()
        .filter_map(|i| match i {
            Item::ToolCall {
                call_id,
                name,
                arguments,
                ..
            } => Some((
                call_id.clone(),
                name.clone(),
                serde_json::from_str(arguments).unwrap_or(Value::Null),
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn every_stream_pair_keeps_the_answer() {
    for from in ALL {
        let upstream = upstream_stream(from);
        let direct = collect(from, &upstream);
        assert_eq!(direct.response.text(), "Hello world", "{from:?} fixture");
        for to in ALL {
            let echo = Echo {
                include_usage: true,
                input_estimate: 42,
                response_id: "resp_test".into(),
                ..Default::default()
            };
            let mut t = StreamTranslator::new(from, to, echo);
            let mut client = Vec::new();
            // Feed event by event, as the proxy's splitter does.
            for data in events(&upstream) {
                client.extend(t.event(&data));
            }
            client.extend(t.finish());
            let got = collect(to, &client);
            let what = format!("{from:?} → {to:?}:\n{}", String::from_utf8_lossy(&client));
            assert_eq!(got.response.text(), "Hello world", "{what}");
            assert_eq!(reasoning_text(&got), "Let me think.", "{what}");
            assert_eq!(
                calls(&got),
                vec![(
                    "call_1".to_string(),
                    "get_weather".to_string(),
                    json!({"city": "Paris"})
                )],
                "{what}"
            );
            assert_eq!(got.response.stop, Stop::ToolUse, "{what}");
            let u = got.response.usage.expect(&what);
            assert_eq!(u.prompt(), 30, "{what}");
            assert_eq!(u.output, 9, "{what}");
            assert_eq!(u.cache_read, 20, "{what}");
            assert!(got.done && !got.errored, "{what}");
            assert_eq!(t.usage().unwrap().prompt(), 30);
            // The stream the translator gathered is the upstream's.
            assert_eq!(t.collected().response.text(), "Hello world");
            if to == Format::Responses {
                let r = t.final_response().expect("a final response object");
                assert_eq!(r["id"], "resp_test", "{what}");
                assert_eq!(r["status"], "completed", "{what}");
                assert_eq!(r["output"].as_array().unwrap().len(), 3, "{r}");
            } else {
                assert!(t.final_response().is_none());
            }
        }
    }
}

#[test]
fn reasoning_tokens_survive_a_client_of_the_other_format() {
    // An Anthropic signature reaches a Responses client as encrypted_content and comes back.
    let mut t = StreamTranslator::new(
        Format::Messages,
        Format::Responses,
        Echo {
            response_id: "resp_x".into(),
            ..Default::default()
        },
    );
    let mut client = Vec::new();
    for data in events(&upstream_stream(Format::Messages)) {
        client.extend(t.event(&data));
    }
    let got = collect(Format::Responses, &client);
    let Some(Item::Reasoning {
        sealed: Some(s), ..
    }) = got.response.output.first()
    else {
        panic!("no sealed reasoning: {:?}", got.response.output);
    };
    assert_eq!((s.origin, s.value.as_str()), (Origin::Anthropic, "SIG-A"));
    // And OpenAI's encrypted content reaches an Anthropic client as a signature.
    let mut t = StreamTranslator::new(Format::Responses, Format::Messages, Echo::default());
    let mut client = Vec::new();
    for data in events(&upstream_stream(Format::Responses)) {
        client.extend(t.event(&data));
    }
    let text = String::from_utf8(client.clone()).unwrap();
    assert!(text.contains("dr1:oe:ENC-O"), "{text}");
    let got = collect(Format::Messages, &client);
    let Some(Item::Reasoning {
        sealed: Some(s), ..
    }) = got.response.output.first()
    else {
        panic!("no sealed reasoning");
    };
    assert_eq!((s.origin, s.value.as_str()), (Origin::OpenAi, "ENC-O"));
}

#[test]
fn anthropic_client_sees_estimated_input_then_the_real_count() {
    let echo = Echo {
        input_estimate: 1234,
        ..Default::default()
    };
    let mut t = StreamTranslator::new(Format::Chat, Format::Messages, echo);
    let mut client = Vec::new();
    for data in events(&upstream_stream(Format::Chat)) {
        client.extend(t.event(&data));
    }
    let evs = events(&client);
    let first: Value = serde_json::from_slice(&evs[0]).unwrap();
    assert_eq!(first["type"], "message_start");
    assert_eq!(first["message"]["usage"]["input_tokens"], 1234);
    let delta: Value = evs
        .iter()
        .map(|e| serde_json::from_slice::<Value>(e).unwrap())
        .find(|v| v["type"] == "message_delta")
        .unwrap();
    assert_eq!(delta["usage"]["input_tokens"], 10);
    assert_eq!(delta["usage"]["cache_read_input_tokens"], 20);
    // Unsigned reasoning (chat's reasoning_content) is sealed as such for the client.
    let text = String::from_utf8(client).unwrap();
    assert!(text.contains("\"signature\":\"dr1:none\""), "{text}");
}

#[test]
fn responses_stream_has_the_documented_sequence() {
    let mut t = StreamTranslator::new(
        Format::Chat,
        Format::Responses,
        Echo {
            response_id: "resp_abc".into(),
            ..Default::default()
        },
    );
    let mut client = Vec::new();
    for data in events(&upstream_stream(Format::Chat)) {
        client.extend(t.event(&data));
    }
    let evs: Vec<Value> = events(&client)
        .iter()
        .map(|e| serde_json::from_slice(e).unwrap())
        .collect();
    let types: Vec<&str> = evs.iter().map(|v| v["type"].as_str().unwrap()).collect();
    for (i, v) in evs.iter().enumerate() {
        assert_eq!(v["sequence_number"], i as u64, "{types:?}");
    }
    assert_eq!(types[0], "response.created");
    assert_eq!(types[1], "response.in_progress");
    assert_eq!(*types.last().unwrap(), "response.completed");
    for needed in [
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.reasoning_summary_text.delta",
    ] {
        assert!(types.contains(&needed), "{needed} missing: {types:?}");
    }
    let done = evs.last().unwrap();
    assert_eq!(done["response"]["id"], "resp_abc");
    assert_eq!(done["response"]["status"], "completed");
    assert_eq!(done["response"]["usage"]["input_tokens"], 30);
    assert_eq!(
        done["response"]["usage"]["input_tokens_details"]["cached_tokens"],
        20
    );
    let output = done["response"]["output"].as_array().unwrap();
    assert_eq!(
        output
            .iter()
            .map(|o| o["type"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["reasoning", "message", "function_call"]
    );
    assert_eq!(output[2]["arguments"], "{\"city\":\"Paris\"}");
}

#[test]
fn errors_in_streams_end_the_clients_stream() {
    let err = [
        (
            Format::Chat,
            json!({"error": {"message": "boom", "type": "server_error"}}),
        ),
        (
            Format::Messages,
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "boom"}}),
        ),
        (
            Format::Responses,
            json!({"type": "response.failed", "response": {"status": "failed", "error": {"code": "server_error", "message": "boom"}}}),
        ),
    ];
    for (from, e) in &err {
        for to in ALL {
            let mut t = StreamTranslator::new(*from, to, Echo::default());
            let out = t.event(e.to_string().as_bytes());
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains("boom"), "{from:?}→{to:?}: {text}");
            assert!(t.ended());
            assert!(t.finish().is_empty(), "nothing after an error");
            assert!(
                collect(to, text.as_bytes()).errored,
                "{from:?}→{to:?}: {text}"
            );
        }
    }
    // A failure on the proxy's side after the first byte.
    for to in ALL {
        let mut t = StreamTranslator::new(Format::Chat, to, Echo::default());
        let _ = t.event(br#"{"id":"c","choices":[{"index":0,"delta":{"content":"x"}}]}"#);
        let out = t.fail("upstream stalled", "upstream_timeout");
        assert!(collect(to, &out).errored, "{to:?}");
    }
}

fn claude_code_request() -> Obj {
    obj(json!({
        "model": "auto", "max_tokens": 32000, "stream": true,
        "system": [
            {"type": "text", "text": "billing header"},
            {"type": "text", "text": "You are an agent.", "cache_control": {"type": "ephemeral"}}
        ],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "<system-reminder>context</system-reminder>"},
                {"type": "text", "text": "Read /tmp/x/secret.txt", "cache_control": {"type": "ephemeral"}}
            ]},
            {"role": "system", "content": "A mid-conversation note."},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "", "signature": "SIG-A"},
                {"type": "text", "text": "Reading it."},
                {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"file_path": "/tmp/x/secret.txt"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "1→CODE-7"}]}
            ]}
        ],
        "tools": [
            {"name": "Read", "description": "Reads a file", "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}}},
            {"name": "Deferred", "description": "d", "input_schema": {"type": "object"}, "defer_loading": true},
            {"type": "web_search_20250305", "name": "web_search"}
        ],
        "metadata": {"user_id": "u1"},
        "thinking": {"type": "adaptive", "display": "omitted"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"}
    }))
}

#[test]
fn claude_code_request_to_chat_and_responses() {
    let req = decode_request(Format::Messages, &claude_code_request()).unwrap();
    assert_eq!(req.reasoning.thinking, Some(Thinking::Adaptive));
    // The mid-conversation system message keeps its place.
    assert!(matches!(
        &req.items[1],
        Item::Message {
            role: Role::System,
            ..
        }
    ));
    let chat = encode_request(&req, &target(Format::Chat)).unwrap();
    let b = &chat.json();
    assert_eq!(b["model"], "up-model");
    assert_eq!(b["reasoning_effort"], "high");
    assert_eq!(b["max_completion_tokens"], 32000);
    let m = b["messages"].as_array().unwrap();
    assert_eq!(
        m[0],
        json!({"role": "system", "content": "billing header\n\nYou are an agent."})
    );
    assert_eq!(m[1]["role"], "user");
    assert_eq!(
        m[2],
        json!({"role": "system", "content": "A mid-conversation note."})
    );
    assert_eq!(m[3]["role"], "assistant");
    assert_eq!(m[3]["content"], "Reading it.");
    assert_eq!(
        m[3]["tool_calls"][0]["function"],
        json!({"name": "Read", "arguments": "{\"file_path\":\"/tmp/x/secret.txt\"}"})
    );
    assert_eq!(
        m[4],
        json!({"role": "tool", "tool_call_id": "toolu_1", "content": "1→CODE-7"})
    );
    assert_eq!(
        b["tools"].as_array().unwrap().len(),
        2,
        "hosted web_search left out"
    );
    assert_eq!(b["stream_options"]["include_usage"], true);
    assert!(
        chat.notes.iter().any(|n| n.contains("web_search")),
        "{:?}",
        chat.notes
    );
    assert!(
        chat.notes.iter().any(|n| n.contains("context_management")),
        "{:?}",
        chat.notes
    );

    let resp = encode_request(&req, &target(Format::Responses))
        .unwrap()
        .json();
    assert_eq!(resp["instructions"], "billing header\n\nYou are an agent.");
    assert_eq!(resp["reasoning"]["effort"], "high");
    assert_eq!(resp["store"], false);
    let input = resp["input"].as_array().unwrap();
    let types: Vec<&str> = input.iter().map(|i| i["type"].as_str().unwrap()).collect();
    // The Anthropic-signed thinking does not go to OpenAI.
    assert_eq!(
        types,
        [
            "message",
            "message",
            "message",
            "function_call",
            "function_call_output"
        ]
    );
    assert_eq!(input[1]["role"], "system");
    assert_eq!(input[4]["output"], "1→CODE-7");

    // Without reasoning, the model gets none and the note says so.
    let plain = Target {
        caps: Caps::default(),
        ..target(Format::Chat)
    };
    let t = encode_request(&req, &plain).unwrap();
    assert!(t.json().get("reasoning_effort").is_none());
    assert!(t.notes.iter().any(|n| n.starts_with("reasoning")));
}

#[test]
fn anthropic_round_trip_keeps_signed_thinking_and_cache_control() {
    let req = decode_request(Format::Messages, &claude_code_request()).unwrap();
    let back = encode_request(&req, &target(Format::Messages))
        .unwrap()
        .json();
    assert_eq!(
        back["system"][1]["cache_control"],
        json!({"type": "ephemeral"})
    );
    let m = back["messages"].as_array().unwrap();
    assert_eq!(
        m[0]["content"][1]["cache_control"],
        json!({"type": "ephemeral"})
    );
    assert_eq!(m[1]["role"], "system");
    assert_eq!(
        m[2]["content"][0],
        json!({"type": "thinking", "thinking": "", "signature": "SIG-A"})
    );
    assert_eq!(back["thinking"], json!({"type": "adaptive"}));
    assert_eq!(back["output_config"]["effort"], "high");
}

#[test]
fn native_anthropic_requests_lose_foreign_thinking_only() {
    let mut body = claude_code_request();
    body["messages"][2]["content"][0]["signature"] = json!("dr1:oe:ENC");
    let notes = prepare_native(Format::Messages, &mut body, &target(Format::Messages));
    assert_eq!(body["model"], "up-model");
    assert_eq!(body["messages"][2]["content"][0]["type"], "text");
    assert_eq!(body["thinking"]["type"], "disabled", "{notes:?}");
    assert_eq!(notes.len(), 2, "{notes:?}");
    // An Anthropic signature stays, and nothing else changes.
    let mut body = claude_code_request();
    let before = body.clone();
    assert!(prepare_native(Format::Messages, &mut body, &target(Format::Messages)).is_empty());
    body.insert("model".into(), json!("auto"));
    assert_eq!(body, before);
}

fn codex_request() -> Obj {
    obj(json!({
        "model": "auto", "stream": true, "store": false, "tool_choice": "auto",
        "parallel_tool_calls": true, "reasoning": {"summary": "auto", "effort": "medium"},
        "include": ["reasoning.encrypted_content"], "prompt_cache_key": "k1",
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "You are Codex."}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "run ls"}]},
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "plan"}], "encrypted_content": "ENC-O"},
            {"type": "reasoning", "summary": [], "encrypted_content": "dr1:as:SIG-A"},
            {"type": "function_call", "call_id": "call_9", "name": "exec_command", "arguments": "{\"cmd\":\"ls\"}"},
            {"type": "function_call_output", "call_id": "call_9", "output": "a.txt"},
            {"type": "custom_tool_call", "call_id": "call_10", "name": "apply_patch", "input": "*** Begin Patch"},
            {"type": "custom_tool_call_output", "call_id": "call_10", "output": "Done"}
        ],
        "tools": [
            {"type": "function", "name": "exec_command", "description": "Runs a command", "strict": false,
             "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}},
            {"type": "namespace", "name": "agents", "description": "sub-agents", "tools": [
                {"type": "function", "name": "close_agent", "parameters": {"type": "object", "properties": {}}}
            ]},
            {"type": "custom", "name": "apply_patch", "description": "Patch files",
             "format": {"type": "grammar", "syntax": "lark", "definition": "start: x"}},
            {"type": "web_search", "external_web_access": false}
        ]
    }))
}

#[test]
fn codex_request_to_messages_and_chat() {
    let req = decode_request(Format::Responses, &codex_request()).unwrap();
    assert_eq!(req.tools.len(), 4);
    assert!(matches!(&req.tools[1], Tool::Function { namespace: Some(ns), .. } if ns == "agents"));
    let msgs = encode_request(&req, &target(Format::Messages)).unwrap();
    let b = &msgs.json();
    assert_eq!(b["system"][0]["text"], "You are Codex.");
    let m = b["messages"].as_array().unwrap();
    assert_eq!(
        m[0],
        json!({"role": "user", "content": [{"type": "text", "text": "run ls"}]})
    );
    // Only the Anthropic-signed reasoning goes to Anthropic, first in the assistant turn.
    assert_eq!(
        m[1]["content"][0],
        json!({"type": "thinking", "thinking": "", "signature": "SIG-A"})
    );
    assert_eq!(m[1]["content"][1]["type"], "tool_use");
    assert_eq!(m[1]["content"][1]["input"], json!({"cmd": "ls"}));
    assert_eq!(m[2]["content"][0]["type"], "tool_result");
    assert_eq!(
        m[3]["content"][0]["input"],
        json!({"input": "*** Begin Patch"})
    );
    let tools = b["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 3, "web_search left out: {tools:?}");
    assert_eq!(tools[1]["name"], "close_agent");
    assert!(tools[2]["description"]
        .as_str()
        .unwrap()
        .contains("start: x"));
    assert_eq!(tools[2]["input_schema"]["required"], json!(["input"]));
    // The last tool call was made without Anthropic thinking: Anthropic would refuse thinking.
    assert!(b.get("thinking").is_none());
    assert!(
        msgs.notes
            .iter()
            .any(|n| n.starts_with("thinking: turned off")),
        "{:?}",
        msgs.notes
    );
    assert!(msgs.notes.iter().any(|n| n.contains("web_search")));
    // Up to the signed turn, thinking is on, with max_tokens above its budget.
    let mut early = req.clone();
    early.items.truncate(6);
    let b = encode_request(&early, &target(Format::Messages))
        .unwrap()
        .json();
    assert_eq!(
        b["thinking"],
        json!({"type": "enabled", "budget_tokens": 8192})
    );
    assert!(b["max_tokens"].as_u64().unwrap() > 8192);

    let chat = encode_request(&req, &target(Format::Chat)).unwrap().json();
    assert_eq!(chat["reasoning_effort"], "medium");
    assert_eq!(chat["prompt_cache_key"], "k1");
    let m = chat["messages"].as_array().unwrap();
    assert_eq!(m[0], json!({"role": "system", "content": "You are Codex."}));
    assert_eq!(m[2]["tool_calls"][0]["function"]["name"], "exec_command");
    assert_eq!(
        m[3],
        json!({"role": "tool", "tool_call_id": "call_9", "content": "a.txt"})
    );
    assert_eq!(
        m[4]["tool_calls"][0]["function"]["arguments"],
        json!({"input": "*** Begin Patch"}).to_string()
    );

    // Native: the Anthropic-signed reasoning item is taken out, nothing else.
    let mut body = codex_request();
    let notes = prepare_native(Format::Responses, &mut body, &target(Format::Responses));
    assert_eq!(notes.len(), 1);
    assert_eq!(body["input"].as_array().unwrap().len(), 7);
    assert_eq!(body["tools"].as_array().unwrap().len(), 4);
}

#[test]
fn calls_to_namespaced_and_custom_tools_come_back_as_the_client_named_them() {
    let req = decode_request(Format::Responses, &codex_request()).unwrap();
    let echo = Echo {
        names: ToolNames::new(&req),
        response_id: "resp_1".into(),
        ..Default::default()
    };
    // A chat upstream calls the flattened tools.
    let answer = json!({"id": "c", "model": "m", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": null, "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "close_agent", "arguments": "{}"}},
            {"id": "call_b", "type": "function", "function": {"name": "apply_patch", "arguments": "{\"input\":\"*** Begin Patch\\nx\"}"}}
        ]}}], "usage": {"prompt_tokens": 5, "completion_tokens": 2}});
    let r = decode_response(Format::Chat, &answer).unwrap();
    let out: Value = serde_json::from_str(&encode_response(Format::Responses, &r, &echo)).unwrap();
    let items = out["output"].as_array().unwrap();
    assert_eq!(items[0]["type"], "function_call");
    assert_eq!(items[0]["namespace"], "agents");
    assert_eq!(items[1]["type"], "custom_tool_call");
    assert_eq!(items[1]["input"], "*** Begin Patch\nx");
    assert_eq!(out["status"], "completed");
    assert_eq!(out["usage"]["total_tokens"], 7);

    // The same, streamed.
    let stream = sse_of(
        Format::Chat,
        &[
            json!({"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_b", "type": "function", "function": {"name": "apply_patch", "arguments": "{\"input\":"}}]}}]}),
            json!({"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "\"patch\"}"}}]}, "finish_reason": "tool_calls"}]}),
        ],
    );
    let mut t = StreamTranslator::new(Format::Chat, Format::Responses, echo);
    let mut client = Vec::new();
    for data in events(&stream) {
        client.extend(t.event(&data));
    }
    let text = String::from_utf8(client).unwrap();
    assert!(
        text.contains("response.custom_tool_call_input.done"),
        "{text}"
    );
    let done: Value = serde_json::from_slice(events(text.as_bytes()).last().unwrap()).unwrap();
    assert_eq!(done["response"]["output"][0]["input"], "patch");
}

#[test]
fn whole_answers_cross_every_pair() {
    let answers = [
        (
            Format::Chat,
            json!({"id": "c1", "object": "chat.completion", "model": "m", "choices": [{"index": 0, "finish_reason": "length",
                "message": {"role": "assistant", "content": "Hi", "reasoning_content": "hmm"}}],
                "usage": {"prompt_tokens": 12, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 2}}}),
        ),
        (
            Format::Messages,
            json!({"id": "m1", "type": "message", "role": "assistant", "model": "m", "stop_reason": "max_tokens",
                "content": [{"type": "thinking", "thinking": "hmm", "signature": "S"}, {"type": "text", "text": "Hi"}],
                "usage": {"input_tokens": 10, "cache_read_input_tokens": 2, "output_tokens": 3}}),
        ),
        (
            Format::Responses,
            json!({"id": "r1", "object": "response", "model": "m", "status": "incomplete",
                "incomplete_details": {"reason": "max_output_tokens"},
                "output": [{"type": "reasoning", "id": "rs", "summary": [{"type": "summary_text", "text": "hmm"}]},
                           {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hi"}]}],
                "usage": {"input_tokens": 12, "input_tokens_details": {"cached_tokens": 2}, "output_tokens": 3}}),
        ),
    ];
    for (from, v) in &answers {
        let r = decode_response(*from, v).unwrap();
        // The usage-only read of a passed-through answer agrees with the whole decode.
        let bytes = serde_json::to_vec(v).unwrap();
        assert_eq!(usage_of_answer(*from, &bytes), r.usage, "{from:?}");
        for to in ALL {
            let echo = Echo {
                response_id: "resp_z".into(),
                ..Default::default()
            };
            let out: Value = serde_json::from_str(&encode_response(to, &r, &echo)).unwrap();
            let back = decode_response(to, &out).unwrap();
            assert_eq!(back.text(), "Hi", "{from:?}→{to:?}: {out}");
            assert_eq!(back.stop, Stop::MaxTokens, "{from:?}→{to:?}: {out}");
            let u = back.usage.unwrap();
            assert_eq!(
                (u.prompt(), u.cache_read, u.output),
                (12, 2, 3),
                "{from:?}→{to:?}"
            );
            assert!(
                back.output
                    .iter()
                    .any(|i| matches!(i, Item::Reasoning { text, .. } if text == "hmm")),
                "{from:?}→{to:?}: {out}"
            );
        }
    }
}

#[test]
fn usage_of_an_answer_without_one_or_not_json_is_none() {
    for f in ALL {
        assert_eq!(
            usage_of_answer(f, b"{\"id\": \"x\", \"choices\": []}"),
            None
        );
        assert_eq!(usage_of_answer(f, b"not json"), None);
        assert_eq!(usage_of_answer(f, b"[1, 2]"), None);
        assert_eq!(usage_of_answer(f, b"{\"usage\": null}"), None);
    }
}

#[test]
fn refusals_name_the_field() {
    let chat = |extra: Value| {
        let mut b = obj(json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}));
        for (k, v) in extra.as_object().unwrap() {
            b.insert(k.clone(), v.clone());
        }
        decode_request(Format::Chat, &b).and_then(|r| encode_request(&r, &target(Format::Messages)))
    };
    assert_eq!(chat(json!({"n": 2})).unwrap_err().field, "n");
    assert_eq!(
        chat(json!({"logprobs": true})).unwrap_err().field,
        "logprobs"
    );
    assert!(chat(json!({"logprobs": false})).is_ok());
    let no_schema = Target {
        caps: Caps {
            structured_output: false,
            ..Caps::default()
        },
        ..target(Format::Chat)
    };
    let r = decode_request(
        Format::Responses,
        &obj(json!({"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "name": "a", "schema": {"type": "object"}}}})),
    )
    .unwrap();
    assert_eq!(
        encode_request(&r, &no_schema).unwrap_err().field,
        "text.format"
    );
    let ok = encode_request(&r, &target(Format::Chat)).unwrap().json();
    assert_eq!(ok["response_format"]["json_schema"]["name"], "a");
    let to_msgs = encode_request(&r, &target(Format::Messages))
        .unwrap()
        .json();
    assert_eq!(
        to_msgs["output_config"]["format"]["schema"],
        json!({"type": "object"})
    );
    // Chat stop sequences cannot go to a Responses upstream.
    let r = decode_request(
        Format::Chat,
        &obj(json!({"model": "m", "stop": "END", "messages": [{"role": "user", "content": "x"}]})),
    )
    .unwrap();
    assert_eq!(
        encode_request(&r, &target(Format::Responses))
            .unwrap_err()
            .field,
        "stop"
    );
}

#[test]
fn malformed_responses_input_is_a_clear_error() {
    let bad = [
        json!({"model": "m", "input": 5}),
        json!({"model": "m", "input": [5]}),
        json!({"model": "m", "input": [{"role": "robot", "content": "x"}]}),
        json!({"model": "m", "input": [{"type": "function_call", "name": "f"}]}),
        json!({"model": "m", "input": [{"type": "function_call_output", "call_id": "c"}]}),
        json!({"model": "m", "input": [{"type": "message", "role": "user", "content": [{"type": "input_image"}]}]}),
        json!({"model": "m", "input": [{"type": "message", "role": "user", "content": 7}]}),
        json!({"model": "m", "input": [{"content": "no type, no role"}]}),
        json!({"model": "m", "input": "x", "tools": [{"name": "no type"}]}),
        json!({"model": "m", "input": "x", "tools": [{"type": "function"}]}),
        json!({"model": "m", "input": "x", "tool_choice": "sometimes"}),
        json!({"model": "m", "input": "x", "reasoning": {"effort": "huge"}}),
        json!({"model": "m", "input": "x", "text": {"format": {"type": "yaml"}}}),
        json!({"model": "m", "input": "x", "instructions": 3}),
        json!({"model": "m", "input": [{"type": "item_reference", "id": "x"}]}),
        json!({"model": "m", "input": "x", "background": true}),
    ];
    for b in bad {
        let e = decode_request(Format::Responses, &obj(b.clone())).unwrap_err();
        assert!(!e.to_string().is_empty(), "{b}");
    }
    // A whole conversation in the other shapes decodes.
    let r = decode_request(
        Format::Responses,
        &obj(json!({"model": "m", "input": [
            {"role": "user", "content": "plain"},
            {"type": "message", "role": "user", "content": [
                {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"},
                {"type": "input_file", "file_data": "data:application/pdf;base64,BBBB", "filename": "a.pdf"}
            ]},
            {"type": "web_search_call", "id": "ws", "status": "completed", "action": {"type": "search"}},
            {"type": "function_call_output", "call_id": "c", "output": {"content": "failed", "success": false}}
        ], "tool_choice": {"type": "function", "name": "f"}})),
    )
    .unwrap();
    assert_eq!(r.items.len(), 3);
    assert_eq!(r.tool_choice, Some(ToolChoice::Named("f".into())));
    assert!(matches!(
        &r.items[2],
        Item::ToolResult {
            is_error: true,
            kind: CallKind::Function,
            ..
        }
    ));
    assert_eq!(r.unmapped, vec!["input[2] (web_search_call)".to_string()]);
}

/// Decoding that reads the tools' schemas from the body it keeps (what the proxy does) gives
/// the request that copying them gives, and the same bytes upstream, in every format: plain
/// functions, functions inside a namespace, and schemas missing or null.
#[test]
fn schemas_read_from_the_body_are_the_copied_ones() {
    let mut responses = codex_request();
    responses["tools"].as_array_mut().unwrap().extend([
        json!({"type": "function", "name": "bare"}),
        json!({"type": "function", "name": "nulled", "parameters": null}),
    ]);
    let chat = obj(
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}}}},
        {"type": "function", "function": {"name": "bare"}},
        {"type": "function", "function": {"name": "nulled", "parameters": null}}]}),
    );
    let messages = obj(
        json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}], "tools": [
        {"name": "f", "input_schema": {"type": "object", "properties": {"a": {"type": "integer"}}}},
        {"name": "bare"}]}),
    );
    for (format, body) in [
        (Format::Responses, responses),
        (Format::Chat, chat),
        (Format::Messages, messages),
    ] {
        let copied = decode_request(format, &body).unwrap();
        let shared = dualrouter_wire::decode_shared(format, &std::sync::Arc::new(body)).unwrap();
        assert_eq!(copied, shared, "{format:?}");
        let schemas: Vec<Value> = shared
            .tools
            .iter()
            .filter_map(|t| match t {
                Tool::Function { parameters, .. } => Some(parameters.get().clone()),
                _ => None,
            })
            .collect();
        assert!(schemas.len() >= 2, "{format:?}: {schemas:?}");
        assert!(
            schemas
                .iter()
                .any(|s| s == &json!({"type": "object", "properties": {}})),
            "{format:?}: a missing schema reads as an empty object schema: {schemas:?}"
        );
        for to in ALL.into_iter().filter(|f| *f != format) {
            let a = encode_request(&copied, &target(to)).unwrap().body;
            let b = encode_request(&shared, &target(to)).unwrap().body;
            assert_eq!(a, b, "{format:?} → {to:?}");
        }
    }
}
