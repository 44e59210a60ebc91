"""Drives dualrouter with the official Anthropic Python SDK, unchanged but for base_url.

Usage: anthropic_sdk.py BASE_URL PREFIX
Uses the models PREFIX-echo, PREFIX-tools and PREFIX-error (an upstream answering 429).
Prints one JSON object with what each call returned. Exits non-zero on any unexpected SDK error.
"""
import json
import sys

import anthropic

TOOLS = [{
    "name": "get_weather",
    "description": "Current weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}]


def tool_uses(message):
    return [{"id": b.id, "name": b.name, "input": b.input} for b in message.content if b.type == "tool_use"]


def text_of(message):
    return "".join(b.text for b in message.content if b.type == "text")


def main() -> None:
    base_url, prefix = sys.argv[1], sys.argv[2]
    client = anthropic.Anthropic(base_url=base_url, api_key="client-key", max_retries=0, timeout=30)
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]

    plain = client.messages.create(model=f"{prefix}-echo", max_tokens=64, system="be brief", messages=ask)

    with client.messages.stream(model=f"{prefix}-echo", max_tokens=64, messages=ask) as s:
        streamed = "".join(s.text_stream)
        streamed_final = s.get_final_message()

    tools = client.messages.create(model=f"{prefix}-tools", max_tokens=64, messages=ask, tools=TOOLS)
    # The tool result goes back as the next turn (translated when the upstream is OpenAI).
    follow = client.messages.create(
        model=f"{prefix}-echo", max_tokens=64, tools=TOOLS,
        messages=ask + [
            {"role": "assistant", "content": [b.model_dump() for b in tools.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_uses(tools)[0]["id"], "content": "sunny"}]},
        ],
    )

    with client.messages.stream(model=f"{prefix}-tools", max_tokens=64, messages=ask, tools=TOOLS) as s:
        tools_streamed = s.get_final_message()

    error = None
    try:
        client.messages.create(model=f"{prefix}-error", max_tokens=64, messages=ask)
    except anthropic.RateLimitError as e:
        error = {"status": e.status_code, "type": e.body["error"]["type"], "message": e.body["error"]["message"]}

    print(json.dumps({
        "text": text_of(plain),
        "stop_reason": plain.stop_reason,
        "usage": {"input": plain.usage.input_tokens, "output": plain.usage.output_tokens},
        "streamed": streamed,
        "streamed_stop_reason": streamed_final.stop_reason,
        "streamed_output_tokens": streamed_final.usage.output_tokens,
        "tools_text": text_of(tools),
        "tools": tool_uses(tools),
        "tools_stop_reason": tools.stop_reason,
        "follow_up": text_of(follow),
        "tools_streamed": tool_uses(tools_streamed),
        "tools_streamed_text": text_of(tools_streamed),
        "tools_streamed_stop_reason": tools_streamed.stop_reason,
        "error": error,
    }))


if __name__ == "__main__":
    main()
