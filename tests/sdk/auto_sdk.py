"""Both official SDKs with model "auto": the proxy routes, and falls back when the first model fails.

Usage: auto_sdk.py BASE_URL
Prints one JSON object: for each SDK, the served model (x-dualrouter-model), the route header and
the text, plain and streamed. Exits non-zero on any SDK error.
"""
import json
import sys

import anthropic
import openai


def main() -> None:
    base = sys.argv[1]
    ask = [{"role": "user", "content": "write a python function that reverses a linked list"}]
    out = {}

    oa = openai.OpenAI(base_url=f"{base}/v1", api_key="client-key", max_retries=0, timeout=30)
    raw = oa.chat.completions.with_raw_response.create(model="auto", messages=ask)
    done = raw.parse()
    out["openai"] = {
        "model": raw.headers.get("x-dualrouter-model"),
        "route": raw.headers.get("x-dualrouter-route"),
        "decision": raw.headers.get("x-dualrouter-decision-id"),
        "text": done.choices[0].message.content,
    }
    stream = oa.chat.completions.create(model="auto", messages=ask, stream=True)
    out["openai"]["streamed"] = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    an = anthropic.Anthropic(base_url=base, api_key="client-key", max_retries=0, timeout=30)
    raw = an.messages.with_raw_response.create(model="auto", max_tokens=64, messages=ask)
    msg = raw.parse()
    out["anthropic"] = {
        "model": raw.headers.get("x-dualrouter-model"),
        "route": raw.headers.get("x-dualrouter-route"),
        "decision": raw.headers.get("x-dualrouter-decision-id"),
        "text": "".join(b.text for b in msg.content if b.type == "text"),
    }
    with an.messages.stream(model="auto", max_tokens=64, messages=ask) as s:
        out["anthropic"]["streamed"] = "".join(s.text_stream)

    print(json.dumps(out))


if __name__ == "__main__":
    main()
