#!/usr/bin/env python3
"""Writes the hand-written seeds into fuzz/corpus/TARGET/ (run once; cmin keeps what adds coverage)."""
import json, os, pathlib, glob

root = pathlib.Path(__file__).resolve().parent.parent
def put(target, name, data):
    d = root / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, (dict, list)):
        data = json.dumps(data)
    if isinstance(data, str):
        data = data.encode()
    (d / ("seed-" + name)).write_bytes(data)

msgs = [{"role": "user", "content": "fix my bug"}]
openai = {
 "simple": {"model": "auto", "messages": msgs},
 "stream": {"model": "gpt-4o-mini", "messages": msgs, "stream": True, "stream_options": {"include_usage": True}, "temperature": 0.2, "max_tokens": 50},
 "system_multi": {"model": "auto", "messages": [{"role": "system", "content": "be brief"}, {"role": "developer", "content": [{"type": "text", "text": "dev"}]}, {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}, {"role": "user", "content": [{"type": "text", "text": "again"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}], "stop": ["\n\n"], "max_completion_tokens": 100, "top_p": 0.9},
 "tools": {"model": "auto", "messages": [{"role": "user", "content": "weather?"}, {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}, {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}], "tools": [{"type": "function", "function": {"name": "get_weather", "description": "w", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}], "tool_choice": "auto", "parallel_tool_calls": False, "n": 1, "response_format": {"type": "json_object"}, "user": "u1", "seed": 7},
 "tool_choice_named": {"model": "x", "messages": msgs, "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}], "tool_choice": {"type": "function", "function": {"name": "f"}}},
 "image_url_http": {"model": "x", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]},
 "route_prompt": {"prompt": "summarise this text"},
 "feedback": {"decision_id": "0190f0b2-7c1e-7a3b-9c2d-1234567890ab", "score": 0.75, "comment": "good"},
 "evil_fields": {"model": "../../etc/passwd", "messages": msgs, "base_url": "http://evil.example", "api_base": "http://evil.example"},
}
for k, v in openai.items():
    put("openai_request", k + ".json", v)
put("openai_request", "not_json.txt", "{\"model\": ")

anth = {
 "simple": {"model": "claude-3-5-haiku", "max_tokens": 64, "messages": msgs},
 "stream_system_str": {"model": "auto", "max_tokens": 64, "stream": True, "system": "be brief", "messages": msgs, "temperature": 0.1, "top_k": 5, "stop_sequences": ["END"]},
 "system_blocks": {"model": "auto", "max_tokens": 10, "system": [{"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}}], "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]}, {"role": "assistant", "content": "yo"}, {"role": "user", "content": "more"}]},
 "tools": {"model": "auto", "max_tokens": 100, "tools": [{"name": "get_weather", "description": "w", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}], "tool_choice": {"type": "tool", "name": "get_weather"}, "messages": [{"role": "user", "content": "weather?"}, {"role": "assistant", "content": [{"type": "text", "text": "checking"}, {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]}, {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "sunny"}]}, {"type": "tool_result", "tool_use_id": "toolu_2", "content": "rain", "is_error": True}]}], "metadata": {"user_id": "u"}},
 "tool_choice_any": {"model": "m", "max_tokens": 5, "tool_choice": {"type": "any"}, "tools": [{"name": "f", "input_schema": {}}], "messages": msgs},
 "thinking": {"model": "m", "max_tokens": 5, "thinking": {"type": "enabled", "budget_tokens": 1024}, "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm", "signature": "s"}, {"type": "text", "text": "y"}]}]},
 "image_url_src": {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}]}]},
}
for k, v in anth.items():
    put("anthropic_request", k + ".json", v)

anth.update({
 "claude_code": {"model": "auto", "max_tokens": 32000, "stream": True, "system": [{"type": "text", "text": "billing"}, {"type": "text", "text": "agent", "cache_control": {"type": "ephemeral"}}], "messages": [{"role": "user", "content": [{"type": "text", "text": "<system-reminder>ctx</system-reminder>"}, {"type": "text", "text": "read /tmp/a"}]}, {"role": "system", "content": "note"}, {"role": "assistant", "content": [{"type": "thinking", "thinking": "", "signature": "dr1:oe:ENC"}, {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"file_path": "/tmp/a"}}]}, {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "1\u2192x"}]}], "tools": [{"name": "Read", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}}, {"name": "D", "input_schema": {}, "defer_loading": True}, {"type": "web_search_20250305", "name": "web_search"}], "thinking": {"type": "adaptive", "display": "omitted"}, "output_config": {"effort": "high", "format": {"type": "json_schema", "schema": {"type": "object"}}}, "context_management": {"edits": []}, "metadata": {"user_id": "u"}},
 "count_tokens": {"model": "auto", "messages": msgs, "system": "s"},
})
for k in ("claude_code", "count_tokens"):
    put("anthropic_request", k + ".json", anth[k])

responses = {
 "string_input": {"model": "auto", "input": "hello", "instructions": "be brief", "stream": True},
 "codex": {"model": "auto", "stream": True, "store": False, "tool_choice": "auto", "parallel_tool_calls": True, "reasoning": {"summary": "auto", "effort": "high"}, "include": ["reasoning.encrypted_content"], "prompt_cache_key": "k", "input": [{"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "You are Codex."}]}, {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "<environment_context>cwd</environment_context>"}]}, {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "run ls"}]}, {"type": "reasoning", "summary": [{"type": "summary_text", "text": "plan"}], "encrypted_content": "dr1:as:SIG"}, {"type": "function_call", "call_id": "c1", "name": "exec_command", "arguments": "{\"cmd\":\"ls\"}"}, {"type": "function_call_output", "call_id": "c1", "output": "a.txt"}, {"type": "custom_tool_call", "call_id": "c2", "name": "apply_patch", "input": "*** Begin"}, {"type": "custom_tool_call_output", "call_id": "c2", "output": "ok"}, {"type": "web_search_call", "id": "ws", "status": "completed", "action": {"type": "search"}}], "tools": [{"type": "function", "name": "exec_command", "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}, "strict": False}, {"type": "namespace", "name": "agents", "tools": [{"type": "function", "name": "close_agent", "parameters": {}}]}, {"type": "custom", "name": "apply_patch", "format": {"type": "grammar", "syntax": "lark", "definition": "start: x"}}, {"type": "web_search", "external_web_access": False}]},
 "images_files": {"model": "m", "input": [{"role": "user", "content": [{"type": "input_text", "text": "see"}, {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}, {"type": "input_file", "file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}, {"type": "input_image", "file_id": "file_1"}]}], "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}, "strict": True}, "verbosity": "low"}, "metadata": {"a": "b"}, "max_output_tokens": 50, "temperature": 0.3, "top_p": 0.9},
 "previous": {"model": "m", "previous_response_id": "resp_1", "input": [{"type": "function_call_output", "call_id": "c", "output": [{"type": "input_text", "text": "x"}]}], "tool_choice": {"type": "function", "name": "f"}},
 "broken_items": {"model": "m", "input": [{"type": "function_call", "name": "f"}, {"role": "robot", "content": "x"}, 5, {"type": "item_reference", "id": "x"}]},
 "background": {"model": "m", "input": "x", "background": True, "reasoning": {"effort": "none"}},
}
for k, v in responses.items():
    put("responses_request", k + ".json", v)
put("responses_request", "not_json.txt", "{\"input\": [")

def sse(events):
    return "".join(events)
def oa(d): return "data: " + json.dumps(d) + "\n\n"
def an(t, d): return "event: " + t + "\ndata: " + json.dumps(d) + "\n\n"
oa_stream = sse([
 oa({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}),
 oa({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}]}),
 oa({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": "stop"}]}),
 oa({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}),
 "data: [DONE]\n\n"])
oa_tools = sse([
 oa({"id": "c2", "choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}}]}),
 oa({"id": "c2", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}}]}),
 oa({"id": "c2", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}, {"index": 1, "id": "call_2", "function": {"name": "g", "arguments": "{}"}}]}}]}),
 oa({"id": "c2", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}], "usage": {"prompt_tokens": 9, "completion_tokens": 4}}),
 "data: [DONE]\r\n\r\n"])
oa_err = ": keep-alive\n\n" + oa({"error": {"message": "overloaded", "type": "server_error", "code": "x"}})
an_stream = sse([
 an("message_start", {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude", "content": [], "stop_reason": None, "usage": {"input_tokens": 10, "cache_read_input_tokens": 2, "output_tokens": 1}}}),
 an("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
 an("ping", {"type": "ping"}),
 an("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}),
 an("content_block_stop", {"type": "content_block_stop", "index": 0}),
 an("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}}),
 an("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"city\": \"Paris\"}"}}),
 an("content_block_stop", {"type": "content_block_stop", "index": 1}),
 an("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None}, "usage": {"output_tokens": 15}}),
 an("message_stop", {"type": "message_stop"})])
an_thinking = sse([
 an("message_start", {"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 1}}}),
 an("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
 an("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}}),
 an("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "abc"}}),
 an("message_delta", {"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 3}}),
])
an_err = an("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
def rs(d): return "event: " + d["type"] + "\ndata: " + json.dumps(d) + "\n\n"
rs_stream = sse([
 rs({"type": "response.created", "sequence_number": 0, "response": {"id": "resp_u", "status": "in_progress", "model": "m", "output": []}}),
 rs({"type": "response.output_item.added", "output_index": 0, "item": {"id": "rs_1", "type": "reasoning", "summary": []}}),
 rs({"type": "response.reasoning_summary_text.delta", "output_index": 0, "summary_index": 0, "delta": "think"}),
 rs({"type": "response.output_item.done", "output_index": 0, "item": {"id": "rs_1", "type": "reasoning", "summary": [{"type": "summary_text", "text": "think"}], "encrypted_content": "ENC"}}),
 rs({"type": "response.output_item.added", "output_index": 1, "item": {"id": "msg_1", "type": "message", "role": "assistant", "content": []}}),
 rs({"type": "response.output_text.delta", "output_index": 1, "content_index": 0, "delta": "Hello"}),
 rs({"type": "response.output_item.done", "output_index": 1, "item": {"id": "msg_1", "type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hello"}]}}),
 rs({"type": "response.output_item.added", "output_index": 2, "item": {"id": "fc_1", "type": "function_call", "call_id": "call_1", "name": "f", "arguments": ""}}),
 rs({"type": "response.function_call_arguments.delta", "output_index": 2, "delta": "{\"a\":1}"}),
 rs({"type": "response.output_item.done", "output_index": 2, "item": {"id": "fc_1", "type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{\"a\":1}"}}),
 rs({"type": "response.output_item.done", "output_index": 3, "item": {"id": "ctc", "type": "custom_tool_call", "call_id": "call_2", "name": "apply_patch", "input": "*** Begin"}}),
 rs({"type": "response.completed", "response": {"id": "resp_u", "status": "completed", "model": "m", "output": [], "usage": {"input_tokens": 9, "input_tokens_details": {"cached_tokens": 4}, "output_tokens": 3}}})])
rs_err = rs({"type": "response.failed", "response": {"status": "failed", "error": {"code": "server_error", "message": "boom"}}}) + rs({"type": "error", "code": "x", "message": "y"})
oa_reasoning = sse([oa({"id": "c", "choices": [{"index": 0, "delta": {"reasoning_content": "hmm"}}]}), oa({"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "a", "type": "custom", "custom": {"name": "p", "input": "x"}}]}, "finish_reason": "tool_calls"}]}), "data: [DONE]\n\n"])
for name, s in [("responses_full", rs_stream), ("responses_error", rs_err), ("openai_reasoning_custom", oa_reasoning), ("openai_text", oa_stream), ("openai_tools", oa_tools), ("openai_error", oa_err), ("anthropic_text_tools", an_stream), ("anthropic_thinking_truncated", an_thinking), ("anthropic_error", an_err)]:
    for step in (b"\x00", b"\x07"):
        put("sse_parse_and_translate", f"{name}_{step[0]}.sse", step + s.encode())

resp = {
 "openai_resp": {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m", "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi", "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]}, "finish_reason": "tool_calls"}], "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}},
 "anthropic_resp": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude", "content": [{"type": "text", "text": "hi"}, {"type": "thinking", "thinking": "t"}, {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}], "stop_reason": "tool_use", "usage": {"input_tokens": 3, "output_tokens": 4, "cache_creation_input_tokens": 1}},
 "openai_err": {"error": {"message": "bad key", "type": "invalid_request_error", "code": "invalid_api_key", "param": None}},
 "anthropic_err": {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}},
 "responses_resp": {"id": "resp_1", "object": "response", "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}, "model": "m", "output": [{"type": "reasoning", "id": "rs", "summary": [{"type": "summary_text", "text": "t"}], "encrypted_content": "dr1:as:S"}, {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "hi"}]}, {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}", "namespace": "ns"}], "usage": {"input_tokens": 5, "input_tokens_details": {"cached_tokens": 2}, "output_tokens": 1}},
 "responses_failed": {"id": "resp_2", "object": "response", "status": "failed", "error": {"code": "server_error", "message": "x"}},
}
for k, v in resp.items():
    put("response_translate", k + ".json", v)
put("response_translate", "html_err.txt", b"\x02<html>502 Bad Gateway</html>")

for f in glob.glob(str(root.parent / "config" / "*.yaml")):
    put("config_parse", os.path.basename(f), pathlib.Path(f).read_bytes())
put("config_parse", "full.yaml", """listen: 127.0.0.1:0
admin: { listen: 0.0.0.0:9000, token_env: ADMIN_TOKEN }
auth: { keys_env: CLIENT_KEYS }
limits: { first_byte_ms: 1500, idle_ms: 1500 }
database: "postgres://u:pw@127.0.0.1:5432/db"
decision_log: { prompt_preview_chars: 50, spool_dir: /tmp/spool }
providers:
  - name: oa
    kind: openai
    base_url: https://api.openai.com/v1
    api_key_env: OPENAI_API_KEY
    models:
      - { id: cheap, upstream_id: gpt-4o-mini, cost_per_mtok: { input: 0.15, output: 0.6 }, tier: economy }
      - { id: vendor/model, cost_per_mtok: { input: 2.5, output: 10 }, context_tokens: 128000 }
  - name: an
    kind: anthropic
    base_url: https://api.anthropic.com/v1
    api_key_env: ANTHROPIC_API_KEY
    models:
      - { id: strong, upstream_id: claude-sonnet, cost_per_mtok: { input: 3, output: 15 } }
policies:
  - domain: general
    action: question
    description: "questions and small tasks"
    examples: ["say hello to Ada"]
    models: [strong, cheap]
  - { domain: programming, action: bug-fix, models: [cheap], priority: 5, budget_usd: 1.5 }
""")

for i, a in enumerate([
 '{"route": "programming/bug-fix"}', "{'route': 'writing/summary'}",
 '```json\n{"route": "programming/bug-fix"}\n```', '```\n{"route": "other"}\n```',
 '  \n{"route":"writing/summary"}  ', "programming/bug-fix", '"writing/summary"',
 'Sure! The best route is {"route": "programming/bug-fix"} because', '{"route": "cooking/recipe"}',
 "I cannot decide, sorry", "", "{", "}{", '{"route": 5}', "{'route': \"mixed'}",
 'é{"route":"é"}ü']):
    put("arch_router_answer", f"{i:02}.txt", a)
