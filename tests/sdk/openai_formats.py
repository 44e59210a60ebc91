"""Drives dualrouter with the official OpenAI Python SDK against one upstream kind.

Usage: openai_formats.py BASE_URL PREFIX
Uses the models PREFIX-echo, PREFIX-tools and PREFIX-error (an upstream answering 429).
Prints one JSON object with what each call returned. Exits non-zero on any unexpected SDK error.
"""
import json
import sys

import openai
from openai import OpenAI

TOOLS = [{"type": "function", "function": {
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}}]


def main() -> None:
    base_url, prefix = sys.argv[1], sys.argv[2]
    client = OpenAI(base_url=base_url, api_key="client-key", max_retries=0, timeout=30)
    ask = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "What is the weather in Paris?"}]

    plain = client.chat.completions.create(model=f"{prefix}-echo", messages=ask)

    streamed, usage, finish = [], None, None
    for chunk in client.chat.completions.create(
        model=f"{prefix}-echo", messages=ask, stream=True, stream_options={"include_usage": True}
    ):
        if chunk.usage is not None:
            usage = chunk.usage.model_dump()
        for c in chunk.choices:
            if c.delta.content:
                streamed.append(c.delta.content)
            if c.finish_reason:
                finish = c.finish_reason

    tools = client.chat.completions.create(model=f"{prefix}-tools", messages=ask, tools=TOOLS)
    call = tools.choices[0].message.tool_calls[0]
    follow = client.chat.completions.create(
        model=f"{prefix}-echo", tools=TOOLS,
        messages=ask + [
            tools.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
        ],
    )

    calls, tools_finish = {}, None
    for chunk in client.chat.completions.create(model=f"{prefix}-tools", messages=ask, tools=TOOLS, stream=True):
        for c in chunk.choices:
            for tc in c.delta.tool_calls or []:
                entry = calls.setdefault(tc.index, {"name": "", "arguments": ""})
                if tc.function and tc.function.name:
                    entry["name"] = tc.function.name
                if tc.function and tc.function.arguments:
                    entry["arguments"] += tc.function.arguments
            if c.finish_reason:
                tools_finish = c.finish_reason

    error = None
    try:
        client.chat.completions.create(model=f"{prefix}-error", messages=ask)
    except openai.RateLimitError as e:
        error = {"status": e.status_code, "type": e.body.get("type"), "message": e.body.get("message")}

    print(json.dumps({
        "text": plain.choices[0].message.content,
        "finish_reason": plain.choices[0].finish_reason,
        "usage": {"input": plain.usage.prompt_tokens, "output": plain.usage.completion_tokens},
        "streamed": "".join(streamed),
        "streamed_finish_reason": finish,
        "streamed_usage": usage,
        "tools": [{"name": t.function.name, "input": json.loads(t.function.arguments)}
                  for t in tools.choices[0].message.tool_calls],
        "tools_finish_reason": tools.choices[0].finish_reason,
        "follow_up": follow.choices[0].message.content,
        "tools_streamed": [{"name": v["name"], "input": json.loads(v["arguments"])} for _, v in sorted(calls.items())],
        "tools_streamed_finish_reason": tools_finish,
        "error": error,
    }))


if __name__ == "__main__":
    main()
