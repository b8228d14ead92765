"""Reading a chat-completions stream line by line, without the SDK's chunk objects.

The openai SDK builds a pydantic object per streamed chunk, the largest single cost
of an answer (PERFORMANCE.md, "The model stream is read without the SDK's objects").
The request, its retries' error classes and the connection stay the SDK's; only the
body of a successful stream is read here, as plain dicts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import httpx2
import openai
import orjson

log = logging.getLogger(__name__)

DONE = b"[DONE]"
DATA = b"data:"
LINE_ENDS = (b"\n", b"\r")
# After [DONE] the rest of the body (the chunked encoding's end) is read so the
# connection can be reused; a server that sends [DONE] and then stalls is not waited for.
DRAIN_AFTER_DONE_S = 1.0

Chunk = dict[str, Any]
_DONE: Chunk = {}  # what _parse returns for the [DONE] line (compared by identity)


async def chunks(response: httpx2.Response) -> AsyncGenerator[Chunk, None]:
    """The JSON objects of the stream's ``data:`` lines, until ``[DONE]``.

    Lines are split here rather than by httpx's line iterator: three fewer layers of
    async generators for every piece of the stream. Raises ValueError for a data line
    that is not a JSON object (malformed stream); openai.APITimeoutError when the
    transport's read timeout fires; openai.APIError for an error event or a broken
    connection, like the SDK does.
    """
    pending = b""
    # Unencoded (as OpenAI sends streams), the raw bytes skip httpx's decoder layer.
    encoded = response.headers.get("content-encoding", "identity").lower() != "identity"
    body = response.aiter_bytes() if encoded else response.aiter_raw()
    try:
        async for data in body:
            lines = (pending + data).splitlines(keepends=True)
            if not lines:
                continue
            pending = b"" if lines[-1].endswith(LINE_ENDS) else lines.pop()
            for line in lines:
                chunk = _parse(line, response)
                if chunk is None:
                    continue
                if chunk is _DONE:
                    await _drain(body)
                    return
                yield chunk
        if pending and (chunk := _parse(pending, response)) is not None and chunk is not _DONE:
            yield chunk  # the last line had no line break
    except httpx2.TimeoutException as exc:
        raise openai.APITimeoutError(request=response.request) from exc
    except httpx2.HTTPError as exc:  # the SDK reports these as connection errors
        raise openai.APIConnectionError(request=response.request) from exc


def _parse(line: bytes, response: httpx2.Response) -> Chunk | None:
    """The chunk on one line; None for lines without data, _DONE at the end."""
    if not line.startswith(DATA):
        return None  # blank lines, comments, event:/id: fields
    data = line[len(DATA) :].strip()
    if data == DONE:
        return _DONE
    chunk = orjson.loads(data)  # its errors are ValueErrors, invalid UTF-8 included
    if not isinstance(chunk, dict):
        raise ValueError("a data: line that is not an object")
    if chunk.get("error"):
        raise _error_event(response, chunk["error"])
    return chunk


async def _drain(body: AsyncIterator[bytes]) -> None:
    try:
        async with asyncio.timeout(DRAIN_AFTER_DONE_S):
            async for _ in body:
                pass
    except (TimeoutError, httpx2.HTTPError) as exc:  # the answer is complete anyway
        log.debug("could not read the stream's end after [DONE]: %r", exc)


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


def text_of_any(chunk: Chunk, fields: tuple[str, ...]) -> str:
    """The text in the first of ``fields`` the delta carries ("" when none)."""
    delta = _delta(chunk)
    if delta is None:
        return ""
    for name in fields:
        value = delta.get(name)
        if isinstance(value, str) and value:
            return value
    return ""


def _delta(chunk: Chunk) -> dict[str, Any] | None:
    choices = chunk.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    delta = choices[0].get("delta")
    return delta if isinstance(delta, dict) else None
