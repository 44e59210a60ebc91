"""The official OpenAI Python SDK's Responses API against an OpenAI-compatible base URL (the
proxy): a plain response, a streamed one, one continuing the first with previous_response_id,
retrieve and delete, and an unknown previous_response_id.

Usage: responses_sdk.py BASE_URL MODEL
Prints one JSON object (see the end of main). Exits non-zero on any unexpected SDK error.
"""
import json
import os
import sys

from openai import NotFoundError, OpenAI


def main() -> None:
    base_url, model = sys.argv[1], sys.argv[2]
    key = os.environ.get("OPENAI_API_KEY", "sk-test-client")
    client = OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=30)

    first = client.responses.create(model=model, input="hello there", instructions="be brief")

    types, text, completed = [], "", None
    for ev in client.responses.create(model=model, input="stream please", stream=True):
        types.append(ev.type)
        if ev.type == "response.output_text.delta":
            text += ev.delta
        elif ev.type == "response.completed":
            completed = ev.response

    second = client.responses.create(model=model, input="and again", previous_response_id=first.id)
    retrieved = client.responses.retrieve(first.id)
    client.responses.delete(second.id)
    try:
        client.responses.retrieve(second.id)
        after_delete = "found"
    except NotFoundError:
        after_delete = "not_found"
    try:
        client.responses.create(model=model, input="x", previous_response_id="resp_does_not_exist")
        unknown = "accepted"
    except NotFoundError as e:
        unknown = e.body if isinstance(e.body, dict) else str(e.body)

    print(json.dumps({
        "first": {"id": first.id, "text": first.output_text, "status": first.status,
                  "usage": first.usage.model_dump() if first.usage else None,
                  "instructions": first.instructions},
        "streamed": {"types": types, "text": text,
                     "completed_text": completed.output_text if completed else None,
                     "completed_id": completed.id if completed else None},
        "second": {"id": second.id, "text": second.output_text,
                   "previous": second.previous_response_id},
        "retrieved": {"id": retrieved.id, "text": retrieved.output_text},
        "after_delete": after_delete,
        "unknown_previous": unknown,
    }))


if __name__ == "__main__":
    main()
