"""Reading a chat-completions stream line by line, without the SDK's chunk objects.

The openai SDK builds a pydantic object per streamed chunk; on this workload that
is the largest single cost of an answer (see BENCHMARKS.md, P1). The request, its
retries' error classes and the connection stay the SDK's; only the body of a
successful stream is read here, as plain dicts.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

import httpx2
import openai

DONE = "[DONE]"
DATA = "data:"

Chunk = dict[str, Any]


async def chunks(response: httpx2.Response) -> AsyncGenerator[Chunk, None]:
    """The JSON objects of the stream's ``data:`` lines, until ``[DONE]``.

    Raises ValueError for a data line that is not a JSON object (malformed stream),
    openai.APIError for an error event or a broken connection, like the SDK does.
    """
    try:
        lines = response.aiter_lines()
        async for line in lines:
            if not line.startswith(DATA):
                continue  # blank lines, comments, event:/id: fields
            data = line[len(DATA) :].strip()
            if data == DONE:
                # Read the body to its end: a response closed early also closes its
                # connection, and the next answer would pay for a new one.
                async for _ in lines:
                    pass
                return
            chunk = json.loads(data)
            if not isinstance(chunk, dict):
                raise ValueError("a data: line that is not an object")
            if chunk.get("error"):
                raise _error_event(response, chunk["error"])
            yield chunk
    except httpx2.HTTPError as exc:  # the SDK reports these as connection errors
        raise openai.APIConnectionError(request=response.request) from exc


def _error_event(response: httpx2.Response, error: Any) -> openai.APIError:
    message = error.get("message") if isinstance(error, dict) else str(error)
    return openai.APIError(
        str(message or "error event in the stream"), response.request, body=error
    )


def text_of(chunk: Chunk) -> str:
    """The chunk's answer text ("" for role, usage and reasoning chunks)."""
    delta = _delta(chunk)
    content = delta.get("content") if delta else None
    return content if isinstance(content, str) else ""


def finish_reason(chunk: Chunk) -> str | None:
    choices = chunk.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        reason = choices[0].get("finish_reason")
        return reason if isinstance(reason, str) else None
    return None


def usage_of(chunk: Chunk) -> tuple[int, int] | None:
    """(prompt, completion) tokens when the chunk reports usage."""
    usage = chunk.get("usage")
    if not isinstance(usage, dict):
        return None
    return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)


def has_any(chunk: Chunk, fields: tuple[str, ...]) -> bool:
    """Whether the delta carries any of ``fields`` (a thinking model's reasoning)."""
    delta = _delta(chunk)
    return delta is not None and any(delta.get(name) for name in fields)


def _delta(chunk: Chunk) -> dict[str, Any] | None:
    choices = chunk.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    delta = choices[0].get("delta")
    return delta if isinstance(delta, dict) else None
