"""Drives an upstream with the OpenAI Agents SDK (PyPI openai-agents): an Agent with one
function tool, `read_file`, asked to read a file, over the Responses API (the SDK's default).

Usage: agents_sdk.py BASE_URL MODEL FILE
Runs the agent twice, with Runner.run_sync and streamed with Runner.run_streamed, and prints one
JSON object: {"final": ..., "streamed_final": ..., "tool_paths": [paths read_file was called with]}.
Exits non-zero on any SDK error.
"""
import asyncio
import json
import sys

from openai import AsyncOpenAI
from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled


def main() -> None:
    base_url, model, path = sys.argv[1], sys.argv[2], sys.argv[3]
    set_tracing_disabled(True)
    tool_paths = []

    @function_tool
    def read_file(path: str) -> str:
        """Read a text file and return its content."""
        tool_paths.append(path)
        with open(path, encoding="utf-8") as f:
            return f.read()

    def agent() -> Agent:
        # A client per run: run_sync's event loop is gone when the streamed run starts.
        client = AsyncOpenAI(base_url=base_url, api_key="sk-test-client", max_retries=0, timeout=30)
        return Agent(
            name="reader",
            instructions="Use read_file to read the file the user names, then say what it says.",
            tools=[read_file],
            model=OpenAIResponsesModel(model=model, openai_client=client),
        )

    prompt = f"Read the file {path} and tell me what it says"
    final = Runner.run_sync(agent(), prompt).final_output

    async def streamed() -> str:
        run = Runner.run_streamed(agent(), prompt)
        async for _ in run.stream_events():
            pass
        return run.final_output

    streamed_final = asyncio.run(streamed())
    print(json.dumps({"final": final, "streamed_final": streamed_final, "tool_paths": tool_paths}))


if __name__ == "__main__":
    main()
