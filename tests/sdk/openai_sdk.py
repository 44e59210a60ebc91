"""Drives dualrouter with the official OpenAI Python SDK, unchanged but for base_url.

Usage: openai_sdk.py BASE_URL MODEL
Prints one JSON object: the completion's text, the streamed text, the chunk count and the
usage the stream reported. Exits non-zero on any SDK error.
"""
import json
import sys

from openai import OpenAI


def main() -> None:
    base_url, model = sys.argv[1], sys.argv[2]
    client = OpenAI(base_url=base_url, api_key="sk-test-client", max_retries=0, timeout=30)

    completion = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "say hello"}],
    )
    raw = client.chat.completions.with_raw_response.create(
        model=model,
        messages=[{"role": "user", "content": "headers please"}],
    )

    chunks = 0
    streamed = []
    usage = None
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "stream please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        chunks += 1
        if chunk.usage is not None:
            usage = chunk.usage.model_dump()
        for choice in chunk.choices:
            if choice.delta.content:
                streamed.append(choice.delta.content)

    print(json.dumps({
        "text": completion.choices[0].message.content,
        "model_header": raw.headers.get("x-dualrouter-model"),
        "streamed": "".join(streamed),
        "chunks": chunks,
        "usage": usage,
    }))


if __name__ == "__main__":
    main()
